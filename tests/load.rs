//! Load against the standalone daemon (issue #19, item 4): thousands of idle
//! connections beside 64 busy clients, and a client that pipelines hundreds
//! of thousands of requests and never reads its replies. Bounded functional
//! checks only (correct answers, a generous wait bound, a memory bound); the
//! figures beside Postfix's proxymap come from `cargo bench --bench load`
//! (docs/reliability.md).
//!
//! scripts/test.sh runs this file in each worker design
//! (`PROXYMAP_TEST_THREADS`: threads as shipped, `no`, `0`).

mod common;

use common::*;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::socket::{recv, MsgFlags};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

const TOML: &str = r#"
config_directory = "@DIR@"
socket_directory = "@DIR@/private"
max_use = 0
max_idle = 100
[proxymap]
workers = 1
[proxywrite]
workers = 1
"#;

const MAIN_CF: &str = "
demo = @DIR@
proxy_read_maps = proxy:texthash:$demo/virtual
";

/// Busy clients, and the longest any one of their lookups may wait.
const BUSY: usize = 64;
const BOUND: Duration = Duration::from_secs(5);

fn start(tag: &str) -> (Daemon, String) {
    let d = Daemon::start(tag, TOML, MAIN_CF);
    let keys: String = (0..100).map(|i| format!("user{i}@example.com value{i}\n")).collect();
    d.dir.write("virtual", keys);
    let table = format!("texthash:{}/virtual", d.dir.path().display());
    (d, table)
}

/// The proxymap worker (workers = 1: it serves every connection).
fn reader(d: &Daemon) -> i32 {
    let is_reader =
        |p: &i32| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "pm-proxymap");
    assert!(wait_until(10, || d.workers().iter().any(is_reader)), "workers: {:?}", d.workers());
    d.workers().into_iter().find(is_reader).expect("a proxymap worker")
}

fn rss_kib(pid: i32) -> u64 {
    proc_status_kib(pid, "VmRSS:").unwrap_or(0)
}

/// Raise this process's descriptor limit to its hard limit; how many
/// idle connections fit beside the test's own descriptors (at most 10,000).
fn idle_room() -> usize {
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    // The daemon inherits the raised limit; its master and the test's 64
    // busy clients need a few hundred more.
    (hard.saturating_sub(1024) as usize).min(10_000)
}

/// Still open and silent: no EOF, no byte (the announcement was read).
fn open_and_quiet(s: &UnixStream) -> bool {
    let mut b = [0u8; 1];
    matches!(recv(s.as_raw_fd(), &mut b, MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT), Err(nix::errno::Errno::EAGAIN))
}

/// 64 clients each look up 200 keys while thousands of idle connections
/// are open on the same worker: every answer is right, none waits more than
/// 5 s, and no idle connection is closed meanwhile (like Postfix, idle
/// clients are kept until ipc_timeout; max_idle is about the process).
#[test]
fn busy_clients_are_served_beside_thousands_of_idle_connections() {
    let room = idle_room();
    assert!(room >= 1000, "descriptor limit too low for this test: {room} idle connections");
    let (d, table) = start("idle-busy");
    let worker = reader(&d);
    let before = rss_kib(worker);
    let mut idle = Vec::with_capacity(room);
    for i in 0..room {
        let s = UnixStream::connect(d.socket("proxymap")).unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        idle.push(s);
    }
    // Every idle connection is accepted and greeted (the worker holds it).
    for (i, s) in idle.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let mut hello = [0u8; 28];
        s.read_exact(&mut hello).unwrap_or_else(|e| panic!("idle connection {i} not greeted: {e}"));
        assert_eq!(&hello, b"protocol\0proxymap_protocol\0\0");
    }
    let after = rss_kib(worker);
    eprintln!(
        "{room} idle connections: worker RSS {before} -> {after} KiB ({:.2} KiB per connection)",
        after.saturating_sub(before) as f64 / room as f64
    );
    let slowest = std::thread::scope(|s| {
        let clients: Vec<_> = (0..BUSY)
            .map(|c| {
                let (d, table) = (&d, &table);
                s.spawn(move || {
                    let mut raw = Raw::connect(&d.socket("proxymap"));
                    raw.stream.set_read_timeout(Some(BOUND)).expect("timeout");
                    let mut slowest = Duration::ZERO;
                    for i in 0..200 {
                        let k = (c + i) % 100;
                        let t0 = Instant::now();
                        let reply = raw.call(&lookup(table, &format!("user{k}@example.com")));
                        slowest = slowest.max(t0.elapsed());
                        assert_eq!(reply, found(&format!("value{k}")), "client {c} lookup {i}");
                    }
                    slowest
                })
            })
            .collect();
        clients.into_iter().map(|h| h.join().expect("busy client")).max().unwrap_or_default()
    });
    eprintln!("slowest busy lookup: {slowest:?}");
    assert!(slowest < BOUND, "a busy client waited {slowest:?}");
    let dropped = idle.iter().filter(|s| !open_and_quiet(s)).count();
    assert_eq!(dropped, 0, "{dropped} of {room} idle connections closed or spoke");
    // and they still work: every 100th asks
    for s in idle.iter().step_by(100) {
        let mut raw = Raw { stream: s.try_clone().expect("clone") };
        assert_eq!(raw.call(&lookup(&table, "user7@example.com")), found("value7"));
    }
}

/// A client writes up to 1,000,000 lookups back to back (about 100 MB) and reads
/// nothing. Like
/// Postfix, the worker answers one request per read and discards what came
/// with it (docs/compatibility.md), never reads while a reply waits to go
/// out, and closes a connection whose reply is not taken within the
/// request timeout: its memory stays bounded, other clients are served
/// meanwhile, and whatever replies the client finally reads are right, in
/// order.
#[test]
fn a_client_that_pipelines_and_never_reads_costs_bounded_memory() {
    // A server that answered them all into a buffer would hold 30 MB of
    // replies: over the bound below.
    const REQUESTS: usize = 1_000_000;
    let (d, table) = start("pipeline");
    let worker = reader(&d);
    // Warm: the table open, the worker's buffers in use.
    let mut other = Raw::connect(&d.socket("proxymap"));
    assert_eq!(other.call(&lookup(&table, "user1@example.com")), found("value1"));
    let before = rss_kib(worker);

    let request = list(&lookup(&table, "user3@example.com"));
    let mut flood = Raw::connect(&d.socket("proxymap")).stream;
    flood.set_write_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let writer = {
        let mut w = flood.try_clone().expect("clone");
        std::thread::spawn(move || {
            let mut sent = 0usize;
            for _ in 0..REQUESTS {
                if w.write_all(&request).is_err() {
                    break;
                }
                sent += 1;
            }
            sent
        })
    };
    // While it writes: the worker's memory, and another client's lookups.
    let mut peak = before;
    let mut slowest = Duration::ZERO;
    let mut i = 0;
    while !writer.is_finished() {
        peak = peak.max(rss_kib(worker));
        let k = i % 100;
        let t0 = Instant::now();
        other.stream.set_read_timeout(Some(BOUND)).expect("timeout");
        assert_eq!(other.call(&lookup(&table, &format!("user{k}@example.com"))), found(&format!("value{k}")));
        slowest = slowest.max(t0.elapsed());
        i += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = writer.join().expect("writer");
    peak = peak.max(rss_kib(worker));
    eprintln!(
        "pipelined {sent} of {REQUESTS} requests ({} MB); worker RSS {before} KiB, peak {peak} KiB; \
         other client: {i} lookups, slowest {slowest:?}",
        sent * request_len(&table) / 1_000_000
    );
    assert!(peak < before + 16 * 1024, "worker RSS grew from {before} to {peak} KiB");
    assert!(slowest < BOUND, "another client waited {slowest:?}");

    // Now the client reads: each reply it gets is the right one, whole.
    flood.set_read_timeout(Some(BOUND)).expect("timeout");
    let mut replies = Vec::new();
    let _ = flood.read_to_end(&mut replies);
    let one = found("value3");
    assert!(replies.len() >= one.len(), "no reply at all");
    let whole = replies.len() / one.len() * one.len();
    assert!(replies[..whole].chunks(one.len()).all(|r| r == one), "a wrong reply among {} bytes", replies.len());
    eprintln!("the client read {} replies", replies.len() / one.len());
    // Closed for not reading, with one line (the worker never blocks on it).
    let log = d.log();
    assert_eq!(log.matches("while writing reply").count(), 1, "{log}");
    // The worker is still there and answers.
    assert_eq!(reader(&d), worker, "the worker was replaced");
    assert_eq!(other.call(&lookup(&table, "user5@example.com")), found("value5"));
}

fn request_len(table: &str) -> usize {
    list(&lookup(table, "user3@example.com")).len()
}

/// 200 clients each send most of a 1 MiB request (the largest one accepted)
/// and no end: 180 MB if the worker kept them all. It keeps at most its
/// budget (64 MiB) of unfinished requests, closes the connections that would
/// go over with a warning each, and goes on answering other clients.
#[test]
fn many_large_unfinished_requests_cost_bounded_memory() {
    const CLIENTS: usize = 200;
    const PART: usize = 900 * 1024;
    let (d, table) = start("unfinished");
    let worker = reader(&d);
    let mut other = Raw::connect(&d.socket("proxymap"));
    assert_eq!(other.call(&lookup(&table, "user1@example.com")), found("value1"));
    let before = rss_kib(worker);

    // A request that stops in the middle of its key.
    let mut part = list(&lookup(&table, "user1@example.com"));
    part.truncate(part.len() - 2);
    part.resize(PART, b'x');
    let mut clients = Vec::new();
    let mut peak = before;
    for _ in 0..CLIENTS {
        let mut c = Raw::connect(&d.socket("proxymap")).stream;
        c.set_write_timeout(Some(BOUND)).expect("timeout");
        let _ = c.write_all(&part); // fails once the worker closed it
        clients.push(c);
        peak = peak.max(rss_kib(worker));
    }
    std::thread::sleep(Duration::from_millis(100));
    peak = peak.max(rss_kib(worker));
    other.stream.set_read_timeout(Some(BOUND)).expect("timeout");
    assert_eq!(other.call(&lookup(&table, "user2@example.com")), found("value2"));
    let closed = clients.iter().filter(|c| !open_and_quiet(c)).count();
    eprintln!(
        "{CLIENTS} unfinished requests of {} KiB: worker RSS {before} KiB, peak {peak} KiB; {closed} closed for the budget",
        PART / 1024
    );
    assert!(peak < before + 100 * 1024, "worker RSS grew from {before} to {peak} KiB");
    assert!(closed > 0 && closed < CLIENTS, "{closed} of {CLIENTS} closed");
    assert!(
        wait_until(5, || d.log().contains("unfinished requests in this process exceed 67108864 bytes")),
        "{}",
        d.log()
    );
    // Once the unfinished ones time out, the memory is given back and a
    // large request fits again.
    drop(clients);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(other.call(&lookup(&table, "user3@example.com")), found("value3"));
    assert_eq!(reader(&d), worker, "the worker was replaced");
}
