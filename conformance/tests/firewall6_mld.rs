//! A pod's MLD messages, with bridge6 and firewall6 and the kernel: its
//! port is isolated (issue 15), so they reach no other pod's port, and
//! the node drops them where they enter its stack (raw CNI6-SRC-ICMP), with
//! nothing else of the pod's traffic lost: two pods still talk (routed).

use conformance::bridge_helpers::{self as bh, Capture};
use conformance::chain::Chain;
use conformance::firewall_helpers::packet_counts;
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

/// Packet counters of the MLD rules of CNI6-SRC-ICMP, summed.
fn mld_drops(chain: &Chain) -> u64 {
    let listing =
        chain
            .node
            .exec_ok(&["ip6tables", "-w", "-t", "raw", "-v", "-S", "CNI6-SRC-ICMP"]);
    packet_counts(&listing)
        .iter()
        .filter(|(l, _)| {
            ["130", "131", "132", "143"]
                .iter()
                .any(|t| l.contains(&format!("--icmpv6-type {t} ")))
        })
        .map(|(_, n)| n)
        .sum()
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

/// Attach a new pod while capturing on `port` (another pod's host veth):
/// the new pod's namespace and attachment, the MLD messages of the new pod
/// that the bridge handed to `port`.
fn attach_watching(chain: &Chain, port: &str) -> (Netns, String, Vec<String>) {
    let pod = Netns::new(PREFIX);
    let capture = Capture::start_with(&chain.node, port, &[]);
    let (cid, _) = add(chain, &pod);
    // The unsolicited reports are repeated within a second.
    let seen = capture.collect_until(Duration::from_millis(2500), |_| false);
    let ll = format!("IP6 {} > ", link_local(&pod));
    let mld: Vec<String> = seen
        .into_iter()
        .filter(|l| {
            (l.contains(&ll) || l.contains("IP6 :: > ")) && l.contains("multicast listener")
        })
        .collect();
    (pod, cid, mld)
}

#[test]
fn pods_mld_stays_on_their_port() {
    let chain = Chain::new(PREFIX);
    let a = Netns::new(PREFIX);
    let (cid_a, res_a) = add(&chain, &a);
    let (veth_a, addr_a) = attachment(&res_a);
    // Even with raw PREROUTING flushed (no firewall drop at all), the next
    // pod's reports never reach a's port: the ports are isolated. That
    // ADD's firewall6 puts its chains back.
    chain
        .node
        .exec_ok(&["ip6tables", "-w", "-t", "raw", "-F", "PREROUTING"]);
    let (d, cid_d, mld_d) = attach_watching(&chain, &veth_a);
    assert!(mld_d.is_empty(), "d's MLD reached a's port: {mld_d:#?}");
    let raw = || chain.node.exec_ok(&["ip6tables", "-w", "-t", "raw", "-S"]);
    assert!(raw().contains("-j CNI6-SRC"), "not repaired: {}", raw());

    let drops_before = mld_drops(&chain);
    let (c, cid_c, mld_c) = attach_watching(&chain, &veth_a);
    assert!(mld_c.is_empty(), "c's MLD reached a's port: {mld_c:#?}");
    let drops = mld_drops(&chain) - drops_before;
    assert!(
        drops >= 1,
        "c's MLD reports were not dropped by CNI6-SRC-ICMP"
    );

    // The pods still reach each other (through the node).
    bh::tcp_round_trip(&c, &a, addr_a);

    for (cid, pod) in [(cid_a, &a), (cid_c, &c), (cid_d, &d)] {
        for o in chain.del(&cid, &pod.path_str()) {
            o.assert_silent_ok();
        }
    }
}
