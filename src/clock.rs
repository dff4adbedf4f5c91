//! Monotonic clock readings as nanoseconds: a subtraction to compare, and
//! they fit an atomic. (`Instant` arithmetic costs more on paths taken by
//! every request.)

use nix::time::{clock_gettime, ClockId};

fn read(clock: ClockId) -> u64 {
    clock_gettime(clock)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec() as u64))
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC, the clock `Instant` reads.
pub(crate) fn now_ns() -> u64 {
    read(ClockId::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC_COARSE: cheaper still, a few milliseconds' resolution.
pub(crate) fn coarse_ns() -> u64 {
    read(ClockId::CLOCK_MONOTONIC_COARSE)
}

/// Nanoseconds from `earlier` to `later`, 0 if the readings are the wrong
/// way round.
pub(crate) fn since(later: u64, earlier: u64) -> u64 {
    later.saturating_sub(earlier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_move_forward_and_the_coarse_clock_stays_close() {
        let a = now_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = now_ns();
        assert!(b > a && since(b, a) >= 2_000_000, "{a} then {b}");
        assert_eq!(since(a, b), 0, "the wrong way round is no time, not a wrap");
        // The coarse clock lags by at most a tick or so (a few ms), never leads.
        let c = coarse_ns();
        let d = now_ns();
        assert!(c <= d && since(d, c) < 50_000_000, "coarse {c}, fine {d}");
    }
}
