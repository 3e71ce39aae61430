//! Black-box invocation of plugin binaries, exactly as a runtime does it:
//! a fresh process, a controlled environment (every variable settable,
//! unset and empty kept apart, because libcni exports empty strings and the
//! spec treats them as absent — conformance.md #3), raw stdin bytes, and strict
//! reading of what comes back (conformance.md #10, 67–70: one JSON document on
//! stdout, nothing else).
//!
//! Plus the RAII guards every suite needs on a machine shared with other
//! test runs: [`Netns`] (uniquely named, always deleted, never touches a
//! namespace it did not create) and [`TempDir`].
//!
//! These tests need root (network namespaces); they fail loudly without it
//! rather than skip, because CI runs as root and a silent skip hides a gap.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use cni_common::version::Version;
// The namespace guards and binary lookup live in the lab the demo shares;
// re-exported so every suite keeps reaching them as `harness::…`.
pub use netlab::bins::{
    bin_dir, debian_reference, debian_reference_dir, peer, peers_dir, plugin, reference,
    reference_dir, workspace_dir,
};
use netlab::netns::ip_bin;
pub use netlab::netns::{
    install_cleanup_panic_hook, remove_on_panic, require_root, unique_name, Netns,
};

/// Run the built `cni6` tool with `args`; its stdout, or a panic with its
/// stderr when it fails.
pub fn cni6_ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(args: &[S]) -> String {
    let o = std::process::Command::new(plugin("cni6"))
        .args(args)
        .output()
        .expect("run cni6");
    assert!(
        o.status.success(),
        "cni6 {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("cni6 prints UTF-8")
}

// ---------------------------------------------------------------- versions

/// Every version cni6 speaks (what VERSION must list).
pub const ALL_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Versions that have CHECK (conformance.md #31).
pub fn versions_with_check() -> Vec<&'static str> {
    versions_where(Version::has_check)
}

/// Versions that have GC and STATUS (conformance.md #45, 51).
pub fn versions_with_gc() -> Vec<&'static str> {
    versions_where(Version::has_gc_status)
}

/// Versions without CHECK: CHECK there must be error 1.
pub fn versions_without_check() -> Vec<&'static str> {
    versions_where(|v| !v.has_check())
}

/// Versions without GC/STATUS: those verbs there must be error 1.
pub fn versions_without_gc() -> Vec<&'static str> {
    versions_where(|v| !v.has_gc_status())
}

fn versions_where(f: impl Fn(Version) -> bool) -> Vec<&'static str> {
    ALL_VERSIONS
        .iter()
        .copied()
        .filter(|s| f(Version::parse(s, cni_common::version::ALL).expect("known version")))
        .collect()
}

/// Whether results of `version` carry `ips[].version` (conformance.md #59).
pub fn has_ip_version_field(version: &str) -> bool {
    Version::parse(version, cni_common::version::ALL)
        .map(Version::has_ip_version_field)
        .unwrap_or(false)
}

/// User + system CPU from getrusage(`who`): `libc::RUSAGE_CHILDREN` for
/// the waited-for children so far, `libc::RUSAGE_THREAD` for this thread.
pub fn rusage_cpu(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes into the struct we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A container id as runtimes make them (hex-ish, unique).
pub fn container_id(tag: &str) -> String {
    format!(
        "{tag}{:x}{:04x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

// ----------------------------------------------------------------- tempdir

/// A scratch directory (plugin data dirs, fake CNI_PATH dirs), removed on
/// drop. Thin wrapper so suites do not each pick a crate.
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        TempDir(
            tempfile::Builder::new()
                .prefix(&format!("cni6-{tag}-{}-", std::process::id()))
                .tempdir()
                .expect("create temp dir"),
        )
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.0.path().join(p)
    }

    pub fn path_str(&self) -> String {
        self.0.path().display().to_string()
    }
}

/// Put an executable copy (symlink) of `binary` into `dir` under `name`, to
/// build CNI_PATH dirs (conformance.md #1, 8).
pub fn install_as(binary: &Path, dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    std::os::unix::fs::symlink(binary, &dst)
        .unwrap_or_else(|e| panic!("symlink {} -> {}: {e}", dst.display(), binary.display()));
    dst
}

// -------------------------------------------------------------- invocation

/// The variables libcni sets for every plugin call (conformance.md #3).
pub const CNI_VARS: &[&str] = &[
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
];

/// One plugin call. The child's environment is exactly what the builder
/// says (the test process's own environment is NOT inherited), plus a
/// `PATH` unless the test sets or unsets it.
#[derive(Debug, Clone)]
pub struct Invocation {
    binary: PathBuf,
    env: BTreeMap<String, Option<String>>,
    stdin: Vec<u8>,
    netns: Option<String>,
    timeout: Duration,
}

/// What a plugin call printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// stdout parsed strictly as ONE JSON value (None if empty or not one).
    pub json: Option<Value>,
    /// A description of the call for failure messages.
    pub what: String,
}

impl Invocation {
    /// A call of `binary` with `CNI_COMMAND=command` and nothing else set.
    pub fn new(binary: impl AsRef<Path>, command: &str) -> Invocation {
        let mut env = BTreeMap::new();
        env.insert("CNI_COMMAND".to_string(), Some(command.to_string()));
        Invocation {
            binary: binary.as_ref().to_path_buf(),
            env,
            stdin: Vec::new(),
            netns: None,
            timeout: Duration::from_secs(60),
        }
    }

    /// A call for one attachment, as libcni makes it: all six variables
    /// set (`CNI_ARGS` empty, `CNI_PATH` = the binary's directory).
    pub fn attachment(
        binary: impl AsRef<Path>,
        command: &str,
        container_id: &str,
        netns: &str,
        ifname: &str,
    ) -> Invocation {
        let binary = binary.as_ref();
        let dir = binary
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        Invocation::new(binary, command)
            .var("CNI_CONTAINERID", container_id)
            .var("CNI_NETNS", netns)
            .var("CNI_IFNAME", ifname)
            .var("CNI_ARGS", "")
            .var("CNI_PATH", dir)
    }

    /// A GC/STATUS call as libcni makes it: attachment variables empty.
    pub fn network(binary: impl AsRef<Path>, command: &str) -> Invocation {
        Invocation::attachment(binary, command, "", "", "")
    }

    pub fn command(self, command: &str) -> Invocation {
        self.var("CNI_COMMAND", command)
    }

    /// Set a variable (an empty string stays set-but-empty).
    pub fn var(mut self, key: &str, value: impl Into<String>) -> Invocation {
        self.env.insert(key.to_string(), Some(value.into()));
        self
    }

    /// Make sure a variable is NOT in the child's environment.
    pub fn unset(mut self, key: &str) -> Invocation {
        self.env.insert(key.to_string(), None);
        self
    }

    pub fn args(self, cni_args: &str) -> Invocation {
        self.var("CNI_ARGS", cni_args)
    }

    pub fn cni_path(self, dirs: &[&Path]) -> Invocation {
        let joined = dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":");
        self.var("CNI_PATH", joined)
    }

    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Invocation {
        self.stdin = bytes.into();
        self
    }

    pub fn stdin_json(self, v: &Value) -> Invocation {
        let s = serde_json::to_vec(v).expect("serialise config");
        self.stdin(s)
    }

    /// Run the plugin inside `ns` as if it were the runtime's (host)
    /// namespace, via `ip netns exec` (which also remounts /sys for it).
    pub fn in_netns(mut self, ns: &Netns) -> Invocation {
        self.netns = Some(ns.name().to_string());
        self
    }

    pub fn timeout(mut self, t: Duration) -> Invocation {
        self.timeout = t;
        self
    }

    pub fn env_value(&self, key: &str) -> Option<&str> {
        self.env.get(key).and_then(|v| v.as_deref())
    }

    fn describe(&self) -> String {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v:?}"),
                None => format!("-{k}"),
            })
            .collect();
        let mut stdin = String::from_utf8_lossy(&self.stdin).into_owned();
        if stdin.len() > 300 {
            let mut cut = 300;
            while !stdin.is_char_boundary(cut) {
                cut -= 1;
            }
            stdin.truncate(cut);
            stdin.push('…');
        }
        format!(
            "{}{} [{}] stdin={stdin}",
            self.netns
                .as_ref()
                .map(|n| format!("(netns {n}) "))
                .unwrap_or_default(),
            self.binary.display(),
            env.join(" ")
        )
    }

    fn build(&self) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new(ip_bin());
                c.args(["netns", "exec", ns]).arg(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        cmd.env_clear();
        if !self.env.contains_key("PATH") {
            cmd.env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            );
        }
        for (k, v) in &self.env {
            if let Some(v) = v {
                cmd.env(k, v);
            }
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Start the plugin; stdin is written and closed by a helper thread.
    pub fn spawn(&self) -> Running {
        let mut child = self
            .build()
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", self.describe()));
        let mut si = child.stdin.take().expect("piped stdin");
        let bytes = self.stdin.clone();
        let writer = std::thread::spawn(move || {
            // EPIPE when the plugin exits (or is killed) without reading.
            let _ = si.write_all(&bytes);
        });
        let mut so = child.stdout.take().expect("piped stdout");
        let mut se = child.stderr.take().expect("piped stderr");
        let out_reader = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = so.read_to_end(&mut b);
            b
        });
        let err_reader = std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = se.read_to_end(&mut b);
            b
        });
        Running {
            child,
            writer: Some(writer),
            out_reader: Some(out_reader),
            err_reader: Some(err_reader),
            what: self.describe(),
            timeout: self.timeout,
            started: Instant::now(),
        }
    }

    pub fn run(&self) -> Output {
        self.spawn().wait()
    }
}

/// A plugin process in flight (for concurrency and kill tests).
pub struct Running {
    child: Child,
    writer: Option<std::thread::JoinHandle<()>>,
    out_reader: Option<std::thread::JoinHandle<Vec<u8>>>,
    err_reader: Option<std::thread::JoinHandle<Vec<u8>>>,
    what: String,
    timeout: Duration,
    started: Instant,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL (harmless if it already exited: it is not reaped yet).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
    }

    pub fn wait(mut self) -> Output {
        let status = loop {
            match self.child.try_wait().expect("wait for plugin") {
                Some(s) => break s,
                None if self.started.elapsed() > self.timeout => {
                    let _ = self.child.kill();
                    let s = self.child.wait().expect("wait for killed plugin");
                    eprintln!("timeout after {:?}: {}", self.timeout, self.what);
                    break s;
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        };
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        let stdout = self.out_reader.take().unwrap().join().unwrap_or_default();
        let stderr = self.err_reader.take().unwrap().join().unwrap_or_default();
        let stdout = String::from_utf8_lossy(&stdout).into_owned();
        let json = parse_one_json(&stdout);
        Output {
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
            json,
            what: self.what.clone(),
        }
    }
}

/// Exactly one JSON value (surrounding whitespace allowed), else None.
pub fn parse_one_json(s: &str) -> Option<Value> {
    if s.trim().is_empty() {
        return None;
    }
    serde_json::from_str(s).ok()
}

impl Output {
    fn context(&self) -> String {
        format!(
            "call: {}\nexit: {:?} signal: {:?}\nstdout: {}\nstderr: {}",
            self.what, self.code, self.signal, self.stdout, self.stderr
        )
    }

    /// Never a panic: no "panicked" on stderr, no code-100 error, no signal
    /// other than one the test sent (conformance.md #70, design "never panics").
    pub fn assert_no_panic(&self) -> &Output {
        assert!(
            !self.stderr.contains("panicked") && !self.stdout.contains("panicked"),
            "plugin panicked\n{}",
            self.context()
        );
        if let Some(c) = self.json.as_ref().and_then(|j| j.get("code")) {
            assert_ne!(
                c.as_u64(),
                Some(100),
                "internal error (code 100)\n{}",
                self.context()
            );
        }
        self
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Exit 0 and stdout is one JSON object without `code` (a result);
    /// returns it (ADD, VERSION). conformance.md #10, 67.
    pub fn assert_ok(&self) -> &Value {
        self.assert_no_panic();
        assert_eq!(self.code, Some(0), "expected success\n{}", self.context());
        let v = self
            .json
            .as_ref()
            .unwrap_or_else(|| panic!("stdout is not exactly one JSON value\n{}", self.context()));
        assert!(v.is_object(), "result is not an object\n{}", self.context());
        assert!(
            v.get("code").is_none(),
            "success result carries an error code\n{}",
            self.context()
        );
        v
    }

    /// Exit 0 and NOTHING on stdout (DEL, CHECK, GC, STATUS; conformance.md #10).
    pub fn assert_silent_ok(&self) -> &Output {
        self.assert_no_panic();
        assert_eq!(self.code, Some(0), "expected success\n{}", self.context());
        assert!(
            self.stdout.trim().is_empty(),
            "expected empty stdout\n{}",
            self.context()
        );
        self
    }

    /// Exit ≠ 0 and stdout is exactly one JSON object with `code` = `code`
    /// and a non-empty `msg` (conformance.md #10, 67–70). Returns the object.
    pub fn assert_error(&self, code: u64) -> &Value {
        let v = self.assert_failed();
        assert_eq!(
            v["code"].as_u64(),
            Some(code),
            "wrong error code\n{}",
            self.context()
        );
        v
    }

    /// Any well-formed error: exit ≠ 0, one JSON object with a numeric
    /// `code` and a non-empty `msg`, no panic.
    pub fn assert_failed(&self) -> &Value {
        self.assert_no_panic();
        assert!(
            self.signal.is_none(),
            "killed by a signal\n{}",
            self.context()
        );
        assert_ne!(self.code, Some(0), "expected failure\n{}", self.context());
        let v = self
            .json
            .as_ref()
            .unwrap_or_else(|| panic!("stdout is not exactly one JSON value\n{}", self.context()));
        assert!(v.is_object(), "error is not an object\n{}", self.context());
        assert!(
            v["code"].is_u64(),
            "error has no numeric code\n{}",
            self.context()
        );
        assert!(
            v["msg"].as_str().is_some_and(|m| !m.trim().is_empty()),
            "error has an empty msg\n{}",
            self.context()
        );
        v
    }

    /// The error message (after [`Output::assert_error`]).
    pub fn msg(&self) -> String {
        self.json
            .as_ref()
            .and_then(|j| j.get("msg"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }

    /// `msg` + `details`, for "the message names X" checks.
    pub fn error_text(&self) -> String {
        let j = self.json.as_ref();
        let get = |k: &str| {
            j.and_then(|j| j.get(k))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        format!("{} {}", get("msg"), get("details"))
    }
}

// ------------------------------------------------------------ disk snapshot

/// One filesystem entry as seen by [`snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Dir,
    File(Vec<u8>),
    Symlink(PathBuf),
    Other,
}

/// Every entry under `root` (relative path → content), to prove that a
/// failing call changed nothing on disk.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_symlink() {
                out.insert(
                    rel,
                    Entry::Symlink(std::fs::read_link(&p).unwrap_or_default()),
                );
            } else if ft.is_dir() {
                out.insert(rel, Entry::Dir);
                walk(root, &p, out);
            } else if ft.is_file() {
                out.insert(rel, Entry::File(std::fs::read(&p).unwrap_or_default()));
            } else {
                out.insert(rel, Entry::Other);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

/// Names in a directory (empty set if it does not exist).
pub fn dir_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_matrix() {
        assert_eq!(versions_with_check(), vec!["0.4.0", "1.0.0", "1.1.0"]);
        assert_eq!(versions_with_gc(), vec!["1.1.0"]);
        assert_eq!(versions_without_check(), vec!["0.3.0", "0.3.1"]);
        assert!(has_ip_version_field("0.4.0") && !has_ip_version_field("1.0.0"));
    }

    #[test]
    fn strict_json() {
        assert!(parse_one_json("{\"a\":1}\n").is_some());
        assert!(parse_one_json("{\"a\":1}{\"b\":2}").is_none());
        assert!(parse_one_json("").is_none());
        assert!(parse_one_json("{\"a\":1} trailing").is_none());
    }

    #[test]
    fn env_is_exactly_what_was_set() {
        let out = Invocation::new("/usr/bin/env", "ADD")
            .var("CNI_NETNS", "")
            .unset("CNI_IFNAME")
            .run();
        assert_eq!(out.code, Some(0));
        let lines: BTreeSet<&str> = out.stdout.lines().collect();
        assert!(lines.contains("CNI_COMMAND=ADD"));
        assert!(lines.contains("CNI_NETNS="));
        assert!(!out.stdout.contains("CNI_IFNAME"));
        assert!(!out.stdout.contains("CARGO"));
    }

    #[test]
    fn netns_guard_creates_and_removes() {
        let path;
        {
            let ns = Netns::new("c6h");
            path = ns.path().to_path_buf();
            assert!(path.exists());
            assert!(ns.name().contains(&std::process::id().to_string()));
            ns.add_veth("c6ha", "c6hb");
            ns.add_addr("c6ha", "fd00:c6::1/64");
            assert!(ns
                .exec_ok(&["ip", "-6", "addr", "show", "dev", "c6ha"])
                .contains("fd00:c6::1/64"));
        }
        assert!(!path.exists(), "netns not removed on drop");
    }

    #[test]
    fn stdin_reaches_the_child() {
        let out = Invocation::new("/bin/cat", "X").stdin("{\"x\": [1]}").run();
        assert_eq!(out.json.unwrap()["x"][0], 1);
    }
}
