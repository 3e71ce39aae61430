//! When ADD may skip its skeleton checks: the ruleset's commit counter.
//!
//! # Why
//!
//! The `-C` lines that lead ADD's batch (the skeleton rules ADD relies on
//! and the MLD jump) make ip6tables-restore fetch and compare seven chains,
//! about a tenth of a chain ADD (docs/performance.md). nf_tables
//! counts the transactions committed in a network namespace (its
//! generation, `NFT_MSG_GETGEN`): ip6tables-restore commits once per table
//! it changes, and commits nothing when a `-C` line fails (measured on
//! 6.18 with iptables 1.8.9; `conformance/tests/firewall6_generation.rs`
//! checks it on every run). So if the generation read just before a
//! restore, plus the commits that restore made, is the generation read
//! just after it, nobody else committed in between and the ruleset is
//! the one that batch left.
//!
//! After a batch whose checks passed, that is a ruleset with the skeleton
//! whole: firewall6 records (boot id, network namespace cookie,
//! generation, digests of the checks that passed) in [`VERIFIED`]. An ADD
//! whose own checks have one of those digests (a network config seen
//! before) and that finds the ruleset still at that generation appends
//! the pod's rules without the checks; a batch that only appends a pod's
//! rules to buckets (ADD, checked or not) or deletes tagged pod rules
//! (DEL) changes no skeleton, so it moves the record along, with every
//! digest it held, when again nobody else committed. So networks whose
//! configs differ (multus attachments, two conflists on one node) skip
//! their checks in turn instead of each one's ADD checking after the
//! other's; up to [`MAX_DIGESTS`] configs, the most recent kept.
//! Anything else — an operator's `ip6tables -F`, firewalld, kube-proxy,
//! `nft`, a concurrent firewall6, a reboot (`/run` is per boot, and the
//! boot id is part of the record) — leaves the record behind, and the next
//! ADD checks (and repairs) as it always did. If something commits while
//! an unchecked ADD runs, that ADD runs the checks afterwards.
//!
//! Only with the nf_tables backend of ip6tables (x_tables, the legacy
//! backend, has no such counter) and where the socket option that names
//! the namespace is known; elsewhere every ADD checks.

use std::fs;
use std::io;
use std::path::Path;
use std::sync::OnceLock;

/// Where the last verified generation is recorded (tmpfs on a systemd node).
pub const VERIFIED: &str = "/run/cni6/firewall6.verified";

const NETLINK_NETFILTER: isize = 12;
/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETGEN`.
const GETGEN: u16 = (10 << 8) | 16;
/// `NFTA_GEN_ID`: the generation, a big-endian u32.
const NFTA_GEN_ID: u16 = 1;

/// `SO_NETNS_COOKIE` (Linux 5.14): a 64-bit id of the socket's network
/// namespace, never reused within a boot. 71 in asm-generic; other
/// architectures number it differently, so they go without.
#[cfg(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64"
))]
const SO_NETNS_COOKIE: Option<libc::c_int> = Some(71);
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "x86",
    target_arch = "aarch64",
    target_arch = "arm",
    target_arch = "riscv64"
)))]
const SO_NETNS_COOKIE: Option<libc::c_int> = None;

/// How many configs' digests a record keeps.
pub const MAX_DIGESTS: usize = 8;

/// A generation at which the skeletons named by `checks` are whole: the
/// digests of `-C` line sets (they depend on the network's config: admin
/// chain, policy) that passed at or before it with nobody else committing
/// since, the most recent first. An ADD whose checks are not among them
/// (a new network, a changed config) checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub at: Generation,
    pub checks: Vec<String>,
}

/// The digest [`Verified::checks`] holds: 16 hex digits of SHA-256.
pub fn digest(checks: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(checks.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One point in the history of one namespace's ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generation {
    pub boot: String,
    pub netns: u64,
    pub gen: u32,
}

impl Generation {
    /// This generation after `commits` more transactions.
    pub fn after(&self, commits: u32) -> Generation {
        Generation {
            gen: self.gen.wrapping_add(commits),
            ..self.clone()
        }
    }
}

impl Verified {
    /// Whether the skeleton whose checks have `digest` is vouched for.
    pub fn covers(&self, digest: &str) -> bool {
        self.checks.iter().any(|c| c == digest)
    }

    /// `digests` that stay valid, with `newest` first (once), at most
    /// [`MAX_DIGESTS`].
    pub fn merged(newest: &str, digests: &[String]) -> Vec<String> {
        std::iter::once(newest.to_string())
            .chain(digests.iter().filter(|d| *d != newest).cloned())
            .take(MAX_DIGESTS)
            .collect()
    }

    fn line(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.at.boot,
            self.at.netns,
            self.at.gen,
            self.checks.join(",")
        )
    }

    fn parse(s: &str) -> Option<Verified> {
        let line = s.strip_suffix('\n')?;
        let mut f = line.split(' ');
        let v = Verified {
            at: Generation {
                boot: f.next()?.to_string(),
                netns: f.next()?.parse().ok()?,
                gen: f.next()?.parse().ok()?,
            },
            checks: f.next()?.split(',').map(str::to_string).collect(),
        };
        let digest_ok = |d: &String| d.len() == 16 && d.bytes().all(|b| b.is_ascii_hexdigit());
        (f.next().is_none()
            && v.at.boot.len() == 36
            && v.checks.len() <= MAX_DIGESTS
            && v.checks.iter().all(digest_ok))
        .then_some(v)
    }
}

fn boot_id() -> io::Result<String> {
    static BOOT: OnceLock<String> = OnceLock::new();
    if let Some(b) = BOOT.get() {
        return Ok(b.clone());
    }
    let b = fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string();
    Ok(BOOT.get_or_init(|| b).clone())
}

/// The current generation of the calling thread's network namespace.
pub fn current() -> io::Result<Generation> {
    let cookie_opt = SO_NETNS_COOKIE.ok_or_else(|| io::Error::from(io::ErrorKind::Unsupported))?;
    let sock = netlink_sys::Socket::new(NETLINK_NETFILTER)?;
    sock.connect(&netlink_sys::SocketAddr::new(0, 0))?;
    let mut cookie = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the buffer is a u64 and `len` says so; the kernel writes at
    // most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SOL_SOCKET,
            cookie_opt,
            (&mut cookie as *mut u64).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // nlmsghdr (len, type, flags = NLM_F_REQUEST, seq, pid) + nfgenmsg
    // (family AF_UNSPEC, version 0, res_id 0).
    let mut req = Vec::with_capacity(20);
    req.extend_from_slice(&20u32.to_ne_bytes());
    req.extend_from_slice(&GETGEN.to_ne_bytes());
    req.extend_from_slice(&1u16.to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[0, 0, 0, 0]);
    sock.send(&req, 0)?;
    let mut buf = vec![0u8; 512];
    let n = sock.recv(&mut &mut buf[..], 0)?;
    let gen = gen_of(&buf[..n])?;
    Ok(Generation {
        boot: boot_id()?,
        netns: cookie,
        gen,
    })
}

/// Errors that mean "this kernel or architecture has no such thing":
/// no SO_NETNS_COOKIE (Linux < 5.14), no nf_tables, no netfilter netlink.
pub fn is_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::ENOPROTOOPT | libc::EPROTONOSUPPORT | libc::EOPNOTSUPP | libc::ENOENT)
        )
}

/// NFTA_GEN_ID out of the kernel's answer to GETGEN.
fn gen_of(msg: &[u8]) -> io::Result<u32> {
    let bad = |why: &str| io::Error::new(io::ErrorKind::InvalidData, format!("GETGEN: {why}"));
    if msg.len() < 20 {
        return Err(bad("short answer"));
    }
    let len = (u32::from_ne_bytes(msg[0..4].try_into().unwrap()) as usize).min(msg.len());
    let kind = u16::from_ne_bytes(msg[4..6].try_into().unwrap());
    if kind == 2 {
        // NLMSG_ERROR: the errno follows the header, negated.
        let errno = i32::from_ne_bytes(msg[16..20].try_into().unwrap());
        return Err(io::Error::from_raw_os_error(-errno));
    }
    let mut attrs = &msg[20..len];
    while attrs.len() >= 4 {
        let alen = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let atype = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if alen < 4 || alen > attrs.len() {
            return Err(bad("malformed attribute"));
        }
        if atype == NFTA_GEN_ID && alen == 8 {
            return Ok(u32::from_be_bytes(attrs[4..8].try_into().unwrap()));
        }
        attrs = &attrs[((alen + 3) & !3).min(attrs.len())..];
    }
    Err(bad("no NFTA_GEN_ID"))
}

/// The record at `path`; None when there is none or it cannot be read.
pub fn load(path: &Path) -> Option<Verified> {
    Verified::parse(&fs::read_to_string(path).ok()?)
}

/// Record `v` at `path`, replacing the file atomically (a concurrent
/// reader sees the old record or the new one, never a mix). Not synced:
/// the record is advisory and dies with the boot anyway.
pub fn store(path: &Path, v: &Verified) -> io::Result<()> {
    cni_common::file::write_atomic(path, v.line().as_bytes(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(gen: u32) -> Generation {
        Generation {
            boot: "0f5c3f4e-2f1a-4c1e-9d43-0a1b2c3d4e5f".into(),
            netns: 4097,
            gen,
        }
    }

    fn v(gen: u32) -> Verified {
        Verified {
            at: g(gen),
            checks: vec![digest("-C FORWARD -j CNI6-FORWARD")],
        }
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        assert_eq!(Verified::parse(&v(7).line()), Some(v(7)));
        let two = Verified {
            checks: vec![digest("a"), digest("b")],
            ..v(8)
        };
        assert_eq!(Verified::parse(&two.line()), Some(two.clone()));
        assert!(two.covers(&digest("b")) && !two.covers(&digest("c")));
        assert_eq!(g(u32::MAX).after(2), g(1));
        assert_ne!(digest("a"), digest("b"));
        let boot = "0f5c3f4e-2f1a-4c1e-9d43-0a1b2c3d4e5f";
        for bad in [
            String::new(),
            "x 1 2 0123456789abcdef\n".into(),
            format!("{boot} 1 2 0123456789abcdef"),
            format!("{boot} 1 2 0123456789abcdef 3\n"),
            format!("{boot} 1 2 0123456789abcdef\n3\n"),
            format!("{boot} one 2 0123456789abcdef\n"),
            format!("{boot} 1 2 0123\n"),
            format!("{boot} 1 2\n"),
            format!("{boot} 1 2 0123456789abcdef,\n"),
            format!("{boot} 1 2 0123456789abcdeg\n"),
            format!(
                "{boot} 1 2 {}\n",
                ["0123456789abcdef"; MAX_DIGESTS + 1].join(",")
            ),
        ] {
            assert_eq!(Verified::parse(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn merged_puts_the_newest_first_once_and_bounds() {
        let ds: Vec<String> = (0..MAX_DIGESTS).map(|i| digest(&i.to_string())).collect();
        let m = Verified::merged(&ds[3], &ds);
        assert_eq!(m.len(), MAX_DIGESTS);
        assert_eq!(m[0], ds[3]);
        assert_eq!(m.iter().filter(|d| **d == ds[3]).count(), 1);
        let n = Verified::merged(&digest("new"), &ds);
        assert_eq!(n.len(), MAX_DIGESTS);
        assert_eq!(n[0], digest("new"));
        assert!(!n.contains(&ds[MAX_DIGESTS - 1]), "the oldest dropped");
        assert_eq!(Verified::merged(&ds[0], &[]), vec![ds[0].clone()]);
    }

    #[test]
    fn store_replaces_and_load_reads() {
        let dir = std::env::temp_dir().join(format!("fw6-gen-{}", std::process::id()));
        let path = dir.join("verified");
        assert_eq!(load(&path), None);
        store(&path, &v(3)).unwrap();
        store(&path, &v(4)).unwrap();
        assert_eq!(load(&path), Some(v(4)));
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn answers_of_the_kernel() {
        // nlmsghdr + nfgenmsg + NFTA_GEN_ID (be 0x0102_0304) + NFTA_GEN_PROC_PID.
        let mut m = Vec::new();
        m.extend_from_slice(&36u32.to_ne_bytes());
        m.extend_from_slice(&GETGEN.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[0; 4]);
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&NFTA_GEN_ID.to_ne_bytes());
        m.extend_from_slice(&[1, 2, 3, 4]);
        m.extend_from_slice(&8u16.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&[0, 0, 0, 9]);
        assert_eq!(gen_of(&m).unwrap(), 0x0102_0304);
        let mut err = m[..20].to_vec();
        err[4..6].copy_from_slice(&2u16.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        assert_eq!(gen_of(&err).unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert!(gen_of(&m[..24]).is_err());
    }

    #[test]
    fn unsupported_is_told_from_failure() {
        for errno in [libc::ENOPROTOOPT, libc::EPROTONOSUPPORT, libc::EOPNOTSUPP] {
            assert!(is_unsupported(&io::Error::from_raw_os_error(errno)));
        }
        assert!(is_unsupported(&io::Error::from(io::ErrorKind::Unsupported)));
        assert!(!is_unsupported(&io::Error::from_raw_os_error(libc::EPERM)));
        assert!(!is_unsupported(&io::Error::new(
            io::ErrorKind::InvalidData,
            "GETGEN: short answer"
        )));
    }
}
