//! The runtime against shell-script fake plugins (like libcni's noop
//! and debug plugins): each records its env and stdin and prints a
//! scripted answer.
use super::*;
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

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
[ -f "$out.stderr" ] && cat "$out.stderr" >&2
[ -f "$out.rc" ] && exit $(cat "$out.rc")
exit 0
"#;

struct Fixture {
    root: tempfile::TempDir,
    rt: Runtime,
}

#[derive(Debug)]
struct Call {
    plugin: String,
    command: String,
    stdin: Value,
    env: HashMap<String, String>,
}

impl Fixture {
    fn new(plugins: &[&str]) -> Fixture {
        let root = tempfile::tempdir().unwrap();
        for d in ["bin", "log", "script", "cache"] {
            std::fs::create_dir(root.path().join(d)).unwrap();
        }
        for p in plugins {
            let path = root.path().join("bin").join(p);
            std::fs::write(&path, FAKE).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let rt = Runtime::new(vec![
            root.path().join("empty-first"),
            root.path().join("bin"),
        ])
        .with_cache_dir(root.path().join("cache"));
        Fixture { root, rt }
    }

    fn script(&self, plugin: &str, cmd: &str, stdout: &str, rc: i32) {
        let base = self
            .root
            .path()
            .join("script")
            .join(format!("{plugin}.{cmd}"));
        std::fs::write(base.with_extension(format!("{cmd}.stdout")), stdout).unwrap();
        std::fs::write(base.with_extension(format!("{cmd}.rc")), rc.to_string()).unwrap();
    }

    fn script_stderr(&self, plugin: &str, cmd: &str, stderr: &str) {
        let p = self
            .root
            .path()
            .join("script")
            .join(format!("{plugin}.{cmd}.stderr"));
        std::fs::write(p, stderr).unwrap();
    }

    fn calls(&self) -> Vec<Call> {
        let log = self.root.path().join("log");
        let n: usize = std::fs::read_to_string(log.join("count"))
            .map(|s| s.trim().parse().unwrap())
            .unwrap_or(0);
        (1..=n)
            .map(|i| {
                let call = std::fs::read_to_string(log.join(format!("{i}.call"))).unwrap();
                let (plugin, command) = call.trim().split_once(' ').unwrap();
                let stdin = std::fs::read(log.join(format!("{i}.stdin"))).unwrap();
                let env = std::fs::read_to_string(log.join(format!("{i}.env")))
                    .unwrap()
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                Call {
                    plugin: plugin.into(),
                    command: command.into(),
                    stdin: serde_json::from_slice(&stdin).unwrap_or(Value::Null),
                    env,
                }
            })
            .collect()
    }

    fn clear_log(&self) {
        let _ = std::fs::remove_file(self.root.path().join("log/count"));
    }

    fn cni_path(&self) -> String {
        self.rt.cni_path()
    }
}

fn list(version: &str, extra: Value) -> ConfList {
    let mut v = json!({
        "cniVersion": version,
        "name": "net1",
        "plugins": [
            {"type": "first", "capabilities": {"portMappings": true, "mac": false, "ips": true}, "keep": 1},
            {"type": "second", "cni.dev/x": "y"}
        ]
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    ConfList::parse(v.to_string().as_bytes()).unwrap()
}

fn pod(id: &str) -> RuntimeConf {
    RuntimeConf::new(id, Some(PathBuf::from("/var/run/netns/pod-x")), "eth0")
        .with_arg("IgnoreUnknown", "1")
        .with_arg("K8S_POD_NAME", "web")
        .with_capability("portMappings", json!([{"hostPort": 8080}]))
        .with_capability("mac", json!("02:00:00:00:00:01"))
        .with_capability("bandwidth", json!({"ingressRate": 1}))
}

fn result(version: &str, addr: &str) -> Value {
    json!({
        "cniVersion": version,
        "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/pod-x"}],
        "ips": [{"address": addr, "interface": 0}]
    })
}

#[test]
fn parse_conflist_keys_and_errors() {
    let l = list("1.0.0", json!({"disableCheck": "true", "disableGC": true}));
    assert_eq!(l.name, "net1");
    assert_eq!(l.cni_version, "1.0.0");
    assert!(l.disable_check && l.disable_gc);
    assert_eq!(l.plugin_types(), vec!["first", "second"]);
    assert!(l.has_check() && !l.has_gc_status());
    let bad: &[(&str, u32)] = &[
        ("{", 6),
        ("[]", 6),
        (r#"{"cniVersion":"1.0.0","plugins":[{"type":"a"}]}"#, 7),
        (
            r#"{"cniVersion":"1.0.0","name":"a/b","plugins":[{"type":"a"}]}"#,
            7,
        ),
        (r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#, 7),
        (
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../a"}]}"#,
            7,
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"x":1}]}"#,
            7,
        ),
        (r#"{"cniVersion":"1.0.0","name":"n","plugins":[3]}"#, 7),
        (r#"{"name":"n","plugins":[{"type":"a"}]}"#, 7),
        (
            r#"{"cniVersion":"one","name":"n","plugins":[{"type":"a"}]}"#,
            7,
        ),
        (
            r#"{"cniVersion":"1.0.0","name":"n","disableCheck":"maybe","plugins":[{"type":"a"}]}"#,
            7,
        ),
    ];
    for (text, code) in bad {
        let e = ConfList::parse(text.as_bytes()).unwrap_err();
        assert_eq!(e.code(), *code, "{text}: {e}");
    }
    let e = ConfList::parse(br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../a"}]}"#)
        .unwrap_err();
    assert!(e.to_string().contains("plugins[0].type"), "{e}");
}

#[test]
fn single_conf_is_wrapped_into_a_list() {
    let l = ConfList::parse(
        br#"{"cniVersion":"0.3.1","name":"macvlan-net","type":"macvlan","master":"eth0"}"#,
    )
    .unwrap();
    assert_eq!(l.name, "macvlan-net");
    assert_eq!(l.cni_version, "0.3.1");
    assert_eq!(l.plugins.len(), 1);
    assert_eq!(l.plugins[0]["master"], "eth0");
    let again: Value = serde_json::from_slice(&l.bytes).unwrap();
    assert_eq!(again["plugins"][0]["type"], "macvlan");
    assert_eq!(again["name"], "macvlan-net");
}

#[test]
fn cni_versions_picks_highest_supported() {
    // conformance.md #64
    let parse = |extra: &str| {
        ConfList::parse(format!(r#"{{"name":"n",{extra}"plugins":[{{"type":"a"}}]}}"#).as_bytes())
    };
    assert_eq!(
        parse(r#""cniVersions":["0.4.0","1.1.0","1.0.0"],"#)
            .unwrap()
            .cni_version,
        "1.1.0"
    );
    assert_eq!(
        parse(r#""cniVersions":["0.4.0","9.0.0"],"#)
            .unwrap()
            .cni_version,
        "0.4.0"
    );
    assert_eq!(
        parse(r#""cniVersion":"1.0.0","cniVersions":["0.4.0"],"#)
            .unwrap()
            .cni_version,
        "1.0.0"
    );
    assert_eq!(parse(r#""cniVersions":["9.0.0"],"#).unwrap_err().code(), 1);
    assert_eq!(parse(r#""cniVersions":["x"],"#).unwrap_err().code(), 7);
    assert_eq!(parse(r#""cniVersions":"1.1.0","#).unwrap_err().code(), 7);
}

#[test]
fn add_injects_and_chains_prev_result() {
    // conformance.md #53, 57, 71, 84, 85
    let f = Fixture::new(&["first", "second"]);
    let r1 = result("1.0.0", "fd00::10/96");
    let mut r2 = r1.clone();
    r2["routes"] = json!([{"dst": "::/0"}]);
    f.script("first", "ADD", &r1.to_string(), 0);
    f.script("second", "ADD", &format!("  {r2}\n"), 0);
    let l = list("1.0.0", json!({}));
    let got = f.rt.add(&l, &pod("c1")).unwrap();
    assert_eq!(got, r2);

    let calls = f.calls();
    assert_eq!(calls.len(), 2);
    let (a, b) = (&calls[0], &calls[1]);
    assert_eq!((a.plugin.as_str(), a.command.as_str()), ("first", "ADD"));
    assert_eq!(a.stdin["name"], "net1");
    assert_eq!(a.stdin["cniVersion"], "1.0.0");
    assert_eq!(a.stdin["keep"], 1);
    assert_eq!(
        a.stdin["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080}]})
    );
    assert!(a.stdin.get("capabilities").is_some());
    assert!(a.stdin.get("prevResult").is_none());
    assert_eq!(b.stdin["prevResult"], r1);
    assert!(b.stdin.get("runtimeConfig").is_none());
    assert_eq!(b.stdin["cni.dev/x"], "y");
    for c in &calls {
        assert_eq!(c.env["CNI_CONTAINERID"], "c1");
        assert_eq!(c.env["CNI_NETNS"], "/var/run/netns/pod-x");
        assert_eq!(c.env["CNI_IFNAME"], "eth0");
        assert_eq!(c.env["CNI_ARGS"], "IgnoreUnknown=1;K8S_POD_NAME=web");
        assert_eq!(c.env["CNI_PATH"], f.cni_path());
        // conformance.md #11: the runtime's own environment is inherited.
        assert_eq!(
            c.env.get("PATH"),
            std::env::var("PATH").ok().as_ref(),
            "PATH inherited"
        );
    }

    let cache = f.rt.cache_path("net1", &pod("c1"));
    let files: Vec<_> = std::fs::read_dir(cache.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, vec!["net1-c1-eth0"], "no temp file left behind");
    assert!(cache.ends_with("results/net1-c1-eth0"));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o777, 0o600);
    let rec: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    assert_eq!(rec["kind"], "cniCacheV1");
    assert_eq!(rec["containerId"], "c1");
    assert_eq!(rec["ifName"], "eth0");
    assert_eq!(rec["networkName"], "net1");
    assert_eq!(rec["netns"], "/var/run/netns/pod-x");
    assert_eq!(
        rec["cniArgs"],
        json!([["IgnoreUnknown", "1"], ["K8S_POD_NAME", "web"]])
    );
    assert_eq!(rec["capabilityArgs"]["mac"], "02:00:00:00:00:01");
    assert_eq!(rec["result"], r2);
    use base64::Engine as _;
    let config = base64::engine::general_purpose::STANDARD
        .decode(rec["config"].as_str().unwrap())
        .unwrap();
    assert_eq!(config, l.bytes);
    let records = f.rt.cached_attachments().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].runtime_conf(), pod("c1"));
    let rec = f.rt.cached_record("net1", "c1", "eth0").unwrap();
    assert_eq!(rec.runtime_conf(), pod("c1"));
    assert!(f.rt.cached_record("net1", "c2", "eth0").is_none());
    assert!(f.rt.cached_record("net1", "../c1", "eth0").is_none());
}

#[test]
fn add_result_errors() {
    let f = Fixture::new(&["first", "second"]);
    let l = list("1.0.0", json!({}));
    // cni#895: a result without cniVersion takes the config's.
    f.script("first", "ADD", r#"{"ips":[]}"#, 0);
    f.script("second", "ADD", r#"{}"#, 0);
    assert_eq!(f.calls().len(), 0);
    f.rt.add(&l, &pod("c1")).unwrap();
    assert_eq!(f.calls()[1].stdin["prevResult"]["cniVersion"], "1.0.0");
    // Two JSON values, or none, are not a result (conformance.md #10).
    f.script("second", "ADD", r#"{"cniVersion":"1.0.0"}{"x":1}"#, 0);
    assert_eq!(f.rt.add(&l, &pod("c2")).unwrap_err().code(), 6);
    f.script("second", "ADD", "", 0);
    assert_eq!(f.rt.add(&l, &pod("c3")).unwrap_err().code(), 6);
    // conformance.md #62: an `interface` index out of range is caught.
    f.script(
            "second",
            "ADD",
            r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"fd00::10/96","interface":1}]}"#,
            0,
        );
    let e = f.rt.add(&l, &pod("c3")).unwrap_err();
    assert_eq!(e.code(), 6);
    assert!(e.to_string().contains("second"), "{e}");
    assert!(!f.rt.cache_path("net1", &pod("c3")).exists());
}

#[test]
fn plugin_errors_are_reported_like_libcni() {
    // conformance.md #70
    let f = Fixture::new(&["first", "second"]);
    let l = list("1.0.0", json!({}));
    f.script(
        "first",
        "ADD",
        r#"{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"try later"}"#,
        1,
    );
    let e = f.rt.add(&l, &pod("c1")).unwrap_err();
    assert_eq!(e.code(), 11);
    assert!(
        e.to_string().contains("first") && e.to_string().contains("busy"),
        "{e}"
    );
    assert_eq!(e.details(), "try later");
    assert_eq!(f.calls().len(), 1, "the chain stops at the first error");
    f.script("first", "ADD", "", 2);
    f.script_stderr("first", "ADD", "boom on stderr");
    let e = f.rt.add(&l, &pod("c1")).unwrap_err();
    assert_eq!(e.code(), NO_ERROR_CODE);
    assert!(e.to_string().contains("boom on stderr"), "{e}");
    f.script("first", "ADD", "not json", 2);
    assert!(f
        .rt
        .add(&l, &pod("c1"))
        .unwrap_err()
        .to_string()
        .contains("not json"));
    assert!(!f.rt.cache_path("net1", &pod("c1")).exists());
}

#[test]
fn attachment_validated_before_exec() {
    // conformance.md #84
    let f = Fixture::new(&["first", "second"]);
    let l = list("1.0.0", json!({}));
    assert_eq!(
        f.rt.add(&l, &RuntimeConf::new("", None, "eth0"))
            .unwrap_err()
            .code(),
        3
    );
    assert_eq!(
        f.rt.add(&l, &RuntimeConf::new("-x/y", None, "eth0"))
            .unwrap_err()
            .code(),
        4
    );
    assert_eq!(
        f.rt.add(&l, &RuntimeConf::new("c1", None, "0123456789abcdef"))
            .unwrap_err()
            .code(),
        4
    );
    assert_eq!(
        f.rt.del(&l, &RuntimeConf::new("c1", None, "a/b"))
            .unwrap_err()
            .code(),
        4
    );
    assert!(f.calls().is_empty());
    let e =
        f.rt.add(
            &list("1.0.0", json!({"plugins": [{"type": "missing"}]})),
            &pod("c1"),
        )
        .unwrap_err();
    assert_eq!(e.code(), 7);
    assert!(e.to_string().contains("missing"), "{e}");
}

#[test]
fn del_reverse_with_converted_cached_result() {
    // conformance.md #54, 86
    let f = Fixture::new(&["first", "second"]);
    let l = list("0.4.0", json!({}));
    // The plugins answer 1.0.0 to a 0.4.0 list; DEL converts.
    let r = result("1.0.0", "fd00::10/96");
    f.script("first", "ADD", &r.to_string(), 0);
    f.script("second", "ADD", &r.to_string(), 0);
    f.rt.add(&l, &pod("c1")).unwrap();
    let cache = f.rt.cache_path("net1", &pod("c1"));
    assert!(cache.exists());
    f.clear_log();
    f.rt.del(&l, &pod("c1")).unwrap();
    let calls = f.calls();
    let order: Vec<_> = calls
        .iter()
        .map(|c| (c.plugin.as_str(), c.command.as_str()))
        .collect();
    assert_eq!(order, vec![("second", "DEL"), ("first", "DEL")]);
    for c in &calls {
        let prev = &c.stdin["prevResult"];
        assert_eq!(prev["cniVersion"], "0.4.0");
        assert_eq!(prev["ips"][0]["version"], "6");
        assert_eq!(prev["ips"][0]["address"], "fd00::10/96");
        assert_eq!(c.env["CNI_NETNS"], "/var/run/netns/pod-x");
    }
    assert_eq!(
        calls[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert!(!cache.exists(), "a successful DEL removes the cache");
    // DEL again: no cache, no prevResult, still fine (conformance.md #26, 28).
    f.clear_log();
    f.rt.del(&l, &pod("c1")).unwrap();
    assert!(f
        .calls()
        .iter()
        .all(|c| c.stdin.get("prevResult").is_none()));
}

#[test]
fn del_stops_at_first_error_and_keeps_cache() {
    // conformance.md #86
    let f = Fixture::new(&["first", "second"]);
    let l = list("1.0.0", json!({}));
    let r = result("1.0.0", "fd00::10/96");
    f.script("first", "ADD", &r.to_string(), 0);
    f.script("second", "ADD", &r.to_string(), 0);
    f.rt.add(&l, &pod("c1")).unwrap();
    f.clear_log();
    f.script(
        "second",
        "DEL",
        r#"{"code":101,"msg":"netlink refused"}"#,
        1,
    );
    let e = f.rt.del(&l, &pod("c1")).unwrap_err();
    assert_eq!(e.code(), 101);
    assert!(e.to_string().contains("second"), "{e}");
    assert_eq!(
        f.calls().len(),
        1,
        "first was not called after second failed"
    );
    assert!(f.rt.cache_path("net1", &pod("c1")).exists());
}

#[test]
fn del_goes_on_without_a_corrupt_cache() {
    // conformance.md #86, cni#1072
    let f = Fixture::new(&["first", "second"]);
    let l = list("1.0.0", json!({}));
    for content in [
        "",
        "{garbage",
        r#"{"kind":"cniCacheV1","result":{"ips":[{"address":"x"}]}}"#,
    ] {
        let cache = f.rt.cache_path("net1", &pod("c1"));
        std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
        std::fs::write(&cache, content).unwrap();
        f.clear_log();
        f.rt.del(&l, &pod("c1")).unwrap();
        let calls = f.calls();
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|c| c.stdin.get("prevResult").is_none()));
        assert!(!cache.exists());
    }
}

#[test]
fn check_rules() {
    // conformance.md #39, 87, 31
    let f = Fixture::new(&["first", "second"]);
    let r = result("1.0.0", "fd00::10/96");
    f.script("first", "ADD", &r.to_string(), 0);
    f.script("second", "ADD", &r.to_string(), 0);
    let l = list("1.0.0", json!({}));
    f.rt.add(&l, &pod("c1")).unwrap();
    f.clear_log();
    f.rt.check(&l, &pod("c1")).unwrap();
    let calls = f.calls();
    let order: Vec<_> = calls
        .iter()
        .map(|c| (c.plugin.as_str(), c.command.as_str()))
        .collect();
    assert_eq!(order, vec![("first", "CHECK"), ("second", "CHECK")]);
    assert!(calls.iter().all(|c| c.stdin["prevResult"] == r));

    f.clear_log();
    f.rt.check(&list("1.0.0", json!({"disableCheck": true})), &pod("c1"))
        .unwrap();
    assert!(f.calls().is_empty());
    assert_eq!(
        f.rt.check(&list("0.3.1", json!({})), &pod("c1"))
            .unwrap_err()
            .code(),
        1
    );
    assert!(f.calls().is_empty());

    f.script("second", "CHECK", r#"{"code":102,"msg":"address gone"}"#, 1);
    assert_eq!(f.rt.check(&l, &pod("c1")).unwrap_err().code(), 102);
}

#[test]
fn gc_synthetic_del_then_gc_with_both_keys() {
    // conformance.md #47, 51, 52, 88
    let f = Fixture::new(&["first", "second"]);
    let r = result("1.1.0", "fd00::10/96");
    f.script("first", "ADD", &r.to_string(), 0);
    f.script("second", "ADD", &r.to_string(), 0);
    let l = list("1.1.0", json!({}));
    let other = list("1.1.0", json!({"name": "other"}));
    f.rt.add(&l, &pod("c1")).unwrap();
    f.rt.add(&l, &pod("c2")).unwrap();
    let mut c3 = pod("c3");
    c3.ifname = "net1".into();
    c3.netns = Some(PathBuf::from("/proc/999999/ns/net"));
    f.rt.add(&l, &c3).unwrap();
    f.rt.add(&other, &pod("c4")).unwrap();
    f.clear_log();

    let report = f.rt.gc(&l, &[("c1", "eth0")]).unwrap();
    assert!(report.gc_sent);
    assert_eq!(
        report.stale_deleted,
        vec![
            ("c2".to_string(), "eth0".to_string()),
            ("c3".to_string(), "net1".to_string())
        ]
    );
    let calls = f.calls();
    let dels: Vec<&Call> = calls.iter().filter(|c| c.command == "DEL").collect();
    assert_eq!(dels.len(), 4);
    assert_eq!(dels[0].env["CNI_CONTAINERID"], "c2");
    assert_eq!(dels[0].plugin, "second");
    let c3_del = dels
        .iter()
        .find(|c| c.env["CNI_CONTAINERID"] == "c3")
        .unwrap();
    assert_eq!(c3_del.env["CNI_NETNS"], "/proc/999999/ns/net");
    assert_eq!(c3_del.env["CNI_IFNAME"], "net1");
    assert_eq!(c3_del.env["CNI_ARGS"], "IgnoreUnknown=1;K8S_POD_NAME=web");
    assert_eq!(c3_del.stdin["prevResult"], r);

    let gcs: Vec<&Call> = calls.iter().filter(|c| c.command == "GC").collect();
    assert_eq!(
        gcs.iter().map(|c| c.plugin.as_str()).collect::<Vec<_>>(),
        vec!["first", "second"]
    );
    let want = json!([{"containerID": "c1", "ifname": "eth0"}]);
    for c in gcs {
        assert_eq!(c.stdin["cni.dev/valid-attachments"], want);
        assert_eq!(c.stdin["cni.dev/attachments"], want);
        assert_eq!(c.stdin["name"], "net1");
        assert_eq!(c.stdin["cniVersion"], "1.1.0");
        assert!(c.stdin.get("prevResult").is_none() && c.stdin.get("runtimeConfig").is_none());
        for k in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"] {
            assert_eq!(c.env[k], "", "{k} must be empty for GC");
        }
        assert_eq!(c.env["CNI_PATH"], f.cni_path());
    }
    assert!(f.rt.cache_path("net1", &pod("c1")).exists());
    assert!(!f.rt.cache_path("net1", &pod("c2")).exists());
    assert!(
        f.rt.cache_path("other", &pod("c4")).exists(),
        "other networks untouched"
    );
}

#[test]
fn gc_disabled_old_version_and_errors() {
    let f = Fixture::new(&["first", "second"]);
    let r = result("1.0.0", "fd00::10/96");
    f.script("first", "ADD", &r.to_string(), 0);
    f.script("second", "ADD", &r.to_string(), 0);
    let l = list("1.0.0", json!({}));
    f.rt.add(&l, &pod("c1")).unwrap();
    f.clear_log();
    let none: &[(&str, &str)] = &[];
    let rep =
        f.rt.gc(&list("1.0.0", json!({"disableGC": true})), none)
            .unwrap();
    assert_eq!(rep, GcReport::default());
    assert!(f.calls().is_empty());
    // Before 1.1.0: synthetic DELs only, no GC verb.
    let rep = f.rt.gc(&l, none).unwrap();
    assert!(!rep.gc_sent);
    assert_eq!(rep.stale_deleted.len(), 1);
    assert!(f.calls().iter().all(|c| c.command == "DEL"));
    // 1.1.0: one plugin's GC fails, the other still runs, error reported.
    f.clear_log();
    f.script("first", "GC", r#"{"code":5,"msg":"store unreadable"}"#, 1);
    let e = f.rt.gc(&list("1.1.0", json!({})), none).unwrap_err();
    assert_eq!(e.code(), 5);
    assert!(e.to_string().contains("store unreadable"), "{e}");
    let gcs: Vec<_> = f
        .calls()
        .into_iter()
        .filter(|c| c.command == "GC")
        .map(|c| c.plugin)
        .collect();
    assert_eq!(gcs, vec!["first", "second"]);
    // A failed synthetic DEL is reported, keeps its cache for a retry,
    // and GC is still sent (conformance.md #49, 88).
    let l11 = list("1.1.0", json!({}));
    f.script("first", "GC", "", 0);
    f.rt.add(&l11, &pod("c5")).unwrap();
    f.script("second", "DEL", r#"{"code":101,"msg":"EPERM"}"#, 1);
    f.clear_log();
    let e = f.rt.gc(&l11, none).unwrap_err();
    assert!(e.to_string().contains("stale attachment c5/eth0"), "{e}");
    assert_eq!(e.code(), 101);
    assert!(f.rt.cache_path("net1", &pod("c5")).exists());
    assert_eq!(f.calls().iter().filter(|c| c.command == "GC").count(), 2);
}

#[test]
fn status_rules() {
    // conformance.md #45, 89
    let f = Fixture::new(&["first", "second"]);
    f.rt.status(&list("1.0.0", json!({}))).unwrap();
    assert!(f.calls().is_empty(), "no STATUS before 1.1.0");
    let l = list("1.1.0", json!({}));
    f.rt.status(&l).unwrap();
    let calls = f.calls();
    assert_eq!(calls.len(), 2);
    for c in &calls {
        assert_eq!(c.command, "STATUS");
        assert_eq!(c.env["CNI_NETNS"], "");
        assert_eq!(c.env["CNI_CONTAINERID"], "");
        assert_eq!(c.env["CNI_PATH"], f.cni_path());
        assert_eq!(c.stdin["name"], "net1");
    }
    f.clear_log();
    f.script(
        "first",
        "STATUS",
        r#"{"code":50,"msg":"pool exhausted"}"#,
        1,
    );
    let e = f.rt.status(&l).unwrap_err();
    assert_eq!(e.code(), 50);
    assert_eq!(e.to_string(), "pool exhausted");
    assert_eq!(f.calls().len(), 1, "first error stops STATUS");
}

#[test]
fn version_probe_like_libcni() {
    // conformance.md #40, 90
    let f = Fixture::new(&["first", "old"]);
    f.script(
        "first",
        "VERSION",
        r#"{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}"#,
        0,
    );
    let v = f.rt.version("first").unwrap();
    assert_eq!(v["supportedVersions"], json!(["1.0.0", "1.1.0"]));
    let c = &f.calls()[0];
    assert_eq!(c.command, "VERSION");
    assert_eq!(c.stdin, json!({"cniVersion": "1.1.0"}));
    for k in ["CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
        assert_eq!(c.env[k], "dummy");
    }
    f.script(
        "old",
        "VERSION",
        r#"{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}"#,
        1,
    );
    assert_eq!(
        f.rt.version("old").unwrap()["supportedVersions"],
        json!(["0.1.0"])
    );
    f.script(
        "first",
        "VERSION",
        r#"{"cniVersion":"1.1.0","supportedVersions":[]}"#,
        0,
    );
    assert_eq!(f.rt.version("first").unwrap_err().code(), 6);
    assert_eq!(f.rt.version("absent").unwrap_err().code(), 7);
}

#[test]
fn exec_plugin_low_level() {
    let f = Fixture::new(&["first"]);
    f.script("first", "BOGUS", r#"{"code":4,"msg":"bad verb"}"#, 1);
    let bin = f.root.path().join("bin/first");
    let out = exec_plugin(&bin, "BOGUS", &[("CNI_PATH", "/x")], b"{}").unwrap();
    assert!(!out.success());
    assert_eq!(out.error().unwrap().code(), 4);
    assert_eq!(f.calls()[0].env["CNI_PATH"], "/x");
    assert!(exec_plugin(&f.root.path().join("bin/none"), "ADD", &[], b"").is_err());
}

#[test]
fn exec_retries_text_file_busy() {
    // conformance.md #90: a binary still open for writing is ETXTBSY.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("busy");
    let mut w = std::fs::File::create(&bin).unwrap();
    w.write_all(b"#!/bin/sh\necho '{\"ok\":1}'\n").unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(w);
    });
    let out = exec_plugin(&bin, "VERSION", &[], b"").unwrap();
    closer.join().unwrap();
    assert!(out.success());
    assert_eq!(out.stdout, b"{\"ok\":1}\n");
}
