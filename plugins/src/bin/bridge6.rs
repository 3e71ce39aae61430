//! The `bridge6` CNI plugin binary: everything happens in the library.

fn main() {
    cni_common::dispatch::run(&bridge6::plugin::Bridge6)
}
