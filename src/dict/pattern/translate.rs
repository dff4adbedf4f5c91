//! The rule-set translator: a regexp or pcre pattern rewritten in the
//! syntax of the `regex-automata` set compiler (bytes, no Unicode), so that
//! one automaton can test many rules at once (see [`super::dfa`]).
//!
//! Every translation is an over-approximation of the real pattern's
//! language (anything the real engine matches, the translation matches), so
//! a rule the set does not report cannot match; a pattern that cannot be
//! translated soundly gets None and stays outside the set. Pure: no I/O.

use super::byteset::{escape_class, posix_class, word_set, ByteSet};
use super::engine::Dialect;

/// How a pattern is to be read by [`translate`].
#[derive(Clone, Copy)]
pub(crate) struct SetSyntax {
    pub dialect: Dialect,
    /// ASCII case-insensitive (REG_ICASE / PCRE2_CASELESS, C locale).
    pub icase: bool,
    /// PCRE2_ANCHORED.
    pub anchored: bool,
    /// `^` and `$` can be translated (newline convention is LF); otherwise
    /// they are dropped (which only widens the language).
    pub anchors: bool,
}

struct Translator<'a> {
    p: &'a [u8],
    i: usize,
    out: String,
    syn: SetSyntax,
    depth: usize,
}

/// Translate `pattern` into a byte-oriented regex-syntax pattern whose
/// language includes the real pattern's (see above); None when unsure.
pub(crate) fn translate(pattern: &[u8], syn: SetSyntax) -> Option<String> {
    let mut t = Translator { p: pattern, i: 0, out: String::new(), syn, depth: 0 };
    t.out.push_str(if syn.icase { "(?i-u)" } else { "(?-u)" });
    if syn.anchored {
        t.out.push_str("\\A");
    }
    t.out.push_str("(?:");
    t.alternation()?;
    if t.i != pattern.len() {
        return None;
    }
    t.out.push(')');
    Some(t.out)
}

impl Translator<'_> {
    fn pcre(&self) -> bool {
        self.syn.dialect == Dialect::Pcre
    }
    fn peek(&self) -> Option<u8> {
        self.p.get(self.i).copied()
    }
    fn peek_at(&self, k: usize) -> Option<u8> {
        self.p.get(self.i + k).copied()
    }
    fn lit(&mut self, b: u8) {
        use std::fmt::Write;
        let _ = write!(self.out, "\\x{b:02X}");
    }

    fn alternation(&mut self) -> Option<()> {
        self.depth += 1;
        if self.depth > 50 {
            return None;
        }
        loop {
            let start = self.i;
            self.concat()?;
            if self.i == start && !self.pcre() {
                return None; // empty alternative in POSIX: not sure
            }
            if self.peek() == Some(b'|') {
                self.i += 1;
                self.out.push('|');
            } else {
                break;
            }
        }
        self.depth -= 1;
        Some(())
    }

    fn concat(&mut self) -> Option<()> {
        while let Some(c) = self.peek() {
            if c == b'|' || c == b')' {
                break;
            }
            let mark = self.out.len();
            let quantifiable = self.atom()?;
            self.quantifier(mark, quantifiable)?;
        }
        Some(())
    }

    /// An optional quantifier after the atom emitted from `mark`.
    fn quantifier(&mut self, mark: usize, quantifiable: bool) -> Option<()> {
        let q = match self.peek() {
            Some(b'*') => {
                self.i += 1;
                "*".to_string()
            }
            Some(b'+') => {
                self.i += 1;
                "+".to_string()
            }
            Some(b'?') => {
                self.i += 1;
                "?".to_string()
            }
            Some(b'{') => {
                let rest = &self.p[self.i + 1..];
                let close = rest.iter().position(|&b| b == b'}')?;
                let body = &rest[..close];
                let (lo, hi) = match body.iter().position(|&b| b == b',') {
                    None => (body, Some(body)),
                    Some(k) => (&body[..k], (k + 1 < body.len()).then(|| &body[k + 1..])),
                };
                let num = |s: &[u8]| -> Option<u32> {
                    if s.is_empty() || s.len() > 3 || !s.iter().all(u8::is_ascii_digit) {
                        return None;
                    }
                    std::str::from_utf8(s).ok()?.parse().ok()
                };
                let lo = num(lo)?;
                let hi = match hi {
                    Some(h) => Some(num(h)?),
                    None => None,
                };
                if lo > 100 || hi.is_some_and(|h| h > 100 || h < lo) {
                    return None;
                }
                self.i += close + 2;
                match hi {
                    Some(h) if h == lo => format!("{{{lo}}}"),
                    Some(h) => format!("{{{lo},{h}}}"),
                    None => format!("{{{lo},}}"),
                }
            }
            _ => return Some(()),
        };
        if !quantifiable {
            return None;
        }
        if self.pcre() {
            match self.peek() {
                Some(b'?') => self.i += 1, // lazy: same language
                Some(b'+') => return None, // possessive
                _ => {}
            }
        }
        if matches!(self.peek(), Some(b'*' | b'+' | b'?' | b'{')) {
            return None; // stacked quantifiers
        }
        self.out.insert_str(mark, "(?:");
        self.out.push(')');
        self.out.push_str(&q);
        Some(())
    }

    /// One atom; Some(true) when it may take a quantifier.
    fn atom(&mut self) -> Option<bool> {
        let c = self.peek()?;
        match c {
            b'*' | b'+' | b'?' | b'{' => None,
            b'}' if !self.pcre() => None,
            b'(' => self.group(),
            b'[' => {
                let set = self.bracket()?;
                set.emit(&mut self.out)?;
                Some(true)
            }
            b'.' => {
                self.i += 1;
                self.out.push_str("[\\x00-\\xFF]");
                Some(true)
            }
            b'^' => {
                self.i += 1;
                if self.syn.anchors {
                    self.out.push_str("(?m:^)");
                }
                Some(false)
            }
            b'$' => {
                self.i += 1;
                if self.syn.anchors {
                    self.out.push_str("(?m:$)");
                }
                Some(false)
            }
            b'\\' => self.escape(),
            _ => {
                self.i += 1;
                self.lit(c);
                Some(true)
            }
        }
    }

    fn group(&mut self) -> Option<bool> {
        self.i += 1;
        let mut drop = false;
        if self.pcre() {
            match self.peek() {
                Some(b'*') => return None,
                Some(b'?') => {
                    let rest = &self.p[self.i + 1..];
                    if rest.starts_with(b":") {
                        self.i += 2;
                    } else if rest.starts_with(b"=") || rest.starts_with(b"!") {
                        self.i += 2;
                        drop = true;
                    } else if rest.starts_with(b"<=") || rest.starts_with(b"<!") {
                        self.i += 3;
                        drop = true;
                    } else {
                        let (skip, close) = if rest.starts_with(b"<") {
                            (1, b'>')
                        } else if rest.starts_with(b"P<") {
                            (2, b'>')
                        } else if rest.starts_with(b"'") {
                            (1, b'\'')
                        } else {
                            return None;
                        };
                        let name = &rest[skip..];
                        let end = name.iter().position(|&b| b == close)?;
                        if end == 0 || !name[..end].iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_') {
                            return None;
                        }
                        self.i += 1 + skip + end + 1;
                    }
                }
                _ => {}
            }
        }
        let mark = self.out.len();
        self.out.push_str("(?:");
        self.alternation()?;
        if self.peek() != Some(b')') {
            return None;
        }
        self.i += 1;
        self.out.push(')');
        if drop {
            // A lookaround: a zero-width assertion, dropped (wider).
            self.out.truncate(mark);
            return Some(false);
        }
        Some(true)
    }

    fn widen(&self, mut set: ByteSet, uncertain: bool) -> ByteSet {
        if uncertain && self.pcre() {
            set.add_range(0x80, 0xff);
        }
        set
    }

    fn escape(&mut self) -> Option<bool> {
        let next = self.peek_at(1)?;
        self.i += 2;
        if let Some(set) = escape_class(next, self.pcre()) {
            let set = self.widen(set, true);
            set.emit(&mut self.out)?;
            return Some(true);
        }
        if !self.pcre() {
            return match next {
                b'1'..=b'9' => None,
                b'b' | b'B' | b'<' | b'>' | b'`' | b'\'' => Some(false),
                _ => {
                    self.lit(next);
                    Some(true)
                }
            };
        }
        match next {
            b'b' | b'B' | b'G' => Some(false),
            b'A' => {
                self.out.push_str("\\A");
                Some(false)
            }
            b'z' => {
                self.out.push_str("\\z");
                Some(false)
            }
            b'Z' => {
                if self.syn.anchors {
                    self.out.push_str("(?m:$)");
                }
                Some(false)
            }
            _ => {
                self.i -= 2;
                let b = self.pcre_single_escape(false)?;
                self.lit(b);
                Some(true)
            }
        }
    }

    /// A PCRE escape at `self.i` standing for one byte.
    fn pcre_single_escape(&mut self, in_class: bool) -> Option<u8> {
        let next = self.peek_at(1)?;
        self.i += 2;
        let b = match next {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'f' => 0x0c,
            b'e' => 0x1b,
            b'a' => 0x07,
            b'b' if in_class => 0x08,
            b'x' => {
                let hex = |b: &u8| b.is_ascii_hexdigit();
                let digits: &[u8];
                if self.peek() == Some(b'{') {
                    let rest = &self.p[self.i + 1..];
                    let end = rest.iter().position(|&b| b == b'}')?;
                    digits = &rest[..end];
                    self.i += end + 2;
                } else {
                    let n = self.p[self.i..].iter().take(2).take_while(|b| hex(b)).count();
                    digits = &self.p[self.i..self.i + n];
                    self.i += n;
                }
                if digits.is_empty() || digits.len() > 2 || !digits.iter().all(hex) {
                    return None;
                }
                u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?
            }
            _ if next.is_ascii_alphanumeric() => return None,
            _ => next,
        };
        Some(b)
    }

    /// A bracket expression at `self.i`; the set of bytes it may match.
    fn bracket(&mut self) -> Option<ByteSet> {
        let pcre = self.pcre();
        self.i += 1;
        let negated = self.peek() == Some(b'^');
        if negated {
            self.i += 1;
        }
        let mut set = ByteSet::new();
        let mut uncertain = false;
        let mut first = true;
        loop {
            let c = self.peek()?;
            if c == b']' && !first {
                self.i += 1;
                break;
            }
            first = false;
            if c == b'[' && matches!(self.peek_at(1), Some(b':' | b'.' | b'=')) {
                if self.peek_at(1) != Some(b':') {
                    return None;
                }
                let rest = &self.p[self.i + 2..];
                let end = rest.windows(2).position(|w| w == b":]")?;
                let mut name = &rest[..end];
                let neg = pcre && name.first() == Some(&b'^');
                if neg {
                    name = &name[1..];
                }
                let mut s = match name {
                    b"word" if pcre => word_set(),
                    b"ascii" if pcre => ByteSet::range(0, 0x7f),
                    _ => posix_class(name)?,
                };
                if neg {
                    s.negate();
                }
                set.add_set(&s);
                uncertain = true;
                self.i += 2 + end + 2;
                if self.peek() == Some(b'-') && self.peek_at(1) != Some(b']') {
                    return None;
                }
                continue;
            }
            if pcre && c == b'\\' {
                if let Some(s) = self.peek_at(1).and_then(|n| escape_class(n, true)) {
                    set.add_set(&s);
                    uncertain = true;
                    self.i += 2;
                    if self.peek() == Some(b'-') && self.peek_at(1) != Some(b']') {
                        return None;
                    }
                    continue;
                }
            }
            let lo = self.class_char()?;
            if self.peek() == Some(b'-') && self.peek_at(1).is_some_and(|b| b != b']') {
                self.i += 1;
                if self.peek() == Some(b'[') && matches!(self.peek_at(1), Some(b':' | b'.' | b'=')) {
                    return None;
                }
                if pcre
                    && self.peek() == Some(b'\\')
                    && self.peek_at(1).is_some_and(|n| escape_class(n, true).is_some())
                {
                    return None;
                }
                let hi = self.class_char()?;
                if lo > hi {
                    return None;
                }
                if !pcre && self.syn.icase {
                    // glibc may case-translate range ends: only ranges
                    // without letters or within one case are sure.
                    let letters = (lo..=hi).any(|b| b.is_ascii_alphabetic());
                    let same = (lo.is_ascii_lowercase() && hi.is_ascii_lowercase())
                        || (lo.is_ascii_uppercase() && hi.is_ascii_uppercase());
                    if letters && !same {
                        return None;
                    }
                }
                set.add_range(lo, hi);
                if self.peek() == Some(b'-') && self.peek_at(1) != Some(b']') {
                    return None;
                }
            } else {
                set.add_range(lo, lo);
            }
        }
        if self.syn.icase {
            set.fold_ascii();
        }
        if negated {
            set.negate();
        }
        Some(self.widen(set, uncertain))
    }

    /// One literal character inside a bracket expression.
    fn class_char(&mut self) -> Option<u8> {
        let c = self.peek()?;
        if self.pcre() && c == b'\\' {
            return self.pcre_single_escape(true);
        }
        self.i += 1;
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posix(p: &str, icase: bool) -> Option<String> {
        translate(p.as_bytes(), SetSyntax { dialect: Dialect::PosixExtended, icase, anchored: false, anchors: true })
    }

    fn pcre(p: &str) -> Option<String> {
        translate(p.as_bytes(), SetSyntax { dialect: Dialect::Pcre, icase: true, anchored: false, anchors: true })
    }

    #[test]
    fn translations() {
        assert!(posix("^(.*)@host\\.example\\.com$", true).is_some());
        assert!(posix("(a)\\1", true).is_none());
        assert!(posix("[[=a=]]", true).is_none());
        assert!(posix("[A-z]", true).is_none());
        assert!(posix("[A-z]", false).is_some());
        assert!(posix("a||b", false).is_none());
        assert!(posix("*a", false).is_none());
        assert!(pcre("(?i)a").is_none());
        assert!(pcre("a(*ACCEPT)").is_none());
        assert!(pcre("\\Qa\\E").is_none());
        assert!(pcre("a++").is_none());
        assert!(pcre("a(?=b)c").is_some());
        assert!(pcre("\\g1").is_none());
        // A backslash is literal inside POSIX brackets, an escape in PCRE's.
        let s = posix("[\\n]", false).unwrap();
        assert!(s.contains("\\x5C") && s.contains("\\x6E"), "{s}");
        let s = pcre("[\\n]").unwrap();
        assert!(s.contains("\\x0A-\\x0A") && !s.contains("\\x5C"), "{s}");
    }

    #[test]
    fn exact_translations() {
        assert_eq!(posix("ab", false).unwrap(), "(?-u)(?:\\x61\\x62)");
        assert_eq!(posix("a*", false).unwrap(), "(?-u)(?:(?:\\x61)*)");
        assert_eq!(posix("^a.$", true).unwrap(), "(?i-u)(?:(?m:^)\\x61[\\x00-\\xFF](?m:$))");
        assert_eq!(pcre("(?<n>a)b(?=c)").unwrap(), "(?i-u)(?:(?:\\x61)\\x62)");
        let anchored = SetSyntax { dialect: Dialect::Pcre, icase: false, anchored: true, anchors: false };
        assert_eq!(translate(b"x{2,3}$", anchored).unwrap(), "(?-u)\\A(?:(?:\\x78){2,3})");
    }
}
