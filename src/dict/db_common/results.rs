//! Joining a lookup's result values (SQL rows, LDAP attribute values):
//! each goes through the table's `result_format`, the expansions are
//! joined with `,`, and `expansion_limit` (when above 0) caps how many
//! values may count. A lookup over the limit fails (RETRY) after a warning
//! whose wording each table type has its own.

use super::template::{Context, Template};

/// The values of one lookup so far.
pub(crate) struct Assembly<'a> {
    ctx: &'a Context,
    format: &'a Template,
    key: &'a [u8],
    limit: i32,
    count: i32,
    out: &'a mut Vec<u8>,
}

/// More values than `expansion_limit` allows.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct LimitExceeded;

impl<'a> Assembly<'a> {
    /// Start assembling the answer for `key` into `out` (cleared).
    pub(crate) fn new(ctx: &'a Context, format: &'a Template, key: &'a [u8], limit: i32, out: &'a mut Vec<u8>) -> Self {
        out.clear();
        Assembly { ctx, format, key, limit, count: 0, out }
    }

    /// Add one value (None: SQL NULL). Only values that were not skipped
    /// count toward the limit.
    pub(crate) fn push(&mut self, value: Option<&[u8]>) -> Result<(), LimitExceeded> {
        if self.ctx.expand_result(self.format, value, self.key, self.out) && self.limit > 0 {
            self.count += 1;
            if self.count > self.limit {
                return Err(LimitExceeded);
            }
        }
        Ok(())
    }

    /// True when something was assembled: an empty answer is "not found".
    pub(crate) fn found(&self) -> bool {
        !self.out.is_empty()
    }
}

/// The expansion-limit warning of one table type: `<function>: <table>:
/// Expansion limit exceeded for key '<key>'`, with a `:` after `key` for
/// the types that have one (pgsql, mysql, ldap; not sqlite).
#[derive(Clone, Copy, Debug)]
pub(crate) struct LimitWarning {
    pub(crate) function: &'static str,
    pub(crate) colon: bool,
}

impl LimitWarning {
    pub(crate) fn text(&self, table: &str, key: &[u8]) -> String {
        format!(
            "{}: {table}: Expansion limit exceeded for key{} '{}'",
            self.function,
            if self.colon { ":" } else { "" },
            String::from_utf8_lossy(key)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict::db_common::template::Role;

    fn ctx_with(format: &str) -> (Context, Template) {
        let mut ctx = Context::new("sqlite", "/t.cf");
        let t = ctx.parse(format, Role::Result).unwrap();
        (ctx, t)
    }

    fn assemble(format: &str, values: &[Option<&str>], limit: i32) -> (Result<(), LimitExceeded>, String) {
        let (ctx, t) = ctx_with(format);
        let mut out = b"stale".to_vec();
        let mut a = Assembly::new(&ctx, &t, b"key@example.com", limit, &mut out);
        let mut r = Ok(());
        for v in values {
            r = a.push(v.map(str::as_bytes));
            if r.is_err() {
                break;
            }
        }
        (r, String::from_utf8(out).unwrap())
    }

    #[test]
    fn values_are_joined_with_commas_and_nulls_and_empties_skipped() {
        let (r, out) = assemble("%s", &[Some("a"), None, Some(""), Some("b")], 0);
        assert_eq!((r, out.as_str()), (Ok(()), "a,b"));
        let (r, out) = assemble("<%s|%S>", &[Some("x"), Some("y")], 0);
        assert_eq!((r, out.as_str()), (Ok(()), "<x|key@example.com>,<y|key@example.com>"));
    }

    #[test]
    fn only_values_that_count_are_limited() {
        // two values within a limit of two, however many are skipped
        let (r, out) = assemble("%s", &[Some("a"), None, Some(""), None, Some("b")], 2);
        assert_eq!((r, out.as_str()), (Ok(()), "a,b"));
        assert_eq!(assemble("%s", &[Some("a"), Some("b"), Some("c")], 2).0, Err(LimitExceeded));
        // skipped for want of a domain: not counted
        let (r, out) = assemble("%d", &[Some("a@x"), Some("nodomain"), Some("b@y")], 2);
        assert_eq!((r, out.as_str()), (Ok(()), "x,y"));
        // 0 and negative limits mean none
        assert_eq!(assemble("%s", &[Some("a"); 50], 0).0, Ok(()));
        assert_eq!(assemble("%s", &[Some("a"); 50], -1).0, Ok(()));
    }

    #[test]
    fn an_answer_with_nothing_in_it_is_not_found() {
        let (ctx, t) = ctx_with("%s");
        let mut out = Vec::new();
        let mut a = Assembly::new(&ctx, &t, b"k", 0, &mut out);
        a.push(None).unwrap();
        a.push(Some(b"")).unwrap();
        assert!(!a.found());
        a.push(Some(b"v")).unwrap();
        assert!(a.found());
    }

    #[test]
    fn each_type_words_its_limit_warning() {
        let sqlite = LimitWarning { function: "dict_sqlite_lookup", colon: false };
        assert_eq!(
            sqlite.text("/etc/postfix/t.cf", b"a@b"),
            "dict_sqlite_lookup: /etc/postfix/t.cf: Expansion limit exceeded for key 'a@b'"
        );
        let pgsql = LimitWarning { function: "dict_pgsql_lookup", colon: true };
        assert_eq!(pgsql.text("p.cf", b"k"), "dict_pgsql_lookup: p.cf: Expansion limit exceeded for key: 'k'");
    }
}
