//! Reading every pair a damaged hash file still holds, for the writer's
//! repair (`dict::file::db`): the same bounds-checked page reads as
//! lookups, walking every bucket's chain instead of one.

use super::{log2_ceil, u32_at, HashPages, PageError, Reading};
use std::collections::HashSet;

/// What could be read.
pub(crate) struct Salvaged {
    pub(crate) pairs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Pages (or items) that could not be read: the rest of their bucket
    /// chain is lost.
    pub(crate) damaged: usize,
}

impl HashPages {
    /// Every key and value reachable from the meta page, each key once;
    /// a damaged page ends its bucket's chain. An error only when the meta
    /// page itself cannot be read.
    pub(crate) fn salvage(&self) -> Result<Salvaged, PageError> {
        let meta = self.reload_meta(None)?;
        let mut page = Vec::new();
        let mut overflow = Vec::new();
        let mut r = Reading { pages: self, count: meta.pages, overflow: &mut overflow };
        let mut out = Salvaged { pairs: Vec::new(), damaged: 0 };
        let mut seen = HashSet::new();
        // A file with more buckets than pages has a bad meta page.
        let buckets = u64::from(meta.max_bucket).min(meta.pages);
        for bucket in 0..=buckets as u32 {
            let spare = meta.spares[log2_ceil(bucket.wrapping_add(1)).min(31)];
            let mut pgno = bucket.wrapping_add(spare);
            for _ in 0..=meta.pages {
                match r.read_page(pgno, &mut page).and_then(|()| r.pairs_of(pgno, &page, &mut out.pairs, &mut seen)) {
                    Ok(0) => break,
                    Ok(next) => pgno = next,
                    Err(_) => {
                        out.damaged += 1;
                        break;
                    }
                }
            }
        }
        Ok(out)
    }
}

impl Reading<'_> {
    /// Append the pairs of one page whose keys were not seen yet; returns
    /// the bucket's next page (0: none).
    fn pairs_of(
        &mut self,
        pgno: u32,
        page: &[u8],
        pairs: &mut Vec<(Vec<u8>, Vec<u8>)>,
        seen: &mut HashSet<Vec<u8>>,
    ) -> Result<u32, PageError> {
        let entries = super::hash_page_entries(pgno, page)?;
        let mut found = Vec::new();
        for i in 0..entries {
            let item = super::page_item(pgno, page, entries, i)?;
            let mut bytes = Vec::new();
            self.item_value(pgno, item, &mut bytes)?;
            found.push(bytes);
        }
        let mut items = found.into_iter();
        while let (Some(k), Some(v)) = (items.next(), items.next()) {
            if seen.insert(k.clone()) {
                pairs.push((k, v));
            }
        }
        Ok(u32_at(page, 16).unwrap_or(0))
    }
}
