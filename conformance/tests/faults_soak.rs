//! The soak at CI size (conformance::soak; the full run is
//! `cargo run --release -p conformance --bin soak`): 200 cycles of the full
//! chain at random concurrency up to 32 with 5 % of plugin calls SIGKILLed,
//! then GC with the survivors. Nothing may leak, every call that was not
//! killed must succeed, and nothing may break the protocol (docs/design.md: "A
//! plugin killed at any point leaves state that a later DEL or GC removes").

use conformance::soak::{self, SoakOptions};

#[test]
fn soak_200_cycles_with_kills_leaks_nothing() {
    let opts = SoakOptions {
        cycles: 200,
        max_concurrency: 32,
        kill_rate: 0.05,
        seed: 8,
        window: 100,
        del_prev_result: true,
    };
    let r = soak::run(&opts, |p| eprintln!("soak: {p}"));
    eprintln!("{}", r.text());
    assert_eq!(r.cycles, 200);
    assert!(r.kills > 0, "the run killed nothing: it proves nothing");
    assert_eq!(r.leaks(), 0, "{}", r.text());
    assert!(
        r.protocol_violations.is_empty(),
        "{:#?}",
        r.protocol_violations
    );
    let unexpected: Vec<_> = r
        .errors
        .keys()
        .filter(|k| !k.ends_with(" killed"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "errors not caused by a kill: {unexpected:?}\n{}",
        r.text()
    );
}
