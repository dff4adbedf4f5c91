//! Tables replaced, truncated and made unreadable under lookup load, with
//! Postfix 3.7's proxymap and with ours in a private instance: 4 clients
//! look keys up without pause (each reconnects every 50 lookups, as
//! Postfix's clients come and go) while the table is replaced by rename 10
//! times (postmap into a temp directory, then rename), truncated in place,
//! replaced by a file of mode 000 (unreadable to proxymap's user) and then
//! given mode 0644 again.
//!
//! Every value of every generation is `g<N>`: an answer is right when it is
//! a generation that was written, wrong otherwise (another value, NOKEY for
//! a key that every generation has, a malformed reply). A request without
//! an answer is lost. For ours: no wrong answer, no request lost, RETRY only
//! while the file is truncated or unreadable, at most one `error:` line per
//! fault episode and process, and the last generation served at the end.
//! Figures for both (`--nocapture`). On demand (about 4 minutes):
//! `cargo test --release --features postfix-tests --test postfix_table_faults -- --ignored --nocapture --test-threads 1`
//! (`PM_FAULTS_OURS_ONLY=1` skips Postfix's runs; `PM_SHOW_LOG=1` prints
//! proxymap's log lines). The truncation is made without Postfix's lock,
//! so an LMDB reader may touch a page past the new end of its map: SIGBUS,
//! which Postfix's proxymap dies of; ours answers RETRY (`sys/map_guard.rs`).

mod common;

use common::postfix::{Instance, Server};
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 4;
const KEYS: usize = 20;
const REPLACES: u32 = 10;

#[derive(Default, Debug)]
struct Figures {
    lookups: AtomicU64,
    right: AtomicU64,
    retry: AtomicU64,
    wrong: AtomicU64,
    lost: AtomicU64,
    first_wrong: std::sync::Mutex<Option<String>>,
}

fn source(generation: u32) -> String {
    (0..KEYS).map(|k| format!("key{k} g{generation}\n")).collect()
}

fn extension(kind: &str) -> &str {
    if kind == "hash" {
        "db"
    } else {
        kind
    }
}

/// Build generation `g` in `scratch` and rename it over the table's file.
fn replace(inst: &Instance, kind: &str, scratch: &Path, g: u32, mode: u32) {
    let tmp = scratch.join("t");
    std::fs::write(&tmp, source(g)).expect("source");
    let out = inst.postmap(&[&format!("{kind}:{}", tmp.display())]);
    assert!(out.status.success(), "postmap: {}", String::from_utf8_lossy(&out.stderr));
    let ext = extension(kind);
    let built = scratch.join(format!("t.{ext}"));
    std::fs::set_permissions(&built, std::fs::Permissions::from_mode(mode)).expect("chmod");
    std::fs::rename(&built, inst.tables.join(format!("t.{ext}"))).expect("rename");
}

fn client(inst: &Instance, table: &str, seen: &AtomicU32, stop: &AtomicBool, f: &Figures, id: usize) {
    let mut n = id;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = UnixStream::connect(inst.socket("proxymap")) else {
            f.lost.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        if read_list_or_none(&mut s).is_none() {
            f.lost.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        for _ in 0..50 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            n += 1;
            let key = format!("key{}", n % KEYS);
            let req = list(&[("request", "lookup"), ("table", table), ("flags", "16384"), ("key", &key)]);
            f.lookups.fetch_add(1, Ordering::Relaxed);
            if std::io::Write::write_all(&mut s, &req).is_err() {
                f.lost.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let Some(r) = read_list_or_none(&mut s) else {
                f.lost.fetch_add(1, Ordering::Relaxed);
                break;
            };
            let text = String::from_utf8_lossy(&r).into_owned();
            let fields: Vec<&str> = text.split('\0').collect();
            let ok = match fields.as_slice() {
                ["status", "0", "value", v, "", ""] => v
                    .strip_prefix('g')
                    .and_then(|g| g.parse::<u32>().ok())
                    .is_some_and(|g| (1..=seen.load(Ordering::SeqCst)).contains(&g)),
                ["status", "2", ..] => {
                    f.retry.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                _ => false,
            };
            if ok {
                f.right.fetch_add(1, Ordering::Relaxed);
            } else {
                f.wrong.fetch_add(1, Ordering::Relaxed);
                f.first_wrong.lock().unwrap().get_or_insert(format!("{key}: {text:?}"));
            }
        }
    }
}

struct Run {
    figures: Figures,
    faults: u32,
    /// `error:` lines of proxymap processes.
    errors: usize,
    /// proxymap processes that logged.
    processes: usize,
    /// Status of a lookup after the last fault was fixed (answered g<last>).
    last_answer: String,
    /// RETRY answers while no fault was on.
    retry_without_fault: u64,
}

fn run(server: Server, kind: &str) -> Run {
    let main_cf = format!("proxy_read_maps = proxy:{kind}:@TABLES@/t\n");
    let mut inst = Instance::new(&format!("tfault-{kind}"), &main_cf, server);
    let scratch = inst.dir.path().join("scratch");
    std::fs::create_dir_all(&scratch).expect("mkdir");
    replace(&inst, kind, &scratch, 1, 0o644);
    inst.start();
    let table = format!("{kind}:{}/t", inst.tables.display());
    let file = inst.tables.join(format!("t.{}", extension(kind)));
    let seen = AtomicU32::new(1);
    let (stop, figures) = (AtomicBool::new(false), Figures::default());
    let mark = inst.log().len();
    let mut faults = 0;
    let mut retry_without_fault = 0;
    std::thread::scope(|s| {
        for id in 0..CLIENTS {
            let (inst, table, seen, stop, figures) = (&inst, &table, &seen, &stop, &figures);
            s.spawn(move || client(inst, table, seen, stop, figures, id));
        }
        let pause = || std::thread::sleep(Duration::from_millis(200));
        let quiet = |f: &Figures| f.retry.load(Ordering::Relaxed);
        let mut g = 1;
        // Replaced by rename, again and again: never a RETRY.
        for _ in 0..REPLACES {
            let before = quiet(&figures);
            pause();
            g += 1;
            // Announced before the rename: a lookup may see it at once.
            seen.store(g, Ordering::SeqCst);
            replace(&inst, kind, &scratch, g, 0o644);
            faults += 1;
            pause();
            retry_without_fault += quiet(&figures) - before;
        }
        // Truncated in place, then a good file again.
        std::fs::OpenOptions::new().write(true).open(&file).and_then(|f| f.set_len(0)).expect("truncate");
        faults += 1;
        std::thread::sleep(Duration::from_millis(1500));
        g += 1;
        seen.store(g, Ordering::SeqCst);
        replace(&inst, kind, &scratch, g, 0o644);
        std::thread::sleep(Duration::from_millis(1500));
        // Replaced by a file proxymap may not read, then readable again.
        g += 1;
        seen.store(g, Ordering::SeqCst);
        replace(&inst, kind, &scratch, g, 0o000);
        faults += 1;
        std::thread::sleep(Duration::from_millis(1500));
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        std::thread::sleep(Duration::from_millis(2500));
        let before = quiet(&figures);
        std::thread::sleep(Duration::from_millis(500));
        retry_without_fault += quiet(&figures) - before;
        stop.store(true, Ordering::Relaxed);
    });
    let last_answer = match UnixStream::connect(inst.socket("proxymap")) {
        Ok(mut s) => {
            s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            let _ = read_list_or_none(&mut s);
            let _ = std::io::Write::write_all(&mut s, &list(&lookup(&table, "key1")));
            read_list_or_none(&mut s).map_or("(no answer)".into(), |r| String::from_utf8_lossy(&r).replace('\0', "|"))
        }
        Err(e) => format!("(connect: {e})"),
    };
    std::thread::sleep(Duration::from_millis(500));
    let log = inst.log()[mark..].to_string();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" postfix/proxymap[")).collect();
    let errors = lines.iter().filter(|l| l.contains("]: error:")).count();
    let mut pids: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once("proxymap[").and_then(|(_, r)| r.split_once(']')).map(|p| p.0))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    if std::env::var_os("PM_SHOW_LOG").is_some() {
        let shown: Vec<&&str> = lines.iter().filter(|l| !l.contains("has changed")).collect();
        eprintln!("{shown:#?}");
    }
    Run { figures, faults, errors, processes: pids.len(), last_answer, retry_without_fault }
}

fn show(name: &str, r: &Run) -> String {
    let f = &r.figures;
    let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
    format!(
        "{name:12} lookups {:6}  right {:6}  RETRY {:5} (outside faults {})  wrong {}  lost {}  faults {}  error lines {} from {} processes  after: {}{}",
        g(&f.lookups),
        g(&f.right),
        g(&f.retry),
        r.retry_without_fault,
        g(&f.wrong),
        g(&f.lost),
        r.faults,
        r.errors,
        r.processes,
        r.last_answer,
        f.first_wrong.lock().unwrap().as_ref().map(|w| format!("  first wrong: {w}")).unwrap_or_default()
    )
}

fn compare(kind: &str) {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root (a private Postfix instance)");
        return;
    }
    let started = Instant::now();
    // PM_FAULTS_OURS_ONLY=1 skips Postfix's run (for working on ours).
    if std::env::var_os("PM_FAULTS_OURS_ONLY").is_none() {
        eprintln!("{kind}:\n  {}", show("Postfix 3.7", &run(Server::Postfix, kind)));
    }
    let ours = run(Server::Ours, kind);
    eprintln!("{kind}:\n  {}  ({:.0?})", show("ours", &ours), started.elapsed());
    let f = &ours.figures;
    assert_eq!(f.wrong.load(Ordering::Relaxed), 0, "{}", show("ours", &ours));
    assert_eq!(f.lost.load(Ordering::Relaxed), 0, "{}", show("ours", &ours));
    assert!(f.lookups.load(Ordering::Relaxed) > 1000, "{}", show("ours", &ours));
    assert_eq!(ours.retry_without_fault, 0, "{}", show("ours", &ours));
    let last = REPLACES + 3;
    assert!(ours.last_answer.starts_with(&format!("status|0|value|g{last}|")), "{}", show("ours", &ours));
    // At most one error line per fault episode (truncated, unreadable) and process.
    assert!(ours.errors <= 2 * ours.processes.max(1), "{}", show("ours", &ours));
}

#[test]
#[ignore = "on demand, about 80 s with Postfix's run: see the module comment"]
fn hash_table_replaced_truncated_and_unreadable_under_load() {
    compare("hash");
}

#[test]
#[ignore = "on demand, about 80 s with Postfix's run: see the module comment"]
fn lmdb_table_replaced_truncated_and_unreadable_under_load() {
    compare("lmdb");
}

#[test]
#[ignore = "on demand, about 80 s with Postfix's run: see the module comment"]
fn cdb_table_replaced_truncated_and_unreadable_under_load() {
    compare("cdb");
}
