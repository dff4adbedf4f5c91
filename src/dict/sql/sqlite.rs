//! `sqlite:<cf>`: lookups in an SQLite database (Postfix dict_sqlite.c).
//!
//! Parameters, read in Postfix's order (so a bad configuration fails with
//! the same first message): `dbpath` (required), `query` or the legacy
//! `table`/`select_field`/`where_field`/`additional_conditions`,
//! `result_format` (`%s`), `expansion_limit` (0: none), `domain`.
//!
//! A lookup: a key that is not UTF-8 is "not found"; FOLD_FIX lowercases
//! it (ASCII); the domain filter may skip it; the query template is
//! expanded with every piece quoted as SQLite's `%q` does (each `'`
//! doubled, nothing else); only the first statement of the query runs;
//! each row gives its first column (NULL skipped), through
//! `result_format`, joined with `,`.
//!
//! Read-only (proxywrite gets Postfix's `requires O_RDONLY` refusal),
//! FIXED, lookup only. Where Postfix 3.7 exits (a statement that cannot be
//! prepared, a failed step) or creates a missing database file, this table
//! warns and answers RETRY for that lookup, and refuses to open a missing
//! database (docs/compatibility.md).

use crate::dict::db_common::cf::Cf;
use crate::dict::db_common::domain::{DomainFilter, System};
use crate::dict::db_common::results::{Assembly, LimitWarning};
use crate::dict::db_common::template::{Context, Role, Template};
use crate::dict::postmap_text::until_nul;
use crate::dict::{fold_key, Dict, DictError, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FIXED, FOLD_FIX};
use crate::sync::lock;
use rusqlite::fallible_iterator::FallibleIterator;
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection, OpenFlags};
use std::sync::Mutex;
use std::time::Duration;

/// How long a lookup waits for a database another process has locked
/// (a writer's transaction) before it answers RETRY. Postfix 3.7 waits not
/// at all and exits; a writer's commit takes milliseconds, and a client
/// retries a RETRY anyway, so a short wait rides out the usual contention
/// without holding a connection thread for long.
const BUSY_TIMEOUT: Duration = Duration::from_secs(1);

const LIMIT_WARNING: LimitWarning = LimitWarning { function: "dict_sqlite_lookup", colon: false };

pub(crate) struct Sqlite {
    flags: u32,
    /// The cf name, as messages show it.
    name: String,
    ctx: Context,
    query: Template,
    result_format: Template,
    expansion_limit: i32,
    domain: Option<DomainFilter>,
    /// One handle per table, as in Postfix; lookups take turns on it.
    db: Mutex<Connection>,
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    req.require_read_only()?;
    let name = req.name;
    let cf = Cf::open(name, req.params)?;
    let dbpath = cf.get_str("dbpath", Some(""), 1, 0)?.unwrap_or_default();
    let query = super::query_or_legacy(&cf)?;
    let result_format = cf.get_str("result_format", Some("%s"), 1, 0)?.unwrap_or_default();
    let expansion_limit = cf.get_int("expansion_limit", 0, 0, 0)?;
    let mut ctx = Context::new(req.type_name, name);
    let query = ctx.parse(&query, Role::Query)?;
    let result_format = ctx.parse(&result_format, Role::Result)?;
    let domain = match cf.get_str("domain", Some(""), 0, 0)?.unwrap_or_default() {
        list if list.is_empty() => None,
        list => Some(DomainFilter::parse(&list, cf.name(), &mut System { params: req.params })?),
    };
    let db = open_database(&req.full_name(), &dbpath)?;
    Ok(Box::new(Sqlite {
        flags: req.flags | FIXED,
        name: name.to_string(),
        ctx,
        query,
        result_format,
        expansion_limit,
        domain,
        db: Mutex::new(db),
    }))
}

/// Open the database read-only. Postfix 3.7 opens it read-write and
/// creates a missing file (an empty database whose every lookup then
/// fails); 3.10's read-only open and its message are what we follow.
fn open_database(table: &str, dbpath: &str) -> Result<Connection, OpenError> {
    let fail = |what: String| OpenError::new(format!("{table}: open database {dbpath}: {what}"));
    if let Err(e) = std::fs::metadata(dbpath) {
        let why = crate::dict::postmap_text::io_error_text(&e);
        return Err(fail(format!("unable to open database file: {why}")));
    }
    let db = Connection::open_with_flags(dbpath, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| fail(errmsg(&e)))?;
    db.busy_timeout(BUSY_TIMEOUT).map_err(|e| fail(errmsg(&e)))?;
    Ok(db)
}

/// SQLite's own message of an error (what `sqlite3_errmsg` gives).
fn errmsg(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(_, Some(msg)) if !msg.is_empty() => msg.clone(),
        rusqlite::Error::SqliteFailure(code, _) => code.to_string(),
        other => other.to_string(),
    }
}

/// SQLite's `%q`: every `'` doubled, nothing else changed.
pub(crate) fn quote(raw: &[u8], out: &mut Vec<u8>) {
    for &b in raw {
        out.push(b);
        if b == b'\'' {
            out.push(b'\'');
        }
    }
}

/// Column 0 of a row as `sqlite3_column_text` gives it to Postfix, up to
/// the first NUL (Postfix takes it as a C string); None for NULL. Numbers
/// are converted by SQLite itself, so the text is exactly Postfix's.
fn column_text(db: &Connection, value: ValueRef<'_>) -> rusqlite::Result<Option<Vec<u8>>> {
    Ok(match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string().into_bytes()),
        ValueRef::Real(r) => {
            let text: String = db.query_row("SELECT CAST(?1 AS TEXT)", [r], |row| row.get(0))?;
            Some(text.into_bytes())
        }
        ValueRef::Text(b) | ValueRef::Blob(b) => Some(until_nul(b).to_vec()),
    })
}

/// Why a lookup failed after its query was built.
enum Failure {
    /// The statement could not be prepared (Postfix 3.7: fatal).
    Prepare(String),
    /// A step failed (Postfix 3.7: this warning, then a fatal finalize).
    Step(String),
    Limit,
}

impl Sqlite {
    /// Run `query` and assemble the answer for `key` into `out`; true
    /// when something was found.
    fn run(&self, query: &str, key: &[u8], out: &mut Vec<u8>) -> Result<bool, Failure> {
        let db = lock(&self.db);
        let mut assembly = Assembly::new(&self.ctx, &self.result_format, key, self.expansion_limit, out);
        // The first statement only, as sqlite3_prepare_v2 leaves the rest
        // unread (leading empty statements and comments are skipped).
        let mut statements = Batch::new(&db, query);
        let Some(mut stmt) = statements.next().map_err(|e| Failure::Prepare(errmsg(&e)))? else {
            // Postfix steps a NULL statement: SQLite's misuse error, and
            // the connection's message is still "not an error".
            return Err(Failure::Step("not an error".to_string()));
        };
        let mut rows = stmt.raw_query();
        loop {
            let row = match rows.next() {
                Ok(Some(row)) => row,
                Ok(None) => return Ok(assembly.found()),
                Err(e) => return Err(Failure::Step(errmsg(&e))),
            };
            let value = row.get_ref(0).map_err(|e| Failure::Step(errmsg(&e)))?;
            let value = column_text(&db, value).map_err(|e| Failure::Step(errmsg(&e)))?;
            if assembly.push(value.as_deref()).is_err() {
                return Err(Failure::Limit);
            }
        }
    }
}

impl Dict for Sqlite {
    fn flags(&self) -> u32 {
        self.flags
    }

    /// A lookup may wait up to [`BUSY_TIMEOUT`] for a database another
    /// process has locked, and for the table's one handle while another
    /// thread's query runs: never on the event loop.
    fn waits(&self) -> Waits {
        Waits::Always
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        let key = until_nul(key);
        // Postfix skips non-UTF-8 keys ("not found"), and our query must be text.
        if std::str::from_utf8(key).is_err() {
            return Ok(false);
        }
        let key = fold_key(key, flags & FOLD_FIX != 0);
        if let Some(domain) = &self.domain {
            if !domain.allows(&key)? {
                return Ok(false);
            }
        }
        let mut query = Vec::new();
        if !self.ctx.expand_query(&self.query, &key, &mut query, &quote) {
            return Ok(false);
        }
        // UTF-8 key and template, quoting adds only `'`: the query is text
        let Ok(query) = String::from_utf8(query) else { return Ok(false) };
        // The trailing `?` stands for the newline Postfix's texts end with.
        let warning = match self.run(&query, &key, out) {
            Ok(found) => return Ok(found),
            Err(Failure::Prepare(msg)) => format!("dict_sqlite_lookup: {}: SQL prepare failed: {msg}?", self.name),
            Err(Failure::Step(msg)) => {
                format!("dict_sqlite_lookup: {}: SQL step failed for query '{query}': {msg}?", self.name)
            }
            Err(Failure::Limit) => LIMIT_WARNING.text(&self.name, &key),
        };
        out.clear();
        log::warn!("{warning}");
        Err(DictError::Retry(warning))
    }
}

#[cfg(test)]
#[path = "sqlite_tests.rs"]
mod tests;
