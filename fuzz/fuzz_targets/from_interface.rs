//! fromInterface: the node prefix derived from an interface address and
//! prefix length for a node prefix length L. Input: 16 address bytes,
//! the interface prefix length, L. A success is a prefix of length L
//! containing the address.
#![no_main]
use ipam_prefix::plan::NodePrefix;
use libfuzzer_sys::fuzz_target;
use std::net::Ipv6Addr;

fuzz_target!(|data: &[u8]| {
    if data.len() < 18 {
        return;
    }
    let addr = Ipv6Addr::from(<[u8; 16]>::try_from(&data[..16]).unwrap());
    let (plen, len) = (data[16], data[17]);
    if let Ok(p) = NodePrefix::from_interface(addr, plen, len) {
        assert_eq!(p.prefix_len(), len);
        assert!(p.net().contains(&addr), "{p:?} does not contain {addr}");
    }
});
