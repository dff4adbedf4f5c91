//! `internal:name`: a per-process in-memory table (Postfix dict_ht.c, opened
//! as type `internal`).
//!
//! Every open starts an empty table; the service's table cache keeps one per
//! (name, instance flags), so all clients of one worker share it, as all
//! clients of one Postfix proxymap process do. FIXED; read-write in either
//! mode. As in dict_ht, FOLD_FIX in the request flags lowercases the key of
//! lookup/update/delete, and update always replaces an existing value: the
//! duplicate flags (DUP_IGNORE/DUP_WARN/DUP_REPLACE) are not consulted.
//!
//! Sequence: FIRST takes a snapshot of the keys (as htable_sequence() takes a
//! list of entries) into the caller's cursor; NEXT walks it, skipping keys
//! deleted since and returning current values. Order is unspecified, as in
//! Postfix (hash order there, key order here).

use crate::dict::{Cursor, Dict, DictResult, OpenError, OpenRequest, Waits};
use crate::protocol::flags::{FIXED, FOLD_FIX};
use std::collections::HashMap;

pub(crate) struct Internal {
    flags: u32,
    table: HashMap<Vec<u8>, Vec<u8>>,
}

/// A sequence in progress: the keys at FIRST and the next position.
struct Walk {
    keys: Vec<Vec<u8>>,
    next: usize,
}

fn folded(key: &[u8], flags: u32) -> std::borrow::Cow<'_, [u8]> {
    crate::dict::fold_key(crate::dict::postmap_text::until_nul(key), flags & FOLD_FIX != 0)
}

impl Dict for Internal {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        Waits::Never
    }

    fn lookup(&self, key: &[u8], flags: u32, out: &mut Vec<u8>) -> DictResult<bool> {
        out.clear();
        match self.table.get(folded(key, flags).as_ref()) {
            Some(value) => {
                out.extend_from_slice(value);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn update(&mut self, key: &[u8], value: &[u8], flags: u32) -> DictResult<bool> {
        let value = crate::dict::postmap_text::until_nul(value).to_vec();
        self.table.insert(folded(key, flags).into_owned(), value);
        Ok(true)
    }

    fn delete(&mut self, key: &[u8], flags: u32) -> DictResult<bool> {
        Ok(self.table.remove(folded(key, flags).as_ref()).is_some())
    }

    fn sequence(
        &mut self,
        cursor: &mut Option<Cursor>,
        first: bool,
        _flags: u32,
    ) -> DictResult<Option<(Vec<u8>, Vec<u8>)>> {
        if first {
            let mut keys: Vec<Vec<u8>> = self.table.keys().cloned().collect();
            keys.sort_unstable();
            *cursor = Some(Box::new(Walk { keys, next: 0 }));
        }
        let Some(walk) = cursor.as_mut().and_then(|c| c.downcast_mut::<Walk>()) else {
            return Ok(None);
        };
        while let Some(key) = walk.keys.get(walk.next) {
            walk.next += 1;
            if let Some(value) = self.table.get(key) {
                return Ok(Some((key.clone(), value.clone())));
            }
        }
        Ok(None)
    }
}

/// Any name, any mode; the table starts empty.
pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    Ok(Box::new(Internal { flags: req.flags | FIXED, table: HashMap::new() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::Mode;
    use crate::protocol::flags::{DUP_IGNORE, DUP_WARN};

    fn open_with(mode: Mode, flags: u32) -> Box<dyn Dict> {
        let params = Params::default();
        open(&OpenRequest { type_name: "internal", name: "test", mode, flags, params: &params }).unwrap()
    }

    use crate::dict::testutil::get;

    #[test]
    fn update_lookup_delete() {
        let mut d = open_with(Mode::ReadWrite, 0);
        assert_eq!(d.flags(), FIXED);
        assert_eq!(get(&mut d, "a", 0), None, "starts empty");
        assert!(d.update(b"a", b"1", 0).unwrap());
        assert_eq!(get(&mut d, "a", 0).as_deref(), Some("1"));
        // dict_ht ignores the duplicate flags: always replaced.
        assert!(d.update(b"a", b"2", DUP_IGNORE).unwrap());
        assert!(d.update(b"a", b"3", DUP_WARN).unwrap());
        assert_eq!(get(&mut d, "a", 0).as_deref(), Some("3"));
        assert!(d.delete(b"a", 0).unwrap());
        assert!(!d.delete(b"a", 0).unwrap());
        assert_eq!(get(&mut d, "a", 0), None);
        // Read-only opens work too (Postfix ignores the open mode).
        let mut r = open_with(Mode::ReadOnly, FOLD_FIX);
        assert_eq!(r.flags(), FOLD_FIX | FIXED);
        assert_eq!(get(&mut r, "a", 0), None, "each open is a new table");
    }

    #[test]
    fn folding_per_request() {
        let mut d = open_with(Mode::ReadWrite, 0);
        d.update(b"MiXed", b"raw", 0).unwrap();
        d.update(b"UPPER", b"folded", FOLD_FIX).unwrap();
        assert_eq!(get(&mut d, "MiXed", 0).as_deref(), Some("raw"));
        assert_eq!(get(&mut d, "MiXed", FOLD_FIX), None);
        assert_eq!(get(&mut d, "upper", 0).as_deref(), Some("folded"));
        assert_eq!(get(&mut d, "UpPeR", FOLD_FIX).as_deref(), Some("folded"));
        assert_eq!(get(&mut d, "UPPER", 0), None);
        assert!(!d.delete(b"MIXED", FOLD_FIX).unwrap());
        assert!(d.delete(b"UPPER", FOLD_FIX).unwrap());
    }

    #[test]
    fn sequence_with_cursors() {
        let mut d = open_with(Mode::ReadWrite, 0);
        let mut c1 = None;
        assert_eq!(d.sequence(&mut c1, true, 0).unwrap(), None, "empty table");
        assert_eq!(d.sequence(&mut c1, false, 0).unwrap(), None);
        for (k, v) in [("k1", "v1"), ("k2", "v2"), ("k3", "v3")] {
            d.update(k.as_bytes(), v.as_bytes(), 0).unwrap();
        }
        let mut c2 = None;
        assert_eq!(d.sequence(&mut c2, false, 0).unwrap(), None, "NEXT without FIRST");
        let first = d.sequence(&mut c1, true, 0).unwrap().unwrap();
        assert_eq!(first, (b"k1".to_vec(), b"v1".to_vec()));
        // Changes after FIRST: deleted keys are skipped, values are current,
        // new keys are not in the snapshot.
        d.delete(b"k2", 0).unwrap();
        d.update(b"k3", b"new", 0).unwrap();
        d.update(b"k4", b"v4", 0).unwrap();
        assert_eq!(d.sequence(&mut c2, true, 0).unwrap().unwrap().0, b"k1", "independent cursor");
        assert_eq!(d.sequence(&mut c1, false, 0).unwrap(), Some((b"k3".to_vec(), b"new".to_vec())));
        assert_eq!(d.sequence(&mut c1, false, 0).unwrap(), None);
        let mut all = Vec::new();
        let mut first = true;
        while let Some((k, _)) = d.sequence(&mut c2, first, 0).unwrap() {
            first = false;
            all.push(String::from_utf8(k).unwrap());
        }
        assert_eq!(all, ["k1", "k3", "k4"]);
    }
}
