//! The fuzz targets' bodies (fuzz/src/lib.rs, the very file libFuzzer
//! runs) in the normal test suite: over every input kept in
//! `testdata/fuzz-regressions/<target>/` and over the seeds the fuzzers
//! start from (testdata's conflists and bad-input corpus, results of every
//! version). A panic — a crash that came back, or a broken property such
//! as a result round trip — fails the test naming the input.

#[path = "../../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod targets;

use serde_json::{json, Value};

fn run(target: &str, f: fn(&[u8]), name: &str, data: &[u8]) -> Option<String> {
    match std::panic::catch_unwind(|| f(data)) {
        Ok(()) => None,
        Err(e) => {
            let why = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            Some(format!("{target} on {name}: {why}"))
        }
    }
}

/// store_record's scratch store of this thread (named as fuzz/src/lib.rs
/// names it; other tests' threads keep theirs).
fn remove_scratch_stores() {
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join(format!(
        "cni6-fuzz-store-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    )));
}

fn files(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| {
            (
                e.path().display().to_string(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Every regression input of every target.
#[test]
fn kept_crash_inputs_do_not_crash() {
    let root = testdata::dir().join("fuzz-regressions");
    let mut failures = Vec::new();
    let mut n = 0;
    for (target, f) in targets::TARGETS {
        for (name, data) in files(&root.join(target)) {
            n += 1;
            failures.extend(run(target, *f, &name, &data));
        }
    }
    // Directories must be named after targets, or their inputs never run.
    for e in std::fs::read_dir(&root).unwrap().flatten() {
        if e.path().is_dir() {
            let d = e.file_name().to_string_lossy().into_owned();
            assert!(
                targets::TARGETS.iter().any(|(t, _)| *t == d),
                "testdata/fuzz-regressions/{d} is not a fuzz target"
            );
        }
    }
    eprintln!("{n} regression input(s)");
    remove_scratch_stores();
    assert!(failures.is_empty(), "{failures:#?}");
}

/// The seeds: what scripts/fuzz-seed.py gives the fuzzers, from testdata.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = files(&testdata::conflists_dir());
    for (name, bytes) in files(&testdata::conflists_dir()) {
        let list: Value = serde_json::from_slice(&bytes).unwrap();
        for (i, p) in list["plugins"].as_array().into_iter().flatten().enumerate() {
            let mut c = p.clone();
            c["cniVersion"] = list["cniVersion"].clone();
            c["name"] = list["name"].clone();
            out.push((
                format!("{name} plugin {i}"),
                serde_json::to_vec(&c).unwrap(),
            ));
        }
    }
    for (name, bytes) in files(&testdata::bad_input_dir()) {
        let case: Value = serde_json::from_slice(&bytes).unwrap();
        let stdin = if let Some(v) = case.get("stdinJson") {
            serde_json::to_vec(v).unwrap()
        } else if let Some(s) = case["stdin"].as_str() {
            s.as_bytes().to_vec()
        } else {
            continue;
        };
        out.push((name, stdin));
    }
    out
}

fn results() -> Vec<(String, Vec<u8>)> {
    ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
        .iter()
        .map(|v| {
            let old = v.starts_with("0.");
            let mut ip = json!({"address": "fd00:8a::1:1:0:10/96", "gateway": "fd00:8a::1:1:0:1", "interface": 2});
            if old {
                ip["version"] = json!("6");
            }
            let r = json!({
                "cniVersion": v,
                "interfaces": [
                    {"name": "cluster0", "mac": "02:00:00:00:00:01"},
                    {"name": "c6abc", "mac": "02:00:00:00:00:02"},
                    {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": "/var/run/netns/x", "mtu": 1420}
                ],
                "ips": [ip],
                "routes": [{"dst": "::/0", "gw": "fd00:8a::1:1:0:1"}],
                "dns": {"nameservers": ["fd00::53"], "search": ["svc.cluster.local"]}
            });
            (format!("result {v}"), serde_json::to_vec(&r).unwrap())
        })
        .collect()
}

/// Every parser target over every seed; the dispatcher with each verb.
#[test]
fn seeds_pass_every_target() {
    let seeds = seeds();
    assert!(seeds.len() > 100, "testdata seeds: {}", seeds.len());
    let mut failures = Vec::new();
    for (target, f) in targets::TARGETS {
        let mut inputs: Vec<(String, Vec<u8>)> = seeds.clone();
        inputs.extend(results());
        if *target == "dispatch" {
            inputs = Vec::new();
            for cmd in ["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"] {
                for (name, stdin) in &seeds {
                    let mut d = format!("c1\0/var/run/netns/x\0eth0\0\x01\0/opt/cni/bin\0{cmd}\0")
                        .into_bytes();
                    d.extend_from_slice(stdin);
                    inputs.push((format!("{cmd} {name}"), d));
                }
            }
        }
        for (name, data) in inputs {
            failures.extend(run(target, *f, &name, &data));
        }
    }
    remove_scratch_stores();
    assert!(failures.is_empty(), "{failures:#?}");
}
