//! The node's live ruleset, as each verb changes or reads it: install a
//! pod's rules (repairing the skeleton when its checks fail), remove an
//! attachment's tagged rules, judge them for CHECK, collect garbage.
//! All through [`Tables`], so the tests drive a fake table.

use crate::error::{Error, Result};
use crate::generation::{self, Generation, Verified};
use crate::iptables::Tables;
use crate::legacy;
use crate::rules::{
    self, HostSide, Pod, Skeleton, SkeletonState, ANTISPOOF_CHAIN, FORWARD, FORWARD_CHAIN,
    FROM_POD_CHAIN, INGRESS_CHAIN, MLD_CHAIN, PODS_CHAIN, RAW_PREROUTING, TO_PODS_CHAIN,
};
use std::collections::{BTreeMap, BTreeSet};

/// How often DEL/GC re-list and retry when a rule vanished between the
/// listing and the batch (a concurrent DEL of the same attachment).
const DELETE_ATTEMPTS: usize = 3;

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
/// once more: no `ip6tables -S` process on the usual path (process starts
/// were most of firewall6's ADD). Other configs' digests the record holds
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
        TO_PODS_CHAIN,
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
    let to_pods = next();
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
        to_pods,
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

#[cfg(test)]
mod tests;
