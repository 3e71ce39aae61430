//! cni6 driven by libcni itself: upstream `cnitool` (containernetworking/cni
//! v1.3.x, built by scripts/peers.sh) runs the cni6 conflist at cniVersion
//! 1.1.0 — ADD, CHECK, DEL, STATUS and GC — in a node namespace this test
//! makes, with a private plugin dir, conf dir and ipam-prefix dataDir.
//!
//! cnitool's `gc` is libcni's GCNetworkList with no valid-attachments list:
//! it DELs every attachment in libcni's cache for the network, then calls
//! each plugin's GC *without* `cni.dev/valid-attachments`. cni6 reads a
//! missing list as "no information" (docs/conformance.md #47): the cached attachments
//! go through their DELs, while an attachment libcni's cache does not know
//! (made by another runtime) must survive untouched.

use cni_common::runtime::{ConfList, Runtime, RuntimeConf};
use conformance::harness::Netns;
use conformance::realruntime::{
    describe, firewall_rules_of, host_veths_of, in_netns, records_of, retry, spy_on, store_records,
    Cni6Net, PeerNode,
};
use serde_json::Value;
use std::net::Ipv6Addr;
use std::process::Output;

const V: &str = "1.1.0";

fn ok(what: &str, out: &Output) -> String {
    assert!(out.status.success(), "{}", describe(what, out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The container id cnitool derived for the pod (it hashes the netns
/// path): read from the one ipam-prefix record that names `ula`.
fn container_id_of(n: &PeerNode, net: &Cni6Net, result: &Value) -> String {
    let ula = result_addr(result, |a| net.in_ula_range(a));
    let recs = store_records(&n.data_dir(), &net.name);
    let rec = recs
        .iter()
        .find(|r| r.to_string().contains(&ula.to_string()))
        .unwrap_or_else(|| panic!("no record holds {ula}: {recs:?}"));
    let id = rec["containerId"]
        .as_str()
        .expect("containerId")
        .to_string();
    assert!(id.starts_with("cnitool-"), "cnitool's id scheme: {id}");
    id
}

fn result_addr(result: &Value, pick: impl Fn(Ipv6Addr) -> bool) -> Ipv6Addr {
    result["ips"]
        .as_array()
        .unwrap_or_else(|| panic!("no ips in {result}"))
        .iter()
        .filter_map(|ip| ip["address"].as_str()?.split('/').next()?.parse().ok())
        .find(|a| pick(*a))
        .unwrap_or_else(|| panic!("no matching address in {result}"))
}

fn ping(from: &Netns, to: Ipv6Addr) {
    let to = to.to_string();
    let out = retry(5, || {
        from.exec(&["/bin/busybox", "ping", "-6", "-c", "1", "-W", "2", &to])
    });
    assert!(
        out.status.success(),
        "{}",
        describe(&format!("{}: ping {to}", from.name()), &out)
    );
}

fn assert_gone(n: &PeerNode, net: &Cni6Net, id: &str) {
    assert_eq!(
        host_veths_of(&n.node, id),
        Vec::<String>::new(),
        "veth of {id}"
    );
    assert_eq!(
        records_of(&n.data_dir(), &net.name, id),
        Vec::<Value>::new()
    );
    assert_eq!(
        firewall_rules_of(&n.node, id),
        Vec::<String>::new(),
        "rules of {id}"
    );
}

fn assert_present(n: &PeerNode, net: &Cni6Net, id: &str) {
    assert_eq!(host_veths_of(&n.node, id).len(), 1, "veth of {id}");
    assert_eq!(
        records_of(&n.data_dir(), &net.name, id).len(),
        1,
        "record of {id}"
    );
    assert!(!firewall_rules_of(&n.node, id).is_empty(), "rules of {id}");
}

#[test]
fn add_check_status_del_at_1_1_0() {
    let mut n = PeerNode::new("c6ct");
    let net = Cni6Net::new("c6ct", 30);
    n.network("10-cni6.conflist", &net.conflist(V, &n.data_dir()));
    let pod = Netns::new("c6ctp");

    // STATUS before any pod: every plugin answers, cnitool exits 0.
    ok(
        "cnitool status",
        &n.cnitool("status", &net.name, pod.path()),
    );

    let out = ok("cnitool add", &n.cnitool("add", &net.name, pod.path()));
    let result: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(result["cniVersion"], V, "{result}");
    let ula = result_addr(&result, |a| net.in_ula_range(a));
    let gua = result_addr(&result, |a| net.in_gua_range(a));
    assert_eq!(Cni6Net::slot_of(ula), Cni6Net::slot_of(gua));
    let id = container_id_of(&n, &net, &result);
    assert_present(&n, &net, &id);
    assert_eq!(n.cache_of(&net.name).len(), 1, "libcni cached the result");
    let addrs = pod.exec_ok(&["ip", "-6", "-o", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&ula.to_string()) && addrs.contains(&gua.to_string()));
    ping(&pod, net.ula_gateway());

    // CHECK against libcni's cached prevResult passes, and fails once the
    // pod's ULA address is gone.
    ok("cnitool check", &n.cnitool("check", &net.name, pod.path()));
    pod.exec_ok(&[
        "ip",
        "-6",
        "addr",
        "del",
        &format!("{ula}/96"),
        "dev",
        "eth0",
    ]);
    let out = n.cnitool("check", &net.name, pod.path());
    assert!(
        !out.status.success(),
        "{}",
        describe("CHECK after tampering", &out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&ula.to_string()),
        "CHECK names the missing address: {err}"
    );

    // STATUS with allocations present, then DEL (twice: idempotent).
    ok(
        "cnitool status",
        &n.cnitool("status", &net.name, pod.path()),
    );
    ok("cnitool del", &n.cnitool("del", &net.name, pod.path()));
    assert_gone(&n, &net, &id);
    assert!(
        n.cache_of(&net.name).is_empty(),
        "libcni cache entry removed"
    );
    ok(
        "cnitool del again",
        &n.cnitool("del", &net.name, pod.path()),
    );
}

/// STATUS failing reaches cnitool's caller with ipam-prefix's words, and
/// clears when the cause goes (the dataDir made a plain file, then back).
#[test]
fn status_fails_with_the_plugins_message_and_recovers() {
    let mut n = PeerNode::new("c6cs");
    let net = Cni6Net::new("c6cs", 31);
    n.network("10-cni6.conflist", &net.conflist(V, &n.data_dir()));
    let pod = Netns::new("c6csp");
    ok("cnitool add", &n.cnitool("add", &net.name, pod.path()));
    let aside = n.dir.join("ipam.aside");
    std::fs::rename(n.data_dir(), &aside).expect("move dataDir aside");
    std::fs::write(n.data_dir(), "not a directory").expect("file in its place");
    let out = n.cnitool("status", &net.name, pod.path());
    assert!(
        !out.status.success(),
        "{}",
        describe("STATUS, dataDir a file", &out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("data directory") && err.contains("unusable"),
        "cnitool shows ipam-prefix's message: {err}"
    );
    std::fs::remove_file(n.data_dir()).unwrap();
    std::fs::rename(&aside, n.data_dir()).unwrap();
    ok(
        "cnitool status, restored",
        &n.cnitool("status", &net.name, pod.path()),
    );
    ok("cnitool del", &n.cnitool("del", &net.name, pod.path()));
    assert!(store_records(&n.data_dir(), &net.name).is_empty());
}

/// `cnitool gc`: pods A and B attached through cnitool (B's netns then
/// vanishes), pod C attached by another runtime with its own cache. GC
/// DELs A and B — B with a netns path that no longer exists — then sends
/// plugin GC without valid-attachments, which must free nothing: C keeps
/// its record, veth, rules and connectivity, and the store stays
/// consistent.
#[test]
fn gc_dels_cached_attachments_and_frees_nothing_live_without_a_list() {
    let mut n = PeerNode::new("c6cg");
    let net = Cni6Net::new("c6cg", 32);
    let conf = net.conflist(V, &n.data_dir());
    n.network("10-cni6.conflist", &conf);
    let calls = n.dir.join("calls.log");
    spy_on(&n.bin_dir(), "bridge6", &calls);
    let fw_calls = n.dir.join("fw-calls.log");
    spy_on(&n.bin_dir(), "firewall6", &fw_calls);

    let pod_a = Netns::new("c6cga");
    let pod_b = Netns::new("c6cgb");
    let pod_c = Netns::new("c6cgc");
    let ra: Value = serde_json::from_str(&ok("add A", &n.cnitool("add", &net.name, pod_a.path())))
        .expect("result JSON");
    let rb: Value = serde_json::from_str(&ok("add B", &n.cnitool("add", &net.name, pod_b.path())))
        .expect("result JSON");
    let id_a = container_id_of(&n, &net, &ra);
    let id_b = container_id_of(&n, &net, &rb);
    let b_path = pod_b.path_str();

    // C: the same network, attached by cni_common's runtime with a cache
    // of its own, so libcni's cache does not list it.
    let rt = Runtime::new(vec![n.bin_dir()]).with_cache_dir(n.dir.join("other-cache"));
    let list = ConfList::parse(&serde_json::to_vec(&conf).unwrap()).expect("parse conflist");
    let id_c = "other-runtime-pod-c".to_string();
    let att_c = RuntimeConf::new(&id_c, Some(pod_c.path().to_path_buf()), "eth0");
    let rc = in_netns(&n.node, || rt.add(&list, &att_c)).expect("ADD of C");
    let c_ula = result_addr(&rc, |a| net.in_ula_range(a));
    for id in [&id_a, &id_b, &id_c] {
        assert_present(&n, &net, id);
    }

    drop(pod_b); // B's namespace vanishes without a DEL
    let out = n.cnitool("gc", &net.name, pod_a.path());
    ok("cnitool gc", &out);

    assert_gone(&n, &net, &id_a);
    assert_gone(&n, &net, &id_b);
    assert!(n.cache_of(&net.name).is_empty(), "libcni cache emptied");
    assert_present(&n, &net, &id_c);
    ping(&pod_c, net.ula_gateway());
    let addrs = pod_c.exec_ok(&["ip", "-6", "-o", "addr", "show", "dev", "eth0"]);
    assert!(
        addrs.contains(&c_ula.to_string()),
        "C keeps {c_ula}: {addrs}"
    );

    // What libcni did: a DEL per cached attachment (B's with its stale
    // netns path), then GC of each plugin with no attachment variables.
    let log = std::fs::read_to_string(&calls).unwrap_or_default();
    for (id, ns) in [(&id_a, pod_a.path_str()), (&id_b, b_path)] {
        assert!(
            log.lines()
                .any(|l| l == format!("DEL id={id} netns={ns} if=eth0 rc=0")),
            "{log}"
        );
    }
    assert!(log.lines().any(|l| l == "GC id= netns= if= rc=0"), "{log}");
    let fw = std::fs::read_to_string(&fw_calls).unwrap_or_default();
    assert!(fw.lines().any(|l| l == "GC id= netns= if= rc=0"), "{fw}");

    // The store agrees with the kernel: exactly C is allocated, and a new
    // pod gets a fresh address next to it.
    let recs = store_records(&n.data_dir(), &net.name);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["containerId"], id_c.as_str());
    let pod_d = Netns::new("c6cgd");
    let rd: Value = serde_json::from_str(&ok("add D", &n.cnitool("add", &net.name, pod_d.path())))
        .expect("result JSON");
    let d_ula = result_addr(&rd, |a| net.in_ula_range(a));
    assert_ne!(d_ula, c_ula);
    ping(&pod_d, c_ula);
    ok("del D", &n.cnitool("del", &net.name, pod_d.path()));
    in_netns(&n.node, || rt.del(&list, &att_c)).expect("DEL of C");
    assert_gone(&n, &net, &id_c);
}
