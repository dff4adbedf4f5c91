//! Pausing `accept()` after it fails for want of resources (EMFILE, ENFILE,
//! ENOBUFS, ENOMEM). The listening socket stays readable, so a loop that
//! simply tried again would spin at full speed and log an error per turn;
//! instead the listeners are left alone for a while (250 ms, doubling while
//! the failures go on, at most 8 s) and one line is logged per pause. A
//! connection accepted resets the pause. Both the worker's loop (listening
//! sockets from master(8)) and our standalone master use it.

use std::time::{Duration, Instant};

const FIRST: Duration = Duration::from_millis(250);
const LONGEST: Duration = Duration::from_secs(8);

#[derive(Default)]
pub(crate) struct AcceptPause {
    until: Option<Instant>,
    /// The pause the next failure starts (0: FIRST).
    next: Duration,
}

impl AcceptPause {
    /// accept() failed with `e` (not a transient error): log it and pause
    /// from `now`. Returns how long.
    pub(crate) fn failed(&mut self, e: &std::io::Error, now: Instant) -> Duration {
        let length = if self.next.is_zero() { FIRST } else { self.next };
        self.next = (length * 2).min(LONGEST);
        self.until = Some(now + length);
        let text = crate::sys::errno::io_error_text(e);
        log::error!("accept connection: {text}; not accepting for {} ms", length.as_millis());
        length
    }

    /// A connection was accepted: the next failure pauses briefly again.
    pub(crate) fn accepted(&mut self) {
        self.next = Duration::ZERO;
    }

    /// Paused just now?
    pub(crate) fn paused(&self, now: Instant) -> bool {
        self.until.is_some_and(|t| now < t)
    }

    /// True once, when a pause is over: the caller resumes accepting.
    pub(crate) fn ends(&mut self, now: Instant) -> bool {
        match self.until {
            Some(t) if now >= t => {
                self.until = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_while_failures_go_on_and_reset_after_an_accept() {
        let mut p = AcceptPause::default();
        let e = std::io::Error::from_raw_os_error(libc::EMFILE);
        let t0 = Instant::now();
        assert!(!p.paused(t0) && !p.ends(t0));
        assert_eq!(p.failed(&e, t0), FIRST);
        assert!(p.paused(t0 + FIRST / 2));
        assert!(!p.ends(t0 + FIRST / 2));
        assert!(p.ends(t0 + FIRST), "over after its length");
        assert!(!p.ends(t0 + FIRST), "only once");
        let lengths: Vec<Duration> = (0..8).map(|_| p.failed(&e, t0)).collect();
        assert_eq!(lengths[0], FIRST * 2);
        assert_eq!(lengths[1], FIRST * 4);
        assert_eq!(*lengths.last().unwrap(), LONGEST, "bounded");
        p.accepted();
        assert_eq!(p.failed(&e, t0), FIRST);
    }
}
