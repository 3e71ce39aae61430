//! cni6 on a real Kubernetes cluster (issue 17): `scripts/k8s-lab.sh up`
//! builds an IPv6-only cluster from the upstream sources scripts/peers.sh
//! compiled (kube-apiserver, controller-manager, scheduler, etcd on the
//! host; per node a network + mount namespace with containerd 2, kubelet
//! and kube-proxy), applies deploy/daemonset.yaml as printed and CoreDNS.
//! This test then runs a Deployment on it and checks what an operator
//! would: addresses from each node's prefixes, pod-to-pod across nodes,
//! Services through kube-proxy, DNS, firewall6 against a host outside the
//! cluster, `cni6 status` inside the DaemonSet pod, and that deleting the
//! pods and the DaemonSet leaves nothing behind. `down` runs also when a
//! check fails (the guard's Drop).
//!
//! Missing peers fail the test with the command that builds them (CI
//! builds them with the README's test command).

use conformance::harness::{self, workspace_dir};
use serde_json::Value;
use std::net::Ipv6Addr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CLUSTER_ULA: &str = "fd8c:1f0a:77e3::";
const GUA_BASE: [u16; 3] = [0x2001, 0xdb8, 7];
const NODES: u16 = 2;

fn lab_command(args: &[&str]) -> Command {
    let mut cmd = Command::new("bash");
    cmd.arg(workspace_dir().join("scripts/k8s-lab.sh"))
        .args(args)
        .env("CNI6_K8S_NODES", NODES.to_string());
    cmd
}

fn run(mut cmd: Command, input: Option<&str>) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(text) = input {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin piped")
            .write_all(text.as_bytes())
            .expect("write stdin");
    }
    child.wait_with_output().expect("wait")
}

fn text(out: &Output) -> String {
    format!(
        "exit {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lab; `down` on drop, also while unwinding from a failed check.
/// Its names are fixed (one lab per machine), so runs queue on a lock.
struct Lab {
    _lock: std::fs::File,
}

impl Lab {
    fn up() -> Lab {
        let lock = std::fs::File::create("/run/cni6-k8s-lab.lock").expect("create lab lock");
        // SAFETY: flock on a descriptor we own; blocks until the lab is free.
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock /run/cni6-k8s-lab.lock");
        // A lab left by an interrupted run would be reused as it is.
        let _ = run(lab_command(&["down"]), None);
        let lab = Lab { _lock: lock };
        let t0 = Instant::now();
        let out = run(lab_command(&["up"]), None);
        assert!(out.status.success(), "k8s-lab.sh up: {}", text(&out));
        eprintln!(
            "k8s-lab up in {:.0} s\n{}",
            t0.elapsed().as_secs_f64(),
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn kubectl_out(&self, args: &[&str], input: Option<&str>) -> Output {
        let mut full = vec!["kubectl"];
        full.extend_from_slice(args);
        run(lab_command(&full), input)
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let out = self.kubectl_out(args, None);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn apply(&self, manifest: &str) {
        let out = self.kubectl_out(&["apply", "-f", "-"], Some(manifest));
        assert!(out.status.success(), "kubectl apply: {}", text(&out));
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut full = args.to_vec();
        full.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.kubectl(&full)).expect("kubectl -o json")
    }

    /// `kubectl exec POD -- CMD` (retried while a first packet waits for
    /// neighbour discovery); returns the last output.
    fn exec(&self, pod: &str, cmd: &[&str], tries: u32) -> Output {
        let mut args = vec!["exec", pod, "--"];
        args.extend_from_slice(cmd);
        let mut out = self.kubectl_out(&args, None);
        for _ in 1..tries {
            if out.status.success() {
                break;
            }
            std::thread::sleep(Duration::from_secs(1));
            out = self.kubectl_out(&args, None);
        }
        out
    }

    fn exec_ok(&self, pod: &str, cmd: &[&str]) -> String {
        let out = self.exec(pod, cmd, 10);
        assert!(out.status.success(), "exec {pod} {cmd:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// CMD in node n's network and mount namespaces.
    fn node(&self, n: u16, cmd: &[&str]) -> String {
        let mut full = vec!["node".to_string(), n.to_string()];
        full.extend(cmd.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = full.iter().map(String::as_str).collect();
        let out = run(lab_command(&refs), None);
        assert!(out.status.success(), "node {n} {cmd:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait(&self, what: &str, secs: u64, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !ok() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = run(lab_command(&["down"]), None);
        if !out.status.success() {
            eprintln!("k8s-lab.sh down: {}", text(&out));
        }
    }
}

/// Node n's pod ranges: C:n:1::/96 and G_n:0:1::/96.
fn in_node_ranges(n: u16, ula: Ipv6Addr, gua: Ipv6Addr) -> bool {
    let c: Ipv6Addr = CLUSTER_ULA.parse().unwrap();
    let c = c.segments();
    let u = ula.segments();
    let g = gua.segments();
    u[..4] == c[..4]
        && u[4] == n
        && u[5] == 1
        && u[6] == 0
        && g[..3] == GUA_BASE
        && g[3] == n
        && g[4] == 0
        && g[5] == 1
        && g[6] == 0
        && u[7] == g[7]
}

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: DoNotSchedule
          labelSelector: {matchLabels: {app: web}}
      containers:
        - name: web
          image: localhost/busybox:lab
          imagePullPolicy: Never
          command: ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]
          securityContext:
            capabilities: {add: [NET_RAW]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ipFamilies: [IPv6]
  ports: [{port: 80, targetPort: 80}]
"#;

const NET1_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: net1-pod
  namespace: default
  annotations: {k8s.v1.cni.cncf.io/networks: net1}
spec:
  nodeName: k8slab-n2
  terminationGracePeriodSeconds: 1
  containers:
    - name: sleep
      image: localhost/busybox:lab
      imagePullPolicy: Never
      command: ["/bin/sleep", "3600"]
"#;

fn node_index(node_name: &str) -> u16 {
    node_name
        .strip_prefix("k8slab-n")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("unexpected node name {node_name}"))
}

struct WebPod {
    name: String,
    node: u16,
    ula: Ipv6Addr,
    gua: Ipv6Addr,
}

fn web_pods(lab: &Lab) -> Vec<WebPod> {
    let pods = lab.json(&["get", "pods", "-l", "app=web"]);
    pods["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|p| {
            let name = p["metadata"]["name"].as_str().unwrap().to_string();
            let ips: Vec<Ipv6Addr> = p["status"]["podIPs"]
                .as_array()
                .unwrap_or_else(|| panic!("no podIPs: {}", p["status"]))
                .iter()
                .map(|i| i["ip"].as_str().unwrap().parse().expect("IPv6 pod IP"))
                .collect();
            // kubelet keeps one pod IP per family (the API's rule for
            // podIPs), so status carries the primary, the ULA; the GUA is
            // read from the pod's eth0.
            assert_eq!(ips.len(), 1, "{name}: status.podIPs {ips:?}");
            let addrs = lab.exec_ok(
                &name,
                &[
                    "ip", "-6", "-o", "addr", "show", "dev", "eth0", "scope", "global",
                ],
            );
            let gua = addrs
                .split_whitespace()
                .filter_map(|w| w.split('/').next()?.parse::<Ipv6Addr>().ok())
                .find(|a| a.segments()[..3] == GUA_BASE)
                .unwrap_or_else(|| panic!("{name}: no GUA on eth0: {addrs}"));
            assert!(
                addrs.contains(&ips[0].to_string()),
                "{name}: {} not on eth0: {addrs}",
                ips[0]
            );
            WebPod {
                name,
                node: node_index(p["spec"]["nodeName"].as_str().unwrap()),
                ula: ips[0],
                gua,
            }
        })
        .collect()
}

/// HTTP GET / of `addr`:80 from `pod` with busybox nc (Debian's static
/// busybox wget exits 139 here); the body, or Err with the output.
fn http_get(lab: &Lab, pod: &str, addr: Ipv6Addr, tries: u32) -> Result<String, String> {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {addr} 80");
    let out = lab.exec(pod, &["sh", "-c", &script], tries);
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() && body.starts_with("HTTP/1.") {
        Ok(body.lines().last().unwrap_or("").trim().to_string())
    } else {
        Err(text(&out))
    }
}

/// Veths other than the uplink, ipam-prefix records and firewall6 per-pod
/// rules left on node n.
fn leftovers(lab: &Lab, n: u16) -> Vec<String> {
    let mut out = Vec::new();
    for l in lab
        .node(n, &["ip", "-o", "link", "show", "type", "veth"])
        .lines()
    {
        if !l.contains(" eth0@") {
            out.push(format!("veth: {l}"));
        }
    }
    let records = lab.node(
        n,
        &[
            "find",
            "/var/lib/cni/ipam-prefix",
            "-path",
            "*/attachments/*",
            "-type",
            "f",
            "!",
            "-name",
            ".*",
        ],
    );
    out.extend(records.lines().map(|l| format!("record: {l}")));
    for l in lab.node(n, &["ip6tables-save"]).lines() {
        if l.contains("id=") && l.starts_with("-A") {
            out.push(format!("rule: {l}"));
        }
    }
    out
}

#[test]
fn kubernetes_lab_runs_cni6_from_deploy() {
    harness::require_root();
    for (peer, bin) in [
        ("kubernetes", "kubelet"),
        ("etcd", "etcd"),
        ("coredns", "coredns"),
        ("containerd", "containerd"),
        ("critools", "crictl"),
        ("multus", "multus"),
    ] {
        harness::peer(peer, bin);
    }
    let lab = Lab::up();

    // The DaemonSet runs cni6 on every node, and the nodes are Ready (up
    // checked they were NotReady before it was applied).
    let ds = lab.json(&["-n", "kube-system", "get", "ds", "cni6"]);
    assert_eq!(ds["status"]["numberReady"], NODES, "{}", ds["status"]);

    lab.apply(WEB);
    let t0 = Instant::now();
    lab.kubectl(&["rollout", "status", "deployment/web", "--timeout=300s"]);
    eprintln!("4 web pods Ready in {:.1} s", t0.elapsed().as_secs_f64());
    let pods = web_pods(&lab);
    for p in &pods {
        assert!(
            in_node_ranges(p.node, p.ula, p.gua),
            "{}: {} / {} not from node {}'s pod ranges",
            p.name,
            p.ula,
            p.gua,
            p.node
        );
    }
    let a = pods
        .iter()
        .find(|p| p.node == 1)
        .expect("a web pod on node 1");
    let b = pods
        .iter()
        .find(|p| p.node == 2)
        .expect("a web pod on node 2");

    // Pod to pod across nodes over the cluster ULA. Over GUA the printed
    // DaemonSet keeps pods closed to each other too: its clusterPrefixes
    // hold only the cluster ULA (docs/configuration.md), and a pod talks
    // to a GUA from its own GUA.
    assert_eq!(
        http_get(&lab, &a.name, b.ula, 10)
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", a.name, b.ula)),
        "cni6-k8s-lab"
    );
    assert!(
        http_get(&lab, &a.name, b.gua, 1).is_err(),
        "{} opened {}'s GUA {} (firewall6 cluster-only)",
        a.name,
        b.name,
        b.gua
    );
    // Service ClusterIP (C::/112) through kube-proxy, and its DNS name.
    let svc = lab.json(&["get", "svc", "web"]);
    let cluster_ip: Ipv6Addr = svc["spec"]["clusterIP"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        cluster_ip.segments()[..7],
        CLUSTER_ULA.parse::<Ipv6Addr>().unwrap().segments()[..7],
        "ClusterIP {cluster_ip} inside C::/112"
    );
    for p in [a, b] {
        for _ in 0..3 {
            assert_eq!(
                http_get(&lab, &p.name, cluster_ip, 10)
                    .unwrap_or_else(|e| panic!("{} -> {cluster_ip}: {e}", p.name)),
                "cni6-k8s-lab"
            );
        }
    }
    // From both nodes: CoreDNS runs on one of them, so one lookup reaches
    // a Service endpoint on its own node.
    for p in [a, b] {
        let ns = lab.exec_ok(
            &p.name,
            &["nslookup", "-type=AAAA", "web.default.svc.cluster.local"],
        );
        assert!(
            ns.lines().any(|l| l.contains(&cluster_ip.to_string())),
            "nslookup web via CoreDNS from {}: {ns}",
            p.name
        );
    }

    // firewall6: a host outside the cluster cannot open the pod's GUA,
    // while the same pod reaches that host (the path works both ways).
    let outside = "fd00:6b73::ff";
    lab.exec_ok(&a.name, &["ping", "-c", "1", "-W", "2", outside]);
    let out = run(
        {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", "k8slab-out", "busybox", "nc", "-w", "3"])
                .arg(a.gua.to_string())
                .arg("80");
            c
        },
        Some(""),
    );
    assert!(
        !out.status.success(),
        "outside host opened {}:80 (firewall6 cluster-only): {}",
        a.gua,
        text(&out)
    );

    // cni6 status inside the DaemonSet pod lists the node's pods by
    // namespace/name.
    let ds_pods = lab.json(&[
        "-n",
        "kube-system",
        "get",
        "pods",
        "-l",
        "app.kubernetes.io/name=cni6",
    ]);
    for dp in ds_pods["items"].as_array().unwrap() {
        let name = dp["metadata"]["name"].as_str().unwrap();
        let node = node_index(dp["spec"]["nodeName"].as_str().unwrap());
        let out = lab.kubectl_out(
            &["-n", "kube-system", "exec", name, "--", "cni6", "status"],
            None,
        );
        let status = String::from_utf8_lossy(&out.stdout).into_owned();
        for p in pods.iter().filter(|p| p.node == node) {
            assert!(
                status.contains(&format!("default/{}", p.name)),
                "cni6 status on node {node} lacks default/{}: {}",
                p.name,
                text(&out)
            );
        }
    }

    // multus (thin) in front of cni6: a pod annotated with
    // deploy/nad-net1.yaml's network gets net1 from its node's subnetId-2
    // ranges (C:n:2::/96, G_n:0:2::/96), eth0 still from cni6.
    let out = run(lab_command(&["multus"]), None);
    assert!(out.status.success(), "k8s-lab.sh multus: {}", text(&out));
    lab.apply(NET1_POD);
    lab.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/net1-pod",
        "--timeout=120s",
    ]);
    let addrs = lab.exec_ok(
        "net1-pod",
        &[
            "ip", "-6", "-o", "addr", "show", "dev", "net1", "scope", "global",
        ],
    );
    let net1: Vec<Ipv6Addr> = addrs
        .split_whitespace()
        .filter_map(|w| w.split('/').next()?.parse().ok())
        .collect();
    let c = CLUSTER_ULA.parse::<Ipv6Addr>().unwrap().segments();
    assert!(
        net1.iter()
            .any(|a| a.segments()[..6] == [c[0], c[1], c[2], c[3], 2, 2]),
        "net1 has no address in C:2:2::/96: {addrs}"
    );
    assert!(
        net1.iter()
            .any(|a| a.segments()[..6] == [GUA_BASE[0], GUA_BASE[1], GUA_BASE[2], 2, 0, 2]),
        "net1 has no address in node 2's G:0:2::/96: {addrs}"
    );
    let pod = lab.json(&["get", "pod", "net1-pod"]);
    let status = pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"]
        .as_str()
        .unwrap_or_default();
    assert!(status.contains("default/net1"), "network-status: {status}");
    lab.kubectl(&["delete", "pod", "net1-pod", "--wait=true"]);

    // Deleting the pods, then the DaemonSet, leaves nothing on any node.
    lab.kubectl(&["delete", "deployment", "web", "--wait=true"]);
    lab.kubectl(&[
        "-n",
        "kube-system",
        "delete",
        "deployment",
        "coredns",
        "--wait=true",
    ]);
    lab.wait("pods on the pod network gone", 120, || {
        let all = lab.json(&["get", "pods", "-A"]);
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["spec"]["hostNetwork"] == true)
    });
    lab.kubectl(&["-n", "kube-system", "delete", "ds", "cni6", "--wait=true"]);
    for n in 1..=NODES {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut left = leftovers(&lab, n);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_secs(1));
            left = leftovers(&lab, n);
        }
        assert!(
            left.is_empty(),
            "node {n} after deleting pods and the DaemonSet: {left:?}"
        );
    }
}
