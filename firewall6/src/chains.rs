//! The names of the chains firewall6 owns and of its buckets and groups,
//! read by the rule text (crate::rules) and by config validation (a
//! network may not name one of ours as its admin chain).

use std::net::Ipv6Addr;

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
/// Port buckets: `CNI6-P-00` … `CNI6-P-ff`, and [`PORT_OTHER`]. bridge6's
/// host veths are `c6` + 13 hex digits of a hash: the two hex digits after
/// the prefix spread them evenly over the 256 buckets.
pub const PORT_BUCKET_PREFIX: &str = "CNI6-P-";
/// Ports whose name is not bridge6's `c6<hex>`, and routed (`-i`) ports.
pub const PORT_OTHER: &str = "CNI6-P-OTHER";
/// Address buckets: `CNI6-D-00` … `CNI6-D-ff`.
pub const ADDR_BUCKET_PREFIX: &str = "CNI6-D-";
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
/// Raw-table chain that drops the MLD messages of pods (see [`crate::rules::mld_rules`]).
pub const MLD_CHAIN: &str = "CNI6-MLD";
/// The raw table's chain the MLD jump sits in (before the bridge floods).
pub const RAW_PREROUTING: &str = "PREROUTING";
/// MLD message types: query, v1 report, done, v2 report (RFC 2710, 3810).
pub const MLD_TYPES: [u8; 4] = [130, 131, 132, 143];

/// INPUT and FORWARD of traffic that enters from a pod bridge jump here
/// first: the source check that binds each pod's addresses to its MAC
/// (issue 15). In the filter table, so a pod's rules change one table: one
/// nf_tables transaction per ADD or DEL (each deleting transaction waits
/// an RCU grace period).
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
/// Traffic of established flows to a pod bridge, after the routed pods'
/// source check: accepted at once ([`crate::fastpath`]); one rule per bridge.
pub const TO_PODS_CHAIN: &str = "CNI6-TO-PODS";
/// ICMPv6 types dropped from pods: MLD (130, 131, 132, 143), router
/// advertisement (134), redirect (137).
pub const POD_ICMP_DROPPED: [u8; 6] = [130, 131, 132, 143, 134, 137];

pub fn is_internal_chain(name: &str) -> bool {
    [
        FORWARD_CHAIN,
        ANTISPOOF_CHAIN,
        INGRESS_CHAIN,
        FROM_POD_CHAIN,
        PODS_CHAIN,
        TO_PODS_CHAIN,
        SRC_CHAIN,
        SRC_ICMP_CHAIN,
    ]
    .contains(&name)
        || name.starts_with(SRC_GROUP_PREFIX)
        || name.starts_with(SRC_BUCKET_PREFIX)
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

/// The bucket of traffic to `a`: its low byte (pod slots are sequential,
/// and the ULA and GUA of a pod share their low 32 bits).
pub fn addr_bucket_of(a: &Ipv6Addr) -> String {
    addr_bucket(a.octets()[15] as usize)
}

/// Source buckets: they hold pods' rules (what DEL, GC and CHECK search).
pub fn is_src_bucket(name: &str) -> bool {
    name.starts_with(SRC_BUCKET_PREFIX)
}
