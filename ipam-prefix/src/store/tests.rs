use super::*;
use crate::allocator::{Allocation, Requested};
use crate::plan::{AddressPlan, NodePrefix, SubnetId};
use cni_common::attachment::Attachment;
use cni_common::file::temp_name;

const BOOT: &str = "11111111-2222-3333-4444-555555555555";

struct Fixture {
    dir: tempfile::TempDir,
    plan: AddressPlan,
}

impl Fixture {
    /// A store over `node` (e.g. a /104 for a 240-slot range).
    fn new(nodes: &[&str]) -> Fixture {
        let nodes: Vec<NodePrefix> = nodes
            .iter()
            .map(|n| NodePrefix::new(n.parse().unwrap()).unwrap())
            .collect();
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            plan: AddressPlan::new(&nodes, SubnetId::DEFAULT).unwrap(),
        }
    }

    fn store(&self, boot: &str) -> Store {
        Store::new(self.dir.path(), "net1", boot).unwrap()
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("net1")
    }

    fn add_req(&self, st: &Store, cid: &str, requested: Option<Slot>) -> Result<Record> {
        let key = Attachment::new("net1", cid, "eth0").unwrap();
        let plan = self.plan.clone();
        let f = move |s: Slot| plan.addresses(s).iter().map(|a| a.to_string()).collect();
        let ranges = self.plan.describe();
        st.open()?.allocate(&Allocation {
            key: &key,
            space: self.plan.space(),
            requested: requested.map(|slot| Requested {
                slot,
                key: "args.cni.ips[0]".into(),
                text: self.plan.ranges()[0].address(slot).to_string(),
            }),
            addresses: &f,
            ranges: &ranges,
            pod_namespace: Some("default"),
            pod_name: Some(cid),
        })
    }

    fn add(&self, st: &Store, cid: &str) -> Result<Record> {
        self.add_req(st, cid, None)
    }

    fn del(&self, st: &Store, cid: &str) {
        if let Some(l) = st.open_existing().unwrap() {
            l.release(&Attachment::new("net1", cid, "eth0").unwrap())
                .unwrap();
        }
    }

    fn link(&self, s: u128) -> Option<String> {
        fs::read_link(self.root().join("slots").join(format!("{s:x}")))
            .ok()
            .map(|p| p.to_string_lossy().into_owned())
    }

    fn has_record(&self, cid: &str) -> bool {
        self.root()
            .join("attachments")
            .join(format!("{cid}@eth0"))
            .exists()
    }
}

#[test]
fn allocate_writes_the_contract_layout() {
    let fx = Fixture::new(&["fd00:0:0:0:5::/80", "2001:db8:7:12::/80"]);
    let st = fx.store(BOOT);
    let r = fx.add(&st, "c1").unwrap();
    assert_eq!(r.slot, Slot(0x10));
    assert_eq!(
        r.addresses,
        vec![
            "fd00::5:1:0:10/96".to_string(),
            "2001:db8:7:12:0:1:0:10/96".to_string()
        ]
    );
    let root = fx.root();
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("attachments/c1@eth0")).unwrap()).unwrap();
    assert_eq!(v["version"], 1);
    assert_eq!(v["network"], "net1");
    assert_eq!(v["containerId"], "c1");
    assert_eq!(v["ifname"], "eth0");
    assert_eq!(v["slot"], "0x10");
    assert_eq!(v["addresses"][1], "2001:db8:7:12:0:1:0:10/96");
    assert_eq!(v["podNamespace"], "default");
    assert_eq!(v["podName"], "c1");
    assert_eq!(v["bootId"], BOOT);
    assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
    assert_eq!(fx.link(0x10).as_deref(), Some("c1@eth0"));
    assert_eq!(
        fs::read_to_string(root.join("cursor")).unwrap().trim(),
        "11"
    );
    assert_eq!(
        fs::read_to_string(root.join("boot_id")).unwrap().trim(),
        BOOT
    );
    assert!(root.join("lock").exists());
    // No temp files left behind.
    for d in [root.clone(), root.join("attachments")] {
        for e in fs::read_dir(d).unwrap() {
            assert!(!e.unwrap().file_name().to_string_lossy().starts_with('.'));
        }
    }
    // podName/podNamespace absent → null.
    let key = Attachment::new("net1", "c2", "net1").unwrap();
    let plan = fx.plan.clone();
    let f = move |s: Slot| plan.addresses(s).iter().map(|a| a.to_string()).collect();
    st.open()
        .unwrap()
        .allocate(&Allocation {
            key: &key,
            space: fx.plan.space(),
            requested: None,
            addresses: &f,
            ranges: "",
            pod_namespace: None,
            pod_name: None,
        })
        .unwrap();
    let v: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("attachments/c2@net1")).unwrap()).unwrap();
    assert!(v["podName"].is_null() && v["podNamespace"].is_null());
    assert_eq!(v["slot"], "0x11");
}

#[test]
fn re_add_returns_the_same_slot() {
    // conformance.md #22: never a second slot for one attachment.
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    let a = fx.add(&st, "c1").unwrap();
    let b = fx.add(&st, "c1").unwrap();
    assert_eq!(a, b);
    assert!(fx.link(0x11).is_none());
    assert_eq!(fx.add(&st, "c2").unwrap().slot, Slot(0x11));
    // Asking for another address while holding one is refused and
    // leaves the first reservation intact.
    let e = fx.add_req(&st, "c1", Some(Slot(0x40))).unwrap_err();
    assert_eq!(cni_common::Error::from(e).code(), 7);
    assert!(fx.link(0x40).is_none());
    assert_eq!(fx.link(0x10).as_deref(), Some("c1@eth0"));
    // Asking for the one it holds is fine.
    assert_eq!(
        fx.add_req(&st, "c1", Some(Slot(0x10))).unwrap().slot,
        Slot(0x10)
    );
}

#[test]
fn del_is_idempotent_and_frees() {
    // conformance.md #25, 26
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    fx.add(&st, "c1").unwrap();
    fx.del(&st, "c1");
    assert!(fx.link(0x10).is_none() && !fx.has_record("c1"));
    fx.del(&st, "c1");
    fx.del(&st, "never-added");
    // DEL on a network that has no store creates nothing.
    let other = Store::new(fx.dir.path(), "other", BOOT).unwrap();
    assert!(other.open_existing().unwrap().is_none());
    assert!(!fx.dir.path().join("other").exists());
}

#[test]
fn freed_slots_wait_for_the_cursor_to_wrap() {
    let fx = Fixture::new(&["fd00::aa:bb00:0/104"]); // /120: slots 0x10..=0xff
    let st = fx.store(BOOT);
    for i in 0..3 {
        assert_eq!(fx.add(&st, &format!("c{i}")).unwrap().slot, Slot(0x10 + i));
    }
    fx.del(&st, "c0");
    // 0x10 is free but the cursor is at 0x13.
    assert_eq!(fx.add(&st, "d").unwrap().slot, Slot(0x13));
    // Fill the rest; the walk wraps and finds 0x10 last.
    for i in 0x14..=0xffu128 {
        assert_eq!(fx.add(&st, &format!("f{i}")).unwrap().slot, Slot(i));
    }
    assert_eq!(
        fs::read_to_string(fx.root().join("cursor")).unwrap().trim(),
        "10"
    );
    assert_eq!(fx.add(&st, "wrap").unwrap().slot, Slot(0x10));
    // Full: a clear error, code 50, nothing written.
    let e = fx.add(&st, "one-too-many").unwrap_err();
    assert!(e.to_string().contains("240 pod slots"), "{e}");
    assert_eq!(cni_common::Error::from(e).code(), 50);
    assert!(!fx.has_record("one-too-many"));
    assert!(matches!(
        st.status(fx.plan.space(), "r"),
        Err(IpamError::RangeFull { .. })
    ));
    // STATUS recovers after one DEL (conformance.md #44).
    fx.del(&st, "f100");
    assert!(st.status(fx.plan.space(), "r").is_ok());
    assert_eq!(fx.add(&st, "again").unwrap().slot, Slot(100));
}

#[test]
fn corrupt_cursor_starts_at_first_pod_slot() {
    let fx = Fixture::new(&["fd00::aa:bb00:0/104"]);
    let st = fx.store(BOOT);
    fx.add(&st, "a").unwrap();
    for junk in ["", "zz", "5", "fff", "0x"] {
        fs::write(fx.root().join("cursor"), junk).unwrap();
        let l = st.open().unwrap();
        assert_eq!(l.cursor(fx.plan.space()), Slot(0x10), "{junk:?}");
    }
    // 0x10 is taken, so the probe moves on.
    assert_eq!(fx.add(&st, "b").unwrap().slot, Slot(0x11));
}

#[test]
fn cursor_is_rewritten_in_place_and_never_through_a_link() {
    use std::os::unix::fs::MetadataExt;
    let fx = Fixture::new(&["fd00::aa:bb00:0/104"]);
    let st = fx.store(BOOT);
    fx.add(&st, "a").unwrap();
    let cursor = fx.root().join("cursor");
    let ino = fs::metadata(&cursor).unwrap().ino();
    // Longer junk first: the rewrite leaves nothing of it behind.
    fs::write(&cursor, format!("11\n{}", "x".repeat(40))).unwrap();
    assert_eq!(fx.add(&st, "b").unwrap().slot, Slot(0x11));
    assert_eq!(fs::read_to_string(&cursor).unwrap(), "12\n");
    assert_eq!(fs::metadata(&cursor).unwrap().ino(), ino, "same inode");
    // A symlink in its place is not followed: the allocation stands,
    // the link's target is untouched.
    let target = fx.dir.path().join("elsewhere");
    fs::write(&target, "keep").unwrap();
    fs::remove_file(&cursor).unwrap();
    std::os::unix::fs::symlink(&target, &cursor).unwrap();
    assert_eq!(fx.add(&st, "c").unwrap().slot, Slot(0x10 + 2));
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
}

#[test]
fn requested_slot() {
    // conformance.md #73: the requested address, then "taken" → error, nothing leaked.
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    assert_eq!(
        fx.add_req(&st, "c1", Some(Slot(0x42))).unwrap().slot,
        Slot(0x42)
    );
    // Requests do not move the cursor.
    assert_eq!(fx.add(&st, "c2").unwrap().slot, Slot(0x10));
    let e = fx.add_req(&st, "c3", Some(Slot(0x42))).unwrap_err();
    let m = e.to_string();
    assert!(m.contains("c1@eth0") && m.contains("0x42"), "{m}");
    assert_eq!(cni_common::Error::from(e).code(), 7);
    assert!(!fx.has_record("c3"));
    assert_eq!(fx.link(0x42).as_deref(), Some("c1@eth0"));
}

#[test]
fn crash_leftovers_are_repaired() {
    let fx = Fixture::new(&["fd00::aa:bb00:0/104"]);
    let st = fx.store(BOOT);
    let slots = fx.root().join("slots");
    fx.add(&st, "a").unwrap(); // 0x10
    fx.add(&st, "b").unwrap(); // 0x11
    fx.add(&st, "c").unwrap(); // 0x12
                               // 1. ADD died after symlink, before the record: a link without record.
    std::os::unix::fs::symlink("dead@eth0", slots.join("13")).unwrap();
    // The next ADD for the dead attachment takes its own link over.
    // (Here: a different one probes past it.)
    assert_eq!(fx.add(&st, "d").unwrap().slot, Slot(0x14));
    // 2. DEL died after removing the link: a record without link.
    fs::remove_file(slots.join("10")).unwrap();
    // 3. A record whose slot link points elsewhere.
    fs::remove_file(slots.join("11")).unwrap();
    std::os::unix::fs::symlink("c@eth0", slots.join("11")).unwrap();
    // 4. A writer died mid-write.
    fs::write(fx.root().join("attachments/.x@eth0.tmp.999"), "{").unwrap();
    fs::write(fx.root().join(".cursor.tmp.999"), "1").unwrap();
    // Foreign files are left alone.
    fs::write(fx.root().join("attachments/README"), "mine").unwrap();
    fs::write(slots.join("not-a-slot"), "").unwrap();

    // DEL repairs (2) and (3).
    fx.del(&st, "a");
    assert!(!fx.has_record("a"));
    fx.del(&st, "b");
    assert!(!fx.has_record("b"));
    assert_eq!(
        fx.link(0x11).as_deref(),
        Some("c@eth0"),
        "DEL must not remove another's link"
    );
    // CHECK of c still fine; the stray 0x11 link is GC's.
    let valid: HashSet<_> = ["c", "d"]
        .iter()
        .map(|c| Attachment::new("net1", c, "eth0").unwrap())
        .collect();
    let l = st.open().unwrap();
    let rep = l.gc(&valid).unwrap();
    assert!(rep.released.is_empty());
    assert_eq!(rep.links_removed, 2); // 0x11 (points back wrongly), 0x13 (no record)
    drop(l);
    assert!(fx.link(0x11).is_none() && fx.link(0x13).is_none());
    assert_eq!(fx.link(0x12).as_deref(), Some("c@eth0"));
    assert!(!fx.root().join("attachments/.x@eth0.tmp.999").exists());
    assert!(!fx.root().join(".cursor.tmp.999").exists());
    assert!(fx.root().join("attachments/README").exists());
    assert!(slots.join("not-a-slot").exists());
}

#[test]
fn lost_link_is_reclaimed_by_re_add() {
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    fx.add(&st, "a").unwrap();
    fx.add(&st, "b").unwrap();
    fs::remove_file(fx.root().join("slots/10")).unwrap();
    // Same address again although the cursor is past it.
    assert_eq!(fx.add(&st, "a").unwrap().slot, Slot(0x10));
    assert_eq!(fx.link(0x10).as_deref(), Some("a@eth0"));
    // A link of this attachment without record (only by hand now, or a
    // pre-release ADD order): the retry uses it.
    std::os::unix::fs::symlink("z@eth0", fx.root().join("slots/12")).unwrap();
    assert_eq!(fx.add(&st, "z").unwrap().slot, Slot(0x12));
}

#[test]
fn add_killed_between_record_and_link_is_undone_by_its_del() {
    // docs/design.md: killed at any point → the next DEL repairs; conformance.md #82.
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    let a = fx.add(&st, "a").unwrap();
    // What a kill after the record's rename, before symlink(), leaves:
    let dead = Record {
        container_id: "dead".into(),
        slot: Slot(0x11),
        ..a.clone()
    };
    fs::write(
        fx.root().join("attachments/dead@eth0"),
        serde_json::to_vec(&dead).unwrap(),
    )
    .unwrap();
    fx.del(&st, "dead");
    assert!(!fx.has_record("dead") && fx.link(0x11).is_none());
    assert_eq!(fx.link(0x10).as_deref(), Some("a@eth0"));
    // Had the runtime retried the ADD instead, it would get that slot.
    fs::write(
        fx.root().join("attachments/dead@eth0"),
        serde_json::to_vec(&dead).unwrap(),
    )
    .unwrap();
    assert_eq!(fx.add(&st, "dead").unwrap().slot, Slot(0x11));
    assert_eq!(fx.link(0x11).as_deref(), Some("dead@eth0"));
}

#[test]
fn status_writes_nothing() {
    // conformance.md #46: polled every few seconds, must not write.
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    st.status(fx.plan.space(), "r").unwrap();
    assert!(fs::read_dir(fx.dir.path()).unwrap().next().is_none());
    let deep = Store::new(&fx.dir.path().join("a/b"), "net1", BOOT).unwrap();
    deep.status(fx.plan.space(), "r").unwrap();
    assert!(!fx.dir.path().join("a").exists());
}

#[test]
fn corrupt_record_is_released_by_del() {
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    fx.add(&st, "a").unwrap();
    fs::write(fx.root().join("attachments/a@eth0"), "{not json").unwrap();
    let l = st.open().unwrap();
    let e = l
        .verify(&Attachment::new("net1", "a", "eth0").unwrap(), &[])
        .unwrap_err();
    assert!(e.to_string().contains("corrupt"), "{e}");
    drop(l);
    fx.del(&st, "a");
    assert!(fx.link(0x10).is_none() && !fx.has_record("a"));
}

/// A record of a newer format (here: version 2 with a layout v1 cannot
/// parse) is refused with its version named, never released as corrupt:
/// not by DEL, not by GC, not by the new-boot pass.
#[test]
fn newer_record_version_is_refused_not_released() {
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    fx.add(&st, "a").unwrap();
    let path = fx.root().join("attachments/a@eth0");
    let v2 = r#"{"version":2,"slots":{"10":"x"},"bootId":"other"}"#;
    fs::write(&path, v2).unwrap();
    let key = Attachment::new("net1", "a", "eth0").unwrap();
    let e = st.open().unwrap().release(&key).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("version 2") && msg.contains("a@eth0"), "{msg}");
    assert_eq!(cni_common::Error::from(e).code(), 5);
    assert!(st.open().unwrap().gc(&HashSet::new()).is_err());
    // A new boot's pass cannot release it either, and says so each time.
    let new = fx.store("99999999-2222-3333-4444-555555555555");
    fx.add(&new, "b").unwrap();
    assert_eq!(fs::read_to_string(&path).unwrap(), v2);
    assert_eq!(fx.link(0x10).as_deref(), Some("a@eth0"));
}

#[test]
fn new_boot_releases_old_records() {
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let old = fx.store(BOOT);
    fx.add(&old, "a").unwrap();
    fx.add(&old, "b").unwrap();
    std::os::unix::fs::symlink("gone@eth0", fx.root().join("slots/77")).unwrap();
    let new = fx.store("99999999-2222-3333-4444-555555555555");
    // STATUS before any locked call: old records count as free.
    assert!(new.status(fx.plan.space(), "r").is_ok());
    let r = fx.add(&new, "c").unwrap();
    // a and b were released; the cursor still moves forward.
    assert!(!fx.has_record("a") && !fx.has_record("b"));
    assert!(fx.link(0x10).is_none() && fx.link(0x11).is_none() && fx.link(0x77).is_none());
    assert_eq!(r.slot, Slot(0x12));
    assert_eq!(
        fs::read_to_string(fx.root().join("boot_id"))
            .unwrap()
            .trim(),
        "99999999-2222-3333-4444-555555555555"
    );
    // A missing boot_id file also triggers the pass; same-boot records stay.
    fs::remove_file(fx.root().join("boot_id")).unwrap();
    fx.add(&new, "d").unwrap();
    assert!(fx.has_record("c") && fx.has_record("d"));
    // A stale record that cannot be removed does not block ADD: its slot
    // stays held by its link, and the pass is retried (boot_id is not
    // updated) until it succeeds.
    let third = "77777777-2222-3333-4444-555555555555";
    let stuck = fx.root().join("attachments/c@eth0");
    let body = fs::read(&stuck).unwrap();
    fs::remove_file(&stuck).unwrap();
    fs::create_dir(&stuck).unwrap();
    fs::write(stuck.join("x"), &body).unwrap();
    let e = fx.add(&fx.store(third), "e").unwrap();
    assert!(fx.link(0x12).is_some(), "c's link still holds its slot");
    assert_ne!(e.slot, Slot(0x12));
    assert!(!fx.has_record("d"), "d (second boot) was released");
    assert_ne!(
        fs::read_to_string(fx.root().join("boot_id"))
            .unwrap()
            .trim(),
        third
    );
    fs::remove_dir_all(&stuck).unwrap();
    fx.add(&fx.store(third), "f").unwrap();
    assert_eq!(
        fs::read_to_string(fx.root().join("boot_id"))
            .unwrap()
            .trim(),
        third
    );
    assert!(
        fx.link(0x12).is_none(),
        "c's orphaned link went with the retried pass"
    );
    assert!(fx.has_record("e") && fx.has_record("f"));
}

#[test]
fn gc_with_and_without_valid_list() {
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    for c in ["a", "b", "c"] {
        fx.add(&st, c).unwrap();
    }
    // Another network's store is never touched.
    let other = Store::new(fx.dir.path(), "net2", BOOT).unwrap();
    let key = Attachment::new("net2", "b", "eth0").unwrap();
    let f = |s: Slot| vec![format!("{s}")];
    other
        .open()
        .unwrap()
        .allocate(&Allocation {
            key: &key,
            space: fx.plan.space(),
            requested: None,
            addresses: &f,
            ranges: "",
            pod_namespace: None,
            pod_name: None,
        })
        .unwrap();
    let valid: HashSet<_> = [Attachment::new("net1", "a", "eth0").unwrap()]
        .into_iter()
        .collect();
    let rep = st.open().unwrap().gc(&valid).unwrap();
    assert_eq!(
        rep.released,
        vec!["b@eth0".to_string(), "c@eth0".to_string()]
    );
    assert!(fx.has_record("a") && !fx.has_record("b") && !fx.has_record("c"));
    assert!(fx.dir.path().join("net2/attachments/b@eth0").exists());
    // An empty list means "nothing is in use".
    let rep = st.open().unwrap().gc(&HashSet::new()).unwrap();
    assert_eq!(rep.released, vec!["a@eth0".to_string()]);
    assert!(fs::read_dir(fx.root().join("slots"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn gc_keeps_going_and_reports_every_error() {
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    for c in ["a", "b", "c"] {
        fx.add(&st, c).unwrap();
    }
    // A record that cannot be removed: replace it with a non-empty
    // directory (works as root too, unlike permission tricks).
    let rec = fx.root().join("attachments/b@eth0");
    let body = fs::read(&rec).unwrap();
    fs::remove_file(&rec).unwrap();
    fs::create_dir(&rec).unwrap();
    fs::write(rec.join("x"), &body).unwrap();
    let e = st.open().unwrap().gc(&HashSet::new()).unwrap_err();
    assert!(e.to_string().contains("b@eth0"), "{e}");
    // The others were still released.
    assert!(!fx.has_record("a") && !fx.has_record("c"));
}

#[test]
fn verify_compares_with_prev_result() {
    let fx = Fixture::new(&["fd00::5:0:0:0/80", "2001:db8::/80"]);
    let st = fx.store(BOOT);
    let r = fx.add(&st, "a").unwrap();
    let l = st.open().unwrap();
    let k = Attachment::new("net1", "a", "eth0").unwrap();
    assert!(l.verify(&k, &r.addresses).is_ok());
    let mut extra = r.addresses.clone();
    extra.push("fd99::1/96".into());
    assert!(
        l.verify(&k, &extra).is_ok(),
        "extra addresses from later plugins are fine"
    );
    let e = l.verify(&k, &r.addresses[..1]).unwrap_err();
    assert_eq!(
        cni_common::Error::from(e).code(),
        cni_common::error::code::CHECK_FAILED
    );
    let e = l
        .verify(
            &Attachment::new("net1", "zz", "eth0").unwrap(),
            &r.addresses,
        )
        .unwrap_err();
    assert!(e.to_string().contains("no address is allocated"), "{e}");
    fs::remove_file(fx.root().join("slots/10")).unwrap();
    assert!(l
        .verify(&k, &r.addresses)
        .unwrap_err()
        .to_string()
        .contains("not reserved"));
}

#[test]
fn concurrent_allocations_get_distinct_slots() {
    // conformance.md #83. flock locks an open file description, so threads
    // that each open the lock file exclude each other like processes.
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let fx = &fx;
    let slots: Vec<Slot> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..32)
            .map(|i| sc.spawn(move || fx.add(&fx.store(BOOT), &format!("t{i}")).unwrap().slot))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut sorted = slots.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, (0x10..0x30).map(Slot).collect::<Vec<_>>());
}

#[test]
fn keys_cannot_escape_the_store() {
    // The parts themselves are refused by Attachment::new (cni-common's
    // attachment tests); here what a record name and a store name allow.
    assert_eq!(
        attachment_of_record_name("net1", "a@b@c").unwrap().ifname,
        "b@c"
    );
    assert!(attachment_of_record_name("net1", ".a@eth0.tmp.1").is_none());
    let d = Path::new("/tmp");
    assert!(Store::new(d, "..", BOOT).is_err());
    assert!(Store::new(d, "a/b", BOOT).is_err());
    assert!(Store::new(d, ".hidden", BOOT).is_err());
}

/// Issue 15: a container id of up to 255 bytes is valid, but
/// `<id>@<ifname>` then exceeds NAME_MAX: ADD failed with "File name
/// too long" and so did every DEL after it.
#[test]
fn longest_container_ids_get_a_record_name_that_fits() {
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    let long = |n: usize, c: char| -> String { std::iter::repeat_n(c, n).collect() };
    // 250 + "@eth0" = 255: the plain name still fits, and its temp
    // name (longer than NAME_MAX if built naively) is cut to fit.
    let edge = long(250, 'e');
    assert_eq!(
        record_name(&Attachment::new("net1", &edge, "eth0").unwrap()).len(),
        255
    );
    fx.add(&st, &edge).unwrap();
    assert!(fx.has_record(&edge));
    for n in [251, 254, 255] {
        let id = long(n, 'a');
        let key = Attachment::new("net1", &id, "eth0").unwrap();
        let name = record_name(&key);
        assert!(name.len() <= NAME_MAX && is_hashed_name(&name), "{name}");
        assert!(name.starts_with(&id[..HASHED_ID_HEAD]) && name.ends_with("@eth0"));
        let rec = fx.add(&st, &id).unwrap();
        assert_eq!(fx.link(rec.slot.0).as_deref(), Some(name.as_str()));
        assert_eq!(fx.add(&st, &id).unwrap().slot, rec.slot, "idempotent ADD");
        let l = st.open().unwrap();
        l.verify(&key, &rec.addresses).unwrap();
        l.release(&key).unwrap();
        l.release(&key).unwrap();
        assert!(fx.link(rec.slot.0).is_none());
        assert!(!fx.root().join("attachments").join(&name).exists());
    }
    // Only the exact hashed form counts: a slot link's target is
    // looked up with it.
    let hashed = record_name(&Attachment::new("net1", &long(255, 'a'), "eth0").unwrap());
    assert!(is_hashed_name(&hashed));
    for bad in [
        "../x~0123456789abcdef0123456789abcdef@eth0",
        "a~0123456789abcdef0123456789abcdef@../../etc",
        "a~0123456789abcdef@eth0",
        ".a~0123456789abcdef0123456789abcdef@eth0",
        "a~0123456789abcdef0123456789abcdeg@eth0",
    ] {
        assert!(!is_hashed_name(bad), "{bad}");
    }
    // Same 200-byte head, different tails: different names.
    let a = Attachment::new("net1", &(long(200, 'x') + &long(55, 'a')), "eth0").unwrap();
    let b = Attachment::new("net1", &(long(200, 'x') + &long(55, 'b')), "eth0").unwrap();
    assert_ne!(record_name(&a), record_name(&b));
    let c = Attachment::new("net1", &(long(200, 'x') + &long(55, 'a')), "eth1").unwrap();
    assert_ne!(record_name(&a), record_name(&c));
    // GC knows a hashed record's attachment from its content.
    let rec_a = fx.add(&st, &a.container_id).unwrap();
    let rec_b = fx.add(&st, &b.container_id).unwrap();
    let valid: HashSet<_> = [a.clone()].into_iter().collect();
    let rep = st.open().unwrap().gc(&valid).unwrap();
    assert_eq!(rep.released.len(), 2, "{rep:?}"); // b and the 250-byte edge id
    assert!(rep.released.contains(&record_name(&b)));
    assert_eq!(
        fx.link(rec_a.slot.0).as_deref(),
        Some(record_name(&a).as_str())
    );
    assert!(fx.link(rec_b.slot.0).is_none());
    // The new-boot pass releases it too.
    let st2 = fx.store("99999999-2222-3333-4444-555555555555");
    drop(st2.open().unwrap());
    assert!(fx.link(rec_a.slot.0).is_none());
    assert_eq!(
        fs::read_dir(fx.root().join("attachments")).unwrap().count(),
        0
    );
}

/// Issue 15: symlinks planted in the store point at a file outside;
/// it must stay untouched, and the call fails clearly or goes on.
#[test]
fn planted_symlinks_are_never_followed() {
    let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
    let st = fx.store(BOOT);
    let outside = fx.dir.path().join("outside");
    fs::write(&outside, "precious").unwrap();
    let intact = || assert_eq!(fs::read_to_string(&outside).unwrap(), "precious");
    fx.add(&st, "first").unwrap();

    // The temp file of the next record: ADD goes on, through a new file.
    let attachments = fx.root().join("attachments");
    let tmp = attachments.join(temp_name("c1@eth0"));
    std::os::unix::fs::symlink(&outside, &tmp).unwrap();
    fx.add(&st, "c1").unwrap();
    intact();
    assert!(fs::symlink_metadata(&tmp).is_err());
    assert!(fx.has_record("c1"));

    // A record replaced by a symlink: corrupt, released by DEL (the
    // link itself goes), the target is not read as a record.
    let rec = attachments.join("c1@eth0");
    fs::remove_file(&rec).unwrap();
    std::os::unix::fs::symlink(&outside, &rec).unwrap();
    assert!(matches!(
        st.open().unwrap().read_record(&Attachment::new("net1", "c1", "eth0").unwrap()).unwrap(),
        RecordState::Corrupt(m) if m.contains("symlink")
    ));
    fx.del(&st, "c1");
    assert!(fs::symlink_metadata(&rec).is_err());
    intact();

    // boot_id and cursor as symlinks: read as absent, replaced by files.
    for f in ["boot_id", "cursor"] {
        let p = fx.root().join(f);
        fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&outside, &p).unwrap();
    }
    fx.add(&st, "c2").unwrap();
    intact();
    assert!(!fs::symlink_metadata(fx.root().join("boot_id"))
        .unwrap()
        .is_symlink());

    // The lock: refused with a message naming it, nothing created.
    let lock = fx.root().join("lock");
    fs::remove_file(&lock).unwrap();
    let created = fx.dir.path().join("created-through-lock");
    std::os::unix::fs::symlink(&created, &lock).unwrap();
    let e = st.open().err().unwrap().to_string();
    assert!(e.contains("lock") && e.contains("symlink"), "{e}");
    assert!(!created.exists());
    fs::remove_file(&lock).unwrap();

    // The store's own directories: refused, nothing written elsewhere.
    let elsewhere = fx.dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    let slots = fx.root().join("slots");
    fs::rename(&slots, fx.dir.path().join("old-slots")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &slots).unwrap();
    let e = st.open().err().unwrap().to_string();
    assert!(e.contains("slots") && e.contains("symlink"), "{e}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    intact();
}

#[test]
fn status_reports_unusable_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    let st = Store::new(&file, "net1", BOOT).unwrap();
    let e = st.status(SlotSpace::with_host_bits(32), "r").unwrap_err();
    assert!(matches!(e, IpamError::Unavailable(_)), "{e}");
    assert_eq!(cni_common::Error::from(e).code(), 50);
    // ADD there fails with an I/O error (5), nothing created; DEL,
    // CHECK and GC find no store.
    assert_eq!(cni_common::Error::from(st.open().err().unwrap()).code(), 5);
    assert!(st.open_existing().unwrap().is_none());
}
