//! One memcache command on one connection, with a deadline: the request
//! written, the reply read and parsed ([`super::memcache_proto`]). What
//! the table makes of a failure (retry, log, RETRY) is `memcache.rs`'s.
//!
//! A connection that cannot carry another command after its reply (a
//! `VALUE` without its `END`, bytes nobody asked for) is shut down here,
//! so that the pool finds it broken and never hands it out again.

use super::endpoint::Stream;
use super::memcache_proto::{take_data, take_line, value_length, Take};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Instant;

/// Limits of a reply (`line_size_limit`, `data_size_limit`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) line: usize,
    pub(crate) data: usize,
}

/// Why a command failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fail {
    /// The connection was closed or reset before any reply byte: a
    /// connection the server dropped while idle; another one may work.
    Stale(String),
    /// No progress before the deadline.
    Timeout,
    /// The conversation broke off: an OS error (its text), or (None) an
    /// EOF inside a reply or a reply line past the limit.
    Io(Option<String>),
    /// A reply line that is not an answer to the command (the line).
    Reply(Vec<u8>),
    /// A `VALUE` whose data block did not come whole (Postfix's "EOF
    /// receiving" case).
    Data,
}

/// A connection with its reply buffer.
struct Exchange<'a> {
    stream: &'a mut Stream,
    deadline: Instant,
    buf: Vec<u8>,
    /// Reply bytes received so far (none: a closed connection is stale).
    received: usize,
}

impl<'a> Exchange<'a> {
    /// Write `request`.
    fn send(stream: &'a mut Stream, deadline: Instant, request: &[u8]) -> Result<Exchange<'a>, Fail> {
        let left = remaining(deadline)?;
        stream.set_timeouts(left).map_err(|e| io_fail(&e, 0))?;
        stream.write_all(request).map_err(|e| io_fail(&e, 0))?;
        Ok(Exchange { stream, deadline, buf: Vec::new(), received: 0 })
    }

    /// Read more reply bytes; EOF is a failure.
    fn fill(&mut self) -> Result<(), Fail> {
        let left = remaining(self.deadline)?;
        self.stream.set_timeouts(left).map_err(|e| io_fail(&e, self.received))?;
        let mut chunk = [0u8; 16384];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) if self.received == 0 => return Err(Fail::Stale("connection closed by the server".into())),
                Ok(0) => return Err(Fail::Io(None)),
                Ok(n) => {
                    self.received += n;
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_fail(&e, self.received)),
            }
        }
    }

    /// The next reply line (None: past the limit).
    fn line(&mut self, limit: usize) -> Result<Option<Vec<u8>>, Fail> {
        loop {
            match take_line(&self.buf, limit) {
                Take::Done(line, used) => {
                    let line = line.to_vec();
                    self.buf.drain(..used);
                    return Ok(Some(line));
                }
                Take::Malformed => return Ok(None),
                Take::Need => self.fill()?,
            }
        }
    }

    /// A data block of `len` bytes (None: not followed by CRLF).
    fn data(&mut self, len: usize) -> Result<Option<Vec<u8>>, Fail> {
        loop {
            match take_data(&self.buf, len) {
                Take::Done(data, used) => {
                    let data = data.to_vec();
                    self.buf.drain(..used);
                    return Ok(Some(data));
                }
                Take::Malformed => return Ok(None),
                Take::Need => self.fill()?,
            }
        }
    }

    /// A reply line that must be there.
    fn required_line(&mut self, limit: usize) -> Result<Vec<u8>, Fail> {
        self.line(limit)?.ok_or(Fail::Io(None))
    }

    /// After a whole reply: bytes beyond it mean the connection is out of
    /// step with the server.
    fn finish(self) {
        if !self.buf.is_empty() {
            retire(self.stream);
        }
    }
}

/// `get`: the value (None: not there).
pub(crate) fn get(stream: &mut Stream, deadline: Instant, key: &[u8], limits: Limits) -> Result<Option<Vec<u8>>, Fail> {
    let mut x = Exchange::send(stream, deadline, &super::memcache_proto::get_request(key))?;
    let line = x.required_line(limits.line)?;
    if super::memcache_proto::c_str(&line) == b"END" {
        x.finish();
        return Ok(None);
    }
    let len = match value_length(&line).and_then(|n| usize::try_from(n).ok()) {
        Some(n) if n <= limits.data => n,
        _ => return Err(Fail::Reply(line)),
    };
    let value = match x.data(len) {
        Ok(Some(value)) => value,
        Ok(None) | Err(Fail::Io(_) | Fail::Stale(_)) => return Err(Fail::Data),
        Err(other) => return Err(other),
    };
    // The value stands; only the connection suffers from a missing END.
    match x.line(limits.line) {
        Ok(Some(end)) if super::memcache_proto::c_str(&end) == b"END" => x.finish(),
        _ => retire(x.stream),
    }
    Ok(Some(value))
}

/// `set`: Ok when the server answered `STORED`.
pub(crate) fn set(
    stream: &mut Stream,
    deadline: Instant,
    key: &[u8],
    (flags, ttl): (i32, i32),
    value: &[u8],
    limits: Limits,
) -> Result<(), Fail> {
    let request = super::memcache_proto::set_request(key, flags, ttl, value);
    let mut x = Exchange::send(stream, deadline, &request)?;
    let line = x.required_line(limits.line)?;
    if super::memcache_proto::c_str(&line) != b"STORED" {
        return Err(Fail::Reply(line));
    }
    x.finish();
    Ok(())
}

/// `delete`: true for `DELETED`, false for `NOT_FOUND`.
pub(crate) fn delete(stream: &mut Stream, deadline: Instant, key: &[u8], limits: Limits) -> Result<bool, Fail> {
    let mut x = Exchange::send(stream, deadline, &super::memcache_proto::delete_request(key))?;
    let line = x.required_line(limits.line)?;
    let found = match super::memcache_proto::c_str(&line) {
        b"DELETED" => true,
        b"NOT_FOUND" => false,
        _ => return Err(Fail::Reply(line)),
    };
    x.finish();
    Ok(found)
}

/// Take `stream` out of use: the pool sees it closed and drops it.
pub(crate) fn retire(stream: &mut Stream) {
    let _ = match stream {
        Stream::Unix(s) => s.shutdown(Shutdown::Both),
        Stream::Tcp(s) => s.shutdown(Shutdown::Both),
    };
}

fn remaining(deadline: Instant) -> Result<std::time::Duration, Fail> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(Fail::Timeout)
    } else {
        Ok(left)
    }
}

/// An I/O error, after `received` reply bytes.
fn io_fail(e: &io::Error, received: usize) -> Fail {
    use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, TimedOut, WouldBlock};
    match e.kind() {
        WouldBlock | TimedOut => Fail::Timeout,
        BrokenPipe | ConnectionReset | ConnectionAborted if received == 0 => {
            Fail::Stale(crate::sys::errno::io_error_text(e))
        }
        _ => Fail::Io(Some(crate::sys::errno::io_error_text(e))),
    }
}
