//! `ldap:` tables, ours against Postfix's, on a slapd of the test's own
//! (tests/common/slapd.rs): the same `.cf` files and keys asked with
//! `postmap -q KEY ldap:CF` (Postfix's postfix-ldap plugin, in process) and
//! `postmap -q KEY proxy:ldap:CF` (through our proxymap in a private Postfix
//! instance). Answers, exit codes and the tables' warnings (Postfix's on
//! postmap's stderr, ours in the instance's log) must be identical.
//!
//! Where we differ on purpose (docs/compatibility.md), the test says so and
//! asserts our answer: a server that cannot be connected to (Postfix warns
//! at every lookup, ours once per outage), and a server restart (answered
//! at once, as Postfix's reconnect-once does).

mod common;

use common::mapdiff::{assert_same_warnings, compare, proxymap_lines, query, settled_log, write_settled};
use common::postfix::{Instance, Server};
use common::slapd::{Slapd, ROOT_DN, ROOT_PW, SAMPLE_LDIF};
use std::time::{Duration, Instant};

const KEYS: &[&str] = &[
    "alice@example.com",
    "ALICE@Example.COM",
    "a@example.com",
    "liddell@example.org",
    "bob@sub.example.com",
    "carol@example.com",
    "team@example.com",
    "st*r(x)\\@example.com",
    "s*r@example.com",
    "*",
    "*@example.com",
    "*)(uid=*",
    "(",
    "\\",
    "a,b@example.com",
    "staff@example.com",
    "all@example.com",
    "ghosts@example.com",
    "dynamic@example.com",
    "nobody@example.com",
    "alice",
    "carol",
    "nodomain",
    "@example.com",
    "user@",
    "u@example..com",
    "",
    " ",
];

const SEARCH: &str = "version = 3\nsearch_base = dc=example,dc=com\n";

/// `.cf` files (name, text) asked with every key; `@LDAP@`, `@LDAPI@` and
/// `@PORT@` stand for the server.
const TABLES: &[(&str, &str)] = &[
    ("basic.cf", "server_host = @LDAP@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = mailLocalAddress\n"),
    ("multi.cf", "server_host = @LDAPI@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = mail, mailRoutingAddress cn\n"),
    ("escape.cf", "server_host = @LDAP@\n@SEARCH@query_filter = (|(uid=%u)(mail=%s)(description=%s))\nresult_attribute = uid\n"),
    ("format.cf", "server_host = @LDAP@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = mailRoutingAddress\nresult_format = <%s|%S|%U|%D|%u|%d|%1>\n"),
    ("value-parts.cf", "server_host = @LDAP@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = mail cn\nresult_format = %u at %d\n"),
    ("domain.cf", "server_host = @LDAP@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = uid\ndomain = Example.COM, example.org\n"),
    ("groups.cf", "server_host = @LDAPI@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = mailRoutingAddress\nspecial_result_attribute = member, memberURL\nterminal_result_attribute = mailHost\nleaf_result_attribute = description\n"),
    ("recursion.cf", "server_host = @LDAP@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = mail\nspecial_result_attribute = member\nrecursion_limit = 2\n"),
    ("terminal.cf", "server_host = @LDAP@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = mailRoutingAddress uid\nterminal_result_attribute = mailHost\n"),
    ("size.cf", "server_host = @LDAP@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = uid\nsize_limit = 2\n"),
    ("expansion.cf", "server_host = @LDAP@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = mail\nexpansion_limit = 3\n"),
    ("dynbase.cf", "server_host = @LDAP@\nversion = 3\nsearch_base = uid=%u, ou=people, dc=example, dc=com\nscope = base\nquery_filter = (objectclass=*)\nresult_attribute = description\n"),
    ("nobase.cf", "server_host = @LDAP@\nversion = 3\nsearch_base = ou=nowhere,dc=example,dc=com\nquery_filter = (mail=%s)\n"),
    ("one.cf", "server_host = 127.0.0.1:@PORT@\nversion = 3\nsearch_base = ou=people,dc=example,dc=com\nscope = One\nquery_filter = (uid=%s)\nresult_attribute = mail\n"),
    ("port.cf", "server_host = 127.0.0.1\nserver_port = @PORT@\nversion = 3\nsearch_base = ou=groups,dc=example,dc=com\nscope = weird\nquery_filter = (mail=%s)\nresult_attribute = cn\n"),
    ("bind.cf", "server_host = @LDAP@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = uid\nbind_dn = @ROOT_DN@\nbind_pw = @ROOT_PW@\n"),
    ("nobind.cf", "server_host = @LDAPI@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = uid\nbind = none\ndereference = 7\n"),
    ("cache.cf", "server_host = @LDAP@\n@SEARCH@query_filter = (mail=%s)\nresult_attribute = uid\ncache = yes\ncache_size = 100\n"),
];

fn main_cf(names: &[&str], slapd: &Slapd) -> String {
    let maps: Vec<String> = names.iter().map(|n| format!("proxy:ldap:@TABLES@/{n}")).collect();
    format!(
        "proxy_read_maps = proxy:ldap:ldapmain {}\n\
         ldapmain_server_host = {}\n\
         ldapmain_version = 3\n\
         ldapmain_search_base = dc=example,dc=com\n\
         ldapmain_query_filter = (mail=%s)\n\
         ldapmain_result_attribute = uid\n\
         ldapmain_result_format = [%s]\n",
        maps.join(" "),
        slapd.url()
    )
}

fn write_tables(inst: &Instance, slapd: &Slapd, tables: &[(&str, &str)]) {
    for (name, text) in tables {
        let text = text
            .replace("@SEARCH@", SEARCH)
            .replace("@LDAPI@", &slapd.ldapi_url())
            .replace("@LDAP@", &slapd.url())
            .replace("@PORT@", &slapd.port().to_string())
            .replace("@ROOT_DN@", ROOT_DN)
            .replace("@ROOT_PW@", ROOT_PW);
        write_settled(&inst.tables.join(name), &text);
    }
}

#[test]
fn ldap_tables_answer_as_postfix_in_process() {
    let Some(mut slapd) = Slapd::start("ldap-diff", SAMPLE_LDIF) else { return };
    let mut names: Vec<&str> = TABLES.iter().map(|(n, _)| *n).collect();
    names.extend(["down.cf", "v2.cf", "starttls.cf", "ldaps.cf", "ldaps-nocheck.cf"]);
    let mut inst = Instance::new("ldap", &main_cf(&names, &slapd), Server::Ours);
    write_tables(&inst, &slapd, TABLES);
    inst.start();
    let t = inst.tables.display().to_string();

    let tables: Vec<String> =
        TABLES.iter().map(|(n, _)| format!("ldap:{t}/{n}")).chain(["ldap:ldapmain".to_string()]).collect();
    let found = compare(&inst, &tables, KEYS);
    eprintln!(
        "{} tables x {} keys asked of both: {} found by Postfix, {} distinct warnings of Postfix's",
        tables.len(),
        KEYS.len(),
        found.hits,
        found.theirs_warnings.len()
    );
    assert!(found.hits > 60, "only {} hits: is the directory there?", found.hits);
    for expected in [
        "Size limit exceeded",
        "Recursion limit exceeded",
        "Expansion limit exceeded",
        "not found, skipping",
        "Had some trouble with entries returned by search",
        "Fixed query_filter",
        "Search base 'ou=nowhere,dc=example,dc=com' not found",
        "ignoring cache",
    ] {
        assert!(found.theirs_warnings.iter().any(|w| w.contains(expected)), "{expected}: {:?}", found.theirs_warnings);
    }
    assert_same_warnings(&inst, &found, 8);

    // TLS: STARTTLS and ldaps, the certificate checked or not.
    if let Some((ldaps, ca)) = slapd.tls() {
        let ca = ca.display();
        let tls = [
            (
                "starttls.cf",
                format!(
                    "server_host = {}\nstart_tls = yes\ntls_require_cert = yes\ntls_ca_cert_file = {ca}\n",
                    slapd.url()
                ),
            ),
            (
                "ldaps.cf",
                format!("server_host = {ldaps}\nversion = 2\ntls_require_cert = yes\ntls_ca_cert_file = {ca}\n"),
            ),
            ("ldaps-nocheck.cf", format!("server_host = {ldaps}\n")),
        ];
        let mut tables = Vec::new();
        for (name, text) in &tls {
            write_settled(
                &inst.tables.join(name),
                &format!("{text}{SEARCH}query_filter = (mail=%s)\nresult_attribute = uid\n"),
            );
            tables.push(format!("ldap:{t}/{name}"));
        }
        let found = compare(&inst, &tables, &["alice@example.com", "team@example.com", "nobody@example.com"]);
        assert_eq!(found.hits, 6, "TLS tables answer");
    }

    // On purpose: a server that cannot be reached. The same answer (RETRY:
    // postmap exits 1 with the same message); Postfix warns at every
    // lookup, ours once per outage.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let down = [
        ("down.cf", format!("server_host = ldap://127.0.0.1:{port}/\n{SEARCH}query_filter = (mail=%s)\n")),
        // version 2 (upstream Postfix's default; Debian's is 3): slapd 2.5 refuses the bind
        (
            "v2.cf",
            format!(
                "server_host = {}\nversion = 2\nsearch_base = dc=example,dc=com\nquery_filter = (mail=%s)\n",
                slapd.url()
            ),
        ),
    ];
    for (name, text) in &down {
        write_settled(&inst.tables.join(name), text);
        let table = format!("ldap:{t}/{name}");
        let mut theirs_warnings = Vec::new();
        for key in ["alice@example.com", "bob@sub.example.com"] {
            let (theirs, warnings) = query(&inst, key, &table);
            let (ours, _) = query(&inst, key, &format!("proxy:{table}"));
            assert_eq!(theirs, ours, "{table} {key}");
            assert!(theirs.starts_with("exit=Some(1) stdout=\"\""), "{theirs}");
            theirs_warnings.extend(warnings);
        }
        assert_eq!(theirs_warnings.len(), 2, "{theirs_warnings:?}");
        let log = settled_log(&inst);
        let ours = proxymap_lines(&log, "warning");
        let outage: Vec<&String> =
            ours.iter().filter(|l| l.contains(" is down: ") && l.ends_with(&theirs_warnings[0])).collect();
        assert_eq!(outage.len(), 1, "{ours:#?}\n{theirs_warnings:?}");
    }

    // On purpose, and as Postfix's reconnect-once: a restart costs no lookup.
    let basic = format!("proxy:ldap:{t}/basic.cf");
    let (ours, _) = query(&inst, "alice@example.com", &basic);
    assert!(ours.starts_with("exit=Some(0)"), "{ours}");
    slapd.restart();
    let start = Instant::now();
    for table in ["basic.cf", "multi.cf", "groups.cf"] {
        let (ours, _) = query(&inst, "alice@example.com", &format!("proxy:ldap:{t}/{table}"));
        assert!(ours.starts_with("exit=Some(0)"), "{table}: {ours}");
    }
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    let log = settled_log(&inst);
    assert!(!log.contains(ROOT_PW), "no password in the log");
}
