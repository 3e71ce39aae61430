#!/usr/bin/env bash
# An IPv6-only Kubernetes cluster on this machine, built from the upstream
# sources scripts/peers.sh compiles, running cni6 from deploy/ as printed.
#
#   bash scripts/k8s-lab.sh up       # control plane + nodes + cni6 + CoreDNS (+ multus)
#   bash scripts/k8s-lab.sh status   # processes, nodes, pods
#   bash scripts/k8s-lab.sh down     # removes everything up made (idempotent)
#   bash scripts/k8s-lab.sh kubectl ARGS...   # kubectl with the lab's admin kubeconfig
#   bash scripts/k8s-lab.sh node N CMD...     # CMD inside node N (its netns + mount ns)
#   bash scripts/k8s-lab.sh multus   # put multus (thin) in front of cni6 on every node
#   bash scripts/k8s-lab.sh bench [N]  # pod start latency: apply -> N pods Ready (default 20)
#
# Shape (docs/kubernetes.md): the control plane (etcd on [::1], kube-apiserver
# on the host's fabric address, controller-manager, scheduler) runs on the
# host; each node is a network namespace with its own mount namespace (its
# own /opt/cni/bin, /etc/cni/net.d, /var/lib/cni, /run/netns, ...), its own
# containerd 2, kubelet and kube-proxy. Nodes hang off a plain IPv6 fabric
# (a bridge in a fabric namespace) with one route per node prefix. The
# addresses are the address plan's: the cluster ULA /64 C is the one
# deploy/daemonset.yaml is printed with, node n has C:n::1/80 and the
# documentation GUA 2001:db8:7:n::1/64 on its uplink eth0, services are C::/112.
#
#   CNI6_K8S_DIR     lab state (default /var/lib/cni6-k8s-lab; removed by down)
#   CNI6_K8S_CACHE   image cache kept across runs (default /var/cache/cni6-k8s-lab)
#   CNI6_K8S_NODES   number of nodes (default 2)
#   CNI6_K8S_CNI     cni6 (default) or reference: the upstream bridge +
#                    host-local + firewall chain instead of the DaemonSet
#   CNI6_PEERS_DIR   where scripts/peers.sh put the peers (default /var/cache/cni6-peers)
#
# cni6 reaches the nodes only through its image, built from the workspace's
# target/release by deploy/Dockerfile (cargo build --release first).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
here=$repo/scripts/k8s-lab
LAB=${CNI6_K8S_DIR:-/var/lib/cni6-k8s-lab}
CACHE=${CNI6_K8S_CACHE:-/var/cache/cni6-k8s-lab}
NODES=${CNI6_K8S_NODES:-2}
CNI=${CNI6_K8S_CNI:-cni6}
PEERS=${CNI6_PEERS_DIR:-/var/cache/cni6-peers}
K8S=$PEERS/kubernetes
P=k8slab # prefix of every namespace, link, cgroup and node name

# The underlay: the host (control plane) is ::fe, node n is ::n, the host
# outside the cluster (firewall checks) is ::ff. Kept apart from C.
U=fd00:6b73:0:0
HOST_ADDR=$U::fe
OUTSIDE_ADDR=$U::ff
APISERVER=https://[$HOST_ADDR]:6443
GUA_BASE=2001:db8:7 # node n: 2001:db8:7:n::1/64

log() { echo "k8s-lab: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# The cluster ULA /64 as deploy/daemonset.yaml prints it (--cluster-ula),
# so the lab runs the manifest unchanged. C4 = its first four groups.
cluster_ula() {
  awk '/- --cluster-ula/ {getline; print $2; exit}' "$repo/deploy/daemonset.yaml"
}
CLUSTER_ULA=$(cluster_ula)
C4=$(python3 -c 'import ipaddress,sys
n=ipaddress.ip_network(sys.argv[1])
assert n.prefixlen==64, "cluster ULA must be a /64"
print(":".join(format(int(g, 16), "x") for g in n.exploded.split(":")[:4]))' "$CLUSTER_ULA")
SERVICE_CIDR=$C4::/112
KUBERNETES_SVC=$C4::1
DNS_SVC=$C4::a

node_name() { echo "$P-n$1"; }
node_ula() { echo "$C4:$1::1"; }
node_dir() { echo "$LAB/n$1"; }

kubectl_() { "$K8S/kubectl" --kubeconfig "$LAB/pki/admin.kubeconfig" "$@"; }

# in_node N CMD...: CMD in node N's network and mount namespaces.
in_node() {
  local n=$1
  shift
  nsenter --net="/run/netns/$P-n$n" --mount="$LAB/ns/n$n" -- "$@"
}

# wait_for DESC SECONDS CMD...: retry CMD (quietly) until it succeeds.
wait_for() {
  local desc=$1 secs=$2 t0
  shift 2
  t0=$(date +%s)
  until "$@" >/dev/null 2>&1; do
    if (($(date +%s) - t0 > secs)); then
      log "timed out after ${secs}s waiting for $desc"
      return 1
    fi
    sleep 1
  done
  log "$desc ($(($(date +%s) - t0)) s)"
}

# daemon NAME NODE|- CMD...: start CMD in the background (in node NODE's
# namespaces, or on the host for -), log to logs/NAME.log, pid to pids/NAME.
daemon() {
  local name=$1 n=$2
  shift 2
  if [ "$n" = - ]; then
    setsid "$@" >"$LAB/logs/$name.log" 2>&1 </dev/null &
  else
    setsid nsenter --net="/run/netns/$P-n$n" --mount="$LAB/ns/n$n" -- "$@" \
      >"$LAB/logs/$name.log" 2>&1 </dev/null &
  fi
  echo $! >"$LAB/pids/$name"
}

alive() { [ -f "$LAB/pids/$1" ] && kill -0 "$(cat "$LAB/pids/$1")" 2>/dev/null; }

# stop NAME: TERM the recorded pid, KILL after 15 s.
stop() {
  local f=$LAB/pids/$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

preflight() {
  [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, cgroups, mounts)"
  local missing=()
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    [ -x "$K8S/$b" ] || missing+=("$K8S/$b")
  done
  for b in etcd/etcd coredns/coredns containerd/containerd containerd/ctr critools/crictl multus/multus; do
    [ -x "$PEERS/$b" ] || missing+=("$PEERS/$b")
  done
  [ ${#missing[@]} -eq 0 ] || die "missing peers: ${missing[*]} (run: bash scripts/peers.sh)"
  # deploy/Dockerfile copies them from the workspace's target/release.
  for b in cni6 bridge6 ipam-prefix firewall6; do
    [ -x "$repo/target/release/$b" ] ||
      die "target/release/$b missing (deploy/Dockerfile copies it): cargo build --release --workspace --bins"
  done
  for c in openssl podman mmdebstrap gcc python3 runc nsenter unshare ip6tables; do
    command -v "$c" >/dev/null || die "$c not found: bash scripts/install-deps.sh"
  done
  [ "$NODES" -ge 1 ] && [ "$NODES" -le 9 ] || die "CNI6_K8S_NODES=$NODES: expected 1..9"
}

# ---------------------------------------------------------------- certificates

cert() { # NAME CN O SAN
  local name=$1 cn=$2 o=$3 san=$4 d=$LAB/pki
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/$name.key" 2>/dev/null
  openssl req -new -key "$d/$name.key" -subj "/CN=$cn${o:+/O=$o}" -out "$d/$name.csr"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"
    [ -z "$san" ] || echo "subjectAltName=$san"
  } >"$d/$name.ext"
  openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial \
    -days 30 -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
}

kubeconfig() { # NAME (cert pki/NAME.crt)
  local d=$LAB/pki
  cat >"$d/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $P
  cluster:
    certificate-authority: $d/ca.crt
    server: $APISERVER
users:
- name: $1
  user:
    client-certificate: $d/$1.crt
    client-key: $d/$1.key
contexts:
- name: $P
  context: {cluster: $P, user: $1}
current-context: $P
EOF
}

make_pki() {
  local d=$LAB/pki
  mkdir -p "$d"
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/ca.key" 2>/dev/null
  openssl req -x509 -new -key "$d/ca.key" -subj "/CN=$P-ca" -days 30 -out "$d/ca.crt"
  cert apiserver kube-apiserver "" \
    "IP:$HOST_ADDR,IP:$KUBERNETES_SVC,IP:::1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet kube-apiserver-kubelet-client system:masters ""
  cert admin admin system:masters ""
  cert controller-manager system:kube-controller-manager "" ""
  cert scheduler system:kube-scheduler "" ""
  cert kube-proxy system:kube-proxy "" ""
  cert multus multus "" ""
  for u in admin controller-manager scheduler kube-proxy multus; do kubeconfig "$u"; done
  for n in $(seq "$NODES"); do
    cert "node$n" "system:node:$(node_name "$n")" system:nodes ""
    kubeconfig "node$n"
  done
  openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/sa.key" 2>/dev/null
  openssl pkey -in "$d/sa.key" -pubout -out "$d/sa.pub"
}

# ---------------------------------------------------------------- network

sysctl_in() { ip netns exec "$1" sysctl -qw "$2=$3"; }

make_network() {
  ip netns add "$P-fab"
  ip -n "$P-fab" link set lo up
  ip -n "$P-fab" link add fab0 type bridge
  ip -n "$P-fab" link set fab0 up
  sysctl_in "$P-fab" net.ipv6.conf.fab0.disable_ipv6 1
  # The host's leg: the control plane's address on the fabric.
  ip link add "$P-h" type veth peer name p-host netns "$P-fab"
  ip -n "$P-fab" link set p-host master fab0 up
  sysctl -qw "net.ipv6.conf.$P-h.accept_dad=0"
  ip link set "$P-h" up
  ip addr add "$HOST_ADDR/64" dev "$P-h" nodad
  # A host outside the cluster: firewall6 must keep it off pods' GUAs.
  ip netns add "$P-out"
  ip -n "$P-out" link set lo up
  ip -n "$P-fab" link add p-out type veth peer name eth0 netns "$P-out"
  ip -n "$P-fab" link set p-out master fab0 up
  sysctl_in "$P-out" net.ipv6.conf.eth0.accept_dad 0
  ip -n "$P-out" link set eth0 up
  ip -n "$P-out" addr add "$OUTSIDE_ADDR/64" dev eth0 nodad
  for n in $(seq "$NODES"); do
    local ns=$P-n$n
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # br_netfilter's hook (1 in every new namespace where the module is
    # loaded) is left as the node comes: the DaemonSet's init container
    # (cni6 install --prepare-node) turns it off, and the kubernetes test's
    # Service checks prove it did.
    ip -n "$P-fab" link add "p-n$n" type veth peer name eth0 netns "$ns"
    ip -n "$P-fab" link set "p-n$n" master fab0 up
    sysctl_in "$ns" net.ipv6.conf.eth0.accept_dad 0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" addr add "$U::$n/64" dev eth0 nodad
    ip -n "$ns" addr add "$(node_ula "$n")/80" dev eth0 nodad
    ip -n "$ns" addr add "$GUA_BASE:$n::1/64" dev eth0 nodad
    # Service ClusterIPs are DNATed on the node; the route only has to
    # exist for the node's own (host-network) processes to send at all.
    ip -n "$ns" route add "$SERVICE_CIDR" via "$HOST_ADDR" dev eth0
    # The host reaches kubelets (exec, logs) and pods answer the apiserver.
    ip route add "$C4:$n::/80" via "$U::$n" dev "$P-h"
    ip -n "$P-out" route add "$C4:$n::/80" via "$U::$n" dev eth0
    ip -n "$P-out" route add "$GUA_BASE:$n::/80" via "$U::$n" dev eth0
  done
  # One route per other node per prefix, as static routes, wireguard
  # AllowedIPs or BGP would install.
  for n in $(seq "$NODES"); do
    for m in $(seq "$NODES"); do
      [ "$n" = "$m" ] && continue
      ip -n "$P-n$n" route add "$C4:$m::/80" via "$U::$m" dev eth0
      ip -n "$P-n$n" route add "$GUA_BASE:$m::/80" via "$U::$m" dev eth0
    done
  done
}

# ---------------------------------------------------------------- node mounts

# A persistent mount namespace per node (a bind of its nsfs file), slave
# of the host's so host mounts show through, with the node's own copies of
# the directories a runtime, CNI and kubelet share by fixed paths. Made
# shared inside, because kubelet/containerd need shared or slave mounts
# for mountPropagation (the DaemonSet's /var/run/netns).
NODE_DIRS="/opt/cni/bin /etc/cni/net.d /var/lib/cni /run/netns /run/containerd /var/log/pods /var/log/containers /run/cni6"

make_node_mounts() {
  local n=$1 d
  d=$(node_dir "$n")
  mkdir -p "$LAB/ns"
  if ! mountpoint -q "$LAB/ns"; then
    mount --bind "$LAB/ns" "$LAB/ns"
    mount --make-private "$LAB/ns"
  fi
  touch "$LAB/ns/n$n"
  unshare --mount="$LAB/ns/n$n" --propagation slave true
  local script=""
  for dir in $NODE_DIRS; do
    mkdir -p "$dir" "$d/root$dir"
    script+="mount --bind '$d/root$dir' '$dir'; "
  done
  script+="mount --make-rshared /"
  nsenter --mount="$LAB/ns/n$n" -- sh -ec "$script"
}

# cgroup v1 (hybrid): the node's cgroup root in every hierarchy; cpuset
# children start empty, so they get the parent's cpus and mems.
make_cgroups() {
  local n=$1 h
  for h in /sys/fs/cgroup/*/; do
    [ "$(basename "$h")" = unified ] && continue
    mkdir -p "$h$P-n$n"
    if [ -f "$h/cpuset.cpus" ]; then
      cat "$h/cpuset.cpus" >"$h$P-n$n/cpuset.cpus"
      cat "$h/cpuset.mems" >"$h$P-n$n/cpuset.mems"
    fi
  done
}

# ---------------------------------------------------------------- images

# Images without a registry, cached in $CACHE/images: a pause image (static
# pause.c), busybox for workloads (Debian's busybox-static), CoreDNS from
# the built binary, and the cni6 image from deploy/Dockerfile built by
# podman on a Debian base made from Debian packages.
build_images() {
  local img=$CACHE/images t
  mkdir -p "$img"
  t=$(mktemp -d)
  mkdir -p "$t/pause"
  gcc -static -Os -s -o "$t/pause/pause" "$repo/testdata/runtimes/pause.c"
  python3 "$here/oci-image.py" "$t/pause" localhost/cni6-pause:1 "$img/pause.tar" /pause
  mkdir -p "$t/busybox/bin" "$t/busybox/www" "$t/busybox/etc" "$t/busybox/tmp"
  cp /bin/busybox "$t/busybox/bin/busybox"
  for a in $(/bin/busybox --list); do
    [ "$a" = busybox ] || ln -sf busybox "$t/busybox/bin/$a"
  done
  echo "root:x:0:0:root:/:/bin/sh" >"$t/busybox/etc/passwd"
  echo "root:x:0:" >"$t/busybox/etc/group"
  echo "cni6-k8s-lab" >"$t/busybox/www/index.html"
  python3 "$here/oci-image.py" "$t/busybox" localhost/busybox:lab "$img/busybox.tar" /bin/sh
  mkdir -p "$t/coredns"
  cp "$PEERS/coredns/coredns" "$t/coredns/coredns"
  python3 "$here/oci-image.py" "$t/coredns" localhost/coredns:lab "$img/coredns.tar" /coredns
  rm -rf "$t"
  build_cni6_image
}

podman_() { podman --root "$CACHE/podman/root" --runroot "$CACHE/podman/run" "$@"; }

build_cni6_image() {
  local from release base=$CACHE/debian-base.tar
  from=$(awk '/^FROM/ {print $2; exit}' "$repo/deploy/Dockerfile")
  release=${from#*:}
  release=${release%-slim}
  if [ ! -f "$base" ] || [ "$(cat "$base.release" 2>/dev/null)" != "$release" ]; then
    log "making the $from base from Debian packages (mmdebstrap minbase $release)"
    nice -n 10 mmdebstrap --variant=minbase --mode=root --format=tar "$release" "$base.tmp" \
      http://deb.debian.org/debian >"$LAB/logs/mmdebstrap.log" 2>&1 ||
      die "mmdebstrap failed: $LAB/logs/mmdebstrap.log"
    mv "$base.tmp" "$base"
    echo "$release" >"$base.release"
  fi
  # The name the Dockerfile's FROM resolves to, so the build never pulls.
  podman_ import -q "$base" "docker.io/library/$from" >/dev/null
  log "podman build -f deploy/Dockerfile"
  (cd "$repo" && podman_ build --pull=never --network=host -q -f deploy/Dockerfile \
    -t localhost/cni6:0.1.0 .) >"$LAB/logs/podman-build.log" 2>&1 ||
    die "podman build failed: $LAB/logs/podman-build.log"
  rm -f "$CACHE/images/cni6.tar"
  podman_ save -q --format docker-archive -o "$CACHE/images/cni6.tar" localhost/cni6:0.1.0
}

# ---------------------------------------------------------------- control plane

start_control_plane() {
  local d=$LAB/pki
  daemon etcd - "$PEERS/etcd/etcd" --name "$P" --data-dir "$LAB/etcd" \
    --listen-client-urls "http://[::1]:2379" --advertise-client-urls "http://[::1]:2379" \
    --listen-peer-urls "http://[::1]:2380" --initial-advertise-peer-urls "http://[::1]:2380" \
    --initial-cluster "$P=http://[::1]:2380" --listen-metrics-urls "" --log-level warn
  wait_for "etcd" 60 bash -c "exec 3<>/dev/tcp/::1/2379"
  daemon kube-apiserver - "$K8S/kube-apiserver" \
    --etcd-servers "http://[::1]:2379" \
    --bind-address "$HOST_ADDR" --advertise-address "$HOST_ADDR" --secure-port 6443 \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --tls-cert-file "$d/apiserver.crt" --tls-private-key-file "$d/apiserver.key" \
    --client-ca-file "$d/ca.crt" \
    --kubelet-client-certificate "$d/apiserver-kubelet.crt" --kubelet-client-key "$d/apiserver-kubelet.key" \
    --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$d/sa.pub" --service-account-signing-key-file "$d/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --allow-privileged=true --endpoint-reconciler-type lease
  wait_for "kube-apiserver" 120 kubectl_ get --raw /readyz
  daemon kube-controller-manager - "$K8S/kube-controller-manager" \
    --kubeconfig "$d/controller-manager.kubeconfig" \
    --authentication-kubeconfig "$d/controller-manager.kubeconfig" \
    --authorization-kubeconfig "$d/controller-manager.kubeconfig" \
    --bind-address ::1 --secure-port 10257 \
    --service-account-private-key-file "$d/sa.key" --root-ca-file "$d/ca.crt" \
    --cluster-signing-cert-file "$d/ca.crt" --cluster-signing-key-file "$d/ca.key" \
    --use-service-account-credentials=true --allocate-node-cidrs=false
  daemon kube-scheduler - "$K8S/kube-scheduler" \
    --kubeconfig "$d/scheduler.kubeconfig" \
    --authentication-kubeconfig "$d/scheduler.kubeconfig" \
    --authorization-kubeconfig "$d/scheduler.kubeconfig" \
    --bind-address ::1 --secure-port 10259
}

# ---------------------------------------------------------------- nodes

containerd_config() { # N
  local d
  d=$(node_dir "$1")
  cat <<EOF
version = 3
root = "$d/containerd/root"
state = "$d/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs", "io.containerd.tracing.processor.v1.otlp", "io.containerd.nri.v1.nri"]

[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
[debug]
  address = "$d/containerd-debug.sock"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "localhost/cni6-pause:1"

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  disable_apparmor = true
  # Kubelet asks -997 for node-critical pods; lowering oom_score_adj needs
  # CAP_SYS_RESOURCE, which root lacks on some hosts (and CI's).
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/opt/cni/bin"]
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "::1"
  stream_server_port = "0"
EOF
}

kubelet_config() { # N
  local n=$1 d
  d=$(node_dir "$n")
  cat <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: "$(node_ula "$n")"
port: 10250
readOnlyPort: 0
healthzBindAddress: "::1"
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$LAB/pki/ca.crt"}
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupRoot: /$P-n$n
cgroupsPerQOS: true
containerRuntimeEndpoint: unix://$d/containerd.sock
clusterDNS: ["$DNS_SVC"]
clusterDomain: cluster.local
resolvConf: "$d/resolv.conf"
failSwapOn: false
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
nodeStatusUpdateFrequency: 5s
EOF
}

kube_proxy_config() { # N
  cat <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: "$LAB/pki/kube-proxy.kubeconfig"}
mode: iptables
hostnameOverride: $(node_name "$1")
bindAddress: "::"
healthzBindAddress: "[::1]:10256"
metricsBindAddress: "[::1]:10249"
clusterCIDR: "$CLUSTER_ULA"
conntrack: {maxPerCore: 0}
EOF
}

start_node() {
  local n=$1 d
  d=$(node_dir "$n")
  mkdir -p "$d/containerd" "$d/kubelet"
  make_cgroups "$n"
  make_node_mounts "$n"
  containerd_config "$n" >"$d/containerd.toml"
  kubelet_config "$n" >"$d/kubelet.yaml"
  kube_proxy_config "$n" >"$d/kube-proxy.yaml"
  : >"$d/resolv.conf"
  # containerd finds its shim on PATH: the 2.x shim, not Debian's.
  daemon "containerd-n$n" "$n" env "PATH=$PEERS/containerd:$PATH" \
    "$PEERS/containerd/containerd" --config "$d/containerd.toml"
  wait_for "containerd on node $n" 60 test -S "$d/containerd.sock"
  for i in "$CACHE"/images/*.tar; do
    in_node "$n" "$PEERS/containerd/ctr" --address "$d/containerd.sock" -n k8s.io \
      images import --no-unpack "$i" >/dev/null 2>&1 || die "ctr import $i on node $n failed"
  done
  if [ "$CNI" = reference ]; then install_reference_cni "$n"; fi
  daemon "kubelet-n$n" "$n" "$K8S/kubelet" --config "$d/kubelet.yaml" \
    --kubeconfig "$LAB/pki/node$n.kubeconfig" --root-dir "$d/kubelet" \
    --hostname-override "$(node_name "$n")" --node-ip "$(node_ula "$n")" --v 1
  daemon "kube-proxy-n$n" "$n" "$K8S/kube-proxy" --config "$d/kube-proxy.yaml"
}

# The upstream reference chain (bridge + host-local + firewall, IPv6 only,
# the node's ULA pod range), for side-by-side measurements.
install_reference_cni() {
  local n=$1 d
  d=$(node_dir "$n")
  cp "$PEERS"/plugins/{bridge,host-local,firewall,loopback,portmap} "$d/root/opt/cni/bin/"
  cat >"$d/root/etc/cni/net.d/10-reference.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "reference",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$C4:$n:1::/96"}]],
              "routes": [{"dst": "::/0"}]}},
    {"type": "firewall", "backend": "iptables"},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
  ip netns exec "$P-n$n" sysctl -qw net.ipv6.conf.all.forwarding=1
}

kubelet_ready() { # N: the node object reports Ready
  [ "$(kubectl_ get node "$(node_name "$1")" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

node_registered() { kubectl_ get node "$(node_name "$1")"; }

# ---------------------------------------------------------------- add-ons

subst() { sed -e "s|@DNS_SVC@|$DNS_SVC|g" -e "s|@CLUSTER_ULA@|$CLUSTER_ULA|g" "$@"; }

apply_cni6() {
  kubectl_ apply -f "$repo/deploy/daemonset.yaml"
}

# The NAD CRD, multus' RBAC and deploy/nad-net1.yaml: API objects only.
apply_nad() {
  kubectl_ apply -f "$here/multus-crd.yaml"
  wait_for "NetworkAttachmentDefinition CRD established" 60 kubectl_ wait \
    --for=condition=Established crd/network-attachment-definitions.k8s.cni.cncf.io --timeout=5s
  kubectl_ apply -f "$here/multus-rbac.yaml"
  kubectl_ apply -f "$repo/deploy/nad-net1.yaml"
}

# multus (thin) in front of cni6 on every node: 00-multus.conflist sorts
# first, delegates the cluster network to cni6's conflist and adds the
# networks pods ask for by annotation, read through the lab's kubeconfig.
enable_multus() {
  local n d
  for n in $(seq "$(cat "$LAB/nodes")"); do
    d=$(node_dir "$n")
    [ -f "$d/root/etc/cni/net.d/10-cni6.conflist" ] ||
      die "node $n has no 10-cni6.conflist yet (is the cni6 DaemonSet running?)"
    install -m 0755 "$PEERS/multus/multus" "$d/root/opt/cni/bin/multus"
    cat >"$d/root/etc/cni/net.d/00-multus.conflist.tmp" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "multus-cni-network",
  "plugins": [{
    "type": "multus",
    "kubeconfig": "$LAB/pki/multus.kubeconfig",
    "clusterNetwork": "/etc/cni/net.d/10-cni6.conflist",
    "cniDir": "/var/lib/cni/multus",
    "binDir": "/opt/cni/bin",
    "confDir": "/etc/cni/net.d"
  }]
}
EOF
    mv "$d/root/etc/cni/net.d/00-multus.conflist.tmp" "$d/root/etc/cni/net.d/00-multus.conflist"
  done
  log "multus in front of cni6 on every node"
}

# Pod start latency: kubectl apply of a Deployment of COUNT busybox pods
# (spread over the nodes) until every pod is Ready, wall clock measured
# here; per pod, Ready's lastTransitionTime - creationTimestamp (1 s
# resolution, the API's). Deletes the Deployment afterwards.
bench() {
  local count=${1:-20} t0 t1
  [ -f "$LAB/up" ] || die "the lab is not up"
  CNI=$(cat "$LAB/cni")
  kubectl_ delete deployment bench --ignore-not-found --wait=true >/dev/null
  t0=$(date +%s.%N)
  kubectl_ apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: bench, namespace: default}
spec:
  replicas: $count
  selector: {matchLabels: {app: bench}}
  template:
    metadata: {labels: {app: bench}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
        - name: sleep
          image: localhost/busybox:lab
          imagePullPolicy: Never
          command: ["/bin/sleep", "3600"]
EOF
  kubectl_ rollout status deployment/bench --timeout=600s >/dev/null
  t1=$(date +%s.%N)
  kubectl_ get pods -l app=bench -o json | python3 -c '
import json, sys, datetime
def t(s): return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
lat = sorted((t(next(c["lastTransitionTime"] for c in p["status"]["conditions"] if c["type"] == "Ready"))
              - t(p["metadata"]["creationTimestamp"])).total_seconds() for p in json.load(sys.stdin)["items"])
n = len(lat)
print(f"pods={n} p50={lat[n // 2]:.0f}s p90={lat[min(n - 1, (9 * n) // 10)]:.0f}s max={lat[-1]:.0f}s")'
  echo "cni=$CNI apply->all-ready=$(python3 -c "print(f'{$t1 - $t0:.1f}')")s"
  kubectl_ delete deployment bench --wait=true >/dev/null
  wait_for "bench pods gone" 300 bash -c "[ -z \"\$($K8S/kubectl --kubeconfig $LAB/pki/admin.kubeconfig get pods -l app=bench -o name)\" ]"
}

# ---------------------------------------------------------------- commands

up() {
  preflight
  if [ -f "$LAB/up" ]; then
    log "already up ($LAB); 'down' first to rebuild"
    return 0
  fi
  if [ -e "$LAB" ]; then
    log "leftovers of an earlier lab in $LAB: cleaning up first"
    down
  fi
  local t0
  t0=$(date +%s)
  mkdir -p "$LAB/logs" "$LAB/pids"
  echo "$NODES" >"$LAB/nodes"
  echo "$CNI" >"$LAB/cni"
  make_pki
  make_network
  log "images (pause, busybox, coredns, cni6)"
  build_images
  start_control_plane
  for n in $(seq "$NODES"); do start_node "$n"; done
  for n in $(seq "$NODES"); do wait_for "node $n registered" 120 node_registered "$n"; done
  # No CNI config yet: containerd reports NetworkReady=false, so kubelet
  # keeps the node NotReady until cni6 is installed.
  if [ "$CNI" = cni6 ]; then
    for n in $(seq "$NODES"); do
      kubelet_ready "$n" && die "node $n is Ready before any CNI was installed"
    done
    log "nodes NotReady without a CNI config, as expected; applying deploy/daemonset.yaml"
    apply_cni6
  fi
  for n in $(seq "$NODES"); do wait_for "node $n Ready" 300 kubelet_ready "$n"; done
  if [ "$CNI" = cni6 ]; then
    # Ready also means its readiness probe (cni6 lint) passed on every node.
    wait_for "cni6 DaemonSet ready" 300 kubectl_ -n kube-system rollout status ds/cni6 --timeout=5s
  fi
  subst "$here/coredns.yaml.in" | kubectl_ apply -f -
  if [ "$CNI" = cni6 ]; then apply_nad; fi
  wait_for "CoreDNS ready" 300 kubectl_ -n kube-system rollout status deployment/coredns --timeout=5s
  touch "$LAB/up"
  log "up in $(($(date +%s) - t0)) s: $NODES nodes, cluster ULA $CLUSTER_ULA, services $SERVICE_CIDR"
  log "try: bash scripts/k8s-lab.sh kubectl get nodes,pods -A -o wide"
}

status() {
  [ -d "$LAB" ] || {
    echo "k8s-lab: down"
    return 0
  }
  local f
  for f in "$LAB"/pids/*; do
    [ -f "$f" ] || continue
    if kill -0 "$(cat "$f")" 2>/dev/null; then
      echo "$(basename "$f"): running (pid $(cat "$f"))"
    else echo "$(basename "$f"): NOT running"; fi
  done
  if alive kube-apiserver; then
    kubectl_ get nodes -o wide
    kubectl_ get pods -A -o wide
  fi
}

down() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  local nodes n d
  nodes=$(cat "$LAB/nodes" 2>/dev/null || echo 9)
  for n in $(seq "$nodes"); do
    d=$(node_dir "$n")
    stop "kubelet-n$n"
    stop "kube-proxy-n$n"
    # Every sandbox through CRI, so the CNI DELs run and leave nothing.
    if alive "containerd-n$n" && [ -S "$d/containerd.sock" ]; then
      timeout 120 nsenter --net="/run/netns/$P-n$n" --mount="$LAB/ns/n$n" -- \
        "$PEERS/critools/crictl" -r "unix://$d/containerd.sock" rmp -fa >/dev/null 2>&1 ||
        log "node $n: crictl rmp -fa failed"
    fi
    stop "containerd-n$n"
    # Shims of this node's containerd, and what is left in its cgroups.
    for p in /proc/[0-9]*; do
      if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "-address $d/containerd.sock"; then
        kill -KILL "${p#/proc/}" 2>/dev/null || true
      fi
    done
    for h in /sys/fs/cgroup/*/"$P-n$n"; do
      [ -d "$h" ] || continue
      find "$h" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
    done
  done
  for c in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop "$c"; done
  for n in $(seq "$nodes"); do
    for h in /sys/fs/cgroup/*/"$P-n$n"; do
      [ -d "$h" ] || continue
      for _ in $(seq 50); do
        find "$h" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ -d "$h" ] || break
        sleep 0.1
      done
    done
    [ -e "$LAB/ns/n$n" ] && umount "$LAB/ns/n$n" 2>/dev/null || true
    ip netns del "$P-n$n" 2>/dev/null || true
  done
  mountpoint -q "$LAB/ns" 2>/dev/null && umount "$LAB/ns" || true
  ip netns del "$P-out" 2>/dev/null || true
  ip netns del "$P-fab" 2>/dev/null || true
  ip link del "$P-h" 2>/dev/null || true
  rm -rf "$LAB"
  log "down"
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
kubectl)
  shift
  kubectl_ "$@"
  ;;
node)
  shift
  in_node "$@"
  ;;
multus) enable_multus ;;
bench)
  shift
  bench "$@"
  ;;
*)
  echo "usage: bash scripts/k8s-lab.sh up|down|status|multus|bench [N]|kubectl ARGS|node N CMD" >&2
  exit 2
  ;;
esac
