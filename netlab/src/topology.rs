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

use ipnet::Ipv6Net;
use serde_json::{json, Value};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

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
    /// Build the fabric and the nodes. On any failure, what was made so far
    /// is removed before the error returns.
    pub fn build(spec: Spec) -> Result<Topology> {
        if spec.nodes == 0 || spec.nodes > 250 {
            return Err(Error::Spec(format!(
                "nodes={}: expected 1..=250",
                spec.nodes
            )));
        }
        if spec.cluster.prefix_len() != 64 || spec.gua_base.prefix_len() > 48 {
            return Err(Error::Spec(format!(
                "cluster={} gua_base={}: expected a /64 cluster and a /48 (or shorter) GUA base",
                spec.cluster, spec.gua_base
            )));
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = format!("{}{}{}", spec.tag, std::process::id(), counter_suffix(n));
        // Link names are `<base>n<k>`: must fit IFNAMSIZ-1.
        if base.len() + 1 + spec.nodes.to_string().len() > 15 {
            return Err(Error::Spec(format!(
                "tag {:?}: names like {base}n{} exceed 15 bytes",
                spec.tag, spec.nodes
            )));
        }
        let dir = spec.state_root.join(&base);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        let underlay_ns = format!("{base}u");
        let mut topo = Topology {
            bridge: format!("{base}f"),
            // Replaced by the underlay's handle in build_fabric; a failure
            // before that returns no Topology, so it is never used.
            underlay_file: File::open("/proc/self/ns/net")
                .map_err(|e| Error::io("open /proc/self/ns/net", e))?,
            underlay_ns,
            base,
            nodes: Vec::new(),
            pods: Vec::new(),
            created: Vec::new(),
            hosts: Vec::new(),
            daemons: Vec::new(),
            dir,
            extra: Value::Null,
            keep: false,
            spec,
        };
        // From here on, Drop cleans up whatever a failure leaves.
        topo.build_fabric()?;
        for i in 1..=topo.spec.nodes {
            topo.build_node(i)?;
        }
        if topo.spec.static_routes {
            topo.install_routes()?;
        }
        topo.save_manifest()?;
        Ok(topo)
    }

    fn build_fabric(&mut self) -> Result<()> {
        let ns = self.underlay_ns.clone();
        self.create_netns(&ns)?;
        self.underlay_file = open_netns(&ns)?;
        ip_batch(
            Some(&ns),
            &[
                "link set lo up".to_string(),
                format!("link add {} type bridge", self.bridge),
                format!("link set {} up", self.bridge),
            ],
        )?;
        // The fabric is plain L2: its bridge needs no address of its own.
        write_sysctl(
            &self.underlay_file,
            &format!("net/ipv6/conf/{}/disable_ipv6", self.bridge),
            "1",
        )
    }

    fn build_node(&mut self, i: u16) -> Result<()> {
        let netns = format!("{}n{i}", self.base);
        self.create_netns(&netns)?;
        let ns = open_netns(&netns)?;
        let underlay_addr = nth(&self.spec.underlay, u128::from(i));
        let ula_prefix = Ipv6Net::new(
            Ipv6Addr::from(u128::from(self.spec.cluster.network()) | (u128::from(i) << 48)),
            80,
        )
        .expect("80 <= 128");
        let gua_net = Ipv6Net::new(
            Ipv6Addr::from(u128::from(self.spec.gua_base.network()) | (u128::from(i) << 64)),
            64,
        )
        .expect("64 <= 128");
        let gua_addr = nth(&gua_net, 1);
        let gua_prefix = Ipv6Net::new(gua_net.network(), 80).expect("80 <= 128");
        let port = format!("{}n{i}", self.base);
        ip_batch(
            Some(&self.underlay_ns),
            &[
                format!("link add {port} type veth peer name eth0 netns {netns}"),
                format!("link set {port} master {} up", self.bridge),
            ],
        )?;
        // A node's uplink has long been up in a real cluster: its link-local
        // address is valid. Here it is brand new, and while it is tentative
        // the node cannot send the neighbour solicitations that forwarding
        // pod traffic to another node needs (the first packets would wait
        // ~2 s). The addresses are static and unique: no DAD on eth0.
        write_sysctl(&ns, "net/ipv6/conf/eth0/accept_dad", "0")?;
        if Path::new("/proc/sys/net/bridge/bridge-nf-call-ip6tables").exists() {
            let on = if self.spec.bridge_nf_call_ip6tables {
                "1"
            } else {
                "0"
            };
            write_sysctl(&ns, "net/bridge/bridge-nf-call-ip6tables", on)?;
        }
        ip_batch(
            Some(&netns),
            &[
                "link set lo up".to_string(),
                "link set eth0 up".to_string(),
                // Static node addresses: no DAD wait before they work.
                format!("addr add {underlay_addr}/64 dev eth0 nodad"),
                format!("addr add {gua_addr}/64 dev eth0 nodad"),
            ],
        )?;
        let dir = self.dir.join(format!("node{i}"));
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        self.nodes.push(Node {
            index: i,
            netns,
            underlay_addr,
            ula_prefix,
            gua_net,
            gua_addr,
            gua_prefix,
            dir,
            ns,
        });
        Ok(())
    }

    /// Make the underlay namespace a host OUTSIDE the cluster: an address
    /// on the fabric (`<underlay>::ff`, outside the cluster ULA and the
    /// provider GUA space) and one route per node prefix via that node, as
    /// an internet router in front of the nodes would have. Returns the
    /// namespace path and the address. For firewall checks ("the internet
    /// must not reach a pod's GUA on a closed port").
    pub fn add_outside_host(&self) -> Result<(PathBuf, Ipv6Addr)> {
        let addr = nth(&self.spec.underlay, 0xff);
        write_sysctl(
            &self.underlay_file,
            &format!("net/ipv6/conf/{}/disable_ipv6", self.bridge),
            "0",
        )?;
        let mut cmds = vec![format!(
            "addr add {addr}/{} dev {} nodad",
            self.spec.underlay.prefix_len(),
            self.bridge
        )];
        for n in &self.nodes {
            for p in [n.ula_prefix, n.gua_prefix] {
                cmds.push(format!(
                    "route add {p} via {} dev {}",
                    n.underlay_addr, self.bridge
                ));
            }
        }
        ip_batch(Some(&self.underlay_ns), &cmds)?;
        Ok((
            PathBuf::from("/var/run/netns").join(&self.underlay_ns),
            addr,
        ))
    }

    /// Join one more node to the running fabric (index `nodes + 1`), as a
    /// machine added to a cluster: no route is installed anywhere, whatever
    /// `static_routes` says (its routes come from the fabric's BGP).
    pub fn add_node(&mut self) -> Result<u16> {
        let i = self.spec.nodes + 1;
        if self.base.len() + 1 + i.to_string().len() > 15 || i > 250 {
            return Err(Error::Spec(format!(
                "node {i}: no room for another node name"
            )));
        }
        self.build_node(i)?;
        self.spec.nodes = i;
        self.save_manifest()?;
        Ok(i)
    }

    /// A namespace `<base><suffix>` for a machine that is not a node.
    /// `fabric_addr`: also give it a port `eth0` on the fabric with that
    /// address (/64 of the underlay) and IPv6 forwarding on, as a router.
    pub fn add_host(&mut self, suffix: &str, fabric_addr: Option<Ipv6Addr>) -> Result<&Host> {
        let netns = self.link_name(suffix)?;
        self.create_netns(&netns)?;
        let ns = open_netns(&netns)?;
        ip_batch(Some(&netns), &["link set lo up".to_string()])?;
        if let Some(addr) = fabric_addr {
            ip_batch(
                Some(&self.underlay_ns),
                &[
                    format!("link add {netns} type veth peer name eth0 netns {netns}"),
                    format!("link set {netns} master {} up", self.bridge),
                ],
            )?;
            write_sysctl(&ns, "net/ipv6/conf/eth0/accept_dad", "0")?;
            write_sysctl(&ns, "net/ipv6/conf/all/forwarding", "1")?;
            ip_batch(
                Some(&netns),
                &[
                    "link set eth0 up".to_string(),
                    format!(
                        "addr add {addr}/{} dev eth0 nodad",
                        self.spec.underlay.prefix_len()
                    ),
                ],
            )?;
        }
        self.hosts.push(Host { netns, ns });
        self.save_manifest()?;
        Ok(self.hosts.last().expect("pushed"))
    }

    pub fn host(&self, suffix: &str) -> Option<&Host> {
        let name = format!("{}{suffix}", self.base);
        self.hosts.iter().find(|h| h.netns == name)
    }

    /// A veth between a node (`node_if` there) and a host (`host_if`
    /// there), both up: an uplink that is not the fabric.
    pub fn link_node_to_host(
        &self,
        node: u16,
        node_if: &str,
        host: &str,
        host_if: &str,
    ) -> Result<()> {
        let n = &self.node(node).netns;
        ip_batch(
            Some(n),
            &[
                format!("link add {node_if} type veth peer name {host_if} netns {host}"),
                format!("link set {node_if} up"),
            ],
        )?;
        ip_batch(Some(host), &[format!("link set {host_if} up")])?;
        Ok(())
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

    /// Start a long-running process (prepared with [`Topology::node_command`]
    /// or [`Host::command`]); its output goes to `<dir>/<name>.log`. It is
    /// killed before the namespaces are removed.
    pub fn spawn_daemon(&mut self, name: &str, mut cmd: Command) -> Result<u32> {
        if self.daemons.iter().any(|d| d.name == name) {
            return Err(Error::Spec(format!("daemon {name} already runs")));
        }
        let log = self.dir.join(format!("{name}.log"));
        let out =
            File::create(&log).map_err(|e| Error::io(format!("create {}", log.display()), e))?;
        let err = out.try_clone().map_err(|e| Error::io("dup log file", e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::io(format!("start {name} ({})", describe(&cmd)), e))?;
        let pid = child.id();
        self.daemons.push(Daemon {
            name: name.to_string(),
            child,
        });
        self.save_manifest()?;
        Ok(pid)
    }

    /// Kill a daemon (SIGKILL: a crash, not a clean shutdown) and reap it.
    pub fn kill_daemon(&mut self, name: &str) -> Result<()> {
        let i = self
            .daemons
            .iter()
            .position(|d| d.name == name)
            .ok_or_else(|| Error::Spec(format!("no daemon {name}")))?;
        let mut d = self.daemons.remove(i);
        d.stop();
        self.save_manifest()
    }

    /// Whether a daemon is still running; its log when it is not.
    pub fn daemon_alive(&mut self, name: &str) -> Result<()> {
        let d = self
            .daemons
            .iter_mut()
            .find(|d| d.name == name)
            .ok_or_else(|| Error::Spec(format!("no daemon {name}")))?;
        match d.child.try_wait() {
            Ok(None) => Ok(()),
            other => {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.log")))
                    .unwrap_or_default();
                Err(Error::Check(format!("{name} exited ({other:?}): {log}")))
            }
        }
    }

    fn stop_daemons(&mut self) {
        for d in self.daemons.iter_mut().rev() {
            d.stop();
        }
        self.daemons.clear();
    }

    /// On every node, one route per other node per prefix (ULA /80, GUA /80)
    /// via that node's underlay address.
    fn install_routes(&self) -> Result<()> {
        for node in &self.nodes {
            let cmds: Vec<String> = self
                .nodes
                .iter()
                .filter(|o| o.index != node.index)
                .flat_map(|o| {
                    [o.ula_prefix, o.gua_prefix].map(|p| {
                        format!(
                            "route add {p} via {} dev eth0 proto static",
                            o.underlay_addr
                        )
                    })
                })
                .collect();
            if !cmds.is_empty() {
                ip_batch(Some(&node.netns), &cmds)?;
            }
        }
        Ok(())
    }

    fn create_netns(&mut self, name: &str) -> Result<()> {
        ip_batch(None, &[format!("netns add {name}")])?;
        self.created.push(name.to_string());
        Ok(())
    }

    /// Take over a topology a `--keep` run left up, from its manifest, so
    /// its pods can be detached and everything removed.
    pub fn adopt(manifest: &Path) -> Result<Topology> {
        let m = read_manifest(manifest)?;
        let bad = |what: &str| Error::Spec(format!("manifest {}: bad {what}", manifest.display()));
        let base = m["base"].as_str().ok_or_else(|| bad("base"))?.to_string();
        let dir = manifest.parent().ok_or_else(|| bad("path"))?.to_path_buf();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        };
        let created = strings(&m["namespaces"]);
        let mut nodes = Vec::new();
        for n in m["nodes"].as_array().into_iter().flatten() {
            let parse6 = |k: &str| -> Result<Ipv6Net> {
                n[k].as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad(k))
            };
            let netns = n["netns"]
                .as_str()
                .ok_or_else(|| bad("node netns"))?
                .to_string();
            let gua_prefix = parse6("gua")?;
            let gua_net = Ipv6Net::new(gua_prefix.network(), 64).expect("64 <= 128");
            nodes.push(Node {
                index: n["index"].as_u64().ok_or_else(|| bad("node index"))? as u16,
                ns: open_netns(&netns)?,
                netns,
                underlay_addr: n["underlay"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("underlay"))?,
                ula_prefix: parse6("ula")?,
                gua_addr: nth(&gua_net, 1),
                gua_net,
                gua_prefix,
                dir: PathBuf::from(n["dir"].as_str().ok_or_else(|| bad("node dir"))?),
            });
        }
        let pods = m["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                Ok(Pod {
                    name: p["name"]
                        .as_str()
                        .ok_or_else(|| bad("pod name"))?
                        .to_string(),
                    node: p["node"].as_u64().ok_or_else(|| bad("pod node"))? as u16,
                    path: PathBuf::from(p["path"].as_str().ok_or_else(|| bad("pod path"))?),
                })
            })
            .collect::<Result<Vec<Pod>>>()?;
        let underlay_ns = format!("{base}u");
        let mut spec = Spec::new("", nodes.len() as u16);
        spec.state_root = dir.parent().unwrap_or(Path::new("/")).to_path_buf();
        Ok(Topology {
            underlay_file: open_netns(&underlay_ns)?,
            underlay_ns,
            bridge: format!("{base}f"),
            base,
            nodes,
            pods,
            created,
            hosts: Vec::new(),
            daemons: Vec::new(),
            dir,
            extra: m["extra"].clone(),
            keep: false,
            spec,
        })
    }

    /// What [`Topology::set_extra`] stored.
    pub fn extra(&self) -> &Value {
        &self.extra
    }

    /// Manifests of topologies deliberately left up under a state root
    /// ([`Topology::keep`]); topologies still owned by a running process
    /// are not listed.
    pub fn kept(state_root: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(state_root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(MANIFEST))
            .filter(|p| read_manifest(p).is_ok_and(|m| m["kept"] == true))
            .collect();
        out.sort();
        out
    }

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

    /// Create `count` empty pod namespaces on a node (one `ip -batch` call,
    /// so a thousand background pods are cheap).
    pub fn add_pods(&mut self, node: u16, count: usize) -> Result<Vec<Pod>> {
        if node == 0 || node > self.spec.nodes {
            return Err(Error::Spec(format!(
                "node {node}: expected 1..={}",
                self.spec.nodes
            )));
        }
        let first = self.pods_of(node).count() + 1;
        let pods: Vec<Pod> = (first..first + count)
            .map(|k| {
                let name = format!("{}n{node}p{k}", self.base);
                Pod {
                    path: Path::new(NETNS_DIR).join(&name),
                    name,
                    node,
                }
            })
            .collect();
        let cmds: Vec<String> = pods
            .iter()
            .map(|p| format!("netns add {}", p.name))
            .collect();
        // Record before creating: a partial batch is still cleaned up
        // (deleting a name that was never made is harmless: it is ours).
        self.created.extend(pods.iter().map(|p| p.name.clone()));
        self.pods.extend(pods.iter().cloned());
        ip_batch(None, &cmds)?;
        self.save_manifest()?;
        Ok(pods)
    }

    pub fn add_pod(&mut self, node: u16) -> Result<Pod> {
        Ok(self.add_pods(node, 1)?.remove(0))
    }

    /// Remove a pod's namespace (what a runtime does after DEL).
    pub fn remove_pod(&mut self, name: &str) -> Result<()> {
        if !self.pods.iter().any(|p| p.name == name) {
            return Err(Error::Spec(format!(
                "pod {name}: not made by this topology"
            )));
        }
        delete_netns(&[name.to_string()])?;
        self.pods.retain(|p| p.name != name);
        self.created.retain(|n| n != name);
        self.save_manifest()
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

    /// Free-form data a user of the fixture wants kept with the manifest
    /// (the demo stores what `--cleanup` needs).
    pub fn set_extra(&mut self, extra: Value) -> Result<()> {
        self.extra = extra;
        self.save_manifest()
    }

    fn save_manifest(&self) -> Result<()> {
        let m = json!({
            "base": self.base,
            "namespaces": self.created,
            "pods": self.pods.iter().map(|p| json!({
                "name": p.name, "node": p.node, "path": p.path,
            })).collect::<Vec<_>>(),
            "nodes": self.nodes.iter().map(|n| json!({
                "index": n.index, "netns": n.netns, "dir": n.dir,
                "underlay": n.underlay_addr, "ula": n.ula_prefix, "gua": n.gua_prefix,
            })).collect::<Vec<_>>(),
            "daemons": self.daemons.iter().map(|d| json!({
                "name": d.name, "pid": d.child.id(),
            })).collect::<Vec<_>>(),
            "extra": self.extra,
            "kept": self.keep,
        });
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join(format!("{MANIFEST}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&m).expect("json"))
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("write {}", path.display()), e))
    }

    /// Leave everything up (`cni6 demo --keep`); returns the manifest path
    /// that [`remove_by_manifest`] takes.
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        if let Err(e) = self.save_manifest() {
            eprintln!("topology {}: {e}", self.base);
        }
        self.dir.join(MANIFEST)
    }

    /// Remove everything now, reporting errors (Drop does the same but can
    /// only print them).
    pub fn teardown(mut self) -> Result<()> {
        self.keep = true; // Drop must not run it twice.
        self.stop_daemons();
        kill_recorded_daemons(&self.dir.join(MANIFEST));
        teardown(&self.created, &self.dir)
    }

    /// Namespaces of this topology that still exist (after teardown: none).
    pub fn existing_namespaces(base: &str) -> Result<Vec<String>> {
        list_netns_with_prefix(base)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        self.stop_daemons();
        if let Err(e) = teardown(&self.created, &self.dir) {
            eprintln!("topology {}: teardown: {e}", self.base);
        }
    }
}

/// Delete the namespaces (reverse creation order) and the state directory.
fn teardown(created: &[String], dir: &Path) -> Result<()> {
    let names: Vec<String> = created.iter().rev().cloned().collect();
    let res = delete_netns(&names);
    let res2 = match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("remove {}", dir.display()), e))
        }
        _ => Ok(()),
    };
    res.and(res2)
}

/// Remove what a kept topology left, from its manifest: exactly the
/// namespaces it recorded, then its state directory. Returns the manifest's
/// `extra` value so the caller can first undo its own work (the demo
/// detaches its pods before calling this).
pub fn read_manifest(path: &Path) -> Result<Value> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Spec(format!("manifest {}: {e}", path.display())))
}

pub fn remove_by_manifest(path: &Path) -> Result<()> {
    let m = read_manifest(path)?;
    let names: Vec<String> = m["namespaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("/nonexistent"));
    kill_recorded_daemons(path);
    teardown(&names, dir)
}

/// End the daemons a kept topology's manifest lists (a namespace lives on
/// while a process is in it). A pid is only killed while it is still a
/// process inside one of the manifest's namespaces, never a reused one.
fn kill_recorded_daemons(manifest: &Path) {
    let Ok(m) = read_manifest(manifest) else {
        return;
    };
    let names: Vec<&str> = m["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    for d in m["daemons"].as_array().into_iter().flatten() {
        let Some(pid) = d["pid"].as_u64() else {
            continue;
        };
        let ours = names.iter().any(|n| {
            let (Ok(a), Ok(b)) = (
                std::fs::metadata(format!("/proc/{pid}/ns/net")),
                std::fs::metadata(Path::new(NETNS_DIR).join(n)),
            ) else {
                return false;
            };
            use std::os::unix::fs::MetadataExt;
            a.ino() == b.ino() && a.dev() == b.dev()
        });
        if ours {
            // SAFETY: signalling a pid checked to live in our namespace.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// Deletes namespaces by name; names already gone are fine.
fn delete_netns(names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let existing: Vec<&String> = names
        .iter()
        .filter(|n| Path::new(NETNS_DIR).join(n).exists())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    let cmds: Vec<String> = existing.iter().map(|n| format!("netns del {n}")).collect();
    let mut cmd = Command::new("ip");
    cmd.args(["-force", "-batch", "-"]);
    run_with_stdin(cmd, cmds.join("\n").as_bytes()).map(|_| ())?;
    let left: Vec<&&String> = existing
        .iter()
        .filter(|n| Path::new(NETNS_DIR).join(n).exists())
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(Error::Check(format!("namespaces not removed: {left:?}")))
    }
}

fn list_netns_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(NETNS_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("read {NETNS_DIR}"), e)),
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
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

fn open_netns(name: &str) -> Result<File> {
    let p = Path::new(NETNS_DIR).join(name);
    File::open(&p).map_err(|e| Error::io(format!("open {}", p.display()), e))
}

/// `ip [-n NS] -batch -` with the given lines; stops at the first failure.
fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.arg("-n").arg(ns);
    }
    cmd.args(["-batch", "-"]);
    run_with_stdin(cmd, lines.join("\n").as_bytes())
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn check_output(desc: String, out: Output) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            cmd: desc,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Run a command to completion; error (with its stderr) unless it exits 0.
pub fn run(mut cmd: Command) -> Result<String> {
    let desc = describe(&cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("run {desc}"), e))?;
    check_output(desc, out)
}

fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Result<String> {
    let desc = describe(&cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("run {desc}"), e))?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(input)
        .map_err(|e| Error::io(format!("write stdin of {desc}"), e))?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("wait {desc}"), e))?;
    check_output(
        format!("{desc} <<< {}", String::from_utf8_lossy(input)),
        out,
    )
}

/// Write a sysctl (slash-separated key under /proc/sys) as seen from a
/// namespace: /proc/sys/net resolves per calling thread, so a thread that
/// entered the namespace writes it.
fn write_sysctl(ns: &File, key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(fd).map_err(|e| Error::io("setns", e))?;
            std::fs::write(&path, value)
                .map_err(|e| Error::io(format!("write {}", path.display()), e))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

fn enter_netns(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: plain syscall on an fd we hold open.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A command whose child enters `ns` between fork and exec, in the way
/// `ip netns exec` does, but without exec'ing `ip` first.
fn ns_command(ns: &File, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(program);
    // SAFETY: the closure runs in the forked child and only makes raw
    // syscalls with static C strings (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Keep our mounts from propagating back, then show the
            // namespace's own /sys (sysfs takes the net ns of the mounter).
            let root = c"/".as_ptr();
            let sys = c"/sys".as_ptr();
            let sysfs = c"sysfs".as_ptr();
            if libc::mount(
                std::ptr::null(),
                root,
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::umount2(sys, libc::MNT_DETACH);
            if libc::mount(sysfs, sys, sysfs, 0, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// The network name of the cluster conflists this fixture writes.
pub const CLUSTER_NETWORK: &str = "cluster";

/// Where the real binaries are: `cni6` (the runtime, run inside a node) and
/// the plugin directories it searches (CNI_PATH).
#[derive(Debug, Clone)]
pub struct Binaries {
    pub cni6: PathBuf,
    pub cni_path: Vec<PathBuf>,
}

impl Binaries {
    /// `cni6`, `bridge6` and `ipam-prefix` from `bin_dir`; `loopback` from
    /// the upstream plugins scripts/peers.sh builds, else Debian's
    /// /usr/lib/cni, when one is there.
    pub fn from_dir(bin_dir: &Path) -> Result<Binaries> {
        for b in ["cni6", "bridge6", "ipam-prefix"] {
            let p = bin_dir.join(b);
            if !p.is_file() {
                return Err(Error::MissingBinary(p));
            }
        }
        let mut cni_path = vec![bin_dir.to_path_buf()];
        if let Some(dir) = [
            crate::bins::reference_dir(),
            crate::bins::debian_reference_dir(),
        ]
        .into_iter()
        .find(|d| d.join("loopback").is_file())
        {
            cni_path.push(dir);
        }
        Ok(Binaries {
            cni6: bin_dir.join("cni6"),
            cni_path,
        })
    }

    pub fn has_loopback(&self) -> bool {
        self.cni_path.iter().any(|d| d.join("loopback").is_file())
    }

    fn cni_path_arg(&self) -> String {
        self.cni_path
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// A pod's addresses from its ADD result: the ULA and the GUA.
#[derive(Debug, Clone)]
pub struct PodAddresses {
    pub ula: Ipv6Net,
    pub gua: Ipv6Net,
    /// The final result the runtime returned.
    pub result: Value,
}

impl Topology {
    /// Write each node's conflist: docs/design.md's example minus firewall6
    /// (bridge6 + ipam-prefix; the node ULA /80 literal, the GUA /80 from
    /// eth0), with the node's own IPAM dataDir and a bridge name unique to
    /// this topology. Also the loopback conf the runtime attaches first.
    pub fn write_cluster_conflists(&self) -> Result<()> {
        let bridge = self.link_name("br")?;
        for node in &self.nodes {
            let conflist = json!({
                "cniVersion": "1.0.0",
                "name": CLUSTER_NETWORK,
                "plugins": [{
                    "type": "bridge6",
                    "bridge": bridge,
                    "mtu": 1420,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "ipam-prefix",
                        "dataDir": node.dir.join("ipam"),
                        "subnetId": 1,
                        "prefixes": [
                            { "node": node.ula_prefix.to_string() },
                            { "fromInterface": "eth0", "scope": "global" }
                        ],
                        "routes": [ { "dst": "::/0" } ]
                    }
                }]
            });
            let lo = json!({ "cniVersion": "1.0.0", "name": "lo", "type": "loopback" });
            for (path, v) in [
                (self.conflist_path(node.index), conflist),
                (node.dir.join("loopback.conf"), lo),
            ] {
                std::fs::write(&path, serde_json::to_vec_pretty(&v).expect("json"))
                    .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
            }
        }
        Ok(())
    }

    pub fn conflist_path(&self, node: u16) -> PathBuf {
        self.node(node).dir.join("cluster.conflist")
    }

    /// The IPAM store of a node's cluster network (ipam-prefix layout).
    pub fn ipam_store(&self, node: u16) -> PathBuf {
        self.node(node).dir.join("ipam").join(CLUSTER_NETWORK)
    }

    /// The runtime's result cache of a node.
    pub fn cache_dir(&self, node: u16) -> PathBuf {
        self.node(node).dir.join("cache")
    }

    fn cni6(&self, bins: &Binaries, pod: &Pod, verb: &str, conf: &Path, ifname: &str) -> Command {
        let mut cmd = self.node_command(pod.node, &bins.cni6);
        cmd.arg(verb)
            .arg("--conflist")
            .arg(conf)
            .arg("--netns")
            .arg(&pod.path)
            .args(["--id", &pod.name, "--ifname", ifname])
            .arg("--args")
            .arg(format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={}",
                pod.name
            ))
            .arg("--cni-path")
            .arg(bins.cni_path_arg())
            .arg("--cache-dir")
            .arg(self.cache_dir(pod.node));
        cmd
    }

    /// Attach a pod the way a container runtime does, through `cni6 attach`
    /// running inside the pod's node: loopback first (when available), then
    /// the cluster network on eth0. Returns the pod's two addresses.
    pub fn attach(&self, bins: &Binaries, pod: &Pod) -> Result<PodAddresses> {
        let node_dir = &self.node(pod.node).dir;
        if bins.has_loopback() {
            run(self.cni6(bins, pod, "attach", &node_dir.join("loopback.conf"), "lo"))?;
        }
        let mut cmd = self.cni6(bins, pod, "attach", &self.conflist_path(pod.node), "eth0");
        cmd.arg("--json");
        let out = run(cmd)?;
        let result: Value = serde_json::from_str(&out).map_err(|e| {
            Error::Check(format!("cni6 attach printed no JSON result ({e}): {out}"))
        })?;
        let ips: Vec<Ipv6Net> = result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str()?.parse().ok())
            .collect();
        let node = self.node(pod.node);
        let pick = |prefix: &Ipv6Net| {
            ips.iter()
                .find(|a| prefix.contains(&a.addr()))
                .copied()
                .ok_or_else(|| {
                    Error::Check(format!(
                        "{}: no address in {prefix} in the ADD result {result}",
                        pod.name
                    ))
                })
        };
        Ok(PodAddresses {
            ula: pick(&node.ula_prefix)?,
            gua: pick(&node.gua_prefix)?,
            result: result.clone(),
        })
    }

    /// Verify a pod's cluster attachment through `cni6 check` in its node
    /// (CNI CHECK down the chain with the cached result).
    pub fn check(&self, bins: &Binaries, pod: &Pod) -> Result<()> {
        run(self.cni6(bins, pod, "check", &self.conflist_path(pod.node), "eth0")).map(|_| ())
    }

    /// Detach a pod through `cni6 detach` in its node (cluster network,
    /// then loopback: the reverse of attach).
    pub fn detach(&self, bins: &Binaries, pod: &Pod) -> Result<()> {
        run(self.cni6(bins, pod, "detach", &self.conflist_path(pod.node), "eth0"))?;
        if bins.has_loopback() {
            let conf = self.node(pod.node).dir.join("loopback.conf");
            run(self.cni6(bins, pod, "detach", &conf, "lo"))?;
        }
        Ok(())
    }
}

/// What a TCP exchange saw.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The client's address as the listener saw it (the source the client's
    /// kernel chose).
    pub peer: Ipv6Addr,
    pub elapsed: Duration,
}

/// A real TCP exchange between two namespaces (pods, or nodes): a listener
/// bound to `server_addr` inside the server's namespace, a client inside
/// the client's namespace sends `payload`, the listener echoes it, the
/// client checks it. Sockets are created by short-lived threads that
/// entered the namespace (a socket stays in the namespace it was made in);
/// no thread stays.
pub fn tcp_echo(
    server: &Path,
    server_addr: Ipv6Addr,
    client: &Path,
    payload: &[u8],
    timeout: Duration,
) -> Result<Exchange> {
    let server_ns = cni_common::netns::NetNs::open(server)?;
    let client_ns = cni_common::netns::NetNs::open(client)?;
    let listener = server_ns
        .run(|| TcpListener::bind(SocketAddrV6::new(server_addr, 0, 0, 0)))?
        .map_err(|e| {
            Error::io(
                format!("listen on [{server_addr}] in {}", server.display()),
                e,
            )
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("listener address", e))?
        .port();
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("listener nonblocking", e))?;
    let start = Instant::now();
    std::thread::scope(|s| {
        let srv = s.spawn(|| -> Result<Ipv6Addr> {
            let deadline = Instant::now() + timeout;
            let (mut conn, peer) = loop {
                match listener.accept() {
                    Ok(c) => break c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(Error::Check(format!(
                                "no connection to [{server_addr}]:{port} in {} within {timeout:?}",
                                server.display()
                            )));
                        }
                        // Wait for the connection itself, not a polling tick,
                        // so the measured time is the exchange's.
                        let mut pfd = libc::pollfd {
                            fd: listener.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
                        // SAFETY: one valid pollfd for the duration of the call.
                        unsafe { libc::poll(&mut pfd, 1, ms) };
                    }
                    Err(e) => return Err(Error::io("accept", e)),
                }
            };
            conn.set_nonblocking(false)
                .and_then(|_| conn.set_read_timeout(Some(timeout)))
                .map_err(|e| Error::io("accepted socket", e))?;
            let mut buf = Vec::new();
            conn.read_to_end(&mut buf)
                .map_err(|e| Error::io("server read", e))?;
            conn.write_all(&buf)
                .map_err(|e| Error::io("server echo", e))?;
            match peer {
                SocketAddr::V6(a) => Ok(*a.ip()),
                SocketAddr::V4(a) => Err(Error::Check(format!("IPv4 peer {a}"))),
            }
        });
        let client_res = (|| -> Result<()> {
            let dst = SocketAddr::V6(SocketAddrV6::new(server_addr, port, 0, 0));
            let mut stream = client_ns
                .run(|| TcpStream::connect_timeout(&dst, timeout))?
                .map_err(|e| Error::io(format!("connect from {} to {dst}", client.display()), e))?;
            stream
                .set_read_timeout(Some(timeout))
                .map_err(|e| Error::io("client socket", e))?;
            stream
                .write_all(payload)
                .and_then(|_| stream.shutdown(std::net::Shutdown::Write))
                .map_err(|e| Error::io("client send", e))?;
            let mut echo = Vec::new();
            stream
                .read_to_end(&mut echo)
                .map_err(|e| Error::io("client read", e))?;
            if echo != payload {
                return Err(Error::Check(format!(
                    "echo from {dst} differs: sent {} bytes, got {}",
                    payload.len(),
                    echo.len()
                )));
            }
            Ok(())
        })();
        let peer = srv.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        client_res?;
        Ok(Exchange {
            peer: peer?,
            elapsed: start.elapsed(),
        })
    })
}

/// A packet seen on the fabric, reduced to what the no-overlay proof needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricPacket {
    /// The node whose fabric port carried it (a packet between two nodes is
    /// seen twice: leaving the sender's port, entering the receiver's).
    pub port: u16,
    pub ethertype: u16,
    /// IPv6 only (None for other ethertypes).
    pub src: Option<Ipv6Addr>,
    pub dst: Option<Ipv6Addr>,
    /// Upper-layer protocol: for IPv6 after hop-by-hop, routing and
    /// destination-options headers; for IPv4 the header's protocol field
    /// (6 = TCP, 17 = UDP, 58 = ICMPv6, 41 = IPv6-in-IPv6, 4 = IPIP, 47 = GRE).
    pub protocol: Option<u8>,
}

/// tcpdump on every node's port of the fabric bridge (in the underlay
/// namespace), writing pcap files in the state dir. The ports, not the
/// bridge device: a bridge's own tap sees only frames flooded or delivered
/// to it, not unicast forwarded between ports.
#[derive(Debug)]
pub struct FabricCapture {
    ports: Vec<(u16, Option<Child>, PathBuf)>,
}

impl FabricCapture {
    /// Start capturing and wait until every port's capture demonstrably
    /// records packets.
    pub fn start(topo: &Topology, name: &str) -> Result<FabricCapture> {
        let mut cap = FabricCapture { ports: Vec::new() };
        let mut ready = Vec::new();
        for node in &topo.nodes {
            let file = topo.dir.join(format!("{name}-n{}.pcap", node.index));
            let mut cmd = topo.underlay_command("tcpdump");
            cmd.args(["-i", &format!("{}n{}", topo.base, node.index)])
                // Immediate mode: packets reach tcpdump at once, not in
                // blocks a timeout later (which SIGINT would discard).
                .args(["-n", "-U", "--immediate-mode", "-s", "256", "-w"])
                .arg(&file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .map_err(|e| Error::io("start tcpdump (is it installed?)", e))?;
            let stderr = child.stderr.take().expect("piped");
            cap.ports.push((node.index, Some(child), file));
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stderr).lines();
                let mut said = Vec::new();
                for line in lines.by_ref().map_while(|l| l.ok()) {
                    let listening = line.contains("listening on");
                    said.push(line);
                    if listening {
                        let _ = tx.send(Ok(()));
                        // Keep draining so tcpdump never blocks on stderr.
                        for _ in lines.by_ref() {}
                        return;
                    }
                }
                let _ = tx.send(Err(said.join("\n")));
            });
            ready.push(rx);
        }
        for rx in ready {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(())) => {}
                Ok(Err(said)) => {
                    return Err(Error::Check(format!("tcpdump did not start: {said}")))
                }
                Err(_) => return Err(Error::Check("tcpdump not listening after 10 s".into())),
            }
        }
        cap.wait_until_live(topo)?;
        Ok(cap)
    }

    /// "listening on" comes before the first packet is surely recorded:
    /// send node-to-node probes over the underlay until each port's file
    /// holds one (tcpdump -U writes each packet as it comes), so nothing the
    /// caller sends next is missed.
    fn wait_until_live(&self, topo: &Topology) -> Result<()> {
        if topo.nodes.len() < 2 {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut live = vec![false; topo.nodes.len()];
        while Instant::now() < deadline {
            for (i, a) in topo.nodes.iter().enumerate() {
                if live[i] {
                    continue;
                }
                let b = &topo.nodes[(i + 1) % topo.nodes.len()];
                tcp_echo(
                    &b.netns_path(),
                    b.underlay_addr,
                    &a.netns_path(),
                    b"capture probe",
                    Duration::from_secs(1),
                )?;
            }
            std::thread::sleep(Duration::from_millis(20));
            for (i, (_, _, file)) in self.ports.iter().enumerate() {
                let me = topo.nodes[i].underlay_addr;
                let bytes = std::fs::read(file).unwrap_or_default();
                live[i] = parse_pcap(&bytes, 0)
                    .unwrap_or_default()
                    .iter()
                    .any(|p| p.src == Some(me) || p.dst == Some(me));
            }
            if live.iter().all(|l| *l) {
                return Ok(());
            }
        }
        Err(Error::Check(
            "tcpdump records no packet of a probe after 10 s".into(),
        ))
    }

    fn kill(&mut self) {
        for (_, child, _) in &mut self.ports {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Stop (SIGINT, so tcpdump flushes) and read the packets back, port by
    /// port.
    pub fn stop(mut self) -> Result<Vec<FabricPacket>> {
        for (_, child, _) in &mut self.ports {
            if let Some(c) = child.as_ref() {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (_, child, _) in &mut self.ports {
            if let Some(mut c) = child.take() {
                while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let mut out = Vec::new();
        for (port, _, file) in &self.ports {
            let bytes = std::fs::read(file)
                .map_err(|e| Error::io(format!("read {}", file.display()), e))?;
            out.extend(parse_pcap(&bytes, *port)?);
        }
        Ok(out)
    }
}

impl Drop for FabricCapture {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Parse a classic pcap file of Ethernet frames.
/// `port` is recorded in each packet.
pub fn parse_pcap(bytes: &[u8], port: u16) -> Result<Vec<FabricPacket>> {
    let bad = |why: &str| Error::Check(format!("pcap: {why}"));
    if bytes.len() < 24 {
        return Err(bad("shorter than its header"));
    }
    let magic = u32::from_le_bytes(bytes[0..4].try_into().expect("4"));
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        _ => return Err(bad("unknown magic")),
    };
    let u32_at = |b: &[u8], o: usize| {
        let a: [u8; 4] = b[o..o + 4].try_into().expect("4");
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    if u32_at(bytes, 20) != 1 {
        return Err(bad("link type is not Ethernet"));
    }
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let incl = u32_at(bytes, off + 8) as usize;
        let start = off + 16;
        let end = start + incl;
        if end > bytes.len() {
            break; // a record cut by the stop: ignore it
        }
        out.push(parse_frame(&bytes[start..end], port));
        off = end;
    }
    Ok(out)
}

fn parse_frame(f: &[u8], port: u16) -> FabricPacket {
    let mut pkt = FabricPacket {
        port,
        ethertype: 0,
        src: None,
        dst: None,
        protocol: None,
    };
    if f.len() < 14 {
        return pkt;
    }
    let mut et = u16::from_be_bytes([f[12], f[13]]);
    let mut l3 = 14;
    while et == 0x8100 && f.len() >= l3 + 4 {
        et = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]);
        l3 += 4;
    }
    pkt.ethertype = et;
    if et == 0x0800 && f.len() >= l3 + 20 {
        // IPv4 has no place on this fabric; keep its protocol for the report.
        pkt.protocol = Some(f[l3 + 9]);
        return pkt;
    }
    if et != 0x86dd || f.len() < l3 + 40 {
        return pkt;
    }
    let ip = &f[l3..];
    let addr = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&ip[o..o + 16]).expect("16"));
    pkt.src = Some(addr(8));
    pkt.dst = Some(addr(24));
    let mut next = ip[6];
    let mut o = 40;
    // Skip hop-by-hop (0), routing (43), destination options (60).
    while matches!(next, 0 | 43 | 60) && ip.len() >= o + 2 {
        let len = (usize::from(ip[o + 1]) + 1) * 8;
        next = ip[o];
        o += len;
    }
    pkt.protocol = Some(next);
    pkt
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

    #[test]
    fn pcap_parsing_finds_addresses_and_upper_protocol() {
        let mut f = Vec::new();
        // pcap header: LE magic, v2.4, tz, sigfigs, snaplen, linktype 1
        f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&256u32.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        // frame: Ethernet + IPv6 with a hop-by-hop header then TCP
        let src: Ipv6Addr = "fd8c:1f0a:77e3:0:1:1:0:10".parse().unwrap();
        let dst: Ipv6Addr = "fd8c:1f0a:77e3:0:2:1:0:10".parse().unwrap();
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0x60, 0, 0, 0, 0, 8, 0, 64];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        frame.extend_from_slice(&ip);
        for v in [0u32, 0, frame.len() as u32, frame.len() as u32] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&frame);
        let pkts = parse_pcap(&f, 3).unwrap();
        assert_eq!(
            pkts,
            vec![FabricPacket {
                port: 3,
                ethertype: 0x86dd,
                src: Some(src),
                dst: Some(dst),
                protocol: Some(6),
            }]
        );
        assert!(parse_pcap(&f[..10], 3).is_err());
    }
}
