//! `fail:name`: every operation fails with a temporary error and logs
//! nothing (Postfix dict_fail.c). Like Postfix, update and delete exist only
//! when the table was opened read-write; a read-only instance answers the
//! trait's "not supported" for them (proxymap denies them before that anyway).

use crate::dict::{Cursor, Dict, DictError, DictResult, Mode, OpenError, OpenRequest, Waits};
use crate::protocol::flags::PATTERN;

pub(crate) struct Fail {
    flags: u32,
    writable: bool,
    full_name: String,
}

impl Fail {
    fn fail<T>(&self) -> DictResult<T> {
        Err(DictError::Retry(self.full_name.clone()))
    }
}

impl Dict for Fail {
    fn flags(&self) -> u32 {
        self.flags
    }

    fn waits(&self) -> Waits {
        Waits::Never
    }

    fn lookup(&self, _key: &[u8], _flags: u32, _out: &mut Vec<u8>) -> DictResult<bool> {
        self.fail()
    }

    fn update(&mut self, _key: &[u8], _value: &[u8], _flags: u32) -> DictResult<bool> {
        if self.writable {
            self.fail()
        } else {
            Err(DictError::Unsupported("update"))
        }
    }

    fn delete(&mut self, _key: &[u8], _flags: u32) -> DictResult<bool> {
        if self.writable {
            self.fail()
        } else {
            Err(DictError::Unsupported("delete"))
        }
    }

    fn sequence(&mut self, _: &mut Option<Cursor>, _: bool, _: u32) -> DictResult<Option<(Vec<u8>, Vec<u8>)>> {
        self.fail()
    }
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    Ok(Box::new(Fail { flags: req.flags | PATTERN, writable: req.mode == Mode::ReadWrite, full_name: req.full_name() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::protocol::flags::FOLD_FIX;

    fn open_with(mode: Mode, flags: u32) -> Box<dyn Dict> {
        let params = Params::default();
        open(&OpenRequest { type_name: "fail", name: "whatever", mode, flags, params: &params }).unwrap()
    }

    fn is_retry<T: std::fmt::Debug>(r: DictResult<T>) -> bool {
        matches!(r, Err(DictError::Retry(_)))
    }

    #[test]
    fn every_operation_retries() {
        let mut d = open_with(Mode::ReadWrite, FOLD_FIX);
        assert_eq!(d.flags(), PATTERN | FOLD_FIX);
        let mut out = Vec::new();
        assert!(is_retry(d.lookup(b"k", 0, &mut out)));
        assert!(is_retry(d.update(b"k", b"v", 0)));
        assert!(is_retry(d.delete(b"k", 0)));
        assert!(is_retry(d.sequence(&mut None, true, 0)));
        assert!(is_retry(d.sequence(&mut None, false, 0)));
    }

    #[test]
    fn read_only_instance() {
        let mut d = open_with(Mode::ReadOnly, 0);
        assert_eq!(d.flags(), PATTERN);
        let mut out = Vec::new();
        assert!(is_retry(d.lookup(b"k", 0, &mut out)));
        assert!(is_retry(d.sequence(&mut None, true, 0)));
        assert_eq!(d.update(b"k", b"v", 0), Err(DictError::Unsupported("update")));
        assert_eq!(d.delete(b"k", 0), Err(DictError::Unsupported("delete")));
    }
}
