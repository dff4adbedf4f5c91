//! The text Postfix logs for `%m`: strerror() of the C library, so glibc's
//! exact wording ("Unknown error -30973" for codes it has no text for).
//! Every place that prints an errno or an I/O error the way Postfix does goes
//! through here. It lives in `sys` because the texts come from the C library
//! (a table nix and std do not promise to reproduce word for word).

use std::ffi::{c_int, CStr};

/// strerror(`code`), as Postfix's `%m` prints it.
pub(crate) fn strerror(code: c_int) -> String {
    // glibc's longest text is under 50 bytes; "Unknown error -2147483648" fits too.
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of its length; the XSI strerror_r
    // (libc binds __xpg_strerror_r) writes a NUL-terminated text into it,
    // "Unknown error N" for codes it does not know (returning EINVAL).
    let rc = unsafe { libc::strerror_r(code, buf.as_mut_ptr().cast(), buf.len()) };
    match CStr::from_bytes_until_nul(&buf) {
        Ok(text) if rc == 0 || rc == libc::EINVAL => text.to_string_lossy().into_owned(),
        _ => format!("Unknown error {code}"),
    }
}

/// `%m` of an I/O error: strerror() of its errno, or (an error std made up,
/// with no errno) its own description.
pub(crate) fn io_error_text(err: &std::io::Error) -> String {
    match err.raw_os_error() {
        Some(code) => strerror(code),
        None => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_glibc_strerror() {
        assert_eq!(strerror(libc::ENOENT), "No such file or directory");
        assert_eq!(strerror(libc::EACCES), "Permission denied");
        assert_eq!(strerror(libc::EPROTO), "Protocol error");
        assert_eq!(strerror(0), "Success");
        // Berkeley DB's own codes reach %m as negative errno values.
        assert_eq!(strerror(-30973), "Unknown error -30973");
        assert_eq!(strerror(200), "Unknown error 200");
    }

    #[test]
    fn io_errors_without_errno_keep_their_description() {
        let e = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(io_error_text(&e), "No space left on device");
        let e = std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "short read");
        assert_eq!(io_error_text(&e), "short read");
    }
}
