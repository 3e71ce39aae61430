//! The data-path benchmark (`bench --datapath`, issues 15 and 20): what a
//! pod feels every second, next to what the node itself gets on the same
//! machine, for cni6's chain and the reference chain.
//!
//! Each chain gets a topology of its own of the same shape (two nodes on
//! a fabric, see [`crate::topology`]): cni6's (bridge6 → ipam-prefix, then
//! firewall6 with its default `ingress: cluster-only`) and the reference's
//! (bridge → host-local with the same pod ranges, then firewall). Pods are
//! attached with `cni6 attach` inside their node, as a runtime does, so
//! the benchmark measures whatever data path the built plugins make. Two
//! topologies rather than two bridges on one node: the two firewalls
//! would otherwise both see every packet. Baselines (node→node, a direct
//! veth pair, node→outside) are measured in each topology, so every ratio
//! is between figures of one topology taken minutes apart, and the two
//! copies of a baseline show the run's noise.
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
//! counters in a VM. Rounds over every path alternate the chains (and
//! which goes first), so drift in the machine's load hits both alike;
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
}

impl ChainKind {
    pub const ALL: [ChainKind; 2] = [ChainKind::Cni6, ChainKind::Reference];

    pub fn label(self) -> &'static str {
        match self {
            ChainKind::Cni6 => "cni6",
            ChainKind::Reference => "reference",
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
    /// Load average (1, 5, 15 min) before and after: the machine may be shared.
    pub load: (String, String),
    pub rows: Vec<Measurement>,
    /// With [`Options::profile`].
    pub profiles: Vec<Profile>,
}

/// Build both topologies, measure every path in each, remove everything.
pub fn run(opts: &Options) -> Result<Report> {
    require_tools(opts)?;
    let machine = machine()?;
    crate::harness::install_cleanup_panic_hook();
    let load_before = load_average();
    let mut labs = Vec::new();
    let outcome = (|| -> Result<(Vec<Measurement>, Vec<Profile>)> {
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
        Ok((rows, profiles))
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
    let (rows, profiles) = outcome?;
    teardown?;
    Ok(Report {
        machine,
        size: opts.size,
        reference_dir: opts.reference_dir.clone(),
        bridge_nf,
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

impl Lab {
    fn build(chain: ChainKind, opts: &Options) -> Result<Lab> {
        let mut spec = Spec::new(
            match chain {
                ChainKind::Cni6 => "c6pc",
                ChainKind::Reference => "c6pr",
            },
            2,
        );
        spec.state_root = PathBuf::from("/run/cni6-bench");
        // The reference firewall sees bridged pod-to-pod traffic only
        // through br_netfilter; cni6 needs none of it.
        spec.bridge_nf_call_ip6tables = chain == ChainKind::Reference;
        let mut topo = Topology::build(spec)?;
        crate::harness::remove_on_panic(topo.base());
        topo.write_cluster_conflists()?;
        let bins = match chain {
            ChainKind::Cni6 => {
                add_firewall6(&topo)?;
                Binaries::from_dir(&opts.bin_dir)?
            }
            ChainKind::Reference => {
                write_reference_conflists(&topo)?;
                let mut cni_path = vec![opts.reference_dir.clone()];
                let debian = PathBuf::from("/usr/lib/cni");
                if debian != opts.reference_dir && debian.join("loopback").is_file() {
                    cni_path.push(debian);
                }
                Binaries {
                    cni6: opts.bin_dir.join("cni6"),
                    cni_path,
                }
            }
        };
        let a1 = topo.add_pod(1)?;
        let a2 = topo.add_pod(1)?;
        let b1 = topo.add_pod(2)?;
        let mut ula = Vec::new();
        for pod in [&a1, &a2, &b1] {
            check(opts)?;
            ula.push(topo.attach(&bins, pod)?.ula.addr());
        }
        let floor = topo.add_pods(1, 2)?;
        let floor_addr = wire_floor(&floor)?;
        let (_, outside_addr) = topo.add_outside_host()?;
        let pod = |p: &Pod| Endpoint::named(&p.name);
        let node = |i: u16| Endpoint::named(&topo.node(i).netns);
        let outside = Endpoint::named(topo.underlay_netns());
        let routes = vec![
            (
                PathKind::PodPodSameNode,
                Route {
                    client: pod(&a1),
                    server: pod(&a2),
                    addr: ula[1],
                },
            ),
            (
                PathKind::PodPodAcrossNodes,
                Route {
                    client: pod(&a1),
                    server: pod(&b1),
                    addr: ula[2],
                },
            ),
            (
                PathKind::NodeNode,
                Route {
                    client: node(1),
                    server: node(2),
                    addr: topo.node(2).underlay_addr,
                },
            ),
            (
                PathKind::VethPair,
                Route {
                    client: pod(&floor[0]),
                    server: pod(&floor[1]),
                    addr: floor_addr,
                },
            ),
            (
                PathKind::PodOutside,
                Route {
                    client: pod(&a1),
                    server: outside.clone(),
                    addr: outside_addr,
                },
            ),
            (
                PathKind::NodeOutside,
                Route {
                    client: node(1),
                    server: outside,
                    addr: outside_addr,
                },
            ),
        ];
        let bridge_nf = NetNs::open(&topo.node(1).netns_path())?.run(|| {
            std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-ip6tables")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "-".into())
        })?;
        eprintln!(
            "datapath: {} attached in topology {}",
            chain.label(),
            topo.base()
        );
        Ok(Lab {
            chain,
            topo,
            routes,
            bridge_nf,
        })
    }

    /// Every path carries a TCP exchange before anything is timed (the
    /// gateway's and the pods' neighbour entries resolved, addresses out of
    /// any DAD wait), so no figure can come from a broken setup.
    fn check_paths(&self) -> Result<()> {
        for (path, r) in &self.routes {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match topology::tcp_echo(
                    &r.server.path,
                    r.addr,
                    &r.client.path,
                    b"datapath probe",
                    Duration::from_secs(2),
                ) {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => {
                        return Err(Error::Check(format!(
                            "{} {}: no TCP exchange with [{}] within 10 s: {e}",
                            self.chain.label(),
                            path.label(),
                            r.addr
                        )))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        Ok(())
    }
}

/// cni6's chain: the topology's bridge6 + ipam-prefix conflist with
/// firewall6 appended as the design ships it (default ingress
/// cluster-only; the cluster ULA is inside).
fn add_firewall6(topo: &Topology) -> Result<()> {
    for node in topo.nodes() {
        let path = topo.conflist_path(node.index);
        let mut list = read_json(&path)?;
        list["plugins"]
            .as_array_mut()
            .ok_or_else(|| Error::Check(format!("{}: no plugins array", path.display())))?
            .push(json!({
                "type": "firewall6",
                "clusterPrefixes": [topo.spec().cluster.to_string()],
            }));
        write_json(&path, &list)?;
    }
    Ok(())
}

/// The reference chain with the pod ranges ipam-prefix derives on each
/// node (so the fabric's routes serve both), gateways `::1` on the bridge.
fn write_reference_conflists(topo: &Topology) -> Result<()> {
    let bridge = topo.link_name("br")?;
    for node in topo.nodes() {
        let ula = topology::Node::pod_range(&node.ula_prefix, 1);
        let gua = topology::Node::pod_range(&node.gua_prefix, 1);
        let at = |net: &ipnet::Ipv6Net, k: u128| Ipv6Addr::from(u128::from(net.network()) | k);
        let range = |net: &ipnet::Ipv6Net| {
            json!([{
                "subnet": net.to_string(),
                "rangeStart": at(net, 0x10).to_string(),
                "gateway": at(net, 1).to_string(),
            }])
        };
        let list = json!({
            "cniVersion": "1.0.0",
            "name": topology::CLUSTER_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "mtu": POD_MTU,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": node.dir.join("host-local"),
                        "ranges": [range(&ula), range(&gua)],
                        "routes": [ { "dst": "::/0", "gw": at(&ula, 1).to_string() } ]
                    }
                },
                { "type": "firewall", "backend": "iptables" }
            ]
        });
        write_json(&topo.conflist_path(node.index), &list)?;
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        context: format!("read {}", path.display()),
        source: e,
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Check(format!("{}: not JSON: {e}", path.display())))
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(v).expect("json")).map_err(|e| Error::Io {
        context: format!("write {}", path.display()),
        source: e,
    })
}

/// The floor: two namespaces joined by nothing but a veth pair (the pod
/// MTU, addresses without DAD). Returns the server side's address.
fn wire_floor(floor: &[Pod]) -> Result<Ipv6Addr> {
    let (a, b) = (&floor[0].name, &floor[1].name);
    let client: Ipv6Addr = format!("{FLOOR_NET}1").parse().expect("literal");
    let server: Ipv6Addr = format!("{FLOOR_NET}2").parse().expect("literal");
    let ip = |ns: &str, args: &str| {
        let mut c = Command::new("ip");
        c.args(["-n", ns]).args(args.split_whitespace());
        topology::run(c)
    };
    ip(
        a,
        &format!("link add fl0 mtu {POD_MTU} type veth peer name fl1 mtu {POD_MTU} netns {b}"),
    )?;
    for (ns, dev, addr) in [(a, "fl0", client), (b, "fl1", server)] {
        ip(ns, "link set lo up")?;
        ip(ns, &format!("addr add {addr}/64 dev {dev} nodad"))?;
        ip(ns, &format!("link set {dev} up"))?;
    }
    Ok(server)
}

/// Rounds over every path: one stream, then eight, then a share of the
/// ping-pong; the two chains alternate, and which goes first alternates
/// by path and by round, so a burst of load elsewhere on the machine
/// lands on different cells each round. Throughput is the median over
/// the rounds; CPU per GB pools every round's CPU and bytes; latency
/// pools every round's samples.
fn measure(labs: &[Lab], opts: &Options) -> Result<Vec<Measurement>> {
    let rounds = opts.size.rounds();
    let cells = PathKind::ALL.len() * labs.len();
    let mut single: Vec<Vec<Run>> = vec![Vec::new(); cells];
    let mut multi: Vec<Vec<Run>> = vec![Vec::new(); cells];
    let mut rtts: Vec<Vec<Duration>> = vec![Vec::new(); cells];
    for round in 0..rounds {
        for (k, path) in PathKind::ALL.into_iter().enumerate() {
            let mut order: Vec<usize> = (0..labs.len()).collect();
            if (k + round) % 2 == 1 {
                order.reverse();
            }
            for &i in &order {
                check(opts)?;
                single[k * labs.len() + i].push(iperf(
                    &labs[i],
                    path,
                    1,
                    &opts.size.iperf_bound(),
                )?);
            }
            for &i in order.iter().rev() {
                check(opts)?;
                multi[k * labs.len() + i].push(iperf(&labs[i], path, 8, &opts.size.iperf_bound())?);
            }
            for &i in &order {
                check(opts)?;
                let lab = &labs[i];
                let count = opts.size.round_trips() / rounds;
                let samples = ping_pong(lab.route(path), count, opts.size).map_err(|e| {
                    Error::Check(format!(
                        "{} {}: ping-pong: {e}",
                        lab.chain.label(),
                        path.label()
                    ))
                })?;
                rtts[k * labs.len() + i].extend(samples);
            }
        }
        eprintln!("datapath: round {} of {rounds} done", round + 1);
    }
    let mut rows = Vec::new();
    for (k, path) in PathKind::ALL.into_iter().enumerate() {
        for (i, lab) in labs.iter().enumerate() {
            let c = k * labs.len() + i;
            let row = Measurement {
                path,
                chain: lab.chain,
                single: Throughput::of(&single[c]),
                multi: Throughput::of(&multi[c]),
                rr: Latency::of(&mut rtts[c])?,
            };
            eprintln!(
                "datapath: {:<22} {:<9} {:>6.2} / {:>6.2} Gbit/s (runs: {}), RR p50 {:.1} us",
                path.label(),
                lab.chain.label(),
                row.single.gbit(),
                row.multi.gbit(),
                single[c]
                    .iter()
                    .map(|r| format!("{:.1}", r.bits_per_second / 1e9))
                    .collect::<Vec<_>>()
                    .join(" "),
                row.rr.p50.as_secs_f64() * 1e6
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

/// A child that is killed (and reaped) unless it was reaped already.
struct Reaped {
    child: Child,
    done: bool,
}

impl Reaped {
    /// Wait until it exits, at most until `deadline` (then kill it);
    /// returns its exit status and its CPU (wait4 rusage).
    fn wait(&mut self, what: &str, deadline: Instant) -> Result<(i32, Duration)> {
        let pid = self.child.id() as libc::pid_t;
        loop {
            let mut status = 0;
            // SAFETY: an all-zero rusage is valid; wait4 fills it.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: reaps our own child by pid, without blocking.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
            if r == pid {
                self.done = true;
                let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    -1
                };
                return Ok((code, tv(ru.ru_utime) + tv(ru.ru_stime)));
            }
            if r < 0 {
                return Err(Error::Io {
                    context: format!("wait4 {what}"),
                    source: std::io::Error::last_os_error(),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::Check(format!("{what} did not finish in time")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_in(ns: &Endpoint, args: &[String], out: &Path) -> Result<Reaped> {
    let file = |p: &Path| {
        File::create(p).map_err(|e| Error::Io {
            context: format!("create {}", p.display()),
            source: e,
        })
    };
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.netns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(file(out)?)
        .stderr(file(&out.with_extension("err"))?)
        .spawn()
        .map_err(|e| Error::Io {
            context: format!("start {} in {}", args.join(" "), ns.netns),
            source: e,
        })?;
    Ok(Reaped { child, done: false })
}

/// Whether the process `pid` is iperf3 (exec done) and has a listening
/// TCP socket on `port` in its namespace (/proc/PID/net follows it).
fn listening(pid: u32, port: u16) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "iperf3" {
        return false;
    }
    let want = format!(":{port:04X}");
    ["tcp6", "tcp"].iter().any(|t| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{t}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
            })
    })
}

/// Time (clock ticks) of every ksoftirqd thread so far.
fn ksoftirqd_ticks() -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        if !head.contains("(ksoftirqd/") {
            continue;
        }
        // After "pid (comm) ": state is field 3, utime 14, stime 15.
        let f: Vec<&str> = tail.split_whitespace().collect();
        total += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    total
}

fn clock_tick() -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(1_000_000_000 / hz)
}

/// One iperf3 run over `path` in `lab`: a one-off server in the server's
/// namespace, the client in the client's, both reaped for their CPU.
fn iperf(lab: &Lab, path: PathKind, streams: u32, bound: &[String]) -> Result<Run> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let r = lab.route(path);
    let what = format!("{} {} -P {streams}", lab.chain.label(), path.label());
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = lab.topo.dir();
    let port = IPERF_PORT.to_string();
    let server_args: Vec<String> = ["iperf3", "-s", "-1", "-p", &port]
        .map(String::from)
        .to_vec();
    let mut server = spawn_in(
        &r.server,
        &server_args,
        &dir.join(format!("iperf-s{n}.txt")),
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening(server.child.id(), IPERF_PORT) {
        if let Ok(Some(st)) = server.child.try_wait() {
            server.done = true;
            return Err(Error::Check(format!("{what}: iperf3 server exited ({st})")));
        }
        if Instant::now() > deadline {
            return Err(Error::Check(format!(
                "{what}: iperf3 server not listening after 10 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut client_args: Vec<String> = ["iperf3", "-c", &r.addr.to_string(), "-p", &port]
        .map(String::from)
        .to_vec();
    client_args.extend(
        [
            "-J",
            "-i",
            "0",
            "--connect-timeout",
            "5000",
            "-P",
            &streams.to_string(),
        ]
        .map(String::from),
    );
    client_args.extend(bound.iter().cloned());
    let out = dir.join(format!("iperf-c{n}.json"));
    let soft0 = ksoftirqd_ticks();
    let mut client = spawn_in(&r.client, &client_args, &out)?;
    let limit = Instant::now() + Duration::from_secs(60);
    let (code, client_cpu) = client.wait(&format!("{what}: iperf3 client"), limit)?;
    let (_, server_cpu) = server.wait(
        &format!("{what}: iperf3 server"),
        Instant::now() + Duration::from_secs(10),
    )?;
    let soft = clock_tick() * (ksoftirqd_ticks().saturating_sub(soft0)) as u32;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let doc: Value = serde_json::from_str(&text).map_err(|e| {
        Error::Check(format!(
            "{what}: iperf3 printed no JSON ({e}), exit {code}: {text}{}",
            std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
        ))
    })?;
    if let Some(err) = doc["error"].as_str() {
        return Err(Error::Check(format!("{what}: iperf3: {err}")));
    }
    let recv = &doc["end"]["sum_received"];
    let bits_per_second = recv["bits_per_second"].as_f64().unwrap_or(0.0);
    let bytes = recv["bytes"].as_f64().unwrap_or(0.0) as u64;
    if code != 0 || bytes == 0 || bits_per_second <= 0.0 {
        return Err(Error::Check(format!(
            "{what}: iperf3 exit {code}, {bytes} bytes received: {}",
            recv
        )));
    }
    Ok(Run {
        bits_per_second,
        bytes,
        cpu: client_cpu + server_cpu + soft,
    })
}

/// 1-byte TCP ping-pong (TCP_NODELAY) between a client socket made in the
/// client's namespace and a server socket made in the server's, each
/// driven by a thread of this process. A warm-up is not sampled; the
/// series stops at its count or its time limit, whichever comes first.
fn ping_pong(r: &Route, count: usize, size: Size) -> Result<Vec<Duration>> {
    let server_ns = NetNs::open(&r.server.path)?;
    let client_ns = NetNs::open(&r.client.path)?;
    let io = |context: String| move |e: std::io::Error| Error::Io { context, source: e };
    let listener = server_ns
        .run(|| TcpListener::bind(SocketAddrV6::new(r.addr, 0, 0, 0)))?
        .map_err(io(format!("listen on [{}]", r.addr)))?;
    let port = listener
        .local_addr()
        .map_err(io("listener address".into()))?
        .port();
    listener
        .set_nonblocking(true)
        .map_err(io("listener".into()))?;
    let limit = size.rr_limit();
    let warmup = (count / 10).min(200);
    std::thread::scope(|s| {
        let server = s.spawn(move || -> Result<()> {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut conn = loop {
                match listener.accept() {
                    Ok((c, _)) => break c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            return Err(Error::Check("no ping-pong client within 5 s".into()));
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(io("accept".into())(e)),
                }
            };
            conn.set_nonblocking(false)
                .and_then(|_| conn.set_nodelay(true))
                .and_then(|_| conn.set_read_timeout(Some(limit + Duration::from_secs(5))))
                .map_err(io("server socket".into()))?;
            let mut b = [0u8; 1];
            loop {
                match conn.read(&mut b) {
                    Ok(0) => return Ok(()),
                    Ok(_) => conn.write_all(&b).map_err(io("server write".into()))?,
                    Err(e) => return Err(io("server read".into())(e)),
                }
            }
        });
        let client = (|| -> Result<Vec<Duration>> {
            let dst = SocketAddr::V6(SocketAddrV6::new(r.addr, port, 0, 0));
            let mut c = client_ns
                .run(|| TcpStream::connect_timeout(&dst, Duration::from_secs(5)))?
                .map_err(io(format!("connect to {dst}")))?;
            c.set_nodelay(true)
                .and_then(|_| c.set_read_timeout(Some(Duration::from_secs(2))))
                .map_err(io("client socket".into()))?;
            let mut rtts = Vec::with_capacity(count);
            let start = Instant::now();
            let mut b = [0u8; 1];
            for i in 0..warmup + count {
                let t = Instant::now();
                c.write_all(&[i as u8]).map_err(io("client write".into()))?;
                c.read_exact(&mut b).map_err(io("client read".into()))?;
                let rtt = t.elapsed();
                if b[0] != i as u8 {
                    return Err(Error::Check(format!(
                        "ping-pong: sent byte {}, got {}",
                        i as u8, b[0]
                    )));
                }
                if i >= warmup {
                    rtts.push(rtt);
                }
                if start.elapsed() > limit {
                    break;
                }
            }
            Ok(rtts)
        })();
        let served = server
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let rtts = client?;
        served?;
        Ok(rtts)
    })
}

/// A lower-is-better or higher-is-better target on a ratio.
#[derive(Debug, Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn met(self, v: f64) -> bool {
        match self {
            Target::AtLeast(t) => v >= t,
            Target::AtMost(t) => v <= t,
        }
    }
    fn label(self) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {t:.2}"),
            Target::AtMost(t) => format!("<= {t:.2}"),
        }
    }
}

impl Report {
    fn get(&self, path: PathKind, chain: ChainKind) -> Option<&Measurement> {
        self.rows
            .iter()
            .find(|m| m.path == path && m.chain == chain)
    }

    /// The table `bench --datapath` prints.
    pub fn render(&self) -> String {
        let m = &self.machine;
        let mut o = String::new();
        let cycles = m
            .cpu_mhz
            .map_or("no clock stated".to_string(), |mhz| format!("{mhz:.0} MHz"));
        let _ = writeln!(
            o,
            "# data path: cni6 (bridge6+ipam-prefix+firewall6) vs reference (bridge+host-local+firewall, {})",
            self.reference_dir.display()
        );
        let _ = writeln!(
            o,
            "# machine: {} cores, kernel {}, {cycles}, iperf3 {}; {}; TCP over IPv6, pod MTU {POD_MTU}",
            m.cores,
            m.kernel,
            m.iperf3,
            self.size.describe()
        );
        let nf: Vec<String> = self
            .bridge_nf
            .iter()
            .map(|(c, v)| format!("{} {v}", c.label()))
            .collect();
        let _ = writeln!(
            o,
            "# bridge-nf-call-ip6tables in the nodes: {}; CPU = iperf3 client + server + ksoftirqd (rusage), Gcyc = CPU s x clock",
            nf.join(", ")
        );
        let _ = writeln!(
            o,
            "# load average before {} / after {} (throughput falls with load from elsewhere; CPU per GB much less)",
            self.load.0, self.load.1
        );
        let _ = writeln!(
            o,
            "{:<22} {:<9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
            "path",
            "chain",
            "1x Gb/s",
            "8x Gb/s",
            "RR p50us",
            "RR p99us",
            "CPUs/GB1",
            "CPUs/GB8",
            "Gcyc/GB1"
        );
        for path in PathKind::ALL {
            for chain in ChainKind::ALL {
                let Some(r) = self.get(path, chain) else {
                    continue;
                };
                let gcyc = m.cpu_mhz.map_or("-".to_string(), |mhz| {
                    format!("{:.2}", r.single.cpu_per_gb() * mhz / 1e3)
                });
                let _ = writeln!(
                    o,
                    "{:<22} {:<9} {:>9.2} {:>9.2} {:>9.1} {:>9.1} {:>8.3} {:>8.3} {:>8}",
                    path.label(),
                    chain.label(),
                    r.single.gbit(),
                    r.multi.gbit(),
                    r.rr.p50.as_secs_f64() * 1e6,
                    r.rr.p99.as_secs_f64() * 1e6,
                    r.single.cpu_per_gb(),
                    r.multi.cpu_per_gb(),
                    gcyc
                );
            }
        }
        self.render_ratios(&mut o);
        if !self.profiles.is_empty() {
            render_profiles(&self.profiles, &mut o);
        }
        o
    }

    fn render_ratios(&self, o: &mut String) {
        let header = |o: &mut String, title: &str, cols: [&str; 4]| {
            let _ = writeln!(
                o,
                "{:<42} {:>8} {:>8} {:>8} {:>8} {:>8}  cni6",
                title, cols[0], cols[1], cols[2], cols[3], "target"
            );
        };
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        header(
            o,
            "# throughput ratios (issue 20 targets)",
            ["cni6 1x", "cni6 8x", "ref 1x", "ref 8x"],
        );
        let tput = [
            (
                PathKind::PodPodAcrossNodes,
                PathKind::NodeNode,
                Target::AtLeast(0.85),
            ),
            (
                PathKind::PodPodSameNode,
                PathKind::VethPair,
                Target::AtLeast(0.90),
            ),
            (
                PathKind::PodOutside,
                PathKind::NodeOutside,
                Target::AtLeast(0.85),
            ),
        ];
        for (pod, base, target) in tput {
            let mut v = Vec::new();
            for chain in ChainKind::ALL {
                let (Some(a), Some(b)) = (self.get(pod, chain), self.get(base, chain)) else {
                    continue;
                };
                v.push(ratio(a.single.bits_per_second, b.single.bits_per_second));
                v.push(ratio(a.multi.bits_per_second, b.multi.bits_per_second));
            }
            self.ratio_row(
                o,
                &format!("{} / {}", pod.label(), base.label()),
                &v,
                target,
            );
        }
        header(
            o,
            "# CPU per GB ratios (lower is better)",
            ["cni6 1x", "cni6 8x", "ref 1x", "ref 8x"],
        );
        for (pod, base, _) in tput {
            let mut v = Vec::new();
            for chain in ChainKind::ALL {
                let (Some(a), Some(b)) = (self.get(pod, chain), self.get(base, chain)) else {
                    continue;
                };
                v.push(ratio(a.single.cpu_per_gb(), b.single.cpu_per_gb()));
                v.push(ratio(a.multi.cpu_per_gb(), b.multi.cpu_per_gb()));
            }
            let cells: Vec<String> = v.iter().map(|x| format!("{x:>8.2}")).collect();
            let label = format!("{} / {}", pod.label(), base.label());
            let _ = writeln!(o, "{label:<42} {} {:>8}  -", cells.join(" "), "-");
        }
        header(
            o,
            "# latency ratios (RR, lower is better)",
            ["cni6 p50", "cni6 p99", "ref p50", "ref p99"],
        );
        for (pod, base, target) in [
            (
                PathKind::PodPodAcrossNodes,
                PathKind::NodeNode,
                Some(Target::AtMost(1.2)),
            ),
            (PathKind::PodPodSameNode, PathKind::VethPair, None),
        ] {
            let mut v = Vec::new();
            for chain in ChainKind::ALL {
                let (Some(a), Some(b)) = (self.get(pod, chain), self.get(base, chain)) else {
                    continue;
                };
                v.push(ratio(a.rr.p50.as_secs_f64(), b.rr.p50.as_secs_f64()));
                v.push(ratio(a.rr.p99.as_secs_f64(), b.rr.p99.as_secs_f64()));
            }
            let label = format!("{} / {}", pod.label(), base.label());
            match target {
                Some(t) => self.ratio_row(o, &label, &v, t),
                None => {
                    let cells: Vec<String> = v.iter().map(|x| format!("{x:>8.2}")).collect();
                    let _ = writeln!(o, "{label:<42} {} {:>8}  -", cells.join(" "), "-");
                }
            }
        }
        let _ = writeln!(
            o,
            "{:<42} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "# cni6 / reference on the same path",
            "1x Gb/s",
            "8x Gb/s",
            "RR p50",
            "CPU/GB1",
            "CPU/GB8"
        );
        for path in PathKind::ALL {
            let (Some(a), Some(b)) = (
                self.get(path, ChainKind::Cni6),
                self.get(path, ChainKind::Reference),
            ) else {
                continue;
            };
            let _ = writeln!(
                o,
                "{:<42} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
                path.label(),
                ratio(a.single.bits_per_second, b.single.bits_per_second),
                ratio(a.multi.bits_per_second, b.multi.bits_per_second),
                ratio(a.rr.p50.as_secs_f64(), b.rr.p50.as_secs_f64()),
                ratio(a.single.cpu_per_gb(), b.single.cpu_per_gb()),
                ratio(a.multi.cpu_per_gb(), b.multi.cpu_per_gb()),
            );
        }
    }

    /// A ratio row: cni6's two figures, the reference's two, the target,
    /// and whether cni6 meets it in both.
    fn ratio_row(&self, o: &mut String, label: &str, v: &[f64], target: Target) {
        let cells: Vec<String> = v.iter().map(|x| format!("{x:>8.2}")).collect();
        let ours = &v[..v.len().min(2)];
        let verdict = if ours.iter().all(|x| target.met(*x)) {
            "met"
        } else {
            "missed"
        };
        let _ = writeln!(
            o,
            "{label:<42} {} {:>8}  {verdict}",
            cells.join(" "),
            target.label()
        );
    }
}

/// Where the CPU of one path goes: perf's cpu-clock samples of the
/// iperf3 processes and ksoftirqd during a one-stream run, each sample's
/// function put in one area of the stack.
#[derive(Debug, Clone)]
pub struct Profile {
    pub path: PathKind,
    pub chain: ChainKind,
    /// Samples of iperf3 and ksoftirqd.
    pub samples: u64,
    /// Samples per area, in [`Area::ALL`] order.
    pub areas: Vec<u64>,
    /// CPU seconds per GB of the profiled run.
    pub cpu_per_gb: f64,
}

/// A part of the stack a sampled function belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    Copy,
    Tcp,
    Ipv6,
    Netfilter,
    BrNetfilter,
    Bridge,
    Veth,
    Device,
    Memory,
    Kernel,
    User,
}

impl Area {
    pub const ALL: [Area; 11] = [
        Area::Copy,
        Area::Tcp,
        Area::Ipv6,
        Area::Netfilter,
        Area::BrNetfilter,
        Area::Bridge,
        Area::Veth,
        Area::Device,
        Area::Memory,
        Area::Kernel,
        Area::User,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Area::Copy => "copy",
            Area::Tcp => "tcp",
            Area::Ipv6 => "ipv6",
            Area::Netfilter => "netfilt",
            Area::BrNetfilter => "br_nf",
            Area::Bridge => "bridge",
            Area::Veth => "veth",
            Area::Device => "dev/gro",
            Area::Memory => "skb/mem",
            Area::Kernel => "other-k",
            Area::User => "user",
        }
    }

    /// The area of a kernel function (`kernel` false: a user-space one).
    pub fn of(symbol: &str, kernel: bool) -> Area {
        if !kernel {
            return Area::User;
        }
        let s = symbol.trim_start_matches('_');
        let starts = |prefixes: &[&str]| prefixes.iter().any(|p| s.starts_with(p));
        if starts(&["br_nf", "br_netfilter", "brnf"]) {
            Area::BrNetfilter
        } else if starts(&[
            "nf_", "nft_", "ip6t_", "ipt_", "xt_", "ip6table", "iptable", "nf6_",
        ]) || s.contains("conntrack")
            || s.contains("physdev")
        {
            Area::Netfilter
        } else if starts(&["br_", "nbp_", "fdb_"]) {
            Area::Bridge
        } else if starts(&["veth"]) {
            Area::Veth
        } else if starts(&["copy_", "rep_mov", "memcpy", "csum_partial_copy"])
            || s.contains("copy_to_iter")
            || s.contains("copy_from_iter")
            || s.contains("copy_datagram")
        {
            Area::Copy
        } else if starts(&[
            "tcp",
            "inet_",
            "inet6_",
            "sk_",
            "sock_",
            "release_sock",
            "lock_sock",
            "bbr",
        ]) {
            Area::Tcp
        } else if starts(&[
            "ip6", "ipv6", "fib6", "rt6", "ndisc", "icmp6", "dst_", "raw6",
        ]) {
            Area::Ipv6
        } else if starts(&[
            "netif_",
            "napi_",
            "net_rx",
            "dev_",
            "process_backlog",
            "skb_gro",
            "gro_",
            "skb_gso",
            "gso_",
            "validate_xmit",
            "sch_direct",
            "qdisc",
        ]) || s.contains("_gro_")
        {
            Area::Device
        } else if starts(&[
            "skb_",
            "kfree",
            "kmalloc",
            "kmem_",
            "alloc_skb",
            "consume_skb",
            "page_",
            "free_",
            "build_skb",
            "pskb_",
            "slab",
        ]) {
            Area::Memory
        } else {
            Area::Kernel
        }
    }
}

/// Which commands' samples belong to the measured path.
fn ours(comm: &str) -> bool {
    comm == "iperf3" || comm.starts_with("ksoftirqd/")
}

/// Profile the pod paths and their baselines in each chain's topology.
fn profile(labs: &[Lab], opts: &Options) -> Result<Vec<Profile>> {
    let mut out = Vec::new();
    for path in [
        PathKind::PodPodSameNode,
        PathKind::VethPair,
        PathKind::PodPodAcrossNodes,
        PathKind::NodeNode,
    ] {
        for lab in labs {
            check(opts)?;
            out.push(profile_one(lab, path, opts.size)?);
        }
    }
    Ok(out)
}

fn profile_one(lab: &Lab, path: PathKind, size: Size) -> Result<Profile> {
    let what = format!("{} {}: perf", lab.chain.label(), path.label());
    let data = lab
        .topo
        .dir()
        .join(format!("perf-{}-{:?}.data", lab.chain.label(), path));
    let mut perf = Reaped {
        child: Command::new("perf")
            .args(["record", "-q", "-a", "-e", "cpu-clock", "-F", "997", "-o"])
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Io {
                context: "start perf record".into(),
                source: e,
            })?,
        done: false,
    };
    // perf opens its events per CPU before sampling; give it that moment.
    std::thread::sleep(Duration::from_millis(300));
    let run = iperf(lab, path, 1, &size.profile_bound());
    // SAFETY: signalling our own child by pid; SIGINT makes perf write its file.
    unsafe { libc::kill(perf.child.id() as libc::pid_t, libc::SIGINT) };
    perf.wait(&what, Instant::now() + Duration::from_secs(30))?;
    let run = run?;
    let report = topology::run({
        let mut c = Command::new("perf");
        c.args(["report", "-i"]).arg(&data).args([
            "--stdio",
            "-n",
            "--no-children",
            "--sort",
            "comm,dso,sym",
            "-g",
            "none",
        ]);
        c
    })?;
    let _ = std::fs::remove_file(&data);
    let mut areas = vec![0u64; Area::ALL.len()];
    let mut samples = 0;
    for line in report.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "12.34%  567  iperf3  [kernel.kallsyms]  [k] tcp_sendmsg"
        if f.len() < 6 || !f[0].ends_with('%') || !ours(f[2]) {
            continue;
        }
        let Ok(n) = f[1].parse::<u64>() else {
            continue;
        };
        let area = Area::of(f[5], f[4] == "[k]");
        areas[Area::ALL.iter().position(|a| *a == area).expect("listed")] += n;
        samples += n;
    }
    if samples == 0 {
        return Err(Error::Check(format!(
            "{what}: no sample of iperf3 or ksoftirqd in the profile"
        )));
    }
    Ok(Profile {
        path,
        chain: lab.chain,
        samples,
        areas,
        cpu_per_gb: Throughput::of(&[run]).cpu_per_gb(),
    })
}

fn render_profiles(profiles: &[Profile], o: &mut String) {
    let _ = writeln!(
        o,
        "# profile, 1 stream: CPU ms per GB by area of the stack (perf cpu-clock samples of iperf3 and ksoftirqd x the run's CPU s/GB)"
    );
    let mut head = format!("{:<22} {:<9} {:>7}", "path", "chain", "samples");
    for a in Area::ALL {
        let _ = write!(head, " {:>7}", a.label());
    }
    let _ = writeln!(o, "{head}");
    for p in profiles {
        let mut line = format!(
            "{:<22} {:<9} {:>7}",
            p.path.label(),
            p.chain.label(),
            p.samples
        );
        for n in &p.areas {
            let ms = *n as f64 / p.samples as f64 * p.cpu_per_gb * 1e3;
            let _ = write!(line, " {ms:>7.1}");
        }
        let _ = writeln!(o, "{line}");
    }
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
            load: ("1 1 1".into(), "1 1 1".into()),
            rows: PathKind::ALL
                .into_iter()
                .flat_map(|path| {
                    ChainKind::ALL.map(|chain| Measurement {
                        path,
                        chain,
                        single: t,
                        multi: t,
                        rr,
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
        // Equal figures everywhere: every ratio is 1.00 and every
        // throughput target is met, the latency one (<= 1.20) too.
        assert!(text.contains("pod->pod across nodes / node->node (fabric)     1.00     1.00     1.00     1.00  >= 0.85  met"), "{text}");
        assert!(!text.contains("missed"), "{text}");
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
