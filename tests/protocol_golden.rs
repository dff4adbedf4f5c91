//! Byte-exact tests of the wire protocol (spec sections 1.6, 2.3-2.5, 9):
//! every reply shape, and what the parser decides for well-formed, malformed
//! and incomplete input.

#[path = "../src/test_support.rs"]
mod test_support;

use proxymap::protocol::attr::{Context, Incomplete};
use proxymap::protocol::request::{parse, Dialect, Op, Outcome, Parse, Request, Warning};
use proxymap::protocol::{Reply, Status, ANNOUNCEMENT};
use test_support::Rng;

fn encode(r: Reply<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    r.encode(&mut out);
    out
}

fn reply(op: Option<Op>, dialect: Dialect, status: Status, flags: u32, key: &[u8], value: &[u8]) -> Vec<u8> {
    encode(Reply { op, dialect, status, flags, key, value })
}

const V37: Dialect = Dialect::V37;
const V311: Dialect = Dialect::V311;

#[test]
fn announcement_is_the_28_bytes_postfix_sends() {
    assert_eq!(ANNOUNCEMENT, b"protocol\0proxymap_protocol\0\0");
    assert_eq!(ANNOUNCEMENT.len(), 28);
}

#[test]
fn fixed_replies_of_spec_2_4() {
    assert_eq!(reply(None, V37, Status::Bad, 0, b"", b""), b"status\x003\x00\x00");
    assert_eq!(reply(Some(Op::Open), V37, Status::Ok, 28, b"", b""), b"status\x000\x00flags\x0028\x00\x00");
    assert_eq!(reply(Some(Op::Open), V37, Status::Deny, 0, b"", b""), b"status\x004\x00flags\x000\x00\x00");
    assert_eq!(reply(Some(Op::Open), V37, Status::Bad, 0, b"", b""), b"status\x003\x00flags\x000\x00\x00");
    assert_eq!(reply(Some(Op::Lookup), V37, Status::NoKey, 0, b"", b""), b"status\x001\x00value\x00\x00\x00");
    assert_eq!(reply(Some(Op::Lookup), V37, Status::Retry, 0, b"", b""), b"status\x002\x00value\x00\x00\x00");
    assert_eq!(reply(Some(Op::Update), V37, Status::Ok, 0, b"", b""), b"status\x000\x00\x00");
    assert_eq!(reply(Some(Op::Delete), V37, Status::Ok, 0, b"", b""), b"status\x000\x00\x00");
    assert_eq!(reply(Some(Op::Update), V37, Status::Deny, 0, b"", b""), b"status\x004\x00\x00");
    assert_eq!(
        reply(Some(Op::Sequence), V37, Status::NoKey, 0, b"", b""),
        b"status\x001\x00key\x00\x00value\x00\x00\x00"
    );
}

#[test]
fn worked_example_of_spec_1_6() {
    // 22-byte hit and 17-byte miss replies.
    let hit = reply(Some(Op::Lookup), V37, Status::Ok, 524353, b"", b"local");
    assert_eq!(hit, b"status\x000\x00value\x00local\x00\x00");
    assert_eq!(hit.len(), 22);
    assert_eq!(reply(Some(Op::Lookup), V37, Status::NoKey, 0, b"", b"").len(), 17);
    let open = reply(Some(Op::Open), V37, Status::Ok, 28, b"", b"");
    assert_eq!(open.len(), 19);

    let req = b"request\0open\0table\0hash:/etc/postfix/virtual\0flags\x000\0\0";
    assert_eq!(req.len(), 54);
    let Parse::Done { consumed, outcome: Outcome::Request { req: r, warning: None } } = parse(req) else {
        panic!("open not parsed: {:?}", parse(req));
    };
    assert_eq!(consumed, 54);
    assert_eq!((r.op, r.dialect, r.table, r.flags), (Op::Open, V37, &b"hash:/etc/postfix/virtual"[..], 0));

    let req = b"request\0lookup\0table\0hash:/etc/postfix/virtual\0flags\x00524353\0key\0user@example.com\0\0";
    assert_eq!(req.len(), 82);
    let Parse::Done { outcome: Outcome::Request { req: r, .. }, .. } = parse(req) else { panic!() };
    assert_eq!((r.op, r.flags, r.key, r.instance_flags), (Op::Lookup, 524353, &b"user@example.com"[..], 0));
}

#[test]
fn sequence_entry_and_3_11_shapes() {
    assert_eq!(
        reply(Some(Op::Sequence), V37, Status::Ok, 7, b"foo", b"bar"),
        b"status\x000\x00key\x00foo\x00value\x00bar\x00\x00"
    );
    // 3.11: flags right after status in every reply.
    assert_eq!(
        reply(Some(Op::Lookup), V311, Status::Ok, 64, b"", b"v"),
        b"status\x000\x00flags\x0064\x00value\x00v\x00\x00"
    );
    assert_eq!(reply(Some(Op::Update), V311, Status::Ok, 448, b"", b""), b"status\x000\x00flags\x00448\x00\x00");
    assert_eq!(reply(Some(Op::Delete), V311, Status::NoKey, 320, b"", b""), b"status\x001\x00flags\x00320\x00\x00");
    assert_eq!(
        reply(Some(Op::Sequence), V311, Status::Ok, 0, b"k", b"v"),
        b"status\x000\x00flags\x000\x00key\x00k\x00value\x00v\x00\x00"
    );
    assert_eq!(reply(Some(Op::Open), V311, Status::Ok, 16, b"", b""), b"status\x000\x00flags\x0016\x00\x00");
}

fn done(input: &[u8]) -> Outcome<'_> {
    match parse(input) {
        Parse::Done { outcome, .. } => outcome,
        other => panic!("expected a decision for {input:?}, got {other:?}"),
    }
}

fn warning_text(w: &Warning<'_>) -> String {
    w.display("proxymap socket").to_string()
}

#[test]
fn first_attribute_must_be_request_else_no_reply() {
    let Outcome::Ignored(w) = done(b"table\0x\0\0") else { panic!() };
    assert_eq!(warning_text(&w), "unexpected attribute table from proxymap socket (expecting: request)");
    let Outcome::Ignored(w) = done(b"\0") else { panic!() };
    assert_eq!(warning_text(&w), "missing attribute request in input from proxymap socket");
}

#[test]
fn unknown_request_gets_status_only_bad() {
    let Outcome::Bad { op: None, warning: Some(w), .. } = done(b"request\0frobnicate\0table\0x:y\0\0") else {
        panic!()
    };
    assert_eq!(warning_text(&w), "unrecognized request: \"frobnicate\", ignored");
    // case-sensitive
    assert!(matches!(done(b"request\0LOOKUP\0\0"), Outcome::Bad { op: None, .. }));
}

#[test]
fn missing_attribute_gets_bad_in_request_shape() {
    let o = done(b"request\0lookup\0table\0hash:/x\0flags\x000\0\0");
    let Outcome::Bad { op: Some(Op::Lookup), dialect: V37, warning: Some(w) } = o else { panic!("{o:?}") };
    assert_eq!(warning_text(&w), "missing attribute key in input from proxymap socket");
}

#[test]
fn out_of_order_attribute_gets_bad() {
    let o = done(b"request\0lookup\0flags\x000\0table\0hash:/x\0key\0k\0\0");
    let Outcome::Bad { op: Some(Op::Lookup), warning: Some(w), .. } = o else { panic!("{o:?}") };
    assert_eq!(warning_text(&w), "unexpected attribute flags from proxymap socket (expecting: table)");
}

#[test]
fn malformed_numbers_get_bad() {
    let o = done(b"request\0lookup\0table\0hash:/x\0flags\0abc\0key\0k\0\0");
    let Outcome::Bad { op: Some(Op::Lookup), warning: Some(w), .. } = o else { panic!("{o:?}") };
    assert_eq!(
        warning_text(&w),
        "malformed numerical data from proxymap socket while reading input attribute value: abc"
    );
    assert!(matches!(done(b"request\0open\0table\0a:b\0flags\0\0\0"), Outcome::Bad { op: Some(Op::Open), .. }));
    assert!(matches!(
        done(b"request\0sequence\0table\0a:b\0flags\x000\0function\0x\0\0"),
        Outcome::Bad { op: Some(Op::Sequence), .. }
    ));
}

#[test]
fn numbers_accept_whitespace_and_sign_like_sscanf() {
    let Outcome::Request { req, .. } = done(b"request\0lookup\0table\0a:b\0flags\0 +16384\0key\0k\0\0") else {
        panic!()
    };
    assert_eq!(req.flags, 16384);
    let Outcome::Request { req, .. } = done(b"request\0open\0table\0a:b\0flags\0-1\0\0") else { panic!() };
    assert_eq!(req.flags, u32::MAX);
    assert_eq!(req.instance_flags, 0xFFF3_060C);
}

#[test]
fn extra_attribute_at_end_is_served_with_a_warning() {
    let o = done(b"request\0lookup\0table\0a:b\0flags\x000\0key\0k\0extra\0x\0\0");
    let Outcome::Request { req, warning: Some(w) } = o else { panic!("{o:?}") };
    assert_eq!(req.key, b"k");
    assert_eq!(warning_text(&w), "unexpected attribute extra from proxymap socket (expecting: (list terminator))");
}

#[test]
fn sequence_function_other_than_0_or_1_is_bad_without_warning() {
    let o = done(b"request\0sequence\0table\0a:b\0flags\x000\0function\x002\0\0");
    assert_eq!(o, Outcome::Bad { op: Some(Op::Sequence), dialect: V37, warning: None });
    for f in [b"0", b"1"] {
        let mut input = b"request\0sequence\0table\0a:b\0flags\x000\0function\0".to_vec();
        input.extend_from_slice(f);
        input.extend_from_slice(b"\0\0");
        assert!(matches!(done(&input), Outcome::Request { .. }));
    }
}

#[test]
fn every_request_shape_parses() {
    let Outcome::Request { req, .. } = done(b"request\0update\0table\0btree:/w\0flags\x0064\0key\0K1\0value\0V1\0\0")
    else {
        panic!()
    };
    assert_eq!((req.op, req.key, req.value, req.flags), (Op::Update, &b"K1"[..], &b"V1"[..], 64));
    let Outcome::Request { req, .. } = done(b"request\0delete\0table\0btree:/w\0flags\x000\0key\0K1\0\0") else {
        panic!()
    };
    assert_eq!((req.op, req.key), (Op::Delete, &b"K1"[..]));
    // an empty value is allowed
    let Outcome::Request { req, .. } = done(b"request\0update\0table\0a:b\0flags\x000\0key\0\0value\0\0\0") else {
        panic!()
    };
    assert_eq!((req.key, req.value), (&b""[..], &b""[..]));
}

#[test]
fn postfix_3_11_requests_are_recognised() {
    let o = done(b"request\0lookup\0table\0a:b\0instance_flags\x0065536\0flags\x0064\0key\0k\0\0");
    let Outcome::Request { req, warning: None } = o else { panic!("{o:?}") };
    assert_eq!(
        req,
        Request {
            op: Op::Lookup,
            dialect: V311,
            table: b"a:b",
            instance_flags: 65536,
            flags: 64,
            key: b"k",
            value: b"",
            function: 0
        }
    );
    let Outcome::Request { req, .. } = done(b"request\0open\0table\0a:b\0instance_flags\x0065536\0\0") else {
        panic!()
    };
    assert_eq!((req.op, req.dialect, req.instance_flags), (Op::Open, V311, 65536));
    // a 3.11 request missing its request flags is BAD in the 3.11 shape
    let o = done(b"request\0lookup\0table\0a:b\0instance_flags\x000\0key\0k\0\0");
    assert!(matches!(o, Outcome::Bad { op: Some(Op::Lookup), dialect: V311, .. }), "{o:?}");
}

#[test]
fn incomplete_input_is_need_more_not_an_error() {
    let full = b"request\0lookup\0table\0hash:/x\0flags\x000\0key\0k\0\0";
    for cut in 0..full.len() {
        assert!(matches!(parse(&full[..cut]), Parse::NeedMore(_)), "cut at {cut}");
    }
    assert_eq!(parse(b""), Parse::NeedMore(Incomplete { context: Context::Name, partial: false }));
    assert_eq!(parse(b"requ"), Parse::NeedMore(Incomplete { context: Context::Name, partial: true }));
    assert_eq!(parse(b"request\0"), Parse::NeedMore(Incomplete { context: Context::Value, partial: false }));
    assert_eq!(parse(b"request\0look"), Parse::NeedMore(Incomplete { context: Context::Value, partial: true }));
}

#[test]
fn decision_stops_at_the_end_of_the_request() {
    let two = b"request\0open\0table\0a:b\0flags\x000\0\0request\0open\0table\0c:d\0flags\x000\0\0";
    let Parse::Done { consumed, .. } = parse(two) else { panic!() };
    assert_eq!(consumed, two.len() / 2);
}

/// Valid requests of every shape and dialect, the seeds of the mutation test.
const SEEDS: &[&[u8]] = &[
    b"request\0open\0table\0hash:/etc/postfix/a\0flags\x0064\0\0",
    b"request\0lookup\0table\0hash:/x\0flags\x00540737\0key\0user@example.com\0\0",
    b"request\0lookup\0table\0a:b\0instance_flags\x0065536\0flags\x0064\0key\0k\0\0",
    b"request\0update\0table\0btree:/w\0flags\x0064\0key\0K1\0value\0V1\0\0",
    b"request\0delete\0table\0btree:/w\0flags\x000\0key\0K1\0\0",
    b"request\0sequence\0table\0btree:/w\0flags\x000\0function\x000\0\0",
    b"request\0open\0table\0a:b\0instance_flags\x0016\0\0",
];

/// One to four random edits of `seed`: a byte changed (often to NUL or a
/// digit), bytes removed, a span repeated, random bytes inserted, or a cut.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(6) {
            0 if at < v.len() => v[at] = [0, b'0', b'9', b'-', b' ', 0xff][rng.below(6)],
            1 if at < v.len() => {
                let end = (at + 1 + rng.below(8)).min(v.len());
                v.drain(at..end);
            }
            2 if at < v.len() => {
                let end = (at + 1 + rng.below(24)).min(v.len());
                let span = v[at..end].to_vec();
                v.splice(at..at, span);
            }
            3 => {
                let junk: Vec<u8> = (0..1 + rng.below(12)).map(|_| rng.next() as u8).collect();
                v.splice(at..at, junk);
            }
            4 => v.truncate(at),
            _ => v.insert(at.min(v.len()), 0),
        }
    }
    v
}

#[test]
fn mutated_requests_get_a_decision_that_depends_only_on_what_it_consumed() {
    let mut rng = Rng::new(0x243f_6a88_85a3_08d3);
    let mut decided = 0;
    for round in 0..20_000 {
        let seed = SEEDS[round % SEEDS.len()];
        let input = mutate(&mut rng, seed);
        // Never a panic, whatever the bytes.
        match parse(&input) {
            Parse::Done { consumed, outcome } => {
                decided += 1;
                assert!(consumed > 0 && consumed <= input.len(), "{input:?}: consumed {consumed}");
                // The decision is made by the bytes it consumed alone: the
                // same for them without what follows.
                assert_eq!(
                    parse(&input[..consumed]),
                    Parse::Done { consumed, outcome },
                    "{input:?}: decided differently without the rest"
                );
                // Whatever follows is the next request, parsed from scratch.
                let _ = parse(&input[consumed..]);
            }
            Parse::NeedMore(_) => {
                // Waiting for more: so must every shorter part of it.
                for cut in 0..input.len() {
                    assert!(matches!(parse(&input[..cut]), Parse::NeedMore(_)), "{input:?} cut at {cut}");
                }
            }
        }
    }
    // Most mutations still end in a terminator: the test reaches decisions.
    assert!(decided > 5_000, "only {decided} decisions");
}

#[test]
fn random_bytes_never_stall_a_decision_past_a_double_nul_at_a_name() {
    // A list ends at the first empty name: input that has one at a name's
    // place is decided, however odd the bytes before it.
    let mut rng = Rng::new(0x1319_8a2e_0370_7344);
    let mut lists = 0;
    for _ in 0..20_000 {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| if rng.below(4) == 0 { 0 } else { rng.next() as u8 }).collect();
        let r = parse(&bytes);
        // Walk the attribute structure by hand: names and values end at NUL.
        let mut fields = bytes.split(|&b| b == 0);
        let mut at = 0;
        let mut terminated = false;
        while let Some(name) = fields.next() {
            if at + name.len() >= bytes.len() {
                break; // the name is not complete
            }
            if name.is_empty() {
                terminated = true;
                break;
            }
            at += name.len() + 1;
            match fields.next() {
                Some(value) if at + value.len() < bytes.len() => at += value.len() + 1,
                _ => break,
            }
        }
        if terminated {
            lists += 1;
            assert!(matches!(r, Parse::Done { .. }), "{bytes:?}: a list end was there, got {r:?}");
        }
    }
    assert!(lists > 2_000, "only {lists} inputs held a list end");
}
