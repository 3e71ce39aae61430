//! CNI_ARGS: parse never panics; what it accepts can be checked for known
//! keys and read back.
#![no_main]
use cni_common::env::{CniArgs, K8S_ARGS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = CniArgs::parse(s) {
        let _ = a.check_known(K8S_ARGS);
        let _ = a.ignore_unknown();
        let _ = (a.pod_name(), a.pod_namespace());
        for (k, v) in &a.pairs {
            assert_eq!(a.get(k), Some(v.as_str()));
        }
    }
});
