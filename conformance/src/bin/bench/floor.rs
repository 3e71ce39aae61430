//! The floor: what the pieces of an attachment cost without a plugin.

use super::*;

/// p50s of the floor's pieces.
pub(super) struct Floor {
    pub(super) spawn: Duration,
    pub(super) node: Duration,
    pub(super) pod: Duration,
    pub(super) rules: Duration,
    /// `ip link del` of the host end (the pair goes with it).
    pub(super) del_link: Duration,
    /// ip6tables-restore deleting the five rules.
    pub(super) del_rules: Duration,
}

/// One command in the node, stdin fed, timed from spawn to exit.
pub(super) fn timed(chain: &Chain, argv: &[&str], stdin: &str) -> BenchResult<Duration> {
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
pub(super) fn floor(topo: &Topology, chain: &Chain, pod: &Pod, runs: usize) -> BenchResult<Floor> {
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
pub(super) fn settle() -> BenchResult<()> {
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
