//! A pod bridge that also holds an uplink (docs/security.md, "shared
//! bridge"): the kernel's port isolation only stops isolated-to-isolated,
//! so an isolated pod port still reaches a port that is not isolated, and
//! through it every host of the uplink's LAN at layer 2, past firewall6.
//!
//! The node namespace holds an operator's bridge with a veth "uplink"
//! whose peer sits in a second namespace, the LAN host. bridge6 ADD on
//! that bridge is refused before IPAM runs; with the uplink isolated, ADD
//! succeeds and a raw frame from the pod to the LAN host's MAC does not
//! arrive; the control turns isolation off again and the same frame does
//! arrive (what the refusal prevents), and CHECK, `cni6 status` and
//! `cni6 lint` then flag the bridge.
//!
//! Needs root and built binaries (CNI6_BIN_DIR, default target/release).

use conformance::attacks::{self, Capture, Mac, RawPort};
use conformance::bridge_helpers::{self as bh, BridgeNet, Node};
use conformance::harness::{self, snapshot, Netns, TempDir};
use serde_json::json;
use std::time::Duration;

const V: &str = "1.0.0";
const BRIDGE: &str = "brlan";
const UPLINK: &str = "up0";
/// The LAN host's end of the uplink.
const LAN_IF: &str = "lan0";
const WAIT: Duration = Duration::from_secs(3);
/// How long a frame that must not arrive is given to arrive anyway.
const QUIET: Duration = Duration::from_secs(1);

/// A node whose bridge `brlan` holds the uplink `up0` (not isolated), the
/// LAN host behind it, and a bridge6 network on that bridge.
struct Lan {
    node: Node,
    host: Netns,
    net: BridgeNet,
}

impl Lan {
    fn new() -> Lan {
        let node = Node::new();
        let host = Netns::new(&format!("{}l", bh::NETNS_PREFIX));
        let n = &node.ns;
        // As `cni6 install --prepare-node` leaves a node, so `status` is
        // healthy but for what this test breaks.
        n.bridge_nf_call_ip6tables_off();
        n.exec_ok(&["ip", "link", "add", BRIDGE, "type", "bridge"]);
        n.exec_ok(&["ip", "link", "set", BRIDGE, "up"]);
        let lan = Lan {
            node,
            host,
            net: BridgeNet::new(BRIDGE),
        };
        lan.enslave_uplink(BRIDGE);
        lan
    }

    /// The uplink `up0` (its peer the LAN host's `lan0`) into `bridge`, up
    /// and not isolated.
    fn enslave_uplink(&self, bridge: &str) {
        let n = &self.node.ns;
        n.exec_ok(&[
            "ip",
            "link",
            "add",
            UPLINK,
            "type",
            "veth",
            "peer",
            "name",
            LAN_IF,
            "netns",
            self.host.name(),
        ]);
        n.exec_ok(&["ip", "link", "set", UPLINK, "master", bridge, "up"]);
        self.host.exec_ok(&["ip", "link", "set", LAN_IF, "up"]);
    }

    fn isolate_uplink(&self, on: bool) {
        let flag = if on { "on" } else { "off" };
        self.node
            .ns
            .exec_ok(&["bridge", "link", "set", "dev", UPLINK, "isolated", flag]);
    }

    /// Host veths of bridge6 in the node.
    fn host_veths(&self) -> Vec<String> {
        bh::link_names(&self.node.ns)
            .into_iter()
            .filter(|n| n.starts_with("c6") && n.len() == 15)
            .collect()
    }

    /// The network as a one-plugin conflist in `dir`, for the operator tool.
    fn conflist(&self, dir: &TempDir) -> String {
        let mut plugin = self.net.conf(V);
        let obj = plugin.as_object_mut().unwrap();
        obj.remove("name");
        obj.remove("cniVersion");
        let list = json!({"cniVersion": V, "name": self.net.name(), "plugins": [plugin]});
        let path = dir.join("10-lan.conflist");
        std::fs::write(&path, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
        path.display().to_string()
    }

    /// `cni6 <args>` in the node: (exit code, stdout and stderr).
    fn cni6(&self, args: &[&str]) -> (i32, String) {
        let bin = harness::plugin("cni6");
        let mut cmd = vec![bin.to_str().unwrap()];
        cmd.extend_from_slice(args);
        let o = self.node.ns.exec(&cmd);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code().unwrap_or(-1), text)
    }

    fn status(&self, conflist: &str, cache: &TempDir) -> (i32, String) {
        let bins = self.node.bins.path_str();
        self.cni6(&[
            "status",
            "--conflist",
            conflist,
            "--cache-dir",
            &cache.path_str(),
            "--cni-path",
            &bins,
        ])
    }

    fn lint(&self, conflist: &str) -> (i32, String) {
        let bins = self.node.bins.path_str();
        self.cni6(&["lint", conflist, "--bin-dir", &bins])
    }
}

fn mac_of(ns: &Netns, dev: &str) -> Mac {
    let l = bh::link(ns, dev).unwrap_or_else(|| panic!("no {dev}"));
    attacks::parse_mac(l["address"].as_str().unwrap()).unwrap()
}

/// What every report of the condition must say: bridge, port, the fault,
/// both fixes.
fn assert_names_fault_and_fix(text: &str) {
    for part in [
        &format!("bridge {BRIDGE}"),
        &format!("port(s) {UPLINK}"),
        "not isolated",
        "firewall6",
        "`bridge` key",
        &format!("bridge link set dev {UPLINK} isolated on"),
    ] {
        assert!(text.contains(part), "{part:?} missing in: {text}");
    }
}

#[test]
fn add_on_a_bridge_holding_an_uplink_is_refused_before_anything_is_made() {
    let lan = Lan::new();
    let pod = bh::new_pod();
    let before = snapshot(lan.net.ipam.data_dir());
    let cid = harness::container_id("b6up");
    let out = lan.net.add(&lan.node, V, &cid, &pod, "eth0");
    // Invalid config, as bridge6's other refusal of the `bridge` key.
    out.assert_error(7);
    assert!(
        out.msg().contains(&format!("bridge={BRIDGE}")),
        "{}",
        out.msg()
    );
    assert_names_fault_and_fix(&out.msg());
    // Refused before IPAM ran: the store is as it was, no link was made.
    assert_eq!(
        snapshot(lan.net.ipam.data_dir()),
        before,
        "IPAM store touched"
    );
    assert!(lan.host_veths().is_empty(), "host veth left");
    assert!(bh::link(&pod, "eth0").is_none(), "pod interface left");
    // The runtime's DEL after a failed ADD still succeeds.
    lan.net
        .del(&lan.node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
}

#[test]
fn an_isolated_uplink_is_accepted_and_keeps_the_lan_out_of_the_pods_reach() {
    let lan = Lan::new();
    let pod = bh::new_pod();
    lan.isolate_uplink(true);
    let cid = harness::container_id("b6iso");
    let r = lan
        .net
        .add(&lan.node, V, &cid, &pod, "eth0")
        .assert_ok()
        .clone();
    lan.net
        .check(&lan.node, V, &cid, &pod, "eth0", &r)
        .assert_silent_ok();

    // The attacker: a raw frame from the pod's own MAC (the only source its
    // locked port lets in) straight to the LAN host's MAC.
    let (pod_mac, lan_mac) = (mac_of(&pod, "eth0"), mac_of(&lan.host, LAN_IF));
    let port = RawPort::open(pod.path(), "eth0").expect("raw socket in the pod");
    let cap = Capture::start(lan.host.path(), LAN_IF).expect("capture on the LAN host");
    let send = |token: &[u8]| {
        let f = attacks::ethernet(
            lan_mac,
            pod_mac,
            &[],
            attacks::ETHERTYPE_EXPERIMENTAL,
            token,
        );
        for _ in 0..3 {
            port.send(&f).expect("send from the pod");
        }
    };
    send(b"cni6-uplink-isolated");
    assert!(
        !cap.wait_for(b"cni6-uplink-isolated", QUIET),
        "a pod frame reached the LAN host through an isolated uplink"
    );

    // Control: the uplink not isolated (what ADD refuses to start on) and
    // the same frame from the same pod arrives; so the test can fail.
    lan.isolate_uplink(false);
    send(b"cni6-uplink-open");
    assert!(
        cap.wait_for(b"cni6-uplink-open", WAIT),
        "control: with the uplink not isolated the pod's frame should reach the LAN host"
    );

    // Every report then names the bridge, the port and the fix.
    let check = lan.net.check(&lan.node, V, &cid, &pod, "eth0", &r);
    check.assert_error(102);
    assert_names_fault_and_fix(&check.msg());
    let (conf_dir, cache) = (TempDir::new("b6upc"), TempDir::new("b6upk"));
    let conflist = lan.conflist(&conf_dir);
    let (code, text) = lan.status(&conflist, &cache);
    assert_eq!(code, 1, "status exits 1 on a health problem: {text}");
    assert!(
        text.contains(&format!(
            "network {}: bridge6 refuses ADD here",
            lan.net.name()
        )),
        "{text}"
    );
    assert_names_fault_and_fix(&text);
    let (code, text) = lan.lint(&conflist);
    assert_eq!(code, 1, "lint exits 1 on an error: {text}");
    assert!(
        text.contains(&format!("error: bridge6: network {}", lan.net.name())),
        "{text}"
    );
    assert_names_fault_and_fix(&text);

    // Isolated again: CHECK passes and neither tool mentions the uplink.
    lan.isolate_uplink(true);
    lan.net
        .check(&lan.node, V, &cid, &pod, "eth0", &r)
        .assert_silent_ok();
    let (code, text) = lan.status(&conflist, &cache);
    assert!(!text.contains(UPLINK), "status: {text}");
    assert_eq!(code, 0, "status healthy with the uplink isolated: {text}");
    let (_, text) = lan.lint(&conflist);
    assert!(!text.contains(UPLINK), "lint: {text}");

    lan.net
        .del(&lan.node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
    assert!(lan.net.ipam.store().is_empty());
}

/// A bridge bridge6 made itself (it carries bridge6's MAC for its name)
/// is not listed on every ADD: the listing's cost grows with the pods on
/// the node. An uplink an operator enslaves to it later is found by CHECK
/// and `cni6 status` (the DaemonSet's readiness probe) instead; ADD lets
/// the next pod on, as documented in docs/security.md.
#[test]
fn an_uplink_enslaved_to_bridge6s_own_bridge_is_reported_by_check_and_status() {
    let node = Node::new();
    node.ns.bridge_nf_call_ip6tables_off();
    let host = Netns::new(&format!("{}l", bh::NETNS_PREFIX));
    let lan = Lan {
        net: BridgeNet::new("brown"),
        node,
        host,
    };
    let (pod1, pod2) = (bh::new_pod(), bh::new_pod());
    let (cid1, cid2) = (
        harness::container_id("b6own"),
        harness::container_id("b6own"),
    );
    let r1 = lan
        .net
        .add(&lan.node, V, &cid1, &pod1, "eth0")
        .assert_ok()
        .clone();
    lan.enslave_uplink("brown");
    lan.net.add(&lan.node, V, &cid2, &pod2, "eth0").assert_ok();
    let check = lan.net.check(&lan.node, V, &cid1, &pod1, "eth0", &r1);
    check.assert_error(102);
    for want in ["bridge brown", UPLINK, "isolated on"] {
        assert!(
            check.msg().contains(want),
            "{want:?} missing: {}",
            check.msg()
        );
    }
    let (conf_dir, cache) = (TempDir::new("b6owc"), TempDir::new("b6owk"));
    let conflist = lan.conflist(&conf_dir);
    let (code, text) = lan.status(&conflist, &cache);
    assert_eq!(code, 1, "status exits 1 on a health problem: {text}");
    assert!(text.contains(UPLINK), "{text}");
    for (cid, pod) in [(&cid1, &pod1), (&cid2, &pod2)] {
        lan.net
            .del(&lan.node, V, cid, &pod.path_str(), "eth0")
            .assert_silent_ok();
    }
}
