//! `hash:/p/n` and `btree:/p/n`: Berkeley DB 5.3 files `/p/n.db`, as Postfix
//! 3.7's dict_db.c on Linux (through `sys::db`, the only unsafe code).
//!
//! What matches Postfix:
//! * open: `.db` appended to the name; a private environment
//!   (`DB_INIT_MPOOL|DB_CREATE|DB_PRIVATE`) in the file's directory whose cache
//!   is raised to `berkeley_db_read_buffer_size` (Postfix daemons use that size
//!   for every open; `berkeley_db_create_buffer_size` only applies to
//!   postmap/postalias rebuilds); hash tables get 4096 as element hint;
//!   ReadOnly → `DB_RDONLY`, ReadWrite → `DB_CREATE` (O_RDWR|O_CREAT), mode 0644;
//!   with LOCK the file is share-locked around the open; Postfix's texts.
//! * TRY1NULL/TRY0NULL discovery, FOLD_FIX, duplicate policies, SYNC_UPDATE,
//!   flock() locks around each operation with LOCK (a worker keeps a shared
//!   one for its event-loop pass: `dict::filelock`), OPEN_LOCK = exclusive
//!   lock for the instance's lifetime; results are cut at the first NUL.
//!
//! Where we differ, on purpose:
//! * One lock state and one DB handle per file (and access method) per
//!   process, shared by every instance. Postfix opens each instance on its
//!   own descriptor, so an OPEN_LOCK instance and a LOCK instance of the same
//!   file in one proxywrite process block each other forever (flock locks of
//!   two descriptors conflict even within a process), and two writable
//!   handles with private caches would overwrite each other's pages. Here
//!   LOCK operations inside a process serialise on a mutex and skip flock()
//!   while the process holds the OPEN_LOCK exclusive lock anyway.
//! * Read-only handles re-open themselves when the file changed on disk
//!   (inode, size or mtime), checked before each lookup and sequence FIRST
//!   (after taking the shared lock with LOCK; once per lease of that lock,
//!   as no writer can change the file while it is held): the open file's
//!   status (size, mtime, still linked), and the path at most a second
//!   later. Postfix keeps serving its private cache until the reader process
//!   restarts at the next accept.
//! * Read-only hash handles read the file's pages directly
//!   (`dict::hash_pages`) instead of through Berkeley DB's cache.
//! * A file not known to be sound is verified before Berkeley DB reads it
//!   (Postfix does not: a damaged page can crash it); a big hash file's pass
//!   runs beside the lookups the page reader answers (`db/verify.rs`).
//! * Fatal conditions (lock/read/write errors, a duplicate without a
//!   duplicate policy, both OPEN_LOCK and LOCK) become an error status and
//!   one log line; a handle that failed is re-opened at its next use.
//! * OPEN_LOCK waits up to about a second for the exclusive lock before
//!   failing the open (Postfix exits at once and its master retries; our
//!   failed open is a cached surrogate).
//! * Sequence NEXT without FIRST reports the end (Postfix panics); cursors
//!   are per connection (Postfix: one per table).

use crate::dict::file::filelock::{FileLock, Held, Kind, Style};
use crate::dict::postmap_text::{cut_at_nul, until_nul};
use crate::dict::{fold_key, with_nul, Cursor, Dict, DictError, DictResult, Mode, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{
    DUP_IGNORE, DUP_REPLACE, DUP_WARN, FIXED, FOLD_FIX, LOCK, OPEN_LOCK, SYNC_UPDATE, TRY0NULL, TRY1NULL,
};
use crate::sync::{lock, read, write};
use crate::sys::db::{self as bdb, Code, DbType, Dbc};
use crate::sys::errno::strerror;
use handle::{open_handle, HandleSettings};
use state::{fail, fail_write, flush_unsynced, DbState};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};
use verify::{Outcome, ReaderHandle};

/// Postfix's DICT_DB_NELM: expected element count for new hash files.
const HASH_NELEM: u32 = 4096;
/// Postfix's default `berkeley_db_read_buffer_size`.
const DEFAULT_READ_BUFFER: i32 = 128 * 1024;
/// Longest time a read-only handle trusts its open file's status without
/// looking up the path.
const PATH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

pub(crate) fn open_hash(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    open(req, DbType::Hash)
}

pub(crate) fn open_btree(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    open(req, DbType::Btree)
}

fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => strerror(code),
        None => e.to_string(),
    }
}

/// Identity and version of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp { dev: m.dev(), ino: m.ino(), size: m.size(), mtime: m.mtime(), mtime_nsec: m.mtime_nsec() }
    }

    fn stat(path: &str) -> std::io::Result<Stamp> {
        std::fs::metadata(path).map(|m| Stamp::of(&m))
    }
}

// ---------------------------------------------------------------------------
// Database handles: one per file and access method per process.

struct Shared {
    db_path: String,
    ty: DbType,
    settings: HandleSettings,
    lock: Arc<FileLock>,
    /// Lookups read pages under the read side; Berkeley DB's handle (not
    /// free-threaded) is used under the write side.
    state: RwLock<DbState>,
    /// The last failed re-open and when it was logged: a file that cannot
    /// be opened (unreadable, truncated) is tried at every request, but
    /// logged once per reason and minute, not once per request.
    reopen_failed: Mutex<Option<(String, Instant)>>,
}

/// How often a re-open that keeps failing alike is logged.
const REOPEN_LOG_INTERVAL: Duration = Duration::from_secs(60);

fn code_text(code: Code) -> String {
    // Postfix's sanitize(): DB_KEYEMPTY is reported as EINVAL.
    strerror(if code == bdb::keyempty() { libc::EINVAL } else { code })
}

impl Shared {
    /// Re-open a handle that failed, or a read-only handle whose file changed
    /// since it was opened (so readers do not serve pages cached before a
    /// writer's update).
    fn refresh(&self, st: &mut DbState) -> DictResult<()> {
        let broken = st.broken.load(Ordering::Relaxed);
        if !broken && (st.mode == Mode::ReadWrite || self.open_file_unchanged(st)) {
            return Ok(());
        }
        let now = Stamp::stat(&self.db_path).ok();
        st.path_checked = Instant::now();
        let changed = st.mode == Mode::ReadOnly && now.is_some() && now != st.stamp;
        if !broken && !changed {
            return Ok(());
        }
        let opened = match st.mode {
            Mode::ReadOnly => {
                verify::open_reader(&self.db_path, self.ty, &self.settings, now.is_some(), st.failed_pass)
            }
            Mode::ReadWrite => open_handle(&self.db_path, self.ty, st.mode, &self.settings, now.is_some())
                .map(|db| ReaderHandle { db, pages: None, verifying: None }),
        };
        match opened {
            Ok(h) => {
                st.replace(h, st.mode, now);
                if lock(&self.reopen_failed).take().is_some() {
                    log::info!("{}: opened again", self.db_path);
                }
                Ok(())
            }
            Err(e) => {
                let mut last = lock(&self.reopen_failed);
                let repeat =
                    last.as_ref().is_some_and(|(reason, at)| *reason == e.reason && at.elapsed() < REOPEN_LOG_INTERVAL);
                if !repeat {
                    log::error!("{}", e.reason);
                    *last = Some((e.reason.clone(), Instant::now()));
                }
                Err(DictError::Retry(e.reason))
            }
        }
    }

    /// Before Berkeley DB's handle is used: wait for the verify pass still
    /// running on its file; a file that failed it is re-opened (and its
    /// damage reported) like a handle whose operation failed.
    /// (Without `wait`, only a pass that ended is settled: a lookup reads
    /// the pages meanwhile.)
    /// Whether a pass still runs.
    fn settle_verification(&self, wait: bool) -> bool {
        let Some(v) = read(&self.state).verifying.clone() else { return false };
        let Some(outcome) = (if wait { Some(v.wait()) } else { v.ended() }) else { return true };
        let mut st = write(&self.state);
        if st.verifying.as_ref().is_some_and(|now| Arc::ptr_eq(now, &v)) {
            st.verifying = None;
            st.failed_pass = outcome == Outcome::Damaged;
            *st.broken.get_mut() = outcome != Outcome::Passed;
        }
        false
    }

    /// [`DbState::current`], or made so without the write side: a new
    /// lease whose cheap check finds the file unchanged is recorded as
    /// checked (each lease would otherwise stop every reader once).
    fn current_shared(&self, st: &DbState, refresh: bool, lease: Option<u64>) -> bool {
        if st.current(refresh, lease) {
            return true;
        }
        let unchanged = !st.broken.load(Ordering::Relaxed) && st.mode == Mode::ReadOnly && self.open_file_unchanged(st);
        if unchanged {
            st.checked_lease.store(lease.unwrap_or(0), Ordering::Relaxed);
        }
        unchanged
    }

    /// The cheap check, without a path lookup: the open file is still
    /// linked, as big and as recent as when the handle was opened. The path
    /// is looked at anyway once per [`PATH_CHECK_INTERVAL`], for a file
    /// replaced while the old one keeps another link.
    fn open_file_unchanged(&self, st: &DbState) -> bool {
        if st.path_checked.elapsed() >= PATH_CHECK_INTERVAL {
            return false;
        }
        match self.lock.file().metadata() {
            Ok(m) => m.nlink() > 0 && st.stamp == Some(Stamp::of(&m)),
            Err(_) => false,
        }
    }
}

#[derive(Default)]
struct Registry {
    dbs: HashMap<(u64, u64, DbType), Weak<Shared>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

impl Registry {
    fn prune(&mut self) {
        self.dbs.retain(|_, w| w.strong_count() > 0);
    }

    /// This process's lock for the file; None if it does not exist.
    fn lockfile(&mut self, db_path: &str) -> Result<Option<Arc<FileLock>>, OpenError> {
        // OpenError::io: refused access is tried again (the file may be given
        // back its permissions), as for the Berkeley DB open itself.
        let err = |e: &std::io::Error| OpenError::io(format_args!("open database {db_path}"), e);
        match File::open(db_path) {
            Ok(f) => FileLock::for_fd(f.as_fd(), Style::Flock, db_path).map(Some).map_err(|e| err(&e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(err(&e)),
        }
    }
}

fn open(req: &OpenRequest, ty: DbType) -> Result<Box<dyn Dict>, OpenError> {
    let full = req.full_name();
    if req.flags & OPEN_LOCK != 0 && req.flags & LOCK != 0 {
        return Err(OpenError::new(format!(
            "dict_open: attempt to open {full} with both \"open\" lock and \"access\" lock"
        )));
    }
    let (compiled, runtime) = (bdb::compiled_version(), bdb::runtime_version());
    if (compiled.0, compiled.1) != (runtime.0, runtime.1) {
        return Err(OpenError::new(format!(
            "incorrect version of Berkeley DB: compiled against {}.{}.{}, run-time linked against {}.{}.{}",
            compiled.0, compiled.1, compiled.2, runtime.0, runtime.1, runtime.2
        )));
    }
    let db_path = format!("{}.db", req.name);
    let settings = HandleSettings::of(req.params);
    let lock_err = |what: &str, e: &std::io::Error| OpenError::new(format!("{what}: {}", io_text(e)));

    let mut reg = lock(&REGISTRY);
    reg.prune();
    let mut lockfile = reg.lockfile(&db_path)?;
    let existing = lockfile.as_ref().and_then(|l| reg.dbs.get(&(l.dev(), l.ino(), ty)).and_then(Weak::upgrade));
    let shared = match existing {
        Some(shared) => {
            // Another instance of this file in this process: share its handle,
            // upgrading it if this instance needs to write.
            let needs_upgrade = req.mode == Mode::ReadWrite && read(&shared.state).mode == Mode::ReadOnly;
            if needs_upgrade {
                let held = match req.flags & LOCK {
                    0 => None,
                    _ => Some(
                        shared
                            .lock
                            .hold(Kind::Shared)
                            .map_err(|e| lock_err(&format!("shared-lock database {db_path} for open"), &e))?,
                    ),
                };
                let stamp = Stamp::stat(&db_path).ok();
                let db = open_handle(&db_path, ty, Mode::ReadWrite, &shared.settings, stamp.is_some())?;
                drop(held);
                write(&shared.state).replace(ReaderHandle { db, pages: None, verifying: None }, Mode::ReadWrite, stamp);
            }
            shared
        }
        None => {
            let stamp = Stamp::stat(&db_path).ok();
            // Readers always share-lock the open (and its verify): the table
            // may be reopened after a change while the writer is mid-update,
            // and the request flags that would carry LOCK do not reach opens.
            let lock_open = req.flags & LOCK != 0 || req.mode == Mode::ReadOnly;
            let held = match (&lockfile, lock_open) {
                (Some(l), true) => Some(
                    l.hold(Kind::Shared)
                        .map_err(|e| lock_err(&format!("shared-lock database {db_path} for open"), &e))?,
                ),
                _ => None,
            };
            let opened = match req.mode {
                Mode::ReadOnly => verify::open_reader(&db_path, ty, &settings, stamp.is_some(), false),
                Mode::ReadWrite => open_handle(&db_path, ty, req.mode, &settings, stamp.is_some())
                    .map(|db| ReaderHandle { db, pages: None, verifying: None }),
            };
            let handle = match opened {
                Err(e) if e.damaged && req.mode == Mode::ReadWrite && ty == DbType::Hash => {
                    // The single writer rebuilds what it can read (a write
                    // cut short by a full file system leaves such a file):
                    // readers keep failing on the damaged file until then.
                    drop(held);
                    if let Some(l) = &lockfile {
                        let _excl = l
                            .hold(Kind::Exclusive)
                            .map_err(|e| lock_err(&format!("lock database {db_path} for repair"), &e))?;
                        repair::rebuild(&db_path, &e.reason, &settings)?;
                    }
                    lockfile = reg.lockfile(&db_path)?;
                    let db = open_handle(&db_path, ty, req.mode, &settings, true)?;
                    ReaderHandle { db, pages: None, verifying: None }
                }
                other => {
                    let handle = other?;
                    drop(held);
                    handle
                }
            };
            if lockfile.is_none() {
                // Just created by DB_CREATE.
                lockfile = reg.lockfile(&db_path)?;
            }
            let Some(lf) = lockfile.clone() else {
                return Err(OpenError::new(format!("open database {db_path}: No such file or directory")));
            };
            let stamp = stamp.or_else(|| Stamp::stat(&db_path).ok());
            let shared = Arc::new(Shared {
                db_path: db_path.clone(),
                ty,
                settings,
                lock: lf,
                state: RwLock::new(DbState {
                    db: handle.db,
                    mode: req.mode,
                    pages: handle.pages,
                    verifying: handle.verifying,
                    failed_pass: false,
                    stamp,
                    broken: AtomicBool::new(false),
                    unsynced: AtomicBool::new(false),
                    unsynced_logged: None,
                    retired: Vec::new(),
                    cursors: HashMap::new(),
                    checked_lease: AtomicU64::new(0),
                    path_checked: Instant::now(),
                }),
                reopen_failed: Mutex::new(None),
            });
            reg.dbs.insert((shared.lock.dev(), shared.lock.ino(), ty), Arc::downgrade(&shared));
            shared
        }
    };
    if req.flags & OPEN_LOCK != 0 {
        shared.lock.acquire_persistent().map_err(|e| lock_err(&format!("{full}: unable to get exclusive lock"), &e))?;
    }
    drop(reg);
    let opened = shared.lock.file().metadata().map(|m| Stamp::of(&m)).ok();
    if req.flags & LOCK != 0 {
        warn_if_older_than_source(&db_path, req.name, opened);
    }
    let mut flags = req.flags | FIXED;
    if flags & (TRY0NULL | TRY1NULL) == 0 {
        flags |= TRY0NULL | TRY1NULL;
    }
    let nul = AtomicU32::new(flags & (TRY0NULL | TRY1NULL));
    Ok(Box::new(DbDict { shared, mode: req.mode, flags, nul, open_lock: req.flags & OPEN_LOCK != 0, opened }))
}

/// Postfix warns when the source file is newer than the index, unless the
/// source changed within the last 100 seconds.
fn warn_if_older_than_source(db_path: &str, source: &str, db: Option<Stamp>) {
    let (Some(db), Ok(src)) = (db, std::fs::metadata(source)) else { return };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if src.mtime() > db.mtime && src.mtime() < now - 100 {
        log::warn!("database {db_path} is older than source file {source}");
    }
}

// ---------------------------------------------------------------------------
// The table.

pub(crate) struct DbDict {
    shared: Arc<Shared>,
    mode: Mode,
    /// Open flags | FIXED (the NUL bits are in `nul`).
    flags: u32,
    /// The TRY0NULL/TRY1NULL bits still undecided. Threads racing on it
    /// learn the same answer from the same file.
    nul: AtomicU32,
    open_lock: bool,
    /// The file when this instance was opened (change detection).
    opened: Option<Stamp>,
}

impl Drop for DbDict {
    fn drop(&mut self) {
        if self.open_lock {
            self.shared.lock.release_persistent();
        }
    }
}

/// The per-access file lock, when the request has LOCK.
fn lock_file(shared: &Shared, flags: u32, kind: Kind) -> DictResult<Option<Held<'_>>> {
    if flags & LOCK == 0 {
        return Ok(None);
    }
    shared.lock.hold(kind).map(Some).map_err(|e| {
        DictError::from_lock(&e, |e| {
            let msg = format!("{}: lock dictionary: {}", shared.db_path, io_text(e));
            log::error!("{msg}");
            DictError::Retry(msg)
        })
    })
}

/// Re-open the handle if it failed or, with `refresh`, if the file changed
/// (checked once per lock lease).
fn prepare(shared: &Shared, st: &mut DbState, refresh: bool, lease: Option<u64>) -> DictResult<()> {
    flush_unsynced(&shared.db_path, st)?;
    if !st.current(refresh, lease) {
        shared.refresh(st)?;
        *st.checked_lease.get_mut() = lease.unwrap_or(0);
    }
    Ok(())
}

/// Run `f` on the file's handle, under the per-operation lock when the
/// request has LOCK, after re-opening the handle if needed.
fn with_db<T>(
    shared: &Shared,
    flags: u32,
    kind: Kind,
    refresh: bool,
    f: impl FnOnce(&mut DbState) -> DictResult<T>,
) -> DictResult<T> {
    // A re-open may start a new pass (the file changed): wait for it too,
    // a few times, as a file written all the time would never be done.
    for _ in 0..3 {
        // (Where waiting is not allowed, the request moves to a thread.)
        if shared.settle_verification(!crate::sync::no_wait()) {
            return Err(DictError::WouldBlock);
        }
        let held = lock_file(shared, flags, kind)?;
        let lease = held.as_ref().and_then(Held::lease);
        let mut st = write(&shared.state);
        prepare(shared, &mut st, refresh, lease)?;
        if st.verifying.is_none() {
            return f(&mut st);
        }
    }
    Err(DictError::Retry(format!("{}: still being verified after changes", shared.db_path)))
}

/// Per-connection sequence state: a DB cursor on the shared handle.
struct DbCursor {
    shared: Arc<Shared>,
    dbc: Option<Dbc>,
}

impl Drop for DbCursor {
    fn drop(&mut self) {
        if let Some(c) = self.dbc.take() {
            write(&self.shared.state).close_cursor(c);
        }
    }
}

/// After the writer's own update, flushed under a lock: the file is
/// as the verified file plus writes Berkeley DB completed, so its new
/// state needs no verify pass when this or another process opens it
/// next (a restarted proxywrite, readers reopening after the change):
/// without this, each of them read the whole file again (8.8 s for an
/// 875 MB file). A write that failed leaves the handle broken or
/// unsynced and never reaches here.
fn remember_written(shared: &Shared, open_lock: bool, flags: u32) {
    if flags & LOCK == 0 && !open_lock {
        return;
    }
    if let (Some(v), Ok(meta)) = (&shared.settings.verdicts, std::fs::metadata(&shared.db_path)) {
        v.remember(&shared.db_path, &meta);
    }
}

impl DbDict {
    fn path(&self) -> &str {
        &self.shared.db_path
    }

    /// Postfix's NUL discovery: look `key` up with a trailing NUL and/or
    /// without, as the NUL bits still allow, and keep the form that hit.
    /// The value is handed on without its NUL.
    fn probe<E>(
        &self,
        key: &[u8],
        out: &mut Vec<u8>,
        mut get: impl FnMut(&[u8], &mut Vec<u8>) -> Result<bool, E>,
    ) -> Result<bool, E> {
        let mut found = false;
        if self.nul.load(Ordering::Relaxed) & TRY1NULL != 0 {
            found = crate::dict::probe_with_nul(key, |k| get(k, out))?;
            if found {
                self.nul.fetch_and(!TRY0NULL, Ordering::Relaxed);
            }
        }
        if !found && self.nul.load(Ordering::Relaxed) & TRY0NULL != 0 {
            found = get(key, out)?;
            if found {
                self.nul.fetch_and(!TRY1NULL, Ordering::Relaxed);
            }
        }
        if found {
            cut_at_nul(out);
        } else {
            out.clear();
        }
        Ok(found)
    }
}

impl Dict for DbDict {
    /// As Postfix's dict->flags: the NUL bits as learned so far.
    fn flags(&self) -> u32 {
        (self.flags & !(TRY0NULL | TRY1NULL)) | self.nul.load(Ordering::Relaxed)
    }

    fn waits(&self) -> Waits {
        // the file lock postmap or proxywrite may hold (dict::file::filelock honours NoWait).
        Waits::OnContention
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        let key = fold_key(until_nul(key), flags & FOLD_FIX != 0);
        let path = &self.shared.db_path;
        let refresh = self.mode == Mode::ReadOnly;
        let held = lock_file(&self.shared, flags, Kind::Shared)?;
        let lease = held.as_ref().and_then(Held::lease);
        {
            // The page reader needs only the read side: lookups on several
            // threads run side by side. A page error is retried below.
            let st = read(&self.shared.state);
            let trusted = !st.verifying.as_ref().is_some_and(|v| v.failed());
            if let (true, Some(pages)) = (trusted && self.shared.current_shared(&st, refresh, lease), st.pages.as_ref())
            {
                if let Ok(found) = self.probe(&key, out, |k, o| pages.get(k, o, lease)) {
                    return Ok(found);
                }
            }
        }
        let _ = self.shared.settle_verification(false);
        let mut st = write(&self.shared.state);
        prepare(&self.shared, &mut st, refresh, lease)?;
        let found = self.probe(&key, out, |k, o| st.get(path, k, o, lease));
        found.map_err(|c| fail(&st, format!("error reading {path}: {}", code_text(c))))
    }

    fn update(&mut self, key: &[u8], value: &[u8], flags: u32) -> DictResult<bool> {
        if self.mode == Mode::ReadOnly {
            // What Berkeley DB answers for a put on a DB_RDONLY handle.
            let msg = format!("error writing {}: {}", self.path(), strerror(libc::EACCES));
            log::error!("{msg}");
            return Err(DictError::Retry(msg));
        }
        let key = fold_key(until_nul(key), flags & FOLD_FIX != 0);
        let value = until_nul(value);
        // Undecided: Berkeley DB on Linux stores keys and values with a NUL.
        let nul = self.nul.get_mut();
        if *nul & (TRY0NULL | TRY1NULL) == TRY0NULL | TRY1NULL {
            *nul &= !TRY0NULL;
        }
        let (k, v) =
            if *nul & TRY1NULL != 0 { (with_nul(&key), with_nul(value)) } else { (key.to_vec(), value.to_vec()) };
        let path = &self.shared.db_path;
        with_db(&self.shared, flags, Kind::Exclusive, false, |st| {
            let stored = st
                .db
                .put(&k, &v, flags & DUP_REPLACE == 0)
                .map_err(|c| fail_write(st, c, format!("error writing {path}: {}", code_text(c))))?;
            let mut result = Ok(stored);
            if !stored {
                let msg = format!("{path}: duplicate entry: \"{}\"", String::from_utf8_lossy(&key));
                if flags & DUP_IGNORE != 0 {
                    // keep the old value silently
                } else if flags & DUP_WARN != 0 {
                    log::warn!("{msg}");
                } else {
                    // Postfix exits here.
                    log::error!("{msg}");
                    result = Err(DictError::Config(msg));
                }
            }
            if flags & SYNC_UPDATE != 0 {
                st.db.sync().map_err(|c| fail_write(st, c, format!("{path}: flush dictionary: {}", code_text(c))))?;
                remember_written(&self.shared, self.open_lock, flags);
            }
            result
        })
    }

    fn delete(&mut self, key: &[u8], flags: u32) -> DictResult<bool> {
        if self.mode == Mode::ReadOnly {
            let msg = format!("error deleting from {}: {}", self.path(), strerror(libc::EACCES));
            log::error!("{msg}");
            return Err(DictError::Retry(msg));
        }
        let key = fold_key(until_nul(key), flags & FOLD_FIX != 0);
        let nulls = self.nul.get_mut();
        let path = &self.shared.db_path;
        with_db(&self.shared, flags, Kind::Exclusive, false, |st| {
            let mut found = false;
            if *nulls & TRY1NULL != 0 {
                found = st
                    .db
                    .del(&with_nul(&key))
                    .map_err(|c| fail_write(st, c, format!("error deleting from {path}: {}", code_text(c))))?;
                if found {
                    *nulls &= !TRY0NULL;
                }
            }
            if !found && *nulls & TRY0NULL != 0 {
                found = st
                    .db
                    .del(&key)
                    .map_err(|c| fail_write(st, c, format!("error deleting from {path}: {}", code_text(c))))?;
                if found {
                    *nulls &= !TRY1NULL;
                }
            }
            if flags & SYNC_UPDATE != 0 {
                st.db.sync().map_err(|c| fail_write(st, c, format!("{path}: flush dictionary: {}", code_text(c))))?;
                remember_written(&self.shared, self.open_lock, flags);
            }
            Ok(found)
        })
    }

    fn sequence(
        &mut self,
        cursor: &mut Option<Cursor>,
        first: bool,
        flags: u32,
    ) -> DictResult<Option<(Vec<u8>, Vec<u8>)>> {
        // A cursor of another table (cannot happen: cursors are kept per
        // table instance) is treated as none.
        if let Some(c) = cursor.as_ref() {
            if !c.downcast_ref::<DbCursor>().is_some_and(|c| Arc::ptr_eq(&c.shared, &self.shared)) {
                *cursor = None;
            }
        }
        if !first && cursor.is_none() {
            return Ok(None);
        }
        if cursor.is_none() {
            *cursor = Some(Box::new(DbCursor { shared: self.shared.clone(), dbc: None }));
        }
        let Some(cur) = cursor.as_mut().and_then(|c| c.downcast_mut::<DbCursor>()) else {
            return Ok(None);
        };
        let path = &self.shared.db_path;
        let refresh = first && self.mode == Mode::ReadOnly;
        let result = with_db(&self.shared, flags, Kind::Shared, refresh, |st| {
            if first {
                // Restart on the current handle (it may have been re-opened).
                if let Some(old) = cur.dbc.take_if(|c| c.owner() != st.db.id()) {
                    st.close_cursor(old);
                }
                if cur.dbc.is_none() {
                    let c = st.new_cursor().map_err(|c| {
                        fail(st, format!("error [{c}] initializing cursor for {path}: {}", code_text(c)))
                    })?;
                    cur.dbc = Some(c);
                }
            }
            let Some(dbc) = cur.dbc.as_mut() else { return Ok(None) };
            let Some(db) = st.db_of(dbc) else { return Ok(None) };
            match dbc.get(db, !first) {
                Ok(r) => Ok(r),
                Err(c) => Err(fail(st, format!("error [{c}] seeking {path}: {}", code_text(c)))),
            }
        });
        let (mut k, mut v) = match result? {
            Some(kv) => kv,
            None => return Ok(None),
        };
        cut_at_nul(&mut k);
        cut_at_nul(&mut v);
        Ok(Some((k, v)))
    }

    fn changed(&self) -> bool {
        if self.mode == Mode::ReadWrite {
            // The writer's own updates change the file; Postfix's writer
            // never checks.
            return false;
        }
        match (Stamp::stat(self.path()), self.opened) {
            (Ok(now), Some(then)) => {
                (now.dev, now.ino, now.mtime, now.mtime_nsec) != (then.dev, then.ino, then.mtime, then.mtime_nsec)
            }
            _ => true,
        }
    }
}

mod handle;
mod repair;
mod state;
#[cfg(test)]
mod tests;
mod verify;
