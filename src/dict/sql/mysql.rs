//! `mysql:<cf>`: lookups on a MariaDB or MySQL server (Postfix
//! dict_mysql.c), through the connection pools of [`super::pool`].
//!
//! Parameters, read in Postfix's order (3.9's, which adds `charset`,
//! `retry_interval` and `idle_interval` after `dbname`): `user`,
//! `password`, `dbname` (required), `charset` (`utf8mb4`),
//! `retry_interval` (60 s), `idle_interval` (60 s), then ours,
//! `connect_timeout` and `query_timeout` (5 s each); `result_format`,
//! `option_file`, `option_group` (`client`), the `tls_*` settings,
//! `require_result_set` (yes), `expansion_limit`, `query` or the legacy
//! form, `domain`, `hosts` (`localhost`).
//!
//! A lookup: NUL ends the key; FOLD_FIX lowercases it; the domain filter
//! and the templates' constraints may skip it ("not found", no query);
//! the query is expanded with every piece escaped by
//! `mysql_real_escape_string` on the connection that runs it; every
//! column of every row of the first result set goes through
//! `result_format` (NULL skipped silently, empty values with a warning),
//! joined with `,`. Read-only, FIXED, lookup only.
//!
//! Where this differs from Postfix 3.7 (docs/compatibility.md): one pool
//! of connections per server identity shared by every table naming it,
//! instead of a connection per table; a failed statement fails that
//! lookup only instead of taking the host out for 60 s; a connection the
//! server dropped is replaced and the query retried at once; connect and
//! query timeouts; the `utf8mb4` character set set explicitly (3.9).

use crate::dict::db_common::cf::Cf;
use crate::dict::db_common::domain::{DomainFilter, System};
use crate::dict::db_common::pool::{self, Connection, Failure, Hosts, Rank, Registry, Server, Settings};
use crate::dict::db_common::results::{Assembly, LimitWarning};
use crate::dict::db_common::template::{Context, Role, Template};
use crate::dict::postmap_text::until_nul;
use crate::dict::{fold_key, Dict, DictError, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FIXED, FOLD_FIX};
use crate::sys::mysql::{self as my, Endpoint, Health, Params, Rows, Stage, Tls};
use std::sync::LazyLock;
use std::time::Duration;

const LIMIT_WARNING: LimitWarning = LimitWarning { function: "dict_mysql_lookup", colon: true };

/// The defaults of our timeouts, in seconds (Postfix has none: a hung
/// server hangs the proxymap process until the kernel gives up).
const CONNECT_TIMEOUT: i32 = 5;
const QUERY_TIMEOUT: i32 = 5;

/// The pools of this process, shared by every `mysql:` table.
static REGISTRY: LazyLock<Registry<MyServer>> = LazyLock::new(Registry::new);

/// One server a table may use: where, and everything the connection is
/// made with. Equal values share a pool; the password never shows.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct MyServer {
    params: Params,
}

impl Server for MyServer {
    type Conn = my::Conn;

    fn name(&self) -> String {
        format!("mysql server {}", endpoint_name(&self.params.endpoint))
    }

    fn rank(&self) -> Rank {
        match self.params.endpoint.host {
            Some(_) => Rank::Inet,
            None => Rank::Socket,
        }
    }

    /// The connect timeout is in the parameters already (the library
    /// applies it); the pool's is the same value.
    fn connect(&self, _timeout: Duration) -> Result<my::Conn, String> {
        my::connect(&self.params).map_err(|e| e.to_string())
    }
}

impl Connection for my::Conn {
    fn is_broken(&mut self) -> bool {
        my::Conn::is_broken(self)
    }
}

/// A server as log lines show it: `unix:<path>`, `inet:<host>:<port>`,
/// or `localhost` (the library's default socket).
fn endpoint_name(e: &Endpoint) -> String {
    match (&e.host, &e.socket) {
        (Some(host), _) => format!("inet:{host}:{}", e.port),
        (None, Some(path)) => format!("unix:{path}"),
        (None, None) => "localhost".to_string(),
    }
}

/// One `hosts` entry as Postfix reads it: `unix:<path>`, or `[inet:]host`;
/// for both a `:port` after the last colon (a number or a TCP service
/// name); `localhost` (any case) is the library's default socket.
pub(crate) fn parse_host(entry: &str) -> Result<Endpoint, OpenError> {
    let (unix, rest) = match entry.strip_prefix("unix:") {
        Some(rest) => (true, rest),
        None => (false, entry.strip_prefix("inet:").unwrap_or(entry)),
    };
    let (name, port) = match rest.rsplit_once(':') {
        Some((name, port)) => (name, find_inet_port(port)?),
        None => (rest, 0),
    };
    Ok(if name.eq_ignore_ascii_case("localhost") {
        Endpoint { host: None, socket: None, port }
    } else if unix {
        Endpoint { host: None, socket: Some(name.to_string()), port }
    } else {
        Endpoint { host: Some(name.to_string()), socket: None, port }
    })
}

/// A port: digits whose value is not 0 are a number (1-65535), anything
/// else a TCP service name from /etc/services (Postfix's find_inet_port).
fn find_inet_port(text: &str) -> Result<u16, OpenError> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let n = text.bytes().fold(0u64, |n, b| n.saturating_mul(10).saturating_add(u64::from(b - b'0')));
        if n != 0 {
            return u16::try_from(n).map_err(|_| OpenError::new(format!("bad port number: {text}")));
        }
    }
    let services = std::fs::read_to_string("/etc/services").unwrap_or_default();
    service_port(&services, text).ok_or_else(|| OpenError::new(format!("unknown service: {text}/tcp")))
}

/// The TCP port of service `name` (or an alias) in /etc/services text.
fn service_port(services: &str, name: &str) -> Option<u16> {
    services.lines().find_map(|line| {
        let mut words = line.split('#').next().unwrap_or_default().split_whitespace();
        let service = words.next()?;
        let (port, proto) = words.next()?.split_once('/')?;
        let named = service == name || words.any(|alias| alias == name);
        (named && proto == "tcp").then(|| port.parse().ok()).flatten()
    })
}

pub(crate) struct Mysql {
    flags: u32,
    /// The cf name, as messages show it.
    name: String,
    /// `mysql:<cf>`, as query failures show it.
    full_name: String,
    ctx: Context,
    query: Template,
    result_format: Template,
    expansion_limit: i32,
    require_result_set: bool,
    query_timeout: Duration,
    domain: Option<DomainFilter>,
    hosts: Hosts<MyServer>,
}

/// A positive number of seconds.
fn seconds(cf: &Cf, param: &str, default: i32) -> Result<Duration, OpenError> {
    let n = cf.get_int(param, default, 1, 0)?;
    Ok(Duration::from_secs(u64::try_from(n).unwrap_or(1)))
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    Ok(Box::new(build(req)?))
}

fn build(req: &OpenRequest) -> Result<Mysql, OpenError> {
    req.require_read_only()?;
    let name = req.name;
    let cf = Cf::open(name, req.params)?;
    let str_or_empty = |param, min| cf.get_str(param, Some(""), min, 0).map(Option::unwrap_or_default);
    let user = str_or_empty("user", 0)?;
    let password = str_or_empty("password", 0)?;
    let dbname = str_or_empty("dbname", 1)?;
    let charset = cf.get_str("charset", Some("utf8mb4"), 1, 0)?.unwrap_or_default();
    let retry_interval = seconds(&cf, "retry_interval", 60)?;
    let idle_interval = seconds(&cf, "idle_interval", 60)?;
    let connect_timeout = seconds(&cf, "connect_timeout", CONNECT_TIMEOUT)?;
    let query_timeout = seconds(&cf, "query_timeout", QUERY_TIMEOUT)?;
    let result_format = cf.get_str("result_format", Some("%s"), 1, 0)?.unwrap_or_default();
    let option_file = cf.get_str("option_file", None, 0, 0)?;
    // "client" when unset; set empty, no option group at all
    let option_group = cf.get_str("option_group", Some("client"), 0, 0)?.unwrap_or_default();
    let tls = Tls {
        key_file: cf.get_str("tls_key_file", None, 0, 0)?,
        cert_file: cf.get_str("tls_cert_file", None, 0, 0)?,
        ca_file: cf.get_str("tls_CAfile", None, 0, 0)?,
        ca_path: cf.get_str("tls_CApath", None, 0, 0)?,
        ciphers: cf.get_str("tls_ciphers", None, 0, 0)?,
    };
    let tls_verify_cert = match cf.get_str("tls_verify_cert", None, 0, 0)? {
        Some(_) => Some(cf.get_bool("tls_verify_cert", false)?),
        None => None,
    };
    let require_result_set = cf.get_bool("require_result_set", true)?;
    let expansion_limit = cf.get_int("expansion_limit", 0, 0, 0)?;
    let query = super::query_or_legacy(&cf)?;
    let mut ctx = Context::new(req.type_name, name);
    let query = ctx.parse(&query, Role::Query)?;
    let result_format = ctx.parse(&result_format, Role::Result)?;
    let domain = match cf.get_str("domain", Some(""), 0, 0)?.unwrap_or_default() {
        list if list.is_empty() => None,
        list => Some(DomainFilter::parse(&list, cf.name(), &mut System { params: req.params })?),
    };
    let hosts = cf.get_str("hosts", Some(""), 0, 0)?.unwrap_or_default();
    let mut entries: Vec<&str> = hosts.split([' ', ',', '\t', '\r', '\n']).filter(|h| !h.is_empty()).collect();
    if entries.is_empty() {
        entries.push("localhost");
    }
    let mut servers = Vec::with_capacity(entries.len());
    for entry in entries {
        let params = Params {
            endpoint: parse_host(entry)?,
            user: user.clone(),
            password: password.clone(),
            dbname: dbname.clone(),
            charset: charset.clone(),
            option_file: option_file.clone(),
            option_group: option_group.clone(),
            tls: tls.clone(),
            tls_verify_cert,
            connect_timeout,
            io_timeout: query_timeout,
        };
        let server = MyServer { params };
        // The same server twice is one pool: list it once.
        if !servers.contains(&server) {
            servers.push(server);
        }
    }
    let settings = Settings { idle_interval, retry_interval, connect_timeout, ..Settings::default() };
    Ok(Mysql {
        flags: req.flags | FIXED,
        name: name.to_string(),
        full_name: req.full_name(),
        ctx,
        query,
        result_format,
        expansion_limit,
        require_result_set,
        query_timeout,
        domain,
        hosts: Hosts::new(&REGISTRY, servers, settings),
    })
}

/// The message of a failed query, after `mysql:<cf>: ` (Postfix's words).
fn failure_text(e: &my::QueryError) -> String {
    match e.stage {
        Stage::Query => format!("query failed: {}", e.text),
        Stage::MultipleResultSets => "query failed: multiple result sets returning data are not supported".into(),
        Stage::StoreResult => format!("query failed (mysql_store_result): {}", e.text),
        Stage::NextResult => format!("query failed (mysql_next_result): {}", e.text),
    }
}

impl Mysql {
    /// Expand the query for `key` with `conn`'s escaping, run it, and
    /// tell the pool how it went.
    fn query_on(&self, conn: &mut my::Conn, key: &[u8]) -> Result<Option<Rows>, Failure> {
        let mut sql = Vec::new();
        let escaper: &my::Conn = conn;
        // The key passed the same templates' checks before: always true.
        self.ctx.expand_query(&self.query, key, &mut sql, &|raw, out| escaper.escape(raw, out));
        match conn.query(&sql) {
            Ok(None) if self.require_result_set => {
                Err(Failure::Query("query failed: query returned no result set(require_result_set = yes)".into()))
            }
            Ok(rows) => Ok(rows),
            Err(e) => Err(match e.health {
                Health::Sound => Failure::Query(failure_text(&e)),
                Health::Lost => Failure::Broken(failure_text(&e)),
                Health::TimedOut => {
                    Failure::Timeout(format!("query failed: no answer within {} s", self.query_timeout.as_secs()))
                }
            }),
        }
    }

    /// Join every column of every row through `result_format`.
    fn assemble(&self, rows: &Rows, key: &[u8], out: &mut Vec<u8>) -> DictResult<bool> {
        let mut assembly = Assembly::new(&self.ctx, &self.result_format, key, self.expansion_limit, out);
        for value in rows.iter().flatten() {
            // Postfix reads each value as a C string: up to a NUL.
            if assembly.push(value.as_deref().map(until_nul)).is_err() {
                let warning = LIMIT_WARNING.text(&self.name, key);
                out.clear();
                log::warn!("{warning}");
                return Err(DictError::Retry(warning));
            }
        }
        Ok(assembly.found())
    }
}

impl Dict for Mysql {
    fn flags(&self) -> u32 {
        self.flags
    }

    /// Every lookup talks to a server (or waits for a free connection).
    fn waits(&self) -> Waits {
        Waits::Always
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        let key = fold_key(until_nul(key), flags & FOLD_FIX != 0);
        if let Some(domain) = &self.domain {
            match domain.allows(&key) {
                Ok(true) => {}
                Ok(false) => return Ok(false),
                Err(e) => {
                    log::warn!(
                        "{} 'domain' pattern match failed for '{}'",
                        self.full_name,
                        String::from_utf8_lossy(&key)
                    );
                    return Err(e);
                }
            }
        }
        // The templates' constraints, checked once without any escaping.
        let mut scratch = Vec::new();
        if !self.ctx.expand_query(&self.query, &key, &mut scratch, &|raw, out| out.extend_from_slice(raw)) {
            return Ok(false);
        }
        let warning = match self.hosts.run(|conn| self.query_on(conn, &key)) {
            Ok(None) => return Ok(false),
            Ok(Some(rows)) => return self.assemble(&rows, &key, out),
            Err(pool::Error::Failed(f)) => format!("{}: {f}", self.full_name),
            // The pool logged the outage once; every lookup meanwhile is RETRY.
            Err(e @ pool::Error::Down { .. }) => {
                let text = format!("{}: {e}", self.full_name);
                log::debug!("{text}");
                return Err(DictError::Retry(text));
            }
            Err(e @ pool::Error::Busy(_)) => format!("{}: {e}", self.full_name),
        };
        log::warn!("{warning}");
        Err(DictError::Retry(warning))
    }
}

#[cfg(test)]
#[path = "mysql_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "mysql_server_tests.rs"]
mod server_tests;
