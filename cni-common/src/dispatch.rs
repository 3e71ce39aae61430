//! The dispatcher: everything a plugin binary does before and after its own
//! logic, done once. A plugin's `main` is `cni_common::dispatch::run(&P)`.
//!
//! Handled here: VERSION (answered from stdin alone, touching no other
//! variable: runtimes send `dummy` there), the about text with no
//! CNI_COMMAND (conformance.md #12), environment validation (1.A), version
//! negotiation (1.K), verb/version rules (31, 45, 51), output discipline
//! (10: one JSON document on stdout, logs on stderr) and a panic hook that
//! still prints an error JSON (conformance.md #70), and the optional per-call log
//! (`logFile`, [`crate::calllog`]).

use crate::attachment::Attachment;
use crate::config::NetConf;
use crate::env::{Command, Env};
use crate::error::{Error, Result};
use crate::result::CniResult;
use crate::version::{self, Version};
use serde::Deserialize;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Instant, SystemTime};

/// One ADD/DEL/CHECK/GC/STATUS invocation, decoded and validated.
#[derive(Debug, Clone)]
pub struct Request {
    pub command: Command,
    pub version: Version,
    pub env: Env,
    pub config: NetConf,
    /// Stdin exactly as received, for delegation (conformance.md #77).
    pub stdin: Vec<u8>,
}

/// An entry of GC's valid list (conformance.md #47), as sent.
#[derive(Deserialize)]
struct ValidEntry {
    #[serde(rename = "containerID")]
    container_id: String,
    ifname: String,
}

impl Request {
    /// GC's valid set: `cni.dev/valid-attachments` or the 1.1.0-tag
    /// spelling `cni.dev/attachments` (both accepted, union). `None` when
    /// neither key is present: "no information", never "all stale". The
    /// entries are of this network and are not validated: an entry that
    /// could not name an attachment simply matches none.
    pub fn valid_attachments(&self) -> Result<Option<Vec<Attachment>>> {
        let mut out: Option<Vec<Attachment>> = None;
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            match self.config.raw.get(key) {
                None | Some(Value::Null) => {}
                Some(v) => {
                    let list: Vec<ValidEntry> =
                        serde_json::from_value(v.clone()).map_err(|_| {
                            Error::config(key, v, "an array of {\"containerID\": …, \"ifname\": …}")
                        })?;
                    out.get_or_insert_with(Vec::new)
                        .extend(list.into_iter().map(|e| Attachment {
                            network: self.config.name.clone(),
                            container_id: e.container_id,
                            ifname: e.ifname,
                        }));
                }
            }
        }
        Ok(out)
    }

    pub fn container_id(&self) -> &str {
        self.env.container_id()
    }

    pub fn ifname(&self) -> &str {
        self.env.ifname()
    }

    /// The attachment of an ADD, DEL or CHECK (network name, container id
    /// and ifname were validated before the plugin was called).
    pub fn attachment(&self) -> Attachment {
        Attachment {
            network: self.config.name.clone(),
            container_id: self.container_id().to_string(),
            ifname: self.ifname().to_string(),
        }
    }
}

/// What a plugin implements. VERSION is not here: the dispatcher answers it.
/// Each verb returns the plugin crate's own error; the dispatcher maps it
/// to the CNI code and error JSON, once.
pub trait Plugin {
    /// The plugin crate's error type.
    type Error: Into<Error>;

    /// Printed with no CNI_COMMAND (conformance.md #12).
    fn about(&self) -> &'static str;

    fn supported_versions(&self) -> &'static [Version] {
        version::ALL
    }

    /// CNI_ARGS keys this plugin understands beyond the Kubernetes ones.
    fn known_args(&self) -> &'static [&'static str] {
        &[]
    }

    fn add(&self, req: &Request) -> std::result::Result<CniResult, Self::Error>;
    fn del(&self, req: &Request) -> std::result::Result<(), Self::Error>;
    fn check(&self, req: &Request) -> std::result::Result<(), Self::Error>;
    fn gc(&self, req: &Request) -> std::result::Result<(), Self::Error>;
    fn status(&self, req: &Request) -> std::result::Result<(), Self::Error>;
}

/// What an invocation prints and how it exits, kept apart from the process
/// so tests can drive [`handle`] directly.
#[derive(Debug)]
pub struct Outcome {
    pub stdout: Option<Value>,
    pub stderr: Option<String>,
    pub exit_code: i32,
}

/// Run a plugin as a process: read env + stdin, print, exit.
/// With `logFile` in the config, one line per call goes there
/// ([`crate::calllog`]).
pub fn run<P: Plugin>(plugin: &P) -> ! {
    install_panic_hook();
    let started = SystemTime::now();
    let clock = Instant::now();
    let (stdin, read) = match read_config(std::io::stdin().lock(), MAX_CONFIG_BYTES) {
        Ok(bytes) => (bytes, Ok(())),
        Err(e) => (Vec::new(), Err(e)),
    };
    let command = std::env::var("CNI_COMMAND").ok();
    // stdin is decoded once per call: the log target and network name are
    // taken from the document before it moves on to become the NetConf.
    let doc = serde_json::from_slice::<Value>(&stdin).ok();
    let log_doc = crate::calllog::wanted(doc.as_ref());
    let outcome = match read {
        Ok(_) => handle_decoded(plugin, command.as_deref(), &stdin, doc, |k| {
            std::env::var(k).ok()
        }),
        Err(e) => Outcome {
            stdout: Some(e.to_json(version::LATEST.as_str())),
            stderr: None,
            exit_code: 1,
        },
    };
    let name = std::env::args_os()
        .next()
        .map(PathBuf::from)
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    crate::calllog::record(
        &name,
        command.as_deref(),
        log_doc.as_ref(),
        |k| std::env::var(k).ok(),
        started,
        clock.elapsed(),
        &outcome,
    );
    emit(outcome)
}

/// The largest network config read from stdin. Real ones are a few KiB
/// (a prevResult with many addresses stays far below); without a bound a
/// runaway or hostile writer makes every plugin hold all of it, several
/// times over once decoded (figures: docs/performance.md).
pub const MAX_CONFIG_BYTES: usize = 16 << 20;

/// All of `r` when it holds at most `limit` bytes. Never keeps more than
/// `limit + 1` bytes: what is left unread stays in the pipe, and the
/// runtime sees the error instead (Go's os/exec ignores the EPIPE).
pub fn read_config(r: impl Read, limit: usize) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    r.take(limit as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read network config from stdin", e))?;
    if bytes.len() > limit {
        return Err(Error::config(
            "(stdin)",
            format!("more than {limit} bytes"),
            format!(
                "a network config of at most {limit} bytes ({} MiB); check what the runtime writes to the plugin's stdin",
                limit >> 20
            ),
        ));
    }
    Ok(bytes)
}

fn emit(outcome: Outcome) -> ! {
    if let Some(text) = &outcome.stderr {
        eprintln!("{text}");
    }
    if let Some(v) = &outcome.stdout {
        let mut out = std::io::stdout().lock();
        let _ = serde_json::to_writer(&mut out, v);
        let _ = out.write_all(b"\n");
        let _ = out.flush();
    }
    std::process::exit(outcome.exit_code)
}

/// The panic hook prints a code-100 error JSON so the runtime sees a
/// reason rather than "no error message" (cni#732).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("plugin panicked: {info}");
        eprintln!("{msg}");
        let v = Error::Internal(msg).to_json(version::LATEST.as_str());
        println!("{v}");
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }));
}

pub fn handle<P: Plugin>(
    plugin: &P,
    command: Option<&str>,
    stdin: &[u8],
    get_env: impl Fn(&str) -> Option<String>,
) -> Outcome {
    let doc = serde_json::from_slice::<Value>(stdin).ok();
    handle_decoded(plugin, command, stdin, doc, get_env)
}

/// [`handle`] with stdin already decoded (`None`: it is not JSON; the
/// bytes are decoded again only to report why).
fn handle_decoded<P: Plugin>(
    plugin: &P,
    command: Option<&str>,
    stdin: &[u8],
    doc: Option<Value>,
    get_env: impl Fn(&str) -> Option<String>,
) -> Outcome {
    let command = match command {
        None | Some("") => {
            return Outcome {
                stdout: None,
                stderr: Some(format!(
                    "{}\nCNI protocol versions supported: {}",
                    plugin.about(),
                    version::list(plugin.supported_versions())
                )),
                exit_code: 0,
            }
        }
        Some(c) => c,
    };
    // The version to answer errors in: the config's, if it is one we know.
    let answer_version = doc
        .as_ref()
        .and_then(|v| v.get("cniVersion").and_then(Value::as_str))
        .and_then(|s| Version::parse(s, version::ALL).ok())
        .unwrap_or(version::LATEST);
    let fail = |e: Error| Outcome {
        stdout: Some(e.to_json(answer_version.as_str())),
        stderr: None,
        exit_code: 1,
    };
    let cmd = match Command::parse(command) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if cmd == Command::Version {
        return Outcome {
            stdout: Some(json!({
                "cniVersion": answer_version.as_str(),
                "supportedVersions": plugin.supported_versions().iter().map(|v| v.as_str()).collect::<Vec<_>>(),
            })),
            stderr: None,
            exit_code: 0,
        };
    }
    match prepare(plugin, cmd, stdin, doc, get_env).and_then(|req| execute(plugin, &req)) {
        Ok(stdout) => Outcome {
            stdout,
            stderr: None,
            exit_code: 0,
        },
        Err(e) => fail(e),
    }
}

fn prepare<P: Plugin>(
    plugin: &P,
    cmd: Command,
    stdin: &[u8],
    doc: Option<Value>,
    get_env: impl Fn(&str) -> Option<String>,
) -> Result<Request> {
    let env = Env::load(cmd, get_env)?;
    let config = match doc {
        Some(v) => NetConf::from_value(v)?,
        None => NetConf::parse(stdin)?,
    };
    let version = config.version(plugin.supported_versions())?;
    match cmd {
        Command::Check if !version.has_check() => {
            return Err(Error::IncompatibleVersion {
                requested: format!("{version} for CHECK"),
                supported: "0.4.0 and later".into(),
            })
        }
        Command::Gc | Command::Status if !version.has_gc_status() => {
            return Err(Error::IncompatibleVersion {
                requested: format!("{version} for {}", cmd.as_str()),
                supported: "1.1.0 and later".into(),
            })
        }
        _ => {}
    }
    env.args.check_known(plugin.known_args())?;
    Ok(Request {
        command: cmd,
        version,
        env,
        config,
        stdin: stdin.to_vec(),
    })
}

fn execute<P: Plugin>(plugin: &P, req: &Request) -> Result<Option<Value>> {
    let done = match req.command {
        Command::Add => plugin.add(req).map(|r| Some(r.to_json(req.version))),
        Command::Del => plugin.del(req).map(|_| None),
        Command::Check => plugin.check(req).map(|_| None),
        Command::Gc => plugin.gc(req).map(|_| None),
        Command::Status => plugin.status(req).map(|_| None),
        Command::Version => unreachable!("VERSION is answered before prepare"),
    };
    done.map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::env_of as env;

    struct Echo;
    impl Plugin for Echo {
        type Error = Error;
        fn about(&self) -> &'static str {
            "echo test plugin"
        }
        fn add(&self, _: &Request) -> Result<CniResult> {
            Ok(CniResult::default())
        }
        fn del(&self, _: &Request) -> Result<()> {
            Ok(())
        }
        fn check(&self, _: &Request) -> Result<()> {
            Ok(())
        }
        fn gc(&self, req: &Request) -> Result<()> {
            match req.valid_attachments()? {
                Some(v) if v.len() == 2 => Ok(()),
                other => Err(Error::Internal(format!("{other:?}"))),
            }
        }
        fn status(&self, _: &Request) -> Result<()> {
            Err(Error::Unavailable("pool full".into()))
        }
    }

    const ADD_ENV: &[(&str, &str)] = &[
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin"),
    ];

    #[test]
    fn version_ignores_dummy_env() {
        let o = handle(
            &Echo,
            Some("VERSION"),
            br#"{"cniVersion":"1.0.0"}"#,
            env(&[("CNI_NETNS", "dummy")]),
        );
        assert_eq!(o.exit_code, 0);
        let v = o.stdout.unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5);
        let o = handle(&Echo, Some("VERSION"), b"", env(&[]));
        assert_eq!(o.stdout.unwrap()["cniVersion"], "1.1.0");
    }

    #[test]
    fn no_command_prints_about() {
        let o = handle(&Echo, None, b"", env(&[]));
        assert_eq!(o.exit_code, 0);
        assert!(o.stdout.is_none());
        assert!(o.stderr.unwrap().contains("echo test plugin"));
    }

    #[test]
    fn verb_rules() {
        let o = handle(&Echo, Some("BOGUS"), b"{}", env(&[]));
        assert_eq!(o.stdout.unwrap()["code"], 4);
        let o = handle(
            &Echo,
            Some("CHECK"),
            br#"{"cniVersion":"0.3.1","name":"n"}"#,
            env(ADD_ENV),
        );
        assert_eq!(o.stdout.unwrap()["code"], 1);
        let o = handle(
            &Echo,
            Some("STATUS"),
            br#"{"cniVersion":"1.0.0","name":"n"}"#,
            env(&[]),
        );
        assert_eq!(o.stdout.unwrap()["code"], 1);
        let o = handle(
            &Echo,
            Some("STATUS"),
            br#"{"cniVersion":"1.1.0","name":"n"}"#,
            env(&[]),
        );
        assert_eq!(o.stdout.unwrap()["code"], 50);
        let o = handle(
            &Echo,
            Some("ADD"),
            br#"{"cniVersion":"0.4.0","name":"n"}"#,
            env(ADD_ENV),
        );
        assert_eq!(o.exit_code, 0);
        assert_eq!(o.stdout.unwrap()["cniVersion"], "0.4.0");
        let o = handle(
            &Echo,
            Some("DEL"),
            br#"{"cniVersion":"0.4.0","name":"n"}"#,
            env(ADD_ENV),
        );
        assert!(o.stdout.is_none());
    }

    #[test]
    fn config_above_the_limit_is_refused_without_reading_it_all() {
        let ok = read_config(&b"{\"name\":\"n\"}"[..], 16).unwrap();
        assert_eq!(ok.len(), 12);
        assert_eq!(read_config(&[b' '; 16][..], 16).unwrap().len(), 16);
        // An endless source: the read stops one byte past the limit.
        let e = read_config(std::io::repeat(b' '), MAX_CONFIG_BYTES).unwrap_err();
        assert_eq!(e.code(), 7);
        let m = e.to_string();
        assert!(
            m.contains("(stdin)") && m.contains("more than 16777216 bytes") && m.contains("16 MiB"),
            "{m}"
        );
    }

    #[test]
    fn gc_accepts_both_keys() {
        let stdin = br#"{"cniVersion":"1.1.0","name":"n",
            "cni.dev/valid-attachments":[{"containerID":"a","ifname":"eth0"}],
            "cni.dev/attachments":[{"containerID":"b","ifname":"eth0"}]}"#;
        let o = handle(&Echo, Some("GC"), stdin, env(&[("CNI_PATH", "/x")]));
        assert_eq!(o.exit_code, 0, "{:?}", o.stdout);
    }
}
