//! The netlink operations bridge6 needs, on top of cni_common's synchronous
//! [`Netlink`] socket: one request each, links looked up by name or index;
//! the only dump is a bridge's ports ([`bridge_ports`], filtered by master
//! in the kernel): ADD and CHECK list them to refuse a shared bridge, GC to
//! find stale host veths.
//!
//! Kernel quirks handled here:
//! - a veth is created with its peer already inside the pod namespace
//!   (IFLA_NET_NS_FD in the peer's message) and its host end already
//!   enslaved (IFLA_MASTER): one RTM_NEWLINK, no create-then-move, which
//!   serialises concurrent pod creation in the kernel;
//! - bridge-port options (hairpin) are IFLA_INFO_SLAVE_DATA, which the
//!   kernel applies through the port's *current* master, so they go in a
//!   second request after the port is enslaved;
//! - a new veth carries traffic only once the kernel's linkwatch work has
//!   seen its carrier, a moment after "link up" returns: until then the
//!   pod end has no usable routes and the bridge port drops frames, so
//!   [`wait_usable`] waits for that on netlink events (bounded), never by
//!   sleeping.

use crate::error::{Bridge6Error, Result};
use cni_common::attachment::HOST_VETH_PREFIX;
use cni_common::netlink::Netlink;
use ipnet::Ipv6Net;
use netlink_packet_core::{
    NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE,
};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use netlink_packet_route::link::{
    BridgePortState, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth, LinkAttribute,
    LinkExtentMask, LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
    RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket};
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

/// Route protocol number on every route bridge6 installs in a pod, so
/// `ip -6 route show proto 198` tells ours apart (0xc6).
pub const ROUTE_PROTO: u8 = 198;
const RT_TABLE_MAIN: u32 = 254;

/// What bridge6 reads about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub mtu: u32,
    pub master: Option<u32>,
    /// IFLA_INFO_KIND ("bridge", "veth", …); `None` for a plain device.
    pub kind: Option<String>,
    pub up: bool,
    /// Operational state UP (carrier seen by the kernel's linkwatch work).
    pub oper_up: bool,
    pub alias: Option<String>,
    /// Set when the link is a bridge port.
    pub port_state: Option<BridgePortState>,
    pub hairpin: Option<bool>,
    /// The port's flags that [`isolation_flags`] sets, in its order, as the
    /// kernel reports them (`None` where it reports nothing).
    pub isolation: [Option<bool>; 4],
}

impl Link {
    /// A bridge port that keeps its pod off layer 2 (see
    /// [`isolation_flags`]): isolated, locked, no learning, no flooding.
    pub fn is_isolated_port(&self) -> bool {
        self.isolation == [Some(true), Some(false), Some(false), Some(true)]
    }

    pub fn from_message(m: &LinkMessage) -> Link {
        let mut l = Link {
            index: m.header.index,
            name: String::new(),
            mac: Vec::new(),
            mtu: 0,
            master: None,
            kind: None,
            up: m.header.flags.contains(LinkFlags::Up),
            oper_up: false,
            alias: None,
            port_state: None,
            hairpin: None,
            isolation: [None; 4],
        };
        for a in &m.attributes {
            match a {
                LinkAttribute::IfName(n) => l.name = n.clone(),
                LinkAttribute::Address(mac) => l.mac = mac.clone(),
                LinkAttribute::Mtu(v) => l.mtu = *v,
                LinkAttribute::Controller(v) if *v != 0 => l.master = Some(*v),
                LinkAttribute::IfAlias(s) => l.alias = Some(s.clone()),
                LinkAttribute::OperState(st) => l.oper_up = *st == State::Up,
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        match i {
                            LinkInfo::Kind(k) => l.kind = Some(k.to_string()),
                            LinkInfo::PortData(InfoPortData::BridgePort(opts)) => {
                                for o in opts {
                                    match o {
                                        InfoBridgePort::State(s) => l.port_state = Some(*s),
                                        InfoBridgePort::HairpinMode(h) => l.hairpin = Some(*h),
                                        InfoBridgePort::Isolated(v) => l.isolation[0] = Some(*v),
                                        InfoBridgePort::Learning(v) => l.isolation[1] = Some(*v),
                                        InfoBridgePort::UnicastFlood(v) => {
                                            l.isolation[2] = Some(*v)
                                        }
                                        InfoBridgePort::Locked(v) => l.isolation[3] = Some(*v),
                                        _ => {}
                                    }
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        l
    }

    pub fn is_bridge(&self) -> bool {
        self.kind.as_deref() == Some("bridge")
    }

    /// See [`opens_layer2`].
    pub fn opens_layer2(&self) -> bool {
        opens_layer2(&self.name, self.kind.as_deref(), self.isolation[0])
    }
}

/// A bridge port that lets pods past the node at layer 2: the kernel's
/// port isolation only stops isolated-to-isolated, so an isolated pod port
/// still reaches every port not isolated (an operator's uplink and its
/// whole LAN, unseen by firewall6). An isolated foreign port is fine, and
/// so is a bridge6 host veth (by its derived name), isolated or from a
/// release before isolation.
pub fn opens_layer2(name: &str, kind: Option<&str>, isolated: Option<bool>) -> bool {
    let pod_port = kind == Some("veth") && name.starts_with(HOST_VETH_PREFIX);
    isolated != Some(true) && !pod_port
}

fn first_link(replies: Vec<RouteNetlinkMessage>) -> Option<Link> {
    replies.into_iter().find_map(|m| match m {
        RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(&l)),
        _ => None,
    })
}

pub fn by_name(nl: &mut Netlink, name: &str) -> Result<Option<Link>> {
    nl.link_by_name(name)
        .map(|o| o.map(|m| Link::from_message(&m)))
        .map_err(|e| Bridge6Error::netlink(format!("look up link {name}"), e))
}

pub fn by_index(nl: &mut Netlink, index: u32) -> Result<Option<Link>> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    match nl.request(RouteNetlinkMessage::GetLink(msg), 0) {
        Ok(r) => Ok(first_link(r)),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(Bridge6Error::netlink(
            format!("look up link index {index}"),
            e,
        )),
    }
}

fn ack(nl: &mut Netlink, msg: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
    nl.request(msg, NLM_F_ACK | flags).map(|_| ())
}

/// Create a bridge (down: callers set sysctls before it comes up).
pub fn create_bridge(nl: &mut Netlink, name: &str, mtu: u32, mac: [u8; 6]) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.attributes = vec![
        LinkAttribute::IfName(name.to_string()),
        LinkAttribute::Mtu(mtu),
        LinkAttribute::Address(mac.to_vec()),
        LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
    ];
    ack(
        nl,
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// Change MTU and/or bring a link up, in one RTM_SETLINK.
pub fn set_link(nl: &mut Netlink, index: u32, up: bool, mtu: Option<u32>) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    if up {
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
    }
    if let Some(m) = mtu {
        msg.attributes.push(LinkAttribute::Mtu(m));
    }
    ack(nl, RouteNetlinkMessage::SetLink(msg), 0)
}

/// A veth pair for one attachment.
pub struct VethSpec<'a, F: AsFd> {
    pub host_name: &'a str,
    pub master: u32,
    pub peer_name: &'a str,
    pub peer_netns: &'a F,
    /// The pod end's MAC, when the runtime asked for one.
    pub peer_mac: Option<[u8; 6]>,
    pub mtu: u32,
}

/// One RTM_NEWLINK: host end enslaved to `master`, peer created inside the
/// pod namespace under its final name. Both ends stay down.
pub fn create_veth<F: AsFd>(nl: &mut Netlink, spec: &VethSpec<'_, F>) -> io::Result<()> {
    let mut peer = LinkMessage::default();
    peer.attributes = vec![
        LinkAttribute::IfName(spec.peer_name.to_string()),
        LinkAttribute::Mtu(spec.mtu),
        LinkAttribute::NetNsFd(spec.peer_netns.as_fd().as_raw_fd()),
    ];
    if let Some(mac) = spec.peer_mac {
        peer.attributes.push(LinkAttribute::Address(mac.to_vec()));
    }
    let mut msg = LinkMessage::default();
    msg.attributes = vec![
        LinkAttribute::IfName(spec.host_name.to_string()),
        LinkAttribute::Mtu(spec.mtu),
        LinkAttribute::Controller(spec.master),
        LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]),
    ];
    ack(
        nl,
        RouteNetlinkMessage::NewLink(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// The bridge-port flags that keep a pod off layer 2: isolated (frames go
/// only to the bridge itself, never to another port), no learning (no pod
/// can move another's MAC to its port), no unknown-unicast flooding (the
/// node's traffic for a vanished MAC reaches no pod) and locked (a frame
/// whose source MAC is not the port's static FDB entry is dropped), so the
/// source MAC names the port at layer 3 without br_netfilter.
pub fn isolation_flags() -> Vec<InfoBridgePort> {
    vec![
        InfoBridgePort::Isolated(true),
        InfoBridgePort::Learning(false),
        InfoBridgePort::UnicastFlood(false),
        InfoBridgePort::Locked(true),
    ]
}

/// Alias, isolation flags, hairpin mode and link up for an enslaved host
/// veth, in one RTM_NEWLINK (IFLA_INFO_SLAVE_DATA, applied by the port's
/// master before the link comes up).
pub fn configure_port(nl: &mut Netlink, index: u32, alias: &str, hairpin: bool) -> io::Result<()> {
    let mut flags = isolation_flags();
    flags.push(InfoBridgePort::HairpinMode(hairpin));
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes = vec![
        LinkAttribute::IfAlias(alias.to_string()),
        LinkAttribute::LinkInfo(vec![LinkInfo::PortData(InfoPortData::BridgePort(flags))]),
    ];
    ack(nl, RouteNetlinkMessage::NewLink(msg), 0)
}

/// A static FDB entry (`bridge fdb replace MAC dev PORT master static`):
/// the pod's MAC lives on its port, and with the port locked only there.
pub fn add_static_fdb(nl: &mut Netlink, port: u32, mac: &[u8]) -> io::Result<()> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Bridge;
    msg.header.ifindex = port;
    msg.header.state = NeighbourState::Noarp;
    msg.header.flags = NeighbourFlags::Controller;
    msg.attributes = vec![NeighbourAttribute::LinkLayerAddress(mac.to_vec())];
    ack(
        nl,
        RouteNetlinkMessage::NewNeighbour(msg),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// The MACs of the static FDB entries on a bridge port (the pod's MAC, once
/// [`add_static_fdb`] ran); the port's own address is left out.
pub fn static_fdb_macs(nl: &mut Netlink, port: u32) -> io::Result<Vec<Vec<u8>>> {
    Ok(nl
        .fdb(port)?
        .into_iter()
        .filter(|(_, state)| *state == NeighbourState::Noarp)
        .map(|(mac, _)| mac.to_vec())
        .collect())
}

/// Pin `addr` on `dev` to `mac` (NUD_PERMANENT, created or replaced): a
/// neighbour advertisement from the link never changes such an entry, so no
/// pod can redirect traffic meant for another pod or for its gateway.
pub fn pin_neighbour(nl: &mut Netlink, dev: u32, addr: Ipv6Addr, mac: &[u8]) -> io::Result<()> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet6;
    msg.header.ifindex = dev;
    msg.header.state = NeighbourState::Permanent;
    msg.attributes = vec![
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(addr)),
        NeighbourAttribute::LinkLayerAddress(mac.to_vec()),
    ];
    ack(
        nl,
        RouteNetlinkMessage::NewNeighbour(msg),
        NLM_F_CREATE | NLM_F_REPLACE,
    )
}

/// The node's pinned (permanent) IPv6 neighbour entries on `dev`.
pub fn pinned_neighbours(nl: &mut Netlink, dev: u32) -> io::Result<Vec<(Ipv6Addr, Vec<u8>)>> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet6;
    msg.header.ifindex = dev;
    let replies = nl.request(RouteNetlinkMessage::GetNeighbour(msg), NLM_F_DUMP)?;
    let mut out = Vec::new();
    for m in replies {
        let RouteNetlinkMessage::NewNeighbour(n) = m else {
            continue;
        };
        if n.header.ifindex != dev || n.header.state != NeighbourState::Permanent {
            continue;
        }
        let mut addr = None;
        let mut mac = None;
        for a in n.attributes {
            match a {
                NeighbourAttribute::Destination(NeighbourAddress::Inet6(d)) => addr = Some(d),
                NeighbourAttribute::LinkLayerAddress(l) => mac = Some(l),
                _ => {}
            }
        }
        if let (Some(a), Some(m)) = (addr, mac) {
            out.push((a, m));
        }
    }
    Ok(out)
}

/// Remove the neighbour entry for `addr` on `dev`; ENOENT is the caller's
/// "already gone".
pub fn delete_neighbour(nl: &mut Netlink, dev: u32, addr: Ipv6Addr) -> io::Result<()> {
    let mut msg = NeighbourMessage::default();
    msg.header.family = AddressFamily::Inet6;
    msg.header.ifindex = dev;
    msg.attributes = vec![NeighbourAttribute::Destination(NeighbourAddress::Inet6(
        addr,
    ))];
    ack(nl, RouteNetlinkMessage::DelNeighbour(msg), 0)
}

pub fn delete_link(nl: &mut Netlink, index: u32) -> io::Result<()> {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    ack(nl, RouteNetlinkMessage::DelLink(msg), 0)
}

/// Add `addr/prefix_len` to a link. `nodad`: usable at once, no duplicate
/// address detection (our IPAM guarantees uniqueness). EEXIST is returned
/// to the caller, who knows whether "already there" is fine.
pub fn add_address(
    nl: &mut Netlink,
    index: u32,
    addr: Ipv6Addr,
    prefix_len: u8,
    nodad: bool,
) -> io::Result<()> {
    add_address_flags(nl, index, addr, prefix_len, nodad, false)
}

/// [`add_address`], optionally without the on-link prefix route
/// (IFA_F_NOPREFIXROUTE): a pod reaches even its own range through the
/// gateway, never directly at layer 2.
pub fn add_address_flags(
    nl: &mut Netlink,
    index: u32,
    addr: Ipv6Addr,
    prefix_len: u8,
    nodad: bool,
    noprefixroute: bool,
) -> io::Result<()> {
    let mut msg = AddressMessage::default();
    msg.header.family = AddressFamily::Inet6;
    msg.header.prefix_len = prefix_len;
    msg.header.index = index;
    msg.header.scope = AddressScope::Universe;
    let mut flags = AddressFlags::empty();
    if nodad {
        msg.header.flags = AddressHeaderFlags::Nodad;
        flags |= AddressFlags::Nodad;
    }
    if noprefixroute {
        flags |= AddressFlags::Noprefixroute;
    }
    msg.attributes = vec![
        AddressAttribute::Address(IpAddr::V6(addr)),
        AddressAttribute::Flags(flags),
    ];
    ack(
        nl,
        RouteNetlinkMessage::NewAddress(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

/// An IPv6 route of the main table, as bridge6 compares them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route6 {
    pub dst: Ipv6Net,
    pub gw: Option<Ipv6Addr>,
    /// Output interfaces (several for a multipath route).
    pub oifs: Vec<u32>,
}

/// Add `dst [via gw] dev index` to the main table with our protocol.
/// `onlink`: the gateway is on the link although no prefix of the link
/// covers it (an off-prefix gateway, conformance.md §3 #11); the kernel then
/// skips its reachability check.
pub fn add_route(
    nl: &mut Netlink,
    index: u32,
    dst: Ipv6Net,
    gw: Option<Ipv6Addr>,
    onlink: bool,
) -> io::Result<()> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet6;
    msg.header.destination_prefix_length = dst.prefix_len();
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.protocol = RouteProtocol::Other(ROUTE_PROTO);
    msg.header.scope = RouteScope::Universe;
    msg.header.kind = RouteType::Unicast;
    if onlink {
        msg.header.flags = RouteFlags::Onlink;
    }
    if dst.prefix_len() > 0 {
        msg.attributes
            .push(RouteAttribute::Destination(RouteAddress::Inet6(
                dst.network(),
            )));
    }
    if let Some(gw) = gw {
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(gw)));
    }
    msg.attributes.push(RouteAttribute::Oif(index));
    ack(
        nl,
        RouteNetlinkMessage::NewRoute(msg),
        NLM_F_CREATE | NLM_F_EXCL,
    )
}

fn route6(m: &RouteMessage) -> Option<Route6> {
    if m.header.address_family != AddressFamily::Inet6 || m.header.kind != RouteType::Unicast {
        return None;
    }
    let mut table = u32::from(m.header.table);
    let mut dst = Ipv6Addr::UNSPECIFIED;
    let mut gw = None;
    let mut oifs = Vec::new();
    for a in &m.attributes {
        match a {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet6(d)) => dst = *d,
            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => gw = Some(*g),
            RouteAttribute::Oif(i) => oifs.push(*i),
            RouteAttribute::MultiPath(hops) => {
                for h in hops {
                    oifs.push(h.interface_index);
                    if gw.is_none() {
                        gw = h.attributes.iter().find_map(|a| match a {
                            RouteAttribute::Gateway(RouteAddress::Inet6(g)) => Some(*g),
                            _ => None,
                        });
                    }
                }
            }
            _ => {}
        }
    }
    if table != RT_TABLE_MAIN {
        return None;
    }
    let dst = Ipv6Net::new(dst, m.header.destination_prefix_length).ok()?;
    Some(Route6 { dst, gw, oifs })
}

/// Unicast IPv6 routes of the main table. Used inside a pod namespace,
/// which holds a handful of routes.
pub fn main_routes(nl: &mut Netlink) -> Result<Vec<Route6>> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet6;
    let replies = nl
        .request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)
        .map_err(|e| Bridge6Error::netlink("list IPv6 routes", e))?;
    Ok(replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewRoute(m) => route6(m),
            _ => None,
        })
        .collect())
}

/// Whether interface `name` holds state learned from router
/// advertisements: a global address with a finite lifetime (SLAAC or
/// DHCPv6: the kernel marks only infinite-lifetime addresses PERMANENT) or
/// a route of protocol `ra`. A vanished interface holds nothing.
pub fn ra_dependent(nl: &mut Netlink, name: &str) -> Result<bool> {
    const IFA_F_PERMANENT: u32 = 0x80;
    let Some(l) = by_name(nl, name)? else {
        return Ok(false);
    };
    let addrs = nl
        .ipv6_addresses(l.index)
        .map_err(|e| Bridge6Error::netlink(format!("list addresses of {name}"), e))?;
    let dynamic = addrs.iter().any(|a| {
        let link_local = a.addr.segments()[0] & 0xffc0 == 0xfe80;
        !link_local && a.flags & IFA_F_PERMANENT == 0
    });
    if dynamic {
        return Ok(true);
    }
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet6;
    let replies = nl
        .request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)
        .map_err(|e| Bridge6Error::netlink("list IPv6 routes", e))?;
    Ok(replies.iter().any(|r| match r {
        RouteNetlinkMessage::NewRoute(m) => {
            m.header.protocol == RouteProtocol::Ra
                && m.attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Oif(i) if *i == l.index))
        }
        _ => false,
    }))
}

/// The MTU of the interface the host's IPv6 default route leaves through:
/// one route lookup (RTM_F_FIB_MATCH, the route itself, not a dump) and one
/// link lookup. `None` when there is no default route.
pub fn default_route_mtu(nl: &mut Netlink) -> Result<Option<u32>> {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet6;
    msg.header.destination_prefix_length = 128;
    msg.header.flags = RouteFlags::FibMatch;
    msg.attributes = vec![RouteAttribute::Destination(RouteAddress::Inet6(
        Ipv6Addr::UNSPECIFIED,
    ))];
    let replies = match nl.request(RouteNetlinkMessage::GetRoute(msg), 0) {
        Ok(r) => r,
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) | Some(libc::ESRCH)
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(Bridge6Error::netlink("look up the default route", e)),
    };
    let oif = replies.iter().find_map(|r| match r {
        RouteNetlinkMessage::NewRoute(m) => m.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            RouteAttribute::MultiPath(h) => h.first().map(|h| h.interface_index),
            _ => None,
        }),
        _ => None,
    });
    match oif {
        Some(i) => Ok(by_index(nl, i)?.map(|l| l.mtu).filter(|m| *m > 0)),
        None => Ok(None),
    }
}

/// The configured MTU, else the default-route interface's, else 1500.
pub fn default_mtu(nl: &mut Netlink, configured: Option<u32>) -> Result<u32> {
    match configured {
        Some(m) => Ok(m),
        None => Ok(default_route_mtu(nl)?.unwrap_or(crate::config::FALLBACK_MTU)),
    }
}

/// The names of `bridge`'s ports that open layer 2 to its pods
/// ([`opens_layer2`]); empty when the bridge is cni6's alone. ADD asks
/// for every bridge it did not make, CHECK and `cni6 status` for all, so
/// the port dump (filtered by master in the kernel, without statistics)
/// is read raw for the three attributes needed: decoding whole link
/// messages cost ~17 µs per port (docs/performance.md).
pub fn layer2_openings(nl: &mut Netlink, bridge: &Link) -> Result<Vec<String>> {
    let mut msg = LinkMessage::default();
    msg.attributes = vec![
        LinkAttribute::Controller(bridge.index),
        LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]),
    ];
    let dump = nl
        .dump_raw(RouteNetlinkMessage::GetLink(msg))
        .map_err(|e| Bridge6Error::netlink(format!("list ports of bridge {}", bridge.name), e))?;
    // Still interrupted after the retries: pods are being attached or
    // removed meanwhile. Failing would fail ADDs exactly when a node is
    // busy; recent kernels (6.18 here) resume a link dump at the next
    // ifindex, so a port present throughout (an uplink) is listed anyway.
    if dump.interrupted {
        crate::plugin::log(format!(
            "the ports of bridge {} changed during each listing; judged on the last one",
            bridge.name
        ));
    }
    Ok(dump
        .messages
        .iter()
        .filter_map(|m| PortSummary::parse(m))
        .filter(|p| p.master == Some(bridge.index))
        .filter(|p| opens_layer2(&p.name, p.kind.as_deref(), p.isolated))
        .map(|p| p.name)
        .collect())
}

/// What [`layer2_openings`] reads of one RTM_NEWLINK payload.
#[derive(Debug, PartialEq, Eq)]
struct PortSummary {
    name: String,
    master: Option<u32>,
    kind: Option<String>,
    isolated: Option<bool>,
}

const IFINFOMSG_LEN: usize = 16;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_SLAVE_DATA: u16 = 5;
const IFLA_BRPORT_ISOLATED: u16 = 33;

impl PortSummary {
    fn parse(payload: &[u8]) -> Option<PortSummary> {
        let text = |v: &[u8]| {
            String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or(v)).into_owned()
        };
        let mut p = PortSummary {
            name: String::new(),
            master: None,
            kind: None,
            isolated: None,
        };
        for (kind, v) in nlas(payload.get(IFINFOMSG_LEN..)?) {
            match kind {
                IFLA_IFNAME => p.name = text(v),
                IFLA_MASTER if v.len() >= 4 => {
                    p.master = Some(u32::from_ne_bytes([v[0], v[1], v[2], v[3]]))
                }
                IFLA_LINKINFO => {
                    for (k, v) in nlas(v) {
                        match k {
                            IFLA_INFO_KIND => p.kind = Some(text(v)),
                            IFLA_INFO_SLAVE_DATA => {
                                if let Some((_, f)) = nlas(v)
                                    .find(|(k, f)| *k == IFLA_BRPORT_ISOLATED && !f.is_empty())
                                {
                                    p.isolated = Some(f[0] != 0);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        (!p.name.is_empty()).then_some(p)
    }
}

/// The attributes of a netlink attribute stream as (type, value), the
/// type without its nested/byte-order flags; ends at a malformed one.
fn nlas(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = usize::from(u16::from_ne_bytes([b[0], b[1]]));
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = &b[((len + 3) & !3).min(b.len())..];
        Some((kind, value))
    })
}

/// Ports of a bridge: one dump that the kernel filters by IFLA_MASTER
/// (rtnl_dump_ifinfo), so its cost follows the bridge's ports, not the
/// node's links.
pub fn bridge_ports(nl: &mut Netlink, bridge: u32) -> Result<Vec<Link>> {
    let mut msg = LinkMessage::default();
    msg.attributes = vec![LinkAttribute::Controller(bridge)];
    let replies = nl
        .request(RouteNetlinkMessage::GetLink(msg), NLM_F_DUMP)
        .map_err(|e| Bridge6Error::netlink(format!("list ports of bridge index {bridge}"), e))?;
    Ok(replies
        .iter()
        .filter_map(|r| match r {
            RouteNetlinkMessage::NewLink(m) => Some(Link::from_message(m)),
            _ => None,
        })
        .filter(|l| l.master == Some(bridge))
        .collect())
}

/// A socket subscribed to link events (RTNLGRP_LINK) in the namespace it
/// was opened in. Open it *before* the change whose effect you await, so
/// no event falls between the check and the wait.
pub struct LinkEvents {
    sock: Socket,
    buf: Vec<u8>,
}

/// One read of a [`LinkEvents`] socket.
enum Batch {
    /// The links the kernel reported on (RTM_NEWLINK).
    Links(Vec<Link>),
    /// Events were lost (socket overrun): look at the state directly.
    Overrun,
    TimedOut,
}

impl LinkEvents {
    pub fn open() -> io::Result<LinkEvents> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.add_membership(libc::RTNLGRP_LINK)?;
        Ok(LinkEvents {
            sock,
            buf: vec![0; 64 * 1024],
        })
    }

    fn next_batch(&mut self, deadline: Instant) -> io::Result<Batch> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(Batch::TimedOut);
        }
        let mut pfd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(Batch::Links(vec![]))
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(Batch::TimedOut);
        }
        let len = match self.sock.recv(&mut &mut self.buf[..], libc::MSG_DONTWAIT) {
            Ok(l) => l,
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(Batch::Overrun),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Batch::Links(vec![])),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let mut off = 0;
        while off < len {
            let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..len])
            else {
                return Ok(Batch::Overrun);
            };
            let l = m.header.length as usize;
            if l == 0 {
                break;
            }
            off += (l + 3) & !3;
            if let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(lm)) = m.payload {
                out.push(Link::from_message(&lm));
            }
        }
        Ok(Batch::Links(out))
    }
}

/// What became of a new veth while ADD waited for it to carry traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortOutcome {
    /// The pod end is operational and the host end forwards.
    Forwarding,
    /// The bridge runs STP: the port goes through listening/learning for
    /// twice the forward delay (30 s by default); not worth waiting for.
    Stp(BridgePortState),
    /// The limit passed first.
    TimedOut,
}

/// Wait until the pod end (`pod_index`, events from `pod_events`, opened
/// in the pod namespace) is operationally up and the host end
/// (`host_index`) is a forwarding bridge port, at most `limit`.
///
/// Both happen in the kernel's linkwatch work a moment after "link up"
/// returns. The pod end counts as up only on an *event* saying so: the
/// kernel sends it after its NETDEV_CHANGE notifiers ran, i.e. after
/// addrconf made the pod's routes usable (a GETLINK could see the new
/// operstate a moment earlier). A port in an STP state is reported at once.
pub fn wait_usable(
    host_nl: &mut Netlink,
    host_events: &mut LinkEvents,
    host_index: u32,
    pod_events: &mut LinkEvents,
    pod_index: u32,
    limit: Duration,
) -> Result<PortOutcome> {
    let deadline = Instant::now() + limit;
    let read_err = |e| Bridge6Error::netlink("read link events", e);
    // The pod end: events only (see above); an overrun falls back to a
    // plain look, which is right but for that moment.
    loop {
        match pod_events.next_batch(deadline).map_err(read_err)? {
            Batch::TimedOut => return Ok(PortOutcome::TimedOut),
            Batch::Overrun => break,
            Batch::Links(ls) => {
                if ls.iter().any(|l| l.index == pod_index && l.oper_up) {
                    break;
                }
            }
        }
    }
    // The host end: its port state, looked at, then from events.
    let mut state = by_index(host_nl, host_index)?.and_then(|l| l.port_state);
    loop {
        match state {
            Some(BridgePortState::Forwarding) => return Ok(PortOutcome::Forwarding),
            Some(
                s @ (BridgePortState::Listening
                | BridgePortState::Learning
                | BridgePortState::Blocking),
            ) => return Ok(PortOutcome::Stp(s)),
            _ => {}
        }
        match host_events.next_batch(deadline).map_err(read_err)? {
            Batch::TimedOut => return Ok(PortOutcome::TimedOut),
            Batch::Overrun => state = by_index(host_nl, host_index)?.and_then(|l| l.port_state),
            Batch::Links(ls) => {
                if let Some(l) = ls.iter().rev().find(|l| l.index == host_index) {
                    state = l.port_state.or(state);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, kind: &str, isolated: Option<bool>) -> Link {
        Link {
            index: 7,
            name: name.into(),
            mac: vec![0; 6],
            mtu: 1500,
            master: Some(3),
            kind: Some(kind.into()),
            up: true,
            oper_up: true,
            alias: None,
            port_state: None,
            hairpin: None,
            isolation: [isolated, None, None, None],
        }
    }

    /// A port's RTM_NEWLINK payload as netlink-packet-route writes it.
    fn payload(attrs: Vec<LinkAttribute>) -> Vec<u8> {
        use netlink_packet_core::Emitable;
        let mut m = LinkMessage::default();
        m.header.index = 7;
        m.attributes = attrs;
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    #[test]
    fn the_raw_port_summary_reads_name_master_kind_and_isolation() {
        let b = payload(vec![
            LinkAttribute::IfName("eth0".into()),
            LinkAttribute::Mtu(1500),
            LinkAttribute::Controller(3),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::PortKind(netlink_packet_route::link::InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![
                    InfoBridgePort::Learning(true),
                    InfoBridgePort::Isolated(false),
                ])),
            ]),
        ]);
        let p = PortSummary::parse(&b).unwrap();
        assert_eq!(
            p,
            PortSummary {
                name: "eth0".into(),
                master: Some(3),
                kind: Some("veth".into()),
                isolated: Some(false),
            }
        );
        let b = payload(vec![
            LinkAttribute::IfName("c6abcdef0123456".into()),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::PortKind(netlink_packet_route::link::InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::Isolated(
                    true,
                )])),
            ]),
        ]);
        let p = PortSummary::parse(&b).unwrap();
        assert_eq!((p.isolated, p.master), (Some(true), None));
        // Truncated or empty input is no port, never a panic.
        for cut in 0..b.len() {
            let _ = PortSummary::parse(&b[..cut]);
        }
        assert_eq!(PortSummary::parse(&[]), None);
    }

    #[test]
    fn only_foreign_ports_not_isolated_open_layer2() {
        // The operator's uplink on the pods' bridge.
        assert!(port("eth0", "veth", Some(false)).opens_layer2());
        assert!(port("eth0", "veth", None).opens_layer2());
        let mut plain = port("eth0", "veth", Some(false));
        plain.kind = None;
        assert!(plain.opens_layer2());
        // A foreign link merely named like ours is still foreign.
        assert!(port("c6abcdef0123456", "vlan", Some(false)).opens_layer2());
        // Isolated: it reaches the node, never a pod port.
        assert!(!port("eth0", "veth", Some(true)).opens_layer2());
        // Pod ports, including those of releases before isolation.
        assert!(!port("c6abcdef0123456", "veth", Some(true)).opens_layer2());
        assert!(!port("c6abcdef0123456", "veth", None).opens_layer2());
    }
}
