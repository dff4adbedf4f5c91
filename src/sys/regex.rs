//! Safe wrappers for the two regular expression engines of the `regexp` and
//! `pcre` tables: glibc's POSIX `regcomp`/`regexec` (leftmost-longest, exactly
//! the semantics Postfix's regexp tables have) and PCRE2 (through the raw
//! `pcre2-sys` bindings, which build their own copy of the library; the
//! high-level `pcre2` crate cannot set ANCHORED, DOLLAR_ENDONLY or UNGREEDY
//! and takes patterns as `&str` only).
//!
//! This file is the only place with `unsafe` for regular expressions. Every
//! handle owns its C object and frees it on drop. Compiled patterns are
//! `Send` and `Sync` (a table's lookups match them side by side); match
//! data is `Send` only (each lookup has its own).

use std::ffi::{c_char, c_int, CStr};
use std::ptr::NonNull;

pub(crate) use libc::{regmatch_t, REG_EXTENDED, REG_ICASE, REG_NEWLINE, REG_NOSUB};

/// glibc's `regex_t` with its public member `re_nsub` visible (the `libc`
/// crate keeps every field private). Same layout: checked below.
#[repr(C)]
struct GlibcRegex {
    buffer: *mut std::ffi::c_void,
    allocated: usize,
    used: usize,
    syntax: std::ffi::c_ulong,
    fastmap: *mut c_char,
    translate: *mut c_char,
    re_nsub: usize,
    bitfield: u8,
}

const _: () = assert!(std::mem::size_of::<GlibcRegex>() == std::mem::size_of::<libc::regex_t>());
const _: () = assert!(std::mem::align_of::<GlibcRegex>() == std::mem::align_of::<libc::regex_t>());

/// A compiled POSIX regular expression (`regcomp`), freed with `regfree`.
pub(crate) struct PosixRegex {
    /// Boxed: the compiled object stays at one address for its whole life.
    inner: Box<GlibcRegex>,
}

// SAFETY: the regex_t owns its heap data (reachable only through it) and has
// no tie to the thread that compiled it; we only move it between threads, and
// regexec takes a const pointer (glibc serialises its internal state anyway).
unsafe impl Send for PosixRegex {}

// SAFETY: `&PosixRegex` reaches only `regexec` and reads of `re_nsub`. glibc's
// regexec keeps its matcher state inside the compiled pattern and takes the
// pattern's own lock (`dfa->lock`) around the whole match, as POSIX requires
// regexec to be thread-safe; `regfree` runs only from Drop, with `&mut`.
unsafe impl Sync for PosixRegex {}

/// An empty `regmatch_t` for capture buffers.
pub(crate) const REGMATCH_UNSET: regmatch_t = regmatch_t { rm_so: -1, rm_eo: -1 };

impl PosixRegex {
    /// `regcomp(pattern, cflags)`; on failure the `regerror` text (at most
    /// 255 bytes, as with Postfix's 256-byte buffer).
    pub(crate) fn new(pattern: &CStr, cflags: c_int) -> Result<PosixRegex, String> {
        // SAFETY: GlibcRegex is plain old data (pointers and integers); an
        // all-zero value is valid storage for regcomp to fill in.
        let mut inner: Box<GlibcRegex> = Box::new(unsafe { std::mem::zeroed() });
        let preg = (&mut *inner as *mut GlibcRegex).cast::<libc::regex_t>();
        // SAFETY: `preg` points to writable storage of regex_t's size and
        // alignment (asserted above); `pattern` is NUL-terminated.
        let rc = unsafe { libc::regcomp(preg, pattern.as_ptr(), cflags) };
        if rc != 0 {
            // regcomp frees its partial work on failure: nothing to regfree.
            return Err(error_text(rc, preg));
        }
        Ok(PosixRegex { inner })
    }

    /// Number of parenthesised subexpressions (`re_nsub`).
    pub(crate) fn nsub(&self) -> usize {
        self.inner.re_nsub
    }

    /// `regexec(subject, nmatch = pmatch.len(), pmatch, 0)`: Ok(true) on a
    /// match, Ok(false) for REG_NOMATCH, Err(regerror text) otherwise.
    pub(crate) fn exec(&self, subject: &CStr, pmatch: &mut [regmatch_t]) -> Result<bool, String> {
        let preg = (&*self.inner as *const GlibcRegex).cast::<libc::regex_t>();
        let pm = if pmatch.is_empty() { std::ptr::null_mut() } else { pmatch.as_mut_ptr() };
        // SAFETY: `preg` is a successfully compiled regex_t; `subject` is
        // NUL-terminated; `pm` has room for `pmatch.len()` entries (or is
        // null with nmatch 0).
        let rc = unsafe { libc::regexec(preg, subject.as_ptr(), pmatch.len(), pm, 0) };
        match rc {
            0 => Ok(true),
            libc::REG_NOMATCH => Ok(false),
            _ => Err(error_text(rc, preg)),
        }
    }
}

impl Drop for PosixRegex {
    fn drop(&mut self) {
        let preg = (&mut *self.inner as *mut GlibcRegex).cast::<libc::regex_t>();
        // SAFETY: compiled by regcomp (construction only succeeds then) and
        // freed exactly once, here.
        unsafe { libc::regfree(preg) }
    }
}

fn error_text(code: c_int, preg: *const libc::regex_t) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; regerror NUL-terminates
    // within it; `preg` is only read (glibc ignores it).
    unsafe { libc::regerror(code, preg, buf.as_mut_ptr().cast::<c_char>(), buf.len()) };
    let text = CStr::from_bytes_until_nul(&buf).map(CStr::to_bytes).unwrap_or(&[]);
    String::from_utf8_lossy(text).into_owned()
}

pub(crate) use pcre2_sys::{
    PCRE2_ANCHORED, PCRE2_CASELESS, PCRE2_DOLLAR_ENDONLY, PCRE2_DOTALL, PCRE2_ERROR_NOMATCH, PCRE2_EXTENDED,
    PCRE2_MULTILINE, PCRE2_UNGREEDY,
};

/// A compiled PCRE2 pattern (`pcre2_compile`), freed with `pcre2_code_free`.
pub(crate) struct Pcre2Code {
    code: NonNull<pcre2_sys::pcre2_code_8>,
    captures: u32,
}

// SAFETY: compiled code is immutable after pcre2_compile and documented by
// PCRE2 as shareable between threads; we own it exclusively.
unsafe impl Send for Pcre2Code {}

// SAFETY: `&Pcre2Code` reaches only `pcre2_match` and `capture_count`. PCRE2
// documents compiled code (without JIT compilation, which we never ask for)
// as usable by many threads at once, each with match data of its own, which
// `matches` takes by `&mut`.
unsafe impl Sync for Pcre2Code {}

impl Pcre2Code {
    /// `pcre2_compile(pattern, length, options)`; on failure the error code
    /// and the offset in the pattern.
    pub(crate) fn new(pattern: &[u8], options: u32) -> Result<Pcre2Code, (i32, usize)> {
        let mut error: c_int = 0;
        let mut offset: usize = 0;
        // SAFETY: `pattern` is valid for its length (no NUL needed with an
        // explicit length); the out-pointers are valid; a null compile context
        // means defaults.
        let raw = unsafe {
            pcre2_sys::pcre2_compile_8(
                pattern.as_ptr(),
                pattern.len(),
                options,
                &mut error,
                &mut offset,
                std::ptr::null_mut(),
            )
        };
        let code = NonNull::new(raw).ok_or((error, offset))?;
        let mut captures: u32 = 0;
        // SAFETY: `code` is valid; CAPTURECOUNT writes one uint32_t.
        let rc = unsafe {
            pcre2_sys::pcre2_pattern_info_8(
                code.as_ptr(),
                pcre2_sys::PCRE2_INFO_CAPTURECOUNT,
                (&mut captures as *mut u32).cast(),
            )
        };
        let compiled = Pcre2Code { code, captures };
        if rc != 0 {
            return Err((rc, 0));
        }
        Ok(compiled)
    }

    /// Number of capturing groups in the pattern.
    pub(crate) fn capture_count(&self) -> u32 {
        self.captures
    }

    /// `pcre2_match(subject, start 0, options 0)` into `md`, which must have
    /// room for this pattern's groups. Returns PCRE2's code: > 0 on a match
    /// (highest set group + 1), PCRE2_ERROR_NOMATCH, or another error.
    pub(crate) fn matches(&self, subject: &[u8], md: &mut Pcre2MatchData) -> i32 {
        // SAFETY: code and match data are valid; the subject is valid for its
        // length; `md` is exclusively borrowed for the call.
        unsafe {
            pcre2_sys::pcre2_match_8(
                self.code.as_ptr(),
                subject.as_ptr(),
                subject.len(),
                0,
                0,
                md.md.as_ptr(),
                std::ptr::null_mut(),
            )
        }
    }
}

impl Drop for Pcre2Code {
    fn drop(&mut self) {
        // SAFETY: allocated by pcre2_compile, freed exactly once.
        unsafe { pcre2_sys::pcre2_code_free_8(self.code.as_ptr()) }
    }
}

/// A PCRE2 match data block (offset vector plus the matcher's reusable heap
/// frames), so that matching allocates nothing once warmed up.
pub(crate) struct Pcre2MatchData {
    md: NonNull<pcre2_sys::pcre2_match_data_8>,
    pairs: usize,
}

// SAFETY: owned exclusively; PCRE2 keeps no thread affinity for match data.
unsafe impl Send for Pcre2MatchData {}

impl Pcre2MatchData {
    /// Room for `pairs` (start, end) offset pairs (at least 1).
    pub(crate) fn new(pairs: u32) -> Pcre2MatchData {
        let pairs = pairs.max(1);
        // SAFETY: a null general context means default malloc.
        let raw = unsafe { pcre2_sys::pcre2_match_data_create_8(pairs, std::ptr::null_mut()) };
        let md = NonNull::new(raw).expect("out of memory: pcre2_match_data_create");
        // SAFETY: `md` is valid.
        let pairs = unsafe { pcre2_sys::pcre2_get_ovector_count_8(md.as_ptr()) } as usize;
        Pcre2MatchData { md, pairs }
    }

    /// Offsets of group `n` after a match whose return code was `rc`; None
    /// when the group did not take part.
    pub(crate) fn group(&self, rc: i32, n: usize) -> Option<(usize, usize)> {
        if rc <= 0 || n >= rc as usize || n >= self.pairs {
            return None;
        }
        // SAFETY: `md` is a live match data block.
        let ov = unsafe { pcre2_sys::pcre2_get_ovector_pointer_8(self.md.as_ptr()) };
        // SAFETY: the ovector has `pairs` pairs and lives as long as `md`; we
        // read within it while holding a shared borrow of self.
        let ov = unsafe { std::slice::from_raw_parts(ov, 2 * self.pairs) };
        let (start, end) = (ov[2 * n], ov[2 * n + 1]);
        (start <= end && end != usize::MAX).then_some((start, end))
    }
}

impl Drop for Pcre2MatchData {
    fn drop(&mut self) {
        // SAFETY: allocated by pcre2_match_data_create, freed exactly once.
        unsafe { pcre2_sys::pcre2_match_data_free_8(self.md.as_ptr()) }
    }
}

/// PCRE2's text for an error code (`pcre2_get_error_message` with a
/// 256-byte buffer, as Postfix), or Postfix's fallback text.
pub(crate) fn pcre2_error_message(code: i32) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; PCRE2 NUL-terminates.
    let len = unsafe { pcre2_sys::pcre2_get_error_message_8(code, buf.as_mut_ptr(), buf.len()) };
    if len > 0 {
        String::from_utf8_lossy(&buf[..len as usize]).into_owned()
    } else {
        format!("unexpected pcre2 error code {code}")
    }
}

/// Whether this PCRE2 build's default newline convention is LF.
pub(crate) fn pcre2_default_newline_is_lf() -> bool {
    let mut nl: u32 = 0;
    // SAFETY: PCRE2_CONFIG_NEWLINE writes one uint32_t to the valid pointer.
    let rc = unsafe { pcre2_sys::pcre2_config_8(pcre2_sys::PCRE2_CONFIG_NEWLINE, (&mut nl as *mut u32).cast()) };
    rc >= 0 && nl == pcre2_sys::PCRE2_NEWLINE_LF
}

/// The PCRE2 library's version, as `pcre2_config(PCRE2_CONFIG_VERSION)`
/// reports it (for `proxymap --version`).
pub(crate) fn pcre2_version() -> String {
    let mut buf = [0u8; 64];
    // SAFETY: PCRE2_CONFIG_VERSION writes at most 24 code units (the
    // documented maximum) and a NUL into the 64-byte buffer we pass.
    let rc = unsafe { pcre2_sys::pcre2_config_8(pcre2_sys::PCRE2_CONFIG_VERSION, buf.as_mut_ptr().cast()) };
    if rc <= 0 {
        return "unknown".into();
    }
    String::from_utf8_lossy(crate::dict::postmap_text::until_nul(&buf)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> std::ffi::CString {
        std::ffi::CString::new(s).unwrap()
    }

    #[test]
    fn posix_leftmost_longest_and_groups() {
        let re = PosixRegex::new(&c("(x*|y+)"), REG_EXTENDED).unwrap();
        assert_eq!(re.nsub(), 1);
        let mut pm = [REGMATCH_UNSET; 2];
        assert!(re.exec(&c("yyy"), &mut pm).unwrap());
        assert_eq!((pm[1].rm_so, pm[1].rm_eo), (0, 3));
        let err = PosixRegex::new(&c("a("), REG_EXTENDED).err().unwrap();
        assert_eq!(err, "Unmatched ( or \\(");
        let re = PosixRegex::new(&c("ABC"), REG_EXTENDED | REG_ICASE | REG_NOSUB).unwrap();
        assert!(re.exec(&c("xabcx"), &mut []).unwrap());
        assert!(!re.exec(&c("xabx"), &mut []).unwrap());
    }

    #[test]
    fn pcre2_compile_match_and_errors() {
        let code = Pcre2Code::new(b"(a)(b)?(c)?", PCRE2_CASELESS).unwrap();
        assert_eq!(code.capture_count(), 3);
        let mut md = Pcre2MatchData::new(4);
        let rc = code.matches(b"xAc", &mut md);
        assert_eq!(rc, 4);
        assert_eq!(md.group(rc, 1), Some((1, 2)));
        assert_eq!(md.group(rc, 2), None);
        assert_eq!(md.group(rc, 3), Some((2, 3)));
        assert_eq!(code.matches(b"zzz", &mut md), PCRE2_ERROR_NOMATCH);
        let (err, off) = Pcre2Code::new(b"a(", 0).err().unwrap();
        assert_eq!(off, 2);
        assert_eq!(pcre2_error_message(err), "missing closing parenthesis");
    }
}
