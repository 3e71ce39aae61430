//! A private containerd (Debian 1.6, or the 2.x peer) with its CRI plugin.

use super::cri_client::CriClient;
use super::processes::kill_all;
use super::{
    build_pause_image, describe, install_plugins, node_command, pids_mentioning, spy_on,
    unmount_under, Cni6Net,
};
use crate::harness::{self, Netns, TempDir};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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
        // The node as `cni6 install --prepare-node` leaves it (`cni6 status`
        // counts the br_netfilter hook at 1 as a problem).
        node.bridge_nf_call_ip6tables_off();
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
                // NRI listens on one fixed socket (/var/run/nri/nri.sock):
                // a second containerd of the same run would fail to start.
                "nri.v1.nri",
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
