//! Pods attached by a release before issue 15 on a node upgraded in place.
//!
//! Their source check was per port (`-m physdev --physdev-in`, in the
//! filter port buckets), which needs br_netfilter; the current source check
//! leading INPUT and FORWARD drops every source it does not know. So when a bridge
//! gets its source-check jumps, each earlier pod's addresses (from its tagged physdev
//! rules) are bound there too, to the MAC the bridge learned on its port
//! (its ports are not locked: that binding is only as strong as the
//! earlier release's), with the pod's tag, so DEL and GC remove them with
//! the physdev rules. A pod whose MAC the bridge no longer knows (silent
//! beyond the FDB's ageing time) is bound by address only, and logged.

use crate::rules::{self, HostSide, Pod};
use cni_common::netlink::NeighbourState;
use std::collections::BTreeMap;
use std::net::Ipv6Addr;

/// One earlier pod: its tag, the port its rules name, its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyPod {
    pub tag: String,
    pub port: String,
    pub addresses: Vec<Ipv6Addr>,
}

/// The earlier pods in a filter listing: `-A CNI6-P-xx -s A/128 -m physdev
/// --physdev-in PORT … --comment "TAG" -g CNI6-FROM-POD` lines.
pub fn legacy_pods(filter: &[String]) -> Vec<LegacyPod> {
    let mut by_tag: BTreeMap<String, LegacyPod> = BTreeMap::new();
    for line in filter {
        let Some(r) = rules::parse_rule(line) else {
            continue;
        };
        if !r.chain.starts_with(rules::PORT_BUCKET_PREFIX)
            || !line.ends_with(&format!("-g {}", rules::FROM_POD_CHAIN))
        {
            continue;
        }
        let (Some(tag), Some(addr), Some(port)) = (
            r.comment,
            word_after(line, "-s ").and_then(|a| a.strip_suffix("/128")?.parse().ok()),
            word_after(line, "--physdev-in "),
        ) else {
            continue;
        };
        let pod = by_tag.entry(tag.clone()).or_insert_with(|| LegacyPod {
            tag,
            port: port.to_string(),
            addresses: Vec::new(),
        });
        if !pod.addresses.contains(&addr) {
            pod.addresses.push(addr);
        }
    }
    by_tag.into_values().collect()
}

fn word_after<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)? + key.len();
    line[at..].split(' ').next()
}

/// The source rules that keep an earlier pod's traffic passing the
/// source check: those of a bridged pod of this release
/// ([`rules::pod_source_rules`]), with the MAC when the bridge knows it.
pub fn source_rules(pod: &LegacyPod, mac: Option<&[u8; 6]>) -> Vec<String> {
    let as_bridged = Pod {
        addresses: pod.addresses.clone(),
        host_side: Some(HostSide::BridgePort(pod.port.clone())),
        bridge: None,
        mac: mac.copied(),
    };
    rules::pod_source_rules(&pod.tag, &as_bridged)
}

/// The MAC the bridge learned on `port`, read over netlink in the current
/// network namespace.
pub fn learned_mac(port: &str) -> Option<[u8; 6]> {
    let mut nl = cni_common::netlink::Netlink::open().ok()?;
    let link = nl.link_by_name(port).ok()??;
    nl.fdb(link.header.index)
        .ok()?
        .into_iter()
        .find(|(_, state)| !matches!(state, NeighbourState::Permanent | NeighbourState::Noarp))
        .map(|(mac, _)| mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_pods_found_and_bound() {
        let listing = vec![
            "-A CNI6-P-3f -s fd00::1:10/128 -m physdev --physdev-in c63f0 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -g CNI6-FROM-POD".to_string(),
            "-A CNI6-P-3f -s 2001:db8::1:10/128 -m physdev --physdev-in c63f0 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -g CNI6-FROM-POD".to_string(),
            "-A CNI6-P-3f -m physdev --physdev-in c63f0 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -j DROP".to_string(),
            "-A CNI6-D-10 -d fd00::1:10/128 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -j CNI6-POL-x".to_string(),
        ];
        let pods = legacy_pods(&listing);
        assert_eq!(
            pods,
            vec![LegacyPod {
                tag: "firewall6 net=n if=eth0 id=a".into(),
                port: "c63f0".into(),
                addresses: vec![
                    "fd00::1:10".parse().unwrap(),
                    "2001:db8::1:10".parse().unwrap()
                ],
            }]
        );
        let r = source_rules(&pods[0], Some(&[0x02, 0, 0, 0, 0, 0x42]));
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[2],
            "-A CNI6-S-42 -s fe80::ff:fe00:42/128 -m mac --mac-source 02:00:00:00:00:42 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -j RETURN"
        );
        let r = source_rules(&pods[0], None);
        assert_eq!(
            r[0],
            "-A CNI6-S-10 -s fd00::1:10/128 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -j RETURN"
        );
    }
}
