//! `unionmap:{t1:n1, t2:n2, ...}`: every table is asked; the results are
//! joined with commas; the first error ends the lookup.

use crate::dict::composite::components::{self, Components};
use crate::dict::{Dict, DictResult, OpenError, OpenRequest, Waits};

struct Unionmap {
    flags: u32,
    open_flags: u32,
    parts: Components,
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    let parts = components::open(req)?;
    Ok(Box::new(Unionmap { flags: req.flags | parts.match_flags, open_flags: req.flags, parts }))
}

impl Dict for Unionmap {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        self.parts.waits
    }

    // Components are consulted with their own open flags, as in Postfix.
    fn lookup(&self, key: &[u8], _flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        let mut part = Vec::new();
        for table in &self.parts.tables {
            if table.lookup(key, self.open_flags, &mut part)? {
                if !out.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(&part);
            }
        }
        Ok(!out.is_empty())
    }
}
