//! Network tables: a server asked over a stream socket with a small text
//! protocol of its own (Postfix's `socketmap`, `tcp`, `memcache`).
//!
//! * [`endpoint`]: `inet:host:port` / `unix:/path` and a connection with
//!   deadlines; an endpoint is a `db_common::pool` server identity, so
//!   tables naming one endpoint share one capped pool of connections.

#[allow(dead_code)] // until the first network table uses it (this is its first commit)
pub(crate) mod endpoint;
