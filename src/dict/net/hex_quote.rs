//! `%XX` quoting of the tcp_table protocol (Postfix `util/hex_quote.c`):
//! `%`, whitespace and every byte that is not printable ASCII (controls,
//! DEL, all bytes from 0x80) become `%` and two uppercase hex digits;
//! unquoting takes either case and refuses a `%` without two hex digits.
//! Both stop at a NUL, as Postfix's C strings do.

/// Whitespace as C's `isspace()` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Append `raw` (up to its first NUL), quoted, to `out`.
pub(crate) fn quote(raw: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in raw.iter().take_while(|b| **b != 0) {
        if b != b'%' && !is_c_space(b) && (0x20..0x7f).contains(&b) {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// `hex` (up to its first NUL) unquoted; None when a `%` is not followed
/// by two hex digits. A `%00` yields a NUL byte (the caller's C-string
/// rules decide what follows it).
pub(crate) fn unquote(hex: &[u8]) -> Option<Vec<u8>> {
    let end = hex.iter().position(|b| *b == 0).unwrap_or(hex.len());
    let hex = &hex[..end];
    let mut out = Vec::with_capacity(hex.len());
    let mut i = 0;
    while let Some(&b) = hex.get(i) {
        if b == b'%' {
            let hi = hex_digit(*hex.get(i + 1)?)?;
            let lo = hex_digit(*hex.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(raw: &[u8]) -> String {
        let mut out = Vec::new();
        quote(raw, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn quotes_what_postfix_quotes() {
        // the spec's verified example: `a b%c\x01ü`
        assert_eq!(quoted("a b%c\u{1}ü".as_bytes()), "a%20b%25c%01%C3%BC");
        assert_eq!(quoted(b"\t\n\x0b\x0c\r\x7f~!"), "%09%0A%0B%0C%0D%7F~!");
        assert_eq!(quoted(b"user@example.com+x=y"), "user@example.com+x=y");
        assert_eq!(quoted(b"ab\0cd"), "ab", "a C string ends at NUL");
        let every: Vec<u8> = (1..=255).collect();
        let q = quoted(&every);
        assert!(q.bytes().all(|b| b.is_ascii_graphic()));
        assert_eq!(unquote(q.as_bytes()).as_deref(), Some(&every[..]));
    }

    #[test]
    fn unquotes_either_case_and_refuses_bad_escapes() {
        assert_eq!(unquote(b"a%20b%2fc%2F").as_deref(), Some(&b"a b/c/"[..]));
        assert_eq!(unquote(b"x%00y").as_deref(), Some(&b"x\0y"[..]));
        assert_eq!(unquote(b"").as_deref(), Some(&b""[..]));
        assert_eq!(unquote(b"ok\0%zz").as_deref(), Some(&b"ok"[..]));
        for bad in [&b"%"[..], b"%4", b"%zz", b"a%g0", b"%0g"] {
            assert_eq!(unquote(bad), None, "{bad:?}");
        }
    }
}
