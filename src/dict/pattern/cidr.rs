//! `cidr:/path` and `cidr:{ {rule}, ... }`: address-pattern tables (Postfix
//! dict_cidr.c, cidr_match.c).
//!
//! Rules, in file order: `pattern result`, `!pattern result`,
//! `if pattern` / `if !pattern` ... `endif` (nestable). A pattern is an IPv4 or
//! IPv6 `address` or `network/prefixlen` (host bits zero), optionally in `[]`.
//! Addresses are parsed as glibc `inet_pton()` does (no leading zeros in IPv4
//! octets; IPv6 with an optional dotted-quad tail); the family is IPv6 exactly
//! when the text contains a `:`, so `::ffff:1.2.3.4` is an IPv6 key that only
//! IPv6 rules can match. A key that does not parse matches nothing. The first
//! matching rule wins. Bad rules are logged with Postfix's texts and skipped.
//!
//! Lookups do not scan the rules: the plain `net result` rules of each block
//! (the file, or the inside of an `if`) are indexed per family by prefix
//! length (a hash map from masked network to the lowest rule number), so a
//! lookup probes one map per distinct prefix length and takes the lowest rule
//! number. Negative rules and `if` blocks ("complex" items) are checked in
//! order, but only those that come before the best indexed match.
//!
//! Read-only; PATTERN; no sequence (Postfix 3.7 exits there). Unlike Postfix
//! (which keeps no file status for cidr tables), `changed()` reports a file
//! whose mtime changed, that was removed, or whose path now names another
//! file, so the read-only service reopens it.

use crate::dict::postmap_text::{self, is_space, lossy, trim_end, BraceTokens, LogicalLines};
use crate::dict::{Dict, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{PATTERN, SRC_RHS_IS_FILE};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::Read;
use std::os::unix::fs::MetadataExt;

mod addr;
use addr::{format_addr, parse_addr, parse_key};

/// A parsed network: family, address bits (IPv4 in the low 32 bits) and
/// prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Net {
    v6: bool,
    addr: u128,
    prefix: u8,
}

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

impl Net {
    /// Postfix's `cidr_match_entry()` without the negation: same family and
    /// inside the network.
    fn contains(&self, v6: bool, addr: u128) -> bool {
        self.v6 == v6 && addr & mask(self.prefix, width(v6)) == self.addr
    }
}

/// A cheap hasher for the u128 network keys (multiply-xorshift), instead of
/// SipHash: the keys come from the administrator's file, not from clients.
#[derive(Default)]
struct NetHasher(u64);

impl Hasher for NetHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64).rotate_left(32);
        self.0 = (self.0 ^ x).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type NetMap = HashMap<u128, u32, BuildHasherDefault<NetHasher>>;

/// Plain positive rules of one family in one block: per prefix length, the
/// lowest rule number of each network.
#[derive(Default)]
struct PrefixIndex {
    /// (prefix length, networks of that length)
    by_len: Vec<(u8, NetMap)>,
}

impl PrefixIndex {
    fn insert(&mut self, net: Net, pos: u32) {
        let i = match self.by_len.iter().position(|(len, _)| *len == net.prefix) {
            Some(i) => i,
            None => {
                self.by_len.push((net.prefix, NetMap::default()));
                self.by_len.len() - 1
            }
        };
        // Later duplicates can never win: keep the first.
        self.by_len[i].1.entry(net.addr).or_insert(pos);
    }

    fn lookup(&self, v6: bool, addr: u128) -> Option<u32> {
        let w = width(v6);
        self.by_len.iter().filter_map(|(len, map)| map.get(&(addr & mask(*len, w))).copied()).min()
    }
}

/// A rule that the index cannot answer for.
enum Complex {
    /// `!pattern result`: matches same-family addresses outside the network.
    Negative { pos: u32, net: Net },
    /// `if [!]pattern` ... `endif` (an unclosed block runs to the end).
    If { pos: u32, net: Net, positive: bool, body: Block },
}

impl Complex {
    fn pos(&self) -> u32 {
        match self {
            Complex::Negative { pos, .. } | Complex::If { pos, .. } => *pos,
        }
    }
}

/// The rules of the file, or of one `if` block.
#[derive(Default)]
struct Block {
    v4: PrefixIndex,
    v6: PrefixIndex,
    /// In rule order.
    complex: Vec<Complex>,
}

impl Block {
    /// Number of the first rule that matches, with Postfix's semantics.
    fn lookup(&self, v6: bool, addr: u128) -> Option<u32> {
        let best = if v6 { self.v6.lookup(v6, addr) } else { self.v4.lookup(v6, addr) };
        for item in &self.complex {
            if best.is_some_and(|b| item.pos() > b) {
                break;
            }
            match item {
                Complex::Negative { pos, net } => {
                    if net.v6 == v6 && !net.contains(v6, addr) {
                        return Some(*pos);
                    }
                }
                Complex::If { net, positive, body, .. } => {
                    // A different family never enters the block, even with `!`.
                    if net.v6 == v6 && net.contains(v6, addr) == *positive {
                        if let Some(found) = body.lookup(v6, addr) {
                            return Some(found);
                        }
                    }
                }
            }
        }
        best
    }
}

pub(crate) struct Cidr {
    flags: u32,
    root: Block,
    /// Result text by rule number (empty for `if`/`endif`).
    values: Vec<Vec<u8>>,
    /// The open file, for change detection (None for inline tables).
    source: Option<Source>,
}

struct Source {
    path: String,
    file: std::fs::File,
    mtime: (i64, i64),
    dev: u64,
    ino: u64,
}

impl Dict for Cidr {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        Waits::Never
    }

    fn lookup(&self, key: &[u8], _flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        let Some((v6, addr)) = parse_key(postmap_text::until_nul(key)) else {
            return Ok(false);
        };
        match self.root.lookup(v6, addr) {
            Some(pos) => {
                out.extend_from_slice(&self.values[pos as usize]);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn changed(&self) -> bool {
        let Some(src) = &self.source else { return false };
        let Ok(now) = src.file.metadata() else { return true };
        if now.nlink() == 0 || (now.mtime(), now.mtime_nsec()) != src.mtime {
            return true;
        }
        match std::fs::metadata(&src.path) {
            Ok(m) => m.dev() != src.dev || m.ino() != src.ino,
            Err(_) => true,
        }
    }
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    req.require_read_only()?;
    let name = req.name;
    let (text, source) = if name.starts_with('{') {
        (inline_to_multiline(name.as_bytes()).map_err(|e| OpenError::new(format!("cidr map: {e}")))?, None)
    } else {
        let mut file = std::fs::File::open(name).map_err(|e| OpenError::io(format_args!("open {name}"), &e))?;
        let meta = file
            .metadata()
            .map_err(|e| OpenError::new(format!("fstat {name}: {}", postmap_text::io_error_text(&e))))?;
        let mut data = Vec::new();
        // Postfix exits (fatal) with this text; we fail the open.
        file.read_to_end(&mut data)
            .map_err(|e| OpenError::new(format!("cidr map {name}: read error: {}", postmap_text::io_error_text(&e))))?;
        let source = Source {
            path: name.to_string(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            dev: meta.dev(),
            ino: meta.ino(),
            file,
        };
        (data, Some(source))
    };
    let (root, values, warnings) = parse_table(&text, name, req.flags);
    for warning in warnings {
        log::warn!("{warning}");
    }
    Ok(Box::new(Cidr { flags: req.flags | PATTERN, root, values, source }))
}

/// The fuzz target's way in: `text` as a table (the inline `{ ... }` form
/// when it starts with `{`), each key looked up and the answer checked
/// against a top-down scan of the same rules, as Postfix evaluates them.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_table(text: &[u8], flags: u32, keys: &[&[u8]]) {
    let inline;
    let text = if text.first() == Some(&b'{') {
        match inline_to_multiline(text) {
            Ok(t) => {
                inline = t;
                &inline[..]
            }
            Err(_) => return,
        }
    } else {
        text
    };
    let flags = flags & !SRC_RHS_IS_FILE; // no file reads from fuzz input
    let (root, values, _) = parse_table(text, "fuzz", flags);
    // The same rules again, in order, for the reference scan.
    let mut rules = Vec::new();
    let mut depth = 0;
    for line in LogicalLines::new(text, "fuzz") {
        if let Ok(rule) = parse_rule(postmap_text::until_nul(&line.text), depth, flags) {
            match rule {
                Rule::If { .. } => depth += 1,
                Rule::Endif => depth -= 1,
                Rule::Match { .. } => {}
            }
            rules.push(rule);
        }
    }
    assert_eq!(rules.len(), values.len());
    let table = Cidr { flags, root, values, source: None };
    let mut out = Vec::new();
    for key in keys {
        let found = table.lookup(key, 0, &mut out).unwrap_or(false);
        let want = parse_key(postmap_text::until_nul(key)).and_then(|(v6, addr)| first_match(&rules, v6, addr));
        assert_eq!(found, want.is_some(), "key {key:?}");
        if let Some(pos) = want {
            assert_eq!(out, table.values[pos], "key {key:?}");
        }
    }
}

/// Top-down evaluation: the first matching rule; an `if` whose condition
/// fails skips to its `endif` (or to the end).
#[cfg(feature = "fuzzing")]
fn first_match(rules: &[Rule], v6: bool, addr: u128) -> Option<usize> {
    let mut i = 0;
    while i < rules.len() {
        match &rules[i] {
            Rule::Match { net, positive, .. } if net.v6 == v6 && net.contains(v6, addr) == *positive => return Some(i),
            Rule::If { net, positive } if !(net.v6 == v6 && net.contains(v6, addr) == *positive) => {
                let mut depth = 0;
                while i < rules.len() {
                    match rules[i] {
                        Rule::If { .. } => depth += 1,
                        Rule::Endif => depth -= 1,
                        Rule::Match { .. } => {}
                    }
                    if depth == 0 {
                        break;
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Postfix `dict_inline_to_multiline()`: `{ {rule}, {rule} }` → one rule a line.
fn inline_to_multiline(name: &[u8]) -> Result<Vec<u8>, String> {
    let inner = postmap_text::extpar(name)?;
    let mut text = Vec::new();
    for token in BraceTokens::new(inner) {
        text.extend_from_slice(postmap_text::extpar(token)?);
        text.push(b'\n');
    }
    Ok(text)
}

/// One parsed rule.
enum Rule {
    Match { net: Net, positive: bool, value: Vec<u8> },
    If { net: Net, positive: bool },
    Endif,
}

/// Parse all rules into the block tree; bad rules are skipped with a warning
/// (returned, in Postfix's words).
fn parse_table(text: &[u8], name: &str, flags: u32) -> (Block, Vec<Vec<u8>>, Vec<String>) {
    let mut warnings = Vec::new();
    let mut values: Vec<Vec<u8>> = Vec::new();
    // Open blocks: (pos, net, positive, line, body) of each enclosing `if`.
    let mut stack: Vec<(u32, Net, bool, usize, Block)> = Vec::new();
    let mut root = Block::default();
    for line in LogicalLines::new(text, name) {
        let rule = match parse_rule(postmap_text::until_nul(&line.text), stack.len(), flags) {
            Ok(rule) => rule,
            Err(why) => {
                warnings.push(format!("cidr map {name}, line {}: {why}: skipping this rule", line.line_no));
                continue;
            }
        };
        let pos = values.len() as u32;
        let block = stack.last_mut().map_or(&mut root, |open| &mut open.4);
        match rule {
            Rule::Match { net, positive, value } => {
                values.push(value);
                match (positive, net.v6) {
                    (true, false) => block.v4.insert(net, pos),
                    (true, true) => block.v6.insert(net, pos),
                    (false, _) => block.complex.push(Complex::Negative { pos, net }),
                }
            }
            Rule::If { net, positive } => {
                values.push(Vec::new());
                stack.push((pos, net, positive, line.line_no, Block::default()));
            }
            Rule::Endif => {
                values.push(Vec::new());
                close_block(&mut stack, &mut root);
            }
        }
    }
    for open in stack.iter().rev() {
        warnings.push(format!("cidr map {name}, line {}: IF has no matching ENDIF", open.3));
    }
    // An unclosed block runs to the end of the table: if its condition
    // fails, nothing after it can match, which is what skipping it means.
    while !stack.is_empty() {
        close_block(&mut stack, &mut root);
    }
    (root, values, warnings)
}

fn close_block(stack: &mut Vec<(u32, Net, bool, usize, Block)>, root: &mut Block) {
    if let Some((pos, net, positive, _, body)) = stack.pop() {
        let parent = stack.last_mut().map_or(root, |open| &mut open.4);
        parent.complex.push(Complex::If { pos, net, positive, body });
    }
}

fn is_alnum_at(p: &[u8], i: usize) -> bool {
    p.get(i).is_some_and(u8::is_ascii_alphanumeric)
}

/// Skip `!` and whitespace; each `!` flips the sense of the match.
fn negations(mut p: &[u8]) -> (&[u8], bool) {
    let mut positive = true;
    while let Some(&b) = p.first() {
        if b == b'!' {
            positive = !positive;
        } else if !is_space(b) {
            break;
        }
        p = &p[1..];
    }
    (p, positive)
}

/// Postfix `dict_cidr_parse_rule()`; errors are Postfix's texts.
fn parse_rule(p: &[u8], nesting: usize, flags: u32) -> Result<Rule, String> {
    let (rule, value): (Rule, &[u8]) = if p.len() >= 2 && p[..2].eq_ignore_ascii_case(b"IF") && !is_alnum_at(p, 2) {
        let (rest, positive) = negations(&p[2..]);
        if rest.is_empty() {
            return Err("no address pattern".into());
        }
        let net = parse_pattern(trim_end(rest))?;
        (Rule::If { net, positive }, b"")
    } else if p.len() >= 5 && p[..5].eq_ignore_ascii_case(b"ENDIF") && !is_alnum_at(p, 5) {
        if p[5..].iter().any(|&b| !is_space(b)) {
            return Err("garbage after ENDIF".into());
        }
        if nesting == 0 {
            return Err("ENDIF without IF".into());
        }
        (Rule::Endif, b"")
    } else {
        let (rest, positive) = negations(p);
        let end = rest.iter().position(|&b| is_space(b)).unwrap_or(rest.len());
        let pattern = &rest[..end];
        let value = trim_end(postmap_text::trim(&rest[end..]));
        if pattern.is_empty() {
            return Err("no address pattern".into());
        }
        let net = parse_pattern(pattern)?;
        if value.is_empty() {
            return Err("no lookup result".into());
        }
        (Rule::Match { net, positive, value: Vec::new() }, value)
    };
    // Postfix applies the values-are-files conversion to every rule, so with
    // it `if`/`endif` fail on their empty result (an empty file list).
    let value = if flags & SRC_RHS_IS_FILE != 0 { postmap_text::file_to_base64(value)? } else { value.to_vec() };
    Ok(match rule {
        Rule::Match { net, positive, .. } => Rule::Match { net, positive, value },
        other => other,
    })
}

/// Postfix `cidr_match_parse()`: `[addr]`, `[addr/len]`, `[addr]/len`,
/// `addr`, `addr/len`.
fn parse_pattern(pattern: &[u8]) -> Result<Net, String> {
    let (addr, mask_text): (&[u8], Option<&[u8]>) = if pattern.first() == Some(&b'[') {
        let inner = &pattern[1..];
        let Some(close) = inner.iter().position(|&b| b == b']') else {
            return Err(format!("missing ']' character after \"[{}\"", lossy(inner)));
        };
        let inside = &inner[..close];
        let after = &inner[close + 1..];
        if after.first() == Some(&b'/') {
            (inside, Some(&after[1..]))
        } else if !after.is_empty() {
            return Err(format!("garbage after \"[{}]\"", lossy(inside)));
        } else {
            split_slash(inside)
        }
    } else {
        split_slash(pattern)
    };
    let v6 = addr.contains(&b':');
    let bits = width(v6);
    match mask_text {
        None => match parse_addr(addr, v6) {
            Some(a) => Ok(Net { v6, addr: a, prefix: bits }),
            None => Err(format!("bad address pattern: \"{}\"", lossy(addr))),
        },
        Some(m) => {
            let shown = || format!("\"{}/{}\"", lossy(addr), lossy(m));
            if m.is_empty() || !m.iter().all(u8::is_ascii_digit) {
                return Err(format!("bad mask value in {}", shown()));
            }
            // atoi() into an unsigned char, as Postfix stores it.
            let prefix = atoi(m) as u8;
            if prefix > bits {
                return Err(format!("bad mask length in {}", shown()));
            }
            let Some(a) = parse_addr(addr, v6) else {
                return Err(format!("bad network value in {}", shown()));
            };
            let masked = a & mask(prefix, bits);
            if masked != a {
                return Err(format!(
                    "non-null host address bits in {}, perhaps you should use \"{}/{}\" instead",
                    shown(),
                    format_addr(v6, masked),
                    prefix
                ));
            }
            Ok(Net { v6, addr: a, prefix })
        }
    }
}

fn split_slash(s: &[u8]) -> (&[u8], Option<&[u8]>) {
    match s.iter().position(|&b| b == b'/') {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

/// glibc `atoi()` of a digit string: strtol (saturating at LONG_MAX) cast to int.
fn atoi(digits: &[u8]) -> i32 {
    let mut n: i64 = 0;
    for &d in digits {
        n = n.checked_mul(10).and_then(|n| n.checked_add(i64::from(d - b'0'))).unwrap_or(i64::MAX);
    }
    n as i32
}

#[cfg(test)]
mod tests;
