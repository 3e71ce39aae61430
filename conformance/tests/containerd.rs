//! containerd 1.6 CRI runs pod sandboxes on cni6, driven as kubelet drives
//! it (issue 5).
//!
//! The test starts a private containerd (root, state, socket, plugin dir,
//! conflist: all under a temp dir) inside a node namespace, imports a
//! locally built pause image (testdata/runtimes/pause.c, `gcc -static`,
//! packed as an OCI layout; no registry), and talks CRI through
//! testdata/runtimes/cri_client.py (PyPI `container-runtime-interface-api`
//! and grpcio). A spy around bridge6 records every call containerd makes, so
//! the tests can show the two DELs of a sandbox's life. Failures quote
//! containerd's gRPC error and the tail of its log.

use conformance::cri::{assert_adds_ok, cni6_sandbox, cni6_status, two_pods_that_reach_each_other};
use conformance::realruntime::{
    describe, firewall_rules_of, host_veths_of, node_command, percentile, records_of, retry,
    Cni6Net, Containerd,
};
use std::path::Path;

/// Nothing of sandbox `id` is left on the node (one network).
fn assert_nothing_left(cd: &Containerd, id: &str) {
    conformance::cri::assert_nothing_left(cd, &[&cd.net.name], id);
}

#[test]
fn sandboxes_get_ula_primary_gua_additional_and_reach_each_other() {
    let mut cd = Containerd::start("c6cd", Cni6Net::new("c6cd", 10));
    let pods = two_pods_that_reach_each_other(&mut cd);

    // The node reaches both (through its bridge).
    for to in [pods[0].ula, pods[1].gua] {
        let to = to.to_string();
        let out = retry(5, || {
            node_command(&cd.node, "/bin/busybox")
                .args(["ping", "-6", "-c", "1", "-W", "2", &to])
                .output()
                .expect("spawn ping")
        });
        assert!(
            out.status.success(),
            "{}",
            describe(&format!("node: ping {to}"), &out)
        );
    }

    // The store records kubelet's pod identity (K8S_POD_NAMESPACE /
    // K8S_POD_NAME in CNI_ARGS), read from ipam-prefix's records.
    for p in &pods {
        let recs = records_of(&cd.data_dir, &cd.net.name, &p.id);
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0]["podNamespace"], p.namespace, "{}", recs[0]);
        assert_eq!(recs[0]["podName"], p.name, "{}", recs[0]);
        assert_eq!(recs[0]["ifname"], "eth0");
    }
    // `cni6 status --json`, run on the node, shows the same.
    let status = cni6_status(&cd);
    let allocs = status["networks"][0]["allocations"]
        .as_array()
        .unwrap_or_else(|| panic!("no allocations in {status}"));
    for p in &pods {
        let a = allocs
            .iter()
            .find(|a| a["containerID"] == p.id.as_str())
            .unwrap_or_else(|| panic!("cni6 status does not list {}: {status}", p.id));
        assert_eq!(a["podNamespace"], p.namespace, "{a}");
        assert_eq!(a["podName"], p.name, "{a}");
        assert_eq!(a["leaked"], false, "{a}");
    }

    // containerd made exactly the calls kubelet's path implies: one ADD
    // per sandbox, each successful.
    assert_adds_ok(&cd, 2);

    for p in &pods {
        cd.stop(&p.id);
        cd.remove(&p.id);
        assert_nothing_left(&cd, &p.id);
    }
    assert!(pods.iter().all(|p| !Path::new(&p.netns).exists()));
}

#[test]
fn remove_sends_a_second_del_without_netns_and_nothing_remains() {
    let mut cd = Containerd::start("c6cr", Cni6Net::new("c6cr", 11));
    let (id, _) = cd.run_pod("job-1", "batch", "uid-job-1");
    let (_, _, netns) = cni6_sandbox(&mut cd, &id);
    assert_eq!(host_veths_of(&cd.node, &id).len(), 1);
    assert!(!firewall_rules_of(&cd.node, &id).is_empty());

    cd.stop(&id);
    let dels: Vec<String> = cd
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("DEL "))
        .collect();
    assert_eq!(dels.len(), 1, "StopPodSandbox: one DEL: {dels:?}");
    assert!(
        dels[0].contains(&format!("id={id} netns={netns} if=eth0 rc=0")),
        "{dels:?}"
    );
    assert_nothing_left(&cd, &id);

    // RemovePodSandbox: containerd 1.6 runs DEL again with an empty
    // CNI_NETNS (the namespace is gone) and no prevResult; it must succeed.
    // conformance.md #26, 27, 28
    cd.remove(&id);
    let dels: Vec<String> = cd
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("DEL "))
        .collect();
    assert_eq!(dels.len(), 2, "RemovePodSandbox: a second DEL: {dels:?}");
    assert!(
        dels[1].contains(&format!("id={id} netns= if=eth0 rc=0")),
        "second DEL: {dels:?}"
    );
    assert_nothing_left(&cd, &id);
    assert!(!Path::new(&netns).exists(), "sandbox netns {netns} left");
    let listed = cd.cri_ok(serde_json::json!({"op": "list"}));
    assert_eq!(listed, serde_json::json!([]));
}

/// Benchmark output, not an assertion: RunPodSandbox wall time (the RPC
/// alone, measured in the CRI client) over 20 sandboxes.
#[test]
fn bench_run_pod_sandbox_20() {
    let mut cd = Containerd::start("c6cb", Cni6Net::new("c6cb", 12));
    let mut ids = Vec::new();
    let mut secs = Vec::new();
    for i in 0..20 {
        let (id, s) = cd.run_pod(&format!("bench-{i}"), "bench", &format!("uid-bench-{i}"));
        ids.push(id);
        secs.push(s);
    }
    for id in &ids {
        cni6_sandbox(&mut cd, id);
    }
    println!(
        "containerd 1.6 CRI RunPodSandbox on cni6, 20 sandboxes: p50 {:.1} ms, p95 {:.1} ms, min {:.1} ms, max {:.1} ms",
        percentile(&secs, 50.0) * 1e3,
        percentile(&secs, 95.0) * 1e3,
        percentile(&secs, 0.0) * 1e3,
        percentile(&secs, 100.0) * 1e3,
    );
    for id in &ids {
        cd.stop(id);
        cd.remove(id);
    }
    for id in &ids {
        assert_nothing_left(&cd, id);
    }
    assert_eq!(
        cd.calls().iter().filter(|c| !c.ends_with(" rc=0")).count(),
        0,
        "every plugin call succeeded: {:?}",
        cd.calls()
    );
}

/// A plugin error reaches the CRI caller in containerd's own words, with
/// the plugin's message inside, and the failed sandbox leaves nothing.
#[test]
fn plugin_error_shows_in_containerds_answer() {
    let net = Cni6Net::new("c6ce", 13);
    let mut bad = net.conflist("1.0.0", Path::new("/nonexistent"));
    // A ULA node prefix inside the cluster's reserved virtual-IP range.
    bad["plugins"][0]["ipam"]["prefixes"][0]["node"] = serde_json::json!("fd00:c6:5:d::/80");
    bad["plugins"][0]["ipam"]["dataDir"] = serde_json::json!(Path::new("/tmp").join(&net.name));
    let mut cd = Containerd::start_with("c6ce", net, Some(bad));
    let err = cd
        .cri(serde_json::json!({"op": "run", "name": "bad-1", "namespace": "t", "uid": "u-bad-1"}))
        .expect_err("RunPodSandbox must fail with a broken node prefix");
    assert!(
        err.contains("failed to setup network for sandbox")
            && err.contains("ipam.prefixes[0].node"),
        "containerd's error should carry the plugin's message: {err}"
    );
    let listed = cd.cri_ok(serde_json::json!({"op": "list"}));
    assert_eq!(listed, serde_json::json!([]), "failed sandbox removed");
    let calls = cd.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("ADD ") && !c.ends_with(" rc=0")),
        "{calls:?}"
    );
    // conformance.md #82: the failed ADD gets its DEL, which succeeds.
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("DEL ") && c.ends_with(" rc=0")),
        "containerd cleans up a failed ADD with DEL: {calls:?}"
    );
}
