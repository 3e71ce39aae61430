//! CNI spec versions and what each one allows (conformance.md 1.K).

use crate::error::{Error, Result};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

/// Every version cni6 speaks, oldest first (what VERSION lists).
pub const ALL: &[Version] = &[
    Version::V0_3_0,
    Version::V0_3_1,
    Version::V0_4_0,
    Version::V1_0_0,
    Version::V1_1_0,
];

/// Versions with CHECK; the floor for chained plugins such as firewall6.
pub const FROM_0_4: &[Version] = &[Version::V0_4_0, Version::V1_0_0, Version::V1_1_0];

pub const LATEST: Version = Version::V1_1_0;

impl Version {
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V0_3_0 => "0.3.0",
            Version::V0_3_1 => "0.3.1",
            Version::V0_4_0 => "0.4.0",
            Version::V1_0_0 => "1.0.0",
            Version::V1_1_0 => "1.1.0",
        }
    }

    /// Parse a version against the list a plugin supports: an unparseable
    /// string is error 6, a well-formed but unsupported one error 1
    /// (conformance.md #65).
    pub fn parse(s: &str, supported: &[Version]) -> Result<Version> {
        let well_formed = {
            let parts: Vec<&str> = s.split('.').collect();
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
        };
        if !well_formed {
            return Err(Error::decode(
                "cniVersion",
                format!("{s:?} is not a semantic version like \"1.0.0\""),
            ));
        }
        supported
            .iter()
            .copied()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| Error::IncompatibleVersion {
                requested: s.to_string(),
                supported: list(supported),
            })
    }

    /// 0.3.x and 0.4.0 results carry `ips[].version` (conformance.md #59).
    pub fn has_ip_version_field(self) -> bool {
        self < Version::V1_0_0
    }

    /// CHECK exists from 0.4.0 (conformance.md #31).
    pub fn has_check(self) -> bool {
        self >= Version::V0_4_0
    }

    /// GC and STATUS exist from 1.1.0 (conformance.md #45, 51).
    pub fn has_gc_status(self) -> bool {
        self >= Version::V1_1_0
    }

    /// Interface `mtu`, `socketPath`, `pciID` are 1.1 fields (conformance.md #58).
    pub fn has_interface_extras(self) -> bool {
        self >= Version::V1_1_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn list(versions: &[Version]) -> String {
    versions
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_versions() {
        assert_eq!(Version::parse("1.0.0", ALL).unwrap(), Version::V1_0_0);
        assert_eq!(Version::parse("9.9.9", ALL).unwrap_err().code(), 1);
        assert_eq!(Version::parse("0.2.0", ALL).unwrap_err().code(), 1);
        assert_eq!(Version::parse("0.3.1", FROM_0_4).unwrap_err().code(), 1);
        assert_eq!(Version::parse("one", ALL).unwrap_err().code(), 6);
        assert_eq!(Version::parse("1.0", ALL).unwrap_err().code(), 6);
        assert!(Version::parse("9.9.9", ALL)
            .unwrap_err()
            .to_string()
            .contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"));
    }

    #[test]
    fn capabilities() {
        assert!(!Version::V0_3_1.has_check());
        assert!(Version::V0_4_0.has_check());
        assert!(Version::V0_4_0.has_ip_version_field());
        assert!(!Version::V1_0_0.has_ip_version_field());
        assert!(!Version::V1_0_0.has_gc_status());
        assert!(Version::V1_1_0.has_gc_status());
    }
}
