#!/usr/bin/env bash
# Builds the real upstream peers cni6 is tested against, from their Go module
# sources, at the exact versions pinned below (the one place they are pinned).
# Everything lands in a cache the scripts reuse: a peer is built only when its
# binaries for the pinned version are missing, so a warm run takes seconds.
#
#   CNI6_PEERS_DIR   cache root (default /var/cache/cni6-peers)
#   CNI6_PEERS       space-separated subset to build (default: all)
#   GO               go binary (default: go on PATH, else /usr/local/go/bin/go)
#
# Layout: $CNI6_PEERS_DIR/{gomod,gocache,src}/, bin/<peer>-<version>/ holds the
# binaries, and $CNI6_PEERS_DIR/<peer> is a symlink to the pinned version's
# bin dir: that stable path is what the tests look up.
set -euo pipefail

# --- pinned versions -------------------------------------------------------
PLUGINS_MOD=github.com/containernetworking/plugins
PLUGINS_VER=v1.9.1
CNI_MOD=github.com/containernetworking/cni
CNI_VER=v1.3.1
# multus' go.mod names it gopkg.in/…, not the GitHub path.
MULTUS_MOD=gopkg.in/k8snetworkplumbingwg/multus-cni.v4
MULTUS_VER=v4.3.0
CONTAINERD_MOD=github.com/containerd/containerd/v2
CONTAINERD_VER=v2.4.2
CRITOOLS_MOD=sigs.k8s.io/cri-tools
CRITOOLS_VER=v1.37.0
# 1.34: the last minor whose kubelet runs on cgroup v1 without opting out
# (1.35 refuses it unless failCgroupV1: false), and the lab host is cgroup v1.
KUBERNETES_MOD=k8s.io/kubernetes
KUBERNETES_VER=v1.34.4
# etcd 3.6 is the line Kubernetes 1.34 is released and tested with.
ETCD_MOD=go.etcd.io/etcd/server/v3
ETCD_VER=v3.6.16
COREDNS_MOD=github.com/coredns/coredns
COREDNS_VER=v1.15.0
# ---------------------------------------------------------------------------

root=${CNI6_PEERS_DIR:-/var/cache/cni6-peers}
want=${CNI6_PEERS:-"plugins cnitool multus containerd critools etcd coredns kubernetes"}
GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
[ -x "$GO" ] || { echo "peers.sh: no Go toolchain at $GO (set GO=/path/to/go)" >&2; exit 1; }

mkdir -p "$root/gomod" "$root/gocache" "$root/src" "$root/bin"
export GOMODCACHE="$root/gomod" GOCACHE="$root/gocache" GOPATH="$root/gopath"
# Build with the local Go only (never fetch another toolchain); ignore any
# vendor/ the module zip lacks anyway (GOPROXY: whatever the environment says).
export GOTOOLCHAIN=local GOFLAGS="-mod=mod -buildvcs=false" GOWORK=off

built=()
# src MOD VER: a writable copy of the module's source (the module cache is
# read-only and go.sum may need the test-only dependencies added).
src() {
  local mod=$1 ver=$2 dir
  dir="$root/src/$(echo "$mod" | tr '/' '_')@$ver"
  if [ ! -f "$dir/go.mod" ]; then
    local from
    from=$("$GO" mod download -json "$mod@$ver" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$from" ] || { echo "peers.sh: could not download $mod@$ver" >&2; exit 1; }
    rm -rf "$dir.tmp"
    cp -r "$from" "$dir.tmp"
    chmod -R u+w "$dir.tmp"
    mv "$dir.tmp" "$dir"
  fi
  echo "$dir"
}

# have NAME VER BIN...: true when every binary is present for that version.
have() {
  local name=$1 ver=$2
  shift 2
  for b in "$@"; do [ -x "$root/bin/$name-$ver/$b" ] || return 1; done
}

# link NAME VER: point the stable path at the pinned version.
link() { ln -sfn "bin/$1-$2" "$root/$1"; }

# build NAME VER MOD LDFLAGS TAGS CGO PKG:BIN...
build() {
  local name=$1 ver=$2 mod=$3 ldflags=$4 tags=$5 cgo=$6
  shift 6
  local bins=()
  for pb in "$@"; do bins+=("${pb##*:}"); done
  if have "$name" "$ver" "${bins[@]}"; then
    link "$name" "$ver"
    return 0
  fi
  local dir out t0
  t0=$(date +%s)
  dir=$(src "$mod" "$ver")
  out="$root/bin/$name-$ver"
  mkdir -p "$out.tmp"
  for pb in "$@"; do
    local pkg=${pb%%:*} bin=${pb##*:}
    if [ "$bin" = critest ]; then
      # critest is a Ginkgo test binary: upstream builds it with go test -c.
      (cd "$dir" && CGO_ENABLED=$cgo nice -n 10 "$GO" test -c -tags "$tags" \
        -ldflags "$ldflags" -o "$out.tmp/$bin" "$pkg")
    else
      (cd "$dir" && CGO_ENABLED=$cgo nice -n 10 "$GO" build -tags "$tags" \
        -ldflags "$ldflags" -o "$out.tmp/$bin" "$pkg")
    fi
  done
  rm -rf "$out"
  mv "$out.tmp" "$out"
  link "$name" "$ver"
  built+=("$name $ver ($(($(date +%s) - t0)) s)")
}

# wrapped NAME VER LDFLAGS MODULE-LINES PKG:BIN...: builds main packages of a
# module that refuses `go install` (its go.mod replaces modules with local
# paths) from a generated wrapper module in $root/src that requires it, with
# MODULE-LINES (require/replace blocks) written into the wrapper's go.mod. One
# `go build -o dir/` for all packages so shared packages compile once.
wrapped() {
  local name=$1 ver=$2 ldflags=$3 modlines=$4
  shift 4
  local bins=() pkgs=()
  for pb in "$@"; do
    bins+=("${pb##*:}")
    pkgs+=("${pb%%:*}")
  done
  if have "$name" "$ver" "${bins[@]}"; then
    link "$name" "$ver"
    return 0
  fi
  local dir="$root/src/$name-wrapper@$ver" out="$root/bin/$name-$ver" t0
  t0=$(date +%s)
  mkdir -p "$dir"
  printf 'module cni6.invalid/peers/%s\n\ngo 1.24.0\n\n%s\n' "$name" "$modlines" >"$dir/go.mod"
  rm -rf "$out.tmp"
  mkdir -p "$out.tmp"
  (cd "$dir" && CGO_ENABLED=0 nice -n 10 "$GO" build -trimpath -ldflags "$ldflags" \
    -o "$out.tmp/" "${pkgs[@]}")
  # go build -o dir/ names each binary after its package's last path element
  # (the one before a /vN major-version suffix).
  for pb in "$@"; do
    local pkg=${pb%%:*} bin=${pb##*:} base
    base=${pkg##*/}
    if [[ $base =~ ^v[0-9]+$ ]]; then
      base=${pkg%/*}
      base=${base##*/}
    fi
    [ "$base" = "$bin" ] || mv "$out.tmp/$base" "$out.tmp/$bin"
  done
  rm -rf "$out"
  mv "$out.tmp" "$out"
  link "$name" "$ver"
  built+=("$name $ver ($(($(date +%s) - t0)) s)")
}

# The staging modules k8s.io/kubernetes replaces with ./staging/src/k8s.io/*
# are published as k8s.io/<name> v0.<minor>.<patch>: replace each by that.
kubernetes_modlines() {
  local gomod staged rel
  gomod=$("$GO" mod download -json "$KUBERNETES_MOD@$KUBERNETES_VER" |
    sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
  [ -n "$gomod" ] || { echo "peers.sh: could not download $KUBERNETES_MOD@$KUBERNETES_VER" >&2; exit 1; }
  rel=v0.${KUBERNETES_VER#v1.}
  staged=$(sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$gomod")
  echo "require $KUBERNETES_MOD $KUBERNETES_VER"
  echo "replace ("
  for m in $staged; do echo "	$m => $m $rel"; done
  echo ")"
}

for p in $want; do
  case $p in
  plugins)
    build plugins "$PLUGINS_VER" "$PLUGINS_MOD" \
      "-s -w -X $PLUGINS_MOD/pkg/utils/buildversion.BuildVersion=$PLUGINS_VER" "" 0 \
      ./plugins/main/bridge:bridge ./plugins/ipam/host-local:host-local \
      ./plugins/meta/firewall:firewall ./plugins/meta/portmap:portmap \
      ./plugins/main/loopback:loopback ./plugins/meta/tuning:tuning \
      ./plugins/main/ptp:ptp
    ;;
  cnitool)
    build cnitool "$CNI_VER" "$CNI_MOD" "-s -w" "" 0 ./cnitool:cnitool
    ;;
  multus)
    build multus "$MULTUS_VER" "$MULTUS_MOD" \
      "-s -w -X $MULTUS_MOD/pkg/multus.version=$MULTUS_VER" "" 0 ./cmd/multus:multus
    ;;
  containerd)
    # no_btrfs: the btrfs snapshotter needs C headers and is not used here.
    build containerd "$CONTAINERD_VER" "$CONTAINERD_MOD" \
      "-s -w -X $CONTAINERD_MOD/version.Version=$CONTAINERD_VER" "no_btrfs" 0 \
      ./cmd/containerd:containerd ./cmd/ctr:ctr \
      ./cmd/containerd-shim-runc-v2:containerd-shim-runc-v2
    ;;
  critools)
    build critools "$CRITOOLS_VER" "$CRITOOLS_MOD" \
      "-s -w -X $CRITOOLS_MOD/pkg/version.Version=$CRITOOLS_VER" "" 0 \
      ./cmd/crictl:crictl ./cmd/critest:critest
    ;;
  etcd)
    # server/v3's go.mod replaces its sibling modules with ../ paths.
    wrapped etcd "$ETCD_VER" "-s -w" "require $ETCD_MOD $ETCD_VER" \
      "$ETCD_MOD:etcd"
    ;;
  coredns)
    build coredns "$COREDNS_VER" "$COREDNS_MOD" \
      "-s -w -X $COREDNS_MOD/coremain.GitCommit=$COREDNS_VER" "" 0 .:coredns
    ;;
  kubernetes)
    kv=${KUBERNETES_VER#v}
    kv_minor=${kv#*.}
    kv_minor=${kv_minor%%.*}
    wrapped kubernetes "$KUBERNETES_VER" \
      "-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VER -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kv_minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VER" \
      "$(kubernetes_modlines)" \
      $KUBERNETES_MOD/cmd/kube-apiserver:kube-apiserver \
      $KUBERNETES_MOD/cmd/kube-controller-manager:kube-controller-manager \
      $KUBERNETES_MOD/cmd/kube-scheduler:kube-scheduler \
      $KUBERNETES_MOD/cmd/kubelet:kubelet \
      $KUBERNETES_MOD/cmd/kube-proxy:kube-proxy \
      $KUBERNETES_MOD/cmd/kubectl:kubectl
    ;;
  *)
    echo "peers.sh: unknown peer '$p' (plugins cnitool multus containerd critools etcd coredns kubernetes)" >&2
    exit 1
    ;;
  esac
done

if [ ${#built[@]} -eq 0 ]; then
  echo "peers.sh: all peers present in $root ($want)"
else
  for b in "${built[@]}"; do echo "peers.sh: built $b"; done
fi
