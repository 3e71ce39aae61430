//! The one error type of cni-common and its mapping to CNI error codes.
//!
//! Every failure a plugin reports goes through [`Error`]; [`Error::code`] is
//! the single place where a failure becomes a spec code (conformance.md #69), and
//! [`Error::to_json`] the single place where it becomes the spec's error
//! object (conformance.md #68: printed on stdout, with `cniVersion`).

use serde_json::{json, Value};
use std::io;

/// Spec error codes (conformance.md #69). 100 and above are ours.
pub mod code {
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    pub const UNSUPPORTED_FIELD: u32 = 2;
    pub const UNKNOWN_CONTAINER: u32 = 3;
    pub const INVALID_ENV: u32 = 4;
    pub const IO_FAILURE: u32 = 5;
    pub const DECODE_FAILURE: u32 = 6;
    pub const INVALID_CONFIG: u32 = 7;
    pub const TRY_AGAIN: u32 = 11;
    pub const UNAVAILABLE: u32 = 50;
    pub const UNAVAILABLE_DEGRADED: u32 = 51;
    /// A bug: a panic caught by the hook, an invariant broken.
    pub const INTERNAL: u32 = 100;
    /// The kernel refused an operation (netlink, sysctl, netns).
    pub const KERNEL: u32 = 101;
    /// A CHECK found the attachment not as it was made.
    pub const CHECK_FAILED: u32 = 102;
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("incompatible CNI version {requested:?}: this plugin supports {supported}")]
    IncompatibleVersion {
        requested: String,
        supported: String,
    },

    #[error("unsupported field {key}={value}: {expected}")]
    UnsupportedField {
        key: String,
        value: String,
        expected: String,
    },

    #[error("missing environment variable(s): {}", .0.join(", "))]
    MissingEnv(Vec<&'static str>),

    #[error("invalid environment variable {var}={value:?}: expected {expected}")]
    InvalidEnv {
        var: String,
        value: String,
        expected: String,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("cannot decode {what}: {reason}")]
    Decode { what: String, reason: String },

    #[error("invalid network config: {key}={value}: expected {expected}")]
    InvalidConfig {
        key: String,
        value: String,
        expected: String,
    },

    #[error("try again later: {0}")]
    TryAgain(String),

    #[error("not available: {0}")]
    Unavailable(String),

    #[error("not available, existing pods may be degraded: {0}")]
    Degraded(String),

    #[error("{context}: {source}")]
    Kernel {
        context: String,
        #[source]
        source: io::Error,
    },

    #[error("check failed: {0}")]
    CheckFailed(String),

    /// An error reported by another plugin (a delegate) or carried through
    /// unchanged from a plugin crate's own error type.
    #[error("{msg}")]
    Plugin {
        code: u32,
        msg: String,
        details: String,
    },

    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn code(&self) -> u32 {
        use code::*;
        match self {
            Error::IncompatibleVersion { .. } => INCOMPATIBLE_VERSION,
            Error::UnsupportedField { .. } => UNSUPPORTED_FIELD,
            Error::MissingEnv(_) | Error::InvalidEnv { .. } => INVALID_ENV,
            Error::Io { .. } => IO_FAILURE,
            Error::Decode { .. } => DECODE_FAILURE,
            Error::InvalidConfig { .. } => INVALID_CONFIG,
            Error::TryAgain(_) => TRY_AGAIN,
            Error::Unavailable(_) => UNAVAILABLE,
            Error::Degraded(_) => UNAVAILABLE_DEGRADED,
            Error::Kernel { .. } => KERNEL,
            Error::CheckFailed(_) => CHECK_FAILED,
            Error::Plugin { code, .. } => *code,
            Error::Internal(_) => INTERNAL,
        }
    }

    /// Short form for `msg`; the full chain goes into `details`.
    pub fn details(&self) -> String {
        match self {
            Error::Plugin { details, .. } => details.clone(),
            Error::Io { source, .. } | Error::Kernel { source, .. } => {
                format!("os error: {source}")
            }
            _ => String::new(),
        }
    }

    pub fn to_json(&self, cni_version: &str) -> Value {
        let mut v = json!({
            "cniVersion": cni_version,
            "code": self.code(),
            "msg": self.to_string(),
        });
        let d = self.details();
        if !d.is_empty() {
            v["details"] = Value::String(d);
        }
        v
    }

    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn kernel(context: impl Into<String>, source: io::Error) -> Self {
        Error::Kernel {
            context: context.into(),
            source,
        }
    }

    pub fn config(
        key: impl Into<String>,
        value: impl ToString,
        expected: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            key: key.into(),
            value: shorten(value.to_string()),
            expected: expected.into(),
        }
    }

    pub fn env(
        var: impl Into<String>,
        value: impl Into<String>,
        expected: impl Into<String>,
    ) -> Self {
        Error::InvalidEnv {
            var: var.into(),
            value: shorten(value.into()),
            expected: expected.into(),
        }
    }

    pub fn decode(what: impl Into<String>, reason: impl ToString) -> Self {
        Error::Decode {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// True when a kernel/OS error only says the object is already gone;
    /// DEL treats these as success (conformance.md §3 #18).
    pub fn is_gone(&self) -> bool {
        match self {
            Error::Io { source, .. } | Error::Kernel { source, .. } => is_gone_io(source),
            _ => false,
        }
    }

    /// Parse a plugin's error JSON (a delegate's stdout).
    pub fn from_plugin_output(stdout: &[u8]) -> Option<Self> {
        let v: Value = serde_json::from_slice(stdout).ok()?;
        let code = v.get("code")?.as_u64()? as u32;
        Some(Error::Plugin {
            code,
            msg: v
                .get("msg")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            details: v
                .get("details")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
    }
}

/// Longest offending value echoed in an error message.
pub const MAX_VALUE_LEN: usize = 256;

/// `s` cut to [`MAX_VALUE_LEN`] bytes (on a character boundary) with its
/// size appended: `msg` is the short form (conformance.md #68) and a hostile
/// input may carry megabytes in one key or variable.
pub fn shorten(s: String) -> String {
    if s.len() <= MAX_VALUE_LEN {
        return s;
    }
    let mut end = MAX_VALUE_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &s[..end], s.len())
}

pub fn is_gone_io(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ESRCH) | Some(libc::ENXIO)
    ) || e.kind() == io::ErrorKind::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_json() {
        let e = Error::config(
            "ipam.subnetId",
            0,
            "an integer 1..=65535 other than 100 (0x64)",
        );
        assert_eq!(e.code(), 7);
        let j = e.to_json("1.0.0");
        assert_eq!(j["code"], 7);
        assert_eq!(j["cniVersion"], "1.0.0");
        assert!(j["msg"].as_str().unwrap().contains("ipam.subnetId=0"));
        assert!(j.get("details").is_none());
        assert_eq!(Error::MissingEnv(vec!["CNI_NETNS"]).code(), 4);
        assert!(Error::MissingEnv(vec!["CNI_NETNS", "CNI_IFNAME"])
            .to_string()
            .contains("CNI_NETNS, CNI_IFNAME"));
    }

    #[test]
    fn delegate_error_round_trip() {
        let out = br#"{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"x"}"#;
        let e = Error::from_plugin_output(out).unwrap();
        assert_eq!(e.code(), 11);
        assert_eq!(e.to_json("1.0.0")["details"], "x");
        assert!(Error::from_plugin_output(b"garbage").is_none());
    }

    #[test]
    fn long_values_are_shortened() {
        let e = Error::config("name", "x".repeat(1 << 20), "a name");
        let m = e.to_string();
        assert!(
            m.len() < 512 && m.contains("(1048576 bytes)"),
            "{}",
            m.len()
        );
        assert!(
            Error::env("CNI_IFNAME", "y".repeat(300), "short")
                .to_string()
                .len()
                < 400
        );
        assert!(shorten("é".repeat(300)).starts_with(&"é".repeat(128)));
        assert_eq!(shorten("eth0".into()), "eth0");
    }

    #[test]
    fn gone_errors() {
        assert!(Error::kernel("del link", io::Error::from_raw_os_error(libc::ENODEV)).is_gone());
        assert!(!Error::kernel("del link", io::Error::from_raw_os_error(libc::EPERM)).is_gone());
    }
}
