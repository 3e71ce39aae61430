//! firewall6: the chained ip6tables plugin of cni6 (issue 4).
//!
//! # Why
//!
//! Every pod of cni6 gets a global address and no NAT sits in front of it,
//! so without a firewall a pod is open to the internet the moment it starts.
//! firewall6 comes after bridge6 in the conflist and gives each pod an
//! inbound policy (`ingress: cluster-only`, the default: new connections
//! only from `clusterPrefixes` or to `allowPorts`; replies to the pod's own
//! connections always pass; `open`: everything, like the reference
//! `firewall`) and a source check: a packet entering from the pod's
//! host-side port with a source that is not one of the pod's addresses is
//! dropped (link-local and `::` excepted, for neighbour discovery and DAD),
//! between two pods on the same bridge too. It needs only `ip6tables`,
//! never `iptables`, found by absolute path (`/usr/sbin`, `/sbin`,
//! `/usr/bin`), and prints prevResult unchanged in the requested version.
//!
//! # Chain layout (filter table)
//!
//! ```text
//! FORWARD ──(inserted first)──> CNI6-FORWARD
//!   CNI6-FORWARD:  -j <adminChain>              operator overrides, created if missing, never modified
//!                  -j CNI6-PODS                  pods behind a bridge (sources already checked)
//!                  -s fe80::/10 -g CNI6-INGRESS  link-local: no source check
//!                  -s ::/128    -g CNI6-INGRESS  DAD: no source check
//!                  -j CNI6-ANTISPOOF             routed pods, and pods of releases before issue 15
//!                  -j CNI6-TO-PODS               established flows to pods behind a bridge (issue 20)
//!                  -j CNI6-INGRESS
//!   CNI6-PODS:     -i <bridge> -g CNI6-FROM-POD   (one rule per bridge with firewall6 pods)
//!   CNI6-TO-PODS:  -o <bridge> conntrack RELATED,ESTABLISHED -j ACCEPT   (one rule per bridge)
//!   CNI6-ANTISPOOF: -m physdev ! --physdev-is-in -g CNI6-P-OTHER  not bridged: no port bucket (issue 20)
//!                   -m physdev --physdev-in c6X+ -j CNI6-PX-X     (X = 0..f, the first hex digit)
//!                   -j CNI6-P-OTHER
//!   CNI6-PX-X:     -m physdev --physdev-in c6XY+ -j CNI6-P-XY   (Y = 0..f)
//!   CNI6-P-XX:     rules of pods attached before issue 15 (physdev), found by DEL and GC
//!   CNI6-P-OTHER:  per routed pod: -s <addr>/128 -i <veth> -g CNI6-FROM-POD; -i <veth> -j DROP
//!   CNI6-FROM-POD: conntrack RELATED,ESTABLISHED -j ACCEPT   the verdict INGRESS gives them (issue 20)
//!                  -j CNI6-INGRESS      a destination pod's policy applies
//!                  -j ACCEPT            then pods may connect out
//!   CNI6-INGRESS:  -d ff00::/8 -j RETURN                          multicast: no pod policy
//!                  -d ::X0/::f0 -g CNI6-DX-X                      (high nibble of the destination's low byte)
//!   CNI6-DX-X:     -d ::XY/::ff -g CNI6-D-XY                      (the low byte)
//!   CNI6-D-XX:     per pod address: -d <addr>/128 -j CNI6-POL-<hash>
//!   CNI6-POL-<12 hex of sha256(network, policy)>:
//!                  cluster-only: conntrack RELATED,ESTABLISHED ACCEPT; -s <clusterPrefix> [-i <iface>] ACCEPT;
//!                                -p <proto> --dport <port|a:b> ACCEPT; DROP
//!                  open:         ACCEPT
//! ```
//!
//! # The source check (issue 15), first in INPUT and FORWARD
//!
//! ```text
//! INPUT, FORWARD: -i <bridge> -j CNI6-SRC  (inserted first, one per bridge with firewall6 pods)
//!   CNI6-SRC:  -s ::/128 -p ipv6-icmp --icmpv6-type 135 -j RETURN  DAD
//!              -p ipv6-icmp -j CNI6-SRC-ICMP                    MLD 130/131/132/143, RA 134, redirect 137: DROP
//!              -s ::X0/::f0 -g CNI6-SX-X                        (high nibble of the source's low byte)
//!   CNI6-SX-X: -s ::XY/::ff -g CNI6-S-XY
//!   CNI6-S-XY: per pod source (its addresses, its EUI-64 link-local):
//!                -s <src>/128 -m mac --mac-source <pod MAC> -j RETURN   (inserted first)
//!              -j DROP                                          anything else from a pod
//! ```
//!
//! bridge6 makes a pod's MAC the only source MAC its port lets in (locked
//! port, static FDB entry, no learning), so at layer 3 the MAC names the
//! pod: the (source, MAC) pair is the per-port source check that needed
//! br_netfilter before, now for traffic to other pods, to the outside AND
//! to the node itself (INPUT as FORWARD); a dropped packet's conntrack
//! entry is never confirmed. In the filter table, not raw PREROUTING: a
//! pod's ADD or DEL then changes one table, one nf_tables transaction (a
//! deleting transaction waits an RCU grace period). Ports are
//! isolated, so every packet of a pod reaches the node's IP stack on the
//! bridge: VLAN-tagged frames with a VID are not for the node (dropped by
//! the kernel), priority-tagged ones (VID 0) are handled as untagged and
//! checked like any other. Without br_netfilter nothing else is needed;
//! with it (bridge-nf-call-ip6tables=1) the same chains run once, from the
//! bridge hook. A bridge is either under firewall6 or not: a pod without
//! firewall6 rules on such a bridge sends nothing (fail closed).
//!
//! # Raw table: pods' MLD ends at their port (releases before issue 15)
//!
//! Kept for nodes with br_netfilter; with isolated ports a pod's MLD no
//! longer reaches other ports, and CNI6-SRC-ICMP drops it at the node.
//!
//! ```text
//! PREROUTING:  -p ipv6-icmp -m physdev --physdev-in c6+ -j CNI6-MLD
//!   CNI6-MLD:  --icmpv6-type 130|131|132|143 -j DROP    (MLD query, reports, done)
//! ```
//!
//! A node bridge has no multicast router or querier behind it and floods
//! all multicast, so a pod's MLD informs no one; but every report was
//! copied to all ports, through ip6tables once per copy, and the kernel
//! sends a new pod's first reports while it holds RTNL (DAD completion),
//! so bridge6's netlink calls waited for the flood. Dropped where they
//! enter the bridge (raw PREROUTING runs before the bridge forwards).
//! Neighbour discovery is untouched. ADD checks the jump with a `-C` line
//! in its batch whenever it checks the skeleton and repairs this part
//! with the skeleton, but only as a best
//! effort: a node whose raw table cannot be written still gets its pods'
//! rules (the failure is logged). CHECK does not look at it (it changes
//! cost, not what reaches a pod); DEL and GC leave it, like the skeleton.
//!
//! Every rule carries a comment: node-wide ones `firewall6: …`, the policy
//! chain `firewall6 net=<network> …`, per-pod ones
//! `firewall6 net=<network> if=<ifname> id=<container id>` (see
//! [`rules::tag`]). DEL and GC find a pod's rules by that
//! comment, so they need no prevResult (conformance.md #28) and GC touches only
//! its own network (conformance.md #48).
//!
//! The dispatch to the buckets is a two-level tree (issue 7): a packet
//! passes at most 16 + 16 dispatch rules on each side instead of up to
//! 256 (128 on average), which br_netfilter pays once per flooded copy of
//! every multicast frame (a pod's neighbour solicitations and MLD reports
//! go to all ports of the bridge). Multicast destinations leave
//! CNI6-INGRESS at its first rule: policies match pods' unicast addresses,
//! so the verdict is the one the walk through a bucket gave (none there:
//! back to FORWARD, or to FROM-POD's ACCEPT), and the source check before
//! it still applies. The address side uses goto: a packet that finds no
//! pod in its bucket is done with CNI6-INGRESS (the buckets are disjoint).
//! The port side jumps, so a `c6…` port whose bucket has no rule for it
//! still reaches `CNI6-P-OTHER`, as before. Only the dispatch changed:
//! bucket names and per-pod rules are those of the flat layout before it,
//! so DEL, CHECK and GC find the rules of pods added by the earlier
//! release; the first ADD on such a node fails its `-C` lead (no multicast
//! rule) and its repair rewrites CNI6-ANTISPOOF and CNI6-INGRESS and
//! creates the 32 group chains in one restore, buckets untouched; CHECK
//! reports the flat layout until then.
//!
//! The port buckets rely on bridge6 naming host veths `c6` + 13 hex digits
//! of a hash: the two digits after `c6` spread pods evenly over 256 chains.
//! A port with any other name (another main plugin) and a routed host-side
//! interface (ptp-style, matched with `-i` instead of physdev) go to
//! `CNI6-P-OTHER`, which then grows with those pods; the address buckets
//! work for any plugin. Which prevResult interface is the port: the
//! interfaces without `sandbox`; with two or more the first is the bridge
//! (bridge6 reports [bridge, host veth, pod iface]) and the next the port;
//! with one it is a routed veth; with none no source check is installed
//! (logged on stderr) — there is nothing to match the pod's traffic by.
//!
//! # Why this shape
//!
//! `ip6tables-restore --noflush` does not stay flat by itself: to delete a
//! rule iptables-nft fetches and decodes every rule of the chain to find
//! the rule's kernel handle, and with a chain per pod every restore reads
//! every chain of the table. 256 port and 256 address buckets keep each
//! chain a pod's rules touch small, so ADD, DEL and CHECK cost about the
//! same at 10 and at 1000 pods; the two-level dispatch keeps the cost of a
//! flooded multicast copy near that of no firewall. The measurements are
//! in docs/performance.md ("Figures behind design choices").
//!
//! So: a pod's rules go in as one atomic `ip6tables-restore --noflush`
//! batch of appends to bucket chains (no rule needs reading first), DEL
//! lists only the two or three bucket chains the prevResult points at and
//! deletes the tagged lines in one batch; CHECK reads the skeleton chains,
//! the dispatch groups leading to the pod's buckets and those buckets.
//! Only DEL without prevResult (runtime cache lost) and GC read the whole
//! table, once. ADD starts no ip6tables read at all: `-C` lines for the
//! skeleton rules lead the pod's batch, so a missing one fails it
//! atomically and only then the table is read and repaired; DEL and CHECK
//! start their chain reads at once. While the nf_tables generation shows
//! that nobody else committed since a batch passed those checks for the
//! same config (up to eight configs are remembered, so networks take turns
//! without checking), ADD leaves them out ([`generation`]: any other
//! commit, a reboot or a config not seen since brings them back).
//!
//! # Decisions where the issue is silent
//!
//! - br_netfilter is not needed (issue 15): with
//!   `bridge-nf-call-ip6tables` at 0, or the module absent, every guarantee
//!   holds; STATUS no longer asks for it.
//! - The skeleton is repaired by ADD when damaged (under a file lock,
//!   `/run/cni6/firewall6.lock`, so two first ADDs do not both insert the
//!   FORWARD jump); CHECK never repairs anything.
//! - IPv4 addresses in prevResult are ignored (ip6tables only).
//! - A repeated ADD of the same attachment appends the same rules again
//!   (reading first would cost what the buckets save); one DEL removes all
//!   copies, CHECK still passes.
//! - The source check of bridged pods covers everything a pod sends (raw
//!   PREROUTING: to pods, to anywhere routed and to the node itself);
//!   a routed pod's (`-i`) is still checked in FORWARD only.
//! - Several networks may share a node: the skeleton is shared, each
//!   network's admin chain gets its own jump at the top of CNI6-FORWARD,
//!   each (network, policy) its own policy chain.
//! - Policy chains and buckets are node-wide and stay after the last DEL.

pub mod chains;
pub mod config;
pub mod error;
pub mod fastpath;
pub mod generation;
pub mod iptables;
pub mod legacy;
pub mod plugin;
pub mod rules;
pub mod ruleset;
