//! Helpers for the table modules' unit tests.

use super::Dict;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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
use crate::test_support::{backdate, unique_temp_path};

const POSTMAP_ADVICE: &str =
    "Postfix 3.7 with postfix-lmdb and postfix-cdb is needed; run scripts/install-test-deps.sh";

/// A unique directory under the temp dir, removed on drop, with a
/// minimal main.cf for `postmap -c`.
pub(crate) struct Lab {
    pub dir: PathBuf,
}

impl Lab {
    pub(crate) fn new(tag: &str) -> Lab {
        let dir = unique_temp_path(tag);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/main.cf"), "compatibility_level = 3.6\n").unwrap();
        Lab { dir }
    }

    /// `<dir>/<name>` as a string (a table name).
    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    /// `postmap -c <etc> ARGS`, not started yet.
    fn postmap_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("postmap");
        cmd.arg("-c").arg(self.dir.join("etc")).args(args);
        cmd
    }

    /// Run `postmap -c <etc> ARGS`; fails the test with install advice
    /// when Postfix is missing.
    pub(crate) fn postmap(&self, args: &[&str]) -> Output {
        match self.postmap_command(args).stdin(Stdio::null()).output() {
            Ok(out) => out,
            Err(e) => panic!("cannot run postmap ({e}): {POSTMAP_ADVICE}"),
        }
    }

    /// `postmap` that must succeed; returns stdout.
    pub(crate) fn postmap_ok(&self, args: &[&str]) -> String {
        let out = self.postmap(args);
        assert!(
            out.status.success(),
            "postmap {args:?} failed: {} (is Postfix with postfix-lmdb/postfix-cdb installed? \
             run scripts/install-test-deps.sh)",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Write `source` as text file `name` and build `type:name` with
    /// `postmap [extra] type:path`; returns the table name (path).
    pub(crate) fn build(&self, kind: &str, name: &str, source: &str, extra: &[&str]) -> String {
        let path = self.path(name);
        std::fs::write(&path, source).unwrap();
        // An old source file keeps the "older than source" warning quiet.
        backdate(Path::new(&path));
        let table = format!("{kind}:{path}");
        let mut args: Vec<&str> = extra.to_vec();
        args.push(&table);
        self.postmap_ok(&args);
        path
    }

    /// `postmap -q KEY type:path`: Some(value) or None (exit 1).
    pub(crate) fn query(&self, kind: &str, path: &str, key: &str) -> Option<String> {
        let out = self.postmap(&["-q", key, &format!("{kind}:{path}")]);
        match out.status.code() {
            Some(0) => Some(String::from_utf8(out.stdout).unwrap().trim_end_matches('\n').to_owned()),
            Some(1) => None,
            _ => panic!("postmap -q {key} failed: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    /// `postmap -s type:path`, sorted lines.
    pub(crate) fn list(&self, kind: &str, path: &str) -> Vec<String> {
        let mut lines: Vec<String> =
            self.postmap_ok(&["-s", &format!("{kind}:{path}")]).lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }

    pub(crate) fn exists(&self, p: &str) -> bool {
        Path::new(p).exists()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

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
