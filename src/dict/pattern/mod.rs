//! Rule files matched in order, first match wins: `regexp` and `pcre` (one
//! rule engine, two syntaxes) and `cidr`.
//!
//! * `regexp.rs`, `pcre.rs`: the two front-ends, each an [`engine::Engine`]
//!   (flag letters, compiling and matching with glibc or PCRE2).
//! * `engine.rs`: what a front-end supplies to the shared machinery.
//! * `source.rs`: reading the rules from a file or the inline `{ ... }` form.
//! * `parse.rs`: one rule line (patterns, flags, `if`/`endif`, result
//!   templates) and Postfix's warnings for bad ones.
//! * `rules.rs`: the loaded table, its top-down evaluation and the `Dict`.
//! * `scratch.rs`: the pool of per-lookup buffers.
//! * `prefilter.rs`: the literal text a pattern requires of every match.
//! * `translate.rs`, `byteset.rs`: patterns rewritten for the rule set.
//! * `dfa.rs`: the rule set, automata over many rules run once per key.
//! * `cidr.rs`: `cidr` tables (networks, not patterns); `cidr/addr.rs`:
//!   addresses read and printed as glibc does.

mod byteset;
pub(crate) mod cidr;
mod dfa;
mod engine;
mod parse;
pub(crate) mod pcre;
mod prefilter;
pub(crate) mod regexp;
mod rules;
mod scratch;
mod source;
mod translate;

#[cfg(feature = "fuzzing")]
pub(crate) mod fuzz;
