//! OpenLDAP's libldap, the library Postfix's `ldap:` tables link: the same
//! URL parsing (`ldap://`, `ldapi://`, `ldaps://`, lists of URLs tried in
//! order), the same error texts (`ldap_err2string`), the same wire requests.
//!
//! Only what the `ldap:` table uses is declared. A handle ([`Ldap`]) is
//! owned by one connection of a pool and used by one thread at a time
//! (libldap 2.5 is thread-safe across handles); dropping it unbinds and
//! frees it. Search results are copied into owned [`Entry`] values at once,
//! so no libldap pointer outlives the call that got it.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::os::fd::RawFd;
use std::ptr::{self, NonNull};
use std::time::Duration;

/// Result codes the table tells apart (ldap.h).
pub(crate) const LDAP_SUCCESS: i32 = 0;
pub(crate) const LDAP_NO_SUCH_OBJECT: i32 = 0x20;
pub(crate) const LDAP_SERVER_DOWN: i32 = -1;
pub(crate) const LDAP_DECODING_ERROR: i32 = -4;
pub(crate) const LDAP_OTHER: i32 = 0x50;
pub(crate) const LDAP_PARAM_ERROR: i32 = -9;

/// Search scopes.
pub(crate) const SCOPE_BASE: i32 = 0;
pub(crate) const SCOPE_ONE: i32 = 1;
pub(crate) const SCOPE_SUB: i32 = 2;

const OPT_API_INFO: c_int = 0x0000;
const OPT_DESC: c_int = 0x0001;
const OPT_DEREF: c_int = 0x0002;
const OPT_REFERRALS: c_int = 0x0008;
const OPT_PROTOCOL_VERSION: c_int = 0x0011;
const OPT_TIMEOUT: c_int = 0x5002;
const OPT_NETWORK_TIMEOUT: c_int = 0x5005;
const OPT_X_TLS_REQUIRE_CERT: c_int = 0x6006;
const OPT_X_TLS_NEWCTX: c_int = 0x600f;
const OPT_SUCCESS: c_int = 0;

/// `tls_require_cert` values (LDAP_OPT_X_TLS_NEVER, LDAP_OPT_X_TLS_DEMAND).
pub(crate) const TLS_NEVER: i32 = 0;
pub(crate) const TLS_DEMAND: i32 = 2;

/// The TLS file and string options, as Postfix's `tls_*` parameters set them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum TlsOption {
    CaCertFile = 0x6002,
    CaCertDir = 0x6003,
    CertFile = 0x6004,
    KeyFile = 0x6005,
    CipherSuite = 0x6008,
    RandomFile = 0x6009,
}
const API_INFO_VERSION: c_int = 1;

mod ffi {
    use std::ffi::{c_char, c_int, c_void};

    #[repr(C)]
    pub(super) struct Ldap {
        _private: [u8; 0],
    }
    #[repr(C)]
    pub(super) struct Message {
        _private: [u8; 0],
    }
    #[repr(C)]
    pub(super) struct Ber {
        _private: [u8; 0],
    }
    #[repr(C)]
    pub(super) struct BerVal {
        pub(super) len: libc::c_ulong,
        pub(super) val: *mut c_char,
    }
    #[repr(C)]
    pub(super) struct TimeVal {
        pub(super) sec: libc::time_t,
        pub(super) usec: libc::suseconds_t,
    }
    #[repr(C)]
    pub(super) struct UrlDesc {
        pub(super) next: *mut UrlDesc,
        pub(super) scheme: *mut c_char,
        pub(super) host: *mut c_char,
        pub(super) port: c_int,
        pub(super) dn: *mut c_char,
        pub(super) attrs: *mut *mut c_char,
        pub(super) scope: c_int,
        pub(super) filter: *mut c_char,
        pub(super) exts: *mut *mut c_char,
        pub(super) crit_exts: c_int,
    }
    #[repr(C)]
    pub(super) struct ApiInfo {
        pub(super) info_version: c_int,
        pub(super) api_version: c_int,
        pub(super) protocol_version: c_int,
        pub(super) extensions: *mut *mut c_char,
        pub(super) vendor_name: *mut c_char,
        pub(super) vendor_version: c_int,
    }

    #[link(name = "ldap")]
    extern "C" {
        pub(super) fn ldap_initialize(ld: *mut *mut Ldap, url: *const c_char) -> c_int;
        pub(super) fn ldap_set_option(ld: *mut Ldap, option: c_int, invalue: *const c_void) -> c_int;
        pub(super) fn ldap_get_option(ld: *mut Ldap, option: c_int, outvalue: *mut c_void) -> c_int;
        pub(super) fn ldap_connect(ld: *mut Ldap) -> c_int;
        pub(super) fn ldap_start_tls_s(ld: *mut Ldap, sctrls: *mut *mut c_void, cctrls: *mut *mut c_void) -> c_int;
        pub(super) fn ldap_sasl_bind_s(
            ld: *mut Ldap,
            dn: *const c_char,
            mechanism: *const c_char,
            cred: *const BerVal,
            sctrls: *mut *mut c_void,
            cctrls: *mut *mut c_void,
            servercred: *mut *mut BerVal,
        ) -> c_int;
        #[allow(clippy::too_many_arguments)]
        pub(super) fn ldap_search_ext_s(
            ld: *mut Ldap,
            base: *const c_char,
            scope: c_int,
            filter: *const c_char,
            attrs: *mut *mut c_char,
            attrsonly: c_int,
            sctrls: *mut *mut c_void,
            cctrls: *mut *mut c_void,
            timeout: *mut TimeVal,
            sizelimit: c_int,
            res: *mut *mut Message,
        ) -> c_int;
        pub(super) fn ldap_first_entry(ld: *mut Ldap, chain: *mut Message) -> *mut Message;
        pub(super) fn ldap_next_entry(ld: *mut Ldap, entry: *mut Message) -> *mut Message;
        pub(super) fn ldap_first_attribute(ld: *mut Ldap, entry: *mut Message, ber: *mut *mut Ber) -> *mut c_char;
        pub(super) fn ldap_next_attribute(ld: *mut Ldap, entry: *mut Message, ber: *mut Ber) -> *mut c_char;
        pub(super) fn ldap_get_values_len(ld: *mut Ldap, entry: *mut Message, attr: *const c_char) -> *mut *mut BerVal;
        pub(super) fn ldap_value_free_len(vals: *mut *mut BerVal);
        pub(super) fn ldap_msgfree(msg: *mut Message) -> c_int;
        pub(super) fn ldap_memfree(p: *mut c_void);
        pub(super) fn ldap_memvfree(v: *mut *mut c_void);
        pub(super) fn ldap_unbind_ext_s(ld: *mut Ldap, sctrls: *mut *mut c_void, cctrls: *mut *mut c_void) -> c_int;
        pub(super) fn ldap_err2string(err: c_int) -> *const c_char;
        pub(super) fn ldap_is_ldap_url(url: *const c_char) -> c_int;
        pub(super) fn ldap_url_parse(url: *const c_char, desc: *mut *mut UrlDesc) -> c_int;
        pub(super) fn ldap_free_urldesc(desc: *mut UrlDesc);
    }

    #[link(name = "lber")]
    extern "C" {
        pub(super) fn ber_free(ber: *mut Ber, freebuf: c_int);
    }
}

/// libldap's text for a result code (`ldap_err2string`).
pub(crate) fn err2string(rc: i32) -> String {
    // SAFETY: ldap_err2string takes any int and returns a pointer to a
    // static string (never NULL in OpenLDAP: unknown codes get "Unknown error").
    let p = unsafe { ffi::ldap_err2string(rc) };
    if p.is_null() {
        return "Unknown error".into();
    }
    // SAFETY: `p` is a NUL-terminated static string (checked non-NULL above).
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// True when `s` looks like an LDAP URL to libldap (`ldap_is_ldap_url`).
pub(crate) fn is_ldap_url(s: &str) -> bool {
    let Ok(c) = CString::new(s) else { return false };
    // SAFETY: `c` is a valid NUL-terminated string for the call.
    unsafe { ffi::ldap_is_ldap_url(c.as_ptr()) != 0 }
}

/// What an LDAP URL names, as libldap parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) scheme: String,
    /// The search base; None when the URL has none.
    pub(crate) dn: Option<CString>,
    /// None: the URL lists no attributes.
    pub(crate) attrs: Option<Vec<String>>,
    pub(crate) scope: i32,
    pub(crate) filter: Option<CString>,
}

/// Copy a C string that may be NULL.
///
/// # Safety
///
/// `p` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn owned_cstr(p: *const c_char) -> Option<CString> {
    if p.is_null() {
        return None;
    }
    // SAFETY: the caller guarantees a valid NUL-terminated string.
    Some(unsafe { CStr::from_ptr(p) }.to_owned())
}

/// Parse `s` with `ldap_url_parse`; the error is libldap's URL error code.
pub(crate) fn parse_url(s: &str) -> Result<Url, i32> {
    let c = CString::new(s).map_err(|_| LDAP_PARAM_ERROR)?;
    let mut desc: *mut ffi::UrlDesc = ptr::null_mut();
    // SAFETY: `c` is a valid string and `desc` a valid out pointer.
    let rc = unsafe { ffi::ldap_url_parse(c.as_ptr(), &mut desc) };
    if rc != 0 || desc.is_null() {
        return Err(if rc != 0 { rc } else { LDAP_PARAM_ERROR });
    }
    // SAFETY: ldap_url_parse succeeded: `desc` points to a valid descriptor
    // that we own until ldap_free_urldesc below.
    let d = unsafe { &*desc };
    // SAFETY: the descriptor's strings are NULL or valid C strings.
    let scheme = unsafe { owned_cstr(d.scheme) }.map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    // SAFETY: as above.
    let dn = unsafe { owned_cstr(d.dn) };
    // SAFETY: as above.
    let filter = unsafe { owned_cstr(d.filter) };
    let attrs = if d.attrs.is_null() {
        None
    } else {
        let mut v = Vec::new();
        for i in 0.. {
            // SAFETY: `attrs` is a NULL-terminated array; we stop at the NULL, so
            // index `i` is within it.
            let slot = unsafe { d.attrs.add(i) };
            // SAFETY: `slot` points into the array (see above).
            let a = unsafe { *slot };
            if a.is_null() {
                break;
            }
            // SAFETY: a non-NULL element is a valid C string.
            v.push(unsafe { CStr::from_ptr(a) }.to_string_lossy().into_owned());
        }
        Some(v)
    };
    let url = Url { scheme, dn, attrs, scope: d.scope, filter };
    // SAFETY: `desc` came from ldap_url_parse and is freed once, after the last use of `d`.
    unsafe { ffi::ldap_free_urldesc(desc) };
    Ok(url)
}

/// The library's vendor version (`LDAP_OPT_API_INFO`), as `2.5.13`.
pub(crate) fn library_version() -> String {
    let mut info = ffi::ApiInfo {
        info_version: API_INFO_VERSION,
        api_version: 0,
        protocol_version: 0,
        extensions: ptr::null_mut(),
        vendor_name: ptr::null_mut(),
        vendor_version: 0,
    };
    // SAFETY: a NULL handle asks for global options; `info` is the struct
    // LDAP_OPT_API_INFO fills, with its version set as the API requires.
    let rc = unsafe { ffi::ldap_get_option(ptr::null_mut(), OPT_API_INFO, (&mut info as *mut ffi::ApiInfo).cast()) };
    if rc != OPT_SUCCESS {
        return "unknown".into();
    }
    // SAFETY: the library allocated these for us to free (NULL is allowed).
    unsafe { ffi::ldap_memvfree(info.extensions.cast()) };
    // SAFETY: as above.
    unsafe { ffi::ldap_memfree(info.vendor_name.cast()) };
    let v = info.vendor_version;
    format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
}

/// One entry of a search result: its attributes in the server's order,
/// each with its values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) attrs: Vec<(String, Vec<Vec<u8>>)>,
}

/// An open libldap handle (not yet connected until the first operation,
/// [`Ldap::connect`] or a bind).
pub(crate) struct Ldap {
    ld: NonNull<ffi::Ldap>,
}

// SAFETY: libldap 2.5 handles may move between threads; the pool hands a
// handle to one thread at a time (`&mut self` for every operation).
unsafe impl Send for Ldap {}

fn timeval(d: Duration) -> ffi::TimeVal {
    ffi::TimeVal {
        sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        usec: libc::suseconds_t::from(d.subsec_micros() as i32),
    }
}

impl Ldap {
    /// `ldap_initialize` with a space-separated list of URLs.
    pub(crate) fn initialize(urls: &str) -> Result<Ldap, i32> {
        let c = CString::new(urls).map_err(|_| LDAP_PARAM_ERROR)?;
        let mut ld: *mut ffi::Ldap = ptr::null_mut();
        // SAFETY: valid string and out pointer.
        let rc = unsafe { ffi::ldap_initialize(&mut ld, c.as_ptr()) };
        match NonNull::new(ld) {
            Some(ld) if rc == LDAP_SUCCESS => Ok(Ldap { ld }),
            Some(ld) => {
                drop(Ldap { ld });
                Err(rc)
            }
            None => Err(if rc == LDAP_SUCCESS { LDAP_OTHER } else { rc }),
        }
    }

    fn set(&mut self, option: c_int, value: *const c_void) -> bool {
        // SAFETY: `ld` is a live handle; each caller passes the value type its option expects.
        unsafe { ffi::ldap_set_option(self.ld.as_ptr(), option, value) == OPT_SUCCESS }
    }

    fn set_int(&mut self, option: c_int, value: i32) -> bool {
        let v: c_int = value;
        self.set(option, (&v as *const c_int).cast())
    }

    pub(crate) fn set_protocol_version(&mut self, v: i32) -> bool {
        self.set_int(OPT_PROTOCOL_VERSION, v)
    }

    pub(crate) fn set_deref(&mut self, v: i32) -> bool {
        self.set_int(OPT_DEREF, v)
    }

    pub(crate) fn set_referrals(&mut self, on: bool) -> bool {
        // libldap takes any non-NULL pointer as "on" (LDAP_OPT_ON), NULL as off.
        static ON: c_int = 1;
        let value: *const c_void = if on { (&ON as *const c_int).cast() } else { ptr::null() };
        self.set(OPT_REFERRALS, value)
    }

    /// Both the connect timeout (`LDAP_OPT_NETWORK_TIMEOUT`) and the wait
    /// of synchronous calls such as a bind (`LDAP_OPT_TIMEOUT`).
    pub(crate) fn set_timeouts(&mut self, d: Duration) -> bool {
        let tv = timeval(d);
        let p: *const c_void = (&tv as *const ffi::TimeVal).cast();
        self.set(OPT_NETWORK_TIMEOUT, p) && self.set(OPT_TIMEOUT, p)
    }

    /// Set a TLS string option on this handle; libldap's result code.
    pub(crate) fn set_tls(&mut self, option: TlsOption, value: &str) -> i32 {
        let Ok(c) = CString::new(value) else { return LDAP_PARAM_ERROR };
        // SAFETY: live handle; these options take a C string, copied by libldap.
        unsafe { ffi::ldap_set_option(self.ld.as_ptr(), option as c_int, c.as_ptr().cast()) }
    }

    /// `LDAP_OPT_X_TLS_REQUIRE_CERT`; libldap's result code.
    pub(crate) fn set_tls_require_cert(&mut self, value: i32) -> i32 {
        let v: c_int = value;
        // SAFETY: live handle; the option takes a pointer to an int.
        unsafe { ffi::ldap_set_option(self.ld.as_ptr(), OPT_X_TLS_REQUIRE_CERT, (&v as *const c_int).cast()) }
    }

    /// A new TLS context for this handle with the options set so far
    /// (`LDAP_OPT_X_TLS_NEWCTX`, client side); libldap's result code.
    pub(crate) fn new_tls_context(&mut self) -> i32 {
        let am_server: c_int = 0;
        // SAFETY: live handle; the option takes a pointer to an int.
        unsafe { ffi::ldap_set_option(self.ld.as_ptr(), OPT_X_TLS_NEWCTX, (&am_server as *const c_int).cast()) }
    }

    /// STARTTLS (`ldap_start_tls_s`), bounded by the handle's timeouts.
    pub(crate) fn start_tls(&mut self) -> i32 {
        // SAFETY: live handle; no controls.
        unsafe { ffi::ldap_start_tls_s(self.ld.as_ptr(), ptr::null_mut(), ptr::null_mut()) }
    }

    /// The socket, once connected.
    pub(crate) fn fd(&mut self) -> Option<RawFd> {
        let mut fd: c_int = -1;
        // SAFETY: live handle; LDAP_OPT_DESC writes one int (-1 when unconnected).
        let rc = unsafe { ffi::ldap_get_option(self.ld.as_ptr(), OPT_DESC, (&mut fd as *mut c_int).cast()) };
        (rc == OPT_SUCCESS && fd >= 0).then_some(fd)
    }

    /// Open the connection now (`ldap_connect`).
    pub(crate) fn connect(&mut self) -> i32 {
        // SAFETY: live handle.
        unsafe { ffi::ldap_connect(self.ld.as_ptr()) }
    }

    /// A simple bind (`ldap_sasl_bind_s` with `LDAP_SASL_SIMPLE`), waiting
    /// at most the handle's `LDAP_OPT_TIMEOUT`.
    pub(crate) fn simple_bind(&mut self, dn: &str, password: &str) -> i32 {
        let Ok(dn) = CString::new(dn) else { return LDAP_PARAM_ERROR };
        let cred = ffi::BerVal { len: password.len() as libc::c_ulong, val: password.as_ptr().cast_mut().cast() };
        // SAFETY: live handle, valid DN string, `cred` points to `password`'s
        // bytes (read only, for the call); NULL mechanism = simple; no controls;
        // no server credentials wanted.
        unsafe {
            ffi::ldap_sasl_bind_s(
                self.ld.as_ptr(),
                dn.as_ptr(),
                ptr::null(),
                &cred,
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            )
        }
    }

    /// `ldap_search_ext_s` with `timeout` as both the server's time limit and
    /// the client's wait. The result code, and the entries that came (also
    /// with some errors, such as a size limit exceeded).
    pub(crate) fn search(
        &mut self,
        base: Option<&CStr>,
        scope: i32,
        filter: Option<&CStr>,
        attrs: &[CString],
        timeout: Duration,
        size_limit: i32,
    ) -> (i32, Vec<Entry>) {
        let mut attr_ptrs: Vec<*mut c_char> = attrs.iter().map(|a| a.as_ptr().cast_mut()).collect();
        attr_ptrs.push(ptr::null_mut());
        let mut tv = timeval(timeout);
        let mut res: *mut ffi::Message = ptr::null_mut();
        // SAFETY: live handle; base/filter NULL or valid strings; `attr_ptrs`
        // a NULL-terminated array of strings that outlive the call (libldap
        // only reads them); `tv` and `res` valid for the call.
        let rc = unsafe {
            ffi::ldap_search_ext_s(
                self.ld.as_ptr(),
                base.map_or(ptr::null(), CStr::as_ptr),
                scope,
                filter.map_or(ptr::null(), CStr::as_ptr),
                attr_ptrs.as_mut_ptr(),
                0,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut tv,
                size_limit,
                &mut res,
            )
        };
        let entries = if res.is_null() { Vec::new() } else { self.entries(res) };
        if !res.is_null() {
            // SAFETY: `res` came from the search and is freed once, after its entries were copied.
            unsafe { ffi::ldap_msgfree(res) };
        }
        (rc, entries)
    }

    /// Copy the entries of result chain `res`.
    fn entries(&mut self, res: *mut ffi::Message) -> Vec<Entry> {
        let ld = self.ld.as_ptr();
        let mut out = Vec::new();
        // SAFETY: live handle and a result chain from a search on it.
        let mut entry = unsafe { ffi::ldap_first_entry(ld, res) };
        while !entry.is_null() {
            out.push(Self::entry(ld, entry));
            // SAFETY: `entry` is an entry of the chain.
            entry = unsafe { ffi::ldap_next_entry(ld, entry) };
        }
        out
    }

    /// Copy one entry's attributes and values.
    fn entry(ld: *mut ffi::Ldap, entry: *mut ffi::Message) -> Entry {
        let mut attrs = Vec::new();
        let mut ber: *mut ffi::Ber = ptr::null_mut();
        // SAFETY: live handle, an entry of a live result, a valid out pointer.
        let mut attr = unsafe { ffi::ldap_first_attribute(ld, entry, &mut ber) };
        while !attr.is_null() {
            // SAFETY: a non-NULL attribute name is a valid C string.
            let name = unsafe { CStr::from_ptr(attr) }.to_string_lossy().into_owned();
            // SAFETY: as for ldap_first_attribute; `attr` is a valid name.
            let vals = unsafe { ffi::ldap_get_values_len(ld, entry, attr) };
            if !vals.is_null() {
                attrs.push((name, Self::values(vals)));
                // SAFETY: `vals` came from ldap_get_values_len; freed once.
                unsafe { ffi::ldap_value_free_len(vals) };
            }
            // SAFETY: `attr` was allocated by libldap for us; freed once.
            unsafe { ffi::ldap_memfree(attr.cast()) };
            // SAFETY: `ber` is the iterator ldap_first_attribute set up for this entry.
            attr = unsafe { ffi::ldap_next_attribute(ld, entry, ber) };
        }
        if !ber.is_null() {
            // SAFETY: the iterator is freed once, without its buffer (owned by the message).
            unsafe { ffi::ber_free(ber, 0) };
        }
        Entry { attrs }
    }

    /// Copy a NULL-terminated array of values.
    fn values(vals: *mut *mut ffi::BerVal) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for i in 0.. {
            // SAFETY: `vals` is NULL-terminated; we stop at the NULL, so index
            // `i` is within it.
            let slot = unsafe { vals.add(i) };
            // SAFETY: `slot` points into the array (see above).
            let v = unsafe { *slot };
            if v.is_null() {
                break;
            }
            // SAFETY: a non-NULL element points to a valid berval.
            let bv = unsafe { &*v };
            if bv.val.is_null() {
                out.push(Vec::new());
                continue;
            }
            let len = usize::try_from(bv.len).unwrap_or(0);
            // SAFETY: `val` points to `len` readable bytes.
            out.push(unsafe { std::slice::from_raw_parts(bv.val.cast::<u8>(), len) }.to_vec());
        }
        out
    }
}

impl Drop for Ldap {
    fn drop(&mut self) {
        // SAFETY: `ld` is live and dropped once; unbind frees it.
        unsafe { ffi::ldap_unbind_ext_s(self.ld.as_ptr(), ptr::null_mut(), ptr::null_mut()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_as_libldap_parses_them() {
        assert!(is_ldap_url("ldap://127.0.0.1:389/"));
        assert!(is_ldap_url("ldapi://%2Ftmp%2Fs/"));
        assert!(!is_ldap_url("localhost"));
        let u = parse_url("ldap:///dc=example,dc=com?mail,cn?sub?(uid=alice)").unwrap();
        assert_eq!(u.scheme, "ldap");
        assert_eq!(u.dn.as_deref(), Some(c"dc=example,dc=com"));
        assert_eq!(u.attrs, Some(vec!["mail".to_string(), "cn".to_string()]));
        assert_eq!(u.scope, SCOPE_SUB);
        assert_eq!(u.filter.as_deref(), Some(c"(uid=alice)"));
        assert!(parse_url("ldap://[bad").is_err());
    }

    #[test]
    fn error_texts_and_version_come_from_the_library() {
        assert_eq!(err2string(LDAP_NO_SUCH_OBJECT), "No such object");
        assert_eq!(err2string(LDAP_SERVER_DOWN), "Can't contact LDAP server");
        assert!(library_version().starts_with("2."), "{}", library_version());
    }

    #[test]
    fn a_handle_to_nowhere_fails_within_its_timeout() {
        let mut ld = Ldap::initialize("ldap://127.0.0.1:1/").unwrap();
        assert!(ld.set_timeouts(Duration::from_secs(2)));
        assert!(ld.set_protocol_version(3));
        assert_eq!(ld.simple_bind("", ""), LDAP_SERVER_DOWN);
        assert_eq!(ld.fd(), None);
    }
}
