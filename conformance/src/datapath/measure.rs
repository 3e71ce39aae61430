//! The measurements: rounds over every path, one iperf3 run, one
//! ping-pong series.

use super::*;

/// Rounds over every path: one stream, then eight, then a share of the
/// ping-pong; the chains alternate, and which goes first rotates by path
/// and by round ([`turn`]), so a burst of load elsewhere on the machine
/// lands on different cells each round. Throughput is the median over
/// the rounds; CPU per GB pools every round's CPU and bytes; latency
/// pools every round's samples.
pub(super) fn measure(labs: &[Lab], opts: &Options) -> Result<Vec<Measurement>> {
    let rounds = opts.size.rounds();
    let cells = PathKind::ALL.len() * labs.len();
    let mut single: Vec<Vec<Run>> = vec![Vec::new(); cells];
    let mut multi: Vec<Vec<Run>> = vec![Vec::new(); cells];
    let mut rtts: Vec<Vec<Duration>> = vec![Vec::new(); cells];
    for round in 0..rounds {
        for (k, path) in PathKind::ALL.into_iter().enumerate() {
            let order = turn(labs.len(), k + round);
            for &i in &order {
                check(opts)?;
                single[k * labs.len() + i].push(iperf(
                    &labs[i],
                    path,
                    1,
                    &opts.size.iperf_bound(),
                )?);
            }
            for &i in order.iter().rev() {
                check(opts)?;
                multi[k * labs.len() + i].push(iperf(&labs[i], path, 8, &opts.size.iperf_bound())?);
            }
            for &i in &order {
                check(opts)?;
                let lab = &labs[i];
                let count = opts.size.round_trips() / rounds;
                let samples = ping_pong(lab.route(path), count, opts.size).map_err(|e| {
                    Error::Check(format!(
                        "{} {}: ping-pong: {e}",
                        lab.chain.label(),
                        path.label()
                    ))
                })?;
                rtts[k * labs.len() + i].extend(samples);
            }
        }
        eprintln!("datapath: round {} of {rounds} done", round + 1);
    }
    let mut rows = Vec::new();
    for (k, path) in PathKind::ALL.into_iter().enumerate() {
        for (i, lab) in labs.iter().enumerate() {
            let c = k * labs.len() + i;
            let row = Measurement {
                path,
                chain: lab.chain,
                single: Throughput::of(&single[c]),
                multi: Throughput::of(&multi[c]),
                rr: Latency::of(&mut rtts[c])?,
            };
            eprintln!(
                "datapath: {:<22} {:<9} {:>6.2} / {:>6.2} Gbit/s (runs: {}), RR p50 {:.1} us",
                path.label(),
                lab.chain.label(),
                row.single.gbit(),
                row.multi.gbit(),
                single[c]
                    .iter()
                    .map(|r| format!("{:.1}", r.bits_per_second / 1e9))
                    .collect::<Vec<_>>()
                    .join(" "),
                row.rr.p50.as_secs_f64() * 1e6
            );
            rows.push(row);
        }
    }
    Ok(rows)
}

/// The order of `n` chains in turn `t` (path index + round): a rotation,
/// so each chain goes first, second, ... equally often over `n` turns
/// (for two chains: alternately forwards and reversed).
pub(super) fn turn(n: usize, t: usize) -> Vec<usize> {
    (0..n).map(|j| (t + j) % n.max(1)).collect()
}

/// A child that is killed (and reaped) unless it was reaped already.
pub(super) struct Reaped {
    pub(super) child: Child,
    pub(super) done: bool,
}

impl Reaped {
    /// Wait until it exits, at most until `deadline` (then kill it);
    /// returns its exit status and its CPU (wait4 rusage).
    pub(super) fn wait(&mut self, what: &str, deadline: Instant) -> Result<(i32, Duration)> {
        let pid = self.child.id() as libc::pid_t;
        loop {
            let mut status = 0;
            // SAFETY: an all-zero rusage is valid; wait4 fills it.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: reaps our own child by pid, without blocking.
            let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut ru) };
            if r == pid {
                self.done = true;
                let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
                let code = if libc::WIFEXITED(status) {
                    libc::WEXITSTATUS(status)
                } else {
                    -1
                };
                return Ok((code, tv(ru.ru_utime) + tv(ru.ru_stime)));
            }
            if r < 0 {
                return Err(Error::Io {
                    context: format!("wait4 {what}"),
                    source: std::io::Error::last_os_error(),
                });
            }
            if Instant::now() > deadline {
                return Err(Error::Check(format!("{what} did not finish in time")));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn_in(ns: &Endpoint, args: &[String], out: &Path) -> Result<Reaped> {
    let file = |p: &Path| {
        File::create(p).map_err(|e| Error::Io {
            context: format!("create {}", p.display()),
            source: e,
        })
    };
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.netns])
        .args(args)
        .stdin(Stdio::null())
        .stdout(file(out)?)
        .stderr(file(&out.with_extension("err"))?)
        .spawn()
        .map_err(|e| Error::Io {
            context: format!("start {} in {}", args.join(" "), ns.netns),
            source: e,
        })?;
    Ok(Reaped { child, done: false })
}

/// Whether the process `pid` is iperf3 (exec done) and has a listening
/// TCP socket on `port` in its namespace (/proc/PID/net follows it).
fn listening(pid: u32, port: u16) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "iperf3" {
        return false;
    }
    let want = format!(":{port:04X}");
    ["tcp6", "tcp"].iter().any(|t| {
        std::fs::read_to_string(format!("/proc/{pid}/net/{t}"))
            .unwrap_or_default()
            .lines()
            .skip(1)
            .any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 3 && f[1].ends_with(&want) && f[3] == "0A"
            })
    })
}

/// Time (clock ticks) of every ksoftirqd thread so far.
fn ksoftirqd_ticks() -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, tail)) = stat.rsplit_once(") ") else {
            continue;
        };
        if !head.contains("(ksoftirqd/") {
            continue;
        }
        // After "pid (comm) ": state is field 3, utime 14, stime 15.
        let f: Vec<&str> = tail.split_whitespace().collect();
        total += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    total
}

fn clock_tick() -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(1_000_000_000 / hz)
}

/// One iperf3 run over `path` in `lab`: a one-off server in the server's
/// namespace, the client in the client's, both reaped for their CPU.
pub(super) fn iperf(lab: &Lab, path: PathKind, streams: u32, bound: &[String]) -> Result<Run> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let r = lab.route(path);
    let what = format!("{} {} -P {streams}", lab.chain.label(), path.label());
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let dir = lab.topo.dir();
    let port = IPERF_PORT.to_string();
    let server_args: Vec<String> = ["iperf3", "-s", "-1", "-p", &port]
        .map(String::from)
        .to_vec();
    let mut server = spawn_in(
        &r.server,
        &server_args,
        &dir.join(format!("iperf-s{n}.txt")),
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening(server.child.id(), IPERF_PORT) {
        if let Ok(Some(st)) = server.child.try_wait() {
            server.done = true;
            return Err(Error::Check(format!("{what}: iperf3 server exited ({st})")));
        }
        if Instant::now() > deadline {
            return Err(Error::Check(format!(
                "{what}: iperf3 server not listening after 10 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut client_args: Vec<String> = ["iperf3", "-c", &r.addr.to_string(), "-p", &port]
        .map(String::from)
        .to_vec();
    client_args.extend(
        [
            "-J",
            "-i",
            "0",
            "--connect-timeout",
            "5000",
            "-P",
            &streams.to_string(),
        ]
        .map(String::from),
    );
    client_args.extend(bound.iter().cloned());
    let out = dir.join(format!("iperf-c{n}.json"));
    let soft0 = ksoftirqd_ticks();
    let mut client = spawn_in(&r.client, &client_args, &out)?;
    let limit = Instant::now() + Duration::from_secs(60);
    let (code, client_cpu) = client.wait(&format!("{what}: iperf3 client"), limit)?;
    let (_, server_cpu) = server.wait(
        &format!("{what}: iperf3 server"),
        Instant::now() + Duration::from_secs(10),
    )?;
    let soft = clock_tick() * (ksoftirqd_ticks().saturating_sub(soft0)) as u32;
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let doc: Value = serde_json::from_str(&text).map_err(|e| {
        Error::Check(format!(
            "{what}: iperf3 printed no JSON ({e}), exit {code}: {text}{}",
            std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
        ))
    })?;
    if let Some(err) = doc["error"].as_str() {
        return Err(Error::Check(format!("{what}: iperf3: {err}")));
    }
    let recv = &doc["end"]["sum_received"];
    let bits_per_second = recv["bits_per_second"].as_f64().unwrap_or(0.0);
    let bytes = recv["bytes"].as_f64().unwrap_or(0.0) as u64;
    if code != 0 || bytes == 0 || bits_per_second <= 0.0 {
        return Err(Error::Check(format!(
            "{what}: iperf3 exit {code}, {bytes} bytes received: {}",
            recv
        )));
    }
    Ok(Run {
        bits_per_second,
        bytes,
        cpu: client_cpu + server_cpu + soft,
    })
}

/// 1-byte TCP ping-pong (TCP_NODELAY) between a client socket made in the
/// client's namespace and a server socket made in the server's, each
/// driven by a thread of this process. A warm-up is not sampled; the
/// series stops at its count or its time limit, whichever comes first.
fn ping_pong(r: &Route, count: usize, size: Size) -> Result<Vec<Duration>> {
    let server_ns = NetNs::open(&r.server.path)?;
    let client_ns = NetNs::open(&r.client.path)?;
    let io = |context: String| move |e: std::io::Error| Error::Io { context, source: e };
    let listener = server_ns
        .run(|| TcpListener::bind(SocketAddrV6::new(r.addr, 0, 0, 0)))?
        .map_err(io(format!("listen on [{}]", r.addr)))?;
    let port = listener
        .local_addr()
        .map_err(io("listener address".into()))?
        .port();
    listener
        .set_nonblocking(true)
        .map_err(io("listener".into()))?;
    let limit = size.rr_limit();
    let warmup = (count / 10).min(200);
    std::thread::scope(|s| {
        let server = s.spawn(move || -> Result<()> {
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut conn = loop {
                match listener.accept() {
                    Ok((c, _)) => break c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            return Err(Error::Check("no ping-pong client within 5 s".into()));
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err(e) => return Err(io("accept".into())(e)),
                }
            };
            conn.set_nonblocking(false)
                .and_then(|_| conn.set_nodelay(true))
                .and_then(|_| conn.set_read_timeout(Some(limit + Duration::from_secs(5))))
                .map_err(io("server socket".into()))?;
            let mut b = [0u8; 1];
            loop {
                match conn.read(&mut b) {
                    Ok(0) => return Ok(()),
                    Ok(_) => conn.write_all(&b).map_err(io("server write".into()))?,
                    Err(e) => return Err(io("server read".into())(e)),
                }
            }
        });
        let client = (|| -> Result<Vec<Duration>> {
            let dst = SocketAddr::V6(SocketAddrV6::new(r.addr, port, 0, 0));
            let mut c = client_ns
                .run(|| TcpStream::connect_timeout(&dst, Duration::from_secs(5)))?
                .map_err(io(format!("connect to {dst}")))?;
            c.set_nodelay(true)
                .and_then(|_| c.set_read_timeout(Some(Duration::from_secs(2))))
                .map_err(io("client socket".into()))?;
            let mut rtts = Vec::with_capacity(count);
            let start = Instant::now();
            let mut b = [0u8; 1];
            for i in 0..warmup + count {
                let t = Instant::now();
                c.write_all(&[i as u8]).map_err(io("client write".into()))?;
                c.read_exact(&mut b).map_err(io("client read".into()))?;
                let rtt = t.elapsed();
                if b[0] != i as u8 {
                    return Err(Error::Check(format!(
                        "ping-pong: sent byte {}, got {}",
                        i as u8, b[0]
                    )));
                }
                if i >= warmup {
                    rtts.push(rtt);
                }
                if start.elapsed() > limit {
                    break;
                }
            }
            Ok(rtts)
        })();
        let served = server
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        let rtts = client?;
        served?;
        Ok(rtts)
    })
}
