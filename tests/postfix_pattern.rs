//! Differential tests of the rule-file tables against Postfix's own
//! `postmap -q - TYPE:FILE`: our regexp, pcre and cidr tables, opened as
//! the daemon opens them, give the same answer for every key and log the
//! same warnings. (The unit tests under src/dict/pattern check our answers
//! against values written in the tests and need no Postfix.)

mod common;

/// The cidr tables' tests.
#[path = "postfix_pattern/cidr.rs"]
mod cidr;

use common::TempDir;
use proxymap::config::Params;
use proxymap::dict::{registry, Dict, Mode, OpenRequest};
use std::cell::RefCell;
use std::io::Write;
use std::process::{Command, Stdio};

/// The flags `postmap -q` opens tables with (postmap.c: DUP_WARN |
/// FOLD_FIX | UTF8_REQUEST, plus LOCK for queries). FOLD_FIX does not
/// fold pattern tables; only FOLD_MUL does.
const POSTMAP_FLAGS: u32 = 1 | 1 << 14 | 1 << 19 | 1 << 6;

type Answers = Vec<(String, String)>;

thread_local! {
    /// The warnings logged on this thread while [`open_logged`] runs.
    static LOGGED: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// Keeps the warnings a table logs at open (the tests run on many threads:
/// each collects its own).
struct Capture;

impl log::Log for Capture {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.level() == log::Level::Warn
    }

    fn log(&self, record: &log::Record) {
        if record.level() == log::Level::Warn {
            LOGGED.with(|l| l.borrow_mut().as_mut().map(|v| v.push(record.args().to_string())));
        }
    }

    fn flush(&self) {}
}

/// Open `type_name:name` as the daemon does; the table and the warnings it
/// logged.
fn open_logged(type_name: &str, name: &str, flags: u32) -> (Box<dyn Dict>, Vec<String>) {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("no other logger");
        log::set_max_level(log::LevelFilter::Warn);
    });
    LOGGED.with(|l| *l.borrow_mut() = Some(Vec::new()));
    let params = Params::default();
    let req = OpenRequest { type_name, name, mode: Mode::ReadOnly, flags, params: &params };
    let dict = registry::open(&req).unwrap_or_else(|e| panic!("open {type_name}:{name}: {}", e.reason));
    let warnings = LOGGED.with(|l| l.borrow_mut().take()).unwrap_or_default();
    (dict, warnings)
}

/// Run `postmap -c DIR/config -q - TABLE` with `keys` on stdin: the answers
/// in order and the warnings it logged (but the query-time complaints about
/// empty results, which are postmap's own).
fn postmap(dir: &TempDir, table: &str, keys: &[String]) -> (Answers, Vec<String>) {
    let config = dir.path().join("config");
    std::fs::create_dir_all(&config).unwrap();
    let main_cf = config.join("main.cf");
    std::fs::write(&main_cf, "").unwrap();
    // A just-written main.cf makes Postfix re-read it until it is a second old.
    std::fs::File::options()
        .write(true)
        .open(&main_cf)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(3600))
        .unwrap();
    let mut child = match Command::new("postmap")
        .arg("-c")
        .arg(&config)
        .args(["-q", "-", table])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => panic!("cannot run postmap ({e}): run scripts/install-test-deps.sh to install Postfix"),
    };
    let mut input = String::new();
    for k in keys {
        input.push_str(k);
        input.push('\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)) && !stderr.contains("fatal"), "postmap failed: {stderr}");
    let answers = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let warnings = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("postmap: warning: "))
        .filter(|l| !l.contains("empty string result is not allowed") && !l.contains("should return NO RESULT"))
        .map(str::to_string)
        .collect();
    (answers, warnings)
}

// ---------------------------------------------------------------------------
// regexp and pcre
// ---------------------------------------------------------------------------

/// Our answers and open-time warnings for the `ty` table in `file`.
fn ours(ty: &str, file: &str, keys: &[String]) -> (Answers, Vec<String>) {
    let (d, warnings) = open_logged(ty, file, POSTMAP_FLAGS);
    let mut answers = Vec::new();
    let mut out = Vec::new();
    for k in keys {
        if d.lookup(k.as_bytes(), POSTMAP_FLAGS, &mut out).unwrap() {
            answers.push((k.clone(), String::from_utf8(out.clone()).unwrap()));
        }
    }
    (answers, warnings)
}

fn compare(ty: &str, table: &str, keys: &[String]) {
    let dir = TempDir::new("pattern-diff");
    let file = dir.write(&format!("table.{ty}"), table.as_bytes());
    let file = file.to_str().unwrap();
    let expected = postmap(&dir, &format!("{ty}:{file}"), keys);
    let got = ours(ty, file, keys);
    assert_eq!(got.1, expected.1, "{ty} warnings differ for table:\n{table}");
    for (e, g) in expected.0.iter().zip(got.0.iter()) {
        assert_eq!(g, e, "{ty} answers differ for table:\n{table}");
    }
    assert_eq!(
        got.0.len(),
        expected.0.len(),
        "{ty} hit counts differ for table:\n{table}\n{:?}\n{:?}",
        got.0,
        expected.0
    );
    assert!(!expected.0.is_empty(), "the test table should match something");
}

/// A few hundred keys: words, addresses, header-like strings, tricky
/// characters, upper/lower case variants.
fn keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "",
        "a",
        "b",
        "x",
        "y",
        "yyy",
        "xxyy",
        "yyyxx",
        "xy",
        "aaa",
        "AAA",
        "abc",
        "ABC",
        "aBc",
        "abcabc",
        "user@example.com",
        "User@Example.COM",
        "joe@sub.example.com",
        "joe@example.org",
        "postmaster@example.com",
        "root",
        "root@localhost",
        "MAILER-DAEMON",
        "a.b.c",
        "a+b",
        "a$b",
        "$",
        "$$",
        "100",
        "007",
        "x/y",
        "x\\y",
        "Subject: hello",
        "Subject: FREE money",
        "From: spammer@evil.example",
        "To: <joe@example.com>",
        "Received: from mail.example.com (mail.example.com [192.0.2.1])",
        "192.0.2.1",
        "[192.0.2.1]",
        "2001:db8::1",
        "foo bar",
        "foo  bar",
        "end$",
        "^start",
        "caf\u{e9}",
        "CAF\u{c9}",
        "\u{e9}t\u{e9}",
        "zz",
        "zzz",
        "zzzz",
        "if",
        "endif",
        "ENDIF",
        "iffy",
        "neg",
        "negative",
        "nothing here",
        "word",
        "words",
        "sword",
        "The Word",
        "ab",
        "aab",
        "abb",
        "abab",
        "ba",
        "bab",
        "q",
        "qq",
        "line1\\nline2",
        "...",
        ".",
        "-",
        "--",
        "a-b",
        "a_b",
        "A_B",
        "ununu",
        "unx",
        "xun",
        "dotall",
        "multi",
        "ANCHOR",
        "anchor",
        "xanchor",
        "greedy",
        "greeeedy",
        "k1",
        "k12",
        "k123",
        "kk",
        "%",
        "%%",
        "a%b",
        "bnotc",
        "bc",
        "cb",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let locals = ["joe", "Joe", "info", "no-reply", "x.y", "a+tag"];
    let domains = ["example.com", "EXAMPLE.COM", "sub.example.com", "example.net", "evil.example", "localhost"];
    for l in locals {
        for d in domains {
            keys.push(format!("{l}@{d}"));
        }
    }
    for n in 0..40 {
        keys.push(format!("item{n}"));
        keys.push("y".repeat(n % 7) + &"x".repeat(n % 5));
        keys.push(format!("k{}v{}", "ab".repeat(n % 4), n));
    }
    keys
}

/// Rules both types accept, with the same meaning.
const COMMON: &str = r#"# comment
/^(x*|y+)$/	longest=<$1>
/(x*|y+)/	first=<$1>
/^(.*)@(sub\.)?example\.com$/	local=$1 sub=${2} again=$(1) dollar=$$ end
/^root(@localhost)?$/	root-rule
!/@/	no-at
/^Subject: (.*)FREE/	free=[$1]
/^(k)(1)?(2)?(3)?$/	$1|$2|$3|$4
if /^item/
/^item1/	item-one
if !/5/
/^item([0-9]*)$/	item=$1
endif
/item/	item-with-5
endif
IF /^[a-z]{2}$/
/b/	two-with-b
ENDIF
/^abc$/	exact-abc-caseless
/^ABC$/i	case-sensitive-ABC
/^aBc$/ii	twice-toggled
#delims#	hash-delim
|^x/y$|	pipe-delim-with-slash
/^x\/y$/	escaped-slash
/^end\$$/	literal-dollar
/foo +bar/	spaces
/^[[:alpha:]]+[[:digit:]]+$/	alnum-class
/^(a|ab)(c|bcd)?$/	alt=$1,$2
/caf./	cafe-dot
/^greee*dy$/	greedy
/^(a)(b)?(a)?(b)?$/	optional=<$2><$4>
/^\[(.*)\]$/	bracketed=$1
/%/	percent
/^word$/m	multiline-word
/unused/
/^k(a|b)+/	kab
/^ba/	BA
/^--?$/	dash
/^[.]+$/	dots
"#;

/// Bad lines mixed with good ones (both types).
const BAD: &str = r#"/(unclosed/	x
/a(b)/	$2
!/neg(x)/	$1
/nope/	$a$b
/trunc/	${1
/emp/	$
/(big)/	$4294967297
/(huge)/	$99999999999999999999
/(zero)/	$00
/good/q	bad-flag
/noclose
endif
/b/	b-rule
if /zz/
/zzz/	zzz-inner
if /zzzz/
/zzzz/	deep
endif
unknown request
/x/	x-rule
endif extra
if /nevermatch/ extra text
/a/	never
endif
if /q/
/^qq$/	qq-in-open-if
"#;

#[test]
fn regexp_matches_postmap() {
    let keys = keys();
    compare("regexp", COMMON, &keys);
    compare("regexp", BAD, &keys);
    compare(
        "regexp",
        "/b/!/c/\tbnotc\n/^a/i!/b/\tanotb\n!/a/!/b/\tneither-a-nor-b-no\n/^k1\\\n/\\(x\\)\\1/x\tbasic=$1\n/x*|y+/\tfinal\n",
        &keys,
    );
    compare("regexp", "/^(.*)$/\t$1\n", &keys);
    compare("regexp", "/^a/\tfirst\n/^a/m\tsecond\n  indented continues\n/unused/ $2\n", &keys);
}

#[test]
fn pcre_matches_postmap() {
    let keys = keys();
    compare("pcre", COMMON, &keys);
    compare("pcre", BAD, &keys);
    compare(
        "pcre",
        concat!(
            "/^(?:joe|info)@(?<dom>[^.]+)\\.(\\w+)$/\tnamed=$1.$2\n",
            "/anchor/A\tanchored\n",
            "/^end$/E\tendonly\n",
            "/^(gre+)(.*)$/U\tungreedy=$1+$2\n",
            "/^(gre+)(.*)$/\tgreedy=$1+$2\n",
            "/^a b c $/x\textended\n",
            "/x/X\tobsolete-X\n",
            "/y/!/z/\tno-legacy\n",
            "/^\\d+$/\tdigits\n",
            "/^k(?=1)/\tlookahead\n",
            "/^(a)(?:b)?(c)?/\tnc=$1$2\n",
            "/(\\w+)\\s+(\\w+)/\tswap=$2 $1\n",
            "/caf\\x{e9}|CAF/\thex\n",
            "/(a|ab)(c|bcd)?/\tperl-alt=$1,$2\n",
            "/(*ACCEPT)/\taccept\n",
        ),
        &keys,
    );
    compare("pcre", "/^(.*)$/\t$1\n", &keys);
}
