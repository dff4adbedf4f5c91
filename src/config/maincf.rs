//! main.cf syntax: logical lines and `name = value` entries, as Postfix's
//! readllines()/split_nameval()/dict_load_fp() read them.

use super::ConfigError;

/// One `name = value` entry with the line number its logical line starts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// Postfix's ISSPACE: the C locale isspace() set.
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// A logical line: its text and the number of its first physical line.
#[derive(Debug, PartialEq, Eq)]
struct Logical {
    text: String,
    first_line: usize,
}

/// Splits text into logical lines. Comment lines (first non-blank is `#`)
/// and blank lines are dropped, even between continuation lines; a line
/// that starts with whitespace continues the previous one (newline dropped,
/// leading whitespace kept). A logical line that itself starts with
/// whitespace is warned about and skipped, like Postfix does.
fn logical_lines(text: &str, file: &str) -> Vec<Logical> {
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut first_line = 0;
    let mut lineno = 0;
    let mut flush = |buf: &mut String, first_line: usize| {
        if buf.is_empty() {
            return;
        }
        if buf.as_bytes().first().copied().is_some_and(is_space) {
            let head: String = truncate_bytes(buf, 30).to_string();
            let more = if buf.len() > 30 { "..." } else { "" };
            log::warn!("{file}: logical line must not start with whitespace: \"{head}{more}\"");
        } else {
            out.push(Logical { text: std::mem::take(buf), first_line });
        }
        buf.clear();
    };
    // split_inclusive keeps an unterminated last line, as readllines does.
    for phys in text.split_inclusive('\n') {
        let line = phys.strip_suffix('\n').unwrap_or(phys);
        lineno += 1;
        let blank_or_comment = match line.bytes().find(|b| !is_space(*b)) {
            None => true,
            Some(b) => b == b'#',
        };
        if blank_or_comment {
            continue;
        }
        let continues = line.as_bytes().first().copied().is_some_and(is_space);
        if !continues {
            flush(&mut buf, first_line);
        }
        if buf.is_empty() {
            first_line = lineno;
        }
        buf.push_str(line);
    }
    flush(&mut buf, first_line);
    out
}

/// Cuts a string to at most `max` bytes without splitting a character.
pub(crate) fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Splits `name = value` as Postfix's split_nameval(): name is the first run
/// of non-space, non-'=' characters; the value is trimmed on both sides.
/// The error is Postfix's text.
pub(crate) fn split_nameval(line: &str) -> Result<(String, String), &'static str> {
    let b = line.as_bytes();
    let np = b.iter().position(|c| !is_space(*c)).unwrap_or(b.len());
    if np == b.len() || b[np] == b'=' {
        return Err("missing attribute name");
    }
    let ep = np + b[np..].iter().position(|c| is_space(*c) || *c == b'=').unwrap_or(b.len() - np);
    let cp = ep + b[ep..].iter().position(|c| !is_space(*c)).unwrap_or(b.len() - ep);
    if cp == b.len() || b[cp] != b'=' {
        return Err("missing '=' after attribute name");
    }
    let value = line[cp + 1..].trim_matches(|c: char| c.is_ascii() && is_space(c as u8));
    Ok((line[np..ep].to_string(), value.to_string()))
}

/// Parses one `-o name=value` command-line argument as the Postfix server
/// skeletons do; the error carries Postfix's fatal text.
pub(crate) fn parse_override(arg: &str) -> Result<(String, String), ConfigError> {
    split_nameval(arg).map_err(|err| ConfigError::Invalid(format!("invalid \"-o {arg}\" option value: {err}")))
}

/// Reads main.cf text into entries in file order. Syntax errors are fatal
/// in Postfix and come back as ConfigError with its text.
pub(crate) fn parse(text: &str, file: &str) -> Result<Vec<Entry>, ConfigError> {
    let mut entries = Vec::new();
    for logical in logical_lines(text, file) {
        let (name, value) = split_nameval(&logical.text).map_err(|err| {
            ConfigError::Invalid(format!("{file}, line {}: {err}: \"{}\"", logical.first_line, logical.text))
        })?;
        entries.push(Entry { name, value, line: logical.first_line });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<(String, String, usize)> {
        parse(text, "main.cf").unwrap().into_iter().map(|e| (e.name, e.value, e.line)).collect()
    }

    #[test]
    fn comments_and_blank_lines() {
        let got = names("# comment\n\n   \n  # indented comment\na = 1\nb=2 # not a comment\n");
        assert_eq!(got, vec![("a".into(), "1".into(), 5), ("b".into(), "2 # not a comment".into(), 6)]);
    }

    #[test]
    fn continuation_keeps_leading_whitespace() {
        let got = names("a = x,\n  y\n# comment between\n\n\ty z\nb = 2");
        assert_eq!(got[0], ("a".into(), "x,  y\ty z".into(), 1));
        assert_eq!(got[1], ("b".into(), "2".into(), 6));
    }

    #[test]
    fn whitespace_start_logical_line_is_skipped() {
        let got = names("  stray = 1\n   more\na = 1\n");
        assert_eq!(got, vec![("a".into(), "1".into(), 3)]);
    }

    #[test]
    fn value_trimmed_and_empty() {
        assert_eq!(names("a =   \nb\t=\t v w \t\n"), vec![("a".into(), "".into(), 1), ("b".into(), "v w".into(), 2)]);
        assert_eq!(names("c=d=e"), vec![("c".into(), "d=e".into(), 1)]);
        assert_eq!(names("x = 1\r\n"), vec![("x".into(), "1".into(), 1)]);
    }

    #[test]
    fn missing_equals_is_fatal_with_line() {
        let err = parse("a = 1\n\nfoo bar\n", "/etc/postfix/main.cf").unwrap_err();
        assert_eq!(err.to_string(), "/etc/postfix/main.cf, line 3: missing '=' after attribute name: \"foo bar\"");
        let err = parse("= 1\n", "main.cf").unwrap_err();
        assert_eq!(err.to_string(), "main.cf, line 1: missing attribute name: \"= 1\"");
    }

    #[test]
    fn error_line_is_first_line_of_logical_line() {
        let err = parse("a = 1\nfoo\n bar\n", "m").unwrap_err();
        assert_eq!(err.to_string(), "m, line 2: missing '=' after attribute name: \"foo bar\"");
    }

    #[test]
    fn override_syntax() {
        assert_eq!(parse_override("a=b").unwrap(), ("a".into(), "b".into()));
        assert_eq!(parse_override(" a = b c ").unwrap(), ("a".into(), "b c".into()));
        assert_eq!(
            parse_override("abc").unwrap_err().to_string(),
            "invalid \"-o abc\" option value: missing '=' after attribute name"
        );
        assert_eq!(
            parse_override("=x").unwrap_err().to_string(),
            "invalid \"-o =x\" option value: missing attribute name"
        );
    }
}
