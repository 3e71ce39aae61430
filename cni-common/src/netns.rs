//! Entering a pod's network namespace safely.
//!
//! `setns` switches only the calling thread, so work inside a namespace
//! runs on a short-lived scoped thread that enters it and then ends: no
//! thread is ever left behind in a pod namespace (docs/design.md, "the
//! pitfall"). For netlink, open the socket there and use it from anywhere:
//! a socket stays bound to the namespace it was created in.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

const NSFS_MAGIC: i64 = 0x6e73_6673;
/// ioctl(NS_GET_NSTYPE) = _IO(0xb7, 0x3): which kind of namespace an nsfs file is.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// An open handle on a network namespace (keeps it alive while held).
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Open `path` and make sure it is a network namespace other than our
    /// own (conformance.md #6). A missing path is reported as an I/O error whose
    /// [`Error::is_gone`] is true, so DEL can treat it as "already gone".
    pub fn open(path: &Path) -> Result<NetNs> {
        // O_NONBLOCK: opening a FIFO for reading otherwise waits for a
        // writer forever (issue 15); nsfs ignores the flag. O_NOCTTY: a
        // terminal given here must not become our controlling tty.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(format!("open netns {}", path.display()), e))?;
        // SAFETY: statfs is plain data; fstatfs fills it or fails.
        let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: the fd is open for the call's duration; sfs is ours to write.
        let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut sfs) };
        if rc != 0 {
            return Err(Error::io(
                format!("statfs netns {}", path.display()),
                std::io::Error::last_os_error(),
            ));
        }
        let magic = sfs.f_type as i64;
        // SAFETY: NS_GET_NSTYPE takes no argument and only reads the fd.
        let is_net = magic == NSFS_MAGIC
            && unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE as _) } == libc::CLONE_NEWNET;
        if !is_net {
            let found = if magic == NSFS_MAGIC {
                "a namespace of another type".to_string()
            } else {
                file.metadata()
                    .map(|m| describe_file_type(m.file_type()))
                    .unwrap_or("a file")
                    .to_string()
            };
            return Err(Error::env(
                "CNI_NETNS",
                path.display().to_string(),
                format!("a network namespace path (nsfs), e.g. /var/run/netns/NAME or /proc/PID/ns/net; found {found}"),
            ));
        }
        let ns = NetNs {
            file,
            path: path.to_path_buf(),
        };
        if ns.is_current()? {
            return Err(Error::env(
                "CNI_NETNS",
                path.display().to_string(),
                "a pod network namespace, not the plugin's own",
            ));
        }
        Ok(ns)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this is the namespace the calling thread is in.
    pub fn is_current(&self) -> Result<bool> {
        let me = std::fs::metadata("/proc/thread-self/ns/net")
            .map_err(|e| Error::io("stat /proc/thread-self/ns/net", e))?;
        let them = self
            .file
            .metadata()
            .map_err(|e| Error::io(format!("stat netns {}", self.path.display()), e))?;
        Ok(me.dev() == them.dev() && me.ino() == them.ino())
    }

    /// Run `f` on a fresh thread that has entered this namespace. The thread
    /// ends when `f` returns.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(&self.file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(
                    |e| {
                        Error::kernel(
                            format!("enter netns {}", self.path.display()),
                            std::io::Error::from_raw_os_error(e as i32),
                        )
                    },
                )?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

/// What a path that is not a network namespace turned out to be, for the
/// error message.
fn describe_file_type(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "a regular file"
    }
}

/// The namespace's file descriptor, e.g. for IFLA_NET_NS_FD when creating
/// a link directly inside it.
impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_regular_files_and_missing_paths() {
        let e = NetNs::open(Path::new("/proc/self/status")).unwrap_err();
        assert_eq!(e.code(), 4);
        let e = NetNs::open(Path::new("/nonexistent/netns")).unwrap_err();
        assert!(e.is_gone());
    }

    /// Each must fail at once with a message naming CNI_NETNS, the path
    /// and what it is; before issue 15 the FIFO blocked open() forever.
    #[test]
    fn rejects_fifo_directory_file_and_other_namespace_types_at_once() {
        let dir = std::env::temp_dir().join(format!("cni6-netns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let file = dir.join("file");
        std::fs::write(&file, b"x").unwrap();
        let cases = [
            (fifo.clone(), "a FIFO"),
            (dir.clone(), "a directory"),
            (file.clone(), "a regular file"),
            (PathBuf::from("/proc/self/ns/mnt"), "another type"),
        ];
        for (path, found) in cases {
            let started = std::time::Instant::now();
            let e = NetNs::open(&path).unwrap_err();
            assert!(started.elapsed() < std::time::Duration::from_secs(2));
            assert_eq!(e.code(), 4, "{e}");
            let m = e.to_string();
            assert!(
                m.contains("CNI_NETNS")
                    && m.contains(&path.display().to_string())
                    && m.contains(found),
                "{m}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rejects_own_namespace() {
        // Readable by any user; the plugin's own namespace is never a pod's.
        if let Err(e) = NetNs::open(Path::new("/proc/self/ns/net")) {
            assert_eq!(e.code(), 4, "{e}");
        } else {
            panic!("own namespace accepted");
        }
    }
}
