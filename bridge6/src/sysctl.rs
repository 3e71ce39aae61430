//! IPv6 sysctls, read and written through `/proc/sys/net/ipv6/conf/<if>/<key>`.
//!
//! Kernel quirk this relies on: `/proc/sys/net` resolves against the network
//! namespace of the *calling thread* at open time, so a thread that has
//! entered a pod namespace (cni_common::netns::NetNs::run) reads and writes
//! the pod's values. Paths use slashes, never the dotted `sysctl` form,
//! because interface names may contain dots. A value is written only when
//! it differs (writing `forwarding` or `accept_ra` has side effects even
//! when unchanged, and a read is cheaper than a write).

use crate::error::{Bridge6Error, Result};
use std::path::PathBuf;

const CONF: &str = "/proc/sys/net/ipv6/conf";

fn path(iface: &str, key: &str) -> PathBuf {
    PathBuf::from(CONF).join(iface).join(key)
}

fn err(p: &std::path::Path, source: std::io::Error) -> Bridge6Error {
    Bridge6Error::Sysctl {
        path: p.display().to_string(),
        source,
    }
}

pub fn read(iface: &str, key: &str) -> Result<i64> {
    let p = path(iface, key);
    let s = std::fs::read_to_string(&p).map_err(|e| err(&p, e))?;
    s.trim().parse::<i64>().map_err(|e| {
        err(
            &p,
            std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{s:?}: {e}")),
        )
    })
}

/// Set `key` on `iface` to `value` unless it already has it. Returns
/// whether it wrote.
pub fn ensure(iface: &str, key: &str, value: i64) -> Result<bool> {
    if read(iface, key)? == value {
        return Ok(false);
    }
    let p = path(iface, key);
    std::fs::write(&p, format!("{value}\n")).map_err(|e| err(&p, e))?;
    Ok(true)
}

/// Fails (code 50) when the kernel has no IPv6 at all or it is disabled
/// for every interface (checklist §3 #9): better than a sysctl ENOENT
/// halfway through ADD.
pub fn require_ipv6() -> Result<()> {
    if !std::path::Path::new("/proc/sys/net/ipv6").is_dir() {
        return Err(Bridge6Error::Ipv6Disabled(
            "/proc/sys/net/ipv6 is missing; the kernel was booted with ipv6.disable=1".into(),
        ));
    }
    if read("all", "disable_ipv6").unwrap_or(0) == 1 {
        return Err(Bridge6Error::Ipv6Disabled(
            "net.ipv6.conf.all.disable_ipv6=1".into(),
        ));
    }
    Ok(())
}

/// Interfaces whose `accept_ra` matters for the forwarding decision: every
/// entry under conf/ except `all` (not consulted per interface by the
/// kernel) and `lo` (never receives router advertisements). `default` is
/// included: it is what new interfaces inherit.
fn ra_candidates() -> Result<Vec<String>> {
    let rd = std::fs::read_dir(CONF).map_err(|e| err(std::path::Path::new(CONF), e))?;
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "all" && n != "lo")
        .collect();
    names.sort();
    Ok(names)
}

/// What [`ensure_forwarding`] changed, for one log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ForwardingChange {
    pub enabled: bool,
    pub raised_accept_ra: Vec<String>,
}

/// Turn on IPv6 forwarding without silently breaking a host that takes
/// its default route from router advertisements (checklist §3 #8).
///
/// With `all.forwarding=1` the kernel ignores RAs on every interface whose
/// `accept_ra` is 1; `accept_ra=2` accepts them even when forwarding. So,
/// when forwarding is still off, first raise `accept_ra` 1 → 2 on every
/// interface that has 1 (and on `default`), then set `all.forwarding=1`.
/// Once forwarding is on this costs one read per ADD. An interface that
/// appears later with `accept_ra=1` is STATUS's business ([`ra_ignoring`]).
pub fn ensure_forwarding() -> Result<ForwardingChange> {
    let mut change = ForwardingChange::default();
    if read("all", "forwarding")? == 1 {
        return Ok(change);
    }
    for iface in ra_candidates()? {
        match read(&iface, "accept_ra") {
            Ok(1) => {
                ensure(&iface, "accept_ra", 2)?;
                change.raised_accept_ra.push(iface);
            }
            Ok(_) => {}
            // The interface went away between readdir and read.
            Err(e) if e.is_gone() => {}
            Err(e) => return Err(e),
        }
    }
    change.enabled = ensure("all", "forwarding", 1)?;
    Ok(change)
}

/// With forwarding on, the interfaces (by name, `default` excluded: it is
/// no interface) that still have `accept_ra=1` and so ignore router
/// advertisements. Whether that matters is decided by the caller: only an
/// interface that holds state learned from RAs depends on them
/// ([`crate::link::ra_dependent`]).
pub fn ra_ignoring() -> Result<Vec<String>> {
    if read("all", "forwarding")? != 1 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for iface in ra_candidates()? {
        if iface == "default" {
            continue;
        }
        match read(&iface, "accept_ra") {
            Ok(1) => out.push(iface),
            Ok(_) => {}
            Err(e) if e.is_gone() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_dots() {
        assert_eq!(
            path("eth0.100", "accept_ra"),
            PathBuf::from("/proc/sys/net/ipv6/conf/eth0.100/accept_ra")
        );
    }

    #[test]
    fn reads_this_namespace() {
        // Readable by anyone where IPv6 exists; skip silently nowhere: the
        // build hosts of this project all have IPv6.
        let v = read("lo", "mtu").unwrap();
        assert!(v >= 1280);
        assert!(read("no-such-if0", "mtu").unwrap_err().is_gone());
    }
}
