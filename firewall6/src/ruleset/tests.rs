use super::*;
use crate::config::FirewallConf;
use cni_common::attachment::Attachment;
use serde_json::json;
use std::cell::{Cell, RefCell};

/// An in-memory filter table with ip6tables-restore's semantics where
/// the verbs depend on them: a batch applies entirely or not at all; a
/// declaration flushes; `-D` of an absent rule and a jump to a missing
/// chain fail the batch. `fail` makes batches containing a string fail
/// (`fail_times` times; u32::MAX = always).
type Chains = BTreeMap<String, Vec<String>>;
/// What someone else's commit does to the chains.
type ForeignCommit = Box<dyn FnOnce(&mut Chains)>;

#[derive(Default)]
struct FakeTables {
    chains: RefCell<BTreeMap<String, Vec<String>>>,
    fail: RefCell<Option<(String, u32)>>,
    restores: Cell<u32>,
    /// Commit counter like nf_tables' when `Some` (one per table a
    /// batch changes); `None`: no generation, as on a legacy node.
    gen: Cell<Option<u32>>,
    verified_gen: RefCell<Option<Verified>>,
    /// Something else commits (and does this to the chains) while the
    /// next batch runs.
    meanwhile: RefCell<Option<ForeignCommit>>,
    batches: RefCell<Vec<String>>,
}

impl FakeTables {
    fn new() -> FakeTables {
        let t = FakeTables::default();
        t.chains.borrow_mut().insert(FORWARD.into(), vec![]);
        t.chains.borrow_mut().insert("INPUT".into(), vec![]);
        t.chains.borrow_mut().insert(raw(RAW_PREROUTING), vec![]);
        t
    }

    fn fail_on(&self, needle: &str, times: u32) {
        *self.fail.borrow_mut() = Some((needle.to_string(), times));
    }

    fn tagged(&self, tag: &str) -> usize {
        let needle = format!("--comment \"{tag}\"");
        self.chains
            .borrow()
            .values()
            .flatten()
            .filter(|l| l.contains(&needle))
            .count()
    }
}

/// The fake's key for a raw-table chain (filter chains go by name).
fn raw(chain: &str) -> String {
    format!("raw:{chain}")
}

fn bad(batch: &str, why: &str) -> Error {
    Error::Exec {
        what: "fake restore".into(),
        status: "1".into(),
        stderr: format!("{why} in {batch}"),
    }
}

impl Tables for FakeTables {
    fn list_chain(&self, chain: &str) -> Result<Option<Vec<String>>> {
        Ok(self.chains.borrow().get(chain).cloned())
    }

    fn list_all(&self) -> Result<Vec<String>> {
        let chains = self.chains.borrow();
        let mut out = vec!["-P FORWARD ACCEPT".to_string()];
        let filter = || chains.iter().filter(|(c, _)| !c.starts_with("raw:"));
        out.extend(
            filter()
                .filter(|(c, _)| !rules::SRC_HOOKS.contains(&c.as_str()))
                .map(|(c, _)| format!("-N {c}")),
        );
        out.extend(filter().flat_map(|(_, r)| r.iter().cloned()));
        Ok(out)
    }

    fn list_raw_chain(&self, chain: &str) -> Result<Option<Vec<String>>> {
        Ok(self.chains.borrow().get(&raw(chain)).cloned())
    }

    fn restore(&self, batch: &str) -> Result<()> {
        self.restores.set(self.restores.get() + 1);
        self.batches.borrow_mut().push(batch.to_string());
        if let Some(change) = self.meanwhile.borrow_mut().take() {
            change(&mut self.chains.borrow_mut());
            self.gen.set(self.gen.get().map(|g| g + 1));
        }
        if let Some((needle, times)) = self.fail.borrow_mut().as_mut() {
            if *times > 0 && batch.contains(needle.as_str()) {
                *times = times.saturating_sub(1);
                return Err(bad(batch, "injected failure"));
            }
        }
        let mut next = self.chains.borrow().clone();
        // Chains of the current section's table, by the fake's key.
        let mut key: fn(&str) -> String = |c| c.to_string();
        // Sections that change something: one commit each.
        let mut commits = 0;
        let mut changed = false;
        for line in batch.lines() {
            if !line.starts_with("-C ") && !line.starts_with('*') && line != "COMMIT" {
                changed = true;
            }
            if line == "COMMIT" && std::mem::take(&mut changed) {
                commits += 1;
            }
            if let Some(table) = line.strip_prefix('*') {
                key = if table == "raw" {
                    raw
                } else {
                    |c| c.to_string()
                };
                continue;
            }
            if line == "COMMIT" {
                continue;
            }
            if let Some(decl) = line.strip_prefix(':') {
                let name = decl.split(' ').next().unwrap();
                next.insert(key(name), vec![]);
                continue;
            }
            let (op, rest) = line.split_at(3);
            let (chain, spec) = rest.split_once(' ').unwrap();
            let spec = spec
                .strip_prefix("1 ")
                .filter(|_| op == "-I ")
                .unwrap_or(spec);
            let rule = format!("-A {chain} {spec}");
            let target = spec.rsplit(' ').next().unwrap();
            if !next.contains_key(&key(chain))
                || (op != "-D "
                    && !["ACCEPT", "DROP", "RETURN"].contains(&target)
                    && !next.contains_key(&key(target)))
            {
                return Err(bad(batch, "no chain/target by that name"));
            }
            let rules = next.get_mut(&key(chain)).unwrap();
            match op {
                "-A " => rules.push(rule),
                "-I " => rules.insert(0, rule),
                "-C " if rules.contains(&rule) => {}
                "-C " => return Err(bad(batch, "bad rule (does a matching rule exist?)")),
                "-D " => match rules.iter().position(|r| *r == rule) {
                    Some(i) => {
                        rules.remove(i);
                    }
                    None => return Err(bad(batch, "bad rule (does a matching rule exist?)")),
                },
                _ => return Err(bad(batch, "unknown op")),
            }
        }
        *self.chains.borrow_mut() = next;
        self.gen.set(self.gen.get().map(|g| g + commits));
        Ok(())
    }

    fn skeleton_lock(&self) -> Result<Box<dyn std::any::Any>> {
        Ok(Box::new(()))
    }

    fn generation(&self) -> Option<Generation> {
        self.gen.get().map(|gen| Generation {
            boot: "b".repeat(36),
            netns: 1,
            gen,
        })
    }

    fn verified(&self) -> Option<Verified> {
        self.verified_gen.borrow().clone()
    }

    fn set_verified(&self, v: &Verified) {
        *self.verified_gen.borrow_mut() = Some(v.clone());
    }
}

impl FakeTables {
    /// A fake with a generation counter, as with the nf_tables backend.
    fn counting() -> FakeTables {
        let t = FakeTables::new();
        t.gen.set(Some(1));
        t
    }

    fn last_batch(&self) -> String {
        self.batches.borrow().last().cloned().unwrap_or_default()
    }
}

/// A counting fake after two ADDs of network "n": the first repairs
/// (no record), the second checks and records.
fn recorded() -> (FakeTables, Skeleton<'static>) {
    let t = FakeTables::counting();
    let skel = default_skel();
    install(&t, &skel, &rules_of(&skel, "a", 0x10, "c6ab00000000001")).unwrap();
    assert_eq!(t.verified(), None);
    install(&t, &skel, &rules_of(&skel, "b", 0x11, "c6ab00000000002")).unwrap();
    assert!(t.last_batch().contains("-C FORWARD"));
    assert_eq!(t.verified().map(|v| v.at), t.generation());
    (t, skel)
}

/// Issue 7: once a checked batch has found the skeleton whole, ADDs
/// skip the `-C` lines while nothing else commits, and DEL keeps the
/// record (it removes only a pod's rules).
#[test]
fn checks_skipped_while_nothing_else_committed() {
    let (t, skel) = recorded();
    let c = rules_of(&skel, "c", 0x12, "c6ab00000000003");
    install(&t, &skel, &c).unwrap();
    assert_eq!(t.last_batch(), c.batch(), "appends only");
    assert_eq!(t.verified().map(|v| v.at), t.generation());
    assert!(defects_of(&t, &skel, &c).unwrap().is_empty());
    remove_attachment(&t, &tag("c"), Some(c.clone())).unwrap();
    assert_eq!(t.tagged(&tag("c")), 0);
    assert_eq!(
        t.verified().map(|v| v.at),
        t.generation(),
        "DEL kept the record"
    );
    let d = rules_of(&skel, "d", 0x13, "c6ab00000000004");
    install(&t, &skel, &d).unwrap();
    assert_eq!(t.last_batch(), d.batch());
}

/// The record vouches for skeletons by config (admin chain, policy):
/// an ADD of a config not seen since the last foreign commit checks,
/// and installs what its config needs. Two configs on one node
/// (multus, two conflists): once each one's checks have passed with
/// nobody else committing, their ADDs in turn append only; a foreign
/// commit brings the checks back for both.
#[test]
fn another_config_checks_then_both_take_turns() {
    let (t, skel) = recorded();
    let conf = FirewallConf::from_raw(&json!({"adminChain": "OPS"})).unwrap();
    let ops = Skeleton {
        network: "n",
        conf: &conf,
        bridge: Some("br0"),
    };
    let mut last = 0x12;
    let mut add = |s: &Skeleton, id: &str| -> String {
        last += 1;
        let r = rules_of(s, id, last, &format!("c6ab0000000{last:04x}"));
        install(&t, s, &r).unwrap();
        assert!(defects_of(&t, s, &r).unwrap().is_empty());
        let b = t.last_batch();
        if b == r.batch() {
            "appends".into()
        } else {
            assert!(b.contains("-C FORWARD"), "{b}");
            "checks".into()
        }
    };
    // ops: the first ADD repairs (its admin chain is new), the second
    // checks; default checks once more after that repair's commits.
    add(&ops, "c");
    assert_eq!(add(&ops, "d"), "checks");
    assert_eq!(add(&skel, "e"), "checks");
    for id in ["f", "g", "h", "i"] {
        let s = if matches!(id, "f" | "h") { &ops } else { &skel };
        assert_eq!(add(s, id), "appends", "{id}");
    }
    assert_eq!(t.verified().map(|v| v.checks.len()), Some(2));
    t.gen.set(t.gen.get().map(|g| g + 1));
    assert_eq!(add(&ops, "j"), "checks");
    assert_eq!(add(&skel, "k"), "checks");
    assert_eq!(add(&ops, "l"), "appends");
}

/// Without a generation (legacy backend) every ADD checks.
#[test]
fn no_generation_no_skipping() {
    let t = FakeTables::new();
    let skel = default_skel();
    install(&t, &skel, &rules_of(&skel, "a", 0x10, "c6ab00000000001")).unwrap();
    for (id, last) in [("b", 0x11), ("c", 0x12)] {
        install(&t, &skel, &rules_of(&skel, id, last, "c6ab00000000001")).unwrap();
        assert!(t.last_batch().contains("-C FORWARD"), "{}", t.last_batch());
    }
    assert_eq!(t.verified(), None);
}

/// Someone else's commit between two ADDs (here one that flushes
/// CNI6-FORWARD) brings the checks back, and with them the repair.
#[test]
fn a_foreign_commit_brings_the_checks_back() {
    let (t, skel) = recorded();
    t.chains.borrow_mut().insert(FORWARD_CHAIN.into(), vec![]);
    t.gen.set(t.gen.get().map(|g| g + 1));
    let c = rules_of(&skel, "c", 0x12, "c6ab00000000003");
    install(&t, &skel, &c).unwrap();
    assert!(defects_of(&t, &skel, &c).unwrap().is_empty(), "repaired");
    assert_eq!(t.tagged(&tag("c")), c.len());
}

/// A commit by someone else while the unchecked batch runs: the checks
/// run right after it, and repair what that commit broke.
#[test]
fn a_commit_during_the_unchecked_batch_is_checked_after_it() {
    let (t, skel) = recorded();
    *t.meanwhile.borrow_mut() = Some(Box::new(|chains| {
        chains.insert(FROM_POD_CHAIN.into(), vec![]);
    }));
    let c = rules_of(&skel, "c", 0x12, "c6ab00000000003");
    install(&t, &skel, &c).unwrap();
    assert!(defects_of(&t, &skel, &c).unwrap().is_empty(), "repaired");
    assert_eq!(t.tagged(&tag("c")), c.len());
    assert_ne!(t.verified().map(|v| v.at), t.generation());
    let d = rules_of(&skel, "d", 0x13, "c6ab00000000004");
    install(&t, &skel, &d).unwrap();
    assert!(t.last_batch().contains("-C FORWARD"));
    assert_eq!(
        t.verified().map(|v| v.at),
        t.generation(),
        "checked, recorded again"
    );
}

fn pod(last: u16, port: &str) -> Pod {
    Pod {
        addresses: vec![
            format!("fd00:f6::1:1:0:{last:x}").parse().unwrap(),
            format!("2001:db8:7:1:0:1:0:{last:x}").parse().unwrap(),
        ],
        host_side: Some(HostSide::BridgePort(port.into())),
        bridge: Some("br0".into()),
        mac: Some([0x02, 0xc6, 0, 0, (last >> 8) as u8, last as u8]),
    }
}

fn tag(id: &str) -> String {
    rules::tag(&Attachment::new("n", id, "eth0").unwrap())
}

/// Network "n" with the default policy (the config lives for the test
/// process).
fn default_skel() -> Skeleton<'static> {
    let conf = Box::leak(Box::new(FirewallConf::from_raw(&json!({})).unwrap()));
    Skeleton {
        network: "n",
        conf,
        bridge: Some("br0"),
    }
}

/// The rules of pod `id` (address slot `last`, host port `port`) under
/// the skeleton's policy.
fn rules_of(skel: &Skeleton, id: &str, last: u16, port: &str) -> PodRules {
    PodRules::of(&tag(id), &pod(last, port), &skel.policy_chain())
}

/// Issue 7: the first ADD also puts the MLD drop into the raw table;
/// later ADDs check it in their one batch and put it back when it is
/// gone, without touching the filter table's skeleton.
#[test]
fn mld_drop_installed_checked_and_repaired() {
    let t = FakeTables::new();
    let skel = default_skel();
    install(&t, &skel, &rules_of(&skel, "a", 0x10, "c6ab00000000001")).unwrap();
    let raw_chain = |c: &str| t.list_raw_chain(c).unwrap();
    let prerouting = || raw_chain(RAW_PREROUTING).unwrap_or_default();
    assert!(prerouting().contains(&rules::mld_jump()));
    assert!(t.chains.borrow()[FORWARD].contains(&rules::src_jump(FORWARD, "br0")));
    assert_eq!(raw_chain(MLD_CHAIN), Some(rules::mld_rules()));
    let before = t.restores.get();
    install(&t, &skel, &rules_of(&skel, "b", 0x11, "c6ab00000000002")).unwrap();
    assert_eq!(
        t.restores.get() - before,
        1,
        "one batch with the raw checks"
    );

    t.chains.borrow_mut().insert(raw(RAW_PREROUTING), vec![]);
    let filter_before = t.list_all().unwrap();
    install(&t, &skel, &rules_of(&skel, "c", 0x12, "c6ab00000000003")).unwrap();
    assert!(prerouting().contains(&rules::mld_jump()));
    assert!(t.chains.borrow()[FORWARD].contains(&rules::src_jump(FORWARD, "br0")));
    assert_eq!(raw_chain(MLD_CHAIN), Some(rules::mld_rules()));
    let added: BTreeSet<String> = t
        .list_all()
        .unwrap()
        .into_iter()
        .filter(|l| !filter_before.contains(l))
        .collect();
    let c: BTreeSet<String> = rules_of(&skel, "c", 0x12, "c6ab00000000003")
        .all()
        .into_iter()
        .collect();
    assert_eq!(added, c, "the filter table gained c's rules only");
}

/// A raw table that cannot be written costs the MLD drop, never the
/// pod's rules (its source check is in the filter table).
#[test]
fn unusable_raw_table_does_not_fail_add() {
    let t = FakeTables::new();
    t.fail_on("*raw", u32::MAX);
    let skel = default_skel();
    let a = rules_of(&skel, "a", 0x10, "c6ab00000000001");
    install(&t, &skel, &a).unwrap();
    assert_eq!(t.tagged(&tag("a")), a.len());
    assert!(defects_of(&t, &skel, &a).unwrap().is_empty());
    assert_eq!(t.list_raw_chain(MLD_CHAIN).unwrap(), None);
}

/// A FORWARD jump to CNI6-FORWARD put back first (by the repair, or by
/// hand) must not overtake the source check: the repair moves it back.
#[test]
fn source_check_stays_first_in_forward() {
    let t = FakeTables::new();
    let skel = default_skel();
    install(&t, &skel, &rules_of(&skel, "a", 0x10, "c6ab00000000001")).unwrap();
    t.chains.borrow_mut().insert(
        FORWARD.into(),
        vec![Skeleton::forward_jump(), rules::src_jump(FORWARD, "br0")],
    );
    let b = rules_of(&skel, "b", 0x11, "c6ab00000000002");
    assert!(!defects_of(&t, &skel, &b).unwrap().is_empty());
    ensure_skeleton(&t, &skel).unwrap();
    assert_eq!(
        t.chains.borrow()[FORWARD],
        vec![rules::src_jump(FORWARD, "br0"), Skeleton::forward_jump()]
    );
    // The FORWARD jump lost: put back behind the source check too.
    t.chains.borrow_mut().get_mut(FORWARD).unwrap().remove(1);
    install(&t, &skel, &b).unwrap();
    assert_eq!(
        t.chains.borrow()[FORWARD],
        vec![rules::src_jump(FORWARD, "br0"), Skeleton::forward_jump()]
    );
}

#[test]
fn install_check_remove_on_a_fresh_table() {
    let t = FakeTables::new();
    let conf = FirewallConf::from_raw(&json!({"clusterPrefixes": ["fd00:f6::/64"]})).unwrap();
    let skel = Skeleton {
        network: "n",
        conf: &conf,
        bridge: Some("br0"),
    };
    let a = rules_of(&skel, "a", 0x10, "c6ab00000000001");
    let b = rules_of(&skel, "b", 0x11, "veth-b");
    install(&t, &skel, &a).unwrap();
    install(&t, &skel, &b).unwrap();
    // FORWARD: the source check of br0 first, then cni6's dispatch.
    assert_eq!(
        t.chains.borrow()[FORWARD],
        vec![rules::src_jump(FORWARD, "br0"), Skeleton::forward_jump()]
    );
    assert_eq!(
        t.chains.borrow()["INPUT"],
        vec![rules::src_jump("INPUT", "br0")]
    );
    assert!(defects_of(&t, &skel, &a).unwrap().is_empty());
    assert!(defects_of(&t, &skel, &b).unwrap().is_empty());
    assert_eq!(t.tagged(&tag("a")), 5);
    // The second ADD found the skeleton whole: one restore for its pod.
    let before = t.restores.get();
    install(&t, &skel, &rules_of(&skel, "c", 0x12, "c6ab00000000002")).unwrap();
    assert_eq!(t.restores.get() - before, 1);
    remove_attachment(&t, &tag("a"), Some(a.clone())).unwrap();
    remove_attachment(&t, &tag("b"), None).unwrap();
    assert_eq!(t.tagged(&tag("a")) + t.tagged(&tag("b")), 0);
    assert_eq!(t.tagged(&tag("c")), 5);
    assert!(!defects_of(&t, &skel, &a).unwrap().is_empty());
    // Idempotent.
    remove_attachment(&t, &tag("a"), Some(a)).unwrap();
}

/// The `-C` lead of ADD's batch: any skeleton rule ADD relies on gone
/// (FORWARD jump, admin jump, a dispatch rule, FROM-POD, a policy rule)
/// fails the pod's batch as a whole, and the full path puts it back.
#[test]
fn install_repairs_any_lost_skeleton_rule() {
    let t = FakeTables::new();
    let conf = FirewallConf::from_raw(&json!({"allowPorts": [{"port": 443}]})).unwrap();
    let skel = Skeleton {
        network: "n",
        conf: &conf,
        bridge: Some("br0"),
    };
    install(&t, &skel, &PodRules::default()).unwrap();
    let whole = t.chains.borrow().clone();
    let mut lost = skel.presence_checks();
    assert!(lost.len() >= 6, "{lost:?}");
    for (k, check) in lost.drain(..).enumerate() {
        let rule = format!("-A {}", check.strip_prefix("-C ").unwrap());
        let chain = rule.split(' ').nth(1).unwrap().to_string();
        t.chains
            .borrow_mut()
            .get_mut(&chain)
            .unwrap()
            .retain(|r| *r != rule);
        let p = rules_of(&skel, &format!("p{k}"), 0x10 + k as u16, "c6ab00000000001");
        let before = t.restores.get();
        install(&t, &skel, &p).unwrap();
        assert!(t.restores.get() - before >= 3, "{rule}: not repaired");
        // Back (a lost dispatch rule of CNI6-FORWARD comes back at the
        // end: repair() appends; CHECK then reports the order).
        assert!(t.chains.borrow()[&chain].contains(&rule), "{rule}");
        assert_eq!(t.tagged(&tag(&format!("p{k}"))), 5);
        let mut got = t.chains.borrow()[&chain].clone();
        let mut want = whole[&chain].clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{chain} after losing {rule}");
    }
}

#[test]
fn install_repairs_a_lost_bucket_and_retries() {
    let t = FakeTables::new();
    let skel = default_skel();
    install(&t, &skel, &PodRules::default()).unwrap();
    t.chains.borrow_mut().remove("CNI6-D-10");
    let a = rules_of(&skel, "a", 0x10, "c6ab00000000001");
    install(&t, &skel, &a).unwrap();
    assert!(defects_of(&t, &skel, &a).unwrap().is_empty());
}

/// A node with the flat dispatch of the previous version: the next ADD
/// converts it (groups made, dispatch chains rewritten) in the repair
/// path, the pods added before keep their rules, which CHECK and DEL
/// still find.
#[test]
fn install_converts_the_flat_layout_of_an_earlier_version() {
    let t = FakeTables::new();
    let skel = default_skel();
    let a = rules_of(&skel, "a", 0x10, "c6ab00000000001");
    install(&t, &skel, &a).unwrap();
    {
        let mut c = t.chains.borrow_mut();
        c.retain(|name, _| !name.starts_with("CNI6-PX-") && !name.starts_with("CNI6-DX-"));
        let anti: Vec<String> = (0..256)
                .map(|b| format!("-A CNI6-ANTISPOOF -m physdev --physdev-in c6{b:02x}+ -m comment --comment \"firewall6: port bucket\" -j CNI6-P-{b:02x}"))
                .chain(["-A CNI6-ANTISPOOF -m comment --comment \"firewall6: other port names\" -j CNI6-P-OTHER".to_string()])
                .collect();
        let ingress: Vec<String> = (0..256u128)
                .map(|b| format!("-A CNI6-INGRESS -d {}/::ff -m comment --comment \"firewall6: address bucket\" -j CNI6-D-{b:02x}", std::net::Ipv6Addr::from(b)))
                .collect();
        c.insert(ANTISPOOF_CHAIN.into(), anti);
        c.insert(INGRESS_CHAIN.into(), ingress);
    }
    let d = defects_of(&t, &skel, &a).unwrap();
    assert!(d.iter().any(|x| x.contains("flat layout")), "{d:?}");
    let b = rules_of(&skel, "b", 0x11, "c6ab00000000002");
    let before = t.restores.get();
    install(&t, &skel, &b).unwrap();
    assert_eq!(
        t.restores.get() - before,
        3,
        "failed fast batch, repair, pod"
    );
    assert!(defects_of(&t, &skel, &a).unwrap().is_empty());
    assert!(defects_of(&t, &skel, &b).unwrap().is_empty());
    assert_eq!(t.chains.borrow()[ANTISPOOF_CHAIN].len(), 18);
    assert_eq!(t.chains.borrow()[INGRESS_CHAIN].len(), 17);
    assert_eq!(t.tagged(&tag("a")), 5);
    remove_attachment(&t, &tag("a"), Some(a)).unwrap();
    assert_eq!(t.tagged(&tag("a")), 0);
    assert_eq!(t.tagged(&tag("b")), 5);
    // Converted: the next ADD is one restore again.
    let c = rules_of(&skel, "c", 0x12, "c6ab00000000003");
    let before = t.restores.get();
    install(&t, &skel, &c).unwrap();
    assert_eq!(t.restores.get() - before, 1);
}

#[test]
fn del_retries_when_a_batch_fails_once() {
    let t = FakeTables::new();
    let skel = default_skel();
    let a = rules_of(&skel, "a", 0x10, "c6ab00000000001");
    install(&t, &skel, &a).unwrap();
    t.fail_on("-D ", 1);
    remove_attachment(&t, &tag("a"), Some(a)).unwrap();
    assert_eq!(t.tagged(&tag("a")), 0);
}

/// conformance.md #49: GC keeps going past a failing attachment, removes the
/// others, and reports the failure (naming it) at the end.
#[test]
fn gc_keeps_going_and_reports_every_failure() {
    let t = FakeTables::new();
    let skel = default_skel();
    for (i, id) in ["a", "b", "c", "keep"].iter().enumerate() {
        let r = rules_of(&skel, id, 0x10 + i as u16, "c6ab00000000001");
        install(&t, &skel, &r).unwrap();
    }
    let other_conf = FirewallConf::from_raw(&json!({})).unwrap();
    let other = Skeleton {
        network: "m",
        conf: &other_conf,
        bridge: Some("br0"),
    };
    let m_tag = rules::tag(&Attachment::new("m", "x", "eth0").unwrap());
    install(
        &t,
        &other,
        &PodRules::of(&m_tag, &pod(0x20, "c6cd00000000001"), &other.policy_chain()),
    )
    .unwrap();
    t.fail_on(&tag("b"), u32::MAX);
    let e = collect_garbage(&t, "n", &BTreeSet::from([tag("keep")])).unwrap_err();
    let msg = cni_common::Error::from(e).to_string();
    assert!(
        msg.contains("id=b") && !msg.contains("id=a") && !msg.contains("id=c"),
        "{msg}"
    );
    assert_eq!(t.tagged(&tag("a")) + t.tagged(&tag("c")), 0);
    assert_eq!(t.tagged(&tag("b")), 5);
    assert_eq!(t.tagged(&tag("keep")), 5);
    assert_eq!(t.tagged(&m_tag), 5);
}
