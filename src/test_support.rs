//! Test support shared by the unit tests (`crate::test_support`) and the
//! integration tests (`tests/common`, which includes this file by path): a
//! temporary directory and file, and a small deterministic random generator.
//! It uses nothing of the crate, so that both can compile it.
#![allow(dead_code, unreachable_pub)] // each test crate uses a part

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

/// A path under the temp dir that no other test of this process uses; `tag`
/// names the test in it.
pub fn unique_temp_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("proxymap-test-{tag}-{}-{n}", std::process::id()))
}

/// A directory removed with everything in it when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = unique_temp_path(tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Write `name` in the directory and return its path.
    pub fn write(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, content).expect("write file");
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A temporary file removed on drop.
pub struct TempFile(pub PathBuf);

impl TempFile {
    /// A new file with `content`; `tag` names the test in the path.
    pub fn new(tag: &str, content: impl AsRef<[u8]>) -> TempFile {
        let path = unique_temp_path(tag);
        std::fs::write(&path, content).expect("write file");
        TempFile(path)
    }

    /// Set the modification time an hour back (main.cf and texthash files
    /// changed in the last second are left to settle before being read).
    pub fn backdated(self) -> TempFile {
        backdate(&self.0);
        self
    }

    pub fn name(&self) -> &str {
        self.0.to_str().expect("temp paths are UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Set a file's modification time an hour back.
pub fn backdate(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).expect("open to backdate");
    file.set_modified(SystemTime::now() - Duration::from_secs(3600)).expect("set mtime");
}

/// A small deterministic generator (xorshift64*): a failing input is
/// reproduced by its seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability 1 in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}
