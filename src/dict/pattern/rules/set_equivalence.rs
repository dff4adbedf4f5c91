//! The rule set must not change any answer: the same table with and
//! without it, over many rule shapes and keys.

use super::RuleTable;
use crate::dict::pattern::dfa::SET_CHUNK;
use crate::dict::pattern::engine::Engine;
use crate::dict::pattern::parse::Op;
use crate::dict::pattern::pcre::Pcre;
use crate::dict::pattern::regexp::Posix;
use crate::dict::pattern::scratch::pool_size;

/// Pattern shapes (`{}` is replaced by a rule-dependent word); both
/// dialects unless marked.
const SHAPES: &[&str] = &[
    "/^(.*)@{}\\.example\\.com$/\tuser=$1",
    "/\\.{}\\.net$/\tREJECT",
    "/^Subject:.*{}/\tDISCARD",
    "/^{}[0-9]*@/\tOK",
    "/{}/i\tcase-sensitive",
    "/^{}$/\texact",
    "/({}|x{}y)+z?/\talt=$1",
    "/[[:alpha:]]+{}[[:digit:]]{1,3}/\tclass",
    "/[^a-z.]{}/\tnegated",
    "/[]{}-]+x/\tbracket-first",
    "/^a.{2}{}/m\tmultiline",
    "/{}\\$/\tdollar",
    "/{}(a|b)?(c){2,}$/\tq=$2",
    "/^[A-Z]{}/\tupper-range",
    "/\\b{}\\b/\tword",
    "/{}\\s+{}/\tspaces",
    "/\\w+{}\\W/\twordclass",
    "!/{}|[a-z0-9]/\tnegative",
    "/{}/\tplain",
    "/^.{}./\tdots",
    "/(^|,){}(,|$)/\tlist",
    "/\\.{}/\tescaped-dot",
    "/caf\u{e9}{}/\tlatin",
    "/{}[\u{e9}\u{c9}]/\tlatin-class",
    "/x[\\]{}]/\tbackslash-bracket",
    "/{}{2}/\tcounted",
    "/(a|)b{}/\tempty-alt",
    "/(a)\\1{}/\tbackref",
    "/[[:upper:]]{}/\tupper-class",
    "/[@-Z]{}/\tmixed-range",
    "/^{}(\\.|-)[0-9a-f]+$/\thex",
];
const REGEXP_ONLY: &[&str] =
    &["/{}/!/x{}/\tsecond", "/\\<{}\\>/\tbow-eow", "/{}/x\tbasic", "/a{}|b{}/\tbar", "/[[.a.]]{}/\tcollate"];
const PCRE_ONLY: &[&str] = &[
    "/^(?:{}|www)\\.(?<d>[^.]+)\\.\\w+$/\tnamed=$1",
    "/\\d+{}/\tdigits",
    "/{}/A\tanchored",
    "/^{}$/E\tendonly",
    "/^{}\\n?$/m\tnl",
    "/(?i){}/\tinline",
    "/{}(?=x)/\tlookahead",
    "/(?<!x){}/\tlookbehind",
    "/{}\\x41\\x{42}/\thex-escape",
    "/[\\d\\s]{}/\tclass-escapes",
    "/[^\\w.]{}/\tneg-class-escape",
    "/{}+?y/\tlazy",
    "/{}++y/\tpossessive",
    "/\\A{}\\z/\tAz",
    "/{}\\Z/\tZ",
    "/a {}/x\textended",
    "/[[:^alpha:]]{}/\tneg-posix",
    "/\\Q{}\\E/\tquoted",
    "/{}\\t/\ttab",
];
const WORDS: &[&str] = &["ab", "host", "Spam", "k1", "x", "q.z", "info", "9", "\u{e9}t\u{e9}", "Z"];

fn table(pcre: bool, n: usize) -> String {
    let extra = if pcre { PCRE_ONLY } else { REGEXP_ONLY };
    let shapes: Vec<&str> = SHAPES.iter().chain(extra.iter()).copied().collect();
    let mut t = String::new();
    for i in 0..n {
        let shape = shapes[i % shapes.len()];
        let word = word(i);
        if i % 37 == 5 {
            t.push_str(&format!("if /{}/\n", WORDS[i % WORDS.len()]));
        }
        t.push_str(&shape.replace("{}", &word));
        t.push_str(&format!(" r{i}\n"));
        if i % 37 == 9 {
            t.push_str("endif\n");
        }
    }
    t
}

/// The word of rule `i`: mostly unique, sometimes a common one.
fn word(i: usize) -> String {
    if i.is_multiple_of(23) {
        WORDS[i % WORDS.len()].to_string()
    } else {
        format!("{}{i}", WORDS[i % WORDS.len()])
    }
}

fn keys() -> Vec<Vec<u8>> {
    let parts: &[&[u8]] = &[
        b"ab",
        b"AB",
        b"host",
        b"@",
        b".example.com",
        b".net",
        b"Subject: ",
        b"spam",
        b"Spam",
        b"k1",
        b"x",
        b"y",
        b"z",
        b"q.z",
        b"info",
        b"9",
        b"12",
        b"\xc3\xa9t\xc3\xa9",
        b"\xe9",
        b"\xc9",
        b"\n",
        b"\r",
        b"\t",
        b" ",
        b"  ",
        b",",
        b"-",
        b".",
        b"$",
        b"\\",
        b"]",
        b"aa",
        b"c",
        b"cc",
        b"Z",
        b"_",
        b"www",
        b"0",
        b"1",
        b"2",
        b"caf",
        b"A",
        b"B",
        b"ff",
    ];
    let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
    let mut seed: u64 = 0x2545f4914f6cdd1d;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..4000 {
        let n = 1 + next() % 6;
        let mut k = Vec::new();
        let at = next() % (n + 1);
        for j in 0..n {
            if j == at {
                let w = word((next() % 420) as usize);
                k.extend_from_slice(if next() % 4 == 0 { w.to_uppercase() } else { w }.as_bytes());
            }
            k.extend_from_slice(parts[(next() % parts.len() as u64) as usize]);
            if next() % 9 == 0 {
                k.extend_from_slice(format!("{}", next() % 700).as_bytes());
            }
        }
        keys.push(k);
    }
    keys
}

fn check<E: Engine>(make: fn() -> E, pcre: bool) {
    let text = table(pcre, 400);
    let mut w = Vec::new();
    let fast = RuleTable::load(make(), "set", text.as_bytes(), 0, &mut w);
    let slow = RuleTable::load(make(), "set", text.as_bytes(), 0, &mut Vec::new()).without_set();
    // The set with only 8 of its patterns compiled at a time.
    let capped = RuleTable::load_capped(make(), "set", text.as_bytes(), 0, &mut Vec::new(), 8);
    let in_set = fast.set_len();
    assert!(fast.set.is_some() && in_set > 200, "{} rules in the set", in_set);
    assert_eq!(built(&capped), Some(vec![false; in_set.div_ceil(SET_CHUNK)]), "{} capped set lazy", E::TYPE);
    let outside = fast.rules.iter().zip(&fast.in_set).filter(|(r, &b)| !b && matches!(r.op, Op::Match { .. })).count();
    assert_eq!(capped.compiled_len(), outside);
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let mut hits = 0;
    let mut answers = std::collections::HashSet::new();
    for key in keys() {
        for fold in [false, true] {
            let x = fast.lookup(&key, fold, &mut a);
            let y = slow.lookup(&key, fold, &mut b);
            let z = capped.lookup(&key, fold, &mut c);
            assert_eq!(x, y, "{} key {:?} fold {fold}", E::TYPE, String::from_utf8_lossy(&key));
            assert_eq!(x, z, "{} capped, key {:?} fold {fold}", E::TYPE, String::from_utf8_lossy(&key));
            assert!(capped.compiled_len() <= outside + 8);
            if x {
                hits += 1;
                answers.insert(a.clone());
                assert_eq!(a, b, "{} key {:?} fold {fold}", E::TYPE, String::from_utf8_lossy(&key));
                assert_eq!(a, c, "{} capped, key {:?} fold {fold}", E::TYPE, String::from_utf8_lossy(&key));
            }
        }
    }
    println!(
        "{}: {} of {} rules in the set, {hits} hits, {} different answers",
        E::TYPE,
        in_set,
        fast.len(),
        answers.len()
    );
    assert!(hits > 1000 && answers.len() > 100);
}

/// Threads sharing one table (with the set, and capped so that they
/// compile and drop patterns under each other) get the answers that
/// the table without the set gives one lookup at a time.
fn shared<E: Engine>(pcre: bool) {
    let text = table(pcre, 400);
    let slow = RuleTable::load(E::default(), "set", text.as_bytes(), 0, &mut Vec::new()).without_set();
    let keys = keys();
    let expected: Vec<Option<Vec<u8>>> = keys
        .iter()
        .map(|k| {
            let mut out = Vec::new();
            slow.lookup(k, false, &mut out).then_some(out)
        })
        .collect();
    let fast = RuleTable::load(E::default(), "set", text.as_bytes(), 0, &mut Vec::new());
    let capped = RuleTable::load_capped(E::default(), "set", text.as_bytes(), 0, &mut Vec::new(), 8);
    for t in [&fast, &capped] {
        std::thread::scope(|scope| {
            for n in 0..4 {
                let (keys, expected) = (&keys, &expected);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    // Each thread in its own order, so that they meet on
                    // different rules.
                    for round in 0..2 {
                        for i in (0..keys.len()).map(|i| (i * (2 * n + 1) + round) % keys.len()) {
                            let got = t.lookup(&keys[i], false, &mut out).then(|| out.clone());
                            assert_eq!(got, expected[i], "{} key {:?}", E::TYPE, String::from_utf8_lossy(&keys[i]));
                        }
                    }
                });
            }
        });
        let made = t.pool.made();
        assert!(made >= 1 && made <= pool_size().min(4), "{made} buffer sets");
    }
    // Compiled: the rules outside the set and at most 8 of the set's.
    let outside = fast.rules.iter().zip(&fast.in_set).filter(|(r, &b)| !b && matches!(r.op, Op::Match { .. })).count();
    assert!(capped.compiled_len() <= outside + 8);
}

#[test]
fn shared_tables_give_same_answers() {
    shared::<Posix>(false);
    shared::<Pcre>(true);
}

/// Per group of the table's set: is its DFA built in full?
fn built<E: Engine>(t: &RuleTable<E>) -> Option<Vec<bool>> {
    t.set.as_ref().map(|s| s.chunks.iter().map(|c| c.dfa.is_built()).collect())
}

/// A table small enough for DFAs built at load gives the answers of
/// one without a set. (The 400 rules of `check` are too many to
/// determinize within the limit, so its set stays lazy; 16 are, too.)
fn check_built<E: Engine>(make: fn() -> E, pcre: bool) {
    let text = table(pcre, 12);
    let fast = RuleTable::load(make(), "set", text.as_bytes(), 0, &mut Vec::new());
    let slow = RuleTable::load(make(), "set", text.as_bytes(), 0, &mut Vec::new()).without_set();
    assert_eq!(built(&fast), Some(vec![true]), "{}: one group, built", E::TYPE);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    let mut hits = 0;
    for key in keys() {
        for fold in [false, true] {
            let x = fast.lookup(&key, fold, &mut a);
            assert_eq!(x, slow.lookup(&key, fold, &mut b), "{} key {:?}", E::TYPE, String::from_utf8_lossy(&key));
            if x {
                hits += 1;
                assert_eq!(a, b, "{} key {:?} fold {fold}", E::TYPE, String::from_utf8_lossy(&key));
            }
        }
    }
    assert!(hits > 50, "{}: {hits} hits", E::TYPE);
}

#[test]
fn regexp_set_gives_same_answers() {
    check(Posix::default, false);
}

#[test]
fn built_sets_give_same_answers() {
    check_built(Posix::default, false);
    check_built(Pcre::default, true);
}

#[test]
fn pcre_set_gives_same_answers() {
    check(Pcre::default, true);
}

/// Rule files a byte or two away from valid ones: loading never
/// panics, and the rule set and the rules one by one (and capped) still
/// give the same answers, whatever the set compiler made of the damage.
fn mutated<E: Engine>(make: fn() -> E, pcre: bool) {
    let base = if pcre {
        "# mutated\n/^user1@/ OK one\nif /example\\.com$/\n!/^root@/\tREJECT no root\n\
         /^(a+)(b*)@(.*)$/ 250 $1-$2-$3\nendif\n/x[0-9]{2,}/i DUNNO\n/\\d+\\s?z/x digits\n\
         /^[[:alpha:]]+$/ letters\n/(?<w>q)u/ named\n"
    } else {
        "# mutated\n/^user1@/ OK one\nif /example\\.com$/\n!/^root@/\tREJECT no root\n\
         /^(a+)(b*)@(.*)$/ 250 $1-$2-$3\nendif\n/x[0-9]{2,}/i DUNNO\n/[^a-z.]+z/ punct\n\
         /^[[:alpha:]]+$/ letters\n/(a|b)?(c){2,}$/ q=$2\n"
    };
    let keys: &[&[u8]] = &[
        b"user1@example.com",
        b"aab@example.com",
        b"root@example.com",
        b"X12",
        b"letters",
        b"quz 12 z",
        b"acc",
        b"",
        b"\xff\x00@",
    ];
    let mut seed = 0x5851_f42d_4c95_7f2du64 ^ pcre as u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let edits = b"/\\()[]{}|*+?^$!#\t\n ai0";
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    let (mut hits, mut warned) = (0, 0);
    for _ in 0..600 {
        let mut text = base.as_bytes().to_vec();
        for _ in 0..1 + next() % 3 {
            let at = (next() as usize) % (text.len() + 1);
            match next() % 3 {
                0 if at < text.len() => text[at] = edits[(next() as usize) % edits.len()],
                1 if at < text.len() => {
                    text.remove(at);
                }
                _ => text.insert(at, edits[(next() as usize) % edits.len()]),
            }
        }
        let mut warnings = Vec::new();
        let fast = RuleTable::load(make(), "mutated", &text, 0, &mut warnings);
        let slow = RuleTable::load(make(), "mutated", &text, 0, &mut Vec::new()).without_set();
        let capped = RuleTable::load_capped(make(), "mutated", &text, 0, &mut Vec::new(), 2);
        warned += usize::from(!warnings.is_empty());
        for key in keys {
            for fold in [false, true] {
                let x = fast.lookup(key, fold, &mut a).then(|| a.clone());
                let y = slow.lookup(key, fold, &mut b).then(|| b.clone());
                let z = capped.lookup(key, fold, &mut c).then(|| c.clone());
                let table = String::from_utf8_lossy(&text);
                assert_eq!(x, y, "{} key {key:?} fold {fold}, table:\n{table}", E::TYPE);
                assert_eq!(x, z, "{} capped, key {key:?} fold {fold}, table:\n{table}", E::TYPE);
                hits += usize::from(x.is_some());
            }
        }
    }
    // Damaged enough to be refused in part, intact enough to answer.
    assert!(warned > 100 && hits > 3000, "{} tables warned, {hits} hits", E::TYPE);
}

#[test]
fn mutated_rule_files_load_and_agree_with_and_without_the_set() {
    mutated::<Posix>(Posix::default, false);
    mutated::<Pcre>(Pcre::default, true);
}

/// On an event loop (NoWait) a lookup that finds every buffer set lent to
/// other threads gives up at once instead of waiting for one; elsewhere it
/// waits, and both answer once a set is free.
#[test]
fn a_lookup_under_no_wait_does_not_wait_for_a_buffer_set() {
    let t = RuleTable::load(Posix, "set", b"/^a/ A\n", 0, &mut Vec::new());
    let mut out = Vec::new();
    let held: Vec<_> = (0..pool_size()).map(|_| t.pool.lend(|| t.scratch())).collect();
    {
        let _no_wait = crate::sync::NoWait::begin();
        assert_eq!(t.lookup_unless_busy(b"abc", false, &mut out), None, "every set is lent");
    }
    drop(held);
    let _no_wait = crate::sync::NoWait::begin();
    assert_eq!(t.lookup_unless_busy(b"abc", false, &mut out), Some(true));
    assert_eq!(out, b"A");
}
