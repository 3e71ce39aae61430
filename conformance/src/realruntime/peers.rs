//! Upstream libcni programs (cnitool, multus) driving cni6 in a node.

use super::{install_plugins, node_command, LIBCNI_CACHE};
use crate::harness::{self, Netns, TempDir};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

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
        node.bridge_nf_call_ip6tables_off();
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
