//! prevResult / results of every version: parse never panics, and what
//! we emit in a version parses back to the same thing in that version
//! (to_json(parse(to_json(r, v)), v) == to_json(r, v)); at the latest
//! version nothing is lost (parse(to_json(r)) == r). Conversion of the
//! raw value (cni_common::result::convert) must not panic either.
#![no_main]
use cni_common::result::{convert, CniResult};
use cni_common::version::{self, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for &ver in version::ALL {
        let _ = convert(&v, ver);
    }
    let Ok(r) = CniResult::parse(&v) else { return };
    for &ver in version::ALL {
        let j = r.to_json(ver);
        let back = CniResult::parse(&j)
            .unwrap_or_else(|e| panic!("our own {ver} output does not parse: {e}\n{j}"));
        assert_eq!(back.to_json(ver), j, "{ver} round trip changed the result");
        if ver == version::LATEST {
            assert_eq!(back, r, "latest-version round trip lost something");
        }
    }
    let _: Version = version::LATEST;
});
