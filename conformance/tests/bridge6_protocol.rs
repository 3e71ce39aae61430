//! bridge6 as a CNI executable (conformance.md 1.A, 9, 10, 65), at every
//! version, plus concurrent ADD/DEL of many pods on a fresh node (the
//! bridge, its gateways and the forwarding sysctls are then made by racing
//! invocations; conformance.md #81, 83).

use conformance::bridge_helpers::{self as bh, BridgeNet, Node};
use conformance::harness::{self, Invocation, TempDir, ALL_VERSIONS};
use std::collections::BTreeSet;

#[test]
fn invocation_rules_at_every_version() {
    let node = Node::new();
    let pod = bh::new_pod();
    let net = BridgeNet::new("brp");
    let pod_path = pod.path_str();
    for v in ALL_VERSIONS {
        let add = |cid: &str, ifname: &str| {
            Invocation::attachment(node.bin("bridge6"), "ADD", cid, &pod_path, ifname)
                .stdin_json(&net.conf(v))
                .in_netns(&node.ns)
        };
        // conformance.md #2: unknown verb → 4.
        add("b6p1", "eth0").command("BOGUS").run().assert_error(4);
        // conformance.md #3: each required variable, unset or empty → 4 naming it.
        for var in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
            let out = add("b6p1", "eth0").unset(var).run();
            out.assert_error(4);
            assert!(out.msg().contains(var), "{v} {var}: {}", out.msg());
            let out = add("b6p1", "eth0").var(var, "").run();
            out.assert_error(4);
            assert!(out.msg().contains(var), "{v} {var} empty: {}", out.msg());
        }
        // conformance.md #4 (1.0+; we apply it everywhere) and 5.
        add("-x/y", "eth0").run().assert_error(4);
        add("b6p1", "0123456789abcdef").run().assert_error(4);
        add("b6p1", "a:b").run().assert_error(4);
        // conformance.md #9: undecodable stdin → 6; no name → 7.
        add("b6p1", "eth0").stdin("{").run().assert_error(6);
        add("b6p1", "eth0").stdin("{}").run().assert_error(7);
        // conformance.md #7: unknown CNI_ARGS keys need IgnoreUnknown.
        add("b6p1", "eth0").args("FOO=b").run().assert_error(4);
        assert!(net.ipam.store().is_empty(), "{v}: a refused call allocated");
        assert!(bh::link(&pod, "eth0").is_none());
        // ... and with it (and K8s keys) ADD works; then DEL.
        let cid = harness::container_id("b6args");
        add(&cid, "eth0")
            .args("IgnoreUnknown=1;K8S_POD_NAME=a;K8S_POD_NAMESPACE=b;FOO=b")
            .run()
            .assert_ok();
        net.del(&node, v, &cid, &pod_path, "eth0")
            .assert_silent_ok();
    }
    // conformance.md #65: unsupported version → 1 before any side effect.
    let mut c = net.conf("1.0.0");
    c["cniVersion"] = "9.9.9".into();
    let out = Invocation::attachment(node.bin("bridge6"), "ADD", "b6p9", &pod_path, "eth0")
        .stdin_json(&c)
        .in_netns(&node.ns)
        .run();
    out.assert_error(1);
    assert!(bh::link(&pod, "eth0").is_none());
    assert!(
        bh::link(&node.ns, "brp").is_some(),
        "bridge of the earlier ADDs"
    );
}

#[test]
fn about_text_without_command() {
    // conformance.md #12.
    let node = Node::new();
    let out = Invocation::new(node.bin("bridge6"), "")
        .unset("CNI_COMMAND")
        .run();
    assert_eq!(out.code, Some(0));
    assert!(out.stdout.is_empty());
    assert!(out.stderr.contains("bridge6"), "{}", out.stderr);
}

#[test]
fn ipam_found_in_the_second_cni_path_dir() {
    // conformance.md #8, 76.
    let node = Node::new();
    let pod = bh::new_pod();
    let net = BridgeNet::new("brpath");
    let (a, b) = (TempDir::new("b6pa"), TempDir::new("b6pb"));
    harness::install_as(&harness::plugin("ipam-prefix"), b.path(), "ipam-prefix");
    let cid = harness::container_id("b6path");
    let call = |cmd: &str, dirs: &[&std::path::Path]| {
        Invocation::attachment(node.bin("bridge6"), cmd, &cid, &pod.path_str(), "eth0")
            .cni_path(dirs)
            .stdin_json(&net.conf("1.0.0"))
            .in_netns(&node.ns)
            .run()
    };
    // Missing from CNI_PATH: error, nothing created.
    let out = call("ADD", &[a.path()]);
    out.assert_error(7);
    assert!(out.msg().contains("ipam-prefix"), "{}", out.msg());
    assert!(bh::link(&pod, "eth0").is_none());
    call("ADD", &[a.path(), b.path()]).assert_ok();
    call("DEL", &[a.path(), b.path()]).assert_silent_ok();
    assert!(net.ipam.store().is_empty());
}

#[test]
fn concurrent_adds_on_a_fresh_node() {
    const PODS: usize = 16;
    let node = Node::new();
    let net = BridgeNet::new("brcc");
    let pods: Vec<_> = (0..PODS).map(|_| bh::new_pod()).collect();
    let ids: Vec<String> = (0..PODS).map(|_| harness::container_id("b6cc")).collect();
    let running: Vec<_> = pods
        .iter()
        .zip(&ids)
        .map(|(p, c)| {
            net.call(&node, "ADD", "1.0.0", c, &p.path_str(), "eth0")
                .spawn()
        })
        .collect();
    let mut addrs = BTreeSet::new();
    for r in running {
        let out = r.wait();
        let res = out.assert_ok();
        for a in conformance::ipam::result_addrs(res) {
            assert!(addrs.insert(a.addr()), "address {a} handed out twice");
        }
    }
    // One bridge, one copy of each gateway, every pod up and reachable
    // from its neighbour.
    let br = bh::global_addrs6(&node.ns, "brcc");
    assert_eq!(br.len(), 2, "{br:?}");
    let ports = bh::link_names(&node.ns)
        .into_iter()
        .filter(|n| n.starts_with("c6"))
        .count();
    assert_eq!(ports, PODS);
    let b0 = bh::global_addrs6(&pods[1], "eth0")[0].addr;
    bh::tcp_round_trip(&pods[0], &pods[1], b0);
    let running: Vec<_> = pods
        .iter()
        .zip(&ids)
        .map(|(p, c)| {
            net.call(&node, "DEL", "1.0.0", c, &p.path_str(), "eth0")
                .spawn()
        })
        .collect();
    for r in running {
        r.wait().assert_silent_ok();
    }
    assert!(net.ipam.store().is_empty());
    assert_eq!(
        bh::link_names(&node.ns)
            .into_iter()
            .filter(|n| n.starts_with("c6"))
            .count(),
        0
    );
}
