//! What the `socketmap` and `tcp` tables share: their server identity for
//! the pool ([`NetServer`]: an endpoint, the protocol, the connection's
//! lifetime limit) and a pooled connection ([`Session`]) that sends a
//! request and reads a reply against one deadline per lookup.
//!
//! Postfix bounds each read and write by 100 s and nothing else, so a
//! server that dribbles one byte at a time holds a lookup forever; here
//! every step of one exchange shares the lookup's deadline.

use super::endpoint::{Endpoint, Stream};
use crate::dict::db_common::pool::{Connection, Rank, Registry, Server};
use std::io::{self, Read, Write};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// The pools of every `socketmap:` and `tcp:` table of this process.
pub(crate) fn registry() -> &'static Registry<NetServer> {
    static NET: LazyLock<Registry<NetServer>> = LazyLock::new(Registry::new);
    &NET
}

/// Which table type speaks to the server (part of the identity: a
/// socketmap table and a tcp table never share a connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Protocol {
    Socketmap,
    Tcp,
}

/// One server of a network table. Equal values share a pool.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NetServer {
    protocol: Protocol,
    endpoint: Endpoint,
    /// The endpoint as Postfix's connect warning names it.
    label: String,
    /// A connection is not reused once this old (socketmap's TTL).
    max_age: Option<Duration>,
}

impl NetServer {
    pub(crate) fn new(protocol: Protocol, endpoint: Endpoint, label: &str, max_age: Option<Duration>) -> NetServer {
        NetServer { protocol, endpoint, label: label.to_string(), max_age }
    }
}

impl Server for NetServer {
    type Conn = Session;

    fn name(&self) -> String {
        match self.protocol {
            Protocol::Socketmap => format!("socketmap server {}", self.endpoint),
            Protocol::Tcp => format!("TCP map {}", self.label),
        }
    }

    fn rank(&self) -> Rank {
        self.endpoint.rank()
    }

    /// The reason is Postfix's connect warning: `connect to <endpoint>:
    /// <error>` (socketmap), `connect to TCP map <host:port>: <error>` (tcp).
    fn connect(&self, timeout: Duration) -> Result<Session, String> {
        let what = match self.protocol {
            Protocol::Socketmap => self.label.clone(),
            Protocol::Tcp => format!("TCP map {}", self.label),
        };
        let stream = self
            .endpoint
            .connect_within(timeout)
            .map_err(|e| format!("connect to {what}: {}", crate::sys::errno::io_error_text(&e)))?;
        Ok(Session { stream, born: Instant::now(), max_age: self.max_age, spent: false, buf: Vec::new() })
    }
}

/// A connection of the pool, with the bytes read and not yet used.
#[derive(Debug)]
pub(crate) struct Session {
    stream: Stream,
    born: Instant,
    max_age: Option<Duration>,
    /// Set when the connection must carry no other request (the server
    /// broke the protocol, sent more than asked, or wants it closed).
    spent: bool,
    buf: Vec<u8>,
}

/// How an I/O step failed.
#[derive(Debug)]
pub(crate) enum IoFailure {
    /// The peer closed or reset the connection (the error, if any).
    Eof(Option<io::Error>),
    /// The lookup's deadline passed.
    Timeout,
}

impl IoFailure {
    fn from_io(e: io::Error) -> IoFailure {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => IoFailure::Timeout,
            _ => IoFailure::Eof(Some(e)),
        }
    }
}

impl Connection for Session {
    fn is_broken(&mut self) -> bool {
        self.spent || self.max_age.is_some_and(|age| self.born.elapsed() >= age) || self.stream.is_closed_or_dirty()
    }
}

impl Session {
    /// Time left before `deadline`, or a timeout.
    fn arm(&self, deadline: Instant) -> Result<(), IoFailure> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(IoFailure::Timeout);
        }
        self.stream.set_timeouts(left).map_err(IoFailure::from_io)
    }

    /// Send a whole request (forgetting any bytes left from before).
    pub(crate) fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), IoFailure> {
        self.buf.clear();
        let mut rest = bytes;
        while !rest.is_empty() {
            self.arm(deadline)?;
            match self.stream.write(rest) {
                Ok(0) => return Err(IoFailure::Eof(None)),
                Ok(n) => rest = &rest[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(IoFailure::from_io(e)),
            }
        }
        Ok(())
    }

    /// Read what the server sent next, appending it to [`Session::received`].
    pub(crate) fn read_more(&mut self, deadline: Instant) -> Result<(), IoFailure> {
        let mut chunk = [0u8; 8192];
        loop {
            self.arm(deadline)?;
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(IoFailure::Eof(None)),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(IoFailure::from_io(e)),
            }
        }
    }

    /// The bytes received since the request was sent.
    pub(crate) fn received(&self) -> &[u8] {
        &self.buf
    }

    /// The reply is whole and took `used` bytes: anything after it was not
    /// asked for, and the connection is not reused.
    pub(crate) fn finish(&mut self, used: usize) {
        if used < self.buf.len() {
            self.spent = true;
        }
        self.buf.clear();
    }

    /// Close the connection once this lookup is done with it.
    pub(crate) fn spend(&mut self) {
        self.spent = true;
    }
}

/// Bytes as text for a log line: valid UTF-8 kept, each other byte `?`
/// (the log's own filter then treats control characters as Postfix's
/// printable() does).
pub(crate) fn lossy(bytes: &[u8], invalid: char) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        out.extend(std::iter::repeat_n(invalid, chunk.invalid().len()));
    }
    out
}

/// At most `max` bytes of `text`, cut at a character boundary (Postfix's
/// `%.<max>s`).
pub(crate) fn at_most(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_text_helpers() {
        assert_eq!(lossy(b"ok \xff\xfe \xc3\xbc", '?'), "ok ?? ü");
        assert_eq!(at_most("abcü", 4), "abc");
        assert_eq!(at_most("abc", 200), "abc");
    }
}

/// `host:port` with a service name for port (`localhost:smtp`, as Postfix
/// allows) made numeric from /etc/services; anything else unchanged (the
/// endpoint parser then refuses what is wrong).
pub(crate) fn numeric_service(hostport: &str) -> String {
    let Some((host, service)) = hostport.rsplit_once(':') else { return hostport.to_string() };
    if service.is_empty() || service.bytes().all(|b| b.is_ascii_digit()) {
        return hostport.to_string();
    }
    match std::fs::read_to_string("/etc/services").ok().and_then(|text| tcp_port(&text, service)) {
        Some(port) => format!("{host}:{port}"),
        None => hostport.to_string(),
    }
}

/// The TCP port of `service` in services(5) text.
fn tcp_port(services: &str, service: &str) -> Option<u16> {
    services.lines().find_map(|line| {
        let mut words = line.split('#').next()?.split_whitespace();
        let name = words.next()?;
        let (port, proto) = words.next()?.split_once('/')?;
        (proto == "tcp" && (name == service || words.any(|alias| alias == service))).then(|| port.parse().ok())?
    })
}

#[cfg(test)]
mod service_tests {
    use super::*;

    #[test]
    fn service_names_become_ports() {
        let text = "# comment\nsmtp\t\t25/tcp\t\tmail\nsubmission 587/tcp\nsyslog 514/udp\n";
        assert_eq!(tcp_port(text, "smtp"), Some(25));
        assert_eq!(tcp_port(text, "mail"), Some(25));
        assert_eq!(tcp_port(text, "syslog"), None);
        assert_eq!(tcp_port(text, "nope"), None);
        assert_eq!(numeric_service("127.0.0.1:9"), "127.0.0.1:9");
        assert_eq!(numeric_service("[::1]:9"), "[::1]:9");
        assert_eq!(numeric_service("nocolon"), "nocolon");
    }
}
