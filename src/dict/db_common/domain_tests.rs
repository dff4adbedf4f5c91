use super::*;
use crate::config::Params;
use std::collections::HashMap;

/// Files from a map, tables from the real registry (in-memory types only).
#[derive(Default)]
struct Fake {
    files: HashMap<String, String>,
    opened: Vec<String>,
    params: Params,
}

impl Sources for Fake {
    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, String> {
        self.files.get(path).map(|t| t.as_bytes().to_vec()).ok_or_else(|| "No such file or directory".to_string())
    }

    fn open_table(&mut self, name: &str) -> Box<dyn Dict> {
        self.opened.push(name.to_string());
        crate::dict::registry::open_or_surrogate(name, crate::dict::Mode::ReadOnly, TABLE_FLAGS, &self.params)
    }
}

fn filter(list: &str) -> DomainFilter {
    filter_with(list, &mut Fake::default())
}

fn filter_with(list: &str, fake: &mut Fake) -> DomainFilter {
    DomainFilter::parse(list, "/etc/postfix/t.cf", fake).unwrap()
}

fn allows(f: &DomainFilter, key: &str) -> bool {
    f.allows(key.as_bytes()).unwrap()
}

#[test]
fn names_match_exactly_and_without_case() {
    let f = filter("example.com, Example.NET other.org");
    for yes in ["u@example.com", "u@EXAMPLE.com", "u@example.net", "U@Other.Org", "a@b@example.com"] {
        assert!(allows(&f, yes), "{yes}");
    }
    // no parent-domain matching, no partial names
    for no in ["u@sub.example.com", "u@example.co", "u@xexample.com", "u@example.com."] {
        assert!(!allows(&f, no), "{no}");
    }
}

#[test]
fn a_key_needs_an_at_a_local_part_and_a_domain() {
    let f = filter("example.com");
    for no in ["example.com", "@example.com", "u@", "", "@"] {
        assert!(!allows(&f, no), "{no:?}");
    }
    // the domain is what follows the last @
    assert!(allows(&f, "a@b@example.com"));
    assert!(!allows(&f, "a@example.com@b"));
}

#[test]
fn the_first_matching_item_decides_and_bang_negates() {
    let f = filter("!bad.example.com, example.com, bad.example.com");
    assert!(!allows(&f, "u@bad.example.com"));
    assert!(allows(&f, "u@example.com"));
    let f = filter("example.com !example.com");
    assert!(allows(&f, "u@example.com"));
    let f = filter("!!example.com");
    assert!(allows(&f, "u@example.com"));
    // a negated item that does not match decides nothing
    let f = filter("!other.com");
    assert!(!allows(&f, "u@example.com"));
}

#[test]
fn a_bang_with_nothing_after_it_fails_the_open() {
    let e = DomainFilter::parse("example.com, !", "/etc/postfix/t.cf", &mut Fake::default()).err().unwrap();
    assert_eq!(e.reason, "/etc/postfix/t.cf: no pattern after '!'");
    assert!(DomainFilter::parse("!!", "x", &mut Fake::default()).is_err());
}

#[test]
fn files_are_read_line_by_line_and_negation_carries_into_them() {
    let mut fake = Fake::default();
    fake.files.insert(
        "/d/list".into(),
        "# comment line\nexample.com other.org\n!not.example.com\n  # indented: an item\n".into(),
    );
    let f = filter_with("/d/list", &mut fake);
    assert!(allows(&f, "u@example.com"));
    assert!(allows(&f, "u@other.org"));
    assert!(!allows(&f, "u@not.example.com"));
    // !/file: every item of the file negated
    let f = filter_with("!/d/list, not.example.com, example.com", &mut fake);
    assert!(!allows(&f, "u@example.com"));
    assert!(allows(&f, "u@not.example.com"));
}

#[test]
fn an_unreadable_file_fails_lookups_that_reach_it() {
    let f = filter("first.com, /no/such/file, last.com");
    assert!(allows(&f, "u@first.com"), "items before it still decide");
    assert!(matches!(f.allows(b"u@last.com"), Err(DictError::Retry(_))));
    assert!(matches!(f.allows(b"u@other.com"), Err(DictError::Retry(_))));
    // a key without a domain never reaches the list
    assert_eq!(f.allows(b"nodomain"), Ok(false));
}

#[test]
fn tables_are_looked_up_with_the_folded_domain() {
    let mut fake = Fake::default();
    let f = filter_with("inline:{example.com=x, Mixed.Org=y}", &mut fake);
    assert_eq!(fake.opened, ["inline:{example.com=x, Mixed.Org=y}"]);
    assert!(allows(&f, "u@EXAMPLE.COM"));
    // the table is asked the folded domain, as Postfix does: a table with
    // upper-case keys no longer matches
    assert!(!allows(&f, "u@Mixed.Org"));
    assert!(!allows(&f, "u@other.com"));
    let f = filter_with("!inline:{example.com=x}, static:any", &mut fake);
    assert!(!allows(&f, "u@example.com"));
    assert!(allows(&f, "u@other.com"));
}

#[test]
fn a_failing_table_fails_the_lookup_with_its_error() {
    let f = filter("example.com, fail:down");
    assert!(allows(&f, "u@example.com"));
    assert!(matches!(f.allows(b"u@other.com"), Err(DictError::Retry(_))));
    // a table that cannot be opened is a surrogate: RETRY as well
    let f = filter("nosuchtype:x");
    assert!(matches!(f.allows(b"u@other.com"), Err(DictError::Retry(_))));
}

#[test]
fn bracketed_items_with_colons_are_names() {
    let mut fake = Fake::default();
    let f = filter_with("[::1], [a:b]", &mut fake);
    assert!(fake.opened.is_empty());
    assert!(allows(&f, "u@[::1]"));
    assert!(allows(&f, "u@[A:B]"));
}

#[test]
fn braces_group_and_a_comment_ends_the_list() {
    let f = filter("{a b} example.com # other.org");
    assert!(allows(&f, "u@{a b}"));
    assert!(allows(&f, "u@example.com"));
    assert!(!allows(&f, "u@other.org"));
}

#[test]
fn matches_checks_a_bare_domain() {
    let f = filter("example.com");
    assert_eq!(f.matches(b"EXAMPLE.com"), Ok(true));
    assert_eq!(f.matches(b"x.com"), Ok(false));
}
