//! Side by side: the same IPAM black-box checks against ipam-prefix and
//! the reference host-local (upstream containernetworking/plugins v1.9.x,
//! built by scripts/peers.sh), on the same network mapped to host-local's
//! format (one range set per pod range). Where the two differ, the
//! reference's ACTUAL behaviour is asserted, so each test proves the
//! difference documented in conformance/README.md ("Where we differ and
//! why").
//!
//! Shared checks run at 1.0.0, the newest version both Debian's 1.1.1 and
//! upstream v1.9 answer ADD in the same way; v1.9's host-local lists 1.1.0
//! but has no GC or STATUS of its own (see `gc_and_status`).

use conformance::harness::*;
use conformance::ipam::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

const V: &str = "1.0.0";

/// A network and both plugins' views of it.
struct Pair {
    net: IpamNet,
    hl_dir: TempDir,
    pod: Netns,
}

impl Pair {
    fn new(net: IpamNet) -> Pair {
        Pair {
            net,
            hl_dir: TempDir::new("hostlocal"),
            pod: Netns::new(NETNS_PREFIX),
        }
    }

    fn demo() -> Pair {
        Pair::new(demo_net())
    }

    fn hl_conf(&self) -> Value {
        self.net.host_local_conf(V, self.hl_dir.path())
    }

    fn ours(&self, cmd: &str, cid: &str) -> Invocation {
        self.net.call(cmd, V, cid, &self.pod.path_str(), "eth0")
    }

    fn theirs(&self, cmd: &str, cid: &str) -> Invocation {
        Invocation::attachment(
            reference("host-local"),
            cmd,
            cid,
            &self.pod.path_str(),
            "eth0",
        )
        .stdin_json(&self.hl_conf())
    }

    /// host-local's leases: files of <dataDir>/<network>/ named by address.
    fn leases(&self) -> BTreeSet<Ipv6Addr> {
        dir_names(&self.hl_dir.join(&self.net.name))
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    fn lease_path(&self, a: Ipv6Addr) -> PathBuf {
        self.hl_dir.join(&self.net.name).join(a.to_string())
    }
}

fn first_slot(net: &IpamNet, r: &Value) -> u128 {
    slot_of(net.pod_ranges()[0], result_addrs(r)[0].addr())
}

#[test]
fn both_give_one_address_per_range_with_gateway_1() {
    // Same: abbreviated IPAM result (conformance.md #61), /96 per range, gateway
    // ::1. Differ: first pod address ::10 (ours: ::0–::f reserved) vs ::2.
    let p = Pair::demo();
    let ours = p.ours("ADD", &container_id("a")).run().assert_ok().clone();
    let theirs = p
        .theirs("ADD", &container_id("a"))
        .run()
        .assert_ok()
        .clone();
    for r in [&ours, &theirs] {
        assert!(r.get("interfaces").is_none(), "{r}");
        assert_eq!(r["ips"].as_array().unwrap().len(), 2, "{r}");
        for (ip, range) in r["ips"].as_array().unwrap().iter().zip(p.net.pod_ranges()) {
            assert_eq!(ip["gateway"], gateway(range).to_string(), "{r}");
            assert!(ip.get("interface").is_none());
        }
        let a = result_addrs(r);
        assert_eq!(a[0].prefix_len(), 96);
    }
    assert_eq!(first_slot(&p.net, &ours), 0x10);
    assert_eq!(first_slot(&p.net, &theirs), 0x2);
}

#[test]
fn same_add_twice() {
    // conformance.md #22. Ours: same addresses, one record. host-local: error 999
    // "duplicate allocation", first lease kept.
    let p = Pair::demo();
    let cid = container_id("dup");
    let a = p.ours("ADD", &cid).run().assert_ok().clone();
    let b = p.ours("ADD", &cid).run().assert_ok().clone();
    assert_eq!(result_addrs(&a), result_addrs(&b));
    assert_eq!(p.net.store().assert_consistent().len(), 1);

    let first = p.theirs("ADD", &cid).run().assert_ok().clone();
    let out = p.theirs("ADD", &cid).run();
    out.assert_error(999);
    assert!(out.msg().contains("duplicate allocation"), "{}", out.msg());
    let leases = p.leases();
    assert_eq!(leases.len(), 2, "one lease per range set");
    for a in result_addrs(&first) {
        assert!(leases.contains(&a.addr()), "first lease lost: {a}");
    }
}

#[test]
fn a_previous_boots_allocation() {
    // docs/design.md "Nothing leaks across a reboot". Ours: records carry the
    // boot id; a record of another boot is released by the next call.
    // host-local: a lease is "<containerID>\r\n<ifname>", no boot id, so
    // nothing can tell it is stale: it stays until DEL (conformance.md §3 #13).
    let p = Pair::demo();
    let old = container_id("old");
    p.ours("ADD", &old).run().assert_ok();
    let store = p.net.store();
    let fake = "00000000-0000-4000-8000-0000000000ff";
    let rp = store.attachments_dir().join(Store::key(&old, "eth0"));
    let mut rec: Value = serde_json::from_slice(&std::fs::read(&rp).unwrap()).unwrap();
    rec["bootId"] = json!(fake);
    std::fs::write(&rp, serde_json::to_vec(&rec).unwrap()).unwrap();
    std::fs::write(store.dir.join("boot_id"), fake).unwrap();
    let new = container_id("new");
    p.ours("ADD", &new).run().assert_ok();
    assert_eq!(store.assert_consistent(), vec![Store::key(&new, "eth0")]);

    let r = p.theirs("ADD", &old).run().assert_ok().clone();
    let lease = result_addrs(&r)[0].addr();
    let content = std::fs::read_to_string(p.lease_path(lease)).unwrap();
    assert_eq!(content, format!("{old}\r\neth0"), "host-local lease format");
    assert!(!content.contains(&boot_id()));
    p.theirs("ADD", &new).run().assert_ok();
    assert_eq!(p.leases().len(), 4, "host-local keeps the old pod's leases");
    assert!(p.lease_path(lease).exists());
}

#[test]
fn gc_and_status() {
    // conformance.md #42, 47, 48. Ours (1.1.0): GC frees unlisted attachments,
    // STATUS answers, and says 50 when the dataDir is unusable. host-local
    // v1.9: at 1.0.0 both verbs are error 1 ("config version does not
    // allow GC"); at 1.1.0 it accepts them but implements neither (its
    // skel calls no function): GC exits 0 and frees nothing, STATUS exits
    // 0 even when its dataDir is a plain file.
    let p = Pair::demo();
    let (keep, stale) = (container_id("keep"), container_id("stale"));
    for c in [&keep, &stale] {
        p.ours("ADD", c).run().assert_ok();
        p.theirs("ADD", c).run().assert_ok();
    }
    p.net.gc(&[(&keep, "eth0")]).run().assert_silent_ok();
    assert_eq!(
        p.net.store().assert_consistent(),
        vec![Store::key(&keep, "eth0")]
    );
    p.net.status().run().assert_silent_ok();

    let mut gc = p.hl_conf();
    gc["cni.dev/valid-attachments"] = attachments_json(&[(&keep, "eth0")]);
    let out = Invocation::network(reference("host-local"), "GC")
        .stdin_json(&gc)
        .run();
    out.assert_error(1);
    assert!(out.msg().contains("does not allow GC"), "{}", out.msg());
    gc["cniVersion"] = json!("1.1.0");
    Invocation::network(reference("host-local"), "GC")
        .stdin_json(&gc)
        .run()
        .assert_silent_ok();
    assert_eq!(p.leases().len(), 4, "host-local GC freed nothing");
    for lease in p.leases() {
        let owner = std::fs::read_to_string(p.lease_path(lease)).unwrap();
        assert!(
            owner.starts_with(&keep) || owner.starts_with(&stale),
            "{owner}"
        );
    }

    let unusable = p.hl_dir.join("a-file");
    std::fs::write(&unusable, "").unwrap();
    let mut st = p.hl_conf();
    st["cniVersion"] = json!("1.1.0");
    st["ipam"]["dataDir"] = json!(unusable);
    Invocation::network(reference("host-local"), "STATUS")
        .stdin_json(&st)
        .run()
        .assert_silent_ok();
    let mut ours = p.net.conf("1.1.0");
    ours["ipam"]["dataDir"] = json!(unusable);
    Invocation::network(plugin("ipam-prefix"), "STATUS")
        .stdin_json(&ours)
        .run()
        .assert_error(50);
}

#[test]
fn check_with_a_foreign_or_missing_prev_result() {
    // conformance.md #32, 34. Ours: CHECK compares the record with prevResult.
    // host-local: passes if any lease names the container; it ignores the
    // prevResult addresses and does not even require a prevResult.
    let p = Pair::demo();
    let cid = container_id("chk");
    let ours = p.ours("ADD", &cid).run().assert_ok().clone();
    let theirs = p.theirs("ADD", &cid).run().assert_ok().clone();
    let foreign = json!({"cniVersion": V, "ips": [{"address": "fd8c:1f0a:77e3:0:1:1:0:99/96"}]});

    let mut c = p.net.conf(V);
    c["prevResult"] = ours;
    p.ours("CHECK", &cid)
        .stdin_json(&c)
        .run()
        .assert_silent_ok();
    c["prevResult"] = foreign.clone();
    p.ours("CHECK", &cid).stdin_json(&c).run().assert_failed();
    c.as_object_mut().unwrap().remove("prevResult");
    p.ours("CHECK", &cid).stdin_json(&c).run().assert_error(7);

    let mut h = p.hl_conf();
    h["prevResult"] = theirs;
    p.theirs("CHECK", &cid)
        .stdin_json(&h)
        .run()
        .assert_silent_ok();
    h["prevResult"] = foreign;
    p.theirs("CHECK", &cid)
        .stdin_json(&h)
        .run()
        .assert_silent_ok();
    h.as_object_mut().unwrap().remove("prevResult");
    p.theirs("CHECK", &cid)
        .stdin_json(&h)
        .run()
        .assert_silent_ok();
}

#[test]
fn del_without_netns_and_with_a_changed_config() {
    // conformance.md #17, 26, 27, 28: the same on both sides — DEL with empty
    // CNI_NETNS, no prevResult and another range still frees; repeated DEL
    // and DEL of an unknown id succeed.
    let p = Pair::demo();
    let cid = container_id("del");
    p.ours("ADD", &cid).run().assert_ok();
    p.theirs("ADD", &cid).run().assert_ok();
    let changed = p.net.sibling(&["fd8c:1f0a:77e3:0:9::/80"]);
    let mut ours = changed.conf(V);
    ours["name"] = json!(p.net.name);
    let mut theirs = changed.host_local_conf(V, p.hl_dir.path());
    theirs["name"] = json!(p.net.name);
    for _ in 0..2 {
        p.ours("DEL", &cid)
            .var("CNI_NETNS", "")
            .stdin_json(&ours)
            .run()
            .assert_silent_ok();
        p.theirs("DEL", &cid)
            .var("CNI_NETNS", "")
            .stdin_json(&theirs)
            .run()
            .assert_silent_ok();
    }
    assert!(p.net.store().is_empty());
    assert!(p.leases().is_empty());
    p.ours("DEL", &container_id("never"))
        .run()
        .assert_silent_ok();
    p.theirs("DEL", &container_id("never"))
        .run()
        .assert_silent_ok();
}

#[test]
fn requested_address_in_two_ranges() {
    // conformance.md #74. Ours: the requested slot in EVERY range (one interface
    // id). host-local: the address in its own range set only; the other
    // set allocates its next free address (different interface ids).
    let p = Pair::demo();
    let want: Ipv6Addr = slot_addr(p.net.pod_ranges()[1], 0x42);
    let args = format!("IgnoreUnknown=1;IP={want}");
    let ours = p
        .ours("ADD", &container_id("ip"))
        .args(&args)
        .run()
        .assert_ok()
        .clone();
    let theirs = p
        .theirs("ADD", &container_id("ip"))
        .args(&args)
        .run()
        .assert_ok()
        .clone();
    let o = result_addrs(&ours);
    assert_eq!(o[1].addr(), want);
    assert_eq!(slot_of(p.net.pod_ranges()[0], o[0].addr()), 0x42);
    let t = result_addrs(&theirs);
    assert_eq!(t[1].addr(), want);
    assert_eq!(slot_of(p.net.pod_ranges()[0], t[0].addr()), 0x2);
}

#[test]
fn exhaustion() {
    // conformance.md #42, 69. /120 pod range. Ours: 240 pods (::10–::ff), then
    // ADD → 50 and STATUS → 50. host-local: 254 pods (all but ::0 and the
    // gateway), then 999 "no IP addresses available" (an untyped error,
    // conformance.md #69).
    let p = Pair::new(IpamNet::new(&["fd8c:1f0a:77e3:0:1:2:300::/104"]));
    let mut n_ours = 0;
    loop {
        let out = p.ours("ADD", &container_id("ex")).run();
        if !out.success() {
            out.assert_error(50);
            break;
        }
        n_ours += 1;
        assert!(n_ours <= 256, "ipam-prefix never reports the range full");
    }
    p.net.status().run().assert_error(50);
    let mut n_theirs = 0;
    loop {
        let out = p.theirs("ADD", &container_id("ex")).run();
        if !out.success() {
            out.assert_error(999);
            assert!(
                out.msg().contains("no IP addresses available"),
                "{}",
                out.msg()
            );
            break;
        }
        n_theirs += 1;
        assert!(n_theirs <= 256, "host-local never reports the range full");
    }
    assert_eq!((n_ours, n_theirs), (240, 254));
}

#[test]
fn round_robin_after_del() {
    // Both hand out the next slot after a DEL rather than the one just
    // freed (a crash-looping pod does not get its old address at once).
    let p = Pair::demo();
    let cid = container_id("rr");
    let o1 = p.ours("ADD", &cid).run().assert_ok().clone();
    p.ours("DEL", &cid).run().assert_silent_ok();
    let o2 = p.ours("ADD", &cid).run().assert_ok().clone();
    let t1 = p.theirs("ADD", &cid).run().assert_ok().clone();
    p.theirs("DEL", &cid).run().assert_silent_ok();
    let t2 = p.theirs("ADD", &cid).run().assert_ok().clone();
    assert_eq!(first_slot(&p.net, &o2), first_slot(&p.net, &o1) + 1);
    assert_eq!(first_slot(&p.net, &t2), first_slot(&p.net, &t1) + 1);
}

#[test]
fn versions_and_protocol_errors() {
    // conformance.md #40, 65, 9, 13: shared codes where both have the feature.
    let hl = reference("host-local");
    let ours = plugin("ipam-prefix");
    let listed = |bin: &Path| -> Vec<String> {
        let out = Invocation::new(bin, "VERSION")
            .stdin(r#"{"cniVersion":"1.0.0"}"#)
            .run();
        out.assert_ok()["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed(&ours), ALL_VERSIONS);
    assert_eq!(
        listed(&hl),
        ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
        "upstream v1.9 host-local lists 1.1.0 (Debian's 1.1.1 stops at 1.0.0)"
    );
    assert_eq!(
        listed(&debian_reference("host-local")),
        ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0"],
        "Debian's host-local 1.1.1: no 1.1.0"
    );
    let p = Pair::demo();
    for (mutate, code) in [
        (json!({"cniVersion": "9.9.9"}), 1),
        (json!({"name": "a/b"}), 7),
    ] {
        let mut o = p.net.conf(V);
        let mut t = p.hl_conf();
        for (k, v) in mutate.as_object().unwrap() {
            o[k] = v.clone();
            t[k] = v.clone();
        }
        p.ours("ADD", &container_id("pe"))
            .stdin_json(&o)
            .run()
            .assert_error(code);
        p.theirs("ADD", &container_id("pe"))
            .stdin_json(&t)
            .run()
            .assert_error(code);
    }
    p.ours("ADD", &container_id("pe"))
        .stdin("{")
        .run()
        .assert_error(6);
    p.theirs("ADD", &container_id("pe"))
        .stdin("{")
        .run()
        .assert_error(6);
    assert!(p.leases().is_empty() && p.net.store().is_empty());
}

#[test]
fn parallel_adds() {
    // conformance.md #81, 83: both hand 32 parallel pods distinct addresses.
    let p = Pair::demo();
    for theirs in [false, true] {
        let running: Vec<Running> = (0..32)
            .map(|_| {
                let cid = container_id("par");
                if theirs {
                    p.theirs("ADD", &cid)
                } else {
                    p.ours("ADD", &cid)
                }
                .spawn()
            })
            .collect();
        let addrs: BTreeSet<_> = running
            .into_iter()
            .map(|r| result_addrs(r.wait().assert_ok())[0])
            .collect();
        assert_eq!(addrs.len(), 32, "theirs={theirs}: duplicate addresses");
    }
}

#[test]
fn environment_errors_side_by_side() {
    // conformance.md #2–5, 7: the same environment faults, the same code 4 from
    // both, except an unknown CNI_ARGS key: ours 4 naming CNI_ARGS,
    // host-local 999 ("ARGS: unknown args").
    let p = Pair::demo();
    type Fault = fn(Invocation) -> Invocation;
    let faults: Vec<(&str, Fault)> = vec![
        ("no CNI_CONTAINERID", |i| i.unset("CNI_CONTAINERID")),
        ("no CNI_NETNS", |i| i.unset("CNI_NETNS")),
        ("no CNI_IFNAME", |i| i.var("CNI_IFNAME", "")),
        ("no CNI_PATH", |i| i.unset("CNI_PATH")),
        ("bad id", |i| i.var("CNI_CONTAINERID", "-x/y")),
        ("long ifname", |i| i.var("CNI_IFNAME", "0123456789abcdef")),
        ("ifname with /", |i| i.var("CNI_IFNAME", "a/b")),
        ("bogus verb", |i| i.command("BOGUS")),
    ];
    for (what, fault) in faults {
        let o = fault(p.ours("ADD", &container_id("env"))).run();
        let t = fault(p.theirs("ADD", &container_id("env"))).run();
        eprintln!("{what}: ours {:?} / host-local {:?}", o.msg(), t.msg());
        o.assert_error(4);
        t.assert_error(4);
    }
    let o = p.ours("ADD", &container_id("env")).args("FOO=b").run();
    o.assert_error(4);
    assert!(o.msg().contains("CNI_ARGS"), "{}", o.msg());
    let t = p.theirs("ADD", &container_id("env")).args("FOO=b").run();
    t.assert_error(999);
    assert!(t.msg().contains("unknown args"), "{}", t.msg());
    // DEL without CNI_NETNS: fine for both.
    p.ours("DEL", &container_id("env"))
        .unset("CNI_NETNS")
        .run()
        .assert_silent_ok();
    p.theirs("DEL", &container_id("env"))
        .unset("CNI_NETNS")
        .run()
        .assert_silent_ok();
    assert!(p.net.store().is_empty());
}
