//! The rule set: one multi-pattern automaton per group of consecutive
//! rules, over the set translations of their positive first patterns (see
//! [`super::translate`]), run once per key. A rule in the set that the
//! automaton does not report cannot match, so its engine is not run.

/// Rules per automaton of the rule set: one automaton over thousands of
/// patterns has states too big to build and cache (every state carries the
/// start of every pattern); small groups keep states small and let a
/// lookup that ends early skip the later groups.
pub(super) const SET_CHUNK: usize = 128;

/// Memory the NFA of one group of the set may take.
const SET_NFA_LIMIT: usize = 64 << 20;

/// A table with at most this many set rules (and not capped) gets DFAs
/// built in full at load (if each stays within [`BUILT_DFA_LIMIT`]): a few
/// tens of KiB in sparse form, shared by all lookups, where a warm lazy DFA
/// cache for the same 200 rules holds close to 1 MiB per concurrent lookup.
/// Larger tables would take seconds to determinize; they stay lazy.
pub(super) const BUILT_SET_RULES: usize = 512;
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
pub(super) enum SetDfa {
    /// Determinized at load, in sparse form: no cache, shared as is.
    Built(regex_automata::dfa::sparse::DFA<Vec<u8>>),
    /// Determinized as lookups need states, into each lookup's cache.
    Lazy(regex_automata::hybrid::dfa::DFA),
}

/// The rule set: DFAs over consecutive groups of the translatable
/// positive match patterns.
pub(super) struct RuleSet {
    pub(super) chunks: Vec<Chunk>,
    /// Per rule: its group, or usize::MAX when not in the set.
    pub(super) chunk_of: Vec<usize>,
}

pub(super) struct Chunk {
    pub(super) dfa: SetDfa,
    /// Pattern id -> rule index (ascending).
    rule_of: Vec<usize>,
    /// The first rule of the next group (or the number of rules).
    pub(super) end: usize,
}

impl RuleSet {
    /// The set over `patterns` (rule index, translation; ascending rule
    /// indexes) of a table of `n` rules; patterns the set compiler refuses
    /// are left out. `full`: try to determinize each group now.
    pub(super) fn build(patterns: Vec<(usize, String)>, n: usize, full: bool) -> Option<RuleSet> {
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
    pub(super) fn is_built(&self) -> bool {
        matches!(self, SetDfa::Built(_))
    }

    /// Heap bytes of the automaton itself (a lazy one's states are in the
    /// lookups' caches). For the speed test's report.
    #[cfg(test)]
    pub(super) fn memory_usage(&self) -> usize {
        match self {
            SetDfa::Built(dfa) => dfa.memory_usage(),
            SetDfa::Lazy(dfa) => dfa.memory_usage(),
        }
    }
}

impl Chunk {
    /// A lookup's cache for this group's DFA, if it is lazy.
    pub(super) fn cache(&self) -> Option<regex_automata::hybrid::dfa::Cache> {
        match &self.dfa {
            SetDfa::Built(_) => None,
            SetDfa::Lazy(dfa) => Some(dfa.create_cache()),
        }
    }

    /// Append to `cand` (sorted, no duplicates) the rules of this group
    /// whose pattern matches `text`; every rule of the group when the
    /// search cannot be completed. `cache` is this group's, of the lookup
    /// (see [`Chunk::cache`]).
    pub(super) fn candidates(
        &self,
        cache: Option<&mut regex_automata::hybrid::dfa::Cache>,
        text: &[u8],
        cand: &mut Vec<usize>,
    ) {
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
    fn refused_patterns_are_left_out() {
        // A pattern the set compiler refuses is left out, not the set.
        let set = RuleSet::build(vec![(0, "(".to_string()), (3, "(?-u)ab".to_string())], 5, true).unwrap();
        assert_eq!(set.chunks[0].rule_of, vec![3]);
        assert_eq!(set.chunk_of, vec![usize::MAX, usize::MAX, usize::MAX, 0, usize::MAX]);
    }
}
