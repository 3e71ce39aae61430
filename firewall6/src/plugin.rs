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

fn read_skeleton(ipt: &Ip6tables, skel: &Skeleton) -> Result<SkeletonState> {
    let exists = |chain: &str| -> Result<bool> { Ok(ipt.list_chain(chain)?.is_some()) };
    Ok(SkeletonState {
        forward: ipt.list_chain(FORWARD)?.unwrap_or_default(),
        cni6_forward: ipt.list_chain(FORWARD_CHAIN)?,
        antispoof_exists: exists(ANTISPOOF_CHAIN)?,
        ingress_exists: exists(INGRESS_CHAIN)?,
        from_pod: ipt.list_chain(FROM_POD_CHAIN)?,
        policy: ipt.list_chain(&skel.policy_chain())?,
        admin_exists: exists(&skel.conf.admin_chain)?,
    })
}

/// Make the skeleton whole, under the lock so concurrent first ADDs do not
/// both insert the same jump.
fn ensure_skeleton(ipt: &Ip6tables, skel: &Skeleton) -> Result<()> {
    let _lock = lock()?;
    let state = read_skeleton(ipt, skel)?;
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
/// one atomic batch of appends whose cost does not depend on how many pods
/// exist.
fn install(ipt: &Ip6tables, skel: &Skeleton, pod_rules: &[String]) -> Result<()> {
    let quick = SkeletonState {
        forward: ipt.list_chain(FORWARD)?.unwrap_or_default(),
        cni6_forward: ipt.list_chain(FORWARD_CHAIN)?,
        antispoof_exists: true,
        ingress_exists: true,
        from_pod: ipt.list_chain(FROM_POD_CHAIN)?,
        policy: ipt.list_chain(&skel.policy_chain())?,
        admin_exists: true,
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
        // A chain the batch refers to (FROM-POD, the policy chain) is
        // missing or altered: repair, then the batch once more.
        Err(_) => {
            ensure_skeleton(ipt, skel)?;
            ipt.restore(&batch)
        }
    }
}

/// Remove every rule carrying one of `tags` from the per-pod chains. Found
/// by listing (no prevResult needed); a rule that vanished meanwhile makes
/// the batch fail, so re-list and retry. Keeps going across tags.
fn remove_tagged(ipt: &Ip6tables, tags: &BTreeSet<String>) -> Result<()> {
    let mut errors = Vec::new();
    let mut pending: BTreeSet<String> = tags.clone();
    for attempt in 1..=DELETE_ATTEMPTS {
        let antispoof = ipt.list_chain(ANTISPOOF_CHAIN)?.unwrap_or_default();
        let ingress = ipt.list_chain(INGRESS_CHAIN)?.unwrap_or_default();
        let mut next = BTreeSet::new();
        errors.clear();
        for tag in &pending {
            let lines: Vec<String> = rules::rules_with_tag(&antispoof, tag)
                .into_iter()
                .chain(rules::rules_with_tag(&ingress, tag))
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
        if attempt < DELETE_ATTEMPTS {
            pending = next;
        }
    }
    Err(Error::Cleanup(errors))
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

    fn del_inner(&self, req: &Request) -> Result<()> {
        let ipt = match Ip6tables::locate() {
            Ok(i) => i,
            // No ip6tables: no rule of ours can exist.
            Err(e) => {
                eprintln!("firewall6: DEL: {e}; nothing to remove");
                return Ok(());
            }
        };
        remove_tagged(&ipt, &BTreeSet::from([attachment(req).tag()]))
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
        defects.extend(skel.defects(&read_skeleton(&ipt, &skel)?));
        let tag = attachment(req).tag();
        let wanted = rules::pod_rules(&tag, &pod, &skel.policy_chain());
        let antispoof = ipt.list_chain(ANTISPOOF_CHAIN)?.unwrap_or_default();
        let ingress = ipt.list_chain(INGRESS_CHAIN)?.unwrap_or_default();
        defects.extend(rules::pod_defects(&wanted, &antispoof, &ingress));
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
        let mut stale = BTreeSet::new();
        for chain in [ANTISPOOF_CHAIN, INGRESS_CHAIN] {
            for line in ipt.list_chain(chain)?.unwrap_or_default() {
                if let Some(c) = rules::parse_rule(&line).and_then(|r| r.comment) {
                    if rules::tag_network(&c) == Some(network) && !keep.contains(&c) {
                        stale.insert(c);
                    }
                }
            }
        }
        if stale.is_empty() {
            return Ok(());
        }
        remove_tagged(&ipt, &stale)
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

/// Group `-A` lines of our per-pod chains by attachment tag (for tools and
/// tests that want to see what is installed per pod).
pub fn rules_by_tag(lines: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in lines {
        if let Some(r) = rules::parse_rule(l) {
            if let Some(c) = r.comment.filter(|c| rules::tag_network(c).is_some()) {
                out.entry(c).or_default().push(l.clone());
            }
        }
    }
    out
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
