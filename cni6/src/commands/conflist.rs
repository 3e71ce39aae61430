//! `cni6 conflist`: the network configuration list for a node, built from
//! a few options and validated by the plugins' own config parsers
//! (bridge6, ipam-prefix, firewall6), so a list it prints is one the
//! plugins accept — the same errors, naming the same keys.
//!
//! The usual shape is one list for every node: `--ula-from-interface` and
//! `--gua-from-interface` make each node derive its prefixes from its own
//! addresses at ADD time, so a DaemonSet can write the same bytes
//! everywhere. `--cluster-ula C --node-index N` writes the node's ULA /80
//! (`C:N::/80`) literally instead, for nodes without such an address.

use crate::error::{CliError, Result};
use crate::options::Output;
use clap::{Args, ValueEnum};
use cni_common::config::NetConf;
use cni_common::runtime::ConfList;
use ipam_prefix::config::{Scope, DEFAULT_DATA_DIR};
use ipam_prefix::iface::in_scope;
use ipnet::Ipv6Net;
use serde_json::{json, Map, Value};
use std::net::Ipv6Addr;

/// `ingress` of firewall6 (docs/design.md "Configuration").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IngressArg {
    /// New inbound connections only from the cluster prefixes or to --allow-port.
    ClusterOnly,
    /// Accept every inbound connection (like the reference firewall plugin).
    Open,
}

impl IngressArg {
    fn as_str(self) -> &'static str {
        match self {
            IngressArg::ClusterOnly => "cluster-only",
            IngressArg::Open => "open",
        }
    }
}

/// The options that shape a node's conflist; shared by `conflist` and
/// `install`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Network configuration")]
pub struct ConflistOpts {
    /// Network name (the runtime's `name`; names the IPAM store and firewall rules).
    #[arg(long, default_value = "cluster", value_name = "NAME")]
    pub name: String,

    /// CNI version of the list. 1.0.0 works with every current runtime;
    /// 1.1.0 adds GC and STATUS where the runtime supports them.
    #[arg(long, default_value = "1.0.0", value_name = "VERSION")]
    pub cni_version: String,

    /// The cluster ULA /64 (e.g. fd8c:1f0a:77e3::/64). Always listed as a
    /// cluster prefix for the firewall; with --node-index it also gives
    /// this node's ULA /80.
    #[arg(long, value_name = "PREFIX/64")]
    pub cluster_ula: Option<Ipv6Net>,

    /// This node's number n (1..65535): its ULA prefix is <cluster>:n::/80.
    #[arg(long, value_name = "N", requires = "cluster_ula",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub node_index: Option<u16>,

    /// Take this node's ULA prefix from the ULA address on interface IF at
    /// ADD time (same list on every node). `auto`: the one interface of
    /// this node with a ULA address inside --cluster-ula.
    #[arg(long, value_name = "IF|auto", conflicts_with = "node_index")]
    pub ula_from_interface: Option<String>,

    /// Take this node's global prefix from the global (provider) address on
    /// interface IF at ADD time; a /64 is cut to its first /80. `auto`: the
    /// one interface of this node with a global address.
    #[arg(long, value_name = "IF|auto")]
    pub gua_from_interface: Option<String>,

    /// A literal node prefix (repeatable), e.g. 2001:db8:7:12::/80.
    #[arg(long = "node-prefix", value_name = "PREFIX")]
    pub node_prefixes: Vec<Ipv6Net>,

    /// A further prefix whose sources count as "inside the cluster" for the
    /// firewall (repeatable), e.g. the GUA prefixes of the other nodes.
    #[arg(long = "cluster-prefix", value_name = "PREFIX")]
    pub cluster_prefixes: Vec<Ipv6Net>,

    /// Who may open connections to pods.
    #[arg(long, value_enum, default_value = "cluster-only")]
    pub ingress: IngressArg,

    /// A port open to everyone despite cluster-only ingress (repeatable):
    /// 443/tcp, 53/udp, 8000-8080/tcp; without /PROTO, tcp.
    #[arg(long = "allow-port", value_name = "PORT[-LAST][/PROTO]")]
    pub allow_ports: Vec<String>,

    /// MTU of pod interfaces [default: the MTU of the node's default-route interface].
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<u32>,

    /// Name of the node bridge the pods plug into.
    #[arg(long, default_value = bridge6::config::DEFAULT_BRIDGE, value_name = "NAME")]
    pub bridge: String,

    /// The 16-bit subnet id: pod range = node prefix + this id (a second
    /// network on the same node needs its own).
    #[arg(long, default_value_t = 1, value_name = "ID")]
    pub subnet_id: u16,

    /// Where ipam-prefix keeps its allocations.
    #[arg(long, default_value = DEFAULT_DATA_DIR, value_name = "DIR")]
    pub data_dir: String,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = "Examples:\n  \
    # the same list on every node (prefixes from each node's own addresses)\n  \
    cni6 conflist --cluster-ula fd8c:1f0a:77e3::/64 --ula-from-interface eth0 --gua-from-interface eth0\n  \
    # node 3 of the cluster, ULA only, HTTPS open to the world\n  \
    cni6 conflist --cluster-ula fd8c:1f0a:77e3::/64 --node-index 3 --allow-port 443/tcp")]
pub struct ConflistArgs {
    #[command(flatten)]
    pub opts: ConflistOpts,
}

fn usage(msg: String) -> CliError {
    CliError::Usage(msg)
}

/// `443/tcp`, `8000-8080/udp`, `53` → an `allowPorts` entry (checked by
/// firewall6's parser afterwards).
pub fn allow_port_entry(s: &str) -> Result<Value> {
    let (port, proto) = match s.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (s, "tcp".to_string()),
    };
    if port.is_empty() {
        return Err(usage(format!(
            "--allow-port {s:?}: expected PORT[-LAST][/tcp|udp|sctp], e.g. 443/tcp"
        )));
    }
    let port = match port.parse::<u64>() {
        Ok(n) => json!(n),
        Err(_) => json!(port),
    };
    Ok(json!({"port": port, "protocol": proto}))
}

/// `C:n::/80` for node n of cluster /64 C.
pub fn node_ula(cluster: Ipv6Net, n: u16) -> Ipv6Net {
    let base = u128::from(cluster.network()) | (u128::from(n) << 48);
    Ipv6Net::new(Ipv6Addr::from(base), 80).expect("80 <= 128")
}

/// The interfaces of this node with an address of `scope` (inside `within`
/// when given): lo, pod veths and every bridge bridge6 made aside — `bridge`,
/// those of `node_bridges` (the node's other cni6 networks, e.g. multus'
/// net1) and any bridge whose ports are all pod veths, since each holds a
/// pod gateway inside the cluster ULA once a pod is attached.
pub fn uplink_candidates(
    scope: Scope,
    within: Option<Ipv6Net>,
    bridge: &str,
    node_bridges: &[String],
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return out;
    };
    for ifa in addrs {
        let Some(a) = ifa
            .address
            .as_ref()
            .and_then(|a| a.as_sockaddr_in6())
            .map(|a| a.ip())
        else {
            continue;
        };
        let name = ifa.interface_name;
        if name == "lo"
            || name == bridge
            || name.starts_with(cni_common::attachment::HOST_VETH_PREFIX)
            || !in_scope(a, scope)
            || within.is_some_and(|w| !w.contains(&a))
            || out.contains(&name)
            || crate::node::is_bridge6_bridge(&name, node_bridges)
        {
            continue;
        }
        out.push(name);
    }
    out
}

impl ConflistOpts {
    /// Replace `auto` in --ula-from-interface / --gua-from-interface by the
    /// one interface of this node that fits; more or none is an error.
    /// `node_bridges`: the bridges of the node's cni6 networks (skipped).
    pub fn resolve_auto(&mut self, node_bridges: &[String]) -> Result<()> {
        for (opt, scope, within, slot) in [
            (
                "--ula-from-interface",
                Scope::Ula,
                self.cluster_ula,
                &mut self.ula_from_interface,
            ),
            (
                "--gua-from-interface",
                Scope::Global,
                None,
                &mut self.gua_from_interface,
            ),
        ] {
            if slot.as_deref() != Some("auto") {
                continue;
            }
            let c = uplink_candidates(scope, within, &self.bridge, node_bridges);
            match c.as_slice() {
                [one] => *slot = Some(one.clone()),
                [] => {
                    return Err(CliError::Failed(format!(
                        "{opt} auto: no interface of this node has a {} address{}; name the \
                         uplink (e.g. {opt} ens3) or leave the option out",
                        scope.as_str(),
                        within.map(|w| format!(" inside {w}")).unwrap_or_default()
                    )))
                }
                many => {
                    return Err(CliError::Failed(format!(
                        "{opt} auto: {} all have a {} address; name the uplink: {opt} IF",
                        many.join(", "),
                        scope.as_str()
                    )))
                }
            }
        }
        Ok(())
    }

    /// The list as JSON, validated.
    pub fn build(&self) -> Result<Value> {
        let mut prefixes = Vec::new();
        let mut cluster = Vec::new();
        if let Some(c) = self.cluster_ula {
            if c.prefix_len() != 64 || c.addr() != c.network() {
                return Err(usage(format!(
                    "--cluster-ula {c}: expected the cluster's ULA /64 with no host bits, e.g. fd8c:1f0a:77e3::/64"
                )));
            }
            if !in_scope(c.network(), Scope::Ula) {
                return Err(usage(format!(
                    "--cluster-ula {c}: expected a unique local prefix (inside fc00::/7)"
                )));
            }
            cluster.push(c.to_string());
            if let Some(n) = self.node_index {
                prefixes.push(json!({"node": node_ula(c, n).to_string()}));
            }
        }
        if let Some(i) = &self.ula_from_interface {
            prefixes.push(json!({"fromInterface": i, "scope": "ula"}));
        }
        if let Some(i) = &self.gua_from_interface {
            prefixes.push(json!({"fromInterface": i, "scope": "global"}));
        }
        for p in &self.node_prefixes {
            if let Some(c) = self.cluster_ula {
                if in_scope(p.network(), Scope::Ula) && !c.contains(p) {
                    return Err(usage(format!(
                        "--node-prefix {p}: a ULA node prefix outside --cluster-ula {c}; \
                         node n of the cluster is {} (--node-index n)",
                        node_ula(c, 1).to_string().replace(":1::/80", ":n::/80")
                    )));
                }
            }
            prefixes.push(json!({"node": p.to_string()}));
        }
        if prefixes.is_empty() {
            return Err(usage(
                "no node prefix: give --cluster-ula with --node-index, --ula-from-interface, \
                 --gua-from-interface or --node-prefix"
                    .into(),
            ));
        }
        for p in &self.cluster_prefixes {
            let s = p.trunc().to_string();
            if !cluster.contains(&s) {
                cluster.push(s);
            }
        }
        let mut bridge = Map::new();
        bridge.insert("type".into(), json!("bridge6"));
        bridge.insert("bridge".into(), json!(self.bridge));
        if let Some(m) = self.mtu {
            bridge.insert("mtu".into(), json!(m));
        }
        bridge.insert("hairpinMode".into(), json!(true));
        bridge.insert(
            "ipam".into(),
            json!({
                "type": "ipam-prefix",
                "dataDir": self.data_dir,
                "subnetId": self.subnet_id,
                "prefixes": prefixes,
                "routes": [ { "dst": "::/0" } ],
            }),
        );
        let mut fw = Map::new();
        fw.insert("type".into(), json!("firewall6"));
        fw.insert("clusterPrefixes".into(), json!(cluster));
        fw.insert("ingress".into(), json!(self.ingress.as_str()));
        let ports = self
            .allow_ports
            .iter()
            .map(|p| allow_port_entry(p))
            .collect::<Result<Vec<_>>>()?;
        if !ports.is_empty() {
            fw.insert("allowPorts".into(), json!(ports));
        }
        let list = json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": [Value::Object(bridge), Value::Object(fw)],
        });
        // The options made this list: what the plugins refuse is a usage error.
        validate(&list).map_err(|e| CliError::Usage(e.report().replacen("cni6: ", "", 1)))?;
        Ok(list)
    }
}

/// Every plugin of `list` parsed the way the runtime would hand it over
/// (name and cniVersion injected) by the plugin's own parser.
pub fn validate(list: &Value) -> Result<ConfList> {
    let bytes = serde_json::to_vec(list).map_err(std::io::Error::from)?;
    let parsed =
        ConfList::parse(&bytes).map_err(|e| CliError::cni("the generated list is invalid", e))?;
    for plugin in &parsed.plugins {
        let mut obj = plugin.clone();
        obj.insert("name".into(), json!(parsed.name));
        obj.insert("cniVersion".into(), json!(parsed.cni_version));
        let raw = serde_json::to_vec(&obj).map_err(std::io::Error::from)?;
        let conf = NetConf::parse(&raw).map_err(|e| CliError::cni("network config", e))?;
        match conf.plugin_type.as_str() {
            "bridge6" => {
                bridge6::config::Config::parse(&conf)
                    .map_err(|e| CliError::cni("bridge6 config", e))?;
                ipam_prefix::config::IpamConfig::parse(&conf)
                    .map_err(|e| CliError::cni("ipam-prefix config", e.into()))?;
            }
            "firewall6" => {
                firewall6::config::FirewallConf::from_raw(&conf.raw)
                    .map_err(|e| CliError::cni("firewall6 config", e.into()))?;
            }
            _ => {}
        }
    }
    Ok(parsed)
}

/// The list's bytes as written to disk: pretty JSON and a final newline,
/// so two runs with the same options produce identical files.
pub fn render(list: &Value) -> Vec<u8> {
    let mut b = serde_json::to_vec_pretty(list).expect("a Value always serializes");
    b.push(b'\n');
    b
}

pub fn run(a: &ConflistArgs, o: &mut Output) -> Result<()> {
    let list = a.opts.build()?;
    // The list is JSON already; --json changes nothing.
    o.out.write_all(&render(&list))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        o: ConflistOpts,
    }

    fn opts(args: &[&str]) -> ConflistOpts {
        let mut v = vec!["t"];
        v.extend_from_slice(args);
        T::try_parse_from(v).unwrap().o
    }

    #[test]
    fn node_index_gives_the_node_ula() {
        let l = opts(&["--cluster-ula", "fd8c:1f0a:77e3::/64", "--node-index", "3"])
            .build()
            .unwrap();
        assert_eq!(
            l["plugins"][0]["ipam"]["prefixes"][0]["node"],
            "fd8c:1f0a:77e3:0:3::/80"
        );
        assert_eq!(l["plugins"][1]["clusterPrefixes"][0], "fd8c:1f0a:77e3::/64");
        assert_eq!(l["cniVersion"], "1.0.0");
        assert_eq!(l["plugins"][1]["ingress"], "cluster-only");
    }

    #[test]
    fn interface_options_are_node_independent() {
        let args = [
            "--cluster-ula",
            "fd8c:1f0a:77e3::/64",
            "--ula-from-interface",
            "eth0",
            "--gua-from-interface",
            "eth0",
            "--allow-port",
            "443/tcp",
            "--allow-port",
            "8000-8080/udp",
        ];
        let l = opts(&args).build().unwrap();
        assert_eq!(render(&l), render(&opts(&args).build().unwrap()));
        assert_eq!(
            l["plugins"][0]["ipam"]["prefixes"],
            json!([{"fromInterface": "eth0", "scope": "ula"},
                   {"fromInterface": "eth0", "scope": "global"}])
        );
        assert_eq!(
            l["plugins"][1]["allowPorts"],
            json!([{"port": 443, "protocol": "tcp"}, {"port": "8000-8080", "protocol": "udp"}])
        );
    }

    #[test]
    fn plugin_parsers_reject_bad_values() {
        // Each of these is refused by the plugin's own parser, naming the key.
        let cases: &[(&[&str], &str)] = &[
            (&["--gua-from-interface", "eth0", "--mtu", "1000"], "mtu"),
            (
                &["--gua-from-interface", "eth0", "--allow-port", "70000/tcp"],
                "allowPorts[0]",
            ),
            (
                &["--gua-from-interface", "eth0", "--allow-port", "443/icmp"],
                "allowPorts[0].protocol",
            ),
            (
                &["--gua-from-interface", "eth0", "--bridge", "a/b"],
                "bridge",
            ),
            (
                &["--gua-from-interface", "eth0", "--data-dir", "relative"],
                "ipam.dataDir",
            ),
            (&["--node-prefix", "fd00::/120"], "ipam.prefixes[0].node"),
        ];
        for (args, key) in cases {
            let e = opts(args).build().unwrap_err().to_string();
            assert!(e.contains(key), "{args:?}: {e}");
        }
    }

    #[test]
    fn node_prefix_outside_the_cluster_ula_is_refused() {
        let e = opts(&[
            "--cluster-ula",
            "fd8c:1f0a:77e3::/64",
            "--node-prefix",
            "fd00:9::/80",
        ])
        .build()
        .unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        assert!(e.to_string().contains("outside --cluster-ula"), "{e}");
        // A ULA node prefix inside it, and any GUA, are fine.
        opts(&[
            "--cluster-ula",
            "fd8c:1f0a:77e3::/64",
            "--node-prefix",
            "fd8c:1f0a:77e3:0:4::/80",
            "--node-prefix",
            "2001:db8:7:12::/80",
        ])
        .build()
        .unwrap();
    }

    #[test]
    fn usage_errors() {
        assert!(opts(&[]).build().is_err());
        assert!(
            opts(&["--cluster-ula", "2001:db8::/64", "--node-index", "1"])
                .build()
                .is_err()
        );
        assert!(opts(&["--cluster-ula", "fd00::/48", "--node-index", "1"])
            .build()
            .is_err());
        assert!(
            T::try_parse_from(["t", "--cluster-ula", "fd00::/64", "--node-index", "0"]).is_err()
        );
        assert!(
            T::try_parse_from(["t", "--node-index", "1"]).is_err(),
            "--node-index needs --cluster-ula"
        );
    }
}
