//! The per-call log (`logFile`): one line per plugin invocation, so an
//! operator can see what the runtime asked and what each plugin answered
//! without strace.
//!
//! Why here: every call of every plugin passes through the dispatcher, so
//! one implementation serves bridge6, ipam-prefix and firewall6 alike (an
//! IPAM plugin receives its parent's whole config, so one `logFile` key on
//! bridge6's object logs both).
//!
//! Rules:
//! - never stdout (it carries exactly one JSON document, conformance.md #10);
//! - one `write()` on an `O_APPEND` descriptor per line, so lines of
//!   concurrent calls never interleave (the kernel serialises the offset
//!   update and the copy of one append);
//! - logging never fails a call: a `logFile` that is not an absolute path
//!   or cannot be opened or written gets a note on stderr, nothing more.
//!
//! Line format (fields `key=value`, strings JSON-quoted so a hostile
//! container id or message cannot break the line):
//! `2026-11-21T13:00:01.123Z plugin=bridge6 cmd=ADD network="cluster"
//! container="abc" ifname="eth0" duration_ms=12.345 outcome=ok`, or
//! `… outcome=error code=7 msg="…"`.

use crate::dispatch::Outcome;
use serde_json::Value;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// The config key (on the plugin's own object).
pub const KEY: &str = "logFile";

/// Longest error message kept in a line: a line stays one small write.
const MAX_MSG: usize = 1024;

/// `logFile` from the raw stdin, when set. `Err` is a note for stderr: the
/// key is present but unusable (not a string, not absolute).
pub fn configured(stdin: &[u8]) -> Result<Option<PathBuf>, String> {
    configured_in(serde_json::from_slice::<Value>(stdin).ok().as_ref())
}

/// [`configured`] on the config the dispatcher already decoded.
pub fn configured_in(doc: Option<&Value>) -> Result<Option<PathBuf>, String> {
    let Some(v) = doc else {
        return Ok(None);
    };
    match v.get(KEY) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.starts_with('/') => Ok(Some(PathBuf::from(s))),
        Some(other) => Err(format!(
            "{KEY}={other} ignored: expected an absolute file path (a plugin's working directory is the runtime's)"
        )),
    }
}

/// What one line says about a call.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub time: SystemTime,
    pub plugin: &'a str,
    pub command: &'a str,
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
    pub duration: Duration,
    pub outcome: &'a Outcome,
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

impl Entry<'_> {
    /// The line, newline included.
    pub fn line(&self) -> String {
        let mut l = format!(
            "{} plugin={} cmd={} network={} container={} ifname={} duration_ms={:.3} ",
            humantime::format_rfc3339_millis(self.time),
            quoted(self.plugin),
            quoted(self.command),
            quoted(self.network),
            quoted(self.container_id),
            quoted(self.ifname),
            self.duration.as_secs_f64() * 1000.0,
        );
        if self.outcome.exit_code == 0 {
            l.push_str("outcome=ok");
        } else {
            let out = self.outcome.stdout.as_ref();
            let code = out
                .and_then(|v| v.get("code"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            let mut msg = out
                .and_then(|v| v.get("msg"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if msg.len() > MAX_MSG {
                let mut cut = MAX_MSG;
                while !msg.is_char_boundary(cut) {
                    cut -= 1;
                }
                msg.truncate(cut);
                msg.push('…');
            }
            l.push_str(&format!("outcome=error code={code} msg={}", quoted(&msg)));
        }
        l.push('\n');
        l
    }
}

/// Append one line to `path` with a single `write()`. Errors are returned
/// as text for the caller's stderr note.
///
/// Only a regular file is written: O_NOFOLLOW, because a symlink planted
/// under the log's name would have a root plugin append to (or create) any
/// file it points at; O_NONBLOCK, because a FIFO there would block the
/// call (open for writing waits for a reader).
pub fn append(path: &std::path::Path, line: &str) -> Result<(), String> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => format!(
                "cannot open {KEY} {}: it is a symlink, which is not followed (give {KEY} the real path)",
                path.display()
            ),
            _ => format!("cannot open {KEY} {}: {e}", path.display()),
        })?;
    match f.metadata() {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(format!(
                "{KEY} {} is not a regular file: nothing written",
                path.display()
            ))
        }
        Err(e) => return Err(format!("cannot stat {KEY} {}: {e}", path.display())),
    }
    match f.write(line.as_bytes()) {
        Ok(n) if n == line.len() => Ok(()),
        Ok(n) => Err(format!(
            "short write to {KEY} {} ({n} of {} bytes)",
            path.display(),
            line.len()
        )),
        Err(e) => Err(format!("cannot write {KEY} {}: {e}", path.display())),
    }
}

/// The part of the config [`record`] reads (`logFile` and `name`), taken
/// before the dispatcher hands the decoded document on; `None` when the
/// config has no `logFile` (the usual case: nothing is copied).
pub fn wanted(doc: Option<&Value>) -> Option<Value> {
    let v = doc?;
    let file = v.get(KEY)?;
    let mut m = serde_json::Map::new();
    m.insert(KEY.into(), file.clone());
    if let Some(n) = v.get("name") {
        m.insert("name".into(), n.clone());
    }
    Some(Value::Object(m))
}

/// Log one finished call when the config asks for it; notes go to stderr.
/// `plugin` is the binary's name, `get_env` reads the call's environment.
pub fn record(
    plugin: &str,
    command: Option<&str>,
    doc: Option<&Value>,
    get_env: impl Fn(&str) -> Option<String>,
    started: SystemTime,
    duration: Duration,
    outcome: &Outcome,
) {
    let path = match configured_in(doc) {
        Ok(Some(p)) => p,
        Ok(None) => return,
        Err(note) => {
            eprintln!("{plugin}: {note}");
            return;
        }
    };
    let network = doc
        .and_then(|v| v.get("name").and_then(Value::as_str))
        .unwrap_or_default()
        .to_string();
    let container_id = get_env("CNI_CONTAINERID").unwrap_or_default();
    let ifname = get_env("CNI_IFNAME").unwrap_or_default();
    let entry = Entry {
        time: started,
        plugin,
        command: command.unwrap_or(""),
        network: &network,
        container_id: &container_id,
        ifname: &ifname,
        duration,
        outcome,
    };
    if let Err(note) = append(&path, &entry.line()) {
        eprintln!("{plugin}: {note} (the call itself is not affected)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::env_of as env;
    use serde_json::json;

    fn parsed(stdin: &str) -> Option<Value> {
        serde_json::from_str(stdin).ok()
    }

    #[test]
    fn wanted_keeps_only_what_a_line_needs() {
        assert_eq!(wanted(None), None);
        assert_eq!(
            wanted(parsed(r#"{"name":"n","prevResult":{}}"#).as_ref()),
            None
        );
        let w = wanted(parsed(r#"{"name":"n","logFile":3,"prevResult":{}}"#).as_ref()).unwrap();
        assert_eq!(w, json!({"name": "n", "logFile": 3}));
        // An unusable value still reaches record(), which notes it on stderr.
        assert!(configured_in(Some(&w)).is_err());
    }

    fn ok() -> Outcome {
        Outcome {
            stdout: Some(json!({"cniVersion": "1.0.0"})),
            stderr: None,
            exit_code: 0,
        }
    }

    #[test]
    fn configured_key() {
        assert_eq!(configured(b"{}"), Ok(None));
        assert_eq!(configured(b"not json"), Ok(None));
        assert_eq!(configured(br#"{"logFile":""}"#), Ok(None));
        assert_eq!(
            configured(br#"{"logFile":"/var/log/cni6.log"}"#),
            Ok(Some(PathBuf::from("/var/log/cni6.log")))
        );
        let e = configured(br#"{"logFile":"rel.log"}"#).unwrap_err();
        assert!(
            e.contains("logFile=\"rel.log\"") && e.contains("absolute"),
            "{e}"
        );
        assert!(configured(br#"{"logFile":3}"#).is_err());
    }

    #[test]
    fn one_line_per_call_with_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls.log");
        let stdin = json!({"cniVersion": "1.0.0", "name": "net1", "logFile": log}).to_string();
        let e = env(&[("CNI_CONTAINERID", "c1"), ("CNI_IFNAME", "eth0")]);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        record(
            "p",
            Some("ADD"),
            parsed(&stdin).as_ref(),
            &e,
            t0,
            Duration::from_micros(1500),
            &ok(),
        );
        let fail = Outcome {
            stdout: Some(json!({"cniVersion": "1.0.0", "code": 7, "msg": "bad\nkey \"x\""})),
            stderr: None,
            exit_code: 1,
        };
        record(
            "p",
            Some("DEL"),
            parsed(&stdin).as_ref(),
            &e,
            t0,
            Duration::ZERO,
            &fail,
        );
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(
            lines[0],
            "2023-11-14T22:13:20.123Z plugin=\"p\" cmd=\"ADD\" network=\"net1\" container=\"c1\" ifname=\"eth0\" duration_ms=1.500 outcome=ok"
        );
        assert!(
            lines[1].ends_with("outcome=error code=7 msg=\"bad\\nkey \\\"x\\\"\""),
            "{}",
            lines[1]
        );
    }

    /// A symlink or FIFO planted as the log: the file the link points at
    /// stays untouched, nothing blocks, and the note says why (issue 15).
    #[test]
    fn planted_symlink_or_fifo_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"precious").unwrap();
        let log = dir.path().join("calls.log");
        std::os::unix::fs::symlink(&outside, &log).unwrap();
        let note = append(&log, "x\n").unwrap_err();
        assert!(
            note.contains("symlink") && note.contains("real path"),
            "{note}"
        );
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        // A dangling link: O_CREAT must not create its target either.
        let target = dir.path().join("created-through-link");
        let dangling = dir.path().join("dangling.log");
        std::os::unix::fs::symlink(&target, &dangling).unwrap();
        assert!(append(&dangling, "x\n").is_err());
        assert!(!target.exists());
        let fifo = dir.path().join("fifo.log");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let started = std::time::Instant::now();
        assert!(append(&fifo, "x\n").is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
        // The plain file beside them still works.
        let real = dir.path().join("real.log");
        append(&real, "x\n").unwrap();
        assert_eq!(std::fs::read(&real).unwrap(), b"x\n");
    }

    #[test]
    fn no_key_no_file_and_unopenable_file_does_not_panic() {
        let dir = tempfile::tempdir().unwrap();
        record(
            "p",
            Some("ADD"),
            parsed("{}").as_ref(),
            env(&[]),
            SystemTime::now(),
            Duration::ZERO,
            &ok(),
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let missing = dir.path().join("no/such/dir/x.log");
        let stdin = json!({"name": "n", "logFile": missing}).to_string();
        assert!(append(&missing, "x\n")
            .unwrap_err()
            .contains("cannot open logFile"));
        record(
            "p",
            Some("ADD"),
            parsed(&stdin).as_ref(),
            env(&[]),
            SystemTime::now(),
            Duration::ZERO,
            &ok(),
        );
        assert!(!missing.exists());
    }

    #[test]
    fn long_messages_are_cut_and_concurrent_lines_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls.log");
        let msg = "é".repeat(3000);
        let out = Outcome {
            stdout: Some(json!({"code": 11, "msg": msg})),
            stderr: None,
            exit_code: 1,
        };
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let log = log.clone();
                let out = Outcome {
                    stdout: out.stdout.clone(),
                    stderr: None,
                    exit_code: 1,
                };
                std::thread::spawn(move || {
                    let stdin = json!({"name": "n", "logFile": log}).to_string();
                    let cid = format!("c{i}");
                    for _ in 0..50 {
                        record(
                            "p",
                            Some("ADD"),
                            parsed(&stdin).as_ref(),
                            env(&[("CNI_CONTAINERID", &cid)]),
                            SystemTime::now(),
                            Duration::ZERO,
                            &out,
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.lines().count(), 400);
        for l in text.lines() {
            assert!(l.contains(" plugin=\"p\" cmd=\"ADD\" "), "{l}");
            assert!(l.ends_with("…\""), "{l}");
            assert!(l.len() < MAX_MSG + 300, "{}", l.len());
        }
    }
}
