//! Building the lab: the fabric, the nodes with their addresses and
//! routes, more nodes and non-node hosts joined later.

use super::exec::{ip_batch, open_netns, write_sysctl};
use super::{counter_suffix, nth, Error, Host, Node, Result, Spec, Topology, COUNTER};
use ipnet::Ipv6Net;
use serde_json::Value;
use std::fs::File;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

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

    pub(super) fn create_netns(&mut self, name: &str) -> Result<()> {
        ip_batch(None, &[format!("netns add {name}")])?;
        self.created.push(name.to_string());
        Ok(())
    }
}
