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

use crate::env::{validate_container_id, validate_ifname};
use crate::error::{code, Error, Result};
use crate::result::CniResult;
use crate::version::{self, Version};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, ExitStatus, Stdio};
use std::time::Duration;

/// libcni's default cache directory.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/cni";
/// The `kind` of libcni's cache records.
pub const CACHE_KIND: &str = "cniCacheV1";
/// Code libcni gives an error that carries none (a plugin that failed
/// without an error JSON); conformance.md #69 "999 = internal catch-all".
pub const NO_ERROR_CODE: u32 = 999;
/// libcni retries an exec that failed with "text file busy" this often,
/// a second apart (conformance.md #90).
const ETXTBSY_RETRIES: u32 = 5;
const ETXTBSY_DELAY: Duration = Duration::from_secs(1);

/// A network configuration list: the unit a runtime executes.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfList {
    /// The version every plugin is told (chosen from `cniVersions` when
    /// present, conformance.md #64).
    pub cni_version: String,
    pub name: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    /// Each plugin's object as written in the list.
    pub plugins: Vec<Map<String, Value>>,
    /// The bytes the list was parsed from (a single `.conf` re-encoded as a
    /// list, as libcni does); cached with each attachment.
    pub bytes: Vec<u8>,
}

impl ConfList {
    /// Parse a `.conflist`, or a single-plugin `.conf` object (an object
    /// with `type` and no `plugins`), which is wrapped into a one-plugin
    /// list as libcni's `ConfListFromConf` does (multus sends these).
    pub fn parse(bytes: &[u8]) -> Result<ConfList> {
        let raw: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::decode("network configuration list", e))?;
        let Value::Object(obj) = raw else {
            return Err(Error::decode(
                "network configuration list",
                "expected a JSON object",
            ));
        };
        if !obj.contains_key("plugins") && obj.contains_key("type") {
            let list = json!({
                "name": obj.get("name").cloned().unwrap_or(Value::Null),
                "cniVersion": obj.get("cniVersion").cloned().unwrap_or(Value::Null),
                "plugins": [Value::Object(obj)],
            });
            let bytes = serde_json::to_vec(&list).expect("a JSON value serialises");
            return ConfList::parse(&bytes);
        }
        let name = match obj.get("name") {
            Some(Value::String(s)) => s.clone(),
            other => {
                return Err(Error::config(
                    "name",
                    other.unwrap_or(&Value::Null),
                    "the network name, a string",
                ))
            }
        };
        crate::config::validate_network_name(&name)?;
        let cni_version = choose_version(&obj)?;
        let disable_check = bool_key(&obj, "disableCheck")?;
        let disable_gc = bool_key(&obj, "disableGC")?;
        let plugins = match obj.get("plugins") {
            Some(Value::Array(a)) if !a.is_empty() => a,
            other => {
                return Err(Error::config(
                    "plugins",
                    other.unwrap_or(&Value::Null),
                    "a non-empty array of plugin configuration objects",
                ))
            }
        };
        let mut out = Vec::with_capacity(plugins.len());
        for (i, p) in plugins.iter().enumerate() {
            let Value::Object(p) = p else {
                return Err(Error::config(
                    format!("plugins[{i}]"),
                    p,
                    "a plugin configuration object",
                ));
            };
            match p.get("type") {
                Some(Value::String(t)) if is_plain_name(t) => {}
                other => {
                    return Err(Error::config(
                        format!("plugins[{i}].type"),
                        other.unwrap_or(&Value::Null),
                        "the plugin's binary name, without path separators",
                    ))
                }
            }
            out.push(p.clone());
        }
        Ok(ConfList {
            cni_version,
            name,
            disable_check,
            disable_gc,
            plugins: out,
            bytes: bytes.to_vec(),
        })
    }

    pub fn from_file(path: &Path) -> Result<ConfList> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::io(format!("read conflist {}", path.display()), e))?;
        ConfList::parse(&bytes)
    }

    /// `type` of each plugin, in list order.
    pub fn plugin_types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or(""))
            .collect()
    }

    /// True when the list version has CHECK (0.4.0+, conformance.md #31).
    pub fn has_check(&self) -> bool {
        version_at_least(&self.cni_version, (0, 4, 0))
    }

    /// True when the list version has GC and STATUS (1.1.0+, 45, 51).
    pub fn has_gc_status(&self) -> bool {
        version_at_least(&self.cni_version, (1, 1, 0))
    }
}

/// The attachment of one container to one network: libcni's RuntimeConf.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attachment {
    pub container_id: String,
    /// The pod's netns path; `None` is sent as an empty `CNI_NETNS`.
    pub netns: Option<PathBuf>,
    pub ifname: String,
    /// `CNI_ARGS` pairs, in order.
    pub args: Vec<(String, String)>,
    /// What the runtime can provide as `runtimeConfig` (portMappings, ips…);
    /// each plugin gets only those it declares in `capabilities`.
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    pub fn new(
        container_id: impl Into<String>,
        netns: Option<PathBuf>,
        ifname: impl Into<String>,
    ) -> Attachment {
        Attachment {
            container_id: container_id.into(),
            netns,
            ifname: ifname.into(),
            ..Default::default()
        }
    }

    pub fn with_arg(mut self, key: impl Into<String>, value: impl Into<String>) -> Attachment {
        self.args.push((key.into(), value.into()));
        self
    }

    pub fn with_capability(mut self, name: impl Into<String>, value: Value) -> Attachment {
        self.capability_args.insert(name.into(), value);
        self
    }

    /// `CNI_ARGS` as libcni stringifies it: `K=V;K=V`.
    pub fn cni_args(&self) -> String {
        self.args
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(";")
    }

    fn netns_str(&self) -> String {
        self.netns
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// libcni's checks before exec (conformance.md #84): an empty container id
    /// is "unknown container" (3), a bad one 4; ifname 4. The network name
    /// was validated when the list was parsed.
    fn validate(&self) -> Result<()> {
        if self.container_id.is_empty() {
            return Err(Error::Plugin {
                code: code::UNKNOWN_CONTAINER,
                msg: "missing containerID".into(),
                details: String::new(),
            });
        }
        validate_container_id(&self.container_id)?;
        validate_ifname(&self.ifname)
    }
}

/// libcni's name for [`Attachment`].
pub type RuntimeConf = Attachment;

/// What a plugin process did.
#[derive(Debug, Clone)]
pub struct PluginOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl PluginOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The failure as libcni reports it (conformance.md #70): the error JSON on
    /// stdout; with empty stdout the plugin's stderr; unparsable stdout is
    /// quoted. `None` when the plugin succeeded.
    pub fn error(&self) -> Option<Error> {
        if self.success() {
            return None;
        }
        let stderr = String::from_utf8_lossy(&self.stderr).trim().to_string();
        if self.stdout.iter().all(u8::is_ascii_whitespace) {
            let msg = if stderr.is_empty() {
                format!("netplugin failed with no error message: {}", self.status)
            } else {
                format!("netplugin failed: {stderr:?}")
            };
            return Some(Error::Plugin {
                code: NO_ERROR_CODE,
                msg,
                details: String::new(),
            });
        }
        Some(
            Error::from_plugin_output(&self.stdout).unwrap_or_else(|| Error::Plugin {
                code: NO_ERROR_CODE,
                msg: format!(
                    "netplugin failed but its diagnostic message is not a CNI error: {:?}",
                    String::from_utf8_lossy(&self.stdout)
                ),
                details: stderr,
            }),
        )
    }
}

/// Run one plugin binary: our environment plus `env` (which wins), with
/// `CNI_COMMAND=command` (removed when `command` is empty), `stdin` piped
/// in, stdout and stderr captured. Retries ETXTBSY like libcni. Only a
/// failure to run the binary at all is an `Err`; the plugin's own exit
/// status is in the output.
pub fn exec_plugin(
    path: &Path,
    command: &str,
    env: &[(&str, &str)],
    stdin: &[u8],
) -> Result<PluginOutput> {
    let mut attempt = 0;
    let mut child = loop {
        let mut cmd = Proc::new(path);
        if command.is_empty() {
            cmd.env_remove("CNI_COMMAND");
        } else {
            cmd.env("CNI_COMMAND", command);
        }
        cmd.envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match cmd.spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < ETXTBSY_RETRIES => {
                attempt += 1;
                std::thread::sleep(ETXTBSY_DELAY);
            }
            Err(e) => return Err(Error::io(format!("run plugin {}", path.display()), e)),
        }
    };
    // Feed stdin from a thread while reading both pipes, so a plugin that
    // writes much before reading cannot deadlock us.
    let mut si = child.stdin.take().expect("piped stdin");
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A plugin that exits without reading gives EPIPE; its exit status
        // and output tell the real story.
        let _ = si.write_all(&input);
    });
    let mut se = child.stderr.take().expect("piped stderr");
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = se.read_to_end(&mut buf);
        buf
    });
    let mut stdout = Vec::new();
    let read = child
        .stdout
        .take()
        .expect("piped stdout")
        .read_to_end(&mut stdout);
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("wait for plugin {}", path.display()), e))?;
    let _ = writer.join();
    let stderr = err_reader.join().unwrap_or_default();
    read.map_err(|e| Error::io(format!("read output of plugin {}", path.display()), e))?;
    Ok(PluginOutput {
        status,
        stdout,
        stderr,
    })
}

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
    /// The attachment this record was made for.
    pub fn attachment(&self) -> Attachment {
        Attachment {
            container_id: self.container_id.clone(),
            netns: (!self.netns.is_empty()).then(|| PathBuf::from(&self.netns)),
            ifname: self.if_name.clone(),
            args: self.cni_args.clone(),
            capability_args: self.capability_args.clone(),
        }
    }
}

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

    /// `<cache_dir>/results/<net>-<containerID>-<ifname>` (conformance.md #85).
    pub fn cache_path(&self, network: &str, att: &Attachment) -> PathBuf {
        self.cache_dir
            .join("results")
            .join(format!("{network}-{}-{}", att.container_id, att.ifname))
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
    pub fn add(&self, list: &ConfList, att: &Attachment) -> Result<Value> {
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
    pub fn check(&self, list: &ConfList, att: &Attachment) -> Result<()> {
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
    pub fn del(&self, list: &ConfList, att: &Attachment) -> Result<()> {
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
            match self.del(list, &rec.attachment()) {
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

    /// The cached result of an attachment converted to the list version;
    /// `None` when there is no cache file (conformance.md #86, 87). A record that
    /// is not `cniCacheV1` is read as a bare result (libcni's legacy cache).
    pub fn cached_result(&self, list: &ConfList, att: &Attachment) -> Result<Option<Value>> {
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
        let probe = Attachment::new(container_id, None, ifname);
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
        // Skip our own in-flight temp files (".<name>.tmp<pid>").
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

    fn write_cache(&self, list: &ConfList, att: &Attachment, result: &Value) -> Result<()> {
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

    fn attachment_env(&self, att: &Attachment) -> Vec<(&'static str, String)> {
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
    att: &Attachment,
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

fn is_plain_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

fn bool_key(obj: &Map<String, Value>, key: &str) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        // libcni accepts strconv.ParseBool strings here.
        Some(Value::String(s)) => match s.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
            _ => Err(Error::config(key, s, "true or false")),
        },
        Some(v) => Err(Error::config(key, v, "true or false")),
    }
}

fn parse_semver(s: &str) -> Option<(u64, u64, u64)> {
    let mut it = s.split('.').map(|p| {
        (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .then(|| p.parse::<u64>().ok())
            .flatten()
    });
    match (it.next(), it.next(), it.next(), it.next()) {
        (Some(Some(a)), Some(Some(b)), Some(Some(c)), None) => Some((a, b, c)),
        _ => None,
    }
}

fn version_at_least(v: &str, min: (u64, u64, u64)) -> bool {
    parse_semver(v).is_some_and(|v| v >= min)
}

/// `cniVersion`, or with `cniVersions` the highest entry (the list's
/// `cniVersion` included) not newer than this runtime (conformance.md #64).
fn choose_version(obj: &Map<String, Value>) -> Result<String> {
    let latest = parse_semver(version::LATEST.as_str()).expect("our latest version parses");
    let single = match obj.get("cniVersion") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if parse_semver(s).is_some() => Some(s.clone()),
        Some(v) => return Err(Error::config("cniVersion", v, "a version like \"1.0.0\"")),
    };
    let Some(many) = obj.get("cniVersions").filter(|v| !v.is_null()) else {
        return single.ok_or_else(|| {
            Error::config(
                "cniVersion",
                "(absent)",
                "the CNI version of the list, e.g. \"1.0.0\"",
            )
        });
    };
    let Value::Array(many) = many else {
        return Err(Error::config(
            "cniVersions",
            many,
            "an array of versions like [\"1.0.0\", \"1.1.0\"]",
        ));
    };
    let mut best: Option<((u64, u64, u64), String)> = None;
    let candidates = many.iter().map(Some).chain(std::iter::once(None));
    for c in candidates {
        let s = match c {
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(Error::config(
                    "cniVersions",
                    v,
                    "versions like \"1.1.0\" (strings)",
                ))
            }
            None => match &single {
                Some(s) => s.clone(),
                None => continue,
            },
        };
        let sv = parse_semver(&s)
            .ok_or_else(|| Error::config("cniVersions", &s, "versions like \"1.1.0\""))?;
        let better = match &best {
            Some((b, _)) => sv > *b,
            None => true,
        };
        if sv <= latest && better {
            best = Some((sv, s));
        }
    }
    best.map(|(_, s)| s)
        .ok_or_else(|| Error::IncompatibleVersion {
            requested: format!("cniVersions {}", Value::Array(many.clone())),
            supported: format!("this runtime's versions up to {}", version::LATEST),
        })
}

#[cfg(test)]
mod tests {
    //! The runtime against shell-script fake plugins (like libcni's noop
    //! and debug plugins): each records its env and stdin and prints a
    //! scripted answer.
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    const FAKE: &str = r#"#!/bin/sh
here=$(dirname "$0")
name=$(basename "$0")
log="$here/../log"
n=$(( $(cat "$log/count" 2>/dev/null || echo 0) + 1 ))
echo $n > "$log/count"
cat > "$log/$n.stdin"
env > "$log/$n.env"
echo "$name $CNI_COMMAND" > "$log/$n.call"
out="$here/../script/$name.$CNI_COMMAND"
[ -f "$out.stdout" ] && cat "$out.stdout"
[ -f "$out.stderr" ] && cat "$out.stderr" >&2
[ -f "$out.rc" ] && exit $(cat "$out.rc")
exit 0
"#;

    struct Fixture {
        root: tempfile::TempDir,
        rt: Runtime,
    }

    #[derive(Debug)]
    struct Call {
        plugin: String,
        command: String,
        stdin: Value,
        env: HashMap<String, String>,
    }

    impl Fixture {
        fn new(plugins: &[&str]) -> Fixture {
            let root = tempfile::tempdir().unwrap();
            for d in ["bin", "log", "script", "cache"] {
                std::fs::create_dir(root.path().join(d)).unwrap();
            }
            for p in plugins {
                let path = root.path().join("bin").join(p);
                std::fs::write(&path, FAKE).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            let rt = Runtime::new(vec![
                root.path().join("empty-first"),
                root.path().join("bin"),
            ])
            .with_cache_dir(root.path().join("cache"));
            Fixture { root, rt }
        }

        fn script(&self, plugin: &str, cmd: &str, stdout: &str, rc: i32) {
            let base = self
                .root
                .path()
                .join("script")
                .join(format!("{plugin}.{cmd}"));
            std::fs::write(base.with_extension(format!("{cmd}.stdout")), stdout).unwrap();
            std::fs::write(base.with_extension(format!("{cmd}.rc")), rc.to_string()).unwrap();
        }

        fn script_stderr(&self, plugin: &str, cmd: &str, stderr: &str) {
            let p = self
                .root
                .path()
                .join("script")
                .join(format!("{plugin}.{cmd}.stderr"));
            std::fs::write(p, stderr).unwrap();
        }

        fn calls(&self) -> Vec<Call> {
            let log = self.root.path().join("log");
            let n: usize = std::fs::read_to_string(log.join("count"))
                .map(|s| s.trim().parse().unwrap())
                .unwrap_or(0);
            (1..=n)
                .map(|i| {
                    let call = std::fs::read_to_string(log.join(format!("{i}.call"))).unwrap();
                    let (plugin, command) = call.trim().split_once(' ').unwrap();
                    let stdin = std::fs::read(log.join(format!("{i}.stdin"))).unwrap();
                    let env = std::fs::read_to_string(log.join(format!("{i}.env")))
                        .unwrap()
                        .lines()
                        .filter_map(|l| l.split_once('='))
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect();
                    Call {
                        plugin: plugin.into(),
                        command: command.into(),
                        stdin: serde_json::from_slice(&stdin).unwrap_or(Value::Null),
                        env,
                    }
                })
                .collect()
        }

        fn clear_log(&self) {
            let _ = std::fs::remove_file(self.root.path().join("log/count"));
        }

        fn cni_path(&self) -> String {
            self.rt.cni_path()
        }
    }

    fn list(version: &str, extra: Value) -> ConfList {
        let mut v = json!({
            "cniVersion": version,
            "name": "net1",
            "plugins": [
                {"type": "first", "capabilities": {"portMappings": true, "mac": false, "ips": true}, "keep": 1},
                {"type": "second", "cni.dev/x": "y"}
            ]
        });
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        ConfList::parse(v.to_string().as_bytes()).unwrap()
    }

    fn pod(id: &str) -> Attachment {
        Attachment::new(id, Some(PathBuf::from("/var/run/netns/pod-x")), "eth0")
            .with_arg("IgnoreUnknown", "1")
            .with_arg("K8S_POD_NAME", "web")
            .with_capability("portMappings", json!([{"hostPort": 8080}]))
            .with_capability("mac", json!("02:00:00:00:00:01"))
            .with_capability("bandwidth", json!({"ingressRate": 1}))
    }

    fn result(version: &str, addr: &str) -> Value {
        json!({
            "cniVersion": version,
            "interfaces": [{"name": "eth0", "sandbox": "/var/run/netns/pod-x"}],
            "ips": [{"address": addr, "interface": 0}]
        })
    }

    #[test]
    fn parse_conflist_keys_and_errors() {
        let l = list("1.0.0", json!({"disableCheck": "true", "disableGC": true}));
        assert_eq!(l.name, "net1");
        assert_eq!(l.cni_version, "1.0.0");
        assert!(l.disable_check && l.disable_gc);
        assert_eq!(l.plugin_types(), vec!["first", "second"]);
        assert!(l.has_check() && !l.has_gc_status());
        let bad: &[(&str, u32)] = &[
            ("{", 6),
            ("[]", 6),
            (r#"{"cniVersion":"1.0.0","plugins":[{"type":"a"}]}"#, 7),
            (
                r#"{"cniVersion":"1.0.0","name":"a/b","plugins":[{"type":"a"}]}"#,
                7,
            ),
            (r#"{"cniVersion":"1.0.0","name":"n","plugins":[]}"#, 7),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../a"}]}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"x":1}]}"#,
                7,
            ),
            (r#"{"cniVersion":"1.0.0","name":"n","plugins":[3]}"#, 7),
            (r#"{"name":"n","plugins":[{"type":"a"}]}"#, 7),
            (
                r#"{"cniVersion":"one","name":"n","plugins":[{"type":"a"}]}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","disableCheck":"maybe","plugins":[{"type":"a"}]}"#,
                7,
            ),
        ];
        for (text, code) in bad {
            let e = ConfList::parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.code(), *code, "{text}: {e}");
        }
        let e =
            ConfList::parse(br#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"../a"}]}"#)
                .unwrap_err();
        assert!(e.to_string().contains("plugins[0].type"), "{e}");
    }

    #[test]
    fn single_conf_is_wrapped_into_a_list() {
        let l = ConfList::parse(
            br#"{"cniVersion":"0.3.1","name":"macvlan-net","type":"macvlan","master":"eth0"}"#,
        )
        .unwrap();
        assert_eq!(l.name, "macvlan-net");
        assert_eq!(l.cni_version, "0.3.1");
        assert_eq!(l.plugins.len(), 1);
        assert_eq!(l.plugins[0]["master"], "eth0");
        let again: Value = serde_json::from_slice(&l.bytes).unwrap();
        assert_eq!(again["plugins"][0]["type"], "macvlan");
        assert_eq!(again["name"], "macvlan-net");
    }

    #[test]
    fn cni_versions_picks_highest_supported() {
        // conformance.md #64
        let parse = |extra: &str| {
            ConfList::parse(
                format!(r#"{{"name":"n",{extra}"plugins":[{{"type":"a"}}]}}"#).as_bytes(),
            )
        };
        assert_eq!(
            parse(r#""cniVersions":["0.4.0","1.1.0","1.0.0"],"#)
                .unwrap()
                .cni_version,
            "1.1.0"
        );
        assert_eq!(
            parse(r#""cniVersions":["0.4.0","9.0.0"],"#)
                .unwrap()
                .cni_version,
            "0.4.0"
        );
        assert_eq!(
            parse(r#""cniVersion":"1.0.0","cniVersions":["0.4.0"],"#)
                .unwrap()
                .cni_version,
            "1.0.0"
        );
        assert_eq!(parse(r#""cniVersions":["9.0.0"],"#).unwrap_err().code(), 1);
        assert_eq!(parse(r#""cniVersions":["x"],"#).unwrap_err().code(), 7);
        assert_eq!(parse(r#""cniVersions":"1.1.0","#).unwrap_err().code(), 7);
    }

    #[test]
    fn add_injects_and_chains_prev_result() {
        // conformance.md #53, 57, 71, 84, 85
        let f = Fixture::new(&["first", "second"]);
        let r1 = result("1.0.0", "fd00::10/96");
        let mut r2 = r1.clone();
        r2["routes"] = json!([{"dst": "::/0"}]);
        f.script("first", "ADD", &r1.to_string(), 0);
        f.script("second", "ADD", &format!("  {r2}\n"), 0);
        let l = list("1.0.0", json!({}));
        let got = f.rt.add(&l, &pod("c1")).unwrap();
        assert_eq!(got, r2);

        let calls = f.calls();
        assert_eq!(calls.len(), 2);
        let (a, b) = (&calls[0], &calls[1]);
        assert_eq!((a.plugin.as_str(), a.command.as_str()), ("first", "ADD"));
        assert_eq!(a.stdin["name"], "net1");
        assert_eq!(a.stdin["cniVersion"], "1.0.0");
        assert_eq!(a.stdin["keep"], 1);
        assert_eq!(
            a.stdin["runtimeConfig"],
            json!({"portMappings": [{"hostPort": 8080}]})
        );
        assert!(a.stdin.get("capabilities").is_some());
        assert!(a.stdin.get("prevResult").is_none());
        assert_eq!(b.stdin["prevResult"], r1);
        assert!(b.stdin.get("runtimeConfig").is_none());
        assert_eq!(b.stdin["cni.dev/x"], "y");
        for c in &calls {
            assert_eq!(c.env["CNI_CONTAINERID"], "c1");
            assert_eq!(c.env["CNI_NETNS"], "/var/run/netns/pod-x");
            assert_eq!(c.env["CNI_IFNAME"], "eth0");
            assert_eq!(c.env["CNI_ARGS"], "IgnoreUnknown=1;K8S_POD_NAME=web");
            assert_eq!(c.env["CNI_PATH"], f.cni_path());
            // conformance.md #11: the runtime's own environment is inherited.
            assert_eq!(
                c.env.get("PATH"),
                std::env::var("PATH").ok().as_ref(),
                "PATH inherited"
            );
        }

        let cache = f.rt.cache_path("net1", &pod("c1"));
        let files: Vec<_> = std::fs::read_dir(cache.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, vec!["net1-c1-eth0"], "no temp file left behind");
        assert!(cache.ends_with("results/net1-c1-eth0"));
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&cache).unwrap().mode() & 0o777, 0o600);
        let rec: Value = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
        assert_eq!(rec["kind"], "cniCacheV1");
        assert_eq!(rec["containerId"], "c1");
        assert_eq!(rec["ifName"], "eth0");
        assert_eq!(rec["networkName"], "net1");
        assert_eq!(rec["netns"], "/var/run/netns/pod-x");
        assert_eq!(
            rec["cniArgs"],
            json!([["IgnoreUnknown", "1"], ["K8S_POD_NAME", "web"]])
        );
        assert_eq!(rec["capabilityArgs"]["mac"], "02:00:00:00:00:01");
        assert_eq!(rec["result"], r2);
        use base64::Engine as _;
        let config = base64::engine::general_purpose::STANDARD
            .decode(rec["config"].as_str().unwrap())
            .unwrap();
        assert_eq!(config, l.bytes);
        let records = f.rt.cached_attachments().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].attachment(), pod("c1"));
        let rec = f.rt.cached_record("net1", "c1", "eth0").unwrap();
        assert_eq!(rec.attachment(), pod("c1"));
        assert!(f.rt.cached_record("net1", "c2", "eth0").is_none());
        assert!(f.rt.cached_record("net1", "../c1", "eth0").is_none());
    }

    #[test]
    fn add_result_errors() {
        let f = Fixture::new(&["first", "second"]);
        let l = list("1.0.0", json!({}));
        // cni#895: a result without cniVersion takes the config's.
        f.script("first", "ADD", r#"{"ips":[]}"#, 0);
        f.script("second", "ADD", r#"{}"#, 0);
        assert_eq!(f.calls().len(), 0);
        f.rt.add(&l, &pod("c1")).unwrap();
        assert_eq!(f.calls()[1].stdin["prevResult"]["cniVersion"], "1.0.0");
        // Two JSON values, or none, are not a result (conformance.md #10).
        f.script("second", "ADD", r#"{"cniVersion":"1.0.0"}{"x":1}"#, 0);
        assert_eq!(f.rt.add(&l, &pod("c2")).unwrap_err().code(), 6);
        f.script("second", "ADD", "", 0);
        assert_eq!(f.rt.add(&l, &pod("c3")).unwrap_err().code(), 6);
        // conformance.md #62: an `interface` index out of range is caught.
        f.script(
            "second",
            "ADD",
            r#"{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"address":"fd00::10/96","interface":1}]}"#,
            0,
        );
        let e = f.rt.add(&l, &pod("c3")).unwrap_err();
        assert_eq!(e.code(), 6);
        assert!(e.to_string().contains("second"), "{e}");
        assert!(!f.rt.cache_path("net1", &pod("c3")).exists());
    }

    #[test]
    fn plugin_errors_are_reported_like_libcni() {
        // conformance.md #70
        let f = Fixture::new(&["first", "second"]);
        let l = list("1.0.0", json!({}));
        f.script(
            "first",
            "ADD",
            r#"{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"try later"}"#,
            1,
        );
        let e = f.rt.add(&l, &pod("c1")).unwrap_err();
        assert_eq!(e.code(), 11);
        assert!(
            e.to_string().contains("first") && e.to_string().contains("busy"),
            "{e}"
        );
        assert_eq!(e.details(), "try later");
        assert_eq!(f.calls().len(), 1, "the chain stops at the first error");
        f.script("first", "ADD", "", 2);
        f.script_stderr("first", "ADD", "boom on stderr");
        let e = f.rt.add(&l, &pod("c1")).unwrap_err();
        assert_eq!(e.code(), NO_ERROR_CODE);
        assert!(e.to_string().contains("boom on stderr"), "{e}");
        f.script("first", "ADD", "not json", 2);
        assert!(f
            .rt
            .add(&l, &pod("c1"))
            .unwrap_err()
            .to_string()
            .contains("not json"));
        assert!(!f.rt.cache_path("net1", &pod("c1")).exists());
    }

    #[test]
    fn attachment_validated_before_exec() {
        // conformance.md #84
        let f = Fixture::new(&["first", "second"]);
        let l = list("1.0.0", json!({}));
        assert_eq!(
            f.rt.add(&l, &Attachment::new("", None, "eth0"))
                .unwrap_err()
                .code(),
            3
        );
        assert_eq!(
            f.rt.add(&l, &Attachment::new("-x/y", None, "eth0"))
                .unwrap_err()
                .code(),
            4
        );
        assert_eq!(
            f.rt.add(&l, &Attachment::new("c1", None, "0123456789abcdef"))
                .unwrap_err()
                .code(),
            4
        );
        assert_eq!(
            f.rt.del(&l, &Attachment::new("c1", None, "a/b"))
                .unwrap_err()
                .code(),
            4
        );
        assert!(f.calls().is_empty());
        let e =
            f.rt.add(
                &list("1.0.0", json!({"plugins": [{"type": "missing"}]})),
                &pod("c1"),
            )
            .unwrap_err();
        assert_eq!(e.code(), 7);
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn del_reverse_with_converted_cached_result() {
        // conformance.md #54, 86
        let f = Fixture::new(&["first", "second"]);
        let l = list("0.4.0", json!({}));
        // The plugins answer 1.0.0 to a 0.4.0 list; DEL converts.
        let r = result("1.0.0", "fd00::10/96");
        f.script("first", "ADD", &r.to_string(), 0);
        f.script("second", "ADD", &r.to_string(), 0);
        f.rt.add(&l, &pod("c1")).unwrap();
        let cache = f.rt.cache_path("net1", &pod("c1"));
        assert!(cache.exists());
        f.clear_log();
        f.rt.del(&l, &pod("c1")).unwrap();
        let calls = f.calls();
        let order: Vec<_> = calls
            .iter()
            .map(|c| (c.plugin.as_str(), c.command.as_str()))
            .collect();
        assert_eq!(order, vec![("second", "DEL"), ("first", "DEL")]);
        for c in &calls {
            let prev = &c.stdin["prevResult"];
            assert_eq!(prev["cniVersion"], "0.4.0");
            assert_eq!(prev["ips"][0]["version"], "6");
            assert_eq!(prev["ips"][0]["address"], "fd00::10/96");
            assert_eq!(c.env["CNI_NETNS"], "/var/run/netns/pod-x");
        }
        assert_eq!(
            calls[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
        assert!(!cache.exists(), "a successful DEL removes the cache");
        // DEL again: no cache, no prevResult, still fine (conformance.md #26, 28).
        f.clear_log();
        f.rt.del(&l, &pod("c1")).unwrap();
        assert!(f
            .calls()
            .iter()
            .all(|c| c.stdin.get("prevResult").is_none()));
    }

    #[test]
    fn del_stops_at_first_error_and_keeps_cache() {
        // conformance.md #86
        let f = Fixture::new(&["first", "second"]);
        let l = list("1.0.0", json!({}));
        let r = result("1.0.0", "fd00::10/96");
        f.script("first", "ADD", &r.to_string(), 0);
        f.script("second", "ADD", &r.to_string(), 0);
        f.rt.add(&l, &pod("c1")).unwrap();
        f.clear_log();
        f.script(
            "second",
            "DEL",
            r#"{"code":101,"msg":"netlink refused"}"#,
            1,
        );
        let e = f.rt.del(&l, &pod("c1")).unwrap_err();
        assert_eq!(e.code(), 101);
        assert!(e.to_string().contains("second"), "{e}");
        assert_eq!(
            f.calls().len(),
            1,
            "first was not called after second failed"
        );
        assert!(f.rt.cache_path("net1", &pod("c1")).exists());
    }

    #[test]
    fn del_goes_on_without_a_corrupt_cache() {
        // conformance.md #86, cni#1072
        let f = Fixture::new(&["first", "second"]);
        let l = list("1.0.0", json!({}));
        for content in [
            "",
            "{garbage",
            r#"{"kind":"cniCacheV1","result":{"ips":[{"address":"x"}]}}"#,
        ] {
            let cache = f.rt.cache_path("net1", &pod("c1"));
            std::fs::create_dir_all(cache.parent().unwrap()).unwrap();
            std::fs::write(&cache, content).unwrap();
            f.clear_log();
            f.rt.del(&l, &pod("c1")).unwrap();
            let calls = f.calls();
            assert_eq!(calls.len(), 2);
            assert!(calls.iter().all(|c| c.stdin.get("prevResult").is_none()));
            assert!(!cache.exists());
        }
    }

    #[test]
    fn check_rules() {
        // conformance.md #39, 87, 31
        let f = Fixture::new(&["first", "second"]);
        let r = result("1.0.0", "fd00::10/96");
        f.script("first", "ADD", &r.to_string(), 0);
        f.script("second", "ADD", &r.to_string(), 0);
        let l = list("1.0.0", json!({}));
        f.rt.add(&l, &pod("c1")).unwrap();
        f.clear_log();
        f.rt.check(&l, &pod("c1")).unwrap();
        let calls = f.calls();
        let order: Vec<_> = calls
            .iter()
            .map(|c| (c.plugin.as_str(), c.command.as_str()))
            .collect();
        assert_eq!(order, vec![("first", "CHECK"), ("second", "CHECK")]);
        assert!(calls.iter().all(|c| c.stdin["prevResult"] == r));

        f.clear_log();
        f.rt.check(&list("1.0.0", json!({"disableCheck": true})), &pod("c1"))
            .unwrap();
        assert!(f.calls().is_empty());
        assert_eq!(
            f.rt.check(&list("0.3.1", json!({})), &pod("c1"))
                .unwrap_err()
                .code(),
            1
        );
        assert!(f.calls().is_empty());

        f.script("second", "CHECK", r#"{"code":102,"msg":"address gone"}"#, 1);
        assert_eq!(f.rt.check(&l, &pod("c1")).unwrap_err().code(), 102);
    }

    #[test]
    fn gc_synthetic_del_then_gc_with_both_keys() {
        // conformance.md #47, 51, 52, 88
        let f = Fixture::new(&["first", "second"]);
        let r = result("1.1.0", "fd00::10/96");
        f.script("first", "ADD", &r.to_string(), 0);
        f.script("second", "ADD", &r.to_string(), 0);
        let l = list("1.1.0", json!({}));
        let other = list("1.1.0", json!({"name": "other"}));
        f.rt.add(&l, &pod("c1")).unwrap();
        f.rt.add(&l, &pod("c2")).unwrap();
        let mut c3 = pod("c3");
        c3.ifname = "net1".into();
        c3.netns = Some(PathBuf::from("/proc/999999/ns/net"));
        f.rt.add(&l, &c3).unwrap();
        f.rt.add(&other, &pod("c4")).unwrap();
        f.clear_log();

        let report = f.rt.gc(&l, &[("c1", "eth0")]).unwrap();
        assert!(report.gc_sent);
        assert_eq!(
            report.stale_deleted,
            vec![
                ("c2".to_string(), "eth0".to_string()),
                ("c3".to_string(), "net1".to_string())
            ]
        );
        let calls = f.calls();
        let dels: Vec<&Call> = calls.iter().filter(|c| c.command == "DEL").collect();
        assert_eq!(dels.len(), 4);
        assert_eq!(dels[0].env["CNI_CONTAINERID"], "c2");
        assert_eq!(dels[0].plugin, "second");
        let c3_del = dels
            .iter()
            .find(|c| c.env["CNI_CONTAINERID"] == "c3")
            .unwrap();
        assert_eq!(c3_del.env["CNI_NETNS"], "/proc/999999/ns/net");
        assert_eq!(c3_del.env["CNI_IFNAME"], "net1");
        assert_eq!(c3_del.env["CNI_ARGS"], "IgnoreUnknown=1;K8S_POD_NAME=web");
        assert_eq!(c3_del.stdin["prevResult"], r);

        let gcs: Vec<&Call> = calls.iter().filter(|c| c.command == "GC").collect();
        assert_eq!(
            gcs.iter().map(|c| c.plugin.as_str()).collect::<Vec<_>>(),
            vec!["first", "second"]
        );
        let want = json!([{"containerID": "c1", "ifname": "eth0"}]);
        for c in gcs {
            assert_eq!(c.stdin["cni.dev/valid-attachments"], want);
            assert_eq!(c.stdin["cni.dev/attachments"], want);
            assert_eq!(c.stdin["name"], "net1");
            assert_eq!(c.stdin["cniVersion"], "1.1.0");
            assert!(c.stdin.get("prevResult").is_none() && c.stdin.get("runtimeConfig").is_none());
            for k in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS"] {
                assert_eq!(c.env[k], "", "{k} must be empty for GC");
            }
            assert_eq!(c.env["CNI_PATH"], f.cni_path());
        }
        assert!(f.rt.cache_path("net1", &pod("c1")).exists());
        assert!(!f.rt.cache_path("net1", &pod("c2")).exists());
        assert!(
            f.rt.cache_path("other", &pod("c4")).exists(),
            "other networks untouched"
        );
    }

    #[test]
    fn gc_disabled_old_version_and_errors() {
        let f = Fixture::new(&["first", "second"]);
        let r = result("1.0.0", "fd00::10/96");
        f.script("first", "ADD", &r.to_string(), 0);
        f.script("second", "ADD", &r.to_string(), 0);
        let l = list("1.0.0", json!({}));
        f.rt.add(&l, &pod("c1")).unwrap();
        f.clear_log();
        let none: &[(&str, &str)] = &[];
        let rep =
            f.rt.gc(&list("1.0.0", json!({"disableGC": true})), none)
                .unwrap();
        assert_eq!(rep, GcReport::default());
        assert!(f.calls().is_empty());
        // Before 1.1.0: synthetic DELs only, no GC verb.
        let rep = f.rt.gc(&l, none).unwrap();
        assert!(!rep.gc_sent);
        assert_eq!(rep.stale_deleted.len(), 1);
        assert!(f.calls().iter().all(|c| c.command == "DEL"));
        // 1.1.0: one plugin's GC fails, the other still runs, error reported.
        f.clear_log();
        f.script("first", "GC", r#"{"code":5,"msg":"store unreadable"}"#, 1);
        let e = f.rt.gc(&list("1.1.0", json!({})), none).unwrap_err();
        assert_eq!(e.code(), 5);
        assert!(e.to_string().contains("store unreadable"), "{e}");
        let gcs: Vec<_> = f
            .calls()
            .into_iter()
            .filter(|c| c.command == "GC")
            .map(|c| c.plugin)
            .collect();
        assert_eq!(gcs, vec!["first", "second"]);
        // A failed synthetic DEL is reported, keeps its cache for a retry,
        // and GC is still sent (conformance.md #49, 88).
        let l11 = list("1.1.0", json!({}));
        f.script("first", "GC", "", 0);
        f.rt.add(&l11, &pod("c5")).unwrap();
        f.script("second", "DEL", r#"{"code":101,"msg":"EPERM"}"#, 1);
        f.clear_log();
        let e = f.rt.gc(&l11, none).unwrap_err();
        assert!(e.to_string().contains("stale attachment c5/eth0"), "{e}");
        assert_eq!(e.code(), 101);
        assert!(f.rt.cache_path("net1", &pod("c5")).exists());
        assert_eq!(f.calls().iter().filter(|c| c.command == "GC").count(), 2);
    }

    #[test]
    fn status_rules() {
        // conformance.md #45, 89
        let f = Fixture::new(&["first", "second"]);
        f.rt.status(&list("1.0.0", json!({}))).unwrap();
        assert!(f.calls().is_empty(), "no STATUS before 1.1.0");
        let l = list("1.1.0", json!({}));
        f.rt.status(&l).unwrap();
        let calls = f.calls();
        assert_eq!(calls.len(), 2);
        for c in &calls {
            assert_eq!(c.command, "STATUS");
            assert_eq!(c.env["CNI_NETNS"], "");
            assert_eq!(c.env["CNI_CONTAINERID"], "");
            assert_eq!(c.env["CNI_PATH"], f.cni_path());
            assert_eq!(c.stdin["name"], "net1");
        }
        f.clear_log();
        f.script(
            "first",
            "STATUS",
            r#"{"code":50,"msg":"pool exhausted"}"#,
            1,
        );
        let e = f.rt.status(&l).unwrap_err();
        assert_eq!(e.code(), 50);
        assert_eq!(e.to_string(), "pool exhausted");
        assert_eq!(f.calls().len(), 1, "first error stops STATUS");
    }

    #[test]
    fn version_probe_like_libcni() {
        // conformance.md #40, 90
        let f = Fixture::new(&["first", "old"]);
        f.script(
            "first",
            "VERSION",
            r#"{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}"#,
            0,
        );
        let v = f.rt.version("first").unwrap();
        assert_eq!(v["supportedVersions"], json!(["1.0.0", "1.1.0"]));
        let c = &f.calls()[0];
        assert_eq!(c.command, "VERSION");
        assert_eq!(c.stdin, json!({"cniVersion": "1.1.0"}));
        for k in ["CNI_NETNS", "CNI_IFNAME", "CNI_PATH"] {
            assert_eq!(c.env[k], "dummy");
        }
        f.script(
            "old",
            "VERSION",
            r#"{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}"#,
            1,
        );
        assert_eq!(
            f.rt.version("old").unwrap()["supportedVersions"],
            json!(["0.1.0"])
        );
        f.script(
            "first",
            "VERSION",
            r#"{"cniVersion":"1.1.0","supportedVersions":[]}"#,
            0,
        );
        assert_eq!(f.rt.version("first").unwrap_err().code(), 6);
        assert_eq!(f.rt.version("absent").unwrap_err().code(), 7);
    }

    #[test]
    fn exec_plugin_low_level() {
        let f = Fixture::new(&["first"]);
        f.script("first", "BOGUS", r#"{"code":4,"msg":"bad verb"}"#, 1);
        let bin = f.root.path().join("bin/first");
        let out = exec_plugin(&bin, "BOGUS", &[("CNI_PATH", "/x")], b"{}").unwrap();
        assert!(!out.success());
        assert_eq!(out.error().unwrap().code(), 4);
        assert_eq!(f.calls()[0].env["CNI_PATH"], "/x");
        assert!(exec_plugin(&f.root.path().join("bin/none"), "ADD", &[], b"").is_err());
    }

    #[test]
    fn exec_retries_text_file_busy() {
        // conformance.md #90: a binary still open for writing is ETXTBSY.
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("busy");
        let mut w = std::fs::File::create(&bin).unwrap();
        w.write_all(b"#!/bin/sh\necho '{\"ok\":1}'\n").unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(w);
        });
        let out = exec_plugin(&bin, "VERSION", &[], b"").unwrap();
        closer.join().unwrap();
        assert!(out.success());
        assert_eq!(out.stdout, b"{\"ok\":1}\n");
    }
}
