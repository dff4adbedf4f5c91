//! Network tables: a server asked over a stream socket with a small text
//! protocol of its own (Postfix's `socketmap`, `tcp`, `memcache`).
//!
//! * [`endpoint`]: `inet:host:port` / `unix:/path` and a connection with
//!   deadlines; an endpoint is a `db_common::pool` server identity, so
//!   tables naming one endpoint share one capped pool of connections.
//! * [`memcache`]: `memcache:` tables (readable and, through proxywrite,
//!   writable), with `memcache_proto` (the text protocol, no I/O) and
//!   `memcache_client` (one command on a connection, with a deadline).

pub(crate) mod endpoint;
pub(crate) mod memcache;
mod memcache_client;
mod memcache_proto;
#[cfg(test)]
pub(crate) mod test_memcached;
