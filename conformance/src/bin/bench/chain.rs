//! The two plugin chains under test: how each is built for its node and
//! how a plugin process is spawned in the node and measured.

use super::*;

/// Ports of one Linux bridge: port numbers are 10 bits and 0 is reserved
/// (BR_MAX_PORTS = 1024 in net/bridge/br_private.h), so a node bridge
/// holds at most 1023 pods — for bridge6 and the reference bridge alike.
pub(super) const BRIDGE_MAX_PORTS: usize = 1023;

/// One plugin of a chain: its binary and its config without prevResult.
pub(super) struct Step {
    /// Row label ("bridge", "firewall").
    pub(super) role: &'static str,
    pub(super) plugin: PathBuf,
    pub(super) config: Value,
}

/// One plugin chain under test, bound to its node.
pub(super) struct Chain {
    pub(super) label: &'static str,
    pub(super) node: u16,
    cni_path: PathBuf,
    pub(super) steps: Vec<Step>,
    /// The IPAM plugin, called alone (for its own RSS and time).
    pub(super) ipam: PathBuf,
    /// The node's network namespace, entered by each child before exec.
    pub(super) ns: std::fs::File,
}

/// Spawn `cmd` with the calling thread inside `ns` for the moment of the
/// spawn (the child inherits the thread's namespace), then return the
/// thread to where it was. So std can spawn with posix_spawn (clone with
/// CLONE_VM|CLONE_VFORK, as Go runtimes like containerd do) instead of
/// fork + a pre_exec hook: a fork of this multi-threaded benchmark, or
/// `ip netns exec` (which also remounts /sys), would add milliseconds to
/// every plugin call and measure the harness, not the plugins. None of the
/// six plugins reads /sys.
pub(super) fn spawn_in(
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
pub(super) struct Run {
    pub(super) took: Duration,
    /// User + system CPU of the process and the children it waited for
    /// (robust to a loaded machine, unlike wall time).
    pub(super) cpu: Duration,
    /// Peak RSS in KiB (GNU time's %M = its child's ru_maxrss), -1 when
    /// not measured.
    pub(super) maxrss_kib: i64,
    pub(super) stdout: Vec<u8>,
}

/// One chain invocation: total time, per-step runs, the final result.
pub(super) struct ChainRun {
    pub(super) total: Duration,
    /// CPU of all its plugin processes and their children.
    pub(super) cpu: Duration,
    pub(super) steps: Vec<Run>,
    pub(super) result: Value,
}

pub(super) type BenchResult<T> = Result<T, String>;

/// GNU time, which reports its child's ru_maxrss (`%M`).
const GNU_TIME: &str = "/usr/bin/time";

/// Raised by SIGINT/SIGTERM; checked between samples so the topology is
/// removed by the normal path.
pub(super) static INTERRUPTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

pub(super) fn check_interrupt() -> BenchResult<()> {
    if INTERRUPTED.get().is_some_and(|f| f.load(Ordering::SeqCst)) {
        Err("interrupted".into())
    } else {
        Ok(())
    }
}

impl Chain {
    /// One plugin process, as a runtime starts it, timed from spawn to
    /// exit and reaped with wait4 for its rusage.
    pub(super) fn exec(
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
    pub(super) fn invoke(
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

pub(super) fn pod_ranges(node: &Node) -> (ipnet::Ipv6Net, ipnet::Ipv6Net) {
    (
        Node::pod_range(&node.ula_prefix, 1),
        Node::pod_range(&node.gua_prefix, 1),
    )
}

pub(super) fn gateway(range: &ipnet::Ipv6Net) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::from(u128::from(range.network()) | 1)
}

pub(super) fn chains(
    topo: &Topology,
    bin_dir: &Path,
    reference_dir: &Path,
) -> BenchResult<[Chain; 2]> {
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

pub(super) fn nth(net: &ipnet::Ipv6Net, k: u128) -> String {
    std::net::Ipv6Addr::from(u128::from(net.network()) | k).to_string()
}
