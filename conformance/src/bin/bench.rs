//! The first benchmark of cni6: the full chain ADD and DEL of ours
//! (bridge6 → ipam-prefix) against the reference plugins (bridge →
//! host-local) configured with the same pod ranges (a /96 ULA and a /96 GUA
//! range per node, a default route via the ULA gateway), in the same run.
//!
//! Each chain gets its own node namespace of one topology (ours on node 1,
//! the reference on node 2), so the two never share a bridge or a gateway
//! address; both are invoked exactly as a runtime does (a fresh process,
//! CNI_* env, the network config on stdin), from inside the node. Samples
//! alternate between the chains (and which goes first) so drift in the
//! machine's load hits both alike. Measured at each background size (pods
//! already attached through the same plugins), plus `--parallel`
//! simultaneous ADDs and then DELs. Everything lives in namespaces the
//! benchmark creates and removes (also on Ctrl-C).
//!
//! `cargo run --release -p conformance --bin bench -- --pods 10,1000 --parallel 32 --rounds 20`

use clap::Parser;
use conformance::topology::{Node, Pod, Spec, Topology};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
#[command(about = "Time ADD/DEL of bridge6+ipam-prefix against the reference bridge+host-local")]
struct Args {
    /// Background sizes: pods already attached when sampling (ascending).
    #[arg(long, value_delimiter = ',', default_value = "10,1000")]
    pods: Vec<usize>,
    /// Simultaneous ADDs (then DELs) per parallel sample.
    #[arg(long, default_value_t = 32)]
    parallel: usize,
    /// Sequential ADD+DEL samples per chain and size.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Parallel samples per chain and size.
    #[arg(long, default_value_t = 3)]
    parallel_rounds: usize,
    /// Directory with bridge6 and ipam-prefix [default: $CNI6_BIN_DIR, else target/release].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Directory with the reference plugins.
    #[arg(long, default_value = "/usr/lib/cni")]
    reference_dir: PathBuf,
    /// Workers attaching the background pods (not timed).
    #[arg(long, default_value_t = 4)]
    fill_workers: usize,
}

/// Ports of one Linux bridge: port numbers are 10 bits and 0 is reserved
/// (BR_MAX_PORTS = 1024 in net/bridge/br_private.h), so a node bridge
/// holds at most 1023 pods — for bridge6 and the reference bridge alike.
const BRIDGE_MAX_PORTS: usize = 1023;

/// One plugin chain under test, bound to its node.
struct Chain {
    label: &'static str,
    node: u16,
    plugin: PathBuf,
    cni_path: PathBuf,
    config: Vec<u8>,
}

type BenchResult<T> = Result<T, String>;

/// Raised by SIGINT/SIGTERM; checked between samples so the topology is
/// removed by the normal path.
static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn check_interrupt() -> BenchResult<()> {
    if INTERRUPTED.get().is_some_and(|f| f.load(Ordering::SeqCst)) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

impl Chain {
    /// One invocation, as a runtime does it, timed from spawn to exit.
    fn invoke(&self, topo: &Topology, verb: &str, pod: &Pod, id: &str) -> BenchResult<Duration> {
        let mut cmd = topo.node_command(self.node, &self.plugin);
        cmd.env("CNI_COMMAND", verb)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", &pod.path)
            .env("CNI_IFNAME", "eth0")
            .env(
                "CNI_ARGS",
                format!("IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME={id}"),
            )
            .env("CNI_PATH", &self.cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{}: spawn {}: {e}", self.label, self.plugin.display()))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(&self.config)
            .map_err(|e| format!("{}: write config: {e}", self.label))?;
        let out = child
            .wait_with_output()
            .map_err(|e| format!("{}: wait: {e}", self.label))?;
        let took = start.elapsed();
        if !out.status.success() {
            return Err(format!(
                "{} {verb} {id} failed ({}): {}{}",
                self.label,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if verb == "ADD" {
            let v: Value = serde_json::from_slice(&out.stdout)
                .map_err(|e| format!("{} ADD {id}: result is not JSON: {e}", self.label))?;
            if v["ips"].as_array().map_or(0, Vec::len) != 2 {
                return Err(format!("{} ADD {id}: expected 2 ips in {v}", self.label));
            }
        }
        Ok(took)
    }
}

fn pod_ranges(node: &Node) -> (ipnet::Ipv6Net, ipnet::Ipv6Net) {
    (
        Node::pod_range(&node.ula_prefix, 1),
        Node::pod_range(&node.gua_prefix, 1),
    )
}

fn gateway(range: &ipnet::Ipv6Net) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::from(u128::from(range.network()) | 1)
}

fn chains(topo: &Topology, bin_dir: &Path, reference_dir: &Path) -> BenchResult<[Chain; 2]> {
    for (d, names) in [
        (bin_dir, ["bridge6", "ipam-prefix"]),
        (reference_dir, ["bridge", "host-local"]),
    ] {
        for n in names {
            if !d.join(n).is_file() {
                return Err(format!(
                    "{} not found (build with `cargo build --release`, or set --bin-dir)",
                    d.join(n).display()
                ));
            }
        }
    }
    let ours_node = topo.node(1);
    let ours = json!({
        "cniVersion": "1.0.0",
        "name": "benchours",
        "type": "bridge6",
        "bridge": topo.link_name("bo").map_err(|e| e.to_string())?,
        "mtu": 1420,
        "hairpinMode": true,
        "ipam": {
            "type": "ipam-prefix",
            "dataDir": ours_node.dir.join("ipam"),
            "subnetId": 1,
            "prefixes": [
                { "node": ours_node.ula_prefix.to_string() },
                { "fromInterface": "eth0", "scope": "global" }
            ],
            "routes": [ { "dst": "::/0" } ]
        }
    });
    // The same pod ranges for the reference: host-local gets exactly the
    // /96s that ipam-prefix derives on node 1, and bridge puts their
    // gateways on its bridge. Node 2 is a separate namespace and the
    // benchmark sends no traffic, so the duplicate prefixes never meet.
    let ref_node = topo.node(2);
    let (ula, gua) = pod_ranges(ours_node);
    let theirs = json!({
        "cniVersion": "1.0.0",
        "name": "benchref",
        "type": "bridge",
        "bridge": topo.link_name("br").map_err(|e| e.to_string())?,
        "isGateway": true,
        "mtu": 1420,
        "hairpinMode": true,
        "ipam": {
            "type": "host-local",
            "dataDir": ref_node.dir.join("host-local"),
            "ranges": [
                [ { "subnet": ula.to_string(), "rangeStart": nth(&ula, 0x10), "gateway": gateway(&ula) } ],
                [ { "subnet": gua.to_string(), "rangeStart": nth(&gua, 0x10), "gateway": gateway(&gua) } ]
            ],
            "routes": [ { "dst": "::/0", "gw": gateway(&ula) } ]
        }
    });
    Ok([
        Chain {
            label: "cni6",
            node: 1,
            plugin: bin_dir.join("bridge6"),
            cni_path: bin_dir.to_path_buf(),
            config: serde_json::to_vec(&ours).expect("json"),
        },
        Chain {
            label: "reference",
            node: 2,
            plugin: reference_dir.join("bridge"),
            cni_path: reference_dir.to_path_buf(),
            config: serde_json::to_vec(&theirs).expect("json"),
        },
    ])
}

fn nth(net: &ipnet::Ipv6Net, k: u128) -> String {
    std::net::Ipv6Addr::from(u128::from(net.network()) | k).to_string()
}

/// Samples of one (operation, chain) row.
#[derive(Default)]
struct Samples(Vec<Duration>);

impl Samples {
    fn pct(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)]
    }
    fn max(&self) -> Duration {
        self.0.iter().max().copied().unwrap_or_default()
    }
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1e3)
}

/// Attach pods through a chain with a few workers (not timed).
fn fill(topo: &Topology, chain: &Chain, pods: &[Pod], workers: usize) -> BenchResult<()> {
    let next = AtomicUsize::new(0);
    let err: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pods.len() || err.lock().unwrap().is_some() {
                    return;
                }
                if let Err(e) = check_interrupt()
                    .and_then(|_| chain.invoke(topo, "ADD", &pods[i], &pods[i].name))
                {
                    *err.lock().unwrap() = Some(e);
                    return;
                }
            });
        }
    });
    match err.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `n` simultaneous invocations; returns each one's latency and the wall time.
fn parallel(
    topo: &Topology,
    chain: &Chain,
    verb: &str,
    pods: &[Pod],
    ids: &[String],
) -> BenchResult<(Vec<Duration>, Duration)> {
    let barrier = Barrier::new(pods.len() + 1);
    let start = Mutex::new(None::<Instant>);
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .zip(ids)
            .map(|(pod, id)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    chain.invoke(topo, verb, pod, id)
                })
            })
            .collect();
        *start.lock().unwrap() = Some(Instant::now());
        barrier.wait();
        let r: Vec<BenchResult<Duration>> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        r
    });
    let wall = start.into_inner().unwrap().expect("set").elapsed();
    let lat = results.into_iter().collect::<BenchResult<Vec<_>>>()?;
    Ok((lat, wall))
}

struct Row {
    op: String,
    label: &'static str,
    samples: Samples,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench: needs root (it creates network namespaces)");
        return std::process::ExitCode::from(2);
    }
    let flag = INTERRUPTED.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(e) = signal_hook::flag::register(sig, Arc::clone(flag)) {
            eprintln!("bench: signal handler: {e}");
            return std::process::ExitCode::FAILURE;
        }
    }
    match bench(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn bench(args: &Args) -> BenchResult<()> {
    let bin_dir = args
        .bin_dir
        .clone()
        .unwrap_or_else(conformance::harness::bin_dir);
    let mut sizes = args.pods.clone();
    sizes.sort_unstable();
    sizes.dedup();
    if let Some(&big) = sizes.last().filter(|&&s| s + 1 > BRIDGE_MAX_PORTS) {
        return Err(format!(
            "--pods {big}: one node bridge holds at most {BRIDGE_MAX_PORTS} pods (the kernel's \
             BR_MAX_PORTS), and one more is needed for the sampled pod"
        ));
    }
    let mut notes = Vec::new();
    let load_before = read_trimmed("/proc/loadavg");
    let mut spec = Spec::new("c6b", 2);
    spec.state_root = PathBuf::from("/run/cni6-bench");
    let mut topo = Topology::build(spec).map_err(|e| e.to_string())?;
    let chains = chains(&topo, &bin_dir, &args.reference_dir)?;
    eprintln!(
        "bench: topology {} (ours on node 1, reference on node 2), binaries {}",
        topo.base(),
        bin_dir.display()
    );

    // Pods sampled sequentially and in parallel: made once, reused (a DEL
    // leaves the namespace empty again).
    let mut probe = Vec::new();
    let mut burst = Vec::new();
    for c in &chains {
        probe.push(
            topo.add_pods(c.node, 1)
                .map_err(|e| e.to_string())?
                .remove(0),
        );
        burst.push(
            topo.add_pods(c.node, args.parallel)
                .map_err(|e| e.to_string())?,
        );
    }
    let mut background = [0usize; 2];
    let mut rows: Vec<Row> = Vec::new();
    for &size in &sizes {
        for (i, c) in chains.iter().enumerate() {
            let more = size.saturating_sub(background[i]);
            if more > 0 {
                let t = Instant::now();
                let pods = topo.add_pods(c.node, more).map_err(|e| e.to_string())?;
                fill(&topo, c, &pods, args.fill_workers)?;
                background[i] = size;
                eprintln!(
                    "bench: {}: {size} background pods attached ({:.1}s)",
                    c.label,
                    t.elapsed().as_secs_f64()
                );
            }
        }
        let mut add = [Samples::default(), Samples::default()];
        let mut del = [Samples::default(), Samples::default()];
        for r in 0..args.rounds {
            let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
            for &i in &order {
                check_interrupt()?;
                let id = format!("s{size}r{r}");
                add[i]
                    .0
                    .push(chains[i].invoke(&topo, "ADD", &probe[i], &id)?);
            }
            for &i in &order {
                let id = format!("s{size}r{r}");
                del[i]
                    .0
                    .push(chains[i].invoke(&topo, "DEL", &probe[i], &id)?);
            }
        }
        let mut padd = [Samples::default(), Samples::default()];
        let mut pdel = [Samples::default(), Samples::default()];
        let mut wall_add = [Samples::default(), Samples::default()];
        let mut wall_del = [Samples::default(), Samples::default()];
        // The burst needs its own bridge ports on top of the background.
        let burst_fits = size + args.parallel < BRIDGE_MAX_PORTS;
        if !burst_fits {
            notes.push(format!(
                "# {} parallel ADDs at {size} attached skipped: {size} + {} pods exceed the {} \
                 ports a Linux bridge holds (BR_MAX_PORTS; ADD fails with EXFULL), for both chains",
                args.parallel, args.parallel, BRIDGE_MAX_PORTS
            ));
        }
        for r in 0..args.parallel_rounds * usize::from(burst_fits) {
            let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
            for &i in &order {
                check_interrupt()?;
                let ids: Vec<String> = (0..args.parallel)
                    .map(|k| format!("p{size}r{r}k{k}"))
                    .collect();
                let (lat, wall) = parallel(&topo, &chains[i], "ADD", &burst[i], &ids)?;
                padd[i].0.extend(lat);
                wall_add[i].0.push(wall);
                let (lat, wall) = parallel(&topo, &chains[i], "DEL", &burst[i], &ids)?;
                pdel[i].0.extend(lat);
                wall_del[i].0.push(wall);
            }
        }
        let p = args.parallel;
        for (op, set) in [
            (format!("ADD, {size} attached"), add),
            (format!("DEL, {size} attached"), del),
            (format!("ADD x{p} parallel, {size} att."), padd),
            (format!("  wall time of {p} ADDs"), wall_add),
            (format!("DEL x{p} parallel, {size} att."), pdel),
            (format!("  wall time of {p} DELs"), wall_del),
        ] {
            if set.iter().all(|s| s.0.is_empty()) {
                continue; // skipped (see the notes under the table)
            }
            for (i, samples) in set.into_iter().enumerate() {
                rows.push(Row {
                    op: op.clone(),
                    label: chains[i].label,
                    samples,
                });
            }
        }
    }

    println!(
        "# bridge6+ipam-prefix ({}) vs reference bridge+host-local ({}); kernel {}; \
         {} CPUs; load average before {} / after {}",
        bin_dir.display(),
        args.reference_dir.display(),
        read_trimmed("/proc/sys/kernel/osrelease"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before,
        read_trimmed("/proc/loadavg"),
    );
    println!(
        "# rounds {} sequential + {} x {} parallel per chain and size; times from spawn to exit",
        args.rounds, args.parallel_rounds, args.parallel
    );
    println!(
        "{:<32} {:<10} {:>5} {:>10} {:>10} {:>10}",
        "operation", "chain", "n", "p50", "p95", "max"
    );
    for pair in rows.chunks(2) {
        for r in pair {
            println!(
                "{:<32} {:<10} {:>5} {:>10} {:>10} {:>10}",
                r.op,
                r.label,
                r.samples.0.len(),
                ms(r.samples.pct(50.0)),
                ms(r.samples.pct(95.0)),
                ms(r.samples.max())
            );
        }
        let ratio = |f: &dyn Fn(&Samples) -> Duration| {
            let (a, b) = (f(&pair[0].samples), f(&pair[1].samples));
            if b.is_zero() {
                "-".to_string()
            } else {
                format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
            }
        };
        println!(
            "{:<32} {:<10} {:>5} {:>10} {:>10} {:>10}",
            "",
            "cni6/ref",
            "",
            ratio(&|s| s.pct(50.0)),
            ratio(&|s| s.pct(95.0)),
            ratio(&|s| s.max())
        );
    }
    for n in &notes {
        println!("{n}");
    }
    let t = Instant::now();
    let base = topo.base().to_string();
    topo.teardown().map_err(|e| e.to_string())?;
    eprintln!("bench: removed {base} ({:.1}s)", t.elapsed().as_secs_f64());
    Ok(())
}
