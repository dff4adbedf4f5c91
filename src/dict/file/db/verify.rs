//! A reader's verify pass over a big hash file, on a thread of its own.
//!
//! The verify pass reads the whole file (8.8 s for an 875 MB one). Run
//! before the first lookup, it held every client of the table for that
//! long after each rebuild. A read-only hash handle does not need Berkeley
//! DB for lookups: the direct page reader (`hash_pages`) bounds-checks
//! every page it reads, so lookups are answered from the pages while the
//! pass runs. What does use Berkeley DB's handle (a lookup the page reader
//! gives up on, `sequence`) waits for the pass; a file that fails it is
//! treated as one that failed at open: the handle is re-opened, and the
//! damage reported, at its next use.

use super::handle::{direct_pages, open_handle, open_unverified, verify_due, verify_pass, HandleSettings};
use crate::dict::file::hash_pages::HashPages;
use crate::dict::file::verified::unchanged;
use crate::dict::{Mode, OpenError};
use crate::sync::lock;
use crate::sys::db::{Db, DbType};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

/// Smaller files are verified before their first use, as before: their
/// pass is short (about 75 ms for 10 MB), and a damaged one is reported
/// at once.
const IN_BACKGROUND_FROM: u64 = 32 << 20;

/// How a pass that ran on its own thread ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Outcome {
    Passed,
    /// The file, unchanged during the pass, is damaged (and was reported).
    Damaged,
    /// The pass failed on a file written meanwhile: no verdict.
    Changed,
}

/// The outcome of a verify pass running on its own thread.
pub(super) struct Verification {
    /// None while the pass runs.
    outcome: Mutex<Option<Outcome>>,
    settled: Condvar,
    /// For lookups, which only look: set when the file failed.
    failed: AtomicBool,
}

impl Verification {
    fn new() -> Verification {
        Verification { outcome: Mutex::new(None), settled: Condvar::new(), failed: AtomicBool::new(false) }
    }

    fn settle(&self, outcome: Outcome) {
        self.failed.store(outcome != Outcome::Passed, Ordering::Relaxed);
        *lock(&self.outcome) = Some(outcome);
        self.settled.notify_all();
    }

    /// The file failed the pass (its pages are not to be trusted either).
    pub(super) fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// How the pass ended, if it has.
    pub(super) fn ended(&self) -> Option<Outcome> {
        *lock(&self.outcome)
    }

    /// Wait for the pass to end.
    pub(super) fn wait(&self) -> Outcome {
        let mut outcome = lock(&self.outcome);
        loop {
            if let Some(ended) = *outcome {
                return ended;
            }
            outcome = self.settled.wait(outcome).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A reader's handle: Berkeley DB's, the direct page reader, and the verify
/// pass still running on the file, if any.
pub(super) struct ReaderHandle {
    pub(super) db: Db,
    pub(super) pages: Option<HashPages>,
    pub(super) verifying: Option<Arc<Verification>>,
}

/// Open a read-only handle; with `verify`, the verify pass of a big hash
/// file runs on a thread of its own (unless `now`: a file that failed its
/// pass is checked again before use, and reported damaged at once).
///
/// That pass takes no file lock: held for seconds, it would stop the
/// file's writer, and this process's lookups renewing their lock lease,
/// for as long. A write during the pass changes the file's ctime: a pass
/// that then fails says nothing (the handle is re-opened on the changed
/// file and a new pass runs), and one that passes is not remembered.
pub(super) fn open_reader(
    db_path: &str,
    ty: DbType,
    settings: &HandleSettings,
    verify: bool,
    now: bool,
) -> Result<ReaderHandle, OpenError> {
    let pages = direct_pages(db_path, ty, Mode::ReadOnly);
    let due = verify.then(|| verify_due(db_path, settings)).flatten();
    let background = !now && pages.is_some() && due.as_ref().is_some_and(|m| in_background(db_path, m.len()));
    let Some(before) = due.filter(|_| background) else {
        let db = open_handle(db_path, ty, Mode::ReadOnly, settings, verify)?;
        return Ok(ReaderHandle { db, pages, verifying: None });
    };
    let db = open_unverified(db_path, ty, Mode::ReadOnly, settings)?;
    let verification = Arc::new(Verification::new());
    let (path, own, v) = (db_path.to_owned(), settings.clone(), Arc::clone(&verification));
    let spawned = std::thread::Builder::new().name("pm-verify".into()).spawn(move || {
        test_gate::wait(&path);
        let outcome = match open_unverified(&path, ty, Mode::ReadOnly, &own) {
            Ok(mut db) => match verify_pass(&mut db, &path, &own, &before) {
                Ok(()) => Outcome::Passed,
                Err(damage) if std::fs::metadata(&path).is_ok_and(|now| unchanged(&before, &now)) => {
                    let _ = damage.report(&path);
                    Outcome::Damaged
                }
                Err(_) => Outcome::Changed,
            },
            Err(_) => Outcome::Changed,
        };
        v.settle(outcome);
    });
    match spawned {
        Ok(_) => Ok(ReaderHandle { db, pages, verifying: Some(verification) }),
        // No thread to be had: the pass runs here, as for a small file.
        Err(_) => {
            let db = open_handle(db_path, ty, Mode::ReadOnly, settings, verify)?;
            Ok(ReaderHandle { db, pages, verifying: None })
        }
    }
}

fn in_background(db_path: &str, size: u64) -> bool {
    size >= IN_BACKGROUND_FROM || test_gate::registered(db_path)
}

/// Tests hold a file's background pass until they release it, and may
/// send a small file to the background.
#[cfg(test)]
pub(super) mod test_gate {
    use crate::sync::lock;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// Path -> held.
    static GATES: Mutex<Option<HashMap<String, bool>>> = Mutex::new(None);

    pub(in crate::dict::file::db) fn hold(path: &str) {
        lock(&GATES).get_or_insert_with(HashMap::new).insert(path.to_owned(), true);
    }

    pub(in crate::dict::file::db) fn release(path: &str) {
        lock(&GATES).get_or_insert_with(HashMap::new).insert(path.to_owned(), false);
    }

    pub(super) fn registered(path: &str) -> bool {
        lock(&GATES).as_ref().is_some_and(|g| g.contains_key(path))
    }

    pub(super) fn wait(path: &str) {
        while lock(&GATES).as_ref().is_some_and(|g| g.get(path) == Some(&true)) {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

#[cfg(not(test))]
mod test_gate {
    pub(super) fn registered(_: &str) -> bool {
        false
    }

    pub(super) fn wait(_: &str) {}
}
