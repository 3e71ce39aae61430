//! The node as cni6 sees it, read from the same places the plugins use:
//! the network configurations (which cni6 networks, their data directory
//! and bridge), ipam-prefix's store (one allocation per attachment), the
//! runtime's libcni cache (each attachment's netns), the kernel (host
//! veths, the bridge and its addresses) and ip6tables (the firewall
//! skeleton, per-pod rules). `status`, `gc`, `install`, `lint` and
//! `routes` read it; none of it prints.
//!
//! Everything here only reads: the store without its lock (the lock's
//! opener would also release records of earlier boots, which is the
//! plugins' job), so a record being written at that instant may be
//! missed. An allocation is *leaked* when the attachment it describes
//! cannot exist any more (see [`Allocation::pod_gone`]); host veths are
//! judged only where the network's bridge is visible, since from another
//! network namespace every veth looks gone.

use crate::error::{CliError, Result};
use cni_common::attachment::Attachment;
use cni_common::config::NetConf;
use cni_common::netlink::Netlink;
use cni_common::runtime::{ConfList, Runtime};
use ipam_prefix::config::IpamConfig;
use ipam_prefix::store::{current_boot_id, Record};
use serde_json::{json, Value};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The plugin binaries a conflist of cni6 names.
pub const PLUGINS: [&str; 3] = ["bridge6", "ipam-prefix", "firewall6"];

/// Files in `conf_dir` the runtime would consider (libcni's extensions),
/// sorted as libcni sorts them.
pub fn network_configs(conf_dir: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(conf_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => {
            return Err(CliError::Failed(format!(
                "list {}: {e}",
                conf_dir.display()
            )))
        }
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| {
            !n.starts_with('.')
                && [".conf", ".conflist", ".json"]
                    .iter()
                    .any(|ext| n.ends_with(ext))
        })
        .collect();
    names.sort();
    Ok(names)
}

/// Which networks of the node to read: one list (`conflist`) or every
/// configuration in `conf_dir`, optionally only `network`, with the store
/// in `data_dir` instead of the configuration's ipam.dataDir.
#[derive(Debug, Clone, Copy)]
pub struct NetworkQuery<'a> {
    pub conf_dir: &'a Path,
    pub conflist: Option<&'a Path>,
    pub network: Option<&'a str>,
    pub data_dir: Option<&'a Path>,
}

/// The cni6 networks of the node and the configurations that could not be
/// read (a problem: the runtime may be unable to read them too). A name
/// counts once, from the first list that has it (as the runtime reads them).
pub fn find_networks(q: NetworkQuery<'_>) -> Result<(Vec<Network>, Vec<String>)> {
    let files: Vec<PathBuf> = match q.conflist {
        Some(f) => vec![f.to_path_buf()],
        None => network_configs(q.conf_dir)?
            .into_iter()
            .map(|n| q.conf_dir.join(n))
            .collect(),
    };
    let mut nets = Vec::new();
    let mut unreadable = Vec::new();
    for f in files {
        let list = match ConfList::from_file(&f) {
            Ok(l) => l,
            Err(e) if q.conflist.is_some() => {
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
            if q.network.is_some_and(|w| w != n.name) {
                continue;
            }
            if nets.iter().any(|o: &Network| o.name == n.name) {
                continue; // the runtime uses the first list of a name
            }
            if let Some(d) = q.data_dir {
                n.data_dir = d.to_path_buf();
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
            q.network.map(|n| format!(" named {n}")).unwrap_or_default(),
            q.conflist.unwrap_or(q.conf_dir).display()
        )));
    }
    Ok((nets, unreadable))
}

/// The attachments the runtime cached for `network` (libcni's cache).
pub fn cached_attachments(
    rt: &Runtime,
    network: &str,
) -> Result<Vec<cni_common::runtime::CacheRecord>> {
    Ok(rt
        .cached_attachments()
        .map_err(|e| CliError::cni("read the runtime cache", e))?
        .into_iter()
        .filter(|r| r.network_name == network)
        .collect())
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
    /// `CONTAINERID/IFNAME`, as `gc --valid` takes it (from the record, or
    /// from the file name `<id>@<ifname>` when the record is unreadable).
    pub fn key(&self) -> String {
        match &self.record {
            Some(r) => format!("{}/{}", r.container_id, r.ifname),
            None => self.file.replacen('@', "/", 1),
        }
    }

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

pub const VETH_GONE: &str = "host veth gone";
pub const NETNS_GONE: &str = "netns gone";
pub const EARLIER_BOOT: &str = "made in an earlier boot";

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

/// Seconds since the epoch (0 if the clock is before it).
pub fn now() -> u64 {
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

/// The ports of bridge `name` that open layer 2 to its pods (neither
/// isolated nor a pod's, e.g. an uplink): bridge6 ADD refuses such a
/// bridge. Empty when the bridge is absent or no bridge.
pub fn layer2_openings(name: &str) -> std::result::Result<Vec<String>, String> {
    let mut nl = Netlink::open().map_err(|e| format!("open netlink: {e}"))?;
    match bridge6::link::by_name(&mut nl, name).map_err(|e| e.to_string())? {
        Some(br) if br.is_bridge() => {
            bridge6::link::layer2_openings(&mut nl, &br).map_err(|e| e.to_string())
        }
        _ => Ok(vec![]),
    }
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

/// The store's allocations of every ipam-prefix network in the list.
pub fn store_allocations(nets: &[Network], rt: &Runtime) -> Result<Vec<Allocation>> {
    let mut out = Vec::new();
    for n in nets {
        out.extend(allocations(n, rt)?);
    }
    Ok(out)
}

/// Why the allocations of `nets` cannot be judged from this network
/// namespace: the bridge of a network that holds allocations is not here.
pub fn wrong_namespace(nets: &[Network], allocs: &[Allocation]) -> Option<String> {
    if allocs.is_empty() {
        return None;
    }
    nets.iter().find(|n| !bridge_visible(&n.bridge)).map(|n| {
        format!(
            "bridge {} of network {} is not visible from this network namespace though \
                 {} allocation(s) exist",
            n.bridge,
            n.name,
            allocs.len()
        )
    })
}

/// Is this network configuration multus (a meta-plugin: it delegates to
/// the lists behind it, so it may sort first)? Thin ("multus") and thick
/// ("multus-shim") alike.
pub fn is_multus(bytes: &[u8]) -> bool {
    ConfList::parse(bytes).is_ok_and(|l| l.plugin_types().iter().any(|t| t.starts_with("multus")))
}

/// The one rule `install` and `lint` share for what may sort before cni6's
/// list (`ours`, a file name in `conf_dir`): the runtime uses the first
/// configuration only, so every one in front keeps pods off cni6 — except
/// multus, which delegates. Returns the configurations in front that are
/// not multus (empty: ours is the one the runtime uses, directly or
/// through multus).
pub fn shadowing_configs(conf_dir: &Path, names: &[String], ours: &str) -> Vec<String> {
    names
        .iter()
        .take_while(|n| n.as_str() < ours)
        .filter(|n| !fs::read(conf_dir.join(n)).is_ok_and(|b| is_multus(&b)))
        .cloned()
        .collect()
}

/// br_netfilter's switch for bridged IPv6 (`net.bridge.bridge-nf-call-ip6tables`)
/// of the calling thread's network namespace; absent where the module is not
/// loaded.
pub const BRIDGE_NF_CALL_IP6TABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-ip6tables";

/// `Some(true)` when br_netfilter hands bridged IPv6 to ip6tables here,
/// `None` when the knob does not exist (module not loaded) or is unreadable.
pub fn bridge_nf_call_ip6tables() -> Option<bool> {
    fs::read_to_string(BRIDGE_NF_CALL_IP6TABLES)
        .ok()
        .map(|s| s.trim() != "0")
}

/// What `lint` and `status` say when the knob is 1 (the effect and the fix).
pub const BRIDGE_NF_PROBLEM: &str = "net.bridge.bridge-nf-call-ip6tables is 1: br_netfilter \
    runs ip6tables' nat PREROUTING at the bridge, so a Service connection that kube-proxy \
    DNATs from a pod to a pod on the same node is forwarded port to port inside the bridge, \
    where bridge6's isolated ports drop it (DNS times out on CoreDNS' node). cni6 needs no \
    br_netfilter: set it to 0 (`cni6 install --prepare-node`, or sysctl -w \
    net.bridge.bridge-nf-call-ip6tables=0)";

/// Turn br_netfilter's IPv6 hook off in this network namespace when it is on.
/// `Ok(true)` when it was 1 and is now 0, `Ok(false)` when there was nothing
/// to do (0 already, or no br_netfilter).
pub fn disable_bridge_nf_call_ip6tables() -> std::result::Result<bool, String> {
    if bridge_nf_call_ip6tables() != Some(true) {
        return Ok(false);
    }
    fs::write(BRIDGE_NF_CALL_IP6TABLES, "0").map_err(|e| {
        format!(
            "set {BRIDGE_NF_CALL_IP6TABLES} to 0: {e} (needs a writable /proc/sys: a privileged \
             container, e.g. the DaemonSet's init container with --prepare-node)"
        )
    })?;
    Ok(true)
}

/// Did bridge6 make this interface (seen from this network namespace)? A
/// bridge whose ports are all bridge6 host veths (at least one), or a
/// portless bridge one of `named` (the bridges of the node's cni6
/// networks). A bridge with any other port (an operator's br0 holding the
/// uplink eth0) never is. bridge6 puts no mark on the bridge itself, hence
/// the ports.
pub fn is_bridge6_bridge(name: &str, named: &[String]) -> bool {
    let Ok(mut nl) = Netlink::open() else {
        return false;
    };
    let Ok(Some(l)) = bridge6::link::by_name(&mut nl, name) else {
        return false;
    };
    if !l.is_bridge() {
        return false;
    }
    let Ok(ports) = bridge6::link::bridge_ports(&mut nl, l.index) else {
        return false;
    };
    if ports.is_empty() {
        return named.iter().any(|n| n == name);
    }
    ports
        .iter()
        .all(|p| p.name.starts_with(cni_common::attachment::HOST_VETH_PREFIX))
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
    fn only_multus_may_sort_before_ours() {
        let d = tempfile::tempdir().unwrap();
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Thin multus (a .conf) and thick multus (a list of multus-shim).
        std::fs::write(
            d.path().join("00-multus.conf"),
            r#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus"}"#,
        )
        .unwrap();
        std::fs::write(
            d.path().join("01-multus.conflist"),
            r#"{"cniVersion":"1.0.0","name":"m","plugins":[{"type":"multus-shim"}]}"#,
        )
        .unwrap();
        let dir = d.path();
        let all = names(&["00-multus.conf", "01-multus.conflist", "10-cni6.conflist"]);
        assert!(shadowing_configs(dir, &all, "10-cni6.conflist").is_empty());
        // Any other list in front is refused, multus or not before it; an
        // unreadable one too (the runtime would stop at it or skip it).
        std::fs::write(
            dir.join("00-other.conflist"),
            r#"{"cniVersion":"1.0.0","name":"o","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.join("05-broken.conf"), "{").unwrap();
        let all = names(&[
            "00-multus.conf",
            "00-other.conflist",
            "01-multus.conflist",
            "05-broken.conf",
            "10-cni6.conflist",
            "99-loopback.conf",
        ]);
        assert_eq!(
            shadowing_configs(dir, &all, "10-cni6.conflist"),
            names(&["00-other.conflist", "05-broken.conf"])
        );
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
