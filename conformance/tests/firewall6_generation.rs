//! firewall6 skips ADD's skeleton checks while the nf_tables generation
//! says nobody else committed (issue 7; firewall6's `generation` module).
//! These tests hold the kernel and ip6tables to the facts that rests on,
//! in a namespace of their own, and show that damage made between ADDs is
//! still repaired by the next ADD.

use cni_common::netns::NetNs;
use conformance::firewall_helpers::{conf, fake_gua, fake_ula, fake_veth, prev_result, RulesNode};
use conformance::harness::{self, container_id};
use firewall6::generation::{self, Generation};
use serde_json::{json, Value};

fn generation_in(node: &RulesNode) -> Generation {
    NetNs::open(node.ns.path())
        .unwrap()
        .run(generation::current)
        .unwrap()
        .unwrap()
}

/// What the skip relies on: one commit per table a restore changes, none
/// for `-C` lines alone or for a batch whose `-C` fails, none for reads;
/// the namespace cookie tells namespaces apart.
#[test]
fn generation_counts_commits_of_changes_only() {
    harness::require_root();
    let node = RulesNode::new();
    let g0 = generation_in(&node);
    let step = |batch: &str, commits: u32, ok: bool| {
        let before = generation_in(&node);
        let out = node
            .ns
            .exec_input(&["ip6tables-restore", "-w", "--noflush"], batch.as_bytes());
        assert_eq!(out.status.success(), ok, "{batch}: {out:?}");
        assert_eq!(generation_in(&node), before.after(commits), "{batch}");
    };
    step("*filter\n:GENT - [0:0]\nCOMMIT\n", 1, true);
    step("*filter\n-A GENT -j RETURN\nCOMMIT\n", 1, true);
    step("*filter\n-C GENT -j RETURN\nCOMMIT\n", 0, true);
    step(
        "*raw\nCOMMIT\n*filter\n-C GENT -j RETURN\nCOMMIT\n",
        0,
        true,
    );
    step(
        "*filter\n-C GENT -j ACCEPT\n-A GENT -j RETURN\nCOMMIT\n",
        0,
        false,
    );
    step("*filter\n-D GENT -j RETURN\nCOMMIT\n", 1, true);
    step(
        "*raw\n:GENR - [0:0]\nCOMMIT\n*filter\n-A GENT -j RETURN\nCOMMIT\n",
        2,
        true,
    );
    let before = generation_in(&node);
    node.ip6tables(&["-S"]);
    assert_eq!(generation_in(&node), before, "a read commits nothing");

    let other = RulesNode::new();
    let g_other = generation_in(&other);
    assert_eq!(g_other.boot, g0.boot);
    assert_ne!(g_other.netns, g0.netns, "namespaces have their own cookie");
}

/// Fabricated pod `i` of network "gen" (no namespace behind it).
fn pod_conf(i: u32) -> Value {
    pod_conf_in("gen", json!({}), i)
}

/// Fabricated pod `i` of network `name` with the config keys `extra`.
fn pod_conf_in(name: &str, extra: Value, i: u32) -> Value {
    let prev = prev_result(
        "1.0.0",
        "cni6br0",
        &fake_veth(i),
        "/var/run/netns/fw6-fake-pod",
        &[
            &format!("{}/96", fake_ula(i)),
            &format!("{}/96", fake_gua(i)),
        ],
    );
    conf("1.0.0", name, extra, &prev)
}

/// ADD after ADD through the binary: every pod gets its rules; an
/// operator's flush of CNI6-FORWARD between two ADDs (a commit the record
/// does not know) is repaired by the next ADD, and so is a deleted
/// FORWARD jump. Other tests share the record file; whichever path an ADD
/// takes, what it leaves must be whole.
#[test]
fn damage_between_adds_is_repaired() {
    harness::require_root();
    let node = RulesNode::new();
    let ids: Vec<String> = (0..6).map(|i| container_id(&format!("gen{i}"))).collect();
    let add = |i: usize| {
        node.fw("ADD", &ids[i], &pod_conf(i as u32)).assert_ok();
        assert_eq!(node.pod_rules("gen", &ids[i]).len(), 5, "pod {i}");
    };
    let whole = |why: &str| {
        let rules = node.rules();
        let has = |needle: &str| rules.iter().any(|r| r.contains(needle));
        assert!(
            has("-A FORWARD -m comment --comment \"firewall6: cni6 pod firewall\" -j CNI6-FORWARD"),
            "{why}: {rules:#?}"
        );
        assert!(has("-A CNI6-FORWARD -m comment --comment \"firewall6: source check of pod traffic\" -j CNI6-ANTISPOOF"), "{why}");
        assert!(has("-A CNI6-FORWARD -m comment --comment \"firewall6: inbound policy of pods\" -j CNI6-INGRESS"), "{why}");
    };
    add(0);
    add(1);
    add(2);
    whole("three ADDs");
    node.ip6tables(&["-F", "CNI6-FORWARD"]);
    add(3);
    whole("after a flush of CNI6-FORWARD");
    node.drop_forward_jump();
    add(4);
    whole("after the FORWARD jump was deleted");
    node.fw("DEL", &ids[4], &pod_conf(4)).assert_silent_ok();
    assert!(node.pod_rules("gen", &ids[4]).is_empty());
    add(5);
    whole("after a DEL");
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| *i != 4) {
        node.fw("CHECK", id, &pod_conf(i as u32)).assert_silent_ok();
    }
    for (i, id) in ids.iter().enumerate() {
        node.fw("DEL", id, &pod_conf(i as u32)).assert_silent_ok();
        assert!(node.pod_rules("gen", id).is_empty());
    }
}

/// Two networks whose configs differ (here: their admin chains) attach in
/// turn, so the record comes to vouch for both skeletons at once (that
/// their ADDs then skip the checks is the unit test
/// `another_config_checks_then_both_take_turns`: the record file is
/// shared with the other tests here, so this one asserts only what must
/// hold whichever path each ADD took). An operator deleting one
/// network's admin jump between ADDs is a commit the record does not
/// know: the network's own next ADD still puts it back.
#[test]
fn two_networks_in_turn_stay_whole() {
    harness::require_root();
    let node = RulesNode::new();
    let nets = [
        ("gena", json!({"adminChain": "GEN-OPS-A"})),
        ("genb", json!({"adminChain": "GEN-OPS-B"})),
    ];
    let ids: Vec<String> = (0..8).map(|i| container_id(&format!("gab{i}"))).collect();
    let net_of = |i: usize| &nets[i % 2];
    let pod = |i: usize| pod_conf_in(net_of(i).0, net_of(i).1.clone(), 10 + i as u32);
    let add = |i: usize| {
        node.fw("ADD", &ids[i], &pod(i)).assert_ok();
        assert_eq!(node.pod_rules(net_of(i).0, &ids[i]).len(), 5, "pod {i}");
    };
    let jump = |chain: &str| {
        format!("-A CNI6-FORWARD -m comment --comment \"firewall6: operator overrides first\" -j {chain}")
    };
    let has = |rule: &str| node.rules().iter().any(|r| r == rule);
    for i in 0..6 {
        add(i);
    }
    assert!(has(&jump("GEN-OPS-A")) && has(&jump("GEN-OPS-B")));
    node.ip6tables(&[
        "-D",
        "CNI6-FORWARD",
        "-m",
        "comment",
        "--comment",
        "firewall6: operator overrides first",
        "-j",
        "GEN-OPS-B",
    ]);
    add(6);
    add(7);
    assert!(has(&jump("GEN-OPS-B")), "network b's ADD repaired its jump");
    assert!(has(&jump("GEN-OPS-A")));
    for (i, id) in ids.iter().enumerate() {
        node.fw("CHECK", id, &pod(i)).assert_silent_ok();
    }
    for (i, id) in ids.iter().enumerate() {
        node.fw("DEL", id, &pod(i)).assert_silent_ok();
        assert!(node.pod_rules(net_of(i).0, id).is_empty());
    }
}
