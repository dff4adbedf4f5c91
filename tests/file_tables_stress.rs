//! File tables (`lmdb:`, `btree:`) under stress, through the standalone daemon:
//!
//! * crash: a client streams 10,000 updates through proxywrite while the
//!   writer process is killed with SIGKILL again and again; every update that
//!   was acknowledged must be in the file afterwards, and the file must still
//!   be readable by Postfix's own `postmap`.
//! * concurrency: one writer updates and deletes while several readers look
//!   keys up through proxymap; every answer must be well formed and show a
//!   value that was really written for that key, and the final file must hold
//!   exactly what the writer left.
//!
//! Table files are created and checked with Postfix's `postmap` (no proxy in
//! between), so their NUL convention and format are Postfix's.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use proxymap::client::{Attrs, Client};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// What `postmap -q` sends in a lookup: UTF8_REQUEST | FOLD_FIX | LOCK | DUP_WARN.
const LOOKUP_FLAGS: &[u8] = b"540737";
/// DICT_FLAG_LOCK: the writer's exclusive lock is what keeps readers off
/// half-written pages, so a writer that shares its table with readers sends it.
const WRITE_FLAGS_LOCKED: &[u8] = b"64";

// ---------------------------------------------------------------------------
// helpers

/// Sets a flag when dropped, also while unwinding: the other threads of a
/// scope stop even when this one panics, so a failure never becomes a hang.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Sets a flag only when dropped while unwinding: a reader that failed stops
/// the writer at once (its panic message is the one that matters).
struct SetOnPanic<'a>(&'a AtomicBool);

impl Drop for SetOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// A directory for table files, with a main.cf of its own for `postmap -c`
/// (a fixed host name keeps postmap from probing the network setup).
fn table_dir(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    dir.write("main.cf", "myhostname = localhost.localdomain\nmydomain = localdomain\ninet_protocols = ipv4\n");
    dir
}

/// `postmap -c DIR ARGS...` with a time limit, stdin from `input`.
fn postmap(dir: &TempDir, args: &[&str], input: &str) -> Output {
    let mut child = Command::new("timeout")
        .args(["120", "postmap", "-c"])
        .arg(dir.path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run postmap (Postfix 3.7 must be installed)");
    let mut stdin = child.stdin.take().expect("postmap stdin");
    stdin.write_all(input.as_bytes()).expect("postmap input");
    drop(stdin);
    child.wait_with_output().expect("postmap output")
}

/// Build `kind:DIR/name` from `text` with postmap; returns the table name.
fn build_table(dir: &TempDir, kind: &str, name: &str, text: &str) -> String {
    let source = dir.write(name, text);
    let table = format!("{kind}:{}", source.display());
    let out = postmap(dir, &[&table], "");
    assert!(out.status.success(), "postmap {table}: {}", String::from_utf8_lossy(&out.stderr));
    table
}

/// The file Postfix keeps a table of this type in.
fn table_file(dir: &TempDir, kind: &str, name: &str) -> PathBuf {
    let suffix = if kind == "lmdb" { "lmdb" } else { "db" };
    dir.path().join(format!("{name}.{suffix}"))
}

/// `postmap -s TABLE`: must succeed; key -> value, every key listed once.
fn dump(dir: &TempDir, table: &str) -> BTreeMap<String, String> {
    let out = postmap(dir, &["-s", table], "");
    assert!(
        out.status.success(),
        "postmap -s {table} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_listing(&out.stdout, &format!("postmap -s {table}"))
}

/// `postmap -q - TABLE` for these keys: the entries Postfix's lookup code finds
/// (this also checks that every entry follows the file's NUL convention).
fn query(dir: &TempDir, table: &str, keys: &[String]) -> BTreeMap<String, String> {
    let input = keys.join("\n") + "\n";
    let out = postmap(dir, &["-q", "-", table], &input);
    // exit status 1 means "some key not found"; anything else is a failure
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "postmap -q - {table} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    parse_listing(&out.stdout, &format!("postmap -q - {table}"))
}

fn parse_listing(stdout: &[u8], what: &str) -> BTreeMap<String, String> {
    let text = String::from_utf8_lossy(stdout);
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let (k, v) = line.split_once('\t').unwrap_or_else(|| panic!("{what}: malformed line {line:?}"));
        assert!(map.insert(k.to_string(), v.to_string()).is_none(), "{what}: key {k:?} listed twice");
    }
    map
}

/// True when process `pid` has `file` open.
fn holds_file(pid: i32, file: &Path) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == file))
}

/// The last lines of the daemon's log, for failure messages.
fn log_tail(d: &Daemon) -> String {
    let log = d.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Stop the daemon (SIGTERM; the master waits for its workers) without
/// dropping it, so the test can read the table files while nobody holds them.
fn stop(d: &mut Daemon) {
    d.signal(Signal::SIGTERM);
    assert!(wait_until(30, || matches!(d.child.try_wait(), Ok(Some(_)))), "daemon did not stop");
}

fn status_only(reply: &Attrs) -> Option<&[u8]> {
    match reply.as_slice() {
        [(name, status)] if name == b"status" => Some(status.as_slice()),
        _ => None,
    }
}

fn show(reply: &Attrs) -> String {
    let parts: Vec<String> =
        reply.iter().map(|(n, v)| format!("{}={}", String::from_utf8_lossy(n), String::from_utf8_lossy(v))).collect();
    format!("[{}]", parts.join(", "))
}

// ---------------------------------------------------------------------------
// 1. SIGKILL of the writer while updates stream in

const CRASH_TOML: &str = r#"
config_directory = "@DIR@"
socket_directory = "@DIR@/private"
max_use = 0
max_idle = 0
[proxymap]
workers = 1
[proxywrite]
workers = 1
"#;

const CRASH_UPDATES: usize = 10_000;
/// The client waits at every multiple of this many updates until the killer
/// has killed that many writers in total: kills are spread over the whole
/// stream however fast or slow the machine is.
const KEYS_PER_KILL: usize = 1_000;

#[test]
fn lmdb_acknowledged_updates_survive_writer_kills() {
    acknowledged_updates_survive_writer_kills("lmdb");
}

#[test]
fn btree_acknowledged_updates_survive_writer_kills() {
    acknowledged_updates_survive_writer_kills("btree");
}

fn acknowledged_updates_survive_writer_kills(kind: &str) {
    let tables = table_dir(&format!("crash-tables-{kind}"));
    let table = build_table(&tables, kind, "t", "seed seed-value\n");
    let file = table_file(&tables, kind, "t").canonicalize().expect("table file");
    let main_cf = format!("proxy_read_maps = proxy:{table}\nproxy_write_maps = proxy:{table}\n");
    let mut d = Daemon::start(&format!("crash-{kind}"), CRASH_TOML, &main_cf);
    d.wait_for_socket("proxywrite");
    assert!(wait_until(10, || d.workers().len() == 2), "workers: {:?}", d.workers());
    let master = d.pid();

    let done = AtomicBool::new(false);
    let kills = AtomicUsize::new(0);
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut acked: Vec<usize> = Vec::new();
    let (mut broken, mut refused) = (0usize, 0usize);
    let started = Instant::now();

    std::thread::scope(|s| {
        // The killer: SIGKILL the writer every 100-300 ms. The writer is the
        // child of our master that has the table file open (the reader never
        // opens it in this test); a freshly respawned writer that has not
        // opened it yet is left alone until it has.
        let killer = s.spawn(|| {
            let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100 + rng.below(201) as u64));
                let writers: Vec<i32> = children_of(master).into_iter().filter(|&p| holds_file(p, &file)).collect();
                if let [pid] = writers[..] {
                    // still our master's child (not reaped and reused meanwhile)
                    if children_of(master).contains(&pid) && kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                        kills.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
        });

        let _stop_killer = SetOnDrop(&done);
        let sock = d.socket("proxywrite");
        let mut conn: Option<Client> = None;
        for i in 0..CRASH_UPDATES {
            if i > 0 && i % KEYS_PER_KILL == 0 {
                let want = i / KEYS_PER_KILL;
                assert!(
                    wait_until(60, || kills.load(Ordering::SeqCst) >= want),
                    "only {} kills by update {i}; log:\n{}",
                    kills.load(Ordering::SeqCst),
                    log_tail(&d)
                );
            }
            let key = format!("k{i:05}");
            let value = format!("v{i:05}");
            let mut refusals = 0;
            // One request at a time; a request that got no reply (the writer
            // died) is sent again on a new connection: updates are idempotent.
            loop {
                assert!(Instant::now() < deadline, "update {key} not acknowledged in time; log:\n{}", log_tail(&d));
                let c = match conn.as_mut() {
                    Some(c) => c,
                    None => match Client::connect(&sock) {
                        Ok(c) => conn.insert(c),
                        Err(_) => {
                            // accepted, then its writer was killed before the announcement
                            broken += 1;
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                    },
                };
                let request: [(&str, &[u8]); 5] = [
                    ("request", b"update"),
                    ("table", table.as_bytes()),
                    ("flags", b"0"),
                    ("key", key.as_bytes()),
                    ("value", value.as_bytes()),
                ];
                match c.call(&request) {
                    Ok(reply) => match status_only(&reply) {
                        Some(b"0") => {
                            acked.push(i);
                            break;
                        }
                        Some(_) => {
                            // a well-formed refusal (e.g. RETRY): not acknowledged;
                            // try again, but a table that stays broken fails the test
                            refused += 1;
                            refusals += 1;
                            assert!(
                                refusals < 100,
                                "update {key} refused {refusals} times, last {}; log:\n{}",
                                show(&reply),
                                log_tail(&d)
                            );
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        None => panic!("malformed update reply {} for {key}; log:\n{}", show(&reply), log_tail(&d)),
                    },
                    Err(_) => {
                        broken += 1;
                        conn = None;
                    }
                }
            }
        }
        drop(_stop_killer);
        killer.join().expect("killer thread");
    });

    let kills = kills.load(Ordering::SeqCst);
    let elapsed = started.elapsed();
    println!(
        "{kind}: {} of {CRASH_UPDATES} updates acknowledged in {elapsed:.1?}; {kills} writer kills, \
         {broken} broken connections, {refused} refusals",
        acked.len()
    );
    // Every key is eventually acknowledged (refusals are retried), and the
    // kills were spread over the stream by the milestones above.
    assert_eq!(acked.len(), CRASH_UPDATES);
    assert!(kills >= CRASH_UPDATES / KEYS_PER_KILL - 1, "only {kills} kills");
    let log = d.log();
    assert!(log.contains("killed by signal 9"), "the master never saw a killed writer:\n{log}");
    assert!(!log.contains("panicked"), "a worker panicked:\n{log}");

    stop(&mut d);
    let listing = dump(&tables, &table);
    let keys: Vec<String> = acked.iter().map(|i| format!("k{i:05}")).collect();
    for (i, key) in acked.iter().zip(&keys) {
        assert_eq!(listing.get(key).map(String::as_str), Some(format!("v{i:05}").as_str()), "postmap -s: {key}");
    }
    assert_eq!(listing.get("seed").map(String::as_str), Some("seed-value"));
    assert_eq!(listing.len(), acked.len() + 1, "unexpected entries in {table}");
    // Postfix's lookup path finds every entry too (same NUL convention throughout).
    let found = query(&tables, &table, &keys);
    assert_eq!(found.len(), keys.len(), "postmap -q - found {} of {} keys", found.len(), keys.len());
    for (k, v) in &found {
        assert_eq!(listing.get(k), Some(v), "postmap -q - {k}");
    }
}

// ---------------------------------------------------------------------------
// 2. one writer, several readers

const CONCURRENT_TOML: &str = r#"
config_directory = "@DIR@"
socket_directory = "@DIR@/private"
max_use = 100
max_idle = 0
[proxymap]
workers = 2
[proxywrite]
workers = 1
"#;

const KEYS: usize = 64;
const WRITES: usize = 3_000;
const READERS: usize = 4;
/// Lookups per reader connection: readers reconnect often, so connections
/// are spread over both reader processes, and with max_use = 100 (Postfix's
/// default) reader processes are replaced and open the table anew while the
/// writer is busy.
const LOOKUPS_PER_CONNECTION: usize = 20;
/// Every this many writes the writer waits until the readers have done
/// READERS more lookups in total: reads and writes interleave however the
/// scheduler treats the threads.
const WRITES_PER_CHECKPOINT: usize = 100;

enum Op {
    Update(String),
    Delete,
}

#[test]
fn lmdb_readers_see_only_written_values() {
    readers_see_only_written_values("lmdb");
}

#[test]
fn btree_readers_see_only_written_values() {
    readers_see_only_written_values("btree");
}

fn readers_see_only_written_values(kind: &str) {
    let keys: Vec<String> = (0..KEYS).map(|i| format!("c{i:02}")).collect();
    let initial: BTreeMap<String, String> = keys.iter().map(|k| (k.clone(), format!("{k}=init"))).collect();

    // The writer's whole plan, fixed in advance: the values each key may
    // ever have (a value names its key and the write that produced it), and
    // the exact status each write must get.
    let mut rng = Rng::new(0x0123_4567_89ab_cdef);
    let mut plan: Vec<(usize, Op)> = Vec::new();
    for j in 0..WRITES {
        let k = rng.below(KEYS);
        if rng.below(4) == 0 {
            plan.push((k, Op::Delete));
        } else {
            // mostly small values, now and then one big enough for overflow pages
            let pad = if rng.below(25) == 0 { 2000 + rng.below(3000) } else { rng.below(100) };
            plan.push((k, Op::Update(format!("{}={j}:{}", keys[k], "x".repeat(pad)))));
        }
    }
    let mut valid: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (k, v) in &initial {
        valid.entry(k.as_str()).or_default().insert(v.as_str());
    }
    for (k, op) in &plan {
        if let Op::Update(v) = op {
            valid.entry(keys[*k].as_str()).or_default().insert(v.as_str());
        }
    }
    let mut expected = initial.clone();
    let mut expected_status: Vec<&[u8]> = Vec::new();
    for (k, op) in &plan {
        match op {
            Op::Update(v) => {
                expected.insert(keys[*k].clone(), v.clone());
                expected_status.push(b"0");
            }
            Op::Delete => expected_status.push(if expected.remove(&keys[*k]).is_some() { b"0" } else { b"1" }),
        }
    }

    let tables = table_dir(&format!("conc-tables-{kind}"));
    let text: String = initial.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
    let table = build_table(&tables, kind, "c", &text);
    let main_cf = format!("proxy_read_maps = proxy:{table}\nproxy_write_maps = proxy:{table}\n");
    let mut d = Daemon::start(&format!("conc-{kind}"), CONCURRENT_TOML, &main_cf);
    d.wait_for_socket("proxywrite");

    let writer_done = AtomicBool::new(false);
    let reader_failed = AtomicBool::new(false);
    let lookups = AtomicUsize::new(0);
    let found_count = AtomicUsize::new(0);
    let start_line = Barrier::new(READERS + 1);
    let deadline = Instant::now() + Duration::from_secs(600);
    let started = Instant::now();

    std::thread::scope(|s| {
        let mut readers = Vec::new();
        for r in 0..READERS {
            let (d, keys, valid, table) = (&d, &keys, &valid, &table);
            let (writer_done, lookups, found_count, start_line) = (&writer_done, &lookups, &found_count, &start_line);
            let reader_failed = &reader_failed;
            readers.push(s.spawn(move || {
                let _failed = SetOnPanic(reader_failed);
                let mut rng = Rng::new(0x5151_0000 + r as u64 + 1);
                let sock = d.socket("proxymap");
                start_line.wait();
                let mut n = 0usize;
                // bounded even if the writer never finishes
                while !writer_done.load(Ordering::SeqCst) && n < 1_000_000 {
                    assert!(Instant::now() < deadline, "reader {r}: out of time; log:\n{}", log_tail(d));
                    let mut c = Client::connect(&sock)
                        .unwrap_or_else(|e| panic!("reader {r}: connect: {e}; log:\n{}", log_tail(d)));
                    for _ in 0..LOOKUPS_PER_CONNECTION {
                        let key = &keys[rng.below(KEYS)];
                        let request: [(&str, &[u8]); 4] = [
                            ("request", b"lookup"),
                            ("table", table.as_bytes()),
                            ("flags", LOOKUP_FLAGS),
                            ("key", key.as_bytes()),
                        ];
                        let reply = c.call(&request).unwrap_or_else(|e| {
                            panic!("reader {r}: lookup {key}: broken connection: {e}; log:\n{}", log_tail(d))
                        });
                        match reply.as_slice() {
                            [(s, status), (v, value)] if s == b"status" && v == b"value" => {
                                let value = String::from_utf8_lossy(value);
                                match status.as_slice() {
                                    b"0" => {
                                        assert!(
                                            valid[key.as_str()].contains(value.as_ref()),
                                            "reader {r}: {key} has value {value:?}, never written for it"
                                        );
                                        found_count.fetch_add(1, Ordering::Relaxed);
                                    }
                                    b"1" => assert!(value.is_empty(), "reader {r}: not found with value {value:?}"),
                                    _ => panic!("reader {r}: lookup {key}: {}; log:\n{}", show(&reply), log_tail(d)),
                                }
                            }
                            _ => panic!("reader {r}: malformed lookup reply {}", show(&reply)),
                        }
                        n += 1;
                        lookups.fetch_add(1, Ordering::SeqCst);
                    }
                }
                n
            }));
        }

        // The writer: one connection, one request at a time.
        let _stop_readers = SetOnDrop(&writer_done);
        start_line.wait();
        let mut c = Client::connect(&d.socket("proxywrite")).expect("connect proxywrite");
        for (j, (k, op)) in plan.iter().enumerate() {
            if reader_failed.load(Ordering::SeqCst) {
                break;
            }
            if j > 0 && j % WRITES_PER_CHECKPOINT == 0 {
                let want = (j / WRITES_PER_CHECKPOINT) * READERS;
                assert!(
                    wait_until(60, || {
                        lookups.load(Ordering::SeqCst) >= want || reader_failed.load(Ordering::SeqCst)
                    }),
                    "readers stalled at {} lookups by write {j}; log:\n{}",
                    lookups.load(Ordering::SeqCst),
                    log_tail(&d)
                );
            }
            assert!(Instant::now() < deadline, "writer: out of time at write {j}");
            let key = keys[*k].as_bytes();
            let reply = match op {
                Op::Update(v) => c.call(&[
                    ("request", b"update"),
                    ("table", table.as_bytes()),
                    ("flags", WRITE_FLAGS_LOCKED),
                    ("key", key),
                    ("value", v.as_bytes()),
                ]),
                Op::Delete => c.call(&[
                    ("request", b"delete"),
                    ("table", table.as_bytes()),
                    ("flags", WRITE_FLAGS_LOCKED),
                    ("key", key),
                ]),
            }
            .unwrap_or_else(|e| panic!("write {j}: broken connection: {e}; log:\n{}", log_tail(&d)));
            assert_eq!(
                status_only(&reply),
                Some(expected_status[j]),
                "write {j} ({} {}): reply {}; log:\n{}",
                if matches!(op, Op::Delete) { "delete" } else { "update" },
                keys[*k],
                show(&reply),
                log_tail(&d)
            );
        }
        drop(_stop_readers);
        let per_reader: Vec<usize> =
            readers.into_iter().map(|h| h.join().expect("a reader failed (its message is above)")).collect();
        println!(
            "{kind}: {WRITES} writes and {} lookups ({} found) in {:.1?}; per reader {per_reader:?}",
            per_reader.iter().sum::<usize>(),
            found_count.load(Ordering::SeqCst),
            started.elapsed()
        );
    });

    let log = d.log();
    assert!(!log.contains("panicked"), "a worker panicked:\n{log}");
    stop(&mut d);
    // Postfix reads back exactly what the writer left, by walking and by lookup.
    assert_eq!(dump(&tables, &table), expected, "postmap -s {table}");
    assert_eq!(query(&tables, &table, &keys), expected, "postmap -q - {table}");
}
