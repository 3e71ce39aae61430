//! bridge6's own configuration keys (docs/design.md "Configuration"): one type
//! owns them, parsed once per call. Unknown keys are ignored (conformance.md
//! #14); a malformed known key is error 7 naming the key, the value and what
//! was expected.

use cni_common::config::{opt_key, NetConf};
use cni_common::env::CniArgs;
use cni_common::result::Dns;
use cni_common::{delegate, env, Error};
use serde_json::Value;

/// Bridge used when the config names none.
pub const DEFAULT_BRIDGE: &str = "cni6br0";
/// MTU when neither the config nor the host's default route gives one.
pub const FALLBACK_MTU: u32 = 1500;
/// IPv6 needs at least 1280 (RFC 8200); 65535 is the kernel's veth limit.
pub const MTU_RANGE: std::ops::RangeInclusive<u32> = 1280..=65535;

/// Every key bridge6 reads from its plugin object, beside the runtime's
/// ([`cni_common::keys::RUNTIME_KEYS`]): a key one typo away from one of
/// these is refused, `cni6 lint` lists the others.
pub const KNOWN_KEYS: &[&str] = &["bridge", "mtu", "hairpinMode", "defaultRoute", "ipMasq"];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Network name (the runtime's `name`), part of the attachment key.
    pub network: String,
    /// `bridge`: the node bridge every pod of this network plugs into.
    pub bridge: String,
    /// `mtu`: `None` means "the MTU of the host's default-route interface,
    /// else 1500", resolved at run time by [`crate::link::default_mtu`].
    pub mtu: Option<u32>,
    /// `hairpinMode` (default true): a pod can reach itself through a
    /// service address that is DNAT-ed back to it.
    pub hairpin: bool,
    /// `defaultRoute` (default true): false = this attachment never installs
    /// `::/0` in the pod (nor reports it), whatever IPAM says.
    pub default_route: bool,
    /// `dns`: overrides the IPAM result's dns in our result.
    pub dns: Option<Dns>,
    /// `ipam.type`, validated as a plain plugin name.
    pub ipam_type: String,
}

impl Config {
    pub fn parse(conf: &NetConf) -> Result<Config, Error> {
        let raw = &conf.raw;
        if let Some(obj) = raw.as_object() {
            cni_common::keys::refuse_near_miss(obj, "", KNOWN_KEYS)?;
        }
        let bridge = match raw.get("bridge") {
            None | Some(Value::Null) => DEFAULT_BRIDGE.to_string(),
            Some(Value::String(s)) => {
                env::validate_ifname(s).map_err(|_| {
                    Error::config(
                        "bridge",
                        format!("{s:?}"),
                        "an interface name: 1 to 15 bytes, not \".\" or \"..\", without '/', ':' or whitespace",
                    )
                })?;
                s.clone()
            }
            Some(v) => {
                return Err(Error::config(
                    "bridge",
                    v,
                    "a string naming the node bridge",
                ))
            }
        };
        let mtu_expected = format!(
            "an integer MTU from {} to {}",
            MTU_RANGE.start(),
            MTU_RANGE.end()
        );
        let mtu = opt_key::<u32>(raw, "", "mtu", &mtu_expected)?;
        if let Some(m) = mtu {
            if !MTU_RANGE.contains(&m) {
                return Err(Error::config("mtu", m, mtu_expected));
            }
        }
        let hairpin = opt_key::<bool>(raw, "", "hairpinMode", "true or false")?.unwrap_or(true);
        let default_route =
            opt_key::<bool>(raw, "", "defaultRoute", "true or false")?.unwrap_or(true);
        // conformance.md #15: a well-known key we cannot honour is rejected, never
        // silently ignored. IPv6 needs no NAT (docs/design.md).
        if opt_key::<bool>(raw, "", "ipMasq", "true or false")? == Some(true) {
            return Err(Error::UnsupportedField {
                key: "ipMasq".into(),
                value: "true".into(),
                expected: "false or absent: bridge6 is IPv6-only and never masquerades".into(),
            });
        }
        let ipam_type = delegate::ipam_type(raw)?;
        Ok(Config {
            network: conf.name.clone(),
            bridge,
            mtu,
            hairpin,
            default_route,
            dns: conf.dns.clone().filter(|d| !d.is_empty()),
            ipam_type,
        })
    }
}

/// The MAC a runtime asks for on the pod interface (CONVENTIONS, as the
/// reference bridge reads it): `CNI_ARGS MAC=`, then `args.cni.mac`, then
/// `runtimeConfig.mac` when the `mac` capability is declared; the later
/// source wins. A malformed or multicast MAC is an error naming its
/// source (conformance.md #73: act on it or fail, never ignore).
pub fn requested_mac(conf: &NetConf, args: &CniArgs) -> Result<Option<[u8; 6]>, Error> {
    let mut mac = None;
    if let Some(s) = args.get("MAC") {
        mac = Some(
            parse_mac(s).ok_or_else(|| Error::env("CNI_ARGS", format!("MAC={s}"), MAC_EXPECTED))?,
        );
    }
    for (key, v) in [
        ("args.cni.mac", conf.cni_arg("mac")),
        ("runtimeConfig.mac", conf.capability("mac")),
    ] {
        match v {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => {
                mac = Some(parse_mac(s).ok_or_else(|| Error::config(key, s, MAC_EXPECTED))?)
            }
            Some(other) => return Err(Error::config(key, other, MAC_EXPECTED)),
        }
    }
    Ok(mac)
}

const MAC_EXPECTED: &str = "a unicast MAC address like \"02:42:ac:11:00:02\"";

pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return None;
        }
        mac[i] = u8::from_str_radix(p, 16).ok()?;
    }
    // Multicast (I/G bit) or all-zero cannot be an interface's address.
    if mac[0] & 1 == 1 || mac == [0; 6] {
        return None;
    }
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Config, Error> {
        Config::parse(&NetConf::parse(json.as_bytes()).unwrap())
    }

    const IPAM: &str = r#""ipam":{"type":"ipam-prefix"}"#;

    #[test]
    fn defaults() {
        let c = parse(&format!(
            r#"{{"cniVersion":"1.0.0","name":"n","type":"bridge6",{IPAM}}}"#
        ))
        .unwrap();
        assert_eq!(c.bridge, "cni6br0");
        assert_eq!(c.mtu, None);
        assert!(c.hairpin);
        assert!(c.default_route);
        assert_eq!(c.dns, None);
        assert_eq!(c.ipam_type, "ipam-prefix");
        assert_eq!(c.network, "n");
    }

    #[test]
    fn all_keys() {
        let c = parse(&format!(
            r#"{{"name":"n","bridge":"cluster0","mtu":1420,"hairpinMode":false,
                "defaultRoute":false,"ipMasq":false,"foo":{{"bar":1}},
                "dns":{{"nameservers":["fd00::53"]}},{IPAM}}}"#
        ))
        .unwrap();
        assert_eq!(c.bridge, "cluster0");
        assert_eq!(c.mtu, Some(1420));
        assert!(!c.hairpin);
        assert!(!c.default_route);
        assert_eq!(c.dns.unwrap().nameservers, vec!["fd00::53"]);
    }

    #[test]
    fn a_typo_of_a_known_key_is_refused() {
        let e = parse(&format!(r#"{{"name":"n","brigde":"cluster0",{IPAM}}}"#)).unwrap_err();
        assert_eq!(e.code(), 7);
        assert!(e.to_string().contains("\"bridge\""), "{e}");
        // Far unknown keys stay accepted (conformance.md #14).
        parse(&format!(r#"{{"name":"n","isGateway":true,{IPAM}}}"#)).unwrap();
    }

    #[test]
    fn malformed_keys_name_themselves() {
        let cases = [
            (r#""bridge":"this-name-is-too-long""#, "bridge"),
            (r#""bridge":"a/b""#, "bridge"),
            (r#""bridge":7"#, "bridge"),
            (r#""mtu":1279"#, "mtu"),
            (r#""mtu":"1500""#, "mtu"),
            (r#""mtu":-1"#, "mtu"),
            (r#""mtu":70000"#, "mtu"),
            (r#""hairpinMode":"yes""#, "hairpinMode"),
            (r#""defaultRoute":1"#, "defaultRoute"),
            (r#""ipMasq":"no""#, "ipMasq"),
        ];
        for (kv, key) in cases {
            let e = parse(&format!(r#"{{"name":"n",{kv},{IPAM}}}"#)).unwrap_err();
            assert_eq!(e.code(), 7, "{kv}: {e}");
            assert!(e.to_string().contains(key), "{kv}: {e}");
        }
    }

    #[test]
    fn ip_masq_true_is_unsupported() {
        let e = parse(&format!(r#"{{"name":"n","ipMasq":true,{IPAM}}}"#)).unwrap_err();
        assert_eq!(e.code(), 2);
        assert!(e.to_string().contains("ipMasq=true"), "{e}");
    }

    #[test]
    fn mac_sources_and_precedence() {
        let conf = |json: &str| NetConf::parse(json.as_bytes()).unwrap();
        let none = CniArgs::default();
        assert_eq!(
            requested_mac(&conf(r#"{"name":"n"}"#), &none).unwrap(),
            None
        );
        let args = CniArgs::parse("IgnoreUnknown=1;MAC=02:00:00:00:00:01").unwrap();
        assert_eq!(
            requested_mac(&conf(r#"{"name":"n"}"#), &args).unwrap(),
            Some([2, 0, 0, 0, 0, 1])
        );
        let c = conf(
            r#"{"name":"n","args":{"cni":{"mac":"02:00:00:00:00:02"}},
                "capabilities":{"mac":true},"runtimeConfig":{"mac":"02:00:00:00:00:03"}}"#,
        );
        assert_eq!(requested_mac(&c, &args).unwrap(), Some([2, 0, 0, 0, 0, 3]));
        // Not declared: runtimeConfig.mac is not ours to read.
        let c = conf(
            r#"{"name":"n","args":{"cni":{"mac":"02:00:00:00:00:02"}},
                "runtimeConfig":{"mac":"02:00:00:00:00:03"}}"#,
        );
        assert_eq!(requested_mac(&c, &none).unwrap(), Some([2, 0, 0, 0, 0, 2]));
    }

    #[test]
    fn bad_macs_name_their_source() {
        let conf = |json: &str| NetConf::parse(json.as_bytes()).unwrap();
        let none = CniArgs::default();
        for bad in [
            "01:00:5e:00:00:01",
            "00:00:00:00:00:00",
            "02:00:00:00:00",
            "zz:00:00:00:00:01",
            "0200.0000.0001",
        ] {
            let c = conf(&format!(
                r#"{{"name":"n","args":{{"cni":{{"mac":"{bad}"}}}}}}"#
            ));
            let e = requested_mac(&c, &none).unwrap_err();
            assert_eq!(e.code(), 7, "{bad}");
            assert!(e.to_string().contains("args.cni.mac"), "{e}");
        }
        let args = CniArgs::parse("MAC=nope").unwrap();
        let e = requested_mac(&conf(r#"{"name":"n"}"#), &args).unwrap_err();
        assert_eq!(e.code(), 4);
        assert!(e.to_string().contains("MAC=nope"), "{e}");
    }

    #[test]
    fn ipam_is_required_and_plain() {
        assert_eq!(parse(r#"{"name":"n"}"#).unwrap_err().code(), 7);
        let e = parse(r#"{"name":"n","ipam":{"type":"../x"}}"#).unwrap_err();
        assert!(e.to_string().contains("ipam.type"), "{e}");
    }
}
