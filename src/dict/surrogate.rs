//! The stand-in for a table that failed to open: every access fails with
//! RETRY and logs `<type>:<name> is unavailable. <reason>`, as Postfix's
//! surrogate tables do; unlike Postfix, the line is repeated at most once a
//! minute, so a broken table does not flood the log with one line per request.

use super::{Cursor, Dict, DictError, DictResult};
use crate::protocol::flags::PATTERN;
use std::time::{Duration, Instant};

pub struct Surrogate {
    flags: u32,
    message: String,
    last_logged: Option<Instant>,
    /// Accesses since the line was last logged.
    quiet: u64,
}

/// How often the same surrogate repeats its warning.
const REPEAT: Duration = Duration::from_secs(60);

impl Surrogate {
    /// `open_flags`: the flags the open was attempted with.
    pub fn new(full_name: &str, reason: &str, open_flags: u32) -> Self {
        Surrogate {
            flags: open_flags | PATTERN,
            message: format!("{full_name} is unavailable. {reason}"),
            last_logged: None,
            quiet: 0,
        }
    }

    fn fail<T>(&mut self) -> DictResult<T> {
        let now = Instant::now();
        if self.last_logged.is_none_or(|t| now.duration_since(t) >= REPEAT) {
            if self.quiet > 0 {
                log::warn!("{} ({} more times)", self.message, self.quiet);
            } else {
                log::warn!("{}", self.message);
            }
            self.last_logged = Some(now);
            self.quiet = 0;
        } else {
            self.quiet += 1;
        }
        Err(DictError::Retry(self.message.clone()))
    }
}

impl Dict for Surrogate {
    fn flags(&self) -> u32 {
        self.flags
    }
    fn lookup(&mut self, _: &[u8], _: u32, _: &mut Vec<u8>) -> DictResult<bool> {
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
        assert_eq!(s.quiet, 7);
        s.last_logged = Some(Instant::now() - REPEAT);
        let _ = s.lookup(b"k", 0, &mut Vec::new());
        assert_eq!(s.quiet, 0);
    }
}
