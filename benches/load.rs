//! `cargo bench --bench load`: load scenarios of issue #19 (item 4) against
//! Postfix 3.7's proxymap and ours, each under a private Postfix master(8),
//! figures side by side (docs/reliability.md):
//!
//! * `idle`: 64 busy clients' lookups/s with no idle connection, then with
//!   10,000 idle ones open (the ratio); RSS of the proxymap processes
//!   before and after the idle connections (per idle connection); lookups
//!   that failed or waited 5 s or more (stalled); idle connections dropped.
//! * `pipeline`: one client writes 200,000 lookups back to back and never
//!   reads: how much the server took, whether and when it closed the
//!   connection, the replies the client finally reads, RSS, and another
//!   client's slowest lookup meanwhile.
//! * `soak` (only when asked: scripts/soak.sh): the benchmark's persistent
//!   load for PM_SOAK_SECS, sampling the proxymap processes' RSS and open
//!   descriptors every PM_SOAK_EVERY seconds.
//!
//! Environment: PM_LOAD_MODES (idle,pipeline; or soak), PM_LOAD_SERVERS
//! (postfix,ours), PM_LOAD_IDLE (10000), PM_LOAD_BUSY (64), PM_LOAD_SECS (5),
//! PM_LOAD_PIPELINE (200000), PM_SOAK_SECS (3600), PM_SOAK_EVERY (10),
//! PM_SOAK_CONNS (16), PM_LOAD_MAIN_CF (extra main.cf lines).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/env.rs"]
mod env;
#[path = "support/wire.rs"]
mod wire;
use env::{env_list, env_or};
use wire::list_end;

use common::postfix::{Instance, Server};
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

const ANNOUNCE: &[u8] = b"protocol\0proxymap_protocol\0\0";
const FLAGS: &str = "540737";
const KEYS: usize = 10_000;
/// A lookup waiting this long counts as stalled.
const STALL: Duration = Duration::from_secs(5);

fn key(i: usize) -> String {
    format!("user{i:06}@d{:03}.example", i % 1000)
}

// ---------------------------------------------------------------------------
// client

fn read_list(s: &mut UnixStream, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if list_end(buf).is_some() {
            return Ok(());
        }
    }
}

fn connect(socket: &Path, timeout: Duration) -> io::Result<UnixStream> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(timeout))?;
    let mut buf = Vec::new();
    read_list(&mut s, &mut buf)?;
    if buf != ANNOUNCE {
        return Err(io::Error::other("bad announcement"));
    }
    Ok(s)
}

fn lookup_request(table: &str, k: &str) -> Vec<u8> {
    common::list(&[("request", "lookup"), ("table", table), ("flags", FLAGS), ("key", k)])
}

/// A client as Postfix's: connect, `open`, then lookups.
fn session(socket: &Path, table: &str) -> io::Result<UnixStream> {
    let mut s = connect(socket, STALL * 4)?;
    s.write_all(&common::list(&[("request", "open"), ("table", table), ("flags", FLAGS)]))?;
    let mut buf = Vec::new();
    read_list(&mut s, &mut buf)?;
    if !buf.starts_with(b"status\x000\0") {
        return Err(io::Error::other(format!("open refused: {:?}", String::from_utf8_lossy(&buf))));
    }
    Ok(s)
}

#[derive(Default, Clone, Copy)]
struct Busy {
    lookups: u64,
    wrong: u64,
    errors: u64,
    stalled: u64,
    slowest: Duration,
}

/// `conns` clients look keys up for `secs`; each reconnects after an error.
fn busy_load(socket: &Path, table: &str, conns: usize, secs: f64) -> (Busy, f64) {
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let outs: Vec<Busy> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..conns)
            .map(|c| {
                let stop = &stop;
                scope.spawn(move || {
                    let mut out = Busy::default();
                    let mut buf = Vec::new();
                    let mut conn = None;
                    let mut i = c * KEYS / conns;
                    while !stop.load(Relaxed) {
                        let s = match conn.as_mut() {
                            Some(s) => s,
                            None => match session(socket, table) {
                                Ok(s) => conn.insert(s),
                                Err(_) => {
                                    out.errors += 1;
                                    std::thread::sleep(Duration::from_millis(100));
                                    continue;
                                }
                            },
                        };
                        let k = i % KEYS;
                        i += 1;
                        let started = Instant::now();
                        let r = s.write_all(&lookup_request(table, &key(k))).and_then(|()| read_list(s, &mut buf));
                        let took = started.elapsed();
                        out.slowest = out.slowest.max(took);
                        out.stalled += u64::from(took >= STALL);
                        match r {
                            Ok(()) => {
                                out.lookups += 1;
                                let want = common::list(&[("status", "0"), ("value", &format!("OK value {k}"))]);
                                out.wrong += u64::from(buf != want);
                            }
                            Err(_) => {
                                out.errors += 1;
                                conn = None;
                            }
                        }
                    }
                    out
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Relaxed);
        handles.into_iter().map(|h| h.join().expect("client")).collect()
    });
    let elapsed = t0.elapsed().as_secs_f64();
    let mut sum = Busy::default();
    for o in outs {
        sum.lookups += o.lookups;
        sum.wrong += o.wrong;
        sum.errors += o.errors;
        sum.stalled += o.stalled;
        sum.slowest = sum.slowest.max(o.slowest);
    }
    (sum, elapsed)
}

// ---------------------------------------------------------------------------
// the serving processes

fn proc_kib(pid: i32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap_or(0)
}

fn fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The proxymap processes of the instance's master(8) (proxymap and
/// proxywrite alike; clients here use proxymap only).
fn proxymap_pids(inst: &Instance) -> Vec<i32> {
    let Some(master) = inst.master_pid() else { return Vec::new() };
    common::children_of(master)
        .into_iter()
        .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e.ends_with("proxymap")))
        .collect()
}

/// (processes, RSS KiB summed, descriptors summed)
fn serving(inst: &Instance) -> (usize, u64, usize) {
    let pids = proxymap_pids(inst);
    (pids.len(), pids.iter().map(|&p| proc_kib(p, "VmRSS:")).sum(), pids.iter().map(|&p| fds(p)).sum())
}

// ---------------------------------------------------------------------------
// scenarios

struct Setup {
    inst: Instance,
    table: String,
    socket: std::path::PathBuf,
}

fn setup(server: Server, extra: &str) -> Setup {
    let main_cf = format!("proxy_read_maps = proxy:hash:@TABLES@/users\n{extra}\n");
    let mut inst = Instance::new("load", &main_cf, server);
    let text: String = (0..KEYS).map(|i| format!("{}\tOK value {i}\n", key(i))).collect();
    std::fs::write(inst.tables.join("users"), text).expect("users");
    let table = format!("hash:{}/users", inst.tables.display());
    let out = inst.postmap(&[&table]);
    assert!(out.status.success(), "postmap: {}", String::from_utf8_lossy(&out.stderr));
    inst.start_attached();
    let socket = inst.socket("proxymap");
    Setup { inst, table, socket }
}

fn label(server: Server) -> &'static str {
    match server {
        Server::Postfix => "Postfix 3.7",
        Server::Ours => "ours",
    }
}

fn idle(server: Server, extra: &str, n_idle: usize, busy: usize, secs: f64) -> Vec<String> {
    // The same processes before and after (max_use would retire them
    // between the runs, each run's 64 clients counting as uses).
    let s = setup(server, &format!("max_use = 1000000\n{extra}"));
    let (warm, _) = busy_load(&s.socket, &s.table, busy, 1.0);
    assert!(warm.lookups > 0, "{}: no lookup answered; log:\n{}", label(server), s.inst.log());
    let (base, t_base) = busy_load(&s.socket, &s.table, busy, secs);
    let (p0, rss0, fd0) = serving(&s.inst);
    // The idle connections: connected and greeted, nothing asked.
    let t0 = Instant::now();
    let mut idle = Vec::with_capacity(n_idle);
    let mut refused = 0usize;
    let mut first_error = None;
    for _ in 0..n_idle {
        match connect(&s.socket, Duration::from_secs(10)) {
            Ok(c) => idle.push(c),
            Err(e) => {
                refused += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    let opened = t0.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let (p1, rss1, fd1) = serving(&s.inst);
    let (loaded, t_loaded) = busy_load(&s.socket, &s.table, busy, secs);
    let dropped = idle
        .iter()
        .filter(|c| {
            let mut b = [0u8; 1];
            c.set_nonblocking(true).is_ok()
                && !matches!((&**c).read(&mut b), Err(ref e) if e.kind() == io::ErrorKind::WouldBlock)
        })
        .count();
    let kept = idle.len();
    drop(idle);
    std::thread::sleep(Duration::from_secs(1));
    // Again without them: how much of the difference is this machine's noise.
    let (again, t_again) = busy_load(&s.socket, &s.table, busy, secs);
    let (r0, r1) = (base.lookups as f64 / t_base, loaded.lookups as f64 / t_loaded);
    let r2 = again.lookups as f64 / t_again;
    let per_conn = (rss1 as f64 - rss0 as f64) / kept.max(1) as f64;
    let log = s.inst.log();
    let warnings: Vec<&str> =
        log.lines().filter(|l| l.contains("/proxymap[") && !l.contains("]: info:")).take(3).collect();
    vec![
        format!(
            "| {} | {r0:.0} | {r1:.0} | {r2:.0} | {:.2} | {p0} / {rss0} / {fd0} | {p1} / {rss1} / {fd1} | {per_conn:.2} | {} ({:.1} s){} | {dropped} | {} / {} / {} / {:.0} ms |",
            label(server),
            2.0 * r1 / (r0 + r2),
            kept,
            opened.as_secs_f64(),
            if refused > 0 { format!(", {refused} failed: {}", first_error.unwrap_or_default()) } else { String::new() },
            base.stalled + loaded.stalled + again.stalled,
            base.errors + loaded.errors + again.errors,
            base.wrong + loaded.wrong + again.wrong,
            base.slowest.max(loaded.slowest).max(again.slowest).as_secs_f64() * 1000.0,
        ),
        if warnings.is_empty() { String::new() } else { format!("  {} log: {}", label(server), warnings.join(" // ")) },
    ]
}

fn pipeline(server: Server, extra: &str, requests: usize) -> Vec<String> {
    let s = setup(server, extra);
    let mut other = session(&s.socket, &s.table).expect("other client");
    let mut buf = Vec::new();
    other.write_all(&lookup_request(&s.table, &key(1))).expect("warm");
    read_list(&mut other, &mut buf).expect("warm");
    let (_, rss0, _) = serving(&s.inst);
    let request = lookup_request(&s.table, &key(3));
    let mut flood = session(&s.socket, &s.table).expect("flood client");
    // A server that neither reads nor closes: given up on after this long.
    let give_up = Duration::from_secs(env_or("PM_LOAD_PIPELINE_WAIT", 30));
    flood.set_write_timeout(Some(give_up)).expect("timeout");
    let peak = AtomicU64::new(rss0);
    let t0 = Instant::now();
    let done = AtomicBool::new(false);
    let (sent, outcome, slowest, others) = std::thread::scope(|scope| {
        let writer = {
            let mut w = flood.try_clone().expect("clone");
            let (request, done) = (&request, &done);
            scope.spawn(move || {
                let mut sent = 0usize;
                let mut outcome = "all written".to_string();
                for _ in 0..requests {
                    if let Err(e) = w.write_all(request) {
                        outcome = match e.kind() {
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                                format!("stalled: server stopped reading ({} s write timeout)", give_up.as_secs())
                            }
                            _ => format!("closed by the server after {:.1} s ({e})", t0.elapsed().as_secs_f64()),
                        };
                        break;
                    }
                    sent += 1;
                }
                done.store(true, Relaxed);
                (sent, outcome)
            })
        };
        let mut slowest = Duration::ZERO;
        let mut others = 0u64;
        let mut i = 0;
        while !done.load(Relaxed) {
            peak.fetch_max(serving(&s.inst).1, Relaxed);
            let t = Instant::now();
            // Another client, as a new connection (as the next smtpd would).
            let ok = session(&s.socket, &s.table).and_then(|mut c| {
                c.write_all(&lookup_request(&s.table, &key(i % KEYS)))?;
                read_list(&mut c, &mut buf)
            });
            slowest = slowest.max(t.elapsed());
            others += u64::from(ok.is_ok());
            i += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        let (sent, outcome) = writer.join().expect("writer");
        (sent, outcome, slowest, others)
    });
    let peak = peak.load(Relaxed).max(serving(&s.inst).1);
    flood.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
    let mut replies = Vec::new();
    let _ = flood.read_to_end(&mut replies);
    let one = common::list(&[("status", "0"), ("value", "OK value 3")]);
    let n_replies = replies.len() / one.len();
    let log = s.inst.log();
    let line = log.lines().find(|l| l.contains("/proxymap[") && l.contains("warning")).unwrap_or("-");
    vec![format!(
        "| {} | {sent} ({:.1} MB) | {outcome} | {n_replies} | {rss0} -> {peak} | {others} lookups, slowest {:.0} ms | `{}` |",
        label(server),
        (sent * request.len()) as f64 / 1e6,
        slowest.as_secs_f64() * 1000.0,
        line.split_once("]: ").map_or(line, |(_, m)| m),
    )]
}

fn soak(server: Server, extra: &str, secs: u64, every: u64, conns: usize) {
    // Processes live for the whole run (no recycling hides a leak).
    let s = setup(server, &format!("max_use = 1000000\nmax_idle = 3600\n{extra}"));
    println!("\n{}: {conns} persistent clients for {secs} s, sampled every {every} s", label(server));
    println!("| t s | lookups/s | processes | RSS KiB | descriptors |");
    println!("|---:|---:|---:|---:|---:|");
    let mut series = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs() < secs {
        let (b, t) = busy_load(&s.socket, &s.table, conns, every as f64);
        let (p, rss, fd) = serving(&s.inst);
        let at = start.elapsed().as_secs();
        println!(
            "| {at} | {:.0} | {p} | {rss} | {fd} |{}",
            b.lookups as f64 / t,
            if b.errors + b.wrong > 0 { format!(" {} errors, {} wrong", b.errors, b.wrong) } else { String::new() }
        );
        series.push((rss, fd));
    }
    let (first, last) = (series[0], series[series.len() - 1]);
    let max_rss = series.iter().map(|s| s.0).max().unwrap_or(0);
    let max_fd = series.iter().map(|s| s.1).max().unwrap_or(0);
    println!(
        "{}: RSS first {} / last {} / max {} KiB; descriptors first {} / last {} / max {}",
        label(server),
        first.0,
        last.0,
        max_rss,
        first.1,
        last.1,
        max_fd
    );
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("load: skipped (run `cargo bench --bench load`)");
        return;
    }
    // Room for 10,000 idle connections and the servers' own (master(8)
    // and its children inherit the limit).
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    let modes = env_list("PM_LOAD_MODES", "idle,pipeline");
    let servers: Vec<Server> = env_list("PM_LOAD_SERVERS", "postfix,ours")
        .iter()
        .map(|s| match s.as_str() {
            "postfix" => Server::Postfix,
            "ours" => Server::Ours,
            other => panic!("PM_LOAD_SERVERS: unknown server {other:?}"),
        })
        .collect();
    let extra = std::env::var("PM_LOAD_MAIN_CF").unwrap_or_default();
    let n_idle = env_or("PM_LOAD_IDLE", 10_000);
    let busy = env_or("PM_LOAD_BUSY", 64);
    let secs = env_or("PM_LOAD_SECS", 5.0);
    println!(
        "RLIMIT_NOFILE {hard}; load average {}",
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().trim()
    );
    if modes.iter().any(|m| m == "idle") {
        println!("\n{busy} busy clients (persistent, hash table), {secs} s each, without and with {n_idle} idle connections:\n");
        println!("| server | lookups/s, 0 idle | with idle | 0 idle again | ratio (with / mean of 0 idle) | before: processes / RSS KiB / fds | with idle | KiB per idle conn | idle open | idle dropped | stalled (>= 5 s) / errors / wrong / slowest |");
        println!("|---|---:|---:|---:|---:|---|---|---:|---|---:|---|");
        for &server in &servers {
            for line in idle(server, &extra, n_idle, busy, secs) {
                if !line.is_empty() {
                    println!("{line}");
                }
            }
        }
    }
    if modes.iter().any(|m| m == "pipeline") {
        let n = env_or("PM_LOAD_PIPELINE", 200_000);
        println!("\nOne client writes {n} lookups without reading; another client meanwhile:\n");
        println!("| server | requests written | outcome | replies read after | RSS KiB before -> peak | other client | log |");
        println!("|---|---|---|---:|---|---|---|");
        for &server in &servers {
            for line in pipeline(server, &extra, n) {
                println!("{line}");
            }
        }
    }
    if modes.iter().any(|m| m == "soak") {
        let secs = env_or("PM_SOAK_SECS", 3600);
        let every = env_or("PM_SOAK_EVERY", 10);
        let conns = env_or("PM_SOAK_CONNS", 16);
        for &server in &servers {
            soak(server, &extra, secs, every, conns);
        }
    }
}
