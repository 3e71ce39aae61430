//! firewall6 as a chained plugin, black-box: every verb at every version it
//! advertises, run inside a node namespace of the test's own (rules never
//! reach the machine's ruleset). Rules only here; traffic is in
//! firewall6_traffic.rs.

use conformance::firewall_helpers::{conf, prev_result, RulesNode};
use conformance::harness::{self, container_id};
use serde_json::{json, Value};

const NET: &str = "cluster";
const VERSIONS: &[&str] = &["0.4.0", "1.0.0", "1.1.0"];

fn pod_prev(version: &str, veth: &str, last: u16) -> Value {
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

/// conformance.md #40: VERSION lists 0.4.0 and later only.
#[test]
fn version_lists_from_0_4() {
    // conformance.md #40

    harness::require_root();
    let out = harness::Invocation::new(conformance::firewall_helpers::firewall6(), "VERSION")
        .stdin(r#"{"cniVersion":"1.0.0"}"#)
        .run();
    let v = out.assert_ok();
    assert_eq!(v["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
}

/// conformance.md #20, 21, 55, 57: at every version ADD prints prevResult
/// (semantically equal, in the requested version); 36: CHECK passes right
/// after; 25/26: DEL removes every rule of the pod and repeats fine.
#[test]
fn add_check_del_at_every_version() {
    // conformance.md #20
    // conformance.md #21
    // conformance.md #25
    // conformance.md #26
    // conformance.md #36
    // conformance.md #55

    let node = RulesNode::new();
    for (i, v) in VERSIONS.iter().enumerate() {
        let cid = container_id("fw6v");
        let prev = pod_prev(v, &format!("veth{i}"), 0x10 + i as u16);
        let c = conf(v, NET, json!({}), &prev);
        let out = node.fw("ADD", &cid, &c);
        let res = out.assert_ok();
        // conformance.md #20
        assert_eq!(res["cniVersion"], *v);
        // conformance.md #21: stdout ≡ prevResult
        let mut expect = prev.clone();
        expect.as_object_mut().unwrap().remove("dns"); // empty dns is omitted
        assert_eq!(*res, expect, "ADD at {v} changed prevResult");
        assert_eq!(node.pod_rules(NET, &cid).len(), 5, "{:#?}", node.rules());
        // conformance.md #36
        node.fw("CHECK", &cid, &c).assert_silent_ok();
        // conformance.md #25, 26
        for _ in 0..3 {
            node.fw("DEL", &cid, &c).assert_silent_ok();
        }
        assert!(node.pod_rules(NET, &cid).is_empty());
    }
}

/// conformance.md #57: prevResult in an older version than the config (libcni
/// forwards it as is on ADD) is read leniently and re-emitted in the
/// config's version.
#[test]
fn prev_result_of_another_version_is_converted() {
    // conformance.md #57

    let node = RulesNode::new();
    let cid = container_id("fw6c");
    let prev = pod_prev("0.4.0", "vethc", 0x20);
    let c = conf("1.1.0", NET, json!({}), &prev);
    let res = node.fw("ADD", &cid, &c).assert_ok().clone();
    assert_eq!(res["cniVersion"], "1.1.0");
    assert!(res["ips"][0].get("version").is_none());
    assert_eq!(res["ips"][0]["address"], prev["ips"][0]["address"]);
    node.fw("DEL", &cid, &c).assert_silent_ok();
}

/// conformance.md #31, 65: 0.3.x and unknown versions are error 1 for every verb
/// and leave the ruleset untouched.
#[test]
fn old_and_unknown_versions_are_error_1_without_side_effects() {
    // conformance.md #31
    // conformance.md #65

    let node = RulesNode::new();
    let before = node.save();
    for v in ["0.3.0", "0.3.1", "9.9.9"] {
        let cid = container_id("fw6o");
        let c = conf(v, NET, json!({}), &pod_prev("0.3.1", "vetho", 0x30));
        for verb in ["ADD", "CHECK", "DEL"] {
            node.fw(verb, &cid, &c).assert_error(1);
        }
    }
    assert_eq!(node.save(), before);
}

/// conformance.md #51, 45: GC and STATUS before 1.1.0 are error 1.
#[test]
fn gc_and_status_need_1_1() {
    // conformance.md #45
    // conformance.md #51

    let node = RulesNode::new();
    for v in ["0.4.0", "1.0.0"] {
        let c = conf(v, NET, json!({}), &Value::Null);
        node.fw_network("GC", &c).assert_error(1);
        node.fw_network("STATUS", &c).assert_error(1);
    }
}

/// ADD without prevResult is error 7 (firewall6 is chained); so is CHECK
/// (conformance.md #32). Nothing is installed.
#[test]
fn prev_result_required_for_add_and_check() {
    // conformance.md #32

    let node = RulesNode::new();
    let before = node.save();
    for v in VERSIONS {
        let cid = container_id("fw6p");
        let c = conf(v, NET, json!({}), &Value::Null);
        let out = node.fw("ADD", &cid, &c);
        out.assert_error(7);
        assert!(out.msg().contains("prevResult"), "{}", out.msg());
        node.fw("CHECK", &cid, &c).assert_error(7);
    }
    assert_eq!(node.save(), before);
}

/// Malformed known keys: error 7 naming key and value; unknown keys
/// ignored (conformance.md #14).
#[test]
fn config_errors_name_key_and_value() {
    // conformance.md #14

    let node = RulesNode::new();
    let prev = pod_prev("1.0.0", "vethk", 0x40);
    let before = node.save();
    for (extra, needle) in [
        (json!({"ingress": "closed"}), "ingress=\"closed\""),
        (
            json!({"clusterPrefixes": ["10.0.0.0/8"]}),
            "clusterPrefixes[0]",
        ),
        (
            json!({"allowPorts": [{"port": 99999, "protocol": "tcp"}]}),
            "allowPorts[0].port=99999",
        ),
        (json!({"allowPorts": ["90-80"]}), "allowPorts[0]=\"90-80\""),
        (
            json!({"allowPorts": [{"port": 1, "protocol": "icmp"}]}),
            "allowPorts[0].protocol",
        ),
        (json!({"adminChain": "bad name"}), "adminChain"),
    ] {
        let out = node.fw(
            "ADD",
            &container_id("fw6k"),
            &conf("1.0.0", NET, extra, &prev),
        );
        out.assert_error(7);
        assert!(out.msg().contains(needle), "{needle}: {}", out.msg());
    }
    assert_eq!(node.save(), before);
    let cid = container_id("fw6k");
    let c = conf(
        "1.0.0",
        NET,
        json!({"capabilities": {"portMappings": true}, "cni.dev/x": 1, "foo": {"bar": []}}),
        &prev,
    );
    node.fw("ADD", &cid, &c).assert_ok();
    node.fw("DEL", &cid, &c).assert_silent_ok();
}

/// conformance.md #26: DEL of something never added succeeds (also on a node
/// where firewall6 never ran: no chains at all).
#[test]
fn del_of_unknown_attachment_succeeds() {
    // conformance.md #26

    let node = RulesNode::new();
    let before = node.save();
    for v in VERSIONS {
        let c = conf(v, NET, json!({}), &Value::Null);
        node.fw("DEL", &container_id("fw6u"), &c).assert_silent_ok();
    }
    assert_eq!(node.save(), before);
}

/// conformance.md #27, 28: DEL without prevResult and with an empty CNI_NETNS
/// still removes exactly that pod's rules (found by their comment), and
/// leaves the other pod alone.
#[test]
fn del_without_prev_result_removes_rules() {
    // conformance.md #27
    // conformance.md #28

    let node = RulesNode::new();
    for v in VERSIONS {
        let (a, b) = (container_id("fw6a"), container_id("fw6b"));
        let ca = conf(v, NET, json!({}), &pod_prev(v, "vetha", 0x50));
        let cb = conf(v, NET, json!({}), &pod_prev(v, "vethb", 0x51));
        node.fw("ADD", &a, &ca).assert_ok();
        node.fw("ADD", &b, &cb).assert_ok();
        let b_rules = node.pod_rules(NET, &b);
        let bare = conf(v, NET, json!({}), &Value::Null);
        harness::Invocation::attachment(
            conformance::firewall_helpers::firewall6(),
            "DEL",
            &a,
            "",
            "eth0",
        )
        .in_netns(&node.ns)
        .stdin_json(&bare)
        .run()
        .assert_silent_ok();
        assert!(node.pod_rules(NET, &a).is_empty(), "{:#?}", node.rules());
        assert_eq!(node.pod_rules(NET, &b), b_rules);
        // A netns path that no longer exists: same.
        let a2 = container_id("fw6a");
        node.fw("ADD", &a2, &ca).assert_ok();
        harness::Invocation::attachment(
            conformance::firewall_helpers::firewall6(),
            "DEL",
            &a2,
            "/var/run/netns/fw6-gone-for-good",
            "eth0",
        )
        .in_netns(&node.ns)
        .stdin_json(&ca)
        .run()
        .assert_silent_ok();
        assert!(node.pod_rules(NET, &a2).is_empty());
        node.fw("CHECK", &b, &cb).assert_silent_ok();
        node.fw("DEL", &b, &bare).assert_silent_ok();
        assert!(node.pod_rules(NET, &b).is_empty());
    }
}

/// conformance.md #32–34: a deleted or altered rule makes CHECK fail, naming the
/// rule; CHECK changes nothing (ip6tables-save with counters identical
/// before and after, passing or failing), unlike the reference which
/// re-creates chains.
#[test]
fn check_reports_drift_and_changes_nothing() {
    // conformance.md #32
    // conformance.md #33
    // conformance.md #34

    let node = RulesNode::new();
    for v in VERSIONS {
        let cid = container_id("fw6d");
        let c = conf(v, NET, json!({}), &pod_prev(v, "vethd", 0x60));
        node.fw("ADD", &cid, &c).assert_ok();
        let before = node.save();
        node.fw("CHECK", &cid, &c).assert_silent_ok();
        assert_eq!(node.save(), before, "passing CHECK changed the ruleset");

        // One pod rule gone.
        let victim = node.pod_rules(NET, &cid).last().unwrap().clone();
        let spec: Vec<&str> = victim.split(' ').skip(1).collect();
        let del = format!("ip6tables -w -D {}", spec.join(" "));
        node.ns.exec_ok(&["sh", "-c", &del]);
        let broken = node.save();
        let out = node.fw("CHECK", &cid, &c);
        out.assert_error(102);
        assert!(out.msg().contains("lacks rule"), "{}", out.msg());
        assert_eq!(node.save(), broken, "failing CHECK changed the ruleset");

        // The node-wide part altered: the FORWARD jump gone.
        node.fw("DEL", &cid, &c).assert_silent_ok();
        node.fw("ADD", &cid, &c).assert_ok();
        node.drop_forward_jump();
        let broken = node.save();
        let out = node.fw("CHECK", &cid, &c);
        out.assert_error(102);
        assert!(out.msg().contains("FORWARD lacks"), "{}", out.msg());
        assert_eq!(node.save(), broken);

        // A dispatch chain flushed: the pod's rules are unreachable.
        node.fw("ADD", &container_id("fw6r"), &c).assert_ok(); // repairs the jump
        node.ip6tables(&["-F", "CNI6-INGRESS"]);
        let broken = node.save();
        let out = node.fw("CHECK", &cid, &c);
        out.assert_error(102);
        assert!(out.msg().contains("CNI6-INGRESS"), "{}", out.msg());
        assert_eq!(node.save(), broken);
        node.drop_forward_jump(); // ADD repairs via the full path
        node.fw("ADD", &container_id("fw6r"), &c).assert_ok();
        node.fw("CHECK", &cid, &c).assert_silent_ok();

        // The dispatch group leading to the pod's address buckets (low
        // byte 0x60: group 6) flushed.
        node.ip6tables(&["-F", "CNI6-DX-6"]);
        let broken = node.save();
        let out = node.fw("CHECK", &cid, &c);
        out.assert_error(102);
        assert!(out.msg().contains("CNI6-DX-6"), "{}", out.msg());
        assert_eq!(node.save(), broken);
        node.drop_forward_jump();
        node.fw("ADD", &container_id("fw6r"), &c).assert_ok();
        node.fw("CHECK", &cid, &c).assert_silent_ok();

        // The policy chain altered (an allowed port removed by hand).
        let pol = node
            .rules()
            .into_iter()
            .find(|l| l.starts_with("-A CNI6-POL-") && l.contains("--dport 443"))
            .expect("policy rule for port 443");
        let spec: Vec<&str> = pol.split(' ').skip(1).collect();
        node.ns
            .exec_ok(&["sh", "-c", &format!("ip6tables -w -D {}", spec.join(" "))]);
        let out = node.fw("CHECK", &cid, &c);
        out.assert_error(102);
        assert!(out.msg().contains("policy chain"), "{}", out.msg());
        node.fw("DEL", &cid, &c).assert_silent_ok();
    }
}

/// A CHECK whose prevResult names an address the pod was not given fails.
#[test]
fn check_with_foreign_address_fails() {
    // conformance.md #32

    let node = RulesNode::new();
    let cid = container_id("fw6f");
    let c = conf("1.0.0", NET, json!({}), &pod_prev("1.0.0", "vethf", 0x70));
    node.fw("ADD", &cid, &c).assert_ok();
    let other = conf("1.0.0", NET, json!({}), &pod_prev("1.0.0", "vethf", 0x71));
    node.fw("CHECK", &cid, &other).assert_error(102);
    node.fw("DEL", &cid, &c).assert_silent_ok();
}

/// The admin chain is created when missing, jumped to first, and never
/// modified: an operator's rule in it survives ADD, CHECK, DEL and GC; a
/// configured name is honoured.
#[test]
fn admin_chain_survives_everything() {
    let node = RulesNode::new();
    for admin in ["CNI6-ADMIN", "OPS-OVERRIDES"] {
        let extra = json!({ "adminChain": admin });
        let c0 = conf("1.1.0", NET, extra.clone(), &Value::Null);
        let cid = container_id("fw6m");
        let c = conf(
            "1.1.0",
            NET,
            extra.clone(),
            &pod_prev("1.1.0", "vethm", 0x80),
        );
        node.fw("ADD", &cid, &c).assert_ok();
        let fwd = node.ip6tables(&["-S", "CNI6-FORWARD"]);
        let first = fwd.lines().find(|l| l.starts_with("-A ")).unwrap();
        assert!(first.ends_with(&format!("-j {admin}")), "{fwd}");
        let op_rule = "-A {admin} -s 2001:db8:dead::/48 -m comment --comment operator -j DROP"
            .replace("{admin}", admin);
        let spec: Vec<&str> = op_rule.split(' ').skip(1).collect();
        node.ns
            .exec_ok(&["sh", "-c", &format!("ip6tables -w -A {}", spec.join(" "))]);
        let admin_before = node.ip6tables(&["-S", admin]);
        let cid2 = container_id("fw6m");
        node.fw("ADD", &cid2, &c).assert_ok();
        node.fw("CHECK", &cid, &c).assert_silent_ok();
        node.fw("DEL", &cid, &c).assert_silent_ok();
        node.fw_network("GC", &json!({"cniVersion":"1.1.0","name":NET,"type":"firewall6","adminChain":admin,"cni.dev/valid-attachments":[]}))
            .assert_silent_ok();
        assert!(node.pod_rules(NET, &cid2).is_empty());
        assert_eq!(node.ip6tables(&["-S", admin]), admin_before);
        assert!(admin_before.contains(&op_rule), "{admin_before}");
        // GC without a list is a no-op and leaves the admin chain too.
        node.fw_network("GC", &c0).assert_silent_ok();
        assert_eq!(node.ip6tables(&["-S", admin]), admin_before);
    }
}

/// conformance.md #47–49: GC removes the rules of attachments not in the valid
/// list, of this network only; accepts both key spellings; no list = no-op.
#[test]
fn gc_scoped_to_network() {
    // conformance.md #47
    // conformance.md #48
    // conformance.md #51

    let node = RulesNode::new();
    let (a, b, c_id) = (
        container_id("fw6ga"),
        container_id("fw6gb"),
        container_id("fw6gc"),
    );
    let ca = conf("1.1.0", "netn", json!({}), &pod_prev("1.1.0", "vga", 0x90));
    let cb = conf("1.1.0", "netn", json!({}), &pod_prev("1.1.0", "vgb", 0x91));
    let cc = conf("1.1.0", "netm", json!({}), &pod_prev("1.1.0", "vgc", 0x92));
    node.fw("ADD", &a, &ca).assert_ok();
    node.fw("ADD", &b, &cb).assert_ok();
    node.fw("ADD", &c_id, &cc).assert_ok();
    let gc = |valid_key: Option<&str>, ids: &[&str]| {
        let mut g = json!({"cniVersion": "1.1.0", "name": "netn", "type": "firewall6"});
        if let Some(k) = valid_key {
            g[k] = json!(ids
                .iter()
                .map(|i| json!({"containerID": i, "ifname": "eth0"}))
                .collect::<Vec<_>>());
        }
        g
    };
    // No list: no information, nothing removed.
    let before = node.save();
    node.fw_network("GC", &gc(None, &[])).assert_silent_ok();
    assert_eq!(node.save(), before);
    // Old spelling, both valid: nothing removed.
    node.fw_network("GC", &gc(Some("cni.dev/attachments"), &[&a, &b]))
        .assert_silent_ok();
    assert_eq!(node.pod_rules("netn", &b).len(), 5);
    // B stale: removed; A (valid) and C (other network) intact.
    node.fw_network("GC", &gc(Some("cni.dev/valid-attachments"), &[&a]))
        .assert_silent_ok();
    assert!(node.pod_rules("netn", &b).is_empty());
    assert_eq!(node.pod_rules("netn", &a).len(), 5);
    assert_eq!(node.pod_rules("netm", &c_id).len(), 5);
    node.fw("CHECK", &a, &ca).assert_silent_ok();
    node.fw("CHECK", &c_id, &cc).assert_silent_ok();
    // Empty list: everything of netn goes, netm stays.
    node.fw_network("GC", &gc(Some("cni.dev/valid-attachments"), &[]))
        .assert_silent_ok();
    assert!(node.pod_rules("netn", &a).is_empty());
    assert_eq!(node.pod_rules("netm", &c_id).len(), 5);
    node.fw("DEL", &c_id, &cc).assert_silent_ok();
}

/// conformance.md #42, 45, 46: STATUS healthy → 0 and silent; br_netfilter off
/// in the node → 50 naming the sysctl, and ADD of a bridged pod fails with
/// the same reason instead of silently skipping the source check; back on
/// → both work again (conformance.md #44).
#[test]
fn status_and_bridge_netfilter() {
    // conformance.md #42
    // conformance.md #44
    // conformance.md #46

    // Issue 15: the source check leads INPUT and FORWARD and needs no
    // br_netfilter: STATUS and ADD succeed with bridge-nf-call-ip6tables=0.
    let node = RulesNode::new();
    let st = json!({"cniVersion": "1.1.0", "name": NET, "type": "firewall6"});
    node.fw_network("STATUS", &st).assert_silent_ok();
    node.set_bridge_nf("0");
    node.fw_network("STATUS", &st).assert_silent_ok();
    let cid = container_id("fw6s");
    let c = conf("1.1.0", NET, json!({}), &pod_prev("1.1.0", "veths", 0xa0));
    node.fw("ADD", &cid, &c).assert_ok();
    assert_eq!(node.pod_rules(NET, &cid).len(), 5, "sources and policy");
    node.fw("CHECK", &cid, &c).assert_silent_ok();
    node.fw("DEL", &cid, &c).assert_silent_ok();
    assert!(node.pod_rules(NET, &cid).is_empty());
}

/// conformance.md #11: works with no PATH at all (absolute ip6tables paths).
#[test]
fn no_path_needed() {
    // conformance.md #11

    let node = RulesNode::new();
    let cid = container_id("fw6n");
    let c = conf("1.0.0", NET, json!({}), &pod_prev("1.0.0", "vethn", 0xb0));
    let call = |cmd: &str| {
        harness::Invocation::attachment(
            conformance::firewall_helpers::firewall6(),
            cmd,
            &cid,
            "/var/run/netns/x",
            "eth0",
        )
        .unset("PATH")
        .in_netns(&node.ns)
        .stdin_json(&c)
        .run()
    };
    call("ADD").assert_ok();
    call("CHECK").assert_silent_ok();
    call("DEL").assert_silent_ok();
    assert!(node.pod_rules(NET, &cid).is_empty());
}

/// DEL of all pods leaves only the node-wide skeleton: FORWARD jump,
/// CNI6-FORWARD, the empty dispatch chains, FROM-POD, admin and policy.
#[test]
fn del_leaves_only_skeleton() {
    let node = RulesNode::new();
    let ids: Vec<String> = (0..5).map(|_| container_id("fw6z")).collect();
    let confs: Vec<Value> = (0..5)
        .map(|i| {
            conf(
                "1.0.0",
                NET,
                json!({}),
                &pod_prev("1.0.0", &format!("vz{i}"), 0xc0 + i),
            )
        })
        .collect();
    for (id, c) in ids.iter().zip(&confs) {
        node.fw("ADD", id, c).assert_ok();
    }
    for (id, c) in ids.iter().zip(&confs) {
        node.fw("DEL", id, c).assert_silent_ok();
    }
    let rules = node.rules();
    assert!(
        rules
            .iter()
            .all(|l| !l.contains("firewall6 net=cluster if=")),
        "{rules:#?}"
    );
    let raw = node.raw_rules();
    assert!(
        raw.iter().all(|l| !l.contains("firewall6 net=cluster if=")),
        "{raw:#?}"
    );
    let chains: Vec<&str> = rules.iter().filter_map(|l| l.strip_prefix("-N ")).collect();
    // 7 fixed chains + policy + 256 port buckets + catch-all + 256 address
    // buckets + 16 port groups + 16 address groups; CNI6-SRC, CNI6-SRC-ICMP,
    // 16 source groups and 256 source buckets, each still ending in its
    // DROP.
    assert_eq!(chains.len(), 8 + 513 + 32 + 2 + 16 + 256, "{chains:?}");
    assert_eq!(
        rules
            .iter()
            .filter(|l| l.starts_with("-A CNI6-S-") && l.ends_with("-j DROP"))
            .count(),
        256
    );
    // Raw: only the MLD drop of the release before the source check.
    let raw_chains: Vec<&str> = raw.iter().filter_map(|l| l.strip_prefix("-N ")).collect();
    assert_eq!(raw_chains, vec!["CNI6-MLD"], "{raw:#?}");
    for c in [
        "CNI6-ADMIN",
        "CNI6-ANTISPOOF",
        "CNI6-FORWARD",
        "CNI6-FROM-POD",
        "CNI6-INGRESS",
        "CNI6-PODS",
        "CNI6-TO-PODS",
        "CNI6-P-OTHER",
        "CNI6-P-00",
        "CNI6-D-ff",
        "CNI6-PX-0",
        "CNI6-DX-f",
    ] {
        assert!(chains.contains(&c), "{c} missing: {chains:?}");
    }
    assert!(chains.iter().any(|c| c.starts_with("CNI6-POL-")));
    // Every bucket is empty again.
    assert!(
        !rules
            .iter()
            .any(|l| l.starts_with("-A CNI6-P-") || l.starts_with("-A CNI6-D-")),
        "{rules:#?}"
    );
}

/// A repeated ADD of one attachment (conformance.md #22 is about interface
/// plugins; for a chained plugin the documented behaviour is: the rules go
/// in again, CHECK passes, one DEL removes every copy).
#[test]
fn repeated_add_then_one_del() {
    let node = RulesNode::new();
    let cid = container_id("fw6x");
    let c = conf(
        "1.0.0",
        NET,
        json!({}),
        &pod_prev("1.0.0", "c6e3000000000aa", 0xd0),
    );
    node.fw("ADD", &cid, &c).assert_ok();
    node.fw("ADD", &cid, &c).assert_ok();
    assert_eq!(node.pod_rules(NET, &cid).len(), 10);
    // Its sources in the source bucket of their low byte (0xd0), twice.
    assert_eq!(
        node.pod_rules(NET, &cid)
            .iter()
            .filter(|l| l.starts_with("-A CNI6-S-d0 "))
            .count(),
        4
    );
    node.fw("CHECK", &cid, &c).assert_silent_ok();
    node.fw("DEL", &cid, &c).assert_silent_ok();
    assert!(node.pod_rules(NET, &cid).is_empty(), "{:#?}", node.rules());
}

/// Run firewall6 inside the node with ip6tables hidden: a private mount
/// namespace (propagation private, so the host never sees it) where
/// /dev/null is bind-mounted over /usr/sbin/ip6tables (/sbin links to
/// /usr/sbin here; /usr/bin has none).
fn without_ip6tables(node: &RulesNode, cmd: &str, cid: &str, conf: &Value) -> (i32, Value) {
    use std::io::Write;
    let fw = conformance::firewall_helpers::firewall6();
    let script = format!(
        "mount --bind /dev/null /usr/sbin/ip6tables && exec ip netns exec {} {}",
        node.ns.name(),
        fw.display()
    );
    let mut child = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", "/var/run/netns/x")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("unshare");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&serde_json::to_vec(conf).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let v = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).expect("one JSON document")
    };
    (out.status.code().unwrap_or(-1), v)
}

/// conformance.md #42, 46: STATUS is 50 when ip6tables is unusable; ADD fails
/// with the same reason and changes nothing; DEL still succeeds (no
/// ip6tables, no rules of ours to remove: conformance.md #25).
#[test]
fn no_ip6tables_is_status_50() {
    // conformance.md #42
    // conformance.md #46
    let node = RulesNode::new();
    let st = json!({"cniVersion": "1.1.0", "name": NET, "type": "firewall6"});
    let (code, v) = without_ip6tables(&node, "STATUS", "", &st);
    assert_ne!(code, 0);
    assert_eq!(v["code"], 50, "{v}");
    assert!(
        v["msg"].as_str().unwrap().contains("ip6tables not found"),
        "{v}"
    );
    let cid = container_id("fw6i");
    let c = conf("1.1.0", NET, json!({}), &pod_prev("1.1.0", "vethi", 0xe0));
    let before = node.save();
    let (code, v) = without_ip6tables(&node, "ADD", &cid, &c);
    assert_ne!(code, 0);
    assert_eq!(v["code"], 50, "{v}");
    assert_eq!(node.save(), before);
    let (code, v) = without_ip6tables(&node, "DEL", &cid, &c);
    assert_eq!((code, v), (0, Value::Null));
    // The host's own ip6tables was never hidden.
    assert!(
        std::path::Path::new("/usr/sbin/ip6tables")
            .metadata()
            .unwrap()
            .len()
            > 0
            || std::fs::read_link("/usr/sbin/ip6tables").is_ok()
    );
    node.fw_network("STATUS", &st).assert_silent_ok();
}

/// conformance.md #81: 16 first ADDs at once on a fresh node: all succeed, the
/// skeleton is made once (one FORWARD jump, one admin jump), every pod
/// passes CHECK.
#[test]
fn concurrent_first_adds() {
    // conformance.md #81
    let node = RulesNode::new();
    let pods: Vec<(String, Value)> = (0..16u16)
        .map(|i| {
            (
                container_id("fw6q"),
                conf(
                    "1.0.0",
                    NET,
                    json!({}),
                    &pod_prev("1.0.0", &format!("c6{i:02x}00000000000"), 0x100 + i),
                ),
            )
        })
        .collect();
    std::thread::scope(|s| {
        for (cid, c) in &pods {
            let node = &node;
            s.spawn(move || node.fw("ADD", cid, c).assert_ok().clone());
        }
    });
    let rules = node.rules();
    let count = |needle: &str| rules.iter().filter(|l| l.contains(needle)).count();
    // FORWARD: the bridge's source check, then cni6's dispatch, once each.
    assert_eq!(count("-A FORWARD "), 2, "{rules:#?}");
    assert_eq!(count("-j CNI6-FORWARD"), 1, "{rules:#?}");
    assert_eq!(count("-A INPUT "), 1, "{rules:#?}");
    assert_eq!(count("-j CNI6-ADMIN"), 1, "{rules:#?}");
    assert_eq!(count("-A CNI6-INGRESS "), 17);
    // The unbridged guard, 16 port groups, the catch-all.
    assert_eq!(count("-A CNI6-ANTISPOOF "), 18);
    assert_eq!(count("-A CNI6-PX-"), 256);
    assert_eq!(count("-A CNI6-DX-"), 256);
    for (cid, c) in &pods {
        assert_eq!(node.pod_rules(NET, cid).len(), 5);
        node.fw("CHECK", cid, c).assert_silent_ok();
    }
}

/// conformance.md #17: the config (and even the prevResult) changed between ADD
/// and DEL: DEL still removes exactly that attachment's rules.
/// conformance.md #35: a prevResult with extra routes from later in the chain
/// does not fail CHECK.
#[test]
fn del_after_config_change_and_check_tolerates_extras() {
    // conformance.md #17
    // conformance.md #35
    let node = RulesNode::new();
    let (cid, other) = (container_id("fw6e"), container_id("fw6e"));
    let c = conf(
        "1.0.0",
        NET,
        json!({}),
        &pod_prev("1.0.0", "c6a1000000000ee", 0xf0),
    );
    let co = conf(
        "1.0.0",
        NET,
        json!({}),
        &pod_prev("1.0.0", "c6a1000000000ef", 0xf1),
    );
    node.fw("ADD", &cid, &c).assert_ok();
    node.fw("ADD", &other, &co).assert_ok();
    let mut extra = c.clone();
    extra["prevResult"]["routes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"dst": "fd00:beef::/64", "gw": "fd00:f6::1:1:0:1"}));
    node.fw("CHECK", &cid, &extra).assert_silent_ok();
    let changed = conf(
        "1.0.0",
        NET,
        json!({"ingress": "open", "clusterPrefixes": ["fd00:aaaa::/64"], "allowPorts": []}),
        &pod_prev("1.0.0", "c6ff00000000000", 0x77),
    );
    node.fw("DEL", &cid, &changed).assert_silent_ok();
    assert!(node.pod_rules(NET, &cid).is_empty(), "{:#?}", node.rules());
    assert_eq!(node.pod_rules(NET, &other).len(), 5);
    node.fw("CHECK", &other, &co).assert_silent_ok();
}
