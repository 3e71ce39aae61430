//! The demo's firewall6: whether it can run here, its place in the
//! conflists, and the probes from a host outside the cluster.

use super::{failed, say, Interrupt, TCP_TIMEOUT};
use crate::error::{CliError, Result};
use crate::options::Output;
use netlab::topology::{Pod, PodAddresses, Topology};
use serde_json::json;
use std::net::Ipv6Addr;
use std::path::Path;
use std::time::Duration;

/// The port firewall6 opens to everyone in the demo, and one it keeps shut.
const OPEN_PORT: u16 = 443;
const CLOSED_PORT: u16 = 8080;
/// How long the outside host waits before calling a port refused: the
/// firewall drops (no RST), so a refused connection is a time-out.
const REFUSED_AFTER: Duration = Duration::from_millis(1500);

/// firewall6 next to cni6. Pods share no layer 2 (isolated ports, routed
/// at the gateway), so firewall6 sees every pod packet at layer 3 and needs
/// no br_netfilter; the demo's nodes turn its hook off through netlab.
pub(super) fn firewall_available(bin_dir: &Path, o: &mut Output) -> Result<bool> {
    if !bin_dir.join("firewall6").is_file() {
        say(
            o,
            format!(
                "note: no firewall6 in {}: the demo runs without it",
                bin_dir.display()
            ),
        )?;
        return Ok(false);
    }
    Ok(true)
}

/// Append firewall6 to every node's conflist: the docs/design.md policy, with
/// the demo's provider GUA space counted as inside so pods of different
/// nodes may also talk GUA to GUA.
pub(super) fn add_firewall6(topo: &Topology) -> Result<()> {
    for node in topo.nodes() {
        let path = topo.conflist_path(node.index);
        let text = std::fs::read(&path).map_err(|e| failed("read conflist", e))?;
        let mut list: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| failed("parse conflist", e))?;
        list["plugins"]
            .as_array_mut()
            .ok_or_else(|| CliError::Failed("conflist without plugins".into()))?
            .push(json!({
                "type": "firewall6",
                "clusterPrefixes": [topo.spec().cluster, topo.spec().gua_base],
                "ingress": "cluster-only",
                "allowPorts": [ { "port": OPEN_PORT, "protocol": "tcp" } ]
            }));
        let bytes = serde_json::to_vec_pretty(&list).map_err(|e| failed("conflist", e))?;
        std::fs::write(&path, bytes).map_err(|e| failed("write conflist", e))?;
    }
    Ok(())
}

/// From a host outside the cluster, connect to every pod's GUA on the open
/// and on a closed port. Returns how many probes disagreed with the policy.
pub(super) fn outside_probes(
    topo: &Topology,
    pods: &[(Pod, PodAddresses)],
    interrupt: &Interrupt,
    doc: &mut serde_json::Value,
    o: &mut Output,
) -> Result<usize> {
    let (outside, outside_addr) = topo
        .add_outside_host()
        .map_err(|e| failed("add a host outside the cluster", e))?;
    say(
        o,
        format!(
            "firewall6 (ingress cluster-only; inside: {} and {}; open to all: {OPEN_PORT}/tcp)",
            topo.spec().cluster,
            topo.spec().gua_base
        ),
    )?;
    say(
        o,
        format!("from a host outside the cluster ({outside_addr}):"),
    )?;
    let mut failures = 0;
    let mut probes = Vec::new();
    for (pod, addrs) in pods {
        let mut line = format!("  pod {:<14}", pod.name);
        for (port, expect_open) in [(OPEN_PORT, true), (CLOSED_PORT, false)] {
            interrupt.check()?;
            let dst = addrs.gua.addr();
            let wait = if expect_open {
                TCP_TIMEOUT
            } else {
                REFUSED_AFTER
            };
            let open = tcp_connects(&pod.path, dst, port, &outside, wait)?;
            if open != expect_open {
                failures += 1;
            }
            let verdict = match (open, expect_open) {
                (true, true) => "open (allowed port)",
                (false, false) => "refused (dropped)",
                (true, false) => "OPEN: policy violated",
                (false, true) => "UNREACHABLE",
            };
            line.push_str(&format!("  [{dst}]:{port} {verdict:<20}"));
            probes.push(json!({
                "pod": pod.name, "dst": dst, "port": port,
                "expected": if expect_open { "open" } else { "refused" },
                "open": open,
            }));
        }
        say(o, line.trim_end().to_string())?;
    }
    say(o, "")?;
    doc["outside"] = json!({ "from": outside_addr, "probes": probes });
    Ok(failures)
}

/// Whether a TCP handshake from `client` to `[dst]:port`, with a listener
/// on that port inside `server`, completes within `wait`.
fn tcp_connects(
    server: &Path,
    dst: Ipv6Addr,
    port: u16,
    client: &Path,
    wait: Duration,
) -> Result<bool> {
    use cni_common::netns::NetNs;
    use std::net::{SocketAddr, SocketAddrV6, TcpListener, TcpStream};
    let sa = SocketAddrV6::new(dst, port, 0, 0);
    let server_ns = NetNs::open(server).map_err(|e| failed("open pod netns", e))?;
    // Kept open until the probe is done; the kernel completes the
    // handshake from its backlog, no accept needed.
    let _listener = server_ns
        .run(|| TcpListener::bind(sa))
        .map_err(|e| failed("enter pod netns", e))?
        .map_err(|e| failed(&format!("listen on [{dst}]:{port}"), e))?;
    let client_ns = NetNs::open(client).map_err(|e| failed("open outside netns", e))?;
    let connected = client_ns
        .run(|| TcpStream::connect_timeout(&SocketAddr::V6(sa), wait))
        .map_err(|e| failed("enter outside netns", e))?;
    Ok(connected.is_ok())
}
