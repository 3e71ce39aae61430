//! ipam-prefix's `ipam` keys (and requested addresses) on arbitrary stdin.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(conf) = cni_common::config::NetConf::parse(data) {
        let _ = ipam_prefix::config::IpamConfig::parse(&conf);
        let _ = ipam_prefix::config::data_dir(&conf);
        let _ = ipam_prefix::config::requested_ips(&conf, &Default::default());
    }
});
