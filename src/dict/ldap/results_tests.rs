use super::*;
use crate::dict::db_common::template::{Context, Role};
use std::collections::HashMap;

/// Entries by base DN; URL searches answer by filter text.
#[derive(Default)]
struct Fake {
    by_base: HashMap<String, (i32, Vec<Entry>)>,
    by_filter: HashMap<String, (i32, Vec<Entry>)>,
    asked: Vec<(String, Vec<String>)>,
}

impl Searcher for Fake {
    fn search(&mut self, req: &Request<'_>) -> (i32, Vec<Entry>) {
        let base = req.base.map(|b| b.to_string_lossy().into_owned()).unwrap_or_default();
        let filter = req.filter.map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        self.asked.push((base.clone(), req.attrs.iter().map(|a| a.to_string_lossy().into_owned()).collect()));
        if let Some(r) = self.by_filter.get(&filter) {
            return r.clone();
        }
        self.by_base.get(&base).cloned().unwrap_or((LDAP_NO_SUCH_OBJECT, Vec::new()))
    }
}

fn entry(attrs: &[(&str, &[&str])]) -> Entry {
    Entry {
        attrs: attrs.iter().map(|(n, v)| (n.to_string(), v.iter().map(|s| s.as_bytes().to_vec()).collect())).collect(),
    }
}

fn attributes(terminal: &[&str], leaf: &[&str], regular: &[&str], special: &[&str]) -> Attributes {
    let mut names: Vec<String> = Vec::new();
    for l in [terminal, leaf, regular, special] {
        names.extend(l.iter().map(|s| s.to_string()));
    }
    Attributes {
        num_terminal: terminal.len(),
        num_leaf: leaf.len(),
        num_attributes: terminal.len() + leaf.len() + regular.len(),
        names,
    }
}

struct Run {
    out: String,
    error: Option<String>,
    errno: i32,
    asked: Vec<(String, Vec<String>)>,
}

fn walk(fake: &mut Fake, attrs: &Attributes, top: &[Entry], recursion_limit: i32, size_limit: i32, exp: i32) -> Run {
    let mut ctx = Context::new("ldap", "t.cf");
    let format = ctx.parse("%s", Role::Result).unwrap();
    let names: Vec<CString> = attrs.names.iter().map(|n| CString::new(n.as_str()).unwrap()).collect();
    let mut out = Vec::new();
    let assembly = Assembly::new(&ctx, &format, b"key", exp, &mut out);
    let limits = Limits { name: "t.cf", attributes: attrs, attr_names: &names, recursion_limit, size_limit };
    let mut w = Walk::new(limits, assembly, b"key", fake);
    w.get_values(top);
    let (error, errno) = (w.error.take(), w.errno);
    Run { out: String::from_utf8(out).unwrap(), error, errno, asked: std::mem::take(&mut fake.asked) }
}

#[test]
fn every_value_of_every_wanted_attribute_in_server_order() {
    let attrs = attributes(&[], &[], &["mail", "cn"], &[]);
    let top = [entry(&[("cn", &["A"]), ("mail", &["a@x", "b@x"]), ("sn", &["ignored"])]), entry(&[("mail", &["c@x"])])];
    let r = walk(&mut Fake::default(), &attrs, &top, 1000, 0, 0);
    assert_eq!(r.out, "A,a@x,b@x,c@x");
    assert_eq!(r.error, None);
    // subtypes count as their attribute
    let top = [entry(&[("mail;lang-en", &["sub@x"]), ("MAIL", &["upper@x"])])];
    assert_eq!(walk(&mut Fake::default(), &attrs, &top, 1000, 0, 0).out, "sub@x,upper@x");
}

#[test]
fn subtype_and_url_attributes_as_postfix_relates_them() {
    assert_eq!(subtype("mail", "mail"), 1);
    assert_eq!(subtype("mail", "MAIL;lang-en"), 1);
    assert_eq!(subtype("mail;x", "mail"), -1);
    assert_eq!(subtype("mail", "mailHost"), 0);
    let attrs = attributes(&[], &[], &["mail", "cn"], &["member"]);
    assert_eq!(url_attrs(&attrs, None), Some(attrs.names.clone()));
    let listed = vec!["mail;lang-en".to_string(), "uid".to_string()];
    assert_eq!(url_attrs(&attrs, Some(&listed)), Some(vec!["mail;lang-en".to_string()]));
    assert_eq!(url_attrs(&attrs, Some(&["uid".to_string()])), None);
}

#[test]
fn dn_values_are_followed_to_the_recursion_limit() {
    let attrs = attributes(&[], &[], &["mail"], &["member"]);
    let mut fake = Fake::default();
    fake.by_base.insert("uid=a".into(), (LDAP_SUCCESS, vec![entry(&[("mail", &["a@x"])])]));
    fake.by_base.insert("cn=inner".into(), (LDAP_SUCCESS, vec![entry(&[("member", &["uid=a"])])]));
    let top = [entry(&[("mail", &["group@x"]), ("member", &["cn=inner", "uid=a"])])];
    let r = walk(&mut fake, &attrs, &top, 1000, 0, 0);
    assert_eq!(r.out, "group@x,a@x,a@x");
    assert_eq!(r.asked[0], ("cn=inner".to_string(), vec!["mail".to_string(), "member".to_string()]));
    // two levels allowed: the inner group's member is one too many
    let r = walk(&mut fake, &attrs, &top, 2, 0, 0);
    assert_eq!(
        r.error.as_deref(),
        Some("dict_ldap_get_values[2]: t.cf: Recursion limit exceeded for special attribute member=uid=a")
    );
    let r = walk(&mut fake, &attrs, &top, 1, 0, 0);
    assert!(r.error.unwrap().starts_with("dict_ldap_get_values[1]: t.cf: Recursion limit exceeded"));
}

#[test]
fn a_missing_member_is_skipped_and_leaves_its_code_behind() {
    let attrs = attributes(&[], &[], &["mail"], &["member"]);
    let mut fake = Fake::default();
    fake.by_base.insert("uid=a".into(), (LDAP_SUCCESS, vec![entry(&[("mail", &["a@x"])])]));
    let top = [entry(&[("member", &["uid=ghost", "uid=a"])])];
    let r = walk(&mut fake, &attrs, &top, 1000, 0, 0);
    assert_eq!((r.out.as_str(), r.error, r.errno), ("a@x", None, LDAP_SUCCESS));
    let top = [entry(&[("member", &["uid=a", "uid=ghost"])])];
    let r = walk(&mut fake, &attrs, &top, 1000, 0, 0);
    assert_eq!((r.out.as_str(), r.error, r.errno), ("a@x", None, LDAP_NO_SUCH_OBJECT));
    // another error fails the lookup
    fake.by_base.insert("uid=bad".into(), (-7, Vec::new()));
    let top = [entry(&[("member", &["uid=bad", "uid=a"])])];
    let r = walk(&mut fake, &attrs, &top, 1000, 0, 0);
    assert_eq!(r.error.as_deref(), Some("dict_ldap_get_values[1]: search error -7: Bad search filter "));
    assert_eq!(r.asked.len(), 1);
}

#[test]
fn url_values_search_with_the_urls_filter_and_the_common_attributes() {
    let attrs = attributes(&[], &[], &["mail"], &["memberURL"]);
    let mut fake = Fake::default();
    fake.by_filter.insert("(uid=a)".into(), (LDAP_SUCCESS, vec![entry(&[("mail", &["a@x"])])]));
    let top = [entry(&[("memberURL", &["ldap:///ou=p,dc=x??sub?(uid=a)", "ldap:///ou=p,dc=x?uid?sub?(uid=a)"])])];
    let r = walk(&mut fake, &attrs, &top, 1000, 0, 0);
    // the second URL asks only for uid: nothing we want, not searched
    assert_eq!((r.out.as_str(), r.asked.len()), ("a@x", 1));
    assert_eq!(r.asked[0], ("ou=p,dc=x".to_string(), vec!["mail".to_string(), "memberURL".to_string()]));
    let top = [entry(&[("memberURL", &["ldap://[bad"])])];
    let r = walk(&mut fake, &attrs, &top, 1000, 0, 0);
    assert!(r.error.unwrap().starts_with("dict_ldap_get_values[1]: malformed URL ldap://[bad: "));
}

#[test]
fn terminal_and_leaf_attributes_shape_each_entry() {
    let attrs = attributes(&["forward"], &["leafmail"], &["mail"], &["member"]);
    let mut fake = Fake::default();
    fake.by_base.insert("uid=a".into(), (LDAP_SUCCESS, vec![entry(&[("leafmail", &["leaf-a@x"])])]));
    // a terminal entry gives only its terminal values, and no recursion
    let top = [entry(&[("mail", &["m@x"]), ("forward", &["f@x"]), ("member", &["uid=a"])])];
    let r = walk(&mut fake, &attrs, &top, 1000, 0, 0);
    assert_eq!((r.out.as_str(), r.asked.len()), ("f@x", 0));
    // a group (special attribute) skips its own leaf values, its members' count
    let top = [entry(&[("leafmail", &["group-leaf@x"]), ("mail", &["g@x"]), ("member", &["uid=a"])])];
    assert_eq!(walk(&mut fake, &attrs, &top, 1000, 0, 0).out, "g@x,leaf-a@x");
    // Postfix's flags carry over: after a terminal entry, an entry without
    // the terminal attribute still counts as terminal
    let top = [entry(&[("forward", &["f@x"])]), entry(&[("mail", &["m@x"]), ("leafmail", &["l@x"])])];
    assert_eq!(walk(&mut fake, &attrs, &top, 1000, 0, 0).out, "f@x");
}

#[test]
fn limits_fail_the_lookup_with_postfixs_warnings() {
    let attrs = attributes(&[], &[], &["mail"], &[]);
    let top = [entry(&[("mail", &["a"])]), entry(&[("mail", &["b"])]), entry(&[("mail", &["c"])])];
    let r = walk(&mut Fake::default(), &attrs, &top, 1000, 2, 0);
    assert_eq!(r.error.as_deref(), Some("dict_ldap_get_values[1]: t.cf: Query size limit (2) exceeded"));
    let r = walk(&mut Fake::default(), &attrs, &top, 1000, 0, 2);
    assert_eq!(r.error.as_deref(), Some("dict_ldap_get_values[1]: t.cf: Expansion limit exceeded for key: 'key'"));
    assert_eq!(walk(&mut Fake::default(), &attrs, &top, 1000, 3, 3).error, None);
}
