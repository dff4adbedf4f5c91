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
//! * Fatal conditions (lock/read/write errors, a duplicate without a
//!   duplicate policy, both OPEN_LOCK and LOCK) become an error status and
//!   one log line; a handle that failed is re-opened at its next use.
//! * OPEN_LOCK waits up to about a second for the exclusive lock before
//!   failing the open (Postfix exits at once and its master retries; our
//!   failed open is a cached surrogate).
//! * Sequence NEXT without FIRST reports the end (Postfix panics); cursors
//!   are per connection (Postfix: one per table).

use crate::config::Params;
use crate::dict::file::filelock::{FileLock, Held, Kind, Style};
use crate::dict::file::hash_pages::HashPages;
use crate::dict::file::verified::{self, Verdicts};
use crate::dict::postmap_text::{cut_at_nul, until_nul};
use crate::dict::{fold_key, with_nul, Cursor, Dict, DictError, DictResult, Mode, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{
    DUP_IGNORE, DUP_REPLACE, DUP_WARN, FIXED, FOLD_FIX, LOCK, OPEN_LOCK, SYNC_UPDATE, TRY0NULL, TRY1NULL,
};
use crate::sync::{lock, read, write};
use crate::sys::db::{self as bdb, Code, Db, DbType, Dbc, Env, OpenFlags};
use crate::sys::errno::strerror;
use std::collections::HashMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

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
}

struct DbState {
    db: Db,
    mode: Mode,
    /// Read-only hash files: lookups read the file's pages directly.
    pages: Option<HashPages>,
    /// The file as it was just before `db` was opened.
    stamp: Option<Stamp>,
    /// An operation failed: open a fresh handle before the next one.
    broken: AtomicBool,
    /// Replaced handles kept for the cursors still open on them.
    retired: Vec<Db>,
    /// Open cursors per handle id.
    cursors: HashMap<u64, usize>,
    /// The file lock lease under which `stamp` was last compared with the
    /// file (0: none).
    checked_lease: AtomicU64,
    /// When the path (not just the open file) was last compared.
    path_checked: Instant,
}

impl DbState {
    fn replace(&mut self, db: Db, mode: Mode, stamp: Option<Stamp>, pages: Option<HashPages>) {
        let old = std::mem::replace(&mut self.db, db);
        if self.cursors.get(&old.id()).copied().unwrap_or(0) > 0 {
            self.retired.push(old);
        }
        self.mode = mode;
        self.pages = pages;
        self.stamp = stamp;
        *self.broken.get_mut() = false;
    }

    /// Nothing to re-open or check before an access under `lease`: the
    /// handle works and (with `refresh`) the file was checked in this lease.
    fn current(&self, refresh: bool, lease: Option<u64>) -> bool {
        let checked = lease.is_some_and(|l| l == self.checked_lease.load(Ordering::Relaxed));
        (checked || !refresh) && !self.broken.load(Ordering::Relaxed)
    }

    /// Look `key` up: in the pages when they are read directly (a page
    /// that does not look right turns that off until the next re-open, with
    /// one warning), else through Berkeley DB.
    fn get(&mut self, path: &str, key: &[u8], out: &mut Vec<u8>, lease: Option<u64>) -> Result<bool, Code> {
        if let Some(pages) = self.pages.as_ref() {
            match pages.get(key, out, lease) {
                Ok(found) => return Ok(found),
                Err(e) => {
                    log::warn!("{path}: {e}: reading it through Berkeley DB");
                    self.pages = None;
                }
            }
        }
        self.db.get(key, out)
    }

    fn new_cursor(&mut self) -> Result<Dbc, Code> {
        let c = self.db.cursor()?;
        *self.cursors.entry(c.owner()).or_insert(0) += 1;
        Ok(c)
    }

    fn db_of(&mut self, c: &Dbc) -> Option<&mut Db> {
        if self.db.id() == c.owner() {
            return Some(&mut self.db);
        }
        self.retired.iter_mut().find(|d| d.id() == c.owner())
    }

    fn close_cursor(&mut self, c: Dbc) {
        let id = c.owner();
        if let Some(db) = self.db_of(&c) {
            let _ = c.close(db);
        }
        let left = match self.cursors.get_mut(&id) {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n
            }
            None => 0,
        };
        if left == 0 {
            self.cursors.remove(&id);
            self.retired.retain(|d| d.id() != id);
        }
    }
}

/// Log a failed operation once and mark the handle for re-opening.
fn fail(st: &DbState, msg: String) -> DictError {
    log::error!("{msg}");
    st.broken.store(true, Ordering::Relaxed);
    DictError::Retry(msg)
}

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
        match open_handle(&self.db_path, self.ty, st.mode, &self.settings, now.is_some()) {
            Ok(db) => {
                let pages = direct_pages(&self.db_path, self.ty, st.mode);
                st.replace(db, st.mode, now, pages);
                Ok(())
            }
            Err(e) => {
                log::error!("{}", e.reason);
                Err(DictError::Retry(e.reason))
            }
        }
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

/// The direct page reader for a read-only hash handle, when the file has
/// the layout it knows (else Berkeley DB serves every lookup).
fn direct_pages(db_path: &str, ty: DbType, mode: Mode) -> Option<HashPages> {
    if ty != DbType::Hash || mode != Mode::ReadOnly {
        return None;
    }
    HashPages::open(db_path).map_err(|e| log::debug!("{db_path}: {e}: reading it through Berkeley DB")).ok()
}

/// What every handle of a file is opened with.
struct HandleSettings {
    /// Berkeley DB cache size (Postfix's berkeley_db_read_buffer_size).
    cache_size: u32,
    /// Where verify verdicts are shared with the service's other processes.
    verdicts: Option<Verdicts>,
}

impl HandleSettings {
    fn of(params: &Params) -> HandleSettings {
        let cache_size = params.get_int("berkeley_db_read_buffer_size").unwrap_or(DEFAULT_READ_BUFFER).max(1) as u32;
        // Unit tests leave the system's data directory alone.
        let dir = match params.raw("data_directory") {
            None if cfg!(test) => String::new(),
            _ => params.get("data_directory"),
        };
        let verdicts = (!dir.is_empty()).then(|| Verdicts::in_dir(std::path::Path::new(&dir)));
        HandleSettings { cache_size, verdicts }
    }
}

/// Open one handle as dict_db_open() does (the caller takes the locks).
///
/// With `verify` (an existing file) the whole file is checked first, as
/// Berkeley DB can crash on damaged pages; this costs a read of the file,
/// unless another process of the service verified the file as it is now.
fn open_handle(
    db_path: &str,
    ty: DbType,
    mode: Mode,
    settings: &HandleSettings,
    verify: bool,
) -> Result<Db, OpenError> {
    let cache_size = settings.cache_size;
    let m = |what: &str, code: Code| OpenError::new(format!("{what}: {}", strerror(code)));
    let path = std::path::Path::new(db_path);
    // sane_dirname()/sane_basename(): the environment lives in the file's directory.
    let home = match path.parent().map(|p| p.as_os_str().as_encoded_bytes()) {
        Some(b"") | None => b".".as_slice(),
        Some(p) => p,
    };
    let base = path.file_name().map(|b| b.as_encoded_bytes()).unwrap_or(b"");
    let (Ok(home), Ok(base)) = (CString::new(home), CString::new(base)) else {
        return Err(m(&format!("open database {db_path}"), libc::EINVAL));
    };
    let mut env = Env::create(db_path).map_err(|c| m("create DB environment", c))?;
    let (gbytes, bytes, ncache) = env.cachesize().map_err(|c| m("get DB cache size", c))?;
    if gbytes == 0 && bytes < cache_size {
        env.set_cache_max(gbytes, cache_size).map_err(|c| m(&format!("set DB max cache size {cache_size}"), c))?;
        env.set_cachesize(gbytes, cache_size, ncache).map_err(|c| m(&format!("set DB cache size {cache_size}"), c))?;
    }
    env.open_private(&home).map_err(|c| m("open DB environment", c))?;
    let mut db = Db::create(env).map_err(|c| m("create DB database", c))?;
    if ty == DbType::Hash {
        db.set_h_nelem(HASH_NELEM).map_err(|c| m(&format!("set DB hash element count {HASH_NELEM}"), c))?;
    }
    let flags = OpenFlags { read_only: mode == Mode::ReadOnly, create: mode == Mode::ReadWrite };
    db.open(&base, ty, flags, 0o644).map_err(|c| m(&format!("open database {db_path}"), c))?;
    // The verdict file is read only when a verify pass is due.
    let before = if verify { std::fs::metadata(db_path).ok() } else { None };
    let known = match (&settings.verdicts, &before) {
        (Some(v), Some(meta)) => v.known(db_path, meta),
        _ => false,
    };
    if verify && !known {
        let verified = db.verify(&base);
        crate::sys::release_free_memory();
        if let Err((_, complaint)) = verified {
            if let Some(text) = complaint {
                log::warn!("{db_path}: {text}");
            }
            return Err(m(&format!("open database {db_path}"), libc::EINVAL));
        }
        if let (Some(v), Some(before)) = (&settings.verdicts, &before) {
            // Only a verdict about the file that was actually verified.
            if std::fs::metadata(db_path).is_ok_and(|after| verified::unchanged(before, &after)) {
                v.remember(db_path, before);
            }
        }
    }
    Ok(db)
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
        let err = |e: &std::io::Error| OpenError::new(format!("open database {db_path}: {}", io_text(e)));
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
                write(&shared.state).replace(db, Mode::ReadWrite, stamp, None);
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
            let db = open_handle(&db_path, ty, req.mode, &settings, stamp.is_some())?;
            let pages = direct_pages(&db_path, ty, req.mode);
            drop(held);
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
                    db,
                    mode: req.mode,
                    pages,
                    stamp,
                    broken: AtomicBool::new(false),
                    retired: Vec::new(),
                    cursors: HashMap::new(),
                    checked_lease: AtomicU64::new(0),
                    path_checked: Instant::now(),
                }),
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
    let held = lock_file(shared, flags, kind)?;
    let lease = held.as_ref().and_then(Held::lease);
    let mut st = write(&shared.state);
    prepare(shared, &mut st, refresh, lease)?;
    f(&mut st)
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
            if let (true, Some(pages)) = (self.shared.current_shared(&st, refresh, lease), st.pages.as_ref()) {
                if let Ok(found) = self.probe(&key, out, |k, o| pages.get(k, o, lease)) {
                    return Ok(found);
                }
            }
        }
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
                .map_err(|c| fail(st, format!("error writing {path}: {}", code_text(c))))?;
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
                st.db.sync().map_err(|c| fail(st, format!("{path}: flush dictionary: {}", code_text(c))))?;
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
                    .map_err(|c| fail(st, format!("error deleting from {path}: {}", code_text(c))))?;
                if found {
                    *nulls &= !TRY0NULL;
                }
            }
            if !found && *nulls & TRY0NULL != 0 {
                found =
                    st.db.del(&key).map_err(|c| fail(st, format!("error deleting from {path}: {}", code_text(c))))?;
                if found {
                    *nulls &= !TRY1NULL;
                }
            }
            if flags & SYNC_UPDATE != 0 {
                st.db.sync().map_err(|c| fail(st, format!("{path}: flush dictionary: {}", code_text(c))))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::testutil::{copy_fixture, fill, spawn_writer, wait_writer, writer_child};
    use crate::test_support::TempDir;
    use std::time::Duration;

    #[allow(deprecated)] // nix::fcntl::flock: the Flock guard type would own the File
    fn flock(f: &File, arg: nix::fcntl::FlockArg) -> nix::Result<()> {
        nix::fcntl::flock(std::os::fd::AsRawFd::as_raw_fd(f), arg)
    }

    fn open_with(table: &str, name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
        open_in(table, name, mode, flags, &Params::default())
    }

    fn open_in(table: &str, name: &str, mode: Mode, flags: u32, params: &Params) -> Result<Box<dyn Dict>, OpenError> {
        let req = OpenRequest { type_name: table, name, mode, flags, params };
        match table {
            "hash" => open_hash(&req),
            _ => open_btree(&req),
        }
    }

    fn get(d: &mut Box<dyn Dict>, key: &str, flags: u32) -> Option<String> {
        let mut out = b"garbage".to_vec();
        match d.lookup(key.as_bytes(), flags, &mut out).unwrap() {
            true => Some(String::from_utf8(out).unwrap()),
            false => None,
        }
    }

    fn put(d: &mut Box<dyn Dict>, key: &str, value: &str, flags: u32) -> DictResult<bool> {
        d.update(key.as_bytes(), value.as_bytes(), flags)
    }

    fn walk(d: &mut Box<dyn Dict>, flags: u32) -> Vec<(String, String)> {
        let mut cursor = None;
        let mut seen = Vec::new();
        let mut first = true;
        while let Some((k, v)) = d.sequence(&mut cursor, first, flags).unwrap() {
            first = false;
            seen.push((String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()));
            assert!(seen.len() < 100_000, "sequence does not end");
        }
        seen.sort();
        seen
    }

    const TYPES: [&str; 2] = ["hash", "btree"];
    const UPDATE: u32 = SYNC_UPDATE | DUP_REPLACE;

    /// `dir/name` as a table name.
    fn path_in(dir: &TempDir, name: &str) -> String {
        dir.path().join(name).to_str().unwrap().to_owned()
    }

    /// A `t` table `dir/name` holding the `KEY VALUE` lines of `source`,
    /// written by our writer as postmap would write it (folded, with NUL).
    fn build(dir: &TempDir, t: &str, name: &str, source: &str) -> String {
        let name = path_in(dir, name);
        let mut d = open_with(t, &name, Mode::ReadWrite, 0).unwrap();
        fill(&mut d, source, FOLD_FIX);
        name
    }

    /// Rebuild `t:name` in place (same inode, as postmap does) to hold `source`.
    fn rebuild(dir: &TempDir, t: &str, name: &str, source: &str) {
        let side = build(dir, t, "rebuild-side", source);
        std::fs::write(format!("{name}.db"), std::fs::read(format!("{side}.db")).unwrap()).unwrap();
        std::fs::remove_file(format!("{side}.db")).unwrap();
    }

    /// Another process adds `KEY VALUE` lines to `t:name` as `postmap -i`
    /// would (exclusive lock around each update); started, not waited for.
    fn writer_elsewhere(t: &str, name: &str, input: &str) -> std::process::Child {
        let test = concat!(module_path!(), "::writer_process").split_once("::").unwrap().1;
        spawn_writer(test, &format!("{t}:{name}"), input)
    }

    /// The other process of [`writer_elsewhere`]; nothing in a normal run.
    #[test]
    #[ignore]
    fn writer_process() {
        let Some((table, input)) = writer_child() else { return };
        let (t, name) = table.split_once(':').unwrap();
        let mut d = open_with(t, name, Mode::ReadWrite, 0).unwrap();
        fill(&mut d, &input, FOLD_FIX | LOCK);
        drop(d);
        println!("WRITER-OK");
    }

    #[test]
    fn reads_files_built_by_postmap() {
        let dir = TempDir::new("db-read");
        for t in TYPES {
            // tests/fixtures/db.txt: "Alice alice@example.com\nbob  bob value\n# comment\n"
            let name = copy_fixture(dir.path(), &format!("{t}.db"), t);
            let mut d = open_with(t, &name, Mode::ReadOnly, 0).unwrap();
            assert_eq!(d.flags(), FIXED | TRY0NULL | TRY1NULL);
            // postmap lowercases keys; values keep their case and spaces.
            assert_eq!(get(&mut d, "alice", 0).as_deref(), Some("alice@example.com"));
            assert_eq!(d.flags(), FIXED | TRY1NULL, "Linux postmap stores the trailing NUL");
            assert_eq!(get(&mut d, "Alice", 0), None);
            assert_eq!(get(&mut d, "ALICE", FOLD_FIX).as_deref(), Some("alice@example.com"));
            assert_eq!(get(&mut d, "bob", LOCK).as_deref(), Some("bob value"));
            assert_eq!(get(&mut d, "carol", LOCK), None);
            assert_eq!(get(&mut d, "", 0), None);
            assert!(!d.changed());
            let mut seen = walk(&mut d, LOCK);
            seen.sort();
            assert_eq!(
                seen,
                vec![("alice".into(), "alice@example.com".into()), ("bob".into(), "bob value".into())],
                "sequence drops the stored NUL"
            );
            // Updates are refused on a read-only instance.
            assert!(matches!(put(&mut d, "x", "y", UPDATE), Err(DictError::Retry(_))));
        }
    }

    #[test]
    fn discovers_files_without_nul_and_keeps_case_with_f() {
        let dir = TempDir::new("db-nonul");
        for t in TYPES {
            // -n: no trailing NUL; -f: no case folding at build time
            // (tests/fixtures/nonul.txt: "MiXed v1\nlower v2\n").
            let name = copy_fixture(dir.path(), &format!("{t}-nonul.db"), t);
            let mut d = open_with(t, &name, Mode::ReadOnly, 0).unwrap();
            assert_eq!(get(&mut d, "MiXed", 0).as_deref(), Some("v1"));
            assert_eq!(d.flags(), FIXED | TRY0NULL);
            assert_eq!(get(&mut d, "mixed", 0), None);
            assert_eq!(get(&mut d, "MiXed", FOLD_FIX), None, "folded key misses an unfolded entry");
            assert_eq!(get(&mut d, "LOWER", FOLD_FIX).as_deref(), Some("v2"));
            // An instance opened with TRY1NULL only never finds them.
            let mut d = open_with(t, &name, Mode::ReadOnly, TRY1NULL).unwrap();
            assert_eq!(get(&mut d, "MiXed", 0), None);
            // Writing to a TRY0NULL table continues without NUL.
            let mut w = open_with(t, &name, Mode::ReadWrite, 0).unwrap();
            assert_eq!(get(&mut w, "lower", 0).as_deref(), Some("v2"));
            assert!(put(&mut w, "new", "v3", UPDATE).unwrap());
            drop(w);
            // (tests/postfix_files.rs asks postmap -q too.)
            let mut r = open_with(t, &name, Mode::ReadOnly, 0).unwrap();
            assert_eq!(get(&mut r, "new", 0).as_deref(), Some("v3"));
        }
    }

    #[test]
    fn open_errors_have_postfix_texts() {
        let dir = TempDir::new("db-openerr");
        for t in TYPES {
            let missing = path_in(&dir, "missing");
            let err = open_with(t, &missing, Mode::ReadOnly, 0).err().unwrap();
            assert_eq!(err.reason, format!("open database {missing}.db: No such file or directory"));
            let err = open_with(t, &missing, Mode::ReadOnly, LOCK).err().unwrap();
            assert_eq!(err.reason, format!("open database {missing}.db: No such file or directory"));
            let err = open_with(t, "/nonexistent/dir/x", Mode::ReadWrite, 0).err().unwrap();
            assert_eq!(err.reason, "open database /nonexistent/dir/x.db: No such file or directory");
            let err = open_with(t, &missing, Mode::ReadWrite, LOCK | OPEN_LOCK).err().unwrap();
            assert_eq!(
                err.reason,
                format!("dict_open: attempt to open {t}:{missing} with both \"open\" lock and \"access\" lock")
            );
        }
        // A btree is not a hash and vice versa (Berkeley DB says EINVAL).
        let h = copy_fixture(dir.path(), "hash.db", "h");
        let b = copy_fixture(dir.path(), "btree.db", "b");
        for (t, name) in [("btree", &h), ("hash", &b)] {
            for mode in [Mode::ReadOnly, Mode::ReadWrite] {
                let err = open_with(t, name, mode, 0).err().unwrap();
                assert_eq!(err.reason, format!("open database {name}.db: Invalid argument"));
            }
        }
        // The right type still opens: a failed open leaves nothing behind.
        let mut d = open_with("hash", &h, Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "alice", 0).as_deref(), Some("alice@example.com"));
    }

    #[test]
    fn corrupt_and_truncated_files_fail_that_table_only() {
        let dir = TempDir::new("db-corrupt");
        for t in TYPES {
            let garbage = path_in(&dir, &format!("{t}-garbage"));
            std::fs::write(format!("{garbage}.db"), b"this is not a database\n").unwrap();
            let empty = path_in(&dir, &format!("{t}-empty"));
            std::fs::write(format!("{empty}.db"), b"").unwrap();
            for (name, mode) in [(&garbage, Mode::ReadOnly), (&garbage, Mode::ReadWrite), (&empty, Mode::ReadOnly)] {
                let err = open_with(t, name, mode, LOCK).err().unwrap();
                assert_eq!(err.reason, format!("open database {name}.db: Invalid argument"));
            }
            // Berkeley DB 5.3 turns an empty file opened with DB_CREATE into an
            // empty table (as for Postfix's proxywrite).
            let mut d = open_with(t, &empty, Mode::ReadWrite, LOCK).unwrap();
            assert_eq!(get(&mut d, "a", LOCK), None);
            assert!(put(&mut d, "a", "b", UPDATE).unwrap());
            drop(d);
            // (tests/postfix_files.rs asks postmap -q too.)
            let mut d = open_with(t, &empty, Mode::ReadOnly, 0).unwrap();
            assert_eq!(get(&mut d, "a", 0).as_deref(), Some("b"));
            // A real table, then damaged copies of it.
            let source: String = (0..3000).map(|i| format!("key{i} value{i} {}\n", "x".repeat(i % 50))).collect();
            let good = build(&dir, t, &format!("{t}-good"), &source);
            let bytes = std::fs::read(format!("{good}.db")).unwrap();
            assert!(bytes.len() > 16384);
            let mut damaged = Vec::new();
            for (i, len) in [4096, 5000, 8192, bytes.len() / 2, bytes.len() - 100].into_iter().enumerate() {
                damaged.push((format!("truncated{i}"), bytes[..len].to_vec()));
            }
            let mut scribbled = bytes.clone();
            for b in scribbled[8192..].iter_mut().step_by(7) {
                *b = 0xa5;
            }
            damaged.push(("scribbled".into(), scribbled));
            let mut zeroed = bytes.clone();
            zeroed[4096..12288].fill(0);
            damaged.push(("zeroed".into(), zeroed));
            for (tag, content) in damaged {
                let name = path_in(&dir, &format!("{t}-{tag}"));
                std::fs::write(format!("{name}.db"), &content).unwrap();
                for mode in [Mode::ReadOnly, Mode::ReadWrite] {
                    let Ok(mut d) = open_with(t, &name, mode, 0) else { continue };
                    // Every operation either works or fails with an error; nothing panics or hangs.
                    let mut out = Vec::new();
                    for i in (0..3000).step_by(97) {
                        let _ = d.lookup(format!("key{i}").as_bytes(), LOCK, &mut out);
                    }
                    let mut cursor = None;
                    let mut first = true;
                    for _ in 0..10_000 {
                        match d.sequence(&mut cursor, first, 0) {
                            Ok(Some(_)) => first = false,
                            Ok(None) | Err(_) => break,
                        }
                    }
                    if mode == Mode::ReadWrite {
                        let _ = put(&mut d, "key5", "new", UPDATE);
                        let _ = d.delete(b"key7", SYNC_UPDATE);
                    }
                }
            }
            // The undamaged table is unaffected.
            let mut d = open_with(t, &good, Mode::ReadOnly, 0).unwrap();
            assert_eq!(get(&mut d, "key42", 0).as_deref(), Some(&*format!("value42 {}", "x".repeat(42))));
        }
    }

    #[test]
    fn writes_are_read_back_by_another_instance() {
        // What another process sees, through a fresh read-only instance of
        // ours (tests/postfix_files.rs asks postmap -q and -s).
        let query =
            |t: &str, name: &str, key: &str| get(&mut open_with(t, name, Mode::ReadOnly, 0).unwrap(), key, FOLD_FIX);
        let dir = TempDir::new("db-write");
        for t in TYPES {
            let name = path_in(&dir, t);
            let mut d = open_with(t, &name, Mode::ReadWrite, 0).unwrap();
            assert!(std::path::Path::new(&format!("{name}.db")).exists(), "O_CREAT creates the file");
            assert_eq!(d.flags(), FIXED | TRY0NULL | TRY1NULL);
            assert!(put(&mut d, "alpha", "one", UPDATE).unwrap());
            assert_eq!(d.flags(), FIXED | TRY1NULL, "new files get the trailing NUL");
            assert!(put(&mut d, "Beta", "two", UPDATE | FOLD_FIX).unwrap());
            assert!(put(&mut d, "gamma", "three", UPDATE).unwrap());
            assert!(put(&mut d, "alpha", "uno", UPDATE).unwrap(), "DUP_REPLACE replaces");
            // Duplicates without DUP_REPLACE follow the policy in the request flags.
            assert!(!put(&mut d, "alpha", "ignored", SYNC_UPDATE | DUP_IGNORE).unwrap());
            assert!(!put(&mut d, "alpha", "warned", SYNC_UPDATE | DUP_WARN).unwrap());
            assert_eq!(
                put(&mut d, "alpha", "fatal", SYNC_UPDATE),
                Err(DictError::Config(format!("{name}.db: duplicate entry: \"alpha\"")))
            );
            assert!(d.delete(b"GAMMA", SYNC_UPDATE | FOLD_FIX).unwrap());
            assert!(!d.delete(b"gamma", SYNC_UPDATE).unwrap());
            assert!(!d.delete(b"Beta", SYNC_UPDATE).unwrap(), "no folding without FOLD_FIX");
            assert_eq!(get(&mut d, "alpha", 0).as_deref(), Some("uno"));
            // Synced after each update: another process sees everything at once.
            assert_eq!(query(t, &name, "alpha").as_deref(), Some("uno"));
            assert_eq!(query(t, &name, "beta").as_deref(), Some("two"));
            assert_eq!(query(t, &name, "gamma"), None);
            assert_eq!(listed(t, &name), vec!["alpha\tuno".to_owned(), "beta\ttwo".to_owned()]);
            // With LOCK too (flock exclusive around the update, released after).
            assert!(put(&mut d, "delta", "four", UPDATE | LOCK).unwrap());
            assert!(d.delete(b"beta", SYNC_UPDATE | LOCK).unwrap());
            assert_eq!(listed(t, &name), vec!["alpha\tuno".to_owned(), "delta\tfour".to_owned()]);
        }
    }

    /// Every entry of `t:name` as `KEY\tVALUE`, sorted, as a fresh read-only
    /// instance walks it (`postmap -s` in tests/postfix_files.rs).
    fn listed(t: &str, name: &str) -> Vec<String> {
        let mut d = open_with(t, name, Mode::ReadOnly, 0).unwrap();
        walk(&mut d, 0).into_iter().map(|(k, v)| format!("{k}\t{v}")).collect()
    }

    #[test]
    fn sequence_survives_deletes_during_the_walk() {
        let dir = TempDir::new("db-seqdel");
        for t in TYPES {
            let name = path_in(&dir, t);
            let mut d = open_with(t, &name, Mode::ReadWrite, OPEN_LOCK).unwrap();
            let mut cursor = None;
            assert_eq!(d.sequence(&mut cursor, false, 0).unwrap(), None, "NEXT without FIRST");
            assert_eq!(d.sequence(&mut cursor, true, 0).unwrap(), None, "empty table");
            for i in 0..500 {
                put(&mut d, &format!("k{i:03}"), &format!("v{i}"), UPDATE).unwrap();
            }
            // verify(8)-style cleanup: delete every other entry as soon as it
            // is returned, the rest on the next step (dict_cache defers the
            // delete of the current entry).
            let mut cursor = None;
            let mut first = true;
            let mut seen = Vec::new();
            let mut pending: Option<Vec<u8>> = None;
            while let Some((k, v)) = d.sequence(&mut cursor, first, 0).unwrap() {
                first = false;
                assert_eq!(v, format!("v{}", std::str::from_utf8(&k[1..]).unwrap().parse::<u32>().unwrap()).as_bytes());
                if let Some(p) = pending.take() {
                    assert!(d.delete(&p, SYNC_UPDATE).unwrap());
                }
                if seen.len() % 2 == 0 {
                    assert!(d.delete(&k, SYNC_UPDATE).unwrap());
                } else {
                    pending = Some(k.clone());
                }
                seen.push(k);
                assert!(seen.len() <= 500, "an entry came back twice");
            }
            if let Some(p) = pending.take() {
                assert!(d.delete(&p, SYNC_UPDATE).unwrap());
            }
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), 500, "{t}: every entry visited once");
            assert_eq!(walk(&mut d, 0), vec![]);
            drop(cursor);
            drop(d);
            assert_eq!(listed(t, &name), Vec::<String>::new());
        }
    }

    #[test]
    fn cursors_outlive_their_table_and_a_reopen() {
        let dir = TempDir::new("db-cursor");
        let name = build(&dir, "btree", "t", "a 1\nb 2\nc 3\n");
        let mut d = open_with("btree", &name, Mode::ReadOnly, 0).unwrap();
        let mut cursor = None;
        assert_eq!(d.sequence(&mut cursor, true, 0).unwrap().unwrap().0, b"a");
        // The file changes: the reader re-opens its handle at the next
        // FIRST/lookup, while the old cursor keeps walking its snapshot.
        wait_writer(writer_elsewhere("btree", &name, "d 4\n"));
        assert!(d.changed());
        let mut other = None;
        assert_eq!(walk(&mut d, 0).len(), 4);
        assert_eq!(d.sequence(&mut other, true, 0).unwrap().unwrap().0, b"a");
        assert_eq!(d.sequence(&mut cursor, false, 0).unwrap().unwrap().0, b"b");
        // The table goes away before its cursors (a reopened table in the service).
        drop(d);
        assert_eq!(d_next(&mut cursor), None, "a cursor without its table ends");
        drop(cursor);
        drop(other);
    }

    fn d_next(cursor: &mut Option<Cursor>) -> Option<()> {
        // A new instance of the same file gets a cursor of its own; the old
        // one is simply dropped when the connection goes.
        cursor.take().map(drop).and(None)
    }

    #[test]
    fn two_instances_with_different_lock_flags_both_serve() {
        let dir = TempDir::new("db-locks");
        for t in TYPES {
            let name = path_in(&dir, t);
            let (tx, rx) = std::sync::mpsc::channel();
            let n = name.clone();
            std::thread::spawn(move || {
                // verify(8): OPEN_LOCK; another client: per-request LOCK.
                let mut a = open_with(t, &n, Mode::ReadWrite, OPEN_LOCK).unwrap();
                let mut b = open_with(t, &n, Mode::ReadWrite, LOCK).unwrap();
                let mut c = open_with(t, &n, Mode::ReadOnly, LOCK).unwrap();
                put(&mut a, "k1", "from a", UPDATE).unwrap();
                put(&mut b, "k2", "from b", UPDATE | LOCK).unwrap();
                let r =
                    (get(&mut b, "k1", LOCK), get(&mut a, "k2", 0), get(&mut c, "k2", LOCK), walk(&mut b, LOCK).len());
                // The OPEN_LOCK lock is still held against everybody else...
                let other = File::open(format!("{n}.db")).unwrap();
                let held = flock(&other, nix::fcntl::FlockArg::LockSharedNonblock).is_err();
                // ... until its instance goes.
                drop(a);
                let released = flock(&other, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok();
                tx.send((r, held, released)).unwrap();
            });
            let (r, held, released) =
                rx.recv_timeout(Duration::from_secs(20)).expect("instances of one file block each other");
            assert_eq!(r, (Some("from a".into()), Some("from b".into()), Some("from b".into()), 2), "{t}");
            assert!(held, "OPEN_LOCK holds an exclusive flock()");
            assert!(released, "and releases it with its instance");
        }
    }

    #[test]
    fn open_lock_is_exclusive_against_other_processes() {
        let dir = TempDir::new("db-openlock");
        let name = build(&dir, "btree", "t", "a 1\n");
        let other = File::open(format!("{name}.db")).unwrap();
        flock(&other, nix::fcntl::FlockArg::LockShared).unwrap();
        let start = std::time::Instant::now();
        let err = open_with("btree", &name, Mode::ReadWrite, OPEN_LOCK).err().unwrap();
        assert_eq!(err.reason, format!("btree:{name}: unable to get exclusive lock: Resource temporarily unavailable"));
        assert!(start.elapsed() < Duration::from_secs(5));
        flock(&other, nix::fcntl::FlockArg::Unlock).unwrap();
        assert!(open_with("btree", &name, Mode::ReadWrite, OPEN_LOCK).is_ok());
    }

    /// A file replaced by rename is noticed at once when the old one goes
    /// away, and within PATH_CHECK_INTERVAL when it keeps another link.
    #[test]
    fn replaced_files_are_noticed() {
        let dir = TempDir::new("db-replace");
        for t in TYPES {
            let name = build(&dir, t, t, "a 1\n");
            let db = format!("{name}.db");
            let mut r = open_with(t, &name, Mode::ReadOnly, LOCK).unwrap();
            assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("1"));
            let other = build(&dir, t, &format!("{t}-new"), "a 2\n");
            std::fs::rename(format!("{other}.db"), &db).unwrap();
            assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("2"));
            // Replaced again, the old file kept under another name.
            std::fs::hard_link(&db, format!("{db}.bak")).unwrap();
            let other = build(&dir, t, &format!("{t}-new"), "a 3\n");
            std::fs::rename(format!("{other}.db"), &db).unwrap();
            std::thread::sleep(PATH_CHECK_INTERVAL + Duration::from_millis(100));
            assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("3"));
        }
    }

    /// A read-only hash handle reads pages itself: keys added by another
    /// process split buckets and change the meta page, and every key is
    /// still found.
    #[test]
    fn hash_readers_follow_bucket_splits() {
        let dir = TempDir::new("db-split");
        let name = build(&dir, "hash", "h", "k0 v0\n");
        let mut r = open_with("hash", &name, Mode::ReadOnly, LOCK).unwrap();
        assert_eq!(get(&mut r, "k0", LOCK).as_deref(), Some("v0"));
        let more: String = (1..3000).map(|i| format!("k{i} v{i}\n")).collect();
        wait_writer(writer_elsewhere("hash", &name, &more));
        for i in 0..3000 {
            assert_eq!(get(&mut r, &format!("k{i}"), LOCK), Some(format!("v{i}")), "k{i}");
        }
        assert_eq!(get(&mut r, "k3000", LOCK), None);
    }

    #[test]
    fn readers_see_updates() {
        let dir = TempDir::new("db-fresh");
        for t in TYPES {
            let name = build(&dir, t, t, "a 1\n");
            // Writer first, then a reader in the same process.
            let mut w = open_with(t, &name, Mode::ReadWrite, 0).unwrap();
            let mut r = open_with(t, &name, Mode::ReadOnly, LOCK).unwrap();
            assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("1"));
            put(&mut w, "a", "2", UPDATE).unwrap();
            put(&mut w, "b", "3", UPDATE).unwrap();
            assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("2"));
            assert_eq!(get(&mut r, "b", 0).as_deref(), Some("3"));
            drop((w, r));
            // Reader first, then a writer.
            let mut r = open_with(t, &name, Mode::ReadOnly, 0).unwrap();
            assert_eq!(get(&mut r, "a", 0).as_deref(), Some("2"));
            let mut w = open_with(t, &name, Mode::ReadWrite, 0).unwrap();
            put(&mut w, "a", "4", UPDATE).unwrap();
            assert_eq!(get(&mut r, "a", 0).as_deref(), Some("4"));
            drop((w, r));
            // Another process updates the file in place, as postmap -r -i does.
            let mut r = open_with(t, &name, Mode::ReadOnly, 0).unwrap();
            assert_eq!(get(&mut r, "a", 0).as_deref(), Some("4"));
            assert!(!r.changed());
            wait_writer(writer_elsewhere(t, &name, "c 5\na 6\n"));
            assert!(r.changed());
            assert_eq!(get(&mut r, "c", LOCK).as_deref(), Some("5"));
            assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("6"));
            // Removed: changed, and the reader keeps its open file.
            std::fs::remove_file(format!("{name}.db")).unwrap();
            assert!(r.changed());
            assert_eq!(get(&mut r, "c", 0).as_deref(), Some("5"));
        }
    }

    #[test]
    fn a_pass_checks_the_file_once_and_writers_wait_for_its_end() {
        use crate::dict::file::filelock::Pass;
        let dir = TempDir::new("db-pass");
        for t in TYPES {
            let name = build(&dir, t, t, "a 1\n");
            let mut r = open_with(t, &name, Mode::ReadOnly, LOCK).unwrap();
            let pass = Pass::begin();
            assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("1"));
            let mut writer = writer_elsewhere(t, &name, "a 2\n");
            std::thread::sleep(Duration::from_millis(300));
            assert!(writer.try_wait().unwrap().is_none(), "{t}: the writer waits for the pass's shared lock");
            assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("1"));
            drop(pass);
            wait_writer(writer);
            let _pass = Pass::begin();
            assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("2"), "{t}: the next pass sees the update");
        }
    }

    #[test]
    fn verify_verdicts_are_shared_through_the_data_directory() {
        let dir = TempDir::new("db-verdicts");
        let mut params = Params::default();
        params.set("data_directory", dir.path().to_str().unwrap());
        let verdicts = Verdicts::in_dir(dir.path());
        for t in TYPES {
            let name = build(&dir, t, t, "a 1\n");
            let db_path = format!("{name}.db");
            let meta = || std::fs::metadata(&db_path).unwrap();
            let mut d = open_in(t, &name, Mode::ReadOnly, LOCK, &params).unwrap();
            assert_eq!(get(&mut d, "a", LOCK).as_deref(), Some("1"));
            drop(d);
            assert!(verdicts.known(&db_path, &meta()), "{t}: verified once, remembered");
            // The next process opens it without a verify pass.
            let mut d = open_in(t, &name, Mode::ReadOnly, LOCK, &params).unwrap();
            assert_eq!(get(&mut d, "a", LOCK).as_deref(), Some("1"));
            drop(d);
            // A rebuilt file is a new file: verified (and remembered) again.
            rebuild(&dir, t, &name, "a 2\nb 3\n");
            assert!(!verdicts.known(&db_path, &meta()), "{t}: a rebuilt file is not known");
            let mut d = open_in(t, &name, Mode::ReadOnly, LOCK, &params).unwrap();
            assert_eq!(get(&mut d, "b", LOCK).as_deref(), Some("3"));
            drop(d);
            assert!(verdicts.known(&db_path, &meta()), "{t}: remembered after the rebuild");
            // A damaged file never gets a verdict.
            let bad = path_in(&dir, &format!("{t}-bad"));
            std::fs::write(format!("{bad}.db"), b"this is not a database\n").unwrap();
            assert!(open_in(t, &bad, Mode::ReadOnly, LOCK, &params).is_err());
            assert!(!verdicts.known(&format!("{bad}.db"), &std::fs::metadata(format!("{bad}.db")).unwrap()));
        }
    }
}
