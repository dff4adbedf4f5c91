//! The writing side: a process claims a slot of its service's statistics
//! file and adds to its counters. The request path does relaxed atomic adds
//! only (no lock, no system call).

use super::layout::{self as l, count};
use super::{open_file, StatsError};
use crate::protocol::{Op, Status};
use crate::sys::shared_map::{try_lock_byte, SharedMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::Release};
use std::sync::Mutex;

/// A table's entry in this process's slot (its first word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableStats(usize);

/// This process's slot in its service's statistics file.
pub struct Stats {
    map: SharedMap,
    base: usize,
    /// Held while an entry is assigned (when a table opens, never per request).
    naming: Mutex<()>,
}

impl Stats {
    /// Open (creating if need be) `file` and claim a free slot: counts
    /// continue from the slot's earlier owners; this start is counted.
    pub fn open(file: &Path) -> Result<Stats, StatsError> {
        let map = open_file(file, true)?;
        let mut claimed = None;
        for i in 0..l::SLOTS {
            if try_lock_byte(map.file(), i as u64).map_err(|e| StatsError::io(file, e))? {
                claimed = Some(i);
                break;
            }
        }
        let Some(slot) = claimed else { return Err(StatsError::Full(file.to_path_buf(), l::SLOTS)) };
        let stats = Stats { map, base: l::slot(slot), naming: Mutex::new(()) };
        let w = stats.map.words();
        w[stats.base + l::STARTS].fetch_add(1, Relaxed);
        w[stats.base + l::PID].store(u64::from(std::process::id()), Relaxed);
        w[stats.base + l::CONNECTIONS_OPEN].store(0, Relaxed);
        w[stats.base + l::TABLES_OPEN].store(0, Relaxed);
        Ok(stats)
    }

    /// The slot this process holds.
    pub fn slot(&self) -> usize {
        (self.base - l::HEADER_WORDS) / l::SLOT_WORDS
    }

    fn words(&self) -> &[AtomicU64] {
        self.map.words()
    }

    /// The entry of requests refused before naming an approved table.
    pub fn unapproved(&self) -> TableStats {
        TableStats(l::entry(self.base, l::UNAPPROVED))
    }

    /// The entry of an (approved) table: the one of its name in this slot
    /// (an earlier owner's, or new); "other" once all are taken.
    pub fn table(&self, name: &str) -> TableStats {
        let name = cut(name);
        let _naming = crate::sync::lock(&self.naming);
        let w = self.words();
        for e in l::UNAPPROVED + 1..l::OTHER {
            let at = l::entry(self.base, e);
            let len = w[at].load(Relaxed) as usize;
            if len == 0 {
                for (i, chunk) in name.chunks(8).enumerate() {
                    let mut b = [0u8; 8];
                    b[..chunk.len()].copy_from_slice(chunk);
                    w[at + l::ENTRY_NAME + i].store(u64::from_le_bytes(b), Relaxed);
                }
                // The name is there before a reader sees a length.
                w[at].store(name.len() as u64, Release);
                return TableStats(at);
            }
            if len == name.len() && read_name(w, at) == name {
                return TableStats(at);
            }
        }
        TableStats(l::entry(self.base, l::OTHER))
    }

    /// One answered request.
    #[inline]
    pub fn request(&self, table: TableStats, op: Option<Op>, status: Status) {
        let at = table.0 + count(l::op_index(op), l::status_index(status));
        self.words()[at].fetch_add(1, Relaxed);
    }

    /// One lookup's time in the table.
    #[inline]
    pub fn latency(&self, table: TableStats, ns: u64) {
        let w = self.words();
        w[table.0 + l::ENTRY_BUCKETS + l::bucket(ns)].fetch_add(1, Relaxed);
        w[table.0 + l::ENTRY_LATENCY_SUM].fetch_add(ns, Relaxed);
    }

    pub fn connection_opened(&self) {
        let w = self.words();
        w[self.base + l::CONNECTIONS].fetch_add(1, Relaxed);
        w[self.base + l::CONNECTIONS_OPEN].fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        // Never below zero, whatever the order of the two calls.
        let _ = self.words()[self.base + l::CONNECTIONS_OPEN].fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }

    /// The number of tables this process has open now.
    pub fn tables_open(&self, n: usize) {
        self.words()[self.base + l::TABLES_OPEN].store(n as u64, Relaxed);
    }
}

/// A name as stored: at most NAME_BYTES bytes.
fn cut(name: &str) -> &[u8] {
    let b = name.as_bytes();
    &b[..b.len().min(l::NAME_BYTES)]
}

/// The name stored in the entry at `at` (its length word read first).
pub(crate) fn read_name(w: &[AtomicU64], at: usize) -> Vec<u8> {
    let len = (w[at].load(std::sync::atomic::Ordering::Acquire) as usize).min(l::NAME_BYTES);
    let mut name = Vec::with_capacity(len);
    for i in 0..len.div_ceil(8) {
        name.extend_from_slice(&w[at + l::ENTRY_NAME + i].load(Relaxed).to_le_bytes());
    }
    name.truncate(len);
    name
}
