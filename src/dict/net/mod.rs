//! Network tables: a server asked over a stream socket with a small text
//! protocol of its own (Postfix's `socketmap`, `tcp`, `memcache`).
//!
//! * [`endpoint`]: `inet:host:port` / `unix:/path` and a connection with
//!   deadlines; an endpoint is a `db_common::pool` server identity, so
//!   tables naming one endpoint share one capped pool of connections.
//! * [`memcache`]: `memcache:` tables (readable and, through proxywrite,
//!   writable), with `memcache_proto` (the text protocol, no I/O) and
//!   `memcache_client` (one command on a connection, with a deadline).
//! * [`socketmap`]: `socketmap:` tables (netstring requests, [`netstring`]);
//!   [`tcp`]: `tcp:` tables (`%XX`-quoted lines, [`hex_quote`]); both on
//!   the pools of [`session`].

pub(crate) mod endpoint;
pub(crate) mod hex_quote;
pub(crate) mod memcache;
mod memcache_client;
mod memcache_proto;
pub(crate) mod netstring;
pub(crate) mod session;
pub(crate) mod socketmap;
pub(crate) mod tcp;
#[cfg(test)]
pub(crate) mod test_memcached;
#[cfg(test)]
pub(crate) mod test_server;
