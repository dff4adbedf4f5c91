//! Lookup tables. Every table type implements [`Dict`]; [`registry`] maps Postfix
//! type names (`hash`, `inline`, ...) to constructors.
//!
//! The folders are the table families, each with the machinery its tables
//! share:
//! * [`file`]: indexed files built by postmap (`hash`, `btree`, `lmdb`,
//!   `cdb`) and `texthash`, with the file locks and change checks they share;
//! * `pattern`: rule files matched in order (`regexp`, `pcre`, `cidr`);
//! * `builtin`: tables with no file of their own (`inline`, `static`,
//!   `fail`, `internal`, `environ`, `unix`);
//! * `composite`: tables made of other tables (`pipemap`, `unionmap`,
//!   `randmap`, nested `proxy`);
//! * `sql`: SQL databases (`sqlite`, `pgsql`, `mysql`);
//! * `ldap`: LDAP directories (`ldap`), through OpenLDAP's libldap;
//! * `net`: servers asked over a stream socket (`socketmap`, `tcp`,
//!   `memcache`);
//! * `db_common`: what every database and network table shares: the `.cf`
//!   files, `%` templates, domain filter, result assembly and connection
//!   pools.
//!
//! Beside them: [`registry`] (type names), `surrogate` (the stand-in for a
//! table that failed to open) and `postmap_text` (Postfix's text syntax).
//!
//! Adding a table type: one file in its family's folder with an `open`
//! function, plus one line in `registry.rs`.

pub(crate) mod builtin;
pub(crate) mod composite;
pub(crate) mod db_common;
pub(crate) mod file;
pub(crate) mod ldap;
pub(crate) mod net;
pub(crate) mod pattern;
pub(crate) mod postmap_text;
pub mod registry;
pub(crate) mod serving;
pub(crate) mod sql;
pub(crate) mod surrogate;
#[cfg(test)]
pub(crate) mod testutil;

use crate::config::Params;
use std::any::Any;

/// Why an operation failed. Converted to a reply status in one place
/// (`service::status`): Retry → RETRY, Config → CONFIG, Unsupported → CONFIG.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DictError {
    /// Temporary failure (Postfix `DICT_ERR_RETRY`): database down, table unavailable.
    #[error("{0}")]
    Retry(String),
    /// Configuration error (Postfix `DICT_ERR_CONFIG`).
    #[error("{0}")]
    Config(String),
    /// The table type does not implement this operation. Postfix 3.7 exits
    /// with a fatal error here; we answer an error status instead.
    #[error("{0} operation is not supported")]
    Unsupported(&'static str),
    /// The access would wait for a lock held elsewhere, on a thread that
    /// must not wait (`sync::NoWait`); nothing was changed. The
    /// request is served again where it may wait.
    #[error("the table is locked just now")]
    WouldBlock,
}

impl DictError {
    /// A lock error under `sync::NoWait` that means "locked
    /// elsewhere just now" becomes [`DictError::WouldBlock`]; `other` maps
    /// the rest.
    pub fn from_lock(e: &std::io::Error, other: impl FnOnce(&std::io::Error) -> DictError) -> DictError {
        if e.kind() == std::io::ErrorKind::WouldBlock && crate::sync::no_wait() {
            DictError::WouldBlock
        } else {
            other(e)
        }
    }
}

pub type DictResult<T> = Result<T, DictError>;

/// Why a table could not be opened. The server logs `error: <reason>` once and
/// serves a surrogate table that answers RETRY.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{reason}")]
pub struct OpenError {
    pub reason: String,
    /// The process was short of descriptors or memory: the table itself
    /// may be fine, and the open is tried again (see `Surrogate`).
    pub(crate) transient: bool,
    /// Access was refused (permissions, a read-only file system): the
    /// administrator may fix that without telling us, so the open is tried
    /// again too (Postfix's processes get it at their next restart).
    pub(crate) fixable: bool,
    /// The file exists but failed Berkeley DB's verify pass (the writer
    /// repairs such a hash file, see `file::db`).
    pub(crate) damaged: bool,
}

impl OpenError {
    pub fn new(reason: impl Into<String>) -> Self {
        OpenError { reason: reason.into(), transient: false, fixable: false, damaged: false }
    }

    /// `<context>: <%m>` for a failed system call, transient when the
    /// process ran out of descriptors or memory.
    pub(crate) fn io(context: impl std::fmt::Display, e: &std::io::Error) -> Self {
        let mut err = OpenError::new(format!("{context}: {}", crate::sys::errno::io_error_text(e)));
        // std reports a failed allocation for a read as OutOfMemory, no errno.
        err.transient = e.raw_os_error().is_some_and(is_shortage) || e.kind() == std::io::ErrorKind::OutOfMemory;
        err.fixable = e.raw_os_error().is_some_and(is_refusal);
        err
    }

    /// As [`OpenError::io`], from an errno value.
    pub(crate) fn errno(context: impl std::fmt::Display, code: i32) -> Self {
        let mut err = OpenError::new(format!("{context}: {}", crate::sys::errno::strerror(code)));
        err.transient = is_shortage(code);
        err.fixable = is_refusal(code);
        err
    }

    /// Tried again later: the table itself may open then.
    pub(crate) fn retried(&self) -> bool {
        self.transient || self.fixable
    }
}

/// Errno values that say "this process, now", not "this table".
fn is_shortage(code: i32) -> bool {
    matches!(code, libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS)
}

/// Errno values that refuse access to a table that may be fine.
fn is_refusal(code: i32) -> bool {
    matches!(code, libc::EACCES | libc::EPERM | libc::EROFS)
}

/// Open mode, as Postfix's O_RDONLY (proxymap) or O_RDWR|O_CREAT (proxywrite).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    ReadOnly,
    ReadWrite,
}

/// Everything a table constructor gets.
pub struct OpenRequest<'a> {
    pub type_name: &'a str,
    /// The part after `type:`.
    pub name: &'a str,
    pub mode: Mode,
    /// Open flags (instance bits as the client sent them).
    pub flags: u32,
    /// The daemon's configuration (main.cf plus overrides).
    pub params: &'a Params,
}

impl OpenRequest<'_> {
    /// `type:name`, as Postfix prints tables.
    pub fn full_name(&self) -> String {
        format!("{}:{}", self.type_name, self.name)
    }

    /// Postfix's refusal for read-only table types opened by proxywrite.
    pub fn require_read_only(&self) -> Result<(), OpenError> {
        match self.mode {
            Mode::ReadOnly => Ok(()),
            Mode::ReadWrite => Err(OpenError::new(format!("{} map requires O_RDONLY access mode", self.full_name()))),
        }
    }
}

/// A key and its value, as a sequence step returns them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Opaque per-connection iteration state of one table; each table type keeps
/// whatever it needs in it (an index, a database cursor).
pub type Cursor = Box<dyn Any + Send>;

/// Whether a table's lookups may wait, and for what: every table type
/// declares it ([`Dict::waits`]), and the request path alone decides from it
/// where a lookup runs, so that a worker's event loop never waits for a
/// table (`service::Service::handle`). Opening a table, updates, deletes
/// and sequence steps may always wait: they never run on the event loop
/// when there is a thread to run them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Waits {
    /// Lookups answer from memory or a local file read, never waiting for
    /// anything another thread or process holds.
    Never,
    /// Lookups may wait only for something another thread or process holds
    /// (a file lock, a shared buffer). Run where waiting is not allowed
    /// (`sync::NoWait`), such a table answers
    /// [`DictError::WouldBlock`] instead of waiting, and the request moves
    /// to a thread.
    OnContention,
    /// Lookups may wait for something that cannot be tried without waiting:
    /// a server, a name service. They never run on the event loop.
    Always,
}

/// One open table. Methods take the effective request flags (instance bits plus
/// this request's bits), so per-request behaviour such as case folding needs no
/// shared mutable flag state.
pub trait Dict: Send + Sync {
    /// Flags of the freshly opened table: its IMPL bits (FIXED, PATTERN,
    /// MULTI_WRITER) plus the instance bits it keeps. Reported in open replies.
    fn flags(&self) -> u32;

    /// Whether lookups may wait (see [`Waits`]). No default: a new table
    /// type says it.
    fn waits(&self) -> Waits;

    /// Look `key` up; on a hit write the value into `out` (cleared first) and
    /// return true. Takes `&self`: connection threads look up in one table
    /// side by side; a table with state to change on a lookup keeps it behind
    /// a lock of its own, or in atomics.
    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool>;

    /// Store `key` → `value`. Returns false when the key existed and the
    /// duplicate policy in `flags` kept the old value.
    fn update(&mut self, _key: &[u8], _value: &[u8], _flags: u32) -> DictResult<bool> {
        Err(DictError::Unsupported("update"))
    }

    /// Remove `key`; false when it was not there.
    fn delete(&mut self, _key: &[u8], _flags: u32) -> DictResult<bool> {
        Err(DictError::Unsupported("delete"))
    }

    /// First (`first` = true) or next entry, using the caller's cursor. Ok(None)
    /// at the end.
    fn sequence(
        &mut self,
        _cursor: &mut Option<Cursor>,
        _first: bool,
        _flags: u32,
    ) -> DictResult<Option<(Vec<u8>, Vec<u8>)>> {
        Err(DictError::Unsupported("sequence"))
    }

    /// True when the table's source changed on disk since it was opened (file
    /// tables); the read-only service then reopens it.
    fn changed(&self) -> bool {
        false
    }

    /// True for the stand-in of a table whose open is tried again
    /// ([`Dict::changed`] says when): the service checks such a table on
    /// every request, so that a client that stays connected (verify(8) on
    /// proxywrite) sees the table as soon as it opens.
    fn reopens(&self) -> bool {
        false
    }
}

/// `bytes` with one NUL appended, as Postfix stores keys and values in a
/// table that learned TRY1NULL.
pub fn with_nul(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.extend_from_slice(bytes);
    v.push(0);
    v
}

/// Run `f` on `key` with one NUL appended: on the stack for keys shorter
/// than 256 bytes (addresses, domains), so a lookup allocates nothing.
pub fn probe_with_nul<R>(key: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
    let mut buf = [0u8; 256];
    match buf.get_mut(..=key.len()) {
        Some(probe) => {
            probe[..key.len()].copy_from_slice(key);
            f(probe)
        }
        None => f(&with_nul(key)),
    }
}

/// ASCII lowercase a key when `fold` is set, as Postfix's `lowercase()`.
/// Borrows when nothing changes.
pub fn fold_key(key: &[u8], fold: bool) -> std::borrow::Cow<'_, [u8]> {
    // A fold without early exit: the compiler vectorizes it, where `any`
    // tests a byte at a time (every lookup of a FOLD_FIX table runs this).
    if fold && key.iter().fold(false, |upper, b| upper | b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(key.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_key_has_one_nul_appended_at_any_length() {
        for len in [0, 1, 254, 255, 256, 1000] {
            let key = vec![b'k'; len];
            let probe = probe_with_nul(&key, <[u8]>::to_vec);
            assert_eq!(probe.len(), len + 1);
            assert_eq!(&probe[..len], &key[..]);
            assert_eq!(probe[len], 0);
            assert_eq!(probe, with_nul(&key));
        }
    }
}
