//! What tables ask of the threads that serve them, so that the worker needs
//! to know no table family: file tables keep the shared locks they take for
//! a batch of requests that an event loop serves together, and end the locks
//! that connection threads left behind (see [`super::file::filelock`]).

use super::file::filelock;
use std::time::Duration;

/// One event-loop pass over a batch of requests that arrived together:
/// locks taken for them are kept until the guard drops, before any wait.
pub(crate) fn loop_pass() -> filelock::Pass {
    filelock::Pass::begin()
}

/// After a loop pass: end the locks that connection threads no longer use.
/// Returns how soon the loop should look again (at most `idle`).
pub(crate) fn after_loop_pass(idle: Duration) -> Duration {
    if filelock::stale_leases_pending() {
        filelock::end_stale_leases();
    }
    next_check(idle)
}

/// How long the loop may sleep: a lock left by a connection thread must end
/// in time for a writer waiting for it.
pub(crate) fn next_check(idle: Duration) -> Duration {
    match filelock::stale_leases_pending() {
        true => filelock::LEASE_TICK.min(idle),
        false => idle,
    }
}

/// At the start of a connection thread: its requests are not batched in
/// loop passes, so shared file locks are leased to all threads and end when
/// idle.
pub(crate) fn on_connection_thread() {
    filelock::share_leases();
}
