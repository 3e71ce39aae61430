//! The shipped conflists (testdata/conflists/) parse as libcni would parse
//! them, and the IPAM-only demo network really works end to end through
//! the project's libcni-like runtime (conformance.md #53, 54, 71, 84–86).

use cni_common::runtime::{ConfList, Runtime, RuntimeConf};
use conformance::harness::*;
use conformance::ipam::*;
use serde_json::{json, Value};

fn load(name: &str) -> (Value, ConfList) {
    let p = testdata::conflists_dir().join(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v: Value = serde_json::from_slice(&bytes).unwrap();
    let list = ConfList::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    (v, list)
}

#[test]
fn cluster_conflist_is_the_design_example() {
    let (v, list) = load("cluster.conflist");
    assert_eq!(list.cni_version, "1.0.0");
    assert_eq!(list.name, "cluster");
    assert_eq!(list.plugin_types(), vec!["bridge6", "firewall6"]);
    let ipam = &v["plugins"][0]["ipam"];
    assert_eq!(ipam["type"], "ipam-prefix");
    assert_eq!(ipam["subnetId"], 1);
    assert_eq!(
        ipam["prefixes"],
        json!([{"node": ULA_NODE}, {"fromInterface": "eth0", "scope": "global"}])
    );
    assert_eq!(v["plugins"][1]["ingress"], "cluster-only");
}

#[test]
fn ipam_demo_network_works_through_the_runtime() {
    require_root();
    let (mut v, _) = load("ipam-demo.conflist");
    assert_eq!(v["plugins"][0]["type"], "ipam-prefix");
    assert!(
        v["plugins"][0]["ipam"].is_object(),
        "ipam-prefix reads the ipam object of its own entry"
    );
    // Same file, private data and cache dirs.
    let data = TempDir::new("demo-data");
    let cache = TempDir::new("demo-cache");
    v["plugins"][0]["ipam"]["dataDir"] = json!(data.path_str());
    let list = ConfList::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    let rt = Runtime::new(vec![bin_dir()]).with_cache_dir(cache.path());
    plugin("ipam-prefix");
    let pod = Netns::new(NETNS_PREFIX);
    let att = RuntimeConf::new(container_id("demo"), Some(pod.path().to_path_buf()), "eth0")
        .with_arg("IgnoreUnknown", "1")
        .with_arg("K8S_POD_NAME", "demo");
    let r = rt.add(&list, &att).expect("ADD through the runtime");
    let got: Vec<String> = result_addrs(&r).iter().map(|a| a.to_string()).collect();
    assert_eq!(
        got,
        vec!["fd8c:1f0a:77e3:0:1:1:0:10/96", "2001:db8:7:12:0:1:0:10/96"]
    );
    assert_eq!(r["routes"], json!([{"dst": "::/0"}]));
    rt.check(&list, &att).expect("CHECK with the cached result");
    // The declared `ips` capability reaches the plugin as runtimeConfig.
    let want = "fd8c:1f0a:77e3:0:1:1:0:42/96";
    let att2 = RuntimeConf::new(container_id("demo"), Some(pod.path().to_path_buf()), "eth0")
        .with_capability("ips", json!([want]));
    let r2 = rt.add(&list, &att2).expect("ADD with ips capability");
    assert_eq!(result_addrs(&r2)[0].to_string(), want);
    assert_eq!(
        result_addrs(&r2)[1].to_string(),
        "2001:db8:7:12:0:1:0:42/96"
    );
    for a in [&att, &att2] {
        rt.del(&list, a).expect("DEL");
    }
    let store = Store {
        dir: data.join("ipam-demo"),
    };
    assert!(store.is_empty(), "DEL through the runtime left records");
}
