//! The worker event loop in-process, over temporary UNIX sockets: exact reply
//! bytes for the traces of spec section 2.6, malformed and hostile input, and
//! per-connection sequence cursors.

mod common;

use common::*;
use proxymap::config::allowlist::proxy_allowlist;
use proxymap::config::Params;
use proxymap::service::{Role, Service};
use proxymap::worker::{Intake, Limits, Worker};
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

struct Server {
    _dir: TempDir,
    socket: PathBuf,
    dir: PathBuf,
}

/// Start a worker thread for `role` with `main_cf` (`@DIR@` = a temp directory).
fn serve(role: Role, main_cf: &str, files: &[(&str, &str)]) -> Server {
    serve_with(role, main_cf, files, test_threads())
}

/// `threads`: Some(requests a connection has on the event loop before it
/// moves to its thread).
fn serve_with(role: Role, main_cf: &str, files: &[(&str, &str)], threads: Option<u32>) -> Server {
    let dir = TempDir::new("server");
    let d = dir.path().display().to_string();
    for (name, text) in files {
        dir.write(name, text);
    }
    let params = Params::from_text(&main_cf.replace("@DIR@", &d), "main.cf", &[]).expect("main.cf");
    let params = Arc::new(params);
    let allowlist = proxy_allowlist(&params, role == Role::Writer);
    let socket = dir.path().join(role.service_name());
    let listener = UnixListener::bind(&socket).expect("bind");
    let limits = Limits { max_use: 0, max_idle: Duration::ZERO, ..Limits::default() };
    let service = Service::new(role, params, allowlist);
    let mut worker = Worker::new(service, Intake::Listen(vec![listener]), limits).expect("worker");
    if let Some(after) = threads {
        worker = worker.with_threads(after).expect("threads");
    }
    std::thread::spawn(move || worker.run());
    let dir_path = dir.path().to_path_buf();
    Server { _dir: dir, socket, dir: dir_path }
}

const MAIN_CF: &str = "
proxy_read_maps = proxy:texthash:@DIR@/test proxy:static:hello proxy:fail:down
    proxy:texthash:@DIR@/missing proxy:inline:{a=1,b=2,c=3} proxy:environ:env
proxy_write_maps = proxy:environ:env proxy:static:hello proxy:fail:down
";
const TEST_TABLE: &str = "foo bar\nkey2 Value Two\n";

fn reader() -> Server {
    serve(Role::Reader, MAIN_CF, &[("test", TEST_TABLE)])
}

fn status(s: &str) -> Vec<u8> {
    list(&[("status", s)])
}

fn lookup_reply(s: &str, v: &str) -> Vec<u8> {
    list(&[("status", s), ("value", v)])
}

#[test]
fn traces_of_the_read_only_service() {
    let s = reader();
    let t = format!("texthash:{}/test", s.dir.display());
    let mut c = Raw::connect(&s.socket);
    // no folding without FOLD_FIX; folding with it
    assert_eq!(c.call(&[("request", "lookup"), ("table", &t), ("flags", "0"), ("key", "Foo")]), lookup_reply("1", ""));
    assert_eq!(
        c.call(&[("request", "lookup"), ("table", &t), ("flags", "16384"), ("key", "Foo")]),
        lookup_reply("0", "bar")
    );
    // unapproved, no colon
    assert_eq!(c.call(&lookup("hash:/etc/other", "k")), lookup_reply("4", ""));
    assert_eq!(c.call(&lookup("nocolon", "k")), lookup_reply("3", ""));
    // update/delete on proxymap
    assert_eq!(
        c.call(&[("request", "update"), ("table", &t), ("flags", "0"), ("key", "k"), ("value", "v")]),
        status("4")
    );
    assert_eq!(c.call(&[("request", "delete"), ("table", &t), ("flags", "0"), ("key", "k")]), status("4"));
    // open: prefixes stripped, FIXED tables 16, PATTERN tables 32
    let prefixed = format!("proxy:proxy:{t}");
    assert_eq!(
        c.call(&[("request", "open"), ("table", &prefixed), ("flags", "0")]),
        list(&[("status", "0"), ("flags", "16")])
    );
    assert_eq!(
        c.call(&[("request", "open"), ("table", "static:hello"), ("flags", "0")]),
        list(&[("status", "0"), ("flags", "16")])
    );
    assert_eq!(
        c.call(&[("request", "open"), ("table", "fail:down"), ("flags", "0")]),
        list(&[("status", "0"), ("flags", "32")])
    );
    assert_eq!(
        c.call(&[("request", "open"), ("table", "hash:/x"), ("flags", "0")]),
        list(&[("status", "4"), ("flags", "0")])
    );
    // a table that cannot be opened: open OK with the surrogate's PATTERN flag, lookups RETRY
    let missing = format!("texthash:{}/missing", s.dir.display());
    assert_eq!(
        c.call(&[("request", "open"), ("table", &missing), ("flags", "0")]),
        list(&[("status", "0"), ("flags", "32")])
    );
    assert_eq!(c.call(&lookup(&missing, "k")), lookup_reply("2", ""));
    // fail: RETRY
    assert_eq!(c.call(&lookup("fail:down", "k")), lookup_reply("2", ""));
    // unknown request
    assert_eq!(c.call(&[("request", "frob"), ("table", &t)]), status("3"));
    // sequence function 2
    assert_eq!(
        c.call(&[("request", "sequence"), ("table", &t), ("flags", "0"), ("function", "2")]),
        list(&[("status", "3"), ("key", ""), ("value", "")])
    );
    // the connection still works after all of that
    assert_eq!(c.call(&lookup("static:hello", "x")), lookup_reply("0", "hello"));
}

#[test]
fn postfix_3_11_clients_get_3_11_replies() {
    let s = reader();
    let mut c = Raw::connect(&s.socket);
    assert_eq!(
        c.call(&[("request", "open"), ("table", "static:hello"), ("instance_flags", "0")]),
        list(&[("status", "0"), ("flags", "16")])
    );
    assert_eq!(
        c.call(&[
            ("request", "lookup"),
            ("table", "static:hello"),
            ("instance_flags", "0"),
            ("flags", "64"),
            ("key", "x")
        ]),
        list(&[("status", "0"), ("flags", "80"), ("value", "hello")])
    );
    // and a 3.7 request on the same connection still gets the 3.7 shape
    assert_eq!(c.call(&lookup("static:hello", "x")), lookup_reply("0", "hello"));
}

#[test]
fn malformed_input_replies_bad_or_nothing() {
    let s = reader();
    let mut c = Raw::connect(&s.socket);
    // not starting with `request`: no reply
    c.send(&list(&[("table", "static:hello")]));
    assert!(c.silent_for(Duration::from_millis(300)));
    // missing attribute: BAD in lookup shape
    assert_eq!(c.call(&[("request", "lookup"), ("table", "static:hello"), ("flags", "0")]), lookup_reply("3", ""));
    // non-numeric flags
    assert_eq!(
        c.call(&[("request", "lookup"), ("table", "static:hello"), ("flags", "x"), ("key", "k")]),
        lookup_reply("3", "")
    );
    // extra attribute at the end: served
    assert_eq!(
        c.call(&[("request", "lookup"), ("table", "static:hello"), ("flags", "0"), ("key", "k"), ("x", "y")]),
        lookup_reply("0", "hello")
    );
    assert_eq!(c.call(&lookup("static:hello", "x")), lookup_reply("0", "hello"));
}

#[test]
fn garbage_and_vanishing_clients_do_not_hurt_others() {
    let s = reader();
    let mut good = Raw::connect(&s.socket);
    for i in 0..50u32 {
        let mut bad = UnixStream::connect(&s.socket).expect("connect");
        let junk: Vec<u8> = (0..(i * 37 % 500 + 1)).map(|j| (j * 7 + i) as u8).collect();
        let _ = bad.write_all(&junk);
        if i % 2 == 0 {
            let _ = bad.write_all(b"request\0lookup\0table\0stat"); // half a request, then gone
        }
        drop(bad);
        assert_eq!(good.call(&lookup("static:hello", "x")), lookup_reply("0", "hello"), "after garbage {i}");
    }
}

#[test]
fn a_stalled_request_is_closed_after_the_deadline() {
    let s = reader();
    let mut c = Raw::connect(&s.socket);
    c.send(b"request\0lookup\0table\0static:hel");
    assert!(c.closed_within(Duration::from_secs(5)));
    let mut other = Raw::connect(&s.socket);
    assert_eq!(other.call(&lookup("static:hello", "x")), lookup_reply("0", "hello"));
}

#[test]
fn a_request_split_over_time_within_the_deadline_is_served() {
    let s = reader();
    let mut c = Raw::connect(&s.socket);
    let req = list(&lookup("static:hello", "x"));
    c.send(&req[..10]);
    std::thread::sleep(Duration::from_millis(300));
    c.send(&req[10..]);
    assert_eq!(c.read_lists(1), lookup_reply("0", "hello"));
}

#[test]
fn oversized_requests_are_refused() {
    let s = reader();
    let mut c = Raw::connect(&s.socket);
    let huge = vec![b'a'; 2 << 20];
    let mut req = b"request\0lookup\0table\0static:hello\0flags\x000\0key\0".to_vec();
    req.extend_from_slice(&huge);
    let _ = c.stream.write_all(&req);
    assert!(c.closed_within(Duration::from_secs(5)));
    let mut other = Raw::connect(&s.socket);
    assert_eq!(other.call(&lookup("static:hello", "x")), lookup_reply("0", "hello"));
}

#[test]
fn large_values_and_keys_within_limits_work() {
    let s = serve(Role::Writer, MAIN_CF, &[]);
    let mut c = Raw::connect(&s.socket);
    let big = "v".repeat(200_000);
    assert_eq!(
        c.call(&[("request", "update"), ("table", "environ:env"), ("flags", "0"), ("key", "pm_big"), ("value", &big)]),
        status("0")
    );
    assert_eq!(c.call(&lookup("environ:env", "pm_big")), lookup_reply("0", &big));
}

#[test]
fn writer_traces_and_unsupported_operations() {
    let s = serve(Role::Writer, MAIN_CF, &[]);
    let mut c = Raw::connect(&s.socket);
    // read-only table names in proxy_read_maps only are denied to the writer
    let t = format!("texthash:{}/test", s.dir.display());
    assert_eq!(c.call(&[("request", "open"), ("table", &t), ("flags", "0")]), list(&[("status", "4"), ("flags", "0")]));
    // fail: RETRY for update and delete
    assert_eq!(
        c.call(&[("request", "update"), ("table", "fail:down"), ("flags", "0"), ("key", "k"), ("value", "v")]),
        status("2")
    );
    assert_eq!(c.call(&[("request", "delete"), ("table", "fail:down"), ("flags", "0"), ("key", "k")]), status("2"));
    // update on static: Postfix 3.7 exits; we answer CONFIG and keep serving
    assert_eq!(
        c.call(&[("request", "update"), ("table", "static:hello"), ("flags", "0"), ("key", "k"), ("value", "v")]),
        status("5")
    );
    assert_eq!(c.call(&lookup("static:hello", "x")), lookup_reply("0", "hello"));
}

/// With connection threads, a lookup that waits for its table's lock (as
/// while postmap rebuilds the file) holds up only its own client; the others
/// are answered meanwhile, and the waiting one once the lock is free. Also
/// when the lookup comes while the connection is still on the event loop:
/// it moves to a thread rather than wait there.
#[test]
fn a_lookup_waiting_for_a_lock_stalls_only_its_own_client_with_threads() {
    for after in [0, 2] {
        lock_wait_stalls_only_its_client(after);
    }
}

#[allow(deprecated)] // nix::fcntl::flock: the Flock guard would own the File
fn lock_wait_stalls_only_its_client(after: u32) {
    use proxymap::dict::{registry, Mode, OpenRequest};
    let main_cf = "proxy_read_maps = proxy:hash:@DIR@/t proxy:static:hello\n";
    let s = serve_with(Role::Reader, main_cf, &[], Some(after));
    let path = s.dir.join("t");
    let params = Params::from_text("", "main.cf", &[]).expect("params");
    let name = path.display().to_string();
    let req = OpenRequest { type_name: "hash", name: &name, mode: Mode::ReadWrite, flags: 0, params: &params };
    let mut dict = registry::open(&req).expect("create hash table");
    dict.update(b"k", b"v", 0).expect("update");
    drop(dict);
    // another open file description's exclusive lock, like postmap's
    let db = std::fs::File::open(path.with_extension("db")).expect("open .db");
    nix::fcntl::flock(std::os::fd::AsRawFd::as_raw_fd(&db), nix::fcntl::FlockArg::LockExclusive).expect("flock");

    let table = format!("hash:{name}");
    let mut blocked = Raw::connect(&s.socket);
    // flags 64: LOCK, so the lookup takes the shared lock and waits
    blocked.send(&list(&[("request", "lookup"), ("table", &table), ("flags", "64"), ("key", "k")]));
    assert!(blocked.silent_for(Duration::from_millis(300)), "the lookup waits for the lock (after {after})");
    let mut other = Raw::connect(&s.socket);
    assert_eq!(other.call(&lookup("static:hello", "x")), found("hello"), "another client is answered meanwhile");
    let mut third = Raw::connect(&s.socket);
    third.send(&list(&[("request", "lookup"), ("table", &table), ("flags", "64"), ("key", "k")]));
    assert!(third.silent_for(Duration::from_millis(100)), "a new client of the locked table waits too");
    assert_eq!(other.call(&lookup("static:hello", "y")), found("hello"), "others are still answered");

    nix::fcntl::flock(std::os::fd::AsRawFd::as_raw_fd(&db), nix::fcntl::FlockArg::Unlock).expect("unlock");
    assert_eq!(blocked.read_lists(1), found("v"), "answered once the lock is free");
    assert_eq!(third.read_lists(1), found("v"));
}

/// With connection threads, the event loop answers a connection's first
/// requests and moves it to its thread with the third, here in the middle
/// of that request, which arrives in two parts: the thread reads the rest,
/// and the greeting is not sent again. A request that changes or walks a
/// table (or would wait) moves the connection at once.
#[test]
fn a_connection_moves_to_its_thread_mid_request() {
    let s = serve_with(Role::Reader, MAIN_CF, &[("test", TEST_TABLE)], Some(2));
    let texthash = format!("texthash:{}/test", s.dir.display());
    let mut c = Raw::connect(&s.socket);
    assert_eq!(c.call(&lookup("static:hello", "x")), lookup_reply("0", "hello"));
    assert_eq!(c.call(&lookup(&texthash, "foo")), lookup_reply("0", "bar"));
    let req = list(&lookup(&texthash, "key2"));
    c.send(&req[..12]);
    std::thread::sleep(Duration::from_millis(200));
    c.send(&req[12..]);
    assert_eq!(c.read_lists(1), lookup_reply("0", "Value Two"));
    for _ in 0..3 {
        assert_eq!(c.call(&lookup(&texthash, "foo")), lookup_reply("0", "bar"));
    }
    assert!(c.silent_for(Duration::from_millis(100)), "nothing more, no second greeting");

    let mut walker = Raw::connect(&s.socket);
    let seq = |f| [("request", "sequence"), ("table", "inline:{a=1,b=2,c=3}"), ("flags", "0"), ("function", f)];
    let first = walker.call(&seq("0"));
    assert_eq!(first[..9], *b"status\x000\0", "{}", String::from_utf8_lossy(&first));
    let second = walker.call(&seq("1"));
    assert_eq!(second[..9], *b"status\x000\0", "{}", String::from_utf8_lossy(&second));
    assert_ne!(first, second, "the walk goes on");
}
