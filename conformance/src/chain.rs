//! A whole node for the hardening suites (`tests/faults_*.rs`, the soak):
//! one node namespace playing the host, a CNI_PATH with bridge6,
//! ipam-prefix and firewall6, a data dir, and the full chain run the way
//! libcni runs a conflist — ADD in order with each result as the next
//! plugin's prevResult, DEL in reverse order, GC to every plugin.
//!
//! And the read-back of everything that could leak, taken from the kernel
//! and the disk, never from the plugins' answers: host veths in the node,
//! store records and slot links, per-pod firewall rules.

use crate::harness::{self, Invocation, Netns, Output, TempDir};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

/// The node prefix of every chain (ULA, so only our namespaces see it).
pub const NODE_PREFIX: &str = "fd00:8a:0:0:1::/80";
/// `clusterPrefixes` of firewall6.
pub const CLUSTER: &str = "fd00:8a::/64";

pub struct Chain {
    pub node: Netns,
    /// CNI_PATH: links to the binaries under test (a test may put a wrapper
    /// in front of one).
    pub bins: TempDir,
    /// ipam-prefix's `dataDir` (a test may mount something here).
    pub data_dir: PathBuf,
    _data: TempDir,
    pub network: String,
    pub bridge: String,
    /// Keys merged into every plugin's config (e.g. `logFile`).
    pub extra: Map<String, Value>,
}

impl Chain {
    /// A fresh node whose namespace and link names start with `prefix`.
    pub fn new(prefix: &str) -> Chain {
        let node = Netns::new(prefix);
        // Pods share no layer 2: the chain needs no br_netfilter (issue 15).
        node.bridge_nf_call_ip6tables_off();
        let bins = TempDir::new(&format!("{prefix}bin"));
        for p in ["bridge6", "ipam-prefix", "firewall6"] {
            harness::install_as(&harness::plugin(p), bins.path(), p);
        }
        let data = TempDir::new(&format!("{prefix}data"));
        Chain {
            node,
            bins,
            data_dir: data.path().join("store"),
            _data: data,
            network: harness::unique_name("hard").replace('-', "_"),
            bridge: format!("hb{}", std::process::id() % 1_000_000),
            extra: Map::new(),
        }
    }

    fn with_extra(&self, mut c: Value) -> Value {
        for (k, v) in &self.extra {
            c[k] = v.clone();
        }
        c
    }

    /// bridge6's config (with the ipam object), at `version`.
    pub fn bridge_conf(&self, version: &str) -> Value {
        self.with_extra(json!({
            "cniVersion": version,
            "name": self.network,
            "type": "bridge6",
            "bridge": self.bridge,
            "ipam": {
                "type": "ipam-prefix",
                "dataDir": self.data_dir,
                "prefixes": [ { "node": NODE_PREFIX } ],
                "routes": [ { "dst": "::/0" } ],
            },
        }))
    }

    /// firewall6's config; `prev` = Null for none (DEL without prevResult).
    pub fn firewall_conf(&self, version: &str, prev: &Value) -> Value {
        let mut c = self.with_extra(json!({
            "cniVersion": version,
            "name": self.network,
            "type": "firewall6",
            "clusterPrefixes": [CLUSTER],
        }));
        if !prev.is_null() {
            c["prevResult"] = prev.clone();
        }
        c
    }

    pub fn bin(&self, plugin: &str) -> PathBuf {
        self.bins.join(plugin)
    }

    /// One plugin call for an attachment, inside the node.
    pub fn call(
        &self,
        plugin: &str,
        cmd: &str,
        cid: &str,
        netns: &str,
        conf: &Value,
    ) -> Invocation {
        Invocation::attachment(self.bin(plugin), cmd, cid, netns, "eth0")
            .in_netns(&self.node)
            .stdin_json(conf)
    }

    /// The chain's ADD: bridge6 (which runs ipam-prefix), then firewall6
    /// with bridge6's result. Stops at the first failure, as libcni does;
    /// returns every output so far.
    pub fn add(&self, cid: &str, netns: &str) -> Vec<Output> {
        let b = self
            .call("bridge6", "ADD", cid, netns, &self.bridge_conf("1.0.0"))
            .run();
        if !b.success() {
            return vec![b];
        }
        let prev = b.json.clone().unwrap_or(Value::Null);
        let f = self
            .call(
                "firewall6",
                "ADD",
                cid,
                netns,
                &self.firewall_conf("1.0.0", &prev),
            )
            .run();
        vec![b, f]
    }

    /// The chain's DEL, in reverse order, without prevResult (a runtime
    /// that lost its cache, conformance.md #28); every plugin is called even when
    /// one fails (libcni stops, but then retries the whole DEL).
    pub fn del(&self, cid: &str, netns: &str) -> Vec<Output> {
        vec![
            self.call(
                "firewall6",
                "DEL",
                cid,
                netns,
                &self.firewall_conf("1.0.0", &Value::Null),
            )
            .run(),
            self.call("bridge6", "DEL", cid, netns, &self.bridge_conf("1.0.0"))
                .run(),
        ]
    }

    /// GC (1.1.0) of every plugin with `valid` as the surviving set.
    pub fn gc(&self, valid: &[String]) -> Vec<Output> {
        let list: Vec<Value> = valid
            .iter()
            .map(|c| json!({"containerID": c, "ifname": "eth0"}))
            .collect();
        let mut outs = Vec::new();
        for (plugin, mut conf) in [
            ("bridge6", self.bridge_conf("1.1.0")),
            ("firewall6", self.firewall_conf("1.1.0", &Value::Null)),
        ] {
            conf["cni.dev/valid-attachments"] = Value::Array(list.clone());
            outs.push(
                Invocation::network(self.bin(plugin), "GC")
                    .in_netns(&self.node)
                    .stdin_json(&conf)
                    .run(),
            );
        }
        outs
    }

    /// Host-side veths in the node (bridge6 names them `c6<13 hex>`).
    pub fn host_veths(&self) -> Vec<String> {
        let v: Value = serde_json::from_str(&self.node.exec_ok(&["ip", "-j", "link", "show"]))
            .unwrap_or(Value::Array(vec![]));
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|l| l["ifname"].as_str())
            .filter(|n| n.starts_with("c6") && n.len() == 15)
            .map(str::to_string)
            .collect()
    }

    /// The network's store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join(&self.network)
    }

    /// Store records (`attachments/`), temp files excluded.
    pub fn records(&self) -> Vec<String> {
        names(&self.store_dir().join("attachments"))
    }

    /// Slot links (`slots/`).
    pub fn slot_links(&self) -> Vec<String> {
        names(&self.store_dir().join("slots"))
    }

    /// Every rule of the node (`ip6tables -S`).
    pub fn rules(&self) -> Vec<String> {
        self.node
            .exec_ok(&["ip6tables", "-w", "-S"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Per-pod rules of this network (tag `firewall6 net=<net> if=…`).
    pub fn pod_rules(&self) -> Vec<String> {
        let tag = format!("firewall6 net={} if=", self.network);
        self.rules()
            .into_iter()
            .filter(|l| l.contains(&tag))
            .collect()
    }

    /// Panics, listing what is left, unless the node holds no veth, record,
    /// slot link or per-pod rule.
    pub fn assert_clean(&self, when: &str) {
        let (v, r, s, p) = (
            self.host_veths(),
            self.records(),
            self.slot_links(),
            self.pod_rules(),
        );
        assert!(
            v.is_empty() && r.is_empty() && s.is_empty() && p.is_empty(),
            "{when}: node not clean: veths {v:?} records {r:?} slot links {s:?} pod rules {p:#?}"
        );
    }
}

/// Entry names of a directory, temp files (`.…`) excluded; none if absent.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with('.'))
        .collect();
    v.sort();
    v
}

/// A spec error: exit ≠ 0, stdout exactly one JSON object with an integer
/// `code` and a non-empty `msg`, no panic. Returns (code, msg).
pub fn assert_spec_error(o: &Output) -> (u64, String) {
    o.assert_no_panic();
    assert_ne!(
        o.code,
        Some(0),
        "expected an error: {} / {}",
        o.stdout,
        o.stderr
    );
    let v = o.json.as_ref().unwrap_or_else(|| {
        panic!(
            "stdout is not one JSON document: {:?} (stderr {})",
            o.stdout, o.stderr
        )
    });
    let code = v["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("no integer code: {v}"));
    let msg = v["msg"].as_str().unwrap_or("").to_string();
    assert!(!msg.is_empty(), "empty msg: {v}");
    (code, msg)
}
