//! The namespace lab that `cni6 demo` and the conformance suite share: a
//! multi-node cluster in network namespaces (nodes, pods, the underlay,
//! external hosts) and its fabric daemons, with the RAII guards that keep
//! a shared machine clean. An ordinary library: no test-only dependencies,
//! so the shipped `cni6` links no test harness.
//!
//! - [`topology`]: nodes, pods, hosts and the underlay; runs the plugins
//!   inside a node namespace as that node's host;
//! - [`fabric`]: BIRD route reflector, NAT64 (tayga) and DNS64 (unbound);
//! - [`netns`]: a uniquely named namespace deleted on drop, unique names,
//!   the clean-up panic hook;
//! - [`bins`]: where our binaries and the upstream peers are found.

pub mod bins;
pub mod fabric;
pub mod netns;
pub mod topology;
