//! `randmap:{r1, r2, ...}`: every lookup returns one of the results, chosen at
//! random (Postfix uses it to spread mail over relays).

use crate::dict::postmap_text::{balpar, file_to_base64, BraceTokens};
use crate::dict::{Dict, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{PATTERN, SRC_RHS_IS_FILE};
use std::sync::atomic::{AtomicU64, Ordering};

struct Randmap {
    flags: u32,
    replies: Vec<Vec<u8>>,
    state: AtomicU64,
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    req.require_read_only()?;
    let syntax = || OpenError::new(format!("bad syntax: \"randmap:{}\"; need \"randmap:{{value...}}\"", req.name));
    let name = req.name.as_bytes();
    let len = balpar(name);
    if len == 0 || len != name.len() || len == 2 {
        return Err(syntax());
    }
    let mut replies = Vec::new();
    for item in BraceTokens::new(&name[1..len - 1]) {
        if req.flags & SRC_RHS_IS_FILE != 0 {
            replies.push(file_to_base64(item).map_err(OpenError::new)?);
        } else {
            replies.push(item.to_vec());
        }
    }
    if replies.is_empty() {
        return Err(syntax());
    }
    Ok(Box::new(Randmap { flags: req.flags | PATTERN, replies, state: AtomicU64::new(seed()) }))
}

/// A per-process seed; the choice needs spread, not cryptographic strength.
fn seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    (t ^ (u64::from(std::process::id()) << 32)) | 1
}

impl Dict for Randmap {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        Waits::Never
    }

    fn lookup(&self, _key: &[u8], _flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        // xorshift64; two threads at once may pick the same reply, which is
        // as random as a pick needs to be.
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::Relaxed);
        let pick = (x % self.replies.len() as u64) as usize;
        out.clear();
        out.extend_from_slice(&self.replies[pick]);
        Ok(true)
    }
}
