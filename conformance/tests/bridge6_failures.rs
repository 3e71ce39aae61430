//! bridge6 failure paths and DEL robustness, black-box: a failing ADD
//! leaves nothing behind (conformance.md #6, 19, 22, 23), DEL succeeds whatever
//! is already gone (25–30).

use conformance::bridge_helpers::{self as bh, BridgeNet, Node};
use conformance::harness::{self, snapshot, Invocation, Netns};
use conformance::ipam;
use serde_json::json;

const V: &str = "1.0.0";

/// Links of the node other than lo and the bridges a test expects.
fn node_veths(node: &Node) -> Vec<String> {
    bh::link_names(&node.ns)
        .into_iter()
        .filter(|n| n.starts_with("c6") && n.len() == 15)
        .collect()
}

/// A failed ADD left nothing: no allocation, no pod interface, no host veth.
fn assert_rolled_back(node: &Node, net: &BridgeNet, pod: &Netns) {
    assert!(net.ipam.store().is_empty(), "address not released");
    assert!(bh::link(pod, "eth0").is_none(), "pod interface left");
    assert!(node_veths(node).is_empty(), "host veth left");
}

#[test]
fn existing_ifname_fails_before_ipam_and_harms_nothing() {
    // conformance.md #19: CNI_IFNAME already exists in the netns.
    let node = Node::new();
    let pod = bh::new_pod();
    pod.add_veth("eth0", "spare0");
    let net = BridgeNet::new("br19");
    let before = snapshot(net.ipam.data_dir());
    let cid = harness::container_id("b6ex");
    let out = net.add(&node, V, &cid, &pod, "eth0");
    let e = out.assert_error(4);
    assert!(out.msg().contains("eth0"), "names the interface: {e}");
    assert_eq!(snapshot(net.ipam.data_dir()), before, "IPAM store touched");
    assert!(node_veths(&node).is_empty(), "stray host veth");
    // The pre-existing interface is untouched.
    assert!(bh::link(&pod, "eth0").is_some());
    assert!(bh::link(&pod, "spare0").is_some());
}

#[test]
fn duplicate_add_fails_and_keeps_the_first_attachment() {
    // conformance.md #22: ADD, ADD again → second fails; first IP still reserved,
    // first veth still present.
    let node = Node::new();
    let pod = bh::new_pod();
    let net = BridgeNet::new("br22");
    let cid = harness::container_id("b6dup");
    let first = net.add(&node, V, &cid, &pod, "eth0");
    let r = first.assert_ok().clone();
    let store_before = snapshot(net.ipam.data_dir());
    let again = net.add(&node, V, &cid, &pod, "eth0");
    again.assert_failed();
    assert_eq!(snapshot(net.ipam.data_dir()), store_before);
    assert!(bh::link(&node.ns, &net.host_veth(&cid, "eth0")).is_some());
    let addrs = ipam::result_addrs(&r);
    let have = bh::global_addrs6(&pod, "eth0");
    assert!(addrs
        .iter()
        .all(|a| have.iter().any(|h| h.addr == a.addr())));
    net.check(&node, V, &cid, &pod, "eth0", &r)
        .assert_silent_ok();
    // Same container, another netns, same ifname: the derived host veth
    // exists, so this is the same attachment again → refused, no IPAM DEL.
    let pod2 = bh::new_pod();
    let third = net.add(&node, V, &cid, &pod2, "eth0");
    third.assert_error(4);
    assert!(
        third.msg().contains(&net.host_veth(&cid, "eth0")),
        "{}",
        third.msg()
    );
    assert_eq!(snapshot(net.ipam.data_dir()), store_before);
    assert!(bh::link(&pod2, "eth0").is_none());
    net.del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
}

#[test]
fn late_failure_releases_the_address_and_the_veth() {
    // conformance.md #23: the IPAM ADD succeeded, adding a route in the pod
    // fails (the pod already has that exact route) → IPAM DEL, veth gone.
    let node = Node::new();
    let pod = bh::new_pod();
    pod.exec_ok(&["ip", "-6", "route", "add", "fd99::/16", "dev", "lo"]);
    let ipam_net = ipam::demo_net().set_ipam("routes", json!([{ "dst": "fd99::/16" }]));
    let net = BridgeNet::with_ipam(ipam_net, "br23");
    let cid = harness::container_id("b6late");
    let out = net.add(&node, V, &cid, &pod, "eth0");
    out.assert_failed();
    assert!(
        out.msg().contains("fd99::/16"),
        "the error names the route: {}",
        out.msg()
    );
    assert_rolled_back(&node, &net, &pod);
    // The runtime's DEL after a failed ADD (conformance.md #82) still succeeds.
    net.del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
    // And the next ADD of the pod works once the conflict is gone.
    pod.exec_ok(&["ip", "-6", "route", "del", "fd99::/16", "dev", "lo"]);
    net.add(&node, V, &cid, &pod, "eth0").assert_ok();
    net.del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
    assert!(net.ipam.store().is_empty());
}

#[test]
fn ipam_failure_removes_the_veth_made_meanwhile() {
    // conformance.md #23: bridge6 makes the veth while IPAM ADD runs (issue 7);
    // when IPAM fails, its error is the answer and the veth goes again.
    let node = Node::new();
    let pod = bh::new_pod();
    let ipam_net = ipam::demo_net().set_ipam("subnetId", json!("one"));
    let net = BridgeNet::with_ipam(ipam_net, "br23i");
    let cid = harness::container_id("b6ipf");
    let out = net.add(&node, V, &cid, &pod, "eth0");
    out.assert_error(7);
    assert!(
        out.msg().contains("subnetId"),
        "IPAM's error: {}",
        out.msg()
    );
    assert_rolled_back(&node, &net, &pod);
    net.del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
}

#[test]
fn not_a_netns_fails_cleanly() {
    // conformance.md #6: a regular file and the plugin's own namespace.
    let node = Node::new();
    let net = BridgeNet::new("br6");
    let tmp = harness::TempDir::new("b6file");
    let file = tmp.join("not-a-netns");
    std::fs::write(&file, b"").unwrap();
    for netns in [file.display().to_string(), "/proc/self/ns/net".to_string()] {
        let cid = harness::container_id("b6ns");
        let out = net.call(&node, "ADD", V, &cid, &netns, "eth0").run();
        out.assert_error(4);
        assert!(out.msg().contains("CNI_NETNS"), "{}", out.msg());
        assert!(net.ipam.store().is_empty());
        assert!(node_veths(&node).is_empty());
        // DEL for the same attachment is fine.
        net.del(&node, V, &cid, &netns, "eth0").assert_silent_ok();
    }
}

#[test]
fn bridge_name_taken_by_another_link_is_error_7() {
    let node = Node::new();
    node.ns.add_veth("brx", "brxpeer");
    let pod = bh::new_pod();
    let net = BridgeNet::new("brx");
    let cid = harness::container_id("b6nb");
    let out = net.add(&node, V, &cid, &pod, "eth0");
    out.assert_error(7);
    assert!(
        out.msg().contains("bridge") && out.msg().contains("brx"),
        "{}",
        out.msg()
    );
    assert!(net.ipam.store().is_empty());
    assert!(bh::link(&pod, "eth0").is_none());
    // STATUS says the same (conformance.md #42: 50, not able to serve ADD).
    net.status(&node).assert_error(50);
}

#[test]
fn del_after_netns_is_gone() {
    // conformance.md #27: ADD; delete the pod netns; DEL → 0, address freed.
    let node = Node::new();
    let net = BridgeNet::new("br27");
    let cid = harness::container_id("b6gone");
    let netns_path;
    {
        let pod = bh::new_pod();
        netns_path = pod.path_str();
        net.add(&node, V, &cid, &pod, "eth0").assert_ok();
    } // pod namespace deleted here
    for _ in 0..2 {
        net.del(&node, V, &cid, &netns_path, "eth0")
            .assert_silent_ok();
    }
    assert!(net.ipam.store().is_empty());
    assert!(node_veths(&node).is_empty());
}

#[test]
fn del_with_empty_netns_removes_host_side_and_address() {
    // conformance.md #27 (empty CNI_NETNS, nerdctl/ctr style; conformance.md §3 #16, #17).
    let node = Node::new();
    let pod = bh::new_pod();
    let net = BridgeNet::new("br27e");
    let cid = harness::container_id("b6empty");
    net.add(&node, V, &cid, &pod, "eth0").assert_ok();
    net.del(&node, V, &cid, "", "eth0").assert_silent_ok();
    assert!(net.ipam.store().is_empty());
    assert!(bh::link(&node.ns, &net.host_veth(&cid, "eth0")).is_none());
    // The pod end went with the host end.
    assert!(bh::link(&pod, "eth0").is_none());
}

#[test]
fn del_of_something_never_added_and_without_cni_netns() {
    // conformance.md #26, 28: DEL of a random id, with and without CNI_NETNS.
    let node = Node::new();
    let pod = bh::new_pod();
    let net = BridgeNet::new("br26");
    net.del(&node, V, "neveradded1", &pod.path_str(), "eth0")
        .assert_silent_ok();
    Invocation::attachment(node.bin("bridge6"), "DEL", "neveradded2", "", "eth0")
        .unset("CNI_NETNS")
        .stdin_json(&net.conf(V))
        .in_netns(&node.ns)
        .run()
        .assert_silent_ok();
}

#[test]
fn del_leaves_a_foreign_interface_alone() {
    // A failed ADD (ifname taken by someone else) is followed by the
    // runtime's DEL: bridge6 deletes only its own veth, not the pod's
    // foreign eth0.
    let node = Node::new();
    let pod = bh::new_pod();
    pod.add_veth("eth0", "spare0");
    let net = BridgeNet::new("brf");
    let cid = harness::container_id("b6for");
    net.add(&node, V, &cid, &pod, "eth0").assert_failed();
    net.del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
    assert!(bh::link(&pod, "eth0").is_some(), "foreign eth0 deleted");
}

#[test]
fn malformed_keys_are_error_7_naming_the_key() {
    let node = Node::new();
    let pod = bh::new_pod();
    for (k, v) in [
        ("mtu", json!(100)),
        ("mtu", json!("1500")),
        ("bridge", json!("a/b")),
        ("hairpinMode", json!("yes")),
        ("defaultRoute", json!("no")),
    ] {
        let net = BridgeNet::new("brk").key(k, v.clone());
        let mut conf = net.conf(V);
        if k == "bridge" {
            conf["bridge"] = v.clone();
        }
        let out = Invocation::attachment(
            node.bin("bridge6"),
            "ADD",
            &harness::container_id("b6key"),
            &pod.path_str(),
            "eth0",
        )
        .stdin_json(&conf)
        .in_netns(&node.ns)
        .run();
        out.assert_error(7);
        assert!(out.msg().contains(k), "{k}: {}", out.msg());
        assert!(net.ipam.store().is_empty());
    }
    // conformance.md #15: ipMasq:true is rejected (2), never silently ignored.
    let net = BridgeNet::new("brk").key("ipMasq", json!(true));
    let out = net.add(&node, V, &harness::container_id("b6masq"), &pod, "eth0");
    out.assert_error(2);
    assert!(out.msg().contains("ipMasq"));
    // Unknown keys and runtime-owned keys are ignored (conformance.md #14).
    let net = BridgeNet::new("brk")
        .key("foo", json!({"bar": 1}))
        .key("capabilities", json!({"ips": true}))
        .key("cni.dev/x", json!(1));
    let cid = harness::container_id("b6unk");
    net.add(&node, V, &cid, &pod, "eth0").assert_ok();
    net.del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
}

#[test]
fn existing_stp_bridge_is_used_without_waiting() {
    // An operator's bridge with STP on: a new port listens/learns for
    // 2 x forward delay. ADD neither waits for that nor fails; it says on
    // stderr that the port does not carry traffic yet. The operator's
    // address stays untouched.
    let node = Node::new();
    node.ns.exec_ok(&[
        "ip",
        "link",
        "add",
        "brstp",
        "type",
        "bridge",
        "stp_state",
        "1",
    ]);
    node.ns.exec_ok(&["ip", "link", "set", "brstp", "up"]);
    node.ns.add_addr("brstp", "fd00:c6b:5::1/64");
    let pod = bh::new_pod();
    let net = BridgeNet::new("brstp");
    let cid = harness::container_id("b6stp");
    let t = std::time::Instant::now();
    let out = net.add(&node, V, &cid, &pod, "eth0");
    let took = t.elapsed();
    out.assert_ok();
    assert!(
        took < std::time::Duration::from_secs(2),
        "ADD took {took:?}"
    );
    assert!(
        out.stderr.contains("not carrying traffic yet"),
        "{}",
        out.stderr
    );
    let hv = bh::link(&node.ns, &net.host_veth(&cid, "eth0")).unwrap();
    assert_ne!(
        hv["linkinfo"]["info_slave_data"]["state"], "forwarding",
        "{hv}"
    );
    assert!(bh::global_addrs6(&node.ns, "brstp")
        .iter()
        .any(|a| a.addr.to_string() == "fd00:c6b:5::1" && a.prefix_len == 64));
    net.del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
    assert!(bh::link(&node.ns, "brstp").is_some());
}
