fn main() {
    cni_common::dispatch::run(&firewall6::plugin::Firewall6)
}
