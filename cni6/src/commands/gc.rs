//! `cni6 gc`: libcni's GC for one network (conformance.md #88): every cached
//! attachment not in the valid set gets a DEL, then (CNI 1.1.0+) every
//! plugin gets GC with the valid set and frees whatever else it holds.
//!
//! The valid set is the operator's statement of which attachments are in
//! use; an empty one means "none", and frees every pod's address on the
//! network. So the default is a dry run that changes nothing and lists the
//! candidates (every allocation of the store, the leaked ones marked, as
//! `cni6 status` judges them); `--valid` runs GC with the given set,
//! `--leaked` with every allocation that is not leaked, and `--all-stale`
//! with an empty set. What GC freed is the difference of ipam-prefix's
//! store before and after.
//!
//! GC cannot free a live pod by mistake: a `--valid` entry that names no
//! attachment of the network (a typo) is refused; `--leaked` counts an
//! allocation leaked only when its pod's netns is gone (or it is from an
//! earlier boot), and refuses to run where the network's bridge is not
//! visible (the wrong network namespace, where every veth looks gone);
//! `--all-stale` needs `--confirm`.

use crate::error::{CliError, Result};
use crate::node::{
    self, network_configs, networks_of, store_allocations, wrong_namespace, Allocation,
};
use crate::options::{NetworkOpts, Output};
use clap::{ArgGroup, Args};
use cni_common::env::{validate_container_id, validate_ifname};
use cni_common::runtime::{ConfList, DEFAULT_CACHE_DIR};
use serde_json::json;
use std::path::PathBuf;

#[derive(Debug, Clone, Args)]
#[command(
    group(ArgGroup::new("which").required(true).args(["conflist", "network"])),
    group(ArgGroup::new("mode").args(["valid", "leaked", "all_stale"])),
    after_help = "Without --valid, --leaked or --all-stale nothing is changed: gc lists the \
    allocations GC would consider, the leaked ones marked (their pod's netns or host veth is \
    gone, or they are from an earlier boot).\n\n\
    GC releases everything of the network that is not in the valid set: addresses, firewall \
    rules, host interfaces. List every attachment still in use with --valid (e.g. from \
    `crictl pods`), or let --leaked keep every allocation whose pod still exists. --all-stale \
    sends an empty set: only when no pod on this node uses the network."
)]
pub struct GcArgs {
    /// The network configuration list (.conflist, or a single-plugin .conf).
    #[arg(long, value_name = "FILE")]
    pub conflist: Option<PathBuf>,

    /// The network by name, looked up in --conf-dir.
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,

    /// Where --network is looked up.
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "DIR")]
    pub conf_dir: PathBuf,

    /// Directories searched for plugin binaries, ':'-separated
    /// [default: $CNI_PATH, else /opt/cni/bin].
    #[arg(long, value_name = "DIR:DIR")]
    pub cni_path: Option<String>,

    /// The runtime's libcni cache.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,

    /// An attachment still in use, as CONTAINERID/IFNAME (repeat for each).
    #[arg(long, value_name = "ID/IF")]
    pub valid: Vec<String>,

    /// GC with every allocation that is not leaked as the valid set.
    #[arg(long)]
    pub leaked: bool,

    /// Declare that NO attachment of this network is in use: GC with an
    /// empty valid list, releasing everything the plugins hold for it.
    #[arg(long)]
    pub all_stale: bool,

    /// Confirm --all-stale: every address of the network is freed, those of
    /// running pods included.
    #[arg(long, requires = "all_stale")]
    pub confirm: bool,
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

impl GcArgs {
    /// The conflist file: given, or the first one in --conf-dir whose
    /// network has this name (the one the runtime uses).
    fn conflist_path(&self) -> Result<PathBuf> {
        if let Some(f) = &self.conflist {
            return Ok(f.clone());
        }
        let want = self.network.as_deref().expect("clap requires one");
        for n in network_configs(&self.conf_dir)? {
            let p = self.conf_dir.join(n);
            if ConfList::from_file(&p).is_ok_and(|l| l.name == want) {
                return Ok(p);
            }
        }
        Err(CliError::Usage(format!(
            "--network {want}: no network configuration of that name in {}",
            self.conf_dir.display()
        )))
    }

    fn net(&self) -> Result<NetworkOpts> {
        Ok(NetworkOpts {
            conflist: self.conflist_path()?,
            cni_path: self.cni_path.clone(),
            cache_dir: self.cache_dir.clone(),
        })
    }
}

/// The dry run's answer: what GC would consider.
#[derive(Debug)]
pub struct DryRun {
    pub network: String,
    pub allocations: Vec<Allocation>,
    /// `CONTAINERID/IFNAME` of every attachment the runtime cached.
    pub cached: Vec<String>,
}

/// What a GC did.
#[derive(Debug)]
pub struct Collected {
    pub network: String,
    pub cni_version: String,
    pub plugins: usize,
    pub disabled: bool,
    pub valid: Vec<(String, String)>,
    pub stale_deleted: Vec<(String, String)>,
    pub gc_sent: bool,
    /// Whether the list has an ipam-prefix store whose allocations were
    /// compared before and after.
    pub has_store: bool,
    pub freed: Vec<String>,
    pub remaining: usize,
}

pub fn run(a: &GcArgs, o: &mut Output) -> Result<()> {
    let net = a.net()?;
    let (list, rt) = net.load()?;
    let nets = networks_of(&net.conflist, &list);
    let before = store_allocations(&nets, &rt)?;
    let dry = a.valid.is_empty() && !a.leaked && !a.all_stale;
    if dry {
        let cached = node::cached_attachments(&rt, &list.name)?
            .into_iter()
            .map(|r| format!("{}/{}", r.container_id, r.if_name))
            .collect();
        let d = DryRun {
            network: list.name.clone(),
            allocations: before,
            cached,
        };
        return render_dry_run(&d, o);
    }
    if a.all_stale && !a.confirm {
        return Err(CliError::Usage(format!(
            "--all-stale frees every address, rule and host veth of network {} ({} allocation(s)), \
             those of running pods included: add --confirm if no pod on this node uses it, \
             else use --leaked or --valid",
            list.name,
            before.len()
        )));
    }
    let valid = if a.leaked {
        if let Some(why) = wrong_namespace(&nets, &before) {
            return Err(CliError::Failed(format!(
                "--leaked refused, nothing changed: {why}. Every pod would look leaked from \
                 here; run gc in the node's network namespace (e.g. `nsenter -t 1 -n cni6 gc …`)"
            )));
        }
        in_use(&before, &node::cached_attachments(&rt, &list.name)?)
    } else {
        let valid = a
            .valid
            .iter()
            .map(|s| parse_valid(s))
            .collect::<Result<Vec<_>>>()?;
        let mut known: Vec<String> = before.iter().map(Allocation::key).collect();
        known.extend(
            node::cached_attachments(&rt, &list.name)?
                .iter()
                .map(|c| format!("{}/{}", c.container_id, c.if_name)),
        );
        check_valid_known(&valid, &known, &list.name)?;
        valid
    };
    let report = rt
        .gc(&list, &valid)
        .map_err(|e| CliError::cni(format!("gc network {}", list.name), e))?;
    let after = store_allocations(&nets, &rt)?;
    let freed: Vec<String> = before
        .iter()
        .map(Allocation::key)
        .filter(|k| !after.iter().any(|al| &al.key() == k))
        .collect();
    let done = Collected {
        network: list.name.clone(),
        cni_version: list.cni_version.clone(),
        plugins: list.plugins.len(),
        disabled: list.disable_gc,
        valid,
        stale_deleted: report.stale_deleted,
        gc_sent: report.gc_sent,
        has_store: !nets.is_empty(),
        freed,
        remaining: after.len(),
    };
    render_collected(&done, o)
}

/// `--leaked`'s valid set: every allocation whose pod still exists, and
/// every attachment the runtime cached (`cached`, this network's) whose
/// netns still exists, whatever the store says, unless the store already
/// judged its pod gone.
fn in_use(
    allocs: &[Allocation],
    cached: &[cni_common::runtime::CacheRecord],
) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = allocs
        .iter()
        .filter(|al| !al.pod_gone())
        .filter_map(|al| al.record.as_ref())
        .map(|r| (r.container_id.clone(), r.ifname.clone()))
        .collect();
    for c in cached {
        let k = (c.container_id.clone(), c.if_name.clone());
        let leaked_in_store = allocs.iter().any(|al| {
            al.pod_gone()
                && al
                    .record
                    .as_ref()
                    .is_some_and(|r| r.container_id == k.0 && r.ifname == k.1)
        });
        if !c.netns.is_empty()
            && std::path::Path::new(&c.netns).exists()
            && !leaked_in_store
            && !v.contains(&k)
        {
            v.push(k);
        }
    }
    v
}

fn render_dry_run(d: &DryRun, o: &mut Output) -> Result<()> {
    if o.json {
        let allocs: Vec<_> = d
            .allocations
            .iter()
            .map(|al| json!({"attachment": al.key(), "leaked": !al.leaked.is_empty(), "leakReasons": al.leaked}))
            .collect();
        return o.json(&json!({
            "network": d.network,
            "dryRun": true,
            "allocations": allocs,
            "cachedAttachments": d.cached,
        }));
    }
    o.line(format!(
        "dry run, nothing changed: network {} has {} allocation(s) and {} cached attachment(s)",
        d.network,
        d.allocations.len(),
        d.cached.len()
    ))?;
    for al in &d.allocations {
        if al.leaked.is_empty() {
            o.line(format!("  in use?  {}", al.key()))?;
        } else {
            o.line(format!(
                "  leaked   {} ({})",
                al.key(),
                al.leaked.join(", ")
            ))?;
        }
    }
    o.line(
        "GC frees every attachment not in its valid set: run again with --valid ID/IF for \
         each one in use, or --leaked to free only the leaked ones",
    )
}

fn render_collected(d: &Collected, o: &mut Output) -> Result<()> {
    if o.json {
        let stale: Vec<_> = d
            .stale_deleted
            .iter()
            .map(|(c, i)| json!({"containerID": c, "ifname": i}))
            .collect();
        return o.json(&json!({
            "network": d.network,
            "disabled": d.disabled,
            "valid": d.valid.iter().map(|(c, i)| format!("{c}/{i}")).collect::<Vec<_>>(),
            "staleDeleted": stale,
            "gcSent": d.gc_sent,
            "freed": d.freed,
            "remaining": d.remaining,
        }));
    }
    if d.disabled {
        return o.line(format!(
            "nothing done: network {} sets disableGC",
            d.network
        ));
    }
    if d.stale_deleted.is_empty() {
        o.line("no stale cached attachments")?;
    } else {
        o.line(format!(
            "detached {} stale cached attachment(s): {}",
            d.stale_deleted.len(),
            d.stale_deleted
                .iter()
                .map(|(c, i)| format!("{c}/{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
    }
    if d.gc_sent {
        o.line(format!(
            "GC sent to {} plugin(s) with {} valid attachment(s)",
            d.plugins,
            d.valid.len()
        ))?;
    } else {
        o.line(format!(
            "GC not sent: network {} uses CNI {}, GC needs 1.1.0",
            d.network, d.cni_version
        ))?;
    }
    if d.has_store {
        o.line(format!(
            "freed {} allocation(s){}{}; {} remain",
            d.freed.len(),
            if d.freed.is_empty() { "" } else { ": " },
            d.freed.join(", "),
            d.remaining
        ))?;
    }
    Ok(())
}

/// Every `--valid` entry must name an attachment the store or the runtime
/// cache knows: a typo would otherwise free the pod it meant to keep.
pub fn check_valid_known(
    valid: &[(String, String)],
    known: &[String],
    network: &str,
) -> Result<()> {
    for (id, ifname) in valid {
        let k = format!("{id}/{ifname}");
        if known.contains(&k) {
            continue;
        }
        let closest = known
            .iter()
            .map(|c| (c, strsim::osa_distance(c, &k)))
            .min_by_key(|&(_, d)| d)
            .filter(|&(_, d)| d <= 3)
            .map(|(c, _)| format!(" (did you mean {c}?)"))
            .unwrap_or_default();
        return Err(CliError::Usage(format!(
            "--valid {k}: network {network} has no such attachment{closest}, nothing changed. \
             Run `cni6 gc` without options to list them; GC frees every attachment not named, \
             so a mistyped entry would free the pod it meant to keep"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_entries_must_name_an_attachment() {
        let known = vec!["pod1/eth0".to_string(), "pod2/eth0".to_string()];
        let v = |s: &str| vec![parse_valid(s).unwrap()];
        assert!(check_valid_known(&v("pod1/eth0"), &known, "n").is_ok());
        let e = check_valid_known(&v("pod1/eht0"), &known, "n").unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        assert!(e.to_string().contains("did you mean pod1/eth0"), "{e}");
        let e = check_valid_known(&v("zzzzzzzzzz/net9"), &known, "n").unwrap_err();
        assert!(!e.to_string().contains("did you mean"), "{e}");
    }

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
