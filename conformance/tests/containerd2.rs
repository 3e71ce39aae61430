//! containerd 2.x CRI runs pod sandboxes on cni6 at cniVersion 1.1.0,
//! driven as kubelet drives it (issue 16).
//!
//! containerd, ctr and containerd-shim-runc-v2 are the upstream 2.x build
//! of scripts/peers.sh; everything else follows conformance/tests/
//! containerd.rs (1.6): a private root, state, socket, plugin dir and
//! conflist under a temp dir, the daemon in a node namespace, a locally
//! built pause image, CRI through testdata/runtimes/cri_client.py, a spy
//! around bridge6. Unlike 1.6, containerd 2 parses 1.1.0 results and asks
//! the plugins' STATUS for the CRI NetworkReady condition.

use conformance::cri::{
    assert_adds_ok, assert_nothing_left, cni6_sandbox, cni6_status, sandbox_ips,
    two_pods_that_reach_each_other,
};
use conformance::harness;
use conformance::realruntime::{
    describe, host_veths_of, percentile, ping_from_sandbox, records_of, store_records, Cni6Net,
    Containerd, ContainerdSpec,
};
use serde_json::{json, Value};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

const V: &str = "1.1.0";

/// `ip -j addr` of one interface inside a sandbox, global IPv6 only.
fn addrs_in(netns: &str, dev: &str) -> Vec<Ipv6Addr> {
    let out = Command::new("nsenter")
        .arg(format!("--net={netns}"))
        .args([
            "ip", "-6", "-j", "addr", "show", "dev", dev, "scope", "global",
        ])
        .output()
        .expect("spawn ip");
    assert!(out.status.success(), "{}", describe("ip addr", &out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j");
    v[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["local"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sandboxes_at_1_1_0_reach_each_other_and_remove_leaves_nothing() {
    let mut cd = Containerd::start_v2("c62s", Cni6Net::new("c62s", 50), ContainerdSpec::default());
    let pods = two_pods_that_reach_each_other(&mut cd);

    // containerd 2 cached the 1.1.0 result (libcni's cache) and passed
    // kubelet's pod identity through CNI_ARGS.
    for p in &pods {
        let recs = records_of(&cd.data_dir, &cd.net.name, &p.id);
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0]["podNamespace"], p.namespace);
        assert_eq!(recs[0]["podName"], p.name);
        let cache = conformance::realruntime::libcni_cache_of(&cd.net.name, &p.id);
        assert_eq!(cache.len(), 1, "{cache:?}");
        let cached: Value = serde_json::from_slice(
            &std::fs::read(Path::new(conformance::realruntime::LIBCNI_CACHE).join(&cache[0]))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(cached["result"]["cniVersion"], V, "{cached}");
    }
    assert_adds_ok(&cd, 2);

    for p in &pods {
        cd.stop(&p.id);
        cd.remove(&p.id);
        assert_nothing_left(&cd, &[&cd.net.name], &p.id);
        assert!(conformance::realruntime::libcni_cache_of(&cd.net.name, &p.id).is_empty());
    }
    assert!(pods.iter().all(|p| !Path::new(&p.netns).exists()));
    assert_eq!(cd.cri_ok(json!({"op": "list"})), json!([]));
    let failed: Vec<String> = cd
        .calls()
        .into_iter()
        .filter(|c| !c.ends_with(" rc=0"))
        .collect();
    assert!(failed.is_empty(), "every plugin call succeeded: {failed:?}");
}

/// cni6's STATUS failing shows as CRI NetworkReady=false with cni6's own
/// message, and NetworkReady comes back once the cause is gone. The cause:
/// ipam-prefix's dataDir replaced by a plain file.
#[test]
fn network_ready_follows_cni6_status() {
    let mut cd = Containerd::start_v2("c62r", Cni6Net::new("c62r", 51), ContainerdSpec::default());
    let ready = cd.condition("NetworkReady");
    assert_eq!(ready["status"], true, "{ready}");
    let (id, _) = cd.run_pod("api-1", "team-a", "uid-api-1");
    cni6_sandbox(&mut cd, &id);

    let aside = cd.dir.join("ipam.aside");
    std::fs::rename(&cd.data_dir, &aside).expect("move dataDir aside");
    std::fs::write(&cd.data_dir, "not a directory").expect("file in its place");
    let not_ready = cd.condition("NetworkReady");
    assert_eq!(not_ready["status"], false, "{not_ready}");
    let msg = not_ready["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("data directory") && msg.contains("unusable"),
        "NetworkReady carries ipam-prefix's message: {not_ready}"
    );
    std::fs::remove_file(&cd.data_dir).unwrap();
    std::fs::rename(&aside, &cd.data_dir).unwrap();
    let ready = cd.condition("NetworkReady");
    assert_eq!(ready["status"], true, "{ready}");
    // STATUS reads only: the running sandbox was never touched.
    cni6_sandbox(&mut cd, &id);
    cd.stop(&id);
    cd.remove(&id);
    assert_nothing_left(&cd, &[&cd.net.name.clone()], &id);
}

/// The real multus thin plugin as containerd 2's network: cni6 on eth0
/// (its IPs are the sandbox's), a second cni6 network on net1.
#[test]
fn multus_through_cri_eth0_and_net1() {
    let eth0 = Cni6Net::new("c62m", 52);
    let net1 = Cni6Net::new("c62m-net1", 53);
    let (e, n1) = (eth0.clone(), net1.clone());
    let multus = move |dir: &Path, data: &Path| {
        let mut net1_conf = n1.conflist(V, data);
        net1_conf["plugins"][0]["ipam"]["subnetId"] = json!(2);
        net1_conf["plugins"][0]["ipam"]
            .as_object_mut()
            .unwrap()
            .remove("routes");
        json!({
            "cniVersion": V,
            "name": harness::unique_name("c62m-multus"),
            "plugins": [ {
                "type": "multus",
                "cniDir": dir.join("multus"),
                "binDir": dir.join("bin"),
                "logToStderr": true,
                "delegates": [ e.conflist(V, data), net1_conf ],
            } ],
        })
    };
    let spec = ContainerdSpec {
        conflist: Some(Box::new(multus)),
        extra_bins: vec![(harness::peer("multus", "multus"), "multus".into())],
    };
    let mut cd = Containerd::start_v2("c62m", eth0.clone(), spec);
    let ready = cd.condition("NetworkReady");
    assert_eq!(ready["status"], true, "{ready}");

    let (id, _) = cd.run_pod("db-0", "tenant-a", "uid-db-0");
    let (ula, gua, netns) = cni6_sandbox(&mut cd, &id);
    let on_eth0 = addrs_in(&netns, "eth0");
    assert!(
        on_eth0.contains(&ula) && on_eth0.contains(&gua),
        "{on_eth0:?}"
    );
    let on_net1 = addrs_in(&netns, "net1");
    assert_eq!(on_net1.len(), 2, "net1 has its ULA and GUA: {on_net1:?}");
    assert!(
        on_net1
            .iter()
            .all(|a| !eth0.in_ula_range(*a) && !eth0.in_gua_range(*a)),
        "{on_net1:?}"
    );
    for (net, ifname) in [(&eth0.name, "eth0"), (&net1.name, "net1")] {
        let recs = records_of(&cd.data_dir, net, &id);
        assert_eq!(
            recs.len(),
            1,
            "{net}: {:?}",
            store_records(&cd.data_dir, net)
        );
        assert_eq!(recs[0]["ifname"], ifname);
        assert_eq!(recs[0]["podName"], "db-0");
    }
    assert_eq!(host_veths_of(&cd.node, &id).len(), 2);
    ping_from_sandbox(&netns, eth0.ula_gateway());

    cd.stop(&id);
    cd.remove(&id);
    assert_nothing_left(&cd, &[&eth0.name, &net1.name], &id);
    let mut left = Vec::new();
    collect_files(&cd.dir.join("multus"), &mut left);
    assert_eq!(left, Vec::<PathBuf>::new(), "multus cniDir emptied");
}

fn collect_files(d: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            collect_files(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// A reference chain on the same pod ranges: bridge (isGateway,
/// isDefaultGateway) + host-local + firewall (iptables), at `version`.
fn reference_conflist(net: &Cni6Net, version: &str, data_dir: &Path) -> Value {
    let ula = format!("{}/96", net.ula(0));
    let gua = format!("{}/96", net.gua(0));
    json!({
        "cniVersion": version,
        "name": net.name,
        "plugins": [
            { "type": "bridge", "bridge": net.bridge, "isGateway": true,
              "isDefaultGateway": true, "hairpinMode": true,
              "ipam": { "type": "host-local", "dataDir": data_dir,
                        "ranges": [
                            [ { "subnet": ula, "rangeStart": net.ula(0x10).to_string() } ],
                            [ { "subnet": gua, "rangeStart": net.gua(0x10).to_string() } ]
                        ] } },
            { "type": "firewall", "backend": "iptables" }
        ]
    })
}

/// Benchmark output, not an assertion on time: RunPodSandbox (the RPC
/// alone, timed in the CRI client) over 20 sandboxes per chain, each chain
/// on its own containerd 2: cni6 at 1.1.0, the upstream v1.9 reference
/// chain at 1.1.0, and Debian's 1.1.1 plugins at 1.0.0 (their newest
/// version). Sandboxes are started round-robin across the three, so a
/// change in the machine's load hits every chain alike.
#[test]
fn bench_run_pod_sandbox_20_cni6_vs_reference() {
    // (label, network index, reference plugin dir and cniVersion)
    type Chain = (&'static str, u8, Option<(PathBuf, &'static str)>);
    let chains: [Chain; 3] = [
        ("cni6 bridge6+ipam-prefix+firewall6 (1.1.0)", 54, None),
        (
            "upstream v1.9 bridge+host-local+firewall (1.1.0)",
            55,
            Some((harness::reference_dir(), V)),
        ),
        (
            "Debian 1.1.1 bridge+host-local+firewall (1.0.0)",
            57,
            Some((harness::debian_reference_dir(), "1.0.0")),
        ),
    ];
    struct Run {
        label: &'static str,
        cni6: bool,
        cd: Containerd,
        ids: Vec<String>,
        secs: Vec<f64>,
    }
    let mut runs: Vec<Run> = Vec::new();
    for (label, index, reference_chain) in chains {
        let net = Cni6Net::new("c62b", index);
        let spec = match &reference_chain {
            Some((dir, version)) => {
                let (n, version) = (net.clone(), version.to_string());
                ContainerdSpec {
                    conflist: Some(Box::new(move |d: &Path, _: &Path| {
                        reference_conflist(&n, &version, &d.join("host-local"))
                    })),
                    extra_bins: ["bridge", "host-local", "firewall"]
                        .iter()
                        .map(|p| {
                            let bin = dir.join(p);
                            assert!(bin.is_file(), "{} missing", bin.display());
                            (bin, p.to_string())
                        })
                        .collect(),
                }
            }
            None => ContainerdSpec::default(),
        };
        let cd = Containerd::start_v2("c62b", net, spec);
        runs.push(Run {
            label,
            cni6: reference_chain.is_none(),
            cd,
            ids: Vec::new(),
            secs: Vec::new(),
        });
    }
    for i in 0..20 {
        for r in runs.iter_mut() {
            let (id, s) =
                r.cd.run_pod(&format!("bench-{i}"), "bench", &format!("uid-bench-{i}"));
            r.ids.push(id);
            r.secs.push(s);
        }
    }
    let mut lines = Vec::new();
    for Run {
        label,
        cni6,
        cd,
        ids,
        secs,
    } in runs.iter_mut()
    {
        for id in ids.iter() {
            let (ip, _, _) = sandbox_ips(cd, id);
            assert!(cd.net.in_ula_range(ip), "{ip}");
        }
        lines.push(format!(
            "containerd 2 CRI RunPodSandbox, 20 sandboxes, {label}: p50 {:.1} ms, p95 {:.1} ms, min {:.1} ms, max {:.1} ms",
            percentile(secs, 50.0) * 1e3,
            percentile(secs, 95.0) * 1e3,
            percentile(secs, 0.0) * 1e3,
            percentile(secs, 100.0) * 1e3,
        ));
        for id in ids.iter() {
            cd.stop(id);
            cd.remove(id);
        }
        assert_eq!(cd.cri_ok(json!({"op": "list"})), json!([]));
        // Whichever chain: no pod's host veth is left in the node.
        let veths = cd
            .node
            .exec_ok(&["ip", "-o", "link", "show", "type", "veth"]);
        assert_eq!(veths.trim(), "", "{label}: veths left");
        if *cni6 {
            for id in ids.iter() {
                assert_nothing_left(cd, &[&cd.net.name.clone()], id);
            }
        }
    }
    for l in lines {
        println!("{l}");
    }
}

/// `cni6 status --json` on the node shows containerd 2's attachments.
#[test]
fn cni6_status_sees_containerd2_attachments() {
    let mut cd = Containerd::start_v2("c62c", Cni6Net::new("c62c", 56), ContainerdSpec::default());
    let (id, _) = cd.run_pod("ops-1", "ops", "uid-ops-1");
    cni6_sandbox(&mut cd, &id);
    let status = cni6_status(&cd);
    let allocs = status["networks"][0]["allocations"]
        .as_array()
        .unwrap_or_else(|| panic!("no allocations in {status}"));
    let a = allocs
        .iter()
        .find(|a| a["containerID"] == id.as_str())
        .unwrap_or_else(|| panic!("cni6 status does not list {id}: {status}"));
    assert_eq!(a["podName"], "ops-1", "{a}");
    assert_eq!(a["leaked"], false, "{a}");
    // containerd 2's conflist is at 1.1.0, so `cni6 status` asked the
    // plugins' STATUS too, and found the node healthy.
    assert_eq!(status["healthy"], true, "{status}");
    cd.stop(&id);
    cd.remove(&id);
}
