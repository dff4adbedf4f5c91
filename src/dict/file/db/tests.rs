use super::*;
use crate::config::Params;
use crate::dict::file::hash_pages::HashPages;
use crate::dict::file::verified::Verdicts;
use crate::dict::testutil::{copy_fixture, fill, spawn_writer, wait_writer, writer_child};
use crate::test_support::TempDir;
use std::time::Duration;

#[allow(deprecated)] // nix::fcntl::flock: the Flock guard type would own the File
fn flock(f: &File, arg: nix::fcntl::FlockArg) -> nix::Result<()> {
    nix::fcntl::flock(std::os::fd::AsRawFd::as_raw_fd(f), arg)
}

fn open_with(table: &str, name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    open_in(table, name, mode, flags, &Params::default())
}

fn open_in(table: &str, name: &str, mode: Mode, flags: u32, params: &Params) -> Result<Box<dyn Dict>, OpenError> {
    let req = OpenRequest { type_name: table, name, mode, flags, params };
    match table {
        "hash" => open_hash(&req),
        _ => open_btree(&req),
    }
}

fn get(d: &mut Box<dyn Dict>, key: &str, flags: u32) -> Option<String> {
    let mut out = b"garbage".to_vec();
    match d.lookup(key.as_bytes(), flags, &mut out).unwrap() {
        true => Some(String::from_utf8(out).unwrap()),
        false => None,
    }
}

fn put(d: &mut Box<dyn Dict>, key: &str, value: &str, flags: u32) -> DictResult<bool> {
    d.update(key.as_bytes(), value.as_bytes(), flags)
}

fn walk(d: &mut Box<dyn Dict>, flags: u32) -> Vec<(String, String)> {
    let mut cursor = None;
    let mut seen = Vec::new();
    let mut first = true;
    while let Some((k, v)) = d.sequence(&mut cursor, first, flags).unwrap() {
        first = false;
        seen.push((String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()));
        assert!(seen.len() < 100_000, "sequence does not end");
    }
    seen.sort();
    seen
}

const TYPES: [&str; 2] = ["hash", "btree"];
const UPDATE: u32 = SYNC_UPDATE | DUP_REPLACE;

/// `dir/name` as a table name.
fn path_in(dir: &TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_owned()
}

/// A `t` table `dir/name` holding the `KEY VALUE` lines of `source`,
/// written by our writer as postmap would write it (folded, with NUL).
fn build(dir: &TempDir, t: &str, name: &str, source: &str) -> String {
    let name = path_in(dir, name);
    let mut d = open_with(t, &name, Mode::ReadWrite, 0).unwrap();
    fill(&mut d, source, FOLD_FIX);
    name
}

/// Rebuild `t:name` in place (same inode, as postmap does) to hold `source`.
fn rebuild(dir: &TempDir, t: &str, name: &str, source: &str) {
    let side = build(dir, t, "rebuild-side", source);
    std::fs::write(format!("{name}.db"), std::fs::read(format!("{side}.db")).unwrap()).unwrap();
    std::fs::remove_file(format!("{side}.db")).unwrap();
}

/// Another process adds `KEY VALUE` lines to `t:name` as `postmap -i`
/// would (exclusive lock around each update); started, not waited for.
fn writer_elsewhere(t: &str, name: &str, input: &str) -> std::process::Child {
    let test = concat!(module_path!(), "::writer_process").split_once("::").unwrap().1;
    spawn_writer(test, &format!("{t}:{name}"), input)
}

/// The other process of [`writer_elsewhere`]; nothing in a normal run.
#[test]
#[ignore]
fn writer_process() {
    let Some((table, input)) = writer_child() else { return };
    let (t, name) = table.split_once(':').unwrap();
    let mut d = open_with(t, name, Mode::ReadWrite, 0).unwrap();
    fill(&mut d, &input, FOLD_FIX | LOCK);
    drop(d);
    println!("WRITER-OK");
}

#[test]
fn reads_files_built_by_postmap() {
    let dir = TempDir::new("db-read");
    for t in TYPES {
        // tests/fixtures/db.txt: "Alice alice@example.com\nbob  bob value\n# comment\n"
        let name = copy_fixture(dir.path(), &format!("{t}.db"), t);
        let mut d = open_with(t, &name, Mode::ReadOnly, 0).unwrap();
        assert_eq!(d.flags(), FIXED | TRY0NULL | TRY1NULL);
        // postmap lowercases keys; values keep their case and spaces.
        assert_eq!(get(&mut d, "alice", 0).as_deref(), Some("alice@example.com"));
        assert_eq!(d.flags(), FIXED | TRY1NULL, "Linux postmap stores the trailing NUL");
        assert_eq!(get(&mut d, "Alice", 0), None);
        assert_eq!(get(&mut d, "ALICE", FOLD_FIX).as_deref(), Some("alice@example.com"));
        assert_eq!(get(&mut d, "bob", LOCK).as_deref(), Some("bob value"));
        assert_eq!(get(&mut d, "carol", LOCK), None);
        assert_eq!(get(&mut d, "", 0), None);
        assert!(!d.changed());
        let mut seen = walk(&mut d, LOCK);
        seen.sort();
        assert_eq!(
            seen,
            vec![("alice".into(), "alice@example.com".into()), ("bob".into(), "bob value".into())],
            "sequence drops the stored NUL"
        );
        // Updates are refused on a read-only instance.
        assert!(matches!(put(&mut d, "x", "y", UPDATE), Err(DictError::Retry(_))));
    }
}

#[test]
fn discovers_files_without_nul_and_keeps_case_with_f() {
    let dir = TempDir::new("db-nonul");
    for t in TYPES {
        // -n: no trailing NUL; -f: no case folding at build time
        // (tests/fixtures/nonul.txt: "MiXed v1\nlower v2\n").
        let name = copy_fixture(dir.path(), &format!("{t}-nonul.db"), t);
        let mut d = open_with(t, &name, Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "MiXed", 0).as_deref(), Some("v1"));
        assert_eq!(d.flags(), FIXED | TRY0NULL);
        assert_eq!(get(&mut d, "mixed", 0), None);
        assert_eq!(get(&mut d, "MiXed", FOLD_FIX), None, "folded key misses an unfolded entry");
        assert_eq!(get(&mut d, "LOWER", FOLD_FIX).as_deref(), Some("v2"));
        // An instance opened with TRY1NULL only never finds them.
        let mut d = open_with(t, &name, Mode::ReadOnly, TRY1NULL).unwrap();
        assert_eq!(get(&mut d, "MiXed", 0), None);
        // Writing to a TRY0NULL table continues without NUL.
        let mut w = open_with(t, &name, Mode::ReadWrite, 0).unwrap();
        assert_eq!(get(&mut w, "lower", 0).as_deref(), Some("v2"));
        assert!(put(&mut w, "new", "v3", UPDATE).unwrap());
        drop(w);
        // (tests/postfix_files.rs asks postmap -q too.)
        let mut r = open_with(t, &name, Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut r, "new", 0).as_deref(), Some("v3"));
    }
}

#[test]
fn open_errors_have_postfix_texts() {
    let dir = TempDir::new("db-openerr");
    for t in TYPES {
        let missing = path_in(&dir, "missing");
        let err = open_with(t, &missing, Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, format!("open database {missing}.db: No such file or directory"));
        let err = open_with(t, &missing, Mode::ReadOnly, LOCK).err().unwrap();
        assert_eq!(err.reason, format!("open database {missing}.db: No such file or directory"));
        let err = open_with(t, "/nonexistent/dir/x", Mode::ReadWrite, 0).err().unwrap();
        assert_eq!(err.reason, "open database /nonexistent/dir/x.db: No such file or directory");
        let err = open_with(t, &missing, Mode::ReadWrite, LOCK | OPEN_LOCK).err().unwrap();
        assert_eq!(
            err.reason,
            format!("dict_open: attempt to open {t}:{missing} with both \"open\" lock and \"access\" lock")
        );
    }
    // A btree is not a hash and vice versa (Berkeley DB says EINVAL).
    let h = copy_fixture(dir.path(), "hash.db", "h");
    let b = copy_fixture(dir.path(), "btree.db", "b");
    for (t, name) in [("btree", &h), ("hash", &b)] {
        for mode in [Mode::ReadOnly, Mode::ReadWrite] {
            let err = open_with(t, name, mode, 0).err().unwrap();
            assert_eq!(err.reason, format!("open database {name}.db: Invalid argument"));
        }
    }
    // The right type still opens: a failed open leaves nothing behind.
    let mut d = open_with("hash", &h, Mode::ReadOnly, 0).unwrap();
    assert_eq!(get(&mut d, "alice", 0).as_deref(), Some("alice@example.com"));
}

#[test]
fn corrupt_and_truncated_files_fail_that_table_only() {
    let dir = TempDir::new("db-corrupt");
    for t in TYPES {
        let garbage = path_in(&dir, &format!("{t}-garbage"));
        std::fs::write(format!("{garbage}.db"), b"this is not a database\n").unwrap();
        let empty = path_in(&dir, &format!("{t}-empty"));
        std::fs::write(format!("{empty}.db"), b"").unwrap();
        for (name, mode) in [(&garbage, Mode::ReadOnly), (&garbage, Mode::ReadWrite), (&empty, Mode::ReadOnly)] {
            let err = open_with(t, name, mode, LOCK).err().unwrap();
            assert_eq!(err.reason, format!("open database {name}.db: Invalid argument"));
        }
        // Berkeley DB 5.3 turns an empty file opened with DB_CREATE into an
        // empty table (as for Postfix's proxywrite).
        let mut d = open_with(t, &empty, Mode::ReadWrite, LOCK).unwrap();
        assert_eq!(get(&mut d, "a", LOCK), None);
        assert!(put(&mut d, "a", "b", UPDATE).unwrap());
        drop(d);
        // (tests/postfix_files.rs asks postmap -q too.)
        let mut d = open_with(t, &empty, Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "a", 0).as_deref(), Some("b"));
        // A real table, then damaged copies of it.
        let source: String = (0..3000).map(|i| format!("key{i} value{i} {}\n", "x".repeat(i % 50))).collect();
        let good = build(&dir, t, &format!("{t}-good"), &source);
        let bytes = std::fs::read(format!("{good}.db")).unwrap();
        assert!(bytes.len() > 16384);
        let mut damaged = Vec::new();
        for (i, len) in [4096, 5000, 8192, bytes.len() / 2, bytes.len() - 100].into_iter().enumerate() {
            damaged.push((format!("truncated{i}"), bytes[..len].to_vec()));
        }
        let mut scribbled = bytes.clone();
        for b in scribbled[8192..].iter_mut().step_by(7) {
            *b = 0xa5;
        }
        damaged.push(("scribbled".into(), scribbled));
        let mut zeroed = bytes.clone();
        zeroed[4096..12288].fill(0);
        damaged.push(("zeroed".into(), zeroed));
        for (tag, content) in damaged {
            let name = path_in(&dir, &format!("{t}-{tag}"));
            std::fs::write(format!("{name}.db"), &content).unwrap();
            for mode in [Mode::ReadOnly, Mode::ReadWrite] {
                let Ok(mut d) = open_with(t, &name, mode, 0) else { continue };
                // Every operation either works or fails with an error; nothing panics or hangs.
                let mut out = Vec::new();
                for i in (0..3000).step_by(97) {
                    let _ = d.lookup(format!("key{i}").as_bytes(), LOCK, &mut out);
                }
                let mut cursor = None;
                let mut first = true;
                for _ in 0..10_000 {
                    match d.sequence(&mut cursor, first, 0) {
                        Ok(Some(_)) => first = false,
                        Ok(None) | Err(_) => break,
                    }
                }
                if mode == Mode::ReadWrite {
                    let _ = put(&mut d, "key5", "new", UPDATE);
                    let _ = d.delete(b"key7", SYNC_UPDATE);
                }
            }
        }
        // The undamaged table is unaffected.
        let mut d = open_with(t, &good, Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "key42", 0).as_deref(), Some(&*format!("value42 {}", "x".repeat(42))));
    }
}

#[test]
fn writes_are_read_back_by_another_instance() {
    // What another process sees, through a fresh read-only instance of
    // ours (tests/postfix_files.rs asks postmap -q and -s).
    let query =
        |t: &str, name: &str, key: &str| get(&mut open_with(t, name, Mode::ReadOnly, 0).unwrap(), key, FOLD_FIX);
    let dir = TempDir::new("db-write");
    for t in TYPES {
        let name = path_in(&dir, t);
        let mut d = open_with(t, &name, Mode::ReadWrite, 0).unwrap();
        assert!(std::path::Path::new(&format!("{name}.db")).exists(), "O_CREAT creates the file");
        assert_eq!(d.flags(), FIXED | TRY0NULL | TRY1NULL);
        assert!(put(&mut d, "alpha", "one", UPDATE).unwrap());
        assert_eq!(d.flags(), FIXED | TRY1NULL, "new files get the trailing NUL");
        assert!(put(&mut d, "Beta", "two", UPDATE | FOLD_FIX).unwrap());
        assert!(put(&mut d, "gamma", "three", UPDATE).unwrap());
        assert!(put(&mut d, "alpha", "uno", UPDATE).unwrap(), "DUP_REPLACE replaces");
        // Duplicates without DUP_REPLACE follow the policy in the request flags.
        assert!(!put(&mut d, "alpha", "ignored", SYNC_UPDATE | DUP_IGNORE).unwrap());
        assert!(!put(&mut d, "alpha", "warned", SYNC_UPDATE | DUP_WARN).unwrap());
        assert_eq!(
            put(&mut d, "alpha", "fatal", SYNC_UPDATE),
            Err(DictError::Config(format!("{name}.db: duplicate entry: \"alpha\"")))
        );
        assert!(d.delete(b"GAMMA", SYNC_UPDATE | FOLD_FIX).unwrap());
        assert!(!d.delete(b"gamma", SYNC_UPDATE).unwrap());
        assert!(!d.delete(b"Beta", SYNC_UPDATE).unwrap(), "no folding without FOLD_FIX");
        assert_eq!(get(&mut d, "alpha", 0).as_deref(), Some("uno"));
        // Synced after each update: another process sees everything at once.
        assert_eq!(query(t, &name, "alpha").as_deref(), Some("uno"));
        assert_eq!(query(t, &name, "beta").as_deref(), Some("two"));
        assert_eq!(query(t, &name, "gamma"), None);
        assert_eq!(listed(t, &name), vec!["alpha\tuno".to_owned(), "beta\ttwo".to_owned()]);
        // With LOCK too (flock exclusive around the update, released after).
        assert!(put(&mut d, "delta", "four", UPDATE | LOCK).unwrap());
        assert!(d.delete(b"beta", SYNC_UPDATE | LOCK).unwrap());
        assert_eq!(listed(t, &name), vec!["alpha\tuno".to_owned(), "delta\tfour".to_owned()]);
    }
}

/// Every entry of `t:name` as `KEY\tVALUE`, sorted, as a fresh read-only
/// instance walks it (`postmap -s` in tests/postfix_files.rs).
fn listed(t: &str, name: &str) -> Vec<String> {
    let mut d = open_with(t, name, Mode::ReadOnly, 0).unwrap();
    walk(&mut d, 0).into_iter().map(|(k, v)| format!("{k}\t{v}")).collect()
}

#[test]
fn sequence_survives_deletes_during_the_walk() {
    let dir = TempDir::new("db-seqdel");
    for t in TYPES {
        let name = path_in(&dir, t);
        let mut d = open_with(t, &name, Mode::ReadWrite, OPEN_LOCK).unwrap();
        let mut cursor = None;
        assert_eq!(d.sequence(&mut cursor, false, 0).unwrap(), None, "NEXT without FIRST");
        assert_eq!(d.sequence(&mut cursor, true, 0).unwrap(), None, "empty table");
        for i in 0..500 {
            put(&mut d, &format!("k{i:03}"), &format!("v{i}"), UPDATE).unwrap();
        }
        // verify(8)-style cleanup: delete every other entry as soon as it
        // is returned, the rest on the next step (dict_cache defers the
        // delete of the current entry).
        let mut cursor = None;
        let mut first = true;
        let mut seen = Vec::new();
        let mut pending: Option<Vec<u8>> = None;
        while let Some((k, v)) = d.sequence(&mut cursor, first, 0).unwrap() {
            first = false;
            assert_eq!(v, format!("v{}", std::str::from_utf8(&k[1..]).unwrap().parse::<u32>().unwrap()).as_bytes());
            if let Some(p) = pending.take() {
                assert!(d.delete(&p, SYNC_UPDATE).unwrap());
            }
            if seen.len() % 2 == 0 {
                assert!(d.delete(&k, SYNC_UPDATE).unwrap());
            } else {
                pending = Some(k.clone());
            }
            seen.push(k);
            assert!(seen.len() <= 500, "an entry came back twice");
        }
        if let Some(p) = pending.take() {
            assert!(d.delete(&p, SYNC_UPDATE).unwrap());
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 500, "{t}: every entry visited once");
        assert_eq!(walk(&mut d, 0), vec![]);
        drop(cursor);
        drop(d);
        assert_eq!(listed(t, &name), Vec::<String>::new());
    }
}

#[test]
fn cursors_outlive_their_table_and_a_reopen() {
    let dir = TempDir::new("db-cursor");
    let name = build(&dir, "btree", "t", "a 1\nb 2\nc 3\n");
    let mut d = open_with("btree", &name, Mode::ReadOnly, 0).unwrap();
    let mut cursor = None;
    assert_eq!(d.sequence(&mut cursor, true, 0).unwrap().unwrap().0, b"a");
    // The file changes: the reader re-opens its handle at the next
    // FIRST/lookup, while the old cursor keeps walking its snapshot.
    wait_writer(writer_elsewhere("btree", &name, "d 4\n"));
    assert!(d.changed());
    let mut other = None;
    assert_eq!(walk(&mut d, 0).len(), 4);
    assert_eq!(d.sequence(&mut other, true, 0).unwrap().unwrap().0, b"a");
    assert_eq!(d.sequence(&mut cursor, false, 0).unwrap().unwrap().0, b"b");
    // The table goes away before its cursors (a reopened table in the service).
    drop(d);
    assert_eq!(d_next(&mut cursor), None, "a cursor without its table ends");
    drop(cursor);
    drop(other);
}

fn d_next(cursor: &mut Option<Cursor>) -> Option<()> {
    // A new instance of the same file gets a cursor of its own; the old
    // one is simply dropped when the connection goes.
    cursor.take().map(drop).and(None)
}

#[test]
fn two_instances_with_different_lock_flags_both_serve() {
    let dir = TempDir::new("db-locks");
    for t in TYPES {
        let name = path_in(&dir, t);
        let (tx, rx) = std::sync::mpsc::channel();
        let n = name.clone();
        std::thread::spawn(move || {
            // verify(8): OPEN_LOCK; another client: per-request LOCK.
            let mut a = open_with(t, &n, Mode::ReadWrite, OPEN_LOCK).unwrap();
            let mut b = open_with(t, &n, Mode::ReadWrite, LOCK).unwrap();
            let mut c = open_with(t, &n, Mode::ReadOnly, LOCK).unwrap();
            put(&mut a, "k1", "from a", UPDATE).unwrap();
            put(&mut b, "k2", "from b", UPDATE | LOCK).unwrap();
            let r = (get(&mut b, "k1", LOCK), get(&mut a, "k2", 0), get(&mut c, "k2", LOCK), walk(&mut b, LOCK).len());
            // The OPEN_LOCK lock is still held against everybody else...
            let other = File::open(format!("{n}.db")).unwrap();
            let held = flock(&other, nix::fcntl::FlockArg::LockSharedNonblock).is_err();
            // ... until its instance goes.
            drop(a);
            let released = flock(&other, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok();
            tx.send((r, held, released)).unwrap();
        });
        let (r, held, released) =
            rx.recv_timeout(Duration::from_secs(20)).expect("instances of one file block each other");
        assert_eq!(r, (Some("from a".into()), Some("from b".into()), Some("from b".into()), 2), "{t}");
        assert!(held, "OPEN_LOCK holds an exclusive flock()");
        assert!(released, "and releases it with its instance");
    }
}

#[test]
fn open_lock_is_exclusive_against_other_processes() {
    let dir = TempDir::new("db-openlock");
    let name = build(&dir, "btree", "t", "a 1\n");
    let other = File::open(format!("{name}.db")).unwrap();
    flock(&other, nix::fcntl::FlockArg::LockShared).unwrap();
    let start = std::time::Instant::now();
    let err = open_with("btree", &name, Mode::ReadWrite, OPEN_LOCK).err().unwrap();
    assert_eq!(err.reason, format!("btree:{name}: unable to get exclusive lock: Resource temporarily unavailable"));
    assert!(start.elapsed() < Duration::from_secs(5));
    flock(&other, nix::fcntl::FlockArg::Unlock).unwrap();
    assert!(open_with("btree", &name, Mode::ReadWrite, OPEN_LOCK).is_ok());
}

/// A file replaced by rename is noticed at once when the old one goes
/// away, and within PATH_CHECK_INTERVAL when it keeps another link.
#[test]
fn replaced_files_are_noticed() {
    let dir = TempDir::new("db-replace");
    for t in TYPES {
        let name = build(&dir, t, t, "a 1\n");
        let db = format!("{name}.db");
        let mut r = open_with(t, &name, Mode::ReadOnly, LOCK).unwrap();
        assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("1"));
        let other = build(&dir, t, &format!("{t}-new"), "a 2\n");
        std::fs::rename(format!("{other}.db"), &db).unwrap();
        assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("2"));
        // Replaced again, the old file kept under another name.
        std::fs::hard_link(&db, format!("{db}.bak")).unwrap();
        let other = build(&dir, t, &format!("{t}-new"), "a 3\n");
        std::fs::rename(format!("{other}.db"), &db).unwrap();
        std::thread::sleep(PATH_CHECK_INTERVAL + Duration::from_millis(100));
        assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("3"));
    }
}

/// A read-only hash handle reads pages itself: keys added by another
/// process split buckets and change the meta page, and every key is
/// still found.
#[test]
fn hash_readers_follow_bucket_splits() {
    let dir = TempDir::new("db-split");
    let name = build(&dir, "hash", "h", "k0 v0\n");
    let mut r = open_with("hash", &name, Mode::ReadOnly, LOCK).unwrap();
    assert_eq!(get(&mut r, "k0", LOCK).as_deref(), Some("v0"));
    let more: String = (1..3000).map(|i| format!("k{i} v{i}\n")).collect();
    wait_writer(writer_elsewhere("hash", &name, &more));
    for i in 0..3000 {
        assert_eq!(get(&mut r, &format!("k{i}"), LOCK), Some(format!("v{i}")), "k{i}");
    }
    assert_eq!(get(&mut r, "k3000", LOCK), None);
}

#[test]
fn readers_see_updates() {
    let dir = TempDir::new("db-fresh");
    for t in TYPES {
        let name = build(&dir, t, t, "a 1\n");
        // Writer first, then a reader in the same process.
        let mut w = open_with(t, &name, Mode::ReadWrite, 0).unwrap();
        let mut r = open_with(t, &name, Mode::ReadOnly, LOCK).unwrap();
        assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("1"));
        put(&mut w, "a", "2", UPDATE).unwrap();
        put(&mut w, "b", "3", UPDATE).unwrap();
        assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("2"));
        assert_eq!(get(&mut r, "b", 0).as_deref(), Some("3"));
        drop((w, r));
        // Reader first, then a writer.
        let mut r = open_with(t, &name, Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut r, "a", 0).as_deref(), Some("2"));
        let mut w = open_with(t, &name, Mode::ReadWrite, 0).unwrap();
        put(&mut w, "a", "4", UPDATE).unwrap();
        assert_eq!(get(&mut r, "a", 0).as_deref(), Some("4"));
        drop((w, r));
        // Another process updates the file in place, as postmap -r -i does.
        let mut r = open_with(t, &name, Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut r, "a", 0).as_deref(), Some("4"));
        assert!(!r.changed());
        wait_writer(writer_elsewhere(t, &name, "c 5\na 6\n"));
        assert!(r.changed());
        assert_eq!(get(&mut r, "c", LOCK).as_deref(), Some("5"));
        assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("6"));
        // Removed: changed, and the reader keeps its open file.
        std::fs::remove_file(format!("{name}.db")).unwrap();
        assert!(r.changed());
        assert_eq!(get(&mut r, "c", 0).as_deref(), Some("5"));
    }
}

#[test]
fn a_pass_checks_the_file_once_and_writers_wait_for_its_end() {
    use crate::dict::file::filelock::Pass;
    let dir = TempDir::new("db-pass");
    for t in TYPES {
        let name = build(&dir, t, t, "a 1\n");
        let mut r = open_with(t, &name, Mode::ReadOnly, LOCK).unwrap();
        let pass = Pass::begin();
        assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("1"));
        let mut writer = writer_elsewhere(t, &name, "a 2\n");
        std::thread::sleep(Duration::from_millis(300));
        assert!(writer.try_wait().unwrap().is_none(), "{t}: the writer waits for the pass's shared lock");
        assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("1"));
        drop(pass);
        wait_writer(writer);
        let _pass = Pass::begin();
        assert_eq!(get(&mut r, "a", LOCK).as_deref(), Some("2"), "{t}: the next pass sees the update");
    }
}

#[test]
fn verify_verdicts_are_shared_through_the_data_directory() {
    let dir = TempDir::new("db-verdicts");
    let mut params = Params::default();
    params.set("data_directory", dir.path().to_str().unwrap());
    let verdicts = Verdicts::in_dir(dir.path());
    for t in TYPES {
        let name = build(&dir, t, t, "a 1\n");
        let db_path = format!("{name}.db");
        let meta = || std::fs::metadata(&db_path).unwrap();
        let mut d = open_in(t, &name, Mode::ReadOnly, LOCK, &params).unwrap();
        assert_eq!(get(&mut d, "a", LOCK).as_deref(), Some("1"));
        drop(d);
        assert!(verdicts.known(&db_path, &meta()), "{t}: verified once, remembered");
        // The next process opens it without a verify pass.
        let mut d = open_in(t, &name, Mode::ReadOnly, LOCK, &params).unwrap();
        assert_eq!(get(&mut d, "a", LOCK).as_deref(), Some("1"));
        drop(d);
        // A rebuilt file is a new file: verified (and remembered) again.
        rebuild(&dir, t, &name, "a 2\nb 3\n");
        assert!(!verdicts.known(&db_path, &meta()), "{t}: a rebuilt file is not known");
        let mut d = open_in(t, &name, Mode::ReadOnly, LOCK, &params).unwrap();
        assert_eq!(get(&mut d, "b", LOCK).as_deref(), Some("3"));
        drop(d);
        assert!(verdicts.known(&db_path, &meta()), "{t}: remembered after the rebuild");
        // The writer's own flushed updates keep the file known: a new
        // writer or reader opens it without a verify pass.
        let mut w = open_in(t, &name, Mode::ReadWrite, LOCK, &params).unwrap();
        assert!(put(&mut w, "c", "4", UPDATE | LOCK).unwrap());
        assert!(verdicts.known(&db_path, &meta()), "{t}: known after the writer's update");
        assert!(put(&mut w, "d", "5", DUP_REPLACE | LOCK).unwrap()); // not flushed: not vouched for
        drop(w);
        assert!(!verdicts.known(&db_path, &meta()), "{t}: an unflushed update is not vouched for");
        // A damaged file never gets a verdict.
        let bad = path_in(&dir, &format!("{t}-bad"));
        std::fs::write(format!("{bad}.db"), b"this is not a database\n").unwrap();
        assert!(open_in(t, &bad, Mode::ReadOnly, LOCK, &params).is_err());
        assert!(!verdicts.known(&format!("{bad}.db"), &std::fs::metadata(format!("{bad}.db")).unwrap()));
    }
}

/// A small tmpfs of its own, unmounted when dropped; None where this
/// process may not mount (not root).
struct SmallFs {
    dir: TempDir,
}

impl SmallFs {
    fn mount(tag: &str, kib: u32) -> Option<SmallFs> {
        let dir = TempDir::new(tag);
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k,mode=0755"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallFs { dir })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// Fill a small file system with updates of a `t` table until writes
/// fail; the keys acknowledged, the open writer and the filler to remove.
fn fill_up(fs: &SmallFs, t: &str, name: &str) -> (Vec<String>, Box<dyn Dict>, std::path::PathBuf) {
    let filler = fs.dir.path().join(format!("filler-{t}"));
    let mut d = open_with(t, name, Mode::ReadWrite, LOCK).unwrap();
    let free = nix::sys::statvfs::statvfs(fs.dir.path()).unwrap();
    let room = free.blocks_available() as usize * free.fragment_size() as usize;
    // Leave about 100 KiB for the table.
    std::fs::write(&filler, vec![0u8; room.saturating_sub(100 * 1024)]).unwrap();
    let (mut acked, mut failures) = (Vec::new(), 0);
    for i in 0..5000 {
        let key = format!("key{i}");
        match put(&mut d, &key, &"v".repeat(200 + i % 300), UPDATE) {
            Ok(_) => acked.push(key),
            Err(e) => {
                assert!(matches!(e, DictError::Retry(_)), "{t}: {e:?}");
                failures += 1;
            }
        }
        if failures > 20 {
            break;
        }
    }
    assert!(failures > 0, "{t}: the file system never filled");
    assert!(acked.len() > 20, "{t}: {} acknowledged", acked.len());
    (acked, d, filler)
}

/// The writer on a file system that fills up: every update acknowledged
/// or RETRY; the writer keeps what it could not write and writes it as soon
/// as space returns, so no acknowledged key is lost and the file passes
/// the verify pass of readers and of a new writer.
#[test]
fn a_table_written_on_a_full_file_system_loses_no_acknowledged_key() {
    let Some(fs) = SmallFs::mount("db-enospc", 512) else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    for t in TYPES {
        let name = path_in(&fs.dir, &format!("{t}-full"));
        let (acked, mut d, filler) = fill_up(&fs, t, &name);
        // Still full: RETRY, the handle kept.
        assert!(matches!(put(&mut d, "more", "x", UPDATE), Err(DictError::Retry(_))));
        std::fs::remove_file(&filler).unwrap();
        assert!(put(&mut d, "after", "space", UPDATE).unwrap(), "{t}");
        drop(d);
        for mode in [Mode::ReadOnly, Mode::ReadWrite] {
            let mut d = open_with(t, &name, mode, LOCK).unwrap_or_else(|e| panic!("{t} {mode:?}: {}", e.reason));
            for key in acked.iter().chain([&"after".to_string()]) {
                assert!(get(&mut d, key, LOCK).is_some(), "{t} {mode:?}: acknowledged {key} lost");
            }
        }
    }
}

/// A hash file left damaged (its writer closed while the file system was
/// full) is rebuilt by the next writer from every pair still readable;
/// readers then open it again.
#[test]
fn the_writer_rebuilds_a_damaged_hash_file() {
    let Some(fs) = SmallFs::mount("db-repair", 512) else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?)");
        return;
    };
    let name = path_in(&fs.dir, "hash-damaged");
    let (acked, d, filler) = fill_up(&fs, "hash", &name);
    drop(d); // its cached pages cannot be written: the file is left damaged
    std::fs::remove_file(&filler).unwrap();
    let damaged_open = open_with("hash", &name, Mode::ReadOnly, LOCK);
    let readable = match damaged_open {
        // (A writer closed mid-split leaves it damaged in every run here.)
        Err(e) => {
            assert!(e.damaged, "{}", e.reason);
            // What the page reader finds is what the repair keeps.
            HashPages::open(&format!("{name}.db")).unwrap().salvage().unwrap().pairs.len()
        }
        Ok(_) => {
            eprintln!("the file was left undamaged this time: nothing to repair");
            return;
        }
    };
    assert!(readable > acked.len() / 2, "{readable} of {}", acked.len());
    let mut w = open_with("hash", &name, Mode::ReadWrite, LOCK).unwrap_or_else(|e| panic!("writer: {}", e.reason));
    assert!(put(&mut w, "after", "repair", UPDATE).unwrap());
    drop(w);
    let mut r = open_with("hash", &name, Mode::ReadOnly, LOCK).unwrap_or_else(|e| panic!("reader: {}", e.reason));
    assert_eq!(get(&mut r, "after", LOCK).as_deref(), Some("repair"));
    let found = acked.iter().filter(|k| get(&mut r, k, LOCK).is_some()).count();
    assert!(found + 1 >= readable.min(acked.len()), "{found} found, {readable} readable");
}

/// A reader's verify pass over a big hash file runs on its own thread
/// (test_gate sends this small file there and holds the pass): lookups
/// are answered from the pages meanwhile; `sequence`, which needs
/// Berkeley DB, waits for the pass; the pass is remembered.
#[test]
fn a_big_hash_file_is_served_while_its_verify_pass_runs() {
    use super::verify::test_gate;
    use std::sync::atomic::AtomicBool;
    let dir = TempDir::new("db-background-verify");
    let mut params = Params::default();
    params.set("data_directory", dir.path().to_str().unwrap());
    let verdicts = Verdicts::in_dir(dir.path());
    let name = build(&dir, "hash", "big", "a 1\nb 2\n");
    let db_path = format!("{name}.db");
    let meta = || std::fs::metadata(&db_path).unwrap();
    test_gate::hold(&db_path);
    let mut d = open_in("hash", &name, Mode::ReadOnly, LOCK, &params).unwrap();
    assert_eq!(get(&mut d, "a", LOCK).as_deref(), Some("1"));
    assert_eq!(get(&mut d, "nothing", LOCK), None);
    assert!(!verdicts.known(&db_path, &meta()), "the pass is held: no verdict yet");
    let released = Arc::new(AtomicBool::new(false));
    let releaser = {
        let (released, db_path) = (Arc::clone(&released), db_path.clone());
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            released.store(true, Ordering::SeqCst);
            test_gate::release(&db_path);
        })
    };
    assert_eq!(walk(&mut d, LOCK), [("a".into(), "1".into()), ("b".into(), "2".into())]);
    assert!(released.load(Ordering::SeqCst), "sequence waited for the pass");
    releaser.join().unwrap();
    assert!(verdicts.known(&db_path, &meta()), "the pass is remembered");
    // Rebuilt: the reader re-opens it and its lookups go on during the new pass.
    test_gate::hold(&db_path);
    rebuild(&dir, "hash", &name, "a 3\nc 4\n");
    assert_eq!(get(&mut d, "c", LOCK).as_deref(), Some("4"));
    assert!(!verdicts.known(&db_path, &meta()));
    test_gate::release(&db_path);
}

/// A big hash file that fails the pass run on its own thread: what the
/// pages gave meanwhile was served; then the table answers as a damaged
/// file does when checked before use (an error, the file named).
#[test]
fn a_big_hash_file_that_fails_its_pass_is_then_refused() {
    use super::verify::test_gate;
    let dir = TempDir::new("db-background-damaged");
    let source: String = (0..3000).map(|i| format!("key{i} value{i} {}\n", "x".repeat(i % 50))).collect();
    let good = build(&dir, "hash", "good", &source);
    let mut bytes = std::fs::read(format!("{good}.db")).unwrap();
    for b in bytes[8192..].iter_mut().step_by(7) {
        *b = 0xa5;
    }
    let name = path_in(&dir, "scribbled");
    let db_path = format!("{name}.db");
    std::fs::write(&db_path, &bytes).unwrap();
    test_gate::hold(&db_path);
    let d = open_with("hash", &name, Mode::ReadOnly, LOCK).unwrap();
    let mut out = Vec::new();
    for i in (0..3000).step_by(97) {
        // Answers or errors from the pages: nothing panics, nothing waits.
        let _ = d.lookup(format!("key{i}").as_bytes(), LOCK, &mut out);
    }
    test_gate::release(&db_path);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let err = loop {
        match d.lookup(b"key0", LOCK, &mut out) {
            Err(e) => break e,
            Ok(_) if std::time::Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(_) => panic!("the damaged file is still served 10 s after its pass"),
        }
    };
    assert!(format!("{err:?}").contains(&db_path), "{err:?}");
    // And stays refused, checked before use (no new background pass).
    assert!(d.lookup(b"key0", LOCK, &mut out).is_err());
}

/// On demand (the figure in docs/reliability.md): the first lookup and
/// the whole verify pass on a big unverified hash file.
/// `cargo test --release --lib first_lookup_on_a_big_file -- --ignored --nocapture`
#[test]
#[ignore]
fn first_lookup_on_a_big_file() {
    let dir = TempDir::new("db-big-figure");
    let name = path_in(&dir, "big");
    let mut w = open_with("hash", &name, Mode::ReadWrite, 0).unwrap();
    let value = "v".repeat(200);
    for i in 0..1_000_000u32 {
        w.update(format!("key{i}").as_bytes(), value.as_bytes(), DUP_REPLACE).unwrap();
    }
    drop(w);
    let size = std::fs::metadata(format!("{name}.db")).unwrap().len();
    let started = std::time::Instant::now();
    let mut d = open_with("hash", &name, Mode::ReadOnly, LOCK).unwrap();
    assert_eq!(get(&mut d, "key123456", LOCK).as_deref(), Some(&*value));
    let first = started.elapsed();
    // sequence waits for the pass.
    let (mut cursor, mut n) = (None, 0);
    while d.sequence(&mut cursor, n == 0, LOCK).unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 1_000_000);
    let pass = started.elapsed();
    println!(
        "{} MB: first lookup {:.1} ms, pass ended by {:.1} s",
        size >> 20,
        first.as_secs_f64() * 1e3,
        pass.as_secs_f64()
    );
}
