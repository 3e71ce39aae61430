//! The plugin directory a runtime is given, and spies on its calls.

use crate::harness::{bin_dir, reference};
use std::path::Path;

/// A plugin directory as a runtime's `cni_plugin_dirs` / CRI `bin_dir`:
/// copies (not links: a rebuild of target/ during the test must not swap a
/// binary under a running runtime) of our three plugins and the reference
/// `loopback`, which both runtimes call for `lo`.
pub fn install_plugins(dir: &Path) {
    std::fs::create_dir_all(dir).expect("create plugin dir");
    for name in ["bridge6", "ipam-prefix", "firewall6"] {
        let src = bin_dir().join(name);
        assert!(
            src.is_file(),
            "plugin binary {} not found: run `cargo build --release --workspace --bins` first",
            src.display()
        );
        std::fs::copy(&src, dir.join(name))
            .unwrap_or_else(|e| panic!("copy {} into {}: {e}", src.display(), dir.display()));
    }
    std::fs::copy(reference("loopback"), dir.join("loopback")).expect("copy loopback");
}

/// Replace `dir/<plugin>` by a spy that runs the real binary and appends
/// one line per call to `log`: `<COMMAND> id=<id> netns=<netns> if=<ifname>
/// rc=<exit code>` (what the reference `debug` plugin would record; here
/// it shows which calls a real runtime makes and how they ended).
pub fn spy_on(dir: &Path, plugin: &str, log: &Path) {
    let real = dir.join(format!("{plugin}.real"));
    std::fs::rename(dir.join(plugin), &real).expect("move plugin aside");
    let script = format!(
        "#!/bin/sh\n\"{}\"\nrc=$?\necho \"$CNI_COMMAND id=$CNI_CONTAINERID netns=$CNI_NETNS if=$CNI_IFNAME rc=$rc\" >> \"{}\"\nexit $rc\n",
        real.display(),
        log.display()
    );
    let path = dir.join(plugin);
    std::fs::write(&path, script).expect("write spy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod spy");
}
