//! The cidr table's unit tests (the differential ones against `postmap
//! -q` are in tests/postfix_pattern.rs).

use super::addr::{inet_pton4, inet_pton6};
use super::*;
use crate::config::Params;
use crate::dict::Mode;
use crate::test_support::{Rng, TempDir, TempFile};

fn open_with(name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
    let params = Params::default();
    open(&OpenRequest { type_name: "cidr", name, mode, flags, params: &params })
}

fn get(d: &mut Box<dyn Dict>, key: &str) -> Option<String> {
    let mut out = b"garbage".to_vec();
    match d.lookup(key.as_bytes(), 0, &mut out).unwrap() {
        true => Some(String::from_utf8(out).unwrap()),
        false => {
            assert!(out.is_empty());
            None
        }
    }
}

fn rand_v4(rng: &mut Rng) -> u32 {
    rng.next() as u32
}

fn rand_v6(rng: &mut Rng) -> u128 {
    (u128::from(rng.next()) << 64) | u128::from(rng.next())
}

fn v4(a: u32) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

fn v6(a: u128) -> String {
    std::net::Ipv6Addr::from(a).to_string()
}

#[test]
fn inline_tables() {
    let mut d = open_with(
        "{{1.1.1.1 a b}, { 1.1.1.0/24  c  },{if 2.0.0.0/8},{2.2.2.2 two},{endif},{2001:db8::/32 v6}}",
        Mode::ReadOnly,
        0,
    )
    .unwrap();
    assert_eq!(get(&mut d, "1.1.1.1").as_deref(), Some("a b"));
    assert_eq!(get(&mut d, "1.1.1.2").as_deref(), Some("c"));
    assert_eq!(get(&mut d, "1.1.2.1"), None);
    assert_eq!(get(&mut d, "2.2.2.2").as_deref(), Some("two"));
    assert_eq!(get(&mut d, "2001:db8::1").as_deref(), Some("v6"));
    assert_eq!(get(&mut d, "abc"), None);
    let mut d = open_with("{}", Mode::ReadOnly, 0).unwrap();
    assert_eq!(get(&mut d, "1.1.1.1"), None);
    let err = open_with("{1.1.1.1 x}", Mode::ReadOnly, 0).err().unwrap();
    assert_eq!(err.reason, "cidr map: no '{' at start of text in \"1.1.1.1\"");
    let err = open_with("{{1.1.1.1 x}", Mode::ReadOnly, 0).err().unwrap();
    assert_eq!(err.reason, "cidr map: missing '}' in \"{{1.1.1.1 x}\"");
    assert!(!d.changed());
}

#[test]
fn open_errors_flags_and_changes() {
    let f = TempFile::new("cidr", b"1.2.3.4 x\n");
    let err = open_with(f.name(), Mode::ReadWrite, 0).err().unwrap();
    assert_eq!(err.reason, format!("cidr:{} map requires O_RDONLY access mode", f.name()));
    let missing = format!("{}.missing", f.name());
    let err = open_with(&missing, Mode::ReadOnly, 0).err().unwrap();
    assert_eq!(err.reason, format!("open {missing}: No such file or directory"));
    let dir = TempDir::new("cidr-dir");
    let dir = dir.path().to_str().unwrap();
    let err = open_with(dir, Mode::ReadOnly, 0).err().unwrap();
    assert_eq!(err.reason, format!("cidr map {dir}: read error: Is a directory"));

    let mut d = open_with(f.name(), Mode::ReadOnly, crate::protocol::flags::FOLD_FIX).unwrap();
    assert_eq!(d.flags(), PATTERN | crate::protocol::flags::FOLD_FIX);
    assert_eq!(get(&mut d, "1.2.3.4").as_deref(), Some("x"));
    assert_eq!(get(&mut d, ""), None);
    assert_eq!(d.sequence(&mut None, true, 0), Err(crate::dict::DictError::Unsupported("sequence")));
    assert!(!d.changed());
    // mtime change
    let file = std::fs::File::options().write(true).open(&f.0).unwrap();
    file.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(100)).unwrap();
    assert!(d.changed());
    // replaced by another file under the same name
    let d = open_with(f.name(), Mode::ReadOnly, 0).unwrap();
    assert!(!d.changed());
    let g = TempFile::new("cidr", b"5.6.7.8 y\n");
    std::fs::rename(&g.0, &f.0).unwrap();
    assert!(d.changed());
    // removed
    let d = open_with(f.name(), Mode::ReadOnly, 0).unwrap();
    std::fs::remove_file(&f.0).unwrap();
    assert!(d.changed());
}

#[test]
fn values_are_files() {
    let content = TempFile::new("cidr", b"foo");
    let text = format!(
        "1.2.3.4 {}\n5.6.7.8 /nonexistent/x\nif 9.0.0.0/8\n9.9.9.9 {}\nendif\n",
        content.name(),
        content.name()
    );
    let f = TempFile::new("cidr", text.as_bytes());
    let (_, _, warnings) = parse_table(text.as_bytes(), f.name(), SRC_RHS_IS_FILE);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0].ends_with("line 2: open /nonexistent/x: No such file or directory: skipping this rule"));
    let mut d = open_with(f.name(), Mode::ReadOnly, SRC_RHS_IS_FILE).unwrap();
    assert_eq!(get(&mut d, "1.2.3.4").as_deref(), Some("Zm9v"));
    assert_eq!(get(&mut d, "5.6.7.8"), None);
    // The `if` failed (empty file list), so its rules are top-level.
    assert_eq!(get(&mut d, "9.9.9.9").as_deref(), Some("Zm9v"));
}

#[test]
fn address_helpers() {
    assert_eq!(inet_pton4(b"1.2.3.4"), Some([1, 2, 3, 4]));
    assert_eq!(inet_pton4(b"01.2.3.4"), None);
    assert_eq!(inet_pton6(b"::ffff:1.2.3.4"), Some(0xffff_0102_0304));
    assert_eq!(
        inet_pton6(b"1:2:3:4:5:6:7::"),
        Some(u128::from_be_bytes([0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0]))
    );
    assert_eq!(inet_pton6(b"1::2::3"), None);
    for (a, text) in [
        (0u128, "::"),
        (1, "::1"),
        (0x0102_0304, "::1.2.3.4"),
        (0xffff_0102_0304, "::ffff:1.2.3.4"),
        (0x2001_0db8 << 96, "2001:db8::"),
        (0x0001_0000_0001_0001_0001_0001_0001_0001, "1:0:1:1:1:1:1:1"),
        (0x0001_0000_0000_0001_0000_0000_0001_0001, "1::1:0:0:1:1"),
    ] {
        assert_eq!(format_addr(true, a), text);
    }
}

/// A reference evaluation for plain positive rules: the first match in order.
fn linear(rules: &[(bool, u128, u8)], is_v6: bool, addr: u128) -> Option<usize> {
    rules.iter().position(|&(v, net, p)| v == is_v6 && addr & mask(p, width(v)) == net)
}

#[test]
fn hundred_thousand_networks() {
    let mut rng = Rng(7);
    let mut rules = Vec::new();
    let mut text = String::with_capacity(4_000_000);
    for i in 0..100_000 {
        if i % 10 == 9 {
            let p = 16 + (rng.next() % 113) as u8;
            let net = rand_v6(&mut rng) & mask(p, 128);
            rules.push((true, net, p));
            text.push_str(&format!("{}/{p} r{i}\n", v6(net)));
        } else {
            let p = 12 + (rng.next() % 21) as u8;
            let net = u128::from(rand_v4(&mut rng)) & mask(p, 32);
            rules.push((false, net, p));
            text.push_str(&format!("{}/{p} r{i}\n", v4(net as u32)));
        }
    }
    let f = TempFile::new("cidr", text.as_bytes());
    let start = std::time::Instant::now();
    let mut d = open_with(f.name(), Mode::ReadOnly, 0).unwrap();
    let opened = start.elapsed();
    // Half the keys inside some network, half random.
    let keys: Vec<(String, bool, u128)> = (0..100_000)
        .map(|i| {
            let (is_v6, addr) = if i % 2 == 0 {
                let (v, net, p) = rules[(rng.next() % rules.len() as u64) as usize];
                (v, net | (rand_v6(&mut rng) & !mask(p, width(v)) & mask(width(v), width(v))))
            } else if i % 10 == 1 {
                (true, rand_v6(&mut rng))
            } else {
                (false, u128::from(rand_v4(&mut rng)))
            };
            (if is_v6 { v6(addr) } else { v4(addr as u32) }, is_v6, addr)
        })
        .collect();
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    let mut hits = 0;
    for (key, _, _) in &keys {
        hits += usize::from(d.lookup(key.as_bytes(), 0, &mut out).unwrap());
    }
    let elapsed = start.elapsed();
    eprintln!("cidr: 100000 rules opened in {opened:?}; 100000 lookups ({hits} hits) in {elapsed:?}");
    assert!(hits > 50_000 && hits < 100_000);
    assert!(elapsed < std::time::Duration::from_secs(5), "far too slow: {elapsed:?}");
    // Spot-check against a linear first-match scan.
    for (key, is_v6, addr) in keys.iter().step_by(97) {
        let want = linear(&rules, *is_v6, *addr).map(|i| format!("r{i}"));
        assert_eq!(get(&mut d, key), want, "{key}");
    }
}
