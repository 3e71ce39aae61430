//! Local OCI images for the runtimes (no registry): the pause image and
//! busybox images packed as image-layout tarballs.

use super::{busybox_rootfs, describe, PAUSE_IMAGE};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Build testdata/runtimes/pause.c with `gcc -static` and pack it into an
/// OCI image-layout tarball named [`PAUSE_IMAGE`] (for `ctr images
/// import`). Returns the tarball's path.
pub fn build_pause_image(dir: &Path) -> PathBuf {
    let layer = dir.join("layer");
    std::fs::create_dir_all(&layer).expect("mkdir layer");
    let src = testdata::dir().join("runtimes/pause.c");
    let out = Command::new("gcc")
        .args(["-static", "-Os", "-s", "-o"])
        .arg(layer.join("pause"))
        .arg(&src)
        .output()
        .expect("spawn gcc");
    assert!(
        out.status.success(),
        "{}",
        describe("gcc -static pause.c", &out)
    );
    build_oci_image(dir, PAUSE_IMAGE, &layer, &["/pause"])
}

/// A busybox image (Debian `busybox-static` with a link for every applet,
/// and /www/index.html) named `name`, running `entrypoint`: the local
/// stand-in for critest's busybox and web server images (no registry).
pub fn build_busybox_image(dir: &Path, name: &str, entrypoint: &[&str]) -> PathBuf {
    let layer = dir.join("layer");
    busybox_rootfs(&layer);
    let list = run_ok(Command::new("/bin/busybox").arg("--list"));
    for applet in list.lines().filter(|a| !a.is_empty() && *a != "busybox") {
        let _ = std::os::unix::fs::symlink("busybox", layer.join("bin").join(applet));
    }
    build_oci_image(dir, name, &layer, entrypoint)
}

/// Pack the files of `layer` into an OCI image-layout tarball named
/// `name` (for `ctr images import`): one uncompressed layer, a config with
/// `entrypoint`, a manifest and an index. Returns the tarball's path.
pub fn build_oci_image(dir: &Path, name: &str, layer: &Path, entrypoint: &[&str]) -> PathBuf {
    let blobs = dir.join("layout/blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir blobs");
    let layer_tar = dir.join("layer.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(layer)
            .args(["--owner=0", "--group=0", "--numeric-owner", "-cf"])
            .arg(&layer_tar)
            .arg("."),
    );
    let layer_bytes = std::fs::read(&layer_tar).expect("read layer");
    let (layer_digest, layer_size) = put_blob(&blobs, &layer_bytes);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Entrypoint": entrypoint, "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [format!("sha256:{layer_digest}")] },
    });
    let (config_digest, config_size) = put_blob(&blobs, &serde_json::to_vec(&config).unwrap());
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": format!("sha256:{config_digest}"), "size": config_size },
        "layers": [ { "mediaType": "application/vnd.oci.image.layer.v1.tar",
                      "digest": format!("sha256:{layer_digest}"), "size": layer_size } ],
    });
    let (manifest_digest, manifest_size) =
        put_blob(&blobs, &serde_json::to_vec(&manifest).unwrap());
    let tag = name.rsplit_once(':').map_or("latest", |(_, t)| t);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [ {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_size,
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": tag,
            },
        } ],
    });
    let layout = dir.join("layout");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
    let tarball = dir.join("image.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-cf")
            .arg(&tarball)
            .args(["oci-layout", "index.json", "blobs"]),
    );
    tarball
}

/// Store `bytes` as a content-addressed blob; returns (hex digest, size).
fn put_blob(blobs: &Path, bytes: &[u8]) -> (String, usize) {
    let tmp = blobs.join(".incoming");
    std::fs::write(&tmp, bytes).expect("write blob");
    let out = run_ok(Command::new("sha256sum").arg(&tmp));
    let digest = out
        .split_whitespace()
        .next()
        .expect("sha256sum prints a digest")
        .to_string();
    std::fs::rename(&tmp, blobs.join(&digest)).expect("rename blob");
    (digest, bytes.len())
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{}",
        describe(&format!("{cmd:?}"), &out)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
