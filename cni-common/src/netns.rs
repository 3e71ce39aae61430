//! Entering a pod's network namespace safely.
//!
//! `setns` switches only the calling thread, so work inside a namespace
//! runs on a short-lived scoped thread that enters it and then ends: no
//! thread is ever left behind in a pod namespace (design.md, "the
//! pitfall"). For netlink, open the socket there and use it from anywhere:
//! a socket stays bound to the namespace it was created in.

use crate::error::{Error, Result};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
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
    /// own (checklist 6). A missing path is reported as an I/O error whose
    /// [`Error::is_gone`] is true, so DEL can treat it as "already gone".
    pub fn open(path: &Path) -> Result<NetNs> {
        let file =
            File::open(path).map_err(|e| Error::io(format!("open netns {}", path.display()), e))?;
        // SAFETY: statfs is plain data; fstatfs fills it or fails.
        let mut sfs: libc::statfs = unsafe { std::mem::zeroed() };
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
            return Err(Error::env(
                "CNI_NETNS",
                path.display().to_string(),
                "a network namespace path (nsfs), e.g. /var/run/netns/NAME or /proc/PID/ns/net",
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
