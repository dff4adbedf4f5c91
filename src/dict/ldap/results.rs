//! From search results to the answer, as Postfix's `dict_ldap_get_values`:
//! every value of every wanted attribute of every entry, in the server's
//! order, through `result_format`, joined with `,`.
//!
//! * Terminal attributes: an entry that has one gives only its terminal
//!   attributes (no recursion through it).
//! * Special attributes hold DNs (searched with scope base and filter
//!   `objectclass=*`) or LDAP URLs (searched with the URL's base, scope and
//!   filter, asking only for the wanted attributes the URL lists); their
//!   entries' values join the answer, up to `recursion_limit` levels.
//! * Leaf attributes count only in entries without special attributes.
//! * `size_limit` caps the entries of each search, `expansion_limit` the
//!   values of the whole answer.
//!
//! Kept as Postfix has them: which entry's flags carry over to the next
//! entry of the same result (Postfix sets them only when the entry has one
//! of the attributes it checks), the warnings' texts and recursion depth
//! in `[n]`, and the handle's last result code that decides the
//! `Had some trouble with entries returned by search` warning. Not kept:
//! Postfix 3.7.11 frees a result twice when a URL search fails before any
//! answer after an earlier one succeeded, and aborts; we answer RETRY.

use super::cf::Attributes;
use crate::dict::db_common::results::Assembly;
use crate::dict::postmap_text::until_nul;
use crate::sys::ldap::{self, Entry, LDAP_DECODING_ERROR, LDAP_NO_SUCH_OBJECT, LDAP_SUCCESS, SCOPE_BASE};
use std::ffi::{CStr, CString};

/// What a search asks for.
pub(super) struct Request<'a> {
    pub(super) base: Option<&'a CStr>,
    pub(super) scope: i32,
    pub(super) filter: Option<&'a CStr>,
    pub(super) attrs: &'a [CString],
}

/// The searches of one lookup (a connection, or a test's fake).
pub(super) trait Searcher {
    /// The result code and the entries that came.
    fn search(&mut self, req: &Request<'_>) -> (i32, Vec<Entry>);
}

/// The fixed parts of a walk.
pub(super) struct Limits<'a> {
    /// The table name, as warnings show it.
    pub(super) name: &'a str,
    pub(super) attributes: &'a Attributes,
    /// The same names, for requests.
    pub(super) attr_names: &'a [CString],
    pub(super) recursion_limit: i32,
    pub(super) size_limit: i32,
}

/// One lookup's walk through results.
pub(super) struct Walk<'a, S: Searcher> {
    limits: Limits<'a>,
    assembly: Assembly<'a>,
    key: &'a [u8],
    searcher: &'a mut S,
    recursion: i32,
    /// The warning that failed the lookup (the first), if any.
    pub(super) error: Option<String>,
    /// What libldap's last result code would be (searches set it; asking
    /// an entry for an attribute it lacks sets LDAP_DECODING_ERROR).
    pub(super) errno: i32,
}

impl<'a, S: Searcher> Walk<'a, S> {
    pub(super) fn new(limits: Limits<'a>, assembly: Assembly<'a>, key: &'a [u8], searcher: &'a mut S) -> Self {
        Walk { limits, assembly, key, searcher, recursion: 0, error: None, errno: LDAP_SUCCESS }
    }

    /// True when something was assembled.
    pub(super) fn found(&self) -> bool {
        self.assembly.found()
    }

    fn fail(&mut self, warning: String) {
        log::warn!("{warning}");
        if self.error.is_none() {
            self.error = Some(warning);
        }
    }

    /// Add the values of `entries` (one search's result).
    pub(super) fn get_values(&mut self, entries: &[Entry]) {
        self.recursion += 1;
        let depth = self.recursion;
        let attrs = self.limits.attributes;
        let names = &attrs.names;
        let mut count: i64 = 0;
        // Postfix keeps these across the entries of one result.
        let mut is_leaf = true;
        let mut is_terminal = false;
        for entry in entries {
            count += 1;
            if self.error.is_none() && self.limits.size_limit > 0 && count > i64::from(self.limits.size_limit) {
                let w = format!(
                    "dict_ldap_get_values[{depth}]: {}: Query size limit ({}) exceeded",
                    self.limits.name, self.limits.size_limit
                );
                self.fail(w);
            }
            for name in &names[..attrs.num_terminal] {
                match self.values_of(entry, name) {
                    Some(n) => {
                        is_terminal = n > 0;
                        if is_terminal {
                            break;
                        }
                    }
                    None => continue,
                }
            }
            if !is_terminal && attrs.num_leaf > 0 {
                for name in &names[attrs.num_attributes..] {
                    if let Some(n) = self.values_of(entry, name) {
                        is_leaf = n == 0;
                        if !is_leaf {
                            break;
                        }
                    }
                }
            }
            if entry.attrs.is_empty() {
                // libldap finds no first attribute and says so
                self.errno = LDAP_DECODING_ERROR;
            }
            for (attr, vals) in &entry.attrs {
                if self.error.is_some() || vals.is_empty() {
                    continue;
                }
                let i = names.iter().position(|n| subtype(n, attr) > 0).unwrap_or(names.len());
                if i < attrs.num_attributes || is_terminal {
                    let skip = (is_terminal && i >= attrs.num_terminal)
                        || (!is_leaf && i < attrs.num_terminal + attrs.num_leaf);
                    if !skip {
                        self.add_values(vals, depth);
                    }
                } else if i < names.len() && depth < self.limits.recursion_limit {
                    self.follow(vals, depth);
                } else if i < names.len() {
                    let w = format!(
                        "dict_ldap_get_values[{depth}]: {}: Recursion limit exceeded for special attribute {attr}={}",
                        self.limits.name,
                        String::from_utf8_lossy(until_nul(&vals[0]))
                    );
                    self.fail(w);
                }
            }
        }
        self.recursion -= 1;
    }

    /// The number of values of `name` in `entry` (as libldap's
    /// `ldap_get_values_len`: the exact description, any case), None when
    /// absent.
    fn values_of(&mut self, entry: &Entry, name: &str) -> Option<usize> {
        match entry.attrs.iter().find(|(a, _)| a.eq_ignore_ascii_case(name)) {
            Some((_, v)) => Some(v.len()),
            None => {
                self.errno = LDAP_DECODING_ERROR;
                None
            }
        }
    }

    fn add_values(&mut self, vals: &[Vec<u8>], depth: i32) {
        for v in vals {
            if self.assembly.push(Some(until_nul(v))).is_err() {
                let w = format!(
                    "dict_ldap_get_values[{depth}]: {}: Expansion limit exceeded for key: '{}'",
                    self.limits.name,
                    String::from_utf8_lossy(self.key)
                );
                self.fail(w);
                break;
            }
        }
    }

    /// Search what the special attribute's values name, and walk the results.
    fn follow(&mut self, vals: &[Vec<u8>], depth: i32) {
        for v in vals {
            let text = String::from_utf8_lossy(until_nul(v)).into_owned();
            let outcome = if ldap::is_ldap_url(&text) {
                match ldap::parse_url(&text) {
                    Ok(url) => match url_attrs(self.limits.attributes, url.attrs.as_deref()) {
                        Some(wanted) => {
                            let wanted: Vec<CString> =
                                wanted.into_iter().filter_map(|a| CString::new(a).ok()).collect();
                            let req = Request {
                                base: url.dn.as_deref(),
                                scope: url.scope,
                                filter: url.filter.as_deref(),
                                attrs: &wanted,
                            };
                            self.searcher.search(&req)
                        }
                        None => continue,
                    },
                    Err(rc) => {
                        let w = format!(
                            "dict_ldap_get_values[{depth}]: malformed URL {text}: {}({rc})",
                            ldap::err2string(rc)
                        );
                        self.fail(w);
                        break;
                    }
                }
            } else {
                let Ok(base) = CString::new(until_nul(v)) else { continue };
                let req = Request {
                    base: Some(&base),
                    scope: SCOPE_BASE,
                    filter: Some(c"objectclass=*"),
                    attrs: self.limits.attr_names,
                };
                self.searcher.search(&req)
            };
            let (rc, entries) = outcome;
            self.errno = rc;
            match rc {
                LDAP_SUCCESS => self.get_values(&entries),
                LDAP_NO_SUCH_OBJECT => log::warn!("dict_ldap_get_values[{depth}]: DN {text} not found, skipping "),
                _ => {
                    let w = format!("dict_ldap_get_values[{depth}]: search error {rc}: {} ", ldap::err2string(rc));
                    self.fail(w);
                }
            }
            if self.error.is_some() {
                break;
            }
        }
    }
}

/// How attribute descriptions `a1` and `a2` relate (RFC 2251 4.1.4, any
/// case): 1 when `a2` is `a1` or a subtype of it (`a1;option`), -1 when
/// `a1` is a subtype of `a2`, else 0.
pub(super) fn subtype(a1: &str, a2: &str) -> i32 {
    let (a1, a2) = (a1.as_bytes(), a2.as_bytes());
    let common = a1.iter().zip(a2).take_while(|(x, y)| x.eq_ignore_ascii_case(y)).count();
    match (a1.get(common), a2.get(common)) {
        (None, None | Some(b';')) => 1,
        (Some(b';'), None) => -1,
        _ => 0,
    }
}

/// The attributes a URL search asks for: all wanted ones when the URL lists
/// none, else those both name (the more specific description of a pair);
/// None when that leaves nothing.
pub(super) fn url_attrs(attributes: &Attributes, url: Option<&[String]>) -> Option<Vec<String>> {
    let wanted = &attributes.names;
    let Some(listed) = url.filter(|l| !l.is_empty()) else { return Some(wanted.clone()) };
    let mut out = Vec::new();
    for a1 in listed {
        for a2 in wanted {
            match subtype(a1, a2) {
                1 => out.push(a2.clone()),
                -1 => out.push(a1.clone()),
                _ => {}
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
#[path = "results_tests.rs"]
mod tests;
