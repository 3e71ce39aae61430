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

mod chain;
mod floor;
mod report;
mod run;
mod samples;

use chain::*;
use floor::*;
use report::*;
use run::*;
use samples::*;

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
    /// every pod and node path: cni6, the reference and cni6 without
    /// firewall6 (docs/datapath.md).
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
