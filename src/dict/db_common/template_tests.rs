use super::*;

/// A table with these query and result templates.
fn table(query: &str, result: &str) -> (Context, Template, Template) {
    let mut ctx = Context::new("sqlite", "/t.cf");
    let q = ctx.parse(query, Role::Query).unwrap();
    let r = ctx.parse(result, Role::Result).unwrap();
    (ctx, q, r)
}

/// The query for `key`, quoted as SQLite does; None when skipped.
fn query(ctx: &Context, q: &Template, key: &str) -> Option<String> {
    let quote = |raw: &[u8], out: &mut Vec<u8>| {
        for &b in raw {
            out.push(b);
            if b == b'\'' {
                out.push(b'\'');
            }
        }
    };
    let mut out = Vec::new();
    ctx.expand_query(q, key.as_bytes(), &mut out, &quote).then(|| String::from_utf8(out).unwrap())
}

fn result(ctx: &Context, r: &Template, value: &str, key: &str) -> Option<String> {
    let mut out = Vec::new();
    ctx.expand_result(r, Some(value.as_bytes()), key.as_bytes(), &mut out).then(|| String::from_utf8(out).unwrap())
}

fn parse_err(template: &str, role: Role) -> String {
    Context::new("sqlite", "/etc/postfix/t.cf").parse(template, role).unwrap_err().reason
}

#[test]
fn every_specifier_parses_and_others_are_fatal_with_postfix_text() {
    let mut ctx = Context::new("sqlite", "/t.cf");
    for t in ["", "plain", "%%", "%s%u%d%S%U%D", "%1%2%3%4%5%6%7%8%9", "100%% sure"] {
        ctx.parse(t, Role::Query).unwrap();
        ctx.parse(t, Role::Result).unwrap();
    }
    assert_eq!(
        parse_err("SELECT 100% FROM t", Role::Query),
        "db_common_parse: /etc/postfix/t.cf: Invalid query template: SELECT 100% FROM t"
    );
    assert_eq!(
        parse_err("trailing %", Role::Result),
        "db_common_parse: /etc/postfix/t.cf: Invalid result template: trailing %"
    );
    for bad in ["%0", "%x", "%Q", "%-", "%%%"] {
        assert!(parse_err(bad, Role::Query).contains("Invalid query template"), "{bad}");
    }
}

#[test]
fn the_verified_literal_query_example() {
    // [verified, pgsql] query = SELECT '[%s][%u][%d][%1][%2]'
    let (ctx, q, _) = table("SELECT '[%s][%u][%d][%1][%2]'", "%s");
    assert_eq!(query(&ctx, &q, "x@y.z").as_deref(), Some("SELECT '[x@y.z][x][y.z][z][y]'"));
    for skipped in ["@example.com", "user@", "user@.com", "nodomain"] {
        assert_eq!(query(&ctx, &q, skipped), None, "{skipped}");
    }
}

#[test]
fn the_address_splits_at_the_last_at() {
    let (ctx, q, _) = table("[%s][%u][%d]", "%s");
    assert_eq!(query(&ctx, &q, "a@b@c.d").as_deref(), Some("[a@b@c.d][a@b][c.d]"));
}

#[test]
fn empty_labels_are_dropped_before_counting() {
    let (ctx, q, _) = table("[%1][%2]", "%s");
    assert_eq!(query(&ctx, &q, "user@example..com").as_deref(), Some("[com][example]"));
    assert_eq!(query(&ctx, &q, "user@example.com.").as_deref(), Some("[com][example]"));
    assert_eq!(query(&ctx, &q, "user@com").as_deref(), None);
    assert_eq!(query(&ctx, &q, "user@..com..").as_deref(), None);
    let (ctx, q, _) = table("%3.%2.%1", "%s");
    assert_eq!(query(&ctx, &q, "u@a.b.c.d").as_deref(), Some("b.c.d"));
    // %1 alone needs a domain (with one label) but no local part
    let (ctx, q, _) = table("%1", "%s");
    assert_eq!(query(&ctx, &q, "@org").as_deref(), Some("org"));
    assert_eq!(query(&ctx, &q, "org").as_deref(), None);
}

#[test]
fn u_needs_a_local_part_and_d_a_domain() {
    let (ctx, q, _) = table("%u", "%s");
    assert_eq!(query(&ctx, &q, "user@dom").as_deref(), Some("user"));
    assert_eq!(query(&ctx, &q, "plain").as_deref(), Some("plain"), "%u of a key without @ is the key");
    assert_eq!(query(&ctx, &q, "user@").as_deref(), Some("user"), "%u alone does not need a domain");
    assert_eq!(query(&ctx, &q, "@dom").as_deref(), None);
    let (ctx, q, _) = table("%d", "%s");
    assert_eq!(query(&ctx, &q, "@dom").as_deref(), Some("dom"), "%d alone does not need a local part");
    assert_eq!(query(&ctx, &q, "user@").as_deref(), None);
    assert_eq!(query(&ctx, &q, "user").as_deref(), None);
    let (ctx, q, _) = table("%s", "%s");
    for any in ["@", "user@", "@dom", "x"] {
        assert_eq!(query(&ctx, &q, any).as_deref(), Some(any));
    }
}

#[test]
fn an_empty_key_is_never_queried() {
    let (ctx, q, _) = table("SELECT '%s'", "%s");
    assert_eq!(query(&ctx, &q, ""), None);
}

#[test]
fn result_templates_constrain_the_query_through_upper_case() {
    // %U and %D in a result template are about the key: the query is skipped
    let (ctx, q, _) = table("SELECT '%s'", "%D");
    assert_eq!(query(&ctx, &q, "nodomain"), None);
    assert_eq!(query(&ctx, &q, "a@b").as_deref(), Some("SELECT 'a@b'"));
    let (ctx, q, _) = table("SELECT '%s'", "%U");
    assert_eq!(query(&ctx, &q, "@b"), None);
    let (ctx, q, _) = table("SELECT '%s'", "%2");
    assert_eq!(query(&ctx, &q, "a@b"), None);
    assert_eq!(query(&ctx, &q, "a@b.c").as_deref(), Some("SELECT 'a@b.c'"));
    // lower case in a result template is about the value only
    let (ctx, q, _) = table("SELECT '%s'", "%d");
    assert_eq!(query(&ctx, &q, "nodomain").as_deref(), Some("SELECT 'nodomain'"));
}

#[test]
fn only_query_pieces_are_quoted() {
    let (ctx, q, r) = table("k='%s' u='%u' d='%d' S='%S' n='%1'", "[%s|%S]");
    assert_eq!(
        query(&ctx, &q, "o'brien@it's.com").as_deref(),
        Some("k='o''brien@it''s.com' u='o''brien' d='it''s.com' S='o''brien@it''s.com' n='com'")
    );
    // the template's own quotes and backslashes are left alone
    let (ctx2, q2, _) = table("'%%' \\ '%s'", "%s");
    assert_eq!(query(&ctx2, &q2, "a\\b").as_deref(), Some("'%' \\ 'a\\b'"));
    assert_eq!(result(&ctx, &r, "it's", "o'k@x.com").as_deref(), Some("[it's|o'k@x.com]"));
}

#[test]
fn result_values_skip_when_their_parts_are_missing() {
    let (ctx, _, r) = table("%s", "%u at %d");
    assert_eq!(result(&ctx, &r, "a@b", "key").as_deref(), Some("a at b"));
    assert_eq!(result(&ctx, &r, "nodomain", "key"), None);
    assert_eq!(result(&ctx, &r, "a@", "key"), None);
    assert_eq!(result(&ctx, &r, "@b", "key"), None);
    let (ctx, _, r) = table("%s", "<%u>");
    assert_eq!(result(&ctx, &r, "plain", "key").as_deref(), Some("<plain>"));
    assert_eq!(result(&ctx, &r, "a@", "key").as_deref(), Some("<a>"));
}

#[test]
fn upper_case_and_digits_in_results_refer_to_the_key() {
    let (ctx, _, r) = table("%s", "%s|%S|%U|%D|%1|%2");
    assert_eq!(
        result(&ctx, &r, "val", "user@mail.example.com").as_deref(),
        Some("val|user@mail.example.com|user|mail.example.com|com|example")
    );
    // a key the query template admitted could not fail here; if it does,
    // Postfix's warning names the value and the value is skipped
    assert_eq!(result(&ctx, &r, "val", "nodomain"), None);
}

#[test]
fn results_are_joined_with_commas_nulls_and_empties_skipped() {
    let (ctx, _, r) = table("%s", "%s");
    let mut out = Vec::new();
    assert!(ctx.expand_result(&r, Some(b"a"), b"k", &mut out));
    assert!(!ctx.expand_result(&r, None, b"k", &mut out));
    assert!(!ctx.expand_result(&r, Some(b""), b"k", &mut out));
    assert!(ctx.expand_result(&r, Some(b"b"), b"k", &mut out));
    assert_eq!(out, b"a,b");
    // a query appended to a non-empty buffer gets a comma too
    let (ctx, q, _) = table("%s", "%s");
    let mut out = b"x".to_vec();
    assert!(ctx.expand_query(&q, b"y", &mut out, &|p: &[u8], o: &mut Vec<u8>| o.extend_from_slice(p)));
    assert_eq!(out, b"x,y");
}

#[test]
fn result_values_are_bytes() {
    let (ctx, _, r) = table("%s", "<%s>");
    let mut out = Vec::new();
    assert!(ctx.expand_result(&r, Some(b"\xff\xfe"), b"k", &mut out));
    assert_eq!(out, b"<\xff\xfe>");
}

#[test]
fn constraints_accumulate_over_all_templates() {
    let mut ctx = Context::new("sqlite", "/t.cf");
    let q = ctx.parse("%s", Role::Query).unwrap();
    let quote = |p: &[u8], o: &mut Vec<u8>| o.extend_from_slice(p);
    let mut out = Vec::new();
    assert!(ctx.expand_query(&q, b"nodomain", &mut out, &quote));
    ctx.parse("%3", Role::Result).unwrap();
    ctx.parse("%1", Role::Result).unwrap();
    out.clear();
    assert!(!ctx.expand_query(&q, b"a@b.c", &mut out, &quote), "needs three labels now");
    assert!(ctx.expand_query(&q, b"a@b.c.d", &mut out, &quote));
}
