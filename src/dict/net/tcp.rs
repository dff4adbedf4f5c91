//! `tcp:host:port`: Postfix's tcp_table protocol (`util/dict_tcp.c`,
//! `util/hex_quote.c`). A lookup (key up to its first NUL, lowercased only
//! with FOLD_MUL) sends `get <key>\n` with the key `%XX`-quoted
//! ([`super::hex_quote`]) and reads one reply line of at most 4096 bytes,
//! newline included. The line (up to a NUL) must be three digits, one
//! whitespace character and `%XX`-quoted text, else it is malformed; the
//! first digit decides:
//! * `2` → found, the unquoted text up to any `%00`;
//! * `5` → not found (the connection is kept);
//! * `4` → RETRY, the connection closed, nothing logged (as Postfix);
//! * other → `read TCP map reply from <host:port>: bad status code: <line>`,
//!   RETRY, closed; malformed → `... malformed reply: <line>`, RETRY,
//!   closed (the line shown as Postfix's `printable(line, '_')`, 100 bytes
//!   at most).
//!
//! Where it differs on purpose (docs/compatibility.md): Postfix tries a
//! lookup up to 10 times with a 1 s sleep between tries after a connect
//! failure, a lost connection or an over-long line (about 9 s of a
//! blocked process, and a warning per try). Here a lost connection is
//! replaced and the request sent again at once (the second loss is
//! `read TCP map reply from <host:port>: unexpected EOF (...)`, RETRY); an
//! over-long line is one `text longer than 4096` warning and RETRY; a
//! server that cannot be reached is RETRY at once, logged once per outage
//! by the pool and not tried again for 1 s. Connections come from the
//! shared pool (at most 4 per endpoint per worker process, shared by
//! every tcp table naming it; Postfix: one per table, never closed), are
//! closed after 60 s idle, and connect takes at most 5 s and one exchange
//! 10 s (Postfix: 100 s per read or write). A timeout is the warning
//! `read TCP map reply from <host:port>: unexpected EOF (Connection timed
//! out)`, Postfix's text for it.
//!
//! Read-only (proxywrite gets Postfix's `requires O_RDONLY` refusal),
//! PATTERN, lookup only.

use super::endpoint::Endpoint;
use super::hex_quote;
use super::session::{at_most, lossy, numeric_service, registry, IoFailure, NetServer, Protocol, Session};
use crate::dict::db_common::pool::{Failure, Hosts, Registry, Settings};
use crate::dict::postmap_text::until_nul;
use crate::dict::{fold_key, Dict, DictError, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FOLD_MUL, NO_UNAUTH, PATTERN};
use std::time::{Duration, Instant};

/// Postfix's reply line limit, newline included (`DICT_TCP_MAXLEN`).
const MAX_LINE: usize = 4096;

/// Time limits of a tcp table (the tests shorten them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// One request and its reply.
    pub(crate) exchange: Duration,
    pub(crate) pool: Settings,
}

pub(crate) const LIMITS: Limits = Limits {
    exchange: Duration::from_secs(10),
    pool: Settings {
        max_connections: 4,
        idle_interval: Duration::from_secs(60),
        retry_interval: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(5),
        wait_timeout: Duration::from_secs(10),
    },
};

pub(crate) struct Tcp {
    flags: u32,
    /// `host:port` as the table names it.
    addr: String,
    /// `smtputf8_enable`: whether warnings keep UTF-8 text (Postfix's
    /// printable() under `util_utf8_enable`).
    utf8: bool,
    limits: Limits,
    /// The endpoint's pool (one server: no failover).
    pool: Hosts<NetServer>,
}

/// What one reply line says.
enum Reply {
    Found(Vec<u8>),
    NotFound,
    /// RETRY, with the warning to log if any.
    Retry(Option<String>),
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    open_in(req, registry(), LIMITS)
}

/// Open with the pools of `pools` and these limits (the process's, or a test's).
pub(crate) fn open_in(
    req: &OpenRequest,
    pools: &Registry<NetServer>,
    limits: Limits,
) -> Result<Box<dyn Dict>, OpenError> {
    let addr = req.name;
    if req.flags & NO_UNAUTH != 0 {
        return Err(OpenError::new(format!("tcp:{addr} map is not allowed for security sensitive data")));
    }
    req.require_read_only()?;
    // Postfix's host_port(): no host is the local host
    let spec = if addr.starts_with(':') { format!("localhost{addr}") } else { addr.to_string() };
    let spec = numeric_service(&spec);
    let endpoint = Endpoint::parse(&spec, true).map_err(|why| OpenError::new(format!("{addr}: {why}")))?;
    let server = NetServer::new(Protocol::Tcp, endpoint, addr, None);
    let utf8 = req.params.get_bool("smtputf8_enable").unwrap_or(false);
    Ok(Box::new(Tcp {
        flags: req.flags | PATTERN,
        addr: addr.to_string(),
        utf8,
        limits,
        pool: Hosts::new(pools, vec![server], limits.pool),
    }))
}

/// Postfix's `printable(line, '_')` cut at 100 bytes: ASCII controls, and
/// without `utf8` every non-ASCII byte, become `_`.
fn shown(line: &[u8], utf8: bool) -> String {
    let mut text = String::with_capacity(line.len());
    for c in lossy(line, '_').chars() {
        match c {
            c if c.is_ascii_control() => text.push('_'),
            c if !c.is_ascii() && !utf8 => text.extend(std::iter::repeat_n('_', c.len_utf8())),
            c => text.push(c),
        }
    }
    at_most(&text, 100).to_string()
}

impl Tcp {
    fn reply_error(&self, why: &str) -> String {
        format!("read TCP map reply from {}: {why}", self.addr)
    }

    /// Send the request and read the reply line. The first attempt's
    /// disconnect is `Broken` (the pool replaces the connection and calls
    /// again).
    fn exchange(&self, conn: &mut Session, request: &[u8], first: bool) -> Result<Reply, Failure> {
        let deadline = Instant::now() + self.limits.exchange;
        let io_failure = |f: IoFailure| match f {
            IoFailure::Eof(_) if first => Failure::Broken("unexpected EOF".into()),
            IoFailure::Eof(e) => {
                let why =
                    e.map_or_else(|| "connection closed by server".into(), |e| crate::sys::errno::io_error_text(&e));
                Failure::Timeout(self.reply_error(&format!("unexpected EOF ({why})")))
            }
            IoFailure::Timeout => Failure::Timeout(self.reply_error("unexpected EOF (Connection timed out)")),
        };
        conn.send(request, deadline).map_err(io_failure)?;
        let line = loop {
            let got = conn.received();
            match got.iter().take(MAX_LINE).position(|b| *b == b'\n') {
                Some(end) => {
                    let line = got[..end].to_vec();
                    conn.finish(end + 1);
                    break line;
                }
                None if got.len() >= MAX_LINE => {
                    conn.spend();
                    return Err(Failure::Timeout(self.reply_error(&format!("text longer than {MAX_LINE}"))));
                }
                None => conn.read_more(deadline).map_err(io_failure)?,
            }
        };
        let reply = self.parse(until_nul(&line));
        if matches!(reply, Reply::Retry(_)) {
            conn.spend();
        }
        Ok(reply)
    }

    fn parse(&self, line: &[u8]) -> Reply {
        let well_formed = match line {
            [a, b, c, space, text @ ..]
                if a.is_ascii_digit()
                    && b.is_ascii_digit()
                    && c.is_ascii_digit()
                    && (space.is_ascii_whitespace() || *space == 0x0b) =>
            {
                hex_quote::unquote(text).map(|value| (*a, value))
            }
            _ => None,
        };
        match well_formed {
            None => Reply::Retry(Some(self.reply_error(&format!("malformed reply: {}", shown(line, self.utf8))))),
            Some((b'2', value)) => Reply::Found(until_nul(&value).to_vec()),
            Some((b'5', _)) => Reply::NotFound,
            Some((b'4', _)) => Reply::Retry(None),
            Some(_) => Reply::Retry(Some(self.reply_error(&format!("bad status code: {}", shown(line, self.utf8))))),
        }
    }
}

impl Dict for Tcp {
    fn flags(&self) -> u32 {
        self.flags
    }

    /// A lookup waits for the server (bounded by the limits).
    fn waits(&self) -> Waits {
        Waits::Always
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        let key = fold_key(until_nul(key), flags & FOLD_MUL != 0);
        let mut request = Vec::with_capacity(key.len() + 8);
        request.extend_from_slice(b"get ");
        hex_quote::quote(&key, &mut request);
        request.push(b'\n');
        let mut attempt = 0;
        let reply = self.pool.run(|conn| {
            attempt += 1;
            self.exchange(conn, &request, attempt == 1)
        });
        let wait = self.limits.pool.wait_timeout.as_secs();
        match reply {
            Ok(Reply::Found(value)) => {
                *out = value;
                Ok(true)
            }
            Ok(Reply::NotFound) => Ok(false),
            Ok(Reply::Retry(None)) => Err(DictError::Retry(format!("tcp:{}: soft error", self.addr))),
            Ok(Reply::Retry(Some(text))) => {
                log::warn!("{text}");
                Err(DictError::Retry(text))
            }
            Err(e) => {
                Err(e.into_retry(|server| self.reply_error(&format!("no free connection to {server} within {wait} s"))))
            }
        }
    }
}

#[cfg(test)]
#[path = "tcp_tests.rs"]
mod tests;
