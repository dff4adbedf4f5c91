//! The mysql table against a MariaDB server of the test's own (skipped,
//! with a message, when MariaDB is not installed).
use super::*;
use crate::config::Params as MainCf;
use crate::dict::testutil::get;
use crate::dict::Mode;
use crate::test_support::{backdate, TempDir};
use std::time::Instant;

#[path = "test_mariadb.rs"]
mod mariadb;
use mariadb::{Mariadb, DB, PASSWORD, USER};

const SCHEMA: &[&str] = &[
    "CREATE TABLE t (k VARCHAR(100) COLLATE utf8mb4_general_ci, v VARCHAR(100), w VARCHAR(100))",
    "INSERT INTO t VALUES
      ('alice@example.com', 'alice-value', 'second column'),
      ('o''brien@example.com', 'quoted', NULL),
      ('back\\\\slash', 'backslash', NULL),
      ('dq\"x', 'double quote', NULL),
      ('pct%s', 'percent', NULL),
      ('multi', 'm1', NULL), ('multi', NULL, 'm2'), ('multi', '', 'm3'),
      ('null', NULL, NULL),
      ('empty', '', NULL),
      ('x@y.z', 'xyz', NULL)",
    "CREATE PROCEDURE one(IN key_ VARCHAR(100)) SELECT v FROM t WHERE k = key_",
    "CREATE PROCEDURE two() BEGIN SELECT 'a'; SELECT 'b'; END",
    "CREATE PROCEDURE none_() BEGIN DO 1; END",
];

struct Lab {
    db: Mariadb,
    dir: TempDir,
    n: std::cell::Cell<u32>,
}

impl Lab {
    fn start(tag: &str) -> Option<Lab> {
        let db = Mariadb::start(tag)?;
        for statement in SCHEMA {
            db.sql(statement);
        }
        Some(Lab { db, dir: TempDir::new(&format!("{tag}-cf")), n: std::cell::Cell::new(0) })
    }

    /// A table over the server's socket with the test login, plus `rest`.
    fn open(&self, rest: &str) -> Mysql {
        self.open_raw(&format!(
            "hosts = unix:{}\nuser = {USER}\npassword = {PASSWORD}\ndbname = {DB}\n{rest}",
            self.db.socket().display()
        ))
    }

    fn open_raw(&self, text: &str) -> Mysql {
        self.n.set(self.n.get() + 1);
        let path = self.dir.write(&format!("t{}.cf", self.n.get()), text);
        backdate(&path);
        let name = path.to_str().unwrap().to_string();
        let params = MainCf::default();
        let req = OpenRequest { type_name: "mysql", name: &name, mode: Mode::ReadOnly, flags: 0, params: &params };
        build(&req).unwrap_or_else(|e| panic!("{}", e.reason))
    }
}

const QUERY: &str = "query = SELECT v FROM t WHERE k='%s'\n";

fn boxed(d: Mysql) -> Box<dyn Dict> {
    Box::new(d)
}

fn retry(d: &Mysql, key: &str) -> String {
    let mut out = b"stale".to_vec();
    match d.lookup(key.as_bytes(), 0, &mut out) {
        Err(DictError::Retry(text)) => {
            assert!(out.is_empty());
            text
        }
        other => panic!("{key}: {other:?}"),
    }
}

#[test]
fn lookups_against_a_server() {
    let Some(lab) = Lab::start("mysql-server") else { return };
    let mut d = boxed(lab.open(QUERY));
    // hits, misses, the column's _ci collation, FOLD_FIX
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "nobody@example.com", 0), None);
    assert_eq!(get(&mut d, "ALICE@Example.COM", 0).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "ALICE@Example.COM", FOLD_FIX).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "alice@example.com\0junk", 0).as_deref(), Some("alice-value"), "up to a NUL");
    // quotes, backslashes, % in keys; injection attempts stay literals
    assert_eq!(get(&mut d, "o'brien@example.com", 0).as_deref(), Some("quoted"));
    assert_eq!(get(&mut d, "back\\slash", 0).as_deref(), Some("backslash"));
    assert_eq!(get(&mut d, "dq\"x", 0).as_deref(), Some("double quote"));
    assert_eq!(get(&mut d, "pct%s", 0).as_deref(), Some("percent"));
    for key in ["x' OR '1'='1", "x\\' OR 1=1 -- ", "x'; DROP TABLE t; --", "x\n' OR 1 #", "x\u{1a}' OR 1 #"] {
        assert_eq!(get(&mut d, key, 0), None, "{key:?}");
    }
    assert_eq!(lab.db.sql("SELECT COUNT(*) FROM t"), "11");
    // one shared connection for every table with the same server
    let mut d2 = boxed(lab.open("query = SELECT w FROM t WHERE k='%s'\n"));
    assert_eq!(get(&mut d2, "alice@example.com", 0).as_deref(), Some("second column"));
    assert_eq!(lab.db.processlist(), 1);

    // every column of every row; NULL skipped, empty values warned about
    let mut d = boxed(lab.open("query = SELECT v, w FROM t WHERE k='%s'\n"));
    assert_eq!(get(&mut d, "multi", 0).as_deref(), Some("m1,m2,m3"));
    assert_eq!(get(&mut d, "null", 0), None);
    assert_eq!(get(&mut d, "empty", 0), None);
    let mut d = boxed(lab.open("query = SELECT v, w FROM t WHERE k='%s'\nresult_format = <%s|%S>\n"));
    assert_eq!(get(&mut d, "multi", 0).as_deref(), Some("<m1|multi>,<m2|multi>,<m3|multi>"));
    let d = lab.open("query = SELECT v, w FROM t WHERE k='%s'\nexpansion_limit = 2\n");
    assert!(retry(&d, "multi").ends_with("Expansion limit exceeded for key: 'multi'"));
    // %1..%9 and the domain filter
    let mut d = boxed(lab.open("query = SELECT '%2.%1', '%u'\n"));
    assert_eq!(get(&mut d, "user@sub.example.com", 0).as_deref(), Some("example.com,user"));
    assert_eq!(get(&mut d, "nodomain", 0), None);
    let mut d = boxed(lab.open(&format!("{QUERY}domain = example.com\n")));
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "x@y.z", 0), None);

    // statements without a result set, stored procedures
    let mut d = boxed(lab.open("query = DO '%s'\nrequire_result_set = no\n"));
    assert_eq!(get(&mut d, "k", 0), None);
    let d = lab.open("query = DO '%s'\n");
    assert!(retry(&d, "k").ends_with(": query failed: query returned no result set(require_result_set = yes)"));
    let mut d = boxed(lab.open("query = CALL one('%s')\n"));
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "nobody", 0), None);
    let d = lab.open("query = CALL two()\n");
    assert!(retry(&d, "k").ends_with(": query failed: multiple result sets returning data are not supported"));
    let mut d = boxed(lab.open("query = CALL none_()\nrequire_result_set = no\n"));
    assert_eq!(get(&mut d, "k", 0), None);

    // an SQL error fails that lookup only: the next one is answered
    let d = lab.open("query = SELECT nosuchcolumn FROM t WHERE k='%s'\n");
    let text = retry(&d, "k");
    assert!(text.contains(": query failed: Unknown column 'nosuchcolumn' in "), "{text}");
    let mut d = boxed(lab.open(QUERY));
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));

    // utf8mb4 unless told otherwise
    let mut d = boxed(lab.open("query = SELECT @@character_set_client, '%s'\n"));
    assert_eq!(get(&mut d, "k", 0).as_deref(), Some("utf8mb4,k"));
    let mut d = boxed(lab.open("query = SELECT @@character_set_client, '%s'\ncharset = latin1\n"));
    assert_eq!(get(&mut d, "k", 0).as_deref(), Some("latin1,k"));
    let d = lab.open("query = SELECT 1\ncharset = nosuchcharset\n");
    assert!(retry(&d, "k").contains("mysql_set_character_set 'nosuchcharset' failed"));

    // over TCP with the password; a wrong one is refused
    let port = lab.db.port();
    let tcp = format!("hosts = inet:127.0.0.1:{port}\nuser = {USER}\npassword = {PASSWORD}\ndbname = {DB}\n{QUERY}");
    let mut d = boxed(lab.open_raw(&tcp));
    assert_eq!(get(&mut d, "o'brien@example.com", 0).as_deref(), Some("quoted"));
    let d = lab.open_raw(&format!("hosts = 127.0.0.1:{port}\nuser = {USER}\npassword = wrong\ndbname = {DB}\n{QUERY}"));
    let text = retry(&d, "k");
    assert!(text.contains("is down: Access denied for user 'proxymap'@'127.0.0.1'"), "{text}");
    assert!(!text.contains("wrong"), "{text}");

    // a query that hangs: RETRY within the query timeout
    let d = lab.open("query = SELECT SLEEP(30), '%s'\nquery_timeout = 1\n");
    let started = Instant::now();
    let text = retry(&d, "k");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert!(text.ends_with(": query failed: no answer within 1 s"), "{text}");
}

#[test]
fn connections_the_server_dropped_are_replaced_at_once() {
    let Some(mut lab) = Lab::start("mysql-recover") else { return };
    let mut d = boxed(lab.open(&format!("{QUERY}retry_interval = 60\n")));
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    // KILL of our connection
    let ids = lab.db.connection_ids();
    assert_eq!(ids.len(), 1);
    lab.db.sql(&format!("KILL {}", ids[0]));
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_ne!(lab.db.connection_ids(), ids);
    // a server restarted, then one killed, while the pool holds a connection
    lab.db.restart();
    let started = Instant::now();
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    lab.db.crash();
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert!(started.elapsed() < Duration::from_secs(60) && lab.db.processlist() == 1);
}

#[test]
fn a_server_that_never_answers_is_retry_within_the_connect_timeout() {
    // accepted by the kernel, never answered
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = TempDir::new("mysql-hung");
    let path = dir.write("t.cf", format!("hosts = 127.0.0.1:{port}\ndbname = d\n{QUERY}connect_timeout = 1\n"));
    backdate(&path);
    let name = path.to_str().unwrap().to_string();
    let params = MainCf::default();
    let req = OpenRequest { type_name: "mysql", name: &name, mode: Mode::ReadOnly, flags: 0, params: &params };
    let d = build(&req).unwrap();
    let started = Instant::now();
    let text = retry(&d, "k");
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    assert!(text.contains(&format!("mysql server inet:127.0.0.1:{port} is down")), "{text}");
    // marked down: the next lookup is answered at once
    let started = Instant::now();
    retry(&d, "k");
    assert!(started.elapsed() < Duration::from_millis(500));
}
