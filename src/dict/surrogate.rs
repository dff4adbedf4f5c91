//! The stand-in for a table that failed to open: every access fails with
//! RETRY and logs `<type>:<name> is unavailable. <reason>`, as Postfix's
//! surrogate tables do; unlike Postfix, the line is repeated at most once a
//! minute, so a broken table does not flood the log with one line per request.

use super::{Cursor, Dict, DictError, DictResult, Waits};
use crate::protocol::flags::PATTERN;
use crate::sync::lock;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct Surrogate {
    flags: u32,
    message: String,
    log: Mutex<Logged>,
    /// For an open that failed for want of descriptors or memory: when
    /// the table is opened again (it reports itself changed). Postfix keeps
    /// the surrogate until the process ends, which for a worker with
    /// connection threads can be hours.
    reopen_at: Option<Instant>,
}

#[derive(Default)]
struct Logged {
    last: Option<Instant>,
    /// Accesses since the line was last logged.
    quiet: u64,
}

/// How often the same surrogate repeats its warning.
const REPEAT: Duration = Duration::from_secs(60);

impl Surrogate {
    /// `open_flags`: the flags the open was attempted with.
    pub(crate) fn new(full_name: &str, reason: &str, open_flags: u32) -> Self {
        Surrogate {
            flags: open_flags | PATTERN,
            message: format!("{full_name} is unavailable. {reason}"),
            log: Mutex::new(Logged::default()),
            reopen_at: None,
        }
    }

    /// The surrogate of an open that failed for a passing reason: the
    /// table is opened again once `after` has passed.
    pub(crate) fn reopen_after(self, after: Duration) -> Self {
        Surrogate { reopen_at: Some(Instant::now() + after), ..self }
    }

    fn fail<T>(&self) -> DictResult<T> {
        let now = Instant::now();
        let mut logged = lock(&self.log);
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

    #[test]
    fn every_access_fails_and_the_warning_is_rate_limited() {
        let mut s = Surrogate::new("hash:/x", "open database /x.db: No such file or directory", 0);
        assert_eq!(s.flags(), PATTERN);
        for _ in 0..5 {
            let r = s.lookup(b"k", 0, &mut Vec::new());
            assert_eq!(
                r,
                Err(DictError::Retry("hash:/x is unavailable. open database /x.db: No such file or directory".into()))
            );
        }
        assert!(matches!(s.update(b"k", b"v", 0), Err(DictError::Retry(_))));
        assert!(matches!(s.delete(b"k", 0), Err(DictError::Retry(_))));
        assert!(matches!(s.sequence(&mut None, true, 0), Err(DictError::Retry(_))));
        // logged once, then counted
        assert_eq!(s.log.lock().unwrap().quiet, 7);
        s.log.lock().unwrap().last = Some(Instant::now() - REPEAT);
        let _ = s.lookup(b"k", 0, &mut Vec::new());
        assert_eq!(s.log.lock().unwrap().quiet, 0);
    }
}
