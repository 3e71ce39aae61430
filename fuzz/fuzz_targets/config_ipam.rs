//! Fuzz target `config_ipam`: the body and its properties are `cni6_fuzz::config_ipam`
//! (fuzz/src/lib.rs), which the normal test suite also runs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cni6_fuzz::config_ipam(data));
