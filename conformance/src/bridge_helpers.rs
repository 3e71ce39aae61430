//! Fixtures for the bridge6 black-box suites (`tests/bridge6_*.rs`).
//!
//! The plugin always runs inside a *node* namespace the test creates
//! ([`Node`]), as if that namespace were the host: the bridge, the host
//! veths and the forwarding sysctls all live there, never in the machine's
//! own namespace. Pods are further namespaces ([`harness::Netns`]).
//!
//! What a test expects is computed here independently of the plugin: the
//! host veth name with the system's `sha256sum`, addresses from the
//! address plan ([`crate::ipam`]), kernel state read back with `ip -j`.

use crate::harness::{self, Invocation, Netns, Output, TempDir};
use crate::ipam::{self, IpamNet};
use serde_json::{json, Map, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Prefix of every namespace the bridge6 suites create.
pub const NETNS_PREFIX: &str = "c6b";

/// A node: a namespace playing the host, and a CNI_PATH directory with
/// our binaries and the reference ones side by side.
pub struct Node {
    pub ns: Netns,
    pub bins: TempDir,
}

impl Node {
    pub fn new() -> Node {
        let ns = Netns::new(&format!("{NETNS_PREFIX}n"));
        let bins = TempDir::new("b6bin");
        for p in ["bridge6", "ipam-prefix"] {
            harness::install_as(&harness::plugin(p), bins.path(), p);
        }
        for p in ["bridge", "host-local"] {
            harness::install_as(&harness::reference(p), bins.path(), p);
        }
        Node { ns, bins }
    }

    pub fn bin(&self, name: &str) -> PathBuf {
        self.bins.join(name)
    }

    /// `ip -j ...` in the node, parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        ip_json(&self.ns, args)
    }

    pub fn sysctl(&self, iface: &str, key: &str) -> String {
        sysctl(&self.ns, iface, key)
    }

    pub fn set_sysctl(&self, iface: &str, key: &str, value: &str) {
        let p = format!("/proc/sys/net/ipv6/conf/{iface}/{key}");
        self.ns
            .exec_ok(&["sh", "-c", &format!("echo {value} > {p}")]);
    }
}

impl Default for Node {
    fn default() -> Self {
        Node::new()
    }
}

pub fn new_pod() -> Netns {
    Netns::new(&format!("{NETNS_PREFIX}p"))
}

/// `ip -j <args>` inside `ns`; `[]` when the object does not exist.
pub fn ip_json(ns: &Netns, args: &[&str]) -> Value {
    let mut cmd = vec!["ip", "-j"];
    cmd.extend_from_slice(args);
    let out = ns.exec(&cmd);
    if !out.status.success() {
        return json!([]);
    }
    let s = String::from_utf8_lossy(&out.stdout);
    if s.trim().is_empty() {
        return json!([]);
    }
    serde_json::from_str(&s).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {s}"))
}

/// `ip -j -d link show dev <name>` → the link object, if it exists.
pub fn link(ns: &Netns, name: &str) -> Option<Value> {
    ip_json(ns, &["-d", "link", "show", "dev", name])
        .as_array()
        .and_then(|a| a.first().cloned())
}

/// Names of every link in `ns`.
pub fn link_names(ns: &Netns) -> Vec<String> {
    ip_json(ns, &["link", "show"])
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect()
}

/// An IPv6 address as `ip -j addr` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Addr {
    pub addr: Ipv6Addr,
    pub prefix_len: u8,
    pub scope: String,
    /// Flags ip prints as booleans: "nodad", "tentative", "dadfailed", …
    pub flags: Vec<String>,
}

pub fn addrs6(ns: &Netns, dev: &str) -> Vec<Addr> {
    let v = ip_json(ns, &["-6", "addr", "show", "dev", dev]);
    let mut out = Vec::new();
    for l in v.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            let Some(addr) = a["local"].as_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let flags = a
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(_, v)| v.as_bool() == Some(true))
                        .map(|(k, _)| k.clone())
                        .collect()
                })
                .unwrap_or_default();
            out.push(Addr {
                addr,
                prefix_len: a["prefixlen"].as_u64().unwrap_or(0) as u8,
                scope: a["scope"].as_str().unwrap_or("").to_string(),
                flags,
            });
        }
    }
    out
}

/// Global (non-link-local) addresses of `dev`.
pub fn global_addrs6(ns: &Netns, dev: &str) -> Vec<Addr> {
    addrs6(ns, dev)
        .into_iter()
        .filter(|a| a.scope == "global")
        .collect()
}

/// IPv6 routes of the main table (`ip -j -6 route show`).
pub fn routes6(ns: &Netns) -> Vec<Value> {
    ip_json(ns, &["-6", "route", "show"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The default routes in `ns` (dst "default"), with their device.
pub fn default_routes(ns: &Netns) -> Vec<Value> {
    routes6(ns)
        .into_iter()
        .filter(|r| r["dst"] == "default")
        .collect()
}

pub fn sysctl(ns: &Netns, iface: &str, key: &str) -> String {
    ns.exec_ok(&["cat", &format!("/proc/sys/net/ipv6/conf/{iface}/{key}")])
        .trim()
        .to_string()
}

/// The host veth name bridge6 must use for an attachment, computed with
/// the system's sha256sum: "c6" + first 13 hex of
/// SHA-256(network NUL container id NUL ifname).
pub fn expected_host_veth(network: &str, container_id: &str, ifname: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    {
        let mut si = child.stdin.take().unwrap();
        si.write_all(format!("{network}\0{container_id}\0{ifname}").as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8_lossy(&out.stdout);
    format!("c6{}", &hex[..13])
}

/// One bridge6 network: an ipam-prefix network plus bridge6's own keys.
#[derive(Clone)]
pub struct BridgeNet {
    pub ipam: IpamNet,
    pub bridge: String,
    pub keys: Map<String, Value>,
}

impl BridgeNet {
    /// docs/design.md's example node (ULA + GUA node prefix) on `bridge`.
    pub fn new(bridge: &str) -> BridgeNet {
        BridgeNet::with_ipam(ipam::demo_net(), bridge)
    }

    pub fn with_ipam(ipam: IpamNet, bridge: &str) -> BridgeNet {
        BridgeNet {
            ipam,
            bridge: bridge.to_string(),
            keys: Map::new(),
        }
    }

    pub fn key(mut self, k: &str, v: Value) -> BridgeNet {
        self.keys.insert(k.to_string(), v);
        self
    }

    pub fn name(&self) -> &str {
        &self.ipam.name
    }

    pub fn conf(&self, version: &str) -> Value {
        let mut c = self.ipam.conf(version);
        c["bridge"] = json!(self.bridge);
        for (k, v) in &self.keys {
            c[k] = v.clone();
        }
        c
    }

    /// A bridge6 call for one attachment, run inside `node`.
    pub fn call(
        &self,
        node: &Node,
        cmd: &str,
        version: &str,
        cid: &str,
        netns: &str,
        ifname: &str,
    ) -> Invocation {
        Invocation::attachment(node.bin("bridge6"), cmd, cid, netns, ifname)
            .stdin_json(&self.conf(version))
            .in_netns(&node.ns)
    }

    pub fn add(&self, node: &Node, version: &str, cid: &str, pod: &Netns, ifname: &str) -> Output {
        self.call(node, "ADD", version, cid, &pod.path_str(), ifname)
            .run()
    }

    pub fn del(&self, node: &Node, version: &str, cid: &str, netns: &str, ifname: &str) -> Output {
        self.call(node, "DEL", version, cid, netns, ifname).run()
    }

    /// CHECK with `prev` as prevResult.
    pub fn check(
        &self,
        node: &Node,
        version: &str,
        cid: &str,
        pod: &Netns,
        ifname: &str,
        prev: &Value,
    ) -> Output {
        let mut c = self.conf(version);
        c["prevResult"] = prev.clone();
        Invocation::attachment(node.bin("bridge6"), "CHECK", cid, &pod.path_str(), ifname)
            .stdin_json(&c)
            .in_netns(&node.ns)
            .run()
    }

    /// GC/STATUS as libcni sends them (attachment variables empty).
    pub fn network_call(&self, node: &Node, cmd: &str, conf: &Value) -> Output {
        Invocation::network(node.bin("bridge6"), cmd)
            .stdin_json(conf)
            .in_netns(&node.ns)
            .run()
    }

    pub fn gc(&self, node: &Node, valid: Option<&[(&str, &str)]>) -> Output {
        let mut c = self.conf("1.1.0");
        if let Some(v) = valid {
            c["cni.dev/valid-attachments"] = ipam::attachments_json(v);
        }
        self.network_call(node, "GC", &c)
    }

    pub fn status(&self, node: &Node) -> Output {
        self.network_call(node, "STATUS", &self.conf("1.1.0"))
    }

    pub fn host_veth(&self, cid: &str, ifname: &str) -> String {
        expected_host_veth(self.name(), cid, ifname)
    }
}

/// The reference bridge + host-local on the same pod ranges, gateway
/// on the bridge and default route (isGateway/isDefaultGateway).
pub fn reference_conf(net: &BridgeNet, version: &str, data_dir: &Path) -> Value {
    let mut c = net.ipam.host_local_conf(version, data_dir);
    c["bridge"] = json!(net.bridge);
    c["isGateway"] = json!(true);
    c["isDefaultGateway"] = json!(true);
    c
}

/// Schema checks every bridge6 ADD result must pass (conformance.md 1.J,
/// 24, 58–63). Returns the pod addresses.
pub fn assert_result_schema(
    r: &Value,
    version: &str,
    netns: &str,
    ifname: &str,
) -> Vec<ipnet::Ipv6Net> {
    assert_eq!(r["cniVersion"], version, "conformance.md #20: {r}");
    let ifs = r["interfaces"].as_array().expect("interfaces");
    assert_eq!(ifs.len(), 3, "bridge, host veth, pod interface: {r}");
    for (i, itf) in ifs.iter().enumerate() {
        assert!(itf["name"].is_string(), "interface {i} has a name: {r}");
        let mac = itf["mac"]
            .as_str()
            .unwrap_or_else(|| panic!("interface {i} mac: {r}"));
        assert_eq!(mac.len(), 17, "mac {mac}");
    }
    // conformance.md #24: host interfaces have no sandbox; the pod's is CNI_NETNS.
    assert!(
        ifs[0].get("sandbox").is_none() && ifs[1].get("sandbox").is_none(),
        "{r}"
    );
    assert_eq!(ifs[2]["name"], ifname);
    assert_eq!(ifs[2]["sandbox"], netns);
    // conformance.md #58: interface mtu is a 1.1 field.
    assert_eq!(
        ifs[2].get("mtu").is_some(),
        version == "1.1.0",
        "mtu only at 1.1.0: {r}"
    );
    let ips = r["ips"].as_array().expect("ips");
    assert!(!ips.is_empty());
    for ip in ips {
        // conformance.md #62: every ip points at the pod interface, in range.
        assert_eq!(ip["interface"], 2, "{r}");
        // conformance.md #59: `version` iff < 1.0.0.
        assert_eq!(
            ip.get("version").is_some(),
            harness::has_ip_version_field(version),
            "version field at {version}: {r}"
        );
        if let Some(v) = ip.get("version") {
            assert_eq!(v, "6");
        }
        assert!(ip["gateway"].is_string(), "{r}");
    }
    ipam::result_addrs(r)
}

// ------------------------------------------------------------------ traffic

/// Open a TCP listener on `[addr]:port` inside `ns` (the socket stays in
/// that namespace; the calling thread does not move).
pub fn listen_in(ns: &Netns, addr: Ipv6Addr) -> TcpListener {
    let nsh = cni_common::netns::NetNs::open(ns.path()).expect("open netns");
    nsh.run(|| TcpListener::bind(SocketAddrV6::new(addr, 0, 0, 0)))
        .expect("enter netns")
        .unwrap_or_else(|e| panic!("listen on [{addr}] in {}: {e}", ns.name()))
}

/// Connect from inside `ns` to `to`; returns the local (source) address.
pub fn connect_from(ns: &Netns, to: SocketAddr) -> std::io::Result<SocketAddr> {
    let nsh = cni_common::netns::NetNs::open(ns.path()).expect("open netns");
    nsh.run(|| {
        let s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        s.local_addr()
    })
    .expect("enter netns")
}

/// A TCP round trip from `pod` to a listener on `addr` in `server`: the
/// server accepts, both sides exchange one line. Returns the client's
/// source address as the server saw it.
pub fn tcp_round_trip(pod: &Netns, server: &Netns, addr: Ipv6Addr) -> SocketAddr {
    let l = listen_in(server, addr);
    let to = l.local_addr().unwrap();
    let acceptor = std::thread::spawn(move || {
        let (mut s, peer) = l.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).expect("read ping");
        s.write_all(b"pong\n").unwrap();
        peer
    });
    let nsh = cni_common::netns::NetNs::open(pod.path()).expect("open netns");
    let got = nsh
        .run(move || -> std::io::Result<String> {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
            s.set_read_timeout(Some(Duration::from_secs(3)))?;
            s.write_all(b"ping\n")?;
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf)?;
            Ok(String::from_utf8_lossy(&buf).into_owned())
        })
        .expect("enter netns")
        .unwrap_or_else(|e| panic!("TCP from {} to {to}: {e}", pod.name()));
    assert_eq!(got, "pong\n");
    acceptor.join().expect("acceptor")
}

// ------------------------------------------------------------------ capture

/// tcpdump on one interface of a namespace (text output, ICMPv6 only);
/// stopped and read back with [`Capture::stop`], killed on drop.
pub struct Capture {
    child: Option<Child>,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Capture {
    /// Start and wait until tcpdump reports that it is listening.
    pub fn start(ns: &Netns, dev: &str) -> Capture {
        Capture::start_with(ns, dev, &["icmp6"])
    }

    /// [`Capture::start`] with another tcpdump filter (`icmp6` does not
    /// match ICMPv6 behind a hop-by-hop header, such as MLD).
    pub fn start_with(ns: &Netns, dev: &str, filter: &[&str]) -> Capture {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "tcpdump", "-i", dev])
            .args(["-n", "-l", "-U"])
            .args(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Ready on "listening on"; if tcpdump ends first, report what
            // it said.
            let mut said = Vec::new();
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                if l.contains("listening on") {
                    // The loop goes on draining, so tcpdump never blocks
                    // on a full stderr pipe.
                    let _ = ready_tx.send(Ok(()));
                    said.clear();
                    continue;
                }
                said.push(l);
            }
            let _ = ready_tx.send(Err(said.join(" / ")));
        });
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(l)) => {
                let _ = child.kill();
                panic!("tcpdump on {dev} in {}: {l}", ns.name());
            }
            Err(_) => {
                let _ = child.kill();
                panic!("tcpdump on {dev} in {} did not start", ns.name());
            }
        }
        Capture {
            child: Some(child),
            lines: rx,
        }
    }

    /// Lines captured until `done` holds for the collected lines or
    /// `limit` passes; then tcpdump is stopped.
    pub fn collect_until(
        mut self,
        limit: Duration,
        done: impl Fn(&[String]) -> bool,
    ) -> Vec<String> {
        let deadline = Instant::now() + limit;
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.lines.recv_timeout(left) {
                Ok(l) => got.push(l),
                Err(_) => break,
            }
        }
        self.kill();
        got
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a tcpdump line is an unsolicited NA for `target`.
pub fn is_na_for(line: &str, target: Ipv6Addr) -> bool {
    line.contains("neighbor advertisement") && line.contains(&format!("tgt is {target},"))
}
