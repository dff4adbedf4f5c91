//! One client connection: receive buffer, pending reply bytes, request timing.

use super::request_budget::InBuf;
use crate::protocol::attr::Incomplete;
use crate::service::Session;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Instant;

pub(crate) struct Conn {
    pub stream: UnixStream,
    pub inbuf: InBuf,
    pub outbuf: Vec<u8>,
    out_pos: usize,
    /// When the first byte of the request being received arrived.
    pub request_started: Option<Instant>,
    /// Where the parser stopped, for timeout and end-of-input warnings.
    pub incomplete: Option<Incomplete>,
    /// When a reply started waiting for the client to read it.
    pub write_started: Option<Instant>,
    pub last_active: Instant,
    pub session: Session,
    /// Requests answered on this connection.
    pub served: u32,
}

/// Postfix's warning for a client that closed in the middle of a request
/// (`inc`: where the parser stopped), on the stream named `svc`.
pub(crate) fn warn_end_of_input(svc: &str, inc: Incomplete) {
    if inc.partial {
        log::warn!("unexpected end-of-input from {svc} while reading {}", inc.context.as_str());
    } else {
        log::warn!("premature end-of-input on {svc} while reading {}", inc.context.as_str());
    }
}

/// Result of a read attempt.
pub(crate) enum ReadStatus {
    Data,
    WouldBlock,
    Eof,
    /// The process holds too many bytes of unfinished requests.
    OverBudget,
}

impl Conn {
    pub(crate) fn new(stream: UnixStream, inbuf: InBuf, now: Instant) -> Self {
        Conn {
            stream,
            inbuf,
            outbuf: Vec::new(),
            out_pos: 0,
            request_started: None,
            incomplete: None,
            write_started: None,
            last_active: now,
            session: Session::default(),
            served: 0,
        }
    }

    /// One read of whatever the client sent, appended to `inbuf`.
    pub(crate) fn read_some(&mut self, scratch: &mut [u8]) -> io::Result<ReadStatus> {
        match self.stream.read(scratch) {
            Ok(0) => Ok(ReadStatus::Eof),
            Ok(n) => match self.inbuf.extend(&scratch[..n]) {
                Ok(()) => Ok(ReadStatus::Data),
                Err(_) => Ok(ReadStatus::OverBudget),
            },
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadStatus::WouldBlock),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(ReadStatus::WouldBlock),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn has_output(&self) -> bool {
        self.out_pos < self.outbuf.len()
    }

    /// Write as much pending output as the socket takes. Ok(true) when all of
    /// it went out.
    pub(crate) fn flush(&mut self) -> io::Result<bool> {
        while self.out_pos < self.outbuf.len() {
            match self.stream.write(&self.outbuf[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.outbuf.clear();
        self.out_pos = 0;
        Ok(true)
    }
}
