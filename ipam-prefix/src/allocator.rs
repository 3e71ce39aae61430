//! Which slot an ADD gets: the one it already holds, the one asked for by
//! address, the one a crash left it, or the next free one after the cursor.
//! The policy; the files it reads and writes are the store's
//! ([`crate::store`]), as host-local keeps its allocator apart from its disk
//! backend.

use crate::error::{IpamError, Result};
use crate::plan::{Slot, SlotSpace};
use crate::store::{now, record_name, Claim, Locked, Record, RecordState, RECORD_VERSION};
use cni_common::attachment::Attachment;

/// A slot asked for by address (conformance.md #16, 73, 74).
#[derive(Debug, Clone)]
pub struct Requested {
    pub slot: Slot,
    /// Where the request came from (`args.cni.ips[0]`, `CNI_ARGS IP`, …).
    pub key: String,
    /// The requested address as given.
    pub text: String,
}

/// Everything ADD hands the store.
pub struct Allocation<'a> {
    pub key: &'a Attachment,
    pub space: SlotSpace,
    pub requested: Option<Requested>,
    /// The record's addresses for a slot (one per pod range).
    pub addresses: &'a dyn Fn(Slot) -> Vec<String>,
    /// The pod ranges, for the "full" message.
    pub ranges: &'a str,
    pub pod_namespace: Option<&'a str>,
    pub pod_name: Option<&'a str>,
}

impl Locked<'_> {
    /// ADD: the attachment's slot, reserving one if it has none.
    pub fn allocate(&self, a: &Allocation<'_>) -> Result<Record> {
        let name = record_name(a.key);
        let mut reclaim = None;
        let mut created = now();
        if let RecordState::Valid(rec) = self.read_record(a.key)? {
            let owned = self.slot_owner(rec.slot)?.as_deref() == Some(name.as_str());
            let in_space = a.space.contains(rec.slot);
            let as_asked = !matches!(&a.requested, Some(r) if r.slot != rec.slot);
            if owned && in_space && as_asked {
                // Idempotent ADD (conformance.md #22): the same slot again; the
                // addresses follow the current plan if it was edited.
                let addresses = (a.addresses)(rec.slot);
                if addresses == rec.addresses {
                    return Ok(rec);
                }
                let rec = Record { addresses, ..rec };
                self.write_record(&rec)?;
                return Ok(rec);
            }
            if owned && in_space {
                let r = a.requested.as_ref().expect("as_asked is false");
                return Err(IpamError::config(
                    &r.key,
                    &r.text,
                    format!(
                        "the address of slot {} that {name} already holds (DEL the attachment before asking for another address)",
                        rec.slot
                    ),
                ));
            }
            if owned {
                // The pod range shrank under this slot: give it up.
                self.unlink_slot(rec.slot)?;
            } else if in_space && as_asked {
                // Link lost in a crash: try to keep the pod's address.
                reclaim = Some(rec.slot);
                created = rec.created;
            }
        }
        // Record first, link second: an ADD killed in between leaves a
        // record without link, which this attachment's DEL (one file read)
        // removes. The other order would leave a link that only a GC or a
        // reboot finds, and runtimes older than CNI 1.1 never send GC.
        // Under the lock, "free" (no link, or our own) stays true until our
        // symlink(); its EEXIST stays the last guard.
        let mut dynamic = false;
        let mut from = None;
        loop {
            let slot = if let Some(r) = &a.requested {
                match self.slot_owner(r.slot)? {
                    Some(owner) if owner != name => {
                        return Err(IpamError::SlotTaken {
                            address: format!("{}={}", r.key, r.text),
                            slot: r.slot.to_string(),
                            owner,
                        })
                    }
                    _ => r.slot,
                }
            } else if let Some(s) = reclaim.take().filter(|s| self.is_free_for(*s, &name)) {
                s
            } else {
                dynamic = true;
                let start = from.unwrap_or_else(|| self.cursor(a.space));
                self.probe(a.space, start, &name, a.ranges)?
            };
            let rec = Record {
                version: RECORD_VERSION,
                network: self.store.network.clone(),
                container_id: a.key.container_id.clone(),
                ifname: a.key.ifname.clone(),
                slot,
                addresses: (a.addresses)(slot),
                pod_namespace: a.pod_namespace.map(str::to_string),
                pod_name: a.pod_name.map(str::to_string),
                boot_id: self.store.boot_id.clone(),
                created,
            };
            self.write_record(&rec)?;
            match self.try_claim(slot, &name) {
                Ok(Claim::Claimed) => {
                    if dynamic {
                        self.set_cursor(a.space.next(slot));
                    }
                    return Ok(rec);
                }
                // Only a writer that ignores the lock can get here.
                Ok(Claim::Taken(owner)) => {
                    if let Some(r) = &a.requested {
                        self.forget_record(a.key);
                        return Err(IpamError::SlotTaken {
                            address: format!("{}={}", r.key, r.text),
                            slot: r.slot.to_string(),
                            owner,
                        });
                    }
                    from = Some(a.space.next(slot));
                }
                Err(e) => {
                    // Nothing leaks: the record goes again.
                    self.forget_record(a.key);
                    return Err(e);
                }
            }
        }
    }

    /// The slot has no link, or a link naming this attachment (left by an
    /// earlier ADD of it that died).
    fn is_free_for(&self, s: Slot, name: &str) -> bool {
        match self.slot_owner(s) {
            Ok(None) => true,
            Ok(Some(o)) => o == name,
            Err(_) => false,
        }
    }

    /// Walk forward from `start` to the first free slot. In the normal case
    /// the cursor's slot is free: one readlink() that says ENOENT.
    fn probe(&self, space: SlotSpace, start: Slot, name: &str, ranges: &str) -> Result<Slot> {
        let mut s = start;
        let mut tried: u128 = 0;
        while tried < space.capacity() {
            match self.slot_owner(s)? {
                None => return Ok(s),
                Some(o) if o == name => return Ok(s),
                Some(_) => {}
            }
            s = space.next(s);
            tried += 1;
        }
        Err(IpamError::RangeFull {
            ranges: ranges.to_string(),
            capacity: space.capacity(),
        })
    }
}
