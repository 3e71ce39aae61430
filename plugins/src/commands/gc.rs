//! `cni6 gc`: libcni's GC for one network (checklist 88): every cached
//! attachment not in the valid set gets a DEL, then (CNI 1.1.0+) every
//! plugin gets GC with the valid set and frees whatever else it holds.
//!
//! An empty valid set means "nothing on this node uses the network", so it
//! is only sent when asked for explicitly with `--all-stale`.

use crate::cli::{NetworkOpts, Output};
use crate::error::{CliError, Result};
use clap::Args;
use cni_common::env::{validate_container_id, validate_ifname};
use serde_json::json;

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "GC releases everything of the network that is not listed with --valid: \
    addresses, firewall rules, host interfaces. List every attachment still in use \
    (e.g. from `crictl pods`), or use --all-stale when no pod on this node uses the network."
)]
pub struct GcArgs {
    #[command(flatten)]
    pub net: NetworkOpts,

    /// An attachment still in use, as CONTAINERID/IFNAME (repeat for each).
    #[arg(long, value_name = "ID/IF")]
    pub valid: Vec<String>,

    /// Declare that NO attachment of this network is in use: GC with an
    /// empty valid list, releasing everything the plugins hold for it.
    #[arg(long, conflicts_with = "valid")]
    pub all_stale: bool,
}

/// `CONTAINERID/IFNAME`: neither part may contain '/', so the split is exact.
pub fn parse_valid(s: &str) -> Result<(String, String)> {
    let bad = |why: String| CliError::Usage(format!("--valid {s:?}: {why}"));
    let (id, ifname) = s
        .split_once('/')
        .ok_or_else(|| bad("expected CONTAINERID/IFNAME, e.g. 3f2a9c/eth0".into()))?;
    validate_container_id(id).map_err(|e| bad(e.to_string()))?;
    validate_ifname(ifname).map_err(|e| bad(e.to_string()))?;
    Ok((id.to_string(), ifname.to_string()))
}

pub fn run(a: &GcArgs, o: &mut Output) -> Result<()> {
    let (list, rt) = a.net.load()?;
    if a.valid.is_empty() && !a.all_stale {
        return Err(CliError::Usage(format!(
            "refusing to GC network {} without --valid: an empty valid list tells every plugin \
             that no attachment is in use, so it would release the addresses and rules of every \
             running pod on this network. Pass --valid CONTAINERID/IFNAME for each attachment \
             still in use, or --all-stale if there is none.",
            list.name
        )));
    }
    let valid = a
        .valid
        .iter()
        .map(|s| parse_valid(s))
        .collect::<Result<Vec<_>>>()?;
    let report = rt
        .gc(&list, &valid)
        .map_err(|e| CliError::cni(format!("gc network {}", list.name), e))?;
    if o.json {
        let stale: Vec<_> = report
            .stale_deleted
            .iter()
            .map(|(c, i)| json!({"containerID": c, "ifname": i}))
            .collect();
        return o.json(&json!({
            "network": list.name,
            "disabled": list.disable_gc,
            "staleDeleted": stale,
            "gcSent": report.gc_sent,
        }));
    }
    if list.disable_gc {
        return o.line(format!(
            "nothing done: network {} sets disableGC",
            list.name
        ));
    }
    if report.stale_deleted.is_empty() {
        o.line("no stale cached attachments")?;
    } else {
        o.line(format!(
            "detached {} stale cached attachment(s): {}",
            report.stale_deleted.len(),
            report
                .stale_deleted
                .iter()
                .map(|(c, i)| format!("{c}/{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
    }
    if report.gc_sent {
        o.line(format!(
            "GC sent to {} plugin(s) with {} valid attachment(s)",
            list.plugins.len(),
            valid.len()
        ))
    } else {
        o.line(format!(
            "GC not sent: network {} uses CNI {}, GC needs 1.1.0",
            list.name, list.cni_version
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_attachment_syntax() {
        assert_eq!(
            parse_valid("abc/eth0").unwrap(),
            ("abc".to_string(), "eth0".to_string())
        );
        assert!(parse_valid("abc").is_err());
        assert!(parse_valid("abc/").is_err());
        assert!(parse_valid("/eth0").is_err());
        assert!(parse_valid("a/b/c").is_err());
    }
}
