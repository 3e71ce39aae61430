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
//! 443 and not on 8080. Without a firewall6 binary the demo says so and
//! runs without the firewall.
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

mod bgp;
mod firewall;
mod ipv4;
mod keep;

use bgp::start_bgp;
use firewall::{add_firewall6, firewall_available, outside_probes};
use ipv4::{ipv4_probe, start_nat64};
use keep::{cleanup, keep_up};

use crate::error::{CliError, Result};
use crate::options::Output;
use clap::{Args, ValueEnum};
use netlab::topology::{self, Binaries, Pod, PodAddresses, Spec, Topology};
use serde_json::json;
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
