//! `proxymap check`: configuration directories built in a temporary
//! directory (main.cf, master.cf, tables), the report and exit status.
//! Needs no Postfix: the check only reads files and opens tables.

mod common;

use common::TempDir;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

/// The user running the tests, as mail_owner: every file here is theirs.
fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid()).expect("getpwuid").expect("a user").name
}

/// Writes `name` and dates it a minute back (a file written within the
/// last second is read again after a pause, as Postfix does).
fn write(dir: &TempDir, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.write(name, text);
    let past = SystemTime::now() - Duration::from_secs(60);
    std::fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(past)).expect("set mtime");
    path
}

/// A configuration that passes: our parameters set, a texthash table
/// through $virtual_alias_maps, a pgsql `.cf` through a chain of names.
fn good(tag: &str, extra_main: &str, master: &str) -> TempDir {
    let dir = TempDir::new(tag);
    let d = dir.path().display().to_string();
    write(&dir, "virtual", "a@example.com b@example.com\n");
    write(&dir, "pg.cf", "hosts = db1.example db2.example\ndbname = mail\nquery = SELECT d FROM a WHERE s='%s'\n");
    let main = format!(
        "mail_owner = {me}\nqueue_directory = {d}\n\
         virtual_alias_maps = proxy:texthash:{d}/virtual\n\
         mailbox_tables = proxy:pgsql:{d}/pg.cf\nvirtual_mailbox_maps = $mailbox_tables\n\
         proxymap_connection_threads = yes\n{extra_main}",
        me = me()
    );
    write(&dir, "main.cf", &main);
    write(&dir, "master.cf", master);
    dir
}

const MASTER: &str = "\
smtp      inet  n       -       y       -       -       smtpd
proxymap  unix  -       -       n       -       -       proxymap-rs
proxywrite unix -       -       n       -       1       proxymap-rs -n proxywrite
";

/// Runs the check on `config`: (exit status, stdout).
fn check(config: &Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_proxymap"))
        .args(["check", "--config"])
        .arg(config)
        .env_remove("MAIL_CONFIG")
        .output()
        .expect("run proxymap check");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.stderr.is_empty(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn has_line(text: &str, wanted: &str) -> bool {
    text.lines().any(|l| l.contains(wanted))
}

#[track_caller]
fn assert_line(text: &str, wanted: &str) {
    assert!(has_line(text, wanted), "no line with {wanted:?} in:\n{text}");
}

#[test]
fn a_good_configuration_passes_with_provenance() {
    let dir = good("check-good", "", MASTER);
    let d = dir.path().display().to_string();
    let (status, text) = check(dir.path());
    assert_eq!(status, 0, "{text}");
    assert_line(&text, "service proxymap (master.cf line 2: proxymap unix - - n - - proxymap-rs)");
    assert_line(&text, "service proxywrite (master.cf line 3:");
    assert_line(&text, "proxymap_connection_threads = yes (main.cf)  ok");
    assert_line(&text, "proxymap_connection_thread_after = 2 (default)  ok");
    assert_line(&text, &format!("mail_owner = {} (main.cf): uid", me()));
    assert_line(&text, &format!("proxy:texthash:{d}/virtual  from $virtual_alias_maps (main.cf)"));
    assert_line(&text, &format!("texthash: {d}/virtual exists, readable by {}, opens  ok", me()));
    assert_line(&text, &format!("proxy:pgsql:{d}/pg.cf  from $virtual_mailbox_maps -> $mailbox_tables (main.cf)"));
    assert_line(&text, "parses (hosts=db1.example db2.example, dbname=mail)  ok");
    assert_line(&text, "allowlist (proxy_write_maps, 0 tables):");
    assert!(text.ends_with("0 errors, 0 warnings\n"), "{text}");
}

#[test]
fn a_main_cf_path_works_as_well() {
    let dir = good("check-file", "", MASTER);
    let (status, text) = check(&dir.path().join("main.cf"));
    assert_eq!(status, 0, "{text}");
    assert_line(&text, &format!("config_directory {}", dir.path().display()));
}

#[test]
fn a_bad_connection_threads_value_fails() {
    let dir = good("check-threads", "proxymap_connection_threads = maybe\n", MASTER);
    let (status, text) = check(dir.path());
    assert_eq!(status, 1, "{text}");
    assert_line(&text, "proxymap_connection_threads = maybe (main.cf): bad boolean configuration");
    assert!(text.lines().filter(|l| l.contains("proxymap_connection_threads") && l.ends_with("ERROR")).count() == 2);
}

#[test]
fn a_bad_override_in_master_cf_fails() {
    let master = "proxymap unix - - n - - proxymap-rs\n  -o proxymap_connection_threads=maybe\n";
    let dir = good("check-override", "", master);
    let (status, text) = check(dir.path());
    assert_eq!(status, 1, "{text}");
    assert_line(&text, "proxymap_connection_threads = maybe (master.cf -o): bad boolean configuration");
    assert!(text.ends_with("1 error, 0 warnings\n"), "{text}");
}

#[test]
fn bad_thread_after_and_unknown_names() {
    let extra = "proxymap_connection_thread_after = -1\nproxymap_conection_threads = no\n";
    let dir = good("check-after", extra, MASTER);
    let (status, text) = check(dir.path());
    assert_eq!(status, 1, "{text}");
    assert_line(&text, "proxymap_connection_thread_after = -1 (main.cf): invalid proxymap_connection_thread_after");
    assert_line(
        &text,
        "proxymap_conection_threads (main.cf): not a parameter of proxymap or Postfix, ignored  WARNING",
    );
}

#[test]
fn an_unsupported_type_fails() {
    let dir = good("check-type", "alias_maps = proxy:nis:mail.aliases\n", MASTER);
    let (status, text) = check(dir.path());
    assert_eq!(status, 1, "{text}");
    assert_line(
        &text,
        "proxy:nis:mail.aliases  from $local_recipient_maps -> $alias_maps (main.cf), $alias_maps (main.cf)",
    );
    assert_line(&text, "nis: not supported by this build  ERROR");
}

#[test]
fn a_missing_file_fails() {
    let dir = good("check-missing", "", MASTER);
    let d = dir.path().display().to_string();
    write(
        &dir,
        "main.cf",
        &format!("mail_owner = {}\nqueue_directory = {d}\nrelay_domains = proxy:hash:{d}/relay\n", me()),
    );
    let (status, text) = check(dir.path());
    assert_eq!(status, 1, "{text}");
    assert_line(&text, &format!("proxy:hash:{d}/relay  from $relay_domains (main.cf)"));
    assert_line(&text, &format!("hash: {d}/relay.db: No such file or directory  ERROR"));
}

#[test]
fn an_unparsable_cf_fails_with_the_backend_reason() {
    let dir = good("check-cf", "", MASTER);
    write(&dir, "pg.cf", "hosts = db1.example\ndbname =\nquery = SELECT 1\nhost = typo\n");
    let (status, text) = check(dir.path());
    assert_eq!(status, 1, "{text}");
    assert_line(&text, "pg.cf: bad string length 0 < 1: dbname =   ERROR");
    // a parameter no table reads is a warning once the rest parses
    write(&dir, "pg.cf", "hosts = db1.example\ndbname = mail\nquery = SELECT 1\nhost = typo\n");
    let (status, text) = check(dir.path());
    assert_eq!(status, 0, "{text}");
    assert_line(&text, "pg.cf: not used by pgsql, ignored: host  WARNING");
}

#[test]
fn composite_parts_are_checked_each() {
    let dir = good("check-composite", "", MASTER);
    let d = dir.path().display().to_string();
    let extra = format!("relay_domains = proxy:pipemap:{{texthash:{d}/virtual, cidr:{d}/gone}}\n");
    let main = std::fs::read_to_string(dir.path().join("main.cf")).expect("main.cf") + &extra;
    write(&dir, "main.cf", &main);
    let (status, text) = check(dir.path());
    assert_eq!(status, 1, "{text}");
    assert_line(&text, "pipemap: 2 parts  ok");
    assert_line(&text, &format!("part cidr:{d}/gone"));
    assert_line(&text, &format!("cidr: {d}/gone: No such file or directory  ERROR"));
}

#[test]
fn a_table_mail_owner_cannot_read_fails() {
    if nix::unistd::User::from_name("nobody").ok().flatten().is_none() || !nix::unistd::getuid().is_root() {
        return; // needs a second user, and root to hand files to it
    }
    let dir = good("check-unreadable", "", MASTER);
    let main = std::fs::read_to_string(dir.path().join("main.cf")).expect("main.cf");
    write(&dir, "main.cf", &main.replace(&format!("mail_owner = {}", me()), "mail_owner = nobody"));
    use std::os::unix::fs::PermissionsExt;
    for (name, mode) in [("", 0o755), ("virtual", 0o600), ("pg.cf", 0o644)] {
        std::fs::set_permissions(dir.path().join(name), std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    let (status, text) = check(dir.path());
    assert_eq!(status, 1, "{text}");
    assert_line(&text, "/virtual exists, not readable by nobody:");
    assert_line(&text, "no read permission for other  ERROR");
}

#[test]
fn without_our_services_the_default_entries_are_checked() {
    let dir = good("check-default", "mail_owner = no-such-user-here\n", "smtp inet n - y - - smtpd\n");
    let (status, text) = check(dir.path());
    assert_eq!(status, 1, "{text}");
    assert_line(&text, "master.cf runs neither proxymap nor proxymap-rs: checking the default entries");
    assert_line(&text, "service proxymap (default: proxymap unix - - n - - proxymap)");
    assert_line(&text, "service proxywrite (default: proxywrite unix - - n - 1 proxymap -n proxywrite)");
    assert_line(&text, "no such user: no-such-user-here, the daemon cannot drop privileges  ERROR");
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_proxymap")).args(["check", "--bogus"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_proxymap"))
        .args(["check", "--config", "/nonexistent/x"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x: No such file or directory"));
}

#[test]
fn statistics_parameters_are_listed_and_a_bad_switch_is_a_warning() {
    let extra = "proxymap_statistics = maybe\nproxymap_statistics_directory = /srv/pm-stats\n";
    let dir = good("check-stats", extra, MASTER);
    let (status, text) = check(dir.path());
    assert_eq!(status, 0, "a warning, not an error: the daemon serves without statistics\n{text}");
    assert_line(
        &text,
        "proxymap_statistics = maybe (main.cf): bad boolean configuration: proxymap_statistics = maybe \
         (the daemon serves without statistics)  WARNING",
    );
    assert_line(&text, "proxymap_statistics_directory = /srv/pm-stats (main.cf)  ok");
    assert!(!has_line(&text, "proxymap_statistics (main.cf): not a parameter"), "{text}");
}
