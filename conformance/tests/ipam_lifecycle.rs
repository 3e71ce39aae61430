//! ipam-prefix, black box: what ADD/DEL/CHECK/GC/STATUS do to allocations
//! and the store (conformance.md 1.C–1.H, 1.M, 1.N) and the address plan of
//! docs/design.md, with expected addresses computed by the test, not read back
//! from the plugin.

use conformance::harness::*;
use conformance::ipam::*;
use ipnet::Ipv6Net;
use serde_json::{json, Value};
use std::net::Ipv6Addr;

fn pod() -> Netns {
    Netns::new(NETNS_PREFIX)
}

fn add(net: &IpamNet, ns: &Netns, cid: &str) -> Value {
    net.call("ADD", "1.0.0", cid, &ns.path_str(), "eth0")
        .run()
        .assert_ok()
        .clone()
}

fn expected_addrs(net: &IpamNet, slot: u128) -> Vec<Ipv6Net> {
    net.pod_ranges()
        .iter()
        .map(|r| Ipv6Net::new(slot_addr(*r, slot), r.prefix_len()).unwrap())
        .collect()
}

#[test]
fn first_pod_gets_slot_0x10_in_every_prefix() {
    // docs/design.md address plan; contract: result ips in config order, /(L+16),
    // gateway = range|1, routes/dns from config (conformance.md #15).
    let net = demo_net()
        .set_ipam("routes", json!([{"dst": "::/0"}]))
        .set_ipam(
            "dns",
            json!({"nameservers": ["fd8c:1f0a:77e3::a"], "search": ["svc.cluster.local"]}),
        );
    let ns = pod();
    let cid = container_id("plan");
    let r = net
        .call("ADD", "1.0.0", &cid, &ns.path_str(), "eth0")
        .args("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0")
        .run()
        .assert_ok()
        .clone();
    let got = result_addrs(&r);
    assert_eq!(got, expected_addrs(&net, FIRST_SLOT), "{r}");
    assert_eq!(
        got[0].to_string(),
        "fd8c:1f0a:77e3:0:1:1:0:10/96",
        "docs/design.md: C:n:1::k"
    );
    assert_eq!(got[1].to_string(), "2001:db8:7:12:0:1:0:10/96", "G:0:1::k");
    for (ip, range) in r["ips"].as_array().unwrap().iter().zip(net.pod_ranges()) {
        assert_eq!(ip["gateway"], gateway(range).to_string(), "{r}");
    }
    assert_eq!(r["routes"], json!([{"dst": "::/0"}]), "{r}");
    assert_eq!(r["dns"]["nameservers"], json!(["fd8c:1f0a:77e3::a"]), "{r}");
    assert_eq!(r["dns"]["search"], json!(["svc.cluster.local"]), "{r}");

    // The record: slot, addresses, pod, boot id; and its slot link.
    let store = net.store();
    let rec = store.record(&cid, "eth0").expect("record written");
    assert_eq!(Store::record_slot(&rec), FIRST_SLOT, "{rec}");
    assert_eq!(rec["podNamespace"], "default", "{rec}");
    assert_eq!(rec["podName"], "web-0", "{rec}");
    assert_eq!(rec["bootId"], boot_id(), "{rec}");
    let rec_addrs: Vec<String> = rec["addresses"]
        .as_array()
        .expect("record addresses")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    for a in &got {
        assert!(
            rec_addrs
                .iter()
                .any(|s| s == &a.to_string() || s == &a.addr().to_string()),
            "record lacks {a}: {rec}"
        );
    }
    assert_eq!(store.assert_consistent(), vec![Store::key(&cid, "eth0")]);
    assert_eq!(
        store.slots().get(&FIRST_SLOT).map(String::as_str),
        Some(Store::key(&cid, "eth0").as_str())
    );
    for f in ["lock", "boot_id"] {
        assert!(store.dir.join(f).exists(), "store lacks {f}");
    }
    assert_eq!(
        std::fs::read_to_string(store.dir.join("boot_id"))
            .unwrap()
            .trim(),
        boot_id()
    );
}

#[test]
fn ula_and_gua_share_the_interface_id_and_node_part() {
    // docs/design.md: same low 32 bits in every range; node part = node prefix.
    let net = demo_net();
    let ns = pod();
    let nodes = net.node_prefixes();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let r = add(&net, &ns, &container_id("iid"));
        let a = result_addrs(&r);
        assert_eq!(a.len(), 2);
        let low = |x: Ipv6Addr| u128::from(x) & 0xffff_ffff;
        assert_eq!(low(a[0].addr()), low(a[1].addr()), "{r}");
        for (addr, node) in a.iter().zip(&nodes) {
            assert!(
                node.contains(&addr.addr()),
                "{addr} outside node prefix {node}"
            );
            assert_eq!(addr.prefix_len(), node.prefix_len() + 16);
            let range = pod_range(*node, 1);
            assert!(
                range.contains(&addr.addr()),
                "{addr} outside pod range {range}"
            );
            assert!(
                slot_of(range, addr.addr()) >= FIRST_SLOT,
                "reserved slot handed out: {addr}"
            );
        }
        assert!(
            seen.insert(a[0].addr()),
            "address handed out twice: {}",
            a[0]
        );
    }
}

#[test]
fn subnet_id_and_other_lengths() {
    // Contract: pod range = node prefix /L + 16-bit subnetId → /(L+16).
    let ns = pod();
    for (nodes, sid) in [
        (vec!["fd8c:1f0a:77e3:0:2::/80"], 7u16),
        (vec!["fd8c:1f0a:77e3:5::/64", "2001:db8:9:9::/64"], 0xbeef),
        (vec!["fd8c:1f0a:77e3:0:3:4:500::/104"], 65535),
    ] {
        let net = IpamNet::new(&nodes).set_ipam("subnetId", json!(sid));
        let r = add(&net, &ns, &container_id("sid"));
        assert_eq!(
            result_addrs(&r),
            expected_addrs(&net, FIRST_SLOT),
            "subnetId {sid}: {r}"
        );
    }
}

#[test]
fn same_add_twice_returns_the_same_addresses() {
    // conformance.md #22 (our documented choice: idempotent ADD, no second slot)
    let net = demo_net();
    let ns = pod();
    let cid = container_id("twice");
    let a = add(&net, &ns, &cid);
    let b = add(&net, &ns, &cid);
    assert_eq!(result_addrs(&a), result_addrs(&b));
    assert_eq!(
        net.store().assert_consistent().len(),
        1,
        "second slot taken"
    );
    // Same container, another interface: another slot (conformance.md #83: keyed
    // by network, container id AND ifname).
    let c = net
        .call("ADD", "1.0.0", &cid, &ns.path_str(), "net1")
        .run()
        .assert_ok()
        .clone();
    assert_ne!(result_addrs(&a), result_addrs(&c));
    assert_eq!(net.store().assert_consistent().len(), 2);
}

#[test]
fn del_releases_and_is_idempotent() {
    // conformance.md #25, 26, at every version
    let net = demo_net();
    let ns = pod();
    let keep = container_id("keep");
    add(&net, &ns, &keep);
    for v in ALL_VERSIONS {
        let cid = container_id("del");
        net.call("ADD", v, &cid, &ns.path_str(), "eth0")
            .run()
            .assert_ok();
        for _ in 0..3 {
            net.call("DEL", v, &cid, &ns.path_str(), "eth0")
                .run()
                .assert_silent_ok();
            assert!(net.store().record(&cid, "eth0").is_none(), "{v}");
        }
        assert_eq!(
            net.store().assert_consistent(),
            vec![Store::key(&keep, "eth0")],
            "{v}: DEL touched another attachment"
        );
        // Never added.
        net.call("DEL", v, &container_id("never"), &ns.path_str(), "eth0")
            .run()
            .assert_silent_ok();
    }
    // A network whose store does not exist yet.
    let fresh = demo_net();
    fresh
        .call("DEL", "1.0.0", &container_id("never"), "", "eth0")
        .run()
        .assert_silent_ok();
}

#[test]
fn del_without_netns_prevresult_or_with_the_netns_gone() {
    // conformance.md #27, 28
    let net = demo_net();
    for v in ALL_VERSIONS {
        // netns deleted before DEL
        let cid = container_id("gone");
        let path = {
            let ns = pod();
            net.call("ADD", v, &cid, &ns.path_str(), "eth0")
                .run()
                .assert_ok();
            ns.path_str()
        };
        assert!(!std::path::Path::new(&path).exists());
        net.call("DEL", v, &cid, &path, "eth0")
            .run()
            .assert_silent_ok();
        assert!(
            net.store().record(&cid, "eth0").is_none(),
            "{v}: not released"
        );
        // empty netns, no prevResult
        let ns = pod();
        let cid = container_id("empty");
        net.call("ADD", v, &cid, &ns.path_str(), "eth0")
            .run()
            .assert_ok();
        net.call("DEL", v, &cid, "", "eth0")
            .run()
            .assert_silent_ok();
        assert!(
            net.store().record(&cid, "eth0").is_none(),
            "{v}: not released"
        );
    }
    assert!(net.store().is_empty());
}

#[test]
fn del_with_a_changed_config_still_releases() {
    // conformance.md #17: ADD with range R1, DEL with R2 (prefixes, subnetId,
    // even an unusable fromInterface) → released.
    let net = demo_net();
    let ns = pod();
    let changes = [
        ("prefixes", json!([{"node": "fd8c:1f0a:77e3:0:9::/80"}])),
        ("subnetId", json!(42)),
        (
            "prefixes",
            json!([{"fromInterface": "c6inope0", "scope": "ula"}]),
        ),
    ];
    for (key, value) in changes {
        let cid = container_id("chg");
        add(&net, &ns, &cid);
        let mut c = net.conf("1.0.0");
        c["ipam"][key] = value;
        net.call("DEL", "1.0.0", &cid, &ns.path_str(), "eth0")
            .stdin_json(&c)
            .run()
            .assert_silent_ok();
        assert!(
            net.store().record(&cid, "eth0").is_none(),
            "not released after {c}"
        );
    }
    assert!(net.store().is_empty());
}

#[test]
fn check_compares_the_record_with_prev_result() {
    // conformance.md #32, 33, 34, 36
    let net = demo_net();
    let ns = pod();
    for v in versions_with_check() {
        let cid = container_id("chk");
        let r = net
            .call("ADD", v, &cid, &ns.path_str(), "eth0")
            .run()
            .assert_ok()
            .clone();
        let check = |prev: Option<Value>| {
            let mut c = net.conf(v);
            if let Some(p) = prev {
                c["prevResult"] = p;
            }
            net.call("CHECK", v, &cid, &ns.path_str(), "eth0")
                .stdin_json(&c)
                .run()
        };
        // 36: right after ADD.
        check(Some(r.clone())).assert_silent_ok();
        // 32: no prevResult → error (we use 7).
        check(None).assert_error(7);
        // 32: prevResult naming a foreign address → fails.
        let mut foreign = r.clone();
        foreign["ips"][0]["address"] = json!("fd8c:1f0a:77e3:0:1:1:0:99/96");
        check(Some(foreign)).assert_failed();
        // 33: an address missing from prevResult → fails.
        let mut short = r.clone();
        short["ips"].as_array_mut().unwrap().pop();
        check(Some(short)).assert_failed();
        // 34: CHECK of an attachment that holds nothing → fails.
        let mut stranger = net.conf(v);
        stranger["prevResult"] = r.clone();
        net.call(
            "CHECK",
            v,
            &container_id("stranger"),
            &ns.path_str(),
            "eth0",
        )
        .stdin_json(&stranger)
        .run()
        .assert_failed();
        // 34: the reservation itself gone → fails.
        std::fs::remove_file(net.store().attachments_dir().join(Store::key(&cid, "eth0"))).unwrap();
        check(Some(r.clone())).assert_failed();
        net.call("DEL", v, &cid, "", "eth0")
            .run()
            .assert_silent_ok();
    }
}

#[test]
fn status_reports_a_full_range_and_recovers() {
    // conformance.md #42, 44, 46; contract: STATUS 50 when the range is full.
    // A /104 node prefix gives a /120 pod range: slots 0x10..=0xff = 240.
    let net = IpamNet::new(&["fd8c:1f0a:77e3:0:1:2:300::/104"]);
    let ns = pod();
    net.status().run().assert_silent_ok();
    let mut cids = Vec::new();
    for _ in 0..240 {
        let cid = container_id("full");
        add(&net, &ns, &cid);
        cids.push(cid);
    }
    let slots: Vec<u128> = net.store().slots().keys().copied().collect();
    assert_eq!(slots, (0x10..=0xff).collect::<Vec<u128>>());
    let out = net.status().run();
    out.assert_error(50);
    // ADD into a full range fails (contract: 50) and leaves nothing.
    let before = snapshot(net.data_dir());
    let out = net
        .call(
            "ADD",
            "1.1.0",
            &container_id("over"),
            &ns.path_str(),
            "eth0",
        )
        .run();
    out.assert_error(50);
    assert_eq!(
        before,
        snapshot(net.data_dir()),
        "failed ADD changed the store"
    );
    // 44: still serving DEL; then STATUS ok and ADD ok again.
    net.call("DEL", "1.1.0", &cids[7], "", "eth0")
        .run()
        .assert_silent_ok();
    net.status().run().assert_silent_ok();
    let r = add(&net, &ns, &container_id("again"));
    assert_eq!(result_addrs(&r), expected_addrs(&net, 0x17));
}

#[test]
fn status_fails_when_the_data_dir_is_unusable() {
    // conformance.md #42; contract: STATUS 50 when the data dir is unusable /
    // prefix unresolvable.
    let net = demo_net();
    let file = TempDir::new("notadir");
    let path = file.join("plain-file");
    std::fs::write(&path, b"not a directory").unwrap();
    let bad = net
        .clone()
        .set_ipam("dataDir", json!(path.display().to_string()));
    bad.status().run().assert_error(50);
    let unresolvable = net.clone().set_ipam(
        "prefixes",
        json!([{"fromInterface": "c6inope0", "scope": "global"}]),
    );
    unresolvable.status().run().assert_error(50);
}

#[test]
fn gc_frees_what_is_not_listed_and_only_in_its_network() {
    // conformance.md #47, 48, 51, 52
    let n = demo_net();
    let m = n.sibling(&["fd8c:1f0a:77e3:0:2::/80"]);
    let ns = pod();
    let (a, b, c) = (container_id("a"), container_id("b"), container_id("c"));
    add(&n, &ns, &a);
    add(&n, &ns, &b);
    add(&m, &ns, &c);
    // No key at all: "no information", nothing deleted.
    n.network_call("GC", &n.conf("1.1.0"))
        .run()
        .assert_silent_ok();
    assert_eq!(n.store().assert_consistent().len(), 2);
    // GC(N, [A]) → B freed; A and M's C intact.
    n.gc(&[(&a, "eth0")]).run().assert_silent_ok();
    assert_eq!(n.store().assert_consistent(), vec![Store::key(&a, "eth0")]);
    assert_eq!(m.store().assert_consistent(), vec![Store::key(&c, "eth0")]);
    // The 1.1.0-tag spelling works too; the same ifname on another
    // container does not protect anything.
    add(&n, &ns, &b);
    let mut conf = n.conf("1.1.0");
    conf["cni.dev/attachments"] = attachments_json(&[(&b, "eth0"), (&a, "net9")]);
    n.network_call("GC", &conf).run().assert_silent_ok();
    assert_eq!(n.store().assert_consistent(), vec![Store::key(&b, "eth0")]);
    // 52: libcni's synthetic DEL, then GC, for the same stale attachment.
    n.call("DEL", "1.1.0", &b, "/var/run/netns/c6i-long-gone", "eth0")
        .run()
        .assert_silent_ok();
    n.gc(&[]).run().assert_silent_ok();
    assert!(
        n.store().is_empty(),
        "an empty list is meaningful: all of N is stale"
    );
    assert_eq!(m.store().assert_consistent(), vec![Store::key(&c, "eth0")]);
}

#[test]
fn gc_keeps_going_and_reports_errors() {
    // conformance.md #49: a stale record that cannot be removed (immutable file)
    // does not stop GC from freeing the others; GC exits ≠ 0 naming it.
    let n = demo_net();
    let ns = pod();
    let (a, b) = (container_id("stuck"), container_id("free"));
    add(&n, &ns, &a);
    add(&n, &ns, &b);
    let stuck = n.store().attachments_dir().join(Store::key(&a, "eth0"));
    // Guard: always make the record mutable again, even on failure.
    struct Mutable(std::path::PathBuf);
    impl Drop for Mutable {
        fn drop(&mut self) {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(&self.0)
                .status();
        }
    }
    let attr = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&stuck)
        .status();
    assert!(
        matches!(attr, Ok(s) if s.success()),
        "chattr +i failed: this test needs a temp dir on ext4/xfs (TMPDIR)"
    );
    let guard = Mutable(stuck.clone());
    let out = n.gc(&[]).run();
    let _ = out.assert_failed();
    assert!(
        out.error_text().contains(&a),
        "GC error should name the attachment it could not free: {}",
        out.error_text()
    );
    assert!(
        n.store().record(&b, "eth0").is_none(),
        "GC stopped at the first error"
    );
    drop(guard);
    assert!(stuck.exists());
    // Once the obstacle is gone, GC finishes the job.
    n.gc(&[]).run().assert_silent_ok();
    assert!(n.store().is_empty());
}

#[test]
fn records_of_another_boot_are_released_on_the_next_call() {
    // docs/design.md: "Nothing leaks across a reboot".
    let net = demo_net();
    let ns = pod();
    let old = container_id("oldboot");
    add(&net, &ns, &old);
    let store = net.store();
    let fake = "00000000-0000-4000-8000-000000000001";
    let rec_path = store.attachments_dir().join(Store::key(&old, "eth0"));
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&rec_path).unwrap()).unwrap();
    rec["bootId"] = json!(fake);
    std::fs::write(&rec_path, serde_json::to_vec(&rec).unwrap()).unwrap();
    std::fs::write(store.dir.join("boot_id"), format!("{fake}\n")).unwrap();
    // The next ADD (another pod) releases it.
    let new = container_id("newboot");
    let r = add(&net, &ns, &new);
    assert_eq!(
        store.assert_consistent(),
        vec![Store::key(&new, "eth0")],
        "the previous boot's record survived"
    );
    assert_eq!(
        std::fs::read_to_string(store.dir.join("boot_id"))
            .unwrap()
            .trim(),
        boot_id()
    );
    // With the old pod gone, its slot is free again: the range did not shrink.
    assert_eq!(result_addrs(&r).len(), 2);
}

#[test]
fn requested_addresses_and_their_precedence() {
    // conformance.md #16, 71, 73, 74; contract: args.cni.ips > runtimeConfig.ips
    // (declared capability) > CNI_ARGS IP=.
    let ns = pod();
    let base = demo_net().set_top("capabilities", json!({"ips": true}));
    let ranges = base.pod_ranges();
    let addr = |slot: u128| format!("{}/96", slot_addr(ranges[0], slot));
    let slot_got = |r: &Value| slot_of(ranges[0], result_addrs(r)[0].addr());

    // IP= alone (74), with IgnoreUnknown as K8s sends it.
    let r = base
        .call("ADD", "1.0.0", &container_id("rq"), &ns.path_str(), "eth0")
        .args(&format!(
            "IgnoreUnknown=1;IP={}",
            slot_addr(ranges[0], 0x41)
        ))
        .run()
        .assert_ok()
        .clone();
    assert_eq!(slot_got(&r), 0x41);
    assert_eq!(
        result_addrs(&r),
        expected_addrs(&base, 0x41),
        "slot in EVERY range"
    );
    // runtimeConfig beats IP= (73).
    let net = base
        .clone()
        .set_top("runtimeConfig", json!({"ips": [addr(0x42)]}));
    let r = net
        .call("ADD", "1.0.0", &container_id("rq"), &ns.path_str(), "eth0")
        .args(&format!("IP={}", slot_addr(ranges[0], 0x43)))
        .run()
        .assert_ok()
        .clone();
    assert_eq!(slot_got(&r), 0x42);
    // args.cni.ips beats both (16).
    let net2 = net
        .clone()
        .set_top("args", json!({"cni": {"ips": [addr(0x44)], "foo": 1}}));
    let r = net2
        .call("ADD", "1.0.0", &container_id("rq"), &ns.path_str(), "eth0")
        .args(&format!("IP={}", slot_addr(ranges[0], 0x45)))
        .run()
        .assert_ok()
        .clone();
    assert_eq!(slot_got(&r), 0x44);
    // An address of the GUA range selects the same slot.
    let gua = base.clone().set_top(
        "args",
        json!({"cni": {"ips": [slot_addr(ranges[1], 0x46).to_string()]}}),
    );
    let r = gua
        .call("ADD", "1.0.0", &container_id("rq"), &ns.path_str(), "eth0")
        .run()
        .assert_ok()
        .clone();
    assert_eq!(slot_got(&r), 0x46);
    // Undeclared capability: runtimeConfig.ips is not ours to act on (71).
    let undeclared = demo_net().set_top("runtimeConfig", json!({"ips": [addr(0x47)]}));
    let r = undeclared
        .call("ADD", "1.0.0", &container_id("rq"), &ns.path_str(), "eth0")
        .run()
        .assert_ok()
        .clone();
    assert_eq!(slot_got(&r), FIRST_SLOT);

    // Failures: 7, nothing leaked (73).
    let bad_cases: Vec<Value> = vec![
        json!({"runtimeConfig": {"ips": ["garbage"]}}),
        json!({"runtimeConfig": {"ips": "fd00::1"}}),
        json!({"args": {"cni": {"ips": [addr(0x42)]}}}), // taken
        json!({"args": {"cni": {"ips": [slot_addr(ranges[0], 1).to_string()]}}}), // gateway
        json!({"args": {"cni": {"ips": [slot_addr(ranges[0], 5).to_string()]}}}), // reserved
        json!({"args": {"cni": {"ips": ["fd8c:1f0a:77e3:0:7:1::50"]}}}), // outside
        json!({"args": {"cni": {"ips": ["10.1.2.3"]}}}),
    ];
    let before = snapshot(base.data_dir());
    for extra in bad_cases {
        let mut n = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            n = n.set_top(k, v.clone());
        }
        let out = n
            .call(
                "ADD",
                "1.0.0",
                &container_id("rqbad"),
                &ns.path_str(),
                "eth0",
            )
            .run();
        out.assert_error(7);
    }
    assert_eq!(
        before,
        snapshot(base.data_dir()),
        "a refused request changed the store"
    );
}

/// A node namespace whose `c6iup0` carries the addresses of docs/design.md's
/// example node: GUA 2001:db8:7:12::5/64 and ULA fd8c:1f0a:77e3:0:1::2/80.
fn node_with_uplink() -> Netns {
    let node = Netns::new(NETNS_PREFIX);
    node.add_veth("c6iup0", "c6iup1");
    node.add_addr("c6iup0", "2001:db8:7:12::5/64");
    node.add_addr("c6iup0", "fd8c:1f0a:77e3:0:1::2/80");
    node
}

#[test]
fn from_interface_reads_the_node_prefix_in_its_namespace() {
    // contract: fromInterface + scope global/ula; a /64 is cut to its first
    // /80; ipam-prefix reads the interfaces of the namespace it runs in.
    let node = node_with_uplink();
    let podns = pod();
    let net = IpamNet::with_prefixes(json!([
        {"fromInterface": "c6iup0", "scope": "ula"},
        {"fromInterface": "c6iup0", "scope": "global"},
    ]));
    let cid = container_id("fi");
    let r = net
        .call("ADD", "1.0.0", &cid, &podns.path_str(), "eth0")
        .in_netns(&node)
        .run()
        .assert_ok()
        .clone();
    let got: Vec<String> = result_addrs(&r).iter().map(|a| a.to_string()).collect();
    assert_eq!(
        got,
        vec!["fd8c:1f0a:77e3:0:1:1:0:10/96", "2001:db8:7:12:0:1:0:10/96"],
        "{r}"
    );
    // Mixed with a literal /80: same L, fine.
    let mixed = IpamNet::with_prefixes(json!([
        {"node": "fd8c:1f0a:77e3:0:3::/80"},
        {"fromInterface": "c6iup0"},
    ]));
    let r = mixed
        .call("ADD", "1.0.0", &cid, &podns.path_str(), "eth0")
        .in_netns(&node)
        .run()
        .assert_ok()
        .clone();
    assert_eq!(
        result_addrs(&r)[1].to_string(),
        "2001:db8:7:12:0:1:0:10/96",
        "scope defaults to global: {r}"
    );
    // STATUS in the node is healthy.
    net.status().in_netns(&node).run().assert_silent_ok();
    // DEL inside the node frees.
    net.call("DEL", "1.0.0", &cid, "", "eth0")
        .in_netns(&node)
        .run()
        .assert_silent_ok();
    assert!(net.store().is_empty());
}

#[test]
fn from_interface_errors() {
    // conformance.md #69, 42; contract: missing interface → 7; prefix longer
    // than L → error;
    // no address of the asked scope → 7; STATUS → 50 when unresolvable.
    let node = node_with_uplink();
    node.add_veth("c6ilong0", "c6ilong1");
    node.add_addr("c6ilong0", "fd8c:1f0a:77e3:0:1:2:3:4/112");
    node.add_addr("c6ilong0", "2001:db8:5::1/112");
    let podns = pod();
    let cases = [
        (
            json!([{"fromInterface": "c6inope0", "scope": "global"}]),
            "c6inope0",
        ),
        (
            json!([{"fromInterface": "c6iup1", "scope": "global"}]),
            "c6iup1",
        ),
        (
            json!([{"fromInterface": "c6ilong0", "scope": "ula"}]),
            "c6ilong0",
        ),
        (
            json!([{"fromInterface": "c6ilong0", "scope": "global"}]),
            "c6ilong0",
        ),
    ];
    for (prefixes, needle) in cases {
        let net = IpamNet::with_prefixes(prefixes.clone());
        let out = net
            .call(
                "ADD",
                "1.0.0",
                &container_id("fe"),
                &podns.path_str(),
                "eth0",
            )
            .in_netns(&node)
            .run();
        out.assert_error(7);
        assert!(out.msg().contains(needle), "{prefixes}: {}", out.msg());
        assert!(
            !net.store().dir.join("attachments").exists() || net.store().is_empty(),
            "{prefixes}: failed ADD left a record"
        );
        net.status().in_netns(&node).run().assert_error(50);
    }
}

#[test]
fn status_on_a_new_network_writes_nothing() {
    // conformance.md #46: STATUS runs every ~5 s from kubelet; it must not write.
    let fresh = demo_net();
    fresh.status().run().assert_silent_ok();
    assert!(
        dir_names(fresh.data_dir()).is_empty(),
        "STATUS on a new network created {:?}",
        dir_names(fresh.data_dir())
    );
}

#[test]
fn status_leaves_an_existing_store_unchanged() {
    // conformance.md #46
    let net = demo_net();
    let ns = pod();
    add(&net, &ns, &container_id("st"));
    let before = snapshot(net.data_dir());
    for _ in 0..20 {
        net.status().run().assert_silent_ok();
    }
    assert_eq!(before, snapshot(net.data_dir()), "STATUS changed the store");
}

/// Put the store in the state an ADD killed between publishing its record
/// and creating its slot link leaves (ipam-prefix store.rs: record first,
/// then `symlink(slots/<slot>)`): remove the link of a finished ADD.
fn crash_before_link(net: &IpamNet, cid: &str) {
    let store = net.store();
    let rec = store.record(cid, "eth0").expect("record");
    let slot = Store::record_slot(&rec);
    std::fs::remove_file(store.slots_dir().join(format!("{slot:x}"))).unwrap();
}

#[test]
fn del_after_an_add_killed_before_its_slot_link_frees_everything() {
    // conformance.md #82: the runtime DELs every failed ADD; docs/design.md: killed at
    // any point → a later DEL (no GC needed: runtimes < 1.1 never call it).
    let net = demo_net();
    let ns = pod();
    let live = container_id("live");
    let crashed = container_id("crashed");
    add(&net, &ns, &live);
    add(&net, &ns, &crashed);
    crash_before_link(&net, &crashed);
    net.call("DEL", "1.0.0", &crashed, "", "eth0")
        .run()
        .assert_silent_ok();
    assert_eq!(
        net.store().assert_consistent(),
        vec![Store::key(&live, "eth0")]
    );
}

#[test]
fn a_retried_add_after_a_crash_completes_the_reservation() {
    // conformance.md #22, 82: the runtime may retry the ADD that was killed.
    let net = demo_net();
    let ns = pod();
    let cid = container_id("retry");
    let first = add(&net, &ns, &cid);
    crash_before_link(&net, &cid);
    let again = add(&net, &ns, &cid);
    assert_eq!(
        net.store().assert_consistent(),
        vec![Store::key(&cid, "eth0")]
    );
    assert_eq!(
        result_addrs(&again),
        result_addrs(&first),
        "the slot was still free: the retry should keep it"
    );
}

#[test]
fn gc_clears_crash_and_foreign_debris() {
    // conformance.md #48, 82: GC leaves exactly the listed attachments, also when
    // the store holds a record without its link (killed ADD), slot links
    // without a record or naming a record of another slot (foreign writer,
    // manual edits), and a half-written temp record.
    let net = demo_net();
    let ns = pod();
    let (live, crashed) = (container_id("live"), container_id("crashed"));
    add(&net, &ns, &live);
    add(&net, &ns, &crashed);
    crash_before_link(&net, &crashed);
    let store = net.store();
    let slots = store.slots_dir();
    std::os::unix::fs::symlink("ghost1234@eth0", slots.join("ab")).unwrap();
    std::os::unix::fs::symlink(Store::key(&live, "eth0"), slots.join("ac")).unwrap();
    std::fs::write(
        store
            .attachments_dir()
            .join(format!(".{crashed}@eth0.tmp.4242")),
        b"{\"vers",
    )
    .unwrap();
    net.gc(&[(&live, "eth0")]).run().assert_silent_ok();
    assert_eq!(store.assert_consistent(), vec![Store::key(&live, "eth0")]);
    assert_eq!(
        store.attachment_names().len(),
        1,
        "temp file survived GC: {:?}",
        store.attachment_names()
    );
}

#[test]
fn check_tolerates_what_the_chain_added() {
    // conformance.md #35, 57: the prevResult IPAM sees on CHECK is the chain's
    // final result (bridge6 adds interfaces and ips[].interface; later
    // plugins add routes, a MAC), possibly in an older version's shape.
    let net = demo_net();
    let ns = pod();
    let cid = container_id("chain");
    let r = add(&net, &ns, &cid);
    let mut chained = r.clone();
    chained["interfaces"] = json!([
        {"name": "veth1234", "mac": "02:00:00:00:00:01"},
        {"name": "eth0", "mac": "02:00:00:00:00:02", "sandbox": ns.path_str()},
    ]);
    for ip in chained["ips"].as_array_mut().unwrap() {
        ip["interface"] = json!(1);
    }
    chained["routes"] =
        json!([{"dst": "::/0"}, {"dst": "fd00:99::/64", "gw": "fd8c:1f0a:77e3:0:1:1:0:1"}]);
    let mut c = net.conf("1.0.0");
    c["prevResult"] = chained.clone();
    net.call("CHECK", "1.0.0", &cid, &ns.path_str(), "eth0")
        .stdin_json(&c)
        .run()
        .assert_silent_ok();
    // The same result in 0.4.0 shape (ips[].version) under a 0.4.0 config.
    let mut old = chained;
    old["cniVersion"] = json!("0.4.0");
    for ip in old["ips"].as_array_mut().unwrap() {
        ip["version"] = json!("6");
    }
    let mut c = net.conf("0.4.0");
    c["prevResult"] = old;
    net.call("CHECK", "0.4.0", &cid, &ns.path_str(), "eth0")
        .stdin_json(&c)
        .run()
        .assert_silent_ok();
}

#[test]
fn older_versions_are_the_down_conversion_of_1_1() {
    // conformance.md #66: our 0.3.x/0.4.0 output equals libcni's conversion of
    // our 1.1.0 output (add ips[].version, change cniVersion, nothing else).
    let net = demo_net()
        .set_ipam("routes", json!([{"dst": "::/0"}]))
        .set_ipam("dns", json!({"nameservers": ["fd8c:1f0a:77e3::a"]}));
    let ns = pod();
    let cid = container_id("conv");
    let new = net
        .call("ADD", "1.1.0", &cid, &ns.path_str(), "eth0")
        .run()
        .assert_ok()
        .clone();
    for v in ALL_VERSIONS {
        // The same ADD again answers with the same allocation (22).
        let got = net
            .call("ADD", v, &cid, &ns.path_str(), "eth0")
            .run()
            .assert_ok()
            .clone();
        let mut want = new.clone();
        want["cniVersion"] = json!(v);
        if has_ip_version_field(v) {
            for ip in want["ips"].as_array_mut().unwrap() {
                ip["version"] = json!("6");
            }
        }
        assert_eq!(got, want, "{v}");
    }
}

#[test]
fn del_frees_only_the_named_interface() {
    // conformance.md #83: state keyed by (network, containerID, ifname).
    let net = demo_net();
    let ns = pod();
    let cid = container_id("ifs");
    for ifname in ["eth0", "net1", "net2"] {
        net.call("ADD", "1.0.0", &cid, &ns.path_str(), ifname)
            .run()
            .assert_ok();
    }
    net.call("DEL", "1.0.0", &cid, "", "net1")
        .run()
        .assert_silent_ok();
    let mut left = net.store().assert_consistent();
    left.sort();
    let mut want = vec![Store::key(&cid, "eth0"), Store::key(&cid, "net2")];
    want.sort();
    assert_eq!(left, want);
}

#[test]
fn another_boots_records_are_released_by_any_call_that_touches_the_store() {
    // docs/design.md: "released on the next call that touches the store" — here
    // a DEL of an unrelated attachment, and a GC that lists the old pod.
    let ns = pod();
    for trigger in ["DEL", "GC"] {
        let net = demo_net();
        let old = container_id("old");
        add(&net, &ns, &old);
        let store = net.store();
        let fake = "00000000-0000-4000-8000-0000000000aa";
        let rp = store.attachments_dir().join(Store::key(&old, "eth0"));
        let mut rec: Value = serde_json::from_slice(&std::fs::read(&rp).unwrap()).unwrap();
        rec["bootId"] = json!(fake);
        std::fs::write(&rp, serde_json::to_vec(&rec).unwrap()).unwrap();
        std::fs::write(store.dir.join("boot_id"), fake).unwrap();
        match trigger {
            "DEL" => net
                .call("DEL", "1.0.0", &container_id("other"), "", "eth0")
                .run()
                .assert_silent_ok(),
            _ => net.gc(&[(&old, "eth0")]).run().assert_silent_ok(),
        };
        assert!(
            store.is_empty(),
            "{trigger}: the previous boot's record survived: {:?}",
            store.attachment_names()
        );
    }
}

#[test]
fn from_interface_skips_deprecated_addresses() {
    // docs/design.md: "build what an operator would expect". When the provider
    // renumbers, the old prefix stays on the uplink as deprecated (valid,
    // not preferred) for a while; new pods must get the new prefix.
    let node = Netns::new(NETNS_PREFIX);
    node.add_veth("c6iup0", "c6iup1");
    node.add_addr("c6iup0", "2001:db8:7:12::5/64");
    node.exec_ok(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:8:1::5/64",
        "dev",
        "c6iup0",
        "nodad",
        "preferred_lft",
        "0",
    ]);
    let podns = pod();
    let net = IpamNet::with_prefixes(json!([{"fromInterface": "c6iup0", "scope": "global"}]));
    let r = net
        .call(
            "ADD",
            "1.0.0",
            &container_id("renum"),
            &podns.path_str(),
            "eth0",
        )
        .in_netns(&node)
        .run()
        .assert_ok()
        .clone();
    assert_eq!(
        result_addrs(&r)[0].to_string(),
        "2001:db8:7:12:0:1:0:10/96",
        "picked the deprecated prefix: {r}"
    );
}
