//! The multi-node fixture on its own, without any plugin: the fabric
//! carries node-to-node TCP over the underlay and over the routed node
//! prefixes, every node holds exactly one route per other node per prefix,
//! and everything the fixture made is gone after it drops — also when the
//! test panics. Needs root (network namespaces).

use conformance::topology::{self, Spec, Topology};
use std::net::Ipv6Addr;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(5);

fn require_root() {
    assert!(
        nix_is_root(),
        "multi-node tests create network namespaces: run them as root"
    );
}

fn nix_is_root() -> bool {
    // SAFETY: getuid has no failure mode.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn fabric_carries_node_to_node_tcp_and_routes_node_prefixes() {
    require_root();
    let topo = Topology::build(Spec::new("c6f", 3)).expect("build topology");
    let base = topo.base().to_string();

    for a in topo.nodes() {
        // One static route per other node per prefix, nothing else routed.
        let routes = topo
            .ip(&a.netns, &["-6", "route", "show", "proto", "static"])
            .unwrap();
        let lines: Vec<&str> = routes.lines().collect();
        assert_eq!(lines.len(), 2 * (topo.nodes().len() - 1), "{routes}");
        for b in topo.nodes().iter().filter(|b| b.index != a.index) {
            for p in [b.ula_prefix, b.gua_prefix] {
                let want = format!("{p} via {} dev eth0", b.underlay_addr);
                assert!(
                    lines.iter().any(|l| l.starts_with(&want)),
                    "node {} lacks `{want}`:\n{routes}",
                    a.index
                );
            }
        }
        assert!(a.ula_prefix.addr().segments()[4] == a.index);
        assert_eq!(a.gua_prefix.prefix_len(), 80);
        assert!(a.gua_net.contains(&a.gua_prefix.network()));

        for b in topo.nodes().iter().filter(|b| b.index != a.index) {
            // Over the underlay (on-link) ...
            let x = topology::tcp_echo(
                &b.netns_path(),
                b.underlay_addr,
                &a.netns_path(),
                b"underlay",
                TIMEOUT,
            )
            .unwrap_or_else(|e| panic!("node {} -> node {} underlay: {e}", a.index, b.index));
            assert_eq!(x.peer, a.underlay_addr);
            // ... and to the node's GUA, which lies in its routed /80.
            let x = topology::tcp_echo(
                &b.netns_path(),
                b.gua_addr,
                &a.netns_path(),
                b"routed",
                TIMEOUT,
            )
            .unwrap_or_else(|e| panic!("node {} -> node {} GUA: {e}", a.index, b.index));
            assert_ne!(x.peer, Ipv6Addr::UNSPECIFIED);
            // The exchange can fail: nobody holds an address in b's ULA /80
            // yet (no plugin ran), so the routed packet finds no listener.
            let nobody = Ipv6Addr::from(u128::from(b.ula_prefix.network()) | 0x99);
            assert!(topology::tcp_echo(
                &b.netns_path(),
                nobody,
                &a.netns_path(),
                b"x",
                Duration::from_millis(300),
            )
            .is_err());
        }
    }

    // The machine's own namespace got nothing: no link with our names.
    let root_links = std::process::Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&root_links.stdout).contains(&base));

    let dir = topo.dir().to_path_buf();
    assert_eq!(Topology::existing_namespaces(&base).unwrap().len(), 4);
    topo.teardown().expect("teardown");
    assert!(Topology::existing_namespaces(&base).unwrap().is_empty());
    assert!(!dir.exists(), "{} left behind", dir.display());
}

#[test]
fn fixture_cleans_up_when_the_test_panics() {
    require_root();
    let (tx, rx) = std::sync::mpsc::channel();
    let res = std::panic::catch_unwind(move || {
        let mut topo = Topology::build(Spec::new("c6f", 2)).expect("build topology");
        topo.add_pods(1, 3).expect("pods");
        tx.send((topo.base().to_string(), topo.dir().to_path_buf()))
            .unwrap();
        panic!("deliberate failure inside a test body");
    });
    assert!(res.is_err());
    let (base, dir) = rx.recv().unwrap();
    assert!(
        Topology::existing_namespaces(&base).unwrap().is_empty(),
        "namespaces of {base} survived a panic"
    );
    assert!(!dir.exists());
}

#[test]
fn kept_topology_is_removed_by_its_manifest() {
    require_root();
    let mut topo = Topology::build(Spec::new("c6f", 2)).expect("build topology");
    topo.add_pods(2, 2).unwrap();
    topo.set_extra(serde_json::json!({"note": "kept"})).unwrap();
    let base = topo.base().to_string();
    let (ula2, pods) = (topo.node(2).ula_prefix, topo.pods().to_vec());
    let manifest = topo.keep();
    assert_eq!(Topology::existing_namespaces(&base).unwrap().len(), 5);
    assert!(Topology::kept(&Spec::new("c6f", 1).state_root).contains(&manifest));

    // A later process takes it over from the manifest ...
    let adopted = Topology::adopt(&manifest).expect("adopt");
    assert_eq!(adopted.base(), base);
    assert_eq!(adopted.node(2).ula_prefix, ula2);
    assert_eq!(adopted.pods(), &pods[..]);
    assert_eq!(adopted.extra()["note"], "kept");
    // ... and can still work in it: node 1 reaches node 2 over the fabric.
    topology::tcp_echo(
        &adopted.node(2).netns_path(),
        adopted.node(2).underlay_addr,
        &adopted.node(1).netns_path(),
        b"adopted",
        TIMEOUT,
    )
    .expect("fabric of an adopted topology");
    adopted.teardown().expect("teardown");
    assert!(Topology::existing_namespaces(&base).unwrap().is_empty());
    assert!(!manifest.exists());

    // remove_by_manifest alone also clears a kept topology.
    let topo = Topology::build(Spec::new("c6f", 1)).expect("build topology");
    let base = topo.base().to_string();
    let manifest = topo.keep();
    topology::remove_by_manifest(&manifest).expect("remove by manifest");
    assert!(Topology::existing_namespaces(&base).unwrap().is_empty());
}
