//! `--profile`: perf's view of where the CPU of a path goes.

use super::*;

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
pub(super) fn profile(labs: &[Lab], opts: &Options) -> Result<Vec<Profile>> {
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

pub(super) fn render_profiles(profiles: &[Profile], o: &mut String) {
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
