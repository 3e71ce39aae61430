//! What a topology records in its state directory so that it can be kept
//! (`cni6 demo --keep`), adopted and removed later, and the teardown that
//! removes exactly the namespaces it recorded.

use super::exec::{delete_netns, list_netns_with_prefix, open_netns};
use super::{nth, Error, Node, Pod, Result, Spec, Topology, MANIFEST, NETNS_DIR};
use ipnet::Ipv6Net;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

impl Topology {
    /// Take over a topology a `--keep` run left up, from its manifest, so
    /// its pods can be detached and everything removed.
    pub fn adopt(manifest: &Path) -> Result<Topology> {
        let m = read_manifest(manifest)?;
        let bad = |what: &str| Error::Spec(format!("manifest {}: bad {what}", manifest.display()));
        let base = m["base"].as_str().ok_or_else(|| bad("base"))?.to_string();
        let dir = manifest.parent().ok_or_else(|| bad("path"))?.to_path_buf();
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        };
        let created = strings(&m["namespaces"]);
        let mut nodes = Vec::new();
        for n in m["nodes"].as_array().into_iter().flatten() {
            let parse6 = |k: &str| -> Result<Ipv6Net> {
                n[k].as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad(k))
            };
            let netns = n["netns"]
                .as_str()
                .ok_or_else(|| bad("node netns"))?
                .to_string();
            let gua_prefix = parse6("gua")?;
            let gua_net = Ipv6Net::new(gua_prefix.network(), 64).expect("64 <= 128");
            nodes.push(Node {
                index: n["index"].as_u64().ok_or_else(|| bad("node index"))? as u16,
                ns: open_netns(&netns)?,
                netns,
                underlay_addr: n["underlay"]
                    .as_str()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad("underlay"))?,
                ula_prefix: parse6("ula")?,
                gua_addr: nth(&gua_net, 1),
                gua_net,
                gua_prefix,
                dir: PathBuf::from(n["dir"].as_str().ok_or_else(|| bad("node dir"))?),
            });
        }
        let pods = m["pods"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                Ok(Pod {
                    name: p["name"]
                        .as_str()
                        .ok_or_else(|| bad("pod name"))?
                        .to_string(),
                    node: p["node"].as_u64().ok_or_else(|| bad("pod node"))? as u16,
                    path: PathBuf::from(p["path"].as_str().ok_or_else(|| bad("pod path"))?),
                })
            })
            .collect::<Result<Vec<Pod>>>()?;
        let underlay_ns = format!("{base}u");
        let mut spec = Spec::new("", nodes.len() as u16);
        spec.state_root = dir.parent().unwrap_or(Path::new("/")).to_path_buf();
        Ok(Topology {
            underlay_file: open_netns(&underlay_ns)?,
            underlay_ns,
            bridge: format!("{base}f"),
            base,
            nodes,
            pods,
            created,
            hosts: Vec::new(),
            daemons: Vec::new(),
            dir,
            extra: m["extra"].clone(),
            keep: false,
            spec,
        })
    }

    /// What [`Topology::set_extra`] stored.
    pub fn extra(&self) -> &Value {
        &self.extra
    }

    /// Manifests of topologies deliberately left up under a state root
    /// ([`Topology::keep`]); topologies still owned by a running process
    /// are not listed.
    pub fn kept(state_root: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = std::fs::read_dir(state_root)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(MANIFEST))
            .filter(|p| read_manifest(p).is_ok_and(|m| m["kept"] == true))
            .collect();
        out.sort();
        out
    }

    /// Free-form data a user of the fixture wants kept with the manifest
    /// (the demo stores what `--cleanup` needs).
    pub fn set_extra(&mut self, extra: Value) -> Result<()> {
        self.extra = extra;
        self.save_manifest()
    }

    pub(super) fn save_manifest(&self) -> Result<()> {
        let m = json!({
            "base": self.base,
            "namespaces": self.created,
            "pods": self.pods.iter().map(|p| json!({
                "name": p.name, "node": p.node, "path": p.path,
            })).collect::<Vec<_>>(),
            "nodes": self.nodes.iter().map(|n| json!({
                "index": n.index, "netns": n.netns, "dir": n.dir,
                "underlay": n.underlay_addr, "ula": n.ula_prefix, "gua": n.gua_prefix,
            })).collect::<Vec<_>>(),
            "daemons": self.daemons.iter().map(|d| json!({
                "name": d.name, "pid": d.child.id(),
            })).collect::<Vec<_>>(),
            "extra": self.extra,
            "kept": self.keep,
        });
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join(format!("{MANIFEST}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&m).expect("json"))
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("write {}", path.display()), e))
    }

    /// Leave everything up (`cni6 demo --keep`); returns the manifest path
    /// that [`remove_by_manifest`] takes.
    pub fn keep(mut self) -> PathBuf {
        self.keep = true;
        if let Err(e) = self.save_manifest() {
            eprintln!("topology {}: {e}", self.base);
        }
        self.dir.join(MANIFEST)
    }

    /// Remove everything now, reporting errors (Drop does the same but can
    /// only print them).
    pub fn teardown(mut self) -> Result<()> {
        self.keep = true; // Drop must not run it twice.
        self.stop_daemons();
        kill_recorded_daemons(&self.dir.join(MANIFEST));
        teardown(&self.created, &self.dir)
    }

    /// Namespaces of this topology that still exist (after teardown: none).
    pub fn existing_namespaces(base: &str) -> Result<Vec<String>> {
        list_netns_with_prefix(base)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        self.stop_daemons();
        if let Err(e) = teardown(&self.created, &self.dir) {
            eprintln!("topology {}: teardown: {e}", self.base);
        }
    }
}

/// Delete the namespaces (reverse creation order) and the state directory.
fn teardown(created: &[String], dir: &Path) -> Result<()> {
    let names: Vec<String> = created.iter().rev().cloned().collect();
    let res = delete_netns(&names);
    let res2 = match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("remove {}", dir.display()), e))
        }
        _ => Ok(()),
    };
    res.and(res2)
}

/// A topology's manifest as written by [`Topology::keep`] and the steps
/// before it (namespaces, nodes, pods, daemons, the caller's `extra`).
pub fn read_manifest(path: &Path) -> Result<Value> {
    let bytes =
        std::fs::read(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Spec(format!("manifest {}: {e}", path.display())))
}

/// Remove what a kept topology left, from its manifest: its daemons, then
/// exactly the namespaces it recorded, then its state directory. A caller
/// with work of its own to undo first (the demo detaches its pods) uses
/// [`Topology::adopt`] instead; this is for a topology partly gone.
pub fn remove_by_manifest(path: &Path) -> Result<()> {
    let m = read_manifest(path)?;
    let names: Vec<String> = m["namespaces"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("/nonexistent"));
    kill_recorded_daemons(path);
    teardown(&names, dir)
}

/// End the daemons a kept topology's manifest lists (a namespace lives on
/// while a process is in it). A pid is only killed while it is still a
/// process inside one of the manifest's namespaces, never a reused one.
fn kill_recorded_daemons(manifest: &Path) {
    let Ok(m) = read_manifest(manifest) else {
        return;
    };
    let names: Vec<&str> = m["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    for d in m["daemons"].as_array().into_iter().flatten() {
        let Some(pid) = d["pid"].as_u64() else {
            continue;
        };
        let ours = names.iter().any(|n| {
            let (Ok(a), Ok(b)) = (
                std::fs::metadata(format!("/proc/{pid}/ns/net")),
                std::fs::metadata(Path::new(NETNS_DIR).join(n)),
            ) else {
                return false;
            };
            use std::os::unix::fs::MetadataExt;
            a.ino() == b.ino() && a.dev() == b.dev()
        });
        if ours {
            // SAFETY: signalling a pid checked to live in our namespace.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}
