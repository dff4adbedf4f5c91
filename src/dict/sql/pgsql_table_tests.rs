//! The `pgsql:` table against a real PostgreSQL server of the test's own
//! ([`super::super::test_server`]); each test that needs one says
//! "skipped" and passes when PostgreSQL is not installed.

use super::*;
use crate::config::Params;
use crate::dict::db_common::pool::Report;
use crate::dict::sql::test_server::{Postgres, DB, PASSWORD, USER};
use crate::dict::testutil::get;
use crate::dict::Mode;
use crate::protocol::flags::PATTERN;
use crate::sync::lock;
use crate::test_support::{backdate, TempDir};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Instant;

const SCHEMA: &str = "
CREATE TABLE t (n serial, k text, v text, w text);
INSERT INTO t (k, v, w) VALUES
  ('alice@example.com', 'alice-value', 'second column'),
  ('o''brien@example.com', 'quoted', NULL),
  ('back\\slash', 'backslash', NULL),
  ('pct%s', 'percent', NULL),
  ('multi', 'm1', NULL), ('multi', NULL, NULL), ('multi', '', 'w3'), ('multi', 'm2', NULL),
  ('null', NULL, NULL),
  ('Upper', 'upper-case key', NULL),
  ('ü@example.com', 'ünïcødé €', NULL),
  ('über', 'latin', NULL),
  ('a@b@c.d', 'two ats', NULL),
  ('1', 'one', NULL);
CREATE FUNCTION lookup_v(text) RETURNS text AS 'SELECT v FROM t WHERE k = $1' LANGUAGE sql;
GRANT SELECT ON t TO proxymap;
";

const QUERY: &str = "query = SELECT v FROM t WHERE k='%s' ORDER BY n\n";

struct Lab {
    pg: Postgres,
    dir: TempDir,
    files: AtomicUsize,
}

impl Lab {
    fn new(tag: &str) -> Option<Lab> {
        let pg = Postgres::start(tag)?;
        pg.sql(SCHEMA);
        Some(Lab { pg, dir: TempDir::new(tag), files: AtomicUsize::new(0) })
    }

    /// `hosts = unix:<socket dir>`, as Postfix's `.cf` files name a local server.
    fn socket_hosts(&self) -> String {
        format!("hosts = unix:{}\ndbname = {DB}\nuser = {USER}\n", self.pg.socket_dir().display())
    }

    /// A settled `.cf` file of its own with the login and `rest`.
    fn cf(&self, rest: &str) -> String {
        let n = self.files.fetch_add(1, SeqCst);
        let path = self.dir.write(&format!("t{n}.cf"), format!("{}{rest}", self.socket_hosts()));
        backdate(&path);
        path.to_str().unwrap().to_string()
    }

    fn open(&self, rest: &str) -> Box<dyn Dict> {
        let cf = self.cf(rest);
        open_cf(&cf, Mode::ReadOnly, 0).unwrap_or_else(|e| panic!("{}", e.reason))
    }
}

fn open_cf(name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    let params = Params::default();
    open(&OpenRequest { type_name: "pgsql", name, mode, flags, params: &params })
}

/// The RETRY text of a lookup that must fail.
fn retry(d: &dyn Dict, key: &[u8]) -> String {
    let mut out = b"stale".to_vec();
    match d.lookup(key, 0, &mut out) {
        Err(DictError::Retry(text)) => {
            assert!(out.is_empty());
            text
        }
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(key)),
    }
}

#[test]
fn hits_misses_quotes_and_injection_attempts() {
    let Some(lab) = Lab::new("pgt-hits") else { return };
    let mut d = lab.open(QUERY);
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "nobody@example.com", 0), None);
    assert_eq!(get(&mut d, "o'brien@example.com", 0).as_deref(), Some("quoted"));
    assert_eq!(get(&mut d, "back\\slash", 0).as_deref(), Some("backslash"));
    assert_eq!(get(&mut d, "pct%s", 0).as_deref(), Some("percent"));
    for attempt in ["x' OR '1'='1", "'; DROP TABLE t; --", "x\\' OR 1=1 --", "' UNION SELECT current_user --"] {
        assert_eq!(get(&mut d, attempt, 0), None, "{attempt}");
    }
    assert_eq!(lab.pg.sql("SELECT count(*) FROM t"), "14", "the table is intact");
    // FOLD_FIX folds (ASCII) before the query; without it the key is as sent.
    assert_eq!(get(&mut d, "ALICE@Example.COM", FOLD_FIX).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "Upper", 0).as_deref(), Some("upper-case key"));
    assert_eq!(get(&mut d, "Upper", FOLD_FIX), None);
    // An empty key is never sent; what follows a NUL is not part of a key.
    assert_eq!(get(&mut d, "", 0), None);
    assert_eq!(d.lookup(b"alice@example.com\0junk", 0, &mut Vec::new()), Ok(true));
    // Over TCP with a password that needs quoting, by `inet:` and by URI.
    let tcp = format!("hosts = inet:127.0.0.1:{}\npassword = {PASSWORD}\n{QUERY}", lab.pg.port());
    let mut d = lab.open(&tcp);
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    let uri = format!("hosts = postgresql://{USER}:p%20w'%5Cd%3Dx@127.0.0.1:{}/{DB}\n{QUERY}", lab.pg.port());
    let mut d = lab.open(&uri);
    assert_eq!(get(&mut d, "o'brien@example.com", 0).as_deref(), Some("quoted"));
}

#[test]
fn every_column_of_every_row_with_nulls_as_empty_values() {
    let Some(lab) = Lab::new("pgt-rows") else { return };
    let mut d = lab.open("query = SELECT v, w FROM t WHERE k='%s' ORDER BY n\n");
    // row-major: (m1,NULL) (NULL,NULL) ('',w3) (m2,NULL); NULL and '' are
    // skipped, each with Postfix's warning
    assert_eq!(get(&mut d, "multi", 0).as_deref(), Some("m1,w3,m2"));
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value,second column"));
    assert_eq!(get(&mut d, "null", 0), None);
    let mut d = lab.open(&format!("{QUERY}result_format = <%s|%S>\n"));
    assert_eq!(get(&mut d, "multi", 0).as_deref(), Some("<m1|multi>,<m2|multi>"));
    let mut d = lab.open(&format!("{QUERY}expansion_limit = 2\n"));
    assert_eq!(get(&mut d, "multi", 0).as_deref(), Some("m1,m2"), "skipped values do not count");
    let cf = lab.cf(&format!("{QUERY}expansion_limit = 1\n"));
    let d = open_cf(&cf, Mode::ReadOnly, 0).unwrap();
    assert_eq!(
        retry(d.as_ref(), b"multi"),
        format!("dict_pgsql_lookup: {cf}: Expansion limit exceeded for key: 'multi'")
    );
    // A command without rows is "not found".
    let mut d = lab.open("query = SET application_name TO '%s'\n");
    assert_eq!(get(&mut d, "x", 0), None);
}

#[test]
fn address_parts_domain_and_the_legacy_forms() {
    let Some(lab) = Lab::new("pgt-forms") else { return };
    let mut d = lab.open("query = SELECT '[%s][%u][%d][%1][%2]'\n");
    assert_eq!(get(&mut d, "x@y.z", 0).as_deref(), Some("[x@y.z][x][y.z][z][y]"));
    assert_eq!(get(&mut d, "a@b@c.d", 0).as_deref(), Some("[a@b@c.d][a@b][c.d][d][c]"));
    assert_eq!(get(&mut d, "o'k@x.y", 0).as_deref(), Some("[o'k@x.y][o'k][x.y][y][x]"));
    for skipped in ["@example.com", "user@", "user@.com", "nodomain"] {
        assert_eq!(get(&mut d, skipped, 0), None, "{skipped}");
    }
    let mut d = lab.open(&format!("{QUERY}domain = example.com\n"));
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "multi", 0), None, "no domain: not queried");
    let mut d = lab.open(&format!("{QUERY}domain = other.com\n"));
    assert_eq!(get(&mut d, "alice@example.com", 0), None);
    let mut d = lab.open("table = t\nselect_field = v\nwhere_field = k\nadditional_conditions = AND v <> 'm2'\n");
    assert_eq!(get(&mut d, "multi", 0).as_deref(), Some("m1"));
    let mut d = lab.open("select_function = lookup_v\n");
    assert_eq!(get(&mut d, "o'brien@example.com", 0).as_deref(), Some("quoted"));
    assert_eq!(get(&mut d, "nobody", 0), None, "a NULL result: empty, with the warning");
}

#[test]
fn utf8_keys_and_values_and_bytes_the_encoding_rejects() {
    let Some(lab) = Lab::new("pgt-utf8") else { return };
    let cf = lab.cf(QUERY);
    let mut d = open_cf(&cf, Mode::ReadOnly, 0).unwrap();
    assert_eq!(get(&mut d, "ü@example.com", 0).as_deref(), Some("ünïcødé €"));
    assert_eq!(get(&mut d, "über", 0).as_deref(), Some("latin"));
    // Not UTF-8: PQescapeStringConn refuses it; RETRY for that key alone.
    let host = format!("unix:{}", lab.pg.socket_dir().display());
    assert_eq!(
        retry(d.as_ref(), b"bad\xff@example.com"),
        format!("dict pgsql: (host {host}) cannot escape input string: invalid multibyte character?")
    );
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    // Postfix 3.7's LATIN1, on request: UTF-8 keys miss, and a value with
    // no Latin-1 form fails the query.
    let mut latin1 = lab.open(&format!("encoding = LATIN1\n{QUERY}"));
    assert_eq!(latin1.lookup(b"\xfcber", 0, &mut Vec::new()), Ok(true));
    assert_eq!(get(&mut latin1, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut latin1, "ü@example.com", 0), None);
    let text = retry(latin1.as_ref(), b"\xfc@example.com");
    assert!(text.contains("has no equivalent in encoding \"LATIN1\""), "{text}");
    assert_eq!(get(&mut latin1, "alice@example.com", 0).as_deref(), Some("alice-value"));
}

#[test]
fn a_bad_query_is_the_error_of_its_lookup_only() {
    let Some(lab) = Lab::new("pgt-badquery") else { return };
    let host = format!("unix:{}", lab.pg.socket_dir().display());
    let mut d = lab.open("query = SELECT v FROM t WHERE n = '%s'\n");
    assert_eq!(get(&mut d, "14", 0).as_deref(), Some("one"));
    let start = Instant::now();
    // (the logger shows each newline as `?`, as Postfix's does)
    assert_eq!(
        retry(d.as_ref(), b"x"),
        format!(
            "pgsql query failed: fatal error from host {host}: ERROR:  invalid input syntax for type integer: \
             \"x\"\nLINE 1: SELECT v FROM t WHERE n = 'x'\n                                  ^?"
        )
    );
    // At once, on the same connection: no outage.
    assert_eq!(get(&mut d, "14", 0).as_deref(), Some("one"));
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    let pids = lab.pg.backend_pids(DB);
    assert_eq!(pids.len(), 1, "{pids:?}");
    // A query that never works: each lookup RETRY, other tables go on.
    let bad = lab.open("query = SELEC v FROM t WHERE k='%s'\n");
    let text = retry(bad.as_ref(), b"alice@example.com");
    assert!(text.contains("syntax error at or near \"SELEC\""), "{text}");
    assert_eq!(retry(bad.as_ref(), b"alice@example.com"), text);
    let mut good = lab.open(QUERY);
    assert_eq!(get(&mut good, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_eq!(lab.pg.backend_pids(DB), pids, "one pool, one connection, never dropped");
}

#[test]
fn a_terminated_backend_and_a_server_restart_cost_no_lookup() {
    let Some(mut lab) = Lab::new("pgt-recover") else { return };
    let mut d = lab.open(QUERY);
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    let pids = lab.pg.backend_pids(DB);
    assert_eq!(pids.len(), 1);
    assert_eq!(lab.pg.sql(&format!("SELECT pg_terminate_backend({})", pids[0])), "t");
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    lab.pg.restart();
    let start = Instant::now();
    assert_eq!(get(&mut d, "multi", 0).as_deref(), Some("m1,m2"));
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

/// A registry whose outage lines a test can count.
fn counted_registry() -> (Registry<PgServer>, Arc<Mutex<Vec<String>>>) {
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let sink = lines.clone();
    let report: Report = Arc::new(move |_, text: &str| lock(&sink).push(text.to_string()));
    (Registry::with_report(report), lines)
}

#[test]
fn a_silent_server_is_retry_within_connect_timeout_and_one_line_per_outage() {
    // No PostgreSQL needed: a listener that accepts and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = TempDir::new("pgt-silent");
    let cf = dir.write(
        "s.cf",
        format!(
            "hosts = postgresql://{USER}:secret@127.0.0.1:{port}/{DB}\ndbname = {DB}\n{QUERY}connect_timeout = 1\n"
        ),
    );
    backdate(&cf);
    let cf = cf.to_str().unwrap();
    let (reg, lines) = counted_registry();
    let params = Params::default();
    let req = OpenRequest { type_name: "pgsql", name: cf, mode: Mode::ReadOnly, flags: 0, params: &params };
    let d = open_in(&req, &reg).unwrap();
    let start = Instant::now();
    let text = retry(d.as_ref(), b"alice@example.com");
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(2), "{took:?}");
    let server = format!("pgsql server postgresql://{USER}:*@127.0.0.1:{port}/{DB}");
    assert_eq!(text, format!("{server} is down: timeout expired while connecting"));
    for _ in 0..3 {
        let start = Instant::now();
        assert_eq!(retry(d.as_ref(), b"alice@example.com"), text);
        assert!(start.elapsed() < Duration::from_millis(200), "marked down: no new attempt");
    }
    assert_eq!(lock(&lines).clone(), [format!("{server} is down: timeout expired while connecting")]);
    drop(listener);
}

#[test]
fn a_slow_query_is_retry_within_query_timeout_and_other_tables_go_on() {
    let Some(lab) = Lab::new("pgt-slow") else { return };
    let host = format!("unix:{}", lab.pg.socket_dir().display());
    let slow = lab.open("query = SELECT pg_sleep(4)::text || '%s'\nquery_timeout = 1\n");
    let mut fast = lab.open(&format!("{QUERY}query_timeout = 1\n"));
    assert_eq!(get(&mut fast, "alice@example.com", 0).as_deref(), Some("alice-value"));
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let start = Instant::now();
            let text = retry(slow.as_ref(), b"k");
            done.store(true, SeqCst);
            (text, start.elapsed())
        });
        std::thread::sleep(Duration::from_millis(100));
        let mut answered = 0;
        while !done.load(SeqCst) {
            let start = Instant::now();
            assert_eq!(get(&mut fast, "alice@example.com", 0).as_deref(), Some("alice-value"));
            assert!(start.elapsed() < Duration::from_millis(900), "{:?}", start.elapsed());
            answered += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        let (text, took) = waiter.join().unwrap();
        assert_eq!(text, format!("pgsql query failed: no answer from host {host} within 1s (query_timeout)"));
        assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(2), "{took:?}");
        assert!(answered >= 3, "{answered}");
    });
    assert_eq!(get(&mut fast, "multi", 0).as_deref(), Some("m1,m2"));
}

#[test]
fn eighteen_tables_on_one_server_share_one_capped_pool() {
    let Some(lab) = Lab::new("pgt-share") else { return };
    let tables: Vec<Box<dyn Dict>> = (0..18)
        .map(|i| {
            lab.open(&format!(
                "query = SELECT v FROM t, pg_sleep(0.005) WHERE k='%s' AND {i} >= 0\nmax_connections = 3\n"
            ))
        })
        .collect();
    let done = AtomicBool::new(false);
    let most = AtomicUsize::new(0);
    let lookups = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(SeqCst) {
                most.fetch_max(lab.pg.backends(DB), SeqCst);
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        let workers: Vec<_> = (0..64)
            .map(|w| {
                let (tables, lookups) = (&tables, &lookups);
                s.spawn(move || {
                    for i in 0..18 {
                        let d = &tables[(w + i) % 18];
                        let mut out = Vec::new();
                        assert_eq!(d.lookup(b"alice@example.com", 0, &mut out), Ok(true));
                        assert_eq!(out, b"alice-value");
                        lookups.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        let joined: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        done.store(true, SeqCst);
        for j in joined {
            j.expect("worker");
        }
    });
    let most = most.load(SeqCst);
    eprintln!("18 tables, 64 threads, {} lookups: at most {most} backends", lookups.load(SeqCst));
    assert!((1..=3).contains(&most), "{most} backends at once");
    assert_eq!(lab.pg.backends(DB), 3);
}

#[test]
fn open_refuses_writers_and_reports_flags_and_postfix_config_errors() {
    let dir = TempDir::new("pgt-open");
    let write = |name: &str, text: &str| {
        let path = dir.write(name, text);
        backdate(&path);
        path.to_str().unwrap().to_string()
    };
    let cf = write("ok.cf", &format!("dbname = {DB}\n{QUERY}"));
    assert_eq!(
        open_cf(&cf, Mode::ReadWrite, 0).err().unwrap().reason,
        format!("pgsql:{cf} map requires O_RDONLY access mode")
    );
    // Opening connects to nothing yet (localhost is not asked).
    let d = open_cf(&cf, Mode::ReadOnly, FOLD_FIX).unwrap();
    assert_eq!(d.flags(), FOLD_FIX | FIXED);
    assert_eq!(d.flags() & PATTERN, 0);
    assert_eq!(d.waits(), Waits::Always);
    let cases = [
        ("", "bad string length 0 < 1: dbname = "),
        ("dbname = d\nencoding =\n", "bad string length 0 < 1: encoding = "),
        ("dbname = d\nretry_interval = 0\n", "invalid retry_interval parameter value 0 < 1"),
        ("dbname = d\nidle_interval = x\n", "bad numerical configuration: idle_interval = x"),
        ("dbname = d\nresult_format =\n", "bad string length 0 < 1: result_format = "),
        ("dbname = d\n", "bad string length 0 < 1: table = "),
        ("dbname = d\nquery = SELECT 100%\n", "Invalid query template: SELECT 100%"),
        ("dbname = d\nquery = %s\ndomain = a, !\n", "no pattern after '!'"),
        ("dbname = d\nquery = %s\nconnect_timeout = 0\n", "invalid connect_timeout parameter value 0 < 1"),
        ("dbname = d\nquery = %s\nquery_timeout = -1\n", "invalid query_timeout parameter value -1 < 1"),
        ("dbname = d\nquery = %s\nmax_connections = 0\n", "invalid max_connections parameter value 0 < 1"),
    ];
    for (i, (text, want)) in cases.into_iter().enumerate() {
        let cf = write(&format!("c{i}.cf"), text);
        let got = open_cf(&cf, Mode::ReadOnly, 0).err().map(|e| e.reason).unwrap_or_default();
        assert!(got.ends_with(want), "{text:?}: {got}");
    }
    assert!(crate::dict::registry::lookup("pgsql").is_some());
}
