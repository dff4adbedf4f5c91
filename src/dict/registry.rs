//! Table type names → constructors.

use super::surrogate::Surrogate;
use super::{Dict, Mode, OpenError, OpenRequest};
use crate::config::Params;

pub type OpenFn = fn(&OpenRequest) -> Result<Box<dyn Dict>, OpenError>;

/// A table whose open failed for want of descriptors or memory, or for
/// refused access (permissions, a read-only file system), is opened again
/// after this long: at the read-only service's next accept (the clients
/// that used it then look it up again), or at the next request for it.
/// Postfix keeps the stand-in until the process ends.
const RETRY_OPEN: std::time::Duration = std::time::Duration::from_secs(1);

/// Every table type this build serves, by Postfix type name.
const TYPES: &[(&str, OpenFn)] = &[
    ("btree", super::file::db::open_btree),
    ("cdb", super::file::cdb::open),
    ("cidr", super::pattern::cidr::open),
    ("environ", super::builtin::environ::open),
    ("fail", super::builtin::fail::open),
    ("hash", super::file::db::open_hash),
    ("inline", super::builtin::inline::open),
    ("internal", super::builtin::internal::open),
    ("ldap", super::ldap::open),
    ("lmdb", super::file::lmdb::open),
    ("memcache", super::net::memcache::open),
    ("mysql", super::sql::mysql::open),
    ("pcre", super::pattern::pcre::open),
    ("pgsql", super::sql::pgsql::open),
    ("pipemap", super::composite::pipemap::open),
    ("proxy", super::composite::proxy::open),
    ("randmap", super::composite::randmap::open),
    ("regexp", super::pattern::regexp::open),
    ("socketmap", super::net::socketmap::open),
    ("sqlite", super::sql::sqlite::open),
    ("static", super::builtin::static_table::open),
    ("tcp", super::net::tcp::open),
    ("texthash", super::file::texthash::open),
    ("unionmap", super::composite::unionmap::open),
    ("unix", super::builtin::unix::open),
];

pub fn lookup(type_name: &str) -> Option<OpenFn> {
    TYPES.iter().find(|(name, _)| *name == type_name).map(|(_, f)| *f)
}

/// Type names, for `proxymap -m`-style listings and docs.
pub fn type_names() -> impl Iterator<Item = &'static str> {
    TYPES.iter().map(|(name, _)| *name)
}

/// Open `req` with the constructor of its type.
pub fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    match lookup(req.type_name) {
        Some(open) => open(req),
        None => Err(OpenError::new(format!("unsupported dictionary type: {}", req.type_name))),
    }
}

/// Open `type:name` as Postfix's dict_open() does with surrogate tables
/// enabled: a table that cannot be opened logs `error: <reason>` once and is
/// replaced by a stand-in that answers RETRY.
pub fn open_or_surrogate(full: &str, mode: Mode, flags: u32, params: &Params) -> Box<dyn Dict> {
    let (type_name, name) = full.split_once(':').unwrap_or((full, ""));
    let result = if type_name.is_empty() || name.is_empty() {
        Err(OpenError::new(format!("open dictionary: expecting \"type:name\" form instead of \"{full}\"")))
    } else {
        open(&OpenRequest { type_name, name, mode, flags, params })
    };
    match result {
        Ok(dict) => {
            super::surrogate::opened(full, flags);
            dict
        }
        Err(e) => {
            super::surrogate::open_failed(full, flags, &e.reason, e.retried());
            let surrogate = Surrogate::new(full, &e.reason, flags);
            Box::new(if e.retried() { surrogate.reopen_after(RETRY_OPEN) } else { surrogate })
        }
    }
}
