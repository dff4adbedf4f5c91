//! `socketmap:` and `tcp:` tables, ours against Postfix's (both built into
//! Postfix): one server of the test's own, a thread per connection, answers
//! by the key it is asked, and the same keys are asked with `postmap -q
//! KEY TYPE:NAME` (Postfix's table code, in process) and `postmap -q KEY
//! proxy:TYPE:NAME` (through our proxymap in a private Postfix instance).
//! Exit codes, output and the tables' warnings must be identical.
//!
//! Not compared, because Postfix's behaviour there is what we change on
//! purpose (docs/compatibility.md): a server that never answers (Postfix
//! waits 100 s), tcp's lost connections and over-long lines (Postfix tries
//! 10 times, a second apart), an unreachable server (Postfix warns per
//! lookup, ours once per outage). Those are the unit tests' business; here
//! only a restart: our proxymap holds connections to a server that goes
//! away and comes back, and lookups answer again within 5 s.

mod common;

use common::mapdiff::{assert_same_warnings, compare, proxymap_lines, query, settled_log};
use common::postfix::{Instance, Server};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Keys asked of the socketmap tables.
const SOCKETMAP_KEYS: &[&str] = &[
    "alice@example.com",
    "Mixed Case@Example.COM",
    "a b%c,d:e",
    "ü@example.com",
    "tab\there",
    "miss",
    "temp",
    "timeout",
    "perm",
    "permbare",
    "odd",
    "ctl",
    "longreason",
    "okbare",
    "nul",
    "long",
    "toolong",
    "malformed",
    "badterm",
    "close",
];

/// Keys asked of the tcp table.
const TCP_KEYS: &[&str] = &[
    "alice@example.com",
    "Mixed Case@Example.COM",
    "a b%c,d:e",
    "ü@example.com",
    "tab\there\u{1}\u{7f}",
    "100%",
    "miss",
    "temp",
    "status",
    "garbage",
    "garbage8",
    "badhex",
    "nospace",
    "cr",
    "nul",
    "longest",
];

/// Keys whose reply is an empty value: found, and then refused by
/// Postfix's proxy client ("empty string result is not allowed"), whichever
/// proxymap answered; asked of ours alone.
const EMPTY_VALUE_KEYS: &[(&str, usize)] = &[("okempty", 0), ("empty", 1)];

/// Tables Postfix 3.7 exits on (postmap in process), with the fatal text;
/// ours answers RETRY with the same text in its log.
const FATAL: &[(&str, &str)] = &[
    ("socketmap:tcp:127.0.0.1:9:m", "invalid transport name: tcp in service: tcp:127.0.0.1:9"),
    ("socketmap:unix:m", "need service transport:endpoint instead of \"unix\""),
    ("socketmap:nomap", "socketmap requires server:socketmap argument"),
];

fn netstring(payload: &[u8]) -> Vec<u8> {
    [format!("{}:", payload.len()).as_bytes(), payload, b","].concat()
}

/// The socketmap answer for a request `<map> <key>`; None: close.
fn socketmap_reply(request: &[u8]) -> Option<Vec<u8>> {
    let key = request.splitn(2, |b| *b == b' ').nth(1).unwrap_or_default();
    let payload: Vec<u8> = match key {
        b"miss" => b"NOTFOUND ".to_vec(),
        b"temp" => b"TEMP try later".to_vec(),
        b"timeout" => b"TIMEOUT  slow backend".to_vec(),
        b"perm" => b"PERM bad thing".to_vec(),
        b"permbare" => b"PERM".to_vec(),
        b"odd" => b"MAYBE later".to_vec(),
        b"ctl" => b"TEMP a\tb\x01c\xc3\xbcd".to_vec(),
        b"longreason" => [&b"TEMP "[..], &vec![b'r'; 300]].concat(),
        b"okbare" => b"OK".to_vec(),
        b"okempty" => b"OK ".to_vec(),
        b"nul" => b"OK a\0b".to_vec(),
        b"long" => [&b"OK "[..], &vec![b'x'; 99_997]].concat(),
        b"toolong" => [&b"OK "[..], &vec![b'x'; 99_998]].concat(),
        b"malformed" => return Some(b"12x:OK".to_vec()),
        b"badterm" => return Some(b"4:OK a;".to_vec()),
        b"close" => return None,
        _ => [&b"OK "[..], request].concat(),
    };
    Some(netstring(&payload))
}

fn hex_quote(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in raw {
        if b != b'%' && b.is_ascii_graphic() {
            out.push(b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

/// The tcp answer line for a request line `get <quoted key>`.
fn tcp_reply(line: &[u8]) -> Option<Vec<u8>> {
    let key = line.strip_prefix(b"get ").unwrap_or(line);
    let reply: Vec<u8> = match key {
        b"miss" => b"500 not%20found".to_vec(),
        b"temp" => b"400 busy".to_vec(),
        b"status" => b"600 what\tnow".to_vec(),
        b"garbage" => b"hello\x01world".to_vec(),
        b"garbage8" => "h\u{e9}llo w\u{f6}rld".as_bytes().to_vec(),
        b"badhex" => b"200 100%zz".to_vec(),
        b"nospace" => b"200".to_vec(),
        b"empty" => b"200 ".to_vec(),
        b"cr" => b"200\r%41".to_vec(),
        b"nul" => b"200 a%00b".to_vec(),
        b"longest" => [&b"200 "[..], &vec![b'x'; 4091]].concat(),
        // the quoted key as received, and quoted once more
        _ => [&b"200 "[..], &hex_quote(&[&b"echo:"[..], key].concat())].concat(),
    };
    Some([&reply[..], b"\n"].concat())
}

#[derive(Clone, Copy)]
enum Protocol {
    Socketmap,
    Tcp,
}

/// A server on 127.0.0.1 and/or a UNIX socket; stops when dropped.
struct TestServer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

trait Conn: Read + Write + Send + 'static {}
impl<T: Read + Write + Send + 'static> Conn for T {}

impl TestServer {
    fn start(protocol: Protocol, tcp: Option<TcpListener>, unix: Option<UnixListener>) -> TestServer {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        if let Some(l) = tcp {
            l.set_nonblocking(true).unwrap();
            let st = stop.clone();
            threads.push(std::thread::spawn(move || {
                accept_loop(
                    &st,
                    || l.accept().map(|(s, _)| s),
                    protocol,
                    |s: &TcpStream| {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    },
                )
            }));
        }
        if let Some(l) = unix {
            l.set_nonblocking(true).unwrap();
            let st = stop.clone();
            threads.push(std::thread::spawn(move || {
                accept_loop(
                    &st,
                    || l.accept().map(|(s, _)| s),
                    protocol,
                    |s: &std::os::unix::net::UnixStream| {
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
                    },
                )
            }));
        }
        TestServer { stop, threads }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn accept_loop<S: Conn>(
    stop: &Arc<AtomicBool>,
    accept: impl Fn() -> std::io::Result<S>,
    protocol: Protocol,
    setup: impl Fn(&S),
) {
    let mut conns = Vec::new();
    while !stop.load(SeqCst) {
        match accept() {
            Ok(s) => {
                setup(&s);
                let st = stop.clone();
                conns.push(std::thread::spawn(move || converse(s, protocol, &st)));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn converse(mut s: impl Conn, protocol: Protocol, stop: &AtomicBool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    while !stop.load(SeqCst) {
        let request = match protocol {
            Protocol::Socketmap => buf.iter().position(|b| *b == b':').and_then(|colon| {
                let len: usize = std::str::from_utf8(&buf[..colon]).ok()?.parse().ok()?;
                (buf.len() > colon + len).then(|| (buf[colon + 1..colon + 1 + len].to_vec(), colon + len + 2))
            }),
            Protocol::Tcp => buf.iter().position(|b| *b == b'\n').map(|i| (buf[..i].to_vec(), i + 1)),
        };
        if let Some((request, used)) = request {
            buf.drain(..used.min(buf.len()));
            let reply = match protocol {
                Protocol::Socketmap => socketmap_reply(&request),
                Protocol::Tcp => tcp_reply(&request),
            };
            match reply {
                Some(bytes) if s.write_all(&bytes).is_ok() => continue,
                _ => return,
            }
        }
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

fn unix_listener(path: &Path) -> UnixListener {
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path).expect("bind");
    // proxymap runs as the postfix user
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    l
}

/// Ask `table` through our proxymap until it answers; within 5 s.
fn answers_again_within_5s(inst: &Instance, table: &str, key: &str) {
    let start = Instant::now();
    loop {
        let (ours, _) = query(inst, key, &format!("proxy:{table}"));
        if ours.starts_with("exit=Some(0)") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{table}: not back within 5 s: {ours}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn socketmap_and_tcp_tables_answer_as_postfix_in_process() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = tcp.local_addr().unwrap().port();
    let tcp2 = TcpListener::bind("127.0.0.1:0").unwrap();
    let port2 = tcp2.local_addr().unwrap().port();
    let inet_map = format!("socketmap:inet:127.0.0.1:{port}:mymap");
    let tcp_map = format!("tcp:127.0.0.1:{port2}");
    // the UNIX socket lives in the instance's table directory, named below
    let unix_map = "socketmap:unix:@TABLES@/sm.sock:other";
    let fatal: Vec<String> = FATAL.iter().map(|(t, _)| format!("proxy:{t}")).collect();
    let main_cf = format!("proxy_read_maps = proxy:{inet_map} proxy:{unix_map} proxy:{tcp_map} {}\n", fatal.join(" "));
    let mut inst = Instance::new("net", &main_cf, Server::Ours);
    let unix_map = unix_map.replace("@TABLES@", &inst.tables.display().to_string());
    let sock = inst.tables.join("sm.sock");
    let mut socketmap = Some(TestServer::start(Protocol::Socketmap, Some(tcp), Some(unix_listener(&sock))));
    let mut tcp_server = Some(TestServer::start(Protocol::Tcp, Some(tcp2), None));
    inst.start();

    let found = compare(&inst, &[inet_map.clone(), unix_map.clone()], SOCKETMAP_KEYS);
    assert!(found.hits >= 14, "only {} hits", found.hits);
    let tcp_found = compare(&inst, std::slice::from_ref(&tcp_map), TCP_KEYS);
    assert!(tcp_found.hits >= 9, "only {} hits", tcp_found.hits);
    let mut all = found;
    all.hits += tcp_found.hits;
    all.theirs_warnings.extend(tcp_found.theirs_warnings);
    assert_same_warnings(&inst, &all, 20);
    let tables = [&inet_map, &tcp_map];
    for (key, table) in EMPTY_VALUE_KEYS {
        let (_, client_warnings) = query(&inst, key, &format!("proxy:{}", tables[*table]));
        assert!(
            client_warnings.iter().any(|w| w.ends_with("empty string result is not allowed")),
            "{client_warnings:?}"
        );
    }

    // Postfix exits; ours answers RETRY, logs the same text and keeps serving
    for (table, text) in FATAL {
        let (theirs, _) = query(&inst, "k", table);
        // the outcome shows stderr as a Rust string literal
        let shown = text.replace('"', "\\\"");
        assert!(theirs.starts_with("exit=Some(1) stdout=\"\"") && theirs.contains(&shown), "{table}: {theirs}");
        let (ours, _) = query(&inst, "k", &format!("proxy:{table}"));
        assert!(ours.starts_with("exit=Some(1) stdout=\"\""), "{table}: {ours}");
        let (still, _) = query(&inst, "alice@example.com", &format!("proxy:{inet_map}"));
        assert!(still.starts_with("exit=Some(0)"), "{table}: {still}");
    }
    let log = settled_log(&inst);
    let errors = proxymap_lines(&log, "error");
    for (table, text) in FATAL {
        assert!(errors.iter().any(|l| l.ends_with(text)), "{table}: {text:?} not logged:\n{log}");
    }

    // servers restarted while our proxymap holds connections to them
    for table in [&inet_map, &unix_map, &tcp_map] {
        let (ours, _) = query(&inst, "alice@example.com", &format!("proxy:{table}"));
        assert!(ours.starts_with("exit=Some(0)"), "{table}: {ours}");
    }
    socketmap.take();
    tcp_server.take();
    let (ours, _) = query(&inst, "alice@example.com", &format!("proxy:{inet_map}"));
    assert!(ours.starts_with("exit=Some(1) stdout=\"\""), "down: {ours}");
    let tcp = TcpListener::bind(("127.0.0.1", port)).expect("rebind");
    let tcp2 = TcpListener::bind(("127.0.0.1", port2)).expect("rebind");
    let _socketmap = TestServer::start(Protocol::Socketmap, Some(tcp), Some(unix_listener(&sock)));
    let _tcp_server = TestServer::start(Protocol::Tcp, Some(tcp2), None);
    for table in [&inet_map, &unix_map, &tcp_map] {
        answers_again_within_5s(&inst, table, "alice@example.com");
    }
    let log = settled_log(&inst);
    assert!(log.contains("socketmap server inet:127.0.0.1:"), "the outage is logged:\n{log}");
}
