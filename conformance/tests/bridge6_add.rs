//! bridge6 ADD → CHECK → DEL at every advertised version, black-box, with
//! the plugin running inside a node namespace (never the machine's own).
//! Kernel state is read back with `ip -j`; expectations come from the
//! address plan and sha256sum, not from the plugin.

use conformance::bridge_helpers::{self as bh, BridgeNet, Node};
use conformance::harness::{self, ALL_VERSIONS};
use conformance::ipam;
use std::net::{IpAddr, Ipv6Addr};

/// One full lifecycle at `version`; returns nothing, asserts everything.
fn lifecycle(version: &str) {
    let node = Node::new();
    let pod = bh::new_pod();
    let dns =
        serde_json::json!({"nameservers": ["fd8c:1f0a:77e3::a"], "search": ["svc.cluster.local"]});
    let net = BridgeNet::new("cluster0")
        .key("mtu", serde_json::json!(1420))
        .key("dns", dns.clone());
    let cid = harness::container_id("b6add");

    // conformance.md #18, 20, 24, 58-63
    let out = net.add(&node, version, &cid, &pod, "eth0");
    let r = out.assert_ok().clone();
    // The port forwarded in time (nothing logged about it).
    assert!(
        !out.stderr.contains("not carrying traffic"),
        "{}",
        out.stderr
    );
    let addrs = bh::assert_result_schema(&r, version, &pod.path_str(), "eth0");

    // conformance.md #15: the config's dns is in the result.
    assert_eq!(r["dns"], dns, "{r}");

    // One address per pod range, same interface id, first pod slot ::10.
    let ranges = net.ipam.pod_ranges();
    assert_eq!(addrs.len(), ranges.len(), "{r}");
    for (a, range) in addrs.iter().zip(&ranges) {
        assert_eq!(a.prefix_len(), 96);
        assert!(range.contains(&a.addr()), "{a} in {range}");
        assert_eq!(ipam::slot_of(*range, a.addr()), ipam::FIRST_SLOT);
        let gw: Ipv6Addr = r["ips"]
            .as_array()
            .unwrap()
            .iter()
            .find(|ip| ip["address"] == a.to_string())
            .and_then(|ip| ip["gateway"].as_str())
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(gw, ipam::gateway(*range));
    }

    // Result names: bridge, derived host veth, pod interface.
    let host = net.host_veth(&cid, "eth0");
    assert_eq!(r["interfaces"][0]["name"], "cluster0");
    assert_eq!(r["interfaces"][1]["name"], host.as_str());

    // The pod interface: up, MTU, exactly the result's addresses (NODAD,
    // never tentative), MAC as reported.
    let eth0 = bh::link(&pod, "eth0").expect("eth0 exists in the pod");
    assert!(
        eth0["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{eth0}"
    );
    assert_eq!(eth0["operstate"], "UP", "{eth0}");
    assert_eq!(eth0["mtu"], 1420);
    assert_eq!(eth0["address"], r["interfaces"][2]["mac"]);
    let have = bh::global_addrs6(&pod, "eth0");
    for a in &addrs {
        let got = have
            .iter()
            .find(|h| h.addr == a.addr() && h.prefix_len == a.prefix_len())
            .unwrap_or_else(|| panic!("{a} not on eth0: {have:?}"));
        assert!(
            !got.flags
                .iter()
                .any(|f| f == "tentative" || f == "dadfailed"),
            "{got:?}"
        );
    }
    assert_eq!(
        have.len(),
        addrs.len(),
        "no extra global addresses: {have:?}"
    );

    // Sysctls in the pod, set before the addresses (conformance.md §3 #1, #10).
    for (k, v) in [
        ("accept_dad", "0"),
        ("accept_ra", "0"),
        ("autoconf", "0"),
        ("keep_addr_on_down", "1"),
    ] {
        assert_eq!(bh::sysctl(&pod, "eth0", k), v, "pod eth0 {k}");
    }

    // Default route via the first (ULA) gateway, and in the result.
    let defaults = bh::default_routes(&pod);
    assert_eq!(defaults.len(), 1, "{defaults:?}");
    let ula_gw = ipam::gateway(ranges[0]);
    assert_eq!(defaults[0]["gateway"], ula_gw.to_string());
    assert_eq!(defaults[0]["dev"], "eth0");
    let routes = r["routes"].as_array().expect("routes in result");
    assert!(routes
        .iter()
        .any(|rt| rt["dst"] == "::/0" && rt["gw"] == ula_gw.to_string()));

    // Host side: bridge up with the fixed MAC of the result, gateways
    // without DAD; host veth up, enslaved, hairpin, MTU, accept_ra=0.
    let br = bh::link(&node.ns, "cluster0").expect("bridge exists");
    assert_eq!(br["linkinfo"]["info_kind"], "bridge");
    assert_eq!(br["address"], r["interfaces"][0]["mac"]);
    assert_eq!(br["mtu"], 1420);
    let br_addrs = bh::global_addrs6(&node.ns, "cluster0");
    for range in &ranges {
        let gw = ipam::gateway(*range);
        let a = br_addrs
            .iter()
            .find(|a| a.addr == gw)
            .unwrap_or_else(|| panic!("gateway {gw} not on bridge: {br_addrs:?}"));
        assert_eq!(a.prefix_len, 96);
        assert!(a.flags.iter().any(|f| f == "nodad"), "{a:?}");
        assert!(!a.flags.iter().any(|f| f == "tentative"), "{a:?}");
    }
    assert_eq!(node.sysctl("cluster0", "accept_ra"), "0");
    // Its link-local address is usable at once too: the node solicits pod
    // neighbours from it when it forwards traffic to them.
    let ll: Vec<_> = bh::addrs6(&node.ns, "cluster0")
        .into_iter()
        .filter(|a| a.scope == "link")
        .collect();
    assert_eq!(ll.len(), 1, "{ll:?}");
    assert!(!ll[0].flags.iter().any(|f| f == "tentative"), "{ll:?}");
    let hv = bh::link(&node.ns, &host).expect("host veth exists");
    assert_eq!(hv["master"], "cluster0");
    assert_eq!(hv["mtu"], 1420);
    assert_eq!(hv["operstate"], "UP");
    assert_eq!(hv["linkinfo"]["info_slave_data"]["hairpin"], true, "{hv}");
    assert_eq!(
        hv["linkinfo"]["info_slave_data"]["state"], "forwarding",
        "{hv}"
    );
    // Pods share no layer 2: the port is isolated, locked, learns nothing
    // and floods no unknown unicast; the pod's MAC is its static entry.
    let slave = &hv["linkinfo"]["info_slave_data"];
    for (flag, want) in [
        ("isolated", true),
        ("locked", true),
        ("learning", false),
        ("flood", false),
    ] {
        assert_eq!(slave[flag], want, "{flag}: {hv}");
    }
    let fdb = node.ns.exec_ok(&["bridge", "fdb", "show", "brport", &host]);
    let pod_mac = r["interfaces"][2]["mac"].as_str().unwrap();
    assert!(
        fdb.lines()
            .any(|l| l.starts_with(pod_mac) && l.contains("static")),
        "no static FDB entry for {pod_mac}: {fdb}"
    );
    assert_eq!(hv["address"], r["interfaces"][1]["mac"]);
    assert_eq!(node.sysctl(&host, "disable_ipv6"), "1");
    assert_eq!(node.sysctl("all", "forwarding"), "1");

    // Traffic: the pod reaches its gateway from its ULA address (RFC 6724
    // prefers ULA→ULA), and the GUA gateway too.
    let peer = bh::tcp_round_trip(&pod, &node.ns, ula_gw);
    assert_eq!(peer.ip(), IpAddr::V6(addrs[0].addr()));
    let gua_gw = ipam::gateway(ranges[1]);
    let peer = bh::tcp_round_trip(&pod, &node.ns, gua_gw);
    assert_eq!(peer.ip(), IpAddr::V6(addrs[1].addr()));

    // The pod taking its link down and up keeps the addresses; only the
    // routes via the link need the runtime (CHECK then reports them).
    pod.exec_ok(&["ip", "link", "set", "eth0", "down"]);
    pod.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    let kept = bh::global_addrs6(&pod, "eth0");
    assert_eq!(
        kept.len(),
        addrs.len(),
        "addresses lost on down/up: {kept:?}"
    );
    // No route covers the gateway (addresses carry no prefix route, so
    // pods reach even their own range through it): onlink, as bridge6 does.
    for (dst, gw) in [
        ("default".to_string(), ula_gw),
        (ranges[0].to_string(), ula_gw),
        (ranges[1].to_string(), gua_gw),
    ] {
        pod.exec_ok(&[
            "ip",
            "-6",
            "route",
            "replace",
            &dst,
            "via",
            &gw.to_string(),
            "dev",
            "eth0",
            "onlink",
        ]);
    }

    // CHECK right after ADD (conformance.md #36), from 0.4.0.
    if harness::versions_with_check().contains(&version) {
        net.check(&node, version, &cid, &pod, "eth0", &r)
            .assert_silent_ok();
    }

    // DEL x3 (conformance.md #25, 26): everything of the attachment goes, the
    // bridge and its gateways stay.
    for _ in 0..3 {
        net.del(&node, version, &cid, &pod.path_str(), "eth0")
            .assert_silent_ok();
    }
    assert!(bh::link(&pod, "eth0").is_none(), "eth0 left in the pod");
    assert!(bh::link(&node.ns, &host).is_none(), "host veth left");
    assert!(net.ipam.store().is_empty(), "IPAM record left");
    assert!(bh::link(&node.ns, "cluster0").is_some(), "bridge must stay");
    assert_eq!(bh::global_addrs6(&node.ns, "cluster0").len(), ranges.len());
}

#[test]
fn lifecycle_0_3_0() {
    lifecycle("0.3.0");
}

#[test]
fn lifecycle_0_3_1() {
    lifecycle("0.3.1");
}

#[test]
fn lifecycle_0_4_0() {
    lifecycle("0.4.0");
}

#[test]
fn lifecycle_1_0_0() {
    lifecycle("1.0.0");
}

#[test]
fn lifecycle_1_1_0() {
    lifecycle("1.1.0");
}

#[test]
fn version_lists_every_version() {
    // conformance.md #40, 41: VERSION lists exactly what the lifecycle tests prove.
    let node = Node::new();
    let out = harness::Invocation::new(node.bin("bridge6"), "VERSION")
        .stdin(r#"{"cniVersion":"1.0.0"}"#)
        .run();
    let v = out.assert_ok();
    let listed: Vec<&str> = v["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(listed, ALL_VERSIONS);
}

#[test]
fn defaults_bridge_mtu_and_second_pod_reuses_bridge() {
    // No `bridge`, no `mtu`: bridge cni6br0, MTU of the node's default-route
    // interface (here a veth with MTU 1400 carrying a default route).
    let node = Node::new();
    node.ns.add_veth("c6bup", "c6bupp");
    node.ns
        .exec_ok(&["ip", "link", "set", "c6bup", "mtu", "1400"]);
    node.ns.add_addr("c6bup", "fd00:c6b::2/64");
    node.ns.exec_ok(&[
        "ip",
        "-6",
        "route",
        "add",
        "default",
        "via",
        "fd00:c6b::1",
        "dev",
        "c6bup",
    ]);
    let mut net = BridgeNet::new("unused");
    net.bridge = String::new();
    let conf = {
        let mut c = net.conf("1.0.0");
        c.as_object_mut().unwrap().remove("bridge");
        c
    };
    let pods = [bh::new_pod(), bh::new_pod()];
    let mut results = Vec::new();
    for (i, pod) in pods.iter().enumerate() {
        let cid = format!("b6def{i}{}", std::process::id());
        let out = harness::Invocation::attachment(
            node.bin("bridge6"),
            "ADD",
            &cid,
            &pod.path_str(),
            "eth0",
        )
        .stdin_json(&conf)
        .in_netns(&node.ns)
        .run();
        let r = out.assert_ok().clone();
        assert_eq!(r["interfaces"][0]["name"], "cni6br0");
        assert_eq!(bh::link(pod, "eth0").unwrap()["mtu"], 1400);
        results.push((cid, r));
    }
    // Same bridge, same MAC, two ports; pods reach each other through it.
    assert_eq!(results[0].1["interfaces"][0], results[1].1["interfaces"][0]);
    let b_addr = ipam::result_addrs(&results[1].1)[0].addr();
    let peer = bh::tcp_round_trip(&pods[0], &pods[1], b_addr);
    assert_eq!(
        peer.ip(),
        IpAddr::V6(ipam::result_addrs(&results[0].1)[0].addr())
    );
    // The uplink's accept_ra was raised 1 -> 2 before forwarding went on.
    assert_eq!(node.sysctl("c6bup", "accept_ra"), "2");
    assert_eq!(node.sysctl("default", "accept_ra"), "2");
    assert_eq!(node.sysctl("all", "forwarding"), "1");
    for (cid, _) in &results {
        harness::Invocation::attachment(node.bin("bridge6"), "DEL", cid, "", "eth0")
            .stdin_json(&conf)
            .in_netns(&node.ns)
            .run()
            .assert_silent_ok();
    }
    assert!(net.ipam.store().is_empty());
}

#[test]
fn requested_mac_is_applied_or_refused() {
    // conformance.md #16, 73, 74: args.cni.mac wins over CNI_ARGS MAC=; a bad
    // one is refused before anything is allocated.
    let node = Node::new();
    let pod = bh::new_pod();
    let net = BridgeNet::new("brmac").key(
        "args",
        serde_json::json!({"cni": {"mac": "02:c6:00:00:00:42"}}),
    );
    let cid = harness::container_id("b6mac");
    let out = net
        .call(&node, "ADD", "1.0.0", &cid, &pod.path_str(), "eth0")
        .args("MAC=02:c6:00:00:00:01")
        .run();
    let r = out.assert_ok();
    assert_eq!(r["interfaces"][2]["mac"], "02:c6:00:00:00:42");
    assert_eq!(
        bh::link(&pod, "eth0").unwrap()["address"],
        "02:c6:00:00:00:42"
    );
    net.check(&node, "1.0.0", &cid, &pod, "eth0", r)
        .assert_silent_ok();
    net.del(&node, "1.0.0", &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();

    let plain = BridgeNet::new("brmac");
    let out = plain
        .call(&node, "ADD", "1.0.0", &cid, &pod.path_str(), "eth0")
        .args("MAC=01:00:5e:00:00:01")
        .run();
    out.assert_error(4);
    assert!(out.msg().contains("MAC=01:00:5e:00:00:01"), "{}", out.msg());
    assert!(plain.ipam.store().is_empty());
    assert!(bh::link(&pod, "eth0").is_none());
}

#[test]
fn pod_namespace_with_ipv6_off_by_default() {
    // Some runtimes create pod namespaces with default/disable_ipv6=1: the
    // pod interface then starts without IPv6. bridge6 turns it on for its
    // own interface only.
    let node = Node::new();
    let pod = bh::new_pod();
    pod.exec_ok(&[
        "sh",
        "-c",
        "echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
    ]);
    let net = BridgeNet::new("brv6off");
    let cid = harness::container_id("b6off");
    let r = net
        .add(&node, "1.0.0", &cid, &pod, "eth0")
        .assert_ok()
        .clone();
    assert_eq!(bh::sysctl(&pod, "eth0", "disable_ipv6"), "0");
    assert_eq!(
        bh::sysctl(&pod, "default", "disable_ipv6"),
        "1",
        "pod default untouched"
    );
    let gw = ipam::gateway(net.ipam.pod_ranges()[0]);
    let peer = bh::tcp_round_trip(&pod, &node.ns, gw);
    assert_eq!(peer.ip(), IpAddr::V6(ipam::result_addrs(&r)[0].addr()));
    net.del(&node, "1.0.0", &cid, &pod.path_str(), "eth0")
        .assert_silent_ok();
}

/// MLDv2 reports the node's own stack has sent (all its interfaces).
fn node_mld_reports(node: &Node) -> u64 {
    let snmp = node.ns.exec_ok(&["cat", "/proc/net/snmp6"]);
    snmp.lines()
        .find_map(|l| l.strip_prefix("Icmp6OutMLDv2Reports"))
        .map(|v| v.trim().parse().unwrap())
        .expect("Icmp6OutMLDv2Reports in /proc/net/snmp6")
}

/// The counter once it stopped moving for longer than the kernel's
/// unsolicited report interval (1 s).
fn settled_mld_reports(node: &Node) -> u64 {
    let mut last = node_mld_reports(node);
    for _ in 0..10 {
        std::thread::sleep(std::time::Duration::from_millis(1300));
        let now = node_mld_reports(node);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the node kept sending MLD reports");
}

#[test]
fn a_pod_joining_an_existing_bridge_sends_no_multicast_report_from_it() {
    // Issue 7: any RTM_NEWADDR on an up device, even one refused with
    // EEXIST, makes the kernel re-announce all the device's multicast
    // groups: two MLDv2 reports from the bridge, flooded to every port
    // and into every pod. A gateway already on the bridge is therefore
    // not added again. The bridge ports have IPv6 off, so after the
    // first pod the node sends no report at all.
    let node = Node::new();
    let net = BridgeNet::new("c6bmld0");
    let pods = [bh::new_pod(), bh::new_pod()];
    let cids: Vec<String> = (0..2)
        .map(|i| format!("b6mld{i}{}", std::process::id()))
        .collect();
    net.add(&node, "1.0.0", &cids[0], &pods[0], "eth0")
        .assert_ok();
    let before = settled_mld_reports(&node);
    assert!(before > 0, "the bridge announced its groups once");
    net.add(&node, "1.0.0", &cids[1], &pods[1], "eth0")
        .assert_ok();
    assert_eq!(settled_mld_reports(&node), before);
    for (cid, pod) in cids.iter().zip(&pods) {
        net.del(&node, "1.0.0", cid, &pod.path_str(), "eth0")
            .assert_silent_ok();
    }
}
