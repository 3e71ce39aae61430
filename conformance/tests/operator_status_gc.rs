//! `cni6 conflist`, `cni6 status` and `cni6 gc` on a real node: a node
//! namespace of the topology fixture, a conflist printed by `cni6 conflist`
//! (bridge6 + ipam-prefix + firewall6, CNI 1.1.0 so GC reaches the
//! plugins), pods attached through the runtime (`cni6 attach` inside the
//! node), then attachments broken behind the runtime's back the way a
//! crashed kubelet or a deleted netns leaves them.
//!
//! Needs root and built binaries (CNI6_BIN_DIR, default target/release).

use conformance::harness;
use conformance::topology::{Spec, Topology};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;

const CLUSTER: &str = "fd8c:1f0a:77e3::/64";

struct Node {
    topo: Topology,
    bin: PathBuf,
    conf_dir: PathBuf,
    cache: PathBuf,
    data: PathBuf,
    bridge: String,
}

impl Node {
    fn cni6(&self, args: &[&str]) -> Output {
        let mut cmd = self.topo.node_command(1, self.bin.join("cni6"));
        cmd.args(args);
        cmd.output().expect("run cni6")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.cni6(args);
        assert!(
            o.status.success(),
            "cni6 {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    }

    fn conflist(&self) -> String {
        self.conf_dir.join("10-cni6.conflist").display().to_string()
    }

    fn attach(&self, pod: &conformance::topology::Pod) {
        let conflist = self.conflist();
        self.ok(&[
            "attach",
            "--conflist",
            &conflist,
            "--netns",
            &pod.path.display().to_string(),
            "--id",
            &pod.name,
            "--args",
            &format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-{}",
                pod.name
            ),
            "--cni-path",
            &self.bin.display().to_string(),
            "--cache-dir",
            &self.cache.display().to_string(),
        ]);
    }

    fn status_args(&self) -> Vec<String> {
        [
            "status",
            "--conf-dir",
            self.conf_dir.to_str().unwrap(),
            "--cache-dir",
            self.cache.to_str().unwrap(),
            "--cni-path",
            self.bin.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    }

    /// `status --json` and its exit code (0 healthy, 1 problems found).
    fn status_coded(&self) -> (i32, Value) {
        let mut args = self.status_args();
        args.push("--json".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = self.cni6(&args);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{e}: {out}{}", String::from_utf8_lossy(&o.stderr)));
        let code = o.status.code().unwrap_or(-1);
        assert_eq!(code == 0, v["healthy"] == true, "exit {code} vs {v}");
        (code, v)
    }

    fn status(&self) -> Value {
        self.status_coded().1
    }

    fn gc(&self, extra: &[&str]) -> String {
        let conflist = self.conflist();
        let mut args = vec![
            "gc",
            "--conflist",
            &conflist,
            "--cni-path",
            self.bin.to_str().unwrap(),
            "--cache-dir",
            self.cache.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        self.ok(&args)
    }

    fn store_files(&self) -> Vec<String> {
        let mut v = Vec::new();
        for sub in ["attachments", "slots"] {
            let d = self.data.join("cluster").join(sub);
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                v.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
        v.sort();
        v
    }
}

fn node() -> Node {
    harness::require_root();
    let bin = harness::bin_dir();
    for b in ["cni6", "bridge6", "ipam-prefix", "firewall6"] {
        harness::plugin(b);
    }
    let topo = Topology::build(Spec::new("c6op", 1)).expect("build topology");
    let dir = topo.node(1).dir.clone();
    let bridge = topo.link_name("br").unwrap();
    let conf_dir = dir.join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    let data = dir.join("ipam");
    let n = Node {
        topo,
        bin,
        conf_dir,
        cache: dir.join("cache"),
        data,
        bridge,
    };
    // The list under test comes from `cni6 conflist` itself.
    let list = n.ok(&[
        "conflist",
        "--cni-version",
        "1.1.0",
        "--cluster-ula",
        CLUSTER,
        "--node-index",
        "1",
        "--gua-from-interface",
        "eth0",
        "--bridge",
        &n.bridge,
        "--data-dir",
        &n.data.display().to_string(),
        "--allow-port",
        "443/tcp",
    ]);
    std::fs::write(n.conf_dir.join("10-cni6.conflist"), list).unwrap();
    n
}

fn allocations(status: &Value) -> Vec<Value> {
    status["networks"][0]["allocations"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn find<'a>(allocs: &'a [Value], id: &str) -> &'a Value {
    allocs
        .iter()
        .find(|a| a["containerID"] == id)
        .unwrap_or_else(|| panic!("no allocation of {id} in {allocs:?}"))
}

#[test]
fn status_shows_attachments_and_marks_leaked_ones() {
    let mut n = node();
    let pods = n.topo.add_pods(1, 3).expect("pods");
    for p in &pods {
        n.attach(p); // the generated conflist is accepted: ADD works
    }
    let (code, s) = n.status_coded();
    assert_eq!(
        code, 0,
        "a node with only live pods is healthy: {}",
        s["problems"]
    );
    let net = &s["networks"][0];
    assert_eq!(net["name"], "cluster");
    assert_eq!(net["bridge"]["exists"], true, "{net}");
    assert_eq!(net["firewall"]["skeleton"], true, "{net}");
    let prefixes = net["prefixes"].as_array().unwrap();
    assert_eq!(prefixes[0]["node"], "fd8c:1f0a:77e3:0:1::/80");
    assert_eq!(prefixes[1]["node"], "2001:db8:7:1::/80", "GUA from eth0");
    let addrs: Vec<&str> = net["bridge"]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for p in prefixes {
        let gw = format!("{}/96", p["gateway"].as_str().unwrap());
        assert!(
            addrs.contains(&gw.as_str()),
            "{gw} not on the bridge: {addrs:?}"
        );
    }
    let allocs = allocations(&s);
    assert_eq!(allocs.len(), 3);
    for p in &pods {
        let a = find(&allocs, &p.name);
        assert_eq!(a["podNamespace"], "shop");
        assert_eq!(a["podName"], format!("web-{}", p.name));
        assert_eq!(a["ifname"], "eth0");
        assert_eq!(a["leaked"], false, "{a}");
        assert_eq!(a["addresses"].as_array().unwrap().len(), 2);
        assert_eq!(a["netns"], p.path.display().to_string());
        let veth = a["hostVeth"].as_str().unwrap();
        n.topo
            .ip(&n.topo.node(1).netns, &["link", "show", veth])
            .expect("host veth exists");
    }

    // Break two attachments behind the runtime's back: one host veth
    // deleted, one pod netns deleted (its veth dies with it).
    let veth = find(&allocs, &pods[1].name)["hostVeth"]
        .as_str()
        .unwrap()
        .to_string();
    n.topo
        .ip(&n.topo.node(1).netns, &["link", "del", &veth])
        .expect("delete host veth");
    n.topo.remove_pod(&pods[2].name).expect("delete pod netns");

    let before = n.store_files();
    let (code, s) = n.status_coded();
    assert_eq!(code, 1, "leaks make status exit 1");
    let problems = s["problems"].to_string();
    // The pod whose netns is gone is for gc --leaked; the one whose veth
    // alone is gone is broken, not free.
    assert!(
        problems.contains("1 leaked allocation(s) whose pod is gone"),
        "{problems}"
    );
    assert!(
        problems.contains(&format!("attachment {}/eth0 is broken", pods[1].name)),
        "{problems}"
    );
    assert_eq!(n.store_files(), before, "status changes nothing");
    let allocs = allocations(&s);
    assert_eq!(allocs.len(), 3);
    assert_eq!(find(&allocs, &pods[0].name)["leaked"], false);
    let a1 = find(&allocs, &pods[1].name);
    assert_eq!(a1["leaked"], true);
    assert_eq!(a1["leakReasons"], serde_json::json!(["host veth gone"]));
    let a2 = find(&allocs, &pods[2].name);
    assert_eq!(a2["leaked"], true);
    // The kernel removes the veth of a deleted netns asynchronously, so
    // "host veth gone" may or may not be there yet.
    assert!(
        a2["leakReasons"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("netns gone")),
        "{a2}"
    );

    // The human table says the same, with full container ids.
    let args = n.status_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = n.cni6(&args);
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains(&pods[0].name), "{text}");
    assert!(text.contains("health: "), "{text}");
    assert!(text.contains("3 allocation(s), 2 leaked"), "{text}");
    assert!(
        text.contains(&format!("shop/web-{}", pods[0].name)),
        "{text}"
    );
    let leaked_lines = text.lines().filter(|l| l.contains("LEAKED")).count();
    assert_eq!(leaked_lines, 2, "{text}");
    assert!(text.contains("skeleton in place"), "{text}");
    println!("{text}");
}

#[test]
fn gc_dry_run_changes_nothing_and_valid_set_frees_exactly_the_others() {
    let mut n = node();
    let pods = n.topo.add_pods(1, 4).expect("pods");
    for p in &pods {
        n.attach(p);
    }
    // pods[2]'s netns disappears without a DEL.
    n.topo.remove_pod(&pods[2].name).expect("delete pod netns");
    let store = n.store_files();
    let cache: Vec<_> = std::fs::read_dir(n.cache.join("results"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let rules = n.topo.ip(&n.topo.node(1).netns, &["link"]).unwrap();

    // Dry run: lists every allocation, marks the leaked one, runs nothing.
    // The network is found by name in the conf dir, as an operator names it.
    let o = n.cni6(&[
        "gc",
        "--network",
        "cluster",
        "--conf-dir",
        n.conf_dir.to_str().unwrap(),
        "--cache-dir",
        n.cache.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8(o.stdout).unwrap();
    assert!(out.contains("dry run, nothing changed"), "{out}");
    assert!(out.contains("4 allocation(s)"), "{out}");
    assert!(
        out.contains(&format!("leaked   {}/eth0", pods[2].name)),
        "{out}"
    );
    let v: Value = serde_json::from_str(&n.gc(&["--json"])).unwrap();
    assert_eq!(v["dryRun"], true);
    let leaked: Vec<&str> = v["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["leaked"] == true)
        .map(|a| a["attachment"].as_str().unwrap())
        .collect();
    assert_eq!(leaked, vec![format!("{}/eth0", pods[2].name)]);
    assert_eq!(n.store_files(), store, "dry run leaves the store alone");
    let cache_after: Vec<_> = std::fs::read_dir(n.cache.join("results"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(cache_after.len(), cache.len());
    assert_eq!(
        n.topo.ip(&n.topo.node(1).netns, &["link"]).unwrap(),
        rules,
        "dry run leaves the links alone"
    );

    // --leaked frees exactly the leaked allocation: the cached DEL of the
    // stale attachment, then GC with the others as valid (conformance.md #88, 48).
    let v: Value = serde_json::from_str(&n.gc(&["--json", "--leaked"])).unwrap();
    assert_eq!(v["gcSent"], true);
    assert_eq!(
        v["freed"],
        serde_json::json!([format!("{}/eth0", pods[2].name)])
    );
    assert_eq!(v["remaining"], 3);

    // --valid: everything not listed is freed, the listed ones stay
    // (conformance.md #47, 48: GC with cni.dev/valid-attachments).
    let veths: Vec<(String, String)> = allocations(&n.status())
        .iter()
        .map(|a| {
            (
                a["containerID"].as_str().unwrap().to_string(),
                a["hostVeth"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let keep = format!("{}/eth0", pods[0].name);
    let v: Value = serde_json::from_str(&n.gc(&["--json", "--valid", &keep])).unwrap();
    let mut freed: Vec<String> = v["freed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    freed.sort();
    let mut expected = vec![
        format!("{}/eth0", pods[1].name),
        format!("{}/eth0", pods[3].name),
    ];
    expected.sort();
    assert_eq!(freed, expected);
    assert_eq!(v["remaining"], 1);
    let allocs = allocations(&n.status());
    assert_eq!(allocs.len(), 1);
    assert_eq!(find(&allocs, &pods[0].name)["leaked"], false);
    for p in [&pods[1], &pods[3]] {
        let veth = &veths.iter().find(|v| v.0 == p.name).unwrap().1;
        assert!(
            n.topo
                .ip(&n.topo.node(1).netns, &["link", "show", veth])
                .is_err(),
            "GC removed {veth}"
        );
    }
}

#[test]
fn status_flags_a_stale_gateway_and_gc_cannot_free_a_live_pod() {
    let mut n = node();
    let pods = n.topo.add_pods(1, 2).expect("pods");
    for p in &pods {
        n.attach(p);
    }
    let node_ns = n.topo.node(1).netns.clone();
    let keep = format!("{}/eth0", pods[0].name);
    let addr_of = |id: &str| -> Vec<Value> {
        let allocs = allocations(&n.status());
        find(&allocs, id)["addresses"].as_array().unwrap().clone()
    };
    let before = addr_of(&pods[0].name);
    let store = n.store_files();

    // A typo in --valid would have freed both pods: refused, exit 2.
    let conflist = n.conflist();
    let mut gc = vec![
        "gc",
        "--conflist",
        &conflist,
        "--cni-path",
        n.bin.to_str().unwrap(),
        "--cache-dir",
        n.cache.to_str().unwrap(),
    ];
    let typo = format!("{}/eht0", pods[0].name);
    let mut args = gc.clone();
    args.extend(["--valid", &typo]);
    let o = n.cni6(&args);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("did you mean {keep}")));
    assert_eq!(n.store_files(), store, "nothing freed");

    // --leaked from the wrong network namespace (the host, where the node's
    // bridge is not): refused, every pod keeps its address.
    let mut cmd = std::process::Command::new(n.bin.join("cni6"));
    let mut args = gc.clone();
    args.push("--leaked");
    let o = cmd.args(&args).output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not visible from this network namespace"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(n.store_files(), store, "nothing freed");
    assert_eq!(addr_of(&pods[0].name), before);
    // In the node's namespace --leaked frees nothing: no pod is gone.
    gc.extend(["--leaked", "--json"]);
    let v: Value = serde_json::from_str(&n.ok(&gc)).unwrap();
    assert_eq!(v["freed"], serde_json::json!([]));
    assert_eq!(addr_of(&pods[0].name), before);

    // A gateway of a configuration no longer in use (node 3's range, as the
    // old hint produced) left on the bridge: status flags it, exit 1.
    let stale = "fd8c:1f0a:77e3:0:3:1:0:1/96";
    n.topo
        .ip(
            &node_ns,
            &["-6", "addr", "add", stale, "dev", &n.bridge, "nodad"],
        )
        .expect("add stale gateway");
    let (code, s) = n.status_coded();
    assert_eq!(code, 1);
    let problems = s["problems"].to_string();
    assert!(
        problems.contains("stale address fd8c:1f0a:77e3:0:3:1:0:1/96"),
        "{problems}"
    );
    n.topo
        .ip(&node_ns, &["-6", "addr", "del", stale, "dev", &n.bridge])
        .expect("remove stale gateway");
    let (code, s) = n.status_coded();
    assert_eq!(code, 0, "{}", s["problems"]);

    // A host veth of this network on the bridge that no allocation
    // explains (what a DEL killed halfway leaves): flagged.
    let orphan = format!("{}o", &n.bridge[..n.bridge.len().min(13)]);
    for args in [
        vec![
            "link",
            "add",
            &orphan,
            "type",
            "veth",
            "peer",
            "name",
            "c6orphpeer",
        ],
        vec![
            "link",
            "set",
            &orphan,
            "alias",
            "cni6 net=cluster if=eth0 id=gone",
        ],
        vec!["link", "set", &orphan, "master", &n.bridge],
    ] {
        n.topo.ip(&node_ns, &args).expect("make orphan veth");
    }
    let (code, s) = n.status_coded();
    assert_eq!(code, 1);
    assert!(
        s["problems"]
            .to_string()
            .contains(&format!("orphan host veth {orphan}")),
        "{}",
        s["problems"]
    );
    n.topo
        .ip(&node_ns, &["link", "del", &orphan])
        .expect("remove orphan");

    // A network configuration nobody can read: flagged too.
    std::fs::write(n.conf_dir.join("20-broken.conflist"), "{not json").unwrap();
    let (code, s) = n.status_coded();
    assert_eq!(code, 1);
    assert!(
        s["problems"]
            .to_string()
            .contains("unreadable network configuration"),
        "{}",
        s["problems"]
    );
}
