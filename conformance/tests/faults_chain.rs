//! Fault injection at the kernel boundary, in the middle of the chain's ADD
//! (bridge6 → ipam-prefix → firewall6, run as libcni runs a conflist, in a
//! node namespace each test makes): the pod namespace vanishes, the bridge
//! is replaced, ip6tables is missing or fails, the data dir turns read-only,
//! the disk is full. For each: ADD answers one spec error (exit ≠ 0, one
//! JSON object, a code, a message naming what failed), rolls back what it
//! made (no veth, no store record or slot link, no per-pod rule), and the
//! later DEL or GC leaves the node clean (conformance.md #82, 17, 48, 69).
//!
//! Faults are injected without touching the machine: a wrapper in front of
//! ipam-prefix in the chain's own CNI_PATH acts between bridge6's steps; a
//! private mount namespace (`unshare --mount --propagation private`) hides
//! or replaces ip6tables for one call; a small tmpfs mounted on the chain's
//! own data dir (unmounted on drop) goes read-only or full.

use conformance::chain::{assert_spec_error, Chain};
use conformance::harness::{self, Invocation, Netns, Output, TempDir};
use serde_json::Value;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PREFIX: &str = "c6z";

fn write_script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/bash\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Put `body` in front of ipam-prefix in the chain's CNI_PATH: it runs
/// first (inside the node, as bridge6's delegate), then execs the real one.
fn wrap_ipam(chain: &Chain, body: &str) {
    let link = chain.bin("ipam-prefix");
    std::fs::remove_file(&link).unwrap();
    let real = harness::plugin("ipam-prefix");
    write_script(&link, &format!("{body}\nexec {} \"$@\"", real.display()));
}

fn unwrap_ipam(chain: &Chain) {
    let link = chain.bin("ipam-prefix");
    std::fs::remove_file(&link).unwrap();
    harness::install_as(
        &harness::plugin("ipam-prefix"),
        chain.bins.path(),
        "ipam-prefix",
    );
}

/// One plugin ADD inside the node, in a private mount namespace prepared
/// by `setup` (shell) first. The host's mounts never change.
fn add_with_mounts(
    chain: &Chain,
    scratch: &TempDir,
    setup: &str,
    plugin: &str,
    cid: &str,
    netns: &str,
    conf: &Value,
) -> Output {
    let script = scratch.join(format!("run-{plugin}"));
    let inner = format!(
        "{setup} && exec ip netns exec {} {}",
        chain.node.name(),
        chain.bin(plugin).display()
    );
    write_script(
        &script,
        &format!(
            "exec unshare --mount --propagation private bash -c {}",
            shell_quote(&inner)
        ),
    );
    Invocation::attachment(&script, "ADD", cid, netns, "eth0")
        .var("CNI_PATH", chain.bins.path_str())
        .stdin_json(conf)
        .run()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A tmpfs of `size` on `dir` in this process's mount namespace, unmounted
/// (lazily) on drop, also when the test fails.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        run(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size},mode=0755"),
            "tmpfs",
            &dir.display().to_string(),
        ]);
        Tmpfs(dir.to_path_buf())
    }

    fn remount(&self, opt: &str) {
        run(&[
            "mount",
            "-o",
            &format!("remount,{opt}"),
            &self.0.display().to_string(),
        ]);
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let c = CString::new(self.0.display().to_string()).unwrap();
        // SAFETY: a valid C string; only our own mount point.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn run(argv: &[&str]) -> String {
    let out = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// [`assert_spec_error`], printing what the plugin said (test log).
fn spec_error(o: &Output) -> (u64, String) {
    let (code, msg) = assert_spec_error(o);
    eprintln!("spec error {code}: {msg}");
    (code, msg)
}

fn assert_all_ok(outs: &[Output], what: &str) {
    for o in outs {
        o.assert_no_panic();
        assert!(o.success(), "{what}: {} / {}", o.stdout, o.stderr);
    }
}

/// The host veth bridge6 would make for `cid` (what must not be left).
fn has_veth_for(chain: &Chain, cid: &str) -> bool {
    let name = conformance::bridge_helpers::expected_host_veth(&chain.network, cid, "eth0");
    chain.host_veths().contains(&name)
}

fn has_record_for(chain: &Chain, cid: &str) -> bool {
    chain
        .records()
        .iter()
        .any(|r| r.starts_with(&format!("{cid}@")))
}

fn has_rules_for(chain: &Chain, cid: &str) -> bool {
    chain
        .pod_rules()
        .iter()
        .any(|r| r.contains(&format!("id={cid}")))
}

fn assert_rolled_back(chain: &Chain, cid: &str, when: &str) {
    assert!(
        !has_veth_for(chain, cid),
        "{when}: veth of {cid} left: {:?}",
        chain.host_veths()
    );
    assert!(
        !has_record_for(chain, cid),
        "{when}: record of {cid} left: {:?}",
        chain.records()
    );
    assert!(
        !has_rules_for(chain, cid),
        "{when}: rules of {cid} left: {:#?}",
        chain.pod_rules()
    );
}

/// conformance.md #82: the bridge is replaced by a non-bridge link of the same
/// name between bridge6's bridge lookup and its use (after IPAM). ADD is a
/// spec error naming the bridge, the veth and the allocation are rolled
/// back; while the impostor stays every ADD says so; once it is gone, DEL
/// and a new ADD work and the node ends clean.
#[test]
fn bridge_replaced_mid_add() {
    let chain = Chain::new(PREFIX);
    let pod = Netns::new(PREFIX);
    // A first pod makes the bridge.
    let first = harness::container_id("bra");
    assert_all_ok(&chain.add(&first, &pod.path_str()), "first ADD");
    let pod2 = Netns::new(PREFIX);
    let cid = harness::container_id("brb");
    let br = &chain.bridge;
    wrap_ipam(
        &chain,
        &format!(
            "if [ \"$CNI_COMMAND\" = ADD ]; then ip link del {br} && ip link add {br} type veth peer name {br}x || exit 99; fi"
        ),
    );
    let outs = chain.add(&cid, &pod2.path_str());
    assert_eq!(
        outs.len(),
        1,
        "firewall6 must not run after a failed bridge6 ADD"
    );
    let (code, msg) = spec_error(&outs[0]);
    assert_eq!(code, 101, "netlink failure: {msg}");
    assert!(
        msg.contains(br.as_str()) && msg.contains("No such device"),
        "{msg}"
    );
    assert_rolled_back(&chain, &cid, "after ADD with the bridge replaced");
    unwrap_ipam(&chain);
    // The impostor is not a bridge: ADD refuses it, naming it.
    let pod3 = Netns::new(PREFIX);
    let cid3 = harness::container_id("brc");
    let outs = chain.add(&cid3, &pod3.path_str());
    let (_, msg) = spec_error(&outs[0]);
    assert!(
        msg.contains(br.as_str()),
        "the error names the bridge {br}: {msg}"
    );
    assert_rolled_back(&chain, &cid3, "after ADD onto a non-bridge");
    chain.node.exec_ok(&["ip", "link", "del", br]);
    for (c, p) in [(&first, &pod), (&cid, &pod2), (&cid3, &pod3)] {
        assert_all_ok(&chain.del(c, &p.path_str()), "DEL");
    }
    chain.assert_clean("after DEL of every attachment");
    // The node recovers: a new ADD makes a new bridge.
    assert_all_ok(&chain.add(&cid, &pod2.path_str()), "ADD after recovery");
    assert_all_ok(&chain.del(&cid, &pod2.path_str()), "DEL after recovery");
    chain.assert_clean("at the end");
}

/// The pod namespace is deleted (`ip netns delete`, as a runtime tearing
/// the sandbox down) while bridge6 waits for IPAM. bridge6 opened the
/// namespace before IPAM and holds it, so the namespace lives until bridge6
/// exits and ADD may still succeed; either way nothing may outlive it: the
/// pod end dies with the namespace, and with it the host end, and the
/// runtime's DEL (netns path gone, conformance.md #25) releases the allocation
/// and the rules, leaving the node clean.
#[test]
fn pod_netns_vanishes_mid_add() {
    let chain = Chain::new(PREFIX);
    let pod = Netns::new(PREFIX);
    let cid = harness::container_id("nsv");
    wrap_ipam(
        &chain,
        &format!(
            "if [ \"$CNI_COMMAND\" = ADD ]; then nsenter -t {} -m ip netns delete {} || exit 99; fi",
            std::process::id(),
            pod.name()
        ),
    );
    let outs = chain.add(&cid, &pod.path_str());
    assert!(!pod.path().exists(), "the wrapper deleted the pod netns");
    for o in &outs {
        o.assert_no_panic();
        if !o.success() {
            spec_error(o);
        } else {
            eprintln!(
                "{} succeeded: bridge6 held the namespace open",
                o.what.split_whitespace().nth(2).unwrap_or("plugin")
            );
        }
    }
    // The namespace is destroyed asynchronously once bridge6 exits.
    let deadline = Instant::now() + Duration::from_secs(10);
    while has_veth_for(&chain, &cid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !has_veth_for(&chain, &cid),
        "host veth outlived the pod namespace"
    );
    unwrap_ipam(&chain);
    assert_all_ok(&chain.del(&cid, &pod.path_str()), "DEL with the netns gone");
    chain.assert_clean("after DEL");
    // A second DEL is still a success (idempotent, conformance.md #26).
    assert_all_ok(&chain.del(&cid, &pod.path_str()), "second DEL");
}

/// ip6tables hidden (a private mount namespace binds /dev/null over the
/// xtables binary) for firewall6's ADD: error 50 naming ip6tables, no rule;
/// the runtime's DEL of the chain then frees the veth and the allocation.
#[test]
fn ip6tables_missing_for_firewall_add() {
    let chain = Chain::new(PREFIX);
    let scratch = TempDir::new("c6zscr");
    let pod = Netns::new(PREFIX);
    let cid = harness::container_id("ipm");
    let b = chain
        .call(
            "bridge6",
            "ADD",
            &cid,
            &pod.path_str(),
            &chain.bridge_conf("1.0.0"),
        )
        .run();
    assert!(b.success(), "{}", b.stderr);
    let prev = b.json.clone().unwrap();
    let f = add_with_mounts(
        &chain,
        &scratch,
        "mount --bind /dev/null /usr/sbin/ip6tables",
        "firewall6",
        &cid,
        &pod.path_str(),
        &chain.firewall_conf("1.0.0", &prev),
    );
    let (code, msg) = spec_error(&f);
    assert_eq!(code, 50, "{msg}");
    assert!(msg.contains("ip6tables"), "{msg}");
    assert!(!has_rules_for(&chain, &cid), "{:#?}", chain.pod_rules());
    assert_all_ok(&chain.del(&cid, &pod.path_str()), "DEL");
    chain.assert_clean("after DEL");
}

/// ip6tables-restore fails (a wrapper over the xtables binary in a private
/// mount namespace answers every restore with an error, while listing
/// still works): firewall6's ADD is a spec error quoting ip6tables-restore,
/// no per-pod rule is left half made (the batch is atomic), and DEL and GC
/// leave the node clean.
#[test]
fn ip6tables_restore_fails_for_firewall_add() {
    let chain = Chain::new(PREFIX);
    let scratch = TempDir::new("c6zscr");
    let pod = Netns::new(PREFIX);
    let cid = harness::container_id("ipf");
    // One good pod first, so the node-wide chains exist and the failing
    // batch is the per-pod one.
    let ok_cid = harness::container_id("ipk");
    let ok_pod = Netns::new(PREFIX);
    assert_all_ok(&chain.add(&ok_cid, &ok_pod.path_str()), "first ADD");
    let b = chain
        .call(
            "bridge6",
            "ADD",
            &cid,
            &pod.path_str(),
            &chain.bridge_conf("1.0.0"),
        )
        .run();
    assert!(b.success(), "{}", b.stderr);
    let prev = b.json.clone().unwrap();
    let real = std::fs::canonicalize("/usr/sbin/ip6tables-restore").unwrap();
    let saved = scratch.join("xtables-real");
    std::fs::write(&saved, b"").unwrap();
    let fake = scratch.join("xtables-fake");
    write_script(
        &fake,
        &format!(
            "case \"$(basename \"$0\")\" in\n  *restore*) cat >/dev/null; echo \"ip6tables-restore: line 2 failed (injected)\" >&2; exit 1;;\n  *) exec -a \"$0\" {} \"$@\";;\nesac",
            saved.display()
        ),
    );
    let setup = format!(
        "mount --bind {real} {saved} && mount --bind {fake} {real}",
        real = real.display(),
        saved = saved.display(),
        fake = fake.display()
    );
    let f = add_with_mounts(
        &chain,
        &scratch,
        &setup,
        "firewall6",
        &cid,
        &pod.path_str(),
        &chain.firewall_conf("1.0.0", &prev),
    );
    let (code, msg) = spec_error(&f);
    assert!(
        msg.contains("ip6tables-restore") && msg.contains("injected"),
        "code {code}: {msg}"
    );
    assert!(!has_rules_for(&chain, &cid), "{:#?}", chain.pod_rules());
    assert!(has_rules_for(&chain, &ok_cid), "the other pod's rules stay");
    // The runtime's DEL for the failed ADD, then GC with nothing alive.
    assert_all_ok(&chain.del(&cid, &pod.path_str()), "DEL");
    assert!(!has_veth_for(&chain, &cid) && !has_record_for(&chain, &cid));
    assert_all_ok(&chain.gc(&[]), "GC");
    chain.assert_clean("after GC with an empty valid set");
}

/// The data dir turns read-only (remount of the tmpfs it lives on) between
/// two pods: ADD is a spec error naming the store path, no veth or rule is
/// left; back to read-write, DEL and GC leave the node clean.
#[test]
fn data_dir_read_only() {
    let chain = Chain::new(PREFIX);
    let fs = Tmpfs::mount(&chain.data_dir, "1m");
    let pod_a = Netns::new(PREFIX);
    let a = harness::container_id("roa");
    assert_all_ok(&chain.add(&a, &pod_a.path_str()), "ADD before");
    fs.remount("ro");
    let pod_b = Netns::new(PREFIX);
    let b = harness::container_id("rob");
    let outs = chain.add(&b, &pod_b.path_str());
    assert_eq!(outs.len(), 1);
    let (code, msg) = spec_error(&outs[0]);
    assert!(
        msg.contains(&chain.data_dir.display().to_string())
            && msg.to_lowercase().contains("read-only"),
        "code {code}: the message names the store and the reason: {msg}"
    );
    assert_rolled_back(&chain, &b, "after ADD on a read-only store");
    assert!(
        has_record_for(&chain, &a),
        "the earlier pod keeps its record"
    );
    fs.remount("rw");
    assert_all_ok(&chain.del(&b, &pod_b.path_str()), "DEL of the failed ADD");
    assert_all_ok(&chain.gc(std::slice::from_ref(&a)), "GC keeping a");
    assert!(has_record_for(&chain, &a) && has_veth_for(&chain, &a));
    assert_all_ok(&chain.del(&a, &pod_a.path_str()), "DEL a");
    chain.assert_clean("after DEL");
}

/// The disk is full (a 64 KiB tmpfs filled to ENOSPC): ADD is a spec error
/// naming the store and "No space left", rolled back; once space is back,
/// DEL and GC leave the node clean and ADD works again.
#[test]
fn disk_full() {
    let chain = Chain::new(PREFIX);
    let _fs = Tmpfs::mount(&chain.data_dir, "64k");
    let pod_a = Netns::new(PREFIX);
    let a = harness::container_id("dfa");
    assert_all_ok(&chain.add(&a, &pod_a.path_str()), "ADD before");
    let filler = chain.data_dir.join("filler");
    // dd stops at ENOSPC (exit 1): that is the point.
    let _ = std::process::Command::new("dd")
        .args(["if=/dev/zero", &format!("of={}", filler.display()), "bs=4k"])
        .output()
        .unwrap();
    let pod_b = Netns::new(PREFIX);
    let b = harness::container_id("dfb");
    let outs = chain.add(&b, &pod_b.path_str());
    assert_eq!(outs.len(), 1);
    let (code, msg) = spec_error(&outs[0]);
    assert!(
        msg.contains(&chain.data_dir.display().to_string()) && msg.contains("No space left"),
        "code {code}: {msg}"
    );
    assert_rolled_back(&chain, &b, "after ADD on a full disk");
    // DEL must work even on a full disk (it only removes).
    assert_all_ok(
        &chain.del(&b, &pod_b.path_str()),
        "DEL of the failed ADD, disk still full",
    );
    std::fs::remove_file(&filler).unwrap();
    assert_all_ok(&chain.gc(&[]), "GC with nothing alive");
    chain.assert_clean("after GC");
    assert_all_ok(&chain.add(&b, &pod_b.path_str()), "ADD once space is back");
    assert_all_ok(&chain.del(&b, &pod_b.path_str()), "DEL");
    chain.assert_clean("at the end");
}
