use super::format::{label, prometheus, table};
use super::layout as l;
use super::reader::{read, ServiceTotals};
use super::*;
use crate::protocol::{Op, Status};
use crate::test_support::TempDir;

fn totals(file: &Path) -> ServiceTotals {
    read(file, "proxymap").unwrap()
}

fn lookups(t: &ServiceTotals, name: &str) -> [u64; 6] {
    t.tables.iter().find(|t| t.name == name).map(|t| t.counts[1]).unwrap_or_default()
}

#[test]
fn counts_of_processes_add_up_and_a_dead_ones_slot_is_taken_over() {
    let dir = TempDir::new("stats");
    let file = dir.path().join("proxymap-rs/proxymap.stats");
    let a = Stats::open(&file).unwrap();
    let b = Stats::open(&file).unwrap();
    assert_eq!((a.slot(), b.slot()), (0, 1), "each open holds a slot of its own");
    let (ta, tb) = (a.table("hash:/etc/postfix/virtual"), b.table("hash:/etc/postfix/virtual"));
    for _ in 0..3 {
        a.request(ta, Some(Op::Lookup), Status::Ok);
    }
    b.request(tb, Some(Op::Lookup), Status::NoKey);
    b.request(b.unapproved(), Some(Op::Lookup), Status::Deny);
    a.latency(ta, 1_500);
    a.connection_opened();
    b.connection_opened();
    b.connection_closed();
    b.connection_closed(); // never below zero
    a.tables_open(1);
    let t = totals(&file);
    assert_eq!((t.starts, t.alive, t.connections, t.connections_open, t.tables_open), (2, 2, 2, 1, 1));
    assert_eq!(lookups(&t, "hash:/etc/postfix/virtual"), [3, 1, 0, 0, 0, 0]);
    assert_eq!(lookups(&t, l::UNAPPROVED_NAME), [0, 0, 0, 0, 1, 0]);

    // a dies (its lock goes with its descriptor): its counts stay, its
    // gauges no longer count, and the next process continues its slot.
    drop(a);
    let t = totals(&file);
    assert_eq!((t.starts, t.alive, t.connections_open, t.tables_open), (2, 1, 0, 0));
    assert_eq!(lookups(&t, "hash:/etc/postfix/virtual"), [3, 1, 0, 0, 0, 0], "nothing lost");
    let c = Stats::open(&file).unwrap();
    assert_eq!(c.slot(), 0, "the free slot is taken over");
    let tc = c.table("hash:/etc/postfix/virtual");
    c.request(tc, Some(Op::Lookup), Status::Ok);
    let t = totals(&file);
    assert_eq!((t.starts, t.alive), (3, 2), "a restart is counted");
    assert_eq!(lookups(&t, "hash:/etc/postfix/virtual"), [4, 1, 0, 0, 0, 0], "counting continues");
    assert_eq!(t.tables.iter().filter(|t| t.name == "hash:/etc/postfix/virtual").count(), 1, "one row per name");
}

#[test]
fn tables_beyond_the_entries_of_a_slot_are_counted_as_other() {
    let dir = TempDir::new("stats");
    let file = dir.path().join("p.stats");
    let s = Stats::open(&file).unwrap();
    let named = l::TABLES - 2;
    for i in 0..named + 5 {
        let t = s.table(&format!("hash:/t{i}"));
        s.request(t, Some(Op::Lookup), Status::Ok);
    }
    assert_eq!(s.table("hash:/t0"), s.table("hash:/t0"), "a name keeps its entry");
    let t = totals(&file);
    assert_eq!(t.tables.len(), named + 1);
    assert_eq!(lookups(&t, l::OTHER_NAME), [5, 0, 0, 0, 0, 0]);
    assert_eq!(lookups(&t, "hash:/t0"), [1, 0, 0, 0, 0, 0]);
    // A name longer than an entry holds is cut, not refused.
    let long = format!("hash:/{}", "x".repeat(400));
    let lt = s.table(&long);
    s.request(lt, Some(Op::Open), Status::Ok);
    assert_eq!(s.table(&long), lt);
}

#[test]
fn a_file_of_another_layout_is_refused_with_its_version() {
    let dir = TempDir::new("stats");
    let file = dir.path().join("p.stats");
    drop(Stats::open(&file).unwrap());
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[..8].copy_from_slice(&((l::MAGIC & l::MAGIC_MASK) | 7).to_le_bytes());
    std::fs::write(&file, &bytes).unwrap();
    let err = Stats::open(&file).err().unwrap().to_string();
    assert!(err.contains("layout version 7; this proxymap reads and writes version 1"), "{err}");
    std::fs::write(&file, vec![1u8; bytes.len()]).unwrap();
    let err = read(&file, "proxymap").err().unwrap().to_string();
    assert!(err.ends_with("not a proxymap statistics file"), "{err}");
}

#[test]
fn every_slot_taken_is_an_error_not_a_wait() {
    let dir = TempDir::new("stats");
    let file = dir.path().join("p.stats");
    let held: Vec<Stats> = (0..l::SLOTS).map(|_| Stats::open(&file).unwrap()).collect();
    let err = Stats::open(&file).err().unwrap().to_string();
    assert!(err.ends_with("all 128 process slots are taken"), "{err}");
    assert_eq!(totals(&file).alive, held.len() as u64);
}

fn sample() -> ServiceTotals {
    let mut t = super::reader::TableTotals { name: "hash:/etc/postfix/a\"b\\c\nd".into(), ..Default::default() };
    t.counts[1] = [90, 8, 1, 0, 0, 0];
    t.counts[3] = [0, 0, 0, 0, 0, 2];
    t.buckets[2] = 50; // under 4 µs
    t.buckets[10] = 49; // under 1024 µs
    t.buckets[20] = 1;
    t.latency_sum_ns = 2_000_000;
    ServiceTotals {
        service: "proxymap".into(),
        starts: 3,
        alive: 2,
        connections: 10,
        connections_open: 1,
        tables_open: 2,
        tables: vec![t],
    }
}

#[test]
fn label_values_are_escaped_as_the_text_format_says() {
    assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    assert_eq!(label("hash:/etc/postfix/virtual"), "hash:/etc/postfix/virtual");
    let text = prometheus(&[sample()]);
    let line = r#"proxymap_requests_total{service="proxymap",table="hash:/etc/postfix/a\"b\\c\nd",request="lookup",status="ok"} 90"#;
    assert!(text.lines().any(|l| l == line), "{text}");
    assert!(text.lines().all(|l| !l.is_empty()), "no raw newline splits a line");
}

#[test]
fn prometheus_histogram_is_cumulative_with_sum_and_count() {
    let text = prometheus(&[sample()]);
    let tbl = r#"service="proxymap",table="hash:/etc/postfix/a\"b\\c\nd""#;
    for want in [
        format!("proxymap_lookup_duration_seconds_bucket{{{tbl},le=\"0.000002\"}} 0"),
        format!("proxymap_lookup_duration_seconds_bucket{{{tbl},le=\"0.000004\"}} 50"),
        format!("proxymap_lookup_duration_seconds_bucket{{{tbl},le=\"0.001024\"}} 99"),
        format!("proxymap_lookup_duration_seconds_bucket{{{tbl},le=\"+Inf\"}} 100"),
        format!("proxymap_lookup_duration_seconds_sum{{{tbl}}} 0.002"),
        format!("proxymap_lookup_duration_seconds_count{{{tbl}}} 100"),
        format!("proxymap_requests_total{{{tbl},request=\"delete\",status=\"config\"}} 2"),
        "# TYPE proxymap_lookup_duration_seconds histogram".to_string(),
        "proxymap_processes_started_total{service=\"proxymap\"} 3".to_string(),
        "proxymap_processes{service=\"proxymap\"} 2".to_string(),
        "proxymap_connections{service=\"proxymap\"} 1".to_string(),
    ] {
        assert!(text.lines().any(|l| l == want), "missing {want}\n{text}");
    }
    assert!(!text.contains("request=\"update\""), "requests never seen are left out");
}

#[test]
fn the_table_shows_counts_and_quantiles() {
    let text = table(&[sample()]);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("service proxymap: processes 2 alive, 3 started; connections 1 open, 10 total; tables open 2")
    );
    let row: Vec<&str> = lines.nth(1).unwrap().split_whitespace().collect();
    // name (with a space-free part), requests, lookups, hits, misses, retry, deny, bad, config, p50, p99
    assert_eq!(row[row.len() - 10..], ["101", "99", "90", "8", "1", "0", "0", "2", "4us", "1.024ms"]);
}
