//! A real Postfix client of proxywrite: verify(8) keeps its address cache in a
//! proxied table (open, lookup, update, and a sequence walk for cleanup).
//! The same exchanges with Postfix's proxywrite and with ours give the same
//! answers, and each side reads what the other wrote.

mod common;

use common::postfix::{Instance, Server};
use common::*;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Talk to verify(8): one request, one reply (its own attribute protocol).
fn verify(inst: &Instance, pairs: &[(&str, &str)]) -> String {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verify_once(inst, pairs)));
    result.unwrap_or_else(|_| panic!("verify exchange failed; log:\n{}", inst.log()))
}

fn verify_once(inst: &Instance, pairs: &[(&str, &str)]) -> String {
    let mut s = UnixStream::connect(inst.queue.join("private/verify")).expect("verify socket");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut buf = Vec::new();
    let read_list = |s: &mut UnixStream, buf: &mut Vec<u8>| -> Vec<u8> {
        loop {
            if let Some(end) = buf.windows(2).position(|w| w == b"\0\0") {
                // a list ends with an empty name: value NUL + terminator NUL
                let list: Vec<u8> = buf.drain(..end + 2).collect();
                return list;
            }
            let mut chunk = [0u8; 4096];
            let n = match s.read(&mut chunk) {
                Ok(n) => n,
                Err(e) => panic!("verify reply: {e}"),
            };
            assert!(n > 0, "verify closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    let _greeting = read_list(&mut s, &mut buf);
    s.write_all(&list(pairs)).expect("send");
    let reply = read_list(&mut s, &mut buf);
    String::from_utf8_lossy(&reply).replace('\0', "|")
}

fn update(inst: &Instance, addr: &str, status: &str, reason: &str) -> String {
    verify(inst, &[("request", "update"), ("address", addr), ("recipient_status", status), ("reason", reason)])
}

fn query(inst: &Instance, addr: &str) -> String {
    verify(inst, &[("request", "query"), ("address", addr)])
}

/// The same verify(8) conversation in each phase.
fn exchanges(inst: &Instance) -> Vec<String> {
    vec![
        update(inst, "one@example.com", "0", "deliverable by postfix"),
        query(inst, "one@example.com"),
        update(inst, "two@example.com", "2", "undeliverable"),
        query(inst, "two@example.com"),
    ]
}

#[test]
fn verify_cache_in_lmdb_through_proxywrite() {
    verify_cache_through_proxywrite("lmdb");
}

#[test]
fn verify_cache_in_btree_through_proxywrite() {
    verify_cache_through_proxywrite("btree");
}

fn verify_cache_through_proxywrite(kind: &str) {
    // A short cleanup interval makes verify walk the cache (sequence, with
    // deletes of expired entries) in each phase.
    let main_cf = format!(
        "address_verify_map = proxy:{kind}:@WTABLES@/verify_cache\n\
         address_verify_cache_cleanup_interval = 1s\n"
    );
    let mut inst = Instance::new(&format!("verify-{kind}"), &main_cf, Server::Postfix);
    inst.start();

    let postfix = exchanges(&inst);

    // A full restart rather than a reload: across a reload verify stays
    // connected and sends its next request to the new process without an
    // `open`, which makes Postfix 3.7's own proxywrite panic for lmdb caches
    // ("both open lock and access lock"), a 3.7 bug this test must not hit.
    inst.restart_with(Server::Ours);
    let ours = exchanges(&inst);
    // what Postfix's proxywrite wrote is read through ours
    let three = update(&inst, "three@example.com", "0", "ours");
    let walked = inst.log().matches("full cleanup").count();
    std::thread::sleep(Duration::from_millis(2500));
    let after = inst.log();
    assert!(after.matches("full cleanup").count() > walked, "no cleanup walk through our proxywrite:\n{after}");
    assert_eq!(postfix, ours, "verify answers differ\n{}", inst.log());
    assert!(three.starts_with("status|0|"), "{three}");

    // what ours wrote is read back by Postfix's proxywrite
    inst.restart_with(Server::Postfix);
    let q = query(&inst, "three@example.com");
    assert!(q.contains("recipient_status|0|") && q.contains("reason|ours|"), "{q}");

    // the cache file is valid for postmap reading it directly (once the
    // proxywrite that holds its exclusive open lock is gone)
    let log = inst.log();
    inst.stop();
    let out = inst.postmap(&["-s", &format!("{kind}:{}/verify_cache", inst.wtables.display())]);
    let listing = String::from_utf8_lossy(&out.stdout);
    for addr in ["one@example.com", "two@example.com", "three@example.com"] {
        assert!(listing.contains(addr), "{addr} missing from the cache:\n{listing}");
    }
    assert!(!log.contains("fatal") && !log.contains("panic") && !log.contains("bad address verify"), "{log}");
}
