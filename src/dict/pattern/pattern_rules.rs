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

use crate::dict::postmap_text::{self, is_space, lossy, trim_end, BraceTokens, LogicalLines};
use crate::dict::{Dict, DictResult, OpenError, OpenRequest};
use crate::protocol::flags::{FOLD_MUL, NO_REGSUB, PATTERN, SRC_RHS_IS_FILE};
use crate::sync::lock;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

/// Collect a load-time warning (logged by [`open_table`]; tests read them).
macro_rules! warn {
    ($w:expr, $($arg:tt)*) => {
        $w.push(format!($($arg)*))
    };
}

/// What differs between the regexp and pcre tables. An engine holds no
/// state of its own: compiled patterns are shared by every lookup, and
/// what a match writes goes to the lookup's [`Engine::Scratch`].
pub(crate) trait Engine: Default + Send + Sync + 'static {
    type Regex: Send + Sync;
    /// The match buffers of one lookup in progress.
    type Scratch: Send;
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

    /// Compile `pattern` (no NUL inside); `captures` false when no match
    /// offsets will ever be wanted (regexp's REG_NOSUB). On failure log
    /// Postfix's warning and return None. Else the compiled pattern and its
    /// number of groups.
    fn compile(
        &self,
        pattern: &[u8],
        options: u32,
        captures: bool,
        map: &str,
        line: usize,
        w: &mut Vec<String>,
    ) -> Option<(Self::Regex, usize)>;

    /// Match buffers with room for `groups` groups (group 0 included): the
    /// most that any compiled pattern of the table has.
    fn scratch(&self, groups: usize) -> Self::Scratch;

    /// Match `subject` (the key, NUL-terminated: `subject[..len-1]` is the
    /// text). `groups` is how many groups the caller will read (0: none).
    /// Ok(matched) or Err(text for the warning).
    fn exec(&self, s: &mut Self::Scratch, re: &Self::Regex, subject: &[u8], groups: usize) -> Result<bool, String>;

    /// Offsets of group `n` of the last successful [`Engine::exec`] into
    /// `s` with captures; None when it did not take part.
    fn group(&self, s: &Self::Scratch, n: usize) -> Option<(usize, usize)>;

    /// The prefilter literal of a positive pattern compiled with `options`
    /// (see [`required_literal`]), or None.
    fn prefilter(pattern: &[u8], options: u32) -> Option<Vec<u8>>;

    /// A regex-syntax pattern for the rule set whose language includes that
    /// of the positive pattern compiled with `options` (see [`translate`]),
    /// or None to keep the pattern out of the set.
    fn set_pattern(pattern: &[u8], options: u32) -> Option<String>;

    /// Most rule-set patterns kept compiled at once; a table with more has
    /// them compiled when the set names them and drops the oldest (see
    /// [`Resident`]). usize::MAX: all compiled at load and kept.
    const RESIDENT_SET_RULES: usize;
}

/// One piece of a result template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Group(usize),
}

/// A pattern with its compiled form and the literal prefilter.
struct Cond<R> {
    /// None only for a rule-set pattern that is not resident just now.
    re: Option<R>,
    positive: bool,
    /// Lowercased ASCII text that every subject matching `re` contains
    /// (ASCII case-insensitively); only for positive conditions.
    literal: Option<Vec<u8>>,
    /// The rule-set translation (positive conditions only), until load
    /// builds the set.
    set: Option<String>,
    /// What compiles `re` again: kept for rules in the set.
    source: Option<Box<PatternSource>>,
}

/// A pattern as compiled at load.
struct PatternSource {
    text: Box<[u8]>,
    options: u32,
    captures: bool,
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

/// A loaded rule table: rules, compiled patterns and the rule set, shared
/// by concurrent lookups; each lookup borrows its buffers from a pool.
pub(crate) struct RuleTable<E: Engine> {
    map: String,
    engine: E,
    rules: Vec<Rule<E::Regex>>,
    any_literal: bool,
    /// The multi-pattern prefilter, when at least [`MIN_SET_RULES`] rules
    /// could be put in it.
    set: Option<RuleSet>,
    /// Per rule: true when the rule's first pattern is in the set.
    in_set: Vec<bool>,
    /// Per rule in the set: the next rule after it that is not in the set
    /// (or the number of rules).
    next_outside: Vec<usize>,
    /// Most groups (group 0 included) of any compiled pattern.
    groups: usize,
    /// Set patterns compiled on demand, when the table has more than
    /// [`Engine::RESIDENT_SET_RULES`] of them.
    resident: Option<Mutex<Resident<E::Regex>>>,
    /// The lookups' buffers.
    pool: Pool<E>,
}

/// Buffers for as many lookups at once as the machine has CPUs; more
/// lookups wait for a set. The lazy DFA caches grow to megabytes with
/// thousands of rules and warm up with use: a set per connection thread
/// made 64 connections to a 5,000-rule table slower than one.
struct Pool<E: Engine> {
    state: Mutex<PoolState<E>>,
    freed: std::sync::Condvar,
}

struct PoolState<E: Engine> {
    idle: Vec<Scratch<E>>,
    made: usize,
}

/// A buffer set on loan to one lookup, given back even if it panics (else
/// the pool would shrink and lookups could wait forever).
struct Lent<'a, E: Engine> {
    pool: &'a Pool<E>,
    scratch: Option<Scratch<E>>,
}

impl<E: Engine> Drop for Lent<'_, E> {
    fn drop(&mut self) {
        if let Some(s) = self.scratch.take() {
            lock(&self.pool.state).idle.push(s);
            self.pool.freed.notify_one();
        }
    }
}

/// Most buffer sets per table.
fn pool_size() -> usize {
    static SIZE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get))
}

/// What one lookup writes: reused across lookups, never shared by two at
/// once.
struct Scratch<E: Engine> {
    /// The key (folded if asked), NUL-terminated.
    subject: Vec<u8>,
    /// The key lowercased, for the literal prefilter.
    lower: Vec<u8>,
    /// The rules the set reported for the current key, sorted.
    cand: Vec<usize>,
    /// Per rule-set group: its lazy DFA's state cache (None for a group
    /// whose DFA is built in full).
    caches: Vec<Option<regex_automata::hybrid::dfa::Cache>>,
    engine: E::Scratch,
}

/// Rule-set patterns that are compiled just now, oldest first, for a
/// capped table. glibc's regexec builds a DFA inside each compiled pattern
/// as it matches (about 60 KiB for a typical rule after its first hit), so
/// keeping thousands compiled costs hundreds of MiB; a rule compiles in
/// tens of microseconds when the set names it as a candidate. A lookup
/// holds its pattern by `Arc`, so dropping the oldest never pulls a pattern
/// from under a match in progress.
struct Resident<R> {
    /// Per rule: its compiled first pattern, when resident.
    compiled: Vec<Option<std::sync::Arc<R>>>,
    order: std::collections::VecDeque<usize>,
    cap: usize,
}

/// A rule's first pattern for one match: kept since load, or resident.
enum Held<'a, R> {
    Kept(&'a R),
    Resident(std::sync::Arc<R>),
}

impl<R> std::ops::Deref for Held<'_, R> {
    type Target = R;
    fn deref(&self) -> &R {
        match self {
            Held::Kept(re) => re,
            Held::Resident(re) => re,
        }
    }
}

/// Fewest translatable rules for which the rule set is built.
const MIN_SET_RULES: usize = 2;

/// A pattern as written: text, options, polarity.
struct RawPattern<'a> {
    text: &'a [u8],
    options: u32,
    positive: bool,
}

/// Where a table came from, for change detection.
pub(crate) struct Source {
    pub text: Vec<u8>,
    /// (device, inode, mtime seconds, mtime nanoseconds) of a file table.
    pub identity: Option<(u64, u64, i64, i64)>,
}

/// Read the rules of `req`: the inline `{ {rule}, ... }` form or a file.
/// Errors are Postfix's texts. Read-only opens only.
pub(crate) fn read_source(req: &OpenRequest) -> Result<Source, OpenError> {
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
pub(crate) fn source_changed(path: &str, recorded: Option<(u64, u64, i64, i64)>) -> bool {
    match recorded {
        None => false,
        Some(id) => std::fs::metadata(path).map_or(true, |m| identity(&m) != id),
    }
}

impl<E: Engine> RuleTable<E> {
    /// Parse and compile every rule; bad rules are logged and skipped.
    /// `map` is the table name as Postfix prints it (the part after `type:`);
    /// `flags` are the open flags.
    pub(crate) fn load(engine: E, map: &str, text: &[u8], flags: u32, w: &mut Vec<String>) -> RuleTable<E> {
        Self::load_capped(engine, map, text, flags, w, E::RESIDENT_SET_RULES)
    }

    /// [`RuleTable::load`] keeping at most `cap` rule-set patterns compiled
    /// when the set holds more (tests use a small cap to compile and drop
    /// patterns on nearly every lookup).
    fn load_capped(engine: E, map: &str, text: &[u8], flags: u32, w: &mut Vec<String>, cap: usize) -> RuleTable<E> {
        let mut rules: Vec<Rule<E::Regex>> = Vec::new();
        let mut stack: Vec<usize> = Vec::new();
        let mut groups = 1;
        for line in LogicalLines::new(text, map) {
            let body = trim_end(postmap_text::until_nul(&line.text));
            if body.is_empty() {
                continue;
            }
            let Some(op) = parse_line(&engine, map, line.line_no, body, stack.len(), flags, &mut groups, w) else {
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
        let mut patterns = Vec::new();
        let mut in_set = vec![false; rules.len()];
        for (i, rule) in rules.iter_mut().enumerate() {
            match &mut rule.op {
                Op::Match { first, .. } => {
                    if let Some(p) = first.set.take() {
                        patterns.push((i, p));
                        in_set[i] = true;
                    }
                }
                Op::If { cond, .. } => cond.set = None,
                Op::Endif => {}
            }
        }
        // A table big enough to be capped is too big to determinize at load.
        let full = patterns.len() <= BUILT_SET_RULES.min(cap);
        let set = if patterns.len() >= MIN_SET_RULES { RuleSet::build(patterns, rules.len(), full) } else { None };
        for (i, b) in in_set.iter_mut().enumerate() {
            *b = set.as_ref().is_some_and(|s| s.chunk_of[i] != usize::MAX);
        }
        // Only a capped table compiles patterns again: it drops the compiled
        // set patterns (each is compiled when the set names it) and keeps
        // their sources; every other table keeps patterns and drops sources.
        let capped = in_set.iter().filter(|&&b| b).count() > cap;
        for (rule, &b) in rules.iter_mut().zip(&in_set) {
            if let Op::Match { first, .. } = &mut rule.op {
                if b && capped {
                    first.re = None;
                } else {
                    first.source = None;
                }
            }
        }
        let mut next_outside = vec![rules.len(); rules.len()];
        let mut next = rules.len();
        for i in (0..rules.len()).rev() {
            next_outside[i] = next;
            if !in_set[i] {
                next = i;
            }
        }
        let resident = capped.then(|| {
            let compiled = std::iter::repeat_with(|| None).take(rules.len()).collect();
            Mutex::new(Resident { compiled, order: std::collections::VecDeque::new(), cap })
        });
        RuleTable {
            map: map.to_string(),
            engine,
            rules,
            any_literal,
            set,
            in_set,
            next_outside,
            groups,
            resident,
            pool: Pool { state: Mutex::new(PoolState { idle: Vec::new(), made: 0 }), freed: std::sync::Condvar::new() },
        }
    }

    /// Number of rules whose first pattern is compiled just now.
    #[cfg(test)]
    fn compiled_len(&self) -> usize {
        let kept = self.rules.iter().filter(|r| matches!(&r.op, Op::Match { first, .. } if first.re.is_some())).count();
        kept + self.resident.as_ref().map_or(0, |r| lock(r).order.len())
    }

    /// Drop the rule set: every rule is tried by its engine (tests compare
    /// both ways).
    #[cfg(test)]
    fn without_set(mut self) -> Self {
        self.set = None;
        self.in_set.iter_mut().for_each(|b| *b = false);
        self
    }

    /// Number of rules whose first pattern is in the rule set.
    #[cfg(test)]
    fn set_len(&self) -> usize {
        self.in_set.iter().filter(|&&b| b).count()
    }

    /// Number of rules kept (match, if and endif rules).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.rules.len()
    }

    /// Evaluate the rules top-down against `key` (ASCII-lowercased first
    /// when `fold`); on a hit write the expanded result into `out`. Lookups
    /// run side by side: each takes buffers of its own from the pool.
    pub(crate) fn lookup(&self, key: &[u8], fold: bool, out: &mut Vec<u8>) -> bool {
        let mut lent = Lent { pool: &self.pool, scratch: Some(self.take_scratch()) };
        lent.scratch.as_mut().is_some_and(|scratch| self.evaluate(scratch, key, fold, out))
    }

    /// An idle buffer set, a new one while fewer than [`pool_size`] exist,
    /// or the next one freed.
    fn take_scratch(&self) -> Scratch<E> {
        let mut st = lock(&self.pool.state);
        loop {
            if let Some(s) = st.idle.pop() {
                return s;
            }
            if st.made < pool_size() {
                st.made += 1;
                drop(st);
                return self.scratch();
            }
            st = self.pool.freed.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn scratch(&self) -> Scratch<E> {
        let caches = self.set.as_ref().map_or_else(Vec::new, |set| set.chunks.iter().map(Chunk::cache).collect());
        Scratch {
            subject: Vec::new(),
            lower: Vec::new(),
            cand: Vec::new(),
            caches,
            engine: self.engine.scratch(self.groups),
        }
    }

    fn evaluate(&self, scratch: &mut Scratch<E>, key: &[u8], fold: bool, out: &mut Vec<u8>) -> bool {
        let key = postmap_text::until_nul(key);
        let Scratch { subject, lower, cand, caches, engine: matches } = scratch;
        subject.clear();
        subject.extend_from_slice(key);
        if fold {
            subject.make_ascii_lowercase();
        }
        subject.push(0);
        if self.any_literal {
            lower.clear();
            lower.extend_from_slice(key);
            lower.make_ascii_lowercase();
        }
        let RuleTable { map, engine, rules, set, in_set, next_outside, .. } = self;
        let text = &subject[..subject.len() - 1];
        let mut m = Matcher { engine, matches, subject, lower, map };
        cand.clear();
        let mut ci = 0;
        // Groups before this one have been searched or skipped.
        let mut next_chunk = 0;
        let mut i = 0;
        while i < rules.len() {
            if let (true, Some(set)) = (in_set[i], set.as_ref()) {
                let c = set.chunk_of[i];
                if c >= next_chunk {
                    set.chunks[c].candidates(caches[c].as_mut(), text, cand);
                    next_chunk = c + 1;
                }
                while ci < cand.len() && cand[ci] < i {
                    ci += 1;
                }
                if cand.get(ci) != Some(&i) {
                    // The set proves that the first pattern of this rule,
                    // and of every set rule up to the next candidate, does
                    // not match: go to that candidate, the next rule outside
                    // the set or the next group, whichever comes first.
                    i = cand.get(ci).copied().unwrap_or(rules.len()).min(next_outside[i]).min(set.chunks[c].end);
                    continue;
                }
            }
            let rule = &rules[i];
            match &rule.op {
                Op::Match { first, second, result, max_sub } => {
                    let Some(re) = self.first_pattern(i, first, m.lower) else {
                        i += 1;
                        continue;
                    };
                    let groups = if *max_sub > 0 { max_sub + 1 } else { 0 };
                    if !m.holds(first, Some(&re), groups, rule.line)
                        || second.as_ref().is_some_and(|c| !m.holds(c, c.re.as_ref(), 0, rule.line))
                    {
                        i += 1;
                        continue;
                    }
                    out.clear();
                    for piece in result {
                        match piece {
                            Piece::Text(t) => out.extend_from_slice(t),
                            Piece::Group(n) => {
                                if let Some((s, e)) = engine.group(m.matches, *n) {
                                    out.extend_from_slice(&m.subject[s..e]);
                                }
                            }
                        }
                    }
                    return true;
                }
                Op::If { cond, endif } => {
                    if m.holds(cond, cond.re.as_ref(), 0, rule.line) {
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

    /// Rule `i`'s first pattern, compiled if it was dropped (the oldest
    /// resident one beyond the cap is dropped then). None when the rule
    /// cannot match: its literal is absent from the key (checked first, as
    /// it costs far less than compiling), or compiling failed (only out of
    /// memory: the same text compiled at load), which is logged.
    fn first_pattern<'a>(&self, i: usize, first: &'a Cond<E::Regex>, lower: &[u8]) -> Option<Held<'a, E::Regex>> {
        if let Some(re) = &first.re {
            return Some(Held::Kept(re));
        }
        let (resident, src) = (self.resident.as_ref()?, first.source.as_ref()?);
        if first.literal.as_ref().is_some_and(|lit| memmem(lower, lit).is_none()) {
            return None;
        }
        if let Some(re) = &lock(resident).compiled[i] {
            return Some(Held::Resident(re.clone()));
        }
        // Compile without the lock: other lookups go on meanwhile.
        let mut w = Vec::new();
        let Some((re, _)) =
            self.engine.compile(&src.text, src.options, src.captures, &self.map, self.rules[i].line, &mut w)
        else {
            for text in w {
                log::warn!("{text}");
            }
            return None;
        };
        let mut r = lock(resident);
        if let Some(re) = &r.compiled[i] {
            return Some(Held::Resident(re.clone())); // another lookup was first
        }
        let re = std::sync::Arc::new(re);
        r.compiled[i] = Some(re.clone());
        r.order.push_back(i);
        while r.order.len() > r.cap {
            if let Some(j) = r.order.pop_front() {
                r.compiled[j] = None;
            }
        }
        Some(Held::Resident(re))
    }
}

/// What `holds` needs of a lookup in progress.
struct Matcher<'a, E: Engine> {
    engine: &'a E,
    matches: &'a mut E::Scratch,
    subject: &'a [u8],
    lower: &'a [u8],
    map: &'a str,
}

impl<E: Engine> Matcher<'_, E> {
    /// Whether a condition holds: its pattern `re` matches (positive) or
    /// does not (negative). A matching error is logged and counts as "does
    /// not hold", as in Postfix. Without a compiled pattern it does not hold.
    fn holds(&mut self, cond: &Cond<E::Regex>, re: Option<&E::Regex>, groups: usize, line: usize) -> bool {
        if let Some(lit) = &cond.literal {
            // Only positive conditions have a literal: absent literal = no match.
            if memmem(self.lower, lit).is_none() {
                return false;
            }
        }
        let Some(re) = re else { return false };
        match self.engine.exec(self.matches, re, self.subject, groups) {
            Ok(matched) => matched == cond.positive,
            Err(text) => {
                log::warn!("{} map {}, line {line}: {text}", E::TYPE, self.map);
                false
            }
        }
    }
}

/// A regexp or pcre table: the rules, loaded and compiled once at open and
/// shared by every client of the worker.
pub(crate) struct PatternDict<E: Engine> {
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
    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
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
pub(crate) fn open_table<E: Engine>(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    let source = read_source(req)?;
    let mut warnings = Vec::new();
    let table = RuleTable::load(E::default(), req.name, &source.text, req.flags, &mut warnings);
    for warning in warnings {
        log::warn!("{warning}");
    }
    let identity = source.identity;
    drop(source);
    // Compiling frees much scratch memory that would otherwise stay resident.
    crate::sys::release_free_memory();
    Ok(Box::new(PatternDict { flags: req.flags | PATTERN, path: req.name.to_string(), identity, table }))
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

fn skip_space(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_space(b)).unwrap_or(s.len());
    &s[start..]
}

/// `strncasecmp(p, word, len) == 0 && !ISALNUM(p[len])`.
fn starts_with_word(p: &[u8], word: &[u8]) -> bool {
    p.len() >= word.len()
        && p[..word.len()].eq_ignore_ascii_case(word)
        && !p.get(word.len()).is_some_and(u8::is_ascii_alphanumeric)
}

/// Parse and compile one logical line (text trimmed, non-empty); `groups`
/// grows to the most groups (group 0 included) of a compiled pattern.
#[allow(clippy::too_many_arguments)]
fn parse_line<E: Engine>(
    engine: &E,
    map: &str,
    line: usize,
    p: &[u8],
    nesting: usize,
    flags: u32,
    groups: &mut usize,
    w: &mut Vec<String>,
) -> Option<Op<E::Regex>> {
    let ty = E::TYPE;
    let mut compile = |pat: &RawPattern, captures: bool, w: &mut Vec<String>| {
        let (re, n) = engine.compile(pat.text, pat.options, captures, map, line, w)?;
        *groups = (*groups).max(n + 1);
        Some((re, n))
    };
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
        let (re, n) = compile(&first, max_sub > 0, w)?;
        if max_sub > n as u64 {
            warn!(
                w,
                "{ty} map {map}, line {line}: out of range replacement index \"{}\": skipping this rule",
                max_sub as i32
            );
            return None;
        }
        let max_sub = max_sub as usize;
        let mut cond = make_cond::<E>(re, &first);
        if cond.set.is_some() {
            // Only rule-set patterns may be compiled again (see `load`).
            let captures = max_sub > 0;
            cond.source = Some(Box::new(PatternSource { text: first.text.into(), options: first.options, captures }));
        }
        let first = cond;
        let second = match second {
            Some(pat) => {
                let (re, _) = compile(&pat, false, w)?;
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
        let (re, _) = compile(&pat, true, w)?;
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
    let set = if pat.positive { E::set_pattern(pat.text, pat.options) } else { None };
    Cond { re: Some(re), positive: pat.positive, literal, set, source: None }
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
pub(crate) enum Dialect {
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
pub(crate) fn required_literal(pattern: &[u8], dialect: Dialect) -> Option<Vec<u8>> {
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

// ---------------------------------------------------------------------------
// The rule-set prefilter: one multi-pattern automaton over the positive
// patterns of match rules, run once per key. A rule whose pattern is in the
// set and is not reported by it cannot match, so the real engine is not run
// for it. Every translation is an over-approximation of the real pattern's
// language (anything the real engine matches, the translation matches), so
// skipping is exact; patterns that cannot be translated soundly stay outside
// the set and are always tried.
// ---------------------------------------------------------------------------

/// How a pattern is to be read by [`translate`].
#[derive(Clone, Copy)]
pub(crate) struct SetSyntax {
    pub dialect: Dialect,
    /// ASCII case-insensitive (REG_ICASE / PCRE2_CASELESS, C locale).
    pub icase: bool,
    /// PCRE2_ANCHORED.
    pub anchored: bool,
    /// `^` and `$` can be translated (newline convention is LF); otherwise
    /// they are dropped (which only widens the language).
    pub anchors: bool,
}

/// 256-bit byte set.
#[derive(Clone, Copy)]
struct ByteSet([bool; 256]);

impl ByteSet {
    fn new() -> ByteSet {
        ByteSet([false; 256])
    }
    fn range(lo: u8, hi: u8) -> ByteSet {
        let mut s = ByteSet::new();
        s.add_range(lo, hi);
        s
    }
    fn add_range(&mut self, lo: u8, hi: u8) {
        for b in lo..=hi {
            self.0[b as usize] = true;
        }
    }
    fn add_set(&mut self, o: &ByteSet) {
        for b in 0..256 {
            self.0[b] |= o.0[b];
        }
    }
    fn negate(&mut self) {
        for b in self.0.iter_mut() {
            *b = !*b;
        }
    }
    fn fold_ascii(&mut self) {
        for b in b'a'..=b'z' {
            let u = b.to_ascii_uppercase();
            let any = self.0[b as usize] || self.0[u as usize];
            self.0[b as usize] = any;
            self.0[u as usize] = any;
        }
    }
    /// Emit as a regex-syntax class of byte ranges (None when empty).
    fn emit(&self, out: &mut String) -> Option<()> {
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
fn posix_class(name: &[u8]) -> Option<ByteSet> {
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

fn word_set() -> ByteSet {
    let mut s = posix_class(b"alnum").unwrap();
    s.0[b'_' as usize] = true;
    s
}

/// The set of a class escape letter (`d`, `w`, `s` and negations); the
/// ASCII part exact, bytes >= 0x80 unknown (caller widens).
fn escape_class(c: u8, pcre: bool) -> Option<ByteSet> {
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

struct Translator<'a> {
    p: &'a [u8],
    i: usize,
    out: String,
    syn: SetSyntax,
    depth: usize,
}

/// Translate `pattern` into a byte-oriented regex-syntax pattern whose
/// language includes the real pattern's (see above); None when unsure.
pub(crate) fn translate(pattern: &[u8], syn: SetSyntax) -> Option<String> {
    let mut t = Translator { p: pattern, i: 0, out: String::new(), syn, depth: 0 };
    t.out.push_str(if syn.icase { "(?i-u)" } else { "(?-u)" });
    if syn.anchored {
        t.out.push_str("\\A");
    }
    t.out.push_str("(?:");
    t.alternation()?;
    if t.i != pattern.len() {
        return None;
    }
    t.out.push(')');
    Some(t.out)
}

impl Translator<'_> {
    fn pcre(&self) -> bool {
        self.syn.dialect == Dialect::Pcre
    }
    fn peek(&self) -> Option<u8> {
        self.p.get(self.i).copied()
    }
    fn peek_at(&self, k: usize) -> Option<u8> {
        self.p.get(self.i + k).copied()
    }
    fn lit(&mut self, b: u8) {
        use std::fmt::Write;
        let _ = write!(self.out, "\\x{b:02X}");
    }

    fn alternation(&mut self) -> Option<()> {
        self.depth += 1;
        if self.depth > 50 {
            return None;
        }
        loop {
            let start = self.i;
            self.concat()?;
            if self.i == start && !self.pcre() {
                return None; // empty alternative in POSIX: not sure
            }
            if self.peek() == Some(b'|') {
                self.i += 1;
                self.out.push('|');
            } else {
                break;
            }
        }
        self.depth -= 1;
        Some(())
    }

    fn concat(&mut self) -> Option<()> {
        while let Some(c) = self.peek() {
            if c == b'|' || c == b')' {
                break;
            }
            let mark = self.out.len();
            let quantifiable = self.atom()?;
            self.quantifier(mark, quantifiable)?;
        }
        Some(())
    }

    /// An optional quantifier after the atom emitted from `mark`.
    fn quantifier(&mut self, mark: usize, quantifiable: bool) -> Option<()> {
        let q = match self.peek() {
            Some(b'*') => {
                self.i += 1;
                "*".to_string()
            }
            Some(b'+') => {
                self.i += 1;
                "+".to_string()
            }
            Some(b'?') => {
                self.i += 1;
                "?".to_string()
            }
            Some(b'{') => {
                let rest = &self.p[self.i + 1..];
                let close = rest.iter().position(|&b| b == b'}')?;
                let body = &rest[..close];
                let (lo, hi) = match body.iter().position(|&b| b == b',') {
                    None => (body, Some(body)),
                    Some(k) => (&body[..k], (k + 1 < body.len()).then(|| &body[k + 1..])),
                };
                let num = |s: &[u8]| -> Option<u32> {
                    if s.is_empty() || s.len() > 3 || !s.iter().all(u8::is_ascii_digit) {
                        return None;
                    }
                    std::str::from_utf8(s).ok()?.parse().ok()
                };
                let lo = num(lo)?;
                let hi = match hi {
                    Some(h) => Some(num(h)?),
                    None => None,
                };
                if lo > 100 || hi.is_some_and(|h| h > 100 || h < lo) {
                    return None;
                }
                self.i += close + 2;
                match hi {
                    Some(h) if h == lo => format!("{{{lo}}}"),
                    Some(h) => format!("{{{lo},{h}}}"),
                    None => format!("{{{lo},}}"),
                }
            }
            _ => return Some(()),
        };
        if !quantifiable {
            return None;
        }
        if self.pcre() {
            match self.peek() {
                Some(b'?') => self.i += 1, // lazy: same language
                Some(b'+') => return None, // possessive
                _ => {}
            }
        }
        if matches!(self.peek(), Some(b'*' | b'+' | b'?' | b'{')) {
            return None; // stacked quantifiers
        }
        self.out.insert_str(mark, "(?:");
        self.out.push(')');
        self.out.push_str(&q);
        Some(())
    }

    /// One atom; Some(true) when it may take a quantifier.
    fn atom(&mut self) -> Option<bool> {
        let c = self.peek()?;
        match c {
            b'*' | b'+' | b'?' | b'{' => None,
            b'}' if !self.pcre() => None,
            b'(' => self.group(),
            b'[' => {
                let set = self.bracket()?;
                set.emit(&mut self.out)?;
                Some(true)
            }
            b'.' => {
                self.i += 1;
                self.out.push_str("[\\x00-\\xFF]");
                Some(true)
            }
            b'^' => {
                self.i += 1;
                if self.syn.anchors {
                    self.out.push_str("(?m:^)");
                }
                Some(false)
            }
            b'$' => {
                self.i += 1;
                if self.syn.anchors {
                    self.out.push_str("(?m:$)");
                }
                Some(false)
            }
            b'\\' => self.escape(),
            _ => {
                self.i += 1;
                self.lit(c);
                Some(true)
            }
        }
    }

    fn group(&mut self) -> Option<bool> {
        self.i += 1;
        let mut drop = false;
        if self.pcre() {
            match self.peek() {
                Some(b'*') => return None,
                Some(b'?') => {
                    let rest = &self.p[self.i + 1..];
                    if rest.starts_with(b":") {
                        self.i += 2;
                    } else if rest.starts_with(b"=") || rest.starts_with(b"!") {
                        self.i += 2;
                        drop = true;
                    } else if rest.starts_with(b"<=") || rest.starts_with(b"<!") {
                        self.i += 3;
                        drop = true;
                    } else {
                        let (skip, close) = if rest.starts_with(b"<") {
                            (1, b'>')
                        } else if rest.starts_with(b"P<") {
                            (2, b'>')
                        } else if rest.starts_with(b"'") {
                            (1, b'\'')
                        } else {
                            return None;
                        };
                        let name = &rest[skip..];
                        let end = name.iter().position(|&b| b == close)?;
                        if end == 0 || !name[..end].iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_') {
                            return None;
                        }
                        self.i += 1 + skip + end + 1;
                    }
                }
                _ => {}
            }
        }
        let mark = self.out.len();
        self.out.push_str("(?:");
        self.alternation()?;
        if self.peek() != Some(b')') {
            return None;
        }
        self.i += 1;
        self.out.push(')');
        if drop {
            // A lookaround: a zero-width assertion, dropped (wider).
            self.out.truncate(mark);
            return Some(false);
        }
        Some(true)
    }

    fn widen(&self, mut set: ByteSet, uncertain: bool) -> ByteSet {
        if uncertain && self.pcre() {
            set.add_range(0x80, 0xff);
        }
        set
    }

    fn escape(&mut self) -> Option<bool> {
        let next = self.peek_at(1)?;
        self.i += 2;
        if let Some(set) = escape_class(next, self.pcre()) {
            let set = self.widen(set, true);
            set.emit(&mut self.out)?;
            return Some(true);
        }
        if !self.pcre() {
            return match next {
                b'1'..=b'9' => None,
                b'b' | b'B' | b'<' | b'>' | b'`' | b'\'' => Some(false),
                _ => {
                    self.lit(next);
                    Some(true)
                }
            };
        }
        match next {
            b'b' | b'B' | b'G' => Some(false),
            b'A' => {
                self.out.push_str("\\A");
                Some(false)
            }
            b'z' => {
                self.out.push_str("\\z");
                Some(false)
            }
            b'Z' => {
                if self.syn.anchors {
                    self.out.push_str("(?m:$)");
                }
                Some(false)
            }
            _ => {
                self.i -= 2;
                let b = self.pcre_single_escape(false)?;
                self.lit(b);
                Some(true)
            }
        }
    }

    /// A PCRE escape at `self.i` standing for one byte.
    fn pcre_single_escape(&mut self, in_class: bool) -> Option<u8> {
        let next = self.peek_at(1)?;
        self.i += 2;
        let b = match next {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'f' => 0x0c,
            b'e' => 0x1b,
            b'a' => 0x07,
            b'b' if in_class => 0x08,
            b'x' => {
                let hex = |b: &u8| b.is_ascii_hexdigit();
                let digits: &[u8];
                if self.peek() == Some(b'{') {
                    let rest = &self.p[self.i + 1..];
                    let end = rest.iter().position(|&b| b == b'}')?;
                    digits = &rest[..end];
                    self.i += end + 2;
                } else {
                    let n = self.p[self.i..].iter().take(2).take_while(|b| hex(b)).count();
                    digits = &self.p[self.i..self.i + n];
                    self.i += n;
                }
                if digits.is_empty() || digits.len() > 2 || !digits.iter().all(hex) {
                    return None;
                }
                u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()?
            }
            _ if next.is_ascii_alphanumeric() => return None,
            _ => next,
        };
        Some(b)
    }

    /// A bracket expression at `self.i`; the set of bytes it may match.
    fn bracket(&mut self) -> Option<ByteSet> {
        let pcre = self.pcre();
        self.i += 1;
        let negated = self.peek() == Some(b'^');
        if negated {
            self.i += 1;
        }
        let mut set = ByteSet::new();
        let mut uncertain = false;
        let mut first = true;
        loop {
            let c = self.peek()?;
            if c == b']' && !first {
                self.i += 1;
                break;
            }
            first = false;
            if c == b'[' && matches!(self.peek_at(1), Some(b':' | b'.' | b'=')) {
                if self.peek_at(1) != Some(b':') {
                    return None;
                }
                let rest = &self.p[self.i + 2..];
                let end = rest.windows(2).position(|w| w == b":]")?;
                let mut name = &rest[..end];
                let neg = pcre && name.first() == Some(&b'^');
                if neg {
                    name = &name[1..];
                }
                let mut s = match name {
                    b"word" if pcre => word_set(),
                    b"ascii" if pcre => ByteSet::range(0, 0x7f),
                    _ => posix_class(name)?,
                };
                if neg {
                    s.negate();
                }
                set.add_set(&s);
                uncertain = true;
                self.i += 2 + end + 2;
                if self.peek() == Some(b'-') && self.peek_at(1) != Some(b']') {
                    return None;
                }
                continue;
            }
            if pcre && c == b'\\' {
                if let Some(s) = self.peek_at(1).and_then(|n| escape_class(n, true)) {
                    set.add_set(&s);
                    uncertain = true;
                    self.i += 2;
                    if self.peek() == Some(b'-') && self.peek_at(1) != Some(b']') {
                        return None;
                    }
                    continue;
                }
            }
            let lo = self.class_char()?;
            if self.peek() == Some(b'-') && self.peek_at(1).is_some_and(|b| b != b']') {
                self.i += 1;
                if self.peek() == Some(b'[') && matches!(self.peek_at(1), Some(b':' | b'.' | b'=')) {
                    return None;
                }
                if pcre
                    && self.peek() == Some(b'\\')
                    && self.peek_at(1).is_some_and(|n| escape_class(n, true).is_some())
                {
                    return None;
                }
                let hi = self.class_char()?;
                if lo > hi {
                    return None;
                }
                if !pcre && self.syn.icase {
                    // glibc may case-translate range ends: only ranges
                    // without letters or within one case are sure.
                    let letters = (lo..=hi).any(|b| b.is_ascii_alphabetic());
                    let same = (lo.is_ascii_lowercase() && hi.is_ascii_lowercase())
                        || (lo.is_ascii_uppercase() && hi.is_ascii_uppercase());
                    if letters && !same {
                        return None;
                    }
                }
                set.add_range(lo, hi);
                if self.peek() == Some(b'-') && self.peek_at(1) != Some(b']') {
                    return None;
                }
            } else {
                set.add_range(lo, lo);
            }
        }
        if self.syn.icase {
            set.fold_ascii();
        }
        if negated {
            set.negate();
        }
        Some(self.widen(set, uncertain))
    }

    /// One literal character inside a bracket expression.
    fn class_char(&mut self) -> Option<u8> {
        let c = self.peek()?;
        if self.pcre() && c == b'\\' {
            return self.pcre_single_escape(true);
        }
        self.i += 1;
        Some(c)
    }
}

/// Rules per automaton of the rule set: one automaton over thousands of
/// patterns has states too big to build and cache (every state carries the
/// start of every pattern); small groups keep states small and let a
/// lookup that ends early skip the later groups.
const SET_CHUNK: usize = 128;

/// Memory the NFA of one group of the set may take.
const SET_NFA_LIMIT: usize = 64 << 20;

/// A table with at most this many set rules (and not capped) gets DFAs
/// built in full at load (if each stays within [`BUILT_DFA_LIMIT`]): a few
/// tens of KiB in sparse form, shared by all lookups, where a warm lazy DFA
/// cache for the same 200 rules holds close to 1 MiB per concurrent lookup.
/// Larger tables would take seconds to determinize; they stay lazy.
const BUILT_SET_RULES: usize = 512;
/// Memory one group's DFA may take while it is built in full, and built.
/// It bounds the time lost on a group that does not fit, too: 40 ms for
/// 128 unanchored rules of the tests' mixed table (1 MiB: 120 ms, 4 MiB:
/// about 1 s); the benchmark's 128 anchored rules fit (71 KiB sparse).
const BUILT_DFA_LIMIT: usize = 512 << 10;

/// Memory for the lazy DFAs' state caches of one table, shared out over its
/// groups (each within the bounds below). The caches are most of the set's
/// memory and the worker's resident set should not outgrow Postfix's for
/// the same table; a cache that fills up is cleared and rebuilt as needed.
const SET_CACHE_BUDGET: usize = 8 << 20;
const CHUNK_CACHE_MIN: usize = 256 << 10;
const CHUNK_CACHE_MAX: usize = 4 << 20;

/// One group's automaton.
enum SetDfa {
    /// Determinized at load, in sparse form: no cache, shared as is.
    Built(regex_automata::dfa::sparse::DFA<Vec<u8>>),
    /// Determinized as lookups need states, into each lookup's cache.
    Lazy(regex_automata::hybrid::dfa::DFA),
}

/// The rule set: DFAs over consecutive groups of the translatable
/// positive match patterns.
struct RuleSet {
    chunks: Vec<Chunk>,
    /// Per rule: its group, or usize::MAX when not in the set.
    chunk_of: Vec<usize>,
}

struct Chunk {
    dfa: SetDfa,
    /// Pattern id -> rule index (ascending).
    rule_of: Vec<usize>,
    /// The first rule of the next group (or the number of rules).
    end: usize,
}

impl RuleSet {
    /// The set over `patterns` (rule index, translation; ascending rule
    /// indexes) of a table of `n` rules; patterns the set compiler refuses
    /// are left out. `full`: try to determinize each group now.
    fn build(patterns: Vec<(usize, String)>, n: usize, full: bool) -> Option<RuleSet> {
        let mut chunks: Vec<Chunk> = Vec::new();
        let mut chunk_of = vec![usize::MAX; n];
        let groups = patterns.len().div_ceil(SET_CHUNK).max(1);
        let cache = (SET_CACHE_BUDGET / groups).clamp(CHUNK_CACHE_MIN, CHUNK_CACHE_MAX);
        let mut rest = patterns;
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(SET_CHUNK));
            let mut group = std::mem::replace(&mut rest, tail);
            let built = match full {
                true => Self::built(&group).map_err(|e| log::debug!("rule set group left lazy: {e}")).ok(),
                false => None,
            };
            let dfa = match built.map_or_else(|| Self::dfa(&group, cache), Ok) {
                Ok(dfa) => dfa,
                Err(e) => {
                    // Keep the patterns that compile on their own,
                    // reasonably small, and try once more.
                    log::debug!("rule set: {e}; retrying without the patterns that fail alone");
                    group.retain(|(_, p)| Self::alone_ok(p));
                    match Self::dfa(&group, cache) {
                        Ok(dfa) => dfa,
                        Err(e) => {
                            log::debug!("rule set group left out: {e}");
                            continue;
                        }
                    }
                }
            };
            let rule_of: Vec<usize> = group.into_iter().map(|(r, _)| r).collect();
            for &r in &rule_of {
                chunk_of[r] = chunks.len();
            }
            if let Some(prev) = chunks.last_mut() {
                prev.end = rule_of[0];
            }
            chunks.push(Chunk { dfa, rule_of, end: n });
        }
        (!chunks.is_empty()).then_some(RuleSet { chunks, chunk_of })
    }

    fn syntax() -> regex_automata::util::syntax::Config {
        regex_automata::util::syntax::Config::new().unicode(false).utf8(false)
    }

    fn thompson(limit: usize) -> regex_automata::nfa::thompson::Config {
        use regex_automata::nfa::thompson;
        thompson::Config::new().utf8(false).which_captures(thompson::WhichCaptures::None).nfa_size_limit(Some(limit))
    }

    /// The patterns of a group, for a DFA builder; Err if there are none.
    fn texts(patterns: &[(usize, String)]) -> Result<Vec<&str>, String> {
        match patterns.is_empty() {
            true => Err("no patterns".to_string()),
            false => Ok(patterns.iter().map(|(_, p)| p.as_str()).collect()),
        }
    }

    /// The group's DFA determinized now, within [`BUILT_DFA_LIMIT`].
    fn built(patterns: &[(usize, String)]) -> Result<SetDfa, String> {
        use regex_automata::{dfa::dense, dfa::StartKind, MatchKind};
        let texts = Self::texts(patterns)?;
        let dense = dense::Builder::new()
            .syntax(Self::syntax())
            .thompson(Self::thompson(SET_NFA_LIMIT))
            .configure(
                dense::DFA::config()
                    .match_kind(MatchKind::All)
                    // Lookups search unanchored only.
                    .start_kind(StartKind::Unanchored)
                    .determinize_size_limit(Some(BUILT_DFA_LIMIT))
                    .dfa_size_limit(Some(BUILT_DFA_LIMIT)),
            )
            .build_many(&texts)
            .map_err(|e| e.to_string())?;
        dense.to_sparse().map(SetDfa::Built).map_err(|e| e.to_string())
    }

    fn dfa(patterns: &[(usize, String)], cache: usize) -> Result<SetDfa, String> {
        use regex_automata::{hybrid::dfa::DFA, MatchKind};
        let texts = Self::texts(patterns)?;
        DFA::builder()
            .syntax(Self::syntax())
            .thompson(Self::thompson(SET_NFA_LIMIT))
            .configure(
                DFA::config()
                    .match_kind(MatchKind::All)
                    .cache_capacity(cache)
                    .skip_cache_capacity_check(true)
                    .minimum_cache_clear_count(None),
            )
            .build_many(&texts)
            .map(SetDfa::Lazy)
            .map_err(|e| e.to_string())
    }

    fn alone_ok(pattern: &str) -> bool {
        regex_automata::nfa::thompson::Compiler::new()
            .syntax(Self::syntax())
            .configure(Self::thompson(1 << 20))
            .build(pattern)
            .is_ok()
    }
}

impl SetDfa {
    #[cfg(test)]
    fn is_built(&self) -> bool {
        matches!(self, SetDfa::Built(_))
    }

    /// Heap bytes of the automaton itself (a lazy one's states are in the
    /// lookups' caches). For the speed test's report.
    #[cfg(test)]
    fn memory_usage(&self) -> usize {
        match self {
            SetDfa::Built(dfa) => dfa.memory_usage(),
            SetDfa::Lazy(dfa) => dfa.memory_usage(),
        }
    }
}

impl Chunk {
    /// A lookup's cache for this group's DFA, if it is lazy.
    fn cache(&self) -> Option<regex_automata::hybrid::dfa::Cache> {
        match &self.dfa {
            SetDfa::Built(_) => None,
            SetDfa::Lazy(dfa) => Some(dfa.create_cache()),
        }
    }

    /// Append to `cand` (sorted, no duplicates) the rules of this group
    /// whose pattern matches `text`; every rule of the group when the
    /// search cannot be completed. `cache` is this group's, of the lookup
    /// (see [`Chunk::cache`]).
    fn candidates(&self, cache: Option<&mut regex_automata::hybrid::dfa::Cache>, text: &[u8], cand: &mut Vec<usize>) {
        use regex_automata::{dfa::Automaton, Input, MatchError, PatternID};
        let start = cand.len();
        let input = Input::new(text);
        // Every match in turn: Ok(None) when there are no more.
        let mut each = |next: &mut dyn FnMut() -> Result<Option<PatternID>, MatchError>| loop {
            match next() {
                Ok(Some(p)) => cand.push(self.rule_of[p.as_usize()]),
                Ok(None) => return true,
                Err(_) => return false,
            }
        };
        let complete = match (&self.dfa, cache) {
            (SetDfa::Built(dfa), _) => {
                let mut state = regex_automata::dfa::OverlappingState::start();
                each(&mut || {
                    dfa.try_search_overlapping_fwd(&input, &mut state)?;
                    Ok(state.get_match().map(|m| m.pattern()))
                })
            }
            (SetDfa::Lazy(dfa), Some(cache)) => {
                let mut state = regex_automata::hybrid::dfa::OverlappingState::start();
                each(&mut || {
                    dfa.try_search_overlapping_fwd(cache, &input, &mut state)?;
                    Ok(state.get_match().map(|m| m.pattern()))
                })
            }
            (SetDfa::Lazy(_), None) => false,
        };
        if !complete {
            cand.truncate(start);
            cand.extend_from_slice(&self.rule_of);
            return;
        }
        cand[start..].sort_unstable();
        let mut keep = start;
        for k in start..cand.len() {
            if k == start || cand[k] != cand[keep - 1] {
                cand[keep] = cand[k];
                keep += 1;
            }
        }
        cand.truncate(keep);
    }
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

// The differential tests against `postmap -q` are in tests/postfix_pattern.rs.

/// `cargo test --release --lib many_rules -- --ignored --nocapture`: load
/// and lookup times with 5,000 rules (a measurement, not a pass/fail test).
#[cfg(test)]
mod speed {
    use super::*;
    use crate::dict::pattern::pcre::Pcre;
    use crate::dict::pattern::regexp::Posix;

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
        let t = RuleTable::load(engine, "speed", text.as_bytes(), 0, &mut w);
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

    /// The benchmark's regexp200 table: 200 rules of five alternatives,
    /// two groups each; keys hit rule (i % 1000) % 200.
    fn bench200<E: Engine>() {
        let text: String = (0..200)
            .map(|k| {
                let alts: Vec<String> = (0..5).map(|j| format!("{:03}", k + 200 * j)).collect();
                format!("/^user([0-9]+)@d({})\\.example$/ OK rule {k} user $1\n", alts.join("|"))
            })
            .collect();
        let t = RuleTable::load(E::default(), "speed", text.as_bytes(), 0, &mut Vec::new());
        let keys: Vec<String> = (0..1000).map(|i| format!("user{i:06}@d{:03}.example", i % 1000)).collect();
        let mut out = Vec::new();
        let start = std::time::Instant::now();
        let mut hits = 0;
        for _ in 0..20 {
            for k in &keys {
                hits += usize::from(t.lookup(k.as_bytes(), false, &mut out));
            }
        }
        let per = start.elapsed() / 20_000;
        let caches: usize =
            lock(&t.pool.state).idle.iter().flat_map(|s| &s.caches).flatten().map(|c| c.memory_usage()).sum();
        let dfas: usize = t.set.as_ref().map_or(0, |s| s.chunks.iter().map(|c| c.dfa.memory_usage()).sum());
        println!("{}: 200 rules, {per:?} per lookup, {hits} hits; set caches {caches} B, DFAs {dfas} B", E::TYPE);
    }

    #[test]
    #[ignore]
    fn many_rules() {
        bench200::<Posix>();
        bench200::<Pcre>();
        run(Posix::default());
        run(Pcre::default());
    }
}

/// The rule set must not change any answer: the same table with and
/// without it, over many rule shapes and keys.
#[cfg(test)]
mod set_equivalence {
    use super::*;
    use crate::dict::pattern::pcre::Pcre;
    use crate::dict::pattern::regexp::Posix;

    /// Pattern shapes (`{}` is replaced by a rule-dependent word); both
    /// dialects unless marked.
    const SHAPES: &[&str] = &[
        "/^(.*)@{}\\.example\\.com$/\tuser=$1",
        "/\\.{}\\.net$/\tREJECT",
        "/^Subject:.*{}/\tDISCARD",
        "/^{}[0-9]*@/\tOK",
        "/{}/i\tcase-sensitive",
        "/^{}$/\texact",
        "/({}|x{}y)+z?/\talt=$1",
        "/[[:alpha:]]+{}[[:digit:]]{1,3}/\tclass",
        "/[^a-z.]{}/\tnegated",
        "/[]{}-]+x/\tbracket-first",
        "/^a.{2}{}/m\tmultiline",
        "/{}\\$/\tdollar",
        "/{}(a|b)?(c){2,}$/\tq=$2",
        "/^[A-Z]{}/\tupper-range",
        "/\\b{}\\b/\tword",
        "/{}\\s+{}/\tspaces",
        "/\\w+{}\\W/\twordclass",
        "!/{}|[a-z0-9]/\tnegative",
        "/{}/\tplain",
        "/^.{}./\tdots",
        "/(^|,){}(,|$)/\tlist",
        "/\\.{}/\tescaped-dot",
        "/caf\u{e9}{}/\tlatin",
        "/{}[\u{e9}\u{c9}]/\tlatin-class",
        "/x[\\]{}]/\tbackslash-bracket",
        "/{}{2}/\tcounted",
        "/(a|)b{}/\tempty-alt",
        "/(a)\\1{}/\tbackref",
        "/[[:upper:]]{}/\tupper-class",
        "/[@-Z]{}/\tmixed-range",
        "/^{}(\\.|-)[0-9a-f]+$/\thex",
    ];
    const REGEXP_ONLY: &[&str] =
        &["/{}/!/x{}/\tsecond", "/\\<{}\\>/\tbow-eow", "/{}/x\tbasic", "/a{}|b{}/\tbar", "/[[.a.]]{}/\tcollate"];
    const PCRE_ONLY: &[&str] = &[
        "/^(?:{}|www)\\.(?<d>[^.]+)\\.\\w+$/\tnamed=$1",
        "/\\d+{}/\tdigits",
        "/{}/A\tanchored",
        "/^{}$/E\tendonly",
        "/^{}\\n?$/m\tnl",
        "/(?i){}/\tinline",
        "/{}(?=x)/\tlookahead",
        "/(?<!x){}/\tlookbehind",
        "/{}\\x41\\x{42}/\thex-escape",
        "/[\\d\\s]{}/\tclass-escapes",
        "/[^\\w.]{}/\tneg-class-escape",
        "/{}+?y/\tlazy",
        "/{}++y/\tpossessive",
        "/\\A{}\\z/\tAz",
        "/{}\\Z/\tZ",
        "/a {}/x\textended",
        "/[[:^alpha:]]{}/\tneg-posix",
        "/\\Q{}\\E/\tquoted",
        "/{}\\t/\ttab",
    ];
    const WORDS: &[&str] = &["ab", "host", "Spam", "k1", "x", "q.z", "info", "9", "\u{e9}t\u{e9}", "Z"];

    fn table(pcre: bool, n: usize) -> String {
        let extra = if pcre { PCRE_ONLY } else { REGEXP_ONLY };
        let shapes: Vec<&str> = SHAPES.iter().chain(extra.iter()).copied().collect();
        let mut t = String::new();
        for i in 0..n {
            let shape = shapes[i % shapes.len()];
            let word = word(i);
            if i % 37 == 5 {
                t.push_str(&format!("if /{}/\n", WORDS[i % WORDS.len()]));
            }
            t.push_str(&shape.replace("{}", &word));
            t.push_str(&format!(" r{i}\n"));
            if i % 37 == 9 {
                t.push_str("endif\n");
            }
        }
        t
    }

    /// The word of rule `i`: mostly unique, sometimes a common one.
    fn word(i: usize) -> String {
        if i.is_multiple_of(23) {
            WORDS[i % WORDS.len()].to_string()
        } else {
            format!("{}{i}", WORDS[i % WORDS.len()])
        }
    }

    fn keys() -> Vec<Vec<u8>> {
        let parts: &[&[u8]] = &[
            b"ab",
            b"AB",
            b"host",
            b"@",
            b".example.com",
            b".net",
            b"Subject: ",
            b"spam",
            b"Spam",
            b"k1",
            b"x",
            b"y",
            b"z",
            b"q.z",
            b"info",
            b"9",
            b"12",
            b"\xc3\xa9t\xc3\xa9",
            b"\xe9",
            b"\xc9",
            b"\n",
            b"\r",
            b"\t",
            b" ",
            b"  ",
            b",",
            b"-",
            b".",
            b"$",
            b"\\",
            b"]",
            b"aa",
            b"c",
            b"cc",
            b"Z",
            b"_",
            b"www",
            b"0",
            b"1",
            b"2",
            b"caf",
            b"A",
            b"B",
            b"ff",
        ];
        let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
        let mut seed: u64 = 0x2545f4914f6cdd1d;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..4000 {
            let n = 1 + next() % 6;
            let mut k = Vec::new();
            let at = next() % (n + 1);
            for j in 0..n {
                if j == at {
                    let w = word((next() % 420) as usize);
                    k.extend_from_slice(if next() % 4 == 0 { w.to_uppercase() } else { w }.as_bytes());
                }
                k.extend_from_slice(parts[(next() % parts.len() as u64) as usize]);
                if next() % 9 == 0 {
                    k.extend_from_slice(format!("{}", next() % 700).as_bytes());
                }
            }
            keys.push(k);
        }
        keys
    }

    fn check<E: Engine>(make: fn() -> E, pcre: bool) {
        let text = table(pcre, 400);
        let mut w = Vec::new();
        let fast = RuleTable::load(make(), "set", text.as_bytes(), 0, &mut w);
        let slow = RuleTable::load(make(), "set", text.as_bytes(), 0, &mut Vec::new()).without_set();
        // The set with only 8 of its patterns compiled at a time.
        let capped = RuleTable::load_capped(make(), "set", text.as_bytes(), 0, &mut Vec::new(), 8);
        let in_set = fast.set_len();
        assert!(fast.set.is_some() && in_set > 200, "{} rules in the set", in_set);
        assert_eq!(built(&capped), Some(vec![false; in_set.div_ceil(SET_CHUNK)]), "{} capped set lazy", E::TYPE);
        let outside =
            fast.rules.iter().zip(&fast.in_set).filter(|(r, &b)| !b && matches!(r.op, Op::Match { .. })).count();
        assert_eq!(capped.compiled_len(), outside);
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let mut hits = 0;
        let mut answers = std::collections::HashSet::new();
        for key in keys() {
            for fold in [false, true] {
                let x = fast.lookup(&key, fold, &mut a);
                let y = slow.lookup(&key, fold, &mut b);
                let z = capped.lookup(&key, fold, &mut c);
                assert_eq!(x, y, "{} key {:?} fold {fold}", E::TYPE, String::from_utf8_lossy(&key));
                assert_eq!(x, z, "{} capped, key {:?} fold {fold}", E::TYPE, String::from_utf8_lossy(&key));
                assert!(capped.compiled_len() <= outside + 8);
                if x {
                    hits += 1;
                    answers.insert(a.clone());
                    assert_eq!(a, b, "{} key {:?} fold {fold}", E::TYPE, String::from_utf8_lossy(&key));
                    assert_eq!(a, c, "{} capped, key {:?} fold {fold}", E::TYPE, String::from_utf8_lossy(&key));
                }
            }
        }
        println!(
            "{}: {} of {} rules in the set, {hits} hits, {} different answers",
            E::TYPE,
            in_set,
            fast.len(),
            answers.len()
        );
        assert!(hits > 1000 && answers.len() > 100);
    }

    /// Threads sharing one table (with the set, and capped so that they
    /// compile and drop patterns under each other) get the answers that
    /// the table without the set gives one lookup at a time.
    fn shared<E: Engine>(pcre: bool) {
        let text = table(pcre, 400);
        let slow = RuleTable::load(E::default(), "set", text.as_bytes(), 0, &mut Vec::new()).without_set();
        let keys = keys();
        let expected: Vec<Option<Vec<u8>>> = keys
            .iter()
            .map(|k| {
                let mut out = Vec::new();
                slow.lookup(k, false, &mut out).then_some(out)
            })
            .collect();
        let fast = RuleTable::load(E::default(), "set", text.as_bytes(), 0, &mut Vec::new());
        let capped = RuleTable::load_capped(E::default(), "set", text.as_bytes(), 0, &mut Vec::new(), 8);
        for t in [&fast, &capped] {
            std::thread::scope(|scope| {
                for n in 0..4 {
                    let (keys, expected) = (&keys, &expected);
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        // Each thread in its own order, so that they meet on
                        // different rules.
                        for round in 0..2 {
                            for i in (0..keys.len()).map(|i| (i * (2 * n + 1) + round) % keys.len()) {
                                let got = t.lookup(&keys[i], false, &mut out).then(|| out.clone());
                                assert_eq!(got, expected[i], "{} key {:?}", E::TYPE, String::from_utf8_lossy(&keys[i]));
                            }
                        }
                    });
                }
            });
            let made = lock(&t.pool.state).made;
            assert!(made >= 1 && made <= pool_size().min(4), "{made} buffer sets");
        }
        // Compiled: the rules outside the set and at most 8 of the set's.
        let outside =
            fast.rules.iter().zip(&fast.in_set).filter(|(r, &b)| !b && matches!(r.op, Op::Match { .. })).count();
        assert!(capped.compiled_len() <= outside + 8);
    }

    #[test]
    fn shared_tables_give_same_answers() {
        shared::<Posix>(false);
        shared::<Pcre>(true);
    }

    /// Per group of the table's set: is its DFA built in full?
    fn built<E: Engine>(t: &RuleTable<E>) -> Option<Vec<bool>> {
        t.set.as_ref().map(|s| s.chunks.iter().map(|c| c.dfa.is_built()).collect())
    }

    /// A table small enough for DFAs built at load gives the answers of
    /// one without a set. (The 400 rules of `check` are too many to
    /// determinize within the limit, so its set stays lazy; 16 are, too.)
    fn check_built<E: Engine>(make: fn() -> E, pcre: bool) {
        let text = table(pcre, 12);
        let fast = RuleTable::load(make(), "set", text.as_bytes(), 0, &mut Vec::new());
        let slow = RuleTable::load(make(), "set", text.as_bytes(), 0, &mut Vec::new()).without_set();
        assert_eq!(built(&fast), Some(vec![true]), "{}: one group, built", E::TYPE);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut hits = 0;
        for key in keys() {
            for fold in [false, true] {
                let x = fast.lookup(&key, fold, &mut a);
                assert_eq!(x, slow.lookup(&key, fold, &mut b), "{} key {:?}", E::TYPE, String::from_utf8_lossy(&key));
                if x {
                    hits += 1;
                    assert_eq!(a, b, "{} key {:?} fold {fold}", E::TYPE, String::from_utf8_lossy(&key));
                }
            }
        }
        assert!(hits > 50, "{}: {hits} hits", E::TYPE);
    }

    #[test]
    fn regexp_set_gives_same_answers() {
        check(Posix::default, false);
    }

    #[test]
    fn built_sets_give_same_answers() {
        check_built(Posix::default, false);
        check_built(Pcre::default, true);
    }

    #[test]
    fn pcre_set_gives_same_answers() {
        check(Pcre::default, true);
    }

    #[test]
    fn translations() {
        let posix = |p: &str, icase: bool| {
            translate(
                p.as_bytes(),
                SetSyntax { dialect: Dialect::PosixExtended, icase, anchored: false, anchors: true },
            )
        };
        let pcre = |p: &str| {
            translate(p.as_bytes(), SetSyntax { dialect: Dialect::Pcre, icase: true, anchored: false, anchors: true })
        };
        assert!(posix("^(.*)@host\\.example\\.com$", true).is_some());
        assert!(posix("(a)\\1", true).is_none());
        assert!(posix("[[=a=]]", true).is_none());
        assert!(posix("[A-z]", true).is_none());
        assert!(posix("[A-z]", false).is_some());
        assert!(posix("a||b", false).is_none());
        assert!(posix("*a", false).is_none());
        assert!(pcre("(?i)a").is_none());
        assert!(pcre("a(*ACCEPT)").is_none());
        assert!(pcre("\\Qa\\E").is_none());
        assert!(pcre("a++").is_none());
        assert!(pcre("a(?=b)c").is_some());
        assert!(pcre("\\g1").is_none());
        // A backslash is literal inside POSIX brackets, an escape in PCRE's.
        let s = posix("[\\n]", false).unwrap();
        assert!(s.contains("\\x5C") && s.contains("\\x6E"), "{s}");
        let s = pcre("[\\n]").unwrap();
        assert!(s.contains("\\x0A-\\x0A") && !s.contains("\\x5C"), "{s}");
        // A pattern the set compiler refuses is left out, not the set.
        let set = RuleSet::build(vec![(0, "(".to_string()), (3, "(?-u)ab".to_string())], 5, true).unwrap();
        assert_eq!(set.chunks[0].rule_of, vec![3]);
        assert_eq!(set.chunk_of, vec![usize::MAX, usize::MAX, usize::MAX, 0, usize::MAX]);
    }

    /// Rule files a byte or two away from valid ones: loading never
    /// panics, and the rule set and the rules one by one (and capped) still
    /// give the same answers, whatever the set compiler made of the damage.
    fn mutated<E: Engine>(make: fn() -> E, pcre: bool) {
        let base = if pcre {
            "# mutated\n/^user1@/ OK one\nif /example\\.com$/\n!/^root@/\tREJECT no root\n\
             /^(a+)(b*)@(.*)$/ 250 $1-$2-$3\nendif\n/x[0-9]{2,}/i DUNNO\n/\\d+\\s?z/x digits\n\
             /^[[:alpha:]]+$/ letters\n/(?<w>q)u/ named\n"
        } else {
            "# mutated\n/^user1@/ OK one\nif /example\\.com$/\n!/^root@/\tREJECT no root\n\
             /^(a+)(b*)@(.*)$/ 250 $1-$2-$3\nendif\n/x[0-9]{2,}/i DUNNO\n/[^a-z.]+z/ punct\n\
             /^[[:alpha:]]+$/ letters\n/(a|b)?(c){2,}$/ q=$2\n"
        };
        let keys: &[&[u8]] = &[
            b"user1@example.com",
            b"aab@example.com",
            b"root@example.com",
            b"X12",
            b"letters",
            b"quz 12 z",
            b"acc",
            b"",
            b"\xff\x00@",
        ];
        let mut seed = 0x5851_f42d_4c95_7f2du64 ^ pcre as u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let edits = b"/\\()[]{}|*+?^$!#\t\n ai0";
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        let (mut hits, mut warned) = (0, 0);
        for _ in 0..600 {
            let mut text = base.as_bytes().to_vec();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % (text.len() + 1);
                match next() % 3 {
                    0 if at < text.len() => text[at] = edits[(next() as usize) % edits.len()],
                    1 if at < text.len() => {
                        text.remove(at);
                    }
                    _ => text.insert(at, edits[(next() as usize) % edits.len()]),
                }
            }
            let mut warnings = Vec::new();
            let fast = RuleTable::load(make(), "mutated", &text, 0, &mut warnings);
            let slow = RuleTable::load(make(), "mutated", &text, 0, &mut Vec::new()).without_set();
            let capped = RuleTable::load_capped(make(), "mutated", &text, 0, &mut Vec::new(), 2);
            warned += usize::from(!warnings.is_empty());
            for key in keys {
                for fold in [false, true] {
                    let x = fast.lookup(key, fold, &mut a).then(|| a.clone());
                    let y = slow.lookup(key, fold, &mut b).then(|| b.clone());
                    let z = capped.lookup(key, fold, &mut c).then(|| c.clone());
                    let table = String::from_utf8_lossy(&text);
                    assert_eq!(x, y, "{} key {key:?} fold {fold}, table:\n{table}", E::TYPE);
                    assert_eq!(x, z, "{} capped, key {key:?} fold {fold}, table:\n{table}", E::TYPE);
                    hits += usize::from(x.is_some());
                }
            }
        }
        // Damaged enough to be refused in part, intact enough to answer.
        assert!(warned > 100 && hits > 3000, "{} tables warned, {hits} hits", E::TYPE);
    }

    #[test]
    fn mutated_rule_files_load_and_agree_with_and_without_the_set() {
        mutated::<Posix>(Posix::default, false);
        mutated::<Pcre>(Pcre::default, true);
    }
}
