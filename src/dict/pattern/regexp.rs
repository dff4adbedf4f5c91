//! `regexp:/path` and `regexp:{ {rule}, ... }`: POSIX extended regular
//! expression rules (Postfix dict_regexp.c, regexp_table(5)), matched with
//! glibc's regcomp/regexec, so leftmost-longest exactly as in Postfix.
//!
//! Rule syntax, warnings and evaluation are shared (see [`crate::dict::pattern`]);
//! this file has what is regexp's own: the flags `i` (toggles REG_ICASE, on
//! by default), `m` (REG_NEWLINE), `x` (toggles REG_EXTENDED, on by
//! default), the legacy `/p1/!/p2/` form, REG_NOSUB for rules whose result
//! has no `$n`, and regerror texts.

use super::engine::{Diag, Dialect, Engine};
use super::translate::{translate, SetSyntax};
use super::{prefilter, rules};
use crate::dict::{Dict, OpenError, OpenRequest};
use crate::sys::regex::{regmatch_t, PosixRegex, REGMATCH_UNSET, REG_EXTENDED, REG_ICASE, REG_NEWLINE, REG_NOSUB};
use std::ffi::{CStr, CString};

/// The glibc engine; a lookup's capture buffer is its scratch.
#[derive(Default)]
pub(crate) struct Posix;

impl Engine for Posix {
    type Regex = PosixRegex;
    type Scratch = Vec<regmatch_t>;
    const TYPE: &'static str = "regexp";
    const DEFAULT_OPTIONS: u32 = (REG_EXTENDED | REG_ICASE) as u32;
    const SECOND_PATTERN: bool = true;
    const TRAILING_BACKSLASH_CLOSES: bool = true;
    const UNCLOSED_VERB: &'static str = "skipping";
    const OUT_OF_RANGE_BELOW_ONE: &'static str = "out-of-range";
    /// glibc grows a DFA inside every compiled pattern as it matches: with
    /// thousands of rules, compile the ones the rule set names on demand.
    const RESIDENT_SET_RULES: usize = 256;

    fn flag(options: &mut u32, letter: u8, _diag: &mut Diag) -> bool {
        match letter {
            b'i' => *options ^= REG_ICASE as u32,
            b'm' => *options ^= REG_NEWLINE as u32,
            b'x' => *options ^= REG_EXTENDED as u32,
            _ => return false,
        }
        true
    }

    fn compile(&self, pattern: &[u8], options: u32, captures: bool, diag: &mut Diag) -> Option<(PosixRegex, usize)> {
        let pattern = CString::new(pattern).ok()?;
        let cflags = options as i32 | if captures { 0 } else { REG_NOSUB };
        match PosixRegex::new(&pattern, cflags) {
            Ok(re) => {
                let nsub = re.nsub();
                Some((re, nsub))
            }
            Err(text) => {
                diag.warn(text);
                None
            }
        }
    }

    fn scratch(&self, groups: usize) -> Vec<regmatch_t> {
        vec![REGMATCH_UNSET; groups]
    }

    fn exec(
        &self,
        pmatch: &mut Vec<regmatch_t>,
        re: &PosixRegex,
        subject: &[u8],
        groups: usize,
    ) -> Result<bool, String> {
        let subject = CStr::from_bytes_until_nul(subject).map_err(|_| "key is not NUL-terminated".to_string())?;
        let groups = groups.min(pmatch.len());
        re.exec(subject, &mut pmatch[..groups])
    }

    fn group(&self, pmatch: &Vec<regmatch_t>, n: usize) -> Option<(usize, usize)> {
        let m = pmatch.get(n)?;
        (m.rm_so >= 0 && m.rm_so < m.rm_eo).then_some((m.rm_so as usize, m.rm_eo as usize))
    }

    fn prefilter(pattern: &[u8], options: u32) -> Option<Vec<u8>> {
        if options & REG_EXTENDED as u32 == 0 {
            return None; // basic syntax: not scanned
        }
        prefilter::required_literal(pattern, Dialect::PosixExtended)
    }

    /// Extended syntax only (basic syntax stays out of the set); REG_ICASE
    /// folds ASCII only (the process keeps the C locale); REG_NEWLINE only
    /// narrows `.`, `[^...]`, `^` and `$`, which the translation already
    /// treats in their widest sense.
    fn set_pattern(pattern: &[u8], options: u32) -> Option<String> {
        if options & REG_EXTENDED as u32 == 0 {
            return None;
        }
        let icase = options & REG_ICASE as u32 != 0;
        translate(pattern, SetSyntax { dialect: Dialect::PosixExtended, icase, anchored: false, anchors: true })
    }
}

pub(crate) fn open(req: &OpenRequest) -> Result<Box<dyn Dict>, OpenError> {
    rules::open_table::<Posix>(req)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::pattern::rules::RuleTable;
    use crate::dict::testutil::TempFile;
    use crate::dict::Mode;
    use crate::protocol::flags::{FOLD_MUL, NO_REGSUB, PATTERN};

    fn temp_file(rules: &str) -> TempFile {
        TempFile::new("regexp", rules)
    }

    fn open_with(name: &str, mode: Mode, flags: u32) -> Result<Box<dyn Dict>, OpenError> {
        let params = Params::default();
        open(&OpenRequest { type_name: "regexp", name, mode, flags, params: &params })
    }

    /// A miss may leave `out` as it was (the service ignores it then), so
    /// `testutil::get`'s empty-on-miss check does not apply here.
    fn get(d: &mut Box<dyn Dict>, key: &str, flags: u32) -> Option<String> {
        let mut out = b"garbage".to_vec();
        d.lookup(key.as_bytes(), flags, &mut out).unwrap().then(|| String::from_utf8(out).unwrap())
    }

    fn warnings(text: &str, flags: u32) -> Vec<String> {
        let mut w = Vec::new();
        RuleTable::load(Posix, "/etc/t", text.as_bytes(), flags, &mut w);
        w
    }

    #[test]
    fn lookups_flags_and_folding() {
        let f = temp_file("/^(.*)@example\\.com$/\tuser=$1\n/x*|y+/\tlongest\n/^(x*|y+)$/\t<$1>\n");
        let mut d = open_with(f.name(), Mode::ReadOnly, 0).unwrap();
        assert_eq!(d.flags(), PATTERN);
        assert_eq!(get(&mut d, "Joe@Example.com", 0).as_deref(), Some("user=Joe"));
        assert_eq!(get(&mut d, "Joe@Example.com", FOLD_MUL).as_deref(), Some("user=joe"));
        assert_eq!(get(&mut d, "yyy", 0).as_deref(), Some("longest"));
        assert_eq!(get(&mut d, "", 0).as_deref(), Some("longest"));
        let d = open_with(f.name(), Mode::ReadOnly, FOLD_MUL | NO_REGSUB).unwrap();
        assert_eq!(d.flags(), FOLD_MUL | NO_REGSUB | PATTERN);
        // Postfix's leftmost-longest: the whole "yyy", not "".
        let mut d = open_with("{ {/^(x*|y+)$/ <$1>} }", Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "yyy", 0).as_deref(), Some("<yyy>"));
        assert!(!d.changed());
    }

    #[test]
    fn open_errors() {
        let f = temp_file("/a/ b\n");
        let err = open_with(f.name(), Mode::ReadWrite, 0).err().unwrap();
        assert_eq!(err.reason, format!("regexp:{} map requires O_RDONLY access mode", f.name()));
        let missing = format!("{}.missing", f.name());
        let err = open_with(&missing, Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, format!("open {missing}: No such file or directory"));
        let err = open_with("{ {/a/ b}x }", Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, "regexp map: syntax error after '}' in \"{/a/ b}x\"");
        let err = open_with("{ /a/ }", Mode::ReadOnly, 0).err().unwrap();
        assert_eq!(err.reason, "regexp map: no '{' at start of text in \"/a/\"");
        // A directory reads as an empty table, as in Postfix.
        let mut d = open_with(std::env::temp_dir().to_str().unwrap(), Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "a", 0), None);
    }

    #[test]
    fn change_detection() {
        let f = temp_file("/a/ b\n");
        let d = open_with(f.name(), Mode::ReadOnly, 0).unwrap();
        assert!(!d.changed());
        let old = std::fs::metadata(&f.0).unwrap().modified().unwrap();
        std::fs::File::options()
            .write(true)
            .open(&f.0)
            .unwrap()
            .set_modified(old - std::time::Duration::from_secs(10))
            .unwrap();
        assert!(d.changed(), "mtime changed");
        let d = open_with(f.name(), Mode::ReadOnly, 0).unwrap();
        let replacement = temp_file("/a/ c\n");
        std::fs::rename(&replacement.0, &f.0).unwrap();
        assert!(d.changed(), "replaced by rename");
        std::fs::remove_file(&f.0).unwrap();
        assert!(d.changed(), "removed");
    }

    #[test]
    fn warning_texts() {
        let m = "regexp map /etc/t";
        assert_eq!(warnings("/a(/ x\n", 0), vec![format!("{m}, line 1: Unmatched ( or \\(")]);
        assert_eq!(
            warnings("/(a)/ $1\n", NO_REGSUB),
            vec![format!("{m}, line 1: regular expression substitution is not allowed: skipping this rule")]
        );
        assert_eq!(warnings("/a/\n", 0), vec![format!("{m}, line 1: no replacement text: using empty string")]);
        assert_eq!(
            warnings("/a/ $1\n", 0),
            vec![format!("{m}, line 1: out of range replacement index \"1\": skipping this rule")]
        );
        assert_eq!(
            warnings("!/(a)/ $1\n", 0),
            vec![format!("{m}, line 1: $number found in negative match replacement text: skipping this rule")]
        );
        assert_eq!(
            warnings("/a/k x\n", 0),
            vec![format!("{m}, line 1: unknown regexp option \"k\": skipping this rule")]
        );
        assert_eq!(
            warnings("/a x\n", 0),
            vec![format!("{m}, line 1: no closing regexp delimiter \"/\": skipping this rule")]
        );
        assert_eq!(
            warnings("if /a/\nif /b/\n/c/ d\nendif\n", 0),
            vec![format!("{m}, line 1: IF has no matching ENDIF")]
        );
        assert_eq!(warnings("endif\n", 0), vec![format!("{m}, line 1: ignoring ENDIF without matching IF")]);
        assert_eq!(warnings("foo bar\n", 0), vec![format!("{m}, line 1: ignoring unrecognized request")]);
        assert_eq!(
            warnings("/a/ $x\n", 0),
            vec![
                format!("{m}, line 1: non-numeric replacement index \"x\""),
                format!("{m}, line 1: bad replacement syntax: skipping this rule")
            ]
        );
    }

    #[test]
    fn unclosed_if_ends_the_lookup() {
        // An IF without ENDIF whose condition fails: no later rule is tried.
        let mut d = open_with("{ {/z/ zz}, {if /a/}, {/b/ b} }", Mode::ReadOnly, 0).unwrap();
        assert_eq!(get(&mut d, "b", 0), None);
        assert_eq!(get(&mut d, "ab", 0).as_deref(), Some("b"));
        assert_eq!(get(&mut d, "z", 0).as_deref(), Some("zz"));
    }
}
