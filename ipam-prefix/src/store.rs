//! The on-disk store of one network: `<dataDir>/<network>/` (a contract:
//! conformance tests read it; see lib.rs for the layout and the reasons).
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
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const RECORD_VERSION: u32 = 1;
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

/// The current boot id, trimmed.
pub fn current_boot_id() -> Result<String> {
    fs::read_to_string(BOOT_ID_PATH)
        .map(|s| s.trim().to_string())
        .map_err(|e| IpamError::store(format!("read {BOOT_ID_PATH}"), e))
}

/// (containerID, ifname): what one record and one slot belong to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentKey {
    pub container_id: String,
    pub ifname: String,
}

impl AttachmentKey {
    /// Both parts are validated again here (cni-common already did) so a
    /// key can never name a path outside the store: a container id has no
    /// `/`, `@` or leading `.`, an ifname no `/` and is not `.`/`..`.
    pub fn new(container_id: &str, ifname: &str) -> Result<AttachmentKey> {
        cni_common::env::validate_container_id(container_id)?;
        cni_common::env::validate_ifname(ifname)?;
        Ok(AttachmentKey {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        })
    }

    /// `<containerID>@<ifname>` when that fits in a file name, which it
    /// does for every id a runtime makes (64 hex digits). A longer one (a
    /// container id may have 255 bytes) is `<first 200 bytes of the
    /// id>~<32 hex digits of SHA-256 of id NUL ifname>@<ifname>`: `~` is
    /// never in a container id, so the two forms cannot meet, and names
    /// that fit keep the form every earlier release wrote.
    pub fn file_name(&self) -> String {
        let plain = format!("{}@{}", self.container_id, self.ifname);
        if plain.len() <= NAME_MAX {
            return plain;
        }
        let mut h = Sha256::new();
        h.update(self.container_id.as_bytes());
        h.update([0]);
        h.update(self.ifname.as_bytes());
        let hex: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        // Container ids are ASCII (validated), so any byte is a boundary.
        let head = &self.container_id[..HASHED_ID_HEAD];
        format!("{head}{HASH_MARK}{hex}@{}", self.ifname)
    }

    /// The key a plain `<containerID>@<ifname>` name stands for; `None` for
    /// a hashed name (its key is in the record) and for names not ours.
    pub fn from_file_name(s: &str) -> Option<AttachmentKey> {
        let (c, i) = s.split_once('@')?;
        AttachmentKey::new(c, i).ok()
    }
}

/// NAME_MAX of Linux file systems: the longest file name.
const NAME_MAX: usize = 255;
/// How much of a long container id a hashed record name keeps readable:
/// with `~`, 32 hex digits, `@` and a 15-byte ifname it stays ≤ 250.
const HASHED_ID_HEAD: usize = 200;
const HASH_MARK: char = '~';

/// A record name in the hashed form of [`AttachmentKey::file_name`]
/// (the attachment it stands for is read from the record).
/// Strict, because a slot link's target (any text) is looked up with it:
/// one normal path component, nothing that could leave `attachments/`.
fn is_hashed_name(name: &str) -> bool {
    let Some((id, ifname)) = name.split_once('@') else {
        return false;
    };
    let Some((head, hex)) = id.split_once(HASH_MARK) else {
        return false;
    };
    cni_common::env::validate_container_id(head).is_ok()
        && hex.len() == 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && cni_common::env::validate_ifname(ifname).is_ok()
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

/// One attachment's reservation (`attachments/<containerID>@<ifname>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub version: u32,
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    #[serde(with = "slot_hex")]
    pub slot: Slot,
    pub addresses: Vec<String>,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub boot_id: String,
    pub created: u64,
}

mod slot_hex {
    use crate::plan::Slot;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Slot, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&s.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Slot, D::Error> {
        let s = String::deserialize(d)?;
        Slot::parse_hex(&s).ok_or_else(|| serde::de::Error::custom(format!("bad slot {s:?}")))
    }
}

/// Just the format version of a record, read before anything else.
#[derive(Deserialize)]
struct FormatVersion {
    version: u32,
}

/// What reading a record found.
#[derive(Debug)]
pub enum RecordState {
    Missing,
    /// Unreadable JSON, or a record naming another attachment/network.
    Corrupt(String),
    Valid(Record),
}

/// A slot asked for by address (conformance.md #16, 73, 74).
#[derive(Debug, Clone)]
pub struct Requested {
    pub slot: Slot,
    /// Where the request came from (`args.cni.ips[0]`, `CNI_ARGS IP`, …).
    pub key: String,
    /// The requested address as given.
    pub text: String,
}

/// Everything ADD hands the store.
pub struct Allocation<'a> {
    pub key: &'a AttachmentKey,
    pub space: SlotSpace,
    pub requested: Option<Requested>,
    /// The record's addresses for a slot (one per pod range).
    pub addresses: &'a dyn Fn(Slot) -> Vec<String>,
    /// The pod ranges, for the "full" message.
    pub ranges: &'a str,
    pub pod_namespace: Option<&'a str>,
    pub pod_name: Option<&'a str>,
}

/// The store of one network.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    network: String,
    boot_id: String,
}

enum Claim {
    Claimed,
    Taken(String),
}

fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp.")
}

/// `.<name>.tmp.<pid>`, with `name` cut so the whole fits in NAME_MAX
/// (a record name may itself be 255 bytes long).
fn temp_name(name: &str) -> String {
    let suffix = format!(".tmp.{}", std::process::id());
    let room = NAME_MAX - 1 - suffix.len();
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}{suffix}", &name[..cut])
}

fn now() -> u64 {
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

    fn record_path(&self, k: &AttachmentKey) -> PathBuf {
        self.attachments().join(k.file_name())
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
    store: &'a Store,
    _lock: Flock<File>,
}

impl Locked<'_> {
    /// `bytes` as `dir/name`, fdatasync'ed, by rename from a temp file
    /// whose name repair recognises ([`is_temp_name`]).
    fn write_atomic(&self, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
        let tmp = dir.join(temp_name(name));
        let dst = dir.join(name);
        let res = (|| -> io::Result<()> {
            // Only a writer that died with our pid left this; under the
            // lock nobody else writes here. unlink() removes a planted
            // symlink itself, and O_EXCL|O_NOFOLLOW then creates a new
            // file or fails: never writes through a link.
            ignore_missing(fs::remove_file(&tmp))?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_data()?;
            // No fsync of the directory: see lib.rs ("Boot id").
            fs::rename(&tmp, &dst)
        })();
        res.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            IpamError::store(format!("write {}", dst.display()), e)
        })
    }

    pub fn read_record(&self, k: &AttachmentKey) -> Result<RecordState> {
        self.read_record_named(&k.file_name(), Some(k))
    }

    /// The record `attachments/<name>`. `expect`: the attachment it must
    /// name; `None` (a hashed name found by listing): whichever it names,
    /// as long as that attachment's file name is `name`.
    fn read_record_named(&self, name: &str, expect: Option<&AttachmentKey>) -> Result<RecordState> {
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
            None => {
                AttachmentKey::new(&r.container_id, &r.ifname).is_ok_and(|k| k.file_name() == name)
            }
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

    fn write_record(&self, r: &Record) -> Result<()> {
        let k = AttachmentKey::new(&r.container_id, &r.ifname)?;
        let json = serde_json::to_vec_pretty(r).expect("record serialises");
        self.write_atomic(&self.store.attachments(), &k.file_name(), &json)
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

    fn try_claim(&self, s: Slot, owner: &str) -> Result<Claim> {
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

    fn unlink_slot(&self, s: Slot) -> Result<()> {
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

    fn set_cursor(&self, s: Slot) {
        // Advisory only: a lost or torn cursor costs early reuse at worst,
        // so it is rewritten in place rather than renamed over: a rename
        // allocates one inode and frees another on every ADD, and on ext4
        // without a journal each inode allocation then scans past every
        // inode freed in the last seconds (find_inode_bit →
        // recently_deleted): ~1 ms per ADD of ipam-prefix's CPU right after
        // 1000 pods were attached (issue 7). O_NOFOLLOW: the path is ours;
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

    /// ADD: the attachment's slot, reserving one if it has none.
    pub fn allocate(&self, a: &Allocation<'_>) -> Result<Record> {
        let name = a.key.file_name();
        let mut reclaim = None;
        let mut created = now();
        if let RecordState::Valid(rec) = self.read_record(a.key)? {
            let owned = self.slot_owner(rec.slot)?.as_deref() == Some(name.as_str());
            let in_space = a.space.contains(rec.slot);
            let as_asked = !matches!(&a.requested, Some(r) if r.slot != rec.slot);
            if owned && in_space && as_asked {
                // Idempotent ADD (conformance.md #22): the same slot again; the
                // addresses follow the current plan if it was edited.
                let addresses = (a.addresses)(rec.slot);
                if addresses == rec.addresses {
                    return Ok(rec);
                }
                let rec = Record { addresses, ..rec };
                self.write_record(&rec)?;
                return Ok(rec);
            }
            if owned && in_space {
                let r = a.requested.as_ref().expect("as_asked is false");
                return Err(IpamError::config(
                    &r.key,
                    &r.text,
                    format!(
                        "the address of slot {} that {name} already holds (DEL the attachment before asking for another address)",
                        rec.slot
                    ),
                ));
            }
            if owned {
                // The pod range shrank under this slot: give it up.
                self.unlink_slot(rec.slot)?;
            } else if in_space && as_asked {
                // Link lost in a crash: try to keep the pod's address.
                reclaim = Some(rec.slot);
                created = rec.created;
            }
        }
        // Record first, link second: an ADD killed in between leaves a
        // record without link, which this attachment's DEL (one file read)
        // removes. The other order would leave a link that only a GC or a
        // reboot finds, and runtimes older than CNI 1.1 never send GC.
        // Under the lock, "free" (no link, or our own) stays true until our
        // symlink(); its EEXIST stays the last guard.
        let mut dynamic = false;
        let mut from = None;
        loop {
            let slot = if let Some(r) = &a.requested {
                match self.slot_owner(r.slot)? {
                    Some(owner) if owner != name => {
                        return Err(IpamError::SlotTaken {
                            address: format!("{}={}", r.key, r.text),
                            slot: r.slot.to_string(),
                            owner,
                        })
                    }
                    _ => r.slot,
                }
            } else if let Some(s) = reclaim.take().filter(|s| self.is_free_for(*s, &name)) {
                s
            } else {
                dynamic = true;
                let start = from.unwrap_or_else(|| self.cursor(a.space));
                self.probe(a.space, start, &name, a.ranges)?
            };
            let rec = Record {
                version: RECORD_VERSION,
                network: self.store.network.clone(),
                container_id: a.key.container_id.clone(),
                ifname: a.key.ifname.clone(),
                slot,
                addresses: (a.addresses)(slot),
                pod_namespace: a.pod_namespace.map(str::to_string),
                pod_name: a.pod_name.map(str::to_string),
                boot_id: self.store.boot_id.clone(),
                created,
            };
            self.write_record(&rec)?;
            match self.try_claim(slot, &name) {
                Ok(Claim::Claimed) => {
                    if dynamic {
                        self.set_cursor(a.space.next(slot));
                    }
                    return Ok(rec);
                }
                // Only a writer that ignores the lock can get here.
                Ok(Claim::Taken(owner)) => {
                    if let Some(r) = &a.requested {
                        self.forget_record(a.key);
                        return Err(IpamError::SlotTaken {
                            address: format!("{}={}", r.key, r.text),
                            slot: r.slot.to_string(),
                            owner,
                        });
                    }
                    from = Some(a.space.next(slot));
                }
                Err(e) => {
                    // Nothing leaks: the record goes again.
                    self.forget_record(a.key);
                    return Err(e);
                }
            }
        }
    }

    fn forget_record(&self, k: &AttachmentKey) {
        let p = self.store.record_path(k);
        if let Err(e) = ignore_missing(fs::remove_file(&p)) {
            eprintln!("ipam-prefix: cannot remove {}: {e}", p.display());
        }
    }

    /// The slot has no link, or a link naming this attachment (left by an
    /// earlier ADD of it that died).
    fn is_free_for(&self, s: Slot, name: &str) -> bool {
        match self.slot_owner(s) {
            Ok(None) => true,
            Ok(Some(o)) => o == name,
            Err(_) => false,
        }
    }

    /// Walk forward from `start` to the first free slot. In the normal case
    /// the cursor's slot is free: one readlink() that says ENOENT.
    fn probe(&self, space: SlotSpace, start: Slot, name: &str, ranges: &str) -> Result<Slot> {
        let mut s = start;
        let mut tried: u128 = 0;
        while tried < space.capacity() {
            match self.slot_owner(s)? {
                None => return Ok(s),
                Some(o) if o == name => return Ok(s),
                Some(_) => {}
            }
            s = space.next(s);
            tried += 1;
        }
        Err(IpamError::RangeFull {
            ranges: ranges.to_string(),
            capacity: space.capacity(),
        })
    }

    /// DEL: free the attachment's slot and record; absent = success.
    pub fn release(&self, k: &AttachmentKey) -> Result<()> {
        self.release_named(&k.file_name(), Some(k))
    }

    /// [`Locked::release`] by record name (`expect` as in
    /// [`Locked::read_record_named`]).
    fn release_named(&self, name: &str, expect: Option<&AttachmentKey>) -> Result<()> {
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
    pub fn verify(&self, k: &AttachmentKey, prev_ips: &[String]) -> Result<Record> {
        let name = k.file_name();
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
    pub fn records(&self) -> Result<Vec<(String, Option<AttachmentKey>, RecordState)>> {
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
            let key = AttachmentKey::from_file_name(&name);
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
                    AttachmentKey::new(&r.container_id, &r.ifname).ok()
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
                    let key = AttachmentKey::from_file_name(&target);
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
    pub fn gc(&self, valid: &HashSet<AttachmentKey>) -> Result<GcReport> {
        let mut errors = Vec::new();
        let mut report = GcReport::default();
        // By name: a corrupt record with a hashed name has no known key.
        let valid: HashSet<String> = valid.iter().map(AttachmentKey::file_name).collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{AddressPlan, NodePrefix, SubnetId};

    const BOOT: &str = "11111111-2222-3333-4444-555555555555";

    struct Fixture {
        dir: tempfile::TempDir,
        plan: AddressPlan,
    }

    impl Fixture {
        /// A store over `node` (e.g. a /104 for a 240-slot range).
        fn new(nodes: &[&str]) -> Fixture {
            let nodes: Vec<NodePrefix> = nodes
                .iter()
                .map(|n| NodePrefix::new(n.parse().unwrap()).unwrap())
                .collect();
            Fixture {
                dir: tempfile::tempdir().unwrap(),
                plan: AddressPlan::new(&nodes, SubnetId::DEFAULT).unwrap(),
            }
        }

        fn store(&self, boot: &str) -> Store {
            Store::new(self.dir.path(), "net1", boot).unwrap()
        }

        fn root(&self) -> PathBuf {
            self.dir.path().join("net1")
        }

        fn add_req(&self, st: &Store, cid: &str, requested: Option<Slot>) -> Result<Record> {
            let key = AttachmentKey::new(cid, "eth0").unwrap();
            let plan = self.plan.clone();
            let f = move |s: Slot| plan.addresses(s).iter().map(|a| a.to_string()).collect();
            let ranges = self.plan.describe();
            st.open()?.allocate(&Allocation {
                key: &key,
                space: self.plan.space(),
                requested: requested.map(|slot| Requested {
                    slot,
                    key: "args.cni.ips[0]".into(),
                    text: self.plan.ranges()[0].address(slot).to_string(),
                }),
                addresses: &f,
                ranges: &ranges,
                pod_namespace: Some("default"),
                pod_name: Some(cid),
            })
        }

        fn add(&self, st: &Store, cid: &str) -> Result<Record> {
            self.add_req(st, cid, None)
        }

        fn del(&self, st: &Store, cid: &str) {
            if let Some(l) = st.open_existing().unwrap() {
                l.release(&AttachmentKey::new(cid, "eth0").unwrap())
                    .unwrap();
            }
        }

        fn link(&self, s: u128) -> Option<String> {
            fs::read_link(self.root().join("slots").join(format!("{s:x}")))
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        }

        fn has_record(&self, cid: &str) -> bool {
            self.root()
                .join("attachments")
                .join(format!("{cid}@eth0"))
                .exists()
        }
    }

    #[test]
    fn allocate_writes_the_contract_layout() {
        let fx = Fixture::new(&["fd00:0:0:0:5::/80", "2001:db8:7:12::/80"]);
        let st = fx.store(BOOT);
        let r = fx.add(&st, "c1").unwrap();
        assert_eq!(r.slot, Slot(0x10));
        assert_eq!(
            r.addresses,
            vec![
                "fd00::5:1:0:10/96".to_string(),
                "2001:db8:7:12:0:1:0:10/96".to_string()
            ]
        );
        let root = fx.root();
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join("attachments/c1@eth0")).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert_eq!(v["network"], "net1");
        assert_eq!(v["containerId"], "c1");
        assert_eq!(v["ifname"], "eth0");
        assert_eq!(v["slot"], "0x10");
        assert_eq!(v["addresses"][1], "2001:db8:7:12:0:1:0:10/96");
        assert_eq!(v["podNamespace"], "default");
        assert_eq!(v["podName"], "c1");
        assert_eq!(v["bootId"], BOOT);
        assert!(v["created"].as_u64().unwrap() > 1_600_000_000);
        assert_eq!(fx.link(0x10).as_deref(), Some("c1@eth0"));
        assert_eq!(
            fs::read_to_string(root.join("cursor")).unwrap().trim(),
            "11"
        );
        assert_eq!(
            fs::read_to_string(root.join("boot_id")).unwrap().trim(),
            BOOT
        );
        assert!(root.join("lock").exists());
        // No temp files left behind.
        for d in [root.clone(), root.join("attachments")] {
            for e in fs::read_dir(d).unwrap() {
                assert!(!e.unwrap().file_name().to_string_lossy().starts_with('.'));
            }
        }
        // podName/podNamespace absent → null.
        let key = AttachmentKey::new("c2", "net1").unwrap();
        let plan = fx.plan.clone();
        let f = move |s: Slot| plan.addresses(s).iter().map(|a| a.to_string()).collect();
        st.open()
            .unwrap()
            .allocate(&Allocation {
                key: &key,
                space: fx.plan.space(),
                requested: None,
                addresses: &f,
                ranges: "",
                pod_namespace: None,
                pod_name: None,
            })
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&fs::read(root.join("attachments/c2@net1")).unwrap()).unwrap();
        assert!(v["podName"].is_null() && v["podNamespace"].is_null());
        assert_eq!(v["slot"], "0x11");
    }

    #[test]
    fn re_add_returns_the_same_slot() {
        // conformance.md #22: never a second slot for one attachment.
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        let a = fx.add(&st, "c1").unwrap();
        let b = fx.add(&st, "c1").unwrap();
        assert_eq!(a, b);
        assert!(fx.link(0x11).is_none());
        assert_eq!(fx.add(&st, "c2").unwrap().slot, Slot(0x11));
        // Asking for another address while holding one is refused and
        // leaves the first reservation intact.
        let e = fx.add_req(&st, "c1", Some(Slot(0x40))).unwrap_err();
        assert_eq!(cni_common::Error::from(e).code(), 7);
        assert!(fx.link(0x40).is_none());
        assert_eq!(fx.link(0x10).as_deref(), Some("c1@eth0"));
        // Asking for the one it holds is fine.
        assert_eq!(
            fx.add_req(&st, "c1", Some(Slot(0x10))).unwrap().slot,
            Slot(0x10)
        );
    }

    #[test]
    fn del_is_idempotent_and_frees() {
        // conformance.md #25, 26
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        fx.add(&st, "c1").unwrap();
        fx.del(&st, "c1");
        assert!(fx.link(0x10).is_none() && !fx.has_record("c1"));
        fx.del(&st, "c1");
        fx.del(&st, "never-added");
        // DEL on a network that has no store creates nothing.
        let other = Store::new(fx.dir.path(), "other", BOOT).unwrap();
        assert!(other.open_existing().unwrap().is_none());
        assert!(!fx.dir.path().join("other").exists());
    }

    #[test]
    fn freed_slots_wait_for_the_cursor_to_wrap() {
        let fx = Fixture::new(&["fd00::aa:bb00:0/104"]); // /120: slots 0x10..=0xff
        let st = fx.store(BOOT);
        for i in 0..3 {
            assert_eq!(fx.add(&st, &format!("c{i}")).unwrap().slot, Slot(0x10 + i));
        }
        fx.del(&st, "c0");
        // 0x10 is free but the cursor is at 0x13.
        assert_eq!(fx.add(&st, "d").unwrap().slot, Slot(0x13));
        // Fill the rest; the walk wraps and finds 0x10 last.
        for i in 0x14..=0xffu128 {
            assert_eq!(fx.add(&st, &format!("f{i}")).unwrap().slot, Slot(i));
        }
        assert_eq!(
            fs::read_to_string(fx.root().join("cursor")).unwrap().trim(),
            "10"
        );
        assert_eq!(fx.add(&st, "wrap").unwrap().slot, Slot(0x10));
        // Full: a clear error, code 50, nothing written.
        let e = fx.add(&st, "one-too-many").unwrap_err();
        assert!(e.to_string().contains("240 pod slots"), "{e}");
        assert_eq!(cni_common::Error::from(e).code(), 50);
        assert!(!fx.has_record("one-too-many"));
        assert!(matches!(
            st.status(fx.plan.space(), "r"),
            Err(IpamError::RangeFull { .. })
        ));
        // STATUS recovers after one DEL (conformance.md #44).
        fx.del(&st, "f100");
        assert!(st.status(fx.plan.space(), "r").is_ok());
        assert_eq!(fx.add(&st, "again").unwrap().slot, Slot(100));
    }

    #[test]
    fn corrupt_cursor_starts_at_first_pod_slot() {
        let fx = Fixture::new(&["fd00::aa:bb00:0/104"]);
        let st = fx.store(BOOT);
        fx.add(&st, "a").unwrap();
        for junk in ["", "zz", "5", "fff", "0x"] {
            fs::write(fx.root().join("cursor"), junk).unwrap();
            let l = st.open().unwrap();
            assert_eq!(l.cursor(fx.plan.space()), Slot(0x10), "{junk:?}");
        }
        // 0x10 is taken, so the probe moves on.
        assert_eq!(fx.add(&st, "b").unwrap().slot, Slot(0x11));
    }

    #[test]
    fn cursor_is_rewritten_in_place_and_never_through_a_link() {
        use std::os::unix::fs::MetadataExt;
        let fx = Fixture::new(&["fd00::aa:bb00:0/104"]);
        let st = fx.store(BOOT);
        fx.add(&st, "a").unwrap();
        let cursor = fx.root().join("cursor");
        let ino = fs::metadata(&cursor).unwrap().ino();
        // Longer junk first: the rewrite leaves nothing of it behind.
        fs::write(&cursor, format!("11\n{}", "x".repeat(40))).unwrap();
        assert_eq!(fx.add(&st, "b").unwrap().slot, Slot(0x11));
        assert_eq!(fs::read_to_string(&cursor).unwrap(), "12\n");
        assert_eq!(fs::metadata(&cursor).unwrap().ino(), ino, "same inode");
        // A symlink in its place is not followed: the allocation stands,
        // the link's target is untouched.
        let target = fx.dir.path().join("elsewhere");
        fs::write(&target, "keep").unwrap();
        fs::remove_file(&cursor).unwrap();
        std::os::unix::fs::symlink(&target, &cursor).unwrap();
        assert_eq!(fx.add(&st, "c").unwrap().slot, Slot(0x10 + 2));
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn requested_slot() {
        // conformance.md #73: the requested address, then "taken" → error, nothing leaked.
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        assert_eq!(
            fx.add_req(&st, "c1", Some(Slot(0x42))).unwrap().slot,
            Slot(0x42)
        );
        // Requests do not move the cursor.
        assert_eq!(fx.add(&st, "c2").unwrap().slot, Slot(0x10));
        let e = fx.add_req(&st, "c3", Some(Slot(0x42))).unwrap_err();
        let m = e.to_string();
        assert!(m.contains("c1@eth0") && m.contains("0x42"), "{m}");
        assert_eq!(cni_common::Error::from(e).code(), 7);
        assert!(!fx.has_record("c3"));
        assert_eq!(fx.link(0x42).as_deref(), Some("c1@eth0"));
    }

    #[test]
    fn crash_leftovers_are_repaired() {
        let fx = Fixture::new(&["fd00::aa:bb00:0/104"]);
        let st = fx.store(BOOT);
        let slots = fx.root().join("slots");
        fx.add(&st, "a").unwrap(); // 0x10
        fx.add(&st, "b").unwrap(); // 0x11
        fx.add(&st, "c").unwrap(); // 0x12
                                   // 1. ADD died after symlink, before the record: a link without record.
        std::os::unix::fs::symlink("dead@eth0", slots.join("13")).unwrap();
        // The next ADD for the dead attachment takes its own link over.
        // (Here: a different one probes past it.)
        assert_eq!(fx.add(&st, "d").unwrap().slot, Slot(0x14));
        // 2. DEL died after removing the link: a record without link.
        fs::remove_file(slots.join("10")).unwrap();
        // 3. A record whose slot link points elsewhere.
        fs::remove_file(slots.join("11")).unwrap();
        std::os::unix::fs::symlink("c@eth0", slots.join("11")).unwrap();
        // 4. A writer died mid-write.
        fs::write(fx.root().join("attachments/.x@eth0.tmp.999"), "{").unwrap();
        fs::write(fx.root().join(".cursor.tmp.999"), "1").unwrap();
        // Foreign files are left alone.
        fs::write(fx.root().join("attachments/README"), "mine").unwrap();
        fs::write(slots.join("not-a-slot"), "").unwrap();

        // DEL repairs (2) and (3).
        fx.del(&st, "a");
        assert!(!fx.has_record("a"));
        fx.del(&st, "b");
        assert!(!fx.has_record("b"));
        assert_eq!(
            fx.link(0x11).as_deref(),
            Some("c@eth0"),
            "DEL must not remove another's link"
        );
        // CHECK of c still fine; the stray 0x11 link is GC's.
        let valid: HashSet<_> = ["c", "d"]
            .iter()
            .map(|c| AttachmentKey::new(c, "eth0").unwrap())
            .collect();
        let l = st.open().unwrap();
        let rep = l.gc(&valid).unwrap();
        assert!(rep.released.is_empty());
        assert_eq!(rep.links_removed, 2); // 0x11 (points back wrongly), 0x13 (no record)
        drop(l);
        assert!(fx.link(0x11).is_none() && fx.link(0x13).is_none());
        assert_eq!(fx.link(0x12).as_deref(), Some("c@eth0"));
        assert!(!fx.root().join("attachments/.x@eth0.tmp.999").exists());
        assert!(!fx.root().join(".cursor.tmp.999").exists());
        assert!(fx.root().join("attachments/README").exists());
        assert!(slots.join("not-a-slot").exists());
    }

    #[test]
    fn lost_link_is_reclaimed_by_re_add() {
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        fx.add(&st, "a").unwrap();
        fx.add(&st, "b").unwrap();
        fs::remove_file(fx.root().join("slots/10")).unwrap();
        // Same address again although the cursor is past it.
        assert_eq!(fx.add(&st, "a").unwrap().slot, Slot(0x10));
        assert_eq!(fx.link(0x10).as_deref(), Some("a@eth0"));
        // A link of this attachment without record (only by hand now, or a
        // pre-release ADD order): the retry uses it.
        std::os::unix::fs::symlink("z@eth0", fx.root().join("slots/12")).unwrap();
        assert_eq!(fx.add(&st, "z").unwrap().slot, Slot(0x12));
    }

    #[test]
    fn add_killed_between_record_and_link_is_undone_by_its_del() {
        // docs/design.md: killed at any point → the next DEL repairs; conformance.md #82.
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        let a = fx.add(&st, "a").unwrap();
        // What a kill after the record's rename, before symlink(), leaves:
        let dead = Record {
            container_id: "dead".into(),
            slot: Slot(0x11),
            ..a.clone()
        };
        fs::write(
            fx.root().join("attachments/dead@eth0"),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        fx.del(&st, "dead");
        assert!(!fx.has_record("dead") && fx.link(0x11).is_none());
        assert_eq!(fx.link(0x10).as_deref(), Some("a@eth0"));
        // Had the runtime retried the ADD instead, it would get that slot.
        fs::write(
            fx.root().join("attachments/dead@eth0"),
            serde_json::to_vec(&dead).unwrap(),
        )
        .unwrap();
        assert_eq!(fx.add(&st, "dead").unwrap().slot, Slot(0x11));
        assert_eq!(fx.link(0x11).as_deref(), Some("dead@eth0"));
    }

    #[test]
    fn status_writes_nothing() {
        // conformance.md #46: polled every few seconds, must not write.
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        st.status(fx.plan.space(), "r").unwrap();
        assert!(fs::read_dir(fx.dir.path()).unwrap().next().is_none());
        let deep = Store::new(&fx.dir.path().join("a/b"), "net1", BOOT).unwrap();
        deep.status(fx.plan.space(), "r").unwrap();
        assert!(!fx.dir.path().join("a").exists());
    }

    #[test]
    fn corrupt_record_is_released_by_del() {
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        fx.add(&st, "a").unwrap();
        fs::write(fx.root().join("attachments/a@eth0"), "{not json").unwrap();
        let l = st.open().unwrap();
        let e = l
            .verify(&AttachmentKey::new("a", "eth0").unwrap(), &[])
            .unwrap_err();
        assert!(e.to_string().contains("corrupt"), "{e}");
        drop(l);
        fx.del(&st, "a");
        assert!(fx.link(0x10).is_none() && !fx.has_record("a"));
    }

    /// A record of a newer format (here: version 2 with a layout v1 cannot
    /// parse) is refused with its version named, never released as corrupt:
    /// not by DEL, not by GC, not by the new-boot pass.
    #[test]
    fn newer_record_version_is_refused_not_released() {
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        fx.add(&st, "a").unwrap();
        let path = fx.root().join("attachments/a@eth0");
        let v2 = r#"{"version":2,"slots":{"10":"x"},"bootId":"other"}"#;
        fs::write(&path, v2).unwrap();
        let key = AttachmentKey::new("a", "eth0").unwrap();
        let e = st.open().unwrap().release(&key).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("version 2") && msg.contains("a@eth0"), "{msg}");
        assert_eq!(cni_common::Error::from(e).code(), 5);
        assert!(st.open().unwrap().gc(&HashSet::new()).is_err());
        // A new boot's pass cannot release it either, and says so each time.
        let new = fx.store("99999999-2222-3333-4444-555555555555");
        fx.add(&new, "b").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), v2);
        assert_eq!(fx.link(0x10).as_deref(), Some("a@eth0"));
    }

    #[test]
    fn new_boot_releases_old_records() {
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let old = fx.store(BOOT);
        fx.add(&old, "a").unwrap();
        fx.add(&old, "b").unwrap();
        std::os::unix::fs::symlink("gone@eth0", fx.root().join("slots/77")).unwrap();
        let new = fx.store("99999999-2222-3333-4444-555555555555");
        // STATUS before any locked call: old records count as free.
        assert!(new.status(fx.plan.space(), "r").is_ok());
        let r = fx.add(&new, "c").unwrap();
        // a and b were released; the cursor still moves forward.
        assert!(!fx.has_record("a") && !fx.has_record("b"));
        assert!(fx.link(0x10).is_none() && fx.link(0x11).is_none() && fx.link(0x77).is_none());
        assert_eq!(r.slot, Slot(0x12));
        assert_eq!(
            fs::read_to_string(fx.root().join("boot_id"))
                .unwrap()
                .trim(),
            "99999999-2222-3333-4444-555555555555"
        );
        // A missing boot_id file also triggers the pass; same-boot records stay.
        fs::remove_file(fx.root().join("boot_id")).unwrap();
        fx.add(&new, "d").unwrap();
        assert!(fx.has_record("c") && fx.has_record("d"));
        // A stale record that cannot be removed does not block ADD: its slot
        // stays held by its link, and the pass is retried (boot_id is not
        // updated) until it succeeds.
        let third = "77777777-2222-3333-4444-555555555555";
        let stuck = fx.root().join("attachments/c@eth0");
        let body = fs::read(&stuck).unwrap();
        fs::remove_file(&stuck).unwrap();
        fs::create_dir(&stuck).unwrap();
        fs::write(stuck.join("x"), &body).unwrap();
        let e = fx.add(&fx.store(third), "e").unwrap();
        assert!(fx.link(0x12).is_some(), "c's link still holds its slot");
        assert_ne!(e.slot, Slot(0x12));
        assert!(!fx.has_record("d"), "d (second boot) was released");
        assert_ne!(
            fs::read_to_string(fx.root().join("boot_id"))
                .unwrap()
                .trim(),
            third
        );
        fs::remove_dir_all(&stuck).unwrap();
        fx.add(&fx.store(third), "f").unwrap();
        assert_eq!(
            fs::read_to_string(fx.root().join("boot_id"))
                .unwrap()
                .trim(),
            third
        );
        assert!(
            fx.link(0x12).is_none(),
            "c's orphaned link went with the retried pass"
        );
        assert!(fx.has_record("e") && fx.has_record("f"));
    }

    #[test]
    fn gc_with_and_without_valid_list() {
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        for c in ["a", "b", "c"] {
            fx.add(&st, c).unwrap();
        }
        // Another network's store is never touched.
        let other = Store::new(fx.dir.path(), "net2", BOOT).unwrap();
        let key = AttachmentKey::new("b", "eth0").unwrap();
        let f = |s: Slot| vec![format!("{s}")];
        other
            .open()
            .unwrap()
            .allocate(&Allocation {
                key: &key,
                space: fx.plan.space(),
                requested: None,
                addresses: &f,
                ranges: "",
                pod_namespace: None,
                pod_name: None,
            })
            .unwrap();
        let valid: HashSet<_> = [AttachmentKey::new("a", "eth0").unwrap()]
            .into_iter()
            .collect();
        let rep = st.open().unwrap().gc(&valid).unwrap();
        assert_eq!(
            rep.released,
            vec!["b@eth0".to_string(), "c@eth0".to_string()]
        );
        assert!(fx.has_record("a") && !fx.has_record("b") && !fx.has_record("c"));
        assert!(fx.dir.path().join("net2/attachments/b@eth0").exists());
        // An empty list means "nothing is in use".
        let rep = st.open().unwrap().gc(&HashSet::new()).unwrap();
        assert_eq!(rep.released, vec!["a@eth0".to_string()]);
        assert!(fs::read_dir(fx.root().join("slots"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn gc_keeps_going_and_reports_every_error() {
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        for c in ["a", "b", "c"] {
            fx.add(&st, c).unwrap();
        }
        // A record that cannot be removed: replace it with a non-empty
        // directory (works as root too, unlike permission tricks).
        let rec = fx.root().join("attachments/b@eth0");
        let body = fs::read(&rec).unwrap();
        fs::remove_file(&rec).unwrap();
        fs::create_dir(&rec).unwrap();
        fs::write(rec.join("x"), &body).unwrap();
        let e = st.open().unwrap().gc(&HashSet::new()).unwrap_err();
        assert!(e.to_string().contains("b@eth0"), "{e}");
        // The others were still released.
        assert!(!fx.has_record("a") && !fx.has_record("c"));
    }

    #[test]
    fn verify_compares_with_prev_result() {
        let fx = Fixture::new(&["fd00::5:0:0:0/80", "2001:db8::/80"]);
        let st = fx.store(BOOT);
        let r = fx.add(&st, "a").unwrap();
        let l = st.open().unwrap();
        let k = AttachmentKey::new("a", "eth0").unwrap();
        assert!(l.verify(&k, &r.addresses).is_ok());
        let mut extra = r.addresses.clone();
        extra.push("fd99::1/96".into());
        assert!(
            l.verify(&k, &extra).is_ok(),
            "extra addresses from later plugins are fine"
        );
        let e = l.verify(&k, &r.addresses[..1]).unwrap_err();
        assert_eq!(
            cni_common::Error::from(e).code(),
            cni_common::error::code::CHECK_FAILED
        );
        let e = l
            .verify(&AttachmentKey::new("zz", "eth0").unwrap(), &r.addresses)
            .unwrap_err();
        assert!(e.to_string().contains("no address is allocated"), "{e}");
        fs::remove_file(fx.root().join("slots/10")).unwrap();
        assert!(l
            .verify(&k, &r.addresses)
            .unwrap_err()
            .to_string()
            .contains("not reserved"));
    }

    #[test]
    fn concurrent_allocations_get_distinct_slots() {
        // conformance.md #83. flock locks an open file description, so threads
        // that each open the lock file exclude each other like processes.
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let fx = &fx;
        let slots: Vec<Slot> = std::thread::scope(|sc| {
            let hs: Vec<_> = (0..32)
                .map(|i| sc.spawn(move || fx.add(&fx.store(BOOT), &format!("t{i}")).unwrap().slot))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut sorted = slots.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, (0x10..0x30).map(Slot).collect::<Vec<_>>());
    }

    #[test]
    fn keys_cannot_escape_the_store() {
        assert!(AttachmentKey::new("../x", "eth0").is_err());
        assert!(AttachmentKey::new("a", "..").is_err());
        assert!(AttachmentKey::new("a", "x/y").is_err());
        assert!(AttachmentKey::new("a@b", "eth0").is_err());
        assert_eq!(
            AttachmentKey::from_file_name("a@b@c").unwrap().ifname,
            "b@c"
        );
        assert!(AttachmentKey::from_file_name(".a@eth0.tmp.1").is_none());
        let d = Path::new("/tmp");
        assert!(Store::new(d, "..", BOOT).is_err());
        assert!(Store::new(d, "a/b", BOOT).is_err());
        assert!(Store::new(d, ".hidden", BOOT).is_err());
    }

    /// Issue 15: a container id of up to 255 bytes is valid, but
    /// `<id>@<ifname>` then exceeds NAME_MAX: ADD failed with "File name
    /// too long" and so did every DEL after it.
    #[test]
    fn longest_container_ids_get_a_record_name_that_fits() {
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        let long = |n: usize, c: char| -> String { std::iter::repeat_n(c, n).collect() };
        // 250 + "@eth0" = 255: the plain name still fits, and its temp
        // name (longer than NAME_MAX if built naively) is cut to fit.
        let edge = long(250, 'e');
        assert_eq!(
            AttachmentKey::new(&edge, "eth0").unwrap().file_name().len(),
            255
        );
        fx.add(&st, &edge).unwrap();
        assert!(fx.has_record(&edge));
        for n in [251, 254, 255] {
            let id = long(n, 'a');
            let key = AttachmentKey::new(&id, "eth0").unwrap();
            let name = key.file_name();
            assert!(name.len() <= NAME_MAX && is_hashed_name(&name), "{name}");
            assert!(name.starts_with(&id[..HASHED_ID_HEAD]) && name.ends_with("@eth0"));
            let rec = fx.add(&st, &id).unwrap();
            assert_eq!(fx.link(rec.slot.0).as_deref(), Some(name.as_str()));
            assert_eq!(fx.add(&st, &id).unwrap().slot, rec.slot, "idempotent ADD");
            let l = st.open().unwrap();
            l.verify(&key, &rec.addresses).unwrap();
            l.release(&key).unwrap();
            l.release(&key).unwrap();
            assert!(fx.link(rec.slot.0).is_none());
            assert!(!fx.root().join("attachments").join(&name).exists());
        }
        // Only the exact hashed form counts: a slot link's target is
        // looked up with it.
        let hashed = AttachmentKey::new(&long(255, 'a'), "eth0")
            .unwrap()
            .file_name();
        assert!(is_hashed_name(&hashed));
        for bad in [
            "../x~0123456789abcdef0123456789abcdef@eth0",
            "a~0123456789abcdef0123456789abcdef@../../etc",
            "a~0123456789abcdef@eth0",
            ".a~0123456789abcdef0123456789abcdef@eth0",
            "a~0123456789abcdef0123456789abcdeg@eth0",
        ] {
            assert!(!is_hashed_name(bad), "{bad}");
        }
        // Same 200-byte head, different tails: different names.
        let a = AttachmentKey::new(&(long(200, 'x') + &long(55, 'a')), "eth0").unwrap();
        let b = AttachmentKey::new(&(long(200, 'x') + &long(55, 'b')), "eth0").unwrap();
        assert_ne!(a.file_name(), b.file_name());
        let c = AttachmentKey::new(&(long(200, 'x') + &long(55, 'a')), "eth1").unwrap();
        assert_ne!(a.file_name(), c.file_name());
        // GC knows a hashed record's attachment from its content.
        let rec_a = fx.add(&st, &a.container_id).unwrap();
        let rec_b = fx.add(&st, &b.container_id).unwrap();
        let valid: HashSet<_> = [a.clone()].into_iter().collect();
        let rep = st.open().unwrap().gc(&valid).unwrap();
        assert_eq!(rep.released.len(), 2, "{rep:?}"); // b and the 250-byte edge id
        assert!(rep.released.contains(&b.file_name()));
        assert_eq!(
            fx.link(rec_a.slot.0).as_deref(),
            Some(a.file_name().as_str())
        );
        assert!(fx.link(rec_b.slot.0).is_none());
        // The new-boot pass releases it too.
        let st2 = fx.store("99999999-2222-3333-4444-555555555555");
        drop(st2.open().unwrap());
        assert!(fx.link(rec_a.slot.0).is_none());
        assert_eq!(
            fs::read_dir(fx.root().join("attachments")).unwrap().count(),
            0
        );
    }

    /// Issue 15: symlinks planted in the store point at a file outside;
    /// it must stay untouched, and the call fails clearly or goes on.
    #[test]
    fn planted_symlinks_are_never_followed() {
        let fx = Fixture::new(&["fd00::5:0:0:0/80"]);
        let st = fx.store(BOOT);
        let outside = fx.dir.path().join("outside");
        fs::write(&outside, "precious").unwrap();
        let intact = || assert_eq!(fs::read_to_string(&outside).unwrap(), "precious");
        fx.add(&st, "first").unwrap();

        // The temp file of the next record: ADD goes on, through a new file.
        let attachments = fx.root().join("attachments");
        let tmp = attachments.join(temp_name("c1@eth0"));
        std::os::unix::fs::symlink(&outside, &tmp).unwrap();
        fx.add(&st, "c1").unwrap();
        intact();
        assert!(fs::symlink_metadata(&tmp).is_err());
        assert!(fx.has_record("c1"));

        // A record replaced by a symlink: corrupt, released by DEL (the
        // link itself goes), the target is not read as a record.
        let rec = attachments.join("c1@eth0");
        fs::remove_file(&rec).unwrap();
        std::os::unix::fs::symlink(&outside, &rec).unwrap();
        assert!(matches!(
            st.open().unwrap().read_record(&AttachmentKey::new("c1", "eth0").unwrap()).unwrap(),
            RecordState::Corrupt(m) if m.contains("symlink")
        ));
        fx.del(&st, "c1");
        assert!(fs::symlink_metadata(&rec).is_err());
        intact();

        // boot_id and cursor as symlinks: read as absent, replaced by files.
        for f in ["boot_id", "cursor"] {
            let p = fx.root().join(f);
            fs::remove_file(&p).unwrap();
            std::os::unix::fs::symlink(&outside, &p).unwrap();
        }
        fx.add(&st, "c2").unwrap();
        intact();
        assert!(!fs::symlink_metadata(fx.root().join("boot_id"))
            .unwrap()
            .is_symlink());

        // The lock: refused with a message naming it, nothing created.
        let lock = fx.root().join("lock");
        fs::remove_file(&lock).unwrap();
        let created = fx.dir.path().join("created-through-lock");
        std::os::unix::fs::symlink(&created, &lock).unwrap();
        let e = st.open().err().unwrap().to_string();
        assert!(e.contains("lock") && e.contains("symlink"), "{e}");
        assert!(!created.exists());
        fs::remove_file(&lock).unwrap();

        // The store's own directories: refused, nothing written elsewhere.
        let elsewhere = fx.dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let slots = fx.root().join("slots");
        fs::rename(&slots, fx.dir.path().join("old-slots")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &slots).unwrap();
        let e = st.open().err().unwrap().to_string();
        assert!(e.contains("slots") && e.contains("symlink"), "{e}");
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
        intact();
    }

    #[test]
    fn status_reports_unusable_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let st = Store::new(&file, "net1", BOOT).unwrap();
        let e = st.status(SlotSpace::with_host_bits(32), "r").unwrap_err();
        assert!(matches!(e, IpamError::Unavailable(_)), "{e}");
        assert_eq!(cni_common::Error::from(e).code(), 50);
        // ADD there fails with an I/O error (5), nothing created; DEL,
        // CHECK and GC find no store.
        assert_eq!(cni_common::Error::from(st.open().err().unwrap()).code(), 5);
        assert!(st.open_existing().unwrap().is_none());
    }
}
