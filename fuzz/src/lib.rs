//! The bodies of the fuzz targets, one `pub fn <target>(data: &[u8])` per
//! target in `fuzz_targets/`. Kept apart from libFuzzer so the normal test
//! suite runs the very same functions over the regression inputs
//! (`testdata/fuzz-regressions/<target>/`) and the seeds
//! (`conformance/tests/faults_fuzz_regressions.rs` includes this file).
//! Every function must not panic on any input; the assertions inside are
//! the properties each parser promises.

use cni_common::attachment::Attachment;
use cni_common::config::NetConf;
use cni_common::dispatch::{handle, Plugin, Request};
use cni_common::env::{CniArgs, K8S_ARGS};
use cni_common::result::{convert, CniResult};
use cni_common::version;
use ipam_prefix::plan::{NodePrefix, Slot};
use ipam_prefix::store::{attachment_of_record_name, record_name, Record, Store};
use std::net::Ipv6Addr;

/// A target's body.
pub type Target = fn(&[u8]);

/// Every target by name, for the regression runner.
pub const TARGETS: &[(&str, Target)] = &[
    ("config_ipam", config_ipam),
    ("config_bridge6", config_bridge6),
    ("config_firewall6", config_firewall6),
    ("result_roundtrip", result_roundtrip),
    ("cni_args", cni_args),
    ("dispatch", dispatch),
    ("store_record", store_record),
    ("from_interface", from_interface),
    ("conflist", conflist),
    ("rules_line", rules_line),
];

/// ipam-prefix's `ipam` keys (and requested addresses) on arbitrary stdin.
pub fn config_ipam(data: &[u8]) {
    if let Ok(conf) = NetConf::parse(data) {
        let _ = ipam_prefix::config::IpamConfig::parse(&conf);
        let _ = ipam_prefix::config::data_dir(&conf);
        let _ = ipam_prefix::config::requested_ips(&conf, &CniArgs::default());
    }
}

/// bridge6's keys (and a requested MAC) on arbitrary stdin.
pub fn config_bridge6(data: &[u8]) {
    if let Ok(conf) = NetConf::parse(data) {
        let _ = bridge6::config::Config::parse(&conf);
        let _ = bridge6::config::requested_mac(&conf, &CniArgs::default());
    }
}

/// firewall6's keys on arbitrary stdin.
pub fn config_firewall6(data: &[u8]) {
    if let Ok(conf) = NetConf::parse(data) {
        let _ = firewall6::config::FirewallConf::from_raw(&conf.raw);
    }
}

/// prevResult / results of every version: parse never panics; what we
/// emit in a version parses back to the same thing in that version
/// (to_json(parse(to_json(r, v)), v) == to_json(r, v)); at the latest
/// version nothing is lost (parse(to_json(r)) == r). Conversion of the raw
/// value (`convert`) must not panic either.
pub fn result_roundtrip(data: &[u8]) {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    for &ver in version::ALL {
        let _ = convert(&v, ver);
    }
    let Ok(r) = CniResult::parse(&v) else { return };
    for &ver in version::ALL {
        let j = r.to_json(ver);
        let back = CniResult::parse(&j)
            .unwrap_or_else(|e| panic!("our own {ver} output does not parse: {e}\n{j}"));
        assert_eq!(back.to_json(ver), j, "{ver} round trip changed the result");
        if ver == version::LATEST {
            assert_eq!(back, r, "latest-version round trip lost something");
        }
    }
}

/// CNI_ARGS: parse never panics; what it accepts can be checked for known
/// keys and read back.
pub fn cni_args(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = CniArgs::parse(s) {
        let _ = a.check_known(K8S_ARGS);
        let _ = a.ignore_unknown();
        let _ = (a.pod_name(), a.pod_namespace());
        for (k, v) in &a.pairs {
            assert_eq!(a.get(k), Some(v.as_str()));
        }
    }
}

struct Noop;
impl Plugin for Noop {
    type Error = cni_common::Error;
    fn about(&self) -> &'static str {
        "no-op fuzz plugin"
    }
    fn add(&self, req: &Request) -> cni_common::Result<CniResult> {
        match &req.config.prev_result {
            Some(p) => CniResult::parse(p),
            None => Ok(CniResult::default()),
        }
    }
    fn del(&self, _: &Request) -> cni_common::Result<()> {
        Ok(())
    }
    fn check(&self, _: &Request) -> cni_common::Result<()> {
        Ok(())
    }
    fn gc(&self, req: &Request) -> cni_common::Result<()> {
        req.valid_attachments().map(|_| ())
    }
    fn status(&self, _: &Request) -> cni_common::Result<()> {
        Ok(())
    }
}

const VARS: [&str; 6] = [
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
    "CNI_COMMAND",
];

/// The whole dispatcher path with a no-op plugin: arbitrary command,
/// environment and stdin. Input: up to 6 NUL-separated env values
/// (CNI_COMMAND last; empty = unset, "\x01" = set but empty), a NUL, then
/// stdin. Whatever comes in, the outcome is success (exit 0) or exactly
/// one error object with a code and a non-empty msg.
pub fn dispatch(data: &[u8]) {
    let mut parts = data.splitn(VARS.len() + 1, |b| *b == 0);
    let mut env = std::collections::HashMap::new();
    for var in VARS {
        match parts.next() {
            Some(b"\x01") => {
                env.insert(var, String::new());
            }
            Some(v) if !v.is_empty() => {
                env.insert(var, String::from_utf8_lossy(v).into_owned());
            }
            _ => {}
        }
    }
    let stdin = parts.next().unwrap_or(b"");
    let cmd = env.get("CNI_COMMAND").cloned();
    let o = handle(&Noop, cmd.as_deref(), stdin, |k| env.get(k).cloned());
    if o.exit_code != 0 {
        let v = o.stdout.expect("an error prints a JSON object");
        assert!(v["code"].as_u64().is_some(), "{v}");
        assert!(!v["msg"].as_str().unwrap_or("").is_empty(), "{v}");
    }
}

/// ipam-prefix's on-disk store: a record file, a slot link's file name and
/// target, the cursor. Read through the store's own reader in a temp store
/// (so a record naming another key, a torn file or a future version goes
/// through the same path as on a node).
pub fn store_record(data: &[u8]) {
    if let Ok(r) = serde_json::from_slice::<Record>(data) {
        let j = serde_json::to_vec(&r).unwrap();
        assert_eq!(serde_json::from_slice::<Record>(&j).unwrap(), r);
    }
    let text = String::from_utf8_lossy(data);
    let _ = Slot::parse_hex(&text);
    let _ = Slot::from_file_name(&text);
    if let Some(k) = attachment_of_record_name("net1", &text) {
        assert!(!record_name(&k).contains('/'), "{k:?}");
    }
    thread_local! {
        static DIR: std::path::PathBuf = {
            let d = std::env::temp_dir().join(format!(
                "cni6-fuzz-store-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::create_dir_all(&d).unwrap();
            d
        };
    }
    DIR.with(|dir| {
        let st = Store::new(dir, "net1", "boot").unwrap();
        let locked = st.open().unwrap();
        let key = Attachment::new("net1", "c1", "eth0").unwrap();
        std::fs::write(st.root().join("attachments").join(record_name(&key)), data).unwrap();
        let _ = locked.read_record(&key);
        let _ = locked.records();
        let _ = locked.verify(&key, &[]);
    });
}

/// fromInterface: the node prefix derived from an interface address and
/// prefix length for a node prefix length L. Input: 16 address bytes, the
/// interface prefix length, L. A success is the first /L of the
/// interface's prefix (docs/design.md: a shorter interface prefix is cut to its
/// first /L), so it starts where addr/plen starts.
pub fn from_interface(data: &[u8]) {
    if data.len() < 18 {
        return;
    }
    let addr = Ipv6Addr::from(<[u8; 16]>::try_from(&data[..16]).unwrap());
    let (plen, len) = (data[16], data[17]);
    if let Ok(p) = NodePrefix::from_interface(addr, plen, len) {
        assert_eq!(p.prefix_len(), len);
        let plen_net = ipnet::Ipv6Net::new(addr, plen).unwrap().trunc();
        assert!(
            plen_net.contains(&p.net()),
            "{p:?} is not inside {plen_net}"
        );
        assert_eq!(
            p.net().network(),
            plen_net.network(),
            "{p:?} is not the first /{len}"
        );
    }
}

/// The runtime's conflist parser (cni6, the demo and the tests read
/// conflists written by people).
pub fn conflist(data: &[u8]) {
    if let Ok(l) = cni_common::runtime::ConfList::parse(data) {
        let _ = l.plugin_types();
        let _ = (l.has_check(), l.has_gc_status());
    }
}

/// firewall6 reads `ip6tables-save`/`-S` output back (DEL and GC find rules
/// by their comments): lines of it.
pub fn rules_line(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    for line in s.lines() {
        let _ = firewall6::rules::parse_rule(line);
    }
}
