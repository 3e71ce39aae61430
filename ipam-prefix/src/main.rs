fn main() {
    cni_common::dispatch::run(&ipam_prefix::IpamPrefix)
}
