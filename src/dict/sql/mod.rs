//! What the SQL tables (`pgsql:`, later `mysql:`) share: connection pools.

pub(crate) mod pool;
