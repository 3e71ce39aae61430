//! deploy/*.yaml checked the way CI can: parsed as YAML, the kinds, images,
//! host mounts and security settings that make the DaemonSet work before
//! the node has pod networking, the init container's command parsed by
//! cni6's own command line and then RUN against a temporary root (host
//! paths mapped into it, `$(VAR)` expanded as kubelet does), and the
//! multus NetworkAttachmentDefinition's config validated by the plugins'
//! own parsers.
//!
//! The install run uses the built binaries (CNI6_BIN_DIR, default
//! target/release), as the image holds cni6 beside the plugins.

use clap::Parser;
use plugins::cli::{Cli, Command};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn deploy(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn init_container(ds: &Value) -> &Value {
    let inits = ds["spec"]["template"]["spec"]["initContainers"]
        .as_array()
        .expect("initContainers");
    assert_eq!(inits.len(), 1);
    &inits[0]
}

/// command + args with `$(VAR)` replaced from the container's env.
fn argv(c: &Value) -> Vec<String> {
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    c["command"]
        .as_array()
        .into_iter()
        .chain(c["args"].as_array())
        .flatten()
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

/// volume name -> host path; mountPath -> host path for a container.
fn host_mounts(ds: &Value, c: &Value) -> Vec<(String, String)> {
    let vols = ds["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let v = vols
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap_or_else(|| panic!("no volume {}", m["name"]));
            (
                m["mountPath"].as_str().unwrap().to_string(),
                v["hostPath"]["path"]
                    .as_str()
                    .expect("hostPath")
                    .to_string(),
            )
        })
        .collect()
}

fn pinned(image: &str) -> bool {
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    !tag.is_empty() && !tag.contains('/') && tag != "latest"
}

#[test]
fn daemonset_is_rbac_free_host_network_and_mounts_the_cni_dirs() {
    let ds = deploy("daemonset.yaml");
    assert_eq!(ds["apiVersion"], "apps/v1");
    assert_eq!(ds["kind"], "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["hostNetwork"], true,
        "must run before pod networking exists"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert!(pod["serviceAccountName"].is_null(), "RBAC-free");
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"],
        ds["spec"]["template"]["metadata"]["labels"]
    );
    let init = init_container(&ds);
    let main = &pod["containers"].as_array().unwrap()[0];
    for c in [init, main] {
        let image = c["image"].as_str().unwrap();
        assert!(pinned(image), "image {image} has no fixed tag");
        assert_ne!(c["securityContext"]["privileged"], true);
    }
    let mounts = host_mounts(&ds, init);
    let mut hosts: Vec<&str> = mounts.iter().map(|m| m.1.as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, vec!["/etc/cni/net.d", "/opt/cni/bin"]);

    // The command is a cni6 install that writes into exactly those mounts.
    let args = argv(init);
    assert!(args[0].ends_with("/cni6"), "{args:?}");
    let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let Command::Install(inst) = cli.command else {
        panic!("init container does not run `cni6 install`: {args:?}")
    };
    let mount_of = |p: &Path| {
        mounts
            .iter()
            .find(|m| Path::new(&m.0) == p)
            .unwrap_or_else(|| panic!("{} is not a host mount", p.display()))
            .1
            .clone()
    };
    assert_eq!(mount_of(&inst.bin_dir), "/opt/cni/bin");
    assert_eq!(mount_of(&inst.conf_dir), "/etc/cni/net.d");
    // One manifest for every node: prefixes come from the node's interfaces.
    assert!(inst.conflist.node_index.is_none() && inst.conflist.node_prefixes.is_empty());
    assert!(
        inst.conflist.ula_from_interface.is_some() || inst.conflist.gua_from_interface.is_some()
    );
    inst.conflist
        .build()
        .expect("the conflist the init container writes is valid");
}

#[test]
fn init_container_install_step_runs_against_a_temporary_root() {
    let ds = deploy("daemonset.yaml");
    let init = init_container(&ds);
    let root = tempfile::tempdir().unwrap();
    let mounts = host_mounts(&ds, init);
    let bin = conformance::harness::plugin("cni6");
    // The image's /usr/local/bin/cni6 is the built cni6 beside the built plugins.
    let mut args: Vec<String> = argv(init)
        .into_iter()
        .map(|a| {
            for (mount, host) in &mounts {
                if a == *mount {
                    return root
                        .path()
                        .join(host.trim_start_matches('/'))
                        .display()
                        .to_string();
                }
            }
            a
        })
        .collect();
    args.remove(0);
    let run = || {
        std::process::Command::new(&bin)
            .args(&args)
            .output()
            .expect("run cni6")
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let conf: PathBuf = root.path().join("etc/cni/net.d/10-cni6.conflist");
    let list: Value = serde_json::from_slice(&std::fs::read(&conf).unwrap()).unwrap();
    assert_eq!(list["cniVersion"], "1.0.0");
    assert_eq!(list["plugins"][0]["type"], "bridge6");
    assert_eq!(list["plugins"][1]["type"], "firewall6");
    for p in ["bridge6", "ipam-prefix", "firewall6"] {
        assert!(
            root.path().join("opt/cni/bin").join(p).is_file(),
            "{p} installed"
        );
    }
    // A restarted init container changes nothing.
    let o = run();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("nothing changed"));
}

#[test]
fn nad_net1_is_a_valid_second_network() {
    let nad = deploy("nad-net1.yaml");
    assert_eq!(nad["apiVersion"], "k8s.cni.cncf.io/v1");
    assert_eq!(nad["kind"], "NetworkAttachmentDefinition");
    assert_eq!(nad["metadata"]["name"], "net1");
    let config: Value =
        serde_json::from_str(nad["spec"]["config"].as_str().expect("spec.config")).unwrap();
    let list = plugins::commands::conflist::validate(&config).expect("plugins accept it");
    assert_eq!(list.cni_version, "1.0.0");
    assert_eq!(list.name, "net1");
    let bridge = &config["plugins"][0];
    assert_eq!(bridge["type"], "bridge6");
    assert_eq!(bridge["ipam"]["type"], "ipam-prefix");
    assert_ne!(
        bridge["bridge"],
        bridge6::config::DEFAULT_BRIDGE,
        "own bridge"
    );
    assert_ne!(bridge["ipam"]["subnetId"], 1, "own pod range");
    assert_eq!(
        bridge["defaultRoute"], false,
        "eth0 keeps the default route"
    );
}
