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

/// What one plugin answered to VERSION.
#[derive(Debug)]
pub struct PluginVersions {
    pub plugin_type: String,
    /// Its supported versions, or the error (message, CNI code).
    pub answer: std::result::Result<Vec<String>, (String, u32)>,
}

/// VERSION of every plugin (and IPAM plugin) a list names.
#[derive(Debug)]
pub struct Versions {
    pub network: String,
    pub cni_version: String,
    pub plugins: Vec<PluginVersions>,
}

impl PluginVersions {
    /// Does it speak the list's version?
    fn serves(&self, version: &str) -> bool {
        self.answer
            .as_ref()
            .is_ok_and(|v| v.iter().any(|s| s == version))
    }
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
    let plugins = types
        .into_iter()
        .map(|t| {
            let answer = rt
                .version(&t)
                .map(|v| {
                    v["supportedVersions"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .map_err(|e| (e.to_string(), e.code()));
            PluginVersions {
                plugin_type: t,
                answer,
            }
        })
        .collect();
    let v = Versions {
        network: list.name.clone(),
        cni_version: list.cni_version.clone(),
        plugins,
    };
    render(&v, o)?;
    let problems = v
        .plugins
        .iter()
        .filter(|p| !p.serves(&v.cni_version))
        .count();
    if problems > 0 {
        return Err(CliError::Failed(format!(
            "{problems} plugin(s) of network {} cannot serve CNI {}",
            v.network, v.cni_version
        )));
    }
    Ok(())
}

fn render(v: &Versions, o: &mut Output) -> Result<()> {
    if o.json {
        let rows: Vec<Value> = v
            .plugins
            .iter()
            .map(|p| match &p.answer {
                Ok(supported) => json!({
                    "type": p.plugin_type,
                    "supportedVersions": supported,
                    "supportsListVersion": p.serves(&v.cni_version),
                }),
                Err((e, code)) => json!({"type": p.plugin_type, "error": e, "code": code}),
            })
            .collect();
        return o
            .json(&json!({"network": v.network, "cniVersion": v.cni_version, "plugins": rows}));
    }
    o.line(format!(
        "network {} asks for CNI {}",
        v.network, v.cni_version
    ))?;
    let width = v
        .plugins
        .iter()
        .map(|p| p.plugin_type.len())
        .max()
        .unwrap_or(0);
    for p in &v.plugins {
        let t = &p.plugin_type;
        let line = match &p.answer {
            Err((err, _)) => format!("  {t:<width$}  error: {err}"),
            Ok(supported) => {
                let verdict = if p.serves(&v.cni_version) {
                    "ok".to_string()
                } else {
                    format!("does NOT support {}", v.cni_version)
                };
                format!("  {t:<width$}  {}  {verdict}", supported.join(", "))
            }
        };
        o.line(line)?;
    }
    Ok(())
}
