//! One whole benchmark run: both chains at every background size.

use super::*;

pub(super) fn run_bench(
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
