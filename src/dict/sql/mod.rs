//! What the SQL tables (`pgsql:`, later `mysql:`) share: connection pools,
//! and PostgreSQL's server identity for them.

pub(crate) mod pgsql_server;
pub(crate) mod pool;

#[cfg(test)]
mod pgsql_tests;
#[cfg(test)]
pub(crate) mod test_server;
// test_server.rs takes TempDir from its parent (as in tests/common/pgsql.rs).
#[cfg(test)]
use crate::test_support::TempDir;
