//! The literal prefilter: a text every key matching a positive pattern
//! must contain, found by a scanner of the pattern syntax, so that a rule
//! whose literal is absent from the key is skipped without running its
//! engine.

use super::engine::Dialect;

/// A text that every string matching `pattern` must contain, compared ASCII
/// case-insensitively (so it is sound for caseless and case-sensitive
/// patterns alike): the longest run of plain ASCII literal characters at the
/// top level of a pattern without top-level alternation. None whenever the
/// pattern uses a construct this scanner does not fully understand.
/// Returned lowercased.
pub(crate) fn required_literal(pattern: &[u8], dialect: Dialect) -> Option<Vec<u8>> {
    let pcre = dialect == Dialect::Pcre;
    if pcre {
        // Verbs such as (*ACCEPT), (*UTF); quoting; comments; inline option
        // settings like (?x) or (?i) and other letter forms.
        let w = |s: &[u8]| pattern.windows(s.len()).any(|x| x == s);
        if w(b"(*") || w(b"\\Q") || w(b"(?#") {
            return None;
        }
        if pattern
            .windows(3)
            .any(|x| x[0] == b'(' && x[1] == b'?' && !matches!(x[2], b':' | b'=' | b'!' | b'<' | b'\''))
        {
            return None;
        }
        // (?<= and (?<! are fine; (?<name> is fine too (a group).
    }
    let mut best: Vec<u8> = Vec::new();
    let mut run: Vec<u8> = Vec::new();
    let end_run = |run: &mut Vec<u8>, best: &mut Vec<u8>| {
        if run.len() > best.len() {
            *best = std::mem::take(run);
        } else {
            run.clear();
        }
    };
    let p = pattern;
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        match c {
            b'|' => return None,
            b')' => return None,
            b'(' => {
                end_run(&mut run, &mut best);
                i = skip_group(p, i, pcre)?;
                continue;
            }
            b'[' => {
                end_run(&mut run, &mut best);
                i = skip_bracket(p, i, pcre)?;
                continue;
            }
            b'*' | b'?' => {
                run.pop();
                end_run(&mut run, &mut best);
            }
            b'+' => {
                // A repeat of the repeat (POSIX `a+*`, `a+?`, `a+{0,1}`) can
                // make the atom optional; PCRE's lazy `+?` keeps it
                // required, but dropping one byte is only a weaker filter.
                if quantified_optional(p, i + 1) {
                    run.pop();
                }
                end_run(&mut run, &mut best);
            }
            b'{' => {
                run.pop();
                end_run(&mut run, &mut best);
                // Only a counted repeat is skipped: a `{` that starts none is
                // a literal to PCRE (and glibc), and an `|` after it still
                // splits the pattern.
                let k = p[i..].iter().position(|&b| b == b'}')?;
                if !p[i + 1..i + k].iter().all(|&b| b.is_ascii_digit() || b == b',' || b == b' ') {
                    return None;
                }
                i += k;
            }
            b'.' | b'^' | b'$' => end_run(&mut run, &mut best),
            b'\\' => {
                let &next = p.get(i + 1)?;
                if pcre && next.is_ascii_alphanumeric() {
                    // Multi-character escapes (\x41, \x{..}, \cX, \g-1,
                    // \k<name>, \p{..}): skip the argument, count nothing.
                    end_run(&mut run, &mut best);
                    i += if next == b'c' { 3 } else { 2 };
                    if !matches!(next, b'x' | b'o' | b'g' | b'k' | b'p' | b'P' | b'N' | b'0'..=b'9') {
                        continue; // \d, \w, \b ...: nothing follows
                    }
                    while i < p.len() && (p[i].is_ascii_alphanumeric() || (next == b'g' && matches!(p[i], b'+' | b'-')))
                    {
                        i += 1;
                    }
                    if let Some(&open @ (b'{' | b'<' | b'\'')) = p.get(i) {
                        let close = match open {
                            b'{' => b'}',
                            b'<' => b'>',
                            _ => b'\'',
                        };
                        i = i + 1 + p[i + 1..].iter().position(|&b| b == close)? + 1;
                    }
                    continue;
                }
                let literal = !next.is_ascii_alphanumeric()
                    && next.is_ascii()
                    && (pcre || !matches!(next, b'`' | b'\'' | b'<' | b'>'));
                if literal && (next.is_ascii_graphic() || next == b' ') {
                    // Quantifier applies to this one character.
                    if quantified_optional(p, i + 2) {
                        end_run(&mut run, &mut best);
                    } else {
                        run.push(next.to_ascii_lowercase());
                    }
                } else {
                    end_run(&mut run, &mut best);
                }
                i += 2;
                continue;
            }
            _ if c.is_ascii() && (c.is_ascii_graphic() || c == b' ') => {
                if quantified_optional(p, i + 1) {
                    end_run(&mut run, &mut best);
                } else {
                    run.push(c.to_ascii_lowercase());
                }
            }
            _ => end_run(&mut run, &mut best),
        }
        i += 1;
    }
    end_run(&mut run, &mut best);
    best_or_none(best)
}

fn best_or_none(best: Vec<u8>) -> Option<Vec<u8>> {
    (!best.is_empty()).then_some(best)
}

/// Whether the atom ending before `at` is made optional by a quantifier
/// (`*`, `?`, `{`); `+` keeps it required but ends the run, which the caller
/// handles when it reaches the `+`.
fn quantified_optional(p: &[u8], at: usize) -> bool {
    matches!(p.get(at), Some(b'*' | b'?' | b'{'))
}

/// Length of the escape sequence at `p[i]` as far as structure goes: PCRE's
/// `\cX` takes the next character whatever it is.
fn escape_len(p: &[u8], i: usize, pcre: bool) -> usize {
    if pcre && p.get(i + 1) == Some(&b'c') {
        3
    } else {
        2
    }
}

/// Index just past the group opening at `p[open]`, or None if unbalanced.
fn skip_group(p: &[u8], open: usize, pcre: bool) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < p.len() {
        match p[i] {
            b'\\' => i += escape_len(p, i, pcre) - 1,
            b'[' => {
                i = skip_bracket(p, i, pcre)?;
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index just past the bracket expression opening at `p[open]`.
fn skip_bracket(p: &[u8], open: usize, pcre: bool) -> Option<usize> {
    let mut i = open + 1;
    if p.get(i) == Some(&b'^') {
        i += 1;
    }
    if p.get(i) == Some(&b']') {
        i += 1;
    }
    while i < p.len() {
        match p[i] {
            b']' => return Some(i + 1),
            b'\\' if pcre => i += escape_len(p, i, pcre) - 1,
            b'[' if matches!(p.get(i + 1), Some(b':' | b'.' | b'=')) => {
                let kind = p[i + 1];
                let mut k = i + 2;
                loop {
                    if k + 1 >= p.len() {
                        return None;
                    }
                    if p[k] == kind && p[k + 1] == b']' {
                        break;
                    }
                    k += 1;
                }
                i = k + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where `needle` first occurs in `hay`.
pub(super) fn memmem(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    let first = needle[0];
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut pos = 0;
    while pos <= last_start {
        let off = hay[pos..=last_start].iter().position(|&b| b == first)?;
        let at = pos + off;
        if &hay[at..at + needle.len()] == needle {
            return Some(at);
        }
        pos = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        let r = |s: &str| required_literal(s.as_bytes(), Dialect::PosixExtended).map(|v| String::from_utf8(v).unwrap());
        let q = |s: &str| required_literal(s.as_bytes(), Dialect::Pcre).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(r("^(.*)@Example\\.com$").as_deref(), Some("@example.com"));
        assert_eq!(r("abc|def"), None);
        assert_eq!(r("(abc|def)xy").as_deref(), Some("xy"));
        assert_eq!(r("abcd?ef").as_deref(), Some("abc"));
        assert_eq!(r("ab+cd").as_deref(), Some("ab"));
        assert_eq!(r("ab{2}cd").as_deref(), Some("cd"));
        assert_eq!(q("ab{2,}cd").as_deref(), Some("cd"));
        assert_eq!(r("x*|y+"), None);
        assert_eq!(r("\\<word\\>").as_deref(), Some("word"));
        assert_eq!(r("[[:alpha:]]]x").as_deref(), Some("]x"));
        assert_eq!(r("[]a]bc").as_deref(), Some("bc"));
        assert_eq!(r("[\\]]q").as_deref(), Some("]q"));
        assert_eq!(q("[\\]]q").as_deref(), Some("q"));
        assert_eq!(q("(?i)abc"), None);
        assert_eq!(q("(?:ab|c)def").as_deref(), Some("def"));
        assert_eq!(q("a(*ACCEPT)bc"), None);
        assert_eq!(q("\\Qa|b\\E"), None);
        assert_eq!(q("\\d+foo").as_deref(), Some("foo"));
        assert_eq!(q("\\x41bc").as_deref(), None);
        assert_eq!(q("\\cabc").as_deref(), Some("bc"));
        assert_eq!(q("\\g-1xy").as_deref(), None);
        assert_eq!(q("\\k<n>xy").as_deref(), Some("xy"));
        assert_eq!(q("[\\c]]x").as_deref(), Some("x"));
        assert_eq!(r("(unbalanced"), None);
        assert_eq!(r("a\\"), None);
        assert_eq!(memmem(b"hello", b"llo"), Some(2));
        assert_eq!(memmem(b"hello", b"lol"), None);
        assert_eq!(memmem(b"he", b"hello"), None);
    }

    /// Found by the `translate` fuzz target: a `{` that opens no counted
    /// repeat is a literal, so an `|` after it is alternation, and there
    /// is no required literal (`abc{|x` matches "x").
    #[test]
    fn a_brace_that_is_no_repeat_hides_no_alternation() {
        for dialect in [Dialect::Pcre, Dialect::PosixExtended] {
            assert_eq!(required_literal(b"abc{|x", dialect), None);
            assert_eq!(required_literal(b"abc{x|y}", dialect), None);
            assert_eq!(required_literal(b"^a.{\xdckx:foo]2|foo", dialect), None);
        }
    }

    /// Found by the `translate` fuzz target: `2+*` is `(2+)*` to glibc,
    /// which matches the empty key, so `2` is not required.
    #[test]
    fn a_repeated_repeat_is_optional() {
        assert_eq!(required_literal(b"2+*", Dialect::PosixExtended), None);
        assert_eq!(required_literal(b"ab+?", Dialect::PosixExtended).as_deref(), Some(&b"a"[..]));
        assert_eq!(required_literal(b"ab+{0,1}c", Dialect::PosixExtended).as_deref(), Some(&b"a"[..]));
        assert_eq!(required_literal(b"ab++c", Dialect::PosixExtended).as_deref(), Some(&b"ab"[..]));
    }
}
