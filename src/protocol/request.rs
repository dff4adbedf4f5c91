//! Requests as proxymap reads them: `request` first, then the attributes of that
//! request in a fixed order, read the way Postfix's STRICT scanner reads them, so
//! that every malformed input gets the reply (or the silence) Postfix gives it.
//!
//! Both request shapes are accepted: 3.7's (`table, flags, ...`) and 3.11's, where
//! `instance_flags` follows `table`. The shape is chosen per request.

use super::attr::{Context, Incomplete, Scanner};
use crate::strtol::scan_uint;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Open,
    Lookup,
    Update,
    Delete,
    Sequence,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Open => "open",
            Op::Lookup => "lookup",
            Op::Update => "update",
            Op::Delete => "delete",
            Op::Sequence => "sequence",
        }
    }

    fn from_bytes(b: &[u8]) -> Option<Op> {
        Some(match b {
            b"open" => Op::Open,
            b"lookup" => Op::Lookup,
            b"update" => Op::Update,
            b"delete" => Op::Delete,
            b"sequence" => Op::Sequence,
            _ => return None,
        })
    }

    /// The attributes after `request`, in 3.7 order.
    fn attrs(self) -> &'static [Attr] {
        use Attr::*;
        match self {
            Op::Open => &[Table, Flags],
            Op::Lookup => &[Table, Flags, Key],
            Op::Update => &[Table, Flags, Key, Value],
            Op::Delete => &[Table, Flags, Key],
            Op::Sequence => &[Table, Flags, Function],
        }
    }
}

/// Which Postfix request/reply shape a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Postfix 3.6 to 3.10.
    V37,
    /// Postfix 3.11 and later: `instance_flags` in requests, `flags` in every reply.
    V311,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attr {
    Table,
    Flags,
    Key,
    Value,
    Function,
}

impl Attr {
    fn name(self) -> &'static str {
        match self {
            Attr::Table => "table",
            Attr::Flags => "flags",
            Attr::Key => "key",
            Attr::Value => "value",
            Attr::Function => "function",
        }
    }
}

const INSTANCE_FLAGS: &[u8] = b"instance_flags";

pub const SEQ_FIRST: u32 = 0;
pub const SEQ_NEXT: u32 = 1;

/// A well-formed request. Byte strings borrow from the receive buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub op: Op,
    pub dialect: Dialect,
    pub table: &'a [u8],
    /// 3.7: the instance bits of `flags`; 3.11: the `instance_flags` attribute.
    pub instance_flags: u32,
    /// Request flags (for a 3.7 `open`, the open flags the client sent).
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
    pub function: u32,
}

/// A warning Postfix logs for this input. Rendered with the service name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning<'a> {
    Missing(&'static str),
    Unexpected { got: &'a [u8], expecting: &'static str },
    Malformed(&'a [u8]),
    Unrecognized(&'a [u8]),
}

impl Warning<'_> {
    /// `stream` is Postfix's name of the client stream, e.g. `proxymap socket`.
    pub fn display<'s>(&'s self, stream: &'s str) -> impl fmt::Display + 's {
        WarningText { w: self, service: stream }
    }
}

struct WarningText<'s, 'a> {
    w: &'s Warning<'a>,
    service: &'s str,
}

impl fmt::Display for WarningText<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let svc = self.service;
        match *self.w {
            Warning::Missing(name) => write!(f, "missing attribute {name} in input from {svc}"),
            Warning::Unexpected { got, expecting } => {
                write!(f, "unexpected attribute {} from {svc} (expecting: {expecting})", String::from_utf8_lossy(got))
            }
            Warning::Malformed(text) => write!(
                f,
                "malformed numerical data from {svc} while reading input attribute value: {}",
                String::from_utf8_lossy(text)
            ),
            Warning::Unrecognized(req) => {
                write!(f, "unrecognized request: \"{}\", ignored", String::from_utf8_lossy(req))
            }
        }
    }
}

/// What to do with the bytes received so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parse<'a> {
    /// No decision yet: wait for more bytes (not an error).
    NeedMore(Incomplete),
    /// A decision was reached after `consumed` bytes.
    Done { consumed: usize, outcome: Outcome<'a> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome<'a> {
    /// Serve it; a warning may still be due (an extra attribute at the end).
    Request { req: Request<'a>, warning: Option<Warning<'a>> },
    /// Reply BAD in the shape of `op` (status only when the request name was unknown).
    Bad { op: Option<Op>, dialect: Dialect, warning: Option<Warning<'a>> },
    /// Postfix reads no request here and sends no reply.
    Ignored(Warning<'a>),
}

/// Parse one request from the start of `buf`.
pub fn parse(buf: &[u8]) -> Parse<'_> {
    #[cfg(test)]
    FULL_PARSES.with(|n| n.set(n.get() + 1));
    let mut s = Scanner::new(buf);
    match parse_inner(&mut s) {
        Ok(outcome) => Parse::Done { consumed: s.consumed(), outcome },
        Err(incomplete) => Parse::NeedMore(incomplete),
    }
}

/// [`parse`] for a buffer that grew, from `grown_from` on, since a parse
/// of it needed more bytes (`last`). Bytes without a NUL complete no
/// string, so the answer is known without scanning the buffer again: a
/// client sending a request a byte at a time costs linear time, not
/// quadratic (a decision needs a bounded number of strings, so the full
/// parses are bounded too).
pub fn parse_more(buf: &[u8], grown_from: usize, last: Option<Incomplete>) -> Parse<'_> {
    match last {
        Some(inc) if grown_from <= buf.len() && !buf[grown_from..].contains(&0) => {
            Parse::NeedMore(Incomplete { partial: inc.partial || grown_from < buf.len(), ..inc })
        }
        _ => parse(buf),
    }
}

#[cfg(test)]
thread_local! {
    /// Calls of [`parse`] on this thread (the tests count them).
    pub(crate) static FULL_PARSES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn parse_inner<'a>(s: &mut Scanner<'a>) -> Result<Outcome<'a>, Incomplete> {
    if !s.name_is(b"request") {
        let name = s.string(Context::Name)?;
        if name.is_empty() {
            return Ok(Outcome::Ignored(Warning::Missing("request")));
        }
        if name != b"request" {
            return Ok(Outcome::Ignored(Warning::Unexpected { got: name, expecting: "request" }));
        }
    }
    let request = s.string(Context::Value)?;
    let Some(op) = Op::from_bytes(request) else {
        return Ok(Outcome::Bad { op: None, dialect: Dialect::V37, warning: Some(Warning::Unrecognized(request)) });
    };

    let mut req = Request {
        op,
        dialect: Dialect::V37,
        table: b"",
        instance_flags: 0,
        flags: 0,
        key: b"",
        value: b"",
        function: 0,
    };
    let bad = |dialect, warning| Ok(Outcome::Bad { op: Some(op), dialect, warning });
    let mut attrs = op.attrs().iter().copied().peekable();
    while let Some(&want) = attrs.peek() {
        let is_instance_flags = !s.name_is(want.name().as_bytes()) && {
            let name = s.string(Context::Name)?;
            if name.is_empty() {
                return bad(req.dialect, Some(Warning::Missing(want.name())));
            }
            let is_instance_flags = want == Attr::Flags && req.dialect == Dialect::V37 && name == INSTANCE_FLAGS;
            if name != want.name().as_bytes() && !is_instance_flags {
                return bad(req.dialect, Some(Warning::Unexpected { got: name, expecting: want.name() }));
            }
            is_instance_flags
        };
        let value = s.string(Context::Value)?;
        if is_instance_flags {
            req.dialect = Dialect::V311;
            match scan_uint(value) {
                Some(n) => req.instance_flags = n,
                None => return bad(req.dialect, Some(Warning::Malformed(value))),
            }
            if op == Op::Open {
                // A 3.11 open carries no request flags.
                req.flags = req.instance_flags;
                attrs.next();
            }
            continue;
        }
        match want {
            Attr::Table => req.table = value,
            Attr::Key => req.key = value,
            Attr::Value => req.value = value,
            Attr::Flags | Attr::Function => {
                let Some(n) = scan_uint(value) else {
                    return bad(req.dialect, Some(Warning::Malformed(value)));
                };
                if want == Attr::Flags {
                    req.flags = n;
                } else {
                    req.function = n;
                }
            }
        }
        attrs.next();
    }
    if req.dialect == Dialect::V37 {
        req.instance_flags = req.flags & super::flags::INST_MASK;
    }
    let end = s.string(Context::Name)?;
    let warning = (!end.is_empty()).then_some(Warning::Unexpected { got: end, expecting: "(list terminator)" });
    if op == Op::Sequence && req.function != SEQ_FIRST && req.function != SEQ_NEXT {
        return bad(req.dialect, warning);
    }
    Ok(Outcome::Request { req, warning })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(pairs: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, v) in pairs {
            out.extend_from_slice(n.as_bytes());
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out.push(0);
        out
    }

    /// Feed `bytes` in pieces of `step`, as reads would deliver them.
    fn fed(bytes: &[u8], step: usize, mut each: impl FnMut(&[u8], Parse<'_>)) {
        let mut buf = Vec::new();
        let mut last = None;
        for piece in bytes.chunks(step) {
            let grown_from = buf.len();
            buf.extend_from_slice(piece);
            let got = parse_more(&buf, grown_from, last);
            last = match got {
                Parse::NeedMore(inc) => Some(inc),
                Parse::Done { .. } => None,
            };
            each(&buf, got);
            if last.is_none() {
                return;
            }
        }
    }

    #[test]
    fn resuming_answers_as_parsing_from_the_start() {
        let requests = [
            list(&[("request", b"lookup"), ("table", b"hash:/t"), ("flags", b"16448"), ("key", b"k@example.com")]),
            list(&[("request", b"open"), ("table", b"lmdb:/t"), ("instance_flags", b"64")]),
            list(&[("request", b"update"), ("table", b"t"), ("flags", b"1"), ("key", b"k"), ("value", b"v")]),
            list(&[("request", b"lookup"), ("table", b"t"), ("flags", b"x1"), ("key", b"k")]),
            list(&[("request", b"frobnicate")]),
            list(&[("bogus", b"x")]),
            list(&[("request", b"lookup"), ("key", b"k")]),
            b"\0".to_vec(),
        ];
        for req in &requests {
            for step in [1, 2, 3, 7] {
                fed(req, step, |buf, got| assert_eq!(got, parse(buf), "{req:?} in pieces of {step}"));
            }
        }
    }

    #[test]
    fn a_request_sent_a_byte_at_a_time_is_parsed_a_bounded_number_of_times() {
        let key = vec![b'k'; 64 * 1024];
        let req = list(&[("request", b"lookup"), ("table", b"hash:/t"), ("flags", b"16448"), ("key", &key)]);
        FULL_PARSES.with(|n| n.set(0));
        let mut done = false;
        fed(&req, 1, |_, got| done = matches!(got, Parse::Done { .. }));
        assert!(done);
        // one parse per completed string (9 here), not one per byte
        let parses = FULL_PARSES.with(std::cell::Cell::get);
        assert!(parses <= 10, "{parses} full parses for {} bytes", req.len());
    }
}
