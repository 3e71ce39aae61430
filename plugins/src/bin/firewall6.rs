//! The `firewall6` CNI plugin binary: everything happens in the library.

fn main() {
    cni_common::dispatch::run(&firewall6::plugin::Firewall6)
}
