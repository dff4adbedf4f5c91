//! `tcp:` against small servers of the test's own (see
//! [`super::super::test_server`]).

use super::*;
use crate::config::Params;
use crate::dict::net::test_server::{dropping_second_request, Action, Framing, Responder, TestServer};
use crate::dict::testutil::get;
use crate::dict::Mode;
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
    }
}

fn open_with(name: &str, mode: Mode, flags: u32, pools: &Registry<NetServer>) -> Result<Box<dyn Dict>, OpenError> {
    let params = Params::default();
    open_in(&OpenRequest { type_name: "tcp", name, mode, flags, params: &params }, pools, quick())
}

fn quoted(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    hex_quote::quote(raw, &mut out);
    out
}

/// Answers by the unquoted key; anything else is echoed back, quoted.
fn responder() -> Responder {
    Arc::new(|line: &[u8]| {
        let Some(key) = line.strip_prefix(b"get ").and_then(hex_quote::unquote) else {
            return Action::Reply(b"500 bad%20request\n".to_vec());
        };
        let reply: Vec<u8> = match &key[..] {
            b"miss" => b"500 not%20found\n".to_vec(),
            b"temp" => b"400 busy\n".to_vec(),
            b"status" => b"600 what\tnow\n".to_vec(),
            b"garbage" => b"hello\x01world\n".to_vec(),
            b"badhex" => b"200 100%zz\n".to_vec(),
            b"nospace" => b"200\n".to_vec(),
            b"empty" => b"200 \n".to_vec(),
            b"cr" => b"200\r%41\n".to_vec(),
            b"nul" => b"200 a%00b\n".to_vec(),
            b"longest" => [&b"200 "[..], &vec![b'x'; MAX_LINE - 5], b"\n"].concat(),
            b"toolong" => [&b"200 "[..], &vec![b'x'; MAX_LINE - 4], b"\n"].concat(),
            b"slow" => return Action::Hang,
            b"close" => return Action::Close,
            _ => [&b"200 "[..], &quoted(&[&b"echo:"[..], &key].concat()), b"\n"].concat(),
        };
        Action::Reply(reply)
    })
}

fn lookup(d: &dyn Dict, key: &[u8]) -> DictResult<Option<Vec<u8>>> {
    let mut out = Vec::new();
    d.lookup(key, 0, &mut out).map(|found| found.then_some(out))
}

#[test]
fn keys_are_quoted_and_values_unquoted_both_ways() {
    let server = TestServer::tcp(0, Framing::Line, responder());
    let pools = Registry::new();
    let mut d = open_with(&format!("127.0.0.1:{}", server.port()), Mode::ReadOnly, 0, &pools).unwrap();
    assert_eq!(d.flags(), PATTERN);
    assert_eq!(d.waits(), Waits::Always);
    let keys: [&[u8]; 6] = [
        b"plain@example.com",
        b"with space",
        b"100% sure",
        "ünïcødé €".as_bytes(),
        b"ctl\x01\x1f\x7f\t\r\x0b",
        b"\xff\xfe",
    ];
    for key in keys {
        assert_eq!(lookup(&*d, key).unwrap(), Some([&b"echo:"[..], key].concat()), "{key:?}");
    }
    let requests = crate::sync::lock(&server.requests).clone();
    assert_eq!(requests[1], b"get with%20space");
    assert_eq!(requests[2], b"get 100%25%20sure");
    assert_eq!(requests[4], b"get ctl%01%1F%7F%09%0D%0B");
    assert_eq!(get(&mut d, "MiXed", FOLD_MUL).as_deref(), Some("echo:mixed"));
    assert_eq!(get(&mut d, "MiXed", 0).as_deref(), Some("echo:MiXed"));
    assert_eq!(get(&mut d, "miss", 0), None);
    assert_eq!(get(&mut d, "empty", 0).as_deref(), Some(""));
    assert_eq!(get(&mut d, "cr", 0).as_deref(), Some("A"), "any whitespace after the code");
    assert_eq!(get(&mut d, "nul", 0).as_deref(), Some("a"), "%00 ends the value");
    assert_eq!(get(&mut d, "longest", 0).map(|v| v.len()), Some(MAX_LINE - 5));
    assert_eq!(server.accepted.load(SeqCst), 1, "one connection throughout, misses included");
}

#[test]
fn bad_replies_answer_retry_with_postfixs_warnings_and_close_the_connection() {
    let server = TestServer::tcp(0, Framing::Line, responder());
    let pools = Registry::new();
    let addr = format!("127.0.0.1:{}", server.port());
    let d = open_with(&addr, Mode::ReadOnly, 0, &pools).unwrap();
    let from = format!("read TCP map reply from {addr}");
    let cases: [(&[u8], String); 5] = [
        (b"status", format!("{from}: bad status code: 600 what_now")),
        (b"garbage", format!("{from}: malformed reply: hello_world")),
        (b"badhex", format!("{from}: malformed reply: 200 100%zz")),
        (b"nospace", format!("{from}: malformed reply: 200")),
        (b"toolong", format!("{from}: text longer than 4096")),
    ];
    for (i, (key, want)) in cases.into_iter().enumerate() {
        assert_eq!(lookup(&*d, key), Err(DictError::Retry(want)));
        assert!(lookup(&*d, b"k").unwrap().is_some());
        assert_eq!(server.accepted.load(SeqCst), i + 2, "{key:?} closed the connection");
    }
    // 4xx: RETRY, the connection closed, no warning text of Postfix's
    assert!(matches!(lookup(&*d, b"temp"), Err(DictError::Retry(_))));
    assert!(lookup(&*d, b"k").unwrap().is_some());
    assert_eq!(server.accepted.load(SeqCst), 7);
}

#[test]
fn a_slow_server_answers_retry_in_time_and_a_lost_connection_is_replaced() {
    let server = TestServer::tcp(0, Framing::Line, dropping_second_request(responder()));
    let pools = Registry::new();
    let addr = format!("127.0.0.1:{}", server.port());
    let d = open_with(&addr, Mode::ReadOnly, 0, &pools).unwrap();
    assert!(lookup(&*d, b"k1").unwrap().is_some());
    assert_eq!(lookup(&*d, b"k2").unwrap().as_deref(), Some(&b"echo:k2"[..]), "replaced at once");
    assert_eq!(server.request_count(), 3);
    let start = Instant::now();
    assert_eq!(
        lookup(&*d, b"slow"),
        Err(DictError::Retry(format!("read TCP map reply from {addr}: unexpected EOF (Connection timed out)")))
    );
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(400) && took < Duration::from_secs(2), "{took:?}");
    assert!(matches!(lookup(&*d, b"close"), Err(DictError::Retry(t)) if t.contains("unexpected EOF")));
    assert!(lookup(&*d, b"k").unwrap().is_some());
    // restarted: answered again at once
    let port = server.port();
    drop(server);
    let server = TestServer::tcp(port, Framing::Line, responder());
    assert!(lookup(&*d, b"k").unwrap().is_some());
    assert_eq!(server.accepted.load(SeqCst), 1);
}

#[test]
fn open_refusals_are_postfixs() {
    let pools = Registry::new();
    let err = |name: &str, mode, flags| open_with(name, mode, flags, &pools).err().map(|e| e.reason);
    assert_eq!(
        err("localhost:9", Mode::ReadOnly, NO_UNAUTH).as_deref(),
        Some("tcp:localhost:9 map is not allowed for security sensitive data")
    );
    assert_eq!(
        err("localhost:9", Mode::ReadWrite, 0).as_deref(),
        Some("tcp:localhost:9 map requires O_RDONLY access mode")
    );
    assert!(err("nocolon", Mode::ReadOnly, 0).is_some());
    assert!(err(":9", Mode::ReadOnly, 0).is_none(), "no host is localhost");
    assert!(err("[::1]:9", Mode::ReadOnly, 0).is_none());
}
