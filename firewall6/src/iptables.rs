//! Running ip6tables: absolute paths (conformance.md #11: never PATH), always
//! `-w` (the xtables lock of the legacy backend; the nft backend commits
//! each restore as one netlink transaction), never `iptables` (an IPv6-only
//! node may not have a working IPv4 stack).
//!
//! Reads list one chain (`ip6tables -S CHAIN`): with the nft backend that
//! fetches only that chain, so it stays cheap however many pods exist.
//! Several chains are read by as many ip6tables processes started at once
//! ([`Tables::list_chains`]): each read is mostly process start, so DEL's
//! bucket reads and CHECK's skeleton and bucket reads cost about one read
//! of wall time instead of their sum. ADD reads nothing on its usual path:
//! its skeleton checks are `-C` lines in the pod's own batch
//! ([`crate::generation`]). Figures in docs/performance.md.

use crate::error::{Error, Result};
use crate::generation::{self, Generation, Verified};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Where ip6tables lives on the distributions we know, in search order.
pub const SEARCH_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin"];

/// Serialises skeleton repair only (pod batches are atomic on their own),
/// so two first ADDs cannot both insert the FORWARD jump.
pub const SKELETON_LOCK: &str = "/run/cni6/firewall6.lock";

/// What the verbs need from the filter (and raw) table. [`Ip6tables`] is
/// the real one; the plugin's unit tests drive the same logic against a
/// fake.
pub trait Tables {
    /// The `-A` lines of one chain, `None` when it does not exist.
    fn list_chain(&self, chain: &str) -> Result<Option<Vec<String>>>;
    /// [`Tables::list_chain`] of each chain, in order; the real one runs
    /// the reads concurrently.
    fn list_chains(&self, chains: &[&str]) -> Result<Vec<Option<Vec<String>>>> {
        chains.iter().map(|c| self.list_chain(c)).collect()
    }
    /// Every line of `-S` (`-P`, `-N`, `-A`).
    fn list_all(&self) -> Result<Vec<String>>;
    /// The `-A` lines of one chain of the raw table, `None` when it does
    /// not exist.
    fn list_raw_chain(&self, chain: &str) -> Result<Option<Vec<String>>>;
    /// Apply one batch atomically, or nothing of it.
    fn restore(&self, batch: &str) -> Result<()>;
    /// Held while the node-wide skeleton is read and repaired.
    fn skeleton_lock(&self) -> Result<Box<dyn std::any::Any>>;
    /// The ruleset's commit counter ([`crate::generation`]); None where
    /// there is none to trust (then every ADD checks the skeleton).
    fn generation(&self) -> Option<Generation> {
        None
    }
    /// The record of the last batch that found the skeleton whole.
    fn verified(&self) -> Option<Verified> {
        None
    }
    /// Record a generation with the skeleton whole.
    fn set_verified(&self, _v: &Verified) {}
}

impl Tables for Ip6tables {
    fn list_chain(&self, chain: &str) -> Result<Option<Vec<String>>> {
        Ip6tables::list_chain(self, chain)
    }

    fn list_chains(&self, chains: &[&str]) -> Result<Vec<Option<Vec<String>>>> {
        Ip6tables::list_chains(self, chains)
    }

    fn list_all(&self) -> Result<Vec<String>> {
        Ip6tables::list_all(self)
    }

    fn list_raw_chain(&self, chain: &str) -> Result<Option<Vec<String>>> {
        self.list_table_chain("raw", chain)
    }

    fn restore(&self, batch: &str) -> Result<()> {
        Ip6tables::restore(self, batch)
    }

    fn skeleton_lock(&self) -> Result<Box<dyn std::any::Any>> {
        let path = Path::new(SKELETON_LOCK);
        let err = |source| Error::Lock {
            path: SKELETON_LOCK.into(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(err)?;
        let lock = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| err(std::io::Error::from(errno)))?;
        Ok(Box::new(lock))
    }

    fn generation(&self) -> Option<Generation> {
        if !self.is_nft() {
            return None;
        }
        generation::current()
            .inspect_err(|e| {
                // A kernel without the counter or the cookie (before 5.14)
                // is a fact of the node, not news on every call.
                if !generation::is_unsupported(e) {
                    eprintln!(
                        "firewall6: nf_tables generation unknown ({e}): checking the skeleton"
                    );
                }
            })
            .ok()
    }

    fn verified(&self) -> Option<Verified> {
        generation::load(Path::new(generation::VERIFIED))
    }

    fn set_verified(&self, v: &Verified) {
        // Not fatal: without the record the next ADD checks, as before.
        if let Err(e) = generation::store(Path::new(generation::VERIFIED), v) {
            eprintln!("firewall6: could not record {}: {e}", generation::VERIFIED);
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ip6tables {
    pub ip6tables: PathBuf,
    pub restore: PathBuf,
}

fn find(name: &'static str) -> Result<PathBuf> {
    SEARCH_DIRS
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::BinaryMissing {
            name,
            searched: SEARCH_DIRS.join(", "),
        })
}

/// ip6tables' answers for a chain that does not exist: legacy says "No
/// chain/target/match by that name", nft 1.8 "... is incompatible, use
/// 'nft' tool" or "does not exist".
fn is_missing_chain(stderr: &str) -> bool {
    stderr.contains("No chain/target/match")
        || stderr.contains("does not exist")
        || stderr.contains("incompatible, use 'nft' tool")
}

impl Ip6tables {
    /// Whether ip6tables-restore is the nf_tables backend
    /// (xtables-nft-multi, which Debian's and RHEL's alternatives point
    /// to); legacy or unknown: false.
    /// Resolved once per process (ADD and DEL ask twice).
    pub fn is_nft(&self) -> bool {
        static NFT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *NFT.get_or_init(|| {
            std::fs::canonicalize(&self.restore)
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().contains("nft")))
                .unwrap_or(false)
        })
    }

    pub fn locate() -> Result<Ip6tables> {
        Ok(Ip6tables {
            ip6tables: find("ip6tables")?,
            restore: find("ip6tables-restore")?,
        })
    }

    fn spawn(&self, args: &[&str]) -> Result<std::process::Child> {
        Command::new(&self.ip6tables)
            .arg("-w")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Spawn {
                what: format!("run {}", self.ip6tables.display()),
                source: e,
            })
    }

    fn finish(&self, child: std::process::Child) -> Result<(bool, String, String)> {
        let out = child.wait_with_output().map_err(|e| Error::Spawn {
            what: format!("wait for {}", self.ip6tables.display()),
            source: e,
        })?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }

    fn run(&self, args: &[&str]) -> Result<(bool, String, String)> {
        let child = self.spawn(args)?;
        self.finish(child)
    }

    /// One chain's listing from `-S CHAIN`'s outcome.
    fn chain_listing(
        chain: &str,
        (ok, stdout, stderr): (bool, String, String),
    ) -> Result<Option<Vec<String>>> {
        if !ok {
            if is_missing_chain(&stderr) {
                return Ok(None);
            }
            return Err(Error::Exec {
                what: format!("ip6tables -S {chain}"),
                status: "exit non-zero".into(),
                stderr,
            });
        }
        Ok(Some(
            stdout
                .lines()
                .filter(|l| l.starts_with("-A "))
                .map(str::to_string)
                .collect(),
        ))
    }

    /// [`Ip6tables::list_chain`] of several chains, their ip6tables
    /// processes running at the same time (all are reaped, also when one
    /// fails to start).
    pub fn list_chains(&self, chains: &[&str]) -> Result<Vec<Option<Vec<String>>>> {
        let children: Vec<Result<std::process::Child>> = chains
            .iter()
            .map(|c| self.spawn(&["-t", "filter", "-S", c]))
            .collect();
        let outcomes: Vec<Result<(bool, String, String)>> = children
            .into_iter()
            .map(|c| c.and_then(|c| self.finish(c)))
            .collect();
        chains
            .iter()
            .zip(outcomes)
            .map(|(c, o)| Self::chain_listing(c, o?))
            .collect()
    }

    /// The `-A` lines of one filter chain, `None` when the chain does not
    /// exist.
    pub fn list_chain(&self, chain: &str) -> Result<Option<Vec<String>>> {
        self.list_table_chain("filter", chain)
    }

    /// [`Ip6tables::list_chain`] in another table.
    pub fn list_table_chain(&self, table: &str, chain: &str) -> Result<Option<Vec<String>>> {
        Self::chain_listing(chain, self.run(&["-t", table, "-S", chain])?)
    }

    /// Every line of the filter table (`-N`, `-P` and `-A`), for GC.
    pub fn list_all(&self) -> Result<Vec<String>> {
        self.list_table("filter")
    }

    /// Every line of one table (`-N`, `-P` and `-A`).
    pub fn list_table(&self, table: &str) -> Result<Vec<String>> {
        let (ok, stdout, stderr) = self.run(&["-t", table, "-S"])?;
        if !ok {
            return Err(Error::Exec {
                what: format!("ip6tables -t {table} -S"),
                status: "exit non-zero".into(),
                stderr,
            });
        }
        Ok(stdout.lines().map(str::to_string).collect())
    }

    /// Apply one batch atomically: `ip6tables-restore -w --noflush`.
    pub fn restore(&self, batch: &str) -> Result<()> {
        let what = format!("{} -w --noflush", self.restore.display());
        let mut child = Command::new(&self.restore)
            .args(["-w", "--noflush"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Spawn {
                what: format!("run {what}"),
                source: e,
            })?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let write = stdin.write_all(batch.as_bytes());
        drop(stdin);
        let out = child.wait_with_output().map_err(|e| Error::Spawn {
            what: format!("wait for {what}"),
            source: e,
        })?;
        if out.status.success() {
            write.map_err(|e| Error::Spawn {
                what: format!("write batch to {what}"),
                source: e,
            })?;
            return Ok(());
        }
        Err(Error::Exec {
            what,
            status: out.status.to_string(),
            stderr: format!(
                "{} (batch: {})",
                String::from_utf8_lossy(&out.stderr).trim(),
                abbreviate(&batch.replace('\n', " ⏎ "), 600)
            ),
        })
    }

    /// STATUS: the binaries run and can read the filter table.
    pub fn usable(&self) -> Result<()> {
        let (ok, _, stderr) = self.run(&["-t", "filter", "-S", "FORWARD"])?;
        if ok {
            Ok(())
        } else {
            Err(Error::Exec {
                what: format!("{} -w -S FORWARD", self.ip6tables.display()),
                status: "exit non-zero".into(),
                stderr,
            })
        }
    }
}

/// At most `max` bytes of `s` (on a char boundary), marked when cut: a
/// skeleton batch has over a thousand lines, an error message should not.
fn abbreviate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} … ({} more bytes)", &s[..cut], s.len() - cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_batches_are_cut_in_messages() {
        assert_eq!(abbreviate("short", 10), "short");
        let long = "é".repeat(400);
        let a = abbreviate(&long, 101);
        assert!(
            a.starts_with(&"é".repeat(50)) && a.ends_with("(700 more bytes)"),
            "{a}"
        );
    }

    #[test]
    fn missing_chain_messages() {
        assert!(is_missing_chain(
            "ip6tables v1.8.9 (nf_tables): chain `NOPE' in table `filter' is incompatible, use 'nft' tool."
        ));
        assert!(is_missing_chain(
            "ip6tables: No chain/target/match by that name."
        ));
        assert!(!is_missing_chain(
            "ip6tables: Permission denied (you must be root)"
        ));
    }
}
