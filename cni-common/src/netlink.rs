//! Synchronous rtnetlink over netlink-sys + netlink-packet-route, as
//! netavark does: no async runtime to start in a short-lived plugin, one
//! socket per namespace opened in place (see [`crate::netns`]).
//!
//! Requests that expect no answer carry NLM_F_ACK so kernel errors come back
//! as `io::Error` with the errno; dumps are retried when the kernel flags
//! them interrupted (NLM_F_DUMP_INTR), as the reference `netlinksafe` does.

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
/// The state of a neighbour or FDB entry, as [`Netlink::fdb`] reports it.
pub use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::neighbour::{NeighbourAttribute, NeighbourMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::io;
use std::net::IpAddr;

pub struct Netlink {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// The payloads of a dump ([`Netlink::dump_raw`]). `interrupted`: the
/// kernel saw the list change while it was read (NLM_F_DUMP_INTR), so an
/// entry may be missing or twice.
#[derive(Debug, Default)]
pub struct RawDump {
    pub messages: Vec<Vec<u8>>,
    pub interrupted: bool,
}

/// An IPv6 address on a link, as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkAddress {
    pub index: u32,
    pub addr: std::net::Ipv6Addr,
    pub prefix_len: u8,
    pub flags: u32,
}

impl Netlink {
    /// A route socket in the calling thread's namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        // Extended acks give the kernel's reason text on errors.
        let _ = sock.set_ext_ack(true);
        Ok(Netlink {
            sock,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Send one request and collect every reply message up to the ACK or
    /// NLMSG_DONE. Errors from the kernel become `io::Error`.
    pub fn request(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        // Built once and re-sent with a new sequence number on EINTR (an
        // interrupted dump): no clone of the message, whose Clone impls
        // for every rtnetlink type grow each binary (docs/performance.md).
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        nl.finalize();
        let mut out = vec![0u8; nl.buffer_len()];
        for _ in 0..5 {
            self.seq = self.seq.wrapping_add(1);
            nl.header.sequence_number = self.seq;
            nl.serialize(&mut out);
            match self.request_once(&out, flags) {
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                other => return other,
            }
        }
        Err(io::Error::from_raw_os_error(libc::EINTR))
    }

    fn request_once(&mut self, out: &[u8], flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        let seq = self.seq;
        self.sock.send(out, 0)?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let mut off = 0;
            while off < n {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = m.header.length as usize;
                if len == 0 {
                    break;
                }
                off += (len + 3) & !3;
                if m.header.sequence_number != seq {
                    continue;
                }
                if m.header.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match m.payload {
                    NetlinkPayload::Done(_) => {
                        if interrupted {
                            return Err(io::Error::from_raw_os_error(libc::EINTR));
                        }
                        return Ok(replies);
                    }
                    NetlinkPayload::Error(err) => {
                        return match err.code {
                            None => Ok(replies),
                            Some(_) => Err(err.to_io()),
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => {
                        replies.push(inner);
                        if !dump && flags & NLM_F_ACK == 0 {
                            return Ok(replies);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// A dump whose replies are handed back unparsed: each message's
    /// payload (after the netlink header), for a caller that reads two or
    /// three attributes of many links. netlink-packet-route decodes every
    /// attribute of every link, ~9x the kernel's own cost of the dump
    /// (docs/performance.md). Retried when the kernel flags it interrupted;
    /// a long dump on a node creating pods concurrently can stay
    /// interrupted, so after the retries the last listing is returned
    /// marked as such, for the caller to judge.
    pub fn dump_raw(&mut self, msg: RouteNetlinkMessage) -> io::Result<RawDump> {
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        nl.finalize();
        let mut out = vec![0u8; nl.buffer_len()];
        let mut last = None;
        for _ in 0..5 {
            self.seq = self.seq.wrapping_add(1);
            nl.header.sequence_number = self.seq;
            nl.serialize(&mut out);
            let dump = self.dump_raw_once(&out)?;
            if !dump.interrupted {
                return Ok(dump);
            }
            last = Some(dump);
        }
        last.ok_or_else(|| io::Error::from_raw_os_error(libc::EINTR))
    }

    fn dump_raw_once(&mut self, out: &[u8]) -> io::Result<RawDump> {
        const HDR: usize = 16;
        const NLMSG_ERROR: u16 = 2;
        const NLMSG_DONE: u16 = 3;
        let seq = self.seq;
        self.sock.send(out, 0)?;
        let mut replies = Vec::new();
        let mut interrupted = false;
        let u32_at =
            |b: &[u8], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        loop {
            let n = self.sock.recv(&mut &mut self.buf[..], 0)?;
            let buf = &self.buf[..n];
            let mut off = 0;
            while off + HDR <= n {
                let len = u32_at(buf, off) as usize;
                if len < HDR || off + len > n {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("netlink message of length {len} at offset {off} of {n}"),
                    ));
                }
                let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
                let flags = u16::from_ne_bytes([buf[off + 6], buf[off + 7]]);
                let msg_seq = u32_at(buf, off + 8);
                let payload = &buf[off + HDR..off + len];
                off += (len + 3) & !3;
                if msg_seq != seq {
                    continue;
                }
                if flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match kind {
                    NLMSG_DONE | NLMSG_ERROR => {
                        let code = if payload.len() >= 4 {
                            u32_at(payload, 0) as i32
                        } else {
                            0
                        };
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        return Ok(RawDump {
                            messages: replies,
                            interrupted,
                        });
                    }
                    1 => {} // NLMSG_NOOP
                    _ => replies.push(payload.to_vec()),
                }
            }
        }
    }

    /// Look a link up by name (one GETLINK, never a dump).
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<LinkMessage>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(r) => Ok(r.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The bridge FDB entries of `port`: each MAC with its state (NOARP for
    /// a static entry, PERMANENT for the port's own address, REACHABLE or
    /// STALE for a learned one).
    pub fn fdb(&mut self, port: u32) -> io::Result<Vec<([u8; 6], NeighbourState)>> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = AddressFamily::Bridge;
        msg.header.ifindex = port;
        let replies = self.request(RouteNetlinkMessage::GetNeighbour(msg), NLM_F_DUMP)?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewNeighbour(n) if n.header.ifindex == port => {
                    let state = n.header.state;
                    n.attributes.into_iter().find_map(|a| match a {
                        NeighbourAttribute::LinkLayerAddress(l) => {
                            l.try_into().ok().map(|mac| (mac, state))
                        }
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// IPv6 addresses of one link (the kernel filters a dump by index only
    /// with strict checking, so the filter is applied here too).
    pub fn ipv6_addresses(&mut self, index: u32) -> io::Result<Vec<LinkAddress>> {
        let _ = self.sock.set_netlink_get_strict_chk(true);
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet6;
        msg.header.index = index;
        let replies = self.request(RouteNetlinkMessage::GetAddress(msg), NLM_F_DUMP)?;
        let mut out = Vec::new();
        for r in replies {
            let RouteNetlinkMessage::NewAddress(a) = r else {
                continue;
            };
            if a.header.index != index || a.header.family != AddressFamily::Inet6 {
                continue;
            }
            let mut addr = None;
            let mut flags = u32::from(a.header.flags.bits());
            for attr in &a.attributes {
                match attr {
                    AddressAttribute::Address(IpAddr::V6(v6)) => addr = Some(*v6),
                    AddressAttribute::Flags(f) => flags = f.bits(),
                    _ => {}
                }
            }
            if let Some(addr) = addr {
                out.push(LinkAddress {
                    index,
                    addr,
                    prefix_len: a.header.prefix_len,
                    flags,
                });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_lookup() {
        let mut nl = Netlink::open().unwrap();
        let lo = nl.link_by_name("lo").unwrap().expect("lo exists");
        // The kernel gives loopback index 1 in every namespace.
        assert_eq!(lo.header.index, 1);
        assert!(nl.link_by_name("no-such-link0").unwrap().is_none());
        // ::1/128 is on an up lo unless IPv6 is disabled on it.
        let up = lo
            .header
            .flags
            .contains(netlink_packet_route::link::LinkFlags::Up);
        let v6 = std::fs::read_to_string("/proc/sys/net/ipv6/conf/lo/disable_ipv6")
            .is_ok_and(|s| s.trim() == "0");
        let addrs = nl.ipv6_addresses(lo.header.index).unwrap();
        if up && v6 {
            assert!(
                addrs
                    .iter()
                    .any(|a| a.addr == std::net::Ipv6Addr::LOCALHOST && a.prefix_len == 128),
                "{addrs:?}"
            );
        }
    }
}
