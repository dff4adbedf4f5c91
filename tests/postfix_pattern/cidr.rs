//! cidr tables against `postmap -q`: every prefix length, bad rules,
//! `if`/`endif` blocks with negation, the inline form.

use super::{open_logged, postmap};
use crate::common::{Rng, TempDir};
use proxymap::dict::Dict;

fn width(v6: bool) -> u8 {
    if v6 {
        128
    } else {
        32
    }
}

/// The network mask of `prefix` bits in an address of `width` bits.
fn mask(prefix: u8, width: u8) -> u128 {
    let full = if width == 128 { u128::MAX } else { (1u128 << width) - 1 };
    if prefix == 0 {
        0
    } else {
        (u128::MAX << (width - prefix)) & full
    }
}

fn rand_v4(rng: &mut Rng) -> u32 {
    rng.next() as u32
}

fn rand_v6(rng: &mut Rng) -> u128 {
    (u128::from(rng.next()) << 64) | u128::from(rng.next())
}

/// The value our cidr table gives `key`; a miss must leave `out` empty.
fn get(d: &dyn Dict, key: &str) -> Option<String> {
    let mut out = b"garbage".to_vec();
    match d.lookup(key.as_bytes(), 0, &mut out).unwrap() {
        true => Some(String::from_utf8(out).unwrap()),
        false => {
            assert!(out.is_empty());
            None
        }
    }
}

/// Compare our answers and warnings for `table_text` with postmap's.
fn differential(table_text: &str, keys: &[String]) {
    let dir = TempDir::new("cidr-diff");
    let file = dir.write("table.cidr", table_text.as_bytes());
    differential_name(&dir, file.to_str().unwrap(), keys);
}

fn differential_name(dir: &TempDir, name: &str, keys: &[String]) {
    let mut keys: Vec<String> = keys.to_vec();
    keys.sort();
    keys.dedup();
    keys.retain(|k| !k.is_empty() && !k.contains('\n'));
    let (expected, expected_warnings) = postmap(dir, &format!("cidr:{name}"), &keys);
    let expected: std::collections::BTreeMap<String, String> = expected.into_iter().collect();
    let (d, warnings) = open_logged("cidr", name, 0);
    assert_eq!(warnings, expected_warnings, "warnings for {name}");
    let text = if name.starts_with('{') { name.to_string() } else { std::fs::read_to_string(name).unwrap() };
    let mut hits = 0;
    for key in &keys {
        let want = expected.get(key).cloned();
        hits += usize::from(want.is_some());
        assert_eq!(get(&*d, key), want, "key {key:?} in\n{text}");
    }
    eprintln!("differential: {} keys, {hits} hits, {} warnings", keys.len(), warnings.len());
    // The tables are meant to exercise both outcomes.
    assert!(hits > 0 && hits < keys.len(), "{hits} hits of {}", keys.len());
}

fn v4(a: u32) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

fn v6(a: u128) -> String {
    std::net::Ipv6Addr::from(a).to_string()
}

/// Keys around a network: first, last, just outside, a random inside.
fn keys_around(keys: &mut Vec<String>, rng: &mut Rng, is_v6: bool, net: u128, prefix: u8) {
    let w = width(is_v6);
    let host = !mask(prefix, w) & mask(w, w);
    let last = net | host;
    let inside = net | (rand_v6(rng) & host);
    for a in [net, last, last.wrapping_add(1) & mask(w, w), net.wrapping_sub(1) & mask(w, w), inside] {
        keys.push(if is_v6 { v6(a) } else { v4(a as u32) });
    }
}

/// Odd key spellings: Postfix's inet_pton() decides.
fn odd_keys() -> Vec<String> {
    [
        "[10.1.2.3]",
        " 10.1.2.3",
        "10.1.2.3 ",
        "010.1.2.3",
        "10.01.2.3",
        "10.1.2.03",
        "0.0.0.0",
        "10.1.2",
        "10.1.2.3.4",
        "10.1.2.256",
        "10.1.2.3.",
        ".10.1.2.3",
        "10..1.2",
        "1e.1.2.3",
        "10.1.2.3/32",
        "::ffff:10.1.2.3",
        "::FFFF:10.1.2.3",
        "::ffff:a01:203",
        "::10.1.2.3",
        "0:0:0:0:0:ffff:10.1.2.3",
        "::ffff:010.1.2.3",
        "::ffff:10.1.2",
        "1:2:3:4:5:6:10.1.2.3",
        "1:2:3:4:5:6:7:10.1.2.3",
        "1::2::3",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7::",
        "::1:2:3:4:5:6:7",
        "1:2:3:4:5:6:7:8::",
        ":1::2",
        "1::2:",
        "12345::",
        "01234::",
        "fe80::1%eth0",
        "[2001:db8::1]",
        "2001:DB8::1",
        "2001:db8:0:0:0:0:0:1",
        "2001:0db8::0001",
        "::",
        ":::",
        "::1",
        "abc",
        "localhost",
        "10.1.2.3:25",
        "2001:db8::1 ",
        "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn differential_plain_prefixes_v4_and_v6() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut table = String::from("# every prefix length, in shuffled order\n");
    let mut keys = odd_keys();
    let mut lines = Vec::new();
    for prefix in 0..=32u8 {
        let net = u128::from(rand_v4(&mut rng)) & mask(prefix, 32);
        lines.push(format!("{}/{prefix} v4-{prefix}", v4(net as u32)));
        keys_around(&mut keys, &mut rng, false, net, prefix);
        // Another network of the same length, in brackets.
        let other = u128::from(rand_v4(&mut rng)) & mask(prefix, 32);
        lines.push(format!("[{}/{prefix}] v4b-{prefix}", v4(other as u32)));
        keys_around(&mut keys, &mut rng, false, other, prefix);
    }
    for prefix in 1..=128u8 {
        let net = rand_v6(&mut rng) & mask(prefix, 128);
        lines.push(format!("{}/{prefix} v6-{prefix}", v6(net)));
        keys_around(&mut keys, &mut rng, true, net, prefix);
    }
    for i in (1..lines.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        lines.swap(i, j);
    }
    // Keep /0 in the middle so that order, not length, decides.
    let zero_v4 = lines.iter().position(|l| l.starts_with("0.0.0.0/0 ")).unwrap();
    let moved = lines.remove(zero_v4);
    lines.insert(lines.len() / 2, moved);
    for l in lines {
        table.push_str(&l);
        table.push('\n');
    }
    table.push_str(
        "10.1.2.3 exact-late\n\
         [10.1.2.4] exact-bracket\n\
         [10.1.3.0]/24 bracket-mask\n\
         10.1.2.3/32   spaced   value  \n\
         ::ffff:10.1.2.0/120 mapped\n\
         ::10.1.2.3 compat\n\
         2001:DB8::/32 upper-hex\n\
         [2001:db8::1] bracket6\n\
         [::1]/128 loop6\n",
    );
    differential(&table, &keys);
}

const BAD_RULES: &str = "\
01.2.3.4 leading-zero
1.2.3.0/280 mask-truncated-to-24
1.2.3.4/4294967320 huge
1.2.3.4/99999999999999999999999 saturated
10.0.0.1/8 host-bits
10.0.0.0/7 host-bits-2
2001:db8::1/64 host-bits-v6
1:2:3:4:5:6:7:8/120 host-bits-v6b
::ffff:1.2.3.4/96 host-bits-mapped
1.2.3.4/33 too-long
::/129 too-long-v6
16.0.0.0/ empty-mask
16.0.0.0/-1 negative
16.0.0.0/8x junk-mask
/8 no-network
[14.0.0.0]x garbage
[15.0.0.0 unclosed
[] empty
[1.2.3.0/24]/8 double
1.2.3.0/24/8 double2
1.2.3.4
!
!1.2.3.4
1.2.3.4.5 bad
1:2::3::4 bad6
if
if !
IF 3.3.3.3 xx
if 3.3.3.0/24x
ENDIF
endif garbage
ifx 1.2.3.4
endiff 1.2.3.4
7.7.7.7 good
";

#[test]
fn differential_bad_rules() {
    let mut keys = odd_keys();
    for a in ["1.2.3.4", "1.2.3.200", "10.0.0.1", "16.1.1.1", "7.7.7.7", "14.0.0.0", "3.3.3.3", "255.1.1.1"] {
        keys.push(a.to_string());
    }
    differential(BAD_RULES, &keys);
}

const BLOCKS: &str = "\
# header comment
1.1.1.1 first
if 10.0.0.0/8
# comment inside
10.1.0.0/16 ten-one
!10.2.0.0/16 ten-not-two
  continued value
If !10.3.0.0/16
10.0.0.0/9 low-half-not-3
10.4.0.0/16 ten-four-shadowed
endif
10.3.3.0/24 ten-three-three
10.4.0.0/16 ten-four
endif
IF ::/0
2001:db8::/32 doc
if !2001:db8:1::/48
if!   !2001:db8:2::/48
2001:db8:2::/48 db8-2
endif
::/0 v6-any-not-db8-1
endif
ENDIF
if ::ffff:0:0/96
::ffff:10.0.0.0/104 mapped-ten
endif
endif
if 192.0.2.0/24
!192.0.2.128/25 doc-low-half
if 198.51.100.0/24
198.51.100.1 never
endif
if !203.0.113.0/24
192.0.2.0/24 doc-high
endif
endif
if 11.0.0.0/8
if 11.1.0.0/16
if 11.1.1.0/24
11.1.1.1 deep
endif
11.1.0.0/16 mid
endif
endif
!2001:db8::/32 v6-not-doc-late
12.0.0.0/8 twelve
if 99.0.0.0/8
99.1.0.0/16 unclosed-inner
if 99.1.1.0/24
99.1.1.1 unclosed-deeper
";

#[test]
fn differential_if_endif_negation() {
    let mut keys = odd_keys();
    let mut rng = Rng(42);
    for net in [
        "1.1.1.1/32",
        "10.0.0.0/8",
        "10.1.0.0/16",
        "10.2.0.0/16",
        "10.3.0.0/16",
        "10.3.3.0/24",
        "10.4.0.0/16",
        "192.0.2.0/24",
        "192.0.2.128/25",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "11.1.1.0/24",
        "11.1.0.0/16",
        "11.0.0.0/8",
        "12.0.0.0/8",
        "99.0.0.0/8",
        "99.1.0.0/16",
        "99.1.1.0/24",
    ] {
        let (a, p) = net.split_once('/').unwrap();
        let a: std::net::Ipv4Addr = a.parse().unwrap();
        keys_around(&mut keys, &mut rng, false, u128::from(u32::from(a)), p.parse().unwrap());
    }
    for net in ["2001:db8::/32", "2001:db8:1::/48", "2001:db8:2::/48", "::ffff:0:0/96", "::ffff:10.0.0.0/104"] {
        let (a, p) = net.split_once('/').unwrap();
        let a: std::net::Ipv6Addr = a.parse().unwrap();
        keys_around(&mut keys, &mut rng, true, u128::from(a), p.parse().unwrap());
    }
    for _ in 0..100 {
        keys.push(v4(rand_v4(&mut rng)));
        keys.push(v6(rand_v6(&mut rng)));
    }
    assert!(keys.len() > 300);
    differential(BLOCKS, &keys);
    // An unclosed block whose condition fails ends the search.
    let keys: Vec<String> = ["1.1.1.1", "2.2.2.2", "2.3.3.3", "3.3.3.3", "3.4.4.4", "4.4.4.4", "::1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    differential(
        "1.0.0.0/8 one\nif 2.0.0.0/8\n2.2.0.0/16 two\nendif\nif 3.0.0.0/8\n3.3.0.0/16 three\n0.0.0.0/0 any\n",
        &keys,
    );
}

#[test]
fn cidr_inline_matches_postmap() {
    let keys: Vec<String> =
        ["1.1.1.1", "1.1.1.2", "1.1.2.1", "2.2.2.2", "2001:db8::1", "abc"].iter().map(|s| s.to_string()).collect();
    let dir = TempDir::new("cidr-diff");
    differential_name(
        &dir,
        "{{1.1.1.1 a b}, { 1.1.1.0/24  c  },{if 2.0.0.0/8},{2.2.2.2 two},{endif},{2001:db8::/32 v6}}",
        &keys,
    );
}
