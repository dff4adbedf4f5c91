//! Where a network table's server listens, and a connection to it with
//! deadlines: `inet:host:port` or `unix:/path` as Postfix writes endpoints
//! (socketmap, memcache), or a bare `host:port` (tcp). An [`Endpoint`] is a
//! pool server identity (`db_common::pool::Server`), so every table naming
//! one endpoint shares that endpoint's capped pool of [`Stream`]s.
//!
//! Only loopback and UNIX sockets are used by the tests; nothing here
//! limits where an operator's tables point.

use crate::dict::db_common::pool::{Connection, Rank, Server};
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

/// A server address, as a table's configuration names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Endpoint {
    Unix(PathBuf),
    /// Host (a name, an IPv4 address or a bracketed IPv6 address) and port.
    Inet {
        host: String,
        port: u16,
    },
}

impl Endpoint {
    /// `inet:host:port`, `unix:/path`, or (`bare_inet`) `host:port`.
    /// `[::1]:port` for IPv6, as Postfix writes it. Ports are numbers.
    pub(crate) fn parse(spec: &str, bare_inet: bool) -> Result<Endpoint, String> {
        if let Some(path) = spec.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("missing socket path in \"{spec}\""));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let hostport = match spec.strip_prefix("inet:") {
            Some(rest) => rest,
            None if bare_inet => spec,
            None => return Err(format!("unknown transport in \"{spec}\": expected inet: or unix:")),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(|| format!("bad host:port in \"{spec}\""))?;
        let port = port.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("bad port in \"{spec}\""))?;
        Ok(Endpoint::Inet { host: host.to_string(), port })
    }

    /// Connect, giving up after `timeout` (per address tried).
    pub(crate) fn connect_within(&self, timeout: Duration) -> io::Result<Stream> {
        match self {
            // a UNIX-domain connect does not wait for a listener's accept
            Endpoint::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            Endpoint::Inet { host, port } => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let mut last = io::Error::new(io::ErrorKind::NotFound, "host not found");
                for addr in (host, *port).to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            // requests are small and answered one at a time
                            s.set_nodelay(true)?;
                            return Ok(Stream::Tcp(s));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Inet { host, port } => write!(f, "inet:{host}:{port}"),
        }
    }
}

/// `host:port` or `[v6]:port`: the port is after the last colon.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let (host, port) = s.rsplit_once(':')?;
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.is_empty() || port.is_empty() || (host.contains(':') && !bracketed) {
        return None;
    }
    Some((host, port))
}

/// A connection to an [`Endpoint`].
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Stream {
    /// Read and write deadlines: a read or write waiting longer fails with
    /// `WouldBlock`/`TimedOut`, which the tables answer as RETRY.
    pub(crate) fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        match self {
            Stream::Unix(s) => s.set_read_timeout(timeout).and_then(|()| s.set_write_timeout(timeout)),
            Stream::Tcp(s) => s.set_read_timeout(timeout).and_then(|()| s.set_write_timeout(timeout)),
        }
    }

    /// True when the peer closed the connection or sent bytes nobody asked
    /// for: either way the connection cannot carry another request. Does
    /// not wait.
    pub(crate) fn is_closed_or_dirty(&self) -> bool {
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::AsRawFd;
        let fd = match self {
            Stream::Unix(s) => s.as_raw_fd(),
            Stream::Tcp(s) => s.as_raw_fd(),
        };
        let mut byte = [0u8; 1];
        let peeked = recv(fd, &mut byte, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT);
        !matches!(peeked, Err(nix::errno::Errno::EAGAIN))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
        }
    }
}

impl Connection for Stream {
    fn is_broken(&mut self) -> bool {
        self.is_closed_or_dirty()
    }
}

impl Server for Endpoint {
    type Conn = Stream;

    fn name(&self) -> String {
        self.to_string()
    }

    fn rank(&self) -> Rank {
        match self {
            Endpoint::Unix(_) => Rank::Socket,
            Endpoint::Inet { .. } => Rank::Inet,
        }
    }

    fn connect(&self, timeout: Duration) -> Result<Stream, String> {
        let stream = self
            .connect_within(timeout)
            .map_err(|e| format!("connect to {self}: {}", crate::sys::errno::io_error_text(&e)))?;
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::unix::net::UnixListener;

    #[test]
    fn endpoints_parse_as_postfix_writes_them() {
        assert_eq!(Endpoint::parse("unix:/run/x.sock", false), Ok(Endpoint::Unix("/run/x.sock".into())));
        assert_eq!(
            Endpoint::parse("inet:localhost:11211", false),
            Ok(Endpoint::Inet { host: "localhost".into(), port: 11211 })
        );
        assert_eq!(Endpoint::parse("[::1]:25", true), Ok(Endpoint::Inet { host: "[::1]".into(), port: 25 }));
        assert_eq!(Endpoint::parse("127.0.0.1:9", true), Ok(Endpoint::Inet { host: "127.0.0.1".into(), port: 9 }));
        for bad in
            ["127.0.0.1:9", "inet:host", "inet::25", "inet:h:0", "inet:h:99999", "inet:::1:25", "unix:", "tcp:h:1"]
        {
            assert!(Endpoint::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_stream_knows_when_its_peer_went_away() {
        let dir = crate::test_support::TempDir::new("endpoint");
        let path = dir.path().join("s");
        let listener = UnixListener::bind(&path).unwrap();
        let stream = Endpoint::Unix(path).connect_within(Duration::from_secs(1)).unwrap();
        let (mut peer, _) = listener.accept().unwrap();
        assert!(!stream.is_closed_or_dirty());
        peer.write_all(b"x").unwrap();
        assert!(stream.is_closed_or_dirty(), "unasked-for bytes");
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = tcp.local_addr().unwrap().port();
        let stream = Endpoint::Inet { host: "127.0.0.1".into(), port }.connect_within(Duration::from_secs(1)).unwrap();
        let (peer, _) = tcp.accept().unwrap();
        assert!(!stream.is_closed_or_dirty());
        drop(peer);
        assert!(stream.is_closed_or_dirty(), "closed by the peer");
    }
}
