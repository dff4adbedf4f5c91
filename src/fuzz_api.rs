//! Entry points for the coverage-guided fuzz targets in `fuzz/` (cargo
//! feature `fuzzing`; never in a shipped build). Each takes the fuzzer's
//! bytes, feeds them to one parser and checks what must hold for any input;
//! a panic is a finding. Nothing here reads or writes files named by the
//! input, opens tables or contacts servers.

use crate::config::{allowlist, expand as macros, maincf, Params};
use crate::dict::db_common::cf::Cf;
use crate::dict::db_common::domain::{DomainFilter, Sources};
use crate::dict::db_common::template::{Context as Templates, Role};
use crate::dict::{Dict, OpenError};
use crate::protocol::attr::{find_nul, Context, Scanner, Writer};
use crate::protocol::request::{Dialect, Op, Outcome, Parse, Request};
use crate::protocol::{parse, parse_more};
use std::cell::Cell;
use std::collections::HashMap;

/// The bytes before the first NUL and those after it.
fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(n) => (&data[..n], &data[n + 1..]),
        None => (data, &[]),
    }
}

/// A request's attributes in the order and names a client sends them.
fn encode(req: &Request<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = Writer::new(&mut out);
    w.str("request", req.op.as_str().as_bytes()).str("table", req.table);
    if req.dialect == Dialect::V311 {
        w.int("instance_flags", req.instance_flags);
    }
    if req.dialect == Dialect::V37 || req.op != Op::Open {
        w.int("flags", req.flags);
    }
    match req.op {
        Op::Open => {}
        Op::Lookup | Op::Delete => {
            w.str("key", req.key);
        }
        Op::Update => {
            w.str("key", req.key).str("value", req.value);
        }
        Op::Sequence => {
            w.int("function", req.function);
        }
    }
    w.end();
    out
}

/// The request parser: the bytes fed in pieces answer as a parse from the
/// start, a decided parse is decided alike on its own bytes, and a request
/// re-encoded parses back to itself.
pub fn request(data: &[u8]) {
    // Pieces of `step` bytes; about 256 parses whatever the input's length.
    let step = 1 + data.len() / 256;
    let mut last = None;
    let mut have = 0;
    loop {
        let n = (have + step).min(data.len());
        let got = parse_more(&data[..n], have, last);
        assert_eq!(got, parse(&data[..n]), "fed {n} of {} bytes", data.len());
        have = n;
        match got {
            Parse::NeedMore(inc) if n < data.len() => last = Some(inc),
            _ => break,
        }
    }
    let Parse::Done { consumed, outcome } = parse(data) else { return };
    assert!(consumed <= data.len());
    assert_eq!(parse(&data[..consumed]), Parse::Done { consumed, outcome });
    if let Outcome::Request { req, warning } = outcome {
        let again = encode(&req);
        match parse(&again) {
            Parse::Done { outcome: Outcome::Request { req: back, warning: w }, .. } => {
                assert_eq!(back, req);
                assert!(warning.is_some() || w.is_none(), "{w:?} re-encoded");
            }
            other => panic!("{req:?} re-encoded as {again:?} parses as {other:?}"),
        }
    }
}

/// The attribute codec: the NUL search agrees with a plain one, and the
/// attributes read re-encode to the bytes they were read from.
pub fn attr(data: &[u8]) {
    for start in 0..data.len().min(16) {
        assert_eq!(find_nul(&data[start..]), data[start..].iter().position(|&b| b == 0));
    }
    let mut s = Scanner::new(data);
    let mut pairs = Vec::new();
    let mut whole = 0;
    let mut ended = false;
    while let Ok(name) = s.string(Context::Name) {
        if name.is_empty() {
            ended = true;
            whole = s.consumed();
            break;
        }
        let Ok(value) = s.string(Context::Value) else { break };
        pairs.push((name, value));
        whole = s.consumed();
    }
    let names: Option<Vec<&str>> = pairs.iter().map(|(n, _)| std::str::from_utf8(n).ok()).collect();
    if let Some(names) = names {
        let mut out = Vec::new();
        let mut w = Writer::new(&mut out);
        for (name, (_, value)) in names.iter().zip(&pairs) {
            w.str(name, value);
        }
        if ended {
            w.end();
        }
        assert_eq!(out, &data[..whole]);
    }
    // Numbers: what the writer prints, the protocol's number reader reads back.
    if let Some(four) = data.get(..4) {
        let n = u32::from_le_bytes([four[0], four[1], four[2], four[3]]);
        let mut out = Vec::new();
        Writer::new(&mut out).int("n", n);
        let digits = &out[2..out.len() - 1];
        assert_eq!(crate::strtol::scan_uint(digits), Some(n));
    }
}

/// More `$` than this in a main.cf and the input is skipped: `a = $b$b`,
/// `b = $c$c`, ... doubles the text at each level, as in Postfix, which
/// is no finding (main.cf is the administrator's).
const MAX_DOLLARS: usize = 16;

/// main.cf: parsed, then evaluated as proxymap evaluates it (registration,
/// type and range checks), and the values read.
pub fn maincf(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if text.matches('$').count() > MAX_DOLLARS {
        return;
    }
    if let Ok(entries) = maincf::parse(&text, "main.cf") {
        for e in &entries {
            assert!(!e.name.is_empty() && e.line >= 1);
            let _ = maincf::parse_override(&format!("{}={}", e.name, e.value));
        }
    }
    let Ok(params) = Params::from_text(&text, "main.cf", &[]) else { return };
    let _ = params.connection_threads();
    allowlist::proxy_allowlist(&params, false);
    allowlist::proxy_allowlist(&params, true);
    for name in ["myhostname", "mydomain", "mynetworks", "ipc_timeout", "max_idle", "mail_version"] {
        let _ = params.try_get(name);
        let _ = params.get_time(name);
    }
}

/// How many names one expansion may look up before the rest read as
/// undefined (the doubling above, bounded).
const MAX_LOOKUPS: usize = 4096;

/// `$name` expansion: `definitions \0 text`, the definitions in main.cf
/// syntax.
pub fn expand(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (defs, template) = text.split_once('\0').unwrap_or(("", &text));
    let mut names = HashMap::new();
    for e in maincf::parse(defs, "fuzz").unwrap_or_default() {
        names.insert(e.name, e.value);
    }
    let lookups = Cell::new(0usize);
    let lookup = |name: &str| {
        lookups.set(lookups.get() + 1);
        (lookups.get() <= MAX_LOOKUPS).then(|| names.get(name).cloned()).flatten()
    };
    let _ = macros::expand(template, &lookup);
}

/// `regexp:` rules: `rules \0 flags-byte key \0 key ...`; the table with
/// and without its rule set answers alike.
pub fn regexp_rules(data: &[u8]) {
    crate::dict::pattern::fuzz::regexp_rules(data);
}

/// `pcre:` rules, as [`regexp_rules`].
pub fn pcre_rules(data: &[u8]) {
    crate::dict::pattern::fuzz::pcre_rules(data);
}

/// The set translator: `flags-byte pattern \0 subject` (see
/// `dict/pattern/fuzz.rs`).
pub fn translate(data: &[u8]) {
    crate::dict::pattern::fuzz::translate(data);
}

/// The keys after the first NUL (NUL-separated, at most 8) and an open
/// flags word from the byte after it.
fn keys_and_flags(rest: &[u8]) -> (Vec<&[u8]>, u32) {
    use crate::protocol::flags::{DUP_IGNORE, DUP_REPLACE, DUP_WARN, FOLD_FIX, UTF8_ACTIVE};
    let sel = rest.first().copied().unwrap_or(0);
    let flags = [DUP_WARN, DUP_IGNORE, DUP_REPLACE, FOLD_FIX, UTF8_ACTIVE]
        .iter()
        .enumerate()
        .filter(|(i, _)| sel & (1 << i) != 0)
        .fold(0, |f, (_, bit)| f | bit);
    let mut keys: Vec<&[u8]> = rest.get(1..).unwrap_or_default().split(|&b| b == 0).take(8).collect();
    keys.extend([&b"1.2.3.4"[..], b"10.0.0.1", b"::1", b"2001:db8::1", b"::ffff:1.2.3.4", b"user@example.com"]);
    (keys, flags)
}

/// `cidr:` rules: `rules \0 flags-byte key \0 key ...`; each key's answer
/// checked against a top-down scan of the rules.
pub fn cidr_rules(data: &[u8]) {
    let (text, rest) = split_nul(data);
    let (keys, flags) = keys_and_flags(rest);
    crate::dict::pattern::cidr::fuzz_table(text, flags, &keys);
}

/// A `texthash:` file: `text \0 flags-byte key \0 key ...`.
pub fn texthash(data: &[u8]) {
    let (text, rest) = split_nul(data);
    let (keys, flags) = keys_and_flags(rest);
    crate::dict::file::texthash::fuzz_load(text, flags, &keys);
}

thread_local! {
    /// The scratch file the hash page reader reads (it reads a file, by
    /// offset); unlinked at once, rewritten for each input.
    static PAGES: std::fs::File = {
        let path = std::env::temp_dir().join(format!("proxymap-fuzz-pages.{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("scratch file");
        let _ = std::fs::remove_file(&path);
        file
    };
}

/// The Berkeley DB hash page reader: `key-length key file-bytes`; the
/// file opened, `key` and a few others looked up.
pub fn hash_pages(data: &[u8]) {
    use crate::dict::file::hash_pages::HashPages;
    use std::os::unix::fs::FileExt;
    let Some((&n, rest)) = data.split_first() else { return };
    let (key, file) = rest.split_at(usize::from(n).min(rest.len()));
    PAGES.with(|scratch| {
        scratch.set_len(0).expect("truncate scratch file");
        scratch.write_all_at(file, 0).expect("write scratch file");
        let Ok(copy) = scratch.try_clone() else { return };
        let Ok(pages) = HashPages::from_file(copy) else { return };
        let mut out = Vec::new();
        for k in [key, b"user@example.com\0", b"k\0", b""] {
            let _ = pages.get(k, &mut out, None);
            let _ = pages.get(k, &mut out, Some(1));
        }
    });
}

/// A domain list's sources for fuzzing: no file is read, and every table
/// is a surrogate that fails its lookups.
struct NoSources;

impl Sources for NoSources {
    fn read_file(&mut self, _path: &str) -> Result<Vec<u8>, String> {
        Err("No such file or directory".to_string())
    }

    fn open_table(&mut self, name: &str) -> Box<dyn Dict> {
        Box::new(crate::dict::surrogate::Surrogate::new(name, "fuzzing", 0))
    }
}

/// A database table's `.cf` file: read as pgsql/mysql/sqlite/memcache read
/// theirs (strings, numbers, booleans, the query and result templates
/// expanded with a few keys, the domain list), then as ldap reads its own.
pub fn db_cf(data: &[u8]) {
    let _ = db_cf_sql(data);
    let _ = crate::dict::ldap::fuzz_cf(data, &mut NoSources);
}

fn db_cf_sql(data: &[u8]) -> Result<(), OpenError> {
    let cf = Cf::from_file_text("/etc/postfix/fuzz.cf", data)?;
    let _ = cf.get_str("dbpath", Some(""), 1, 0);
    let _ = cf.get_str("hosts", Some(""), 0, 0);
    let _ = cf.get_int("expansion_limit", 0, 0, 0);
    let _ = cf.get_int("timeout", 10, 1, 0);
    let _ = cf.get_bool("require_result_tls", false);
    let query = crate::dict::sql::query_or_legacy(&cf)?;
    let result_format = cf.get_str("result_format", Some("%s"), 1, 0)?.unwrap_or_default();
    let mut ctx = Templates::new("fuzz", cf.name());
    let query = ctx.parse(&query, Role::Query)?;
    let result = ctx.parse(&result_format, Role::Result)?;
    let quote = |raw: &[u8], out: &mut Vec<u8>| out.extend_from_slice(raw);
    let mut out = Vec::new();
    for key in [&b"user@example.com"[..], b"a.b@c.d.e.f.g.h.i.j", b"@", b"x", b""] {
        out.clear();
        if ctx.expand_query(&query, key, &mut out, &quote) {
            ctx.expand_result(&result, Some(b"value@example.org"), key, &mut out);
            ctx.expand_result(&result, Some(key), key, &mut out);
        }
    }
    let _ = cf.unused();
    if let Some(list) = cf.get_str("domain", None, 0, 0)? {
        let filter = DomainFilter::parse(&list, cf.name(), &mut NoSources)?;
        for key in [&b"user@example.com"[..], b"x", b"@", b"a@b@c"] {
            let _ = filter.allows(key);
        }
    }
    Ok(())
}

/// Netstrings (socketmap framing): `limit-byte bytes`; a decoded
/// netstring's every prefix needs more bytes, and its payload re-encodes
/// to a netstring that decodes to it.
pub fn netstring(data: &[u8]) {
    use crate::dict::net::netstring::{decode, encode};
    let Some((&sel, buf)) = data.split_first() else { return };
    let limit = if sel == 255 { usize::MAX } else { usize::from(sel) * 16 };
    let Ok(Some(d)) = decode(buf, limit) else { return };
    assert!(d.payload.end < d.consumed && d.consumed <= buf.len());
    for n in 0..d.consumed {
        assert_eq!(decode(&buf[..n], limit), Ok(None), "prefix of {n} bytes");
    }
    let payload = &buf[d.payload.clone()];
    let mut again = Vec::new();
    encode(payload, &mut again);
    let back = decode(&again, limit).expect("re-encoded").expect("whole");
    assert_eq!(&again[back.payload], payload);
    assert_eq!(back.consumed, again.len());
}

/// A memcache server's reply to `get`: `limit-byte reply`.
pub fn memcache_reply(data: &[u8]) {
    let Some((&sel, reply)) = data.split_first() else { return };
    crate::dict::net::fuzz_memcache_reply(reply, 1 + usize::from(sel) * 8);
}
