//! The CNI verbs of bridge6 ([`Bridge6`] implements
//! `cni_common::dispatch::Plugin`): DEL, CHECK, STATUS and GC here, ADD in
//! its own module (`add.rs`). The policies they follow are described in the
//! crate documentation.

use crate::attachment;
use crate::config::{self, Config};
use crate::error::{Bridge6Error, Result};
use crate::{link, sysctl};
use cni_common::attachment::HOST_VETH_PREFIX;
use cni_common::delegate;
use cni_common::dispatch::{Plugin, Request};
use cni_common::env::Command;
use cni_common::netlink::Netlink;
use cni_common::netns::NetNs;
use cni_common::result::CniResult;
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// How long ADD waits for a new veth to carry traffic (the kernel's
/// linkwatch work normally takes well under a millisecond).
pub const PORT_FORWARDING_LIMIT: Duration = Duration::from_secs(3);

pub struct Bridge6;

impl Plugin for Bridge6 {
    type Error = Bridge6Error;

    fn about(&self) -> &'static str {
        "bridge6: cni6 main plugin (node bridge, veth into the pod, IPv6 addresses and routes)"
    }

    /// `IP=` is the IPAM plugin's (conformance.md #74; it gets our whole
    /// environment, so it must not be refused here); `MAC=` is ours.
    fn known_args(&self) -> &'static [&'static str] {
        &["IP", "MAC"]
    }

    fn add(&self, req: &Request) -> Result<CniResult> {
        crate::add::add(req)
    }

    fn del(&self, req: &Request) -> Result<()> {
        del(req)
    }

    fn check(&self, req: &Request) -> Result<()> {
        check(req)
    }

    fn gc(&self, req: &Request) -> Result<()> {
        gc(req)
    }

    fn status(&self, req: &Request) -> Result<()> {
        status(req)
    }
}

pub(crate) fn log(msg: impl std::fmt::Display) {
    eprintln!("bridge6: {msg}");
}

pub(crate) fn host_netlink() -> Result<Netlink> {
    Netlink::open().map_err(|e| Bridge6Error::netlink("open netlink socket", e))
}

pub(crate) fn pod_netlink(ns: &NetNs) -> Result<Netlink> {
    ns.run(Netlink::open)?.map_err(|e| {
        Bridge6Error::netlink(
            format!("open netlink socket in netns {}", ns.path().display()),
            e,
        )
    })
}

pub(crate) fn netns_path(req: &Request) -> Result<&Path> {
    req.env
        .netns
        .as_deref()
        .ok_or_else(|| cni_common::Error::MissingEnv(vec!["CNI_NETNS"]).into())
}

pub(crate) fn is_eexist(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EEXIST)
}

// ------------------------------------------------------------------- DEL

/// Best effort, idempotent (conformance.md #25–30). The host end of the veth is
/// found by its derived name, so no netns is needed; deleting it removes
/// the pod end too. IPAM DEL always runs. Every error is collected and
/// reported once at the end; "already gone" is success. Only the network
/// name and `ipam` are read: a bridge6 key that changed or broke since ADD
/// must not stop the cleanup (conformance.md #17).
fn del(req: &Request) -> Result<()> {
    let host_name = attachment::host_veth(&req.attachment());
    let mut errors: Vec<cni_common::Error> = Vec::new();

    // The IPAM DEL (a process) runs while the kernel tears the veth down:
    // deleting a link waits for RCU (rcu_barrier in netdev_run_todo) and
    // the IPAM plugin needs nothing from the link.
    // The reference bridge releases the address first too.
    let (veth, ipam) = delegate::ipam_alongside(
        &req.config.raw,
        &req.env.path,
        Command::Del,
        &req.stdin,
        || release_host_side(req, &host_name),
    );
    if let Err(e) = veth {
        if !e.is_gone() {
            errors.push(e.into());
        }
    }
    if let Err(e) = ipam {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Bridge6Error::Many(errors))
    }
}

/// The host side of one attachment: the node's pinned neighbour entries
/// for the pod (those naming its MAC, read from the port's static FDB
/// entry or from prevResult), then the host veth. An entry that names
/// another MAC belongs to a pod that holds the address now and stays.
fn release_host_side(req: &Request, host_name: &str) -> Result<()> {
    let mut nl = host_netlink()?;
    let port = link::by_name(&mut nl, host_name)?;
    let mut macs: Vec<Vec<u8>> = match &port {
        Some(p) => link::static_fdb_macs(&mut nl, p.index).unwrap_or_default(),
        None => Vec::new(),
    };
    macs.extend(prev_pod_mac(req));
    if !macs.is_empty() {
        unpin_pod_neighbours(&mut nl, &bridge_name(req), &macs);
    }
    if let Some(l) = port {
        link::delete_link(&mut nl, l.index)
            .map_err(|e| Bridge6Error::netlink(format!("delete host veth {host_name}"), e))?;
    }
    Ok(())
}

/// The bridge DEL looks at: the configured one, read leniently (a key that
/// broke since ADD must not stop the cleanup, conformance.md #17).
fn bridge_name(req: &Request) -> String {
    req.config
        .raw
        .get("bridge")
        .and_then(|v| v.as_str())
        .unwrap_or(config::DEFAULT_BRIDGE)
        .to_string()
}

/// The pod interface's MAC from prevResult, when there is one.
fn prev_pod_mac(req: &Request) -> Option<Vec<u8>> {
    let prev = CniResult::parse(req.config.prev_result.as_ref()?).ok()?;
    let iface = prev
        .interfaces
        .iter()
        .find(|i| i.name == req.ifname() && i.sandbox.is_some())?;
    config::parse_mac(iface.mac.as_deref()?).map(|m| m.to_vec())
}

/// Best effort: a leftover pinned entry only black-holes an address no pod
/// holds (ports do not flood unknown unicast), and the next ADD of that
/// address replaces it.
fn unpin_pod_neighbours(nl: &mut Netlink, bridge: &str, macs: &[Vec<u8>]) {
    let Ok(Some(br)) = link::by_name(nl, bridge) else {
        return;
    };
    let pinned = match link::pinned_neighbours(nl, br.index) {
        Ok(p) => p,
        Err(e) => return log(format!("list neighbour entries on {bridge}: {e}")),
    };
    for (addr, _) in pinned.into_iter().filter(|(_, m)| macs.contains(m)) {
        match link::delete_neighbour(nl, br.index, addr) {
            Ok(()) => {}
            Err(e) if cni_common::error::is_gone_io(&e) => {}
            Err(e) => log(format!("remove neighbour entry {addr} on {bridge}: {e}")),
        }
    }
}

// ----------------------------------------------------------------- CHECK

/// conformance.md 1.E: IPAM CHECK first, then every prevResult address and route
/// of this interface must be in the pod (extras tolerated, 35), the host
/// veth must exist on the bridge with the expected MTU. Read-only.
fn check(req: &Request) -> Result<()> {
    let cfg = Config::parse(&req.config)?;
    let prev = req.config.prev_result.as_ref().ok_or_else(|| {
        cni_common::Error::config(
            "prevResult",
            "(absent)",
            "the attachment's ADD result, which CHECK compares against",
        )
    })?;
    let prev = CniResult::parse(prev)?;
    delegate::ipam(&req.config.raw, &req.env.path, Command::Check, &req.stdin)?;

    let ifname = req.ifname();
    let fail = |m: String| Err(Bridge6Error::Check(m));
    let Some(pod_pos) = prev
        .interfaces
        .iter()
        .position(|i| i.name == ifname && i.sandbox.is_some())
    else {
        return fail(format!(
            "prevResult lists no interface {ifname} with a sandbox"
        ));
    };
    let netns = netns_path(req)?;
    let pod_ns = NetNs::open(netns)?;
    let mut pod_nl = pod_netlink(&pod_ns)?;
    let Some(pod) = link::by_name(&mut pod_nl, ifname)? else {
        return fail(format!(
            "interface {ifname} is missing in netns {}",
            netns.display()
        ));
    };
    if pod.kind.as_deref() != Some("veth") {
        return fail(format!(
            "interface {ifname} in netns {} is a {} link, expected a veth",
            netns.display(),
            pod.kind.as_deref().unwrap_or("plain")
        ));
    }
    if let Some(mac) = &prev.interfaces[pod_pos].mac {
        let have = attachment::format_mac(&pod.mac);
        if !have.eq_ignore_ascii_case(mac) {
            return fail(format!("{ifname} has MAC {have}, prevResult says {mac}"));
        }
    }
    let addrs = pod_nl
        .ipv6_addresses(pod.index)
        .map_err(|e| Bridge6Error::netlink(format!("list addresses of {ifname}"), e))?;
    for ip in prev
        .ips
        .iter()
        .filter(|ip| ip.interface.is_none_or(|i| i == pod_pos))
    {
        let IpNet::V6(want) = ip.address else {
            return fail(format!("prevResult address {} is not IPv6", ip.address));
        };
        let found = addrs
            .iter()
            .find(|a| a.addr == want.addr() && a.prefix_len == want.prefix_len());
        match found {
            None => return fail(format!("address {want} is missing on {ifname}")),
            Some(a) if a.flags & u32::from(0x08u8) != 0 => {
                return fail(format!("address {want} on {ifname} failed DAD"))
            }
            Some(_) => {}
        }
    }
    let routes = link::main_routes(&mut pod_nl)?;
    for r in &prev.routes {
        let IpNet::V6(dst) = r.dst else {
            return fail(format!("prevResult route {} is not IPv6", r.dst));
        };
        let want_gw = match r.gw {
            Some(IpAddr::V6(g)) => Some(g),
            Some(IpAddr::V4(g)) => {
                return fail(format!("prevResult route gateway {g} is not IPv6"))
            }
            None => None,
        };
        let found = routes
            .iter()
            .any(|have| have.dst == dst.trunc() && want_gw.is_none_or(|g| have.gw == Some(g)));
        if !found {
            let via = want_gw.map(|g| format!(" via {g}")).unwrap_or_default();
            return fail(format!("route {dst}{via} is missing in the pod"));
        }
    }
    for ip in &prev.ips {
        if let (IpNet::V6(net), Some(IpAddr::V6(gw))) = (ip.address, ip.gateway) {
            let dst = net.trunc();
            if !routes.iter().any(|r| r.dst == dst && r.gw == Some(gw)) {
                return fail(format!(
                    "route {dst} via {gw} is missing in the pod (pods reach their own range through the gateway)"
                ));
            }
        }
    }

    let host_name = attachment::host_veth(&req.attachment());
    let mut host_nl = host_netlink()?;
    let Some(host) = link::by_name(&mut host_nl, &host_name)? else {
        return fail(format!("host veth {host_name} is missing"));
    };
    let Some(bridge) = link::by_name(&mut host_nl, &cfg.bridge)? else {
        return fail(format!("bridge {} is missing", cfg.bridge));
    };
    if !bridge.is_bridge() {
        return fail(format!("{} is not a bridge", cfg.bridge));
    }
    if host.master != Some(bridge.index) {
        return fail(format!(
            "host veth {host_name} is not a port of bridge {}",
            cfg.bridge
        ));
    }
    if !host.is_isolated_port() {
        return fail(format!(
            "bridge port {host_name} is not isolated (isolated, locked, no learning, no flooding expected; kernel reports {:?})",
            host.isolation
        ));
    }
    // What ADD refuses may have come later: an uplink enslaved since.
    let open = link::layer2_openings(&mut host_nl, &bridge)?;
    if !open.is_empty() {
        return fail(crate::error::shared_bridge_problem(&cfg.bridge, &open));
    }
    let mtu = link::default_mtu(&mut host_nl, cfg.mtu)?;
    for (name, have) in [(host_name.as_str(), host.mtu), (ifname, pod.mtu)] {
        if have != mtu {
            return fail(format!("{name} has MTU {have}, expected {mtu}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- STATUS

/// conformance.md 1.G: own conditions first, then IPAM STATUS (43). Read-only.
fn status(req: &Request) -> Result<()> {
    let cfg = Config::parse(&req.config)?;
    let conf = sysctl::Conf::open()?;
    conf.require_ipv6()?;
    let mut nl = host_netlink()?;
    if let Some(l) = link::by_name(&mut nl, &cfg.bridge)? {
        if !l.is_bridge() {
            return Err(Bridge6Error::Unavailable(format!(
                "bridge={}: a {} link of that name exists, so no bridge can be made",
                cfg.bridge,
                l.kind.as_deref().unwrap_or("non-bridge")
            )));
        }
    }
    // An interface at accept_ra=1 under forwarding is only a fault when it
    // holds RA-learned state (a SLAAC/DHCPv6 address or an RA route) that
    // will now expire unrenewed; a statically configured uplink is the
    // operator's deliberate state and must not make the node NotReady.
    for iface in sysctl::ra_ignoring(&conf)? {
        if link::ra_dependent(&mut nl, &iface)? {
            return Err(Bridge6Error::RaIgnored { iface });
        }
    }
    delegate::ipam(&req.config.raw, &req.env.path, Command::Status, &req.stdin)?;
    Ok(())
}

// -------------------------------------------------------------------- GC

/// conformance.md 1.H: forward to IPAM (50); then, only when the runtime sent a
/// valid list, delete this network's host veths on the bridge whose
/// derived name belongs to no valid attachment. Ports of other networks
/// sharing the bridge are recognised by their alias and left alone.
fn gc(req: &Request) -> Result<()> {
    let cfg = Config::parse(&req.config)?;
    let mut errors: Vec<cni_common::Error> = Vec::new();
    if let Err(e) = delegate::ipam(&req.config.raw, &req.env.path, Command::Gc, &req.stdin) {
        errors.push(e);
    }
    match req.valid_attachments()? {
        None => log("GC without a valid-attachments list: host veths left alone"),
        Some(valid) => {
            let keep: HashSet<String> = valid.iter().map(attachment::host_veth).collect();
            if let Err(e) = gc_ports(&cfg, &keep, &mut errors) {
                errors.push(e.into());
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Bridge6Error::Many(errors))
    }
}

fn gc_ports(
    cfg: &Config,
    keep: &HashSet<String>,
    errors: &mut Vec<cni_common::Error>,
) -> Result<()> {
    let mut nl = host_netlink()?;
    let Some(bridge) = link::by_name(&mut nl, &cfg.bridge)? else {
        return Ok(());
    };
    if !bridge.is_bridge() {
        return Ok(());
    }
    for port in link::bridge_ports(&mut nl, bridge.index)? {
        let ours = port.kind.as_deref() == Some("veth")
            && port.name.starts_with(HOST_VETH_PREFIX)
            && port.alias.as_deref().and_then(attachment::alias_network)
                == Some(cfg.network.as_str());
        if !ours || keep.contains(&port.name) {
            continue;
        }
        match link::delete_link(&mut nl, port.index) {
            Ok(()) => log(format!(
                "GC: deleted stale host veth {} ({})",
                port.name,
                port.alias.unwrap_or_default()
            )),
            Err(e) if cni_common::error::is_gone_io(&e) => {}
            Err(e) => errors.push(
                Bridge6Error::netlink(format!("GC: delete stale host veth {}", port.name), e)
                    .into(),
            ),
        }
    }
    Ok(())
}
