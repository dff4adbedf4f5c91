//! The allowlist under attack, against Postfix 3.7's decisions: hostile
//! table names (`proxy:` repeats, `..`, `//`, symlinks, trailing and inner
//! spaces, NUL inside an attribute, upper case, names of 12 KB and 100 KB,
//! composite tables wrapping an unlisted table) sent raw to the proxymap and
//! proxywrite sockets of one private instance, first served by Postfix's
//! proxymap, then by ours, with the same main.cf.
//!
//! Asserted: every reply is Postfix's, byte for byte (open replies: the
//! status), and neither server opened a table outside the allowlist, seen
//! three ways without tracing: the unlisted tables' files hold a canary
//! value that no reply may carry; their access times (set to 1970) stay
//! unread; and the unlisted writable tables name files that do not exist,
//! which proxywrite's open (O_CREAT) would create. No log line of either
//! server may name an unlisted table except the two DENY warnings.

mod common;

use common::postfix::{Instance, Server};
use common::*;
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

const MAIN_CF: &str = "
proxy_read_maps = proxy:texthash:@TABLES@/listed proxy:hash:@TABLES@/allowed
    proxy:unionmap:{texthash:@TABLES@/listed, inline:{u=1}} proxy:inline:{a=b}
proxy_write_maps = proxy:hash:@WTABLES@/w
";

/// Reply bytes, `(no reply)` when the server answers nothing within a
/// second, `(closed)` when it closes the connection.
fn exchange(socket: &Path, request: &[u8]) -> Vec<u8> {
    let mut c = Raw::connect(socket);
    c.send(request);
    c.stream.set_read_timeout(Some(Duration::from_secs(1))).expect("timeout");
    read_reply(&mut c.stream)
}

/// One attribute list: names and values alternate; a NUL where a name
/// starts ends the list.
fn read_reply(s: &mut UnixStream) -> Vec<u8> {
    let (mut out, mut in_value, mut at_start) = (Vec::new(), false, true);
    let mut buf = [0u8; 4096];
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) if out.is_empty() => return b"(closed)".to_vec(),
            Ok(0) => return out,
            Ok(n) => n,
            Err(_) if out.is_empty() => return b"(no reply)".to_vec(),
            Err(_) => return out,
        };
        for &b in &buf[..n] {
            out.push(b);
            if b == 0 {
                if !in_value && at_start {
                    return out;
                }
                in_value = !in_value;
                at_start = !in_value;
            } else {
                at_start = false;
            }
        }
    }
}

/// An open reply's flags carry bits of earlier clients in Postfix 3.7
/// (docs/compatibility.md): open replies are compared by status.
fn comparable(request: &[u8], reply: &[u8]) -> Vec<u8> {
    if request.starts_with(b"request\0open\0") {
        return reply.iter().copied().take_while(|&b| b != b'f').collect();
    }
    reply.to_vec()
}

struct Case {
    name: String,
    service: &'static str,
    bytes: Vec<u8>,
}

fn lookup_bytes(table: &str) -> Vec<u8> {
    list(&[("request", "lookup"), ("table", table), ("flags", "16384"), ("key", "k")])
}

fn cases(inst: &Instance) -> Vec<Case> {
    let t = inst.tables.display().to_string();
    let w = inst.wtables.display().to_string();
    let listed = format!("texthash:{t}/listed");
    let hostile_reads = vec![
        format!("texthash:{t}/secret"),
        format!("proxy:texthash:{t}/secret"),
        format!("proxy:proxy:proxy:texthash:{t}/secret"),
        format!("proxy:proxy:{listed}"),
        format!("proxy:{listed}"),
        format!("PROXY:{listed}"),
        format!("TEXTHASH:{t}/listed"),
        format!("texthash:{}/listed", t.to_uppercase()),
        format!("{listed} "),
        format!(" {listed}"),
        format!("{listed}\t"),
        format!("texthash:{t}//listed"),
        format!("texthash:{t}/./listed"),
        format!("texthash:{t}/../{}/listed", Path::new(&t).file_name().unwrap().to_string_lossy()),
        format!("texthash:{t}/listed/../secret"),
        format!("texthash:{t}/link-to-secret"),
        format!("texthash:{t}/absent"),
        format!("hash:{t}/secret"),
        format!("hash:{t}/../tables/secret"),
        format!("btree:{t}/allowed"),
        format!("hash:{t}/allowed.db"),
        format!("hash:/etc/postfix/../postfix/{t}/secret"),
        format!("unionmap:{{texthash:{t}/secret}}"),
        format!("unionmap:{{texthash:{t}/listed, texthash:{t}/secret}}"),
        format!("unionmap:{{texthash:{t}/listed,inline:{{u=1}}}}"),
        format!("unionmap:{{ texthash:{t}/listed, inline:{{u=1}} }}"),
        format!("pipemap:{{texthash:{t}/listed, texthash:{t}/secret}}"),
        format!("pipemap:{{inline:{{k=k}}, proxy:texthash:{t}/secret}}"),
        format!("unionmap:{{proxy:texthash:{t}/secret}}"),
        format!("proxy:unionmap:{{texthash:{t}/secret}}"),
        "inline:{a=b, k=x}".to_string(),
        "inline:{k=x}".to_string(),
        "inline:{a=b} ".to_string(),
        format!("texthash:{t}/secret{}", "/".repeat(12 * 1024)),
        format!("texthash:{}", "x".repeat(12 * 1024)),
        format!("texthash:{}{t}/secret", "/".repeat(100 * 1024)),
        "proxy:".to_string(),
        "proxy:proxy:".to_string(),
        "texthash".to_string(),
        ":".to_string(),
        "texthash:".to_string(),
        ":texthash".to_string(),
        String::new(),
    ];
    let mut out = Vec::new();
    for table in &hostile_reads {
        let short: String = table.chars().take(80).collect();
        out.push(Case {
            name: format!("lookup {short:?} ({} bytes)", table.len()),
            service: "proxymap",
            bytes: lookup_bytes(table),
        });
        out.push(Case {
            name: format!("open {short:?}"),
            service: "proxymap",
            bytes: list(&[("request", "open"), ("table", table), ("flags", "0")]),
        });
    }
    // Listed tables: answered (shows the test reaches the tables at all).
    for table in [listed.clone(), format!("hash:{t}/allowed"), format!("unionmap:{{{listed}, inline:{{u=1}}}}")] {
        out.push(Case { name: format!("listed {table}"), service: "proxymap", bytes: lookup_bytes(&table) });
    }
    // A NUL inside the table attribute: the listed name ends there, and
    // what follows is read as the next attribute's name.
    for tail in [&b"/../secret"[..], b"", &format!("\0texthash:{t}/secret").into_bytes()[..]] {
        let mut bytes = b"request\0lookup\0table\0".to_vec();
        bytes.extend_from_slice(listed.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(tail);
        bytes.extend_from_slice(b"\0flags\x0016384\0key\0k\0\0");
        out.push(Case {
            name: format!("NUL in table, then {:?}", String::from_utf8_lossy(tail)),
            service: "proxymap",
            bytes,
        });
    }
    let mut nul_secret = b"request\0lookup\0table\0texthash:".to_vec();
    nul_secret.extend_from_slice(format!("{t}/secret\0{t}/listed\0flags\x0016384\0key\0k\0\0").as_bytes());
    out.push(Case { name: "NUL splitting an unlisted name".into(), service: "proxymap", bytes: nul_secret });

    // proxywrite: updates and deletes of unlisted tables, whose files do not
    // exist (an open read-write would create them).
    let hostile_writes = vec![
        format!("hash:{w}/evil"),
        format!("proxy:hash:{w}/evil"),
        format!("proxy:proxy:hash:{w}/evil"),
        format!("hash:{w}/w "),
        format!("HASH:{w}/w"),
        format!("hash:{w}//w2"),
        format!("hash:{w}/./evil"),
        format!("hash:{w}/w/../evil"),
        format!("btree:{w}/w"),
        format!("lmdb:{w}/w"),
        format!("unionmap:{{hash:{w}/evil}}"),
        format!("pipemap:{{hash:{w}/w, hash:{w}/evil}}"),
        format!("hash:{w}/evil{}", "/".repeat(12 * 1024)),
        format!("texthash:{t}/secret"),
        listed.clone(),
    ];
    for table in &hostile_writes {
        let short: String = table.chars().take(80).collect();
        out.push(Case {
            name: format!("update {short:?}"),
            service: "proxywrite",
            bytes: list(&[("request", "update"), ("table", table), ("flags", "64"), ("key", "k"), ("value", "v")]),
        });
        out.push(Case {
            name: format!("delete {short:?}"),
            service: "proxywrite",
            bytes: list(&[("request", "delete"), ("table", table), ("flags", "64"), ("key", "k")]),
        });
    }
    // The read-only service refuses writes even to a listed table; the
    // writer serves its own list only.
    for (service, table) in [("proxymap", listed.clone()), ("proxywrite", format!("hash:{w}/w"))] {
        out.push(Case {
            name: format!("{service} update {table}"),
            service,
            bytes: list(&[("request", "update"), ("table", &table), ("flags", "64"), ("key", "k"), ("value", "v")]),
        });
    }
    out
}

/// Files an unlisted table would create, or read.
fn evidence(inst: &Instance) -> Vec<String> {
    let mut found = Vec::new();
    let w = &inst.wtables;
    for name in ["evil.db", "evil.lmdb", "w.lmdb", "w2.db", "w.db "] {
        if w.join(name).exists() {
            found.push(format!("{} was created", w.join(name).display()));
        }
    }
    for name in ["secret", "secret.db"] {
        let path = inst.tables.join(name);
        let atime = std::fs::metadata(&path).map(|m| std::os::unix::fs::MetadataExt::atime(&m)).unwrap_or(-1);
        if atime != 0 {
            found.push(format!("{} was read (atime {atime})", path.display()));
        }
    }
    found
}

fn write_tables(inst: &Instance) {
    let t = &inst.tables;
    std::fs::write(t.join("listed"), "k listed\n").expect("table");
    std::fs::write(t.join("secret"), "k CANARY\n").expect("table");
    std::os::unix::fs::symlink(t.join("secret"), t.join("link-to-secret")).expect("symlink");
}

/// Build the hash files with `postmap -i` from stdin.
fn build_hash(inst: &Instance, name: &str, text: &str) {
    let out = inst.postmap_stdin(&["-i", &format!("hash:{}", inst.tables.join(name).display())], text);
    assert!(out.status.success(), "postmap: {}", String::from_utf8_lossy(&out.stderr));
}

/// Set the canaries' access times to 1970 (after every setup read).
fn reset_atimes(inst: &Instance) {
    for name in ["secret", "secret.db"] {
        let path = inst.tables.join(name);
        let ok = std::process::Command::new("touch").args(["-a", "-h", "-d", "@0"]).arg(&path).status();
        assert!(ok.is_ok_and(|s| s.success()), "touch {}", path.display());
    }
}

/// Every line of a proxymap process that names an unlisted table other than
/// the DENY warnings.
fn suspicious_lines(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" postfix/proxymap["))
        .filter(|l| l.contains("secret") || l.contains("evil") || l.contains("absent") || l.contains("w2"))
        .filter(|l| !l.contains("request for unapproved table") && !l.contains("to approve this table"))
        // the NUL cases: what follows the NUL is read as an attribute name
        .filter(|l| !l.contains("unexpected attribute"))
        .map(|l| l.chars().take(300).collect())
        .collect()
}

fn run_all(inst: &Instance) -> Vec<(String, Vec<u8>)> {
    cases(inst)
        .into_iter()
        .map(|c| {
            let reply = exchange(&inst.socket(c.service), &c.bytes);
            (c.name, comparable(&c.bytes, &reply))
        })
        .collect()
}

#[test]
fn no_request_opens_a_table_outside_the_allowlist_and_every_decision_is_postfixs() {
    let mut inst = Instance::new("allowlist-attack", MAIN_CF, Server::Postfix);
    write_tables(&inst);
    build_hash(&inst, "allowed", "k allowed\n");
    build_hash(&inst, "secret", "k CANARY\n");
    // The noatime/relatime rules would hide a read: every read counts here.
    reset_atimes(&inst);
    inst.start();
    let theirs = run_all(&inst);
    std::thread::sleep(Duration::from_millis(500));
    let their_evidence = evidence(&inst);
    let their_lines = suspicious_lines(&inst.log());

    inst.restart_with(Server::Ours);
    let mark = inst.log().len();
    let ours = run_all(&inst);
    std::thread::sleep(Duration::from_millis(500));
    let our_evidence = evidence(&inst);
    let our_lines = suspicious_lines(&inst.log()[mark..]);

    let mut diffs = Vec::new();
    for ((name, t), (_, o)) in theirs.iter().zip(&ours) {
        if t != o {
            diffs.push(format!(
                "{name}\n  postfix: {:?}\n  ours:    {:?}",
                String::from_utf8_lossy(t),
                String::from_utf8_lossy(o)
            ));
        }
    }
    let count =
        |replies: &[(String, Vec<u8>)], status: &[u8]| replies.iter().filter(|(_, r)| r.starts_with(status)).count();
    eprintln!(
        "{} requests each; DENY {} / {}, BAD {} / {}, OK {} / {}, no reply or closed {} / {} (Postfix / ours)",
        ours.len(),
        count(&theirs, b"status\x004"),
        count(&ours, b"status\x004"),
        count(&theirs, b"status\x003"),
        count(&ours, b"status\x003"),
        count(&theirs, b"status\x000"),
        count(&ours, b"status\x000"),
        count(&theirs, b"("),
        count(&ours, b"("),
    );
    assert!(diffs.is_empty(), "{} of {} replies differ from Postfix's:\n{}", diffs.len(), ours.len(), diffs.join("\n"));
    for (name, reply) in &ours {
        assert!(!String::from_utf8_lossy(reply).contains("CANARY"), "{name}: an unlisted table answered");
    }
    assert!(their_evidence.is_empty() && their_lines.is_empty(), "Postfix: {their_evidence:?} {their_lines:#?}");
    assert!(our_evidence.is_empty(), "ours opened an unlisted table: {our_evidence:?}");
    assert!(our_lines.is_empty(), "ours: {our_lines:#?}");
    // The listed tables were really served.
    let listed = ours.iter().filter(|(n, r)| n.starts_with("listed ") && r.starts_with(b"status\x000")).count();
    assert_eq!(listed, 3, "{ours:?}");
}
