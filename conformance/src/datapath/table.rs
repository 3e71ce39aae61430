//! The report's table: ratios against their targets.

use super::*;

/// A lower-is-better or higher-is-better target on a ratio.
#[derive(Debug, Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
}

impl Target {
    fn met(self, v: f64) -> bool {
        match self {
            Target::AtLeast(t) => v >= t,
            Target::AtMost(t) => v <= t,
        }
    }
    fn label(self) -> String {
        match self {
            Target::AtLeast(t) => format!(">= {t:.2}"),
            Target::AtMost(t) => format!("<= {t:.2}"),
        }
    }
}

/// `a` over `b`: 1x and 8x throughput, RR p50, 1x and 8x CPU per GB
/// (0 where `b` has no figure).
fn five_ratios(a: &Measurement, b: &Measurement) -> [f64; 5] {
    let ratio = |x: f64, y: f64| if y > 0.0 { x / y } else { 0.0 };
    [
        ratio(a.single.bits_per_second, b.single.bits_per_second),
        ratio(a.multi.bits_per_second, b.multi.bits_per_second),
        ratio(a.rr.p50.as_secs_f64(), b.rr.p50.as_secs_f64()),
        ratio(a.single.cpu_per_gb(), b.single.cpu_per_gb()),
        ratio(a.multi.cpu_per_gb(), b.multi.cpu_per_gb()),
    ]
}

impl Report {
    fn get(&self, path: PathKind, chain: ChainKind) -> Option<&Measurement> {
        self.rows
            .iter()
            .find(|m| m.path == path && m.chain == chain)
    }

    /// The table `bench --datapath` prints.
    pub fn render(&self) -> String {
        let m = &self.machine;
        let mut o = String::new();
        let cycles = m
            .cpu_mhz
            .map_or("no clock stated".to_string(), |mhz| format!("{mhz:.0} MHz"));
        let _ = writeln!(
            o,
            "# data path: cni6 (bridge6+ipam-prefix+firewall6) vs reference (bridge+host-local+firewall, {}) and cni6 bare (no firewall6)",
            self.reference_dir.display()
        );
        let _ = writeln!(
            o,
            "# machine: {} cores, kernel {}, {cycles}, iperf3 {}; {}; TCP over IPv6, pod MTU {POD_MTU}",
            m.cores,
            m.kernel,
            m.iperf3,
            self.size.describe()
        );
        let nf: Vec<String> = self
            .bridge_nf
            .iter()
            .map(|(c, v)| format!("{} {v}", c.label()))
            .collect();
        let _ = writeln!(
            o,
            "# bridge-nf-call-ip6tables in the nodes: {}; CPU = iperf3 client + server + ksoftirqd (rusage), Gcyc = CPU s x clock",
            nf.join(", ")
        );
        if let Some(n) = self.bare_checked {
            let _ = writeln!(
                o,
                "# cni6 bare: bridge6+ipam-prefix, no firewall6; its {n} namespaces checked after attach, probe and measurements: no ip(6)tables table, no conntrack entry"
            );
        }
        let _ = writeln!(
            o,
            "# load average before {} / after {} (throughput falls with load from elsewhere; CPU per GB much less)",
            self.load.0, self.load.1
        );
        let _ = writeln!(
            o,
            "{:<22} {:<9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
            "path",
            "chain",
            "1x Gb/s",
            "8x Gb/s",
            "RR p50us",
            "RR p99us",
            "CPUs/GB1",
            "CPUs/GB8",
            "Gcyc/GB1"
        );
        for path in PathKind::ALL {
            for chain in ChainKind::ALL {
                let Some(r) = self.get(path, chain) else {
                    continue;
                };
                let gcyc = m.cpu_mhz.map_or("-".to_string(), |mhz| {
                    format!("{:.2}", r.single.cpu_per_gb() * mhz / 1e3)
                });
                let _ = writeln!(
                    o,
                    "{:<22} {:<9} {:>9.2} {:>9.2} {:>9.1} {:>9.1} {:>8.3} {:>8.3} {:>8}",
                    path.label(),
                    chain.label(),
                    r.single.gbit(),
                    r.multi.gbit(),
                    r.rr.p50.as_secs_f64() * 1e6,
                    r.rr.p99.as_secs_f64() * 1e6,
                    r.single.cpu_per_gb(),
                    r.multi.cpu_per_gb(),
                    gcyc
                );
            }
        }
        self.render_ratios(&mut o);
        if !self.profiles.is_empty() {
            render_profiles(&self.profiles, &mut o);
        }
        o
    }

    fn render_ratios(&self, o: &mut String) {
        let header = |o: &mut String, title: &str, cols: [&str; 4]| {
            let _ = writeln!(
                o,
                "{:<42} {:>8} {:>8} {:>8} {:>8} {:>8}  cni6",
                title, cols[0], cols[1], cols[2], cols[3], "target"
            );
        };
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        header(
            o,
            "# throughput ratios (issue 20 targets)",
            ["cni6 1x", "cni6 8x", "ref 1x", "ref 8x"],
        );
        // The comparison; the bare chain has sections of its own.
        const COMPARED: [ChainKind; 2] = [ChainKind::Cni6, ChainKind::Reference];
        let tput = [
            (
                PathKind::PodPodAcrossNodes,
                PathKind::NodeNode,
                Target::AtLeast(0.85),
            ),
            (
                PathKind::PodPodSameNode,
                PathKind::VethPair,
                Target::AtLeast(0.90),
            ),
            (
                PathKind::PodOutside,
                PathKind::NodeOutside,
                Target::AtLeast(0.85),
            ),
        ];
        for (pod, base, target) in tput {
            let mut v = Vec::new();
            for chain in COMPARED {
                let (Some(a), Some(b)) = (self.get(pod, chain), self.get(base, chain)) else {
                    continue;
                };
                v.push(ratio(a.single.bits_per_second, b.single.bits_per_second));
                v.push(ratio(a.multi.bits_per_second, b.multi.bits_per_second));
            }
            self.ratio_row(
                o,
                &format!("{} / {}", pod.label(), base.label()),
                &v,
                target,
            );
        }
        header(
            o,
            "# CPU per GB ratios (lower is better)",
            ["cni6 1x", "cni6 8x", "ref 1x", "ref 8x"],
        );
        for (pod, base, _) in tput {
            let mut v = Vec::new();
            for chain in COMPARED {
                let (Some(a), Some(b)) = (self.get(pod, chain), self.get(base, chain)) else {
                    continue;
                };
                v.push(ratio(a.single.cpu_per_gb(), b.single.cpu_per_gb()));
                v.push(ratio(a.multi.cpu_per_gb(), b.multi.cpu_per_gb()));
            }
            let cells: Vec<String> = v.iter().map(|x| format!("{x:>8.2}")).collect();
            let label = format!("{} / {}", pod.label(), base.label());
            let _ = writeln!(o, "{label:<42} {} {:>8}  -", cells.join(" "), "-");
        }
        header(
            o,
            "# latency ratios (RR, lower is better)",
            ["cni6 p50", "cni6 p99", "ref p50", "ref p99"],
        );
        for (pod, base, target) in [
            (
                PathKind::PodPodAcrossNodes,
                PathKind::NodeNode,
                Some(Target::AtMost(1.2)),
            ),
            (PathKind::PodPodSameNode, PathKind::VethPair, None),
        ] {
            let mut v = Vec::new();
            for chain in COMPARED {
                let (Some(a), Some(b)) = (self.get(pod, chain), self.get(base, chain)) else {
                    continue;
                };
                v.push(ratio(a.rr.p50.as_secs_f64(), b.rr.p50.as_secs_f64()));
                v.push(ratio(a.rr.p99.as_secs_f64(), b.rr.p99.as_secs_f64()));
            }
            let label = format!("{} / {}", pod.label(), base.label());
            match target {
                Some(t) => self.ratio_row(o, &label, &v, t),
                None => {
                    let cells: Vec<String> = v.iter().map(|x| format!("{x:>8.2}")).collect();
                    let _ = writeln!(o, "{label:<42} {} {:>8}  -", cells.join(" "), "-");
                }
            }
        }
        self.render_chain_ratios(
            o,
            "# cni6 / reference on the same path",
            ChainKind::Cni6,
            ChainKind::Reference,
        );
        self.render_bare(o, &tput);
    }

    /// Chain `a` over chain `b` on every path: throughput (1 and 8
    /// streams), RR p50, CPU per GB (1 and 8 streams).
    fn render_chain_ratios(&self, o: &mut String, title: &str, a: ChainKind, b: ChainKind) {
        let _ = writeln!(
            o,
            "{:<42} {:>8} {:>8} {:>8} {:>8} {:>8}",
            title, "1x Gb/s", "8x Gb/s", "RR p50", "CPU/GB1", "CPU/GB8"
        );
        for path in PathKind::ALL {
            let (Some(x), Some(y)) = (self.get(path, a), self.get(path, b)) else {
                continue;
            };
            let _ = writeln!(
                o,
                "{:<42} {}",
                path.label(),
                five_ratios(x, y).map(|r| format!("{r:>8.2}")).join(" ")
            );
        }
    }

    /// The bare chain: each pod path over its baseline in the bare
    /// topology (what veths, bridges and forwarding cost, against the
    /// issue's throughput target), then cni6 over bare on every path
    /// (what firewall6's rules and the conntrack they turn on cost).
    fn render_bare(&self, o: &mut String, pairs: &[(PathKind, PathKind, Target)]) {
        if !self.rows.iter().any(|m| m.chain == ChainKind::Bare) {
            return;
        }
        let _ = writeln!(
            o,
            "{:<42} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  bare",
            "# bare path / its baseline (no netfilter)",
            "1x Gb/s",
            "8x Gb/s",
            "RR p50",
            "CPU/GB1",
            "CPU/GB8",
            "target"
        );
        for &(pod, base, target) in pairs {
            let (Some(a), Some(b)) = (
                self.get(pod, ChainKind::Bare),
                self.get(base, ChainKind::Bare),
            ) else {
                continue;
            };
            let v = five_ratios(a, b);
            let verdict = if target.met(v[0]) && target.met(v[1]) {
                "met"
            } else {
                "missed"
            };
            let cells: Vec<String> = v.iter().map(|r| format!("{r:>8.2}")).collect();
            let _ = writeln!(
                o,
                "{:<42} {} {:>8}  {verdict}",
                format!("{} / {}", pod.label(), base.label()),
                cells.join(" "),
                target.label()
            );
        }
        self.render_chain_ratios(
            o,
            "# firewall6's cost: cni6 / cni6 bare",
            ChainKind::Cni6,
            ChainKind::Bare,
        );
    }

    /// A ratio row: cni6's two figures, the reference's two, the target,
    /// and whether cni6 meets it in both.
    fn ratio_row(&self, o: &mut String, label: &str, v: &[f64], target: Target) {
        let cells: Vec<String> = v.iter().map(|x| format!("{x:>8.2}")).collect();
        let ours = &v[..v.len().min(2)];
        let verdict = if ours.iter().all(|x| target.met(*x)) {
            "met"
        } else {
            "missed"
        };
        let _ = writeln!(
            o,
            "{label:<42} {} {:>8}  {verdict}",
            cells.join(" "),
            target.label()
        );
    }
}
