//! bridge6's keys (and a requested MAC) on arbitrary stdin.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(conf) = cni_common::config::NetConf::parse(data) {
        let _ = bridge6::config::Config::parse(&conf);
        let _ = bridge6::config::requested_mac(&conf, &Default::default());
    }
});
