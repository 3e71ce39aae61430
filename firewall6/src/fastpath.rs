//! Shortcuts on the per-packet path (issue 20) that change no verdict,
//! only how many rules a packet passes before it gets the one it got
//! before. Each is a node-wide rule the skeleton places first in its
//! chain; nodes set up by an earlier release lack it, fail the `-C` lead
//! of ADD's batch and are rewritten by the skeleton's repair (the chains
//! hold only derived rules). docs/datapath.md has the rule counts and the
//! measured effect.

use crate::chains::{ANTISPOOF_CHAIN, FROM_POD_CHAIN, PORT_OTHER};

/// First rule of CNI6-ANTISPOOF: a packet that crossed no bridge port
/// (from the fabric, the outside, a routed pod) cannot match any of the
/// 16 `--physdev-in c6X+` group rules after it, so it goes straight to
/// where it would end up, CNI6-P-OTHER (routed pods' `-i` rules, then back
/// to CNI6-FORWARD). Saves 16 physdev matches on every packet that enters
/// a node from outside its bridges, e.g. each packet of a pod on another
/// node.
pub fn antispoof_guard() -> String {
    format!(
        "-A {ANTISPOOF_CHAIN} -m physdev ! --physdev-is-in -m comment --comment \"firewall6: not from a bridge port\" -g {PORT_OTHER}"
    )
}

/// First rule of CNI6-FROM-POD (sources already checked): replies and
/// packets of established flows are accepted here. The verdict is the
/// one CNI6-INGRESS would give: every cluster-only policy accepts
/// RELATED,ESTABLISHED first, an open one accepts everything, and a
/// destination that is no pod falls back to FROM-POD's ACCEPT. Saves the
/// walk through the address dispatch (up to 1 + 16 + 16 rules plus the
/// bucket) on every packet of a pod's flows but the first.
pub fn from_pod_established() -> String {
    format!(
        "-A {FROM_POD_CHAIN} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"firewall6: flows of pods pass once their first packet has\" -j ACCEPT"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{Skeleton, INGRESS_CHAIN};

    #[test]
    fn shortcuts_lead_their_chains() {
        let anti = Skeleton::antispoof_rules();
        assert_eq!(anti[0], antispoof_guard());
        assert_eq!(anti.len(), 18, "guard, 16 groups, catch-all");
        assert!(anti[anti.len() - 1].ends_with(&format!("-j {PORT_OTHER}")));
        let from_pod = Skeleton::from_pod_rules();
        assert_eq!(from_pod[0], from_pod_established());
        assert!(from_pod[1].ends_with(&format!("-j {INGRESS_CHAIN}")));
        assert!(from_pod[2].ends_with("-j ACCEPT"));
    }

    #[test]
    fn guard_takes_only_unbridged_packets_to_the_catch_all() {
        let g = antispoof_guard();
        assert!(g.contains("-m physdev ! --physdev-is-in "));
        assert!(
            g.ends_with(&format!("-g {PORT_OTHER}")),
            "goto: back to CNI6-FORWARD after"
        );
    }
}
