//! IPv6 sysctls, read and written through `/proc/sys/net/ipv6/conf/<if>/<key>`.
//!
//! Kernel quirk this relies on: `/proc/sys/net` resolves against the network
//! namespace of the *calling thread* at open time, so a thread that has
//! entered a pod namespace (cni_common::netns::NetNs::run) reads and writes
//! the pod's values. Paths use slashes, never the dotted `sysctl` form,
//! because interface names may contain dots. A value is written only when
//! it differs (writing `forwarding` or `accept_ra` has side effects even
//! when unchanged, and a read is cheaper than a write).
//!
//! Why [`Conf`] opens `conf/` once and every key relative to it: each
//! network namespace has its own dentries for `/proc/sys/net`, all with the
//! same name under the same parent, so every path lookup from `/proc/sys`
//! compares against the `net` of every namespace on the machine
//! (`proc_sys_compare` in `__d_lookup`). With 1000 pods that was ~14 % of
//! bridge6's CPU in an ADD (perf, issue 7); below `conf/` names are unique.

use crate::error::{Bridge6Error, Result};
use nix::errno::Errno;
use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::Mode;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
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

/// `/proc/sys/net/ipv6/conf` of the calling thread's network namespace.
/// Use it on the thread that opened it (a thread in another namespace
/// would not see its entries).
pub struct Conf {
    dir: OwnedFd,
}

impl Conf {
    /// Open `conf/`; fails (code 50) when the kernel has no IPv6 at all
    /// (conformance.md §3 #9): better than a sysctl ENOENT halfway through ADD.
    pub fn open() -> Result<Conf> {
        let dir = open(
            CONF,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| match e {
            Errno::ENOENT => Bridge6Error::Ipv6Disabled(
                "/proc/sys/net/ipv6 is missing; the kernel was booted with ipv6.disable=1".into(),
            ),
            e => err(std::path::Path::new(CONF), e.into()),
        })?;
        Ok(Conf { dir })
    }

    fn open_key(&self, iface: &str, key: &str, write: bool) -> Result<File> {
        let mode = if write {
            OFlag::O_WRONLY
        } else {
            OFlag::O_RDONLY
        };
        openat(
            &self.dir,
            format!("{iface}/{key}").as_str(),
            mode | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(|e| err(&path(iface, key), e.into()))
    }

    pub fn read(&self, iface: &str, key: &str) -> Result<i64> {
        let mut s = String::new();
        self.open_key(iface, key, false)?
            .read_to_string(&mut s)
            .map_err(|e| err(&path(iface, key), e))?;
        s.trim().parse::<i64>().map_err(|e| {
            err(
                &path(iface, key),
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{s:?}: {e}")),
            )
        })
    }

    /// Set `key` on `iface` to `value` unless it already has it. Returns
    /// whether it wrote.
    pub fn ensure(&self, iface: &str, key: &str, value: i64) -> Result<bool> {
        if self.read(iface, key)? == value {
            return Ok(false);
        }
        self.open_key(iface, key, true)?
            .write_all(format!("{value}\n").as_bytes())
            .map_err(|e| err(&path(iface, key), e))?;
        Ok(true)
    }

    /// Fails (code 50) when IPv6 is disabled for every interface
    /// (`all.disable_ipv6=1`, conformance.md §3 #9).
    pub fn require_ipv6(&self) -> Result<()> {
        if self.read("all", "disable_ipv6").unwrap_or(0) == 1 {
            return Err(Bridge6Error::Ipv6Disabled(
                "net.ipv6.conf.all.disable_ipv6=1".into(),
            ));
        }
        Ok(())
    }
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
/// its default route from router advertisements (conformance.md §3 #8).
///
/// With `all.forwarding=1` the kernel ignores RAs on every interface whose
/// `accept_ra` is 1; `accept_ra=2` accepts them even when forwarding. So,
/// when forwarding is still off, first raise `accept_ra` 1 → 2 on every
/// interface that has 1 (and on `default`), then set `all.forwarding=1`.
/// Once forwarding is on this costs one read per ADD. An interface that
/// appears later with `accept_ra=1` is STATUS's business ([`ra_ignoring`]).
pub fn ensure_forwarding(conf: &Conf) -> Result<ForwardingChange> {
    let mut change = ForwardingChange::default();
    if conf.read("all", "forwarding")? == 1 {
        return Ok(change);
    }
    for iface in ra_candidates()? {
        match conf.read(&iface, "accept_ra") {
            Ok(1) => {
                conf.ensure(&iface, "accept_ra", 2)?;
                change.raised_accept_ra.push(iface);
            }
            Ok(_) => {}
            // The interface went away between readdir and read.
            Err(e) if e.is_gone() => {}
            Err(e) => return Err(e),
        }
    }
    change.enabled = conf.ensure("all", "forwarding", 1)?;
    Ok(change)
}

/// With forwarding on, the interfaces (by name, `default` excluded: it is
/// no interface) that still have `accept_ra=1` and so ignore router
/// advertisements. Whether that matters is decided by the caller: only an
/// interface that holds state learned from RAs depends on them
/// ([`crate::link::ra_dependent`]).
pub fn ra_ignoring(conf: &Conf) -> Result<Vec<String>> {
    if conf.read("all", "forwarding")? != 1 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for iface in ra_candidates()? {
        if iface == "default" {
            continue;
        }
        match conf.read(&iface, "accept_ra") {
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
        let conf = Conf::open().unwrap();
        let v = conf.read("lo", "mtu").unwrap();
        assert!(v >= 1280);
        assert!(conf.read("no-such-if0", "mtu").unwrap_err().is_gone());
        conf.require_ipv6().unwrap();
    }
}
