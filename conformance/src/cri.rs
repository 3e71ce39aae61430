//! What the CRI suites (containerd 1.6 in tests/containerd.rs, 2.x in
//! tests/containerd2.rs) check of a pod sandbox on cni6: its IPs as
//! PodSandboxStatus reports them, cni6's address plan in them, `cni6
//! status` run on the node, and that RemovePodSandbox leaves nothing.

use crate::harness::bin_dir;
use crate::realruntime::{
    describe, firewall_rules_of, host_veths_of, node_command, ping_from_sandbox, records_of,
    Cni6Net, Containerd,
};
use serde_json::Value;
use std::net::Ipv6Addr;
use std::path::Path;

/// (primary IP, additional IPs, netns path) of a ready sandbox.
pub fn sandbox_ips(cd: &mut Containerd, id: &str) -> (Ipv6Addr, Vec<Ipv6Addr>, String) {
    let st = cd.status(id);
    assert_eq!(st["state"], "SANDBOX_READY", "{st}");
    let ip: Ipv6Addr = st["ip"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no primary IP in {st}"));
    let extra: Vec<Ipv6Addr> = st["additional_ips"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()?.parse().ok()).collect())
        .unwrap_or_default();
    let netns = st["netns"].as_str().unwrap_or("").to_string();
    assert!(Path::new(&netns).exists(), "sandbox netns {netns:?}: {st}");
    (ip, extra, netns)
}

/// cni6's plan in a sandbox's IPs: the ULA primary, the GUA of the same
/// slot additional; (ULA, GUA, netns path).
pub fn cni6_sandbox(cd: &mut Containerd, id: &str) -> (Ipv6Addr, Ipv6Addr, String) {
    let (ula, extra, netns) = sandbox_ips(cd, id);
    assert!(
        cd.net.in_ula_range(ula),
        "primary IP {ula} is not from the ULA pod range of {}",
        cd.net.ula_node()
    );
    assert_eq!(extra.len(), 1, "one additional IP: {extra:?}");
    assert!(
        cd.net.in_gua_range(extra[0]),
        "additional IP {} is not from the GUA pod range of {}",
        extra[0],
        cd.net.gua_node()
    );
    assert_eq!(
        Cni6Net::slot_of(ula),
        Cni6Net::slot_of(extra[0]),
        "same interface id"
    );
    (ula, extra[0], netns)
}

/// `cni6 status --json` on the node for containerd's conflist (the
/// libcni cache it reads is containerd's, /var/lib/cni).
pub fn cni6_status(cd: &Containerd) -> Value {
    let out = node_command(&cd.node, bin_dir().join("cni6"))
        .args(["status", "--json", "--conflist"])
        .arg(cd.dir.join("net.d/10-cni6.conflist"))
        // status asks the plugins for CNI STATUS: containerd's bin_dir.
        .arg("--cni-path")
        .arg(cd.dir.join("bin"))
        .output()
        .expect("spawn cni6");
    assert!(
        out.status.success(),
        "{}",
        describe("cni6 status --json", &out)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "cni6 status --json: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// No host veth, no ipam-prefix record in any of `nets`, no firewall6
/// rule of sandbox `id` is left.
pub fn assert_nothing_left(cd: &Containerd, nets: &[&str], id: &str) {
    assert_eq!(
        host_veths_of(&cd.node, id),
        Vec::<String>::new(),
        "host veth left"
    );
    for net in nets {
        assert_eq!(
            records_of(&cd.data_dir, net, id),
            Vec::<Value>::new(),
            "ipam-prefix record of {net} left"
        );
    }
    assert_eq!(
        firewall_rules_of(&cd.node, id),
        Vec::<String>::new(),
        "firewall6 rules left"
    );
}

/// A sandbox with cni6's plan in its IPs, and the pod it was made for.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub id: String,
    pub namespace: &'static str,
    pub name: &'static str,
    pub ula: Ipv6Addr,
    pub gua: Ipv6Addr,
    pub netns: String,
}

/// Two sandboxes as kubelet makes them (web-1 in team-a, web-2 in
/// team-b), each with cni6's plan, reaching each other over ULA and GUA,
/// the first also its gateway.
pub fn two_pods_that_reach_each_other(cd: &mut Containerd) -> [Sandbox; 2] {
    let pods = [
        ("web-1", "team-a", "uid-web-1"),
        ("web-2", "team-b", "uid-web-2"),
    ];
    let ids = pods.map(|(name, ns, uid)| cd.run_pod(name, ns, uid).0);
    let [a, b] = [0, 1].map(|i| {
        let (ula, gua, netns) = cni6_sandbox(cd, &ids[i]);
        Sandbox {
            id: ids[i].clone(),
            namespace: pods[i].1,
            name: pods[i].0,
            ula,
            gua,
            netns,
        }
    });
    assert_ne!(a.ula, b.ula);
    ping_from_sandbox(&a.netns, b.ula);
    ping_from_sandbox(&a.netns, b.gua);
    ping_from_sandbox(&b.netns, a.ula);
    ping_from_sandbox(&b.netns, a.gua);
    ping_from_sandbox(&a.netns, cd.net.ula_gateway());
    [a, b]
}

/// The runtime made exactly `n` ADDs, each successful.
pub fn assert_adds_ok(cd: &Containerd, n: usize) {
    let adds: Vec<String> = cd
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("ADD "))
        .collect();
    assert_eq!(adds.len(), n, "{adds:?}");
    assert!(adds.iter().all(|c| c.ends_with(" rc=0")), "{adds:?}");
}
