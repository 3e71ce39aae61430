//! The one error type of `cni6` and how it becomes an exit code and a
//! message on stderr. Runtime/plugin failures keep their CNI code so the
//! operator sees what a container runtime would have seen.

// One convention for every command (docs/operating.md, "Exit codes"):
// 0 done / healthy, 1 something is wrong or an operation failed, 2 the
// command line cannot be acted on as written (clap's errors, malformed
// values, a named file, namespace, network or attachment that does not
// exist, option values the plugins' parsers refuse).

/// Exit code for a failed operation or a finding (status, lint).
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a command line that cannot be acted on (clap's too).
pub const EXIT_USAGE: u8 = 2;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is well-formed for clap but not usable.
    #[error("{0}")]
    Usage(String),

    /// The runtime or a plugin failed; `context` says what we were doing.
    #[error("{context}: {source} [CNI error code {code}]", code = .source.code())]
    Cni {
        context: String,
        #[source]
        source: cni_common::Error,
    },

    /// The operation ran and its answer is "no" (e.g. a plugin is not
    /// ready); the details were already printed.
    #[error("{0}")]
    Failed(String),

    #[error("write output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    pub fn cni(context: impl Into<String>, source: cni_common::Error) -> CliError {
        CliError::Cni {
            context: context.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }

    /// The text for stderr: the message, then the plugin's details if any.
    pub fn report(&self) -> String {
        let mut s = format!("cni6: {self}");
        if let CliError::Cni { source, .. } = self {
            let d = source.details();
            if !d.is_empty() {
                s.push_str("\n  details: ");
                s.push_str(&d);
            }
        }
        s
    }
}

pub type Result<T, E = CliError> = std::result::Result<T, E>;
