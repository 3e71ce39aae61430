//! ipam-prefix, black box: the invocation protocol (conformance.md 1.A, 1.B,
//! 1.F, 1.K, 1.L) — environment per verb, stdin decoding, versions, output
//! discipline, error codes and messages. Every call runs the built binary
//! with an environment the test controls completely.

use conformance::harness::*;
use conformance::ipam::*;
use serde_json::{json, Value};

fn pod() -> Netns {
    Netns::new(NETNS_PREFIX)
}

/// Required variables per verb as cni-common enforces them: the spec's
/// list plus CNI_PATH for ADD/DEL/CHECK (Go skel behaviour, env.rs).
const REQUIRED: &[(&str, &[&str])] = &[
    (
        "ADD",
        &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
    ),
    (
        "CHECK",
        &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"],
    ),
    ("DEL", &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"]),
];

#[test]
fn missing_or_empty_required_var_is_4_naming_it() {
    // conformance.md #3, 69 (4: message names the variable)
    let net = demo_net();
    let ns = pod();
    // Environment checks come before the version is read, but the matrix
    // runs at every version where the verb exists to be sure of it.
    for version in ALL_VERSIONS {
        for (verb, vars) in REQUIRED {
            if *verb == "CHECK" && !versions_with_check().contains(version) {
                continue;
            }
            for var in *vars {
                for empty in [false, true] {
                    let cid = container_id("env");
                    let inv = net.call(verb, version, &cid, &ns.path_str(), "eth0");
                    let inv = if empty {
                        inv.var(var, "")
                    } else {
                        inv.unset(var)
                    };
                    let out = inv.run();
                    out.assert_error(4);
                    assert!(
                        out.msg().contains(var),
                        "{version} {verb} without {var}: message does not name it: {}",
                        out.msg()
                    );
                    assert!(
                        net.store().is_empty(),
                        "{version} {verb} without {var} touched the store"
                    );
                }
            }
        }
    }
    // GC: CNI_PATH is its only required variable.
    let out = net.gc(&[]).unset("CNI_PATH").run();
    out.assert_error(4);
    assert!(out.msg().contains("CNI_PATH"), "{}", out.msg());
}

#[test]
fn del_needs_no_netns() {
    // conformance.md #3, 27: DEL with CNI_NETNS empty or unset succeeds and frees.
    let net = demo_net();
    let ns = pod();
    for how in ["empty", "unset"] {
        let cid = container_id("delns");
        net.call("ADD", "1.0.0", &cid, &ns.path_str(), "eth0")
            .run()
            .assert_ok();
        let del = net.call("DEL", "1.0.0", &cid, "", "eth0");
        let del = if how == "unset" {
            del.unset("CNI_NETNS")
        } else {
            del
        };
        del.run().assert_silent_ok();
        assert!(
            net.store().record(&cid, "eth0").is_none(),
            "DEL ({how} netns) left the record"
        );
    }
    assert!(net.store().is_empty());
}

#[test]
fn version_and_status_need_only_the_command() {
    // conformance.md #3 (VERSION: CNI_COMMAND only; STATUS: nothing required), 40, 45
    let net = demo_net();
    let bin = plugin("ipam-prefix");
    let out = Invocation::new(&bin, "VERSION")
        .stdin(r#"{"cniVersion":"1.0.0"}"#)
        .run();
    assert_eq!(out.assert_ok()["cniVersion"], "1.0.0");
    Invocation::new(&bin, "STATUS")
        .stdin_json(&net.conf("1.1.0"))
        .run()
        .assert_silent_ok();
}

#[test]
fn unknown_verb_is_4() {
    // conformance.md #2
    let net = demo_net();
    let ns = pod();
    for verb in ["BOGUS", "add", "Del", "ADD "] {
        let out = net
            .call(verb, "1.0.0", &container_id("v"), &ns.path_str(), "eth0")
            .run();
        out.assert_error(4);
        assert!(out.msg().contains("CNI_COMMAND"), "{}", out.msg());
    }
    assert!(net.store().is_empty());
}

#[test]
fn container_id_rules() {
    // conformance.md #4
    let net = demo_net();
    let ns = pod();
    for bad in [
        "-x/y",
        "a/b",
        "..",
        ".hidden",
        "a b",
        "x\u{e9}",
        "a@b",
        &"a".repeat(256),
    ] {
        for verb in ["ADD", "DEL"] {
            let out = net.call(verb, "1.0.0", bad, &ns.path_str(), "eth0").run();
            out.assert_error(4);
            assert!(out.msg().contains("CNI_CONTAINERID"), "{}", out.msg());
        }
    }
    assert!(
        net.store().is_empty(),
        "a rejected container id reached the store"
    );
    let ok = format!("A1_b.c-{}", std::process::id());
    net.call("ADD", "1.0.0", &ok, &ns.path_str(), "eth0")
        .run()
        .assert_ok();
    assert!(net.store().record(&ok, "eth0").is_some());
}

#[test]
fn ifname_rules() {
    // conformance.md #5
    let net = demo_net();
    let ns = pod();
    for bad in ["0123456789abcdef", "a/b", ".", "..", "a:b", "a b", "tab\t"] {
        let out = net
            .call("ADD", "1.0.0", &container_id("if"), &ns.path_str(), bad)
            .run();
        out.assert_error(4);
        assert!(out.msg().contains("CNI_IFNAME"), "{}", out.msg());
    }
    assert!(net.store().is_empty());
    // 15 bytes is the limit and fine; the record is keyed by the name given.
    for good in ["net1", "abcdefghijklmno"] {
        let cid = container_id("if");
        net.call("ADD", "1.0.0", &cid, &ns.path_str(), good)
            .run()
            .assert_ok();
        assert!(
            net.store().record(&cid, good).is_some(),
            "no record for {cid}@{good}"
        );
    }
}

#[test]
fn cni_args_convention() {
    // conformance.md #7, 75
    let net = demo_net();
    let ns = pod();
    let k8s =
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=coredns-7db6d8ff4d-x2b9k;\
               K8S_POD_INFRA_CONTAINER_ID=0123abcd;K8S_POD_UID=5f0e-11";
    let cid = container_id("k8s");
    let r = net
        .call("ADD", "1.0.0", &cid, &ns.path_str(), "eth0")
        .args(k8s)
        .run();
    let result = r.assert_ok().clone();
    // Records pod name and namespace (docs/design.md: shared behaviour).
    let rec = net.store().record(&cid, "eth0").expect("record");
    assert_eq!(rec["podNamespace"], "kube-system", "{rec}");
    assert_eq!(rec["podName"], "coredns-7db6d8ff4d-x2b9k", "{rec}");
    // K8s-style args are accepted on every verb.
    let mut check = net.conf("1.0.0");
    check["prevResult"] = result;
    net.call("CHECK", "1.0.0", &cid, &ns.path_str(), "eth0")
        .stdin_json(&check)
        .args(k8s)
        .run()
        .assert_silent_ok();
    net.call("DEL", "1.0.0", &cid, &ns.path_str(), "eth0")
        .args(k8s)
        .run()
        .assert_silent_ok();
    // Unknown key with IgnoreUnknown: fine.
    let cid = container_id("k8s");
    net.call("ADD", "1.0.0", &cid, &ns.path_str(), "eth0")
        .args("IgnoreUnknown=1;K8S_POD_NAME=a;FOO=b")
        .run()
        .assert_ok();
    // Without it: error 4 naming the key (libcni convention).
    let before = snapshot(net.data_dir());
    for bad in ["FOO=b", "A=b=c", "novalue", "=x", "IgnoreUnknown=0;FOO=b"] {
        let out = net
            .call("ADD", "1.0.0", &container_id("k8s"), &ns.path_str(), "eth0")
            .args(bad)
            .run();
        out.assert_error(4);
        assert!(out.msg().contains("CNI_ARGS"), "{bad}: {}", out.msg());
    }
    assert_eq!(
        before,
        snapshot(net.data_dir()),
        "rejected CNI_ARGS changed the store"
    );
}

#[test]
fn cni_path_is_only_for_delegates() {
    // conformance.md #8: ipam-prefix delegates nothing; a CNI_PATH of two dirs
    // that do not even hold it is fine (the runtime found it already).
    let net = demo_net();
    let ns = pod();
    let a = TempDir::new("path-a");
    let b = TempDir::new("path-b");
    let cid = container_id("path");
    net.call("ADD", "1.0.0", &cid, &ns.path_str(), "eth0")
        .cni_path(&[a.path(), b.path()])
        .run()
        .assert_ok();
    net.call("DEL", "1.0.0", &cid, "", "eth0")
        .var("CNI_PATH", "/nonexistent/one:/nonexistent/two")
        .run()
        .assert_silent_ok();
    assert!(net.store().is_empty());
}

#[test]
fn stdin_decoding() {
    // conformance.md #9
    let net = demo_net();
    let ns = pod();
    let call = || net.call("ADD", "1.0.0", &container_id("in"), &ns.path_str(), "eth0");
    call().stdin("{").run().assert_error(6);
    call().stdin("").run().assert_error(6);
    call().stdin("[]").run().assert_error(6);
    let out = call().stdin("{}").run();
    out.assert_error(7);
    assert!(out.msg().contains("name"), "{}", out.msg());
    assert!(net.store().is_empty());
    // VERSION ignores stdin content.
    let bin = plugin("ipam-prefix");
    for junk in ["", "{", "not json at all", "{\"cniVersion\": 5}"] {
        let out = Invocation::new(&bin, "VERSION").stdin(junk).run();
        let v = out.assert_ok();
        assert!(!v["supportedVersions"].as_array().unwrap().is_empty());
    }
}

#[test]
fn output_discipline() {
    // conformance.md #10, 67, 68
    let net = demo_net();
    let ns = pod();
    let cid = container_id("out");
    let add = net.call("ADD", "1.1.0", &cid, &ns.path_str(), "eth0").run();
    let result = add.assert_ok().clone();
    assert!(add.stdout.trim_start().starts_with('{'));
    let mut check = net.conf("1.1.0");
    check["prevResult"] = result;
    net.call("CHECK", "1.1.0", &cid, &ns.path_str(), "eth0")
        .stdin_json(&check)
        .run()
        .assert_silent_ok();
    net.status().run().assert_silent_ok();
    net.gc(&[(&cid, "eth0")]).run().assert_silent_ok();
    net.call("DEL", "1.1.0", &cid, &ns.path_str(), "eth0")
        .run()
        .assert_silent_ok();
    // An error carries cniVersion (we include it, conformance.md #68), code, msg.
    let mut bad = net.conf("1.0.0");
    bad["ipam"]["subnetId"] = json!(0);
    let out = net
        .call("ADD", "1.0.0", &cid, &ns.path_str(), "eth0")
        .stdin_json(&bad)
        .run();
    let e = out.assert_error(7).clone();
    assert_eq!(e["cniVersion"], "1.0.0", "{e}");
    assert!(out.stderr.len() < 64 * 1024);
}

#[test]
fn about_text_without_command() {
    // conformance.md #12
    let bin = plugin("ipam-prefix");
    for inv in [
        Invocation::new(&bin, "").unset("CNI_COMMAND"),
        Invocation::new(&bin, ""),
    ] {
        let out = inv.run();
        out.assert_no_panic();
        assert_eq!(out.code, Some(0), "{out:?}");
        assert!(out.stdout.trim().is_empty(), "{out:?}");
        assert!(
            out.stderr.contains("1.0.0"),
            "about text lists versions: {out:?}"
        );
    }
}

#[test]
fn network_name_rules() {
    // conformance.md #13
    let net = demo_net();
    let ns = pod();
    for bad in [
        json!("a/b"),
        json!("../x"),
        json!(".."),
        json!(""),
        json!("-x"),
        json!(5),
        json!(null),
    ] {
        let mut c = net.conf("1.0.0");
        c["name"] = bad.clone();
        let out = net
            .call("ADD", "1.0.0", &container_id("nm"), &ns.path_str(), "eth0")
            .stdin_json(&c)
            .run();
        out.assert_error(7);
        assert!(out.msg().contains("name"), "{bad}: {}", out.msg());
    }
    assert!(
        dir_names(net.data_dir()).is_empty(),
        "a rejected network name created something: {:?}",
        dir_names(net.data_dir())
    );
}

#[test]
fn runtime_owned_and_unknown_keys_are_tolerated() {
    // conformance.md #14, 72 (unknown runtimeConfig keys ignored), 16 (unknown args)
    let net = demo_net()
        .set_top("capabilities", json!({"portMappings": true, "ips": true}))
        .set_top("cni.dev/x", json!({"anything": [1, 2]}))
        .set_top("foo", json!("bar"))
        .set_top(
            "runtimeConfig",
            json!({"portMappings": [], "bandwidth": {"x": 1}}),
        )
        .set_top(
            "args",
            json!({"cni": {"foo": "bar", "labels": []}, "other": 1}),
        )
        .set_ipam("unknownIpamKey", json!(true));
    let ns = pod();
    let cid = container_id("keys");
    let v = net
        .call("ADD", "1.0.0", &cid, &ns.path_str(), "eth0")
        .run()
        .assert_ok()
        .clone();
    assert_eq!(result_addrs(&v).len(), 2);
    net.call("DEL", "1.0.0", &cid, &ns.path_str(), "eth0")
        .run()
        .assert_silent_ok();
}

#[test]
fn add_answers_in_the_requested_version() {
    // conformance.md #20, 59, 61, 66
    let net = demo_net();
    let ns = pod();
    for v in ALL_VERSIONS {
        let cid = container_id("ver");
        let out = net.call("ADD", v, &cid, &ns.path_str(), "eth0").run();
        let r = out.assert_ok();
        assert_eq!(r["cniVersion"], *v, "{r}");
        assert!(
            r.get("interfaces").is_none(),
            "IPAM result has interfaces (61): {r}"
        );
        for ip in r["ips"].as_array().expect("ips") {
            assert!(
                ip.get("interface").is_none(),
                "ips[].interface in IPAM result (61): {r}"
            );
            // conformance.md #59: `version` iff 0.3.x/0.4.0, and it matches the family.
            if has_ip_version_field(v) {
                assert_eq!(ip["version"], "6", "{v}: {r}");
            } else {
                assert!(ip.get("version").is_none(), "{v}: {r}");
            }
        }
        net.call("DEL", v, &cid, "", "eth0")
            .run()
            .assert_silent_ok();
    }
}

#[test]
fn check_needs_0_4() {
    // conformance.md #31
    let net = demo_net();
    let ns = pod();
    for v in versions_without_check() {
        let cid = container_id("chk");
        let r = net.call("ADD", v, &cid, &ns.path_str(), "eth0").run();
        let mut c = net.conf(v);
        c["prevResult"] = r.assert_ok().clone();
        let out = net
            .call("CHECK", v, &cid, &ns.path_str(), "eth0")
            .stdin_json(&c)
            .run();
        out.assert_error(1);
    }
}

#[test]
fn version_verb() {
    // conformance.md #40: with the dummy values libcni sets, with and without stdin.
    let bin = plugin("ipam-prefix");
    for v in ALL_VERSIONS {
        let out = Invocation::new(&bin, "VERSION")
            .var("CNI_NETNS", "dummy")
            .var("CNI_IFNAME", "dummy")
            .var("CNI_PATH", "dummy")
            .stdin(format!(r#"{{"cniVersion":"{v}"}}"#))
            .run();
        let r = out.assert_ok();
        assert_eq!(r["cniVersion"], *v);
        let list: Vec<&str> = r["supportedVersions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        assert_eq!(list, ALL_VERSIONS, "advertised versions");
    }
    let out = Invocation::new(&bin, "VERSION").run();
    let r = out.assert_ok();
    assert!(r["cniVersion"].as_str().is_some_and(|s| !s.is_empty()));
}

#[test]
fn every_advertised_version_really_works() {
    // conformance.md #41: loop ADD/CHECK/DEL over what VERSION lists.
    let bin = plugin("ipam-prefix");
    let out = Invocation::new(&bin, "VERSION")
        .stdin(r#"{"cniVersion":"1.1.0"}"#)
        .run();
    let listed: Vec<String> = out.assert_ok()["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let net = demo_net();
    let ns = pod();
    for v in &listed {
        let cid = container_id("adv");
        let r = net
            .call("ADD", v, &cid, &ns.path_str(), "eth0")
            .run()
            .assert_ok()
            .clone();
        assert_eq!(r["cniVersion"], v.as_str());
        if versions_with_check().contains(&v.as_str()) {
            let mut c = net.conf(v);
            c["prevResult"] = r;
            net.call("CHECK", v, &cid, &ns.path_str(), "eth0")
                .stdin_json(&c)
                .run()
                .assert_silent_ok();
        }
        net.call("DEL", v, &cid, &ns.path_str(), "eth0")
            .run()
            .assert_silent_ok();
        assert!(
            net.store().record(&cid, "eth0").is_none(),
            "{v}: DEL left the record"
        );
    }
}

#[test]
fn gc_and_status_need_1_1() {
    // conformance.md #45, 51
    let net = demo_net();
    for v in versions_without_gc() {
        net.network_call("STATUS", &net.conf(v))
            .run()
            .assert_error(1);
        let mut c = net.conf(v);
        c["cni.dev/valid-attachments"] = json!([]);
        net.network_call("GC", &c).run().assert_error(1);
    }
    // At 1.1.0 with every attachment variable empty (libcni) or unset.
    net.status().run().assert_silent_ok();
    net.gc(&[]).run().assert_silent_ok();
    Invocation::new(plugin("ipam-prefix"), "GC")
        .var("CNI_PATH", "/opt/cni/bin")
        .stdin_json(&net.conf("1.1.0"))
        .run()
        .assert_silent_ok();
}

#[test]
fn unsupported_or_unparseable_version() {
    // conformance.md #65: 1 listing the supported versions, 6 when unparseable,
    // before any side effect.
    let net = demo_net();
    let ns = pod();
    for (v, code) in [
        (json!("9.9.9"), 1),
        (json!("0.2.0"), 1),
        (json!("0.1.0"), 1),
        (json!("1.0"), 6),
        (json!("one"), 6),
        // "" is the implicit 0.1.0 in libcni's decoder, like an absent key.
        (json!(""), 1),
    ] {
        for verb in ["ADD", "DEL", "CHECK"] {
            let mut c = net.conf("1.0.0");
            c["cniVersion"] = v.clone();
            let out = net
                .call(verb, "1.0.0", &container_id("bv"), &ns.path_str(), "eth0")
                .stdin_json(&c)
                .run();
            out.assert_error(code);
            if code == 1 {
                assert!(
                    out.error_text().contains("1.0.0") && out.error_text().contains("0.3.0"),
                    "error 1 should list the supported versions: {}",
                    out.error_text()
                );
            }
        }
    }
    assert!(
        dir_names(net.data_dir()).is_empty(),
        "store touched before version check"
    );
}

#[test]
fn config_errors_name_key_and_value() {
    // conformance.md #69: 7 with a message naming key and value.
    let net = demo_net();
    let ns = pod();
    let cases: Vec<(&str, Value, &str)> = vec![
        ("subnetId", json!(0), "subnetId"),
        ("subnetId", json!(100), "subnetId"),
        ("subnetId", json!("1"), "subnetId"),
        ("prefixes", json!([]), "prefixes"),
        (
            "prefixes",
            json!([{"node": "fd8c:1f0a:77e3:0:1::/112"}]),
            "fd8c:1f0a:77e3:0:1::/112",
        ),
        ("prefixes", json!([{"node": "10.0.0.0/16"}]), "10.0.0.0/16"),
        (
            "prefixes",
            json!([{"fromInterface": "eth0", "scope": "site"}]),
            "site",
        ),
        ("dataDir", json!("relative/dir"), "dataDir"),
    ];
    for (key, val, needle) in cases {
        let mut c = net.conf("1.0.0");
        c["ipam"][key] = val.clone();
        let out = net
            .call("ADD", "1.0.0", &container_id("cfg"), &ns.path_str(), "eth0")
            .stdin_json(&c)
            .run();
        out.assert_error(7);
        assert!(
            out.msg().contains(needle),
            "ipam.{key}={val}: message should name {needle:?}: {}",
            out.msg()
        );
    }
    assert!(dir_names(net.data_dir()).is_empty());
}
