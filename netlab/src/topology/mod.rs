//! A multi-node cluster in network namespaces: the proof that cni6 needs no
//! overlay. Used by the multi-node test, `cni6 demo` and the benchmark, so it
//! is an ordinary library (no test-only dependencies).
//!
//! Shape: one *underlay* namespace holding the fabric bridge; N *node*
//! namespaces, each with a veth `eth0` into the fabric carrying an underlay
//! address (fd00:fab::n/64, kept apart from the cluster ULA), the node's GUA
//! /64 (2001:db8:7:n::1/64, from which `fromInterface: eth0, scope: global`
//! derives the node GUA /80) and static routes to every other node's ULA /80
//! and GUA /80 via that node's underlay address — one route per node per
//! prefix, exactly what wireguard AllowedIPs or BGP would install, never one
//! per pod. Pods are further namespaces; plugins run *inside* a node
//! namespace as that node's host (see [`Topology::node_command`]), so the
//! bridges, veths and sysctls they make live there and never in the
//! machine's own namespace.
//!
//! Machines that are not nodes (an upstream router, the IPv4 internet) are
//! [`Host`]s, and long-running processes in the namespaces (BIRD, tayga,
//! unbound: see [`crate::fabric`]) are daemons the topology ends before it
//! removes the namespaces.
//!
//! Everything is named `<tag><pid><letter>…` so parallel runs never
//! collide, and removed by `Drop` (also while unwinding from a panic). The
//! fixture only ever deletes namespaces it recorded as created; a manifest
//! in its state directory lets a later process (`cni6 demo --cleanup`)
//! remove what a `--keep` run left up.

mod build;
mod capture;
mod cni;
mod daemons;
mod exec;
mod manifest;
mod pods;
mod traffic;

pub use capture::{parse_pcap, FabricCapture, FabricPacket};
pub use cni::{Binaries, PodAddresses, CLUSTER_NETWORK};
pub use exec::run;
pub use manifest::{read_manifest, remove_by_manifest};
pub use traffic::{tcp_echo, Exchange};

use exec::{ip_batch, ns_command};
use ipnet::Ipv6Net;
use serde_json::Value;
use std::fs::File;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::AtomicU32;

/// Where namespace bind mounts live (`ip netns add`).
pub const NETNS_DIR: &str = "/var/run/netns";
const MANIFEST: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Cni(#[from] cni_common::Error),
    #[error("invalid topology: {0}")]
    Spec(String),
    #[error(
        "{0} not found: build the workspace (cargo build --release) or point the binary \
         directory (CNI6_BIN_DIR / --bin-dir) at the built binaries"
    )]
    MissingBinary(PathBuf),
    #[error("{0}")]
    Check(String),
}

impl Error {
    fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to build. Addresses follow docs/design.md's plan.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Short name prefix (letters), e.g. "c6m"; pid and a counter are added.
    pub tag: String,
    pub nodes: u16,
    /// The cluster ULA /64 (node n gets C:n::/80).
    pub cluster: Ipv6Net,
    /// Provider GUA space (/48); node n's eth0 gets `<base>:n::1/64`.
    pub gua_base: Ipv6Net,
    /// The fabric's own /64 (node n is `::n`), distinct from the cluster.
    pub underlay: Ipv6Net,
    /// Parent of this topology's state directory (IPAM stores, caches,
    /// conflists, captures, the manifest).
    pub state_root: PathBuf,
    /// Install the hand-written routes between nodes (default). False: the
    /// nodes get none, and the caller feeds the fabric itself (e.g. with
    /// the output of `cni6 routes`).
    pub static_routes: bool,
    /// br_netfilter's hook in the nodes (`net.bridge.bridge-nf-call-ip6tables`,
    /// where the kernel has it). Off by default: cni6's pods share no layer 2
    /// and need none of it (issue 15); the reference chain's firewall sees
    /// bridged pod-to-pod traffic only with it on.
    pub bridge_nf_call_ip6tables: bool,
}

impl Spec {
    pub fn new(tag: &str, nodes: u16) -> Spec {
        Spec {
            tag: tag.to_string(),
            nodes,
            cluster: "fd8c:1f0a:77e3::/64".parse().expect("literal"),
            gua_base: "2001:db8:7::/48".parse().expect("literal"),
            underlay: "fd00:fab::/64".parse().expect("literal"),
            state_root: PathBuf::from("/run/cni6-topology"),
            static_routes: true,
            bridge_nf_call_ip6tables: false,
        }
    }
}

/// One node: a namespace playing a Kubernetes host.
#[derive(Debug)]
pub struct Node {
    pub index: u16,
    /// Namespace name (`ip netns exec <netns>`).
    pub netns: String,
    pub underlay_addr: Ipv6Addr,
    /// This node's ULA /80 (C:n::/80).
    pub ula_prefix: Ipv6Net,
    /// The provider /64 on eth0 and the address the node holds in it.
    pub gua_net: Ipv6Net,
    pub gua_addr: Ipv6Addr,
    /// The node GUA /80 (first /80 of the /64), what `fromInterface` derives.
    pub gua_prefix: Ipv6Net,
    /// Per-node state directory (IPAM dataDir, runtime cache, conflists).
    pub dir: PathBuf,
    ns: File,
}

impl Node {
    pub fn netns_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.netns)
    }

    /// The pod range (prefix + 16-bit subnet id 1 → /96) of a node prefix.
    pub fn pod_range(prefix: &Ipv6Net, subnet_id: u16) -> Ipv6Net {
        let len = prefix.prefix_len();
        let base = u128::from(prefix.network()) | (u128::from(subnet_id) << (112 - len));
        Ipv6Net::new(Ipv6Addr::from(base), len + 16).expect("len + 16 <= 128")
    }
}

/// A pod: a namespace of its own; the plugins give it its interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    /// Index of its node (1-based, as in the address plan).
    pub node: u16,
    /// `/var/run/netns/<name>`: what CNI_NETNS gets.
    pub path: PathBuf,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The running topology. Dropping it removes every namespace it made
/// (pods, nodes, underlay) and its state directory.
#[derive(Debug)]
pub struct Topology {
    spec: Spec,
    base: String,
    underlay_ns: String,
    underlay_file: File,
    bridge: String,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    /// Namespaces created, in creation order (removed in reverse).
    created: Vec<String>,
    /// Namespaces that are neither nodes nor pods (routers, the IPv4
    /// internet): see [`Topology::add_host`].
    hosts: Vec<Host>,
    /// Processes started in the namespaces (BIRD, tayga, unbound): ended
    /// before the namespaces are removed.
    daemons: Vec<Daemon>,
    dir: PathBuf,
    extra: Value,
    keep: bool,
}

/// A namespace of the lab that plays some other machine than a node: an
/// upstream router, a host of the IPv4 internet.
#[derive(Debug)]
pub struct Host {
    pub netns: String,
    ns: File,
}

impl Host {
    pub fn netns_path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.netns)
    }

    /// A command run inside this host (as [`Topology::node_command`]).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        ns_command(&self.ns, program)
    }
}

/// A long-running process of the lab.
#[derive(Debug)]
struct Daemon {
    name: String,
    child: Child,
}

impl Daemon {
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Topology {
    /// Name prefix shared by everything this topology makes.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn underlay_netns(&self) -> &str {
        &self.underlay_ns
    }

    pub fn fabric_bridge(&self) -> &str {
        &self.bridge
    }

    /// A link name unique to this topology (for a node bridge, say):
    /// `<base><suffix>`, at most 15 bytes.
    pub fn link_name(&self, suffix: &str) -> Result<String> {
        let name = format!("{}{suffix}", self.base);
        if name.len() > 15 {
            return Err(Error::Spec(format!("link name {name:?} exceeds 15 bytes")));
        }
        Ok(name)
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Node by its 1-based index.
    pub fn node(&self, index: u16) -> &Node {
        &self.nodes[usize::from(index) - 1]
    }

    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    pub fn pods_of(&self, node: u16) -> impl Iterator<Item = &Pod> {
        self.pods.iter().filter(move |p| p.node == node)
    }

    /// A command that runs `program` inside a node's namespace as that
    /// node's host: it enters the node namespace and, like
    /// `ip netns exec`, gets a private mount namespace with /sys remounted
    /// so /sys/class/net shows the node's links.
    pub fn node_command(&self, node: u16, program: impl AsRef<std::ffi::OsStr>) -> Command {
        ns_command(&self.node(node).ns, program)
    }

    /// A command inside the fabric's namespace (for captures).
    pub fn underlay_command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        ns_command(&self.underlay_file, program)
    }

    /// Run an `ip` command in a namespace this topology made (read-only
    /// inspection: `-6 addr`, `-6 route`, `link`).
    pub fn ip(&self, netns: &str, args: &[&str]) -> Result<String> {
        if !self.created.iter().any(|n| n == netns) {
            return Err(Error::Spec(format!(
                "netns {netns}: not made by this topology"
            )));
        }
        let mut cmd = Command::new("ip");
        cmd.arg("-n").arg(netns).args(args);
        run(cmd)
    }

    /// Run an `ip -batch` in a namespace this topology made (nodes, hosts).
    pub fn ip_batch(&self, netns: &str, lines: &[String]) -> Result<String> {
        if !self.created.iter().any(|n| n == netns) {
            return Err(Error::Spec(format!(
                "netns {netns}: not made by this topology"
            )));
        }
        ip_batch(Some(netns), lines)
    }
}

fn counter_suffix(n: u32) -> String {
    // a..z, then za..zz, ...: short and never a digit (the pid precedes it).
    let mut s = "z".repeat((n / 26) as usize);
    s.push((b'a' + (n % 26) as u8) as char);
    s
}

fn nth(net: &Ipv6Net, k: u128) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(net.network()) | k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_range_places_subnet_id_after_the_node_prefix() {
        let p: Ipv6Net = "fd8c:1f0a:77e3:0:2::/80".parse().unwrap();
        assert_eq!(
            Node::pod_range(&p, 1),
            "fd8c:1f0a:77e3:0:2:1::/96".parse::<Ipv6Net>().unwrap()
        );
        let g: Ipv6Net = "2001:db8:7:3::/80".parse().unwrap();
        assert_eq!(
            Node::pod_range(&g, 1),
            "2001:db8:7:3:0:1::/96".parse::<Ipv6Net>().unwrap()
        );
    }

    #[test]
    fn counter_suffix_never_starts_with_a_digit() {
        assert_eq!(counter_suffix(0), "a");
        assert_eq!(counter_suffix(25), "z");
        assert_eq!(counter_suffix(26), "za");
    }
}
