//! Running commands in the lab's namespaces: `ip -batch`, sysctls written
//! from a thread inside a namespace, commands whose child enters one, and
//! deleting and listing namespaces.

use super::{Error, Result, NETNS_DIR};
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Deletes namespaces by name; names already gone are fine.
pub(super) fn delete_netns(names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let existing: Vec<&String> = names
        .iter()
        .filter(|n| Path::new(NETNS_DIR).join(n).exists())
        .collect();
    if existing.is_empty() {
        return Ok(());
    }
    let cmds: Vec<String> = existing.iter().map(|n| format!("netns del {n}")).collect();
    let mut cmd = Command::new("ip");
    cmd.args(["-force", "-batch", "-"]);
    run_with_stdin(cmd, cmds.join("\n").as_bytes()).map(|_| ())?;
    let left: Vec<&&String> = existing
        .iter()
        .filter(|n| Path::new(NETNS_DIR).join(n).exists())
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(Error::Check(format!("namespaces not removed: {left:?}")))
    }
}

pub(super) fn list_netns_with_prefix(prefix: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(NETNS_DIR) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(format!("read {NETNS_DIR}"), e)),
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

pub(super) fn open_netns(name: &str) -> Result<File> {
    let p = Path::new(NETNS_DIR).join(name);
    File::open(&p).map_err(|e| Error::io(format!("open {}", p.display()), e))
}

/// `ip [-n NS] -batch -` with the given lines; stops at the first failure.
pub(super) fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<String> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.arg("-n").arg(ns);
    }
    cmd.args(["-batch", "-"]);
    run_with_stdin(cmd, lines.join("\n").as_bytes())
}

pub(super) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn check_output(desc: String, out: Output) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            cmd: desc,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Run a command to completion; error (with its stderr) unless it exits 0.
pub fn run(mut cmd: Command) -> Result<String> {
    let desc = describe(&cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("run {desc}"), e))?;
    check_output(desc, out)
}

pub(super) fn run_with_stdin(mut cmd: Command, input: &[u8]) -> Result<String> {
    let desc = describe(&cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("run {desc}"), e))?;
    let mut stdin = child.stdin.take().expect("piped");
    stdin
        .write_all(input)
        .map_err(|e| Error::io(format!("write stdin of {desc}"), e))?;
    drop(stdin);
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("wait {desc}"), e))?;
    check_output(
        format!("{desc} <<< {}", String::from_utf8_lossy(input)),
        out,
    )
}

/// Write a sysctl (slash-separated key under /proc/sys) as seen from a
/// namespace: /proc/sys/net resolves per calling thread, so a thread that
/// entered the namespace writes it.
pub(super) fn write_sysctl(ns: &File, key: &str, value: &str) -> Result<()> {
    let path = Path::new("/proc/sys").join(key);
    let fd = ns.as_raw_fd();
    std::thread::scope(|s| {
        s.spawn(|| {
            enter_netns(fd).map_err(|e| Error::io("setns", e))?;
            std::fs::write(&path, value)
                .map_err(|e| Error::io(format!("write {}", path.display()), e))
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

pub(super) fn enter_netns(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: plain syscall on an fd we hold open.
    if unsafe { libc::setns(fd, libc::CLONE_NEWNET) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A command whose child enters `ns` between fork and exec, in the way
/// `ip netns exec` does, but without exec'ing `ip` first.
pub(super) fn ns_command(ns: &File, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(program);
    // SAFETY: the closure runs in the forked child and only makes raw
    // syscalls with static C strings (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Keep our mounts from propagating back, then show the
            // namespace's own /sys (sysfs takes the net ns of the mounter).
            let root = c"/".as_ptr();
            let sys = c"/sys".as_ptr();
            let sysfs = c"sysfs".as_ptr();
            if libc::mount(
                std::ptr::null(),
                root,
                std::ptr::null(),
                libc::MS_SLAVE | libc::MS_REC,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            libc::umount2(sys, libc::MNT_DETACH);
            if libc::mount(sysfs, sys, sysfs, 0, std::ptr::null()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}
