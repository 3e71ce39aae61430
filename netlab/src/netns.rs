//! Network namespaces a test or the demo made, and only those: [`Netns`]
//! (uniquely named, deleted on drop, never touches a namespace it did not
//! create), unique names, and the panic hook that removes them when a
//! release build aborts instead of unwinding.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Fail (not skip) when not root: namespaces and the store need it.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the conformance suite must run as root (network namespaces, plugin stores); \
         run `sudo -E cargo test -p conformance`"
    );
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `<prefix>-<pid>-<n>`: unique across parallel test threads and across
/// concurrent test processes of other engineers.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Name prefixes of namespaces [`install_cleanup_panic_hook`] removes
/// besides this process's [`Netns`] ones (e.g. a topology's base).
static REMOVE_ON_PANIC: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Have the panic hook also remove namespaces named `prefix…`.
pub fn remove_on_panic(prefix: &str) {
    if let Ok(mut v) = REMOVE_ON_PANIC.lock() {
        v.push(prefix.to_string());
    }
}

/// For the bench and soak binaries: the release profile aborts on panic
/// (no unwinding, so no Drop removes what they made). This hook prints the
/// panic as usual, then deletes every namespace this process made with
/// [`Netns::new`] (`<prefix>-<pid>-<n>`) or under a prefix registered
/// with [`remove_on_panic`].
pub fn install_cleanup_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let mine = format!("-{}-", std::process::id());
        let extra = REMOVE_ON_PANIC
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        let Ok(rd) = std::fs::read_dir("/var/run/netns") else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(&mine) || extra.iter().any(|p| name.starts_with(p.as_str())) {
                let _ = Command::new(ip_bin())
                    .args(["netns", "del", &name])
                    .stderr(Stdio::null())
                    .status();
                eprintln!("removed netns {name} after the panic");
            }
        }
    }));
}

const IP: &str = "/usr/sbin/ip";

/// The `ip` binary (iproute2): /usr/sbin/ip, else /sbin/ip.
pub fn ip_bin() -> &'static str {
    if Path::new(IP).exists() {
        IP
    } else {
        "/sbin/ip"
    }
}

/// A network namespace this test created; deleted on drop (also while
/// unwinding from a failed assertion).
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// `ip netns add <prefix>-<pid>-<n>`; also brings `lo` up.
    pub fn new(prefix: &str) -> Netns {
        require_root();
        let name = unique_name(prefix);
        assert!(
            name.len() <= 200 && !name.contains('/'),
            "bad netns name {name}"
        );
        run_checked(Command::new(ip_bin()).args(["netns", "add", &name]));
        let ns = Netns {
            path: PathBuf::from("/var/run/netns").join(&name),
            name,
        };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/var/run/netns/<name>`: what CNI_NETNS carries.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn path_str(&self) -> String {
        self.path.display().to_string()
    }

    /// Run `cmd` (argv) inside the namespace via `ip netns exec`.
    pub fn exec(&self, cmd: &[&str]) -> std::process::Output {
        assert!(!cmd.is_empty(), "empty command");
        Command::new(ip_bin())
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("spawn ip netns exec {} {cmd:?}: {e}", self.name))
    }

    /// [`Netns::exec`] that panics with stderr on failure; returns stdout.
    pub fn exec_ok(&self, cmd: &[&str]) -> String {
        self.checked(cmd, self.exec(cmd))
    }

    /// br_netfilter's IPv6 hook off in this namespace, as `cni6 install
    /// --prepare-node` leaves a node: bridge6 pods need no br_netfilter,
    /// and with the hook on, DNAT to a pod on the same bridge is lost.
    pub fn bridge_nf_call_ip6tables_off(&self) {
        if Path::new("/proc/sys/net/bridge/bridge-nf-call-ip6tables").exists() {
            self.exec_ok(&["sysctl", "-qw", "net.bridge.bridge-nf-call-ip6tables=0"]);
        }
    }

    /// [`Netns::exec_ok`] with `input` on the command's stdin (e.g. an
    /// `ip6tables-restore` batch).
    pub fn exec_ok_input(&self, cmd: &[&str], input: &[u8]) -> String {
        self.checked(cmd, self.exec_input(cmd, input))
    }

    /// [`Netns::exec`] with `input` on the command's stdin.
    pub fn exec_input(&self, cmd: &[&str], input: &[u8]) -> std::process::Output {
        assert!(!cmd.is_empty(), "empty command");
        let mut child = Command::new(ip_bin())
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn ip netns exec {} {cmd:?}: {e}", self.name));
        child
            .stdin
            .take()
            .expect("piped")
            .write_all(input)
            .unwrap_or_else(|e| panic!("write to {cmd:?} in {}: {e}", self.name));
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("wait for {cmd:?} in {}: {e}", self.name))
    }

    fn checked(&self, cmd: &[&str], out: std::process::Output) -> String {
        assert!(
            out.status.success(),
            "in netns {}: {cmd:?} failed ({}): {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Create a veth pair inside this namespace (`a` and `b`, both up): the
    /// kernel here has no `dummy` links, so spare interfaces are veths.
    pub fn add_veth(&self, a: &str, b: &str) {
        self.exec_ok(&["ip", "link", "add", a, "type", "veth", "peer", "name", b]);
        self.exec_ok(&["ip", "link", "set", a, "up"]);
        self.exec_ok(&["ip", "link", "set", b, "up"]);
    }

    /// Add an IPv6 address without DAD (so it is usable at once).
    pub fn add_addr(&self, dev: &str, cidr: &str) {
        self.exec_ok(&["ip", "-6", "addr", "add", cidr, "dev", dev, "nodad"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Only ever our own name; never a pattern.
        let out = Command::new(ip_bin())
            .args(["netns", "delete", &self.name])
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns delete {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("warning: ip netns delete {}: {e}", self.name),
        }
    }
}

fn run_checked(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
