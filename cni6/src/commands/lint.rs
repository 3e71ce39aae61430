//! `cni6 lint [FILE|DIR]`: is this node's network configuration sound?
//! Every list is checked with the plugins' own parsers (the same errors,
//! naming the same keys, typos included) plus what only the node can
//! tell: the CNI version every plugin of the list speaks, node prefixes
//! inside the cluster ULA and not its reserved C:0::/80, `fromInterface`
//! resolvable now, `clusterPrefixes` covering the node's own ULA range,
//! prerequisites present (ip6tables, loopback and the list's plugins in
//! the bin dir, forwarding), bridge6's bridge holding no port that is
//! neither isolated nor a pod's (an uplink), no other list but multus sorting before ours,
//! and br_netfilter's IPv6 hook off (with it on, Services to pods on the
//! same node are lost).
//!
//! `install` runs the same checks on the list it is about to write. Keys
//! a plugin ignores are listed as notes: runtimes inject keys, and a
//! newer config must run on older binaries, so they are not errors.

use crate::error::{CliError, Result};
use crate::node::{self, network_configs, PLUGINS};
use crate::options::Output;
use clap::Args;
use cni_common::config::NetConf;
use cni_common::keys::unknown_keys;
use cni_common::runtime::ConfList;
use cni_common::version::{self, Version};
use ipam_prefix::config::{IpamConfig, PrefixSource, Scope};
use ipam_prefix::plan::NodePrefix;
use ipnet::Ipv6Net;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Exit status: 0 when every list is sound (notes allowed), 1 when an \
    error or warning was found, 2 on a usage error.\n\nExamples:\n  \
    cni6 lint                                   # every list in /etc/cni/net.d\n  \
    cni6 lint /etc/cni/net.d/10-cni6.conflist --cluster-ula fd8c:1f0a:77e3::/64"
)]
pub struct LintArgs {
    /// A network configuration list, or a directory of them.
    #[arg(value_name = "FILE|DIR", default_value = "/etc/cni/net.d")]
    pub path: PathBuf,

    /// The cluster's ULA /64: every ULA node prefix must lie inside it and
    /// firewall6's clusterPrefixes must cover it.
    #[arg(long, value_name = "PREFIX/64")]
    pub cluster_ula: Option<Ipv6Net>,

    /// Where the runtime looks for plugin binaries.
    #[arg(long, default_value = crate::options::DEFAULT_CNI_PATH, value_name = "DIR")]
    pub bin_dir: PathBuf,
}

/// How bad a finding is: errors and warnings make the node unsound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warning,
    Note,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    /// The file (or "the generated list" for install).
    pub source: String,
    pub message: String,
}

/// What lint asks the node. The real node is [`Host`]; tests pass fakes.
pub trait NodeFacts {
    /// The node prefix of length `len` that `fromInterface` would read now.
    fn interface_prefix(
        &self,
        ifname: &str,
        scope: Scope,
        len: u8,
    ) -> std::result::Result<NodePrefix, String>;
    fn has_ip6tables(&self) -> bool;
    /// net.ipv6.conf.all.forwarding, when readable.
    fn forwarding(&self) -> Option<bool>;
    fn has_file(&self, p: &Path) -> bool {
        p.is_file()
    }
    /// net.bridge.bridge-nf-call-ip6tables; `None` without br_netfilter.
    fn bridge_nf_call_ip6tables(&self) -> Option<bool> {
        None
    }
    /// The ports of bridge `name` that are neither isolated nor a pod's
    /// (bridge6 refuses such a bridge); empty when it does not exist.
    fn layer2_openings(&self, _bridge: &str) -> std::result::Result<Vec<String>, String> {
        Ok(vec![])
    }
    /// The CNI versions a plugin binary answers VERSION with, if it runs.
    fn plugin_versions(&self, _bin: &Path) -> Option<Vec<String>> {
        None
    }
}

/// The node lint runs on.
pub struct Host;

impl NodeFacts for Host {
    fn interface_prefix(
        &self,
        ifname: &str,
        scope: Scope,
        len: u8,
    ) -> std::result::Result<NodePrefix, String> {
        let mut nl =
            cni_common::netlink::Netlink::open().map_err(|e| format!("open netlink: {e}"))?;
        // The caller names the key; only the reason is wanted here.
        ipam_prefix::iface::resolve(&mut nl, 0, ifname, scope, len).map_err(|e| match e {
            ipam_prefix::error::IpamError::Resolve { reason, .. } => reason,
            e => cni_common::Error::from(e).to_string(),
        })
    }

    fn has_ip6tables(&self) -> bool {
        firewall6::iptables::Ip6tables::locate().is_ok()
    }

    fn forwarding(&self) -> Option<bool> {
        std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/forwarding")
            .ok()
            .map(|s| s.trim() == "1")
    }

    fn bridge_nf_call_ip6tables(&self) -> Option<bool> {
        node::bridge_nf_call_ip6tables()
    }

    fn layer2_openings(&self, bridge: &str) -> std::result::Result<Vec<String>, String> {
        node::layer2_openings(bridge)
    }

    fn plugin_versions(&self, bin: &Path) -> Option<Vec<String>> {
        let dir = bin.parent()?.to_path_buf();
        let name = bin.file_name()?.to_str()?;
        let v = cni_common::runtime::Runtime::new(vec![dir])
            .version(name)
            .ok()?;
        Some(
            v["supportedVersions"]
                .as_array()?
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
        )
    }
}

/// What a lint run knows beyond the list itself.
pub struct Context<'a> {
    pub cluster_ula: Option<Ipv6Net>,
    pub bin_dir: &'a Path,
    /// install: cni6's own plugins are about to be written, don't look for them.
    pub ours_installed_by_caller: bool,
}

/// The versions a plugin type of ours speaks; `None` for other plugins.
fn versions_of(plugin_type: &str) -> Option<&'static [Version]> {
    match plugin_type {
        "bridge6" | "ipam-prefix" => Some(version::ALL),
        "firewall6" => Some(version::FROM_0_4),
        _ => None,
    }
}

struct Lint<'a> {
    source: String,
    out: &'a mut Vec<Finding>,
}

impl Lint<'_> {
    fn push(&mut self, level: Level, message: impl Into<String>) {
        self.out.push(Finding {
            level,
            source: self.source.clone(),
            message: message.into(),
        });
    }
    fn unknown(
        &mut self,
        plugin: &str,
        path: &str,
        obj: &Map<String, Value>,
        known: &[&'static str],
    ) {
        for k in unknown_keys(obj, known) {
            self.push(
                Level::Note,
                format!("{plugin}: key {path}{k} is not one {plugin} knows; it is ignored"),
            );
        }
    }
}

/// Lint one list's bytes; `source` names it in findings.
pub fn lint_list(source: &str, bytes: &[u8], ctx: &Context, node: &dyn NodeFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut l = Lint {
        source: source.to_string(),
        out: &mut out,
    };
    let list = match ConfList::parse(bytes) {
        Ok(list) => list,
        Err(e) => {
            l.push(Level::Error, format!("unreadable by the runtime: {e}"));
            return out;
        }
    };
    let types: Vec<String> = list.plugin_types().iter().map(|t| t.to_string()).collect();
    let mut node_ulas: Vec<Ipv6Net> = Vec::new();
    let mut has_global = false;
    let mut cluster_prefixes: Option<Vec<Ipv6Net>> = None;
    for (i, plugin) in list.plugins.iter().enumerate() {
        let ptype = types[i].as_str();
        if let Some(vs) = versions_of(ptype) {
            if Version::parse(&list.cni_version, vs).is_err() {
                l.push(
                    Level::Error,
                    format!(
                        "cniVersion {:?}: {ptype} speaks {} only{}; use 1.0.0 (or 1.1.0 where \
                         the runtime supports it)",
                        list.cni_version,
                        vs.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", "),
                        if ptype == "firewall6" {
                            " (it needs CHECK, 0.4.0+): with an older list it refuses ADD and \
                             DEL, so a pod could never be removed"
                        } else {
                            ""
                        }
                    ),
                );
            }
        }
        let is_ours = PLUGINS.contains(&ptype);
        let bin = ctx.bin_dir.join(ptype);
        // install writes our plugins itself; an empty type is reported by the parser.
        let skip = ptype.is_empty() || (is_ours && ctx.ours_installed_by_caller);
        if !skip && !node.has_file(&bin) {
            l.push(
                Level::Error,
                format!(
                    "plugin {ptype} not found at {}: every ADD would fail",
                    bin.display()
                ),
            );
        } else if !is_ours && !skip {
            // Another project's plugin: ask the binary which versions it speaks.
            if let Some(vs) = node.plugin_versions(&bin) {
                if !vs.contains(&list.cni_version) {
                    l.push(
                        Level::Error,
                        format!(
                            "cniVersion {:?}: plugin {ptype} at {} speaks {} only",
                            list.cni_version,
                            bin.display(),
                            vs.join(", ")
                        ),
                    );
                }
            }
        }
        // The object as the runtime sends it.
        let mut obj = plugin.clone();
        obj.insert("name".into(), json!(list.name));
        obj.insert("cniVersion".into(), json!(list.cni_version));
        let conf = match serde_json::to_vec(&obj)
            .map_err(|e| e.to_string())
            .and_then(|b| NetConf::parse(&b).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                l.push(Level::Error, format!("plugin {i} ({ptype}): {e}"));
                continue;
            }
        };
        match ptype {
            "bridge6" => {
                l.unknown("bridge6", "", plugin, bridge6::config::KNOWN_KEYS);
                match bridge6::config::Config::parse(&conf) {
                    Ok(c) => match node.layer2_openings(&c.bridge) {
                        Ok(open) if !open.is_empty() => l.push(
                            Level::Error,
                            format!(
                                "bridge6: network {}: every ADD would fail: {}",
                                list.name,
                                bridge6::error::shared_bridge_problem(&c.bridge, &open)
                            ),
                        ),
                        Ok(_) => {}
                        Err(e) => l.push(
                            Level::Warning,
                            format!("bridge6: cannot list the ports of bridge {}: {e}", c.bridge),
                        ),
                    },
                    Err(e) => l.push(Level::Error, format!("bridge6: {e}")),
                }
            }
            "firewall6" => {
                l.unknown("firewall6", "", plugin, firewall6::config::KNOWN_KEYS);
                match firewall6::config::FirewallConf::from_raw(&conf.raw) {
                    Ok(f) => cluster_prefixes = Some(f.cluster_prefixes),
                    Err(e) => l.push(
                        Level::Error,
                        format!("firewall6: {}", cni_common::Error::from(e)),
                    ),
                }
                if !node.has_ip6tables() {
                    l.push(
                        Level::Error,
                        "firewall6 needs ip6tables (and ip6tables-restore) on the node: none found",
                    );
                }
            }
            _ => {}
        }
        let ipam_is_ours = plugin
            .get("ipam")
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str)
            == Some("ipam-prefix");
        if ipam_is_ours {
            if let Some(Value::Object(ipam)) = plugin.get("ipam") {
                l.unknown(
                    "ipam-prefix",
                    "ipam.",
                    ipam,
                    ipam_prefix::config::KNOWN_KEYS,
                );
                if let Some(Value::Array(entries)) = ipam.get("prefixes") {
                    for (k, e) in entries.iter().enumerate() {
                        if let Value::Object(e) = e {
                            l.unknown(
                                "ipam-prefix",
                                &format!("ipam.prefixes[{k}]."),
                                e,
                                ipam_prefix::config::PREFIX_KEYS,
                            );
                        }
                    }
                }
            }
            match IpamConfig::parse(&conf) {
                Ok(cfg) => {
                    for (k, p) in cfg.prefixes.iter().enumerate() {
                        let n = match p {
                            PrefixSource::Node(n) => *n,
                            PrefixSource::FromInterface { ifname, scope } => {
                                match node.interface_prefix(ifname, *scope, cfg.node_len) {
                                    Ok(n) => n,
                                    Err(e) => {
                                        l.push(
                                            Level::Error,
                                            format!(
                                                "ipam.prefixes[{k}].fromInterface {ifname:?} \
                                                 ({}): not resolvable on this node now: {e}",
                                                scope.as_str()
                                            ),
                                        );
                                        continue;
                                    }
                                }
                            }
                        };
                        node_prefix_findings(&mut l, k, n, ctx.cluster_ula);
                        if ipam_prefix::iface::in_scope(n.net().network(), Scope::Ula) {
                            node_ulas.push(n.net());
                        } else {
                            has_global = true;
                        }
                    }
                }
                Err(e) => l.push(
                    Level::Error,
                    format!("ipam-prefix: {}", cni_common::Error::from(e)),
                ),
            }
        }
    }
    let ours = types.iter().any(|t| PLUGINS.contains(&t.as_str()));
    match cluster_prefixes {
        Some(cp) => {
            if let Some(c) = ctx.cluster_ula {
                if !cp.iter().any(|p| p.contains(&c)) {
                    l.push(
                        Level::Error,
                        format!(
                            "firewall6 clusterPrefixes {} do not cover the cluster ULA {c}: \
                             other nodes' pods would count as outside and be dropped",
                            show(&cp)
                        ),
                    );
                }
            }
            for n in &node_ulas {
                if !cp.iter().any(|p| p.contains(n)) {
                    l.push(
                        Level::Error,
                        format!(
                            "firewall6 clusterPrefixes {} do not cover this node's ULA prefix \
                             {n}: add the cluster ULA /64",
                            show(&cp)
                        ),
                    );
                }
            }
        }
        None if has_global => l.push(
            Level::Warning,
            "no firewall6 in the chain: pods with a global address are open to the internet",
        ),
        None => {}
    }
    if ours && types.iter().any(|t| t == "bridge6") && node.forwarding() == Some(false) {
        l.push(
            Level::Warning,
            "net.ipv6.conf.all.forwarding is 0: pods reach nothing beyond the node until the \
             first ADD turns it on (`cni6 install --prepare-node` sets it now)",
        );
    }
    out
}

fn show(p: &[Ipv6Net]) -> String {
    if p.is_empty() {
        "(none)".into()
    } else {
        format!(
            "[{}]",
            p.iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn node_prefix_findings(l: &mut Lint, k: usize, n: NodePrefix, cluster: Option<Ipv6Net>) {
    if n.is_reserved_vip() {
        l.push(
            Level::Error,
            format!(
                "ipam.prefixes[{k}] gives {n}: {}",
                ipam_prefix::config::RESERVED_EXPECTED
            ),
        );
    }
    if let Some(c) = cluster {
        let ula = ipam_prefix::iface::in_scope(n.net().network(), Scope::Ula);
        if ula && !c.contains(&n.net()) {
            l.push(
                Level::Error,
                format!("ipam.prefixes[{k}] gives {n}, outside the cluster ULA {c}"),
            );
        }
    }
}

/// Node-wide findings for a conf dir: loopback beside the plugins, and no
/// other list sorting before the first one of cni6 (multus in front is
/// fine: it delegates; the rule install applies too,
/// [`node::shadowing_configs`]).
pub fn lint_dir_order(
    dir: &Path,
    names: &[String],
    ours: &[bool],
    bin_dir: &Path,
    node: &dyn NodeFacts,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let src = dir.display().to_string();
    if let Some(first_ours) = ours.iter().position(|o| *o) {
        let in_front = node::shadowing_configs(dir, names, &names[first_ours]);
        if !in_front.is_empty() {
            out.push(Finding {
                level: Level::Error,
                source: src.clone(),
                message: format!(
                    "{} sorts before {}: the runtime uses the first list it finds, so pods do \
                     not get cni6 (only multus may sort first: it delegates)",
                    in_front.join(", "),
                    names[first_ours]
                ),
            });
        }
        let lo = bin_dir.join("loopback");
        if !node.has_file(&lo) {
            out.push(Finding {
                level: Level::Error,
                source: src,
                message: format!(
                    "loopback not found at {}: containerd sets up every pod's lo with it",
                    lo.display()
                ),
            });
        }
    }
    out
}

/// Is this list one of cni6's (any plugin of ours in it)?
fn is_cni6_list(bytes: &[u8]) -> bool {
    ConfList::parse(bytes).is_ok_and(|l| l.plugin_types().iter().any(|t| PLUGINS.contains(t)))
}

/// What is wrong with the node itself for cni6's pods (not with a list):
/// br_netfilter's IPv6 hook on. Not part of install's preflight: the list
/// is right regardless, and `--prepare-node` / `--watch` turn the hook off.
pub fn node_findings(source: &str, node: &dyn NodeFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    if node.bridge_nf_call_ip6tables() == Some(true) {
        out.push(Finding {
            level: Level::Error,
            source: source.to_string(),
            message: node::BRIDGE_NF_PROBLEM.to_string(),
        });
    }
    out
}

/// Lint a file or every list of a directory.
pub fn lint_path(a: &LintArgs, node: &dyn NodeFacts) -> Result<Vec<Finding>> {
    let ctx = Context {
        cluster_ula: a.cluster_ula,
        bin_dir: &a.bin_dir,
        ours_installed_by_caller: false,
    };
    if a.path.is_dir() {
        let names = network_configs(&a.path)?;
        let mut findings = Vec::new();
        let mut ours = Vec::new();
        let multus_first = names
            .first()
            .and_then(|n| std::fs::read(a.path.join(n)).ok())
            .is_some_and(|b| node::is_multus(&b));
        for (i, n) in names.iter().enumerate() {
            let p = a.path.join(n);
            match std::fs::read(&p) {
                Ok(b) => {
                    ours.push(is_cni6_list(&b));
                    let mut f = lint_list(&p.display().to_string(), &b, &ctx, node);
                    // The runtime uses the first list only: what is wrong in
                    // a later one does not touch pods (unless multus, first,
                    // delegates to others).
                    if i > 0 && !multus_first {
                        for x in f.iter_mut().filter(|x| x.level != Level::Note) {
                            x.level = Level::Note;
                            x.message =
                                format!("(unused: the runtime uses {}) {}", names[0], x.message);
                        }
                    }
                    findings.extend(f);
                }
                Err(e) => {
                    ours.push(false);
                    findings.push(Finding {
                        level: Level::Error,
                        source: p.display().to_string(),
                        message: format!("unreadable: {e}"),
                    });
                }
            }
        }
        if names.is_empty() {
            findings.push(Finding {
                level: Level::Error,
                source: a.path.display().to_string(),
                message: "no network configuration: the runtime has no network for pods".into(),
            });
        }
        findings.extend(lint_dir_order(&a.path, &names, &ours, &a.bin_dir, node));
        if ours.iter().any(|o| *o) {
            findings.extend(node_findings(&a.path.display().to_string(), node));
        }
        Ok(findings)
    } else {
        let b = std::fs::read(&a.path)
            .map_err(|e| CliError::Usage(format!("{}: cannot read ({e})", a.path.display())))?;
        let source = a.path.display().to_string();
        let mut findings = lint_list(&source, &b, &ctx, node);
        if is_cni6_list(&b) {
            findings.extend(node_findings(&source, node));
        }
        Ok(findings)
    }
}

/// Errors and warnings make a configuration unsound.
pub fn unsound(f: &[Finding]) -> usize {
    f.iter().filter(|f| f.level != Level::Note).count()
}

pub fn print(findings: &[Finding], o: &mut Output) -> Result<()> {
    for f in findings {
        o.line(format!("{}: {}: {}", f.source, f.level.as_str(), f.message))?;
    }
    Ok(())
}

pub fn run(a: &LintArgs, o: &mut Output) -> Result<()> {
    let findings = lint_path(a, &Host)?;
    let bad = unsound(&findings);
    if o.json {
        let v: Vec<Value> = findings
            .iter()
            .map(|f| json!({"source": f.source, "level": f.level.as_str(), "message": f.message}))
            .collect();
        o.json(&json!({"sound": bad == 0, "findings": v}))?;
    } else {
        print(&findings, o)?;
        if bad == 0 {
            o.line(format!("{}: sound", a.path.display()))?;
        }
    }
    if bad == 0 {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{bad} error(s)/warning(s) in {}",
            a.path.display()
        )))
    }
}
