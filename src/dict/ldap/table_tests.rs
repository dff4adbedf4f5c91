//! The `ldap:` table against a slapd of the test's own
//! ([`super::test_slapd`]); each test says "skipped" and passes when slapd
//! is not installed.

use super::test_slapd::{Slapd, ROOT_DN, ROOT_PW, SAMPLE_LDIF};
use super::*;
use crate::config::Params;
use crate::dict::Mode;
use crate::test_support::backdate;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Instant;

struct Lab {
    slapd: Slapd,
    dir: TempDir,
    files: AtomicUsize,
}

impl Lab {
    fn new(tag: &str) -> Option<Lab> {
        let slapd = Slapd::start(tag, SAMPLE_LDIF)?;
        Some(Lab { slapd, dir: TempDir::new(tag), files: AtomicUsize::new(0) })
    }

    /// A settled `.cf` file with `text` (`@LDAP@` and `@LDAPI@` stand for
    /// the server's URLs).
    fn cf(&self, text: &str) -> String {
        let n = self.files.fetch_add(1, SeqCst);
        let text = text.replace("@LDAP@", &self.slapd.url()).replace("@LDAPI@", &self.slapd.ldapi_url());
        let path = self.dir.write(&format!("t{n}.cf"), text);
        backdate(&path);
        path.to_str().unwrap().to_string()
    }

    fn open(&self, text: &str) -> Box<dyn Dict> {
        open_cf(&self.cf(text)).unwrap_or_else(|e| panic!("{}", e.reason))
    }
}

const BASE: &str = "version = 3\nsearch_base = dc=example,dc=com\n";

fn open_cf(name: &str) -> Result<Box<dyn Dict>, OpenError> {
    let params = Params::default();
    open(&OpenRequest { type_name: "ldap", name, mode: Mode::ReadOnly, flags: 0, params: &params })
}

fn get(d: &dyn Dict, key: &str) -> DictResult<Option<String>> {
    let mut out = Vec::new();
    Ok(d.lookup(key.as_bytes(), 0, &mut out)?.then(|| String::from_utf8(out).unwrap()))
}

fn retry(d: &dyn Dict, key: &str) -> String {
    match get(d, key) {
        Err(DictError::Retry(text)) => text,
        other => panic!("{key}: not RETRY: {other:?}"),
    }
}

#[test]
fn plain_searches_over_tcp_and_the_unix_socket() {
    let Some(lab) = Lab::new("ldap-plain") else { return };
    for host in ["@LDAP@", "@LDAPI@", "ldap://127.0.0.1:1/ @LDAP@"] {
        let d = lab.open(&format!(
            "server_host = {host}\n{BASE}query_filter = (mail=%s)\nresult_attribute = mailLocalAddress\n"
        ));
        assert_eq!(
            get(&*d, "alice@example.com").unwrap().as_deref(),
            Some("alice@example.com,a@example.com,liddell@example.org")
        );
        assert_eq!(get(&*d, "nobody@example.com").unwrap(), None);
    }
    // the key's filter specials are escaped: no wildcard, an exact value
    let d = lab.open(&format!("server_host = @LDAP@\n{BASE}query_filter = (mail=%s)\nresult_attribute = uid\n"));
    assert_eq!(get(&*d, "st*r(x)\\@example.com").unwrap().as_deref(), Some("star"));
    assert_eq!(get(&*d, "s*r@example.com").unwrap(), None);
    assert_eq!(get(&*d, "*").unwrap(), None);
    assert_eq!(get(&*d, "*)(uid=*").unwrap(), None);
    // three entries share a mail value; the server's size limit
    let limited = lab.open(&format!(
        "server_host = @LDAP@\n{BASE}query_filter = (mail=%s)\nresult_attribute = uid\nsize_limit = 2\n"
    ));
    assert_eq!(retry(&*limited, "team@example.com"), "dict_ldap_lookup: Search error 4: Size limit exceeded ");
    assert_eq!(get(&*d, "team@example.com").unwrap().map(|v| v.split(',').count()), Some(3));
}

#[test]
fn dynamic_and_missing_search_bases() {
    let Some(lab) = Lab::new("ldap-base") else { return };
    let d = lab.open(
        "server_host = @LDAP@\nversion = 3\nsearch_base = uid=%u,ou=people,dc=example,dc=com\n\
         query_filter = (mail=%s)\nresult_attribute = cn\nscope = base\n",
    );
    assert_eq!(get(&*d, "alice@example.com").unwrap().as_deref(), Some("Alice Liddell"));
    assert_eq!(get(&*d, "ghost@example.com").unwrap(), None);
    // a comma in the key is escaped in the base
    let d = lab.open(
        "server_host = @LDAP@\nversion = 3\nsearch_base = uid=%u,ou=people,dc=example,dc=com\n\
         query_filter = (objectclass=*)\nresult_attribute = description\nscope = base\n",
    );
    assert_eq!(get(&*d, "a,b@example.com").unwrap().as_deref(), Some("comma-in-dn"));
    let d = lab.open("server_host = @LDAP@\nversion = 3\nsearch_base = ou=nowhere,dc=example,dc=com\n");
    let name = lab.dir.path().join("t2.cf");
    assert_eq!(
        retry(&*d, "x"),
        format!(
            "dict_ldap_lookup: {}: Search base 'ou=nowhere,dc=example,dc=com' not found: 32: No such object",
            name.display()
        )
    );
}

#[test]
fn groups_are_expanded_through_member_dns_and_urls() {
    let Some(lab) = Lab::new("ldap-groups") else { return };
    let d = lab.open(&format!(
        "server_host = @LDAPI@\n{BASE}query_filter = (mail=%s)\nresult_attribute = mailRoutingAddress\n\
         special_result_attribute = member, memberURL\nterminal_result_attribute = mailHost\n\
         leaf_result_attribute = description\n"
    ));
    assert_eq!(
        get(&*d, "all@example.com").unwrap().as_deref(),
        Some("alice@mail.example.com,leaf-alice,bob@mail.example.com,leaf-bob,forward.example.net")
    );
    assert_eq!(get(&*d, "ghosts@example.com").unwrap().as_deref(), Some("alice@mail.example.com,leaf-alice"));
    assert_eq!(get(&*d, "dynamic@example.com").unwrap().as_deref(), Some("bob@mail.example.com,leaf-bob"));
    let shallow = lab.open(&format!(
        "server_host = @LDAPI@\n{BASE}query_filter = (mail=%s)\nresult_attribute = mail\n\
         special_result_attribute = member\nrecursion_limit = 2\n"
    ));
    assert_eq!(
        get(&*shallow, "staff@example.com").unwrap().as_deref(),
        Some("staff@example.com,alice@example.com,team@example.com,bob@sub.example.com,team@example.com")
    );
    assert!(
        retry(&*shallow, "all@example.com").contains("Recursion limit exceeded for special attribute member=uid=alice")
    );
}

#[test]
fn binds_as_the_root_and_refuses_a_wrong_password() {
    let Some(lab) = Lab::new("ldap-bind") else { return };
    let text =
        format!("server_host = @LDAP@\n{BASE}query_filter = (uid=%s)\nresult_attribute = mail\nbind_dn = {ROOT_DN}\n");
    let d = lab.open(&format!("{text}bind_pw = {ROOT_PW}\n"));
    assert_eq!(get(&*d, "carol").unwrap().as_deref(), Some("carol@example.com,team@example.com"));
    let d = lab.open(&format!("{text}bind_pw = wrong\n"));
    let why = retry(&*d, "carol");
    assert!(why.contains("Unable to bind to server") && why.contains("49 (Invalid credentials)"), "{why}");
    assert!(!why.contains("wrong"), "{why}");
    // version 2 (upstream Postfix's default) is refused by slapd 2.5
    let d = lab.open("server_host = @LDAP@\nversion = 2\nsearch_base = dc=example,dc=com\nquery_filter = (uid=%s)\n");
    assert!(retry(&*d, "carol").contains("2 (Protocol error)"));
}

#[test]
fn tls_by_starttls_and_ldaps_with_the_certificate_checked() {
    let Some(lab) = Lab::new("ldap-tls") else { return };
    let Some((ldaps, ca)) = lab.slapd.tls() else { return };
    let ca = ca.display();
    let search = format!("{BASE}query_filter = (uid=%s)\nresult_attribute = mail\n");
    for host in ["@LDAP@\nstart_tls = yes", &format!("{ldaps}\nversion = 2")] {
        let d = lab.open(&format!("server_host = {host}\n{search}tls_require_cert = yes\ntls_ca_cert_file = {ca}\n"));
        assert_eq!(get(&*d, "carol").unwrap().as_deref(), Some("carol@example.com,team@example.com"), "{host}");
        // without the CA the server's certificate is refused, unless not required
        let d = lab.open(&format!("server_host = {host}\n{search}tls_require_cert = yes\n"));
        let why = retry(&*d, "carol");
        assert!(why.contains("STARTTLS") || why.contains("Can't contact LDAP server"), "{why}");
        let d = lab.open(&format!("server_host = {host}\n{search}"));
        assert!(get(&*d, "carol").unwrap().is_some(), "{host}");
    }
}

#[test]
fn a_server_that_is_down_is_retry_within_the_timeout() {
    let Some(mut lab) = Lab::new("ldap-down") else { return };
    let d = lab
        .open(&format!("server_host = @LDAP@\n{BASE}query_filter = (uid=%s)\nresult_attribute = mail\ntimeout = 2\n"));
    assert!(get(&*d, "carol").unwrap().is_some());
    lab.slapd.stop();
    let start = Instant::now();
    let why = retry(&*d, "carol");
    assert!(start.elapsed() < Duration::from_secs(3), "{:?}", start.elapsed());
    assert!(why.contains("Can't contact LDAP server"), "{why}");
    // back: the next lookup after the retry interval reconnects
    lab.slapd.restart();
    let start = Instant::now();
    while get(&*d, "carol").is_err() {
        assert!(start.elapsed() < Duration::from_secs(8), "not back");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_restarted_server_is_answered_again_at_once() {
    let Some(mut lab) = Lab::new("ldap-restart") else { return };
    let d = lab.open(&format!("server_host = @LDAPI@\n{BASE}query_filter = (uid=%s)\nresult_attribute = mail\n"));
    assert!(get(&*d, "carol").unwrap().is_some());
    lab.slapd.restart();
    let start = Instant::now();
    assert_eq!(get(&*d, "alice").unwrap().as_deref(), Some("alice@example.com,team@example.com"));
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

#[test]
fn a_server_that_never_answers_stalls_no_other_table() {
    let Some(lab) = Lab::new("ldap-silent") else { return };
    // accepts connections (the kernel's backlog) and never answers
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let stuck = lab.open(&format!(
        "server_host = ldap://127.0.0.1:{port}/\n{BASE}query_filter = (uid=%s)\nresult_attribute = mail\ntimeout = 2\n"
    ));
    let good = lab.open(&format!("server_host = @LDAP@\n{BASE}query_filter = (uid=%s)\nresult_attribute = mail\n"));
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            let start = Instant::now();
            let why = retry(&*stuck, "carol");
            (start.elapsed(), why)
        });
        let start = Instant::now();
        for _ in 0..20 {
            assert!(get(&*good, "carol").unwrap().is_some());
        }
        assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
        let (took, why) = t.join().unwrap();
        assert!(took < Duration::from_secs(4), "{took:?}");
        assert!(why.contains("-5 (Timed out)") || why.contains("Can't contact"), "{why}");
    });
    drop(silent);
}

#[test]
fn bad_configurations_fail_the_open_with_postfixs_text() {
    let dir = TempDir::new("ldap-cf");
    let write = |name: &str, text: &str| {
        let p = dir.write(name, text);
        backdate(&p);
        p.to_str().unwrap().to_string()
    };
    let cf = write("bind.cf", "bind = maybe\n");
    assert_eq!(open_cf(&cf).err().unwrap().reason, format!("{cf}: unsupported parameter value: bind = maybe"));
    let cf = write("v1.cf", "version = 1\n");
    assert_eq!(open_cf(&cf).err().unwrap().reason, format!("{cf}: invalid version parameter value 1 < 2"));
    let cf = write("sasl.cf", "bind = SASL\n");
    assert!(open_cf(&cf).err().unwrap().reason.contains("bind = sasl is not supported"));
    let cf = write("t.cf", "query_filter = (x=%z)\n");
    assert!(open_cf(&cf).err().unwrap().reason.contains("Invalid query template"));
    let params = Params::default();
    let rw = OpenRequest { type_name: "ldap", name: &cf, mode: Mode::ReadWrite, flags: 0, params: &params };
    assert_eq!(open(&rw).err().unwrap().reason, format!("ldap:{cf} map requires O_RDONLY access mode"));
    let cf = write("ok.cf", "server_host = ldap://[bad localhost\n");
    assert!(open_cf(&cf).is_ok());
}

#[test]
fn server_hosts_become_a_url_list_as_postfix_makes_it() {
    let dir = TempDir::new("ldap-hosts");
    let read = |text: &str| {
        let p = dir.write("h.cf", text);
        backdate(&p);
        cf::read(p.to_str().unwrap(), &Params::default()).map_err(|e| e.reason)
    };
    let c =
        read("server_host = a.example, b.example:1389 ldap://c.example/\n  ldapi://%2Frun%2Fs/\nserver_port = 10389\n")
            .unwrap();
    assert_eq!(c.urls, "ldap://a.example:10389 ldap://b.example:1389 ldap://c.example/ ldapi://%2Frun%2Fs/");
    assert_eq!(c.version, 3);
    // a scheme other than ldap forces version 3
    assert_eq!(read("server_host = ldapi://%2Frun%2Fs/\nversion = 2\n").unwrap().version, 3);
    assert_eq!(read("server_host = ldap://h/\nversion = 2\n").unwrap().version, 2);
    assert_eq!(read("version = 7\n").unwrap().version, 3);
    assert_eq!(read("\n").unwrap().urls, "ldap://localhost:389");
    // a URL libldap cannot parse is skipped (with Postfix's error line)
    assert_eq!(read("server_host = ldap://[bad h2\n").unwrap().urls, "ldap://h2:389");
    let c = read("terminal_result_attribute = t\nleaf_result_attribute = l1 l2\nspecial_result_attribute = member\n")
        .unwrap();
    assert_eq!(c.attributes.names, ["t", "l1", "l2", "maildrop", "member"]);
    assert_eq!((c.attributes.num_terminal, c.attributes.num_leaf, c.attributes.num_attributes), (1, 2, 4));
    assert_eq!(c.size_limit, 0);
    assert_eq!(read("expansion_limit = 5\n").unwrap().size_limit, 5);
    assert!(c.tls.is_none());
    assert!(read("server_host = ldaps://h/\n").unwrap().tls.is_some_and(|t| !t.start_tls));
}
