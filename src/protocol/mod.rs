//! The proxymap wire protocol: attribute codec, requests, replies, flags.
//! Pure data transformations: no I/O and no `unsafe` in this module tree.
#![forbid(unsafe_code)]

pub mod attr;
pub(crate) mod flags;
pub(crate) mod reply;
pub mod request;

pub use flags::Status;
pub use reply::{Reply, ANNOUNCEMENT};
pub use request::{parse, parse_more, Dialect, Op, Outcome, Parse, Request, Warning};
