//! What several commands share and none owns: the network options of the
//! runtime commands (`--conflist`, `--cni-path`, `--cache-dir`), the
//! plugin search path, and [`Output`], where a command prints. Commands
//! import these from here, so no command module imports another for them
//! and `cli` (which imports every command) is imported by none.

use crate::error::{CliError, Result};
use clap::Args;
use cni_common::runtime::{ConfList, Runtime, DEFAULT_CACHE_DIR};
use std::io::Write;
use std::path::PathBuf;

/// Default plugin directory when neither --cni-path nor $CNI_PATH is set.
pub const DEFAULT_CNI_PATH: &str = "/opt/cni/bin";

/// Which network and where its plugins and cache are: shared by every
/// command that runs plugins.
#[derive(Debug, Clone, Args)]
pub struct NetworkOpts {
    /// The network configuration list (.conflist, or a single-plugin .conf).
    #[arg(long, value_name = "FILE")]
    pub conflist: PathBuf,

    /// Directories searched for plugin binaries, ':'-separated
    /// [default: $CNI_PATH, else /opt/cni/bin].
    #[arg(long, value_name = "DIR:DIR")]
    pub cni_path: Option<String>,

    /// Where attachment results are cached: libcni's cache, so a runtime
    /// using the same directory sees what cni6 did and vice versa.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CACHE_DIR)]
    pub cache_dir: PathBuf,
}

impl NetworkOpts {
    pub fn plugin_dirs(&self) -> Vec<PathBuf> {
        plugin_dirs(self.cni_path.as_deref())
    }

    pub fn runtime(&self) -> Runtime {
        Runtime::new(self.plugin_dirs()).with_cache_dir(&self.cache_dir)
    }

    pub fn load(&self) -> Result<(ConfList, Runtime)> {
        if !self.conflist.exists() {
            return Err(CliError::Usage(format!(
                "--conflist {}: no such file",
                self.conflist.display()
            )));
        }
        let list = ConfList::from_file(&self.conflist)
            .map_err(|e| CliError::cni(format!("load {}", self.conflist.display()), e))?;
        Ok((list, self.runtime()))
    }
}

/// `--cni-path`, else $CNI_PATH, else /opt/cni/bin, split at ':'.
pub fn plugin_dirs(cni_path: Option<&str>) -> Vec<PathBuf> {
    let from_env = std::env::var("CNI_PATH").ok().filter(|s| !s.is_empty());
    let path = cni_path
        .map(str::to_string)
        .or(from_env)
        .unwrap_or_else(|| DEFAULT_CNI_PATH.to_string());
    path.split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// Where a command prints: stdout in the binary, a buffer in tests.
pub struct Output<'a> {
    pub json: bool,
    pub out: &'a mut dyn Write,
}

impl Output<'_> {
    pub fn json(&mut self, v: &serde_json::Value) -> Result<()> {
        serde_json::to_writer_pretty(&mut *self.out, v).map_err(std::io::Error::from)?;
        writeln!(self.out)?;
        Ok(())
    }

    pub fn line(&mut self, text: impl std::fmt::Display) -> Result<()> {
        writeln!(self.out, "{text}")?;
        Ok(())
    }
}
