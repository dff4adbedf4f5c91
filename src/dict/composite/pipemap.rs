//! `pipemap:{t1:n1, t2:n2, ...}`: the result of each table is the key of the
//! next; a miss or an error anywhere ends the lookup.

use crate::dict::composite::components::{self, Components};
use crate::dict::{Dict, DictResult, OpenError, OpenRequest, Waits};

struct Pipemap {
    flags: u32,
    open_flags: u32,
    parts: Components,
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    let parts = components::open(req)?;
    Ok(Box::new(Pipemap { flags: req.flags | parts.match_flags, open_flags: req.flags, parts }))
}

impl Dict for Pipemap {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        self.parts.waits
    }

    // Components are consulted with their own open flags, not the request's:
    // in Postfix the request flags reach only the composite itself.
    fn lookup(&self, key: &[u8], _flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        let mut query = key.to_vec();
        for table in &self.parts.tables {
            if !table.lookup(&query, self.open_flags, out)? {
                return Ok(false);
            }
            std::mem::swap(&mut query, out);
        }
        out.clear();
        out.extend_from_slice(&query);
        Ok(true)
    }
}
