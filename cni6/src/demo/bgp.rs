//! `--fabric bgp`: BIRD on every node, an upstream route reflector.

use super::{failed, require_tool, say, Interrupt, NODES};
use crate::commands::routes;
use crate::error::Result;
use crate::options::Output;
use netlab::fabric::{self, RouterOptions};
use netlab::topology::Topology;
use serde_json::json;
use std::time::Duration;

/// The demo's BGP: iBGP to a route reflector, short timers.
const ASN: u32 = 64512;
const HOLD: u16 = 3;

/// BGP instead of static routes: a route reflector on the fabric, BIRD on
/// every node with the configuration `cni6 routes --format bird` prints,
/// then the sessions and the routes each node learned.
pub(super) fn start_bgp(
    topo: &mut Topology,
    interrupt: &Interrupt,
    o: &mut Output,
) -> Result<serde_json::Value> {
    let router = RouterOptions {
        asn: ASN,
        reflector: true,
        hold: HOLD,
        bfd: false,
    };
    require_tool("--fabric bgp", "bird", "bird2")?;
    fabric::add_router(topo, &router).map_err(|e| failed("start the route reflector", e))?;
    for (i, conf) in (1..=NODES).zip(bird_configs(topo)) {
        fabric::start_bird(topo, i, &conf).map_err(|e| failed("start BIRD", e))?;
    }
    let sock = fabric::bird_socket(topo, None);
    let took = fabric::wait_established(&sock, usize::from(NODES), Duration::from_secs(30))
        .map_err(|e| failed("BGP sessions", e))?;
    interrupt.check()?;
    say(
        o,
        format!(
            "BGP: route reflector {} (AS {ASN}), sessions up after {:.1} s (cni6 routes --format bird --peer {}):",
            fabric::router_addr(topo),
            took.as_secs_f64(),
            fabric::router_addr(topo)
        ),
    )?;
    let sessions = fabric::sessions(&sock).map_err(|e| failed("birdc", e))?;
    for s in &sessions {
        say(o, format!("  router session {:<8} {}", s.name, s.info))?;
    }
    let learned = show_learned_routes(topo, o)?;
    say(o, "")?;
    Ok(json!({
        "router": fabric::router_addr(topo),
        "asn": ASN,
        "sessions": sessions.iter().map(|s| json!({"name": s.name, "info": s.info})).collect::<Vec<_>>(),
        "learned": learned,
    }))
}

/// Each node's BIRD configuration, in node order: what `cni6 routes
/// --format bird --peer <route reflector>` prints for it.
fn bird_configs(topo: &Topology) -> Vec<String> {
    let nodes: Vec<routes::FabricNode> = topo
        .nodes()
        .iter()
        .map(|n| routes::FabricNode {
            name: format!("node{}", n.index),
            prefixes: vec![n.ula_prefix, n.gua_prefix],
            underlay: n.underlay_addr,
        })
        .collect();
    let opts = routes::BgpOptions {
        asn: ASN,
        peers: vec![routes::Peer {
            addr: fabric::router_addr(topo),
            asn: None,
        }],
        hold: Some(HOLD),
        ..routes::BgpOptions::default()
    };
    (1..=NODES)
        .map(|i| routes::bird(&nodes, &format!("node{i}"), &opts))
        .collect()
}

/// Wait until every node has a kernel route to every other node's
/// prefixes, then print the routes BIRD installed in each.
fn show_learned_routes(topo: &Topology, o: &mut Output) -> Result<Vec<serde_json::Value>> {
    let mut learned = Vec::new();
    for n in topo.nodes() {
        for other in topo.nodes().iter().filter(|x| x.index != n.index) {
            for p in [other.ula_prefix, other.gua_prefix] {
                fabric::wait_until(Duration::from_secs(10), || {
                    fabric::kernel_route(topo, &n.netns, &p).is_ok_and(|(h, _)| !h.is_empty())
                })
                .map_err(|e| failed(&format!("node {} learn {p}", n.index), e))?;
            }
        }
        let r = topo
            .ip(&n.netns, &["-6", "route", "show", "proto", "bird"])
            .map_err(|e| failed("ip route", e))?;
        for line in r.lines() {
            say(o, format!("  node {} learned: {}", n.index, line.trim()))?;
            learned.push(json!({"node": n.index, "route": line.trim()}));
        }
    }
    Ok(learned)
}
