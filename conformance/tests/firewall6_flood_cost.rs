//! Issue 7: the per-packet cost of firewall6's FORWARD path for flooded
//! multicast, flat dispatch (the earlier release) against the dispatch
//! tree (firewall6's lib.rs, "Chain layout"), at 1000 pods of rules.
//!
//! A node namespace with a bridge of `PORTS` veth ports (their peers stay
//! in the node with IPv6 disabled, so a copy that arrives is dropped at
//! once and costs the same in every variant), br_netfilter on, and the
//! rules of 1000 pods: the sender pod's by firewall6 ADD, the 999 others
//! written in the same restore format (their ports are named like bridge6
//! ports, 319 of them exist). One pod namespace sends `PACKETS` UDP
//! datagrams to solicited-node groups `ff02::1:ff00:XX` (XX cycling over
//! all 256 low bytes, so the flat address dispatch walks 128 rules on
//! average), each flooded to every other port, where br_netfilter runs
//! the FORWARD hook once per copy. Two kinds: from the pod's link-local
//! address (neighbour discovery, MLD: no source check) and from its
//! genuine ULA (source check first; the sender's port is in bucket 0x80,
//! the middle of the flat port dispatch).
//!
//! CPU = the sender thread's user+system time (the NET_RX softirq that
//! floods runs in its context after each send; tick-based accounting, so
//! runs are long) plus any ksoftirqd time meanwhile; per flooded copy.
//! Variants alternate within one run: `flat`, `tree`, and `none` (the
//! FORWARD jump removed: the bridge's own cost). Ignored by default (a
//! measurement, ~1 min):
//! `cargo test --release -p conformance --test firewall6_flood_cost -- --ignored --nocapture`

use conformance::firewall_helpers::{
    conf, documented_pod_rules, fake_gua as gua, fake_ula as ula, fake_veth, firewall6,
    flat_dispatch_batch, prev_result, RulesNode, FAKE_POD_MAC,
};
use conformance::harness::{self, Invocation, Netns};
use firewall6::rules::{self, Skeleton};
use serde_json::json;
use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::time::{Duration, Instant};

const NET: &str = "flood";
const PODS: u32 = 1000;
const PORTS: u32 = 320;
const PACKETS: u32 = 1500;
const ROUNDS: u32 = 3;
const SENDER_PORT: &str = "c6800000000c0de";

/// bridge6-style port names spread over the port buckets; pod 0 is the
/// sender.
fn veth(i: u32) -> String {
    if i == 0 {
        return SENDER_PORT.to_string();
    }
    fake_veth(i)
}

fn cid(i: u32) -> String {
    format!("flood{}x{i:05}", std::process::id())
}

/// The per-pod rules of pod `i` in the documented format.
fn pod_rules(i: u32, policy: &str) -> Vec<String> {
    documented_pod_rules(NET, &cid(i), FAKE_POD_MAC, [ula(i), gua(i)], policy)
}

/// utime + stime of every ksoftirqd thread, in clock ticks.
fn ksoftirqd_ticks() -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        if !comm.starts_with("ksoftirqd/") {
            continue;
        }
        let stat = std::fs::read_to_string(p.join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = after.split(' ').collect();
        // Fields 14 and 15 of stat; `after` starts at field 3.
        total += f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
    }
    total
}

/// Send PACKETS datagrams from `src` (scope: eth0) to ff02::1:ff00:XX.
/// Returns (thread CPU + ksoftirqd CPU, wall, send errors).
fn blast(pod: &Netns, src: Ipv6Addr) -> (Duration, Duration, u32) {
    let ns = cni_common::netns::NetNs::open(pod.path()).unwrap();
    ns.run(|| {
        // SAFETY: a NUL-terminated name.
        let idx = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
        assert_ne!(idx, 0);
        let scope = if src.segments()[0] == 0xfe80 { idx } else { 0 };
        let sock = UdpSocket::bind(SocketAddrV6::new(src, 0, 0, scope)).expect("bind");
        let dsts: Vec<SocketAddrV6> = (0..256u16)
            .map(|b| SocketAddrV6::new(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 1, 0xff00, b), 9, 0, idx))
            .collect();
        let mut errors = 0;
        let k0 = ksoftirqd_ticks();
        let c0 = harness::rusage_cpu(libc::RUSAGE_THREAD);
        let t0 = Instant::now();
        for i in 0..PACKETS {
            if sock.send_to(b"flood", dsts[(i % 256) as usize]).is_err() {
                errors += 1;
            }
        }
        let wall = t0.elapsed();
        let cpu = harness::rusage_cpu(libc::RUSAGE_THREAD) - c0;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let soft = Duration::from_micros((ksoftirqd_ticks() - k0) * 1_000_000 / hz);
        (cpu + soft, wall, errors)
    })
    .unwrap()
}

#[test]
#[ignore = "a measurement (~1 min, 320 veths): run by hand with --ignored --nocapture"]
fn flooded_multicast_per_copy_cost_flat_vs_tree() {
    let node = RulesNode {
        ns: Netns::new("fwtree"),
    };
    let n = &node.ns;
    node.set_bridge_nf("1");
    // The node's links in one `ip -batch`.
    let mut batch = String::from(
        "link add br0 type bridge forward_delay 0 mcast_snooping 0\nlink set br0 up\n",
    );
    for i in 1..PORTS {
        batch.push_str(&format!(
            "link add {v} type veth peer name p{i}\nlink set {v} master br0\nlink set {v} up\nlink set p{i} up\n",
            v = veth(i)
        ));
    }
    n.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
    let file = std::env::temp_dir().join(format!("fwtree-flood-{}.batch", std::process::id()));
    std::fs::write(&file, batch).unwrap();
    n.exec_ok(&["ip", "-batch", file.to_str().unwrap()]);
    std::fs::remove_file(&file).unwrap();
    // The sender pod: its own namespace, IPv6 on.
    let pod = Netns::new("fwtree");
    n.exec_ok(&[
        "ip",
        "link",
        "add",
        SENDER_PORT,
        "type",
        "veth",
        "peer",
        "name",
        "ps",
    ]);
    n.exec_ok(&["ip", "link", "set", "ps", "netns", pod.name()]);
    n.exec_ok(&["ip", "link", "set", SENDER_PORT, "master", "br0"]);
    n.exec_ok(&["ip", "link", "set", SENDER_PORT, "up"]);
    pod.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.ps.accept_dad=0"]);
    pod.exec_ok(&["ip", "link", "set", "ps", "name", "eth0"]);
    pod.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    pod.add_addr("eth0", &format!("{}/96", ula(0)));
    pod.add_addr("eth0", &format!("{}/96", gua(0)));
    pod.add_addr("eth0", "fe80::c6:1/64");
    let ports = n.exec_ok(&["sh", "-c", "ls /sys/class/net/br0/brif | wc -l"]);
    assert_eq!(ports.trim(), PORTS.to_string(), "bridge ports");

    // Pod 0 by firewall6 (skeleton, policy chain), the others by restore.
    let prev = prev_result(
        "1.0.0",
        "br0",
        SENDER_PORT,
        &pod.path_str(),
        &[&format!("{}/96", ula(0)), &format!("{}/96", gua(0))],
    );
    let add = |c: &serde_json::Value, id: &str| {
        Invocation::attachment(firewall6(), "ADD", id, &pod.path_str(), "eth0")
            .in_netns(n)
            .stdin_json(c)
            .run()
            .assert_ok()
            .clone()
    };
    let c0 = conf("1.0.0", NET, json!({}), &prev);
    add(&c0, &cid(0));
    let policy = node
        .rules()
        .into_iter()
        .find_map(|l| {
            l.strip_prefix("-N CNI6-POL-")
                .map(|h| format!("CNI6-POL-{h}"))
        })
        .unwrap();
    let mut b = String::from("*filter\n");
    for i in 1..PODS {
        for r in pod_rules(i, &policy) {
            b.push_str(&r);
            b.push('\n');
        }
    }
    b.push_str("COMMIT\n");
    node.restore(&b);
    let pod_lines = node
        .rules()
        .iter()
        .filter(|l| l.contains(&format!("firewall6 net={NET} if=")))
        .count();
    assert_eq!(pod_lines, 5 * PODS as usize);
    let mut mine = node.pod_rules(NET, &cid(0));
    mine.sort();
    let mut want = pod_rules(0, &policy);
    want.sort();
    assert_eq!(want, mine, "the documented format is firewall6's");

    // A pod without a port here: its ADD converts a flat node (the repair
    // path, as on upgrade), its DEL takes its rules away again.
    let dummy = conf(
        "1.0.0",
        NET,
        json!({}),
        &prev_result(
            "1.0.0",
            "br0",
            "c6ff00000000fff",
            &pod.path_str(),
            &[&format!("{}/96", ula(5000))],
        ),
    );
    let tree = || {
        add(&dummy, &cid(5000));
        Invocation::attachment(firewall6(), "DEL", &cid(5000), "", "eth0")
            .in_netns(n)
            .stdin_json(&dummy)
            .run()
            .assert_silent_ok();
        assert_eq!(node.ip6tables(&["-S", "CNI6-INGRESS"]).lines().count(), 18);
    };
    let flat = || node.restore(&flat_dispatch_batch());
    let jump = Skeleton::forward_jump();
    let none = || node.restore(&rules::batch(&[rules::delete_of(&jump)]));
    let restore_jump = || {
        let spec = jump.strip_prefix("-A FORWARD ").expect("a FORWARD rule");
        node.restore(&rules::batch(&[format!("-I FORWARD 1 {spec}")]));
    };
    let copies = (PACKETS * (PORTS - 1)) as f64;
    let mut results: Vec<(String, String, Vec<f64>)> = Vec::new();
    let mut record = |variant: &str, kind: &str, us: f64| match results
        .iter_mut()
        .find(|(v, k, _)| v == variant && k == kind)
    {
        Some((_, _, v)) => v.push(us),
        None => results.push((variant.into(), kind.into(), vec![us])),
    };
    // Warm up neighbour state and caches.
    blast(&pod, "fe80::c6:1".parse().unwrap());
    for round in 0..ROUNDS {
        for variant in ["flat", "tree", "none"] {
            match variant {
                "flat" => flat(),
                "tree" => tree(),
                _ => none(),
            }
            for (kind, src) in [
                ("link-local", "fe80::c6:1".parse().unwrap()),
                ("ula", ula(0)),
            ] {
                let (cpu, wall, errors) = blast(&pod, src);
                let us = cpu.as_secs_f64() * 1e6 / copies;
                println!(
                    "FW6-FLOOD round {round} {variant:4} {kind:10} cpu {:.0} ms wall {:.0} ms → {us:.3} µs/copy ({errors} send errors)",
                    cpu.as_secs_f64() * 1e3,
                    wall.as_secs_f64() * 1e3
                );
                record(variant, kind, us);
            }
            if variant == "none" {
                restore_jump();
            }
        }
    }
    let mut summary = Vec::new();
    for (v, k, mut xs) in results {
        xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        summary.push(format!(
            "{v}/{k} median {:.3} µs/copy (min {:.3}, max {:.3})",
            xs[xs.len() / 2],
            xs[0],
            xs[xs.len() - 1]
        ));
    }
    println!(
        "FW6-FLOOD {PODS} pods of rules, {PORTS} ports, {PACKETS} packets × {} copies per run: {}",
        PORTS - 1,
        summary.join("; ")
    );
}
