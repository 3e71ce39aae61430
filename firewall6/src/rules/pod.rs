//! The rules of one pod: what it is (read from prevResult), its tag
//! (the comment DEL and GC find its rules by) and the lines it owns in
//! the bucket chains.

use super::*;
use crate::error::{Error, Result};
use cni_common::attachment::{Attachment, HOST_VETH_PREFIX};
use cni_common::result::CniResult;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv6Addr};

/// The comment word that marks a rule as ours.
pub const TAG_WORD: &str = "firewall6";

/// iptables stores at most 255 bytes of comment.
pub(super) const MAX_COMMENT: usize = 255;

/// The EUI-64 link-local address of `mac` (bridge6 makes the pod use it).
pub fn link_local_of(mac: &[u8; 6]) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 0x02, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

pub(super) fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(super) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| {
            (p.len() == 2)
                .then(|| u8::from_str_radix(p, 16).ok())
                .flatten()
        })
        .collect::<Option<Vec<u8>>>()?;
    parts.try_into().ok()
}

/// The bucket of a pod's traffic by its host-side port name.
pub fn port_bucket_of(host: &HostSide) -> String {
    match host {
        HostSide::BridgePort(name) => name
            .strip_prefix(HOST_VETH_PREFIX)
            .and_then(|rest| rest.get(..2))
            .filter(|h| h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .map(port_bucket)
            .unwrap_or_else(|| PORT_OTHER.to_string()),
        HostSide::Routed(_) => PORT_OTHER.to_string(),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The tag of an attachment, carried as the comment of every per-pod rule:
/// what DEL and GC find its rules by.
/// `firewall6 net=<network> if=<ifname> id=<container id>`.
///
/// Network names and container ids are already restricted to
/// `[A-Za-z0-9_.-]`; an ifname may hold almost anything, so bytes
/// outside a safe set are %-encoded (keeps the comment unquoted-safe and
/// unique). A comment that would exceed iptables' 255 bytes carries a
/// SHA-256 digest of the container id instead of the id itself.
pub fn tag(a: &Attachment) -> String {
    let ifname = encode_ifname(&a.ifname);
    let full = format!(
        "{TAG_WORD} net={} if={ifname} id={}",
        a.network, a.container_id
    );
    if full.len() <= MAX_COMMENT {
        return full;
    }
    let digest = Sha256::digest(a.container_id.as_bytes());
    format!(
        "{TAG_WORD} net={} if={ifname} idsha={}",
        a.network,
        hex(&digest[..16])
    )
}

pub(super) fn encode_ifname(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@' | b'+') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The network a per-pod tag belongs to, or `None` for a comment that is
/// not a per-pod tag of ours.
pub fn tag_network(comment: &str) -> Option<&str> {
    let mut words = comment.split(' ');
    if words.next()? != TAG_WORD {
        return None;
    }
    let net = words.next()?.strip_prefix("net=")?;
    words.next()?.strip_prefix("if=")?;
    let id = words.next()?;
    if !(id.starts_with("id=") || id.starts_with("idsha=")) || words.next().is_some() {
        return None;
    }
    Some(net)
}

/// How packets from the pod reach the node: the host-side interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostSide {
    /// A port of a bridge (bridge6): the pod's traffic reaches the node on
    /// the bridge, its source is checked first in INPUT and FORWARD by its MAC
    /// (bound to the port by bridge6: locked port, static FDB entry).
    /// Pods attached by releases before issue 15 have physdev rules in
    /// the port buckets, which DEL and GC still find.
    BridgePort(String),
    /// A routed interface (e.g. ptp): matched with `-i`.
    Routed(String),
}

impl HostSide {
    fn matcher(&self) -> String {
        match self {
            HostSide::BridgePort(v) => format!("-m physdev --physdev-in {v}"),
            HostSide::Routed(v) => format!("-i {v}"),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            HostSide::BridgePort(v) | HostSide::Routed(v) => v,
        }
    }
}

/// What the rules of one pod are made from, read from prevResult.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub addresses: Vec<Ipv6Addr>,
    pub host_side: Option<HostSide>,
    /// The bridge of a bridged pod (the first host-side interface).
    pub bridge: Option<String>,
    /// The pod interface's MAC, when prevResult reports it.
    pub mac: Option<[u8; 6]>,
}

impl Pod {
    /// The pod's addresses are the IPv6 `ips` whose `interface` is an
    /// interface with `sandbox`; all IPv6 `ips` when none says where it
    /// lives. IPv4 addresses are not ours (ip6tables only).
    ///
    /// The host side: the interfaces without `sandbox`. With two or more
    /// the first is the bridge (bridge6 reports [bridge, host veth, pod
    /// iface]; the reference firewall reads `interfaces[0]` the same way)
    /// and the next one the pod's bridge port; with exactly one it is a
    /// routed veth (ptp-style); with none there is nothing to match the
    /// pod's traffic by, and no source check is installed.
    pub fn from_result(res: &CniResult) -> Result<Pod> {
        let in_sandbox = |i: usize| {
            res.interfaces
                .get(i)
                .map(|x| x.sandbox.as_deref().is_some_and(|s| !s.is_empty()))
                .unwrap_or(false)
        };
        let any_located = res.ips.iter().any(|ip| ip.interface.is_some());
        let mut addresses = Vec::new();
        for ip in &res.ips {
            if any_located && !ip.interface.is_some_and(in_sandbox) {
                continue;
            }
            if let IpAddr::V6(a) = ip.address.addr() {
                if !addresses.contains(&a) {
                    addresses.push(a);
                }
            }
        }
        let host: Vec<(usize, &str)> = res
            .interfaces
            .iter()
            .enumerate()
            .filter(|(i, _)| !in_sandbox(*i))
            .map(|(i, x)| (i, x.name.as_str()))
            .collect();
        let (host_side, bridge) = match host.as_slice() {
            [] => (None, None),
            [(i, name)] => (Some(HostSide::Routed(valid_ifname(*i, name)?)), None),
            [(b, bridge), (i, name), ..] => (
                Some(HostSide::BridgePort(valid_ifname(*i, name)?)),
                Some(valid_ifname(*b, bridge)?),
            ),
        };
        // The MAC of the interface the addresses live on (or the first in
        // the sandbox).
        let pod_iface = res
            .ips
            .iter()
            .find_map(|ip| ip.interface.filter(|i| in_sandbox(*i)))
            .or_else(|| (0..res.interfaces.len()).find(|i| in_sandbox(*i)));
        let mac = pod_iface
            .and_then(|i| res.interfaces[i].mac.as_deref())
            .and_then(parse_mac);
        Ok(Pod {
            addresses,
            host_side,
            bridge,
            mac,
        })
    }
}

/// A host interface name goes into a rule: it must be a kernel name that
/// needs no quoting.
pub(super) fn valid_ifname(i: usize, name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(Error::config(
            format!("prevResult.interfaces[{i}].name"),
            format!("{name:?}"),
            "a host interface name of 1-15 characters from [A-Za-z0-9_.@-]",
        ))
    }
}

pub(super) fn comment(text: &str) -> String {
    format!("-m comment --comment \"{text}\"")
}

/// The per-pod rules, in installation order: in the pod's port bucket its
/// genuine (source, port) pairs go on to FROM-POD, then everything else from
/// its port is dropped; in each address's bucket, traffic to it goes to the
/// network's policy chain.
pub fn pod_rules(tag: &str, pod: &Pod, policy_chain: &str) -> Vec<String> {
    let c = comment(tag);
    let mut v = Vec::new();
    // A bridged pod's source check lives in the source buckets
    // ([`pod_source_rules`]); a routed one's here, by its interface.
    if let Some(host @ HostSide::Routed(_)) = &pod.host_side {
        let m = host.matcher();
        let chain = port_bucket_of(host);
        for a in &pod.addresses {
            v.push(format!("-A {chain} -s {a}/128 {m} {c} -g {FROM_POD_CHAIN}"));
        }
        v.push(format!("-A {chain} {m} {c} -j DROP"));
    }
    for a in &pod.addresses {
        let chain = addr_bucket_of(a);
        v.push(format!("-A {chain} -d {a}/128 {c} -j {policy_chain}"));
    }
    v
}

/// The sources a bridged pod may send from: its addresses and the EUI-64
/// link-local address of its MAC.
pub fn pod_sources(pod: &Pod) -> Vec<Ipv6Addr> {
    let mut v = pod.addresses.clone();
    if let Some(mac) = &pod.mac {
        let ll = link_local_of(mac);
        if !v.contains(&ll) {
            v.push(ll);
        }
    }
    v
}

/// The source rules of a bridged pod, as `ip6tables -S` lists them: in
/// each source's bucket, (source, MAC) returns to PREROUTING; anything else
/// reaches the bucket's DROP. Installed with `-I … 1` (see
/// [`insert_lines`]) so they stay before that DROP. Without a MAC in
/// prevResult the address alone is bound (weaker: logged by ADD).
pub fn pod_source_rules(tag: &str, pod: &Pod) -> Vec<String> {
    if !matches!(pod.host_side, Some(HostSide::BridgePort(_))) {
        return Vec::new();
    }
    let c = comment(tag);
    let mac = pod
        .mac
        .as_ref()
        .map(|m| format!(" -m mac --mac-source {}", format_mac(m)))
        .unwrap_or_default();
    pod_sources(pod)
        .iter()
        .map(|a| format!("-A {} -s {a}/128{mac} {c} -j RETURN", src_bucket_of(a)))
        .collect()
}

/// `-A` lines turned into `-I … 1` lines.
pub fn insert_lines(rules: &[String]) -> Vec<String> {
    rules.iter().map(|r| insert_first(r)).collect()
}
