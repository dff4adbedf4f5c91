//! Our file tables (hash, btree, lmdb, cdb) and `unix:` against Postfix's own
//! `postmap`: tables that postmap builds at test time are read through our
//! code, and what we write is read back with `postmap -q` and `postmap -s`.
//! The unit tests in src/dict/file/ cover the rest without Postfix, from
//! the tables checked in under tests/fixtures/.

mod common;

use common::TempDir;
use proxymap::config::Params;
use proxymap::dict::{registry, Dict, DictError, Mode, OpenError, OpenRequest};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

// Request flags (Postfix's DICT_FLAG_* values; the crate keeps its own private).
const DUP_WARN: u32 = 1 << 0;
const DUP_IGNORE: u32 = 1 << 1;
const TRY0NULL: u32 = 1 << 2;
const TRY1NULL: u32 = 1 << 3;
const FIXED: u32 = 1 << 4;
const LOCK: u32 = 1 << 6;
const DUP_REPLACE: u32 = 1 << 7;
const SYNC_UPDATE: u32 = 1 << 8;
const FOLD_FIX: u32 = 1 << 14;
/// What the server adds to an update from proxywrite.
const UPD: u32 = SYNC_UPDATE | DUP_REPLACE;
const DB_TYPES: [&str; 2] = ["hash", "btree"];

const POSTMAP_ADVICE: &str =
    "Postfix 3.7 with postfix-lmdb and postfix-cdb is needed; run scripts/install-test-deps.sh";

/// A directory for tables, with a minimal main.cf for `postmap -c`.
struct Lab {
    dir: TempDir,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let dir = TempDir::new(tag);
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/main.cf"), "compatibility_level = 3.6\n").unwrap();
        backdate(&dir.path().join("etc/main.cf"));
        Lab { dir }
    }

    /// `<dir>/<name>` as a string (a table name).
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_owned()
    }

    fn postmap_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new("postmap");
        cmd.arg("-c").arg(self.dir.path().join("etc")).args(args);
        cmd
    }

    fn postmap(&self, args: &[&str]) -> Output {
        match self.postmap_command(args).stdin(Stdio::null()).output() {
            Ok(out) => out,
            Err(e) => panic!("cannot run postmap ({e}): {POSTMAP_ADVICE}"),
        }
    }

    /// `postmap ARGS` with `stdin` on its standard input, started.
    fn spawn_postmap(&self, args: &[&str], stdin: &str) -> std::process::Child {
        let mut child = self
            .postmap_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run postmap ({e}): {POSTMAP_ADVICE}"));
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).expect("write to postmap");
        child
    }

    /// `postmap ARGS` fed `stdin`, which must succeed.
    fn postmap_input(&self, args: &[&str], stdin: &str) {
        let out = self.spawn_postmap(args, stdin).wait_with_output().unwrap();
        assert!(out.status.success(), "postmap {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn postmap_ok(&self, args: &[&str]) -> String {
        let out = self.postmap(args);
        assert!(
            out.status.success(),
            "postmap {args:?} failed: {} ({POSTMAP_ADVICE})",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Write `source` as `name` and run `postmap [extra] kind:path`; returns the path.
    fn build(&self, kind: &str, name: &str, source: &str, extra: &[&str]) -> String {
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

    /// `postmap -q KEY kind:path`: Some(value) or None (exit 1).
    fn query(&self, kind: &str, path: &str, key: &str) -> Option<String> {
        let out = self.postmap(&["-q", key, &format!("{kind}:{path}")]);
        match out.status.code() {
            Some(0) => Some(String::from_utf8(out.stdout).unwrap().trim_end_matches('\n').to_owned()),
            Some(1) => None,
            _ => panic!("postmap -q {key} failed: {}", String::from_utf8_lossy(&out.stderr)),
        }
    }

    /// `postmap -s kind:path`, sorted lines.
    fn list(&self, kind: &str, path: &str) -> Vec<String> {
        let mut lines: Vec<String> =
            self.postmap_ok(&["-s", &format!("{kind}:{path}")]).lines().map(str::to_owned).collect();
        lines.sort();
        lines
    }
}

/// Postfix re-reads a main.cf or source younger than a second; make it old.
fn backdate(path: &Path) {
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options().write(true).open(path).unwrap().set_modified(old).unwrap();
}

fn open_in(kind: &str, name: &str, mode: Mode, flags: u32, params: &Params) -> Result<Box<dyn Dict>, OpenError> {
    registry::open(&OpenRequest { type_name: kind, name, mode, flags, params })
}

fn open(kind: &str, name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    open_in(kind, name, mode, flags, &Params::default())
}

/// Look `key` up; a miss must leave the output empty.
fn get(d: &mut Box<dyn Dict>, key: &str, flags: u32) -> Option<String> {
    let mut out = b"garbage".to_vec();
    match d.lookup(key.as_bytes(), flags, &mut out).unwrap() {
        true => Some(String::from_utf8(out).unwrap()),
        false => {
            assert!(out.is_empty());
            None
        }
    }
}

fn walk(d: &mut Box<dyn Dict>, flags: u32) -> Vec<(String, String)> {
    let mut cursor = None;
    let mut first = true;
    let mut seen = Vec::new();
    while let Some((k, v)) = d.sequence(&mut cursor, first, flags).unwrap() {
        first = false;
        seen.push((String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()));
        assert!(seen.len() < 100_000, "sequence does not end");
    }
    seen
}

// ---------------------------------------------------------------------------
// cdb

const SOURCE: &str = "Alice alice@example.com\nbob bob@example.com, bob2@example.com\nMiXed Case Value\n";

#[test]
fn cdb_many_keys_built_by_postmap() {
    let lab = Lab::new("pf-cdb-many");
    // Every key is found, collisions and wrap-around included.
    let source: String = (0..5000).map(|i| format!("key{i} value{i}\n")).collect();
    let m = lab.build("cdb", "m", &source, &[]);
    let mut d = open("cdb", &m, Mode::ReadOnly, 0).unwrap();
    for i in 0..5000 {
        assert_eq!(get(&mut d, &format!("key{i}"), 0), Some(format!("value{i}")));
        assert_eq!(get(&mut d, &format!("nokey{i}"), 0), None);
    }
}

#[test]
fn cdb_rebuilt_by_postmap_is_a_change() {
    let lab = Lab::new("pf-cdb-rebuild");
    let t = lab.build("cdb", "t", SOURCE, &[]);
    let mut d = open("cdb", &t, Mode::ReadOnly, 0).unwrap();
    assert!(!d.changed());
    // postmap rebuilds into .cdb.tmp and renames: our copy stays intact.
    lab.build("cdb", "t", "alice changed\n", &[]);
    assert!(d.changed());
    assert_eq!(get(&mut d, "alice", 0).as_deref(), Some("alice@example.com"));
    let mut fresh = open("cdb", &t, Mode::ReadOnly, 0).unwrap();
    assert_eq!(get(&mut fresh, "alice", 0).as_deref(), Some("changed"));
    assert!(!fresh.changed());
    std::fs::remove_file(format!("{t}.cdb")).unwrap();
    assert!(fresh.changed());
}

// ---------------------------------------------------------------------------
// lmdb

#[test]
fn lmdb_update_of_a_table_without_nul_is_read_by_postmap() {
    let lab = Lab::new("pf-lmdb-nonul");
    // postmap -f keeps the case; -n stores without NUL.
    let u = lab.build("lmdb", "u", SOURCE, &["-f", "-n"]);
    let mut d = open("lmdb", &u, Mode::ReadWrite, 0).unwrap();
    assert_eq!(get(&mut d, "Alice", 0).as_deref(), Some("alice@example.com"));
    // Discovered "no NUL": updates follow the file's convention.
    assert!(d.update(b"new", b"value", UPD).unwrap());
    assert_eq!(lab.query("lmdb", &u, "new").as_deref(), Some("value"));
}

#[test]
fn lmdb_writes_are_read_by_postmap() {
    let lab = Lab::new("pf-lmdb-write");
    let t = lab.path("w");
    let mut d = open("lmdb", &t, Mode::ReadWrite, 0).unwrap();
    assert_eq!(lab.list("lmdb", &t), Vec::<String>::new());
    assert!(d.update(b"Key1", b"value 1", UPD | FOLD_FIX).unwrap());
    assert!(d.update(b"key2", b"value 2", UPD).unwrap());
    assert!(d.update(b"key3", b"value 3", UPD).unwrap());
    assert_eq!(lab.query("lmdb", &t, "key1").as_deref(), Some("value 1"));
    assert_eq!(lab.query("lmdb", &t, "KEY2").as_deref(), Some("value 2"), "postmap -q folds");
    // Replace, delete.
    assert!(d.update(b"key2", b"value 2b", UPD).unwrap());
    assert!(d.delete(b"KEY3", SYNC_UPDATE | FOLD_FIX).unwrap());
    assert!(!d.delete(b"key3", SYNC_UPDATE).unwrap());
    assert_eq!(lab.list("lmdb", &t), vec!["key1\tvalue 1", "key2\tvalue 2b"]);

    // Postfix's own writer and ours share the file: postmap rebuilds it
    // in place (an LMDB "drop"), and an open reader sees the result.
    let mut r = open("lmdb", &t, Mode::ReadOnly, 0).unwrap();
    assert_eq!(get(&mut r, "key2", 0).as_deref(), Some("value 2b"));
    std::fs::write(&t, "fromPostfix yes\nother no\n").unwrap();
    lab.postmap_ok(&[&format!("lmdb:{t}")]);
    assert_eq!(get(&mut r, "frompostfix", 0).as_deref(), Some("yes"));
    assert_eq!(get(&mut r, "key2", 0), None);
    lab.postmap_ok(&["-d", "other", &format!("lmdb:{t}")]);
    assert_eq!(get(&mut r, "other", 0), None);
    assert!(d.update(b"mine", b"too", UPD).unwrap());
    assert_eq!(lab.list("lmdb", &t), vec!["frompostfix\tyes", "mine\ttoo"]);
    assert!(!r.changed() && !d.changed());
}

#[test]
fn lmdb_cleanup_walk_leaves_what_postmap_lists() {
    let lab = Lab::new("pf-lmdb-seq");
    let t = lab.path("s");
    let mut w = open("lmdb", &t, Mode::ReadWrite, 0).unwrap();
    for i in 0..200 {
        assert!(w.update(format!("k{i:03}").as_bytes(), format!("v{i}").as_bytes(), UPD).unwrap());
    }
    // Delete each entry as it is returned, and every fifth following one.
    let (mut cursor, mut first) = (None, true);
    while let Some((k, _)) = w.sequence(&mut cursor, first, LOCK).unwrap() {
        first = false;
        let n: usize = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
        assert!(w.delete(&k, SYNC_UPDATE | LOCK).unwrap());
        if n.is_multiple_of(5) && n + 1 < 200 {
            assert!(w.delete(format!("k{:03}", n + 1).as_bytes(), SYNC_UPDATE).unwrap());
        }
        if n == 100 {
            assert!(w.update(b"a-late", b"x", UPD).unwrap());
        }
    }
    assert_eq!(lab.list("lmdb", &t), vec!["a-late\tx"]);
}

#[test]
fn lmdb_grown_map_is_read_by_postmap() {
    let lab = Lab::new("pf-lmdb-grow");
    let t = lab.path("g");
    let params = Params::from_text("lmdb_map_size = 20000\n", "main.cf", &[]).unwrap();
    let mut w = open_in("lmdb", &t, Mode::ReadWrite, 0, &params).unwrap();
    for i in 0..2000 {
        assert!(w.update(format!("key{i}").as_bytes(), format!("{i:01000}").as_bytes(), UPD).unwrap());
    }
    assert!(w.update(b"big", &vec![b'x'; 3 << 20], UPD).unwrap());
    assert_eq!(lab.query("lmdb", &t, "key7").unwrap(), format!("{:01000}", 7));
    assert_eq!(lab.list("lmdb", &t).len(), 2001);
}

#[test]
fn lmdb_damaged_postmap_files_fail_cleanly() {
    let lab = Lab::new("pf-lmdb-damage");
    let source: String = (0..3000).map(|i| format!("key{i} {i:0200}\n")).collect();
    let t = lab.build("lmdb", "c", &source, &[]);
    let mdb_path = format!("{t}.lmdb");
    let full = std::fs::read(&mdb_path).unwrap();
    assert!(full.len() > 100_000);
    let mut reader = open("lmdb", &t, Mode::ReadOnly, 0).unwrap();
    assert!(get(&mut reader, "key5", 0).is_some());
    // Truncated under an open reader: an error, not SIGBUS.
    std::fs::write(&mdb_path, &full[..full.len() / 2]).unwrap();
    match reader.lookup(b"key2999", 0, &mut Vec::new()).unwrap_err() {
        DictError::Retry(text) => {
            assert!(text.starts_with(&format!("error reading lmdb:{t}: database file is truncated")), "{text}")
        }
        other => panic!("{other:?}"),
    }
    assert!(reader.sequence(&mut None, true, 0).is_err());
    for (what, content) in [
        ("half", full[..full.len() / 2].to_vec()),
        ("one page", full[..4096].to_vec()),
        ("100 bytes", full[..100].to_vec()),
        ("empty", Vec::new()),
    ] {
        std::fs::write(&mdb_path, &content).unwrap();
        let err = open("lmdb", &t, Mode::ReadOnly, 0).err().unwrap_or_else(|| panic!("{what}: opened"));
        assert!(err.reason.starts_with(&format!("open database {mdb_path}: ")), "{what}: {}", err.reason);
    }
}

// ---------------------------------------------------------------------------
// hash and btree

#[test]
fn db_update_of_a_table_without_nul_is_read_by_postmap() {
    let lab = Lab::new("pf-db-nonul");
    for t in DB_TYPES {
        // -n: no trailing NUL; -f: no case folding at build time.
        let name = lab.build(t, t, "MiXed v1\nlower v2\n", &["-n", "-f"]);
        let mut w = open(t, &name, Mode::ReadWrite, 0).unwrap();
        assert_eq!(get(&mut w, "lower", 0).as_deref(), Some("v2"));
        assert!(w.update(b"new", b"v3", UPD).unwrap());
        drop(w);
        assert_eq!(lab.query(t, &name, "new").as_deref(), Some("v3"));
    }
}

#[test]
fn db_empty_file_opened_for_writing_becomes_a_table_for_postmap() {
    let lab = Lab::new("pf-db-empty");
    for t in DB_TYPES {
        let empty = lab.path(&format!("{t}-empty"));
        std::fs::write(format!("{empty}.db"), b"").unwrap();
        let mut d = open(t, &empty, Mode::ReadWrite, LOCK).unwrap();
        assert!(d.update(b"a", b"b", UPD).unwrap());
        drop(d);
        assert_eq!(lab.query(t, &empty, "a").as_deref(), Some("b"));
    }
}

#[test]
fn db_writes_are_read_back_by_postmap() {
    let lab = Lab::new("pf-db-write");
    for t in DB_TYPES {
        let name = lab.path(t);
        let mut d = open(t, &name, Mode::ReadWrite, 0).unwrap();
        assert!(d.update(b"alpha", b"one", UPD).unwrap());
        assert!(d.update(b"Beta", b"two", UPD | FOLD_FIX).unwrap());
        assert!(d.update(b"gamma", b"three", UPD).unwrap());
        assert!(d.update(b"alpha", b"uno", UPD).unwrap(), "DUP_REPLACE replaces");
        assert!(!d.update(b"alpha", b"ignored", SYNC_UPDATE | DUP_IGNORE).unwrap());
        assert!(!d.update(b"alpha", b"warned", SYNC_UPDATE | DUP_WARN).unwrap());
        assert!(d.delete(b"GAMMA", SYNC_UPDATE | FOLD_FIX).unwrap());
        // Synced after each update: another process sees everything at once.
        assert_eq!(lab.query(t, &name, "alpha").as_deref(), Some("uno"));
        assert_eq!(lab.query(t, &name, "beta").as_deref(), Some("two"));
        assert_eq!(lab.query(t, &name, "gamma"), None);
        assert_eq!(lab.list(t, &name), vec!["alpha\tuno".to_owned(), "beta\ttwo".to_owned()]);
        // With LOCK too (flock exclusive around the update, released after).
        assert!(d.update(b"delta", b"four", UPD | LOCK).unwrap());
        assert!(d.delete(b"beta", SYNC_UPDATE | LOCK).unwrap());
        assert_eq!(lab.list(t, &name), vec!["alpha\tuno".to_owned(), "delta\tfour".to_owned()]);
    }
}

#[test]
fn db_cleanup_walk_leaves_an_empty_table_for_postmap() {
    let lab = Lab::new("pf-db-seqdel");
    for t in DB_TYPES {
        let name = lab.path(t);
        let mut d = open(t, &name, Mode::ReadWrite, 0).unwrap();
        for i in 0..500 {
            d.update(format!("k{i:03}").as_bytes(), format!("v{i}").as_bytes(), UPD).unwrap();
        }
        // Delete every other entry at once, the rest one step later.
        let (mut cursor, mut first, mut pending, mut seen) = (None, true, None::<Vec<u8>>, 0);
        while let Some((k, _)) = d.sequence(&mut cursor, first, 0).unwrap() {
            first = false;
            if let Some(p) = pending.take() {
                assert!(d.delete(&p, SYNC_UPDATE).unwrap());
            }
            if seen % 2 == 0 {
                assert!(d.delete(&k, SYNC_UPDATE).unwrap());
            } else {
                pending = Some(k);
            }
            seen += 1;
        }
        if let Some(p) = pending.take() {
            assert!(d.delete(&p, SYNC_UPDATE).unwrap());
        }
        assert_eq!(seen, 500, "{t}");
        drop(cursor);
        drop(d);
        assert_eq!(lab.list(t, &name), Vec::<String>::new());
    }
}

#[test]
fn db_readers_follow_postmap_updates() {
    let lab = Lab::new("pf-db-fresh");
    for t in DB_TYPES {
        let name = lab.build(t, t, "a 1\nb 2\nc 3\n", &[]);
        let mut r = open(t, &name, Mode::ReadOnly, 0).unwrap();
        let mut cursor = None;
        assert_eq!(r.sequence(&mut cursor, true, 0).unwrap().unwrap().0.len(), 1);
        assert!(!r.changed());
        // postmap -i adds in place: the reader notices, re-opens at the next
        // FIRST/lookup, and the old cursor keeps walking its snapshot.
        lab.postmap_input(&["-i", &format!("{t}:{name}")], "d 4\n");
        assert!(r.changed());
        assert_eq!(walk(&mut r, 0).len(), 4, "{t}");
        assert!(r.sequence(&mut cursor, false, 0).unwrap().is_some());
        // postmap -r -i replaces and adds.
        let mut r = open(t, &name, Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut r, "a", 0).as_deref(), Some("1"));
        lab.postmap_input(&["-r", "-i", &format!("{t}:{name}")], "e 5\na 6\n");
        assert!(r.changed());
        assert_eq!(get(&mut r, "e", LOCK).as_deref(), Some("5"));
        assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("6"));
    }
}

#[test]
fn hash_reader_follows_postmap_splits_updates_and_deletes() {
    let lab = Lab::new("pf-hash-pages");
    // A read-only hash instance reads pages itself.
    let name = lab.build("hash", "h", "k0 v0\n", &[]);
    let mut r = open("hash", &name, Mode::ReadOnly, LOCK).unwrap();
    assert_eq!(r.flags() & FIXED, FIXED);
    assert_eq!(get(&mut r, "k0", LOCK).as_deref(), Some("v0"));
    let more: String = (1..3000).map(|i| format!("k{i} v{i}\n")).collect();
    lab.postmap_input(&["-i", &format!("hash:{name}")], &more);
    for i in 0..3000 {
        assert_eq!(get(&mut r, &format!("k{i}"), LOCK), Some(format!("v{i}")), "k{i}");
    }
    assert_eq!(get(&mut r, "k3000", LOCK), None);

    // Values that grow and shrink on and off overflow pages, deletes.
    let mut expected = std::collections::BTreeMap::new();
    let mut updates = String::new();
    for i in (0..3000).step_by(3) {
        let value = format!("u{i}-{}", "b".repeat(i * 13 % 3000));
        updates.push_str(&format!("k{i} {value}\n"));
        expected.insert(format!("k{i}"), value);
    }
    lab.postmap_input(&["-r", "-i", &format!("hash:{name}")], &updates);
    let deletes: String = (0..3000).filter(|i| i % 5 == 1).map(|i| format!("k{i}\n")).collect();
    lab.postmap_input(&["-d", "-", &format!("hash:{name}")], &deletes);
    for i in 0..3000 {
        let key = format!("k{i}");
        let want = (i % 5 != 1).then(|| expected.get(&key).cloned().unwrap_or(format!("v{i}")));
        assert_eq!(get(&mut r, &key, LOCK), want, "{key}");
    }
}

#[test]
fn hash_reader_reads_every_key_postmap_wrote() {
    let lab = Lab::new("pf-hash-read");
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!("user{i}@example.com\tvalue {i}\n"));
    }
    let big_key = "k".repeat(3000);
    let big_value = "v".repeat(20000);
    text.push_str(&format!("{big_key}\tshort\nbigvalue\t{big_value}\n"));
    let path = lab.build("hash", "t", &text, &[]);
    let mut d = open("hash", &path, Mode::ReadOnly, 0).unwrap();
    for i in 0..5000 {
        assert_eq!(get(&mut d, &format!("user{i}@example.com"), 0), Some(format!("value {i}")));
    }
    assert_eq!(get(&mut d, &big_key, 0).as_deref(), Some("short"));
    assert_eq!(get(&mut d, "bigvalue", 0), Some(big_value));
    assert_eq!(get(&mut d, "nobody@example.com", 0), None);
    assert_eq!(get(&mut d, &"k".repeat(2999), 0), None);
    assert_eq!(d.flags() & (TRY0NULL | TRY1NULL), TRY1NULL, "postmap stores the NUL");
}

// ---------------------------------------------------------------------------
// unix:

#[test]
fn unix_passwd_and_group_like_postmap() {
    let lab = Lab::new("pf-unix");
    let mut pw = open("unix", "passwd.byname", Mode::ReadOnly, 0).unwrap();
    let root = get(&mut pw, "root", 0);
    assert_eq!(root, lab.query("unix", "passwd.byname", "root"));
    assert_eq!(lab.query("unix", "passwd.byname", "no-such-user-xyzzy"), None);
    // postmap -q folds its keys (FOLD_FIX).
    assert_eq!(get(&mut pw, "ROOT", FOLD_FIX), lab.query("unix", "passwd.byname", "ROOT"));

    let mut gr = open("unix", "group.byname", Mode::ReadOnly, FOLD_FIX).unwrap();
    assert_eq!(get(&mut gr, "root", 0), lab.query("unix", "group.byname", "root"));
    assert_eq!(lab.query("unix", "group.byname", "no-such-group-xyzzy"), None);
    // A group with members, if the system has one.
    if let Ok(text) = std::fs::read_to_string("/etc/group") {
        if let Some(name) = text.lines().find(|l| !l.ends_with(':')).and_then(|l| l.split(':').next()) {
            assert_eq!(get(&mut gr, name, 0), lab.query("unix", "group.byname", name), "group {name}");
        }
    }
}
