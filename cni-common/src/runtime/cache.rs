//! libcni's result cache: one `cniCacheV1` record per attachment in
//! `<cache_dir>/results/`, written atomically (cni#1055).

use super::{ConfList, Runtime, RuntimeConf};
use crate::env::{validate_container_id, validate_ifname};
use crate::error::{Error, Result};
use crate::version::{self, Version};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::path::PathBuf;

/// The `kind` of libcni's cache records.
pub const CACHE_KIND: &str = "cniCacheV1";

/// One record of libcni's result cache (field names and order as libcni's
/// `cachedInfo`; `config` is base64 like Go's `[]byte`).
/// Missing fields read as empty, as Go's decoder does.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheRecord {
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    #[serde(with = "b64")]
    pub config: Vec<u8>,
    #[serde(rename = "ifName")]
    pub if_name: String,
    #[serde(rename = "networkName")]
    pub network_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub netns: String,
    #[serde(
        default,
        rename = "cniArgs",
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub cni_args: Vec<(String, String)>,
    #[serde(
        default,
        rename = "capabilityArgs",
        skip_serializing_if = "Map::is_empty",
        deserialize_with = "null_as_default"
    )]
    pub capability_args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub result: Value,
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(Vec::new()),
            Some(s) => STANDARD.decode(s).map_err(serde::de::Error::custom),
        }
    }
}

fn null_as_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

impl CacheRecord {
    /// What the runtime passed when this record was made.
    pub fn runtime_conf(&self) -> RuntimeConf {
        RuntimeConf {
            container_id: self.container_id.clone(),
            netns: (!self.netns.is_empty()).then(|| PathBuf::from(&self.netns)),
            ifname: self.if_name.clone(),
            args: self.cni_args.clone(),
            capability_args: self.capability_args.clone(),
        }
    }
}

impl Runtime {
    /// `<cache_dir>/results/<net>-<containerID>-<ifname>` (conformance.md #85).
    pub fn cache_path(&self, network: &str, att: &RuntimeConf) -> PathBuf {
        self.cache_dir
            .join("results")
            .join(format!("{network}-{}-{}", att.container_id, att.ifname))
    }

    /// The cached result of an attachment converted to the list version;
    /// `None` when there is no cache file (conformance.md #86, 87). A record that
    /// is not `cniCacheV1` is read as a bare result (libcni's legacy cache).
    pub fn cached_result(&self, list: &ConfList, att: &RuntimeConf) -> Result<Option<Value>> {
        let path = self.cache_path(&list.name, att);
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(None);
        };
        let raw = match serde_json::from_slice::<CacheRecord>(&bytes) {
            Ok(rec) if rec.kind == CACHE_KIND => rec.result,
            _ => serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| Error::decode(format!("cached result {}", path.display()), e))?,
        };
        let target = Version::parse(&list.cni_version, version::ALL)?;
        crate::result::convert(&raw, target)
            .map(Some)
            .map_err(|e| Error::decode(format!("cached result {}", path.display()), e))
    }

    /// The `cniCacheV1` record of one attachment, if there is a readable
    /// one. An id or ifname that could not name a cache file has none.
    pub fn cached_record(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Option<CacheRecord> {
        if validate_container_id(container_id).is_err()
            || validate_ifname(ifname).is_err()
            || crate::config::validate_network_name(network).is_err()
        {
            return None;
        }
        let probe = RuntimeConf::new(container_id, None, ifname);
        let bytes = std::fs::read(self.cache_path(network, &probe)).ok()?;
        serde_json::from_slice::<CacheRecord>(&bytes)
            .ok()
            .filter(|r| r.kind == CACHE_KIND)
    }

    /// Every readable `cniCacheV1` record in the cache, sorted by file name
    /// (libcni's GetCachedAttachments).
    pub fn cached_attachments(&self) -> Result<Vec<CacheRecord>> {
        let dir = self.cache_dir.join("results");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::io(format!("list cache {}", dir.display()), e)),
        };
        // Skip in-flight temp files (crate::file::temp_name).
        let mut names: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| e.path())
            .collect();
        names.sort();
        Ok(names
            .iter()
            .filter_map(|p| std::fs::read(p).ok())
            .filter_map(|b| serde_json::from_slice::<CacheRecord>(&b).ok())
            .filter(|r| r.kind == CACHE_KIND && !r.if_name.is_empty() && !r.network_name.is_empty())
            .collect())
    }

    pub(super) fn write_cache(
        &self,
        list: &ConfList,
        att: &RuntimeConf,
        result: &Value,
    ) -> Result<()> {
        let rec = CacheRecord {
            kind: CACHE_KIND.into(),
            container_id: att.container_id.clone(),
            config: list.bytes.clone(),
            if_name: att.ifname.clone(),
            network_name: list.name.clone(),
            netns: att.netns_str(),
            cni_args: att.args.clone(),
            capability_args: att.capability_args.clone(),
            result: result.clone(),
        };
        let bytes = serde_json::to_vec(&rec).expect("a cache record serialises");
        let path = self.cache_path(&list.name, att);
        crate::file::write_atomic(&path, &bytes, true)
            .map_err(|e| Error::io(format!("write cached result {}", path.display()), e))
    }
}
