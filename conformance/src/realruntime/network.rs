//! The cni6 networks a test node gets: names, bridges, the node's pod
//! ranges, and the conflists for them.

use crate::harness;
use serde_json::{json, Value};
use std::path::Path;

/// One cni6 network of a test node: its name, bridge, and the node's two
/// pod ranges (literal `node` prefixes: a ULA and a documentation GUA).
#[derive(Debug, Clone)]
pub struct Cni6Net {
    pub name: String,
    pub bridge: String,
    /// Index that makes this network's prefixes distinct (0..=255).
    pub index: u8,
}

/// Cluster ULA /48 every test network's prefixes sit in.
pub const CLUSTER_ULA: &str = "fd00:c6:5::/48";
/// The documentation GUA /48 the test networks' node prefixes sit in;
/// listed in `clusterPrefixes` so pod-to-pod GUA traffic passes firewall6.
pub const CLUSTER_GUA: &str = "2001:db8:c6::/48";

impl Cni6Net {
    pub fn new(tag: &str, index: u8) -> Cni6Net {
        Cni6Net {
            name: harness::unique_name(tag),
            bridge: format!("c6rt{index}"),
            index,
        }
    }

    /// Node ULA prefix C:n::/80 (C = fd00:c6:5:<index>::/64, n = 1).
    pub fn ula_node(&self) -> String {
        format!("fd00:c6:5:{:x}:1::/80", self.index)
    }

    /// Node GUA prefix G:0::/80 (G = 2001:db8:c6:<index>::/64).
    pub fn gua_node(&self) -> String {
        format!("2001:db8:c6:{:x}::/80", self.index)
    }

    /// Pod slot `k` in the ULA pod range (C:1:1::k).
    pub fn ula(&self, slot: u32) -> std::net::Ipv6Addr {
        let s = format!(
            "fd00:c6:5:{:x}:1:1:{:x}:{:x}",
            self.index,
            slot >> 16,
            slot & 0xffff
        );
        s.parse().expect("valid address")
    }

    /// Pod slot `k` in the GUA pod range (G:0:1::k).
    pub fn gua(&self, slot: u32) -> std::net::Ipv6Addr {
        let s = format!(
            "2001:db8:c6:{:x}:0:1:{:x}:{:x}",
            self.index,
            slot >> 16,
            slot & 0xffff
        );
        s.parse().expect("valid address")
    }

    /// The slot (interface id, low 32 bits) of a pod address.
    pub fn slot_of(addr: std::net::Ipv6Addr) -> u32 {
        (u128::from(addr) & 0xffff_ffff) as u32
    }

    pub fn ula_gateway(&self) -> std::net::Ipv6Addr {
        self.ula(1)
    }

    pub fn gua_gateway(&self) -> std::net::Ipv6Addr {
        self.gua(1)
    }

    /// True when `addr` is in this network's ULA pod range.
    pub fn in_ula_range(&self, addr: std::net::Ipv6Addr) -> bool {
        (u128::from(addr) >> 32) == (u128::from(self.ula(0)) >> 32)
    }

    /// True when `addr` is in this network's GUA pod range.
    pub fn in_gua_range(&self, addr: std::net::Ipv6Addr) -> bool {
        (u128::from(addr) >> 32) == (u128::from(self.gua(0)) >> 32)
    }

    /// The full chain (bridge6 + ipam-prefix + firewall6) at `version`.
    pub fn conflist(&self, version: &str, data_dir: &Path) -> Value {
        json!({
            "cniVersion": version,
            "name": self.name,
            "plugins": [self.bridge_plugin(data_dir), self.firewall_plugin()],
        })
    }

    pub fn bridge_plugin(&self, data_dir: &Path) -> Value {
        json!({
            "type": "bridge6",
            "bridge": self.bridge,
            "ipam": {
                "type": "ipam-prefix",
                "dataDir": data_dir,
                "prefixes": [ { "node": self.ula_node() }, { "node": self.gua_node() } ],
                "routes": [ { "dst": "::/0" } ],
            },
        })
    }

    pub fn firewall_plugin(&self) -> Value {
        json!({
            "type": "firewall6",
            "clusterPrefixes": [CLUSTER_ULA, CLUSTER_GUA],
            "ingress": "cluster-only",
        })
    }
}
