//! proxywrite's table on a file system that is read-only, or whose file
//! the writer may not write (permission denied), then fixed, as seen by a
//! client that stays connected (verify(8) does): the same requests to
//! Postfix 3.7's proxywrite and to ours under a private master(8).
//!
//! What must hold for ours: every update is RETRY while the fault lasts,
//! with one `error:` and one `warning:` line however many requests come
//! (not one per request); once the file system is writable or the
//! permission is back, updates succeed on the same connection without a
//! restart; every acknowledged update is in the file, which `postmap -s`
//! reads. Postfix's outcome is printed beside ours (`--nocapture`).
//!
//! Needs root (mount, chown); skipped with a message otherwise.

mod common;

use common::postfix::{Instance, Server};
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Requests sent while the fault lasts, and after it is fixed.
const DURING: usize = 20;
const AFTER: usize = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The table's file system mounted read-only.
    ReadOnlyFs,
    /// The table file owned by root, mode 0644: proxywrite (user postfix)
    /// may read it but not write it.
    PermissionDenied,
}

/// What one run saw.
#[derive(Debug)]
struct Outcome {
    /// Status of each update while the fault lasted.
    during: Vec<u32>,
    /// Status of each update on the same connection once it was fixed.
    after: Vec<u32>,
    /// Status of an update on a new connection once it was fixed.
    new_connection: u32,
    /// The log lines of proxywrite (its program name is proxymap) while the fault lasted.
    lines: Vec<String>,
    /// Keys acknowledged (status 0) that `postmap -s` does not list.
    lost: Vec<String>,
    /// `postmap -s` could read the file.
    readable: bool,
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

fn run(cmd: &mut Command) -> bool {
    cmd.status().is_ok_and(|s| s.success())
}

/// The status code of a reply (`status\0N\0...`).
fn status_of(reply: &[u8]) -> u32 {
    let text = String::from_utf8_lossy(reply);
    let mut parts = text.split('\0');
    assert_eq!(parts.next(), Some("status"), "reply {text:?}");
    parts.next().and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("reply {text:?}"))
}

fn update(c: &mut Raw, table: &str, key: &str) -> u32 {
    status_of(&c.call(&[("request", "update"), ("table", table), ("flags", "64"), ("key", key), ("value", "v")]))
}

fn proxymap_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once(" postfix/proxymap["))
        .filter_map(|(_, rest)| rest.split_once("]: ").map(|(_, text)| text.to_string()))
        .collect()
}

/// A tmpfs of the test's own under the instance's writable table
/// directory, unmounted when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn scenario(server: Server, fault: Fault, kind: &str) -> Outcome {
    let tag = format!("wfault-{kind}");
    let main_cf = format!("proxy_write_maps = proxy:{kind}:@WTABLES@/fs/t\n");
    let mut inst = Instance::new(&tag, &main_cf, server);
    let fs = inst.wtables.join("fs");
    std::fs::create_dir_all(&fs).expect("mkdir");
    let _mount = Mount(fs.clone());
    assert!(run(Command::new("mount").args(["-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs"]).arg(&fs)), "mount");
    let name = fs.join("t").display().to_string();
    let table = format!("{kind}:{name}");
    // The table as postmap builds it, owned by proxywrite's user.
    std::fs::write(&name, "seed v\n").expect("source");
    assert!(run(Command::new("postmap").arg("-c").arg(&inst.config).arg(&table)), "postmap");
    let file = PathBuf::from(format!("{name}.{}", if kind == "hash" { "db" } else { kind }));
    assert!(run(Command::new("chown").args(["-R", "postfix:postfix"]).arg(&fs)));
    let (break_it, fix_it): (Vec<&str>, Vec<&str>) = match fault {
        Fault::ReadOnlyFs => (vec!["mount", "-o", "remount,ro"], vec!["mount", "-o", "remount,rw"]),
        Fault::PermissionDenied => (vec!["chown", "root:root"], vec!["chown", "postfix:postfix"]),
    };
    let target: &Path = if fault == Fault::ReadOnlyFs { &fs } else { &file };
    assert!(run(Command::new(break_it[0]).args(&break_it[1..]).arg(target)), "{break_it:?}");

    inst.start();
    let mark = inst.log().len();
    let mut c = Raw::connect(&inst.socket("proxywrite"));
    let open = status_of(&c.call(&[("request", "open"), ("table", &table), ("flags", "64")]));
    assert_eq!(open, 0, "open");
    let during: Vec<u32> = (0..DURING).map(|i| update(&mut c, &table, &format!("during{i}"))).collect();
    std::thread::sleep(Duration::from_millis(500)); // postlogd writes the lines
    let lines = proxymap_lines(&inst.log()[mark..]);
    if std::env::var_os("PM_SHOW_LOG").is_some() {
        eprintln!("{}", inst.log());
    }

    assert!(run(Command::new(fix_it[0]).args(&fix_it[1..]).arg(target)), "{fix_it:?}");
    // Our stand-in tries the open again a second after it failed.
    std::thread::sleep(Duration::from_millis(1100));
    let after: Vec<u32> = (0..AFTER).map(|i| update(&mut c, &table, &format!("after{i}"))).collect();
    let mut c2 = Raw::connect(&inst.socket("proxywrite"));
    let new_connection = update(&mut c2, &table, "fresh");
    drop((c, c2));
    inst.stop();
    std::thread::sleep(Duration::from_millis(300));

    let listing =
        Command::new("postmap").arg("-c").arg(&inst.config).arg("-s").arg(&table).output().expect("postmap -s");
    let readable = listing.status.success();
    let listed = String::from_utf8_lossy(&listing.stdout).into_owned();
    let keys: Vec<String> = (0..DURING)
        .map(|i| (format!("during{i}"), during[i]))
        .chain((0..AFTER).map(|i| (format!("after{i}"), after[i])))
        .chain([("fresh".to_string(), new_connection)])
        .filter(|(_, s)| *s == 0)
        .map(|(k, _)| k)
        .collect();
    let lost = keys.into_iter().filter(|k| !listed.lines().any(|l| l.split_whitespace().next() == Some(k))).collect();
    Outcome { during, after, new_connection, lines, lost, readable }
}

fn summary(o: &Outcome) -> String {
    let count = |s: &[u32], code: u32| s.iter().filter(|&&x| x == code).count();
    format!(
        "during: {} RETRY / {} OK, {} log lines; after: {} OK of {} on the same connection, new connection status {}; lost {}; postmap -s {}",
        count(&o.during, 2),
        count(&o.during, 0),
        o.lines.len(),
        count(&o.after, 0),
        o.after.len(),
        o.new_connection,
        o.lost.len(),
        if o.readable { "reads it" } else { "fails" }
    )
}

fn compare(fault: Fault, kind: &str) {
    if !is_root() {
        eprintln!("skipped: {fault:?} needs root (mount, chown)");
        return;
    }
    let theirs = scenario(Server::Postfix, fault, kind);
    let ours = scenario(Server::Ours, fault, kind);
    eprintln!(
        "{fault:?} {kind}:\n  Postfix 3.7: {}\n    first line: {:?}\n  ours:        {}\n    first line: {:?}",
        summary(&theirs),
        theirs.lines.first(),
        summary(&ours),
        ours.lines.first()
    );
    // Postfix's status while the fault lasts is ours.
    assert_eq!(theirs.during, ours.during, "status while the fault lasts");
    assert!(ours.during.iter().all(|&s| s == 2), "{ours:?}");
    // One error line for the failed open and one warning, not one per request.
    let errors = ours.lines.iter().filter(|l| l.starts_with("error:")).count();
    let warnings = ours.lines.iter().filter(|l| l.starts_with("warning:")).count();
    assert_eq!((errors, warnings, ours.lines.len()), (1, 1, 2), "{:#?}", ours.lines);
    // Recovery without a restart, on the same connection and a new one.
    assert!(ours.after.iter().all(|&s| s == 0), "{ours:?}");
    assert_eq!(ours.new_connection, 0, "{ours:?}");
    assert!(ours.readable && ours.lost.is_empty(), "{ours:?}");
}

#[test]
fn proxywrite_on_a_read_only_file_system_is_retry_then_recovers_hash() {
    compare(Fault::ReadOnlyFs, "hash");
}

#[test]
fn proxywrite_on_a_read_only_file_system_is_retry_then_recovers_lmdb() {
    compare(Fault::ReadOnlyFs, "lmdb");
}

#[test]
fn proxywrite_denied_permission_is_retry_then_recovers_hash() {
    compare(Fault::PermissionDenied, "hash");
}

#[test]
fn proxywrite_denied_permission_is_retry_then_recovers_lmdb() {
    compare(Fault::PermissionDenied, "lmdb");
}
