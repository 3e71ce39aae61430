//! firewall6 in the real chain on a multi-node cluster (conformance::
//! topology): each node's conflist is docs/design.md's example — bridge6 +
//! ipam-prefix, then firewall6 with the cluster ULA /64 as clusterPrefixes
//! and 443/tcp allowed — run by `cni6` inside the node exactly as a runtime
//! would (prevResult from bridge6, cached result for CHECK/DEL). An
//! "outside" host sits on the fabric with 2001:db8:ffff::2, outside
//! clusterPrefixes, and routes to the nodes' GUA /80s.
//!
//! Needs root and built binaries (CNI6_BIN_DIR, default target/release).

use conformance::firewall_helpers::{Listener, PREFIX};
use conformance::harness::{self, Netns};
use conformance::topology::{self, Binaries, PodAddresses, Spec, Topology};
use serde_json::{json, Value};
use std::net::Ipv6Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const T: Duration = Duration::from_millis(2000);

fn add_firewall6(topo: &Topology, node: u16) {
    let path = topo.conflist_path(node);
    let mut list: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    list["plugins"].as_array_mut().unwrap().push(json!({
        "type": "firewall6",
        "clusterPrefixes": [topo.spec().cluster.to_string()],
        "ingress": "cluster-only",
        "allowPorts": [ { "port": 443, "protocol": "tcp" } ]
    }));
    std::fs::write(&path, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
}

/// The node's rules, raw table then filter.
fn node_rules(topo: &Topology, node: u16) -> Vec<String> {
    let mut lines = Vec::new();
    for table in ["raw", "filter"] {
        let out = topology::run({
            let mut c = topo.node_command(node, "/usr/sbin/ip6tables");
            c.args(["-w", "-t", table, "-S"]);
            c
        })
        .expect("ip6tables -S in node");
        lines.extend(out.lines().map(str::to_string));
    }
    lines
}

fn pod_tagged(topo: &Topology, node: u16) -> Vec<String> {
    node_rules(topo, node)
        .into_iter()
        .filter(|l| l.contains("firewall6 net=cluster if=eth0 id="))
        .collect()
}

fn cni6_check(topo: &Topology, bins: &Binaries, pod: &topology::Pod) -> std::process::Output {
    let mut cmd = topo.node_command(pod.node, &bins.cni6);
    cmd.arg("check")
        .arg("--conflist")
        .arg(topo.conflist_path(pod.node))
        .arg("--netns")
        .arg(&pod.path)
        .args(["--id", &pod.name, "--ifname", "eth0"])
        .arg("--cni-path")
        .arg(
            bins.cni_path
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":"),
        )
        .arg("--cache-dir")
        .arg(topo.cache_dir(pod.node));
    cmd.output().expect("run cni6 check")
}

/// The outside host: a namespace of ours with a veth into the fabric
/// bridge, the link address fd00:fab::99 and 2001:db8:ffff::2, routes to
/// every node's GUA /80 via that node; each node routes the outside /64
/// back over the fabric. Removed with the namespace (the veth goes too).
fn outside_host(topo: &Topology) -> (Netns, Ipv6Addr) {
    let ns = Netns::new(PREFIX);
    let (a, b) = (
        format!("f6x{}", std::process::id()),
        format!("f6y{}", std::process::id()),
    );
    let under = topo.underlay_netns().to_string();
    let ip = |args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &under, "ip"]).args(args);
        topology::run(c).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    };
    ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    ip(&["link", "set", &b, "netns", ns.name()]);
    ip(&["link", "set", &a, "master", topo.fabric_bridge()]);
    ip(&["link", "set", &a, "up"]);
    ns.exec_ok(&["sysctl", "-qw", &format!("net.ipv6.conf.{b}.accept_dad=0")]);
    ns.exec_ok(&["ip", "link", "set", &b, "name", "eth0"]);
    ns.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    ns.add_addr("eth0", "fd00:fab::99/64");
    ns.add_addr("eth0", "2001:db8:ffff::2/128");
    for node in topo.nodes() {
        ns.exec_ok(&[
            "ip",
            "-6",
            "route",
            "add",
            &node.gua_prefix.to_string(),
            "via",
            &node.underlay_addr.to_string(),
        ]);
        topology::run({
            let mut c = topo.node_command(node.index, "ip");
            c.args([
                "-6",
                "route",
                "add",
                "2001:db8:ffff::2/128",
                "via",
                "fd00:fab::99",
            ]);
            c
        })
        .expect("route to the outside host");
    }
    (ns, "2001:db8:ffff::2".parse().unwrap())
}

#[test]
fn bridge6_then_firewall6_across_two_nodes() {
    harness::require_root();
    let bin_dir = harness::bin_dir();
    assert!(
        bin_dir.join("firewall6").is_file(),
        "build firewall6 into {}",
        bin_dir.display()
    );
    let bins = Binaries::from_dir(&bin_dir).unwrap_or_else(|e| panic!("{e}"));
    let mut topo = Topology::build(Spec::new("fwm", 2)).expect("build topology");
    topo.write_cluster_conflists().expect("conflists");
    add_firewall6(&topo, 1);
    add_firewall6(&topo, 2);
    let (outside, outside_addr) = outside_host(&topo);

    let pa = topo.add_pod(1).unwrap();
    let pb = topo.add_pod(1).unwrap();
    let pc = topo.add_pod(2).unwrap();
    let attach = |p: &topology::Pod| -> PodAddresses {
        topo.attach(&bins, p)
            .unwrap_or_else(|e| panic!("attach {}: {e}", p.name))
    };
    let (a, b, c) = (attach(&pa), attach(&pb), attach(&pc));
    let (ap, bp, cp) = (pa.path.as_path(), pb.path.as_path(), pc.path.as_path());

    // The chain ran: firewall6 rules for the node's pods, in the buckets
    // bridge6's veth names select, and CHECK through the runtime passes.
    assert_eq!(
        pod_tagged(&topo, 1).len(),
        10,
        "{:#?}",
        node_rules(&topo, 1)
    );
    assert_eq!(pod_tagged(&topo, 2).len(), 5);
    assert!(pod_tagged(&topo, 1)
        .iter()
        .any(|l| l.starts_with("-A CNI6-S-") && l.contains("--mac-source")));
    for p in [&pa, &pb, &pc] {
        let out = cni6_check(&topo, &bins, p);
        assert!(
            out.status.success(),
            "cni6 check {}: {}{}",
            p.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let probe = |server: &Path, addr: Ipv6Addr, port: u16, client: &Path, src: Option<Ipv6Addr>| {
        Listener::new(server, addr, port).probe_retry(client, src, T, 2)
    };
    // Outside → pod GUA: port 8081 refused, 443 open.
    assert!(probe(ap, a.gua.addr(), 8081, outside.path(), Some(outside_addr)).is_err());
    assert_eq!(
        probe(ap, a.gua.addr(), 443, outside.path(), Some(outside_addr)).unwrap(),
        outside_addr
    );
    // Pod → outside, and the reply comes back.
    assert_eq!(
        probe(outside.path(), outside_addr, 9000, ap, Some(a.gua.addr())).unwrap(),
        a.gua.addr()
    );
    // Pod on node 2 → pod on node 1 over ULA (inside the cluster): any port.
    assert_eq!(
        probe(ap, a.ula.addr(), 8082, cp, Some(c.ula.addr())).unwrap(),
        c.ula.addr()
    );
    // Over GUA it counts as outside (GUA prefixes not in clusterPrefixes).
    assert!(probe(ap, a.gua.addr(), 8083, cp, Some(c.gua.addr())).is_err());
    // Same node, same bridge, ULA: fine.
    assert_eq!(
        probe(bp, b.ula.addr(), 8084, ap, Some(a.ula.addr())).unwrap(),
        a.ula.addr()
    );

    // Spoofing: pod a takes an unused address of its node's pod range and
    // sends from it: reaches neither b (bridge) nor c (routed) nor outside.
    let foreign = Ipv6Addr::from(u128::from(a.ula.addr()) + 0x777);
    topology::run({
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &pa.name, "ip", "-6", "addr", "add"])
            .arg(format!("{foreign}/128"))
            .args(["dev", "eth0", "nodad"]);
        cmd
    })
    .expect("add foreign address");
    assert!(probe(bp, b.ula.addr(), 8085, ap, Some(foreign)).is_err());
    assert!(probe(cp, c.ula.addr(), 8086, ap, Some(foreign)).is_err());
    assert!(probe(outside.path(), outside_addr, 9001, ap, Some(foreign)).is_err());

    // Detach through the runtime: every pod rule gone, the skeleton stays.
    for p in [&pa, &pb, &pc] {
        topo.detach(&bins, p)
            .unwrap_or_else(|e| panic!("detach {}: {e}", p.name));
    }
    assert!(
        pod_tagged(&topo, 1).is_empty(),
        "{:#?}",
        node_rules(&topo, 1)
    );
    assert!(pod_tagged(&topo, 2).is_empty());
    assert!(node_rules(&topo, 1)
        .iter()
        .any(|l| l.contains("-j CNI6-FORWARD")));
    drop(outside);
}
