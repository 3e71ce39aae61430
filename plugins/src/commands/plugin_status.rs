//! `cni6 plugin-status`: CNI STATUS through the runtime (checklist 89),
//! the question containerd 2.x asks every few seconds to decide whether
//! the node's network is ready.

use crate::cli::{NetworkOpts, Output};
use crate::error::{CliError, Result};
use clap::Args;
use serde_json::json;

#[derive(Debug, Clone, Args)]
pub struct PluginStatusArgs {
    #[command(flatten)]
    pub net: NetworkOpts,
}

pub fn run(a: &PluginStatusArgs, o: &mut Output) -> Result<()> {
    let (list, rt) = a.net.load()?;
    let checked = list.has_gc_status();
    let res = rt.status(&list);
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
            Ok(()) if checked => o.line("ready")?,
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
