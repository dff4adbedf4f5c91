//! Locking a `Mutex` the way every part of the daemon does.
//!
//! A panic while a lock was held is a bug in the code that held it. Its data
//! stays in use, as after a call that failed, so poisoning is ignored rather
//! than failing every later request.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The data of a lock nobody else can hold (`&mut`).
pub(crate) fn get_mut<T>(m: &mut RwLock<T>) -> &mut T {
    m.get_mut().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// The read guard if no writer holds or waits for the lock just now.
pub(crate) fn try_read<T>(m: &RwLock<T>) -> Option<RwLockReadGuard<'_, T>> {
    match m.try_read() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The write guard if nobody holds the lock just now.
pub(crate) fn try_write<T>(m: &RwLock<T>) -> Option<RwLockWriteGuard<'_, T>> {
    match m.try_write() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

thread_local! {
    static NO_WAIT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// While alive, table accesses on this thread do not wait for a lock that
/// another thread or process holds: they fail with
/// [`crate::dict::DictError::WouldBlock`] instead, and the caller serves the
/// request where waiting is harmless (the worker's event loop hands the
/// connection to a thread of its own). Set by the service, on the event
/// loop, around lookups of tables that declared
/// [`crate::dict::Waits::OnContention`]: those tables honour it; tables that
/// may wait otherwise are not called there at all. Not `Send`: it is this
/// thread's.
pub(crate) struct NoWait {
    was: bool,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl NoWait {
    pub(crate) fn begin() -> NoWait {
        NoWait { was: NO_WAIT.with(|f| f.replace(true)), _not_send: std::marker::PhantomData }
    }
}

impl Drop for NoWait {
    fn drop(&mut self) {
        NO_WAIT.with(|f| f.set(self.was));
    }
}

/// Whether this thread must not wait for locks (see [`NoWait`]).
pub(crate) fn no_wait() -> bool {
    NO_WAIT.with(std::cell::Cell::get)
}

/// The read side; None only under [`NoWait`] when it is not free just now.
pub(crate) fn read_unless_busy<T>(m: &RwLock<T>) -> Option<RwLockReadGuard<'_, T>> {
    if no_wait() {
        try_read(m)
    } else {
        Some(read(m))
    }
}

/// The write side; None only under [`NoWait`] when it is not free just now.
pub(crate) fn write_unless_busy<T>(m: &RwLock<T>) -> Option<RwLockWriteGuard<'_, T>> {
    if no_wait() {
        try_write(m)
    } else {
        Some(write(m))
    }
}
