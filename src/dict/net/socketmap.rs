//! `socketmap:inet:host:port:name`, `socketmap:unix:/path:name`: Sendmail's
//! socketmap protocol (Postfix `util/dict_sockmap.c`). The map name is what
//! follows the last `:`; the rest is the endpoint (`local:` is `unix:`).
//!
//! A lookup (key up to its first NUL, lowercased only with FOLD_MUL, as
//! Postfix does) sends the netstring `<name> <key>` and reads one
//! netstring reply of at most 100000 bytes (Postfix's limit; 3.10's
//! `socketmap_max_reply_size` from main.cf is honoured too). The reply,
//! up to a NUL, is split at its first space:
//! * `OK <value>` → found (`OK` without a space: not found, as in 3.7);
//! * `NOTFOUND` → not found;
//! * `TEMP`, `TIMEOUT`, anything else → RETRY, `PERM` → CONFIG, each with
//!   Postfix's warning `socketmap:<map> socketmap server <temporary|timeout|
//!   unknown|permanent> error[: <reason, 200 bytes at most>]`.
//!
//! I/O as Postfix: a connection that ends (EOF, reset) while a request is
//! under way is replaced and the request sent once more, at once; when
//! that fails too, or on a malformed or oversize reply or a timeout, the
//! warning is `table socketmap:<map> lookup error: <unexpected disconnect |
//! input format error | input exceeds size limit | time limit exceeded>`
//! and the answer RETRY.
//!
//! Where it differs on purpose (docs/compatibility.md): connections come
//! from the shared pool (one pool per endpoint per worker process, shared
//! by every socketmap table naming it, at most 4 connections instead of
//! one); a connection is closed after 10 s idle, as Postfix's, and not
//! reused once 100 s old (Postfix's TTL); connect takes at most 5 s and
//! one exchange 10 s (Postfix: 100 s per read or write); a server that
//! cannot be reached is logged once per outage by the pool and not tried
//! again for 1 s (Postfix: two warnings per lookup); a malformed reply or
//! unasked-for bytes close the connection (Postfix keeps reading from it).
//!
//! Read-only (proxywrite gets Postfix's `requires O_RDONLY` refusal),
//! PATTERN, lookup only.

use super::endpoint::Endpoint;
use super::netstring::{self, NetstringError};
use super::session::{at_most, lossy, numeric_service, registry, IoFailure, NetServer, Protocol, Session};
use crate::dict::db_common::pool::{Failure, Hosts, Registry, Settings};
use crate::dict::postmap_text::until_nul;
use crate::dict::{fold_key, Dict, DictError, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FOLD_MUL, NO_UNAUTH, PATTERN};
use std::time::{Duration, Instant};

/// Postfix's reply size limit (`DICT_SOCKMAP_DEF_MAX_REPLY`).
const MAX_REPLY: usize = 100_000;

/// Time limits of a socketmap table (the tests shorten them).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// One request and its reply.
    pub(crate) exchange: Duration,
    pub(crate) pool: Settings,
    /// Connections are not reused once this old.
    pub(crate) max_age: Duration,
}

pub(crate) const LIMITS: Limits = Limits {
    exchange: Duration::from_secs(10),
    pool: Settings {
        max_connections: 4,
        // Postfix's DICT_SOCKMAP_DEF_MAX_IDLE
        idle_interval: Duration::from_secs(10),
        // Postfix tries again at every lookup; a second keeps a dead
        // server from costing a connect per lookup.
        retry_interval: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(5),
        wait_timeout: Duration::from_secs(10),
    },
    // Postfix's DICT_SOCKMAP_DEF_MAX_TTL
    max_age: Duration::from_secs(100),
};

pub(crate) struct Socketmap {
    flags: u32,
    /// `socketmap:<name>` as the warnings show it.
    table: String,
    /// The map name sent in every request.
    map: Vec<u8>,
    max_reply: usize,
    limits: Limits,
    /// The endpoint's pool (one server: no failover).
    pool: Hosts<NetServer>,
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
    req.require_read_only()?;
    let name = req.name;
    if req.flags & NO_UNAUTH != 0 {
        return Err(OpenError::new(format!("socketmap:{name} map is not allowed for security-sensitive data")));
    }
    let Some((service, map)) = name.rsplit_once(':') else {
        return Err(OpenError::new("socketmap requires server:socketmap argument"));
    };
    let (endpoint, label) = parse_service(service)?;
    let max_reply = match req.params.raw("socketmap_max_reply_size") {
        None => MAX_REPLY,
        Some(_) => {
            let n = req.params.get_int("socketmap_max_reply_size").map_err(|e| OpenError::new(e.to_string()))?;
            // Postfix: 0 or less means no limit
            usize::try_from(n).ok().filter(|n| *n > 0).unwrap_or(usize::MAX)
        }
    };
    let server = NetServer::new(Protocol::Socketmap, endpoint, label, Some(limits.max_age));
    Ok(Box::new(Socketmap {
        flags: req.flags | PATTERN,
        table: format!("socketmap:{name}"),
        map: map.as_bytes().to_vec(),
        max_reply,
        limits,
        pool: Hosts::new(pools, vec![server], limits.pool),
    }))
}

/// `inet:host:port`, `unix:/path` or `local:/path`, and the endpoint part
/// (as Postfix's connect warning names it). The texts are Postfix's fatal
/// ones.
fn parse_service(service: &str) -> Result<(Endpoint, &str), OpenError> {
    let Some((transport, endpoint)) = service.split_once(':').filter(|(t, e)| !t.is_empty() && !e.is_empty()) else {
        return Err(OpenError::new(format!("need service transport:endpoint instead of \"{service}\"")));
    };
    let spec = match transport {
        "inet" => format!("inet:{}", numeric_service(endpoint)),
        "unix" | "local" => format!("unix:{endpoint}"),
        _ => return Err(OpenError::new(format!("invalid transport name: {transport} in service: {service}"))),
    };
    let parsed = Endpoint::parse(&spec, false).map_err(|why| OpenError::new(format!("{endpoint}: {why}")))?;
    Ok((parsed, endpoint))
}

impl Socketmap {
    fn lookup_error(&self, why: &str) -> String {
        format!("table {} lookup error: {why}", self.table)
    }

    /// One request and its reply payload. The first attempt's disconnect
    /// is `Broken` (the pool replaces the connection and calls again).
    fn exchange(&self, conn: &mut Session, request: &[u8], first: bool) -> Result<Vec<u8>, Failure> {
        let deadline = Instant::now() + self.limits.exchange;
        let io_failure = |f: IoFailure| match f {
            IoFailure::Eof(_) if first => Failure::Broken("unexpected disconnect".into()),
            IoFailure::Eof(_) => Failure::Timeout(self.lookup_error("unexpected disconnect")),
            IoFailure::Timeout => Failure::Timeout(self.lookup_error("time limit exceeded")),
        };
        conn.send(request, deadline).map_err(io_failure)?;
        loop {
            match netstring::decode(conn.received(), self.max_reply) {
                Ok(Some(reply)) => {
                    let payload = conn.received()[reply.payload].to_vec();
                    conn.finish(reply.consumed);
                    return Ok(payload);
                }
                Ok(None) => conn.read_more(deadline).map_err(io_failure)?,
                Err(e @ (NetstringError::Format | NetstringError::Size)) => {
                    conn.spend();
                    return Err(Failure::Timeout(self.lookup_error(&e.to_string())));
                }
            }
        }
    }

    /// The answer a reply payload gives.
    fn interpret(&self, payload: &[u8], out: &mut Vec<u8>) -> DictResult<bool> {
        let payload = until_nul(payload);
        let (word, rest) = match payload.iter().position(|b| *b == b' ') {
            Some(i) => (&payload[..i], Some(&payload[i + 1..])),
            None => (payload, None),
        };
        let (class, error): (&str, fn(String) -> DictError) = match word {
            b"OK" => {
                // 3.7 returns "not found" for an OK without a space
                return Ok(rest.is_some_and(|value| {
                    out.extend_from_slice(value);
                    true
                }));
            }
            b"NOTFOUND" => return Ok(false),
            b"TEMP" => ("temporary", DictError::Retry),
            b"TIMEOUT" => ("timeout", DictError::Retry),
            b"PERM" => ("permanent", DictError::Config),
            _ => ("unknown", DictError::Retry),
        };
        let reason = rest.unwrap_or_default();
        let reason = &reason[reason.iter().take_while(|b| b.is_ascii_whitespace() || **b == 0x0b).count()..];
        let shown = lossy(reason, '?');
        let text = if shown.is_empty() {
            format!("{} socketmap server {class} error", self.table)
        } else {
            format!("{} socketmap server {class} error: {}", self.table, at_most(&shown, 200))
        };
        log::warn!("{text}");
        Err(error(text))
    }
}

impl Dict for Socketmap {
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
        let mut query = Vec::with_capacity(self.map.len() + 1 + key.len());
        query.extend_from_slice(&self.map);
        query.push(b' ');
        query.extend_from_slice(&key);
        let mut request = Vec::with_capacity(query.len() + 8);
        netstring::encode(&query, &mut request);
        let mut attempt = 0;
        let reply = self.pool.run(|conn| {
            attempt += 1;
            self.exchange(conn, &request, attempt == 1)
        });
        let wait = self.limits.pool.wait_timeout.as_secs();
        match reply {
            Ok(payload) => self.interpret(&payload, out),
            Err(e) => {
                Err(e
                    .into_retry(|server| self.lookup_error(&format!("no free connection to {server} within {wait} s"))))
            }
        }
    }
}

#[cfg(test)]
#[path = "socketmap_tests.rs"]
mod tests;
