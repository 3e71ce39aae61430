//! The firewall6 keys of a network configuration (docs/design.md, "Configuration").
//!
//! Unknown keys are ignored (conformance.md #14); a malformed known key is error 7
//! naming the key, the value and what was expected. Decisions where the
//! contract is silent: a missing `clusterPrefixes` is an empty list (only
//! replies and `allowPorts` get in under `cluster-only`); a prefix with host
//! bits set is cut to its network (`fd00::1/64` means `fd00::/64`); an
//! `allowPorts` entry without `protocol` is TCP.

use crate::error::{Error, Result};
use ipnet::{IpNet, Ipv6Net};
use serde_json::Value;
use std::fmt;

/// Default operator chain, jumped to first and never modified.
pub const DEFAULT_ADMIN_CHAIN: &str = "CNI6-ADMIN";

/// iptables limits chain names to 28 bytes (XT_EXTENSION_MAXNAMELEN - 1).
pub const MAX_CHAIN_LEN: usize = 28;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ingress {
    /// New inbound connections only from `clusterPrefixes` or to `allowPorts`.
    ClusterOnly,
    /// Everything inbound accepted (the reference firewall's behaviour).
    Open,
}

impl Ingress {
    pub fn as_str(self) -> &'static str {
        match self {
            Ingress::ClusterOnly => "cluster-only",
            Ingress::Open => "open",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One `allowPorts` entry: a port or an inclusive range of one protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllowedPorts {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
}

impl fmt::Display for AllowedPorts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}/{}", self.first, self.protocol.as_str())
        } else {
            write!(f, "{}-{}/{}", self.first, self.last, self.protocol.as_str())
        }
    }
}

/// The policy one network asks for. Everything here shapes the rules; two
/// networks with equal `FirewallConf` share one policy chain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FirewallConf {
    pub cluster_prefixes: Vec<Ipv6Net>,
    pub ingress: Ingress,
    pub allow_ports: Vec<AllowedPorts>,
    pub admin_chain: String,
    /// When set, a source in `cluster_prefixes` counts as inside only when
    /// it arrives from a pod (the pod's bridge) or on one of these.
    pub cluster_interfaces: Vec<String>,
}

/// Every key firewall6 reads from its plugin object, beside the runtime's
/// ([`cni_common::keys::RUNTIME_KEYS`]): a key one typo away from one of
/// these is refused, `cni6 lint` lists the others.
pub const KNOWN_KEYS: &[&str] = &[
    "clusterPrefixes",
    "clusterInterfaces",
    "ingress",
    "allowPorts",
    "adminChain",
];

impl FirewallConf {
    pub fn from_raw(raw: &Value) -> Result<FirewallConf> {
        if let Some(obj) = raw.as_object() {
            cni_common::keys::refuse_near_miss(obj, "", KNOWN_KEYS)?;
        }
        Ok(FirewallConf {
            cluster_prefixes: cluster_prefixes(raw.get("clusterPrefixes"))?,
            ingress: ingress(raw.get("ingress"))?,
            allow_ports: allow_ports(raw.get("allowPorts"))?,
            admin_chain: admin_chain(raw.get("adminChain"))?,
            cluster_interfaces: cluster_interfaces(raw.get("clusterInterfaces"))?,
        })
    }
}

fn present(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn cluster_prefixes(v: Option<&Value>) -> Result<Vec<Ipv6Net>> {
    const EXPECTED: &str = "an array of IPv6 prefixes like \"fd8c:1f0a:77e3::/64\"";
    let Some(v) = present(v) else {
        return Ok(vec![]);
    };
    let items = v
        .as_array()
        .ok_or_else(|| Error::config("clusterPrefixes", v, EXPECTED))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = format!("clusterPrefixes[{i}]");
        let s = item
            .as_str()
            .ok_or_else(|| Error::config(&key, item, EXPECTED))?;
        let net: IpNet = s
            .parse()
            .map_err(|_| Error::config(&key, item, "an IPv6 prefix in CIDR notation"))?;
        match net {
            IpNet::V6(n) => {
                let n = n.trunc();
                if !out.contains(&n) {
                    out.push(n);
                }
            }
            IpNet::V4(_) => {
                return Err(Error::config(
                    &key,
                    item,
                    "an IPv6 prefix (firewall6 manages ip6tables only)",
                ))
            }
        }
    }
    Ok(out)
}

fn cluster_interfaces(v: Option<&Value>) -> Result<Vec<String>> {
    const EXPECTED: &str =
        "an array of interface names (1-15 characters from [A-Za-z0-9_.@-], `+` as a trailing wildcard), e.g. [\"wg0\"]";
    let Some(v) = present(v) else {
        return Ok(vec![]);
    };
    let items = v
        .as_array()
        .ok_or_else(|| Error::config("clusterInterfaces", v, EXPECTED))?;
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let key = format!("clusterInterfaces[{i}]");
        let name = item
            .as_str()
            .filter(|n| {
                let body = n.strip_suffix('+').unwrap_or(n);
                !body.is_empty()
                    && n.len() <= 15
                    && body.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@')
                    })
            })
            .ok_or_else(|| Error::config(&key, item, EXPECTED))?;
        if !out.iter().any(|o| o == name) {
            out.push(name.to_string());
        }
    }
    Ok(out)
}

fn ingress(v: Option<&Value>) -> Result<Ingress> {
    match present(v) {
        None => Ok(Ingress::ClusterOnly),
        Some(Value::String(s)) if s == "cluster-only" => Ok(Ingress::ClusterOnly),
        Some(Value::String(s)) if s == "open" => Ok(Ingress::Open),
        Some(other) => Err(Error::config(
            "ingress",
            other,
            "\"cluster-only\" (default) or \"open\"",
        )),
    }
}

fn allow_ports(v: Option<&Value>) -> Result<Vec<AllowedPorts>> {
    let Some(v) = present(v) else {
        return Ok(vec![]);
    };
    let items = v.as_array().ok_or_else(|| {
        Error::config(
            "allowPorts",
            v,
            "an array of {\"port\": 443, \"protocol\": \"tcp\"} or port ranges like \"8000-8080\"",
        )
    })?;
    let mut out: Vec<AllowedPorts> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = allowed_ports(&format!("allowPorts[{i}]"), item)?;
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// An entry is `{"port": P, "protocol": "tcp|udp|sctp"}` where P is a
/// number, `"443"` or `"8000-8080"`; or a bare number or range string (TCP).
fn allowed_ports(key: &str, item: &Value) -> Result<AllowedPorts> {
    match item {
        Value::Object(obj) => {
            let protocol = match present(obj.get("protocol")) {
                None => Protocol::Tcp,
                Some(Value::String(s)) => match s.to_ascii_lowercase().as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    "sctp" => Protocol::Sctp,
                    _ => {
                        return Err(Error::config(
                            format!("{key}.protocol"),
                            &obj["protocol"],
                            "\"tcp\", \"udp\" or \"sctp\"",
                        ))
                    }
                },
                Some(other) => {
                    return Err(Error::config(
                        format!("{key}.protocol"),
                        other,
                        "\"tcp\", \"udp\" or \"sctp\"",
                    ))
                }
            };
            let port = present(obj.get("port")).ok_or_else(|| {
                Error::config(
                    format!("{key}.port"),
                    "(missing)",
                    "a port 1-65535 or a range like \"8000-8080\"",
                )
            })?;
            let (first, last) = port_range(&format!("{key}.port"), port)?;
            Ok(AllowedPorts {
                protocol,
                first,
                last,
            })
        }
        other => {
            let (first, last) = port_range(key, other)?;
            Ok(AllowedPorts {
                protocol: Protocol::Tcp,
                first,
                last,
            })
        }
    }
}

fn port_range(key: &str, v: &Value) -> Result<(u16, u16)> {
    const EXPECTED: &str = "a port 1-65535 or a range like \"8000-8080\" (first <= last)";
    let bad = || Error::config(key, v, EXPECTED);
    let one = |s: &str| -> Result<u16> {
        let n: u16 = s.trim().parse().map_err(|_| bad())?;
        if n == 0 {
            return Err(bad());
        }
        Ok(n)
    };
    match v {
        Value::Number(n) => {
            let n = n
                .as_u64()
                .filter(|n| (1..=65535).contains(n))
                .ok_or_else(bad)?;
            Ok((n as u16, n as u16))
        }
        Value::String(s) => {
            let (first, last) = match s.split_once('-') {
                Some((a, b)) => (one(a)?, one(b)?),
                None => {
                    let n = one(s)?;
                    (n, n)
                }
            };
            if first > last {
                return Err(bad());
            }
            Ok((first, last))
        }
        _ => Err(bad()),
    }
}

/// Targets iptables reserves; an admin chain cannot be named like them.
const RESERVED: &[&str] = &[
    "ACCEPT",
    "DROP",
    "REJECT",
    "RETURN",
    "QUEUE",
    "LOG",
    "INPUT",
    "OUTPUT",
    "FORWARD",
    "PREROUTING",
    "POSTROUTING",
];

fn admin_chain(v: Option<&Value>) -> Result<String> {
    const EXPECTED: &str =
        "a chain name of 1-28 characters from [A-Za-z0-9_.+-], not starting with '-' or '!', not a built-in chain or target";
    let Some(v) = present(v) else {
        return Ok(DEFAULT_ADMIN_CHAIN.to_string());
    };
    let s = v
        .as_str()
        .ok_or_else(|| Error::config("adminChain", v, EXPECTED))?;
    let ok = !s.is_empty()
        && s.len() <= MAX_CHAIN_LEN
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'+' | b'-'))
        && !RESERVED.contains(&s)
        && !crate::chains::is_internal_chain(s);
    if ok {
        Ok(s.to_string())
    } else {
        Err(Error::config("adminChain", v, EXPECTED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(v: Value) -> Result<FirewallConf> {
        FirewallConf::from_raw(&v)
    }

    #[test]
    fn a_typo_of_a_known_key_is_refused() {
        // "clusterPrefix" used to leave clusterPrefixes empty: other
        // nodes' pods dropped.
        let e = conf(json!({"clusterPrefix": ["fd00::/64"]})).unwrap_err();
        let e = cni_common::Error::from(e);
        assert_eq!(e.code(), 7);
        assert!(e.to_string().contains("\"clusterPrefixes\""), "{e}");
        let e = cni_common::Error::from(conf(json!({"clusterInterface": ["wg0"]})).unwrap_err());
        assert!(e.to_string().contains("\"clusterInterfaces\""), "{e}");
    }

    #[test]
    fn defaults() {
        let c = conf(json!({"name": "n", "type": "firewall6", "foo": [1]})).unwrap();
        assert_eq!(c.ingress, Ingress::ClusterOnly);
        assert!(c.cluster_prefixes.is_empty());
        assert!(c.allow_ports.is_empty());
        assert_eq!(c.admin_chain, "CNI6-ADMIN");
    }

    #[test]
    fn full_config() {
        let c = conf(json!({
            "clusterPrefixes": ["fd8c:1f0a:77e3::1/64", "2001:db8:7:12::/64"],
            "ingress": "open",
            "allowPorts": [
                {"port": 443, "protocol": "tcp"},
                {"port": "8000-8080", "protocol": "UDP"},
                {"port": "53", "protocol": "sctp"},
                "9000-9001",
                22
            ],
            "adminChain": "MY-ADMIN"
        }))
        .unwrap();
        assert_eq!(
            c.cluster_prefixes,
            vec![
                "fd8c:1f0a:77e3::/64".parse::<Ipv6Net>().unwrap(),
                "2001:db8:7:12::/64".parse().unwrap()
            ]
        );
        assert_eq!(c.ingress, Ingress::Open);
        let ports: Vec<String> = c.allow_ports.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            ports,
            [
                "443/tcp",
                "8000-8080/udp",
                "53/sctp",
                "9000-9001/tcp",
                "22/tcp"
            ]
        );
        assert_eq!(c.admin_chain, "MY-ADMIN");
    }

    #[test]
    fn malformed_keys_name_key_and_value() {
        for (v, key) in [
            (json!({"clusterPrefixes": "fd00::/64"}), "clusterPrefixes"),
            (
                json!({"clusterPrefixes": ["10.0.0.0/8"]}),
                "clusterPrefixes[0]",
            ),
            (json!({"clusterPrefixes": ["nope"]}), "clusterPrefixes[0]"),
            (json!({"ingress": "closed"}), "ingress"),
            (json!({"ingress": true}), "ingress"),
            (json!({"allowPorts": {"port": 1}}), "allowPorts"),
            (json!({"allowPorts": [{"port": 0}]}), "allowPorts[0].port"),
            (
                json!({"allowPorts": [{"port": 70000}]}),
                "allowPorts[0].port",
            ),
            (json!({"allowPorts": ["9-8"]}), "allowPorts[0]"),
            (
                json!({"allowPorts": [{"port": 1, "protocol": "icmp"}]}),
                "allowPorts[0].protocol",
            ),
            (
                json!({"allowPorts": [{"protocol": "tcp"}]}),
                "allowPorts[0].port",
            ),
            (json!({"adminChain": ""}), "adminChain"),
            (
                json!({"adminChain": "A-NAME-THAT-IS-FAR-TOO-LONG-XX"}),
                "adminChain",
            ),
            (json!({"adminChain": "has space"}), "adminChain"),
            (json!({"adminChain": "-x"}), "adminChain"),
            (json!({"adminChain": "ACCEPT"}), "adminChain"),
            (json!({"adminChain": "CNI6-FORWARD"}), "adminChain"),
        ] {
            let e = conf(v.clone()).unwrap_err();
            let ce = cni_common::Error::from(e);
            assert_eq!(ce.code(), 7, "{v}");
            let msg = ce.to_string();
            assert!(msg.contains(&format!("{key}=")), "{v}: {msg}");
        }
    }
}
