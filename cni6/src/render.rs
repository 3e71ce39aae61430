//! Human-readable summaries of CNI results: what an operator wants to see
//! after an attach (interfaces, addresses, routes), not the raw JSON.

use cni_common::result::CniResult;
use cni_common::runtime::{ConfList, RuntimeConf};
use serde_json::Value;
use std::fmt::Write as _;

/// A few lines describing an ADD result. A result cni-common cannot parse
/// is shown as pretty JSON rather than hidden.
pub fn attach_summary(list: &ConfList, att: &RuntimeConf, result: &Value) -> String {
    let mut s = format!(
        "attached container {} interface {} to network {} (CNI {})",
        att.container_id, att.ifname, list.name, list.cni_version
    );
    let r = match CniResult::parse(result) {
        Ok(r) => r,
        Err(e) => {
            let _ = write!(
                s,
                "\nresult (not understood: {e}):\n{}",
                serde_json::to_string_pretty(result).unwrap_or_default()
            );
            return s;
        }
    };
    for i in &r.interfaces {
        let _ = write!(s, "\n  interface {:<15}", i.name);
        if let Some(mac) = &i.mac {
            let _ = write!(s, " mac {mac}");
        }
        if let Some(mtu) = i.mtu {
            let _ = write!(s, " mtu {mtu}");
        }
        match &i.sandbox {
            Some(ns) => {
                let _ = write!(s, " in {ns}");
            }
            None => s.push_str(" on the host"),
        }
    }
    for ip in &r.ips {
        let _ = write!(s, "\n  address   {}", ip.address);
        if let Some(gw) = ip.gateway {
            let _ = write!(s, " gateway {gw}");
        }
        if let Some(name) = ip.interface.and_then(|i| r.interfaces.get(i)) {
            let _ = write!(s, " on {}", name.name);
        }
    }
    for route in &r.routes {
        let _ = write!(s, "\n  route     {}", route.dst);
        if let Some(gw) = route.gw {
            let _ = write!(s, " via {gw}");
        }
        if let Some(mtu) = route.mtu {
            let _ = write!(s, " mtu {mtu}");
        }
    }
    if !r.dns.nameservers.is_empty() {
        let _ = write!(s, "\n  dns       {}", r.dns.nameservers.join(", "));
    }
    if r.ips.is_empty() {
        s.push_str("\n  (no addresses in the result)");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn summary_names_interfaces_addresses_routes() {
        let list = ConfList::parse(
            br#"{"cniVersion":"1.0.0","name":"cluster","plugins":[{"type":"bridge6"}]}"#,
        )
        .unwrap();
        let att = RuntimeConf::new("c1", None, "eth0");
        let r = json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cluster0", "mac": "02:00:00:00:00:01"},
                {"name": "eth0", "sandbox": "/var/run/netns/pod1"}
            ],
            "ips": [{"address": "fd8c:1f0a:77e3:0:1:1:0:10/96", "gateway": "fd8c:1f0a:77e3:0:1:1:0:1", "interface": 1}],
            "routes": [{"dst": "::/0"}]
        });
        let s = attach_summary(&list, &att, &r);
        assert!(s.contains("network cluster"), "{s}");
        assert!(s.contains("cluster0") && s.contains("on the host"), "{s}");
        assert!(s.contains("in /var/run/netns/pod1"), "{s}");
        assert!(
            s.contains("fd8c:1f0a:77e3:0:1:1:0:10/96 gateway fd8c:1f0a:77e3:0:1:1:0:1 on eth0"),
            "{s}"
        );
        assert!(s.contains("route     ::/0"), "{s}");
        let odd = attach_summary(&list, &att, &json!({"ips": "x"}));
        assert!(odd.contains("not understood"), "{odd}");
    }
}
