#!/usr/bin/env python3
"""Pack a directory into a one-layer OCI image-layout tarball for
`ctr images import`, the lab's way to images without a registry.

    oci-image.py ROOTFS NAME:TAG OUT.tar [ENTRYPOINT...]

ROOTFS becomes the single uncompressed layer (owned by root); the config
gets ENTRYPOINT and PATH=/bin:/usr/bin. The index annotates the image name
so containerd registers it under NAME:TAG.
"""
import hashlib
import io
import json
import sys
import tarfile


def blob(tar, data):
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
    return {"digest": f"sha256:{digest}", "size": len(data)}


def layer_bytes(rootfs):
    buf = io.BytesIO()

    def root_owned(info):
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        t.add(rootfs, arcname=".", filter=root_owned)
    return buf.getvalue()


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    rootfs, name, out, entrypoint = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    layer = layer_bytes(rootfs)
    with tarfile.open(out, "w") as tar:
        layer_desc = blob(tar, layer)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": entrypoint, "Env": ["PATH=/bin:/usr/bin"]},
            "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        }
        config_desc = blob(tar, json.dumps(config).encode())
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
        }
        manifest_desc = blob(tar, json.dumps(manifest).encode())
        index = {
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": name,
                    "org.opencontainers.image.ref.name": name.rsplit(":", 1)[-1],
                },
            }],
        }
        for fname, data in (("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'),
                            ("index.json", json.dumps(index).encode())):
            info = tarfile.TarInfo(fname)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


if __name__ == "__main__":
    main()
