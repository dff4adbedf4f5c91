//! memcached's text protocol as Postfix's memcache client speaks it
//! (Postfix `memcache_proto.c`, `dict_memcache.c`): the request lines and
//! the parsing of reply bytes, with no I/O. Each parser says whether the
//! bytes so far hold a whole item, need more, or can never become one.
//!
//! Matches Postfix: a reply line ends in LF, with an optional CR before it
//! taken off; it may hold at most `line_size_limit` bytes with its CR but
//! without its LF (Postfix reads up to the limit and then at most the LF
//! after a CR). A `VALUE` line is read as C's `sscanf("VALUE %*s %*s
//! %ld")`: only the byte count is used. A data block is exactly that many
//! bytes and CRLF. Reply lines and values are C strings to Postfix: they
//! end at their first NUL.

/// What the buffer holds at its start.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Take<T> {
    /// A whole item, and the number of buffer bytes it used.
    Done(T, usize),
    /// Not yet all of it: read more.
    Need,
    /// Bytes that can never become the item (a line past the limit, a data
    /// block not followed by CRLF).
    Malformed,
}

/// `get <key>` as a request line.
pub(crate) fn get_request(key: &[u8]) -> Vec<u8> {
    command(&[b"get ", key].concat())
}

/// `set <key> <flags> <ttl> <bytes>`, then the data block.
pub(crate) fn set_request(key: &[u8], flags: i32, ttl: i32, value: &[u8]) -> Vec<u8> {
    let mut req = command(&[b"set ", key, format!(" {flags} {ttl} {}", value.len()).as_bytes()].concat());
    req.extend_from_slice(value);
    req.extend_from_slice(b"\r\n");
    req
}

/// `delete <key>` as a request line.
pub(crate) fn delete_request(key: &[u8]) -> Vec<u8> {
    command(&[b"delete ", key].concat())
}

fn command(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len() + 2);
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\n");
    out
}

/// One reply line at the start of `buf`, without its line end, holding at
/// most `limit` bytes (CR included, LF not).
pub(crate) fn take_line(buf: &[u8], limit: usize) -> Take<&[u8]> {
    let window = &buf[..buf.len().min(limit)];
    if let Some(lf) = window.iter().position(|&b| b == b'\n') {
        return Take::Done(strip_cr(&buf[..lf]), lf + 1);
    }
    if window.len() < limit {
        return Take::Need;
    }
    // The limit was reached: only an LF right after a CR still ends the line.
    if window.last() != Some(&b'\r') {
        return Take::Malformed;
    }
    match buf.get(limit) {
        Some(b'\n') => Take::Done(&buf[..limit - 1], limit + 1),
        Some(_) => Take::Malformed,
        None => Take::Need,
    }
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A data block of `len` bytes and its CRLF at the start of `buf`.
pub(crate) fn take_data(buf: &[u8], len: usize) -> Take<&[u8]> {
    match buf.get(len..len + 2) {
        None => Take::Need,
        Some(b"\r\n") => Take::Done(&buf[..len], len + 2),
        Some(_) => Take::Malformed,
    }
}

/// The line as the C string Postfix compares: up to its first NUL.
pub(crate) fn c_str(line: &[u8]) -> &[u8] {
    crate::dict::postmap_text::until_nul(line)
}

/// The byte count of a `VALUE <key> <flags> <bytes>` line, as
/// `sscanf("VALUE %*s %*s %ld")` reads it (anything may follow the number;
/// a number too big for a long is the largest long).
pub(crate) fn value_length(line: &[u8]) -> Option<i64> {
    let rest = c_str(line).strip_prefix(b"VALUE")?;
    let mut fields = rest.split(|b| b.is_ascii_whitespace() || *b == 0x0b).filter(|f| !f.is_empty());
    fields.next()?;
    fields.next()?;
    strtol_prefix(fields.next()?)
}

/// C's `%ld`: an optional sign and at least one digit, saturating.
fn strtol_prefix(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let digits = &digits[..digits.iter().take_while(|b| b.is_ascii_digit()).count()];
    if digits.is_empty() {
        return None;
    }
    let magnitude = digits.iter().try_fold(0i64, |n, d| n.checked_mul(10)?.checked_add(i64::from(d - b'0')));
    Some(match (magnitude, negative) {
        (Some(n), true) => -n,
        (Some(n), false) => n,
        (None, true) => i64::MIN,
        (None, false) => i64::MAX,
    })
}

/// The first `n` bytes of a reply line, as `%.<n>s` prints it.
pub(crate) fn clip(line: &[u8], n: usize) -> String {
    let line = c_str(line);
    String::from_utf8_lossy(&line[..line.len().min(n)]).into_owned()
}

/// Whether Postfix 3.7 refuses `key` (after `key_format`) for containing
/// ASCII white space (`isascii && isspace`).
pub(crate) fn has_space(key: &[u8]) -> bool {
    key.iter().any(|b| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_lines_ending_in_crlf() {
        assert_eq!(get_request(b"k@x"), b"get k@x\r\n");
        assert_eq!(delete_request(b"k"), b"delete k\r\n");
        assert_eq!(set_request(b"k", 7, -1, b"v a l"), b"set k 7 -1 5\r\nv a l\r\n");
        assert_eq!(set_request(b"k", 0, 3600, b""), b"set k 0 3600 0\r\n\r\n");
    }

    #[test]
    fn a_line_needs_its_lf_and_loses_its_cr() {
        assert_eq!(take_line(b"END\r\nmore", 1024), Take::Done(&b"END"[..], 5));
        assert_eq!(take_line(b"END\nx", 1024), Take::Done(&b"END"[..], 4));
        assert_eq!(take_line(b"\r\n", 1024), Take::Done(&b""[..], 2));
        assert_eq!(take_line(b"EN", 1024), Take::Need);
        assert_eq!(take_line(b"END\r", 1024), Take::Need);
        assert_eq!(take_line(b"", 1024), Take::Need);
    }

    #[test]
    fn a_line_holds_at_most_the_limit_with_its_cr() {
        // "END\r" is 4 bytes: fits a limit of 4, not of 3.
        assert_eq!(take_line(b"END\r\n", 4), Take::Done(&b"END"[..], 5));
        assert_eq!(take_line(b"END\r", 4), Take::Need);
        assert_eq!(take_line(b"END\r\n", 3), Take::Malformed);
        assert_eq!(take_line(b"END\n", 4), Take::Done(&b"END"[..], 4));
        assert_eq!(take_line(b"END\n", 3), Take::Malformed);
        assert_eq!(take_line(b"ENDX", 3), Take::Malformed);
        assert_eq!(take_line(b"EN\rX", 3), Take::Malformed);
        assert_eq!(take_line(b"E", 1), Take::Malformed);
        assert_eq!(take_line(b"\n", 1), Take::Done(&b""[..], 1));
    }

    #[test]
    fn a_data_block_is_its_bytes_and_crlf() {
        assert_eq!(take_data(b"abc\r\nEND\r\n", 3), Take::Done(&b"abc"[..], 5));
        assert_eq!(take_data(b"a\r\nc\r\n", 4), Take::Done(&b"a\r\nc"[..], 6));
        assert_eq!(take_data(b"abc\r", 3), Take::Need);
        assert_eq!(take_data(b"ab", 3), Take::Need);
        assert_eq!(take_data(b"abcd\r\n", 3), Take::Malformed);
        assert_eq!(take_data(b"abc\n\r", 3), Take::Malformed);
        assert_eq!(take_data(b"\r\n", 0), Take::Done(&b""[..], 2));
    }

    #[test]
    fn value_lines_are_read_as_sscanf_reads_them() {
        assert_eq!(value_length(b"VALUE key 0 5"), Some(5));
        assert_eq!(value_length(b"VALUE key 0 5 12345"), Some(5));
        assert_eq!(value_length(b"VALUE  key\t0   17x"), Some(17));
        assert_eq!(value_length(b"VALUEkey 0 5"), Some(5));
        assert_eq!(value_length(b"VALUE key 0 -3"), Some(-3));
        assert_eq!(value_length(b"VALUE key 0 +3"), Some(3));
        assert_eq!(value_length(b"VALUE key 0 99999999999999999999999"), Some(i64::MAX));
        assert_eq!(value_length(b"VALUE key 0"), None);
        assert_eq!(value_length(b"VALUE key 0 x5"), None);
        assert_eq!(value_length(b"VALUE key 0 -"), None);
        assert_eq!(value_length(b"value key 0 5"), None);
        assert_eq!(value_length(b"VALUE key\x000 5"), None);
        assert_eq!(value_length(b"END"), None);
    }

    #[test]
    fn reply_texts_are_c_strings_clipped_as_printf_does() {
        assert_eq!(c_str(b"STORED\0junk"), b"STORED");
        assert_eq!(clip(b"SERVER_ERROR object too large for cache", 30), "SERVER_ERROR object too large ");
        assert_eq!(clip(b"NOT\0STORED", 30), "NOT");
    }

    #[test]
    fn white_space_is_the_c_locale_isspace_set() {
        for key in [&b"a b"[..], b"a\tb", b"a\nb", b"a\x0bb", b"a\x0cb", b"a\rb"] {
            assert!(has_space(key), "{key:?}");
        }
        for key in [&b"a_b"[..], b"a\x01b", b"a\x7fb", b"a\xa0b", b"\xc3\xbc"] {
            assert!(!has_space(key), "{key:?}");
        }
    }
}
