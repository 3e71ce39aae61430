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
# ---------------------------------------------------------------------------

root=${CNI6_PEERS_DIR:-/var/cache/cni6-peers}
want=${CNI6_PEERS:-"plugins cnitool multus containerd critools"}
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
  *)
    echo "peers.sh: unknown peer '$p' (plugins cnitool multus containerd critools)" >&2
    exit 1
    ;;
  esac
done

if [ ${#built[@]} -eq 0 ]; then
  echo "peers.sh: all peers present in $root ($want)"
else
  for b in "${built[@]}"; do echo "peers.sh: built $b"; done
fi
