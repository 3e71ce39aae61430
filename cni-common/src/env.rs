//! The runtime's environment: `CNI_*` variables, validated per verb
//! (conformance.md 1.A), and `CNI_ARGS` (conformance.md #7, 74, 75).
//!
//! libcni always exports all six variables, some as empty strings, so an
//! empty value counts as absent (conformance.md #3).

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
    Gc,
    Status,
}

impl Command {
    pub fn parse(s: &str) -> Result<Command> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "GC" => Command::Gc,
            "STATUS" => Command::Status,
            other => {
                return Err(Error::env(
                    "CNI_COMMAND",
                    other,
                    "one of ADD, DEL, CHECK, VERSION, GC, STATUS",
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Gc => "GC",
            Command::Status => "STATUS",
        }
    }

    /// Variables the spec requires for this verb (conformance.md #3). CNI_PATH is
    /// also required where a plugin may delegate (ADD/DEL/CHECK), as the Go
    /// skel does; plugins that never delegate still get it from libcni.
    fn required(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => {
                &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"]
            }
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"],
            Command::Gc => &["CNI_PATH"],
            Command::Version | Command::Status => &[],
        }
    }
}

/// The validated environment of one invocation.
#[derive(Debug, Clone, Default)]
pub struct Env {
    pub container_id: Option<String>,
    pub netns: Option<PathBuf>,
    pub ifname: Option<String>,
    pub args: CniArgs,
    pub path: Vec<PathBuf>,
    /// The raw `CNI_ARGS` string, for records and delegation.
    pub raw_args: String,
}

impl Env {
    /// Read and validate the variables `cmd` needs. `get` abstracts the
    /// process environment so tests can feed a map.
    pub fn load(cmd: Command, get: impl Fn(&str) -> Option<String>) -> Result<Env> {
        let val = |k: &str| get(k).filter(|v| !v.is_empty());
        let missing: Vec<&'static str> = cmd
            .required()
            .iter()
            .copied()
            .filter(|k| val(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(Error::MissingEnv(missing));
        }
        let uses_attachment = matches!(cmd, Command::Add | Command::Del | Command::Check);
        let container_id = if uses_attachment {
            let id = val("CNI_CONTAINERID").unwrap_or_default();
            validate_container_id(&id)?;
            Some(id)
        } else {
            None
        };
        let ifname = if uses_attachment {
            let name = val("CNI_IFNAME").unwrap_or_default();
            validate_ifname(&name)?;
            Some(name)
        } else {
            None
        };
        let netns = if uses_attachment {
            val("CNI_NETNS").map(PathBuf::from)
        } else {
            None
        };
        let raw_args = if uses_attachment {
            val("CNI_ARGS").unwrap_or_default()
        } else {
            String::new()
        };
        let args = CniArgs::parse(&raw_args)?;
        let path = val("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Env {
            container_id,
            netns,
            ifname,
            args,
            path,
            raw_args,
        })
    }

    /// Container id of an ADD/DEL/CHECK (validated non-empty).
    pub fn container_id(&self) -> &str {
        self.container_id.as_deref().unwrap_or("")
    }

    pub fn ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or("")
    }
}

/// conformance.md #4: first char alphanumeric, then `[A-Za-z0-9_.-]`. Also bounds
/// the length so ids stay usable in file names.
pub fn validate_container_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::env(
            "CNI_CONTAINERID",
            id,
            "an alphanumeric first character followed by [A-Za-z0-9_.-], at most 255 bytes",
        ))
    }
}

/// conformance.md #5: the kernel's rules for interface names.
pub fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if ok {
        Ok(())
    } else {
        Err(Error::env(
            "CNI_IFNAME",
            name,
            "1 to 15 bytes, not \".\" or \"..\", without '/', ':' or whitespace",
        ))
    }
}

/// Parsed `CNI_ARGS`. Unknown keys are kept; whether they are an error is
/// decided by [`CniArgs::check_known`] (libcni convention: an error unless
/// `IgnoreUnknown` is true).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    pub pairs: BTreeMap<String, String>,
}

/// Keys every cni6 plugin understands: the libcni convention key and the
/// Kubernetes runtime keys (conformance.md #75).
pub const K8S_ARGS: &[&str] = &[
    "IgnoreUnknown",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
];

impl CniArgs {
    pub fn parse(s: &str) -> Result<CniArgs> {
        let mut pairs = BTreeMap::new();
        for item in s.split(';').filter(|i| !i.is_empty()) {
            let mut kv = item.split('=');
            let (Some(k), Some(v), None) = (kv.next(), kv.next(), kv.next()) else {
                return Err(Error::env(
                    "CNI_ARGS",
                    s,
                    format!("KEY=VALUE pairs separated by ';' (item {item:?} is not one)"),
                ));
            };
            if k.is_empty() {
                return Err(Error::env(
                    "CNI_ARGS",
                    s,
                    format!("KEY=VALUE pairs separated by ';' (item {item:?} has no key)"),
                ));
            }
            pairs.insert(k.to_string(), v.to_string());
        }
        Ok(CniArgs { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    pub fn ignore_unknown(&self) -> bool {
        matches!(
            self.get("IgnoreUnknown").map(|v| v.to_ascii_lowercase()),
            Some(v) if v == "1" || v == "true"
        )
    }

    /// conformance.md #7: an unknown key fails unless `IgnoreUnknown=1|true`.
    pub fn check_known(&self, known: &[&str]) -> Result<()> {
        if self.ignore_unknown() {
            return Ok(());
        }
        for k in self.pairs.keys() {
            if !K8S_ARGS.contains(&k.as_str()) && !known.contains(&k.as_str()) {
                return Err(Error::env(
                    "CNI_ARGS",
                    format!("{k}={}", self.pairs[k]),
                    format!(
                        "only known keys ({}) unless IgnoreUnknown=1 is given",
                        K8S_ARGS
                            .iter()
                            .chain(known)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    pub fn pod_namespace(&self) -> Option<&str> {
        self.get("K8S_POD_NAMESPACE")
    }

    pub fn pod_name(&self) -> Option<&str> {
        self.get("K8S_POD_NAME")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::env_of;

    #[test]
    fn add_requires_all_attachment_vars() {
        let e = Env::load(Command::Add, env_of(&[("CNI_CONTAINERID", "abc")])).unwrap_err();
        assert_eq!(e.code(), 4);
        let m = e.to_string();
        assert!(m.contains("CNI_NETNS") && m.contains("CNI_IFNAME") && m.contains("CNI_PATH"));
        assert!(!m.contains("CNI_CONTAINERID"));
    }

    #[test]
    fn del_with_empty_netns_is_fine() {
        let env = Env::load(
            Command::Del,
            env_of(&[
                ("CNI_CONTAINERID", "abc"),
                ("CNI_NETNS", ""),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/a:/b"),
            ]),
        )
        .unwrap();
        assert!(env.netns.is_none());
        assert_eq!(env.path, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
    }

    #[test]
    fn status_and_version_need_nothing() {
        assert!(Env::load(Command::Status, env_of(&[])).is_ok());
        assert!(Env::load(Command::Version, env_of(&[])).is_ok());
        assert_eq!(Env::load(Command::Gc, env_of(&[])).unwrap_err().code(), 4);
    }

    #[test]
    fn container_id_and_ifname_rules() {
        assert!(validate_container_id("a1_b.c-d").is_ok());
        assert!(validate_container_id("-x").is_err());
        assert!(validate_container_id("a/b").is_err());
        assert!(validate_container_id("").is_err());
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("0123456789abcdef").is_err());
        assert!(validate_ifname("..").is_err());
        assert!(validate_ifname("a:b").is_err());
        assert!(validate_ifname("a b").is_err());
    }

    #[test]
    fn cni_args() {
        let a = CniArgs::parse("K8S_POD_NAME=a;IgnoreUnknown=1;FOO=b").unwrap();
        assert_eq!(a.pod_name(), Some("a"));
        assert!(a.check_known(&[]).is_ok());
        let b = CniArgs::parse("FOO=b").unwrap();
        let e = b.check_known(&["IP"]).unwrap_err();
        assert_eq!(e.code(), 4);
        assert!(e.to_string().contains("FOO=b"));
        assert!(CniArgs::parse("A=b=c").is_err());
        assert!(CniArgs::parse("novalue").is_err());
        assert!(CniArgs::parse("").unwrap().pairs.is_empty());
        assert!(CniArgs::parse("IgnoreUnknown=true;X=1")
            .unwrap()
            .check_known(&[])
            .is_ok());
    }
}
