//! IPv6-only pods reach the IPv4 internet through one IPv4-enabled node:
//! node 1 has an IPv4 uplink into the lab's "IPv4 internet" and runs tayga
//! (NAT64 for its `C:1:64::/96`) and unbound's DNS64, configured with what
//! `cni6 nat64` prints. A pod on node 2 resolves a name that has only an A
//! record, gets an AAAA in node 1's /96 and opens TCP to the IPv4-only
//! host through it. The fabric is BGP (full mesh, `cni6 routes`): the /96
//! lies inside node 1's /80, so no route is added for it.
//!
//! Needs root, bird2, tayga, unbound (scripts/install-deps.sh), /dev/net/tun
//! and built binaries.

use conformance::fabric::{self, Nat64Config};
use conformance::harness;
use conformance::topology::{Binaries, Spec, Topology};
use std::net::{IpAddr, Ipv6Addr};
use std::process::Command;
use std::time::Duration;

#[test]
fn pod_on_another_node_reaches_an_ipv4_only_host_by_name() {
    harness::require_root();
    assert!(
        std::path::Path::new("/dev/net/tun").exists(),
        "tayga needs /dev/net/tun (modprobe tun)"
    );
    let bins = Binaries::from_dir(&harness::bin_dir()).unwrap_or_else(|e| panic!("{e}"));
    let mut spec = Spec::new("c6n64", 2);
    spec.static_routes = false;
    let mut topo = Topology::build(spec).expect("build topology");
    topo.write_cluster_conflists().expect("conflists");

    // The fabric: BGP full mesh from `cni6 routes`.
    let nodes: Vec<String> = topo
        .nodes()
        .iter()
        .map(|n| {
            format!(
                "node{}={},{}@{}",
                n.index, n.ula_prefix, n.gua_prefix, n.underlay_addr
            )
        })
        .collect();
    for n in 1..=2u16 {
        let mut args = vec!["routes", "--format", "bird", "--hold", "3"];
        for spec in &nodes {
            args.extend(["--node", spec]);
        }
        let me = format!("node{n}");
        args.extend(["--self", &me]);
        let conf = harness::cni6_ok(&args);
        fabric::start_bird(&mut topo, n, &conf).expect("bird");
    }
    for n in 1..=2 {
        fabric::wait_established(
            &fabric::bird_socket(&topo, Some(n)),
            1,
            Duration::from_secs(30),
        )
        .expect("BGP");
    }

    // Node 1 is IPv4-enabled: uplink, NAT64, DNS64.
    fabric::add_ipv4_internet(&mut topo, 1).expect("IPv4 internet");
    let (conf, data) = fabric::nat64_paths(&topo, 1);
    let prefix = topo.node(1).ula_prefix.to_string();
    let (conf_s, data_s) = (conf.display().to_string(), data.display().to_string());
    let out = |format: &str| {
        harness::cni6_ok(&[
            "nat64",
            "--node-prefix",
            &prefix,
            "--ipv4-pool",
            fabric::NAT64_POOL,
            "--uplink",
            "eth1",
            "--conf",
            &conf_s,
            "--data-dir",
            &data_s,
            "--format",
            format,
        ])
    };
    let cfg = Nat64Config {
        tayga: out("tayga"),
        commands: out("commands"),
        unbound: out("unbound"),
        conf,
        dns: Ipv6Addr::from(u128::from(topo.node(1).ula_prefix.network()) | 0x53),
    };
    let nat64_prefix = Ipv6Addr::from(u128::from(topo.node(1).ula_prefix.network()) | (0x64 << 32));
    assert!(
        cfg.tayga.contains(&format!("prefix {nat64_prefix}/96")),
        "{}",
        cfg.tayga
    );
    fabric::start_nat64(&mut topo, 1, &cfg).expect("NAT64 and DNS64");

    // A pod on node 2, IPv6-only.
    let pod = topo.add_pod(2).unwrap();
    let addrs = topo.attach(&bins, &pod).expect("attach");
    let v4_in_pod = Command::new("ip")
        .args(["-n", &pod.name, "-4", "addr", "show", "scope", "global"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&v4_in_pod.stdout).trim().is_empty(),
        "the pod has IPv4"
    );

    // The name has only an A record: DNS64 synthesises the AAAA.
    let aaaa = fabric::resolve_aaaa(
        &pod.path,
        cfg.dns,
        fabric::IPV4_HOST_NAME,
        Duration::from_secs(3),
    )
    .expect("resolve through DNS64");
    let want = Ipv6Addr::from(u128::from(nat64_prefix) | u128::from(u32::from(fabric::IPV4_HOST)));
    assert_eq!(aaaa, vec![want], "synthesised AAAA");

    // No route for the /96 anywhere but on node 1: node 2 reaches it with
    // its one BGP route to node 1's /80.
    let n2 = topo.node(2).netns.clone();
    let r = topo
        .ip(&n2, &["-6", "route", "get", &want.to_string()])
        .unwrap();
    assert!(
        r.contains(&format!("via {}", topo.node(1).underlay_addr)),
        "{r}"
    );
    let (hops, proto) = fabric::kernel_route(&topo, &n2, &topo.node(1).ula_prefix).unwrap();
    assert_eq!((hops.len(), proto.as_deref()), (1, Some("bird")));

    let internet = topo.host(fabric::INTERNET).unwrap().netns_path();
    let x = fabric::tcp_via_nat64(&internet, &pod.path, want, Duration::from_secs(5))
        .expect("TCP from the pod to the IPv4-only host");
    // The IPv4 host sees the node's uplink address: masqueraded.
    assert_eq!(x.peer.ip(), IpAddr::V4(fabric::UPLINK_NODE));
    println!(
        "MEASURE nat64: pod {} -> {} ({}) in {:.1} ms, seen as {}",
        addrs.ula.addr(),
        fabric::IPV4_HOST_NAME,
        want,
        x.elapsed.as_secs_f64() * 1e3,
        x.peer
    );

    // Without DNS64 the name does not resolve to anything IPv6 by itself:
    // the IPv4 internet's own server has no AAAA.
    let direct = fabric::resolve_aaaa(
        &topo.node(1).netns_path(),
        Ipv6Addr::from(u128::from(nat64_prefix) | u128::from(u32::from(fabric::IPV4_DNS))),
        fabric::IPV4_HOST_NAME,
        Duration::from_secs(3),
    )
    .expect("ask the IPv4 server through NAT64");
    assert!(direct.is_empty(), "{direct:?}");
}

/// `cni6 demo --fabric bgp --nat64` as a newcomer runs it: BGP sessions up,
/// the routes learned, every pod reaching every other, and the IPv4-only
/// host reached by name from a pod on node 2.
#[test]
fn demo_shows_bgp_and_nat64() {
    harness::require_root();
    let bin = harness::bin_dir();
    let out = Command::new(bin.join("cni6"))
        .args(["--json", "demo", "--fabric", "bgp", "--nat64", "--bin-dir"])
        .arg(&bin)
        .output()
        .expect("run cni6 demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let sessions = doc["bgp"]["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 2, "{doc}");
    assert!(sessions.iter().all(|s| s["info"] == "Established"), "{doc}");
    // Each of the 2 nodes learned the other's ULA and GUA /80.
    assert_eq!(doc["bgp"]["learned"].as_array().unwrap().len(), 4, "{doc}");
    let reach = doc["reachability"].as_array().unwrap();
    assert!(!reach.is_empty() && reach.iter().all(|r| r["ok"] == true));
    assert_eq!(doc["ipv4"]["ok"], true, "{doc}");
    assert_eq!(doc["ipv4"]["name"], fabric::IPV4_HOST_NAME);
    assert!(doc["ipv4"]["seenAs"]
        .as_str()
        .unwrap()
        .starts_with(&fabric::UPLINK_NODE.to_string()));
}
