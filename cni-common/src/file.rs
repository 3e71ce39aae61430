//! Replacing a small state file so that readers see the old content or the
//! new, never a torn mix: a temp file in the same directory, then rename.
//! Shared by the runtime's result cache (which must survive a crash),
//! ipam-prefix's store (records, boot id) and firewall6's generation
//! record (advisory, on tmpfs: no sync needed).

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// NAME_MAX of Linux file systems: the longest file name.
const NAME_MAX: usize = 255;

/// How much of a replacement survives a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Nothing is synced: advisory state, or state on tmpfs.
    None,
    /// The new file's data is synced before the rename (fdatasync); the
    /// rename itself may be lost, leaving the old content.
    Data,
    /// The new file is synced before the rename and the directory after
    /// it: the new content survives a crash.
    Full,
}

/// How [`replace`] writes.
#[derive(Debug, Clone, Copy)]
pub struct Replace {
    /// Mode of the new file (before the umask).
    pub mode: u32,
    pub durability: Durability,
    /// Create the directory (0700) when it is missing.
    pub create_dir: bool,
}

/// The temp name a write of `name` goes through: `.<name>.tmp.<pid>`, with
/// `name` cut so the whole fits in NAME_MAX (a name may itself be 255
/// bytes long).
pub fn temp_name(name: &str) -> String {
    let suffix = format!(".tmp.{}", std::process::id());
    let room = NAME_MAX - 1 - suffix.len();
    let mut cut = name.len().min(room);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(".{}{suffix}", &name[..cut])
}

/// A name [`temp_name`] makes (of any writer's pid).
pub fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(".tmp.")
}

/// Write `bytes` to `path` with mode 0600 via [`temp_name`] beside it and
/// a rename; the directory is created (0700) when missing. `durable`:
/// [`Durability::Full`], else [`Durability::None`].
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let durability = if durable {
        Durability::Full
    } else {
        Durability::None
    };
    replace(
        path,
        bytes,
        &Replace {
            mode: 0o600,
            durability,
            create_dir: true,
        },
    )
}

/// Replace `path` with `bytes` through a temp file ([`temp_name`]) and a
/// rename, as `how` says. The temp file is removed on failure.
pub fn replace(path: &Path, bytes: &[u8], how: &Replace) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no directory"))?;
    if how.create_dir {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(temp_name(&name.to_string_lossy()));
    let res = (|| {
        // A temp file of ours left by a writer that died with this pid, or
        // a symlink planted under its name: unlink() removes the entry
        // itself, and O_EXCL|O_NOFOLLOW then creates a new file or fails,
        // never writing through a link.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(how.mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        // open()'s mode is masked by the umask; the caller's mode is meant.
        f.set_permissions(std::fs::Permissions::from_mode(how.mode))?;
        f.write_all(bytes)?;
        match how.durability {
            Durability::None => {}
            Durability::Data => f.sync_data()?,
            Durability::Full => f.sync_all()?,
        }
        std::fs::rename(&tmp, path)?;
        if how.durability == Durability::Full {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A symlink planted under the temp name points at a file outside:
    /// that file stays untouched, the write still lands (issue 15).
    #[test]
    fn never_writes_through_a_planted_temp_symlink() {
        let dir = std::env::temp_dir().join(format!("cni6-file-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let outside = dir.join("outside");
        std::fs::write(&outside, b"precious").unwrap();
        let path = dir.join("state");
        let tmp = dir.join(temp_name("state"));
        std::os::unix::fs::symlink(&outside, &tmp).unwrap();
        write_atomic(&path, b"new", false).unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"precious");
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        assert!(std::fs::symlink_metadata(&tmp).is_err(), "temp left behind");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replaces_whole_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("cni6-file-{}", std::process::id()));
        let path = dir.join("sub").join("state");
        for durable in [true, false] {
            write_atomic(&path, b"a long first content", durable).unwrap();
            write_atomic(&path, b"b", durable).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"b");
            assert_eq!(
                std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
                1
            );
        }
        // A rename that cannot happen (a directory in the way) leaves no temp.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(write_atomic(&blocked, b"c", false).is_err());
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            2,
            "sub and blocked only"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temp_names_fit_and_are_recognised() {
        let t = temp_name("c1@eth0");
        assert_eq!(t, format!(".c1@eth0.tmp.{}", std::process::id()));
        assert!(is_temp_name(&t));
        assert!(!is_temp_name("c1@eth0"));
        let long = temp_name(&"a".repeat(255));
        assert!(long.len() <= NAME_MAX, "{}", long.len());
        assert!(is_temp_name(&long));
    }
}
