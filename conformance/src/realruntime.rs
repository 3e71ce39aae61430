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

use crate::harness::{self, bin_dir, reference, Netns, TempDir};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// libcni's result cache, which podman 4.3 always uses.
pub const LIBCNI_CACHE: &str = "/var/lib/cni/results";

// ------------------------------------------------------------- node & plan

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

/// One cni6 network of a test node: its name, bridge, and the node's two
/// pod ranges (literal `node` prefixes: a ULA and a documentation GUA).
#[derive(Debug, Clone)]
pub struct Cni6Net {
    pub name: String,
    pub bridge: String,
    /// Index that makes this network's prefixes distinct (0..=255).
    pub index: u8,
}

/// Cluster ULA /48 every test network's prefixes sit in.
pub const CLUSTER_ULA: &str = "fd00:c6:5::/48";
/// The documentation GUA /48 the test networks' node prefixes sit in;
/// listed in `clusterPrefixes` so pod-to-pod GUA traffic passes firewall6.
pub const CLUSTER_GUA: &str = "2001:db8:c6::/48";

impl Cni6Net {
    pub fn new(tag: &str, index: u8) -> Cni6Net {
        Cni6Net {
            name: harness::unique_name(tag),
            bridge: format!("c6rt{index}"),
            index,
        }
    }

    /// Node ULA prefix C:n::/80 (C = fd00:c6:5:<index>::/64, n = 1).
    pub fn ula_node(&self) -> String {
        format!("fd00:c6:5:{:x}:1::/80", self.index)
    }

    /// Node GUA prefix G:0::/80 (G = 2001:db8:c6:<index>::/64).
    pub fn gua_node(&self) -> String {
        format!("2001:db8:c6:{:x}::/80", self.index)
    }

    /// Pod slot `k` in the ULA pod range (C:1:1::k).
    pub fn ula(&self, slot: u32) -> std::net::Ipv6Addr {
        let s = format!(
            "fd00:c6:5:{:x}:1:1:{:x}:{:x}",
            self.index,
            slot >> 16,
            slot & 0xffff
        );
        s.parse().expect("valid address")
    }

    /// Pod slot `k` in the GUA pod range (G:0:1::k).
    pub fn gua(&self, slot: u32) -> std::net::Ipv6Addr {
        let s = format!(
            "2001:db8:c6:{:x}:0:1:{:x}:{:x}",
            self.index,
            slot >> 16,
            slot & 0xffff
        );
        s.parse().expect("valid address")
    }

    /// The slot (interface id, low 32 bits) of a pod address.
    pub fn slot_of(addr: std::net::Ipv6Addr) -> u32 {
        (u128::from(addr) & 0xffff_ffff) as u32
    }

    pub fn ula_gateway(&self) -> std::net::Ipv6Addr {
        self.ula(1)
    }

    pub fn gua_gateway(&self) -> std::net::Ipv6Addr {
        self.gua(1)
    }

    /// True when `addr` is in this network's ULA pod range.
    pub fn in_ula_range(&self, addr: std::net::Ipv6Addr) -> bool {
        (u128::from(addr) >> 32) == (u128::from(self.ula(0)) >> 32)
    }

    /// True when `addr` is in this network's GUA pod range.
    pub fn in_gua_range(&self, addr: std::net::Ipv6Addr) -> bool {
        (u128::from(addr) >> 32) == (u128::from(self.gua(0)) >> 32)
    }

    /// The full chain (bridge6 + ipam-prefix + firewall6) at `version`.
    pub fn conflist(&self, version: &str, data_dir: &Path) -> Value {
        json!({
            "cniVersion": version,
            "name": self.name,
            "plugins": [self.bridge_plugin(data_dir), self.firewall_plugin()],
        })
    }

    pub fn bridge_plugin(&self, data_dir: &Path) -> Value {
        json!({
            "type": "bridge6",
            "bridge": self.bridge,
            "ipam": {
                "type": "ipam-prefix",
                "dataDir": data_dir,
                "prefixes": [ { "node": self.ula_node() }, { "node": self.gua_node() } ],
                "routes": [ { "dst": "::/0" } ],
            },
        })
    }

    pub fn firewall_plugin(&self) -> Value {
        json!({
            "type": "firewall6",
            "clusterPrefixes": [CLUSTER_ULA, CLUSTER_GUA],
            "ingress": "cluster-only",
        })
    }
}

// --------------------------------------------------------------- plugins

/// A plugin directory as a runtime's `cni_plugin_dirs` / CRI `bin_dir`:
/// copies (not links: a rebuild of target/ during the test must not swap a
/// binary under a running runtime) of our three plugins and the reference
/// `loopback`, which both runtimes call for `lo`.
pub fn install_plugins(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create plugin dir");
    for name in ["bridge6", "ipam-prefix", "firewall6"] {
        let src = bin_dir().join(name);
        assert!(
            src.is_file(),
            "plugin binary {} not found: run `cargo build --release --workspace --bins` first",
            src.display()
        );
        std::fs::copy(&src, dir.join(name))
            .unwrap_or_else(|e| panic!("copy {} into {}: {e}", src.display(), dir.display()));
    }
    std::fs::copy(reference("loopback"), dir.join("loopback")).expect("copy loopback");
}

/// Replace `dir/<plugin>` by a spy that runs the real binary and appends
/// one line per call to `log`: `<COMMAND> id=<id> netns=<netns> if=<ifname>
/// rc=<exit code>` (what the reference `debug` plugin would record; here
/// it shows which calls a real runtime makes and how they ended).
pub fn spy_on(dir: &Path, plugin: &str, log: &Path) {
    let real = dir.join(format!("{plugin}.real"));
    std::fs::rename(dir.join(plugin), &real).expect("move plugin aside");
    let script = format!(
        "#!/bin/sh\n\"{}\"\nrc=$?\necho \"$CNI_COMMAND id=$CNI_CONTAINERID netns=$CNI_NETNS if=$CNI_IFNAME rc=$rc\" >> \"{}\"\nexit $rc\n",
        real.display(),
        log.display()
    );
    let path = dir.join(plugin);
    std::fs::write(&path, script).expect("write spy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod spy");
}

// ---------------------------------------------------------- what remains

/// ipam-prefix records of `network` (`<dataDir>/<network>/attachments/`),
/// read directly from the store: the JSON each attachment is kept as.
pub fn store_records(data_dir: &Path, network: &str) -> Vec<Value> {
    let dir = data_dir.join(network).join("attachments");
    let mut out = Vec::new();
    for name in harness::dir_names(&dir) {
        if name.starts_with('.') {
            continue;
        }
        let bytes = std::fs::read(dir.join(&name)).unwrap_or_default();
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            out.push(v);
        }
    }
    out
}

/// Store records of one container.
pub fn records_of(data_dir: &Path, network: &str, container_id: &str) -> Vec<Value> {
    store_records(data_dir, network)
        .into_iter()
        .filter(|r| r["containerId"] == container_id)
        .collect()
}

/// Host-side links in the node whose alias names the container
/// (`cni6 net=<n> if=<if> id=<id>`, set by bridge6).
pub fn host_veths_of(node: &Netns, container_id: &str) -> Vec<String> {
    let out = node.exec_ok(&["ip", "-o", "link", "show"]);
    let tag = format!("id={container_id}");
    out.lines()
        .filter(|l| l.split_whitespace().any(|w| w == tag))
        .map(|l| l.to_string())
        .collect()
}

/// ip6tables rules in the node tagged with the container id (firewall6
/// comments carry `id=<container id>`).
pub fn firewall_rules_of(node: &Netns, container_id: &str) -> Vec<String> {
    let out = node.exec_ok(&["ip6tables-save"]);
    let tag = format!("id={container_id}");
    out.lines()
        .filter(|l| l.contains(&tag))
        .map(|l| l.to_string())
        .collect()
}

/// libcni cache files of the container on `network` (any ifname).
pub fn libcni_cache_of(network: &str, container_id: &str) -> Vec<String> {
    let prefix = format!("{network}-{container_id}-");
    harness::dir_names(Path::new(LIBCNI_CACHE))
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
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

fn kill_all(pids: &[i32], sig: i32) {
    for &p in pids {
        // SAFETY: kill(2) on a pid found by our own unique path.
        unsafe { libc::kill(p, sig) };
    }
}

// ------------------------------------------------------- libcni peers

/// A node namespace with a plugin dir (copies of our three plugins and the
/// upstream `loopback`) and a conf dir, for driving cni6 through upstream
/// libcni programs (`cnitool`, multus) built by scripts/peers.sh. They keep
/// libcni's result cache in /var/lib/cni (no setting in cnitool), so every
/// network registered with [`PeerNode::network`] has a unique name and its
/// cache files are removed on drop.
pub struct PeerNode {
    pub node: Netns,
    pub dir: TempDir,
    networks: Vec<String>,
}

impl PeerNode {
    pub fn new(tag: &str) -> PeerNode {
        harness::require_root();
        let node = Netns::new(tag);
        let dir = TempDir::new(tag);
        install_plugins(&dir.join("bin"));
        std::fs::create_dir_all(dir.join("net.d")).expect("mkdir net.d");
        PeerNode {
            node,
            dir,
            networks: Vec::new(),
        }
    }

    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    pub fn conf_dir(&self) -> PathBuf {
        self.dir.join("net.d")
    }

    /// ipam-prefix's dataDir for the networks of this node.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }

    /// Write `conf` (a conflist) as `<conf dir>/<file>` and register its
    /// name for cache cleanup.
    pub fn network(&mut self, file: &str, conf: &Value) {
        let name = conf["name"].as_str().expect("conflist has a name");
        self.networks.push(name.to_string());
        std::fs::write(
            self.conf_dir().join(file),
            serde_json::to_vec_pretty(conf).unwrap(),
        )
        .expect("write conflist");
    }

    /// libcni cache files (results/) of a registered network.
    pub fn cache_of(&self, network: &str) -> Vec<String> {
        let prefix = format!("{network}-");
        harness::dir_names(Path::new(LIBCNI_CACHE))
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect()
    }

    /// `cnitool <verb> <network> <netns>` in the node, CNI_PATH = our
    /// plugin dir, NETCONFPATH = our conf dir.
    pub fn cnitool(&self, verb: &str, network: &str, netns: &Path) -> Output {
        self.cnitool_with_args(verb, network, netns, "")
    }

    /// [`PeerNode::cnitool`] with `CNI_ARGS` (e.g. kubelet's K8S_POD_*).
    pub fn cnitool_with_args(
        &self,
        verb: &str,
        network: &str,
        netns: &Path,
        cni_args: &str,
    ) -> Output {
        let mut c = node_command(&self.node, harness::peer("cnitool", "cnitool"));
        c.env("NETCONFPATH", self.conf_dir())
            .env("CNI_PATH", self.bin_dir())
            .env_remove("CNI_IFNAME")
            .args([verb, network])
            .arg(netns)
            .stdin(Stdio::null());
        if cni_args.is_empty() {
            c.env_remove("CNI_ARGS");
        } else {
            c.env("CNI_ARGS", cni_args);
        }
        c.output().expect("spawn cnitool")
    }
}

impl Drop for PeerNode {
    fn drop(&mut self) {
        for net in &self.networks {
            for f in self.cache_of(net) {
                let _ = std::fs::remove_file(Path::new(LIBCNI_CACHE).join(f));
            }
        }
    }
}

// ----------------------------------------------------------------- podman

/// A private podman 4.3 (CNI backend) running in its own node namespace.
pub struct Podman {
    pub node: Netns,
    pub dir: TempDir,
    pub data_dir: PathBuf,
    pub nets: Vec<Cni6Net>,
}

impl Podman {
    /// podman with one cni6 network per entry of `nets` (conflists at
    /// cniVersion 1.0.0; podman 4.3 rejects newer results), the first one
    /// its default network, and a busybox rootfs at `<dir>/rootfs`.
    pub fn new(tag: &str, nets: Vec<Cni6Net>) -> Podman {
        harness::require_root();
        let node = Netns::new(tag);
        let dir = TempDir::new(tag);
        let data_dir = dir.join("ipam");
        let p = Podman {
            node,
            data_dir,
            nets,
            dir,
        };
        for d in ["bin", "net.d", "root", "runroot", "tmp", "rootfs"] {
            std::fs::create_dir_all(p.dir.join(d)).expect("mkdir");
        }
        install_plugins(&p.dir.join("bin"));
        for n in &p.nets {
            let conf = n.conflist("1.0.0", &p.data_dir);
            std::fs::write(
                p.dir.join("net.d").join(format!("{}.conflist", n.name)),
                serde_json::to_vec_pretty(&conf).unwrap(),
            )
            .expect("write conflist");
        }
        busybox_rootfs(&p.dir.join("rootfs"));
        std::fs::write(p.dir.join("containers.conf"), p.containers_conf()).expect("write conf");
        p
    }

    fn containers_conf(&self) -> String {
        let d = self.dir.path().display();
        // Capabilities: podman's defaults plus NET_RAW, for ping.
        format!(
            r#"[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
default_capabilities = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT", "NET_RAW"]

[network]
network_backend = "cni"
cni_plugin_dirs = ["{d}/bin"]
network_config_dir = "{d}/net.d"
default_network = "{net}"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{d}/tmp"
lock_type = "file"
"#,
            net = self.nets[0].name
        )
    }

    /// A `podman` command with every path private to this fixture.
    pub fn command(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut c = node_command(&self.node, "podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--network-config-dir")
            .arg(d.join("net.d"))
            .args(["--cgroup-manager=cgroupfs", "--events-backend=file"])
            .args(args)
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("spawn podman {args:?}: {e} (is podman installed?)"))
    }

    /// Run podman; panic with its own error text unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("podman {}", args.join(" ")), &out)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// `podman run -d` of the busybox rootfs with a PID 1 that exits on
    /// SIGTERM; `extra` goes before `--rootfs` (e.g. `--network`).
    /// Returns the full container id.
    pub fn start_container(&self, name: &str, extra: &[&str]) -> String {
        let rootfs = format!("{}:O", self.dir.join("rootfs").display());
        let mut args = vec!["run", "-d", "--name", name];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[
            "--rootfs",
            &rootfs,
            "/bin/sh",
            "-c",
            "trap 'exit 0' TERM; while :; do sleep 1; done",
        ]);
        self.ok(&args)
    }

    /// `podman exec <name> <cmd…>` output (not asserted).
    pub fn exec(&self, name: &str, cmd: &[&str]) -> Output {
        let mut args = vec!["exec", name];
        args.extend_from_slice(cmd);
        self.run(&args)
    }

    pub fn exec_ok(&self, name: &str, cmd: &[&str]) -> String {
        let out = self.exec(name, cmd);
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("podman exec {name} {}", cmd.join(" ")), &out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `podman inspect` of one container.
    pub fn inspect(&self, name: &str) -> Value {
        let out = self.ok(&["inspect", name]);
        let v: Value = serde_json::from_str(&out).expect("podman inspect prints JSON");
        v[0].clone()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Containers first (they hold overlay mounts under our root and
        // conmon processes), then anything a crash left mounted.
        let out = self.run(&["rm", "--force", "--all", "--time", "0"]);
        if !out.status.success() {
            eprintln!("{}", describe("cleanup: podman rm --all", &out));
        }
        let left = pids_mentioning(&self.dir.path_str());
        kill_all(&left, libc::SIGKILL);
        unmount_under(self.dir.path());
    }
}

/// A busybox-static root filesystem (Debian `busybox-static`): the binary
/// and the applet links the tests use. No image, no pull.
pub fn busybox_rootfs(dir: &Path) {
    let bb = Path::new("/bin/busybox");
    assert!(
        bb.is_file(),
        "/bin/busybox not found: install the Debian package busybox-static"
    );
    for d in ["bin", "proc", "sys", "dev", "etc", "tmp", "www"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir rootfs");
    }
    std::fs::copy(bb, dir.join("bin/busybox")).expect("copy busybox");
    for applet in [
        "sh", "ip", "ping", "nc", "wget", "sleep", "cat", "httpd", "echo", "ls",
    ] {
        let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet));
    }
    std::fs::write(dir.join("www/index.html"), "cni6\n").expect("write index");
}

// ------------------------------------------------------------- containerd

/// A private containerd (Debian 1.6, or the 2.x peer) with its CRI plugin, started in its own node
/// namespace, and a kubelet-like CRI client
/// (testdata/runtimes/cri_client.py).
pub struct Containerd {
    pub node: Netns,
    pub dir: TempDir,
    pub data_dir: PathBuf,
    pub net: Cni6Net,
    /// Which containerd: Debian's 1.6 or the upstream 2.x peer.
    pub flavor: Flavor,
    daemon: Option<Child>,
    client: Option<CriClient>,
    /// Sandbox netns paths seen in PodSandboxStatus, removed on drop if
    /// containerd did not remove them.
    pub sandbox_netns: Vec<PathBuf>,
}

/// The local pause image's name.
pub const PAUSE_IMAGE: &str = "localhost/cni6-pause:1";

/// Which containerd a [`Containerd`] fixture runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// Debian's containerd 1.6 (`containerd`, `ctr` on PATH): its libcni
    /// rejects results newer than 1.0.0 and never calls STATUS.
    V1_6,
    /// containerd 2.x built by scripts/peers.sh (config version 3, its own
    /// shim and `ctr`); parses 1.1.0 results and calls CNI STATUS for the
    /// CRI NetworkReady condition.
    V2,
}

/// The network configuration of a [`Containerd`], made from the fixture's
/// directory and its ipam-prefix dataDir (known only once it exists).
pub type ConflistFn = Box<dyn FnOnce(&Path, &Path) -> Value>;

/// What a [`Containerd`] starts with besides its flavor.
#[derive(Default)]
pub struct ContainerdSpec {
    /// The network configuration instead of the cni6 net's own conflist.
    pub conflist: Option<ConflistFn>,
    /// Further binaries for its CNI bin dir: (source, name).
    pub extra_bins: Vec<(PathBuf, String)>,
}

impl Containerd {
    /// Start containerd with `net` as its only CNI network (cniVersion
    /// 1.0.0; containerd 1.6 rejects newer results), import the pause
    /// image and connect the CRI client. `bridge6` is wrapped by a spy
    /// logging to `<dir>/calls.log` (see [`spy_on`]).
    pub fn start(tag: &str, net: Cni6Net) -> Containerd {
        Containerd::start_with(tag, net, None)
    }

    /// [`Containerd::start`] with `conflist` (when given) as the network
    /// configuration instead of `net`'s own, e.g. a broken one.
    pub fn start_with(tag: &str, net: Cni6Net, conflist: Option<Value>) -> Containerd {
        let spec = ContainerdSpec {
            conflist: conflist.map(|v| -> ConflistFn { Box::new(move |_, _| v) }),
            ..ContainerdSpec::default()
        };
        Containerd::start_spec(tag, net, Flavor::V1_6, spec)
    }

    /// containerd 2.x (scripts/peers.sh) with `net` at cniVersion 1.1.0,
    /// or with `spec`'s conflist and extra plugins.
    pub fn start_v2(tag: &str, net: Cni6Net, spec: ContainerdSpec) -> Containerd {
        Containerd::start_spec(tag, net, Flavor::V2, spec)
    }

    fn start_spec(tag: &str, net: Cni6Net, flavor: Flavor, spec: ContainerdSpec) -> Containerd {
        harness::require_root();
        let node = Netns::new(tag);
        let dir = TempDir::new(tag);
        let data_dir = dir.join("ipam");
        let mut c = Containerd {
            node,
            data_dir,
            net,
            flavor,
            daemon: None,
            client: None,
            sandbox_netns: Vec::new(),
            dir,
        };
        for d in ["bin", "net.d", "root", "state", "opt"] {
            std::fs::create_dir_all(c.dir.join(d)).expect("mkdir");
        }
        install_plugins(&c.dir.join("bin"));
        for (src, name) in &spec.extra_bins {
            harness::install_as(src, &c.dir.join("bin"), name);
        }
        spy_on(&c.dir.join("bin"), "bridge6", &c.calls_log());
        let version = match flavor {
            Flavor::V1_6 => "1.0.0",
            Flavor::V2 => "1.1.0",
        };
        std::fs::write(
            c.dir.join("net.d/10-cni6.conflist"),
            serde_json::to_vec_pretty(&match spec.conflist {
                Some(make) => make(c.dir.path(), &c.data_dir),
                None => c.net.conflist(version, &c.data_dir),
            })
            .unwrap(),
        )
        .expect("write conflist");
        let config = match flavor {
            Flavor::V1_6 => c.config_toml(),
            Flavor::V2 => c.config_toml_v2(),
        };
        std::fs::write(c.dir.join("config.toml"), config).expect("write config");
        let log = std::fs::File::create(c.log_path()).expect("create containerd log");
        let mut cmd = node_command(&c.node, c.binary("containerd"));
        if flavor == Flavor::V2 {
            // containerd finds its shim on PATH: the 2.x shim, not Debian's.
            let path = std::env::var("PATH").unwrap_or_default();
            let dir = harness::peers_dir().join("containerd");
            cmd.env("PATH", format!("{}:{path}", dir.display()));
        }
        let child = cmd
            .arg("--config")
            .arg(c.dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn containerd: {e} (is containerd installed?)"));
        c.daemon = Some(child);
        c.wait_for_socket();
        let image = build_pause_image(&c.dir.join("image"));
        c.import_image(&image);
        c.client = Some(CriClient::connect(&c.socket()).unwrap_or_else(|e| {
            panic!("CRI client: {e}\n{}", c.log_tail());
        }));
        c
    }

    /// `containerd` or `ctr` of this flavor: Debian's on PATH, or the peer.
    pub fn binary(&self, name: &str) -> PathBuf {
        match self.flavor {
            Flavor::V1_6 => PathBuf::from(name),
            Flavor::V2 => harness::peer("containerd", name),
        }
    }

    /// `ctr images import` of an OCI image-layout tarball into k8s.io.
    pub fn import_image(&self, image: &Path) {
        let out = Command::new(self.binary("ctr"))
            .arg("--address")
            .arg(self.socket())
            .args(["-n", "k8s.io", "images", "import"])
            .arg(image)
            .output()
            .expect("spawn ctr");
        assert!(
            out.status.success(),
            "{}\n{}",
            describe("ctr images import", &out),
            self.log_tail()
        );
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    pub fn calls_log(&self) -> PathBuf {
        self.dir.join("calls.log")
    }

    /// The plugin calls the spy recorded so far.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.calls_log())
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The last lines of containerd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(25);
        format!(
            "--- containerd log (last lines) ---\n{}",
            lines[from..].join("\n")
        )
    }

    /// What both config versions start with: root, state, the plugins
    /// left out, and the daemon's sockets, all under the temp dir.
    fn daemon_toml(&self, version: u8, disabled: &[&str]) -> String {
        let d = self.dir.path().display();
        let disabled: Vec<String> = disabled
            .iter()
            .map(|p| format!("\"io.containerd.{p}\""))
            .collect();
        format!(
            r#"version = {version}
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [{}]

[grpc]
  address = "{d}/containerd.sock"
[ttrpc]
  address = "{d}/containerd.sock.ttrpc"
[debug]
  address = "{d}/debug.sock"
"#,
            disabled.join(", ")
        )
    }

    fn config_toml(&self) -> String {
        let d = self.dir.path().display();
        let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
        let head = self.daemon_toml(
            2,
            &[
                "snapshotter.v1.aufs",
                "snapshotter.v1.btrfs",
                "snapshotter.v1.zfs",
                "snapshotter.v1.devmapper",
                "tracing.processor.v1.otlp",
            ],
        );
        format!(
            r#"{head}[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [{cri}.cni]
    bin_dir = "{d}/bin"
    conf_dir = "{d}/net.d"
    max_conf_num = 1
  [{cri}.containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
"#
        )
    }

    /// containerd 2.x's config (version 3): the CRI plugin split into
    /// images and runtime parts; CNI `bin_dirs` is a list.
    fn config_toml_v2(&self) -> String {
        let d = self.dir.path().display();
        let head = self.daemon_toml(
            3,
            &[
                "snapshotter.v1.btrfs",
                "snapshotter.v1.zfs",
                "snapshotter.v1.devmapper",
                "snapshotter.v1.erofs",
                "tracing.processor.v1.otlp",
            ],
        );
        format!(
            r#"{head}
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  disable_apparmor = true
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["{d}/bin"]
    conf_dir = "{d}/net.d"
    max_conf_num = 1
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"#
        )
    }

    fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.socket().exists() {
            if let Some(st) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("containerd exited at start ({st})\n{}", self.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "containerd socket did not appear in 60 s\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One CRI call; `Err` carries containerd's own error text.
    pub fn cri(&mut self, req: Value) -> Result<Value, String> {
        let r = self
            .client
            .as_mut()
            .expect("CRI client connected")
            .call(&req);
        if let Ok(st) = &r {
            if let Some(ns) = st.get("netns").and_then(Value::as_str) {
                if !ns.is_empty() && !self.sandbox_netns.iter().any(|p| p == Path::new(ns)) {
                    self.sandbox_netns.push(PathBuf::from(ns));
                }
            }
        }
        r
    }

    /// A CRI call that must succeed; panics with containerd's text and log.
    pub fn cri_ok(&mut self, req: Value) -> Value {
        match self.cri(req.clone()) {
            Ok(v) => v,
            Err(e) => panic!("CRI {req}: {e}\n{}", self.log_tail()),
        }
    }

    /// RunPodSandbox as kubelet makes it (name, namespace, uid); returns
    /// (sandbox id, seconds the RPC took).
    pub fn run_pod(&mut self, name: &str, namespace: &str, uid: &str) -> (String, f64) {
        let v = self.cri_ok(json!({"op": "run", "name": name, "namespace": namespace, "uid": uid}));
        (
            v["id"].as_str().expect("sandbox id").to_string(),
            v["seconds"].as_f64().unwrap_or(0.0),
        )
    }

    pub fn status(&mut self, id: &str) -> Value {
        self.cri_ok(json!({"op": "status", "id": id}))
    }

    pub fn stop(&mut self, id: &str) {
        self.cri_ok(json!({"op": "stop", "id": id}));
    }

    pub fn remove(&mut self, id: &str) {
        self.cri_ok(json!({"op": "remove", "id": id}));
    }

    /// The CRI Status condition `kind` (RuntimeReady, NetworkReady).
    pub fn condition(&mut self, kind: &str) -> Value {
        let all = self.cri_ok(json!({"op": "runtime_status"}));
        all.as_array()
            .and_then(|a| a.iter().find(|c| c["type"] == kind).cloned())
            .unwrap_or_else(|| panic!("no {kind} condition in {all}"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Sandboxes first, through CRI (that runs the CNI DELs too).
        if self.client.is_some() {
            if let Ok(Value::Array(ids)) = self.cri(json!({"op": "list"})) {
                for id in ids.iter().filter_map(Value::as_str) {
                    let _ = self.cri(json!({"op": "stop", "id": id}));
                    let _ = self.cri(json!({"op": "remove", "id": id}));
                }
            }
        }
        self.client = None;
        if let Some(mut d) = self.daemon.take() {
            // SAFETY: signalling the daemon we spawned.
            unsafe { libc::kill(d.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match d.try_wait() {
                    Ok(Some(_)) => break,
                    _ if Instant::now() > deadline => {
                        let _ = d.kill();
                        let _ = d.wait();
                        break;
                    }
                    _ => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        // Shims outlive containerd; they name our socket on their command line.
        let shims = pids_mentioning(&self.dir.path_str());
        kill_all(&shims, libc::SIGKILL);
        unmount_under(self.dir.path());
        for ns in &self.sandbox_netns {
            if ns.exists() {
                if let Some(name) = ns.file_name() {
                    let _ = Command::new("ip")
                        .arg("netns")
                        .arg("delete")
                        .arg(name)
                        .output();
                }
            }
        }
    }
}

/// The Python CRI client as a long-lived child speaking JSON lines.
struct CriClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl CriClient {
    fn connect(socket: &Path) -> Result<CriClient, String> {
        let script = testdata::dir().join("runtimes/cri_client.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn python3 {}: {e}", script.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut c = CriClient {
            child,
            stdin,
            stdout,
        };
        let mut line = String::new();
        c.stdout
            .read_line(&mut line)
            .map_err(|e| format!("read from CRI client: {e}"))?;
        if !line.contains("ready") {
            return Err(format!(
                "CRI client did not start (needs `pip install container-runtime-interface-api`; \
                 scripts/install-deps.sh does it): {line:?}"
            ));
        }
        Ok(c)
    }

    fn call(&mut self, req: &Value) -> Result<Value, String> {
        writeln!(self.stdin, "{req}").map_err(|e| format!("write to CRI client: {e}"))?;
        self.stdin.flush().map_err(|e| format!("flush: {e}"))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("read from CRI client: {e}"))?;
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| format!("CRI client answered {line:?}: {e}"))?;
        match (v.get("ok"), v.get("error")) {
            (Some(ok), _) => Ok(ok.clone()),
            (_, Some(e)) => Err(e.as_str().unwrap_or("").to_string()),
            _ => Err(format!("CRI client answered {line:?}")),
        }
    }
}

impl Drop for CriClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------ pause image

/// Build testdata/runtimes/pause.c with `gcc -static` and pack it into an
/// OCI image-layout tarball named [`PAUSE_IMAGE`] (for `ctr images
/// import`). Returns the tarball's path.
pub fn build_pause_image(dir: &Path) -> PathBuf {
    let layer = dir.join("layer");
    std::fs::create_dir_all(&layer).expect("mkdir layer");
    let src = testdata::dir().join("runtimes/pause.c");
    let out = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(layer.join("pause"))
        .arg(&src)
        .output()
        .expect("spawn gcc");
    assert!(
        out.status.success(),
        "{}",
        describe("gcc -static pause.c", &out)
    );
    build_oci_image(dir, PAUSE_IMAGE, &layer, &["/pause"])
}

/// A busybox image (Debian `busybox-static` with a link for every applet,
/// and /www/index.html) named `name`, running `entrypoint`: the local
/// stand-in for critest's busybox and web server images (no registry).
pub fn build_busybox_image(dir: &Path, name: &str, entrypoint: &[&str]) -> PathBuf {
    let layer = dir.join("layer");
    busybox_rootfs(&layer);
    let list = run_ok(Command::new("/bin/busybox").arg("--list"));
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet));
    }
    build_oci_image(dir, name, &layer, entrypoint)
}

/// Pack the files of `layer` into an OCI image-layout tarball named
/// `name` (for `ctr images import`): one uncompressed layer, a config with
/// `entrypoint`, a manifest and an index. Returns the tarball's path.
pub fn build_oci_image(dir: &Path, name: &str, layer: &Path, entrypoint: &[&str]) -> PathBuf {
    let blobs = dir.join("layout/blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir blobs");
    let layer_tar = dir.join("layer.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(layer)
            .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&layer_tar)
            .arg("."),
    );
    let layer_bytes = std::fs::read(&layer_tar).expect("read layer");
    let (layer_digest, layer_size) = put_blob(&blobs, &layer_bytes);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Entrypoint": entrypoint, "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
    });
    let (config_digest, config_size) = put_blob(&blobs, &serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{config_digest}"), "size": config_size },
        "layers": [ { "mediaType": "application/vnd.oci.image.layer.v1.tar",
                      "digest": format!("sha256:{layer_digest}"), "size": layer_size } ],
    });
    let (manifest_digest, manifest_size) =
        put_blob(&blobs, &serde_json::to_vec(&manifest).unwrap());
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [ {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_size,
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        } ],
    });
    let layout = dir.join("layout");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let tarball = dir.join("image.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&tarball)
            .args(["oci-layout", "index.json", "blobs"]),
    );
    tarball
}

/// Store `bytes` as a content-addressed blob; returns (hex digest, size).
fn put_blob(blobs: &Path, bytes: &[u8]) -> (String, usize) {
    let tmp = blobs.join(".incoming");
    std::fs::write(&tmp, bytes).expect("write blob");
    let out = run_ok(Command::new("sha256sum").arg(&tmp));
    let digest = out
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest")
        .to_string();
    std::fs::rename(&tmp, blobs.join(&digest)).expect("rename blob");
    (digest, bytes.len())
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        describe(&format!("{cmd:?}"), &out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
