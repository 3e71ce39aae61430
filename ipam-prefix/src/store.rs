//! The on-disk store of one network: `<dataDir>/<network>/` (a contract:
//! conformance tests read it; see lib.rs for the layout and the reasons).
//! Which slot an ADD takes is [`crate::allocator`]'s choice; this module
//! owns the files, the lock and the repairs.
//!
//! Every step is one atomic filesystem operation, so a plugin killed
//! between any two steps leaves a state the next DEL, GC or boot-id
//! reconciliation repairs:
//! - ADD: `rename(temp, attachments/<key>)` publishes the record naming the
//!   slot, then `symlink(key, slots/<slot>)` reserves it (EEXIST = taken);
//! - DEL: removes the slot link first, the record second.
//!
//! So each step leaves at most a record without link, which the
//! attachment's own DEL removes in O(1); a link without record (left only by
//! hand or by a foreign writer) is GC's and the next boot's.
//!
//! A slot link is valid only when the record it names exists and names the
//! same slot back; anything else is debris, removed by GC or after a reboot.

use crate::error::{IpamError, Result};
use crate::plan::{Slot, SlotSpace};
use cni_common::attachment::Attachment;
use cni_common::file::{is_temp_name, replace, Durability, Replace};
use nix::fcntl::{Flock, FlockArg};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

mod record;
#[cfg(test)]
mod tests;

pub use record::*;

pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The current boot id, trimmed.
pub fn current_boot_id() -> Result<String> {
    fs::read_to_string(BOOT_ID_PATH)
        .map(|s| s.trim().to_string())
        .map_err(|e| IpamError::store(format!("read {BOOT_ID_PATH}"), e))
}

/// Read a file of the store without following a symlink or blocking on
/// a FIFO planted in its place: a symlink or special file is refused with
/// `InvalidData`, which callers treat as debris, not as an outage.
fn read_own(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                not_regular("a symlink")
            } else {
                e
            }
        })?;
    let t = f.metadata()?.file_type();
    if t.is_dir() {
        // Not debris that unlink() can clear: an error, so a record that
        // cannot be removed keeps its slot held.
        return Err(io::Error::from_raw_os_error(libc::EISDIR));
    }
    if !t.is_file() {
        return Err(not_regular(if t.is_fifo() {
            "a FIFO"
        } else {
            "a special file"
        }));
    }
    let mut bytes = Vec::new();
    f.read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn not_regular(what: &str) -> io::Error {
    io::Error::new(
        ErrorKind::InvalidData,
        format!("{what}, not a regular file written by ipam-prefix"),
    )
}

/// A directory of the store must be a real directory: a symlink planted
/// in its place would send every write elsewhere.
fn check_real_dir(d: &Path) -> Result<()> {
    let md = fs::symlink_metadata(d)
        .map_err(|e| IpamError::store(format!("stat store directory {}", d.display()), e))?;
    if md.is_dir() {
        return Ok(());
    }
    Err(IpamError::store(
        format!("use store directory {}", d.display()),
        io::Error::new(
            ErrorKind::InvalidData,
            format!(
                "it is {}, not a directory; ipam-prefix creates this directory itself: move the entry away (check who put it there)",
                if md.file_type().is_symlink() { "a symlink" } else { "a file" }
            ),
        ),
    ))
}

/// The store of one network.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    pub(crate) network: String,
    pub(crate) boot_id: String,
}

pub(crate) enum Claim {
    Claimed,
    Taken(String),
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

impl Store {
    pub fn new(data_dir: &Path, network: &str, boot_id: &str) -> Result<Store> {
        cni_common::config::validate_network_name(network)?;
        // Defensive: the name is one normal path component.
        if network.contains('/') || network.starts_with('.') {
            return Err(IpamError::config(
                "name",
                network,
                "a network name usable as a directory name",
            ));
        }
        Ok(Store {
            root: data_dir.join(network),
            network: network.to_string(),
            boot_id: boot_id.to_string(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn attachments(&self) -> PathBuf {
        self.root.join("attachments")
    }

    fn slots(&self) -> PathBuf {
        self.root.join("slots")
    }

    fn slot_path(&self, s: Slot) -> PathBuf {
        self.slots().join(s.file_name())
    }

    fn record_path(&self, k: &Attachment) -> PathBuf {
        self.attachments().join(record_name(k))
    }

    /// Create the directories, take the lock, reconcile the boot id.
    pub fn open(&self) -> Result<Locked<'_>> {
        for d in [self.attachments(), self.slots()] {
            fs::create_dir_all(&d).map_err(|e| {
                IpamError::store(format!("create store directory {}", d.display()), e)
            })?;
        }
        // dataDir itself may be a symlink an operator made; below it, all
        // is ours (create_dir_all accepts a symlink to a directory).
        for d in [self.root.clone(), self.attachments(), self.slots()] {
            check_real_dir(&d)?;
        }
        self.lock()
    }

    /// Like [`Store::open`] but `None`, creating nothing, when this
    /// network has no store yet (DEL, CHECK and GC of a fresh node).
    pub fn open_existing(&self) -> Result<Option<Locked<'_>>> {
        match fs::metadata(&self.root) {
            Ok(_) => self.open().map(Some),
            // A file where a directory of the path should be: no store can
            // exist there, so a DEL has nothing to release (and must not
            // block the pod's removal forever).
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
                Ok(None)
            }
            Err(e) => Err(IpamError::store(
                format!("stat store {}", self.root.display()),
                e,
            )),
        }
    }

    fn lock(&self) -> Result<Locked<'_>> {
        let path = self.root.join("lock");
        // O_NOFOLLOW: a symlink planted as the lock would have us create or
        // open a file elsewhere; O_NONBLOCK: a FIFO would block the open.
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .and_then(|f| match f.metadata()?.is_file() {
                true => Ok(f),
                false => Err(not_regular("the lock")),
            })
            .map_err(|e| {
                let e = match e.raw_os_error() {
                    Some(libc::ELOOP) => not_regular("a symlink"),
                    _ => e,
                };
                IpamError::store(format!("open lock file {}", path.display()), e)
            })?;
        let mut file = file;
        let lock = loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(l) => break l,
                Err((f, nix::errno::Errno::EINTR)) => file = f,
                Err((_, errno)) => {
                    return Err(IpamError::store(
                        format!("lock {}", path.display()),
                        io::Error::from_raw_os_error(errno as i32),
                    ))
                }
            }
        };
        let locked = Locked {
            store: self,
            _lock: lock,
        };
        // Best effort: what could not be released keeps its slot link, so
        // nothing is handed out twice, and boot_id stays old so the next
        // call tries again. Failing every ADD of the node for one stuck file
        // would be worse.
        if let Err(e) = locked.reconcile_boot() {
            eprintln!("ipam-prefix: releasing allocations of earlier boots: {e}");
        }
        Ok(locked)
    }

    /// STATUS: can an ADD succeed? Lock-free and read-only (it is polled
    /// every few seconds, conformance.md #46): a store that does not exist yet is
    /// fine when its nearest existing ancestor is a writable directory.
    pub fn status(&self, space: SlotSpace, ranges: &str) -> Result<()> {
        let unusable = |what: String| {
            IpamError::Unavailable(format!(
                "data directory {} is unusable: {what}",
                self.root.display()
            ))
        };
        let mut dir = self.root.as_path();
        let md = loop {
            match fs::metadata(dir) {
                Ok(md) => break md,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    dir = dir
                        .parent()
                        .ok_or_else(|| unusable("no existing ancestor".into()))?;
                }
                Err(e) => return Err(unusable(format!("stat {}: {e}", dir.display()))),
            }
        };
        if !md.is_dir() {
            return Err(unusable(format!("{} is not a directory", dir.display())));
        }
        nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK)
            .map_err(|e| unusable(format!("{} is not writable: {e}", dir.display())))?;
        if dir != self.root {
            return Ok(()); // nothing allocated yet
        }
        // Records of another boot are free: the next locked call releases them.
        match read_own(&self.root.join("boot_id")) {
            Ok(b) if String::from_utf8_lossy(&b).trim() == self.boot_id => {}
            _ => return Ok(()),
        }
        let slots = self.slots();
        let mut used: u128 = 0;
        match fs::read_dir(&slots) {
            Ok(rd) => {
                for ent in rd.flatten() {
                    if let Some(s) = ent.file_name().to_str().and_then(Slot::from_file_name) {
                        if space.contains(s) {
                            used += 1;
                        }
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(unusable(format!("read {}: {e}", slots.display()))),
        }
        if used >= space.capacity() {
            return Err(IpamError::RangeFull {
                ranges: ranges.to_string(),
                capacity: space.capacity(),
            });
        }
        Ok(())
    }
}

/// The store with its lock held; dropping it unlocks.
pub struct Locked<'a> {
    pub(crate) store: &'a Store,
    _lock: Flock<File>,
}

impl Locked<'_> {
    /// `bytes` as `dir/name`, fdatasync'ed, by rename from a temp file
    /// whose name repair recognises ([`is_temp_name`]). Only a writer that
    /// died with our pid can have left that temp: under the lock nobody
    /// else writes here. No fsync of the directory: see lib.rs ("Boot id").
    fn write_atomic(&self, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
        let dst = dir.join(name);
        let how = Replace {
            mode: 0o644,
            durability: Durability::Data,
            create_dir: false,
        };
        replace(&dst, bytes, &how)
            .map_err(|e| IpamError::store(format!("write {}", dst.display()), e))
    }

    pub fn read_record(&self, k: &Attachment) -> Result<RecordState> {
        self.read_record_named(&record_name(k), Some(k))
    }

    /// The record `attachments/<name>`. `expect`: the attachment it must
    /// name; `None` (a hashed name found by listing): whichever it names,
    /// as long as that attachment's file name is `name`.
    fn read_record_named(&self, name: &str, expect: Option<&Attachment>) -> Result<RecordState> {
        let p = self.store.attachments().join(name);
        let bytes = match read_own(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(RecordState::Missing),
            Err(e) if e.kind() == ErrorKind::InvalidData => {
                return Ok(RecordState::Corrupt(format!("{}: {e}", p.display())))
            }
            Err(e) => return Err(IpamError::store(format!("read {}", p.display()), e)),
        };
        // A record of a newer format is neither ours to interpret nor
        // debris: refuse it (the call fails, nothing is removed) rather
        // than release it as corrupt. Checked before the full parse, which
        // a newer layout may not pass.
        if let Ok(FormatVersion { version }) = serde_json::from_slice::<FormatVersion>(&bytes) {
            if version > RECORD_VERSION {
                return Err(IpamError::store(
                    format!("read {}", p.display()),
                    io::Error::new(
                        ErrorKind::Unsupported,
                        format!(
                            "record format version {version} is newer than this ipam-prefix reads ({RECORD_VERSION}): it was written by a newer release; run that release (or remove the record by hand after checking the pod is gone)"
                        ),
                    ),
                ));
            }
        }
        let names_it = |r: &Record| match expect {
            Some(k) => r.container_id == k.container_id && r.ifname == k.ifname,
            None => Attachment::new(&self.store.network, &r.container_id, &r.ifname)
                .is_ok_and(|k| record_name(&k) == name),
        };
        Ok(match serde_json::from_slice::<Record>(&bytes) {
            Ok(r) if names_it(&r) && r.network == self.store.network => RecordState::Valid(r),
            Ok(_) => RecordState::Corrupt(format!(
                "{} names another attachment or network",
                p.display()
            )),
            Err(e) => RecordState::Corrupt(format!("{}: {e}", p.display())),
        })
    }

    pub(crate) fn write_record(&self, r: &Record) -> Result<()> {
        let k = Attachment::new(&r.network, &r.container_id, &r.ifname)?;
        let json = serde_json::to_vec_pretty(r).expect("record serialises");
        self.write_atomic(&self.store.attachments(), &record_name(&k), &json)
    }

    /// The text of `slots/<slot>`, or None when free.
    pub fn slot_owner(&self, s: Slot) -> Result<Option<String>> {
        let p = self.store.slot_path(s);
        match fs::read_link(&p) {
            Ok(t) => Ok(Some(t.to_string_lossy().into_owned())),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            // Not a symlink: not ours, but it blocks the slot all the same.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(Some("(not a symlink)".into())),
            Err(e) => Err(IpamError::store(
                format!("read slot link {}", p.display()),
                e,
            )),
        }
    }

    pub(crate) fn try_claim(&self, s: Slot, owner: &str) -> Result<Claim> {
        let p = self.store.slot_path(s);
        match std::os::unix::fs::symlink(owner, &p) {
            Ok(()) => Ok(Claim::Claimed),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => match self.slot_owner(s)? {
                // Our own link from an ADD that died before its record.
                Some(o) if o == owner => Ok(Claim::Claimed),
                Some(o) => Ok(Claim::Taken(o)),
                None => Err(IpamError::store(
                    format!("claim slot link {}", p.display()),
                    e,
                )),
            },
            Err(e) => Err(IpamError::store(
                format!("create slot link {}", p.display()),
                e,
            )),
        }
    }

    pub(crate) fn unlink_slot(&self, s: Slot) -> Result<()> {
        let p = self.store.slot_path(s);
        ignore_missing(fs::remove_file(&p))
            .map_err(|e| IpamError::store(format!("remove slot link {}", p.display()), e))
    }

    /// Where the next dynamic allocation starts probing.
    pub fn cursor(&self, space: SlotSpace) -> Slot {
        read_own(&self.store.root.join("cursor"))
            .ok()
            .and_then(|t| Slot::parse_hex(&String::from_utf8_lossy(&t)))
            .filter(|s| space.contains(*s))
            .unwrap_or(space.first())
    }

    pub(crate) fn set_cursor(&self, s: Slot) {
        // Advisory only: a lost or torn cursor costs early reuse at worst,
        // so it is rewritten in place rather than renamed over: a rename
        // allocates one inode and frees another on every ADD, and on ext4
        // without a journal each inode allocation then scans past every
        // inode freed in the last seconds (find_inode_bit →
        // recently_deleted), a cost that grows with the pods attached
        // (docs/performance.md). O_NOFOLLOW: the path is ours;
        // O_NONBLOCK: a FIFO planted here must not block the ADD.
        let path = self.store.root.join("cursor");
        let text = format!("{}\n", s.file_name());
        let res = (|| -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&path)?;
            f.write_all(text.as_bytes())?;
            f.set_len(text.len() as u64)
        })();
        if let Err(e) = res {
            eprintln!(
                "ipam-prefix: cannot advance the cursor {} (allocation is still valid): {e}",
                path.display()
            );
        }
    }

    pub(crate) fn forget_record(&self, k: &Attachment) {
        let p = self.store.record_path(k);
        if let Err(e) = ignore_missing(fs::remove_file(&p)) {
            eprintln!("ipam-prefix: cannot remove {}: {e}", p.display());
        }
    }

    /// DEL: free the attachment's slot and record; absent = success.
    pub fn release(&self, k: &Attachment) -> Result<()> {
        self.release_named(&record_name(k), Some(k))
    }

    /// [`Locked::release`] by record name (`expect` as in
    /// [`Locked::read_record_named`]).
    fn release_named(&self, name: &str, expect: Option<&Attachment>) -> Result<()> {
        match self.read_record_named(name, expect)? {
            RecordState::Missing => return Ok(()),
            RecordState::Valid(rec) => {
                if self.slot_owner(rec.slot)?.as_deref() == Some(name) {
                    self.unlink_slot(rec.slot)?;
                }
            }
            RecordState::Corrupt(why) => {
                // Abnormal: the slot is unknown, find links naming us.
                eprintln!("ipam-prefix: releasing corrupt record ({why})");
                for (s, owner) in self.slot_links()? {
                    if owner == name {
                        self.unlink_slot(s)?;
                    }
                }
            }
        }
        let p = self.store.attachments().join(name);
        ignore_missing(fs::remove_file(&p))
            .map_err(|e| IpamError::store(format!("remove record {}", p.display()), e))
    }

    /// CHECK: the reservation exists, is consistent, and every recorded
    /// address is in `prev_ips` (conformance.md #32–34).
    pub fn verify(&self, k: &Attachment, prev_ips: &[String]) -> Result<Record> {
        let name = record_name(k);
        let rec = match self.read_record(k)? {
            RecordState::Valid(r) => r,
            RecordState::Missing => {
                return Err(IpamError::Check(format!(
                    "no address is allocated to {name} in network {}",
                    self.store.network
                )))
            }
            RecordState::Corrupt(why) => {
                return Err(IpamError::Check(format!(
                    "record of {name} is corrupt: {why}"
                )))
            }
        };
        match self.slot_owner(rec.slot)? {
            Some(o) if o == name => {}
            other => {
                return Err(IpamError::Check(format!(
                    "slot {} of {name} is not reserved for it (slot link: {})",
                    rec.slot,
                    other.as_deref().unwrap_or("missing")
                )))
            }
        }
        for a in &rec.addresses {
            if !prev_ips.iter().any(|p| p == a) {
                return Err(IpamError::Check(format!(
                    "address {a} allocated to {name} is not in prevResult.ips ({})",
                    prev_ips.join(", ")
                )));
            }
        }
        Ok(rec)
    }

    /// Every record of this network (attachments/ listing; names that are
    /// neither `<containerID>@<ifname>` nor its hashed form are not ours and
    /// are left alone): (record name, attachment, state). The attachment
    /// of a hashed name is known only from a valid record.
    pub fn records(&self) -> Result<Vec<(String, Option<Attachment>, RecordState)>> {
        let dir = self.store.attachments();
        let mut out = Vec::new();
        for ent in fs::read_dir(&dir)
            .map_err(|e| IpamError::store(format!("list {}", dir.display()), e))?
        {
            let ent = ent.map_err(|e| IpamError::store(format!("list {}", dir.display()), e))?;
            let Some(name) = ent
                .file_name()
                .to_str()
                .filter(|n| !n.starts_with('.'))
                .map(str::to_string)
            else {
                continue;
            };
            let key = attachment_of_record_name(&self.store.network, &name);
            if key.is_none() && !is_hashed_name(&name) {
                continue;
            }
            // An unreadable record is reported per key, not for the listing,
            // so best-effort passes still handle the others.
            let state = self
                .read_record_named(&name, key.as_ref())
                .unwrap_or_else(|e| RecordState::Corrupt(e.to_string()));
            let key = match (&key, &state) {
                (None, RecordState::Valid(r)) => {
                    Attachment::new(&r.network, &r.container_id, &r.ifname).ok()
                }
                _ => key,
            };
            out.push((name, key, state));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Every slot link: (slot, target text). Entries with non-canonical
    /// names or that are not symlinks are not ours and are skipped.
    pub fn slot_links(&self) -> Result<Vec<(Slot, String)>> {
        let dir = self.store.slots();
        let mut out = Vec::new();
        for ent in fs::read_dir(&dir)
            .map_err(|e| IpamError::store(format!("list {}", dir.display()), e))?
        {
            let ent = ent.map_err(|e| IpamError::store(format!("list {}", dir.display()), e))?;
            let Some(s) = ent.file_name().to_str().and_then(Slot::from_file_name) else {
                continue;
            };
            match fs::read_link(ent.path()) {
                Ok(t) => out.push((s, t.to_string_lossy().into_owned())),
                Err(_) => continue,
            }
        }
        out.sort();
        Ok(out)
    }

    /// Remove slot links whose record is missing or names another slot,
    /// and temp files of writers that died. Best effort: errors collected.
    fn repair(&self, errors: &mut Vec<IpamError>) -> usize {
        let mut removed = 0;
        match self.slot_links() {
            Err(e) => errors.push(e),
            Ok(links) => {
                for (s, target) in links {
                    let key = attachment_of_record_name(&self.store.network, &target);
                    let keep = match (&key, is_hashed_name(&target)) {
                        (None, false) => false,
                        _ => match self.read_record_named(&target, key.as_ref()) {
                            Ok(RecordState::Valid(r)) => r.slot == s,
                            // Unknown slot: keep rather than free a live one.
                            Ok(RecordState::Corrupt(_)) => true,
                            Ok(RecordState::Missing) => false,
                            Err(e) => {
                                errors.push(e);
                                true
                            }
                        },
                    };
                    if !keep {
                        match self.unlink_slot(s) {
                            Ok(()) => removed += 1,
                            Err(e) => errors.push(e),
                        }
                    }
                }
            }
        }
        for dir in [self.store.root.clone(), self.store.attachments()] {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for ent in rd.flatten() {
                if ent.file_name().to_str().is_some_and(is_temp_name) {
                    if let Err(e) = ignore_missing(fs::remove_file(ent.path())) {
                        errors.push(IpamError::store(
                            format!("remove temp file {}", ent.path().display()),
                            e,
                        ));
                    }
                }
            }
        }
        removed
    }

    /// GC (conformance.md #47–49): release every attachment not in `valid`, then
    /// repair. Keeps going on errors and reports them all at the end.
    pub fn gc(&self, valid: &HashSet<Attachment>) -> Result<GcReport> {
        let mut errors = Vec::new();
        let mut report = GcReport::default();
        // By name: a corrupt record with a hashed name has no known key.
        let valid: HashSet<String> = valid.iter().map(record_name).collect();
        match self.records() {
            Err(e) => errors.push(e),
            Ok(recs) => {
                for (name, key, _) in recs {
                    if valid.contains(&name) {
                        continue;
                    }
                    match self.release_named(&name, key.as_ref()) {
                        Ok(()) => report.released.push(name),
                        Err(e) => errors.push(e),
                    }
                }
            }
        }
        report.links_removed = self.repair(&mut errors);
        if errors.is_empty() {
            Ok(report)
        } else {
            Err(IpamError::Many(errors))
        }
    }

    /// Release every record of another boot (docs/design.md, "Nothing leaks
    /// across a reboot"), once per boot: the `boot_id` file says whether
    /// this boot's pass has run.
    fn reconcile_boot(&self) -> Result<()> {
        let path = self.store.root.join("boot_id");
        match read_own(&path) {
            Ok(b) if String::from_utf8_lossy(&b).trim() == self.store.boot_id => return Ok(()),
            Ok(_) => {}
            // Missing, or not a file we wrote (the rename below replaces it).
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidData) => {}
            Err(e) => return Err(IpamError::store(format!("read {}", path.display()), e)),
        }
        let mut errors = Vec::new();
        let mut released = 0;
        for (name, key, state) in self.records()? {
            let stale = match state {
                RecordState::Valid(r) => r.boot_id != self.store.boot_id,
                RecordState::Corrupt(_) => true,
                RecordState::Missing => false,
            };
            if stale {
                match self.release_named(&name, key.as_ref()) {
                    Ok(()) => released += 1,
                    Err(e) => errors.push(e),
                }
            }
        }
        let links = self.repair(&mut errors);
        if !errors.is_empty() {
            // boot_id stays old: the next call tries again.
            return Err(IpamError::Many(errors));
        }
        if released + links > 0 {
            eprintln!(
                "ipam-prefix: new boot {}: released {released} allocation(s) and {links} stale slot link(s) of earlier boots",
                self.store.boot_id
            );
        }
        self.write_atomic(
            &self.store.root,
            "boot_id",
            format!("{}\n", self.store.boot_id).as_bytes(),
        )
    }
}

/// What a GC pass removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    pub released: Vec<String>,
    pub links_removed: usize,
}
