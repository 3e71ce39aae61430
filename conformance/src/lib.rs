//! Black-box conformance suite and benchmark for cni6: helpers that run the
//! built plugin binaries exactly as a runtime would, in network namespaces
//! the tests create and always remove.

pub mod attacks;
pub mod bridge_helpers;
pub mod chain;
pub mod corpus;
pub mod cri;
pub mod datapath;
pub mod firewall_helpers;
pub mod harness;
pub mod ipam;
pub mod realruntime;
pub mod soak;

// The lab moved to its own crate (netlab) so `cni6 demo` does not link the
// test harness; the suites keep their `conformance::topology` paths.
pub use netlab::{fabric, topology};
