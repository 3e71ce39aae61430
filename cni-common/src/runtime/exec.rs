//! One plugin call: what the runtime passes (libcni's RuntimeConf), how
//! the binary is run (ETXTBSY retried, conformance.md #90) and how its
//! failure is read (conformance.md #70).

use crate::env::{validate_container_id, validate_ifname};
use crate::error::{code, Error, Result};
use serde_json::{Map, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, ExitStatus, Stdio};
use std::time::Duration;

/// Code libcni gives an error that carries none (a plugin that failed
/// without an error JSON); conformance.md #69 "999 = internal catch-all".
pub const NO_ERROR_CODE: u32 = 999;
/// libcni retries an exec that failed with "text file busy" this often,
/// a second apart (conformance.md #90).
const ETXTBSY_RETRIES: u32 = 5;
const ETXTBSY_DELAY: Duration = Duration::from_secs(1);

/// What the runtime passes for one attachment (libcni's RuntimeConf): the
/// container and interface, the pod's netns, CNI_ARGS and capability args.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
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

impl RuntimeConf {
    pub fn new(
        container_id: impl Into<String>,
        netns: Option<PathBuf>,
        ifname: impl Into<String>,
    ) -> RuntimeConf {
        RuntimeConf {
            container_id: container_id.into(),
            netns,
            ifname: ifname.into(),
            ..Default::default()
        }
    }

    pub fn with_arg(mut self, key: impl Into<String>, value: impl Into<String>) -> RuntimeConf {
        self.args.push((key.into(), value.into()));
        self
    }

    pub fn with_capability(mut self, name: impl Into<String>, value: Value) -> RuntimeConf {
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

    pub(super) fn netns_str(&self) -> String {
        self.netns
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// libcni's checks before exec (conformance.md #84): an empty container id
    /// is "unknown container" (3), a bad one 4; ifname 4. The network name
    /// was validated when the list was parsed.
    pub(super) fn validate(&self) -> Result<()> {
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
