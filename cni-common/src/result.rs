//! CNI results: one internal model (the 1.1 schema) parsed leniently from
//! any supported version and emitted strictly in the one requested
//! (conformance.md 1.J, 1.K; conversions mirror libcni's).

use crate::error::{Error, Result};
use crate::version::Version;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(
        default,
        rename = "socketPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub socket_path: Option<String>,
    #[serde(default, rename = "pciID", skip_serializing_if = "Option::is_none")]
    pub pci_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advmss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

impl Route {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// A success result (also the abbreviated IPAM result: no interfaces, no
/// `ips[].interface`, conformance.md #61).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CniResult {
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Deserialize)]
struct LenientIp {
    address: IpNet,
    #[serde(default)]
    gateway: Option<IpAddr>,
    #[serde(default)]
    interface: Option<usize>,
    #[serde(default)]
    version: Option<String>,
}

impl CniResult {
    /// Parse a result of any version from 0.3.0 on. The 0.3/0.4 `version`
    /// field is checked against the address family and dropped.
    pub fn parse(v: &Value) -> Result<CniResult> {
        let what = "result";
        let obj = v
            .as_object()
            .ok_or_else(|| Error::decode(what, "expected a JSON object"))?;
        if obj.contains_key("ip4") || obj.contains_key("ip6") {
            return Err(Error::IncompatibleVersion {
                requested: "0.2.0-style result (ip4/ip6)".into(),
                supported: "results of 0.3.0 and later".into(),
            });
        }
        let field = |k: &str| obj.get(k).filter(|x| !x.is_null()).cloned();
        let interfaces: Vec<Interface> = match field("interfaces") {
            Some(x) => {
                serde_json::from_value(x).map_err(|e| Error::decode("result.interfaces", e))?
            }
            None => vec![],
        };
        let lenient: Vec<LenientIp> = match field("ips") {
            Some(x) => serde_json::from_value(x).map_err(|e| Error::decode("result.ips", e))?,
            None => vec![],
        };
        let mut ips = Vec::with_capacity(lenient.len());
        for ip in lenient {
            if let Some(ver) = &ip.version {
                let fam = if ip.address.addr().is_ipv6() {
                    "6"
                } else {
                    "4"
                };
                if ver != fam {
                    return Err(Error::decode(
                        "result.ips[].version",
                        format!("version {ver:?} does not match address {}", ip.address),
                    ));
                }
            }
            if let Some(i) = ip.interface {
                if i >= interfaces.len() {
                    return Err(Error::decode(
                        "result.ips[].interface",
                        format!(
                            "index {i} is out of range for {} interfaces",
                            interfaces.len()
                        ),
                    ));
                }
            }
            ips.push(IpConfig {
                address: ip.address,
                gateway: ip.gateway,
                interface: ip.interface,
            });
        }
        let routes = match field("routes") {
            Some(x) => serde_json::from_value(x).map_err(|e| Error::decode("result.routes", e))?,
            None => vec![],
        };
        let dns = match field("dns") {
            Some(x) => serde_json::from_value(x).map_err(|e| Error::decode("result.dns", e))?,
            None => Dns::default(),
        };
        Ok(CniResult {
            interfaces,
            ips,
            routes,
            dns,
        })
    }

    /// Emit in exactly `version`'s schema.
    pub fn to_json(&self, version: Version) -> Value {
        let mut obj = Map::new();
        obj.insert("cniVersion".into(), Value::String(version.as_str().into()));
        if !self.interfaces.is_empty() {
            let ifs: Vec<Value> = self
                .interfaces
                .iter()
                .map(|i| {
                    let mut i = i.clone();
                    if !version.has_interface_extras() {
                        i.mtu = None;
                        i.socket_path = None;
                        i.pci_id = None;
                    }
                    serde_json::to_value(i).expect("interface serialises")
                })
                .collect();
            obj.insert("interfaces".into(), Value::Array(ifs));
        }
        if !self.ips.is_empty() {
            let ips: Vec<Value> = self
                .ips
                .iter()
                .map(|ip| {
                    let mut m = serde_json::to_value(ip).expect("ip serialises");
                    if version.has_ip_version_field() {
                        let fam = if ip.address.addr().is_ipv6() {
                            "6"
                        } else {
                            "4"
                        };
                        m["version"] = Value::String(fam.into());
                    }
                    m
                })
                .collect();
            obj.insert("ips".into(), Value::Array(ips));
        }
        if !self.routes.is_empty() {
            obj.insert(
                "routes".into(),
                serde_json::to_value(&self.routes).expect("routes serialise"),
            );
        }
        if !self.dns.is_empty() {
            obj.insert(
                "dns".into(),
                serde_json::to_value(&self.dns).expect("dns serialises"),
            );
        }
        Value::Object(obj)
    }
}

/// Re-emit a prevResult in `version` without losing anything a later
/// plugin of the chain may have added that we do not model: parse it
/// (validating), then convert. Used by chained plugins (conformance.md #21, 55).
pub fn convert(prev: &Value, version: Version) -> Result<Value> {
    Ok(CniResult::parse(prev)?.to_json(version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> CniResult {
        CniResult {
            interfaces: vec![
                Interface {
                    name: "br0".into(),
                    mac: Some("02:00:00:00:00:01".into()),
                    ..Default::default()
                },
                Interface {
                    name: "eth0".into(),
                    mtu: Some(1420),
                    sandbox: Some("/var/run/netns/x".into()),
                    ..Default::default()
                },
            ],
            ips: vec![IpConfig {
                address: "fd00:0:0:0:1:1::10/96".parse().unwrap(),
                gateway: Some("fd00:0:0:0:1:1::1".parse().unwrap()),
                interface: Some(1),
            }],
            routes: vec![Route::new("::/0".parse().unwrap(), None)],
            dns: Dns::default(),
        }
    }

    #[test]
    fn emits_version_field_only_before_1_0() {
        let r = sample();
        let v04 = r.to_json(Version::V0_4_0);
        assert_eq!(v04["cniVersion"], "0.4.0");
        assert_eq!(v04["ips"][0]["version"], "6");
        assert!(v04["interfaces"][1].get("mtu").is_none());
        let v10 = r.to_json(Version::V1_0_0);
        assert!(v10["ips"][0].get("version").is_none());
        assert!(v10["interfaces"][1].get("mtu").is_none());
        let v11 = r.to_json(Version::V1_1_0);
        assert_eq!(v11["interfaces"][1]["mtu"], 1420);
        assert!(v11.get("dns").is_none());
    }

    #[test]
    fn round_trips_every_version() {
        let r = sample();
        for v in crate::version::ALL {
            let back = CniResult::parse(&r.to_json(*v)).unwrap();
            assert_eq!(back.ips, r.ips);
            assert_eq!(back.routes, r.routes);
        }
    }

    #[test]
    fn lenient_parse_rejects_nonsense() {
        assert!(
            CniResult::parse(&json!({"ips":[{"address":"fd00::1/64","version":"4"}]})).is_err()
        );
        assert!(
            CniResult::parse(&json!({"ips":[{"address":"fd00::1/64","interface":0}]})).is_err()
        );
        assert!(CniResult::parse(&json!({"ip6":{"ip":"fd00::1/64"}})).is_err());
        assert!(CniResult::parse(&json!({"ips":[{"address":"nope"}]})).is_err());
        let ok = CniResult::parse(
            &json!({"cniVersion":"0.3.1","ips":[{"address":"fd00::1/64","version":"6"}]}),
        )
        .unwrap();
        assert_eq!(ok.ips.len(), 1);
    }
}
