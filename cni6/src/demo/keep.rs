//! `--keep` and `--cleanup`: a cluster left up to look at, and its removal
//! by a later process.

use super::{say, STATE_ROOT};
use crate::error::{CliError, Result};
use crate::options::Output;
use netlab::topology::{self, Binaries, Pod, PodAddresses, Topology};
use std::path::{Path, PathBuf};

/// `--keep`: leave the cluster up (its manifest marked kept) and print
/// commands to look around and to remove it.
pub(super) fn keep_up(topo: Topology, pods: &[(Pod, PodAddresses)], o: &mut Output) -> Result<()> {
    let n1 = &topo.nodes()[0];
    let (p, a) = &pods[0];
    let lines = [
        "The cluster stays up. To look around:".to_string(),
        format!("  ip netns list | grep {}", topo.base()),
        format!("  ip netns exec {} ip -6 addr show dev eth0", p.name),
        format!("  ip netns exec {} ip -6 route", p.name),
        format!(
            "  ip netns exec {} ip -6 route          # one route per other node",
            n1.netns
        ),
        format!(
            "  ip netns exec {} bridge link          # the pods' veths",
            n1.netns
        ),
        format!(
            "  ip netns exec {} tcpdump -ni {}n1 ip6   # node 1's port on the fabric",
            topo.underlay_netns(),
            topo.base()
        ),
        format!(
            "  ls {}/node1/ipam/cluster/attachments",
            topo.dir().display()
        ),
        format!(
            "  (pod {} has {} and {})",
            p.name,
            a.ula.addr(),
            a.gua.addr()
        ),
        "To remove it:".to_string(),
        // The path this binary was run from: after `target/release/cni6
        // demo --keep`, a bare `cni6` is usually not on PATH.
        format!(
            "  {} demo --cleanup",
            std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "cni6".into())
        ),
    ];
    let _manifest = topo.keep();
    for l in lines {
        say(o, l)?;
    }
    Ok(())
}

/// Detach the pods of every kept demo cluster through the runtime, then
/// remove its namespaces and state.
pub(super) fn cleanup(o: &mut Output) -> Result<()> {
    let kept = Topology::kept(Path::new(STATE_ROOT));
    if kept.is_empty() {
        o.line("no demo cluster is up")?;
        return Ok(());
    }
    let mut errors = Vec::new();
    for manifest in kept {
        match Topology::adopt(&manifest) {
            Ok(topo) => {
                let extra = topo.extra().clone();
                let bins = Binaries {
                    cni6: extra["cni6"]
                        .as_str()
                        .map(PathBuf::from)
                        .unwrap_or_default(),
                    cni_path: extra["cniPath"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|v| v.as_str().map(PathBuf::from))
                        .collect(),
                };
                for pod in topo.pods() {
                    if let Err(e) = topo.detach(&bins, pod) {
                        o.line(format!("warning: detach {}: {e}", pod.name))?;
                    }
                }
                let base = topo.base().to_string();
                match topo.teardown() {
                    Ok(()) => o.line(format!("removed demo cluster {base}"))?,
                    Err(e) => errors.push(format!("{base}: {e}")),
                }
            }
            // Partly gone already: remove what the manifest still lists.
            Err(_) => match topology::remove_by_manifest(&manifest) {
                Ok(()) => o.line(format!("removed leftovers of {}", manifest.display()))?,
                Err(e) => errors.push(format!("{}: {e}", manifest.display())),
            },
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CliError::Failed(errors.join("; ")))
    }
}
