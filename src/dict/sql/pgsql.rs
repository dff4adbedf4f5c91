//! `pgsql:<cf>`: lookups in a PostgreSQL database (Postfix dict_pgsql.c),
//! through the connection pools of [`super::pool`].
//!
//! Parameters, read in Postfix 3.9's order (so a bad configuration fails
//! with the same first message): `user`, `password`, `dbname` (required,
//! even when every host is a URI), `encoding` (3.8; default `UTF8`),
//! `retry_interval` and `idle_interval` (3.9; 60 s each, at least 1),
//! `result_format` (`%s`), `expansion_limit` (0: none), then `query`, or
//! `select_function` (`SELECT <fn>('%s')`), or the legacy
//! `table`/`select_field`/`where_field`/`additional_conditions`; `domain`;
//! `hosts` (default `localhost`; `unix:`/`inet:` entries, `host[:port]`,
//! socket directories, `postgresql:` URIs). Ours, after them:
//! `connect_timeout` (5 s), `query_timeout` (10 s) and `max_connections`
//! (4: connections per server per worker process), each at least 1.
//!
//! A lookup: FOLD_FIX lowercases the key (ASCII); the domain filter may
//! skip it; the query template is expanded once unquoted, only to apply
//! the key rules (a skipped key is "not found", no server is asked); then,
//! on a pooled connection, expanded again with every piece escaped by
//! `PQescapeStringConn` (as Postfix does) and sent. Every column of every
//! row, row by row, goes through `result_format` (an SQL NULL is an empty
//! value, with Postfix's warning), joined with `,`. A command without rows
//! is "not found".
//!
//! Failures answer RETRY for that lookup only: an escape error, a query
//! error (a bad query, or one key the server rejects) and a query past
//! `query_timeout` each log Postfix's warning for that host; none takes
//! the server out of use. A connection the server dropped (restart,
//! terminated backend) is replaced and the query run again at once. Only
//! a failed connect marks a server down, for `retry_interval`, logged once
//! per outage by the pool. Host names in messages never show a password.
//!
//! Read-only (proxywrite gets Postfix's `requires O_RDONLY` refusal),
//! FIXED, lookup only. The pools are made when a table is opened, which
//! happens in the worker process that serves it (never before a fork).

use super::pgsql_server::{query, registry, PgServer};
use crate::dict::db_common::cf::Cf;
use crate::dict::db_common::domain::{DomainFilter, System};
use crate::dict::db_common::pool::{Failure, Hosts, Registry, Settings};
use crate::dict::db_common::results::{Assembly, LimitWarning};
use crate::dict::db_common::template::{Context, Role, Template};
use crate::dict::postmap_text::until_nul;
use crate::dict::{fold_key, Dict, DictError, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FIXED, FOLD_FIX};
use crate::sys::pq::{self, PgResult};
use std::cell::RefCell;
use std::time::Duration;

const LIMIT_WARNING: LimitWarning = LimitWarning { function: "dict_pgsql_lookup", colon: true };

/// Defaults of our own parameters, in seconds and connections.
const DEFAULT_CONNECT_TIMEOUT: i32 = 5;
const DEFAULT_QUERY_TIMEOUT: i32 = 10;
const DEFAULT_MAX_CONNECTIONS: i32 = 4;
/// Postfix 3.9's defaults of `retry_interval` and `idle_interval`.
const DEFAULT_INTERVAL: i32 = 60;

/// Characters that separate `hosts` entries (Postfix's CHARS_COMMA_SP).
const HOST_SEPARATORS: &[char] = &[',', ' ', '\t', '\r', '\n'];

pub(crate) struct Pgsql {
    flags: u32,
    /// The cf name, as messages show it.
    name: String,
    ctx: Context,
    query: Template,
    result_format: Template,
    expansion_limit: i32,
    domain: Option<DomainFilter>,
    query_timeout: Duration,
    hosts: Hosts<PgServer>,
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    open_in(req, registry())
}

/// Open with the pools of `pools` (the process's, or a test's).
pub(super) fn open_in(req: &OpenRequest, pools: &Registry<PgServer>) -> Result<Box<dyn Dict>, OpenError> {
    req.require_read_only()?;
    let name = req.name;
    let cf = Cf::open(name, req.params)?;
    let text = |param, default| cf.get_str(param, Some(default), 0, 0).map(Option::unwrap_or_default);
    let user = text("user", "")?;
    let password = text("password", "")?;
    let dbname = cf.get_str("dbname", Some(""), 1, 0)?.unwrap_or_default();
    let encoding = cf.get_str("encoding", Some("UTF8"), 1, 0)?.unwrap_or_default();
    let retry_interval = seconds(cf.get_int("retry_interval", DEFAULT_INTERVAL, 1, 0)?);
    let idle_interval = seconds(cf.get_int("idle_interval", DEFAULT_INTERVAL, 1, 0)?);
    let result_format = cf.get_str("result_format", Some("%s"), 1, 0)?.unwrap_or_default();
    let expansion_limit = cf.get_int("expansion_limit", 0, 0, 0)?;
    let query = match cf.get_str("query", None, 0, 0)? {
        Some(query) => query,
        None => match cf.get_str("select_function", None, 0, 0)? {
            Some(function) => format!("SELECT {function}('%s')"),
            None => super::query_or_legacy(&cf)?,
        },
    };
    let mut ctx = Context::new(req.type_name, name);
    let query = ctx.parse(&query, Role::Query)?;
    let result_format = ctx.parse(&result_format, Role::Result)?;
    let domain = match text("domain", "")? {
        list if list.is_empty() => None,
        list => Some(DomainFilter::parse(&list, cf.name(), &mut System { params: req.params })?),
    };
    let hosts = text("hosts", "")?;
    let mut entries: Vec<&str> = hosts.split(HOST_SEPARATORS).filter(|h| !h.is_empty()).collect();
    if entries.is_empty() {
        entries.push("localhost");
    }
    let connect_timeout = seconds(cf.get_int("connect_timeout", DEFAULT_CONNECT_TIMEOUT, 1, 0)?);
    let query_timeout = seconds(cf.get_int("query_timeout", DEFAULT_QUERY_TIMEOUT, 1, 0)?);
    let max_connections = cf.get_int("max_connections", DEFAULT_MAX_CONNECTIONS, 1, 0)?;
    let settings = Settings {
        max_connections: usize::try_from(max_connections).unwrap_or(1),
        idle_interval,
        retry_interval,
        connect_timeout,
        // A lookup waits for a free connection as long as a query may run.
        wait_timeout: query_timeout,
    };
    let servers = entries.iter().map(|e| PgServer::new(e, &dbname, &user, &password, &encoding)).collect();
    Ok(Box::new(Pgsql {
        flags: req.flags | FIXED,
        name: name.to_string(),
        ctx,
        query,
        result_format,
        expansion_limit,
        domain,
        query_timeout,
        hosts: Hosts::new(pools, servers, settings),
    }))
}

/// A positive number of seconds (the getters enforce at least 1).
fn seconds(n: i32) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(1))
}

impl Pgsql {
    /// Expand the query for `key` with `conn`'s escaping and run it. The
    /// failure texts are Postfix's warnings (a trailing `?` stands for the
    /// newline that ends libpq's messages, as Postfix logs them).
    fn run(&self, server: &PgServer, conn: &mut pq::Conn, key: &[u8]) -> Result<PgResult, Failure> {
        let host = server.host();
        let conn = RefCell::new(conn);
        let escape_error: RefCell<Option<String>> = RefCell::new(None);
        let mut sql = Vec::new();
        let quote = |raw: &[u8], out: &mut Vec<u8>| {
            if escape_error.borrow().is_some() {
                return;
            }
            match conn.borrow_mut().escape(raw) {
                Ok(escaped) => out.extend_from_slice(&escaped),
                Err(pq::Error::Escape(msg)) => *escape_error.borrow_mut() = Some(msg),
                Err(other) => *escape_error.borrow_mut() = Some(other.to_string()),
            }
        };
        self.ctx.expand_query(&self.query, key, &mut sql, &quote);
        if let Some(msg) = escape_error.into_inner() {
            return Err(Failure::Query(format!("dict pgsql: (host {host}) cannot escape input string: {msg}?")));
        }
        query(conn.into_inner(), &sql, self.query_timeout, &host)
    }

    /// The answer for `key` from `result` into `out`: every column of every
    /// row, NULL as an empty value (Postfix's PQgetvalue gives "").
    fn assemble(&self, result: &PgResult, key: &[u8], out: &mut Vec<u8>) -> DictResult<bool> {
        let mut assembly = Assembly::new(&self.ctx, &self.result_format, key, self.expansion_limit, out);
        let (rows, columns) = (result.rows(), result.columns());
        for row in 0..rows {
            for column in 0..columns {
                if assembly.push(Some(result.value(row, column).unwrap_or_default())).is_err() {
                    out.clear();
                    let warning = LIMIT_WARNING.text(&self.name, key);
                    log::warn!("{warning}");
                    return Err(DictError::Retry(warning));
                }
            }
        }
        Ok(assembly.found())
    }
}

impl Dict for Pgsql {
    fn flags(&self) -> u32 {
        self.flags
    }

    /// A lookup waits for the server (bounded by the timeouts): never on
    /// the event loop.
    fn waits(&self) -> Waits {
        Waits::Always
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        let key = fold_key(until_nul(key), flags & FOLD_FIX != 0);
        if let Some(domain) = &self.domain {
            if !domain.allows(&key)? {
                return Ok(false);
            }
        }
        // The key rules alone (and the empty-key warning), before any server.
        if !self.ctx.expand_query(&self.query, &key, &mut Vec::new(), &|raw, out| out.extend_from_slice(raw)) {
            return Ok(false);
        }
        match self.hosts.run_on(|server, conn| self.run(server, conn, &key)) {
            Ok(result) => self.assemble(&result, &key, out),
            Err(e) => Err(e.into_retry(|server| {
                format!(
                    "dict_pgsql_lookup: {}: no free connection to {server} within {} s",
                    self.name,
                    self.query_timeout.as_secs()
                )
            })),
        }
    }
}

#[cfg(test)]
#[path = "pgsql_table_tests.rs"]
mod tests;
