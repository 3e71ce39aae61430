//! Unsolicited neighbour advertisements for a pod's new addresses.
//!
//! An address handed out again soon after its previous pod died may still
//! sit in the node's (or other pods') neighbour caches with the old pod's
//! MAC; until that entry times out, traffic to the new pod is lost. An
//! unsolicited NA with the Override flag replaces such entries at once.
//!
//! Why we send it ourselves: the kernel's `ndisc_notify=1` announces an
//! address only when DAD completes on a tentative address, or at
//! NETDEV_UP. Our addresses carry IFA_F_NODAD (never tentative, usable at
//! once), so the first never fires, and at NETDEV_UP the host end of the
//! veth is not yet a forwarding bridge port, so the bridge drops it (both
//! observed with tcpdump on the bridge).
//!
//! Why a packet socket: an ICMPv6 socket would route `ff02::1`, and the
//! pod's per-device multicast route only appears when addrconf sees the
//! link operational — asynchronously, after "link up" returns — so a send
//! right after ADD's wait sometimes failed with ENETUNREACH, or followed
//! the default route to the gateway's MAC. An AF_PACKET datagram to
//! 33:33:00:00:00:01 on the interface bypasses routing entirely; the
//! frame only needs the link to have carrier, which a veth has as soon as
//! both ends are up.

use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const ND_NEIGHBOR_ADVERT: u8 = 136;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const OPT_TARGET_LL_ADDR: u8 = 2;
const IPPROTO_ICMPV6: u8 = 58;
const ETH_P_IPV6: u16 = 0x86dd;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
/// RFC 2464: IPv6 multicast → 33:33 + low 32 bits of the group.
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];

/// The 32-byte ICMPv6 NA: header, target, target link-layer address
/// option; checksum over the IPv6 pseudo-header from `src` to ff02::1.
pub fn advertisement(src: Ipv6Addr, target: Ipv6Addr, mac: [u8; 6]) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = ND_NEIGHBOR_ADVERT;
    p[4] = NA_FLAG_OVERRIDE;
    p[8..24].copy_from_slice(&target.octets());
    p[24] = OPT_TARGET_LL_ADDR;
    p[25] = 1; // length in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    let sum = checksum(src, ALL_NODES, &p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// RFC 4443 2.3: one's complement sum over the pseudo-header (source,
/// destination, upper-layer length, next header) and the message.
pub fn checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from_be_bytes([c[0], 0])
            };
            sum += u32::from(w);
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&(msg.len() as u32).to_be_bytes());
    add(&[0, 0, 0, IPPROTO_ICMPV6]);
    add(msg);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The IPv6 packet (header + NA) announcing `addr` from `addr`.
pub fn packet(addr: Ipv6Addr, mac: [u8; 6]) -> [u8; 72] {
    let mut p = [0u8; 72];
    p[0] = 0x60; // version 6, traffic class 0, flow label 0
    p[4..6].copy_from_slice(&32u16.to_be_bytes());
    p[6] = IPPROTO_ICMPV6;
    p[7] = 255; // RFC 4861 7.1.2: receivers drop NAs with another hop limit
    p[8..24].copy_from_slice(&addr.octets());
    p[24..40].copy_from_slice(&ALL_NODES.octets());
    p[40..72].copy_from_slice(&advertisement(addr, addr, mac));
    p
}

/// Announce `addr` (on interface `ifindex` with MAC `mac`) to all nodes on
/// the link. Call it on a thread inside the pod namespace: the packet
/// socket belongs to the namespace it is made in.
pub fn announce(ifindex: u32, addr: Ipv6Addr, mac: [u8; 6]) -> io::Result<()> {
    let proto = ETH_P_IPV6.to_be();
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor we own.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid start.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&ALL_NODES_MAC);
    let pkt = packet(addr, mac);
    // SAFETY: buffer and address are valid for the lengths passed.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            std::ptr::addr_of!(sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_layout() {
        let t: Ipv6Addr = "fd00:1:2:3:4:1::10".parse().unwrap();
        let p = packet(t, [2, 0, 0, 0, 0xab, 0xcd]);
        assert_eq!(p[0] >> 4, 6);
        assert_eq!(u16::from_be_bytes([p[4], p[5]]), 32, "payload length");
        assert_eq!(p[6], 58);
        assert_eq!(p[7], 255);
        assert_eq!(&p[8..24], &t.octets());
        assert_eq!(&p[24..40], &ALL_NODES.octets());
        let na = &p[40..];
        assert_eq!(na[0], 136);
        assert_eq!(na[1], 0, "code");
        assert_eq!(na[4], 0x20, "override, not solicited, not router");
        assert_eq!(&na[8..24], &t.octets());
        assert_eq!(&na[24..26], &[2, 1]);
        assert_eq!(&na[26..32], &[2, 0, 0, 0, 0xab, 0xcd]);
    }

    #[test]
    fn checksum_verifies_to_zero() {
        // A receiver sums the message *with* its checksum and gets 0.
        let t: Ipv6Addr = "2001:db8:7:12:0:1:0:10".parse().unwrap();
        let na = advertisement(t, t, [0x02, 0x42, 0xac, 0x11, 0x00, 0x02]);
        assert_ne!(&na[2..4], &[0, 0]);
        assert_eq!(checksum(t, ALL_NODES, &na), 0);
    }

    #[test]
    fn checksum_known_vector() {
        // Computed by hand for an all-zero 8-byte message from :: to ::1:
        // pseudo-header sum = 0x0001 (dst) + 0x0008 (len) + 0x003a (58)
        // = 0x0043 → complement 0xffbc.
        let c = checksum(Ipv6Addr::UNSPECIFIED, Ipv6Addr::LOCALHOST, &[0u8; 8]);
        assert_eq!(c, 0xffbc);
    }
}
