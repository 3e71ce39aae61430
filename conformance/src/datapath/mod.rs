//! The data-path benchmark (`bench --datapath`, issues 15 and 20): what a
//! pod feels every second, next to what the node itself gets on the same
//! machine, for cni6's chain, the reference chain and cni6 without its
//! firewall.
//!
//! Each chain gets a topology of its own of the same shape (two nodes on
//! a fabric, see [`crate::topology`]): cni6's (bridge6 → ipam-prefix, then
//! firewall6 with its default `ingress: cluster-only`), the reference's
//! (bridge → host-local with the same pod ranges, then firewall) and cni6
//! bare (bridge6 → ipam-prefix without firewall6, its namespaces checked
//! free of netfilter tables and conntrack entries: the path's structural
//! floor, so cni6 over bare is what netfilter costs). Pods are attached
//! with `cni6 attach` inside their node, as a runtime does, so the
//! benchmark measures whatever data path the built plugins make. One
//! topology per chain rather than several bridges on one node: every
//! firewall would otherwise see every packet. Baselines (node→node, a
//! direct veth pair, node→outside) are measured in each topology, so
//! every ratio is between figures of one topology taken minutes apart,
//! and the copies of a baseline show the run's noise.
//!
//! Per path: TCP throughput with iperf3 (Debian's, one stream and
//! `-P 8`), CPU seconds per GB moved, and the round-trip time of 1-byte
//! TCP ping-pong (p50, p99; client and server are threads of this process
//! whose sockets were made inside the namespaces). CPU is user + system
//! of the iperf3 client and server (wait4 rusage) plus the time of the
//! ksoftirqd threads over the run: this kernel's tick accounting charges
//! softirq work to the task it interrupts, and a veth delivers in the
//! sender's context, so the receive path is in those figures. Cycles are
//! that times the clock /proc/cpuinfo states: perf has no hardware
//! counters in a VM. Rounds over every path rotate the order of the
//! chains, so drift in the machine's load hits them alike;
//! throughput is the median of the rounds, CPU per GB and latency pool
//! them. `--profile` adds perf's view of where that CPU goes.

use crate::topology::{self, Binaries, Error, Pod, Result, Spec, Topology};
use cni_common::netns::NetNs;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod lab;
mod measure;
mod profile;
mod table;

pub use lab::netfilter_in;
use measure::{iperf, measure, Reaped};
use profile::{profile, render_profiles};
pub use profile::{Area, Profile};

/// How long the run takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Size {
    /// CI: a few MB per iperf3 run, a few hundred round trips; proves the
    /// table is complete, its figures mean little.
    Tiny,
    /// The figures for docs/datapath.md: three rounds of 5 s per iperf3
    /// run, 20000 round trips.
    Normal,
}

impl Size {
    /// iperf3 arguments that bound one run.
    fn iperf_bound(self) -> Vec<String> {
        match self {
            Size::Tiny => vec!["-n".into(), "16M".into()],
            Size::Normal => vec!["-t".into(), "5".into()],
        }
    }
    /// A profiled run: long enough for perf to sample the transfer rather
    /// than iperf3 starting.
    fn profile_bound(self) -> Vec<String> {
        match self {
            Size::Tiny => vec!["-t".into(), "1".into()],
            Size::Normal => vec!["-t".into(), "5".into()],
        }
    }
    /// Rounds over every path (medians need three).
    fn rounds(self) -> usize {
        match self {
            Size::Tiny => 1,
            Size::Normal => 3,
        }
    }
    fn round_trips(self) -> usize {
        match self {
            Size::Tiny => 300,
            Size::Normal => 20_000,
        }
    }
    /// Upper bound of one ping-pong series.
    fn rr_limit(self) -> Duration {
        match self {
            Size::Tiny => Duration::from_secs(3),
            Size::Normal => Duration::from_secs(5),
        }
    }
    fn describe(self) -> String {
        format!(
            "{} round(s) of iperf3 {} per cell (median), {} round trips of 1 byte",
            self.rounds(),
            self.iperf_bound().join(" "),
            self.round_trips()
        )
    }
}

/// What `bench --datapath` was given.
#[derive(Debug, Clone)]
pub struct Options {
    /// bridge6, ipam-prefix, firewall6 and cni6.
    pub bin_dir: PathBuf,
    /// bridge, host-local, firewall (and loopback).
    pub reference_dir: PathBuf,
    pub size: Size,
    /// Also sample where the CPU goes (perf) on the pod paths and their
    /// baselines.
    pub profile: bool,
    /// Raised by SIGINT/SIGTERM: stop between measurements.
    pub interrupted: Option<Arc<AtomicBool>>,
}

/// One path a packet can take, client → server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    PodPodSameNode,
    PodPodAcrossNodes,
    NodeNode,
    VethPair,
    PodOutside,
    NodeOutside,
}

impl PathKind {
    pub const ALL: [PathKind; 6] = [
        PathKind::PodPodSameNode,
        PathKind::PodPodAcrossNodes,
        PathKind::NodeNode,
        PathKind::VethPair,
        PathKind::PodOutside,
        PathKind::NodeOutside,
    ];

    pub fn label(self) -> &'static str {
        match self {
            PathKind::PodPodSameNode => "pod->pod same node",
            PathKind::PodPodAcrossNodes => "pod->pod across nodes",
            PathKind::NodeNode => "node->node (fabric)",
            PathKind::VethPair => "veth pair (floor)",
            PathKind::PodOutside => "pod->outside",
            PathKind::NodeOutside => "node->outside",
        }
    }
}

/// The plugin chain a topology's pods are attached with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    Cni6,
    Reference,
    /// cni6 without firewall6, in nodes without any netfilter table: what
    /// the path itself (veths, bridges, forwarding) costs.
    Bare,
}

impl ChainKind {
    pub const ALL: [ChainKind; 3] = [ChainKind::Cni6, ChainKind::Reference, ChainKind::Bare];

    /// Fits the table's 9-character chain column.
    pub fn label(self) -> &'static str {
        match self {
            ChainKind::Cni6 => "cni6",
            ChainKind::Reference => "reference",
            ChainKind::Bare => "cni6 bare",
        }
    }
}

/// iperf3's port inside the server's namespace (every server has a
/// namespace of its own).
const IPERF_PORT: u16 = 5201;
/// The MTU bridge6 and the reference bridge give pods here; the floor's
/// veth pair gets the same.
const POD_MTU: u32 = 1420;
/// The floor's own /64 (ULA, inside two namespaces of ours only).
const FLOOR_NET: &str = "fd00:f100::";

/// A namespace as `ip netns exec` names it and as a path.
#[derive(Debug, Clone)]
struct Endpoint {
    netns: String,
    path: PathBuf,
}

impl Endpoint {
    fn named(name: &str) -> Endpoint {
        Endpoint {
            netns: name.to_string(),
            path: Path::new(topology::NETNS_DIR).join(name),
        }
    }
}

/// Client, server and the address the client dials.
#[derive(Debug, Clone)]
struct Route {
    client: Endpoint,
    server: Endpoint,
    addr: Ipv6Addr,
}

/// One chain's topology with every path wired.
struct Lab {
    chain: ChainKind,
    topo: Topology,
    routes: Vec<(PathKind, Route)>,
    /// bridge-nf-call-ip6tables in node 1 ("-" when the knob is absent).
    bridge_nf: String,
}

impl Lab {
    fn route(&self, path: PathKind) -> &Route {
        &self
            .routes
            .iter()
            .find(|(p, _)| *p == path)
            .expect("every path is wired")
            .1
    }
}

/// One iperf3 run.
#[derive(Debug, Clone, Copy)]
struct Run {
    /// Received by the server, bits per second.
    bits_per_second: f64,
    /// Received by the server.
    bytes: u64,
    /// CPU of client, server and ksoftirqd over the run.
    cpu: Duration,
}

/// The iperf3 runs of one cell.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Median over the runs.
    pub bits_per_second: f64,
    /// Received by the servers, all runs.
    pub bytes: u64,
    /// CPU of clients, servers and ksoftirqd, all runs.
    pub cpu: Duration,
    pub runs: usize,
}

impl Throughput {
    fn of(runs: &[Run]) -> Throughput {
        let mut rates: Vec<f64> = runs.iter().map(|r| r.bits_per_second).collect();
        rates.sort_by(f64::total_cmp);
        let median = match rates.len() {
            0 => 0.0,
            n if n % 2 == 1 => rates[n / 2],
            n => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
        };
        Throughput {
            bits_per_second: median,
            bytes: runs.iter().map(|r| r.bytes).sum(),
            cpu: runs.iter().map(|r| r.cpu).sum(),
            runs: runs.len(),
        }
    }

    pub fn gbit(&self) -> f64 {
        self.bits_per_second / 1e9
    }
    /// CPU seconds per 10^9 bytes moved.
    pub fn cpu_per_gb(&self) -> f64 {
        if self.bytes == 0 {
            return 0.0;
        }
        self.cpu.as_secs_f64() / (self.bytes as f64 / 1e9)
    }
}

/// One ping-pong series.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: Duration,
    pub p99: Duration,
    /// Round trips sampled (the warm-up excluded).
    pub samples: usize,
}

impl Latency {
    fn of(rtts: &mut [Duration]) -> Result<Latency> {
        if rtts.is_empty() {
            return Err(Error::Check(
                "ping-pong: no round trip after the warm-up within the time limit".into(),
            ));
        }
        rtts.sort();
        let pct = |p: f64| rtts[((p / 100.0) * (rtts.len() - 1) as f64).round() as usize];
        Ok(Latency {
            p50: pct(50.0),
            p99: pct(99.0),
            samples: rtts.len(),
        })
    }
}

/// Every figure of one path in one chain's topology.
#[derive(Debug, Clone)]
pub struct Measurement {
    pub path: PathKind,
    pub chain: ChainKind,
    pub single: Throughput,
    pub multi: Throughput,
    pub rr: Latency,
}

/// The machine, without anything that names it.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cores: usize,
    /// major.minor only.
    pub kernel: String,
    pub cpu_mhz: Option<f64>,
    pub iperf3: String,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: Machine,
    pub size: Size,
    pub reference_dir: PathBuf,
    /// bridge-nf-call-ip6tables in each chain's nodes.
    pub bridge_nf: Vec<(ChainKind, String)>,
    /// Namespaces of the bare topology found without a netfilter table
    /// or conntrack entry after every measurement (None: no bare chain).
    pub bare_checked: Option<usize>,
    /// Load average (1, 5, 15 min) before and after: the machine may be shared.
    pub load: (String, String),
    pub rows: Vec<Measurement>,
    /// With [`Options::profile`].
    pub profiles: Vec<Profile>,
}

/// Build every chain's topology, measure every path in each, remove
/// everything.
pub fn run(opts: &Options) -> Result<Report> {
    require_tools(opts)?;
    let machine = machine()?;
    crate::harness::install_cleanup_panic_hook();
    let load_before = load_average();
    let mut labs = Vec::new();
    let outcome = (|| -> Result<(Vec<Measurement>, Vec<Profile>, Option<usize>)> {
        for chain in ChainKind::ALL {
            check(opts)?;
            let lab = Lab::build(chain, opts)?;
            labs.push(lab);
        }
        for lab in &labs {
            lab.check_paths()?;
        }
        let rows = measure(&labs, opts)?;
        let profiles = if opts.profile {
            profile(&labs, opts)?
        } else {
            Vec::new()
        };
        // Once more after all the traffic: a bare figure measured with
        // netfilter active would be a wrong floor, not a noisy one.
        let mut bare_checked = None;
        for lab in labs.iter().filter(|l| l.chain == ChainKind::Bare) {
            bare_checked = Some(lab.check_netfilter_free("after the measurements")?);
        }
        Ok((rows, profiles, bare_checked))
    })();
    let load = (load_before, load_average());
    let bridge_nf = labs
        .iter()
        .map(|l| (l.chain, l.bridge_nf.clone()))
        .collect();
    let mut teardown = Ok(());
    for lab in labs {
        let base = lab.topo.base().to_string();
        if let Err(e) = lab.topo.teardown() {
            eprintln!("datapath: teardown of {base}: {e}");
            teardown = Err(e);
        }
    }
    let (rows, profiles, bare_checked) = outcome?;
    teardown?;
    Ok(Report {
        machine,
        size: opts.size,
        reference_dir: opts.reference_dir.clone(),
        bridge_nf,
        bare_checked,
        load,
        rows,
        profiles,
    })
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn check(opts: &Options) -> Result<()> {
    if opts
        .interrupted
        .as_ref()
        .is_some_and(|f| f.load(Ordering::SeqCst))
    {
        return Err(Error::Check("interrupted".into()));
    }
    Ok(())
}

fn require_tools(opts: &Options) -> Result<()> {
    if opts.profile {
        topology::run({
            let mut c = Command::new("perf");
            c.arg("--version");
            c
        })
        .map_err(|e| {
            Error::Check(format!(
                "perf is needed for --profile (apt-get install linux-perf): {e}"
            ))
        })?;
    }
    for (dir, names) in [
        (
            &opts.bin_dir,
            ["cni6", "bridge6", "ipam-prefix", "firewall6"].as_slice(),
        ),
        (
            &opts.reference_dir,
            ["bridge", "host-local", "firewall"].as_slice(),
        ),
    ] {
        for n in names {
            if !dir.join(n).is_file() {
                return Err(Error::MissingBinary(dir.join(n)));
            }
        }
    }
    // The bare topology's netfilter check reads the tables with these.
    for save in ["ip6tables-save", "iptables-save"] {
        topology::run({
            let mut c = Command::new(save);
            c.arg("--version");
            c
        })
        .map_err(|e| {
            Error::Check(format!(
                "{save} is needed to check that the cni6 bare topology has no netfilter \
                 (apt-get install iptables, or bash scripts/install-deps.sh): {e}"
            ))
        })?;
    }
    topology::run({
        let mut c = Command::new("iperf3");
        c.arg("--version");
        c
    })
    .map_err(|e| {
        Error::Check(format!(
            "iperf3 is needed for --datapath (apt-get install iperf3, or bash scripts/install-deps.sh): {e}"
        ))
    })
    .map(|_| ())
}

fn machine() -> Result<Machine> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_err(|e| Error::Io {
        context: "read /proc/sys/kernel/osrelease".into(),
        source: e,
    })?;
    let kernel = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .collect::<Vec<_>>()
        .join(".");
    let cpu_mhz = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
        s.lines()
            .find(|l| l.starts_with("cpu MHz"))
            .and_then(|l| l.split(':').nth(1))
            .and_then(|v| v.trim().parse().ok())
    });
    let version = topology::run({
        let mut c = Command::new("iperf3");
        c.arg("--version");
        c
    })?;
    let iperf3 = version.split_whitespace().nth(1).unwrap_or("?").to_string();
    Ok(Machine {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel,
        cpu_mhz,
        iperf3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(gbit: f64, bytes: u64, cpu_ms: u64) -> Run {
        Run {
            bits_per_second: gbit * 1e9,
            bytes,
            cpu: Duration::from_millis(cpu_ms),
        }
    }

    #[test]
    fn throughput_takes_the_median_rate_and_pools_cpu_and_bytes() {
        let t = Throughput::of(&[
            run(30.0, 1_000_000_000, 200),
            run(1.0, 500_000_000, 100),
            run(20.0, 500_000_000, 100),
        ]);
        assert_eq!(t.gbit(), 20.0);
        assert_eq!(t.runs, 3);
        assert!((t.cpu_per_gb() - 0.2).abs() < 1e-9, "{}", t.cpu_per_gb());
        let even = Throughput::of(&[run(10.0, 1, 0), run(20.0, 1, 0)]);
        assert_eq!(even.gbit(), 15.0);
        assert_eq!(Throughput::of(&[]).cpu_per_gb(), 0.0);
    }

    #[test]
    fn every_chain_goes_first_and_last_equally_often() {
        assert_eq!(measure::turn(2, 0), [0, 1]);
        assert_eq!(measure::turn(2, 1), [1, 0]);
        for n in [2, 3] {
            // first[c][p]: how often chain c stood at place p.
            let mut at = vec![vec![0; n]; n];
            for t in 0..PathKind::ALL.len() {
                let order = measure::turn(n, t);
                let mut sorted = order.clone();
                sorted.sort();
                assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "each chain once");
                for (place, &c) in order.iter().enumerate() {
                    at[c][place] += 1;
                }
            }
            for row in &at {
                assert!(row.iter().all(|&k| k == PathKind::ALL.len() / n), "{at:?}");
            }
        }
    }

    #[test]
    fn latency_percentiles_come_from_the_sorted_samples() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        let l = Latency::of(&mut v).unwrap();
        assert_eq!(l.p50, Duration::from_micros(51));
        assert_eq!(l.p99, Duration::from_micros(99));
        assert_eq!(l.samples, 100);
        assert!(Latency::of(&mut []).is_err());
    }

    #[test]
    fn sampled_functions_land_in_their_area() {
        for (sym, area) in [
            ("_copy_to_iter", Area::Copy),
            ("tcp_sendmsg_locked", Area::Tcp),
            ("__inet6_lookup_established", Area::Tcp),
            ("ip6_forward", Area::Ipv6),
            ("ip6t_do_table", Area::Netfilter),
            ("nf_conntrack_in", Area::Netfilter),
            ("nft_do_chain", Area::Netfilter),
            ("br_nf_pre_routing", Area::BrNetfilter),
            ("br_handle_frame", Area::Bridge),
            ("veth_xmit", Area::Veth),
            ("__netif_receive_skb_core", Area::Device),
            ("kmem_cache_alloc_node", Area::Memory),
            ("handle_softirqs", Area::Kernel),
        ] {
            assert_eq!(Area::of(sym, true), area, "{sym}");
        }
        assert_eq!(Area::of("tcp_sendmsg", false), Area::User);
    }

    fn report() -> Report {
        let t = Throughput::of(&[run(10.0, 1_000_000_000, 250)]);
        let rr = Latency {
            p50: Duration::from_micros(7),
            p99: Duration::from_micros(15),
            samples: 10,
        };
        Report {
            machine: Machine {
                cores: 2,
                kernel: "6.18".into(),
                cpu_mhz: Some(2100.0),
                iperf3: "3.12".into(),
            },
            size: Size::Tiny,
            reference_dir: PathBuf::from("/usr/lib/cni"),
            bridge_nf: vec![(ChainKind::Cni6, "1".into())],
            bare_checked: Some(8),
            load: ("1 1 1".into(), "1 1 1".into()),
            rows: PathKind::ALL
                .into_iter()
                .flat_map(|path| {
                    ChainKind::ALL.map(|chain| match chain {
                        // Twice as fast at half the CPU and 5 us p50, but
                        // across nodes only 0.80x its node->node.
                        ChainKind::Bare => {
                            let gbit = if path == PathKind::PodPodAcrossNodes {
                                16.0
                            } else {
                                20.0
                            };
                            let b = Throughput::of(&[run(gbit, 1_000_000_000, 125)]);
                            Measurement {
                                path,
                                chain,
                                single: b,
                                multi: b,
                                rr: Latency {
                                    p50: Duration::from_micros(5),
                                    ..rr
                                },
                            }
                        }
                        _ => Measurement {
                            path,
                            chain,
                            single: t,
                            multi: t,
                            rr,
                        },
                    })
                })
                .collect(),
            profiles: vec![Profile {
                path: PathKind::PodPodSameNode,
                chain: ChainKind::Cni6,
                samples: 4,
                areas: vec![1, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0],
                cpu_per_gb: 0.2,
            }],
        }
    }

    #[test]
    fn the_table_has_every_row_ratio_and_profile_area() {
        let text = report().render();
        for path in PathKind::ALL {
            for chain in ChainKind::ALL {
                let label = format!("{:<22} {:<9}", path.label(), chain.label());
                assert!(text.contains(&label), "{label:?} in:\n{text}");
            }
        }
        // cni6 and the reference have equal figures everywhere: every
        // ratio of theirs is 1.00 and every target is met, the latency
        // one (<= 1.20) too; the bare chain's figures stay out of them.
        assert!(text.contains("pod->pod across nodes / node->node (fabric)     1.00     1.00     1.00     1.00  >= 0.85  met"), "{text}");
        let (compared, bare) = text
            .split_once("# bare path / its baseline")
            .expect("a bare section");
        assert!(!compared.contains("missed"), "{text}");
        assert!(
            compared.contains("# cni6 / reference on the same path"),
            "{text}"
        );
        // Bare: 16 / 20 across nodes misses 0.85; equal figures elsewhere.
        assert!(bare.contains("pod->pod across nodes / node->node (fabric)     0.80     0.80     1.00     1.00     1.00  >= 0.85  missed"), "{bare}");
        assert!(bare.contains("pod->pod same node / veth pair (floor)         1.00     1.00     1.00     1.00     1.00  >= 0.90  met"), "{bare}");
        // firewall6's cost: half the throughput, 7 / 5 us, twice the CPU.
        let cost = bare
            .split_once("# firewall6's cost: cni6 / cni6 bare")
            .expect("a cost section")
            .1;
        assert!(
            cost.contains("\nnode->node (fabric)                            0.50     0.50     1.40     2.00     2.00\n"),
            "{cost}"
        );
        assert!(
            cost.contains("\npod->pod same node                             0.50     0.50     1.40     2.00     2.00\n"),
            "{cost}"
        );
        assert!(
            text.contains(
                "# cni6 bare: bridge6+ipam-prefix, no firewall6; its 8 namespaces checked"
            ),
            "{text}"
        );
        // 200 ms of CPU per GB split 1:1:2 over copy, tcp, netfilter.
        let profile = text.lines().last().unwrap();
        assert!(
            profile.contains("   50.0    50.0     0.0   100.0"),
            "{profile}"
        );
        assert!(
            text.contains("2100 MHz") && text.contains("kernel 6.18"),
            "{text}"
        );
    }
}
