//! ipam-prefix, black box, under contention and violence: many processes
//! at once (conformance.md #81, 83) and processes SIGKILLed at random moments
//! (docs/design.md: "A plugin killed at any point leaves state that a later DEL
//! or GC removes").

use conformance::harness::*;
use conformance::ipam::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

#[test]
fn sixty_four_parallel_adds_get_distinct_slots() {
    // conformance.md #81, 83
    let net = demo_net();
    let ns = Netns::new(NETNS_PREFIX);
    let cids: Vec<String> = (0..64).map(|_| container_id("par")).collect();
    // Start all 64 processes before waiting for any.
    let running: Vec<Running> = cids
        .iter()
        .map(|cid| {
            net.call("ADD", "1.0.0", cid, &ns.path_str(), "eth0")
                .spawn()
        })
        .collect();
    let results: Vec<Value> = running
        .into_iter()
        .map(|r| r.wait().assert_ok().clone())
        .collect();
    let mut ula = BTreeSet::new();
    let mut gua = BTreeSet::new();
    for r in &results {
        let a = result_addrs(r);
        assert!(ula.insert(a[0]), "ULA address handed out twice: {}", a[0]);
        assert!(gua.insert(a[1]), "GUA address handed out twice: {}", a[1]);
    }
    let store = net.store();
    assert_eq!(store.assert_consistent().len(), 64);
    // Each record holds what its ADD printed.
    for (cid, r) in cids.iter().zip(&results) {
        let rec = store.record(cid, "eth0").expect("record");
        let slot = Store::record_slot(&rec);
        assert_eq!(
            slot_of(net.pod_ranges()[0], result_addrs(r)[0].addr()),
            slot,
            "{cid}: record slot differs from the result"
        );
    }
    // DEL all, also in parallel → empty store.
    let running: Vec<Running> = cids
        .iter()
        .map(|cid| net.call("DEL", "1.0.0", cid, "", "eth0").spawn())
        .collect();
    for r in running {
        r.wait().assert_silent_ok();
    }
    assert!(
        store.is_empty(),
        "left after DEL: {:?} {:?}",
        store.attachment_names(),
        store.slot_names()
    );
}

#[test]
fn interleaved_add_del_from_threads_stays_consistent() {
    // conformance.md #83: interleaved ADD/DEL storm → store consistent.
    let net = demo_net();
    let ns = Netns::new(NETNS_PREFIX);
    let live = Mutex::new(BTreeMap::<String, Value>::new());
    std::thread::scope(|s| {
        for t in 0..8 {
            let (net, ns, live) = (&net, &ns, &live);
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                let mut mine: Vec<String> = Vec::new();
                for _ in 0..25 {
                    if !mine.is_empty() && rng.bool() {
                        let cid = mine.swap_remove(rng.usize(..mine.len()));
                        net.call("DEL", "1.0.0", &cid, "", "eth0")
                            .run()
                            .assert_silent_ok();
                        live.lock().unwrap().remove(&cid);
                    } else {
                        let cid = container_id(&format!("t{t}x"));
                        let r = net
                            .call("ADD", "1.0.0", &cid, &ns.path_str(), "eth0")
                            .run()
                            .assert_ok()
                            .clone();
                        live.lock().unwrap().insert(cid.clone(), r);
                        mine.push(cid);
                    }
                }
            });
        }
    });
    let live = live.into_inner().unwrap();
    let store = net.store();
    let names: BTreeSet<String> = store.assert_consistent().into_iter().collect();
    let expected: BTreeSet<String> = live.keys().map(|c| Store::key(c, "eth0")).collect();
    assert_eq!(names, expected);
    let addrs: BTreeSet<_> = live.values().map(|r| result_addrs(r)[0]).collect();
    assert_eq!(addrs.len(), live.len(), "two live pods share an address");
}

/// What the storm did to one attachment, in order.
#[derive(Debug, Default, Clone)]
struct History {
    /// The last operation issued, and whether it ran to completion (exit 0).
    last: Option<(&'static str, bool)>,
    result: Option<Value>,
}

#[test]
fn sigkill_storm_leaves_state_that_gc_cleans() {
    // conformance.md #82, 83; docs/design.md: killed at any point → a later GC/DEL
    // removes the state;
    // every store file still parses (records are written crash-safely).
    const PROCESSES: usize = 200;
    const THREADS: u64 = 8;
    let net = demo_net();
    let ns = Netns::new(NETNS_PREFIX);
    let cids: Vec<String> = (0..40).map(|_| container_id("kill")).collect();
    let history = Mutex::new(BTreeMap::<String, History>::new());
    let killed = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (net, ns, cids, history, killed) = (&net, &ns, &cids, &history, &killed);
            s.spawn(move || {
                let mut rng = fastrand::Rng::with_seed(0xc6 + t);
                // Each thread owns a disjoint set of container ids, so no two
                // calls for one attachment overlap (a runtime guarantee).
                let own: Vec<&String> = cids
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i as u64 % THREADS == t)
                    .map(|(_, c)| c)
                    .collect();
                for _ in 0..PROCESSES / THREADS as usize {
                    let cid = own[rng.usize(..own.len())];
                    let verb = if rng.u8(..3) == 0 { "DEL" } else { "ADD" };
                    let netns = if verb == "ADD" {
                        ns.path_str()
                    } else {
                        String::new()
                    };
                    let mut p = net.call(verb, "1.0.0", cid, &netns, "eth0").spawn();
                    // Three in four are killed after 0–5 ms; the rest run to
                    // the end, so that there are survivors for GC to keep.
                    if rng.u8(..4) != 0 {
                        std::thread::sleep(Duration::from_micros(rng.u64(0..=5000)));
                        p.kill();
                    }
                    let out = p.wait();
                    let completed = out.code == Some(0);
                    if out.signal.is_some() {
                        killed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        // Not killed: it must have behaved (no half answers).
                        if verb == "ADD" {
                            out.assert_ok();
                        } else {
                            out.assert_silent_ok();
                        }
                    }
                    let mut h = history.lock().unwrap();
                    let e = h.entry(cid.clone()).or_default();
                    e.last = Some((verb, completed));
                    e.result = if verb == "ADD" && completed {
                        out.json.clone()
                    } else {
                        None
                    };
                }
            });
        }
    });
    let killed = killed.into_inner();
    eprintln!("storm: {PROCESSES} processes, {killed} killed before they finished");
    assert!(
        killed > 0,
        "no process was killed: the storm proved nothing"
    );
    let stray_before: Vec<String> = net
        .store()
        .attachment_names()
        .into_iter()
        .filter(|n| n.starts_with('.'))
        .collect();
    eprintln!(
        "storm: temp files left by killed writers: {}",
        stray_before.len()
    );

    // Every file in the store parses (lock aside); slot links resolve or
    // dangle only towards names that are records-in-waiting.
    let store = net.store();
    let records = store.records();
    for (n, rec) in &records {
        assert!(rec.is_object(), "record {n} is not an object: {rec}");
    }
    for (slot, target) in store.slots() {
        assert!(
            target.contains('@'),
            "slots/{slot:x} -> {target:?} is not a record name"
        );
    }
    for f in ["boot_id", "cursor"] {
        let p = store.dir.join(f);
        if p.exists() {
            let s = std::fs::read_to_string(&p).unwrap();
            assert!(!s.trim().is_empty(), "{f} is empty after the storm");
        }
    }

    // GC with the attachments whose last call was a completed ADD.
    let history = history.into_inner().unwrap();
    let survivors: Vec<(&String, &History)> = history
        .iter()
        .filter(|(_, h)| h.last == Some(("ADD", true)))
        .collect();
    eprintln!("storm: {} attachments survive", survivors.len());
    let valid: Vec<(&str, &str)> = survivors
        .iter()
        .map(|(c, _)| (c.as_str(), "eth0"))
        .collect();
    net.gc(&valid).run().assert_silent_ok();
    let names: BTreeSet<String> = store.assert_consistent().into_iter().collect();
    let expected: BTreeSet<String> = survivors
        .iter()
        .map(|(c, _)| Store::key(c, "eth0"))
        .collect();
    assert_eq!(names, expected, "GC did not leave exactly the survivors");
    assert_eq!(
        store.attachment_names(),
        expected,
        "stray files left in attachments/ after GC"
    );
    // The survivors still hold what their ADD printed.
    let r0 = net.pod_ranges()[0];
    for (cid, h) in &survivors {
        let rec = store.record(cid, "eth0").unwrap();
        let printed = result_addrs(h.result.as_ref().unwrap())[0].addr();
        assert_eq!(Store::record_slot(&rec), slot_of(r0, printed), "{cid}");
    }
    // And DEL of everything empties the store.
    for cid in history.keys() {
        net.call("DEL", "1.0.0", cid, "", "eth0")
            .run()
            .assert_silent_ok();
    }
    assert!(store.is_empty());
}

/// Run `invs` with at most `width` processes in flight; outputs in order.
fn run_all(invs: Vec<Invocation>, width: usize) -> Vec<Output> {
    let mut outs = Vec::with_capacity(invs.len());
    for chunk in invs.chunks(width) {
        let running: Vec<Running> = chunk.iter().map(Invocation::spawn).collect();
        outs.extend(running.into_iter().map(Running::wait));
    }
    outs
}

#[test]
fn racing_for_one_requested_address_has_one_winner() {
    // conformance.md #73, 81: 16 pods request the same address at once.
    let net = demo_net();
    let ns = Netns::new(NETNS_PREFIX);
    let want = slot_addr(net.pod_ranges()[0], 0x77);
    let cids: Vec<String> = (0..16).map(|_| container_id("race")).collect();
    let invs = cids
        .iter()
        .map(|c| {
            net.call("ADD", "1.0.0", c, &ns.path_str(), "eth0")
                .args(&format!("IgnoreUnknown=1;IP={want}"))
        })
        .collect();
    let outs = run_all(invs, 16);
    let winners: Vec<&String> = cids
        .iter()
        .zip(&outs)
        .filter(|(_, o)| o.success())
        .map(|(c, _)| c)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one pod gets {want}");
    for o in outs.iter().filter(|o| !o.success()) {
        o.assert_error(7);
    }
    assert_eq!(
        net.store().assert_consistent(),
        vec![Store::key(winners[0], "eth0")]
    );
}

#[test]
fn racing_to_fill_a_range_never_overbooks() {
    // conformance.md #42, 81: 260 pods into 240 slots, 64 processes at a time.
    let net = IpamNet::new(&["fd8c:1f0a:77e3:0:1:2:500::/104"]);
    let ns = Netns::new(NETNS_PREFIX);
    let invs = (0..260)
        .map(|_| {
            net.call(
                "ADD",
                "1.0.0",
                &container_id("fill"),
                &ns.path_str(),
                "eth0",
            )
        })
        .collect();
    let outs = run_all(invs, 64);
    let ok: Vec<&Output> = outs.iter().filter(|o| o.success()).collect();
    assert_eq!(ok.len(), 240, "every slot used exactly once");
    for o in outs.iter().filter(|o| !o.success()) {
        o.assert_error(50);
    }
    let addrs: BTreeSet<_> = ok
        .iter()
        .map(|o| result_addrs(o.json.as_ref().unwrap())[0])
        .collect();
    assert_eq!(addrs.len(), 240, "an address handed out twice");
    assert_eq!(net.store().assert_consistent().len(), 240);
}

#[test]
fn gc_of_one_network_while_another_allocates() {
    // conformance.md #48, 81: GC is per network; parallel ADDs on the other
    // network in the same data dir are untouched.
    let n = demo_net();
    let m = n.sibling(&["fd8c:1f0a:77e3:0:4::/80"]);
    let ns = Netns::new(NETNS_PREFIX);
    for _ in 0..8 {
        n.call("ADD", "1.0.0", &container_id("n"), &ns.path_str(), "eth0")
            .run()
            .assert_ok();
    }
    let m_cids: Vec<String> = (0..32).map(|_| container_id("m")).collect();
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..10 {
                n.gc(&[]).run().assert_silent_ok();
            }
        });
        let invs = m_cids
            .iter()
            .map(|c| m.call("ADD", "1.0.0", c, &ns.path_str(), "eth0"))
            .collect();
        for o in run_all(invs, 16) {
            o.assert_ok();
        }
    });
    assert!(n.store().is_empty());
    let got: BTreeSet<String> = m.store().assert_consistent().into_iter().collect();
    let want: BTreeSet<String> = m_cids.iter().map(|c| Store::key(c, "eth0")).collect();
    assert_eq!(got, want);
}

#[test]
fn first_calls_after_a_reboot_race_safely() {
    // docs/design.md boot-id release, under conformance.md #81 concurrency: 10 records
    // of a previous boot, then 16 ADDs at once.
    let net = demo_net();
    let ns = Netns::new(NETNS_PREFIX);
    let old: Vec<String> = (0..10).map(|_| container_id("old")).collect();
    for c in &old {
        net.call("ADD", "1.0.0", c, &ns.path_str(), "eth0")
            .run()
            .assert_ok();
    }
    let store = net.store();
    let fake = "00000000-0000-4000-8000-0000000000bb";
    for c in &old {
        let p = store.attachments_dir().join(Store::key(c, "eth0"));
        let mut rec: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        rec["bootId"] = Value::String(fake.into());
        std::fs::write(&p, serde_json::to_vec(&rec).unwrap()).unwrap();
    }
    std::fs::write(store.dir.join("boot_id"), fake).unwrap();
    let new: Vec<String> = (0..16).map(|_| container_id("new")).collect();
    let invs = new
        .iter()
        .map(|c| net.call("ADD", "1.0.0", c, &ns.path_str(), "eth0"))
        .collect();
    for o in run_all(invs, 16) {
        o.assert_ok();
    }
    let got: BTreeSet<String> = store.assert_consistent().into_iter().collect();
    let want: BTreeSet<String> = new.iter().map(|c| Store::key(c, "eth0")).collect();
    assert_eq!(got, want, "old-boot records survived or new ones were lost");
}
