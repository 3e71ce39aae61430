//! Fuzz target `result_roundtrip`: the body and its properties are `cni6_fuzz::result_roundtrip`
//! (fuzz/src/lib.rs), which the normal test suite also runs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cni6_fuzz::result_roundtrip(data));
