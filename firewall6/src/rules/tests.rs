use super::*;
use crate::config::FirewallConf;
use cni_common::attachment::Attachment;
use cni_common::result::CniResult;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;

fn conf(v: serde_json::Value) -> FirewallConf {
    FirewallConf::from_raw(&v).unwrap()
}

fn att() -> Attachment {
    Attachment::new("cluster", "c0ffee", "eth0").unwrap()
}

fn bridged_pod() -> Pod {
    Pod {
        addresses: vec![
            "fd00::1:10".parse().unwrap(),
            "2001:db8::1:10".parse().unwrap(),
        ],
        host_side: Some(HostSide::BridgePort("veth1234".into())),
        bridge: Some("br0".into()),
        mac: Some([0x02, 0xc6, 0, 0, 0x12, 0x34]),
    }
}

#[test]
fn tag_names_network_ifname_and_id() {
    assert_eq!(tag(&att()), "firewall6 net=cluster if=eth0 id=c0ffee");
    assert_eq!(tag_network(&tag(&att())), Some("cluster"));
    let odd = Attachment {
        ifname: "e\"t h%".into(),
        ..att()
    };
    assert_eq!(tag(&odd), "firewall6 net=cluster if=e%22t%20h%25 id=c0ffee");
    let long = Attachment {
        container_id: "a".repeat(255),
        ..att()
    };
    let t = tag(&long);
    assert!(t.len() <= 255, "{}", t.len());
    assert!(t.contains(" idsha="));
    assert_eq!(tag_network(&t), Some("cluster"));
    assert_eq!(
        tag_network("firewall6: link-local sources are not checked"),
        None
    );
    assert_eq!(tag_network("firewall6 net=x replies"), None);
}

#[test]
fn cluster_only_policy_text() {
    let c = conf(json!({
        "clusterPrefixes": ["fd8c:1f0a:77e3::/64"],
        "allowPorts": [{"port": 443, "protocol": "tcp"}, {"port": "8000-8080", "protocol": "udp"}, {"port": 9, "protocol": "sctp"}]
    }));
    let s = Skeleton {
        network: "cluster",
        conf: &c,
        bridge: Some("br0"),
    };
    let chain = s.policy_chain();
    assert!(
        chain.starts_with("CNI6-POL-") && chain.len() == 21,
        "{chain}"
    );
    assert_eq!(
            s.policy_rules(),
            vec![
                format!("-A {chain} -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"firewall6 net=cluster replies\" -j ACCEPT"),
                format!("-A {chain} -s fd8c:1f0a:77e3::/64 -m comment --comment \"firewall6 net=cluster from the cluster\" -j ACCEPT"),
                format!("-A {chain} -p tcp -m tcp --dport 443 -m comment --comment \"firewall6 net=cluster allowed port\" -j ACCEPT"),
                format!("-A {chain} -p udp -m udp --dport 8000:8080 -m comment --comment \"firewall6 net=cluster allowed port\" -j ACCEPT"),
                format!("-A {chain} -p sctp -m sctp --dport 9 -m comment --comment \"firewall6 net=cluster allowed port\" -j ACCEPT"),
                format!("-A {chain} -m comment --comment \"firewall6 net=cluster cluster-only\" -j DROP"),
            ]
        );
}

#[test]
fn open_policy_and_chain_names_differ() {
    let open = conf(json!({"ingress": "open"}));
    let closed = conf(json!({}));
    let a = Skeleton {
        network: "n",
        conf: &open,
        bridge: Some("br0"),
    };
    let b = Skeleton {
        network: "n",
        conf: &closed,
        bridge: Some("br0"),
    };
    let c = Skeleton {
        network: "m",
        conf: &open,
        bridge: Some("br0"),
    };
    assert_eq!(
        a.policy_rules(),
        vec![format!(
            "-A {} -m comment --comment \"firewall6 net=n ingress open\" -j ACCEPT",
            a.policy_chain()
        )]
    );
    assert_ne!(a.policy_chain(), b.policy_chain());
    assert_ne!(a.policy_chain(), c.policy_chain());
    // Stable across runs and versions (names live in the kernel).
    assert_eq!(
        a.policy_chain(),
        Skeleton {
            network: "n",
            conf: &open,
            bridge: Some("br0"),
        }
        .policy_chain()
    );
}

#[test]
fn pod_rules_bridged_and_routed() {
    let tag = tag(&att());
    let r = pod_rules(&tag, &bridged_pod(), "CNI6-POL-abc");
    let c = "-m comment --comment \"firewall6 net=cluster if=eth0 id=c0ffee\"";
    // A bridged pod: only the inbound policy here; its sources are
    // bound to its MAC in the source buckets, the EUI-64 link-local too.
    assert_eq!(
        r,
        vec![
            format!("-A CNI6-D-10 -d fd00::1:10/128 {c} -j CNI6-POL-abc"),
            format!("-A CNI6-D-10 -d 2001:db8::1:10/128 {c} -j CNI6-POL-abc"),
        ]
    );
    let m = "-m mac --mac-source 02:c6:00:00:12:34";
    assert_eq!(
        pod_source_rules(&tag, &bridged_pod()),
        vec![
            format!("-A CNI6-S-10 -s fd00::1:10/128 {m} {c} -j RETURN"),
            format!("-A CNI6-S-10 -s 2001:db8::1:10/128 {m} {c} -j RETURN"),
            format!("-A CNI6-S-34 -s fe80::c6:ff:fe00:1234/128 {m} {c} -j RETURN"),
        ]
    );
    assert_eq!(
        insert_lines(&pod_source_rules(&tag, &bridged_pod()))[0],
        format!("-I CNI6-S-10 1 -s fd00::1:10/128 {m} {c} -j RETURN")
    );
    let routed = Pod {
        host_side: Some(HostSide::Routed("c63fveth9".into())),
        ..bridged_pod()
    };
    let r = pod_rules(&tag, &routed, "P");
    assert_eq!(
        r[0],
        format!("-A CNI6-P-OTHER -s fd00::1:10/128 -i c63fveth9 {c} -g CNI6-FROM-POD")
    );
    assert_eq!(r[2], format!("-A CNI6-P-OTHER -i c63fveth9 {c} -j DROP"));
    assert!(pod_source_rules(&tag, &routed).is_empty());
    let none = Pod {
        host_side: None,
        ..bridged_pod()
    };
    assert_eq!(pod_rules(&tag, &none, "P").len(), 2);
}

#[test]
fn buckets() {
    assert_eq!(
        port_bucket_of(&HostSide::BridgePort("c6ff0000000000a".into())),
        "CNI6-P-ff"
    );
    assert_eq!(
        port_bucket_of(&HostSide::BridgePort("c6FF0000000000a".into())),
        "CNI6-P-OTHER"
    );
    assert_eq!(
        port_bucket_of(&HostSide::BridgePort("c6".into())),
        "CNI6-P-OTHER"
    );
    assert_eq!(
        port_bucket_of(&HostSide::BridgePort("c6x1".into())),
        "CNI6-P-OTHER"
    );
    assert_eq!(
        addr_bucket_of(&"2001:db8::1:0:ab".parse().unwrap()),
        "CNI6-D-ab"
    );
    assert_eq!(addr_bucket_of(&"fd00::100".parse().unwrap()), "CNI6-D-00");
    assert_eq!(Skeleton::bucket_chains().len(), 513);
    assert!(is_internal_chain("CNI6-P-OTHER") && is_bucket_chain("CNI6-D-00"));
    assert!(!is_bucket_chain("CNI6-FORWARD"));
}

/// The dispatch tree: 16 group rules (+ catch-all / multicast) in the
/// dispatch chains, 16 bucket rules in each group, every bucket reached
/// from exactly one group rule of its own high digit.
#[test]
fn dispatch_tree() {
    let a = Skeleton::antispoof_rules();
    assert_eq!(a.len(), 18);
    assert_eq!(a[1 + 0xa], "-A CNI6-ANTISPOOF -m physdev --physdev-in c6a+ -m comment --comment \"firewall6: port bucket group\" -j CNI6-PX-a");
    assert_eq!(
        a[17],
        "-A CNI6-ANTISPOOF -m comment --comment \"firewall6: other port names\" -j CNI6-P-OTHER"
    );
    let pa = Skeleton::port_group_rules(0xa);
    assert_eq!(pa.len(), 16);
    assert_eq!(pa[0xb], "-A CNI6-PX-a -m physdev --physdev-in c6ab+ -m comment --comment \"firewall6: port bucket\" -j CNI6-P-ab");
    let i = Skeleton::ingress_rules();
    assert_eq!(i.len(), 17);
    assert_eq!(i[0], "-A CNI6-INGRESS -d ff00::/8 -m comment --comment \"firewall6: no pod policy for multicast\" -j RETURN");
    assert_eq!(i[1], "-A CNI6-INGRESS -d ::/::f0 -m comment --comment \"firewall6: address bucket group\" -g CNI6-DX-0");
    assert_eq!(i[1 + 0xa], "-A CNI6-INGRESS -d ::a0/::f0 -m comment --comment \"firewall6: address bucket group\" -g CNI6-DX-a");
    let da = Skeleton::addr_group_rules(0xa);
    assert_eq!(
        da[0],
        "-A CNI6-DX-a -d ::a0/::ff -m comment --comment \"firewall6: address bucket\" -g CNI6-D-a0"
    );
    assert_eq!(
        da[0xb],
        "-A CNI6-DX-a -d ::ab/::ff -m comment --comment \"firewall6: address bucket\" -g CNI6-D-ab"
    );
    let groups = Skeleton::group_chains();
    assert_eq!(groups.len(), 32);
    let mut reached: Vec<String> = groups
        .iter()
        .flat_map(|(g, rules)| {
            rules.iter().map(move |r| {
                let bucket = r.rsplit(' ').next().unwrap().to_string();
                assert_eq!(group_of_bucket(&bucket).as_deref(), Some(g.as_str()));
                assert!(r.starts_with(&format!("-A {g} ")));
                bucket
            })
        })
        .collect();
    reached.push(PORT_OTHER.to_string());
    reached.sort();
    let mut all = Skeleton::bucket_chains();
    all.sort();
    assert_eq!(reached, all);
    assert_eq!(group_of_bucket("CNI6-P-OTHER"), None);
    assert_eq!(group_of_bucket("CNI6-D-0f").as_deref(), Some("CNI6-DX-0"));
    assert_eq!(group_of_bucket("CNI6-P-f0").as_deref(), Some("CNI6-PX-f"));
    for g in ["CNI6-PX-0", "CNI6-DX-f"] {
        assert!(is_internal_chain(g) && !is_bucket_chain(g), "{g}");
    }
    // Names fit iptables' 28 characters.
    assert!(groups.iter().all(|(g, _)| g.len() <= 28));
}

#[test]
fn pod_from_prev_result() {
    let res = CniResult::parse(&json!({
        "cniVersion": "1.0.0",
        "interfaces": [
            {"name": "br0"},
            {"name": "veth1234"},
            {"name": "eth0", "sandbox": "/var/run/netns/p", "mac": "02:C6:00:00:12:34"}
        ],
        "ips": [
            {"address": "fd00::1:10/96", "interface": 2},
            {"address": "fd00:0:0:1::1/80", "interface": 0},
            {"address": "10.0.0.5/24", "interface": 2},
            {"address": "2001:db8::1:10/96", "interface": 2}
        ]
    }))
    .unwrap();
    assert_eq!(Pod::from_result(&res).unwrap(), bridged_pod());

    let routed = CniResult::parse(&json!({
        "interfaces": [{"name": "veth9"}, {"name": "eth0", "sandbox": "/x"}],
        "ips": [{"address": "fd00::5/64"}]
    }))
    .unwrap();
    let p = Pod::from_result(&routed).unwrap();
    assert_eq!(p.host_side, Some(HostSide::Routed("veth9".into())));
    assert_eq!(p.addresses, vec!["fd00::5".parse::<Ipv6Addr>().unwrap()]);

    let bare = CniResult::parse(&json!({"ips": [{"address": "fd00::5/64"}]})).unwrap();
    assert_eq!(Pod::from_result(&bare).unwrap().host_side, None);

    let evil = CniResult::parse(&json!({
        "interfaces": [{"name": "veth 1"}, {"name": "eth0", "sandbox": "/x"}]
    }))
    .unwrap();
    let e = cni_common::Error::from(Pod::from_result(&evil).unwrap_err());
    assert_eq!(e.code(), 7);
    assert!(e.to_string().contains("prevResult.interfaces[0].name"));
}

/// A full `ip6tables -S` listing of an intact skeleton for `s`, no pods.
pub(crate) fn intact_listing(s: &Skeleton) -> Vec<String> {
    let mut lines = vec!["-P FORWARD ACCEPT".to_string()];
    for c in [
        FORWARD_CHAIN,
        ANTISPOOF_CHAIN,
        INGRESS_CHAIN,
        FROM_POD_CHAIN,
        PODS_CHAIN,
        TO_PODS_CHAIN,
        "CNI6-ADMIN",
    ] {
        lines.push(format!("-N {c}"));
    }
    lines.extend(s.bridge.map(pods_jump));
    lines.extend(s.bridge.map(crate::fastpath::to_pods_established));
    lines.push(format!("-N {}", s.policy_chain()));
    lines.extend(Skeleton::bucket_chains().iter().map(|c| format!("-N {c}")));
    let groups = Skeleton::group_chains();
    lines.extend(groups.iter().map(|(g, _)| format!("-N {g}")));
    lines.push(Skeleton::forward_jump());
    lines.push(s.admin_jump());
    lines.extend(Skeleton::forward_rules());
    lines.extend(Skeleton::antispoof_rules());
    lines.extend(Skeleton::ingress_rules());
    lines.extend(groups.into_iter().flat_map(|(_, r)| r));
    lines.extend(Skeleton::from_pod_rules());
    lines.extend(s.policy_rules());
    lines
}

#[test]
fn skeleton_repair_from_nothing_and_when_intact() {
    let c = conf(json!({}));
    let s = Skeleton {
        network: "n",
        conf: &c,
        bridge: Some("br0"),
    };
    let empty = SkeletonState::from_listing(
        &["-P FORWARD ACCEPT".to_string()],
        "CNI6-ADMIN",
        &s.policy_chain(),
    );
    let fix = s.repair(&empty);
    assert_eq!(fix[0], ":CNI6-ADMIN - [0:0]");
    assert!(fix.contains(&":CNI6-FORWARD - [0:0]".to_string()));
    assert!(fix.contains(&":CNI6-P-OTHER - [0:0]".to_string()));
    assert!(fix.contains(&":CNI6-D-ff - [0:0]".to_string()));
    assert_eq!(
        fix.last().unwrap(),
        "-I FORWARD 1 -m comment --comment \"firewall6: cni6 pod firewall\" -j CNI6-FORWARD"
    );
    // Declarations come before rules (restore format).
    let first_rule = fix.iter().position(|l| l.starts_with('-')).unwrap();
    assert!(fix[first_rule..].iter().all(|l| l.starts_with('-')));
    assert!(!s.defects(&empty).is_empty());

    let lines = intact_listing(&s);
    let intact = SkeletonState::from_listing(&lines, "CNI6-ADMIN", &s.policy_chain());
    assert!(s.defects(&intact).is_empty(), "{:?}", s.defects(&intact));
    assert!(s.repair(&intact).is_empty());

    // A flushed dispatch chain and a lost bucket: the dispatch chain is
    // rewritten, only the missing bucket declared (the others hold pods).
    let broken: Vec<String> = lines
        .iter()
        .filter(|l| !l.starts_with("-A CNI6-INGRESS ") && *l != "-N CNI6-P-07")
        .cloned()
        .collect();
    let st = SkeletonState::from_listing(&broken, "CNI6-ADMIN", &s.policy_chain());
    assert_eq!(s.defects(&st).len(), 2, "{:?}", s.defects(&st));
    let fix = s.repair(&st);
    let decls: Vec<&String> = fix.iter().filter(|l| l.starts_with(':')).collect();
    assert_eq!(decls, [":CNI6-P-07 - [0:0]", ":CNI6-INGRESS - [0:0]"]);
    assert_eq!(fix.len(), 2 + 17);

    // A flushed group: only it is rewritten.
    let broken: Vec<String> = lines
        .iter()
        .filter(|l| !l.starts_with("-A CNI6-DX-3 "))
        .cloned()
        .collect();
    let st = SkeletonState::from_listing(&broken, "CNI6-ADMIN", &s.policy_chain());
    assert_eq!(
        s.defects(&st),
        ["dispatch chain CNI6-DX-3 is missing or altered"]
    );
    let fix = s.repair(&st);
    assert_eq!(fix[0], ":CNI6-DX-3 - [0:0]");
    assert_eq!(fix[1..], Skeleton::addr_group_rules(3)[..]);

    // Another network's admin chain: ours is inserted first, theirs kept.
    let other = conf(json!({"adminChain": "OTHER-ADMIN"}));
    let o = Skeleton {
        network: "m",
        conf: &other,
        bridge: Some("br0"),
    };
    let st = SkeletonState::from_listing(&lines, "OTHER-ADMIN", &o.policy_chain());
    let fix = o.repair(&st);
    assert!(fix.contains(&":OTHER-ADMIN - [0:0]".to_string()));
    assert!(fix.contains(
            &"-I CNI6-FORWARD 1 -m comment --comment \"firewall6: operator overrides first\" -j OTHER-ADMIN".to_string()
        ));
    assert!(!fix
        .iter()
        .any(|l| l == ":CNI6-FORWARD - [0:0]" || l == ":CNI6-ADMIN - [0:0]"));
}

#[test]
fn flat_layout_of_earlier_version_is_converted_in_one_batch() {
    let c = conf(json!({}));
    let s = Skeleton {
        network: "n",
        conf: &c,
        bridge: Some("br0"),
    };
    let pod = "-A CNI6-P-ab -m physdev --physdev-in c6ab00000000001 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -j DROP".to_string();
    let old: Vec<String> = intact_listing(&s)
        .into_iter()
        .filter(|l| {
            !l.starts_with("-N CNI6-PX-")
                && !l.starts_with("-N CNI6-DX-")
                && !l.starts_with("-A CNI6-PX-")
                && !l.starts_with("-A CNI6-DX-")
                && !l.starts_with("-A CNI6-ANTISPOOF ")
                && !l.starts_with("-A CNI6-INGRESS ")
        })
        .chain(flat_dispatch_of_earlier_release())
        .chain([pod])
        .collect();
    let st = SkeletonState::from_listing(&old, "CNI6-ADMIN", &s.policy_chain());
    let d = s.defects(&st);
    assert!(
        d.iter()
            .any(|x| x.contains("CNI6-INGRESS has the flat layout"))
            && d.iter()
                .any(|x| x.contains("CNI6-ANTISPOOF has the flat layout")),
        "{d:?}"
    );
    // The ADD batch's `-C` lead fails on it: the multicast rule and the
    // first group rule are absent from a flat layout.
    let checks = s.presence_checks();
    let present: BTreeSet<String> = old.iter().map(|l| check_of(l)).collect();
    assert!(checks.iter().any(|c| !present.contains(c)));
    let fix = s.repair(&st);
    let decls: Vec<&String> = fix.iter().filter(|l| l.starts_with(':')).collect();
    assert_eq!(decls.len(), 32 + 2, "{decls:?}");
    assert!(decls.contains(&&":CNI6-ANTISPOOF - [0:0]".to_string()));
    assert!(decls.contains(&&":CNI6-INGRESS - [0:0]".to_string()));
    assert!(!decls
        .iter()
        .any(|d| d.starts_with(":CNI6-P-") || d.starts_with(":CNI6-D-")));
    assert_eq!(fix.len(), 34 + 18 + 17 + 32 * 16);
    // Applying it gives the intact skeleton, the pod's rule untouched.
    let mut chains: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in &old {
        if let Some(r) = parse_rule(l) {
            chains
                .entry(r.chain.to_string())
                .or_default()
                .push(l.clone());
        }
    }
    for l in &fix {
        if let Some(d) = l.strip_prefix(':') {
            chains.insert(d.split(' ').next().unwrap().to_string(), vec![]);
        } else {
            let r = parse_rule(l).expect("repair of a present chain appends only");
            chains.get_mut(r.chain).unwrap().push(l.clone());
        }
    }
    let mut after: Vec<String> = old
        .iter()
        .filter(|l| !l.starts_with("-A "))
        .cloned()
        .collect();
    after.extend(
        Skeleton::group_chains()
            .iter()
            .map(|(g, _)| format!("-N {g}")),
    );
    after.extend(chains.into_values().flatten());
    let st = SkeletonState::from_listing(&after, "CNI6-ADMIN", &s.policy_chain());
    assert!(s.defects(&st).is_empty(), "{:?}", s.defects(&st));
    assert!(after.iter().any(|l| l.contains("id=a")));
}

#[test]
fn listing_parse_and_tag_lookup() {
    let listing: Vec<String> = [
            "-N CNI6-ANTISPOOF",
            "-A CNI6-ANTISPOOF -s fd00::10/128 -m physdev --physdev-in v1 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -g CNI6-FROM-POD",
            "-A CNI6-ANTISPOOF -m physdev --physdev-in v1 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -j DROP",
            "-A CNI6-ANTISPOOF -m physdev --physdev-in v2 -m comment --comment \"firewall6 net=n if=eth0 id=ab\" -j DROP",
            "-A CNI6-ANTISPOOF -m comment --comment \"say \\\"hi\\\"\" -j RETURN",
            "-A CNI6-ANTISPOOF -m comment --comment bare -j RETURN",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(parse_rule(&listing[0]).is_none());
    let r = parse_rule(&listing[4]).unwrap();
    assert_eq!(r.chain, "CNI6-ANTISPOOF");
    assert_eq!(r.comment.as_deref(), Some("say \"hi\""));
    assert_eq!(
        parse_rule(&listing[5]).unwrap().comment.as_deref(),
        Some("bare")
    );
    let found = rules_with_tag(&listing, "firewall6 net=n if=eth0 id=a");
    assert_eq!(found, vec![listing[1].as_str(), listing[2].as_str()]);
    assert_eq!(
            delete_of(found[1]),
            "-D CNI6-ANTISPOOF -m physdev --physdev-in v1 -m comment --comment \"firewall6 net=n if=eth0 id=a\" -j DROP"
        );
    assert_eq!(
        batch(&[delete_of(found[1])]),
        format!("*filter\n{}\nCOMMIT\n", delete_of(found[1]))
    );
}

#[test]
fn pod_defects_finds_missing_and_misordered() {
    let tag = tag(&att());
    let routed = Pod {
        host_side: Some(HostSide::Routed("veth1234".into())),
        ..bridged_pod()
    };
    let expected = pod_rules(&tag, &routed, "P");
    let port: Vec<String> = expected[..3].to_vec();
    let addr: Vec<String> = expected[3..].to_vec();
    let lookup = |p: &[String], a: &[String]| {
        let m = BTreeMap::from([
            ("CNI6-P-OTHER".to_string(), p.to_vec()),
            ("CNI6-D-10".to_string(), a.to_vec()),
        ]);
        pod_defects(&expected, &m)
    };
    assert!(lookup(&port, &addr).is_empty());
    let d = lookup(&port, &addr[..1]);
    assert_eq!(d.len(), 1);
    assert!(d[0].contains("2001:db8::1:10/128"));
    let swapped = vec![port[2].clone(), port[0].clone(), port[1].clone()];
    let d = lookup(&swapped, &addr);
    assert!(d.iter().any(|x| x.contains("out of order")), "{d:?}");
}
