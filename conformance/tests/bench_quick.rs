//! The benchmark at CI size (`bench --quick`), so it cannot rot: it must
//! run both full chains (ADD, DEL, parallel bursts, the IPAM plugins
//! alone), print every section of its table and report no errors and no
//! duplicate addresses in the bursts. Timings are printed, never asserted
//! (a shared 2-core machine makes them noise at this size).

use std::process::Command;

#[test]
fn bench_quick_runs_both_chains_without_errors() {
    // conformance.md #53, 54 (the bench runs each chain as libcni does: ADD
    // with each result as the next prevResult, DEL with the ADD result)
    let bins = conformance::harness::bin_dir();
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .arg("--quick")
        .arg("--bin-dir")
        .arg(&bins)
        .output()
        .expect("run bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench --quick failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    for needle in [
        "chain ADD, 2 attached",
        "chain DEL, 4 attached",
        "  firewall ADD",
        "chain ADD x4 parallel, 4 att.",
        "ipam ADD alone",
        "# scaling: p50 at 4 attached / p50 at 2 attached",
        "# peak RSS",
        "# binary sizes",
        "# cni6 alone",
        "4/2 ",
        "# floor of one ADD",
        "# floor of one DEL",
    ] {
        assert!(stdout.contains(needle), "no {needle:?} in:\n{stdout}");
    }
    let bursts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" parallel at "))
        .collect();
    assert_eq!(bursts.len(), 4, "2 chains x 2 sizes:\n{stdout}");
    for l in bursts {
        assert!(
            l.contains(": 0 errors, 0 duplicate addresses"),
            "{l}\n{stdout}"
        );
    }
    // Every row has a cni6 and a reference line with n > 0.
    let rss: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("# peak RSS"))
        .skip(2)
        .take_while(|l| !l.starts_with('#'))
        .collect();
    assert_eq!(
        rss.len(),
        6,
        "bridge/firewall ADD/DEL and ipam alone:\n{stdout}"
    );
    for l in rss {
        assert!(!l.contains(" 0Ki"), "an RSS of 0: {l}");
    }
}
