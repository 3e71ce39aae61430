//! The data-path benchmark at CI size (`bench --datapath --size tiny
//! --profile`), so it cannot rot: both chains attach their pods, every
//! path carries traffic, the table has every row with positive figures,
//! every ratio and the perf profile of the pod paths. The figures
//! themselves are not asserted (a shared 2-core machine and a few MB per
//! run make them noise).

use std::process::Command;

const PATHS: [&str; 6] = [
    "pod->pod same node",
    "pod->pod across nodes",
    "node->node (fabric)",
    "veth pair (floor)",
    "pod->outside",
    "node->outside",
];

/// The numbers after `label` on a line that starts with it.
fn figures(line: &str, label: &str) -> Vec<f64> {
    line[label.len()..]
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

#[test]
fn bench_datapath_tiny_prints_a_complete_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench"))
        .args(["--datapath", "--size", "tiny", "--profile", "--bin-dir"])
        .arg(conformance::harness::bin_dir())
        .output()
        .expect("run bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench --datapath failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let machine = stdout
        .lines()
        .find(|l| l.starts_with("# machine: "))
        .unwrap_or_else(|| panic!("no machine line:\n{stdout}"));
    assert!(
        machine.contains(" cores, kernel ") && !machine.contains(" cores, kernel ,"),
        "{machine}"
    );
    // Kernel major.minor only: no release suffix that could name a build host.
    let kernel = machine
        .split("kernel ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap();
    assert!(
        kernel.split('.').count() == 2 && kernel.chars().all(|c| c.is_ascii_digit() || c == '.'),
        "{machine}"
    );

    for path in PATHS {
        for chain in ["cni6", "reference"] {
            let label = format!("{path:<22} {chain:<9}");
            let line = stdout
                .lines()
                .find(|l| l.starts_with(&label))
                .unwrap_or_else(|| panic!("no row {label:?}:\n{stdout}"));
            let v = figures(line, &label);
            // 1x and 8x Gbit/s, RR p50 and p99, CPU s/GB for 1x and 8x, Gcycles/GB.
            assert_eq!(v.len(), 7, "{line}");
            assert!(v.iter().all(|x| *x > 0.0), "a figure <= 0: {line}");
            assert!(v[3] >= v[2], "p99 below p50: {line}");
        }
    }
    for ratio in [
        "pod->pod across nodes / node->node (fabric)",
        "pod->pod same node / veth pair (floor)",
        "pod->outside / node->outside",
    ] {
        let rows: Vec<&str> = stdout.lines().filter(|l| l.starts_with(ratio)).collect();
        // A throughput row and, for the first two, a latency row: cni6's
        // two ratios and the reference's two, the target, the verdict.
        assert!(!rows.is_empty(), "no ratio {ratio:?}:\n{stdout}");
        for line in rows {
            let v = figures(line, ratio);
            assert!(v.len() >= 4, "{line}");
            assert!(v[..4].iter().all(|x| *x > 0.0), "{line}");
            assert!(
                line.ends_with("met") || line.ends_with("missed") || line.ends_with('-'),
                "{line}"
            );
        }
    }
    for path in PATHS {
        let line = stdout
            .lines()
            .skip_while(|l| !l.starts_with("# cni6 / reference"))
            .find(|l| l.starts_with(path))
            .unwrap_or_else(|| panic!("no cni6/reference row for {path}:\n{stdout}"));
        let v = figures(line, path);
        assert_eq!(v.len(), 5, "{line}");
        assert!(v.iter().all(|x| *x > 0.0), "{line}");
    }
    // The profile: every profiled path in both chains, samples > 0 and
    // areas that add up to the CPU per GB (each area >= 0).
    let profile: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("# profile"))
        .skip(2)
        .collect();
    assert_eq!(profile.len(), 8, "4 paths x 2 chains:\n{stdout}");
    for line in profile {
        let v: Vec<f64> = line
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        assert_eq!(v.len(), 12, "samples and 11 areas: {line}");
        assert!(v[0] > 0.0, "no samples: {line}");
        assert!(v[1..].iter().all(|x| *x >= 0.0), "{line}");
        assert!(v[1..].iter().sum::<f64>() > 0.0, "{line}");
    }
}
