use super::*;
use crate::test_support::TempFile;

const CF: &str = "/etc/postfix/t.cf";

fn file(text: &str) -> Cf<'static> {
    Cf::from_file_text(CF, text.as_bytes()).unwrap()
}

fn file_err(text: &str) -> String {
    match Cf::from_file_text(CF, text.as_bytes()) {
        Ok(_) => panic!("{text:?} parsed"),
        Err(e) => e.reason,
    }
}

fn main_cf(text: &str) -> Params {
    Params::from_text(text, "main.cf", &[]).unwrap()
}

#[test]
fn file_syntax_is_main_cf_logical_lines() {
    let cf = file(
        "# comment\n\
         \n\
         dbpath = /var/db/x.sqlite\n\
         query = SELECT v\n\
         \x20   FROM t   \n\
         # a comment between continuation lines\n\
         \tWHERE k='%s'\n\
         result_format=%s  \n\
         empty =\n",
    );
    assert_eq!(cf.get_str("dbpath", None, 0, 0).unwrap().as_deref(), Some("/var/db/x.sqlite"));
    assert_eq!(cf.get_str("query", None, 0, 0).unwrap().as_deref(), Some("SELECT v    FROM t   \tWHERE k='%s'"));
    assert_eq!(cf.get_str("result_format", None, 0, 0).unwrap().as_deref(), Some("%s"));
    // no default: empty and unset are both None; with a default, the default
    assert_eq!(cf.get_str("empty", None, 0, 0).unwrap(), None);
    assert_eq!(cf.get_str("unset", None, 0, 0).unwrap(), None);
    assert_eq!(cf.get_str("unset", Some("dflt"), 0, 0).unwrap().as_deref(), Some("dflt"));
    assert_eq!(cf.get_str("empty", Some("dflt"), 0, 0).unwrap().as_deref(), Some(""));
    assert_eq!(cf.name(), CF);
}

#[test]
fn file_values_are_not_expanded_nor_unquoted() {
    let cf = file("query = SELECT '$x' \"q\" ${y} \\n\n");
    assert_eq!(cf.get_str("query", None, 0, 0).unwrap().as_deref(), Some("SELECT '$x' \"q\" ${y} \\n"));
}

#[test]
fn names_are_case_sensitive() {
    let cf = file("DBPATH = /x\n");
    assert_eq!(cf.get_str("dbpath", None, 0, 0).unwrap(), None);
}

#[test]
fn syntax_errors_name_file_and_line_as_postfix() {
    assert_eq!(file_err("dbpath = /x\n= value\n"), "/etc/postfix/t.cf, line 2: missing attribute name: \"= value\"");
    assert_eq!(
        file_err("# c\ndbpath /x\n  more\n"),
        "/etc/postfix/t.cf, line 2: missing '=' after attribute name: \"dbpath /x  more\""
    );
}

fn file_err_bytes(text: &[u8]) -> String {
    match Cf::from_file_text(CF, text) {
        Ok(_) => "parsed".to_string(),
        Err(e) => e.reason,
    }
}

#[test]
fn a_file_that_is_not_utf8_is_refused_with_its_line() {
    assert_eq!(file_err_bytes(b"a = 1\nb = \xff\n"), "/etc/postfix/t.cf, line 2: text is not valid UTF-8");
}

#[test]
fn the_last_of_repeated_names_wins() {
    // (the "overriding earlier entry" warning goes to the log)
    let cf = file("query = one\nquery = two\nquery = two\n");
    assert_eq!(cf.get_str("query", None, 0, 0).unwrap().as_deref(), Some("two"));
}

#[test]
fn string_lengths_are_checked_on_values_and_defaults() {
    let cf = file("dbpath =\nshort = ab\n");
    assert_eq!(
        cf.get_str("dbpath", Some(""), 1, 0).unwrap_err().reason,
        "/etc/postfix/t.cf: bad string length 0 < 1: dbpath = "
    );
    assert_eq!(
        cf.get_str("nothing", Some(""), 1, 0).unwrap_err().reason,
        "/etc/postfix/t.cf: bad string length 0 < 1: nothing = "
    );
    assert_eq!(
        cf.get_str("nothing", None, 1, 0).unwrap_err().reason,
        "/etc/postfix/t.cf: bad string length 0 < 1: nothing = "
    );
    assert_eq!(
        cf.get_str("short", None, 3, 0).unwrap_err().reason,
        "/etc/postfix/t.cf: bad string length 2 < 3: short = ab"
    );
    assert_eq!(
        cf.get_str("short", None, 0, 1).unwrap_err().reason,
        "/etc/postfix/t.cf: bad string length 2 > 1: short = ab"
    );
    assert_eq!(cf.get_str("short", None, 2, 2).unwrap().as_deref(), Some("ab"));
}

#[test]
fn integers_are_strtol_of_the_whole_value_in_c_int_range() {
    let cf = file("a = 42\nb = -7\nc = +3\nd =  12\ne = 12x\nf = x\ng = 2147483648\nh = 2147483647\ni = 0x10\nj =\n");
    assert_eq!(cf.get_int("a", 0, 0, 0).unwrap(), 42);
    assert_eq!(cf.get_int("b", 0, 0, 0).unwrap(), -7);
    assert_eq!(cf.get_int("c", 0, 0, 0).unwrap(), 3);
    assert_eq!(cf.get_int("d", 0, 0, 0).unwrap(), 12);
    assert_eq!(cf.get_int("h", 0, 0, 0).unwrap(), i32::MAX);
    assert_eq!(cf.get_int("unset", 5, 0, 0).unwrap(), 5);
    for (name, value) in [("e", "12x"), ("f", "x"), ("g", "2147483648"), ("i", "0x10")] {
        assert_eq!(
            cf.get_int(name, 0, 0, 0).unwrap_err().reason,
            format!("/etc/postfix/t.cf: bad numerical configuration: {name} = {value}")
        );
    }
    // an empty value is set, and not a number
    assert_eq!(cf.get_int("j", 0, 0, 0).unwrap_err().reason, "/etc/postfix/t.cf: bad numerical configuration: j = ");
}

#[test]
fn integer_ranges_apply_to_values_and_defaults() {
    let cf = file("a = 42\nb = -7\n");
    assert_eq!(cf.get_int("a", 0, 1, 10).unwrap_err().reason, "/etc/postfix/t.cf: invalid a parameter value 42 > 10");
    assert_eq!(cf.get_int("b", 0, 1, 0).unwrap_err().reason, "/etc/postfix/t.cf: invalid b parameter value -7 < 1");
    assert_eq!(
        cf.get_int("unset", 0, 1, 0).unwrap_err().reason,
        "/etc/postfix/t.cf: invalid unset parameter value 0 < 1"
    );
    // 0 means no limit: negative values pass a min of 0
    assert_eq!(cf.get_int("b", 0, 0, 0).unwrap(), -7);
}

#[test]
fn booleans_are_yes_or_no_in_any_case() {
    let cf = file("a = yes\nb = NO\nc = Yes\nd = true\ne = 1\n");
    assert!(cf.get_bool("a", false).unwrap());
    assert!(!cf.get_bool("b", true).unwrap());
    assert!(cf.get_bool("c", false).unwrap());
    assert!(cf.get_bool("unset", true).unwrap());
    assert_eq!(cf.get_bool("d", false).unwrap_err().reason, "/etc/postfix/t.cf: bad boolean configuration: d = true");
    assert_eq!(cf.get_bool("e", false).unwrap_err().reason, "/etc/postfix/t.cf: bad boolean configuration: e = 1");
}

#[test]
fn main_cf_form_reads_prefixed_parameters_expanded() {
    let params = main_cf(
        "dir = /var/db\n\
         sqlitecon_dbpath = $dir/x.sqlite\n\
         sqlitecon_query = SELECT '$$x'\n\
         sqlitecon_expansion_limit = 3\n\
         sqlitecon_bad = 3x\n\
         sqlitecon_flag = no\n\
         sqlitecon_empty =\n",
    );
    let cf = Cf::open("sqlitecon", &params).unwrap();
    assert_eq!(cf.get_str("dbpath", Some(""), 1, 0).unwrap().as_deref(), Some("/var/db/x.sqlite"));
    assert_eq!(cf.get_str("query", None, 0, 0).unwrap().as_deref(), Some("SELECT '$x'"));
    assert_eq!(cf.get_str("empty", None, 0, 0).unwrap(), None);
    assert_eq!(cf.get_str("unset", Some("%s"), 1, 0).unwrap().as_deref(), Some("%s"));
    // defaults are expanded like main.cf values
    assert_eq!(cf.get_str("unset", Some("$dir"), 1, 0).unwrap().as_deref(), Some("/var/db"));
    assert_eq!(cf.get_int("expansion_limit", 0, 0, 0).unwrap(), 3);
    assert!(!cf.get_bool("flag", true).unwrap());
    // messages name the main.cf parameter, without a file
    assert_eq!(cf.get_int("bad", 0, 0, 0).unwrap_err().reason, "bad numerical configuration: sqlitecon_bad = 3x");
    assert_eq!(
        cf.get_int("expansion_limit", 0, 5, 0).unwrap_err().reason,
        "invalid sqlitecon_expansion_limit parameter value 3 < 5"
    );
    assert_eq!(cf.get_str("table", None, 1, 0).unwrap_err().reason, "bad string length 0 < 1: sqlitecon_table = ");
    assert_eq!(
        cf.get_bool("query", true).unwrap_err().reason,
        "bad boolean configuration: sqlitecon_query = SELECT '$x'"
    );
    // nothing to list: any parameter may belong to anything
    assert!(cf.unused().is_empty());
}

#[test]
fn an_inline_looking_name_is_a_main_cf_prefix_as_in_3_7() {
    let params = main_cf("");
    let cf = Cf::open("{dbpath=/x}", &params).unwrap();
    assert_eq!(
        cf.get_str("dbpath", Some(""), 1, 0).unwrap_err().reason,
        "bad string length 0 < 1: {dbpath=/x}_dbpath = "
    );
}

#[test]
fn file_names_start_with_slash_or_dot() {
    assert!(is_file_name("/etc/postfix/x.cf"));
    assert!(is_file_name("./x.cf"));
    assert!(is_file_name(".x"));
    assert!(!is_file_name("x.cf"));
    assert!(!is_file_name(""));
}

#[test]
fn unused_parameters_are_listed_not_refused() {
    let cf = file("dbpath = /x\nquery = q\nhosts = h\nuser = u\n");
    cf.get_str("dbpath", None, 0, 0).unwrap();
    cf.get_str("query", None, 0, 0).unwrap();
    cf.get_str("result_format", Some("%s"), 1, 0).unwrap();
    assert_eq!(cf.unused(), ["hosts", "user"]);
}

#[test]
fn unused_parameters_are_collected_as_configurations_drop() {
    let ((), found) = collect_unused(|| {
        let cf = file("query = q\nhost = typo\n");
        cf.get_str("query", None, 0, 0).unwrap();
    });
    assert_eq!(found, [(CF.to_string(), vec!["host".to_string()])]);
    // outside collect_unused() nothing is noted
    drop(file("host = typo\n"));
    let ((), found) = collect_unused(|| ());
    assert!(found.is_empty());
}

#[test]
fn files_are_read_from_disk_or_give_postfix_open_text() {
    let params = Params::default();
    let f = TempFile::new("cf", "dbpath = /x\n").backdated();
    let cf = Cf::open(f.name(), &params).unwrap();
    assert_eq!(cf.get_str("dbpath", None, 0, 0).unwrap().as_deref(), Some("/x"));
    let missing = format!("{}.missing", f.name());
    assert_eq!(Cf::open(&missing, &params).err().unwrap().reason, format!("open {missing}: No such file or directory"));
}

#[test]
fn a_file_written_just_now_is_read_once_it_settled() {
    let params = Params::default();
    let f = TempFile::new("cf-hot", "dbpath = /x\n");
    let start = std::time::Instant::now();
    let cf = Cf::open(f.name(), &params).unwrap();
    assert_eq!(cf.get_str("dbpath", None, 0, 0).unwrap().as_deref(), Some("/x"));
    assert!(start.elapsed() >= COOL_DOWN, "a hot file is read again after a pause");
}
