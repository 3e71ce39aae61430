//! The CNI verbs of ipam-prefix on top of config, plan, iface and store.
//!
//! ADD resolves the plan (config + host interfaces), then reserves under the
//! lock; DEL and GC read nothing but `ipam.dataDir` so they still free state
//! after the config changed or an interface vanished (conformance.md #17, 27).

use crate::allocator::{Allocation, Requested};
use crate::config::{self, IpamConfig, PrefixSource, RequestedIp};
use crate::error::{IpamError, Result};
use crate::iface;
use crate::plan::{AddressPlan, NodePrefix, PlanError, Slot};
use crate::store::{current_boot_id, record_name, Store};
use cni_common::attachment::Attachment;
use cni_common::dispatch::{Plugin, Request};
use cni_common::result::{CniResult, IpConfig};
use ipnet::IpNet;
use std::collections::HashSet;
use std::net::IpAddr;

/// The plugin; `main` is `cni_common::dispatch::run(&IpamPrefix)`.
pub struct IpamPrefix;

impl Plugin for IpamPrefix {
    type Error = IpamError;

    fn about(&self) -> &'static str {
        concat!(
            "ipam-prefix ",
            env!("CARGO_PKG_VERSION"),
            ": cni6 IPAM, one pod slot per attachment, one address per node prefix"
        )
    }

    /// `IP` is ours (conformance.md #74); `MAC` is bridge6's, which hands its
    /// CNI_ARGS to us unchanged when it delegates (conformance.md #77).
    fn known_args(&self) -> &'static [&'static str] {
        &["IP", "MAC"]
    }

    fn add(&self, req: &Request) -> Result<CniResult> {
        add(req)
    }

    fn del(&self, req: &Request) -> Result<()> {
        del(req)
    }

    fn check(&self, req: &Request) -> Result<()> {
        check(req)
    }

    fn gc(&self, req: &Request) -> Result<()> {
        gc(req)
    }

    fn status(&self, req: &Request) -> Result<()> {
        status(req)
    }
}

/// The plan from resolved node prefixes; plan errors become config errors
/// naming the entry.
pub fn make_plan(cfg: &IpamConfig, nodes: &[NodePrefix]) -> Result<AddressPlan> {
    let key = |i: usize| match &cfg.prefixes[i] {
        PrefixSource::Node(_) => format!("ipam.prefixes[{i}].node"),
        PrefixSource::FromInterface { .. } => format!("ipam.prefixes[{i}].fromInterface"),
    };
    AddressPlan::new(nodes, cfg.subnet_id).map_err(|e| match e {
        PlanError::Empty => IpamError::config("ipam.prefixes", "[]", "a non-empty array"),
        PlanError::LengthMismatch {
            index,
            len,
            expected,
        } => IpamError::config(
            key(index),
            nodes[index],
            format!("a /{expected} node prefix like the others (got /{len})"),
        ),
        PlanError::Reserved { index } => {
            IpamError::config(key(index), nodes[index], config::RESERVED_EXPECTED)
        }
        PlanError::Overlap { index, other } => IpamError::config(
            key(index),
            nodes[index],
            format!(
                "a node prefix whose pod range does not overlap that of ipam.prefixes[{other}] ({})",
                nodes[other].pod_range(cfg.subnet_id)
            ),
        ),
    })
}

/// The one slot the requested addresses name (all must agree).
pub fn requested_slot(plan: &AddressPlan, reqs: &[RequestedIp]) -> Result<Option<Requested>> {
    let mut out: Option<Requested> = None;
    let range_len = plan.ranges()[0].prefix_len();
    for r in reqs {
        let bad = |expected: String| IpamError::config(&r.key, &r.text, expected);
        let slot = plan.slot_of(r.addr).ok_or_else(|| {
            bad(format!(
                "an address in one of the pod ranges ({})",
                plan.describe()
            ))
        })?;
        if let Some(l) = r.prefix_len.filter(|l| *l != range_len && *l != 128) {
            return Err(bad(format!(
                "the pod range's prefix length /{range_len} (or /128), not /{l}"
            )));
        }
        if !plan.space().contains(slot) {
            return Err(bad(format!(
                "a pod address (interface id {:#x}..={}); {slot} is reserved (0x0-0xf, 0x1 is the gateway)",
                Slot::FIRST_POD.0,
                plan.space().last()
            )));
        }
        match &out {
            Some(prev) if prev.slot != slot => {
                return Err(bad(format!(
                    "the same interface id as {}={} (one slot per pod: {} vs {slot})",
                    prev.key, prev.text, prev.slot
                )))
            }
            Some(_) => {}
            None => {
                out = Some(Requested {
                    slot,
                    key: r.key.clone(),
                    text: r.text.clone(),
                })
            }
        }
    }
    Ok(out)
}

/// The abbreviated IPAM result (conformance.md #61): no interfaces, no
/// `ips[].interface`.
pub fn result(plan: &AddressPlan, slot: Slot, cfg: &IpamConfig) -> CniResult {
    CniResult {
        interfaces: vec![],
        ips: plan
            .ranges()
            .iter()
            .map(|r| IpConfig {
                address: IpNet::V6(r.address_net(slot)),
                gateway: Some(IpAddr::V6(r.gateway())),
                interface: None,
            })
            .collect(),
        routes: cfg.routes.clone(),
        dns: cfg.dns.clone().unwrap_or_default(),
    }
}

/// The request's attachment, validated again here (the dispatcher already
/// did): it names a file of the store.
fn key_of(req: &Request) -> Result<Attachment> {
    let a = req.attachment();
    a.validate()?;
    Ok(a)
}

pub fn add(req: &Request) -> Result<CniResult> {
    let cfg = IpamConfig::parse(&req.config)?;
    let wanted = config::requested_ips(&req.config, &req.env.args)?;
    let key = key_of(req)?;
    let nodes = iface::node_prefixes(&cfg)?;
    let plan = make_plan(&cfg, &nodes)?;
    let requested = requested_slot(&plan, &wanted)?;
    let store = Store::new(&cfg.data_dir, &req.config.name, &current_boot_id()?)?;
    let addresses =
        |s: Slot| -> Vec<String> { plan.addresses(s).iter().map(ToString::to_string).collect() };
    let ranges = plan.describe();
    let rec = store.open()?.allocate(&Allocation {
        key: &key,
        space: plan.space(),
        requested,
        addresses: &addresses,
        ranges: &ranges,
        pod_namespace: req.env.args.pod_namespace(),
        pod_name: req.env.args.pod_name(),
    })?;
    Ok(result(&plan, rec.slot, &cfg))
}

pub fn del(req: &Request) -> Result<()> {
    let data_dir = config::data_dir(&req.config)?;
    let key = key_of(req)?;
    let store = Store::new(&data_dir, &req.config.name, &current_boot_id()?)?;
    if let Some(locked) = store.open_existing()? {
        locked.release(&key)?;
    }
    Ok(())
}

pub fn check(req: &Request) -> Result<()> {
    let cfg = IpamConfig::parse(&req.config)?;
    let prev = req.config.prev_result.as_ref().ok_or_else(|| {
        IpamError::config(
            "prevResult",
            "(absent)",
            "the result of the ADD (CHECK compares the allocation with it)",
        )
    })?;
    let prev = CniResult::parse(prev)?;
    let prev_ips: Vec<String> = prev.ips.iter().map(|ip| ip.address.to_string()).collect();
    let key = key_of(req)?;
    let store = Store::new(&cfg.data_dir, &req.config.name, &current_boot_id()?)?;
    match store.open_existing()? {
        Some(locked) => locked.verify(&key, &prev_ips).map(|_| ()),
        None => Err(IpamError::Check(format!(
            "no address is allocated to {} in network {}",
            record_name(&key),
            req.config.name
        ))),
    }
}

pub fn gc(req: &Request) -> Result<()> {
    let data_dir = config::data_dir(&req.config)?;
    let Some(list) = req.valid_attachments()? else {
        // conformance.md #47: no list is "no information", never "all stale".
        eprintln!(
            "ipam-prefix: GC of network {} without cni.dev/valid-attachments: nothing collected",
            req.config.name
        );
        return Ok(());
    };
    // An entry that is not a valid key cannot name one of our records.
    let valid: HashSet<Attachment> = list.into_iter().filter(|a| a.validate().is_ok()).collect();
    let store = Store::new(&data_dir, &req.config.name, &current_boot_id()?)?;
    if let Some(locked) = store.open_existing()? {
        let rep = locked.gc(&valid)?;
        if !rep.released.is_empty() || rep.links_removed > 0 {
            eprintln!(
                "ipam-prefix: GC of network {}: released {} ({}), removed {} stale slot link(s)",
                req.config.name,
                rep.released.len(),
                rep.released.join(", "),
                rep.links_removed
            );
        }
    }
    Ok(())
}

pub fn status(req: &Request) -> Result<()> {
    let cfg = IpamConfig::parse(&req.config)?;
    let nodes = iface::node_prefixes(&cfg).map_err(|e| match e {
        IpamError::Resolve {
            key,
            ifname,
            scope,
            reason,
        } => IpamError::Unavailable(format!(
            "{key}={ifname:?}: no {scope} node prefix on this host ({reason})"
        )),
        e @ IpamError::Kernel { .. } => IpamError::Unavailable(e.to_string()),
        other => other,
    })?;
    let plan = make_plan(&cfg, &nodes)?;
    let boot = current_boot_id().map_err(|e| IpamError::Unavailable(e.to_string()))?;
    let store = Store::new(&cfg.data_dir, &req.config.name, &boot)?;
    store.status(plan.space(), &plan.describe())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cni_common::dispatch::{handle, Outcome};
    use serde_json::{json, Value};
    use std::collections::HashMap;

    struct Env {
        dir: tempfile::TempDir,
    }

    impl Env {
        fn new() -> Env {
            Env {
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn conf(&self, version: &str, ipam_extra: Value) -> Value {
            let mut ipam = json!({
                "type": "ipam-prefix",
                "dataDir": self.dir.path(),
                "prefixes": [{"node": "fd8c:1f0a:77e3:0:1::/80"}, {"node": "2001:db8:7:12::/80"}],
                "routes": [{"dst": "::/0"}],
            });
            for (k, v) in ipam_extra.as_object().unwrap() {
                ipam[k] = v.clone();
            }
            json!({"cniVersion": version, "name": "net1", "type": "bridge6", "ipam": ipam})
        }

        fn run(&self, cmd: &str, conf: &Value, cid: &str, args: &str) -> Outcome {
            let m: HashMap<&str, String> = [
                ("CNI_CONTAINERID", cid.to_string()),
                ("CNI_NETNS", "/var/run/netns/x".to_string()),
                ("CNI_IFNAME", "eth0".to_string()),
                ("CNI_PATH", "/opt/cni/bin".to_string()),
                ("CNI_ARGS", args.to_string()),
            ]
            .into_iter()
            .collect();
            handle(&IpamPrefix, Some(cmd), conf.to_string().as_bytes(), |k| {
                m.get(k).cloned()
            })
        }
    }

    #[test]
    fn add_result_shape_every_version() {
        let env = Env::new();
        for (i, v) in ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
            .iter()
            .enumerate()
        {
            let conf = env.conf(v, json!({"dns": {"nameservers": ["fd8c:1f0a:77e3::53"]}}));
            let o = env.run("ADD", &conf, &format!("c{i}"), "");
            assert_eq!(o.exit_code, 0, "{:?}", o.stdout);
            let r = o.stdout.unwrap();
            assert_eq!(r["cniVersion"], *v); // conformance.md #20
            assert!(r.get("interfaces").is_none()); // conformance.md #61
            let ips = r["ips"].as_array().unwrap();
            assert_eq!(ips.len(), 2);
            let k = 0x10 + i;
            assert_eq!(
                ips[0]["address"],
                format!("fd8c:1f0a:77e3:0:1:1:0:{k:x}/96")
            );
            assert_eq!(ips[0]["gateway"], "fd8c:1f0a:77e3:0:1:1:0:1");
            assert_eq!(ips[1]["address"], format!("2001:db8:7:12:0:1:0:{k:x}/96"));
            assert_eq!(ips[1]["gateway"], "2001:db8:7:12:0:1:0:1");
            for ip in ips {
                assert!(ip.get("interface").is_none());
                // conformance.md #59: `version` only before 1.0.0.
                assert_eq!(ip.get("version").is_some(), v.starts_with('0'), "{v}");
            }
            assert_eq!(r["routes"], json!([{"dst": "::/0"}]));
            assert_eq!(r["dns"]["nameservers"][0], "fd8c:1f0a:77e3::53");
        }
    }

    #[test]
    fn add_check_del_cycle() {
        let env = Env::new();
        let conf = env.conf("1.0.0", json!({}));
        let o = env.run(
            "ADD",
            &conf,
            "c1",
            "K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;IgnoreUnknown=1",
        );
        let res = o.stdout.unwrap();
        let rec: Value = serde_json::from_slice(
            &std::fs::read(env.dir.path().join("net1/attachments/c1@eth0")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            (rec["podNamespace"].as_str(), rec["podName"].as_str()),
            (Some("ns"), Some("p"))
        );
        // Idempotent ADD: the same result.
        assert_eq!(env.run("ADD", &conf, "c1", "").stdout.unwrap(), res);
        // CHECK with prevResult passes, without fails 7, with a foreign IP fails.
        let mut with_prev = conf.clone();
        with_prev["prevResult"] = res.clone();
        let o = env.run("CHECK", &with_prev, "c1", "");
        assert_eq!(o.exit_code, 0, "{:?}", o.stdout);
        assert!(o.stdout.is_none());
        assert_eq!(env.run("CHECK", &conf, "c1", "").stdout.unwrap()["code"], 7); // conformance.md #32
        let mut foreign = with_prev.clone();
        foreign["prevResult"]["ips"][0]["address"] = json!("fd8c:1f0a:77e3:0:1:1:0:99/96");
        assert_eq!(
            env.run("CHECK", &foreign, "c1", "").stdout.unwrap()["code"],
            102
        );
        // DEL ×3 and DEL of something never added: all succeed (conformance.md #26).
        for cid in ["c1", "c1", "c1", "never"] {
            let o = env.run("DEL", &conf, cid, "");
            assert_eq!(o.exit_code, 0, "{:?}", o.stdout);
            assert!(o.stdout.is_none());
        }
        assert!(!env.dir.path().join("net1/attachments/c1@eth0").exists());
        assert_eq!(
            env.run("CHECK", &with_prev, "c1", "").stdout.unwrap()["code"],
            102
        ); // conformance.md #34
    }

    #[test]
    fn del_survives_a_changed_or_broken_config() {
        // conformance.md #17: ADD with one range, DEL with another (or garbage).
        let env = Env::new();
        env.run("ADD", &env.conf("1.0.0", json!({})), "c1", "");
        let changed = env.conf(
            "1.0.0",
            json!({"prefixes": [{"fromInterface": "no-such-ifc-xyz"}], "subnetId": "junk"}),
        );
        let o = env.run("DEL", &changed, "c1", "");
        assert_eq!(o.exit_code, 0, "{:?}", o.stdout);
        assert!(std::fs::read_dir(env.dir.path().join("net1/slots"))
            .unwrap()
            .next()
            .is_none());
    }

    #[test]
    fn requested_addresses() {
        let env = Env::new();
        let mut conf = env.conf("1.0.0", json!({}));
        conf["args"] = json!({"cni": {"ips": ["2001:db8:7:12:0:1:0:42/96"]}});
        // conformance.md #16: args wins over CNI_ARGS IP=.
        let o = env.run("ADD", &conf, "a", "IP=fd8c:1f0a:77e3:0:1:1:0:55");
        let r = o.stdout.unwrap();
        assert_eq!(r["ips"][0]["address"], "fd8c:1f0a:77e3:0:1:1:0:42/96");
        assert_eq!(r["ips"][1]["address"], "2001:db8:7:12:0:1:0:42/96");
        // conformance.md #74: CNI_ARGS IP= alone, /128 accepted.
        let plain = env.conf("1.0.0", json!({}));
        let o = env.run(
            "ADD",
            &plain,
            "b",
            "IgnoreUnknown=1;IP=fd8c:1f0a:77e3:0:1:1:0:55/128",
        );
        assert_eq!(
            o.stdout.unwrap()["ips"][0]["address"],
            "fd8c:1f0a:77e3:0:1:1:0:55/96"
        );
        // Taken → 7 naming the owner; nothing leaked (conformance.md #73).
        let o = env.run("ADD", &conf, "c", "");
        let e = o.stdout.unwrap();
        assert_eq!(e["code"], 7);
        assert!(e["msg"].as_str().unwrap().contains("a@eth0"), "{e}");
        assert!(!env.dir.path().join("net1/attachments/c@eth0").exists());
        // Garbage, outside the ranges, reserved slots, mismatched slots → 7.
        for (ips, needle) in [
            (json!(["banana"]), "args.cni.ips[0]"),
            (json!(["fd00::42"]), "pod ranges"),
            (json!(["fd8c:1f0a:77e3:0:1:1:0:1"]), "reserved"),
            (json!(["fd8c:1f0a:77e3:0:1:1:0:70/64"]), "/96"),
            (
                json!(["fd8c:1f0a:77e3:0:1:1:0:70", "2001:db8:7:12:0:1:0:71"]),
                "same interface id",
            ),
        ] {
            let mut c = plain.clone();
            c["args"] = json!({"cni": {"ips": ips}});
            let e = env.run("ADD", &c, "d", "").stdout.unwrap();
            assert_eq!(e["code"], 7, "{e}");
            assert!(e["msg"].as_str().unwrap().contains(needle), "{e}");
        }
        assert!(!env.dir.path().join("net1/attachments/d@eth0").exists());
        // runtimeConfig.ips needs the capability declared.
        let mut c = plain.clone();
        c["runtimeConfig"] = json!({"ips": ["fd8c:1f0a:77e3:0:1:1:0:77"]});
        let r = env.run("ADD", &c, "e", "").stdout.unwrap();
        assert_ne!(r["ips"][0]["address"], "fd8c:1f0a:77e3:0:1:1:0:77/96");
        c["capabilities"] = json!({"ips": true});
        let r = env.run("ADD", &c, "f", "").stdout.unwrap();
        assert_eq!(r["ips"][0]["address"], "fd8c:1f0a:77e3:0:1:1:0:77/96");
        // CNI_ARGS IP is a known key: no IgnoreUnknown needed; others are 4.
        assert_eq!(
            env.run("ADD", &plain, "g", "FOO=1").stdout.unwrap()["code"],
            4
        );
    }

    #[test]
    fn gc_and_status() {
        let env = Env::new();
        let conf = env.conf(
            "1.1.0",
            json!({"prefixes": [{"node": "fd00::aa:bb00:0/104"}]}),
        );
        for c in ["a", "b"] {
            assert_eq!(env.run("ADD", &conf, c, "").exit_code, 0);
        }
        // No list: nothing collected.
        assert_eq!(env.run("GC", &conf, "", "").exit_code, 0);
        assert!(env.dir.path().join("net1/attachments/b@eth0").exists());
        let mut gc = conf.clone();
        gc["cni.dev/valid-attachments"] = json!([{"containerID": "a", "ifname": "eth0"}]);
        let o = env.run("GC", &gc, "", "");
        assert_eq!(o.exit_code, 0, "{:?}", o.stdout);
        assert!(o.stdout.is_none());
        assert!(env.dir.path().join("net1/attachments/a@eth0").exists());
        assert!(!env.dir.path().join("net1/attachments/b@eth0").exists());
        // STATUS: healthy, then full (50), then healthy after a DEL.
        assert_eq!(env.run("STATUS", &conf, "", "").exit_code, 0);
        for i in 1..240 {
            let o = env.run("ADD", &conf, &format!("p{i}"), "");
            assert_eq!(o.exit_code, 0, "{i}: {:?}", o.stdout);
        }
        let e = env.run("ADD", &conf, "full", "").stdout.unwrap();
        assert_eq!(e["code"], 50);
        assert_eq!(env.run("STATUS", &conf, "", "").stdout.unwrap()["code"], 50);
        env.run("DEL", &conf, "p7", "");
        assert_eq!(env.run("STATUS", &conf, "", "").exit_code, 0);
        // STATUS: an unresolvable prefix is 50 too; a bad config stays 7.
        let gone = env.conf(
            "1.1.0",
            json!({"prefixes": [{"fromInterface": "no-such-ifc-xyz"}]}),
        );
        let e = env.run("STATUS", &gone, "", "").stdout.unwrap();
        assert_eq!(e["code"], 50);
        assert!(
            e["msg"].as_str().unwrap().contains("no-such-ifc-xyz"),
            "{e}"
        );
        let bad = env.conf("1.1.0", json!({"subnetId": 100}));
        assert_eq!(env.run("STATUS", &bad, "", "").stdout.unwrap()["code"], 7);
    }

    #[test]
    fn add_fails_7_for_a_missing_interface() {
        let env = Env::new();
        let conf = env.conf(
            "1.0.0",
            json!({"prefixes": [{"node": "fd00::5:0:0:0/80"}, {"fromInterface": "no-such-ifc-xyz", "scope": "ula"}]}),
        );
        let e = env.run("ADD", &conf, "a", "").stdout.unwrap();
        assert_eq!(e["code"], 7);
        let m = e["msg"].as_str().unwrap();
        assert!(
            m.contains("ipam.prefixes[1].fromInterface") && m.contains("ula"),
            "{m}"
        );
        assert!(
            !env.dir.path().join("net1").exists(),
            "nothing created before the plan resolves"
        );
    }
}
