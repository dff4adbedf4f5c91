//! `socketmap:` against small servers of the test's own (see
//! [`super::super::test_server`]).

use super::*;
use crate::config::Params;
use crate::dict::net::test_server::{dropping_second_request, Action, Framing, Responder, TestServer};
use crate::dict::testutil::get;
use crate::dict::Mode;
use crate::protocol::flags::FOLD_FIX;
use crate::test_support::TempDir;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::Arc;

fn quick() -> Limits {
    Limits {
        exchange: Duration::from_millis(400),
        pool: Settings {
            max_connections: 2,
            idle_interval: Duration::from_secs(10),
            retry_interval: Duration::from_millis(200),
            connect_timeout: Duration::from_millis(400),
            wait_timeout: Duration::from_millis(400),
        },
        max_age: Duration::from_secs(100),
    }
}

fn open_with(
    name: &str,
    mode: Mode,
    flags: u32,
    pools: &Registry<NetServer>,
    limits: Limits,
) -> Result<Box<dyn Dict>, OpenError> {
    let params = Params::default();
    open_in(&OpenRequest { type_name: "socketmap", name, mode, flags, params: &params }, pools, limits)
}

fn table(name: &str, pools: &Registry<NetServer>) -> Box<dyn Dict> {
    open_with(name, Mode::ReadOnly, 0, pools, quick()).unwrap()
}

fn ns(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    netstring::encode(payload, &mut out);
    out
}

/// Answers by the key (the text after `<map> `).
fn responder() -> Responder {
    Arc::new(|req: &[u8]| {
        let key = req.splitn(2, |b| *b == b' ').nth(1).unwrap_or_default().to_vec();
        let reply: Vec<u8> = match &key[..] {
            b"miss" => b"NOTFOUND ".to_vec(),
            b"temp" => b"TEMP try\tlater".to_vec(),
            b"timeout" => b"TIMEOUT".to_vec(),
            b"perm" => b"PERM   no such map".to_vec(),
            b"odd" => b"MAYBE so".to_vec(),
            b"okbare" => b"OK".to_vec(),
            b"okempty" => b"OK ".to_vec(),
            b"nul" => b"OK a\0b".to_vec(),
            b"malformed" => return Action::Reply(b"12x:OK".to_vec()),
            b"badterm" => return Action::Reply(b"4:OK a;".to_vec()),
            b"big" => [&b"OK "[..], &vec![b'x'; MAX_REPLY - 3]].concat(),
            b"toobig" => [&b"OK "[..], &vec![b'x'; MAX_REPLY - 2]].concat(),
            b"hang" => return Action::Hang,
            b"close" => return Action::Close,
            b"twice" => return Action::Reply([ns(b"OK one"), ns(b"OK two")].concat()),
            _ => [&b"OK "[..], req].concat(),
        };
        Action::Reply(ns(&reply))
    })
}

fn lookup(d: &dyn Dict, key: &str) -> DictResult<Option<Vec<u8>>> {
    let mut out = Vec::new();
    d.lookup(key.as_bytes(), 0, &mut out).map(|found| found.then_some(out))
}

#[test]
fn replies_map_to_postfixs_answers() {
    let server = TestServer::tcp(0, Framing::Netstring, responder());
    let pools = Registry::new();
    let name = format!("inet:127.0.0.1:{}:mymap", server.port());
    let mut d = table(&name, &pools);
    assert_eq!(d.flags(), PATTERN);
    assert_eq!(d.waits(), Waits::Always);
    assert_eq!(get(&mut d, "a b%c ü", 0).as_deref(), Some("mymap a b%c ü"));
    assert_eq!(get(&mut d, "Mixed@Case", FOLD_FIX).as_deref(), Some("mymap Mixed@Case"), "only FOLD_MUL folds");
    assert_eq!(get(&mut d, "Mixed@Case", FOLD_MUL).as_deref(), Some("mymap mixed@case"));
    assert_eq!(get(&mut d, "miss", 0), None);
    assert_eq!(get(&mut d, "okbare", 0), None, "3.7: OK without a space is not found");
    assert_eq!(get(&mut d, "okempty", 0).as_deref(), Some(""));
    assert_eq!(get(&mut d, "nul", 0).as_deref(), Some("a"));
    assert_eq!(get(&mut d, "big", 0).map(|v| v.len()), Some(MAX_REPLY - 3));
    let t = format!("socketmap:{name}");
    let cases = [
        ("temp", DictError::Retry(format!("{t} socketmap server temporary error: try\tlater"))),
        ("timeout", DictError::Retry(format!("{t} socketmap server timeout error"))),
        ("perm", DictError::Config(format!("{t} socketmap server permanent error: no such map"))),
        ("odd", DictError::Retry(format!("{t} socketmap server unknown error: so"))),
        ("malformed", DictError::Retry(format!("table {t} lookup error: input format error"))),
        ("badterm", DictError::Retry(format!("table {t} lookup error: input format error"))),
        ("toobig", DictError::Retry(format!("table {t} lookup error: input exceeds size limit"))),
    ];
    for (key, want) in cases {
        assert_eq!(lookup(&*d, key), Err(want), "{key}");
    }
    // the key goes up to its first NUL
    let mut out = Vec::new();
    assert!(d.lookup(b"k\0ignored", 0, &mut out).unwrap());
    assert_eq!(out, b"OK mymap k"[3..].to_vec());
}

#[test]
fn a_connection_is_reused_shared_and_closed_after_a_malformed_reply_or_extra_bytes() {
    let dir = TempDir::new("sockmap-share");
    let server = TestServer::unix(dir.path().join("s"), Framing::Netstring, responder());
    let pools = Registry::new();
    let path = dir.path().join("s");
    let a = table(&format!("unix:{}:a", path.display()), &pools);
    let b = table(&format!("local:{}:b", path.display()), &pools);
    for _ in 0..3 {
        assert_eq!(lookup(&*a, "k").unwrap().as_deref(), Some(&b"a k"[..]));
        assert_eq!(lookup(&*b, "k").unwrap().as_deref(), Some(&b"b k"[..]));
    }
    assert_eq!(server.accepted.load(SeqCst), 1, "one connection for both tables");
    assert!(lookup(&*a, "malformed").is_err());
    assert_eq!(lookup(&*a, "k").unwrap().as_deref(), Some(&b"a k"[..]));
    assert_eq!(server.accepted.load(SeqCst), 2, "the malformed reply closed the connection");
    assert_eq!(lookup(&*a, "twice").unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(lookup(&*a, "k").unwrap().as_deref(), Some(&b"a k"[..]), "the extra reply is not taken");
    assert_eq!(server.accepted.load(SeqCst), 3);
}

#[test]
fn a_dropped_connection_is_replaced_and_the_request_sent_once_more() {
    let server = TestServer::tcp(0, Framing::Netstring, dropping_second_request(responder()));
    let pools = Registry::new();
    let name = format!("inet:127.0.0.1:{}:m", server.port());
    let d = table(&name, &pools);
    assert!(lookup(&*d, "k1").unwrap().is_some());
    assert_eq!(lookup(&*d, "k2").unwrap().as_deref(), Some(&b"m k2"[..]));
    assert_eq!(server.request_count(), 3, "the request was sent twice, as Postfix does");
    assert_eq!(server.accepted.load(SeqCst), 2);
    // a server that drops every connection: Postfix's warning after the second try
    let start = Instant::now();
    assert_eq!(
        lookup(&*d, "close"),
        Err(DictError::Retry(format!("table socketmap:{name} lookup error: unexpected disconnect")))
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(server.request_count(), 5);
}

#[test]
fn a_silent_server_costs_one_timeout_and_stalls_no_other_table() {
    let silent = TestServer::tcp(0, Framing::Netstring, responder());
    let other = TestServer::tcp(0, Framing::Netstring, responder());
    let pools = Registry::new();
    let name = format!("inet:127.0.0.1:{}:m", silent.port());
    let hung = Arc::new(table(&name, &pools));
    let fine = table(&format!("inet:127.0.0.1:{}:m", other.port()), &pools);
    let (h, started) = (hung.clone(), Instant::now());
    let waiting = std::thread::spawn(move || lookup(&**h, "hang"));
    std::thread::sleep(Duration::from_millis(50));
    let mut answered = 0;
    while !waiting.is_finished() {
        assert!(lookup(&*fine, "k").unwrap().is_some());
        answered += 1;
    }
    let took = started.elapsed();
    assert_eq!(
        waiting.join().unwrap(),
        Err(DictError::Retry(format!("table socketmap:{name} lookup error: time limit exceeded")))
    );
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(2), "{took:?}");
    assert!(answered > 10, "the other table answered {answered} times meanwhile");
    // the timed-out connection is not reused
    assert!(lookup(&**hung, "k").unwrap().is_some());
    assert_eq!(silent.accepted.load(SeqCst), 2);
}

#[test]
fn a_restarted_server_answers_again_at_once() {
    let server = TestServer::tcp(0, Framing::Netstring, responder());
    let port = server.port();
    let pools = Registry::new();
    let d = table(&format!("inet:127.0.0.1:{port}:m"), &pools);
    assert!(lookup(&*d, "k").unwrap().is_some());
    drop(server);
    // down: RETRY at once, without waiting for anything
    let start = Instant::now();
    assert!(matches!(lookup(&*d, "k"), Err(DictError::Retry(_))));
    assert!(start.elapsed() < Duration::from_millis(500));
    let server = TestServer::tcp(port, Framing::Netstring, responder());
    let start = Instant::now();
    while lookup(&*d, "k").is_err() {
        assert!(start.elapsed() < Duration::from_secs(5), "not back within 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(server.accepted.load(SeqCst), 1);
    // restarted between two lookups: the next one answers, no error
    drop(server);
    let server = TestServer::tcp(port, Framing::Netstring, responder());
    assert!(lookup(&*d, "k").unwrap().is_some());
    assert_eq!(server.accepted.load(SeqCst), 1);
}

#[test]
fn old_connections_are_not_reused() {
    let server = TestServer::tcp(0, Framing::Netstring, responder());
    let pools = Registry::new();
    let limits = Limits { max_age: Duration::from_millis(200), ..quick() };
    let d = open_with(&format!("inet:127.0.0.1:{}:m", server.port()), Mode::ReadOnly, 0, &pools, limits).unwrap();
    assert!(lookup(&*d, "k").unwrap().is_some());
    assert!(lookup(&*d, "k").unwrap().is_some());
    assert_eq!(server.accepted.load(SeqCst), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert!(lookup(&*d, "k").unwrap().is_some());
    assert_eq!(server.accepted.load(SeqCst), 2, "past its lifetime");
}

#[test]
fn open_refusals_are_postfixs() {
    let pools = Registry::new();
    let err = |name: &str, mode, flags| open_with(name, mode, flags, &pools, quick()).err().map(|e| e.reason);
    assert_eq!(err("nocolon", Mode::ReadOnly, 0).as_deref(), Some("socketmap requires server:socketmap argument"));
    assert_eq!(
        err("inet:localhost:9:m", Mode::ReadWrite, 0).as_deref(),
        Some("socketmap:inet:localhost:9:m map requires O_RDONLY access mode")
    );
    assert_eq!(
        err("inet:localhost:9:m", Mode::ReadOnly, NO_UNAUTH).as_deref(),
        Some("socketmap:inet:localhost:9:m map is not allowed for security-sensitive data")
    );
    assert_eq!(
        err("tcp:localhost:9:m", Mode::ReadOnly, 0).as_deref(),
        Some("invalid transport name: tcp in service: tcp:localhost:9")
    );
    assert_eq!(
        err("unix:m", Mode::ReadOnly, 0).as_deref(),
        Some("need service transport:endpoint instead of \"unix\"")
    );
    assert!(err("inet:localhost:9:m", Mode::ReadOnly, 0).is_none(), "nothing is connected at open");
    if std::fs::read_to_string("/etc/services").is_ok_and(|t| t.contains("smtp")) {
        assert!(err("inet:localhost:smtp:m", Mode::ReadOnly, 0).is_none(), "a service name");
    }
}

#[test]
fn idle_connections_are_closed_and_busy_ones_capped() {
    let server = TestServer::tcp(0, Framing::Netstring, responder());
    let pools = Registry::new();
    let mut limits = quick();
    limits.pool.idle_interval = Duration::from_millis(200);
    limits.pool.wait_timeout = Duration::from_millis(150);
    let name = format!("inet:127.0.0.1:{}:m", server.port());
    let d = Arc::new(open_with(&name, Mode::ReadOnly, 0, &pools, limits).unwrap());
    assert!(lookup(&**d, "k").unwrap().is_some());
    std::thread::sleep(Duration::from_millis(400));
    assert!(lookup(&**d, "k").unwrap().is_some());
    assert_eq!(server.accepted.load(SeqCst), 2, "closed after the idle time");
    // two connections at most: a third lookup waits, then RETRY
    let hung: Vec<_> = (0..2)
        .map(|_| {
            let d = d.clone();
            std::thread::spawn(move || lookup(&**d, "hang"))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let third = lookup(&**d, "k");
    assert!(matches!(&third, Err(DictError::Retry(t)) if t.contains("no free connection")), "{third:?}");
    for h in hung {
        assert!(h.join().unwrap().is_err());
    }
    assert!(lookup(&**d, "k").unwrap().is_some());
}
