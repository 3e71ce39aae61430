//! Running the real plugins inside a node as its host: the binaries, the
//! cluster conflists, and ADD/CHECK/DEL of a pod through `cni6`.

use super::exec::run;
use super::{Error, Pod, Result, Topology};
use ipnet::Ipv6Net;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The network name of the cluster conflists this fixture writes.
pub const CLUSTER_NETWORK: &str = "cluster";

/// Where the real binaries are: `cni6` (the runtime, run inside a node) and
/// the plugin directories it searches (CNI_PATH).
#[derive(Debug, Clone)]
pub struct Binaries {
    pub cni6: PathBuf,
    pub cni_path: Vec<PathBuf>,
}

impl Binaries {
    /// `cni6`, `bridge6` and `ipam-prefix` from `bin_dir`; `loopback` from
    /// the upstream plugins scripts/peers.sh builds, else Debian's
    /// /usr/lib/cni, when one is there.
    pub fn from_dir(bin_dir: &Path) -> Result<Binaries> {
        for b in ["cni6", "bridge6", "ipam-prefix"] {
            let p = bin_dir.join(b);
            if !p.is_file() {
                return Err(Error::MissingBinary(p));
            }
        }
        let mut cni_path = vec![bin_dir.to_path_buf()];
        if let Some(dir) = [
            crate::bins::reference_dir(),
            crate::bins::debian_reference_dir(),
        ]
        .into_iter()
        .find(|d| d.join("loopback").is_file())
        {
            cni_path.push(dir);
        }
        Ok(Binaries {
            cni6: bin_dir.join("cni6"),
            cni_path,
        })
    }

    pub fn has_loopback(&self) -> bool {
        self.cni_path.iter().any(|d| d.join("loopback").is_file())
    }

    fn cni_path_arg(&self) -> String {
        self.cni_path
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// A pod's addresses from its ADD result: the ULA and the GUA.
#[derive(Debug, Clone)]
pub struct PodAddresses {
    pub ula: Ipv6Net,
    pub gua: Ipv6Net,
    /// The final result the runtime returned.
    pub result: Value,
}

impl Topology {
    /// Write each node's conflist: docs/design.md's example minus firewall6
    /// (bridge6 + ipam-prefix; the node ULA /80 literal, the GUA /80 from
    /// eth0), with the node's own IPAM dataDir and a bridge name unique to
    /// this topology. Also the loopback conf the runtime attaches first.
    pub fn write_cluster_conflists(&self) -> Result<()> {
        let bridge = self.link_name("br")?;
        for node in &self.nodes {
            let conflist = json!({
                "cniVersion": "1.0.0",
                "name": CLUSTER_NETWORK,
                "plugins": [{
                    "type": "bridge6",
                    "bridge": bridge,
                    "mtu": 1420,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "ipam-prefix",
                        "dataDir": node.dir.join("ipam"),
                        "subnetId": 1,
                        "prefixes": [
                            { "node": node.ula_prefix.to_string() },
                            { "fromInterface": "eth0", "scope": "global" }
                        ],
                        "routes": [ { "dst": "::/0" } ]
                    }
                }]
            });
            let lo = json!({ "cniVersion": "1.0.0", "name": "lo", "type": "loopback" });
            for (path, v) in [
                (self.conflist_path(node.index), conflist),
                (node.dir.join("loopback.conf"), lo),
            ] {
                std::fs::write(&path, serde_json::to_vec_pretty(&v).expect("json"))
                    .map_err(|e| Error::io(format!("write {}", path.display()), e))?;
            }
        }
        Ok(())
    }

    pub fn conflist_path(&self, node: u16) -> PathBuf {
        self.node(node).dir.join("cluster.conflist")
    }

    /// The IPAM store of a node's cluster network (ipam-prefix layout).
    pub fn ipam_store(&self, node: u16) -> PathBuf {
        self.node(node).dir.join("ipam").join(CLUSTER_NETWORK)
    }

    /// The runtime's result cache of a node.
    pub fn cache_dir(&self, node: u16) -> PathBuf {
        self.node(node).dir.join("cache")
    }

    fn cni6(&self, bins: &Binaries, pod: &Pod, verb: &str, conf: &Path, ifname: &str) -> Command {
        let mut cmd = self.node_command(pod.node, &bins.cni6);
        cmd.arg(verb)
            .arg("--conflist")
            .arg(conf)
            .arg("--netns")
            .arg(&pod.path)
            .args(["--id", &pod.name, "--ifname", ifname])
            .arg("--args")
            .arg(format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={}",
                pod.name
            ))
            .arg("--cni-path")
            .arg(bins.cni_path_arg())
            .arg("--cache-dir")
            .arg(self.cache_dir(pod.node));
        cmd
    }

    /// Attach a pod the way a container runtime does, through `cni6 attach`
    /// running inside the pod's node: loopback first (when available), then
    /// the cluster network on eth0. Returns the pod's two addresses.
    pub fn attach(&self, bins: &Binaries, pod: &Pod) -> Result<PodAddresses> {
        let node_dir = &self.node(pod.node).dir;
        if bins.has_loopback() {
            run(self.cni6(bins, pod, "attach", &node_dir.join("loopback.conf"), "lo"))?;
        }
        let mut cmd = self.cni6(bins, pod, "attach", &self.conflist_path(pod.node), "eth0");
        cmd.arg("--json");
        let out = run(cmd)?;
        let result: Value = serde_json::from_str(&out).map_err(|e| {
            Error::Check(format!("cni6 attach printed no JSON result ({e}): {out}"))
        })?;
        let ips: Vec<Ipv6Net> = result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str()?.parse().ok())
            .collect();
        let node = self.node(pod.node);
        let pick = |prefix: &Ipv6Net| {
            ips.iter()
                .find(|a| prefix.contains(&a.addr()))
                .copied()
                .ok_or_else(|| {
                    Error::Check(format!(
                        "{}: no address in {prefix} in the ADD result {result}",
                        pod.name
                    ))
                })
        };
        Ok(PodAddresses {
            ula: pick(&node.ula_prefix)?,
            gua: pick(&node.gua_prefix)?,
            result: result.clone(),
        })
    }

    /// Verify a pod's cluster attachment through `cni6 check` in its node
    /// (CNI CHECK down the chain with the cached result).
    pub fn check(&self, bins: &Binaries, pod: &Pod) -> Result<()> {
        run(self.cni6(bins, pod, "check", &self.conflist_path(pod.node), "eth0")).map(|_| ())
    }

    /// Detach a pod through `cni6 detach` in its node (cluster network,
    /// then loopback: the reverse of attach).
    pub fn detach(&self, bins: &Binaries, pod: &Pod) -> Result<()> {
        run(self.cni6(bins, pod, "detach", &self.conflist_path(pod.node), "eth0"))?;
        if bins.has_loopback() {
            let conf = self.node(pod.node).dir.join("loopback.conf");
            run(self.cni6(bins, pod, "detach", &conf, "lo"))?;
        }
        Ok(())
    }
}
