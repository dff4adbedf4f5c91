//! The bytes of requests still arriving, bounded per worker process.
//!
//! One request may take up to `max_request` (1 MiB) and one second to
//! arrive, and a process holds thousands of connections: without a bound
//! over all of them, 10,000 clients each sending most of 1 MiB and no end
//! would make one worker hold 10 GB. So each connection's receive buffer
//! ([`InBuf`]) charges what it holds beyond its first [`FREE`] bytes to the
//! process's [`Budget`], on the event loop and on connection threads alike;
//! the connection whose request would go over the budget is closed. Postfix's
//! clients send requests of a few hundred bytes, which never touch it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes each connection may buffer without charge: its share of the
/// process's memory whatever the budget says.
pub(crate) const FREE: usize = 4096;

/// Buffered request bytes beyond [`FREE`] per connection, over a process.
#[derive(Debug)]
pub(crate) struct Budget {
    used: AtomicUsize,
    limit: usize,
}

impl Budget {
    pub(crate) fn new(limit: usize) -> Arc<Budget> {
        Arc::new(Budget { used: AtomicUsize::new(0), limit })
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

/// One line per connection closed for the budget.
pub(crate) fn warn_over(svc: &str, budget: &Budget) {
    log::warn!(
        "request from {svc}: unfinished requests in this process exceed {} bytes -- closing connection",
        budget.limit()
    );
}

/// A connection's receive buffer, charged to its process's budget; the
/// charge is returned when the buffer shrinks or goes.
pub(crate) struct InBuf {
    bytes: Vec<u8>,
    budget: Arc<Budget>,
    charged: usize,
}

/// Appending would take the process over its budget.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OverBudget;

impl InBuf {
    pub(crate) fn new(budget: &Arc<Budget>) -> InBuf {
        InBuf { bytes: Vec::new(), budget: Arc::clone(budget), charged: 0 }
    }

    /// Append what a read returned. Over budget nothing is appended.
    pub(crate) fn extend(&mut self, data: &[u8]) -> Result<(), OverBudget> {
        let need = self.bytes.len().saturating_add(data.len());
        if need > self.bytes.capacity() {
            // Grown as Vec would grow it, charged before the memory is taken.
            let grown = need.max(self.bytes.capacity().saturating_mul(2)).max(64);
            self.charge(grown)?;
            self.bytes.reserve_exact(grown - self.bytes.len());
        }
        self.bytes.extend_from_slice(data);
        self.charge(self.bytes.capacity())
    }

    /// The request was answered: drop its bytes, and the memory of a large
    /// one.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
        if self.bytes.capacity() > FREE {
            self.bytes = Vec::new();
        }
        let _ = self.charge(self.bytes.capacity());
    }

    /// Make the charge cover `capacity` bytes of buffer.
    fn charge(&mut self, capacity: usize) -> Result<(), OverBudget> {
        let want = capacity.saturating_sub(FREE);
        if want <= self.charged {
            self.budget.used.fetch_sub(self.charged - want, Ordering::Relaxed);
            self.charged = want;
            return Ok(());
        }
        let more = want - self.charged;
        let before = self.budget.used.fetch_add(more, Ordering::Relaxed);
        if before.saturating_add(more) > self.budget.limit {
            self.budget.used.fetch_sub(more, Ordering::Relaxed);
            return Err(OverBudget);
        }
        self.charged = want;
        Ok(())
    }
}

impl std::ops::Deref for InBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for InBuf {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.charged, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_requests_are_free_and_large_ones_share_the_budget() {
        let budget = Budget::new(100_000);
        let mut small: Vec<InBuf> = (0..100).map(|_| InBuf::new(&budget)).collect();
        for b in &mut small {
            b.extend(&[1; 3000]).unwrap();
        }
        assert_eq!(budget.used(), 0);
        let (mut a, mut b) = (InBuf::new(&budget), InBuf::new(&budget));
        a.extend(&[1; 60_000]).unwrap();
        assert!(budget.used() >= 60_000 - FREE && budget.used() <= 100_000, "{}", budget.used());
        assert_eq!(b.extend(&[1; 60_000]), Err(OverBudget), "the second large request goes over");
        assert!(b.is_empty(), "nothing kept over budget");
        a.clear();
        assert_eq!(budget.used(), 0, "an answered request gives its memory back");
        b.extend(&[1; 60_000]).unwrap();
        drop(b);
        assert_eq!(budget.used(), 0, "so does a closed connection");
        assert_eq!(&small[0][..3], &[1, 1, 1]);
    }
}
