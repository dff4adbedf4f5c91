//! Polling for one busy client's next request instead of sleeping, while
//! that pays ([`Spin`]).

#[cfg(test)]
use super::backoff;
use super::backoff::Backoff;

/// Waiting for the next request by polling (`epoll_wait` with a zero
/// timeout) for a few microseconds before sleeping ([`backoff`]): for one
/// busy client at a time.
#[derive(Default)]
pub(super) struct Spin {
    /// Requests answered in this loop pass.
    served: u32,
    /// The connection that sent the last request, and how many requests in
    /// a row came from it.
    last_slot: usize,
    streak: u32,
    pub(super) backoff: Backoff,
}

/// Requests in a row from one connection before polling starts.
const STREAK: u32 = 3;

impl Spin {
    /// A request from the connection in `slot` was answered.
    pub(super) fn served(&mut self, slot: usize) {
        self.served += 1;
        if slot == self.last_slot {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.last_slot = slot;
            self.streak = 1;
        }
    }

    /// At the end of a loop pass: poll before sleeping? Only while one client
    /// is asking alone (one request this pass, and the last few from the same
    /// connection): with several clients at once a request is usually on its
    /// way anyway, and a polling worker would take the CPU its clients need.
    pub(super) fn start(&mut self) -> bool {
        if std::mem::take(&mut self.served) != 1 || self.streak < STREAK {
            return false;
        }
        self.backoff.due()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Passes that each answered one request of the same client, as
    /// `Worker::wait` sees them: how many poll when every poll misses.
    fn polls_when_idle(spin: &mut Spin, passes: usize) -> usize {
        let mut polls = 0;
        for _ in 0..passes {
            spin.served(7);
            if spin.start() {
                polls += 1;
                spin.backoff.miss();
            }
        }
        polls
    }

    #[test]
    fn spinning_backs_off_when_it_does_not_pay() {
        let mut spin = Spin { streak: STREAK, last_slot: 7, ..Spin::default() };
        // misses skip 1, 3, 7, ... chances: 4 polls in the first 1+2+4+8 passes
        assert_eq!(polls_when_idle(&mut spin, 15), 4);
        // at the cap one pass in 1024 polls: 50 us per 1024 requests at most
        let backoff = Backoff { misses: backoff::MAX_MISSES, skip: 0 };
        let mut capped = Spin { streak: STREAK, last_slot: 7, backoff, ..Spin::default() };
        assert_eq!(polls_when_idle(&mut capped, 1024 * 10), 10);
        // a hit restores polling after every single-request pass
        capped.backoff.hit();
        capped.backoff.skip = 0;
        capped.served(7);
        assert!(capped.start());
    }

    #[test]
    fn spinning_only_for_a_client_asking_alone() {
        let mut spin = Spin::default();
        assert!(!spin.start(), "nothing answered: sleep");
        for _ in 0..STREAK {
            spin.served(1);
        }
        assert!(!spin.start(), "several requests in one pass: sleep");
        spin.served(1);
        assert!(spin.start(), "one client asking alone: poll");
        spin.backoff.miss();
        spin.backoff.skip = 0;
        // clients taking turns: no streak, no polling
        for slot in [2, 3, 2, 3, 2] {
            spin.served(slot);
            assert!(!spin.start());
        }
    }
}
