use super::*;
use crate::config::Params;
use crate::dict::testutil::{copy_fixture, fill};
use crate::protocol::flags::SYNC_UPDATE;
use crate::test_support::TempDir;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

// Tables built by postmap from tests/fixtures/basic.txt:
// "Alice alice@example.com\nbob bob@example.com, bob2@example.com\nMiXed Case Value\n"
// (basic.lmdb; keepcase.lmdb with -f -n).
/// What the server adds to an update from proxywrite.
const UPD: u32 = SYNC_UPDATE | DUP_REPLACE;

fn open_with(name: &str, mode: Mode, flags: u32, params: &Params) -> Result<Box<dyn Dict>, OpenError> {
    open(&OpenRequest { type_name: "lmdb", name, mode, flags, params })
}

fn ro(name: &str) -> Box<dyn Dict> {
    open_with(name, Mode::ReadOnly, 0, &Params::default()).unwrap()
}

fn rw(name: &str) -> Box<dyn Dict> {
    open_with(name, Mode::ReadWrite, 0, &Params::default()).unwrap()
}

use crate::dict::testutil::get;

fn walk(d: &mut Box<dyn Dict>) -> Vec<(String, String)> {
    let mut cursor = None;
    let mut first = true;
    let mut seen = Vec::new();
    while let Some((k, v)) = d.sequence(&mut cursor, first, 0).unwrap() {
        first = false;
        seen.push((String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()));
    }
    seen
}

/// `dir/name` as a table name.
fn path_in(dir: &TempDir, name: &str) -> String {
    dir.path().join(name).to_str().unwrap().to_owned()
}

/// What another reader finds for `key` (folded, as `postmap -q`, which
/// tests/postfix_files.rs asks).
fn query(name: &str, key: &str) -> Option<String> {
    get(&mut ro(name), key, FOLD_FIX)
}

/// Every entry as `KEY\tVALUE` in key order, as another reader walks the
/// table (`postmap -s` in tests/postfix_files.rs).
fn listed(name: &str) -> Vec<String> {
    walk(&mut ro(name)).into_iter().map(|(k, v)| format!("{k}\t{v}")).collect()
}

/// The raw stored bytes, bypassing the NUL conventions.
fn raw_get(path: &str, key: &[u8]) -> Option<Vec<u8>> {
    let c = CString::new(format!("{path}.lmdb")).unwrap();
    Env::open(&c, true, 1 << 20).unwrap().get(key).unwrap()
}

#[test]
fn reads_postmap_files_with_folding_and_nul_discovery() {
    let lab = TempDir::new("lmdb");
    let t = copy_fixture(lab.path(), "basic.lmdb", "t");
    let mut d = ro(&t);
    assert_eq!(d.flags(), FIXED | MULTI_WRITER | TRY0NULL | TRY1NULL);
    assert_eq!(d.flags(), 262172, "Postfix's open reply for a fresh lmdb instance");
    // postmap lowercased the keys and appended NULs.
    assert_eq!(raw_get(&t, b"alice\0").as_deref(), Some(&b"alice@example.com\0"[..]));
    assert_eq!(get(&mut d, "alice", 0).as_deref(), Some("alice@example.com"));
    assert_eq!(get(&mut d, "Alice", 0), None);
    assert_eq!(get(&mut d, "ALICE", FOLD_FIX).as_deref(), Some("alice@example.com"));
    assert_eq!(get(&mut d, "bob", 0).as_deref(), Some("bob@example.com, bob2@example.com"));
    assert_eq!(get(&mut d, "MIXED", FOLD_FIX).as_deref(), Some("Case Value"));
    assert_eq!(get(&mut d, "nobody", FOLD_FIX), None);
    assert_eq!(get(&mut d, "", 0), None, "an empty key is simply absent");
    assert_eq!(get(&mut d, &"x".repeat(600), 0), None, "so is one beyond LMDB's key limit");
    assert_eq!(
        walk(&mut d),
        vec![
            ("alice".into(), "alice@example.com".into()),
            ("bob".into(), "bob@example.com, bob2@example.com".into()),
            ("mixed".into(), "Case Value".into()),
        ],
        "key order, without the trailing NULs"
    );
    assert!(!d.changed());

    // postmap -f keeps the case; -n stores without NUL: found by the second probe.
    let u = copy_fixture(lab.path(), "keepcase.lmdb", "u");
    assert_eq!(raw_get(&u, b"Alice"), Some(b"alice@example.com".to_vec()));
    let mut d = rw(&u);
    assert_eq!(get(&mut d, "Alice", 0).as_deref(), Some("alice@example.com"));
    assert_eq!(get(&mut d, "alice", 0), None);
    assert_eq!(get(&mut d, "MiXed", 0).as_deref(), Some("Case Value"));
    // Discovered "no NUL": updates follow the file's convention.
    assert!(d.update(b"new", b"value", UPD).unwrap());
    assert_eq!(raw_get(&u, b"new"), Some(b"value".to_vec()));
    assert_eq!(raw_get(&u, b"new\0"), None);
    assert_eq!(query(&u, "new").as_deref(), Some("value"));

    // Explicit TRY1NULL at open: only the NUL probe is made.
    let mut d = open_with(&u, Mode::ReadOnly, TRY1NULL, &Params::default()).unwrap();
    assert_eq!(d.flags(), FIXED | MULTI_WRITER | TRY1NULL);
    assert_eq!(get(&mut d, "Alice", 0), None);
}

#[test]
fn writes_are_read_by_other_readers() {
    let lab = TempDir::new("lmdb");
    let t = path_in(&lab, "w");
    let mdb_path = format!("{t}.lmdb");
    let exists = |p: &str| std::path::Path::new(p).exists();
    assert!(!exists(&mdb_path));
    // proxymap (read-only) does not create.
    let err = open_with(&t, Mode::ReadOnly, 0, &Params::default()).err().unwrap();
    assert_eq!(err.reason, format!("open database {mdb_path}: No such file or directory"));
    // proxywrite creates, mode 0644 less the umask (022 here or stricter).
    let mut d = rw(&t);
    let mode = std::fs::metadata(&mdb_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode & !0o644, 0, "mode {mode:o}");
    assert!(!exists(&format!("{mdb_path}-lock")), "MDB_NOLOCK: no lock file");
    assert_eq!(listed(&t), Vec::<String>::new());

    assert!(d.update(b"Key1", b"value 1", UPD | FOLD_FIX).unwrap());
    assert!(d.update(b"key2", b"value 2", UPD).unwrap());
    assert!(d.update(b"key3", b"value 3", UPD).unwrap());
    // Undecided at the first update: the NUL is appended, as on Linux Postfix.
    assert_eq!(raw_get(&t, b"key1\0"), Some(b"value 1\0".to_vec()));
    assert_eq!(query(&t, "key1").as_deref(), Some("value 1"));
    assert_eq!(query(&t, "KEY2").as_deref(), Some("value 2"), "postmap -q folds");
    // Replace, delete.
    assert!(d.update(b"key2", b"value 2b", UPD).unwrap());
    assert!(d.delete(b"KEY3", SYNC_UPDATE | FOLD_FIX).unwrap());
    assert!(!d.delete(b"key3", SYNC_UPDATE).unwrap());
    assert_eq!(listed(&t), vec!["key1\tvalue 1", "key2\tvalue 2b"]);
    // Duplicate policies (proxywrite forces DUP_REPLACE; direct callers may not).
    assert!(!d.update(b"key1", b"other", DUP_IGNORE).unwrap());
    assert!(!d.update(b"key1", b"other", DUP_WARN).unwrap());
    assert!(matches!(d.update(b"key1", b"other", 0), Err(DictError::Config(_))));
    assert_eq!(get(&mut d, "key1", 0).as_deref(), Some("value 1"));
    // A key LMDB cannot hold is a configuration error, not a retry.
    assert!(matches!(d.update(&[b'k'; 600], b"v", UPD), Err(DictError::Config(_))));

    // A reader opened earlier sees every later commit of the writer.
    let mut r = ro(&t);
    assert_eq!(get(&mut r, "key4", 0), None);
    assert!(d.update(b"key4", b"value 4", UPD).unwrap());
    assert_eq!(get(&mut r, "key4", 0).as_deref(), Some("value 4"));
    assert!(d.delete(b"key4", SYNC_UPDATE).unwrap());
    assert_eq!(get(&mut r, "key4", 0), None);

    // (Postfix's own writer rebuilding the file under both: in
    // tests/postfix_files.rs.)
    assert!(d.update(b"mine", b"too", UPD).unwrap());
    assert_eq!(listed(&t), vec!["key1\tvalue 1", "key2\tvalue 2b", "mine\ttoo"]);
    assert!(!r.changed() && !d.changed());
}

#[test]
fn sequence_survives_deletes_and_writers() {
    let lab = TempDir::new("lmdb");
    let t = path_in(&lab, "s");
    let mut w = rw(&t);
    for i in 0..200 {
        assert!(w.update(format!("k{i:03}").as_bytes(), format!("v{i}").as_bytes(), UPD).unwrap());
    }
    // Walk, deleting the entry just returned and every fifth following
    // one, as the verify/postscreen cache cleanup does.
    let mut cursor = None;
    let mut first = true;
    let mut seen = Vec::new();
    while let Some((k, v)) = w.sequence(&mut cursor, first, LOCK).unwrap() {
        first = false;
        let n: usize = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
        assert_eq!(v, format!("v{n}").as_bytes());
        seen.push(n);
        assert!(w.delete(&k, SYNC_UPDATE | LOCK).unwrap());
        if n.is_multiple_of(5) && n + 1 < 200 {
            assert!(w.delete(format!("k{:03}", n + 1).as_bytes(), SYNC_UPDATE).unwrap());
        }
        // Another writer's insert behind the cursor does not disturb it.
        if n == 100 {
            assert!(w.update(b"a-late", b"x", UPD).unwrap());
        }
    }
    let expect: Vec<usize> = (0..200).filter(|n| !(n % 5 == 1 && *n > 0)).collect();
    assert_eq!(seen, expect);
    assert_eq!(listed(&t), vec!["a-late\tx"]);
    // After the end, NEXT starts over (slmdb forgot the position); so does
    // NEXT on a connection that never sent FIRST.
    assert_eq!(w.sequence(&mut cursor, false, 0).unwrap(), Some((b"a-late".to_vec(), b"x".to_vec())));
    assert_eq!(w.sequence(&mut None, false, 0).unwrap(), Some((b"a-late".to_vec(), b"x".to_vec())));
    // Two connections iterate independently.
    assert!(w.update(b"b", b"y", UPD).unwrap());
    let (mut c1, mut c2) = (None, None);
    assert_eq!(w.sequence(&mut c1, true, 0).unwrap().unwrap().0, b"a-late");
    assert_eq!(w.sequence(&mut c2, true, 0).unwrap().unwrap().0, b"a-late");
    assert_eq!(w.sequence(&mut c1, false, 0).unwrap().unwrap().0, b"b");
    assert_eq!(w.sequence(&mut c1, false, 0).unwrap(), None);
    assert_eq!(w.sequence(&mut c2, false, 0).unwrap().unwrap().0, b"b");
}

#[test]
fn map_grows_beyond_a_tiny_lmdb_map_size() {
    let lab = TempDir::new("lmdb");
    let t = path_in(&lab, "g");
    let params = Params::from_text("lmdb_map_size = 20000\n", "main.cf", &[]).unwrap();
    let mut w = open_with(&t, Mode::ReadWrite, 0, &params).unwrap();
    // A reader with the same tiny map must follow the growth (MDB_MAP_RESIZED).
    let mut r = open_with(&t, Mode::ReadOnly, 0, &params).unwrap();
    let big = vec![b'x'; 3 << 20];
    for i in 0..2000 {
        let value = format!("{i:01000}");
        assert!(w.update(format!("key{i}").as_bytes(), value.as_bytes(), UPD).unwrap());
    }
    assert!(w.update(b"big", &big, UPD).unwrap());
    let size = std::fs::metadata(format!("{t}.lmdb")).unwrap().len();
    assert!(size > 5 << 20, "file has {size} bytes");
    assert_eq!(get(&mut r, "key1999", 0).unwrap().len(), 1000);
    assert_eq!(get(&mut r, "big", 0).unwrap().len(), big.len());
    assert_eq!(query(&t, "key7").unwrap(), format!("{:01000}", 7));
    assert_eq!(listed(&t).len(), 2001);
    // A new instance starts with a map that fits the file.
    let mut again = open_with(&t, Mode::ReadOnly, 0, &params).unwrap();
    assert_eq!(get(&mut again, "big", 0).unwrap().len(), big.len());
}

#[test]
fn damaged_files_fail_cleanly() {
    let lab = TempDir::new("lmdb");
    let source: String = (0..3000).map(|i| format!("key{i} {i:0200}\n")).collect();
    // Written by our writer as postmap would (liblmdb, keys folded, with
    // NUL); postmap's own file is damaged in tests/postfix_files.rs.
    let t = path_in(&lab, "c");
    fill(&mut rw(&t), &source, FOLD_FIX);
    let mdb_path = format!("{t}.lmdb");
    let full = std::fs::read(&mdb_path).unwrap();
    assert!(full.len() > 100_000);
    let mut reader = ro(&t);
    assert!(get(&mut reader, "key5", 0).is_some());

    // Truncated under an open reader: an error, not SIGBUS.
    std::fs::write(&mdb_path, &full[..full.len() / 2]).unwrap();
    let mut out = Vec::new();
    let err = reader.lookup(b"key2999", 0, &mut out).unwrap_err();
    match err {
        DictError::Retry(text) => {
            assert!(text.starts_with(&format!("error reading lmdb:{t}: database file is truncated")), "{text}")
        }
        other => panic!("{other:?}"),
    }
    assert!(reader.sequence(&mut None, true, 0).is_err());

    // Truncated, tiny, empty, garbage: open errors naming the file.
    for (what, content) in [
        ("half", full[..full.len() / 2].to_vec()),
        ("one page", full[..4096].to_vec()),
        ("100 bytes", full[..100].to_vec()),
        ("empty", Vec::new()),
        ("garbage", (0..16384u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect()),
    ] {
        std::fs::write(&mdb_path, &content).unwrap();
        let err = open_with(&t, Mode::ReadOnly, 0, &Params::default()).err();
        let err = err.unwrap_or_else(|| panic!("{what}: opened"));
        assert!(err.reason.starts_with(&format!("open database {mdb_path}: ")), "{what}: {}", err.reason);
    }
    std::fs::write(&mdb_path, &full[..full.len() / 2]).unwrap();
    let err = open_with(&t, Mode::ReadOnly, 0, &Params::default()).err().unwrap();
    assert!(err.reason.contains("database file is truncated"), "{}", err.reason);
    assert!(err.retried(), "a file cut short is opened again later (postmap fixes it)");
    std::fs::write(&mdb_path, b"").unwrap();
    // An empty file is not silently turned into a new database by a reader;
    // LMDB says EBADF there (it tries to write a meta page), tried again too.
    let err = open_with(&t, Mode::ReadOnly, 0, &Params::default()).err().unwrap();
    assert_eq!(err.reason, format!("open database {mdb_path}: Bad file descriptor"));
    assert!(err.retried());
}

#[test]
fn a_file_truncated_between_the_size_check_and_the_read_is_an_error_not_sigbus() {
    let lab = TempDir::new("lmdb");
    let source: String = (0..3000).map(|i| format!("key{i} {i:0200}\n")).collect();
    let t = path_in(&lab, "s");
    fill(&mut rw(&t), &source, 0);
    let mdb_path = format!("{t}.lmdb");
    let c = CString::new(mdb_path.clone()).unwrap();
    let mut env = Env::open(&c, true, 1 << 24).unwrap();
    assert!(env.get(b"key2999\0").unwrap().is_some());
    // As under a lock lease that saw the length checked: no check per read,
    // so the truncation below is found only by touching a missing page.
    env.set_size_known(true);
    std::fs::OpenOptions::new().write(true).open(&mdb_path).unwrap().set_len(0).unwrap();
    assert_eq!(env.get(b"key2999\0"), Err(mdb::Error::MapFault));
    assert_eq!(env.get(b"key1\0"), Err(mdb::Error::MapFault), "the map stays void until reopened");
    drop(env);
    // The dict reopens, and says why it cannot.
    let d = ro_after_write(&t, &source);
    let full = std::fs::read(&mdb_path).unwrap();
    let mut out = Vec::new();
    assert!(d.lookup(b"key2999", LOCK, &mut out).unwrap());
    std::fs::write(&mdb_path, &full[..0]).unwrap();
    assert!(matches!(d.lookup(b"key2999", LOCK, &mut out), Err(DictError::Retry(_))));
    std::fs::write(&mdb_path, &full).unwrap();
    assert!(d.lookup(b"key2999", LOCK, &mut out).unwrap(), "the same file back: served again");
}

/// A reader of `t`, after `source` was written into it afresh.
fn ro_after_write(t: &str, source: &str) -> Box<dyn Dict> {
    let _ = std::fs::remove_file(format!("{t}.lmdb"));
    fill(&mut rw(t), source, 0);
    ro(t)
}

#[test]
fn lock_flags() {
    let lab = TempDir::new("lmdb");
    let t = copy_fixture(lab.path(), "basic.lmdb", "l");
    // OPEN_LOCK becomes LOCK on this multi-writer table; both is refused.
    let d = open_with(&t, Mode::ReadWrite, OPEN_LOCK, &Params::default()).unwrap();
    assert_eq!(d.flags(), FIXED | MULTI_WRITER | TRY0NULL | TRY1NULL | LOCK);
    let err = open_with(&t, Mode::ReadWrite, OPEN_LOCK | LOCK, &Params::default()).err().unwrap();
    assert_eq!(err.reason, format!("dict_open: attempt to open lmdb:{t} with both \"open\" lock and \"access\" lock"));
    // With LOCK, a lookup waits for another process's exclusive fcntl lock.
    let mdb_path = format!("{t}.lmdb");
    let script = "import fcntl,sys,time\nf=open(sys.argv[1],'r+')\nfcntl.lockf(f,fcntl.LOCK_EX)\nprint('locked',flush=True)\ntime.sleep(0.6)\n";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, &mdb_path])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    assert_eq!(line, "locked\n");
    let mut d = ro(&t);
    let start = Instant::now();
    assert!(get(&mut d, "alice", 0).is_some());
    assert!(start.elapsed() < Duration::from_millis(300), "no LOCK: no waiting");
    assert!(get(&mut d, "alice", LOCK).is_some());
    assert!(start.elapsed() >= Duration::from_millis(300), "LOCK waited {:?}", start.elapsed());
    child.wait().unwrap();
    // Our locks are released after each access: another process can lock at once.
    let mut w = rw(&t);
    assert!(w.update(b"x", b"y", UPD | LOCK).unwrap());
    let script = "import fcntl,sys\nf=open(sys.argv[1],'r+')\ntry: fcntl.lockf(f,fcntl.LOCK_EX|fcntl.LOCK_NB)\nexcept OSError: sys.exit(1)\n";
    let st = std::process::Command::new("python3").args(["-c", script, &mdb_path]).status().unwrap();
    assert!(st.success());
    // Inside a worker's pass the shared lock is kept until the pass ends,
    // against Postfix's own (classic fcntl) locks.
    let pass = crate::dict::file::filelock::Pass::begin();
    assert!(get(&mut d, "alice", LOCK).is_some());
    let st = std::process::Command::new("python3").args(["-c", script, &mdb_path]).status().unwrap();
    assert!(!st.success(), "the pass still holds the shared lock");
    assert!(get(&mut d, "alice", LOCK).is_some());
    drop(pass);
    let st = std::process::Command::new("python3").args(["-c", script, &mdb_path]).status().unwrap();
    assert!(st.success(), "released when the pass ends");
}

#[test]
fn removal_is_a_change() {
    let lab = TempDir::new("lmdb");
    let t = copy_fixture(lab.path(), "basic.lmdb", "r");
    let mut d = ro(&t);
    let mut w = rw(&t);
    assert!(w.update(b"z", b"1", UPD).unwrap());
    assert!(!d.changed(), "updates are no change for a multi-writer table");
    assert_eq!(get(&mut d, "z", 0).as_deref(), Some("1"));
    std::fs::remove_file(format!("{t}.lmdb")).unwrap();
    assert!(d.changed());
}
