//! The state of one file's Berkeley DB handle in a process: the handle,
//! what it was opened as, its direct page reader, and what must happen
//! before its next use (a re-open after an error, a flush after a write
//! that failed for want of space).

use super::verify::{ReaderHandle, Verification};
use super::{code_text, Stamp};
use crate::dict::file::hash_pages::HashPages;
use crate::dict::{DictError, DictResult, Mode};
use crate::sys::db::{Code, Db, Dbc};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) struct DbState {
    pub(super) db: Db,
    pub(super) mode: Mode,
    /// Read-only hash files: lookups read the file's pages directly.
    pub(super) pages: Option<HashPages>,
    /// The verify pass of a big file, while it runs on its own thread
    /// (see `verify`): `db` is not used until it ends.
    pub(super) verifying: Option<Arc<Verification>>,
    /// The last pass found the file damaged: the next open checks it
    /// before use (and fails), rather than serve it meanwhile again.
    pub(super) failed_pass: bool,
    /// The file as it was just before `db` was opened.
    pub(super) stamp: Option<Stamp>,
    /// An operation failed: open a fresh handle before the next one.
    pub(super) broken: AtomicBool,
    /// The writer's last write failed for want of space: its pages are
    /// still in Berkeley DB's cache and are written (sync) before the next
    /// operation, rather than dropped with the handle, which would leave
    /// the file with half a page split and lose earlier acknowledged keys.
    pub(super) unsynced: AtomicBool,
    /// When an unsynced handle's failing flush was last logged.
    pub(super) unsynced_logged: Option<Instant>,
    /// Replaced handles kept for the cursors still open on them.
    pub(super) retired: Vec<Db>,
    /// Open cursors per handle id.
    pub(super) cursors: HashMap<u64, usize>,
    /// The file lock lease under which `stamp` was last compared with the
    /// file (0: none).
    pub(super) checked_lease: AtomicU64,
    /// When the path (not just the open file) was last compared.
    pub(super) path_checked: Instant,
}

impl DbState {
    pub(super) fn replace(&mut self, handle: ReaderHandle, mode: Mode, stamp: Option<Stamp>) {
        let old = std::mem::replace(&mut self.db, handle.db);
        if self.cursors.get(&old.id()).copied().unwrap_or(0) > 0 {
            self.retired.push(old);
        }
        self.mode = mode;
        self.pages = handle.pages;
        self.verifying = handle.verifying;
        self.failed_pass = false;
        self.stamp = stamp;
        *self.broken.get_mut() = false;
        *self.unsynced.get_mut() = false;
    }

    /// Nothing to re-open or check before an access under `lease`: the
    /// handle works and (with `refresh`) the file was checked in this lease.
    pub(super) fn current(&self, refresh: bool, lease: Option<u64>) -> bool {
        let checked = lease.is_some_and(|l| l == self.checked_lease.load(Ordering::Relaxed));
        (checked || !refresh) && !self.broken.load(Ordering::Relaxed) && !self.unsynced.load(Ordering::Relaxed)
    }

    /// Look `key` up: in the pages when they are read directly (a page
    /// that does not look right turns that off until the next re-open, with
    /// one warning), else through Berkeley DB.
    pub(super) fn get(&mut self, path: &str, key: &[u8], out: &mut Vec<u8>, lease: Option<u64>) -> Result<bool, Code> {
        if let Some(pages) = self.pages.as_ref() {
            match pages.get(key, out, lease) {
                Ok(found) => return Ok(found),
                // Berkeley DB may not read a file before its pass ends.
                Err(e) if self.verifying.is_some() => {
                    log::warn!("{path}: {e}");
                    return Err(libc::EIO);
                }
                Err(e) => {
                    log::warn!("{path}: {e}: reading it through Berkeley DB");
                    self.pages = None;
                }
            }
        }
        self.db.get(key, out)
    }

    pub(super) fn new_cursor(&mut self) -> Result<Dbc, Code> {
        let c = self.db.cursor()?;
        *self.cursors.entry(c.owner()).or_insert(0) += 1;
        Ok(c)
    }

    pub(super) fn db_of(&mut self, c: &Dbc) -> Option<&mut Db> {
        if self.db.id() == c.owner() {
            return Some(&mut self.db);
        }
        self.retired.iter_mut().find(|d| d.id() == c.owner())
    }

    pub(super) fn close_cursor(&mut self, c: Dbc) {
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
pub(super) fn fail(st: &DbState, msg: String) -> DictError {
    log::error!("{msg}");
    st.broken.store(true, Ordering::Relaxed);
    DictError::Retry(msg)
}

/// A failed write: for want of space the handle is kept, its cached pages
/// to be flushed before the next operation; any other error as [`fail`].
pub(super) fn fail_write(st: &mut DbState, code: Code, msg: String) -> DictError {
    if !matches!(code, libc::ENOSPC | libc::EDQUOT | libc::EFBIG) {
        return fail(st, msg);
    }
    log::error!("{msg}");
    st.unsynced.store(true, Ordering::Relaxed);
    st.unsynced_logged = Some(Instant::now());
    DictError::Retry(msg)
}

/// How often a flush that keeps failing for want of space is logged.
const UNSYNCED_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Write what a write that failed for want of space left in the cache;
/// until that works every operation is RETRY.
pub(super) fn flush_unsynced(path: &str, st: &mut DbState) -> DictResult<()> {
    if !st.unsynced.load(Ordering::Relaxed) {
        return Ok(());
    }
    match st.db.sync() {
        Ok(()) => {
            st.unsynced.store(false, Ordering::Relaxed);
            log::info!("{path}: flushed the updates held since the file system was full");
            Ok(())
        }
        Err(c) => {
            let msg = format!("{path}: flush dictionary: {}", code_text(c));
            if st.unsynced_logged.is_none_or(|t| t.elapsed() >= UNSYNCED_LOG_INTERVAL) {
                log::error!("{msg}");
                st.unsynced_logged = Some(Instant::now());
            }
            Err(DictError::Retry(msg))
        }
    }
}
