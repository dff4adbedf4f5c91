//! Lookups in a Berkeley DB 5.3 hash file (`hash:` tables) read straight from
//! its pages, for read-only handles: one `pread` of the bucket's page per
//! lookup and a search of its sorted pairs, instead of Berkeley DB's cache manager
//! (which, with Postfix's 128 KiB read cache and a file many times that size,
//! evicts and refills a buffer on nearly every lookup).
//!
//! Only the layout Postfix's own files have is read: native byte order, hash
//! version 9, no checksums or encryption, no duplicates or sub-databases,
//! the default hash function. [`HashPages::open`] refuses anything else and
//! the caller keeps using Berkeley DB; every page is bounds-checked, and a
//! page that does not look as expected is an error for this lookup (the
//! caller then asks Berkeley DB), never a panic.
//!
//! Layout facts (Berkeley DB 5.3 `db_page.h`, `hash.h`): page 0 is the meta
//! page; a key hashes (FNV-1 style, `__ham_func5`) to a bucket, masked with
//! `high_mask` and, past `max_bucket`, with `low_mask`; the bucket's first page
//! is `bucket + spares[ceil(log2(bucket + 1))]`, further pages of the bucket
//! follow `next_pgno`. A page holds a 26-byte header, then an array of 2-byte
//! item offsets (items packed downwards from the end of the page), key and
//! data alternating; an item is a type byte and its bytes (`H_KEYDATA`), or a
//! reference to a chain of overflow pages (`H_OFFPAGE`: page number at +4,
//! total length at +8).

use crate::sync::{read, write};
use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::RwLock;

const HASH_MAGIC: u32 = 0x061561;
const HASH_VERSION: u32 = 9;
const P_HASH_UNSORTED: u8 = 2;
const P_OVERFLOW: u8 = 7;
const P_HASHMETA: u8 = 8;
const P_HASH: u8 = 13;
const H_KEYDATA: u8 = 1;
const H_OFFPAGE: u8 = 3;
/// Meta `flags`: duplicates, sub-databases.
const DB_HASH_DUP: u32 = 0x01;
const DB_HASH_SUBDB: u32 = 0x02;
/// Page header size (without checksum or crypto areas).
const PAGE_HEADER: usize = 26;
/// Bytes of the meta page that are read.
const META_LEN: usize = 224;
/// The hash function's self-test key (with its NUL), whose hash the meta
/// page records.
const CHARKEY: &[u8] = b"%$sniglet^&\0";

#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    #[error("not a hash file of the layout read directly: {0}")]
    Unsupported(&'static str),
    #[error("page {pgno}: {what}")]
    Damaged { pgno: u32, what: &'static str },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn damaged(pgno: u32, what: &'static str) -> PageError {
    PageError::Damaged { pgno, what }
}

/// Native-endian u32/u16 at `at` (None when out of bounds).
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?) as usize)
}

/// Berkeley DB's default hash function.
fn hash(key: &[u8]) -> u32 {
    key.iter().fold(0u32, |h, &b| h.wrapping_mul(16777619) ^ b as u32)
}

/// Smallest i with 2^i >= n.
fn log2_ceil(n: u32) -> usize {
    match n {
        0 | 1 => 0,
        _ => (32 - (n - 1).leading_zeros()) as usize,
    }
}

/// What the meta page says, and when it was read.
#[derive(Clone, Copy, Default)]
pub(crate) struct Meta {
    max_bucket: u32,
    high_mask: u32,
    low_mask: u32,
    spares: [u32; 32],
    /// Pages in the file when the meta page was read (bounds page numbers).
    pages: u64,
    /// The lock lease it was read under (0: none, never current).
    lease: u64,
}

enum Scan {
    Found,
    /// Not on this page: the bucket's next page (0: none).
    Next(u32),
}

thread_local! {
    /// The page being scanned and an overflow page being read: per thread,
    /// so that lookups share a reader without sharing buffers, and allocate
    /// nothing once a thread has read a page.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A reader of one file, shared by lookups on any thread (`&self`).
pub(crate) struct HashPages {
    file: File,
    pagesize: usize,
    meta: RwLock<Meta>,
}

impl HashPages {
    /// Open `path` for direct reads; Unsupported when the file is not of the
    /// layout this reader knows.
    pub(crate) fn open(path: &str) -> Result<HashPages, PageError> {
        Self::from_file(File::open(path)?)
    }

    /// [`HashPages::open`] on a file already open.
    pub(crate) fn from_file(file: File) -> Result<HashPages, PageError> {
        let mut head = [0u8; META_LEN];
        file.read_exact_at(&mut head, 0)?;
        let pagesize = u32_at(&head, 20).unwrap_or(0) as usize;
        if !(512..=65536).contains(&pagesize) || !pagesize.is_power_of_two() {
            return Err(PageError::Unsupported("page size"));
        }
        let pages = HashPages { file, pagesize, meta: RwLock::new(Meta::default()) };
        *write(&pages.meta) = pages.meta_of(&head, None)?;
        Ok(pages)
    }

    /// Read the meta page and the file's length again (bucket count and
    /// masks change as a writer adds keys), under `lease`.
    pub(crate) fn reload_meta(&self, lease: Option<u64>) -> Result<Meta, PageError> {
        let mut head = [0u8; META_LEN];
        self.file.read_exact_at(&mut head, 0)?;
        let meta = self.meta_of(&head, lease)?;
        *write(&self.meta) = meta;
        Ok(meta)
    }

    /// The meta page `head`, with the file's current length.
    fn meta_of(&self, head: &[u8], lease: Option<u64>) -> Result<Meta, PageError> {
        if u32_at(head, 20) != Some(self.pagesize as u32) {
            return Err(PageError::Unsupported("page size changed"));
        }
        let mut meta = parse_meta(head)?;
        meta.pages = self.file.metadata()?.len() / self.pagesize as u64;
        meta.lease = lease.unwrap_or(0);
        Ok(meta)
    }

    /// Look `key` up (exact bytes) under the lock lease `lease`; on a hit
    /// its value is in `out`.
    ///
    /// A hit is right even when a writer has split buckets since the meta
    /// page was read: pages are read afresh and a key lives in one bucket at
    /// a time. A miss, or a page past the known end of the file, may come
    /// from an old meta page: then it is read again (at most once per lease)
    /// and the key looked up once more.
    pub(crate) fn get(&self, key: &[u8], out: &mut Vec<u8>, lease: Option<u64>) -> Result<bool, PageError> {
        BUFFERS.with(|b| {
            let mut fresh = (Vec::new(), Vec::new());
            // Only a lookup inside a lookup would find them borrowed.
            let mut held = b.try_borrow_mut();
            let (page, overflow) = match held.as_deref_mut() {
                Ok(bufs) => bufs,
                Err(_) => &mut fresh,
            };
            let meta = *read(&self.meta);
            match self.lookup(&meta, key, out, page, overflow) {
                Ok(true) => Ok(true),
                _ if lease.is_none_or(|l| l != meta.lease) => {
                    let meta = self.reload_meta(lease)?;
                    self.lookup(&meta, key, out, page, overflow)
                }
                other => other,
            }
        })
    }

    fn lookup(
        &self,
        m: &Meta,
        key: &[u8],
        out: &mut Vec<u8>,
        page: &mut Vec<u8>,
        overflow: &mut Vec<u8>,
    ) -> Result<bool, PageError> {
        let mut bucket = hash(key) & m.high_mask;
        if bucket > m.max_bucket {
            bucket &= m.low_mask;
        }
        let spare = m.spares[log2_ceil(bucket.wrapping_add(1)).min(31)];
        let mut pgno = bucket.wrapping_add(spare);
        let mut r = Reading { pages: self, count: m.pages, overflow };
        // A bucket chain longer than the file is a loop.
        for _ in 0..=m.pages {
            r.read_page(pgno, page)?;
            match r.scan(pgno, page, key, out)? {
                Scan::Found => return Ok(true),
                Scan::Next(0) => return Ok(false),
                Scan::Next(next) => pgno = next,
            }
        }
        Err(damaged(pgno, "bucket chain loops"))
    }
}

/// One lookup's reads: the file, its page count by the meta page used, and
/// the buffer for overflow pages.
struct Reading<'a> {
    pages: &'a HashPages,
    count: u64,
    overflow: &'a mut Vec<u8>,
}

impl Reading<'_> {
    /// Look for `key` on one page of its bucket.
    fn scan(&mut self, pgno: u32, page: &[u8], key: &[u8], out: &mut Vec<u8>) -> Result<Scan, PageError> {
        let entries = hash_page_entries(pgno, page)?;
        let item = |i: usize| page_item(pgno, page, entries, i);
        let pairs = entries / 2;
        let found = if page[25] == P_HASH {
            // Sorted pages (what Berkeley DB 5.3 writes): keys ascending,
            // compared as memcmp over the shorter length and then by length,
            // which is how byte slices compare.
            let (mut lo, mut hi) = (0, pairs);
            let mut found = None;
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match self.key_order(pgno, item(2 * mid)?, key)? {
                    std::cmp::Ordering::Equal => {
                        found = Some(mid);
                        break;
                    }
                    std::cmp::Ordering::Less => lo = mid + 1,
                    std::cmp::Ordering::Greater => hi = mid,
                }
            }
            found
        } else {
            let mut found = None;
            for pair in 0..pairs {
                if self.item_is(pgno, item(2 * pair)?, key)? {
                    found = Some(pair);
                    break;
                }
            }
            found
        };
        match found {
            Some(pair) => {
                self.item_value(pgno, item(2 * pair + 1)?, out)?;
                Ok(Scan::Found)
            }
            None => Ok(Scan::Next(u32_at(page, 16).unwrap_or(0))),
        }
    }

    /// Read page `pgno` of a bucket into `buf`.
    fn read_page(&self, pgno: u32, buf: &mut Vec<u8>) -> Result<(), PageError> {
        read_into(self.pages, self.count, pgno, buf, "page number out of range")?;
        if u32_at(buf, 8) != Some(pgno) {
            return Err(damaged(pgno, "page number mismatch"));
        }
        Ok(())
    }

    /// Whether the key item `item` (its type byte and the rest) is `key`.
    fn item_is(&mut self, pgno: u32, item: &[u8], key: &[u8]) -> Result<bool, PageError> {
        if item.first() == Some(&H_OFFPAGE) && offpage(pgno, item)?.1 != key.len() {
            return Ok(false);
        }
        Ok(self.key_order(pgno, item, key)? == std::cmp::Ordering::Equal)
    }

    /// How the key item `item` sorts against `key`.
    fn key_order(&mut self, pgno: u32, item: &[u8], key: &[u8]) -> Result<std::cmp::Ordering, PageError> {
        match item.first() {
            Some(&H_KEYDATA) => Ok(item[1..].cmp(key)),
            Some(&H_OFFPAGE) => {
                let (first, len) = offpage(pgno, item)?;
                let mut big = Vec::with_capacity(len.min(key.len() + 1));
                self.read_overflow(first, len, &mut big)?;
                Ok(big.as_slice().cmp(key))
            }
            _ => Err(damaged(pgno, "unexpected key item type")),
        }
    }

    fn item_value(&mut self, pgno: u32, item: &[u8], out: &mut Vec<u8>) -> Result<(), PageError> {
        out.clear();
        match item.first() {
            Some(&H_KEYDATA) => {
                out.extend_from_slice(&item[1..]);
                Ok(())
            }
            Some(&H_OFFPAGE) => {
                let (first, len) = offpage(pgno, item)?;
                self.read_overflow(first, len, out)
            }
            _ => Err(damaged(pgno, "unexpected data item type (duplicates?)")),
        }
    }

    /// Append the `len` bytes of the overflow chain starting at `pgno`.
    fn read_overflow(&mut self, mut pgno: u32, len: usize, out: &mut Vec<u8>) -> Result<(), PageError> {
        let start = out.len();
        for _ in 0..=self.count {
            read_into(self.pages, self.count, pgno, self.overflow, "overflow page number out of range")?;
            let p = &self.overflow;
            if u32_at(p, 8) != Some(pgno) || p[25] != P_OVERFLOW {
                return Err(damaged(pgno, "not an overflow page"));
            }
            let here = u16_at(p, 22).unwrap_or(0);
            let Some(bytes) = p.get(PAGE_HEADER..PAGE_HEADER + here) else {
                return Err(damaged(pgno, "overflow length"));
            };
            out.extend_from_slice(bytes);
            let next = u32_at(p, 16).unwrap_or(0);
            if out.len() - start >= len || next == 0 {
                break;
            }
            pgno = next;
        }
        if out.len() - start != len {
            return Err(damaged(pgno, "overflow chain length"));
        }
        Ok(())
    }
}

/// The item count of hash page `pgno`, checked to fit the page.
fn hash_page_entries(pgno: u32, page: &[u8]) -> Result<usize, PageError> {
    if page[25] != P_HASH && page[25] != P_HASH_UNSORTED {
        return Err(damaged(pgno, "not a hash page"));
    }
    let entries = u16_at(page, 20).unwrap_or(0);
    if !entries.is_multiple_of(2) || PAGE_HEADER + 2 * entries > page.len() {
        return Err(damaged(pgno, "bad entry count"));
    }
    Ok(entries)
}

/// Item `i` of a hash page of `entries` items: its type byte and bytes.
fn page_item(pgno: u32, page: &[u8], entries: usize, i: usize) -> Result<&[u8], PageError> {
    // Item i ends where item i-1 starts (items are packed downwards).
    let at = u16_at(page, PAGE_HEADER + 2 * i).unwrap_or(0);
    let end = if i == 0 { page.len() } else { u16_at(page, PAGE_HEADER + 2 * (i - 1)).unwrap_or(0) };
    if at < PAGE_HEADER + 2 * entries || at >= end || end > page.len() {
        return Err(damaged(pgno, "bad item offset"));
    }
    Ok(&page[at..end])
}

/// Read page `pgno` (of `count`) into `buf`; `out_of_range` names a page
/// number past the end.
fn read_into(
    pages: &HashPages,
    count: u64,
    pgno: u32,
    buf: &mut Vec<u8>,
    out_of_range: &'static str,
) -> Result<(), PageError> {
    if pgno == 0 || pgno as u64 >= count {
        return Err(damaged(pgno, out_of_range));
    }
    buf.resize(pages.pagesize, 0);
    pages.file.read_exact_at(buf, pgno as u64 * pages.pagesize as u64)?;
    Ok(())
}

/// The overflow reference of an `H_OFFPAGE` item: first page, total length.
fn offpage(pgno: u32, item: &[u8]) -> Result<(u32, usize), PageError> {
    match (u32_at(item, 4), u32_at(item, 8)) {
        (Some(first), Some(len)) => Ok((first, len as usize)),
        _ => Err(damaged(pgno, "short overflow reference")),
    }
}

fn parse_meta(head: &[u8]) -> Result<Meta, PageError> {
    let field = |at| u32_at(head, at).unwrap_or(0);
    if field(12) != HASH_MAGIC {
        return Err(PageError::Unsupported("magic (another byte order or access method)"));
    }
    if field(16) != HASH_VERSION {
        return Err(PageError::Unsupported("version"));
    }
    if head[24] != 0 || head[26] != 0 || head[25] != P_HASHMETA {
        return Err(PageError::Unsupported("encryption, checksums or meta page type"));
    }
    if field(48) & (DB_HASH_DUP | DB_HASH_SUBDB) != 0 {
        return Err(PageError::Unsupported("duplicates or sub-databases"));
    }
    if field(92) != hash(CHARKEY) {
        return Err(PageError::Unsupported("hash function"));
    }
    let mut spares = [0u32; 32];
    for (i, s) in spares.iter_mut().enumerate() {
        *s = field(96 + 4 * i);
    }
    Ok(Meta { max_bucket: field(72), high_mask: field(76), low_mask: field(80), spares, pages: 0, lease: 0 })
}

mod salvage;
#[cfg(test)]
mod tests;
