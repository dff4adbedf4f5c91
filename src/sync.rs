//! Locking a `Mutex` the way every part of the daemon does.
//!
//! A panic while a lock was held is a bug in the code that held it. Its data
//! stays in use, as after a call that failed, so poisoning is ignored rather
//! than failing every later request.

use std::sync::{Mutex, MutexGuard, TryLockError};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The guard if nobody holds the lock just now.
pub fn try_lock<T>(m: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// Lock for the per-request path. Connection threads meet on a table's lock
/// for about a microsecond; sleeping in the kernel on each meeting (std's
/// mutex parks after a short spin) halved the threads' throughput in
/// measurements, so this polls longer and yields before it blocks.
pub fn lock_hot<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    const SPINS: u32 = 1000;
    const YIELDS: u32 = 1000;
    for i in 0..SPINS + YIELDS {
        if let Some(g) = try_lock(m) {
            return g;
        }
        if i < SPINS {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    lock(m)
}
