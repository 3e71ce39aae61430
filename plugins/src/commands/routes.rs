//! `cni6 routes`: what the fabric needs to reach every node's pods. A pod
//! address says which node it lives on (design.md), so the fabric needs one
//! route per node prefix and never one per pod; this command turns the
//! list of nodes into that, in the form the fabric takes it:
//!
//! - `ip`: `ip -6 route replace PREFIX via UNDERLAY` for a routed L2 fabric
//!   (static routes on each node, or on a router);
//! - `wireguard`: a `[Peer]` fragment per node with its `AllowedIPs`
//!   (wireguard routes by AllowedIPs; keys and endpoints stay the
//!   operator's);
//! - `bird`: a BIRD 2 configuration for one node (`--self`) announcing its
//!   prefixes over BGP to the other nodes (or the fabric's route
//!   reflectors, as the seeds' routers run BIRD) and installing what it
//!   learns into the kernel.

use crate::cli::Output;
use crate::error::{CliError, Result};
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

    /// `ip` form: add `dev IF` to every route.
    #[arg(long, value_name = "IF")]
    pub dev: Option<String>,

    /// `bird` form: the BGP AS number of the nodes (iBGP full mesh).
    #[arg(long, default_value_t = 64512, value_name = "ASN")]
    pub asn: u32,
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
    if specs.is_empty() {
        return Err(CliError::Usage(
            "no nodes: give --node NAME=PREFIX@UNDERLAY (repeatable) or --nodes-file FILE".into(),
        ));
    }
    let mut out: Vec<FabricNode> = Vec::new();
    for s in &specs {
        let n: FabricNode = s.parse()?;
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

pub fn bird(nodes: &[FabricNode], me: &str, asn: u32) -> String {
    let own = nodes
        .iter()
        .find(|n| n.name == me)
        .expect("checked by nodes()");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# BIRD 2 configuration for node {me}, generated by `cni6 routes --format bird`.\n\
         # Announces this node's pod prefixes over iBGP (AS {asn}) to the other nodes and\n\
         # installs the prefixes it learns into the kernel: one route per node.\n"
    );
    let _ = writeln!(s, "router id {};\n", router_id(own.underlay));
    s.push_str("protocol device {\n}\n\n");
    s.push_str(
        "# Learned node prefixes into the kernel; nothing of the kernel's is read back.\n\
         protocol kernel cni6_kernel {\n  ipv6 {\n    import none;\n    export where source = RTS_BGP;\n  };\n}\n\n",
    );
    s.push_str(
        "# This node's prefixes. Blackhole routes only feed BGP (not exported to the\n\
         # kernel, where the node's bridge holds the real, more specific pod ranges).\n\
         protocol static cni6_node {\n  ipv6;\n",
    );
    for p in &own.prefixes {
        let _ = writeln!(s, "  route {p} blackhole;");
    }
    s.push_str("}\n\n");
    let _ = writeln!(
        s,
        "template bgp cni6_peer {{\n  local as {asn};\n  direct;\n  ipv6 {{\n    \
         next hop self;\n    gateway direct;\n    import all;\n    \
         export where proto = \"cni6_node\";\n  }};\n}}\n"
    );
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
            bird(&nodes, me, a.asn)
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
        let b = bird(&three(), "a", 64512);
        assert!(b.contains("route 2001:db8:7:1::/80 blackhole;"));
        assert!(b.contains("protocol bgp cni6_c_x from cni6_peer"));
        assert!(b.contains("neighbor fd00:fab::2 as 64512;"));
        assert!(!b.contains("neighbor fd00:fab::1 "));
        assert!(b.contains("router id 0.0.0.1;"));
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
