//! How a driver reaches the network: the [`Transport`] trait, and its UDP
//! implementation every runtime shares, so that runtimes stay glue: sends never
//! wait, and on Linux the socket's error queue tells the node *which* destination
//! answered with ICMP "port unreachable" (a process that died on a host that is
//! still up).
//!
//! On Linux, [`report_bounces`] sets `IP_RECVERR` (and `IPV6_RECVERR` on IPv6
//! sockets). Then a later send or receive fails with `ECONNREFUSED`, and
//! [`UdpTransport::take_bounced`] reads the error queue (`MSG_ERRQUEUE`) for the
//! destinations. On other platforms both are no-ops: the node simply never gets
//! the hint and relies on its timeouts.

use std::io;
use std::net::SocketAddr;

use socket2::SockRef;

#[cfg(unix)]
pub(crate) use std::os::fd::AsFd as AsSocket;
#[cfg(windows)]
pub(crate) use std::os::windows::io::AsSocket;

/// How a driver sends: a non-blocking send, and (where the OS tells) which
/// destinations bounced. Any `FnMut(SocketAddr, &[u8]) -> io::Result<()>` is a
/// transport that never learns of bounces.
pub trait Transport {
    /// Sends one datagram without waiting.
    fn send_to(&mut self, to: SocketAddr, payload: &[u8]) -> io::Result<()>;

    /// Appends the destinations whose datagrams bounced ("port unreachable"),
    /// as queued by the OS since the last call. The default knows of none.
    fn take_bounced(&mut self, out: &mut Vec<SocketAddr>) {
        let _ = out;
    }
}

impl<F: FnMut(SocketAddr, &[u8]) -> io::Result<()>> Transport for F {
    fn send_to(&mut self, to: SocketAddr, payload: &[u8]) -> io::Result<()> {
        self(to, payload)
    }
}

/// Most bounce reports read from the error queue in one go, so a storm of them
/// cannot keep the node's thread from its other work.
const MAX_BOUNCES_PER_READ: usize = 256;

/// A [`Transport`] over a borrowed, non-blocking UDP socket (std, tokio or smol's).
///
/// ```no_run
/// use std::net::UdpSocket;
/// use beethoven_driver::{UdpTransport, report_bounces};
///
/// let socket = UdpSocket::bind("127.0.0.1:0")?;
/// socket.set_nonblocking(true)?;
/// report_bounces(&socket); // logged if the OS refuses
/// let mut transport = UdpTransport::new(&socket);
/// // driver.step(now, input, &mut transport);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UdpTransport<'a, S: AsSocket> {
    socket: &'a S,
}

impl<'a, S: AsSocket> UdpTransport<'a, S> {
    /// Wraps a socket; cheap, make one per step.
    pub fn new(socket: &'a S) -> Self {
        Self { socket }
    }
}

impl<S: AsSocket> Transport for UdpTransport<'_, S> {
    fn send_to(&mut self, to: SocketAddr, payload: &[u8]) -> io::Result<()> {
        SockRef::from(self.socket)
            .send_to(payload, &to.into())
            .map(drop)
    }

    fn take_bounced(&mut self, out: &mut Vec<SocketAddr>) {
        read_error_queue(self.socket, out);
    }
}

/// Asks the OS to report which destinations bounce (Linux: `IP_RECVERR`,
/// `IPV6_RECVERR`). Returns whether it will; a failure is logged, and the node
/// then finds crashes by its timeouts alone. Elsewhere does nothing.
pub fn report_bounces<S: AsSocket>(socket: &S) -> bool {
    match enable_error_queue(socket) {
        Ok(enabled) => enabled,
        Err(error) => {
            tracing::warn!(%error, "no port-unreachable reports: crashes are found by timeouts only");
            false
        }
    }
}

#[cfg(target_os = "linux")]
fn enable_error_queue<S: AsSocket>(socket: &S) -> io::Result<bool> {
    use nix::sys::socket::{setsockopt, sockopt};
    let local = SockRef::from(socket).local_addr()?;
    setsockopt(socket, sockopt::Ipv4RecvErr, &true).map_err(io::Error::from)?;
    if local.is_ipv6() {
        setsockopt(socket, sockopt::Ipv6RecvErr, &true).map_err(io::Error::from)?;
    }
    Ok(true)
}

#[cfg(not(target_os = "linux"))]
fn enable_error_queue<S: AsSocket>(_socket: &S) -> io::Result<bool> {
    Ok(false)
}

/// Reads queued "port unreachable" reports; each names the destination that bounced.
#[cfg(target_os = "linux")]
fn read_error_queue<S: AsSocket>(socket: &S, out: &mut Vec<SocketAddr>) {
    use std::io::IoSliceMut;
    use std::os::fd::AsRawFd;

    use nix::libc;
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrLike, SockaddrStorage, recvmsg};

    let fd = socket.as_fd().as_raw_fd();
    for _ in 0..MAX_BOUNCES_PER_READ {
        let mut payload = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut payload)];
        let mut control = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
        let flags = MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT;
        let Ok(message) = recvmsg::<SockaddrStorage>(fd, &mut iov, Some(&mut control), flags)
        else {
            return; // EAGAIN: the queue is empty
        };
        let refused = message.cmsgs().is_ok_and(|mut cmsgs| {
            cmsgs.any(|cmsg| match cmsg {
                ControlMessageOwned::Ipv4RecvErr(error, _)
                | ControlMessageOwned::Ipv6RecvErr(error, _) => {
                    error.ee_errno == libc::ECONNREFUSED as u32
                }
                _ => false,
            })
        });
        let destination = message.address.and_then(|addr| {
            if let Some(v4) = addr.as_sockaddr_in() {
                Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
            } else {
                addr.as_sockaddr_in6()
                    .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
            }
        });
        match destination {
            Some(addr) if refused => out.push(addr),
            _ => {
                tracing::debug!(family = ?message.address.map(|a| a.family()), "ignored an error-queue report")
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn read_error_queue<S: AsSocket>(_socket: &S, _out: &mut Vec<SocketAddr>) {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::{Duration, Instant};

    #[test]
    fn sends_go_out_without_waiting() {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
        a.set_nonblocking(true).expect("non-blocking");
        let mut transport = UdpTransport::new(&a);
        transport
            .send_to(b.local_addr().expect("bound"), b"hello")
            .expect("sent");
        let mut buf = [0u8; 16];
        b.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let (len, from) = b.recv_from(&mut buf).expect("received");
        assert_eq!(&buf[..len], b"hello");
        assert_eq!(from, a.local_addr().expect("bound"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_datagram_to_a_closed_port_is_reported_with_its_destination() {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket.set_nonblocking(true).expect("non-blocking");
        assert!(report_bounces(&socket), "IP_RECVERR");
        let closed = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let gone = closed.local_addr().expect("bound");
        drop(closed);
        let mut transport = UdpTransport::new(&socket);
        let _ = transport.send_to(gone, b"anyone?");
        // The ICMP report is asynchronous (microseconds on loopback): poll for it.
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut bounced = Vec::new();
        while bounced.is_empty() && Instant::now() < deadline {
            transport.take_bounced(&mut bounced);
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(bounced, [gone]);
        bounced.clear();
        transport.take_bounced(&mut bounced);
        assert!(bounced.is_empty(), "each report is read once");
    }
}
