//! Reply encoding: the exact attribute order of each request's reply, in the
//! 3.7 shape or the 3.11 shape (which adds `flags` after `status`).

use super::attr::Writer;
use super::flags::Status;
use super::request::{Dialect, Op};

/// The connect-time announcement every 3.6+ client waits for.
pub const ANNOUNCEMENT: &[u8] = b"protocol\0proxymap_protocol\0\0";

/// One reply. `key`/`value` are ignored by shapes that do not carry them.
#[derive(Clone, Copy, Debug)]
pub struct Reply<'a> {
    /// None: status only (unknown request name).
    pub op: Option<Op>,
    pub dialect: Dialect,
    pub status: Status,
    pub flags: u32,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> Reply<'a> {
    /// A reply with no key or value (both sent empty where the shape has them).
    pub fn status(op: Option<Op>, dialect: Dialect, status: Status) -> Self {
        Reply { op, dialect, status, flags: 0, key: b"", value: b"" }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::new(out);
        w.int("status", self.status.code());
        let v311 = self.dialect == Dialect::V311;
        match self.op {
            None => {}
            Some(Op::Open) => {
                w.int("flags", self.flags);
            }
            Some(Op::Lookup) => {
                if v311 {
                    w.int("flags", self.flags);
                }
                w.str("value", self.value);
            }
            Some(Op::Update | Op::Delete) if v311 => {
                w.int("flags", self.flags);
            }
            Some(Op::Update | Op::Delete) => {}
            Some(Op::Sequence) => {
                if v311 {
                    w.int("flags", self.flags);
                }
                w.str("key", self.key).str("value", self.value);
            }
        }
        w.end();
    }
}
