//! IPAM delegation exactly as conformance.md 1.O: the binary named by
//! `ipam.type` is found in CNI_PATH, run with our whole environment (only
//! CNI_COMMAND may differ) and our whole stdin; its stderr is ours.

use crate::env::Command;
use crate::error::{Error, Result};
use crate::result::CniResult;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Proc, Stdio};

/// `ipam.type` of a config, validated as a plain binary name (76).
pub fn ipam_type(raw: &Value) -> Result<String> {
    let ipam = raw.get("ipam").filter(|v| !v.is_null()).ok_or_else(|| {
        Error::config(
            "ipam",
            "(absent)",
            "an object with a \"type\" naming the IPAM plugin",
        )
    })?;
    let t = ipam.get("type").and_then(Value::as_str).ok_or_else(|| {
        Error::config(
            "ipam.type",
            ipam.get("type").unwrap_or(&Value::Null),
            "a plugin name",
        )
    })?;
    if t.is_empty() || t == "." || t == ".." || t.contains('/') || t.contains('\0') {
        return Err(Error::config(
            "ipam.type",
            t,
            "a plain plugin name without path separators",
        ));
    }
    Ok(t.to_string())
}

/// First CNI_PATH directory holding an executable `name` (conformance.md #8).
pub fn find_plugin(name: &str, path: &[PathBuf]) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    for dir in path {
        let p = dir.join(name);
        if let Ok(md) = std::fs::metadata(&p) {
            if md.is_file() && md.permissions().mode() & 0o111 != 0 {
                return Ok(p);
            }
        }
    }
    Err(Error::config(
        "ipam.type",
        name,
        format!(
            "a plugin found in CNI_PATH ({})",
            path.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(":")
        ),
    ))
}

/// Run `plugin` with `command`, our environment and `stdin`. Returns the
/// parsed result for ADD, `None` otherwise.
pub fn exec(plugin: &Path, command: Command, stdin: &[u8]) -> Result<Option<CniResult>> {
    let name = plugin
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut child = Proc::new(plugin)
        .env("CNI_COMMAND", command.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| Error::io(format!("run IPAM plugin {}", plugin.display()), e))?;
    {
        let mut si = child.stdin.take().expect("piped stdin");
        // A delegate that exits without reading gives EPIPE; its exit status
        // and output below tell the real story.
        let _ = si.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("wait for IPAM plugin {name}"), e))?;
    if !out.status.success() {
        return Err(match Error::from_plugin_output(&out.stdout) {
            Some(Error::Plugin { code, msg, details }) => Error::Plugin {
                code,
                msg: format!("IPAM plugin {name} {}: {msg}", command.as_str()),
                details,
            },
            _ => Error::Internal(format!(
                "IPAM plugin {name} {} failed ({}) without an error JSON on stdout",
                command.as_str(),
                out.status
            )),
        });
    }
    if command != Command::Add {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::decode(format!("IPAM plugin {name} result"), e))?;
    CniResult::parse(&v).map(Some)
}

/// Find and run the config's IPAM plugin in one step.
pub fn ipam(
    raw: &Value,
    path: &[PathBuf],
    command: Command,
    stdin: &[u8],
) -> Result<Option<CniResult>> {
    let t = ipam_type(raw)?;
    let bin = find_plugin(&t, path)?;
    exec(&bin, command, stdin)
}

/// [`ipam`] on a second thread while `work` runs on this one: the IPAM
/// plugin is a process of its own, so a main plugin overlaps it with
/// kernel work that does not need its answer (bridge6 makes the veth
/// during IPAM ADD and deletes it during IPAM DEL). Returns both outcomes.
pub fn ipam_alongside<T>(
    raw: &Value,
    path: &[PathBuf],
    command: Command,
    stdin: &[u8],
    work: impl FnOnce() -> T,
) -> (T, Result<Option<CniResult>>) {
    std::thread::scope(|s| {
        let ipam = s.spawn(|| ipam(raw, path, command, stdin));
        let done = work();
        let ipam = ipam.join().unwrap_or_else(|_| {
            Err(Error::Internal(format!(
                "the IPAM {} thread panicked",
                command.as_str()
            )))
        });
        (done, ipam)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ipam_type_rules() {
        assert_eq!(
            ipam_type(&json!({"ipam":{"type":"ipam-prefix"}})).unwrap(),
            "ipam-prefix"
        );
        assert_eq!(
            ipam_type(&json!({"ipam":{"type":"../x"}}))
                .unwrap_err()
                .code(),
            7
        );
        assert_eq!(ipam_type(&json!({})).unwrap_err().code(), 7);
        assert_eq!(
            ipam_type(&json!({"ipam":{"type":3}})).unwrap_err().code(),
            7
        );
    }

    #[test]
    fn find_in_second_dir() {
        let a = std::env::temp_dir().join(format!("cni6-find-a-{}", std::process::id()));
        let b = std::env::temp_dir().join(format!("cni6-find-b-{}", std::process::id()));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let p = b.join("spy");
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_plugin("spy", &[a.clone(), b.clone()]).unwrap(), p);
        assert!(find_plugin("nope", &[a.clone(), b.clone()]).is_err());
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(b).unwrap();
    }
}
