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
  bird2                         # `bird -p` checks `cni6 routes --format bird`
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
