//! deploy/*.yaml checked the way CI can: parsed as YAML, the kinds, images,
//! host mounts, probes and security settings that make the DaemonSet work
//! before the node has pod networking, the containers' commands parsed by
//! cni6's own command line and then RUN against a temporary root (host
//! paths mapped into it, `$(VAR)` expanded as kubelet does) inside a
//! network namespace whose uplink is not eth0, the probes run, then
//! `cni6 uninstall`; and the multus NetworkAttachmentDefinition's config
//! validated by the plugins' own parsers.
//!
//! The install run uses the built binaries (CNI6_BIN_DIR, default
//! target/release), as the image holds cni6 beside the plugins.

use clap::Parser;
use cni6::cli::{Cli, Command};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn deploy(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn pod_spec(ds: &Value) -> &Value {
    &ds["spec"]["template"]["spec"]
}

fn container<'a>(ds: &'a Value, list: &str, name: &str) -> &'a Value {
    pod_spec(ds)[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list}"))
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {list} {name}"))
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
                // An emptyDir is the container's own: itself.
                v["hostPath"]["path"]
                    .as_str()
                    .or_else(|| v.get("emptyDir").and(m["mountPath"].as_str()))
                    .expect("hostPath or emptyDir")
                    .to_string(),
            )
        })
        .collect()
}

fn pinned(image: &str) -> bool {
    let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
    !tag.is_empty() && !tag.contains('/') && tag != "latest"
}

fn as_strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

fn install_args(args: &[String]) -> cni6::commands::install::InstallArgs {
    let cli = Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
    match cli.command {
        Command::Install(i) => i,
        _ => panic!("not `cni6 install`: {args:?}"),
    }
}

#[test]
fn daemonset_runs_cni6_itself_with_probes_and_the_host_paths() {
    let ds = deploy("daemonset.yaml");
    assert_eq!(ds["apiVersion"], "apps/v1");
    assert_eq!(ds["kind"], "DaemonSet");
    let pod = pod_spec(&ds);
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
    let init = container(&ds, "initContainers", "prepare-node");
    let main = container(&ds, "containers", "cni6");
    for c in [init, main] {
        let image = c["image"].as_str().unwrap();
        assert!(pinned(image), "image {image} has no fixed tag");
    }
    // Only the sysctl step is privileged.
    assert_eq!(init["securityContext"]["privileged"], true);
    assert_ne!(main["securityContext"]["privileged"], true);
    assert_eq!(main["securityContext"]["readOnlyRootFilesystem"], true);

    // The long-running container is cni6 installing in a loop, so
    // `kubectl exec ds/cni6 -- cni6 status` has a cni6 to run.
    let main_args = argv(main);
    assert!(main_args[0].ends_with("/cni6"), "{main_args:?}");
    let inst = install_args(&main_args);
    assert!(
        inst.watch.is_some(),
        "the main container re-installs on change"
    );
    assert!(install_args(&argv(init)).prepare_node);

    // Host paths at their host locations: cni6's defaults work in the pod.
    let mounts = host_mounts(&ds, main);
    for (m, h) in &mounts {
        if m != "/run/cni6" {
            assert_eq!(m, h, "{m} is mounted from {h}");
        }
    }
    let mut hosts: Vec<&str> = mounts.iter().map(|m| m.1.as_str()).collect();
    hosts.sort();
    assert_eq!(
        hosts,
        vec![
            "/etc/cni/net.d",
            "/opt/cni/bin",
            "/run/cni6",
            "/var/lib/cni",
            "/var/run/netns"
        ]
    );
    assert_eq!(inst.bin_dir, Path::new("/opt/cni/bin"));
    assert_eq!(inst.conf_dir, Path::new("/etc/cni/net.d"));
    // One manifest for every node: prefixes come from the node's uplink,
    // found on each node ("auto") unless named.
    assert!(inst.conflist.node_index.is_none() && inst.conflist.node_prefixes.is_empty());
    assert_eq!(inst.conflist.ula_from_interface.as_deref(), Some("auto"));
    assert_eq!(inst.conflist.gua_from_interface.as_deref(), Some("auto"));
    assert_eq!(inst.extra_plugins, vec!["loopback", "portmap"]);

    // Both probes are cni6 commands its own parser accepts.
    for probe in ["readinessProbe", "livenessProbe"] {
        let cmd = as_strings(&main[probe]["exec"]["command"]);
        assert!(cmd[0].ends_with("/cni6"), "{probe}: {cmd:?}");
        Cli::try_parse_from(&cmd).unwrap_or_else(|e| panic!("{probe} {cmd:?}: {e}"));
    }
}

/// Run `argv` (host paths mapped into `root`) inside `ns`.
fn in_ns(ns: &netlab::netns::Netns, argv: &[String]) -> std::process::Command {
    let mut c = std::process::Command::new("ip");
    c.args(["netns", "exec", ns.name()]).args(argv);
    c
}

fn map_paths(
    args: Vec<String>,
    mounts: &[(String, String)],
    root: &Path,
    bin: &Path,
) -> Vec<String> {
    let mut out: Vec<String> = args
        .into_iter()
        .map(|a| {
            for (mount, host) in mounts {
                if a == *mount {
                    return root
                        .join(host.trim_start_matches('/'))
                        .display()
                        .to_string();
                }
            }
            a
        })
        .collect();
    out[0] = bin.display().to_string();
    out
}

#[test]
fn manifest_install_runs_against_a_temporary_root_and_uninstalls() {
    use netlab::bins::plugin;
    use netlab::netns::{require_root, Netns};
    require_root();
    let ds = deploy("daemonset.yaml");
    let init = container(&ds, "initContainers", "prepare-node");
    let main = container(&ds, "containers", "cni6");
    let root = tempfile::tempdir().unwrap();
    // The image: cni6 beside the plugins and the extras (stand-ins here).
    let image = root.path().join("image");
    std::fs::create_dir_all(&image).unwrap();
    for b in ["cni6", "bridge6", "ipam-prefix", "firewall6"] {
        std::fs::copy(plugin(b), image.join(b)).unwrap();
    }
    for b in ["loopback", "portmap"] {
        std::fs::copy(plugin("ipam-prefix"), image.join(b)).unwrap();
    }
    let cni6 = image.join("cni6");
    // A node whose uplink is not eth0: "auto" must find it.
    let ns = Netns::new("c6ds");
    ns.add_veth("ens5", "ens5peer");
    ns.add_addr("ens5", "fd8c:1f0a:77e3:0:7::1/80");
    ns.add_addr("ens5", "2001:db8:7:12::1/64");
    let mounts = host_mounts(&ds, main);

    // The node already has a portmap of its own: kept, and kept on uninstall.
    let bin = root.path().join("opt/cni/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("portmap"), "the node's own").unwrap();

    // The init container: forwarding on, first install.
    let args = map_paths(argv(init), &host_mounts(&ds, init), root.path(), &cni6);
    let o = in_ns(&ns, &args).output().unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        ns.exec_ok(&["cat", "/proc/sys/net/ipv6/conf/all/forwarding"])
            .trim(),
        "1"
    );
    let conf: PathBuf = root.path().join("etc/cni/net.d/10-cni6.conflist");
    let list: Value = serde_json::from_slice(&std::fs::read(&conf).unwrap()).unwrap();
    assert_eq!(list["cniVersion"], "1.0.0");
    assert_eq!(list["plugins"][0]["type"], "bridge6");
    assert_eq!(list["plugins"][1]["type"], "firewall6");
    assert_eq!(
        list["plugins"][0]["ipam"]["prefixes"],
        serde_json::json!([{"fromInterface": "ens5", "scope": "ula"},
                           {"fromInterface": "ens5", "scope": "global"}])
    );
    for p in ["bridge6", "ipam-prefix", "firewall6", "loopback"] {
        assert_eq!(
            std::fs::read(bin.join(p)).unwrap(),
            std::fs::read(image.join(p)).unwrap(),
            "{p} installed from the image"
        );
    }

    // The main container: a watch loop that stamps each pass.
    let stamp = root.path().join("run/installed");
    let mut args = map_paths(argv(main), &mounts, root.path(), &cni6);
    let w = args.iter().position(|a| a == "--watch").unwrap();
    args[w + 1] = "1".into();
    args.extend(["--stamp".to_string(), stamp.display().to_string()]);
    let mut child = in_ns(&ns, &args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !stamp.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // A conflist changed on the node is put back by the next pass.
    std::fs::write(&conf, "{}").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let restored: Value = serde_json::from_slice(&std::fs::read(&conf).unwrap()).unwrap();
    // kubelet stops it with SIGTERM: it exits at once, successfully.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "watch loop on SIGTERM: {status:?}");
    assert!(stamp.exists(), "the watch loop stamped a pass");
    assert_eq!(
        restored, list,
        "the watch loop rewrote the changed conflist"
    );

    // The probes, as kubelet runs them.
    let mut live = map_paths(
        as_strings(&main["livenessProbe"]["exec"]["command"]),
        &mounts,
        root.path(),
        &cni6,
    );
    live.extend(["--stamp".to_string(), stamp.display().to_string()]);
    let o = in_ns(&ns, &live).output().unwrap();
    assert!(
        o.status.success(),
        "liveness: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ready = map_paths(
        as_strings(&main["readinessProbe"]["exec"]["command"]),
        &mounts,
        root.path(),
        &cni6,
    );
    let o = in_ns(&ns, &ready).output().unwrap();
    assert!(
        o.status.success(),
        "readiness (lint): {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // uninstall removes exactly what install wrote.
    let o = std::process::Command::new(&cni6)
        .args(["uninstall", "--conf-dir"])
        .arg(root.path().join("etc/cni/net.d"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let listing = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(root.path().join(d))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert!(
        listing("etc/cni/net.d").is_empty(),
        "{:?}",
        listing("etc/cni/net.d")
    );
    assert_eq!(
        listing("opt/cni/bin"),
        vec!["portmap"],
        "only the node's own is left"
    );
    assert_eq!(
        std::fs::read(bin.join("portmap")).unwrap(),
        b"the node's own"
    );
}

#[test]
fn install_refuses_an_uplink_that_does_not_exist() {
    use netlab::{bins::plugin, netns::require_root};
    require_root();
    let root = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(plugin("cni6"))
        .args(["install", "--bin-dir"])
        .arg(root.path().join("bin"))
        .arg("--conf-dir")
        .arg(root.path().join("conf"))
        .args([
            "--cluster-ula",
            "fd8c:1f0a:77e3::/64",
            "--ula-from-interface",
            "ens99",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("preflight failed") && err.contains("ens99"),
        "{err}"
    );
    assert!(
        !root.path().join("conf/10-cni6.conflist").exists(),
        "nothing written"
    );
}

#[test]
fn nad_net1_is_a_valid_second_network() {
    let nad = deploy("nad-net1.yaml");
    assert_eq!(nad["apiVersion"], "k8s.cni.cncf.io/v1");
    assert_eq!(nad["kind"], "NetworkAttachmentDefinition");
    assert_eq!(nad["metadata"]["name"], "net1");
    let config: Value =
        serde_json::from_str(nad["spec"]["config"].as_str().expect("spec.config")).unwrap();
    let list = cni6::commands::conflist::validate(&config).expect("plugins accept it");
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
    // Prefixes from the node, not a literal (a literal repeats on every node).
    for p in bridge["ipam"]["prefixes"].as_array().unwrap() {
        assert!(
            p.get("fromInterface").is_some() && p.get("node").is_none(),
            "{p}"
        );
    }
    // net1's global range is filtered too.
    assert_eq!(config["plugins"][1]["type"], "firewall6");
    assert!(!config["plugins"][1]["clusterPrefixes"]
        .as_array()
        .unwrap()
        .is_empty());
}
