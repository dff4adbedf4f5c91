//! getpwnam_r/getgrnam_r/getpwuid_r/getgrgid_r, returning the entries as raw
//! bytes (nix's `User`/`Group` take `&str` names and convert names and member
//! lists lossily to UTF-8, which would change non-UTF-8 entries).

use std::ffi::{c_char, CStr, CString};

/// A password entry, fields as the C library returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Passwd {
    pub name: Vec<u8>,
    pub passwd: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub gecos: Vec<u8>,
    pub dir: Vec<u8>,
    pub shell: Vec<u8>,
}

/// A group entry, fields as the C library returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub name: Vec<u8>,
    pub passwd: Vec<u8>,
    pub gid: u32,
    pub members: Vec<Vec<u8>>,
}

/// Not found is `Ok(None)`; a failure is the errno value the C library
/// reported (what getpwnam() would leave in errno).
pub(crate) type LookupResult<T> = Result<Option<T>, nix::errno::Errno>;

/// Largest buffer tried before giving up with ERANGE.
const MAX_BUFFER: usize = 1 << 24;

/// Copy a C string field; a null pointer reads as empty.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string.
unsafe fn field(p: *const c_char) -> Vec<u8> {
    if p.is_null() {
        Vec::new()
    } else {
        // SAFETY: non-null and NUL-terminated per this function's contract.
        unsafe { CStr::from_ptr(p) }.to_bytes().to_vec()
    }
}

/// Run one `*_r` call with a growing buffer. `call` gets the buffer and
/// returns (return code, whether a result was stored).
fn with_buffer<T>(mut call: impl FnMut(&mut [u8]) -> (i32, Option<T>)) -> LookupResult<T> {
    let mut size = 1024;
    loop {
        let mut buf = vec![0u8; size];
        nix::errno::Errno::clear();
        let (rc, found) = call(&mut buf);
        CALL_ERRNO.with(|e| e.set(nix::errno::Errno::last_raw()));
        match rc {
            0 => return Ok(found),
            libc::ERANGE if size < MAX_BUFFER => size *= 2,
            code => return Err(nix::errno::Errno::from_raw(code)),
        }
    }
}

/// The errno of a failed lookup, as the non-reentrant call leaves it: the
/// return code, or errno after the call when the code is 0 (not found).
/// Call right after the lookup, on the same thread.
pub(crate) fn failure_errno(result: &LookupResult<impl Sized>) -> nix::errno::Errno {
    match result {
        Err(e) => *e,
        Ok(_) => nix::errno::Errno::from_raw(CALL_ERRNO.with(std::cell::Cell::get)),
    }
}

thread_local! {
    /// errno right after the last `*_r` call of this thread.
    static CALL_ERRNO: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

// One block for the five string fields: each `field` call rests on the same
// single fact (the one getpw*_r call that filled `pw`), so five blocks would
// repeat one note five times.
#[allow(clippy::multiple_unsafe_ops_per_block)]
fn passwd_from(pw: &libc::passwd) -> Passwd {
    // SAFETY: getpw*_r filled `pw` with pointers into our live buffer (or
    // null), each string NUL-terminated.
    unsafe {
        Passwd {
            name: field(pw.pw_name),
            passwd: field(pw.pw_passwd),
            uid: pw.pw_uid,
            gid: pw.pw_gid,
            gecos: field(pw.pw_gecos),
            dir: field(pw.pw_dir),
            shell: field(pw.pw_shell),
        }
    }
}

fn group_from(gr: &libc::group) -> Group {
    let mut members = Vec::new();
    if !gr.gr_mem.is_null() {
        let mut i = 0;
        loop {
            // SAFETY: gr_mem is a null-terminated array of string pointers in
            // our live buffer and we stop at its terminating null, so slot `i`
            // is inside it.
            let slot = unsafe { gr.gr_mem.add(i) };
            // SAFETY: `slot` is an aligned, initialised element of that array.
            let p = unsafe { *slot };
            if p.is_null() {
                break;
            }
            // SAFETY: each member pointer is a NUL-terminated string.
            members.push(unsafe { field(p) });
            i += 1;
        }
    }
    // SAFETY: getgr*_r filled `gr` with pointers into our live buffer (or null).
    let name = unsafe { field(gr.gr_name) };
    // SAFETY: as for `name`: the same call filled this field.
    let passwd = unsafe { field(gr.gr_passwd) };
    Group { name, passwd, gid: gr.gr_gid, members }
}

fn passwd_call(
    f: impl Fn(*mut libc::passwd, *mut c_char, usize, *mut *mut libc::passwd) -> i32,
) -> LookupResult<Passwd> {
    with_buffer(|buf| {
        // SAFETY: an all-zero passwd is a valid value of this plain C struct.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = f(&mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        // The strings point into `buf`, still alive here.
        (rc, (rc == 0 && !result.is_null()).then(|| passwd_from(&pw)))
    })
}

fn group_call(f: impl Fn(*mut libc::group, *mut c_char, usize, *mut *mut libc::group) -> i32) -> LookupResult<Group> {
    with_buffer(|buf| {
        // SAFETY: an all-zero group is a valid value of this plain C struct.
        let mut gr: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = f(&mut gr, buf.as_mut_ptr().cast(), buf.len(), &mut result);
        (rc, (rc == 0 && !result.is_null()).then(|| group_from(&gr)))
    })
}

/// getpwnam_r(3). A name with a NUL byte is looked up up to the NUL, as C would.
pub(crate) fn getpwnam(name: &[u8]) -> LookupResult<Passwd> {
    let name = c_name(name);
    passwd_call(|pw, buf, len, result| {
        // SAFETY: all pointers are valid for the call; `buf` has `len` bytes.
        unsafe { libc::getpwnam_r(name.as_ptr(), pw, buf, len, result) }
    })
}

/// getpwuid_r(3).
pub(crate) fn getpwuid(uid: u32) -> LookupResult<Passwd> {
    passwd_call(|pw, buf, len, result| {
        // SAFETY: all pointers are valid for the call; `buf` has `len` bytes.
        unsafe { libc::getpwuid_r(uid, pw, buf, len, result) }
    })
}

/// getgrnam_r(3). A name with a NUL byte is looked up up to the NUL.
pub(crate) fn getgrnam(name: &[u8]) -> LookupResult<Group> {
    let name = c_name(name);
    group_call(|gr, buf, len, result| {
        // SAFETY: all pointers are valid for the call; `buf` has `len` bytes.
        unsafe { libc::getgrnam_r(name.as_ptr(), gr, buf, len, result) }
    })
}

/// getgrgid_r(3).
pub(crate) fn getgrgid(gid: u32) -> LookupResult<Group> {
    group_call(|gr, buf, len, result| {
        // SAFETY: all pointers are valid for the call; `buf` has `len` bytes.
        unsafe { libc::getgrgid_r(gid, gr, buf, len, result) }
    })
}

fn c_name(name: &[u8]) -> CString {
    let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    CString::new(&name[..end]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_entries() {
        let root = getpwnam(b"root").unwrap().unwrap();
        assert_eq!((root.name.as_slice(), root.uid, root.gid), (&b"root"[..], 0, 0));
        assert_eq!(getpwuid(0).unwrap().unwrap(), root);
        let group = getgrnam(b"root").unwrap().unwrap();
        assert_eq!((group.name.as_slice(), group.gid), (&b"root"[..], 0));
        assert_eq!(getgrgid(0).unwrap().unwrap(), group);
        assert_eq!(getpwnam(b"no-such-user-xyzzy").unwrap(), None);
        assert_eq!(getgrnam(b"no-such-group-xyzzy").unwrap(), None);
        assert_eq!(getpwnam(b"root\0junk").unwrap().unwrap().name, b"root");
    }
}
