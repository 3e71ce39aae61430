//! The identity of an attachment: one container's interface on one
//! network. Every plugin keys what it creates by it (bridge6 its host veth,
//! firewall6 its rule comments, ipam-prefix its record), so DEL and GC find
//! the same objects from the runtime's variables alone (conformance.md #27,
//! 28, 47).

use crate::config::validate_network_name;
use crate::env::{validate_container_id, validate_ifname};
use crate::error::Result;

/// Prefix of the host-side veth names bridge6 gives its pods (`c6` + 13 hex
/// digits of a hash); firewall6 buckets bridge ports by the hex that
/// follows, and the operator tool tells our ports from others by it.
pub const HOST_VETH_PREFIX: &str = "c6";

/// (network, container id, ifname).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attachment {
    pub network: String,
    pub container_id: String,
    pub ifname: String,
}

impl Attachment {
    /// A validated attachment: the parts name files, links and rule
    /// comments, so each is checked as the dispatcher checks the runtime's
    /// (a container id has no `/`, `@` or leading `.`; an ifname no `/` and
    /// is not `.`/`..`).
    pub fn new(network: &str, container_id: &str, ifname: &str) -> Result<Attachment> {
        let a = Attachment {
            network: network.to_string(),
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        };
        a.validate()?;
        Ok(a)
    }

    /// The checks of [`Attachment::new`], for one built from parts that
    /// were not validated (a GC valid-attachments list).
    pub fn validate(&self) -> Result<()> {
        validate_network_name(&self.network)?;
        validate_container_id(&self.container_id)?;
        validate_ifname(&self.ifname)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_that_could_leave_a_directory_are_refused() {
        assert!(Attachment::new("net", "c1", "eth0").is_ok());
        assert!(Attachment::new("net", "../x", "eth0").is_err());
        assert!(Attachment::new("net", "a@b", "eth0").is_err());
        assert!(Attachment::new("net", "a", "..").is_err());
        assert!(Attachment::new("net", "a", "x/y").is_err());
        assert!(Attachment::new("../net", "a", "eth0").is_err());
        assert!(Attachment::new("net", "", "eth0").is_err());
    }
}
