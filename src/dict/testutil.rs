//! Helpers for the table modules' unit tests.

use super::Dict;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// Look `key` up and return the value as text; a miss must leave `out` empty.
pub fn get(d: &mut Box<dyn Dict>, key: &str, flags: u32) -> Option<String> {
    let mut out = b"garbage".to_vec();
    match d.lookup(key.as_bytes(), flags, &mut out).unwrap() {
        true => Some(String::from_utf8(out).unwrap()),
        false => {
            assert!(out.is_empty());
            None
        }
    }
}

/// A temporary file removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// A new file with `content`; `tag` names the test module in the path.
    pub fn new(tag: &str, content: impl AsRef<[u8]>) -> TempFile {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "proxymap-{tag}-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }

    /// Set the modification time an hour back (texthash waits for a file
    /// changed in the last second to settle before reading it).
    pub fn backdated(self) -> TempFile {
        let file = std::fs::File::options().write(true).open(&self.0).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
        self
    }

    pub fn name(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
