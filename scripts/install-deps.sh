#!/usr/bin/env bash
# Installs the Debian packages cni6's tests and demo need. Idempotent: when
# everything is present it does not touch apt at all.
set -euo pipefail
pkgs=(
  iproute2                      # ip netns/link/addr/route for the fixtures
  iptables                      # ip6tables, ip6tables-restore (firewall6, xtables lock)
  containernetworking-plugins   # reference plugins in /usr/lib/cni for side-by-side checks
  tcpdump                       # fabric captures in the multi-node proof
  procps                        # sysctl, ps
  kmod                          # modprobe for br_netfilter where available
  bird2                         # BGP fabric: BIRD in every lab node and the upstream router (fabric_bgp.rs)
  tayga                         # NAT64 on the lab's IPv4-enabled node (nat64.rs, demo --nat64)
  unbound                       # DNS64 (dns64 module) and the IPv4 internet's DNS in the lab
  podman                        # real runtime: podman 4.3, CNI backend (conformance/tests/podman.rs)
  mmdebstrap                    # the cni6 image's Debian base for the Kubernetes lab (scripts/k8s-lab.sh)
  openssl                       # the Kubernetes lab's certificates
  runc                          # OCI runtime for podman and containerd
  catatonit                     # podman's init helper
  busybox-static                # rootfs of the podman containers; ping inside sandboxes
  containerd                    # real runtime: containerd 1.6 CRI (conformance/tests/containerd.rs)
  gcc                           # builds the static pause binary of the local pause image
  libc6-dev                     # libc.a for gcc -static
  python3                       # runs the CRI client (testdata/runtimes/cri_client.py)
  python3-pip                   # installs its gRPC stubs when no pip is on PATH
  time                          # GNU time: peak RSS of each plugin process in the benchmark
  iperf3                        # TCP throughput of every path in `bench --datapath`
  linux-perf                    # perf: where the CPU goes, `bench --datapath --profile`
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${missing[@]}"
fi

# The CRI client's gRPC stubs (PyPI container-runtime-interface-api, with
# grpcio and protobuf wheels): only when python3 cannot import them yet.
if ! python3 -c 'import grpc, cri_api.v1.api_pb2_grpc' 2>/dev/null; then
  python3 -m pip install --quiet --disable-pip-version-check \
    'container-runtime-interface-api==2.0.1' \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages \
      'container-runtime-interface-api==2.0.1'
fi

# The Rust toolchain: the workspace needs rustc >= 1.80 (rust-version in
# Cargo.toml). Debian bookworm's rustc is 1.63, so it is not installed from
# apt; say what to do instead of letting cargo fail later. A warning, not an
# error: the toolchain may be on another PATH than this script's (sudo).
need_rust="1.80"
have_rust=$(rustc --version 2>/dev/null | awk '{print $2}')
if [ -z "$have_rust" ] || [ "$(printf '%s\n%s\n' "$need_rust" "$have_rust" | sort -V | head -n1)" != "$need_rust" ]; then
  echo "install-deps: warning: Rust >= $need_rust needed, found ${have_rust:-none}." >&2
  echo "  Install it with rustup (rustup toolchain install stable), or Debian trixie's" >&2
  echo "  rustc/cargo (1.85); bookworm's 1.63 is too old." >&2
fi
