//! `--nat64`: node 1 IPv4-enabled (NAT64 + DNS64), and a pod on node 2
//! reaching an IPv4-only host by name.

use super::{failed, require_tool, say, TCP_TIMEOUT};
use crate::commands::nat64;
use crate::error::Result;
use crate::options::Output;
use netlab::fabric;
use netlab::topology::{Pod, PodAddresses, Topology};
use serde_json::json;

/// Node 1 becomes IPv4-enabled: its uplink, tayga and unbound's DNS64 with
/// what `cni6 nat64` prints for it.
pub(super) fn start_nat64(topo: &mut Topology, o: &mut Output) -> Result<fabric::Nat64Config> {
    require_tool("--nat64", "tayga", "tayga")?;
    require_tool("--nat64", "unbound", "unbound")?;
    fabric::add_ipv4_internet(topo, 1).map_err(|e| failed("IPv4 uplink of node 1", e))?;
    let (conf, data) = fabric::nat64_paths(topo, 1);
    let args = nat64::Nat64Args {
        node_prefix: topo.node(1).ula_prefix.to_string(),
        ipv4_pool: fabric::NAT64_POOL.into(),
        uplink: "eth1".into(),
        format: nat64::Format::Tayga,
        tun: "nat64".into(),
        conf: conf.clone(),
        data_dir: data,
        clients: vec![],
    };
    let plan = nat64::Nat64::from_args(&args)?;
    let cfg = fabric::Nat64Config {
        tayga: plan.tayga(),
        commands: plan.commands(),
        unbound: plan.unbound(),
        conf,
        dns: plan.dns,
    };
    fabric::start_nat64(topo, 1, &cfg).map_err(|e| failed("NAT64/DNS64 on node 1", e))?;
    say(
        o,
        format!(
            "IPv4: node 1 has an uplink to the IPv4 internet ({}/{} -> {}), runs tayga for {} \
             (pool {}, masqueraded) and a DNS64 at {} (cni6 nat64 --node-prefix {})",
            fabric::UPLINK_NODE,
            fabric::UPLINK_LEN,
            fabric::INTERNET_NET,
            plan.prefix,
            plan.pool,
            plan.dns,
            plan.node_prefix
        ),
    )?;
    say(o, "")?;
    Ok(cfg)
}

/// A pod on node 2 resolves the IPv4-only host's name through the DNS64
/// and talks TCP to it through node 1's NAT64. Returns the failures.
pub(super) fn ipv4_probe(
    topo: &Topology,
    pods: &[(Pod, PodAddresses)],
    cfg: &fabric::Nat64Config,
    doc: &mut serde_json::Value,
    o: &mut Output,
) -> Result<usize> {
    let Some((pod, addrs)) = pods.iter().find(|(p, _)| p.node == 2) else {
        return Ok(0);
    };
    let name = fabric::IPV4_HOST_NAME;
    say(
        o,
        format!(
            "IPv4-only host {name} ({}, A record only), from pod {} on node 2 ({}):",
            fabric::IPV4_HOST,
            pod.name,
            addrs.ula.addr()
        ),
    )?;
    let aaaa = match fabric::resolve_aaaa(&pod.path, cfg.dns, name, TCP_TIMEOUT) {
        Ok(a) if !a.is_empty() => a,
        other => {
            say(
                o,
                format!("  resolve {name} AAAA via {}: FAIL {other:?}", cfg.dns),
            )?;
            doc["ipv4"] = json!({"ok": false, "error": format!("{other:?}")});
            return Ok(1);
        }
    };
    say(
        o,
        format!(
            "  {name} AAAA {} (synthesised by the DNS64 at {})",
            aaaa[0], cfg.dns
        ),
    )?;
    let internet = match topo.host(fabric::INTERNET) {
        Some(h) => h.netns_path(),
        None => return Ok(1),
    };
    match fabric::tcp_via_nat64(&internet, &pod.path, aaaa[0], TCP_TIMEOUT) {
        Ok(x) => {
            say(
                o,
                format!(
                    "  TCP to [{}] ok in {:.1} ms; the IPv4 host saw the client as {} (node 1, masqueraded)",
                    aaaa[0],
                    x.elapsed.as_secs_f64() * 1e3,
                    x.peer
                ),
            )?;
            say(o, "")?;
            doc["ipv4"] = json!({"ok": true, "name": name, "aaaa": aaaa[0],
                "ms": x.elapsed.as_secs_f64() * 1e3, "seenAs": x.peer.to_string()});
            Ok(0)
        }
        Err(e) => {
            say(o, format!("  TCP to [{}]: FAIL {e}", aaaa[0]))?;
            doc["ipv4"] = json!({"ok": false, "aaaa": aaaa[0], "error": e.to_string()});
            Ok(1)
        }
    }
}
