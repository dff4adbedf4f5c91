//! Opening one Berkeley DB handle as Postfix's dict_db_open() does, with
//! the verify pass that keeps a damaged file from crashing the process.

use super::{DEFAULT_READ_BUFFER, HASH_NELEM};
use crate::config::Params;
use crate::dict::file::hash_pages::HashPages;
use crate::dict::file::verified::{self, Verdicts};
use crate::dict::{Mode, OpenError};
use crate::sys::db::{Code, Db, DbType, Env, OpenFlags};
use std::ffi::CString;

/// The direct page reader for a read-only hash handle, when the file has
/// the layout it knows (else Berkeley DB serves every lookup).
pub(super) fn direct_pages(db_path: &str, ty: DbType, mode: Mode) -> Option<HashPages> {
    if ty != DbType::Hash || mode != Mode::ReadOnly {
        return None;
    }
    HashPages::open(db_path).map_err(|e| log::debug!("{db_path}: {e}: reading it through Berkeley DB")).ok()
}

/// What every handle of a file is opened with.
#[derive(Clone)]
pub(super) struct HandleSettings {
    /// Berkeley DB cache size (Postfix's berkeley_db_read_buffer_size).
    pub(super) cache_size: u32,
    /// Where verify verdicts are shared with the service's other processes.
    pub(super) verdicts: Option<Verdicts>,
}

impl HandleSettings {
    pub(super) fn of(params: &Params) -> HandleSettings {
        let cache_size = params.get_int("berkeley_db_read_buffer_size").unwrap_or(DEFAULT_READ_BUFFER).max(1) as u32;
        // Unit tests leave the system's data directory alone.
        let dir = match params.raw("data_directory") {
            None if cfg!(test) => String::new(),
            _ => params.get("data_directory"),
        };
        let verdicts = (!dir.is_empty()).then(|| Verdicts::in_dir(std::path::Path::new(&dir)));
        HandleSettings { cache_size, verdicts }
    }
}

/// Open one handle as dict_db_open() does (the caller takes the locks).
///
/// With `verify` (an existing file) the whole file is checked first, as
/// Berkeley DB can crash on damaged pages; this costs a read of the file,
/// unless another process of the service verified the file as it is now.
pub(super) fn open_handle(
    db_path: &str,
    ty: DbType,
    mode: Mode,
    settings: &HandleSettings,
    verify: bool,
) -> Result<Db, OpenError> {
    let mut db = open_unverified(db_path, ty, mode, settings)?;
    if let Some(before) = verify.then(|| verify_due(db_path, settings)).flatten() {
        verify_pass(&mut db, db_path, settings, &before).map_err(|d| d.report(db_path))?;
    }
    Ok(db)
}

/// The file's state when its verify pass is due: it exists and no process
/// of the service verified it as it is now. (The verdict file is read only
/// then.)
pub(super) fn verify_due(db_path: &str, settings: &HandleSettings) -> Option<std::fs::Metadata> {
    let before = std::fs::metadata(db_path).ok()?;
    let known = settings.verdicts.as_ref().is_some_and(|v| v.known(db_path, &before));
    (!known).then_some(before)
}

/// dict_db_open()'s steps, without the verify pass.
pub(super) fn open_unverified(
    db_path: &str,
    ty: DbType,
    mode: Mode,
    settings: &HandleSettings,
) -> Result<Db, OpenError> {
    let cache_size = settings.cache_size;
    let m = |what: &str, code: Code| OpenError::errno(what, code);
    let (home, base) = env_home_and_base(db_path)?;
    let mut env = Env::create(db_path).map_err(|c| m("create DB environment", c))?;
    let (gbytes, bytes, ncache) = env.cachesize().map_err(|c| m("get DB cache size", c))?;
    if gbytes == 0 && bytes < cache_size {
        env.set_cache_max(gbytes, cache_size).map_err(|c| m(&format!("set DB max cache size {cache_size}"), c))?;
        env.set_cachesize(gbytes, cache_size, ncache).map_err(|c| m(&format!("set DB cache size {cache_size}"), c))?;
    }
    env.open_private(&home).map_err(|c| m("open DB environment", c))?;
    let mut db = Db::create(env).map_err(|c| m("create DB database", c))?;
    if ty == DbType::Hash {
        db.set_h_nelem(HASH_NELEM).map_err(|c| m(&format!("set DB hash element count {HASH_NELEM}"), c))?;
    }
    let flags = OpenFlags { read_only: mode == Mode::ReadOnly, create: mode == Mode::ReadWrite };
    db.open(&base, ty, flags, 0o644).map_err(|c| m(&format!("open database {db_path}"), c))?;
    Ok(db)
}

/// sane_dirname()/sane_basename(): the environment lives in the file's directory.
fn env_home_and_base(db_path: &str) -> Result<(CString, CString), OpenError> {
    let path = std::path::Path::new(db_path);
    let home = match path.parent().map(|p| p.as_os_str().as_encoded_bytes()) {
        Some(b"") | None => b".".as_slice(),
        Some(p) => p,
    };
    let base = path.file_name().map(|b| b.as_encoded_bytes()).unwrap_or(b"");
    match (CString::new(home), CString::new(base)) {
        (Ok(home), Ok(base)) => Ok((home, base)),
        _ => Err(OpenError::errno(format!("open database {db_path}"), libc::EINVAL)),
    }
}

/// The file failed its verify pass: Berkeley DB's complaint, if it made one.
pub(super) struct Damage(Option<String>);

impl Damage {
    /// Say what is wrong, as the open error of the file.
    pub(super) fn report(self, db_path: &str) -> OpenError {
        if let Some(text) = self.0 {
            log::warn!("{db_path}: {text}");
        }
        let mut err = OpenError::errno(format!("open database {db_path}"), libc::EINVAL);
        err.damaged = true;
        err
    }
}

/// Check the whole file `db` was opened on (as `before` describes it);
/// a pass is remembered for the service's other processes.
pub(super) fn verify_pass(
    db: &mut Db,
    db_path: &str,
    settings: &HandleSettings,
    before: &std::fs::Metadata,
) -> Result<(), Damage> {
    let base = env_home_and_base(db_path).map_err(|_| Damage(None))?.1;
    let verified = db.verify(&base);
    crate::sys::release_free_memory();
    verified.map_err(|(_, complaint)| Damage(complaint))?;
    if let Some(v) = &settings.verdicts {
        // Only a verdict about the file that was actually verified.
        if std::fs::metadata(db_path).is_ok_and(|after| verified::unchanged(before, &after)) {
            v.remember(db_path, before);
        }
    }
    Ok(())
}
