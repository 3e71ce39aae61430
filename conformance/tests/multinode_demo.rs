//! `cni6 demo` as a person runs it: the real binary builds a two-node
//! cluster, every pod reaches every other over ULA and GUA, the fabric
//! carries pod addresses unwrapped, and nothing is left afterwards; with
//! `--keep` the cluster stays up until `cni6 demo --cleanup`.
//! Needs root and built binaries (CNI6_BIN_DIR or target/release).

use conformance::harness;
use conformance::topology::Topology;
use serde_json::Value;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

const STATE_ROOT: &str = "/run/cni6-demo";

fn demo(args: &[&str]) -> (i32, Value, String) {
    let bin = harness::bin_dir();
    let out = Command::new(bin.join("cni6"))
        .arg("demo")
        .args(args)
        .arg("--bin-dir")
        .arg(&bin)
        .output()
        .expect("run cni6 demo");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("demo printed no JSON ({e}):\n{stdout}\n{stderr}"));
    (out.status.code().unwrap_or(-1), json, stderr)
}

fn base_of(doc: &Value) -> String {
    let ns = doc["nodes"][0]["netns"].as_str().expect("node netns");
    ns.strip_suffix("n1")
        .expect("node 1 is <base>n1")
        .to_string()
}

fn check_cluster(doc: &Value) {
    let nodes = doc["nodes"].as_array().unwrap();
    let pods = doc["pods"].as_array().unwrap();
    assert_eq!((nodes.len(), pods.len()), (2, 4), "{doc}");
    for p in pods {
        let node = &nodes[p["node"].as_u64().unwrap() as usize - 1];
        for (addr, range) in [("ula", "ulaPodRange"), ("gua", "guaPodRange")] {
            let a: ipnet::Ipv6Net = p[addr].as_str().unwrap().parse().unwrap();
            let r: ipnet::Ipv6Net = node[range].as_str().unwrap().parse().unwrap();
            assert!(r.contains(&a.addr()), "{a} outside its node's {r}");
        }
        let iid = |k: &str| {
            let a: ipnet::Ipv6Net = p[k].as_str().unwrap().parse().unwrap();
            u128::from(a.addr()) as u32
        };
        assert_eq!(iid("ula"), iid("gua"), "{p}");
    }
    let reach = doc["reachability"].as_array().unwrap();
    assert_eq!(reach.len(), 4 * 3 * 2, "every ordered pair, ULA and GUA");
    let failed: Vec<&Value> = reach.iter().filter(|r| r["ok"] != true).collect();
    assert!(failed.is_empty(), "unreachable: {failed:#?}");
    for r in reach {
        let dst: Ipv6Addr = r["dst"].as_str().unwrap().parse().unwrap();
        let want = if r["family"] == "ULA" { 0xfd8c } else { 0x2001 };
        assert_eq!(dst.segments()[0], want, "{r}");
    }
    assert_eq!(doc["capture"]["encapsulated"], 0, "{doc}");
    assert!(doc["capture"]["podPackets"].as_u64().unwrap() > 0, "{doc}");
    assert_eq!(doc["unreachable"], 0);
    // firewall6 in the chain (it needs no br_netfilter):
    // from outside the cluster every pod's GUA answers on the allowed port
    // and on no other.
    let probes = doc["outside"]["probes"]
        .as_array()
        .unwrap_or_else(|| panic!("the demo ran without firewall6: {doc}"));
    assert_eq!(probes.len(), 4 * 2, "{doc}");
    for pr in probes {
        let want_open = pr["expected"] == "open";
        assert_eq!(pr["open"], want_open, "{pr}");
        assert_eq!(pr["port"], if want_open { 443 } else { 8080 }, "{pr}");
    }
}

#[test]
fn demo_shows_a_reachable_cluster_and_removes_it() {
    harness::require_root();
    let (code, doc, stderr) = demo(&["--json"]);
    assert_eq!(code, 0, "{stderr}");
    check_cluster(&doc);
    assert_eq!(doc["kept"], false);
    let base = base_of(&doc);
    assert!(
        Topology::existing_namespaces(&base).unwrap().is_empty(),
        "demo left namespaces of {base}"
    );
    assert!(!Path::new(STATE_ROOT).join(&base).exists());
}

#[test]
fn demo_keep_then_cleanup() {
    harness::require_root();
    let (code, doc, stderr) = demo(&["--json", "--keep"]);
    assert_eq!(code, 0, "{stderr}");
    check_cluster(&doc);
    let base = base_of(&doc);
    let manifest = PathBuf::from(doc["manifest"].as_str().unwrap());
    assert!(manifest.is_file());
    // 1 underlay + 2 nodes + 4 pods, still up, pods still attached.
    assert_eq!(Topology::existing_namespaces(&base).unwrap().len(), 7);
    let pod = doc["pods"][0]["name"].as_str().unwrap();
    let addrs = Command::new("ip")
        .args(["-n", pod, "-6", "addr", "show", "dev", "eth0"])
        .output()
        .unwrap();
    let ula = doc["pods"][0]["ula"].as_str().unwrap();
    assert!(String::from_utf8_lossy(&addrs.stdout).contains(ula));

    // `--cleanup` removes every kept demo cluster; run it only if ours is
    // the only one, so a person's kept demo on this machine is not touched.
    let kept = Topology::kept(Path::new(STATE_ROOT));
    if kept == vec![manifest.clone()] {
        let out = Command::new(harness::bin_dir().join("cni6"))
            .args(["demo", "--cleanup"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(&base));
    } else {
        eprintln!("other kept demo clusters exist ({kept:?}): removing only ours");
        Topology::adopt(&manifest).unwrap().teardown().unwrap();
    }
    assert!(Topology::existing_namespaces(&base).unwrap().is_empty());
    assert!(!manifest.exists());
}
