//! `cdb:/path/name`: a constant database `/path/name.cdb` in the format of
//! D. J. Bernstein's cdb as tinycdb writes it (Postfix's dict_cdb), read-only.
//!
//! The file is read into memory at open rather than memory-mapped: `postmap`
//! replaces cdb files by rename, so the copy is exactly what the open file
//! held, and nothing done to the file afterwards (even an in-place truncation,
//! which would make a map fault with SIGBUS) can touch it. Every offset read
//! from the file is checked against its length. The cost is one copy of the
//! file per process that opens it; cdb tables are usually small.
//!
//! Lookups probe `key+NUL` and `key` per TRY1NULL/TRY0NULL, as dict_cdb does
//! (postmap writes cdb without the NUL); FOLD_FIX lowercases the key. No
//! locks (the file is constant). Postfix's dict_cdb has no sequence, so
//! sequence keeps the trait's "not supported". `changed()` is true once the
//! file at the path is no longer the one we read (removed, replaced, or
//! modified).
//!
//! Differences from Postfix 3.7: opened for proxywrite (O_RDWR|O_CREAT) the
//! table fails to open with Postfix's fatal text instead of killing the
//! process; a damaged file fails the open (or, for damage found only by a
//! lookup, answers RETRY, logged once) where tinycdb makes Postfix exit.

use crate::dict::{fold_key, Dict, DictError, DictResult, Mode, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FIXED, FOLD_FIX, TRY0NULL, TRY1NULL};
use crate::sys::errno::{io_error_text, strerror};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// 256 (position, slot count) pairs of little-endian u32 at the start.
const TOC_SIZE: usize = 2048;

pub(crate) struct Cdb {
    /// `/path/name.cdb`, Postfix's dict->name for cdb.
    cdb_path: String,
    data: Vec<u8>,
    flags: u32,
    /// TRY0NULL/TRY1NULL discovery state.
    nul: AtomicU32,
    /// Identity of what we read, for `changed()`.
    file: std::fs::File,
    ident: (u64, u64, i64, i64),
    /// A damage report was logged already.
    logged: AtomicBool,
}

/// The file is not a valid cdb (tinycdb's EPROTO).
#[derive(Debug)]
struct Corrupt;

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    if req.mode == Mode::ReadWrite {
        return Err(OpenError::new(
            "dict_cdb_open: inappropriate open flags for cdb database - specify O_RDONLY or O_WRONLY|O_CREAT|O_TRUNC",
        ));
    }
    let cdb_path = format!("{}.cdb", req.name);
    let mut file =
        std::fs::File::open(&cdb_path).map_err(|e| OpenError::io(format_args!("open database {cdb_path}"), &e))?;
    let unable = |text: String| OpenError::new(format!("dict_cdbq_open: unable to init {cdb_path}: {text}"));
    let meta = file.metadata().map_err(|e| unable(io_error_text(&e)))?;
    let mut data = Vec::new();
    file.read_to_end(&mut data).map_err(|e| {
        let mut err = unable(io_error_text(&e));
        err.transient = e.kind() == std::io::ErrorKind::OutOfMemory;
        err
    })?;
    // cdb offsets are 32-bit: tinycdb ignores anything beyond 4 GiB.
    data.truncate(u32::MAX as usize);
    check_toc(&data).map_err(|Corrupt| {
        // A file cut short (truncated, or read while being written in
        // place) is fixed by postmap: try the open again.
        let mut err = unable(protocol_error());
        err.fixable = true;
        err
    })?;

    let name = req.name;
    if let Ok(src) = std::fs::metadata(name) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        if src.mtime() > meta.mtime() && src.mtime() < now - 100 {
            log::warn!("database {cdb_path} is older than source file {name}");
        }
    }
    let mut flags = req.flags | FIXED;
    if flags & (TRY0NULL | TRY1NULL) == 0 {
        flags |= TRY0NULL | TRY1NULL;
    }
    Ok(Box::new(Cdb {
        cdb_path,
        data,
        nul: AtomicU32::new(flags & (TRY0NULL | TRY1NULL)),
        flags,
        file,
        ident: identity(&meta),
        logged: AtomicBool::new(false),
    }))
}

fn identity(m: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    (m.dev(), m.ino(), m.mtime(), m.mtime_nsec())
}

fn protocol_error() -> String {
    strerror(libc::EPROTO)
}

fn u32_at(data: &[u8], pos: usize) -> Result<u32, Corrupt> {
    let end = pos.checked_add(4).ok_or(Corrupt)?;
    let bytes = data.get(pos..end).ok_or(Corrupt)?;
    let bytes: [u8; 4] = bytes.try_into().map_err(|_| Corrupt)?;
    Ok(u32::from_le_bytes(bytes))
}

/// The table of contents must be there, and every hash table inside the
/// file after it (tinycdb checks these lazily and fails a lookup; checking
/// once at open gives one error instead of one per unlucky key).
fn check_toc(data: &[u8]) -> Result<(), Corrupt> {
    if data.len() < TOC_SIZE {
        return Err(Corrupt);
    }
    for i in 0..256 {
        let pos = u32_at(data, i * 8)? as usize;
        let slots = u32_at(data, i * 8 + 4)? as usize;
        if slots == 0 {
            continue;
        }
        let end = slots.checked_mul(8).and_then(|n| n.checked_add(pos)).ok_or(Corrupt)?;
        if pos < TOC_SIZE || end > data.len() {
            return Err(Corrupt);
        }
    }
    Ok(())
}

/// cdb's hash: h = 5381; h = (h * 33) ^ c.
fn hash(key: &[u8]) -> u32 {
    key.iter().fold(5381u32, |h, &c| h.wrapping_shl(5).wrapping_add(h) ^ u32::from(c))
}

/// cdb_find(): the value of `key`, every offset checked.
fn find<'a>(data: &'a [u8], key: &[u8]) -> Result<Option<&'a [u8]>, Corrupt> {
    let h = hash(key);
    let toc = (h as usize & 255) * 8;
    let table = u32_at(data, toc)? as usize;
    let slots = u32_at(data, toc + 4)? as usize;
    if slots == 0 {
        return Ok(None);
    }
    let mut slot = (h as usize >> 8) % slots;
    for _ in 0..slots {
        let at = slot.checked_mul(8).and_then(|n| n.checked_add(table)).ok_or(Corrupt)?;
        let slot_hash = u32_at(data, at)?;
        let rpos = u32_at(data, at + 4)? as usize;
        if rpos == 0 {
            return Ok(None);
        }
        if slot_hash == h {
            let klen = u32_at(data, rpos)? as usize;
            if klen == key.len() {
                let dlen = u32_at(data, rpos.checked_add(4).ok_or(Corrupt)?)? as usize;
                let kpos = rpos.checked_add(8).ok_or(Corrupt)?;
                let dpos = kpos.checked_add(klen).ok_or(Corrupt)?;
                let stored = data.get(kpos..dpos).ok_or(Corrupt)?;
                if stored == key {
                    let dend = dpos.checked_add(dlen).ok_or(Corrupt)?;
                    return data.get(dpos..dend).map(Some).ok_or(Corrupt);
                }
            }
        }
        slot += 1;
        if slot == slots {
            slot = 0;
        }
    }
    Ok(None)
}

impl Dict for Cdb {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        // a local file read; cdb files are replaced, never locked (as in Postfix).
        Waits::Never
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        let key = fold_key(key, flags & FOLD_FIX != 0);
        let mut result = Ok(None);
        // Threads racing here learn the same answer from the same file.
        let nul = self.nul.load(Ordering::Relaxed);
        if nul & TRY1NULL != 0 {
            result = crate::dict::probe_with_nul(&key, |probe| find(&self.data, probe));
            if let Ok(Some(_)) = result {
                self.nul.fetch_and(!TRY0NULL, Ordering::Relaxed);
            }
        }
        if matches!(result, Ok(None)) && nul & TRY0NULL != 0 {
            result = find(&self.data, &key);
            if let Ok(Some(_)) = result {
                self.nul.fetch_and(!TRY1NULL, Ordering::Relaxed);
            }
        }
        match result {
            Ok(Some(value)) => {
                // Postfix hands values on as C strings.
                out.extend_from_slice(crate::dict::postmap_text::until_nul(value));
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(Corrupt) => {
                let text = format!("error reading {}: {}", self.cdb_path, protocol_error());
                if !self.logged.swap(true, Ordering::Relaxed) {
                    log::error!("{text}");
                }
                Err(DictError::Retry(text))
            }
        }
    }

    /// Postfix notices a changed mtime or a removed file (link count 0) on
    /// its open descriptor; a file replaced by rename also shows at the path.
    fn changed(&self) -> bool {
        let held = match self.file.metadata() {
            Ok(m) => m,
            Err(_) => return true,
        };
        if held.nlink() == 0 || identity(&held) != self.ident {
            return true;
        }
        match std::fs::metadata(&self.cdb_path) {
            Ok(now) => identity(&now) != self.ident,
            Err(_) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::testutil::{copy_fixture, fixture};
    use crate::test_support::TempDir;

    // Tables built by postmap from tests/fixtures/basic.txt:
    // "Alice alice@example.com\nbob bob@example.com, bob2@example.com\nMiXed Case Value\n"
    // (basic.cdb; keepcase.cdb with -N -f); keys300.cdb holds "keyN valueN"
    // for N below 300; changed.cdb "alice changed".

    fn open_with(name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
        let params = Params::default();
        open(&OpenRequest { type_name: "cdb", name, mode, flags, params: &params })
    }

    use crate::dict::testutil::get;

    #[test]
    fn reads_postmap_files() {
        let lab = TempDir::new("cdb");
        let t = copy_fixture(lab.path(), "basic.cdb", "t");
        let mut d = open_with(&t, Mode::ReadOnly, 0).unwrap();
        assert_eq!(d.flags(), 28, "FIXED|TRY1NULL|TRY0NULL, as Postfix replies");
        assert_eq!(get(&mut d, "alice", 0).as_deref(), Some("alice@example.com"));
        assert_eq!(get(&mut d, "Alice", 0), None);
        assert_eq!(get(&mut d, "ALICE", FOLD_FIX).as_deref(), Some("alice@example.com"));
        assert_eq!(get(&mut d, "bob", 0).as_deref(), Some("bob@example.com, bob2@example.com"));
        assert_eq!(get(&mut d, "mixed", 0).as_deref(), Some("Case Value"));
        assert_eq!(get(&mut d, "nobody", FOLD_FIX), None);
        assert_eq!(get(&mut d, "", 0), None);
        // Written without NUL by default: discovered as such.
        assert_eq!(find(&d_data(&t), b"alice").unwrap(), Some(&b"alice@example.com"[..]));
        assert!(d.sequence(&mut None, true, 0).is_err(), "Postfix's dict_cdb has no sequence");
        assert!(d.update(b"k", b"v", 0).is_err());
        assert!(!d.changed());

        // postmap -N (with NUL) and -f (keep case).
        let u = copy_fixture(lab.path(), "keepcase.cdb", "u");
        assert_eq!(find(&d_data(&u), b"Alice\0").unwrap(), Some(&b"alice@example.com\0"[..]));
        let mut d = open_with(&u, Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "Alice", 0).as_deref(), Some("alice@example.com"));
        assert_eq!(get(&mut d, "MiXed", 0).as_deref(), Some("Case Value"));
        assert_eq!(get(&mut d, "mixed", 0), None);
        // Explicit TRY0NULL: the NUL keys are not probed.
        let mut d = open_with(&u, Mode::ReadOnly, TRY0NULL).unwrap();
        assert_eq!(d.flags(), FIXED | TRY0NULL);
        assert_eq!(get(&mut d, "Alice", 0), None);

        // Many keys: every one is found, collisions and wrap-around included
        // (5000 in tests/postfix_files.rs).
        let m = copy_fixture(lab.path(), "keys300.cdb", "m");
        let mut d = open_with(&m, Mode::ReadOnly, 0).unwrap();
        for i in 0..300 {
            assert_eq!(get(&mut d, &format!("key{i}"), 0), Some(format!("value{i}")));
            assert_eq!(get(&mut d, &format!("nokey{i}"), 0), None);
        }
    }

    fn d_data(t: &str) -> Vec<u8> {
        std::fs::read(format!("{t}.cdb")).unwrap()
    }

    #[test]
    fn open_errors() {
        let lab = TempDir::new("cdb");
        let t = copy_fixture(lab.path(), "basic.cdb", "t");
        let err = open_with(&t, Mode::ReadWrite, 0).err().unwrap();
        assert_eq!(
            err.reason,
            "dict_cdb_open: inappropriate open flags for cdb database - specify O_RDONLY or O_WRONLY|O_CREAT|O_TRUNC"
        );
        let missing = lab.path().join("missing").to_str().unwrap().to_owned();
        let err = open_with(&missing, Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, format!("open database {missing}.cdb: No such file or directory"));
    }

    #[test]
    fn replacement_and_removal_are_changes() {
        let lab = TempDir::new("cdb");
        let t = copy_fixture(lab.path(), "basic.cdb", "t");
        let mut d = open_with(&t, Mode::ReadOnly, 0).unwrap();
        assert!(!d.changed());
        // postmap rebuilds into .cdb.tmp and renames: our copy stays intact
        // (done here by hand; by postmap in tests/postfix_files.rs).
        std::fs::copy(fixture("changed.cdb"), format!("{t}.cdb.tmp")).unwrap();
        std::fs::rename(format!("{t}.cdb.tmp"), format!("{t}.cdb")).unwrap();
        assert!(d.changed());
        assert_eq!(get(&mut d, "alice", 0).as_deref(), Some("alice@example.com"));
        let mut fresh = open_with(&t, Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut fresh, "alice", 0).as_deref(), Some("changed"));
        assert!(!fresh.changed());
        std::fs::remove_file(format!("{t}.cdb")).unwrap();
        assert!(fresh.changed());
    }

    #[test]
    fn damaged_files_give_errors_not_panics() {
        let lab = TempDir::new("cdb");
        let t = copy_fixture(lab.path(), "keys300.cdb", "t");
        let path = format!("{t}.cdb");
        let good = std::fs::read(&path).unwrap();
        let keys: Vec<String> = (0..300).map(|i| format!("key{i}")).collect();

        // Too short for the table of contents: tinycdb's EPROTO at open.
        std::fs::write(&path, &good[..100]).unwrap();
        let err = open_with(&t, Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, format!("dict_cdbq_open: unable to init {path}: Protocol error"));

        // Every truncation cuts the hash tables at the end: an open error.
        for len in (0..good.len()).step_by(7) {
            std::fs::write(&path, &good[..len]).unwrap();
            let err = open_with(&t, Mode::ReadOnly, 0).err().unwrap();
            assert_eq!(err.reason, format!("dict_cdbq_open: unable to init {path}: Protocol error"));
        }

        // Random damage anywhere (deterministic generator).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..400 {
            let mut bad = good.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x % bad.len() as u64) as usize;
                bad[at] = (x >> 32) as u8;
            }
            std::fs::write(&path, &bad).unwrap();
            if let Ok(d) = open_with(&t, Mode::ReadOnly, 0) {
                for k in &keys {
                    let _ = d.lookup(k.as_bytes(), FOLD_FIX, &mut Vec::new());
                }
            }
        }

        // Hand-made damage: a slot pointing past the end, a huge record length.
        let mut bad = good.clone();
        let h = hash(b"key7") as usize;
        let table = u32_at(&bad, (h & 255) * 8).unwrap() as usize;
        let slots = u32_at(&bad, (h & 255) * 8 + 4).unwrap() as usize;
        for s in 0..slots {
            let at = table + s * 8 + 4;
            bad[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        }
        std::fs::write(&path, &bad).unwrap();
        let d = open_with(&t, Mode::ReadOnly, 0).unwrap();
        let err = d.lookup(b"key7", 0, &mut Vec::new()).unwrap_err();
        assert_eq!(err, DictError::Retry(format!("error reading {path}: Protocol error")));
        // A table of contents pointing outside the file fails the open.
        let mut bad = good.clone();
        bad[0..4].copy_from_slice(&(good.len() as u32).to_le_bytes());
        std::fs::write(&path, &bad).unwrap();
        assert!(open_with(&t, Mode::ReadOnly, 0).is_err());
    }
}
