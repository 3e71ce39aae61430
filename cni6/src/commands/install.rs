//! `cni6 install`: put the plugins and the node's conflist where the
//! container runtime looks.
//!
//! Why every file goes through a temp name in the target directory, fsync
//! and rename: kubelet/containerd may exec a plugin or re-read the conf
//! directory at any moment, and must see either the old file or the new
//! one, never a half-written one; overwriting a running binary in place
//! also fails with ETXTBSY. Unchanged files are not rewritten (a rewrite of
//! the conflist makes the runtime reload the network), an existing conflist
//! is never deleted, and a conf directory in which another CNI's list
//! sorts first (the runtime uses only the first) is refused unless
//! `--force`, because installing would silently change nothing; multus
//! in front is fine (it delegates; the same rule as `cni6 lint`).
//!
//! Before anything is written the list goes through `cni6 lint`'s checks
//! with this node's facts (an interface that does not exist, a ULA that
//! cuts to the reserved C:0::/80, a cniVersion a plugin of the list does
//! not speak, a node prefix outside --cluster-ula): an error refuses the
//! install unless `--force`. What install wrote is recorded in
//! `<conf-dir>/.cni6-installed` so `cni6 uninstall` removes exactly that.
//! `--watch SECS` keeps installing (the DaemonSet's long-running
//! container): a changed file on the node is rewritten, an unchanged one
//! is left alone, and br_netfilter's IPv6 hook is turned off again when
//! it is back on (`--prepare-node` turns it off once).

use crate::commands::conflist::{render, ConflistOpts};
use crate::commands::lint::{self, Level};
use crate::error::{CliError, Result};
use crate::node::{self, network_configs, NetworkQuery, PLUGINS};
use crate::options::Output;
use clap::Args;
use serde_json::json;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where install records what it wrote, for `uninstall`: hidden and without
/// a .conf/.conflist/.json extension, so no runtime reads it as a network.
pub const MANIFEST: &str = ".cni6-installed";
/// Where `install --watch` stamps each completed pass (liveness).
pub const DEFAULT_STAMP: &str = "/run/cni6/installed";
/// Our conflist's default file name: "10-" so it sorts before the usual
/// fallbacks ("99-loopback.conf", "87-podman-bridge.conflist").
pub const DEFAULT_CONFLIST_NAME: &str = "10-cni6.conflist";

#[derive(Debug, Clone, Args)]
#[command(after_help = "Example (what the DaemonSet's container runs):\n  \
    cni6 install --watch 60 --cluster-ula fd8c:1f0a:77e3::/64 \\\n    \
    --ula-from-interface auto --gua-from-interface auto\n\n\
    Running it again with the same options changes nothing and says so. Before writing \
    anything it runs `cni6 lint`'s checks on the list and refuses (exit 1) unless --force. \
    `cni6 uninstall` removes what it wrote.")]
pub struct InstallArgs {
    /// Where the runtime looks for plugin binaries (containerd's bin_dir).
    #[arg(long, default_value = "/opt/cni/bin", value_name = "DIR")]
    pub bin_dir: PathBuf,

    /// Where the runtime looks for network configurations (containerd's conf_dir).
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "DIR")]
    pub conf_dir: PathBuf,

    /// Directory holding bridge6, ipam-prefix and firewall6
    /// [default: the directory of this cni6 binary].
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,

    /// File name of the conflist in --conf-dir.
    #[arg(long, default_value = DEFAULT_CONFLIST_NAME, value_name = "NAME")]
    pub conflist_name: String,

    /// Install even when the preflight checks fail or another network
    /// configuration sorts before ours (the runtime keeps using that one).
    #[arg(long)]
    pub force: bool,

    /// Other plugins copied from --from when they are there (the image
    /// ships loopback, which containerd needs, and portmap, for hostPort).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "loopback,portmap",
        value_name = "NAME,NAME"
    )]
    pub extra_plugins: Vec<String>,

    /// Also turn on IPv6 forwarding now (accept_ra raised 1 -> 2 first, as
    /// bridge6 does at its first ADD) and set
    /// net.bridge.bridge-nf-call-ip6tables=0 where br_netfilter is loaded
    /// (at 1 Services to pods on the same node are lost); needs a writable
    /// /proc/sys.
    #[arg(long)]
    pub prepare_node: bool,

    /// Keep running: install again every SECS seconds (rewriting only what
    /// changed on the node, and setting bridge-nf-call-ip6tables back to 0
    /// when br_netfilter was loaded meanwhile), stamping --stamp after each
    /// pass.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch: Option<u64>,

    /// The file `--watch` touches after each pass.
    #[arg(long, default_value = DEFAULT_STAMP, value_name = "FILE")]
    pub stamp: PathBuf,

    /// Liveness probe of a running `--watch`: exit 0 when --stamp was
    /// touched within SECS seconds, else 1. Writes nothing.
    #[arg(long, value_name = "SECS", conflicts_with = "watch")]
    pub alive_within: Option<u64>,

    #[command(flatten)]
    pub conflist: ConflistOpts,
}

/// What happened to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    Updated,
    Unchanged,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Change::Created => "created",
            Change::Updated => "updated",
            Change::Unchanged => "unchanged",
        }
    }
}

fn io_err(what: String, e: std::io::Error) -> CliError {
    CliError::Failed(format!("{what}: {e}"))
}

/// Can this process create files in `dir`? Checked for both directories
/// before anything is written, so a refusal changes nothing.
fn check_writable(dir: &Path, what: &str) -> Result<()> {
    if !dir.is_dir() {
        fs::create_dir_all(dir).map_err(|e| {
            CliError::Failed(format!(
                "{what} {}: does not exist and cannot be created: {e}",
                dir.display()
            ))
        })?;
    }
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| CliError::Usage(format!("{what} {}: NUL in path", dir.display())))?;
    // SAFETY: c is a valid NUL-terminated string for the call's duration.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(CliError::Failed(format!(
            "{what} {} is not writable ({e}): nothing was installed. Mount it read-write \
             (in a pod: a hostPath volume without readOnly) or run as root",
            dir.display()
        )));
    }
    Ok(())
}

/// Write `bytes` to `dir/name` atomically unless it already holds them.
pub fn install_file(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<Change> {
    let target = dir.join(name);
    let change = match fs::read(&target) {
        Ok(old) if old == bytes => {
            let perm = fs::metadata(&target)
                .map_err(|e| io_err(format!("stat {}", target.display()), e))?
                .permissions();
            if perm.mode() & 0o7777 == mode {
                return Ok(Change::Unchanged);
            }
            Change::Updated
        }
        Ok(_) => Change::Updated,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Change::Created,
        Err(e) => return Err(io_err(format!("read {}", target.display()), e)),
    };
    let how = cni_common::file::Replace {
        mode,
        durability: cni_common::file::Durability::Full,
        create_dir: false,
    };
    cni_common::file::replace(&target, bytes, &how)
        .map_err(|e| io_err(format!("install {}", target.display()), e))?;
    Ok(change)
}

pub struct Installed {
    pub files: Vec<(PathBuf, Change)>,
    /// Configurations that sort before ours (installed anyway with --force).
    pub shadowed_by: Vec<String>,
    /// Preflight findings (errors only with --force).
    pub findings: Vec<lint::Finding>,
    /// --extra-plugins that were not in --from.
    pub extras_missing: Vec<String>,
    /// --extra-plugins the node already had from elsewhere (left alone).
    pub extras_kept: Vec<String>,
}

/// lint's checks on the list about to be written, with this node's facts.
pub fn preflight(
    a: &InstallArgs,
    list: &serde_json::Value,
    node: &dyn lint::NodeFacts,
) -> Vec<lint::Finding> {
    let ctx = lint::Context {
        cluster_ula: a.conflist.cluster_ula,
        bin_dir: &a.bin_dir,
        ours_installed_by_caller: true,
    };
    lint::lint_list("the list to install", &render(list), &ctx, node)
}

pub fn install(a: &InstallArgs) -> Result<Installed> {
    install_on(a, &lint::Host)
}

pub fn install_on(a: &InstallArgs, node: &dyn lint::NodeFacts) -> Result<Installed> {
    let mut opts = a.conflist.clone();
    opts.resolve_auto(&node_bridges(&a.conf_dir))?;
    let list = opts.build()?;
    let conf_bytes = render(&list);
    let findings = preflight(a, &list, node);
    let errors: Vec<&lint::Finding> = findings
        .iter()
        .filter(|f| f.level == Level::Error)
        .collect();
    if !errors.is_empty() && !a.force {
        return Err(CliError::Failed(format!(
            "preflight failed, nothing was installed:\n{}\nFix the options (or the node), or \
             pass --force to install anyway",
            errors
                .iter()
                .map(|f| format!("  - {}", f.message))
                .collect::<Vec<_>>()
                .join("\n")
        )));
    }
    if a.conflist_name.contains('/')
        || !(a.conflist_name.ends_with(".conflist") || a.conflist_name.ends_with(".json"))
    {
        return Err(CliError::Usage(format!(
            "--conflist-name {:?}: expected a file name ending in .conflist",
            a.conflist_name
        )));
    }
    let from = match &a.from {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .map_err(|e| io_err("find the cni6 binary".into(), e))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    let mut binaries = Vec::new();
    for p in PLUGINS {
        let src = from.join(p);
        let bytes = fs::read(&src).map_err(|e| {
            CliError::Failed(format!(
                "read plugin {}: {e} (pass --from DIR with the directory holding {})",
                src.display(),
                PLUGINS.join(", ")
            ))
        })?;
        binaries.push((p.to_string(), bytes));
    }
    let mut extras_missing = Vec::new();
    for p in &a.extra_plugins {
        if p.is_empty() || p.contains('/') || PLUGINS.contains(&p.as_str()) {
            return Err(CliError::Usage(format!(
                "--extra-plugins {p:?}: expected plugin file names like loopback,portmap"
            )));
        }
        match fs::read(from.join(p)) {
            Ok(bytes) => binaries.push((p.clone(), bytes)),
            Err(_) => extras_missing.push(p.clone()),
        }
    }
    check_writable(&a.bin_dir, "--bin-dir")?;
    check_writable(&a.conf_dir, "--conf-dir")?;
    let shadowed_by = node::shadowing_configs(
        &a.conf_dir,
        &network_configs(&a.conf_dir)?,
        &a.conflist_name,
    );
    if !shadowed_by.is_empty() && !a.force {
        return Err(CliError::Failed(format!(
            "{} in {} sorts before {}: the runtime uses the first network configuration it \
             finds, so pods would not use cni6 (only multus may sort first: it delegates). \
             Nothing was installed. Remove or rename it (another CNI may own it), choose an \
             earlier --conflist-name, or pass --force",
            shadowed_by.join(", "),
            a.conf_dir.display(),
            a.conflist_name
        )));
    }
    // An extra plugin the node already had (the runtime's package ships a
    // loopback) is left alone: not overwritten, and not uninstalled later.
    let ours_before = manifest_files(&a.conf_dir);
    let mut files = Vec::new();
    let mut extras_kept = Vec::new();
    for (name, bytes) in &binaries {
        let target = a.bin_dir.join(name);
        let extra = !PLUGINS.contains(&name.as_str());
        if extra && target.exists() && !ours_before.contains(&target) {
            extras_kept.push(name.clone());
            continue;
        }
        let c = install_file(&a.bin_dir, name, bytes, 0o755)?;
        files.push((target, c));
    }
    let c = install_file(&a.conf_dir, &a.conflist_name, &conf_bytes, 0o644)?;
    files.push((a.conf_dir.join(&a.conflist_name), c));
    let manifest = serde_json::to_vec_pretty(&json!({
        "files": files.iter().map(|(p, _)| p).collect::<Vec<_>>(),
    }))
    .map_err(std::io::Error::from)?;
    install_file(&a.conf_dir, MANIFEST, &manifest, 0o644)?;
    Ok(Installed {
        files,
        shadowed_by,
        findings,
        extras_missing,
        extras_kept,
    })
}

/// The bridges of the cni6 networks already configured in `conf_dir` (none
/// when there are none): `auto` must not take one of them for the uplink.
fn node_bridges(conf_dir: &Path) -> Vec<String> {
    node::find_networks(NetworkQuery {
        conf_dir,
        conflist: None,
        network: None,
        data_dir: None,
    })
    .map(|(nets, _)| nets.into_iter().map(|n| n.bridge).collect())
    .unwrap_or_default()
}

/// The files a previous install recorded in `conf_dir` (none when the
/// record is missing or unreadable).
fn manifest_files(conf_dir: &Path) -> Vec<PathBuf> {
    fs::read(conf_dir.join(MANIFEST))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .map(|v| {
            v["files"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str().map(PathBuf::from))
                .collect()
        })
        .unwrap_or_default()
}

/// br_netfilter's IPv6 hook off (docs/security.md): with it on,
/// a Service connection DNATed to a pod on the same node is bridged port to
/// port and dropped by the isolated ports. Reports what it changed.
fn bridge_nf_off(o: &mut Output) -> std::result::Result<(), String> {
    if node::disable_bridge_nf_call_ip6tables()? && !o.json {
        o.line(
            "prepared  net.bridge.bridge-nf-call-ip6tables=0 (was 1: Services to pods on \
             this node are lost with br_netfilter's hook on)",
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// `--prepare-node`: IPv6 forwarding on, the way bridge6 turns it on, and
/// br_netfilter's IPv6 hook off where the module is loaded.
fn prepare_node(o: &mut Output) -> Result<()> {
    let conf = bridge6::sysctl::Conf::open()
        .map_err(|e| CliError::Failed(format!("prepare the node: {e}")))?;
    let ch = bridge6::sysctl::ensure_forwarding(&conf).map_err(|e| {
        CliError::Failed(format!(
            "prepare the node: {e} (a container needs a writable /proc/sys: privileged)"
        ))
    })?;
    if !o.json {
        if ch.enabled {
            o.line("prepared  net.ipv6.conf.all.forwarding=1")?;
        }
        for i in ch.raised_accept_ra {
            o.line(format!(
                "prepared  net.ipv6.conf.{i}.accept_ra=2 (keeps its router advertisements)"
            ))?;
        }
    }
    bridge_nf_off(o).map_err(|e| CliError::Failed(format!("prepare the node: {e}")))
}

#[derive(Debug, Clone, Args)]
#[command(
    after_help = "Removes the files listed in <conf-dir>/.cni6-installed (written by \
    install), then that list. Pods attached keep their interfaces; new pods get no network \
    from cni6."
)]
pub struct UninstallArgs {
    /// The --conf-dir install used.
    #[arg(long, default_value = "/etc/cni/net.d", value_name = "DIR")]
    pub conf_dir: PathBuf,
}

pub fn uninstall(a: &UninstallArgs, o: &mut Output) -> Result<()> {
    let m = a.conf_dir.join(MANIFEST);
    let bytes = match fs::read(&m) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return o.line(format!(
                "nothing to remove: {} does not exist (not installed by cni6 install, or already removed)",
                m.display()
            ))
        }
        Err(e) => return Err(io_err(format!("read {}", m.display()), e)),
    };
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
        CliError::Failed(format!("{}: not a cni6 install record ({e})", m.display()))
    })?;
    let files: Vec<PathBuf> = v["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .collect();
    let mut removed = Vec::new();
    for f in &files {
        match fs::remove_file(f) {
            Ok(()) => removed.push(f.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("remove {}", f.display()), e)),
        }
    }
    fs::remove_file(&m).map_err(|e| io_err(format!("remove {}", m.display()), e))?;
    if o.json {
        return o.json(&json!({"removed": removed}));
    }
    for r in &removed {
        o.line(format!("removed   {r}"))?;
    }
    o.line(format!("removed   {}", m.display()))
}

fn stamp(p: &Path) -> Result<()> {
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).map_err(|e| io_err(format!("create {}", d.display()), e))?;
    }
    fs::write(p, format!("{}\n", std::process::id()))
        .map_err(|e| io_err(format!("stamp {}", p.display()), e))
}

fn alive(a: &InstallArgs, secs: u64, o: &mut Output) -> Result<()> {
    let age = fs::metadata(&a.stamp)
        .and_then(|m| m.modified())
        .map_err(|e| {
            CliError::Failed(format!(
                "no install pass recorded at {}: {e}",
                a.stamp.display()
            ))
        })?
        .elapsed()
        .unwrap_or_default();
    if age.as_secs() > secs {
        return Err(CliError::Failed(format!(
            "last install pass {}s ago (more than {secs}s): the watch loop is stuck",
            age.as_secs()
        )));
    }
    o.line(format!("alive: last install pass {}s ago", age.as_secs()))
}

pub fn run(a: &InstallArgs, o: &mut Output) -> Result<()> {
    if let Some(secs) = a.alive_within {
        return alive(a, secs, o);
    }
    if a.prepare_node {
        prepare_node(o)?;
    }
    let Some(every) = a.watch else {
        return report(&install(a)?, o);
    };
    // The DaemonSet's long-running container: a failed pass is reported and
    // retried (the node may get its address later); the stamp is touched
    // only after a good one, so liveness sees a loop that stopped working.
    // As PID 1 of a container, SIGTERM's default action does nothing: stop
    // on it explicitly.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let stopping = || stop.load(std::sync::atomic::Ordering::Relaxed);
    loop {
        // br_netfilter may be loaded after the init container ran (by
        // another component): its knob then starts at 1 again.
        if let Err(e) = bridge_nf_off(o) {
            eprintln!("cni6: error: {e}");
        }
        match install(a) {
            Ok(r) => {
                if r.files.iter().any(|(_, c)| *c != Change::Unchanged) {
                    report(&r, o)?;
                }
                stamp(&a.stamp)?;
            }
            Err(e) => eprintln!("{}", e.report()),
        }
        o.out.flush()?;
        let until = std::time::Instant::now() + std::time::Duration::from_secs(every);
        while std::time::Instant::now() < until {
            if stopping() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

fn report(r: &Installed, o: &mut Output) -> Result<()> {
    if o.json {
        let files: Vec<_> = r
            .files
            .iter()
            .map(|(p, c)| json!({"path": p, "change": c.as_str()}))
            .collect();
        return o.json(&json!({
            "files": files,
            "changed": r.files.iter().any(|(_, c)| *c != Change::Unchanged),
            "shadowedBy": r.shadowed_by,
            "extrasMissing": r.extras_missing,
            "extrasKept": r.extras_kept,
            "findings": r.findings.iter().map(|f| json!({"level": f.level.as_str(), "message": f.message})).collect::<Vec<_>>(),
        }));
    }
    for f in &r.findings {
        o.line(format!("{:<9} {}", f.level.as_str(), f.message))?;
    }
    for m in &r.extras_missing {
        o.line(format!("skipped   {m} (not beside cni6 in --from)"))?;
    }
    for m in &r.extras_kept {
        o.line(format!("kept      {m} (the node's own, left alone)"))?;
    }
    for (p, c) in &r.files {
        o.line(format!("{:<9} {}", c.as_str(), p.display()))?;
    }
    if r.files.iter().all(|(_, c)| *c == Change::Unchanged) {
        o.line("nothing changed")?;
    }
    if !r.shadowed_by.is_empty() {
        o.line(format!(
            "warning (--force): {} sorts first, the runtime will not use {}",
            r.shadowed_by.join(", "),
            r.files
                .last()
                .map(|f| f.0.display().to_string())
                .unwrap_or_default()
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_file_is_idempotent_and_atomic() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            install_file(d.path(), "x", b"one", 0o644).unwrap(),
            Change::Created
        );
        assert_eq!(
            install_file(d.path(), "x", b"one", 0o644).unwrap(),
            Change::Unchanged
        );
        assert_eq!(
            install_file(d.path(), "x", b"two", 0o644).unwrap(),
            Change::Updated
        );
        assert_eq!(
            install_file(d.path(), "x", b"two", 0o755).unwrap(),
            Change::Updated
        );
        assert_eq!(fs::read(d.path().join("x")).unwrap(), b"two");
        // No temp file left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn configs_are_sorted_and_filtered() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "99-loopback.conf",
            "05-other.conflist",
            ".hidden.conf",
            "README",
            "x.json",
        ] {
            fs::write(d.path().join(n), "{}").unwrap();
        }
        assert_eq!(
            network_configs(d.path()).unwrap(),
            vec!["05-other.conflist", "99-loopback.conf", "x.json"]
        );
    }
}
