//! The fabric for real: BIRD 2 in every node namespace, configured with
//! what `cni6 routes --format bird` prints, and no static route anywhere:
//! pods of every node reach each other over ULA and GUA through routes
//! learned over BGP. Both layouts operators use: nodes peering with an
//! upstream router (an iBGP route reflector, or eBGP with one AS per node)
//! and the iBGP full mesh. A node that stops (BIRD killed, fabric link
//! down) is withdrawn at the router within the hold time; a node added
//! later is reachable seconds after its session comes up; an anycast /128
//! announced by two nodes is one path per node at the router (ECMP), and
//! one node leaving removes only its path. Times are printed (run with
//! `--nocapture`) and recorded in docs/fabric.md.
//!
//! Needs root, bird2 (scripts/install-deps.sh) and built binaries.

use conformance::fabric::{self, RouterOptions};
use conformance::harness;
use conformance::topology::{self, Binaries, Pod, PodAddresses, Spec, Topology};
use ipnet::Ipv6Net;
use std::net::Ipv6Addr;
use std::time::{Duration, Instant};

/// Short timers, as the test's budget asks: keepalive 1 s, hold 3 s (the
/// least BGP allows).
const HOLD: u16 = 3;
const TCP: Duration = Duration::from_secs(3);
const SESSIONS_UP: Duration = Duration::from_secs(30);

/// `cni6 routes --format bird` for one node of the topology.
fn bird_config(topo: &Topology, node: u16, extra: &[String]) -> String {
    let mut args: Vec<String> = vec!["routes".into(), "--format".into(), "bird".into()];
    for n in topo.nodes() {
        args.push("--node".into());
        args.push(format!(
            "node{}={},{}@{}",
            n.index, n.ula_prefix, n.gua_prefix, n.underlay_addr
        ));
    }
    args.extend(["--self".into(), format!("node{node}")]);
    args.extend(["--hold".into(), HOLD.to_string()]);
    args.extend(extra.iter().cloned());
    harness::cni6_ok(&args)
}

/// The same, rendered the way a DaemonSet does: inside the node, from
/// its own conflist (prefixes resolved on the node) and its fabric address.
fn bird_config_from_conflist(topo: &Topology, node: u16, extra: &[String]) -> String {
    let n = topo.node(node);
    let o = topo
        .node_command(node, harness::plugin("cni6"))
        .args(["routes", "--format", "bird", "--hold", &HOLD.to_string()])
        .args(["--self", &format!("node{node}")])
        .arg("--self-conflist")
        .arg(topo.conflist_path(node))
        .args(["--self-underlay", &n.underlay_addr.to_string()])
        .args(extra)
        .output()
        .expect("run cni6 in the node");
    assert!(
        o.status.success(),
        "cni6 routes --self-conflist: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn build(tag: &str, nodes: u16) -> (Topology, Binaries) {
    harness::require_root();
    let bins = Binaries::from_dir(&harness::bin_dir()).unwrap_or_else(|e| panic!("{e}"));
    let mut spec = Spec::new(tag, nodes);
    spec.static_routes = false;
    let topo = Topology::build(spec).expect("build topology");
    topo.write_cluster_conflists().expect("conflists");
    (topo, bins)
}

fn attach_one(topo: &mut Topology, bins: &Binaries, node: u16) -> (Pod, PodAddresses) {
    let pod = topo.add_pod(node).expect("pod");
    let addrs = topo.attach(bins, &pod).expect("attach");
    (pod, addrs)
}

/// Wait until every node has a BIRD route to every other node's ULA and
/// GUA prefix, and check nothing else feeds the fabric: no static route.
fn wait_for_bgp_routes(topo: &Topology, nodes: &[u16]) {
    for &a in nodes {
        let me = topo.node(a);
        for &b in nodes.iter().filter(|b| **b != a) {
            let other = topo.node(b);
            for p in [other.ula_prefix, other.gua_prefix] {
                fabric::wait_until(SESSIONS_UP, || {
                    fabric::kernel_route(topo, &me.netns, &p).is_ok_and(|(hops, proto)| {
                        !hops.is_empty() && proto.as_deref() == Some("bird")
                    })
                })
                .unwrap_or_else(|_| {
                    panic!(
                        "node {a} has no BGP route to {p}:\n{}",
                        topo.ip(&me.netns, &["-6", "route"]).unwrap()
                    )
                });
            }
        }
        let statics = topo
            .ip(&me.netns, &["-6", "route", "show", "proto", "static"])
            .unwrap();
        assert!(statics.trim().is_empty(), "node {a}: {statics}");
    }
}

/// TCP between every pair of pods over ULA and GUA.
fn matrix(pods: &[(Pod, PodAddresses)]) {
    for (c, _) in pods {
        for (s, sa) in pods.iter().filter(|(s, _)| s != c) {
            for dst in [sa.ula.addr(), sa.gua.addr()] {
                topology::tcp_echo(&s.path, dst, &c.path, b"over bgp", TCP)
                    .unwrap_or_else(|e| panic!("pod {} -> pod {} [{dst}]: {e}", c.name, s.name));
            }
        }
    }
}

/// How long until the router's kernel has no route for `prefix`.
fn withdrawn_at_router(topo: &Topology, prefix: &Ipv6Net, limit: Duration) -> Duration {
    let router = topo.host(fabric::ROUTER).unwrap().netns.clone();
    fabric::wait_until(limit, || {
        fabric::kernel_route(topo, &router, prefix).is_ok_and(|(h, _)| h.is_empty())
    })
    .unwrap_or_else(|_| panic!("the router still routes {prefix} after {limit:?}"))
}

fn router_hops(topo: &Topology, prefix: &Ipv6Net) -> Vec<Ipv6Addr> {
    let router = topo.host(fabric::ROUTER).unwrap().netns.clone();
    fabric::kernel_route(topo, &router, prefix).unwrap().0
}

#[test]
fn reflector_layout_withdraws_stopped_nodes_and_learns_new_ones() {
    let (mut topo, bins) = build("c6bgr", 3);
    let opts = RouterOptions {
        asn: 64512,
        reflector: true,
        hold: HOLD,
        bfd: false,
    };
    fabric::add_router(&mut topo, &opts).expect("router");
    let peer = format!("{}@64512", fabric::router_addr(&topo));
    let mut pods = Vec::new();
    for n in 1..=3 {
        pods.push(attach_one(&mut topo, &bins, n));
        let extra = ["--peer".to_string(), peer.clone()];
        let conf = bird_config_from_conflist(&topo, n, &extra);
        // The node's conflist (a literal ULA /80, the GUA /80 from eth0)
        // gives the prefixes the operator would have listed by hand.
        assert_eq!(conf, bird_config(&topo, n, &extra));
        assert!(conf.contains("neighbor fd00:fab::fe as 64512;"), "{conf}");
        fabric::start_bird(&mut topo, n, &conf).expect("bird");
    }
    let router = fabric::bird_socket(&topo, None);
    fabric::wait_established(&router, 3, SESSIONS_UP).expect("sessions at the router");
    for n in 1..=3 {
        // Each node talks to the router only: one session.
        fabric::wait_established(&fabric::bird_socket(&topo, Some(n)), 1, SESSIONS_UP).unwrap();
        assert_eq!(
            fabric::sessions(&fabric::bird_socket(&topo, Some(n)))
                .unwrap()
                .len(),
            1
        );
    }
    wait_for_bgp_routes(&topo, &[1, 2, 3]);
    // Reflected routes keep the announcing node as next hop: the fabric
    // carries pod traffic node to node, not through the router.
    let (hops, _) =
        fabric::kernel_route(&topo, &topo.node(1).netns, &topo.node(2).ula_prefix).unwrap();
    assert_eq!(hops, vec![topo.node(2).underlay_addr]);
    matrix(&pods);

    // A crashed BIRD: the kernel closes its TCP session, the router
    // withdraws at once (graceful restart is off in cni6's config).
    let n3 = topo.node(3).ula_prefix;
    let t0 = Instant::now();
    fabric::kill_bird(&mut topo, 3).unwrap();
    let killed = withdrawn_at_router(&topo, &n3, Duration::from_secs(u64::from(HOLD)));
    fabric::wait_until(Duration::from_secs(u64::from(HOLD)), || {
        fabric::kernel_route(&topo, &topo.node(1).netns, &n3).is_ok_and(|(h, _)| h.is_empty())
    })
    .expect("node 1 still routes to the dead node 3");
    let at_node1 = t0.elapsed();
    println!(
        "MEASURE bgp-kill-bird: router withdrew node 3 after {:.0} ms, node 1 after {:.0} ms",
        killed.as_secs_f64() * 1e3,
        at_node1.as_secs_f64() * 1e3
    );
    assert!(!router_hops(&topo, &topo.node(1).ula_prefix).is_empty());

    // A node whose fabric link goes down says nothing: the router notices
    // when the hold timer runs out.
    let n2 = topo.node(2).ula_prefix;
    let n2ns = topo.node(2).netns.clone();
    topo.ip_batch(&n2ns, &["link set eth0 down".into()])
        .unwrap();
    let down = withdrawn_at_router(&topo, &n2, Duration::from_secs(u64::from(HOLD) + 2));
    println!(
        "MEASURE bgp-link-down: router withdrew node 2 after {:.0} ms (hold time {HOLD} s)",
        down.as_secs_f64() * 1e3
    );
    assert!(
        down <= Duration::from_millis(u64::from(HOLD) * 1000 + 500),
        "withdrawn after {down:?}, hold time {HOLD} s"
    );
    assert!(router_hops(&topo, &topo.node(2).gua_prefix).is_empty());

    // A node joins: its pods are reachable seconds after its session is up.
    let n4 = topo.add_node().unwrap();
    topo.write_cluster_conflists().unwrap();
    let p4 = attach_one(&mut topo, &bins, n4);
    let conf = bird_config(&topo, n4, &["--peer".into(), peer.clone()]);
    let t0 = Instant::now();
    fabric::start_bird(&mut topo, n4, &conf).unwrap();
    fabric::wait_established(&fabric::bird_socket(&topo, Some(n4)), 1, SESSIONS_UP).unwrap();
    let up = t0.elapsed();
    let p1 = &pods[0];
    let reach = fabric::wait_until(Duration::from_secs(10), || {
        topology::tcp_echo(
            &p4.0.path,
            p4.1.ula.addr(),
            &p1.0.path,
            b"new node",
            Duration::from_millis(200),
        )
        .is_ok()
    })
    .expect("pod on the new node unreachable 10 s after its session came up");
    println!(
        "MEASURE bgp-new-node: session up {:.0} ms after BIRD started, pod reachable {:.0} ms later",
        up.as_secs_f64() * 1e3,
        reach.as_secs_f64() * 1e3
    );
    assert!(reach < Duration::from_secs(5), "{reach:?}");
    matrix(&[pods.remove(0), p4]);
}

#[test]
fn ebgp_layout_with_anycast_and_bfd() {
    let (mut topo, bins) = build("c6bge", 3);
    let opts = RouterOptions {
        asn: 65000,
        reflector: false,
        hold: HOLD,
        bfd: true,
    };
    fabric::add_router(&mut topo, &opts).expect("router");
    let peer = format!("{}@65000", fabric::router_addr(&topo));
    // An anycast address from the cluster's virtual IPs (C:0::/80), held
    // by nodes 1 and 2.
    let vip: Ipv6Net = "fd8c:1f0a:77e3::a/128".parse().unwrap();
    let mut pods = Vec::new();
    for n in 1..=3u16 {
        pods.push(attach_one(&mut topo, &bins, n));
        let mut extra = vec![
            "--peer".into(),
            peer.clone(),
            "--asn".into(),
            (65000 + u32::from(n)).to_string(),
            "--bfd".into(),
        ];
        if n <= 2 {
            extra.extend(["--announce".into(), vip.to_string()]);
            let ns = topo.node(n).netns.clone();
            topo.ip_batch(&ns, &[format!("addr add {vip} dev lo")])
                .unwrap();
        }
        let conf = bird_config(&topo, n, &extra);
        fabric::start_bird(&mut topo, n, &conf).expect("bird");
    }
    let router = fabric::bird_socket(&topo, None);
    fabric::wait_established(&router, 3, SESSIONS_UP).expect("sessions at the router");
    wait_for_bgp_routes(&topo, &[1, 2, 3]);
    matrix(&pods);

    // One path per announcing node, installed as one multipath route.
    let both = vec![topo.node(1).underlay_addr, topo.node(2).underlay_addr];
    fabric::wait_until(Duration::from_secs(5), || router_hops(&topo, &vip) == both)
        .unwrap_or_else(|_| panic!("router's paths to {vip}: {:?}", router_hops(&topo, &vip)));
    let shown = fabric::birdc(&router, &["show", "route", "for", &vip.to_string()]).unwrap();
    assert_eq!(shown.matches("via fd00:fab::").count(), 2, "{shown}");
    // The router reaches the anycast address (some node answers).
    let rpath = topo.host(fabric::ROUTER).unwrap().netns_path();
    let n1path = topo.node(1).netns_path();
    let n2path = topo.node(2).netns_path();
    assert!(
        topology::tcp_echo(&n1path, vip.addr(), &rpath, b"anycast", TCP).is_ok()
            || topology::tcp_echo(&n2path, vip.addr(), &rpath, b"anycast", TCP).is_ok(),
        "the router cannot reach {vip}"
    );

    // Node 1 leaves: only its path goes.
    fabric::kill_bird(&mut topo, 1).unwrap();
    let t = fabric::wait_until(Duration::from_secs(u64::from(HOLD)), || {
        router_hops(&topo, &vip) == vec![topo.node(2).underlay_addr]
    })
    .unwrap_or_else(|_| panic!("paths to {vip}: {:?}", router_hops(&topo, &vip)));
    println!(
        "MEASURE bgp-anycast-withdraw: node 1's path to {vip} gone after {:.0} ms",
        t.as_secs_f64() * 1e3
    );
    assert!(!router_hops(&topo, &topo.node(2).ula_prefix).is_empty());

    // With BFD, a dead link is noticed in a few hundred ms, not the hold
    // time.
    let n3 = topo.node(3).ula_prefix;
    let ns3 = topo.node(3).netns.clone();
    let node3 = topo.node(3).underlay_addr;
    // BFD comes up (slowly, 1 s intervals) after the session.
    fabric::wait_until(Duration::from_secs(10), || {
        fabric::bfd_up(&router).is_ok_and(|up| up.contains(&node3))
    })
    .unwrap_or_else(|_| panic!("no BFD session with node 3: {:?}", fabric::bfd_up(&router)));
    topo.ip_batch(&ns3, &["link set eth0 down".into()]).unwrap();
    let down = withdrawn_at_router(&topo, &n3, Duration::from_secs(u64::from(HOLD) + 2));
    println!(
        "MEASURE bgp-link-down-bfd: router withdrew node 3 after {:.0} ms (BFD 3 x 100 ms)",
        down.as_secs_f64() * 1e3
    );
    // Detection takes 300 ms; half the hold time leaves room for a loaded CI.
    assert!(
        down < Duration::from_millis(u64::from(HOLD) * 500),
        "{down:?}"
    );
}

#[test]
fn full_mesh_layout_needs_no_router() {
    let (mut topo, bins) = build("c6bgm", 3);
    let mut pods = Vec::new();
    for n in 1..=3 {
        pods.push(attach_one(&mut topo, &bins, n));
        let conf = bird_config(&topo, n, &[]);
        fabric::start_bird(&mut topo, n, &conf).expect("bird");
    }
    for n in 1..=3 {
        let sock = fabric::bird_socket(&topo, Some(n));
        fabric::wait_established(&sock, 2, SESSIONS_UP).expect("full mesh");
        assert_eq!(fabric::sessions(&sock).unwrap().len(), 2);
    }
    wait_for_bgp_routes(&topo, &[1, 2, 3]);
    matrix(&pods);

    let n2 = topo.node(2).gua_prefix;
    fabric::kill_bird(&mut topo, 2).unwrap();
    for n in [1, 3] {
        let ns = topo.node(n).netns.clone();
        let t = fabric::wait_until(Duration::from_secs(u64::from(HOLD)), || {
            fabric::kernel_route(&topo, &ns, &n2).is_ok_and(|(h, _)| h.is_empty())
        })
        .unwrap_or_else(|_| panic!("node {n} still routes to node 2's {n2}"));
        println!(
            "MEASURE bgp-mesh-kill-bird: node {n} withdrew node 2 after {:.0} ms",
            t.as_secs_f64() * 1e3
        );
    }
    matrix(&[pods.remove(0), pods.remove(1)]);
}

/// A daemon must not outlive the lab: its namespace would live on with it.
/// Dropping the topology ends it, and so does removing a kept topology by
/// its manifest (`cni6 demo --cleanup`).
#[test]
fn daemons_end_with_the_topology() {
    let alive = |pid: u64| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
    };
    let pids = |manifest: &std::path::Path| -> Vec<u64> {
        topology::read_manifest(manifest).unwrap()["daemons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["pid"].as_u64().unwrap())
            .collect()
    };
    for kept in [false, true] {
        let (mut topo, _) = build("c6bgd", 1);
        let conf = bird_config(&topo, 1, &[]);
        fabric::start_bird(&mut topo, 1, &conf).expect("bird");
        let manifest = topo.dir().join("manifest.json");
        let before = pids(&manifest);
        assert_eq!(before.len(), 1);
        assert!(alive(before[0]));
        let base = topo.base().to_string();
        if kept {
            let m = topo.keep();
            topology::remove_by_manifest(&m).expect("remove by manifest");
        } else {
            drop(topo);
        }
        fabric::wait_until(Duration::from_secs(5), || !alive(before[0]))
            .unwrap_or_else(|_| panic!("BIRD {} outlived its topology (kept: {kept})", before[0]));
        assert!(Topology::existing_namespaces(&base).unwrap().is_empty());
    }
}
