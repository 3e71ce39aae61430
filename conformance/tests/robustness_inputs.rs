//! The smaller defects of issue 15, through the built binaries:
//! - the longest valid container ids (up to 255 bytes) attach and detach
//!   through the whole chain, and DEL stays idempotent (conformance.md #4, 26);
//! - a CNI_NETNS that is a FIFO, a directory, a regular file or another
//!   kind of namespace fails at once with code 4 naming it, and DEL with
//!   it still succeeds (conformance.md #6, 27);
//! - a network config above 16 MiB on stdin is refused with code 7 before
//!   it is all read, at a small peak RSS, by every plugin (conformance.md #9);
//! - symlinks (and a FIFO) planted in dataDir and as logFile are never
//!   followed: the file outside stays untouched, the call fails clearly or
//!   goes on.

use conformance::chain::Chain;
use conformance::harness::{self, Invocation, Netns, TempDir};
use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PREFIX: &str = "c6r";

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only reads it.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn longest_container_ids_attach_and_detach() {
    // 250 + "@eth0" is the longest plain record name; 251 and up did not
    // fit NAME_MAX before issue 15 (ADD and every DEL failed).
    let chain = Chain::new(PREFIX);
    for len in [250, 251, 255] {
        let pod = Netns::new(PREFIX);
        let base = harness::container_id("long");
        let cid = format!("{base}{}", "x".repeat(len - base.len()));
        assert_eq!(cid.len(), len);
        for o in chain.add(&cid, &pod.path_str()) {
            o.assert_ok();
        }
        let eth0 = pod.exec_ok(&["ip", "-j", "-6", "addr", "show", "dev", "eth0"]);
        assert!(
            eth0.contains("fd00:8a:"),
            "{len}: pod address missing: {eth0}"
        );
        let records = chain.records();
        assert_eq!(records.len(), 1, "{records:?}");
        assert!(records[0].len() <= 255 && records[0].ends_with("@eth0"));
        assert_eq!(chain.host_veths().len(), 1);
        assert!(!chain.pod_rules().is_empty(), "{len}: no pod rules");
        // A second ADD of the same attachment is refused, the first kept.
        assert!(!chain.add(&cid, &pod.path_str())[0].success());
        assert_eq!(chain.records().len(), 1);
        for round in 0..2 {
            for o in chain.del(&cid, &pod.path_str()) {
                o.assert_silent_ok();
            }
            chain.assert_clean(&format!("{len}-byte id, DEL #{}", round + 1));
        }
    }
    // DEL of a 255-byte id never added: success, nothing created.
    for o in chain.del(&"z".repeat(255), "") {
        o.assert_silent_ok();
    }
    chain.assert_clean("DEL of an unknown 255-byte id");
}

#[test]
fn netns_that_is_not_a_network_namespace_fails_fast() {
    let chain = Chain::new(PREFIX);
    let dir = TempDir::new("c6rns");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let file = dir.join("file");
    std::fs::write(&file, b"").unwrap();
    let sub = dir.join("dir");
    std::fs::create_dir(&sub).unwrap();
    let cases = [
        (fifo.display().to_string(), "a FIFO"),
        (sub.display().to_string(), "a directory"),
        (file.display().to_string(), "a regular file"),
        ("/proc/self/ns/mnt".to_string(), "another type"),
    ];
    for (netns, found) in cases {
        let cid = harness::container_id("badns");
        let started = Instant::now();
        let out = chain
            .call("bridge6", "ADD", &cid, &netns, &chain.bridge_conf("1.0.0"))
            .timeout(Duration::from_secs(30))
            .run();
        let took = started.elapsed();
        out.assert_error(4);
        let msg = out.msg();
        assert!(
            msg.contains("CNI_NETNS") && msg.contains(&netns) && msg.contains(found),
            "{netns}: {msg}"
        );
        // Before issue 15 the FIFO blocked open() until the timeout.
        assert!(took < Duration::from_secs(10), "{netns}: took {took:?}");
        chain.assert_clean(&format!("ADD with CNI_NETNS={netns}"));
        // DEL never needs the netns (conformance.md #27): still success.
        for o in chain.del(&cid, &netns) {
            o.assert_silent_ok();
        }
    }
}

/// Peak RSS (KiB) and output of one plugin call fed `stdin`, measured by
/// GNU time (wait4 of a directly spawned child can count our own memory).
fn call_with_rss(plugin: &str, verb: &str, stdin: Vec<u8>) -> (u64, serde_json::Value, Duration) {
    let dir = TempDir::new("c6rrss");
    let rss = dir.join("rss");
    let mut child = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(&rss)
        .arg(harness::plugin(plugin))
        .env_clear()
        .env("CNI_COMMAND", verb)
        .env("CNI_CONTAINERID", "big")
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", harness::bin_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn /usr/bin/time (Debian package time, scripts/install-deps.sh)");
    let started = Instant::now();
    let mut si = child.stdin.take().unwrap();
    // EPIPE once the plugin exits without reading the rest: expected.
    let writer = std::thread::spawn(move || {
        let _ = si.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    writer.join().unwrap();
    let kib: u64 = std::fs::read_to_string(&rss)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let v = harness::parse_one_json(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|| panic!("{plugin}: stdout is not one JSON value: {out:?}"));
    (kib, v, took)
}

/// A config of exactly `len` bytes: valid JSON padded with one string.
fn padded_config(len: usize) -> Vec<u8> {
    let head = br#"{"cniVersion":"1.0.0","name":"big","pad":""#;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(head);
    v.resize(len - 2, b'x');
    v.extend_from_slice(b"\"}");
    v
}

#[test]
fn config_above_16_mib_is_refused_before_it_is_read() {
    const LIMIT: usize = 16 << 20;
    for plugin in ["ipam-prefix", "bridge6", "firewall6"] {
        // The control: a config of exactly the limit is read and answered.
        let (_, v, _) = call_with_rss(plugin, "VERSION", padded_config(LIMIT));
        assert_eq!(v["cniVersion"], "1.0.0", "{plugin}: {v}");
        // The size from the issue: 200 MiB once peaked at 600 MiB RSS.
        let (kib, v, took) = call_with_rss(plugin, "ADD", padded_config(200 << 20));
        assert_eq!(v["code"], 7, "{plugin}: {v}");
        let msg = v["msg"].as_str().unwrap();
        assert!(
            msg.contains("more than 16777216 bytes") && msg.contains("16 MiB"),
            "{plugin}: {msg}"
        );
        // 16 MiB of buffer plus the binary; far below 200 MiB.
        assert!(kib < 48 * 1024, "{plugin}: peak RSS {kib} KiB");
        assert!(took < Duration::from_secs(20), "{plugin}: took {took:?}");
        eprintln!("{plugin}: 200 MiB stdin refused in {took:?}, peak RSS {kib} KiB");
    }
}

#[test]
fn planted_symlinks_are_never_followed() {
    let mut chain = Chain::new(PREFIX);
    let pod = Netns::new(PREFIX);
    let cid = harness::container_id("link");
    let outside_dir = TempDir::new("c6rout");
    let outside = outside_dir.join("precious");
    std::fs::write(&outside, "precious").unwrap();
    let intact = |when: &str| {
        assert_eq!(
            std::fs::read_to_string(&outside).unwrap(),
            "precious",
            "{when}: the file outside changed"
        );
        assert_eq!(
            std::fs::read_dir(outside_dir.path()).unwrap().count(),
            1,
            "{when}"
        );
    };
    // The store exists after one attachment.
    for o in chain.add(&cid, &pod.path_str()) {
        o.assert_ok();
    }
    for o in chain.del(&cid, &pod.path_str()) {
        o.assert_silent_ok();
    }
    let store = chain.store_dir();

    // The lock: a symlink (to a file, or dangling) or a FIFO fails ADD
    // clearly (code 5 from IPAM) and creates nothing.
    let lock = store.join("lock");
    for what in ["symlink", "dangling symlink", "FIFO"] {
        std::fs::remove_file(&lock).unwrap();
        match what {
            "symlink" => std::os::unix::fs::symlink(&outside, &lock).unwrap(),
            "dangling symlink" => {
                std::os::unix::fs::symlink(outside_dir.join("created"), &lock).unwrap()
            }
            _ => mkfifo(&lock),
        }
        let started = Instant::now();
        let out = &chain.add(&cid, &pod.path_str())[0];
        out.assert_error(5);
        assert!(out.msg().contains("lock"), "lock as {what}: {}", out.msg());
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "lock as {what}"
        );
        intact(&format!("lock as {what}"));
        chain.assert_clean(&format!("lock as {what}"));
    }
    std::fs::remove_file(&lock).unwrap();

    // The store's own directory replaced by a symlink: refused, nothing
    // written where it points.
    let elsewhere = TempDir::new("c6relse");
    let slots = store.join("slots");
    std::fs::remove_dir(&slots).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), &slots).unwrap();
    let out = &chain.add(&cid, &pod.path_str())[0];
    out.assert_error(5);
    assert!(
        out.msg().contains("slots") && out.msg().contains("symlink"),
        "{}",
        out.msg()
    );
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    std::fs::remove_file(&slots).unwrap();
    chain.assert_clean("slots as a symlink");

    // logFile as a symlink to the file outside: the calls go on, the file
    // is not appended to, stderr says why.
    let logs = TempDir::new("c6rlog");
    let log = logs.join("calls.log");
    std::os::unix::fs::symlink(&outside, &log).unwrap();
    chain.extra.insert("logFile".into(), json!(log));
    let add = chain.add(&cid, &pod.path_str());
    for o in &add {
        o.assert_ok();
        assert!(o.stderr.contains("symlink"), "no note: {}", o.stderr);
    }
    intact("logFile as a symlink");
    for o in chain.del(&cid, &pod.path_str()) {
        o.assert_silent_ok();
    }
    chain.assert_clean("after the logFile run");
    intact("the end");
    // The control: a real logFile is written (the note above is not noise).
    let real = logs.join("real.log");
    chain.extra.insert("logFile".into(), json!(real));
    let out = Invocation::new(chain.bin("firewall6"), "VERSION")
        .stdin_json(&chain.firewall_conf("1.0.0", &serde_json::Value::Null))
        .run();
    out.assert_ok();
    assert_eq!(std::fs::read_to_string(&real).unwrap().lines().count(), 1);
}
