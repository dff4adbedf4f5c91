//! The stand-in for a table that failed to open: every access logs
//! `<type>:<name> is unavailable. <reason>` and fails with RETRY, as Postfix's
//! surrogate tables do.

use super::{Cursor, Dict, DictError, DictResult};
use crate::protocol::flags::PATTERN;

pub struct Surrogate {
    flags: u32,
    message: String,
}

impl Surrogate {
    /// `open_flags`: the flags the open was attempted with.
    pub fn new(full_name: &str, reason: &str, open_flags: u32) -> Self {
        Surrogate { flags: open_flags | PATTERN, message: format!("{full_name} is unavailable. {reason}") }
    }

    fn fail<T>(&self) -> DictResult<T> {
        log::warn!("{}", self.message);
        Err(DictError::Retry(self.message.clone()))
    }
}

impl Dict for Surrogate {
    fn flags(&self) -> u32 {
        self.flags
    }
    fn lookup(&mut self, _: &[u8], _: u32, _: &mut Vec<u8>) -> DictResult<bool> {
        self.fail()
    }
    fn update(&mut self, _: &[u8], _: &[u8], _: u32) -> DictResult<bool> {
        self.fail()
    }
    fn delete(&mut self, _: &[u8], _: u32) -> DictResult<bool> {
        self.fail()
    }
    fn sequence(&mut self, _: &mut Option<Cursor>, _: bool, _: u32) -> DictResult<Option<(Vec<u8>, Vec<u8>)>> {
        self.fail()
    }
}
