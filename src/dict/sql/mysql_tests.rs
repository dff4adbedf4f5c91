//! The mysql table without a server: configuration, hosts, assembly.
use super::*;
use crate::config::Params as MainCf;
use crate::dict::Mode;
use crate::test_support::{backdate, TempDir};

fn endpoint(host: Option<&str>, socket: Option<&str>, port: u16) -> Endpoint {
    Endpoint { host: host.map(str::to_string), socket: socket.map(str::to_string), port }
}

#[test]
fn hosts_entries_as_postfix_reads_them() {
    let ok = |e: &str| parse_host(e).unwrap_or_else(|err| panic!("{e}: {}", err.reason));
    assert_eq!(ok("localhost"), endpoint(None, None, 0));
    assert_eq!(ok("LocalHost"), endpoint(None, None, 0), "any case");
    assert_eq!(ok("inet:localhost:3307"), endpoint(None, None, 3307), "still the default socket");
    assert_eq!(ok("unix:/run/mysqld/mysqld.sock"), endpoint(None, Some("/run/mysqld/mysqld.sock"), 0));
    assert_eq!(ok("127.0.0.1"), endpoint(Some("127.0.0.1"), None, 0));
    assert_eq!(ok("db.example.com:3307"), endpoint(Some("db.example.com"), None, 3307));
    assert_eq!(ok("inet:10.1.2.3:3306"), endpoint(Some("10.1.2.3"), None, 3306));
    assert_eq!(ok("inet:db:65535"), endpoint(Some("db"), None, 65535));
    // a port after a socket path is taken off it, as Postfix does
    assert_eq!(ok("unix:/tmp/s.sock:3306"), endpoint(None, Some("/tmp/s.sock"), 3306));
    let err = |e: &str| parse_host(e).err().map(|e| e.reason).unwrap_or_default();
    assert_eq!(err("db:65536"), "bad port number: 65536");
    assert_eq!(err("db:99999999999999999999"), "bad port number: 99999999999999999999");
    assert_eq!(err("db:nosuchservice"), "unknown service: nosuchservice/tcp");
    assert_eq!(err("db:0"), "unknown service: 0/tcp");
    assert_eq!(err("db:"), "unknown service: /tcp");
}

#[test]
fn service_names_come_from_services_text() {
    let text = "# comment\nsmtp\t\t25/tcp\t\tmail\nmysql 3306/tcp # MySQL\nmysql 3306/udp\nonlyudp 9/udp\n";
    assert_eq!(service_port(text, "mysql"), Some(3306));
    assert_eq!(service_port(text, "mail"), Some(25), "an alias");
    assert_eq!(service_port(text, "onlyudp"), None);
    assert_eq!(service_port(text, "MySQL"), None);
}

#[test]
fn servers_are_named_by_their_endpoint_never_with_a_password() {
    let name = |e: &str| endpoint_name(&parse_host(e).unwrap());
    assert_eq!(name("unix:/nowhere.sock"), "unix:/nowhere.sock");
    assert_eq!(name("127.0.0.1:1"), "inet:127.0.0.1:1");
    assert_eq!(name("inet:db"), "inet:db:0");
    assert_eq!(name("localhost"), "localhost");
}

struct Lab {
    dir: TempDir,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        Lab { dir: TempDir::new(tag) }
    }

    fn cf(&self, text: &str) -> String {
        let path = self.dir.write("t.cf", text);
        backdate(&path);
        path.to_str().unwrap().to_string()
    }

    fn open_err(&self, text: &str) -> String {
        match open_cf(&self.cf(text), Mode::ReadOnly) {
            Ok(_) => String::new(),
            Err(e) => e.reason,
        }
    }

    fn open(&self, text: &str) -> Mysql {
        let text = format!("dbname = d\nquery = SELECT v FROM t WHERE k='%s'\n{text}");
        let params = MainCf::default();
        let name = self.cf(&text);
        let req = OpenRequest { type_name: "mysql", name: &name, mode: Mode::ReadOnly, flags: 0, params: &params };
        build(&req).unwrap_or_else(|e| panic!("{}", e.reason))
    }
}

fn open_cf(name: &str, mode: Mode) -> Result<Box<dyn Dict>, OpenError> {
    let params = MainCf::default();
    open(&OpenRequest { type_name: "mysql", name, mode, flags: 0, params: &params })
}

#[test]
fn configuration_errors_come_in_postfix_order_with_its_texts() {
    let lab = Lab::new("mysql-cf");
    let t = lab.cf("");
    assert_eq!(lab.open_err(""), format!("{t}: bad string length 0 < 1: dbname = "));
    assert_eq!(lab.open_err("dbname = d\n"), format!("{t}: bad string length 0 < 1: table = "));
    assert_eq!(lab.open_err("dbname = d\ncharset =\n"), format!("{t}: bad string length 0 < 1: charset = "));
    assert_eq!(
        lab.open_err("dbname = d\nretry_interval = 0\n"),
        format!("{t}: invalid retry_interval parameter value 0 < 1")
    );
    assert_eq!(
        lab.open_err("dbname = d\nresult_format =\n"),
        format!("{t}: bad string length 0 < 1: result_format = ")
    );
    assert_eq!(
        lab.open_err("dbname = d\nrequire_result_set = maybe\n"),
        format!("{t}: bad boolean configuration: require_result_set = maybe")
    );
    assert_eq!(
        lab.open_err("dbname = d\nquery = SELECT 100% FROM t\n"),
        format!("db_common_parse: {t}: Invalid query template: SELECT 100% FROM t")
    );
    assert_eq!(lab.open_err("dbname = d\nquery = SELECT 1\nhosts = db:70000\n"), "bad port number: 70000");
    assert_eq!(lab.open_err("dbname = d\nquery = SELECT 1\n"), "", "a server is not contacted at open");
    assert_eq!(
        open_cf("/nonexistent/t.cf", Mode::ReadOnly).err().unwrap().reason,
        "open /nonexistent/t.cf: No such file or directory"
    );
    let t = lab.cf("dbname = d\nquery = SELECT 1\n");
    assert_eq!(
        open_cf(&t, Mode::ReadWrite).err().unwrap().reason,
        format!("mysql:{t} map requires O_RDONLY access mode")
    );
}

#[test]
fn flags_are_fixed_and_lookups_may_wait() {
    let lab = Lab::new("mysql-flags");
    let d = lab.open("hosts = unix:/nowhere.sock\n");
    assert_eq!(d.flags() & FIXED, FIXED);
    assert!(matches!(d.waits(), Waits::Always));
}

#[test]
fn keys_the_templates_rule_out_are_not_found_without_a_server() {
    let lab = Lab::new("mysql-skip");
    // no server there: a query would fail with RETRY
    let d = lab.open("hosts = unix:/nowhere.sock\nquery = SELECT '%d'\ndomain = example.com\nconnect_timeout = 1\n");
    let mut out = b"stale".to_vec();
    for key in ["nodomain", "user@other.org", "@example.com", ""] {
        assert_eq!(d.lookup(key.as_bytes(), 0, &mut out), Ok(false), "{key}");
        assert!(out.is_empty());
    }
    match d.lookup(b"user@example.com", 0, &mut out) {
        Err(DictError::Retry(text)) => assert!(text.contains("mysql server unix:/nowhere.sock is down"), "{text}"),
        other => panic!("{other:?}"),
    }
}

fn rows(values: &[&[Option<&str>]]) -> Rows {
    values.iter().map(|r| r.iter().map(|v| v.map(|s| s.as_bytes().to_vec())).collect()).collect()
}

#[test]
fn every_column_of_every_row_is_joined_nulls_skipped() {
    let lab = Lab::new("mysql-assemble");
    let d = lab.open("hosts = unix:/nowhere.sock\n");
    let mut out = Vec::new();
    let r = rows(&[&[Some("x1"), Some("y1")], &[Some("x2"), None], &[Some(""), Some("upper")]]);
    assert_eq!(d.assemble(&r, b"k", &mut out), Ok(true));
    assert_eq!(out, b"x1,y1,x2,upper");
    // a value is read as a C string
    assert_eq!(d.assemble(&rows(&[&[Some("a\0b")]]), b"k", &mut out), Ok(true));
    assert_eq!(out, b"a");
    assert_eq!(d.assemble(&rows(&[&[None], &[Some("")]]), b"k", &mut out), Ok(false));
    assert!(out.is_empty());
    let d = lab.open("hosts = unix:/nowhere.sock\nexpansion_limit = 2\nresult_format = <%s>\n");
    assert_eq!(d.assemble(&rows(&[&[Some("a"), None, Some("b")]]), b"k", &mut out), Ok(true));
    assert_eq!(out, b"<a>,<b>");
    let err = d.assemble(&rows(&[&[Some("a"), Some("b"), Some("c")]]), b"k", &mut out);
    assert_eq!(
        err,
        Err(DictError::Retry(format!("dict_mysql_lookup: {}: Expansion limit exceeded for key: 'k'", lab.cf(""))))
    );
    assert!(out.is_empty());
}
