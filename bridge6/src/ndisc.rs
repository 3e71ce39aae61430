//! Unsolicited neighbour advertisements for a pod's requested addresses.
//!
//! An address handed out again soon after its previous pod died may still
//! sit in other pods' neighbour caches with the old pod's MAC; until that
//! entry times out, traffic to the new pod is lost. An unsolicited NA with
//! the Override flag replaces such entries at once. Only addresses the
//! runtime asked for can come back that soon (ipam-prefix's cursor does
//! not reuse fresh slots), so only those are announced: the all-nodes NA
//! is flooded to every bridge port. The node's own cache is fixed without
//! a packet ([`crate::link::refresh_neighbour`]).
//!
//! Why we send it ourselves: the kernel's `ndisc_notify=1` announces an
//! address only when DAD completes on a tentative address, or at
//! NETDEV_UP. Our addresses carry IFA_F_NODAD (never tentative, usable at
//! once), so the first never fires, and at NETDEV_UP the host end of the
//! veth is not yet a forwarding bridge port, so the bridge drops it (both
//! observed with tcpdump on the bridge).
//!
//! When: only once the pod end is operational (the kernel routes `ff02::1`
//! out of a link only after its linkwatch work marked it ready: earlier
//! sends failed with ENETUNREACH) and the host end forwards; see
//! `link::wait_usable`. A packet socket would avoid the routing, but
//! closing one costs an RCU grace period (~10 ms measured here); a raw
//! ICMPv6 socket costs microseconds.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{Ipv6Addr, SocketAddrV6};

const ND_NEIGHBOR_ADVERT: u8 = 136;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const OPT_TARGET_LL_ADDR: u8 = 2;
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// The 32-byte ICMPv6 NA: header, target, target link-layer address
/// option. The checksum is left 0: the kernel computes it for every
/// IPPROTO_ICMPV6 raw socket.
pub fn advertisement(target: Ipv6Addr, mac: [u8; 6]) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = ND_NEIGHBOR_ADVERT;
    p[4] = NA_FLAG_OVERRIDE;
    p[8..24].copy_from_slice(&target.octets());
    p[24] = OPT_TARGET_LL_ADDR;
    p[25] = 1; // length in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    p
}

/// Announce `addr` (on interface `ifindex` with MAC `mac`, not tentative)
/// to all nodes on the link, from `addr` itself. Call it on a thread inside
/// the pod namespace: the socket belongs to the namespace it is made in.
pub fn announce(ifindex: u32, addr: Ipv6Addr, mac: [u8; 6]) -> io::Result<()> {
    let s = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))?;
    // RFC 4861 7.1.2: receivers drop NAs whose hop limit is not 255.
    s.set_multicast_hops_v6(255)?;
    s.set_multicast_loop_v6(false)?;
    s.set_multicast_if_v6(ifindex)?;
    s.bind(&SockAddr::from(SocketAddrV6::new(addr, 0, 0, 0)))?;
    let dst = SockAddr::from(SocketAddrV6::new(ALL_NODES, 0, 0, ifindex));
    s.send_to(&advertisement(addr, mac), &dst)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packet_layout() {
        let t: Ipv6Addr = "fd00:1:2:3:4:1::10".parse().unwrap();
        let p = advertisement(t, [2, 0, 0, 0, 0xab, 0xcd]);
        assert_eq!(p[0], 136);
        assert_eq!(p[1], 0, "code");
        assert_eq!(&p[2..4], &[0, 0], "checksum left to the kernel");
        assert_eq!(p[4], 0x20, "override, not solicited, not router");
        assert_eq!(&p[5..8], &[0, 0, 0]);
        assert_eq!(&p[8..24], &t.octets());
        assert_eq!(&p[24..26], &[2, 1]);
        assert_eq!(&p[26..32], &[2, 0, 0, 0, 0xab, 0xcd]);
    }
}
