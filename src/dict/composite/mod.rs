//! Tables made of other tables: `pipemap` (each result is the next key),
//! `unionmap` (every result), `randmap` (one of a list), and a nested
//! `proxy:` (the named table, opened here). [`components`] opens the parts.

pub(crate) mod components;
pub(crate) mod pipemap;
pub(crate) mod proxy;
pub(crate) mod randmap;
pub(crate) mod unionmap;
