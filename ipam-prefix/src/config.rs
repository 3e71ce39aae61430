//! The `ipam` object of a network config (docs/design.md, "Configuration") and
//! the requested-address inputs (conformance.md #16, 73, 74).
//!
//! Everything that can be validated without the host is validated here, so
//! a bad config fails the same way on every node. Unknown keys are ignored
//! (conformance.md #14); a malformed known key is error 7 naming its full path.

use crate::error::{IpamError, Result};
use crate::plan::{NodePrefix, SubnetId, DEFAULT_NODE_LEN, MAX_NODE_LEN, MAX_POD_RANGE_LEN};
use cni_common::config::{NetConf, RequestedIps};
use cni_common::env::CniArgs;
use cni_common::result::{Dns, Route};
use ipnet::{IpNet, Ipv6Net};
use serde_json::Value;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/ipam-prefix";

/// Which address of a `fromInterface` entry gives the node prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A global unicast address outside fc00::/7.
    Global,
    /// A unique local address (fc00::/7).
    Ula,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Ula => "ula",
        }
    }
}

/// One entry of `ipam.prefixes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrefixSource {
    Node(NodePrefix),
    FromInterface { ifname: String, scope: Scope },
}

/// Every key ipam-prefix reads from the `ipam` object: a key one typo away
/// from one of these is refused, `cni6 lint` lists the others.
pub const KNOWN_KEYS: &[&str] = &["type", "dataDir", "subnetId", "prefixes", "routes", "dns"];
/// The keys of one `ipam.prefixes[]` entry.
pub const PREFIX_KEYS: &[&str] = &["node", "fromInterface", "scope"];

#[derive(Debug, Clone, PartialEq)]
pub struct IpamConfig {
    pub data_dir: PathBuf,
    pub subnet_id: SubnetId,
    pub prefixes: Vec<PrefixSource>,
    /// L: the length every node prefix has.
    pub node_len: u8,
    pub routes: Vec<Route>,
    pub dns: Option<Dns>,
}

fn ipam_object(conf: &NetConf) -> Result<&serde_json::Map<String, Value>> {
    match conf.raw.get("ipam") {
        Some(Value::Object(m)) => Ok(m),
        None | Some(Value::Null) => Err(IpamError::config(
            "ipam",
            "(absent)",
            "an object with \"type\": \"ipam-prefix\" and \"prefixes\"",
        )),
        Some(v) => Err(IpamError::config("ipam", v, "a JSON object")),
    }
}

/// `ipam.dataDir` alone: what DEL and GC need. They must work even when the
/// rest of the config changed or broke since ADD (conformance.md #17), so only
/// this key is read.
pub fn data_dir(conf: &NetConf) -> Result<PathBuf> {
    match conf.raw.get("ipam") {
        Some(Value::Object(m)) => parse_data_dir(m.get("dataDir")),
        _ => Ok(PathBuf::from(DEFAULT_DATA_DIR)),
    }
}

fn parse_data_dir(v: Option<&Value>) -> Result<PathBuf> {
    match v {
        None | Some(Value::Null) => Ok(PathBuf::from(DEFAULT_DATA_DIR)),
        Some(Value::String(s)) if s.starts_with('/') && !s.contains('\0') => Ok(PathBuf::from(s)),
        Some(v) => Err(IpamError::config(
            "ipam.dataDir",
            v,
            "an absolute directory path",
        )),
    }
}

impl IpamConfig {
    pub fn parse(conf: &NetConf) -> Result<IpamConfig> {
        let ipam = ipam_object(conf)?;
        cni_common::keys::refuse_near_miss(ipam, "ipam.", KNOWN_KEYS)?;
        if let Some(t) = ipam.get("type") {
            if !t.is_string() {
                return Err(IpamError::config("ipam.type", t, "a string"));
            }
        }
        let data_dir = parse_data_dir(ipam.get("dataDir"))?;
        let subnet_id = match ipam.get("subnetId") {
            None | Some(Value::Null) => SubnetId::DEFAULT,
            Some(v) => v
                .as_u64()
                .ok_or(SubnetId::EXPECTED)
                .and_then(SubnetId::new)
                .map_err(|exp| IpamError::config("ipam.subnetId", v, exp))?,
        };
        let list = match ipam.get("prefixes") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            v => {
                return Err(IpamError::config(
                    "ipam.prefixes",
                    v.map_or("(absent)".to_string(), Value::to_string),
                    "a non-empty array of {\"node\": \"<ipv6 prefix>\"} or {\"fromInterface\": \"<name>\", \"scope\": \"global\"|\"ula\"}",
                ))
            }
        };
        enum Raw {
            Node(Ipv6Net),
            Iface(String, Scope),
        }
        let mut raw = Vec::with_capacity(list.len());
        for (i, entry) in list.iter().enumerate() {
            let key = format!("ipam.prefixes[{i}]");
            let obj = entry.as_object().ok_or_else(|| {
                IpamError::config(
                    &key,
                    entry,
                    "an object with either \"node\" or \"fromInterface\"",
                )
            })?;
            cni_common::keys::refuse_near_miss(obj, &format!("{key}."), PREFIX_KEYS)?;
            let node = obj.get("node").filter(|v| !v.is_null());
            let iface = obj.get("fromInterface").filter(|v| !v.is_null());
            raw.push(match (node, iface) {
                (Some(n), None) => {
                    let k = format!("{key}.node");
                    let net = n
                        .as_str()
                        .and_then(|s| s.parse::<IpNet>().ok())
                        .and_then(|n| match n {
                            IpNet::V6(v6) => Some(v6),
                            IpNet::V4(_) => None,
                        })
                        .ok_or_else(|| {
                            IpamError::config(&k, n, "an IPv6 prefix like \"fd8c:1f0a:77e3:0:1::/80\"")
                        })?;
                    if obj.get("scope").is_some_and(|s| !s.is_null()) {
                        return Err(IpamError::config(
                            format!("{key}.scope"),
                            &obj["scope"],
                            "no scope on a literal \"node\" prefix (scope belongs to fromInterface)",
                        ));
                    }
                    Raw::Node(net)
                }
                (None, Some(f)) => {
                    let k = format!("{key}.fromInterface");
                    let name = f
                        .as_str()
                        .filter(|s| cni_common::env::validate_ifname(s).is_ok())
                        .ok_or_else(|| {
                            IpamError::config(&k, f, "a host interface name (1 to 15 bytes, no '/', ':' or whitespace)")
                        })?;
                    let scope = match obj.get("scope") {
                        None | Some(Value::Null) => Scope::Global,
                        Some(Value::String(s)) if s == "global" => Scope::Global,
                        Some(Value::String(s)) if s == "ula" => Scope::Ula,
                        Some(v) => {
                            return Err(IpamError::config(
                                format!("{key}.scope"),
                                v,
                                "\"global\" or \"ula\"",
                            ))
                        }
                    };
                    Raw::Iface(name.to_string(), scope)
                }
                (Some(_), Some(_)) => {
                    return Err(IpamError::config(
                        &key,
                        entry,
                        "exactly one of \"node\" or \"fromInterface\", not both",
                    ))
                }
                (None, None) => {
                    return Err(IpamError::config(
                        &key,
                        entry,
                        "an object with either \"node\" or \"fromInterface\"",
                    ))
                }
            });
        }
        // L: literal prefixes decide it and must agree; else the default.
        let mut node_len = None;
        for (i, r) in raw.iter().enumerate() {
            if let Raw::Node(n) = r {
                match node_len {
                    None => node_len = Some((i, n.prefix_len())),
                    Some((first, l)) if l != n.prefix_len() => {
                        return Err(IpamError::config(
                            format!("ipam.prefixes[{i}].node"),
                            n,
                            format!("a /{l} prefix like ipam.prefixes[{first}].node (every node prefix has the same length)"),
                        ))
                    }
                    _ => {}
                }
            }
        }
        let node_len = node_len.map_or(DEFAULT_NODE_LEN, |(_, l)| l);
        let mut prefixes = Vec::with_capacity(raw.len());
        for (i, r) in raw.into_iter().enumerate() {
            prefixes.push(match r {
                Raw::Node(n) => {
                    let k = format!("ipam.prefixes[{i}].node");
                    if n.prefix_len() > MAX_NODE_LEN {
                        return Err(IpamError::config(
                            k,
                            n,
                            format!("a prefix of length at most {MAX_NODE_LEN}, so that the pod range /(L+16) is at most /{MAX_POD_RANGE_LEN}"),
                        ));
                    }
                    let p = NodePrefix::new(n).map_err(|exp| IpamError::config(&k, n, exp))?;
                    if p.is_reserved_vip() {
                        return Err(IpamError::config(k, n, RESERVED_EXPECTED));
                    }
                    PrefixSource::Node(p)
                }
                Raw::Iface(ifname, scope) => PrefixSource::FromInterface { ifname, scope },
            });
        }
        let routes = match ipam.get("routes") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    serde_json::from_value::<Route>(r.clone()).map_err(|e| {
                        IpamError::config(
                            format!("ipam.routes[{i}]"),
                            r,
                            format!(
                                "a route {{\"dst\": \"<prefix>\", \"gw\": \"<address>\"?}} ({e})"
                            ),
                        )
                    })
                })
                .collect::<Result<_>>()?,
            Some(v) => return Err(IpamError::config("ipam.routes", v, "an array of routes")),
        };
        let dns = match ipam.get("dns") {
            None | Some(Value::Null) => None,
            Some(v) => Some(serde_json::from_value::<Dns>(v.clone()).map_err(|e| {
                IpamError::config(
                    "ipam.dns",
                    v,
                    format!("a CNI DNS object {{nameservers, domain, search, options}} ({e})"),
                )
            })?),
        };
        Ok(IpamConfig {
            data_dir,
            subnet_id,
            prefixes,
            node_len,
            routes,
            dns,
        })
    }
}

pub const RESERVED_EXPECTED: &str =
    "a node prefix other than the cluster's virtual-IP range C:0::/80 (reserved: a ULA /80 with bits 64..80 zero)";

/// Where a requested address came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedIp {
    /// The key path, e.g. `args.cni.ips[0]` or `CNI_ARGS IP`.
    pub key: String,
    pub text: String,
    pub addr: Ipv6Addr,
    pub prefix_len: Option<u8>,
}

/// The requested addresses of an ADD, from the first source that has any
/// ([`NetConf::requested_ips`]: `args.cni.ips` > `runtimeConfig.ips` >
/// CNI_ARGS `IP=`, comma-separated as host-local reads it), parsed.
/// Strings are `addr` or `addr/len`.
pub fn requested_ips(conf: &NetConf, args: &CniArgs) -> Result<Vec<RequestedIp>> {
    let from_list = |base: &str, v: &Value| -> Result<Vec<RequestedIp>> {
        let arr = v.as_array().ok_or_else(|| {
            IpamError::config(
                base,
                v,
                "an array of IPv6 address strings (\"addr\" or \"addr/len\")",
            )
        })?;
        arr.iter()
            .enumerate()
            .map(|(i, x)| {
                let key = format!("{base}[{i}]");
                let s = x.as_str().ok_or_else(|| {
                    IpamError::config(&key, x, "an IPv6 address string (\"addr\" or \"addr/len\")")
                })?;
                parse_requested(key, s)
            })
            .collect()
    };
    match conf.requested_ips(args) {
        Some(RequestedIps::List(key, v)) => from_list(key, v),
        Some(RequestedIps::CniArgs(s)) => s
            .split(',')
            .filter(|p| !p.is_empty())
            .map(|p| parse_requested("CNI_ARGS IP".to_string(), p))
            .collect(),
        None => Ok(vec![]),
    }
}

fn parse_requested(key: String, s: &str) -> Result<RequestedIp> {
    let bad = || {
        IpamError::config(
            &key,
            format!("{s:?}"),
            "an IPv6 address \"addr\" or \"addr/len\"",
        )
    };
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| bad())?)),
        None => (s, None),
    };
    let addr = match addr.parse::<IpAddr>().map_err(|_| bad())? {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => return Err(bad()),
    };
    if len.is_some_and(|l| l > 128) {
        return Err(bad());
    }
    Ok(RequestedIp {
        key,
        text: s.to_string(),
        addr,
        prefix_len: len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(ipam: Value) -> NetConf {
        let v = json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge6", "ipam": ipam});
        NetConf::parse(v.to_string().as_bytes()).unwrap()
    }

    fn parse(ipam: Value) -> Result<IpamConfig> {
        IpamConfig::parse(&conf(ipam))
    }

    #[test]
    fn a_typo_of_a_known_key_is_refused() {
        // "subnetID" used to fall back to subnet 1: two networks sharing a range.
        let p = json!([{"node": "fd00:1:2:3:4::/80"}]);
        let e = err7(json!({"subnetID": 2, "prefixes": p}));
        assert!(
            e.contains("ipam.subnetID") && e.contains("\"subnetId\""),
            "{e}"
        );
        let e = err7(json!({"prefixes": [{"fromInterfce": "eth0"}]}));
        assert!(e.contains("ipam.prefixes[0].fromInterfce"), "{e}");
        parse(json!({"prefixes": p, "ranges": [], "subnet": "x"})).unwrap();
    }

    /// The error's full text, asserting it is code 7 on the wire.
    fn err7(ipam: Value) -> String {
        let e = parse(ipam).unwrap_err();
        let msg = e.to_string();
        let cni: cni_common::Error = e.into();
        assert_eq!(cni.code(), 7, "{msg}");
        msg
    }

    #[test]
    fn full_config() {
        let c = parse(json!({
            "type": "ipam-prefix",
            "dataDir": "/run/x",
            "subnetId": 2,
            "prefixes": [
                {"node": "fd8c:1f0a:77e3:0:1::/80"},
                {"fromInterface": "eth0", "scope": "global"},
                {"fromInterface": "eth1", "scope": "ula", "unknown": 1}
            ],
            "routes": [{"dst": "::/0"}, {"dst": "fd00::/8", "gw": "fd00::1"}],
            "dns": {"nameservers": ["fd00::53"], "search": ["svc"]},
            "somethingElse": true
        }))
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/run/x"));
        assert_eq!(c.subnet_id.get(), 2);
        assert_eq!(c.node_len, 80);
        assert_eq!(c.prefixes.len(), 3);
        assert_eq!(
            c.prefixes[2],
            PrefixSource::FromInterface {
                ifname: "eth1".into(),
                scope: Scope::Ula
            }
        );
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].gw, Some("fd00::1".parse().unwrap()));
        assert_eq!(c.dns.unwrap().nameservers, vec!["fd00::53".to_string()]);
    }

    #[test]
    fn defaults() {
        let c = parse(json!({"prefixes": [{"fromInterface": "eth0"}]})).unwrap();
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.subnet_id, SubnetId::DEFAULT);
        assert_eq!(c.node_len, DEFAULT_NODE_LEN);
        assert!(c.routes.is_empty() && c.dns.is_none());
        assert_eq!(
            c.prefixes[0],
            PrefixSource::FromInterface {
                ifname: "eth0".into(),
                scope: Scope::Global
            }
        );
        // A literal /64 sets L for the fromInterface entries too.
        let c =
            parse(json!({"prefixes": [{"fromInterface": "eth0"}, {"node": "fd00:0:0:7::/64"}]}))
                .unwrap();
        assert_eq!(c.node_len, 64);
    }

    #[test]
    fn every_error_names_its_key() {
        let cases: Vec<(Value, &str)> = vec![
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "subnetId": 0}),
                "ipam.subnetId=0",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "subnetId": 100}),
                "ipam.subnetId=100",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "subnetId": 65536}),
                "ipam.subnetId=65536",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "subnetId": -1}),
                "ipam.subnetId=-1",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "subnetId": "1"}),
                "ipam.subnetId=\"1\"",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "subnetId": 1.5}),
                "ipam.subnetId=1.5",
            ),
            (json!({"prefixes": []}), "ipam.prefixes=[]"),
            (json!({}), "ipam.prefixes=(absent)"),
            (json!({"prefixes": "fd00::/80"}), "ipam.prefixes="),
            (json!({"prefixes": [5]}), "ipam.prefixes[0]=5"),
            (json!({"prefixes": [{}]}), "ipam.prefixes[0]="),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80", "fromInterface": "eth0"}]}),
                "not both",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}, {"node": "nope"}]}),
                "ipam.prefixes[1].node=\"nope\"",
            ),
            (
                json!({"prefixes": [{"node": "10.0.0.0/8"}]}),
                "ipam.prefixes[0].node",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1"}]}),
                "ipam.prefixes[0].node",
            ),
            (
                json!({"prefixes": [{"node": 80}]}),
                "ipam.prefixes[0].node=80",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:1/80"}]}),
                "host bits",
            ),
            (json!({"prefixes": [{"node": "fd00::/105"}]}), "at most 104"),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}, {"node": "fd00:0:0:1::/64"}]}),
                "ipam.prefixes[1].node=fd00:0:0:1::/64",
            ),
            (
                json!({"prefixes": [{"node": "fd8c:1f0a:77e3::/80"}]}),
                "reserved",
            ),
            (
                json!({"prefixes": [{"fromInterface": ""}]}),
                "ipam.prefixes[0].fromInterface",
            ),
            (
                json!({"prefixes": [{"fromInterface": "a/b"}]}),
                "ipam.prefixes[0].fromInterface",
            ),
            (
                json!({"prefixes": [{"fromInterface": "eth0", "scope": "site"}]}),
                "ipam.prefixes[0].scope=\"site\"",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80", "scope": "ula"}]}),
                "ipam.prefixes[0].scope",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "routes": {"dst": "::/0"}}),
                "ipam.routes=",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "routes": [{"dst": "::/0"}, {"gw": "fd00::1"}]}),
                "ipam.routes[1]",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "dns": {"nameservers": "x"}}),
                "ipam.dns",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "dataDir": "relative/dir"}),
                "ipam.dataDir",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "dataDir": 5}),
                "ipam.dataDir=5",
            ),
            (
                json!({"prefixes": [{"node": "fd00::1:0:0:0/80"}], "type": 5}),
                "ipam.type=5",
            ),
        ];
        for (ipam, needle) in cases {
            let msg = err7(ipam.clone());
            assert!(msg.contains(needle), "{ipam}: {msg:?} lacks {needle:?}");
        }
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n"}"#).unwrap();
        let e: cni_common::Error = IpamConfig::parse(&c).unwrap_err().into();
        assert_eq!(e.code(), 7);
        assert!(e.to_string().contains("ipam"));
    }

    #[test]
    fn data_dir_alone_survives_a_broken_config() {
        let c = conf(json!({"dataDir": "/d", "prefixes": "garbage"}));
        assert_eq!(data_dir(&c).unwrap(), PathBuf::from("/d"));
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n"}"#).unwrap();
        assert_eq!(data_dir(&c).unwrap(), PathBuf::from(DEFAULT_DATA_DIR));
        assert!(data_dir(&conf(json!({"dataDir": "x"}))).is_err());
    }

    fn netconf(v: Value) -> NetConf {
        NetConf::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn requested_ips_precedence() {
        // conformance.md #16: args.cni.ips wins over CNI_ARGS IP=.
        let args = CniArgs::parse("IgnoreUnknown=1;IP=fd00::30").unwrap();
        let c = netconf(
            json!({"name": "n", "args": {"cni": {"ips": ["fd00::20/96"]}},
            "capabilities": {"ips": true}, "runtimeConfig": {"ips": ["fd00::40"]}}),
        );
        let r = requested_ips(&c, &args).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].key, "args.cni.ips[0]");
        assert_eq!(r[0].addr, "fd00::20".parse::<Ipv6Addr>().unwrap());
        assert_eq!(r[0].prefix_len, Some(96));
        // conformance.md #73: runtimeConfig.ips only with the capability declared.
        let c = netconf(
            json!({"name": "n", "capabilities": {"ips": true}, "runtimeConfig": {"ips": ["fd00::40"]}}),
        );
        assert_eq!(
            requested_ips(&c, &args).unwrap()[0].key,
            "runtimeConfig.ips[0]"
        );
        let c = netconf(json!({"name": "n", "runtimeConfig": {"ips": ["fd00::40"]}}));
        let r = requested_ips(&c, &args).unwrap();
        // conformance.md #74: CNI_ARGS IP= is the last resort.
        assert_eq!(r[0].key, "CNI_ARGS IP");
        assert_eq!(r[0].addr, "fd00::30".parse::<Ipv6Addr>().unwrap());
        let both = CniArgs::parse("IP=fd00::30,fd01::30/96").unwrap();
        assert_eq!(requested_ips(&c, &both).unwrap().len(), 2);
        assert!(requested_ips(&c, &CniArgs::default()).unwrap().is_empty());
        // An empty args.cni.ips does not hide the next source.
        let c = netconf(json!({"name": "n", "args": {"cni": {"ips": []}},
            "capabilities": {"ips": true}, "runtimeConfig": {"ips": ["fd00::40"]}}));
        assert_eq!(
            requested_ips(&c, &args).unwrap()[0].key,
            "runtimeConfig.ips[0]"
        );
    }

    #[test]
    fn requested_ips_garbage_is_7() {
        let none = CniArgs::default();
        for (v, key) in [
            (
                json!({"name": "n", "args": {"cni": {"ips": "fd00::1"}}}),
                "args.cni.ips",
            ),
            (
                json!({"name": "n", "args": {"cni": {"ips": [5]}}}),
                "args.cni.ips[0]",
            ),
            (
                json!({"name": "n", "args": {"cni": {"ips": ["fd00::1", "x"]}}}),
                "args.cni.ips[1]",
            ),
            (
                json!({"name": "n", "args": {"cni": {"ips": ["10.0.0.1"]}}}),
                "args.cni.ips[0]",
            ),
            (
                json!({"name": "n", "args": {"cni": {"ips": ["fd00::1/129"]}}}),
                "args.cni.ips[0]",
            ),
            (
                json!({"name": "n", "capabilities": {"ips": true}, "runtimeConfig": {"ips": ["fd00::/x"]}}),
                "runtimeConfig.ips[0]",
            ),
        ] {
            let e = requested_ips(&netconf(v), &none).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
            assert_eq!(cni_common::Error::from(e).code(), 7);
        }
        let e = requested_ips(
            &netconf(json!({"name": "n"})),
            &CniArgs::parse("IP=banana").unwrap(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("CNI_ARGS IP=\"banana\""), "{e}");
    }
}
