//! Pure rule logic: the text of every rule firewall6 owns, the
//! `ip6tables-restore` batches that install and remove them, and the
//! parsing of `ip6tables -S` listings that finds them again. No process is
//! run here, so all of it is unit-tested without root.
//!
//! Every rule is written in exactly the form `ip6tables -S` prints it back
//! (address with prefix length, `-m tcp` after `-p tcp`, matches in the
//! order the save format uses, the comment quoted). That makes CHECK a
//! comparison of strings and DEL a `-D` of the listed line, and the
//! conformance suite proves the round trip on the real binary.

use crate::config::{FirewallConf, Ingress};
use crate::error::{Error, Result};
use cni_common::result::CniResult;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};

pub const FORWARD: &str = "FORWARD";
/// Jumped to from FORWARD; holds only node-wide dispatch rules.
pub const FORWARD_CHAIN: &str = "CNI6-FORWARD";
/// Node-wide: dispatches traffic entering from a pod's host-side port,
/// through the port group `CNI6-PX-x`, to the port bucket `CNI6-P-xx` (by
/// the port name) or to `CNI6-P-OTHER`.
pub const ANTISPOOF_CHAIN: &str = "CNI6-ANTISPOOF";
/// Node-wide: returns multicast, dispatches the rest by the low byte of
/// its destination, through the address group `CNI6-DX-x`, to the address
/// bucket `CNI6-D-xx`.
pub const INGRESS_CHAIN: &str = "CNI6-INGRESS";
/// Node-wide: traffic from a pod with a genuine source: the destination
/// pod's policy applies first, then it may leave.
pub const FROM_POD_CHAIN: &str = "CNI6-FROM-POD";
/// Per network: `CNI6-POL-<12 hex>` of (network, policy).
pub const POLICY_PREFIX: &str = "CNI6-POL-";
/// Port buckets: `CNI6-P-00` … `CNI6-P-ff`, and [`PORT_OTHER`].
pub const PORT_BUCKET_PREFIX: &str = "CNI6-P-";
/// Ports whose name is not bridge6's `c6<hex>`, and routed (`-i`) ports.
pub const PORT_OTHER: &str = "CNI6-P-OTHER";
/// Address buckets: `CNI6-D-00` … `CNI6-D-ff`.
pub const ADDR_BUCKET_PREFIX: &str = "CNI6-D-";
/// bridge6 names host veths `c6` + 13 hex digits of a hash: the two hex
/// digits after the prefix spread them evenly over 256 port buckets.
pub const BRIDGE6_VETH_PREFIX: &str = "c6";
pub const BUCKETS: usize = 256;
/// The dispatch to the buckets is a two-level tree: 16 groups (the high
/// hex digit) of 16 buckets, so a packet passes at most 16 + 16 dispatch
/// rules instead of up to 256.
pub const GROUPS: usize = 16;
/// Port groups: `CNI6-PX-0` … `CNI6-PX-f`, by the first hex digit after
/// `c6` (not a bucket: no pod rule lives there).
pub const PORT_GROUP_PREFIX: &str = "CNI6-PX-";
/// Address groups: `CNI6-DX-0` … `CNI6-DX-f`, by the high nibble of the
/// destination's low byte.
pub const ADDR_GROUP_PREFIX: &str = "CNI6-DX-";
/// Multicast destinations: no pod policy applies to them.
pub const MULTICAST: &str = "ff00::/8";
/// Raw-table chain that drops the MLD messages of pods (see [`mld_rules`]).
pub const MLD_CHAIN: &str = "CNI6-MLD";
/// The raw table's chain the MLD jump sits in (before the bridge floods).
pub const RAW_PREROUTING: &str = "PREROUTING";
/// MLD message types: query, v1 report, done, v2 report (RFC 2710, 3810).
pub const MLD_TYPES: [u8; 4] = [130, 131, 132, 143];

/// INPUT and FORWARD of traffic that enters from a pod bridge jump here
/// first: the source check that binds each pod's addresses to its MAC
/// (issue 15). In the filter table, so a pod's rules change one table: one
/// nf_tables transaction per ADD or DEL (each deleting transaction waits a
/// grace period, 10-15 ms here).
pub const SRC_CHAIN: &str = "CNI6-SRC";
/// ICMPv6 a pod may not send at all: router advertisements, redirects, MLD.
pub const SRC_ICMP_CHAIN: &str = "CNI6-SRC-ICMP";
/// Source groups `CNI6-SX-0` … `CNI6-SX-f` (high nibble of the source's
/// low byte).
pub const SRC_GROUP_PREFIX: &str = "CNI6-SX-";
/// Source buckets `CNI6-S-00` … `CNI6-S-ff` (the source's low byte): the
/// pods' (address, MAC) pairs, then a DROP.
pub const SRC_BUCKET_PREFIX: &str = "CNI6-S-";
/// Traffic from a pod bridge (its source already checked) goes to
/// FROM-POD; one rule per bridge.
pub const PODS_CHAIN: &str = "CNI6-PODS";
/// ICMPv6 types dropped from pods: MLD (130, 131, 132, 143), router
/// advertisement (134), redirect (137).
pub const POD_ICMP_DROPPED: [u8; 6] = [130, 131, 132, 143, 134, 137];

/// The comment word that marks a rule as ours.
pub const TAG_WORD: &str = "firewall6";

/// iptables stores at most 255 bytes of comment.
const MAX_COMMENT: usize = 255;

pub fn is_internal_chain(name: &str) -> bool {
    [
        FORWARD_CHAIN,
        ANTISPOOF_CHAIN,
        INGRESS_CHAIN,
        FROM_POD_CHAIN,
        PODS_CHAIN,
    ]
    .contains(&name)
        || name.starts_with(POLICY_PREFIX)
        || name.starts_with(PORT_GROUP_PREFIX)
        || name.starts_with(ADDR_GROUP_PREFIX)
        || name.starts_with(PORT_BUCKET_PREFIX)
        || name.starts_with(ADDR_BUCKET_PREFIX)
}

/// Chains that hold per-pod rules (what DEL, GC and CHECK search).
pub fn is_bucket_chain(name: &str) -> bool {
    name.starts_with(PORT_BUCKET_PREFIX) || name.starts_with(ADDR_BUCKET_PREFIX)
}

pub fn port_bucket(b: usize) -> String {
    format!("{PORT_BUCKET_PREFIX}{b:02x}")
}

pub fn addr_bucket(b: usize) -> String {
    format!("{ADDR_BUCKET_PREFIX}{b:02x}")
}

pub fn src_bucket(b: usize) -> String {
    format!("{SRC_BUCKET_PREFIX}{b:02x}")
}

pub fn src_group(g: usize) -> String {
    format!("{SRC_GROUP_PREFIX}{g:x}")
}

/// The source bucket of traffic from `a`: its low byte.
pub fn src_bucket_of(a: &Ipv6Addr) -> String {
    src_bucket(a.octets()[15] as usize)
}

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

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
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

pub fn port_group(g: usize) -> String {
    format!("{PORT_GROUP_PREFIX}{g:x}")
}

pub fn addr_group(g: usize) -> String {
    format!("{ADDR_GROUP_PREFIX}{g:x}")
}

/// The dispatch group that leads to a bucket chain (`CNI6-P-ab` →
/// `CNI6-PX-a`, `CNI6-D-ab` → `CNI6-DX-a`); `None` for `CNI6-P-OTHER` and
/// anything else.
pub fn group_of_bucket(bucket: &str) -> Option<String> {
    let digit = |rest: &str| -> Option<usize> {
        (rest.len() == 2)
            .then(|| usize::from_str_radix(rest, 16).ok())
            .flatten()
            .map(|b| b >> 4)
    };
    if let Some(rest) = bucket.strip_prefix(PORT_BUCKET_PREFIX) {
        digit(rest).map(port_group)
    } else if let Some(rest) = bucket.strip_prefix(ADDR_BUCKET_PREFIX) {
        digit(rest).map(addr_group)
    } else {
        None
    }
}

/// The bucket of a pod's traffic by its host-side port name.
pub fn port_bucket_of(host: &HostSide) -> String {
    match host {
        HostSide::BridgePort(name) => name
            .strip_prefix(BRIDGE6_VETH_PREFIX)
            .and_then(|rest| rest.get(..2))
            .filter(|h| h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .map(port_bucket)
            .unwrap_or_else(|| PORT_OTHER.to_string()),
        HostSide::Routed(_) => PORT_OTHER.to_string(),
    }
}

/// The bucket of traffic to `a`: its low byte (pod slots are sequential,
/// and the ULA and GUA of a pod share their low 32 bits).
pub fn addr_bucket_of(a: &Ipv6Addr) -> String {
    addr_bucket(a.octets()[15] as usize)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One attachment (network, container id, ifname): what DEL and GC find
/// rules by, through the comment every per-pod rule carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment<'a> {
    pub network: &'a str,
    pub container_id: &'a str,
    pub ifname: &'a str,
}

impl Attachment<'_> {
    /// `firewall6 net=<network> if=<ifname> id=<container id>`.
    ///
    /// Network names and container ids are already restricted to
    /// `[A-Za-z0-9_.-]`; an ifname may hold almost anything, so bytes
    /// outside a safe set are %-encoded (keeps the comment unquoted-safe and
    /// unique). A comment that would exceed iptables' 255 bytes carries a
    /// SHA-256 digest of the container id instead of the id itself.
    pub fn tag(&self) -> String {
        let ifname = encode_ifname(self.ifname);
        let full = format!(
            "{TAG_WORD} net={} if={ifname} id={}",
            self.network, self.container_id
        );
        if full.len() <= MAX_COMMENT {
            return full;
        }
        let digest = Sha256::digest(self.container_id.as_bytes());
        format!(
            "{TAG_WORD} net={} if={ifname} idsha={}",
            self.network,
            hex(&digest[..16])
        )
    }
}

fn encode_ifname(s: &str) -> String {
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
fn valid_ifname(i: usize, name: &str) -> Result<String> {
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

fn comment(text: &str) -> String {
    format!("-m comment --comment \"{text}\"")
}

/// The node-wide skeleton and the network's policy chain.
#[derive(Debug, Clone)]
pub struct Skeleton<'a> {
    pub network: &'a str,
    pub conf: &'a FirewallConf,
    /// The bridge of the pod being added, whose jumps ADD makes sure of.
    pub bridge: Option<&'a str>,
}

impl Skeleton<'_> {
    pub fn forward_jump() -> String {
        format!(
            "-A {FORWARD} {} -j {FORWARD_CHAIN}",
            comment("firewall6: cni6 pod firewall")
        )
    }

    pub fn admin_jump(&self) -> String {
        format!(
            "-A {FORWARD_CHAIN} {} -j {}",
            comment("firewall6: operator overrides first"),
            self.conf.admin_chain
        )
    }

    /// CNI6-FORWARD after the admin jump(s). Neighbour discovery and DAD
    /// use link-local and unspecified sources: exempt from the source check.
    pub fn forward_rules() -> Vec<String> {
        vec![
            format!(
                "-A {FORWARD_CHAIN} -s fe80::/10 {} -g {INGRESS_CHAIN}",
                comment("firewall6: link-local sources are not checked")
            ),
            format!(
                "-A {FORWARD_CHAIN} -s ::/128 {} -g {INGRESS_CHAIN}",
                comment("firewall6: DAD probes are not checked")
            ),
            format!(
                "-A {FORWARD_CHAIN} {} -j {PODS_CHAIN}",
                comment("firewall6: pods behind a bridge, sources checked")
            ),
            format!(
                "-A {FORWARD_CHAIN} {} -j {ANTISPOOF_CHAIN}",
                comment("firewall6: source check of pod traffic")
            ),
            format!(
                "-A {FORWARD_CHAIN} {} -j {INGRESS_CHAIN}",
                comment("firewall6: inbound policy of pods")
            ),
        ]
    }

    /// CNI6-ANTISPOOF: the guard that sends unbridged packets to the
    /// catch-all at once ([`crate::fastpath`]), one rule per port group
    /// (`c6` + its first hex digit), then the catch-all. A port with a bridge6 name that has no
    /// rules in its bucket comes back from the group and reaches the
    /// catch-all, as ports of other names do.
    pub fn antispoof_rules() -> Vec<String> {
        let mut v = vec![crate::fastpath::antispoof_guard()];
        v.extend((0..GROUPS).map(|g| {
            format!(
                "-A {ANTISPOOF_CHAIN} -m physdev --physdev-in {BRIDGE6_VETH_PREFIX}{g:x}+ {} -j {}",
                comment("firewall6: port bucket group"),
                port_group(g)
            )
        }));
        v.push(format!(
            "-A {ANTISPOOF_CHAIN} {} -j {PORT_OTHER}",
            comment("firewall6: other port names")
        ));
        v
    }

    /// CNI6-PX-g: one rule per port bucket of the group.
    pub fn port_group_rules(g: usize) -> Vec<String> {
        let chain = port_group(g);
        (g * GROUPS..(g + 1) * GROUPS)
            .map(|b| {
                format!(
                    "-A {chain} -m physdev --physdev-in {BRIDGE6_VETH_PREFIX}{b:02x}+ {} -j {}",
                    comment("firewall6: port bucket"),
                    port_bucket(b)
                )
            })
            .collect()
    }

    /// CNI6-INGRESS: multicast returns at once (no pod policy matches a
    /// multicast destination: without this rule it would walk the dispatch
    /// and a bucket for nothing, once per flooded copy), then one rule per
    /// address group (the high nibble of the low byte, a non-contiguous
    /// mask). Goto, not jump: a packet that finds no pod in its bucket is
    /// done with CNI6-INGRESS, as the buckets are disjoint.
    pub fn ingress_rules() -> Vec<String> {
        let mut v = vec![format!(
            "-A {INGRESS_CHAIN} -d {MULTICAST} {} -j RETURN",
            comment("firewall6: no pod policy for multicast")
        )];
        v.extend((0..GROUPS).map(|g| {
            format!(
                "-A {INGRESS_CHAIN} -d {}/::f0 {} -g {}",
                Ipv6Addr::from((g << 4) as u128),
                comment("firewall6: address bucket group"),
                addr_group(g)
            )
        }));
        v
    }

    /// CNI6-DX-g: one rule per address bucket of the group (the low byte).
    pub fn addr_group_rules(g: usize) -> Vec<String> {
        let chain = addr_group(g);
        (g * GROUPS..(g + 1) * GROUPS)
            .map(|b| {
                format!(
                    "-A {chain} -d {}/::ff {} -g {}",
                    Ipv6Addr::from(b as u128),
                    comment("firewall6: address bucket"),
                    addr_bucket(b)
                )
            })
            .collect()
    }

    /// Every group chain with its rules, port groups first.
    pub fn group_chains() -> Vec<(String, Vec<String>)> {
        let mut v: Vec<(String, Vec<String>)> = (0..GROUPS)
            .map(|g| (port_group(g), Self::port_group_rules(g)))
            .collect();
        v.extend((0..GROUPS).map(|g| (addr_group(g), Self::addr_group_rules(g))));
        v
    }

    /// Every bucket chain name.
    pub fn bucket_chains() -> Vec<String> {
        let mut v: Vec<String> = (0..BUCKETS).map(port_bucket).collect();
        v.push(PORT_OTHER.to_string());
        v.extend((0..BUCKETS).map(addr_bucket));
        v
    }

    pub fn from_pod_rules() -> Vec<String> {
        vec![
            crate::fastpath::from_pod_established(),
            format!(
                "-A {FROM_POD_CHAIN} {} -j {INGRESS_CHAIN}",
                comment("firewall6: policy of a destination pod applies")
            ),
            format!(
                "-A {FROM_POD_CHAIN} {} -j ACCEPT",
                comment("firewall6: pods may connect out")
            ),
        ]
    }

    /// `CNI6-POL-` + 12 hex digits of SHA-256 over the network name and
    /// the policy: a config edit gets a fresh chain, pods added before keep
    /// the one they were made with until DEL.
    pub fn policy_chain(&self) -> String {
        let c = self.conf;
        let mut h = Sha256::new();
        h.update(self.network.as_bytes());
        h.update([0]);
        h.update(c.ingress.as_str().as_bytes());
        for p in &c.cluster_prefixes {
            h.update(format!("|{p}").as_bytes());
        }
        h.update([0]);
        for p in &c.allow_ports {
            h.update(format!("|{p}").as_bytes());
        }
        if !c.cluster_interfaces.is_empty() {
            h.update([0]);
            for i in self.inside_interfaces() {
                h.update(format!("|{i}").as_bytes());
            }
        }
        format!("{POLICY_PREFIX}{}", &hex(&h.finalize())[..12])
    }

    /// With `clusterInterfaces`: those and the pod's bridge, where a
    /// cluster source may arrive from; empty = anywhere.
    pub fn inside_interfaces(&self) -> Vec<String> {
        let mut v = self.conf.cluster_interfaces.clone();
        if !v.is_empty() {
            if let Some(b) = self.bridge.filter(|b| !v.iter().any(|i| i == b)) {
                v.push(b.to_string());
            }
        }
        v
    }

    pub fn policy_rules(&self) -> Vec<String> {
        let chain = self.policy_chain();
        let net = self.network;
        let c = |what: &str| comment(&format!("firewall6 net={net} {what}"));
        match self.conf.ingress {
            Ingress::Open => vec![format!("-A {chain} {} -j ACCEPT", c("ingress open"))],
            Ingress::ClusterOnly => {
                let mut v = vec![format!(
                    "-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED {} -j ACCEPT",
                    c("replies")
                )];
                let inside = self.inside_interfaces();
                for p in &self.conf.cluster_prefixes {
                    if inside.is_empty() {
                        v.push(format!(
                            "-A {chain} -s {p} {} -j ACCEPT",
                            c("from the cluster")
                        ));
                    }
                    for i in &inside {
                        v.push(format!(
                            "-A {chain} -s {p} -i {i} {} -j ACCEPT",
                            c("from the cluster")
                        ));
                    }
                }
                for p in &self.conf.allow_ports {
                    let proto = p.protocol.as_str();
                    let port = if p.first == p.last {
                        p.first.to_string()
                    } else {
                        format!("{}:{}", p.first, p.last)
                    };
                    v.push(format!(
                        "-A {chain} -p {proto} -m {proto} --dport {port} {} -j ACCEPT",
                        c("allowed port")
                    ));
                }
                v.push(format!("-A {chain} {} -j DROP", c("cluster-only")));
                v
            }
        }
    }
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

/// The built-in chains whose traffic from a pod bridge is source-checked
/// first: everything a pod sends is either for the node or forwarded.
pub const SRC_HOOKS: [&str; 2] = ["INPUT", FORWARD];

/// `hook` (INPUT or FORWARD): traffic entering from `bridge` goes to
/// [`SRC_CHAIN`] first.
pub fn src_jump(hook: &str, bridge: &str) -> String {
    format!(
        "-A {hook} -i {bridge} {} -j {SRC_CHAIN}",
        comment(&format!("firewall6: sources of the pods of {bridge}"))
    )
}

/// Filter CNI6-PODS: traffic from `bridge` (its source checked) is a pod's.
pub fn pods_jump(bridge: &str) -> String {
    format!(
        "-A {PODS_CHAIN} -i {bridge} {} -g {FROM_POD_CHAIN}",
        comment(&format!("firewall6: pods of {bridge}"))
    )
}

/// [`SRC_CHAIN`]: a DAD probe may come from `::`; forbidden ICMPv6 goes to
/// [`SRC_ICMP_CHAIN`]; then the dispatch by the source's low byte.
pub fn src_rules() -> Vec<String> {
    let mut v = vec![
        format!(
            "-A {SRC_CHAIN} -s ::/128 -p ipv6-icmp -m icmp6 --icmpv6-type 135 {} -j RETURN",
            comment("firewall6: duplicate address detection")
        ),
        format!(
            "-A {SRC_CHAIN} -p ipv6-icmp {} -j {SRC_ICMP_CHAIN}",
            comment("firewall6: ICMPv6 pods may not send")
        ),
    ];
    v.extend((0..GROUPS).map(|g| {
        format!(
            "-A {SRC_CHAIN} -s {}/::f0 {} -g {}",
            Ipv6Addr::from((g << 4) as u128),
            comment("firewall6: source bucket group"),
            src_group(g)
        )
    }));
    v
}

/// [`SRC_ICMP_CHAIN`]: MLD (no querier behind a node bridge), router
/// advertisements and redirects (RA guard) from pods are dropped.
pub fn src_icmp_rules() -> Vec<String> {
    POD_ICMP_DROPPED
        .iter()
        .map(|t| format!("-A {SRC_ICMP_CHAIN} -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j DROP"))
        .collect()
}

/// `CNI6-SX-g`: one rule per source bucket of the group.
pub fn src_group_rules(g: usize) -> Vec<String> {
    let chain = src_group(g);
    (g * GROUPS..(g + 1) * GROUPS)
        .map(|b| {
            format!(
                "-A {chain} -s {}/::ff {} -g {}",
                Ipv6Addr::from(b as u128),
                comment("firewall6: source bucket"),
                src_bucket(b)
            )
        })
        .collect()
}

/// The last rule of every source bucket.
pub fn src_bucket_drop(bucket: &str) -> String {
    format!(
        "-A {bucket} {} -j DROP",
        comment("firewall6: not a source of the sending pod")
    )
}

/// `-C` lines a pod's checked batch carries for its bridge: the jumps and
/// the first rule of [`SRC_CHAIN`] (the DROP of each bucket the pod uses is
/// checked with its rules).
pub fn src_presence_checks(bridge: &str) -> Vec<String> {
    let mut v: Vec<String> = SRC_HOOKS
        .iter()
        .map(|h| check_of(&src_jump(h, bridge)))
        .collect();
    v.push(check_of(&src_rules()[0]));
    v
}

/// Lines that make the source check whole for `bridge`, from a full
/// `ip6tables -S` listing of the filter table. Buckets are never flushed
/// (they hold pods' rules): a missing one is made with its DROP, one
/// without its DROP gets it appended; dispatch chains are rewritten when
/// altered. The jumps lead INPUT and FORWARD: one behind the FORWARD jump
/// to CNI6-FORWARD (or about to be behind one the skeleton's repair puts
/// first, `forward_jump_inserted`) is moved back to the top.
pub fn src_repair(listing: &[String], bridge: &str, forward_jump_inserted: bool) -> Vec<String> {
    let chains: BTreeSet<&str> = listing
        .iter()
        .filter_map(|l| l.strip_prefix("-N "))
        .collect();
    let rules_of = |chain: &str| -> Option<Vec<String>> {
        if !SRC_HOOKS.contains(&chain) && !chains.contains(chain) {
            return None;
        }
        let prefix = format!("-A {chain} ");
        Some(
            listing
                .iter()
                .filter(|l| l.starts_with(&prefix))
                .cloned()
                .collect(),
        )
    };
    let mut decl = Vec::new();
    let mut rules = Vec::new();
    for b in (0..BUCKETS).map(src_bucket) {
        let drop = src_bucket_drop(&b);
        match rules_of(&b) {
            None => {
                decl.push(format!(":{b} - [0:0]"));
                rules.push(drop);
            }
            Some(have) if !have.contains(&drop) => rules.push(drop),
            Some(_) => {}
        }
    }
    let mut wanted: Vec<(String, Vec<String>)> = (0..GROUPS)
        .map(|g| (src_group(g), src_group_rules(g)))
        .collect();
    wanted.push((SRC_ICMP_CHAIN.to_string(), src_icmp_rules()));
    wanted.push((SRC_CHAIN.to_string(), src_rules()));
    for (name, want) in wanted {
        if rules_of(&name).as_deref() != Some(&want[..]) {
            decl.push(format!(":{name} - [0:0]"));
            rules.extend(want);
        }
    }
    for hook in SRC_HOOKS {
        let have = rules_of(hook).unwrap_or_default();
        let jump = src_jump(hook, bridge);
        let at = have.iter().position(|r| *r == jump);
        let behind = hook == FORWARD
            && (forward_jump_inserted
                || at.is_some_and(|i| {
                    have.iter()
                        .position(|r| *r == Skeleton::forward_jump())
                        .is_some_and(|f| f < i)
                }));
        if at.is_some() && behind {
            rules.push(delete_of(&jump));
        }
        if at.is_none() || behind {
            rules.push(insert_first(&jump));
        }
    }
    decl.extend(rules);
    decl
}

/// Source buckets: they hold pods' rules (what DEL, GC and CHECK search).
pub fn is_src_bucket(name: &str) -> bool {
    name.starts_with(SRC_BUCKET_PREFIX)
}

/// The chains `rules` (lines `-A CHAIN …`) live in, each once, in order.
pub fn chains_of(rules: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rules {
        if let Some(c) = parse_rule(r).map(|r| r.chain.to_string()) {
            if !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

/// The live state of the skeleton chains: `None` = chain missing.
#[derive(Debug, Clone, Default)]
pub struct SkeletonState {
    pub forward: Vec<String>,
    pub cni6_forward: Option<Vec<String>>,
    pub antispoof: Option<Vec<String>>,
    pub ingress: Option<Vec<String>>,
    pub from_pod: Option<Vec<String>>,
    /// CNI6-PODS (its per-bridge rules are never rewritten).
    pub pods: Option<Vec<String>>,
    pub policy: Option<Vec<String>>,
    /// The group chains read (`CNI6-PX-g`, `CNI6-DX-g`): `None` = missing.
    /// A full listing holds all 32; CHECK reads only the pod's. Groups not
    /// in the map are not judged.
    pub groups: BTreeMap<String, Option<Vec<String>>>,
    pub admin_exists: bool,
    /// Every user chain of the table, when read from a full listing. When
    /// `None`, bucket chains count as present if the dispatch rules are
    /// intact (a rule cannot jump to a missing chain).
    pub chains: Option<BTreeSet<String>>,
}

impl SkeletonState {
    /// From a full `ip6tables -S` of the filter table.
    pub fn from_listing(lines: &[String], admin_chain: &str, policy_chain: &str) -> Self {
        let chains: BTreeSet<String> = lines
            .iter()
            .filter_map(|l| l.strip_prefix("-N "))
            .map(str::to_string)
            .collect();
        let rules_of = |chain: &str| -> Option<Vec<String>> {
            if chain != FORWARD && !chains.contains(chain) {
                return None;
            }
            let prefix = format!("-A {chain} ");
            Some(
                lines
                    .iter()
                    .filter(|l| l.starts_with(&prefix))
                    .cloned()
                    .collect(),
            )
        };
        SkeletonState {
            forward: rules_of(FORWARD).unwrap_or_default(),
            cni6_forward: rules_of(FORWARD_CHAIN),
            antispoof: rules_of(ANTISPOOF_CHAIN),
            ingress: rules_of(INGRESS_CHAIN),
            from_pod: rules_of(FROM_POD_CHAIN),
            pods: rules_of(PODS_CHAIN),
            policy: rules_of(policy_chain),
            groups: Skeleton::group_chains()
                .into_iter()
                .map(|(g, _)| {
                    let r = rules_of(&g);
                    (g, r)
                })
                .collect(),
            admin_exists: chains.contains(admin_chain),
            chains: Some(chains),
        }
    }
}

impl Skeleton<'_> {
    /// What is wrong with the skeleton, one sentence per defect; empty =
    /// intact. Used by CHECK and to decide whether ADD must repair.
    pub fn defects(&self, s: &SkeletonState) -> Vec<String> {
        let mut out = Vec::new();
        if !s.forward.contains(&Self::forward_jump()) {
            out.push(format!("FORWARD lacks the jump to {FORWARD_CHAIN}"));
        }
        match &s.cni6_forward {
            None => out.push(format!("chain {FORWARD_CHAIN} is missing")),
            Some(rules) => {
                let admin = rules.iter().position(|r| *r == self.admin_jump());
                if admin.is_none() {
                    out.push(format!(
                        "{FORWARD_CHAIN} lacks the jump to the admin chain {}",
                        self.conf.admin_chain
                    ));
                }
                let mut last = admin;
                for r in Self::forward_rules() {
                    match rules.iter().position(|x| *x == r) {
                        None => out.push(format!("{FORWARD_CHAIN} lacks rule `{r}`")),
                        Some(i) if last.is_some_and(|l| i < l) => {
                            out.push(format!("{FORWARD_CHAIN} has rule `{r}` out of order"))
                        }
                        Some(i) => last = Some(i),
                    }
                }
            }
        }
        if !s.admin_exists {
            out.push(format!("admin chain {} is missing", self.conf.admin_chain));
        }
        // The flat dispatch of earlier versions jumps straight from the
        // dispatch chains to the buckets; the next ADD converts it.
        let flat = |rules: &Option<Vec<String>>| {
            rules.as_ref().is_some_and(|r| {
                r.iter().any(|l| {
                    l.ends_with(&format!(" -j {}", port_bucket(0)))
                        || l.ends_with(&format!(" -j {}", addr_bucket(0)))
                })
            })
        };
        for (name, have, want) in [
            (ANTISPOOF_CHAIN, &s.antispoof, Self::antispoof_rules()),
            (INGRESS_CHAIN, &s.ingress, Self::ingress_rules()),
        ] {
            if flat(have) {
                out.push(format!(
                    "dispatch chain {name} has the flat layout of an earlier firewall6 (the next ADD converts it)"
                ));
            } else if have.as_deref() != Some(&want[..]) {
                out.push(format!("dispatch chain {name} is missing or altered"));
            }
        }
        for (name, want) in Self::group_chains() {
            if let Some(have) = s.groups.get(&name) {
                if have.as_deref() != Some(&want[..]) {
                    out.push(format!("dispatch chain {name} is missing or altered"));
                }
            }
        }
        if let Some(chains) = &s.chains {
            let missing: Vec<String> = Self::bucket_chains()
                .into_iter()
                .filter(|c| !chains.contains(c))
                .collect();
            if !missing.is_empty() {
                out.push(format!("bucket chains missing: {}", missing.join(", ")));
            }
        }
        if s.from_pod.as_deref() != Some(&Self::from_pod_rules()[..]) {
            out.push(format!("chain {FROM_POD_CHAIN} is missing or altered"));
        }
        match (&s.pods, self.bridge) {
            (None, _) => out.push(format!("chain {PODS_CHAIN} is missing")),
            (Some(have), Some(b)) if !have.contains(&pods_jump(b)) => {
                out.push(format!("{PODS_CHAIN} lacks the rule for bridge {b}"))
            }
            _ => {}
        }
        if s.policy.as_deref() != Some(&self.policy_rules()[..]) {
            out.push(format!(
                "policy chain {} is missing or altered",
                self.policy_chain()
            ));
        }
        out
    }

    /// `-C` lines that make a restore batch fail (atomically, nothing
    /// applied) unless the skeleton rules ADD relies on are present: the
    /// FORWARD jump, the admin jump and dispatch rules of CNI6-FORWARD,
    /// the multicast rule of CNI6-INGRESS and the first group rule of
    /// CNI6-ANTISPOOF
    /// (absent from the flat dispatch of earlier versions, so an old node
    /// takes the repair path, which converts it), FROM-POD and the policy
    /// chain (a rule cannot jump to a missing chain, so these also prove
    /// the dispatch and admin chains exist). Presence only: extra or
    /// reordered rules are CHECK's to report.
    pub fn presence_checks(&self) -> Vec<String> {
        let mut all = vec![Self::forward_jump(), self.admin_jump()];
        all.extend(Self::forward_rules());
        all.push(Self::ingress_rules().swap_remove(0));
        all.push(Self::antispoof_rules().swap_remove(0));
        all.extend(Self::from_pod_rules());
        if let Some(b) = self.bridge {
            all.push(pods_jump(b));
        }
        all.extend(self.policy_rules());
        all.iter().map(|r| check_of(r)).collect()
    }

    /// The batch lines that make the skeleton whole from `s`, which must
    /// come from a full listing (`chains` known). Bucket chains that exist
    /// hold pod rules and the admin chain is the operator's: neither is
    /// ever declared when present (a declaration flushes). The dispatch
    /// chains, FROM-POD and the policy chain hold only derived rules and
    /// are rewritten when altered. The group chains count as altered when
    /// absent from `s.groups` too: a flat dispatch of an earlier version
    /// becomes the tree in this one batch, its buckets (and the pod rules
    /// in them) untouched.
    pub fn repair(&self, s: &SkeletonState) -> Vec<String> {
        let chains = s.chains.clone().unwrap_or_default();
        let mut decl = Vec::new();
        let mut rules = Vec::new();
        let declare = |d: &mut Vec<String>, name: &str| d.push(format!(":{name} - [0:0]"));
        if !s.admin_exists {
            declare(&mut decl, &self.conf.admin_chain);
        }
        for c in Self::bucket_chains() {
            if !chains.contains(&c) {
                declare(&mut decl, &c);
            }
        }
        // Groups before the dispatch chains that jump to them (rules are
        // applied in order within the batch).
        for (name, want) in Self::group_chains() {
            let have = s.groups.get(&name).cloned().flatten();
            if have.as_deref() != Some(&want[..]) {
                declare(&mut decl, &name);
                rules.extend(want);
            }
        }
        for (name, have, want) in [
            (ANTISPOOF_CHAIN, &s.antispoof, Self::antispoof_rules()),
            (INGRESS_CHAIN, &s.ingress, Self::ingress_rules()),
            (FROM_POD_CHAIN, &s.from_pod, Self::from_pod_rules()),
            (self.policy_chain().as_str(), &s.policy, self.policy_rules()),
        ] {
            if have.as_deref() != Some(&want[..]) {
                declare(&mut decl, name);
                rules.extend(want);
            }
        }
        match &s.pods {
            None => {
                declare(&mut decl, PODS_CHAIN);
                rules.extend(self.bridge.map(pods_jump));
            }
            Some(have) => {
                if let Some(j) = self.bridge.map(pods_jump).filter(|j| !have.contains(j)) {
                    rules.push(j);
                }
            }
        }
        // CNI6-FORWARD: every network's admin jump first, then the dispatch
        // rules in order; rewritten whole when one is missing or out of
        // order (an earlier release had no CNI6-PODS jump).
        let fixed = Self::forward_rules();
        let in_order = s.cni6_forward.as_ref().is_some_and(|have| {
            let tail: Vec<&String> = have.iter().filter(|r| fixed.contains(r)).collect();
            tail.len() == fixed.len() && tail.iter().zip(&fixed).all(|(a, b)| *a == b)
        });
        let has_admin = s
            .cni6_forward
            .as_ref()
            .is_some_and(|have| have.contains(&self.admin_jump()));
        if in_order && !has_admin {
            rules.push(insert_first(&self.admin_jump()));
        } else if !in_order {
            declare(&mut decl, FORWARD_CHAIN);
            let admin_comment = comment("firewall6: operator overrides first");
            let mut admins: Vec<String> = s
                .cni6_forward
                .iter()
                .flatten()
                .filter(|r| r.contains(&admin_comment))
                .cloned()
                .collect();
            if !admins.contains(&self.admin_jump()) {
                admins.push(self.admin_jump());
            }
            rules.extend(admins);
            rules.extend(fixed);
        }
        if !s.forward.contains(&Self::forward_jump()) {
            rules.push(insert_first(&Self::forward_jump()));
        }
        decl.extend(rules);
        decl
    }
}

/// The dispatch rules of the release before the dispatch tree (issue 7),
/// as that release wrote them: CNI6-ANTISPOOF with 256 `--physdev-in
/// c6XX+` rules and a catch-all, CNI6-INGRESS with 256 `-d ::XX/::ff`
/// rules, each jumping straight to its bucket. Nodes set up by it hold
/// these until the next ADD's repair converts them ([`Skeleton::repair`]);
/// the upgrade tests start from this text (the conformance fixture's
/// ruleset is checked against it).
pub fn flat_dispatch_of_earlier_release() -> Vec<String> {
    let mut v: Vec<String> = (0..BUCKETS)
        .map(|b| {
            format!(
                "-A {ANTISPOOF_CHAIN} -m physdev --physdev-in {BRIDGE6_VETH_PREFIX}{b:02x}+ {} -j {}",
                comment("firewall6: port bucket"),
                port_bucket(b)
            )
        })
        .collect();
    v.push(format!(
        "-A {ANTISPOOF_CHAIN} {} -j {PORT_OTHER}",
        comment("firewall6: other port names")
    ));
    v.extend((0..BUCKETS).map(|b| {
        format!(
            "-A {INGRESS_CHAIN} -d {}/::ff {} -j {}",
            Ipv6Addr::from(b as u128),
            comment("firewall6: address bucket"),
            addr_bucket(b)
        )
    }));
    v
}

/// The jump in raw PREROUTING that sends ICMPv6 entering from a bridge6
/// port (`c6…`) to [`MLD_CHAIN`], written as `ip6tables -S` prints it.
pub fn mld_jump() -> String {
    format!(
        "-A {RAW_PREROUTING} -p ipv6-icmp -m physdev --physdev-in {BRIDGE6_VETH_PREFIX}+ {} -j {MLD_CHAIN}",
        comment("firewall6: MLD of cni6 pods stays on their port")
    )
}

/// [`MLD_CHAIN`]: every MLD message a pod sends is dropped where it
/// enters the bridge, before the bridge copies it to every other port.
/// A node bridge has no multicast router behind it, no querier and no
/// snooping that forwards by membership (the bridge floods all multicast),
/// so a pod's reports inform no one; but each of them, sent under RTNL by
/// the pod's address configuration, went through ip6tables once per
/// port: at 1000 pods 3.6-4.1 ms of every ADD (issue 7). A pod's query
/// would make every other pod answer: dropped too.
pub fn mld_rules() -> Vec<String> {
    MLD_TYPES
        .iter()
        .map(|t| format!("-A {MLD_CHAIN} -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j DROP"))
        .collect()
}

/// The `-C` line (raw table) ADD's batch carries for the MLD drop: the
/// jump, which also proves [`MLD_CHAIN`] exists. Its four rules are not
/// checked on every ADD (+0.13 ms of ip6tables-restore at 10 pods: the
/// icmp6 extension and four more comparisons); an altered chain is
/// rewritten whenever the repair path runs.
pub fn mld_presence_checks() -> Vec<String> {
    vec![check_of(&mld_jump())]
}

/// Raw-table batch lines that make the MLD drop whole, from the listings
/// of raw PREROUTING and of [`MLD_CHAIN`] (`None`: missing). Empty when
/// nothing is to be done.
pub fn mld_repair(prerouting: &[String], chain: Option<&[String]>) -> Vec<String> {
    let mut out = Vec::new();
    let want = mld_rules();
    if chain != Some(&want[..]) {
        out.push(format!(":{MLD_CHAIN} - [0:0]"));
        out.extend(want);
    }
    if !prerouting.contains(&mld_jump()) {
        out.push(mld_jump());
    }
    out
}

/// `-A CHAIN rest` → `-I CHAIN 1 rest`.
fn insert_first(rule: &str) -> String {
    let rest = rule.strip_prefix("-A ").expect("rules start with -A");
    let (chain, spec) = rest.split_once(' ').expect("rule has a spec");
    format!("-I {chain} 1 {spec}")
}

/// `-A CHAIN rest` → `-C CHAIN rest`.
pub fn check_of(rule: &str) -> String {
    format!("-C {}", rule.strip_prefix("-A ").unwrap_or(rule))
}

/// `-A CHAIN rest` → `-D CHAIN rest`.
pub fn delete_of(rule: &str) -> String {
    format!("-D {}", rule.strip_prefix("-A ").unwrap_or(rule))
}

/// One `ip6tables-restore --noflush` batch for the filter table.
pub fn batch(lines: &[String]) -> String {
    table_batch("filter", lines)
}

/// One `ip6tables-restore --noflush` section for `table`.
pub fn table_batch(table: &str, lines: &[String]) -> String {
    let mut s = format!("*{table}\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("COMMIT\n");
    s
}

/// One `-A` line of an `ip6tables -S` listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRule<'a> {
    pub chain: &'a str,
    pub comment: Option<String>,
    pub line: &'a str,
}

/// Parse an `-A` line; `-P`/`-N` lines and anything else give `None`.
pub fn parse_rule(line: &str) -> Option<ListedRule<'_>> {
    let rest = line.strip_prefix("-A ")?;
    let chain = rest.split(' ').next()?;
    Some(ListedRule {
        chain,
        comment: comment_of(line),
        line,
    })
}

/// The `--comment` value as ip6tables prints it: quoted with `\"` escapes
/// when it holds spaces or quotes, bare otherwise.
fn comment_of(line: &str) -> Option<String> {
    let at = line.find("--comment ")? + "--comment ".len();
    let rest = &line[at..];
    if let Some(q) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    } else {
        Some(rest.split(' ').next()?.to_string())
    }
}

/// Lines of a listing that carry exactly `tag`.
pub fn rules_with_tag<'a>(listing: &'a [String], tag: &str) -> Vec<&'a str> {
    listing
        .iter()
        .filter_map(|l| parse_rule(l))
        .filter(|r| r.comment.as_deref() == Some(tag))
        .map(|r| r.line)
        .collect()
}

/// What CHECK finds wrong with one pod's rules, given the listing of each
/// chain they live in (a chain absent from `listings` counts as empty);
/// empty = intact.
pub fn pod_defects(expected: &[String], listings: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut out = Vec::new();
    // Within the port bucket the pod's DROP must come after its sources.
    let mut last_in: BTreeMap<String, usize> = BTreeMap::new();
    for r in expected {
        let Some(chain) = parse_rule(r).map(|p| p.chain.to_string()) else {
            continue;
        };
        let have = listings.get(&chain).map(Vec::as_slice).unwrap_or(&[]);
        match have.iter().position(|x| x == r) {
            None => out.push(format!("{chain} lacks rule `{r}`")),
            Some(i) => {
                if last_in.get(&chain).is_some_and(|l| i < *l) {
                    out.push(format!("{chain} has rule `{r}` out of order"));
                }
                last_in.insert(chain, i);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FirewallConf;
    use serde_json::json;

    fn conf(v: serde_json::Value) -> FirewallConf {
        FirewallConf::from_raw(&v).unwrap()
    }

    fn att() -> Attachment<'static> {
        Attachment {
            network: "cluster",
            container_id: "c0ffee",
            ifname: "eth0",
        }
    }

    fn bridged_pod() -> Pod {
        Pod {
            addresses: vec![
                "fd00::1:10".parse().unwrap(),
                "2001:db8::1:10".parse().unwrap(),
            ],
            host_side: Some(HostSide::BridgePort("veth1234".into())),
            bridge: Some("br0".into()),
            mac: Some([0x02, 0xc6, 0, 0, 0x12, 0x34]),
        }
    }

    #[test]
    fn tag_names_network_ifname_and_id() {
        assert_eq!(att().tag(), "firewall6 net=cluster if=eth0 id=c0ffee");
        assert_eq!(tag_network(&att().tag()), Some("cluster"));
        let odd = Attachment {
            ifname: "e\"t h%",
            ..att()
        };
        assert_eq!(odd.tag(), "firewall6 net=cluster if=e%22t%20h%25 id=c0ffee");
        let long_id = "a".repeat(255);
        let long = Attachment {
            container_id: &long_id,
            ..att()
        };
        let t = long.tag();
        assert!(t.len() <= 255, "{}", t.len());
        assert!(t.contains(" idsha="));
        assert_eq!(tag_network(&t), Some("cluster"));
        assert_eq!(
            tag_network("firewall6: link-local sources are not checked"),
            None
        );
        assert_eq!(tag_network("firewall6 net=x replies"), None);
    }

    #[test]
    fn cluster_only_policy_text() {
        let c = conf(json!({
            "clusterPrefixes": ["fd8c:1f0a:77e3::/64"],
            "allowPorts": [{"port": 443, "protocol": "tcp"}, {"port": "8000-8080", "protocol": "udp"}, {"port": 9, "protocol": "sctp"}]
        }));
        let s = Skeleton {
            network: "cluster",
            conf: &c,
            bridge: Some("br0"),
        };
        let chain = s.policy_chain();
        assert!(
            chain.starts_with("CNI6-POL-") && chain.len() == 21,
            "{chain}"
        );
        assert_eq!(
            s.policy_rules(),
            vec![
                format!("-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"firewall6 net=cluster replies\" -j ACCEPT"),
                format!("-A {chain} -s fd8c:1f0a:77e3::/64 -m comment --comment \"firewall6 net=cluster from the cluster\" -j ACCEPT"),
                format!("-A {chain} -p tcp -m tcp --dport 443 -m comment --comment \"firewall6 net=cluster allowed port\" -j ACCEPT"),
                format!("-A {chain} -p udp -m udp --dport 8000:8080 -m comment --comment \"firewall6 net=cluster allowed port\" -j ACCEPT"),
                format!("-A {chain} -p sctp -m sctp --dport 9 -m comment --comment \"firewall6 net=cluster allowed port\" -j ACCEPT"),
                format!("-A {chain} -m comment --comment \"firewall6 net=cluster cluster-only\" -j DROP"),
            ]
        );
    }

    #[test]
    fn open_policy_and_chain_names_differ() {
        let open = conf(json!({"ingress": "open"}));
        let closed = conf(json!({}));
        let a = Skeleton {
            network: "n",
            conf: &open,
            bridge: Some("br0"),
        };
        let b = Skeleton {
            network: "n",
            conf: &closed,
            bridge: Some("br0"),
        };
        let c = Skeleton {
            network: "m",
            conf: &open,
            bridge: Some("br0"),
        };
        assert_eq!(
            a.policy_rules(),
            vec![format!(
                "-A {} -m comment --comment \"firewall6 net=n ingress open\" -j ACCEPT",
                a.policy_chain()
            )]
        );
        assert_ne!(a.policy_chain(), b.policy_chain());
        assert_ne!(a.policy_chain(), c.policy_chain());
        // Stable across runs and versions (names live in the kernel).
        assert_eq!(
            a.policy_chain(),
            Skeleton {
                network: "n",
                conf: &open,
                bridge: Some("br0"),
            }
            .policy_chain()
        );
    }

    #[test]
    fn pod_rules_bridged_and_routed() {
        let tag = att().tag();
        let r = pod_rules(&tag, &bridged_pod(), "CNI6-POL-abc");
        let c = "-m comment --comment \"firewall6 net=cluster if=eth0 id=c0ffee\"";
        // A bridged pod: only the inbound policy here; its sources are
        // bound to its MAC in the source buckets, the EUI-64 link-local too.
        assert_eq!(
            r,
            vec![
                format!("-A CNI6-D-10 -d fd00::1:10/128 {c} -j CNI6-POL-abc"),
                format!("-A CNI6-D-10 -d 2001:db8::1:10/128 {c} -j CNI6-POL-abc"),
            ]
        );
        let m = "-m mac --mac-source 02:c6:00:00:12:34";
        assert_eq!(
            pod_source_rules(&tag, &bridged_pod()),
            vec![
                format!("-A CNI6-S-10 -s fd00::1:10/128 {m} {c} -j RETURN"),
                format!("-A CNI6-S-10 -s 2001:db8::1:10/128 {m} {c} -j RETURN"),
                format!("-A CNI6-S-34 -s fe80::c6:ff:fe00:1234/128 {m} {c} -j RETURN"),
            ]
        );
        assert_eq!(
            insert_lines(&pod_source_rules(&tag, &bridged_pod()))[0],
            format!("-I CNI6-S-10 1 -s fd00::1:10/128 {m} {c} -j RETURN")
        );
        let routed = Pod {
            host_side: Some(HostSide::Routed("c63fveth9".into())),
            ..bridged_pod()
        };
        let r = pod_rules(&tag, &routed, "P");
        assert_eq!(
            r[0],
            format!("-A CNI6-P-OTHER -s fd00::1:10/128 -i c63fveth9 {c} -g CNI6-FROM-POD")
        );
        assert_eq!(r[2], format!("-A CNI6-P-OTHER -i c63fveth9 {c} -j DROP"));
        assert!(pod_source_rules(&tag, &routed).is_empty());
        let none = Pod {
            host_side: None,
            ..bridged_pod()
        };
        assert_eq!(pod_rules(&tag, &none, "P").len(), 2);
    }

    #[test]
    fn buckets() {
        assert_eq!(
            port_bucket_of(&HostSide::BridgePort("c6ff0000000000a".into())),
            "CNI6-P-ff"
        );
        assert_eq!(
            port_bucket_of(&HostSide::BridgePort("c6FF0000000000a".into())),
            "CNI6-P-OTHER"
        );
        assert_eq!(
            port_bucket_of(&HostSide::BridgePort("c6".into())),
            "CNI6-P-OTHER"
        );
        assert_eq!(
            port_bucket_of(&HostSide::BridgePort("c6x1".into())),
            "CNI6-P-OTHER"
        );
        assert_eq!(
            addr_bucket_of(&"2001:db8::1:0:ab".parse().unwrap()),
            "CNI6-D-ab"
        );
        assert_eq!(addr_bucket_of(&"fd00::100".parse().unwrap()), "CNI6-D-00");
        assert_eq!(Skeleton::bucket_chains().len(), 513);
        assert!(is_internal_chain("CNI6-P-OTHER") && is_bucket_chain("CNI6-D-00"));
        assert!(!is_bucket_chain("CNI6-FORWARD"));
    }

    /// The dispatch tree: 16 group rules (+ catch-all / multicast) in the
    /// dispatch chains, 16 bucket rules in each group, every bucket reached
    /// from exactly one group rule of its own high digit.
    #[test]
    fn dispatch_tree() {
        let a = Skeleton::antispoof_rules();
        assert_eq!(a.len(), 18);
        assert_eq!(a[1 + 0xa], "-A CNI6-ANTISPOOF -m physdev --physdev-in c6a+ -m comment --comment \"firewall6: port bucket group\" -j CNI6-PX-a");
        assert_eq!(
            a[17],
            "-A CNI6-ANTISPOOF -m comment --comment \"firewall6: other port names\" -j CNI6-P-OTHER"
        );
        let pa = Skeleton::port_group_rules(0xa);
        assert_eq!(pa.len(), 16);
        assert_eq!(pa[0xb], "-A CNI6-PX-a -m physdev --physdev-in c6ab+ -m comment --comment \"firewall6: port bucket\" -j CNI6-P-ab");
        let i = Skeleton::ingress_rules();
        assert_eq!(i.len(), 17);
        assert_eq!(i[0], "-A CNI6-INGRESS -d ff00::/8 -m comment --comment \"firewall6: no pod policy for multicast\" -j RETURN");
        assert_eq!(i[1], "-A CNI6-INGRESS -d ::/::f0 -m comment --comment \"firewall6: address bucket group\" -g CNI6-DX-0");
        assert_eq!(i[1 + 0xa], "-A CNI6-INGRESS -d ::a0/::f0 -m comment --comment \"firewall6: address bucket group\" -g CNI6-DX-a");
        let da = Skeleton::addr_group_rules(0xa);
        assert_eq!(da[0], "-A CNI6-DX-a -d ::a0/::ff -m comment --comment \"firewall6: address bucket\" -g CNI6-D-a0");
        assert_eq!(da[0xb], "-A CNI6-DX-a -d ::ab/::ff -m comment --comment \"firewall6: address bucket\" -g CNI6-D-ab");
        let groups = Skeleton::group_chains();
        assert_eq!(groups.len(), 32);
        let mut reached: Vec<String> = groups
            .iter()
            .flat_map(|(g, rules)| {
                rules.iter().map(move |r| {
                    let bucket = r.rsplit(' ').next().unwrap().to_string();
                    assert_eq!(group_of_bucket(&bucket).as_deref(), Some(g.as_str()));
                    assert!(r.starts_with(&format!("-A {g} ")));
                    bucket
                })
            })
            .collect();
        reached.push(PORT_OTHER.to_string());
        reached.sort();
        let mut all = Skeleton::bucket_chains();
        all.sort();
        assert_eq!(reached, all);
        assert_eq!(group_of_bucket("CNI6-P-OTHER"), None);
        assert_eq!(group_of_bucket("CNI6-D-0f").as_deref(), Some("CNI6-DX-0"));
        assert_eq!(group_of_bucket("CNI6-P-f0").as_deref(), Some("CNI6-PX-f"));
        for g in ["CNI6-PX-0", "CNI6-DX-f"] {
            assert!(is_internal_chain(g) && !is_bucket_chain(g), "{g}");
        }
        // Names fit iptables' 28 characters.
        assert!(groups.iter().all(|(g, _)| g.len() <= 28));
    }

    #[test]
    fn pod_from_prev_result() {
        let res = CniResult::parse(&json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "br0"},
                {"name": "veth1234"},
                {"name": "eth0", "sandbox": "/var/run/netns/p", "mac": "02:C6:00:00:12:34"}
            ],
            "ips": [
                {"address": "fd00::1:10/96", "interface": 2},
                {"address": "fd00:0:0:1::1/80", "interface": 0},
                {"address": "10.0.0.5/24", "interface": 2},
                {"address": "2001:db8::1:10/96", "interface": 2}
            ]
        }))
        .unwrap();
        assert_eq!(Pod::from_result(&res).unwrap(), bridged_pod());

        let routed = CniResult::parse(&json!({
            "interfaces": [{"name": "veth9"}, {"name": "eth0", "sandbox": "/x"}],
            "ips": [{"address": "fd00::5/64"}]
        }))
        .unwrap();
        let p = Pod::from_result(&routed).unwrap();
        assert_eq!(p.host_side, Some(HostSide::Routed("veth9".into())));
        assert_eq!(p.addresses, vec!["fd00::5".parse::<Ipv6Addr>().unwrap()]);

        let bare = CniResult::parse(&json!({"ips": [{"address": "fd00::5/64"}]})).unwrap();
        assert_eq!(Pod::from_result(&bare).unwrap().host_side, None);

        let evil = CniResult::parse(&json!({
            "interfaces": [{"name": "veth 1"}, {"name": "eth0", "sandbox": "/x"}]
        }))
        .unwrap();
        let e = cni_common::Error::from(Pod::from_result(&evil).unwrap_err());
        assert_eq!(e.code(), 7);
        assert!(e.to_string().contains("prevResult.interfaces[0].name"));
    }

    fn intact_listing(s: &Skeleton) -> Vec<String> {
        let mut lines = vec!["-P FORWARD ACCEPT".to_string()];
        for c in [
            FORWARD_CHAIN,
            ANTISPOOF_CHAIN,
            INGRESS_CHAIN,
            FROM_POD_CHAIN,
            PODS_CHAIN,
            "CNI6-ADMIN",
        ] {
            lines.push(format!("-N {c}"));
        }
        lines.extend(s.bridge.map(pods_jump));
        lines.push(format!("-N {}", s.policy_chain()));
        lines.extend(Skeleton::bucket_chains().iter().map(|c| format!("-N {c}")));
        let groups = Skeleton::group_chains();
        lines.extend(groups.iter().map(|(g, _)| format!("-N {g}")));
        lines.push(Skeleton::forward_jump());
        lines.push(s.admin_jump());
        lines.extend(Skeleton::forward_rules());
        lines.extend(Skeleton::antispoof_rules());
        lines.extend(Skeleton::ingress_rules());
        lines.extend(groups.into_iter().flat_map(|(_, r)| r));
        lines.extend(Skeleton::from_pod_rules());
        lines.extend(s.policy_rules());
        lines
    }

    #[test]
    fn skeleton_repair_from_nothing_and_when_intact() {
        let c = conf(json!({}));
        let s = Skeleton {
            network: "n",
            conf: &c,
            bridge: Some("br0"),
        };
        let empty = SkeletonState::from_listing(
            &["-P FORWARD ACCEPT".to_string()],
            "CNI6-ADMIN",
            &s.policy_chain(),
        );
        let fix = s.repair(&empty);
        assert_eq!(fix[0], ":CNI6-ADMIN - [0:0]");
        assert!(fix.contains(&":CNI6-FORWARD - [0:0]".to_string()));
        assert!(fix.contains(&":CNI6-P-OTHER - [0:0]".to_string()));
        assert!(fix.contains(&":CNI6-D-ff - [0:0]".to_string()));
        assert_eq!(
            fix.last().unwrap(),
            "-I FORWARD 1 -m comment --comment \"firewall6: cni6 pod firewall\" -j CNI6-FORWARD"
        );
        // Declarations come before rules (restore format).
        let first_rule = fix.iter().position(|l| l.starts_with('-')).unwrap();
        assert!(fix[first_rule..].iter().all(|l| l.starts_with('-')));
        assert!(!s.defects(&empty).is_empty());

        let lines = intact_listing(&s);
        let intact = SkeletonState::from_listing(&lines, "CNI6-ADMIN", &s.policy_chain());
        assert!(s.defects(&intact).is_empty(), "{:?}", s.defects(&intact));
        assert!(s.repair(&intact).is_empty());

        // A flushed dispatch chain and a lost bucket: the dispatch chain is
        // rewritten, only the missing bucket declared (the others hold pods).
        let broken: Vec<String> = lines
            .iter()
            .filter(|l| !l.starts_with("-A CNI6-INGRESS ") && *l != "-N CNI6-P-07")
            .cloned()
            .collect();
        let st = SkeletonState::from_listing(&broken, "CNI6-ADMIN", &s.policy_chain());
        assert_eq!(s.defects(&st).len(), 2, "{:?}", s.defects(&st));
        let fix = s.repair(&st);
        let decls: Vec<&String> = fix.iter().filter(|l| l.starts_with(':')).collect();
        assert_eq!(decls, [":CNI6-P-07 - [0:0]", ":CNI6-INGRESS - [0:0]"]);
        assert_eq!(fix.len(), 2 + 17);

        // A flushed group: only it is rewritten.
        let broken: Vec<String> = lines
            .iter()
            .filter(|l| !l.starts_with("-A CNI6-DX-3 "))
            .cloned()
            .collect();
        let st = SkeletonState::from_listing(&broken, "CNI6-ADMIN", &s.policy_chain());
        assert_eq!(
            s.defects(&st),
            ["dispatch chain CNI6-DX-3 is missing or altered"]
        );
        let fix = s.repair(&st);
        assert_eq!(fix[0], ":CNI6-DX-3 - [0:0]");
        assert_eq!(fix[1..], Skeleton::addr_group_rules(3)[..]);

        // Another network's admin chain: ours is inserted first, theirs kept.
        let other = conf(json!({"adminChain": "OTHER-ADMIN"}));
        let o = Skeleton {
            network: "m",
            conf: &other,
            bridge: Some("br0"),
        };
        let st = SkeletonState::from_listing(&lines, "OTHER-ADMIN", &o.policy_chain());
        let fix = o.repair(&st);
        assert!(fix.contains(&":OTHER-ADMIN - [0:0]".to_string()));
        assert!(fix.contains(
            &"-I CNI6-FORWARD 1 -m comment --comment \"firewall6: operator overrides first\" -j OTHER-ADMIN".to_string()
        ));
        assert!(!fix
            .iter()
            .any(|l| l == ":CNI6-FORWARD - [0:0]" || l == ":CNI6-ADMIN - [0:0]"));
    }

    #[test]
    fn flat_layout_of_earlier_version_is_converted_in_one_batch() {
        let c = conf(json!({}));
        let s = Skeleton {
            network: "n",
            conf: &c,
            bridge: Some("br0"),
        };
        let pod = "-A CNI6-P-ab -m physdev --physdev-in c6ab00000000001 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -j DROP".to_string();
        let old: Vec<String> = intact_listing(&s)
            .into_iter()
            .filter(|l| {
                !l.starts_with("-N CNI6-PX-")
                    && !l.starts_with("-N CNI6-DX-")
                    && !l.starts_with("-A CNI6-PX-")
                    && !l.starts_with("-A CNI6-DX-")
                    && !l.starts_with("-A CNI6-ANTISPOOF ")
                    && !l.starts_with("-A CNI6-INGRESS ")
            })
            .chain(flat_dispatch_of_earlier_release())
            .chain([pod])
            .collect();
        let st = SkeletonState::from_listing(&old, "CNI6-ADMIN", &s.policy_chain());
        let d = s.defects(&st);
        assert!(
            d.iter()
                .any(|x| x.contains("CNI6-INGRESS has the flat layout"))
                && d.iter()
                    .any(|x| x.contains("CNI6-ANTISPOOF has the flat layout")),
            "{d:?}"
        );
        // The ADD batch's `-C` lead fails on it: the multicast rule and the
        // first group rule are absent from a flat layout.
        let checks = s.presence_checks();
        let present: BTreeSet<String> = old.iter().map(|l| check_of(l)).collect();
        assert!(checks.iter().any(|c| !present.contains(c)));
        let fix = s.repair(&st);
        let decls: Vec<&String> = fix.iter().filter(|l| l.starts_with(':')).collect();
        assert_eq!(decls.len(), 32 + 2, "{decls:?}");
        assert!(decls.contains(&&":CNI6-ANTISPOOF - [0:0]".to_string()));
        assert!(decls.contains(&&":CNI6-INGRESS - [0:0]".to_string()));
        assert!(!decls
            .iter()
            .any(|d| d.starts_with(":CNI6-P-") || d.starts_with(":CNI6-D-")));
        assert_eq!(fix.len(), 34 + 18 + 17 + 32 * 16);
        // Applying it gives the intact skeleton, the pod's rule untouched.
        let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for l in &old {
            if let Some(r) = parse_rule(l) {
                chains
                    .entry(r.chain.to_string())
                    .or_default()
                    .push(l.clone());
            }
        }
        for l in &fix {
            if let Some(d) = l.strip_prefix(':') {
                chains.insert(d.split(' ').next().unwrap().to_string(), vec![]);
            } else {
                let r = parse_rule(l).expect("repair of a present chain appends only");
                chains.get_mut(r.chain).unwrap().push(l.clone());
            }
        }
        let mut after: Vec<String> = old
            .iter()
            .filter(|l| !l.starts_with("-A "))
            .cloned()
            .collect();
        after.extend(
            Skeleton::group_chains()
                .iter()
                .map(|(g, _)| format!("-N {g}")),
        );
        after.extend(chains.into_values().flatten());
        let st = SkeletonState::from_listing(&after, "CNI6-ADMIN", &s.policy_chain());
        assert!(s.defects(&st).is_empty(), "{:?}", s.defects(&st));
        assert!(after.iter().any(|l| l.contains("id=a")));
    }

    #[test]
    fn listing_parse_and_tag_lookup() {
        let listing: Vec<String> = [
            "-N CNI6-ANTISPOOF",
            "-A CNI6-ANTISPOOF -s fd00::10/128 -m physdev --physdev-in v1 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -g CNI6-FROM-POD",
            "-A CNI6-ANTISPOOF -m physdev --physdev-in v1 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -j DROP",
            "-A CNI6-ANTISPOOF -m physdev --physdev-in v2 -m comment --comment \"firewall6 net=n if=eth0 id=ab\" -j DROP",
            "-A CNI6-ANTISPOOF -m comment --comment \"say \\\"hi\\\"\" -j RETURN",
            "-A CNI6-ANTISPOOF -m comment --comment bare -j RETURN",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(parse_rule(&listing[0]).is_none());
        let r = parse_rule(&listing[4]).unwrap();
        assert_eq!(r.chain, "CNI6-ANTISPOOF");
        assert_eq!(r.comment.as_deref(), Some("say \"hi\""));
        assert_eq!(
            parse_rule(&listing[5]).unwrap().comment.as_deref(),
            Some("bare")
        );
        let found = rules_with_tag(&listing, "firewall6 net=n if=eth0 id=a");
        assert_eq!(found, vec![listing[1].as_str(), listing[2].as_str()]);
        assert_eq!(
            delete_of(found[1]),
            "-D CNI6-ANTISPOOF -m physdev --physdev-in v1 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -j DROP"
        );
        assert_eq!(
            batch(&[delete_of(found[1])]),
            format!("*filter\n{}\nCOMMIT\n", delete_of(found[1]))
        );
    }

    #[test]
    fn pod_defects_finds_missing_and_misordered() {
        let tag = att().tag();
        let routed = Pod {
            host_side: Some(HostSide::Routed("veth1234".into())),
            ..bridged_pod()
        };
        let expected = pod_rules(&tag, &routed, "P");
        let port: Vec<String> = expected[..3].to_vec();
        let addr: Vec<String> = expected[3..].to_vec();
        let lookup = |p: &[String], a: &[String]| {
            let m = BTreeMap::from([
                ("CNI6-P-OTHER".to_string(), p.to_vec()),
                ("CNI6-D-10".to_string(), a.to_vec()),
            ]);
            pod_defects(&expected, &m)
        };
        assert!(lookup(&port, &addr).is_empty());
        let d = lookup(&port, &addr[..1]);
        assert_eq!(d.len(), 1);
        assert!(d[0].contains("2001:db8::1:10/128"));
        let swapped = vec![port[2].clone(), port[0].clone(), port[1].clone()];
        let d = lookup(&swapped, &addr);
        assert!(d.iter().any(|x| x.contains("out of order")), "{d:?}");
    }
}
