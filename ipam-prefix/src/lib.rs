//! ipam-prefix: the cni6 IPAM plugin (docs/design.md, "The address plan").
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
//!   readlink (ENOENT), one record write, one symlink and one cursor write,
//!   whatever the number of pods. A freed slot is reused only after the
//!   cursor has walked the whole range (a new pod does not inherit a dead
//!   pod's address, conntrack entries or firewall history). DEL and CHECK
//!   read one record and one link. Only GC, STATUS and the once-per-boot
//!   pass list directories.
//! - **Crash safety.** Every step is one atomic operation, ordered so that
//!   a kill between two steps leaves at most a record without its slot link:
//!   ADD renames a fsynced temp file into `attachments/` and only then
//!   creates the link; DEL unlinks the slot and only then the record. The
//!   attachment's own DEL (conformance.md #82: every failed ADD gets one) removes
//!   such a record with one read, and a retried ADD reclaims the same slot.
//!   A link without record can only come from outside (by hand, a foreign
//!   writer); GC and the next boot remove it, as they do temp files. The
//!   lock's errors are reported (code 5), never ignored (antrea#8272).
//! - **Boot id.** No pod survives a reboot, and runtimes older than CNI 1.1
//!   never call GC, so every record carries the boot id; the first locked
//!   call of a new boot releases every record of other boots, then writes
//!   `boot_id` (host-local leaks exactly here: cni#204, plugins#252). The
//!   pass is best effort: a record it cannot remove keeps its slot link (so
//!   nothing is handed out twice), is logged, and the pass is retried by the
//!   next call, without failing the call that ran it. This
//!   also makes durability across power loss moot: whatever survives a
//!   power loss belongs to an earlier boot and is released. So the record
//!   file is fsynced before the rename (a torn record is never visible) but
//!   the directory is not fsynced after it: that sync would cost each ADD
//!   time with no benefit here (figures: docs/performance.md).
//! - **Format version.** Every record carries `"version": 1`
//!   ([`store::RECORD_VERSION`]): fields `version`, `network`,
//!   `containerId`, `ifname`, `slot` (hex), `addresses`, `podNamespace`,
//!   `podName`, `bootId`, `created` (Unix seconds); `boot_id` and `cursor`
//!   are one line of text, a slot link's target is the record's name. A
//!   record name is `<cid>@<ifname>` unless that exceeds NAME_MAX (255
//!   bytes; a container id may have 255): then it is `<first 200 bytes of
//!   cid>~<32 hex digits of SHA-256(cid NUL ifname)>@<ifname>` and the
//!   attachment is read from the record (no earlier release could write
//!   such a name, so existing stores need no change; an earlier release
//!   run on a store with hashed names skips them, and its GC frees their
//!   slots). Temp files are `.<name cut to fit>.tmp.<pid>`. A
//!   record with a higher version (a newer release wrote it, then the node
//!   was downgraded) is refused with code 5 naming the version, and never
//!   released as corrupt: DEL, GC and the new-boot pass leave it and its
//!   slot link alone. A fixture of this format is kept in
//!   `testdata/upgrade/` and cleaned by the current code in
//!   `conformance/tests/faults_upgrade.rs`.
//! - **STATUS** is lock-free and writes nothing (kubelet polls it every few
//!   seconds): it checks that the store (or its nearest existing ancestor)
//!   is a writable directory, that every prefix resolves, and counts
//!   `slots/` entries against the range size.
//!
//! One ADD holds the lock for a fixed number of system calls (open+flock,
//! read boot_id, open record, read cursor, readlink, write + fdatasync +
//! rename the record, symlink, write the cursor), the same for the 1st and
//! the 1000th pod; the measured cost is in docs/performance.md.
//!
//! CNI codes where the spec leaves a choice: range full = 50 (ADD and
//! STATUS), requested address taken = 7, store/lock failure = 5, netlink
//! failure = 101, CHECK mismatch = 102 (cni_common::Error::CheckFailed).

pub mod allocator;
pub mod config;
pub mod error;
pub mod iface;
pub mod plan;
pub mod plugin;
pub mod store;

pub use error::IpamError;
pub use plugin::IpamPrefix;
