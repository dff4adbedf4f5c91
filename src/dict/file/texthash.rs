//! `texthash:/path`: a postmap-format text file read into memory at open
//! (Postfix dict_thash.c on top of the in-memory dict_ht).
//!
//! Read-only: opening it for proxywrite gives Postfix's `requires O_RDONLY`
//! surrogate. Keys are folded at load only when the open flags have FOLD_FIX,
//! and at lookup when the request flags have it. Duplicates follow the open
//! flags; with no duplicate flag the whole table fails to open. Sequence is
//! supported (Postfix inherits it from dict_ht). Postfix's texthash does not
//! take part in table change detection (it records no file status), so
//! `changed()` stays false.

use crate::dict::postmap_text::{self, LogicalLines, SplitError};
use crate::dict::{Cursor, Dict, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{DUP_IGNORE, DUP_REPLACE, DUP_WARN, FIXED, FOLD_FIX, SRC_RHS_IS_FILE, UTF8_ACTIVE};
use crate::sys::errno;
use std::hash::BuildHasher;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// An immutable-after-load key → value table in insertion order, so that
/// sequence cursors are plain indexes into a stable list.
///
/// Keys and values live back to back in one byte arena, and the hash index
/// holds entry numbers: about a third of the memory of a map of owned
/// strings (Postfix's own htable is about as big as that map), and a table
/// of 100,000 lines loads with three large allocations instead of 300,000
/// small ones.
#[derive(Default)]
pub(crate) struct MemTable {
    arena: Vec<u8>,
    entries: Vec<Entry>,
    index: hashbrown::HashTable<u32>,
    hasher: std::hash::RandomState,
}

/// Where one entry's key and value are in the arena.
#[derive(Clone, Copy)]
struct Entry {
    key_at: usize,
    key_len: u32,
    value_at: usize,
    value_len: u32,
}

/// An entry's hash, for the index when it grows or shrinks (the index keeps
/// entry numbers only).
fn rehash(hasher: &std::hash::RandomState, arena: &[u8], e: &Entry) -> u64 {
    hasher.hash_one(entry_key(arena, e))
}

fn entry_key<'a>(arena: &'a [u8], e: &Entry) -> &'a [u8] {
    &arena[e.key_at..e.key_at + e.key_len as usize]
}

impl MemTable {
    fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    fn key(&self, e: &Entry) -> &[u8] {
        entry_key(&self.arena, e)
    }

    fn value(&self, e: &Entry) -> &[u8] {
        &self.arena[e.value_at..e.value_at + e.value_len as usize]
    }

    fn find(&self, key: &[u8]) -> Option<usize> {
        let i = self.index.find(self.hash(key), |&i| self.key(&self.entries[i as usize]) == key)?;
        Some(*i as usize)
    }

    /// Append `bytes` to the arena: (offset, length), or None past 4 GiB.
    fn store(&mut self, bytes: &[u8]) -> Option<(usize, u32)> {
        let len = u32::try_from(bytes.len()).ok()?;
        let at = self.arena.len();
        self.arena.extend_from_slice(bytes);
        Some((at, len))
    }

    /// Postfix dict_ht update: replace the value, or append a new entry.
    /// Keys and values over 4 GiB each are not stored.
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8]) {
        match self.find(key) {
            Some(i) => {
                let Some((value_at, value_len)) = self.store(value) else { return };
                // the old value's bytes stay in the arena: duplicates are rare
                let e = &mut self.entries[i];
                e.value_at = value_at;
                e.value_len = value_len;
            }
            None => self.append(key, value),
        }
    }

    /// Append a new entry unless `key` is already there (then false, and
    /// nothing changes).
    pub(crate) fn insert_new(&mut self, key: &[u8], value: &[u8]) -> bool {
        if self.find(key).is_some() {
            return false;
        }
        self.append(key, value);
        true
    }

    /// Append an entry for a key that is not in the table.
    fn append(&mut self, key: &[u8], value: &[u8]) {
        let Ok(n) = u32::try_from(self.entries.len()) else { return };
        let (Some((value_at, value_len)), Some((key_at, key_len))) = (self.store(value), self.store(key)) else {
            return;
        };
        self.entries.push(Entry { key_at, key_len, value_at, value_len });
        let hash = self.hash(key);
        let MemTable { index, entries, arena, hasher } = self;
        index.insert_unique(hash, n, |&i| rehash(hasher, arena, &entries[i as usize]));
    }

    /// Room for `bytes` of keys and values and `entries` entries, taken at
    /// once: a table too big for the memory left fails here, as an error,
    /// rather than at one of the allocations while it is built (an abort).
    fn try_reserve(&mut self, bytes: usize, entries: usize) -> Result<(), ()> {
        self.arena.try_reserve(bytes).map_err(drop)?;
        self.entries.try_reserve(entries).map_err(drop)?;
        let MemTable { index, entries: all, arena, hasher } = self;
        index.try_reserve(entries, |&i| rehash(hasher, arena, &all[i as usize])).map_err(drop)
    }

    /// Done adding: give back the arena's and the index's spare capacity.
    pub(crate) fn shrink(&mut self) {
        self.arena.shrink_to_fit();
        self.entries.shrink_to_fit();
        let MemTable { index, entries, arena, hasher } = self;
        index.shrink_to_fit(|&i| rehash(hasher, arena, &entries[i as usize]));
    }

    /// Lookup with optional ASCII folding of the key; uses `out` as the
    /// folding buffer so that a lookup does not allocate.
    pub(crate) fn lookup(&self, key: &[u8], fold: bool, out: &mut Vec<u8>) -> bool {
        let found = if fold && key.iter().any(u8::is_ascii_uppercase) {
            out.clear();
            out.extend_from_slice(key);
            out.make_ascii_lowercase();
            self.find(out.as_slice())
        } else {
            self.find(key)
        };
        out.clear();
        match found {
            Some(i) => {
                out.extend_from_slice(self.value(&self.entries[i]));
                true
            }
            None => false,
        }
    }

    /// dict_ht sequence with a per-connection cursor: FIRST restarts, NEXT
    /// without a FIRST (or after the end) reports the end, as htable does.
    pub(crate) fn sequence(&self, cursor: &mut Option<Cursor>, first: bool) -> Option<(Vec<u8>, Vec<u8>)> {
        if first {
            *cursor = Some(Box::new(0usize));
        }
        let pos = cursor.as_mut()?.downcast_mut::<usize>()?;
        let entry = self.entries.get(*pos)?;
        *pos += 1;
        Some((self.key(entry).to_vec(), self.value(entry).to_vec()))
    }
}

/// A FIXED table held in memory: texthash and inline.
pub(crate) struct MemDict {
    pub(crate) flags: u32,
    pub(crate) table: MemTable,
}

impl Dict for MemDict {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        // read into memory at open.
        Waits::Never
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        Ok(self.table.lookup(key, flags & FOLD_FIX != 0, out))
    }

    fn sequence(
        &mut self,
        cursor: &mut Option<Cursor>,
        first: bool,
        _flags: u32,
    ) -> DictResult<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self.table.sequence(cursor, first))
    }
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    req.require_read_only()?;
    let path = req.name;
    loop {
        // Postfix re-reads a file modified within about a second of the read,
        // in case it was being written meanwhile.
        let before = unix_now();
        let mut file =
            std::fs::File::open(path).map_err(|e| OpenError::io(format_args!("open database {path}"), &e))?;
        let mut data = Vec::new();
        // Postfix exits (fatal) on read/fstat errors; we fail the open instead.
        file.read_to_end(&mut data).map_err(|e| OpenError::io(format_args!("read {path}"), &e))?;
        let table = parse(&data, path, req.flags)?;
        let meta =
            file.metadata().map_err(|e| OpenError::new(format!("fstat {path}: {}", errno::io_error_text(&e))))?;
        let after = unix_now();
        let mtime = std::os::unix::fs::MetadataExt::mtime(&meta);
        if mtime < before - 1 || mtime > after {
            return Ok(Box::new(MemDict { flags: req.flags | FIXED, table }));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The fuzz target's way in: `data` loaded as a texthash file, then every
/// entry the sequence gives looked up again, and `keys` looked up.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_load(data: &[u8], flags: u32, keys: &[&[u8]]) {
    let flags = flags & !SRC_RHS_IS_FILE; // no file reads from fuzz input
    let Ok(table) = parse(data, "fuzz", flags) else { return };
    let mut cursor = None;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut first = true;
    while let Some((key, value)) = table.sequence(&mut cursor, first) {
        first = false;
        assert!(table.lookup(&key, false, &mut out), "sequenced key {key:?} not found");
        assert_eq!(out, value, "key {key:?}");
        assert!(seen.insert(key), "a key sequenced twice");
    }
    for key in keys {
        table.lookup(key, flags & FOLD_FIX != 0, &mut out);
    }
}

/// Load the file contents; `flags` are the open flags.
fn parse(data: &[u8], path: &str, flags: u32) -> Result<MemTable, OpenError> {
    let mut table = MemTable::default();
    // At most a line per entry; the keys and values fit in the source.
    let lines = data.iter().filter(|&&b| b == b'\n').count() + 1;
    table
        .try_reserve(data.len(), lines)
        .map_err(|()| OpenError::errno(format_args!("open database {path}"), libc::ENOMEM))?;
    let fold = flags & FOLD_FIX != 0;
    for line in LogicalLines::new(data, path) {
        let n = line.line_no;
        let shown = || String::from_utf8_lossy(postmap_text::until_nul(&line.text)).into_owned();
        if flags & UTF8_ACTIVE != 0 && std::str::from_utf8(postmap_text::until_nul(&line.text)).is_err() {
            log::warn!("{path}, line {n}: non-UTF-8 input \"{}\" -- ignoring this line", shown());
            continue;
        }
        let (key, value) = match postmap_text::split_key_value(&line.text) {
            Ok(kv) => kv,
            Err(SplitError::UnbalancedQuote) => {
                log::warn!("{path}, line {n}: unbalanced '\"' in '{}' -- ignoring this line", shown());
                continue;
            }
            Err(SplitError::ExpectedFormat) => {
                log::warn!("{path}, line {n}: expected format: key whitespace value -- ignoring this line");
                continue;
            }
        };
        if key.last() == Some(&b':') {
            log::warn!("{path}, line {n}: record is in \"key: value\" format; is this an alias file?");
        }
        let value = if flags & SRC_RHS_IS_FILE != 0 {
            match postmap_text::file_to_base64(value) {
                Ok(v) => v,
                Err(err) => {
                    log::warn!("{path}, line {n}: {err}: skipping this entry");
                    continue;
                }
            }
        } else {
            value.to_vec()
        };
        let stored_key = crate::dict::fold_key(key, fold);
        if !table.insert_new(&stored_key, &value) {
            if flags & DUP_IGNORE != 0 {
                // keep the first value
            } else if flags & DUP_REPLACE != 0 {
                table.put(&stored_key, &value);
            } else if flags & DUP_WARN != 0 {
                log::warn!("{path}, line {n}: duplicate entry: \"{}\"", String::from_utf8_lossy(key));
            } else {
                return Err(OpenError::new(format!(
                    "{path}, line {n}: duplicate entry: \"{}\"",
                    String::from_utf8_lossy(key)
                )));
            }
        }
    }
    table.shrink();
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::testutil::{get, TempFile};
    use crate::dict::{DictError, Mode};

    /// A texthash source file, its mtime an hour back so that the "file is
    /// hot" re-read does not slow the tests down.
    fn temp_file(content: &[u8]) -> TempFile {
        TempFile::new("texthash", content).backdated()
    }

    fn open_with(name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
        let params = Params::default();
        open(&OpenRequest { type_name: "texthash", name, mode, flags, params: &params })
    }

    const SAMPLE: &str = "# comment\n\
        Alice  alice@example.com  \n\
        bob\tbob@example.com,\n\
        \t  bob2@example.com\n\
        \n\
        \"quoted key\" quoted value\n\
        esc\\ aped   value 2\n\
        lonely\n\
        \"unbalanced x\n\
        alias: target\n";

    #[test]
    fn hits_misses_continuations_and_bad_lines() {
        let f = temp_file(SAMPLE.as_bytes());
        let mut d = open_with(f.name(), Mode::ReadOnly, 0).unwrap();
        assert_eq!(d.flags(), FIXED);
        assert_eq!(get(&mut d, "Alice", 0).as_deref(), Some("alice@example.com"));
        assert_eq!(get(&mut d, "bob", 0).as_deref(), Some("bob@example.com,\t  bob2@example.com"));
        assert_eq!(get(&mut d, "\"quoted key\"", 0).as_deref(), Some("quoted value"));
        assert_eq!(get(&mut d, "quoted key", 0), None);
        assert_eq!(get(&mut d, "esc\\ aped", 0).as_deref(), Some("value 2"));
        // Bad lines are skipped; the alias-style key is kept with its colon.
        assert_eq!(get(&mut d, "lonely", 0), None);
        assert_eq!(get(&mut d, "\"unbalanced", 0), None);
        assert_eq!(get(&mut d, "alias:", 0).as_deref(), Some("target"));
        assert_eq!(get(&mut d, "nobody", 0), None);
        assert!(!d.changed());
    }

    #[test]
    fn folding_at_open_and_per_request() {
        let f = temp_file(b"MiXed value1\nlower value2\n");
        // Open without FOLD_FIX: stored as written.
        let mut d = open_with(f.name(), Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "MiXed", 0).as_deref(), Some("value1"));
        assert_eq!(get(&mut d, "mixed", 0), None);
        assert_eq!(get(&mut d, "MiXed", FOLD_FIX), None, "folded lookup cannot reach an unfolded key");
        assert_eq!(get(&mut d, "LOWER", FOLD_FIX).as_deref(), Some("value2"));
        assert_eq!(get(&mut d, "LOWER", 0), None);
        // Open with FOLD_FIX: stored folded.
        let mut d = open_with(f.name(), Mode::ReadOnly, FOLD_FIX).unwrap();
        assert_eq!(d.flags(), FOLD_FIX | FIXED);
        assert_eq!(get(&mut d, "MIXED", FOLD_FIX).as_deref(), Some("value1"));
        assert_eq!(get(&mut d, "mixed", 0).as_deref(), Some("value1"));
        assert_eq!(get(&mut d, "MiXed", 0), None);
    }

    #[test]
    fn duplicates_per_policy() {
        let f = temp_file(b"a first\nb other\na second\n");
        let mut d = open_with(f.name(), Mode::ReadOnly, DUP_IGNORE).unwrap();
        assert_eq!(get(&mut d, "a", 0).as_deref(), Some("first"));
        let mut d = open_with(f.name(), Mode::ReadOnly, DUP_REPLACE).unwrap();
        assert_eq!(get(&mut d, "a", 0).as_deref(), Some("second"));
        let mut d = open_with(f.name(), Mode::ReadOnly, DUP_WARN).unwrap();
        assert_eq!(get(&mut d, "a", 0).as_deref(), Some("first"));
        let err = open_with(f.name(), Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, format!("{}, line 3: duplicate entry: \"a\"", f.name()));
        // Duplicates after folding count, and the message shows the key as written.
        let g = temp_file(b"a 1\nA 2\n");
        assert!(open_with(g.name(), Mode::ReadOnly, 0).is_ok());
        let err = open_with(g.name(), Mode::ReadOnly, FOLD_FIX).err().unwrap();
        assert_eq!(err.reason, format!("{}, line 2: duplicate entry: \"A\"", g.name()));
    }

    #[test]
    fn open_errors() {
        let f = temp_file(b"a b\n");
        let err = open_with(f.name(), Mode::ReadWrite, 0).err().unwrap();
        assert_eq!(err.reason, format!("texthash:{} map requires O_RDONLY access mode", f.name()));
        let missing = format!("{}.missing", f.name());
        let err = open_with(&missing, Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, format!("open database {missing}: No such file or directory"));
        // Postfix exits with this text; we fail the open with it.
        let dir = std::env::temp_dir();
        let err = open_with(dir.to_str().unwrap(), Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, format!("read {}: Is a directory", dir.display()));
    }

    #[test]
    fn sequence_over_snapshot() {
        let f = temp_file(b"k1 v1\nk2 v2\nk3 v3\n");
        let mut d = open_with(f.name(), Mode::ReadOnly, 0).unwrap();
        let mut c1 = None;
        let mut c2 = None;
        assert_eq!(d.sequence(&mut c1, false, 0).unwrap(), None, "NEXT without FIRST");
        let mut seen = Vec::new();
        let mut first = true;
        while let Some((k, v)) = d.sequence(&mut c1, first, 0).unwrap() {
            first = false;
            seen.push((String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()));
            // A second cursor is independent.
            if seen.len() == 1 {
                assert_eq!(d.sequence(&mut c2, true, 0).unwrap().unwrap().0, b"k1");
            }
        }
        assert_eq!(seen, vec![("k1".into(), "v1".into()), ("k2".into(), "v2".into()), ("k3".into(), "v3".into())]);
        assert_eq!(d.sequence(&mut c1, false, 0).unwrap(), None);
        assert_eq!(d.sequence(&mut c2, false, 0).unwrap().unwrap().0, b"k2");
        assert_eq!(d.update(b"k", b"v", 0), Err(DictError::Unsupported("update")));
    }

    #[test]
    fn empty_file_and_utf8_check() {
        let f = temp_file(b"# nothing\n");
        let mut d = open_with(f.name(), Mode::ReadOnly, 0).unwrap();
        assert_eq!(d.sequence(&mut None, true, 0).unwrap(), None);
        let g = temp_file(b"bad\xff value\ngood value\n");
        let mut d = open_with(g.name(), Mode::ReadOnly, UTF8_ACTIVE).unwrap();
        assert_eq!(get(&mut d, "good", 0).as_deref(), Some("value"));
        let mut out = Vec::new();
        assert!(!d.lookup(b"bad\xff", 0, &mut out).unwrap());
        let d = open_with(g.name(), Mode::ReadOnly, 0).unwrap();
        assert!(d.lookup(b"bad\xff", 0, &mut out).unwrap());
    }

    #[test]
    fn values_are_files() {
        let content = temp_file(b"foo");
        let f = temp_file(format!("k {}\nbad /nonexistent/x\n", content.name()).as_bytes());
        let mut d = open_with(f.name(), Mode::ReadOnly, SRC_RHS_IS_FILE).unwrap();
        assert_eq!(get(&mut d, "k", 0).as_deref(), Some("Zm9v"));
        assert_eq!(get(&mut d, "bad", 0), None);
    }

    #[test]
    fn hot_file_is_reread_until_cool() {
        let f = temp_file(b"a b\n");
        std::fs::File::options().write(true).open(&f.0).unwrap().set_modified(SystemTime::now()).unwrap();
        let start = std::time::Instant::now();
        let mut d = open_with(f.name(), Mode::ReadOnly, 0).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(get(&mut d, "a", 0).as_deref(), Some("b"));
    }
}
