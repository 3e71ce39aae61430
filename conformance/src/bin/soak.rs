//! The soak (issue 8): ADD/DEL cycles of the full chain at random
//! concurrency with random SIGKILLs, GC with the survivors, then leaks,
//! errors by code, peak RSS and latency per window. Logic and method in
//! `conformance::soak`. Exit 1 when anything leaked or a plugin broke the
//! protocol.
//!
//! `cargo run --release -p conformance --bin soak -- --cycles 10000 --max-concurrency 32 --kill-rate 0.05`

use clap::Parser;
use conformance::soak::{self, SoakOptions};

#[derive(Debug, Parser)]
#[command(about = "Soak the bridge6 + ipam-prefix + firewall6 chain: cycles, kills, GC, leaks")]
struct Args {
    /// ADD/DEL cycles in all.
    #[arg(long, default_value_t = 10_000)]
    cycles: usize,
    /// Largest batch of simultaneous cycles (each batch is 1..=this).
    #[arg(long, default_value_t = 32)]
    max_concurrency: usize,
    /// Probability that a plugin call is SIGKILLed.
    #[arg(long, default_value_t = 0.05)]
    kill_rate: f64,
    /// Random seed (the same seed gives the same batches and kill choices).
    #[arg(long, default_value_t = 8)]
    seed: u64,
    /// Cycles per latency window.
    #[arg(long, default_value_t = 1000)]
    window: usize,
    /// DEL without prevResult (a runtime that lost its result cache)
    /// instead of libcni's cached ADD result.
    #[arg(long)]
    del_without_prev_result: bool,
    /// Also print the report as one JSON line.
    #[arg(long)]
    json: bool,
}

fn main() {
    let a = Args::parse();
    conformance::harness::install_cleanup_panic_hook();
    assert!(a.max_concurrency >= 1 && (0.0..=1.0).contains(&a.kill_rate));
    std::thread::spawn(|| {
        let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT])
            .expect("SIGINT handler");
        if signals.forever().next().is_some() {
            eprintln!("soak: interrupted, finishing the batch, then GC and cleanup");
            soak::STOP.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let opts = SoakOptions {
        cycles: a.cycles,
        max_concurrency: a.max_concurrency,
        kill_rate: a.kill_rate,
        seed: a.seed,
        window: a.window,
        del_prev_result: !a.del_without_prev_result,
    };
    let r = soak::run(&opts, |p| eprintln!("soak: {p}"));
    print!("{}", r.text());
    if a.json {
        println!("{}", r.to_json());
    }
    for v in r.protocol_violations.iter().take(10) {
        eprintln!("protocol violation: {v}");
    }
    if r.leaks() > 0 || !r.protocol_violations.is_empty() {
        eprintln!(
            "soak: FAILED ({} leak(s), {} protocol violation(s))",
            r.leaks(),
            r.protocol_violations.len()
        );
        std::process::exit(1);
    }
}
