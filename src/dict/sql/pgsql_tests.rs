//! libpq wrapper and pool against a real PostgreSQL server of the test's
//! own ([`super::test_server`]). Each test says "skipped" and passes when
//! PostgreSQL is not installed (scripts/install-test-deps.sh installs it).

use super::pgsql_server::{query, PgServer};
use super::test_server::{Postgres, DB, PASSWORD, USER};
use crate::dict::db_common::pool::{Error, Failure, Pool, Registry, Report, Settings};
use crate::sync::lock;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type Lines = Arc<Mutex<Vec<String>>>;

fn registry() -> (Registry<PgServer>, Lines) {
    let lines: Lines = Arc::default();
    let sink = lines.clone();
    let report: Report = Arc::new(move |_, text: &str| lock(&sink).push(text.to_string()));
    (Registry::with_report(report), lines)
}

fn settings() -> Settings {
    Settings { connect_timeout: Duration::from_secs(5), wait_timeout: Duration::from_secs(10), ..Settings::default() }
}

fn over_socket(pg: &Postgres, encoding: &str) -> PgServer {
    PgServer::new(&format!("unix:{}", pg.socket_dir().display()), DB, USER, "", encoding)
}

fn over_tcp(pg: &Postgres, password: &str) -> PgServer {
    PgServer::new(&format!("inet:127.0.0.1:{}", pg.port()), DB, USER, password, "UTF8")
}

/// The first column of the first row (None: NULL or no row).
fn first(pool: &Pool<PgServer>, sql: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let deadline = Instant::now() + Duration::from_secs(10);
    pool.run(deadline, |c| query(c, sql, Duration::from_secs(10), "h").map(|r| r.value(0, 0).map(<[u8]>::to_vec)))
}

fn text(v: Result<Option<Vec<u8>>, Error>) -> String {
    String::from_utf8(v.expect("query").expect("a value")).expect("UTF-8")
}

#[test]
fn connects_over_the_socket_over_tcp_with_a_password_and_by_uri() {
    let Some(pg) = Postgres::start("pg-connect") else { return };
    let (reg, lines) = registry();
    let sock = reg.pool(over_socket(&pg, "UTF8"), settings());
    assert_eq!(text(first(&sock, b"SELECT current_user")), USER);
    assert_eq!(text(first(&sock, b"SHOW client_encoding")), "UTF8");
    let tcp = reg.pool(over_tcp(&pg, PASSWORD), settings());
    assert_eq!(text(first(&tcp, b"SELECT current_user || ' ' || inet_client_addr()")), "proxymap 127.0.0.1/32");
    let latin1 = reg.pool(over_socket(&pg, "LATIN1"), settings());
    assert_eq!(text(first(&latin1, b"SHOW client_encoding")), "LATIN1");
    // A URI, verbatim (the password percent-encoded as URIs need).
    let uri = format!("postgresql://{USER}:p%20w'%5Cd%3Dx@127.0.0.1:{}/{DB}", pg.port());
    let by_uri = reg.pool(PgServer::new(&uri, "ignored", "ignored", "ignored", "UTF8"), settings());
    assert_eq!(text(first(&by_uri, b"SELECT current_database()")), DB);
    assert!(lines.lock().unwrap().is_empty(), "{:?}", lines.lock().unwrap());
    // A wrong password: down, one line, and no password in it.
    let wrong = reg.pool(over_tcp(&pg, "wrong"), settings());
    let got = first(&wrong, b"SELECT 1");
    assert!(
        matches!(&got, Err(Error::Down { reason, .. }) if reason.contains("password authentication failed")),
        "{got:?}"
    );
    let bad_uri = reg.pool(PgServer::new(&uri.replace("%3Dx", "%3Dy"), "", "", "", "UTF8"), settings());
    assert!(first(&bad_uri, b"SELECT 1").is_err());
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| !l.contains("wrong") && !l.contains("p%20w")), "{lines:?}");
}

#[test]
fn escaped_keys_reach_the_server_unchanged_and_null_differs_from_empty() {
    let Some(pg) = Postgres::start("pg-escape") else { return };
    let (reg, _) = registry();
    let utf8 = reg.pool(over_socket(&pg, "UTF8"), settings());
    let latin1 = reg.pool(over_socket(&pg, "LATIN1"), settings());
    let keys: [&[u8]; 7] =
        [b"'", b"\\", b"%", b"a'b\\c%d''", b"x' OR '1'='1", "üñí €".as_bytes(), b"it''s \\' tricky\\"];
    let round_trip = |pool: &Pool<PgServer>, key: &[u8]| {
        let deadline = Instant::now() + Duration::from_secs(10);
        pool.run(deadline, |c| {
            let escaped = c.escape(key).map_err(|e| Failure::Query(e.to_string()))?;
            let sql = [b"SELECT '".as_slice(), &escaped, b"'"].concat();
            query(c, &sql, Duration::from_secs(10), "h").map(|r| r.value(0, 0).map(<[u8]>::to_vec))
        })
    };
    for key in keys {
        assert_eq!(round_trip(&utf8, key), Ok(Some(key.to_vec())), "{:?}", String::from_utf8_lossy(key));
    }
    // What Postfix sends (PQescapeStringConn, standard-conforming strings):
    // quotes doubled, backslashes kept.
    let deadline = Instant::now() + Duration::from_secs(10);
    let escaped = utf8.run(deadline, |c| Ok(c.escape(b"a'b\\c%d").expect("escape"))).unwrap();
    assert_eq!(escaped, b"a''b\\c%d");
    // Bytes that are not UTF-8: valid LATIN1, they round-trip there...
    let latin: &[u8] = b"\xfcber \xe9t\xe9 \xff";
    assert_eq!(round_trip(&latin1, latin), Ok(Some(latin.to_vec())));
    // ...and are an escape error on a UTF8 connection, which stays usable.
    let got = round_trip(&utf8, latin);
    assert!(
        matches!(&got, Err(Error::Failed(Failure::Query(m))) if m.contains("cannot escape input string")),
        "{got:?}"
    );
    assert_eq!(text(first(&utf8, b"SELECT 'still here'")), "still here");
    // NULL is None, '' is an empty value.
    let deadline = Instant::now() + Duration::from_secs(10);
    let row = utf8
        .run(deadline, |c| {
            let r = query(c, b"SELECT NULL, '', 'x'", Duration::from_secs(5), "h")?;
            Ok((r.rows(), r.columns(), r.value(0, 0).map(<[u8]>::to_vec), r.value(0, 1).map(<[u8]>::to_vec)))
        })
        .unwrap();
    assert_eq!(row, (1, 3, None, Some(Vec::new())));
    // A statement error is the lookup's alone; a command without rows is fine.
    let got = first(&utf8, b"SELEC 1");
    assert!(matches!(&got, Err(Error::Failed(Failure::Query(m))) if m.contains("syntax error")), "{got:?}");
    assert_eq!(first(&utf8, b"SET search_path TO public"), Ok(None));
    assert_eq!(utf8.counts().0, 1, "the same connection all along");
}

#[test]
fn a_query_past_its_timeout_is_abandoned_and_cancelled_and_the_pool_goes_on() {
    let Some(pg) = Postgres::start("pg-timeout") else { return };
    let (reg, lines) = registry();
    let pool = reg.pool(over_socket(&pg, "UTF8"), settings());
    assert_eq!(text(first(&pool, b"SELECT 'warm'")), "warm");
    let start = Instant::now();
    let deadline = start + Duration::from_secs(10);
    let got = pool.run(deadline, |c| query(c, b"SELECT pg_sleep(5)", Duration::from_millis(500), "h").map(drop));
    let took = start.elapsed();
    assert!(matches!(got, Err(Error::Failed(Failure::Timeout(_)))), "{got:?}");
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(1500), "{took:?}");
    // The server stops the abandoned query (the cancel) and the backend goes.
    let gone = wait_for(Duration::from_secs(3), || pg.backends(DB) == 0);
    assert!(gone, "backends left: {}", pg.backends(DB));
    assert_eq!(text(first(&pool, b"SELECT 'after'")), "after");
    assert!(lines.lock().unwrap().is_empty());
}

#[test]
fn a_server_restart_costs_no_lookup() {
    let Some(mut pg) = Postgres::start("pg-restart") else { return };
    let (reg, lines) = registry();
    let pool = reg.pool(over_tcp(&pg, PASSWORD), settings());
    fill(&pool, 3);
    assert_eq!(pg.backends(DB), 3);
    let old = pg.pid();
    pg.restart();
    assert_ne!(pg.pid(), old);
    let start = Instant::now();
    assert_eq!(text(first(&pool, b"SELECT 'after restart'")), "after restart");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    assert_eq!(pool.counts(), (1, 1), "the stale connections dropped");
    assert!(lines.lock().unwrap().is_empty(), "{:?}", lines.lock().unwrap());
}

#[test]
fn a_terminated_backend_costs_no_lookup() {
    let Some(pg) = Postgres::start("pg-terminate") else { return };
    let (reg, lines) = registry();
    let pool = reg.pool(over_socket(&pg, "UTF8"), settings());
    assert_eq!(text(first(&pool, b"SELECT 'before'")), "before");
    let pids = pg.backend_pids(DB);
    assert_eq!(pids.len(), 1);
    assert_eq!(pg.sql(&format!("SELECT pg_terminate_backend({})", pids[0])), "t");
    assert!(wait_for(Duration::from_secs(3), || pg.backends(DB) == 0));
    assert_eq!(text(first(&pool, b"SELECT 'after'")), "after");
    assert_ne!(pg.backend_pids(DB), pids);
    // The same when the server's goodbye is not read before the query: the
    // query fails on the dead connection and runs again on a new one.
    let pid = pg.backend_pids(DB)[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tries = 0;
    let got = pool.run(deadline, |c| {
        tries += 1;
        if tries == 1 {
            pg.sql(&format!("SELECT pg_terminate_backend({pid})"));
            std::thread::sleep(Duration::from_millis(100));
        }
        query(c, b"SELECT 'retried'", Duration::from_secs(5), "h").map(|r| r.value(0, 0).map(<[u8]>::to_vec))
    });
    assert_eq!(got, Ok(Some(b"retried".to_vec())));
    assert_eq!(tries, 2);
    assert!(lines.lock().unwrap().is_empty(), "{:?}", lines.lock().unwrap());
}

#[test]
fn thirty_two_threads_never_exceed_the_cap_on_the_server() {
    let Some(pg) = Postgres::start("pg-cap") else { return };
    let (reg, _) = registry();
    let pool = reg.pool(over_socket(&pg, "UTF8"), settings());
    let done = AtomicBool::new(false);
    let most = AtomicUsize::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(SeqCst) {
                most.fetch_max(pg.backends(DB), SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let workers: Vec<_> = (0..32)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..5 {
                        assert_eq!(text(first(&pool, b"SELECT pg_sleep(0.02)::text || 'x'")), "x");
                    }
                })
            })
            .collect();
        let joined: Vec<_> = workers.into_iter().map(|w| w.join()).collect();
        // Before any failure is passed on: the sampler would run forever.
        done.store(true, SeqCst);
        for j in joined {
            j.expect("worker");
        }
    });
    let most = most.load(SeqCst);
    assert!((1..=4).contains(&most), "{most} backends at once");
    assert_eq!(pg.backends(DB), 4);
    assert_eq!(pool.counts(), (4, 4));
}

#[test]
fn a_server_that_never_answers_is_down_after_the_connect_timeout() {
    // No PostgreSQL needed: a listener that accepts and says nothing.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (reg, lines) = registry();
    let server = PgServer::new(&format!("inet:127.0.0.1:{port}"), DB, USER, PASSWORD, "UTF8");
    let pool = reg.pool(server, Settings { connect_timeout: Duration::from_millis(500), ..settings() });
    let start = Instant::now();
    let got = first(&pool, b"SELECT 1");
    let took = start.elapsed();
    assert!(matches!(&got, Err(Error::Down { reason, .. }) if reason.contains("timeout")), "{got:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    // Marked down: the next lookup fails at once.
    let start = Instant::now();
    assert!(first(&pool, b"SELECT 1").is_err());
    assert!(start.elapsed() < Duration::from_millis(100));
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines, [format!("pgsql server inet:127.0.0.1:{port} is down: timeout expired while connecting")]);
    drop(listener);
}

/// Make `n` connections at once, all idle afterwards.
fn fill(pool: &Pool<PgServer>, n: usize) {
    std::thread::scope(|s| {
        for _ in 0..n {
            s.spawn(|| first(pool, b"SELECT pg_sleep(0.2)::text").expect("query"));
        }
    });
}

fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cond()
}
