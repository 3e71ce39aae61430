//! ipam-prefix against the bad-input corpus (testdata/bad-input/): every
//! malformed or hostile input gets the expected error code with a message,
//! never a panic, and changes NOTHING on disk (docs/design.md: "Bad input never
//! panics, never leaves a half-made … allocation").

use conformance::corpus::{Bindings, Case};
use conformance::harness::*;
use conformance::ipam::*;

#[test]
fn every_bad_input_is_refused_cleanly() {
    // conformance.md #2–5, 7, 9, 10, 13, 16, 31, 45, 51, 65, 67–70, 73, 74
    let cases = Case::load_dir(&testdata::bad_input_dir());
    assert!(cases.len() >= 40, "corpus too small: {}", cases.len());
    let net = demo_net();
    let pod = Netns::new(NETNS_PREFIX);
    // A store that already holds an attachment: "unchanged" means something.
    let holder = container_id("holder");
    net.call("ADD", "1.0.0", &holder, &pod.path_str(), "eth0")
        .run()
        .assert_ok();
    let b = Bindings {
        data_dir: net.data_dir().display().to_string(),
        network: net.name.clone(),
        netns: pod.path_str(),
    };
    let before = snapshot(net.data_dir());
    let mut failures = Vec::new();
    for case in &cases {
        let base = net.call(
            "ADD",
            "1.0.0",
            &container_id("bad"),
            &pod.path_str(),
            "eth0",
        );
        let inv = case.apply(base, &b);
        let out = inv.run();
        let verdict = std::panic::catch_unwind(|| {
            out.assert_error(case.expect_code);
            if let Some(needle) = &case.msg_contains {
                assert!(out.msg().contains(needle.as_str()), "msg lacks {needle:?}");
            }
        });
        if verdict.is_err() {
            failures.push(format!(
                "{} ({}): expected code {} with msg containing {:?}, got exit {:?} stdout {:?} stderr {:?}",
                case.name(),
                case.note,
                case.expect_code,
                case.msg_contains,
                out.code,
                out.stdout.chars().take(400).collect::<String>(),
                out.stderr.chars().take(400).collect::<String>(),
            ));
        }
        let after = snapshot(net.data_dir());
        if after != before {
            let changed: Vec<_> = before
                .keys()
                .chain(after.keys())
                .filter(|k| before.get(*k) != after.get(*k))
                .collect();
            failures.push(format!(
                "{} ({}): changed the data dir: {changed:?}",
                case.name(),
                case.note
            ));
            break; // later comparisons would all fail against the old snapshot
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    eprintln!("{} bad inputs refused cleanly", cases.len());
}

#[test]
fn error_messages_stay_short() {
    // conformance.md #68: `msg` is the short form; runtimes log it as is.
    let cases = Case::load_dir(&testdata::bad_input_dir());
    let net = demo_net();
    let pod = Netns::new(NETNS_PREFIX);
    let b = Bindings {
        data_dir: net.data_dir().display().to_string(),
        network: net.name.clone(),
        netns: pod.path_str(),
    };
    let mut long = Vec::new();
    for case in &cases {
        let base = net.call(
            "ADD",
            "1.0.0",
            &container_id("bad"),
            &pod.path_str(),
            "eth0",
        );
        let out = case.apply(base, &b).run();
        out.assert_failed();
        if out.msg().len() > 4096 {
            long.push(format!("{}: msg of {} bytes", case.name(), out.msg().len()));
        }
    }
    assert!(long.is_empty(), "{}", long.join("\n"));
}
