//! The rule-file syntax shared by the `regexp` and `pcre` tables (Postfix
//! regexp_table(5), pcre_table(5)), independent of the regex engine:
//!
//! * the source: a file, or the inline form `type:{ {rule1}, {rule2} }`;
//! * logical lines (comments, blank lines, indented continuation lines);
//! * `/pattern/flags result`, `!/pattern/flags result`, the regexp-only
//!   legacy `/p1/!/p2/ result`, `if /pattern/flags` ... `endif` (nested);
//! * result templates: `$1`..`$n`, `${n}`, `$(n)`, `$$`;
//! * the warnings Postfix logs for bad lines (the rest of the table is used);
//! * top-down evaluation, with a literal prefilter that skips positive
//!   patterns whose required literal text is absent from the key.
//!
//! An [`Engine`] supplies the pattern flags, compilation and matching.

use super::postmap_text::{self, is_space, BraceTokens, LogicalLines};
use super::{Dict, DictResult, OpenError, OpenRequest};
use crate::protocol::flags::{FOLD_MUL, NO_REGSUB, PATTERN, SRC_RHS_IS_FILE};
use std::os::unix::fs::MetadataExt;

/// Collect a load-time warning (logged by [`open_table`]; tests read them).
macro_rules! warn {
    ($w:expr, $($arg:tt)*) => {
        $w.push(format!($($arg)*))
    };
}

/// What differs between the regexp and pcre tables.
pub trait Engine: Send + 'static {
    type Regex: Send;
    /// Type name as used in messages ("regexp map ..." / "pcre map ...").
    const TYPE: &'static str;
    /// Compile options before any flag letter.
    const DEFAULT_OPTIONS: u32;
    /// regexp: flag letters end at `!`, and `/p1/!/p2/` is accepted.
    const SECOND_PATTERN: bool;
    /// regexp: a backslash at the very end of the line closes the pattern.
    const TRAILING_BACKSLASH_CLOSES: bool;
    /// Verb of the "no closing regexp delimiter" warning.
    const UNCLOSED_VERB: &'static str;
    /// Spelling in the "replacement index below 1" warning.
    const OUT_OF_RANGE_BELOW_ONE: &'static str;

    /// Apply one flag letter (after logging any warning of its own); false
    /// when the letter is unknown.
    fn flag(options: &mut u32, letter: u8, map: &str, line: usize, w: &mut Vec<String>) -> bool;

    /// Compile `pattern` (no NUL inside) and make room for its matches;
    /// `captures` false when no match offsets will ever be wanted (regexp's
    /// REG_NOSUB). On failure log Postfix's warning and return None. Else
    /// the compiled pattern and its number of groups.
    fn compile(
        &mut self,
        pattern: &[u8],
        options: u32,
        captures: bool,
        map: &str,
        line: usize,
        w: &mut Vec<String>,
    ) -> Option<(Self::Regex, usize)>;

    /// Match `subject` (the key, NUL-terminated: `subject[..len-1]` is the
    /// text). `groups` is how many groups the caller will read (0: none).
    /// Ok(matched) or Err(text for the warning).
    fn exec(&mut self, re: &Self::Regex, subject: &[u8], groups: usize) -> Result<bool, String>;

    /// Offsets of group `n` of the last successful [`Engine::exec`] with
    /// captures; None when it did not take part.
    fn group(&self, n: usize) -> Option<(usize, usize)>;

    /// The prefilter literal of a positive pattern compiled with `options`
    /// (see [`required_literal`]), or None.
    fn prefilter(pattern: &[u8], options: u32) -> Option<Vec<u8>>;
}

/// One piece of a result template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Group(usize),
}

/// A pattern with its compiled form and the literal prefilter.
struct Cond<R> {
    re: R,
    positive: bool,
    /// Lowercased ASCII text that every subject matching `re` contains
    /// (ASCII case-insensitively); only for positive conditions.
    literal: Option<Vec<u8>>,
}

enum Op<R> {
    Match { first: Cond<R>, second: Option<Cond<R>>, result: Vec<Piece>, max_sub: usize },
    If { cond: Cond<R>, endif: Option<usize> },
    Endif,
}

struct Rule<R> {
    line: usize,
    op: Op<R>,
}

/// A loaded rule table: rules, the engine with its match buffers, and
/// per-lookup scratch buffers reused across lookups.
pub struct RuleTable<E: Engine> {
    map: String,
    engine: E,
    rules: Vec<Rule<E::Regex>>,
    /// The key (folded if asked), NUL-terminated.
    subject: Vec<u8>,
    /// The key lowercased, for the literal prefilter.
    lower: Vec<u8>,
    any_literal: bool,
}

/// A pattern as written: text, options, polarity.
struct RawPattern<'a> {
    text: &'a [u8],
    options: u32,
    positive: bool,
}

/// Where a table came from, for change detection.
pub struct Source {
    pub text: Vec<u8>,
    /// (device, inode, mtime seconds, mtime nanoseconds) of a file table.
    pub identity: Option<(u64, u64, i64, i64)>,
}

/// Read the rules of `req`: the inline `{ {rule}, ... }` form or a file.
/// Errors are Postfix's texts. Read-only opens only.
pub fn read_source(req: &OpenRequest) -> Result<Source, OpenError> {
    req.require_read_only()?;
    let name = req.name.as_bytes();
    if name.first() == Some(&b'{') {
        let err = |e: String| OpenError::new(format!("{} map: {e}", req.type_name));
        let inner = postmap_text::extpar(name).map_err(err)?;
        let mut text = Vec::new();
        for token in BraceTokens::new(inner) {
            text.extend_from_slice(postmap_text::extpar(token).map_err(err)?);
            text.push(b'\n');
        }
        return Ok(Source { text, identity: None });
    }
    let path = req.name;
    let shown = |e: &std::io::Error| postmap_text::io_error_text(e);
    let mut file = std::fs::File::open(path).map_err(|e| OpenError::new(format!("open {path}: {}", shown(&e))))?;
    let meta = file.metadata().map_err(|e| OpenError::new(format!("fstat {path}: {}", shown(&e))))?;
    let mut text = Vec::new();
    // A read error (a directory, say) ends the input, as for Postfix's
    // line reader: the table is then empty.
    let _ = std::io::Read::read_to_end(&mut file, &mut text);
    Ok(Source { text, identity: Some(identity(&meta)) })
}

fn identity(meta: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    (meta.dev(), meta.ino(), meta.mtime(), meta.mtime_nsec())
}

/// True when the file at `path` is gone or is not the one read at open.
pub fn source_changed(path: &str, recorded: Option<(u64, u64, i64, i64)>) -> bool {
    match recorded {
        None => false,
        Some(id) => std::fs::metadata(path).map_or(true, |m| identity(&m) != id),
    }
}

impl<E: Engine> RuleTable<E> {
    /// Parse and compile every rule; bad rules are logged and skipped.
    /// `map` is the table name as Postfix prints it (the part after `type:`);
    /// `flags` are the open flags.
    pub fn load(mut engine: E, map: &str, text: &[u8], flags: u32, w: &mut Vec<String>) -> RuleTable<E> {
        let mut rules: Vec<Rule<E::Regex>> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        for line in LogicalLines::new(text, map) {
            let body = trim_end(postmap_text::until_nul(&line.text));
            if body.is_empty() {
                continue;
            }
            let Some(op) = parse_line(&mut engine, map, line.line_no, body, stack.len(), flags, w) else {
                continue;
            };
            match op {
                Op::If { .. } => stack.push(rules.len()),
                Op::Endif => {
                    let open = stack.pop().expect("ENDIF accepted only inside IF");
                    let here = rules.len();
                    if let Op::If { endif, .. } = &mut rules[open].op {
                        *endif = Some(here);
                    }
                }
                Op::Match { .. } => {}
            }
            rules.push(Rule { line: line.line_no, op });
        }
        for &open in stack.iter().rev() {
            w.push(format!("{} map {map}, line {}: IF has no matching ENDIF", E::TYPE, rules[open].line));
        }
        let any_literal = rules.iter().any(|r| match &r.op {
            Op::Match { first, second, .. } => {
                first.literal.is_some() || second.as_ref().is_some_and(|c| c.literal.is_some())
            }
            Op::If { cond, .. } => cond.literal.is_some(),
            Op::Endif => false,
        });
        RuleTable { map: map.to_string(), engine, rules, subject: Vec::new(), lower: Vec::new(), any_literal }
    }

    /// Number of rules kept (match, if and endif rules).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Evaluate the rules top-down against `key` (ASCII-lowercased first
    /// when `fold`); on a hit write the expanded result into `out`.
    pub fn lookup(&mut self, key: &[u8], fold: bool, out: &mut Vec<u8>) -> bool {
        let key = postmap_text::until_nul(key);
        self.subject.clear();
        self.subject.extend_from_slice(key);
        if fold {
            self.subject.make_ascii_lowercase();
        }
        self.subject.push(0);
        if self.any_literal {
            self.lower.clear();
            self.lower.extend_from_slice(key);
            self.lower.make_ascii_lowercase();
        }
        let RuleTable { map, engine, rules, subject, lower, .. } = self;
        let mut i = 0;
        while i < rules.len() {
            let rule = &rules[i];
            match &rule.op {
                Op::Match { first, second, result, max_sub } => {
                    let groups = if *max_sub > 0 { max_sub + 1 } else { 0 };
                    if !holds(engine, first, subject, lower, groups, map, rule.line)
                        || second.as_ref().is_some_and(|c| !holds(engine, c, subject, lower, 0, map, rule.line))
                    {
                        i += 1;
                        continue;
                    }
                    out.clear();
                    for piece in result {
                        match piece {
                            Piece::Text(t) => out.extend_from_slice(t),
                            Piece::Group(n) => {
                                if let Some((s, e)) = engine.group(*n) {
                                    out.extend_from_slice(&subject[s..e]);
                                }
                            }
                        }
                    }
                    return true;
                }
                Op::If { cond, endif } => {
                    if holds(engine, cond, subject, lower, 0, map, rule.line) {
                        i += 1;
                    } else {
                        match endif {
                            Some(j) => i = j + 1,
                            None => return false,
                        }
                    }
                }
                Op::Endif => i += 1,
            }
        }
        false
    }
}

/// A regexp or pcre table: the rules, loaded and compiled once at open and
/// shared by every client of the worker.
pub struct PatternDict<E: Engine> {
    flags: u32,
    path: String,
    identity: Option<(u64, u64, i64, i64)>,
    table: RuleTable<E>,
}

impl<E: Engine> Dict for PatternDict<E> {
    fn flags(&self) -> u32 {
        self.flags
    }

    /// FOLD_MUL in the request flags lowercases the key before matching.
    fn lookup(&mut self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        Ok(self.table.lookup(key, flags & FOLD_MUL != 0, out))
    }

    /// The file was removed, replaced or modified since it was read (always
    /// false for the inline form).
    fn changed(&self) -> bool {
        source_changed(&self.path, self.identity)
    }
}

/// Open a regexp/pcre table with `engine`: Postfix's refusals and texts,
/// flags = open flags | PATTERN.
pub fn open_table<E: Engine>(req: &OpenRequest, engine: E) -> Result<Box<dyn Dict>, OpenError> {
    let source = read_source(req)?;
    let mut warnings = Vec::new();
    let table = RuleTable::load(engine, req.name, &source.text, req.flags, &mut warnings);
    for warning in warnings {
        log::warn!("{warning}");
    }
    Ok(Box::new(PatternDict {
        flags: req.flags | PATTERN,
        path: req.name.to_string(),
        identity: source.identity,
        table,
    }))
}

/// Whether a condition holds: the pattern matches (positive) or does not
/// (negative). A matching error is logged and counts as "does not hold",
/// as in Postfix.
fn holds<E: Engine>(
    engine: &mut E,
    cond: &Cond<E::Regex>,
    subject: &[u8],
    lower: &[u8],
    groups: usize,
    map: &str,
    line: usize,
) -> bool {
    if let Some(lit) = &cond.literal {
        // Only positive conditions have a literal: absent literal = no match.
        if memmem(lower, lit).is_none() {
            return false;
        }
    }
    match engine.exec(&cond.re, subject, groups) {
        Ok(matched) => matched == cond.positive,
        Err(text) => {
            log::warn!("{} map {map}, line {line}: {text}", E::TYPE);
            false
        }
    }
}

fn memmem(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    let first = needle[0];
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut pos = 0;
    while pos <= last_start {
        let off = hay[pos..=last_start].iter().position(|&b| b == first)?;
        let at = pos + off;
        if &hay[at..at + needle.len()] == needle {
            return Some(at);
        }
        pos = at + 1;
    }
    None
}

/// Postfix `trimblanks()`: strip trailing whitespace.
fn trim_end(s: &[u8]) -> &[u8] {
    let end = s.iter().rposition(|&b| !is_space(b)).map_or(0, |i| i + 1);
    &s[..end]
}

fn skip_space(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    &s[start..]
}

fn lossy(s: &[u8]) -> String {
    String::from_utf8_lossy(s).into_owned()
}

/// `strncasecmp(p, word, len) == 0 && !ISALNUM(p[len])`.
fn starts_with_word(p: &[u8], word: &[u8]) -> bool {
    p.len() >= word.len()
        && p[..word.len()].eq_ignore_ascii_case(word)
        && !p.get(word.len()).is_some_and(u8::is_ascii_alphanumeric)
}

/// Parse and compile one logical line (text trimmed, non-empty).
fn parse_line<E: Engine>(
    engine: &mut E,
    map: &str,
    line: usize,
    p: &[u8],
    nesting: usize,
    flags: u32,
    w: &mut Vec<String>,
) -> Option<Op<E::Regex>> {
    let ty = E::TYPE;
    if !p[0].is_ascii_alphanumeric() {
        let (first, rest) = get_pattern::<E>(map, line, w, p)?;
        let (second, rest) = if E::SECOND_PATTERN && rest.first() == Some(&b'!') {
            let (pat, rest) = get_pattern::<E>(map, line, w, rest)?;
            (Some(pat), rest)
        } else {
            (None, rest)
        };
        let mut replacement = skip_space(rest);
        if replacement.is_empty() {
            warn!(w, "{ty} map {map}, line {line}: no replacement text: using empty string");
        }
        let encoded;
        if flags & SRC_RHS_IS_FILE != 0 {
            match postmap_text::file_to_base64(replacement) {
                Ok(b64) => {
                    encoded = b64;
                    replacement = &encoded;
                }
                Err(err) => {
                    warn!(w, "{ty} map {map}, line {line}: {err}: skipping this rule");
                    return None;
                }
            }
        }
        let Some((result, max_sub)) = parse_template::<E>(map, line, replacement, w) else {
            warn!(w, "{ty} map {map}, line {line}: bad replacement syntax: skipping this rule");
            return None;
        };
        if max_sub > 0 && !first.positive {
            warn!(
                w,
                "{ty} map {map}, line {line}: $number found in negative match replacement text: skipping this rule"
            );
            return None;
        }
        if max_sub > 0 && flags & NO_REGSUB != 0 {
            warn!(w, "{ty} map {map}, line {line}: regular expression substitution is not allowed: skipping this rule");
            return None;
        }
        let (re, groups) = engine.compile(first.text, first.options, max_sub > 0, map, line, w)?;
        if max_sub > groups as u64 {
            warn!(
                w,
                "{ty} map {map}, line {line}: out of range replacement index \"{}\": skipping this rule",
                max_sub as i32
            );
            return None;
        }
        let max_sub = max_sub as usize;
        let first = make_cond::<E>(re, &first);
        let second = match second {
            Some(pat) => {
                let (re, _) = engine.compile(pat.text, pat.options, false, map, line, w)?;
                Some(make_cond::<E>(re, &pat))
            }
            None => None,
        };
        Some(Op::Match { first, second, result, max_sub })
    } else if starts_with_word(p, b"IF") {
        let (pat, rest) = get_pattern::<E>(map, line, w, skip_space(&p[2..]))?;
        let rest = skip_space(rest);
        if !rest.is_empty() {
            warn!(w, "{ty} map {map}, line {line}: ignoring extra text after IF statement: \"{}\"", lossy(rest));
            warn!(w, "{ty} map {map}, line {line}: do not prepend whitespace to statements between IF and ENDIF");
        }
        // Postfix compiles IF patterns without the no-substrings hint.
        let (re, _) = engine.compile(pat.text, pat.options, true, map, line, w)?;
        Some(Op::If { cond: make_cond::<E>(re, &pat), endif: None })
    } else if starts_with_word(p, b"ENDIF") {
        if nesting == 0 {
            warn!(w, "{ty} map {map}, line {line}: ignoring ENDIF without matching IF");
            return None;
        }
        if !skip_space(&p[5..]).is_empty() {
            warn!(w, "{ty} map {map}, line {line}: ignoring extra text after ENDIF");
        }
        Some(Op::Endif)
    } else {
        warn!(w, "{ty} map {map}, line {line}: ignoring unrecognized request");
        None
    }
}

fn make_cond<E: Engine>(re: E::Regex, pat: &RawPattern) -> Cond<E::Regex> {
    let literal = if pat.positive { E::prefilter(pat.text, pat.options) } else { None };
    Cond { re, positive: pat.positive, literal }
}

/// Extract `[!...]<delim>pattern<delim>flags` from the start of `p`; the
/// rest of the line follows.
fn get_pattern<'a, E: Engine>(
    map: &str,
    line: usize,
    w: &mut Vec<String>,
    p: &'a [u8],
) -> Option<(RawPattern<'a>, &'a [u8])> {
    let ty = E::TYPE;
    let mut positive = true;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            b'!' => positive = !positive,
            b if is_space(b) => {}
            _ => break,
        }
        i += 1;
    }
    if i >= p.len() {
        warn!(w, "{ty} map {map}, line {line}: no regexp: skipping this rule");
        return None;
    }
    let delim = p[i];
    let start = i + 1;
    let mut j = start;
    let mut closed = false;
    while j < p.len() {
        if p[j] == b'\\' {
            if j + 1 < p.len() {
                j += 1;
            } else {
                closed = E::TRAILING_BACKSLASH_CLOSES;
                break;
            }
        } else if p[j] == delim {
            closed = true;
            break;
        }
        j += 1;
    }
    if !closed {
        warn!(
            w,
            "{ty} map {map}, line {line}: no closing regexp delimiter \"{}\": {} this rule",
            delim as char,
            E::UNCLOSED_VERB
        );
        return None;
    }
    let text = &p[start..j];
    let mut k = j + 1;
    let mut options = E::DEFAULT_OPTIONS;
    while k < p.len() && !is_space(p[k]) && !(E::SECOND_PATTERN && p[k] == b'!') {
        if !E::flag(&mut options, p[k], map, line, w) {
            warn!(w, "{ty} map {map}, line {line}: unknown regexp option \"{}\": skipping this rule", p[k] as char);
            return None;
        }
        k += 1;
    }
    Some((RawPattern { text, options, positive }, &p[k..]))
}

/// Postfix `mac_parse()` with the table's `$number` pre-scan: the template
/// pieces and the largest group number, or None after the warnings (the
/// caller then logs "bad replacement syntax"). The number is kept as C's
/// `size_t` from `atoi()` so that out-of-range texts match Postfix's.
fn parse_template<E: Engine>(map: &str, line: usize, value: &[u8], w: &mut Vec<String>) -> Option<(Vec<Piece>, u64)> {
    let ty = E::TYPE;
    let mut pieces = Vec::new();
    let mut buf = Vec::new();
    let mut max_sub: u64 = 0;
    let mut error = false;
    let mut vp = 0;
    while vp < value.len() {
        if value[vp] != b'$' {
            buf.push(value[vp]);
            vp += 1;
        } else if value.get(vp + 1) == Some(&b'$') {
            buf.push(b'$');
            vp += 2;
        } else {
            if !buf.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut buf)));
            }
            vp += 1;
            let name: &[u8];
            match value.get(vp) {
                Some(&open @ (b'(' | b'{')) => {
                    let close = if open == b'(' { b')' } else { b'}' };
                    let mut level = 1;
                    let mut ep = vp + 1;
                    while level > 0 {
                        match value.get(ep) {
                            None => {
                                warn!(w, "truncated macro reference: \"{}\"", lossy(value));
                                return None;
                            }
                            Some(&b) if b == open => level += 1,
                            Some(&b) if b == close => level -= 1,
                            _ => {}
                        }
                        ep += 1;
                    }
                    name = &value[vp + 1..ep - 1];
                    vp = ep;
                }
                _ => {
                    let len = value[vp..].iter().take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_').count();
                    name = &value[vp..vp + len];
                    vp += len;
                }
            }
            if name.is_empty() {
                warn!(w, "empty macro name: \"{}\"", lossy(value));
                return None;
            }
            if !name.iter().all(u8::is_ascii_digit) {
                warn!(w, "{ty} map {map}, line {line}: non-numeric replacement index \"{}\"", lossy(name));
                error = true;
                continue;
            }
            // atoi(): strtol saturating at LONG_MAX, then truncated to int;
            // stored into a size_t.
            let long = std::str::from_utf8(name).ok().and_then(|s| s.parse::<i64>().ok()).unwrap_or(i64::MAX);
            let n = long as i32 as i64 as u64;
            if n < 1 {
                warn!(
                    w,
                    "{ty} map {map}, line {line}: {} replacement index \"{}\"",
                    E::OUT_OF_RANGE_BELOW_ONE,
                    lossy(name)
                );
                error = true;
                continue;
            }
            max_sub = max_sub.max(n);
            pieces.push(Piece::Group(n as usize));
        }
    }
    if error {
        return None;
    }
    if !buf.is_empty() {
        pieces.push(Piece::Text(buf));
    }
    Some((pieces, max_sub))
}

/// Pattern dialect for [`required_literal`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// glibc POSIX extended syntax.
    PosixExtended,
    /// PCRE2 syntax without the extended (`x`) option.
    Pcre,
}

/// A text that every string matching `pattern` must contain, compared ASCII
/// case-insensitively (so it is sound for caseless and case-sensitive
/// patterns alike): the longest run of plain ASCII literal characters at the
/// top level of a pattern without top-level alternation. None whenever the
/// pattern uses a construct this scanner does not fully understand.
/// Returned lowercased.
pub fn required_literal(pattern: &[u8], dialect: Dialect) -> Option<Vec<u8>> {
    let pcre = dialect == Dialect::Pcre;
    if pcre {
        // Verbs such as (*ACCEPT), (*UTF); quoting; comments; inline option
        // settings like (?x) or (?i) and other letter forms.
        let w = |s: &[u8]| pattern.windows(s.len()).any(|x| x == s);
        if w(b"(*") || w(b"\\Q") || w(b"(?#") {
            return None;
        }
        if pattern
            .windows(3)
            .any(|x| x[0] == b'(' && x[1] == b'?' && !matches!(x[2], b':' | b'=' | b'!' | b'<' | b'\''))
        {
            return None;
        }
        // (?<= and (?<! are fine; (?<name> is fine too (a group).
    }
    let mut best: Vec<u8> = Vec::new();
    let mut run: Vec<u8> = Vec::new();
    let end_run = |run: &mut Vec<u8>, best: &mut Vec<u8>| {
        if run.len() > best.len() {
            *best = std::mem::take(run);
        } else {
            run.clear();
        }
    };
    let p = pattern;
    let mut i = 0;
    while i < p.len() {
        let c = p[i];
        match c {
            b'|' => return None,
            b')' => return None,
            b'(' => {
                end_run(&mut run, &mut best);
                i = skip_group(p, i, pcre)?;
                continue;
            }
            b'[' => {
                end_run(&mut run, &mut best);
                i = skip_bracket(p, i, pcre)?;
                continue;
            }
            b'*' | b'?' => {
                run.pop();
                end_run(&mut run, &mut best);
            }
            b'+' => end_run(&mut run, &mut best),
            b'{' => {
                run.pop();
                end_run(&mut run, &mut best);
                match p[i..].iter().position(|&b| b == b'}') {
                    Some(k) => i += k,
                    None => return best_or_none(best),
                }
            }
            b'.' | b'^' | b'$' => end_run(&mut run, &mut best),
            b'\\' => {
                let &next = p.get(i + 1)?;
                if pcre && next.is_ascii_alphanumeric() {
                    // Multi-character escapes (\x41, \x{..}, \cX, \g-1,
                    // \k<name>, \p{..}): skip the argument, count nothing.
                    end_run(&mut run, &mut best);
                    i += if next == b'c' { 3 } else { 2 };
                    if !matches!(next, b'x' | b'o' | b'g' | b'k' | b'p' | b'P' | b'N' | b'0'..=b'9') {
                        continue; // \d, \w, \b ...: nothing follows
                    }
                    while i < p.len() && (p[i].is_ascii_alphanumeric() || (next == b'g' && matches!(p[i], b'+' | b'-')))
                    {
                        i += 1;
                    }
                    if let Some(&open @ (b'{' | b'<' | b'\'')) = p.get(i) {
                        let close = match open {
                            b'{' => b'}',
                            b'<' => b'>',
                            _ => b'\'',
                        };
                        i = i + 1 + p[i + 1..].iter().position(|&b| b == close)? + 1;
                    }
                    continue;
                }
                let literal = !next.is_ascii_alphanumeric()
                    && next.is_ascii()
                    && (pcre || !matches!(next, b'`' | b'\'' | b'<' | b'>'));
                if literal && (next.is_ascii_graphic() || next == b' ') {
                    // Quantifier applies to this one character.
                    if quantified_optional(p, i + 2) {
                        end_run(&mut run, &mut best);
                    } else {
                        run.push(next.to_ascii_lowercase());
                    }
                } else {
                    end_run(&mut run, &mut best);
                }
                i += 2;
                continue;
            }
            _ if c.is_ascii() && (c.is_ascii_graphic() || c == b' ') => {
                if quantified_optional(p, i + 1) {
                    end_run(&mut run, &mut best);
                } else {
                    run.push(c.to_ascii_lowercase());
                }
            }
            _ => end_run(&mut run, &mut best),
        }
        i += 1;
    }
    end_run(&mut run, &mut best);
    best_or_none(best)
}

fn best_or_none(best: Vec<u8>) -> Option<Vec<u8>> {
    (!best.is_empty()).then_some(best)
}

/// Whether the atom ending before `at` is made optional by a quantifier
/// (`*`, `?`, `{`); `+` keeps it required but ends the run, which the caller
/// handles when it reaches the `+`.
fn quantified_optional(p: &[u8], at: usize) -> bool {
    matches!(p.get(at), Some(b'*' | b'?' | b'{'))
}

/// Length of the escape sequence at `p[i]` as far as structure goes: PCRE's
/// `\cX` takes the next character whatever it is.
fn escape_len(p: &[u8], i: usize, pcre: bool) -> usize {
    if pcre && p.get(i + 1) == Some(&b'c') {
        3
    } else {
        2
    }
}

/// Index just past the group opening at `p[open]`, or None if unbalanced.
fn skip_group(p: &[u8], open: usize, pcre: bool) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < p.len() {
        match p[i] {
            b'\\' => i += escape_len(p, i, pcre) - 1,
            b'[' => {
                i = skip_bracket(p, i, pcre)?;
                continue;
            }
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index just past the bracket expression opening at `p[open]`.
fn skip_bracket(p: &[u8], open: usize, pcre: bool) -> Option<usize> {
    let mut i = open + 1;
    if p.get(i) == Some(&b'^') {
        i += 1;
    }
    if p.get(i) == Some(&b']') {
        i += 1;
    }
    while i < p.len() {
        match p[i] {
            b']' => return Some(i + 1),
            b'\\' if pcre => i += escape_len(p, i, pcre) - 1,
            b'[' if matches!(p.get(i + 1), Some(b':' | b'.' | b'=')) => {
                let kind = p[i + 1];
                let mut k = i + 2;
                loop {
                    if k + 1 >= p.len() {
                        return None;
                    }
                    if p[k] == kind && p[k + 1] == b']' {
                        break;
                    }
                    k += 1;
                }
                i = k + 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals() {
        let r = |s: &str| required_literal(s.as_bytes(), Dialect::PosixExtended).map(|v| String::from_utf8(v).unwrap());
        let q = |s: &str| required_literal(s.as_bytes(), Dialect::Pcre).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(r("^(.*)@Example\\.com$").as_deref(), Some("@example.com"));
        assert_eq!(r("abc|def"), None);
        assert_eq!(r("(abc|def)xy").as_deref(), Some("xy"));
        assert_eq!(r("abcd?ef").as_deref(), Some("abc"));
        assert_eq!(r("ab+cd").as_deref(), Some("ab"));
        assert_eq!(r("ab{2}cd").as_deref(), Some("cd"));
        assert_eq!(r("x*|y+"), None);
        assert_eq!(r("\\<word\\>").as_deref(), Some("word"));
        assert_eq!(r("[[:alpha:]]]x").as_deref(), Some("]x"));
        assert_eq!(r("[]a]bc").as_deref(), Some("bc"));
        assert_eq!(r("[\\]]q").as_deref(), Some("]q"));
        assert_eq!(q("[\\]]q").as_deref(), Some("q"));
        assert_eq!(q("(?i)abc"), None);
        assert_eq!(q("(?:ab|c)def").as_deref(), Some("def"));
        assert_eq!(q("a(*ACCEPT)bc"), None);
        assert_eq!(q("\\Qa|b\\E"), None);
        assert_eq!(q("\\d+foo").as_deref(), Some("foo"));
        assert_eq!(q("\\x41bc").as_deref(), None);
        assert_eq!(q("\\cabc").as_deref(), Some("bc"));
        assert_eq!(q("\\g-1xy").as_deref(), None);
        assert_eq!(q("\\k<n>xy").as_deref(), Some("xy"));
        assert_eq!(q("[\\c]]x").as_deref(), Some("x"));
        assert_eq!(r("(unbalanced"), None);
        assert_eq!(r("a\\"), None);
        assert_eq!(memmem(b"hello", b"llo"), Some(2));
        assert_eq!(memmem(b"hello", b"lol"), None);
        assert_eq!(memmem(b"he", b"hello"), None);
    }
}

/// Differential tests against Postfix's own `postmap -q - regexp:FILE` and
/// `postmap -q - pcre:FILE`: same answers for every key, same warnings.
#[cfg(test)]
mod differential {
    use super::*;
    use crate::dict::pcre::Pcre;
    use crate::dict::regexp::Posix;
    use crate::protocol::flags::{DUP_WARN, FOLD_FIX, LOCK, UTF8_REQUEST};
    use std::io::Write;
    use std::path::PathBuf;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The flags `postmap -q` opens tables with (postmap.c: DUP_WARN |
    /// FOLD_FIX | UTF8_REQUEST, plus LOCK for queries). FOLD_FIX does not
    /// fold pattern tables; only FOLD_MUL does.
    const POSTMAP_FLAGS: u32 = DUP_WARN | FOLD_FIX | UTF8_REQUEST | LOCK;

    pub(crate) struct TempDir(pub PathBuf);

    impl TempDir {
        pub(crate) fn new() -> TempDir {
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "proxymap-pattern-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
        pub(crate) fn write(&self, name: &str, data: &[u8]) -> String {
            let path = self.0.join(name);
            std::fs::write(&path, data).unwrap();
            path.to_str().unwrap().to_string()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    type Answers = Vec<(String, String)>;

    /// Run `postmap -c DIR -q - TYPE:FILE` with `keys` on stdin.
    fn postmap(dir: &TempDir, ty: &str, file: &str, keys: &[String]) -> (Answers, Vec<String>) {
        let config = dir.0.join("config");
        std::fs::create_dir_all(&config).unwrap();
        std::fs::write(config.join("main.cf"), "").unwrap();
        let mut child = match Command::new("postmap")
            .arg("-c")
            .arg(&config)
            .args(["-q", "-", &format!("{ty}:{file}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => panic!("cannot run postmap ({e}): run scripts/install-test-deps.sh to install Postfix"),
        };
        let mut input = String::new();
        for k in keys {
            input.push_str(k);
            input.push('\n');
        }
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("fatal"), "postmap failed: {stderr}");
        let answers = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let (k, v) = l.split_once('\t').unwrap();
                (k.to_string(), v.to_string())
            })
            .collect();
        let warnings = stderr
            .lines()
            .filter_map(|l| l.strip_prefix("postmap: warning: "))
            .filter(|l| !l.contains("empty string result is not allowed") && !l.contains("should return NO RESULT"))
            .map(str::to_string)
            .collect();
        (answers, warnings)
    }

    fn ours<E: Engine>(engine: E, file: &str, keys: &[String], flags: u32) -> (Answers, Vec<String>) {
        let text = std::fs::read(file).unwrap();
        let mut warnings = Vec::new();
        let mut table = RuleTable::load(engine, file, &text, flags, &mut warnings);
        let mut answers = Vec::new();
        let mut out = Vec::new();
        for k in keys {
            if table.lookup(k.as_bytes(), flags & FOLD_MUL != 0, &mut out) {
                answers.push((k.clone(), String::from_utf8(out.clone()).unwrap()));
            }
        }
        (answers, warnings)
    }

    fn compare(ty: &str, table: &str, keys: &[String]) {
        let dir = TempDir::new();
        let file = dir.write(&format!("table.{ty}"), table.as_bytes());
        let expected = postmap(&dir, ty, &file, keys);
        let got = match ty {
            "regexp" => ours(Posix::default(), &file, keys, POSTMAP_FLAGS),
            _ => ours(Pcre::default(), &file, keys, POSTMAP_FLAGS),
        };
        assert_eq!(got.1, expected.1, "{ty} warnings differ for table:\n{table}");
        for (e, g) in expected.0.iter().zip(got.0.iter()) {
            assert_eq!(g, e, "{ty} answers differ for table:\n{table}");
        }
        assert_eq!(
            got.0.len(),
            expected.0.len(),
            "{ty} hit counts differ for table:\n{table}\n{:?}\n{:?}",
            got.0,
            expected.0
        );
        assert!(!expected.0.is_empty(), "the test table should match something");
    }

    /// A few hundred keys: words, addresses, header-like strings, tricky
    /// characters, upper/lower case variants.
    fn keys() -> Vec<String> {
        let mut keys: Vec<String> = [
            "",
            "a",
            "b",
            "x",
            "y",
            "yyy",
            "xxyy",
            "yyyxx",
            "xy",
            "aaa",
            "AAA",
            "abc",
            "ABC",
            "aBc",
            "abcabc",
            "user@example.com",
            "User@Example.COM",
            "joe@sub.example.com",
            "joe@example.org",
            "postmaster@example.com",
            "root",
            "root@localhost",
            "MAILER-DAEMON",
            "a.b.c",
            "a+b",
            "a$b",
            "$",
            "$$",
            "100",
            "007",
            "x/y",
            "x\\y",
            "Subject: hello",
            "Subject: FREE money",
            "From: spammer@evil.example",
            "To: <joe@example.com>",
            "Received: from mail.example.com (mail.example.com [192.0.2.1])",
            "192.0.2.1",
            "[192.0.2.1]",
            "2001:db8::1",
            "foo bar",
            "foo  bar",
            "end$",
            "^start",
            "caf\u{e9}",
            "CAF\u{c9}",
            "\u{e9}t\u{e9}",
            "zz",
            "zzz",
            "zzzz",
            "if",
            "endif",
            "ENDIF",
            "iffy",
            "neg",
            "negative",
            "nothing here",
            "word",
            "words",
            "sword",
            "The Word",
            "ab",
            "aab",
            "abb",
            "abab",
            "ba",
            "bab",
            "q",
            "qq",
            "line1\\nline2",
            "...",
            ".",
            "-",
            "--",
            "a-b",
            "a_b",
            "A_B",
            "ununu",
            "unx",
            "xun",
            "dotall",
            "multi",
            "ANCHOR",
            "anchor",
            "xanchor",
            "greedy",
            "greeeedy",
            "k1",
            "k12",
            "k123",
            "kk",
            "%",
            "%%",
            "a%b",
            "bnotc",
            "bc",
            "cb",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let locals = ["joe", "Joe", "info", "no-reply", "x.y", "a+tag"];
        let domains = ["example.com", "EXAMPLE.COM", "sub.example.com", "example.net", "evil.example", "localhost"];
        for l in locals {
            for d in domains {
                keys.push(format!("{l}@{d}"));
            }
        }
        for n in 0..40 {
            keys.push(format!("item{n}"));
            keys.push("y".repeat(n % 7) + &"x".repeat(n % 5));
            keys.push(format!("k{}v{}", "ab".repeat(n % 4), n));
        }
        keys
    }

    /// Rules both types accept, with the same meaning.
    const COMMON: &str = r#"# comment
/^(x*|y+)$/	longest=<$1>
/(x*|y+)/	first=<$1>
/^(.*)@(sub\.)?example\.com$/	local=$1 sub=${2} again=$(1) dollar=$$ end
/^root(@localhost)?$/	root-rule
!/@/	no-at
/^Subject: (.*)FREE/	free=[$1]
/^(k)(1)?(2)?(3)?$/	$1|$2|$3|$4
if /^item/
/^item1/	item-one
if !/5/
/^item([0-9]*)$/	item=$1
endif
/item/	item-with-5
endif
IF /^[a-z]{2}$/
/b/	two-with-b
ENDIF
/^abc$/	exact-abc-caseless
/^ABC$/i	case-sensitive-ABC
/^aBc$/ii	twice-toggled
#delims#	hash-delim
|^x/y$|	pipe-delim-with-slash
/^x\/y$/	escaped-slash
/^end\$$/	literal-dollar
/foo +bar/	spaces
/^[[:alpha:]]+[[:digit:]]+$/	alnum-class
/^(a|ab)(c|bcd)?$/	alt=$1,$2
/caf./	cafe-dot
/^greee*dy$/	greedy
/^(a)(b)?(a)?(b)?$/	optional=<$2><$4>
/^\[(.*)\]$/	bracketed=$1
/%/	percent
/^word$/m	multiline-word
/unused/
/^k(a|b)+/	kab
/^ba/	BA
/^--?$/	dash
/^[.]+$/	dots
"#;

    /// Bad lines mixed with good ones (both types).
    const BAD: &str = r#"/(unclosed/	x
/a(b)/	$2
!/neg(x)/	$1
/nope/	$a$b
/trunc/	${1
/emp/	$
/(big)/	$4294967297
/(huge)/	$99999999999999999999
/(zero)/	$00
/good/q	bad-flag
/noclose
endif
/b/	b-rule
if /zz/
/zzz/	zzz-inner
if /zzzz/
/zzzz/	deep
endif
unknown request
/x/	x-rule
endif extra
if /nevermatch/ extra text
/a/	never
endif
if /q/
/^qq$/	qq-in-open-if
"#;

    #[test]
    fn regexp_matches_postmap() {
        let keys = keys();
        compare("regexp", COMMON, &keys);
        compare("regexp", BAD, &keys);
        compare(
            "regexp",
            "/b/!/c/\tbnotc\n/^a/i!/b/\tanotb\n!/a/!/b/\tneither-a-nor-b-no\n/^k1\\\n/\\(x\\)\\1/x\tbasic=$1\n/x*|y+/\tfinal\n",
            &keys,
        );
        compare("regexp", "/^(.*)$/\t$1\n", &keys);
        compare("regexp", "/^a/\tfirst\n/^a/m\tsecond\n  indented continues\n/unused/ $2\n", &keys);
    }

    #[test]
    fn pcre_matches_postmap() {
        let keys = keys();
        compare("pcre", COMMON, &keys);
        compare("pcre", BAD, &keys);
        compare(
            "pcre",
            concat!(
                "/^(?:joe|info)@(?<dom>[^.]+)\\.(\\w+)$/\tnamed=$1.$2\n",
                "/anchor/A\tanchored\n",
                "/^end$/E\tendonly\n",
                "/^(gre+)(.*)$/U\tungreedy=$1+$2\n",
                "/^(gre+)(.*)$/\tgreedy=$1+$2\n",
                "/^a b c $/x\textended\n",
                "/x/X\tobsolete-X\n",
                "/y/!/z/\tno-legacy\n",
                "/^\\d+$/\tdigits\n",
                "/^k(?=1)/\tlookahead\n",
                "/^(a)(?:b)?(c)?/\tnc=$1$2\n",
                "/(\\w+)\\s+(\\w+)/\tswap=$2 $1\n",
                "/caf\\x{e9}|CAF/\thex\n",
                "/(a|ab)(c|bcd)?/\tperl-alt=$1,$2\n",
                "/(*ACCEPT)/\taccept\n",
            ),
            &keys,
        );
        compare("pcre", "/^(.*)$/\t$1\n", &keys);
    }
}

/// `cargo test --release --lib many_rules -- --ignored --nocapture`: load
/// and lookup times with 5,000 rules (a measurement, not a pass/fail test).
#[cfg(test)]
mod speed {
    use super::*;
    use crate::dict::pcre::Pcre;
    use crate::dict::regexp::Posix;

    fn table(n: usize) -> String {
        let mut t = String::new();
        for i in 0..n {
            match i % 4 {
                0 => t.push_str(&format!("/^(.*)@host{i}\\.example\\.com$/\tuser=$1\n")),
                1 => t.push_str(&format!("/\\.domain{i}\\.net$/\tREJECT {i}\n")),
                2 => t.push_str(&format!("/^Subject:.*spam{i}/\tDISCARD\n")),
                _ => t.push_str(&format!("/^user{i}[0-9]*@/\tOK\n")),
            }
        }
        t
    }

    fn run<E: Engine>(engine: E) {
        let text = table(5000);
        let start = std::time::Instant::now();
        let mut w = Vec::new();
        let mut t = RuleTable::load(engine, "speed", text.as_bytes(), 0, &mut w);
        let load = start.elapsed();
        let keys = ["joe@host4996.example.com", "nobody@nowhere.example", "Subject: hello world", "user4999@x"];
        let mut out = Vec::new();
        let rounds = 200;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            for k in keys {
                t.lookup(k.as_bytes(), false, &mut out);
            }
        }
        let per = start.elapsed() / (rounds * keys.len() as u32);
        println!("{}: 5000 rules load {load:?}, {per:?} per lookup", E::TYPE);
    }

    #[test]
    #[ignore]
    fn many_rules() {
        run(Posix::default());
        run(Pcre::default());
    }
}
