//! The set of tables proxymap may open: every `proxy:` reference in the
//! expanded proxy_read_maps (reader) or proxy_write_maps (writer) value,
//! found the way 3.7's authorize_proxied_maps() finds them.

use std::collections::HashSet;

use super::Params;

/// Separators between table references (CHARS_COMMA_SP).
const SEPARATORS: &[u8] = b", \t\r\n";
const PROXY: &str = "proxy:";

/// Approved `type:name` strings, compared byte for byte.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    /// Insertion order, for iteration that follows the configuration.
    order: Vec<String>,
    set: HashSet<String>,
}

/// The allowlist of the writer (proxy_write_maps) or reader (proxy_read_maps).
pub fn proxy_allowlist(params: &Params, writer: bool) -> Allowlist {
    let param = if writer { "proxy_write_maps" } else { "proxy_read_maps" };
    Allowlist::from_param(&params.get(param), param)
}

impl Allowlist {
    /// Builds the allowlist from an already expanded parameter value;
    /// `param` names the parameter in warnings and debug logs.
    pub fn from_param(value: &str, param: &str) -> Allowlist {
        let mut list = Allowlist::default();
        list.authorize(value, param);
        list
    }

    /// Whether `table` (`type:name`, leading `proxy:` already stripped) is
    /// approved. No normalisation: exact string equality.
    pub fn contains(&self, table: &str) -> bool {
        self.set.contains(table)
    }

    /// Approved entries in the order they were found.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    fn authorize(&mut self, text: &str, param: &str) {
        walk(text, param, &mut |name| {
            if !self.set.contains(name) {
                log::debug!("allowlisting {name} from {param}");
                self.set.insert(name.to_string());
                self.order.push(name.to_string());
            }
        });
    }
}

/// The entries an expanded value approves, in order with duplicates, each
/// with its byte offset in `value` (for `proxymap check`'s provenance).
pub(crate) fn entries_at(value: &str, param: &str) -> Vec<(String, usize)> {
    let base = value.as_ptr() as usize;
    let mut found = Vec::new();
    // Every name walk() reports is a slice of `value`.
    walk(value, param, &mut |name| found.push((name.to_string(), name.as_ptr() as usize - base)));
    found
}

/// Calls `found` with every approved `type:name` in `text` (a slice of it).
fn walk<'t>(text: &'t str, param: &str, found: &mut dyn FnMut(&'t str)) {
    let mut rest = text;
    while let Some(token) = next_token(&mut rest) {
        let mut type_name = token;
        // `{ maptype:mapname attr=value ... }`: only the first word counts.
        if type_name.starts_with('{') {
            match strip_braces(type_name) {
                Ok(inner) => {
                    let mut inner_rest = inner;
                    match next_token(&mut inner_rest) {
                        Some(first) => type_name = first,
                        None => continue,
                    }
                }
                Err(err) => {
                    log::warn!("bad {param} parameter value: {err}");
                    continue;
                }
            }
        }
        // unionmap:{...} and pipemap:{...} nest other table references.
        if let Some(nested) = type_name.strip_prefix("unionmap:").or_else(|| type_name.strip_prefix("pipemap:")) {
            if !nested.starts_with('{') {
                continue;
            }
            match strip_braces(nested) {
                Ok(inner) => walk(inner, param, found),
                Err(err) => log::warn!("bad {param} parameter value: {err}"),
            }
            continue;
        }
        let Some(mut name) = type_name.strip_prefix(PROXY) else {
            continue;
        };
        while let Some(shorter) = name.strip_prefix(PROXY) {
            name = shorter;
        }
        if name.contains(':') {
            found(name);
        }
    }
}

/// Next token, split at separators outside `{}` (mystrtokq semantics: a
/// stray `}` at depth 0 is an ordinary character).
fn next_token<'a>(rest: &mut &'a str) -> Option<&'a str> {
    let s = *rest;
    let start = s.bytes().take_while(|c| SEPARATORS.contains(c)).count();
    if start == s.len() {
        *rest = &s[s.len()..];
        return None;
    }
    let b = s.as_bytes();
    let mut level = 0usize;
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        if c == b'{' {
            level += 1;
        } else if level > 0 && c == b'}' {
            level -= 1;
        } else if level == 0 && SEPARATORS.contains(&c) {
            *rest = &s[i + 1..];
            return Some(&s[start..i]);
        }
        i += 1;
    }
    *rest = &s[s.len()..];
    Some(&s[start..])
}

/// Removes one level of braces from text that must be exactly one
/// balanced `{...}` group; errors are extpar()'s texts.
fn strip_braces(text: &str) -> Result<&str, String> {
    if !text.starts_with('{') {
        return Err(format!("no '{{' at start of text in \"{text}\""));
    }
    let mut level = 0usize;
    for (i, c) in text.bytes().enumerate() {
        if c == b'{' {
            level += 1;
        } else if c == b'}' {
            level -= 1;
            if level == 0 {
                if i + 1 != text.len() {
                    return Err(format!("syntax error after '}}' in \"{text}\""));
                }
                return Ok(&text[1..i]);
            }
        }
    }
    Err(format!("missing '}}' in \"{text}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(value: &str) -> Vec<String> {
        Allowlist::from_param(value, "proxy_read_maps").iter().map(String::from).collect()
    }

    #[test]
    fn spec_example() {
        let got = entries(
            "proxy:hash:/a, proxy:proxy:regexp:/b unionmap:{proxy:inline:{a=1}, proxy:static:foo} \
             { proxy:texthash:/c attr=x } proxy:hash:/d",
        );
        assert_eq!(got, ["hash:/a", "regexp:/b", "inline:{a=1}", "static:foo", "texthash:/c", "hash:/d"]);
        let list = Allowlist::from_param("proxy:hash:/a", "p");
        assert!(list.contains("hash:/a"));
        assert!(!list.contains("hash:/a "));
        assert!(!list.contains("proxy:hash:/a"));
        assert!(!list.contains("HASH:/a"));
    }

    #[test]
    fn separators() {
        assert_eq!(
            entries("\n\tproxy:hash:/a,,proxy:btree:/b\r\nproxy:cdb:/c ,  proxy:lmdb:/d,"),
            ["hash:/a", "btree:/b", "cdb:/c", "lmdb:/d"]
        );
        assert!(entries("").is_empty());
        assert!(entries(" , \n").is_empty());
    }

    #[test]
    fn skipped_tokens() {
        // No proxy: prefix, no ':' after stripping, duplicates.
        let got = entries("hash:/x [::1]/128 127.0.0.0/8 proxy:nocolon proxy:proxy: proxy:hash:/a proxy:hash:/a");
        assert_eq!(got, ["hash:/a"]);
        // proxy:unionmap:{...} is taken as a whole, not recursed into.
        assert_eq!(entries("proxy:unionmap:{proxy:hash:/a}"), ["unionmap:{proxy:hash:/a}"]);
        // unionmap without braces is skipped.
        assert!(entries("unionmap:proxy:hash:/a").is_empty());
        assert_eq!(entries("pipemap:{proxy:hash:/a,proxy:hash:/b}"), ["hash:/a", "hash:/b"]);
        assert_eq!(entries("unionmap:{unionmap:{proxy:hash:/deep}}"), ["hash:/deep"]);
        assert!(entries("{}").is_empty());
        assert!(entries("{ }").is_empty());
        assert!(entries("{{proxy:hash:/a}}").is_empty());
    }

    #[test]
    fn unbalanced_braces_warn_and_skip() {
        assert_eq!(strip_braces("{a").unwrap_err(), "missing '}' in \"{a\"");
        assert_eq!(strip_braces("{a}b").unwrap_err(), "syntax error after '}' in \"{a}b\"");
        assert_eq!(strip_braces("a").unwrap_err(), "no '{' at start of text in \"a\"");
        assert_eq!(entries("{proxy:hash:/a proxy:hash:/b"), Vec::<String>::new());
        assert_eq!(entries("{proxy:hash:/a}x proxy:hash:/b"), ["hash:/b"]);
        assert_eq!(entries("unionmap:{proxy:hash:/a proxy:hash:/c"), Vec::<String>::new());
    }

    #[test]
    fn entries_know_their_offsets() {
        let value = "proxy:hash:/a unionmap:{proxy:proxy:cdb:/b} proxy:hash:/a";
        assert_eq!(
            entries_at(value, "p"),
            [("hash:/a".to_string(), 6), ("cdb:/b".to_string(), 36), ("hash:/a".to_string(), 50)]
        );
    }

    #[test]
    fn stray_close_brace_is_ordinary() {
        assert_eq!(next_token(&mut "a}b c"), Some("a}b"));
        assert_eq!(entries("proxy:hash:/a} proxy:hash:/b"), ["hash:/a}", "hash:/b"]);
    }
}
