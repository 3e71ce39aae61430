//! Several attachments in one pod (multus `net1`, podman `--network A
//! --network B`): eth0 on network A / bridge A, net1 on network B / bridge
//! B. Only the first gets `::/0` (never an ECMP default); each tears down
//! independently. And the node's neighbour entries for pod addresses:
//! pinned by ADD without a packet on the bridge, removed by DEL.

use conformance::bridge_helpers::{self as bh, BridgeNet, Node};
use conformance::harness;
use conformance::ipam::{self, IpamNet};
use serde_json::json;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

const V: &str = "1.0.0";

/// The MAC the neighbour tests plant as a dead pod's.
const OLD_MAC: &str = "02:00:00:00:0b:ad";

/// The node's neighbour entry for `addr` on `dev` (`ip -6 neigh show`).
fn neigh_show(node: &Node, dev: &str, addr: Ipv6Addr) -> String {
    let a = addr.to_string();
    node.ns
        .exec_ok(&["ip", "-6", "neigh", "show", &a, "dev", dev])
}

/// Plant a node neighbour entry for `addr` with [`OLD_MAC`] in state `nud`.
fn neigh_set(node: &Node, dev: &str, addr: Ipv6Addr, nud: &str) {
    let a = addr.to_string();
    node.ns.exec_ok(&[
        "ip", "-6", "neigh", "replace", &a, "lladdr", OLD_MAC, "dev", dev, "nud", nud,
    ]);
}

/// A result's addresses as `args.cni.ips` asks for them again.
fn as_requested(r: &serde_json::Value) -> Vec<String> {
    ipam::result_addrs(r)
        .iter()
        .map(|a| a.to_string())
        .collect()
}

#[test]
fn two_networks_one_pod_one_default_route() {
    let node = Node::new();
    let pod = bh::new_pod();
    let a = BridgeNet::new("bra");
    let b = BridgeNet::with_ipam(
        IpamNet::new(&["fd8c:1f0a:77e3:0:2::/80", "2001:db8:7:13::/80"]),
        "brb",
    );
    let cid = harness::container_id("b6multi");

    let ra = a.add(&node, V, &cid, &pod, "eth0").assert_ok().clone();
    let out_b = b.add(&node, V, &cid, &pod, "net1");
    let rb = out_b.assert_ok().clone();
    bh::assert_result_schema(&ra, V, &pod.path_str(), "eth0");
    bh::assert_result_schema(&rb, V, &pod.path_str(), "net1");

    // Exactly one default route, via eth0; net1's result has no ::/0 and
    // the plugin said why on stderr (conformance.md #60).
    let defaults = bh::default_routes(&pod);
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    assert_eq!(defaults[0]["dev"], "eth0");
    assert!(defaults[0].get("multipath").is_none(), "{defaults:?}");
    assert!(ra["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["dst"] == "::/0"));
    assert!(
        !rb["routes"]
            .as_array()
            .map(|rs| rs.iter().any(|r| r["dst"] == "::/0"))
            .unwrap_or(false),
        "{rb}"
    );
    assert!(
        out_b.stderr.contains("default route"),
        "stderr: {}",
        out_b.stderr
    );

    // Both interfaces reach their own gateway from their own address.
    let a_gw = ipam::gateway(a.ipam.pod_ranges()[0]);
    let b_gw = ipam::gateway(b.ipam.pod_ranges()[0]);
    let peer = bh::tcp_round_trip(&pod, &node.ns, a_gw);
    assert_eq!(peer.ip(), IpAddr::V6(ipam::result_addrs(&ra)[0].addr()));
    let peer = bh::tcp_round_trip(&pod, &node.ns, b_gw);
    assert_eq!(peer.ip(), IpAddr::V6(ipam::result_addrs(&rb)[0].addr()));

    // CHECK both with their own prevResult.
    a.check(&node, V, &cid, &pod, "eth0", &ra)
        .assert_silent_ok();
    b.check(&node, V, &cid, &pod, "net1", &rb)
        .assert_silent_ok();

    // DEL net1: eth0 untouched; DEL eth0.
    b.del(&node, V, &cid, &pod.path_str(), "net1")
        .assert_silent_ok();
    assert!(bh::link(&pod, "net1").is_none());
    assert!(b.ipam.store().is_empty());
    a.check(&node, V, &cid, &pod, "eth0", &ra)
        .assert_silent_ok();
    assert_eq!(bh::default_routes(&pod).len(), 1);
    a.del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
    assert!(a.ipam.store().is_empty());
    assert!(bh::link(&pod, "eth0").is_none());
}

#[test]
fn default_route_false_and_reverse_order() {
    // net1 first with defaultRoute:false → no ::/0 at all; then eth0 gets it.
    let node = Node::new();
    let pod = bh::new_pod();
    let a = BridgeNet::new("bra");
    let b = BridgeNet::with_ipam(IpamNet::new(&["fd8c:1f0a:77e3:0:3::/80"]), "brb")
        .key("defaultRoute", json!(false));
    let cid = harness::container_id("b6dr");
    let rb = b.add(&node, V, &cid, &pod, "net1").assert_ok().clone();
    assert!(bh::default_routes(&pod).is_empty());
    assert!(
        rb.get("routes")
            .is_none_or(|r| r.as_array().unwrap().is_empty()),
        "{rb}"
    );
    a.add(&node, V, &cid, &pod, "eth0").assert_ok();
    let d = bh::default_routes(&pod);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0]["dev"], "eth0");
    b.del(&node, V, &cid, "", "net1").assert_silent_ok();
    a.del(&node, V, &cid, "", "eth0").assert_silent_ok();
}

#[test]
fn requested_address_is_pinned_without_any_announcement() {
    // A pod that asks for specific addresses (args.cni.ips, conformance.md #16)
    // may get ones a dead pod held. No pod caches another pod's MAC (pods
    // reach each other through the gateway), so nothing is announced: the
    // node's entry is pinned to the new pod and a neighbour pod reaches it.
    let node = Node::new();
    let net = BridgeNet::new("brna");
    let first = bh::new_pod();
    let cid1 = harness::container_id("b6na");
    net.add(&node, V, &cid1, &first, "eth0").assert_ok();
    let gone = bh::new_pod();
    let cid0 = harness::container_id("b6na");
    let r0 = net.add(&node, V, &cid0, &gone, "eth0").assert_ok().clone();
    net.del(&node, V, &cid0, &gone.path_str(), "eth0")
        .assert_silent_ok();
    let addrs: Vec<_> = ipam::result_addrs(&r0).iter().map(|a| a.addr()).collect();
    let ips = as_requested(&r0);

    let cap = bh::Capture::start_with(&node.ns, "brna", &["icmp6", "or", "tcp"]);
    let second = bh::new_pod();
    let cid2 = harness::container_id("b6na");
    let again = net.clone().key("args", json!({"cni": {"ips": ips}}));
    let r = again
        .add(&node, V, &cid2, &second, "eth0")
        .assert_ok()
        .clone();
    let got: Vec<_> = ipam::result_addrs(&r).iter().map(|a| a.addr()).collect();
    assert_eq!(got, addrs, "the requested addresses");
    let mac = r["interfaces"][2]["mac"].as_str().unwrap().to_string();
    for a in &addrs {
        let entry = neigh_show(&node, "brna", *a);
        assert!(
            entry.contains(&mac) && entry.contains("PERMANENT"),
            "{a} not pinned to the new pod: {entry}"
        );
    }
    // Positive control: the capture sees the neighbour's traffic to it.
    let peer = bh::tcp_round_trip(&first, &second, addrs[0]);
    assert!(matches!(peer.ip(), IpAddr::V6(_)));
    let lines = cap.collect_until(Duration::from_secs(1), |_| false);
    assert!(
        lines.iter().any(|l| l.contains(&addrs[0].to_string())),
        "the capture saw no traffic to {}; captured:\n{}",
        addrs[0],
        lines.join("\n")
    );
    for a in &addrs {
        assert!(
            !lines.iter().any(|l| bh::is_na_for(l, *a)),
            "a neighbour advertisement for {a}; captured:\n{}",
            lines.join("\n")
        );
    }
    for (cid, pod) in [(&cid1, &first), (&cid2, &second)] {
        net.del(&node, V, cid, &pod.path_str(), "eth0")
            .assert_silent_ok();
    }
    for a in &addrs {
        assert_eq!(
            neigh_show(&node, "brna", *a).trim(),
            "",
            "{a} still pinned after DEL"
        );
    }
}

#[test]
fn no_na_flood_for_a_fresh_address() {
    // A fresh address (IPAM's cursor, nothing requested) cannot be in any
    // cache: no all-nodes NA, which the bridge would flood to every port
    // (through ip6tables once per port with br_netfilter; issue 7).
    let node = Node::new();
    let net = BridgeNet::new("brnf");
    let first = bh::new_pod();
    let cid1 = harness::container_id("b6nf");
    net.add(&node, V, &cid1, &first, "eth0").assert_ok();
    let cap = bh::Capture::start_with(&node.ns, "brnf", &["icmp6", "or", "tcp"]);
    let second = bh::new_pod();
    let cid2 = harness::container_id("b6nf");
    let r = net
        .add(&node, V, &cid2, &second, "eth0")
        .assert_ok()
        .clone();
    let addrs: Vec<_> = ipam::result_addrs(&r).iter().map(|a| a.addr()).collect();
    // Give a late packet time to show up. Positive control, so a capture
    // that sees nothing cannot pass: the new pod talks to its gateway
    // (pinned in the pod: no neighbour discovery), which the capture sees.
    let gw = ipam::gateway(ipam::result_addrs(&r)[0]);
    bh::tcp_round_trip(&second, &node.ns, gw);
    let lines = cap.collect_until(Duration::from_secs(1), |_| false);
    assert!(
        lines.iter().any(|l| l.contains(&gw.to_string())),
        "the capture saw no traffic to the gateway; captured:\n{}",
        lines.join("\n")
    );
    for a in &addrs {
        assert!(
            !lines
                .iter()
                .any(|l| bh::is_na_for(l, *a) && l.contains("> ff02::1:")),
            "an unsolicited all-nodes NA for fresh {a}; captured:\n{}",
            lines.join("\n")
        );
    }
    for (cid, pod) in [(&cid1, &first), (&cid2, &second)] {
        net.del(&node, V, cid, &pod.path_str(), "eth0")
            .assert_silent_ok();
    }
}

#[test]
fn reused_address_replaces_a_stale_neighbour_entry() {
    // The node has a neighbour entry for a pod address with an old MAC
    // (the previous pod); after the new pod's ADD it points at the new MAC
    // without any traffic from the node.
    let node = Node::new();
    let net = BridgeNet::new("brre");
    // A pod that stays keeps the bridge's carrier up: when the last port
    // goes, the kernel flushes the bridge's neighbour entries (later,
    // from its linkwatch work), which would race with the stale entry.
    let keeper = bh::new_pod();
    let keeper_cid = harness::container_id("b6keep");
    net.add(&node, V, &keeper_cid, &keeper, "eth0").assert_ok();
    let pod = bh::new_pod();
    let cid = harness::container_id("b6re");
    let r0 = net.add(&node, V, &cid, &pod, "eth0").assert_ok().clone();
    net.del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
    let addr = ipam::result_addrs(&r0)[0].addr();
    neigh_set(&node, "brre", addr, "stale");
    // The new pod asks for the same addresses (args.cni.ips, conformance.md #16).
    let ips = as_requested(&r0);
    let net2 = net.clone().key("args", json!({"cni": {"ips": ips}}));
    let cid2 = harness::container_id("b6re");
    let r = net2.add(&node, V, &cid2, &pod, "eth0").assert_ok().clone();
    assert_eq!(ipam::result_addrs(&r)[0].addr(), addr, "address reused");
    let mac = r["interfaces"][2]["mac"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let neigh = neigh_show(&node, "brre", addr);
        if neigh.contains(&mac) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stale entry not replaced: {neigh}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    net.del(&node, V, &cid2, &pod.path_str(), "eth0")
        .assert_silent_ok();
    net.del(&node, V, &keeper_cid, "", "eth0")
        .assert_silent_ok();
}

#[test]
fn node_neighbour_entry_is_pinned_without_a_packet() {
    // A stale node entry (or anyone's) for an address IPAM hands out names
    // the new pod when ADD returns, pinned (PERMANENT: no advertisement on
    // the link can move it), written directly; DEL removes it.
    let node = Node::new();
    let net = BridgeNet::new("brnr");
    let keeper = bh::new_pod();
    let keeper_cid = harness::container_id("b6nr");
    let rk = net
        .add(&node, V, &keeper_cid, &keeper, "eth0")
        .assert_ok()
        .clone();
    // ipam-prefix's cursor hands out the next slot: predict it.
    let next =
        |r: &serde_json::Value| Ipv6Addr::from(u128::from(ipam::result_addrs(r)[0].addr()) + 1);
    let neigh = |addr| neigh_show(&node, "brnr", addr);
    let set = |addr, nud| neigh_set(&node, "brnr", addr, nud);

    let want = next(&rk);
    set(want, "stale");
    let pod = bh::new_pod();
    let cid = harness::container_id("b6nr");
    let r = net.add(&node, V, &cid, &pod, "eth0").assert_ok().clone();
    assert_eq!(ipam::result_addrs(&r)[0].addr(), want, "cursor order");
    let mac = r["interfaces"][2]["mac"].as_str().unwrap().to_string();
    let entry = neigh(want);
    assert!(
        entry.contains(&mac) && entry.contains("PERMANENT"),
        "stale entry not pinned to the pod by ADD: {entry}"
    );
    // Without prevResult (containerd's second DEL): found by the port's MAC.
    net.del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
    assert_eq!(neigh(want).trim(), "", "pinned entry left after DEL");
    net.del(&node, V, &keeper_cid, &keeper.path_str(), "eth0")
        .assert_silent_ok();
    assert_eq!(
        neigh_show(&node, "brnr", ipam::result_addrs(&rk)[0].addr()).trim(),
        ""
    );
}
