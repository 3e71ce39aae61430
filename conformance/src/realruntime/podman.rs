//! A private podman 4.3 with its CNI backend.

use super::processes::kill_all;
use super::{describe, install_plugins, node_command, pids_mentioning, unmount_under, Cni6Net};
use crate::harness::{self, Netns, TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
        node.bridge_nf_call_ip6tables_off();
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
