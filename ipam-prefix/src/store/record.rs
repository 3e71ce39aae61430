//! What one record is and what it is called: the attachment it belongs to,
//! its file name under `attachments/` (hashed when the container id is too
//! long for one) and the JSON it holds.

use crate::plan::Slot;
use cni_common::attachment::Attachment;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const RECORD_VERSION: u32 = 1;

/// The record name of an attachment (network is the store's directory):
/// `<containerID>@<ifname>` when that fits in a file name, which it does
/// for every id a runtime makes (64 hex digits). A longer one (a container
/// id may have 255 bytes) is `<first 200 bytes of the id>~<32 hex digits of
/// SHA-256 of id NUL ifname>@<ifname>`: `~` is never in a container id, so
/// the two forms cannot meet, and names that fit keep the form every
/// earlier release wrote. The parts were validated ([`Attachment::new`]),
/// so the name never leaves `attachments/`.
pub fn record_name(a: &Attachment) -> String {
    let plain = format!("{}@{}", a.container_id, a.ifname);
    if plain.len() <= NAME_MAX {
        return plain;
    }
    let mut h = Sha256::new();
    h.update(a.container_id.as_bytes());
    h.update([0]);
    h.update(a.ifname.as_bytes());
    let hex: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // Container ids are ASCII (validated), so any byte is a boundary.
    let head = &a.container_id[..HASHED_ID_HEAD];
    format!("{head}{HASH_MARK}{hex}@{}", a.ifname)
}

/// The attachment of `network` a plain `<containerID>@<ifname>` name
/// stands for; `None` for a hashed name (its attachment is in the record)
/// and for names not ours.
pub fn attachment_of_record_name(network: &str, s: &str) -> Option<Attachment> {
    let (c, i) = s.split_once('@')?;
    Attachment::new(network, c, i).ok()
}

/// NAME_MAX of Linux file systems: the longest file name.
pub(crate) const NAME_MAX: usize = 255;
/// How much of a long container id a hashed record name keeps readable:
/// with `~`, 32 hex digits, `@` and a 15-byte ifname it stays ≤ 250.
pub(crate) const HASHED_ID_HEAD: usize = 200;
pub(crate) const HASH_MARK: char = '~';

/// A record name in the hashed form of [`record_name`]
/// (the attachment it stands for is read from the record).
/// Strict, because a slot link's target (any text) is looked up with it:
/// one normal path component, nothing that could leave `attachments/`.
pub(crate) fn is_hashed_name(name: &str) -> bool {
    let Some((id, ifname)) = name.split_once('@') else {
        return false;
    };
    let Some((head, hex)) = id.split_once(HASH_MARK) else {
        return false;
    };
    cni_common::env::validate_container_id(head).is_ok()
        && hex.len() == 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && cni_common::env::validate_ifname(ifname).is_ok()
}

/// One attachment's reservation (`attachments/<containerID>@<ifname>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub version: u32,
    pub network: String,
    pub container_id: String,
    pub ifname: String,
    #[serde(with = "slot_hex")]
    pub slot: Slot,
    pub addresses: Vec<String>,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub boot_id: String,
    pub created: u64,
}

mod slot_hex {
    use crate::plan::Slot;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(s: &Slot, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&s.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Slot, D::Error> {
        let s = String::deserialize(d)?;
        Slot::parse_hex(&s).ok_or_else(|| serde::de::Error::custom(format!("bad slot {s:?}")))
    }
}

/// Just the format version of a record, read before anything else.
#[derive(Deserialize)]
pub(crate) struct FormatVersion {
    pub(crate) version: u32,
}

/// What reading a record found.
#[derive(Debug)]
pub enum RecordState {
    Missing,
    /// Unreadable JSON, or a record naming another attachment/network.
    Corrupt(String),
    Valid(Record),
}
