//! Whether mail_owner can read (or write) a file: the permission bits of
//! the file and the search bits of every directory on its path, against
//! the user's uid and groups. ACLs and capabilities are not looked at.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The user the daemon runs as.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub name: String,
    pub uid: u32,
    pub gids: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum UserError {
    #[error("no such user: {0}")]
    Unknown(String),
    #[error("looking up user {0}: {1}")]
    Lookup(String, nix::errno::Errno),
}

impl User {
    /// The password entry and group list of `name`.
    pub(crate) fn find(name: &str) -> Result<User, UserError> {
        let pw = crate::sys::passwd::getpwnam(name.as_bytes())
            .map_err(|e| UserError::Lookup(name.to_string(), e))?
            .ok_or_else(|| UserError::Unknown(name.to_string()))?;
        let cname = CString::new(name).map_err(|_| UserError::Unknown(name.to_string()))?;
        let gids = nix::unistd::getgrouplist(&cname, nix::unistd::Gid::from_raw(pw.gid))
            .map_err(|e| UserError::Lookup(name.to_string(), e))?;
        Ok(User { name: name.to_string(), uid: pw.uid, gids: gids.into_iter().map(|g| g.as_raw()).collect() })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

const READ: u32 = 4;
const WRITE: u32 = 2;
const SEARCH: u32 = 1;

/// Ok when `user` may open `path` for `access`, else the reason. The path
/// must exist; relative paths are taken from `cwd` (the daemon's working
/// directory, queue_directory).
pub(crate) fn check(path: &Path, cwd: &Path, user: &User, access: Access) -> Result<(), String> {
    let full = cwd.join(path);
    let real =
        full.canonicalize().map_err(|e| format!("{}: {}", full.display(), crate::sys::errno::io_error_text(&e)))?;
    let mut dir = PathBuf::from("/");
    for part in real.parent().into_iter().flat_map(Path::components).skip(1) {
        dir.push(part);
        denied(&dir, user, SEARCH).map_or(Ok(()), |why| Err(format!("{}: {why}", dir.display())))?;
    }
    let bit = if access == Access::Read { READ } else { WRITE };
    match denied(&real, user, bit) {
        None => Ok(()),
        Some(why) => Err(format!("{}: {why}", real.display())),
    }
}

/// Why `user` lacks `bit` on `path`, None when it has it.
fn denied(path: &Path, user: &User, bit: u32) -> Option<String> {
    if user.uid == 0 {
        return None;
    }
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return Some(crate::sys::errno::io_error_text(&e)),
    };
    let (class, shift) = if meta.uid() == user.uid {
        ("owner", 6)
    } else if user.gids.contains(&meta.gid()) {
        ("group", 3)
    } else {
        ("other", 0)
    };
    if (meta.mode() >> shift) & bit != 0 {
        return None;
    }
    let what = match bit {
        READ => "read",
        WRITE => "write",
        _ => "search",
    };
    Some(format!(
        "mode {:04o} uid {} gid {}: no {what} permission for {class}",
        meta.mode() & 0o7777,
        meta.uid(),
        meta.gid()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn permission_bits_decide() {
        let dir = crate::test_support::TempDir::new("access");
        let file = dir.write("t", "x");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let meta = std::fs::metadata(&file).unwrap();
        let owner = User { name: "o".into(), uid: meta.uid().wrapping_add(1).max(1), gids: vec![meta.gid()] };
        assert!(check(&file, Path::new("/"), &owner, Access::Read).is_ok());
        let why = check(&file, Path::new("/"), &owner, Access::Write).unwrap_err();
        assert!(why.contains("mode 0640") && why.ends_with("no write permission for group"), "{why}");
        let stranger = User { gids: vec![meta.gid().wrapping_add(1)], ..owner };
        let why = check(&file, Path::new("/"), &stranger, Access::Read).unwrap_err();
        assert!(why.ends_with("no read permission for other"), "{why}");
        let root = User { name: "root".into(), uid: 0, gids: vec![0] };
        assert!(check(&file, Path::new("/"), &root, Access::Write).is_ok());
    }
}
