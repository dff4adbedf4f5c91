//! Memory exhaustion (issue #19, item 4): a worker whose address space is
//! limited (`prlimit --as`, as a container's memory limit or an exhausted
//! machine would) asked to open a table that does not fit. Postfix's
//! mymalloc() ends the process with `fatal: ... insufficient memory` and its
//! master starts another, which fails the same way at the next lookup. Ours
//! answers RETRY with one `error:` line (the read of the file, or the room
//! for its entries taken at once before it is built, fails as an error
//! rather than an abort), keeps serving its other tables and clients, and opens the
//! table once memory is back: the failure is the process's, not the
//! table's, so it is not remembered.

mod common;

use common::*;
use std::time::Duration;

const TOML: &str = r#"
config_directory = "@DIR@"
socket_directory = "@DIR@/private"
max_use = 0
[proxymap]
workers = 1
[proxywrite]
workers = 1
"#;

const MAIN_CF: &str = "
demo = @DIR@
proxy_read_maps = proxy:texthash:$demo/big proxy:texthash:$demo/small
";

/// Set `pid`'s soft address-space limit (the hard one stays unlimited, so
/// that it can be lifted again).
fn limit_address_space(pid: i32, soft: Option<u64>) {
    let soft = soft.map_or("unlimited".to_owned(), |b| b.to_string());
    let st = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--as={soft}:unlimited"))
        .status()
        .expect("prlimit (util-linux)");
    assert!(st.success(), "prlimit failed");
}

#[test]
fn a_table_that_does_not_fit_in_memory_is_retry_and_opens_once_memory_is_back() {
    let d = Daemon::start("memlimit", TOML, MAIN_CF);
    // 48 MB of source: reading it needs more than the limit leaves.
    let big: String = (0..400_000).map(|i| format!("key{i} value{i}-{}\n", "x".repeat(100))).collect();
    d.dir.write("big", big);
    d.dir.write("small", "k v\n");
    let (big, small) =
        (format!("texthash:{}/big", d.dir.path().display()), format!("texthash:{}/small", d.dir.path().display()));
    let is_reader =
        |p: &i32| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "pm-proxymap");
    assert!(wait_until(10, || d.workers().iter().any(is_reader)));
    let worker = d.workers().into_iter().find(is_reader).expect("a proxymap worker");
    let mut c = Raw::connect(&d.socket("proxymap"));
    c.stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    assert_eq!(c.call(&lookup(&small, "k")), found("v"));

    // 20 MiB more than the worker has mapped now.
    limit_address_space(worker, Some((proc_status_kib(worker, "VmSize:").expect("VmSize") + 20 * 1024) * 1024));
    let retry = list(&[("status", "2"), ("value", "")]);
    assert_eq!(c.call(&lookup(&big, "key7")), retry, "a table that does not fit: RETRY");
    assert_eq!(c.call(&lookup(&big, "key8")), retry);
    assert_eq!(c.call(&lookup(&small, "k")), found("v"), "other tables are served");
    let mut other = Raw::connect(&d.socket("proxymap"));
    other.stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    assert_eq!(other.call(&lookup(&small, "k")), found("v"), "and new clients");
    let log = d.log();
    // Reading the file, or the room for its entries, failed.
    let (read, room) = (
        format!("error: read {}/big: out of memory", d.dir.path().display()),
        format!("error: open database {}/big: Cannot allocate memory", d.dir.path().display()),
    );
    assert_eq!(log.matches("]: error: ").count(), 1, "one error line:\n{log}");
    assert!(log.contains(&read) || log.contains(&room), "{log}");

    // Memory back: the open is tried again a second after it failed.
    limit_address_space(worker, None);
    std::thread::sleep(Duration::from_millis(1100));
    let _ = Raw::connect(&d.socket("proxymap")); // the retry is due at an accept
    let value = format!("value7-{}", "x".repeat(100));
    assert!(wait_until(5, || c.call(&lookup(&big, "key7")) == found(&value)), "still not served");
    assert!(d.workers().contains(&worker), "the worker was replaced");
}
