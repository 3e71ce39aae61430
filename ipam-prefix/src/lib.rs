//! ipam-prefix: the cni6 IPAM plugin (design.md, "The address plan").
//!
//! A pod gets one slot `k` and, from every pod range of its node, the
//! address `range base | k`: [`plan`] owns the arithmetic, [`config`] the
//! `ipam` keys, [`iface`] the `fromInterface` lookup, [`store`] the
//! reservations, [`plugin`] the CNI verbs and [`error`] the one error type.
//!
//! # The store, and why it looks like this
//!
//! ```text
//! <dataDir>/<network>/
//!   lock                          flock(LOCK_EX) by every ADD/DEL/CHECK/GC
//!   boot_id                       the boot whose records these are
//!   cursor                        next slot to try, hex (advisory)
//!   attachments/<cid>@<ifname>    JSON record: slot, addresses, pod, bootId
//!   slots/<hex slot>              symlink -> "<cid>@<ifname>": the reservation
//! ```
//!
//! - **O(1) allocation.** A pod range has up to 2^112 slots, so nothing
//!   may scan or map it. A slot is reserved by `symlink()`, which is atomic
//!   and fails with EEXIST when the slot is taken; the cursor only moves
//!   forward, so in the normal case its slot is free and one ADD costs one
//!   symlink, one record write and one cursor write, whatever the number of
//!   pods. A freed slot is reused only after the cursor has walked the whole
//!   range (a fresh pod does not inherit a dead pod's address, conntrack
//!   entries or firewall history). DEL and CHECK read one record and one
//!   link. Only GC, STATUS and the once-per-boot pass list directories.
//! - **Crash safety.** Every step is one atomic operation (symlink, rename
//!   of a fsynced temp file, unlink), ordered so a kill between two steps
//!   leaves only states the next call repairs: a link without record (GC,
//!   or the same attachment's retry, takes it over), a record without link
//!   (DEL removes it; a re-ADD reclaims the same slot), temp files (GC).
//!   The lock's errors are reported (code 5), never ignored (antrea#8272).
//! - **Boot id.** No pod survives a reboot, and runtimes older than CNI 1.1
//!   never call GC, so every record carries the boot id; the first locked
//!   call of a new boot releases every record of other boots, then writes
//!   `boot_id` (host-local leaks exactly here: cni#204, plugins#252).
//!   This also makes power-loss durability of the records moot: after a
//!   power loss they would all be released anyway, so the directory is not
//!   fsynced after the rename (see the measurements in the crate report).
//!
//! CNI codes where the spec leaves a choice: range full = 50 (ADD and
//! STATUS), requested address taken = 7, store/lock failure = 5, netlink
//! failure = 101, CHECK mismatch = 102 (cni_common::Error::CheckFailed).

pub mod config;
pub mod error;
pub mod iface;
pub mod plan;
pub mod plugin;
pub mod store;

pub use error::IpamError;
pub use plugin::IpamPrefix;
