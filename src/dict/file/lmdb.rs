//! `lmdb:/path/name`: an LMDB file `/path/name.lmdb`, as Postfix's dict_lmdb
//! and slmdb use it.
//!
//! * Opened with MDB_NOSUBDIR|MDB_NOLOCK (plus MDB_RDONLY for proxymap): no
//!   LMDB lock file; with LOCK in the request flags we take Postfix's
//!   whole-file fcntl() lock around each access (shared for lookup/sequence,
//!   exclusive for update/delete; a worker keeps a shared one for its event
//!   loop pass, see `dict::filelock`). proxywrite (ReadWrite) creates a
//!   missing file, mode 0644 less the umask.
//! * Every access runs in a transaction of its own, so readers see what the
//!   writer process committed, and no transaction is held between requests.
//! * The memory map starts at `lmdb_map_size` (at least the file size plus
//!   10240, as slmdb) and doubles on MDB_MAP_FULL, the operation then being
//!   retried; MDB_MAP_RESIZED (another process grew the file) adopts the size
//!   recorded in the file.
//! * Trailing NUL discovery per TRY1NULL/TRY0NULL; an update while undecided
//!   appends the NUL (Postfix's choice on Linux).
//! * Sequence cursors belong to the connection: the cursor keeps the last key
//!   returned, and NEXT re-positions with MDB_SET_RANGE in a new read
//!   transaction. That survives concurrent writers and the deletion of the
//!   current key (verify/postscreen delete while they iterate); Postfix
//!   re-positions with MDB_SET on the exact key instead. As in Postfix, NEXT
//!   with no position (no FIRST, or after the end) starts at the first entry.
//!
//! Differences from Postfix 3.7, where it exits (fatal) on LMDB and lock
//! errors: we log the same text once (repeats of the same cause are not
//! logged again) and answer RETRY; a duplicate refused on update answers
//! CONFIG. Postfix allows one map resize per request (and then exits; the
//! next process starts from the grown file); we keep doubling up to
//! [`RETRY_LIMIT`] times within the request. Keys LMDB cannot store (empty,
//! or longer than 511 bytes) are "not found" for lookup and delete instead of
//! a fatal error. After MDB_PANIC the environment is reopened.

use crate::dict::file::filelock::{FileLock, Held, Kind, Style};
use crate::dict::postmap_text::{cut_at_nul, until_nul};
use crate::dict::{fold_key, with_nul, Cursor, Dict, DictError, DictResult, Mode, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{
    DUP_IGNORE, DUP_REPLACE, DUP_WARN, FIXED, FOLD_FIX, LOCK, MULTI_WRITER, OPEN_LOCK, TRY0NULL, TRY1NULL,
};
use crate::sync::{get_mut, read_unless_busy, try_read, write_unless_busy};
use crate::sys::errno;
use crate::sys::lmdb::{self as mdb, Env, Put};
use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// slmdb's room for the initial "drop" transaction and metadata.
const FUDGE: usize = 10240;
/// Map size growth factor on MDB_MAP_FULL (Postfix DICT_LMDB_SIZE_INCR).
const SIZE_INCR: usize = 2;
/// Recoveries per request (slmdb's default; Postfix's dict_lmdb uses 1).
pub(crate) const RETRY_LIMIT: u32 = 30;

/// An lmdb table. Lookups run side by side under the read side of its
/// state; one that fails is retried under the write side, which recovery
/// (growing the map, reopening the environment) needs, as do writes.
pub(crate) struct Lmdb {
    flags: u32,
    state: RwLock<State>,
}

struct State {
    /// The table name (`/path/name`), Postfix's dict->name.
    name: String,
    /// `/path/name.lmdb`.
    mdb_path: CString,
    read_only: bool,
    /// None only while being reopened after MDB_PANIC failed.
    env: Option<Env>,
    /// This process's lock on the file (on a descriptor of its own).
    lock: Arc<FileLock>,
    /// The lock lease under which the file length was last checked (0: none).
    checked_lease: AtomicU64,
    /// TRY0NULL/TRY1NULL discovery state of this instance.
    nul: AtomicU32,
    curr_limit: usize,
    hard_limit: usize,
    /// The last error text logged, so that a persisting cause is logged once.
    last_error: Option<String>,
}

/// A connection's sequence position: the stored key last returned.
struct SeqPos(Vec<u8>);

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    let name = req.name;
    if req.flags & OPEN_LOCK != 0 && req.flags & LOCK != 0 {
        return Err(OpenError::new(format!(
            "dict_open: attempt to open {} with both \"open\" lock and \"access\" lock",
            req.full_name()
        )));
    }
    let map_size = req.params.get_long("lmdb_map_size").map_err(|e| OpenError::new(e.to_string()))?;
    if map_size < 1 {
        return Err(OpenError::new(format!("invalid lmdb_map_size parameter value {map_size} < 1")));
    }
    let mdb_path = format!("{name}.lmdb");
    let c_path = CString::new(mdb_path.clone())
        .map_err(|_| OpenError::new(format!("open database {mdb_path}: {}", mdb::strerror(libc::EINVAL))))?;
    let (curr_limit, hard_limit) = initial_limits(usize::try_from(map_size).unwrap_or(usize::MAX), &mdb_path);
    let read_only = req.mode == Mode::ReadOnly;
    let env = Env::open(&c_path, read_only, curr_limit).map_err(|e| open_error(&mdb_path, read_only, e))?;
    let lock = env
        .fd()
        .map_err(|e| e.to_string())
        .and_then(|fd| FileLock::for_fd(fd, Style::Fcntl, name).map_err(|e| errno::io_error_text(&e)))
        .map_err(|e| OpenError::new(format!("open database {mdb_path}: {e}")))?;

    // Warn about a stale index, except right after the source changed.
    if req.flags & LOCK != 0 {
        if let (Ok(db), Ok(src)) = (std::fs::metadata(&mdb_path), std::fs::metadata(name)) {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            if src.mtime() > db.mtime() && src.mtime() < now - 100 {
                log::warn!("database {mdb_path} is older than source file {name}");
            }
        }
    }

    let mut flags = req.flags | FIXED | MULTI_WRITER;
    if flags & (TRY0NULL | TRY1NULL) == 0 {
        flags |= TRY0NULL | TRY1NULL;
    }
    // dict_open(): a multi-writer table turns the persistent lock into
    // per-access locks.
    if flags & OPEN_LOCK != 0 {
        flags = (flags & !OPEN_LOCK) | LOCK;
    }
    Ok(Box::new(Lmdb {
        flags,
        state: RwLock::new(State {
            name: name.to_owned(),
            mdb_path: c_path,
            read_only,
            env: Some(env),
            lock,
            checked_lease: AtomicU64::new(0),
            nul: AtomicU32::new(flags & (TRY0NULL | TRY1NULL)),
            curr_limit,
            hard_limit,
            last_error: None,
        }),
    }))
}

/// Why `mdb_path` did not open. A file cut short (truncated, or still being
/// written in place) is fixed by the next postmap, so its open is tried
/// again; LMDB says EBADF for an empty file opened read-only (it tries to
/// write a first meta page).
fn open_error(mdb_path: &str, read_only: bool, e: mdb::Error) -> OpenError {
    let mut err = match e {
        mdb::Error::Code(code) if code > 0 => OpenError::errno(format_args!("open database {mdb_path}"), code),
        e => OpenError::new(format!("open database {mdb_path}: {e}")),
    };
    let cut_short = match e {
        mdb::Error::Code(libc::EBADF) => read_only,
        mdb::Error::Truncated { .. } | mdb::Error::MapFault => true,
        _ => false,
    };
    err.fixable |= cut_short;
    err
}

/// slmdb_open(): the map starts at the configured size, at least FUDGE, and
/// large enough for an existing file plus FUDGE.
fn initial_limits(configured: usize, mdb_path: &str) -> (usize, usize) {
    let mut curr = configured.max(FUDGE);
    let mut hard = isize::MAX as usize;
    if let Ok(meta) = std::fs::metadata(mdb_path) {
        let size = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        if size > curr - FUDGE {
            hard = hard.max(size);
            curr = if size < hard - FUDGE { size + FUDGE } else { hard };
        }
    }
    (curr, hard)
}

impl State {
    fn full_name(&self) -> String {
        format!("lmdb:{}", self.name)
    }

    /// Log `text` unless it repeats the last logged error, and make it the
    /// request's RETRY.
    fn fail(&mut self, text: String) -> DictError {
        if self.last_error.as_deref() != Some(text.as_str()) {
            log::error!("{text}");
            self.last_error = Some(text.clone());
        }
        DictError::Retry(text)
    }

    fn succeeded(&mut self) {
        self.last_error = None;
    }

    /// Run `op`, recovering as slmdb does: grow the map on MDB_MAP_FULL,
    /// adopt another process's map size on MDB_MAP_RESIZED, reopen after
    /// MDB_PANIC; then retry.
    fn run<T>(&mut self, mut op: impl FnMut(&mut Env) -> Result<T, mdb::Error>) -> Result<T, mdb::Error> {
        let mut tries = 0;
        loop {
            let result = match self.env.as_mut() {
                Some(env) => op(env),
                None => Err(mdb::Error::PANIC),
            };
            let err = match result {
                Err(e) if tries < RETRY_LIMIT => e,
                other => return other,
            };
            tries += 1;
            match err {
                mdb::Error::MAP_FULL => {
                    if self.curr_limit >= self.hard_limit {
                        return Err(err);
                    }
                    self.curr_limit = if self.curr_limit < self.hard_limit / SIZE_INCR {
                        self.curr_limit * SIZE_INCR
                    } else {
                        self.hard_limit
                    };
                    log::debug!(
                        "database {}: using size limit {} after MDB_MAP_FULL",
                        self.full_name(),
                        self.curr_limit
                    );
                    if let Some(env) = self.env.as_mut() {
                        env.set_map_size(self.curr_limit)?;
                    }
                }
                mdb::Error::MAP_RESIZED => {
                    if let Some(env) = self.env.as_mut() {
                        env.set_map_size(0)?;
                        self.curr_limit = env.map_size();
                    }
                    log::debug!(
                        "database {}: using size limit {} after MDB_MAP_RESIZED",
                        self.full_name(),
                        self.curr_limit
                    );
                }
                mdb::Error::PANIC | mdb::Error::MapFault => {
                    // LMDB refuses every further transaction of a panicked
                    // environment, and a faulted map holds zeros where the
                    // file's pages were; Postfix would exit and start afresh.
                    self.env = None;
                    self.env = Some(Env::open(&self.mdb_path, self.read_only, self.curr_limit)?);
                }
                other => return Err(other),
            }
        }
    }

    /// With LOCK: take Postfix's whole-file fcntl() lock, run `op` with
    /// recovery, unlock. Under a lock lease that already saw the file's
    /// length checked, transactions skip that check.
    fn locked<T>(
        &mut self,
        kind: Kind,
        flags: u32,
        f: impl FnMut(&mut Env) -> Result<T, mdb::Error>,
    ) -> DictResult<Result<T, mdb::Error>> {
        if flags & LOCK == 0 {
            return Ok(self.run(f));
        }
        let lock = Arc::clone(&self.lock);
        let held = match lock.hold(kind) {
            Ok(h) => h,
            Err(e) => {
                return Err(DictError::from_lock(&e, |e| {
                    self.fail(format!("{}: lock dictionary: {}", self.name, errno::io_error_text(e)))
                }))
            }
        };
        let lease = held.lease();
        let known = lease.is_some_and(|l| l == *self.checked_lease.get_mut());
        if let Some(env) = self.env.as_mut() {
            env.set_size_known(known);
        }
        let result = self.run(f);
        if let Some(env) = self.env.as_mut() {
            env.set_size_known(false);
        }
        if result.is_ok() {
            *self.checked_lease.get_mut() = lease.unwrap_or(0);
        }
        Ok(result)
    }
}

/// Postfix's NUL discovery for a read: look `key` up with a trailing NUL
/// and/or without, as the NUL bits `nul` still allow; the form that hit
/// (TRY1NULL or TRY0NULL) and its value.
fn probe<T>(
    nul: u32,
    key: &[u8],
    mut get: impl FnMut(&[u8]) -> Result<Option<T>, mdb::Error>,
) -> Result<Option<(u32, T)>, mdb::Error> {
    if nul & TRY1NULL != 0 {
        if let Some(v) = absent_if_unstorable(crate::dict::probe_with_nul(key, &mut get))? {
            return Ok(Some((TRY1NULL, v)));
        }
    }
    if nul & TRY0NULL != 0 {
        if let Some(v) = absent_if_unstorable(get(key))? {
            return Ok(Some((TRY0NULL, v)));
        }
    }
    Ok(None)
}

impl Dict for Lmdb {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        // the file lock, and the table state a writer holds (both tried under NoWait).
        Waits::OnContention
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        // Under NoWait the shared path's lock may be busy: the write side
        // then fails fast as well.
        if let Some(found) = read_unless_busy(&self.state).ok_or(DictError::WouldBlock)?.lookup_shared(key, flags, out)
        {
            return found;
        }
        write_unless_busy(&self.state).ok_or(DictError::WouldBlock)?.lookup(key, flags, out)
    }

    fn update(&mut self, key: &[u8], value: &[u8], flags: u32) -> DictResult<bool> {
        get_mut(&mut self.state).update(key, value, flags)
    }

    fn delete(&mut self, key: &[u8], flags: u32) -> DictResult<bool> {
        get_mut(&mut self.state).delete(key, flags)
    }

    fn sequence(
        &mut self,
        cursor: &mut Option<Cursor>,
        first: bool,
        flags: u32,
    ) -> DictResult<Option<(Vec<u8>, Vec<u8>)>> {
        get_mut(&mut self.state).sequence(cursor, first, flags)
    }

    /// A table in use is checked at a later accept.
    fn changed(&self) -> bool {
        try_read(&self.state).is_some_and(|s| s.changed())
    }
}

impl State {
    /// A lookup side by side with others (`&self`), without recovery: None
    /// when it needs the write side (it failed, or an error is still to be
    /// cleared by a success there).
    fn lookup_shared(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> Option<DictResult<bool>> {
        if self.last_error.is_some() {
            return None;
        }
        let env = self.env.as_ref()?;
        let key = fold_key(key, flags & FOLD_FIX != 0);
        let held = match flags & LOCK {
            0 => None,
            _ => Some(self.lock.hold(Kind::Shared).ok()?),
        };
        let lease = held.as_ref().and_then(Held::lease);
        let known = lease.is_some_and(|l| l == self.checked_lease.load(Ordering::Relaxed));
        let nul = self.nul.load(Ordering::Relaxed);
        let found = probe(nul, &key, |k| env.get_into(k, known, out).map(|hit| hit.then_some(()))).ok()?;
        if held.is_some() {
            self.checked_lease.store(lease.unwrap_or(0), Ordering::Relaxed);
        }
        Some(Ok(match found {
            Some((which, ())) => {
                self.nul.store(which, Ordering::Relaxed);
                cut_at_nul(out);
                true
            }
            None => {
                out.clear();
                false
            }
        }))
    }

    fn lookup(&mut self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        let key = fold_key(key, flags & FOLD_FIX != 0);
        let nul = *self.nul.get_mut();
        let found = self.locked(Kind::Shared, flags, |env| probe(nul, &key, |k| env.get(k)))?;
        match found {
            Ok(Some((which, value))) => {
                *self.nul.get_mut() = which;
                self.succeeded();
                out.extend_from_slice(until_nul(&value));
                Ok(true)
            }
            Ok(None) => {
                self.succeeded();
                Ok(false)
            }
            Err(e) => Err(self.fail(format!("error reading {}: {e}", self.full_name()))),
        }
    }

    fn update(&mut self, key: &[u8], value: &[u8], flags: u32) -> DictResult<bool> {
        let key = fold_key(key, flags & FOLD_FIX != 0);
        let nul = self.nul.get_mut();
        if *nul == TRY0NULL | TRY1NULL {
            // Undecided: Postfix on Linux appends the NUL.
            *nul = TRY1NULL;
        }
        let (k, v) =
            if *nul & TRY1NULL != 0 { (with_nul(&key), with_nul(value)) } else { (key.to_vec(), value.to_vec()) };
        let no_overwrite = flags & DUP_REPLACE == 0;
        let result = self.locked(Kind::Exclusive, flags, |env| env.put(&k, &v, no_overwrite))?;
        let shown = String::from_utf8_lossy(&key);
        match result {
            Ok(Put::Stored) => {
                self.succeeded();
                Ok(true)
            }
            Ok(Put::KeyExists) => {
                self.succeeded();
                if flags & DUP_IGNORE != 0 {
                    Ok(false)
                } else if flags & DUP_WARN != 0 {
                    log::warn!("{}: duplicate entry: \"{shown}\"", self.full_name());
                    Ok(false)
                } else {
                    // Postfix exits here; proxywrite always forces DUP_REPLACE.
                    let text = format!("{}: duplicate entry: \"{shown}\"", self.full_name());
                    log::error!("{text}");
                    Err(DictError::Config(text))
                }
            }
            Err(e) => {
                let text = format!("error updating {}: {e}", self.full_name());
                if e == mdb::Error::BAD_VALSIZE {
                    // Retrying cannot make the key fit.
                    log::error!("{text}");
                    return Err(DictError::Config(text));
                }
                Err(self.fail(text))
            }
        }
    }

    fn delete(&mut self, key: &[u8], flags: u32) -> DictResult<bool> {
        let key = fold_key(key, flags & FOLD_FIX != 0);
        let nul = *self.nul.get_mut();
        let probe1 = with_nul(&key);
        let result = self.locked(Kind::Exclusive, flags, |env| {
            if nul & TRY1NULL != 0 && absent_if_unstorable(env.del(&probe1).map(Some))?.unwrap_or(false) {
                return Ok(Some(TRY1NULL));
            }
            if nul & TRY0NULL != 0 && absent_if_unstorable(env.del(&key).map(Some))?.unwrap_or(false) {
                return Ok(Some(TRY0NULL));
            }
            Ok(None)
        })?;
        match result {
            Ok(Some(which)) => {
                *self.nul.get_mut() = which;
                self.succeeded();
                Ok(true)
            }
            Ok(None) => {
                self.succeeded();
                Ok(false)
            }
            Err(e) => Err(self.fail(format!("error deleting from {}: {e}", self.full_name()))),
        }
    }

    fn sequence(
        &mut self,
        cursor: &mut Option<Cursor>,
        first: bool,
        flags: u32,
    ) -> DictResult<Option<(Vec<u8>, Vec<u8>)>> {
        let after = match (first, cursor.as_mut().and_then(|c| c.downcast_mut::<SeqPos>())) {
            (false, Some(pos)) => Some(std::mem::take(&mut pos.0)),
            _ => None,
        };
        *cursor = None;
        let result = self.locked(Kind::Shared, flags, |env| env.next_after(after.as_deref()))?;
        match result {
            Ok(Some((k, v))) => {
                self.succeeded();
                let entry = (until_nul(&k).to_vec(), until_nul(&v).to_vec());
                *cursor = Some(Box::new(SeqPos(k)));
                Ok(Some(entry))
            }
            // End of data: the position is forgotten, as slmdb does.
            Ok(None) => {
                self.succeeded();
                Ok(None)
            }
            Err(e) => Err(self.fail(format!("error seeking {}: {e}", self.full_name()))),
        }
    }

    /// Postfix skips the mtime test for MULTI_WRITER tables but still
    /// notices a file that was removed (or replaced by rename).
    fn changed(&self) -> bool {
        match self.env.as_ref().map(Env::fd) {
            Some(Ok(fd)) => nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_nlink == 0),
            _ => false,
        }
    }
}

/// A key LMDB cannot hold (empty, or beyond its key size limit) is simply
/// not there.
fn absent_if_unstorable<T>(r: Result<Option<T>, mdb::Error>) -> Result<Option<T>, mdb::Error> {
    match r {
        Err(mdb::Error::BAD_VALSIZE) => Ok(None),
        other => other,
    }
}

#[cfg(test)]
mod tests;
