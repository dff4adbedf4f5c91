//! `memcache:` tables, ours against Postfix's (built into Postfix itself),
//! on a memcached of the test's own (src/dict/net/test_memcached.rs).
//!
//! Lookups: the same `.cf` files and keys asked with `postmap -q KEY
//! memcache:CF` (Postfix's code, in process) and `postmap -q KEY
//! proxy:memcache:CF` (our proxymap in a private instance): answers, exit
//! codes and the tables' warnings must be identical. Deletes likewise with
//! `postmap -d`. Updates have no command-line client (`postmap -i` refuses
//! memcache: and proxy:), so the same raw proxywrite requests go to a
//! private instance running Postfix's proxywrite and to one running ours:
//! the reply bytes, the warnings and what memcached holds afterwards must
//! be identical.
//!
//! Where we differ on purpose (docs/compatibility.md), the test says so
//! and asserts ours: a memcached that is down is logged once per outage
//! by our pool, not at every lookup.

mod common;

#[path = "../src/dict/net/test_memcached.rs"]
mod memcached;

use common::mapdiff::{assert_same_warnings, compare, proxymap_lines, query, settled_log, write_settled};
use common::postfix::{Instance, Server};
use common::{list, Raw};
use memcached::Memcached;

/// What memcached holds before every comparison.
const SEED: &[(&str, &str)] = &[
    ("alice@example.com", "alice-value"),
    ("user:bob", "bob-value"),
    ("example.com-com", "domain value"),
    ("bob@other.org", "other"),
    ("big", "0123456789012345678901234567890123456789"),
    ("with%percent", "percent"),
    ("x@example.com", "ex"),
];

/// `.cf` files (name, text after the `memcache` line).
const TABLES: &[(&str, &str)] = &[
    ("basic.cf", ""),
    ("format.cf", "key_format = user:%u\n"),
    ("format-domain.cf", "key_format = %d-%1\n"),
    ("domain.cf", "domain = example.com\n"),
    ("data.cf", "data_size_limit = 20\n"),
    ("line.cf", "line_size_limit = 12\n"),
    ("once.cf", "data_size_limit = 20\nmax_try = 1\n"),
    ("backup.cf", "backup = texthash:@TABLES@/backup.txt\n"),
];

const KEYS: &[&str] = &[
    "alice@example.com",
    "ALICE@Example.COM",
    "nobody@example.com",
    "bob",
    "bob@anywhere.org",
    "bob@other.org",
    "x@example.com",
    "big",
    "with%percent",
    "persistent@example.com",
    "a b",
    "tab\there",
    "user@",
    "@example.com",
    "example.com",
    "",
];

/// Tables written through proxywrite (and by postmap -d).
const WTABLES: &[(&str, &str)] = &[
    ("w.cf", "ttl = 600\nflags = 5\n"),
    ("wdata.cf", "data_size_limit = 20\n"),
    ("wbackup.cf", "backup = hash:@WTABLES@/backup\n"),
];

fn main_cf(t: &str) -> String {
    let read: Vec<String> = TABLES.iter().map(|(n, _)| format!("proxy:memcache:{t}/{n}")).collect();
    let write: Vec<String> = WTABLES.iter().map(|(n, _)| format!("proxy:memcache:{t}/{n}")).collect();
    format!("proxy_read_maps = {} {}\nproxy_write_maps = {}\n", read.join(" "), write.join(" "), write.join(" "))
}

fn seed(mc: &Memcached) {
    assert_eq!(mc.raw(b"flush_all\r\n"), b"OK\r\n");
    for (k, v) in SEED {
        mc.put(k, v);
    }
}

fn write_tables(inst: &Instance, mc: &Memcached) {
    let t = inst.tables.display().to_string();
    for (name, rest) in TABLES.iter().chain(WTABLES) {
        let rest = rest.replace("@TABLES@", &t).replace("@WTABLES@", &inst.wtables.display().to_string());
        let text = format!("memcache = {}\n{rest}", mc.service());
        write_settled(&inst.tables.join(name), &text);
    }
    std::fs::write(inst.tables.join("backup.txt"), "persistent@example.com from the backup\nbig small\n")
        .expect("backup");
}

#[test]
fn memcache_lookups_and_deletes_answer_as_postfix_in_process() {
    let Some(mc) = Memcached::start("pf-memcache") else { return };
    let mut inst = Instance::new("memcache", &main_cf("@TABLES@"), Server::Ours);
    write_tables(&inst, &mc);
    inst.start();
    let t = inst.tables.display().to_string();

    seed(&mc);
    let tables: Vec<String> = TABLES.iter().map(|(n, _)| format!("memcache:{t}/{n}")).collect();
    let found = compare(&inst, &tables, KEYS);
    assert!(found.hits >= 12, "only {} hits: is memcached there?", found.hits);
    // the backup's hit went back into memcached (Postfix's first, ours the same)
    assert_eq!(mc.value("persistent@example.com").as_deref(), Some("from the backup"));
    assert!(
        found.theirs_warnings.iter().any(|w| w.contains("unexpected memcache server reply: VALUE big 0 40")),
        "{:?}",
        found.theirs_warnings
    );
    // keys memcached itself refuses (too long) or that 3.7 sends as they are
    let long = format!("{}@example.com", "l".repeat(300));
    let odd = compare(&inst, &[format!("memcache:{t}/basic.cf")], &[&long, "ctl\u{1}key", "caf\u{e9}@example.com"]);
    assert!(
        odd.theirs_warnings.iter().any(|w| w.contains("unexpected memcache server reply: CLIENT_ERROR")),
        "{:?}",
        odd.theirs_warnings
    );
    let mut found = found;
    found.theirs_warnings.extend(odd.theirs_warnings);
    assert_same_warnings(&inst, &found, 3);

    // Deletes: postmap -d, Postfix's direct against ours through proxywrite.
    let w = format!("memcache:{t}/w.cf");
    let deletes = ["alice@example.com", "alice@example.com", "ALICE@EXAMPLE.COM", "nobody", "a b", "big"];
    let run = |table: &str| -> (Vec<String>, Vec<Option<String>>) {
        seed(&mc);
        let outcomes = deletes.iter().map(|k| delete(&inst, k, table)).collect();
        (outcomes, SEED.iter().map(|(k, _)| mc.value(k)).collect())
    };
    let theirs = run(&w);
    let ours = run(&format!("proxy:{w}"));
    assert_eq!(theirs, ours);
    assert!(theirs.0[0].starts_with("exit=Some(0)"), "{:?}", theirs.0);
    assert!(theirs.0[1].starts_with("exit=Some(1)"), "{:?}", theirs.0);
    assert_eq!(theirs.1[0], None, "deleted");
}

/// `postmap -d KEY TABLE`: exit code, stdout and stderr (with `proxy:`
/// taken out).
fn delete(inst: &Instance, key: &str, table: &str) -> String {
    let out = inst.postmap(&["-d", key, table]);
    format!(
        "exit={:?} stdout={:?} stderr={:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr).replace("proxy:", "")
    )
}

/// One raw proxywrite exchange per request.
fn exchange(inst: &Instance, requests: &[Vec<u8>]) -> Vec<String> {
    let mut c = Raw::connect(&inst.socket("proxywrite"));
    requests.iter().map(|r| String::from_utf8_lossy(&c.call_raw(r)).replace('\0', "|")).collect()
}

trait CallRaw {
    fn call_raw(&mut self, request: &[u8]) -> Vec<u8>;
}

impl CallRaw for Raw {
    fn call_raw(&mut self, request: &[u8]) -> Vec<u8> {
        self.send(request);
        self.read_lists(1)
    }
}

/// The warnings of an instance's proxywrite (it logs as proxymap).
fn proxywrite_warnings(inst: &Instance) -> Vec<String> {
    proxymap_lines(&settled_log(inst), "warning")
}

#[test]
fn memcache_updates_through_proxywrite_answer_as_postfix_proxywrite() {
    let Some(mc) = Memcached::start("pf-memcache-w") else { return };
    let mut ours = Instance::new("memcache-w", &main_cf("@TABLES@"), Server::Ours);
    write_tables(&ours, &mc);
    let t = ours.tables.display().to_string();
    // Postfix's proxywrite, with the very same .cf files (same names in messages)
    let mut theirs = Instance::new("memcache-wpf", &main_cf(&t), Server::Postfix);
    let w = format!("memcache:{t}/w.cf");
    let wdata = format!("memcache:{t}/wdata.cf");
    // DUP_REPLACE | SYNC_UPDATE | FOLD_FIX, as proxywrite's clients send
    let flags = "16768";
    let update = |table: &str, k: &str, v: &str| {
        list(&[("request", "update"), ("table", table), ("flags", flags), ("key", k), ("value", v)])
    };
    let delete = |table: &str, k: &str| list(&[("request", "delete"), ("table", table), ("flags", flags), ("key", k)]);
    let requests = vec![
        list(&[("request", "open"), ("table", &w), ("flags", flags)]),
        update(&w, "u1@example.com", "v1"),
        update(&w, "U1@Example.COM", "v2"),
        update(&w, "u2@example.com", ""),
        update(&w, "a b", "space"),
        update(&w, "", "empty"),
        update(&wdata, "long", "012345678901234567890"),
        update(&wdata, "short", "01234567890123456789"),
        delete(&w, "u2@example.com"),
        delete(&w, "u2@example.com"),
        delete(&w, "a b"),
        update(&w, "with%percent", "new"),
    ];
    let keys = ["u1@example.com", "u2@example.com", "long", "short", "with%percent", "alice@example.com"];
    let state = |mc: &Memcached| -> Vec<String> {
        keys.iter().map(|k| String::from_utf8_lossy(&mc.raw(format!("get {k}\r\n").as_bytes())).into_owned()).collect()
    };

    seed(&mc);
    theirs.start();
    let their_replies = exchange(&theirs, &requests);
    let their_state = state(&mc);
    let their_warnings = proxywrite_warnings(&theirs);
    theirs.stop();

    seed(&mc);
    ours.start();
    let our_replies = exchange(&ours, &requests);
    let our_state = state(&mc);
    let our_warnings = proxywrite_warnings(&ours);

    // Deliberate difference (docs/compatibility.md, as in postfix_diff.rs):
    // Postfix's open reply carries the request's bits too; 3.7 clients
    // keep only the IMPL bits, FIXED | MULTI_WRITER here.
    assert_eq!(their_replies[0], format!("status|0|flags|{}||", 262_160 + 16_768));
    assert_eq!(our_replies[0], "status|0|flags|262160||");
    assert_eq!(their_replies[1..], our_replies[1..]);
    assert_eq!(their_state, our_state);
    assert_eq!(their_warnings, our_warnings);
    assert!(our_state[0].starts_with("VALUE u1@example.com 5 2\r\nv2\r\n"), "{our_state:?}");
    assert!(our_warnings.iter().any(|w| w.contains("skipping update for name \"a b\"")), "{our_warnings:?}");
    assert!(our_warnings.iter().any(|w| w.contains("is too long (data_size_limit=20)")), "{our_warnings:?}");
}

#[test]
fn memcache_down_is_retry_as_in_postfix_and_logged_once_per_outage() {
    let Some(mut mc) = Memcached::start("pf-memcache-down") else { return };
    let mut inst = Instance::new("memcache-down", &main_cf("@TABLES@"), Server::Ours);
    write_tables(&inst, &mc);
    inst.start();
    let t = inst.tables.display().to_string();
    seed(&mc);
    let basic = format!("memcache:{t}/basic.cf");
    let backup = format!("memcache:{t}/backup.cf");
    let (theirs, _) = query(&inst, "alice@example.com", &basic);
    let (ours, _) = query(&inst, "alice@example.com", &format!("proxy:{basic}"));
    assert_eq!(theirs, ours);
    mc.kill();
    let server = mc.service().trim_start_matches("inet:").to_string();
    for _ in 0..3 {
        let (theirs, warnings) = query(&inst, "alice@example.com", &basic);
        assert_eq!(warnings, [format!("connect to {server}: Connection refused")]);
        let (ours, _) = query(&inst, "alice@example.com", &format!("proxy:{basic}"));
        assert_eq!(theirs, ours);
        assert!(ours.starts_with("exit=Some(1)"), "{ours}");
        // with a backup, the backup answers on both sides
        let (theirs, _) = query(&inst, "persistent@example.com", &backup);
        let (ours, _) = query(&inst, "persistent@example.com", &format!("proxy:{backup}"));
        assert_eq!(theirs, ours);
        assert!(ours.starts_with("exit=Some(0)"), "{ours}");
    }
    // On purpose: ours logs the outage once (Postfix: at every lookup).
    let log = settled_log(&inst);
    let down: Vec<&str> = log.lines().filter(|l| l.contains(" is down: connect to ")).collect();
    assert_eq!(down.len(), 1, "{log}");
    // Back at once after a restart.
    mc.restart();
    seed(&mc);
    let (ours, _) = query(&inst, "alice@example.com", &format!("proxy:{basic}"));
    assert!(ours.starts_with("exit=Some(0) stdout=\"alice-value\\n\""), "{ours}");
}

/// An empty `hash:` backup in `dir`, owned by the postfix user
/// (proxywrite writes it); built with `inst`'s postmap.
fn fresh_backup(inst: &Instance, dir: &std::path::Path) {
    let path = dir.join("backup");
    let _ = std::fs::remove_file(path.with_extension("db"));
    std::fs::write(&path, "").expect("backup source");
    let out = inst.postmap(&[&format!("hash:{}", path.display())]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let chown = std::process::Command::new("chown").arg("postfix:postfix").arg(path.with_extension("db")).status();
    assert!(chown.is_ok_and(|s| s.success()));
}

/// Send one request; the reply, or `(no reply)` when the server closed the
/// connection instead.
fn reply_or_eof(c: &mut Raw, request: &[u8]) -> String {
    use std::io::Read;
    c.send(request);
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    // a reply here is one list of short attributes: it ends in two NULs
    while !got.ends_with(b"\0\0") {
        match c.stream.read(&mut byte) {
            Ok(1) => got.push(byte[0]),
            _ => return "(no reply)".to_string(),
        }
    }
    String::from_utf8_lossy(&got).replace('\0', "|")
}

#[test]
fn memcache_backup_duplicate_kills_postfix_proxywrite_and_is_replaced_in_ours() {
    let Some(mc) = Memcached::start("pf-memcache-dup") else { return };
    let mut ours = Instance::new("memcache-dup", &main_cf("@TABLES@"), Server::Ours);
    write_tables(&ours, &mc);
    let t = ours.tables.display().to_string();
    let mut theirs = Instance::new("memcache-duppf", &main_cf(&t), Server::Postfix);
    let table = format!("memcache:{t}/wbackup.cf");
    let wtables = ours.wtables.clone();
    let update = |v: &str| {
        list(&[("request", "update"), ("table", &table), ("flags", "16768"), ("key", "k@example.com"), ("value", v)])
    };
    // the first request opens the table (and its backup) without DUP_REPLACE
    let open = list(&[("request", "open"), ("table", &table), ("flags", "0")]);
    let run = |inst: &mut Instance| -> Vec<String> {
        seed(&mc);
        fresh_backup(inst, &wtables);
        inst.start();
        let mut c = Raw::connect(&inst.socket("proxywrite"));
        let replies = [open.clone(), update("v1"), update("v2")].iter().map(|r| reply_or_eof(&mut c, r)).collect();
        replies
    };
    let their_replies = run(&mut theirs);
    theirs.stop();
    assert_eq!(their_replies[1..], ["status|0||", "(no reply)"], "{}", theirs.log());
    assert!(theirs.log().contains("duplicate entry: \"k@example.com\""), "{}", theirs.log());
    // On purpose (docs/compatibility.md): ours replaces the backup's value.
    let our_replies = run(&mut ours);
    assert_eq!(our_replies[1..], ["status|0||", "status|0||"]);
    assert_eq!(mc.value("k@example.com").as_deref(), Some("v2"));
    let backup = format!("hash:{}", ours.wtables.join("backup").display());
    let out = ours.postmap(&["-q", "k@example.com", &backup]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "v2\n");
}
