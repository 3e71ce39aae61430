#!/usr/bin/env bash
# Probe (issue 7): can an ipset carry firewall6's per-port source check?
#
# firewall6 binds a pod's addresses to its bridge port (`-s <addr>
# -m physdev --physdev-in <port>`), one rule per address in a bucket
# chain. An ipset of type hash:net,iface takes `physdev:` entries, so the
# check could be one set lookup and ADD/DEL set-element changes instead of
# rule commits. This sends three UDP datagrams from a pod across a bridge
# with br_netfilter and counts four FORWARD rules that should all match:
#   PHYS   entry <pod addr>,physdev:<port>  (the check we would need)
#   PLAIN  entry <pod addr>,<bridge>        (control: the set match works)
#   PORTS  entry ::/0,physdev:<port>        (the "rest of the port" drop)
#   the physdev match itself                (control)
# On kernel 6.18 / ipset 7.17 PHYS and PORTS count 0 packets: the set
# type reads the bridge port only when the caller's flags ask for it, and
# the iptables `set` match has no option that sets that flag; a physdev
# entry never matches a packet.
#
# Needs root, ipset (Debian package `ipset`), ip6tables, python3.
# Touches only namespaces it makes (removed on exit) and fd00:99::/64.
set -euo pipefail

n="ipsp$$"
cleanup() { for s in n a b; do ip netns del "$n$s" 2>/dev/null || true; done; }
trap cleanup EXIT

for s in n a b; do ip netns add "$n$s"; done
ip netns exec "${n}n" sh -c 'echo 1 > /proc/sys/net/bridge/bridge-nf-call-ip6tables'
ip -n "${n}n" link add br0 type bridge
ip -n "${n}n" link set br0 up
for p in a b; do
  ip -n "${n}n" link add "port$p" type veth peer name eth0 netns "$n$p"
  ip -n "${n}n" link set "port$p" master br0 up
  ip -n "$n$p" link set eth0 up
  ip -n "$n$p" addr add "fd00:99::$p/64" dev eth0 nodad
done

ip netns exec "${n}n" sh -ec '
  for s in PHYS PLAIN PORTS; do ipset create $s hash:net,iface family inet6; done
  ipset add PHYS fd00:99::a/128,physdev:porta
  ipset add PLAIN fd00:99::a/128,br0
  ipset add PORTS ::/0,physdev:porta
  for s in PHYS PLAIN PORTS; do
    ip6tables -A FORWARD -p udp --dport 9999 -m set --match-set $s src,src -m comment --comment $s
  done
  ip6tables -A FORWARD -p udp --dport 9999 -m physdev --physdev-in porta -m comment --comment physdev
'
ip netns exec "${n}a" python3 -c '
import socket, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(b"x", ("fd00:99::b", 9999)); time.sleep(0.1)
'
echo "packets matched per rule (3 sent):"
ip netns exec "${n}n" ip6tables -v -x -n -L FORWARD |
  awk '/dpt:9999/ { for (i = 1; i < NF; i++) if ($i == "/*") name = $(i + 1); print "  " name ": " $1 }'
