//! The attacker's tools for the isolation suite (`tests/isolation_attacks.rs`):
//! what a pod with CAP_NET_RAW can put on its interface, built byte by byte
//! (Ethernet, 802.1Q / 802.1ad tags, IPv6, UDP, ICMPv6 neighbour and router
//! advertisements, redirects, checksums included), and the observers that
//! tell whether a crafted frame had an effect: UDP receivers and raw
//! captures opened inside the target namespace.
//!
//! Every socket is created by a short-lived thread that entered the
//! namespace (a socket stays in the namespace it was made in), then used
//! from the test thread; no thread is left inside a namespace.

use cni_common::netns::NetNs;
use std::io;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// An Ethernet address.
pub type Mac = [u8; 6];

pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IEEE 802 local experimental ethertype: a frame no protocol handles, so
/// its only effect is on the bridge (MAC learning).
pub const ETHERTYPE_EXPERIMENTAL: u16 = 0x88b5;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;
pub const BROADCAST: Mac = [0xff; 6];

const NEXT_UDP: u8 = 17;
const NEXT_ICMPV6: u8 = 58;

/// `aa:bb:cc:dd:ee:ff` → bytes.
pub fn parse_mac(s: &str) -> Option<Mac> {
    let parts: Vec<u8> = s
        .split(':')
        .map(|p| u8::from_str_radix(p, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    parts.try_into().ok()
}

pub fn mac_str(m: &Mac) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The Ethernet multicast address of an IPv6 multicast group (RFC 2464).
pub fn multicast_mac(group: Ipv6Addr) -> Mac {
    let o = group.octets();
    [0x33, 0x33, o[12], o[13], o[14], o[15]]
}

/// `ff02::1`, all nodes on the link.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// One VLAN tag (priority 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub tpid: u16,
    pub vid: u16,
}

impl Tag {
    pub fn dot1q(vid: u16) -> Tag {
        Tag {
            tpid: TPID_8021Q,
            vid,
        }
    }

    pub fn dot1ad(vid: u16) -> Tag {
        Tag {
            tpid: TPID_8021AD,
            vid,
        }
    }
}

/// An Ethernet frame: destination, source, the tags outermost first, the
/// ethertype, the payload; padded to the 60-byte minimum.
pub fn ethernet(dst: Mac, src: Mac, tags: &[Tag], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 4 * tags.len() + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    for t in tags {
        f.extend_from_slice(&t.tpid.to_be_bytes());
        f.extend_from_slice(&(t.vid & 0x0fff).to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// An IPv6 packet (no extension headers).
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(40 + payload.len());
    p.extend_from_slice(&[0x60, 0, 0, 0]);
    p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    p.push(next);
    p.push(hop_limit);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(payload);
    p
}

/// The upper-layer checksum over the IPv6 pseudo-header (RFC 8200 8.1).
pub fn checksum(src: Ipv6Addr, dst: Ipv6Addr, next: u8, upper: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |bytes: &[u8]| {
        for c in bytes.chunks(2) {
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
    add(&(upper.len() as u32).to_be_bytes());
    add(&[0, 0, 0, next]);
    add(upper);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv6 packet carrying one UDP datagram (checksum filled in; a zero
/// checksum is invalid over IPv6, so 0 becomes 0xffff).
pub fn udp(src: Ipv6Addr, dst: Ipv6Addr, sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let len = 8 + data.len();
    let mut u = Vec::with_capacity(len);
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&(len as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    let c = match checksum(src, dst, NEXT_UDP, &u) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ipv6(src, dst, NEXT_UDP, 64, &u)
}

/// An IPv6 packet carrying one ICMPv6 message, hop limit 255 (neighbour
/// discovery accepts nothing else).
pub fn icmpv6(src: Ipv6Addr, dst: Ipv6Addr, kind: u8, code: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, code, 0, 0];
    m.extend_from_slice(body);
    let c = checksum(src, dst, NEXT_ICMPV6, &m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    ipv6(src, dst, NEXT_ICMPV6, 255, &m)
}

fn lladdr_option(kind: u8, mac: Mac) -> Vec<u8> {
    let mut o = vec![kind, 1];
    o.extend_from_slice(&mac);
    o
}

/// A neighbour advertisement for `target` at `mac`: unsolicited, override
/// (the flags a takeover uses), with the target link-layer address option.
pub fn neighbour_advert(src: Ipv6Addr, dst: Ipv6Addr, target: Ipv6Addr, mac: Mac) -> Vec<u8> {
    let mut body = vec![0x20, 0, 0, 0]; // O=1, S=0, R=0
    body.extend_from_slice(&target.octets());
    body.extend(lladdr_option(2, mac));
    icmpv6(src, dst, 136, 0, &body)
}

/// A router advertisement: default router for 30 minutes, and `prefix`
/// (a /64) on-link and for address autoconfiguration.
pub fn router_advert(src: Ipv6Addr, dst: Ipv6Addr, mac: Mac, prefix: Ipv6Addr) -> Vec<u8> {
    let mut body = vec![64, 0];
    body.extend_from_slice(&1800u16.to_be_bytes());
    body.extend_from_slice(&[0; 8]); // reachable time, retrans timer
    body.extend(lladdr_option(1, mac));
    body.extend_from_slice(&[3, 4, 64, 0xc0]); // prefix info: L and A
    body.extend_from_slice(&86400u32.to_be_bytes());
    body.extend_from_slice(&14400u32.to_be_bytes());
    body.extend_from_slice(&[0; 4]);
    body.extend_from_slice(&prefix.octets());
    icmpv6(src, dst, 134, 0, &body)
}

/// A redirect: "reach `destination` through `target` (at `mac`)".
pub fn redirect(
    src: Ipv6Addr,
    dst: Ipv6Addr,
    target: Ipv6Addr,
    destination: Ipv6Addr,
    mac: Mac,
) -> Vec<u8> {
    let mut body = vec![0; 4];
    body.extend_from_slice(&target.octets());
    body.extend_from_slice(&destination.octets());
    body.extend(lladdr_option(2, mac));
    icmpv6(src, dst, 137, 0, &body)
}

/// Whether `needle` occurs in `hay` (a sent packet inside a captured frame,
/// whatever tags the capture kept or stripped).
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn last_err(what: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn in_netns<T: Send>(ns: &Path, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    NetNs::open(ns)
        .and_then(|n| n.run(f))
        .map_err(|e| io::Error::other(format!("enter {}: {e}", ns.display())))?
}

fn ifindex(ifname: &str) -> io::Result<i32> {
    let c = std::ffi::CString::new(ifname).map_err(io::Error::other)?;
    // SAFETY: a valid C string; if_nametoindex only reads it.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(last_err(&format!("interface {ifname}")));
    }
    Ok(i as i32)
}

/// An AF_PACKET socket bound to one interface of one namespace.
fn packet_socket(ns: &Path, ifname: &str, protocol: u16) -> io::Result<(OwnedFd, i32)> {
    let ifname = ifname.to_string();
    in_netns(ns, move || {
        let index = ifindex(&ifname)?;
        let proto = protocol.to_be();
        // SAFETY: plain socket syscalls; the fd is owned at once.
        let fd = unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                i32::from(proto),
            );
            if fd < 0 {
                return Err(last_err("socket(AF_PACKET)"));
            }
            OwnedFd::from_raw_fd(fd)
        };
        if protocol != 0 {
            // SAFETY: sockaddr_ll is plain data, passed with its size.
            let rc = unsafe {
                let mut sa: libc::sockaddr_ll = std::mem::zeroed();
                sa.sll_family = libc::AF_PACKET as u16;
                sa.sll_protocol = proto;
                sa.sll_ifindex = index;
                libc::bind(
                    fd.as_raw_fd(),
                    &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(last_err(&format!("bind to {ifname}")));
            }
        }
        Ok((fd, index))
    })
}

/// The attacker's port: raw frames out of one interface of a pod.
pub struct RawPort {
    fd: OwnedFd,
    ifindex: i32,
}

impl RawPort {
    pub fn open(ns: &Path, ifname: &str) -> io::Result<RawPort> {
        // Protocol 0: a send-only socket, nothing is queued to it.
        let (fd, ifindex) = packet_socket(ns, ifname, 0)?;
        Ok(RawPort { fd, ifindex })
    }

    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        if frame.len() < 14 {
            return Err(io::Error::other(format!(
                "a frame of {} bytes: an Ethernet header alone is 14",
                frame.len()
            )));
        }
        // SAFETY: sockaddr_ll is plain data; the buffer outlives the call.
        let n = unsafe {
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_ifindex = self.ifindex;
            sa.sll_halen = 6;
            sa.sll_addr[..6].copy_from_slice(&frame[..6]);
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr() as *const libc::c_void,
                frame.len(),
                0,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(last_err("send frame"));
        }
        Ok(())
    }
}

/// Every frame an interface receives (outgoing ones excluded), from the
/// moment of [`Capture::start`].
pub struct Capture {
    fd: OwnedFd,
    frames: Mutex<Vec<Vec<u8>>>,
}

impl Capture {
    pub fn start(ns: &Path, ifname: &str) -> io::Result<Capture> {
        let (fd, _) = packet_socket(ns, ifname, libc::ETH_P_ALL as u16)?;
        let size: libc::c_int = 4 << 20;
        // SAFETY: an int option passed with its size. A smaller buffer only
        // risks drops under load, so the result is not fatal.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(Capture {
            fd,
            frames: Mutex::new(Vec::new()),
        })
    }

    fn drain(&self) {
        let mut frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = vec![0u8; 65536];
        loop {
            // SAFETY: recvfrom into buffers we own, with their sizes.
            let (n, pkttype) = unsafe {
                let mut sa: libc::sockaddr_ll = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
                let n = libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    &mut sa as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                    &mut len,
                );
                (n, sa.sll_pkttype)
            };
            if n <= 0 {
                return;
            }
            if pkttype != libc::PACKET_OUTGOING {
                frames.push(buf[..n as usize].to_vec());
            }
        }
    }

    /// Whether a received frame so far contains `needle`.
    pub fn saw(&self, needle: &[u8]) -> bool {
        self.drain();
        let frames = self.frames.lock().unwrap_or_else(|p| p.into_inner());
        frames.iter().any(|f| contains(f, needle))
    }

    /// [`Capture::saw`], waiting up to `timeout` for it.
    pub fn wait_for(&self, needle: &[u8], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.saw(needle) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A UDP socket listening on `[::]:port` in a namespace: what an
/// application there would receive.
pub struct Receiver {
    sock: UdpSocket,
    got: Mutex<Vec<(Ipv6Addr, Vec<u8>)>>,
}

impl Receiver {
    pub fn bind(ns: &Path, port: u16) -> io::Result<Receiver> {
        let sock = in_netns(ns, move || {
            UdpSocket::bind(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))
        })?;
        sock.set_nonblocking(true)?;
        Ok(Receiver {
            sock,
            got: Mutex::new(Vec::new()),
        })
    }

    fn drain(&self) {
        let mut got = self.got.lock().unwrap_or_else(|p| p.into_inner());
        let mut buf = [0u8; 2048];
        while let Ok((n, SocketAddr::V6(from))) = self.sock.recv_from(&mut buf) {
            got.push((*from.ip(), buf[..n].to_vec()));
        }
    }

    /// The source address of the datagram carrying `token`, if one came.
    pub fn seen(&self, token: &[u8]) -> Option<Ipv6Addr> {
        self.drain();
        let got = self.got.lock().unwrap_or_else(|p| p.into_inner());
        got.iter().find(|(_, d)| d == token).map(|(a, _)| *a)
    }

    pub fn wait_for(&self, token: &[u8], timeout: Duration) -> Option<Ipv6Addr> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(a) = self.seen(token) {
                return Some(a);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One ordinary datagram from a namespace, through its kernel's routing
/// (the legitimate traffic the attacks try to divert).
pub fn send_udp(
    ns: &Path,
    src: Option<Ipv6Addr>,
    dst: Ipv6Addr,
    port: u16,
    data: &[u8],
) -> io::Result<()> {
    let data = data.to_vec();
    in_netns(ns, move || {
        let bind = SocketAddrV6::new(src.unwrap_or(Ipv6Addr::UNSPECIFIED), 0, 0, 0);
        let s = UdpSocket::bind(bind)?;
        s.send_to(&data, SocketAddrV6::new(dst, port, 0, 0))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_checksum_verifies_to_zero() {
        let src: Ipv6Addr = "fd00::1".parse().unwrap();
        let dst: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let p = udp(src, dst, 1000, 7000, b"token!");
        assert_eq!(p.len(), 40 + 8 + 6);
        assert_eq!(p[6], 17);
        // Summing a correct datagram with its checksum gives 0xffff, i.e.
        // the checksum of the whole is 0.
        assert_eq!(checksum(src, dst, 17, &p[40..]), 0);
        // Another token, another checksum.
        let q = udp(src, dst, 1000, 7000, b"token?");
        assert_ne!(p[46..48], q[46..48]);
    }

    #[test]
    fn icmpv6_messages_have_hop_limit_255_and_verify() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let p = neighbour_advert(
            src,
            ALL_NODES,
            "fd00::10".parse().unwrap(),
            [2, 0, 0, 0, 0, 1],
        );
        assert_eq!(p[7], 255);
        assert_eq!(p[40], 136);
        assert_eq!(p[44], 0x20);
        assert_eq!(checksum(src, ALL_NODES, 58, &p[40..]), 0);
        let ra = router_advert(src, ALL_NODES, [2; 6], "2001:db8:bad::".parse().unwrap());
        assert_eq!(ra[40], 134);
        assert_eq!(ra.len(), 40 + 16 + 8 + 32);
        assert_eq!(checksum(src, ALL_NODES, 58, &ra[40..]), 0);
    }

    #[test]
    fn frames_carry_tags_outermost_first_and_are_padded() {
        let f = ethernet(
            BROADCAST,
            [2, 0, 0, 0, 0, 1],
            &[Tag::dot1ad(5), Tag::dot1q(0)],
            ETHERTYPE_IPV6,
            &[1, 2, 3],
        );
        assert_eq!(f.len(), 60);
        assert_eq!(&f[12..22], &[0x88, 0xa8, 0, 5, 0x81, 0, 0, 0, 0x86, 0xdd]);
        assert_eq!(multicast_mac(ALL_NODES), [0x33, 0x33, 0, 0, 0, 1]);
        assert_eq!(parse_mac("02:0a:ff:00:01:10"), Some([2, 10, 255, 0, 1, 16]));
        assert_eq!(mac_str(&[2, 10, 255, 0, 1, 16]), "02:0a:ff:00:01:10");
        assert!(contains(&f, &[0x86, 0xdd, 1, 2]) && !contains(&f, &[9, 9]));
    }
}
