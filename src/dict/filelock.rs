//! One lock per table file per process, the kind Postfix's myflock() takes:
//! flock() for Berkeley DB files, a whole-file fcntl() lock for LMDB.
//!
//! Leases. With LOCK in the request flags Postfix locks and unlocks the file
//! around every access: two system calls, plus a check for a changed file,
//! per lookup. A worker answers the requests that arrived together in one
//! event-loop pass; while a [`Pass`] is open on the thread, a shared lock
//! taken for a read is kept (leased) until the pass ends, so a batch of
//! lookups costs one lock, one unlock and one change check per file. A
//! writer (postmap, proxywrite) waits at most one pass longer.
//!
//! Nothing waits for a lock while this thread holds leases: a process waiting
//! for one of our leases could be what the lock we want waits for. Before an
//! exclusive lock, or a shared one that would block, the thread's leases end.
//!
//! Each lock lives on a descriptor of its own open file description, so
//! closing another descriptor of the same file never drops it: LMDB locks
//! use fcntl()'s open-file-description locks, which conflict with the
//! classic fcntl() locks of postmap and Postfix exactly as those do.

use crate::sync::lock;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};

/// Which system call locks the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Style {
    /// flock(): Berkeley DB (Postfix's MYFLOCK_STYLE_FLOCK).
    Flock,
    /// A whole-file fcntl() lock: LMDB (MYFLOCK_STYLE_FCNTL).
    Fcntl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Shared,
    Exclusive,
}

/// The lock state of one file in this process, shared by every table
/// instance that uses the file.
pub struct FileLock {
    file: File,
    style: Style,
    dev: u64,
    ino: u64,
    /// For log lines.
    name: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Instances holding the exclusive open lock (OPEN_LOCK); > 0 means the
    /// exclusive lock is held for them and per-access locks are skipped.
    persistent: usize,
    /// The shared lock is held as a lease with this number.
    lease: Option<u64>,
}

/// Lease numbers; 0 is never used, so a handle that has checked nothing yet
/// can remember 0.
static NEXT_LEASE: AtomicU64 = AtomicU64::new(1);

fn would_block(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EWOULDBLOCK) | Some(libc::EACCES))
}

/// A lock held for one access. While it lives, no other thread of this
/// process changes the file's lock state.
pub struct Held<'a> {
    _state: MutexGuard<'a, State>,
    /// Unlock when dropped (a lock for this access only).
    unlock: Option<&'a FileLock>,
    lease: Option<u64>,
}

impl Held<'_> {
    /// The lease this access runs under, if the lock is a lease. A table
    /// that checked its file for changes under this same lease need not check
    /// again: no other process can have written since.
    pub fn lease(&self) -> Option<u64> {
        self.lease
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(fl) = self.unlock {
            fl.unlock_logged();
        }
    }
}

#[derive(Default)]
struct Registry {
    files: HashMap<(u64, u64, Style, bool), Weak<FileLock>>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::default()));

impl FileLock {
    /// This process's lock for the file open on `fd`; `name` names it in log
    /// lines. A new one gets a duplicate of `fd` (the same open file
    /// description), which lives as long as the lock does.
    ///
    /// An fcntl() write lock needs a descriptor open for writing, so for that
    /// style read-only and read-write descriptors get separate locks (which
    /// conflict like two processes' locks; a worker process is either a
    /// reader or the writer, so they meet only in tests).
    pub fn for_fd(fd: BorrowedFd<'_>, style: Style, name: &str) -> std::io::Result<Arc<FileLock>> {
        let meta = nix::sys::stat::fstat(fd).map_err(std::io::Error::from)?;
        let writable = style == Style::Fcntl
            && nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL).map_err(std::io::Error::from)? & libc::O_ACCMODE
                != libc::O_RDONLY;
        let key = (meta.st_dev, meta.st_ino, style, writable);
        let mut reg = lock(&REGISTRY);
        if let Some(existing) = reg.files.get(&key).and_then(Weak::upgrade) {
            return Ok(existing);
        }
        reg.files.retain(|_, w| w.strong_count() > 0);
        let file = File::from(fd.try_clone_to_owned()?);
        let fl = Arc::new(FileLock {
            file,
            style,
            dev: key.0,
            ino: key.1,
            name: name.to_owned(),
            state: Mutex::new(State::default()),
        });
        reg.files.insert(key, Arc::downgrade(&fl));
        Ok(fl)
    }

    pub fn dev(&self) -> u64 {
        self.dev
    }

    pub fn ino(&self) -> u64 {
        self.ino
    }

    /// The descriptor the lock is on.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A lock for one access. A shared lock inside a [`Pass`] is a lease: it
    /// stays held until the pass ends, and later shared accesses in the pass
    /// take no lock of their own.
    pub fn hold(self: &Arc<Self>, kind: Kind) -> std::io::Result<Held<'_>> {
        if kind == Kind::Exclusive {
            end_leases();
        }
        let mut may_lease = kind == Kind::Shared && pass_open();
        loop {
            let mut st = lock(&self.state);
            if st.persistent > 0 {
                // Converting the open lock would weaken it; it covers us.
                return Ok(Held { _state: st, unlock: None, lease: None });
            }
            if let Some(lease) = st.lease {
                if kind == Kind::Shared {
                    return Ok(Held { _state: st, unlock: None, lease: Some(lease) });
                }
                // Another thread's lease; the exclusive lock replaces it.
                st.lease = None;
            }
            if may_lease {
                match self.set(Some(Kind::Shared), false) {
                    Ok(()) => {
                        let lease = NEXT_LEASE.fetch_add(1, Ordering::Relaxed);
                        st.lease = Some(lease);
                        keep(Arc::clone(self));
                        return Ok(Held { _state: st, unlock: None, lease: Some(lease) });
                    }
                    Err(e) if would_block(&e) => {
                        // Someone writes: wait without holding anything.
                        drop(st);
                        end_leases();
                        may_lease = false;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            self.set(Some(kind), true)?;
            return Ok(Held { _state: st, unlock: Some(self), lease: None });
        }
    }

    /// OPEN_LOCK: take the exclusive lock for the life of an instance,
    /// trying for about a second. Counted: released with the last instance.
    pub fn acquire_persistent(&self) -> std::io::Result<()> {
        end_leases();
        let mut st = lock(&self.state);
        if st.persistent == 0 {
            st.lease = None;
            let mut tries = 0;
            loop {
                match self.set(Some(Kind::Exclusive), false) {
                    Ok(()) => break,
                    Err(e) if would_block(&e) && tries < 10 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        st.persistent += 1;
        Ok(())
    }

    pub fn release_persistent(&self) {
        let mut st = lock(&self.state);
        st.persistent = st.persistent.saturating_sub(1);
        if st.persistent == 0 {
            self.unlock_logged();
        }
    }

    fn unlock_logged(&self) {
        if let Err(e) = self.set(None, false) {
            log::error!("{}: unlock dictionary: {}", self.name, super::postmap_text::io_error_text(&e));
        }
    }

    /// Lock (`Some`) or unlock (`None`), waiting for the lock if `wait`.
    fn set(&self, kind: Option<Kind>, wait: bool) -> std::io::Result<()> {
        loop {
            let r = match self.style {
                Style::Flock => {
                    let op = match kind {
                        Some(Kind::Shared) => libc::LOCK_SH,
                        Some(Kind::Exclusive) => libc::LOCK_EX,
                        None => libc::LOCK_UN,
                    } | if wait { 0 } else { libc::LOCK_NB };
                    flock(self.file.as_fd(), op)
                }
                Style::Fcntl => {
                    let l_type = match kind {
                        Some(Kind::Shared) => libc::F_RDLCK,
                        Some(Kind::Exclusive) => libc::F_WRLCK,
                        None => libc::F_UNLCK,
                    };
                    let spec = libc::flock {
                        l_type: l_type as libc::c_short,
                        l_whence: libc::SEEK_SET as libc::c_short,
                        l_start: 0,
                        l_len: 0,
                        l_pid: 0,
                    };
                    let arg = if wait {
                        nix::fcntl::FcntlArg::F_OFD_SETLKW(&spec)
                    } else {
                        nix::fcntl::FcntlArg::F_OFD_SETLK(&spec)
                    };
                    nix::fcntl::fcntl(self.file.as_fd(), arg).map(drop)
                }
            };
            match r {
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(std::io::Error::from(e)),
                Ok(()) => return Ok(()),
            }
        }
    }

    fn end_lease(&self) {
        let mut st = lock(&self.state);
        if st.lease.take().is_some() && st.persistent == 0 {
            self.unlock_logged();
        }
    }
}

#[allow(deprecated)] // nix::fcntl::flock: the Flock guard type would own the File
fn flock(fd: BorrowedFd<'_>, op: libc::c_int) -> nix::Result<()> {
    use nix::fcntl::FlockArg::*;
    let arg = match op {
        libc::LOCK_SH => LockShared,
        libc::LOCK_EX => LockExclusive,
        x if x == libc::LOCK_SH | libc::LOCK_NB => LockSharedNonblock,
        x if x == libc::LOCK_EX | libc::LOCK_NB => LockExclusiveNonblock,
        _ => Unlock,
    };
    nix::fcntl::flock(fd.as_raw_fd(), arg)
}

// ---------------------------------------------------------------------------
// Passes.

thread_local! {
    /// The leases of this thread's open pass; None while no pass is open.
    static LEASES: RefCell<Option<Vec<Arc<FileLock>>>> = const { RefCell::new(None) };
}

/// One event-loop pass: shared locks taken while it is open are kept until it
/// ends (dropped). Only the worker's loop opens passes; elsewhere (tests,
/// tools, other threads) every access locks and unlocks.
pub struct Pass {
    /// Only the outermost guard ends the pass.
    outer: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Pass {
    pub fn begin() -> Pass {
        let outer = LEASES.with(|l| {
            let mut l = l.borrow_mut();
            let outer = l.is_none();
            if outer {
                *l = Some(Vec::new());
            }
            outer
        });
        Pass { outer, _not_send: std::marker::PhantomData }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.outer {
            let held = LEASES.with(|l| l.borrow_mut().take());
            for fl in held.into_iter().flatten() {
                fl.end_lease();
            }
        }
    }
}

fn pass_open() -> bool {
    LEASES.with(|l| l.borrow().is_some())
}

fn keep(fl: Arc<FileLock>) {
    LEASES.with(|l| {
        if let Some(v) = l.borrow_mut().as_mut() {
            v.push(fl);
        }
    });
}

/// End this thread's leases now; the pass stays open.
pub fn end_leases() {
    let held = LEASES.with(|l| l.borrow_mut().as_mut().map(std::mem::take));
    for fl in held.into_iter().flatten() {
        fl.end_lease();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict::testutil::TempFile;

    /// Could another open file description lock the file `kind` right now?
    /// (Locks on different descriptions conflict even within a process.)
    fn free_for(path: &str, style: Style, kind: Kind) -> bool {
        let probe = lock_for_new_description(path, style);
        let ok = probe.set(Some(kind), false).is_ok();
        if ok {
            probe.set(None, false).expect("unlock");
        }
        ok
    }

    /// A lock on a description of its own, as another process would have.
    fn lock_for_new_description(path: &str, style: Style) -> FileLock {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open");
        FileLock { file: f, style, dev: 0, ino: 0, name: path.to_owned(), state: Mutex::new(State::default()) }
    }

    fn lock_for(path: &str, style: Style) -> Arc<FileLock> {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open");
        FileLock::for_fd(f.as_fd(), style, path).expect("lock")
    }

    #[test]
    fn outside_a_pass_each_access_locks_and_unlocks() {
        for style in [Style::Flock, Style::Fcntl] {
            let t = TempFile::new("filelock-plain", b"x");
            let fl = lock_for(t.name(), style);
            let held = fl.hold(Kind::Shared).expect("hold");
            assert_eq!(held.lease(), None);
            assert!(free_for(t.name(), style, Kind::Shared));
            assert!(!free_for(t.name(), style, Kind::Exclusive), "{style:?}: held");
            drop(held);
            assert!(free_for(t.name(), style, Kind::Exclusive), "{style:?}: released");
        }
    }

    #[test]
    fn a_pass_keeps_one_shared_lock_until_it_ends() {
        for style in [Style::Flock, Style::Fcntl] {
            let t = TempFile::new("filelock-pass", b"x");
            let fl = lock_for(t.name(), style);
            // Instances of the same file share the lock.
            assert!(Arc::ptr_eq(&fl, &lock_for(t.name(), style)));
            let pass = Pass::begin();
            let first = fl.hold(Kind::Shared).expect("hold").lease();
            assert!(first.is_some());
            assert!(!free_for(t.name(), style, Kind::Exclusive), "{style:?}: leased");
            let second = fl.hold(Kind::Shared).expect("hold").lease();
            assert_eq!(first, second, "one lease per pass");
            drop(pass);
            assert!(free_for(t.name(), style, Kind::Exclusive), "{style:?}: pass ended");
            let _pass = Pass::begin();
            let next = fl.hold(Kind::Shared).expect("hold").lease();
            assert!(next.is_some() && next != first, "a new pass, a new lease");
        }
    }

    #[test]
    fn an_exclusive_lock_ends_the_threads_leases_first() {
        for style in [Style::Flock, Style::Fcntl] {
            let (a, b) = (TempFile::new("filelock-a", b"x"), TempFile::new("filelock-b", b"x"));
            let (la, lb) = (lock_for(a.name(), style), lock_for(b.name(), style));
            let _pass = Pass::begin();
            drop(la.hold(Kind::Shared).expect("hold"));
            assert!(!free_for(a.name(), style, Kind::Exclusive));
            let held = lb.hold(Kind::Exclusive).expect("hold");
            assert_eq!(held.lease(), None);
            assert!(free_for(a.name(), style, Kind::Exclusive), "{style:?}: lease on a ended");
            drop(held);
            assert!(free_for(b.name(), style, Kind::Exclusive), "{style:?}: b unlocked after the access");
        }
    }

    #[test]
    fn waiting_for_a_writer_ends_the_threads_leases_first() {
        for style in [Style::Flock, Style::Fcntl] {
            let (a, b) = (TempFile::new("filelock-wa", b"x"), TempFile::new("filelock-wb", b"x"));
            let (la, lb) = (lock_for(a.name(), style), lock_for(b.name(), style));
            // A "writer" holds b exclusively until it sees a free to lock.
            let writer = lock_for_new_description(b.name(), style);
            writer.set(Some(Kind::Exclusive), false).expect("writer lock");
            let a_path = a.name().to_owned();
            let waiter = std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
                while !free_for(&a_path, style, Kind::Exclusive) {
                    assert!(std::time::Instant::now() < deadline, "lease on a never ended");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                writer.set(None, false).expect("writer unlock");
            });
            let _pass = Pass::begin();
            drop(la.hold(Kind::Shared).expect("hold a"));
            let held = lb.hold(Kind::Shared).expect("hold b");
            assert_eq!(held.lease(), None, "{style:?}: after waiting, a plain lock");
            drop(held);
            waiter.join().expect("waiter");
        }
    }

    #[test]
    fn the_open_lock_covers_accesses() {
        let t = TempFile::new("filelock-open", b"x");
        let fl = lock_for(t.name(), Style::Flock);
        fl.acquire_persistent().expect("open lock");
        let _pass = Pass::begin();
        let held = fl.hold(Kind::Shared).expect("hold");
        assert_eq!(held.lease(), None, "no lease under the open lock");
        drop(held);
        assert!(!free_for(t.name(), Style::Flock, Kind::Shared), "still exclusive");
        fl.release_persistent();
        assert!(free_for(t.name(), Style::Flock, Kind::Exclusive));
    }
}
