//! The writer's repair of a hash file that fails the verify pass: a write
//! cut short (a full file system, say) can leave pages whose links
//! disagree, while every pair stays readable. Postfix's writer then fails
//! at every request (or crash-loops); ours rebuilds the file from what the
//! bounds-checked page reader finds, replacing it in one rename, and says
//! so once.

use super::{open_handle, HandleSettings};
use crate::dict::file::hash_pages::HashPages;
use crate::dict::{Mode, OpenError};
use crate::sys::db::DbType;

/// Rebuild `db_path` (the caller holds its exclusive lock); `reason` is
/// why it failed to open.
pub(super) fn rebuild(db_path: &str, reason: &str, settings: &HandleSettings) -> Result<(), OpenError> {
    let failed = |what: String| OpenError::new(format!("{reason} (repair failed: {what})"));
    let salvaged = HashPages::open(db_path).and_then(|p| p.salvage()).map_err(|e| failed(e.to_string()))?;
    let tmp = format!("{db_path}.repair.{}", std::process::id());
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut db = open_handle(&tmp, DbType::Hash, Mode::ReadWrite, settings, false).map_err(|e| e.reason)?;
        for (k, v) in &salvaged.pairs {
            db.put(k, v, false).map_err(|c| format!("write {tmp}: {}", crate::sys::errno::strerror(c)))?;
        }
        db.sync().map_err(|c| format!("flush {tmp}: {}", crate::sys::errno::strerror(c)))?;
        drop(db);
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| format!("fsync {tmp}: {e}"))?;
        std::fs::rename(&tmp, db_path).map_err(|e| format!("rename {tmp} to {db_path}: {e}"))
    })();
    if let Err(what) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(failed(what));
    }
    let lost = match salvaged.damaged {
        0 => String::new(),
        n => format!("; {n} damaged page(s) could not be read"),
    };
    log::warn!(
        "{db_path}: the file was damaged; rebuilt from the {} entries that could be read{lost}",
        salvaged.pairs.len()
    );
    Ok(())
}
