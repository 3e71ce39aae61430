//! What an attachment leaves on a node, read directly: store records, host
//! veths, firewall rules, libcni cache files. Tests assert these are gone
//! after DEL.

use super::LIBCNI_CACHE;
use crate::harness::{self, Netns};
use serde_json::Value;
use std::path::Path;

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
