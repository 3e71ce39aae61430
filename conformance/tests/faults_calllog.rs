//! `logFile` (cni-common's calllog, in the dispatcher): a chain run with it
//! set writes one line per plugin call — bridge6, the ipam-prefix it
//! delegates to (which receives bridge6's whole config), firewall6 — with
//! time, plugin, command, network, container id, ifname, duration and
//! outcome; stdout stays exactly the result (conformance.md #10); a log file that
//! cannot be opened changes nothing but a note on stderr.

use conformance::chain::{assert_spec_error, Chain};
use conformance::harness::{self, Netns};
use serde_json::json;

const PREFIX: &str = "c6l";

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn one_line_per_plugin_call() {
    let mut chain = Chain::new(PREFIX);
    let dir = harness::TempDir::new("c6log");
    let log = dir.join("calls.log");
    chain.extra.insert("logFile".into(), json!(log));
    let pod = Netns::new(PREFIX);
    let cid = harness::container_id("log");
    let add = chain.add(&cid, &pod.path_str());
    for o in &add {
        o.assert_ok();
    }
    let l = lines(&log);
    let plugins: Vec<&str> = l
        .iter()
        .map(|l| {
            l.split(" plugin=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    // ipam-prefix finishes (and logs) before bridge6, which waits for it.
    assert_eq!(plugins, ["ipam-prefix", "bridge6", "firewall6"], "{l:#?}");
    for line in &l {
        assert!(line.contains(" cmd=\"ADD\" "), "{line}");
        assert!(
            line.contains(&format!(" network=\"{}\" ", chain.network)),
            "{line}"
        );
        assert!(
            line.contains(&format!(" container=\"{cid}\" ifname=\"eth0\" ")),
            "{line}"
        );
        assert!(
            line.contains(" duration_ms=") && line.ends_with(" outcome=ok"),
            "{line}"
        );
        // RFC 3339 UTC time first.
        let t = line.split(' ').next().unwrap();
        assert!(
            t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
            "{t}"
        );
    }
    // An error is logged with its code and message; stdout is still the
    // one error object.
    let again = chain.add(&cid, &pod.path_str());
    let (code, msg) = assert_spec_error(&again[0]);
    let l = lines(&log);
    let last = l.last().unwrap();
    assert!(
        last.contains(" plugin=\"bridge6\" ")
            && last.contains(&format!("outcome=error code={code} msg=")),
        "{last}"
    );
    assert!(
        last.contains(&serde_json::to_string(&msg).unwrap()[..20]),
        "{last}"
    );
    for o in chain.del(&cid, &pod.path_str()) {
        assert!(o.success() && o.stdout.is_empty(), "{}", o.stdout);
    }
    let del: Vec<String> = lines(&log)
        .into_iter()
        .filter(|l| l.contains(" cmd=\"DEL\" "))
        .collect();
    assert_eq!(del.len(), 3, "firewall6, ipam-prefix, bridge6: {del:#?}");
    assert!(del.iter().all(|l| l.ends_with("outcome=ok")), "{del:#?}");
    chain.assert_clean("at the end");
}

#[test]
fn unusable_log_file_does_not_fail_the_call() {
    let mut chain = Chain::new(PREFIX);
    let dir = harness::TempDir::new("c6log");
    // A directory cannot be opened for appending.
    chain.extra.insert("logFile".into(), json!(dir.path()));
    let pod = Netns::new(PREFIX);
    let cid = harness::container_id("lgx");
    let add = chain.add(&cid, &pod.path_str());
    for o in &add {
        o.assert_ok();
        assert!(o.stderr.contains("cannot open logFile"), "{}", o.stderr);
    }
    chain.extra.insert("logFile".into(), json!("relative.log"));
    for o in chain.del(&cid, &pod.path_str()) {
        assert!(o.success(), "{}", o.stdout);
        assert!(
            o.stderr.contains("expected an absolute file path"),
            "{}",
            o.stderr
        );
    }
    chain.assert_clean("at the end");
}
