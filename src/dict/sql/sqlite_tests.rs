use super::*;
use crate::config::Params;
use crate::dict::testutil::get;
use crate::dict::Mode;
use crate::protocol::flags::{PATTERN, UTF8_ACTIVE};
use crate::test_support::{backdate, TempDir};

const SCHEMA: &str = "
CREATE TABLE t (k TEXT, v, w);
INSERT INTO t VALUES
  ('alice@example.com', 'alice-value', 'second column'),
  ('o''brien@example.com', 'quoted', NULL),
  ('back\\slash', 'backslash', NULL),
  ('pct%s', 'percent', NULL),
  ('multi', 'm1', NULL), ('multi', NULL, NULL), ('multi', '', NULL), ('multi', 'm2', NULL),
  ('null', NULL, NULL),
  ('empty', '', NULL),
  ('int', 42, NULL), ('real', 1.5, NULL), ('big', 1e20, NULL), ('round', 100.0, NULL),
  ('blob', X'41004243', NULL), ('emptyblob', X'', NULL),
  ('Upper', 'upper-case key', NULL),
  ('a@b@c.d', 'two ats', NULL);
";

struct Lab {
    dir: TempDir,
    db: String,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let dir = TempDir::new(tag);
        let db = dir.path().join("t.db").to_str().unwrap().to_string();
        Connection::open(&db).unwrap().execute_batch(SCHEMA).unwrap();
        Lab { dir, db }
    }

    /// A settled `.cf` file with `dbpath` set, plus `rest`.
    fn cf(&self, name: &str, rest: &str) -> String {
        let path = self.dir.write(name, format!("dbpath = {}\n{rest}", self.db));
        backdate(&path);
        path.to_str().unwrap().to_string()
    }

    fn open(&self, rest: &str) -> Box<dyn Dict> {
        open_cf(&self.cf("t.cf", rest), Mode::ReadOnly, 0).unwrap_or_else(|e| panic!("{}", e.reason))
    }
}

fn open_cf(name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    let params = Params::default();
    open(&OpenRequest { type_name: "sqlite", name, mode, flags, params: &params })
}

fn open_err(name: &str) -> String {
    open_cf(name, Mode::ReadOnly, 0).err().map(|e| e.reason).unwrap_or_default()
}

const QUERY: &str = "query = SELECT v FROM t WHERE k='%s'\n";

#[test]
fn hits_misses_and_column_zero_only() {
    let lab = Lab::new("sqlite-hits");
    let mut d = lab.open(QUERY);
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "nobody@example.com", 0), None);
    let mut d = lab.open("query = SELECT w, v FROM t WHERE k='%s'\n");
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("second column"));
}

#[test]
fn quotes_are_doubled_and_nothing_else_changes() {
    let lab = Lab::new("sqlite-quotes");
    let mut d = lab.open(QUERY);
    assert_eq!(get(&mut d, "o'brien@example.com", 0).as_deref(), Some("quoted"));
    assert_eq!(get(&mut d, "back\\slash", 0).as_deref(), Some("backslash"));
    assert_eq!(get(&mut d, "pct%s", 0).as_deref(), Some("percent"));
    // injection attempts stay inside the string literal
    assert_eq!(get(&mut d, "x' OR '1'='1", 0), None);
    assert_eq!(get(&mut d, "x'; DROP TABLE t; --", 0), None);
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
}

#[test]
fn rows_are_joined_nulls_and_empties_skipped() {
    let lab = Lab::new("sqlite-rows");
    let mut d = lab.open(QUERY);
    assert_eq!(get(&mut d, "multi", 0).as_deref(), Some("m1,m2"));
    assert_eq!(get(&mut d, "null", 0), None);
    assert_eq!(get(&mut d, "empty", 0), None);
    assert_eq!(get(&mut d, "emptyblob", 0), None);
}

#[test]
fn values_read_as_sqlite_gives_them_as_text() {
    let lab = Lab::new("sqlite-text");
    let mut d = lab.open(QUERY);
    // [verified with postmap -q: 42, 1.5, 1.0e+20, 100.0, A]
    assert_eq!(get(&mut d, "int", 0).as_deref(), Some("42"));
    assert_eq!(get(&mut d, "real", 0).as_deref(), Some("1.5"));
    assert_eq!(get(&mut d, "big", 0).as_deref(), Some("1.0e+20"));
    assert_eq!(get(&mut d, "round", 0).as_deref(), Some("100.0"));
    assert_eq!(get(&mut d, "blob", 0).as_deref(), Some("A"), "cut at the first NUL");
}

#[test]
fn result_format_and_expansion_limit() {
    let lab = Lab::new("sqlite-format");
    let mut d = lab.open(&format!("{QUERY}result_format = <%s|%S>\n"));
    assert_eq!(get(&mut d, "multi", 0).as_deref(), Some("<m1|multi>,<m2|multi>"));
    let mut d = lab.open(&format!("{QUERY}expansion_limit = 2\n"));
    assert_eq!(get(&mut d, "multi", 0).as_deref(), Some("m1,m2"), "skipped values do not count");
    let d = lab.open(&format!("{QUERY}expansion_limit = 1\n"));
    let mut out = b"stale".to_vec();
    assert_eq!(
        d.lookup(b"multi", 0, &mut out),
        Err(DictError::Retry(format!(
            "dict_sqlite_lookup: {}: Expansion limit exceeded for key 'multi'",
            lab.cf("t.cf", "")
        )))
    );
    assert!(out.is_empty());
}

#[test]
fn keys_fold_with_fold_fix_only() {
    let lab = Lab::new("sqlite-fold");
    let mut d = lab.open(QUERY);
    assert_eq!(get(&mut d, "Upper", 0).as_deref(), Some("upper-case key"));
    assert_eq!(get(&mut d, "Upper", FOLD_FIX), None);
    assert_eq!(get(&mut d, "ALICE@Example.COM", FOLD_FIX).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "ALICE@Example.COM", 0), None);
}

#[test]
fn keys_that_are_not_utf8_or_empty_are_not_found() {
    let lab = Lab::new("sqlite-utf8");
    let d = lab.open("query = SELECT 'always'\n");
    let mut out = Vec::new();
    assert_eq!(d.lookup(b"bad\xff", 0, &mut out), Ok(false));
    assert_eq!(d.lookup(b"bad\xff", UTF8_ACTIVE, &mut out), Ok(false));
    // a key is a C string: what follows a NUL is not part of it
    assert_eq!(d.lookup(b"\0ignored", 0, &mut out), Ok(false));
    assert_eq!(d.lookup(b"", 0, &mut out), Ok(false), "an empty key is never queried");
    assert_eq!(d.lookup(b"x", 0, &mut out), Ok(true));
    assert_eq!(out, b"always");
}

#[test]
fn literal_query_with_address_parts() {
    let lab = Lab::new("sqlite-parts");
    let mut d = lab.open("query = SELECT '[%s][%u][%d][%1][%2]'\n");
    assert_eq!(get(&mut d, "x@y.z", 0).as_deref(), Some("[x@y.z][x][y.z][z][y]"));
    assert_eq!(get(&mut d, "a@b@c.d", 0).as_deref(), Some("[a@b@c.d][a@b][c.d][d][c]"));
    assert_eq!(get(&mut d, "o'k@x.y", 0).as_deref(), Some("[o'k@x.y][o'k][x.y][y][x]"));
    for skipped in ["@example.com", "user@", "user@.com", "nodomain"] {
        assert_eq!(get(&mut d, skipped, 0), None, "{skipped}");
    }
}

#[test]
fn the_domain_filter_skips_keys_before_the_query() {
    let lab = Lab::new("sqlite-domain");
    let mut d = lab.open(&format!("{QUERY}domain = example.com\n"));
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "multi", 0), None, "no domain: not queried");
    let mut d = lab.open(&format!("{QUERY}domain = other.com\n"));
    assert_eq!(get(&mut d, "alice@example.com", 0), None);
    let d = lab.open(&format!("{QUERY}domain = fail:down\n"));
    assert!(matches!(d.lookup(b"alice@example.com", 0, &mut Vec::new()), Err(DictError::Retry(_))));
}

#[test]
fn legacy_parameters_build_the_query() {
    let lab = Lab::new("sqlite-legacy");
    let mut d = lab.open("table = t\nselect_field = v\nwhere_field = k\nadditional_conditions = AND v <> 'm2'\n");
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    assert_eq!(get(&mut d, "multi", 0).as_deref(), Some("m1"));
}

#[test]
fn only_the_first_statement_runs() {
    let lab = Lab::new("sqlite-first");
    let mut d = lab.open("query = SELECT v FROM t WHERE k='%s'; DELETE FROM t; garbage(\n");
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
    let mut d = lab.open("query = ; /* leading empty statements are skipped */\n  ;SELECT '%s'\n");
    assert_eq!(get(&mut d, "x", 0).as_deref(), Some("x"));
}

#[test]
fn statement_failures_answer_retry_and_the_table_stays_up() {
    let lab = Lab::new("sqlite-fail");
    let cf = lab.cf("t.cf", "query = SELECT v FROM missing WHERE k='%s'\n");
    let d = open_cf(&cf, Mode::ReadOnly, 0).unwrap();
    let r = d.lookup(b"k", 0, &mut Vec::new());
    assert_eq!(
        r,
        Err(DictError::Retry(format!("dict_sqlite_lookup: {cf}: SQL prepare failed: no such table: missing?")))
    );
    assert_eq!(d.lookup(b"k", 0, &mut Vec::new()), r, "and again");
    // a query with no statement at all: Postfix's step on nothing
    let cf = lab.cf("w.cf", "query = %s\n");
    let mut d = open_cf(&cf, Mode::ReadOnly, 0).unwrap();
    assert_eq!(
        d.lookup(b" ", 0, &mut Vec::new()),
        Err(DictError::Retry(format!("dict_sqlite_lookup: {cf}: SQL step failed for query ' ': not an error?")))
    );
    assert_eq!(get(&mut d, "SELECT 7", 0).as_deref(), Some("7"));
}

#[test]
fn a_locked_database_answers_retry_after_the_busy_timeout() {
    let lab = Lab::new("sqlite-busy");
    let d = lab.open(QUERY);
    let writer = Connection::open(&lab.db).unwrap();
    writer.execute_batch("BEGIN EXCLUSIVE; UPDATE t SET v = 'changed' WHERE k = 'int';").unwrap();
    let start = std::time::Instant::now();
    let r = d.lookup(b"alice@example.com", 0, &mut Vec::new());
    assert!(start.elapsed() >= BUSY_TIMEOUT, "waited {:?}", start.elapsed());
    match r {
        Err(DictError::Retry(text)) => assert!(text.ends_with("database is locked?"), "{text}"),
        other => panic!("{other:?}"),
    }
    writer.execute_batch("COMMIT").unwrap();
    let mut d = d;
    assert_eq!(get(&mut d, "int", 0).as_deref(), Some("changed"));
}

#[test]
fn open_refuses_writers_and_reports_flags() {
    let lab = Lab::new("sqlite-open");
    let cf = lab.cf("t.cf", QUERY);
    assert_eq!(
        open_cf(&cf, Mode::ReadWrite, 0).err().unwrap().reason,
        format!("sqlite:{cf} map requires O_RDONLY access mode")
    );
    let d = open_cf(&cf, Mode::ReadOnly, FOLD_FIX).unwrap();
    assert_eq!(d.flags(), FOLD_FIX | FIXED);
    assert_eq!(d.flags() & PATTERN, 0);
    assert_eq!(d.waits(), Waits::Always);
}

#[test]
fn a_missing_database_is_not_created() {
    let lab = Lab::new("sqlite-missing");
    let db = lab.dir.path().join("absent.db");
    let cf = lab.dir.write("m.cf", format!("dbpath = {}\n{QUERY}", db.display()));
    backdate(&cf);
    let cf = cf.to_str().unwrap();
    assert_eq!(
        open_err(cf),
        format!("sqlite:{cf}: open database {}: unable to open database file: No such file or directory", db.display())
    );
    assert!(!db.exists());
}

#[test]
fn configuration_errors_come_in_postfix_order_with_postfix_text() {
    let lab = Lab::new("sqlite-config");
    let missing = format!("{}/none.cf", lab.dir.path().display());
    assert_eq!(open_err(&missing), format!("open {missing}: No such file or directory"));
    let cf = lab.dir.write("e.cf", "query = SELECT 1\n");
    backdate(&cf);
    let cf = cf.to_str().unwrap();
    assert_eq!(open_err(cf), format!("{cf}: bad string length 0 < 1: dbpath = "));
    let cases = [
        ("", "bad string length 0 < 1: table = "),
        ("query = x\nresult_format =\n", "bad string length 0 < 1: result_format = "),
        ("query = x\nexpansion_limit = many\n", "bad numerical configuration: expansion_limit = many"),
        ("query = SELECT 100% FROM t\nexpansion_limit = x\n", "bad numerical configuration: expansion_limit = x"),
        ("query = SELECT 100% FROM t\nresult_format = %x\n", "Invalid query template: SELECT 100% FROM t"),
        ("query = %s\nresult_format = %x\n", "Invalid result template: %x"),
        ("query = %s\ndomain = a, !\n", "no pattern after '!'"),
    ];
    for (rest, want) in cases {
        let cf = lab.cf("c.cf", rest);
        let got = open_err(&cf);
        assert!(got.starts_with(&cf) || got.starts_with("db_common_parse: "), "{rest:?}: {got}");
        assert!(got.ends_with(want), "{rest:?}: {got}");
    }
}

#[test]
fn main_cf_form_is_read_from_params() {
    let lab = Lab::new("sqlite-maincf");
    let params = Params::from_text(
        &format!(
            "dbdir = {}\nsq_dbpath = $dbdir/t.db\nsq_query = SELECT v FROM t WHERE k='%s'\n",
            lab.dir.path().display()
        ),
        "main.cf",
        &[],
    )
    .unwrap();
    let mut d = open(&OpenRequest { type_name: "sqlite", name: "sq", mode: Mode::ReadOnly, flags: 0, params: &params })
        .unwrap();
    assert_eq!(get(&mut d, "alice@example.com", 0).as_deref(), Some("alice-value"));
}

#[test]
fn sqlite_quote_doubles_single_quotes_only() {
    let mut out = Vec::new();
    quote(b"a'b''c\\d\"e%f\n", &mut out);
    assert_eq!(out, b"a''b''''c\\d\"e%f\n");
}

#[test]
fn the_registry_knows_sqlite() {
    assert!(crate::dict::registry::lookup("sqlite").is_some());
}
