//! firewall6 reads `ip6tables-save` output back (DEL and GC find rules by
//! their comments): one line of it.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for line in s.lines() {
        let _ = firewall6::rules::parse_rule(line);
    }
});
