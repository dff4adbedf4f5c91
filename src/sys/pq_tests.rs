//! Tests of the libpq wrapper that need no PostgreSQL server; the ones
//! against a real server are in `dict/sql/pgsql_tests.rs`.

use super::*;
use std::net::TcpListener;

fn host(target: &Target) -> (&str, &str) {
    match target {
        Target::Host { host, port, .. } => (host, port),
        Target::Uri(_) => panic!("not a host: {target:?}"),
    }
}

#[test]
fn hosts_entries_are_read_as_postfix_reads_them() {
    let t = |e| Target::parse(e, "db", "u", "p");
    assert_eq!(host(&t("localhost")), ("localhost", ""));
    assert_eq!(host(&t("inet:db.example:5433")), ("db.example", "5433"));
    assert_eq!(host(&t("10.0.0.1:5432")), ("10.0.0.1", "5432"));
    assert_eq!(host(&t("unix:/run/postgresql")), ("/run/postgresql", ""));
    assert_eq!(host(&t("/run/postgresql")), ("/run/postgresql", ""));
    assert_eq!(host(&t("unix:")), ("", ""));
    assert!(t("unix:/run/postgresql").is_socket());
    assert!(t("").is_socket());
    assert!(!t("inet:127.0.0.1:5432").is_socket());
    assert_eq!(t("postgresql://u:pw@h/db"), Target::Uri("postgresql://u:pw@h/db".into()));
    // 3.7 knows only the `postgresql:` prefix; the rest splits at the last colon.
    assert_eq!(host(&t("postgres://h/db")), ("postgres", "//h/db"));
}

#[test]
fn parameters_are_keywords_with_the_database_name_first() {
    let t = Target::parse("inet:127.0.0.1:5432", "mail", "postfix", "it's");
    let p = t.params("UTF8", Duration::from_millis(500)).expect("params");
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.to_str().unwrap(), v.to_str().unwrap())).collect();
    assert_eq!(
        p,
        [
            ("dbname", "mail"),
            ("host", "127.0.0.1"),
            ("port", "5432"),
            ("user", "postfix"),
            ("password", "it's"),
            ("connect_timeout", "2"),
            ("client_encoding", "UTF8"),
            ("fallback_application_name", "proxymap"),
        ]
    );
    let uri = Target::parse("postgresql://h/db", "", "", "");
    let p = uri.params("", Duration::from_millis(3500)).expect("params");
    let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (k.to_str().unwrap(), v.to_str().unwrap())).collect();
    assert_eq!(
        p,
        [("dbname", "postgresql://h/db"), ("connect_timeout", "4"), ("fallback_application_name", "proxymap")]
    );
    let nul = Target::parse("h", "d", "u", "p\0w");
    assert_eq!(nul.params("", Duration::from_secs(1)).err(), Some(Error::Nul("a connection parameter")));
}

#[test]
fn passwords_never_show() {
    assert_eq!(redact("postgresql://u:secret@h:5432/db"), "postgresql://u:*@h:5432/db");
    assert_eq!(
        redact("postgresql://u@h/db?password=secret&sslmode=require"),
        "postgresql://u@h/db?password=*&sslmode=require"
    );
    assert_eq!(redact("postgresql://h/db"), "postgresql://h/db");
    assert_eq!(redact("host=h password = 'se cr\\'et' user=u"), "host=h password = * user=u");
    assert_eq!(redact("host=h password=secret"), "host=h password=*");
    let t = Target::parse("h", "d", "u", "secret");
    assert!(!format!("{t:?}").contains("secret"));
    let t = Target::parse("postgresql://u:secret@h/d", "d", "u", "secret");
    assert!(!format!("{t:?}").contains("secret"), "{t:?}");
}

#[test]
fn a_refused_connection_is_an_error_with_libpq_text() {
    // A port nobody listens on: bind, note, close.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let t = Target::parse(&format!("inet:127.0.0.1:{port}"), "d", "u", "p");
    match connect(&t, "UTF8", Duration::from_secs(5)) {
        Err(Error::Connect(text)) => assert!(text.contains("Connection refused"), "{text}"),
        other => panic!("expected a refusal, got {:?}", other.err()),
    }
}

#[test]
fn a_server_that_never_answers_times_out_at_the_connect_deadline() {
    // Accepts (so the TCP handshake completes) and never says a word.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let t = Target::parse(&format!("inet:127.0.0.1:{port}"), "d", "u", "p");
    let start = Instant::now();
    let got = connect(&t, "UTF8", Duration::from_millis(500));
    let took = start.elapsed();
    assert_eq!(got.err(), Some(Error::ConnectTimeout));
    assert!(took >= Duration::from_millis(450) && took < Duration::from_millis(1500), "{took:?}");
    drop(listener);
}
