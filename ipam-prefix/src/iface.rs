//! `fromInterface`: the node prefix read from a host interface's address, so
//! one conflist serves every node (docs/design.md, "Configuration").
//!
//! Addresses are read over netlink in the namespace the plugin runs in (the
//! node's). A tentative address still names the node's prefix and is used;
//! a DAD-failed one is a duplicate that the kernel will not use, so it is
//! skipped (conformance.md §3 #4); a deprecated one is used only as a last
//! resort (a prefix the provider renumbered away).

use crate::config::{IpamConfig, PrefixSource, Scope};
use crate::error::{IpamError, Result};
use crate::plan::NodePrefix;
use cni_common::netlink::{LinkAddress, Netlink};
use std::net::Ipv6Addr;

/// IFA_F_DADFAILED and IFA_F_DEPRECATED from linux/if_addr.h.
pub const IFA_F_DADFAILED: u32 = 0x08;
pub const IFA_F_DEPRECATED: u32 = 0x20;

fn is_ula(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xfe00 == 0xfc00
}

/// Whether `a` is an address of `scope`: `ula` = fc00::/7; `global` = a
/// unicast address that is not ULA, link-local, loopback, unspecified,
/// multicast, IPv4-mapped or deprecated site-local.
pub fn in_scope(a: Ipv6Addr, scope: Scope) -> bool {
    let s0 = a.segments()[0];
    match scope {
        Scope::Ula => is_ula(a),
        Scope::Global => {
            !(is_ula(a)
                || a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || s0 & 0xffc0 == 0xfe80
                || s0 & 0xffc0 == 0xfec0
                || a.to_ipv4_mapped().is_some())
        }
    }
}

/// The first usable address of `scope` in kernel order, preferring one
/// that is not deprecated: after a provider renumbers, the old prefix
/// lingers as deprecated (preferred_lft 0) and new pods must get the new
/// one. A deprecated address is used only when there is nothing else.
pub fn select(addrs: &[LinkAddress], scope: Scope) -> Option<&LinkAddress> {
    let usable = |a: &&LinkAddress| a.flags & IFA_F_DADFAILED == 0 && in_scope(a.addr, scope);
    addrs
        .iter()
        .filter(usable)
        .find(|a| a.flags & IFA_F_DEPRECATED == 0)
        .or_else(|| addrs.iter().find(usable))
}

/// Read one interface's node prefix of length `node_len`; `index` is the
/// entry's position in `ipam.prefixes` (for the key in errors).
pub fn resolve(
    nl: &mut Netlink,
    index: usize,
    ifname: &str,
    scope: Scope,
    node_len: u8,
) -> Result<NodePrefix> {
    let key = format!("ipam.prefixes[{index}].fromInterface");
    let fail = |reason: String| IpamError::Resolve {
        key: key.clone(),
        ifname: ifname.to_string(),
        scope: scope.as_str(),
        reason,
    };
    let link = nl
        .link_by_name(ifname)
        .map_err(|e| IpamError::Kernel {
            context: format!("look up interface {ifname:?} for {key}"),
            source: e,
        })?
        .ok_or_else(|| fail("no such interface".into()))?;
    let addrs = nl
        .ipv6_addresses(link.header.index)
        .map_err(|e| IpamError::Kernel {
            context: format!("read IPv6 addresses of {ifname:?} for {key}"),
            source: e,
        })?;
    let a = select(&addrs, scope).ok_or_else(|| {
        fail(format!(
            "it has no usable {} IPv6 address; DAD-failed ones are skipped",
            scope.as_str()
        ))
    })?;
    NodePrefix::from_interface(a.addr, a.prefix_len, node_len).map_err(|why| {
        fail(format!(
            "its address {}/{} gives no node prefix: expected {why}",
            a.addr, a.prefix_len
        ))
    })
}

/// Every node prefix of `cfg`, literal ones as written, interface ones
/// read from the host. The netlink socket is opened only when needed.
pub fn node_prefixes(cfg: &IpamConfig) -> Result<Vec<NodePrefix>> {
    let mut nl: Option<Netlink> = None;
    let mut out = Vec::with_capacity(cfg.prefixes.len());
    for (i, p) in cfg.prefixes.iter().enumerate() {
        out.push(match p {
            PrefixSource::Node(n) => *n,
            PrefixSource::FromInterface { ifname, scope } => {
                let sock = match &mut nl {
                    Some(s) => s,
                    None => nl.insert(Netlink::open().map_err(|e| IpamError::Kernel {
                        context: "open a netlink route socket".into(),
                        source: e,
                    })?),
                };
                let n = resolve(sock, i, ifname, *scope, cfg.node_len)?;
                if n.is_reserved_vip() {
                    return Err(IpamError::Resolve {
                        key: format!("ipam.prefixes[{i}].fromInterface"),
                        ifname: ifname.clone(),
                        scope: scope.as_str(),
                        reason: format!(
                            "its prefix gives {n}: {}",
                            crate::config::RESERVED_EXPECTED
                        ),
                    });
                }
                n
            }
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn la(addr: &str, plen: u8, flags: u32) -> LinkAddress {
        LinkAddress {
            index: 2,
            addr: addr.parse().unwrap(),
            prefix_len: plen,
            flags,
        }
    }

    #[test]
    fn scopes() {
        let g = |s: &str| in_scope(s.parse().unwrap(), Scope::Global);
        let u = |s: &str| in_scope(s.parse().unwrap(), Scope::Ula);
        assert!(g("2001:db8:7:12::5") && !u("2001:db8:7:12::5"));
        assert!(u("fd8c::1") && u("fc00::1") && !g("fd8c::1"));
        for not_global in [
            "fe80::1",
            "::1",
            "::",
            "ff02::1",
            "fec0::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!g(not_global), "{not_global}");
            assert!(!u(not_global), "{not_global}");
        }
    }

    #[test]
    fn first_match_wins_and_dadfailed_is_skipped() {
        let tentative = 0x40;
        let addrs = vec![
            la("fe80::1", 64, 0),
            la("2001:db8:1::1", 64, IFA_F_DADFAILED),
            la("fd00:1::1", 64, 0),
            la("2001:db8:2::1", 64, tentative),
            la("2001:db8:3::1", 64, 0),
        ];
        let g = select(&addrs, Scope::Global).unwrap();
        assert_eq!(g.addr, "2001:db8:2::1".parse::<Ipv6Addr>().unwrap());
        let u = select(&addrs, Scope::Ula).unwrap();
        assert_eq!(u.addr, "fd00:1::1".parse::<Ipv6Addr>().unwrap());
        assert!(select(&addrs[..2], Scope::Global).is_none());
        // Deprecated (renumbered away) loses to a preferred one, whatever
        // the order, and is still used when it is the only one.
        let renumbered = vec![
            la("2001:db8:8::5", 64, IFA_F_DEPRECATED),
            la("2001:db8:7::5", 64, 0),
        ];
        let g = select(&renumbered, Scope::Global).unwrap();
        assert_eq!(g.addr, "2001:db8:7::5".parse::<Ipv6Addr>().unwrap());
        let g = select(&renumbered[..1], Scope::Global).unwrap();
        assert_eq!(g.addr, "2001:db8:8::5".parse::<Ipv6Addr>().unwrap());
    }

    #[test]
    fn missing_interface_names_key_interface_and_scope() {
        // Reading links needs no privilege; the name cannot exist (16 bytes).
        let mut nl = Netlink::open().unwrap();
        let e = resolve(&mut nl, 1, "no-such-ifc-xyz", Scope::Ula, 80).unwrap_err();
        let m = e.to_string();
        assert!(
            m.contains("ipam.prefixes[1].fromInterface")
                && m.contains("no-such-ifc-xyz")
                && m.contains("ula"),
            "{m}"
        );
        assert_eq!(cni_common::Error::from(e).code(), 7);
        // lo has ::1 at most: no global address.
        let e = resolve(&mut nl, 0, "lo", Scope::Global, 80).unwrap_err();
        assert!(
            e.to_string().contains("no usable global IPv6 address"),
            "{e}"
        );
    }
}
