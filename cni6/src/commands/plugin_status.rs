//! `cni6 plugin-status`: CNI STATUS through the runtime (conformance.md #89),
//! the question containerd 2.x asks every few seconds to decide whether
//! the node's network is ready.
//!
//! A list older than CNI 1.1.0 is never asked STATUS by a runtime, yet its
//! plugins' STATUS is the one check that finds a missing prerequisite; so
//! cni6's own plugins are asked on a copy of the list at 1.1.0 (they speak
//! every version), other plugins only at the list's own version.

use crate::error::{CliError, Result};
use crate::options::{NetworkOpts, Output};
use clap::Args;
use cni_common::runtime::{ConfList, Runtime};
use serde_json::json;

#[derive(Debug, Clone, Args)]
pub struct PluginStatusArgs {
    #[command(flatten)]
    pub net: NetworkOpts,
}

/// The plugin types this project ships, which speak CNI 1.1.0.
fn is_ours(plugin: &serde_json::Map<String, serde_json::Value>) -> bool {
    plugin
        .get("type")
        .and_then(|t| t.as_str())
        .is_some_and(|t| crate::node::PLUGINS.contains(&t))
}

/// STATUS of `list` as a 1.1.0 runtime asks it; for an older list, of a
/// copy at 1.1.0 holding only cni6's plugins. `false` when nothing was asked.
pub fn status_at_1_1(rt: &Runtime, list: &ConfList) -> Result<bool, cni_common::Error> {
    if list.has_gc_status() {
        rt.status(list)?;
        return Ok(true);
    }
    let mut copy = list.clone();
    copy.cni_version = "1.1.0".into();
    copy.plugins.retain(is_ours);
    if copy.plugins.is_empty() {
        return Ok(false);
    }
    rt.status(&copy)?;
    Ok(true)
}

pub fn run(a: &PluginStatusArgs, o: &mut Output) -> Result<()> {
    let (list, rt) = a.net.load()?;
    let res = status_at_1_1(&rt, &list);
    let checked = *res.as_ref().unwrap_or(&true);
    let res = res.map(|_| ());
    if o.json {
        let mut v = json!({"network": list.name, "checked": checked, "ready": res.is_ok()});
        if let Err(e) = &res {
            v["code"] = json!(e.code());
            v["msg"] = json!(e.to_string());
            if !e.details().is_empty() {
                v["details"] = json!(e.details());
            }
        }
        o.json(&v)?;
    } else {
        match &res {
            Ok(()) if checked && list.has_gc_status() => o.line("ready")?,
            Ok(()) if checked => o.line(format!(
                "ready (cni6's plugins asked at CNI 1.1.0; network {} uses {}, which runtimes never ask)",
                list.name, list.cni_version
            ))?,
            Ok(()) => o.line(format!(
                "ready (not asked: network {} uses CNI {}, STATUS needs 1.1.0)",
                list.name, list.cni_version
            ))?,
            Err(e) => {
                o.line(format!("not ready: {e} [CNI error code {}]", e.code()))?;
                if !e.details().is_empty() {
                    o.line(format!("  details: {}", e.details()))?;
                }
            }
        }
    }
    match res {
        Ok(()) => Ok(()),
        Err(e) => Err(CliError::Failed(format!(
            "network {} is not ready (CNI error code {})",
            list.name,
            e.code()
        ))),
    }
}
