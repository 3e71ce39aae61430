//! Fuzz target `config_firewall6`: the body and its properties are `cni6_fuzz::config_firewall6`
//! (fuzz/src/lib.rs), which the normal test suite also runs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cni6_fuzz::config_firewall6(data));
