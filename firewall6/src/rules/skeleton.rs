//! The node-wide skeleton: the chains every pod's rules hang from, the
//! source check, the MLD drop in the raw table, how their live state is
//! judged and how a damaged skeleton is repaired.

use super::*;
use crate::config::{FirewallConf, Ingress};
use crate::fastpath::to_pods_established;
use cni_common::attachment::HOST_VETH_PREFIX;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

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

    /// CNI6-FORWARD after the admin jump(s). Bridged pods' packets (their
    /// source checked first in FORWARD) leave for FROM-POD at once.
    /// Neighbour discovery and DAD use link-local and unspecified sources:
    /// exempt from the routed pods' source check in CNI6-ANTISPOOF.
    /// Established flows to bridged pods pass after it (CNI6-TO-PODS).
    pub fn forward_rules() -> Vec<String> {
        vec![
            format!(
                "-A {FORWARD_CHAIN} {} -j {PODS_CHAIN}",
                comment("firewall6: pods behind a bridge, sources checked")
            ),
            format!(
                "-A {FORWARD_CHAIN} -s fe80::/10 {} -g {INGRESS_CHAIN}",
                comment("firewall6: link-local sources are not checked")
            ),
            format!(
                "-A {FORWARD_CHAIN} -s ::/128 {} -g {INGRESS_CHAIN}",
                comment("firewall6: DAD probes are not checked")
            ),
            format!(
                "-A {FORWARD_CHAIN} {} -j {ANTISPOOF_CHAIN}",
                comment("firewall6: source check of pod traffic")
            ),
            format!(
                "-A {FORWARD_CHAIN} {} -j {TO_PODS_CHAIN}",
                comment("firewall6: established flows to pods behind a bridge")
            ),
            format!(
                "-A {FORWARD_CHAIN} {} -j {INGRESS_CHAIN}",
                comment("firewall6: inbound policy of pods")
            ),
        ]
    }

    /// CNI6-ANTISPOOF: the guard that sends unbridged packets to the
    /// catch-all at once ([`crate::fastpath`]), one rule per port group
    /// (`c6` + its first hex digit), then the catch-all. A port with a
    /// bridge6 name that has no rules in its bucket comes back from the
    /// group and reaches the catch-all, as ports of other names do.
    pub fn antispoof_rules() -> Vec<String> {
        let mut v = vec![crate::fastpath::antispoof_guard()];
        v.extend((0..GROUPS).map(|g| {
            format!(
                "-A {ANTISPOOF_CHAIN} -m physdev --physdev-in {HOST_VETH_PREFIX}{g:x}+ {} -j {}",
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
                    "-A {chain} -m physdev --physdev-in {HOST_VETH_PREFIX}{b:02x}+ {} -j {}",
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
    /// CNI6-TO-PODS (per bridge, like CNI6-PODS).
    pub to_pods: Option<Vec<String>>,
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
            to_pods: rules_of(TO_PODS_CHAIN),
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
        match (&s.to_pods, self.bridge) {
            (None, _) => out.push(format!("chain {TO_PODS_CHAIN} is missing")),
            (Some(have), Some(b)) if !have.contains(&to_pods_established(b)) => {
                out.push(format!("{TO_PODS_CHAIN} lacks the rule for bridge {b}"))
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
            all.push(to_pods_established(b));
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
        match &s.to_pods {
            None => {
                declare(&mut decl, TO_PODS_CHAIN);
                rules.extend(self.bridge.map(to_pods_established));
            }
            Some(have) => {
                if let Some(r) = self
                    .bridge
                    .map(to_pods_established)
                    .filter(|r| !have.contains(r))
                {
                    rules.push(r);
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
                "-A {ANTISPOOF_CHAIN} -m physdev --physdev-in {HOST_VETH_PREFIX}{b:02x}+ {} -j {}",
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
        "-A {RAW_PREROUTING} -p ipv6-icmp -m physdev --physdev-in {HOST_VETH_PREFIX}+ {} -j {MLD_CHAIN}",
        comment("firewall6: MLD of cni6 pods stays on their port")
    )
}

/// [`MLD_CHAIN`]: every MLD message a pod sends is dropped where it
/// enters the bridge, before the bridge copies it to every other port.
/// A node bridge has no multicast router behind it, no querier and no
/// snooping that forwards by membership (the bridge floods all multicast),
/// so a pod's reports inform no one; but each of them, sent under RTNL by
/// the pod's address configuration, went through ip6tables once per
/// port, a cost of every ADD that grew with the pods. A pod's query
/// would make every other pod answer: dropped too.
pub fn mld_rules() -> Vec<String> {
    MLD_TYPES
        .iter()
        .map(|t| format!("-A {MLD_CHAIN} -p ipv6-icmp -m icmp6 --icmpv6-type {t} -j DROP"))
        .collect()
}

/// The `-C` line (raw table) ADD's batch carries for the MLD drop: the
/// jump, which also proves [`MLD_CHAIN`] exists. Its four rules are not
/// checked on every ADD (that loads the icmp6 extension and makes four
/// more comparisons each time); an altered chain is
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
pub(super) fn insert_first(rule: &str) -> String {
    let rest = rule.strip_prefix("-A ").expect("rules start with -A");
    let (chain, spec) = rest.split_once(' ').expect("rule has a spec");
    format!("-I {chain} 1 {spec}")
}
