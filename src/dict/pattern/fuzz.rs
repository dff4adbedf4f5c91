//! The fuzz targets' way into the rule parsers and the set translator
//! (feature `fuzzing`). Each checks what must hold for any input: the rule
//! set and the literal prefilter never change an answer.

use super::engine::{Diag, Engine};
use super::pcre::Pcre;
use super::prefilter::memmem;
use super::regexp::Posix;
use super::rules::RuleTable;
use crate::dict::postmap_text::until_nul;
use crate::protocol::flags::{FOLD_FIX, NO_REGSUB};

/// Keys looked up in every table besides those the input brings.
const KEYS: &[&[u8]] = &[b"", b"a", b"user@example.com", b"Subject: hello", b"1.2.3.4", b"::1"];

/// At most this many keys from the input; subjects are cut to this length
/// (a long subject only slows backtracking engines down).
const MAX_KEYS: usize = 8;
const MAX_SUBJECT: usize = 256;

/// `rules \0 flags-byte key \0 key ...`: the table must answer every key
/// alike with its rule set and literal prefilter and without them.
fn rules<E: Engine>(data: &[u8]) {
    let (text, rest) = split_nul(data);
    let sel = rest.first().copied().unwrap_or(0);
    let flags = if sel & 1 != 0 { FOLD_FIX } else { 0 } | if sel & 2 != 0 { NO_REGSUB } else { 0 };
    let keys: Vec<&[u8]> = rest.get(1..).unwrap_or_default().split(|&b| b == 0).take(MAX_KEYS).collect();
    let keys = keys.into_iter().chain(KEYS.iter().copied()).map(|k| &k[..k.len().min(MAX_SUBJECT)]);
    let keys: Vec<(&[u8], bool)> = keys.flat_map(|k| [(k, false), (k, true)]).collect();
    // One load (building the set is most of the cost), asked with its set
    // and prefilter, then with the engines alone.
    let table = RuleTable::load(E::default(), "fuzz", text, flags, &mut Vec::new());
    let mut out = Vec::new();
    let with: Vec<Option<Vec<u8>>> =
        keys.iter().map(|&(key, fold)| table.lookup(key, fold, &mut out).then(|| out.clone())).collect();
    let table = table.engines_only();
    for (&(key, fold), want) in keys.iter().zip(&with) {
        let got = table.lookup(key, fold, &mut out).then(|| out.clone());
        assert_eq!(&got, want, "key {key:?} fold {fold}: engines alone / with the set and prefilter");
    }
}

pub(crate) fn regexp_rules(data: &[u8]) {
    if !glibc_blows_up(split_nul(data).0) {
        rules::<Posix>(data);
    }
}

/// glibc's regcomp copies a subexpression for each `+` or `{n,m}` applied
/// to it, so stacked or nested repeats (`x++++++++`, `((x{1,99}){1,99}){1,99}`)
/// grow the compiled pattern exponentially, in Postfix as here: a finding
/// of glibc's (with the administrator's own tables), skipped for the regexp
/// engine.
fn glibc_blows_up(pattern: &[u8]) -> bool {
    let count = |c| pattern.iter().filter(|&&b| b == c).count();
    let (plus, braces) = (count(b'+'), count(b'{'));
    braces > 1 || plus > 10 || braces == 1 && plus > 4
}

pub(crate) fn pcre_rules(data: &[u8]) {
    rules::<Pcre>(data);
}

/// `flags-byte pattern \0 subject`: the low bit picks the engine (regexp,
/// pcre), the others the flag letters. Whatever the real engine matches,
/// the set translation matches too and contains the required literal.
pub(crate) fn translate(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else { return };
    let (pattern, subject) = split_nul(rest);
    let subject = until_nul(subject);
    let subject = &subject[..subject.len().min(MAX_SUBJECT)];
    if sel & 1 == 0 {
        if glibc_blows_up(pattern) {
            return;
        }
        superset::<Posix>(pattern, sel >> 1, b"imx", subject);
    } else {
        superset::<Pcre>(pattern, sel >> 1, b"imsxAEU", subject);
    }
}

fn superset<E: Engine>(pattern: &[u8], sel: u8, letters: &[u8], subject: &[u8]) {
    use regex_automata::{hybrid::dfa::DFA, nfa::thompson, util::syntax, Input};
    let engine = E::default();
    let mut warnings = Vec::new();
    let mut options = E::DEFAULT_OPTIONS;
    for (i, &letter) in letters.iter().enumerate() {
        if sel & (1 << i) != 0 {
            E::flag(&mut options, letter, &mut Diag::collect(E::TYPE, "fuzz", 1, &mut warnings));
        }
    }
    let translated = E::set_pattern(pattern, options);
    let literal = E::prefilter(pattern, options);
    // Reading the translation as the rule set does (see dfa.rs).
    let set = match &translated {
        Some(t) => {
            let nfa = thompson::Compiler::new()
                .syntax(syntax::Config::new().unicode(false).utf8(false))
                .configure(
                    thompson::Config::new()
                        .utf8(false)
                        .which_captures(thompson::WhichCaptures::None)
                        .nfa_size_limit(Some(1 << 20)),
                )
                .build(t);
            match nfa {
                // A lazy DFA can be refused (its cache too small for a big NFA).
                Ok(nfa) => DFA::builder().build_from_nfa(nfa).ok(),
                Err(e) if e.size_limit().is_some() => None,
                Err(e) => panic!("translation {t:?} of {pattern:?} is no pattern: {e}"),
            }
        }
        None => None,
    };
    let mut diag = Diag::collect(E::TYPE, "fuzz", 1, &mut warnings);
    let Some((re, groups)) = engine.compile(pattern, options, false, &mut diag) else { return };
    let mut scratch = engine.scratch(groups + 1);
    let mut text = subject.to_vec();
    text.push(0);
    if engine.exec(&mut scratch, &re, &text, groups + 1) != Ok(true) {
        return;
    }
    if let Some(lit) = &literal {
        assert!(
            memmem(&subject.to_ascii_lowercase(), lit).is_some(),
            "{pattern:?} matches {subject:?} without its required literal {lit:?}"
        );
    }
    if let Some(dfa) = &set {
        let mut cache = dfa.create_cache();
        // A search the lazy DFA gives up on proves nothing either way.
        if let Ok(found) = dfa.try_search_fwd(&mut cache, &Input::new(subject)) {
            assert!(found.is_some(), "{pattern:?} matches {subject:?} but its translation {translated:?} does not");
        }
    }
}

/// The bytes before the first NUL and those after it.
fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(n) => (&data[..n], &data[n + 1..]),
        None => (data, &[]),
    }
}
