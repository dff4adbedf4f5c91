//! A loaded regexp or pcre table: the rules in order (with `if`/`endif`
//! blocks), evaluated top-down against a key, first match wins, with the
//! literal prefilter and the rule set skipping rules that cannot match;
//! the [`PatternDict`] that serves it.

use super::dfa::{Chunk, RuleSet, BUILT_SET_RULES};
use super::engine::{Diag, Engine};
use super::parse::{parse_line, Cond, Op, Piece, Rule};
use super::prefilter::memmem;
use super::scratch::{Pool, Scratch};
use super::source::{read_source, source_changed};
use crate::dict::postmap_text::{self, trim_end, LogicalLines};
use crate::dict::{Dict, DictError, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FOLD_MUL, PATTERN};
use crate::sync::lock;
use std::sync::Mutex;

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
            let Some(op) = parse_line(
                &engine,
                &mut Diag::collect(E::TYPE, map, line.line_no, w),
                body,
                stack.len(),
                flags,
                &mut groups,
            ) else {
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
            Diag::collect(E::TYPE, map, rules[open].line, w).warn("IF has no matching ENDIF");
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
            pool: Pool::new(),
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
    #[cfg(any(test, feature = "fuzzing"))]
    pub(super) fn without_set(mut self) -> Self {
        self.set = None;
        self.in_set.iter_mut().for_each(|b| *b = false);
        self
    }

    /// Drop the rule set and the literal prefilter: every rule is tried by
    /// its engine alone (the fuzz targets compare both ways).
    #[cfg(feature = "fuzzing")]
    pub(super) fn engines_only(self) -> Self {
        let mut t = self.without_set();
        for rule in &mut t.rules {
            match &mut rule.op {
                Op::Match { first, second, .. } => {
                    first.literal = None;
                    if let Some(c) = second {
                        c.literal = None;
                    }
                }
                Op::If { cond, .. } => cond.literal = None,
                Op::Endif => {}
            }
        }
        t.any_literal = false;
        t
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
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn lookup(&self, key: &[u8], fold: bool, out: &mut Vec<u8>) -> bool {
        let mut lent = self.pool.lend(|| self.scratch());
        lent.scratch().is_some_and(|scratch| self.evaluate(scratch, key, fold, out))
    }

    /// As [`RuleTable::lookup`]; under [`crate::sync::NoWait`], None when
    /// every buffer set is lent to other threads.
    pub(super) fn lookup_unless_busy(&self, key: &[u8], fold: bool, out: &mut Vec<u8>) -> Option<bool> {
        let mut lent = match crate::sync::no_wait() {
            true => self.pool.try_lend(|| self.scratch())?,
            false => self.pool.lend(|| self.scratch()),
        };
        Some(lent.scratch().is_some_and(|scratch| self.evaluate(scratch, key, fold, out)))
    }

    pub(super) fn scratch(&self) -> Scratch<E> {
        let caches = self.set.as_ref().map_or_else(Vec::new, |set| set.chunks.iter().map(Chunk::cache).collect());
        Scratch::new(caches, self.engine.scratch(self.groups))
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
        let mut diag = Diag::log(E::TYPE, &self.map, self.rules[i].line);
        let (re, _) = self.engine.compile(&src.text, src.options, src.captures, &mut diag)?;
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
                Diag::log(E::TYPE, self.map, line).warn(text);
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

    fn waits(&self) -> Waits {
        // For a match buffer set of the shared pool when every one is lent
        // to other threads; tried under NoWait.
        Waits::OnContention
    }

    /// FOLD_MUL in the request flags lowercases the key before matching.
    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        self.table.lookup_unless_busy(key, flags & FOLD_MUL != 0, out).ok_or(DictError::WouldBlock)
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

#[cfg(test)]
mod set_equivalence;
#[cfg(test)]
mod speed;
