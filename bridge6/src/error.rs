//! The one error type of bridge6, mapped once to CNI codes in
//! `From<Bridge6Error> for cni_common::Error`.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Bridge6Error {
    /// A netlink request failed; `op` says which and on what.
    #[error("{op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: io::Error,
    },

    /// Reading or writing a sysctl failed.
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: io::Error,
    },

    /// The configured bridge name is taken by a link of another kind.
    #[error("bridge={name}: expected a bridge (or no link of that name), found a {kind} link")]
    NotABridge { name: String, kind: String },

    /// The bridge also holds ports that are neither isolated nor a pod's
    /// (an uplink): pods would reach their LAN at layer 2, past firewall6.
    #[error("bridge={bridge}: {}", shared_bridge_problem(.bridge, .ports))]
    SharedBridge { bridge: String, ports: Vec<String> },

    /// conformance.md #19/22: the attachment (or its interface) already exists.
    #[error("{what} already exists; DEL the attachment first")]
    AttachmentExists { ifname: String, what: String },

    /// The IPAM result cannot be used by an IPv6-only bridge.
    #[error("IPAM result unusable: {0}")]
    IpamResult(String),

    /// IPv6 is disabled on this host (conformance.md §3 #9).
    #[error("IPv6 is disabled on this host ({0}); bridge6 needs it")]
    Ipv6Disabled(String),

    /// Forwarding is on and an interface with accept_ra=1 now ignores RAs.
    #[error(
        "net.ipv6.conf.all.forwarding=1 and interface {iface} has accept_ra=1, so it now ignores \
         router advertisements; set net.ipv6.conf.{iface}.accept_ra=2 if it depends on them"
    )]
    RaIgnored { iface: String },

    /// STATUS found something that stops ADD from working.
    #[error("{0}")]
    Unavailable(String),

    /// CHECK found the attachment not as ADD made it.
    #[error("{0}")]
    Check(String),

    /// Several failures of a best-effort DEL/GC, reported together.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<cni_common::Error>),

    /// Errors of the shared library (netns, delegation, config) pass through.
    #[error(transparent)]
    Common(#[from] cni_common::Error),
}

/// What is wrong with a bridge holding `ports` that are not isolated, and
/// the two ways out; ADD, CHECK and the operator tool say it alike.
pub fn shared_bridge_problem(bridge: &str, ports: &[String]) -> String {
    let list = ports.join(", ");
    let first = ports.first().map(String::as_str).unwrap_or("PORT");
    format!(
        "bridge {bridge} also holds port(s) {list} that are not isolated, so every pod on it could \
         send frames straight through them (any source address, neighbour advertisements, VLAN \
         tags) to the hosts behind them, unseen by firewall6; give cni6 a bridge of its own in \
         the `bridge` key and route the uplink, or isolate the port(s) if they must stay on \
         {bridge} (`bridge link set dev {first} isolated on` for each; the node still reaches them)"
    )
}

pub type Result<T, E = Bridge6Error> = std::result::Result<T, E>;

impl Bridge6Error {
    pub fn netlink(op: impl Into<String>, source: io::Error) -> Self {
        Bridge6Error::Netlink {
            op: op.into(),
            source,
        }
    }

    /// "Already gone" (ENOENT/ENODEV/ESRCH, a vanished netns): DEL success.
    pub fn is_gone(&self) -> bool {
        match self {
            Bridge6Error::Netlink { source, .. } | Bridge6Error::Sysctl { source, .. } => {
                cni_common::error::is_gone_io(source)
            }
            Bridge6Error::Common(e) => e.is_gone(),
            _ => false,
        }
    }
}

impl From<Bridge6Error> for cni_common::Error {
    fn from(e: Bridge6Error) -> Self {
        use cni_common::Error as E;
        match e {
            Bridge6Error::Common(e) => e,
            Bridge6Error::Many(mut v) if v.len() == 1 => v.remove(0),
            Bridge6Error::Many(v) => {
                let code = v.first().map(|e| e.code()).unwrap_or(0);
                let msg = v
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ");
                E::Plugin {
                    code,
                    msg,
                    details: String::new(),
                }
            }
            Bridge6Error::NotABridge { ref name, ref kind } => E::config(
                "bridge",
                name,
                format!("a bridge (or no link of that name), but {name} is a {kind} link"),
            ),
            Bridge6Error::SharedBridge { bridge, ports } => E::config(
                "bridge",
                &bridge,
                format!(
                    "a bridge of cni6's own or one whose other ports are all isolated, but {}",
                    shared_bridge_problem(&bridge, &ports)
                ),
            ),
            Bridge6Error::IpamResult(m) => E::config("ipam", "(its result)", m),
            Bridge6Error::AttachmentExists { ifname, what } => E::env(
                "CNI_IFNAME",
                ifname,
                format!("a new attachment, but {what} already exists (DEL the attachment first)"),
            ),
            e @ (Bridge6Error::Ipv6Disabled(_) | Bridge6Error::Unavailable(_)) => {
                E::Unavailable(e.to_string())
            }
            e @ Bridge6Error::RaIgnored { .. } => E::Degraded(e.to_string()),
            Bridge6Error::Check(m) => E::CheckFailed(m),
            Bridge6Error::Netlink { op, source } => E::kernel(op, source),
            Bridge6Error::Sysctl { path, source } => E::kernel(format!("sysctl {path}"), source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let c = |e: Bridge6Error| cni_common::Error::from(e).code();
        assert_eq!(
            c(Bridge6Error::NotABridge {
                name: "br0".into(),
                kind: "veth".into()
            }),
            7
        );
        let shared = cni_common::Error::from(Bridge6Error::SharedBridge {
            bridge: "br0".into(),
            ports: vec!["eth0".into()],
        });
        assert_eq!(shared.code(), 7);
        let msg = shared.to_string();
        for part in [
            "bridge=br0",
            "eth0",
            "not isolated",
            "`bridge` key",
            "isolated on",
        ] {
            assert!(msg.contains(part), "{part:?} missing in {msg}");
        }
        assert_eq!(
            c(Bridge6Error::AttachmentExists {
                ifname: "eth0".into(),
                what: "interface eth0".into()
            }),
            4
        );
        assert_eq!(
            c(Bridge6Error::RaIgnored {
                iface: "eth0".into()
            }),
            51
        );
        assert_eq!(c(Bridge6Error::Ipv6Disabled("x".into())), 50);
        assert_eq!(c(Bridge6Error::Check("x".into())), 102);
        assert_eq!(
            c(Bridge6Error::netlink(
                "add",
                io::Error::from_raw_os_error(libc::EPERM)
            )),
            101
        );
        let many = Bridge6Error::Many(vec![
            cni_common::Error::TryAgain("a".into()),
            cni_common::Error::Internal("b".into()),
        ]);
        let e = cni_common::Error::from(many);
        assert_eq!(e.code(), 11);
        assert!(e.to_string().contains("a") && e.to_string().contains("b"));
    }

    #[test]
    fn gone() {
        assert!(Bridge6Error::netlink("del", io::Error::from_raw_os_error(libc::ENODEV)).is_gone());
        assert!(!Bridge6Error::netlink("del", io::Error::from_raw_os_error(libc::EBUSY)).is_gone());
    }
}
