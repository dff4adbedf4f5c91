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
    let env = Env::open(&c_path, read_only, curr_limit)
        .map_err(|e| OpenError::new(format!("open database {mdb_path}: {e}")))?;
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
                mdb::Error::PANIC => {
                    // LMDB refuses every further transaction of a panicked
                    // environment; Postfix would exit and start afresh.
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
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::testutil::{copy_fixture, fill};
    use crate::protocol::flags::SYNC_UPDATE;
    use crate::test_support::TempDir;
    use std::os::unix::fs::PermissionsExt;
    use std::time::{Duration, Instant};

    // Tables built by postmap from tests/fixtures/basic.txt:
    // "Alice alice@example.com\nbob bob@example.com, bob2@example.com\nMiXed Case Value\n"
    // (basic.lmdb; keepcase.lmdb with -f -n).
    /// What the server adds to an update from proxywrite.
    const UPD: u32 = SYNC_UPDATE | DUP_REPLACE;

    fn open_with(name: &str, mode: Mode, flags: u32, params: &Params) -> Result<Box<dyn Dict>, OpenError> {
        open(&OpenRequest { type_name: "lmdb", name, mode, flags, params })
    }

    fn ro(name: &str) -> Box<dyn Dict> {
        open_with(name, Mode::ReadOnly, 0, &Params::default()).unwrap()
    }

    fn rw(name: &str) -> Box<dyn Dict> {
        open_with(name, Mode::ReadWrite, 0, &Params::default()).unwrap()
    }

    use crate::dict::testutil::get;

    fn walk(d: &mut Box<dyn Dict>) -> Vec<(String, String)> {
        let mut cursor = None;
        let mut first = true;
        let mut seen = Vec::new();
        while let Some((k, v)) = d.sequence(&mut cursor, first, 0).unwrap() {
            first = false;
            seen.push((String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()));
        }
        seen
    }

    /// `dir/name` as a table name.
    fn path_in(dir: &TempDir, name: &str) -> String {
        dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// What another reader finds for `key` (folded, as `postmap -q`, which
    /// tests/postfix_files.rs asks).
    fn query(name: &str, key: &str) -> Option<String> {
        get(&mut ro(name), key, FOLD_FIX)
    }

    /// Every entry as `KEY\tVALUE` in key order, as another reader walks the
    /// table (`postmap -s` in tests/postfix_files.rs).
    fn listed(name: &str) -> Vec<String> {
        walk(&mut ro(name)).into_iter().map(|(k, v)| format!("{k}\t{v}")).collect()
    }

    /// The raw stored bytes, bypassing the NUL conventions.
    fn raw_get(path: &str, key: &[u8]) -> Option<Vec<u8>> {
        let c = CString::new(format!("{path}.lmdb")).unwrap();
        Env::open(&c, true, 1 << 20).unwrap().get(key).unwrap()
    }

    #[test]
    fn reads_postmap_files_with_folding_and_nul_discovery() {
        let lab = TempDir::new("lmdb");
        let t = copy_fixture(lab.path(), "basic.lmdb", "t");
        let mut d = ro(&t);
        assert_eq!(d.flags(), FIXED | MULTI_WRITER | TRY0NULL | TRY1NULL);
        assert_eq!(d.flags(), 262172, "Postfix's open reply for a fresh lmdb instance");
        // postmap lowercased the keys and appended NULs.
        assert_eq!(raw_get(&t, b"alice\0").as_deref(), Some(&b"alice@example.com\0"[..]));
        assert_eq!(get(&mut d, "alice", 0).as_deref(), Some("alice@example.com"));
        assert_eq!(get(&mut d, "Alice", 0), None);
        assert_eq!(get(&mut d, "ALICE", FOLD_FIX).as_deref(), Some("alice@example.com"));
        assert_eq!(get(&mut d, "bob", 0).as_deref(), Some("bob@example.com, bob2@example.com"));
        assert_eq!(get(&mut d, "MIXED", FOLD_FIX).as_deref(), Some("Case Value"));
        assert_eq!(get(&mut d, "nobody", FOLD_FIX), None);
        assert_eq!(get(&mut d, "", 0), None, "an empty key is simply absent");
        assert_eq!(get(&mut d, &"x".repeat(600), 0), None, "so is one beyond LMDB's key limit");
        assert_eq!(
            walk(&mut d),
            vec![
                ("alice".into(), "alice@example.com".into()),
                ("bob".into(), "bob@example.com, bob2@example.com".into()),
                ("mixed".into(), "Case Value".into()),
            ],
            "key order, without the trailing NULs"
        );
        assert!(!d.changed());

        // postmap -f keeps the case; -n stores without NUL: found by the second probe.
        let u = copy_fixture(lab.path(), "keepcase.lmdb", "u");
        assert_eq!(raw_get(&u, b"Alice"), Some(b"alice@example.com".to_vec()));
        let mut d = rw(&u);
        assert_eq!(get(&mut d, "Alice", 0).as_deref(), Some("alice@example.com"));
        assert_eq!(get(&mut d, "alice", 0), None);
        assert_eq!(get(&mut d, "MiXed", 0).as_deref(), Some("Case Value"));
        // Discovered "no NUL": updates follow the file's convention.
        assert!(d.update(b"new", b"value", UPD).unwrap());
        assert_eq!(raw_get(&u, b"new"), Some(b"value".to_vec()));
        assert_eq!(raw_get(&u, b"new\0"), None);
        assert_eq!(query(&u, "new").as_deref(), Some("value"));

        // Explicit TRY1NULL at open: only the NUL probe is made.
        let mut d = open_with(&u, Mode::ReadOnly, TRY1NULL, &Params::default()).unwrap();
        assert_eq!(d.flags(), FIXED | MULTI_WRITER | TRY1NULL);
        assert_eq!(get(&mut d, "Alice", 0), None);
    }

    #[test]
    fn writes_are_read_by_other_readers() {
        let lab = TempDir::new("lmdb");
        let t = path_in(&lab, "w");
        let mdb_path = format!("{t}.lmdb");
        let exists = |p: &str| std::path::Path::new(p).exists();
        assert!(!exists(&mdb_path));
        // proxymap (read-only) does not create.
        let err = open_with(&t, Mode::ReadOnly, 0, &Params::default()).err().unwrap();
        assert_eq!(err.reason, format!("open database {mdb_path}: No such file or directory"));
        // proxywrite creates, mode 0644 less the umask (022 here or stricter).
        let mut d = rw(&t);
        let mode = std::fs::metadata(&mdb_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & !0o644, 0, "mode {mode:o}");
        assert!(!exists(&format!("{mdb_path}-lock")), "MDB_NOLOCK: no lock file");
        assert_eq!(listed(&t), Vec::<String>::new());

        assert!(d.update(b"Key1", b"value 1", UPD | FOLD_FIX).unwrap());
        assert!(d.update(b"key2", b"value 2", UPD).unwrap());
        assert!(d.update(b"key3", b"value 3", UPD).unwrap());
        // Undecided at the first update: the NUL is appended, as on Linux Postfix.
        assert_eq!(raw_get(&t, b"key1\0"), Some(b"value 1\0".to_vec()));
        assert_eq!(query(&t, "key1").as_deref(), Some("value 1"));
        assert_eq!(query(&t, "KEY2").as_deref(), Some("value 2"), "postmap -q folds");
        // Replace, delete.
        assert!(d.update(b"key2", b"value 2b", UPD).unwrap());
        assert!(d.delete(b"KEY3", SYNC_UPDATE | FOLD_FIX).unwrap());
        assert!(!d.delete(b"key3", SYNC_UPDATE).unwrap());
        assert_eq!(listed(&t), vec!["key1\tvalue 1", "key2\tvalue 2b"]);
        // Duplicate policies (proxywrite forces DUP_REPLACE; direct callers may not).
        assert!(!d.update(b"key1", b"other", DUP_IGNORE).unwrap());
        assert!(!d.update(b"key1", b"other", DUP_WARN).unwrap());
        assert!(matches!(d.update(b"key1", b"other", 0), Err(DictError::Config(_))));
        assert_eq!(get(&mut d, "key1", 0).as_deref(), Some("value 1"));
        // A key LMDB cannot hold is a configuration error, not a retry.
        assert!(matches!(d.update(&[b'k'; 600], b"v", UPD), Err(DictError::Config(_))));

        // A reader opened earlier sees every later commit of the writer.
        let mut r = ro(&t);
        assert_eq!(get(&mut r, "key4", 0), None);
        assert!(d.update(b"key4", b"value 4", UPD).unwrap());
        assert_eq!(get(&mut r, "key4", 0).as_deref(), Some("value 4"));
        assert!(d.delete(b"key4", SYNC_UPDATE).unwrap());
        assert_eq!(get(&mut r, "key4", 0), None);

        // (Postfix's own writer rebuilding the file under both: in
        // tests/postfix_files.rs.)
        assert!(d.update(b"mine", b"too", UPD).unwrap());
        assert_eq!(listed(&t), vec!["key1\tvalue 1", "key2\tvalue 2b", "mine\ttoo"]);
        assert!(!r.changed() && !d.changed());
    }

    #[test]
    fn sequence_survives_deletes_and_writers() {
        let lab = TempDir::new("lmdb");
        let t = path_in(&lab, "s");
        let mut w = rw(&t);
        for i in 0..200 {
            assert!(w.update(format!("k{i:03}").as_bytes(), format!("v{i}").as_bytes(), UPD).unwrap());
        }
        // Walk, deleting the entry just returned and every fifth following
        // one, as the verify/postscreen cache cleanup does.
        let mut cursor = None;
        let mut first = true;
        let mut seen = Vec::new();
        while let Some((k, v)) = w.sequence(&mut cursor, first, LOCK).unwrap() {
            first = false;
            let n: usize = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
            assert_eq!(v, format!("v{n}").as_bytes());
            seen.push(n);
            assert!(w.delete(&k, SYNC_UPDATE | LOCK).unwrap());
            if n.is_multiple_of(5) && n + 1 < 200 {
                assert!(w.delete(format!("k{:03}", n + 1).as_bytes(), SYNC_UPDATE).unwrap());
            }
            // Another writer's insert behind the cursor does not disturb it.
            if n == 100 {
                assert!(w.update(b"a-late", b"x", UPD).unwrap());
            }
        }
        let expect: Vec<usize> = (0..200).filter(|n| !(n % 5 == 1 && *n > 0)).collect();
        assert_eq!(seen, expect);
        assert_eq!(listed(&t), vec!["a-late\tx"]);
        // After the end, NEXT starts over (slmdb forgot the position); so does
        // NEXT on a connection that never sent FIRST.
        assert_eq!(w.sequence(&mut cursor, false, 0).unwrap(), Some((b"a-late".to_vec(), b"x".to_vec())));
        assert_eq!(w.sequence(&mut None, false, 0).unwrap(), Some((b"a-late".to_vec(), b"x".to_vec())));
        // Two connections iterate independently.
        assert!(w.update(b"b", b"y", UPD).unwrap());
        let (mut c1, mut c2) = (None, None);
        assert_eq!(w.sequence(&mut c1, true, 0).unwrap().unwrap().0, b"a-late");
        assert_eq!(w.sequence(&mut c2, true, 0).unwrap().unwrap().0, b"a-late");
        assert_eq!(w.sequence(&mut c1, false, 0).unwrap().unwrap().0, b"b");
        assert_eq!(w.sequence(&mut c1, false, 0).unwrap(), None);
        assert_eq!(w.sequence(&mut c2, false, 0).unwrap().unwrap().0, b"b");
    }

    #[test]
    fn map_grows_beyond_a_tiny_lmdb_map_size() {
        let lab = TempDir::new("lmdb");
        let t = path_in(&lab, "g");
        let params = Params::from_text("lmdb_map_size = 20000\n", "main.cf", &[]).unwrap();
        let mut w = open_with(&t, Mode::ReadWrite, 0, &params).unwrap();
        // A reader with the same tiny map must follow the growth (MDB_MAP_RESIZED).
        let mut r = open_with(&t, Mode::ReadOnly, 0, &params).unwrap();
        let big = vec![b'x'; 3 << 20];
        for i in 0..2000 {
            let value = format!("{i:01000}");
            assert!(w.update(format!("key{i}").as_bytes(), value.as_bytes(), UPD).unwrap());
        }
        assert!(w.update(b"big", &big, UPD).unwrap());
        let size = std::fs::metadata(format!("{t}.lmdb")).unwrap().len();
        assert!(size > 5 << 20, "file has {size} bytes");
        assert_eq!(get(&mut r, "key1999", 0).unwrap().len(), 1000);
        assert_eq!(get(&mut r, "big", 0).unwrap().len(), big.len());
        assert_eq!(query(&t, "key7").unwrap(), format!("{:01000}", 7));
        assert_eq!(listed(&t).len(), 2001);
        // A new instance starts with a map that fits the file.
        let mut again = open_with(&t, Mode::ReadOnly, 0, &params).unwrap();
        assert_eq!(get(&mut again, "big", 0).unwrap().len(), big.len());
    }

    #[test]
    fn damaged_files_fail_cleanly() {
        let lab = TempDir::new("lmdb");
        let source: String = (0..3000).map(|i| format!("key{i} {i:0200}\n")).collect();
        // Written by our writer as postmap would (liblmdb, keys folded, with
        // NUL); postmap's own file is damaged in tests/postfix_files.rs.
        let t = path_in(&lab, "c");
        fill(&mut rw(&t), &source, FOLD_FIX);
        let mdb_path = format!("{t}.lmdb");
        let full = std::fs::read(&mdb_path).unwrap();
        assert!(full.len() > 100_000);
        let mut reader = ro(&t);
        assert!(get(&mut reader, "key5", 0).is_some());

        // Truncated under an open reader: an error, not SIGBUS.
        std::fs::write(&mdb_path, &full[..full.len() / 2]).unwrap();
        let mut out = Vec::new();
        let err = reader.lookup(b"key2999", 0, &mut out).unwrap_err();
        match err {
            DictError::Retry(text) => {
                assert!(text.starts_with(&format!("error reading lmdb:{t}: database file is truncated")), "{text}")
            }
            other => panic!("{other:?}"),
        }
        assert!(reader.sequence(&mut None, true, 0).is_err());

        // Truncated, tiny, empty, garbage: open errors naming the file.
        for (what, content) in [
            ("half", full[..full.len() / 2].to_vec()),
            ("one page", full[..4096].to_vec()),
            ("100 bytes", full[..100].to_vec()),
            ("empty", Vec::new()),
            ("garbage", (0..16384u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()),
        ] {
            std::fs::write(&mdb_path, &content).unwrap();
            let err = open_with(&t, Mode::ReadOnly, 0, &Params::default()).err();
            let err = err.unwrap_or_else(|| panic!("{what}: opened"));
            assert!(err.reason.starts_with(&format!("open database {mdb_path}: ")), "{what}: {}", err.reason);
        }
        std::fs::write(&mdb_path, &full[..full.len() / 2]).unwrap();
        let err = open_with(&t, Mode::ReadOnly, 0, &Params::default()).err().unwrap();
        assert!(err.reason.contains("database file is truncated"), "{}", err.reason);
        std::fs::write(&mdb_path, b"").unwrap();
        // An empty file is not silently turned into a new database by a reader.
        assert!(open_with(&t, Mode::ReadOnly, 0, &Params::default()).is_err());
    }

    #[test]
    fn lock_flags() {
        let lab = TempDir::new("lmdb");
        let t = copy_fixture(lab.path(), "basic.lmdb", "l");
        // OPEN_LOCK becomes LOCK on this multi-writer table; both is refused.
        let d = open_with(&t, Mode::ReadWrite, OPEN_LOCK, &Params::default()).unwrap();
        assert_eq!(d.flags(), FIXED | MULTI_WRITER | TRY0NULL | TRY1NULL | LOCK);
        let err = open_with(&t, Mode::ReadWrite, OPEN_LOCK | LOCK, &Params::default()).err().unwrap();
        assert_eq!(
            err.reason,
            format!("dict_open: attempt to open lmdb:{t} with both \"open\" lock and \"access\" lock")
        );
        // With LOCK, a lookup waits for another process's exclusive fcntl lock.
        let mdb_path = format!("{t}.lmdb");
        let script = "import fcntl,sys,time\nf=open(sys.argv[1],'r+')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(0.6)\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script, &mdb_path])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        assert_eq!(line, "locked\n");
        let mut d = ro(&t);
        let start = Instant::now();
        assert!(get(&mut d, "alice", 0).is_some());
        assert!(start.elapsed() < Duration::from_millis(300), "no LOCK: no waiting");
        assert!(get(&mut d, "alice", LOCK).is_some());
        assert!(start.elapsed() >= Duration::from_millis(300), "LOCK waited {:?}", start.elapsed());
        child.wait().unwrap();
        // Our locks are released after each access: another process can lock at once.
        let mut w = rw(&t);
        assert!(w.update(b"x", b"y", UPD | LOCK).unwrap());
        let script = "import fcntl,sys\nf=open(sys.argv[1],'r+')\ntry: fcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError: sys.exit(1)\n";
        let st = std::process::Command::new("python3").args(["-c", script, &mdb_path]).status().unwrap();
        assert!(st.success());
        // Inside a worker's pass the shared lock is kept until the pass ends,
        // against Postfix's own (classic fcntl) locks.
        let pass = crate::dict::file::filelock::Pass::begin();
        assert!(get(&mut d, "alice", LOCK).is_some());
        let st = std::process::Command::new("python3").args(["-c", script, &mdb_path]).status().unwrap();
        assert!(!st.success(), "the pass still holds the shared lock");
        assert!(get(&mut d, "alice", LOCK).is_some());
        drop(pass);
        let st = std::process::Command::new("python3").args(["-c", script, &mdb_path]).status().unwrap();
        assert!(st.success(), "released when the pass ends");
    }

    #[test]
    fn removal_is_a_change() {
        let lab = TempDir::new("lmdb");
        let t = copy_fixture(lab.path(), "basic.lmdb", "r");
        let mut d = ro(&t);
        let mut w = rw(&t);
        assert!(w.update(b"z", b"1", UPD).unwrap());
        assert!(!d.changed(), "updates are no change for a multi-writer table");
        assert_eq!(get(&mut d, "z", 0).as_deref(), Some("1"));
        std::fs::remove_file(format!("{t}.lmdb")).unwrap();
        assert!(d.changed());
    }
}
