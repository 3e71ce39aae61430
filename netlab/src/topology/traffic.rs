//! Real traffic between the lab's namespaces: a TCP echo.

use super::{Error, Result};
use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// What a TCP exchange saw.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The client's address as the listener saw it (the source the client's
    /// kernel chose).
    pub peer: Ipv6Addr,
    pub elapsed: Duration,
}

/// A real TCP exchange between two namespaces (pods, or nodes): a listener
/// bound to `server_addr` inside the server's namespace, a client inside
/// the client's namespace sends `payload`, the listener echoes it, the
/// client checks it. Sockets are created by short-lived threads that
/// entered the namespace (a socket stays in the namespace it was made in);
/// no thread stays.
pub fn tcp_echo(
    server: &Path,
    server_addr: Ipv6Addr,
    client: &Path,
    payload: &[u8],
    timeout: Duration,
) -> Result<Exchange> {
    let server_ns = cni_common::netns::NetNs::open(server)?;
    let client_ns = cni_common::netns::NetNs::open(client)?;
    let listener = server_ns
        .run(|| TcpListener::bind(SocketAddrV6::new(server_addr, 0, 0, 0)))?
        .map_err(|e| {
            Error::io(
                format!("listen on [{server_addr}] in {}", server.display()),
                e,
            )
        })?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("listener address", e))?
        .port();
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::io("listener nonblocking", e))?;
    let start = Instant::now();
    std::thread::scope(|s| {
        let srv = s.spawn(|| -> Result<Ipv6Addr> {
            let deadline = Instant::now() + timeout;
            let (mut conn, peer) = loop {
                match listener.accept() {
                    Ok(c) => break c,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            return Err(Error::Check(format!(
                                "no connection to [{server_addr}]:{port} in {} within {timeout:?}",
                                server.display()
                            )));
                        }
                        // Wait for the connection itself, not a polling tick,
                        // so the measured time is the exchange's.
                        let mut pfd = libc::pollfd {
                            fd: listener.as_raw_fd(),
                            events: libc::POLLIN,
                            revents: 0,
                        };
                        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
                        // SAFETY: one valid pollfd for the duration of the call.
                        unsafe { libc::poll(&mut pfd, 1, ms) };
                    }
                    Err(e) => return Err(Error::io("accept", e)),
                }
            };
            conn.set_nonblocking(false)
                .and_then(|_| conn.set_read_timeout(Some(timeout)))
                .map_err(|e| Error::io("accepted socket", e))?;
            let mut buf = Vec::new();
            conn.read_to_end(&mut buf)
                .map_err(|e| Error::io("server read", e))?;
            conn.write_all(&buf)
                .map_err(|e| Error::io("server echo", e))?;
            match peer {
                SocketAddr::V6(a) => Ok(*a.ip()),
                SocketAddr::V4(a) => Err(Error::Check(format!("IPv4 peer {a}"))),
            }
        });
        let client_res = (|| -> Result<()> {
            let dst = SocketAddr::V6(SocketAddrV6::new(server_addr, port, 0, 0));
            let mut stream = client_ns
                .run(|| TcpStream::connect_timeout(&dst, timeout))?
                .map_err(|e| Error::io(format!("connect from {} to {dst}", client.display()), e))?;
            stream
                .set_read_timeout(Some(timeout))
                .map_err(|e| Error::io("client socket", e))?;
            stream
                .write_all(payload)
                .and_then(|_| stream.shutdown(std::net::Shutdown::Write))
                .map_err(|e| Error::io("client send", e))?;
            let mut echo = Vec::new();
            stream
                .read_to_end(&mut echo)
                .map_err(|e| Error::io("client read", e))?;
            if echo != payload {
                return Err(Error::Check(format!(
                    "echo from {dst} differs: sent {} bytes, got {}",
                    payload.len(),
                    echo.len()
                )));
            }
            Ok(())
        })();
        let peer = srv.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        client_res?;
        Ok(Exchange {
            peer: peer?,
            elapsed: start.elapsed(),
        })
    })
}
