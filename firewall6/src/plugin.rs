//! The CNI verbs of firewall6 (see the crate doc for the chain layout).

use crate::config::FirewallConf;
use crate::error::{Error, Result};
use crate::iptables::Ip6tables;
use crate::rules::{self, HostSide, Pod, Skeleton};
use crate::ruleset::{collect_garbage, defects_of, install, remove_attachment, PodRules};
use cni_common::dispatch::{Plugin, Request};
use cni_common::result::CniResult;
use cni_common::version::{self, Version};
use std::collections::BTreeSet;

pub struct Firewall6;

impl Plugin for Firewall6 {
    type Error = Error;

    fn about(&self) -> &'static str {
        "firewall6: cni6 chained plugin, per-pod ip6tables ingress policy and source check"
    }

    fn supported_versions(&self) -> &'static [Version] {
        version::FROM_0_4
    }

    fn add(&self, req: &Request) -> Result<CniResult> {
        add(req)
    }

    fn del(&self, req: &Request) -> Result<()> {
        del(req)
    }

    fn check(&self, req: &Request) -> Result<()> {
        check(req)
    }

    fn gc(&self, req: &Request) -> Result<()> {
        gc(req)
    }

    fn status(&self, req: &Request) -> Result<()> {
        status(req)
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

pub fn add(req: &Request) -> Result<CniResult> {
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
    let tag = rules::tag(&req.attachment());
    let wanted = PodRules::of(&tag, &pod, &skel.policy_chain());
    install(&ipt, &skel, &wanted)?;
    Ok(res)
}

pub fn del(req: &Request) -> Result<()> {
    let ipt = match Ip6tables::locate() {
        Ok(i) => i,
        // No ip6tables: no rule of ours can exist.
        Err(e) => {
            eprintln!("firewall6: DEL: {e}; nothing to remove");
            return Ok(());
        }
    };
    let tag = rules::tag(&req.attachment());
    let expected = req
        .config
        .prev_result
        .as_ref()
        .and_then(|p| CniResult::parse(p).ok())
        .and_then(|r| Pod::from_result(&r).ok())
        .map(|pod| PodRules::of(&tag, &pod, "-"));
    remove_attachment(&ipt, &tag, expected)
}

pub fn check(req: &Request) -> Result<()> {
    let conf = FirewallConf::from_raw(&req.config.raw)?;
    let (_, pod) = prev_pod(req, "CHECK")?;
    let ipt = Ip6tables::locate()?;
    let mut defects = Vec::new();
    let skel = Skeleton {
        network: &req.config.name,
        conf: &conf,
        bridge: pod.bridge.as_deref(),
    };
    let tag = rules::tag(&req.attachment());
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

pub fn gc(req: &Request) -> Result<()> {
    let Some(valid) = req.valid_attachments()? else {
        eprintln!(
            "firewall6: GC without cni.dev/valid-attachments: no information, nothing removed"
        );
        return Ok(());
    };
    let network = req.config.name.as_str();
    let keep: BTreeSet<String> = valid.iter().map(rules::tag).collect();
    let ipt = match Ip6tables::locate() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("firewall6: GC: {e}; nothing to remove");
            return Ok(());
        }
    };
    collect_garbage(&ipt, network, &keep)
}

/// Any failure is "unavailable" (code 50), which the runtime reports as
/// "network not ready" (conformance.md #46) until ip6tables works.
pub fn status(_req: &Request) -> Result<()> {
    let unavailable = |e: Error| Error::Common(cni_common::Error::Unavailable(e.to_string()));
    let ipt = Ip6tables::locate().map_err(unavailable)?;
    ipt.usable().map_err(unavailable)
}
