//! Where the rules of a regexp or pcre table come from: a file (with its
//! identity, to notice a change) or the inline `type:{ {rule}, ... }` form.

use crate::dict::postmap_text::{self, BraceTokens};
use crate::dict::{OpenError, OpenRequest};
use std::os::unix::fs::MetadataExt;

/// Where a table came from, for change detection.
pub(super) struct Source {
    pub(super) text: Vec<u8>,
    /// (device, inode, mtime seconds, mtime nanoseconds) of a file table.
    pub(super) identity: Option<(u64, u64, i64, i64)>,
}

/// Read the rules of `req`: the inline `{ {rule}, ... }` form or a file.
/// Errors are Postfix's texts. Read-only opens only.
pub(super) fn read_source(req: &OpenRequest) -> Result<Source, OpenError> {
    req.require_read_only()?;
    let name = req.name.as_bytes();
    if name.first() == Some(&b'{') {
        let err = |e: String| OpenError::new(format!("{} map: {e}", req.type_name));
        let inner = postmap_text::extpar(name).map_err(err)?;
        let mut text = Vec::new();
        for token in BraceTokens::new(inner) {
            text.extend_from_slice(postmap_text::extpar(token).map_err(err)?);
            text.push(b'\n');
        }
        return Ok(Source { text, identity: None });
    }
    let path = req.name;
    let shown = |e: &std::io::Error| postmap_text::io_error_text(e);
    let mut file = std::fs::File::open(path).map_err(|e| OpenError::io(format_args!("open {path}"), &e))?;
    let meta = file.metadata().map_err(|e| OpenError::new(format!("fstat {path}: {}", shown(&e))))?;
    let mut text = Vec::new();
    // A read error (a directory, say) ends the input, as for Postfix's
    // line reader: the table is then empty.
    let _ = std::io::Read::read_to_end(&mut file, &mut text);
    Ok(Source { text, identity: Some(identity(&meta)) })
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec())
}

/// True when the file at `path` is gone or is not the one read at open.
pub(super) fn source_changed(path: &str, recorded: Option<(u64, u64, i64, i64)>) -> bool {
    match recorded {
        None => false,
        Some(id) => std::fs::metadata(path).map_or(true, |m| identity(&m) != id),
    }
}
