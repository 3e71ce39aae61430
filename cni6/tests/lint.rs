//! `cni6 lint` on the corpus of broken conflists in testdata/lint/, against
//! a fake node (interfaces, ip6tables, bin dir), so every check runs the
//! same on any machine; then `cni6 lint DIR` run as an operator runs it,
//! for the list order and the exit codes.

use cni6::commands::lint::{self, Context, Level, NodeFacts};
use ipam_prefix::config::Scope;
use ipam_prefix::iface::in_scope;
use ipam_prefix::plan::NodePrefix;
use serde_json::Value;
use std::net::Ipv6Addr;
use std::path::Path;

/// eth0: the node's ULA /80 and provider /64; ens4: a ULA /64 only.
struct FakeNode;

impl NodeFacts for FakeNode {
    fn interface_prefix(&self, ifname: &str, scope: Scope, len: u8) -> Result<NodePrefix, String> {
        let addrs: &[(&str, u8)] = match ifname {
            "eth0" => &[("fd8c:1f0a:77e3:0:5::1", 80), ("2001:db8:7:12::1", 64)],
            "ens4" => &[("fd8c:1f0a:77e3::5", 64)],
            _ => return Err("no such interface".into()),
        };
        let (a, plen) = addrs
            .iter()
            .map(|(a, l)| (a.parse::<Ipv6Addr>().unwrap(), *l))
            .find(|(a, _)| in_scope(*a, scope))
            .ok_or_else(|| format!("no {} address", scope.as_str()))?;
        NodePrefix::from_interface(a, plen, len)
    }
    fn has_ip6tables(&self) -> bool {
        true
    }
    fn forwarding(&self) -> Option<bool> {
        Some(true)
    }
    fn has_file(&self, p: &Path) -> bool {
        p.parent() == Some(Path::new("/opt/cni/bin"))
            && ["bridge6", "ipam-prefix", "firewall6", "loopback", "portmap"]
                .iter()
                .any(|n| p.file_name() == Some(n.as_ref()))
    }
    /// Debian bookworm's portmap (1.1.1) speaks up to 1.0.0.
    fn plugin_versions(&self, bin: &Path) -> Option<Vec<String>> {
        (bin.file_name() == Some("portmap".as_ref())).then(|| {
            ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]
                .map(String::from)
                .to_vec()
        })
    }
}

#[test]
fn every_case_of_the_corpus_gets_its_findings() {
    let mut files: Vec<_> = std::fs::read_dir(testdata::lint_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(files.len() >= 12, "corpus too small: {}", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let case: Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
        let bytes = match (&case["list"], &case["text"]) {
            (Value::Object(_), _) => serde_json::to_vec(&case["list"]).unwrap(),
            (_, Value::String(t)) => t.as_bytes().to_vec(),
            _ => panic!("{}: no list or text", f.display()),
        };
        let ctx = Context {
            cluster_ula: case["clusterUla"].as_str().map(|s| s.parse().unwrap()),
            bin_dir: Path::new("/opt/cni/bin"),
            ours_installed_by_caller: false,
        };
        let findings = lint::lint_list("case", &bytes, &ctx, &FakeNode);
        let text: Vec<String> = findings
            .iter()
            .map(|f| format!("{}: {}", f.level.as_str(), f.message))
            .collect();
        let text = text.join("\n");
        let sound = lint::unsound(&findings) == 0;
        if case["sound"].as_bool() != Some(sound) {
            failures.push(format!(
                "{}: sound={sound}, expected {}\n{text}",
                f.display(),
                case["sound"]
            ));
        }
        for e in case["expect"].as_array().unwrap() {
            let e = e.as_str().unwrap();
            if !text.contains(e) {
                failures.push(format!("{}: no finding with {e:?}\n{text}", f.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn install_preflight_skips_only_the_plugins_it_writes() {
    // The same checks as lint; bridge6 and firewall6 are not looked for in
    // the bin dir because install is about to write them.
    let case: Value = serde_json::from_slice(
        &std::fs::read(testdata::lint_dir().join("001-sound.json")).unwrap(),
    )
    .unwrap();
    let bytes = serde_json::to_vec(&case["list"]).unwrap();
    let empty = tempfile::tempdir().unwrap();
    let ctx = Context {
        cluster_ula: None,
        bin_dir: empty.path(),
        ours_installed_by_caller: true,
    };
    let f = lint::lint_list("x", &bytes, &ctx, &FakeNode);
    assert!(f.iter().all(|f| f.level == Level::Note), "{f:?}");
}

fn cni6(args: &[&str]) -> (i32, String, String) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_cni6"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn lint_dir_reports_a_list_sorting_first_and_exits_1() {
    let d = tempfile::tempdir().unwrap();
    let bin = tempfile::tempdir().unwrap();
    // A list that needs no interface: literal ULA node prefix, no firewall.
    let ours = r#"{"cniVersion":"1.0.0","name":"cluster","plugins":[
        {"type":"bridge6","ipam":{"type":"ipam-prefix",
         "prefixes":[{"node":"fd8c:1f0a:77e3:0:5::/80"}]}}]}"#;
    std::fs::write(d.path().join("10-cni6.conflist"), ours).unwrap();
    std::fs::write(
        d.path().join("05-other.conflist"),
        r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge"}]}"#,
    )
    .unwrap();
    let dir = d.path().to_str().unwrap();
    let bin_s = bin.path().to_str().unwrap();
    let (code, out, err) = cni6(&["lint", dir, "--bin-dir", bin_s]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("05-other.conflist sorts before 10-cni6.conflist"),
        "{out}"
    );
    assert!(out.contains("loopback not found"), "{out}");
    assert!(out.contains("plugin bridge6 not found"), "{out}");

    // Once the other list is gone and the binaries are there: sound, exit 0.
    std::fs::remove_file(d.path().join("05-other.conflist")).unwrap();
    for p in ["bridge6", "ipam-prefix", "loopback"] {
        std::fs::write(bin.path().join(p), "").unwrap();
    }
    let (code, out, err) = cni6(&["lint", dir, "--bin-dir", bin_s, "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let errors: Vec<&Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["level"] != "note")
        .collect();
    // Forwarding and br_netfilter's hook are the machine's: only accept those.
    let only_forwarding = errors.iter().all(|f| {
        let m = f["message"].as_str().unwrap();
        m.contains("forwarding") || m.contains("bridge-nf-call-ip6tables is 1")
    });
    assert!(only_forwarding, "{out}");
    assert_eq!(code, if errors.is_empty() { 0 } else { 1 }, "{out}{err}");
    assert_eq!(v["sound"], errors.is_empty());

    // A broken list the runtime does not use (it sorts after ours) is
    // listed, but does not make the node unsound.
    std::fs::write(
        d.path().join("87-podman-bridge.conflist"),
        r#"{"cniVersion":"1.0.0","name":"podman","plugins":[{"type":"bridge"}]}"#,
    )
    .unwrap();
    let (code2, out2, _) = cni6(&["lint", dir, "--bin-dir", bin_s]);
    assert!(
        out2.contains("note: (unused: the runtime uses 10-cni6.conflist) plugin bridge not found"),
        "{out2}"
    );
    assert_eq!(code2, code, "{out2}");
    // multus sorting first delegates: no order error.
    std::fs::write(
        d.path().join("00-multus.conf"),
        r#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus"}"#,
    )
    .unwrap();
    let (_, out3, _) = cni6(&["lint", dir, "--bin-dir", bin_s]);
    assert!(!out3.contains("sorts before"), "{out3}");
    // ...but another list behind multus and before ours is still in front
    // (multus would delegate to it): the rule install applies too.
    std::fs::write(
        d.path().join("05-other.conflist"),
        r#"{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge"}]}"#,
    )
    .unwrap();
    let (code4, out4, _) = cni6(&["lint", dir, "--bin-dir", bin_s]);
    assert_eq!(code4, 1, "{out4}");
    assert!(
        out4.contains("error: 05-other.conflist sorts before 10-cni6.conflist"),
        "{out4}"
    );

    // A path that does not exist is a usage error.
    let (code, _, err) = cni6(&["lint", "/nonexistent/x.conflist"]);
    assert_eq!(code, 2, "{err}");
}

/// A node whose br_netfilter hook for IPv6 is on.
struct BridgeNfOn;

impl NodeFacts for BridgeNfOn {
    fn interface_prefix(&self, i: &str, s: Scope, l: u8) -> Result<NodePrefix, String> {
        FakeNode.interface_prefix(i, s, l)
    }
    fn has_ip6tables(&self) -> bool {
        true
    }
    fn forwarding(&self) -> Option<bool> {
        Some(true)
    }
    fn bridge_nf_call_ip6tables(&self) -> Option<bool> {
        Some(true)
    }
}

#[test]
fn bridge_nf_call_ip6tables_on_is_an_error_naming_effect_and_fix() {
    let f = lint::node_findings("node", &BridgeNfOn);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].level, Level::Error);
    for part in [
        "bridge-nf-call-ip6tables is 1",
        "same node",
        "isolated ports",
        "cni6 install --prepare-node",
    ] {
        assert!(f[0].message.contains(part), "{part}: {}", f[0].message);
    }
    // Off, or no br_netfilter at all: nothing to say.
    assert!(lint::node_findings("node", &FakeNode).is_empty());
}

/// A node whose bridge `br0` also holds its uplink `eth0`, not isolated.
struct UplinkOnBridge;

impl NodeFacts for UplinkOnBridge {
    fn interface_prefix(&self, i: &str, s: Scope, l: u8) -> Result<NodePrefix, String> {
        FakeNode.interface_prefix(i, s, l)
    }
    fn has_ip6tables(&self) -> bool {
        true
    }
    fn forwarding(&self) -> Option<bool> {
        Some(true)
    }
    fn has_file(&self, p: &Path) -> bool {
        FakeNode.has_file(p)
    }
    fn layer2_openings(&self, bridge: &str) -> Result<Vec<String>, String> {
        Ok(if bridge == "br0" {
            vec!["eth0".into()]
        } else {
            vec![]
        })
    }
}

#[test]
fn a_bridge_holding_an_uplink_not_isolated_is_an_error_naming_network_port_and_fix() {
    let list = |bridge: &str| {
        format!(
            r#"{{"cniVersion":"1.0.0","name":"cluster","plugins":[{{"type":"bridge6","bridge":"{bridge}",
            "ipam":{{"type":"ipam-prefix","subnetId":1,"prefixes":[{{"fromInterface":"eth0","scope":"ula"}}]}}}}]}}"#
        )
    };
    let ctx = Context {
        cluster_ula: None,
        bin_dir: Path::new("/opt/cni/bin"),
        ours_installed_by_caller: false,
    };
    let f = lint::lint_list("case", list("br0").as_bytes(), &ctx, &UplinkOnBridge);
    let shared: Vec<_> = f.iter().filter(|f| f.message.contains("eth0")).collect();
    assert_eq!(shared.len(), 1, "{f:?}");
    assert_eq!(shared[0].level, Level::Error);
    for part in [
        "network cluster",
        "bridge br0",
        "port(s) eth0",
        "not isolated",
        "`bridge` key",
        "bridge link set dev eth0 isolated on",
    ] {
        assert!(
            shared[0].message.contains(part),
            "{part}: {}",
            shared[0].message
        );
    }
    // cni6's own bridge: nothing to say about it.
    let f = lint::lint_list("case", list("cni6br0").as_bytes(), &ctx, &UplinkOnBridge);
    assert!(lint::unsound(&f) == 0, "{f:?}");
}
