//! `regexp:/path` and `regexp:{ {rule}, ... }`: POSIX extended regular
//! expression rules (Postfix dict_regexp.c, regexp_table(5)), matched with
//! glibc's regcomp/regexec, so leftmost-longest exactly as in Postfix.
//!
//! Rule syntax, warnings and evaluation live in [`super::pattern_rules`];
//! this file has what is regexp's own: the flags `i` (toggles REG_ICASE, on
//! by default), `m` (REG_NEWLINE), `x` (toggles REG_EXTENDED, on by
//! default), the legacy `/p1/!/p2/` form, REG_NOSUB for rules whose result
//! has no `$n`, and regerror texts.

use super::pattern_rules::{self, Dialect, Engine};
use super::{Dict, OpenError, OpenRequest};
use crate::sys::regex::{regmatch_t, PosixRegex, REGMATCH_UNSET, REG_EXTENDED, REG_ICASE, REG_NEWLINE, REG_NOSUB};
use std::ffi::{CStr, CString};

/// The glibc engine with the capture buffer shared by all rules.
#[derive(Default)]
pub struct Posix {
    pmatch: Vec<regmatch_t>,
}

impl Engine for Posix {
    type Regex = PosixRegex;
    const TYPE: &'static str = "regexp";
    const DEFAULT_OPTIONS: u32 = (REG_EXTENDED | REG_ICASE) as u32;
    const SECOND_PATTERN: bool = true;
    const TRAILING_BACKSLASH_CLOSES: bool = true;
    const UNCLOSED_VERB: &'static str = "skipping";
    const OUT_OF_RANGE_BELOW_ONE: &'static str = "out-of-range";

    fn flag(options: &mut u32, letter: u8, _map: &str, _line: usize, _w: &mut Vec<String>) -> bool {
        match letter {
            b'i' => *options ^= REG_ICASE as u32,
            b'm' => *options ^= REG_NEWLINE as u32,
            b'x' => *options ^= REG_EXTENDED as u32,
            _ => return false,
        }
        true
    }

    fn compile(
        &mut self,
        pattern: &[u8],
        options: u32,
        captures: bool,
        map: &str,
        line: usize,
        w: &mut Vec<String>,
    ) -> Option<(PosixRegex, usize)> {
        let pattern = CString::new(pattern).ok()?;
        let cflags = options as i32 | if captures { 0 } else { REG_NOSUB };
        match PosixRegex::new(&pattern, cflags) {
            Ok(re) => {
                let nsub = re.nsub();
                if captures && self.pmatch.len() <= nsub {
                    self.pmatch.resize(nsub + 1, REGMATCH_UNSET);
                }
                Some((re, nsub))
            }
            Err(text) => {
                w.push(format!("regexp map {map}, line {line}: {text}"));
                None
            }
        }
    }

    fn exec(&mut self, re: &PosixRegex, subject: &[u8], groups: usize) -> Result<bool, String> {
        let subject = CStr::from_bytes_until_nul(subject).map_err(|_| "key is not NUL-terminated".to_string())?;
        let groups = groups.min(self.pmatch.len());
        re.exec(subject, &mut self.pmatch[..groups])
    }

    fn group(&self, n: usize) -> Option<(usize, usize)> {
        let m = self.pmatch.get(n)?;
        (m.rm_so >= 0 && m.rm_so < m.rm_eo).then_some((m.rm_so as usize, m.rm_eo as usize))
    }

    fn prefilter(pattern: &[u8], options: u32) -> Option<Vec<u8>> {
        if options & REG_EXTENDED as u32 == 0 {
            return None; // basic syntax: not scanned
        }
        pattern_rules::required_literal(pattern, Dialect::PosixExtended)
    }
}

pub fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    pattern_rules::open_table(req, Posix::default())
}
