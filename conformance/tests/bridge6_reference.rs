//! bridge6 side by side with the reference `bridge` + `host-local`
//! (upstream v1.9 built by scripts/peers.sh; isGateway/isDefaultGateway, host-local ranges = our pod
//! ranges) on the same checks, where the difference is the point: the
//! gateway's DAD state, the host veth name, the neighbour advertisement.
//! Plus the ADD/DEL timing benchmark (ignored by default: run it with
//! `cargo test --release -p conformance --test bridge6_reference -- --ignored --nocapture`).

use conformance::bridge_helpers::{self as bh, BridgeNet, Node};
use conformance::harness::{self, Invocation, Output, TempDir};
use conformance::ipam;
use serde_json::Value;
use std::net::{SocketAddr, SocketAddrV6};
use std::time::{Duration, Instant};

/// 1.0.0: the newest version Debian's 1.1.1 plugins speak too, so the
/// same checks hold against either reference.
const V: &str = "1.0.0";

struct Reference {
    conf: Value,
    _data: TempDir,
}

impl Reference {
    fn new(net: &BridgeNet) -> Reference {
        let data = TempDir::new("b6ref");
        Reference {
            conf: bh::reference_conf(net, V, data.path()),
            _data: data,
        }
    }

    fn call(&self, node: &Node, cmd: &str, cid: &str, netns: &str) -> Output {
        Invocation::attachment(node.bin("bridge"), cmd, cid, netns, "eth0")
            .stdin_json(&self.conf)
            .in_netns(&node.ns)
            .run()
    }
}

fn connect_time(pod: &harness::Netns, node: &Node, gw: std::net::Ipv6Addr) -> (Duration, bool) {
    // Listen on [::]: a tentative address cannot even be bound.
    let l = bh::listen_in(&node.ns, std::net::Ipv6Addr::UNSPECIFIED);
    let to = SocketAddr::V6(SocketAddrV6::new(gw, l.local_addr().unwrap().port(), 0, 0));
    let t = Instant::now();
    let ok = bh::connect_from(pod, to).is_ok();
    (t.elapsed(), ok)
}

#[test]
fn gateway_is_usable_at_once_reference_is_tentative() {
    // conformance.md §3 #6: the reference adds the bridge gateway with DAD, so
    // right after its ADD the pod's gateway is tentative and unreachable.
    let gw = ipam::gateway(ipam::demo_net().pod_ranges()[0]);

    let node = Node::new();
    let pod = bh::new_pod();
    let net = BridgeNet::new("brref");
    let rf = Reference::new(&net);
    let cid = harness::container_id("b6ref");
    rf.call(&node, "ADD", &cid, &pod.path_str()).assert_ok();
    let a = bh::global_addrs6(&node.ns, "brref");
    let ref_gw = a
        .iter()
        .find(|x| x.addr == ipam::gateway(net.ipam.pod_ranges()[0]))
        .unwrap_or_else(|| panic!("reference gateway missing: {a:?}"));
    assert!(
        ref_gw.flags.iter().any(|f| f == "tentative"),
        "reference gateway expected tentative right after ADD: {ref_gw:?}"
    );
    let (ref_t, ref_ok) = connect_time(&pod, &node, ref_gw.addr);

    let node2 = Node::new();
    let pod2 = bh::new_pod();
    let ours = BridgeNet::new("brref");
    let cid2 = harness::container_id("b6ours");
    ours.add(&node2, V, &cid2, &pod2, "eth0").assert_ok();
    let a = bh::global_addrs6(&node2.ns, "brref");
    let our_gw = a.iter().find(|x| x.addr == gw).expect("our gateway");
    assert!(!our_gw.flags.iter().any(|f| f == "tentative"), "{our_gw:?}");
    let (our_t, our_ok) = connect_time(&pod2, &node2, gw);
    eprintln!(
        "first TCP connect to the gateway right after ADD: bridge6 {our_t:?} (ok={our_ok}), \
         reference {ref_t:?} (ok={ref_ok})"
    );
    assert!(our_ok && our_t < Duration::from_millis(500), "{our_t:?}");
    assert!(
        !ref_ok || ref_t > our_t,
        "reference connected sooner ({ref_t:?}) than bridge6 ({our_t:?})"
    );

    rf.call(&node, "DEL", &cid, &pod.path_str())
        .assert_silent_ok();
    ours.del(&node2, V, &cid2, &pod2.path_str(), "eth0")
        .assert_silent_ok();
}

#[test]
fn host_veth_name_is_derived_reference_is_random() {
    let node = Node::new();
    let pod = bh::new_pod();
    let net = BridgeNet::new("brname");
    let rf = Reference::new(&net);
    let cid = harness::container_id("b6name");
    let mut ref_names = Vec::new();
    let mut our_names = Vec::new();
    for _ in 0..2 {
        let r = rf
            .call(&node, "ADD", &cid, &pod.path_str())
            .assert_ok()
            .clone();
        ref_names.push(r["interfaces"][1]["name"].as_str().unwrap().to_string());
        rf.call(&node, "DEL", &cid, &pod.path_str())
            .assert_silent_ok();
        let r = net.add(&node, V, &cid, &pod, "eth0").assert_ok().clone();
        our_names.push(r["interfaces"][1]["name"].as_str().unwrap().to_string());
        net.del(&node, V, &cid, &pod.path_str(), "eth0")
            .assert_silent_ok();
    }
    assert!(
        ref_names.iter().all(|n| n.starts_with("veth")),
        "{ref_names:?}"
    );
    assert_ne!(ref_names[0], ref_names[1], "reference names are random");
    assert_eq!(our_names[0], our_names[1], "ours are derived");
    assert_eq!(our_names[0], net.host_veth(&cid, "eth0"));
}

#[test]
fn reference_sends_no_neighbour_advertisement() {
    // conformance.md 2.1 step 7: the reference sends no IPv6 NA; bridge6 does
    // (bridge6_multi proves ours). Same capture, same kind of pod.
    let node = Node::new();
    let net = BridgeNet::new("brnar");
    let rf = Reference::new(&net);
    let first = bh::new_pod();
    let cid1 = harness::container_id("b6nar");
    rf.call(&node, "ADD", &cid1, &first.path_str()).assert_ok();
    let cap = bh::Capture::start(&node.ns, "brnar");
    let second = bh::new_pod();
    let cid2 = harness::container_id("b6nar");
    let r = rf
        .call(&node, "ADD", &cid2, &second.path_str())
        .assert_ok()
        .clone();
    let addrs: Vec<_> = ipam::result_addrs(&r).iter().map(|a| a.addr()).collect();
    let lines = cap.collect_until(Duration::from_millis(500), |_| false);
    for a in &addrs {
        assert!(
            !lines.iter().any(|l| bh::is_na_for(l, *a)),
            "reference announced {a}?\n{}",
            lines.join("\n")
        );
    }
    for (c, p) in [(&cid1, &first), (&cid2, &second)] {
        rf.call(&node, "DEL", c, &p.path_str()).assert_silent_ok();
    }
}

fn stats(mut v: Vec<Duration>) -> String {
    v.sort();
    let n = v.len();
    let sum: Duration = v.iter().sum();
    let pct = |p: f64| v[((n as f64 - 1.0) * p).round() as usize];
    format!(
        "n={n} mean={:.2}ms p50={:.2}ms p95={:.2}ms max={:.2}ms",
        sum.as_secs_f64() * 1e3 / n as f64,
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.95).as_secs_f64() * 1e3,
        pct(1.0).as_secs_f64() * 1e3
    )
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture (release binaries)"]
fn bench_add_del_cycles_vs_reference() {
    let cycles: usize = std::env::var("CNI6_BENCH_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let node = Node::new();
    let pod = bh::new_pod();
    let net = BridgeNet::new("brbench");
    let rf = Reference::new(&net);
    let cid = harness::container_id("b6bench");
    // Warm both paths once (bridge creation, forwarding) before timing.
    net.add(&node, V, &cid, &pod, "eth0").assert_ok();
    net.del(&node, V, &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
    let ref_node = Node::new();
    let ref_pod = bh::new_pod();
    rf.call(&ref_node, "ADD", &cid, &ref_pod.path_str())
        .assert_ok();
    rf.call(&ref_node, "DEL", &cid, &ref_pod.path_str())
        .assert_silent_ok();

    let (mut base, mut our_add, mut our_del, mut ref_add, mut ref_del) =
        (vec![], vec![], vec![], vec![], vec![]);
    let timed = |f: &dyn Fn() -> Output, out: &mut Vec<Duration>| {
        let t = Instant::now();
        let o = f();
        out.push(t.elapsed());
        o
    };
    for _ in 0..cycles {
        // The cost of `ip netns exec` + process start alone, for reference.
        let t = Instant::now();
        let o = node.ns.exec(&["/bin/true"]);
        base.push(t.elapsed());
        assert!(o.status.success());
        timed(&|| net.add(&node, V, &cid, &pod, "eth0"), &mut our_add).assert_ok();
        timed(
            &|| net.del(&node, V, &cid, &pod.path_str(), "eth0"),
            &mut our_del,
        )
        .assert_silent_ok();
        timed(
            &|| rf.call(&ref_node, "ADD", &cid, &ref_pod.path_str()),
            &mut ref_add,
        )
        .assert_ok();
        timed(
            &|| rf.call(&ref_node, "DEL", &cid, &ref_pod.path_str()),
            &mut ref_del,
        )
        .assert_silent_ok();
    }
    println!("binaries: {}", harness::bin_dir().display());
    println!("ip netns exec /bin/true : {}", stats(base));
    println!("bridge6+ipam-prefix ADD : {}", stats(our_add));
    println!("bridge6+ipam-prefix DEL : {}", stats(our_del));
    println!("bridge+host-local   ADD : {}", stats(ref_add));
    println!("bridge+host-local   DEL : {}", stats(ref_del));
}
