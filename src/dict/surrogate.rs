//! The stand-in for a table that failed to open: every access fails with
//! RETRY and logs `<type>:<name> is unavailable. <reason>`, as Postfix's
//! surrogate tables do; unlike Postfix, the line is repeated at most once a
//! minute, so a broken table does not flood the log with one line per request.
//!
//! An outage of a table is one episode for the log, however many surrogates
//! it takes (an open that may succeed later is tried again, each failure a
//! new surrogate): the `error:` line of the failed open is logged when the
//! reason is new, the warning at most once a minute, and one line when the
//! table opens again.

use super::{Cursor, Dict, DictError, DictResult, Waits};
use crate::protocol::flags::PATTERN;
use crate::sync::lock;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

pub(crate) struct Surrogate {
    flags: u32,
    /// The key of the outage in [`OUTAGES`].
    key: String,
    /// What this stand-in logged, when its open is not tried again (each
    /// such stand-in warns as Postfix's does, once a minute here).
    own: Mutex<Logged>,
    message: String,
    /// For an open that may succeed later (want of descriptors or memory,
    /// access refused): when the table is opened again (it reports itself
    /// changed). Postfix keeps the surrogate until the process ends, which
    /// for a worker with connection threads, or a proxywrite whose client
    /// never disconnects, can be hours.
    reopen_at: Option<Instant>,
}

/// What was logged about one table's outage.
#[derive(Default)]
struct Logged {
    /// The reason of the last failed open, when it is tried again.
    reason: String,
    last: Option<Instant>,
    /// Accesses since the warning was last logged.
    quiet: u64,
}

/// Tables of this process that failed to open, by [`outage_key`].
static OUTAGES: LazyLock<Mutex<HashMap<String, Logged>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// How often the same surrogate repeats its warning.
const REPEAT: Duration = Duration::from_secs(60);

/// One instance of a table (as Postfix's: name and open flags), so that
/// each instance's stand-in logs as Postfix's does.
fn outage_key(full_name: &str, open_flags: u32) -> String {
    format!("{full_name} {open_flags:x}")
}

/// An open of `full_name` failed for `reason`: log it, unless it is a
/// retried open failing as the one before (an open that is not retried is
/// logged each time, as Postfix logs each dict_open()).
pub(crate) fn open_failed(full_name: &str, open_flags: u32, reason: &str, retried: bool) {
    let mut outages = lock(&OUTAGES);
    let logged = outages.entry(outage_key(full_name, open_flags)).or_default();
    if logged.reason != reason {
        log::error!("{reason}");
    }
    logged.reason = if retried { reason.to_owned() } else { String::new() };
}

/// `full_name` opened: an outage it had is over (one line says so).
pub(crate) fn opened(full_name: &str, open_flags: u32) {
    let mut outages = lock(&OUTAGES);
    if outages.is_empty() {
        return;
    }
    if let Some(logged) = outages.remove(&outage_key(full_name, open_flags)) {
        log::info!("{full_name} is available again ({} requests refused since last logged)", logged.quiet);
    }
}

impl Surrogate {
    /// `open_flags`: the flags the open was attempted with.
    pub(crate) fn new(full_name: &str, reason: &str, open_flags: u32) -> Self {
        Surrogate {
            flags: open_flags | PATTERN,
            key: outage_key(full_name, open_flags),
            own: Mutex::new(Logged::default()),
            message: format!("{full_name} is unavailable. {reason}"),
            reopen_at: None,
        }
    }

    /// The surrogate of an open that may succeed later: the table is
    /// opened again once `after` has passed.
    pub(crate) fn reopen_after(self, after: Duration) -> Self {
        Surrogate { reopen_at: Some(Instant::now() + after), ..self }
    }

    fn fail<T>(&self) -> DictResult<T> {
        let now = Instant::now();
        // A stand-in whose open is tried again logs for the whole outage.
        let mut outages;
        let mut own;
        let logged = if self.reopen_at.is_some() {
            outages = lock(&OUTAGES);
            outages.entry(self.key.clone()).or_default()
        } else {
            own = lock(&self.own);
            &mut *own
        };
        if logged.last.is_none_or(|t| now.duration_since(t) >= REPEAT) {
            if logged.quiet > 0 {
                log::warn!("{} ({} more times)", self.message, logged.quiet);
            } else {
                log::warn!("{}", self.message);
            }
            logged.last = Some(now);
            logged.quiet = 0;
        } else {
            logged.quiet += 1;
        }
        Err(DictError::Retry(self.message.clone()))
    }
}

impl Dict for Surrogate {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        Waits::Never
    }
    fn changed(&self) -> bool {
        self.reopen_at.is_some_and(|t| Instant::now() >= t)
    }
    fn reopens(&self) -> bool {
        self.reopen_at.is_some()
    }
    fn lookup(&self, _: &[u8], _: u32, _: &mut Vec<u8>) -> DictResult<bool> {
        self.fail()
    }
    fn update(&mut self, _: &[u8], _: &[u8], _: u32) -> DictResult<bool> {
        self.fail()
    }
    fn delete(&mut self, _: &[u8], _: u32) -> DictResult<bool> {
        self.fail()
    }
    fn sequence(&mut self, _: &mut Option<Cursor>, _: bool, _: u32) -> DictResult<Option<(Vec<u8>, Vec<u8>)>> {
        self.fail()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet(name: &str) -> u64 {
        lock(&OUTAGES).get(&outage_key(name, 0)).map_or(0, |l| l.quiet)
    }

    #[test]
    fn every_access_fails_and_the_warning_is_rate_limited() {
        let mut s = Surrogate::new("hash:/x", "open database /x.db: Permission denied", 0).reopen_after(REPEAT);
        assert_eq!(s.flags(), PATTERN);
        for _ in 0..5 {
            let r = s.lookup(b"k", 0, &mut Vec::new());
            assert_eq!(
                r,
                Err(DictError::Retry("hash:/x is unavailable. open database /x.db: Permission denied".into()))
            );
        }
        assert!(matches!(s.update(b"k", b"v", 0), Err(DictError::Retry(_))));
        assert!(matches!(s.delete(b"k", 0), Err(DictError::Retry(_))));
        assert!(matches!(s.sequence(&mut None, true, 0), Err(DictError::Retry(_))));
        // logged once, then counted
        assert_eq!(quiet("hash:/x"), 7);
        // A second surrogate of the same outage (an open retried) counts on.
        let again = Surrogate::new("hash:/x", "open database /x.db: Permission denied", 0).reopen_after(REPEAT);
        let _ = again.lookup(b"k", 0, &mut Vec::new());
        assert_eq!(quiet("hash:/x"), 8);
        if let Some(l) = lock(&OUTAGES).get_mut(&outage_key("hash:/x", 0)) {
            l.last = Some(Instant::now() - REPEAT);
        }
        let _ = s.lookup(b"k", 0, &mut Vec::new());
        assert_eq!(quiet("hash:/x"), 0);
        opened("hash:/x", 0);
        assert!(!lock(&OUTAGES).contains_key(&outage_key("hash:/x", 0)), "the outage ends when the table opens");
    }
}
