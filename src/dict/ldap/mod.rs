//! `ldap:<cf>`: lookups in an LDAP directory (Postfix's dict_ldap.c),
//! through OpenLDAP's libldap (`sys::ldap`, the library Postfix links) and
//! the connection pools of `db_common::pool`.
//!
//! * [`cf`]: the parameters, Postfix's order, defaults and messages;
//! * [`filter`]: quoting key pieces into the search base and filter;
//! * [`results`]: from entries to the answer (terminal, leaf and special
//!   attributes, DN/URL recursion, size and expansion limits);
//! * [`server`]: the server identity and its connections.
//!
//! A lookup, as Postfix: a key that is not UTF-8 is "not found" (unless
//! the client's UTF-8 handling is active); FOLD_FIX lowercases it; the
//! domain filter may skip it; the search base and filter are expanded
//! (a key that lacks a part they need is "not found", no server asked);
//! then one search (scope, wanted attributes, `timeout` as the server's
//! time limit and the client's wait, `size_limit`) on a pooled connection.
//! A missing search base is "not found" when the base depends on the key,
//! else a warning and RETRY; any other error is `Search error <rc>:
//! <text> ` and RETRY, and the connection is closed.
//!
//! Where we differ on purpose: a connection the server dropped is replaced
//! and the search run again at once (Postfix does that too, once); a
//! server that cannot be connected to is logged once per outage by the pool
//! (Postfix logs its connect warning at every lookup) and not tried again
//! for `retry_interval` (ours, 5 s); each server gets up to
//! `max_connections` connections per process (ours, 4; Postfix shares one).
//!
//! Read-only (proxywrite gets Postfix's `requires O_RDONLY` refusal), FIXED,
//! lookup only.

mod cf;

/// The fuzz target's way in: an `ldap:` table's `.cf` file text read as
/// the open reads it (no server is contacted).
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_cf(text: &[u8], sources: &mut dyn crate::dict::db_common::domain::Sources) -> Result<(), OpenError> {
    let cf = crate::dict::db_common::cf::Cf::from_file_text("/etc/postfix/ldap.cf", text)?;
    cf::from_cf("/etc/postfix/ldap.cf", &cf, sources).map(drop)
}
mod filter;
mod results;
mod server;
#[cfg(test)]
pub(crate) mod test_slapd;
// test_slapd.rs takes TempDir from its parent (as in tests/common/slapd.rs).
#[cfg(test)]
use crate::test_support::TempDir;

use crate::dict::db_common::pool::{Failure, Hosts, Registry, Settings};
use crate::dict::db_common::results::Assembly;
use crate::dict::postmap_text::until_nul;
use crate::dict::{fold_key, Dict, DictError, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FIXED, FOLD_FIX, UTF8_ACTIVE};
use crate::sys::ldap::{self, Entry, LDAP_DECODING_ERROR, LDAP_NO_SUCH_OBJECT, LDAP_SERVER_DOWN, LDAP_SUCCESS};
use results::{Limits, Request, Searcher, Walk};
use server::{LdapConn, LdapServer};
use std::ffi::CString;
use std::time::Duration;

pub(crate) struct LdapTable {
    flags: u32,
    name: String,
    cf: cf::Config,
    attr_names: Vec<CString>,
    timeout: Duration,
    hosts: Hosts<LdapServer>,
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    open_in(req, server::registry())
}

/// Open with the pools of `pools` (the process's, or a test's).
fn open_in(req: &OpenRequest, pools: &Registry<LdapServer>) -> Result<Box<dyn Dict>, OpenError> {
    req.require_read_only()?;
    let cf = cf::read(req.name, req.params)?;
    // Postfix lets 0 through (and then waits not at all); never wait forever.
    let timeout = Duration::from_secs(u64::try_from(cf.timeout).unwrap_or(0).max(1));
    let server = LdapServer {
        urls: cf.urls.clone(),
        version: cf.version,
        bind: cf.bind,
        bind_dn: cf.bind_dn.clone(),
        bind_pw: cf.bind_pw.clone(),
        dereference: cf.dereference,
        chase_referrals: cf.chase_referrals,
        timeout,
        tls: cf.tls.clone(),
    };
    let settings = Settings {
        max_connections: usize::try_from(cf.max_connections).unwrap_or(1),
        idle_interval: Duration::from_secs(60),
        retry_interval: Duration::from_secs(u64::try_from(cf.retry_interval).unwrap_or(1)),
        connect_timeout: timeout,
        wait_timeout: timeout,
    };
    let attr_names = cf.attributes.names.iter().filter_map(|n| CString::new(n.as_str()).ok()).collect();
    Ok(Box::new(LdapTable {
        flags: req.flags | FIXED,
        name: req.name.to_string(),
        attr_names,
        timeout,
        hosts: Hosts::new(pools, vec![server], settings),
        cf,
    }))
}

/// Searches on one pooled connection.
struct OnConn<'a> {
    conn: &'a mut LdapConn,
    timeout: Duration,
    size_limit: i32,
}

impl Searcher for OnConn<'_> {
    fn search(&mut self, req: &Request<'_>) -> (i32, Vec<Entry>) {
        self.conn.ld.search(req.base, req.scope, req.filter, req.attrs, self.timeout, self.size_limit)
    }
}

/// A search's outcome that is not a pool failure.
enum Answer {
    /// The answer (maybe empty: not found), or the warning that failed it.
    Values(Result<Vec<u8>, String>),
    NotFound,
}

impl LdapTable {
    /// The search for `key` on `conn`, and the walk through its results.
    fn run(&self, conn: &mut LdapConn, key: &[u8], base: &CString, filter: &CString) -> Result<Answer, Failure> {
        let mut on = OnConn { conn, timeout: self.timeout, size_limit: self.cf.size_limit };
        let req = Request { base: Some(base), scope: self.cf.scope, filter: Some(filter), attrs: &self.attr_names };
        let (rc, entries) = on.search(&req);
        match rc {
            LDAP_SUCCESS => {}
            LDAP_NO_SUCH_OBJECT if self.cf.dynamic_base => return Ok(Answer::NotFound),
            LDAP_NO_SUCH_OBJECT => {
                return Err(Failure::Query(format!(
                    "dict_ldap_lookup: {}: Search base '{}' not found: {rc}: {}",
                    self.name,
                    base.to_string_lossy(),
                    ldap::err2string(rc)
                )))
            }
            LDAP_SERVER_DOWN => {
                return Err(Failure::Broken(format!("dict_ldap_lookup: Search error {rc}: {} ", ldap::err2string(rc))))
            }
            // Postfix tears the connection down: so does a Timeout failure.
            _ => {
                return Err(Failure::Timeout(format!("dict_ldap_lookup: Search error {rc}: {} ", ldap::err2string(rc))))
            }
        }
        let mut out = Vec::new();
        let assembly = Assembly::new(&self.cf.ctx, &self.cf.result_format, key, self.cf.expansion_limit, &mut out);
        let limits = Limits {
            name: &self.name,
            attributes: &self.cf.attributes,
            attr_names: &self.attr_names,
            recursion_limit: self.cf.recursion_limit,
            size_limit: self.cf.size_limit,
        };
        let mut walk = Walk::new(limits, assembly, key, &mut on);
        walk.get_values(&entries);
        let (error, errno, found) = (walk.error.take(), walk.errno, walk.found());
        if errno != LDAP_SUCCESS && errno != LDAP_DECODING_ERROR {
            log::warn!(
                "dict_ldap_lookup: Had some trouble with entries returned by search: {}",
                ldap::err2string(errno)
            );
        }
        Ok(Answer::Values(match error {
            Some(warning) => Err(warning),
            None if found => Ok(out),
            None => Ok(Vec::new()),
        }))
    }
}

impl Dict for LdapTable {
    fn flags(&self) -> u32 {
        self.flags
    }

    /// A lookup waits for the server (bounded by `timeout`): never on the
    /// event loop.
    fn waits(&self) -> Waits {
        Waits::Always
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        let key = until_nul(key);
        if flags & UTF8_ACTIVE == 0 && std::str::from_utf8(key).is_err() {
            return Ok(false);
        }
        let key = fold_key(key, flags & FOLD_FIX != 0);
        if let Some(domain) = &self.cf.domain {
            if !domain.allows(&key)? {
                return Ok(false);
            }
        }
        let (ctx, mut base, mut filter) = (&self.cf.ctx, Vec::new(), Vec::new());
        if !ctx.expand_query(&self.cf.search_base, &key, &mut base, &filter::base_quote)
            || !ctx.expand_query(&self.cf.query_filter, &key, &mut filter, &filter::filter_quote)
        {
            return Ok(false);
        }
        // The quoting escapes NUL: neither can hold one.
        let (Ok(base), Ok(filter)) = (CString::new(base), CString::new(filter)) else { return Ok(false) };
        match self.hosts.run_on(|_, conn| self.run(conn, &key, &base, &filter)) {
            Ok(Answer::NotFound) => Ok(false),
            Ok(Answer::Values(Ok(value))) => {
                *out = value;
                Ok(!out.is_empty())
            }
            // logged as it happened
            Ok(Answer::Values(Err(warning))) => Err(DictError::Retry(warning)),
            Err(e) => Err(e.into_retry(|server| {
                format!(
                    "dict_ldap_lookup: {}: no free connection to {server} within {} s",
                    self.name,
                    self.timeout.as_secs()
                )
            })),
        }
    }
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
