//! Locking a `Mutex` the way every part of the daemon does.
//!
//! A panic while a lock was held is a bug in the code that held it. Its data
//! stays in use, as after a call that failed, so poisoning is ignored rather
//! than failing every later request.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

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

/// The data of a lock nobody else can hold (`&mut`).
pub fn get_mut<T>(m: &mut RwLock<T>) -> &mut T {
    m.get_mut().unwrap_or_else(|e| e.into_inner())
}

pub fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

pub fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// The read guard if no writer holds or waits for the lock just now.
pub fn try_read<T>(m: &RwLock<T>) -> Option<RwLockReadGuard<'_, T>> {
    match m.try_read() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}

/// The write guard if nobody holds the lock just now.
pub fn try_write<T>(m: &RwLock<T>) -> Option<RwLockWriteGuard<'_, T>> {
    match m.try_write() {
        Ok(g) => Some(g),
        Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
        Err(TryLockError::WouldBlock) => None,
    }
}
