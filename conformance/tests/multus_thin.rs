//! The real multus thin plugin (multus-cni v4.3.x, cmd/multus, built by
//! scripts/peers.sh) as the runtime's network, delegating to cni6.
//!
//! The runtime is upstream `cnitool` (libcni) with kubelet's CNI_ARGS; its
//! one network is a conflist holding `multus` alone. Without a Kubernetes
//! API multus runs its `delegates` in order: the first (the cni6 cluster
//! conflist) on CNI_IFNAME `eth0`, the second (a cni6 network of its own
//! subnetId without a default route) on `net1`, each through its own libcni
//! with IgnoreUnknown=true and K8S_POD_* in CNI_ARGS. It returns the first
//! delegate's result, caches the delegates it used in its `cniDir`, and
//! runs their DELs from that cache (so DEL works after the netns is gone).

use cni_common::runtime::{ConfList, Runtime, RuntimeConf};
use conformance::harness::{self, Invocation, Netns};
use conformance::realruntime::{
    describe, firewall_rules_of, host_veths_of, in_netns, records_of, retry, store_records,
    Cni6Net, PeerNode,
};
use serde_json::{json, Value};
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::process::Output;

const V: &str = "1.1.0";
const POD_NS: &str = "tenant-a";
const POD_NAME: &str = "db-0";
/// subnetId of the second network (the cluster network keeps 1).
const NET1_SUBNET: u16 = 2;

fn ok(what: &str, out: &Output) -> String {
    assert!(out.status.success(), "{}", describe(what, out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Pod {
    n: PeerNode,
    eth0: Cni6Net,
    net1: Cni6Net,
    multus_net: String,
    ns: Option<Netns>,
    ns_path: PathBuf,
}

impl Pod {
    /// A node whose runtime network is multus over two cni6 networks;
    /// `net1_data_dir` (when given) replaces net1's ipam dataDir.
    fn new(tag: &str, index: u8, net1_data_dir: Option<PathBuf>) -> Pod {
        let mut n = PeerNode::new(tag);
        harness::install_as(&harness::peer("multus", "multus"), &n.bin_dir(), "multus");
        let eth0 = Cni6Net::new(&format!("{tag}-cluster"), index);
        let net1 = Cni6Net::new(&format!("{tag}-net1"), index + 1);
        let mut net1_conf = net1.conflist(V, &net1_data_dir.unwrap_or_else(|| n.data_dir()));
        let ipam = &mut net1_conf["plugins"][0]["ipam"];
        ipam["subnetId"] = json!(NET1_SUBNET);
        ipam.as_object_mut().unwrap().remove("routes");
        let multus_net = harness::unique_name(&format!("{tag}-multus"));
        let conf = json!({
            "cniVersion": V,
            "name": multus_net,
            "plugins": [ {
                "type": "multus",
                "cniDir": n.dir.join("multus"),
                "binDir": n.bin_dir(),
                "logToStderr": true,
                "delegates": [ eth0.conflist(V, &n.data_dir()), net1_conf ],
            } ],
        });
        n.network("00-multus.conflist", &conf);
        let ns = Netns::new(&format!("{tag}p"));
        let ns_path = ns.path().to_path_buf();
        Pod {
            n,
            eth0,
            net1,
            multus_net,
            ns: Some(ns),
            ns_path,
        }
    }

    fn ns(&self) -> &Netns {
        self.ns.as_ref().expect("pod netns still there")
    }

    /// kubelet's CNI_ARGS, as containerd passes them.
    fn cnitool(&self, verb: &str) -> Output {
        let args = format!(
            "IgnoreUnknown=true;K8S_POD_NAMESPACE={POD_NS};K8S_POD_NAME={POD_NAME};\
             K8S_POD_INFRA_CONTAINER_ID=infra-{POD_NAME};K8S_POD_UID=uid-{POD_NAME}"
        );
        self.n
            .cnitool_with_args(verb, &self.multus_net, &self.ns_path, &args)
    }

    /// The container id cnitool used (every record of the pod carries it).
    fn container_id(&self) -> String {
        let recs = store_records(&self.n.data_dir(), &self.eth0.name);
        assert_eq!(recs.len(), 1, "{recs:?}");
        recs[0]["containerId"].as_str().unwrap().to_string()
    }

    /// Files multus (and its delegates' libcni) left in its cniDir.
    fn multus_cache(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.n.dir.join("multus"), &mut out);
        out
    }

    fn assert_nothing_left(&self, id: &str) {
        assert_eq!(
            host_veths_of(&self.n.node, id),
            Vec::<String>::new(),
            "veths"
        );
        for net in [&self.eth0, &self.net1] {
            assert_eq!(
                records_of(&self.n.data_dir(), &net.name, id),
                Vec::<Value>::new(),
                "records of {}",
                net.name
            );
        }
        assert_eq!(
            firewall_rules_of(&self.n.node, id),
            Vec::<String>::new(),
            "rules"
        );
        assert_eq!(self.multus_cache(), Vec::<PathBuf>::new(), "multus cniDir");
        assert!(self.n.cache_of(&self.multus_net).is_empty(), "libcni cache");
    }
}

fn addrs_of(ns: &Netns, dev: &str) -> Vec<Ipv6Addr> {
    let out = ns.exec_ok(&[
        "ip", "-6", "-j", "addr", "show", "dev", dev, "scope", "global",
    ]);
    let v: Value = serde_json::from_str(&out).expect("ip -j");
    v[0]["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["local"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn ping(ns: &Netns, to: Ipv6Addr) {
    let to = to.to_string();
    let out = retry(5, || {
        ns.exec(&["/bin/busybox", "ping", "-6", "-c", "1", "-W", "2", &to])
    });
    assert!(
        out.status.success(),
        "{}",
        describe(&format!("ping {to}"), &out)
    );
}

/// net1's pod range: the node ULA /80 of its network, subnet NET1_SUBNET.
fn in_net1_ula(net1: &Cni6Net, a: Ipv6Addr) -> bool {
    let base = u128::from(net1.ula(0)) & !(0xffff_u128 << 32) | (u128::from(NET1_SUBNET) << 32);
    (u128::from(a) >> 32) == (base >> 32)
}

#[test]
fn delegates_eth0_and_net1_then_del_removes_everything() {
    let p = Pod::new("c6mt", 40, None);
    ok("cnitool status via multus", &p.cnitool("status"));
    let out = ok("cnitool add via multus", &p.cnitool("add"));
    let result: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));

    // multus returns the first delegate's (the cluster network's) result.
    let ips: Vec<Ipv6Addr> = result["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("{result}"))
        .iter()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
        .collect();
    assert_eq!(ips.len(), 2, "{result}");
    assert!(
        p.eth0.in_ula_range(ips[0]) && p.eth0.in_gua_range(ips[1]),
        "{result}"
    );

    // eth0: the cluster network's addresses and the default route.
    let eth0 = addrs_of(p.ns(), "eth0");
    assert_eq!(eth0.len(), 2, "{eth0:?}");
    assert!(eth0.contains(&ips[0]) && eth0.contains(&ips[1]));
    // net1: its own subnetId, same interface id scheme, no default route.
    let net1 = addrs_of(p.ns(), "net1");
    assert_eq!(net1.len(), 2, "{net1:?}");
    assert!(
        net1.iter().any(|a| in_net1_ula(&p.net1, *a)),
        "net1 ULA in subnet {NET1_SUBNET}: {net1:?}"
    );
    let defaults = p.ns().exec_ok(&["ip", "-6", "route", "show", "default"]);
    assert!(defaults.contains("dev eth0"), "{defaults}");
    assert!(
        !defaults.contains("dev net1"),
        "net1 must not carry a default route: {defaults}"
    );

    // Both networks recorded the pod under one container id, each with
    // its ifname and kubelet's pod identity (K8S_POD_* reached them).
    let id = p.container_id();
    for (net, ifname) in [(&p.eth0, "eth0"), (&p.net1, "net1")] {
        let recs = records_of(&p.n.data_dir(), &net.name, &id);
        assert_eq!(recs.len(), 1, "{}: {recs:?}", net.name);
        assert_eq!(recs[0]["ifname"], ifname);
        assert_eq!(recs[0]["podNamespace"], POD_NS);
        assert_eq!(recs[0]["podName"], POD_NAME);
    }
    assert_eq!(
        host_veths_of(&p.n.node, &id).len(),
        2,
        "one host veth per network"
    );
    let rules = firewall_rules_of(&p.n.node, &id);
    for net in [&p.eth0, &p.net1] {
        assert!(
            rules.iter().any(|r| r.contains(&net.name)),
            "firewall6 rules of {}: {rules:?}",
            net.name
        );
    }
    ping(p.ns(), p.eth0.ula_gateway());
    let net1_gw = Ipv6Addr::from(
        u128::from(
            net1.iter()
                .copied()
                .find(|a| in_net1_ula(&p.net1, *a))
                .unwrap(),
        ) & !0xffff_ffff
            | 1,
    );
    ping(p.ns(), net1_gw);

    ok("cnitool check via multus", &p.cnitool("check"));
    ok("cnitool status via multus", &p.cnitool("status"));
    ok("cnitool del via multus", &p.cnitool("del"));
    p.assert_nothing_left(&id);
    ok("cnitool del again", &p.cnitool("del"));
}

#[test]
fn del_after_the_pod_netns_is_gone() {
    let mut p = Pod::new("c6mg", 42, None);
    ok("cnitool add via multus", &p.cnitool("add"));
    let id = p.container_id();
    assert_eq!(host_veths_of(&p.n.node, &id).len(), 2);
    drop(p.ns.take()); // the pod's namespace goes first, as after a node reboot or a kill
    ok("cnitool del, netns gone", &p.cnitool("del"));
    p.assert_nothing_left(&id);
}

#[test]
fn a_failing_delegate_fails_the_add_and_leaves_nothing() {
    // net1's ipam dataDir is a plain file: its ADD fails after eth0's
    // succeeded; multus must undo eth0.
    let dir = harness::TempDir::new("c6mf-broken");
    let broken = dir.join("ipam-is-a-file");
    std::fs::write(&broken, "").unwrap();
    let p = Pod::new("c6mf", 44, Some(broken));
    let out = p.cnitool("add");
    assert!(
        !out.status.success(),
        "{}",
        describe("ADD with a broken net1", &out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&p.net1.name) && err.contains("ipam-is-a-file"),
        "multus names the delegate and carries ipam-prefix's message: {err}"
    );
    assert!(
        store_records(&p.n.data_dir(), &p.eth0.name).is_empty(),
        "eth0's record undone"
    );
    let links = p.n.node.exec_ok(&["ip", "-o", "link", "show"]);
    assert!(!links.contains("cni6 net="), "no host veth left: {links}");
    let pod_links = p.ns().exec_ok(&["ip", "-o", "link", "show"]);
    assert!(
        !pod_links.contains("eth0") && !pod_links.contains("net1"),
        "{pod_links}"
    );
    // firewall6 tags a pod's rules with `id=<container id>` (cnitool's
    // ids start with `cnitool-`); the network's own chains may stay.
    let rules = p.n.node.exec_ok(&["ip6tables-save"]);
    let pod_rules: Vec<&str> = rules
        .lines()
        .filter(|l| l.contains("id=cnitool-"))
        .collect();
    assert!(
        pod_rules.is_empty(),
        "firewall6 rules undone: {pod_rules:?}"
    );
    // The runtime's DEL after a failed ADD (kubelet makes it) succeeds and
    // takes multus' cached delegate list with it.
    ok("cnitool del after the failed ADD", &p.cnitool("del"));
    assert_eq!(p.multus_cache(), Vec::<PathBuf>::new(), "multus cniDir");
}

/// GC through multus: multus sends it to its first delegate only, with a
/// `cni.dev/valid-attachments` list built from its own cache (not from
/// the runtime's list). cni6 frees what that list does not name on the
/// cluster network — an attachment multus never made — keeps the pod
/// multus knows, and a stray attachment on net1 stays (no GC reached it).
#[test]
fn gc_reaches_the_first_delegate_with_multus_own_list() {
    let p = Pod::new("c6mc", 46, None);
    ok("cnitool add via multus", &p.cnitool("add"));
    let id = p.container_id();
    let multus_conf: Value =
        serde_json::from_slice(&std::fs::read(p.n.conf_dir().join("00-multus.conflist")).unwrap())
            .unwrap();
    let delegates = &multus_conf["plugins"][0]["delegates"];
    let parse = |v: &Value| ConfList::parse(&serde_json::to_vec(v).unwrap()).expect("delegate");
    let (cluster, second) = (parse(&delegates[0]), parse(&delegates[1]));

    // A stray pod on both networks, attached by another runtime (its own
    // cache): multus has never heard of it.
    let stray_ns = Netns::new("c6mcs");
    let stray = "stray-pod-c6mc";
    let rt = Runtime::new(vec![p.n.bin_dir()]).with_cache_dir(p.n.dir.join("other-cache"));
    for (list, ifname) in [(&cluster, "eth0"), (&second, "net1")] {
        let att = RuntimeConf::new(stray, Some(stray_ns.path().to_path_buf()), ifname);
        in_netns(&p.n.node, || rt.add(list, &att)).expect("ADD of the stray pod");
    }
    assert_eq!(host_veths_of(&p.n.node, stray).len(), 2);

    // GC as a runtime sends it to its network: multus' config, the
    // runtime's list naming the pod.
    let mut gc = multus_conf["plugins"][0].clone();
    gc["name"] = multus_conf["name"].clone();
    gc["cniVersion"] = multus_conf["cniVersion"].clone();
    gc["cni.dev/valid-attachments"] = json!([{ "containerID": id, "ifname": "eth0" }]);
    let out = Invocation::network(p.n.bin_dir().join("multus"), "GC")
        .var("CNI_PATH", p.n.bin_dir().display().to_string())
        .stdin_json(&gc)
        .in_netns(&p.n.node)
        .run();
    assert!(out.success(), "multus GC failed: {}", out.error_text());

    // The pod multus knows: untouched on both networks.
    for (net, ifname) in [(&p.eth0, "eth0"), (&p.net1, "net1")] {
        let recs = records_of(&p.n.data_dir(), &net.name, &id);
        assert_eq!(recs.len(), 1, "{}: {recs:?}", net.name);
        assert_eq!(recs[0]["ifname"], ifname);
    }
    assert_eq!(host_veths_of(&p.n.node, &id).len(), 2);
    ping(p.ns(), p.eth0.ula_gateway());
    // The stray pod: collected on the cluster network, left on net1.
    assert!(
        records_of(&p.n.data_dir(), &p.eth0.name, stray).is_empty(),
        "cluster record freed"
    );
    assert_eq!(
        records_of(&p.n.data_dir(), &p.net1.name, stray).len(),
        1,
        "net1 record kept"
    );
    let veths = host_veths_of(&p.n.node, stray);
    assert_eq!(veths.len(), 1, "only net1's host veth is left: {veths:?}");
    assert!(
        veths[0].contains(&format!("net={}", p.net1.name)),
        "{veths:?}"
    );
    let rules = firewall_rules_of(&p.n.node, stray);
    assert!(
        !rules.is_empty()
            && rules
                .iter()
                .all(|r| !r.contains(&format!("net={}", p.eth0.name))),
        "only net1's rules are left: {rules:?}"
    );

    ok("cnitool del via multus", &p.cnitool("del"));
    p.assert_nothing_left(&id);
    let att = RuntimeConf::new(stray, Some(stray_ns.path().to_path_buf()), "net1");
    in_netns(&p.n.node, || rt.del(&second, &att)).expect("DEL of the stray pod");
}
