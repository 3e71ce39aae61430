//! The CNI verbs of firewall6 (see the crate doc for the chain layout).

use crate::config::FirewallConf;
use crate::error::{Error, Result};
use crate::iptables::Ip6tables;
use crate::rules::{
    self, Attachment, HostSide, Pod, Skeleton, SkeletonState, ANTISPOOF_CHAIN, FORWARD,
    FORWARD_CHAIN, FROM_POD_CHAIN, INGRESS_CHAIN,
};
use cni_common::dispatch::{Plugin, Request};
use cni_common::result::CniResult;
use cni_common::version::{self, Version};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::path::Path;

/// Per network namespace: bridged IPv6 traffic passes ip6tables only when
/// this is 1 (br_netfilter loaded, and enabled in this namespace).
pub const BRIDGE_NF_SYSCTL: &str = "/proc/sys/net/bridge/bridge-nf-call-ip6tables";

/// Serialises skeleton repair only (pod batches are atomic on their own),
/// so two first ADDs cannot both insert the FORWARD jump.
pub const SKELETON_LOCK: &str = "/run/cni6/firewall6.lock";

/// How often DEL/GC re-list and retry when a rule vanished between the
/// listing and the batch (a concurrent DEL of the same attachment).
const DELETE_ATTEMPTS: usize = 3;

pub struct Firewall6;

fn attachment(req: &Request) -> Attachment<'_> {
    Attachment {
        network: &req.config.name,
        container_id: req.container_id(),
        ifname: req.ifname(),
    }
}

/// Anti-spoofing of bridged traffic needs br_netfilter and its sysctl at 1
/// in the namespace we run in. We do not set it ourselves: it sends every
/// bridge of the node through ip6tables, a node-wide choice (kubeadm's
/// preflight asks the operator for it too). Missing or 0: fail, never skip.
pub fn bridge_netfilter() -> Result<()> {
    bridge_netfilter_at(Path::new(BRIDGE_NF_SYSCTL))
}

fn bridge_netfilter_at(path: &Path) -> Result<()> {
    match fs::read_to_string(path) {
        Ok(v) if v.trim() == "1" => Ok(()),
        Ok(v) => Err(Error::BridgeNetfilter(format!(
            "{} is {:?} in this network namespace, expected 1: run `sysctl -w net.bridge.bridge-nf-call-ip6tables=1` on the node (firewall6 leaves this node-wide switch to the operator)",
            path.display(),
            v.trim()
        ))),
        Err(e) => Err(Error::BridgeNetfilter(format!(
            "cannot read {} ({e}): load br_netfilter (`modprobe br_netfilter`) so the source check of pods on a bridge can work",
            path.display()
        ))),
    }
}

/// Make the skeleton whole, under the lock so concurrent first ADDs do not
/// both insert the same jump. Reads the whole table (one exec): this is
/// the rare path (first pod of a node, or damage).
fn ensure_skeleton(ipt: &Ip6tables, skel: &Skeleton) -> Result<()> {
    let _lock = lock()?;
    let state = SkeletonState::from_listing(
        &ipt.list_all()?,
        &skel.conf.admin_chain,
        &skel.policy_chain(),
    );
    let fix = skel.repair(&state);
    if fix.is_empty() {
        return Ok(());
    }
    ipt.restore(&rules::batch(&fix))
}

fn lock() -> Result<nix::fcntl::Flock<fs::File>> {
    let path = Path::new(SKELETON_LOCK);
    let err = |source| Error::Lock {
        path: SKELETON_LOCK.into(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(err)?;
    }
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(err)?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, errno)| err(std::io::Error::from(errno)))
}

/// ADD's work: the node-wide part repaired only when it is not whole
/// (four small chains read: FORWARD, CNI6-FORWARD, FROM-POD, the policy
/// chain; the jumps in CNI6-FORWARD prove the dispatch and admin chains
/// exist, a rule cannot jump to a missing chain), then the pod's rules as
/// one atomic batch of appends to bucket chains, whose cost does not
/// depend on how many pods exist.
fn install(ipt: &Ip6tables, skel: &Skeleton, pod_rules: &[String]) -> Result<()> {
    let quick = SkeletonState {
        forward: ipt.list_chain(FORWARD)?.unwrap_or_default(),
        cni6_forward: ipt.list_chain(FORWARD_CHAIN)?,
        antispoof: Some(Skeleton::antispoof_rules()),
        ingress: Some(Skeleton::ingress_rules()),
        from_pod: ipt.list_chain(FROM_POD_CHAIN)?,
        policy: ipt.list_chain(&skel.policy_chain())?,
        admin_exists: true,
        chains: None,
    };
    if !skel.defects(&quick).is_empty() {
        ensure_skeleton(ipt, skel)?;
    }
    if pod_rules.is_empty() {
        return Ok(());
    }
    let batch = rules::batch(pod_rules);
    match ipt.restore(&batch) {
        Ok(()) => Ok(()),
        // A chain the batch refers to (a bucket, FROM-POD, the policy
        // chain) is missing: repair, then the batch once more.
        Err(_) => {
            ensure_skeleton(ipt, skel)?;
            ipt.restore(&batch)
        }
    }
}

/// `-A` lines of our bucket chains in a full listing.
fn bucket_lines(all: Vec<String>) -> Vec<String> {
    all.into_iter()
        .filter(|l| rules::parse_rule(l).is_some_and(|r| rules::is_bucket_chain(r.chain)))
        .collect()
}

/// Remove every rule carrying one of `tags`, starting from `listing` (the
/// `-A` lines of the chains they may be in). A rule that vanished meanwhile
/// makes a batch fail: re-list the whole table and retry. Keeps going
/// across tags and reports every failure at the end.
fn remove_tagged(ipt: &Ip6tables, tags: &BTreeSet<String>, listing: Vec<String>) -> Result<()> {
    let mut errors = Vec::new();
    let mut pending: BTreeSet<String> = tags.clone();
    let mut listing = listing;
    for attempt in 1..=DELETE_ATTEMPTS {
        if attempt > 1 {
            listing = bucket_lines(ipt.list_all()?);
        }
        let mut next = BTreeSet::new();
        errors.clear();
        for tag in &pending {
            let lines: Vec<String> = rules::rules_with_tag(&listing, tag)
                .into_iter()
                .map(rules::delete_of)
                .collect();
            if lines.is_empty() {
                continue;
            }
            if let Err(e) = ipt.restore(&rules::batch(&lines)) {
                errors.push(format!("{tag:?}: {e}"));
                next.insert(tag.clone());
            }
        }
        if next.is_empty() {
            return Ok(());
        }
        pending = next;
    }
    Err(Error::Cleanup(errors))
}

/// The `-A` lines of `chains`, one small listing each.
fn list_chains(ipt: &Ip6tables, chains: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
    let mut out = BTreeMap::new();
    for c in chains {
        out.insert(c.clone(), ipt.list_chain(c)?.unwrap_or_default());
    }
    Ok(out)
}

impl Firewall6 {
    fn add_inner(&self, req: &Request) -> Result<CniResult> {
        let conf = FirewallConf::from_raw(&req.config.raw)?;
        let prev = req
            .config
            .prev_result
            .as_ref()
            .ok_or(Error::MissingPrevResult("ADD"))?;
        let res = CniResult::parse(prev)?;
        let pod = Pod::from_result(&res)?;
        let ipt = Ip6tables::locate()?;
        if let Some(HostSide::BridgePort(_)) = pod.host_side {
            bridge_netfilter()?;
        }
        if pod.host_side.is_none() {
            eprintln!(
                "firewall6: prevResult names no host-side interface: no source check for this pod"
            );
        }
        let skel = Skeleton {
            network: &req.config.name,
            conf: &conf,
        };
        let tag = attachment(req).tag();
        let wanted = rules::pod_rules(&tag, &pod, &skel.policy_chain());
        install(&ipt, &skel, &wanted)?;
        Ok(res)
    }

    /// With a usable prevResult the pod's rules sit in known buckets: list
    /// those few chains only (O(1)). Without one, or when the buckets do
    /// not hold all of them (the config or prevResult changed since ADD,
    /// checklist 17), read the whole table once.
    fn del_inner(&self, req: &Request) -> Result<()> {
        let ipt = match Ip6tables::locate() {
            Ok(i) => i,
            // No ip6tables: no rule of ours can exist.
            Err(e) => {
                eprintln!("firewall6: DEL: {e}; nothing to remove");
                return Ok(());
            }
        };
        let tag = attachment(req).tag();
        let tags = BTreeSet::from([tag.clone()]);
        let expected = req
            .config
            .prev_result
            .as_ref()
            .and_then(|p| CniResult::parse(p).ok())
            .and_then(|r| Pod::from_result(&r).ok())
            .map(|pod| rules::pod_rules(&tag, &pod, "-"));
        if let Some(expected) = expected.filter(|e| !e.is_empty()) {
            let listings = list_chains(&ipt, &rules::chains_of(&expected))?;
            let listing: Vec<String> = listings.into_values().flatten().collect();
            if rules::rules_with_tag(&listing, &tag).len() >= expected.len() {
                return remove_tagged(&ipt, &tags, listing);
            }
        }
        remove_tagged(&ipt, &tags, bucket_lines(ipt.list_all()?))
    }

    fn check_inner(&self, req: &Request) -> Result<()> {
        let conf = FirewallConf::from_raw(&req.config.raw)?;
        let prev = req
            .config
            .prev_result
            .as_ref()
            .ok_or(Error::MissingPrevResult("CHECK"))?;
        let res = CniResult::parse(prev)?;
        let pod = Pod::from_result(&res)?;
        let ipt = Ip6tables::locate()?;
        let mut defects = Vec::new();
        if let Some(HostSide::BridgePort(_)) = pod.host_side {
            if let Err(e) = bridge_netfilter() {
                defects.push(e.to_string());
            }
        }
        let skel = Skeleton {
            network: &req.config.name,
            conf: &conf,
        };
        // Read-only and O(1): the skeleton chains and the pod's buckets,
        // one small listing each (bucket chains exist when the dispatch
        // rules that jump to them do).
        let state = SkeletonState {
            forward: ipt.list_chain(FORWARD)?.unwrap_or_default(),
            cni6_forward: ipt.list_chain(FORWARD_CHAIN)?,
            antispoof: ipt.list_chain(ANTISPOOF_CHAIN)?,
            ingress: ipt.list_chain(INGRESS_CHAIN)?,
            from_pod: ipt.list_chain(FROM_POD_CHAIN)?,
            policy: ipt.list_chain(&skel.policy_chain())?,
            admin_exists: ipt.list_chain(&conf.admin_chain)?.is_some(),
            chains: None,
        };
        defects.extend(skel.defects(&state));
        let tag = attachment(req).tag();
        let wanted = rules::pod_rules(&tag, &pod, &skel.policy_chain());
        let listings = list_chains(&ipt, &rules::chains_of(&wanted))?;
        defects.extend(rules::pod_defects(&wanted, &listings));
        if defects.is_empty() {
            Ok(())
        } else {
            Err(Error::CheckFailed(format!(
                "firewall6 rules of {tag:?}: {}",
                defects.join("; ")
            )))
        }
    }

    fn gc_inner(&self, req: &Request) -> Result<()> {
        let Some(valid) = req.valid_attachments()? else {
            eprintln!(
                "firewall6: GC without cni.dev/valid-attachments: no information, nothing removed"
            );
            return Ok(());
        };
        let network = req.config.name.as_str();
        let keep: BTreeSet<String> = valid
            .iter()
            .map(|a| {
                Attachment {
                    network,
                    container_id: &a.container_id,
                    ifname: &a.ifname,
                }
                .tag()
            })
            .collect();
        let ipt = match Ip6tables::locate() {
            Ok(i) => i,
            Err(e) => {
                eprintln!("firewall6: GC: {e}; nothing to remove");
                return Ok(());
            }
        };
        let listing = bucket_lines(ipt.list_all()?);
        let stale: BTreeSet<String> = listing
            .iter()
            .filter_map(|l| rules::parse_rule(l).and_then(|r| r.comment))
            .filter(|c| rules::tag_network(c) == Some(network) && !keep.contains(c))
            .collect();
        if stale.is_empty() {
            return Ok(());
        }
        remove_tagged(&ipt, &stale, listing)
    }

    fn status_inner(&self) -> Result<(), cni_common::Error> {
        let unavailable = |e: Error| cni_common::Error::Unavailable(e.to_string());
        let ipt = Ip6tables::locate().map_err(unavailable)?;
        ipt.usable().map_err(unavailable)?;
        bridge_netfilter().map_err(unavailable)
    }
}

impl Plugin for Firewall6 {
    fn about(&self) -> &'static str {
        "firewall6: cni6 chained plugin, per-pod ip6tables ingress policy and source check"
    }

    fn supported_versions(&self) -> &'static [Version] {
        version::FROM_0_4
    }

    fn add(&self, req: &Request) -> cni_common::Result<CniResult> {
        Ok(self.add_inner(req)?)
    }

    fn del(&self, req: &Request) -> cni_common::Result<()> {
        Ok(self.del_inner(req)?)
    }

    fn check(&self, req: &Request) -> cni_common::Result<()> {
        Ok(self.check_inner(req)?)
    }

    fn gc(&self, req: &Request) -> cni_common::Result<()> {
        Ok(self.gc_inner(req)?)
    }

    fn status(&self, _req: &Request) -> cni_common::Result<()> {
        self.status_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_netfilter_states() {
        let dir = std::env::temp_dir().join(format!("fw6-brnf-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bridge-nf-call-ip6tables");
        fs::write(&f, "1\n").unwrap();
        assert!(bridge_netfilter_at(&f).is_ok());
        fs::write(&f, "0\n").unwrap();
        let e = cni_common::Error::from(bridge_netfilter_at(&f).unwrap_err());
        assert_eq!(e.code(), 50);
        assert!(e.to_string().contains("bridge-nf-call-ip6tables=1"), "{e}");
        let e = cni_common::Error::from(bridge_netfilter_at(&dir.join("absent")).unwrap_err());
        assert!(e.to_string().contains("br_netfilter"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
