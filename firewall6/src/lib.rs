//! firewall6: the chained ip6tables plugin of cni6 (issue 4).
//!
//! Placeholder doc, rewritten below once numbers are measured.

pub mod config;
pub mod error;
pub mod iptables;
pub mod plugin;
pub mod rules;
