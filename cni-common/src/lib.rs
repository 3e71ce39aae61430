//! cni-common: what every cni6 plugin and tool shares.
//!
//! - [`error`]: the one error type and its CNI codes;
//! - [`attachment`]: the identity (network, container id, ifname) every
//!   plugin keys its state by;
//! - [`version`], [`env`], [`config`], [`result`]: the protocol's types,
//!   parsed leniently and emitted strictly in the requested version;
//! - [`dispatch`]: the plugin entry point (VERSION, validation, output) and
//!   the [`dispatch::Plugin`] trait each plugin implements,
//!   with [`calllog`] for the optional per-call `logFile`;
//! - [`delegate`]: running the IPAM plugin;
//! - [`netns`], [`netlink`]: safe namespace entry and synchronous netlink;
//! - [`runtime`]: a libcni-like executor of whole conflists;
//! - [`file`]: replacing a small state file atomically;
//! - [`keys`]: near-miss (typo) detection for config keys.

pub mod attachment;
pub mod calllog;
pub mod config;
pub mod delegate;
pub mod dispatch;
pub mod env;
pub mod error;
pub mod file;
pub mod keys;
pub mod netlink;
pub mod netns;
pub mod result;
pub mod runtime;
pub mod version;

pub use error::{Error, Result};

/// Helpers shared by this crate's unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::HashMap;

    /// An environment lookup (as the dispatcher takes it) over `pairs`.
    pub fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }
}
