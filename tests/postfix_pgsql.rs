//! `pgsql:` tables, ours against Postfix's, on a PostgreSQL server of the
//! test's own (tests/common/pgsql.rs): the same `.cf` files and keys asked
//! with `postmap -q KEY pgsql:CF` (Postfix's pgsql plugin, in process) and
//! `postmap -q KEY proxy:pgsql:CF` (through our proxymap in a private
//! Postfix instance). For ASCII keys and values, answers, exit codes and
//! the tables' warnings (Postfix's on postmap's stderr, ours in the
//! instance's log) must be identical.
//!
//! Where we differ on purpose (docs/compatibility.md), the test says so
//! and asserts our answer: UTF-8 keys and values (3.7 talks LATIN1 to the
//! server, ours UTF8, as 3.8+ does), and recovery (after a query error or
//! a server restart Postfix's proxymap answers RETRY for 60 s; ours
//! answers at once).
//!
//! Last, connection counts under master(8): 18 tables on one server, 8
//! clients, several proxymap processes; the server never sees more than
//! processes × max_connections.

mod common;

use common::mapdiff::{assert_same_warnings, compare, query, settled_log, write_settled};
use common::pgsql::{Postgres, DB, PASSWORD, USER};
use common::postfix::{Instance, Server};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const SCHEMA: &str = "
CREATE TABLE t (n serial, k text, v text, w text);
INSERT INTO t (k, v, w) VALUES
  ('alice@example.com', 'alice-value', 'second column'),
  ('bob@sub.example.com', 'bob-value', NULL),
  ('o''brien@example.com', 'quoted', NULL),
  ('back\\slash', 'backslash', NULL),
  ('pct%s', 'percent', NULL),
  ('100%', 'hundred', NULL),
  ('multi', 'm1', NULL), ('multi', NULL, NULL), ('multi', '', 'w3'), ('multi', 'm2@example.org', NULL),
  ('null', NULL, NULL),
  ('empty', '', NULL),
  ('Upper', 'upper-case key', NULL),
  ('a@b@c.d', 'two ats', NULL),
  ('x@y.z', 'xyz', 'w-xyz'),
  ('blocked@blocked.example.com', 'blocked', NULL),
  ('user@other.org', 'other@other.org', NULL),
  ('14', 'fourteen', NULL),
  ('ü@example.com', 'ünïcødé', NULL),
  ('euro', '€uro', NULL);
CREATE FUNCTION lookup_v(text) RETURNS text AS 'SELECT v FROM t WHERE k = $1 ORDER BY n LIMIT 1' LANGUAGE sql;
GRANT SELECT ON t TO proxymap;
";

const KEYS: &[&str] = &[
    "alice@example.com",
    "ALICE@Example.COM",
    "nobody@example.com",
    "bob@sub.example.com",
    "o'brien@example.com",
    "back\\slash",
    "pct%s",
    "100%",
    "x' OR '1'='1",
    "'; DROP TABLE t; --",
    "x' UNION SELECT version() --",
    "multi",
    "null",
    "empty",
    "Upper",
    "a@b@c.d",
    "@example.com",
    "user@",
    "user@.com",
    "nodomain",
    "x@y.z",
    "u@example..com",
    "u@example.com.",
    "@",
    "a@@b.c",
    "blocked@blocked.example.com",
    "user@other.org",
    "14",
    "x",
    "",
    " ",
];

/// `.cf` files (name, text after the login) asked with every key.
const TABLES: &[(&str, &str)] = &[
    ("basic.cf", "query = SELECT v FROM t WHERE k='%s' ORDER BY n\n"),
    ("parts.cf", "query = SELECT '[%s][%u][%d][%1][%2]'\n"),
    ("columns.cf", "query = SELECT v, w FROM t WHERE k='%s' ORDER BY n\n"),
    ("format.cf", "query = SELECT v FROM t WHERE k='%s' ORDER BY n\nresult_format = <%s|%S|%U|%D|%1>\n"),
    ("value-parts.cf", "query = SELECT v FROM t WHERE k = '%s' ORDER BY n\nresult_format = %u at %d\n"),
    ("limit.cf", "query = SELECT v FROM t WHERE k='%s' ORDER BY n\nexpansion_limit = 1\n"),
    ("limit2.cf", "query = SELECT v, w FROM t WHERE k='%s' ORDER BY n\nexpansion_limit = 2\n"),
    (
        "domain.cf",
        "query = SELECT v FROM t WHERE k='%s'\ndomain = !blocked.example.com, Example.COM @TABLES@/domains\n",
    ),
    ("domain-table.cf", "query = SELECT v FROM t WHERE k='%s'\ndomain = inline:{other.org=1, y.z=1}\n"),
    ("legacy.cf", "table = t\nselect_field = v\nwhere_field = k\nadditional_conditions = and v <> 'm1'\n"),
    ("legacy-bare.cf", "# the legacy form without conditions\ntable = t\nselect_field = v\n  , w\nwhere_field = k\n"),
    ("function.cf", "select_function = lookup_v\n"),
    ("literal.cf", "query = SELECT '%%'||'%s' WHERE '%s' <> 'x@y.z'\n"),
    ("command.cf", "query = SET application_name TO '%s'\n"),
    // a query error for keys that are not numbers: the same warning text
    ("int.cf", "query = SELECT v FROM t WHERE n = '%s'\n"),
    ("tcp.cf", "hosts = inet:127.0.0.1:@PORT@\npassword = @PASSWORD@\nquery = SELECT v FROM t WHERE k='%s'\n"),
];

fn main_cf(cfs: &[&str], pg: &Postgres) -> String {
    let maps: Vec<String> = cfs.iter().map(|n| format!("proxy:pgsql:@TABLES@/{n}")).collect();
    format!(
        "proxy_read_maps = proxy:pgsql:pgmain {}\n\
         pgmain_hosts = unix:{}\n\
         pgmain_dbname = {DB}\n\
         pgmain_user = {USER}\n\
         pgmain_query = SELECT v FROM t WHERE k='%s'\n\
         pgmain_result_format = [%s]\n",
        maps.join(" "),
        pg.socket_dir().display()
    )
}

/// The login part of every `.cf` file: the server's socket directory, as
/// Postfix's `unix:` entries name it (port 5432: the harness links it).
fn login(pg: &Postgres) -> String {
    format!("hosts = unix:{}\ndbname = {DB}\nuser = {USER}\n", pg.socket_dir().display())
}

fn write_tables(inst: &Instance, pg: &Postgres, tables: &[(&str, &str)]) {
    let t = &inst.tables;
    for (name, rest) in tables {
        let rest = rest
            .replace("@TABLES@", &t.display().to_string())
            .replace("@PORT@", &pg.port().to_string())
            .replace("@PASSWORD@", PASSWORD);
        // a later `hosts` overrides the login's (with Postfix's warning,
        // which a settled file logs once: both sides alike)
        let text = if rest.starts_with("hosts =") {
            format!("dbname = {DB}\nuser = {USER}\n{rest}")
        } else {
            format!("{}{rest}", login(pg))
        };
        write_settled(&t.join(name), &text);
    }
}

fn start_server(tag: &str) -> Option<Postgres> {
    let pg = Postgres::start(tag)?;
    pg.sql(SCHEMA);
    Some(pg)
}

#[test]
fn pgsql_tables_answer_as_postfix_in_process() {
    let Some(mut pg) = start_server("pgsql-diff") else { return };
    let names: Vec<&str> = TABLES.iter().map(|(n, _)| *n).collect();
    let mut inst = Instance::new("pgsql", &main_cf(&names, &pg), Server::Ours);
    std::fs::write(inst.tables.join("domains"), "# domains\nexample.org\nsub.example.com, other.org\n")
        .expect("domains");
    write_tables(&inst, &pg, TABLES);
    inst.start();
    let t = inst.tables.display().to_string();

    let tables: Vec<String> =
        TABLES.iter().map(|(n, _)| format!("pgsql:{t}/{n}")).chain(["pgsql:pgmain".to_string()]).collect();
    let found = compare(&inst, &tables, KEYS);
    assert!(found.hits > 80, "only {} hits: is the database there?", found.hits);

    // the tables' warnings: the same set (Postfix opens the table afresh
    // for each postmap run, ours once)
    assert!(
        found.theirs_warnings.iter().any(|w| w.contains("invalid input syntax for type integer")),
        "{:?}",
        found.theirs_warnings
    );
    assert_same_warnings(&inst, &found, 5);

    // On purpose: UTF8 where 3.7 talks LATIN1. Postfix misses UTF-8 keys
    // and fails on a value with no Latin-1 form; ours answers.
    let basic = format!("pgsql:{t}/basic.cf");
    let (theirs, _) = query(&inst, "ü@example.com", &basic);
    assert!(theirs.starts_with("exit=Some(1) stdout=\"\""), "{theirs}");
    let (ours, _) = query(&inst, "ü@example.com", &format!("proxy:{basic}"));
    assert!(ours.starts_with("exit=Some(0) stdout=\"ünïcødé\\n\""), "{ours}");
    let (theirs, warnings) = query(&inst, "euro", &basic);
    assert!(theirs.starts_with("exit=Some(1) stdout=\"\"") && theirs.contains("postmap: fatal: table"), "{theirs}");
    assert!(warnings.iter().any(|w| w.contains("has no equivalent in encoding \"LATIN1\"")), "{warnings:?}");
    let (ours, _) = query(&inst, "euro", &format!("proxy:{basic}"));
    assert!(ours.starts_with("exit=Some(0) stdout=\"€uro\\n\""), "{ours}");

    // On purpose: a query error is that lookup's alone. Postfix's proxymap
    // would mark the host down and answer RETRY for 60 s; ours answers the
    // next key at once, on the same table.
    let int = format!("proxy:pgsql:{t}/int.cf");
    let (ours, _) = query(&inst, "x", &int);
    assert!(ours.starts_with("exit=Some(1) stdout=\"\""), "{ours}");
    let start = Instant::now();
    let (ours, _) = query(&inst, "14", &int);
    assert!(ours.starts_with("exit=Some(0) stdout=\"two ats\\n\""), "{ours}");
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());

    // On purpose: a server restart costs no lookup (Postfix's proxymap:
    // RETRY on the stale connection, then 60 s of RETRY).
    let (ours, _) = query(&inst, "alice@example.com", &format!("proxy:{basic}"));
    assert!(ours.starts_with("exit=Some(0)"), "{ours}");
    pg.restart();
    let start = Instant::now();
    for table in ["basic.cf", "int.cf", "columns.cf"] {
        let (ours, _) = query(&inst, "14", &format!("proxy:pgsql:{t}/{table}"));
        assert!(ours.starts_with("exit=Some(0)"), "{table}: {ours}");
    }
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    let log = settled_log(&inst);
    assert!(!log.contains(" is down: "), "no outage was logged:\n{log}");
    assert!(!log.contains(PASSWORD), "no password in the log");
}

/// The PIDs of the instance's read-only proxymap processes (ours).
fn proxymap_processes(inst: &Instance) -> Vec<i32> {
    let Some(master) = inst.master_pid() else { return Vec::new() };
    common::children_of(master)
        .into_iter()
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
            // master names the service with -n only when it is not the command's name
            args.first().is_some_and(|a| a.ends_with(b"proxymap")) && !args.contains(&b"proxywrite".as_slice())
        })
        .collect()
}

#[test]
fn eighteen_tables_under_master_stay_within_processes_times_max_connections() {
    const MAX_CONNECTIONS: usize = 2;
    const CLIENTS: usize = 8;
    let Some(pg) = start_server("pgsql-count") else { return };
    let names: Vec<String> = (1..=18).map(|i| format!("t{i}.cf")).collect();
    let texts: Vec<String> = (1..=18)
        .map(|i| {
            format!(
                "query = SELECT v FROM t, pg_sleep(0.002) WHERE k='%s' AND {i} > 0\nmax_connections = {MAX_CONNECTIONS}\n"
            )
        })
        .collect();
    let tables: Vec<(&str, &str)> = names.iter().map(String::as_str).zip(texts.iter().map(String::as_str)).collect();
    let maps: Vec<String> = names.iter().map(|n| format!("proxy:pgsql:@TABLES@/{n}")).collect();
    // Every request in the event loop: a busy process tells master so, and
    // master starts more (with connection threads one process serves them
    // all, within max_connections).
    let main_cf = format!("proxy_read_maps = {}\nproxymap_connection_threads = no\n", maps.join(" "));
    let mut inst = Instance::new("pgsql-count", &main_cf, Server::Ours);
    write_tables(&inst, &pg, &tables);
    inst.start();
    // Each key misses in the first 17 tables: 18 lookups per key.
    let keys: String =
        (0..60).map(|i| if i % 4 == 3 { "alice@example.com\n".to_string() } else { format!("none{i}\n") }).collect();
    let proxied: Vec<String> = names.iter().map(|n| format!("proxy:pgsql:{}/{n}", inst.tables.display())).collect();
    let mut seen = BTreeSet::new();
    let mut peak = 0;
    let mut worst = (0, 0);
    std::thread::scope(|s| {
        // One after the other: master starts a process for a new client
        // only while the ones it has say they are saturated.
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (inst, proxied, keys) = (&inst, &proxied, &keys);
                s.spawn(move || {
                    std::thread::sleep(Duration::from_millis(400) * i as u32);
                    let mut args = vec!["-q", "-"];
                    args.extend(proxied.iter().map(String::as_str));
                    inst.postmap_stdin(&args, keys)
                })
            })
            .collect();
        while clients.iter().any(|c| !c.is_finished()) {
            // the server's count first: a process that starts after it is
            // still counted below
            let backends = pg.backends(DB);
            let procs = proxymap_processes(&inst);
            seen.extend(procs.iter().copied());
            if backends > peak {
                peak = backends;
                worst = (backends, procs.len());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for c in clients {
            let out = c.join().expect("client");
            assert!(out.status.success(), "postmap: {}", String::from_utf8_lossy(&out.stderr));
            let found = String::from_utf8_lossy(&out.stdout).lines().filter(|l| l.ends_with("alice-value")).count();
            assert_eq!(found, 15, "{}", String::from_utf8_lossy(&out.stdout));
        }
    });
    let processes = seen.len();
    eprintln!(
        "{CLIENTS} clients, 18 tables, max_connections = {MAX_CONNECTIONS}: {processes} proxymap processes, \
         at most {peak} server connections (bound {processes} x {MAX_CONNECTIONS} = {}; at the peak {} processes \
         ran; Postfix's proxymap: up to {processes} x 18 = {})",
        processes * MAX_CONNECTIONS,
        worst.1,
        processes * 18
    );
    assert!(processes >= 2, "master started only {processes} process(es)");
    assert!(peak >= 1 && peak <= processes * MAX_CONNECTIONS, "{peak} connections for {processes} processes");
}
