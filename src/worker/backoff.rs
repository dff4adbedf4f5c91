//! Polling for a client's next request before sleeping, and backing off
//! when it does not pay. Both worker designs use it after a reply: the event
//! loop before `epoll_wait`, a connection thread before its blocking
//! `read()`. A client that sends its next lookup right after reading a reply
//! then finds its server awake instead of paying a scheduler wake-up (tens
//! of microseconds on a VM); a quiet server sleeps.

use std::time::Duration;

/// How long to poll before sleeping.
pub(crate) const POLL: Duration = Duration::from_micros(50);
/// After this many misses in a row, skip 2^MAX_MISSES - 1 chances to poll.
pub(crate) const MAX_MISSES: u32 = 10;

/// After each miss the next 2^misses chances to poll are skipped (up to
/// 1023); a hit ends that.
#[derive(Default)]
pub(crate) struct Backoff {
    pub(super) misses: u32,
    pub(super) skip: u32,
}

impl Backoff {
    /// May this chance poll? (Counts a skipped chance.)
    pub(crate) fn due(&mut self) -> bool {
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        true
    }

    pub(crate) fn hit(&mut self) {
        self.misses = 0;
    }

    pub(crate) fn miss(&mut self) {
        self.misses = (self.misses + 1).min(MAX_MISSES);
        self.skip = (1 << self.misses) - 1;
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;

    #[test]
    fn polling_backs_off_after_misses_and_resumes_after_a_hit() {
        let mut p = Backoff::default();
        assert!(p.due(), "polls at first");
        p.miss();
        assert!(!p.due(), "one chance skipped after a miss");
        assert!(p.due());
        p.miss();
        assert_eq!((0..4).filter(|_| p.due()).count(), 1, "three skipped after the second miss in a row");
        for _ in 0..20 {
            p.miss();
        }
        assert_eq!((0..1024).filter(|_| p.due()).count(), 1, "at most one poll in 1024 chances at the cap");
        p.hit();
        p.skip = 0;
        assert!(p.due() && p.due(), "a hit ends the back-off");
    }
}
