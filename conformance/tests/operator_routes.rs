//! `cni6 routes` feeds the fabric: a three-node topology built WITHOUT the
//! fixture's hand-written routes, where pods of different nodes cannot
//! reach each other, until each node applies the `ip -6 route` lines
//! `cni6 routes --self <node>` prints for it; then TCP works between every
//! pair of nodes over ULA and GUA. The BIRD form passes `bird -p` (the
//! seeds' routers run BIRD 2) and a broken one does not.
//!
//! Needs root, bird2 (scripts/install-deps.sh) and built binaries.

use conformance::harness::{self, TempDir};
use conformance::topology::{self, Binaries, Spec, Topology};
use std::process::Command;
use std::time::Duration;

fn node_args(topo: &Topology) -> Vec<String> {
    topo.nodes()
        .iter()
        .flat_map(|n| {
            [
                "--node".to_string(),
                format!(
                    "node{}={},{}@{}",
                    n.index, n.ula_prefix, n.gua_prefix, n.underlay_addr
                ),
            ]
        })
        .collect()
}

/// `cni6 routes` with `args`.
fn cni6(args: &[String]) -> String {
    let mut all = vec!["routes".to_string()];
    all.extend(args.iter().cloned());
    harness::cni6_ok(&all)
}

#[test]
fn ip_routes_from_cni6_connect_the_nodes() {
    harness::require_root();
    let bins = Binaries::from_dir(&harness::bin_dir()).unwrap_or_else(|e| panic!("{e}"));
    let mut spec = Spec::new("c6or", 3);
    spec.static_routes = false;
    let mut topo = Topology::build(spec).expect("build topology");
    topo.write_cluster_conflists().expect("conflists");
    let mut pods = Vec::new();
    for n in 1..=3 {
        let pod = topo.add_pod(n).expect("pod");
        let addrs = topo.attach(&bins, &pod).expect("attach");
        pods.push((pod, addrs));
    }

    // Without routes the fabric does not carry pod traffic between nodes.
    let (a, b) = (&pods[0], &pods[1]);
    assert!(
        topology::tcp_echo(
            &b.0.path,
            b.1.ula.addr(),
            &a.0.path,
            b"x",
            Duration::from_millis(500)
        )
        .is_err(),
        "pods reached each other before any route was installed"
    );

    let nodes = node_args(&topo);
    for node in topo.nodes() {
        let mut args = nodes.clone();
        args.extend(["--self".to_string(), format!("node{}", node.index)]);
        let script = cni6(&args);
        let lines: Vec<&str> = script.lines().collect();
        // One route per other node per prefix, never one per pod.
        assert_eq!(lines.len(), 4, "{script}");
        assert!(lines
            .iter()
            .all(|l| l.starts_with("ip -6 route replace ") && l.contains(" via fd00:fab::")));
        let out = topo
            .node_command(node.index, "sh")
            .args(["-e", "-c", &script])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "apply on node{}: {}",
            node.index,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (from, _) in &pods {
        for (to, addrs) in &pods {
            if from.node == to.node {
                continue;
            }
            for dst in [addrs.ula.addr(), addrs.gua.addr()] {
                topology::tcp_echo(
                    &to.path,
                    dst,
                    &from.path,
                    b"cni6 routes",
                    Duration::from_secs(5),
                )
                .unwrap_or_else(|e| panic!("{} -> {} [{dst}]: {e}", from.name, to.name));
            }
        }
    }
    for (pod, _) in &pods {
        topo.detach(&bins, pod).expect("detach");
    }
}

#[test]
fn bird_configuration_passes_bird_parse_check() {
    let bird = ["/usr/sbin/bird", "/usr/bin/bird"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("bird not installed: run scripts/install-deps.sh (Debian package bird2)");
    let dir = TempDir::new("c6or-bird");
    let nodes: Vec<String> = [
        "node-1=fd8c:1f0a:77e3:0:1::/80,2001:db8:7:1::/80@fd00:fab::1",
        "node-2=fd8c:1f0a:77e3:0:2::/80,2001:db8:7:2::/80@fd00:fab::2",
        "node-3=fd8c:1f0a:77e3:0:3::/80,2001:db8:7:3::/80@fd00:fab::3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let file = dir.join("nodes.txt");
    std::fs::write(&file, format!("# the fabric\n{}\n", nodes.join("\n"))).unwrap();
    let conf = cni6(&[
        "--nodes-file".into(),
        file.display().to_string(),
        "--format".into(),
        "bird".into(),
        "--self".into(),
        "node-2".into(),
    ]);
    assert!(conf.contains("route fd8c:1f0a:77e3:0:2::/80 blackhole;"));
    assert_eq!(conf.matches("protocol bgp ").count(), 2, "{conf}");
    let check = |text: &str| {
        let path = dir.join("bird.conf");
        std::fs::write(&path, text).unwrap();
        Command::new(bird)
            .args(["-p", "-c"])
            .arg(&path)
            .output()
            .expect("run bird -p")
    };
    let o = check(&conf);
    assert!(
        o.status.success(),
        "bird -p rejected:\n{conf}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The check is real: a broken configuration fails it.
    let broken = conf.replace("blackhole;", "blackhole");
    assert!(!check(&broken).status.success());
}
