//! Captures on the fabric's ports and the pcap parsing that shows what
//! crossed the fabric (the no-overlay proof).

use super::traffic::tcp_echo;
use super::{Error, Result, Topology};
use std::io::{BufRead, BufReader};
use std::net::Ipv6Addr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A packet seen on the fabric, reduced to what the no-overlay proof needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricPacket {
    /// The node whose fabric port carried it (a packet between two nodes is
    /// seen twice: leaving the sender's port, entering the receiver's).
    pub port: u16,
    pub ethertype: u16,
    /// IPv6 only (None for other ethertypes).
    pub src: Option<Ipv6Addr>,
    pub dst: Option<Ipv6Addr>,
    /// Upper-layer protocol: for IPv6 after hop-by-hop, routing and
    /// destination-options headers; for IPv4 the header's protocol field
    /// (6 = TCP, 17 = UDP, 58 = ICMPv6, 41 = IPv6-in-IPv6, 4 = IPIP, 47 = GRE).
    pub protocol: Option<u8>,
}

/// tcpdump on every node's port of the fabric bridge (in the underlay
/// namespace), writing pcap files in the state dir. The ports, not the
/// bridge device: a bridge's own tap sees only frames flooded or delivered
/// to it, not unicast forwarded between ports.
#[derive(Debug)]
pub struct FabricCapture {
    ports: Vec<(u16, Option<Child>, PathBuf)>,
}

impl FabricCapture {
    /// Start capturing and wait until every port's capture demonstrably
    /// records packets.
    pub fn start(topo: &Topology, name: &str) -> Result<FabricCapture> {
        let mut cap = FabricCapture { ports: Vec::new() };
        let mut ready = Vec::new();
        for node in &topo.nodes {
            let file = topo.dir.join(format!("{name}-n{}.pcap", node.index));
            let mut cmd = topo.underlay_command("tcpdump");
            cmd.args(["-i", &format!("{}n{}", topo.base, node.index)])
                // Immediate mode: packets reach tcpdump at once, not in
                // blocks a timeout later (which SIGINT would discard).
                .args(["-n", "-U", "--immediate-mode", "-s", "256", "-w"])
                .arg(&file)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .map_err(|e| Error::io("start tcpdump (is it installed?)", e))?;
            let stderr = child.stderr.take().expect("piped");
            cap.ports.push((node.index, Some(child), file));
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut lines = BufReader::new(stderr).lines();
                let mut said = Vec::new();
                for line in lines.by_ref().map_while(|l| l.ok()) {
                    let listening = line.contains("listening on");
                    said.push(line);
                    if listening {
                        let _ = tx.send(Ok(()));
                        // Keep draining so tcpdump never blocks on stderr.
                        for _ in lines.by_ref() {}
                        return;
                    }
                }
                let _ = tx.send(Err(said.join("\n")));
            });
            ready.push(rx);
        }
        for rx in ready {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok(Ok(())) => {}
                Ok(Err(said)) => {
                    return Err(Error::Check(format!("tcpdump did not start: {said}")))
                }
                Err(_) => return Err(Error::Check("tcpdump not listening after 10 s".into())),
            }
        }
        cap.wait_until_live(topo)?;
        Ok(cap)
    }

    /// "listening on" comes before the first packet is surely recorded:
    /// send node-to-node probes over the underlay until each port's file
    /// holds one (tcpdump -U writes each packet as it comes), so nothing the
    /// caller sends next is missed.
    fn wait_until_live(&self, topo: &Topology) -> Result<()> {
        if topo.nodes.len() < 2 {
            return Ok(());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut live = vec![false; topo.nodes.len()];
        while Instant::now() < deadline {
            for (i, a) in topo.nodes.iter().enumerate() {
                if live[i] {
                    continue;
                }
                let b = &topo.nodes[(i + 1) % topo.nodes.len()];
                tcp_echo(
                    &b.netns_path(),
                    b.underlay_addr,
                    &a.netns_path(),
                    b"capture probe",
                    Duration::from_secs(1),
                )?;
            }
            std::thread::sleep(Duration::from_millis(20));
            for (i, (_, _, file)) in self.ports.iter().enumerate() {
                let me = topo.nodes[i].underlay_addr;
                let bytes = std::fs::read(file).unwrap_or_default();
                live[i] = parse_pcap(&bytes, 0)
                    .unwrap_or_default()
                    .iter()
                    .any(|p| p.src == Some(me) || p.dst == Some(me));
            }
            if live.iter().all(|l| *l) {
                return Ok(());
            }
        }
        Err(Error::Check(
            "tcpdump records no packet of a probe after 10 s".into(),
        ))
    }

    fn kill(&mut self) {
        for (_, child, _) in &mut self.ports {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Stop (SIGINT, so tcpdump flushes) and read the packets back, port by
    /// port.
    pub fn stop(mut self) -> Result<Vec<FabricPacket>> {
        for (_, child, _) in &mut self.ports {
            if let Some(c) = child.as_ref() {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (_, child, _) in &mut self.ports {
            if let Some(mut c) = child.take() {
                while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let mut out = Vec::new();
        for (port, _, file) in &self.ports {
            let bytes = std::fs::read(file)
                .map_err(|e| Error::io(format!("read {}", file.display()), e))?;
            out.extend(parse_pcap(&bytes, *port)?);
        }
        Ok(out)
    }
}

impl Drop for FabricCapture {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Parse a classic pcap file of Ethernet frames.
/// `port` is recorded in each packet.
pub fn parse_pcap(bytes: &[u8], port: u16) -> Result<Vec<FabricPacket>> {
    let bad = |why: &str| Error::Check(format!("pcap: {why}"));
    if bytes.len() < 24 {
        return Err(bad("shorter than its header"));
    }
    let magic = u32::from_le_bytes(bytes[0..4].try_into().expect("4"));
    let le = match magic {
        0xa1b2_c3d4 | 0xa1b2_3c4d => true,
        0xd4c3_b2a1 | 0x4d3c_b2a1 => false,
        _ => return Err(bad("unknown magic")),
    };
    let u32_at = |b: &[u8], o: usize| {
        let a: [u8; 4] = b[o..o + 4].try_into().expect("4");
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    if u32_at(bytes, 20) != 1 {
        return Err(bad("link type is not Ethernet"));
    }
    let mut out = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let incl = u32_at(bytes, off + 8) as usize;
        let start = off + 16;
        let end = start + incl;
        if end > bytes.len() {
            break; // a record cut by the stop: ignore it
        }
        out.push(parse_frame(&bytes[start..end], port));
        off = end;
    }
    Ok(out)
}

fn parse_frame(f: &[u8], port: u16) -> FabricPacket {
    let mut pkt = FabricPacket {
        port,
        ethertype: 0,
        src: None,
        dst: None,
        protocol: None,
    };
    if f.len() < 14 {
        return pkt;
    }
    let mut et = u16::from_be_bytes([f[12], f[13]]);
    let mut l3 = 14;
    while et == 0x8100 && f.len() >= l3 + 4 {
        et = u16::from_be_bytes([f[l3 + 2], f[l3 + 3]]);
        l3 += 4;
    }
    pkt.ethertype = et;
    if et == 0x0800 && f.len() >= l3 + 20 {
        // IPv4 has no place on this fabric; keep its protocol for the report.
        pkt.protocol = Some(f[l3 + 9]);
        return pkt;
    }
    if et != 0x86dd || f.len() < l3 + 40 {
        return pkt;
    }
    let ip = &f[l3..];
    let addr = |o: usize| Ipv6Addr::from(<[u8; 16]>::try_from(&ip[o..o + 16]).expect("16"));
    pkt.src = Some(addr(8));
    pkt.dst = Some(addr(24));
    let mut next = ip[6];
    let mut o = 40;
    // Skip hop-by-hop (0), routing (43), destination options (60).
    while matches!(next, 0 | 43 | 60) && ip.len() >= o + 2 {
        let len = (usize::from(ip[o + 1]) + 1) * 8;
        next = ip[o];
        o += len;
    }
    pkt.protocol = Some(next);
    pkt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcap_parsing_finds_addresses_and_upper_protocol() {
        let mut f = Vec::new();
        // pcap header: LE magic, v2.4, tz, sigfigs, snaplen, linktype 1
        f.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&4u16.to_le_bytes());
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&256u32.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        // frame: Ethernet + IPv6 with a hop-by-hop header then TCP
        let src: Ipv6Addr = "fd8c:1f0a:77e3:0:1:1:0:10".parse().unwrap();
        let dst: Ipv6Addr = "fd8c:1f0a:77e3:0:2:1:0:10".parse().unwrap();
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x86, 0xdd]);
        let mut ip = vec![0x60, 0, 0, 0, 0, 8, 0, 64];
        ip.extend_from_slice(&src.octets());
        ip.extend_from_slice(&dst.octets());
        ip.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0]);
        frame.extend_from_slice(&ip);
        for v in [0u32, 0, frame.len() as u32, frame.len() as u32] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.extend_from_slice(&frame);
        let pkts = parse_pcap(&f, 3).unwrap();
        assert_eq!(
            pkts,
            vec![FabricPacket {
                port: 3,
                ethertype: 0x86dd,
                src: Some(src),
                dst: Some(dst),
                protocol: Some(6),
            }]
        );
        assert!(parse_pcap(&f[..10], 3).is_err());
    }
}
