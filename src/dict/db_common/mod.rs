//! What every database and network table shares (Postfix's `cfg_parser.c`
//! and `db_common.c`), and the connection pools of the servers they ask:
//! the SQL tables now, ldap, memcache, socketmap and tcp next.
//!
//! * [`cf`]: the table's configuration, a `.cf` file or `<prefix>_<name>`
//!   main.cf parameters, with typed getters and Postfix's limits;
//! * [`template`]: `%` templates (query and result), parsed at open and
//!   expanded per lookup, with the key and value constraints they imply;
//! * [`domain`]: the `domain` filter (a Postfix string list) that skips
//!   keys outside the listed domains before any query;
//! * [`results`]: joining result values and the `expansion_limit`;
//! * [`pool`]: connection pools, one per server identity per worker
//!   process, shared by every table naming it, capped, with failover,
//!   timeouts and recovery; independent of any client library.
//!
//! Apart from the pool's connects (through the backend's own code), the
//! modules do no I/O of their own except reading the `.cf` file and
//! what the domain list names, both behind small seams for the tests.
//! Where Postfix exits (`fatal:`) on a bad configuration, these return an
//! [`crate::dict::OpenError`] with the same text: the table becomes a
//! surrogate answering RETRY and the rest of the process keeps serving.

pub(crate) mod cf;
pub(crate) mod domain;
pub(crate) mod pool;
pub(crate) mod results;
pub(crate) mod template;
