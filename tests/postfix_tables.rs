//! Every table type we serve, through Postfix's proxymap and through ours,
//! asked by the real `postmap` client with a few hundred keys each: files
//! built by `postmap` (hash, btree, lmdb, cdb), pattern files (regexp, pcre,
//! cidr), `unix:`, and deletes through proxywrite. Answers, exit codes and
//! proxymap's log lines must be identical.

mod common;

use common::postfix::{Instance, Server};
use std::collections::BTreeMap;

const MAIN_CF: &str = "
proxy_read_maps = $local_recipient_maps proxy:unix:group.byname
    proxy:hash:@TABLES@/small proxy:btree:@TABLES@/small2 proxy:lmdb:@TABLES@/small proxy:cdb:@TABLES@/small
    proxy:regexp:@TABLES@/rules.regexp proxy:pcre:@TABLES@/rules.pcre proxy:cidr:@TABLES@/nets.cidr
    proxy:hash:@TABLES@/missing proxy:lmdb:@TABLES@/corrupt proxy:cdb:@TABLES@/corrupt
proxy_write_maps = proxy:btree:@WTABLES@/w proxy:lmdb:@WTABLES@/w proxy:hash:@WTABLES@/wh
";

const RULES: &str = r#"# pattern rules shared by regexp and pcre
/^re-(.*)@example\.com$/	matched $1
/^rejectme/	REJECT by rule
if /@example\.org$/
/^admin@/	admin at org
!/^user/	not a user at org
endif
/^(a+)(b*)c$/	groups $1-$2 $$
/^Case@/i	case sensitive
/^[0-9]+$/	digits
/^bad(/	broken rule
/^nores$/
/^x{2,}y$/	repeats
"#;

const NETS: &str = "\
192.168.0.0/16\tprivate
10.0.0.0/8\tten
2001:db8::/32\tv6doc
if 172.16.0.0/12
172.16.5.0/24\tinner
!172.16.0.0/16\touter-not-16
endif
[::1]\tloopback6
127.0.0.1\tloopback
10.1.2.3/8\tbad host bits
300.1.1.1\tbad address
";

fn keys_text() -> String {
    let mut keys: Vec<String> = Vec::new();
    for i in 0..60 {
        keys.push(format!("user{i}@example.com"));
        keys.push(format!("USER{i}@Example.COM"));
        keys.push(format!("re-{i}x@example.com"));
    }
    for k in [
        "admin@example.org",
        "user1@example.org",
        "other@example.org",
        "aaabbc",
        "ac",
        "abbbc",
        "Case@x",
        "case@x",
        "12345",
        "bad(",
        "nores",
        "xxy",
        "xy",
        "rejectme",
        "REJECTME",
        "  spaced  ",
        "a\tb",
        "alice@example.com",
        "ALICE@example.com",
        "bob@example.com",
        "mixed@example.com",
        "Mixed@Example.com",
        "example.net",
        "sub.example.net",
    ] {
        keys.push(k.to_string());
    }
    for i in 0..40u32 {
        keys.push(format!("10.{}.{}.{}", i * 7 % 256, i * 13 % 256, i));
        keys.push(format!("192.168.{}.{}", i, 255 - i));
        keys.push(format!("172.16.{}.{}", i % 8, i));
        keys.push(format!("172.{}.5.1", 16 + i % 20));
        keys.push(format!("2001:db8::{:x}", i * 4099));
        keys.push(format!("2001:DB8:0:0::{i}"));
    }
    for k in ["::1", "127.0.0.1", "[127.0.0.1]", "127.000.0.1", "::ffff:10.1.1.1", "1.2.3", "junk", "fe80::1%eth0"] {
        keys.push(k.to_string());
    }
    for k in ["root", "ROOT", "daemon", "nobody", "no-such-user", "postfix", "mail"] {
        keys.push(k.to_string());
    }
    keys.join("\n") + "\n"
}

fn setup(inst: &Instance) {
    let t = &inst.tables;
    let small = "alice@example.com alice-value\nbob@example.com bob-value\nMixed@Example.com mixed\nexample.net OK\n";
    std::fs::write(t.join("small"), small).expect("small");
    std::fs::write(t.join("small2"), small).expect("small2");
    for spec in ["hash:small", "btree:small2", "lmdb:small", "cdb:small"] {
        let (kind, name) = spec.split_once(':').unwrap_or_default();
        let out = inst.postmap(&[&format!("{kind}:{}", t.join(name).display())]);
        assert!(out.status.success(), "postmap {spec}: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::write(t.join("rules.regexp"), RULES).expect("regexp");
    std::fs::write(t.join("rules.pcre"), RULES).expect("pcre");
    std::fs::write(t.join("nets.cidr"), NETS).expect("cidr");
    std::fs::write(t.join("corrupt.lmdb"), vec![0x55u8; 8192]).expect("corrupt lmdb");
    std::fs::write(t.join("corrupt.cdb"), b"short").expect("corrupt cdb");
    // proxywrite tables, created by postmap and owned by the postfix user
    let w = &inst.wtables;
    std::fs::write(w.join("w"), "k1 v1\nk2 v2\nk3 v3\n").expect("w");
    std::fs::write(w.join("wh"), "k1 v1\nk2 v2\nk3 v3\n").expect("wh");
    for spec in
        [format!("btree:{}/w", w.display()), format!("lmdb:{}/w", w.display()), format!("hash:{}/wh", w.display())]
    {
        assert!(inst.postmap(&[&spec]).status.success(), "postmap {spec}");
    }
    let _ = std::process::Command::new("chown").args(["-R", "postfix:postfix"]).arg(w).status();
}

fn tables(inst: &Instance) -> Vec<String> {
    let t = inst.tables.display().to_string();
    vec![
        format!("hash:{t}/small"),
        format!("btree:{t}/small2"),
        format!("lmdb:{t}/small"),
        format!("cdb:{t}/small"),
        format!("regexp:{t}/rules.regexp"),
        format!("pcre:{t}/rules.pcre"),
        format!("cidr:{t}/nets.cidr"),
        "unix:passwd.byname".into(),
        "unix:group.byname".into(),
        format!("hash:{t}/missing"),
    ]
}

/// Damaged files. Postfix 3.7's proxymap exits on these (its clients retry
/// forever), so they are checked against our documented behaviour only.
fn damaged(inst: &Instance) -> Vec<String> {
    let t = inst.tables.display().to_string();
    vec![format!("lmdb:{t}/corrupt"), format!("cdb:{t}/corrupt")]
}

fn outcome(o: &std::process::Output) -> String {
    format!(
        "exit={:?}\nstdout={}\nstderr={}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Run every table with every key, plus deletes through proxywrite.
fn run(inst: &Instance, phase: &str) -> BTreeMap<String, String> {
    let keys = keys_text();
    let mut out = BTreeMap::new();
    for table in tables(inst) {
        let o = inst.postmap_stdin(&["-q", "-", &format!("proxy:{table}")], &keys);
        out.insert(table.clone(), outcome(&o));
    }
    let w = inst.wtables.display().to_string();
    // each phase deletes its own key, and one key that is not there
    let key = if phase == "postfix" { "k1" } else { "k2" };
    for table in [format!("btree:{w}/w"), format!("lmdb:{w}/w"), format!("hash:{w}/wh")] {
        for (k, label) in [(key, "present"), ("absent", "absent")] {
            let o = inst.postmap(&["-d", k, &format!("proxy:{table}")]);
            out.insert(format!("delete {label} key {table}"), outcome(&o).replace(key, "KEY"));
        }
    }
    out
}

fn proxymap_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once(" postfix/proxymap["))
        .filter_map(|(_, rest)| rest.split_once("]: ").map(|(_, text)| text.to_string()))
        .collect()
}

#[test]
fn every_table_type_answers_as_through_postfix() {
    let mut inst = Instance::new("tables", MAIN_CF, Server::Postfix);
    setup(&inst);
    inst.start();
    let theirs = run(&inst, "postfix");
    let their_log = proxymap_lines(&inst.log());
    inst.switch(Server::Ours);
    let mark = inst.log().len();
    let ours = run(&inst, "ours");
    let our_log = proxymap_lines(&inst.log()[mark..]);
    if std::env::var_os("PM_DIFF_SHOW").is_some() {
        eprintln!("{ours:#?}\n{}", inst.log());
    }

    let mut diffs = Vec::new();
    for (name, t) in &theirs {
        if Some(t) != ours.get(name) {
            diffs.push(format!("{name}\n  postfix: {t:?}\n  ours:    {:?}", ours.get(name)));
        }
    }
    assert!(diffs.is_empty(), "{} difference(s):\n{}", diffs.len(), diffs.join("\n"));
    // the hits really happened
    let hash = &theirs[&format!("hash:{}/small", inst.tables.display())];
    assert!(hash.contains("alice@example.com\talice-value"), "{hash}");
    let cidr = &theirs[&format!("cidr:{}/nets.cidr", inst.tables.display())];
    assert!(cidr.contains("\tinner") && cidr.contains("\tv6doc"), "{cidr}");

    // log lines: the same set (order may differ between table types' open times)
    let mut a = their_log.clone();
    let mut b = our_log.clone();
    a.sort();
    b.sort();
    a.dedup();
    b.dedup();
    assert_eq!(a, b, "proxymap log lines differ");

    // damaged files: RETRY (postmap reports a query error), one `error:` line
    // per cause however often they are asked, and the process keeps serving
    for table in damaged(&inst) {
        for _ in 0..3 {
            let o = inst.postmap(&["-q", "k", &format!("proxy:{table}")]);
            assert_eq!(o.status.code(), Some(1), "{table}: {}", outcome(&o));
            assert!(String::from_utf8_lossy(&o.stderr).contains("query error"), "{table}: {}", outcome(&o));
        }
    }
    let o = inst.postmap(&["-q", "alice@example.com", &format!("proxy:hash:{}/small", inst.tables.display())]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "alice-value\n");
    // an empty key, which LMDB cannot store: Postfix 3.7 exits; we answer "not found"
    let mut raw = common::Raw::connect(&inst.socket("proxymap"));
    let lmdb = format!("lmdb:{}/small", inst.tables.display());
    assert_eq!(raw.call(&common::lookup(&lmdb, "")), common::list(&[("status", "1"), ("value", "")]));
    let log = inst.log();
    for table in damaged(&inst) {
        let (kind, name) = table.split_once(':').unwrap_or_default();
        let file = format!("{name}.{kind}");
        let errors = log
            .lines()
            .filter(|l| l.contains("postfix/proxymap[") && l.contains(": error: ") && l.contains(&file))
            .count();
        assert_eq!(errors, 1, "{table}: one error line expected in\n{log}");
    }

    // what both proxywrites deleted is gone from the files, the rest is there
    inst.stop();
    let w = inst.wtables.display().to_string();
    for table in [format!("btree:{w}/w"), format!("lmdb:{w}/w"), format!("hash:{w}/wh")] {
        let o = inst.postmap(&["-s", &table]);
        let listing = String::from_utf8_lossy(&o.stdout);
        assert!(!listing.contains("k1") && !listing.contains("k2") && listing.contains("k3\tv3"), "{table}: {listing}");
    }
}
