//! `cni6 routes`: what the fabric needs to reach every node's pods. A pod
//! address says which node it lives on (docs/design.md), so the fabric needs one
//! route per node prefix and never one per pod; this command turns the
//! list of nodes into that, in the form the fabric takes it:
//!
//! - `ip`: `ip -6 route replace PREFIX via UNDERLAY` for a routed L2 fabric
//!   (static routes on each node, or on a router);
//! - `wireguard`: a `[Peer]` fragment per node with its `AllowedIPs`
//!   (wireguard routes by AllowedIPs; keys and endpoints stay the
//!   operator's);
//! - `bird`: a BIRD 2 configuration for one node (`--self`) announcing its
//!   prefixes (and any `--announce`d extra prefix: an anycast /128, a
//!   LoadBalancer pool) over BGP and installing what it learns into the
//!   kernel. Two layouts: the iBGP full mesh between the listed nodes
//!   (small clusters), or sessions to the `--peer`s only (upstream routers
//!   or route reflectors: iBGP as a reflector client when the peer's AS is
//!   the node's, eBGP with a per-node `--asn` otherwise).

use crate::error::{CliError, Result};
use crate::options::Output;
use clap::{Args, ValueEnum};
use ipnet::Ipv6Net;
use serde_json::json;
use std::fmt::Write as _;
use std::net::Ipv6Addr;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `ip -6 route replace PREFIX via UNDERLAY` commands.
    Ip,
    /// wireguard `[Peer]` sections with `AllowedIPs`.
    Wireguard,
    /// A BIRD 2 configuration for the --self node (static + BGP).
    Bird,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "NODE is NAME=PREFIX[,PREFIX…]@UNDERLAY: the node's prefixes (its ULA /80 \
    and GUA /80) and its address on the fabric. A nodes file holds one NODE per line ('#' starts \
    a comment).\n\nExamples:\n  \
    cni6 routes --self a --node a=fd8c:1f0a:77e3:0:1::/80@fd00:fab::1 --node b=fd8c:1f0a:77e3:0:2::/80@fd00:fab::2\n  \
    cni6 routes --nodes-file nodes.txt --format bird --self node1 > /etc/bird/bird.conf && bird -p"
)]
pub struct RoutesArgs {
    /// A node, as NAME=PREFIX[,PREFIX…]@UNDERLAY (repeatable).
    #[arg(long = "node", value_name = "NODE")]
    pub nodes: Vec<String>,

    /// A file with one NODE per line.
    #[arg(long, value_name = "FILE")]
    pub nodes_file: Option<PathBuf>,

    /// Output form.
    #[arg(long, value_enum, default_value = "ip")]
    pub format: Format,

    /// The node this output is for: its own prefixes get no route (ip,
    /// wireguard) and are the ones announced (bird; required there).
    #[arg(long = "self", value_name = "NAME")]
    pub self_name: Option<String>,

    /// Read the --self node's prefixes from this node's conflist, resolved
    /// here exactly as ipam-prefix resolves them (literal prefixes and
    /// `fromInterface`): what a DaemonSet renders BIRD's configuration from.
    #[arg(long, value_name = "FILE", requires_all = ["self_name", "self_underlay"])]
    pub self_conflist: Option<PathBuf>,

    /// With --self-conflist: the node's address on the fabric (its BGP
    /// source; in Kubernetes the node's InternalIP, `status.hostIP`).
    #[arg(long, value_name = "ADDR", requires = "self_conflist")]
    pub self_underlay: Option<Ipv6Addr>,

    /// Write the output to FILE (atomically, unchanged when it already
    /// holds it) instead of stdout: for a container that cannot redirect.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// `ip` form: add `dev IF` to every route.
    #[arg(long, value_name = "IF")]
    pub dev: Option<String>,

    /// `bird` form: the BGP AS number of this node (the nodes' common AS
    /// for iBGP; one per node for eBGP to the `--peer`s).
    #[arg(long, default_value_t = 64512, value_name = "ASN")]
    pub asn: u32,

    /// `bird` form: peer with this router or route reflector instead of the
    /// full mesh (repeatable). ADDR@ASN with another AS than --asn is eBGP;
    /// without @ASN, or with --asn's, iBGP (the peer reflects).
    #[arg(long = "peer", value_name = "ADDR[@ASN]")]
    pub peers: Vec<String>,

    /// `bird` form: also announce this prefix from --self (repeatable): an
    /// anycast /128 held on several nodes, or a LoadBalancer pool.
    #[arg(long = "announce", value_name = "PREFIX")]
    pub announce: Vec<String>,

    /// `bird` form: BGP hold time in seconds (keepalive a third of it); a
    /// stopped node's prefixes are withdrawn at most this long after
    /// [default: BIRD's 240].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u16).range(3..))]
    pub hold: Option<u16>,

    /// `bird` form: run BFD on every session: a dead link or node is
    /// detected in 300 ms instead of the hold time.
    #[arg(long)]
    pub bfd: bool,

    /// `bird` form: ask peers to keep this node's routes for SECS while its
    /// BIRD restarts (graceful restart). Off by default: a crashed node's
    /// prefixes would stay routed (into nothing) that long.
    #[arg(long, value_name = "SECS")]
    pub graceful_restart: Option<u16>,
}

/// A BGP neighbour of the --self node given with `--peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub addr: Ipv6Addr,
    /// None: the node's own AS (iBGP).
    pub asn: Option<u32>,
}

impl std::str::FromStr for Peer {
    type Err = CliError;

    fn from_str(s: &str) -> Result<Peer> {
        let bad = |why: &str| {
            CliError::Usage(format!(
                "--peer {s:?}: {why} (expected ADDR[@ASN], e.g. fd00:fab::fe@65000)"
            ))
        };
        let (addr, asn) = match s.split_once('@') {
            Some((a, n)) => (
                a,
                Some(
                    n.parse::<u32>()
                        .ok()
                        .filter(|n| *n != 0)
                        .ok_or_else(|| bad("the AS number is not 1..4294967295"))?,
                ),
            ),
            None => (s, None),
        };
        let addr = addr
            .parse()
            .map_err(|_| bad("the address is not an IPv6 address"))?;
        Ok(Peer { addr, asn })
    }
}

/// What the BIRD form needs beyond the node list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpOptions {
    pub asn: u32,
    /// Empty: iBGP full mesh between the nodes.
    pub peers: Vec<Peer>,
    pub announce: Vec<Ipv6Net>,
    pub hold: Option<u16>,
    pub bfd: bool,
    pub graceful_restart: Option<u16>,
}

impl BgpOptions {
    pub fn from_args(a: &RoutesArgs) -> Result<BgpOptions> {
        let announce = a
            .announce
            .iter()
            .map(|p| {
                p.parse::<Ipv6Net>().map(|n| n.trunc()).map_err(|_| {
                    CliError::Usage(format!(
                        "--announce {p:?}: not an IPv6 prefix (expected e.g. fd8c:1f0a:77e3::a/128)"
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let peers = a
            .peers
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<Peer>>>()?;
        for (i, p) in peers.iter().enumerate() {
            if peers[..i].iter().any(|q| q.addr == p.addr) {
                return Err(CliError::Usage(format!(
                    "--peer {}: given twice (one session per router; drop one)",
                    p.addr
                )));
            }
        }
        Ok(BgpOptions {
            asn: a.asn,
            peers,
            announce,
            hold: a.hold,
            bfd: a.bfd,
            graceful_restart: a.graceful_restart,
        })
    }
}

/// One node of the fabric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricNode {
    pub name: String,
    pub prefixes: Vec<Ipv6Net>,
    pub underlay: Ipv6Addr,
}

fn bad(s: &str, why: &str) -> CliError {
    CliError::Usage(format!(
        "node {s:?}: {why} (expected NAME=PREFIX[,PREFIX…]@UNDERLAY, e.g. \
         node1=fd8c:1f0a:77e3:0:1::/80@fd00:fab::1)"
    ))
}

impl std::str::FromStr for FabricNode {
    type Err = CliError;

    fn from_str(s: &str) -> Result<FabricNode> {
        let (name, rest) = s.split_once('=').ok_or_else(|| bad(s, "no '='"))?;
        let (prefixes, underlay) = rest.rsplit_once('@').ok_or_else(|| bad(s, "no '@'"))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(bad(s, "the name must be letters, digits, '-', '_' or '.'"));
        }
        let underlay: Ipv6Addr = underlay
            .parse()
            .map_err(|_| bad(s, "the underlay is not an IPv6 address"))?;
        let prefixes = prefixes
            .split(',')
            .map(|p| {
                p.parse::<Ipv6Net>()
                    .map(|n| n.trunc())
                    .map_err(|_| bad(s, &format!("{p:?} is not an IPv6 prefix")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FabricNode {
            name: name.to_string(),
            prefixes,
            underlay,
        })
    }
}

/// Parse and check the node list: names unique, no prefix twice.
pub fn nodes(a: &RoutesArgs) -> Result<Vec<FabricNode>> {
    let mut specs: Vec<String> = a.nodes.clone();
    if let Some(f) = &a.nodes_file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| CliError::Failed(format!("read --nodes-file {}: {e}", f.display())))?;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                specs.push(line.to_string());
            }
        }
    }
    let mut parsed = Vec::new();
    if let (Some(f), Some(me), Some(underlay)) = (&a.self_conflist, &a.self_name, a.self_underlay) {
        parsed.push(FabricNode {
            name: me.clone(),
            prefixes: conflist_prefixes(f)?,
            underlay,
        });
    }
    for s in &specs {
        parsed.push(s.parse()?);
    }
    if parsed.is_empty() {
        return Err(CliError::Usage(
            "no nodes: give --node NAME=PREFIX@UNDERLAY (repeatable) or --nodes-file FILE".into(),
        ));
    }
    let mut out: Vec<FabricNode> = Vec::new();
    for n in parsed {
        if out.iter().any(|o| o.name == n.name) {
            return Err(CliError::Usage(format!("node {} is listed twice", n.name)));
        }
        for p in &n.prefixes {
            if let Some(o) = out
                .iter()
                .find(|o| o.prefixes.iter().any(|q| q.contains(p) || p.contains(q)))
            {
                return Err(CliError::Usage(format!(
                    "prefix {p} of node {} overlaps a prefix of node {}",
                    n.name, o.name
                )));
            }
        }
        out.push(n);
    }
    if let Some(me) = &a.self_name {
        if !out.iter().any(|n| &n.name == me) {
            return Err(CliError::Usage(format!(
                "--self {me}: no such node (nodes: {})",
                out.iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    Ok(out)
}

/// The node prefixes of every ipam-prefix network in a conflist, resolved
/// on this host by ipam-prefix's own code.
pub fn conflist_prefixes(path: &std::path::Path) -> Result<Vec<Ipv6Net>> {
    use cni_common::runtime::ConfList;
    let list = ConfList::from_file(path)
        .map_err(|e| CliError::cni(format!("--self-conflist {}", path.display()), e))?;
    let mut out = Vec::new();
    for net in crate::node::networks_of(path, &list) {
        for (prefix, _, _) in crate::node::prefixes(&net).map_err(|e| {
            CliError::Failed(format!(
                "--self-conflist {}: the node prefixes of network {} cannot be resolved on \
                 this host: {e}",
                path.display(),
                net.name
            ))
        })? {
            out.push(
                prefix
                    .parse::<Ipv6Net>()
                    .map_err(|e| CliError::Failed(format!("node prefix {prefix:?}: {e}")))?,
            );
        }
    }
    if out.is_empty() {
        return Err(CliError::Usage(format!(
            "--self-conflist {}: no plugin with ipam-prefix in it (expected the node's cni6 \
             conflist, e.g. /etc/cni/net.d/10-cni6.conflist)",
            path.display()
        )));
    }
    Ok(out)
}

pub fn ip_lines(nodes: &[FabricNode], me: Option<&str>, dev: Option<&str>) -> Vec<String> {
    let dev = dev.map(|d| format!(" dev {d}")).unwrap_or_default();
    nodes
        .iter()
        .filter(|n| Some(n.name.as_str()) != me)
        .flat_map(|n| {
            n.prefixes
                .iter()
                .map(|p| format!("ip -6 route replace {p} via {}{dev}", n.underlay))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn wireguard(nodes: &[FabricNode], me: Option<&str>) -> String {
    let mut s = String::new();
    for n in nodes.iter().filter(|n| Some(n.name.as_str()) != me) {
        let ips: Vec<String> = n.prefixes.iter().map(|p| p.to_string()).collect();
        let _ = write!(
            s,
            "# node {} (underlay {}): add its PublicKey and Endpoint\n[Peer]\nAllowedIPs = {}\n\n",
            n.name,
            n.underlay,
            ips.join(", ")
        );
    }
    s
}

/// A BIRD identifier from a node name.
fn ident(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("cni6_{s}")
}

/// BGP needs a 32-bit router id even on an IPv6-only node: the low 32
/// bits of the node's underlay address (unique on the fabric's /64 as long
/// as node addresses differ there), never 0.
pub fn router_id(underlay: Ipv6Addr) -> String {
    let low = (u128::from(underlay) & 0xffff_ffff) as u32;
    let id = if low == 0 { 1 } else { low };
    std::net::Ipv4Addr::from(id).to_string()
}

pub fn bird(nodes: &[FabricNode], me: &str, opt: &BgpOptions) -> String {
    let own = nodes
        .iter()
        .find(|n| n.name == me)
        .expect("checked by nodes()");
    let asn = opt.asn;
    let mut s = String::new();
    let layout = if opt.peers.is_empty() {
        format!("over iBGP (AS {asn}) to the other nodes (full mesh)")
    } else {
        format!("from AS {asn} to the fabric's routers")
    };
    let _ = writeln!(
        s,
        "# BIRD 2 configuration for node {me}, generated by `cni6 routes --format bird`.\n\
         # Announces this node's pod prefixes {layout} and\n\
         # installs the prefixes it learns into the kernel: one route per node.\n"
    );
    let _ = writeln!(s, "router id {};\n", router_id(own.underlay));
    s.push_str("protocol device {\n}\n\n");
    s.push_str(
        "# Learned node prefixes into the kernel; nothing of the kernel's is read back.\n\
         # Several nodes announcing one prefix (anycast) become one multipath route.\n\
         protocol kernel cni6_kernel {\n  merge paths yes;\n  ipv6 {\n    import none;\n    \
         export where source = RTS_BGP;\n  };\n}\n\n",
    );
    s.push_str(
        "# This node's prefixes. Blackhole routes only feed BGP (not exported to the\n\
         # kernel, where the node's bridge holds the real, more specific pod ranges).\n\
         protocol static cni6_node {\n  ipv6;\n",
    );
    for p in own.prefixes.iter().chain(&opt.announce) {
        let _ = writeln!(s, "  route {p} blackhole;");
    }
    s.push_str("}\n\n");
    let own_set: Vec<String> = own
        .prefixes
        .iter()
        .chain(&opt.announce)
        .map(|p| format!("{p}+"))
        .collect();
    let _ = writeln!(
        s,
        "# What this node announces must never come back as a route elsewhere.\n\
         define cni6_own = [ {} ];\n",
        own_set.join(", ")
    );
    if opt.bfd {
        s.push_str(
            "protocol bfd cni6_bfd {\n  interface \"*\" {\n    min rx interval 100 ms;\n    \
             min tx interval 100 ms;\n    multiplier 3;\n  };\n}\n\n",
        );
    }
    s.push_str("template bgp cni6_peer {\n");
    let _ = writeln!(s, "  local as {asn};\n  direct;");
    if let Some(h) = opt.hold {
        let _ = writeln!(
            s,
            "  hold time {h};\n  keepalive time {k};\n  connect delay time {k};\n  \
             connect retry time {k};",
            k = (h / 3).max(1)
        );
    }
    if opt.bfd {
        s.push_str("  bfd on;\n");
    }
    match opt.graceful_restart {
        Some(t) => {
            let _ = writeln!(s, "  graceful restart on;\n  graceful restart time {t};");
        }
        None => s.push_str("  graceful restart off;\n"),
    }
    s.push_str(
        "  ipv6 {\n    next hop self;\n    gateway direct;\n    \
         import where net !~ cni6_own;\n    export where proto = \"cni6_node\";\n  };\n}\n\n",
    );
    if opt.peers.is_empty() {
        let mut used = vec![ident(me)];
        for n in nodes.iter().filter(|n| n.name != me) {
            let mut id = ident(&n.name);
            while used.contains(&id) {
                id.push('_');
            }
            used.push(id.clone());
            let _ = writeln!(
                s,
                "protocol bgp {id} from cni6_peer {{\n  description \"node {}\";\n  \
                 neighbor {} as {asn};\n}}\n",
                n.name, n.underlay
            );
        }
    } else {
        for p in &opt.peers {
            let peer_as = p.asn.unwrap_or(asn);
            let kind = if peer_as == asn {
                "iBGP: the router reflects the other nodes' routes"
            } else {
                "eBGP"
            };
            let id = format!(
                "cni6_peer_{}",
                p.addr.to_string().replace(':', "_").trim_matches('_')
            );
            let _ = writeln!(
                s,
                "protocol bgp {id} from cni6_peer {{\n  description \"router {} ({kind})\";\n  \
                 neighbor {} as {peer_as};\n}}\n",
                p.addr, p.addr
            );
        }
    }
    s
}

pub fn run(a: &RoutesArgs, o: &mut Output) -> Result<()> {
    let nodes = nodes(a)?;
    let me = a.self_name.as_deref();
    let text = match a.format {
        Format::Ip => ip_lines(&nodes, me, a.dev.as_deref()).join("\n") + "\n",
        Format::Wireguard => wireguard(&nodes, me),
        Format::Bird => {
            let me = me.ok_or_else(|| {
                CliError::Usage(
                    "--format bird needs --self NAME: the configuration is for one node".into(),
                )
            })?;
            bird(&nodes, me, &BgpOptions::from_args(a)?)
        }
    };
    if o.json {
        let list: Vec<_> = nodes
            .iter()
            .map(|n| {
                json!({"name": n.name, "underlay": n.underlay.to_string(),
                       "prefixes": n.prefixes.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                       "self": Some(n.name.as_str()) == me})
            })
            .collect();
        return o.json(&json!({"nodes": list, "format": format!("{:?}", a.format).to_lowercase(), "output": text}));
    }
    if let Some(path) = &a.output {
        let (dir, name) = match (path.parent(), path.file_name()) {
            (Some(d), Some(n)) => (
                if d.as_os_str().is_empty() {
                    std::path::Path::new(".")
                } else {
                    d
                },
                n,
            ),
            _ => {
                return Err(CliError::Usage(format!(
                    "--output {}: expected a file path, e.g. /run/bird/bird.conf",
                    path.display()
                )))
            }
        };
        crate::commands::install::install_file(
            dir,
            &name.to_string_lossy(),
            text.as_bytes(),
            0o644,
        )?;
        return Ok(());
    }
    o.out.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Vec<FabricNode> {
        [
            "a=fd8c:1f0a:77e3:0:1::/80,2001:db8:7:1::/80@fd00:fab::1",
            "b=fd8c:1f0a:77e3:0:2::/80@fd00:fab::2",
            "c.x=fd8c:1f0a:77e3:0:3::/80@fd00:fab::3",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
    }

    #[test]
    fn ip_form_skips_self() {
        let l = ip_lines(&three(), Some("b"), None);
        assert_eq!(
            l,
            vec![
                "ip -6 route replace fd8c:1f0a:77e3:0:1::/80 via fd00:fab::1",
                "ip -6 route replace 2001:db8:7:1::/80 via fd00:fab::1",
                "ip -6 route replace fd8c:1f0a:77e3:0:3::/80 via fd00:fab::3",
            ]
        );
        assert_eq!(ip_lines(&three(), None, Some("eth0")).len(), 4);
    }

    #[test]
    fn wireguard_form() {
        let w = wireguard(&three(), Some("a"));
        assert!(w.contains("AllowedIPs = fd8c:1f0a:77e3:0:2::/80\n"));
        assert_eq!(w.matches("[Peer]").count(), 2);
    }

    #[test]
    fn bird_form_names_peers_and_prefixes() {
        let b = bird(
            &three(),
            "a",
            &BgpOptions {
                asn: 64512,
                ..BgpOptions::default()
            },
        );
        assert!(b.contains("route 2001:db8:7:1::/80 blackhole;"));
        assert!(b.contains("protocol bgp cni6_c_x from cni6_peer"));
        assert!(b.contains("neighbor fd00:fab::2 as 64512;"));
        assert!(!b.contains("neighbor fd00:fab::1 "));
        assert!(b.contains("router id 0.0.0.1;"));
    }

    #[test]
    fn bird_form_with_peers_announces_extra_prefixes() {
        let opt = BgpOptions {
            asn: 65001,
            peers: vec![
                "fd00:fab::fe@65000".parse().unwrap(),
                "fd00:fab::fd".parse().unwrap(),
            ],
            announce: vec!["fd8c:1f0a:77e3::a/128".parse().unwrap()],
            hold: Some(3),
            bfd: true,
            graceful_restart: None,
        };
        let b = bird(&three(), "b", &opt);
        // Sessions to the routers only, no full mesh.
        assert!(b.contains("neighbor fd00:fab::fe as 65000;"));
        assert!(b.contains("neighbor fd00:fab::fd as 65001;"));
        assert!(!b.contains("neighbor fd00:fab::1 "));
        assert!(b.contains("route fd8c:1f0a:77e3::a/128 blackhole;"));
        assert!(b.contains("hold time 3;\n  keepalive time 1;"));
        assert!(b.contains("bfd on;") && b.contains("protocol bfd"));
        assert!(b.contains("graceful restart off;"));
        assert!(b.contains("fd8c:1f0a:77e3:0:2::/80+, fd8c:1f0a:77e3::a/128+"));
    }

    #[test]
    fn bad_peers() {
        for s in ["fd00::1@", "fd00::1@0", "fd00::1@x", "10.0.0.1@65000", "x"] {
            assert!(s.parse::<Peer>().is_err(), "{s}");
        }
        assert_eq!("fd00::1@65000".parse::<Peer>().unwrap().asn, Some(65000));
    }

    #[test]
    fn bad_nodes() {
        for s in [
            "a",
            "a=fd00::/80",
            "a=fd00::/80@x",
            "=fd00::/80@fd00::1",
            "a b=fd00::/80@fd00::1",
            "a=10.0.0.0/8@fd00::1",
        ] {
            assert!(s.parse::<FabricNode>().is_err(), "{s}");
        }
    }
}
