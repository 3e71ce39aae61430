//! `cni6 install` into temporary directories, run as the DaemonSet's init
//! container runs it: binaries and conflist appear atomically (renamed into
//! place: a new inode, no temp file left), a second run rewrites nothing,
//! a changed option rewrites only the conflist, an unwritable directory
//! and a conflist of another CNI that sorts first are refused before
//! anything is written, and `--force` installs beside it without deleting
//! it. Install's preflight resolves `--ula-from-interface eth0`, so every
//! run is inside a namespace whose eth0 holds the node's addresses.
//!
//! Needs root (the read-only mount) and built binaries (CNI6_BIN_DIR,
//! default target/release).

use conformance::harness::{self, Netns, TempDir};
use serde_json::Value;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output};

const LIST_OPTS: &[&str] = &[
    "--cluster-ula",
    "fd8c:1f0a:77e3::/64",
    "--ula-from-interface",
    "eth0",
    "--gua-from-interface",
    "eth0",
];

fn cni6() -> std::path::PathBuf {
    harness::plugin("cni6")
}

/// A node for install's preflight: eth0 holds the node's ULA (node 5 of the
/// cluster) and a provider GUA, as LIST_OPTS expect.
fn node() -> Netns {
    let ns = Netns::new("c6opi");
    ns.add_veth("eth0", "eth0peer");
    ns.add_addr("eth0", "fd8c:1f0a:77e3:0:5::1/80");
    ns.add_addr("eth0", "2001:db8:7:12::1/64");
    ns
}

fn install(ns: &Netns, root: &Path, extra: &[&str]) -> Output {
    install_with(ns, root, LIST_OPTS, extra)
}

fn install_with(ns: &Netns, root: &Path, list_opts: &[&str], extra: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(cni6())
        .arg("install")
        .arg("--bin-dir")
        .arg(root.join("opt/cni/bin"))
        .arg("--conf-dir")
        .arg(root.join("etc/cni/net.d"))
        .args(list_opts)
        .args(extra)
        .output()
        .expect("run cni6 install")
}

fn ok_json(o: Output) -> Value {
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("JSON")
}

fn changes(v: &Value) -> Vec<(String, String)> {
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let p = f["path"].as_str().unwrap();
            let name = Path::new(p)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (name, f["change"].as_str().unwrap().to_string())
        })
        .collect()
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn install_is_atomic_idempotent_and_reports_changes() {
    harness::require_root();
    let ns = node();
    let root = TempDir::new("c6op-inst");
    let bin = root.join("opt/cni/bin");
    let conf = root.join("etc/cni/net.d");
    std::fs::create_dir_all(&conf).unwrap();
    // A fallback conf of another CNI that sorts after ours stays untouched.
    std::fs::write(conf.join("99-loopback.conf"), "{\"type\":\"loopback\"}").unwrap();

    let v = ok_json(install(&ns, root.path(), &["--json"]));
    assert_eq!(v["changed"], true);
    assert_eq!(
        changes(&v),
        vec![
            ("bridge6".into(), "created".into()),
            ("ipam-prefix".into(), "created".into()),
            ("firewall6".into(), "created".into()),
            ("10-cni6.conflist".into(), "created".into()),
        ]
    );
    for p in ["bridge6", "ipam-prefix", "firewall6"] {
        let installed = bin.join(p);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(harness::bin_dir().join(p)).unwrap(),
            "{p} copied byte for byte"
        );
        assert_eq!(
            std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
            0o755
        );
    }
    // The conflist is exactly what `cni6 conflist` prints for the options.
    let printed = Command::new(cni6())
        .arg("conflist")
        .args(LIST_OPTS)
        .output()
        .unwrap();
    assert!(printed.status.success());
    let written = std::fs::read(conf.join("10-cni6.conflist")).unwrap();
    assert_eq!(written, printed.stdout);
    assert_eq!(
        std::fs::read(conf.join("99-loopback.conf")).unwrap(),
        b"{\"type\":\"loopback\"}"
    );

    // Second run: nothing rewritten (same inodes, same mtimes).
    let inode = |p: &Path| {
        let m = std::fs::metadata(p).unwrap();
        (m.ino(), m.mtime_nsec(), m.mtime())
    };
    let before: Vec<_> = ["bridge6", "ipam-prefix", "firewall6"]
        .iter()
        .map(|p| inode(&bin.join(p)))
        .chain([inode(&conf.join("10-cni6.conflist"))])
        .collect();
    let v = ok_json(install(&ns, root.path(), &["--json"]));
    assert_eq!(v["changed"], false);
    assert!(changes(&v).iter().all(|c| c.1 == "unchanged"), "{v}");
    let after: Vec<_> = ["bridge6", "ipam-prefix", "firewall6"]
        .iter()
        .map(|p| inode(&bin.join(p)))
        .chain([inode(&conf.join("10-cni6.conflist"))])
        .collect();
    assert_eq!(before, after);
    let text = install(&ns, root.path(), &[]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("nothing changed"));

    // A changed option: only the conflist is replaced, by rename (new inode).
    let v = ok_json(install(&ns, root.path(), &["--json", "--mtu", "1400"]));
    let c = changes(&v);
    assert_eq!(c[3], ("10-cni6.conflist".into(), "updated".into()));
    assert!(c[..3].iter().all(|c| c.1 == "unchanged"), "{c:?}");
    assert_ne!(inode(&conf.join("10-cni6.conflist")).0, before[3].0);
    let list: Value =
        serde_json::from_slice(&std::fs::read(conf.join("10-cni6.conflist")).unwrap()).unwrap();
    assert_eq!(list["plugins"][0]["mtu"], 1400);
    // No temp files anywhere.
    assert_eq!(listing(&bin), vec!["bridge6", "firewall6", "ipam-prefix"]);
    // .cni6-installed: what `cni6 uninstall` removes.
    assert_eq!(
        listing(&conf),
        vec![".cni6-installed", "10-cni6.conflist", "99-loopback.conf"]
    );
}

#[test]
fn install_refuses_a_conflist_that_sorts_first_unless_forced() {
    harness::require_root();
    let ns = node();
    let root = TempDir::new("c6op-first");
    let bin = root.join("opt/cni/bin");
    let conf = root.join("etc/cni/net.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("05-other.conflist"), "{}").unwrap();

    let o = install(&ns, root.path(), &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("05-other.conflist") && err.contains("--force"),
        "{err}"
    );
    assert!(listing(&bin).is_empty(), "refusal installs nothing");
    assert_eq!(listing(&conf), vec!["05-other.conflist"]);

    let v = ok_json(install(&ns, root.path(), &["--json", "--force"]));
    assert_eq!(v["shadowedBy"], serde_json::json!(["05-other.conflist"]));
    assert_eq!(
        listing(&conf),
        vec![".cni6-installed", "05-other.conflist", "10-cni6.conflist"],
        "the other CNI's conflist is never deleted"
    );
    // An earlier name of our own is accepted without --force.
    let v = ok_json(install(
        &ns,
        root.path(),
        &["--json", "--conflist-name", "00-cni6.conflist"],
    ));
    assert_eq!(v["shadowedBy"], serde_json::json!([]));
}

#[test]
fn install_accepts_multus_in_front_and_refuses_any_other_list() {
    harness::require_root();
    let ns = node();
    for (name, text) in [
        (
            "00-multus.conf",
            r#"{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus"}"#,
        ),
        (
            "00-multus.conflist",
            r#"{"cniVersion":"1.0.0","name":"multus-cni-network","plugins":[{"type":"multus-shim"}]}"#,
        ),
    ] {
        let root = TempDir::new("c6op-multus");
        let conf = root.join("etc/cni/net.d");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join(name), text).unwrap();
        // multus delegates to the lists behind it: install (and --watch,
        // every pass) goes ahead, as lint accepts it.
        let v = ok_json(install(&ns, root.path(), &["--json"]));
        assert_eq!(v["shadowedBy"], serde_json::json!([]), "{name}");
        let v = ok_json(install(&ns, root.path(), &["--json"]));
        assert_eq!(v["changed"], false, "{name}: second pass");
        // Another list between multus and ours is in front all the same.
        std::fs::write(
            conf.join("00-other.conflist"),
            r#"{"cniVersion":"1.0.0","name":"o","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        let o = install(&ns, root.path(), &[]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("00-other.conflist") && !err.contains(&format!("{name},")),
            "{err}"
        );
    }
}

#[test]
fn install_refuses_an_unwritable_directory_before_writing_anything() {
    harness::require_root();
    let ns = node();
    let root = TempDir::new("c6op-ro");
    let bin = root.join("opt/cni/bin");
    let conf = root.join("etc/cni/net.d");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&conf).unwrap();
    // Root ignores permission bits: make the conf dir a read-only mount,
    // in a private mount namespace that dies with the command.
    let script = format!(
        "mount -t tmpfs -o ro c6op-ro {conf} && exec {cni6} install --bin-dir {bin} --conf-dir {conf} {opts}",
        conf = conf.display(),
        bin = bin.display(),
        cni6 = cni6().display(),
        opts = LIST_OPTS.join(" ")
    );
    let o = Command::new("ip")
        .args(["netns", "exec", ns.name(), "unshare"])
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare");
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--conf-dir")
            && err.contains("not writable")
            && err.contains("nothing was installed"),
        "{err}"
    );
    assert!(
        listing(&bin).is_empty(),
        "no binary installed: {:?}",
        listing(&bin)
    );
}

#[test]
fn install_preflight_refuses_what_would_not_work_unless_forced() {
    harness::require_root();
    let ns = node();
    // ens4's ULA is a /64: cut to its first /80 it is the reserved C:0::/80.
    ns.add_veth("ens4", "ens4peer");
    ns.add_addr("ens4", "fd8c:1f0a:77e3::5/64");
    let root = TempDir::new("c6op-pre");
    let conf = root.join("etc/cni/net.d");
    let cluster = &LIST_OPTS[..2];
    let cases: &[(&[&str], &str)] = &[
        (&["--cni-version", "0.3.1"], "firewall6 speaks 0.4.0"),
        (&["--cni-version", "0.2.0"], "bridge6 speaks 0.3.0"),
        (
            &["--ula-from-interface", "ens99"],
            "\"ens99\" (ula): not resolvable",
        ),
        (
            &["--ula-from-interface", "ens4"],
            "virtual-IP range C:0::/80",
        ),
    ];
    for (extra, needle) in cases {
        let o = if extra[0] == "--cni-version" {
            install(&ns, root.path(), extra)
        } else {
            install_with(&ns, root.path(), cluster, extra)
        };
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {err}");
        assert!(
            err.contains("preflight failed") && err.contains(needle),
            "{extra:?}: {err}"
        );
        assert!(listing(&conf).is_empty(), "{extra:?}: nothing written");
    }
    // --force installs anyway (the operator's call), and says what is wrong.
    let o = install(&ns, root.path(), &["--cni-version", "0.3.1", "--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("error     cniVersion"));
}
