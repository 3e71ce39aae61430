//! Clean-up of what a killed runtime may leave: mounts under its
//! directory, processes that mention it.

use std::path::Path;

/// Unmount everything mounted under `dir` (deepest first): what a runtime
/// killed mid-way may leave (overlay rootfs, shm), so the directory can go.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let c = std::ffi::CString::new(p).expect("no NUL in mount point");
        // SAFETY: plain syscall with a valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Processes whose command line contains `needle` (our unique socket or
/// directory path): containerd's shims, conmon. Never matched by name.
pub fn pids_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&cmd).contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

pub(super) fn kill_all(pids: &[i32], sig: i32) {
    for &p in pids {
        // SAFETY: kill(2) on a pid found by our own unique path.
        unsafe { libc::kill(p, sig) };
    }
}
