//! The lookups' buffers: each lookup borrows a set (key copies, rule-set
//! candidates and DFA caches, the engine's match data) from its table's
//! pool and gives it back when done, even if it panics.

use super::engine::Engine;
use crate::sync::lock;
use std::sync::Mutex;

/// Buffers for as many lookups at once as the machine has CPUs; more
/// lookups wait for a set. The lazy DFA caches grow to megabytes with
/// thousands of rules and warm up with use: a set per connection thread
/// made 64 connections to a 5,000-rule table slower than one.
pub(super) struct Pool<E: Engine> {
    state: Mutex<PoolState<E>>,
    freed: std::sync::Condvar,
}

struct PoolState<E: Engine> {
    idle: Vec<Scratch<E>>,
    made: usize,
}

/// A buffer set on loan to one lookup, given back even if it panics (else
/// the pool would shrink and lookups could wait forever).
pub(super) struct Lent<'a, E: Engine> {
    pool: &'a Pool<E>,
    scratch: Option<Scratch<E>>,
}

impl<E: Engine> Drop for Lent<'_, E> {
    fn drop(&mut self) {
        if let Some(s) = self.scratch.take() {
            lock(&self.pool.state).idle.push(s);
            self.pool.freed.notify_one();
        }
    }
}

/// Most buffer sets per table.
pub(super) fn pool_size() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
}

/// What one lookup writes: reused across lookups, never shared by two at
/// once.
pub(super) struct Scratch<E: Engine> {
    /// The key (folded if asked), NUL-terminated.
    pub(super) subject: Vec<u8>,
    /// The key lowercased, for the literal prefilter.
    pub(super) lower: Vec<u8>,
    /// The rules the set reported for the current key, sorted.
    pub(super) cand: Vec<usize>,
    /// Per rule-set group: its lazy DFA's state cache (None for a group
    /// whose DFA is built in full).
    pub(super) caches: Vec<Option<regex_automata::hybrid::dfa::Cache>>,
    pub(super) engine: E::Scratch,
}

impl<E: Engine> Pool<E> {
    pub(super) fn new() -> Pool<E> {
        Pool { state: Mutex::new(PoolState { idle: Vec::new(), made: 0 }), freed: std::sync::Condvar::new() }
    }

    /// An idle buffer set, a new one from `make` while fewer than
    /// [`pool_size`] exist, or the next one freed.
    pub(super) fn lend(&self, make: impl FnOnce() -> Scratch<E>) -> Lent<'_, E> {
        let mut st = lock(&self.state);
        loop {
            match take(&mut st) {
                Take::Idle(s) => return Lent { pool: self, scratch: Some(s) },
                Take::Make => {
                    // Made without the pool's lock: a set takes a while to build.
                    drop(st);
                    return Lent { pool: self, scratch: Some(make()) };
                }
                Take::AllLent => st = self.freed.wait(st).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// As [`Pool::lend`], but None rather than wait for a set that another
    /// thread has (an event loop must not wait).
    pub(super) fn try_lend(&self, make: impl FnOnce() -> Scratch<E>) -> Option<Lent<'_, E>> {
        let taken = take(&mut lock(&self.state));
        match taken {
            Take::Idle(s) => Some(Lent { pool: self, scratch: Some(s) }),
            Take::Make => Some(Lent { pool: self, scratch: Some(make()) }),
            Take::AllLent => None,
        }
    }

    /// Buffer sets made so far.
    #[cfg(test)]
    pub(super) fn made(&self) -> usize {
        lock(&self.state).made
    }

    /// Bytes held by the lazy DFA caches of the idle buffer sets.
    #[cfg(test)]
    pub(super) fn idle_cache_bytes(&self) -> usize {
        lock(&self.state).idle.iter().flat_map(|s| &s.caches).flatten().map(|c| c.memory_usage()).sum()
    }
}

enum Take<E: Engine> {
    Idle(Scratch<E>),
    /// Fewer than the pool's size exist: the caller makes one (counted).
    Make,
    AllLent,
}

fn take<E: Engine>(st: &mut PoolState<E>) -> Take<E> {
    if let Some(s) = st.idle.pop() {
        Take::Idle(s)
    } else if st.made < pool_size() {
        st.made += 1;
        Take::Make
    } else {
        Take::AllLent
    }
}

impl<E: Engine> Lent<'_, E> {
    /// The buffers (there until the loan ends).
    pub(super) fn scratch(&mut self) -> Option<&mut Scratch<E>> {
        self.scratch.as_mut()
    }
}

impl<E: Engine> Scratch<E> {
    /// Empty buffers with the set's DFA caches and the engine's match data.
    pub(super) fn new(caches: Vec<Option<regex_automata::hybrid::dfa::Cache>>, engine: E::Scratch) -> Scratch<E> {
        Scratch { subject: Vec::new(), lower: Vec::new(), cand: Vec::new(), caches, engine }
    }
}
