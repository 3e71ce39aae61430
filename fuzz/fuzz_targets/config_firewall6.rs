//! firewall6's keys on arbitrary stdin.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(conf) = cni_common::config::NetConf::parse(data) {
        let _ = firewall6::config::FirewallConf::from_raw(&conf.raw);
    }
});
