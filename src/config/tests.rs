//! Params: main.cf + overrides + defaults, evaluated as proxymap does.

use super::allowlist::proxy_allowlist;
use super::*;

fn params(text: &str, overrides: &[(&str, &str)]) -> Params {
    let ov: Vec<(String, String)> = overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    Params::from_text(text, "/etc/postfix/main.cf", &ov).unwrap()
}

#[test]
fn empty_main_cf_allowlists() {
    let p = params("", &[]);
    let read: Vec<String> = proxy_allowlist(&p, false).iter().map(String::from).collect();
    assert_eq!(read, ["unix:passwd.byname"]);
    assert!(proxy_allowlist(&p, true).is_empty());
    // Same result without a registration pass (Params::default()).
    let d = Params::default();
    assert_eq!(proxy_allowlist(&d, false).iter().collect::<Vec<_>>(), ["unix:passwd.byname"]);
    assert!(proxy_allowlist(&d, true).is_empty());
}

#[test]
fn defaults() {
    let p = params("", &[]);
    assert_eq!(p.get("local_recipient_maps"), "proxy:unix:passwd.byname hash:/etc/aliases, nis:mail.aliases");
    assert_eq!(p.get("virtual_alias_maps"), "");
    assert_eq!(p.get("virtual_alias_domains"), "");
    assert_eq!(p.get("address_verify_map"), "btree:/var/lib/postfix/verify_cache");
    assert_eq!(p.get("postscreen_cache_map"), "btree:/var/lib/postfix/postscreen_cache");
    assert_eq!(p.get("relay_domains"), p.get("mydestination"));
    assert!(p.get("mydestination").ends_with(", localhost"));
    assert_eq!(p.get("smtputf8_enable"), "no");
    assert_eq!(p.get("syslog_name"), "postfix");
    assert_eq!(p.get("daemon_directory"), "/usr/lib/postfix/sbin");
    assert_eq!(p.get("meta_directory"), "/etc/postfix");
    assert_eq!(p.get("myorigin"), p.get("myhostname"));
    assert!(p.get("myhostname").contains('.'));
    assert_eq!(p.get("proxywrite_service_name"), "proxywrite");
    assert_eq!(p.get_int("max_use").unwrap(), 100);
    assert_eq!(p.get_time("max_idle").unwrap(), 100);
    assert_eq!(p.get_time("ipc_timeout").unwrap(), 3600);
    assert_eq!(p.get_time("daemon_timeout").unwrap(), 18000);
    assert_eq!(p.get_long("lmdb_map_size").unwrap(), 16777216);
    assert!(!p.get_bool("daemon_table_open_error_is_fatal").unwrap());
    assert_eq!(p.get("no_such_parameter"), "");
    assert_eq!(p.raw("max_use"), None);
}

#[test]
fn compat_level_changes_defaults() {
    let p = params("compatibility_level = 3.6\nmydestination = a.example\n", &[]);
    assert_eq!(p.get("relay_domains"), "");
    assert_eq!(p.get("smtputf8_enable"), "yes");
    assert_eq!(p.get("respectful_logging"), "yes");
    assert!(p.get_bool("smtputf8_enable").unwrap());
    let err = Params::from_text("compatibility_level = x", "m", &[]).unwrap_err();
    assert_eq!(err.to_string(), "malformed compatibility level syntax: \"x\"");
}

#[test]
fn main_cf_values_and_chains() {
    let p = params(
        "virtual_alias_maps = proxy:hash:/etc/postfix/virtual\n\
         mine = proxy:cdb:/m\n\
         smtpd_recipient_restrictions = check_recipient_access $mine, reject\n\
         unknown_ref = $virtual_maps\n",
        &[],
    );
    // $virtual_alias_domains -> $virtual_alias_maps, listed once.
    let read: Vec<String> = proxy_allowlist(&p, false).iter().map(String::from).collect();
    assert_eq!(read, ["unix:passwd.byname", "hash:/etc/postfix/virtual", "cdb:/m"]);
    assert_eq!(p.get("unknown_ref"), "");
}

#[test]
fn unregistered_names_resolve_to_empty() {
    // $smtp_sasl_auth_cache_name is not known to proxymap: empty even though
    // smtp(8) would give it a default.
    let p = params("address_verify_map = proxy:btree:$data_directory/v\n", &[]);
    let write: Vec<String> = proxy_allowlist(&p, true).iter().map(String::from).collect();
    assert_eq!(write, ["btree:/var/lib/postfix/v"]);
}

#[test]
fn override_wins_and_set() {
    let mut p = params(
        "proxy_read_maps = proxy:hash:/from/main\nmax_use = 5\n",
        &[("proxy_read_maps", "proxy:hash:/from/o"), ("max_use", "7")],
    );
    assert!(proxy_allowlist(&p, false).contains("hash:/from/o"));
    assert!(!proxy_allowlist(&p, false).contains("hash:/from/main"));
    assert_eq!(p.get_int("max_use").unwrap(), 7);
    assert_eq!(p.raw("max_use"), Some("7"));
    p.set("service_name", "proxywrite");
    assert_eq!(p.get("service_name"), "proxywrite");
}

#[test]
fn duplicates_last_wins() {
    let p = params("a = 1\na = 2\nb = x\nb = x\n", &[]);
    assert_eq!(p.get("a"), "2");
    assert_eq!(p.get("b"), "x");
}

#[test]
fn registration_errors_are_fatal() {
    let bad = |text: &str| Params::from_text(text, "m", &[]).unwrap_err().to_string();
    assert_eq!(bad("max_use = x"), "bad numerical configuration: max_use = x");
    assert_eq!(bad("max_use = 0"), "invalid max_use parameter value 0 < 1");
    assert_eq!(bad("line_length_limit = 100"), "invalid line_length_limit parameter value 100 < 512");
    assert_eq!(bad("max_idle = 1y"), "parameter max_idle: bad time value or unit: 1y");
    assert_eq!(bad("max_idle = 0"), "invalid max_idle: 0 (min 1)");
    assert_eq!(bad("in_flow_delay = 11"), "invalid in_flow_delay: 11 (max 10)");
    assert_eq!(bad("soft_bounce = maybe"), "bad boolean configuration: soft_bounce = maybe");
    assert_eq!(bad("mail_owner ="), "bad string length 0 < 1: mail_owner = ");
    assert_eq!(bad("alias_maps = ${x"), "dictionary mail_dict: macro processing error");
    match Params::from_text("alias_maps = $alias_maps", "m", &[]) {
        Err(ConfigError::Macro { warning }) => {
            assert_eq!(warning, "unreasonable macro call nesting: \"alias_maps\"")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(bad("x\n"), "m, line 1: missing '=' after attribute name: \"x\"");
}

#[test]
fn typed_getters_report_postfix_texts() {
    let p = params("flag = maybe\nn = 12x\nt = 3q\nt2 = 2h\n", &[]);
    assert_eq!(p.get_bool("flag").unwrap_err().to_string(), "bad boolean configuration: flag = maybe");
    assert_eq!(p.get_int("n").unwrap_err().to_string(), "bad numerical configuration: n = 12x");
    assert_eq!(p.get_time("t").unwrap_err().to_string(), "parameter t: bad time value or unit: 3q");
    assert_eq!(p.get_time("t2").unwrap(), 7200);
}

#[test]
fn load_from_directory() {
    let dir = std::env::temp_dir().join(format!("proxymap-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("main.cf");
    std::fs::write(&path, "proxy_write_maps = proxy:btree:$config_directory/w\n").unwrap();
    // Age the file so the "still being written" re-read does not kick in.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options().write(true).open(&path).unwrap().set_modified(old).unwrap();
    let p = Params::load(&dir, &[]).unwrap();
    let want = format!("btree:{}/w", dir.display());
    assert!(proxy_allowlist(&p, true).contains(&want));
    assert_eq!(p.get("config_directory"), dir.display().to_string());
    let missing = Params::load(&dir.join("nope"), &[]).unwrap_err();
    assert_eq!(missing.to_string(), format!("open {}/nope/main.cf: No such file or directory", dir.display()));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn connection_threads_and_their_hand_off_point() {
    let threads = |text: &str| params(text, &[]).connection_threads().map_err(|e| e.to_string());
    assert_eq!(threads(""), Ok(Some(2)), "threads by default");
    assert_eq!(threads("proxymap_connection_thread_after = 5\n"), Ok(Some(5)));
    assert_eq!(threads("proxymap_connection_threads = no\nproxymap_connection_thread_after = 5\n"), Ok(None));
    assert_eq!(threads("proxymap_connection_threads = yes\n"), Ok(Some(2)));
    assert_eq!(threads("proxymap_connection_threads = yes\nproxymap_connection_thread_after = 0\n"), Ok(Some(0)));
    assert_eq!(
        threads("proxymap_connection_threads = yes\nproxymap_connection_thread_after = -1\n"),
        Err("invalid proxymap_connection_thread_after parameter value -1 < 0".to_string())
    );
    assert_eq!(
        threads("proxymap_connection_threads = yes\nproxymap_connection_thread_after = x\n"),
        Err("bad numerical configuration: proxymap_connection_thread_after = x".to_string())
    );
    assert_eq!(
        threads("proxymap_connection_threads = maybe\n"),
        Err("bad boolean configuration: proxymap_connection_threads = maybe".to_string())
    );
}
