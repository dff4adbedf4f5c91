//! The reading side: the sum of every slot of a service's statistics file.

use super::layout as l;
use super::recorder::read_name;
use super::{open_file, StatsError};
use crate::sys::shared_map::{byte_locked, SharedMap};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;

/// One table's counts, summed over the slots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableTotals {
    pub name: String,
    /// [op][status], see [`l::OPS`], [`l::STATUSES`].
    pub counts: [[u64; l::STATUSES.len()]; l::OPS.len()],
    /// Lookups per latency bucket (not cumulative).
    pub buckets: [u64; l::BUCKETS],
    pub latency_sum_ns: u64,
}

impl TableTotals {
    pub fn requests(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Requests of any kind answered with this status.
    pub fn with_status(&self, status: usize) -> u64 {
        self.counts.iter().map(|c| c[status]).sum()
    }

    pub fn lookups(&self) -> u64 {
        self.counts[1].iter().sum()
    }

    /// The upper bound (seconds) of the bucket holding quantile `q` of the
    /// lookups' latency; None without lookups timed, or in the last bucket.
    pub fn quantile(&self, q: f64) -> Option<Option<f64>> {
        let total: u64 = self.buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(l::bucket_bound(b));
            }
        }
        Some(None)
    }
}

/// A service's totals.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceTotals {
    pub service: String,
    /// Processes started (slot claims), including those alive now.
    pub starts: u64,
    /// Processes holding a slot now.
    pub alive: u64,
    pub connections: u64,
    /// Of the processes alive (a dead one's gauges are stale).
    pub connections_open: u64,
    pub tables_open: u64,
    /// By name; the two reserved entries under their names in parentheses.
    pub tables: Vec<TableTotals>,
}

/// Read the statistics file of `service`.
pub fn read(path: &Path, service: &str) -> Result<ServiceTotals, StatsError> {
    let map = open_file(path, false)?;
    sum(&map, service).map_err(|e| StatsError::io(path, e))
}

pub(crate) fn sum(map: &SharedMap, service: &str) -> std::io::Result<ServiceTotals> {
    let w = map.words();
    let mut totals = ServiceTotals { service: service.to_string(), ..ServiceTotals::default() };
    let mut tables: BTreeMap<Vec<u8>, TableTotals> = BTreeMap::new();
    for slot in 0..l::SLOTS {
        let base = l::slot(slot);
        let starts = w[base + l::STARTS].load(Relaxed);
        if starts == 0 {
            continue;
        }
        totals.starts += starts;
        totals.connections += w[base + l::CONNECTIONS].load(Relaxed);
        if byte_locked(map.file(), slot as u64)? {
            totals.alive += 1;
            totals.connections_open += w[base + l::CONNECTIONS_OPEN].load(Relaxed);
            totals.tables_open += w[base + l::TABLES_OPEN].load(Relaxed);
        }
        for e in 0..l::TABLES {
            let at = l::entry(base, e);
            let name = match e {
                l::UNAPPROVED => l::UNAPPROVED_NAME.as_bytes().to_vec(),
                l::OTHER => l::OTHER_NAME.as_bytes().to_vec(),
                _ => read_name(w, at),
            };
            if name.is_empty() {
                continue;
            }
            let t = tables.entry(name).or_default();
            for (op, row) in t.counts.iter_mut().enumerate() {
                for (status, n) in row.iter_mut().enumerate() {
                    *n += w[at + l::count(op, status)].load(Relaxed);
                }
            }
            for (b, n) in t.buckets.iter_mut().enumerate() {
                *n += w[at + l::ENTRY_BUCKETS + b].load(Relaxed);
            }
            t.latency_sum_ns += w[at + l::ENTRY_LATENCY_SUM].load(Relaxed);
        }
    }
    for (name, mut t) in tables {
        // The reserved entries only when something was counted there.
        let reserved = name.starts_with(b"(");
        if reserved && t.requests() == 0 {
            continue;
        }
        t.name = String::from_utf8_lossy(&name).into_owned();
        totals.tables.push(t);
    }
    Ok(totals)
}
