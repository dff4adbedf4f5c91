//! Quoting the key's pieces into the search base and the query filter,
//! as Postfix does: the filter with RFC 2254 escapes (`*`, `(`, `)`, `\`
//! as `\2A`, `\28`, `\29`, `\5C`), the base with RFC 2253 escapes (space,
//! TAB, `"`, `#`, `+`, `,`, `;`, `<`, `>`, `\` as `\XX`, uppercase hex).
//! Bytes ≥ 0x80 and `=` pass as they are, as in Postfix. A key never holds
//! a NUL (it ends at the first, as Postfix's C string does); one in a piece
//! would be escaped as `\00`.

/// Append `raw` to `out` with the bytes in `special` (and NUL) hex-escaped.
fn quote(raw: &[u8], out: &mut Vec<u8>, special: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in raw {
        if b == 0 || special.contains(&b) {
            out.extend_from_slice(&[b'\\', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        } else {
            out.push(b);
        }
    }
}

/// Postfix's `rfc2254_quote`: a piece of the key in the query filter.
pub(super) fn filter_quote(raw: &[u8], out: &mut Vec<u8>) {
    quote(raw, out, b"*()\\");
}

/// Postfix's `rfc2253_quote`: a piece of the key in the search base.
pub(super) fn base_quote(raw: &[u8], out: &mut Vec<u8>) {
    quote(raw, out, b" \t\"#+,;<>\\");
}

/// Whether a template has any `%` expansion (Postfix's "dynamic": a
/// search base with one makes a missing base "not found", a query filter
/// without one is "probably useless").
pub(super) fn is_dynamic(template: &str) -> bool {
    let mut bytes = template.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' && bytes.next().is_some_and(|c| c != b'%') {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(f: fn(&[u8], &mut Vec<u8>), s: &[u8]) -> Vec<u8> {
        let mut out = b"(x=".to_vec();
        f(s, &mut out);
        out
    }

    #[test]
    fn filter_pieces_escape_the_four_filter_specials_only() {
        assert_eq!(q(filter_quote, b"a*b(c)d\\e"), b"(x=a\\2Ab\\28c\\29d\\5Ce");
        // what RFC 2254 leaves alone, Postfix too: = , space, 8-bit bytes
        assert_eq!(q(filter_quote, "u=v, w ü".as_bytes()), "(x=u=v, w ü".as_bytes());
        assert_eq!(q(filter_quote, b"a\0b"), b"(x=a\\00b");
        assert_eq!(q(filter_quote, b"*)(uid=*"), b"(x=\\2A\\29\\28uid=\\2A");
    }

    #[test]
    fn base_pieces_escape_the_dn_specials() {
        assert_eq!(q(base_quote, b" a\tb\"#+,;<>\\="), b"(x=\\20a\\09b\\22\\23\\2B\\2C\\3B\\3C\\3E\\5C=");
        assert_eq!(q(base_quote, b"*()"), b"(x=*()");
    }

    #[test]
    fn dynamic_means_any_expansion_but_percent_percent() {
        assert!(is_dynamic("(mail=%s)"));
        assert!(is_dynamic("ou=%1"));
        assert!(!is_dynamic("(objectclass=*)"));
        assert!(!is_dynamic("100%%"));
        assert!(!is_dynamic("trailing %"));
    }
}
