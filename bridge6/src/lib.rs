//! bridge6: the main cni6 plugin. Every pod of a node hangs off one Linux
//! bridge through a veth pair; the bridge carries the gateway (`::1`) of
//! each pod range, pods get one address per range from the IPAM plugin
//! (ipam-prefix) and a default route via the first gateway. Routing, not
//! an overlay: the node forwards between the bridge and its uplink.
//!
//! Why it is built this way:
//! - **No DAD, no sleeps.** IPAM guarantees uniqueness, so pod addresses
//!   and bridge gateways go on with IFA_F_NODAD and the pod interface gets
//!   `accept_dad=0`, `accept_ra=0`, `autoconf=0` (and `disable_ipv6=0`,
//!   `keep_addr_on_down=1`) before any address (the reference plugin's
//!   settle wait cost 1–2 s per pod, and its bridge gateway stays tentative
//!   for about a second after ADD, conformance.md §3 #1, #6). The bridge itself
//!   gets `accept_dad=0` before it comes up: its link-local address is the
//!   source of the node's neighbour solicitations towards pods, and while
//!   tentative, traffic forwarded to a new pod would wait. The only wait in
//!   ADD is on netlink events: ADD returns once the new veth carries
//!   traffic, bounded by [`plugin::PORT_FORWARDING_LIMIT`] (e.g. an
//!   operator's bridge running STP is not waited for, only logged).
//! - **Nothing flooded per ADD** (issue 7). The host end of the veth gets
//!   `disable_ipv6=1` before it comes up: a bridge port needs no IPv6 of
//!   its own, and otherwise each port adds a link-local address, routes
//!   and MLD reports, and each port going up or down walks the node's
//!   routing table. No neighbour advertisement is ever sent for a pod:
//!   the node's entries for pod addresses are written over netlink.
//! - **Pods share no layer 2** (issue 15; docs/design.md, "Pod isolation
//!   and the data path"). Each port is isolated, locked, without learning
//!   or unknown-unicast flooding, with a static FDB entry for the pod's
//!   MAC ([`link::isolation_flags`]); pod addresses go on without their
//!   on-link prefix route and every route, the pod's own range included,
//!   goes through the gateway; the node pins each pod address to the pod's
//!   MAC and the pod pins its gateways to the bridge's MAC (NUD_PERMANENT).
//!   So all pod traffic, same node included, is routed by the node, where
//!   firewall6 sees it without br_netfilter, and forged neighbour
//!   advertisements change nothing anyone uses.
//! - **Synchronous netlink, one socket per namespace** (cni_common's
//!   `Netlink`; one socket opened inside the pod netns, one on the host;
//!   all requests from the main thread). The veth is created with its peer
//!   already in the pod namespace and its host end already enslaved, in
//!   one request ([`link`]).
//! - **Names derived, not stored** ([`attachment`]): the host veth is
//!   `c6` + 13 hex of SHA-256(network, container id, ifname), so DEL, CHECK
//!   and GC find it without prevResult or a netns; its alias names the
//!   network so GC never touches another network's ports on a shared
//!   bridge.
//! - Every gateway that is not link-local is routed `onlink` (checklist
//!   conformance.md §3 #11): no route of the pod covers it.
//!
//! The gateway is usable the moment ADD returns (no DAD on the bridge),
//! where the reference bridge's is tentative for about two seconds;
//! figures against the reference in docs/performance.md.
//!
//! Forwarding (conformance.md §3 #8), decided: a node must forward for its pods,
//! but `net.ipv6.conf.all.forwarding=1` makes every interface with
//! `accept_ra=1` ignore router advertisements, and a node that takes its
//! default route from RAs would lose it minutes later. So when ADD finds
//! forwarding off, it first raises `accept_ra` from 1 to 2 on every
//! interface that has 1 (and on `default`, which new interfaces inherit),
//! then sets `all.forwarding=1`; afterwards each ADD costs one sysctl read.
//! STATUS returns 51 naming an interface if forwarding is on, that
//! interface still has `accept_ra=1` (it now ignores RAs) and it holds
//! state learned from RAs (a finite-lifetime address or an `ra` route)
//! that will expire unrenewed. A statically configured interface at
//! `accept_ra=1` is the operator's choice and does not fail STATUS:
//! containerd turns any STATUS error into "network not ready".
//!
//! Default route policy, decided: a pod gets at most one `::/0`. If the pod
//! netns already has a default route (another network's attachment came
//! first: multus `net1` after `eth0`, podman `--network A --network B`),
//! this attachment adds no `::/0`, logs one line to stderr and leaves
//! `::/0` out of its result — never an ECMP default route. The config key
//! `defaultRoute: false` suppresses it (also one IPAM asked for).
//!
//! ADD runs IPAM ADD (a process) on a second thread while it makes the
//! bridge, the veth pair and the pod-side sysctls, none of which needs an
//! address; a failure on either side undoes the veth, and the addresses
//! are released only when IPAM ADD allocated them (issue 7).
//!
//! DEL deletes the host end of the veth by its derived name, which removes
//! the pod end with it; it never deletes an interface in the pod that is
//! not our veth's peer (such as the one that made a duplicate ADD fail,
//! conformance.md #19/22). IPAM DEL always runs. The bridge and its gateway
//! addresses stay: other pods use them.

mod add;
pub mod attachment;
pub mod config;
pub mod error;
pub mod link;
pub mod plugin;
pub mod sysctl;

pub use error::{Bridge6Error, Result};
