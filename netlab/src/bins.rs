//! Where the executables the lab runs live: our own (`CNI6_BIN_DIR`,
//! default `<workspace>/target/release`), the upstream peers
//! `scripts/peers.sh` builds, and Debian's reference plugins. A missing
//! binary panics with the command that builds it, so a test fails instead
//! of skipping.

use std::path::{Path, PathBuf};

/// The workspace root (parent of this crate).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("netlab/ sits inside the workspace")
        .to_path_buf()
}

/// Where the plugin binaries under test live: `CNI6_BIN_DIR`, default
/// `<workspace>/target/release`.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("CNI6_BIN_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => workspace_dir().join("target").join("release"),
    }
}

/// Path of one of our plugin binaries; panics with the command to build it
/// when it is not there.
pub fn plugin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    if !p.is_file() {
        panic!(
            "binary {name} not found at {}: build it first (`cargo build --release --workspace \
             --bins`, or `cargo build --workspace --bins` and set \
             CNI6_BIN_DIR=<workspace>/target/debug)",
            p.display()
        );
    }
    p
}

/// Root of the upstream peers `scripts/peers.sh` builds from source
/// (`CNI6_PEERS_DIR`, default /var/cache/cni6-peers): `<root>/<peer>` is the
/// pinned version's bin dir.
pub fn peers_dir() -> PathBuf {
    match std::env::var_os("CNI6_PEERS_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from("/var/cache/cni6-peers"),
    }
}

/// Path of binary `bin` of upstream peer `peer` (plugins, cnitool, multus,
/// containerd, critools); panics with the command that builds it, so a
/// missing peer fails the test instead of skipping it.
pub fn peer(peer: &str, bin: &str) -> PathBuf {
    let p = peers_dir().join(peer).join(bin);
    if !p.is_file() {
        panic!(
            "upstream peer {} not found: build it with `bash scripts/peers.sh` \
             (or `CNI6_PEERS={peer} bash scripts/peers.sh`; CNI6_PEERS_DIR={})",
            p.display(),
            peers_dir().display()
        );
    }
    p
}

/// The reference plugins: upstream containernetworking/plugins at the
/// version `scripts/peers.sh` pins (v1.9.x), built from source.
pub fn reference_dir() -> PathBuf {
    peers_dir().join("plugins")
}

/// Path of a reference plugin; panics with the build command when absent.
pub fn reference(name: &str) -> PathBuf {
    peer("plugins", name)
}

/// Debian's `containernetworking-plugins` (1.1.1, from 2022): the second
/// column of comparisons where it is cheap, since older plugins stay in
/// the field.
pub fn debian_reference_dir() -> PathBuf {
    PathBuf::from("/usr/lib/cni")
}

/// Path of a Debian reference plugin; panics naming the package when absent.
pub fn debian_reference(name: &str) -> PathBuf {
    let p = debian_reference_dir().join(name);
    if !p.is_file() {
        panic!(
            "reference plugin {} not found: install the Debian package containernetworking-plugins",
            p.display()
        );
    }
    p
}
