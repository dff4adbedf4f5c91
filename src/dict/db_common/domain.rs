//! The `domain` filter: a Postfix string list (`match_list` with exact
//! string matching) naming the domains a table holds, so that keys outside
//! them are answered "not found" without a query.
//!
//! List syntax: items separated by commas or whitespace (`{...}` groups);
//! `name` matches exactly after ASCII case folding (no parent domains);
//! `!item` negates; `/file` stands for the items on the file's lines (lines
//! starting with `#` skipped); `type:table` matches when the domain is found
//! in that table. The first item that matches decides. A key is queried
//! only when it has an `@`, a non-empty local part, and a domain (after the
//! last `@`) that the list matches.
//!
//! Errors behave as in Postfix: an unreadable `/file` becomes a table that
//! fails every lookup (`error:` once when the list is built), a failing
//! table lookup logs `<table name>: <type>:<name>: table lookup problem` and
//! the lookup fails with that table's error. A `!` with nothing after it
//! fails the open (`<table name>: no pattern after '!'`).

use crate::dict::postmap_text::BraceTokens;
use crate::dict::surrogate::Surrogate;
use crate::dict::{Dict, DictError, OpenError};
use crate::protocol::flags::{LOCK, UTF8_REQUEST};

/// The flags a list opens its tables with, and looks them up with.
pub(crate) const TABLE_FLAGS: u32 = LOCK | UTF8_REQUEST;

/// What the filter needs from outside: the files and tables a list names.
pub(crate) trait Sources {
    /// The bytes of `/file`, or Postfix's `%m` text.
    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, String>;
    /// `type:name`, opened read-only with [`TABLE_FLAGS`] (a table that
    /// cannot be opened comes back as a surrogate failing every lookup).
    fn open_table(&mut self, name: &str) -> Box<dyn Dict>;
}

/// The real files and tables.
pub(crate) struct System<'a> {
    pub(crate) params: &'a crate::config::Params,
}

impl Sources for System<'_> {
    fn read_file(&mut self, path: &str) -> Result<Vec<u8>, String> {
        std::fs::read(path).map_err(|e| crate::dict::postmap_text::io_error_text(&e))
    }

    fn open_table(&mut self, name: &str) -> Box<dyn Dict> {
        crate::dict::registry::open_or_surrogate(name, crate::dict::Mode::ReadOnly, TABLE_FLAGS, self.params)
    }
}

enum Matcher {
    /// An exact, case-folded name.
    Exact(Vec<u8>),
    /// A table the domain is looked up in; `name` is `type:name`.
    Table { name: String, dict: Box<dyn Dict> },
}

struct Pattern {
    /// The answer when this pattern matches (false for `!item`).
    matches: bool,
    matcher: Matcher,
}

pub(crate) struct DomainFilter {
    /// The table name, as the warnings show it.
    owner: String,
    patterns: Vec<Pattern>,
}

impl DomainFilter {
    /// Build the filter of table `owner` from the list `list`.
    pub(crate) fn parse(list: &str, owner: &str, sources: &mut dyn Sources) -> Result<DomainFilter, OpenError> {
        let mut filter = DomainFilter { owner: owner.to_string(), patterns: Vec::new() };
        filter.add(list.as_bytes(), true, sources)?;
        Ok(filter)
    }

    fn add(&mut self, items: &[u8], matches: bool, sources: &mut dyn Sources) -> Result<(), OpenError> {
        let mut tokens = BraceTokens::new(items);
        while let Some(token) = tokens.next() {
            if token.first() == Some(&b'#') {
                let rest: Vec<&[u8]> = tokens.by_ref().collect();
                log::warn!(
                    "{}: comment at end of line is not supported: {} {}",
                    self.owner,
                    String::from_utf8_lossy(token),
                    String::from_utf8_lossy(&rest.join(&b' '))
                );
                break;
            }
            let bangs = token.iter().take_while(|&&b| b == b'!').count();
            let item = &token[bangs..];
            let matches = matches ^ (bangs % 2 == 1);
            if item.is_empty() {
                return Err(OpenError::new(format!("{}: no pattern after '!'", self.owner)));
            }
            let text = String::from_utf8_lossy(item).into_owned();
            if item[0] == b'/' {
                match sources.read_file(&text) {
                    Ok(data) => {
                        for line in data.split_inclusive(|&b| b == b'\n') {
                            if line.first() != Some(&b'#') {
                                self.add(line, matches, sources)?;
                            }
                        }
                    }
                    Err(why) => {
                        // as Postfix: a stand-in table that fails every lookup
                        let reason = format!("open file {text}: {why}");
                        log::error!("{reason}");
                        let name = format!("nofile:{text}");
                        let dict = Box::new(Surrogate::new(&name, &reason, TABLE_FLAGS));
                        self.patterns.push(Pattern { matches, matcher: Matcher::Table { name, dict } });
                    }
                }
            } else if is_table(item) {
                let dict = sources.open_table(&text);
                self.patterns.push(Pattern { matches, matcher: Matcher::Table { name: text, dict } });
            } else {
                self.patterns.push(Pattern { matches, matcher: Matcher::Exact(item.to_ascii_lowercase()) });
            }
        }
        Ok(())
    }

    /// Whether `key` may be looked up: it needs an `@`, a non-empty local
    /// part and a listed domain. A table in the list that fails gives its
    /// error.
    pub(crate) fn allows(&self, key: &[u8]) -> Result<bool, DictError> {
        let Some(at) = key.iter().rposition(|&b| b == b'@') else { return Ok(false) };
        if at == 0 {
            return Ok(false);
        }
        self.matches(&key[at + 1..])
    }

    /// Whether the list matches `domain` (the first item that matches
    /// decides).
    pub(crate) fn matches(&self, domain: &[u8]) -> Result<bool, DictError> {
        let domain = domain.to_ascii_lowercase();
        for p in &self.patterns {
            let hit = match &p.matcher {
                Matcher::Exact(name) => *name == domain,
                Matcher::Table { name, dict } => {
                    let mut value = Vec::new();
                    match dict.lookup(&domain, TABLE_FLAGS, &mut value) {
                        Ok(found) => found,
                        Err(e) => {
                            log::warn!("{}: {name}: table lookup problem", self.owner);
                            return Err(e);
                        }
                    }
                }
            };
            if hit {
                return Ok(p.matches);
            }
        }
        Ok(false)
    }
}

/// A `type:table` item: has a `:` and does not start with `[`.
fn is_table(item: &[u8]) -> bool {
    item.first() != Some(&b'[') && item.contains(&b':')
}

#[cfg(test)]
#[path = "domain_tests.rs"]
mod tests;
