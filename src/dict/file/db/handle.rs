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
    let cache_size = settings.cache_size;
    let m = |what: &str, code: Code| OpenError::errno(what, code);
    let path = std::path::Path::new(db_path);
    // sane_dirname()/sane_basename(): the environment lives in the file's directory.
    let home = match path.parent().map(|p| p.as_os_str().as_encoded_bytes()) {
        Some(b"") | None => b".".as_slice(),
        Some(p) => p,
    };
    let base = path.file_name().map(|b| b.as_encoded_bytes()).unwrap_or(b"");
    let (Ok(home), Ok(base)) = (CString::new(home), CString::new(base)) else {
        return Err(m(&format!("open database {db_path}"), libc::EINVAL));
    };
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
    // The verdict file is read only when a verify pass is due.
    let before = if verify { std::fs::metadata(db_path).ok() } else { None };
    let known = match (&settings.verdicts, &before) {
        (Some(v), Some(meta)) => v.known(db_path, meta),
        _ => false,
    };
    if verify && !known {
        let verified = db.verify(&base);
        crate::sys::release_free_memory();
        if let Err((_, complaint)) = verified {
            if let Some(text) = complaint {
                log::warn!("{db_path}: {text}");
            }
            let mut err = m(&format!("open database {db_path}"), libc::EINVAL);
            err.damaged = true;
            return Err(err);
        }
        if let (Some(v), Some(before)) = (&settings.verdicts, &before) {
            // Only a verdict about the file that was actually verified.
            if std::fs::metadata(db_path).is_ok_and(|after| verified::unchanged(before, &after)) {
                v.remember(db_path, before);
            }
        }
    }
    Ok(db)
}
