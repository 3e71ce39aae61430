//! `cni6` driving the reference plugins (upstream containernetworking/plugins
//! v1.9.x, built by scripts/peers.sh) in network namespaces this test makes: proves the
//! runtime is faithful enough for real plugins — declared capabilities
//! reach `tuning`, and the cached result reaches `firewall` on DEL (it
//! removes its ip6tables rules only from `prevResult`, plugins#390) even
//! after the pod namespace is gone. Needs root (skipped with a message
//! without it); fails when the reference plugins are not built.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The upstream plugins scripts/peers.sh builds (`CNI6_PEERS_DIR`, default
/// /var/cache/cni6-peers, then `plugins/`).
fn ref_dir() -> PathBuf {
    std::env::var_os("CNI6_PEERS_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/cni6-peers"))
        .join("plugins")
}

/// A namespace made by this test, removed on drop (also on failure).
struct Netns(String);

impl Netns {
    fn new(role: &str) -> Netns {
        let name = format!("c6rt-{}-{role}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Netns(name)
    }

    fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.0)
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn usable() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root");
        return false;
    }
    for p in ["bridge", "host-local", "firewall", "tuning"] {
        let bin = ref_dir().join(p);
        assert!(
            bin.is_file(),
            "reference plugin {} missing: build it with `bash scripts/peers.sh`",
            bin.display()
        );
    }
    true
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn reference_chain_through_cni6() {
    if !usable() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let node = Netns::new("node");
    let pod1 = Netns::new("pod1");
    let pod2 = Netns::new("pod2");
    let subnet = format!("fd00:c6:{:x}::/64", std::process::id() & 0xffff);
    let conflist = json!({
        "cniVersion": "1.0.0",
        "name": "c6rt",
        "plugins": [
            {"type": "bridge", "bridge": "c6rtbr0", "isGateway": true,
             "ipam": {"type": "host-local", "dataDir": dir.path().join("ipam"),
                      "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "::/0"}]}},
            {"type": "firewall", "backend": "iptables"},
            {"type": "tuning", "capabilities": {"mac": true}}
        ]
    });
    let conf = dir.path().join("c6rt.conflist");
    std::fs::write(&conf, conflist.to_string()).unwrap();
    let cache = dir.path().join("cache");
    let ref_dir = ref_dir();
    let cni6 = |verb: &str, extra: &[&str]| {
        let mut args = vec![
            env!("CARGO_BIN_EXE_cni6"),
            verb,
            "--conflist",
            conf.to_str().unwrap(),
            "--cni-path",
            ref_dir.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        node.exec(&args)
    };
    let p1 = pod1.path().display().to_string();
    let p2 = pod2.path().display().to_string();

    let out = cni6(
        "attach",
        &[
            "--json",
            "--netns",
            &p1,
            "--id",
            "pod1",
            "--args",
            "IgnoreUnknown=1;K8S_POD_NAME=pod1",
            "--cap-args",
            r#"{"mac":"02:c6:00:00:00:01","bandwidth":{"ingressRate":1}}"#,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let addr = result["ips"][0]["address"].as_str().unwrap().to_string();
    let ip = addr.split('/').next().unwrap().to_string();
    // conformance.md #71: tuning got the declared mac capability as runtimeConfig.
    let link = pod1.exec(&["ip", "-6", "addr", "show", "eth0"]);
    assert!(
        String::from_utf8_lossy(&link.stdout).contains(&addr),
        "{}",
        text(&link)
    );
    let link = pod1.exec(&["ip", "link", "show", "eth0"]);
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("02:c6:00:00:00:01"),
        "{}",
        text(&link)
    );
    let rules =
        |ns: &Netns| String::from_utf8_lossy(&ns.exec(&["ip6tables-save"]).stdout).into_owned();
    assert!(rules(&node).contains(&ip), "firewall rules for {ip}");

    let out = cni6("check", &["--id", "pod1"]);
    assert!(out.status.success(), "{}", text(&out));

    // conformance.md #27 + 86: the namespace is gone, DEL still runs with the
    // cached result, so firewall removes its rules and host-local the lease.
    drop(pod1);
    let out = cni6("detach", &["--id", "pod1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !rules(&node).contains(&ip),
        "firewall rules for {ip} left after detach"
    );
    assert!(
        !dir.path().join("ipam/c6rt").join(&ip).exists(),
        "lease of {ip} left"
    );
    assert!(!cache.join("results/c6rt-pod1-eth0").exists());

    // conformance.md #52, 88: GC's synthetic DEL frees an attachment runtimes forgot.
    let out = cni6("attach", &["--json", "--netns", &p2, "--id", "pod2"]);
    assert!(out.status.success(), "{}", text(&out));
    let r2: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ip2 = r2["ips"][0]["address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(dir.path().join("ipam/c6rt").join(&ip2).exists());
    // A valid entry that names no attachment is refused (a typo would free
    // the pod it meant to keep); an empty set needs --all-stale --confirm.
    let out = cni6("gc", &["--valid", "other/eth0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(dir.path().join("ipam/c6rt").join(&ip2).exists());
    let out = cni6("gc", &["--all-stale", "--confirm"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pod2/eth0"),
        "{}",
        text(&out)
    );
    assert!(
        !dir.path().join("ipam/c6rt").join(&ip2).exists(),
        "GC left the lease of {ip2}"
    );
    assert!(!rules(&node).contains(&ip2));
}
