//! Helpers for the firewall6 suites (`conformance/tests/firewall6_*.rs`).
//!
//! Every ip6tables rule a test causes lives in a *node* namespace the test
//! made ([`RulesNode`]): ip6tables rulesets are per network namespace, so the
//! machine's own ruleset is never touched. [`Lab`] adds real traffic: a
//! bridge with two pods, an "outside" host routed through the node with an
//! address outside the cluster prefixes, and an "inside" host with a
//! cluster address, all wired with veths (the kernel here has no dummy
//! links) and named with the test's pid.

use crate::harness::{self, Invocation, Netns, Output};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Namespace and link name prefix of the firewall6 suites.
pub const PREFIX: &str = "fw6";

/// The cluster ULA /64 of the lab (clusterPrefixes).
pub const CLUSTER: &str = "fd00:f6::/64";

pub fn firewall6() -> std::path::PathBuf {
    harness::plugin("firewall6")
}

/// A fabricated prevResult as bridge6 reports it: [bridge, host veth, pod
/// iface], every address on the pod iface.
pub fn prev_result(
    version: &str,
    bridge: &str,
    veth: &str,
    sandbox: &str,
    addrs: &[&str],
) -> Value {
    let with_version = harness::has_ip_version_field(version);
    let ips: Vec<Value> = addrs
        .iter()
        .map(|a| {
            let mut ip = json!({ "address": a, "interface": 2 });
            if with_version {
                ip["version"] = json!("6");
            }
            ip
        })
        .collect();
    json!({
        "cniVersion": version,
        "interfaces": [
            { "name": bridge, "mac": "02:00:00:00:00:01" },
            { "name": veth, "mac": "02:00:00:00:00:02" },
            { "name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": sandbox }
        ],
        "ips": ips,
        "routes": [ { "dst": "::/0" } ],
        "dns": {}
    })
}

/// A firewall6 config of network `name` with `extra` keys merged in and
/// `prev` as prevResult (none if `Value::Null`).
pub fn conf(version: &str, name: &str, extra: Value, prev: &Value) -> Value {
    let mut c = json!({
        "cniVersion": version,
        "name": name,
        "type": "firewall6",
        "clusterPrefixes": [CLUSTER],
        "allowPorts": [ { "port": 443, "protocol": "tcp" } ],
    });
    if let Value::Object(m) = extra {
        for (k, v) in m {
            c[k] = v;
        }
    }
    if !prev.is_null() {
        c["prevResult"] = prev.clone();
    }
    c
}

/// A node namespace in which plugins run as if it were the host.
pub struct RulesNode {
    pub ns: Netns,
}

impl Default for RulesNode {
    fn default() -> Self {
        Self::new()
    }
}

impl RulesNode {
    pub fn new() -> RulesNode {
        RulesNode {
            ns: Netns::new(PREFIX),
        }
    }

    /// One call of `binary` inside the node for one attachment.
    pub fn call(&self, binary: &Path, cmd: &str, cid: &str, netns: &str, conf: &Value) -> Output {
        Invocation::attachment(binary, cmd, cid, netns, "eth0")
            .in_netns(&self.ns)
            .stdin_json(conf)
            .run()
    }

    pub fn fw(&self, cmd: &str, cid: &str, conf: &Value) -> Output {
        self.call(&firewall6(), cmd, cid, "/var/run/netns/fw6-fake-pod", conf)
    }

    /// GC or STATUS as libcni sends them (attachment variables empty).
    pub fn fw_network(&self, cmd: &str, conf: &Value) -> Output {
        Invocation::network(firewall6(), cmd)
            .in_netns(&self.ns)
            .stdin_json(conf)
            .run()
    }

    /// `ip6tables -S` of the filter table (every chain, every rule).
    pub fn rules(&self) -> Vec<String> {
        self.ns
            .exec_ok(&["ip6tables", "-w", "-S"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `ip6tables-save` without the timestamp comments: the complete state
    /// (counters included) for "changed nothing" comparisons.
    pub fn save(&self) -> String {
        self.ns
            .exec_ok(&["ip6tables-save", "-c"])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Rules carrying the per-pod tag of (network, container id, eth0).
    /// `ip6tables -t raw -S`.
    pub fn raw_rules(&self) -> Vec<String> {
        self.ns
            .exec_ok(&["ip6tables", "-w", "-t", "raw", "-S"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// One attachment's rules: its source check (source buckets) and its
    /// inbound policy (address buckets), all in the filter table.
    pub fn pod_rules(&self, network: &str, cid: &str) -> Vec<String> {
        let tag = format!("\"firewall6 net={network} if=eth0 id={cid}\"");
        self.rules()
            .into_iter()
            .filter(|l| l.contains(&tag))
            .collect()
    }

    /// Delete firewall6's jump from FORWARD to CNI6-FORWARD, wherever it
    /// is (the source checks of pod bridges come before it).
    pub fn drop_forward_jump(&self) {
        self.ip6tables(&[
            "-D",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            "firewall6: cni6 pod firewall",
            "-j",
            "CNI6-FORWARD",
        ]);
    }

    pub fn ip6tables(&self, args: &[&str]) -> String {
        let mut cmd = vec!["ip6tables", "-w"];
        cmd.extend_from_slice(args);
        self.ns.exec_ok(&cmd)
    }

    /// Apply `batch` with `ip6tables-restore --noflush` inside the node.
    pub fn restore(&self, batch: &str) {
        self.ns
            .exec_ok_input(&["ip6tables-restore", "-w", "--noflush"], batch.as_bytes());
    }

    pub fn set_bridge_nf(&self, value: &str) {
        self.ns.exec_ok(&[
            "sysctl",
            "-qw",
            &format!("net.bridge.bridge-nf-call-ip6tables={value}"),
        ]);
    }
}

/// A short link name with the pid in it (15-byte limit): `f6<tag><pid>`.
pub fn link(tag: &str) -> String {
    let name = format!("f6{tag}{}", std::process::id());
    assert!(name.len() <= 15, "link name {name} too long");
    name
}

/// One pod of the lab.
pub struct LabPod {
    pub ns: Netns,
    pub veth: String,
    pub ula: Ipv6Addr,
    pub gua: Ipv6Addr,
}

impl LabPod {
    pub fn path(&self) -> String {
        self.ns.path_str()
    }

    /// The prevResult bridge6 would have returned for this pod, with the
    /// pod interface's real MAC (firewall6 binds the pod's sources to it).
    pub fn prev_result(&self, version: &str, bridge: &str) -> Value {
        let mut r = prev_result(
            version,
            bridge,
            &self.veth,
            &self.path(),
            &[&format!("{}/96", self.ula), &format!("{}/96", self.gua)],
        );
        let mac = self.ns.exec_ok(&["cat", "/sys/class/net/eth0/address"]);
        r["interfaces"][2]["mac"] = json!(mac.trim());
        r
    }
}

/// Node with a bridge and two pods, an outside host and an inside host.
///
/// ```text
///  outside 2001:db8:ffff::2 ─ veth ─┐            ┌─ veth ─ pod a  fd00:f6::1:1:0:10, 2001:db8:7:1:0:1:0:10
///                                   node (bridge f6b<pid>: fd00:f6::1:1:0:1, 2001:db8:7:1:0:1:0:1)
///  inside fd00:f6::2:1:0:10 ─ veth ─┘            └─ veth ─ pod b  …:11
/// ```
pub struct Lab {
    pub node: RulesNode,
    pub bridge: String,
    pub a: LabPod,
    pub b: LabPod,
    pub outside: Netns,
    pub outside_addr: Ipv6Addr,
    pub inside: Netns,
    pub inside_addr: Ipv6Addr,
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

impl Lab {
    pub fn new() -> Lab {
        let node = RulesNode::new();
        let n = &node.ns;
        n.exec_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
        let bridge = link("b");
        n.exec_ok(&[
            "ip",
            "link",
            "add",
            &bridge,
            "type",
            "bridge",
            "forward_delay",
            "0",
        ]);
        n.exec_ok(&[
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{bridge}.accept_dad=0"),
        ]);
        n.exec_ok(&["ip", "link", "set", &bridge, "up"]);
        n.add_addr(&bridge, "fd00:f6::1:1:0:1/96");
        n.add_addr(&bridge, "2001:db8:7:1:0:1:0:1/96");
        let pod = |veth: String, slot: u16| -> LabPod {
            let ns = Netns::new(PREFIX);
            let ula: Ipv6Addr = format!("fd00:f6::1:1:0:{slot:x}").parse().unwrap();
            let gua: Ipv6Addr = format!("2001:db8:7:1:0:1:0:{slot:x}").parse().unwrap();
            wire(n, &veth, &ns);
            n.exec_ok(&["ip", "link", "set", &veth, "master", &bridge]);
            ns.add_addr("eth0", &format!("{ula}/96"));
            ns.add_addr("eth0", &format!("{gua}/96"));
            ns.exec_ok(&[
                "ip",
                "-6",
                "route",
                "add",
                "default",
                "via",
                "fd00:f6::1:1:0:1",
            ]);
            LabPod { ns, veth, ula, gua }
        };
        // Pod a's port has a foreign name (the catch-all port bucket), pod
        // b's a bridge6-style `c6<hex>` name (a hashed port bucket).
        let a = pod(link("a"), 0x10);
        let b = pod(format!("c6b1{:011x}", std::process::id()), 0x11);
        let outside = Netns::new(PREFIX);
        let ol = link("o");
        wire(n, &ol, &outside);
        n.add_addr(&ol, "2001:db8:ffff::1/64");
        outside.add_addr("eth0", "2001:db8:ffff::2/64");
        outside.exec_ok(&[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            "2001:db8:ffff::1",
        ]);
        let inside = Netns::new(PREFIX);
        let il = link("i");
        wire(n, &il, &inside);
        n.add_addr(&il, "fd00:f6::2:0:0:1/80");
        inside.add_addr("eth0", "fd00:f6::2:1:0:10/80");
        inside.exec_ok(&[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:f6::2:0:0:1",
        ]);
        Lab {
            node,
            bridge,
            a,
            b,
            outside,
            outside_addr: "2001:db8:ffff::2".parse().unwrap(),
            inside,
            inside_addr: "fd00:f6::2:1:0:10".parse().unwrap(),
        }
    }
}

/// A veth from the node (`host`, up) into `ns` (renamed `eth0`, up).
fn wire(node: &Netns, host: &str, ns: &Netns) {
    let peer = format!("{}p", &host[..host.len().min(14)]);
    node.exec_ok(&[
        "ip", "link", "add", host, "type", "veth", "peer", "name", &peer,
    ]);
    node.exec_ok(&["ip", "link", "set", &peer, "netns", ns.name()]);
    node.exec_ok(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{host}.accept_dad=0"),
    ]);
    node.exec_ok(&["ip", "link", "set", host, "up"]);
    ns.exec_ok(&[
        "sysctl",
        "-qw",
        &format!("net.ipv6.conf.{peer}.accept_dad=0"),
    ]);
    ns.exec_ok(&["ip", "link", "set", &peer, "name", "eth0"]);
    ns.exec_ok(&["ip", "link", "set", "eth0", "up"]);
}

/// A listener on `[addr]:port` inside `server`; call [`Listener::probe`]
/// to try a TCP exchange from a client namespace.
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    /// `server`: the namespace's path (`/var/run/netns/<name>`).
    pub fn new(server: &Path, addr: Ipv6Addr, port: u16) -> Listener {
        let ns = cni_common::netns::NetNs::open(server).expect("open server netns");
        let listener = ns
            .run(|| TcpListener::bind(SocketAddrV6::new(addr, port, 0, 0)))
            .expect("enter server netns")
            .unwrap_or_else(|e| panic!("listen on [{addr}]:{port}: {e}"));
        listener.set_nonblocking(true).unwrap();
        Listener {
            addr: SocketAddr::V6(SocketAddrV6::new(addr, port, 0, 0)),
            listener,
        }
    }

    /// [`Listener::probe`] with up to `tries` attempts: for "this must
    /// work" controls, where a first exchange may still wait on neighbour
    /// discovery of a fresh lab.
    pub fn probe_retry(
        &self,
        client: &Path,
        source: Option<Ipv6Addr>,
        timeout: Duration,
        tries: u32,
    ) -> Result<Ipv6Addr, String> {
        let mut last = String::new();
        for _ in 0..tries {
            match self.probe(client, source, timeout) {
                Ok(a) => return Ok(a),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Connect from `client` (optionally binding the source address),
    /// exchange a few bytes, and return the peer address the server saw.
    pub fn probe(
        &self,
        client: &Path,
        source: Option<Ipv6Addr>,
        timeout: Duration,
    ) -> Result<Ipv6Addr, String> {
        let ns = cni_common::netns::NetNs::open(client).expect("open client netns");
        let dst = self.addr;
        let stream = ns
            .run(|| -> std::io::Result<TcpStream> {
                match source {
                    None => TcpStream::connect_timeout(&dst, timeout),
                    Some(src) => connect_from(src, dst, timeout),
                }
            })
            .expect("enter client netns");
        let mut stream = stream.map_err(|e| format!("connect to {dst}: {e}"))?;
        let deadline = Instant::now() + timeout;
        let (mut conn, peer) = loop {
            match self.listener.accept() {
                Ok(c) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(format!("{dst}: connected but never accepted"));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(e) => return Err(format!("accept: {e}")),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(timeout)).unwrap();
        stream.set_read_timeout(Some(timeout)).unwrap();
        stream
            .write_all(b"ping")
            .map_err(|e| format!("send: {e}"))?;
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf)
            .map_err(|e| format!("server read: {e}"))?;
        conn.write_all(b"pong").map_err(|e| format!("echo: {e}"))?;
        stream
            .read_exact(&mut buf)
            .map_err(|e| format!("reply to the client did not arrive: {e}"))?;
        if &buf != b"pong" {
            return Err("wrong reply".into());
        }
        match peer {
            SocketAddr::V6(a) => Ok(*a.ip()),
            SocketAddr::V4(a) => Err(format!("IPv4 peer {a}")),
        }
    }
}

/// A TCP connect from a given source address (bind before connect), with
/// a timeout. `IPV6_FREEBIND`-free: the address must be on an interface.
fn connect_from(src: Ipv6Addr, dst: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket syscalls on a descriptor we own; on error it is
    // closed through the TcpStream wrapper or explicitly.
    unsafe {
        let fd = libc::socket(libc::AF_INET6, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let stream = TcpStream::from_raw_fd(fd);
        let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
        sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sa.sin6_addr.s6_addr = src.octets();
        let r = libc::bind(
            fd,
            &sa as *const libc::sockaddr_in6 as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        );
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stream.set_nonblocking(true)?;
        let SocketAddr::V6(d) = dst else {
            return Err(std::io::Error::other("IPv6 only"));
        };
        let mut da: libc::sockaddr_in6 = std::mem::zeroed();
        da.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        da.sin6_port = d.port().to_be();
        da.sin6_addr.s6_addr = d.ip().octets();
        let r = libc::connect(
            fd,
            &da as *const libc::sockaddr_in6 as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        );
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLOUT,
                revents: 0,
            };
            let n = libc::poll(&mut pfd, 1, timeout.as_millis() as i32);
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::TimedOut));
            }
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            );
            if err != 0 {
                return Err(std::io::Error::from_raw_os_error(err));
            }
        }
        stream.set_nonblocking(false)?;
        Ok(stream)
    }
}

/// An `ip6tables-restore --noflush` batch that turns a node with the
/// current layout into the one of the release before the dispatch tree
/// (`firewall6::rules::flat_dispatch_of_earlier_release`): the two
/// dispatch chains rewritten, the 32 group chains of the tree flushed and
/// deleted, the buckets (and the pods' rules in them) left alone.
pub fn flat_dispatch_batch() -> String {
    use ::firewall6::rules::{self, Skeleton, ANTISPOOF_CHAIN, INGRESS_CHAIN};
    let groups: Vec<String> = Skeleton::group_chains()
        .into_iter()
        .map(|(g, _)| g)
        .collect();
    let mut lines: Vec<String> = [ANTISPOOF_CHAIN.to_string(), INGRESS_CHAIN.to_string()]
        .into_iter()
        .chain(groups.iter().cloned())
        .map(|c| format!(":{c} - [0:0]"))
        .collect();
    lines.extend(groups.iter().map(|g| format!("-X {g}")));
    lines.extend(rules::flat_dispatch_of_earlier_release());
    rules::batch(&lines)
}

/// ULA of fabricated pod `i` in the rule-scale tests (slot `0x10 + i` of
/// the labs' ULA pod range; no namespace behind it).
pub fn fake_ula(i: u32) -> Ipv6Addr {
    fake_addr([0xfd00, 0xf6, 0, 0, 1, 1], i)
}

/// GUA of fabricated pod `i` (the same slot in the labs' GUA pod range).
pub fn fake_gua(i: u32) -> Ipv6Addr {
    fake_addr([0x2001, 0xdb8, 7, 1, 0, 1], i)
}

fn fake_addr(high: [u16; 6], i: u32) -> Ipv6Addr {
    let slot = 0x10 + i;
    let [a, b, c, d, e, f] = high;
    Ipv6Addr::new(a, b, c, d, e, f, (slot >> 16) as u16, slot as u16)
}

/// A bridge6-style host port name (`c6` + 13 hex) for fabricated pod `i`,
/// spread over the 256 port buckets.
pub fn fake_veth(i: u32) -> String {
    format!("c6{:02x}{:011x}", (i.wrapping_mul(0x9e37) >> 3) & 0xff, i)
}

/// The rules of one bridged pod as the docs show them (firewall6's crate
/// doc, "Chain layout"): in the source buckets its two addresses and the EUI-64
/// link-local address of `mac` bound to `mac`, in the filter table the
/// inbound policy of its two addresses.
pub fn documented_pod_rules(
    net: &str,
    cid: &str,
    mac: &str,
    [ula, gua]: [Ipv6Addr; 2],
    policy: &str,
) -> Vec<String> {
    let c = format!("-m comment --comment \"firewall6 net={net} if=eth0 id={cid}\"");
    let m: Vec<u8> = mac
        .split(':')
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect();
    let ll = Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 2, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    );
    let s = |a: Ipv6Addr| format!("CNI6-S-{:02x}", a.octets()[15]);
    let d = format!("CNI6-D-{:02x}", ula.octets()[15]);
    let bind = format!("-m mac --mac-source {mac} {c} -j RETURN");
    vec![
        format!("-A {} -s {ula}/128 {bind}", s(ula)),
        format!("-A {} -s {gua}/128 {bind}", s(gua)),
        format!("-A {} -s {ll}/128 {bind}", s(ll)),
        format!("-A {d} -d {ula}/128 {c} -j {policy}"),
        format!("-A {d} -d {gua}/128 {c} -j {policy}"),
    ]
}

/// A distinct MAC for fabricated pod `i`.
pub fn fake_mac(i: u32) -> String {
    format!(
        "02:c6:00:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// `prev` with its pod interface's MAC set to `mac`.
pub fn with_pod_mac(mut prev: Value, mac: &str) -> Value {
    prev["interfaces"][2]["mac"] = json!(mac);
    prev
}

/// The pod MAC [`prev_result`] reports for every fabricated pod.
pub const FAKE_POD_MAC: &str = "02:00:00:00:00:03";

/// Each rule line of an `ip6tables -v -S` listing with its packet counter
/// (`… -c <packets> <bytes> …`).
pub fn packet_counts(listing: &str) -> Vec<(&str, u64)> {
    listing
        .lines()
        .filter_map(|l| {
            let n = l.split(" -c ").nth(1)?.split(' ').next()?.parse().ok()?;
            Some((l, n))
        })
        .collect()
}
