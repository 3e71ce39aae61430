//! `cni6 nat64`: the configuration of an IPv4-enabled node's NAT64 and
//! DNS64, printed the way `routes` prints BIRD's. Pods are IPv6-only; an
//! IPv4-only host is reached at `<node prefix>:64::<IPv4>` (docs/design.md's
//! `C:n:64::/96`), which lies inside the node's /80, so the fabric needs no
//! route beyond the one per node it already has.
//!
//! - `tayga`: tayga's configuration: the /96 translated to a local IPv4
//!   pool (one IPv4 address per pod talking to IPv4, masqueraded behind the
//!   uplink's address);
//! - `commands`: the tun device, the routes, forwarding and the masquerade
//!   rule, as shell commands (idempotent: safe to run at every boot);
//! - `unbound`: unbound's DNS64 (`dns64-prefix` the node's /96), listening
//!   on an address of the node prefix that pods of every node reach.

use crate::error::{CliError, Result};
use crate::options::Output;
use clap::{Args, ValueEnum};
use ipnet::{Ipv4Net, Ipv6Net};
use serde_json::json;
use std::fmt::Write as _;
use std::net::Ipv6Addr;
use std::path::PathBuf;

/// The 16 bits after the node prefix that make its NAT64 range (`C:n:64::`).
pub const NAT64_SUBNET: u16 = 0x64;
/// The interface id of the DNS64 resolver in the node prefix (`C:n::53`).
pub const DNS64_HOST: u128 = 0x53;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// tayga's configuration file.
    Tayga,
    /// Shell commands: tun device, routes, forwarding, masquerade.
    Commands,
    /// unbound `server:` clause with the DNS64 module.
    Unbound,
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Example (node 1 of the cluster fd8c:1f0a:77e3::/64, IPv4 on eth1):\n  \
    cni6 nat64 --node-prefix fd8c:1f0a:77e3:0:1::/80 --ipv4-pool 192.168.255.0/24 --uplink eth1 \
    --format tayga > /etc/tayga/cni6-nat64.conf\n  \
    cni6 nat64 ... --format commands | sh && tayga -c /etc/tayga/cni6-nat64.conf"
)]
pub struct Nat64Args {
    /// The node's ULA prefix (C:n::/80): NAT64 serves <prefix>:64::/96.
    #[arg(long, value_name = "PREFIX")]
    pub node_prefix: String,

    /// IPv4 addresses tayga maps pods to, local to the node and routed to
    /// its tun device; masqueraded behind the uplink. Pick a range used
    /// nowhere else (e.g. 192.168.255.0/24).
    #[arg(long, value_name = "CIDR")]
    pub ipv4_pool: String,

    /// The node's IPv4 interface (masquerade source).
    #[arg(long, value_name = "IF")]
    pub uplink: String,

    /// Output form.
    #[arg(long, value_enum, default_value = "tayga")]
    pub format: Format,

    /// tayga's tun device.
    #[arg(long, default_value = "nat64", value_name = "NAME")]
    pub tun: String,

    /// Where the tayga configuration lives (named in `commands`).
    #[arg(
        long,
        default_value = "/etc/tayga/cni6-nat64.conf",
        value_name = "PATH"
    )]
    pub conf: PathBuf,

    /// tayga's state directory (its address map survives restarts there).
    #[arg(long, default_value = "/var/lib/tayga", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// Networks allowed to query the DNS64 [default: the /64 holding the
    /// node prefix: the cluster ULA].
    #[arg(long = "clients", value_name = "PREFIX")]
    pub clients: Vec<String>,
}

/// A node's NAT64/DNS64 plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nat64 {
    pub node_prefix: Ipv6Net,
    /// `<node prefix>:64::/L+16`: the IPv6 side of the translator.
    pub prefix: Ipv6Net,
    pub pool: Ipv4Net,
    /// tayga's own IPv4 address: the pool's first host.
    pub tayga_ipv4: std::net::Ipv4Addr,
    /// The resolver's address, `<node prefix>::53`.
    pub dns: Ipv6Addr,
    pub clients: Vec<Ipv6Net>,
    pub uplink: String,
    pub tun: String,
    pub conf: PathBuf,
    pub data_dir: PathBuf,
}

/// RFC 6052's prefix lengths: the only ones a NAT64 can embed IPv4 in.
const RFC6052_LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

impl Nat64 {
    pub fn from_args(a: &Nat64Args) -> Result<Nat64> {
        let node_prefix: Ipv6Net = a
            .node_prefix
            .parse::<Ipv6Net>()
            .map(|n| n.trunc())
            .map_err(|_| {
                CliError::Usage(format!(
                    "--node-prefix {:?}: not an IPv6 prefix (expected the node's ULA /80, \
                     e.g. fd8c:1f0a:77e3:0:1::/80)",
                    a.node_prefix
                ))
            })?;
        let len = node_prefix.prefix_len() + 16;
        if !RFC6052_LENGTHS.contains(&len) {
            return Err(CliError::Usage(format!(
                "--node-prefix {node_prefix}: its NAT64 range would be a /{len}, but a NAT64 \
                 prefix must be one of /32, /40, /48, /56, /64, /96 (RFC 6052); use the \
                 design's /80 node prefix (NAT64 at <prefix>:64::/96)"
            )));
        }
        let base = u128::from(node_prefix.network())
            | (u128::from(NAT64_SUBNET) << (112 - u32::from(node_prefix.prefix_len())));
        let prefix = Ipv6Net::new(Ipv6Addr::from(base), len).expect("len <= 96");
        let pool: Ipv4Net = a
            .ipv4_pool
            .parse::<Ipv4Net>()
            .map(|n| n.trunc())
            .map_err(|_| {
                CliError::Usage(format!(
                    "--ipv4-pool {:?}: not an IPv4 prefix (expected e.g. 192.168.255.0/24)",
                    a.ipv4_pool
                ))
            })?;
        if pool.prefix_len() > 30 {
            return Err(CliError::Usage(format!(
                "--ipv4-pool {pool}: too small: tayga needs its own address plus one per \
                 pod talking to IPv4 (use a /30 or larger, e.g. a /24)"
            )));
        }
        let tayga_ipv4 = std::net::Ipv4Addr::from(u32::from(pool.network()) + 1);
        let clients = if a.clients.is_empty() {
            vec![Ipv6Net::new(node_prefix.network(), 64)
                .expect("64 <= 128")
                .trunc()]
        } else {
            a.clients
                .iter()
                .map(|c| {
                    c.parse::<Ipv6Net>().map(|n| n.trunc()).map_err(|_| {
                        CliError::Usage(format!(
                            "--clients {c:?}: not an IPv6 prefix (expected the cluster \
                             ULA, e.g. fd8c:1f0a:77e3::/64)"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        if a.uplink.is_empty() || a.uplink.len() > 15 || a.uplink.contains(['/', ' ']) {
            return Err(CliError::Usage(format!(
                "--uplink {:?}: not an interface name (expected e.g. eth1)",
                a.uplink
            )));
        }
        Ok(Nat64 {
            dns: Ipv6Addr::from(u128::from(node_prefix.network()) | DNS64_HOST),
            node_prefix,
            prefix,
            pool,
            tayga_ipv4,
            clients,
            uplink: a.uplink.clone(),
            tun: a.tun.clone(),
            conf: a.conf.clone(),
            data_dir: a.data_dir.clone(),
        })
    }

    pub fn tayga(&self) -> String {
        format!(
            "# tayga NAT64 for node prefix {np}, generated by `cni6 nat64`.\n\
             # IPv6 {p} <-> IPv4: pods are mapped into {pool} (masqueraded behind\n\
             # {up}); <{p}>:a.b.c.d is the IPv4 host a.b.c.d.\n\
             tun-device {tun}\nipv4-addr {v4}\nprefix {p}\ndynamic-pool {pool}\ndata-dir {dd}\n",
            np = self.node_prefix,
            p = self.prefix,
            pool = self.pool,
            up = self.uplink,
            tun = self.tun,
            v4 = self.tayga_ipv4,
            dd = self.data_dir.display(),
        )
    }

    pub fn commands(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# NAT64 on this node for {p}, generated by `cni6 nat64`. Idempotent.\n\
             # Then start the translator: tayga -c {conf}\n\
             set -e\n\
             mkdir -p {dd}\n\
             ip link show {tun} >/dev/null 2>&1 || tayga --mktun -c {conf}\n\
             ip link set {tun} up\n\
             ip route replace {pool} dev {tun}\n\
             ip -6 route replace {p} dev {tun}\n\
             sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1\n\
             iptables -t nat -C POSTROUTING -s {pool} -o {up} -j MASQUERADE 2>/dev/null \\\n  \
             || iptables -t nat -A POSTROUTING -s {pool} -o {up} -j MASQUERADE",
            p = self.prefix,
            conf = self.conf.display(),
            dd = self.data_dir.display(),
            tun = self.tun,
            pool = self.pool,
            up = self.uplink,
        );
        s
    }

    pub fn unbound(&self) -> String {
        let mut s = format!(
            "# DNS64 for the cluster, generated by `cni6 nat64`: a name with only an A\n\
             # record gets an AAAA in {p}, which this node translates.\n\
             # Put {dns}/128 on the node's lo; pods use it as their resolver.\n\
             server:\n  interface: {dns}\n  module-config: \"dns64 iterator\"\n  \
             dns64-prefix: {p}\n  do-ip4: yes\n  do-ip6: yes\n",
            p = self.prefix,
            dns = self.dns,
        );
        for c in &self.clients {
            let _ = writeln!(s, "  access-control: {c} allow");
        }
        s
    }
}

pub fn run(a: &Nat64Args, o: &mut Output) -> Result<()> {
    let n = Nat64::from_args(a)?;
    let text = match a.format {
        Format::Tayga => n.tayga(),
        Format::Commands => n.commands(),
        Format::Unbound => n.unbound(),
    };
    if o.json {
        return o.json(&json!({
            "nodePrefix": n.node_prefix.to_string(),
            "nat64Prefix": n.prefix.to_string(),
            "ipv4Pool": n.pool.to_string(),
            "dns64": n.dns.to_string(),
            "format": format!("{:?}", a.format).to_lowercase(),
            "output": text,
        }));
    }
    o.out.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(prefix: &str, pool: &str) -> Nat64Args {
        Nat64Args {
            node_prefix: prefix.into(),
            ipv4_pool: pool.into(),
            uplink: "eth1".into(),
            format: Format::Tayga,
            tun: "nat64".into(),
            conf: "/etc/tayga/cni6-nat64.conf".into(),
            data_dir: "/var/lib/tayga".into(),
            clients: vec![],
        }
    }

    #[test]
    fn nat64_range_is_the_node_prefix_with_64() {
        let n = Nat64::from_args(&args("fd8c:1f0a:77e3:0:7::/80", "192.0.2.128/25")).unwrap();
        assert_eq!(n.prefix.to_string(), "fd8c:1f0a:77e3:0:7:64::/96");
        assert_eq!(n.dns.to_string(), "fd8c:1f0a:77e3:0:7::53");
        assert_eq!(n.tayga_ipv4.to_string(), "192.0.2.129");
        assert_eq!(n.clients[0].to_string(), "fd8c:1f0a:77e3::/64");
        let t = n.tayga();
        assert!(t.contains("\nprefix fd8c:1f0a:77e3:0:7:64::/96\n"));
        assert!(t.contains("\ndynamic-pool 192.0.2.128/25\n"));
        let c = n.commands();
        assert!(c.contains("ip -6 route replace fd8c:1f0a:77e3:0:7:64::/96 dev nat64"));
        assert!(c.contains("-s 192.0.2.128/25 -o eth1 -j MASQUERADE"));
        let u = n.unbound();
        assert!(u.contains("dns64-prefix: fd8c:1f0a:77e3:0:7:64::/96"));
        assert!(u.contains("access-control: fd8c:1f0a:77e3::/64 allow"));
    }

    #[test]
    fn refuses_what_cannot_be_a_nat64() {
        // /72 + 16 = /88: not an RFC 6052 length.
        let e = Nat64::from_args(&args("fd00:1::/72", "192.0.2.0/24")).unwrap_err();
        assert!(e.to_string().contains("RFC 6052"), "{e}");
        assert!(Nat64::from_args(&args("fd00::/80", "192.0.2.0/31")).is_err());
        assert!(Nat64::from_args(&args("fd00::/80", "fd00::/64")).is_err());
        assert!(Nat64::from_args(&args("10.0.0.0/8", "192.0.2.0/24")).is_err());
        let mut a = args("fd00::/80", "192.0.2.0/24");
        a.uplink = "a b".into();
        assert!(Nat64::from_args(&a).is_err());
    }
}
