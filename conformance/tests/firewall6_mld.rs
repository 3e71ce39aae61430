//! A pod's MLD messages, with bridge6 and firewall6 and the kernel: its
//! port is isolated (issue 15), so they reach no other pod's port, and
//! the node drops them where they enter its stack (raw CNI6-SRC-ICMP), with
//! nothing else of the pod's traffic lost: two pods still talk (routed).

use conformance::bridge_helpers::{self as bh, Capture};
use conformance::chain::Chain;
use conformance::harness::{self, Netns};
use serde_json::Value;
use std::time::Duration;

const PREFIX: &str = "c6m";

/// (host veth, first address) from bridge6's result.
fn attachment(result: &Value) -> (String, std::net::Ipv6Addr) {
    let ifs = result["interfaces"].as_array().expect("interfaces");
    let addr = result["ips"][0]["address"].as_str().expect("an address");
    (
        ifs[1]["name"].as_str().unwrap().to_string(),
        addr.split('/').next().unwrap().parse().unwrap(),
    )
}

fn add(chain: &Chain, pod: &Netns) -> (String, Value) {
    let cid = harness::container_id("mld");
    let outs = chain.add(&cid, &pod.path_str());
    for o in &outs {
        o.assert_ok();
    }
    (cid, outs[0].json.clone().expect("bridge6 result"))
}

/// A pod's link-local address (the source of its MLD messages).
fn link_local(pod: &Netns) -> String {
    bh::addrs6(pod, "eth0")
        .into_iter()
        .find(|a| a.addr.segments()[0] == 0xfe80)
        .expect("a link-local address in the pod")
        .addr
        .to_string()
}

/// Attach a new pod while capturing on `port` (another pod's host veth),
/// then have the new pod connect to `peer` (the pod behind `port`) at
/// `peer_addr`: the new pod's namespace and attachment, its MLD messages
/// that reached `port`, and whether its TCP segments did (the control: the
/// capture works, and routed traffic still gets through).
fn attach_watching(
    chain: &Chain,
    port: &str,
    peer: &Netns,
    peer_addr: std::net::Ipv6Addr,
) -> (Netns, String, Vec<String>, bool) {
    let pod = Netns::new(PREFIX);
    let capture = Capture::start_with(&chain.node, port, &[]);
    let (cid, res) = add(chain, &pod);
    let (_, own) = attachment(&res);
    let peer_seen = bh::tcp_round_trip(&pod, peer, peer_addr);
    assert_eq!(peer_seen.ip(), std::net::IpAddr::V6(own));
    // The unsolicited reports are repeated within a second.
    let seen = capture.collect_until(Duration::from_millis(2500), |_| false);
    let ll = format!("IP6 {} > ", link_local(&pod));
    let tcp = seen
        .iter()
        .any(|l| l.contains(&format!("IP6 {own}.")) && l.contains("Flags"));
    let mld: Vec<String> = seen
        .into_iter()
        .filter(|l| {
            (l.contains(&ll) || l.contains("IP6 :: > ")) && l.contains("multicast listener")
        })
        .collect();
    (pod, cid, mld, tcp)
}

#[test]
fn pods_mld_stays_on_their_port() {
    let chain = Chain::new(PREFIX);
    let a = Netns::new(PREFIX);
    let (cid_a, res_a) = add(&chain, &a);
    let (veth_a, addr_a) = attachment(&res_a);
    // Even with INPUT and FORWARD flushed (no firewall drop at all), the
    // next pod's reports never reach a's port: the ports are isolated. That
    // ADD's firewall6 puts its jumps back.
    for hook in ["INPUT", "FORWARD"] {
        chain.node.exec_ok(&["ip6tables", "-w", "-F", hook]);
    }
    let (d, cid_d, mld_d, tcp_d) = attach_watching(&chain, &veth_a, &a, addr_a);
    assert!(mld_d.is_empty(), "d's MLD reached a's port: {mld_d:#?}");
    assert!(
        tcp_d,
        "control: the capture on a's port saw none of d's TCP to a"
    );
    let input = || chain.node.exec_ok(&["ip6tables", "-w", "-S", "INPUT"]);
    assert!(input().contains("-j CNI6-SRC"), "not repaired: {}", input());

    // With the firewall in place: the same, and whatever MLD would reach the
    // node's stack is dropped by CNI6-SRC-ICMP.
    let (c, cid_c, mld_c, tcp_c) = attach_watching(&chain, &veth_a, &a, addr_a);
    assert!(mld_c.is_empty(), "c's MLD reached a's port: {mld_c:#?}");
    assert!(
        tcp_c,
        "control: the capture on a's port saw none of c's TCP to a"
    );
    let icmp = chain
        .node
        .exec_ok(&["ip6tables", "-w", "-S", "CNI6-SRC-ICMP"]);
    for t in ["130", "131", "132", "143"] {
        assert!(
            icmp.contains(&format!("--icmpv6-type {t} -j DROP")),
            "{icmp}"
        );
    }

    // The pods still reach each other (through the node).
    bh::tcp_round_trip(&c, &a, addr_a);

    for (cid, pod) in [(cid_a, &a), (cid_c, &c), (cid_d, &d)] {
        for o in chain.del(&cid, &pod.path_str()) {
            o.assert_silent_ok();
        }
    }
}
