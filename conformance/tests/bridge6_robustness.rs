//! bridge6 under abuse: killed at any point of ADD, a later DEL leaves
//! nothing (docs/design.md "A plugin killed at any point…"); a DEL with a
//! changed config still frees everything (conformance.md #17).

use conformance::bridge_helpers::{self as bh, BridgeNet, Node};
use conformance::harness;
use serde_json::json;
use std::time::{Duration, Instant};

const V: &str = "1.0.0";

/// Wait until no process carries `CNI_CONTAINERID=<cid>` in its
/// environment any more: a killed bridge6 leaves its IPAM child running
/// (it is not ours to kill), and the DEL must come after it, as a
/// runtime's DEL does.
fn wait_for_orphans(cid: &str) {
    let needle = format!("CNI_CONTAINERID={cid}\0");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let busy = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .any(|e| {
                std::fs::read(e.path().join("environ"))
                    .map(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
                    .unwrap_or(false)
            });
        if !busy {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "plugin processes for {cid} still running"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn killed_add_then_del_leaves_nothing() {
    let node = Node::new();
    let net = BridgeNet::new("brkill");
    // The bridge exists already, as on a node that has pods.
    let keeper = bh::new_pod();
    let keeper_cid = harness::container_id("b6keep");
    net.add(&node, V, &keeper_cid, &keeper, "eth0").assert_ok();
    let mut outcomes = (0, 0);
    for i in 0..24u64 {
        let pod = bh::new_pod();
        let cid = harness::container_id("b6kill");
        let mut running = net
            .call(&node, "ADD", V, &cid, &pod.path_str(), "eth0")
            .spawn();
        // Spread the kill over the whole ADD (a few ms to a few tens).
        std::thread::sleep(Duration::from_micros(fastrand::u64(0..(2000 + i * 3000))));
        running.kill();
        let out = running.wait();
        if out.signal.is_some() {
            outcomes.0 += 1;
        } else {
            outcomes.1 += 1;
        }
        wait_for_orphans(&cid);
        net.del(&node, V, &cid, &pod.path_str(), "eth0")
            .assert_silent_ok();
        assert!(bh::link(&pod, "eth0").is_none(), "run {i}: eth0 left");
        assert!(
            bh::link(&node.ns, &net.host_veth(&cid, "eth0")).is_none(),
            "run {i}: host veth left"
        );
        assert!(
            net.ipam.store().record(&cid, "eth0").is_none(),
            "run {i}: IPAM record left"
        );
    }
    eprintln!(
        "killed mid-ADD: {}, finished before the kill: {}",
        outcomes.0, outcomes.1
    );
    assert!(outcomes.0 > 0, "no run was actually killed mid-ADD");
    // The survivor is intact.
    assert_eq!(net.ipam.store().attachment_names().len(), 1);
    net.del(&node, V, &keeper_cid, "", "eth0")
        .assert_silent_ok();
    assert!(net.ipam.store().is_empty());
}

#[test]
fn del_with_a_changed_config_still_frees_everything() {
    // conformance.md #17: the bridge name and the mtu changed between ADD and DEL.
    let node = Node::new();
    let pod = bh::new_pod();
    let net = BridgeNet::new("brold");
    let cid = harness::container_id("b6chg");
    net.add(&node, V, &cid, &pod, "eth0").assert_ok();
    // ... even into something ADD would refuse.
    let mut changed = net.clone().key("mtu", json!("not a number"));
    changed.bridge = "brnew".into();
    changed
        .del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
    assert!(bh::link(&pod, "eth0").is_none());
    assert!(bh::link(&node.ns, &net.host_veth(&cid, "eth0")).is_none());
    assert!(net.ipam.store().is_empty());
}
