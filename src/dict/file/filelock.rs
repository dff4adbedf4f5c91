//! One lock per table file per process, the kind Postfix's myflock() takes:
//! flock() for Berkeley DB files, a whole-file fcntl() lock for LMDB.
//!
//! Leases. With LOCK in the request flags Postfix locks and unlocks the file
//! around every access: two system calls, plus a check for a changed file,
//! per lookup. Here a shared lock taken for a read may be kept (leased) and
//! used by later reads of any thread in the process, which then cost no
//! lock and one change check per lease:
//!
//! * in the event loop, while a [`Pass`] is open (one batch of requests that
//!   arrived together): the lease ends with the pass;
//! * with connection threads ([`share_leases`]): the lease ends when no
//!   read uses it once it is [`LEASE_IDLE`] old, or by the worker's loop
//!   ([`end_stale_leases`]) when its last read left it younger; reads that
//!   overlap without a pause renew it after [`LEASE_AGE`].
//!
//! A writer (postmap, proxywrite) waits at most about one pass, or a
//! millisecond or two, longer. Reads under a lease run side by side (the read side of the
//! file's state lock); taking, ending or converting the lock takes the
//! write side, so no access is under way when the lock changes.
//!
//! Nothing waits for a lock while this thread holds pass leases: a process
//! waiting for one of our leases could be what the lock we want waits for.
//! Before an exclusive lock, or a shared one that would block, the thread's
//! pass leases end. Shared leases end by age whatever a thread waits for.
//!
//! Each lock lives on a descriptor of its own open file description, so
//! closing another descriptor of the same file never drops it: LMDB locks
//! use fcntl()'s open-file-description locks, which conflict with the
//! classic fcntl() locks of postmap and Postfix exactly as those do.

use crate::clock::{now_ns, since};
use crate::sync::{lock, read_unless_busy, write, write_unless_busy};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

/// Which system call locks the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Style {
    /// flock(): Berkeley DB (Postfix's MYFLOCK_STYLE_FLOCK).
    Flock,
    /// A whole-file fcntl() lock: LMDB (MYFLOCK_STYLE_FCNTL).
    Fcntl,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Shared,
    Exclusive,
}

/// The lock state of one file in this process, shared by every table
/// instance that uses the file.
pub(crate) struct FileLock {
    file: File,
    style: Style,
    dev: u64,
    ino: u64,
    /// For log lines.
    name: String,
    /// Read side: accesses under a lease or the open lock. Write side: a
    /// change of the lock, or an access with a lock of its own.
    state: RwLock<State>,
    /// A thread is renewing the lease: the others keep using the old one
    /// meanwhile rather than all queueing for the write side.
    renewing: AtomicBool,
    /// Reads under a shared lease in progress.
    readers: AtomicUsize,
}

#[derive(Default)]
struct State {
    /// Instances holding the exclusive open lock (OPEN_LOCK); > 0 means the
    /// exclusive lock is held for them and per-access locks are skipped.
    persistent: usize,
    /// The shared lock is held as a lease.
    lease: Option<Lease>,
}

#[derive(Clone, Copy)]
struct Lease {
    number: u64,
    /// [`now_ns`] when the lock was taken.
    taken: u64,
    /// Shared by threads and ended by age, not by a pass.
    shared: bool,
}

impl Lease {
    fn usable(&self, now: u64) -> bool {
        !self.shared || since(now, self.taken) < LEASE_AGE.as_nanos() as u64
    }

    /// A shared lease that may end when no read uses it.
    fn idle_may_end(&self, now: u64) -> bool {
        self.shared && since(now, self.taken) >= LEASE_IDLE.as_nanos() as u64
    }
}

/// Longest time a lease shared by connection threads is used while reads
/// overlap without a pause.
pub(crate) const LEASE_AGE: Duration = Duration::from_millis(10);
/// A shared lease this old ends as soon as no read uses it: a writer's
/// wait stays short, and busy readers still share one lock for a while.
/// (Longer in unit tests, which look at a young lease.)
pub(crate) const LEASE_IDLE: Duration =
    if cfg!(test) { Duration::from_millis(100) } else { Duration::from_micros(200) };
/// How often the worker's loop ([`end_stale_leases`]) must look.
pub(crate) const LEASE_TICK: Duration = Duration::from_millis(1);

/// Lease numbers; 0 is never used, so a handle that has checked nothing yet
/// can remember 0.
static NEXT_LEASE: AtomicU64 = AtomicU64::new(1);

fn would_block(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EWOULDBLOCK) | Some(libc::EACCES))
}

/// A lock held for one access. While it lives, no other thread of this
/// process changes the file's lock state.
pub(crate) struct Held<'a> {
    /// None only while being dropped.
    state: Option<Guard<'a>>,
    /// Unlock when dropped (a lock for this access only).
    unlock: Option<&'a FileLock>,
    lease: Option<u64>,
    /// A read under a shared lease, counted in the file's `readers`.
    reader: Option<&'a FileLock>,
}

#[allow(dead_code)] // held for its lifetime, never read
enum Guard<'a> {
    /// Under a lease or the open lock: other reads may run meanwhile.
    Shared(RwLockReadGuard<'a, State>),
    /// A lock of this access's own.
    Own(RwLockWriteGuard<'a, State>),
}

impl Held<'_> {
    /// The lease this access runs under, if the lock is a lease. A table
    /// that checked its file for changes under this same lease need not check
    /// again: no other process can have written since.
    pub(crate) fn lease(&self) -> Option<u64> {
        self.lease
    }
}

impl<'a> Held<'a> {
    fn covered(st: Guard<'a>) -> Held<'a> {
        Held { state: Some(st), unlock: None, lease: None, reader: None }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(fl) = self.unlock {
            // Still under the write side.
            fl.unlock_logged();
        }
        // The last read of an old lease ends it (looked at through this
        // read's own guard).
        let mut end = None;
        if let (Some(Guard::Shared(st)), Some(fl)) = (&self.state, self.reader) {
            if fl.readers.fetch_sub(1, Ordering::AcqRel) == 1 {
                let now = now_ns();
                end = st.lease.is_some_and(|l| l.idle_may_end(now)).then_some((fl, now));
            }
        }
        drop(self.state.take());
        if let Some((fl, now)) = end {
            fl.end_idle_lease(now);
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
    pub(crate) fn for_fd(fd: BorrowedFd<'_>, style: Style, name: &str) -> std::io::Result<Arc<FileLock>> {
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
            state: RwLock::new(State::default()),
            renewing: AtomicBool::new(false),
            readers: AtomicUsize::new(0),
        });
        reg.files.insert(key, Arc::downgrade(&fl));
        Ok(fl)
    }

    pub(crate) fn dev(&self) -> u64 {
        self.dev
    }

    pub(crate) fn ino(&self) -> u64 {
        self.ino
    }

    /// The descriptor the lock is on.
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// A lock for one access. A shared lock may be a lease (see the module
    /// documentation): later shared accesses take no lock of their own.
    /// Under [`crate::sync::NoWait`], a lock held elsewhere (by another
    /// process, or by a thread here that may be waiting for one) fails with
    /// `ErrorKind::WouldBlock` instead of waiting.
    pub(crate) fn hold(self: &Arc<Self>, kind: Kind) -> std::io::Result<Held<'_>> {
        if kind == Kind::Exclusive {
            end_leases();
        }
        let shared = SHARING.with(Cell::get);
        let wait = !crate::sync::no_wait();
        let busy = || std::io::Error::from(std::io::ErrorKind::WouldBlock);
        let mut may_lease = kind == Kind::Shared && (shared || pass_open());
        loop {
            if kind == Kind::Shared {
                let st = read_unless_busy(&self.state).ok_or_else(busy)?;
                if st.persistent > 0 {
                    // Converting the open lock would weaken it; it covers us.
                    return Ok(Held::covered(Guard::Shared(st)));
                }
                if let Some(lease) = st.lease {
                    let now = now_ns();
                    let renew = !lease.usable(now) && !self.renewing.swap(true, Ordering::Acquire);
                    if !renew {
                        let reader = lease.shared.then(|| {
                            self.readers.fetch_add(1, Ordering::AcqRel);
                            &**self
                        });
                        return Ok(Held {
                            state: Some(Guard::Shared(st)),
                            unlock: None,
                            lease: Some(lease.number),
                            reader,
                        });
                    }
                }
            }
            let Some(mut st) = write_unless_busy(&self.state) else {
                // Leave the renewal, if it was ours, to another access.
                self.renewing.store(false, Ordering::Release);
                return Err(busy());
            };
            self.renewing.store(false, Ordering::Release);
            if st.persistent > 0 {
                if kind == Kind::Shared {
                    continue;
                }
                return Ok(Held::covered(Guard::Own(st)));
            }
            if let Some(lease) = st.lease {
                if kind == Kind::Shared && lease.usable(now_ns()) {
                    // Another thread took it meanwhile.
                    continue;
                }
                // Too old, or an exclusive lock replaces it.
                st.lease = None;
                if kind == Kind::Shared {
                    self.unlock_logged();
                }
            }
            if may_lease {
                match self.set(Some(Kind::Shared), false) {
                    Ok(()) => {
                        let number = NEXT_LEASE.fetch_add(1, Ordering::Relaxed);
                        st.lease = Some(Lease { number, taken: now_ns(), shared });
                        if shared {
                            let mut stale = lock(&STALE);
                            if !stale.iter().any(|fl| Arc::ptr_eq(fl, self)) {
                                stale.push(Arc::clone(self));
                            }
                        } else {
                            keep(Arc::clone(self));
                        }
                        continue;
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
            match self.set(Some(kind), wait) {
                Err(e) if !wait && would_block(&e) => return Err(busy()),
                r => r?,
            }
            return Ok(Held { state: Some(Guard::Own(st)), unlock: Some(self), lease: None, reader: None });
        }
    }

    /// OPEN_LOCK: take the exclusive lock for the life of an instance,
    /// trying for about a second. Counted: released with the last instance.
    pub(crate) fn acquire_persistent(&self) -> std::io::Result<()> {
        end_leases();
        let mut st = write(&self.state);
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

    pub(crate) fn release_persistent(&self) {
        let mut st = write(&self.state);
        st.persistent = st.persistent.saturating_sub(1);
        if st.persistent == 0 {
            self.unlock_logged();
        }
    }

    fn unlock_logged(&self) {
        if let Err(e) = self.set(None, false) {
            log::error!("{}: unlock dictionary: {}", self.name, crate::sys::errno::io_error_text(&e));
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
        let mut st = write(&self.state);
        if st.lease.take().is_some() && st.persistent == 0 {
            self.unlock_logged();
        }
    }

    /// End a shared lease that no read uses, once it is [`LEASE_IDLE`] old,
    /// unless an access holds the state just now. True when no lease is left.
    fn end_if_idle(&self, now: u64) -> bool {
        // Looked at first without keeping reads out.
        match crate::sync::try_read(&self.state).map(|st| st.lease.map(|l| l.idle_may_end(now))) {
            Some(Some(false)) | None => false,
            Some(None) => true,
            Some(Some(true)) => self.end_idle_lease(now),
        }
    }

    /// [`FileLock::end_if_idle`] once a look found the lease idle.
    fn end_idle_lease(&self, now: u64) -> bool {
        let Some(mut st) = crate::sync::try_write(&self.state) else { return false };
        match st.lease {
            Some(l) if l.idle_may_end(now) => {
                st.lease = None;
                if st.persistent == 0 {
                    self.unlock_logged();
                }
                true
            }
            Some(_) => false,
            None => true,
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
pub(crate) struct Pass {
    /// Only the outermost guard ends the pass.
    outer: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Pass {
    pub(crate) fn begin() -> Pass {
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

/// Files with a lease shared by threads, for [`end_stale_leases`].
static STALE: Mutex<Vec<Arc<FileLock>>> = Mutex::new(Vec::new());
/// Some thread called [`share_leases`].
static ANY_SHARING: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This thread takes leases to share ([`share_leases`]).
    static SHARING: Cell<bool> = const { Cell::new(false) };
}

/// From now on the shared leases this thread takes are for every thread of
/// the process and end when idle or by age instead of with a pass. For
/// connection threads, whose requests are not batched in passes; the process
/// must then call [`end_stale_leases`] every [`LEASE_TICK`] while
/// [`stale_leases_pending`] says so.
pub(crate) fn share_leases() {
    SHARING.with(|s| s.set(true));
    ANY_SHARING.store(true, Ordering::Relaxed);
}

/// End the shared leases that no read uses (skipping a file whose state an
/// access holds just now: it is tried at the next call).
pub(crate) fn end_stale_leases() {
    let now = now_ns();
    let files = std::mem::take(&mut *lock(&STALE));
    let mut left: Vec<Arc<FileLock>> = files.into_iter().filter(|fl| !fl.end_if_idle(now)).collect();
    let mut stale = lock(&STALE);
    // Leases taken meanwhile were pushed; keep one entry per file.
    for fl in stale.drain(..) {
        if !left.iter().any(|l| Arc::ptr_eq(l, &fl)) {
            left.push(fl);
        }
    }
    *stale = left;
}

/// Are there shared leases that [`end_stale_leases`] must end in time?
pub(crate) fn stale_leases_pending() -> bool {
    ANY_SHARING.load(Ordering::Relaxed) && !lock(&STALE).is_empty()
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
pub(crate) fn end_leases() {
    let held = LEASES.with(|l| l.borrow_mut().as_mut().map(std::mem::take));
    for fl in held.into_iter().flatten() {
        fl.end_lease();
    }
}

#[cfg(test)]
mod tests;
