//! `cargo test --release --lib many_rules -- --ignored --nocapture`: load
//! and lookup times with 5,000 rules (a measurement, not a pass/fail test).

use super::RuleTable;
use crate::dict::pattern::engine::Engine;
use crate::dict::pattern::pcre::Pcre;
use crate::dict::pattern::regexp::Posix;

fn table(n: usize) -> String {
    let mut t = String::new();
    for i in 0..n {
        match i % 4 {
            0 => t.push_str(&format!("/^(.*)@host{i}\\.example\\.com$/\tuser=$1\n")),
            1 => t.push_str(&format!("/\\.domain{i}\\.net$/\tREJECT {i}\n")),
            2 => t.push_str(&format!("/^Subject:.*spam{i}/\tDISCARD\n")),
            _ => t.push_str(&format!("/^user{i}[0-9]*@/\tOK\n")),
        }
    }
    t
}

fn run<E: Engine>(engine: E) {
    let text = table(5000);
    let start = std::time::Instant::now();
    let mut w = Vec::new();
    let t = RuleTable::load(engine, "speed", text.as_bytes(), 0, &mut w);
    let load = start.elapsed();
    let keys = ["joe@host4996.example.com", "nobody@nowhere.example", "Subject: hello world", "user4999@x"];
    let mut out = Vec::new();
    let rounds = 200;
    let start = std::time::Instant::now();
    for _ in 0..rounds {
        for k in keys {
            t.lookup(k.as_bytes(), false, &mut out);
        }
    }
    let per = start.elapsed() / (rounds * keys.len() as u32);
    println!("{}: 5000 rules load {load:?}, {per:?} per lookup", E::TYPE);
}

/// The benchmark's regexp200 table: 200 rules of five alternatives,
/// two groups each; keys hit rule (i % 1000) % 200.
fn bench200<E: Engine>() {
    let text: String = (0..200)
        .map(|k| {
            let alts: Vec<String> = (0..5).map(|j| format!("{:03}", k + 200 * j)).collect();
            format!("/^user([0-9]+)@d({})\\.example$/ OK rule {k} user $1\n", alts.join("|"))
        })
        .collect();
    let t = RuleTable::load(E::default(), "speed", text.as_bytes(), 0, &mut Vec::new());
    let keys: Vec<String> = (0..1000).map(|i| format!("user{i:06}@d{:03}.example", i % 1000)).collect();
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    let mut hits = 0;
    for _ in 0..20 {
        for k in &keys {
            hits += usize::from(t.lookup(k.as_bytes(), false, &mut out));
        }
    }
    let per = start.elapsed() / 20_000;
    let caches = t.pool.idle_cache_bytes();
    let dfas: usize = t.set.as_ref().map_or(0, |s| s.chunks.iter().map(|c| c.dfa.memory_usage()).sum());
    println!("{}: 200 rules, {per:?} per lookup, {hits} hits; set caches {caches} B, DFAs {dfas} B", E::TYPE);
}

#[test]
#[ignore]
fn many_rules() {
    bench200::<Posix>();
    bench200::<Pcre>();
    run(Posix);
    run(Pcre);
}
