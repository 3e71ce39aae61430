//! Black-box conformance suite and benchmark for cni6: helpers that run the
//! built plugin binaries exactly as a runtime would, in network namespaces
//! the tests create and always remove.

pub mod attacks;
pub mod bridge_helpers;
pub mod chain;
pub mod corpus;
pub mod datapath;
pub mod fabric;
pub mod firewall_helpers;
pub mod harness;
pub mod ipam;
pub mod realruntime;
pub mod soak;
pub mod topology;
