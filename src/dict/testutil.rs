//! Helpers for the table modules' unit tests. None runs Postfix: tables
//! built by postmap are checked in under tests/fixtures/, and the checks
//! against postmap itself are integration tests (tests/postfix_files.rs).

use super::Dict;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Look `key` up and return the value as text; a miss must leave `out` empty.
pub(crate) fn get(d: &mut Box<dyn Dict>, key: &str, flags: u32) -> Option<String> {
    let mut out = b"garbage".to_vec();
    match d.lookup(key.as_bytes(), flags, &mut out).unwrap() {
        true => Some(String::from_utf8(out).unwrap()),
        false => {
            assert!(out.is_empty());
            None
        }
    }
}

pub(crate) use crate::test_support::TempFile;

/// A table file built once by postmap, checked in under tests/fixtures/
/// (tests/fixtures/make.sh says how each was made).
pub(crate) fn fixture(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(file)
}

/// Copy fixture `file` (`NAME.EXT`) into `dir` as `as_name.EXT`, so a test
/// may write and lock it; returns the table name (`dir/as_name`).
pub(crate) fn copy_fixture(dir: &Path, file: &str, as_name: &str) -> String {
    let ext = Path::new(file).extension().and_then(|e| e.to_str()).expect("fixture extension");
    let name = dir.join(as_name);
    std::fs::copy(fixture(file), name.with_extension(ext)).expect("copy fixture");
    name.to_str().expect("utf-8 path").to_owned()
}

/// Fill a table with `KEY VALUE` lines through our own writer (the same
/// library Postfix uses), as `postmap` would: keys folded to lower case
/// unless `flags` says otherwise. For tables too big to check in.
pub(crate) fn fill(d: &mut Box<dyn Dict>, source: &str, flags: u32) {
    use crate::protocol::flags::DUP_REPLACE;
    for line in source.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (key, value) = line.split_once(|c: char| c.is_ascii_whitespace()).unwrap_or((line, ""));
        d.update(key.as_bytes(), value.trim_start().as_bytes(), DUP_REPLACE | flags).expect("update");
    }
}

/// Environment variable that tells [`writer_child`] what to write.
const WRITER_ENV: &str = "PROXYMAP_TEST_WRITER";

/// Start this test binary again as another process that runs only the
/// ignored test `inner_test` (full path), with `table` and `input` for
/// [`writer_child`]: a writer in another process, as postmap would be.
pub(crate) fn spawn_writer(inner_test: &str, table: &str, input: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "--ignored", "--nocapture", "--test-threads=1", inner_test])
        .env(WRITER_ENV, format!("{table}\n{input}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the writer process")
}

/// In the process started by [`spawn_writer`]: the table (`type:name`) and
/// the `KEY VALUE` lines to write; None in an ordinary test run.
pub(crate) fn writer_child() -> Option<(String, String)> {
    let job = std::env::var(WRITER_ENV).ok()?;
    let (table, input) = job.split_once('\n').expect("table and input");
    Some((table.to_owned(), input.to_owned()))
}

/// Wait for the process started by [`spawn_writer`]; it must have written.
pub(crate) fn wait_writer(child: Child) {
    let out = child.wait_with_output().expect("writer process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("WRITER-OK"), "writer failed: {out:?}");
}
