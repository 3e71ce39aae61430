//! The CNI verbs of firewall6 (see the crate doc for the chain layout).

use crate::config::FirewallConf;
use crate::error::{Error, Result};
use crate::generation::{self, Generation, Verified};
use crate::iptables::{Ip6tables, Tables};
use crate::legacy;
use crate::rules::{
    self, Attachment, HostSide, Pod, Skeleton, SkeletonState, ANTISPOOF_CHAIN, FORWARD,
    FORWARD_CHAIN, FROM_POD_CHAIN, INGRESS_CHAIN, MLD_CHAIN, PODS_CHAIN, RAW_PREROUTING,
};
use cni_common::dispatch::{Plugin, Request};
use cni_common::result::CniResult;
use cni_common::version::{self, Version};
use std::collections::{BTreeMap, BTreeSet};

/// How often DEL/GC re-list and retry when a rule vanished between the
/// listing and the batch (a concurrent DEL of the same attachment).
const DELETE_ATTEMPTS: usize = 3;

pub struct Firewall6;

fn attachment(req: &Request) -> Attachment<'_> {
    Attachment {
        network: &req.config.name,
        container_id: req.container_id(),
        ifname: req.ifname(),
    }
}

/// Make the skeleton whole, under the lock so concurrent first ADDs do not
/// both insert the same jump. Reads the whole table (one exec): this is
/// the rare path (first pod of a node, or damage). The MLD drop in the raw
/// table follows in its own batch and only as a best effort: it saves
/// work, it decides nothing, and a node without a usable raw table must
/// still get its pods' rules.
fn ensure_skeleton(t: &dyn Tables, skel: &Skeleton) -> Result<()> {
    let _lock = t.skeleton_lock()?;
    let all = t.list_all()?;
    let state = SkeletonState::from_listing(&all, &skel.conf.admin_chain, &skel.policy_chain());
    let mut fix = skel.repair(&state);
    if let Some(bridge) = skel.bridge {
        let forward_jump_inserted = !state.forward.contains(&Skeleton::forward_jump());
        fix.extend(rules::src_repair(&all, bridge, forward_jump_inserted));
        fix.extend(rules::insert_lines(&legacy_sources(&all)));
    }
    if !fix.is_empty() {
        // One atomic batch, declarations first (the restore format).
        let (mut lines, rest): (Vec<String>, Vec<String>) =
            fix.into_iter().partition(|l| l.starts_with(':'));
        lines.extend(rest);
        t.restore(&rules::batch(&lines))?;
    }
    if let Err(e) = ensure_mld_drop(t) {
        eprintln!("firewall6: could not install the MLD drop in the raw table (pods' MLD reports keep being flooded to every bridge port): {e}");
    }
    Ok(())
}

/// Source rules for the pods of an earlier release not bound yet
/// ([`crate::legacy`]).
fn legacy_sources(all: &[String]) -> Vec<String> {
    let srcs = src_bucket_lines(all);
    let mut out = Vec::new();
    for pod in legacy::legacy_pods(all) {
        if !rules::rules_with_tag(&srcs, &pod.tag).is_empty() {
            continue;
        }
        let mac = legacy::learned_mac(&pod.port);
        if mac.is_none() {
            eprintln!(
                "firewall6: {:?} (attached by an earlier release): no MAC learned on {}; its addresses are bound without one and its link-local address is not allowed",
                pod.tag, pod.port
            );
        }
        out.extend(legacy::source_rules(&pod, mac.as_ref()));
    }
    out
}

/// The repair path: make the skeleton whole, then the pod's batch. A
/// pod's rules live in the filter table only, so a batch that failed
/// applied none of them.
fn repair_then_apply(t: &dyn Tables, skel: &Skeleton, pod_rules: &PodRules) -> Result<()> {
    ensure_skeleton(t, skel)?;
    if pod_rules.is_empty() {
        return Ok(());
    }
    t.restore(&pod_rules.batch())
}

fn ensure_mld_drop(t: &dyn Tables) -> Result<()> {
    let prerouting = t.list_raw_chain(RAW_PREROUTING)?.unwrap_or_default();
    let chain = t.list_raw_chain(MLD_CHAIN)?;
    let fix = rules::mld_repair(&prerouting, chain.as_deref());
    if fix.is_empty() {
        return Ok(());
    }
    t.restore(&rules::table_batch("raw", &fix))
}

/// The `-C` lines ADD's batch is led by when it checks: the skeleton rules
/// ADD relies on ([`Skeleton::presence_checks`]) and the MLD jump in the
/// raw table ([`rules::mld_presence_checks`]), with their digest (what a
/// [`Verified`] record names). Built once per ADD.
struct Checks {
    raw: Vec<String>,
    filter: Vec<String>,
    digest: String,
}

impl Checks {
    fn of(skel: &Skeleton) -> Checks {
        let raw = rules::mld_presence_checks();
        let mut filter = skel.presence_checks();
        if let Some(b) = skel.bridge {
            filter.extend(rules::src_presence_checks(b));
        }
        let digest = generation::digest(&Self::batch(&raw, &filter, &[]));
        Checks {
            raw,
            filter,
            digest,
        }
    }

    /// The checks followed by `pod_rules` in the filter section.
    fn batch(raw: &[String], filter: &[String], pod_rules: &[String]) -> String {
        let filter: Vec<String> = filter.iter().chain(pod_rules).cloned().collect();
        rules::table_batch("raw", raw) + &rules::batch(&filter)
    }

    /// The checks, then the pod's rules: the DROP of each of its source
    /// buckets is checked, its source rules inserted before it, its
    /// policy rules appended.
    fn with(&self, pod: &PodRules) -> String {
        let mut lines: Vec<String> = rules::chains_of(&pod.sources)
            .iter()
            .map(|b| rules::check_of(&rules::src_bucket_drop(b)))
            .collect();
        lines.extend(pod.lines());
        Self::batch(&self.raw, &self.filter, &lines)
    }
}

/// One pod's rules, as `ip6tables -S` lists them: `sources` in the source
/// buckets, `filter` its inbound policy (and a routed pod's source check).
#[derive(Debug, Clone, Default)]
pub struct PodRules {
    pub sources: Vec<String>,
    pub filter: Vec<String>,
    /// Where a release before issue 15 kept this pod's source check (its
    /// port bucket): DEL looks there too.
    pub legacy_chain: Option<String>,
}

impl PodRules {
    pub fn of(tag: &str, pod: &Pod, policy_chain: &str) -> PodRules {
        PodRules {
            sources: rules::pod_source_rules(tag, pod),
            filter: rules::pod_rules(tag, pod, policy_chain),
            legacy_chain: match &pod.host_side {
                Some(h @ HostSide::BridgePort(_)) => Some(rules::port_bucket_of(h)),
                _ => None,
            },
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty() && self.filter.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sources.len() + self.filter.len()
    }

    /// Every rule, the sources first.
    pub fn all(&self) -> Vec<String> {
        self.sources.iter().chain(&self.filter).cloned().collect()
    }

    /// The batch lines that install them (sources inserted before their
    /// buckets' DROP).
    fn lines(&self) -> Vec<String> {
        let mut v = rules::insert_lines(&self.sources);
        v.extend(self.filter.iter().cloned());
        v
    }

    /// The batch that installs them: one table, one transaction.
    fn batch(&self) -> String {
        rules::batch(&self.lines())
    }

    /// Transactions the batch commits.
    fn commits(&self) -> u32 {
        u32::from(!self.is_empty())
    }
}

/// ADD's work in one ip6tables-restore process when the node is set up:
/// the pod's rules as one atomic batch of appends to bucket chains, whose
/// cost does not depend on how many pods exist. When the ruleset is still
/// at the generation recorded after the last batch that found the
/// skeleton whole ([`crate::generation`]), that is the whole batch;
/// otherwise the checked batch (`install_checked`). If anyone else
/// committed while the unchecked batch ran, the checks run afterwards.
pub fn install(t: &dyn Tables, skel: &Skeleton, pod_rules: &PodRules) -> Result<()> {
    let checks = Checks::of(skel);
    let before = t.generation();
    let vouched = vouched_at(t, before.as_ref());
    if vouched.contains(&checks.digest) {
        if pod_rules.is_empty() {
            return Ok(());
        }
        if t.restore(&pod_rules.batch()).is_err() {
            return repair_then_apply(t, skel, pod_rules);
        }
        if keep_verified(t, before.as_ref(), pod_rules.commits(), vouched) {
            return Ok(());
        }
        return install_checked(t, skel, &checks, &PodRules::default());
    }
    install_checked(t, skel, &checks, pod_rules)
}

/// The pod's batch led by the [`Checks`]. A missing skeleton rule or
/// chain (first pod of a node, damage, or a node set up by an earlier
/// release) fails the whole batch, nothing applied; then the full path
/// reads the table, repairs (under the lock) and the pod's batch runs
/// once more. Before issue 7 four `ip6tables -S` processes read FORWARD,
/// CNI6-FORWARD, FROM-POD and the policy chain first: ~1.5 ms of CPU
/// each, most of firewall6's ADD. Other configs' digests the record holds
/// for the generation found here stay valid beside this batch's own: a
/// passing batch changes no skeleton.
fn install_checked(
    t: &dyn Tables,
    skel: &Skeleton,
    checks: &Checks,
    pod_rules: &PodRules,
) -> Result<()> {
    let before = t.generation();
    let vouched = vouched_at(t, before.as_ref());
    if t.restore(&checks.with(pod_rules)).is_ok() {
        // Each table the pod's rules change commits once.
        let commits = pod_rules.commits();
        let digests = Verified::merged(&checks.digest, &vouched);
        keep_verified(t, before.as_ref(), commits, digests);
        return Ok(());
    }
    repair_then_apply(t, skel, pod_rules)
}

/// After our own `commits` transactions since `before`, none of which
/// touched a skeleton, with the skeletons whose checks have the digests
/// `checks` whole at `before`: record the generation if nobody else
/// committed meanwhile. Returns whether it did.
fn keep_verified(
    t: &dyn Tables,
    before: Option<&Generation>,
    commits: u32,
    checks: Vec<String>,
) -> bool {
    match (before, t.generation()) {
        (Some(before), Some(now)) if before.after(commits) == now && !checks.is_empty() => {
            t.set_verified(&Verified { at: now, checks });
            true
        }
        _ => false,
    }
}

/// The record, if it was written at generation `now` (nobody else
/// committed since).
fn verified_at(t: &dyn Tables, now: Option<&Generation>) -> Option<Verified> {
    let v = t.verified()?;
    (Some(&v.at) == now).then_some(v)
}

/// The digests the record vouches for at generation `now`.
fn vouched_at(t: &dyn Tables, now: Option<&Generation>) -> Vec<String> {
    verified_at(t, now).map(|v| v.checks).unwrap_or_default()
}

/// `-A` lines of our bucket chains in a full listing.
fn bucket_lines(all: &[String]) -> Vec<String> {
    lines_in(all, rules::is_bucket_chain)
}

/// The `-A` lines of `all` in chains `keep` selects.
fn lines_in(all: &[String], keep: fn(&str) -> bool) -> Vec<String> {
    all.iter()
        .filter(|l| rules::parse_rule(l).is_some_and(|r| keep(r.chain)))
        .cloned()
        .collect()
}

/// `-A` lines of the source buckets in a full listing.
fn src_bucket_lines(all: &[String]) -> Vec<String> {
    lines_in(all, rules::is_src_bucket)
}

/// The lines where pods' rules live: `pods` in the port and address
/// buckets, `srcs` in the source buckets.
#[derive(Debug, Clone, Default)]
struct Listing {
    pods: Vec<String>,
    srcs: Vec<String>,
}

impl Listing {
    fn of(all: &[String]) -> Listing {
        Listing {
            pods: bucket_lines(all),
            srcs: src_bucket_lines(all),
        }
    }

    fn full(t: &dyn Tables) -> Result<Listing> {
        Ok(Listing::of(&t.list_all()?))
    }

    /// One batch deleting every line tagged `tag`.
    fn deletion(&self, tag: &str) -> String {
        let lines: Vec<String> = rules::rules_with_tag(&self.srcs, tag)
            .into_iter()
            .chain(rules::rules_with_tag(&self.pods, tag))
            .map(rules::delete_of)
            .collect();
        if lines.is_empty() {
            String::new()
        } else {
            rules::batch(&lines)
        }
    }
}

/// Remove every rule carrying one of `tags`, starting from `listing`. A
/// rule that vanished meanwhile makes a batch fail: re-list both tables and
/// retry. Keeps going across tags and reports every failure at the end.
fn remove_tagged(t: &dyn Tables, tags: &BTreeSet<String>, listing: Listing) -> Result<u32> {
    let mut commits = 0;
    let mut errors = Vec::new();
    let mut pending: BTreeSet<String> = tags.clone();
    let mut listing = listing;
    for attempt in 1..=DELETE_ATTEMPTS {
        if attempt > 1 {
            listing = Listing::full(t)?;
        }
        let mut next = BTreeSet::new();
        errors.clear();
        for tag in &pending {
            let batch = listing.deletion(tag);
            if batch.is_empty() {
                continue;
            }
            match t.restore(&batch) {
                Ok(()) => commits += batch.matches("COMMIT").count() as u32,
                Err(e) => {
                    errors.push(format!("{tag:?}: {e}"));
                    next.insert(tag.clone());
                }
            }
        }
        if next.is_empty() {
            return Ok(commits);
        }
        pending = next;
    }
    Err(Error::Cleanup(errors))
}

/// The `-A` lines of `chains`, one small listing each (read concurrently).
fn list_chains(t: &dyn Tables, chains: &[String]) -> Result<BTreeMap<String, Vec<String>>> {
    let names: Vec<&str> = chains.iter().map(String::as_str).collect();
    let listings = t.list_chains(&names)?;
    Ok(chains
        .iter()
        .cloned()
        .zip(listings.into_iter().map(Option::unwrap_or_default))
        .collect())
}

/// DEL's work for one attachment. With the rules prevResult implies
/// (`expected`) they sit in known buckets: list those few chains only
/// (O(1)). Without, or when the buckets do not hold all of them (the config
/// or prevResult changed since ADD, conformance.md #17, or the pod was attached
/// by a release whose rules lived elsewhere), read both tables once.
/// Deleting a pod's tagged rules leaves the skeleton as it was, so a
/// verified generation stays verified when nobody else committed.
pub fn remove_attachment(t: &dyn Tables, tag: &str, expected: Option<PodRules>) -> Result<()> {
    // DEL and GC change only pods' rules, so they keep a valid record.
    let before = verified_at(t, t.generation().as_ref());
    let tags = BTreeSet::from([tag.to_string()]);
    if let Some(expected) = expected.filter(|e| !e.is_empty()) {
        if let Some(commits) = remove_expected(t, tag, &expected)? {
            if let Some(v) = before {
                keep_verified(t, Some(&v.at), commits, v.checks);
            }
            return Ok(());
        }
    }
    let commits = remove_tagged(t, &tags, Listing::full(t)?)?;
    if let Some(v) = before {
        keep_verified(t, Some(&v.at), commits, v.checks);
    }
    Ok(())
}

/// DEL with prevResult in one listing and one batch: the filter buckets
/// the rules imply (and the port bucket where an earlier release kept
/// them) are listed, the raw rules are deleted as prevResult implies them,
/// once per copy the filter listing shows (a repeated ADD installs both
/// rules again), without reading the source buckets. `None` when the rules are
/// not where prevResult says (changed config or MAC, an earlier release's
/// pod without raw rules, a concurrent DEL): the caller reads both tables.
fn remove_expected(t: &dyn Tables, tag: &str, expected: &PodRules) -> Result<Option<u32>> {
    let implied = rules::chains_of(&expected.filter);
    let mut chains = implied.clone();
    chains.extend(expected.legacy_chain.clone());
    let listings = list_chains(t, &chains)?;
    // DEL does not know the policy chain (the config may have changed):
    // the pod's rules in the implied buckets are found by their tag.
    let in_implied: Vec<String> = implied
        .iter()
        .flat_map(|c| listings.get(c).cloned().unwrap_or_default())
        .collect();
    let found = rules::rules_with_tag(&in_implied, tag).len();
    if found < expected.filter.len() {
        return Ok(None);
    }
    let listed = Listing {
        pods: listings.into_values().flatten().collect(),
        srcs: Vec::new(),
    };
    let copies = found.checked_div(expected.filter.len()).unwrap_or(1).max(1);
    let mut lines: Vec<String> = (0..copies)
        .flat_map(|_| expected.sources.iter().map(|r| rules::delete_of(r)))
        .collect();
    lines.extend(
        rules::rules_with_tag(&listed.pods, tag)
            .into_iter()
            .map(rules::delete_of),
    );
    if lines.is_empty() {
        return Ok(Some(0));
    }
    if t.restore(&rules::batch(&lines)).is_err() {
        return Ok(None);
    }
    Ok(Some(1))
}

/// CHECK's work: what is wrong with the skeleton and one pod's rules.
/// Read-only: the skeleton chains, the dispatch groups that lead to the
/// pod's buckets and those buckets, one small listing each (bucket chains
/// exist when the dispatch rules that jump to them do); for a bridged pod
/// the whole table once.
pub fn defects_of(t: &dyn Tables, skel: &Skeleton, pod_rules: &PodRules) -> Result<Vec<String>> {
    let policy_chain = skel.policy_chain();
    let buckets = rules::chains_of(&pod_rules.filter);
    let mut groups: Vec<String> = Vec::new();
    for g in buckets.iter().filter_map(|b| rules::group_of_bucket(b)) {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let mut names: Vec<&str> = vec![
        FORWARD,
        FORWARD_CHAIN,
        ANTISPOOF_CHAIN,
        INGRESS_CHAIN,
        FROM_POD_CHAIN,
        PODS_CHAIN,
        &policy_chain,
        &skel.conf.admin_chain,
    ];
    names.extend(groups.iter().map(String::as_str));
    names.extend(buckets.iter().map(String::as_str));
    let mut listings = t.list_chains(&names)?.into_iter();
    let mut next = || listings.next().expect("one listing per chain");
    let forward = next();
    let cni6_forward = next();
    let antispoof = next();
    let ingress = next();
    let from_pod = next();
    let pods = next();
    let policy = next();
    let admin = next();
    let groups: BTreeMap<String, Option<Vec<String>>> =
        groups.into_iter().map(|g| (g, next())).collect();
    let listings: BTreeMap<String, Vec<String>> = buckets
        .into_iter()
        .map(|b| (b, next().unwrap_or_default()))
        .collect();
    let state = SkeletonState {
        forward: forward.unwrap_or_default(),
        cni6_forward,
        antispoof,
        ingress,
        from_pod,
        pods,
        policy,
        groups,
        admin_exists: admin.is_some(),
        chains: None,
    };
    let mut out = skel.defects(&state);
    out.extend(rules::pod_defects(&pod_rules.filter, &listings));
    if let Some(bridge) = skel.bridge {
        out.extend(src_defects(&t.list_all()?, bridge, &pod_rules.sources));
    }
    Ok(out)
}

/// What is wrong with the source check of a bridged pod (from a full
/// listing): the bridge's jumps leading INPUT and FORWARD, the dispatch
/// chains, and in each of its buckets its rules before the bucket's DROP.
fn src_defects(listing: &[String], bridge: &str, sources: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let repair = rules::src_repair(listing, bridge, false);
    let dispatch = [
        format!("-A {} ", rules::SRC_CHAIN),
        format!("-A {} ", rules::SRC_ICMP_CHAIN),
        format!("-A {}", rules::SRC_GROUP_PREFIX),
        "-I INPUT ".to_string(),
        "-I FORWARD ".to_string(),
    ];
    if repair
        .iter()
        .any(|l| dispatch.iter().any(|d| l.starts_with(d.as_str())))
    {
        out.push(format!(
            "the source check of bridge {bridge} (INPUT and FORWARD jumps, {}) is missing, altered or not first",
            rules::SRC_CHAIN
        ));
    }
    for b in rules::chains_of(sources) {
        let prefix = format!("-A {b} ");
        let have: Vec<&String> = listing.iter().filter(|l| l.starts_with(&prefix)).collect();
        let drop = rules::src_bucket_drop(&b);
        let drop_at = have.iter().position(|l| **l == drop);
        for r in sources.iter().filter(|r| r.starts_with(&prefix)) {
            match (have.iter().position(|l| *l == r), drop_at) {
                (None, _) => out.push(format!("{b} lacks rule `{r}`")),
                (Some(i), Some(d)) if i > d => {
                    out.push(format!("{b} has rule `{r}` after its DROP"))
                }
                _ => {}
            }
        }
        if drop_at.is_none() {
            out.push(format!("{b} lacks its final DROP"));
        }
    }
    out
}

/// GC's work: remove the rules of every attachment of `network` whose tag
/// is not in `keep`; keeps going and reports every failure (conformance.md #49).
pub fn collect_garbage(t: &dyn Tables, network: &str, keep: &BTreeSet<String>) -> Result<()> {
    // DEL and GC change only pods' rules, so they keep a valid record.
    let before = verified_at(t, t.generation().as_ref());
    let listing = Listing::full(t)?;
    let stale: BTreeSet<String> = listing
        .pods
        .iter()
        .chain(&listing.srcs)
        .filter_map(|l| rules::parse_rule(l).and_then(|r| r.comment))
        .filter(|c| rules::tag_network(c) == Some(network) && !keep.contains(c))
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    let commits = remove_tagged(t, &stale, listing)?;
    if let Some(v) = before {
        keep_verified(t, Some(&v.at), commits, v.checks);
    }
    Ok(())
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

impl Firewall6 {
    fn add_inner(&self, req: &Request) -> Result<CniResult> {
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
        let tag = attachment(req).tag();
        let wanted = PodRules::of(&tag, &pod, &skel.policy_chain());
        install(&ipt, &skel, &wanted)?;
        Ok(res)
    }

    fn del_inner(&self, req: &Request) -> Result<()> {
        let ipt = match Ip6tables::locate() {
            Ok(i) => i,
            // No ip6tables: no rule of ours can exist.
            Err(e) => {
                eprintln!("firewall6: DEL: {e}; nothing to remove");
                return Ok(());
            }
        };
        let tag = attachment(req).tag();
        let expected = req
            .config
            .prev_result
            .as_ref()
            .and_then(|p| CniResult::parse(p).ok())
            .and_then(|r| Pod::from_result(&r).ok())
            .map(|pod| PodRules::of(&tag, &pod, "-"));
        remove_attachment(&ipt, &tag, expected)
    }

    fn check_inner(&self, req: &Request) -> Result<()> {
        let conf = FirewallConf::from_raw(&req.config.raw)?;
        let (_, pod) = prev_pod(req, "CHECK")?;
        let ipt = Ip6tables::locate()?;
        let mut defects = Vec::new();
        let skel = Skeleton {
            network: &req.config.name,
            conf: &conf,
            bridge: pod.bridge.as_deref(),
        };
        let tag = attachment(req).tag();
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

    fn gc_inner(&self, req: &Request) -> Result<()> {
        let Some(valid) = req.valid_attachments()? else {
            eprintln!(
                "firewall6: GC without cni.dev/valid-attachments: no information, nothing removed"
            );
            return Ok(());
        };
        let network = req.config.name.as_str();
        let keep: BTreeSet<String> = valid
            .iter()
            .map(|a| {
                Attachment {
                    network,
                    container_id: &a.container_id,
                    ifname: &a.ifname,
                }
                .tag()
            })
            .collect();
        let ipt = match Ip6tables::locate() {
            Ok(i) => i,
            Err(e) => {
                eprintln!("firewall6: GC: {e}; nothing to remove");
                return Ok(());
            }
        };
        collect_garbage(&ipt, network, &keep)
    }

    fn status_inner(&self) -> Result<(), cni_common::Error> {
        let unavailable = |e: Error| cni_common::Error::Unavailable(e.to_string());
        let ipt = Ip6tables::locate().map_err(unavailable)?;
        ipt.usable().map_err(unavailable)
    }
}

impl Plugin for Firewall6 {
    fn about(&self) -> &'static str {
        "firewall6: cni6 chained plugin, per-pod ip6tables ingress policy and source check"
    }

    fn supported_versions(&self) -> &'static [Version] {
        version::FROM_0_4
    }

    fn add(&self, req: &Request) -> cni_common::Result<CniResult> {
        Ok(self.add_inner(req)?)
    }

    fn del(&self, req: &Request) -> cni_common::Result<()> {
        Ok(self.del_inner(req)?)
    }

    fn check(&self, req: &Request) -> cni_common::Result<()> {
        Ok(self.check_inner(req)?)
    }

    fn gc(&self, req: &Request) -> cni_common::Result<()> {
        Ok(self.gc_inner(req)?)
    }

    fn status(&self, _req: &Request) -> cni_common::Result<()> {
        self.status_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::{Cell, RefCell};

    /// An in-memory filter table with ip6tables-restore's semantics where
    /// the verbs depend on them: a batch applies entirely or not at all; a
    /// declaration flushes; `-D` of an absent rule and a jump to a missing
    /// chain fail the batch. `fail` makes batches containing a string fail
    /// (`fail_times` times; u32::MAX = always).
    type Chains = BTreeMap<String, Vec<String>>;
    /// What someone else's commit does to the chains.
    type ForeignCommit = Box<dyn FnOnce(&mut Chains)>;

    #[derive(Default)]
    struct FakeTables {
        chains: RefCell<BTreeMap<String, Vec<String>>>,
        fail: RefCell<Option<(String, u32)>>,
        restores: Cell<u32>,
        /// Commit counter like nf_tables' when `Some` (one per table a
        /// batch changes); `None`: no generation, as on a legacy node.
        gen: Cell<Option<u32>>,
        verified_gen: RefCell<Option<Verified>>,
        /// Something else commits (and does this to the chains) while the
        /// next batch runs.
        meanwhile: RefCell<Option<ForeignCommit>>,
        batches: RefCell<Vec<String>>,
    }

    impl FakeTables {
        fn new() -> FakeTables {
            let t = FakeTables::default();
            t.chains.borrow_mut().insert(FORWARD.into(), vec![]);
            t.chains.borrow_mut().insert("INPUT".into(), vec![]);
            t.chains.borrow_mut().insert(raw(RAW_PREROUTING), vec![]);
            t
        }

        fn fail_on(&self, needle: &str, times: u32) {
            *self.fail.borrow_mut() = Some((needle.to_string(), times));
        }

        fn tagged(&self, tag: &str) -> usize {
            let needle = format!("--comment \"{tag}\"");
            self.chains
                .borrow()
                .values()
                .flatten()
                .filter(|l| l.contains(&needle))
                .count()
        }
    }

    /// The fake's key for a raw-table chain (filter chains go by name).
    fn raw(chain: &str) -> String {
        format!("raw:{chain}")
    }

    fn bad(batch: &str, why: &str) -> Error {
        Error::Exec {
            what: "fake restore".into(),
            status: "1".into(),
            stderr: format!("{why} in {batch}"),
        }
    }

    impl Tables for FakeTables {
        fn list_chain(&self, chain: &str) -> Result<Option<Vec<String>>> {
            Ok(self.chains.borrow().get(chain).cloned())
        }

        fn list_all(&self) -> Result<Vec<String>> {
            let chains = self.chains.borrow();
            let mut out = vec!["-P FORWARD ACCEPT".to_string()];
            let filter = || chains.iter().filter(|(c, _)| !c.starts_with("raw:"));
            out.extend(
                filter()
                    .filter(|(c, _)| !rules::SRC_HOOKS.contains(&c.as_str()))
                    .map(|(c, _)| format!("-N {c}")),
            );
            out.extend(filter().flat_map(|(_, r)| r.iter().cloned()));
            Ok(out)
        }

        fn list_raw_chain(&self, chain: &str) -> Result<Option<Vec<String>>> {
            Ok(self.chains.borrow().get(&raw(chain)).cloned())
        }

        fn restore(&self, batch: &str) -> Result<()> {
            self.restores.set(self.restores.get() + 1);
            self.batches.borrow_mut().push(batch.to_string());
            if let Some(change) = self.meanwhile.borrow_mut().take() {
                change(&mut self.chains.borrow_mut());
                self.gen.set(self.gen.get().map(|g| g + 1));
            }
            if let Some((needle, times)) = self.fail.borrow_mut().as_mut() {
                if *times > 0 && batch.contains(needle.as_str()) {
                    *times = times.saturating_sub(1);
                    return Err(bad(batch, "injected failure"));
                }
            }
            let mut next = self.chains.borrow().clone();
            // Chains of the current section's table, by the fake's key.
            let mut key: fn(&str) -> String = |c| c.to_string();
            // Sections that change something: one commit each.
            let mut commits = 0;
            let mut changed = false;
            for line in batch.lines() {
                if !line.starts_with("-C ") && !line.starts_with('*') && line != "COMMIT" {
                    changed = true;
                }
                if line == "COMMIT" && std::mem::take(&mut changed) {
                    commits += 1;
                }
                if let Some(table) = line.strip_prefix('*') {
                    key = if table == "raw" {
                        raw
                    } else {
                        |c| c.to_string()
                    };
                    continue;
                }
                if line == "COMMIT" {
                    continue;
                }
                if let Some(decl) = line.strip_prefix(':') {
                    let name = decl.split(' ').next().unwrap();
                    next.insert(key(name), vec![]);
                    continue;
                }
                let (op, rest) = line.split_at(3);
                let (chain, spec) = rest.split_once(' ').unwrap();
                let spec = spec
                    .strip_prefix("1 ")
                    .filter(|_| op == "-I ")
                    .unwrap_or(spec);
                let rule = format!("-A {chain} {spec}");
                let target = spec.rsplit(' ').next().unwrap();
                if !next.contains_key(&key(chain))
                    || (op != "-D "
                        && !["ACCEPT", "DROP", "RETURN"].contains(&target)
                        && !next.contains_key(&key(target)))
                {
                    return Err(bad(batch, "no chain/target by that name"));
                }
                let rules = next.get_mut(&key(chain)).unwrap();
                match op {
                    "-A " => rules.push(rule),
                    "-I " => rules.insert(0, rule),
                    "-C " if rules.contains(&rule) => {}
                    "-C " => return Err(bad(batch, "bad rule (does a matching rule exist?)")),
                    "-D " => match rules.iter().position(|r| *r == rule) {
                        Some(i) => {
                            rules.remove(i);
                        }
                        None => return Err(bad(batch, "bad rule (does a matching rule exist?)")),
                    },
                    _ => return Err(bad(batch, "unknown op")),
                }
            }
            *self.chains.borrow_mut() = next;
            self.gen.set(self.gen.get().map(|g| g + commits));
            Ok(())
        }

        fn skeleton_lock(&self) -> Result<Box<dyn std::any::Any>> {
            Ok(Box::new(()))
        }

        fn generation(&self) -> Option<Generation> {
            self.gen.get().map(|gen| Generation {
                boot: "b".repeat(36),
                netns: 1,
                gen,
            })
        }

        fn verified(&self) -> Option<Verified> {
            self.verified_gen.borrow().clone()
        }

        fn set_verified(&self, v: &Verified) {
            *self.verified_gen.borrow_mut() = Some(v.clone());
        }
    }

    impl FakeTables {
        /// A fake with a generation counter, as with the nf_tables backend.
        fn counting() -> FakeTables {
            let t = FakeTables::new();
            t.gen.set(Some(1));
            t
        }

        fn last_batch(&self) -> String {
            self.batches.borrow().last().cloned().unwrap_or_default()
        }
    }

    /// A counting fake after two ADDs of network "n": the first repairs
    /// (no record), the second checks and records.
    fn recorded() -> (FakeTables, Skeleton<'static>) {
        let t = FakeTables::counting();
        let skel = default_skel();
        install(&t, &skel, &rules_of(&skel, "a", 0x10, "c6ab00000000001")).unwrap();
        assert_eq!(t.verified(), None);
        install(&t, &skel, &rules_of(&skel, "b", 0x11, "c6ab00000000002")).unwrap();
        assert!(t.last_batch().contains("-C FORWARD"));
        assert_eq!(t.verified().map(|v| v.at), t.generation());
        (t, skel)
    }

    /// Issue 7: once a checked batch has found the skeleton whole, ADDs
    /// skip the `-C` lines while nothing else commits, and DEL keeps the
    /// record (it removes only a pod's rules).
    #[test]
    fn checks_skipped_while_nothing_else_committed() {
        let (t, skel) = recorded();
        let c = rules_of(&skel, "c", 0x12, "c6ab00000000003");
        install(&t, &skel, &c).unwrap();
        assert_eq!(t.last_batch(), c.batch(), "appends only");
        assert_eq!(t.verified().map(|v| v.at), t.generation());
        assert!(defects_of(&t, &skel, &c).unwrap().is_empty());
        remove_attachment(&t, &tag("c"), Some(c.clone())).unwrap();
        assert_eq!(t.tagged(&tag("c")), 0);
        assert_eq!(
            t.verified().map(|v| v.at),
            t.generation(),
            "DEL kept the record"
        );
        let d = rules_of(&skel, "d", 0x13, "c6ab00000000004");
        install(&t, &skel, &d).unwrap();
        assert_eq!(t.last_batch(), d.batch());
    }

    /// The record vouches for skeletons by config (admin chain, policy):
    /// an ADD of a config not seen since the last foreign commit checks,
    /// and installs what its config needs. Two configs on one node
    /// (multus, two conflists): once each one's checks have passed with
    /// nobody else committing, their ADDs in turn append only; a foreign
    /// commit brings the checks back for both.
    #[test]
    fn another_config_checks_then_both_take_turns() {
        let (t, skel) = recorded();
        let conf = FirewallConf::from_raw(&json!({"adminChain": "OPS"})).unwrap();
        let ops = Skeleton {
            network: "n",
            conf: &conf,
            bridge: Some("br0"),
        };
        let mut last = 0x12;
        let mut add = |s: &Skeleton, id: &str| -> String {
            last += 1;
            let r = rules_of(s, id, last, &format!("c6ab0000000{last:04x}"));
            install(&t, s, &r).unwrap();
            assert!(defects_of(&t, s, &r).unwrap().is_empty());
            let b = t.last_batch();
            if b == r.batch() {
                "appends".into()
            } else {
                assert!(b.contains("-C FORWARD"), "{b}");
                "checks".into()
            }
        };
        // ops: the first ADD repairs (its admin chain is new), the second
        // checks; default checks once more after that repair's commits.
        add(&ops, "c");
        assert_eq!(add(&ops, "d"), "checks");
        assert_eq!(add(&skel, "e"), "checks");
        for id in ["f", "g", "h", "i"] {
            let s = if matches!(id, "f" | "h") { &ops } else { &skel };
            assert_eq!(add(s, id), "appends", "{id}");
        }
        assert_eq!(t.verified().map(|v| v.checks.len()), Some(2));
        t.gen.set(t.gen.get().map(|g| g + 1));
        assert_eq!(add(&ops, "j"), "checks");
        assert_eq!(add(&skel, "k"), "checks");
        assert_eq!(add(&ops, "l"), "appends");
    }

    /// Without a generation (legacy backend) every ADD checks.
    #[test]
    fn no_generation_no_skipping() {
        let t = FakeTables::new();
        let skel = default_skel();
        install(&t, &skel, &rules_of(&skel, "a", 0x10, "c6ab00000000001")).unwrap();
        for (id, last) in [("b", 0x11), ("c", 0x12)] {
            install(&t, &skel, &rules_of(&skel, id, last, "c6ab00000000001")).unwrap();
            assert!(t.last_batch().contains("-C FORWARD"), "{}", t.last_batch());
        }
        assert_eq!(t.verified(), None);
    }

    /// Someone else's commit between two ADDs (here one that flushes
    /// CNI6-FORWARD) brings the checks back, and with them the repair.
    #[test]
    fn a_foreign_commit_brings_the_checks_back() {
        let (t, skel) = recorded();
        t.chains.borrow_mut().insert(FORWARD_CHAIN.into(), vec![]);
        t.gen.set(t.gen.get().map(|g| g + 1));
        let c = rules_of(&skel, "c", 0x12, "c6ab00000000003");
        install(&t, &skel, &c).unwrap();
        assert!(defects_of(&t, &skel, &c).unwrap().is_empty(), "repaired");
        assert_eq!(t.tagged(&tag("c")), c.len());
    }

    /// A commit by someone else while the unchecked batch runs: the checks
    /// run right after it, and repair what that commit broke.
    #[test]
    fn a_commit_during_the_unchecked_batch_is_checked_after_it() {
        let (t, skel) = recorded();
        *t.meanwhile.borrow_mut() = Some(Box::new(|chains| {
            chains.insert(FROM_POD_CHAIN.into(), vec![]);
        }));
        let c = rules_of(&skel, "c", 0x12, "c6ab00000000003");
        install(&t, &skel, &c).unwrap();
        assert!(defects_of(&t, &skel, &c).unwrap().is_empty(), "repaired");
        assert_eq!(t.tagged(&tag("c")), c.len());
        assert_ne!(t.verified().map(|v| v.at), t.generation());
        let d = rules_of(&skel, "d", 0x13, "c6ab00000000004");
        install(&t, &skel, &d).unwrap();
        assert!(t.last_batch().contains("-C FORWARD"));
        assert_eq!(
            t.verified().map(|v| v.at),
            t.generation(),
            "checked, recorded again"
        );
    }

    fn pod(last: u16, port: &str) -> Pod {
        Pod {
            addresses: vec![
                format!("fd00:f6::1:1:0:{last:x}").parse().unwrap(),
                format!("2001:db8:7:1:0:1:0:{last:x}").parse().unwrap(),
            ],
            host_side: Some(HostSide::BridgePort(port.into())),
            bridge: Some("br0".into()),
            mac: Some([0x02, 0xc6, 0, 0, (last >> 8) as u8, last as u8]),
        }
    }

    fn tag(id: &str) -> String {
        Attachment {
            network: "n",
            container_id: id,
            ifname: "eth0",
        }
        .tag()
    }

    /// Network "n" with the default policy (the config lives for the test
    /// process).
    fn default_skel() -> Skeleton<'static> {
        let conf = Box::leak(Box::new(FirewallConf::from_raw(&json!({})).unwrap()));
        Skeleton {
            network: "n",
            conf,
            bridge: Some("br0"),
        }
    }

    /// The rules of pod `id` (address slot `last`, host port `port`) under
    /// the skeleton's policy.
    fn rules_of(skel: &Skeleton, id: &str, last: u16, port: &str) -> PodRules {
        PodRules::of(&tag(id), &pod(last, port), &skel.policy_chain())
    }

    /// Issue 7: the first ADD also puts the MLD drop into the raw table;
    /// later ADDs check it in their one batch and put it back when it is
    /// gone, without touching the filter table's skeleton.
    #[test]
    fn mld_drop_installed_checked_and_repaired() {
        let t = FakeTables::new();
        let skel = default_skel();
        install(&t, &skel, &rules_of(&skel, "a", 0x10, "c6ab00000000001")).unwrap();
        let raw_chain = |c: &str| t.list_raw_chain(c).unwrap();
        let prerouting = || raw_chain(RAW_PREROUTING).unwrap_or_default();
        assert!(prerouting().contains(&rules::mld_jump()));
        assert!(t.chains.borrow()[FORWARD].contains(&rules::src_jump(FORWARD, "br0")));
        assert_eq!(raw_chain(MLD_CHAIN), Some(rules::mld_rules()));
        let before = t.restores.get();
        install(&t, &skel, &rules_of(&skel, "b", 0x11, "c6ab00000000002")).unwrap();
        assert_eq!(
            t.restores.get() - before,
            1,
            "one batch with the raw checks"
        );

        t.chains.borrow_mut().insert(raw(RAW_PREROUTING), vec![]);
        let filter_before = t.list_all().unwrap();
        install(&t, &skel, &rules_of(&skel, "c", 0x12, "c6ab00000000003")).unwrap();
        assert!(prerouting().contains(&rules::mld_jump()));
        assert!(t.chains.borrow()[FORWARD].contains(&rules::src_jump(FORWARD, "br0")));
        assert_eq!(raw_chain(MLD_CHAIN), Some(rules::mld_rules()));
        let added: BTreeSet<String> = t
            .list_all()
            .unwrap()
            .into_iter()
            .filter(|l| !filter_before.contains(l))
            .collect();
        let c: BTreeSet<String> = rules_of(&skel, "c", 0x12, "c6ab00000000003")
            .all()
            .into_iter()
            .collect();
        assert_eq!(added, c, "the filter table gained c's rules only");
    }

    /// A raw table that cannot be written costs the MLD drop, never the
    /// pod's rules (its source check is in the filter table).
    #[test]
    fn unusable_raw_table_does_not_fail_add() {
        let t = FakeTables::new();
        t.fail_on("*raw", u32::MAX);
        let skel = default_skel();
        let a = rules_of(&skel, "a", 0x10, "c6ab00000000001");
        install(&t, &skel, &a).unwrap();
        assert_eq!(t.tagged(&tag("a")), a.len());
        assert!(defects_of(&t, &skel, &a).unwrap().is_empty());
        assert_eq!(t.list_raw_chain(MLD_CHAIN).unwrap(), None);
    }

    /// A FORWARD jump to CNI6-FORWARD put back first (by the repair, or by
    /// hand) must not overtake the source check: the repair moves it back.
    #[test]
    fn source_check_stays_first_in_forward() {
        let t = FakeTables::new();
        let skel = default_skel();
        install(&t, &skel, &rules_of(&skel, "a", 0x10, "c6ab00000000001")).unwrap();
        t.chains.borrow_mut().insert(
            FORWARD.into(),
            vec![Skeleton::forward_jump(), rules::src_jump(FORWARD, "br0")],
        );
        let b = rules_of(&skel, "b", 0x11, "c6ab00000000002");
        assert!(!defects_of(&t, &skel, &b).unwrap().is_empty());
        ensure_skeleton(&t, &skel).unwrap();
        assert_eq!(
            t.chains.borrow()[FORWARD],
            vec![rules::src_jump(FORWARD, "br0"), Skeleton::forward_jump()]
        );
        // The FORWARD jump lost: put back behind the source check too.
        t.chains.borrow_mut().get_mut(FORWARD).unwrap().remove(1);
        install(&t, &skel, &b).unwrap();
        assert_eq!(
            t.chains.borrow()[FORWARD],
            vec![rules::src_jump(FORWARD, "br0"), Skeleton::forward_jump()]
        );
    }

    #[test]
    fn install_check_remove_on_a_fresh_table() {
        let t = FakeTables::new();
        let conf = FirewallConf::from_raw(&json!({"clusterPrefixes": ["fd00:f6::/64"]})).unwrap();
        let skel = Skeleton {
            network: "n",
            conf: &conf,
            bridge: Some("br0"),
        };
        let a = rules_of(&skel, "a", 0x10, "c6ab00000000001");
        let b = rules_of(&skel, "b", 0x11, "veth-b");
        install(&t, &skel, &a).unwrap();
        install(&t, &skel, &b).unwrap();
        // FORWARD: the source check of br0 first, then cni6's dispatch.
        assert_eq!(
            t.chains.borrow()[FORWARD],
            vec![rules::src_jump(FORWARD, "br0"), Skeleton::forward_jump()]
        );
        assert_eq!(
            t.chains.borrow()["INPUT"],
            vec![rules::src_jump("INPUT", "br0")]
        );
        assert!(defects_of(&t, &skel, &a).unwrap().is_empty());
        assert!(defects_of(&t, &skel, &b).unwrap().is_empty());
        assert_eq!(t.tagged(&tag("a")), 5);
        // The second ADD found the skeleton whole: one restore for its pod.
        let before = t.restores.get();
        install(&t, &skel, &rules_of(&skel, "c", 0x12, "c6ab00000000002")).unwrap();
        assert_eq!(t.restores.get() - before, 1);
        remove_attachment(&t, &tag("a"), Some(a.clone())).unwrap();
        remove_attachment(&t, &tag("b"), None).unwrap();
        assert_eq!(t.tagged(&tag("a")) + t.tagged(&tag("b")), 0);
        assert_eq!(t.tagged(&tag("c")), 5);
        assert!(!defects_of(&t, &skel, &a).unwrap().is_empty());
        // Idempotent.
        remove_attachment(&t, &tag("a"), Some(a)).unwrap();
    }

    /// The `-C` lead of ADD's batch: any skeleton rule ADD relies on gone
    /// (FORWARD jump, admin jump, a dispatch rule, FROM-POD, a policy rule)
    /// fails the pod's batch as a whole, and the full path puts it back.
    #[test]
    fn install_repairs_any_lost_skeleton_rule() {
        let t = FakeTables::new();
        let conf = FirewallConf::from_raw(&json!({"allowPorts": [{"port": 443}]})).unwrap();
        let skel = Skeleton {
            network: "n",
            conf: &conf,
            bridge: Some("br0"),
        };
        install(&t, &skel, &PodRules::default()).unwrap();
        let whole = t.chains.borrow().clone();
        let mut lost = skel.presence_checks();
        assert!(lost.len() >= 6, "{lost:?}");
        for (k, check) in lost.drain(..).enumerate() {
            let rule = format!("-A {}", check.strip_prefix("-C ").unwrap());
            let chain = rule.split(' ').nth(1).unwrap().to_string();
            t.chains
                .borrow_mut()
                .get_mut(&chain)
                .unwrap()
                .retain(|r| *r != rule);
            let p = rules_of(&skel, &format!("p{k}"), 0x10 + k as u16, "c6ab00000000001");
            let before = t.restores.get();
            install(&t, &skel, &p).unwrap();
            assert!(t.restores.get() - before >= 3, "{rule}: not repaired");
            // Back (a lost dispatch rule of CNI6-FORWARD comes back at the
            // end: repair() appends; CHECK then reports the order).
            assert!(t.chains.borrow()[&chain].contains(&rule), "{rule}");
            assert_eq!(t.tagged(&tag(&format!("p{k}"))), 5);
            let mut got = t.chains.borrow()[&chain].clone();
            let mut want = whole[&chain].clone();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{chain} after losing {rule}");
        }
    }

    #[test]
    fn install_repairs_a_lost_bucket_and_retries() {
        let t = FakeTables::new();
        let skel = default_skel();
        install(&t, &skel, &PodRules::default()).unwrap();
        t.chains.borrow_mut().remove("CNI6-D-10");
        let a = rules_of(&skel, "a", 0x10, "c6ab00000000001");
        install(&t, &skel, &a).unwrap();
        assert!(defects_of(&t, &skel, &a).unwrap().is_empty());
    }

    /// A node with the flat dispatch of the previous version: the next ADD
    /// converts it (groups made, dispatch chains rewritten) in the repair
    /// path, the pods added before keep their rules, which CHECK and DEL
    /// still find.
    #[test]
    fn install_converts_the_flat_layout_of_an_earlier_version() {
        let t = FakeTables::new();
        let skel = default_skel();
        let a = rules_of(&skel, "a", 0x10, "c6ab00000000001");
        install(&t, &skel, &a).unwrap();
        {
            let mut c = t.chains.borrow_mut();
            c.retain(|name, _| !name.starts_with("CNI6-PX-") && !name.starts_with("CNI6-DX-"));
            let anti: Vec<String> = (0..256)
                .map(|b| format!("-A CNI6-ANTISPOOF -m physdev --physdev-in c6{b:02x}+ -m comment --comment \"firewall6: port bucket\" -j CNI6-P-{b:02x}"))
                .chain(["-A CNI6-ANTISPOOF -m comment --comment \"firewall6: other port names\" -j CNI6-P-OTHER".to_string()])
                .collect();
            let ingress: Vec<String> = (0..256u128)
                .map(|b| format!("-A CNI6-INGRESS -d {}/::ff -m comment --comment \"firewall6: address bucket\" -j CNI6-D-{b:02x}", std::net::Ipv6Addr::from(b)))
                .collect();
            c.insert(ANTISPOOF_CHAIN.into(), anti);
            c.insert(INGRESS_CHAIN.into(), ingress);
        }
        let d = defects_of(&t, &skel, &a).unwrap();
        assert!(d.iter().any(|x| x.contains("flat layout")), "{d:?}");
        let b = rules_of(&skel, "b", 0x11, "c6ab00000000002");
        let before = t.restores.get();
        install(&t, &skel, &b).unwrap();
        assert_eq!(
            t.restores.get() - before,
            3,
            "failed fast batch, repair, pod"
        );
        assert!(defects_of(&t, &skel, &a).unwrap().is_empty());
        assert!(defects_of(&t, &skel, &b).unwrap().is_empty());
        assert_eq!(t.chains.borrow()[ANTISPOOF_CHAIN].len(), 18);
        assert_eq!(t.chains.borrow()[INGRESS_CHAIN].len(), 17);
        assert_eq!(t.tagged(&tag("a")), 5);
        remove_attachment(&t, &tag("a"), Some(a)).unwrap();
        assert_eq!(t.tagged(&tag("a")), 0);
        assert_eq!(t.tagged(&tag("b")), 5);
        // Converted: the next ADD is one restore again.
        let c = rules_of(&skel, "c", 0x12, "c6ab00000000003");
        let before = t.restores.get();
        install(&t, &skel, &c).unwrap();
        assert_eq!(t.restores.get() - before, 1);
    }

    #[test]
    fn del_retries_when_a_batch_fails_once() {
        let t = FakeTables::new();
        let skel = default_skel();
        let a = rules_of(&skel, "a", 0x10, "c6ab00000000001");
        install(&t, &skel, &a).unwrap();
        t.fail_on("-D ", 1);
        remove_attachment(&t, &tag("a"), Some(a)).unwrap();
        assert_eq!(t.tagged(&tag("a")), 0);
    }

    /// conformance.md #49: GC keeps going past a failing attachment, removes the
    /// others, and reports the failure (naming it) at the end.
    #[test]
    fn gc_keeps_going_and_reports_every_failure() {
        let t = FakeTables::new();
        let skel = default_skel();
        for (i, id) in ["a", "b", "c", "keep"].iter().enumerate() {
            let r = rules_of(&skel, id, 0x10 + i as u16, "c6ab00000000001");
            install(&t, &skel, &r).unwrap();
        }
        let other_conf = FirewallConf::from_raw(&json!({})).unwrap();
        let other = Skeleton {
            network: "m",
            conf: &other_conf,
            bridge: Some("br0"),
        };
        let m_tag = Attachment {
            network: "m",
            container_id: "x",
            ifname: "eth0",
        }
        .tag();
        install(
            &t,
            &other,
            &PodRules::of(&m_tag, &pod(0x20, "c6cd00000000001"), &other.policy_chain()),
        )
        .unwrap();
        t.fail_on(&tag("b"), u32::MAX);
        let e = collect_garbage(&t, "n", &BTreeSet::from([tag("keep")])).unwrap_err();
        let msg = cni_common::Error::from(e).to_string();
        assert!(
            msg.contains("id=b") && !msg.contains("id=a") && !msg.contains("id=c"),
            "{msg}"
        );
        assert_eq!(t.tagged(&tag("a")) + t.tagged(&tag("c")), 0);
        assert_eq!(t.tagged(&tag("b")), 5);
        assert_eq!(t.tagged(&tag("keep")), 5);
        assert_eq!(t.tagged(&m_tag), 5);
    }
}
