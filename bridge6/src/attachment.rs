//! Names derived from what the runtime gives us, so every verb finds the
//! same objects without a record of its own: DEL and GC must work with no
//! prevResult and no pod namespace (conformance.md #27, 28; conformance.md §3 #16).
//!
//! The host end of a pod's veth is `c6` + 13 hex digits of
//! SHA-256(network, container id, ifname): 15 bytes, the kernel's limit,
//! 52 bits of hash (a collision needs ~10^7 attachments on one node). The
//! hash is SHA-256 because it is stable across Rust and plugin releases;
//! std's `DefaultHasher` is not, and an upgrade would orphan every veth.
//!
//! The host end also carries an alias `cni6 net=<network> if=<ifname>
//! id=<container id>` so GC can tell this network's ports from another
//! network's on a shared bridge, and an operator can read who owns a veth.

use cni_common::attachment::{Attachment, HOST_VETH_PREFIX};
use sha2::{Digest, Sha256};

const ALIAS_PREFIX: &str = "cni6 net=";
/// IFALIASZ - 2: the kernel counts the NUL that netlink-packet-route
/// appends to the string, so a 255-byte alias is ERANGE (seen on 6.18;
/// issue 15: ADD failed for any id long enough to be cut).
const ALIAS_MAX: usize = 254;

/// The host-side veth name of an attachment (15 bytes).
pub fn host_veth(a: &Attachment) -> String {
    let mut h = Sha256::new();
    // NUL separators: no two different triples hash the same input.
    h.update(a.network.as_bytes());
    h.update([0]);
    h.update(a.container_id.as_bytes());
    h.update([0]);
    h.update(a.ifname.as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{HOST_VETH_PREFIX}{}", &hex[..13])
}

/// The alias put on the host veth. Network names are at most 128 bytes
/// and have no spaces, so the network always fits; a very long
/// container id is cut (GC matches by name, the alias only scopes).
pub fn alias(a: &Attachment) -> String {
    let mut s = format!(
        "{ALIAS_PREFIX}{} if={} id={}",
        a.network, a.ifname, a.container_id
    );
    if s.len() > ALIAS_MAX {
        let mut cut = ALIAS_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The network named in a host veth's alias, if it is one of ours.
pub fn alias_network(alias: &str) -> Option<&str> {
    let rest = alias.strip_prefix(ALIAS_PREFIX)?;
    rest.split(' ').next().filter(|n| !n.is_empty())
}

/// A fixed MAC for a bridge we create, derived from its name: locally
/// administered, unicast. Without a fixed MAC a Linux bridge takes the
/// lowest MAC of its ports and changes it as pods come and go, which
/// leaves stale gateway entries in every pod's neighbour cache.
pub fn bridge_mac(bridge: &str) -> [u8; 6] {
    let d = Sha256::digest(format!("cni6 bridge {bridge}").as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&d[..6]);
    mac[0] = (mac[0] & 0xfc) | 0x02;
    mac
}

pub fn format_mac(mac: &[u8]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn att(network: &str, container_id: &str, ifname: &str) -> Attachment {
        Attachment::new(network, container_id, ifname).unwrap()
    }

    #[test]
    fn host_veth_is_stable_and_short() {
        let n = host_veth(&att("cluster", "abc123", "eth0"));
        assert_eq!(n.len(), 15);
        assert!(n.starts_with("c6"));
        assert!(n[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        // Pinned: a change here orphans veths across an upgrade.
        assert_eq!(n, "c671fe64a1c3600");
        assert_eq!(host_veth(&att("cluster", "abc123", "eth0")), n);
    }

    #[test]
    fn host_veth_depends_on_every_part() {
        let base = host_veth(&att("n", "c", "eth0"));
        assert_ne!(host_veth(&att("m", "c", "eth0")), base);
        assert_ne!(host_veth(&att("n", "d", "eth0")), base);
        assert_ne!(host_veth(&att("n", "c", "net1")), base);
        // The separator keeps ("ab","c") and ("a","bc") apart.
        assert_ne!(
            host_veth(&att("ab", "c", "eth0")),
            host_veth(&att("a", "bc", "eth0"))
        );
    }

    #[test]
    fn alias_round_trip() {
        let a = alias(&att("cluster.v6", "abc", "net1"));
        assert_eq!(a, "cni6 net=cluster.v6 if=net1 id=abc");
        assert_eq!(alias_network(&a), Some("cluster.v6"));
        assert_eq!(alias_network("something else"), None);
        let long = alias(&att(&"n".repeat(128), &"c".repeat(255), "eth0"));
        assert_eq!(long.len(), 254);
        assert_eq!(alias_network(&long), Some("n".repeat(128).as_str()));
    }

    #[test]
    fn bridge_mac_is_local_unicast_and_stable() {
        let m = bridge_mac("cni6br0");
        assert_eq!(m[0] & 0x01, 0, "unicast");
        assert_eq!(m[0] & 0x02, 0x02, "locally administered");
        assert_eq!(m, bridge_mac("cni6br0"));
        assert_ne!(m, bridge_mac("cni6br1"));
        assert_eq!(format_mac(&[0x02, 0, 0xab, 1, 2, 3]), "02:00:ab:01:02:03");
    }
}
