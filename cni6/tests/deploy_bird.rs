//! deploy/bird.yaml checked the way CI can: parsed as YAML, the init
//! container's command parsed by cni6's own command line with the
//! downward-API variables filled in as kubelet would, then RUN against a
//! node conflist in a temporary directory; the configuration it writes is
//! the one the BIRD container reads, and `bird -p` accepts it when bird2 is
//! installed (scripts/install-deps.sh).

use clap::Parser;
use cni6::cli::{Cli, Command};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn manifest() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/bird.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `$(VAR)` expanded: plain values from the env list, downward-API fields
/// with what kubelet would give node1.
fn argv(c: &Value) -> Vec<String> {
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_string();
            let value = match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("spec.nodeName") => "node1".to_string(),
                Some("status.hostIP") => "fd00:fab::1".to_string(),
                Some(other) => panic!("unexpected fieldRef {other}"),
                None => e["value"].as_str().unwrap().to_string(),
            };
            (name, value)
        })
        .collect();
    c["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let mut s = a.as_str().expect("string argument").to_string();
            for (k, v) in &env {
                s = s.replace(&format!("$({k})"), v);
            }
            assert!(!s.contains("$("), "unexpanded variable in {s}");
            s
        })
        .collect()
}

fn mount<'a>(c: &'a Value, volume: &str) -> &'a str {
    c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume)
        .unwrap_or_else(|| panic!("no mount of {volume}"))["mountPath"]
        .as_str()
        .unwrap()
}

#[test]
fn bird_daemonset_renders_the_nodes_config_that_bird_reads() {
    let ds = manifest();
    assert_eq!(ds["kind"], "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostNetwork"], true,
        "BGP and kernel routes of the node"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    let init = &pod["initContainers"][0];
    let bird = &pod["containers"][0];
    for c in [init, bird] {
        assert_ne!(c["securityContext"]["privileged"], true);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    }
    let caps = &bird["securityContext"]["capabilities"]["add"];
    assert_eq!(caps, &serde_json::json!(["NET_ADMIN", "NET_BIND_SERVICE"]));

    let args = argv(init);
    let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Command::Routes(mut routes) = cli.command else {
        panic!("the init container does not run `cni6 routes`: {args:?}")
    };
    // It writes where the BIRD container reads, through the shared volume.
    let out = routes.output.clone().expect("--output");
    assert!(out.starts_with(mount(init, "bird-run")));
    let bird_argv: Vec<&str> = bird["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let conf_arg = bird_argv.iter().position(|a| *a == "-c").unwrap() + 1;
    assert_eq!(Path::new(bird_argv[conf_arg]), out);
    assert_eq!(mount(bird, "bird-run"), mount(init, "bird-run"));
    // It reads the conflist cni6's DaemonSet writes on the host.
    let conflist = routes.self_conflist.clone().expect("--self-conflist");
    assert!(conflist.starts_with(mount(init, "cni-conf")));
    let vols = pod["volumes"].as_array().unwrap();
    let host = vols.iter().find(|v| v["name"] == "cni-conf").unwrap();
    assert_eq!(host["hostPath"]["path"], "/etc/cni/net.d");

    // Run it against a node conflist in a temporary directory.
    let tmp = tempfile::tempdir().unwrap();
    let conf_path = tmp.path().join("10-cni6.conflist");
    std::fs::write(
        &conf_path,
        serde_json::json!({
            "cniVersion": "1.0.0", "name": "cluster",
            "plugins": [{"type": "bridge6", "bridge": "cluster0",
              "ipam": {"type": "ipam-prefix", "subnetId": 1,
                       "prefixes": [{"node": "fd8c:1f0a:77e3:0:1::/80"}]}}]
        })
        .to_string(),
    )
    .unwrap();
    routes.self_conflist = Some(conf_path);
    let rendered: PathBuf = tmp.path().join("bird.conf");
    routes.output = Some(rendered.clone());
    let mut sink = Vec::new();
    let cli = Cli {
        json: false,
        command: Command::Routes(routes),
    };
    cni6::cli::run(cli, &mut sink).expect("cni6 routes");
    assert!(sink.is_empty(), "--output prints nothing");
    let text = std::fs::read_to_string(&rendered).unwrap();
    assert!(
        text.contains("route fd8c:1f0a:77e3:0:1::/80 blackhole;"),
        "{text}"
    );
    assert!(text.contains("neighbor fd00:fab::fe as 64512;"), "{text}");
    assert!(text.contains("router id 0.0.0.1;"), "{text}");
    assert!(text.contains("hold time 9;"), "{text}");
    if Path::new("/usr/sbin/bird").exists() {
        let o = std::process::Command::new("/usr/sbin/bird")
            .arg("-p")
            .arg("-c")
            .arg(&rendered)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "bird -p: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
