//! `cni6` end to end against shell-script fake plugins (no root needed):
//! the binary is run as an operator would run it, the fakes record what
//! they were given and answer from scripted files.

use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

const FAKE: &str = r#"#!/bin/sh
here=$(dirname "$0")
name=$(basename "$0")
log="$here/../log"
n=$(( $(cat "$log/count" 2>/dev/null || echo 0) + 1 ))
echo $n > "$log/count"
cat > "$log/$n.stdin"
env > "$log/$n.env"
echo "$name $CNI_COMMAND" > "$log/$n.call"
out="$here/../script/$name.$CNI_COMMAND"
[ -f "$out.stdout" ] && cat "$out.stdout"
[ -f "$out.rc" ] && exit $(cat "$out.rc")
exit 0
"#;

struct Node {
    dir: tempfile::TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Node {
    fn new(version: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        for d in ["bin", "log", "script", "cache"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        for p in ["main", "ipamx", "chained"] {
            let path = dir.path().join("bin").join(p);
            std::fs::write(&path, FAKE).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let conflist = json!({
            "cniVersion": version,
            "name": "cluster",
            "plugins": [
                {"type": "main", "ipam": {"type": "ipamx"}, "capabilities": {"ips": true}},
                {"type": "chained"}
            ]
        });
        std::fs::write(dir.path().join("net.conflist"), conflist.to_string()).unwrap();
        std::fs::write(dir.path().join("netns"), "").unwrap();
        let n = Node { dir };
        let result = json!({
            "cniVersion": version,
            "interfaces": [{"name": "cluster0"}, {"name": "eth0", "sandbox": n.netns()}],
            "ips": [{"address": "fd00:0:0:0:1:1:0:10/96", "gateway": "fd00:0:0:0:1:1:0:1", "interface": 1}],
            "routes": [{"dst": "::/0"}]
        });
        n.script("main", "ADD", &result.to_string(), 0);
        n.script("chained", "ADD", &result.to_string(), 0);
        n
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn netns(&self) -> String {
        self.p("netns").display().to_string()
    }

    fn script(&self, plugin: &str, cmd: &str, stdout: &str, rc: i32) {
        let base = self.p("script");
        std::fs::write(base.join(format!("{plugin}.{cmd}.stdout")), stdout).unwrap();
        std::fs::write(base.join(format!("{plugin}.{cmd}.rc")), rc.to_string()).unwrap();
    }

    /// (plugin, command, stdin) of every fake call so far; clears the log.
    fn take_calls(&self) -> Vec<(String, String, Value)> {
        let log = self.p("log");
        let n: usize = std::fs::read_to_string(log.join("count"))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0);
        let calls = (1..=n)
            .map(|i| {
                let call = std::fs::read_to_string(log.join(format!("{i}.call"))).unwrap();
                let (p, c) = call.trim().split_once(' ').unwrap();
                let stdin = std::fs::read(log.join(format!("{i}.stdin"))).unwrap();
                (
                    p.to_string(),
                    c.to_string(),
                    serde_json::from_slice(&stdin).unwrap_or(Value::Null),
                )
            })
            .collect();
        let _ = std::fs::remove_file(log.join("count"));
        calls
    }

    fn env_of_call(&self, i: usize) -> String {
        std::fs::read_to_string(self.p("log").join(format!("{i}.env"))).unwrap()
    }

    fn cni6(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cni6"));
        let (global, rest): (Vec<&str>, Vec<&str>) = args.iter().partition(|a| **a == "--json");
        cmd.args(&rest[..1]).args(global);
        if rest[0] != "help" {
            cmd.arg("--conflist")
                .arg(self.p("net.conflist"))
                .arg("--cni-path")
                .arg(format!(
                    "{}:{}",
                    self.p("nothing").display(),
                    self.p("bin").display()
                ))
                .arg("--cache-dir")
                .arg(self.p("cache"));
        }
        let out = cmd.args(&rest[1..]).output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).unwrap(),
            stderr: String::from_utf8(out.stderr).unwrap(),
        }
    }
}

fn cache_file(n: &Node, id: &str) -> PathBuf {
    n.p("cache")
        .join("results")
        .join(format!("cluster-{id}-eth0"))
}

#[test]
fn attach_check_detach_round_trip() {
    let n = Node::new("1.0.0");
    let netns = n.netns();
    let r = n.cni6(&[
        "attach",
        "--netns",
        &netns,
        "--id",
        "pod1",
        "--args",
        "IgnoreUnknown=1;K8S_POD_NAME=web",
        "--cap-args",
        r#"{"ips":["fd00::42/96"],"mac":"x"}"#,
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("attached container pod1 interface eth0 to network cluster"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("fd00::1:1:0:10/96 gateway fd00::1:1:0:1 on eth0"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("route     ::/0"), "{}", r.stdout);
    let calls = n.take_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].2["runtimeConfig"], json!({"ips": ["fd00::42/96"]}));
    assert!(n
        .env_of_call(1)
        .contains("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web"));
    assert!(cache_file(&n, "pod1").exists());

    let r = n.cni6(&["check", "--id", "pod1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("ok:"), "{}", r.stdout);
    let calls = n.take_calls();
    assert_eq!(
        calls.iter().map(|c| c.1.as_str()).collect::<Vec<_>>(),
        vec!["CHECK", "CHECK"]
    );
    // Values not given come from the cache record.
    assert_eq!(calls[0].2["runtimeConfig"], json!({"ips": ["fd00::42/96"]}));
    assert!(n.env_of_call(1).contains(&format!("CNI_NETNS={netns}")));
    assert!(n
        .env_of_call(1)
        .contains("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=web"));

    // conformance.md #27: the namespace is gone; detach still runs DEL with it.
    std::fs::remove_file(n.p("netns")).unwrap();
    let r = n.cni6(&["detach", "--id", "pod1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("no longer exists"), "{}", r.stderr);
    assert!(r.stdout.contains("detached container pod1"), "{}", r.stdout);
    let calls = n.take_calls();
    let order: Vec<_> = calls.iter().map(|c| (c.0.as_str(), c.1.as_str())).collect();
    assert_eq!(order, vec![("chained", "DEL"), ("main", "DEL")]);
    assert!(calls
        .iter()
        .all(|c| c.2["prevResult"]["ips"][0]["address"] == "fd00::1:1:0:10/96"));
    assert!(n.env_of_call(1).contains(&format!("CNI_NETNS={netns}")));
    assert!(!cache_file(&n, "pod1").exists());
}

#[test]
fn attach_json_and_errors() {
    let n = Node::new("1.0.0");
    let netns = n.netns();
    let r = n.cni6(&["attach", "--json", "--netns", &netns, "--id", "pod2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ips"][0]["address"], "fd00:0:0:0:1:1:0:10/96");

    let r = n.cni6(&["attach", "--netns", "/nonexistent/ns", "--id", "pod3"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("does not exist"), "{}", r.stderr);

    let r = n.cni6(&["attach", "--netns", &netns, "--id", "bad/id"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("CNI_CONTAINERID") && r.stderr.contains("code 4"),
        "{}",
        r.stderr
    );

    let r = n.cni6(&[
        "attach",
        "--netns",
        &netns,
        "--id",
        "pod4",
        "--cap-args",
        "[1]",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--cap-args"), "{}", r.stderr);

    n.script(
        "chained",
        "ADD",
        r#"{"code":7,"msg":"invalid clusterPrefixes","details":"fd00::/300"}"#,
        1,
    );
    let r = n.cni6(&["attach", "--netns", &netns, "--id", "pod5"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("chained") && r.stderr.contains("invalid clusterPrefixes"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("code 7") && r.stderr.contains("details: fd00::/300"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("panicked"));

    let r = n.cni6(&["check", "--id", "never-attached"]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no --netns given"), "{}", r.stderr);
    assert!(n.take_calls().iter().all(|c| c.1 != "CHECK"));

    std::fs::write(n.p("net.conflist"), "{not json").unwrap();
    let r = n.cni6(&["check", "--id", "pod2"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("net.conflist") && r.stderr.contains("code 6"),
        "{}",
        r.stderr
    );
}

#[test]
fn gc_without_a_valid_set_is_a_dry_run() {
    let n = Node::new("1.1.0");
    let netns = n.netns();
    for id in ["keep", "gone"] {
        assert_eq!(n.cni6(&["attach", "--netns", &netns, "--id", id]).code, 0);
    }
    n.take_calls();
    let r = n.cni6(&["gc"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("dry run") && r.stdout.contains("2 cached attachment(s)"),
        "{}",
        r.stdout
    );
    assert!(n.take_calls().is_empty(), "a dry run runs no plugin");
    assert!(cache_file(&n, "keep").exists() && cache_file(&n, "gone").exists());

    let r = n.cni6(&["gc", "--valid", "keep/eth0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("gone/eth0"), "{}", r.stdout);
    assert!(r.stdout.contains("GC sent to 2 plugin(s)"), "{}", r.stdout);
    let calls = n.take_calls();
    let gcs: Vec<_> = calls.iter().filter(|c| c.1 == "GC").collect();
    assert_eq!(gcs.len(), 2);
    assert_eq!(
        gcs[0].2["cni.dev/valid-attachments"],
        json!([{"containerID": "keep", "ifname": "eth0"}])
    );
    assert!(cache_file(&n, "keep").exists() && !cache_file(&n, "gone").exists());

    // A typo in --valid would free the pod it meant to keep: refused.
    let r = n.cni6(&["gc", "--valid", "keep/eht0"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("no such attachment") && r.stderr.contains("did you mean keep/eth0"),
        "{}",
        r.stderr
    );
    assert!(n.take_calls().is_empty(), "a refused gc runs no plugin");
    assert!(cache_file(&n, "keep").exists());

    // --all-stale frees running pods too: it needs --confirm.
    let r = n.cni6(&["gc", "--all-stale"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--confirm"), "{}", r.stderr);
    assert!(n.take_calls().is_empty());
    let r = n.cni6(&["gc", "--json", "--all-stale", "--confirm"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["staleDeleted"],
        json!([{"containerID": "keep", "ifname": "eth0"}])
    );
    assert_eq!(v["gcSent"], true);
    let calls = n.take_calls();
    assert!(calls
        .iter()
        .filter(|c| c.1 == "GC")
        .all(|c| c.2["cni.dev/attachments"] == json!([])));

    let r = n.cni6(&["gc", "--valid", "nope"]);
    assert_eq!(r.code, 2);
}

#[test]
fn plugin_status_and_version() {
    let n = Node::new("1.1.0");
    let r = n.cni6(&["plugin-status"]);
    assert_eq!((r.code, r.stdout.trim()), (0, "ready"), "{}", r.stderr);
    n.script(
        "main",
        "STATUS",
        r#"{"code":50,"msg":"no free slot in fd00::1:1:0:0/96"}"#,
        1,
    );
    let r = n.cni6(&["plugin-status"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("not ready: no free slot") && r.stdout.contains("code 50"),
        "{}",
        r.stdout
    );
    let r = n.cni6(&["plugin-status", "--json"]);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["ready"].clone(), v["code"].clone()),
        (json!(false), json!(50))
    );

    let all = r#"{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0","1.1.0"]}"#;
    n.script("main", "VERSION", all, 0);
    n.script("ipamx", "VERSION", all, 0);
    n.script(
        "chained",
        "VERSION",
        r#"{"cniVersion":"1.1.0","supportedVersions":["0.4.0","1.0.0"]}"#,
        0,
    );
    let r = n.cni6(&["version"]);
    assert_eq!(r.code, 1, "chained lacks 1.1.0");
    assert!(
        r.stdout.contains("ipamx"),
        "IPAM plugins are probed too: {}",
        r.stdout
    );
    assert!(r.stdout.contains("does NOT support 1.1.0"), "{}", r.stdout);
    n.script("chained", "VERSION", all, 0);
    let r = n.cni6(&["version", "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["plugins"].as_array().unwrap().len(), 3);
}

#[test]
fn status_before_1_1_is_not_asked() {
    let n = Node::new("1.0.0");
    let r = n.cni6(&["plugin-status"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains("not asked"), "{}", r.stdout);
    assert!(n.take_calls().is_empty());
}

#[test]
fn failed_attach_is_rolled_back_with_del() {
    // issue 18: a chain that fails in its second plugin must not leave
    // what the first one made; CRI runtimes DEL the whole chain.
    let n = Node::new("1.0.0");
    let netns = n.netns();
    n.script("chained", "ADD", r#"{"code":7,"msg":"no"}"#, 1);
    let r = n.cni6(&["attach", "--netns", &netns, "--id", "pod6"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("rolled back with DEL"), "{}", r.stderr);
    let calls: Vec<(String, String)> = n.take_calls().into_iter().map(|(p, c, _)| (p, c)).collect();
    let s = |p: &str, c: &str| (p.to_string(), c.to_string());
    assert_eq!(
        calls,
        vec![
            s("main", "ADD"),
            s("chained", "ADD"),
            s("chained", "DEL"),
            s("main", "DEL")
        ]
    );
    assert!(
        !cache_file(&n, "pod6").exists(),
        "no cached result survives a rolled-back attach"
    );

    // When the rollback fails too, the operator is told how to finish it.
    n.script("main", "DEL", r#"{"code":11,"msg":"busy"}"#, 1);
    let r = n.cni6(&["attach", "--netns", &netns, "--id", "pod7"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("rollback DEL failed") && r.stderr.contains("cni6 detach"),
        "{}",
        r.stderr
    );
}

#[test]
fn plugin_status_asks_cni6_plugins_at_1_1_whatever_the_list_version() {
    // A 1.0.0 list is never asked STATUS by a runtime; cni6's own plugins
    // are asked on a 1.1.0 copy, others are left alone.
    let n = Node::new("1.0.0");
    let fw = n.p("bin").join("firewall6");
    std::fs::write(&fw, FAKE).unwrap();
    std::fs::set_permissions(&fw, std::fs::Permissions::from_mode(0o755)).unwrap();
    let list = json!({"cniVersion": "1.0.0", "name": "cluster",
        "plugins": [{"type": "main"}, {"type": "firewall6"}]});
    std::fs::write(n.p("net.conflist"), list.to_string()).unwrap();
    let r = n.cni6(&["plugin-status"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("asked at CNI 1.1.0"), "{}", r.stdout);
    let calls = n.take_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].0.as_str(), calls[0].1.as_str()),
        ("firewall6", "STATUS")
    );
    assert_eq!(calls[0].2["cniVersion"], "1.1.0");
    n.script(
        "firewall6",
        "STATUS",
        r#"{"code":50,"msg":"ip6tables not found"}"#,
        1,
    );
    let r = n.cni6(&["plugin-status"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("ip6tables not found"), "{}", r.stdout);
}
