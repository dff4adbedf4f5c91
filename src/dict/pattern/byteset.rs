//! Sets of bytes for the set translator: bracket expressions, POSIX
//! classes and class escapes in the C locale, emitted as byte ranges.

/// 256-bit byte set.
#[derive(Clone, Copy)]
pub(super) struct ByteSet([bool; 256]);

impl ByteSet {
    pub(super) fn new() -> ByteSet {
        ByteSet([false; 256])
    }
    pub(super) fn range(lo: u8, hi: u8) -> ByteSet {
        let mut s = ByteSet::new();
        s.add_range(lo, hi);
        s
    }
    pub(super) fn add_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.0[b as usize] = true;
        }
    }
    pub(super) fn add_set(&mut self, o: &ByteSet) {
        for b in 0..256 {
            self.0[b] |= o.0[b];
        }
    }
    pub(super) fn negate(&mut self) {
        for b in self.0.iter_mut() {
            *b = !*b;
        }
    }
    pub(super) fn fold_ascii(&mut self) {
        for b in b'a'..=b'z' {
            let u = b.to_ascii_uppercase();
            let any = self.0[b as usize] || self.0[u as usize];
            self.0[b as usize] = any;
            self.0[u as usize] = any;
        }
    }
    /// Emit as a regex-syntax class of byte ranges (None when empty).
    pub(super) fn emit(&self, out: &mut String) -> Option<()> {
        use std::fmt::Write;
        if !self.0.iter().any(|&b| b) {
            return None;
        }
        out.push('[');
        let mut b = 0usize;
        while b < 256 {
            if self.0[b] {
                let start = b;
                while b + 1 < 256 && self.0[b + 1] {
                    b += 1;
                }
                let _ = write!(out, "\\x{start:02X}-\\x{b:02X}");
            }
            b += 1;
        }
        out.push(']');
        Some(())
    }
}

/// ASCII (C locale) set of a POSIX class name.
pub(super) fn posix_class(name: &[u8]) -> Option<ByteSet> {
    let pred: fn(&u8) -> bool = match name {
        b"alpha" => u8::is_ascii_alphabetic,
        b"digit" => u8::is_ascii_digit,
        b"alnum" => u8::is_ascii_alphanumeric,
        b"upper" => u8::is_ascii_uppercase,
        b"lower" => u8::is_ascii_lowercase,
        b"space" => |b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'),
        b"blank" => |b| matches!(b, b' ' | b'\t'),
        b"punct" => u8::is_ascii_punctuation,
        b"print" => |b| (0x20..0x7f).contains(b),
        b"graph" => u8::is_ascii_graphic,
        b"cntrl" => u8::is_ascii_control,
        b"xdigit" => u8::is_ascii_hexdigit,
        _ => return None,
    };
    let mut s = ByteSet::new();
    for b in 0..=255u8 {
        s.0[b as usize] = pred(&b);
    }
    Some(s)
}

pub(super) fn word_set() -> ByteSet {
    let mut s = posix_class(b"alnum").expect("alnum is one of the classes posix_class knows");
    s.0[b'_' as usize] = true;
    s
}

/// The set of a class escape letter (`d`, `w`, `s` and negations); the
/// ASCII part exact, bytes >= 0x80 unknown (caller widens).
pub(super) fn escape_class(c: u8, pcre: bool) -> Option<ByteSet> {
    let mut s = match c.to_ascii_lowercase() {
        b'd' if pcre => posix_class(b"digit")?,
        b'w' => word_set(),
        b's' => posix_class(b"space")?,
        _ => return None,
    };
    if c.is_ascii_uppercase() {
        s.negate();
    }
    Some(s)
}
