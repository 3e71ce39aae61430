//! What `cni6 install` does to the node beyond its files, shown on netlab
//! nodes with pods attached through the real chain (`cni6 attach` in the
//! node):
//!
//! - br_netfilter's IPv6 hook (`net.bridge.bridge-nf-call-ip6tables`) at 1
//!   loses a Service connection DNATed (as kube-proxy does, ip6tables nat
//!   PREROUTING) to a pod on the same node: br_netfilter applies the DNAT at
//!   the bridge and forwards the frame port to port, where the isolated
//!   ports drop it. `status` and `lint` report it; `install --prepare-node`
//!   turns it off and the same connection works; `install --watch` turns it
//!   off again when it comes back.
//! - `--ula-from-interface auto` / `--gua-from-interface auto` skip every
//!   bridge bridge6 made (a second network's bridge holds a gateway inside
//!   the cluster ULA too) but not an operator's bridge holding the uplink.
//!
//! Needs root and built binaries (CNI6_BIN_DIR, default target/release).

use conformance::harness::{self, Netns, TempDir};
use conformance::topology::{Binaries, Spec, Topology};
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddrV6, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const KNOB: &str = "net/bridge/bridge-nf-call-ip6tables";
const CLUSTER_ULA: &str = "fd8c:1f0a:77e3::/64";
/// A Service address: inside the cluster's reserved C:0::/80.
const VIP: &str = "fd8c:1f0a:77e3::10";
const VIP_PORT: u16 = 80;
const POD_PORT: u16 = 8080;

/// br_netfilter's knob exists here (loaded on demand, as kube-proxy's
/// hosts do); `false` when this kernel cannot have it.
fn br_netfilter_available() -> bool {
    let knob = Path::new("/proc/sys").join(KNOB);
    if !knob.exists() {
        let _ = Command::new("modprobe").arg("br_netfilter").status();
    }
    knob.exists()
}

fn node_knob(topo: &Topology) -> String {
    let o = topo
        .node_command(1, "cat")
        .arg(Path::new("/proc/sys").join(KNOB))
        .output()
        .expect("read the knob in the node");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn set_node_knob(topo: &Topology, v: &str) {
    let o = topo
        .node_command(1, "sysctl")
        .args(["-qw", &format!("net.bridge.bridge-nf-call-ip6tables={v}")])
        .output()
        .expect("sysctl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(node_knob(topo), v);
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Pod A connects to `dst`:`port`; pod B listens on [b]:8080 and echoes.
/// `Ok` when the echo came back within the timeout.
fn connect_via(
    a: &Path,
    b: &Path,
    b_addr: Ipv6Addr,
    dst: Ipv6Addr,
    port: u16,
) -> Result<(), String> {
    let timeout = Duration::from_secs(3);
    let b_ns = cni_common::netns::NetNs::open(b).map_err(|e| e.to_string())?;
    let a_ns = cni_common::netns::NetNs::open(a).map_err(|e| e.to_string())?;
    let listener = b_ns
        .run(|| TcpListener::bind(SocketAddrV6::new(b_addr, POD_PORT, 0, 0)))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("listen on [{b_addr}]:{POD_PORT}: {e}"))?;
    listener.set_nonblocking(true).unwrap();
    std::thread::scope(|s| {
        let srv = s.spawn(|| {
            let deadline = Instant::now() + timeout;
            loop {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        c.set_read_timeout(Some(timeout)).unwrap();
                        let mut buf = [0u8; 4];
                        if c.read_exact(&mut buf).is_ok() {
                            let _ = c.write_all(&buf);
                        }
                        return;
                    }
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(_) => return,
                }
            }
        });
        let res = (|| -> Result<(), String> {
            let to = std::net::SocketAddr::V6(SocketAddrV6::new(dst, port, 0, 0));
            let mut c = a_ns
                .run(|| TcpStream::connect_timeout(&to, timeout))
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("connect to {to}: {e}"))?;
            c.set_read_timeout(Some(timeout)).unwrap();
            c.write_all(b"ping").map_err(|e| format!("send: {e}"))?;
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).map_err(|e| format!("read: {e}"))?;
            if &buf != b"ping" {
                return Err(format!("echo differs: {buf:?}"));
            }
            Ok(())
        })();
        srv.join().unwrap();
        res
    })
}

fn install_args(root: &TempDir) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "install".into(),
        "--bin-dir".into(),
        root.join("bin").to_string_lossy().into_owned(),
        "--conf-dir".into(),
        root.join("net.d").to_string_lossy().into_owned(),
        "--stamp".into(),
        root.join("stamp").to_string_lossy().into_owned(),
    ];
    v.extend(
        [
            "--cluster-ula",
            CLUSTER_ULA,
            "--node-index",
            "1",
            "--gua-from-interface",
            "eth0",
        ]
        .map(String::from),
    );
    v
}

#[test]
fn a_service_to_a_pod_on_the_same_node_works_once_install_turns_br_netfilter_off() {
    harness::require_root();
    if !br_netfilter_available() {
        eprintln!("skipped: this kernel has no br_netfilter, so the defect cannot occur");
        return;
    }
    let bins = Binaries::from_dir(&harness::bin_dir()).unwrap_or_else(|e| panic!("{e}"));
    let mut spec = Spec::new("c6bnf", 1);
    spec.bridge_nf_call_ip6tables = true;
    let mut topo = Topology::build(spec).expect("build topology");
    topo.write_cluster_conflists().expect("conflists");
    let pods = topo.add_pods(1, 2).expect("pods");
    let a = topo.attach(&bins, &pods[0]).expect("attach pod A");
    let b = topo.attach(&bins, &pods[1]).expect("attach pod B");
    let (a_path, b_path, b_ula) = (&pods[0].path, &pods[1].path, b.ula.addr());
    let vip: Ipv6Addr = VIP.parse().unwrap();
    assert_eq!(node_knob(&topo), "1");

    // kube-proxy's rule for a Service VIP:80 whose endpoint is pod B:8080.
    let o = topo
        .node_command(1, "ip6tables")
        .args(["-w", "-t", "nat", "-A", "PREROUTING", "-d"])
        .arg(format!("{VIP}/128"))
        .args(["-p", "tcp", "--dport", &VIP_PORT.to_string(), "-j", "DNAT"])
        .arg(format!("--to-destination=[{b_ula}]:{POD_PORT}"))
        .output()
        .expect("ip6tables");
    assert!(o.status.success(), "{}", text(&o));

    // Pod to pod directly works with the hook on (routed at the gateway)...
    connect_via(a_path, b_path, b_ula, b_ula, POD_PORT).expect("A -> B directly");
    // ...the Service is lost: br_netfilter DNATs at the bridge and bridges
    // the frame from A's port to B's, which the isolated ports drop.
    let err = connect_via(a_path, b_path, b_ula, vip, VIP_PORT)
        .expect_err("with bridge-nf-call-ip6tables=1 the Service must fail (the defect)");
    eprintln!(
        "hook on: [{}] -> [{VIP}]:{VIP_PORT}: {err} (expected)",
        a.ula.addr()
    );

    // status and lint name it, as an error.
    let cache = topo.cache_dir(1);
    let o = node_status(&topo, &bins, &cache);
    // The knob is the one problem here.
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("health: 1 problem(s)"), "{}", text(&o));
    assert!(
        text(&o).contains("bridge-nf-call-ip6tables is 1") && text(&o).contains("=0"),
        "{}",
        text(&o)
    );
    let o = topo
        .node_command(1, &bins.cni6)
        .arg("lint")
        .arg(topo.conflist_path(1))
        .arg("--bin-dir")
        .arg(harness::bin_dir())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("error: net.bridge.bridge-nf-call-ip6tables is 1"),
        "{}",
        text(&o)
    );

    // install --prepare-node (the DaemonSet's init container) turns it off.
    let root = TempDir::new("c6bnf-inst");
    let o = topo
        .node_command(1, &bins.cni6)
        .args(install_args(&root))
        .arg("--prepare-node")
        .arg("--from")
        .arg(harness::bin_dir())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("net.bridge.bridge-nf-call-ip6tables=0"),
        "install says what it changed: {}",
        text(&o)
    );
    assert_eq!(node_knob(&topo), "0");
    connect_via(a_path, b_path, b_ula, vip, VIP_PORT)
        .expect("with the hook off the Service reaches pod B on the same node");
    let o = node_status(&topo, &bins, &cache);
    assert!(
        o.status.success(),
        "healthy with the hook off: {}",
        text(&o)
    );

    // The module loaded again later (the knob back at 1): --watch turns it
    // off on its next pass.
    set_node_knob(&topo, "1");
    let watch = topo
        .node_command(1, &bins.cni6)
        .args(install_args(&root))
        .args(["--watch", "1", "--from"])
        .arg(harness::bin_dir())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn install --watch");
    let deadline = Instant::now() + Duration::from_secs(20);
    while node_knob(&topo) != "0" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let knob_after = node_knob(&topo);
    // SIGTERM: the watch loop stops on it (as PID 1 of a container).
    // SAFETY: kill(2) on the pid of our own child, which is not yet reaped.
    // SAFETY: kill(2) on the pid of our own child, which is not yet reaped.
    unsafe { libc::kill(watch.id() as i32, libc::SIGTERM) };
    let out = watch.wait_with_output().expect("watch ends");
    assert_eq!(knob_after, "0", "watch re-asserts the knob: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bridge-nf-call-ip6tables=0"),
        "{}",
        text(&out)
    );
    connect_via(a_path, b_path, b_ula, vip, VIP_PORT).expect("Service after the watch pass");
}

/// `cni6 install --ula-from-interface auto --gua-from-interface auto` in a
/// node, into a temp dir; its output.
fn install_auto(cmd: &mut Command, root: &TempDir, conf_dir: &Path) -> Output {
    cmd.args(["install", "--json", "--bin-dir"])
        .arg(root.join("bin"))
        .arg("--conf-dir")
        .arg(conf_dir)
        .arg("--from")
        .arg(harness::bin_dir())
        .args(["--cluster-ula", CLUSTER_ULA])
        .args([
            "--ula-from-interface",
            "auto",
            "--gua-from-interface",
            "auto",
        ])
        .output()
        .expect("run cni6 install")
}

fn installed_interfaces(conf_dir: &Path) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(conf_dir.join("10-cni6.conflist")).unwrap()).unwrap();
    v["plugins"][0]["ipam"]["prefixes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["fromInterface"].as_str().map(String::from))
        .collect()
}

#[test]
fn auto_uplink_skips_every_bridge6_bridge() {
    harness::require_root();
    let bins = Binaries::from_dir(&harness::bin_dir()).unwrap_or_else(|e| panic!("{e}"));
    let mut topo = Topology::build(Spec::new("c6aut", 1)).expect("build topology");
    topo.write_cluster_conflists().expect("conflists");
    // A second network (multus' net1) on a bridge of its own, its pod range
    // in the cluster ULA too (subnet 2 of the node's /80).
    let node = topo.node(1);
    // The node's uplink holds its ULA /80 as in a real cluster (the fixture's
    // conflist names it literally instead).
    let node_ula = format!(
        "{}/80",
        Ipv6Addr::from(u128::from(node.ula_prefix.network()) | 1)
    );
    topo.ip(
        &node.netns,
        &["addr", "add", &node_ula, "dev", "eth0", "nodad"],
    )
    .unwrap();
    // Named as the lab names it: nothing in the name says bridge6 (the
    // fixture's own names start with the pod veths' "c6").
    let net1_bridge = "cni6net1".to_string();
    let net1 = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "net1",
        "plugins": [{
            "type": "bridge6",
            "bridge": net1_bridge,
            "ipam": {
                "type": "ipam-prefix",
                "dataDir": node.dir.join("ipam"),
                "subnetId": 2,
                "prefixes": [{ "node": node.ula_prefix.to_string() }]
            }
        }]
    });
    let net1_path = node.dir.join("net1.conflist");
    std::fs::write(&net1_path, net1.to_string()).unwrap();
    let pod = topo.add_pod(1).expect("pod");
    topo.attach(&bins, &pod)
        .expect("attach to the cluster network");
    let o = topo
        .node_command(1, &bins.cni6)
        .arg("attach")
        .arg("--conflist")
        .arg(&net1_path)
        .arg("--netns")
        .arg(&pod.path)
        .args(["--id", &pod.name, "--ifname", "net1"])
        .arg("--cni-path")
        .arg(harness::bin_dir())
        .arg("--cache-dir")
        .arg(topo.cache_dir(1))
        .output()
        .unwrap();
    assert!(o.status.success(), "attach net1: {}", text(&o));
    // Both bridges now hold a gateway inside the cluster ULA, and neither is
    // named cni6br0 (the option's default): only their ports tell.
    for br in [topo.link_name("br").unwrap(), net1_bridge.clone()] {
        let addrs = topo
            .ip(
                &topo.node(1).netns,
                &["-6", "addr", "show", "dev", &br, "scope", "global"],
            )
            .unwrap();
        assert!(addrs.contains("fd8c:1f0a:77e3:"), "{br}: {addrs}");
    }
    let root = TempDir::new("c6aut-inst");
    let conf = root.join("net.d");
    let o = install_auto(&mut topo.node_command(1, &bins.cni6), &root, &conf);
    assert!(o.status.success(), "auto must resolve eth0: {}", text(&o));
    assert_eq!(installed_interfaces(&conf), vec!["eth0", "eth0"]);
}

#[test]
fn auto_uplink_takes_an_operators_bridge_holding_the_uplink() {
    harness::require_root();
    // br0 enslaves eth0 and holds the node's addresses; c6 ports only on a
    // second bridge with a gateway in the cluster ULA (a bridge6 bridge).
    let ns = Netns::new("c6aub");
    ns.add_veth("eth0", "eth0peer");
    ns.exec_ok(&["ip", "link", "add", "br0", "type", "bridge"]);
    ns.exec_ok(&["ip", "link", "set", "eth0", "master", "br0"]);
    ns.exec_ok(&["ip", "link", "set", "br0", "up"]);
    ns.add_addr("br0", "fd8c:1f0a:77e3:0:5::1/80");
    ns.add_addr("br0", "2001:db8:7:12::1/64");
    ns.exec_ok(&["ip", "link", "add", "net1br", "type", "bridge"]);
    ns.add_veth("c6aaaa0001", "podside");
    ns.exec_ok(&["ip", "link", "set", "c6aaaa0001", "master", "net1br"]);
    ns.exec_ok(&["ip", "link", "set", "net1br", "up"]);
    ns.add_addr("net1br", "fd8c:1f0a:77e3:0:5:2:0:1/96");
    let root = TempDir::new("c6aub-inst");
    let conf = root.join("net.d");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns.name()])
        .arg(harness::plugin("cni6"));
    let o = install_auto(&mut cmd, &root, &conf);
    assert!(o.status.success(), "auto must resolve br0: {}", text(&o));
    assert_eq!(installed_interfaces(&conf), vec!["br0", "br0"]);
}

/// `cni6 status` of node 1's network, run in node 1.
fn node_status(topo: &Topology, bins: &Binaries, cache: &Path) -> Output {
    topo.node_command(1, &bins.cni6)
        .arg("status")
        .arg("--conflist")
        .arg(topo.conflist_path(1))
        .arg("--cache-dir")
        .arg(cache)
        .arg("--cni-path")
        .arg(harness::bin_dir())
        .output()
        .unwrap()
}
