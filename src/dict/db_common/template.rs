//! `%` templates, as Postfix's `db_common` parses and expands them.
//!
//! A table has query templates (SQL `query`, LDAP `query_filter` and
//! `search_base`, memcache `key_format`), expanded with the lookup key and
//! the table's quote function, and result templates (`result_format`),
//! expanded once per result value, never quoted. The specifiers:
//! `%%`, `%s` (the whole value), `%u` (its local part, or the whole value
//! when it has no `@`), `%d` (its domain), `%S %U %D` (the same of the
//! lookup key), `%1`..`%9` (the key's domain labels counted from the right).
//!
//! Parsing records, over all templates of the table (a [`Context`]),
//! which parts a key or a value must have: a key without a domain is not
//! looked up at all when some template uses `%d`, `%D` or `%1`..`%9`, and
//! so on. A value whose needed parts are missing is skipped; a skipped key
//! is "not found".

use crate::dict::OpenError;

/// The key must have a non-empty domain.
const KEY_DOMAIN: u8 = 1 << 0;
/// The key must have a non-empty local part.
const KEY_USER: u8 = 1 << 1;
/// A result value must have a non-empty domain.
const VALUE_DOMAIN: u8 = 1 << 2;
/// A result value must have a non-empty local part.
const VALUE_USER: u8 = 1 << 3;

/// What a template is expanded with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Expanded with the lookup key, each piece quoted.
    Query,
    /// Expanded with one result value; `%S %U %D %1-9` refer to the key.
    Result,
}

/// A validated template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    text: Vec<u8>,
    role: Role,
}

/// The constraints accumulated over a table's templates, and the names its
/// warnings show.
#[derive(Clone, Debug)]
pub(crate) struct Context {
    /// `type:name` as the empty-value warnings show it.
    table: String,
    /// The table name alone.
    name: String,
    flags: u8,
    /// The highest `%1`..`%9` used: keys need at least this many labels.
    nparts: usize,
}

/// A quote function: appends its input, quoted, to the output.
pub(crate) type Quote<'q> = &'q dyn Fn(&[u8], &mut Vec<u8>);

impl Context {
    pub(crate) fn new(type_name: &str, name: &str) -> Context {
        Context { table: format!("{type_name}:{name}"), name: name.to_string(), flags: 0, nparts: 0 }
    }

    /// Validate `text` as a template of `role` and add what it needs to the
    /// table's constraints. Postfix's fatal text for an unknown specifier
    /// (or a lone `%` at the end) becomes the error.
    pub(crate) fn parse(&mut self, text: &str, role: Role) -> Result<Template, OpenError> {
        let query = role == Role::Query;
        let mut flags = 0;
        let mut nparts = self.nparts;
        let mut bytes = text.bytes();
        while let Some(b) = bytes.next() {
            if b != b'%' {
                continue;
            }
            match bytes.next() {
                Some(b'%' | b's' | b'S') => {}
                Some(b'u') => flags |= if query { KEY_USER } else { VALUE_USER },
                Some(b'd') => flags |= if query { KEY_DOMAIN } else { VALUE_DOMAIN },
                Some(b'U') => flags |= KEY_USER,
                Some(b'D') => flags |= KEY_DOMAIN,
                Some(c @ b'1'..=b'9') => {
                    nparts = nparts.max(usize::from(c - b'0'));
                    flags |= KEY_DOMAIN;
                }
                _ => {
                    let kind = if query { "query" } else { "result" };
                    return Err(OpenError::new(format!(
                        "db_common_parse: {}: Invalid {kind} template: {text}",
                        self.name
                    )));
                }
            }
        }
        self.flags |= flags;
        self.nparts = nparts;
        Ok(Template { text: text.as_bytes().to_vec(), role })
    }

    /// Expand query template `t` with lookup `key`, appending to `out`
    /// (after a `,` when `out` is not empty); each substituted piece goes
    /// through `quote`. False when the key lacks a part some template
    /// needs, or is empty (then with Postfix's warning): no query.
    pub(crate) fn expand_query(&self, t: &Template, key: &[u8], out: &mut Vec<u8>, quote: Quote<'_>) -> bool {
        debug_assert_eq!(t.role, Role::Query);
        self.expand(t, key, None, out, Some(quote))
    }

    /// Expand result template `t` with one result `value` (None: an SQL
    /// NULL, skipped silently) of lookup `key`, appending to `out` after a
    /// `,` when `out` is not empty. False when the value was skipped.
    pub(crate) fn expand_result(&self, t: &Template, value: Option<&[u8]>, key: &[u8], out: &mut Vec<u8>) -> bool {
        debug_assert_eq!(t.role, Role::Result);
        match value {
            Some(value) => self.expand(t, value, Some(key), out, None),
            None => false,
        }
    }

    /// Whether key `key` passes the query templates' constraints (what
    /// [`Context::expand_query`] checks before expanding).
    fn key_fits(&self, key: &[u8]) -> bool {
        let (user, domain) = split_last_at(key);
        !(self.flags & KEY_DOMAIN != 0 && domain.is_none_or(<[u8]>::is_empty)
            || self.flags & KEY_USER != 0 && user.is_some_and(<[u8]>::is_empty))
    }

    fn expand(
        &self,
        t: &Template,
        value: &[u8],
        key: Option<&[u8]>,
        out: &mut Vec<u8>,
        quote: Option<Quote<'_>>,
    ) -> bool {
        if value.is_empty() {
            match key {
                Some(key) => log::warn!(
                    "table \"{}\": empty lookup result for: \"{}\" -- ignored",
                    self.table,
                    String::from_utf8_lossy(key)
                ),
                None => log::warn!("table \"{}\": empty query string -- ignored", self.table),
            }
            return false;
        }
        let (vuser, vdomain) = split_last_at(value);
        // the domain whose labels %1..%9 take: the key's
        let labels_of = match key {
            Some(key) => {
                if self.flags & VALUE_DOMAIN != 0 && vdomain.is_none_or(<[u8]>::is_empty)
                    || self.flags & VALUE_USER != 0 && vuser.is_some_and(<[u8]>::is_empty)
                {
                    return false;
                }
                // cannot happen: the same key passed these checks before the query
                if !self.key_fits(key) {
                    log::warn!(
                        "db_common_expand: {}: lookup key '{}' skipped after query",
                        self.name,
                        String::from_utf8_lossy(value)
                    );
                    return false;
                }
                split_last_at(key).1
            }
            None => {
                if !self.key_fits(value) {
                    return false;
                }
                vdomain
            }
        };
        // Empty labels are dropped (as Postfix's argv_split does), so
        // `a@example..com` has the labels `example`, `com`.
        let labels: Vec<&[u8]> = match self.nparts {
            0 => Vec::new(),
            _ => labels_of.unwrap_or_default().split(|&b| b == b'.').filter(|l| !l.is_empty()).collect(),
        };
        if labels.len() < self.nparts {
            return false;
        }
        if !out.is_empty() {
            out.push(b',');
        }
        let put = |out: &mut Vec<u8>, piece: &[u8]| match quote {
            Some(q) => q(piece, out),
            None => out.extend_from_slice(piece),
        };
        // the key's parts, for %S %U %D (the value's own in a query)
        let k = key.unwrap_or(value);
        let (kuser, kdomain) = split_last_at(k);
        let mut bytes = t.text.iter();
        while let Some(&b) = bytes.next() {
            if b != b'%' {
                out.push(b);
                continue;
            }
            match bytes.next() {
                Some(b'%') => out.push(b'%'),
                Some(b's') => put(out, value),
                Some(b'u') => put(out, vuser.unwrap_or(value)),
                Some(b'd') => put(out, vdomain.unwrap_or_default()),
                Some(b'S') => put(out, k),
                Some(b'U') => put(out, kuser.unwrap_or(k)),
                Some(b'D') => put(out, kdomain.unwrap_or_default()),
                Some(&c @ b'1'..=b'9') => {
                    let n = usize::from(c - b'0');
                    put(out, labels.len().checked_sub(n).and_then(|i| labels.get(i)).copied().unwrap_or_default());
                }
                // parse() admits nothing else
                _ => {}
            }
        }
        true
    }
}

/// Split at the last `@`: (local part, domain), both None without an `@`.
fn split_last_at(s: &[u8]) -> (Option<&[u8]>, Option<&[u8]>) {
    match s.iter().rposition(|&b| b == b'@') {
        Some(at) => (Some(&s[..at]), Some(&s[at + 1..])),
        None => (None, None),
    }
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
