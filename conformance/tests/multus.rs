//! multus' calling pattern on cni6 (issue 5). multus is not packaged here,
//! so its delegate calls are made by cni_common's libcni-like runtime,
//! exactly as multus makes them through libcni: the cluster network on
//! `eth0`, then each NetworkAttachmentDefinition as a delegate on
//! `net1`, `net2`, … with the same container id and K8S_* CNI_ARGS; a
//! delegate may be a conflist or a single-plugin `.conf` object, at any
//! version (here 0.3.1 and 1.0.0); `runtimeConfig` carries the pod's
//! requested `ips` and `mac` to the plugins that declare those capabilities
//! (cni6: `ips` by ipam-prefix, `mac` by bridge6, both declared on the
//! bridge6 object, whose config ipam-prefix receives as delegate); on pod
//! deletion multus runs every delegate's DEL, often after the pod's netns
//! is already gone.

use cni_common::runtime::{ConfList, Runtime, RuntimeConf};
use conformance::harness::{Netns, TempDir};
use conformance::realruntime::{
    firewall_rules_of, host_veths_of, in_netns, install_plugins, records_of, Cni6Net,
};
use serde_json::{json, Value};
use std::net::Ipv6Addr;
use std::path::PathBuf;

const POD_NS: &str = "tenant-a";
const POD_NAME: &str = "db-0";

/// One delegate: its ifname, its configuration and the network it makes.
struct Delegate {
    ifname: &'static str,
    list: ConfList,
    net: Cni6Net,
}

struct Node {
    node: Netns,
    dir: TempDir,
    rt: Runtime,
}

impl Node {
    fn new() -> Node {
        let node = Netns::new("c6mu");
        let dir = TempDir::new("c6mu");
        install_plugins(&dir.join("bin"));
        let rt = Runtime::new(vec![dir.join("bin")]).with_cache_dir(dir.join("cache"));
        Node { node, dir, rt }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("ipam")
    }

    /// multus' delegates for one pod: the cluster network (1.0.0 conflist,
    /// full chain), a 0.3.1 single-plugin `.conf` (bridge6 alone:
    /// firewall6 starts at 0.4.0) and a 1.0.0 conflist whose bridge6
    /// declares the `ips` and `mac` capabilities.
    fn delegates(&self) -> Vec<Delegate> {
        let data = self.data_dir();
        let cluster = Cni6Net::new("c6mu-cluster", 20);
        let n1 = Cni6Net::new("c6mu-net1", 21);
        let n2 = Cni6Net::new("c6mu-net2", 22);
        let conf1 = {
            let mut p = n1.bridge_plugin(&data);
            p["cniVersion"] = json!("0.3.1");
            p["name"] = json!(n1.name);
            p
        };
        let conf2 = {
            let mut p = n2.bridge_plugin(&data);
            p["capabilities"] = json!({"ips": true, "mac": true});
            json!({
                "cniVersion": "1.0.0",
                "name": n2.name,
                "plugins": [p, n2.firewall_plugin()],
            })
        };
        let parse = |v: &Value| ConfList::parse(&serde_json::to_vec(v).unwrap()).expect("parse");
        vec![
            Delegate {
                ifname: "eth0",
                list: parse(&cluster.conflist("1.0.0", &data)),
                net: cluster,
            },
            Delegate {
                ifname: "net1",
                list: parse(&conf1),
                net: n1,
            },
            Delegate {
                ifname: "net2",
                list: parse(&conf2),
                net: n2,
            },
        ]
    }
}

/// The attachment multus builds for a delegate (K8S_* args as kubelet
/// passes them to multus, which passes them on).
fn attachment(cid: &str, netns: Option<PathBuf>, ifname: &str) -> RuntimeConf {
    RuntimeConf::new(cid, netns, ifname)
        .with_arg("IgnoreUnknown", "1")
        .with_arg("K8S_POD_NAMESPACE", POD_NS)
        .with_arg("K8S_POD_NAME", POD_NAME)
        .with_arg("K8S_POD_INFRA_CONTAINER_ID", cid)
        .with_arg("K8S_POD_UID", "6f1c0a9e-0000-4000-8000-00000000c6c6")
}

fn result_addrs(result: &Value) -> Vec<Ipv6Addr> {
    result["ips"]
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
        .collect()
}

#[test]
fn delegates_net1_net2_with_versions_capabilities_and_stale_netns_del() {
    let n = Node::new();
    let pod = Netns::new("c6mp");
    let pod_path = pod.path().to_path_buf();
    let cid = conformance::harness::container_id("c6mu");
    let delegates = n.delegates();
    let wanted_mac = "02:c6:00:00:00:42";
    let wanted_ip = format!("{}/96", delegates[2].net.ula(0x42));

    // ADD, in multus' order: cluster network first, then net1, net2.
    let mut results = Vec::new();
    for d in &delegates {
        let mut att = attachment(&cid, Some(pod_path.clone()), d.ifname);
        if d.ifname == "net2" {
            att = att
                .with_capability("ips", json!([wanted_ip]))
                .with_capability("mac", json!(wanted_mac));
        }
        let r = in_netns(&n.node, || n.rt.add(&d.list, &att))
            .unwrap_or_else(|e| panic!("ADD {} ({}): {e}", d.ifname, d.list.cni_version));
        // Results come back in the delegate's own version (multus converts).
        // conformance.md #20
        assert_eq!(r["cniVersion"], d.list.cni_version.as_str(), "{r}");
        results.push(r);
    }
    // 0.3.1 results carry ips[].version. conformance.md #59
    assert!(results[1]["ips"]
        .as_array()
        .unwrap()
        .iter()
        .all(|ip| ip["version"] == "6"));

    for (d, r) in delegates.iter().zip(&results) {
        let addrs = result_addrs(r);
        assert_eq!(addrs.len(), 2, "{}: {r}", d.ifname);
        assert!(addrs.iter().any(|a| d.net.in_ula_range(*a)), "{r}");
        assert!(addrs.iter().any(|a| d.net.in_gua_range(*a)), "{r}");
        let shown = pod.exec_ok(&["ip", "-6", "-o", "addr", "show", "dev", d.ifname]);
        for a in &addrs {
            assert!(shown.contains(&format!("{a}/96")), "{}: {shown}", d.ifname);
        }
        // The pod's identity reaches the store for every delegate.
        let recs = records_of(&n.data_dir(), &d.net.name, &cid);
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0]["podNamespace"], POD_NS);
        assert_eq!(recs[0]["podName"], POD_NAME);
        assert_eq!(recs[0]["ifname"], d.ifname);
    }

    // runtimeConfig: net2 got the requested slot (in both ranges) and MAC.
    // conformance.md #71, 73
    let net2 = &delegates[2].net;
    let mut got = result_addrs(&results[2]);
    got.sort();
    let mut want = vec![net2.ula(0x42), net2.gua(0x42)];
    want.sort();
    assert_eq!(got, want, "runtimeConfig.ips honoured: {}", results[2]);
    let link = pod.exec_ok(&["ip", "-o", "link", "show", "dev", "net2"]);
    assert!(
        link.contains(wanted_mac),
        "runtimeConfig.mac honoured: {link}"
    );

    // One default route, the cluster network's: delegates add none.
    let defaults = pod.exec_ok(&["ip", "-6", "route", "show", "default"]);
    assert_eq!(defaults.lines().count(), 1, "{defaults}");
    assert!(defaults.contains("dev eth0"), "{defaults}");

    // Each delegate's network works: the pod reaches net2's gateway on net2.
    let gw = net2.ula_gateway().to_string();
    let ping = pod.exec(&["/bin/busybox", "ping", "-6", "-c", "1", "-W", "2", &gw]);
    assert!(
        ping.status.success(),
        "ping {gw}: {}",
        String::from_utf8_lossy(&ping.stdout)
    );

    // CHECK of the 1.0.0 delegates passes.
    for d in delegates.iter().filter(|d| d.list.has_check()) {
        let att = attachment(&cid, Some(pod_path.clone()), d.ifname);
        in_netns(&n.node, || n.rt.check(&d.list, &att))
            .unwrap_or_else(|e| panic!("CHECK {}: {e}", d.ifname));
    }

    // Pod deleted: the netns goes first, multus runs DEL for every
    // delegate afterwards with the stale path, twice.
    // conformance.md #26, 27
    drop(pod);
    assert!(!pod_path.exists());
    for round in 0..2 {
        for d in delegates.iter().rev() {
            let att = attachment(&cid, Some(pod_path.clone()), d.ifname);
            in_netns(&n.node, || n.rt.del(&d.list, &att)).unwrap_or_else(|e| {
                panic!("DEL {} with stale netns (round {round}): {e}", d.ifname)
            });
        }
    }
    for d in &delegates {
        assert_eq!(
            records_of(&n.data_dir(), &d.net.name, &cid),
            Vec::<Value>::new(),
            "{}: record left",
            d.ifname
        );
        let att = attachment(&cid, None, d.ifname);
        assert!(
            !n.rt.cache_path(&d.list.name, &att).exists(),
            "{}: cache left",
            d.ifname
        );
    }
    assert_eq!(host_veths_of(&n.node, &cid), Vec::<String>::new());
    assert_eq!(firewall_rules_of(&n.node, &cid), Vec::<String>::new());
}

/// A capability the conflist does not declare is not passed on (libcni): multus' `ips` for a delegate without `capabilities`
/// leaves the allocation to ipam-prefix's own choice.
#[test]
fn undeclared_capabilities_are_not_passed() {
    // conformance.md #71
    let n = Node::new();
    let pod = Netns::new("c6mq");
    let cid = conformance::harness::container_id("c6mq");
    let net = Cni6Net::new("c6mu-undecl", 23);
    let list = ConfList::parse(&serde_json::to_vec(&net.conflist("1.0.0", &n.data_dir())).unwrap())
        .unwrap();
    let att = attachment(&cid, Some(pod.path().to_path_buf()), "net1")
        .with_capability("ips", json!([format!("{}/96", net.ula(0x77))]))
        .with_capability("mac", json!("02:c6:00:00:00:77"));
    let r = in_netns(&n.node, || n.rt.add(&list, &att)).expect("ADD");
    let addrs = result_addrs(&r);
    assert!(!addrs.contains(&net.ula(0x77)), "{r}");
    let link = pod.exec_ok(&["ip", "-o", "link", "show", "dev", "net1"]);
    assert!(!link.contains("02:c6:00:00:00:77"), "{link}");
    in_netns(&n.node, || n.rt.del(&list, &att)).expect("DEL");
    assert_eq!(
        records_of(&n.data_dir(), &net.name, &cid),
        Vec::<Value>::new()
    );
}

/// The NetworkAttachmentDefinition shown in the README works as printed
/// (only its dataDir moved into the test's directory): attached as `net1`
/// after the cluster network, with the pod's requested IP and MAC, and
/// without touching the pod's default route.
#[test]
fn readme_network_attachment_definition_works() {
    let readme = std::fs::read_to_string(conformance::harness::workspace_dir().join("README.md"))
        .expect("read README.md");
    let start = readme
        .find("kind: NetworkAttachmentDefinition")
        .expect("README shows a NetworkAttachmentDefinition");
    let body = &readme[start..];
    let config_at = body.find("config: |").expect("NAD spec.config") + "config: |".len();
    let end = body[config_at..]
        .find("```")
        .expect("end of the yaml block")
        + config_at;
    let mut nad: Value = serde_json::from_str(&body[config_at..end])
        .unwrap_or_else(|e| panic!("README NAD config is not JSON: {e}"));
    let requested = readme
        .split("\"ips\": [\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("README shows a requested ip")
        .to_string();

    let n = Node::new();
    nad["plugins"][0]["ipam"]["dataDir"] = json!(n.data_dir());
    // The NAD takes its node prefix from the node's eth0 (as every node
    // does): give this node one, node 2 of the README's cluster.
    if n.node
        .exec(&["ip", "link", "show", "eth0"])
        .status
        .success()
    {
        panic!("the node namespace already has an eth0");
    }
    n.node.exec_ok(&[
        "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p",
    ]);
    n.node.exec_ok(&["ip", "link", "set", "eth0", "up"]);
    n.node.add_addr("eth0", "fd8c:1f0a:77e3:0:2::1/80");
    let list = ConfList::parse(&serde_json::to_vec(&nad).unwrap()).expect("parse NAD config");
    let cluster = &n.delegates()[0];
    let pod = Netns::new("c6mr");
    let cid = conformance::harness::container_id("c6mr");
    let eth0 = attachment(&cid, Some(pod.path().to_path_buf()), "eth0");
    in_netns(&n.node, || n.rt.add(&cluster.list, &eth0)).expect("ADD eth0");
    let net1 = attachment(&cid, Some(pod.path().to_path_buf()), "net1")
        .with_capability("ips", json!([requested]))
        .with_capability("mac", json!("02:c6:00:00:00:42"));
    let r = in_netns(&n.node, || n.rt.add(&list, &net1)).expect("ADD the README's NAD");
    let want: Ipv6Addr = requested.split('/').next().unwrap().parse().unwrap();
    assert_eq!(result_addrs(&r), vec![want], "{r}");
    let link = pod.exec_ok(&["ip", "-o", "link", "show", "dev", "net1"]);
    assert!(link.contains("02:c6:00:00:00:42"), "{link}");
    let defaults = pod.exec_ok(&["ip", "-6", "route", "show", "default"]);
    assert_eq!(defaults.lines().count(), 1, "{defaults}");
    assert!(defaults.contains("dev eth0"), "{defaults}");
    for (list, att) in [(&list, &net1), (&cluster.list, &eth0)] {
        in_netns(&n.node, || n.rt.del(list, att)).expect("DEL");
    }
    assert_eq!(host_veths_of(&n.node, &cid), Vec::<String>::new());
    assert_eq!(firewall_rules_of(&n.node, &cid), Vec::<String>::new());
}
