//! Long-running processes in the lab's namespaces (BIRD, tayga, unbound):
//! started with their log in the state directory, ended before the
//! namespaces go.

use super::exec::describe;
use super::{Daemon, Error, Result, Topology};
use std::fs::File;
use std::process::{Command, Stdio};

impl Topology {
    /// Start a long-running process (prepared with [`Topology::node_command`]
    /// or [`Host::command`]); its output goes to `<dir>/<name>.log`. It is
    /// killed before the namespaces are removed.
    pub fn spawn_daemon(&mut self, name: &str, mut cmd: Command) -> Result<u32> {
        if self.daemons.iter().any(|d| d.name == name) {
            return Err(Error::Spec(format!("daemon {name} already runs")));
        }
        let log = self.dir.join(format!("{name}.log"));
        let out =
            File::create(&log).map_err(|e| Error::io(format!("create {}", log.display()), e))?;
        let err = out.try_clone().map_err(|e| Error::io("dup log file", e))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| Error::io(format!("start {name} ({})", describe(&cmd)), e))?;
        let pid = child.id();
        self.daemons.push(Daemon {
            name: name.to_string(),
            child,
        });
        self.save_manifest()?;
        Ok(pid)
    }

    /// Kill a daemon (SIGKILL: a crash, not a clean shutdown) and reap it.
    pub fn kill_daemon(&mut self, name: &str) -> Result<()> {
        let i = self
            .daemons
            .iter()
            .position(|d| d.name == name)
            .ok_or_else(|| Error::Spec(format!("no daemon {name}")))?;
        let mut d = self.daemons.remove(i);
        d.stop();
        self.save_manifest()
    }

    /// Whether a daemon is still running; its log when it is not.
    pub fn daemon_alive(&mut self, name: &str) -> Result<()> {
        let d = self
            .daemons
            .iter_mut()
            .find(|d| d.name == name)
            .ok_or_else(|| Error::Spec(format!("no daemon {name}")))?;
        match d.child.try_wait() {
            Ok(None) => Ok(()),
            other => {
                let log = std::fs::read_to_string(self.dir.join(format!("{name}.log")))
                    .unwrap_or_default();
                Err(Error::Check(format!("{name} exited ({other:?}): {log}")))
            }
        }
    }

    pub(super) fn stop_daemons(&mut self) {
        for d in self.daemons.iter_mut().rev() {
            d.stop();
        }
        self.daemons.clear();
    }
}
