//! The component list of `pipemap:{...}` and `unionmap:{...}`: each item a
//! `type:name` table, opened in-process with the composite's mode and flags.

use crate::dict::postmap_text::{balpar, BraceTokens};
use crate::dict::{registry, Dict, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FIXED, PATTERN};

pub(crate) struct Components {
    pub tables: Vec<Box<dyn Dict>>,
    /// FIXED or PATTERN of the first component: the composite reports it.
    pub match_flags: u32,
    /// The most any part may wait: the composite waits as much.
    pub waits: Waits,
}

/// Parse and open the components, with Postfix's refusal and syntax errors.
pub(crate) fn open(req: &OpenRequest) -> Result<Components, OpenError> {
    req.require_read_only()?;
    let specs = specs(req)?;
    let mut tables = Vec::with_capacity(specs.len());
    let mut match_flags = 0;
    for (i, spec) in specs.iter().enumerate() {
        let table = registry::open_or_surrogate(spec, req.mode, req.flags, req.params);
        if i == 0 {
            match_flags = table.flags() & (FIXED | PATTERN);
        }
        tables.push(table);
    }
    let waits = tables.iter().map(|t| t.waits()).max().unwrap_or(Waits::Never);
    Ok(Components { tables, match_flags, waits })
}

/// The `type:name` components of `req.name` (`{type:name ...}`), without
/// opening them (`proxymap check` looks at each itself).
pub(crate) fn specs<'r>(req: &OpenRequest<'r>) -> Result<Vec<&'r str>, OpenError> {
    let syntax = || {
        OpenError::new(format!(
            "bad syntax: \"{t}:{n}\"; need \"{t}:{{type:name...}}\"",
            t = req.type_name,
            n = req.name
        ))
    };
    let name = req.name.as_bytes();
    let len = balpar(name);
    if len == 0 || len != name.len() || len == 2 {
        return Err(syntax());
    }
    let items: Vec<&[u8]> = BraceTokens::new(&name[1..len - 1]).collect();
    if items.is_empty() {
        return Err(syntax());
    }
    let mut specs = Vec::with_capacity(items.len());
    for item in items {
        let Ok(spec) = std::str::from_utf8(item) else { return Err(syntax()) };
        if !spec.contains(':') {
            return Err(syntax());
        }
        specs.push(spec);
    }
    Ok(specs)
}
