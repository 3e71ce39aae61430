//! A libcni-like runtime: executes a whole conflist the way containerd,
//! CRI-O, podman and multus do through libcni (conformance.md 1.Q, 84–91), so
//! tests, the demo and `cni6` drive the plugins exactly as a cluster would.
//!
//! What is reproduced, because plugins meet it in production:
//! - per-plugin injection of `name`, the list `cniVersion`, `runtimeConfig`
//!   (declared ∩ provided capabilities) and `prevResult`; `capabilities`
//!   stays in place (84, 71);
//! - ADD chains each plugin's raw output into the next one's `prevResult`
//!   (53, 57) and caches the final result in
//!   `<cache_dir>/results/<net>-<containerID>-<ifname>` (85);
//! - DEL runs in reverse with the cached result converted to the list
//!   version, goes on without it when the cache is unreadable, stops at the
//!   first plugin error and removes the cache only after success (86);
//! - CHECK (87), GC with synthetic DELs and both attachment keys (88),
//!   STATUS (89), VERSION with libcni's `dummy` variables (40);
//! - the child environment: ours plus all six `CNI_*` variables, some empty
//!   (3, 11), retried on ETXTBSY (90), errors taken from stdout or, when it
//!   is empty, from stderr (70).
//!
//! Deliberate differences from libcni: the cache file is written atomically
//! (temp + fsync + rename, cni#1055: a crash must not leave an empty cache),
//! and container id / ifname are validated for DEL and CHECK too, because
//! they name the cache file.

mod cache;
mod conflist;
mod exec;
#[cfg(test)]
mod tests;

pub use cache::{CacheRecord, CACHE_KIND};
pub use conflist::ConfList;
use conflist::{is_plain_name, version_at_least};
pub use exec::{exec_plugin, PluginOutput, RuntimeConf, NO_ERROR_CODE};

use crate::error::{Error, Result};
use crate::result::CniResult;
use crate::version;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::path::PathBuf;

/// libcni's default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";

/// What a GC did besides sending GC to the plugins.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcReport {
    /// Cached attachments not in the valid list, DELeted before GC.
    pub stale_deleted: Vec<(String, String)>,
    /// False when GC was not sent (`disableGC`, or a list older than 1.1.0).
    pub gc_sent: bool,
}

/// The executor: where plugins are found and where results are cached.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub plugin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
}

impl Runtime {
    /// A runtime with libcni's default cache directory.
    pub fn new(plugin_dirs: Vec<PathBuf>) -> Runtime {
        Runtime {
            plugin_dirs,
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
        }
    }

    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Runtime {
        self.cache_dir = dir.into();
        self
    }

    /// `CNI_PATH` as passed to plugins.
    pub fn cni_path(&self) -> String {
        self.plugin_dirs
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// First plugin dir holding an executable `plugin_type` (conformance.md #1, 8).
    pub fn find_plugin(&self, plugin_type: &str) -> Result<PathBuf> {
        if !is_plain_name(plugin_type) {
            return Err(Error::config(
                "type",
                plugin_type,
                "a plugin binary name without path separators",
            ));
        }
        crate::delegate::find_plugin(plugin_type, &self.plugin_dirs).map_err(|_| {
            Error::config(
                "type",
                plugin_type,
                format!("a plugin found in the plugin path {:?}", self.cni_path()),
            )
        })
    }

    /// ADD the attachment through every plugin in order, cache the final
    /// result and return it (conformance.md #53, 84, 85).
    pub fn add(&self, list: &ConfList, att: &RuntimeConf) -> Result<Value> {
        att.validate()?;
        let mut prev: Option<Value> = None;
        for plugin in &list.plugins {
            let conf = inject(list, plugin, prev.as_ref(), att);
            let out = self.run(plugin_type(plugin), "ADD", &self.attachment_env(att), &conf)?;
            if let Some(e) = out.error() {
                return Err(wrap(e, plugin_type(plugin), "add"));
            }
            let mut result: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
                Error::decode(
                    format!("ADD result of plugin {}", plugin_type(plugin)),
                    format!(
                        "{e}; expected exactly one JSON object, got {:?}",
                        String::from_utf8_lossy(&out.stdout)
                    ),
                )
            })?;
            let Some(obj) = result.as_object_mut() else {
                return Err(Error::decode(
                    format!("ADD result of plugin {}", plugin_type(plugin)),
                    format!("expected a JSON object, got {result}"),
                ));
            };
            // cni#895: a result without a version is taken as the config's.
            obj.entry("cniVersion")
                .or_insert_with(|| Value::String(list.cni_version.clone()));
            // libcni decodes the result into its types, so a malformed one
            // (bad address, `interface` index out of range: conformance.md #62)
            // fails here rather than in the next plugin or the kubelet.
            // It is still forwarded as the plugin wrote it (conformance.md #57).
            let modern = result
                .get("cniVersion")
                .and_then(Value::as_str)
                .is_some_and(|v| version_at_least(v, (0, 3, 0)));
            if modern {
                CniResult::parse(&result).map_err(|e| {
                    Error::decode(
                        format!("ADD result of plugin {}", plugin_type(plugin)),
                        format!("{e}: {result}"),
                    )
                })?;
            }
            prev = Some(result);
        }
        let result = prev.expect("a conflist has at least one plugin");
        self.write_cache(list, att, &result)?;
        Ok(result)
    }

    /// CHECK in list order with the cached result (conformance.md #87, 39).
    pub fn check(&self, list: &ConfList, att: &RuntimeConf) -> Result<()> {
        if !list.has_check() {
            return Err(Error::IncompatibleVersion {
                requested: format!("{} for CHECK", list.cni_version),
                supported: "0.4.0 and later".into(),
            });
        }
        if list.disable_check {
            return Ok(());
        }
        att.validate()?;
        let cached = self.cached_result(list, att)?;
        for plugin in &list.plugins {
            let conf = inject(list, plugin, cached.as_ref(), att);
            let out = self.run(
                plugin_type(plugin),
                "CHECK",
                &self.attachment_env(att),
                &conf,
            )?;
            if let Some(e) = out.error() {
                return Err(wrap(e, plugin_type(plugin), "check"));
            }
        }
        Ok(())
    }

    /// DEL in reverse order with the cached result as `prevResult`;
    /// removes the cache after success (conformance.md #86, 54).
    pub fn del(&self, list: &ConfList, att: &RuntimeConf) -> Result<()> {
        att.validate()?;
        let cache = self.cache_path(&list.name, att);
        let cached = if list.has_check() {
            match self.cached_result(list, att) {
                Ok(r) => r,
                Err(_) => {
                    // cni#1072: a corrupt cache must not block DEL forever.
                    let _ = std::fs::remove_file(&cache);
                    None
                }
            }
        } else {
            None
        };
        for plugin in list.plugins.iter().rev() {
            let conf = inject(list, plugin, cached.as_ref(), att);
            let out = self.run(plugin_type(plugin), "DEL", &self.attachment_env(att), &conf)?;
            if let Some(e) = out.error() {
                return Err(wrap(e, plugin_type(plugin), "delete"));
            }
        }
        match std::fs::remove_file(&cache) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove cache {}", cache.display()), e)),
        }
    }

    /// GC (conformance.md #88): synthetic DEL for every cached attachment of this
    /// network not in `valid`, then (1.1.0+) GC to every plugin with both
    /// attachment keys. Errors are collected; all are reported at the end.
    pub fn gc<S: AsRef<str>>(&self, list: &ConfList, valid: &[(S, S)]) -> Result<GcReport> {
        let mut report = GcReport::default();
        if list.disable_gc {
            return Ok(report);
        }
        let valid: Vec<(&str, &str)> = valid
            .iter()
            .map(|(c, i)| (c.as_ref(), i.as_ref()))
            .collect();
        let mut errors: Vec<Error> = Vec::new();
        for rec in self.cached_attachments()? {
            if rec.network_name != list.name
                || valid.contains(&(rec.container_id.as_str(), rec.if_name.as_str()))
            {
                continue;
            }
            match self.del(list, &rec.runtime_conf()) {
                Ok(()) => report
                    .stale_deleted
                    .push((rec.container_id.clone(), rec.if_name.clone())),
                Err(e) => errors.push(Error::Plugin {
                    code: e.code(),
                    msg: format!(
                        "delete stale attachment {}/{}: {e}",
                        rec.container_id, rec.if_name
                    ),
                    details: e.details(),
                }),
            }
        }
        if list.has_gc_status() {
            let attachments: Vec<Value> = valid
                .iter()
                .map(|(c, i)| json!({"containerID": c, "ifname": i}))
                .collect();
            let env = self.bare_env();
            for plugin in &list.plugins {
                let mut conf = plugin.clone();
                conf.insert("name".into(), Value::String(list.name.clone()));
                conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
                conf.insert(
                    "cni.dev/valid-attachments".into(),
                    Value::Array(attachments.clone()),
                );
                // cni#1101: the 1.1.0 tag spelled the key this way.
                conf.insert(
                    "cni.dev/attachments".into(),
                    Value::Array(attachments.clone()),
                );
                match self.run(plugin_type(plugin), "GC", &env, &conf) {
                    Ok(out) => {
                        if let Some(e) = out.error() {
                            errors.push(wrap(e, plugin_type(plugin), "gc"));
                        }
                    }
                    Err(e) => errors.push(wrap(e, plugin_type(plugin), "gc")),
                }
            }
            report.gc_sent = true;
        }
        match errors.len() {
            0 => Ok(report),
            1 => Err(errors.pop().expect("one error")),
            _ => Err(Error::Plugin {
                code: errors[0].code(),
                msg: errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
                details: String::new(),
            }),
        }
    }

    /// STATUS (conformance.md #89): only for 1.1.0+ lists (older: `Ok`, nothing
    /// run), plugins in order, the first error returned as is.
    pub fn status(&self, list: &ConfList) -> Result<()> {
        if !list.has_gc_status() {
            return Ok(());
        }
        let env = self.bare_env();
        for plugin in &list.plugins {
            let mut conf = plugin.clone();
            conf.insert("name".into(), Value::String(list.name.clone()));
            conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
            let out = self.run(plugin_type(plugin), "STATUS", &env, &conf)?;
            if let Some(e) = out.error() {
                return Err(e);
            }
        }
        Ok(())
    }

    /// VERSION of one plugin as libcni probes it (conformance.md #40, 90):
    /// NETNS/IFNAME/PATH `dummy`, stdin `{"cniVersion":"1.1.0"}`.
    pub fn version(&self, plugin_type: &str) -> Result<Value> {
        let path = self.find_plugin(plugin_type)?;
        let stdin = format!(r#"{{"cniVersion":"{}"}}"#, version::LATEST);
        let env = [
            ("CNI_CONTAINERID", ""),
            ("CNI_NETNS", "dummy"),
            ("CNI_IFNAME", "dummy"),
            ("CNI_ARGS", ""),
            ("CNI_PATH", "dummy"),
        ];
        let out = exec_plugin(&path, "VERSION", &env, stdin.as_bytes())?;
        if let Some(e) = out.error() {
            if e.to_string() == "unknown CNI_COMMAND: VERSION" {
                return Ok(json!({"cniVersion": "0.1.0", "supportedVersions": ["0.1.0"]}));
            }
            return Err(wrap(e, plugin_type, "version"));
        }
        let v: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::decode(format!("VERSION answer of plugin {plugin_type}"), e))?;
        let ok = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
            && v.get("supportedVersions")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty() && a.iter().all(Value::is_string));
        if !ok {
            return Err(Error::decode(
                format!("VERSION answer of plugin {plugin_type}"),
                format!("expected cniVersion and a non-empty supportedVersions list, got {v}"),
            ));
        }
        Ok(v)
    }

    fn attachment_env(&self, att: &RuntimeConf) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_CONTAINERID", att.container_id.clone()),
            ("CNI_NETNS", att.netns_str()),
            ("CNI_ARGS", att.cni_args()),
            ("CNI_IFNAME", att.ifname.clone()),
            ("CNI_PATH", self.cni_path()),
        ]
    }

    /// GC and STATUS: only CNI_PATH set, the others empty (as libcni).
    fn bare_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CNI_CONTAINERID", String::new()),
            ("CNI_NETNS", String::new()),
            ("CNI_ARGS", String::new()),
            ("CNI_IFNAME", String::new()),
            ("CNI_PATH", self.cni_path()),
        ]
    }

    fn run(
        &self,
        plugin_type: &str,
        command: &str,
        env: &[(&'static str, String)],
        conf: &Map<String, Value>,
    ) -> Result<PluginOutput> {
        let path = self.find_plugin(plugin_type)?;
        let stdin = serde_json::to_vec(conf).expect("a JSON object serialises");
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = exec_plugin(&path, command, &env, &stdin)?;
        // libcni copies a plugin's stderr to the runtime's own.
        if !out.stderr.is_empty() && out.success() {
            let _ = std::io::stderr().write_all(&out.stderr);
        }
        Ok(out)
    }
}

fn plugin_type(plugin: &Map<String, Value>) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// libcni's buildOneConfig + injectRuntimeConfig (conformance.md #84, 71).
fn inject(
    list: &ConfList,
    plugin: &Map<String, Value>,
    prev: Option<&Value>,
    att: &RuntimeConf,
) -> Map<String, Value> {
    let mut conf = plugin.clone();
    conf.insert("name".into(), Value::String(list.name.clone()));
    conf.insert("cniVersion".into(), Value::String(list.cni_version.clone()));
    if let Some(p) = prev {
        conf.insert("prevResult".into(), p.clone());
    }
    let mut rc = Map::new();
    if let Some(Value::Object(caps)) = plugin.get("capabilities") {
        for (cap, declared) in caps {
            if declared.as_bool() == Some(true) {
                if let Some(v) = att.capability_args.get(cap) {
                    rc.insert(cap.clone(), v.clone());
                }
            }
        }
    }
    if !rc.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(rc));
    }
    conf
}

/// libcni's "plugin type=X failed (add): …", keeping the plugin's code.
fn wrap(e: Error, plugin: &str, what: &str) -> Error {
    Error::Plugin {
        code: e.code(),
        msg: format!("plugin type={plugin:?} failed ({what}): {e}"),
        details: e.details(),
    }
}
