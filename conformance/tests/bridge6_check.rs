//! bridge6 CHECK (conformance.md 1.E): passes right after ADD, tolerates what a
//! later plugin adds, fails when something from prevResult is gone.

use conformance::bridge_helpers::{self as bh, BridgeNet, Node};
use conformance::harness::{self, Invocation};
use conformance::ipam;
use serde_json::Value;

struct Attached {
    node: Node,
    pod: harness::Netns,
    net: BridgeNet,
    cid: String,
    result: Value,
}

fn attached(version: &str) -> Attached {
    let node = Node::new();
    let pod = bh::new_pod();
    let net = BridgeNet::new("brc");
    let cid = harness::container_id("b6chk");
    let result = net
        .add(&node, version, &cid, &pod, "eth0")
        .assert_ok()
        .clone();
    Attached {
        node,
        pod,
        net,
        cid,
        result,
    }
}

impl Attached {
    fn check(&self, version: &str) -> harness::Output {
        self.net.check(
            &self.node,
            version,
            &self.cid,
            &self.pod,
            "eth0",
            &self.result,
        )
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = self
            .net
            .del(&self.node, "1.0.0", &self.cid, &self.pod.path_str(), "eth0");
    }
}

#[test]
fn check_passes_after_add_at_every_check_version() {
    // conformance.md #36, 38: right after ADD, no stdout.
    for v in harness::versions_with_check() {
        let a = attached(v);
        a.check(v).assert_silent_ok();
    }
}

#[test]
fn check_before_0_4_is_error_1() {
    // conformance.md #31.
    let a = attached("1.0.0");
    for v in harness::versions_without_check() {
        a.check(v).assert_error(1);
    }
}

#[test]
fn check_without_prev_result_is_error_7() {
    // conformance.md #32.
    let a = attached("1.0.0");
    let out = a
        .net
        .call(&a.node, "CHECK", "1.0.0", &a.cid, &a.pod.path_str(), "eth0")
        .run();
    out.assert_error(7);
    assert!(out.msg().contains("prevResult"), "{}", out.msg());
}

#[test]
fn check_tolerates_later_changes() {
    // conformance.md #35: an extra address and an extra route do not matter.
    let a = attached("1.0.0");
    a.pod.add_addr("eth0", "fd00:c6b:35::5/64");
    a.pod
        .exec_ok(&["ip", "-6", "route", "add", "fd77::/16", "dev", "eth0"]);
    a.check("1.0.0").assert_silent_ok();
}

#[test]
fn check_fails_when_the_pod_address_is_deleted() {
    // conformance.md #33.
    let a = attached("1.0.0");
    let addr = ipam::result_addrs(&a.result)[0];
    a.pod
        .exec_ok(&["ip", "-6", "addr", "del", &addr.to_string(), "dev", "eth0"]);
    let out = a.check("1.0.0");
    out.assert_failed();
    assert!(out.msg().contains(&addr.to_string()), "{}", out.msg());
}

#[test]
fn check_fails_when_the_default_route_is_deleted() {
    // conformance.md #33.
    let a = attached("1.0.0");
    a.pod.exec_ok(&["ip", "-6", "route", "del", "default"]);
    let out = a.check("1.0.0");
    out.assert_failed();
    assert!(out.msg().contains("::/0"), "{}", out.msg());
}

#[test]
fn check_fails_when_the_host_veth_leaves_the_bridge() {
    let a = attached("1.0.0");
    let host = a.net.host_veth(&a.cid, "eth0");
    a.node.ns.exec_ok(&["ip", "link", "set", &host, "nomaster"]);
    let out = a.check("1.0.0");
    out.assert_failed();
    assert!(out.msg().contains(&host), "{}", out.msg());
}

#[test]
fn check_fails_when_the_mtu_changed() {
    let a = attached("1.0.0");
    a.pod.exec_ok(&["ip", "link", "set", "eth0", "mtu", "1300"]);
    let out = a.check("1.0.0");
    out.assert_failed();
    assert!(out.msg().contains("MTU"), "{}", out.msg());
}

#[test]
fn check_fails_when_the_ipam_record_is_gone() {
    // conformance.md #34, 37: IPAM CHECK runs first and its error is ours.
    let a = attached("1.0.0");
    for e in std::fs::read_dir(a.net.ipam.store().attachments_dir()).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    a.check("1.0.0").assert_failed();
}

#[test]
fn check_is_read_only() {
    // Running CHECK does not repair anything (it only reports).
    let a = attached("1.0.0");
    a.pod.exec_ok(&["ip", "-6", "route", "del", "default"]);
    a.check("1.0.0").assert_failed();
    assert!(bh::default_routes(&a.pod).is_empty());
    // And a CHECK with the IPAM plugin found through a different CNI_PATH
    // directory still passes on a healthy attachment (conformance.md #38).
    let b = attached("1.0.0");
    let other = harness::TempDir::new("b6path");
    harness::install_as(&harness::plugin("ipam-prefix"), other.path(), "ipam-prefix");
    let mut c = b.net.conf("1.0.0");
    c["prevResult"] = b.result.clone();
    Invocation::attachment(
        b.node.bin("bridge6"),
        "CHECK",
        &b.cid,
        &b.pod.path_str(),
        "eth0",
    )
    .cni_path(&[other.path()])
    .stdin_json(&c)
    .in_netns(&b.node.ns)
    .run()
    .assert_silent_ok();
}
