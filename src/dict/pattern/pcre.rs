//! `pcre:/path` and `pcre:{ {rule}, ... }`: PCRE2 rules (Postfix
//! dict_pcre.c built with PCRE2, pcre_table(5)).
//!
//! Rule syntax, warnings and evaluation are shared (see [`crate::dict::pattern`]);
//! this file has what is pcre's own: the flags `i` (CASELESS, on by
//! default), `m` (MULTILINE), `s` (DOTALL, on by default), `x` (EXTENDED),
//! `A` (ANCHORED), `E` (DOLLAR_ENDONLY), `U` (UNGREEDY), and `X`, which
//! PCRE2 does not have: Postfix logs `ignoring obsolete regexp option "X"`
//! and keeps the rule. Compile errors read `error in regex at offset N:
//! <PCRE2 message>`.

use super::engine::{Diag, Dialect, Engine};
use super::translate::{translate, SetSyntax};
use super::{prefilter, rules};
use crate::dict::{Dict, OpenError, OpenRequest};
use crate::sys::regex::{
    pcre2_error_message, Pcre2Code, Pcre2MatchData, PCRE2_ANCHORED, PCRE2_CASELESS, PCRE2_DOLLAR_ENDONLY, PCRE2_DOTALL,
    PCRE2_ERROR_NOMATCH, PCRE2_EXTENDED, PCRE2_MULTILINE, PCRE2_UNGREEDY,
};

/// The PCRE2 engine.
#[derive(Default)]
pub(crate) struct Pcre;

/// A lookup's match data, big enough for every rule of its table, and the
/// return code of its last match.
pub(crate) struct Matches {
    md: Pcre2MatchData,
    rc: i32,
}

impl Engine for Pcre {
    type Regex = Pcre2Code;
    type Scratch = Matches;
    const TYPE: &'static str = "pcre";
    const DEFAULT_OPTIONS: u32 = PCRE2_CASELESS | PCRE2_DOTALL;
    const SECOND_PATTERN: bool = false;
    const TRAILING_BACKSLASH_CLOSES: bool = false;
    const UNCLOSED_VERB: &'static str = "ignoring";
    const OUT_OF_RANGE_BELOW_ONE: &'static str = "out of range";
    /// Compiled PCRE2 code does not grow with use: keep every pattern.
    const RESIDENT_SET_RULES: usize = usize::MAX;

    fn flag(options: &mut u32, letter: u8, diag: &mut Diag) -> bool {
        match letter {
            b'i' => *options ^= PCRE2_CASELESS,
            b'm' => *options ^= PCRE2_MULTILINE,
            b's' => *options ^= PCRE2_DOTALL,
            b'x' => *options ^= PCRE2_EXTENDED,
            b'A' => *options ^= PCRE2_ANCHORED,
            b'E' => *options ^= PCRE2_DOLLAR_ENDONLY,
            b'U' => *options ^= PCRE2_UNGREEDY,
            b'X' => diag.warn("ignoring obsolete regexp option \"X\""),
            _ => return false,
        }
        true
    }

    fn compile(&self, pattern: &[u8], options: u32, _captures: bool, diag: &mut Diag) -> Option<(Pcre2Code, usize)> {
        match Pcre2Code::new(pattern, options) {
            Ok(code) => {
                let groups = code.capture_count() as usize;
                Some((code, groups))
            }
            Err((code, offset)) => {
                diag.warn(format_args!("error in regex at offset {offset}: {}", pcre2_error_message(code)));
                None
            }
        }
    }

    /// Every match needs room for all groups of its pattern, or PCRE2
    /// reports "ovector too small".
    fn scratch(&self, groups: usize) -> Matches {
        Matches { md: Pcre2MatchData::new(u32::try_from(groups).unwrap_or(u32::MAX)), rc: 0 }
    }

    fn exec(&self, m: &mut Matches, re: &Pcre2Code, subject: &[u8], _groups: usize) -> Result<bool, String> {
        let text = subject.strip_suffix(&[0]).unwrap_or(subject);
        m.rc = re.matches(text, &mut m.md);
        match m.rc {
            rc if rc > 0 => Ok(true),
            PCRE2_ERROR_NOMATCH => Ok(false),
            rc => Err(pcre2_error_message(rc)),
        }
    }

    fn group(&self, m: &Matches, n: usize) -> Option<(usize, usize)> {
        m.md.group(m.rc, n)
    }

    fn prefilter(pattern: &[u8], options: u32) -> Option<Vec<u8>> {
        if options & PCRE2_EXTENDED != 0 {
            return None; // whitespace and comments: not scanned
        }
        prefilter::required_literal(pattern, Dialect::Pcre)
    }

    /// Not with EXTENDED (whitespace and comments are not parsed); CASELESS
    /// folds ASCII only (PCRE2's built-in tables, no UTF); MULTILINE, DOTALL,
    /// DOLLAR_ENDONLY and UNGREEDY do not widen the translation, which reads
    /// `.`, `^` and `$` in their widest sense; ANCHORED becomes `\A`.
    fn set_pattern(pattern: &[u8], options: u32) -> Option<String> {
        if options & PCRE2_EXTENDED != 0 {
            return None;
        }
        translate(
            pattern,
            SetSyntax {
                dialect: Dialect::Pcre,
                icase: options & PCRE2_CASELESS != 0,
                anchored: options & PCRE2_ANCHORED != 0,
                anchors: newline_is_lf(),
            },
        )
    }
}

/// Whether PCRE2's default newline convention is LF, so that `^` and `$`
/// in multiline mode mean exactly "after/before `\n`" (else they are
/// dropped from the set translation).
fn newline_is_lf() -> bool {
    static LF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *LF.get_or_init(crate::sys::regex::pcre2_default_newline_is_lf)
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    rules::open_table::<Pcre>(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::pattern::rules::RuleTable;
    use crate::dict::Mode;
    use crate::protocol::flags::{FOLD_MUL, NO_REGSUB, PATTERN};

    fn open_with(name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
        let params = Params::default();
        open(&OpenRequest { type_name: "pcre", name, mode, flags, params: &params })
    }

    fn get(d: &mut Box<dyn Dict>, key: &str, flags: u32) -> Option<String> {
        let mut out = Vec::new();
        d.lookup(key.as_bytes(), flags, &mut out).unwrap().then(|| String::from_utf8(out).unwrap())
    }

    fn warnings(text: &str, flags: u32) -> Vec<String> {
        let mut w = Vec::new();
        RuleTable::load(Pcre, "/etc/p", text.as_bytes(), flags, &mut w);
        w
    }

    #[test]
    fn flags_and_lookups() {
        let mut d = open_with(
            "{ {/^(.*)@example\\.com$/ user=$1}, {/^(a+)(.*)$/U lazy=$1,$2}, {/^B/A anchored}, {/^end$/E endonly} }",
            Mode::ReadOnly,
            0,
        )
        .unwrap();
        assert_eq!(d.flags(), PATTERN);
        assert_eq!(get(&mut d, "Joe@EXAMPLE.com", 0).as_deref(), Some("user=Joe"));
        assert_eq!(get(&mut d, "Joe@EXAMPLE.com", FOLD_MUL).as_deref(), Some("user=joe"));
        assert_eq!(get(&mut d, "aaab", 0).as_deref(), Some("lazy=a,aab"));
        assert_eq!(get(&mut d, "bx", 0).as_deref(), Some("anchored"));
        assert_eq!(get(&mut d, "end", 0).as_deref(), Some("endonly"));
        assert_eq!(get(&mut d, "end\n", 0), None);
        let err = open_with("{ {/a/ b} }", Mode::ReadWrite, 0).err().unwrap();
        assert_eq!(err.reason, "pcre:{ {/a/ b} } map requires O_RDONLY access mode");
        let err = open_with("/nonexistent/pcre/table", Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, "open /nonexistent/pcre/table: No such file or directory");
    }

    #[test]
    fn warning_texts() {
        let m = "pcre map /etc/p";
        assert_eq!(
            warnings("/a(/ x\n", 0),
            vec![format!("{m}, line 1: error in regex at offset 2: missing closing parenthesis")]
        );
        assert_eq!(warnings("/a/X x\n", 0), vec![format!("{m}, line 1: ignoring obsolete regexp option \"X\"")]);
        assert_eq!(
            warnings("/a x\n", 0),
            vec![format!("{m}, line 1: no closing regexp delimiter \"/\": ignoring this rule")]
        );
        assert_eq!(
            warnings("/(a)/ $1\n", NO_REGSUB),
            vec![format!("{m}, line 1: regular expression substitution is not allowed: skipping this rule")]
        );
        assert_eq!(
            warnings("/(a)/ $0\n", 0),
            vec![
                format!("{m}, line 1: out of range replacement index \"0\""),
                format!("{m}, line 1: bad replacement syntax: skipping this rule")
            ]
        );
        assert_eq!(
            warnings("/a/!/b/ x\n", 0),
            vec![format!("{m}, line 1: unknown regexp option \"!\": skipping this rule")]
        );
    }
}
