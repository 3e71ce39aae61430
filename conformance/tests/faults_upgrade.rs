//! Upgrade safety: a store and a ruleset written by a release
//! (`testdata/upgrade/`, made by `regenerate_fixture` below with the
//! binaries of that release) are read and cleaned by the current code:
//! every attachment DELed without prevResult (a runtime whose cache did not
//! survive the upgrade, conformance.md #28) leaves an empty store and no per-pod
//! rule, the node-wide skeleton stays. A record of a newer format version
//! is refused, not released (ipam-prefix's lib.rs, "Format version").
//! The fixture's ruleset has the flat firewall dispatch of that release:
//! the next ADD converts it to the dispatch tree (firewall6's lib.rs,
//! "Chain layout"), the earlier pods' rules stay where DEL finds them.
//!
//! Regenerate (only when the on-disk format changes on purpose, keeping the
//! old fixture as a second directory):
//! `cargo test -p conformance --test faults_upgrade -- --ignored regenerate_fixture`

use conformance::chain::{assert_spec_error, names, Chain};
use conformance::firewall_helpers::{
    conf as fw_conf, firewall6, flat_dispatch_batch, Lab, LabPod, Listener,
};
use conformance::harness::{self, Netns};
use serde_json::{json, Value};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PREFIX: &str = "c6u";
const NETWORK: &str = "upgrade";
/// The boot id written into the fixture (an earlier boot than any test's).
const FIXTURE_BOOT: &str = "0c6f1c57-0000-4000-8000-000000000001";

fn fixture_dir() -> PathBuf {
    testdata::dir().join("upgrade")
}

fn manifest() -> Value {
    let p = fixture_dir().join("manifest.json");
    serde_json::from_slice(&std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

fn attachments() -> Vec<String> {
    manifest()["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["containerID"].as_str().unwrap().to_string())
        .collect()
}

fn chain() -> Chain {
    let mut c = Chain::new(PREFIX);
    c.network = NETWORK.to_string();
    c.bridge = manifest()["bridge"].as_str().unwrap().to_string();
    c
}

/// Copy a directory tree, symlinks as symlinks.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if ft.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn current_boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .unwrap()
        .trim()
        .to_string()
}

/// Put the fixture store in the chain's data dir; with `this_boot`, its
/// boot id (file and records) becomes the running one, as if the upgrade
/// happened without a reboot.
fn install_store(chain: &Chain, this_boot: bool) {
    let dst = chain.store_dir();
    copy_tree(&fixture_dir().join("store").join(NETWORK), &dst);
    if this_boot {
        let boot = current_boot_id();
        std::fs::write(dst.join("boot_id"), format!("{boot}\n")).unwrap();
        for r in names(&dst.join("attachments")) {
            let p = dst.join("attachments").join(r);
            let mut v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            v["bootId"] = Value::String(boot.clone());
            std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
        }
    }
}

fn restore_rules(chain: &Chain) {
    let rules = std::fs::read(fixture_dir().join("rules.v6")).unwrap();
    chain
        .node
        .exec_ok_input(&["ip6tables-restore", "-w"], &rules);
}

fn gone_netns() -> String {
    format!("/var/run/netns/{PREFIX}-gone-{}", std::process::id())
}

/// The fixture's three attachments, DELed by the current code without
/// prevResult and with their namespaces gone: store empty, per-pod rules
/// gone, the node-wide chains (the skeleton) still there.
#[test]
fn current_code_cleans_the_fixture() {
    let chain = chain();
    install_store(&chain, true);
    restore_rules(&chain);
    let cids = attachments();
    assert_eq!(chain.records().len(), cids.len(), "fixture store");
    assert_eq!(chain.slot_links().len(), cids.len(), "fixture slot links");
    for c in &cids {
        assert!(
            chain
                .pod_rules()
                .iter()
                .any(|r| r.contains(&format!("id={c}"))),
            "fixture rules for {c}"
        );
    }
    for c in &cids {
        for o in chain.del(c, &gone_netns()) {
            o.assert_no_panic();
            assert!(o.success(), "DEL {c}: {} / {}", o.stdout, o.stderr);
        }
    }
    chain.assert_clean("after DEL of every fixture attachment");
    let rules = chain.rules();
    assert!(
        rules.iter().any(|r| r == "-N CNI6-FORWARD")
            && rules.iter().any(|r| r.contains("-j CNI6-FORWARD")),
        "the skeleton stays: {rules:#?}"
    );
    // The store is usable by the current code: a new pod gets an address.
    let pod = Netns::new(PREFIX);
    let cid = harness::container_id("upn");
    for o in chain.add(&cid, &pod.path_str()) {
        assert!(
            o.success(),
            "ADD after upgrade: {} / {}",
            o.stdout,
            o.stderr
        );
    }
    for o in chain.del(&cid, &pod.path_str()) {
        assert!(o.success(), "{}", o.stderr);
    }
    chain.assert_clean("at the end");
}

/// The flat firewall dispatch of an earlier release (the fixture's
/// ruleset): the next ADD converts it to the dispatch tree in its repair
/// path, leaving the pods' rules of the earlier release in their buckets,
/// where DEL without prevResult still finds and removes them.
#[test]
fn fixture_ruleset_is_converted_by_the_next_add() {
    let chain = chain();
    install_store(&chain, true);
    restore_rules(&chain);
    let dispatch = |rules: &[String]| -> Vec<String> {
        rules
            .iter()
            .filter(|r| r.starts_with("-A CNI6-ANTISPOOF ") || r.starts_with("-A CNI6-INGRESS "))
            .cloned()
            .collect()
    };
    // The hand-written old layout the Lab test below uses is the fixture's.
    assert_eq!(
        dispatch(&chain.rules()),
        firewall6::rules::flat_dispatch_of_earlier_release(),
        "fixture dispatch"
    );
    let old_pod_rules = chain.pod_rules();
    assert_eq!(old_pod_rules.len(), 3 * 3, "{old_pod_rules:#?}");

    let pod = Netns::new(PREFIX);
    let cid = harness::container_id("upc");
    for o in chain.add(&cid, &pod.path_str()) {
        assert!(
            o.success(),
            "ADD on the old layout: {} / {}",
            o.stdout,
            o.stderr
        );
    }
    let rules = chain.rules();
    let d = dispatch(&rules);
    // CNI6-ANTISPOOF: the unbridged guard, 16 groups, the catch-all;
    // CNI6-INGRESS: multicast, 16 groups.
    assert_eq!(d.len(), 18 + 17, "converted dispatch: {d:#?}");
    assert!(d
        .iter()
        .any(|r| r.contains("-d ff00::/8 ") && r.ends_with("-j RETURN")));
    for g in 0..16 {
        for prefix in ["CNI6-PX", "CNI6-DX"] {
            let n = format!("-A {prefix}-{g:x} ");
            assert_eq!(
                rules.iter().filter(|r| r.starts_with(&n)).count(),
                16,
                "{n}"
            );
        }
    }
    let now = chain.pod_rules();
    for r in &old_pod_rules {
        assert!(now.contains(r), "earlier release's rule kept: {r}");
    }
    // The new pod's source rules (its address and link-local bound to its
    // MAC) and its inbound policy rule.
    let new_pod: Vec<&String> = now.iter().filter(|r| r.contains(&cid)).collect();
    assert_eq!(new_pod.len(), 3, "{new_pod:#?}");
    assert_eq!(
        new_pod
            .iter()
            .filter(|r| r.starts_with("-A CNI6-S-") && r.contains("--mac-source"))
            .count(),
        2,
        "{new_pod:#?}"
    );
    // Each earlier pod's address bound without a MAC (its port is gone, so
    // the bridge knows none), under its tag, by the ADD that converted.
    let bound: Vec<&String> = now
        .iter()
        .filter(|r| r.starts_with("-A CNI6-S-") && !r.contains(&cid))
        .collect();
    assert_eq!(bound.len(), attachments().len(), "{bound:#?}");
    assert!(
        bound.iter().all(|r| !r.contains("--mac-source")),
        "{bound:#?}"
    );
    assert_eq!(now.len(), old_pod_rules.len() + 3 + bound.len(), "{now:#?}");
    for c in &attachments() {
        for o in chain.del(c, &gone_netns()) {
            assert!(o.success(), "DEL {c}: {} / {}", o.stdout, o.stderr);
        }
    }
    let left = chain.pod_rules();
    assert!(
        left.iter().all(|r| r.contains(&format!("id={cid}"))),
        "{left:#?}"
    );
    for o in chain.del(&cid, &pod.path_str()) {
        assert!(o.success(), "{}", o.stderr);
    }
    chain.assert_clean("at the end");
}

/// The same upgrade with real traffic: pod a's rules are made by the
/// current code, then the node's dispatch is turned into the flat one of
/// the earlier release by hand (the bucket rules are the same in both).
/// CHECK reports the old layout; the ADD of pod b converts it; a's rules
/// still decide its traffic (policy and source check), CHECK passes, DEL
/// removes them.
#[test]
fn flat_dispatch_with_traffic_is_converted_by_the_next_add() {
    let lab = Lab::new();
    let fw = firewall6();
    let add = |pod: &LabPod, cid: &str| {
        let c = fw_conf(
            "1.0.0",
            "up",
            json!({}),
            &pod.prev_result("1.0.0", &lab.bridge),
        );
        lab.node.call(&fw, "ADD", cid, &pod.path(), &c).assert_ok();
        c
    };
    let (ca, cb) = (harness::container_id("upa"), harness::container_id("upb"));
    let conf_a = add(&lab.a, &ca);
    lab.node.restore(&flat_dispatch_batch());
    let rules = lab.node.rules();
    assert!(!rules
        .iter()
        .any(|r| r.starts_with("-N CNI6-PX-") || r.starts_with("-N CNI6-DX-")));
    assert_eq!(
        rules
            .iter()
            .filter(|r| r.starts_with("-A CNI6-INGRESS "))
            .count(),
        256
    );
    let a_rules = lab.node.pod_rules("up", &ca);
    // Its two addresses and link-local bound to its MAC, the policy
    // of its two addresses (filter).
    assert_eq!(a_rules.len(), 5);
    let check = lab.node.call(&fw, "CHECK", &ca, &lab.a.path(), &conf_a);
    assert!(!check.success());
    assert!(check.stdout.contains("flat layout"), "{}", check.stdout);
    // The old layout enforces a's policy too (the control for below).
    let t = Duration::from_millis(1500);
    let l = Listener::new(lab.a.ns.path(), lab.a.gua, 8081);
    assert!(
        l.probe(lab.outside.path(), None, t).is_err(),
        "old layout: outside → a:8081"
    );

    let conf_b = add(&lab.b, &cb);
    let rules = lab.node.rules();
    assert_eq!(
        rules
            .iter()
            .filter(|r| r.starts_with("-A CNI6-INGRESS "))
            .count(),
        17
    );
    assert_eq!(
        rules
            .iter()
            .filter(|r| r.starts_with("-A CNI6-ANTISPOOF "))
            .count(),
        18,
        "the unbridged guard, 16 port groups, the catch-all"
    );
    assert_eq!(
        lab.node.pod_rules("up", &ca),
        a_rules,
        "a's rules untouched"
    );
    for (cid, pod, c) in [(&ca, &lab.a, &conf_a), (&cb, &lab.b, &conf_b)] {
        lab.node
            .call(&fw, "CHECK", cid, &pod.path(), c)
            .assert_silent_ok();
    }
    // a's policy (cluster-only, 443 open) through the tree.
    let l = Listener::new(lab.a.ns.path(), lab.a.gua, 8082);
    assert!(
        l.probe(lab.outside.path(), None, t).is_err(),
        "outside → a:8082"
    );
    let l443 = Listener::new(lab.a.ns.path(), lab.a.gua, 443);
    l443.probe_retry(lab.outside.path(), None, t, 3)
        .expect("outside → a:443");
    // Pod to pod inside the cluster, both ways; b's spoofed source dropped.
    let la = Listener::new(lab.a.ns.path(), lab.a.ula, 8083);
    assert_eq!(
        la.probe_retry(lab.b.ns.path(), None, t, 3).unwrap(),
        lab.b.ula
    );
    let lb = Listener::new(lab.b.ns.path(), lab.b.ula, 8084);
    assert_eq!(
        lb.probe_retry(lab.a.ns.path(), None, t, 3).unwrap(),
        lab.a.ula
    );
    // (Added only now: as a /128 the kernel would prefer it as source.)
    let foreign: Ipv6Addr = "fd00:f6::1:1:0:99".parse().unwrap();
    lab.b.ns.add_addr("eth0", &format!("{foreign}/128"));
    assert!(
        la.probe(lab.b.ns.path(), Some(foreign), t).is_err(),
        "spoofed b → a"
    );

    // DEL of the pod added under the old layout removes its rules: a is no
    // longer a known source on the bridge, so nothing of it passes.
    lab.node
        .call(&fw, "DEL", &ca, "", &conf_a)
        .assert_silent_ok();
    assert!(lab.node.pod_rules("up", &ca).is_empty());
    let l = Listener::new(lab.a.ns.path(), lab.a.gua, 8085);
    assert!(
        l.probe(lab.outside.path(), None, t).is_err(),
        "after DEL: a's replies must not leave the bridge"
    );
    lab.node
        .call(&fw, "DEL", &cb, "", &conf_b)
        .assert_silent_ok();
    assert!(lab.node.pod_rules("up", &cb).is_empty());
}

/// Upgrade across a reboot: the fixture's records carry an earlier boot id,
/// so the first call of the new code releases them all (docs/design.md,
/// "Nothing leaks across a reboot").
#[test]
fn fixture_of_an_earlier_boot_is_released_by_the_first_call() {
    let chain = chain();
    install_store(&chain, false);
    assert_ne!(
        std::fs::read_to_string(chain.store_dir().join("boot_id"))
            .unwrap()
            .trim(),
        current_boot_id()
    );
    let pod = Netns::new(PREFIX);
    let cid = harness::container_id("upb");
    let outs = chain.add(&cid, &pod.path_str());
    assert!(outs.iter().all(|o| o.success()), "{}", outs[0].stderr);
    assert_eq!(chain.records(), vec![format!("{cid}@eth0")]);
    assert_eq!(chain.slot_links().len(), 1);
    for o in chain.del(&cid, &pod.path_str()) {
        assert!(o.success(), "{}", o.stderr);
    }
    chain.assert_clean("at the end");
}

/// A record whose format version is newer than the code (a downgrade) is
/// refused with an error naming the version; DEL and GC leave it and its
/// slot link in place; the other attachments are cleaned as usual.
#[test]
fn newer_record_version_is_refused_and_kept() {
    let chain = chain();
    install_store(&chain, true);
    let cids = attachments();
    let rec = chain
        .store_dir()
        .join("attachments")
        .join(format!("{}@eth0", cids[0]));
    let mut v: Value = serde_json::from_slice(&std::fs::read(&rec).unwrap()).unwrap();
    v["version"] = Value::from(2);
    std::fs::write(&rec, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    let before = std::fs::read(&rec).unwrap();
    let outs = chain.del(&cids[0], &gone_netns());
    let (code, msg) = assert_spec_error(&outs[1]);
    assert_eq!(code, 5, "{msg}");
    assert!(msg.contains("version 2") && msg.contains(&cids[0]), "{msg}");
    for c in &cids[1..] {
        for o in chain.del(c, &gone_netns()) {
            assert!(o.success(), "DEL {c}: {}", o.stdout);
        }
    }
    let gc = chain.gc(&[]);
    let (code, msg) = assert_spec_error(&gc[0]);
    assert_eq!(code, 5, "GC reports the record it cannot read: {msg}");
    assert_eq!(
        std::fs::read(&rec).unwrap(),
        before,
        "the newer record is untouched"
    );
    assert_eq!(chain.records(), vec![format!("{}@eth0", cids[0])]);
    assert_eq!(chain.slot_links().len(), 1, "its slot stays reserved");
}

/// Writes `testdata/upgrade/` with the binaries under test: three
/// attachments of the full chain on network "upgrade" (store tree with
/// boot_id and cursor, `ip6tables-save` of the node, a manifest).
#[test]
#[ignore = "regenerates the fixture; run by hand"]
fn regenerate_fixture() {
    let chain = chain_for_generation();
    let pods: Vec<Netns> = (0..3).map(|_| Netns::new(PREFIX)).collect();
    let cids: Vec<String> = ["upgrade0a", "upgrade0b", "upgrade0c"]
        .map(String::from)
        .to_vec();
    for (c, p) in cids.iter().zip(&pods) {
        for o in chain.add(c, &p.path_str()) {
            assert!(o.success(), "{}", o.stderr);
        }
    }
    let out = fixture_dir();
    let _ = std::fs::remove_dir_all(out.join("store"));
    copy_tree(&chain.store_dir(), &out.join("store").join(NETWORK));
    let _ = std::fs::remove_file(out.join("store").join(NETWORK).join("lock"));
    // The fixture stands for a node of an earlier boot: a fixed boot id, so
    // the tests never depend on the boot it was made in.
    let store = out.join("store").join(NETWORK);
    let boot = current_boot_id();
    for p in std::iter::once(store.join("boot_id")).chain(
        names(&store.join("attachments"))
            .into_iter()
            .map(|r| store.join("attachments").join(r)),
    ) {
        let text = std::fs::read_to_string(&p)
            .unwrap()
            .replace(&boot, FIXTURE_BOOT);
        std::fs::write(&p, text).unwrap();
    }
    let save = chain.node.exec_ok(&["ip6tables-save"]);
    let rules: Vec<&str> = save.lines().filter(|l| !l.starts_with('#')).collect();
    std::fs::write(out.join("rules.v6"), rules.join("\n") + "\n").unwrap();
    let manifest = serde_json::json!({
        "written": "cni6 0.1.0 (format version 1), by conformance/tests/faults_upgrade.rs regenerate_fixture",
        "network": NETWORK,
        "bridge": chain.bridge,
        "nodePrefix": conformance::chain::NODE_PREFIX,
        "attachments": cids.iter().map(|c| serde_json::json!({"containerID": c, "ifname": "eth0"})).collect::<Vec<_>>(),
    });
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_string_pretty(&manifest).unwrap() + "\n",
    )
    .unwrap();
    for (c, p) in cids.iter().zip(&pods) {
        chain.del(c, &p.path_str());
    }
}

fn chain_for_generation() -> Chain {
    let mut c = Chain::new(PREFIX);
    c.network = NETWORK.to_string();
    c.bridge = "cni6up0".to_string();
    c
}

/// Issue 15: a pod attached by the release before the raw source check
/// (physdev rules in the port buckets, no source buckets) keeps its
/// traffic when the node's next ADD brings the raw check to its bridge:
/// that ADD binds the earlier pod's addresses to the MAC the bridge learned
/// on its port, under its tag, and DEL removes them with its physdev rules.
#[test]
fn pod_of_the_release_before_the_raw_source_check_keeps_working() {
    let lab = Lab::new();
    let fw = firewall6();
    let conf_of = |pod: &LabPod| {
        fw_conf(
            "1.0.0",
            "up",
            json!({}),
            &pod.prev_result("1.0.0", &lab.bridge),
        )
    };
    let (ca, cb) = (harness::container_id("upla"), harness::container_id("uplb"));
    let conf_a = conf_of(&lab.a);
    lab.node
        .call(&fw, "ADD", &ca, &lab.a.path(), &conf_a)
        .assert_ok();
    // Turn a into a pod of the earlier release: its source rules become
    // the physdev rules that release wrote, and the bridge loses its jumps.
    let tag = format!("firewall6 net=up if=eth0 id={ca}");
    let mut old = String::from("*filter\n");
    for l in lab.node.rules() {
        let jump = ["INPUT", "FORWARD", "CNI6-PODS"]
            .iter()
            .any(|c| l.starts_with(&format!("-A {c} -i {} ", lab.bridge)));
        if jump || (l.starts_with("-A CNI6-S-") && l.contains(&tag)) {
            old += &format!("-D {}\n", &l[3..]);
        }
    }
    for addr in [lab.a.ula, lab.a.gua] {
        old += &format!(
            "-A CNI6-P-OTHER -s {addr}/128 -m physdev --physdev-in {} -m comment --comment \"{tag}\" -g CNI6-FROM-POD\n",
            lab.a.veth
        );
    }
    old += &format!(
        "-A CNI6-P-OTHER -m physdev --physdev-in {} -m comment --comment \"{tag}\" -j DROP\nCOMMIT\n",
        lab.a.veth
    );
    lab.node.restore(&old);
    assert!(lab
        .node
        .rules()
        .iter()
        .all(|l| !(l.starts_with("-A CNI6-S-") && l.contains(&tag))));
    // The bridge learns a's MAC from its traffic (its port is not locked).
    let t = Duration::from_millis(1500);
    let to_b = Listener::new(lab.b.ns.path(), lab.b.ula, 8090);
    let _ = to_b.probe(lab.a.ns.path(), None, t);

    // The next ADD (pod b) brings the raw check back and binds a.
    let conf_b = conf_of(&lab.b);
    lab.node
        .call(&fw, "ADD", &cb, &lab.b.path(), &conf_b)
        .assert_ok();
    let a_raw: Vec<String> = lab
        .node
        .rules()
        .into_iter()
        .filter(|l| l.starts_with("-A CNI6-S-") && l.contains(&tag))
        .collect();
    assert_eq!(a_raw.len(), 3, "a's addresses and link-local: {a_raw:#?}");
    assert!(
        a_raw.iter().all(|l| l.contains("--mac-source")),
        "{a_raw:#?}"
    );
    let l443 = Listener::new(lab.a.ns.path(), lab.a.gua, 443);
    l443.probe_retry(lab.outside.path(), None, t, 3)
        .expect("outside → earlier pod a:443");
    let la = Listener::new(lab.a.ns.path(), lab.a.ula, 8091);
    assert_eq!(
        la.probe_retry(lab.b.ns.path(), None, t, 3).unwrap(),
        lab.b.ula
    );
    let lb = Listener::new(lab.b.ns.path(), lab.b.ula, 8092);
    assert_eq!(
        lb.probe_retry(lab.a.ns.path(), None, t, 3).unwrap(),
        lab.a.ula
    );
    let foreign: Ipv6Addr = "fd00:f6::1:1:0:98".parse().unwrap();
    lab.a.ns.add_addr("eth0", &format!("{foreign}/128"));
    let lo = Listener::new(lab.outside.path(), lab.outside_addr, 8093);
    assert!(
        lo.probe(lab.a.ns.path(), Some(foreign), t).is_err(),
        "earlier pod a's spoofed source"
    );

    // DEL without prevResult removes the physdev rules and the binding.
    lab.node
        .call(&fw, "DEL", &ca, "", &conf_a)
        .assert_silent_ok();
    assert!(lab.node.pod_rules("up", &ca).is_empty());
    lab.node
        .call(&fw, "DEL", &cb, "", &conf_b)
        .assert_silent_ok();
    assert!(lab.node.pod_rules("up", &cb).is_empty());
}
