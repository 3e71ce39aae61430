//! Shortcuts on the per-packet path (issue 20) that change no verdict,
//! only how many rules a packet passes before it gets the one it got
//! before: a node-wide rule the skeleton places first in its chain, or
//! (CNI6-TO-PODS) one rule per bridge like CNI6-PODS'. Nodes set up by an
//! earlier release lack them, fail the `-C` lead of ADD's batch and are
//! repaired by the skeleton (those chains hold only derived rules).
//! docs/datapath.md has the rule counts and the measured effect.

use crate::chains::{ANTISPOOF_CHAIN, FROM_POD_CHAIN, PORT_OTHER, TO_PODS_CHAIN};

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

/// The rule of CNI6-TO-PODS for `bridge`: packets of established flows
/// going out to the bridge's pods are accepted. CNI6-FORWARD jumps there
/// after CNI6-ANTISPOOF, so a routed pod's forged source is dropped before;
/// bridged pods' own packets left for FROM-POD earlier. Same verdict as
/// CNI6-INGRESS: every policy accepts `RELATED,ESTABLISHED` first (or
/// everything); only a flow to an address no pod holds any more is
/// accepted here rather than left to the rules after firewall6's jump, and
/// the bridge has no port for it. Saves the destination dispatch on each
/// packet of another node's or an outside host's flow to a pod but the
/// first.
pub fn to_pods_established(bridge: &str) -> String {
    format!(
        "-A {TO_PODS_CHAIN} -o {bridge} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"firewall6: flows to the pods of {bridge} pass once their first packet has\" -j ACCEPT"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FirewallConf;
    use crate::rules::{check_of, Skeleton, SkeletonState, INGRESS_CHAIN, PODS_CHAIN};

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

    fn conf() -> FirewallConf {
        FirewallConf::from_raw(&serde_json::json!({})).unwrap()
    }

    #[test]
    fn to_pods_comes_after_the_routed_pods_check_and_before_the_policy() {
        let f = Skeleton::forward_rules();
        let at = |chain: &str| {
            f.iter()
                .position(|r| r.ends_with(&format!(" {chain}")))
                .unwrap()
        };
        assert_eq!(at(PODS_CHAIN), 0, "bridged pods leave first: {f:?}");
        assert!(at(ANTISPOOF_CHAIN) < at(TO_PODS_CHAIN), "{f:?}");
        assert!(at(TO_PODS_CHAIN) < f.len() - 1, "{f:?}");
        assert!(f[f.len() - 1].ends_with(&format!("-j {INGRESS_CHAIN}")));
        let r = to_pods_established("br0");
        assert!(r.starts_with(&format!(
            "-A {TO_PODS_CHAIN} -o br0 -m conntrack --ctstate RELATED,ESTABLISHED "
        )));
        assert!(r.ends_with("-j ACCEPT"));
    }

    /// A node set up by the release before CNI6-TO-PODS (CNI6-PODS after
    /// the exemptions, no CNI6-TO-PODS) fails the `-C` lead of ADD, is
    /// judged defective and repaired in one batch: CNI6-FORWARD rewritten
    /// in the new order with the operators' admin jumps kept, CNI6-TO-PODS
    /// made with the bridge's rule.
    #[test]
    fn layout_before_to_pods_is_converted() {
        let c = conf();
        let s = Skeleton {
            network: "n",
            conf: &c,
            bridge: Some("br0"),
        };
        let old_forward = [
            "-A CNI6-FORWARD -s fe80::/10 -m comment --comment \"firewall6: link-local sources are not checked\" -g CNI6-INGRESS",
            "-A CNI6-FORWARD -s ::/128 -m comment --comment \"firewall6: DAD probes are not checked\" -g CNI6-INGRESS",
            "-A CNI6-FORWARD -m comment --comment \"firewall6: pods behind a bridge, sources checked\" -j CNI6-PODS",
            "-A CNI6-FORWARD -m comment --comment \"firewall6: source check of pod traffic\" -j CNI6-ANTISPOOF",
            "-A CNI6-FORWARD -m comment --comment \"firewall6: inbound policy of pods\" -j CNI6-INGRESS",
        ];
        // Today's intact listing taken back: no CNI6-TO-PODS, the dispatch
        // of CNI6-FORWARD in the old order, a second network's admin jump.
        let other_admin = s.admin_jump().replace("-j CNI6-ADMIN", "-j OTHER-ADMIN");
        let mut old: Vec<String> = Vec::new();
        for l in crate::rules::tests::intact_listing(&s) {
            if l.contains(TO_PODS_CHAIN)
                || (l.starts_with("-A CNI6-FORWARD ") && l != s.admin_jump())
            {
                continue;
            }
            if l == s.admin_jump() {
                old.push(other_admin.clone());
                old.push(l);
                old.extend(old_forward.iter().map(|r| r.to_string()));
                continue;
            }
            old.push(l);
        }
        old.push("-N OTHER-ADMIN".into());

        let present: std::collections::BTreeSet<String> = old.iter().map(|l| check_of(l)).collect();
        let missing: Vec<String> = s
            .presence_checks()
            .into_iter()
            .filter(|c| !present.contains(c))
            .collect();
        assert!(
            missing.iter().any(|c| c.contains(TO_PODS_CHAIN)),
            "the -C lead fails on the new rules: {missing:?}"
        );
        let st = SkeletonState::from_listing(&old, "CNI6-ADMIN", &s.policy_chain());
        let d = s.defects(&st);
        assert!(
            d.iter()
                .any(|x| x.contains("chain CNI6-TO-PODS is missing")),
            "{d:?}"
        );
        assert!(
            d.iter()
                .any(|x| x.contains("out of order") || x.contains("lacks rule")),
            "{d:?}"
        );

        let fix = s.repair(&st);
        assert!(
            fix.contains(&":CNI6-TO-PODS - [0:0]".to_string()),
            "{fix:?}"
        );
        assert!(
            fix.contains(&":CNI6-FORWARD - [0:0]".to_string()),
            "{fix:?}"
        );
        assert!(fix.contains(&to_pods_established("br0")));
        let forward: Vec<&String> = fix
            .iter()
            .filter(|l| l.starts_with("-A CNI6-FORWARD "))
            .collect();
        let mut want = vec![other_admin, s.admin_jump()];
        want.extend(Skeleton::forward_rules());
        assert_eq!(forward, want.iter().collect::<Vec<_>>());
        // Declarations before rules (restore format); nothing else flushed.
        let first_rule = fix.iter().position(|l| l.starts_with('-')).unwrap();
        assert!(fix[first_rule..].iter().all(|l| l.starts_with('-')));
        let decls: Vec<&String> = fix.iter().filter(|l| l.starts_with(':')).collect();
        assert_eq!(decls.len(), 2, "{decls:?}");
    }
}
