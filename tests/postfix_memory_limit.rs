//! Memory exhaustion under Postfix's master(8), Postfix's proxymap beside
//! ours (see tests/memory_limit.rs for ours in standalone mode): the
//! proxymap process that serves a client gets an address-space limit of
//! 20 MiB more than it has mapped, then that client asks for a `texthash:`
//! table of 48 MB and then for a small one. Postfix's process ends with
//! `fatal: ... insufficient memory` and the client loses its connection;
//! ours answers RETRY, serves the small table, and stays.

mod common;

use common::postfix::{Instance, Server};
use common::*;
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn ask(s: &mut UnixStream, table: &str, key: &str) -> String {
    if std::io::Write::write_all(s, &list(&lookup(table, key))).is_err() {
        return "(closed)".into();
    }
    read_list_or_none(s).map_or("(closed)".into(), |r| {
        let text = String::from_utf8_lossy(&r).replace('\0', "|");
        text.chars().take(30).collect()
    })
}

struct Outcome {
    big: String,
    small_after: String,
    process_alive: bool,
    fatal_lines: usize,
    error_lines: usize,
    /// What master(8) logged about the process.
    master_says: String,
}

fn run(server: Server) -> Outcome {
    let main_cf = "proxy_read_maps = proxy:texthash:@TABLES@/big proxy:texthash:@TABLES@/small\n";
    let mut inst = Instance::new("memlimit", main_cf, server);
    let big: String = (0..400_000).map(|i| format!("key{i} value{i}-{}\n", "x".repeat(100))).collect();
    std::fs::write(inst.tables.join("big"), big).expect("big");
    std::fs::write(inst.tables.join("small"), "k v\n").expect("small");
    inst.start();
    let (big, small) =
        (format!("texthash:{}/big", inst.tables.display()), format!("texthash:{}/small", inst.tables.display()));
    let mut c = UnixStream::connect(inst.socket("proxymap")).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    read_list_or_none(&mut c).expect("announcement");
    assert_eq!(ask(&mut c, &small, "k"), "status|0|value|v||");
    // The one proxymap process master(8) started is the one serving us.
    let master = inst.master_pid().expect("master pid");
    let is_proxymap = |p: &i32| {
        std::fs::read_to_string(format!("/proc/{p}/cmdline")).is_ok_and(|c| c.split('\0').any(|a| a == "proxymap"))
    };
    let procs: Vec<i32> = children_of(master).into_iter().filter(is_proxymap).collect();
    assert_eq!(procs.len(), 1, "proxymap processes: {procs:?}");
    let pid = procs[0];
    let limit = (proc_status_kib(pid, "VmSize:").expect("VmSize") + 20 * 1024) * 1024;
    // As the process's own user: prlimit(2) on another user's process takes
    // CAP_SYS_RESOURCE, which a container's root may lack.
    let st = std::process::Command::new("setpriv")
        .args(["--reuid=postfix", "--regid=postfix", "--clear-groups", "prlimit"])
        .arg(format!("--pid={pid}"))
        .arg(format!("--as={limit}:unlimited"))
        .status()
        .expect("prlimit");
    assert!(st.success());
    let mark = inst.log().len();
    let big = ask(&mut c, &big, "key7");
    let small_after = ask(&mut c, &small, "k");
    std::thread::sleep(Duration::from_millis(300));
    let log = inst.log()[mark..].to_string();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(" postfix/proxymap[")).collect();
    let count = |what: &str| lines.iter().filter(|l| l.contains(what)).count();
    Outcome {
        big,
        small_after,
        process_alive: std::path::Path::new(&format!("/proc/{pid}")).exists(),
        fatal_lines: count("]: fatal: "),
        error_lines: count("]: error: "),
        master_says: log
            .lines()
            .filter(|l| l.contains("postfix/master[") && l.contains(&format!("pid {pid} ")))
            .map(|l| l.split_once("]: ").map_or(l, |(_, m)| m).to_owned())
            .collect::<Vec<_>>()
            .join("; "),
    }
}

#[test]
fn a_table_too_big_for_the_memory_left_is_retry_where_postfix_loses_the_process() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: needs root (a private Postfix instance)");
        return;
    }
    for server in [Server::Postfix, Server::Ours] {
        let o = run(server);
        eprintln!(
            "{server:?}: big table {}; small table after {}; process alive {}; fatal lines {}, error lines {}; master(8): {}",
            o.big, o.small_after, o.process_alive, o.fatal_lines, o.error_lines, o.master_says
        );
        if server == Server::Ours {
            assert_eq!(o.big, "status|2|value|||");
            assert_eq!(o.small_after, "status|0|value|v||");
            assert!(o.process_alive);
            assert_eq!((o.fatal_lines, o.error_lines), (0, 1));
        }
    }
}
