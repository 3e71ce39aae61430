//! Fixtures for running cni6 under real container runtimes (podman 4.3 with
//! its CNI backend, containerd 1.6 CRI) and under multus' calling pattern.
//!
//! Everything a runtime needs lives in a per-test temporary directory (its
//! config, root, state, socket, plugin directory, the ipam-prefix store),
//! and the runtime runs inside a "node" network namespace the test made, so
//! the bridge, the sysctls and the ip6tables rules land there, never in the
//! machine's own namespace. Each fixture's `Drop` removes what the runtime
//! made (containers, sandboxes, the daemon, its shims and mounts) before the
//! namespace and the directories go, also when a test fails.
//!
//! The one quirk worked around here: runtimes enter the node namespace
//! with `nsenter --net` (network namespace only), not `ip netns exec`:
//! the latter remounts /sys in a private mount namespace, which hides the
//! cgroup mounts, and runc then fails with "no cgroup mount found in
//! mountinfo". The plugins never read /sys, so they do not mind.
//!
//! Two things cannot be moved into the temporary directory and are shared
//! with the machine, under names unique to the test: podman 4.3 has no
//! setting for libcni's result cache (`/var/lib/cni/results/<network>-<id>-
//! <ifname>`), and containerd 1.6 puts sandbox namespaces in
//! `/var/run/netns/cni-<uuid>` and shim sockets in `/run/containerd/s/`.

mod containerd;
mod cri_client;
mod images;
mod network;
mod peers;
mod plugins;
mod podman;
mod processes;
mod remains;

pub use containerd::{ConflistFn, Containerd, ContainerdSpec, Flavor, PAUSE_IMAGE};
pub use images::{build_busybox_image, build_oci_image, build_pause_image};
pub use network::{Cni6Net, CLUSTER_GUA, CLUSTER_ULA};
pub use peers::PeerNode;
pub use plugins::{install_plugins, spy_on};
pub use podman::{busybox_rootfs, Podman};
pub use processes::{pids_mentioning, unmount_under};
pub use remains::{firewall_rules_of, host_veths_of, libcni_cache_of, records_of, store_records};

use crate::harness::Netns;
use std::process::{Command, Output};
use std::time::Duration;

/// libcni's result cache, which podman 4.3 always uses.
pub const LIBCNI_CACHE: &str = "/var/lib/cni/results";

/// `nsenter --net=<ns> <program>`: a command that runs in the node's
/// network namespace but keeps the machine's mount namespace (see module doc).
pub fn node_command(node: &Netns, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net={}", node.path().display()))
        .arg(program);
    c
}

/// Run `f` on a thread that has entered `ns`: processes it spawns (plugins
/// run by cni_common's runtime) start in that namespace. The thread ends
/// with `f`, so no thread is left behind in the namespace.
pub fn in_netns<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    let file = std::fs::File::open(ns.path())
        .unwrap_or_else(|e| panic!("open {}: {e}", ns.path().display()));
    std::thread::scope(|s| {
        s.spawn(move || {
            use std::os::fd::AsRawFd;
            // SAFETY: setns on an fd we hold open; affects this thread only.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// Run `cmd` up to `tries` times, a second apart, until it succeeds (the
/// first packet to a new pod may wait for neighbour discovery on a busy
/// machine). Returns the last output.
pub fn retry(tries: u32, mut cmd: impl FnMut() -> Output) -> Output {
    let mut last = cmd();
    for _ in 1..tries {
        if last.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
        last = cmd();
    }
    last
}

/// `what failed: status, stdout, stderr` for assertion messages: the
/// runtime's own words.
pub fn describe(what: &str, out: &Output) -> String {
    format!(
        "{what}: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// ping `to` from inside a sandbox's network namespace with the host's
/// busybox (a pause image has nothing but /pause), retried while a new
/// pod's first packets may wait for neighbour discovery.
pub fn ping_from_sandbox(netns: &str, to: std::net::Ipv6Addr) {
    let to = to.to_string();
    let out = retry(5, || {
        Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["/bin/busybox", "ping", "-6", "-c", "1", "-W", "2", &to])
            .output()
            .expect("spawn nsenter")
    });
    assert!(
        out.status.success(),
        "{}",
        describe(&format!("sandbox {netns}: ping {to}"), &out)
    );
}

/// p-th percentile (nearest rank) of `samples` in seconds.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    if s.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}
