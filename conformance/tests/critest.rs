//! critest's networking conformance (cri-tools v1.37.x, built by
//! scripts/peers.sh with `go test -c ./cmd/critest`) against containerd 2
//! with cni6 at cniVersion 1.1.0 as its network.
//!
//! No registry: critest looks an image up with ImageStatus before it would
//! pull it, so its busybox and web server images are built here from
//! Debian's busybox-static (like the pause image) and imported with ctr;
//! `-test-images-file` names them.
//!
//! Of the four Networking specs, two apply to an IPv6-only pod and run
//! here: "DNS config" and "set hostname". The two port-mapping specs
//! cannot pass against any IPv6-only pod network, for reasons in critest
//! (docs/ecosystem.md quotes its code): "only container port" builds its
//! URL as `"http://" + ip + ":" + port` without brackets, which Go's HTTP
//! client cannot dial for an IPv6 address ("too many colons"); "host port
//! and container port" fetches `http://127.0.0.1:12000`, IPv4 loopback,
//! which no DNAT can send to an IPv6 pod. What those specs check is proved
//! over IPv6 in `container_port_and_host_port_over_ipv6` below (upstream
//! portmap chained after firewall6).

use conformance::harness::{self, reference, Netns};
use conformance::realruntime::{
    build_busybox_image, describe, in_netns, node_command, Cni6Net, Containerd, ContainerdSpec,
    PeerNode,
};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// `GET /` from inside `ns` (the connecting thread enters it), a few
/// tries a second apart; the response text or the last error.
fn http_get(ns: &Netns, to: SocketAddr) -> String {
    in_netns(ns, || {
        let mut last = String::new();
        for _ in 0..5 {
            let attempt = || -> std::io::Result<String> {
                let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
                s.set_read_timeout(Some(Duration::from_secs(3)))?;
                s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
                let mut body = String::new();
                s.read_to_string(&mut body)?;
                Ok(body)
            };
            match attempt() {
                Ok(body) => return body,
                Err(e) => last = format!("GET http://{to}/: {e}"),
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        last
    })
}

const BUSYBOX: &str = "localhost/cni6-busybox:1";
const WEB: &str = "localhost/cni6-web:1";

#[test]
fn critest_networking_dns_config_and_hostname() {
    let cd = Containerd::start_v2(
        "c6ct2",
        Cni6Net::new("c6ct2", 60),
        ContainerdSpec::default(),
    );
    let busybox = build_busybox_image(&cd.dir.join("img-busybox"), BUSYBOX, &["/bin/sh"]);
    cd.import_image(&busybox);
    let web = build_busybox_image(
        &cd.dir.join("img-web"),
        WEB,
        &["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
    );
    cd.import_image(&web);
    let images = cd.dir.join("test-images.yaml");
    std::fs::write(
        &images,
        format!("defaultTestContainerImage: {BUSYBOX}\nwebServerTestImage: {WEB}\n"),
    )
    .unwrap();
    let endpoint = format!("unix://{}", cd.socket().display());
    let out = node_command(&cd.node, harness::peer("critools", "critest"))
        .arg(format!("-runtime-endpoint={endpoint}"))
        .arg(format!("-image-endpoint={endpoint}"))
        .arg(format!("-test-images-file={}", images.display()))
        .arg("-ginkgo.focus=Networking.*runtime should support (DNS config|set hostname)")
        .arg("-ginkgo.no-color")
        .current_dir(cd.dir.path())
        .output()
        .expect("spawn critest");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        describe("critest Networking", &out),
        cd.log_tail()
    );
    assert!(
        text.contains("Ran 2 of") && text.contains("2 Passed") && text.contains("0 Failed"),
        "critest ran the two specs: {text}"
    );
    println!(
        "{}",
        text.lines()
            .filter(|l| l.contains("Ran ") || l.contains("Passed"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Every sandbox critest made got its network from cni6 and lost it again.
    let calls = cd.calls();
    assert!(
        calls.iter().filter(|c| c.starts_with("ADD ")).count() >= 2,
        "{calls:?}"
    );
    assert!(calls.iter().all(|c| c.ends_with(" rc=0")), "{calls:?}");
}

/// What critest's two port-mapping specs check, over IPv6: a web server in
/// a cni6 pod answers on its pod address (container port), and on the
/// node's address at a host port through upstream `portmap` chained after
/// firewall6 (hostPort), from a client namespace outside the cluster
/// prefixes; firewall6's `allowPorts` admits the DNATed connection.
#[test]
fn container_port_and_host_port_over_ipv6() {
    let mut n = PeerNode::new("c6hp");
    harness::install_as(&reference("portmap"), &n.bin_dir(), "portmap");
    let net = Cni6Net::new("c6hp", 61);
    let mut conf = net.conflist("1.1.0", &n.data_dir());
    conf["plugins"][1]["allowPorts"] = json!([{ "port": 80, "protocol": "tcp" }]);
    conf["plugins"]
        .as_array_mut()
        .unwrap()
        .push(json!({ "type": "portmap", "capabilities": { "portMappings": true } }));
    n.network("10-cni6.conflist", &conf);

    // The node's uplink to a client outside the cluster prefixes.
    let client = Netns::new("c6hpc");
    let (node_if, client_if) = (format!("hpn{}", std::process::id() % 10000), "eth0");
    n.node.exec_ok(&[
        "ip", "link", "add", &node_if, "type", "veth", "peer", "name", "c6hptmp",
    ]);
    n.node
        .exec_ok(&["ip", "link", "set", "c6hptmp", "netns", client.name()]);
    client.exec_ok(&["ip", "link", "set", "c6hptmp", "name", client_if]);
    n.node.exec_ok(&["ip", "link", "set", &node_if, "up"]);
    client.exec_ok(&["ip", "link", "set", client_if, "up"]);
    n.node.add_addr(&node_if, "2001:db8:c7::1/64");
    client.add_addr(client_if, "2001:db8:c7::2/64");

    let pod = Netns::new("c6hpp");
    // A runtime passes the pod's port mappings on ADD and on DEL (portmap
    // finds nothing to remove without them).
    let cnitool = |verb: &str| {
        node_command(&n.node, harness::peer("cnitool", "cnitool"))
            .env("NETCONFPATH", n.conf_dir())
            .env("CNI_PATH", n.bin_dir())
            .env(
                "CAP_ARGS",
                json!({ "portMappings": [
                    { "hostPort": 12000, "containerPort": 80, "protocol": "tcp" } ] })
                .to_string(),
            )
            .args([verb, &net.name])
            .arg(pod.path())
            .output()
            .expect("spawn cnitool")
    };
    let out = cnitool("add");
    assert!(
        out.status.success(),
        "{}",
        describe("cnitool add with portMappings", &out)
    );
    let result: Value = serde_json::from_slice(&out.stdout).expect("result JSON");
    let pod_ip: Ipv6Addr = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{result}"));

    // critest's web server: httpd on port 80 in the pod.
    let www = n.dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "cni6 web\n").unwrap();
    let mut httpd = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            pod.name(),
            "/bin/busybox",
            "httpd",
            "-f",
            "-p",
            "80",
            "-h",
        ])
        .arg(&www)
        .spawn()
        .expect("spawn httpd");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _httpd = Kill(&mut httpd);
    std::thread::sleep(Duration::from_millis(300));

    // Container port: the pod's own address, from the node.
    let page = http_get(&n.node, SocketAddr::new(pod_ip.into(), 80));
    assert!(page.contains("cni6 web"), "container port: {page}");
    // Host port: the node's address from outside, DNATed to the pod.
    let node_addr: Ipv6Addr = "2001:db8:c7::1".parse().unwrap();
    let page = http_get(&client, SocketAddr::new(node_addr.into(), 12000));
    assert!(
        page.contains("cni6 web"),
        "host port 12000 over IPv6: {page}\n{}",
        n.node.exec_ok(&["ip6tables-save", "-t", "nat"])
    );

    let out = cnitool("del");
    assert!(out.status.success(), "{}", describe("cnitool del", &out));
    let nat = n.node.exec_ok(&["ip6tables-save", "-t", "nat"]);
    assert!(
        !nat.contains("dport 12000"),
        "portmap removed its DNAT on DEL: {nat}"
    );
}
