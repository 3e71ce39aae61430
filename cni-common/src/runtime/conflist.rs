//! A network configuration list as libcni parses it: a `.conflist`, or a
//! single `.conf` wrapped into one, with the list version chosen from
//! `cniVersion`/`cniVersions` (conformance.md #64).

use crate::error::{Error, Result};
use crate::version::{self};
use serde_json::{json, Map, Value};
use std::path::Path;

/// A network configuration list: the unit a runtime executes.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfList {
    /// The version every plugin is told (chosen from `cniVersions` when
    /// present, conformance.md #64).
    pub cni_version: String,
    pub name: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    /// Each plugin's object as written in the list.
    pub plugins: Vec<Map<String, Value>>,
    /// The bytes the list was parsed from (a single `.conf` re-encoded as a
    /// list, as libcni does); cached with each attachment.
    pub bytes: Vec<u8>,
}

impl ConfList {
    /// Parse a `.conflist`, or a single-plugin `.conf` object (an object
    /// with `type` and no `plugins`), which is wrapped into a one-plugin
    /// list as libcni's `ConfListFromConf` does (multus sends these).
    pub fn parse(bytes: &[u8]) -> Result<ConfList> {
        let raw: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::decode("network configuration list", e))?;
        let Value::Object(obj) = raw else {
            return Err(Error::decode(
                "network configuration list",
                "expected a JSON object",
            ));
        };
        if !obj.contains_key("plugins") && obj.contains_key("type") {
            let list = json!({
                "name": obj.get("name").cloned().unwrap_or(Value::Null),
                "cniVersion": obj.get("cniVersion").cloned().unwrap_or(Value::Null),
                "plugins": [Value::Object(obj)],
            });
            let bytes = serde_json::to_vec(&list).expect("a JSON value serialises");
            return ConfList::parse(&bytes);
        }
        let name = match obj.get("name") {
            Some(Value::String(s)) => s.clone(),
            other => {
                return Err(Error::config(
                    "name",
                    other.unwrap_or(&Value::Null),
                    "the network name, a string",
                ))
            }
        };
        crate::config::validate_network_name(&name)?;
        let cni_version = choose_version(&obj)?;
        let disable_check = bool_key(&obj, "disableCheck")?;
        let disable_gc = bool_key(&obj, "disableGC")?;
        let plugins = match obj.get("plugins") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            other => {
                return Err(Error::config(
                    "plugins",
                    other.unwrap_or(&Value::Null),
                    "a non-empty array of plugin configuration objects",
                ))
            }
        };
        let mut out = Vec::with_capacity(plugins.len());
        for (i, p) in plugins.iter().enumerate() {
            let Value::Object(p) = p else {
                return Err(Error::config(
                    format!("plugins[{i}]"),
                    p,
                    "a plugin configuration object",
                ));
            };
            match p.get("type") {
                Some(Value::String(t)) if is_plain_name(t) => {}
                other => {
                    return Err(Error::config(
                        format!("plugins[{i}].type"),
                        other.unwrap_or(&Value::Null),
                        "the plugin's binary name, without path separators",
                    ))
                }
            }
            out.push(p.clone());
        }
        Ok(ConfList {
            cni_version,
            name,
            disable_check,
            disable_gc,
            plugins: out,
            bytes: bytes.to_vec(),
        })
    }

    pub fn from_file(path: &Path) -> Result<ConfList> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("read conflist {}", path.display()), e))?;
        ConfList::parse(&bytes)
    }

    /// `type` of each plugin, in list order.
    pub fn plugin_types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or(""))
            .collect()
    }

    /// True when the list version has CHECK (0.4.0+, conformance.md #31).
    pub fn has_check(&self) -> bool {
        version_at_least(&self.cni_version, (0, 4, 0))
    }

    /// True when the list version has GC and STATUS (1.1.0+, 45, 51).
    pub fn has_gc_status(&self) -> bool {
        version_at_least(&self.cni_version, (1, 1, 0))
    }
}

pub(super) fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

pub(super) fn bool_key(obj: &Map<String, Value>, key: &str) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        // libcni accepts strconv.ParseBool strings here.
        Some(Value::String(s)) => match s.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
            _ => Err(Error::config(key, s, "true or false")),
        },
        Some(v) => Err(Error::config(key, v, "true or false")),
    }
}

pub(super) fn parse_semver(s: &str) -> Option<(u64, u64, u64)> {
    let mut it = s.split('.').map(|p| {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
    });
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) => Some((a, b, c)),
        _ => None,
    }
}

pub(super) fn version_at_least(v: &str, min: (u64, u64, u64)) -> bool {
    parse_semver(v).is_some_and(|v| v >= min)
}

/// `cniVersion`, or with `cniVersions` the highest entry (the list's
/// `cniVersion` included) not newer than this runtime (conformance.md #64).
pub(super) fn choose_version(obj: &Map<String, Value>) -> Result<String> {
    let latest = parse_semver(version::LATEST.as_str()).expect("our latest version parses");
    let single = match obj.get("cniVersion") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if parse_semver(s).is_some() => Some(s.clone()),
        Some(v) => return Err(Error::config("cniVersion", v, "a version like \"1.0.0\"")),
    };
    let Some(many) = obj.get("cniVersions").filter(|v| !v.is_null()) else {
        return single.ok_or_else(|| {
            Error::config(
                "cniVersion",
                "(absent)",
                "the CNI version of the list, e.g. \"1.0.0\"",
            )
        });
    };
    let Value::Array(many) = many else {
        return Err(Error::config(
            "cniVersions",
            many,
            "an array of versions like [\"1.0.0\", \"1.1.0\"]",
        ));
    };
    let mut best: Option<((u64, u64, u64), String)> = None;
    let candidates = many.iter().map(Some).chain(std::iter::once(None));
    for c in candidates {
        let s = match c {
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(Error::config(
                    "cniVersions",
                    v,
                    "versions like \"1.1.0\" (strings)",
                ))
            }
            None => match &single {
                Some(s) => s.clone(),
                None => continue,
            },
        };
        let sv = parse_semver(&s)
            .ok_or_else(|| Error::config("cniVersions", &s, "versions like \"1.1.0\""))?;
        let better = match &best {
            Some((b, _)) => sv > *b,
            None => true,
        };
        if sv <= latest && better {
            best = Some((sv, s));
        }
    }
    best.map(|(_, s)| s)
        .ok_or_else(|| Error::IncompatibleVersion {
            requested: format!("cniVersions {}", Value::Array(many.clone())),
            supported: format!("this runtime's versions up to {}", version::LATEST),
        })
}
