//! The `ipam-prefix` CNI plugin binary: everything happens in the library.

fn main() {
    cni_common::dispatch::run(&ipam_prefix::IpamPrefix)
}
