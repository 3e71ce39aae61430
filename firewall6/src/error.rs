//! The one error type of firewall6, mapped once to CNI codes in the
//! `From` impl below.

use cni_common::error::code;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed known config key (error 7 naming key, value, expectation).
    #[error("invalid network config: {key}={value}: expected {expected}")]
    Config {
        key: String,
        value: String,
        expected: String,
    },

    #[error("firewall6 is a chained plugin: {0} needs prevResult (the result of the plugin before it in the conflist)")]
    MissingPrevResult(&'static str),

    /// A problem cni-common already classified (prevResult decoding).
    #[error(transparent)]
    Common(#[from] cni_common::Error),

    /// ip6tables or ip6tables-restore is not installed where we look.
    #[error("{name} not found in {searched}: install the iptables package (firewall6 needs ip6tables only, not iptables)")]
    BinaryMissing {
        name: &'static str,
        searched: String,
    },

    /// The kernel lacks what anti-spoofing of bridged traffic needs.
    #[error("bridged pod traffic is invisible to ip6tables: {0}")]
    BridgeNetfilter(String),

    #[error("{what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// ip6tables ran and failed.
    #[error("{what} failed ({status}): {stderr}")]
    Exec {
        what: String,
        status: String,
        stderr: String,
    },

    #[error("{0}")]
    CheckFailed(String),

    /// DEL or GC kept going and collected these.
    #[error("{} rule removal(s) failed: {}", .0.len(), .0.join("; "))]
    Cleanup(Vec<String>),

    #[error("lock {path}: {source}")]
    Lock {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub fn config(
        key: impl Into<String>,
        value: impl ToString,
        expected: impl Into<String>,
    ) -> Self {
        Error::Config {
            key: key.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
}

impl From<Error> for cni_common::Error {
    fn from(e: Error) -> Self {
        use cni_common::Error as C;
        match e {
            Error::Config {
                key,
                value,
                expected,
            } => C::InvalidConfig {
                key,
                value,
                expected,
            },
            e @ Error::MissingPrevResult(_) => C::config("prevResult", "(absent)", e.to_string()),
            Error::Common(c) => c,
            e @ (Error::BinaryMissing { .. } | Error::BridgeNetfilter(_)) => {
                C::Unavailable(e.to_string())
            }
            Error::Spawn { what, source } => C::io(what, source),
            e @ (Error::Exec { .. } | Error::Cleanup(_)) => C::Plugin {
                code: code::KERNEL,
                msg: e.to_string(),
                details: String::new(),
            },
            Error::CheckFailed(m) => C::CheckFailed(m),
            Error::Lock { path, source } => C::io(format!("lock {path}"), source),
        }
    }
}
