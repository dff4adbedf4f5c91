//! Postfix's text syntax helpers, shared by the text-based tables.
//!
//! * [`LogicalLines`]: the "logical line" reader of postmap input, regexp and
//!   cidr files (Postfix `readllines()`).
//! * [`split_key_value`]: the `key whitespace value` split of texthash/postmap.
//! * Brace helpers for `type:{ ... }` table names: [`balpar`], [`extpar`],
//!   [`BraceTokens`] (`mystrtokq`), [`split_qnameval`].
//! * [`file_to_base64`]: values-are-file-names support (`postmap -F`).
//!
//! Everything works on bytes: Postfix tables are byte strings, not UTF-8.

/// Postfix `ISSPACE()`: C-locale `isspace` on ASCII, which (unlike
/// `u8::is_ascii_whitespace`) includes vertical tab.
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `CHARS_COMMA_SP`: list separators in `type:{a, b c}` names.
pub(crate) const CHARS_COMMA_SP: &[u8] = b", \t\r\n";

/// Strip leading and trailing [`is_space`] bytes.
pub(crate) fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_space(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// Strip trailing [`is_space`] bytes (Postfix `trimblanks()`).
pub(crate) fn trim_end(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| !is_space(b)).map_or(0, |i| i + 1);
    &s[..end]
}

/// Table text in a message: bytes that are not UTF-8 shown as U+FFFD.
pub(crate) fn lossy(s: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(s)
}

/// Postfix works on C strings: anything after an embedded NUL is invisible.
pub(crate) fn until_nul(s: &[u8]) -> &[u8] {
    match crate::protocol::attr::find_nul(s) {
        Some(i) => &s[..i],
        None => s,
    }
}

/// [`until_nul`] in place.
pub(crate) fn cut_at_nul(v: &mut Vec<u8>) {
    let len = until_nul(v).len();
    v.truncate(len);
}

/// One logical line and the number of the physical line where it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogicalLine {
    pub line_no: usize,
    pub text: Vec<u8>,
}

/// Iterator over the logical lines of `data`, as Postfix `readllines()`:
/// blank lines and lines whose first non-blank byte is `#` are skipped (also
/// between continuation lines); a line that starts with whitespace continues
/// the previous one (joined without the newline); a logical line that would
/// start with whitespace is warned about and skipped.
pub(crate) struct LogicalLines<'a> {
    data: &'a [u8],
    pos: usize,
    line_no: usize,
    /// Name used in warnings (the file path).
    origin: &'a str,
}

impl<'a> LogicalLines<'a> {
    pub(crate) fn new(data: &'a [u8], origin: &'a str) -> Self {
        LogicalLines { data, pos: 0, line_no: 0, origin }
    }

    /// Next physical line without its newline, and whether a newline ended it.
    fn physical(&mut self) -> (&'a [u8], bool) {
        let rest = &self.data[self.pos..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                (&rest[..i], true)
            }
            None => {
                self.pos = self.data.len();
                (rest, false)
            }
        }
    }

    /// One attempt at a logical line; it may start with whitespace.
    fn read_one(&mut self) -> (Vec<u8>, usize) {
        let mut buf = Vec::new();
        let mut first_line = 0;
        loop {
            let start = buf.len();
            let (line, newline) = self.physical();
            if newline || !line.is_empty() {
                self.line_no += 1;
            }
            match line.iter().find(|&&b| !is_space(b)) {
                None | Some(b'#') => {}
                Some(_) => {
                    if start == 0 {
                        first_line = self.line_no;
                    }
                    buf.extend_from_slice(line);
                }
            }
            if !newline {
                break;
            }
            if !buf.is_empty() {
                // Continue only into comment, blank or indented lines.
                match self.data.get(self.pos) {
                    Some(&next) if next == b'#' || is_space(next) => {}
                    _ => break,
                }
            }
        }
        (buf, first_line)
    }
}

impl Iterator for LogicalLines<'_> {
    type Item = LogicalLine;

    fn next(&mut self) -> Option<LogicalLine> {
        loop {
            let (text, line_no) = self.read_one();
            match text.first() {
                None => return None,
                Some(&b) if is_space(b) => {
                    // Postfix warns and goes on, so a stray indent does not
                    // truncate the table.
                    let shown = until_nul(&text[..text.len().min(30)]);
                    log::warn!(
                        "{}: logical line must not start with whitespace: \"{}{}\"",
                        self.origin,
                        String::from_utf8_lossy(shown),
                        if text.len() > 30 { "..." } else { "" }
                    );
                }
                Some(_) => return Some(LogicalLine { line_no, text }),
            }
        }
    }
}

/// Why a texthash/postmap line was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SplitError {
    /// `unbalanced '"' in '<line>'`
    UnbalancedQuote,
    /// `expected format: key whitespace value`
    ExpectedFormat,
}

/// Split a postmap-format line into key and value, as texthash does: the key
/// ends at the first whitespace outside double quotes (a backslash protects
/// the next byte; quotes and backslashes stay in the key); the value is the
/// rest with surrounding whitespace removed. Text after a NUL is ignored.
pub(crate) fn split_key_value(line: &[u8]) -> Result<(&[u8], &[u8]), SplitError> {
    let line = until_nul(line);
    let mut in_quotes = false;
    let mut i = 0;
    while i < line.len() {
        match line[i] {
            b'\\' => i += 1,
            b if is_space(b) && !in_quotes => break,
            b'"' => in_quotes = !in_quotes,
            _ => {}
        }
        i += 1;
    }
    if in_quotes {
        return Err(SplitError::UnbalancedQuote);
    }
    let (key, value) = if i < line.len() { (&line[..i], trim(&line[i + 1..])) } else { (line, &b""[..]) };
    if key.is_empty() || value.is_empty() {
        return Err(SplitError::ExpectedFormat);
    }
    Ok((key, value))
}

/// Postfix `balpar()`: length of the balanced `{...}` at the start of `s`
/// (braces included), or 0 when `s` does not start with `{` or never closes.
pub(crate) fn balpar(s: &[u8]) -> usize {
    if s.first() != Some(&b'{') {
        return 0;
    }
    let mut level = 1;
    for (i, &b) in s.iter().enumerate().skip(1) {
        match b {
            b'}' => {
                level -= 1;
                if level == 0 {
                    return i + 1;
                }
            }
            b'{' => level += 1,
            _ => {}
        }
    }
    0
}

/// Postfix `extpar(..., "{}", EXTPAR_FLAG_STRIP)`: the text inside a leading
/// `{...}`, whitespace-trimmed, or Postfix's error text.
pub(crate) fn extpar(s: &[u8]) -> Result<&[u8], String> {
    let shown = || String::from_utf8_lossy(s).into_owned();
    if s.first() != Some(&b'{') {
        return Err(format!("no '{{' at start of text in \"{}\"", shown()));
    }
    let len = balpar(s);
    if len == 0 {
        return Err(format!("missing '}}' in \"{}\"", shown()));
    }
    if len != s.len() {
        return Err(format!("syntax error after '}}' in \"{}\"", shown()));
    }
    Ok(trim(&s[1..len - 1]))
}

/// Postfix `mystrtokq(&cp, CHARS_COMMA_SP, "{}")`: tokens separated by
/// commas/whitespace, where separators inside `{...}` do not split.
pub(crate) struct BraceTokens<'a> {
    rest: &'a [u8],
}

impl<'a> BraceTokens<'a> {
    pub(crate) fn new(s: &'a [u8]) -> Self {
        BraceTokens { rest: s }
    }
}

impl<'a> Iterator for BraceTokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let skip = self.rest.iter().position(|b| !CHARS_COMMA_SP.contains(b))?;
        let start = &self.rest[skip..];
        let mut level = 0usize;
        for (i, &b) in start.iter().enumerate() {
            if b == b'{' {
                level += 1;
            } else if level > 0 && b == b'}' {
                level -= 1;
            } else if level == 0 && CHARS_COMMA_SP.contains(&b) {
                self.rest = &start[i + 1..];
                return Some(&start[..i]);
            }
        }
        self.rest = &[];
        Some(start)
    }
}

/// Postfix `split_qnameval()`: `key = value` with a possibly quoted key (quotes
/// and backslashes kept), value trimmed and possibly empty. Errors are
/// Postfix's texts.
pub(crate) fn split_qnameval(s: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let s = until_nul(s);
    let key_start = s.iter().position(|&b| !is_space(b)).ok_or("no key found; expected format: key = value")?;
    let mut in_quotes = false;
    let mut i = key_start;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 1,
            b if (is_space(b) || b == b'=') && !in_quotes => break,
            b'"' => in_quotes = !in_quotes,
            _ => {}
        }
        i += 1;
    }
    if in_quotes {
        return Err("unbalanced '\"'");
    }
    let key_end = i.min(s.len());
    let after = &s[key_end..];
    let eq = after.iter().position(|&b| !is_space(b));
    match eq {
        Some(j) if after[j] == b'=' => Ok((&s[key_start..key_end], trim(&after[j + 1..]))),
        _ => Err("missing '=' after attribute name"),
    }
}

// Kept for the callers in dict/pattern; new code names `sys::errno` itself.
pub(crate) use crate::sys::errno::io_error_text;

/// Postfix `dict_file_to_b64()`: the named files (comma/space separated)
/// concatenated with newlines between them, base64-encoded; or Postfix's
/// error text.
pub(crate) fn file_to_base64(pathnames: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;

    let names: Vec<&[u8]> = pathnames.split(|b| CHARS_COMMA_SP.contains(b)).filter(|s| !s.is_empty()).collect();
    if names.is_empty() {
        return Err(format!("empty pathname list: >>{}<<'", String::from_utf8_lossy(pathnames)));
    }
    let mut content = Vec::new();
    for (n, name) in names.iter().enumerate() {
        let shown = String::from_utf8_lossy(name);
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(name));
        let mut file = std::fs::File::open(path).map_err(|e| format!("open {shown}: {}", io_error_text(&e)))?;
        file.read_to_end(&mut content).map_err(|e| format!("read {shown}: {}", io_error_text(&e)))?;
        if n + 1 < names.len() {
            content.push(b'\n');
        }
    }
    Ok(base64_encode(&content))
}

/// Standard base64 with `=` padding, as Postfix `base64_encode()`.
pub(crate) fn base64_encode(data: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b0 = chunk[0] as usize;
        let b1 = chunk.get(1).copied().unwrap_or(0) as usize;
        let b2 = chunk.get(2).copied().unwrap_or(0) as usize;
        out.push(ALPHABET[b0 >> 2]);
        out.push(ALPHABET[((b0 & 0x03) << 4) | (b1 >> 4)]);
        out.push(if chunk.len() > 1 { ALPHABET[((b1 & 0x0f) << 2) | (b2 >> 6)] } else { b'=' });
        out.push(if chunk.len() > 2 { ALPHABET[b2 & 0x3f] } else { b'=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(data: &str) -> Vec<(usize, String)> {
        LogicalLines::new(data.as_bytes(), "test").map(|l| (l.line_no, String::from_utf8(l.text).unwrap())).collect()
    }

    #[test]
    fn logical_lines_skip_comments_and_blanks() {
        let got = lines("# comment\n\nkey1 value1\n   \n  # indented comment\nkey2 value2");
        assert_eq!(got, vec![(3, "key1 value1".into()), (6, "key2 value2".into())]);
    }

    #[test]
    fn logical_lines_join_continuations() {
        // Blank and comment lines between continuation lines are skipped,
        // and the continuation keeps its leading whitespace.
        let got = lines("a 1\n  more\n\n# c\n\tand more\nb 2\n");
        assert_eq!(got, vec![(1, "a 1  more\tand more".into()), (6, "b 2".into())]);
    }

    #[test]
    fn logical_lines_leading_whitespace_skipped() {
        let got = lines("  orphan\n  orphan too\nx y\n");
        assert_eq!(got, vec![(3, "x y".into())]);
    }

    #[test]
    fn logical_lines_crlf_and_no_final_newline() {
        let got = lines("a b\r\nc d");
        assert_eq!(got, vec![(1, "a b\r".into()), (2, "c d".into())]);
        assert!(lines("").is_empty());
        assert!(lines("\n\n# x\n").is_empty());
    }

    #[test]
    fn split_key_value_like_texthash() {
        assert_eq!(split_key_value(b"key   value  with space  \r"), Ok((&b"key"[..], &b"value  with space"[..])));
        assert_eq!(split_key_value(b"\"a b\" v"), Ok((&b"\"a b\""[..], &b"v"[..])));
        assert_eq!(split_key_value(b"a\\ b v"), Ok((&b"a\\ b"[..], &b"v"[..])));
        assert_eq!(split_key_value(b"\"a b v"), Err(SplitError::UnbalancedQuote));
        assert_eq!(split_key_value(b"keyonly"), Err(SplitError::ExpectedFormat));
        assert_eq!(split_key_value(b"key   "), Err(SplitError::ExpectedFormat));
        assert_eq!(split_key_value(b"key\\"), Err(SplitError::ExpectedFormat));
        assert_eq!(split_key_value(b"k v\0ignored"), Ok((&b"k"[..], &b"v"[..])));
    }

    #[test]
    fn brace_helpers() {
        assert_eq!(balpar(b"{a{b}c}d"), 7);
        assert_eq!(balpar(b"{a"), 0);
        assert_eq!(balpar(b"a{}"), 0);
        assert_eq!(extpar(b"{  x y  }"), Ok(&b"x y"[..]));
        assert_eq!(extpar(b"{x}y"), Err("syntax error after '}' in \"{x}y\"".to_string()));
        assert_eq!(extpar(b"{x"), Err("missing '}' in \"{x\"".to_string()));
        let toks: Vec<&[u8]> = BraceTokens::new(b" a=b, { c = d e },f{ g }  h,").collect();
        assert_eq!(toks, vec![&b"a=b"[..], b"{ c = d e }", b"f{ g }", b"h"]);
    }

    #[test]
    fn split_qnameval_like_postfix() {
        assert_eq!(split_qnameval(b"xx = yy"), Ok((&b"xx"[..], &b"yy"[..])));
        assert_eq!(split_qnameval(b"xx="), Ok((&b"xx"[..], &b""[..])));
        assert_eq!(split_qnameval(b"\"xx \"= yy"), Ok((&b"\"xx \""[..], &b"yy"[..])));
        assert_eq!(split_qnameval(b"xx"), Err("missing '=' after attribute name"));
        assert_eq!(split_qnameval(b"\"xx "), Err("unbalanced '\"'"));
        assert_eq!(split_qnameval(b"  "), Err("no key found; expected format: key = value"));
        assert_eq!(split_qnameval(b"\"\\\"xx \" = yy"), Ok((&b"\"\\\"xx \""[..], &b"yy"[..])));
    }

    #[test]
    fn base64() {
        assert_eq!(base64_encode(b""), b"");
        assert_eq!(base64_encode(b"f"), b"Zg==");
        assert_eq!(base64_encode(b"fo"), b"Zm8=");
        assert_eq!(base64_encode(b"foo"), b"Zm9v");
        assert_eq!(base64_encode(b"foobar"), b"Zm9vYmFy");
    }
}
