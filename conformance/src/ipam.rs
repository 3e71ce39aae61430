//! IPAM fixtures: network configs for `ipam-prefix` (and the same network
//! mapped onto the reference `host-local`), the address plan computed
//! independently of the plugin, and a read-only view of the plugin's
//! on-disk store so tests can prove what was (not) left behind.
//!
//! The expected addresses are computed here from docs/design.md's rule, never
//! taken from the plugin's own output: pod range = node prefix /L + 16-bit
//! subnetId → /(L+16); slot k → range | k.

use crate::harness::{self, dir_names, Invocation, TempDir};
use ipnet::Ipv6Net;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Pod range of a node prefix: /L + subnetId → /(L+16).
pub fn pod_range(node: Ipv6Net, subnet_id: u16) -> Ipv6Net {
    let l = node.prefix_len();
    assert!(l + 16 <= 120, "node prefix {node} too long");
    let base = u128::from(node.network()) | ((subnet_id as u128) << (128 - (l as u32 + 16)));
    Ipv6Net::new(Ipv6Addr::from(base), l + 16).unwrap()
}

/// Address of slot `k` in a pod range.
pub fn slot_addr(range: Ipv6Net, slot: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(range.network()) | slot)
}

/// The gateway of a pod range (slot 1).
pub fn gateway(range: Ipv6Net) -> Ipv6Addr {
    slot_addr(range, 1)
}

/// The slot (interface id within the range) of an address.
pub fn slot_of(range: Ipv6Net, addr: Ipv6Addr) -> u128 {
    let host_bits = 128 - range.prefix_len() as u32;
    u128::from(addr) & ((1u128 << host_bits) - 1)
}

/// First slot handed to pods (`::0`–`::f` are reserved).
pub const FIRST_SLOT: u128 = 0x10;

/// A network served by ipam-prefix: a data dir (shared by networks made
/// with [`IpamNet::sibling`]), a network name, and the `ipam` object.
#[derive(Clone)]
pub struct IpamNet {
    data: Arc<TempDir>,
    pub name: String,
    pub ipam: Value,
    /// Top-level keys merged into every config (capabilities, args, …).
    pub extra: Map<String, Value>,
}

impl IpamNet {
    /// A network with literal node prefixes, default subnetId.
    pub fn new(node_prefixes: &[&str]) -> IpamNet {
        let prefixes: Vec<Value> = node_prefixes.iter().map(|p| json!({"node": p})).collect();
        IpamNet::with_prefixes(Value::Array(prefixes))
    }

    /// A network with an arbitrary `prefixes` array.
    pub fn with_prefixes(prefixes: Value) -> IpamNet {
        let data = Arc::new(TempDir::new("ipam"));
        let name = harness::unique_name("net").replace('-', "_");
        let ipam = json!({
            "type": "ipam-prefix",
            "dataDir": data.path_str(),
            "prefixes": prefixes,
        });
        IpamNet {
            data,
            name,
            ipam,
            extra: Map::new(),
        }
    }

    /// Another network in the same data dir (GC must keep them apart).
    pub fn sibling(&self, node_prefixes: &[&str]) -> IpamNet {
        let mut n = self.clone();
        n.name = harness::unique_name("other").replace('-', "_");
        n.ipam["prefixes"] =
            Value::Array(node_prefixes.iter().map(|p| json!({"node": p})).collect());
        n
    }

    pub fn set_ipam(mut self, key: &str, v: Value) -> IpamNet {
        self.ipam[key] = v;
        self
    }

    pub fn set_top(mut self, key: &str, v: Value) -> IpamNet {
        self.extra.insert(key.to_string(), v);
        self
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// The network config as the main plugin received it (and passes on
    /// whole to its IPAM, conformance.md #77).
    pub fn conf(&self, version: &str) -> Value {
        let mut c = json!({
            "cniVersion": version,
            "name": self.name,
            "type": "bridge6",
            "ipam": self.ipam,
        });
        for (k, v) in &self.extra {
            c[k] = v.clone();
        }
        c
    }

    /// An ADD/DEL/CHECK call for one attachment.
    pub fn call(
        &self,
        cmd: &str,
        version: &str,
        container_id: &str,
        netns: &str,
        ifname: &str,
    ) -> Invocation {
        Invocation::attachment(
            harness::plugin("ipam-prefix"),
            cmd,
            container_id,
            netns,
            ifname,
        )
        .stdin_json(&self.conf(version))
    }

    /// A GC/STATUS call as libcni makes it (attachment vars empty).
    pub fn network_call(&self, cmd: &str, conf: &Value) -> Invocation {
        Invocation::network(harness::plugin("ipam-prefix"), cmd).stdin_json(conf)
    }

    /// GC with `cni.dev/valid-attachments` = `valid` (containerID, ifname).
    pub fn gc(&self, valid: &[(&str, &str)]) -> Invocation {
        let mut c = self.conf("1.1.0");
        c["cni.dev/valid-attachments"] = attachments_json(valid);
        self.network_call("GC", &c)
    }

    pub fn status(&self) -> Invocation {
        self.network_call("STATUS", &self.conf("1.1.0"))
    }

    pub fn store(&self) -> Store {
        Store {
            dir: self.data.path().join(&self.name),
        }
    }

    /// The `node` prefixes of this network (literal ones only).
    pub fn node_prefixes(&self) -> Vec<Ipv6Net> {
        self.ipam["prefixes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("node").and_then(Value::as_str))
            .map(|s| s.parse().expect("test node prefix"))
            .collect()
    }

    pub fn subnet_id(&self) -> u16 {
        self.ipam
            .get("subnetId")
            .and_then(Value::as_u64)
            .unwrap_or(1) as u16
    }

    /// Pod ranges of the literal prefixes, config order.
    pub fn pod_ranges(&self) -> Vec<Ipv6Net> {
        self.node_prefixes()
            .into_iter()
            .map(|n| pod_range(n, self.subnet_id()))
            .collect()
    }

    /// The same network for the reference host-local: one range set per
    /// pod range (`ranges: [[{subnet}]]`), same dataDir layout root.
    pub fn host_local_conf(&self, version: &str, data_dir: &Path) -> Value {
        let ranges: Vec<Value> = self
            .pod_ranges()
            .iter()
            .map(|r| json!([{ "subnet": r.to_string() }]))
            .collect();
        let mut ipam = json!({
            "type": "host-local",
            "dataDir": data_dir.display().to_string(),
            "ranges": ranges,
        });
        if let Some(r) = self.ipam.get("routes") {
            ipam["routes"] = r.clone();
        }
        json!({
            "cniVersion": version,
            "name": self.name,
            "type": "bridge",
            "ipam": ipam,
        })
    }
}

/// `[{containerID, ifname}, …]` for GC.
pub fn attachments_json(valid: &[(&str, &str)]) -> Value {
    Value::Array(
        valid
            .iter()
            .map(|(c, i)| json!({"containerID": c, "ifname": i}))
            .collect(),
    )
}

/// Addresses of an ADD result, in result order.
pub fn result_addrs(result: &Value) -> Vec<Ipv6Net> {
    result["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("result has no ips: {result}"))
        .iter()
        .map(|ip| {
            ip["address"]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("bad ips[].address in {result}"))
        })
        .collect()
}

/// Read-only view of `<dataDir>/<network>/`.
pub struct Store {
    pub dir: PathBuf,
}

impl Store {
    pub fn attachments_dir(&self) -> PathBuf {
        self.dir.join("attachments")
    }

    pub fn slots_dir(&self) -> PathBuf {
        self.dir.join("slots")
    }

    /// Record file name of an attachment.
    pub fn key(container_id: &str, ifname: &str) -> String {
        format!("{container_id}@{ifname}")
    }

    /// Names of entries in attachments/ (including any stray files).
    pub fn attachment_names(&self) -> std::collections::BTreeSet<String> {
        dir_names(&self.attachments_dir())
    }

    pub fn slot_names(&self) -> std::collections::BTreeSet<String> {
        dir_names(&self.slots_dir())
    }

    /// Every record, parsed; panics naming the file that does not parse.
    /// Hidden names (a writer's temp files, `.name.tmp.PID`) are not
    /// records: a killed writer may leave one half-written.
    pub fn records(&self) -> BTreeMap<String, Value> {
        self.attachment_names()
            .into_iter()
            .filter(|n| !n.starts_with('.'))
            .map(|n| {
                let p = self.attachments_dir().join(&n);
                let bytes =
                    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
                let v: Value = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                    panic!(
                        "record {} does not parse ({e}): {:?}",
                        p.display(),
                        String::from_utf8_lossy(&bytes)
                    )
                });
                (n, v)
            })
            .collect()
    }

    pub fn record(&self, container_id: &str, ifname: &str) -> Option<Value> {
        let p = self
            .attachments_dir()
            .join(Store::key(container_id, ifname));
        std::fs::read(p)
            .ok()
            .map(|b| serde_json::from_slice(&b).expect("record parses"))
    }

    /// slots/: slot number (file name, hex) → link target.
    pub fn slots(&self) -> BTreeMap<u128, String> {
        self.slot_names()
            .into_iter()
            .map(|n| {
                let p = self.slots_dir().join(&n);
                let slot = u128::from_str_radix(n.trim_start_matches("0x"), 16)
                    .unwrap_or_else(|_| panic!("slot link name {n:?} is not hex"));
                let target = std::fs::read_link(&p)
                    .unwrap_or_else(|e| panic!("slots/{n} is not a symlink: {e}"));
                (slot, target.to_string_lossy().into_owned())
            })
            .collect()
    }

    /// The slot number a record holds (`slot` as a number or hex string).
    pub fn record_slot(rec: &Value) -> u128 {
        match &rec["slot"] {
            Value::Number(n) => n.as_u64().expect("slot number") as u128,
            Value::String(s) => u128::from_str_radix(s.trim_start_matches("0x"), 16)
                .unwrap_or_else(|_| panic!("record slot {s:?} is not hex")),
            other => panic!("record has no slot: {other}"),
        }
    }

    /// The store is coherent: every record has exactly one slot link
    /// pointing at it and every link points at an existing record with
    /// that slot. Returns the record names.
    pub fn assert_consistent(&self) -> Vec<String> {
        let records = self.records();
        let slots = self.slots();
        assert_eq!(
            records.len(),
            slots.len(),
            "records {:?} vs slot links {slots:?}",
            records.keys().collect::<Vec<_>>()
        );
        for (slot, target) in &slots {
            let rec = records.get(target).unwrap_or_else(|| {
                panic!(
                    "slots/{slot:x} -> {target}: no such record in {:?}",
                    records.keys()
                )
            });
            assert_eq!(
                Store::record_slot(rec),
                *slot,
                "slots/{slot:x} points at {target} whose record says otherwise: {rec}"
            );
        }
        records.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.attachment_names().is_empty() && self.slot_names().is_empty()
    }
}

/// The node prefixes of docs/design.md's example node: cluster ULA node 1 and
/// the node's provider GUA cut to /80.
pub const ULA_NODE: &str = "fd8c:1f0a:77e3:0:1::/80";
pub const GUA_NODE: &str = "2001:db8:7:12::/80";

/// Prefix for every namespace the IPAM suites create.
pub const NETNS_PREFIX: &str = "c6i";

/// The usual two-prefix network (ULA first, GUA second).
pub fn demo_net() -> IpamNet {
    harness::require_root();
    IpamNet::new(&[ULA_NODE, GUA_NODE])
}

/// This machine's boot id, as the store records it.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .expect("read boot_id")
        .trim()
        .to_string()
}
