//! The statistics file's layout: fixed, versioned, all 64-bit words.
//!
//! ```text
//! header   HEADER_WORDS   [0] MAGIC (magic and layout version in one word, set once)
//!                         [1] SLOTS  [2] TABLES  [3] ENTRY_WORDS (for a reader's sanity check)
//! slot × SLOTS            one per live process (held by a lock on byte <slot> of the file)
//!   service SERVICE_WORDS  starts, pid, connections total/open, open tables
//!   entry × TABLES         one per table name; 0 = requests naming no approved
//!                          table, TABLES-1 = tables beyond the others ("other")
//!     [0] name length (0: free; stored after the name)  [1..=NAME_WORDS] name bytes
//!     OPS × STATUSES request counters, BUCKETS lookup latency buckets, latency sum (ns)
//! ```
//!
//! Counters are cumulative: a process that takes over a slot of a dead one
//! adds to what is there, so totals survive restarts. Gauges (open
//! connections, open tables) are reset by the claiming process.

use crate::protocol::{Op, Status};

/// "PMSTATS" and layout version 1. A file of another version is left alone.
pub(crate) const MAGIC: u64 = 0x504d_5354_4154_0000 | VERSION;
pub(crate) const VERSION: u64 = 1;
pub(crate) const MAGIC_MASK: u64 = !0xffff;

pub(crate) const HEADER_WORDS: usize = 8;
/// Processes of one service counted at once (master(8)'s default process
/// limit is 100).
pub(crate) const SLOTS: usize = 128;
/// Table entries per slot, with the two reserved ones.
pub(crate) const TABLES: usize = 32;
/// Longest table name kept (longer names are cut and share an entry).
pub(crate) const NAME_WORDS: usize = 32;
pub(crate) const NAME_BYTES: usize = NAME_WORDS * 8;

/// Entry 0: requests refused before naming an approved table (not in the
/// allowlist, no `type:`, update on proxymap, malformed). Their names come
/// from clients, so they never get an entry of their own.
pub(crate) const UNAPPROVED: usize = 0;
pub(crate) const UNAPPROVED_NAME: &str = "(unapproved)";
/// The last entry: tables opened after the others are taken.
pub(crate) const OTHER: usize = TABLES - 1;
pub(crate) const OTHER_NAME: &str = "(other)";

/// Service words of a slot.
pub(crate) const STARTS: usize = 0;
pub(crate) const PID: usize = 1;
pub(crate) const CONNECTIONS: usize = 2;
pub(crate) const CONNECTIONS_OPEN: usize = 3;
pub(crate) const TABLES_OPEN: usize = 4;
pub(crate) const SERVICE_WORDS: usize = 8;

/// Request kinds: the protocol's five and one for a request whose kind is
/// unknown (a malformed one answered BAD).
pub(crate) const OPS: [&str; 6] = ["open", "lookup", "update", "delete", "sequence", "unknown"];
pub(crate) const STATUSES: [&str; 6] = ["ok", "noent", "retry", "bad", "deny", "config"];

/// Lookup latency: bucket b counts lookups under 2^b µs (b < BUCKETS-1,
/// up to 2^23 µs ≈ 8.4 s); the last one counts the rest.
pub(crate) const BUCKETS: usize = 25;

pub(crate) const ENTRY_NAME: usize = 1;
pub(crate) const ENTRY_COUNTS: usize = ENTRY_NAME + NAME_WORDS;
pub(crate) const ENTRY_BUCKETS: usize = ENTRY_COUNTS + OPS.len() * STATUSES.len();
pub(crate) const ENTRY_LATENCY_SUM: usize = ENTRY_BUCKETS + BUCKETS;
pub(crate) const ENTRY_WORDS: usize = ENTRY_LATENCY_SUM + 1;

pub(crate) const SLOT_WORDS: usize = SERVICE_WORDS + TABLES * ENTRY_WORDS;
pub(crate) const FILE_WORDS: usize = HEADER_WORDS + SLOTS * SLOT_WORDS;

/// First word of a slot.
pub(crate) fn slot(slot: usize) -> usize {
    HEADER_WORDS + slot * SLOT_WORDS
}

/// First word of a slot's table entry.
pub(crate) fn entry(slot_base: usize, entry: usize) -> usize {
    slot_base + SERVICE_WORDS + entry * ENTRY_WORDS
}

pub(crate) fn op_index(op: Option<Op>) -> usize {
    match op {
        Some(Op::Open) => 0,
        Some(Op::Lookup) => 1,
        Some(Op::Update) => 2,
        Some(Op::Delete) => 3,
        Some(Op::Sequence) => 4,
        None => 5,
    }
}

pub(crate) fn status_index(status: Status) -> usize {
    match status {
        Status::Ok => 0,
        Status::NoKey => 1,
        Status::Retry => 2,
        Status::Bad => 3,
        Status::Deny => 4,
        Status::Config => 5,
    }
}

/// Word of the counter of (op, status) within an entry.
pub(crate) fn count(op: usize, status: usize) -> usize {
    ENTRY_COUNTS + op * STATUSES.len() + status
}

/// Latency bucket of a lookup that took `ns`.
pub(crate) fn bucket(ns: u64) -> usize {
    let us = ns / 1000;
    ((u64::BITS - us.leading_zeros()) as usize).min(BUCKETS - 1)
}

/// Upper bound of bucket `b` in seconds (None: the last, unbounded one).
pub(crate) fn bucket_bound(b: usize) -> Option<f64> {
    (b < BUCKETS - 1).then(|| (1u64 << b) as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_microseconds() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(999), 0, "under 1 µs");
        assert_eq!(bucket(1_000), 1, "1 µs is under 2 µs");
        assert_eq!(bucket(3_999), 2);
        assert_eq!(bucket(4_000), 3);
        assert_eq!(bucket(8_000_000_000), 23, "8 s is under 2^23 µs");
        assert_eq!(bucket(9_000_000_000), BUCKETS - 1);
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket_bound(0), Some(1e-6));
        assert_eq!(bucket_bound(BUCKETS - 1), None);
        // Slots start on cache lines: processes never share one.
        assert_eq!(slot(1) * 8 % 64, 0);
        assert_eq!(slot(0) * 8 % 64, 0);
    }
}
