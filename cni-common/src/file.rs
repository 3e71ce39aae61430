//! Replacing a small state file so that readers see the old content or the
//! new, never a torn mix: a temp file in the same directory, then rename.
//! Shared by the runtime's result cache (which must survive a crash) and
//! firewall6's generation record (advisory, on tmpfs: no sync needed).

use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Write `bytes` to `path` via `.<name>.tmp<pid>` beside it and a rename;
/// the directory is created (0700) when missing. `durable`: fsync the file
/// before the rename and the directory after it, so the new content
/// survives a crash. The temp file is removed on failure.
pub fn write_atomic(path: &Path, bytes: &[u8], durable: bool) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no directory"))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
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
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)?;
        f.write_all(bytes)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if durable {
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
        let tmp = dir.join(format!(".state.tmp{}", std::process::id()));
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
}
