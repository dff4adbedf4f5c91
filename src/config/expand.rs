//! `$name` expansion with the semantics of Postfix's mac_parse()/mac_expand()
//! as main.cf evaluation uses them (recursive, no character filter), with
//! the compatibility-level operators (`<level` etc.) registered.

use super::compat::compat_level_from_string;
use super::maincf::truncate_bytes;
use super::ConfigError;

/// Postfix's MAC_EXP_WHITESPACE (CHARS_SPACE).
const WHITESPACE: &[u8] = b" \t\r\n";
/// Nesting depth beyond which expansion is refused (mac_expand's limit).
const MAX_NESTING: i32 = 100;

/// Expands `text`. `lookup` returns the raw (unexpanded) value of a name, or
/// None when undefined; undefined names expand to nothing. Warnings are
/// logged as Postfix logs them; the first one is kept in the error.
pub(crate) fn expand<F>(text: &str, lookup: &F) -> Result<String, ConfigError>
where
    F: Fn(&str) -> Option<String>,
{
    let mut ex = Expander::new(lookup);
    ex.parse(text);
    match ex.error {
        None => Ok(ex.out),
        Some(warning) => Err(ConfigError::Macro { warning }),
    }
}

/// A run of expanded text and the chain of `$name`s it came through,
/// outermost first (empty: written in the expanded text itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    pub range: std::ops::Range<usize>,
    pub via: Vec<String>,
}

/// expand(), also telling which `$name` each piece of the result came from
/// (for `proxymap check`'s provenance of allowlist entries).
pub(crate) fn expand_traced<F>(text: &str, lookup: &F) -> Result<(String, Vec<Span>), ConfigError>
where
    F: Fn(&str) -> Option<String>,
{
    let mut ex = Expander::new(lookup);
    ex.trace = Some(Trace::default());
    ex.parse(text);
    match ex.error {
        None => Ok((ex.out, ex.trace.map(|t| t.spans).unwrap_or_default())),
        Some(warning) => Err(ConfigError::Macro { warning }),
    }
}

/// The names being expanded right now and the spans recorded so far.
#[derive(Default)]
struct Trace {
    stack: Vec<String>,
    spans: Vec<Span>,
}

enum Token {
    Literal,
    Expr,
}

struct Expander<'a, F> {
    lookup: &'a F,
    out: String,
    /// Depth of nested callbacks; shared across recursion like mc->level.
    level: i32,
    /// First warning; Some means MAC_PARSE_ERROR is set.
    error: Option<String>,
    /// Provenance recording, when asked for.
    trace: Option<Trace>,
}

fn skip_ws(s: &str) -> &str {
    let n = s.bytes().take_while(|b| WHITESPACE.contains(b)).count();
    &s[n..]
}

/// Postfix prints at most 20 bytes of the remaining text in diagnostics.
fn tail20(s: &str) -> &str {
    truncate_bytes(s, 20)
}

impl<'a, F> Expander<'a, F>
where
    F: Fn(&str) -> Option<String>,
{
    fn new(lookup: &'a F) -> Self {
        Expander { lookup, out: String::new(), level: 0, error: None, trace: None }
    }

    fn fail(&mut self, warning: String) {
        log::warn!("{warning}");
        if self.error.is_none() {
            self.error = Some(warning);
        }
    }

    /// Splits text into literal runs and `$` references (mac_parse) and
    /// hands each to the callback. Only its own syntax errors stop it.
    fn parse(&mut self, value: &str) {
        let b = value.as_bytes();
        let mut buf = String::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'$' {
                let ch_len = value[i..].chars().next().map_or(1, char::len_utf8);
                buf.push_str(&value[i..i + ch_len]);
                i += ch_len;
            } else if b.get(i + 1) == Some(&b'$') {
                buf.push('$');
                i += 2;
            } else {
                if !buf.is_empty() {
                    self.callback(Token::Literal, std::mem::take(&mut buf));
                }
                i += 1;
                let (open, close) = match b.get(i) {
                    Some(b'{') => (b'{', b'}'),
                    Some(b'(') => (b'(', b')'),
                    _ => (0, 0),
                };
                if open != 0 {
                    i += 1;
                    let start = i;
                    let mut depth = 1;
                    let mut end = None;
                    for (k, c) in b[start..].iter().enumerate() {
                        if *c == open {
                            depth += 1;
                        } else if *c == close {
                            depth -= 1;
                            if depth == 0 {
                                end = Some(start + k);
                                break;
                            }
                        }
                    }
                    match end {
                        Some(e) => {
                            buf.push_str(&value[start..e]);
                            i = e + 1;
                        }
                        None => {
                            self.fail(format!("truncated macro reference: \"{value}\""));
                            return;
                        }
                    }
                } else {
                    let n = b[i..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
                    buf.push_str(&value[i..i + n]);
                    i += n;
                }
                if buf.is_empty() {
                    self.fail(format!("empty macro name: \"{value}\""));
                    return;
                }
                self.callback(Token::Expr, std::mem::take(&mut buf));
            }
        }
        if !buf.is_empty() && self.error.is_none() {
            self.callback(Token::Literal, buf);
        }
    }

    /// mac_expand_callback: handles one literal run or one `$` reference.
    fn callback(&mut self, kind: Token, text: String) {
        let over = self.level > MAX_NESTING;
        self.level += 1;
        if over {
            self.fail(format!("unreasonable macro call nesting: \"{text}\""));
        }
        if self.error.is_some() {
            return;
        }
        match kind {
            Token::Literal => {
                let start = self.out.len();
                self.out.push_str(&text);
                if let Some(t) = &mut self.trace {
                    t.spans.push(Span { range: start..self.out.len(), via: t.stack.clone() });
                }
            }
            Token::Expr => {
                if self.expr(&text).is_none() {
                    return;
                }
            }
        }
        self.level -= 1;
    }

    /// Evaluates the inside of a `$` reference. None means an error was
    /// reported (nesting level then stays raised, as in Postfix).
    fn expr(&mut self, text: &str) -> Option<()> {
        let lookup: Option<String>;
        let mut name = None;
        let op: u8;
        let mut cp: &str;
        let trimmed = skip_ws(text);
        if trimmed.starts_with('{') {
            let (value, rest) = self.relational(trimmed)?;
            lookup = Some(value);
            match rest.as_bytes().first() {
                None => {
                    op = 0;
                    cp = rest;
                }
                Some(c @ (b'?' | b':')) => {
                    op = *c;
                    cp = &rest[1..];
                }
                Some(_) => {
                    self.fail(format!("\"?\" or \":\" expected at: \"...}}>>>{}\"", tail20(rest)));
                    return None;
                }
            }
        } else {
            let start = text.len() - trimmed.len();
            let b = text.as_bytes();
            let mut i = start;
            let name_end;
            loop {
                let ws = b[i..].iter().take_while(|c| WHITESPACE.contains(c)).count();
                match b.get(i + ws) {
                    None => {
                        name_end = i;
                        op = 0;
                        cp = "";
                        break;
                    }
                    Some(c @ (b'?' | b':')) => {
                        name_end = i;
                        op = *c;
                        cp = &text[i + ws + 1..];
                        break;
                    }
                    Some(_) => {}
                }
                if !(b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    self.fail(format!(
                        "attribute name syntax error at: \"...{}>>>{}\"",
                        &text[..i],
                        tail20(&text[i..])
                    ));
                    return None;
                }
                i += 1;
            }
            lookup = (self.lookup)(&text[start..name_end]);
            name = Some(&text[start..name_end]);
        }
        let non_empty = lookup.as_deref().is_some_and(|v| !v.is_empty());
        match op {
            b'?' | b':' => {
                if op == b'?' {
                    let iftrue;
                    (iftrue, cp) = self.operand(cp)?;
                    if non_empty {
                        self.parse(&iftrue);
                    }
                    if cp.is_empty() {
                        return Some(());
                    }
                    if !cp.starts_with(':') {
                        self.fail(format!("\":\" expected at: \"...{iftrue}}}>>>{}\"", tail20(cp)));
                        return None;
                    }
                    cp = &cp[1..];
                }
                let iffalse;
                (iffalse, cp) = self.operand(cp)?;
                if !non_empty {
                    self.parse(&iffalse);
                }
                if !cp.is_empty() {
                    self.fail(format!("unexpected input at: \"...{iffalse}}}>>>{}\"", tail20(cp)));
                    return None;
                }
            }
            _ => {
                if let Some(value) = lookup.filter(|v| !v.is_empty()) {
                    if let (Some(t), Some(n)) = (&mut self.trace, name) {
                        t.stack.push(n.to_string());
                    }
                    // Recursive evaluation: the value is expanded again.
                    self.parse(&value);
                    if let (Some(t), Some(_)) = (&mut self.trace, name) {
                        t.stack.pop();
                    }
                }
            }
        }
        Some(())
    }

    /// A result operand after `?` or `:`: a `{...}` group (whitespace
    /// around it allowed), or else all remaining text.
    fn operand<'t>(&mut self, cp: &'t str) -> Option<(String, &'t str)> {
        let trimmed = skip_ws(cp);
        if trimmed.starts_with('{') {
            let (payload, rest) = self.curly_payload(trimmed)?;
            Some((payload.to_string(), rest))
        } else {
            Some((cp.to_string(), ""))
        }
    }

    /// Extracts a balanced `{...}` payload from text starting with `{`;
    /// returns it and the text after `}` and any whitespace.
    fn curly_payload<'t>(&mut self, text: &'t str) -> Option<(&'t str, &'t str)> {
        let mut depth = 0;
        for (k, c) in text.bytes().enumerate() {
            if c == b'{' {
                depth += 1;
            } else if c == b'}' {
                depth -= 1;
                if depth <= 0 {
                    return Some((&text[1..k], skip_ws(&text[k + 1..])));
                }
            }
        }
        self.fail(format!("unbalanced {{}} in attribute expression: \"{text}\""));
        None
    }

    /// `{a} op {b}`: returns "true" or "" and the text after `{b}`.
    fn relational<'t>(&mut self, text: &'t str) -> Option<(String, &'t str)> {
        let (left, cp) = self.curly_payload(text)?;
        let op_len = cp.bytes().take_while(|c| b"<>!=?+-*/~&|%".contains(c)).count();
        let op = &cp[..op_len];
        let Some(rel) = Rel::from_str(op) else {
            self.fail(format!(
                "\"==\" or \"!=\"\" or \"<\"\" or \"<=\"\" or \">=\"\" or \">\" expected at: \"...{left}}}>>>{}\"",
                tail20(cp)
            ));
            return None;
        };
        let mut cp = &cp[op_len..];
        let sfx_len = cp.bytes().take_while(u8::is_ascii_alphanumeric).count();
        let level_cmp = if sfx_len > 0 {
            if &cp[..sfx_len] != "level" {
                self.fail(format!("bad operator suffix at: \"...{op}>>>{}\"", &cp[..sfx_len]));
                return None;
            }
            cp = &cp[sfx_len..];
            true
        } else {
            false
        };
        let after_ws = skip_ws(cp);
        if !after_ws.starts_with('{') {
            self.fail(format!("\"{{expression}}\" expected at: \"...{{{left}}} {op}>>>{}\"", tail20(cp)));
            return None;
        }
        let (right, rest) = self.curly_payload(after_ws)?;
        // Operands are expanded by separate expansions (fresh nesting count).
        let lhs = self.sub_expand(left);
        let rhs = self.sub_expand(right);
        if self.error.is_some() {
            return None;
        }
        let result = if level_cmp {
            match (compat_level_from_string(&lhs), compat_level_from_string(&rhs)) {
                (Ok(l), Ok(r)) => rel.holds(l.cmp(&r)),
                (Err(w), _) | (_, Err(w)) => {
                    self.fail(w);
                    return None;
                }
            }
        } else {
            match compare(&lhs, &rhs) {
                Ok(ord) => rel.holds(ord),
                Err(w) => {
                    self.fail(w);
                    return None;
                }
            }
        };
        Some((if result { "true".to_string() } else { String::new() }, rest))
    }

    fn sub_expand(&mut self, text: &str) -> String {
        let mut sub = Expander::new(self.lookup);
        sub.parse(text);
        if let Some(w) = sub.error {
            if self.error.is_none() {
                self.error = Some(w);
            }
        }
        sub.out
    }
}

/// Plain relational comparison: numeric when both sides are all digits,
/// else byte-wise.
fn compare(left: &str, right: &str) -> Result<std::cmp::Ordering, String> {
    let alldig = |s: &str| !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit());
    if alldig(left) && alldig(right) {
        let l: i64 = left.parse().map_err(|_| format!("mac_exp_eval: bad conversion: {left}"))?;
        let r: i64 = right.parse().map_err(|_| format!("mac_exp_eval: bad conversion: {right}"))?;
        Ok(l.cmp(&r))
    } else {
        Ok(left.as_bytes().cmp(right.as_bytes()))
    }
}

#[derive(Clone, Copy)]
enum Rel {
    Eq,
    Ne,
    Lt,
    Le,
    Ge,
    Gt,
}

impl Rel {
    fn from_str(s: &str) -> Option<Rel> {
        Some(match s {
            "==" => Rel::Eq,
            "!=" => Rel::Ne,
            "<" => Rel::Lt,
            "<=" => Rel::Le,
            ">=" => Rel::Ge,
            ">" => Rel::Gt,
            _ => return None,
        })
    }

    fn holds(self, ord: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::*;
        match self {
            Rel::Eq => ord == Equal,
            Rel::Ne => ord != Equal,
            Rel::Lt => ord == Less,
            Rel::Le => ord != Greater,
            Rel::Ge => ord != Less,
            Rel::Gt => ord == Greater,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn ex(vars: &[(&str, &str)], text: &str) -> Result<String, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        expand(text, &|n: &str| map.get(n).cloned())
    }

    fn ok(vars: &[(&str, &str)], text: &str) -> String {
        ex(vars, text).unwrap()
    }

    fn warning(vars: &[(&str, &str)], text: &str) -> String {
        match ex(vars, text) {
            Err(ConfigError::Macro { warning }) => warning,
            other => panic!("expected macro error, got {other:?}"),
        }
    }

    #[test]
    fn simple_forms() {
        let v = [("a", "A"), ("b_1", "B")];
        assert_eq!(ok(&v, "x $a y"), "x A y");
        assert_eq!(ok(&v, "${a}$(b_1)"), "AB");
        assert_eq!(ok(&v, "$a.$b_1-"), "A.B-");
        assert_eq!(ok(&v, "$$a $$"), "$a $");
        assert_eq!(ok(&v, "[$undefined]"), "[]");
        assert_eq!(ok(&v, "${ a }"), "A");
    }

    #[test]
    fn conditional_forms() {
        let v = [("a", "A"), ("e", "")];
        assert_eq!(ok(&v, "${a?yes}"), "yes");
        assert_eq!(ok(&v, "${e?yes}"), "");
        assert_eq!(ok(&v, "${u?yes}"), "");
        assert_eq!(ok(&v, "${a?{yes}}"), "yes");
        assert_eq!(ok(&v, "${a:no}"), "");
        assert_eq!(ok(&v, "${e:no}"), "no");
        assert_eq!(ok(&v, "${u:{no}}"), "no");
        assert_eq!(ok(&v, "${a?{t1}:{t2}}"), "t1");
        assert_eq!(ok(&v, "${e?{t1}:{t2}}"), "t2");
        assert_eq!(ok(&v, "${e ? {t1} : t2}"), " t2");
        assert_eq!(ok(&v, "${a?$a-x}"), "A-x");
        // Postfix 2.x compatibility: plain text keeps ':' and '?' literally.
        assert_eq!(ok(&v, "${a??foo:{b}ar}"), "?foo:{b}ar");
    }

    #[test]
    fn recursive_and_nested() {
        let v = [("a", "$b"), ("b", "${c?{[$c]}}"), ("c", "C"), ("d", "$$x")];
        assert_eq!(ok(&v, "$a"), "[C]");
        assert_eq!(ok(&v, "$d"), "$x");
        assert_eq!(ok(&v, "${a?{${c:{no}}}:{x}}"), "");
        assert_eq!(ok(&v, "${u?{x}:{${c?{$c$c}}}}"), "CC");
    }

    #[test]
    fn relational_operators() {
        let v = [("n", "10"), ("s", "abc")];
        assert_eq!(ok(&v, "${{$n} == {10} ? {eq} : {ne}}"), "eq");
        assert_eq!(ok(&v, "${{$n} != {10} ? {eq} : {ne}}"), "ne");
        assert_eq!(ok(&v, "${{$n} < {9} ? {y} : {n}}"), "n"); // numeric, not string
        assert_eq!(ok(&v, "${{$n} <= {10}?{y}:{n}}"), "y");
        assert_eq!(ok(&v, "${{$n} >= {11}?{y}:{n}}"), "n");
        assert_eq!(ok(&v, "${{$n} > {9}?{y}:{n}}"), "y");
        assert_eq!(ok(&v, "${{$s} < {abd}?{y}:{n}}"), "y");
        assert_eq!(ok(&v, "${{$s} == {abc}}"), "true");
        assert_eq!(ok(&v, "${{$s} == {x}}"), "");
        assert_eq!(ok(&v, "${{a}=={a}?ok}"), "ok");
        assert_eq!(ok(&v, "${{a}=={b}:no}"), "no");
    }

    #[test]
    fn level_operators() {
        let v = [("c0", "0"), ("c3", "3.6"), ("c31", "3.10.1")];
        assert_eq!(ok(&v, "${{$c0} <level {2} ? {old} : {new}}"), "old");
        assert_eq!(ok(&v, "${{$c3} <level {2} ? {old} : {new}}"), "new");
        assert_eq!(ok(&v, "${{$c3} ==level {3.6} ? {y} : {n}}"), "y");
        assert_eq!(ok(&v, "${{$c3} !=level {3.6.0} ? {y} : {n}}"), "n");
        assert_eq!(ok(&v, "${{$c31} >level {3.9} ? {y} : {n}}"), "y");
        assert_eq!(ok(&v, "${{$c31} >=level {3.10.1} ? {y} : {n}}"), "y");
        assert_eq!(ok(&v, "${{$c31} <=level {3.2} ? {y} : {n}}"), "n");
        // string comparison would say "3.10.1" < "3.9"
        assert_eq!(ok(&v, "${{$c31} < {3.9} ? {y} : {n}}"), "y");
        assert_eq!(warning(&v, "${{x} <level {2} ? {a} : {b}}"), "malformed compatibility level syntax: \"x\"");
        assert_eq!(warning(&v, "${{1} <foo {2}}"), "bad operator suffix at: \"...<>>>foo\"");
    }

    #[test]
    fn nesting_limit() {
        let v = [("a", "$a")];
        assert_eq!(warning(&v, "$a"), "unreasonable macro call nesting: \"a\"");
        let v = [("a", "x$b"), ("b", "$a")];
        assert!(warning(&v, "$a").starts_with("unreasonable macro call nesting"));
        // 100 levels of indirection still work.
        let mut vars: Vec<(String, String)> = (0..99).map(|i| (format!("v{i}"), format!("$v{}", i + 1))).collect();
        vars.push(("v99".into(), "end".into()));
        let map: HashMap<String, String> = vars.into_iter().collect();
        assert_eq!(expand("$v0", &|n: &str| map.get(n).cloned()).unwrap(), "end");
    }

    #[test]
    fn traced_expansion_names_the_chain() {
        let map: HashMap<String, String> = [("a", "x $b"), ("b", "y${c?{ z}}"), ("c", "C")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (out, spans) = expand_traced("w $a", &|n: &str| map.get(n).cloned()).unwrap();
        assert_eq!(out, "w x y z");
        let via = |at: usize| spans.iter().find(|s| s.range.contains(&at)).map(|s| s.via.join(">"));
        assert_eq!(via(0).as_deref(), Some(""));
        assert_eq!(via(2).as_deref(), Some("a"));
        assert_eq!(via(4).as_deref(), Some("a>b"));
        // a conditional's text belongs to the value that holds it
        assert_eq!(via(6).as_deref(), Some("a>b"));
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(warning(&[], "abc ${foo"), "truncated macro reference: \"abc ${foo\"");
        assert_eq!(warning(&[], "x $(a"), "truncated macro reference: \"x $(a\"");
        assert_eq!(warning(&[], "x ${}"), "empty macro name: \"x ${}\"");
        assert_eq!(warning(&[], "x $-"), "empty macro name: \"x $-\"");
        assert_eq!(warning(&[], "${a b}"), "attribute name syntax error at: \"...a>>> b\"");
        assert_eq!(
            warning(&[], "${{a} ~ {b}}"),
            "\"==\" or \"!=\"\" or \"<\"\" or \"<=\"\" or \">=\"\" or \">\" expected at: \"...a}>>>~ {b}\""
        );
        assert_eq!(warning(&[], "${{a} == b}"), "\"{expression}\" expected at: \"...{a} ==>>> b\"");
        assert_eq!(warning(&[], "${{a} == {b} x}"), "\"?\" or \":\" expected at: \"...}>>>x\"");
        assert_eq!(warning(&[("a", "1")], "${a?{x} y}"), "\":\" expected at: \"...x}>>>y\"");
        assert_eq!(warning(&[], "${a:{x} y}"), "unexpected input at: \"...x}>>>y\"");
        assert_eq!(warning(&[], "${{a} == {b}"), "truncated macro reference: \"${{a} == {b}\"");
    }
}
