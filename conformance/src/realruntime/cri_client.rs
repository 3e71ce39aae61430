//! The kubelet-like CRI client (testdata/runtimes/cri_client.py) as a
//! long-lived child speaking JSON lines.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// The Python CRI client as a long-lived child speaking JSON lines.
pub(super) struct CriClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl CriClient {
    pub(super) fn connect(socket: &Path) -> Result<CriClient, String> {
        let script = testdata::dir().join("runtimes/cri_client.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn python3 {}: {e}", script.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut c = CriClient {
            child,
            stdin,
            stdout,
        };
        let mut line = String::new();
        c.stdout
            .read_line(&mut line)
            .map_err(|e| format!("read from CRI client: {e}"))?;
        if !line.contains("ready") {
            return Err(format!(
                "CRI client did not start (needs `pip install container-runtime-interface-api`; \
                 scripts/install-deps.sh does it): {line:?}"
            ));
        }
        Ok(c)
    }

    pub(super) fn call(&mut self, req: &Value) -> Result<Value, String> {
        writeln!(self.stdin, "{req}").map_err(|e| format!("write to CRI client: {e}"))?;
        self.stdin.flush().map_err(|e| format!("flush: {e}"))?;
        let mut line = String::new();
        self.stdout
            .read_line(&mut line)
            .map_err(|e| format!("read from CRI client: {e}"))?;
        let v: Value = serde_json::from_str(&line)
            .map_err(|e| format!("CRI client answered {line:?}: {e}"))?;
        match (v.get("ok"), v.get("error")) {
            (Some(ok), _) => Ok(ok.clone()),
            (_, Some(e)) => Err(e.as_str().unwrap_or("").to_string()),
            _ => Err(format!("CRI client answered {line:?}")),
        }
    }
}

impl Drop for CriClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
