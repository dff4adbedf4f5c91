//! `sqlite:` tables, ours against Postfix's: the same `.cf` files and
//! keys asked with `postmap -q KEY sqlite:CF` (Postfix's sqlite plugin, in
//! process) and `postmap -q KEY proxy:sqlite:CF` (through our proxymap in a
//! private Postfix instance). Answers and exit codes must be identical,
//! and so must the tables' warnings (Postfix's on postmap's stderr, ours in
//! the instance's log). Where Postfix 3.7 exits (a statement that cannot be
//! prepared, a bad configuration), ours answers RETRY with the same text in
//! its log (docs/compatibility.md).

mod common;

use common::mapdiff::{assert_same_warnings, compare, proxymap_lines, query, settled_log, write_settled};
use common::postfix::{Instance, Server};
use std::process::Command;

const SCHEMA: &str = "
CREATE TABLE t (k TEXT, v, w);
INSERT INTO t VALUES
  ('alice@example.com', 'alice-value', 'second column'),
  ('bob@sub.example.com', 'bob-value', NULL),
  ('o''brien@example.com', 'quoted', NULL),
  ('back\\slash', 'backslash', NULL),
  ('pct%s', 'percent', NULL),
  ('100%', 'hundred', NULL),
  ('multi', 'm1', NULL), ('multi', NULL, NULL), ('multi', '', NULL), ('multi', 'm2@example.org', NULL),
  ('null', NULL, NULL),
  ('empty', '', NULL),
  ('int', 42, NULL), ('real', 1.5, NULL), ('big', 1e20, NULL), ('round', 100.0, NULL),
  ('blob', X'41004243', NULL), ('emptyblob', X'', NULL),
  ('Upper', 'upper-case key', NULL),
  ('a@b@c.d', 'two ats', NULL),
  ('x@y.z', 'xyz', 'w-xyz'),
  ('blocked@blocked.example.com', 'blocked', NULL),
  ('user@other.org', 'other@other.org', NULL);
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
    "x'; DROP TABLE t; --",
    "x' UNION SELECT sqlite_version() --",
    "multi",
    "null",
    "empty",
    "int",
    "real",
    "big",
    "round",
    "blob",
    "emptyblob",
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
    "",
    " ",
];

/// `.cf` files (name, text after `dbpath`) asked with every key.
const TABLES: &[(&str, &str)] = &[
    ("basic.cf", "query = SELECT v FROM t WHERE k='%s'\n"),
    ("parts.cf", "query = SELECT '[%s][%u][%d][%1][%2]'\n"),
    ("columns.cf", "query = SELECT w, v FROM t WHERE k='%s'\n"),
    ("format.cf", "query = SELECT v FROM t WHERE k='%s'\nresult_format = <%s|%S|%U|%D|%1>\n"),
    ("value-parts.cf", "query = SELECT v FROM t WHERE k = '%s'\nresult_format = %u at %d\n"),
    ("limit.cf", "query = SELECT v FROM t WHERE k='%s'\nexpansion_limit = 1\n"),
    ("limit2.cf", "query = SELECT v FROM t WHERE k='%s'\nexpansion_limit = 2\n"),
    (
        "domain.cf",
        "query = SELECT v FROM t WHERE k='%s'\ndomain = !blocked.example.com, Example.COM @TABLES@/domains\n",
    ),
    ("domain-table.cf", "query = SELECT v FROM t WHERE k='%s'\ndomain = inline:{other.org=1, y.z=1}\n"),
    ("legacy.cf", "table = t\nselect_field = v\nwhere_field = k\nadditional_conditions = and v <> 'm1'\n"),
    ("legacy-bare.cf", "# the legacy form without conditions\ntable = t\nselect_field = v\n  , w\nwhere_field = k\n"),
    ("tail.cf", "query = SELECT v FROM t WHERE k='%u'; DROP TABLE t; garbage(\n"),
    ("literal.cf", "query = SELECT '%%'||'%s' WHERE '%s' <> 'x@y.z'\n"),
];

/// Tables Postfix 3.7 exits on (at open or at the first lookup), with the
/// fatal text; ours answers RETRY with the same text logged.
const FATAL: &[(&str, &str, &str)] = &[
    ("no-table.cf", "query = SELECT v FROM missing WHERE k='%s'\n", "SQL prepare failed: no such table: missing?"),
    ("bad-template.cf", "query = SELECT v FROM t WHERE k LIKE '100%'\n", "Invalid query template"),
    (
        "bad-limit.cf",
        "query = SELECT 1\nexpansion_limit = lots\n",
        "bad numerical configuration: expansion_limit = lots",
    ),
    ("no-legacy.cf", "table = t\n", "bad string length 0 < 1: select_field = "),
];

fn main_cf(cfs: &[&str]) -> String {
    let maps: Vec<String> = cfs.iter().map(|n| format!("proxy:sqlite:@TABLES@/{n}")).collect();
    format!(
        "proxy_read_maps = proxy:sqlite:sqmain {}\n\
         sqmain_dbpath = @TABLES@/t.db\n\
         sqmain_query = SELECT v FROM t WHERE k='%s'\n\
         sqmain_result_format = [%s]\n",
        maps.join(" ")
    )
}

fn setup(inst: &Instance) {
    let t = &inst.tables;
    let out = Command::new("sqlite3")
        .arg(t.join("t.db"))
        .arg(SCHEMA)
        .output()
        .expect("sqlite3 (scripts/install-test-deps.sh)");
    assert!(out.status.success(), "sqlite3: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(t.join("domains"), "# domains\nexample.org\nsub.example.com, other.org\n").expect("domains");
    for (name, rest) in TABLES.iter().copied().chain(FATAL.iter().map(|&(n, r, _)| (n, r))) {
        let text =
            format!("dbpath = {}\n{}", t.join("t.db").display(), rest.replace("@TABLES@", &t.display().to_string()));
        write_settled(&t.join(name), &text);
    }
    write_settled(&t.join("missing-db.cf"), &format!("dbpath = {}\nquery = SELECT 1\n", t.join("absent.db").display()));
}

#[test]
fn sqlite_tables_answer_as_postfix_in_process() {
    let names: Vec<&str> =
        TABLES.iter().map(|(n, _)| *n).chain(FATAL.iter().map(|(n, _, _)| *n)).chain(["missing-db.cf"]).collect();
    let mut inst = Instance::new("sqlite", &main_cf(&names), Server::Ours);
    setup(&inst);
    inst.start();
    let t = inst.tables.display().to_string();

    let tables: Vec<String> =
        TABLES.iter().map(|(n, _)| format!("sqlite:{t}/{n}")).chain(["sqlite:sqmain".to_string()]).collect();
    let found = compare(&inst, &tables, KEYS);
    assert!(found.hits > 60, "only {} hits: is the database there?", found.hits);

    // the tables' warnings: the same set (Postfix opens the table afresh
    // for each postmap run, ours once)
    assert_same_warnings(&inst, &found, 5);

    // Postfix exits; ours answers RETRY, logs the same text and keeps serving
    for (name, _, text) in FATAL {
        let table = format!("sqlite:{t}/{name}");
        let (theirs, _) = query(&inst, "alice@example.com", &table);
        assert!(theirs.starts_with("exit=Some(1) stdout=\"\"") && theirs.contains(text), "{name}: {theirs}");
        let (ours, _) = query(&inst, "alice@example.com", &format!("proxy:{table}"));
        assert!(ours.starts_with("exit=Some(1) stdout=\"\""), "{name}: {ours}");
        let (still, _) = query(&inst, "alice@example.com", &format!("proxy:sqlite:{t}/basic.cf"));
        assert!(still.starts_with("exit=Some(0) stdout=\"alice-value\\n\""), "{name}: {still}");
    }
    // a missing database: not created, one error line
    let (ours, _) = query(&inst, "k", &format!("proxy:sqlite:{t}/missing-db.cf"));
    assert!(ours.starts_with("exit=Some(1) stdout=\"\""), "{ours}");
    assert!(!inst.tables.join("absent.db").exists(), "the missing database was created");
    let log = settled_log(&inst);
    let errors = proxymap_lines(&log, "error");
    let warnings = proxymap_lines(&log, "warning");
    for (name, _, text) in FATAL {
        let cf = format!("{t}/{name}");
        let logged = errors.iter().chain(&warnings).filter(|l| l.contains(&cf) && l.contains(text)).count();
        assert!(logged >= 1, "{name}: {text:?} not logged:\n{log}");
    }
    let missing = format!("sqlite:{t}/missing-db.cf: open database {t}/absent.db: unable to open database file: No such file or directory");
    assert_eq!(errors.iter().filter(|l| **l == missing).count(), 1, "{log}");
}
