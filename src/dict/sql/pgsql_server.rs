//! PostgreSQL behind the generic pool: a server identity ([`PgServer`], one
//! `hosts` entry with the table's login, database and client encoding) and
//! how a query's outcome counts for the pool ([`query`]).

use crate::dict::db_common::pool::{Connection, Failure, Rank, Registry, Server};
use crate::sys::pq::{self, PgResult, Status, Target};
use std::sync::LazyLock;
use std::time::Duration;

/// The pools of every `pgsql:` table of this process.
pub(crate) fn registry() -> &'static Registry<PgServer> {
    static PGSQL: LazyLock<Registry<PgServer>> = LazyLock::new(Registry::new);
    &PGSQL
}

/// One server a `pgsql:` table may use. Equal values share a pool; the
/// password is part of the value and never of its name or `Debug` text.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PgServer {
    /// The `hosts` entry as written (its password, in a URI, is redacted
    /// before it is shown).
    entry: String,
    target: Target,
    /// `encoding` (Postfix 3.8+; default UTF8).
    encoding: String,
}

impl PgServer {
    pub(crate) fn new(entry: &str, dbname: &str, user: &str, password: &str, encoding: &str) -> PgServer {
        PgServer {
            entry: entry.to_string(),
            target: Target::parse(entry, dbname, user, password),
            encoding: encoding.to_string(),
        }
    }
}

impl PgServer {
    /// The `hosts` entry as Postfix's messages name the host, any password
    /// redacted.
    pub(crate) fn host(&self) -> String {
        pq::redact(&self.entry)
    }
}

impl Server for PgServer {
    type Conn = pq::Conn;

    fn name(&self) -> String {
        format!("pgsql server {}", pq::redact(&self.entry))
    }

    fn rank(&self) -> Rank {
        match &self.target {
            Target::Uri(_) => Rank::Uri,
            t if t.is_socket() => Rank::Socket,
            _ => Rank::Inet,
        }
    }

    fn connect(&self, timeout: Duration) -> Result<pq::Conn, String> {
        pq::connect(&self.target, &self.encoding, timeout).map_err(|e| e.to_string())
    }
}

impl Connection for pq::Conn {
    fn is_broken(&mut self) -> bool {
        pq::Conn::is_broken(self)
    }
}

/// Run `sql` on `conn` within `timeout`. Rows or a command's success are a
/// result; a failed statement on a sound connection is
/// [`Failure::Query`] (that lookup's error, the server stays in use); a
/// connection the server closed is [`Failure::Broken`] (the pool retries on
/// a new one); no answer in time is [`Failure::Timeout`]. The texts are
/// Postfix's warnings naming `host` (a `hosts` entry as [`PgServer::host`]
/// shows it); a trailing `?` stands for the newline that ends libpq's
/// messages, as Postfix logs them.
pub(crate) fn query(conn: &mut pq::Conn, sql: &[u8], timeout: Duration, host: &str) -> Result<PgResult, Failure> {
    let fatal = |msg: &str| format!("pgsql query failed: fatal error from host {host}: {msg}?");
    match conn.query(sql, timeout) {
        Ok(result) => match result.status() {
            Status::TuplesOk | Status::CommandOk => Ok(result),
            Status::FatalError if conn.is_broken() => Err(Failure::Broken(fatal(&result.error_message()))),
            Status::FatalError => Err(Failure::Query(fatal(&result.error_message()))),
            Status::BadResponse => Err(Failure::Query(format!("pgsql query failed: protocol error, host {host}"))),
            Status::Other(code) => {
                Err(Failure::Query(format!("pgsql query failed: unknown code 0x{code:x} from host {host}")))
            }
        },
        Err(pq::Error::QueryTimeout) => Err(Failure::Timeout(format!(
            "pgsql query failed: no answer from host {host} within {timeout:?} (query_timeout)"
        ))),
        Err(e) if conn.is_broken() => Err(Failure::Broken(fatal(&e.to_string()))),
        Err(e) => Err(Failure::Query(fatal(&e.to_string()))),
    }
}
