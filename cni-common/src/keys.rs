//! Near-miss config keys: a key a plugin does not know but that is within a
//! small edit distance of one it does is a typo (`"brigde"`, `"subnetID"`,
//! `"clusterPrefix"`) and refused with code 7 naming the key probably
//! meant; every other unknown key stays accepted (conformance.md #14: runtimes
//! inject keys, and newer configs must run on older binaries).
//!
//! Each plugin keeps its list of known keys next to its config type and
//! calls [`refuse_near_miss`] from its parser; `cni6 lint` calls
//! [`unknown_keys`] with the same list.

use crate::Error;
use serde_json::{Map, Value};

/// Keys the spec, the runtimes and cni-common own in every plugin object.
/// They are never reported as unknown nor as typos, and typos are never
/// guessed towards them: a runtime writes them, a person rarely does.
pub const RUNTIME_KEYS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "type",
    "runtimeConfig",
    "runtime_config",
    "args",
    "prevResult",
    "capabilities",
    "ipam",
    "dns",
    "plugins",
    "disableCheck",
    "disableGC",
    "logFile",
];

/// Keys shorter than this are never called typos, nor typo targets
/// (`"mac"`, `"gw"`, `"note"` are one edit away from many things: `"node"`
/// would take a `"note"` comment for a typo); case-only misses still count.
const MIN_TYPO_LEN: usize = 5;

/// From this length on, two edits still count as a typo
/// (`"clusterPrefix"` for `"clusterPrefixes"`).
const TWO_EDITS_FROM: usize = 8;

/// The known key `key` probably stands for, if it is a near miss of one of
/// `known`: same letters in another case, or at most 1 edit (insert,
/// delete, substitute, swap of neighbours) away, 2 for keys of 8 or more
/// characters; both keys at least 5 characters long. Exact matches, runtime keys and namespaced keys
/// (`cni.dev/...`, anything with '/' or '.') are never near misses.
pub fn near_miss(key: &str, known: &[&'static str]) -> Option<&'static str> {
    if known.contains(&key) || is_runtime_key(key) {
        return None;
    }
    let lower = key.to_ascii_lowercase();
    if let Some(k) = known.iter().find(|k| k.to_ascii_lowercase() == lower) {
        return Some(k);
    }
    if key.len() < MIN_TYPO_LEN {
        return None;
    }
    known
        .iter()
        .filter(|k| k.len() >= MIN_TYPO_LEN)
        .map(|k| (k, strsim::osa_distance(&lower, &k.to_ascii_lowercase())))
        .filter(|&(k, d)| {
            let allowed = if key.len().min(k.len()) >= TWO_EDITS_FROM {
                2
            } else {
                1
            };
            d <= allowed
        })
        .min_by_key(|&(_, d)| d)
        .map(|(k, _)| *k)
}

fn is_runtime_key(key: &str) -> bool {
    RUNTIME_KEYS.contains(&key) || key.contains('/') || key.contains('.')
}

/// Code 7 for the first near-miss key of `obj`, named with `path` (e.g.
/// `"ipam."`, `""` for the plugin object itself).
pub fn refuse_near_miss(
    obj: &Map<String, Value>,
    path: &str,
    known: &[&'static str],
) -> Result<(), Error> {
    for key in obj.keys() {
        if let Some(meant) = near_miss(key, known) {
            return Err(Error::config(
                format!("{path}{key}"),
                &obj[key],
                format!(
                    "no key {key:?}: did you mean {meant:?}? (a key this close to a known one is taken for a typo; rename it to {path}{meant})"
                ),
            ));
        }
    }
    Ok(())
}

/// Keys of `obj` that are neither known, nor runtime keys, nor near misses:
/// accepted and ignored by the plugin, listed by `cni6 lint`.
pub fn unknown_keys(obj: &Map<String, Value>, known: &[&'static str]) -> Vec<String> {
    obj.keys()
        .filter(|k| !known.contains(&k.as_str()) && !is_runtime_key(k))
        .filter(|k| near_miss(k, known).is_none())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BRIDGE: &[&str] = &["bridge", "mtu", "hairpinMode", "defaultRoute", "ipMasq"];
    const IPAM: &[&str] = &[
        "type", "dataDir", "subnetId", "prefixes", "routes", "dns", "node", "scope",
    ];
    const FW: &[&str] = &[
        "clusterPrefixes",
        "clusterInterfaces",
        "ingress",
        "allowPorts",
        "adminChain",
    ];

    #[test]
    fn typos_from_the_field_are_caught() {
        assert_eq!(near_miss("brigde", BRIDGE), Some("bridge"));
        assert_eq!(near_miss("subnetID", IPAM), Some("subnetId"));
        assert_eq!(near_miss("subnetid", IPAM), Some("subnetId"));
        assert_eq!(near_miss("clusterPrefix", FW), Some("clusterPrefixes"));
        assert_eq!(near_miss("clusterInterface", FW), Some("clusterInterfaces"));
        assert_eq!(near_miss("hairPinMode", BRIDGE), Some("hairpinMode"));
        assert_eq!(near_miss("MTU", BRIDGE), Some("mtu"));
        assert_eq!(near_miss("datadir", IPAM), Some("dataDir"));
        assert_eq!(near_miss("prefixs", IPAM), Some("prefixes"));
        assert_eq!(near_miss("alowPorts", FW), Some("allowPorts"));
        assert_eq!(near_miss("ingres", FW), Some("ingress"));
    }

    #[test]
    fn injected_namespaced_short_and_far_keys_pass() {
        for k in RUNTIME_KEYS {
            assert_eq!(near_miss(k, BRIDGE), None, "{k}");
            assert_eq!(near_miss(k, IPAM), None, "{k}");
            assert_eq!(near_miss(k, FW), None, "{k}");
        }
        for k in [
            "cni.dev/attachments",
            "io.kubernetes.cri/x",
            "mac",
            "ips",
            "gw",
            "mtus",
            "isGateway",
            "isDefaultGateway",
            "forceAddress",
            "promiscMode",
            "vlan",
            "ipMasqBackend",
            "ingressPolicy",
            "backend",
            "iptablesAdminChainName",
            "ranges",
            "subnet",
            "prefix",
            "resolvConf",
            "gateway",
            "kubeconfig",
            "portMappings",
            "bandwidth",
            "note",
            "nodes",
            "comment",
        ] {
            assert_eq!(near_miss(k, BRIDGE), None, "{k} vs bridge6");
            assert_eq!(near_miss(k, IPAM), None, "{k} vs ipam");
            assert_eq!(near_miss(k, FW), None, "{k} vs firewall6");
        }
        // Exact keys are not misses of anything.
        for k in BRIDGE {
            assert_eq!(near_miss(k, BRIDGE), None);
        }
    }

    #[test]
    fn refusal_is_code_7_naming_both_keys() {
        let obj = json!({"name": "n", "brigde": "cluster0", "foo": 1});
        let e = refuse_near_miss(obj.as_object().unwrap(), "", BRIDGE).unwrap_err();
        assert_eq!(e.code(), 7);
        let msg = e.to_string();
        assert!(
            msg.contains("brigde") && msg.contains("\"bridge\""),
            "{msg}"
        );
        let e = refuse_near_miss(json!({"subnetID": 2}).as_object().unwrap(), "ipam.", IPAM)
            .unwrap_err();
        assert!(e.to_string().contains("ipam.subnetID"), "{e}");
        assert!(refuse_near_miss(obj_without_typo().as_object().unwrap(), "", BRIDGE).is_ok());
    }

    fn obj_without_typo() -> Value {
        json!({"name": "n", "type": "bridge6", "bridge": "b", "foo": 1, "cni.dev/x": 2})
    }

    #[test]
    fn unknown_keys_are_listed_without_runtime_or_typo_keys() {
        let obj = json!({"name": "n", "bridge": "b", "foo": 1, "brigde": 2, "runtimeConfig": {}, "cni.dev/x": 1});
        assert_eq!(unknown_keys(obj.as_object().unwrap(), BRIDGE), vec!["foo"]);
    }
}
