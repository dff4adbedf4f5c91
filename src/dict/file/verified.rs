//! Berkeley DB files known to pass the verify pass, remembered across the
//! processes of a service.
//!
//! A hash or btree file is verified before its first use in a process, as a
//! damaged page can crash Berkeley DB: about 75 ms for a 10 MB file. Under
//! master(8) a proxymap process is replaced every `max_use` clients, and each
//! new one would verify the same unchanged files again. The verdicts are kept
//! in `$data_directory/proxymap-verified`, one line per file with its device,
//! inode, size, mtime and ctime. Any write to a file changes its ctime, so a
//! changed file is verified again. Without a writable data directory every
//! process verifies, as before.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "proxymap-verified";
/// Lines kept; the oldest go first.
const MAX_ENTRIES: usize = 200;

/// The verdict file of one data directory.
#[derive(Clone, Debug)]
pub(crate) struct Verdicts {
    file: PathBuf,
}

impl Verdicts {
    pub(crate) fn in_dir(dir: &Path) -> Verdicts {
        Verdicts { file: dir.join(FILE_NAME) }
    }

    /// Did the file at `path`, as `meta` describes it now, pass before?
    pub(crate) fn known(&self, path: &str, meta: &Metadata) -> bool {
        let Some(entry) = entry(path, meta) else { return false };
        std::fs::read_to_string(&self.file).is_ok_and(|text| text.lines().any(|l| l == entry))
    }

    /// Remember that the file at `path`, as `meta` describes it, passed.
    /// Failures only cost a later process another verify pass.
    pub(crate) fn remember(&self, path: &str, meta: &Metadata) {
        let Some(entry) = entry(path, meta) else { return };
        let old = std::fs::read_to_string(&self.file).unwrap_or_default();
        let same_path = format!(" {path}");
        let mut lines: Vec<&str> = old.lines().filter(|l| !l.ends_with(&same_path)).collect();
        lines.push(&entry);
        let keep = &lines[lines.len().saturating_sub(MAX_ENTRIES)..];
        let text = keep.iter().map(|l| format!("{l}\n")).collect::<String>();
        // Readers in other processes see the old file or the new one.
        let tmp = self.file.with_extension(format!("{}.tmp", std::process::id()));
        if let Err(e) = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &self.file)) {
            let _ = std::fs::remove_file(&tmp);
            log::debug!("{}: {e}", self.file.display());
        }
    }
}

/// The line for `path` in its present state; None for a name the line
/// format cannot hold.
fn entry(path: &str, m: &Metadata) -> Option<String> {
    (!path.contains('\n')).then(|| {
        format!(
            "{} {} {} {} {} {} {} {path}",
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime(),
            m.mtime_nsec(),
            m.ctime(),
            m.ctime_nsec()
        )
    })
}

/// Whether `a` and `b` describe the same state of one file.
pub(crate) fn unchanged(a: &Metadata, b: &Metadata) -> bool {
    entry("", a) == entry("", b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dict::testutil::TempFile;

    #[test]
    fn a_verdict_holds_until_the_file_changes() {
        let dir = std::env::temp_dir().join(format!("proxymap-verified-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let v = Verdicts::in_dir(&dir);
        let (a, b) = (TempFile::new("verified", b"one"), TempFile::new("verified", b"two"));
        let meta = |t: &TempFile| std::fs::metadata(&t.0).unwrap();
        assert!(!v.known(a.name(), &meta(&a)));
        v.remember(a.name(), &meta(&a));
        v.remember(b.name(), &meta(&b));
        assert!(v.known(a.name(), &meta(&a)) && v.known(b.name(), &meta(&b)));
        // Rewritten in place (same inode, postmap's way): not known any more.
        std::fs::write(&a.0, b"one more").unwrap();
        assert!(!v.known(a.name(), &meta(&a)));
        // Remembering it again replaces its line.
        v.remember(a.name(), &meta(&a));
        let text = std::fs::read_to_string(dir.join(FILE_NAME)).unwrap();
        assert_eq!(text.lines().filter(|l| l.ends_with(a.name())).count(), 1);
        assert!(v.known(b.name(), &meta(&b)));
        // An unusable directory is no error: nothing is known.
        let nowhere = Verdicts::in_dir(Path::new("/nonexistent/proxymap"));
        nowhere.remember(a.name(), &meta(&a));
        assert!(!nowhere.known(a.name(), &meta(&a)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
