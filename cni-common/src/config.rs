//! The part of a network configuration every plugin shares (conformance.md 1.B).
//!
//! Plugin-specific keys are read by each plugin from [`NetConf::raw`]; here
//! live the keys the runtime inserts or owns. Unknown keys are ignored
//! (conformance.md #14), malformed known keys are error 7 naming the key.

use crate::env::CniArgs;
use crate::error::{Error, Result};
use crate::result::Dns;
use crate::version::Version;
use serde_json::Value;

/// Where [`NetConf::requested_ips`] found the requested addresses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RequestedIps<'a> {
    /// `args.cni.ips` or `runtimeConfig.ips` (the key) and its value.
    List(&'static str, &'a Value),
    /// CNI_ARGS `IP=`: comma-separated addresses.
    CniArgs(&'a str),
}

#[derive(Debug, Clone)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    pub dns: Option<Dns>,
    pub prev_result: Option<Value>,
    pub runtime_config: Value,
    pub args: Value,
    /// The whole object as received.
    pub raw: Value,
}

impl NetConf {
    /// Decode stdin bytes. Undecodable JSON is 6, a missing or unusable
    /// network name 7 (conformance.md #9, 13).
    pub fn parse(stdin: &[u8]) -> Result<NetConf> {
        let raw: Value = serde_json::from_slice(stdin)
            .map_err(|e| Error::decode("network configuration on stdin", e))?;
        NetConf::from_value(raw)
    }

    /// The same from a document already decoded (the dispatcher decodes
    /// stdin once per call and shares it).
    pub fn from_value(raw: Value) -> Result<NetConf> {
        if !raw.is_object() {
            return Err(Error::decode(
                "network configuration on stdin",
                "expected a JSON object",
            ));
        }
        let cni_version = match raw.get("cniVersion") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(Error::config(
                    "cniVersion",
                    other,
                    "a string like \"1.0.0\"",
                ))
            }
        };
        let name = str_key(&raw, "name")?.unwrap_or_default();
        validate_network_name(&name)?;
        let plugin_type = str_key(&raw, "type")?.unwrap_or_default();
        let dns = match raw.get("dns") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| Error::config("dns", v, format!("a CNI DNS object ({e})")))?,
            ),
        };
        let obj_or_null = |k: &str| -> Result<Value> {
            match raw.get(k) {
                None | Some(Value::Null) => Ok(Value::Null),
                Some(v @ Value::Object(_)) => Ok(v.clone()),
                Some(v) => Err(Error::config(k, v, "a JSON object")),
            }
        };
        let prev_result = match obj_or_null("prevResult")? {
            Value::Null => None,
            v => Some(v),
        };
        Ok(NetConf {
            cni_version,
            name,
            plugin_type,
            dns,
            prev_result,
            runtime_config: obj_or_null("runtimeConfig")?,
            args: obj_or_null("args")?,
            raw,
        })
    }

    /// The version to answer in; callers have validated it.
    pub fn version(&self, supported: &[Version]) -> Result<Version> {
        if self.cni_version.is_empty() {
            // libcni always inserts it; a config without one is pre-0.3
            // (the spec's implicit 0.1.0), which we do not speak.
            return Err(Error::IncompatibleVersion {
                requested: "0.1.0 (cniVersion absent)".into(),
                supported: crate::version::list(supported),
            });
        }
        Version::parse(&self.cni_version, supported)
    }

    /// `args.cni.<key>` (CONVENTIONS, conformance.md #16).
    pub fn cni_arg(&self, key: &str) -> Option<&Value> {
        self.args.get("cni").and_then(|c| c.get(key))
    }

    /// The pod addresses the runtime asked for, from the first source that
    /// has any, in this order: `args.cni.ips`, `runtimeConfig.ips`
    /// (declared capability), CNI_ARGS `IP=` (conformance.md #16, 73, 74). Not validated: the IPAM
    /// plugin parses them (ipam-prefix), the main plugin only needs to know
    /// that there are some (bridge6 announces such addresses). An empty
    /// list, or `IP=` with no address, asks for nothing.
    pub fn requested_ips<'a>(&'a self, args: &'a CniArgs) -> Option<RequestedIps<'a>> {
        let given = |v: &&Value| !v.is_null() && !matches!(v.as_array(), Some(a) if a.is_empty());
        if let Some(v) = self.cni_arg("ips").filter(given) {
            return Some(RequestedIps::List("args.cni.ips", v));
        }
        if let Some(v) = self.capability("ips").filter(given) {
            return Some(RequestedIps::List("runtimeConfig.ips", v));
        }
        args.get("IP")
            .filter(|s| s.split(',').any(|p| !p.is_empty()))
            .map(RequestedIps::CniArgs)
    }

    /// `runtimeConfig.<key>` when the config declares the capability
    /// (conformance.md #71: libcni only inserts declared ones; we check too).
    pub fn capability(&self, key: &str) -> Option<&Value> {
        let declared = self
            .raw
            .get("capabilities")
            .and_then(|c| c.get(key))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if declared {
            self.runtime_config.get(key).filter(|v| !v.is_null())
        } else {
            None
        }
    }
}

fn str_key(raw: &Value, key: &str) -> Result<Option<String>> {
    match raw.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(Error::config(key, v, "a string")),
    }
}

/// conformance.md #13: alphanumeric first, then `[A-Za-z0-9_.-]`; it names files.
pub fn validate_network_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            "name",
            format!("{name:?}"),
            "a network name with an alphanumeric first character followed by [A-Za-z0-9_.-], at most 128 bytes",
        ))
    }
}

/// Read an optional typed key of a plugin config; a wrong type is error 7
/// naming the key, the value and the expectation.
pub fn opt_key<T: serde::de::DeserializeOwned>(
    obj: &Value,
    path: &str,
    key: &str,
    expected: &str,
) -> Result<Option<T>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|_| Error::config(join_key(path, key), v, expected)),
    }
}

pub fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_ips_from_every_source() {
        let conf = |json: &str| NetConf::parse(json.as_bytes()).unwrap();
        let none = CniArgs::default();
        assert_eq!(conf(r#"{"name":"n"}"#).requested_ips(&none), None);
        let ip = CniArgs::parse("IgnoreUnknown=1;IP=fd00::30").unwrap();
        assert_eq!(
            conf(r#"{"name":"n"}"#).requested_ips(&ip),
            Some(RequestedIps::CniArgs("fd00::30"))
        );
        let empty_ip = CniArgs::parse("IgnoreUnknown=1;IP=").unwrap();
        assert_eq!(conf(r#"{"name":"n"}"#).requested_ips(&empty_ip), None);
        let c = conf(r#"{"name":"n","args":{"cni":{"ips":["fd00::20/96"]}}}"#);
        assert!(matches!(
            c.requested_ips(&ip),
            Some(RequestedIps::List("args.cni.ips", _))
        ));
        let c = conf(r#"{"name":"n","args":{"cni":{"ips":[]}}}"#);
        assert_eq!(
            c.requested_ips(&none),
            None,
            "an empty list asks for nothing"
        );
        let c = conf(
            r#"{"name":"n","capabilities":{"ips":true},"runtimeConfig":{"ips":["fd00::40"]}}"#,
        );
        assert!(matches!(
            c.requested_ips(&none),
            Some(RequestedIps::List("runtimeConfig.ips", _))
        ));
        // Not declared: runtimeConfig.ips is not passed on by a runtime.
        let c = conf(r#"{"name":"n","runtimeConfig":{"ips":["fd00::40"]}}"#);
        assert_eq!(c.requested_ips(&none), None);
    }

    #[test]
    fn parse_minimal() {
        let c =
            NetConf::parse(br#"{"cniVersion":"1.0.0","name":"net1","type":"x","foo":1}"#).unwrap();
        assert_eq!(c.name, "net1");
        assert_eq!(c.version(crate::version::ALL).unwrap(), Version::V1_0_0);
        assert!(c.prev_result.is_none());
    }

    #[test]
    fn codes() {
        assert_eq!(NetConf::parse(b"{").unwrap_err().code(), 6);
        assert_eq!(NetConf::parse(b"[]").unwrap_err().code(), 6);
        assert_eq!(NetConf::parse(b"{}").unwrap_err().code(), 7);
        assert_eq!(NetConf::parse(br#"{"name":"a/b"}"#).unwrap_err().code(), 7);
        assert_eq!(NetConf::parse(br#"{"name":"../x"}"#).unwrap_err().code(), 7);
        assert_eq!(NetConf::parse(br#"{"name":5}"#).unwrap_err().code(), 7);
        let c = NetConf::parse(br#"{"name":"n"}"#).unwrap();
        assert_eq!(c.version(crate::version::ALL).unwrap_err().code(), 1);
        assert_eq!(
            NetConf::parse(br#"{"name":"n","prevResult":[]}"#)
                .unwrap_err()
                .code(),
            7
        );
    }

    #[test]
    fn capabilities_need_declaration() {
        let c = NetConf::parse(
            br#"{"name":"n","capabilities":{"ips":true},"runtimeConfig":{"ips":["fd00::1"],"mac":"x"}}"#,
        )
        .unwrap();
        assert!(c.capability("ips").is_some());
        assert!(c.capability("mac").is_none());
    }
}
