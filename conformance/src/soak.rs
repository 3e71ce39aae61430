//! The soak: many ADD/DEL cycles of the full chain (bridge6 + ipam-prefix +
//! firewall6, the release binaries, in one node namespace) at random
//! concurrency with random SIGKILLs of plugin processes, then GC with the
//! surviving set, then a count of everything that leaked. Run by
//! `cargo run --release -p conformance --bin soak -- --cycles 10000
//! --max-concurrency 32 --kill-rate 0.05`; a tiny run is a test
//! (`tests/faults_soak.rs`).
//!
//! A cycle is what a runtime does for one pod: make the pod namespace,
//! ADD the chain, DEL it (with the cached result as prevResult when the
//! whole ADD succeeded, as libcni does), remove the namespace. A plugin call is killed
//! with probability `kill_rate`, after a random delay of up to 25 ms (so
//! anywhere from before exec to after it finished). After a killed or
//! failed ADD the runtime DELs (conformance.md #82); a killed DEL is NOT retried:
//! that attachment is left for GC, exactly the debris GC exists for. The
//! pods of the last batch stay alive: GC must keep them and remove the rest.
//!
//! Leaks are read from the kernel and the disk after GC: host veths, store
//! records, slot links and per-pod rules that do not belong to a survivor;
//! then the survivors are DELed and the node must be empty.

use crate::chain::Chain;
use crate::harness::{self, Invocation, Netns, Output};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Set (e.g. by a SIGINT handler) to stop after the current batch; the
/// GC, the leak count and the cleanup still run.
pub static STOP: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone)]
pub struct SoakOptions {
    pub cycles: usize,
    pub max_concurrency: usize,
    pub kill_rate: f64,
    pub seed: u64,
    /// Cycles per latency window.
    pub window: usize,
    /// DEL gets the cached ADD result as prevResult, as libcni does (false:
    /// never, like a runtime that lost its cache: firewall6 then reads the
    /// whole table per DEL).
    pub del_prev_result: bool,
}

/// p50/p99 of the chain's ADD and DEL in one window of cycles.
#[derive(Debug, Clone)]
pub struct Window {
    pub first_cycle: usize,
    pub cycles: usize,
    pub add_p50_ms: f64,
    pub add_p99_ms: f64,
    pub del_p50_ms: f64,
    pub del_p99_ms: f64,
}

#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    pub cycles: usize,
    /// Plugin processes started (ADD, DEL and GC calls).
    pub operations: u64,
    pub kills: u64,
    /// "<plugin> <CMD> <outcome>" → count, for every call that did not
    /// succeed: `code N`, `killed`, or `no JSON` (never expected).
    pub errors: BTreeMap<String, u64>,
    pub survivors: usize,
    /// Debris GC found (records, slot links, pod rules of non-survivors:
    /// what killed DELs left), so a zero leak count means GC cleaned it.
    pub debris_before_gc: usize,
    pub leaked_veths: Vec<String>,
    pub leaked_records: Vec<String>,
    pub leaked_slot_links: usize,
    pub leaked_rules: Vec<String>,
    /// After DEL of the survivors: anything at all left.
    pub left_at_end: Vec<String>,
    /// Largest max RSS of any reaped child (plugins, ip), KiB.
    pub peak_child_rss_kib: i64,
    pub windows: Vec<Window>,
    pub elapsed: Duration,
    /// Calls that printed no JSON or panicked without being killed.
    pub protocol_violations: Vec<String>,
}

impl SoakReport {
    pub fn leaks(&self) -> usize {
        self.leaked_veths.len()
            + self.leaked_records.len()
            + self.leaked_slot_links
            + self.leaked_rules.len()
            + self.left_at_end.len()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "cycles": self.cycles,
            "operations": self.operations,
            "kills": self.kills,
            "errors": self.errors,
            "survivors": self.survivors,
            "debrisBeforeGc": self.debris_before_gc,
            "leakedVeths": self.leaked_veths.len(),
            "leakedRecords": self.leaked_records.len(),
            "leakedSlotLinks": self.leaked_slot_links,
            "leakedRules": self.leaked_rules.len(),
            "leftAtEnd": self.left_at_end.len(),
            "peakChildRssKiB": self.peak_child_rss_kib,
            "elapsedSeconds": self.elapsed.as_secs_f64(),
            "protocolViolations": self.protocol_violations.len(),
            "windows": self.windows.iter().map(|w| json!({
                "firstCycle": w.first_cycle, "cycles": w.cycles,
                "addP50ms": w.add_p50_ms, "addP99ms": w.add_p99_ms,
                "delP50ms": w.del_p50_ms, "delP99ms": w.del_p99_ms,
            })).collect::<Vec<_>>(),
        })
    }

    /// Human-readable summary.
    pub fn text(&self) -> String {
        let mut s = format!(
            "cycles {} | plugin calls {} | SIGKILLs {} | {:.1} s ({:.1} cycles/s)\n",
            self.cycles,
            self.operations,
            self.kills,
            self.elapsed.as_secs_f64(),
            self.cycles as f64 / self.elapsed.as_secs_f64().max(1e-9)
        );
        s += "errors by plugin/command/outcome:\n";
        if self.errors.is_empty() {
            s += "  none\n";
        }
        for (k, v) in &self.errors {
            s += &format!("  {k}: {v}\n");
        }
        s += &format!(
            "before GC: {} object(s) of dead attachments (records, slot links, pod rules left by killed DELs)\n",
            self.debris_before_gc
        );
        s += &format!(
            "after GC (survivors kept: {}): leaked veths {} | leaked store records {} | leaked slot links {} | leaked firewall rules {}\n",
            self.survivors,
            self.leaked_veths.len(),
            self.leaked_records.len(),
            self.leaked_slot_links,
            self.leaked_rules.len()
        );
        s += &format!(
            "after DEL of the survivors: {} object(s) left {:?}\n",
            self.left_at_end.len(),
            self.left_at_end
        );
        s += &format!(
            "protocol violations (no JSON / panic without a kill): {}\n",
            self.protocol_violations.len()
        );
        s += &format!(
            "peak RSS of a plugin process: {} KiB\n",
            self.peak_child_rss_kib
        );
        s += "latency of the whole chain, per window (ms):\n  cycles        ADD p50  ADD p99  DEL p50  DEL p99\n";
        for w in &self.windows {
            s += &format!(
                "  {:>5}-{:<5}  {:>7.1}  {:>7.1}  {:>7.1}  {:>7.1}\n",
                w.first_cycle,
                w.first_cycle + w.cycles - 1,
                w.add_p50_ms,
                w.add_p99_ms,
                w.del_p50_ms,
                w.del_p99_ms
            );
        }
        s
    }
}

#[derive(Default)]
struct Tally {
    operations: u64,
    kills: u64,
    errors: BTreeMap<String, u64>,
    violations: Vec<String>,
    /// (cycle index, ADD ms, DEL ms)
    latencies: Vec<(usize, f64, f64)>,
}

/// One plugin call, SIGKILLed after a random delay with probability
/// `kill_rate`. Returns the output and whether it was killed.
fn call(inv: &Invocation, rng: &mut fastrand::Rng, kill_rate: f64, tally: &Mutex<Tally>) -> Output {
    let kill = rng.f64() < kill_rate;
    let delay = Duration::from_micros(rng.u64(0..25_000));
    let mut running = inv.spawn();
    if kill {
        std::thread::sleep(delay);
        running.kill();
    }
    let out = running.wait();
    let plugin = inv_name(&out);
    let cmd = inv.env_value("CNI_COMMAND").unwrap_or("?").to_string();
    let mut t = tally.lock().unwrap();
    t.operations += 1;
    let killed = out.signal == Some(libc::SIGKILL);
    if killed {
        t.kills += 1;
    }
    if !out.success() {
        let outcome = if killed {
            "killed".to_string()
        } else {
            match out.json.as_ref().and_then(|j| j["code"].as_u64()) {
                Some(c) => format!("code {c}"),
                None => "no JSON".to_string(),
            }
        };
        *t.errors
            .entry(format!("{plugin} {cmd} {outcome}"))
            .or_default() += 1;
    }
    if !killed
        && (out.stderr.contains("panicked")
            || (!out.success() && out.json.as_ref().and_then(|j| j["code"].as_u64()).is_none()))
    {
        t.violations
            .push(format!("{plugin} {cmd}: {} / {}", out.stdout, out.stderr));
    }
    out
}

fn inv_name(o: &Output) -> String {
    ["bridge6", "firewall6"]
        .into_iter()
        .find(|p| o.what.contains(&format!("/{p} ")))
        .unwrap_or("plugin")
        .to_string()
}

/// ADD the chain (stopping at the first failure), then, when `keep` is
/// false, DEL it. Returns the ms spent in ADD and DEL.
fn cycle(
    chain: &Chain,
    cid: &str,
    pod: &Netns,
    keep: bool,
    opts: &SoakOptions,
    rng: &mut fastrand::Rng,
    tally: &Mutex<Tally>,
) -> (f64, f64) {
    let netns = pod.path_str();
    let t0 = Instant::now();
    let kill = if keep { 0.0 } else { opts.kill_rate };
    let b = call(
        &chain.call("bridge6", "ADD", cid, &netns, &chain.bridge_conf("1.0.0")),
        rng,
        kill,
        tally,
    );
    // libcni caches the chain's result only when the whole ADD succeeded,
    // and hands it to DEL as prevResult.
    let mut cached = Value::Null;
    if b.success() {
        let prev = b.json.clone().unwrap_or(Value::Null);
        let f = call(
            &chain.call(
                "firewall6",
                "ADD",
                cid,
                &netns,
                &chain.firewall_conf("1.0.0", &prev),
            ),
            rng,
            kill,
            tally,
        );
        if f.success() && opts.del_prev_result {
            cached = f.json.clone().unwrap_or(Value::Null);
        }
    }
    let add_ms = t0.elapsed().as_secs_f64() * 1000.0;
    if keep {
        return (add_ms, f64::NAN);
    }
    let t1 = Instant::now();
    // Reverse order; a killed DEL is left for GC.
    let f = call(
        &chain.call(
            "firewall6",
            "DEL",
            cid,
            &netns,
            &chain.firewall_conf("1.0.0", &cached),
        ),
        rng,
        opts.kill_rate,
        tally,
    );
    if f.signal != Some(libc::SIGKILL) {
        call(
            &chain.call("bridge6", "DEL", cid, &netns, &chain.bridge_conf("1.0.0")),
            rng,
            opts.kill_rate,
            tally,
        );
    }
    (add_ms, t1.elapsed().as_secs_f64() * 1000.0)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

fn peak_child_rss_kib() -> i64 {
    // SAFETY: getrusage fills the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the struct outlives the call.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) };
    ru.ru_maxrss
}

/// Run the soak. `progress` gets a line per window.
pub fn run(opts: &SoakOptions, mut progress: impl FnMut(&str)) -> SoakReport {
    harness::require_root();
    let started = Instant::now();
    let chain = Chain::new("c6s");
    let tally = Mutex::new(Tally::default());
    let mut rng = fastrand::Rng::with_seed(opts.seed);
    let mut done = 0usize;
    let mut survivors: Vec<(String, Netns)> = Vec::new();
    let mut next_report = opts.window;
    while done < opts.cycles {
        let batch = rng.usize(1..=opts.max_concurrency).min(opts.cycles - done);
        let last = done + batch == opts.cycles || STOP.load(Ordering::Relaxed);
        let seeds: Vec<u64> = (0..batch).map(|_| rng.u64(..)).collect();
        let results: Vec<Option<(String, Netns)>> = std::thread::scope(|s| {
            let handles: Vec<_> = seeds
                .iter()
                .enumerate()
                .map(|(i, &seed)| {
                    let (chain, tally) = (&chain, &tally);
                    s.spawn(move || {
                        let mut rng = fastrand::Rng::with_seed(seed);
                        let pod = Netns::new("c6sp");
                        let cid = harness::container_id("soak");
                        let (a, d) = cycle(chain, &cid, &pod, last, opts, &mut rng, tally);
                        tally.lock().unwrap().latencies.push((done + i, a, d));
                        last.then_some((cid, pod))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("soak worker"))
                .collect()
        });
        survivors.extend(results.into_iter().flatten());
        done += batch;
        if last {
            break;
        }
        if done >= next_report || done == opts.cycles {
            let t = tally.lock().unwrap();
            progress(&format!(
                "{done}/{} cycles, {} calls, {} kills, {:.0} s",
                opts.cycles,
                t.operations,
                t.kills,
                started.elapsed().as_secs_f64()
            ));
            next_report += opts.window;
        }
    }
    // GC with the surviving set, as the runtime would after a restart.
    let valid: Vec<String> = survivors.iter().map(|(c, _)| c.clone()).collect();
    let mine = |s: &str| valid.iter().any(|c| s.contains(c.as_str()));
    let debris_before_gc = chain.records().iter().filter(|r| !mine(r)).count()
        + chain.slot_links().len().saturating_sub(valid.len())
        + chain.pod_rules().iter().filter(|r| !mine(r)).count();
    for o in chain.gc(&valid) {
        let mut t = tally.lock().unwrap();
        t.operations += 1;
        if !o.success() {
            *t.errors
                .entry(format!("{} GC failed", inv_name(&o)))
                .or_default() += 1;
            t.violations
                .push(format!("GC: {} / {}", o.stdout, o.stderr));
        }
    }
    let survivor_veths: Vec<String> = valid
        .iter()
        .map(|c| crate::bridge_helpers::expected_host_veth(&chain.network, c, "eth0"))
        .collect();
    let leaked_veths: Vec<String> = chain
        .host_veths()
        .into_iter()
        .filter(|v| !survivor_veths.contains(v))
        .collect();
    let leaked_records: Vec<String> = chain.records().into_iter().filter(|r| !mine(r)).collect();
    let leaked_slot_links = chain.slot_links().len().saturating_sub(valid.len());
    let leaked_rules: Vec<String> = chain.pod_rules().into_iter().filter(|r| !mine(r)).collect();
    // The survivors go too; then nothing may be left.
    for (cid, pod) in &survivors {
        for o in chain.del(cid, &pod.path_str()) {
            let mut t = tally.lock().unwrap();
            t.operations += 1;
            if !o.success() {
                *t.errors
                    .entry(format!("{} DEL (survivor) failed", inv_name(&o)))
                    .or_default() += 1;
            }
        }
    }
    let mut left_at_end = chain.host_veths();
    left_at_end.extend(chain.records());
    left_at_end.extend(chain.slot_links());
    left_at_end.extend(chain.pod_rules());
    let t = tally.into_inner().unwrap();
    let mut lat = t.latencies;
    lat.sort_by_key(|l| l.0);
    let windows = lat
        .chunks(opts.window.max(1))
        .map(|w| {
            let mut adds: Vec<f64> = w.iter().map(|l| l.1).collect();
            let mut dels: Vec<f64> = w.iter().map(|l| l.2).collect();
            Window {
                first_cycle: w[0].0,
                cycles: w.len(),
                add_p50_ms: percentile(&mut adds, 50.0),
                add_p99_ms: percentile(&mut adds, 99.0),
                del_p50_ms: percentile(&mut dels, 50.0),
                del_p99_ms: percentile(&mut dels, 99.0),
            }
        })
        .collect();
    SoakReport {
        cycles: done,
        operations: t.operations,
        kills: t.kills,
        errors: t.errors,
        survivors: survivors.len(),
        debris_before_gc,
        leaked_veths,
        leaked_records,
        leaked_slot_links,
        leaked_rules,
        left_at_end,
        peak_child_rss_kib: peak_child_rss_kib(),
        windows,
        elapsed: started.elapsed(),
        protocol_violations: t.violations,
    }
}
