//! `cni6 version`: the CNI versions each plugin of a network speaks, probed
//! with VERSION as libcni does, and whether each one supports the version
//! the conflist asks for (libcni's ValidateNetworkList refuses the list
//! otherwise, conformance.md #41). IPAM plugins named by `ipam.type` are probed
//! too, since the main plugin will run them.

use crate::error::{CliError, Result};
use crate::options::{NetworkOpts, Output};
use clap::Args;
use serde_json::{json, Value};

#[derive(Debug, Clone, Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub net: NetworkOpts,
}

pub fn run(a: &VersionArgs, o: &mut Output) -> Result<()> {
    let (list, rt) = a.net.load()?;
    let mut types: Vec<String> = Vec::new();
    for p in &list.plugins {
        let main = p.get("type").and_then(Value::as_str);
        let ipam = p
            .get("ipam")
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str);
        for t in [main, ipam].into_iter().flatten() {
            if !types.iter().any(|x| x == t) {
                types.push(t.to_string());
            }
        }
    }
    let mut rows = Vec::new();
    let mut problems = 0;
    for t in &types {
        match rt.version(t) {
            Ok(v) => {
                let supported: Vec<String> = v["supportedVersions"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                let ok = supported.contains(&list.cni_version);
                if !ok {
                    problems += 1;
                }
                rows.push(
                    json!({"type": t, "supportedVersions": supported, "supportsListVersion": ok}),
                );
            }
            Err(e) => {
                problems += 1;
                rows.push(json!({"type": t, "error": e.to_string(), "code": e.code()}));
            }
        }
    }
    if o.json {
        o.json(&json!({"network": list.name, "cniVersion": list.cni_version, "plugins": rows}))?;
    } else {
        o.line(format!(
            "network {} asks for CNI {}",
            list.name, list.cni_version
        ))?;
        let width = types.iter().map(String::len).max().unwrap_or(0);
        for r in &rows {
            let t = r["type"].as_str().unwrap_or("");
            let line = if let Some(err) = r.get("error").and_then(Value::as_str) {
                format!("  {t:<width$}  error: {err}")
            } else {
                let list_v: Vec<&str> = r["supportedVersions"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let verdict = if r["supportsListVersion"] == true {
                    "ok".to_string()
                } else {
                    format!("does NOT support {}", list.cni_version)
                };
                format!("  {t:<width$}  {}  {verdict}", list_v.join(", "))
            };
            o.line(line)?;
        }
    }
    if problems > 0 {
        return Err(CliError::Failed(format!(
            "{problems} plugin(s) of network {} cannot serve CNI {}",
            list.name, list.cni_version
        )));
    }
    Ok(())
}
