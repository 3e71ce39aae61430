//! Building each chain's topology: pods attached, every path wired, the
//! reference conflists, the floor's veth pair, and the proof that the
//! bare topology runs without netfilter.

use super::*;

impl Lab {
    pub(super) fn build(chain: ChainKind, opts: &Options) -> Result<Lab> {
        let mut spec = Spec::new(
            match chain {
                ChainKind::Cni6 => "c6pc",
                ChainKind::Reference => "c6pr",
                ChainKind::Bare => "c6pb",
            },
            2,
        );
        spec.state_root = PathBuf::from("/run/cni6-bench");
        // The reference firewall sees bridged pod-to-pod traffic only
        // through br_netfilter; cni6 needs none of it.
        spec.bridge_nf_call_ip6tables = chain == ChainKind::Reference;
        let mut topo = Topology::build(spec)?;
        crate::harness::remove_on_panic(topo.base());
        topo.write_cluster_conflists()?;
        let bins = match chain {
            ChainKind::Cni6 => {
                add_firewall6(&topo)?;
                Binaries::from_dir(&opts.bin_dir)?
            }
            // The topology's conflist is cni6's chain before firewall6.
            ChainKind::Bare => Binaries::from_dir(&opts.bin_dir)?,
            ChainKind::Reference => {
                write_reference_conflists(&topo)?;
                let mut cni_path = vec![opts.reference_dir.clone()];
                let debian = PathBuf::from("/usr/lib/cni");
                if debian != opts.reference_dir && debian.join("loopback").is_file() {
                    cni_path.push(debian);
                }
                Binaries {
                    cni6: opts.bin_dir.join("cni6"),
                    cni_path,
                }
            }
        };
        let a1 = topo.add_pod(1)?;
        let a2 = topo.add_pod(1)?;
        let b1 = topo.add_pod(2)?;
        let mut ula = Vec::new();
        for pod in [&a1, &a2, &b1] {
            check(opts)?;
            ula.push(topo.attach(&bins, pod)?.ula.addr());
        }
        let floor = topo.add_pods(1, 2)?;
        let floor_addr = wire_floor(&floor)?;
        let (_, outside_addr) = topo.add_outside_host()?;
        let pod = |p: &Pod| Endpoint::named(&p.name);
        let node = |i: u16| Endpoint::named(&topo.node(i).netns);
        let outside = Endpoint::named(topo.underlay_netns());
        let routes = vec![
            (
                PathKind::PodPodSameNode,
                Route {
                    client: pod(&a1),
                    server: pod(&a2),
                    addr: ula[1],
                },
            ),
            (
                PathKind::PodPodAcrossNodes,
                Route {
                    client: pod(&a1),
                    server: pod(&b1),
                    addr: ula[2],
                },
            ),
            (
                PathKind::NodeNode,
                Route {
                    client: node(1),
                    server: node(2),
                    addr: topo.node(2).underlay_addr,
                },
            ),
            (
                PathKind::VethPair,
                Route {
                    client: pod(&floor[0]),
                    server: pod(&floor[1]),
                    addr: floor_addr,
                },
            ),
            (
                PathKind::PodOutside,
                Route {
                    client: pod(&a1),
                    server: outside.clone(),
                    addr: outside_addr,
                },
            ),
            (
                PathKind::NodeOutside,
                Route {
                    client: node(1),
                    server: outside,
                    addr: outside_addr,
                },
            ),
        ];
        let bridge_nf = NetNs::open(&topo.node(1).netns_path())?.run(|| {
            std::fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-ip6tables")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "-".into())
        })?;
        eprintln!(
            "datapath: {} attached in topology {}",
            chain.label(),
            topo.base()
        );
        let lab = Lab {
            chain,
            topo,
            routes,
            bridge_nf,
        };
        lab.check_netfilter_free("after the pods were attached")?;
        Ok(lab)
    }

    /// For the bare chain: every namespace of the topology has no
    /// ip6tables/iptables table (nft or legacy) and no conntrack entry;
    /// returns how many namespaces were checked (0 for other chains).
    /// Without a table no hook but br_netfilter's is registered, and the
    /// kernel only turns conntrack on for a namespace whose rules ask for it.
    pub(super) fn check_netfilter_free(&self, when: &str) -> Result<usize> {
        if self.chain != ChainKind::Bare {
            return Ok(0);
        }
        let mut names: Vec<&str> = Vec::new();
        for (_, r) in &self.routes {
            for ns in [&r.client.netns, &r.server.netns] {
                if !names.contains(&ns.as_str()) {
                    names.push(ns);
                }
            }
        }
        for ns in &names {
            let found = netfilter_in(ns)?;
            if !found.is_empty() {
                return Err(Error::Check(format!(
                    "{} topology, namespace {ns}, {when}: expected no netfilter table and no \
                     conntrack entry (the bare chain is the path without netfilter), found: {}; \
                     something outside the benchmark added rules there: find and remove it, then run again",
                    self.chain.label(),
                    found.join("; ")
                )));
            }
        }
        Ok(names.len())
    }

    /// Every path carries a TCP exchange before anything is timed (the
    /// gateway's and the pods' neighbour entries resolved, addresses out of
    /// any DAD wait), so no figure can come from a broken setup.
    pub(super) fn check_paths(&self) -> Result<()> {
        for (path, r) in &self.routes {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match topology::tcp_echo(
                    &r.server.path,
                    r.addr,
                    &r.client.path,
                    b"datapath probe",
                    Duration::from_secs(2),
                ) {
                    Ok(_) => break,
                    Err(e) if Instant::now() > deadline => {
                        return Err(Error::Check(format!(
                            "{} {}: no TCP exchange with [{}] within 10 s: {e}",
                            self.chain.label(),
                            path.label(),
                            r.addr
                        )))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        self.check_netfilter_free("after the probe traffic")
            .map(|_| ())
    }
}

/// What the namespace `netns` holds of netfilter: each table and rule of
/// `ip6tables-save` and `iptables-save` (nft tables; a table without rules
/// still has hooks), each legacy xtables table, and the conntrack entry
/// count unless it is 0. Empty: no netfilter table and no connection
/// tracked there.
pub fn netfilter_in(netns: &str) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for save in ["ip6tables-save", "iptables-save"] {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", netns, save]);
        let text = topology::run(c)?;
        found.extend(
            text.lines()
                // A table ("*filter") or a rule ("-A ..."): chain headers
                // and COMMIT only repeat the table.
                .filter(|l| l.starts_with('*') || l.starts_with('-'))
                .map(|l| format!("{save}: {l}")),
        );
    }
    let (legacy, conntrack) = NetNs::open(&Endpoint::named(netns).path)?.run(|| {
        let legacy: Vec<String> = [
            // thread-self: /proc/self/net is the main thread's namespace.
            "/proc/thread-self/net/ip6_tables_names",
            "/proc/thread-self/net/ip_tables_names",
        ]
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .map(|t| format!("legacy table {t}"))
                .collect::<Vec<_>>()
        })
        .collect();
        // Absent: this kernel has no conntrack at all.
        let conntrack = std::fs::read_to_string("/proc/sys/net/netfilter/nf_conntrack_count")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "0".into());
        (legacy, conntrack)
    })?;
    found.extend(legacy);
    if conntrack != "0" {
        found.push(format!("nf_conntrack_count {conntrack}"));
    }
    Ok(found)
}

/// cni6's chain: the topology's bridge6 + ipam-prefix conflist with
/// firewall6 appended as the design ships it (default ingress
/// cluster-only; the cluster ULA is inside).
fn add_firewall6(topo: &Topology) -> Result<()> {
    for node in topo.nodes() {
        let path = topo.conflist_path(node.index);
        let mut list = read_json(&path)?;
        list["plugins"]
            .as_array_mut()
            .ok_or_else(|| Error::Check(format!("{}: no plugins array", path.display())))?
            .push(json!({
                "type": "firewall6",
                "clusterPrefixes": [topo.spec().cluster.to_string()],
            }));
        write_json(&path, &list)?;
    }
    Ok(())
}

/// The reference chain with the pod ranges ipam-prefix derives on each
/// node (so the fabric's routes serve both), gateways `::1` on the bridge.
fn write_reference_conflists(topo: &Topology) -> Result<()> {
    let bridge = topo.link_name("br")?;
    for node in topo.nodes() {
        let ula = topology::Node::pod_range(&node.ula_prefix, 1);
        let gua = topology::Node::pod_range(&node.gua_prefix, 1);
        let at = |net: &ipnet::Ipv6Net, k: u128| Ipv6Addr::from(u128::from(net.network()) | k);
        let range = |net: &ipnet::Ipv6Net| {
            json!([{
                "subnet": net.to_string(),
                "rangeStart": at(net, 0x10).to_string(),
                "gateway": at(net, 1).to_string(),
            }])
        };
        let list = json!({
            "cniVersion": "1.0.0",
            "name": topology::CLUSTER_NETWORK,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": bridge,
                    "isGateway": true,
                    "mtu": POD_MTU,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": node.dir.join("host-local"),
                        "ranges": [range(&ula), range(&gua)],
                        "routes": [ { "dst": "::/0", "gw": at(&ula, 1).to_string() } ]
                    }
                },
                { "type": "firewall", "backend": "iptables" }
            ]
        });
        write_json(&topo.conflist_path(node.index), &list)?;
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        context: format!("read {}", path.display()),
        source: e,
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Check(format!("{}: not JSON: {e}", path.display())))
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    std::fs::write(path, serde_json::to_vec_pretty(v).expect("json")).map_err(|e| Error::Io {
        context: format!("write {}", path.display()),
        source: e,
    })
}

/// The floor: two namespaces joined by nothing but a veth pair (the pod
/// MTU, addresses without DAD). Returns the server side's address.
fn wire_floor(floor: &[Pod]) -> Result<Ipv6Addr> {
    let (a, b) = (&floor[0].name, &floor[1].name);
    let client: Ipv6Addr = format!("{FLOOR_NET}1").parse().expect("literal");
    let server: Ipv6Addr = format!("{FLOOR_NET}2").parse().expect("literal");
    let ip = |ns: &str, args: &str| {
        let mut c = Command::new("ip");
        c.args(["-n", ns]).args(args.split_whitespace());
        topology::run(c)
    };
    ip(
        a,
        &format!("link add fl0 mtu {POD_MTU} type veth peer name fl1 mtu {POD_MTU} netns {b}"),
    )?;
    for (ns, dev, addr) in [(a, "fl0", client), (b, "fl1", server)] {
        ip(ns, "link set lo up")?;
        ip(ns, &format!("addr add {addr}/64 dev {dev} nodad"))?;
        ip(ns, &format!("link set {dev} up"))?;
    }
    Ok(server)
}
