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

/// The fuzz target's way into the memcache reply parser: `reply` read as
/// the answer to a `get` (a line, a data block, `END`) with `limit` bytes
/// a line; every item must be decided alike on every longer buffer.
#[cfg(feature = "fuzzing")]
pub(crate) fn fuzz_memcache_reply(reply: &[u8], limit: usize) {
    use memcache_proto::{c_str, take_data, take_line, value_length, Take};
    // Whatever a buffer decides, every longer buffer decides the same.
    fn stable<'a>(buf: &'a [u8], take: impl Fn(&'a [u8]) -> Take<&'a [u8]>) -> Take<&'a [u8]> {
        let got = take(buf);
        if let Take::Done(item, used) = &got {
            assert!(*used <= buf.len() && item.len() < *used);
            assert_eq!(take(&buf[..*used]), Take::Done(*item, *used));
            if *used > 0 {
                assert_eq!(take(&buf[..*used - 1]), Take::Need);
            }
        }
        got
    }
    let mut buf = reply;
    let Take::Done(line, used) = stable(buf, |b| take_line(b, limit)) else { return };
    buf = &buf[used..];
    if c_str(line) == b"END" {
        return;
    }
    let Some(len) = value_length(line).and_then(|n| usize::try_from(n).ok()) else { return };
    let Take::Done(_, used) = stable(buf, |b| take_data(b, len)) else { return };
    stable(&buf[used..], |b| take_line(b, limit));
}
pub(crate) mod netstring;
pub(crate) mod session;
pub(crate) mod socketmap;
pub(crate) mod tcp;
#[cfg(test)]
pub(crate) mod test_memcached;
#[cfg(test)]
pub(crate) mod test_server;
