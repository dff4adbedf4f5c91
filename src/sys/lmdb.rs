//! A minimal safe wrapper over the C LMDB library (`lmdb-master-sys`, which
//! vendors OpenLDAP's mdb.master branch: LMDB 0.9, the on-disk format of
//! Debian's liblmdb 0.9.24 that Postfix's `postmap` uses).
//!
//! This is the only place with `unsafe` for LMDB. The wrapper never lets a
//! live transaction or cursor outlive one method call: every method begins its
//! own transaction and ends it before returning, and copies whatever it returns
//! out of the memory map. So no LMDB pointer into the map escapes, the
//! environment can move between threads, and the map size may be changed
//! between calls (LMDB allows that only while the process has no transaction
//! open). A read transaction that ends is reset and kept for the next read
//! (renewing one costs a fraction of beginning one: no allocation); a reset
//! transaction holds no snapshot and no pointer into the map.
//!
//! LMDB trusts its file. A truncated file would make the memory map fault
//! (SIGBUS) when a missing page is touched, so [`Env::check_size`] compares
//! the file length with the last page the newest meta page claims, before the
//! table is used and at the start of every transaction (unless the caller
//! vouches, with [`Env::set_size_known`], that it checked under a lock it
//! still holds). Damage inside pages
//! that LMDB detects comes back as `MDB_CORRUPTED`/`MDB_PAGE_NOTFOUND`; damage it
//! does not detect is outside what can be checked cheaply. A file cut short
//! between that check and a read (someone truncating it without the lock)
//! no longer kills the process: the map is watched ([`super::map_guard`]),
//! and an operation that touched a missing page fails with
//! [`Error::MapFault`], whatever it read.

use super::map_guard::{self, Watch};
use lmdb_master_sys as ffi;
use std::ffi::{c_int, c_uint, CStr};
use std::os::fd::BorrowedFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicPtr, Ordering};

/// Reset read transactions kept per environment; more reads at once than
/// this begin (and end) transactions of their own.
const SPARE_READS: usize = 8;

/// An LMDB return code, or our own size check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// An LMDB or errno code, as `mdb_strerror()` names it.
    Code(c_int),
    /// The file is shorter than its meta page says.
    Truncated { size: u64, need: u64 },
    /// The meta page's page size is implausible.
    BadPageSize(u32),
    /// The file shrank under the map during the operation: what it read is
    /// void, and the environment must be reopened.
    MapFault,
}

impl Error {
    pub(crate) const MAP_FULL: Error = Error::Code(ffi::MDB_MAP_FULL);
    pub(crate) const MAP_RESIZED: Error = Error::Code(ffi::MDB_MAP_RESIZED);
    pub(crate) const PANIC: Error = Error::Code(ffi::MDB_PANIC);
    pub(crate) const BAD_VALSIZE: Error = Error::Code(ffi::MDB_BAD_VALSIZE);
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Error::Code(code) => f.write_str(&strerror(code)),
            Error::Truncated { size, need } => {
                write!(f, "database file is truncated: {size} bytes, its meta page needs {need}")
            }
            Error::BadPageSize(size) => write!(f, "{}: page size {size}", strerror(ffi::MDB_INVALID)),
            Error::MapFault => f.write_str("database file was truncated while in use"),
        }
    }
}

impl std::error::Error for Error {}

/// `mdb_strerror()`: LMDB's own texts for its codes, strerror() otherwise.
/// The LMDB library's version string (for `proxymap --version`).
pub(crate) fn version() -> String {
    // SAFETY: mdb_version accepts null out-pointers and returns a pointer
    // to a static NUL-terminated string.
    let text = unsafe { ffi::mdb_version(ptr::null_mut(), ptr::null_mut(), ptr::null_mut()) };
    if text.is_null() {
        return "unknown".into();
    }
    // SAFETY: non-null, and static for the life of the process.
    unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

pub(crate) fn strerror(code: c_int) -> String {
    if code >= 0 {
        return super::errno::strerror(code);
    }
    // SAFETY: mdb_strerror accepts any code and only looks it up.
    let text = unsafe { ffi::mdb_strerror(code) };
    // SAFETY: for negative codes mdb_strerror returns a pointer to a static,
    // NUL-terminated string from LMDB's own table (or a static "Invalid error
    // code"-style fallback); it is never freed or modified.
    let text = unsafe { CStr::from_ptr(text) };
    text.to_string_lossy().into_owned()
}

fn check(code: c_int) -> Result<(), Error> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Code(code))
    }
}

/// The flags Postfix opens every LMDB table with: a plain file (no
/// subdirectory) and no LMDB lock file (Postfix locks with fcntl() itself).
pub(crate) const POSTFIX_ENV_FLAGS: c_uint = ffi::MDB_NOSUBDIR | ffi::MDB_NOLOCK;

/// One open LMDB environment with its unnamed main database.
pub(crate) struct Env {
    env: NonNull<ffi::MDB_env>,
    dbi: ffi::MDB_dbi,
    read_only: bool,
    /// See [`Env::set_size_known`].
    size_known: bool,
    /// Reset read transactions of this environment, each owned by whoever
    /// swaps it out (null: empty).
    spare: [AtomicPtr<ffi::MDB_txn>; SPARE_READS],
    /// The memory map, watched for faults past the file's end.
    watch: Watch,
}

// SAFETY: LMDB allows an environment to be used from any thread as long as
// each transaction stays in one thread; ours never outlive a method call.
unsafe impl Send for Env {}
// SAFETY: through `&Env` only read-only transactions begin or renew
// (get_into) and the environment's recorded facts are read (fd, map_size,
// check_size). LMDB runs read transactions of one environment side by side;
// with MDB_NOLOCK it leaves excluding writers to the caller, and every write,
// map resize or close needs `&mut Env`. A spare transaction is used by one
// thread at a time: the atomic swap that takes it out of `spare` hands it over.
unsafe impl Sync for Env {}

/// A key and its value, copied out of the map.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// Outcome of [`Env::put`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Put {
    Stored,
    /// `no_overwrite` was asked and the key exists.
    KeyExists,
}

impl Env {
    /// Open `path` (the data file itself) with Postfix's flags; `read_only`
    /// adds MDB_RDONLY, otherwise the file is created with mode 0644 (less the
    /// umask) when missing. `map_size` is the initial memory map size.
    pub(crate) fn open(path: &CStr, read_only: bool, map_size: usize) -> Result<Env, Error> {
        let mut raw = ptr::null_mut();
        // SAFETY: `raw` is a valid out-pointer; on success it holds a new env.
        check(unsafe { ffi::mdb_env_create(&mut raw) })?;
        let env = NonNull::new(raw).ok_or(Error::Code(libc::ENOMEM))?;
        // From here on dropping `me` closes the environment.
        let mut me = Env {
            env,
            dbi: 0,
            read_only,
            size_known: false,
            spare: std::array::from_fn(|_| AtomicPtr::default()),
            watch: Watch::none(),
        };
        let flags = POSTFIX_ENV_FLAGS | if read_only { ffi::MDB_RDONLY } else { 0 };
        // SAFETY: the env was created above and is not yet opened, when the
        // map size may always be set.
        check(unsafe { ffi::mdb_env_set_mapsize(me.env.as_ptr(), map_size) })?;
        let making = map_guard::making_map();
        // SAFETY: the env is created and not yet opened; the path is a valid
        // C string that LMDB copies.
        check(unsafe { ffi::mdb_env_open(me.env.as_ptr(), path.as_ptr(), flags, 0o644) })?;
        me.watch_map();
        drop(making);
        me.check_size()?;
        let mut txn = ptr::null_mut();
        let txn_flags = if read_only { ffi::MDB_RDONLY } else { 0 };
        // SAFETY: the env is open and has no other transaction; `txn` is a
        // valid out-pointer.
        check(unsafe { ffi::mdb_txn_begin(me.env.as_ptr(), ptr::null_mut(), txn_flags, &mut txn) })?;
        let mut dbi = 0;
        // SAFETY: `txn` was just begun and is ended right below. The unnamed
        // main database always exists and its handle stays valid after the
        // transaction ends (LMDB never closes MAIN_DBI).
        let rc = unsafe { ffi::mdb_dbi_open(txn, ptr::null(), 0, &mut dbi) };
        // SAFETY: `txn` is live and not used after this.
        unsafe { ffi::mdb_txn_abort(txn) };
        check(rc)?;
        me.dbi = dbi;
        Ok(me)
    }

    /// The data file's descriptor, for fcntl() locks and fstat(). Valid while
    /// `self` lives.
    pub(crate) fn fd(&self) -> Result<BorrowedFd<'_>, Error> {
        let mut fd: ffi::mdb_filehandle_t = -1;
        // SAFETY: the env is open; `fd` is a valid out-pointer.
        check(unsafe { ffi::mdb_env_get_fd(self.env.as_ptr(), &mut fd) })?;
        if fd < 0 {
            return Err(Error::Code(libc::EBADF));
        }
        // SAFETY: LMDB keeps this descriptor open until mdb_env_close, which
        // only Drop calls; the borrow is tied to `&self`.
        Ok(unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// Current memory map size.
    pub(crate) fn map_size(&self) -> usize {
        self.info().me_mapsize
    }

    fn info(&self) -> ffi::MDB_envinfo {
        let mut info = std::mem::MaybeUninit::<ffi::MDB_envinfo>::zeroed();
        // SAFETY: the env is open; `info` is a valid out-pointer.
        unsafe { ffi::mdb_env_info(self.env.as_ptr(), info.as_mut_ptr()) };
        // SAFETY: MDB_envinfo is plain data (a pointer and integers), valid
        // all-zero as it started, so initialised whether or not the call wrote it.
        unsafe { info.assume_init() }
    }

    /// Watch the current map, just made or moved (under `making_map`).
    fn watch_map(&mut self) {
        self.watch = Watch::none();
        let len = self.map_size();
        if let Ok(fd) = self.fd() {
            self.watch = map_guard::watch_file_map(fd, len);
        }
    }

    /// `result`, unless the map faulted meanwhile: then what was read is void.
    fn unless_faulted<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        if self.watch.faulted() {
            return Err(Error::MapFault);
        }
        result
    }

    /// Change the memory map size; 0 adopts the size recorded in the file by
    /// another process (recovery from MDB_MAP_RESIZED). Callers hold no
    /// transaction (none of ours outlives a method).
    pub(crate) fn set_map_size(&mut self, size: usize) -> Result<(), Error> {
        // Reset transactions hold nothing of the map, but LMDB's contract
        // is "no transactions": end them too.
        self.free_spares();
        if self.watch.faulted() {
            return Err(Error::MapFault);
        }
        let making = map_guard::making_map();
        // SAFETY: the env is open and, by construction, has no active transaction.
        check(unsafe { ffi::mdb_env_set_mapsize(self.env.as_ptr(), size) })?;
        self.watch_map();
        drop(making);
        self.check_size()
    }

    /// While `known`, transactions skip the length check: the caller holds a
    /// lock under which this environment's file was checked, so no writer
    /// that honours the lock can have shortened it since.
    pub(crate) fn set_size_known(&mut self, known: bool) {
        self.size_known = known;
    }

    /// Refuse a file shorter than the pages its newest meta page claims, so
    /// that no access can fault on a page beyond the end of the file.
    pub(crate) fn check_size(&self) -> Result<(), Error> {
        let fd = self.fd()?;
        let size = nix::sys::stat::fstat(fd).map_err(|e| Error::Code(e as c_int))?.st_size.max(0) as u64;
        let mut stat = std::mem::MaybeUninit::<ffi::MDB_stat>::zeroed();
        // SAFETY: the env is open; mdb_env_stat only reads the page size it
        // recorded at open and fills the plain data `stat` points at.
        check(unsafe { ffi::mdb_env_stat(self.env.as_ptr(), stat.as_mut_ptr()) })?;
        // SAFETY: MDB_stat is plain integers, valid all-zero as it started
        // (and filled by the successful call above).
        let psize = unsafe { stat.assume_init() }.ms_psize;
        if !(512..=65536).contains(&psize) || !psize.is_power_of_two() {
            return Err(Error::BadPageSize(psize));
        }
        // Both meta pages must be in the file before the meta can be read
        // through the map.
        let metas = 2 * u64::from(psize);
        if size < metas {
            return Err(Error::Truncated { size, need: metas });
        }
        let mut info = std::mem::MaybeUninit::<ffi::MDB_envinfo>::zeroed();
        // SAFETY: the env is open and both meta pages are inside the file,
        // which is all mdb_env_info reads; it fills the plain data `info` points at.
        check(unsafe { ffi::mdb_env_info(self.env.as_ptr(), info.as_mut_ptr()) })?;
        // SAFETY: MDB_envinfo is plain data, valid all-zero as it started
        // (and filled by the successful call above).
        let last = unsafe { info.assume_init() }.me_last_pgno as u64;
        let need = last.saturating_add(1).saturating_mul(u64::from(psize));
        if size < need {
            return Err(Error::Truncated { size, need });
        }
        self.unless_faulted(Ok(()))
    }

    /// Look `key` up in a read transaction of its own; the value is copied.
    pub(crate) fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let mut value = Vec::new();
        Ok(self.get_into(key, self.size_known, &mut value)?.then_some(value))
    }

    /// [`Env::get`] side by side with other reads, the value copied into
    /// `out` (no allocation per lookup); `size_known` as
    /// [`Env::set_size_known`] says, for this read only. False: not found.
    pub(crate) fn get_into(&self, key: &[u8], size_known: bool, out: &mut Vec<u8>) -> Result<bool, Error> {
        let txn = self.begin_read(size_known)?;
        let mut k = val(key);
        let mut v = ffi::MDB_val { mv_size: 0, mv_data: ptr::null_mut() };
        // SAFETY: `txn` is live, `dbi` is the main database, `k` points into
        // `key`, which outlives the call; LMDB does not write through it.
        let rc = unsafe { ffi::mdb_get(txn.txn, self.dbi, &mut k, &mut v) };
        out.clear();
        let found = match rc {
            0 => {
                // SAFETY: LMDB just set `v`, and `txn` is still live.
                out.extend_from_slice(unsafe { slice(&v) });
                Ok(true)
            }
            ffi::MDB_NOTFOUND => Ok(false),
            e => Err(Error::Code(e)),
        };
        drop(txn); // the copy is made: now the map page may go
        self.unless_faulted(found)
    }

    /// Store `key` → `value` in a write transaction of its own and commit it.
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8], no_overwrite: bool) -> Result<Put, Error> {
        let txn = self.begin_write()?;
        let mut k = val(key);
        let mut v = val(value);
        let flags = if no_overwrite { ffi::MDB_NOOVERWRITE } else { 0 };
        // SAFETY: `txn` is a live write transaction; `k`/`v` point into
        // slices that outlive the call. With MDB_NOOVERWRITE LMDB may write
        // the existing value's address into `v`, which we then ignore.
        let rc = unsafe { ffi::mdb_put(txn.0, self.dbi, &mut k, &mut v, flags) };
        let result = match rc {
            0 => txn.commit().map(|()| Put::Stored),
            ffi::MDB_KEYEXIST => Ok(Put::KeyExists),
            e => Err(Error::Code(e)),
        };
        self.unless_faulted(result)
    }

    /// Remove `key` (all its data) and commit; false when it was absent.
    pub(crate) fn del(&mut self, key: &[u8]) -> Result<bool, Error> {
        let txn = self.begin_write()?;
        let mut k = val(key);
        // SAFETY: `txn` is a live write transaction; `k` points into `key`.
        let rc = unsafe { ffi::mdb_del(txn.0, self.dbi, &mut k, ptr::null_mut()) };
        let result = match rc {
            0 => txn.commit().map(|()| true),
            ffi::MDB_NOTFOUND => Ok(false),
            e => Err(Error::Code(e)),
        };
        self.unless_faulted(result)
    }

    /// The first entry (`after` = None) or the first entry whose key sorts
    /// after `after`, in a read transaction of its own; copied out.
    pub(crate) fn next_after(&mut self, after: Option<&[u8]>) -> Result<Option<Entry>, Error> {
        let txn = self.begin_read(self.size_known)?;
        let mut cursor = ptr::null_mut();
        // SAFETY: `txn` is live; `cursor` is a valid out-pointer.
        check(unsafe { ffi::mdb_cursor_open(txn.txn, self.dbi, &mut cursor) })?;
        let cursor = Cursor(cursor);
        let mut k = ffi::MDB_val { mv_size: 0, mv_data: ptr::null_mut() };
        let mut v = ffi::MDB_val { mv_size: 0, mv_data: ptr::null_mut() };
        let rc = match after {
            None => cursor.get(&mut k, &mut v, ffi::MDB_FIRST),
            Some(last) => {
                k = val(last);
                // SET_RANGE: the smallest key >= `last`. If that is `last`
                // itself, step once more; if `last` was deleted meanwhile, it
                // already is the next one.
                match cursor.get(&mut k, &mut v, ffi::MDB_SET_RANGE) {
                    // SAFETY: on success `k` points into the map, valid until
                    // the transaction ends (below).
                    0 if unsafe { slice(&k) } == last => cursor.get(&mut k, &mut v, ffi::MDB_NEXT),
                    rc => rc,
                }
            }
        };
        let out = match rc {
            0 => {
                // SAFETY: LMDB just set `k`, and `txn` is still live.
                let key = unsafe { copy(&k) };
                // SAFETY: LMDB just set `v`, and `txn` is still live.
                let value = unsafe { copy(&v) };
                Ok(Some((key, value)))
            }
            ffi::MDB_NOTFOUND => Ok(None),
            e => Err(Error::Code(e)),
        };
        drop(cursor);
        drop(txn);
        self.unless_faulted(out)
    }

    /// A write transaction; only a read-write environment has them.
    fn begin_write(&mut self) -> Result<Txn, Error> {
        if self.read_only {
            return Err(Error::Code(libc::EACCES));
        }
        if !self.size_known {
            self.check_size()?;
        }
        let mut txn = ptr::null_mut();
        // SAFETY: the env is open and read-write. `&mut self` means no other
        // transaction of this env is live (read ones end within the method
        // that began them; spare ones are reset, which LMDB allows beside a
        // writer), and the Txn ends within the calling method.
        check(unsafe { ffi::mdb_txn_begin(self.env.as_ptr(), ptr::null_mut(), 0, &mut txn) })?;
        Ok(Txn(txn))
    }

    /// A read transaction: a spare one renewed, or a new one.
    fn begin_read(&self, size_known: bool) -> Result<ReadTxn<'_>, Error> {
        // A file truncated behind our back must fail here, not fault later.
        if !size_known {
            self.check_size()?;
        }
        for slot in &self.spare {
            if slot.load(Ordering::Relaxed).is_null() {
                continue;
            }
            let txn = slot.swap(ptr::null_mut(), Ordering::Acquire);
            if txn.is_null() {
                continue;
            }
            // SAFETY: `txn` is a reset read transaction of this env (only
            // ReadTxn::drop parks one), now ours alone. With MDB_NOLOCK (always
            // set, see POSTFIX_ENV_FLAGS) a read transaction has no reader
            // slot tied to the thread that began it, so any thread may renew it.
            let rc = unsafe { ffi::mdb_txn_renew(txn) };
            if rc != 0 {
                // SAFETY: a failed renewal leaves the transaction finished;
                // abort frees it.
                unsafe { ffi::mdb_txn_abort(txn) };
                return Err(Error::Code(rc));
            }
            return Ok(ReadTxn { env: self, txn });
        }
        let mut txn = ptr::null_mut();
        // SAFETY: the env is open; read transactions of other threads may be
        // live beside this one (see Sync above), and a write transaction
        // cannot be (it needs `&mut self`).
        check(unsafe { ffi::mdb_txn_begin(self.env.as_ptr(), ptr::null_mut(), ffi::MDB_RDONLY, &mut txn) })?;
        Ok(ReadTxn { env: self, txn })
    }

    fn free_spares(&mut self) {
        for slot in &mut self.spare {
            let txn = std::mem::replace(slot.get_mut(), ptr::null_mut());
            if !txn.is_null() {
                // SAFETY: a parked transaction is reset and owned by the
                // slot; mdb_txn_abort frees a reset transaction.
                unsafe { ffi::mdb_txn_abort(txn) };
            }
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.free_spares();
        // Unwatched before the map goes, so that no later mapping at that
        // address is taken for it.
        self.watch = Watch::none();
        // SAFETY: the env is open and no transaction is alive (they end within
        // each method, and the spare ones were just freed); nothing uses the
        // pointer afterwards.
        unsafe { ffi::mdb_env_close(self.env.as_ptr()) }
    }
}

/// A read transaction, reset and parked for reuse on drop (or aborted when
/// every spare slot is taken).
struct ReadTxn<'e> {
    env: &'e Env,
    txn: *mut ffi::MDB_txn,
}

impl Drop for ReadTxn<'_> {
    fn drop(&mut self) {
        // SAFETY: the transaction is live and read-only, its cursors were
        // closed before (callers drop Cursor first); reset ends its snapshot
        // and keeps the allocation for mdb_txn_renew.
        unsafe { ffi::mdb_txn_reset(self.txn) };
        for slot in &self.env.spare {
            if slot.compare_exchange(ptr::null_mut(), self.txn, Ordering::Release, Ordering::Relaxed).is_ok() {
                return;
            }
        }
        // SAFETY: reset above and parked nowhere: still ours; abort frees it.
        unsafe { ffi::mdb_txn_abort(self.txn) };
    }
}

/// A transaction, aborted on drop unless committed.
struct Txn(*mut ffi::MDB_txn);

impl Txn {
    fn commit(self) -> Result<(), Error> {
        let txn = self.0;
        std::mem::forget(self);
        // SAFETY: `txn` is live; mdb_txn_commit frees it whatever the result,
        // and `forget` above keeps Drop from aborting it a second time.
        check(unsafe { ffi::mdb_txn_commit(txn) })
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        // SAFETY: the transaction is live (commit forgets `self`) and its
        // cursors were closed before (Cursor is dropped first by callers).
        unsafe { ffi::mdb_txn_abort(self.0) }
    }
}

/// A cursor of a read transaction, closed on drop (before the transaction).
struct Cursor(*mut ffi::MDB_cursor);

impl Cursor {
    fn get(&self, k: &mut ffi::MDB_val, v: &mut ffi::MDB_val, op: ffi::MDB_cursor_op) -> c_int {
        // SAFETY: the cursor is open in a live transaction; `k` and `v` are
        // valid MDB_vals (for SET_RANGE `k` points at caller memory LMDB only
        // reads, then replaces with a pointer into the map).
        unsafe { ffi::mdb_cursor_get(self.0, k, v, op) }
    }
}

impl Drop for Cursor {
    fn drop(&mut self) {
        // SAFETY: the cursor is open and its transaction is still live.
        unsafe { ffi::mdb_cursor_close(self.0) }
    }
}

fn val(data: &[u8]) -> ffi::MDB_val {
    ffi::MDB_val { mv_size: data.len(), mv_data: data.as_ptr() as *mut _ }
}

/// # Safety
/// `v` must come from LMDB within a transaction that is still live.
unsafe fn slice(v: &ffi::MDB_val) -> &[u8] {
    if v.mv_size == 0 || v.mv_data.is_null() {
        return &[];
    }
    // SAFETY: per the caller's contract LMDB set `v` to `mv_size` readable
    // bytes in the memory map, and the file covers them (check_size).
    unsafe { std::slice::from_raw_parts(v.mv_data as *const u8, v.mv_size) }
}

/// # Safety
/// As for [`slice`].
unsafe fn copy(v: &ffi::MDB_val) -> Vec<u8> {
    // SAFETY: the caller's contract is slice()'s.
    unsafe { slice(v) }.to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict::testutil::TempFile;
    use std::ffi::CString;

    fn spares(env: &Env) -> usize {
        env.spare.iter().filter(|s| !s.load(Ordering::Relaxed).is_null()).count()
    }

    fn open_rw(t: &TempFile) -> Env {
        let path = CString::new(t.name()).expect("path");
        Env::open(&path, false, 1 << 20).expect("open")
    }

    #[test]
    fn a_renewed_read_transaction_sees_the_newest_commit() {
        let t = TempFile::new("sys-lmdb-renew", b"");
        let mut env = open_rw(&t);
        assert_eq!(env.put(b"k", b"one", false), Ok(Put::Stored));
        let mut out = Vec::new();
        assert_eq!(env.get_into(b"k", false, &mut out), Ok(true));
        assert_eq!(out, b"one");
        assert_eq!(spares(&env), 1, "the ended read is kept");
        // A write beside the reset transaction, then a read that renews it.
        assert_eq!(env.put(b"k", b"two", false), Ok(Put::Stored));
        assert_eq!(env.get_into(b"k", false, &mut out), Ok(true));
        assert_eq!(out, b"two", "a renewed transaction reads the newest snapshot");
        assert_eq!(env.del(b"k"), Ok(true));
        assert_eq!(env.get_into(b"k", false, &mut out), Ok(false));
        assert_eq!(env.next_after(None), Ok(None));
        assert_eq!(spares(&env), 1, "one read at a time needs one spare");
        env.set_map_size(2 << 20).expect("resize");
        assert_eq!(spares(&env), 0, "a resize ends the spare transactions");
        assert_eq!(env.get_into(b"k", false, &mut out), Ok(false));
    }

    #[test]
    fn reads_on_many_threads_share_the_spare_transactions() {
        let t = TempFile::new("sys-lmdb-threads", b"");
        let mut env = open_rw(&t);
        for i in 0..100u32 {
            let k = format!("key{i}");
            assert_eq!(env.put(k.as_bytes(), format!("value{i}").as_bytes(), false), Ok(Put::Stored));
        }
        std::thread::scope(|s| {
            for n in 0..12u32 {
                let env = &env;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for j in 0..2000u32 {
                        let i = (j * 7 + n) % 100;
                        let found = env.get_into(format!("key{i}").as_bytes(), false, &mut out);
                        assert_eq!(found, Ok(true));
                        assert_eq!(out, format!("value{i}").as_bytes());
                    }
                });
            }
        });
        assert!((1..=SPARE_READS).contains(&spares(&env)), "{} spares", spares(&env));
        // Dropping the environment frees them (no use after free under the
        // address sanitizer or valgrind, no leak).
        drop(env);
    }
}
