//! Fuzz target `store_record`: the body and its properties are `cni6_fuzz::store_record`
//! (fuzz/src/lib.rs), which the normal test suite also runs.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| cni6_fuzz::store_record(data));
