//! `cni6 status`: what cni6 holds on this node, read from the same places
//! the plugins use — the network configurations (which networks, which
//! data directory and bridge), ipam-prefix's store (one record per
//! attachment, with the pod's name and namespace), the runtime's libcni
//! cache (the pod's netns), the kernel (host veth, bridge and its gateway
//! addresses) and ip6tables (the firewall skeleton).
//!
//! It changes nothing: the store is read without its lock (the lock's
//! opener would also release records of earlier boots, which is the
//! plugins' job), so a record being written at that instant may be
//! missed; what it cannot read it reports. A record is *leaked* when the
//! attachment it describes cannot exist any more: its host veth is gone,
//! the netns its runtime cached is gone, or it was made in an earlier boot.
//! `cni6 gc` frees them. The host veths are judged only where the
//! network's bridge is visible: from another network namespace every veth
//! looks gone.
//!
//! It is a health check: it exits 1 when something is wrong — a leaked
//! allocation, a bridge address no network in use explains (a stale
//! gateway), a host veth or firewall rule of no allocation, a network
//! configuration it cannot read, a prefix it cannot resolve, a plugin
//! whose CNI STATUS fails (asked at CNI 1.1.0 whatever the list's version,
//! so a missing prerequisite is found on 1.0.0 lists too), or
//! br_netfilter's IPv6 hook on (Services to same-node pods are lost).

use crate::error::{CliError, Result};
use crate::node::{self, Allocation, Network, NetworkQuery};
use crate::options::{plugin_dirs, Output};
use clap::Args;
use cni_common::runtime::{Runtime, DEFAULT_CACHE_DIR};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Reads only; run it on the node (inside the node's network namespace). \
    A LEAKED allocation holds an address nobody uses: `cni6 gc` lists and frees them."
)]
pub struct StatusArgs {
    /// Only this network.
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,

    /// Where the runtime's network configurations are.
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "DIR")]
    pub conf_dir: PathBuf,

    /// Read this one configuration list instead of --conf-dir.
    #[arg(long, value_name = "FILE", conflicts_with = "conf_dir")]
    pub conflist: Option<PathBuf>,

    /// The IPAM data directory, overriding the configuration's ipam.dataDir.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The runtime's libcni cache (where each attachment's netns is recorded).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,

    /// Directories searched for the plugins asked for CNI STATUS,
    /// ':'-separated [default: $CNI_PATH, else /opt/cni/bin].
    #[arg(long, value_name = "DIR:DIR")]
    pub cni_path: Option<String>,
}

pub fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The node prefixes of a network: (node prefix, pod range, gateway) each,
/// or why they cannot be resolved.
type Prefixes = std::result::Result<Vec<(String, String, String)>, String>;

/// What status found about one network: the facts and the problems they
/// show.
#[derive(Debug)]
pub struct NetworkStatus {
    pub net: Network,
    pub allocs: Vec<Allocation>,
    pub prefixes: Prefixes,
    /// `None` when the bridge does not exist, else its global addresses.
    pub bridge: std::result::Result<Option<Vec<String>>, String>,
    /// `None` when firewall6 is not in the network's chain, else whether
    /// the node-wide skeleton is in place.
    pub firewall: Option<std::result::Result<bool, String>>,
    pub problems: Vec<String>,
}

/// The gateways every network on a bridge explains, over all networks (two
/// networks may share one bridge); `None` once one network's are unknown.
fn gateways_by_bridge(
    nets: &[Network],
    prefixes: &[Prefixes],
) -> HashMap<String, Option<Vec<String>>> {
    let mut gateways: HashMap<String, Option<Vec<String>>> = HashMap::new();
    for (net, p) in nets.iter().zip(prefixes) {
        let e = gateways.entry(net.bridge.clone()).or_insert(Some(vec![]));
        match (e.as_mut(), p) {
            (Some(g), Ok(p)) => g.extend(p.iter().map(|(_, _, gw)| gw.clone())),
            _ => *e = None,
        }
    }
    gateways
}

/// Read one network's allocations, bridge and firewall and judge them.
fn gather(
    net: Network,
    prefixes: Prefixes,
    rt: &Runtime,
    gateways: &HashMap<String, Option<Vec<String>>>,
) -> Result<NetworkStatus> {
    let allocs = node::allocations(&net, rt)?;
    let bridge = node::bridge_addresses(&net.bridge);
    let firewall = net.has_firewall.then(node::firewall_skeleton);
    let mut found = Vec::new();
    let gone = allocs.iter().filter(|a| a.pod_gone()).count();
    if gone > 0 {
        found.push(format!(
            "{gone} leaked allocation(s) whose pod is gone: free them with \
             `cni6 gc --network {} --leaked`",
            net.name
        ));
    }
    // The rest: a host veth gone while the pod's netns lives (its
    // network is broken, its address must not be reused yet), or an
    // unreadable record.
    for a in allocs
        .iter()
        .filter(|a| !a.leaked.is_empty() && !a.pod_gone())
    {
        found.push(match &a.record {
            Some(r) => format!(
                "attachment {}/{} is broken ({}) but its pod's netns still exists: \
                 delete or restart the pod (its runtime runs DEL), or `cni6 detach \
                 --id {} --ifname {}` with the network's conflist",
                r.container_id,
                r.ifname,
                a.leaked.join(", "),
                r.container_id,
                r.ifname
            ),
            None => format!(
                "unreadable allocation record {} in {}",
                a.file,
                net.data_dir.join(&net.name).join("attachments").display()
            ),
        });
    }
    if let Err(e) = &prefixes {
        found.push(format!("node prefixes unknown: {e}"));
    }
    match &bridge {
        Ok(Some(addrs)) => {
            if let Some(Some(g)) = gateways.get(net.bridge.as_str()) {
                for st in node::stale_bridge_addresses(addrs, g) {
                    found.push(format!(
                        "stale address {st} on bridge {}: no network in use has this pod \
                         range (a gateway of an old configuration black-holes that range); \
                         remove it with `ip -6 addr del {st} dev {}`",
                        net.bridge, net.bridge
                    ));
                }
            }
            if let Ok(p) = &prefixes {
                for (_, _, g) in p {
                    if !allocs.is_empty() && !addrs.iter().any(|a| a.split('/').next() == Some(g)) {
                        found.push(format!("gateway {g} missing on bridge {}", net.bridge));
                    }
                }
            }
            match node::layer2_openings(&net.bridge) {
                Ok(open) if !open.is_empty() => found.push(format!(
                    "bridge6 refuses ADD here: {}",
                    bridge6::error::shared_bridge_problem(&net.bridge, &open)
                )),
                Ok(_) => {}
                Err(e) => found.push(format!("cannot list ports of {}: {e}", net.bridge)),
            }
            match node::orphan_veths(&net, &allocs) {
                Ok(o) => found.extend(o.into_iter().map(|v| {
                    format!(
                        "orphan host veth {v} (no allocation): `cni6 gc --network {} --leaked` \
                         or `ip link del {v}`",
                        net.name
                    )
                })),
                Err(e) => found.push(format!("cannot list ports of {}: {e}", net.bridge)),
            }
        }
        Ok(None) if !allocs.is_empty() => found.push(format!(
            "bridge {} not visible from this network namespace though {} allocation(s) \
             exist: run status in the node's network namespace (leaks not judged)",
            net.bridge,
            allocs.len()
        )),
        Ok(None) => {}
        Err(e) => found.push(format!("bridge {}: {e}", net.bridge)),
    }
    match &firewall {
        Some(Ok(false)) if !allocs.is_empty() => found
            .push("firewall skeleton missing while pods are attached: they are unfiltered".into()),
        Some(Err(e)) => found.push(format!("firewall unknown: {e}")),
        _ => {}
    }
    if net.has_firewall && matches!(firewall, Some(Ok(_))) {
        match node::orphan_rules(&net, &allocs) {
            Ok(o) => found.extend(
                o.into_iter()
                    .map(|t| format!("orphan firewall rules tagged {t:?} (no allocation)")),
            ),
            Err(e) => found.push(format!("cannot list firewall rules: {e}")),
        }
    }
    if let Err(e) = crate::commands::plugin_status::status_at_1_1(rt, &net.list) {
        found.push(format!(
            "plugin STATUS (asked at CNI 1.1.0): {e} [CNI error code {}]{}",
            e.code(),
            if e.details().is_empty() {
                String::new()
            } else {
                format!(" ({})", e.details())
            }
        ));
    }
    Ok(NetworkStatus {
        net,
        allocs,
        prefixes,
        bridge,
        firewall,
        problems: found,
    })
}

pub fn run(a: &StatusArgs, o: &mut Output) -> Result<()> {
    let rt = Runtime::new(plugin_dirs(a.cni_path.as_deref())).with_cache_dir(&a.cache_dir);
    let (nets, mut problems) = node::find_networks(NetworkQuery {
        conf_dir: &a.conf_dir,
        conflist: a.conflist.as_deref(),
        network: a.network.as_deref(),
        data_dir: a.data_dir.as_deref(),
    })?;
    // Node-wide: read in this network namespace, the node's.
    if node::bridge_nf_call_ip6tables() == Some(true) {
        problems.push(node::BRIDGE_NF_PROBLEM.to_string());
    }
    let now = node::now();
    let all_prefixes: Vec<Prefixes> = nets.iter().map(node::prefixes).collect();
    let gateways = gateways_by_bridge(&nets, &all_prefixes);
    let mut statuses = Vec::new();
    // Each network is printed as soon as it is read, so what was read
    // before a failure is on the screen.
    for (i, (net, prefixes)) in nets.into_iter().zip(all_prefixes).enumerate() {
        let s = gather(net, prefixes, &rt, &gateways)?;
        if !o.json {
            render_text(&s, i, now, o)?;
        }
        problems.extend(
            s.problems
                .iter()
                .map(|f| format!("network {}: {f}", s.net.name)),
        );
        statuses.push(s);
    }
    if o.json {
        o.json(&render_json(&statuses, &problems, now))?;
    } else if problems.is_empty() {
        o.line("")?;
        o.line("health: ok")?;
    } else {
        o.line("")?;
        o.line(format!("health: {} problem(s)", problems.len()))?;
        for p in &problems {
            o.line(format!("  - {p}"))?;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} problem(s) found (listed above)",
            problems.len()
        )))
    }
}

/// The `--json` document: every network with its facts and problems.
fn render_json(statuses: &[NetworkStatus], problems: &[String], now: u64) -> Value {
    let nets: Vec<Value> = statuses
        .iter()
        .map(|s| {
            let net = &s.net;
            let list: Vec<Value> = s
                .allocs
                .iter()
                .map(|al| {
                    let r = al.record.as_ref();
                    json!({
                        "file": al.file,
                        "podNamespace": r.and_then(|r| r.pod_namespace.clone()),
                        "podName": r.and_then(|r| r.pod_name.clone()),
                        "containerID": r.map(|r| r.container_id.clone()),
                        "ifname": r.map(|r| r.ifname.clone()),
                        "addresses": r.map(|r| r.addresses.clone()).unwrap_or_default(),
                        "hostVeth": al.host_veth,
                        "netns": al.netns,
                        "ageSeconds": r.map(|r| now.saturating_sub(r.created)),
                        "leaked": !al.leaked.is_empty(),
                        "leakReasons": al.leaked,
                    })
                })
                .collect();
            json!({
                "name": net.name,
                "conflist": net.source,
                "store": net.data_dir.join(&net.name),
                "prefixes": match &s.prefixes {
                    Ok(p) => json!(p.iter().map(|(n, r, g)| json!({"node": n, "podRange": r, "gateway": g})).collect::<Vec<_>>()),
                    Err(e) => json!({"error": e}),
                },
                "bridge": match &s.bridge {
                    Ok(Some(addrs)) => json!({"name": net.bridge, "exists": true, "addresses": addrs}),
                    Ok(None) => json!({"name": net.bridge, "exists": false}),
                    Err(e) => json!({"name": net.bridge, "error": e}),
                },
                "firewall": match &s.firewall {
                    None => Value::Null,
                    Some(Ok(b)) => json!({"skeleton": b}),
                    Some(Err(e)) => json!({"error": e}),
                },
                "allocations": list,
                "problems": s.problems,
            })
        })
        .collect();
    json!({
        "networks": nets,
        "healthy": problems.is_empty(),
        "problems": problems,
    })
}

/// One network as text: store, prefixes, bridge, firewall, allocations.
fn render_text(s: &NetworkStatus, i: usize, now: u64, o: &mut Output) -> Result<()> {
    let net = &s.net;
    let allocs = &s.allocs;
    if i > 0 {
        o.line("")?;
    }
    o.line(format!("network {} ({})", net.name, net.source.display()))?;
    o.line(format!(
        "  store     {} ({} allocation(s), {} leaked)",
        net.data_dir.join(&net.name).display(),
        allocs.len(),
        allocs.iter().filter(|a| !a.leaked.is_empty()).count()
    ))?;
    match &s.prefixes {
        Ok(p) => {
            for (k, (n, r, g)) in p.iter().enumerate() {
                let head = if k == 0 {
                    "  prefixes  "
                } else {
                    "            "
                };
                o.line(format!("{head}{n}  pods {r}  gateway {g}"))?;
            }
        }
        Err(e) => o.line(format!("  prefixes  unknown: {e}"))?,
    }
    match &s.bridge {
        Ok(Some(addrs)) => {
            let missing: Vec<&String> = match &s.prefixes {
                Ok(p) => p
                    .iter()
                    .map(|(_, _, g)| g)
                    .filter(|g| !addrs.iter().any(|a| a.split('/').next() == Some(g)))
                    .collect(),
                Err(_) => vec![],
            };
            o.line(format!(
                "  bridge    {} exists, addresses {}{}",
                net.bridge,
                if addrs.is_empty() {
                    "none".to_string()
                } else {
                    addrs.join(", ")
                },
                if missing.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (gateway missing: {})",
                        missing
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            ))?
        }
        Ok(None) => o.line(format!(
            "  bridge    {} does not exist (made by the first pod's ADD)",
            net.bridge
        ))?,
        Err(e) => o.line(format!("  bridge    {}: {e}", net.bridge))?,
    }
    match &s.firewall {
        None => o.line("  firewall  not in this network's chain")?,
        Some(Ok(true)) => o.line("  firewall  skeleton in place (FORWARD -> CNI6-FORWARD)")?,
        Some(Ok(false)) => o.line(
            "  firewall  skeleton missing (made by the first pod's ADD; pods are unfiltered)",
        )?,
        Some(Err(e)) => o.line(format!("  firewall  unknown: {e}"))?,
    }
    if allocs.is_empty() {
        o.line("  no allocations")?;
        return Ok(());
    }
    let mut rows = vec![[
        "POD".to_string(),
        "CONTAINER".into(),
        "IF".into(),
        "ADDRESSES".into(),
        "HOST VETH".into(),
        "AGE".into(),
        "STATE".into(),
    ]];
    for al in allocs {
        let state = if al.leaked.is_empty() {
            "ok".to_string()
        } else {
            format!("LEAKED ({})", al.leaked.join(", "))
        };
        rows.push(match &al.record {
            Some(r) => [
                match (&r.pod_namespace, &r.pod_name) {
                    (Some(ns), Some(n)) => format!("{ns}/{n}"),
                    (None, Some(n)) => n.clone(),
                    _ => "-".into(),
                },
                r.container_id.clone(),
                r.ifname.clone(),
                r.addresses.join(","),
                al.host_veth.clone().unwrap_or_default(),
                age(now.saturating_sub(r.created)),
                state,
            ],
            None => [
                "-".into(),
                al.file.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                state,
            ],
        });
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    o.line("")?;
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 6 {
                    v.clone()
                } else {
                    format!("{v:<w$}", w = widths[c])
                }
            })
            .collect();
        o.line(format!("  {}", line.join("  ")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(3 * 86400), "3d");
    }
}
