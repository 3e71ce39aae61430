//! firewall6 at 1000 pods (rules only: fabricated prevResults, no veths),
//! side by side with the reference `firewall` plugin on the same
//! prevResults. One test function on purpose: CPU time is measured with
//! RUSAGE_CHILDREN, which is per process, so nothing else may run beside it.
//!
//! Run with `--nocapture` to see the numbers (`FW6-SCALE ...` lines); the
//! crate doc of firewall6 records them.

use conformance::firewall_helpers::{
    conf, documented_pod_rules, fake_gua as gua, fake_mac, fake_ula as ula, fake_veth as veth,
    firewall6, prev_result, with_pod_mac, RulesNode,
};
use conformance::harness::{self, Invocation, Output};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const NET: &str = "scale";
const PODS: u32 = 1000;
const SAMPLES: u32 = 7;

fn cid(i: u32) -> String {
    format!("scale{}x{i:05}", std::process::id())
}

fn prev(i: u32) -> Value {
    with_pod_mac(
        prev_result(
            "1.0.0",
            "cni6br0",
            &veth(i),
            "/var/run/netns/fw6-fake-pod",
            &[&format!("{}/96", ula(i)), &format!("{}/96", gua(i))],
        ),
        &fake_mac(i),
    )
}

fn fw_conf(i: u32) -> Value {
    conf("1.0.0", NET, json!({}), &prev(i))
}

fn ref_conf(i: u32) -> Value {
    json!({"cniVersion": "1.0.0", "name": NET, "type": "firewall", "backend": "iptables", "prevResult": prev(i)})
}

fn call(node: &RulesNode, bin: &Path, cmd: &str, i: u32, c: &Value) -> Output {
    Invocation::attachment(bin, cmd, &cid(i), "/var/run/netns/fw6-fake-pod", "eth0")
        .in_netns(&node.ns)
        .stdin_json(c)
        .timeout(Duration::from_secs(120))
        .run()
}

/// Median CPU and wall time of `SAMPLES` sequential calls.
fn timed(mut f: impl FnMut(u32) -> Output, first: u32) -> (Duration, Duration) {
    let mut cpu = Vec::new();
    let mut wall = Vec::new();
    for k in 0..SAMPLES {
        let c0 = harness::rusage_cpu(libc::RUSAGE_CHILDREN);
        let t0 = Instant::now();
        let out = f(first + k);
        wall.push(t0.elapsed());
        cpu.push(harness::rusage_cpu(libc::RUSAGE_CHILDREN) - c0);
        assert!(out.success(), "{}\n{}", out.stdout, out.stderr);
    }
    cpu.sort();
    wall.sort();
    (cpu[cpu.len() / 2], wall[wall.len() / 2])
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

/// Run `f(i)` for every i in `range` on `workers` threads; all must succeed.
fn parallel(
    range: std::ops::Range<u32>,
    workers: u32,
    f: impl Fn(u32) -> Output + Sync,
) -> Duration {
    let t0 = Instant::now();
    let next = std::sync::atomic::AtomicU32::new(range.start);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= range.end {
                    break;
                }
                let out = f(i);
                assert!(out.success(), "pod {i}: {}\n{}", out.stdout, out.stderr);
            });
        }
    });
    t0.elapsed()
}

/// The rules pod `i` must have (the documented layout).
fn expected_rules(i: u32, policy: &str) -> Vec<String> {
    documented_pod_rules(NET, &cid(i), &fake_mac(i), [ula(i), gua(i)], policy)
}

fn pod_lines(node: &RulesNode) -> BTreeSet<String> {
    node.rules()
        .into_iter()
        .filter(|l| {
            (l.starts_with("-A CNI6-S-") && l.contains("firewall6 net="))
                || l.starts_with("-A CNI6-P-")
                || l.starts_with("-A CNI6-D-")
        })
        .collect()
}

#[test]
fn thousand_pods_and_reference() {
    // conformance.md #81

    harness::require_root();
    let fw = firewall6();
    let node = RulesNode::new();

    // ---- firewall6: 10 pods, then timed ADDs
    parallel(0..10, 1, |i| call(&node, &fw, "ADD", i, &fw_conf(i)));
    let (add10_cpu, add10_wall) = timed(|i| call(&node, &fw, "ADD", i, &fw_conf(i)), 10);
    let (del10_cpu, del10_wall) = timed(|i| call(&node, &fw, "DEL", i, &fw_conf(i)), 10);

    // ---- up to 1000 pods (4 workers: concurrent ADDs must all succeed)
    let bulk = parallel(10..PODS, 4, |i| call(&node, &fw, "ADD", i, &fw_conf(i)));
    let (add1k_cpu, add1k_wall) = timed(|i| call(&node, &fw, "ADD", i, &fw_conf(i)), PODS);
    let (chk1k_cpu, _) = timed(|i| call(&node, &fw, "CHECK", i, &fw_conf(i)), PODS);
    let (del1k_cpu, del1k_wall) = timed(|i| call(&node, &fw, "DEL", i, &fw_conf(i)), PODS);

    // ---- exactly the expected rules
    let policy = node
        .rules()
        .into_iter()
        .find_map(|l| {
            l.strip_prefix("-N ")
                .filter(|c| c.starts_with("CNI6-POL-"))
                .map(str::to_string)
        })
        .expect("a policy chain");
    let want: BTreeSet<String> = (0..PODS).flat_map(|i| expected_rules(i, &policy)).collect();
    let have = pod_lines(&node);
    assert_eq!(have.len(), want.len());
    assert!(
        have == want,
        "ruleset differs: missing {:?}, extra {:?}",
        want.difference(&have).take(3).collect::<Vec<_>>(),
        have.difference(&want).take(3).collect::<Vec<_>>()
    );

    // ---- 32 parallel ADDs, then 16 parallel DELs with and 16 without prevResult
    let base = PODS + SAMPLES;
    let par_add = parallel(base..base + 32, 32, |i| {
        call(&node, &fw, "ADD", i, &fw_conf(i))
    });
    for i in base..base + 32 {
        assert_eq!(node.pod_rules(NET, &cid(i)).len(), 5, "pod {i}");
    }
    let par_del = parallel(base..base + 16, 16, |i| {
        call(&node, &fw, "DEL", i, &fw_conf(i))
    });
    // The rare path (runtime cache lost, conformance.md #28): DEL without
    // prevResult reads the whole table once.
    let bare = conf("1.0.0", NET, json!({}), &Value::Null);
    let par_del_bare = parallel(base + 16..base + 32, 16, |i| {
        call(&node, &fw, "DEL", i, &bare)
    });
    for i in base..base + 32 {
        assert!(node.pod_rules(NET, &cid(i)).is_empty(), "pod {i}");
    }
    let (delbare_cpu, delbare_wall) = {
        parallel(base..base + SAMPLES, 1, |i| {
            call(&node, &fw, "ADD", i, &fw_conf(i))
        });
        timed(|i| call(&node, &fw, "DEL", i, &bare), base)
    };
    assert_eq!(
        pod_lines(&node),
        want,
        "parallel ADD/DEL disturbed other pods"
    );

    // ---- DEL of all leaves only the skeleton
    let del_all = parallel(0..PODS, 4, |i| call(&node, &fw, "DEL", i, &fw_conf(i)));
    assert!(pod_lines(&node).is_empty());
    let left: Vec<String> = node
        .rules()
        .into_iter()
        .filter(|l| l.starts_with("-A "))
        .collect();
    // FORWARD jump, CNI6-FORWARD (admin, 2 link-local, 4 dispatch), the
    // bridge's CNI6-PODS and CNI6-TO-PODS rules, the dispatch chains (unbridged guard + 16
    // groups + catch-all, multicast + 16 groups), the 32 group chains (16
    // buckets each), FROM-POD (established shortcut, policy jump, accept),
    // policy (replies, cluster prefix, port 443, drop); the
    // source check: its INPUT and FORWARD jumps, CNI6-SRC (DAD, ICMPv6,
    // 16 groups), CNI6-SRC-ICMP (6 types), 16 source groups of 16 buckets,
    // and the DROP that ends each of the 256 source buckets.
    assert_eq!(
        left.len(),
        1 + 7 + 2 + 18 + 17 + 32 * 16 + 3 + 4 + 2 + 18 + 6 + 16 * 16 + 256,
        "{left:#?}"
    );

    println!(
        "FW6-SCALE firewall6 ADD cpu/wall median: 10 pods {} / {}, 1000 pods {} / {}; CHECK@1000 cpu {}; \
         DEL 10 pods {} / {}, 1000 pods {} / {}; bulk ADD 990 pods on 4 workers {:.1}s; \
         32 parallel ADDs {:.2}s, 16 parallel DELs {:.2}s, 16 parallel DELs without prevResult {:.2}s (wall, at 1000 pods); \
         DEL without prevResult at 1000 pods {} / {}; DEL of 1000 on 4 workers {:.1}s",
        ms(add10_cpu), ms(add10_wall), ms(add1k_cpu), ms(add1k_wall), ms(chk1k_cpu),
        ms(del10_cpu), ms(del10_wall), ms(del1k_cpu), ms(del1k_wall),
        bulk.as_secs_f64(), par_add.as_secs_f64(), par_del.as_secs_f64(), par_del_bare.as_secs_f64(),
        ms(delbare_cpu), ms(delbare_wall), del_all.as_secs_f64()
    );

    // ---- the reference firewall, same prevResults
    let rf = harness::reference("firewall");
    let rnode = RulesNode::new();
    parallel(0..10, 1, |i| call(&rnode, &rf, "ADD", i, &ref_conf(i)));
    let (radd10_cpu, radd10_wall) = timed(|i| call(&rnode, &rf, "ADD", i, &ref_conf(i)), 10);
    // Bring it to 1000 pods' worth of rules in one restore: exactly the
    // two rules per address the reference ADD appends (1000 real reference
    // ADDs would take minutes on two shared cores).
    let mut batch = String::from("*filter\n");
    for i in 10 + SAMPLES..PODS {
        for a in [ula(i), gua(i)] {
            batch.push_str(&format!(
                "-A CNI-FORWARD -d {a}/128 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A CNI-FORWARD -s {a}/128 -j ACCEPT\n"
            ));
        }
    }
    batch.push_str("COMMIT\n");
    rnode.restore(&batch);
    let ref_rules = rnode
        .rules()
        .iter()
        .filter(|l| l.starts_with("-A CNI-FORWARD "))
        .count();
    assert!(ref_rules >= 4 * PODS as usize - 10, "{ref_rules}");
    let (radd1k_cpu, radd1k_wall) = timed(|i| call(&rnode, &rf, "ADD", i, &ref_conf(i)), PODS);
    let (rdel1k_cpu, rdel1k_wall) = timed(|i| call(&rnode, &rf, "DEL", i, &ref_conf(i)), PODS);
    parallel(base..base + 16, 4, |i| {
        call(&rnode, &rf, "ADD", i, &ref_conf(i))
    });
    let rpar_del = parallel(base..base + 16, 16, |i| {
        call(&rnode, &rf, "DEL", i, &ref_conf(i))
    });
    println!(
        "FW6-SCALE reference firewall ADD cpu/wall median: 10 pods {} / {}, 1000 pods {} / {}; DEL 1000 pods {} / {}; 16 parallel DELs {:.2}s",
        ms(radd10_cpu), ms(radd10_wall), ms(radd1k_cpu), ms(radd1k_wall), ms(rdel1k_cpu), ms(rdel1k_wall), rpar_del.as_secs_f64()
    );

    // Per-pod work is O(1): ADD at 1000 pods stays within a small factor
    // of ADD at 10 (what remains is iptables-nft reading the table, see the
    // crate doc), and well below the reference at the same size.
    assert!(
        add1k_cpu < add10_cpu * 3,
        "ADD cpu grew from {} to {}",
        ms(add10_cpu),
        ms(add1k_cpu)
    );
    assert!(
        add1k_cpu < radd1k_cpu,
        "firewall6 {} vs reference {}",
        ms(add1k_cpu),
        ms(radd1k_cpu)
    );
}
