//! `memcache:<cf>`: a memcached server as a table (Postfix
//! dict_memcache.c), with an optional persistent `backup` table, through
//! the pools of `db_common::pool` (one per [`Endpoint`]).
//!
//! Parameters, read in Postfix 3.7's order (so a bad configuration fails
//! with the same first message): `key_format` (`%s`), `timeout` (2 s:
//! connect, and each command whole), `ttl` (3600), `flags` (0),
//! `retry_pause` (1 s, at least 1), `max_try` (2, at least 1),
//! `line_size_limit` (1024, at least 1), `data_size_limit` (10240, at
//! least 1), `memcache` (`inet:localhost:11211`; `inet:host:port`,
//! `unix:/path` or `local:/path`), `backup` (a table, opened with this
//! table's mode and flags), then the `key_format` template is checked and
//! `domain` read. Not in 3.7 and not read: 3.11's `key_digest`.
//!
//! A key: empty, outside `domain`, expanding to nothing, or (after
//! FOLD_FIX lowercasing and `key_format`) holding ASCII white space is
//! skipped: a lookup or delete answers "not found", an update logs
//! Postfix's `skipping update` warning and fails; neither memcached nor
//! the backup is asked. A lookup asks memcached, then on a miss or an
//! error the backup (whose answer decides), writing a backup hit back to
//! memcached with `ttl`. Update and delete go to memcached, then to the
//! backup, whose outcome decides. An update value longer than
//! `data_size_limit` is not sent (Postfix's warning). Sequence goes to
//! the backup (without one: Postfix's warning, end of table).
//!
//! A command is tried `max_try` times, `retry_pause` apart, as Postfix
//! does, its failures logged with Postfix's texts from the second on.
//! Where we differ on purpose (docs/compatibility.md): a connection the
//! server dropped is replaced and the command sent again at once (not
//! after `retry_pause`); a command with no answer within `timeout` is not
//! tried again (RETRY after `timeout`, logged at once); a server that
//! cannot be connected to is logged once per outage by the pool, not at
//! every lookup; `timeout = 0` (Postfix: no timeout) is 100 s.
//!
//! FIXED | MULTI_WRITER, as in Postfix; readable through proxymap and
//! writable through proxywrite (the only network table that is).

use super::endpoint::{Endpoint, Stream};
use super::memcache_client::{self as client, Fail, Limits};
use super::memcache_proto::{clip, has_space};
use crate::dict::db_common::cf::Cf;
use crate::dict::db_common::domain::{DomainFilter, System};
use crate::dict::db_common::pool::{Error, Failure, Hosts, Registry, Settings};
use crate::dict::db_common::template::{Context, Role, Template};
use crate::dict::postmap_text::until_nul;
use crate::dict::{fold_key, Cursor, Dict, DictError, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FIXED, FOLD_FIX, MULTI_WRITER, NO_UNAUTH};
use std::cell::Cell;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Connections per memcached server per worker process.
const MAX_CONNECTIONS: usize = 4;
/// What `timeout = 0` (Postfix: wait as long as it takes) becomes.
const NO_TIMEOUT: Duration = Duration::from_secs(100);

/// The pools of every `memcache:` table of this process.
fn registry() -> &'static Registry<Endpoint> {
    static MEMCACHE: LazyLock<Registry<Endpoint>> = LazyLock::new(Registry::new);
    &MEMCACHE
}

pub(crate) struct Memcache {
    flags: u32,
    /// The cf name, as messages show it.
    name: String,
    ctx: Context,
    /// None when `key_format` is exactly `%s` (the key as it is).
    key_format: Option<Template>,
    domain: Option<DomainFilter>,
    ttl: i32,
    mc_flags: i32,
    retry_pause: Duration,
    max_try: i32,
    limits: Limits,
    timeout: Duration,
    /// The `%m` Postfix prints for an EOF or an overlong line (see
    /// [`stale_errno`]).
    eof_errno: Option<&'static str>,
    /// The memcached's pool (the one host of this table).
    server: Hosts<Endpoint>,
    backup: Option<Box<dyn Dict>>,
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    open_in(req, registry())
}

/// Open with the pools of `pools` (the process's, or a test's).
pub(crate) fn open_in(req: &OpenRequest, pools: &Registry<Endpoint>) -> Result<Box<dyn Dict>, OpenError> {
    let name = req.name;
    if req.flags & NO_UNAUTH != 0 {
        return Err(OpenError::new(format!("memcache:{name} map is not allowed for security-sensitive data")));
    }
    let cf = Cf::open(name, req.params)?;
    let key_format = cf.get_str("key_format", Some("%s"), 0, 0)?.unwrap_or_default();
    let timeout_secs = cf.get_int("timeout", 2, 0, 0)?;
    let timeout = if timeout_secs > 0 { seconds(timeout_secs) } else { NO_TIMEOUT };
    let ttl = cf.get_int("ttl", 3600, 0, 0)?;
    let mc_flags = cf.get_int("flags", 0, 0, 0)?;
    let retry_pause = seconds(cf.get_int("retry_pause", 1, 1, 0)?);
    let max_try = cf.get_int("max_try", 2, 1, 0)?;
    let line = count(cf.get_int("line_size_limit", 1024, 1, 0)?);
    let data = count(cf.get_int("data_size_limit", 10240, 1, 0)?);
    let service = cf.get_str("memcache", Some("inet:localhost:11211"), 0, 0)?.unwrap_or_default();
    let endpoint = parse_service(&service)?;
    let backup = cf
        .get_str("backup", None, 0, 0)?
        .map(|b| crate::dict::registry::open_or_surrogate(&b, req.mode, req.flags, req.params));
    let mut ctx = Context::new(req.type_name, name);
    let template = ctx.parse(&key_format, Role::Query)?;
    let domain = match cf.get_str("domain", Some(""), 0, 0)?.unwrap_or_default() {
        list if list.is_empty() => None,
        list => Some(DomainFilter::parse(&list, cf.name(), &mut System { params: req.params })?),
    };
    let settings = Settings {
        max_connections: MAX_CONNECTIONS,
        idle_interval: Duration::from_secs(60),
        // Postfix tries to connect at every command: a restarted server
        // is used at once.
        retry_interval: Duration::ZERO,
        connect_timeout: timeout,
        wait_timeout: timeout,
    };
    Ok(Box::new(Memcache {
        flags: req.flags | FIXED | MULTI_WRITER,
        name: name.to_string(),
        ctx,
        key_format: (key_format != "%s").then_some(template),
        domain,
        ttl,
        mc_flags,
        retry_pause,
        max_try,
        limits: Limits { line, data },
        timeout,
        eof_errno: stale_errno(&endpoint, timeout_secs),
        server: Hosts::new(pools, vec![endpoint.clone()], settings),
        backup,
    }))
}

/// Postfix prints `%m` for an EOF or an overlong reply line too, where
/// errno is left over from before. That is the retry's: every retry runs
/// on a new connection, and over TCP with a timeout the connect is a
/// non-blocking one that leaves EINPROGRESS behind (found by running
/// 3.7.11). Over a UNIX socket the connect completes at once.
fn stale_errno(endpoint: &Endpoint, timeout: i32) -> Option<&'static str> {
    match endpoint {
        Endpoint::Inet { .. } if timeout > 0 => Some("Operation now in progress"),
        _ => None,
    }
}

fn seconds(n: i32) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(1))
}

fn count(n: i32) -> usize {
    usize::try_from(n).unwrap_or(1)
}

/// `transport:endpoint` as Postfix's auto_clnt reads it, with its fatal
/// texts.
fn parse_service(service: &str) -> Result<Endpoint, OpenError> {
    let (transport, rest) = match service.split_once(':') {
        Some((t, e)) if !t.is_empty() && !e.is_empty() => (t, e),
        _ => return Err(OpenError::new(format!("need service transport:endpoint instead of \"{service}\""))),
    };
    let spec = match transport {
        "inet" | "unix" => service.to_string(),
        "local" => format!("unix:{rest}"),
        _ => return Err(OpenError::new(format!("invalid transport name: {transport} in service: {service}"))),
    };
    Endpoint::parse(&spec, false).map_err(OpenError::new)
}

/// How one command ended, for the retry loop.
enum Outcome<T> {
    Done(T),
    /// Try again after `retry_pause` (the warning, logged from the second
    /// attempt on).
    Again(String),
    /// Give up now (the warning, logged now unless the pool logged it).
    Stop {
        text: String,
        log: bool,
    },
}

impl Memcache {
    /// The memcached key of `name`, or why `name` is skipped.
    fn prepare(&self, name: &[u8], flags: u32) -> DictResult<Result<Vec<u8>, &'static str>> {
        if name.is_empty() {
            return Ok(Err("empty lookup key"));
        }
        if let Some(domain) = &self.domain {
            if !domain.allows(name)? {
                return Ok(Err("domain mismatch"));
            }
        }
        let folded = fold_key(name, flags & FOLD_FIX != 0);
        let key = match &self.key_format {
            None => folded.into_owned(),
            Some(t) => {
                let mut key = Vec::new();
                if !self.ctx.expand_query(t, &folded, &mut key, &|raw, out| out.extend_from_slice(raw)) {
                    key.clear();
                }
                key
            }
        };
        if key.is_empty() {
            return Ok(Err("empty lookup key expansion"));
        }
        if has_space(&key) {
            return Ok(Err("name contains space"));
        }
        Ok(Ok(key))
    }

    /// Run `command` up to `max_try` times, as Postfix does.
    fn attempt<T>(&self, mut command: impl FnMut(&mut Stream, Instant) -> Result<T, Fail>, what: Op) -> DictResult<T> {
        let mut last = String::new();
        for count in 0..self.max_try {
            if count > 0 {
                std::thread::sleep(self.retry_pause);
            }
            match self.once(&mut command, what) {
                Outcome::Done(v) => return Ok(v),
                Outcome::Again(text) => {
                    if count > 0 {
                        log::warn!("{text}");
                    }
                    last = text;
                }
                Outcome::Stop { text, log } => {
                    if log {
                        log::warn!("{text}");
                    }
                    return Err(DictError::Retry(text));
                }
            }
        }
        Err(DictError::Retry(last))
    }

    fn once<T>(&self, command: &mut impl FnMut(&mut Stream, Instant) -> Result<T, Fail>, what: Op) -> Outcome<T> {
        let deadline = Instant::now() + self.timeout;
        let failed = Cell::new(None);
        let result = self.server.run(|stream| match command(stream, deadline) {
            Ok(v) => Ok(v),
            Err(Fail::Stale(why)) => Err(Failure::Broken(why)),
            Err(other) => {
                failed.set(Some(other));
                // Closes the connection: Postfix closes it after any failure.
                Err(Failure::Timeout(String::new()))
            }
        });
        match result {
            Ok(v) => Outcome::Done(v),
            // The pool logged the outage once.
            Err(Error::Down { server, reason }) => {
                Outcome::Stop { text: format!("{server} is down: {reason}"), log: false }
            }
            Err(Error::Busy(server)) => Outcome::Stop {
                text: format!(
                    "database memcache:{}: no free connection to {server} within {} s",
                    self.name,
                    self.timeout.as_secs()
                ),
                log: true,
            },
            Err(Error::Failed(_)) => match failed.take() {
                Some(Fail::Timeout) => Outcome::Stop { text: self.io_text(Some("Connection timed out")), log: true },
                Some(Fail::Io(errno)) => Outcome::Again(self.io_text(errno.as_deref().or(self.eof_errno))),
                Some(Fail::Reply(line)) => Outcome::Again(match what {
                    Op::Get => format!("{}: unexpected memcache server reply: {}", self.name, clip(&line, 30)),
                    Op::Set => format!("database memcache:{}: update failed: {}", self.name, clip(&line, 30)),
                    Op::Delete => format!("database memcache:{}: delete failed: {}", self.name, clip(&line, 30)),
                }),
                Some(Fail::Data) => Outcome::Again(format!("{}: EOF receiving memcache server reply", self.name)),
                // Stale failures went to the pool as Broken: never here.
                Some(Fail::Stale(_)) | None => Outcome::Again(self.io_text(self.eof_errno)),
            },
        }
    }

    fn io_text(&self, errno: Option<&str>) -> String {
        match errno {
            Some(e) => format!("database memcache:{}: I/O error: {e}", self.name),
            None => format!("database memcache:{}: I/O error", self.name),
        }
    }

    fn get(&self, key: &[u8]) -> DictResult<Option<Vec<u8>>> {
        self.attempt(|s, deadline| client::get(s, deadline, key, self.limits), Op::Get)
    }

    /// Store `value`: true when stored, false (with Postfix's warning) when
    /// too long to store.
    fn set(&self, key: &[u8], value: &[u8]) -> DictResult<bool> {
        if value.len() > self.limits.data {
            log::warn!(
                "database memcache:{}: data for key {} is too long (data_size_limit={}) -- not stored",
                self.name,
                String::from_utf8_lossy(key),
                self.limits.data
            );
            return Ok(false);
        }
        let how = (self.mc_flags, self.ttl);
        self.attempt(|s, deadline| client::set(s, deadline, key, how, value, self.limits), Op::Set).map(|()| true)
    }

    fn del(&self, key: &[u8]) -> DictResult<bool> {
        self.attempt(|s, deadline| client::delete(s, deadline, key, self.limits), Op::Delete)
    }
}

/// Which command, for its failure texts.
#[derive(Clone, Copy)]
enum Op {
    Get,
    Set,
    Delete,
}

impl Dict for Memcache {
    fn flags(&self) -> u32 {
        self.flags
    }

    /// A lookup waits for memcached (bounded by `timeout`).
    fn waits(&self) -> Waits {
        Waits::Always
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        let name = until_nul(key);
        let Ok(mckey) = self.prepare(name, flags)? else { return Ok(false) };
        let cached = self.get(&mckey);
        if let Ok(Some(value)) = &cached {
            out.extend_from_slice(until_nul(value));
            return Ok(true);
        }
        let Some(backup) = &self.backup else { return cached.map(|_| false) };
        // A miss or an error: the backup answers, and refills the cache.
        let found = backup.lookup(name, flags, out)?;
        if found {
            let _ = self.set(&mckey, out);
        }
        Ok(found)
    }

    fn update(&mut self, key: &[u8], value: &[u8], flags: u32) -> DictResult<bool> {
        let name = until_nul(key);
        let value = until_nul(value);
        let mckey = match self.prepare(name, flags)? {
            Ok(k) => k,
            Err(why) => {
                log::warn!("{}: skipping update for name \"{}\": {why}", self.name, String::from_utf8_lossy(name));
                return Ok(false);
            }
        };
        let stored = self.set(&mckey, value);
        match &mut self.backup {
            Some(backup) => backup.update(name, value, flags),
            None => stored,
        }
    }

    fn delete(&mut self, key: &[u8], flags: u32) -> DictResult<bool> {
        let name = until_nul(key);
        let Ok(mckey) = self.prepare(name, flags)? else { return Ok(false) };
        let deleted = self.del(&mckey);
        match &mut self.backup {
            Some(backup) => backup.delete(name, flags),
            None => deleted,
        }
    }

    fn sequence(
        &mut self,
        cursor: &mut Option<Cursor>,
        first: bool,
        flags: u32,
    ) -> DictResult<Option<(Vec<u8>, Vec<u8>)>> {
        match &mut self.backup {
            Some(backup) => backup.sequence(cursor, first, flags),
            None => {
                log::warn!("database memcache:{}: first/next support requires backup database", self.name);
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
#[path = "memcache_tests.rs"]
mod tests;
