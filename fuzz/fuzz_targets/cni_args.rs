//! Fuzz target `cni_args`: the body and its properties are `cni6_fuzz::cni_args`
//! (fuzz/src/lib.rs), which the normal test suite also runs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cni6_fuzz::cni_args(data));
