//! podman 4.3 (CNI backend) runs containers on cni6 (issue 5).
//!
//! A private podman (config, storage, run root, network configs, plugin
//! dir: all under a temp dir) runs inside a node namespace; containers use
//! a busybox rootfs (`--rootfs DIR:O`), never an image. What the tests
//! prove is what a podman user sees: addresses, routes, reachability, and
//! that stop/start/rm leave exactly the state they should, down to the
//! ipam-prefix record, the firewall6 rules and libcni's cache file.
//! Failures quote podman's own stderr.

use conformance::realruntime::{
    firewall_rules_of, host_veths_of, libcni_cache_of, records_of, retry, store_records, Cni6Net,
    Podman,
};
use serde_json::Value;
use std::net::Ipv6Addr;

/// The (ULA, GUA) podman reports for a container on `net`.
fn podman_addrs(pm: &Podman, name: &str, net: &Cni6Net) -> (Ipv6Addr, Ipv6Addr) {
    let info = pm.inspect(name);
    let n = &info["NetworkSettings"]["Networks"][&net.name];
    let primary: Ipv6Addr = n["GlobalIPv6Address"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no GlobalIPv6Address for {} in {n}", net.name));
    let secondary: Vec<Ipv6Addr> = n["SecondaryIPv6Addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["Addr"].as_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let all: Vec<Ipv6Addr> = std::iter::once(primary).chain(secondary).collect();
    let ula = *all
        .iter()
        .find(|a| net.in_ula_range(**a))
        .unwrap_or_else(|| panic!("no ULA from {} in {all:?}", net.ula_node()));
    let gua = *all
        .iter()
        .find(|a| net.in_gua_range(**a))
        .unwrap_or_else(|| panic!("no GUA from {} in {all:?}", net.gua_node()));
    assert_eq!(all.len(), 2, "exactly one ULA and one GUA: {all:?}");
    (ula, gua)
}

/// Global IPv6 addresses on `dev` inside the container.
fn global_addrs(pm: &Podman, name: &str, dev: &str) -> Vec<String> {
    pm.exec_ok(
        name,
        &[
            "ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "global",
        ],
    )
    .lines()
    .filter_map(|l| {
        let mut w = l.split_whitespace();
        w.position(|x| x == "inet6")?;
        w.next().map(str::to_string)
    })
    .collect()
}

fn ping(pm: &Podman, from: &str, to: Ipv6Addr) {
    let to = to.to_string();
    let out = retry(5, || {
        pm.exec(from, &["ping", "-6", "-c", "1", "-W", "2", &to])
    });
    assert!(
        out.status.success(),
        "{}",
        conformance::realruntime::describe(&format!("{from}: ping -6 {to}"), &out)
    );
}

fn ping_from_node(pm: &Podman, to: Ipv6Addr) {
    let to = to.to_string();
    let out = retry(5, || {
        pm.node
            .exec(&["/bin/busybox", "ping", "-6", "-c", "1", "-W", "2", &to])
    });
    assert!(
        out.status.success(),
        "node: ping {to}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Everything an attachment leaves on the node is gone.
fn assert_nothing_left(pm: &Podman, net: &Cni6Net, id: &str) {
    assert_eq!(
        host_veths_of(&pm.node, id),
        Vec::<String>::new(),
        "host veth left"
    );
    assert_eq!(
        records_of(&pm.data_dir, &net.name, id),
        Vec::<Value>::new(),
        "ipam-prefix record left"
    );
    assert_eq!(
        firewall_rules_of(&pm.node, id),
        Vec::<String>::new(),
        "firewall6 rules left"
    );
    assert_eq!(
        libcni_cache_of(&net.name, id),
        Vec::<String>::new(),
        "libcni cache entry left"
    );
}

#[test]
fn two_containers_get_ula_and_gua_and_reach_each_other() {
    let net = Cni6Net::new("c6pm", 1);
    let pm = Podman::new("c6pm", vec![net.clone()]);
    let a = pm.start_container("a", &[]);
    let b = pm.start_container("b", &[]);

    let (a_ula, a_gua) = podman_addrs(&pm, "a", &net);
    let (b_ula, b_gua) = podman_addrs(&pm, "b", &net);
    // Same interface id in both ranges (docs/design.md: one slot, every range).
    assert_eq!(Cni6Net::slot_of(a_ula), Cni6Net::slot_of(a_gua));
    assert_eq!(Cni6Net::slot_of(b_ula), Cni6Net::slot_of(b_gua));
    assert_ne!(a_ula, b_ula);
    assert!(Cni6Net::slot_of(a_ula) >= 0x10, "pods start at ::10");

    for (name, ula, gua) in [("a", a_ula, a_gua), ("b", b_ula, b_gua)] {
        let addrs = global_addrs(&pm, name, "eth0");
        assert!(addrs.contains(&format!("{ula}/96")), "{name}: {addrs:?}");
        assert!(addrs.contains(&format!("{gua}/96")), "{name}: {addrs:?}");
        // No IPv4 besides lo.
        let v4 = pm.exec_ok(name, &["ip", "-4", "-o", "addr", "show"]);
        let non_lo: Vec<&str> = v4.lines().filter(|l| !l.contains(" lo ")).collect();
        assert!(non_lo.is_empty(), "{name} has IPv4: {v4}");
        let routes = pm.exec_ok(name, &["ip", "-6", "route", "show", "default"]);
        assert!(
            routes.contains(&format!("default via {} dev eth0", net.ula_gateway())),
            "{name}: default route {routes:?}"
        );
        assert_eq!(routes.lines().count(), 1, "{name}: one default route");
    }

    // Pod to pod, pod to gateway, over ULA and GUA; node to pods.
    ping(&pm, "a", b_ula);
    ping(&pm, "a", b_gua);
    ping(&pm, "b", a_ula);
    ping(&pm, "b", a_gua);
    ping(&pm, "a", net.ula_gateway());
    ping(&pm, "a", net.gua_gateway());
    ping_from_node(&pm, a_ula);
    ping_from_node(&pm, b_gua);

    // TCP: busybox httpd in b, an HTTP request with nc from a, over the
    // ULA and the GUA. (busybox-static's wget crashes in a rootfs without
    // glibc's NSS files; nc with a numeric address does not resolve.)
    pm.ok(&["exec", "-d", "b", "httpd", "-f", "-p", "8080", "-h", "/www"]);
    for addr in [b_ula, b_gua] {
        let script = format!("printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {addr} 8080");
        let got = retry(5, || {
            let o = pm.exec("a", &["sh", "-c", &script]);
            if String::from_utf8_lossy(&o.stdout).contains("cni6") {
                o
            } else {
                // Not an answer yet (httpd starting): a failure to retry.
                std::process::Output {
                    status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
                    ..o
                }
            }
        });
        assert!(
            got.status.success(),
            "{}",
            conformance::realruntime::describe(&format!("a: {script}"), &got)
        );
    }

    // The store records what podman asked for.
    for id in [&a, &b] {
        let recs = records_of(&pm.data_dir, &net.name, id);
        assert_eq!(recs.len(), 1, "one record for {id}: {recs:?}");
        assert_eq!(recs[0]["ifname"], "eth0");
        assert_eq!(libcni_cache_of(&net.name, id).len(), 1);
        assert!(!firewall_rules_of(&pm.node, id).is_empty());
    }
}

#[test]
fn stop_start_and_rm_remove_and_restore_networking() {
    let net = Cni6Net::new("c6ps", 2);
    let pm = Podman::new("c6ps", vec![net.clone()]);
    let id = pm.start_container("s", &[]);
    assert_eq!(host_veths_of(&pm.node, &id).len(), 1);
    assert_eq!(records_of(&pm.data_dir, &net.name, &id).len(), 1);

    // stop: podman's CNI DEL through the whole chain.
    pm.ok(&["stop", "s"]);
    assert_nothing_left(&pm, &net, &id);

    // start: a fresh ADD; the container is reachable again.
    pm.ok(&["start", "s"]);
    assert_eq!(host_veths_of(&pm.node, &id).len(), 1, "veth back");
    assert_eq!(records_of(&pm.data_dir, &net.name, &id).len(), 1);
    assert!(!firewall_rules_of(&pm.node, &id).is_empty());
    let (ula, gua) = podman_addrs(&pm, "s", &net);
    ping_from_node(&pm, ula);
    ping_from_node(&pm, gua);

    // rm -f of a running container: nothing left anywhere.
    pm.ok(&["rm", "-f", "-t", "0", "s"]);
    assert_nothing_left(&pm, &net, &id);
}

#[test]
fn one_container_on_two_networks_like_multus() {
    let a = Cni6Net::new("c6pa", 3);
    let b = Cni6Net::new("c6pb", 4);
    let pm = Podman::new("c6pm2", vec![a.clone(), b.clone()]);
    let id = pm.start_container("m", &["--network", &a.name, "--network", &b.name]);

    // Both attachments, same container id; podman picks the ifnames
    // (eth0/eth1) in an order it does not guarantee.
    let ra = records_of(&pm.data_dir, &a.name, &id);
    let rb = records_of(&pm.data_dir, &b.name, &id);
    assert_eq!((ra.len(), rb.len()), (1, 1), "{ra:?} {rb:?}");
    let mut ifnames = vec![
        ra[0]["ifname"].as_str().unwrap().to_string(),
        rb[0]["ifname"].as_str().unwrap().to_string(),
    ];
    ifnames.sort();
    assert_eq!(ifnames, ["eth0", "eth1"]);
    assert_eq!(host_veths_of(&pm.node, &id).len(), 2);
    for (net, rec) in [(&a, &ra[0]), (&b, &rb[0])] {
        let dev = rec["ifname"].as_str().unwrap();
        let (ula, gua) = podman_addrs(&pm, "m", net);
        let addrs = global_addrs(&pm, "m", dev);
        assert!(
            addrs.contains(&format!("{ula}/96")) && addrs.contains(&format!("{gua}/96")),
            "{dev} on {}: {addrs:?}",
            net.name
        );
        ping_from_node(&pm, ula);
    }
    // Exactly one default route (bridge6: never an ECMP default).
    let routes = pm.exec_ok("m", &["ip", "-6", "route", "show", "default"]);
    assert_eq!(routes.lines().count(), 1, "one default route: {routes:?}");

    pm.ok(&["rm", "-f", "-t", "0", "m"]);
    assert_nothing_left(&pm, &a, &id);
    assert_nothing_left(&pm, &b, &id);
}

/// A plugin error reaches the podman user in podman's own words, with the
/// plugin's message inside, and the failed attachment leaves nothing.
#[test]
fn plugin_error_shows_in_podmans_stderr() {
    let good = Cni6Net::new("c6pe", 5);
    let pm = Podman::new("c6pe", vec![good.clone()]);
    let bad = Cni6Net::new("c6pebad", 6);
    let mut conf = bad.conflist("1.0.0", &pm.data_dir);
    // A ULA node prefix inside the cluster's reserved virtual-IP range.
    conf["plugins"][0]["ipam"]["prefixes"][0]["node"] = serde_json::json!("fd00:c6:5:6::/80");
    std::fs::write(
        pm.dir.join("net.d").join(format!("{}.conflist", bad.name)),
        serde_json::to_vec(&conf).unwrap(),
    )
    .unwrap();
    let rootfs = format!("{}:O", pm.dir.join("rootfs").display());
    let out = pm.run(&[
        "run",
        "-d",
        "--name",
        "e",
        "--network",
        &bad.name,
        "--rootfs",
        &rootfs,
        "/bin/sh",
        "-c",
        "sleep 60",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "podman run must fail: {stderr}");
    assert!(
        stderr.contains("plugin type=\"bridge6\" failed (add)")
            && stderr.contains("ipam.prefixes[0].node"),
        "podman's error should carry the plugin's message: {stderr}"
    );
    assert_eq!(store_records(&pm.data_dir, &bad.name), Vec::<Value>::new());
    let links = pm.node.exec_ok(&["ip", "-o", "link", "show"]);
    assert!(!links.contains(" id="), "no veth left: {links}");
}
