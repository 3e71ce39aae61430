//! The runtime's conflist parser (cni6, the demo and the tests read
//! conflists written by people).
#![no_main]
use cni_common::runtime::ConfList;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = ConfList::parse(data) {
        let _ = l.plugin_types();
        let _ = (l.has_check(), l.has_gc_status());
    }
});
