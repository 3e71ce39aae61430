//! Fuzz target `config_bridge6`: the body and its properties are `cni6_fuzz::config_bridge6`
//! (fuzz/src/lib.rs), which the normal test suite also runs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cni6_fuzz::config_bridge6(data));
