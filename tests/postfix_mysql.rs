//! `mysql:` tables, ours against Postfix's: the same `.cf` files and keys
//! asked with `postmap -q KEY mysql:CF` (Postfix's mysql plugin, in
//! process, a fresh connection each run) and `postmap -q KEY
//! proxy:mysql:CF` (through our proxymap in a private Postfix instance),
//! against a MariaDB server of the test's own. Answers and exit codes must
//! be identical, and so must the tables' warnings (Postfix's on postmap's
//! stderr, ours in the instance's log). Where ours is better on purpose
//! (a connection the server killed is replaced at once), the better answer
//! is asserted (docs/compatibility.md).

mod common;

#[path = "../src/dict/sql/test_mariadb.rs"]
mod mariadb;

use common::mapdiff::{assert_same_warnings, compare, proxymap_lines, query, settled_log, write_settled};
use common::postfix::{Instance, Server};
use common::TempDir;
use mariadb::{Mariadb, DB, PASSWORD, USER};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const SCHEMA: &[&str] = &[
    "CREATE TABLE t (k VARCHAR(100) COLLATE utf8mb4_general_ci, v VARCHAR(100), w VARCHAR(100), n INT, d DECIMAL(6,2))",
    "INSERT INTO t VALUES
      ('alice@example.com', 'alice-value', 'second column', 42, 1.50),
      ('bob@sub.example.com', 'bob-value', NULL, NULL, NULL),
      ('o''brien@example.com', 'quoted', NULL, NULL, NULL),
      ('back\\\\slash', 'backslash', NULL, NULL, NULL),
      ('dq\"x', 'double quote', NULL, NULL, NULL),
      ('pct%s', 'percent', NULL, NULL, NULL),
      ('100%', 'hundred', NULL, NULL, NULL),
      ('multi', 'm1', NULL, NULL, NULL), ('multi', NULL, 'm2', NULL, NULL),
      ('multi', '', NULL, NULL, NULL), ('multi', 'm3@example.org', NULL, 7, NULL),
      ('null', NULL, NULL, NULL, NULL),
      ('empty', '', NULL, NULL, NULL),
      ('Upper', 'upper-case key', NULL, NULL, NULL),
      ('a@b@c.d', 'two ats', NULL, NULL, NULL),
      ('x@y.z', 'xyz', 'w-xyz', NULL, NULL),
      ('blocked@blocked.example.com', 'blocked', NULL, NULL, NULL),
      ('user@other.org', 'other@other.org', NULL, NULL, NULL),
      ('ü@example.com', 'umlaut', NULL, NULL, NULL)",
    "CREATE PROCEDURE one(IN key_ VARCHAR(100)) SELECT v FROM t WHERE k = key_",
    "CREATE PROCEDURE two() BEGIN SELECT 'a'; SELECT 'b'; END",
    "CREATE PROCEDURE none_() BEGIN DO 1; END",
];

const KEYS: &[&str] = &[
    "alice@example.com",
    "ALICE@Example.COM",
    "nobody@example.com",
    "bob@sub.example.com",
    "o'brien@example.com",
    "back\\slash",
    "dq\"x",
    "pct%s",
    "100%",
    "x' OR '1'='1",
    "x\\' OR 1=1 -- ",
    "x'; DROP TABLE t; --",
    "multi",
    "null",
    "empty",
    "Upper",
    "a@b@c.d",
    "@example.com",
    "user@",
    "nodomain",
    "x@y.z",
    "u@example..com",
    "blocked@blocked.example.com",
    "user@other.org",
    "ü@example.com",
    "",
    " ",
];

/// `.cf` files (name, text after the connection settings) asked with every key.
const TABLES: &[(&str, &str)] = &[
    ("basic.cf", "query = SELECT v FROM t WHERE k='%s'\n"),
    ("parts.cf", "query = SELECT '[%s][%u][%d][%1][%2]'\n"),
    ("columns.cf", "query = SELECT v, w, n, d FROM t WHERE k='%s'\n"),
    ("format.cf", "query = SELECT v FROM t WHERE k='%s'\nresult_format = <%s|%S|%U|%D|%1>\n"),
    ("value-parts.cf", "query = SELECT v FROM t WHERE k = '%s'\nresult_format = %u at %d\n"),
    ("limit.cf", "query = SELECT v FROM t WHERE k='%s'\nexpansion_limit = 1\n"),
    ("limit2.cf", "query = SELECT v, w FROM t WHERE k='%s'\nexpansion_limit = 2\n"),
    (
        "domain.cf",
        "query = SELECT v FROM t WHERE k='%s'\ndomain = !blocked.example.com, Example.COM @TABLES@/domains\n",
    ),
    ("domain-table.cf", "query = SELECT v FROM t WHERE k='%s'\ndomain = inline:{other.org=1, y.z=1}\n"),
    ("legacy.cf", "table = t\nselect_field = v\nwhere_field = k\nadditional_conditions = and v <> 'm1'\n"),
    ("legacy-bare.cf", "# the legacy form without conditions\ntable = t\nselect_field = v\n  , w\nwhere_field = k\n"),
    ("literal.cf", "query = SELECT CONCAT('%%', '%s') FROM DUAL WHERE '%s' <> 'x@y.z'\n"),
    ("proc.cf", "query = CALL one('%s')\n"),
    ("two-sets.cf", "query = CALL two()\n"),
    ("no-set.cf", "query = DO '%s'\n"),
    ("no-set-ok.cf", "query = CALL none_()\nrequire_result_set = no\n"),
    ("bad-column.cf", "query = SELECT nosuchcolumn FROM t WHERE k='%s'\n"),
    ("two-statements.cf", "query = SELECT v FROM t WHERE k='%s'; SELECT 1\n"),
    ("charset.cf", "query = SELECT @@character_set_client, '%s'\n"),
];

/// The connection settings of every table: TCP with the password (our
/// proxymap runs as the mail owner, who cannot reach a socket in the
/// server's private directory).
fn connection(db: &Mariadb) -> String {
    format!("hosts = inet:127.0.0.1:{}\nuser = {USER}\npassword = {PASSWORD}\ndbname = {DB}\n", db.port())
}

fn main_cf(db: &Mariadb, cfs: &[&str]) -> String {
    let maps: Vec<String> = cfs.iter().map(|n| format!("proxy:mysql:@TABLES@/{n}")).collect();
    format!(
        "proxy_read_maps = proxy:mysql:mymain {}\n\
         mymain_hosts = 127.0.0.1:{}\n\
         mymain_user = {USER}\n\
         mymain_password = {PASSWORD}\n\
         mymain_dbname = {DB}\n\
         mymain_query = SELECT v FROM t WHERE k='%s'\n\
         mymain_result_format = [%s]\n",
        maps.join(" "),
        db.port()
    )
}

fn setup(inst: &Instance, db: &Mariadb) {
    let t = &inst.tables;
    std::fs::write(t.join("domains"), "# domains\nexample.org\nsub.example.com, other.org\n").expect("domains");
    for (name, rest) in TABLES {
        let text = format!("{}{}", connection(db), rest.replace("@TABLES@", &t.display().to_string()));
        write_settled(&t.join(name), &text);
    }
}

#[test]
fn mysql_tables_answer_as_postfix_in_process() {
    let Some(db) = Mariadb::start("pf-mysql") else { return };
    for statement in SCHEMA {
        db.sql(statement);
    }
    let names: Vec<&str> = TABLES.iter().map(|(n, _)| *n).collect();
    let mut inst = Instance::new("mysql", &main_cf(&db, &names), Server::Ours);
    setup(&inst, &db);
    inst.start();
    let t = inst.tables.display().to_string();

    let tables: Vec<String> =
        TABLES.iter().map(|(n, _)| format!("mysql:{t}/{n}")).chain(["mysql:mymain".to_string()]).collect();
    let found = compare(&inst, &tables, KEYS);
    assert!(found.hits > 60, "only {} hits: is the database there?", found.hits);

    assert_same_warnings(&inst, &found, 5);

    // Shared connections: one per proxymap process for every table here.
    let processes = proxymap_pids(&settled_log(&inst)).len();
    let connections = db.processlist();
    assert!(connections >= 1 && connections <= processes, "{connections} connections, {processes} proxymap processes");

    // Better than Postfix: with a single host, a connection the server
    // killed makes Postfix 3.7 answer RETRY (and keep the host down for
    // 60 s); ours replaces it and answers at once.
    let basic = format!("proxy:mysql:{t}/basic.cf");
    for id in db.connection_ids() {
        db.sql(&format!("KILL {id}"));
    }
    let started = Instant::now();
    let (ours, _) = query(&inst, "alice@example.com", &basic);
    assert_eq!(ours, "exit=Some(0) stdout=\"alice-value\\n\" stderr=\"\"");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// The PIDs of our proxymap processes that logged.
fn proxymap_pids(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter_map(|l| {
            l.split_once(" postfix/proxymap[").and_then(|(_, rest)| rest.split_once(']')).map(|(p, _)| p.to_string())
        })
        .collect()
}

#[test]
fn a_dead_server_is_retry_in_both_and_ours_says_so_once() {
    // A port nothing listens on: both answer RETRY at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let mut inst = Instance::new("mysql-dead", "proxy_read_maps = proxy:mysql:@TABLES@/dead.cf\n", Server::Ours);
    let cf = inst.tables.join("dead.cf");
    write_settled(&cf, &format!("hosts = 127.0.0.1:{port}\ndbname = d\nquery = SELECT 1\nconnect_timeout = 2\n"));
    inst.start();
    let table = format!("mysql:{}", cf.display());
    let (theirs, warnings) = query(&inst, "k", &table);
    assert!(theirs.starts_with("exit=Some(1) stdout=\"\""), "{theirs}");
    // the reason's errno is the non-blocking connect's (115), not ECONNREFUSED
    let head = format!("connect to mysql server 127.0.0.1:{port}: ");
    let reason = match warnings.as_slice() {
        [w] if w.starts_with(&head) => w[head.len()..].to_string(),
        other => panic!("{other:?}"),
    };
    assert!(reason.starts_with("Can't connect to server on '127.0.0.1'"), "{reason}");
    for _ in 0..3 {
        let (ours, _) = query(&inst, "k", &format!("proxy:{table}"));
        assert_eq!(ours, theirs);
    }
    let log = settled_log(&inst);
    let down: Vec<String> = proxymap_lines(&log, "warning").into_iter().filter(|l| l.contains("is down")).collect();
    assert_eq!(down, [format!("mysql server inet:127.0.0.1:{port} is down: {reason}")]);
}
