//! A key one typo away from a key a plugin knows is refused with code 7
//! naming the key probably meant, by each built binary, before it changes
//! anything (issue 18: `brigde`, `subnetID` and `clusterPrefix` used to be
//! ignored and change behaviour). Unknown keys far from every known key
//! stay accepted (conformance.md #14).

use conformance::harness::*;
use serde_json::{json, Value};

/// ADD of `binary` with `conf`; the answer must be code 7 naming both keys.
fn assert_typo_refused(binary: &str, conf: &Value, typo: &str, meant: &str, netns: &Netns) {
    let out = Invocation::attachment(
        plugin(binary),
        "ADD",
        &container_id("typo"),
        &netns.path_str(),
        "eth0",
    )
    .stdin_json(conf)
    .run();
    out.assert_error(7);
    let msg = out.msg();
    assert!(
        msg.contains(typo) && msg.contains(&format!("{meant:?}")),
        "{binary}: message must name {typo:?} and {meant:?}: {msg}"
    );
}

#[test]
fn each_plugin_refuses_a_typod_key_with_code_7() {
    require_root();
    let pod = Netns::new("typo");
    let data = TempDir::new("typo-ipam");
    let bridge = unique_name("ty");
    let ipam = json!({
        "type": "ipam-prefix",
        "dataDir": data.path_str(),
        "prefixes": [{"node": "fd00:7e57:18:0:5::/80"}],
    });

    // bridge6: "brigde" would have used the default bridge.
    let conf = json!({
        "cniVersion": "1.0.0", "name": "typo", "type": "bridge6",
        "brigde": bridge, "ipam": ipam,
    });
    assert_typo_refused("bridge6", &conf, "brigde", "bridge", &pod);
    assert_eq!(
        std::fs::read_dir(data.path()).map_or(0, |d| d.count()),
        0,
        "the refused ADD must not reach IPAM"
    );

    // ipam-prefix: "subnetID" would have fallen back to subnet 1.
    let mut bad_ipam = ipam.clone();
    bad_ipam["subnetID"] = json!(2);
    let conf = json!({
        "cniVersion": "1.0.0", "name": "typo", "type": "bridge6",
        "bridge": bridge, "ipam": bad_ipam,
    });
    assert_typo_refused("ipam-prefix", &conf, "ipam.subnetID", "subnetId", &pod);
    // ... and an entry of ipam.prefixes is checked too.
    let mut bad_entry = ipam.clone();
    bad_entry["prefixes"] = json!([{"fromInterfce": "eth0"}]);
    let conf = json!({"cniVersion": "1.0.0", "name": "typo", "type": "bridge6", "ipam": bad_entry});
    assert_typo_refused("ipam-prefix", &conf, "fromInterfce", "fromInterface", &pod);
    assert_eq!(
        std::fs::read_dir(data.path()).map_or(0, |d| d.count()),
        0,
        "refused IPAM ADDs must not write the store"
    );

    // firewall6: "clusterPrefix" would have left clusterPrefixes empty.
    let conf = json!({
        "cniVersion": "1.0.0", "name": "typo", "type": "firewall6",
        "clusterPrefix": ["fd00:7e57:18::/64"],
        "prevResult": {"cniVersion": "1.0.0", "interfaces": [], "ips": []},
    });
    assert_typo_refused("firewall6", &conf, "clusterPrefix", "clusterPrefixes", &pod);
}

#[test]
fn far_unknown_keys_stay_accepted() {
    // VERSION reads no plugin keys; STATUS of ipam-prefix parses the whole
    // ipam object, so an unknown key there must not fail it.
    let data = TempDir::new("typo-ok");
    let conf = json!({
        "cniVersion": "1.1.0", "name": "typo", "type": "bridge6",
        "someFutureKey": true, "cni.dev/attachments": [],
        "ipam": {
            "type": "ipam-prefix", "dataDir": data.path_str(),
            "prefixes": [{"node": "fd00:7e57:18:0:5::/80"}], "ranges": [],
        },
    });
    Invocation::network(plugin("ipam-prefix"), "STATUS")
        .stdin_json(&conf)
        .run()
        .assert_silent_ok();
}
