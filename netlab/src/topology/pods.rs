//! Pod namespaces: made in batches on a node, removed one by one.

use super::exec::{delete_netns, ip_batch};
use super::{Error, Pod, Result, Topology, NETNS_DIR};
use std::path::Path;

impl Topology {
    /// Create `count` empty pod namespaces on a node (one `ip -batch` call,
    /// so a thousand background pods are cheap).
    pub fn add_pods(&mut self, node: u16, count: usize) -> Result<Vec<Pod>> {
        if node == 0 || node > self.spec.nodes {
            return Err(Error::Spec(format!(
                "node {node}: expected 1..={}",
                self.spec.nodes
            )));
        }
        let first = self.pods_of(node).count() + 1;
        let pods: Vec<Pod> = (first..first + count)
            .map(|k| {
                let name = format!("{}n{node}p{k}", self.base);
                Pod {
                    path: Path::new(NETNS_DIR).join(&name),
                    name,
                    node,
                }
            })
            .collect();
        let cmds: Vec<String> = pods
            .iter()
            .map(|p| format!("netns add {}", p.name))
            .collect();
        // Record before creating: a partial batch is still cleaned up
        // (deleting a name that was never made is harmless: it is ours).
        self.created.extend(pods.iter().map(|p| p.name.clone()));
        self.pods.extend(pods.iter().cloned());
        ip_batch(None, &cmds)?;
        self.save_manifest()?;
        Ok(pods)
    }

    pub fn add_pod(&mut self, node: u16) -> Result<Pod> {
        Ok(self.add_pods(node, 1)?.remove(0))
    }

    /// Remove a pod's namespace (what a runtime does after DEL).
    pub fn remove_pod(&mut self, name: &str) -> Result<()> {
        if !self.pods.iter().any(|p| p.name == name) {
            return Err(Error::Spec(format!(
                "pod {name}: not made by this topology"
            )));
        }
        delete_netns(&[name.to_string()])?;
        self.pods.retain(|p| p.name != name);
        self.created.retain(|n| n != name);
        self.save_manifest()
    }
}
