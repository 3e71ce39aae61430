//! The benchmark of cni6 (issue 7): the full chain of ours (bridge6 →
//! ipam-prefix, then firewall6) against the reference chain (bridge →
//! host-local, then firewall) configured with the same pod ranges (a /96
//! ULA and a /96 GUA range per node, a default route via the ULA gateway),
//! in the same run.
//!
//! Each chain gets its own node namespace of one topology (ours on node 1,
//! the reference on node 2), so the two never share a bridge, a gateway
//! address or an ip6tables table. Both are invoked exactly as libcni runs a
//! conflist: a fresh process per plugin, CNI_* env, the network config on
//! stdin, ADD in order with each result as the next plugin's prevResult,
//! DEL in reverse order with the ADD result as prevResult. The benchmark's
//! own child enters the node namespace with setns() before exec (no
//! `ip netns exec`, which alone costs ~3 ms), so the yardstick measures
//! plugins, not ip(8). Samples alternate between the chains (and which
//! goes first) so drift in the machine's load hits both alike. Measured at
//! each background size (pods already attached through the same chain),
//! plus `--parallel` simultaneous ADDs and then DELs (errors and duplicate
//! addresses counted). Peak RSS comes from wait4()'s rusage of every plugin
//! process (ru_maxrss: the largest of the process and the children it
//! waited for, so a bridge step includes its IPAM and a firewall step its
//! ip6tables runs); the IPAM plugins are also called alone, as their
//! delegating plugin calls them, for their own RSS. Everything lives in
//! namespaces the benchmark creates and removes (also on Ctrl-C).
//!
//! `cargo run --release -p conformance --bin bench -- --pods 10,1000 --parallel 64 --rounds 20`
//! `cargo run --release -p conformance --bin bench -- --quick` (CI size)

use clap::Parser;
use conformance::topology::{Node, Pod, Spec, Topology};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where Debian's containernetworking-plugins puts the reference plugins.
/// Debian's reference plugins (1.1.1), the bench's second column.
const DEBIAN_REFERENCE_DIR: &str = "/usr/lib/cni";

#[derive(Debug, Parser)]
#[command(
    about = "Time ADD/DEL of bridge6+ipam-prefix+firewall6 against the reference bridge+host-local+firewall"
)]
struct Args {
    /// Background sizes: pods already attached when sampling (ascending).
    #[arg(long, value_delimiter = ',', default_value = "10,1000")]
    pods: Vec<usize>,
    /// Simultaneous ADDs (then DELs) per parallel sample.
    #[arg(long, default_value_t = 64)]
    parallel: usize,
    /// Sequential ADD+DEL samples per chain and size.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Parallel samples per chain and size.
    #[arg(long, default_value_t = 2)]
    parallel_rounds: usize,
    /// Directory with bridge6, ipam-prefix and firewall6 [default: $CNI6_BIN_DIR, else target/release].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Directory with the reference plugins [default: the upstream v1.9
    /// build of scripts/peers.sh, $CNI6_PEERS_DIR/plugins]; /usr/lib/cni
    /// gives Debian's 1.1.1 for a second column.
    #[arg(long)]
    reference_dir: Option<PathBuf>,
    /// Workers attaching the background pods (not timed).
    #[arg(long, default_value_t = 4)]
    fill_workers: usize,
    /// CI size: --pods 2,4 --rounds 3 --parallel 4 --parallel-rounds 1
    /// (keeps the code from rotting; its timings mean little).
    #[arg(long)]
    quick: bool,
    /// Measure the data path instead: throughput, latency and CPU per GB of
    /// every pod and node path, both chains (docs/datapath.md).
    #[arg(long)]
    datapath: bool,
    /// Size of the --datapath run (tiny: a few seconds, for CI).
    #[arg(long, value_enum, default_value = "normal")]
    size: conformance::datapath::Size,
    /// With --datapath: also profile the pod paths with perf.
    #[arg(long)]
    profile: bool,
}

impl Args {
    /// Set in `main` (the flag, else the upstream build).
    fn reference_dir(&self) -> &Path {
        self.reference_dir
            .as_deref()
            .expect("main fills in reference_dir")
    }
}

/// "<dir>, <about line>": the reference bridge prints its version (e.g.
/// "CNI bridge plugin v1.9.1") on stderr when run without CNI_COMMAND.
fn reference_version(dir: &Path) -> String {
    let about = std::process::Command::new(dir.join("bridge"))
        .env_clear()
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    format!("{}, {}", shown_dir(dir), about.trim())
}

/// Ports of one Linux bridge: port numbers are 10 bits and 0 is reserved
/// (BR_MAX_PORTS = 1024 in net/bridge/br_private.h), so a node bridge
/// holds at most 1023 pods — for bridge6 and the reference bridge alike.
const BRIDGE_MAX_PORTS: usize = 1023;

/// One plugin of a chain: its binary and its config without prevResult.
struct Step {
    /// Row label ("bridge", "firewall").
    role: &'static str,
    plugin: PathBuf,
    config: Value,
}

/// One plugin chain under test, bound to its node.
struct Chain {
    label: &'static str,
    node: u16,
    cni_path: PathBuf,
    steps: Vec<Step>,
    /// The IPAM plugin, called alone (for its own RSS and time).
    ipam: PathBuf,
    /// The node's network namespace, entered by each child before exec.
    ns: std::fs::File,
}

/// Spawn `cmd` with the calling thread inside `ns` for the moment of the
/// spawn (the child inherits the thread's namespace), then return the
/// thread to where it was. So std can spawn with posix_spawn (clone with
/// CLONE_VM|CLONE_VFORK, as Go runtimes like containerd do) instead of
/// fork + a pre_exec hook: a fork of this multi-threaded benchmark, or
/// `ip netns exec` (which also remounts /sys), would add milliseconds to
/// every plugin call and measure the harness, not the plugins. None of the
/// six plugins reads /sys.
fn spawn_in(
    ns: &std::fs::File,
    cmd: &mut std::process::Command,
) -> std::io::Result<std::process::Child> {
    use std::os::fd::AsRawFd;
    let here = std::fs::File::open("/proc/thread-self/ns/net")?;
    // SAFETY: setns on this thread with namespace fds we hold open.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let child = cmd.spawn();
    // SAFETY: as above; back to the namespace the thread came from.
    if unsafe { libc::setns(here.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        panic!(
            "bench: cannot return to the original netns: {}",
            std::io::Error::last_os_error()
        );
    }
    child
}

/// One finished plugin process.
struct Run {
    took: Duration,
    /// User + system CPU of the process and the children it waited for
    /// (robust to a loaded machine, unlike wall time).
    cpu: Duration,
    /// Peak RSS in KiB (GNU time's %M = its child's ru_maxrss), -1 when
    /// not measured.
    maxrss_kib: i64,
    stdout: Vec<u8>,
}

/// One chain invocation: total time, per-step runs, the final result.
struct ChainRun {
    total: Duration,
    /// CPU of all its plugin processes and their children.
    cpu: Duration,
    steps: Vec<Run>,
    result: Value,
}

type BenchResult<T> = Result<T, String>;

/// GNU time, which reports its child's ru_maxrss (`%M`).
const GNU_TIME: &str = "/usr/bin/time";

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
    /// One plugin process, as a runtime starts it, timed from spawn to
    /// exit and reaped with wait4 for its rusage.
    fn exec(
        &self,
        plugin: &Path,
        verb: &str,
        pod: &Pod,
        id: &str,
        config: &[u8],
        rss: bool,
    ) -> BenchResult<Run> {
        // RSS runs go through GNU time: wait4's ru_maxrss of a child
        // started with posix_spawn (CLONE_VM|CLONE_VFORK) counts the
        // parent's memory too (exec_mmap records the shared mm's high
        // water mark), so the plugin is started by a small process that
        // forks. Such runs are not timed.
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let rss_file = rss.then(|| {
            std::env::temp_dir().join(format!(
                "cni6-bench-rss-{}-{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            ))
        });
        let mut cmd = match &rss_file {
            Some(f) => {
                let mut c = std::process::Command::new(GNU_TIME);
                c.args(["-f", "%M", "-o"]).arg(f).arg(plugin);
                c
            }
            None => std::process::Command::new(plugin),
        };
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
        let mut child = spawn_in(&self.ns, &mut cmd)
            .map_err(|e| format!("{}: spawn {}: {e}", self.label, plugin.display()))?;
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(config)
            .map_err(|e| format!("{}: write config: {e}", self.label))?;
        // Plugins write little to stderr: a pipe buffer holds it while
        // stdout is drained.
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        child
            .stdout
            .take()
            .expect("piped")
            .read_to_end(&mut stdout)
            .map_err(|e| format!("{}: read stdout: {e}", self.label))?;
        child
            .stderr
            .take()
            .expect("piped")
            .read_to_end(&mut stderr)
            .map_err(|e| format!("{}: read stderr: {e}", self.label))?;
        let mut status = 0;
        // SAFETY: an all-zero rusage is a valid value; wait4 fills it.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: reaps our own child by pid; `child` is not waited on again.
        let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        let took = start.elapsed();
        if pid < 0 {
            return Err(format!(
                "{}: wait4: {}",
                self.label,
                std::io::Error::last_os_error()
            ));
        }
        let status = std::process::ExitStatus::from_raw(status);
        if !status.success() {
            return Err(format!(
                "{} {} {verb} {id} failed ({status}): {}{}",
                self.label,
                plugin.display(),
                String::from_utf8_lossy(&stdout),
                String::from_utf8_lossy(&stderr)
            ));
        }
        let maxrss_kib = match &rss_file {
            Some(f) => {
                let text = std::fs::read_to_string(f);
                let _ = std::fs::remove_file(f);
                let text =
                    text.map_err(|e| format!("{}: read {}: {e}", self.label, f.display()))?;
                text.trim().parse().map_err(|e| {
                    format!("{}: {GNU_TIME} printed {text:?} for %M: {e}", self.label)
                })?
            }
            None => -1,
        };
        Ok(Run {
            took,
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
            maxrss_kib,
            stdout,
        })
    }

    /// The whole chain, as libcni runs a conflist: ADD in order with each
    /// result as the next prevResult; DEL in reverse with `prev` (the ADD
    /// result) as prevResult.
    fn invoke(
        &self,
        verb: &str,
        pod: &Pod,
        id: &str,
        prev: Option<&Value>,
        rss: bool,
    ) -> BenchResult<ChainRun> {
        let mut runs = Vec::new();
        let mut total = Duration::ZERO;
        let mut cpu = Duration::ZERO;
        let mut result = Value::Null;
        let order: Vec<&Step> = if verb == "DEL" {
            self.steps.iter().rev().collect()
        } else {
            self.steps.iter().collect()
        };
        for (k, step) in order.into_iter().enumerate() {
            let mut conf = step.config.clone();
            let p = if verb == "ADD" {
                (k > 0).then_some(&result)
            } else {
                prev
            };
            if let Some(p) = p {
                conf["prevResult"] = p.clone();
            }
            let conf = serde_json::to_vec(&conf).expect("json");
            let run = self.exec(&step.plugin, verb, pod, id, &conf, rss)?;
            total += run.took;
            cpu += run.cpu;
            if verb == "ADD" {
                result = serde_json::from_slice(&run.stdout).map_err(|e| {
                    format!(
                        "{} {} ADD {id}: result is not JSON: {e}",
                        self.label, step.role
                    )
                })?;
            }
            runs.push(run);
        }
        if verb == "DEL" {
            runs.reverse(); // index = step, as for ADD
        } else if result["ips"].as_array().map_or(0, Vec::len) != 2 {
            return Err(format!(
                "{} ADD {id}: expected 2 ips in {result}",
                self.label
            ));
        }
        Ok(ChainRun {
            total,
            cpu,
            steps: runs,
            result,
        })
    }
}

fn tv(t: libc::timeval) -> Duration {
    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
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
        (bin_dir, ["bridge6", "ipam-prefix", "firewall6"]),
        (reference_dir, ["bridge", "host-local", "firewall"]),
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
    // firewall6 as cni6 ships it: the default `ingress: cluster-only` plus
    // the source check (more rules than the reference's accept-to-pod).
    let ours_fw = json!({
        "cniVersion": "1.0.0",
        "name": "benchours",
        "type": "firewall6",
        "clusterPrefixes": [ ours_node.ula_prefix.to_string() ]
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
    let theirs_fw = json!({
        "cniVersion": "1.0.0",
        "name": "benchref",
        "type": "firewall",
        "backend": "iptables"
    });
    Ok([
        Chain {
            label: "cni6",
            node: 1,
            cni_path: bin_dir.to_path_buf(),
            steps: vec![
                Step {
                    role: "bridge",
                    plugin: bin_dir.join("bridge6"),
                    config: ours,
                },
                Step {
                    role: "firewall",
                    plugin: bin_dir.join("firewall6"),
                    config: ours_fw,
                },
            ],
            ipam: bin_dir.join("ipam-prefix"),
            ns: open_ns(ours_node)?,
        },
        Chain {
            label: "reference",
            node: 2,
            cni_path: reference_dir.to_path_buf(),
            steps: vec![
                Step {
                    role: "bridge",
                    plugin: reference_dir.join("bridge"),
                    config: theirs,
                },
                Step {
                    role: "firewall",
                    plugin: reference_dir.join("firewall"),
                    config: theirs_fw,
                },
            ],
            ipam: reference_dir.join("host-local"),
            ns: open_ns(ref_node)?,
        },
    ])
}

fn open_ns(node: &Node) -> BenchResult<std::fs::File> {
    std::fs::File::open(node.netns_path())
        .map_err(|e| format!("open {}: {e}", node.netns_path().display()))
}

fn nth(net: &ipnet::Ipv6Net, k: u128) -> String {
    std::net::Ipv6Addr::from(u128::from(net.network()) | k).to_string()
}

/// Samples of one (operation, chain) row.
#[derive(Default, Clone)]
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

/// A directory as the report shows it: relative to the repository, or not at
/// all, so a pasted report carries no path of the machine it ran on.
fn shown_dir(dir: &Path) -> String {
    let workspace = conformance::harness::workspace_dir();
    match dir.strip_prefix(&workspace) {
        Ok(rel) => rel.display().to_string(),
        Err(_) if dir == conformance::harness::reference_dir() => {
            "the upstream build of scripts/peers.sh".to_string()
        }
        Err(_) if dir == Path::new(DEBIAN_REFERENCE_DIR) => DEBIAN_REFERENCE_DIR.to_string(),
        Err(_) => "a directory outside the repository".to_string(),
    }
}

/// The kernel's version without the build string (`6.18.44-fc-v509` →
/// `6.18.44`): the version is what a reader compares, the suffix names a build.
fn kernel_version(osrelease: &str) -> &str {
    osrelease.split(['-', '+']).next().unwrap_or(osrelease)
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1e3)
}

/// Peak RSS per (chain, process kind), KiB.
#[derive(Default)]
struct Rss(Mutex<BTreeMap<(usize, String), i64>>);

impl Rss {
    fn note(&self, chain: usize, what: &str, kib: i64) {
        if kib < 0 {
            return; // not measured (a timed run)
        }
        let mut m = self.0.lock().unwrap();
        let e = m.entry((chain, what.to_string())).or_insert(0);
        *e = (*e).max(kib);
    }
    fn chain_run(&self, chain: usize, verb: &str, c: &Chain, r: &ChainRun) {
        for (s, run) in c.steps.iter().zip(&r.steps) {
            self.note(chain, &format!("{} {verb}", s.role), run.maxrss_kib);
        }
    }
}

/// Attach pods through a chain with a few workers (not timed).
fn fill(chain: &Chain, pods: &[Pod], workers: usize, rss: &Rss, idx: usize) -> BenchResult<()> {
    // The first pod alone: it sets up the node-wide chains, and the
    // reference firewall fails an ADD that races another one creating
    // CNI-FORWARD ("CHAIN_USER_ADD failed (File exists)"), which made
    // `bench --quick` fail now and then from an empty ruleset.
    let Some(first) = pods.first() else {
        return Ok(());
    };
    check_interrupt()?;
    let r = chain.invoke("ADD", first, &first.name, None, false)?;
    rss.chain_run(idx, "ADD", chain, &r);
    let next = AtomicUsize::new(1);
    let err: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= pods.len() || err.lock().unwrap().is_some() {
                    return;
                }
                match check_interrupt()
                    .and_then(|_| chain.invoke("ADD", &pods[i], &pods[i].name, None, false))
                {
                    Ok(r) => rss.chain_run(idx, "ADD", chain, &r),
                    Err(e) => {
                        *err.lock().unwrap() = Some(e);
                        return;
                    }
                }
            });
        }
    });
    match err.into_inner().unwrap() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// `n` simultaneous chain invocations; each one's outcome and the wall time.
fn parallel(
    chain: &Chain,
    verb: &str,
    pods: &[Pod],
    ids: &[String],
    prevs: &[Option<Value>],
) -> (Vec<BenchResult<ChainRun>>, Duration) {
    let barrier = Barrier::new(pods.len() + 1);
    let start = Mutex::new(None::<Instant>);
    let results = std::thread::scope(|s| {
        let handles: Vec<_> = pods
            .iter()
            .zip(ids)
            .zip(prevs)
            .map(|((pod, id), prev)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    chain.invoke(verb, pod, id, prev.as_ref(), false)
                })
            })
            .collect();
        *start.lock().unwrap() = Some(Instant::now());
        barrier.wait();
        let r: Vec<BenchResult<ChainRun>> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        r
    });
    let wall = start.into_inner().unwrap().expect("set").elapsed();
    (results, wall)
}

/// Addresses of an ADD result.
fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect()
}

struct Row {
    op: String,
    label: &'static str,
    samples: Samples,
}

fn main() -> std::process::ExitCode {
    let mut args = Args::parse();
    if args.reference_dir.is_none() {
        args.reference_dir = Some(conformance::harness::reference_dir());
    }
    if args.quick {
        args.pods = vec![2, 4];
        args.rounds = 3;
        args.parallel = 4;
        args.parallel_rounds = 1;
        args.fill_workers = 2;
    }
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
    if args.datapath {
        return datapath(&args);
    }
    match bench(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn datapath(args: &Args) -> std::process::ExitCode {
    let opts = conformance::datapath::Options {
        bin_dir: args
            .bin_dir
            .clone()
            .unwrap_or_else(conformance::harness::bin_dir),
        reference_dir: args.reference_dir().to_path_buf(),
        size: args.size,
        profile: args.profile,
        interrupted: INTERRUPTED.get().cloned(),
    };
    match conformance::datapath::run(&opts) {
        Ok(report) => {
            print!("{}", report.render());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench --datapath: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Sets firewall6's prerequisite in our node (it refuses ADD without it;
/// the reference never checks): bridged traffic through ip6tables.
fn enable_bridge_nf(topo: &Topology, node: u16) -> BenchResult<()> {
    let mut cmd = topo.node_command(node, "sysctl");
    cmd.args(["-qw", "net.bridge.bridge-nf-call-ip6tables=1"]);
    conformance::topology::run(cmd)
        .map(|_| ())
        .map_err(|e| format!("bridge-nf-call-ip6tables in node {node}: {e}"))
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
    conformance::harness::install_cleanup_panic_hook();
    let mut topo = Topology::build(spec).map_err(|e| e.to_string())?;
    conformance::harness::remove_on_panic(topo.base());
    let outcome = run_bench(args, &bin_dir, &sizes, &mut topo, &mut notes, &load_before);
    let t = Instant::now();
    let base = topo.base().to_string();
    topo.teardown().map_err(|e| e.to_string())?;
    eprintln!("bench: removed {base} ({:.1}s)", t.elapsed().as_secs_f64());
    outcome
}

fn run_bench(
    args: &Args,
    bin_dir: &Path,
    sizes: &[usize],
    topo: &mut Topology,
    notes: &mut Vec<String>,
    load_before: &str,
) -> BenchResult<()> {
    let chains = chains(topo, bin_dir, args.reference_dir())?;
    enable_bridge_nf(topo, 1)?;
    eprintln!(
        "bench: topology {} (ours on node 1, reference on node 2), binaries {}",
        topo.base(),
        shown_dir(bin_dir)
    );
    let rss = Rss::default();

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
    // (size, chain) -> p50 of chain ADD, chain DEL, firewall ADD, firewall DEL
    let mut scaling: Vec<(usize, [[Duration; 4]; 2])> = Vec::new();
    let mut burst_report = Vec::new();
    let mut floors: Vec<(usize, Floor)> = Vec::new();
    let mut alone: Vec<(usize, Alone)> = Vec::new();
    for &size in sizes {
        for (i, c) in chains.iter().enumerate() {
            let more = size.saturating_sub(background[i]);
            if more > 0 {
                let t = Instant::now();
                let pods = topo.add_pods(c.node, more).map_err(|e| e.to_string())?;
                fill(c, &pods, args.fill_workers, &rss, i)?;
                background[i] = size;
                eprintln!(
                    "bench: {}: {size} background pods attached ({:.1}s)",
                    c.label,
                    t.elapsed().as_secs_f64()
                );
            }
            if i == 0 {
                // Ours alone, before the reference's pods reach this size:
                // its pods keep sending router solicitations, DAD probes
                // and MLD reports that its bridge floods to every port
                // (through ip6tables once per port), which at 1000 pods
                // keeps both CPUs busy and would be measured as ours.
                // And only once the kernel's work for the fill has died
                // down (here that takes a second; the 1000/10 ratios still
                // spread 1.15x-2.03x between runs: the machine's noise).
                if !args.quick {
                    settle()?;
                }
                alone.push((
                    size,
                    sample_alone(&chains[0], &probe[0], size, args.rounds)?,
                ));
                floors.push((
                    size,
                    floor(topo, &chains[0], &probe[0], args.rounds.clamp(1, 10))?,
                ));
            }
        }
        let mut add = [Samples::default(), Samples::default()];
        let mut del = [Samples::default(), Samples::default()];
        let mut step_add = [
            [Samples::default(), Samples::default()],
            [Samples::default(), Samples::default()],
        ];
        let mut step_del = step_add.clone();
        let mut cpu_add = [Samples::default(), Samples::default()];
        let mut cpu_del = [Samples::default(), Samples::default()];
        let mut fw_cpu_add = [Samples::default(), Samples::default()];
        let mut fw_cpu_del = [Samples::default(), Samples::default()];
        for r in 0..args.rounds {
            let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
            let mut results = [Value::Null, Value::Null];
            let id = format!("s{size}r{r}");
            for &i in &order {
                check_interrupt()?;
                let run = chains[i].invoke("ADD", &probe[i], &id, None, false)?;
                rss.chain_run(i, "ADD", &chains[i], &run);
                add[i].0.push(run.total);
                cpu_add[i].0.push(run.cpu);
                fw_cpu_add[i].0.push(run.steps[1].cpu);
                for (k, s) in run.steps.iter().enumerate() {
                    step_add[k][i].0.push(s.took);
                }
                results[i] = run.result;
            }
            for &i in &order {
                let run = chains[i].invoke("DEL", &probe[i], &id, Some(&results[i]), false)?;
                rss.chain_run(i, "DEL", &chains[i], &run);
                del[i].0.push(run.total);
                cpu_del[i].0.push(run.cpu);
                fw_cpu_del[i].0.push(run.steps[1].cpu);
                for (k, s) in run.steps.iter().enumerate() {
                    step_del[k][i].0.push(s.took);
                }
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
        let mut errors = [0usize; 2];
        let mut dups = [0usize; 2];
        let mut first_error: [Option<String>; 2] = [None, None];
        for r in 0..args.parallel_rounds * usize::from(burst_fits) {
            let order: [usize; 2] = if r % 2 == 0 { [0, 1] } else { [1, 0] };
            for &i in &order {
                check_interrupt()?;
                let ids: Vec<String> = (0..args.parallel)
                    .map(|k| format!("p{size}r{r}k{k}"))
                    .collect();
                let none = vec![None; ids.len()];
                let (res, wall) = parallel(&chains[i], "ADD", &burst[i], &ids, &none);
                wall_add[i].0.push(wall);
                let mut seen = std::collections::HashSet::new();
                let mut prevs = Vec::new();
                for r in res {
                    match r {
                        Ok(run) => {
                            rss.chain_run(i, "ADD", &chains[i], &run);
                            padd[i].0.push(run.total);
                            for a in addresses(&run.result) {
                                if !seen.insert(a) {
                                    dups[i] += 1;
                                }
                            }
                            prevs.push(Some(run.result));
                        }
                        Err(e) => {
                            errors[i] += 1;
                            first_error[i].get_or_insert(e);
                            prevs.push(None);
                        }
                    }
                }
                let (res, wall) = parallel(&chains[i], "DEL", &burst[i], &ids, &prevs);
                wall_del[i].0.push(wall);
                for r in res {
                    match r {
                        Ok(run) => {
                            rss.chain_run(i, "DEL", &chains[i], &run);
                            pdel[i].0.push(run.total);
                        }
                        Err(e) => {
                            errors[i] += 1;
                            first_error[i].get_or_insert(e);
                        }
                    }
                }
            }
        }
        if burst_fits && args.parallel_rounds > 0 {
            for (i, c) in chains.iter().enumerate() {
                burst_report.push(format!(
                    "# {} x{} parallel at {size} attached: {} errors, {} duplicate addresses{}",
                    c.label,
                    args.parallel,
                    errors[i],
                    dups[i],
                    first_error[i]
                        .as_ref()
                        .map(|e| format!(" (first: {e})"))
                        .unwrap_or_default()
                ));
            }
        }
        scaling.push((
            size,
            [0, 1].map(|i| {
                [
                    add[i].pct(50.0),
                    del[i].pct(50.0),
                    step_add[1][i].pct(50.0),
                    step_del[1][i].pct(50.0),
                ]
            }),
        ));
        let p = args.parallel;
        let [bridge_add, fw_add] = step_add;
        let [bridge_del, fw_del] = step_del;
        for (op, set) in [
            (format!("chain ADD, {size} attached"), add),
            ("  CPU of the chain ADD".to_string(), cpu_add),
            ("  bridge(+ipam) ADD".to_string(), bridge_add),
            ("  firewall ADD".to_string(), fw_add),
            ("  CPU of the firewall ADD".to_string(), fw_cpu_add),
            (format!("chain DEL, {size} attached"), del),
            ("  CPU of the chain DEL".to_string(), cpu_del),
            ("  bridge(+ipam) DEL".to_string(), bridge_del),
            ("  firewall DEL".to_string(), fw_del),
            ("  CPU of the firewall DEL".to_string(), fw_cpu_del),
            (format!("chain ADD x{p} parallel, {size} att."), padd),
            (format!("  wall time of {p} ADDs"), wall_add),
            (format!("chain DEL x{p} parallel, {size} att."), pdel),
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

    // The IPAM plugins alone, called with the bridge's config as the
    // delegating plugin calls them: their own RSS (and time).
    let mut ipam_time = [Samples::default(), Samples::default()];
    for r in 0..args.rounds.clamp(1, 5) {
        for (i, c) in chains.iter().enumerate() {
            let conf = serde_json::to_vec(&c.steps[0].config).expect("json");
            let id = format!("ipam{r}");
            let run = c.exec(&c.ipam, "ADD", &probe[i], &id, &conf, false)?;
            ipam_time[i].0.push(run.took);
            c.exec(&c.ipam, "DEL", &probe[i], &id, &conf, false)?;
        }
    }
    // Peak RSS: untimed runs through GNU time (see Chain::exec), with the
    // largest background in place.
    for r in 0..3 {
        for (i, c) in chains.iter().enumerate() {
            let conf = serde_json::to_vec(&c.steps[0].config).expect("json");
            let id = format!("rss{r}");
            let run = c.exec(&c.ipam, "ADD", &probe[i], &id, &conf, true)?;
            rss.note(i, "ipam ADD (alone)", run.maxrss_kib);
            let run = c.exec(&c.ipam, "DEL", &probe[i], &id, &conf, true)?;
            rss.note(i, "ipam DEL (alone)", run.maxrss_kib);
            let add = c.invoke("ADD", &probe[i], &id, None, true)?;
            rss.chain_run(i, "ADD", c, &add);
            let del = c.invoke("DEL", &probe[i], &id, Some(&add.result), true)?;
            rss.chain_run(i, "DEL", c, &del);
        }
    }
    let [ia, ib] = ipam_time;
    rows.push(Row {
        op: "ipam ADD alone".into(),
        label: chains[0].label,
        samples: ia,
    });
    rows.push(Row {
        op: "ipam ADD alone".into(),
        label: chains[1].label,
        samples: ib,
    });

    print_report(args, bin_dir, load_before, &chains, &rows, &scaling, &rss);
    print_alone(&alone);
    println!(
        "# floor of one ADD in cni6's node: the same kernel work without plugins (p50 of {} runs \
         at each size, taken with \"cni6 alone\")",
        args.rounds.clamp(1, 10)
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>14} {:>8}",
        "attached", "spawn", "ip node", "ip pod", "restore", "floor", "cni6 alone ADD", "ratio"
    );
    for ((size, f), (_, a)) in floors.iter().zip(&alone) {
        let sum = f.node + f.pod + f.rules;
        let ours = a.add;
        println!(
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>14} {:>8}",
            size,
            ms(f.spawn),
            ms(f.node),
            ms(f.pod),
            ms(f.rules),
            ms(sum),
            ms(ours),
            ratio(ours.as_secs_f64(), sum.as_secs_f64())
        );
    }
    println!(
        "# spawn = /bin/true; ip node = ip -batch in the node (veth with its peer into the pod, \
         master, up); ip pod = ip -batch spawned in the pod (mtu, up, 2 addresses, default route); \
         restore = ip6tables-restore of 5 rules like a pod's; floor = ip node + ip pod + restore"
    );
    println!("# floor of one DEL: the same undone (p50 at each size)");
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>14} {:>8}",
        "attached", "ip del", "restore", "floor", "cni6 alone DEL", "ratio"
    );
    for ((size, f), (_, a)) in floors.iter().zip(&alone) {
        let sum = f.del_link + f.del_rules;
        let ours = a.del;
        println!(
            "{:<10} {:>10} {:>10} {:>10} {:>14} {:>8}",
            size,
            ms(f.del_link),
            ms(f.del_rules),
            ms(sum),
            ms(ours),
            ratio(ours.as_secs_f64(), sum.as_secs_f64())
        );
    }
    println!(
        "# ip del = ip link del of the host end (the kernel waits for RCU before it returns); \
         restore = ip6tables-restore deleting the 5 rules"
    );
    for n in burst_report.iter().chain(notes.iter()) {
        println!("{n}");
    }
    Ok(())
}

/// p50s of the floor's pieces.
struct Floor {
    spawn: Duration,
    node: Duration,
    pod: Duration,
    rules: Duration,
    /// `ip link del` of the host end (the pair goes with it).
    del_link: Duration,
    /// ip6tables-restore deleting the five rules.
    del_rules: Duration,
}

/// One command in the node, stdin fed, timed from spawn to exit.
fn timed(chain: &Chain, argv: &[&str], stdin: &str) -> BenchResult<Duration> {
    timed_in(&chain.ns, argv, stdin)
}

/// [`timed`] in the network namespace `ns`.
fn timed_in(ns: &std::fs::File, argv: &[&str], stdin: &str) -> BenchResult<Duration> {
    let mut cmd = std::process::Command::new(argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = spawn_in(ns, &mut cmd).map_err(|e| format!("floor: spawn {}: {e}", argv[0]))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin.as_bytes())
        .map_err(|e| format!("floor: write to {}: {e}", argv[0]))?;
    let out = child
        .wait_with_output()
        .map_err(|e| format!("floor: wait for {}: {e}", argv[0]))?;
    let took = start.elapsed();
    if !out.status.success() {
        return Err(format!(
            "floor: {argv:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(took)
}

/// The kernel work of one attachment issued by `ip -batch` (one run on the
/// node's side, one in the pod: `ip` cannot switch namespaces inside one
/// batch) and one `ip6tables-restore` of five rules like a pod's, in our
/// node with our bridge; undone after each run. The sysctls bridge6 writes
/// are namespace defaults set beforehand, so the devices end up the same.
fn floor(topo: &Topology, chain: &Chain, pod: &Pod, runs: usize) -> BenchResult<Floor> {
    let node = chain.node;
    let bridge = chain.steps[0].config["bridge"]
        .as_str()
        .expect("bridge name")
        .to_string();
    let (ula, gua) = pod_ranges(topo.node(node));
    let (a1, a2) = (nth(&ula, 0xfff0), nth(&gua, 0xfff0));
    let host = topo.link_name("fl").map_err(|e| e.to_string())?;
    let chain_name = "C6BENCH-FLOOR";
    let node_batch = format!(
        "link add {host} mtu 1420 type veth peer name eth0 netns {}\nlink set {host} master {bridge} up\n",
        pod.name
    );
    let pod_batch = format!(
        "link set eth0 mtu 1420 up\naddr add {a1}/96 dev eth0 nodad\naddr add {a2}/96 dev eth0 nodad\n\
         route add default via {} dev eth0\n",
        gateway(&ula)
    );
    let c = |s: &str| format!("-m comment --comment \"firewall6 net=floor if=eth0 id={s}\"");
    let rules = format!(
        "*filter\n\
         -A {chain_name} -s {a1}/128 -m physdev --physdev-in {host} {} -j ACCEPT\n\
         -A {chain_name} -s {a2}/128 -m physdev --physdev-in {host} {} -j ACCEPT\n\
         -A {chain_name} -m physdev --physdev-in {host} {} -j DROP\n\
         -A {chain_name} -d {a1}/128 {} -j ACCEPT\n\
         -A {chain_name} -d {a2}/128 {} -j ACCEPT\nCOMMIT\n",
        c("a"),
        c("b"),
        c("c"),
        c("d"),
        c("e")
    );
    let del_rules = rules.replace("\n-A ", "\n-D ");
    timed(chain, &["ip6tables", "-w", "-N", chain_name], "")?;
    // The same end state as bridge6's, whose sysctl writes ip(8) cannot
    // express: the new devices inherit them from the namespaces' defaults,
    // set here beforehand (untimed) and restored afterwards. Without them
    // the floor's pod would run DAD, send router solicitations and MLD
    // reports, flooded to every port of the bridge.
    let pod_ns = std::fs::File::open(&pod.path)
        .map_err(|e| format!("floor: open {}: {e}", pod.path.display()))?;
    // In the pod: no DAD, RAs or SLAAC (1 = the kernel's defaults back).
    let pod_defaults = |v: u8| {
        let keys = ["accept_dad", "accept_ra", "autoconf"];
        let mut argv = vec!["sysctl".to_string(), "-qw".to_string()];
        argv.extend(keys.map(|k| format!("net.ipv6.conf.default.{k}={v}")));
        timed_in(
            &pod_ns,
            &argv.iter().map(String::as_str).collect::<Vec<_>>(),
            "",
        )
    };
    pod_defaults(0)?;
    timed(
        chain,
        &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        "",
    )?;
    let mut spawn = Samples::default();
    let mut nodes = Samples::default();
    let mut pods = Samples::default();
    let mut rule_runs = Samples::default();
    let mut del_links = Samples::default();
    let mut del_rule_runs = Samples::default();
    let mut outcome = Ok(());
    for _ in 0..runs {
        let r = (|| -> BenchResult<()> {
            spawn.0.push(timed(chain, &["/bin/true"], "")?);
            nodes
                .0
                .push(timed(chain, &["ip", "-batch", "-"], &node_batch)?);
            // Spawned inside the pod's namespace like the plugins, not
            // with `ip -n`: that copies the mount namespace, whose
            // /run/netns holds one mount per pod (+0.9 ms at 1000 pods).
            pods.0
                .push(timed_in(&pod_ns, &["ip", "-batch", "-"], &pod_batch)?);
            rule_runs.0.push(timed(
                chain,
                &["ip6tables-restore", "-w", "--noflush"],
                &rules,
            )?);
            // The DEL floor: what undoing it costs, timed.
            del_rule_runs.0.push(timed(
                chain,
                &["ip6tables-restore", "-w", "--noflush"],
                &del_rules,
            )?);
            del_links
                .0
                .push(timed(chain, &["ip", "link", "del", &host], "")?);
            Ok(())
        })();
        // Undo whatever part did not run or failed (the veth pair goes
        // with its host end).
        if r.is_err() {
            let _ = timed(chain, &["ip", "link", "del", &host], "");
            let _ = timed(chain, &["ip6tables", "-w", "-F", chain_name], "");
            outcome = r;
            break;
        }
    }
    let _ = timed(chain, &["ip6tables", "-w", "-X", chain_name], "");
    // Back to the kernel's defaults (the bench made both namespaces), so
    // later samples of the chain in this pod start from the usual state.
    let _ = timed(
        chain,
        &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=0"],
        "",
    );
    let _ = pod_defaults(1);
    outcome?;
    Ok(Floor {
        spawn: spawn.pct(50.0),
        node: nodes.pct(50.0),
        pod: pods.pct(50.0),
        rules: rule_runs.pct(50.0),
        del_link: del_links.pct(50.0),
        del_rules: del_rule_runs.pct(50.0),
    })
}

/// The machine's busy fraction over `over` (all CPUs, /proc/stat).
fn busy_fraction(over: Duration) -> BenchResult<f64> {
    let read = || -> BenchResult<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").map_err(|e| format!("/proc/stat: {e}"))?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("cpu "))
            .ok_or("/proc/stat: no cpu line")?
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let idle = cpu.get(3).copied().unwrap_or(0) + cpu.get(4).copied().unwrap_or(0);
        Ok((cpu.iter().take(8).sum(), idle))
    };
    let (t0, i0) = read()?;
    std::thread::sleep(over);
    let (t1, i1) = read()?;
    let total = t1.saturating_sub(t0).max(1);
    Ok(1.0 - i1.saturating_sub(i0) as f64 / total as f64)
}

/// Wait (at most 60 s) until the machine is at most 15 % busy over a
/// second: what attaching the background pods set off (the kernel's
/// address and multicast work for each new interface, deferred frees)
/// must not be sampled as ours.
fn settle() -> BenchResult<()> {
    let t = Instant::now();
    loop {
        check_interrupt()?;
        let busy = busy_fraction(Duration::from_secs(1))?;
        if busy <= 0.15 || t.elapsed() > Duration::from_secs(60) {
            eprintln!(
                "bench: settled after {:.0}s ({:.0} % busy)",
                t.elapsed().as_secs_f64(),
                busy * 100.0
            );
            return Ok(());
        }
    }
}

/// p50s of cni6's chain sampled alone (see the call in run_bench).
struct Alone {
    add: Duration,
    del: Duration,
    fw_add: Duration,
    fw_del: Duration,
    cpu_add: Duration,
    cpu_del: Duration,
}

fn sample_alone(chain: &Chain, pod: &Pod, size: usize, rounds: usize) -> BenchResult<Alone> {
    let mut s: [Samples; 6] = Default::default();
    for r in 0..rounds {
        check_interrupt()?;
        let id = format!("a{size}r{r}");
        let add = chain.invoke("ADD", pod, &id, None, false)?;
        let del = chain.invoke("DEL", pod, &id, Some(&add.result), false)?;
        for (k, d) in [
            add.total,
            del.total,
            add.steps[1].took,
            del.steps[1].took,
            add.cpu,
            del.cpu,
        ]
        .into_iter()
        .enumerate()
        {
            s[k].0.push(d);
        }
    }
    let [add, del, fw_add, fw_del, cpu_add, cpu_del] = s.map(|x| x.pct(50.0));
    Ok(Alone {
        add,
        del,
        fw_add,
        fw_del,
        cpu_add,
        cpu_del,
    })
}

fn print_alone(alone: &[(usize, Alone)]) {
    println!(
        "# cni6 alone: sampled once the machine settled after its own pods were attached, while \
         the reference's node still held the previous size (p50)"
    );
    println!(
        "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "attached", "chain ADD", "chain DEL", "fw ADD", "fw DEL", "CPU ADD", "CPU DEL"
    );
    let row = |label: String, v: [String; 6]| {
        println!(
            "{:<10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            label, v[0], v[1], v[2], v[3], v[4], v[5]
        );
    };
    let fields = |a: &Alone| [a.add, a.del, a.fw_add, a.fw_del, a.cpu_add, a.cpu_del];
    for (size, a) in alone {
        row(size.to_string(), fields(a).map(ms));
    }
    if let (Some((small, a)), Some((big, b))) = (alone.first(), alone.last()) {
        if big > small {
            let (a, b) = (fields(a), fields(b));
            row(
                format!("{big}/{small}"),
                std::array::from_fn(|k| ratio(b[k].as_secs_f64(), a[k].as_secs_f64())),
            );
        }
    }
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "-".to_string()
    } else {
        format!("{:.2}x", a / b)
    }
}

fn print_report(
    args: &Args,
    bin_dir: &Path,
    load_before: &str,
    chains: &[Chain; 2],
    rows: &[Row],
    scaling: &[(usize, [[Duration; 4]; 2])],
    rss: &Rss,
) {
    println!(
        "# bridge6+ipam-prefix+firewall6 ({}) vs reference bridge+host-local+firewall ({}); \
         kernel {}; {} CPUs; load average before {} / after {}",
        shown_dir(bin_dir),
        reference_version(args.reference_dir()),
        kernel_version(&read_trimmed("/proc/sys/kernel/osrelease")),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_before,
        read_trimmed("/proc/loadavg"),
    );
    println!(
        "# rounds {} sequential + {} x {} parallel per chain and size; times from spawn to exit \
         (a chain = the sum of its plugin processes); CPU = user+system of the plugin processes \
         and their children (wait4 rusage)",
        args.rounds, args.parallel_rounds, args.parallel
    );
    println!(
        "{:<34} {:<10} {:>5} {:>10} {:>10} {:>10}",
        "operation", "chain", "n", "p50", "p95", "max"
    );
    for pair in rows.chunks(2) {
        for r in pair {
            println!(
                "{:<34} {:<10} {:>5} {:>10} {:>10} {:>10}",
                r.op,
                r.label,
                r.samples.0.len(),
                ms(r.samples.pct(50.0)),
                ms(r.samples.pct(95.0)),
                ms(r.samples.max())
            );
        }
        let f = |g: &dyn Fn(&Samples) -> Duration| {
            ratio(
                g(&pair[0].samples).as_secs_f64(),
                g(&pair[1].samples).as_secs_f64(),
            )
        };
        println!(
            "{:<34} {:<10} {:>5} {:>10} {:>10} {:>10}",
            "",
            "cni6/ref",
            "",
            f(&|s| s.pct(50.0)),
            f(&|s| s.pct(95.0)),
            f(&|s| s.max())
        );
    }
    if let (Some((small, a)), Some((big, b))) = (scaling.first(), scaling.last()) {
        if small != big {
            println!("# scaling: p50 at {big} attached / p50 at {small} attached");
            println!(
                "{:<10} {:>10} {:>10} {:>12} {:>12}",
                "chain", "chain ADD", "chain DEL", "firewall ADD", "firewall DEL"
            );
            for (i, c) in chains.iter().enumerate() {
                let r: Vec<String> = (0..4)
                    .map(|k| ratio(b[i][k].as_secs_f64(), a[i][k].as_secs_f64()))
                    .collect();
                println!(
                    "{:<10} {:>10} {:>10} {:>12} {:>12}",
                    c.label, r[0], r[1], r[2], r[3]
                );
            }
        }
    }
    println!(
        "# peak RSS (GNU time %M = ru_maxrss: the process or the largest child it waited for; \
         a bridge includes its IPAM, a firewall its ip6tables runs)"
    );
    println!(
        "{:<22} {:>10} {:>10} {:>9}",
        "process", "cni6", "reference", "cni6/ref"
    );
    let m = rss.0.lock().unwrap();
    let kinds: std::collections::BTreeSet<&String> = m.keys().map(|(_, k)| k).collect();
    for k in kinds {
        let a = m.get(&(0, k.clone())).copied().unwrap_or(0);
        let b = m.get(&(1, k.clone())).copied().unwrap_or(0);
        println!(
            "{:<22} {:>8}Ki {:>8}Ki {:>9}",
            k,
            a,
            b,
            ratio(a as f64, b as f64)
        );
    }
    println!("# binary sizes (as installed)");
    for (ours, theirs) in [
        (&chains[0].steps[0].plugin, &chains[1].steps[0].plugin),
        (&chains[0].ipam, &chains[1].ipam),
        (&chains[0].steps[1].plugin, &chains[1].steps[1].plugin),
    ] {
        let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let (a, b) = (size(ours), size(theirs));
        println!(
            "{:<12} {:>9.2}MiB   {:<12} {:>9.2}MiB {:>9}",
            ours.file_name().unwrap().to_string_lossy(),
            a as f64 / 1048576.0,
            theirs.file_name().unwrap().to_string_lossy(),
            b as f64 / 1048576.0,
            ratio(a as f64, b as f64)
        );
    }
}
