//! A small blocking proxymap client: the `proxymap client` command and tests.
//! It speaks as Postfix's dict_proxy client does: read the announcement, then
//! one request, one reply.

use crate::protocol::attr::{Context, Scanner};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

pub type Attrs = Vec<(Vec<u8>, Vec<u8>)>;

pub struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connect and consume the server's announcement.
    pub fn connect(path: &Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = Client { stream, buf: Vec::new() };
        let hello = c.read_list()?;
        if hello != [(b"protocol".to_vec(), b"proxymap_protocol".to_vec())] {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad proxymap announcement"));
        }
        Ok(c)
    }

    /// Connect, waiting up to `wait` for a server that is still starting
    /// (no socket yet, or nobody listening on it); other errors at once.
    pub fn connect_waiting(path: &Path, wait: Duration) -> io::Result<Client> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            match Client::connect(path) {
                Err(e)
                    if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    /// Send one request (name/value pairs) and read the reply list.
    pub fn call(&mut self, pairs: &[(&str, &[u8])]) -> io::Result<Attrs> {
        let mut req = Vec::new();
        for (n, v) in pairs {
            req.extend_from_slice(n.as_bytes());
            req.push(0);
            req.extend_from_slice(v);
            req.push(0);
        }
        req.push(0);
        self.stream.write_all(&req)?;
        self.read_list()
    }

    /// Read one attribute list.
    pub fn read_list(&mut self) -> io::Result<Attrs> {
        loop {
            let mut s = Scanner::new(&self.buf);
            let mut out = Vec::new();
            let complete = loop {
                let Ok(name) = s.string(Context::Name) else { break false };
                if name.is_empty() {
                    break true;
                }
                let Ok(value) = s.string(Context::Value) else { break false };
                out.push((name.to_vec(), value.to_vec()));
            };
            if complete {
                let used = s.consumed();
                self.buf.drain(..used);
                return Ok(out);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The value of attribute `name` in a reply.
pub fn attr<'a>(attrs: &'a Attrs, name: &str) -> Option<&'a [u8]> {
    attrs.iter().find(|(n, _)| n == name.as_bytes()).map(|(_, v)| v.as_slice())
}
