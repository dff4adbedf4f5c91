//! Tables made of other tables: `pipemap` (each result is the next key),
//! `unionmap` (every result), `randmap` (one of a list), and a nested
//! `proxy:` (the named table, opened here). [`components`] opens the parts.

pub mod components;
pub mod pipemap;
pub mod proxy;
pub mod randmap;
pub mod unionmap;
