//! The lab's fabric for real: BGP and NAT64/DNS64 on top of
//! [`crate::topology`]. Used by `cni6 demo --fabric bgp --nat64` and by
//! conformance/tests/fabric_bgp.rs and nat64.rs.
//!
//! - BGP: BIRD 2 in every node namespace, configured with what
//!   `cni6 routes --format bird` prints (the caller brings the text: this
//!   library does not depend on the operator tool), and optionally an
//!   upstream router `<base>r` on the fabric at `<underlay>::fe`, also
//!   running BIRD: a route reflector for iBGP or an eBGP router, accepting
//!   any node of the fabric's /64 (dynamic BGP), so a node added later
//!   peers without touching the router. Nodes then have no static route:
//!   the fabric's routes to pods come only from BGP.
//! - IPv4: one node gets an uplink `eth1` into the "IPv4 internet"
//!   `<base>i` (192.0.2.0/25 on the link, 198.51.100.0/24 behind it: the
//!   IPv4-only host and an authoritative DNS server answering only an A
//!   record for it). That node runs tayga for its `C:n:64::/96` and
//!   unbound's DNS64, configured with what `cni6 nat64` prints.
//!
//! Only documentation IPv4 space is used, and only inside namespaces the
//! lab made: no IPv4 default route exists anywhere.

use crate::topology::{self, Error, Result, Topology};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Suffix of the upstream router's namespace (`<base>r`).
pub const ROUTER: &str = "r";
/// Suffix of the IPv4 internet's namespace (`<base>i`).
pub const INTERNET: &str = "i";
/// The router's interface id on the fabric /64.
pub const ROUTER_HOST: u128 = 0xfe;

/// The IPv4-enabled node's side of its uplink, and the internet's.
pub const UPLINK_NODE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const UPLINK_INTERNET: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 126);
pub const UPLINK_LEN: u8 = 25;
/// tayga's pool on the IPv4-enabled node (local, masqueraded).
pub const NAT64_POOL: &str = "192.0.2.128/25";
/// The IPv4 internet behind the uplink.
pub const INTERNET_NET: &str = "198.51.100.0/24";
/// The IPv4-only host and the name that has only its A record.
pub const IPV4_HOST: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
pub const IPV4_HOST_NAME: &str = "v4only.example";
/// The internet's authoritative DNS server for `example.`.
pub const IPV4_DNS: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);

/// The upstream router's BGP set-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouterOptions {
    pub asn: u32,
    /// iBGP route reflector (nodes in the router's AS) or eBGP (nodes in
    /// their own ASes).
    pub reflector: bool,
    pub hold: u16,
    pub bfd: bool,
}

pub fn router_addr(topo: &Topology) -> Ipv6Addr {
    Ipv6Addr::from(u128::from(topo.spec().underlay.network()) | ROUTER_HOST)
}

/// BIRD 2 configuration of the upstream router: every address of the
/// fabric /64 may peer (dynamic BGP); what it learns goes to its kernel,
/// several paths for one prefix as one multipath route (ECMP).
pub fn router_config(underlay: &ipnet::Ipv6Net, o: &RouterOptions) -> String {
    let kind = if o.reflector { "internal" } else { "external" };
    let mut s = format!(
        "# The fabric's upstream router ({}).\n\
         router id 0.0.0.{ROUTER_HOST};\nprotocol device {{\n}}\n\
         protocol kernel {{\n  merge paths yes;\n  ipv6 {{\n    import none;\n    \
         export where source = RTS_BGP;\n  }};\n}}\n",
        if o.reflector {
            "iBGP route reflector"
        } else {
            "eBGP"
        }
    );
    if o.bfd {
        s.push_str(
            "protocol bfd {\n  interface \"*\" {\n    min rx interval 100 ms;\n    \
             min tx interval 100 ms;\n    multiplier 3;\n  };\n}\n",
        );
    }
    let keep = (o.hold / 3).max(1);
    s.push_str(&format!(
        "protocol bgp nodes {{\n  local as {asn};\n  direct;\n  \
         neighbor range {underlay} {kind};\n  dynamic name \"node\";\n  \
         hold time {h};\n  keepalive time {keep};\n  connect retry time 1;\n{rr}{bfd}  \
         graceful restart aware;\n  ipv6 {{\n    import all;\n    export all;\n  }};\n}}\n",
        asn = o.asn,
        h = o.hold,
        rr = if o.reflector { "  rr client;\n" } else { "" },
        bfd = if o.bfd { "  bfd on;\n" } else { "" },
    ));
    s
}

/// BIRD's control socket for a node (`Some(n)`) or the router (`None`).
pub fn bird_socket(topo: &Topology, node: Option<u16>) -> PathBuf {
    match node {
        Some(n) => topo.node(n).dir.join("bird.ctl"),
        None => topo.dir().join("router-bird.ctl"),
    }
}

fn daemon_name(node: Option<u16>, what: &str) -> String {
    match node {
        Some(n) => format!("{what}-n{n}"),
        None => format!("{what}-router"),
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::Io {
        context: format!("write {}", path.display()),
        source: e,
    })
}

fn bird_command(mut cmd: Command, conf: &Path, sock: &Path) -> Command {
    cmd.arg("-f")
        .arg("-c")
        .arg(conf)
        .arg("-s")
        .arg(sock)
        .arg("-P")
        .arg(sock.with_extension("pid"));
    cmd
}

/// Add the upstream router namespace and start its BIRD.
pub fn add_router(topo: &mut Topology, o: &RouterOptions) -> Result<()> {
    let addr = router_addr(topo);
    topo.add_host(ROUTER, Some(addr))?;
    let conf = topo.dir().join("router-bird.conf");
    write(&conf, &router_config(&topo.spec().underlay, o))?;
    let sock = bird_socket(topo, None);
    let cmd = bird_command(
        topo.host(ROUTER).expect("just added").command("bird"),
        &conf,
        &sock,
    );
    topo.spawn_daemon(&daemon_name(None, "bird"), cmd)?;
    wait_for_socket(&sock)
}

/// Start BIRD in a node with the given configuration (the output of
/// `cni6 routes --format bird --self <node>`).
pub fn start_bird(topo: &mut Topology, node: u16, config: &str) -> Result<()> {
    let conf = topo.node(node).dir.join("bird.conf");
    write(&conf, config)?;
    let sock = bird_socket(topo, Some(node));
    let cmd = bird_command(topo.node_command(node, "bird"), &conf, &sock);
    topo.spawn_daemon(&daemon_name(Some(node), "bird"), cmd)?;
    wait_for_socket(&sock)
}

/// SIGKILL a node's BIRD: the node crashed, as far as BGP knows.
pub fn kill_bird(topo: &mut Topology, node: u16) -> Result<()> {
    topo.kill_daemon(&daemon_name(Some(node), "bird"))
}

fn wait_for_socket(sock: &Path) -> Result<()> {
    wait_until(Duration::from_secs(10), || {
        birdc(sock, &["show", "status"]).is_ok()
    })
    .map(|_| ())
    .map_err(|_| {
        Error::Check(format!(
            "BIRD's socket {} did not answer in 10 s",
            sock.display()
        ))
    })
}

/// `birdc -s SOCK ARGS…`.
pub fn birdc(sock: &Path, args: &[&str]) -> Result<String> {
    let mut cmd = Command::new("birdc");
    cmd.arg("-s").arg(sock).args(args);
    let out = topology::run(cmd)?;
    Ok(out)
}

/// One line of `birdc show protocols` for a BGP session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub name: String,
    pub state: String,
    /// "Established", "Active", "Connect", … (the info column).
    pub info: String,
}

impl Session {
    pub fn established(&self) -> bool {
        self.info.starts_with("Established")
    }
}

/// The BGP sessions of a BIRD (the dynamic template itself excluded).
pub fn sessions(sock: &Path) -> Result<Vec<Session>> {
    let out = birdc(sock, &["show", "protocols"])?;
    Ok(parse_sessions(&out))
}

pub fn parse_sessions(out: &str) -> Vec<Session> {
    out.lines()
        .filter_map(|l| {
            // Name Proto Table State Since Info…: Since is a time, or a
            // date and a time; the info follows it.
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 5 || f[1] != "BGP" || f[0] == "nodes" {
                return None;
            }
            let info = f[4..]
                .iter()
                .skip_while(|w| w.starts_with(|c: char| c.is_ascii_digit()))
                .copied()
                .collect::<Vec<_>>()
                .join(" ");
            Some(Session {
                name: f[0].to_string(),
                state: f[3].to_string(),
                info,
            })
        })
        .collect()
}

/// The neighbours this BIRD has an Up BFD session with.
pub fn bfd_up(sock: &Path) -> Result<Vec<Ipv6Addr>> {
    let out = birdc(sock, &["show", "bfd", "sessions"])?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[2] == "Up").then(|| f[0].parse().ok())?
        })
        .collect())
}

/// Wait until `count` sessions of this BIRD are established.
pub fn wait_established(sock: &Path, count: usize, timeout: Duration) -> Result<Duration> {
    wait_until(timeout, || {
        sessions(sock).is_ok_and(|s| s.iter().filter(|x| x.established()).count() >= count)
    })
    .map_err(|_| {
        Error::Check(format!(
            "fewer than {count} BGP sessions established within {timeout:?}: {:?}",
            sessions(sock)
        ))
    })
}

/// Poll `f` every 10 ms until true; the time it took.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if f() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            return Err(Error::Check(format!(
                "condition not met within {timeout:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The next hops of the kernel route for exactly `prefix` in a namespace
/// (several for a multipath route; empty when there is none), with the
/// route's protocol.
pub fn kernel_route(
    topo: &Topology,
    netns: &str,
    prefix: &ipnet::Ipv6Net,
) -> Result<(Vec<Ipv6Addr>, Option<String>)> {
    let out = topo.ip(
        netns,
        &["-6", "route", "show", "exact", &prefix.to_string()],
    )?;
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut hops = Vec::new();
    let mut proto = None;
    for (i, w) in words.iter().enumerate() {
        match *w {
            "via" => {
                if let Some(a) = words.get(i + 1).and_then(|a| a.parse().ok()) {
                    hops.push(a);
                }
            }
            "proto" => proto = words.get(i + 1).map(|p| p.to_string()),
            _ => {}
        }
    }
    hops.sort();
    Ok((hops, proto))
}

// ---- IPv4 internet, NAT64, DNS64 ------------------------------------------

/// Give `node` an IPv4 uplink `eth1` into the IPv4 internet namespace,
/// which holds the IPv4-only host and an authoritative DNS server for
/// `example.` (A record only). Starts that server.
pub fn add_ipv4_internet(topo: &mut Topology, node: u16) -> Result<()> {
    topo.add_host(INTERNET, None)?;
    let inet = topo.host(INTERNET).expect("added").netns.clone();
    topo.link_node_to_host(node, "eth1", &inet, "eth0")?;
    let netns = topo.node(node).netns.clone();
    topo.ip_batch(
        &netns,
        &[
            format!("addr add {UPLINK_NODE}/{UPLINK_LEN} dev eth1"),
            format!("route add {INTERNET_NET} via {UPLINK_INTERNET}"),
        ],
    )?;
    topo.ip_batch(
        &inet,
        &[
            format!("addr add {UPLINK_INTERNET}/{UPLINK_LEN} dev eth0"),
            format!("addr add {IPV4_HOST}/32 dev lo"),
            format!("addr add {IPV4_DNS}/32 dev lo"),
        ],
    )?;
    let dir = topo.dir().join("internet");
    let conf = write_unbound_conf(&dir, |common| {
        format!(
            "# The IPv4 internet's DNS: {IPV4_HOST_NAME} has an A record and no AAAA.\n\
             server:\n{common}  interface: {IPV4_DNS}\n  access-control: 0.0.0.0/0 allow\n  \
             do-ip6: no\n  module-config: \"iterator\"\n  local-zone: \"example.\" static\n  \
             local-data: \"example. 300 IN SOA ns.example. admin.example. 1 3600 600 86400 300\"\n  \
             local-data: \"{IPV4_HOST_NAME}. 300 IN A {IPV4_HOST}\"\n"
        )
    })?;
    let mut cmd = topo.host(INTERNET).expect("added").command("unbound");
    cmd.arg("-d").arg("-c").arg(&conf);
    topo.spawn_daemon("unbound-internet", cmd)?;
    Ok(())
}

/// Create `dir` and write `dir/unbound.conf` with the text `conf` makes
/// from [`unbound_common`]'s lines; the path of the file.
fn write_unbound_conf(dir: &Path, conf: impl FnOnce(&str) -> String) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        context: format!("create {}", dir.display()),
        source: e,
    })?;
    let path = dir.join("unbound.conf");
    write(&path, &conf(&unbound_common(dir)))?;
    Ok(path)
}

/// What every lab unbound needs to run in the foreground as root, with
/// its files in `dir`.
fn unbound_common(dir: &Path) -> String {
    format!(
        "  username: \"\"\n  chroot: \"\"\n  directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  \
         use-syslog: no\n  logfile: \"\"\n  verbosity: 1\n  do-daemonize: no\n  \
         interface-automatic: no\n",
        d = dir.display()
    )
}

/// The NAT64/DNS64 configuration as `cni6 nat64` printed it for a node.
#[derive(Debug, Clone)]
pub struct Nat64Config {
    /// `--format tayga`, written to `conf`.
    pub tayga: String,
    /// `--format commands` (they name `conf` and the data dir).
    pub commands: String,
    /// `--format unbound`.
    pub unbound: String,
    pub conf: PathBuf,
    /// The DNS64 resolver's address (`C:n::53`).
    pub dns: Ipv6Addr,
}

/// Where the lab wants `cni6 nat64 --conf/--data-dir` to point for a node.
pub fn nat64_paths(topo: &Topology, node: u16) -> (PathBuf, PathBuf) {
    let d = &topo.node(node).dir;
    (d.join("tayga.conf"), d.join("tayga"))
}

/// Run the node's NAT64 (tayga, with the routes and masquerade of the
/// commands) and DNS64 (unbound on `dns`, forwarding `example.` to the
/// IPv4 internet's server over IPv4). Waits until the DNS64 answers.
pub fn start_nat64(topo: &mut Topology, node: u16, c: &Nat64Config) -> Result<()> {
    write(&c.conf, &c.tayga)?;
    let mut sh = topo.node_command(node, "sh");
    sh.arg("-c").arg(&c.commands);
    topology::run(sh)?;
    let mut tayga = topo.node_command(node, "tayga");
    tayga.arg("--nodetach").arg("-c").arg(&c.conf);
    topo.spawn_daemon(&daemon_name(Some(node), "tayga"), tayga)?;

    let netns = topo.node(node).netns.clone();
    topo.ip_batch(&netns, &[format!("addr add {}/128 dev lo", c.dns)])?;
    let dir = topo.node(node).dir.join("unbound");
    let conf = write_unbound_conf(&dir, |common| {
        format!(
            "{}\n# The lab's additions: run in the foreground; the only zone asked\n\
             # about is the IPv4 internet's example.\nserver:\n{common}\
             stub-zone:\n  name: \"example.\"\n  stub-addr: {IPV4_DNS}\n",
            c.unbound,
        )
    })?;
    let mut cmd = topo.node_command(node, "unbound");
    cmd.arg("-d").arg("-c").arg(&conf);
    let name = daemon_name(Some(node), "unbound");
    topo.spawn_daemon(&name, cmd)?;
    let node_path = topo.node(node).netns_path();
    wait_until(Duration::from_secs(10), || {
        resolve_aaaa(
            &node_path,
            c.dns,
            IPV4_HOST_NAME,
            Duration::from_millis(300),
        )
        .is_ok_and(|a| !a.is_empty())
    })
    .map_err(|_| {
        let why = topo.daemon_alive(&name).err();
        Error::Check(format!(
            "the DNS64 on {} does not answer for {IPV4_HOST_NAME} within 10 s ({why:?})",
            c.dns
        ))
    })?;
    Ok(())
}

/// A DNS query (AAAA, recursion desired) over UDP from inside a namespace;
/// the AAAA addresses of the answer.
pub fn resolve_aaaa(
    client: &Path,
    server: Ipv6Addr,
    name: &str,
    timeout: Duration,
) -> Result<Vec<Ipv6Addr>> {
    let id: u16 = fastrand::u16(..);
    let query = dns_query(id, name, 28);
    let ns = cni_common::netns::NetNs::open(client)?;
    let sock = ns
        .run(|| UdpSocket::bind("[::]:0"))?
        .map_err(|e| Error::Io {
            context: "bind a UDP socket".into(),
            source: e,
        })?;
    let io = |context: &str| {
        let context = context.to_string();
        move |e| Error::Io { context, source: e }
    };
    sock.set_read_timeout(Some(timeout))
        .map_err(io("socket timeout"))?;
    sock.send_to(&query, SocketAddrV6::new(server, 53, 0, 0))
        .map_err(io(&format!("send a DNS query to [{server}]:53")))?;
    let mut buf = [0u8; 1500];
    let n = sock
        .recv(&mut buf)
        .map_err(io(&format!("DNS answer from [{server}]:53")))?;
    parse_aaaa(&buf[..n], id)
}

fn dns_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD, 1 question
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    q
}

/// The AAAA records of a DNS response (answer section).
pub fn parse_aaaa(msg: &[u8], id: u16) -> Result<Vec<Ipv6Addr>> {
    let bad = |why: &str| Error::Check(format!("DNS answer: {why}"));
    if msg.len() < 12 || u16::from_be_bytes([msg[0], msg[1]]) != id {
        return Err(bad("short, or not the answer to our query"));
    }
    let rcode = msg[3] & 0x0f;
    if rcode != 0 {
        return Err(bad(&format!("rcode {rcode}")));
    }
    let qd = u16::from_be_bytes([msg[4], msg[5]]);
    let an = u16::from_be_bytes([msg[6], msg[7]]);
    let skip_name = |mut o: usize| -> Option<usize> {
        loop {
            let l = *msg.get(o)? as usize;
            if l == 0 {
                return Some(o + 1);
            }
            if l & 0xc0 == 0xc0 {
                return Some(o + 2);
            }
            o += 1 + l;
        }
    };
    let mut o = 12;
    for _ in 0..qd {
        o = skip_name(o).ok_or_else(|| bad("truncated question"))? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        o = skip_name(o).ok_or_else(|| bad("truncated record"))?;
        let h = msg.get(o..o + 10).ok_or_else(|| bad("truncated record"))?;
        let (ty, len) = (
            u16::from_be_bytes([h[0], h[1]]),
            usize::from(u16::from_be_bytes([h[8], h[9]])),
        );
        let data = msg
            .get(o + 10..o + 10 + len)
            .ok_or_else(|| bad("truncated data"))?;
        if ty == 28 && len == 16 {
            out.push(Ipv6Addr::from(<[u8; 16]>::try_from(data).expect("16")));
        }
        o += 10 + len;
    }
    Ok(out)
}

/// What a TCP exchange with the IPv4-only host saw.
#[derive(Debug, Clone)]
pub struct Ipv4Exchange {
    /// The client as the IPv4 host saw it (after NAT64 and masquerade).
    pub peer: SocketAddr,
    pub elapsed: Duration,
}

/// TCP from an IPv6-only client (`client` namespace) to `dst6`, which the
/// NAT64 maps to the IPv4 host listening in `server`: the host echoes
/// what it gets, the client checks the echo.
pub fn tcp_via_nat64(
    server: &Path,
    client: &Path,
    dst6: Ipv6Addr,
    timeout: Duration,
) -> Result<Ipv4Exchange> {
    use std::io::{Read, Write};
    let server_ns = cni_common::netns::NetNs::open(server)?;
    let client_ns = cni_common::netns::NetNs::open(client)?;
    let io = |context: String| move |e| Error::Io { context, source: e };
    let listener = server_ns
        .run(|| TcpListener::bind(SocketAddrV4::new(IPV4_HOST, 0)))?
        .map_err(io(format!("listen on {IPV4_HOST}")))?;
    let port = listener.local_addr().map_err(io("listener".into()))?.port();
    let start = Instant::now();
    std::thread::scope(|s| {
        let srv = s.spawn(|| -> Result<SocketAddr> {
            let (mut conn, peer) = listener.accept().map_err(io("accept".into()))?;
            conn.set_read_timeout(Some(timeout))
                .map_err(io("accepted socket".into()))?;
            let mut buf = Vec::new();
            conn.read_to_end(&mut buf)
                .map_err(io("server read".into()))?;
            conn.write_all(&buf).map_err(io("server echo".into()))?;
            Ok(peer)
        });
        let dst = SocketAddr::V6(SocketAddrV6::new(dst6, port, 0, 0));
        let client_res = (|| -> Result<()> {
            let mut c = client_ns
                .run(|| TcpStream::connect_timeout(&dst, timeout))?
                .map_err(io(format!("connect to {dst}")))?;
            c.set_read_timeout(Some(timeout))
                .map_err(io("client socket".into()))?;
            c.write_all(b"hello IPv4")
                .and_then(|_| c.shutdown(std::net::Shutdown::Write))
                .map_err(io("client send".into()))?;
            let mut echo = Vec::new();
            c.read_to_end(&mut echo).map_err(io("client read".into()))?;
            if echo != b"hello IPv4" {
                return Err(Error::Check(format!("echo from {dst} differs: {echo:?}")));
            }
            Ok(())
        })();
        if client_res.is_err() {
            // Unblock the accept: a connection of our own to the listener.
            let _ = server_ns.run(|| {
                TcpStream::connect_timeout(
                    &SocketAddr::V4(SocketAddrV4::new(IPV4_HOST, port)),
                    Duration::from_secs(1),
                )
            });
        }
        let peer = srv.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        client_res?;
        Ok(Ipv4Exchange {
            peer: peer?,
            elapsed: start.elapsed(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_read_from_birdc() {
        let out = "BIRD 2.0.12 ready.\n\
            Name       Proto      Table      State  Since         Info\n\
            device1    Device     ---        up     07:10:01.123  \n\
            nodes      BGP        ---        start  07:10:01.123  Passive\n\
            node1      BGP        ---        up     07:10:02.456  Established   \n\
            node2      BGP        ---        start  07:10:02.456  Active        Socket: Connection refused\n";
        let s = parse_sessions(out);
        assert_eq!(s.len(), 2, "{s:?}");
        assert!(s[0].established() && s[0].name == "node1");
        assert!(!s[1].established());
        assert!(s[1].info.starts_with("Active"));
    }

    #[test]
    fn dns_answer_with_a_synthesised_aaaa() {
        let mut m = dns_query(7, "v4only.example", 28);
        m[2] = 0x81;
        m[3] = 0x80;
        m[7] = 1; // one answer
        m.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        let a: Ipv6Addr = "fd8c:1f0a:77e3:0:1:64:c633:640a".parse().unwrap();
        m.extend_from_slice(&a.octets());
        assert_eq!(parse_aaaa(&m, 7).unwrap(), vec![a]);
        assert!(parse_aaaa(&m, 8).is_err());
        m[3] = 0x83; // NXDOMAIN
        assert!(parse_aaaa(&m, 7).is_err());
    }

    #[test]
    fn router_config_layouts() {
        let u: ipnet::Ipv6Net = "fd00:fab::/64".parse().unwrap();
        let rr = router_config(
            &u,
            &RouterOptions {
                asn: 64512,
                reflector: true,
                hold: 3,
                bfd: false,
            },
        );
        assert!(rr.contains("neighbor range fd00:fab::/64 internal;"));
        assert!(rr.contains("rr client;"));
        let e = router_config(
            &u,
            &RouterOptions {
                asn: 65000,
                reflector: false,
                hold: 6,
                bfd: true,
            },
        );
        assert!(e.contains("external;") && !e.contains("rr client"));
        assert!(e.contains("keepalive time 2;") && e.contains("bfd on;"));
    }
}
