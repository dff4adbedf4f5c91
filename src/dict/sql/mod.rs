//! SQL tables, on top of `dict::db_common`.
//!
//! * [`sqlite`]: `sqlite:<cf>`, a local database file through the system's
//!   SQLite library;
//! * [`pgsql`]: `pgsql:<cf>`, a PostgreSQL server through libpq
//!   (`sys::pq`); [`pgsql_server`] is PostgreSQL's server identity;
//! * [`mysql`]: `mysql:<cf>`, a MariaDB or MySQL server through the
//!   system's libmariadb (`sys::mysql`).
//!
//! pgsql and mysql connect through `db_common::pool`.
//!
//! The network tables share this module's legacy query builder and
//! db_common's templates, domain filter and result assembly with sqlite.
//!
//! What every SQL type shares lives here: the legacy query built from
//! `select_field`, `table`, `where_field` and `additional_conditions` when
//! a table has no `query`.

pub(crate) mod mysql;
pub(crate) mod pgsql;
pub(crate) mod pgsql_server;
pub(crate) mod sqlite;

#[cfg(test)]
mod pgsql_tests;
#[cfg(test)]
pub(crate) mod test_server;
// test_server.rs takes TempDir from its parent (as in tests/common/pgsql.rs).
#[cfg(test)]
use crate::test_support::TempDir;

/// The SQLite library's version (for `proxymap --version`).
pub(crate) fn sqlite_version() -> &'static str {
    rusqlite::version()
}

use crate::dict::db_common::cf::Cf;
use crate::dict::OpenError;

/// The `query` of a table, or the legacy form when it has none (Postfix
/// takes an empty `query` for none too):
/// `SELECT <select_field> FROM <table> WHERE <where_field>='%s' <additional_conditions>`
/// (no spaces around `=`, and a trailing space when there are no
/// additional conditions). The three names are required, in this order.
pub(crate) fn query_or_legacy(cf: &Cf) -> Result<String, OpenError> {
    if let Some(query) = cf.get_str("query", None, 0, 0)? {
        return Ok(query);
    }
    let required = |name| cf.get_str(name, None, 1, 0).map(Option::unwrap_or_default);
    let table = required("table")?;
    let select_field = required("select_field")?;
    let where_field = required("where_field")?;
    let additional = cf.get_str("additional_conditions", Some(""), 0, 0)?.unwrap_or_default();
    Ok(format!("SELECT {select_field} FROM {table} WHERE {where_field}='%s' {additional}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(text: &str) -> Result<String, String> {
        let cf = Cf::from_file_text("/etc/t.cf", text.as_bytes()).unwrap();
        query_or_legacy(&cf).map_err(|e| e.reason)
    }

    #[test]
    fn a_query_is_taken_as_written() {
        assert_eq!(
            query("query = SELECT v FROM t WHERE k='%s'\ntable = ignored\n").unwrap(),
            "SELECT v FROM t WHERE k='%s'"
        );
    }

    #[test]
    fn without_a_query_the_legacy_parameters_build_one() {
        let base = "table = aliases\nselect_field = dest\nwhere_field = alias\n";
        assert_eq!(query(base).unwrap(), "SELECT dest FROM aliases WHERE alias='%s' ");
        assert_eq!(
            query(&format!("{base}additional_conditions = AND active = 1\n")).unwrap(),
            "SELECT dest FROM aliases WHERE alias='%s' AND active = 1"
        );
        // an empty query is no query
        assert_eq!(query(&format!("query =\n{base}")).unwrap(), "SELECT dest FROM aliases WHERE alias='%s' ");
    }

    #[test]
    fn a_missing_legacy_parameter_fails_with_postfix_text_in_order() {
        assert_eq!(query("").unwrap_err(), "/etc/t.cf: bad string length 0 < 1: table = ");
        assert_eq!(query("table = t\n").unwrap_err(), "/etc/t.cf: bad string length 0 < 1: select_field = ");
        assert_eq!(
            query("table = t\nselect_field = v\nwhere_field =\n").unwrap_err(),
            "/etc/t.cf: bad string length 0 < 1: where_field = "
        );
    }
}
