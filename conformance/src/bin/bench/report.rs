//! cni6's chain sampled alone, and the printed report.

use super::*;

/// p50s of cni6's chain sampled alone (see the call in run_bench).
pub(super) struct Alone {
    pub(super) add: Duration,
    pub(super) del: Duration,
    pub(super) fw_add: Duration,
    pub(super) fw_del: Duration,
    pub(super) cpu_add: Duration,
    pub(super) cpu_del: Duration,
}

pub(super) fn sample_alone(
    chain: &Chain,
    pod: &Pod,
    size: usize,
    rounds: usize,
) -> BenchResult<Alone> {
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

pub(super) fn print_alone(alone: &[(usize, Alone)]) {
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

pub(super) fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "-".to_string()
    } else {
        format!("{:.2}x", a / b)
    }
}

pub(super) fn print_report(
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
