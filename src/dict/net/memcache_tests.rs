//! The `memcache:` table against a real memcached of the test's own
//! ([`super::super::test_memcached`]), and against fake servers for the
//! replies memcached never sends; each test that needs memcached says
//! "skipped" and passes when it is not installed.

use super::*;
use crate::config::Params;
use crate::dict::net::test_memcached::Memcached;
use crate::dict::testutil::get;
use crate::dict::Mode;
use crate::protocol::flags::DUP_REPLACE;
use crate::test_support::{backdate, TempDir};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

/// A `.cf` file in `dir` with `text`, settled.
fn cf(dir: &TempDir, file: &str, text: &str) -> String {
    let path = dir.write(file, text);
    backdate(&path);
    path.to_str().unwrap().to_string()
}

fn open_cf(name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    let params = Params::default();
    open(&OpenRequest { type_name: "memcache", name, mode, flags, params: &params })
}

fn open_ok(name: &str, mode: Mode) -> Box<dyn Dict> {
    open_cf(name, mode, 0).unwrap_or_else(|e| panic!("{}", e.reason))
}

/// The RETRY text of a lookup that must fail.
fn retry(d: &dyn Dict, key: &str) -> String {
    match d.lookup(key.as_bytes(), 0, &mut Vec::new()) {
        Err(DictError::Retry(text)) => text,
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn hits_misses_key_format_and_domain() {
    let Some(mc) = Memcached::start("mct-hits") else { return };
    let dir = TempDir::new("mct-hits");
    mc.put("alice@example.com", "alice-value");
    mc.put("user:bob", "bob-value");
    mc.put("lower@example.com", "folded");
    let plain = cf(&dir, "plain.cf", &format!("memcache = {}\n", mc.service()));
    let mut d = open_ok(&plain, Mode::ReadOnly);
    assert_eq!(d.flags(), FIXED | MULTI_WRITER);
    assert_eq!(d.waits(), Waits::Always);
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "nobody@example.com", 0), None);
    // FOLD_FIX folds before memcached is asked; without it the key is as sent.
    assert_eq!(get(&mut d, "LOWER@Example.COM", FOLD_FIX).as_deref(), Some("folded"));
    assert_eq!(get(&mut d, "LOWER@Example.COM", 0), None);
    // Skipped keys: empty, with white space; a NUL ends a key.
    assert_eq!(get(&mut d, "", 0), None);
    assert_eq!(get(&mut d, "alice@example.com x", 0), None);
    assert_eq!(d.lookup(b"alice@example.com\0junk", 0, &mut Vec::new()), Ok(true));
    // key_format with %u/%d; a key lacking the parts it needs is not asked.
    let fmt = cf(&dir, "fmt.cf", &format!("memcache = {}\nkey_format = user:%u\n", mc.service()));
    let mut d = open_ok(&fmt, Mode::ReadOnly);
    assert_eq!(get(&mut d, "bob@anywhere.org", 0).as_deref(), Some("bob-value"));
    assert_eq!(get(&mut d, "bob", 0).as_deref(), Some("bob-value"));
    let fmt = cf(&dir, "fmtd.cf", &format!("memcache = {}\nkey_format = %d\n", mc.service()));
    mc.put("example.com", "a domain");
    let mut d = open_ok(&fmt, Mode::ReadOnly);
    assert_eq!(get(&mut d, "x@example.com", 0).as_deref(), Some("a domain"));
    assert_eq!(get(&mut d, "example.com", 0), None);
    // domain: only listed domains are asked.
    let dom = cf(&dir, "dom.cf", &format!("memcache = {}\ndomain = example.com\n", mc.service()));
    let mut d = open_ok(&dom, Mode::ReadOnly);
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    mc.put("bob@other.org", "other");
    assert_eq!(get(&mut d, "bob@other.org", 0), None);
    assert_eq!(get(&mut d, "example.com", 0), None);
    // Over a UNIX socket.
    let Some(unix) = Memcached::start_unix("mct-unix") else { return };
    unix.put("k", "over a socket");
    let sock = cf(&dir, "unix.cf", &format!("memcache = {}\n", unix.service()));
    let mut d = open_ok(&sock, Mode::ReadOnly);
    assert_eq!(get(&mut d, "k", 0).as_deref(), Some("over a socket"));
}

#[test]
fn bad_configurations_fail_the_open_with_postfix_texts() {
    let dir = TempDir::new("mct-bad");
    let reason = |text: &str| {
        let name = cf(&dir, "bad.cf", text);
        match open_cf(&name, Mode::ReadOnly, 0) {
            Err(e) => e.reason.replace(&name, "CF"),
            Ok(_) => panic!("{text} opened"),
        }
    };
    assert_eq!(reason("memcache = localhost\n"), "need service transport:endpoint instead of \"localhost\"");
    assert_eq!(reason("memcache = tcp:localhost:1\n"), "invalid transport name: tcp in service: tcp:localhost:1");
    assert_eq!(reason("max_try = 0\n"), "CF: invalid max_try parameter value 0 < 1");
    assert_eq!(reason("retry_pause = x\n"), "CF: bad numerical configuration: retry_pause = x");
    assert_eq!(reason("key_format = 100%\n"), "db_common_parse: CF: Invalid query template: 100%");
    let name = cf(&dir, "ok.cf", "memcache = inet:127.0.0.1:1\n");
    let e = open_cf(&name, Mode::ReadOnly, NO_UNAUTH).err().map(|e| e.reason);
    assert_eq!(e.as_deref(), Some(format!("memcache:{name} map is not allowed for security-sensitive data").as_str()));
    // Both modes open (proxymap and proxywrite).
    assert!(open_cf(&name, Mode::ReadWrite, 0).is_ok());
}

#[test]
fn limits_on_lines_and_data() {
    let Some(mc) = Memcached::start("mct-limits") else { return };
    let dir = TempDir::new("mct-limits");
    mc.put("big", &"x".repeat(100));
    mc.put("small", "tiny");
    let name = cf(&dir, "l.cf", &format!("memcache = {}\ndata_size_limit = 50\nmax_try = 1\n", mc.service()));
    let mut d = open_ok(&name, Mode::ReadWrite);
    assert_eq!(retry(&*d, "big"), format!("{name}: unexpected memcache server reply: VALUE big 0 100"));
    assert_eq!(get(&mut d, "small", 0).as_deref(), Some("tiny"));
    // Too long to store: not stored, no error, not found.
    assert_eq!(d.update(b"new", "y".repeat(51).as_bytes(), DUP_REPLACE), Ok(false));
    assert_eq!(mc.value("new"), None);
    assert_eq!(d.update(b"new", "y".repeat(50).as_bytes(), DUP_REPLACE), Ok(true));
    // A reply line longer than line_size_limit: an I/O error.
    let name = cf(&dir, "l2.cf", &format!("memcache = {}\nline_size_limit = 12\nmax_try = 1\n", mc.service()));
    let d = open_ok(&name, Mode::ReadOnly);
    // (with the errno a non-blocking connect leaves behind, as Postfix prints it)
    assert_eq!(retry(&*d, "small"), format!("database memcache:{name}: I/O error: Operation now in progress"));
    mc.put("s", "tiny");
    assert_eq!(d.lookup(b"s", 0, &mut Vec::new()), Ok(true), "VALUE s 0 4\\r fits 12");
}

#[test]
fn updates_deletes_and_ttl() {
    let Some(mc) = Memcached::start("mct-write") else { return };
    let dir = TempDir::new("mct-write");
    // ttl = 2, not 1: memcached counts whole seconds, so a 1 s item may
    // expire at the next tick, milliseconds after it was stored.
    let name = cf(&dir, "w.cf", &format!("memcache = {}\nflags = 7\nttl = 2\n", mc.service()));
    let mut d = open_ok(&name, Mode::ReadWrite);
    assert_eq!(d.update(b"k@example.com", b"v1", DUP_REPLACE), Ok(true));
    assert_eq!(get(&mut d, "k@example.com", 0).as_deref(), Some("v1"));
    assert!(String::from_utf8_lossy(&mc.raw(b"get k@example.com\r\n")).starts_with("VALUE k@example.com 7 2\r\n"));
    assert_eq!(d.update(b"k@example.com", b"v2", DUP_REPLACE), Ok(true));
    assert_eq!(get(&mut d, "k@example.com", 0).as_deref(), Some("v2"));
    assert_eq!(d.delete(b"k@example.com", 0), Ok(true));
    assert_eq!(d.delete(b"k@example.com", 0), Ok(false));
    assert_eq!(get(&mut d, "k@example.com", 0), None);
    // A skipped key is not written.
    assert_eq!(d.update(b"a b", b"v", DUP_REPLACE), Ok(false));
    assert_eq!(d.delete(b"a b", 0), Ok(false));
    // ttl = 2: gone after two or three seconds.
    assert_eq!(d.update(b"short", b"lived", DUP_REPLACE), Ok(true));
    assert_eq!(get(&mut d, "short", 0).as_deref(), Some("lived"));
    std::thread::sleep(Duration::from_millis(3100));
    assert_eq!(get(&mut d, "short", 0), None);
    // Without a backup there is no sequence.
    assert_eq!(d.sequence(&mut None, true, 0), Ok(None));
}

#[test]
fn a_backup_answers_misses_refills_the_cache_and_follows_writes() {
    let Some(mut mc) = Memcached::start("mct-backup") else { return };
    let dir = TempDir::new("mct-backup");
    let backup = format!("hash:{}", dir.path().join("backup").display());
    {
        let params = Params::default();
        let req =
            OpenRequest { type_name: "hash", name: &backup[5..], mode: Mode::ReadWrite, flags: 0, params: &params };
        let mut hash = crate::dict::registry::open(&req).unwrap_or_else(|e| panic!("{}", e.reason));
        assert_eq!(hash.update(b"persistent@example.com", b"stored value", DUP_REPLACE), Ok(true));
    }
    let name = cf(&dir, "b.cf", &format!("memcache = {}\nbackup = {backup}\n", mc.service()));
    let mut d = open_ok(&name, Mode::ReadWrite);
    assert_eq!(mc.value("persistent@example.com"), None);
    assert_eq!(get(&mut d, "persistent@example.com", 0).as_deref(), Some("stored value"));
    assert_eq!(mc.value("persistent@example.com").as_deref(), Some("stored value"), "written back");
    assert_eq!(get(&mut d, "absent@example.com", 0), None);
    // Writes go to both; the backup's outcome decides.
    assert_eq!(d.update(b"new@example.com", b"first", DUP_REPLACE), Ok(true));
    // a key already in the backup is replaced (proxywrite's DUP_REPLACE)
    assert_eq!(d.update(b"new@example.com", b"both", DUP_REPLACE), Ok(true));
    assert_eq!(mc.value("new@example.com").as_deref(), Some("both"));
    mc.raw(b"delete new@example.com\r\n");
    assert_eq!(get(&mut d, "new@example.com", 0).as_deref(), Some("both"), "from the backup");
    assert_eq!(d.delete(b"new@example.com", 0), Ok(true));
    assert_eq!(mc.value("new@example.com"), None);
    assert_eq!(get(&mut d, "new@example.com", 0), None);
    assert_eq!(d.delete(b"new@example.com", 0), Ok(false));
    // Sequence walks the backup.
    let first = d.sequence(&mut None, true, 0).unwrap();
    assert_eq!(first.map(|(k, _)| k), Some(b"persistent@example.com".to_vec()));
    // memcached down: the backup still answers.
    mc.kill();
    assert_eq!(get(&mut d, "persistent@example.com", 0).as_deref(), Some("stored value"));
}

#[test]
fn a_killed_server_is_retry_at_once_and_a_restarted_one_answers_at_once() {
    let Some(mut mc) = Memcached::start("mct-kill") else { return };
    let dir = TempDir::new("mct-kill");
    mc.put("k", "v");
    let name = cf(&dir, "k.cf", &format!("memcache = {}\n", mc.service()));
    let mut d = open_ok(&name, Mode::ReadOnly);
    assert_eq!(get(&mut d, "k", 0).as_deref(), Some("v"));
    mc.kill();
    let started = Instant::now();
    let text = retry(&*d, "k");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(text.contains("is down: connect to"), "{text}");
    mc.restart();
    let started = Instant::now();
    mc.put("k", "again");
    assert_eq!(get(&mut d, "k", 0).as_deref(), Some("again"));
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // Restarted under a lookup's idle connection: replaced at once.
    mc.restart();
    mc.put("k", "third");
    let started = Instant::now();
    assert_eq!(get(&mut d, "k", 0).as_deref(), Some("third"));
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
}

#[test]
fn a_silent_server_is_retry_within_timeout_while_another_table_answers() {
    let Some(mc) = Memcached::start("mct-silent") else { return };
    let dir = TempDir::new("mct-silent");
    mc.put("k", "v");
    // Accepts (the kernel does) and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let hung = cf(&dir, "hung.cf", &format!("memcache = inet:127.0.0.1:{port}\ntimeout = 1\n"));
    let good = cf(&dir, "good.cf", &format!("memcache = {}\n", mc.service()));
    let hung = open_ok(&hung, Mode::ReadOnly);
    let good = open_ok(&good, Mode::ReadOnly);
    std::thread::scope(|s| {
        let waiting = s.spawn(|| {
            let started = Instant::now();
            let text = retry(&*hung, "k");
            (started.elapsed(), text)
        });
        std::thread::sleep(Duration::from_millis(100));
        for _ in 0..20 {
            let started = Instant::now();
            assert_eq!(good.lookup(b"k", 0, &mut Vec::new()), Ok(true));
            assert!(started.elapsed() < Duration::from_millis(500));
        }
        let (elapsed, text) = waiting.join().unwrap();
        assert!(elapsed >= Duration::from_millis(900) && elapsed < Duration::from_millis(1900), "{elapsed:?}");
        assert!(text.ends_with(": I/O error: Connection timed out"), "{text}");
    });
    drop(silent);
}

/// A fake server answering each command with the next canned reply; it
/// stops after the last one.
fn fake(replies: Vec<&'static [u8]>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut replies = replies.into_iter();
        while let Ok((stream, _)) = listener.accept() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut stream = stream;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end().to_string();
                let command = ["get ", "set ", "delete "].iter().any(|c| line.starts_with(c));
                seen.push(line);
                if !command {
                    continue; // a data block
                }
                let Some(reply) = replies.next() else { return seen };
                let _ = stream.write_all(reply);
                if replies.len() == 0 {
                    return seen;
                }
            }
        }
        seen
    });
    (port, handle)
}

#[test]
fn odd_replies_are_retried_after_the_pause_and_logged_from_the_second_try() {
    let dir = TempDir::new("mct-odd");
    // A VALUE without END: the value stands, the connection is replaced.
    let (port, server) =
        fake(vec![b"VALUE k 0 3\r\nabc\r\nXYZ\r\n", b"END\r\n", b"SERVER_ERROR oops\r\n", b"STORED\r\n"]);
    let name = cf(&dir, "odd.cf", &format!("memcache = inet:127.0.0.1:{port}\nretry_pause = 1\n"));
    let mut d = open_ok(&name, Mode::ReadWrite);
    assert_eq!(get(&mut d, "k", 0).as_deref(), Some("abc"));
    assert_eq!(get(&mut d, "k", 0), None);
    let started = Instant::now();
    assert_eq!(d.update(b"k", b"v", DUP_REPLACE), Ok(true), "the second try stores");
    assert!(started.elapsed() >= Duration::from_millis(900), "retry_pause");
    drop(d);
    let seen = server.join().unwrap();
    assert_eq!(seen, ["get k", "get k", "set k 0 3600 1", "v", "set k 0 3600 1"]);
}

#[test]
fn an_outage_is_one_line_however_many_lookups_fail() {
    let Some(mut mc) = Memcached::start("mct-outage") else { return };
    let dir = TempDir::new("mct-outage");
    let lines: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let report: crate::dict::db_common::pool::Report =
        Arc::new(move |_, text: &str| crate::sync::lock(&sink).push(text.to_string()));
    let pools = Registry::with_report(report);
    let name = cf(&dir, "o.cf", &format!("memcache = {}\n", mc.service()));
    let params = Params::default();
    let open = |name: &str| {
        let req = OpenRequest { type_name: "memcache", name, mode: Mode::ReadOnly, flags: 0, params: &params };
        open_in(&req, &pools).unwrap_or_else(|e| panic!("{}", e.reason))
    };
    let (a, b) = (open(&name), open(&name));
    mc.put("k", "v");
    assert_eq!(a.lookup(b"k", 0, &mut Vec::new()), Ok(true));
    mc.kill();
    for _ in 0..5 {
        retry(&*a, "k");
        retry(&*b, "k");
    }
    mc.restart();
    mc.put("k", "v");
    assert_eq!(b.lookup(b"k", 0, &mut Vec::new()), Ok(true));
    assert_eq!(a.lookup(b"k", 0, &mut Vec::new()), Ok(true));
    let lines = crate::sync::lock(&lines).clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with(&format!("{} is down: connect to ", mc.service())), "{lines:?}");
    assert!(lines[1].starts_with(&format!("{} is back after ", mc.service())), "{lines:?}");
}
