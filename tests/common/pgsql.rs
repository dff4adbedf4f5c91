//! A PostgreSQL server of the test's own: the harness the unit tests use
//! too (src/dict/sql/test_server.rs, included by path). Tests that need it
//! skip, saying so, when PostgreSQL is not installed.

use super::TempDir;

#[path = "../../src/dict/sql/test_server.rs"]
mod test_server;
#[allow(unused_imports)] // not every test crate starts a server
pub(crate) use test_server::*;
