//! firewall6 with real traffic: a node namespace with a bridge and two
//! pods, an outside host (2001:db8:ffff::2, not in clusterPrefixes) and an
//! inside host (fd00:f6::2:1:0:10, in clusterPrefixes), all routed through
//! the node (see conformance::firewall_helpers::Lab). Every probe is a TCP
//! exchange that must also carry the reply back.

use conformance::firewall_helpers::{conf, packet_counts, Lab, Listener};
use conformance::harness::container_id;
use serde_json::json;
use std::net::Ipv6Addr;
use std::time::Duration;

const NET: &str = "cluster";
/// Long enough for a local exchange, short enough that a dropped SYN fails
/// the probe quickly.
const T: Duration = Duration::from_millis(1500);

fn add(lab: &Lab, extra: serde_json::Value) -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for pod in [&lab.a, &lab.b] {
        let cid = container_id("fw6t");
        let c = conf(
            "1.0.0",
            NET,
            extra.clone(),
            &pod.prev_result("1.0.0", &lab.bridge),
        );
        lab.node
            .call(
                &conformance::firewall_helpers::firewall6(),
                "ADD",
                &cid,
                &pod.path(),
                &c,
            )
            .assert_ok();
        out.push((cid, c));
    }
    out
}

fn del(lab: &Lab, added: &[(String, serde_json::Value)]) {
    for (cid, c) in added {
        lab.node
            .call(
                &conformance::firewall_helpers::firewall6(),
                "DEL",
                cid,
                "",
                c,
            )
            .assert_silent_ok();
    }
}

/// Before firewall6 the lab is fully open (so every refusal below is the
/// firewall's doing, not a routing gap).
fn assert_open_lab(lab: &Lab) {
    let l = Listener::new(lab.a.ns.path(), lab.a.gua, 8081);
    l.probe_retry(lab.outside.path(), None, T, 4)
        .expect("outside → pod without firewall");
    let l = Listener::new(lab.a.ns.path(), lab.a.ula, 8082);
    l.probe_retry(lab.b.ns.path(), None, T, 4)
        .expect("pod → pod without firewall");
}

#[test]
fn cluster_only_policy_with_real_traffic() {
    let lab = Lab::new();
    assert_open_lab(&lab);
    let added = add(
        &lab,
        json!({"allowPorts": [{"port": 443, "protocol": "tcp"}, {"port": "8000-8010", "protocol": "tcp"}]}),
    );

    // Outside → pod on a port not allowed: refused (dropped).
    let l = Listener::new(lab.a.ns.path(), lab.a.gua, 8081);
    let e = l.probe(lab.outside.path(), None, T).unwrap_err();
    assert!(e.contains("connect"), "{e}");
    // Outside → pod on allowed ports (a single port and a range).
    let l443 = Listener::new(lab.a.ns.path(), lab.a.gua, 443);
    assert_eq!(
        l443.probe(lab.outside.path(), None, T).unwrap(),
        lab.outside_addr
    );
    let l8005 = Listener::new(lab.a.ns.path(), lab.a.gua, 8005);
    l8005
        .probe(lab.outside.path(), None, T)
        .expect("outside → allowed range");
    // Pod → outside: allowed, and the reply comes back (conntrack).
    let lo = Listener::new(lab.outside.path(), lab.outside_addr, 9000);
    assert_eq!(lo.probe(lab.a.ns.path(), None, T).unwrap(), lab.a.gua);
    // Inside (clusterPrefixes source) → pod on any port.
    let li = Listener::new(lab.a.ns.path(), lab.a.ula, 8082);
    assert_eq!(
        li.probe(lab.inside.path(), None, T).unwrap(),
        lab.inside_addr
    );
    // Pod → pod on the same bridge, ULA to ULA: inside the cluster.
    let lb = Listener::new(lab.b.ns.path(), lab.b.ula, 8083);
    assert_eq!(lb.probe(lab.a.ns.path(), None, T).unwrap(), lab.a.ula);
    // Pod → pod GUA to GUA: counts as outside (GUA not in clusterPrefixes).
    let lg = Listener::new(lab.b.ns.path(), lab.b.gua, 8084);
    assert!(lg.probe(lab.a.ns.path(), Some(lab.a.gua), T).is_err());

    // After DEL the rules are really removed, and a pod without them is no
    // source anyone accepts from the bridge (fail closed).
    del(&lab, &added);
    for (cid, _) in &added {
        assert!(
            lab.node.pod_rules(NET, cid).is_empty(),
            "{cid}'s rules left"
        );
    }
    let l = Listener::new(lab.a.ns.path(), lab.a.gua, 8085);
    assert!(l.probe(lab.outside.path(), None, T).is_err(), "after DEL");
}

#[test]
fn open_ingress_accepts_outside() {
    let lab = Lab::new();
    let added = add(&lab, json!({"ingress": "open"}));
    let l = Listener::new(lab.a.ns.path(), lab.a.gua, 8081);
    assert_eq!(
        l.probe(lab.outside.path(), None, T).unwrap(),
        lab.outside_addr
    );
    let lo = Listener::new(lab.outside.path(), lab.outside_addr, 9001);
    lo.probe(lab.b.ns.path(), None, T).expect("pod → outside");
    del(&lab, &added);
}

/// A pod that puts a foreign address on its interface and sends from it
/// reaches no one: not the other pod on the bridge (bridged, physdev), not
/// the outside or inside hosts (routed). Its genuine addresses still work.
#[test]
fn spoofed_source_reaches_no_one() {
    let lab = Lab::new();
    let foreign: Ipv6Addr = "fd00:f6::1:1:0:99".parse().unwrap();
    lab.a.ns.add_addr("eth0", &format!("{foreign}/128"));
    // Control: without firewall6 the spoofed source gets through everywhere.
    let lb = Listener::new(lab.b.ns.path(), lab.b.ula, 7001);
    assert_eq!(
        lb.probe_retry(lab.a.ns.path(), Some(foreign), T, 4)
            .unwrap(),
        foreign
    );
    let lo = Listener::new(lab.outside.path(), lab.outside_addr, 7002);
    assert_eq!(
        lo.probe_retry(lab.a.ns.path(), Some(foreign), T, 4)
            .unwrap(),
        foreign
    );

    let added = add(&lab, json!({"ingress": "open"}));
    let lb = Listener::new(lab.b.ns.path(), lab.b.ula, 7003);
    assert!(
        lb.probe(lab.a.ns.path(), Some(foreign), T).is_err(),
        "same bridge"
    );
    let lo = Listener::new(lab.outside.path(), lab.outside_addr, 7004);
    assert!(
        lo.probe(lab.a.ns.path(), Some(foreign), T).is_err(),
        "routed outside"
    );
    let li = Listener::new(lab.inside.path(), lab.inside_addr, 7005);
    assert!(
        li.probe(lab.a.ns.path(), Some(foreign), T).is_err(),
        "routed inside"
    );
    // Spoofing the OTHER pod's address fails too (per-port source check).
    lab.a.ns.add_addr("eth0", "fd00:f6::1:1:0:11/128");
    let lo = Listener::new(lab.outside.path(), lab.outside_addr, 7006);
    assert!(
        lo.probe(lab.a.ns.path(), Some(lab.b.ula), T).is_err(),
        "other pod's address"
    );
    lab.a.ns.exec_ok(&[
        "ip",
        "-6",
        "addr",
        "del",
        "fd00:f6::1:1:0:11/128",
        "dev",
        "eth0",
    ]);
    // Genuine sources pass.
    let lb = Listener::new(lab.b.ns.path(), lab.b.ula, 7007);
    assert_eq!(
        lb.probe(lab.a.ns.path(), Some(lab.a.ula), T).unwrap(),
        lab.a.ula
    );
    let lo = Listener::new(lab.outside.path(), lab.outside_addr, 7008);
    assert_eq!(
        lo.probe(lab.a.ns.path(), Some(lab.a.gua), T).unwrap(),
        lab.a.gua
    );
    del(&lab, &added);
}

/// conformance.md #56: chained after a foreign interface plugin (the reference
/// `ptp` with `host-local`): prevResult names one host interface, a routed
/// veth, so the source check matches it with `-i` (catch-all port bucket).
/// Policy and source check hold with real traffic; DEL removes the rules.
#[test]
fn chained_after_reference_ptp() {
    // conformance.md #56
    let lab = Lab::new();
    let p = PtpPod::add(&lab, "fw6ptp");
    let (pod, cid, prev, addr, host_veth) = (&p.pod, &p.cid, &p.prev, p.addr, &p.host_veth);
    let fc = conf("1.0.0", NET, json!({}), prev);
    let out = lab.node.call(
        &conformance::firewall_helpers::firewall6(),
        "ADD",
        cid,
        &pod.path_str(),
        &fc,
    );
    // stdout ≡ prevResult (an empty `dns` object means no DNS: omitted).
    let mut expect = prev.clone();
    expect.as_object_mut().unwrap().remove("dns");
    assert_eq!(*out.assert_ok(), expect);
    let rules = lab.node.pod_rules(NET, cid);
    assert!(
        rules
            .iter()
            .any(|l| l.starts_with("-A CNI6-P-OTHER ") && l.contains(&format!("-i {host_veth} "))),
        "{rules:#?}"
    );
    // Inside → pod (any port), outside → pod refused except 443.
    let li = Listener::new(pod.path(), addr, 8081);
    assert_eq!(
        li.probe_retry(lab.inside.path(), None, T, 4).unwrap(),
        lab.inside_addr
    );
    let lo = Listener::new(pod.path(), addr, 8082);
    assert!(lo.probe(lab.outside.path(), None, T).is_err());
    let l443 = Listener::new(pod.path(), addr, 443);
    l443.probe(lab.outside.path(), None, T)
        .expect("allowed port");
    // Genuine source out: fine; a foreign one: dropped.
    let lx = Listener::new(lab.outside.path(), lab.outside_addr, 9002);
    assert_eq!(lx.probe(pod.path(), Some(addr), T).unwrap(), addr);
    let foreign: Ipv6Addr = "fd00:f6::3:0:99".parse().unwrap();
    pod.add_addr("eth0", &format!("{foreign}/128"));
    let lx = Listener::new(lab.outside.path(), lab.outside_addr, 9003);
    assert!(lx.probe(pod.path(), Some(foreign), T).is_err());
    // DEL in reverse order, as a runtime does.
    lab.node
        .call(
            &conformance::firewall_helpers::firewall6(),
            "DEL",
            cid,
            &pod.path_str(),
            &fc,
        )
        .assert_silent_ok();
    assert!(lab.node.pod_rules(NET, cid).is_empty());
    p.del(&lab);
}

/// A pod attached by the reference `ptp` with `host-local` (a routed veth,
/// one host interface in prevResult), before firewall6.
struct PtpPod {
    pod: conformance::harness::Netns,
    _data: conformance::harness::TempDir,
    ptp: std::path::PathBuf,
    conf: serde_json::Value,
    cid: String,
    prev: serde_json::Value,
    addr: Ipv6Addr,
    host_veth: String,
}

impl PtpPod {
    fn add(lab: &Lab, tag: &str) -> PtpPod {
        let pod = conformance::harness::Netns::new(conformance::firewall_helpers::PREFIX);
        let data = conformance::harness::TempDir::new(tag);
        let ptp = conformance::harness::reference("ptp");
        let conf = json!({
            "cniVersion": "1.0.0", "name": NET, "type": "ptp", "ipMasq": false,
            "ipam": {"type": "host-local", "dataDir": data.path_str(),
                     "ranges": [[{"subnet": "fd00:f6::3:0:0/96"}]], "routes": [{"dst": "::/0"}]}
        });
        let cid = container_id(tag);
        let prev = lab
            .node
            .call(&ptp, "ADD", &cid, &pod.path_str(), &conf)
            .assert_ok()
            .clone();
        let addr: Ipv6Addr = prev["ips"][0]["address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let host_veth = prev["interfaces"][0]["name"].as_str().unwrap().to_string();
        PtpPod {
            pod,
            _data: data,
            ptp,
            conf,
            cid,
            prev,
            addr,
            host_veth,
        }
    }

    /// ptp's DEL, after firewall6's (reverse order, as a runtime does).
    fn del(mut self, lab: &Lab) {
        self.conf["prevResult"] = self.prev.clone();
        lab.node
            .call(
                &self.ptp,
                "DEL",
                &self.cid,
                &self.pod.path_str(),
                &self.conf,
            )
            .assert_silent_ok();
    }
}

/// Send `n` UDP datagrams to ff02::1 (all nodes) out of `eth0` of the pod
/// namespace `pod`, from `source`.
fn send_multicast(pod: &std::path::Path, source: Ipv6Addr, port: u16, n: u32) {
    let ns = cni_common::netns::NetNs::open(pod).expect("open pod netns");
    ns.run(|| {
        let sock = std::net::UdpSocket::bind(std::net::SocketAddrV6::new(source, 0, 0, 0))
            .expect("bind sender");
        // SAFETY: a NUL-terminated name.
        let idx = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
        assert_ne!(idx, 0, "eth0 in the pod");
        let dst = std::net::SocketAddrV6::new("ff02::1".parse().unwrap(), port, 0, idx);
        for _ in 0..n {
            sock.send_to(b"mcast", dst).expect("send multicast");
        }
    })
    .expect("enter pod netns");
}

/// A UDP socket on `[::]:port` inside `pod` (ff02::1 is joined by every
/// interface); counts what arrives within a short wait.
fn multicast_receiver(pod: &std::path::Path, port: u16) -> std::net::UdpSocket {
    let ns = cni_common::netns::NetNs::open(pod).expect("open pod netns");
    let sock = ns
        .run(|| {
            std::net::UdpSocket::bind(std::net::SocketAddrV6::new(
                Ipv6Addr::UNSPECIFIED,
                port,
                0,
                0,
            ))
        })
        .expect("enter pod netns")
        .expect("bind receiver");
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    sock
}

fn received(sock: &std::net::UdpSocket) -> u32 {
    let mut n = 0;
    let mut buf = [0u8; 64];
    while sock.recv_from(&mut buf).is_ok() {
        n += 1;
    }
    n
}

/// Packet counter of the first rule of `chain` whose text contains
/// `needle` (`ip6tables -v -S`: `… -c <packets> <bytes>`).
fn counter(lab: &Lab, chain: &str, needle: &str) -> u64 {
    let out = lab.node.ip6tables(&["-v", "-S", chain]);
    packet_counts(&out)
        .into_iter()
        .find(|(l, _)| l.contains(needle))
        .unwrap_or_else(|| panic!("no rule with {needle:?} in {out}"))
        .1
}

/// Issue 7: multicast destinations leave CNI6-INGRESS at its first rule,
/// before the per-pod dispatch (no pod policy matches them), once per
/// flooded copy; the verdict is unchanged: a pod's multicast with its
/// genuine global source reaches the other pod, with a foreign source it
/// is dropped by the source check first.
#[test]
fn multicast_skips_pod_dispatch_but_not_the_source_check() {
    let lab = Lab::new();
    let added = add(&lab, json!({}));
    let rx = multicast_receiver(lab.b.ns.path(), 5353);
    lab.node.ip6tables(&["-Z"]);
    send_multicast(lab.a.ns.path(), lab.a.ula, 5353, 20);
    assert_eq!(received(&rx), 20, "genuine multicast from a reaches b");
    let mc = counter(&lab, "CNI6-INGRESS", "-d ff00::/8");
    assert!(mc >= 20, "multicast RETURN counted {mc}");
    // ff02::1: low byte 01, group 0; no copy walked the address dispatch.
    assert_eq!(counter(&lab, "CNI6-DX-0", "-d ::1/::ff"), 0);

    let foreign: Ipv6Addr = "fd00:f6::1:1:0:99".parse().unwrap();
    lab.a.ns.add_addr("eth0", &format!("{foreign}/128"));
    send_multicast(lab.a.ns.path(), foreign, 5353, 20);
    assert_eq!(received(&rx), 0, "spoofed multicast from a is dropped");
    // (Other multicast, MLD reports with link-local sources, may pass
    // meanwhile: counters are compared with the 20 sent.)
    let after = counter(&lab, "CNI6-INGRESS", "-d ff00::/8");
    assert!(
        after - mc < 20,
        "spoofed copies reached CNI6-INGRESS: {mc} → {after}"
    );
    // Dropped by the source check: the DROP of the bucket of the foreign
    // source's low byte (0x99).
    let bucket = lab.node.ip6tables(&["-v", "-S", "CNI6-S-99"]);
    let (_, dropped) = packet_counts(&bucket)
        .into_iter()
        .find(|(l, _)| l.ends_with("-j DROP"))
        .expect("the bucket's DROP rule");
    assert!(dropped >= 20, "the source check dropped {dropped}");
    del(&lab, &added);
}

/// Issue 20: after its first packet a pod's flow takes CNI6-FROM-POD's
/// `RELATED,ESTABLISHED` accept and no longer walks the address dispatch
/// to the destination's policy; a packet that crossed no bridge port (the
/// inside host's) leaves CNI6-ANTISPOOF at its first rule, and once its
/// flow is established CNI6-TO-PODS accepts it. Verdicts stay
/// the policy's: the flows work, the outside stays refused.
#[test]
fn established_flows_and_unbridged_packets_take_the_shortcuts() {
    let lab = Lab::new();
    let added = add(&lab, json!({}));
    Listener::new(lab.b.ns.path(), lab.b.ula, 8083)
        .probe_retry(lab.a.ns.path(), None, T, 4)
        .expect("pod a → pod b");
    lab.node.ip6tables(&["-Z"]);
    let payload = vec![0x5a_u8; 1 << 20];
    conformance::topology::tcp_echo(
        lab.b.ns.path(),
        lab.b.ula,
        lab.a.ns.path(),
        &payload,
        Duration::from_secs(10),
    )
    .expect("1 MiB echoed pod a → pod b");
    let established = counter(&lab, "CNI6-FROM-POD", "--ctstate RELATED,ESTABLISHED");
    let walked = counter(&lab, "CNI6-FROM-POD", "-j CNI6-INGRESS");
    assert!(
        established >= 16,
        "1 MiB each way in at most 64 KiB packets, accepted as established: {established}"
    );
    assert!(
        walked <= 2,
        "only a flow's first packet walks to the policy, {walked} did"
    );

    lab.node.ip6tables(&["-Z"]);
    Listener::new(lab.a.ns.path(), lab.a.ula, 8084)
        .probe_retry(lab.inside.path(), None, T, 4)
        .expect("inside → pod a");
    let guard = counter(&lab, "CNI6-ANTISPOOF", "! --physdev-is-in");
    assert!(
        guard >= 2,
        "inside → pod packets taken by the guard: {guard}"
    );
    // The inside host's flow to pod a: after its first packet, CNI6-TO-PODS
    // accepts it before the address dispatch.
    lab.node.ip6tables(&["-Z"]);
    conformance::topology::tcp_echo(
        lab.a.ns.path(),
        lab.a.ula,
        lab.inside.path(),
        &payload,
        Duration::from_secs(10),
    )
    .expect("1 MiB echoed inside → pod a");
    let to_pods = counter(&lab, "CNI6-TO-PODS", "--ctstate RELATED,ESTABLISHED");
    let group = std::net::Ipv6Addr::from(u128::from(lab.a.ula.octets()[15] & 0xf0));
    let dispatched = counter(&lab, "CNI6-INGRESS", &format!("-d {group}/::f0 "));
    assert!(
        to_pods >= 16,
        "1 MiB each way, the inside host's packets accepted as established: {to_pods}"
    );
    assert!(
        dispatched <= 2,
        "only the flow's first packet walks the address dispatch, {dispatched} did"
    );
    assert!(Listener::new(lab.a.ns.path(), lab.a.gua, 8085)
        .probe(lab.outside.path(), None, T)
        .is_err());
    del(&lab, &added);
}

/// A UDP socket bound to `[addr]:port` inside the namespace `ns`.
fn udp_in(ns: &std::path::Path, addr: Ipv6Addr, port: u16) -> std::net::UdpSocket {
    let sock = cni_common::netns::NetNs::open(ns)
        .expect("open netns")
        .run(|| std::net::UdpSocket::bind(std::net::SocketAddrV6::new(addr, port, 0, 0)))
        .expect("enter netns")
        .expect("bind udp");
    sock.set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    sock
}

/// What `sock` receives within its read timeout (payloads), at most `n`.
fn datagrams(sock: &std::net::UdpSocket, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 128];
    while out.len() < n {
        match sock.recv_from(&mut buf) {
            Ok((len, _)) => out.push(buf[..len].to_vec()),
            Err(_) => break,
        }
    }
    out
}

/// Issue 20: CNI6-TO-PODS accepts packets of established flows going out
/// to a bridge's pods without the destination dispatch, but only after
/// the routed pods' source check. A routed pod (the reference `ptp`) that
/// forges the source of an established flow to a bridged pod (an inside
/// host's UDP flow, its tuple known) is dropped by its `-i` rule in
/// CNI6-P-OTHER and never reaches the shortcut; the genuine host's next
/// datagram of the same flow takes the shortcut.
#[test]
fn routed_pod_cannot_ride_an_established_flow_to_a_bridged_pod() {
    let lab = Lab::new();
    let added = add(&lab, json!({}));
    let p = PtpPod::add(&lab, "fw6inj");
    let (pod, cid, prev, own, host_veth) = (&p.pod, &p.cid, &p.prev, p.addr, &p.host_veth);
    let fw = conformance::firewall_helpers::firewall6();
    let fc = conf("1.0.0", NET, json!({}), prev);
    lab.node
        .call(&fw, "ADD", cid, &pod.path_str(), &fc)
        .assert_ok();

    // The flow: pod a ([ula]:7001) → inside host ([addr]:7002), answered.
    let (pa, pi) = (7001, 7002);
    let a_sock = udp_in(lab.a.ns.path(), lab.a.ula, pa);
    let i_sock = udp_in(lab.inside.path(), lab.inside_addr, pi);
    let to_inside = std::net::SocketAddrV6::new(lab.inside_addr, pi, 0, 0);
    let to_a = std::net::SocketAddrV6::new(lab.a.ula, pa, 0, 0);
    a_sock.send_to(b"hello", to_inside).unwrap();
    assert_eq!(datagrams(&i_sock, 1), vec![b"hello".to_vec()]);
    lab.node.ip6tables(&["-Z"]);
    i_sock.send_to(b"genuine-1", to_a).unwrap();
    assert_eq!(datagrams(&a_sock, 1), vec![b"genuine-1".to_vec()]);
    let shortcut = counter(&lab, "CNI6-TO-PODS", "--ctstate RELATED,ESTABLISHED");
    assert!(shortcut >= 1, "the reply took CNI6-TO-PODS: {shortcut}");

    // The routed pod resolves its gateway with datagrams of its own (ptp's
    // gateway address may still be tentative; a neighbour solicitation
    // from a forged source would be answered to the inside host), then
    // sends the inside host's next datagram of that flow.
    let own_sock = udp_in(pod.path(), own, 7003);
    let reached = (0..10).any(|_| {
        own_sock.send_to(b"own", to_a).unwrap();
        !datagrams(&a_sock, 1).is_empty()
    });
    assert!(reached, "the routed pod reaches pod a with its own source");
    datagrams(&a_sock, 10);
    pod.add_addr("eth0", &format!("{}/128", lab.inside_addr));
    let forger = udp_in(pod.path(), lab.inside_addr, pi);
    for _ in 0..5 {
        forger.send_to(b"forged", to_a).unwrap();
    }
    assert!(
        datagrams(&a_sock, 5).is_empty(),
        "a datagram with a forged source rode the established flow"
    );
    let listing = lab.node.ip6tables(&["-v", "-S", "CNI6-P-OTHER"]);
    let drops = packet_counts(&listing)
        .into_iter()
        .find(|(l, _)| l.contains(&format!("-i {host_veth} ")) && l.contains("-j DROP"))
        .unwrap_or_else(|| panic!("no DROP for {host_veth} in {listing}"))
        .1;
    assert!(
        drops >= 5,
        "the routed pod's DROP counted {drops}: {listing}"
    );
    assert_eq!(
        counter(&lab, "CNI6-TO-PODS", "--ctstate RELATED,ESTABLISHED"),
        shortcut,
        "a forged datagram reached CNI6-TO-PODS"
    );
    // The flow itself still works.
    i_sock.send_to(b"genuine-2", to_a).unwrap();
    assert_eq!(datagrams(&a_sock, 1), vec![b"genuine-2".to_vec()]);

    lab.node
        .call(&fw, "DEL", cid, &pod.path_str(), &fc)
        .assert_silent_ok();
    p.del(&lab);
    del(&lab, &added);
}
