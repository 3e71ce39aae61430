//! `cni6 attach | check | detach`: a cnitool over the runtime. Unlike
//! cnitool the container id is given, not derived from the netns path, so
//! a later `detach` names the same attachment the runtime cache knows.
//!
//! `check` and `detach` take what is not given on the command line (netns,
//! CNI_ARGS, capability args) from the attachment's cache record, because
//! plugins expect the same values on DEL as on ADD (conformance.md #17) and an
//! operator cleaning up rarely remembers them. A failed `attach` is rolled
//! back with DEL through the whole chain, as CRI runtimes do.

use crate::error::{CliError, Result};
use crate::options::{NetworkOpts, Output};
use crate::render;
use clap::Args;
use cni_common::env::CniArgs;
use cni_common::runtime::{CacheRecord, ConfList, Runtime, RuntimeConf};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// Where `ip netns add NAME` puts its namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// Which attachment: shared by attach, check and detach.
#[derive(Debug, Clone, Args)]
pub struct AttachmentOpts {
    #[command(flatten)]
    pub net: NetworkOpts,

    /// Container ID naming the attachment (alphanumeric first, then
    /// [A-Za-z0-9_.-]); use the same one to check and detach.
    #[arg(long = "id", value_name = "ID")]
    pub container_id: String,

    /// Interface name inside the namespace.
    #[arg(long, value_name = "IF", default_value = "eth0")]
    pub ifname: String,

    /// CNI_ARGS for the plugins, e.g. "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web".
    #[arg(long, value_name = "K=V;K=V")]
    pub args: Option<String>,

    /// Capability arguments as a JSON object, e.g. '{"ips":["fd00::42/96"]}';
    /// each plugin receives, as runtimeConfig, those it declares in "capabilities".
    #[arg(long, value_name = "JSON")]
    pub cap_args: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct AttachArgs {
    #[command(flatten)]
    pub common: AttachmentOpts,

    /// The network namespace: a path (/proc/PID/ns/net, /var/run/netns/NAME)
    /// or a name made with `ip netns add NAME`.
    #[arg(long, value_name = "PATH|NAME")]
    pub netns: String,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub common: AttachmentOpts,

    /// The network namespace (path or `ip netns` name) [default: the one
    /// recorded when the attachment was made].
    #[arg(long, value_name = "PATH|NAME")]
    pub netns: Option<String>,
}

pub type DetachArgs = CheckArgs;

/// `--netns` value to a path: a bare name is an `ip netns` name.
pub fn resolve_netns(s: &str) -> PathBuf {
    if s.contains('/') {
        PathBuf::from(s)
    } else {
        Path::new(NETNS_DIR).join(s)
    }
}

/// `K=V;K=V` in order; the same rules as plugins apply (conformance.md #7).
pub fn parse_cni_args(s: &str) -> Result<Vec<(String, String)>> {
    CniArgs::parse(s).map_err(|e| CliError::Usage(format!("--args: {e}")))?;
    Ok(s.split(';')
        .filter(|i| !i.is_empty())
        .filter_map(|i| i.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

pub fn parse_cap_args(s: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(CliError::Usage(format!(
            "--cap-args: expected a JSON object like '{{\"portMappings\":[…]}}', got {other}"
        ))),
        Err(e) => Err(CliError::Usage(format!(
            "--cap-args: not valid JSON ({e}): {s}"
        ))),
    }
}

impl AttachmentOpts {
    /// The attachment named on the command line; values not given come
    /// from `cached` when there is one.
    fn attachment(
        &self,
        netns: Option<PathBuf>,
        cached: Option<&CacheRecord>,
    ) -> Result<RuntimeConf> {
        let from_cache = cached.map(CacheRecord::runtime_conf);
        let args = match &self.args {
            Some(s) => parse_cni_args(s)?,
            None => from_cache
                .as_ref()
                .map(|a| a.args.clone())
                .unwrap_or_default(),
        };
        let capability_args = match &self.cap_args {
            Some(s) => parse_cap_args(s)?,
            None => from_cache
                .as_ref()
                .map(|a| a.capability_args.clone())
                .unwrap_or_default(),
        };
        Ok(RuntimeConf {
            container_id: self.container_id.clone(),
            netns: netns.or_else(|| from_cache.and_then(|a| a.netns)),
            ifname: self.ifname.clone(),
            args,
            capability_args,
        })
    }

    fn describe(&self, list: &ConfList) -> String {
        format!(
            "container {} interface {} on network {}",
            self.container_id, self.ifname, list.name
        )
    }
}

/// The cache record of this attachment, if the runtime has one.
fn cached_record(rt: &Runtime, list: &ConfList, opts: &AttachmentOpts) -> Option<CacheRecord> {
    rt.cached_record(&list.name, &opts.container_id, &opts.ifname)
}

pub fn attach(a: &AttachArgs, o: &mut Output) -> Result<()> {
    let (list, rt) = a.common.net.load()?;
    let netns = resolve_netns(&a.netns);
    if !netns.exists() {
        return Err(CliError::Usage(format!(
            "--netns {}: {} does not exist (create a namespace with `ip netns add NAME`, or give /proc/PID/ns/net of a running container)",
            a.netns,
            netns.display()
        )));
    }
    let att = a.common.attachment(Some(netns), None)?;
    let result = match rt.add(&list, &att) {
        Ok(r) => r,
        // An attachment the runtime refused before any plugin ran has
        // nothing to roll back.
        Err(e)
            if cni_common::env::validate_container_id(&att.container_id).is_err()
                || cni_common::env::validate_ifname(&att.ifname).is_err() =>
        {
            return Err(CliError::cni(
                format!("attach {}", a.common.describe(&list)),
                e,
            ))
        }
        Err(e) => {
            // As CRI runtimes do after a failed ADD: DEL the whole chain so
            // what the plugins before the failing one made (veth, addresses,
            // IPAM record, rules) does not outlive the attempt.
            let rollback = match rt.del(&list, &att) {
                Ok(()) => "rolled back with DEL".to_string(),
                Err(d) => format!(
                    "the rollback DEL failed too ({d}): run `cni6 detach --conflist {} --id {} --ifname {}`",
                    a.common.net.conflist.display(),
                    a.common.container_id,
                    a.common.ifname
                ),
            };
            return Err(CliError::cni(
                format!("attach {} ({rollback})", a.common.describe(&list)),
                e,
            ));
        }
    };
    if o.json {
        o.json(&result)
    } else {
        o.line(render::attach_summary(&list, &att, &result))
    }
}

pub fn check(a: &CheckArgs, o: &mut Output) -> Result<()> {
    let (list, rt) = a.common.net.load()?;
    let cached = cached_record(&rt, &list, &a.common);
    let att = a
        .common
        .attachment(a.netns.as_deref().map(resolve_netns), cached.as_ref())?;
    if att.netns.is_none() && !list.disable_check {
        return Err(CliError::Usage(format!(
            "check {}: no --netns given and no cached attachment to take it from (was it attached with --cache-dir {}?)",
            a.common.describe(&list),
            a.common.net.cache_dir.display()
        )));
    }
    rt.check(&list, &att)
        .map_err(|e| CliError::cni(format!("check {}", a.common.describe(&list)), e))?;
    if o.json {
        return Ok(());
    }
    if list.disable_check {
        o.line(format!(
            "not checked: network {} sets disableCheck, so no plugin was asked",
            list.name
        ))
    } else {
        o.line(format!(
            "ok: {} is as it was attached",
            a.common.describe(&list)
        ))
    }
}

pub fn detach(a: &DetachArgs, o: &mut Output) -> Result<()> {
    let (list, rt) = a.common.net.load()?;
    let cached = cached_record(&rt, &list, &a.common);
    let att = a
        .common
        .attachment(a.netns.as_deref().map(resolve_netns), cached.as_ref())?;
    // A namespace that is gone is normal here (conformance.md #27): the plugins
    // still release host-side state and addresses.
    if let Some(ns) = att.netns.as_ref().filter(|p| !p.exists()) {
        eprintln!(
            "cni6: note: netns {} no longer exists; plugins release what they hold outside it",
            ns.display()
        );
    }
    rt.del(&list, &att)
        .map_err(|e| CliError::cni(format!("detach {}", a.common.describe(&list)), e))?;
    if o.json {
        return Ok(());
    }
    o.line(format!("detached {}", a.common.describe(&list)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_names_and_paths() {
        assert_eq!(resolve_netns("pod1"), PathBuf::from("/var/run/netns/pod1"));
        assert_eq!(
            resolve_netns("/proc/1/ns/net"),
            PathBuf::from("/proc/1/ns/net")
        );
    }

    #[test]
    fn cni_args_keep_order_and_reject_garbage() {
        assert_eq!(
            parse_cni_args("K8S_POD_NAME=a;IgnoreUnknown=1").unwrap(),
            vec![
                ("K8S_POD_NAME".to_string(), "a".to_string()),
                ("IgnoreUnknown".to_string(), "1".to_string())
            ]
        );
        assert!(parse_cni_args("").unwrap().is_empty());
        let e = parse_cni_args("A=b=c").unwrap_err();
        assert!(e.to_string().contains("--args"), "{e}");
        assert!(parse_cni_args("novalue").is_err());
    }

    #[test]
    fn cap_args_must_be_an_object() {
        assert_eq!(parse_cap_args(r#"{"ips":["fd00::1"]}"#).unwrap().len(), 1);
        assert!(parse_cap_args("[1]").is_err());
        assert!(parse_cap_args("{").is_err());
    }
}
