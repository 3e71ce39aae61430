//! Samples and their rows, the background fill, the parallel burst and
//! small formatting helpers.

use super::*;

/// Samples of one (operation, chain) row.
#[derive(Default, Clone)]
pub(super) struct Samples(pub(super) Vec<Duration>);

impl Samples {
    pub(super) fn pct(&self, p: f64) -> Duration {
        let mut v = self.0.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[i.min(v.len() - 1)]
    }
    pub(super) fn max(&self) -> Duration {
        self.0.iter().max().copied().unwrap_or_default()
    }
}

/// A directory as the report shows it: relative to the repository, or not at
/// all, so a pasted report carries no path of the machine it ran on.
pub(super) fn shown_dir(dir: &Path) -> String {
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
pub(super) fn kernel_version(osrelease: &str) -> &str {
    osrelease.split(['-', '+']).next().unwrap_or(osrelease)
}

pub(super) fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub(super) fn ms(d: Duration) -> String {
    format!("{:.2}ms", d.as_secs_f64() * 1e3)
}

/// Peak RSS per (chain, process kind), KiB.
#[derive(Default)]
pub(super) struct Rss(pub(super) Mutex<BTreeMap<(usize, String), i64>>);

impl Rss {
    pub(super) fn note(&self, chain: usize, what: &str, kib: i64) {
        if kib < 0 {
            return; // not measured (a timed run)
        }
        let mut m = self.0.lock().unwrap();
        let e = m.entry((chain, what.to_string())).or_insert(0);
        *e = (*e).max(kib);
    }
    pub(super) fn chain_run(&self, chain: usize, verb: &str, c: &Chain, r: &ChainRun) {
        for (s, run) in c.steps.iter().zip(&r.steps) {
            self.note(chain, &format!("{} {verb}", s.role), run.maxrss_kib);
        }
    }
}

/// Attach pods through a chain with a few workers (not timed).
pub(super) fn fill(
    chain: &Chain,
    pods: &[Pod],
    workers: usize,
    rss: &Rss,
    idx: usize,
) -> BenchResult<()> {
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
pub(super) fn parallel(
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
pub(super) fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .map(|a| a.split('/').next().unwrap_or(a).to_string())
        .collect()
}

pub(super) struct Row {
    pub(super) op: String,
    pub(super) label: &'static str,
    pub(super) samples: Samples,
}
