//! The one error type of ipam-prefix, mapped once to a CNI code in
//! `From<IpamError> for cni_common::Error`.
//!
//! Codes chosen where the spec leaves room (documented in lib.rs too):
//! - an exhausted pool is 50 ("cannot service ADD"), the code STATUS uses
//!   for the same condition; not 11, because retrying does not help;
//! - a requested address held by another attachment is 7: the request
//!   (`args.cni.ips`, `runtimeConfig.ips`, `CNI_ARGS IP=`) cannot be honoured
//!   as given;
//! - store and lock failures are 5 (I/O), netlink failures 101 (kernel).

use cni_common::Error;
use std::io;

pub type Result<T, E = IpamError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// A malformed or inconsistent config key (code 7).
    #[error("invalid network config: {key}={value}: expected {expected}")]
    Config {
        key: String,
        value: String,
        expected: String,
    },

    /// A `fromInterface` prefix could not be read from the host (7 on
    /// ADD/CHECK, 50 on STATUS).
    #[error("invalid network config: {key}={ifname:?}: expected a host interface with a {scope} IPv6 address ({reason})")]
    Resolve {
        key: String,
        ifname: String,
        scope: &'static str,
        reason: String,
    },

    /// The requested address belongs to another attachment (code 7).
    #[error("requested address {address} (slot {slot}) is already allocated to {owner}")]
    SlotTaken {
        address: String,
        slot: String,
        owner: String,
    },

    /// Every slot of the pod range is taken (code 50).
    #[error("no free address in {ranges}: all {capacity} pod slots are allocated")]
    RangeFull { ranges: String, capacity: u128 },

    /// The store or its lock failed (code 5).
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: io::Error,
    },

    /// Netlink failed while reading interface addresses (code 101).
    #[error("{context}: {source}")]
    Kernel {
        context: String,
        #[source]
        source: io::Error,
    },

    /// CHECK found the reservation not as ADD made it.
    #[error("{0}")]
    Check(String),

    /// STATUS: this plugin cannot serve ADD right now (code 50).
    #[error("{0}")]
    Unavailable(String),

    /// Several failures of a best-effort pass (GC, reboot release); the
    /// code is the first one's.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<IpamError>),

    /// Errors raised by cni-common helpers, passed through unchanged.
    #[error(transparent)]
    Cni(#[from] Error),
}

impl IpamError {
    /// The value is shortened: `msg` is the short form (conformance.md #68) and a
    /// hostile config may carry megabytes in one key.
    pub fn config(
        key: impl Into<String>,
        value: impl ToString,
        expected: impl Into<String>,
    ) -> Self {
        IpamError::Config {
            key: key.into(),
            value: cni_common::error::shorten(value.to_string()),
            expected: expected.into(),
        }
    }

    pub fn store(context: impl Into<String>, source: io::Error) -> Self {
        IpamError::Store {
            context: context.into(),
            source,
        }
    }
}

impl From<IpamError> for Error {
    fn from(e: IpamError) -> Error {
        match e {
            IpamError::Config {
                key,
                value,
                expected,
            } => Error::InvalidConfig {
                key,
                value, // already shortened by IpamError::config
                expected,
            },
            e @ (IpamError::Resolve { .. } | IpamError::SlotTaken { .. }) => {
                // Keep our wording; the code is 7.
                Error::Plugin {
                    code: cni_common::error::code::INVALID_CONFIG,
                    msg: e.to_string(),
                    details: String::new(),
                }
            }
            e @ IpamError::RangeFull { .. } => Error::Unavailable(e.to_string()),
            IpamError::Store { context, source } => Error::io(context, source),
            IpamError::Kernel { context, source } => Error::kernel(context, source),
            IpamError::Check(m) => Error::CheckFailed(m),
            IpamError::Unavailable(m) => Error::Unavailable(m),
            IpamError::Many(v) => {
                let msg = v
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                let code = v
                    .into_iter()
                    .next()
                    .map(|e| Error::from(e).code())
                    .unwrap_or(cni_common::error::code::INTERNAL);
                Error::Plugin {
                    code,
                    msg,
                    details: String::new(),
                }
            }
            IpamError::Cni(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut() {
        let e = IpamError::config("ipam.prefixes[0].node", "x".repeat(1 << 20), "a prefix");
        let m = Error::from(e).to_string();
        assert!(m.len() < 512, "{}", m.len());
        assert!(m.contains("(1048576 bytes)"), "{m}");
    }
}
