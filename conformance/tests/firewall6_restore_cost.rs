//! Why firewall6 puts per-pod rules in bucket chains: the cost of one
//! `ip6tables-restore -w --noflush` that appends a pod's 5 rules, and of
//! one that deletes them, with 0 and with 1000 pods present, for
//!
//! - `flat`: all per-pod rules in two chains (what a naive design does),
//! - `buckets`: firewall6's layout (256 port + 256 address buckets).
//!
//! Rules only (no plugin), in a namespace of the test's own. One test on
//! purpose: CPU is measured with RUSAGE_CHILDREN (per process). Run with
//! `--nocapture` for the `FW6-RESTORE` line; firewall6's crate doc records
//! the numbers.

use conformance::firewall_helpers::RulesNode;
use conformance::harness;
use std::process::Command;
use std::time::Duration;

const SAMPLES: usize = 7;

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Flat,
    Buckets,
}

fn skeleton(layout: Layout) -> String {
    let mut b =
        String::from("*filter\n:T6-FROM - [0:0]\n:T6-POL - [0:0]\n:T6-A - [0:0]\n:T6-I - [0:0]\n");
    if layout == Layout::Buckets {
        for k in 0..256 {
            b.push_str(&format!(":T6-P-{k:02x} - [0:0]\n:T6-D-{k:02x} - [0:0]\n"));
        }
        for k in 0..256 {
            b.push_str(&format!(
                "-A T6-A -m physdev --physdev-in c6{k:02x}+ -j T6-P-{k:02x}\n"
            ));
            b.push_str(&format!(
                "-A T6-I -d {}/::ff -j T6-D-{k:02x}\n",
                std::net::Ipv6Addr::from(k as u128)
            ));
        }
    }
    b.push_str("-A T6-FROM -j ACCEPT\n-A T6-POL -j DROP\nCOMMIT\n");
    b
}

/// The 5 rules of pod `i` (`op` = `-A` or `-D`).
fn pod(layout: Layout, i: u32, op: &str) -> String {
    let c = format!("-m comment --comment \"firewall6 net=n if=eth0 id=c{i}\"");
    let (ula, gua) = (
        format!("fd00:f6::1:1:{:x}:{:x}", i >> 16, i & 0xffff),
        format!("2001:db8:7:1:0:1:{:x}:{:x}", i >> 16, i & 0xffff),
    );
    let port = format!("c6{:02x}{:011x}", (i.wrapping_mul(0x9e37) >> 3) & 0xff, i);
    let (pchain, dchain) = match layout {
        Layout::Flat => ("T6-A".to_string(), "T6-I".to_string()),
        Layout::Buckets => (
            format!("T6-P-{}", &port[2..4]),
            format!("T6-D-{:02x}", i & 0xff),
        ),
    };
    let mut s = String::new();
    for a in [&ula, &gua] {
        s.push_str(&format!(
            "{op} {pchain} -s {a}/128 -m physdev --physdev-in {port} {c} -g T6-FROM\n"
        ));
    }
    s.push_str(&format!(
        "{op} {pchain} -m physdev --physdev-in {port} {c} -j DROP\n"
    ));
    for a in [&ula, &gua] {
        s.push_str(&format!("{op} {dchain} -d {a}/128 {c} -j T6-POL\n"));
    }
    s
}

fn batch(body: &str) -> String {
    format!("*filter\n{body}COMMIT\n")
}

/// Median CPU of appending, then of deleting, one pod with `present` pods
/// already there.
fn measure(layout: Layout, present: u32) -> (Duration, Duration) {
    let node = RulesNode::new();
    node.restore(&skeleton(layout));
    if present > 0 {
        let body: String = (0..present)
            .map(|i| pod(layout, 100_000 + i, "-A"))
            .collect();
        node.restore(&batch(&body));
    }
    let (mut add, mut del) = (Vec::new(), Vec::new());
    for k in 0..SAMPLES as u32 {
        let c0 = harness::rusage_cpu(libc::RUSAGE_CHILDREN);
        node.restore(&batch(&pod(layout, k, "-A")));
        let c1 = harness::rusage_cpu(libc::RUSAGE_CHILDREN);
        node.restore(&batch(&pod(layout, k, "-D")));
        let c2 = harness::rusage_cpu(libc::RUSAGE_CHILDREN);
        add.push(c1 - c0);
        del.push(c2 - c1);
    }
    add.sort();
    del.sort();
    (add[SAMPLES / 2], del[SAMPLES / 2])
}

fn ms(d: Duration) -> String {
    format!("{:.1}ms", d.as_secs_f64() * 1000.0)
}

#[test]
fn restore_cost_flat_vs_buckets() {
    conformance::harness::require_root();
    let version = Command::new("ip6tables").arg("-V").output().unwrap();
    let (f0a, f0d) = measure(Layout::Flat, 0);
    let (f1a, f1d) = measure(Layout::Flat, 1000);
    let (b0a, b0d) = measure(Layout::Buckets, 0);
    let (b1a, b1d) = measure(Layout::Buckets, 1000);
    println!(
        "FW6-RESTORE {} one pod, 0 → 1000 pods present: flat append {} → {}, delete {} → {}; \
         buckets append {} → {}, delete {} → {}",
        String::from_utf8_lossy(&version.stdout).trim(),
        ms(f0a),
        ms(f1a),
        ms(f0d),
        ms(f1d),
        ms(b0a),
        ms(b1a),
        ms(b0d),
        ms(b1d)
    );
    // The point of the buckets: deleting a pod does not read 1000 pods.
    assert!(b1d < f1d, "buckets {} vs flat {}", ms(b1d), ms(f1d));
}
