//! Postfix's attribute encoding, variant 0 (`attr_print0` / `attr_scan0`):
//! `name\0value\0 ... \0`. No I/O here: the writer appends to a buffer and the
//! reader works on whatever bytes have arrived so far.

/// What a string read stopped on when the buffer ran out; decides the wording of
/// Postfix's timeout and end-of-input warnings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Context {
    Name,
    Value,
}

impl Context {
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Name => "input attribute name",
            Context::Value => "input attribute value",
        }
    }
}

/// A cursor over received bytes that yields NUL-terminated strings.
#[derive(Clone, Copy, Debug)]
pub struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// The buffer ended inside (or right before) a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Incomplete {
    pub context: Context,
    /// Some bytes of the unfinished string were already received.
    pub partial: bool,
}

impl<'a> Scanner<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Scanner { buf, pos: 0 }
    }

    pub fn consumed(&self) -> usize {
        self.pos
    }

    /// The next NUL-terminated string (without its NUL), or `Incomplete` when the
    /// buffer holds no NUL yet. An empty name is the list terminator.
    pub fn string(&mut self, context: Context) -> Result<&'a [u8], Incomplete> {
        let rest = &self.buf[self.pos..];
        match find_nul(rest) {
            Some(n) => {
                self.pos += n + 1;
                Ok(&rest[..n])
            }
            None => Err(Incomplete { context, partial: !rest.is_empty() }),
        }
    }

    /// Consume `name` and its NUL if they come next; otherwise consume
    /// nothing. The common case of a request in the expected order costs a
    /// compare instead of a scan for the NUL.
    pub fn name_is(&mut self, name: &[u8]) -> bool {
        let rest = &self.buf[self.pos..];
        let matched = rest.len() > name.len() && rest[name.len()] == 0 && rest.starts_with(name);
        if matched {
            self.pos += name.len() + 1;
        }
        matched
    }
}

/// Index of the first NUL (also used by the tables for C-string values),
/// eight bytes at a time: a word has a zero byte
/// where `(v - 0x01..01) & !v & 0x80..80` is set, and its lowest set byte is
/// the first zero (higher ones may be borrows).
pub fn find_nul(b: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut chunks = b.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let v = u64::from_le_bytes(word);
        let zeros = v.wrapping_sub(ONES) & !v & HIGHS;
        if zeros != 0 {
            return Some(base + (zeros.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks.remainder().iter().position(|&c| c == 0).map(|n| base + n)
}

/// Appends one attribute list to a reply buffer.
pub struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        Writer { out }
    }

    // Inlined so that the constant names are copied by a few moves, not by
    // a call to memcpy each (a measurable share of a reply's cost).
    #[inline(always)]
    pub fn str(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.out.extend_from_slice(value);
        self.out.push(0);
        self
    }

    /// ATTR_TYPE_INT: unsigned decimal, as C's `%u`.
    #[inline(always)]
    pub fn int(&mut self, name: &str, value: u32) -> &mut Self {
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        let mut digits = [0u8; 10];
        let mut n = value;
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&digits[i..]);
        self.out.push(0);
        self
    }

    /// The list terminator.
    pub fn end(&mut self) {
        self.out.push(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanner_separates_need_more_from_strings() {
        let mut s = Scanner::new(b"abc\0de");
        assert_eq!(s.string(Context::Name), Ok(&b"abc"[..]));
        assert_eq!(s.consumed(), 4);
        assert_eq!(s.string(Context::Value), Err(Incomplete { context: Context::Value, partial: true }));
        let mut s = Scanner::new(b"");
        assert_eq!(s.string(Context::Name), Err(Incomplete { context: Context::Name, partial: false }));
        let mut s = Scanner::new(b"\0");
        assert_eq!(s.string(Context::Name), Ok(&b""[..]));
    }

    #[test]
    fn nul_search_finds_the_first_nul_at_every_offset() {
        // Bytes around the NUL that a word-at-a-time test could misread:
        // 0x01 (a borrow makes it look like zero), 0x80 and 0xff.
        for len in 0..40 {
            for at in 0..=len {
                for fill in [b'a', 0x01, 0x80, 0xff] {
                    let mut b = vec![fill; len];
                    if at < len {
                        b[at] = 0;
                        if at + 1 < len {
                            b[at + 1] = 0x01;
                        }
                    }
                    let want = b.iter().position(|&c| c == 0);
                    assert_eq!(find_nul(&b), want, "len {len} at {at} fill {fill:#x}");
                }
            }
        }
    }

    #[test]
    fn name_is_consumes_only_a_whole_matching_name() {
        let mut s = Scanner::new(b"table\0x\0");
        assert!(!s.name_is(b"tab"));
        assert!(!s.name_is(b"tables"));
        assert_eq!(s.consumed(), 0);
        assert!(s.name_is(b"table"));
        assert_eq!(s.consumed(), 6);
        // Without its NUL yet the name is not taken (the caller scans).
        let mut s = Scanner::new(b"table");
        assert!(!s.name_is(b"table"));
        assert_eq!(s.consumed(), 0);
    }

    #[test]
    fn writer_emits_exact_bytes() {
        let mut out = Vec::new();
        Writer::new(&mut out).int("status", 0).int("flags", 28).end();
        assert_eq!(out, b"status\x000\x00flags\x0028\x00\x00");
        out.clear();
        Writer::new(&mut out).int("n", u32::MAX).str("value", b"").end();
        assert_eq!(out, b"n\x004294967295\x00value\x00\x00\x00");
    }
}
