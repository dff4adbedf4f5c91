//! Berkeley DB 5.3 through the C veneer `csrc/dbshim.c`: the only place with
//! `unsafe` for it. The API here is safe: handles own their C objects, every
//! call on a handle takes `&mut`, and a cursor can only be used with the very
//! handle it was made from (checked by id), so a cursor never outlives or
//! races its database.
//!
//! Errors are Berkeley DB status codes: a positive errno value or a negative
//! `DB_*` code. [`super::errno::strerror`] renders them as Postfix's `%m`
//! would ("Unknown error -30973" for the negative ones).

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::atomic::{AtomicU64, Ordering};

// Opaque C types, named as in db.h.
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
type DB_ENV = c_void;
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
type DB = c_void;
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
type DBC = c_void;

/// A key and its value, copied out of the database.
pub(crate) type Pair = (Vec<u8>, Vec<u8>);

type ErrCall = extern "C" fn(*const DB_ENV, *const c_char, *const c_char);

extern "C" {
    static dbshim_notfound: c_int;
    static dbshim_keyexist: c_int;
    static dbshim_keyempty: c_int;
    static dbshim_hash: c_int;
    static dbshim_btree: c_int;
    static dbshim_rdonly: c_uint;
    static dbshim_create: c_uint;
    static dbshim_nooverwrite: c_uint;
    static dbshim_env_flags: c_uint;
    static dbshim_compiled_major: c_int;
    static dbshim_compiled_minor: c_int;
    static dbshim_compiled_patch: c_int;

    fn dbshim_version(major: *mut c_int, minor: *mut c_int, patch: *mut c_int);
    fn dbshim_env_create(envp: *mut *mut DB_ENV) -> c_int;
    fn dbshim_env_set_errcall(env: *mut DB_ENV, f: ErrCall, pfx: *const c_char);
    fn dbshim_env_get_cachesize(env: *mut DB_ENV, g: *mut u32, b: *mut u32, n: *mut c_int) -> c_int;
    fn dbshim_env_set_cache_max(env: *mut DB_ENV, g: u32, b: u32) -> c_int;
    fn dbshim_env_set_cachesize(env: *mut DB_ENV, g: u32, b: u32, n: c_int) -> c_int;
    fn dbshim_env_open(env: *mut DB_ENV, home: *const c_char, flags: u32) -> c_int;
    fn dbshim_env_close(env: *mut DB_ENV) -> c_int;
    fn dbshim_env_verify(env: *mut DB_ENV, file: *const c_char) -> c_int;
    fn dbshim_db_create(dbp: *mut *mut DB, env: *mut DB_ENV) -> c_int;
    fn dbshim_db_set_h_nelem(db: *mut DB, nelem: u32) -> c_int;
    fn dbshim_db_open(db: *mut DB, file: *const c_char, ty: c_int, flags: u32, mode: c_int) -> c_int;
    fn dbshim_db_close(db: *mut DB) -> c_int;
    fn dbshim_db_get(db: *mut DB, k: *const c_void, klen: u32, v: *mut *const c_void, vlen: *mut u32) -> c_int;
    fn dbshim_db_put(db: *mut DB, k: *const c_void, klen: u32, v: *const c_void, vlen: u32, flags: u32) -> c_int;
    fn dbshim_db_del(db: *mut DB, k: *const c_void, klen: u32) -> c_int;
    fn dbshim_db_sync(db: *mut DB) -> c_int;
    fn dbshim_db_cursor(db: *mut DB, cursor: *mut *mut DBC) -> c_int;
    fn dbshim_cursor_get(
        c: *mut DBC,
        next: c_int,
        k: *mut *const c_void,
        klen: *mut u32,
        v: *mut *const c_void,
        vlen: *mut u32,
    ) -> c_int;
    fn dbshim_cursor_close(c: *mut DBC) -> c_int;
}

/// A Berkeley DB status other than success.
pub(crate) type Code = c_int;

/// Access method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum DbType {
    Hash,
    Btree,
}

/// `DB->open` flags we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OpenFlags {
    pub read_only: bool,
    pub create: bool,
}

// The dbshim_* constants are immutable C `const`s defined in dbshim.c and
// initialised at load time; each `unsafe { &dbshim_x }` below only takes a
// shared reference to one of them.
fn code(c: &c_int) -> c_int {
    *c
}

fn ucode(c: &c_uint) -> c_uint {
    *c
}

/// `DB_NOTFOUND`.
pub(crate) fn notfound() -> Code {
    // SAFETY: taking a shared reference to an immutable C constant.
    code(unsafe { &dbshim_notfound })
}

/// `DB_KEYEMPTY` (Postfix treats it as EINVAL).
pub(crate) fn keyempty() -> Code {
    // SAFETY: taking a shared reference to an immutable C constant.
    code(unsafe { &dbshim_keyempty })
}

fn keyexist() -> Code {
    // SAFETY: taking a shared reference to an immutable C constant.
    code(unsafe { &dbshim_keyexist })
}

/// The header version the shim was compiled against.
pub(crate) fn compiled_version() -> (i32, i32, i32) {
    // SAFETY: taking shared references to immutable C constants.
    unsafe { (code(&dbshim_compiled_major), code(&dbshim_compiled_minor), code(&dbshim_compiled_patch)) }
}

/// The run-time library version (`db_version()`).
pub(crate) fn runtime_version() -> (i32, i32, i32) {
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: db_version only writes the three ints we pass.
    unsafe { dbshim_version(&mut a, &mut b, &mut c) };
    (a, b, c)
}

/// Messages Berkeley DB would print to stderr: one log line each, prefixed
/// with the database path (the environment's error prefix).
extern "C" fn errcall(_env: *const DB_ENV, pfx: *const c_char, msg: *const c_char) {
    if CAPTURE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(first) = c.as_mut() {
            if first.is_none() && !msg.is_null() {
                // SAFETY: as below, a NUL-terminated string valid during the callback.
                *first = Some(unsafe { CStr::from_ptr(msg) }.to_string_lossy().into_owned());
            }
            true
        } else {
            false
        }
    }) {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        let text = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: Berkeley DB passes NUL-terminated strings valid for
                // the duration of this callback; we copy them at once.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let (pfx, msg) = (text(pfx), text(msg));
        if pfx.is_empty() {
            log::warn!("{msg}");
        } else {
            log::warn!("{pfx}: {msg}");
        }
    });
}

thread_local! {
    /// While set, Berkeley DB messages are not logged; the first is kept.
    static CAPTURE: std::cell::RefCell<Option<Option<String>>> = const { std::cell::RefCell::new(None) };
}

/// A private database environment (`DB_ENV`), not yet opened or open.
pub(crate) struct Env {
    env: *mut DB_ENV,
    /// Berkeley DB keeps the pointer, not a copy: must live as long as `env`.
    _errpfx: CString,
}

// SAFETY: a DB_ENV without DB_THREAD may be used from any thread as long as
// calls are not concurrent; every method takes `&mut self` (or `self`).
unsafe impl Send for Env {}

impl Env {
    /// `db_env_create()`, with error messages routed to the log, prefixed by `errpfx`.
    pub(crate) fn create(errpfx: &str) -> Result<Env, Code> {
        let errpfx = CString::new(errpfx.replace('\0', "")).unwrap_or_default();
        let mut env = std::ptr::null_mut();
        // SAFETY: the shim writes a new handle (or null) into `env`.
        let rc = unsafe { dbshim_env_create(&mut env) };
        if rc != 0 || env.is_null() {
            return Err(if rc != 0 { rc } else { libc::ENOMEM });
        }
        // SAFETY: `env` is a fresh handle; `errpfx` outlives it (owned by Env).
        unsafe { dbshim_env_set_errcall(env, errcall, errpfx.as_ptr()) };
        Ok(Env { env, _errpfx: errpfx })
    }

    /// `DB_ENV->get_cachesize`: (gbytes, bytes, ncache).
    pub(crate) fn cachesize(&mut self) -> Result<(u32, u32, i32), Code> {
        let (mut g, mut b, mut n) = (0u32, 0u32, 0 as c_int);
        // SAFETY: valid handle; the call only writes the three out-parameters.
        let rc = unsafe { dbshim_env_get_cachesize(self.env, &mut g, &mut b, &mut n) };
        if rc != 0 {
            return Err(rc);
        }
        Ok((g, b, n))
    }

    pub(crate) fn set_cache_max(&mut self, gbytes: u32, bytes: u32) -> Result<(), Code> {
        // SAFETY: valid, not yet opened handle; plain integer arguments.
        status(unsafe { dbshim_env_set_cache_max(self.env, gbytes, bytes) })
    }

    pub(crate) fn set_cachesize(&mut self, gbytes: u32, bytes: u32, ncache: i32) -> Result<(), Code> {
        // SAFETY: valid, not yet opened handle; plain integer arguments.
        status(unsafe { dbshim_env_set_cachesize(self.env, gbytes, bytes, ncache) })
    }

    /// `DB_ENV->open(home, DB_INIT_MPOOL | DB_CREATE | DB_PRIVATE, 0)`.
    pub(crate) fn open_private(&mut self, home: &CStr) -> Result<(), Code> {
        // SAFETY: taking a shared reference to an immutable C constant.
        let flags = ucode(unsafe { &dbshim_env_flags });
        // SAFETY: valid handle; `home` is NUL-terminated and only read during the call.
        status(unsafe { dbshim_env_open(self.env, home.as_ptr(), flags) })
    }
}

impl Db {
    /// `DB->verify(file)` of the file this handle's environment lives with,
    /// on a separate handle: Err(first complaint) when the file is damaged.
    /// Verification reads every page, so later reads of a damaged file
    /// cannot crash inside Berkeley DB. Its many messages are not logged.
    pub(crate) fn verify(&mut self, file: &CStr) -> Result<(), (Code, Option<String>)> {
        CAPTURE.with(|c| *c.borrow_mut() = Some(None));
        // SAFETY: the environment is open (we have a Db in it); `file` is
        // NUL-terminated and only read; the shim makes and consumes its own handle.
        let rc = unsafe { dbshim_env_verify(self._env.env, file.as_ptr()) };
        let first = CAPTURE.with(|c| c.borrow_mut().take()).flatten();
        if rc == 0 {
            Ok(())
        } else {
            Err((rc, first))
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // SAFETY: we own the handle and nothing uses it after this (a Db that
        // used it was closed first: Db owns its Env and closes itself first).
        unsafe { dbshim_env_close(self.env) };
    }
}

fn status(rc: c_int) -> Result<(), Code> {
    if rc == 0 {
        Ok(())
    } else {
        Err(rc)
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A database handle (`DB`) and the environment it lives in.
pub(crate) struct Db {
    db: *mut DB,
    id: u64,
    /// Dropped after `db` is closed (see Drop).
    _env: Env,
}

// SAFETY: a DB handle opened without DB_THREAD may be used from any thread as
// long as calls are not concurrent; every method takes `&mut self`.
unsafe impl Send for Db {}
// SAFETY: through `&Db` only `id()` is reachable, which reads a plain number
// and never calls into Berkeley DB; every call into it needs `&mut Db`.
unsafe impl Sync for Db {}

impl Db {
    /// `db_create()` in `env` (which must already be open).
    pub(crate) fn create(env: Env) -> Result<Db, Code> {
        let mut db = std::ptr::null_mut();
        // SAFETY: `env.env` is a valid open environment; the shim writes a new handle into `db`.
        let rc = unsafe { dbshim_db_create(&mut db, env.env) };
        if rc != 0 || db.is_null() {
            return Err(if rc != 0 { rc } else { libc::ENOMEM });
        }
        Ok(Db { db, id: NEXT_ID.fetch_add(1, Ordering::Relaxed), _env: env })
    }

    pub(crate) fn set_h_nelem(&mut self, nelem: u32) -> Result<(), Code> {
        // SAFETY: valid, not yet opened handle; plain integer argument.
        status(unsafe { dbshim_db_set_h_nelem(self.db, nelem) })
    }

    /// `DB->open(NULL, file, NULL, type, flags, mode)`.
    pub(crate) fn open(&mut self, file: &CStr, ty: DbType, flags: OpenFlags, mode: i32) -> Result<(), Code> {
        // SAFETY: taking shared references to immutable C constants.
        let (ty, rdonly, create) = unsafe {
            (
                match ty {
                    DbType::Hash => code(&dbshim_hash),
                    DbType::Btree => code(&dbshim_btree),
                },
                ucode(&dbshim_rdonly),
                ucode(&dbshim_create),
            )
        };
        let mut f = 0;
        if flags.read_only {
            f |= rdonly;
        }
        if flags.create {
            f |= create;
        }
        // SAFETY: valid handle; `file` is NUL-terminated and only read during the call.
        status(unsafe { dbshim_db_open(self.db, file.as_ptr(), ty, f, mode) })
    }

    /// `DB->get`: the value copied into `out`; Ok(false) when not found.
    pub(crate) fn get(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, Code> {
        let klen = len32(key)?;
        let (mut v, mut vlen) = (std::ptr::null::<c_void>(), 0u32);
        // SAFETY: valid handle; `key` is readable for `klen` bytes during the call.
        let rc = unsafe { dbshim_db_get(self.db, key.as_ptr().cast(), klen, &mut v, &mut vlen) };
        if rc == notfound() {
            return Ok(false);
        }
        status(rc)?;
        out.clear();
        // SAFETY: on success Berkeley DB points `v` at `vlen` bytes it owns,
        // valid until the next call on this handle; we copy them now.
        out.extend_from_slice(unsafe { bytes(v, vlen) });
        Ok(true)
    }

    /// `DB->put`; with `no_overwrite` an existing key is kept and Ok(false) returned.
    pub(crate) fn put(&mut self, key: &[u8], value: &[u8], no_overwrite: bool) -> Result<bool, Code> {
        let (klen, vlen) = (len32(key)?, len32(value)?);
        // SAFETY: taking a shared reference to an immutable C constant.
        let flags = if no_overwrite { ucode(unsafe { &dbshim_nooverwrite }) } else { 0 };
        // SAFETY: valid handle; both buffers are readable for their lengths during the call.
        let rc = unsafe { dbshim_db_put(self.db, key.as_ptr().cast(), klen, value.as_ptr().cast(), vlen, flags) };
        if rc == keyexist() {
            return Ok(false);
        }
        status(rc).map(|()| true)
    }

    /// `DB->del`; Ok(false) when the key was not there.
    pub(crate) fn del(&mut self, key: &[u8]) -> Result<bool, Code> {
        let klen = len32(key)?;
        // SAFETY: valid handle; `key` is readable for `klen` bytes during the call.
        let rc = unsafe { dbshim_db_del(self.db, key.as_ptr().cast(), klen) };
        if rc == notfound() {
            return Ok(false);
        }
        status(rc).map(|()| true)
    }

    /// `DB->sync`: write dirty cache pages to the file.
    pub(crate) fn sync(&mut self) -> Result<(), Code> {
        // SAFETY: valid handle.
        status(unsafe { dbshim_db_sync(self.db) })
    }

    /// A new cursor on this handle, usable only with this handle.
    pub(crate) fn cursor(&mut self) -> Result<Dbc, Code> {
        let mut c = std::ptr::null_mut();
        // SAFETY: valid handle; the shim writes a new cursor into `c`.
        let rc = unsafe { dbshim_db_cursor(self.db, &mut c) };
        if rc != 0 || c.is_null() {
            return Err(if rc != 0 { rc } else { libc::ENOMEM });
        }
        Ok(Dbc { c, owner: self.id })
    }

    /// Identity of this handle (never reused within the process).
    pub(crate) fn id(&self) -> u64 {
        self.id
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // SAFETY: we own the handle; DB->close also closes any cursor still
        // open on it, and `Dbc` refuses to touch a cursor without its live
        // owner handle, so no cursor is used after this.
        unsafe { dbshim_db_close(self.db) };
    }
}

/// A cursor (`DBC`). Every operation needs the `Db` it was made from, by
/// `&mut`: it can neither outlive nor race its database. Dropping it without
/// [`Dbc::close`] leaves it to `DB->close`.
pub(crate) struct Dbc {
    c: *mut DBC,
    owner: u64,
}

// SAFETY: the raw cursor is only used through `get`/`close`, which require
// exclusive access to its (Send) owner handle.
unsafe impl Send for Dbc {}

impl Dbc {
    /// The handle this cursor belongs to.
    pub(crate) fn owner(&self) -> u64 {
        self.owner
    }

    /// `DBC->get(DB_FIRST or DB_NEXT)`: Ok(None) at the end.
    pub(crate) fn get(&mut self, db: &mut Db, next: bool) -> Result<Option<Pair>, Code> {
        if db.id != self.owner {
            return Err(libc::EINVAL);
        }
        let (mut k, mut klen) = (std::ptr::null::<c_void>(), 0u32);
        let (mut v, mut vlen) = (std::ptr::null::<c_void>(), 0u32);
        // SAFETY: the cursor belongs to `db`, which is alive and borrowed
        // exclusively; out-parameters are written on success only.
        let rc = unsafe { dbshim_cursor_get(self.c, next as c_int, &mut k, &mut klen, &mut v, &mut vlen) };
        if rc == notfound() {
            return Ok(None);
        }
        status(rc)?;
        // SAFETY: on success `k` refers to `klen` bytes owned by the cursor,
        // valid until its next call; we copy them now.
        let key = unsafe { bytes(k, klen) }.to_vec();
        // SAFETY: likewise `v` with `vlen` bytes; no cursor call came between.
        let value = unsafe { bytes(v, vlen) }.to_vec();
        Ok(Some((key, value)))
    }

    /// `DBC->close`. A cursor of another handle is left alone.
    pub(crate) fn close(self, db: &mut Db) -> Result<(), Code> {
        if db.id != self.owner {
            return Err(libc::EINVAL);
        }
        // SAFETY: the cursor belongs to `db`, alive and exclusively borrowed;
        // `self` is consumed, so the cursor is not used again.
        status(unsafe { dbshim_cursor_close(self.c) })
    }
}

fn len32(b: &[u8]) -> Result<u32, Code> {
    u32::try_from(b.len()).map_err(|_| libc::EINVAL)
}

/// # Safety
/// `p` must point at `len` readable bytes (or `len` is 0).
unsafe fn bytes<'a>(p: *const c_void, len: u32) -> &'a [u8] {
    if p.is_null() || len == 0 {
        &[]
    } else {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) }
    }
}
