//! `cni6 demo`: a two-node cluster in network namespaces, built and torn
//! down in seconds, to show a person what cni6 does — every node owns a
//! prefix, every pod address is carved from it, and pods on different
//! nodes talk over a plain routed fabric (one route per node, no overlay).
//!
//! Everything goes through the real binaries: the fixture in
//! `netlab::topology` makes the nodes, pods and fabric; `cni6 attach`
//! runs inside each node namespace and executes the conflist (bridge6 →
//! ipam-prefix → firewall6, plus the reference loopback) exactly as a
//! container runtime would. Nothing is created in the machine's own
//! namespace. firewall6 runs with `ingress: cluster-only`, the cluster ULA
//! and the demo's provider GUA space as inside, and 443/tcp open; a host
//! outside the cluster on the fabric then shows that a pod's GUA answers on
//! 443 and not on 8080. Without br_netfilter (bridged traffic never reaches
//! ip6tables) the demo says so and runs without the firewall.
//!
//! Tear-down happens on success, on failure and on SIGINT/SIGTERM: the
//! handlers only raise a flag (signal-hook), checked between steps, so the
//! teardown itself runs on the main thread with the fixture's normal
//! `Drop`. `--keep` leaves the cluster up and says how to look at it;
//! `--cleanup` removes what a `--keep` run left.
//!
//! `--fabric bgp` replaces the hand-written routes between nodes with BGP:
//! BIRD in every node (configured by `cni6 routes --format bird`'s code)
//! and an upstream route reflector; the demo shows the sessions and the
//! routes learned. `--nat64` makes node 1 IPv4-enabled (NAT64 + DNS64 from
//! `cni6 nat64`'s code) and shows a pod on node 2 reaching an IPv4-only
//! host by name.

use crate::commands::{nat64, routes};
use crate::error::{CliError, Result};
use crate::options::Output;
use clap::{Args, ValueEnum};
use netlab::fabric::{self, RouterOptions};
use netlab::topology::{self, Binaries, Pod, PodAddresses, Spec, Topology};
use serde_json::json;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where demo clusters keep their state (tmpfs: gone after a reboot, as the
/// namespaces are).
pub const STATE_ROOT: &str = "/run/cni6-demo";
const NODES: u16 = 2;
const PODS_PER_NODE: usize = 2;
/// Generous, like a real client: a slow first contact shows as a slow
/// cell rather than a failure.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);
/// The port firewall6 opens to everyone in the demo, and one it keeps shut.
const OPEN_PORT: u16 = 443;
const CLOSED_PORT: u16 = 8080;
/// How long the outside host waits before calling a port refused: the
/// firewall drops (no RST), so a refused connection is a time-out.
const REFUSED_AFTER: Duration = Duration::from_millis(1500);

#[derive(Debug, Clone, Args)]
#[command(
    long_about = "Build a two-node IPv6-only cluster in network namespaces (needs root), \
        attach two pods per node through the real plugins, show each node's prefixes, \
        each pod's addresses and a TCP reachability matrix over ULA and GUA, then \
        remove everything (also on Ctrl-C or failure). Exits non-zero if any pod \
        cannot reach another.\n\n\
        --fabric bgp: the nodes learn each other's prefixes over BGP (BIRD on every \
        node, a route reflector on the fabric) instead of static routes. --nat64: \
        node 1 gets IPv4 and runs NAT64 + DNS64, and a pod on node 2 reaches an \
        IPv4-only host by name (IPv4 only in 192.0.2.0/24 and 198.51.100.0/24).\n\n\
        Only namespaces the demo creates are touched; traffic stays between them \
        (fd00::/8 and 2001:db8::/32 addresses)."
)]
pub struct DemoArgs {
    /// Directory with the cni6, bridge6 and ipam-prefix binaries
    /// [default: the directory of this cni6 binary]. `loopback` is taken
    /// from the upstream build of scripts/peers.sh, else /usr/lib/cni, when present.
    #[arg(long, value_name = "DIR")]
    pub bin_dir: Option<PathBuf>,

    /// Leave the cluster up and print commands to explore it.
    #[arg(long, conflicts_with = "cleanup")]
    pub keep: bool,

    /// Remove clusters left up by `cni6 demo --keep`, then exit.
    #[arg(long)]
    pub cleanup: bool,

    /// How the nodes learn each other's prefixes: hand-written routes, or
    /// BGP (BIRD in every node, an upstream route reflector).
    #[arg(long, value_enum, default_value = "static")]
    pub fabric: FabricKind,

    /// Make node 1 IPv4-enabled (NAT64 + DNS64) and reach an IPv4-only host
    /// by name from a pod on node 2 (needs tayga and unbound).
    #[arg(long)]
    pub nat64: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FabricKind {
    /// One route per other node per prefix, written by hand.
    Static,
    /// BGP: BIRD on every node, peering with a route reflector.
    Bgp,
}

/// The demo's BGP: iBGP to a route reflector, short timers.
const ASN: u32 = 64512;
const HOLD: u16 = 3;

/// Human output goes out as it happens; with `--json` one document is
/// printed at the end instead.
fn say(o: &mut Output, text: impl std::fmt::Display) -> Result<()> {
    if o.json {
        Ok(())
    } else {
        o.line(text)
    }
}

fn failed(context: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Failed(format!("{context}: {e}"))
}

/// Set by SIGINT/SIGTERM; checked between steps.
struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    fn install() -> Result<Interrupt> {
        let flag = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&flag))
                .map_err(|e| failed("install signal handler", e))?;
        }
        Ok(Interrupt(flag))
    }

    fn check(&self) -> Result<()> {
        if self.0.load(Ordering::SeqCst) {
            Err(CliError::Failed(
                "interrupted: removing the demo cluster".into(),
            ))
        } else {
            Ok(())
        }
    }
}

/// The demo as a table of contents: each step prints as it goes (a live
/// narrative) and adds its part to the `--json` document.
pub fn run(args: &DemoArgs, o: &mut Output) -> Result<()> {
    require_root()?;
    if args.cleanup {
        return cleanup(o);
    }
    let bin_dir = bin_dir(args)?;
    let bins = Binaries::from_dir(&bin_dir).map_err(|e| failed("binaries", e))?;
    let interrupt = Interrupt::install()?;
    let bgp = args.fabric == FabricKind::Bgp;

    let (mut topo, firewall) = build_cluster(&bin_dir, &bins, bgp, o)?;
    interrupt.check()?;
    show_nodes(&topo, bgp, o)?;
    let fabric_doc = if bgp {
        start_bgp(&mut topo, &interrupt, o)?
    } else {
        json!(null)
    };
    let nat64_cfg = if args.nat64 {
        Some(start_nat64(&mut topo, o)?)
    } else {
        None
    };
    let mut doc = cluster_doc(&topo);
    let pods = attach_pods(&mut topo, &bins, &interrupt, &mut doc, o)?;
    let unreachable = traffic_checks(&topo, &pods, &interrupt, &mut doc, o)?;
    doc["bgp"] = fabric_doc;
    let ipv4_failures = match &nat64_cfg {
        Some(cfg) => ipv4_probe(&topo, &pods, cfg, &mut doc, o)?,
        None => 0,
    };
    let policy_failures = if firewall {
        outside_probes(&topo, &pods, &interrupt, &mut doc, o)?
    } else {
        0
    };

    doc["kept"] = json!(args.keep);
    doc["unreachable"] = json!(unreachable);
    if args.keep {
        doc["manifest"] = json!(topo.dir().join("manifest.json"));
        keep_up(topo, &pods, o)?;
    } else {
        remove_cluster(topo, &bins, &pods, o)?;
    }
    if o.json {
        o.json(&doc)?;
    }
    verdict(unreachable, ipv4_failures, policy_failures)
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(CliError::Usage(
            "cni6 demo creates network namespaces: run it as root (sudo cni6 demo)".into(),
        ));
    }
    Ok(())
}

/// `--bin-dir`, else the directory this cni6 runs from.
fn bin_dir(args: &DemoArgs) -> Result<PathBuf> {
    Ok(match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .map_err(|e| failed("find the cni6 binary", e))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    })
}

/// The nodes and the fabric, each node's conflist (with firewall6 when it
/// can work here), and what `--cleanup` needs in the manifest. Returns the
/// topology and whether firewall6 is in the conflists.
fn build_cluster(
    bin_dir: &Path,
    bins: &Binaries,
    bgp: bool,
    o: &mut Output,
) -> Result<(Topology, bool)> {
    let mut spec = Spec::new("c6d", NODES);
    spec.state_root = PathBuf::from(STATE_ROOT);
    spec.static_routes = !bgp;
    let mut topo = Topology::build(spec).map_err(|e| failed("build the cluster", e))?;
    topo.write_cluster_conflists()
        .map_err(|e| failed("write conflists", e))?;
    let firewall = firewall_available(bin_dir, o)?;
    if firewall {
        add_firewall6(&topo)?;
    }
    topo.set_extra(json!({ "cni6": bins.cni6, "cniPath": bins.cni_path }))
        .map_err(|e| failed("write manifest", e))?;
    Ok((topo, firewall))
}

/// The fabric, then every node: its addresses, its prefixes and pod
/// ranges, and (static fabric) its routes to the other nodes.
fn show_nodes(topo: &Topology, bgp: bool, o: &mut Output) -> Result<()> {
    say(
        o,
        format!(
            "cni6 demo: {NODES} nodes joined by a plain IPv6 fabric ({}, routes: {}), cluster ULA {}",
            topo.spec().underlay,
            if bgp { "BGP" } else { "static" },
            topo.spec().cluster
        ),
    )?;
    say(o, "")?;
    for node in topo.nodes() {
        say(
            o,
            format!(
                "node {} (netns {}), eth0 {} and {}/64",
                node.index, node.netns, node.underlay_addr, node.gua_addr
            ),
        )?;
        say(
            o,
            format!(
                "  ULA prefix {:<28} pods from {}",
                node.ula_prefix.to_string(),
                topology::Node::pod_range(&node.ula_prefix, 1)
            ),
        )?;
        say(
            o,
            format!(
                "  GUA prefix {:<28} pods from {}",
                node.gua_prefix.to_string(),
                topology::Node::pod_range(&node.gua_prefix, 1)
            ),
        )?;
        for other in topo
            .nodes()
            .iter()
            .filter(|x| x.index != node.index && !bgp)
        {
            say(
                o,
                format!(
                    "  route {} and {} via node {} ({})",
                    other.ula_prefix, other.gua_prefix, other.index, other.underlay_addr
                ),
            )?;
        }
    }
    say(o, "")
}

/// The `--json` document's cluster part; the steps add the rest.
fn cluster_doc(topo: &Topology) -> serde_json::Value {
    json!({
        "cluster": topo.spec().cluster,
        "underlay": topo.spec().underlay,
        "nodes": topo.nodes().iter().map(|n| json!({
            "index": n.index,
            "netns": n.netns,
            "underlay": n.underlay_addr,
            "ulaPrefix": n.ula_prefix,
            "guaPrefix": n.gua_prefix,
            "ulaPodRange": topology::Node::pod_range(&n.ula_prefix, 1),
            "guaPodRange": topology::Node::pod_range(&n.gua_prefix, 1),
        })).collect::<Vec<_>>(),
        "pods": [],
        "reachability": [],
    })
}

/// Make the pod namespaces and attach each through `cni6 attach` in its
/// node, printing its addresses.
fn attach_pods(
    topo: &mut Topology,
    bins: &Binaries,
    interrupt: &Interrupt,
    doc: &mut serde_json::Value,
    o: &mut Output,
) -> Result<Vec<(Pod, PodAddresses)>> {
    let mut pods: Vec<(Pod, PodAddresses)> = Vec::new();
    for n in 1..=NODES {
        for pod in topo
            .add_pods(n, PODS_PER_NODE)
            .map_err(|e| failed("create pod namespaces", e))?
        {
            interrupt.check()?;
            let addrs = topo
                .attach(bins, &pod)
                .map_err(|e| failed(&format!("attach {}", pod.name), e))?;
            say(
                o,
                format!(
                    "pod {} on node {}: eth0 {}  {}",
                    pod.name, n, addrs.ula, addrs.gua
                ),
            )?;
            doc["pods"].as_array_mut().expect("array").push(json!({
                "name": pod.name, "node": n, "netns": pod.path,
                "ula": addrs.ula, "gua": addrs.gua,
            }));
            pods.push((pod, addrs));
        }
    }
    say(o, "")?;
    Ok(pods)
}

/// The reachability matrices over ULA and GUA, with a capture on the
/// fabric while they run to show there is no overlay. Returns how many
/// pod pairs failed.
fn traffic_checks(
    topo: &Topology,
    pods: &[(Pod, PodAddresses)],
    interrupt: &Interrupt,
    doc: &mut serde_json::Value,
    o: &mut Output,
) -> Result<usize> {
    let capture = topology::FabricCapture::start(topo, "demo").ok();
    let mut unreachable = 0;
    for family in ["ULA", "GUA"] {
        unreachable += reachability(family, pods, interrupt, doc, o)?;
    }
    if let Some(cap) = capture {
        report_capture(cap, pods, doc, o)?;
    }
    Ok(unreachable)
}

/// One matrix: a TCP echo from every pod (row) to every other (column)
/// over one address family. Returns the failed cells.
fn reachability(
    family: &str,
    pods: &[(Pod, PodAddresses)],
    interrupt: &Interrupt,
    doc: &mut serde_json::Value,
    o: &mut Output,
) -> Result<usize> {
    say(
        o,
        format!("TCP reachability over {family} (row = client, column = server):"),
    )?;
    let short = |p: &Pod| format!("n{}p{}", p.node, p.name.rsplit('p').next().unwrap_or(""));
    let mut header = format!("{:>8}", "");
    for (s, _) in pods {
        header.push_str(&format!(" {:>11}", short(s)));
    }
    say(o, header)?;
    let mut unreachable = 0;
    for (c, _) in pods {
        let mut row = format!("{:>8}", short(c));
        for (s, sa) in pods {
            interrupt.check()?;
            let cell = if c == s {
                "-".to_string()
            } else {
                let dst = if family == "ULA" {
                    sa.ula.addr()
                } else {
                    sa.gua.addr()
                };
                let res = topology::tcp_echo(&s.path, dst, &c.path, b"cni6 demo", TCP_TIMEOUT);
                doc["reachability"]
                    .as_array_mut()
                    .expect("array")
                    .push(json!({
                        "client": c.name, "server": s.name, "family": family, "dst": dst,
                        "ok": res.is_ok(),
                        "ms": res.as_ref().ok().map(|x| x.elapsed.as_secs_f64() * 1e3),
                        "error": res.as_ref().err().map(ToString::to_string),
                    }));
                match res {
                    Ok(x) => format!("ok {:.1}ms", x.elapsed.as_secs_f64() * 1e3),
                    Err(_) => {
                        unreachable += 1;
                        "FAIL".to_string()
                    }
                }
            };
            row.push_str(&format!(" {cell:>11}"));
        }
        say(o, row)?;
    }
    say(o, "")?;
    Ok(unreachable)
}

/// What the fabric carried while the matrices ran: packets between pod
/// addresses as they are, and any encapsulated ones.
fn report_capture(
    cap: topology::FabricCapture,
    pods: &[(Pod, PodAddresses)],
    doc: &mut serde_json::Value,
    o: &mut Output,
) -> Result<()> {
    let Ok(pkts) = cap.stop() else {
        return Ok(());
    };
    let pod_addrs: Vec<_> = pods
        .iter()
        .flat_map(|(_, a)| [a.ula.addr(), a.gua.addr()])
        .collect();
    let between_pods = pkts
        .iter()
        .filter(|p| {
            p.src.is_some_and(|s| pod_addrs.contains(&s))
                && p.dst.is_some_and(|d| pod_addrs.contains(&d))
        })
        .count();
    let wrapped = pkts
        .iter()
        .filter(|p| matches!(p.protocol, Some(4 | 17 | 41 | 47)))
        .count();
    doc["capture"] = json!({ "podPackets": between_pods, "encapsulated": wrapped });
    say(
        o,
        format!(
            "fabric capture: {between_pods} packets carried pod addresses as they are, \
             {wrapped} were encapsulated (UDP/GRE/IPIP/IPv6-in-IPv6)"
        ),
    )
}

/// Detach every pod through the runtime (a failure is a warning: the
/// teardown removes the namespaces anyway), then remove the cluster.
fn remove_cluster(
    topo: Topology,
    bins: &Binaries,
    pods: &[(Pod, PodAddresses)],
    o: &mut Output,
) -> Result<()> {
    for (pod, _) in pods {
        if let Err(e) = topo.detach(bins, pod) {
            say(o, format!("warning: detach {}: {e}", pod.name))?;
        }
    }
    topo.teardown()
        .map_err(|e| failed("remove the cluster", e))?;
    say(
        o,
        "removed: every namespace, link and allocation of the demo is gone",
    )
}

/// The exit status: non-zero when any check failed.
fn verdict(unreachable: usize, ipv4_failures: usize, policy_failures: usize) -> Result<()> {
    if unreachable > 0 {
        return Err(CliError::Failed(format!(
            "{unreachable} pod pair(s) could not reach each other"
        )));
    }
    if ipv4_failures > 0 {
        return Err(CliError::Failed(
            "the pod on node 2 could not reach the IPv4-only host through NAT64/DNS64".into(),
        ));
    }
    if policy_failures > 0 {
        return Err(CliError::Failed(format!(
            "{policy_failures} firewall probe(s) from outside did not behave as the policy says"
        )));
    }
    Ok(())
}

/// firewall6 next to cni6 and bridged traffic reaching ip6tables
/// (br_netfilter, loaded on demand). Otherwise the demo runs without the
/// firewall and says why: firewall6 itself would refuse the ADD (code 50)
/// rather than skip its source check silently.
fn firewall_available(bin_dir: &Path, o: &mut Output) -> Result<bool> {
    if !bin_dir.join("firewall6").is_file() {
        say(
            o,
            format!(
                "note: no firewall6 in {}: the demo runs without it",
                bin_dir.display()
            ),
        )?;
        return Ok(false);
    }
    let knob = Path::new("/proc/sys/net/bridge/bridge-nf-call-ip6tables");
    if !knob.exists() {
        let _ = std::process::Command::new("modprobe")
            .arg("br_netfilter")
            .stderr(std::process::Stdio::null())
            .status();
    }
    if !knob.exists() {
        say(
            o,
            "note: br_netfilter is not loaded (modprobe br_netfilter), so bridged traffic \
             never reaches ip6tables: the demo runs without firewall6",
        )?;
        return Ok(false);
    }
    Ok(true)
}

/// Append firewall6 to every node's conflist: the docs/design.md policy, with
/// the demo's provider GUA space counted as inside so pods of different
/// nodes may also talk GUA to GUA.
fn add_firewall6(topo: &Topology) -> Result<()> {
    for node in topo.nodes() {
        let path = topo.conflist_path(node.index);
        let text = std::fs::read(&path).map_err(|e| failed("read conflist", e))?;
        let mut list: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| failed("parse conflist", e))?;
        list["plugins"]
            .as_array_mut()
            .ok_or_else(|| CliError::Failed("conflist without plugins".into()))?
            .push(json!({
                "type": "firewall6",
                "clusterPrefixes": [topo.spec().cluster, topo.spec().gua_base],
                "ingress": "cluster-only",
                "allowPorts": [ { "port": OPEN_PORT, "protocol": "tcp" } ]
            }));
        let bytes = serde_json::to_vec_pretty(&list).map_err(|e| failed("conflist", e))?;
        std::fs::write(&path, bytes).map_err(|e| failed("write conflist", e))?;
    }
    Ok(())
}

/// From a host outside the cluster, connect to every pod's GUA on the open
/// and on a closed port. Returns how many probes disagreed with the policy.
fn outside_probes(
    topo: &Topology,
    pods: &[(Pod, PodAddresses)],
    interrupt: &Interrupt,
    doc: &mut serde_json::Value,
    o: &mut Output,
) -> Result<usize> {
    let (outside, outside_addr) = topo
        .add_outside_host()
        .map_err(|e| failed("add a host outside the cluster", e))?;
    say(
        o,
        format!(
            "firewall6 (ingress cluster-only; inside: {} and {}; open to all: {OPEN_PORT}/tcp)",
            topo.spec().cluster,
            topo.spec().gua_base
        ),
    )?;
    say(
        o,
        format!("from a host outside the cluster ({outside_addr}):"),
    )?;
    let mut failures = 0;
    let mut probes = Vec::new();
    for (pod, addrs) in pods {
        let mut line = format!("  pod {:<14}", pod.name);
        for (port, expect_open) in [(OPEN_PORT, true), (CLOSED_PORT, false)] {
            interrupt.check()?;
            let dst = addrs.gua.addr();
            let wait = if expect_open {
                TCP_TIMEOUT
            } else {
                REFUSED_AFTER
            };
            let open = tcp_connects(&pod.path, dst, port, &outside, wait)?;
            if open != expect_open {
                failures += 1;
            }
            let verdict = match (open, expect_open) {
                (true, true) => "open (allowed port)",
                (false, false) => "refused (dropped)",
                (true, false) => "OPEN: policy violated",
                (false, true) => "UNREACHABLE",
            };
            line.push_str(&format!("  [{dst}]:{port} {verdict:<20}"));
            probes.push(json!({
                "pod": pod.name, "dst": dst, "port": port,
                "expected": if expect_open { "open" } else { "refused" },
                "open": open,
            }));
        }
        say(o, line.trim_end().to_string())?;
    }
    say(o, "")?;
    doc["outside"] = json!({ "from": outside_addr, "probes": probes });
    Ok(failures)
}

/// Whether a TCP handshake from `client` to `[dst]:port`, with a listener
/// on that port inside `server`, completes within `wait`.
fn tcp_connects(
    server: &Path,
    dst: Ipv6Addr,
    port: u16,
    client: &Path,
    wait: Duration,
) -> Result<bool> {
    use cni_common::netns::NetNs;
    use std::net::{SocketAddr, SocketAddrV6, TcpListener, TcpStream};
    let sa = SocketAddrV6::new(dst, port, 0, 0);
    let server_ns = NetNs::open(server).map_err(|e| failed("open pod netns", e))?;
    // Kept open until the probe is done; the kernel completes the
    // handshake from its backlog, no accept needed.
    let _listener = server_ns
        .run(|| TcpListener::bind(sa))
        .map_err(|e| failed("enter pod netns", e))?
        .map_err(|e| failed(&format!("listen on [{dst}]:{port}"), e))?;
    let client_ns = NetNs::open(client).map_err(|e| failed("open outside netns", e))?;
    let connected = client_ns
        .run(|| TcpStream::connect_timeout(&SocketAddr::V6(sa), wait))
        .map_err(|e| failed("enter outside netns", e))?;
    Ok(connected.is_ok())
}

fn keep_up(topo: Topology, pods: &[(Pod, PodAddresses)], o: &mut Output) -> Result<()> {
    let n1 = &topo.nodes()[0];
    let (p, a) = &pods[0];
    let lines = [
        "The cluster stays up. To look around:".to_string(),
        format!("  ip netns list | grep {}", topo.base()),
        format!("  ip netns exec {} ip -6 addr show dev eth0", p.name),
        format!("  ip netns exec {} ip -6 route", p.name),
        format!(
            "  ip netns exec {} ip -6 route          # one route per other node",
            n1.netns
        ),
        format!(
            "  ip netns exec {} bridge link          # the pods' veths",
            n1.netns
        ),
        format!(
            "  ip netns exec {} tcpdump -ni {}n1 ip6   # node 1's port on the fabric",
            topo.underlay_netns(),
            topo.base()
        ),
        format!(
            "  ls {}/node1/ipam/cluster/attachments",
            topo.dir().display()
        ),
        format!(
            "  (pod {} has {} and {})",
            p.name,
            a.ula.addr(),
            a.gua.addr()
        ),
        "To remove it:".to_string(),
        // The path this binary was run from: after `target/release/cni6
        // demo --keep`, a bare `cni6` is usually not on PATH.
        format!(
            "  {} demo --cleanup",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "cni6".into())
        ),
    ];
    let _manifest = topo.keep();
    for l in lines {
        say(o, l)?;
    }
    Ok(())
}

/// Detach the pods of every kept demo cluster through the runtime, then
/// remove its namespaces and state.
fn cleanup(o: &mut Output) -> Result<()> {
    let kept = Topology::kept(Path::new(STATE_ROOT));
    if kept.is_empty() {
        o.line("no demo cluster is up")?;
        return Ok(());
    }
    let mut errors = Vec::new();
    for manifest in kept {
        match Topology::adopt(&manifest) {
            Ok(topo) => {
                let extra = topo.extra().clone();
                let bins = Binaries {
                    cni6: extra["cni6"]
                        .as_str()
                        .map(PathBuf::from)
                        .unwrap_or_default(),
                    cni_path: extra["cniPath"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(PathBuf::from))
                        .collect(),
                };
                for pod in topo.pods() {
                    if let Err(e) = topo.detach(&bins, pod) {
                        o.line(format!("warning: detach {}: {e}", pod.name))?;
                    }
                }
                let base = topo.base().to_string();
                match topo.teardown() {
                    Ok(()) => o.line(format!("removed demo cluster {base}"))?,
                    Err(e) => errors.push(format!("{base}: {e}")),
                }
            }
            // Partly gone already: remove what the manifest still lists.
            Err(_) => match topology::remove_by_manifest(&manifest) {
                Ok(()) => o.line(format!("removed leftovers of {}", manifest.display()))?,
                Err(e) => errors.push(format!("{}: {e}", manifest.display())),
            },
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(errors.join("; ")))
    }
}

/// A program a demo option runs, installed where Debian puts it.
fn require_tool(option: &str, tool: &str, package: &str) -> Result<()> {
    if ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .any(|d| Path::new(d).join(tool).is_file())
    {
        return Ok(());
    }
    Err(CliError::Failed(format!(
        "{option} needs {tool}: apt-get install {package} (scripts/install-deps.sh)"
    )))
}

/// BGP instead of static routes: a route reflector on the fabric, BIRD on
/// every node with the configuration `cni6 routes --format bird` prints,
/// then the sessions and the routes each node learned.
fn start_bgp(
    topo: &mut Topology,
    interrupt: &Interrupt,
    o: &mut Output,
) -> Result<serde_json::Value> {
    let router = RouterOptions {
        asn: ASN,
        reflector: true,
        hold: HOLD,
        bfd: false,
    };
    require_tool("--fabric bgp", "bird", "bird2")?;
    fabric::add_router(topo, &router).map_err(|e| failed("start the route reflector", e))?;
    for (i, conf) in (1..=NODES).zip(bird_configs(topo)) {
        fabric::start_bird(topo, i, &conf).map_err(|e| failed("start BIRD", e))?;
    }
    let sock = fabric::bird_socket(topo, None);
    let took = fabric::wait_established(&sock, usize::from(NODES), Duration::from_secs(30))
        .map_err(|e| failed("BGP sessions", e))?;
    interrupt.check()?;
    say(
        o,
        format!(
            "BGP: route reflector {} (AS {ASN}), sessions up after {:.1} s (cni6 routes --format bird --peer {}):",
            fabric::router_addr(topo),
            took.as_secs_f64(),
            fabric::router_addr(topo)
        ),
    )?;
    let sessions = fabric::sessions(&sock).map_err(|e| failed("birdc", e))?;
    for s in &sessions {
        say(o, format!("  router session {:<8} {}", s.name, s.info))?;
    }
    let learned = show_learned_routes(topo, o)?;
    say(o, "")?;
    Ok(json!({
        "router": fabric::router_addr(topo),
        "asn": ASN,
        "sessions": sessions.iter().map(|s| json!({"name": s.name, "info": s.info})).collect::<Vec<_>>(),
        "learned": learned,
    }))
}

/// Each node's BIRD configuration, in node order: what `cni6 routes
/// --format bird --peer <route reflector>` prints for it.
fn bird_configs(topo: &Topology) -> Vec<String> {
    let nodes: Vec<routes::FabricNode> = topo
        .nodes()
        .iter()
        .map(|n| routes::FabricNode {
            name: format!("node{}", n.index),
            prefixes: vec![n.ula_prefix, n.gua_prefix],
            underlay: n.underlay_addr,
        })
        .collect();
    let opts = routes::BgpOptions {
        asn: ASN,
        peers: vec![routes::Peer {
            addr: fabric::router_addr(topo),
            asn: None,
        }],
        hold: Some(HOLD),
        ..routes::BgpOptions::default()
    };
    (1..=NODES)
        .map(|i| routes::bird(&nodes, &format!("node{i}"), &opts))
        .collect()
}

/// Wait until every node has a kernel route to every other node's
/// prefixes, then print the routes BIRD installed in each.
fn show_learned_routes(topo: &Topology, o: &mut Output) -> Result<Vec<serde_json::Value>> {
    let mut learned = Vec::new();
    for n in topo.nodes() {
        for other in topo.nodes().iter().filter(|x| x.index != n.index) {
            for p in [other.ula_prefix, other.gua_prefix] {
                fabric::wait_until(Duration::from_secs(10), || {
                    fabric::kernel_route(topo, &n.netns, &p).is_ok_and(|(h, _)| !h.is_empty())
                })
                .map_err(|e| failed(&format!("node {} learn {p}", n.index), e))?;
            }
        }
        let r = topo
            .ip(&n.netns, &["-6", "route", "show", "proto", "bird"])
            .map_err(|e| failed("ip route", e))?;
        for line in r.lines() {
            say(o, format!("  node {} learned: {}", n.index, line.trim()))?;
            learned.push(json!({"node": n.index, "route": line.trim()}));
        }
    }
    Ok(learned)
}

/// Node 1 becomes IPv4-enabled: its uplink, tayga and unbound's DNS64 with
/// what `cni6 nat64` prints for it.
fn start_nat64(topo: &mut Topology, o: &mut Output) -> Result<fabric::Nat64Config> {
    require_tool("--nat64", "tayga", "tayga")?;
    require_tool("--nat64", "unbound", "unbound")?;
    fabric::add_ipv4_internet(topo, 1).map_err(|e| failed("IPv4 uplink of node 1", e))?;
    let (conf, data) = fabric::nat64_paths(topo, 1);
    let args = nat64::Nat64Args {
        node_prefix: topo.node(1).ula_prefix.to_string(),
        ipv4_pool: fabric::NAT64_POOL.into(),
        uplink: "eth1".into(),
        format: nat64::Format::Tayga,
        tun: "nat64".into(),
        conf: conf.clone(),
        data_dir: data,
        clients: vec![],
    };
    let plan = nat64::Nat64::from_args(&args)?;
    let cfg = fabric::Nat64Config {
        tayga: plan.tayga(),
        commands: plan.commands(),
        unbound: plan.unbound(),
        conf,
        dns: plan.dns,
    };
    fabric::start_nat64(topo, 1, &cfg).map_err(|e| failed("NAT64/DNS64 on node 1", e))?;
    say(
        o,
        format!(
            "IPv4: node 1 has an uplink to the IPv4 internet ({}/{} -> {}), runs tayga for {} \
             (pool {}, masqueraded) and a DNS64 at {} (cni6 nat64 --node-prefix {})",
            fabric::UPLINK_NODE,
            fabric::UPLINK_LEN,
            fabric::INTERNET_NET,
            plan.prefix,
            plan.pool,
            plan.dns,
            plan.node_prefix
        ),
    )?;
    say(o, "")?;
    Ok(cfg)
}

/// A pod on node 2 resolves the IPv4-only host's name through the DNS64
/// and talks TCP to it through node 1's NAT64. Returns the failures.
fn ipv4_probe(
    topo: &Topology,
    pods: &[(Pod, PodAddresses)],
    cfg: &fabric::Nat64Config,
    doc: &mut serde_json::Value,
    o: &mut Output,
) -> Result<usize> {
    let Some((pod, addrs)) = pods.iter().find(|(p, _)| p.node == 2) else {
        return Ok(0);
    };
    let name = fabric::IPV4_HOST_NAME;
    say(
        o,
        format!(
            "IPv4-only host {name} ({}, A record only), from pod {} on node 2 ({}):",
            fabric::IPV4_HOST,
            pod.name,
            addrs.ula.addr()
        ),
    )?;
    let aaaa = match fabric::resolve_aaaa(&pod.path, cfg.dns, name, TCP_TIMEOUT) {
        Ok(a) if !a.is_empty() => a,
        other => {
            say(
                o,
                format!("  resolve {name} AAAA via {}: FAIL {other:?}", cfg.dns),
            )?;
            doc["ipv4"] = json!({"ok": false, "error": format!("{other:?}")});
            return Ok(1);
        }
    };
    say(
        o,
        format!(
            "  {name} AAAA {} (synthesised by the DNS64 at {})",
            aaaa[0], cfg.dns
        ),
    )?;
    let internet = match topo.host(fabric::INTERNET) {
        Some(h) => h.netns_path(),
        None => return Ok(1),
    };
    match fabric::tcp_via_nat64(&internet, &pod.path, aaaa[0], TCP_TIMEOUT) {
        Ok(x) => {
            say(
                o,
                format!(
                    "  TCP to [{}] ok in {:.1} ms; the IPv4 host saw the client as {} (node 1, masqueraded)",
                    aaaa[0],
                    x.elapsed.as_secs_f64() * 1e3,
                    x.peer
                ),
            )?;
            say(o, "")?;
            doc["ipv4"] = json!({"ok": true, "name": name, "aaaa": aaaa[0],
                "ms": x.elapsed.as_secs_f64() * 1e3, "seenAs": x.peer.to_string()});
            Ok(0)
        }
        Err(e) => {
            say(o, format!("  TCP to [{}]: FAIL {e}", aaaa[0]))?;
            doc["ipv4"] = json!({"ok": false, "aaaa": aaaa[0], "error": e.to_string()});
            Ok(1)
        }
    }
}
