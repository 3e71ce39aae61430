//! The same checks against the reference `firewall` plugin
//! (upstream v1.9 `firewall` built by scripts/peers.sh, iptables backend), for contrast: where the
//! reference falls short, the firewall6 half of each test shows the
//! difference. Both run inside node namespaces of the test's own.

use conformance::firewall_helpers::{conf, firewall6, prev_result, Lab, Listener, RulesNode};
use conformance::harness::{self, container_id, Invocation};
use serde_json::{json, Value};
use std::net::Ipv6Addr;
use std::time::Duration;

const NET: &str = "cluster";
const T: Duration = Duration::from_millis(1500);

fn prev(version: &str, veth: &str, last: u16) -> Value {
    prev_result(
        version,
        "cni6br0",
        veth,
        "/var/run/netns/fw6-fake-pod",
        &[
            &format!("fd00:f6::1:1:0:{last:x}/96"),
            &format!("2001:db8:7:1:0:1:0:{last:x}/96"),
        ],
    )
}

fn ref_conf(version: &str, prev: &Value) -> Value {
    let mut c =
        json!({"cniVersion": version, "name": NET, "type": "firewall", "backend": "iptables"});
    if !prev.is_null() {
        c["prevResult"] = prev.clone();
    }
    c
}

fn ref_rules(node: &RulesNode) -> Vec<String> {
    node.rules()
        .into_iter()
        .filter(|l| l.starts_with("-A CNI-FORWARD -d ") || l.starts_with("-A CNI-FORWARD -s "))
        .collect()
}

/// conformance.md #28, conformance.md §3 #21: DEL without prevResult (runtime cache lost).
/// Reference: succeeds and leaves the pod's rules behind. firewall6: finds
/// them by their comment and removes them.
#[test]
fn del_without_prev_result() {
    // conformance.md #28

    let node = RulesNode::new();
    let rf = harness::reference("firewall");
    for v in ["0.4.0", "1.0.0"] {
        let cid = container_id("fw6r");
        node.call(
            &rf,
            "ADD",
            &cid,
            "/var/run/netns/x",
            &ref_conf(v, &prev(v, "veth1", 0x10)),
        )
        .assert_ok();
        assert_eq!(ref_rules(&node).len(), 4);
        node.call(&rf, "DEL", &cid, "", &ref_conf(v, &Value::Null))
            .assert_silent_ok();
        assert_eq!(
            ref_rules(&node).len(),
            4,
            "reference DEL without prevResult removed its rules?"
        );
        node.call(&rf, "DEL", &cid, "", &ref_conf(v, &prev(v, "veth1", 0x10)))
            .assert_silent_ok();
        assert!(ref_rules(&node).is_empty());

        let c = conf(v, NET, json!({}), &prev(v, "veth1", 0x10));
        node.fw("ADD", &cid, &c).assert_ok();
        assert_eq!(node.pod_rules(NET, &cid).len(), 5);
        Invocation::attachment(firewall6(), "DEL", &cid, "", "eth0")
            .in_netns(&node.ns)
            .stdin_json(&conf(v, NET, json!({}), &Value::Null))
            .run()
            .assert_silent_ok();
        assert!(node.pod_rules(NET, &cid).is_empty());
    }
}

/// conformance.md #33, 34: after the chains are damaged, the reference CHECK
/// re-creates them (a side effect) before failing; firewall6's CHECK fails
/// and leaves the ruleset byte for byte as it was.
#[test]
fn check_side_effects() {
    // conformance.md #33
    // conformance.md #34

    let node = RulesNode::new();
    let rf = harness::reference("firewall");
    let cid = container_id("fw6r");
    let rc = ref_conf("1.0.0", &prev("1.0.0", "veth1", 0x20));
    node.call(&rf, "ADD", &cid, "/var/run/netns/x", &rc)
        .assert_ok();
    node.call(&rf, "CHECK", &cid, "/var/run/netns/x", &rc)
        .assert_silent_ok();
    node.ip6tables(&["-F", "CNI-ADMIN"]);
    node.ip6tables(&["-F", "CNI-FORWARD"]);
    node.ip6tables(&["-D", "FORWARD", "1"]);
    node.ip6tables(&["-X", "CNI-FORWARD"]);
    node.ip6tables(&["-X", "CNI-ADMIN"]);
    let before = node.save();
    node.call(&rf, "CHECK", &cid, "/var/run/netns/x", &rc)
        .assert_failed();
    let after = node.save();
    assert_ne!(
        before, after,
        "the reference CHECK no longer re-creates chains?"
    );
    assert!(after.contains(":CNI-FORWARD"), "{after}");

    let cid = container_id("fw6c");
    let c = conf("1.0.0", NET, json!({}), &prev("1.0.0", "veth2", 0x21));
    node.fw("ADD", &cid, &c).assert_ok();
    node.drop_forward_jump();
    node.ip6tables(&["-F", "CNI6-FORWARD"]);
    node.ip6tables(&["-X", "CNI6-FORWARD"]);
    let before = node.save();
    node.fw("CHECK", &cid, &c).assert_error(102);
    assert_eq!(node.save(), before);
}

/// With real traffic: the reference (open ingress, no source check) lets
/// the outside in on any port and lets a spoofed source through the
/// bridge; firewall6 (cluster-only) refuses both.
#[test]
fn traffic_reference_vs_firewall6() {
    let lab = Lab::new();
    let rf = harness::reference("firewall");
    let foreign: Ipv6Addr = "fd00:f6::1:1:0:99".parse().unwrap();
    lab.a.ns.add_addr("eth0", &format!("{foreign}/128"));
    let mut added = Vec::new();
    for pod in [&lab.a, &lab.b] {
        let cid = container_id("fw6r");
        let rc = ref_conf("1.0.0", &pod.prev_result("1.0.0", &lab.bridge));
        lab.node
            .call(&rf, "ADD", &cid, &pod.path(), &rc)
            .assert_ok();
        added.push((cid, rc));
    }
    let l = Listener::new(lab.a.ns.path(), lab.a.gua, 8081);
    l.probe_retry(lab.outside.path(), None, T, 4)
        .expect("reference: outside → pod on any port");
    let lb = Listener::new(lab.b.ns.path(), lab.b.ula, 7001);
    assert_eq!(
        lb.probe_retry(lab.a.ns.path(), Some(foreign), T, 4)
            .unwrap(),
        foreign
    );
    for (cid, rc) in &added {
        lab.node.call(&rf, "DEL", cid, "", rc).assert_silent_ok();
    }

    let mut added = Vec::new();
    for pod in [&lab.a, &lab.b] {
        let cid = container_id("fw6t");
        let c = conf(
            "1.0.0",
            NET,
            json!({}),
            &pod.prev_result("1.0.0", &lab.bridge),
        );
        lab.node
            .call(&firewall6(), "ADD", &cid, &pod.path(), &c)
            .assert_ok();
        added.push((cid, c));
    }
    let l = Listener::new(lab.a.ns.path(), lab.a.gua, 8082);
    assert!(l.probe(lab.outside.path(), None, T).is_err());
    let lb = Listener::new(lab.b.ns.path(), lab.b.ula, 7002);
    assert!(lb.probe(lab.a.ns.path(), Some(foreign), T).is_err());
    for (cid, c) in &added {
        lab.node
            .call(&firewall6(), "DEL", cid, "", c)
            .assert_silent_ok();
    }
}
