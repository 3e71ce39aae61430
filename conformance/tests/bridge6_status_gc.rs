//! bridge6 STATUS (conformance.md 1.G) and GC (1.H), and the forwarding
//! decision (conformance.md §3 #8): raise accept_ra 1 → 2 before turning
//! forwarding on; STATUS 51 when an interface that relies on RAs (a
//! finite-lifetime address or an RA route) would ignore them.

use conformance::bridge_helpers::{self as bh, BridgeNet, Node};
use conformance::harness::{self, Invocation};
use conformance::ipam::IpamNet;

const V: &str = "1.1.0";

#[test]
fn forwarding_is_enabled_without_breaking_ra_uplinks() {
    let node = Node::new();
    // Two uplinks: one takes RAs (accept_ra=1), one never did (0).
    node.ns.add_veth("c6bra", "c6brap");
    node.ns.add_veth("c6bst", "c6bstp");
    node.set_sysctl("c6bra", "accept_ra", "1");
    node.set_sysctl("c6bst", "accept_ra", "0");
    assert_eq!(node.sysctl("all", "forwarding"), "0");
    let net = BridgeNet::new("brf");
    // Healthy before any ADD (forwarding off: nothing ignores RAs).
    net.status(&node).assert_silent_ok();

    let pod = bh::new_pod();
    let cid = harness::container_id("b6fwd");
    let out = net.add(&node, V, &cid, &pod, "eth0");
    out.assert_ok();
    assert_eq!(node.sysctl("all", "forwarding"), "1");
    assert_eq!(
        node.sysctl("c6bra", "accept_ra"),
        "2",
        "raised before forwarding"
    );
    assert_eq!(node.sysctl("c6bst", "accept_ra"), "0", "0 stays 0");
    assert_eq!(node.sysctl("default", "accept_ra"), "2");
    assert_eq!(
        node.sysctl("brf", "accept_ra"),
        "0",
        "bridge never takes RAs"
    );
    assert!(out.stderr.contains("c6bra"), "logged: {}", out.stderr);
    net.status(&node).assert_silent_ok();

    // An interface that appears later with accept_ra=1 now ignores RAs.
    // Statically configured, it depends on none: STATUS stays healthy (a
    // node with forwarding and static uplinks must not become NotReady).
    node.ns.add_veth("c6blate", "c6blatep");
    node.set_sysctl("c6blate", "accept_ra", "1");
    node.set_sysctl("c6blatep", "accept_ra", "0");
    node.ns.exec_ok(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:77::5/64",
        "dev",
        "c6blate",
    ]);
    net.status(&node).assert_silent_ok();
    // With a finite-lifetime (SLAAC/DHCPv6-like) address it relies on RAs
    // it now ignores: STATUS 51 naming it; ADD still works (conformance.md #44).
    node.ns.exec_ok(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:78::5/64",
        "dev",
        "c6blate",
        "valid_lft",
        "3600",
        "preferred_lft",
        "3600",
    ]);
    let st = net.status(&node);
    st.assert_error(51);
    assert!(st.msg().contains("c6blate"), "{}", st.msg());
    let pod2 = bh::new_pod();
    let cid2 = harness::container_id("b6fwd");
    net.add(&node, V, &cid2, &pod2, "eth0").assert_ok();
    // Forwarding was already on: ADD no longer touches accept_ra.
    assert_eq!(node.sysctl("c6blate", "accept_ra"), "1");
    node.set_sysctl("c6blate", "accept_ra", "2");
    net.status(&node).assert_silent_ok();
    for (c, p) in [(&cid, &pod), (&cid2, &pod2)] {
        net.del(&node, V, c, &p.path_str(), "eth0")
            .assert_silent_ok();
    }
}

#[test]
fn status_needs_1_1_and_forwards_to_ipam() {
    let node = Node::new();
    let net = BridgeNet::new("brs");
    // conformance.md #45: < 1.1.0 is error 1.
    net.network_call(&node, "STATUS", &net.conf("1.0.0"))
        .assert_error(1);
    // conformance.md #43: IPAM missing from CNI_PATH → STATUS fails.
    let empty = harness::TempDir::new("b6empty");
    let out = Invocation::network(node.bin("bridge6"), "STATUS")
        .cni_path(&[empty.path()])
        .stdin_json(&net.conf(V))
        .in_netns(&node.ns)
        .run();
    out.assert_failed();
    assert!(out.msg().contains("ipam-prefix"), "{}", out.msg());
    // A bad ipam config is IPAM's error, passed through.
    let bad = BridgeNet::with_ipam(
        IpamNet::new(&["fd8c:1f0a:77e3:0:1::/80"]).set_ipam("prefixes", serde_json::json!("x")),
        "brs",
    );
    let out = bad.status(&node);
    out.assert_error(7);
    assert!(out.msg().contains("prefixes"), "{}", out.msg());
}

#[test]
fn gc_removes_only_stale_attachments_of_this_network() {
    // conformance.md #47-50: ADD A, B on network N and C on network M sharing
    // the same bridge; GC(N, [A]) → B's veth and address go; A and C stay.
    let node = Node::new();
    let n = BridgeNet::new("brgc");
    let m = BridgeNet::with_ipam(n.ipam.sibling(&["fd8c:1f0a:77e3:0:9::/80"]), "brgc");
    let pods: Vec<_> = (0..3).map(|_| bh::new_pod()).collect();
    let ids: Vec<String> = (0..3).map(|_| harness::container_id("b6gc")).collect();
    n.add(&node, V, &ids[0], &pods[0], "eth0").assert_ok();
    n.add(&node, V, &ids[1], &pods[1], "eth0").assert_ok();
    m.add(&node, V, &ids[2], &pods[2], "eth0").assert_ok();
    let veth = |net: &BridgeNet, i: usize| net.host_veth(&ids[i], "eth0");

    // No list: nothing removed (conformance.md #47).
    n.gc(&node, None).assert_silent_ok();
    for (net, i) in [(&n, 0), (&n, 1), (&m, 2)] {
        assert!(bh::link(&node.ns, &veth(net, i)).is_some());
    }

    n.gc(&node, Some(&[(ids[0].as_str(), "eth0")]))
        .assert_silent_ok();
    assert!(bh::link(&node.ns, &veth(&n, 0)).is_some(), "A kept");
    assert!(bh::link(&node.ns, &veth(&n, 1)).is_none(), "B removed");
    assert!(
        bh::link(&node.ns, &veth(&m, 2)).is_some(),
        "C (other network) kept"
    );
    assert!(bh::link(&pods[1], "eth0").is_none());
    let n_records = n.ipam.store().attachment_names();
    assert_eq!(n_records.len(), 1, "{n_records:?}");
    assert!(m.ipam.store().record(&ids[2], "eth0").is_some());
    // A still works.
    let ra = n.add(&node, V, &ids[0], &pods[0], "eth0");
    ra.assert_failed(); // already attached (conformance.md #22)
                        // An empty list on M removes C.
    m.gc(&node, Some(&[])).assert_silent_ok();
    assert!(bh::link(&node.ns, &veth(&m, 2)).is_none());
    assert!(m.ipam.store().is_empty());
    // GC < 1.1.0 is error 1 (conformance.md #51).
    n.network_call(&node, "GC", &n.conf("1.0.0"))
        .assert_error(1);
    n.del(&node, V, &ids[0], "", "eth0").assert_silent_ok();
}
