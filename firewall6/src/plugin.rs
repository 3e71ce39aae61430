//! The CNI verbs of firewall6 (see the crate doc for the chain layout).

use crate::config::FirewallConf;
use crate::error::{Error, Result};
use crate::iptables::Ip6tables;
use crate::rules::{Attachment, HostSide, Pod, Skeleton};
use crate::ruleset::{collect_garbage, defects_of, install, remove_attachment, PodRules};
use cni_common::dispatch::{Plugin, Request};
use cni_common::result::CniResult;
use cni_common::version::{self, Version};
use std::collections::BTreeSet;

pub struct Firewall6;

fn attachment(req: &Request) -> Attachment<'_> {
    Attachment {
        network: &req.config.name,
        container_id: req.container_id(),
        ifname: req.ifname(),
    }
}

/// The prevResult ADD and CHECK need (error 7 without it, conformance.md #32)
/// and the pod it describes.
fn prev_pod(req: &Request, verb: &'static str) -> Result<(CniResult, Pod)> {
    let prev = req
        .config
        .prev_result
        .as_ref()
        .ok_or(Error::MissingPrevResult(verb))?;
    let res = CniResult::parse(prev)?;
    let pod = Pod::from_result(&res)?;
    Ok((res, pod))
}

impl Firewall6 {
    fn add_inner(&self, req: &Request) -> Result<CniResult> {
        let conf = FirewallConf::from_raw(&req.config.raw)?;
        let (res, pod) = prev_pod(req, "ADD")?;
        let ipt = Ip6tables::locate()?;
        if pod.host_side.is_none() {
            eprintln!(
                "firewall6: prevResult names no host-side interface: no source check for this pod"
            );
        }
        let skel = Skeleton {
            network: &req.config.name,
            conf: &conf,
            bridge: pod.bridge.as_deref(),
        };
        if matches!(pod.host_side, Some(HostSide::BridgePort(_))) && pod.mac.is_none() {
            eprintln!(
                "firewall6: prevResult reports no MAC for the pod: its addresses are bound to no MAC"
            );
        }
        let tag = attachment(req).tag();
        let wanted = PodRules::of(&tag, &pod, &skel.policy_chain());
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
        let tag = attachment(req).tag();
        let expected = req
            .config
            .prev_result
            .as_ref()
            .and_then(|p| CniResult::parse(p).ok())
            .and_then(|r| Pod::from_result(&r).ok())
            .map(|pod| PodRules::of(&tag, &pod, "-"));
        remove_attachment(&ipt, &tag, expected)
    }

    fn check_inner(&self, req: &Request) -> Result<()> {
        let conf = FirewallConf::from_raw(&req.config.raw)?;
        let (_, pod) = prev_pod(req, "CHECK")?;
        let ipt = Ip6tables::locate()?;
        let mut defects = Vec::new();
        let skel = Skeleton {
            network: &req.config.name,
            conf: &conf,
            bridge: pod.bridge.as_deref(),
        };
        let tag = attachment(req).tag();
        let wanted = PodRules::of(&tag, &pod, &skel.policy_chain());
        defects.extend(defects_of(&ipt, &skel, &wanted)?);
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
        collect_garbage(&ipt, network, &keep)
    }

    fn status_inner(&self) -> Result<(), cni_common::Error> {
        let unavailable = |e: Error| cni_common::Error::Unavailable(e.to_string());
        let ipt = Ip6tables::locate().map_err(unavailable)?;
        ipt.usable().map_err(unavailable)
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
