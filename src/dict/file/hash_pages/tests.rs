use super::*;
use crate::config::Params;
use crate::dict::testutil::{copy_fixture, fill};
use crate::dict::{Dict, Mode, OpenRequest};
use crate::protocol::flags::{FOLD_FIX, SYNC_UPDATE};
use crate::test_support::TempDir;

/// Open `t:name` (hash or btree) read-write with our Berkeley DB writer,
/// the library and settings postmap uses.
fn writer(t: &str, name: &str) -> Box<dyn Dict> {
    let params = Params::default();
    let req = OpenRequest { type_name: t, name, mode: Mode::ReadWrite, flags: 0, params: &params };
    let d = if t == "hash" { super::super::db::open_hash(&req) } else { super::super::db::open_btree(&req) };
    d.expect("open for writing")
}

/// A `t` table `dir/name` holding the `KEY VALUE` lines of `source`,
/// written as postmap writes them (keys folded, with NUL). Bigger than
/// the checked-in fixtures; tests/postfix_files.rs reads postmap's own.
fn build(dir: &TempDir, t: &str, name: &str, source: &str) -> String {
    let name = dir.path().join(name).to_str().unwrap().to_owned();
    fill(&mut writer(t, &name), source, FOLD_FIX);
    name
}

/// Every key of a file built as postmap builds it, through the page
/// reader and with misses; big keys and values live on overflow pages.
#[test]
fn reads_every_key_and_overflow_page() {
    let lab = TempDir::new("hashpages");
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!("user{i}@example.com\tvalue {i}\n"));
    }
    let big_key = "k".repeat(3000);
    let big_value = "v".repeat(20000);
    text.push_str(&format!("{big_key}\tshort\nbigvalue\t{big_value}\n"));
    let path = build(&lab, "hash", "t", &text);
    let pages = HashPages::open(&format!("{path}.db")).expect("open");
    let mut out = Vec::new();
    for i in 0..5000 {
        let key = format!("user{i}@example.com\0");
        assert!(pages.get(key.as_bytes(), &mut out, None).expect("get"), "{key}");
        assert_eq!(out, format!("value {i}\0").as_bytes());
        assert!(!pages.get(&key.as_bytes()[..key.len() - 1], &mut out, None).expect("get without NUL"));
    }
    assert!(pages.get(format!("{big_key}\0").as_bytes(), &mut out, None).expect("big key"));
    assert_eq!(out, b"short\0");
    assert!(pages.get(b"bigvalue\0", &mut out, None).expect("big value"));
    assert_eq!(out, format!("{big_value}\0").as_bytes());
    assert!(!pages.get(b"nobody@example.com\0", &mut out, None).expect("miss"));
    assert!(!pages.get(format!("{}\0", "k".repeat(2999)).as_bytes(), &mut out, None).expect("miss"));
}

/// Keys added by another writer split buckets: every key is found,
/// old and new (a miss reads the meta page again).
#[test]
fn follows_bucket_splits_after_a_new_lease() {
    let lab = TempDir::new("hashpages-split");
    let name = build(&lab, "hash", "s", "k0\tv0\n");
    let pages = HashPages::open(&format!("{name}.db")).expect("open");
    let more: String = (1..3000).map(|i| format!("k{i} v{i}\n")).collect();
    // As postmap -i: added in place, flushed when the writer closes.
    fill(&mut writer("hash", &name), &more, FOLD_FIX);
    let mut out = Vec::new();
    for i in 0..3000 {
        assert!(pages.get(format!("k{i}\0").as_bytes(), &mut out, None).expect("get"), "k{i}");
        assert_eq!(out, format!("v{i}\0").as_bytes());
    }
    assert!(!pages.get(b"k3000\0", &mut out, None).expect("miss"));
}

/// Updates that grow and shrink values (on and off overflow pages),
/// deletes and additions by a writer: every key reads as expected.
#[test]
fn follows_updates_and_deletes() {
    let lab = TempDir::new("hashpages-edit");
    let mut expected = std::collections::BTreeMap::new();
    let mut text = String::new();
    for i in 0..1500 {
        let value = format!("v{i}-{}", "s".repeat(i * 7 % 900));
        text.push_str(&format!("k{i}\t{value}\n"));
        expected.insert(format!("k{i}"), value);
    }
    let name = build(&lab, "hash", "e", &text);
    let mut updates = String::new();
    for i in (0..1500).step_by(3) {
        let value = format!("u{i}-{}", "b".repeat(i * 13 % 3000));
        updates.push_str(&format!("k{i} {value}\n"));
        expected.insert(format!("k{i}"), value);
    }
    for i in 1500..2500 {
        updates.push_str(&format!("k{i} n{i}\n"));
        expected.insert(format!("k{i}"), format!("n{i}"));
    }
    // As postmap -r -i, then postmap -d -.
    fill(&mut writer("hash", &name), &updates, FOLD_FIX);
    let mut w = writer("hash", &name);
    for i in (0..2500).filter(|i| i % 5 == 1) {
        assert!(w.delete(format!("k{i}").as_bytes(), SYNC_UPDATE).expect("delete"), "k{i}");
    }
    drop(w);
    let pages = HashPages::open(&format!("{name}.db")).expect("open");
    let mut out = Vec::new();
    for i in 0..2500 {
        let key = format!("k{i}");
        let found = pages.get(format!("{key}\0").as_bytes(), &mut out, None).expect("get");
        if i % 5 == 1 {
            assert!(!found, "{key} was deleted");
        } else {
            assert!(found, "{key}");
            assert_eq!(out, format!("{}\0", expected[&key]).as_bytes(), "{key}");
        }
    }
}

/// Random damage never panics or loops: every lookup answers or fails.
#[test]
fn random_damage_is_an_error_not_a_crash() {
    let lab = TempDir::new("hashpages-fuzz");
    let text: String = (0..2000).map(|i| format!("key{i}\t{}\n", "x".repeat(i % 1500))).collect();
    let db = format!("{}.db", build(&lab, "hash", "f", &text));
    let clean = std::fs::read(&db).expect("read");
    let mut seed: u64 = 0x9e3779b97f4a7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Vec::new();
    for round in 0..200 {
        let mut bytes = clean.clone();
        for _ in 0..1 + next() % 64 {
            // Leave the meta page alone half of the time.
            let lo = if round % 2 == 0 { 512 } else { 0 };
            let at = lo + (next() as usize) % (bytes.len() - lo);
            bytes[at] = next() as u8;
        }
        std::fs::write(&db, &bytes).expect("write");
        let Ok(pages) = HashPages::open(&db) else { continue };
        for i in (0..2000).step_by(7) {
            let _ = pages.get(format!("key{i}\0").as_bytes(), &mut out, None);
        }
    }
}

#[test]
fn refuses_other_files_and_fails_damaged_pages() {
    let lab = TempDir::new("hashpages-bad");
    let path = copy_fixture(lab.path(), "btree.db", "b");
    assert!(matches!(HashPages::open(&format!("{path}.db")), Err(PageError::Unsupported(_))));
    let path = copy_fixture(lab.path(), "hash.db", "h");
    let db = format!("{path}.db");
    let pages = HashPages::open(&db).expect("open");
    let mut out = Vec::new();
    assert!(pages.get(b"alice\0", &mut out, None).expect("get"));
    // Overwrite every page after the meta page with garbage.
    let mut bytes = std::fs::read(&db).expect("read");
    for b in bytes[pages.pagesize..].iter_mut() {
        *b = 0xa5;
    }
    std::fs::write(&db, &bytes).expect("write");
    assert!(matches!(pages.get(b"alice\0", &mut out, None), Err(PageError::Damaged { .. })));
    // Truncated: page numbers past the end are refused.
    std::fs::write(&db, &bytes[..pages.pagesize]).expect("truncate");
    pages.reload_meta(None).expect("meta");
    assert!(matches!(pages.get(b"alice\0", &mut out, None), Err(PageError::Damaged { .. })));
}

/// Salvage finds every pair of a sound file (overflow items included), and
/// a damaged copy gives a subset, without a panic.
#[test]
fn salvage_reads_every_pair_of_a_sound_file_and_what_it_can_of_a_damaged_one() {
    let lab = TempDir::new("salvage");
    let mut text: String = (0..3000).map(|i| format!("key{i}\tvalue{i}\n")).collect();
    text.push_str(&format!("{}\t{}\n", "k".repeat(3000), "v".repeat(20000)));
    let path = build(&lab, "hash", "t", &text);
    let sound = HashPages::open(&format!("{path}.db")).expect("open").salvage().expect("salvage");
    assert_eq!((sound.pairs.len(), sound.damaged), (3001, 0));
    assert!(sound.pairs.iter().any(|(k, v)| k.as_slice() == b"key42\0" && v.as_slice() == b"value42\0"));
    assert!(sound.pairs.iter().any(|(k, v)| k.len() == 3001 && v.len() == 20001));
    let mut bytes = std::fs::read(format!("{path}.db")).expect("read");
    for b in bytes[8192..16384].iter_mut() {
        *b = 0x5a;
    }
    let damaged = lab.path().join("damaged.db");
    std::fs::write(&damaged, &bytes).expect("write");
    let got = HashPages::open(damaged.to_str().expect("utf-8")).expect("open").salvage().expect("salvage");
    assert!(got.damaged > 0 && got.pairs.len() < 3001 && got.pairs.len() > 1000, "{} {}", got.pairs.len(), got.damaged);
}
