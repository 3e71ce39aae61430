//! `cni6 status`: what cni6 holds on this node, read from the same places
//! the plugins use — the network configurations (which networks, which
//! data directory and bridge), ipam-prefix's store (one record per
//! attachment, with the pod's name and namespace), the runtime's libcni
//! cache (the pod's netns), the kernel (host veth, bridge and its gateway
//! addresses) and ip6tables (the firewall skeleton).
//!
//! It changes nothing: the store is read without its lock (the lock's
//! opener would also release records of earlier boots, which is the
//! plugins' job), so a record being written at that instant may be
//! missed; what it cannot read it reports. A record is *leaked* when the
//! attachment it describes cannot exist any more: its host veth is gone,
//! the netns its runtime cached is gone, or it was made in an earlier boot.
//! `cni6 gc` frees them. The host veths are judged only where the
//! network's bridge is visible: from another network namespace every veth
//! looks gone.
//!
//! It is a health check: it exits 1 when something is wrong — a leaked
//! allocation, a bridge address no network in use explains (a stale
//! gateway), a host veth or firewall rule of no allocation, a network
//! configuration it cannot read, a prefix it cannot resolve, or a plugin
//! whose CNI STATUS fails (asked at CNI 1.1.0 whatever the list's version,
//! so a missing prerequisite is found on 1.0.0 lists too).

use crate::cli::Output;
use crate::commands::install::network_configs;
use crate::error::{CliError, Result};
use clap::Args;
use cni_common::attachment::Attachment;
use cni_common::config::NetConf;
use cni_common::netlink::Netlink;
use cni_common::runtime::{ConfList, Runtime, DEFAULT_CACHE_DIR};
use ipam_prefix::config::IpamConfig;
use ipam_prefix::store::{current_boot_id, Record};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Reads only; run it on the node (inside the node's network namespace). \
    A LEAKED allocation holds an address nobody uses: `cni6 gc` lists and frees them."
)]
pub struct StatusArgs {
    /// Only this network.
    #[arg(long, value_name = "NAME")]
    pub network: Option<String>,

    /// Where the runtime's network configurations are.
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "DIR")]
    pub conf_dir: PathBuf,

    /// Read this one configuration list instead of --conf-dir.
    #[arg(long, value_name = "FILE", conflicts_with = "conf_dir")]
    pub conflist: Option<PathBuf>,

    /// The IPAM data directory, overriding the configuration's ipam.dataDir.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// The runtime's libcni cache (where each attachment's netns is recorded).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,

    /// Directories searched for the plugins asked for CNI STATUS,
    /// ':'-separated [default: $CNI_PATH, else /opt/cni/bin].
    #[arg(long, value_name = "DIR:DIR")]
    pub cni_path: Option<String>,
}

/// One network of cni6 found in a configuration.
#[derive(Debug, Clone)]
pub struct Network {
    pub name: String,
    pub source: PathBuf,
    pub data_dir: PathBuf,
    pub bridge: String,
    pub ipam: std::result::Result<IpamConfig, String>,
    pub has_firewall: bool,
    /// The whole list, for the plugins' STATUS.
    pub list: ConfList,
}

/// The plugin object as the runtime would send it.
fn plugin_conf(list: &ConfList, plugin: &serde_json::Map<String, Value>) -> Option<NetConf> {
    let mut obj = plugin.clone();
    obj.insert("name".into(), json!(list.name));
    obj.insert("cniVersion".into(), json!(list.cni_version));
    NetConf::parse(&serde_json::to_vec(&obj).ok()?).ok()
}

/// The cni6 networks of one list: the bridge6 plugin (or any plugin whose
/// IPAM is ipam-prefix) names the store and the bridge.
pub fn networks_of(path: &Path, list: &ConfList) -> Vec<Network> {
    let has_firewall = list.plugin_types().contains(&"firewall6");
    let mut out = Vec::new();
    for p in &list.plugins {
        let ipam_type = p
            .get("ipam")
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str);
        if ipam_type != Some("ipam-prefix") {
            continue;
        }
        let Some(conf) = plugin_conf(list, p) else {
            continue;
        };
        let data_dir = ipam_prefix::config::data_dir(&conf)
            .unwrap_or_else(|_| PathBuf::from(ipam_prefix::config::DEFAULT_DATA_DIR));
        let bridge = bridge6::config::Config::parse(&conf)
            .map(|c| c.bridge)
            .unwrap_or_else(|_| bridge6::config::DEFAULT_BRIDGE.to_string());
        out.push(Network {
            name: list.name.clone(),
            source: path.to_path_buf(),
            data_dir,
            bridge,
            ipam: IpamConfig::parse(&conf).map_err(|e| cni_common::Error::from(e).to_string()),
            has_firewall,
            list: list.clone(),
        });
    }
    out
}

/// One allocation as the store records it, checked against the node.
#[derive(Debug, Clone)]
pub struct Allocation {
    pub file: String,
    pub record: Option<Record>,
    pub host_veth: Option<String>,
    pub netns: Option<String>,
    pub leaked: Vec<String>,
}

impl Allocation {
    /// The pod of this allocation no longer exists: its record is from an
    /// earlier boot, or the netns its runtime cached is gone, or (no cache
    /// record) its host veth is gone — a veth dies with its netns. A host
    /// veth gone while the netns lives is a broken pod, not a free address.
    pub fn pod_gone(&self) -> bool {
        let has = |r: &str| self.leaked.iter().any(|l| l == r);
        self.record.is_some()
            && (has(EARLIER_BOOT) || has(NETNS_GONE) || (self.netns.is_none() && has(VETH_GONE)))
    }
}

const VETH_GONE: &str = "host veth gone";
const NETNS_GONE: &str = "netns gone";
const EARLIER_BOOT: &str = "made in an earlier boot";

/// Is a bridge of this name visible from this network namespace?
pub fn bridge_visible(name: &str) -> bool {
    let Ok(mut nl) = Netlink::open() else {
        return false;
    };
    matches!(bridge6::link::by_name(&mut nl, name), Ok(Some(l)) if l.is_bridge())
}

/// A cached netns path is judged gone only when its directory is visible
/// here (a container without the host's /var/run/netns sees none).
fn netns_gone(ns: &str) -> bool {
    let p = Path::new(ns);
    !p.exists() && p.parent().is_some_and(Path::exists)
}

fn link_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Every record of `<data_dir>/<network>/attachments`, without the lock.
pub fn allocations(net: &Network, rt: &Runtime) -> Result<Vec<Allocation>> {
    let dir = net.data_dir.join(&net.name).join("attachments");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(CliError::Failed(format!("list {}: {e}", dir.display()))),
    };
    let boot = current_boot_id().ok();
    let bridge_here = bridge_visible(&net.bridge);
    let mut files: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let rec = std::fs::read(dir.join(&file))
            .ok()
            .and_then(|b| serde_json::from_slice::<Record>(&b).ok());
        let Some(rec) = rec else {
            out.push(Allocation {
                file,
                record: None,
                host_veth: None,
                netns: None,
                leaked: vec!["unreadable record".into()],
            });
            continue;
        };
        let mut leaked = Vec::new();
        let veth = bridge6::attachment::host_veth(&Attachment {
            network: net.name.clone(),
            container_id: rec.container_id.clone(),
            ifname: rec.ifname.clone(),
        });
        if bridge_here && !link_exists(&veth) {
            leaked.push(VETH_GONE.to_string());
        }
        let netns = rt
            .cached_record(&net.name, &rec.container_id, &rec.ifname)
            .map(|c| c.netns)
            .filter(|n| !n.is_empty());
        if let Some(ns) = &netns {
            if netns_gone(ns) {
                leaked.push(NETNS_GONE.to_string());
            }
        }
        if boot.as_deref().is_some_and(|b| b != rec.boot_id) {
            leaked.push(EARLIER_BOOT.to_string());
        }
        out.push(Allocation {
            file,
            record: Some(rec),
            host_veth: Some(veth),
            netns,
            leaked,
        });
    }
    Ok(out)
}

/// The node prefixes, pod ranges and gateways of a network.
pub fn prefixes(net: &Network) -> std::result::Result<Vec<(String, String, String)>, String> {
    let cfg = net.ipam.as_ref().map_err(Clone::clone)?;
    let nodes = ipam_prefix::iface::node_prefixes(cfg)
        .map_err(|e| cni_common::Error::from(e).to_string())?;
    Ok(nodes
        .iter()
        .map(|n| {
            let r = n.pod_range(cfg.subnet_id);
            (n.to_string(), r.to_string(), r.gateway().to_string())
        })
        .collect())
}

/// The bridge: `None` when it does not exist, else its global addresses.
pub fn bridge_addresses(name: &str) -> std::result::Result<Option<Vec<String>>, String> {
    let mut nl = Netlink::open().map_err(|e| format!("open netlink: {e}"))?;
    let Some(link) = nl
        .link_by_name(name)
        .map_err(|e| format!("look up {name}: {e}"))?
    else {
        return Ok(None);
    };
    let addrs = nl
        .ipv6_addresses(link.header.index)
        .map_err(|e| format!("addresses of {name}: {e}"))?;
    Ok(Some(
        addrs
            .iter()
            .filter(|a| (u128::from(a.addr) >> 118) != 0x3fa) // not fe80::/10
            .map(|a| format!("{}/{}", a.addr, a.prefix_len))
            .collect(),
    ))
}

/// Is the node-wide firewall skeleton in place (FORWARD jumps to ours)?
pub fn firewall_skeleton() -> std::result::Result<bool, String> {
    use firewall6::rules::{FORWARD, FORWARD_CHAIN};
    let ipt = firewall6::iptables::Ip6tables::locate().map_err(|e| e.to_string())?;
    let fwd = ipt.list_chain(FORWARD).map_err(|e| e.to_string())?;
    let ours = ipt.list_chain(FORWARD_CHAIN).map_err(|e| e.to_string())?;
    let jump = format!("-j {FORWARD_CHAIN}");
    Ok(ours.is_some() && fwd.unwrap_or_default().iter().any(|l| l.ends_with(&jump)))
}

pub fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// The cni6 networks of the node and the configurations that could not be
/// read (a problem: the runtime may be unable to read them too).
fn find_networks(a: &StatusArgs) -> Result<(Vec<Network>, Vec<String>)> {
    let files: Vec<PathBuf> = match &a.conflist {
        Some(f) => vec![f.clone()],
        None => network_configs(&a.conf_dir)?
            .into_iter()
            .map(|n| a.conf_dir.join(n))
            .collect(),
    };
    let mut nets = Vec::new();
    let mut unreadable = Vec::new();
    for f in files {
        let list = match ConfList::from_file(&f) {
            Ok(l) => l,
            Err(e) if a.conflist.is_some() => {
                return Err(CliError::cni(format!("load {}", f.display()), e))
            }
            Err(e) => {
                unreadable.push(format!(
                    "unreadable network configuration {}: {e}",
                    f.display()
                ));
                continue;
            }
        };
        for mut n in networks_of(&f, &list) {
            if a.network.as_ref().is_some_and(|w| w != &n.name) {
                continue;
            }
            if nets.iter().any(|o: &Network| o.name == n.name) {
                continue; // the runtime uses the first list of a name
            }
            if let Some(d) = &a.data_dir {
                n.data_dir = d.clone();
            }
            nets.push(n);
        }
    }
    if nets.is_empty() {
        for u in &unreadable {
            eprintln!("cni6: {u}");
        }
        return Err(CliError::Failed(format!(
            "no cni6 network{} in {}",
            a.network
                .as_ref()
                .map(|n| format!(" named {n}"))
                .unwrap_or_default(),
            a.conflist.as_ref().unwrap_or(&a.conf_dir).display()
        )));
    }
    Ok((nets, unreadable))
}

/// Host veths on the network's bridge, carrying its alias, that belong to
/// no allocation.
pub fn orphan_veths(
    net: &Network,
    allocs: &[Allocation],
) -> std::result::Result<Vec<String>, String> {
    let mut nl = Netlink::open().map_err(|e| format!("open netlink: {e}"))?;
    let Some(br) = bridge6::link::by_name(&mut nl, &net.bridge).map_err(|e| e.to_string())? else {
        return Ok(vec![]);
    };
    let ports = bridge6::link::bridge_ports(&mut nl, br.index).map_err(|e| e.to_string())?;
    Ok(ports
        .into_iter()
        .filter(|p| {
            p.alias
                .as_deref()
                .and_then(bridge6::attachment::alias_network)
                == Some(net.name.as_str())
        })
        .filter(|p| {
            !allocs
                .iter()
                .any(|a| a.host_veth.as_deref() == Some(&p.name))
        })
        .map(|p| p.name)
        .collect())
}

/// The comment of an `ip6tables -S` rule line, unquoted.
fn rule_comment(line: &str) -> Option<&str> {
    let rest = line.split_once("--comment ")?.1;
    match rest.strip_prefix('"') {
        Some(q) => q.split_once('"').map(|(c, _)| c),
        None => rest.split(' ').next(),
    }
}

/// firewall6's per-pod tags of this network that belong to no allocation.
pub fn orphan_rules(
    net: &Network,
    allocs: &[Allocation],
) -> std::result::Result<Vec<String>, String> {
    let ipt = firewall6::iptables::Ip6tables::locate().map_err(|e| e.to_string())?;
    let tags: Vec<String> = allocs
        .iter()
        .filter_map(|a| a.record.as_ref())
        .map(|r| {
            firewall6::rules::tag(&Attachment {
                network: net.name.clone(),
                container_id: r.container_id.clone(),
                ifname: r.ifname.clone(),
            })
        })
        .collect();
    let mut out: Vec<String> = Vec::new();
    for line in ipt.list_all().map_err(|e| e.to_string())? {
        let Some(c) = rule_comment(&line) else {
            continue;
        };
        if firewall6::rules::tag_network(c) == Some(net.name.as_str())
            && !tags.iter().any(|t| t == c)
            && !out.iter().any(|o| o == c)
        {
            out.push(c.to_string());
        }
    }
    Ok(out)
}

/// Addresses on `bridge` that no pod range of a network using it explains:
/// a gateway left from a configuration no longer in use black-holes the
/// pods of whichever node owns that range. `None` when some network on the
/// bridge has unresolvable prefixes (nothing can be judged then).
pub fn stale_bridge_addresses(addrs: &[String], gateways: &[String]) -> Vec<String> {
    addrs
        .iter()
        .filter(|a| {
            let ip = a.split('/').next().unwrap_or(a);
            !gateways.iter().any(|g| g == ip)
        })
        .cloned()
        .collect()
}

pub fn run(a: &StatusArgs, o: &mut Output) -> Result<()> {
    let rt =
        Runtime::new(crate::cli::plugin_dirs(a.cni_path.as_deref())).with_cache_dir(&a.cache_dir);
    let (nets, mut problems) = find_networks(a)?;
    let now = now();
    let mut json_nets = Vec::new();
    // The gateways every network on a bridge explains, over all networks
    // (two networks may share one bridge); None once one is unknown.
    let mut gateways: std::collections::HashMap<&str, Option<Vec<String>>> = Default::default();
    let all_prefixes: Vec<_> = nets.iter().map(prefixes).collect();
    for (net, p) in nets.iter().zip(&all_prefixes) {
        let e = gateways.entry(net.bridge.as_str()).or_insert(Some(vec![]));
        match (e.as_mut(), p) {
            (Some(g), Ok(p)) => g.extend(p.iter().map(|(_, _, gw)| gw.clone())),
            _ => *e = None,
        }
    }
    for (i, net) in nets.iter().enumerate() {
        let allocs = allocations(net, &rt)?;
        let prefixes = &all_prefixes[i];
        let bridge = bridge_addresses(&net.bridge);
        let firewall = net.has_firewall.then(firewall_skeleton);
        let mut found = Vec::new();
        let gone = allocs.iter().filter(|a| a.pod_gone()).count();
        if gone > 0 {
            found.push(format!(
                "{gone} leaked allocation(s) whose pod is gone: free them with \
                 `cni6 gc --network {} --leaked`",
                net.name
            ));
        }
        // The rest: a host veth gone while the pod's netns lives (its
        // network is broken, its address must not be reused yet), or an
        // unreadable record.
        for a in allocs
            .iter()
            .filter(|a| !a.leaked.is_empty() && !a.pod_gone())
        {
            found.push(match &a.record {
                Some(r) => format!(
                    "attachment {}/{} is broken ({}) but its pod's netns still exists: \
                     delete or restart the pod (its runtime runs DEL), or `cni6 detach \
                     --id {} --ifname {}` with the network's conflist",
                    r.container_id,
                    r.ifname,
                    a.leaked.join(", "),
                    r.container_id,
                    r.ifname
                ),
                None => format!(
                    "unreadable allocation record {} in {}",
                    a.file,
                    net.data_dir.join(&net.name).join("attachments").display()
                ),
            });
        }
        if let Err(e) = prefixes {
            found.push(format!("node prefixes unknown: {e}"));
        }
        match &bridge {
            Ok(Some(addrs)) => {
                if let Some(Some(g)) = gateways.get(net.bridge.as_str()) {
                    for st in stale_bridge_addresses(addrs, g) {
                        found.push(format!(
                            "stale address {st} on bridge {}: no network in use has this pod \
                             range (a gateway of an old configuration black-holes that range); \
                             remove it with `ip -6 addr del {st} dev {}`",
                            net.bridge, net.bridge
                        ));
                    }
                }
                if let Ok(p) = prefixes {
                    for (_, _, g) in p {
                        if !allocs.is_empty()
                            && !addrs.iter().any(|a| a.split('/').next() == Some(g))
                        {
                            found.push(format!("gateway {g} missing on bridge {}", net.bridge));
                        }
                    }
                }
                match orphan_veths(net, &allocs) {
                    Ok(o) => found.extend(o.into_iter().map(|v| {
                        format!("orphan host veth {v} (no allocation): `cni6 gc --network {} --leaked` or `ip link del {v}`", net.name)
                    })),
                    Err(e) => found.push(format!("cannot list ports of {}: {e}", net.bridge)),
                }
            }
            Ok(None) if !allocs.is_empty() => found.push(format!(
                "bridge {} not visible from this network namespace though {} allocation(s) \
                 exist: run status in the node's network namespace (leaks not judged)",
                net.bridge,
                allocs.len()
            )),
            Ok(None) => {}
            Err(e) => found.push(format!("bridge {}: {e}", net.bridge)),
        }
        match &firewall {
            Some(Ok(false)) if !allocs.is_empty() => found.push(
                "firewall skeleton missing while pods are attached: they are unfiltered".into(),
            ),
            Some(Err(e)) => found.push(format!("firewall unknown: {e}")),
            _ => {}
        }
        if net.has_firewall && matches!(firewall, Some(Ok(_))) {
            match orphan_rules(net, &allocs) {
                Ok(o) => found.extend(
                    o.into_iter()
                        .map(|t| format!("orphan firewall rules tagged {t:?} (no allocation)")),
                ),
                Err(e) => found.push(format!("cannot list firewall rules: {e}")),
            }
        }
        if let Err(e) = crate::commands::plugin_status::status_at_1_1(&rt, &net.list) {
            found.push(format!(
                "plugin STATUS (asked at CNI 1.1.0): {e} [CNI error code {}]{}",
                e.code(),
                if e.details().is_empty() {
                    String::new()
                } else {
                    format!(" ({})", e.details())
                }
            ));
        }
        if o.json {
            let list: Vec<Value> = allocs
                .iter()
                .map(|al| {
                    let r = al.record.as_ref();
                    json!({
                        "file": al.file,
                        "podNamespace": r.and_then(|r| r.pod_namespace.clone()),
                        "podName": r.and_then(|r| r.pod_name.clone()),
                        "containerID": r.map(|r| r.container_id.clone()),
                        "ifname": r.map(|r| r.ifname.clone()),
                        "addresses": r.map(|r| r.addresses.clone()).unwrap_or_default(),
                        "hostVeth": al.host_veth,
                        "netns": al.netns,
                        "ageSeconds": r.map(|r| now.saturating_sub(r.created)),
                        "leaked": !al.leaked.is_empty(),
                        "leakReasons": al.leaked,
                    })
                })
                .collect();
            json_nets.push(json!({
                "name": net.name,
                "conflist": net.source,
                "store": net.data_dir.join(&net.name),
                "prefixes": match prefixes {
                    Ok(p) => json!(p.iter().map(|(n, r, g)| json!({"node": n, "podRange": r, "gateway": g})).collect::<Vec<_>>()),
                    Err(e) => json!({"error": e}),
                },
                "bridge": match &bridge {
                    Ok(Some(addrs)) => json!({"name": net.bridge, "exists": true, "addresses": addrs}),
                    Ok(None) => json!({"name": net.bridge, "exists": false}),
                    Err(e) => json!({"name": net.bridge, "error": e}),
                },
                "firewall": match &firewall {
                    None => Value::Null,
                    Some(Ok(b)) => json!({"skeleton": b}),
                    Some(Err(e)) => json!({"error": e}),
                },
                "allocations": list,
                "problems": found,
            }));
            problems.extend(
                found
                    .into_iter()
                    .map(|f| format!("network {}: {f}", net.name)),
            );
            continue;
        }
        if i > 0 {
            o.line("")?;
        }
        o.line(format!("network {} ({})", net.name, net.source.display()))?;
        o.line(format!(
            "  store     {} ({} allocation(s), {} leaked)",
            net.data_dir.join(&net.name).display(),
            allocs.len(),
            allocs.iter().filter(|a| !a.leaked.is_empty()).count()
        ))?;
        match prefixes {
            Ok(p) => {
                for (k, (n, r, g)) in p.iter().enumerate() {
                    let head = if k == 0 {
                        "  prefixes  "
                    } else {
                        "            "
                    };
                    o.line(format!("{head}{n}  pods {r}  gateway {g}"))?;
                }
            }
            Err(e) => o.line(format!("  prefixes  unknown: {e}"))?,
        }
        match &bridge {
            Ok(Some(addrs)) => {
                let missing: Vec<&String> = match prefixes {
                    Ok(p) => p
                        .iter()
                        .map(|(_, _, g)| g)
                        .filter(|g| !addrs.iter().any(|a| a.split('/').next() == Some(g)))
                        .collect(),
                    Err(_) => vec![],
                };
                o.line(format!(
                    "  bridge    {} exists, addresses {}{}",
                    net.bridge,
                    if addrs.is_empty() {
                        "none".to_string()
                    } else {
                        addrs.join(", ")
                    },
                    if missing.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (gateway missing: {})",
                            missing
                                .iter()
                                .map(|s| s.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ))?
            }
            Ok(None) => o.line(format!(
                "  bridge    {} does not exist (made by the first pod's ADD)",
                net.bridge
            ))?,
            Err(e) => o.line(format!("  bridge    {}: {e}", net.bridge))?,
        }
        match &firewall {
            None => o.line("  firewall  not in this network's chain")?,
            Some(Ok(true)) => o.line("  firewall  skeleton in place (FORWARD -> CNI6-FORWARD)")?,
            Some(Ok(false)) => o.line(
                "  firewall  skeleton missing (made by the first pod's ADD; pods are unfiltered)",
            )?,
            Some(Err(e)) => o.line(format!("  firewall  unknown: {e}"))?,
        }
        problems.extend(found.iter().map(|f| format!("network {}: {f}", net.name)));
        if allocs.is_empty() {
            o.line("  no allocations")?;
            continue;
        }
        let mut rows = vec![[
            "POD".to_string(),
            "CONTAINER".into(),
            "IF".into(),
            "ADDRESSES".into(),
            "HOST VETH".into(),
            "AGE".into(),
            "STATE".into(),
        ]];
        for al in &allocs {
            let state = if al.leaked.is_empty() {
                "ok".to_string()
            } else {
                format!("LEAKED ({})", al.leaked.join(", "))
            };
            rows.push(match &al.record {
                Some(r) => [
                    match (&r.pod_namespace, &r.pod_name) {
                        (Some(ns), Some(n)) => format!("{ns}/{n}"),
                        (None, Some(n)) => n.clone(),
                        _ => "-".into(),
                    },
                    r.container_id.clone(),
                    r.ifname.clone(),
                    r.addresses.join(","),
                    al.host_veth.clone().unwrap_or_default(),
                    age(now.saturating_sub(r.created)),
                    state,
                ],
                None => [
                    "-".into(),
                    al.file.clone(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    state,
                ],
            });
        }
        let widths: Vec<usize> = (0..7)
            .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
            .collect();
        o.line("")?;
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, v)| {
                    if c == 6 {
                        v.clone()
                    } else {
                        format!("{v:<w$}", w = widths[c])
                    }
                })
                .collect();
            o.line(format!("  {}", line.join("  ")))?;
        }
    }
    if o.json {
        o.json(&json!({
            "networks": json_nets,
            "healthy": problems.is_empty(),
            "problems": problems,
        }))?;
    } else if problems.is_empty() {
        o.line("")?;
        o.line("health: ok")?;
    } else {
        o.line("")?;
        o.line(format!("health: {} problem(s)", problems.len()))?;
        for p in &problems {
            o.line(format!("  - {p}"))?;
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} problem(s) found (listed above)",
            problems.len()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(netns: Option<&str>, leaked: &[&str]) -> Allocation {
        let rec: Record = serde_json::from_value(serde_json::json!({
            "version": 1, "network": "n1", "containerId": "c1", "ifname": "eth0",
            "slot": "10", "addresses": [], "bootId": "b", "created": 0
        }))
        .unwrap();
        Allocation {
            file: "c1@eth0".into(),
            record: Some(rec),
            host_veth: Some("c6x".into()),
            netns: netns.map(String::from),
            leaked: leaked.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_pod_is_gone_only_when_its_netns_is() {
        // The netns the runtime cached is gone: gone, veth or not.
        assert!(alloc(Some("/run/netns/x"), &[NETNS_GONE]).pod_gone());
        assert!(alloc(Some("/run/netns/x"), &[VETH_GONE, NETNS_GONE]).pod_gone());
        // Its veth is gone but its netns lives: broken, not free.
        assert!(!alloc(Some("/run/netns/x"), &[VETH_GONE]).pod_gone());
        // No cache record: the veth (which dies with the netns) decides.
        assert!(alloc(None, &[VETH_GONE]).pod_gone());
        assert!(alloc(None, &[EARLIER_BOOT]).pod_gone());
        assert!(!alloc(None, &[]).pod_gone());
        // An unreadable record is never freed by --leaked.
        let mut a = alloc(None, &["unreadable record"]);
        a.record = None;
        assert!(!a.pod_gone());
    }

    #[test]
    fn stale_addresses_are_those_no_pod_range_explains() {
        let addrs = vec![
            "fd00:1:2:3:4:1:0:1/96".to_string(),
            "fd00:1:2:3:3:1:0:1/96".to_string(),
        ];
        let gws = vec!["fd00:1:2:3:4:1:0:1".to_string()];
        assert_eq!(
            stale_bridge_addresses(&addrs, &gws),
            vec!["fd00:1:2:3:3:1:0:1/96"]
        );
        assert_eq!(
            rule_comment(
                r#"-A CNI6-X -m comment --comment "firewall6 net=n if=eth0 id=c1" -j RETURN"#
            ),
            Some("firewall6 net=n if=eth0 id=c1")
        );
        assert_eq!(
            rule_comment("-A X -m comment --comment plain -j RETURN"),
            Some("plain")
        );
    }

    #[test]
    fn ages() {
        assert_eq!(age(5), "5s");
        assert_eq!(age(600), "10m");
        assert_eq!(age(3 * 3600), "3h");
        assert_eq!(age(3 * 86400), "3d");
    }

    #[test]
    fn records_of_another_boot_and_unreadable_ones_are_leaked() {
        let d = tempfile::tempdir().unwrap();
        let att = d.path().join("n1/attachments");
        std::fs::create_dir_all(&att).unwrap();
        let rec = serde_json::json!({
            "version": 1, "network": "n1", "containerId": "c1", "ifname": "eth0",
            "slot": "10", "addresses": ["fd00:1:2:3:4:1:0:10/96"],
            "podNamespace": "ns", "podName": "p", "bootId": "not-this-boot", "created": 0
        });
        std::fs::write(att.join("c1@eth0"), rec.to_string()).unwrap();
        std::fs::write(att.join("c2@eth0"), "{broken").unwrap();
        std::fs::write(att.join(".c3@eth0.tmp.1"), "{}").unwrap();
        let net = Network {
            name: "n1".into(),
            source: PathBuf::from("/x"),
            data_dir: d.path().to_path_buf(),
            bridge: "br".into(),
            ipam: Err("unused".into()),
            has_firewall: false,
            list: ConfList::parse(
                br#"{"cniVersion":"1.0.0","name":"n1","plugins":[{"type":"x"}]}"#,
            )
            .unwrap(),
        };
        let rt = Runtime::new(vec![]).with_cache_dir(d.path().join("cache"));
        let a = allocations(&net, &rt).unwrap();
        assert_eq!(a.len(), 2, "temp files are not allocations");
        assert_eq!(a[0].record.as_ref().unwrap().pod_name.as_deref(), Some("p"));
        assert!(a[0].leaked.contains(&"made in an earlier boot".to_string()));
        assert!(a[0].netns.is_none(), "no cache record");
        assert_eq!(a[1].leaked, vec!["unreadable record".to_string()]);
    }

    #[test]
    fn networks_of_reads_data_dir_and_bridge() {
        let list = ConfList::parse(
            br#"{"cniVersion":"1.0.0","name":"n1","plugins":[
                {"type":"bridge6","bridge":"br9","ipam":{"type":"ipam-prefix","dataDir":"/d",
                 "prefixes":[{"node":"fd00:1:2:3:4::/80"}]}},
                {"type":"firewall6"}]}"#,
        )
        .unwrap();
        let n = networks_of(Path::new("/x.conflist"), &list);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].data_dir, PathBuf::from("/d"));
        assert_eq!(n[0].bridge, "br9");
        assert!(n[0].has_firewall);
        let p = prefixes(&n[0]).unwrap();
        assert_eq!(
            p[0],
            (
                "fd00:1:2:3:4::/80".to_string(),
                "fd00:1:2:3:4:1::/96".to_string(),
                "fd00:1:2:3:4:1:0:1".to_string()
            )
        );
    }
}
