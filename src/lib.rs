//! proxymap: a drop-in replacement for Postfix's proxymap(8) and proxywrite.
//!
//! Layout: `protocol` (wire codec, no I/O), `config` (main.cf, allowlists,
//! standalone settings), `dict` (table backends), `service` (request handling),
//! `worker` (connection event loop), `master` (standalone prefork supervisor),
//! `sys` (the few raw system calls), `clock`, `logging`; `check` (the
//! `proxymap check` command).

pub mod check;
pub mod client;
pub(crate) mod clock;
pub mod config;
pub mod dict;
/// Entry points for the fuzz targets of `fuzz/` (feature `fuzzing` only).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz_api;
pub(crate) mod logging;
pub mod master;
pub mod postfix_child;
pub mod protocol;
pub mod service;
pub mod stats;
pub(crate) mod strtol;
pub(crate) mod sync;
pub(crate) mod sys;
#[cfg(test)]
pub(crate) mod test_support;
pub mod version;
pub mod worker;
