//! One logical line of a regexp or pcre table: `/pattern/flags result`,
//! `!/pattern/`, regexp's `/p1/!/p2/`, `if` and `endif`; the result
//! templates (`$1`, `${n}`, `$(n)`, `$$`); Postfix's warning for each kind
//! of bad line (the rest of the table is used).

use super::engine::{Diag, Engine};
use crate::dict::postmap_text::{self, is_space, lossy};
use crate::protocol::flags::{NO_REGSUB, SRC_RHS_IS_FILE};

/// A warning about the line being parsed (see [`Diag::warn`]).
macro_rules! warn {
    ($diag:expr, $($arg:tt)*) => {
        $diag.warn(format_args!($($arg)*))
    };
}

/// One piece of a result template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    Text(Vec<u8>),
    Group(usize),
}

/// A pattern with its compiled form and the literal prefilter.
pub(super) struct Cond<R> {
    /// None only for a rule-set pattern that is not resident just now.
    pub(super) re: Option<R>,
    pub(super) positive: bool,
    /// Lowercased ASCII text that every subject matching `re` contains
    /// (ASCII case-insensitively); only for positive conditions.
    pub(super) literal: Option<Vec<u8>>,
    /// The rule-set translation (positive conditions only), until load
    /// builds the set.
    pub(super) set: Option<String>,
    /// What compiles `re` again: kept for rules in the set.
    pub(super) source: Option<Box<PatternSource>>,
}

/// A pattern as compiled at load.
pub(super) struct PatternSource {
    pub(super) text: Box<[u8]>,
    pub(super) options: u32,
    pub(super) captures: bool,
}

pub(super) enum Op<R> {
    Match { first: Cond<R>, second: Option<Cond<R>>, result: Vec<Piece>, max_sub: usize },
    If { cond: Cond<R>, endif: Option<usize> },
    Endif,
}

pub(super) struct Rule<R> {
    pub(super) line: usize,
    pub(super) op: Op<R>,
}

/// A pattern as written: text, options, polarity.
struct RawPattern<'a> {
    text: &'a [u8],
    options: u32,
    positive: bool,
}

fn skip_space(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    &s[start..]
}

/// `strncasecmp(p, word, len) == 0 && !ISALNUM(p[len])`.
fn starts_with_word(p: &[u8], word: &[u8]) -> bool {
    p.len() >= word.len()
        && p[..word.len()].eq_ignore_ascii_case(word)
        && !p.get(word.len()).is_some_and(u8::is_ascii_alphanumeric)
}

/// Parse and compile one logical line (text trimmed, non-empty); `groups`
/// grows to the most groups (group 0 included) of a compiled pattern.
pub(super) fn parse_line<E: Engine>(
    engine: &E,
    diag: &mut Diag,
    p: &[u8],
    nesting: usize,
    flags: u32,
    groups: &mut usize,
) -> Option<Op<E::Regex>> {
    let mut compile = |pat: &RawPattern, captures: bool, diag: &mut Diag| {
        let (re, n) = engine.compile(pat.text, pat.options, captures, diag)?;
        *groups = (*groups).max(n + 1);
        Some((re, n))
    };
    if !p[0].is_ascii_alphanumeric() {
        let (first, rest) = get_pattern::<E>(diag, p)?;
        let (second, rest) = if E::SECOND_PATTERN && rest.first() == Some(&b'!') {
            let (pat, rest) = get_pattern::<E>(diag, rest)?;
            (Some(pat), rest)
        } else {
            (None, rest)
        };
        let mut replacement = skip_space(rest);
        if replacement.is_empty() {
            warn!(diag, "no replacement text: using empty string");
        }
        let encoded;
        if flags & SRC_RHS_IS_FILE != 0 {
            match postmap_text::file_to_base64(replacement) {
                Ok(b64) => {
                    encoded = b64;
                    replacement = &encoded;
                }
                Err(err) => {
                    warn!(diag, "{err}: skipping this rule");
                    return None;
                }
            }
        }
        let Some((result, max_sub)) = parse_template::<E>(diag, replacement) else {
            warn!(diag, "bad replacement syntax: skipping this rule");
            return None;
        };
        if max_sub > 0 && !first.positive {
            warn!(diag, "$number found in negative match replacement text: skipping this rule");
            return None;
        }
        if max_sub > 0 && flags & NO_REGSUB != 0 {
            warn!(diag, "regular expression substitution is not allowed: skipping this rule");
            return None;
        }
        let (re, n) = compile(&first, max_sub > 0, diag)?;
        if max_sub > n as u64 {
            warn!(diag, "out of range replacement index \"{}\": skipping this rule", max_sub as i32);
            return None;
        }
        let max_sub = max_sub as usize;
        let mut cond = make_cond::<E>(re, &first);
        if cond.set.is_some() {
            // Only rule-set patterns may be compiled again (see `load`).
            let captures = max_sub > 0;
            cond.source = Some(Box::new(PatternSource { text: first.text.into(), options: first.options, captures }));
        }
        let first = cond;
        let second = match second {
            Some(pat) => {
                let (re, _) = compile(&pat, false, diag)?;
                Some(make_cond::<E>(re, &pat))
            }
            None => None,
        };
        Some(Op::Match { first, second, result, max_sub })
    } else if starts_with_word(p, b"IF") {
        let (pat, rest) = get_pattern::<E>(diag, skip_space(&p[2..]))?;
        let rest = skip_space(rest);
        if !rest.is_empty() {
            warn!(diag, "ignoring extra text after IF statement: \"{}\"", lossy(rest));
            warn!(diag, "do not prepend whitespace to statements between IF and ENDIF");
        }
        // Postfix compiles IF patterns without the no-substrings hint.
        let (re, _) = compile(&pat, true, diag)?;
        Some(Op::If { cond: make_cond::<E>(re, &pat), endif: None })
    } else if starts_with_word(p, b"ENDIF") {
        if nesting == 0 {
            warn!(diag, "ignoring ENDIF without matching IF");
            return None;
        }
        if !skip_space(&p[5..]).is_empty() {
            warn!(diag, "ignoring extra text after ENDIF");
        }
        Some(Op::Endif)
    } else {
        warn!(diag, "ignoring unrecognized request");
        None
    }
}

fn make_cond<E: Engine>(re: E::Regex, pat: &RawPattern) -> Cond<E::Regex> {
    let literal = if pat.positive { E::prefilter(pat.text, pat.options) } else { None };
    let set = if pat.positive { E::set_pattern(pat.text, pat.options) } else { None };
    Cond { re: Some(re), positive: pat.positive, literal, set, source: None }
}

/// Extract `[!...]<delim>pattern<delim>flags` from the start of `p`; the
/// rest of the line follows.
fn get_pattern<'a, E: Engine>(diag: &mut Diag, p: &'a [u8]) -> Option<(RawPattern<'a>, &'a [u8])> {
    let mut positive = true;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'!' => positive = !positive,
            b if is_space(b) => {}
            _ => break,
        }
        i += 1;
    }
    if i >= p.len() {
        warn!(diag, "no regexp: skipping this rule");
        return None;
    }
    let delim = p[i];
    let start = i + 1;
    let mut j = start;
    let mut closed = false;
    while j < p.len() {
        if p[j] == b'\\' {
            if j + 1 < p.len() {
                j += 1;
            } else {
                closed = E::TRAILING_BACKSLASH_CLOSES;
                break;
            }
        } else if p[j] == delim {
            closed = true;
            break;
        }
        j += 1;
    }
    if !closed {
        warn!(diag, "no closing regexp delimiter \"{}\": {} this rule", delim as char, E::UNCLOSED_VERB);
        return None;
    }
    let text = &p[start..j];
    let mut k = j + 1;
    let mut options = E::DEFAULT_OPTIONS;
    while k < p.len() && !is_space(p[k]) && !(E::SECOND_PATTERN && p[k] == b'!') {
        if !E::flag(&mut options, p[k], diag) {
            warn!(diag, "unknown regexp option \"{}\": skipping this rule", p[k] as char);
            return None;
        }
        k += 1;
    }
    Some((RawPattern { text, options, positive }, &p[k..]))
}

/// Postfix `mac_parse()` with the table's `$number` pre-scan: the template
/// pieces and the largest group number, or None after the warnings (the
/// caller then logs "bad replacement syntax"). The number is kept as C's
/// `size_t` from `atoi()` so that out-of-range texts match Postfix's.
fn parse_template<E: Engine>(diag: &mut Diag, value: &[u8]) -> Option<(Vec<Piece>, u64)> {
    let mut pieces = Vec::new();
    let mut buf = Vec::new();
    let mut max_sub: u64 = 0;
    let mut error = false;
    let mut vp = 0;
    while vp < value.len() {
        if value[vp] != b'$' {
            buf.push(value[vp]);
            vp += 1;
        } else if value.get(vp + 1) == Some(&b'$') {
            buf.push(b'$');
            vp += 2;
        } else {
            if !buf.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut buf)));
            }
            vp += 1;
            let name: &[u8];
            match value.get(vp) {
                Some(&open @ (b'(' | b'{')) => {
                    let close = if open == b'(' { b')' } else { b'}' };
                    let mut level = 1;
                    let mut ep = vp + 1;
                    while level > 0 {
                        match value.get(ep) {
                            None => {
                                diag.warn_bare(format_args!("truncated macro reference: \"{}\"", lossy(value)));
                                return None;
                            }
                            Some(&b) if b == open => level += 1,
                            Some(&b) if b == close => level -= 1,
                            _ => {}
                        }
                        ep += 1;
                    }
                    name = &value[vp + 1..ep - 1];
                    vp = ep;
                }
                _ => {
                    let len = value[vp..].iter().take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_').count();
                    name = &value[vp..vp + len];
                    vp += len;
                }
            }
            if name.is_empty() {
                diag.warn_bare(format_args!("empty macro name: \"{}\"", lossy(value)));
                return None;
            }
            if !name.iter().all(u8::is_ascii_digit) {
                warn!(diag, "non-numeric replacement index \"{}\"", lossy(name));
                error = true;
                continue;
            }
            // atoi(): strtol saturating at LONG_MAX, then truncated to int;
            // stored into a size_t.
            let long = std::str::from_utf8(name).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(i64::MAX);
            let n = long as i32 as i64 as u64;
            if n < 1 {
                warn!(diag, "{} replacement index \"{}\"", E::OUT_OF_RANGE_BELOW_ONE, lossy(name));
                error = true;
                continue;
            }
            max_sub = max_sub.max(n);
            pieces.push(Piece::Group(n as usize));
        }
    }
    if error {
        return None;
    }
    if !buf.is_empty() {
        pieces.push(Piece::Text(buf));
    }
    Some((pieces, max_sub))
}
