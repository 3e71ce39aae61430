//! ADD of bridge6, in named steps: [`add`] opens the pod and the host,
//! [`Adding::prepare`] builds what needs no address (bridge, veth pair, port,
//! pod sysctls) while IPAM runs, [`Adding::attach`] puts IPAM's addresses
//! and routes in place and answers the result. Any failure rolls back
//! what this call made ([`Adding::rollback`]).

use crate::attachment;
use crate::config::{self, Config};
use crate::error::{Bridge6Error, Result};
use crate::plugin::{host_netlink, is_eexist, log, netns_path, pod_netlink, PORT_FORWARDING_LIMIT};
use crate::{link, sysctl};
use cni_common::attachment::Attachment;
use cni_common::delegate;
use cni_common::dispatch::Request;
use cni_common::env::Command;
use cni_common::netlink::Netlink;
use cni_common::netns::NetNs;
use cni_common::result::{CniResult, Interface, IpConfig, Route};
use ipnet::{IpNet, Ipv6Net};
use std::net::{IpAddr, Ipv6Addr};

/// The IPAM result reduced to what bridge6 installs: IPv6 only.
struct PodAddressing {
    ips: Vec<(Ipv6Net, Option<Ipv6Addr>)>,
    routes: Vec<(Ipv6Net, Option<Ipv6Addr>)>,
}

impl PodAddressing {
    /// Pod addresses carry no on-link prefix route (see [`pod_routes`]), so
    /// every gateway that is not link-local is routed "onlink": it is on
    /// the link, the bridge, although no route of the pod covers it.
    fn needs_onlink(&self, gw: Ipv6Addr) -> bool {
        (gw.segments()[0] & 0xffc0) != 0xfe80
    }
}

fn pod_addressing(ipam: &CniResult) -> Result<PodAddressing> {
    if ipam.ips.is_empty() {
        return Err(Bridge6Error::IpamResult(
            "at least one IPv6 address (the IPAM plugin returned none)".into(),
        ));
    }
    let v6 = |a: IpAddr, what: &str| match a {
        IpAddr::V6(a) => Ok(a),
        IpAddr::V4(a) => Err(Bridge6Error::IpamResult(format!(
            "IPv6 only: {what} {a} is IPv4 and bridge6 is IPv6-only"
        ))),
    };
    let mut ips = Vec::new();
    for ip in &ipam.ips {
        let IpNet::V6(net) = ip.address else {
            return Err(Bridge6Error::IpamResult(format!(
                "IPv6 only: address {} is IPv4 and bridge6 is IPv6-only",
                ip.address
            )));
        };
        let gw = ip.gateway.map(|g| v6(g, "gateway")).transpose()?;
        ips.push((net, gw));
    }
    let mut routes = Vec::new();
    for r in &ipam.routes {
        let IpNet::V6(dst) = r.dst else {
            return Err(Bridge6Error::IpamResult(format!(
                "IPv6 only: route {} is IPv4 and bridge6 is IPv6-only",
                r.dst
            )));
        };
        let gw = r.gw.map(|g| v6(g, "route gateway")).transpose()?;
        routes.push((dst.trunc(), gw));
    }
    Ok(PodAddressing { ips, routes })
}

/// Each pod range through its gateway: an address with a gateway goes on
/// without its on-link prefix route, so even a pod of the same range on the
/// same node is reached through the node, where the firewall sees it (pods
/// share no layer 2). Not part of the CNI result: they stand in for the
/// kernel's prefix route, which no result lists either.
fn range_routes(addressing: &PodAddressing) -> Vec<(Ipv6Net, Ipv6Addr)> {
    let mut out: Vec<(Ipv6Net, Ipv6Addr)> = Vec::new();
    for (net, gw) in &addressing.ips {
        if let Some(gw) = gw {
            let r = (net.trunc(), *gw);
            if !out.contains(&r) {
                out.push(r);
            }
        }
    }
    out
}

/// Routes to install in the pod, in order: IPAM's (a missing gw becomes the
/// first address's gateway), then `::/0` via the first gateway unless IPAM
/// gave one. Any `::/0` is dropped when the config says `defaultRoute:
/// false` or the pod already has a default route from another attachment.
fn pod_routes(
    addressing: &PodAddressing,
    want_default: bool,
    pod_has_default: bool,
) -> (Vec<(Ipv6Net, Option<Ipv6Addr>)>, bool) {
    let first_gw = addressing.ips.iter().find_map(|(_, gw)| *gw);
    let allow_default = want_default && !pod_has_default;
    let mut skipped_default = false;
    let mut out = Vec::new();
    for (dst, gw) in &addressing.routes {
        if dst.prefix_len() == 0 && !allow_default {
            skipped_default = true;
            continue;
        }
        let r = (*dst, gw.or(first_gw));
        if !out.contains(&r) {
            out.push(r);
        }
    }
    let has_default = out.iter().any(|(d, _)| d.prefix_len() == 0);
    if !has_default {
        if allow_default {
            if let Some(gw) = first_gw {
                out.push((Ipv6Net::default(), Some(gw)));
            }
        } else {
            skipped_default = true;
        }
    }
    (out, skipped_default && want_default)
}

/// The bridge `name` for a new port: `existing` (looked up by
/// [`Adding::refuse_shared_bridge`]) or made now, then up with `mtu`.
fn ensure_bridge(
    nl: &mut Netlink,
    conf: &sysctl::Conf,
    name: &str,
    existing: Option<link::Link>,
    mtu: u32,
) -> Result<link::Link> {
    let br = match existing {
        Some(l) => l,
        None => {
            match link::create_bridge(nl, name, mtu, attachment::bridge_mac(name)) {
                Ok(()) => {}
                // Another ADD created it a moment ago.
                Err(e) if is_eexist(&e) => {}
                Err(e) => return Err(Bridge6Error::netlink(format!("create bridge {name}"), e)),
            }
            link::by_name(nl, name)?.ok_or_else(|| {
                Bridge6Error::netlink(
                    format!("look up bridge {name} after creating it"),
                    std::io::Error::from_raw_os_error(libc::ENODEV),
                )
            })?
        }
    };
    if !br.is_bridge() {
        return Err(Bridge6Error::NotABridge {
            name: name.to_string(),
            kind: br.kind.clone().unwrap_or_else(|| "non-bridge".into()),
        });
    }
    // We own routing on the bridge: it must never take addresses or a
    // default route from an RA a pod sends (conformance.md §3 #10). And no DAD: while the
    // bridge's link-local address is tentative (~1-2 s after it comes up)
    // the node cannot send neighbour solicitations on it, so traffic routed
    // to a new pod from elsewhere waits in the neighbour queue (found by
    // the multinode suite). Both are set before the bridge is up.
    conf.ensure(name, "accept_ra", 0)?;
    conf.ensure(name, "accept_dad", 0)?;
    let mtu_change = (br.mtu != mtu).then_some(mtu);
    if !br.up || mtu_change.is_some() {
        link::set_link(nl, br.index, true, mtu_change)
            .map_err(|e| Bridge6Error::netlink(format!("bring bridge {name} up (mtu {mtu})"), e))?;
    }
    Ok(br)
}

pub(crate) fn add(req: &Request) -> Result<CniResult> {
    let cfg = Config::parse(&req.config)?;
    let mac = config::requested_mac(&req.config, &req.env.args)?;
    let att = req.attachment();
    let conf = sysctl::Conf::open()?;
    conf.require_ipv6()?;
    let netns = netns_path(req)?;
    let pod_ns = NetNs::open(netns)?;
    let mut a = Adding {
        req,
        host_name: attachment::host_veth(&att),
        pod_nl: pod_netlink(&pod_ns)?,
        host_nl: host_netlink()?,
        conf,
        pod_ns,
        cfg,
        att,
        mac,
        made_veth: false,
        bridge: None,
    };
    a.refuse_existing()?;
    a.refuse_shared_bridge()?;

    // IPAM ADD (a process, and an fdatasync in ipam-prefix's store) runs
    // while this thread makes the bridge, the veth pair and the pod-side
    // sysctls, none of which needs an address; addresses, routes and
    // gateways wait for it (figures: docs/performance.md).
    let (prepared, ipam) = delegate::ipam_alongside(
        &req.config.raw,
        &req.env.path,
        Command::Add,
        &req.stdin,
        || a.prepare(),
    );
    let ipam = ipam
        .map_err(Bridge6Error::from)
        .and_then(|r| r.ok_or_else(|| Bridge6Error::IpamResult("a result from IPAM ADD".into())));
    let outcome = match (prepared, ipam) {
        (Ok(p), Ok(ipam)) => a.attach(p, &ipam),
        (Err(e), ipam) => {
            // What this thread hit comes first; a failed IPAM ADD as well
            // is only logged, and has nothing to release.
            if let Err(i) = &ipam {
                log(format!("IPAM ADD failed too: {i}"));
            }
            a.rollback(&e, ipam.is_ok());
            return Err(e);
        }
        // IPAM failed and allocated nothing: only the veth goes.
        (Ok(_), Err(e)) => {
            a.rollback(&e, false);
            return Err(e);
        }
    };
    outcome.inspect_err(|e| a.rollback(e, true))
}

/// The three links of an attachment, with the MTU, for the result.
struct Links<'a> {
    bridge: &'a link::Link,
    host: &'a link::Link,
    pod: &'a link::Link,
    mtu: u32,
}

/// What ADD builds before it has addresses (see [`Adding::prepare`]).
struct Prepared {
    bridge: link::Link,
    mtu: u32,
    host: link::Link,
    pod: link::Link,
    /// Link events in the pod, subscribed before its interface goes up.
    pod_events: link::LinkEvents,
}

/// One ADD in progress: the attachment, its two netlink sockets, and what
/// has been created so far (for [`Adding::rollback`]).
struct Adding<'a> {
    req: &'a Request,
    cfg: Config,
    att: Attachment,
    host_name: String,
    pod_ns: NetNs,
    pod_nl: Netlink,
    host_nl: Netlink,
    /// The node's IPv6 sysctls.
    conf: sysctl::Conf,
    /// The pod interface's MAC, if the runtime asked for one.
    mac: Option<[u8; 6]>,
    made_veth: bool,
    /// The configured bridge as it was before IPAM ran (`None`: not yet made).
    bridge: Option<link::Link>,
}

impl Adding<'_> {
    /// conformance.md #19, 22: an existing attachment is an error before anything
    /// is allocated or created, and nothing is undone for it.
    fn refuse_existing(&mut self) -> Result<()> {
        let ifname = self.att.ifname.as_str();
        if link::by_name(&mut self.pod_nl, ifname)?.is_some() {
            return Err(Bridge6Error::AttachmentExists {
                ifname: ifname.to_string(),
                what: format!(
                    "interface {ifname} in netns {}",
                    self.pod_ns.path().display()
                ),
            });
        }
        if link::by_name(&mut self.host_nl, &self.host_name)?.is_some() {
            return Err(Bridge6Error::AttachmentExists {
                ifname: ifname.to_string(),
                what: format!(
                    "host veth {} of attachment (network {}, container {}, {ifname})",
                    self.host_name, self.att.network, self.att.container_id
                ),
            });
        }
        Ok(())
    }

    /// Pods share no layer 2 (docs/security.md): a bridge that also holds
    /// a port neither isolated nor a pod's (an operator's `br0` with the
    /// uplink `eth0`) is refused before IPAM allocates or a link is made.
    /// A bridge bridge6 made (it carries bridge6's MAC for its name) skips
    /// the port listing, whose cost grows with the pods on the node (1.6x a
    /// chain ADD's CPU at 1000 pods, docs/performance.md); a port an
    /// operator enslaves to it later, like one added after this check, is
    /// CHECK's and `cni6 status`'s to find.
    fn refuse_shared_bridge(&mut self) -> Result<()> {
        let name = self.cfg.bridge.as_str();
        let Some(br) = link::by_name(&mut self.host_nl, name)? else {
            return Ok(());
        };
        if !br.is_bridge() {
            return Err(Bridge6Error::NotABridge {
                name: name.to_string(),
                kind: br.kind.clone().unwrap_or_else(|| "non-bridge".into()),
            });
        }
        if br.mac[..] == attachment::bridge_mac(name)[..] {
            self.bridge = Some(br);
            return Ok(());
        }
        let ports = link::layer2_openings(&mut self.host_nl, &br)?;
        if !ports.is_empty() {
            return Err(Bridge6Error::SharedBridge {
                bridge: name.to_string(),
                ports,
            });
        }
        self.bridge = Some(br);
        Ok(())
    }

    /// conformance.md #23: undo this call's veth and, when IPAM ADD allocated
    /// (`release`), release the addresses. A failure because the
    /// attachment already exists (a concurrent duplicate ADD) releases
    /// nothing: the addresses belong to that one.
    fn rollback(&mut self, e: &Bridge6Error, release: bool) {
        let host_name = &self.host_name;
        if self.made_veth {
            match link::by_name(&mut self.host_nl, host_name) {
                Ok(Some(l)) => {
                    if let Err(d) = link::delete_link(&mut self.host_nl, l.index) {
                        log(format!("rollback: delete host veth {host_name}: {d}"));
                    }
                }
                Ok(None) => {}
                Err(d) => log(format!("rollback: look up host veth {host_name}: {d}")),
            }
        }
        if !release || matches!(e, Bridge6Error::AttachmentExists { .. }) {
            return;
        }
        let req = self.req;
        if let Err(d) = delegate::ipam(&req.config.raw, &req.env.path, Command::Del, &req.stdin) {
            log(format!("rollback: IPAM DEL after failed ADD: {d}"));
        }
    }

    /// Each pod range's gateway on the bridge, without DAD; an address
    /// already there (ours from an earlier pod, or the operator's) is left
    /// exactly as it is, and not even asked for again: every RTM_NEWADDR
    /// on an up device, including one refused with EEXIST, makes the
    /// kernel re-announce all its multicast groups (inet6_rtm_newaddr →
    /// ipv6_find_idev → ipv6_mc_up), two MLDv2 reports from the bridge
    /// that it floods to every port and into every pod: per-ADD work
    /// that grew with the pods (docs/performance.md). One address dump of
    /// the bridge instead (none when IPAM named no gateway).
    fn gateways(&mut self, bridge: &link::Link, addressing: &PodAddressing) -> Result<()> {
        if addressing.ips.iter().all(|(_, gw)| gw.is_none()) {
            return Ok(());
        }
        let present: Vec<Ipv6Addr> = self
            .host_nl
            .ipv6_addresses(bridge.index)
            .map_err(|e| {
                Bridge6Error::netlink(format!("list addresses of bridge {}", bridge.name), e)
            })?
            .into_iter()
            .map(|a| a.addr)
            .collect();
        for (net, gw) in &addressing.ips {
            let Some(gw) = gw else { continue };
            if present.contains(gw) {
                continue;
            }
            match link::add_address(&mut self.host_nl, bridge.index, *gw, net.prefix_len(), true) {
                Ok(()) => {}
                Err(e) if is_eexist(&e) => {}
                Err(e) => {
                    return Err(Bridge6Error::netlink(
                        format!(
                            "add gateway {gw}/{} to bridge {}",
                            net.prefix_len(),
                            bridge.name
                        ),
                        e,
                    ))
                }
            }
        }
        Ok(())
    }

    /// The veth pair, peer straight into the pod; returns (host, pod) ends.
    fn veth(&mut self, bridge: &link::Link, mtu: u32) -> Result<(link::Link, link::Link)> {
        let (host_name, ifname) = (self.host_name.as_str(), self.att.ifname.as_str());
        let spec = link::VethSpec {
            host_name,
            master: bridge.index,
            peer_name: ifname,
            peer_netns: &self.pod_ns,
            peer_mac: self.mac,
            mtu,
        };
        match link::create_veth(&mut self.host_nl, &spec) {
            Ok(()) => self.made_veth = true,
            Err(e) if is_eexist(&e) => {
                return Err(Bridge6Error::AttachmentExists {
                    ifname: ifname.to_string(),
                    what: format!("veth {host_name} or interface {ifname} (created concurrently)"),
                })
            }
            Err(e) => {
                return Err(Bridge6Error::netlink(
                    format!(
                        "create veth {host_name} with peer {ifname} in {}",
                        self.pod_ns.path().display()
                    ),
                    e,
                ))
            }
        }
        let missing = |what: String| {
            Bridge6Error::netlink(what, std::io::Error::from_raw_os_error(libc::ENODEV))
        };
        let host = link::by_name(&mut self.host_nl, host_name)?
            .ok_or_else(|| missing(format!("look up host veth {host_name}")))?;
        let pod = link::by_name(&mut self.pod_nl, ifname)?
            .ok_or_else(|| missing(format!("look up {ifname} in the pod")))?;
        Ok((host, pod))
    }

    /// Everything ADD does before it has addresses: the bridge (made or
    /// checked, up), forwarding, the veth pair, the host port and the pod
    /// interface's sysctls.
    fn prepare(&mut self) -> Result<Prepared> {
        let mtu = link::default_mtu(&mut self.host_nl, self.cfg.mtu)?;
        let bridge = ensure_bridge(
            &mut self.host_nl,
            &self.conf,
            &self.cfg.bridge,
            self.bridge.take(),
            mtu,
        )?;
        let fwd = sysctl::ensure_forwarding(&self.conf)?;
        if fwd.enabled || !fwd.raised_accept_ra.is_empty() {
            log(format!(
                "enabled net.ipv6.conf.all.forwarding; raised accept_ra 1 -> 2 first on [{}] so they keep accepting router advertisements",
                fwd.raised_accept_ra.join(", ")
            ));
        }
        let (host, pod) = self.veth(&bridge, mtu)?;
        self.host_port(&host, &pod)?;
        let pod_events = self.pod_interface()?;
        Ok(Prepared {
            bridge,
            mtu,
            host,
            pod,
            pod_events,
        })
    }

    /// The host end as a bridge port: IPv6 off before it comes up (a port
    /// never sends or receives IPv6 itself, the bridge does; with IPv6 on
    /// every port going up or down walks the node's IPv6 routing table,
    /// fib6_ifup/fib6_ifdown). That also covers "no RAs" (conformance.md §3
    /// #10). Then the pod's MAC bound to the port, and alias, port flags
    /// (isolation, hairpin) and up in one request: no neighbour
    /// advertisement is sent any more that a hairpin port could reflect,
    /// so hairpin need not wait until the end.
    fn host_port(&mut self, host: &link::Link, pod: &link::Link) -> Result<()> {
        let host_name = self.host_name.clone();
        self.conf.ensure(&host_name, "disable_ipv6", 1)?;
        // The pod's MAC is bound to its port before the port can carry a
        // frame: the port is locked, so that entry is the only source MAC
        // it lets in (see link::isolation_flags).
        link::add_static_fdb(&mut self.host_nl, host.index, &pod.mac).map_err(|e| {
            Bridge6Error::netlink(format!("bind the pod's MAC to bridge port {host_name}"), e)
        })?;
        link::configure_port(
            &mut self.host_nl,
            host.index,
            &attachment::alias(&self.att),
            self.cfg.hairpin,
        )
        .map_err(|e| {
            Bridge6Error::netlink(format!("isolate and bring up bridge port {host_name}"), e)
        })?;
        // A kernel before 5.18 ignores the port flags it does not know
        // (locked): no pod is attached that could take its neighbours' MACs.
        let port = link::by_index(&mut self.host_nl, host.index)?;
        if let Some(p) = port.filter(|p| !p.is_isolated_port()) {
            return Err(Bridge6Error::Unavailable(format!(
                "bridge port {host_name}: the kernel did not apply isolated, locked, no learning, no flooding (it reports {:?}); bridge6 needs Linux 5.18 or newer",
                p.isolation
            )));
        }
        Ok(())
    }

    /// The pod end, before any address: IPv6 on (a runtime may create pod
    /// namespaces with it off), no DAD (IPAM guarantees uniqueness and
    /// hairpin would reflect DAD probes, conformance.md §3 #2), no RAs, no
    /// SLAAC, and our static addresses survive the pod taking its link down
    /// and up. No redirects: the node forwards same-range traffic back out
    /// of the bridge and says so with a redirect, which must not make the
    /// pod try its peer at layer 2. A link-local address from the MAC
    /// (EUI-64), the one firewall6 binds to the pod's port. The same visit
    /// opens the pod's link-event socket, before the link goes up (see
    /// link::wait_usable).
    fn pod_interface(&mut self) -> Result<link::LinkEvents> {
        let ifname = self.att.ifname.as_str();
        self.pod_ns.run(|| -> Result<link::LinkEvents> {
            let conf = sysctl::Conf::open()?;
            conf.ensure(ifname, "disable_ipv6", 0)?;
            conf.ensure(ifname, "keep_addr_on_down", 1)?;
            conf.ensure(ifname, "accept_dad", 0)?;
            conf.ensure(ifname, "accept_ra", 0)?;
            conf.ensure(ifname, "autoconf", 0)?;
            conf.ensure(ifname, "accept_redirects", 0)?;
            conf.ensure(ifname, "addr_gen_mode", 0)?;
            link::LinkEvents::open()
                .map_err(|e| Bridge6Error::netlink("subscribe to link events in the pod", e))
        })?
    }

    /// The rest of ADD, with IPAM's result: gateways, the pod's addresses
    /// and routes, the node's neighbour entries, the port forwarding, the
    /// CNI result.
    fn attach(&mut self, p: Prepared, ipam: &CniResult) -> Result<CniResult> {
        let Prepared {
            bridge,
            mtu,
            host,
            pod,
            mut pod_events,
        } = p;
        let addressing = pod_addressing(ipam)?;
        self.gateways(&bridge, &addressing)?;
        self.pod_addresses(&bridge, &pod, &addressing)?;
        // Subscribe before the change whose effect we wait for.
        let mut host_events = link::LinkEvents::open()
            .map_err(|e| Bridge6Error::netlink("subscribe to link events", e))?;
        let ifname = self.att.ifname.clone();
        link::set_link(&mut self.pod_nl, pod.index, true, None)
            .map_err(|e| Bridge6Error::netlink(format!("bring {ifname} up in the pod"), e))?;
        let routes = self.routes(&pod, &addressing)?;
        self.pin_node_neighbours(&bridge, &pod, &addressing)?;

        // ADD returns once the pod end is operational and the port
        // forwards. No pod caches another pod's MAC any more (everything
        // goes through the gateway), so no neighbour advertisement is sent.
        // If the port does not forward in time, addresses and routes are in
        // place: ADD does not fail for it.
        let port = link::wait_usable(
            &mut self.host_nl,
            &mut host_events,
            host.index,
            &mut pod_events,
            pod.index,
            PORT_FORWARDING_LIMIT,
        )?;
        if port != link::PortOutcome::Forwarding {
            log(format!(
                "{ifname}/{} not carrying traffic yet ({port:?}; bridge {} may run STP)",
                self.host_name, bridge.name,
            ));
        }
        let links = Links {
            bridge: &bridge,
            host: &host,
            pod: &pod,
            mtu,
        };
        self.result(&links, ipam, &routes)
    }

    /// The pod's addresses (no prefix route, see [`pod_routes`]), and its
    /// gateways pinned to the bridge's MAC: nothing on the link can
    /// redirect the pod's traffic by advertising them.
    fn pod_addresses(
        &mut self,
        bridge: &link::Link,
        pod: &link::Link,
        addressing: &PodAddressing,
    ) -> Result<()> {
        let ifname = self.att.ifname.as_str();
        for (net, gw) in &addressing.ips {
            link::add_address_flags(
                &mut self.pod_nl,
                pod.index,
                net.addr(),
                net.prefix_len(),
                true,
                gw.is_some(),
            )
            .map_err(|e| Bridge6Error::netlink(format!("add {net} to {ifname} in the pod"), e))?;
        }
        for gw in addressing.ips.iter().filter_map(|(_, gw)| *gw) {
            link::pin_neighbour(&mut self.pod_nl, pod.index, gw, &bridge.mac)
                .map_err(|e| Bridge6Error::netlink(format!("pin gateway {gw} in the pod"), e))?;
        }
        Ok(())
    }

    /// Each pod range through its gateway, then the routes IPAM asked for
    /// (at most one default route per pod); returns the latter for the
    /// result.
    fn routes(
        &mut self,
        pod: &link::Link,
        addressing: &PodAddressing,
    ) -> Result<Vec<(Ipv6Net, Option<Ipv6Addr>)>> {
        let ifname = self.att.ifname.as_str();
        let pod_has_default = link::main_routes(&mut self.pod_nl)?
            .iter()
            .any(|r| r.dst.prefix_len() == 0);
        let (routes, skipped_default) =
            pod_routes(addressing, self.cfg.default_route, pod_has_default);
        if skipped_default {
            log(format!(
                "{ifname}: the pod already has a default route (another attachment); not adding ::/0 via this network"
            ));
        }
        for (dst, gw) in range_routes(addressing) {
            link::add_route(&mut self.pod_nl, pod.index, dst, Some(gw), true).map_err(|e| {
                Bridge6Error::netlink(
                    format!("add route {dst} via {gw} dev {ifname} in the pod"),
                    e,
                )
            })?;
        }
        for (dst, gw) in &routes {
            let onlink = gw.is_some_and(|g| addressing.needs_onlink(g));
            link::add_route(&mut self.pod_nl, pod.index, *dst, *gw, onlink).map_err(|e| {
                let via = gw.map(|g| format!(" via {g}")).unwrap_or_default();
                Bridge6Error::netlink(format!("add route {dst}{via} dev {ifname} in the pod"), e)
            })?;
        }
        Ok(routes)
    }

    /// The node's entry for each pod address, pinned to the pod's MAC
    /// (written directly, no packet on the bridge): a forged neighbour
    /// advertisement cannot move it, and an address handed out again names
    /// its new pod at once.
    fn pin_node_neighbours(
        &mut self,
        bridge: &link::Link,
        pod: &link::Link,
        addressing: &PodAddressing,
    ) -> Result<()> {
        for (net, _) in &addressing.ips {
            link::pin_neighbour(&mut self.host_nl, bridge.index, net.addr(), &pod.mac).map_err(
                |e| {
                    Bridge6Error::netlink(
                        format!(
                            "pin the node's neighbour entry for {} on {}",
                            net.addr(),
                            bridge.name
                        ),
                        e,
                    )
                },
            )?;
        }
        Ok(())
    }

    /// The CNI result: bridge, host veth, pod interface (in the sandbox);
    /// IPAM's addresses on the pod interface; the routes installed.
    fn result(
        &self,
        links: &Links,
        ipam: &CniResult,
        routes: &[(Ipv6Net, Option<Ipv6Addr>)],
    ) -> Result<CniResult> {
        let sandbox = netns_path(self.req)?.display().to_string();
        let dns = self.cfg.dns.clone().unwrap_or_else(|| ipam.dns.clone());
        Ok(CniResult {
            interfaces: vec![
                Interface {
                    name: links.bridge.name.clone(),
                    mac: Some(attachment::format_mac(&links.bridge.mac)),
                    ..Default::default()
                },
                Interface {
                    name: self.host_name.clone(),
                    mac: Some(attachment::format_mac(&links.host.mac)),
                    ..Default::default()
                },
                Interface {
                    name: self.att.ifname.clone(),
                    mac: Some(attachment::format_mac(&links.pod.mac)),
                    mtu: Some(links.mtu),
                    sandbox: Some(sandbox),
                    ..Default::default()
                },
            ],
            ips: ipam
                .ips
                .iter()
                .map(|ip| IpConfig {
                    address: ip.address,
                    gateway: ip.gateway,
                    interface: Some(2),
                })
                .collect(),
            routes: routes
                .iter()
                .map(|(dst, gw)| Route::new(IpNet::V6(*dst), gw.map(IpAddr::V6)))
                .collect(),
            dns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn addressing(routes: &[(&str, Option<&str>)]) -> PodAddressing {
        PodAddressing {
            ips: vec![
                (net("fd00:0:0:1:1::10/96"), Some(ip("fd00:0:0:1:1::1"))),
                (net("2001:db8:0:1:1::10/96"), Some(ip("2001:db8:0:1:1::1"))),
            ],
            routes: routes.iter().map(|(d, g)| (net(d), g.map(ip))).collect(),
        }
    }

    #[test]
    fn default_route_added_via_first_gateway() {
        let (r, skipped) = pod_routes(&addressing(&[]), true, false);
        assert_eq!(r, vec![(net("::/0"), Some(ip("fd00:0:0:1:1::1")))]);
        assert!(!skipped);
    }

    #[test]
    fn ipam_default_route_kept_once_and_gw_filled() {
        let (r, _) = pod_routes(
            &addressing(&[("::/0", None), ("fd00::/8", Some("fd00:0:0:1:1::2"))]),
            true,
            false,
        );
        assert_eq!(
            r,
            vec![
                (net("::/0"), Some(ip("fd00:0:0:1:1::1"))),
                (net("fd00::/8"), Some(ip("fd00:0:0:1:1::2"))),
            ]
        );
    }

    #[test]
    fn never_a_second_default_route() {
        // conformance.md #60: a pre-existing ::/0 (another network's eth0) wins.
        let (r, skipped) = pod_routes(
            &addressing(&[("::/0", None), ("fd00::/8", None)]),
            true,
            true,
        );
        assert_eq!(r, vec![(net("fd00::/8"), Some(ip("fd00:0:0:1:1::1")))]);
        assert!(skipped);
        let (r, skipped) = pod_routes(&addressing(&[]), true, true);
        assert!(r.is_empty());
        assert!(skipped);
    }

    #[test]
    fn default_route_false_suppresses_every_default() {
        let (r, skipped) = pod_routes(&addressing(&[("::/0", None)]), false, false);
        assert!(r.is_empty());
        assert!(
            !skipped,
            "suppressed by config, not by another attachment: no log line"
        );
    }

    #[test]
    fn onlink_for_every_gateway_but_link_local() {
        let a = addressing(&[]);
        assert!(a.needs_onlink(ip("fd00:0:0:1:1::1")));
        assert!(!a.needs_onlink(ip("fe80::1")));
        assert!(a.needs_onlink(ip("fd00:0:0:1:2::1")));
    }

    #[test]
    fn each_range_through_its_gateway_once() {
        let mut a = addressing(&[]);
        a.ips
            .push((net("fd00:0:0:1:1::11/96"), Some(ip("fd00:0:0:1:1::1"))));
        a.ips.push((net("fd00:0:0:9::10/64"), None));
        assert_eq!(
            range_routes(&a),
            vec![
                (net("fd00:0:0:1:1::/96"), ip("fd00:0:0:1:1::1")),
                (net("2001:db8:0:1:1::/96"), ip("2001:db8:0:1:1::1")),
            ]
        );
    }

    #[test]
    fn ipam_result_must_be_ipv6() {
        let mut res = CniResult::default();
        assert!(pod_addressing(&res).is_err());
        res.ips.push(IpConfig {
            address: "10.0.0.2/24".parse().unwrap(),
            gateway: None,
            interface: None,
        });
        let e = pod_addressing(&res).err().unwrap();
        assert_eq!(cni_common::Error::from(e).code(), 7);
        res.ips[0].address = "fd00::2/96".parse().unwrap();
        res.ips[0].gateway = Some("10.0.0.1".parse().unwrap());
        assert!(pod_addressing(&res).is_err());
        res.ips[0].gateway = Some("fd00::1".parse().unwrap());
        let a = pod_addressing(&res).unwrap();
        assert_eq!(a.ips, vec![(net("fd00::2/96"), Some(ip("fd00::1")))]);
    }
}
