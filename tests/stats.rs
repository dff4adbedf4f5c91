//! Statistics of the real daemon in standalone mode: `proxymap stats` after
//! known lookups (hits, misses, DENY, BAD), in both formats; a worker killed
//! with -9 loses no counts and its restart is counted.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use proxymap::client::{attr, Client};
use std::process::Command;

const TOML: &str = r#"
config_directory = "@DIR@"
socket_directory = "@DIR@/private"
[proxymap]
workers = 2
[proxywrite]
workers = 1
"#;

const MAIN_CF: &str = "
virtual_alias_maps = proxy:texthash:@DIR@/virtual
proxy_read_maps = $virtual_alias_maps proxy:static:hello
proxy_write_maps =
";

fn lookup(c: &mut Client, table: &str, key: &str) -> String {
    let reply = c
        .call(&[("request", b"lookup"), ("table", table.as_bytes()), ("flags", b"540737"), ("key", key.as_bytes())])
        .expect("reply");
    String::from_utf8_lossy(attr(&reply, "status").unwrap_or_default()).into_owned()
}

fn stats(d: &Daemon, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_proxymap"))
        .arg("stats")
        .arg("--config")
        .arg(&d.config)
        .args(args)
        .output()
        .expect("run proxymap stats");
    assert!(out.status.success(), "proxymap stats: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The numbers of a table row (name first, then the columns up to config).
fn row(text: &str, table: &str) -> Vec<String> {
    let line = text.lines().find(|l| l.trim_start().starts_with(&format!("{table} "))).unwrap_or_else(|| {
        panic!("no row for {table} in\n{text}");
    });
    line.split_whitespace().skip(1).take(8).map(str::to_string).collect()
}

fn service_line(text: &str, service: &str) -> String {
    text.lines().find(|l| l.starts_with(&format!("service {service}:"))).unwrap_or_default().to_string()
}

#[test]
fn stats_count_every_answer_across_workers_and_restarts() {
    let d = Daemon::start("stats", TOML, MAIN_CF);
    d.dir.write("virtual", "alice@example.com alice-value\n");
    d.wait_for_socket("proxywrite");
    let table = format!("texthash:{}/virtual", d.dir.path().display());
    assert!(wait_until(5, || d.workers().len() == 3), "workers: {:?}", d.workers());

    // Two clients: each worker may take one; the sums are what counts.
    let mut a = Client::connect(&d.socket("proxymap")).expect("connect");
    let mut b = Client::connect(&d.socket("proxymap")).expect("connect");
    for i in 0..5 {
        let c = if i % 2 == 0 { &mut a } else { &mut b };
        assert_eq!(lookup(c, &table, "alice@example.com"), "0", "hit");
    }
    for _ in 0..3 {
        assert_eq!(lookup(&mut b, &format!("proxy:{table}"), "nobody@example.com"), "1", "miss");
    }
    assert_eq!(lookup(&mut a, "hash:/etc/passwd", "root"), "4", "not in the allowlist: DENY");
    assert_eq!(lookup(&mut a, "hash:/etc/shadow", "root"), "4");
    assert_eq!(lookup(&mut a, "nocolon", "x"), "3", "no type: BAD");

    // The test harness's wait for the socket was a connection too.
    // (Tables open: one per worker that served the table, 1 or 2.)
    let want = "service proxymap: processes 2 alive, 2 started; connections 2 open, 3 total; tables open ";
    assert!(wait_until(5, || service_line(&stats(&d, &[]), "proxymap").starts_with(want)), "\n{}", stats(&d, &[]));
    let text = stats(&d, &[]);
    // requests lookups hits misses retry deny bad config
    assert_eq!(row(&text, &table), ["8", "8", "5", "3", "0", "0", "0", "0"], "\n{text}");
    assert_eq!(row(&text, "(unapproved)"), ["3", "3", "0", "0", "0", "2", "1", "0"], "\n{text}");
    assert!(service_line(&text, "proxywrite").starts_with("service proxywrite: processes 1 alive, 1 started"));

    let prom = stats(&d, &["--format", "prometheus", "--service", "proxymap"]);
    for want in [
        format!("proxymap_requests_total{{service=\"proxymap\",table=\"{table}\",request=\"lookup\",status=\"ok\"}} 5"),
        format!(
            "proxymap_requests_total{{service=\"proxymap\",table=\"{table}\",request=\"lookup\",status=\"noent\"}} 3"
        ),
        "proxymap_requests_total{service=\"proxymap\",table=\"(unapproved)\",request=\"lookup\",status=\"deny\"} 2"
            .to_string(),
        format!("proxymap_lookup_duration_seconds_count{{service=\"proxymap\",table=\"{table}\"}} 8"),
        format!("proxymap_lookup_duration_seconds_bucket{{service=\"proxymap\",table=\"{table}\",le=\"+Inf\"}} 8"),
        "proxymap_processes{service=\"proxymap\"} 2".to_string(),
        "proxymap_connections{service=\"proxymap\"} 2".to_string(),
    ] {
        assert!(prom.lines().any(|l| l == want), "missing {want} in\n{prom}");
    }
    assert!(!prom.contains("proxywrite"), "--service proxymap only\n{prom}");

    // Clients leave; a worker is killed: nothing counted is lost, the
    // restart is counted, the dead worker's gauges no longer are.
    drop((a, b));
    assert!(wait_until(5, || service_line(&stats(&d, &[]), "proxymap").contains("connections 0 open, 3 total")));
    let victim = d.workers()[0];
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill worker");
    assert!(wait_until(5, || {
        let now = d.workers();
        now.len() == 3 && !now.contains(&victim)
    }));
    assert!(wait_until(5, || service_line(&stats(&d, &[]), "proxymap").contains("processes 2 alive, 3 started")));
    let mut c = Client::connect(&d.socket("proxymap")).expect("connect");
    assert_eq!(lookup(&mut c, &table, "alice@example.com"), "0");
    let text = stats(&d, &[]);
    assert_eq!(row(&text, &table), ["9", "9", "6", "3", "0", "0", "0", "0"], "\n{text}");
}

#[test]
fn statistics_off_writes_no_file_and_stats_says_so() {
    let main_cf = format!("{MAIN_CF}proxymap_statistics = no\n");
    let d = Daemon::start("stats-off", TOML, &main_cf);
    let mut c = Client::connect(&d.socket("proxymap")).expect("connect");
    assert_eq!(lookup(&mut c, "static:hello", "k"), "0");
    assert!(!d.dir.path().join("proxymap-rs").exists(), "no statistics directory");
    let out = Command::new(env!("CARGO_BIN_EXE_proxymap"))
        .args(["stats", "--config"])
        .arg(&d.config)
        .output()
        .expect("run proxymap stats");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no statistics file:") && err.contains("proxymap-rs/proxymap.stats"), "{err}");
}

#[test]
fn an_unusable_statistics_directory_costs_one_warning_not_the_service() {
    let d = Daemon::start("stats-bad", TOML, &format!("{MAIN_CF}proxymap_statistics_directory = /dev/null/x\n"));
    let mut c = Client::connect(&d.socket("proxymap")).expect("connect");
    assert_eq!(lookup(&mut c, "static:hello", "k"), "0", "served without statistics");
    assert!(d.log().contains("warning: statistics: /dev/null/x/proxymap.stats: "), "{}", d.log());
    assert!(d.log().contains("serving without statistics"), "{}", d.log());
}
