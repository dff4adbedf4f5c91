//! The MariaDB/MySQL client library (through `mysqlclient-sys`, linked
//! against the system's libmariadb found by pkg-config as `libmariadb` or
//! `mysqlclient`): the few calls a `mysql:` table needs, wrapped safely.
//! Every libmariadb call of the crate is in this file.
//!
//! Calls block, bounded by the library's own timeouts: the connect timeout
//! (`MYSQL_OPT_CONNECT_TIMEOUT`) for the TCP connect and the handshake, and
//! the I/O timeout (`MYSQL_OPT_READ_TIMEOUT`/`WRITE_TIMEOUT`) for every
//! read and write of a query. Both count whole seconds.
//!
//! Threads: `mysql_library_init` runs once before the first connection
//! ([`connect`] sees to it). `mysql_thread_init`/`end` are not called:
//! they are deprecated no-ops since Connector/C 3.0, and libmariadb is
//! built thread-safe; a connection is used by one thread at a time.

use mysqlclient_sys as ffi;
use std::ffi::{c_char, c_uint, c_ulong, CStr, CString};
use std::ptr::NonNull;
use std::sync::Once;
use std::time::{Duration, Instant};

/// `CLIENT_MULTI_RESULTS` (mysql_com.h): the server may answer with more
/// than one result set (a stored procedure's `CALL`), as Postfix asks.
const CLIENT_MULTI_RESULTS: c_ulong = 1 << 17;

/// Client and server error codes that mean the connection is gone
/// (errmsg.h, mysqld_error.h): the server went away or was lost, the
/// connection was killed, the server is shutting down, or closed an
/// inactive connection (MySQL 8).
const LOST: [u32; 6] = [
    2006, // CR_SERVER_GONE_ERROR
    2013, // CR_SERVER_LOST
    2055, // CR_SERVER_LOST_EXTENDED
    1927, // ER_CONNECTION_KILLED
    1053, // ER_SERVER_SHUTDOWN
    4031, // ER_CLIENT_INTERACTION_TIMEOUT
];
/// CR_COMMANDS_OUT_OF_SYNC: the connection's protocol state is unknown.
const OUT_OF_SYNC: u32 = 2014;

/// Why connecting failed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum ConnectError {
    /// `mysql_real_connect` failed: the library's text.
    #[error("{text}")]
    Connect { code: u32, text: String },
    /// Connected, but the character set could not be set (Postfix 3.9's text).
    #[error("mysql_set_character_set '{charset}' failed: {text}")]
    Charset { charset: String, text: String },
    /// `mysql_init` failed.
    #[error("insufficient memory")]
    NoMemory,
    /// A parameter holds a NUL byte, which the C API cannot take.
    #[error("{0} contains a NUL byte")]
    Nul(&'static str),
}

/// Where `mysql_real_connect` goes: `host` (TCP, with `port`), or the
/// UNIX socket `socket`, or neither: the library's default socket.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    pub(crate) host: Option<String>,
    pub(crate) socket: Option<String>,
    pub(crate) port: u16,
}

/// TLS files and ciphers (`mysql_ssl_set`), each optional.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct Tls {
    pub(crate) key_file: Option<String>,
    pub(crate) cert_file: Option<String>,
    pub(crate) ca_file: Option<String>,
    pub(crate) ca_path: Option<String>,
    pub(crate) ciphers: Option<String>,
}

impl Tls {
    fn is_set(&self) -> bool {
        [&self.key_file, &self.cert_file, &self.ca_file, &self.ca_path, &self.ciphers].iter().any(|v| v.is_some())
    }
}

/// Everything a connection is made with. No `Debug`: it holds the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Params {
    pub(crate) endpoint: Endpoint,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) dbname: String,
    /// Set after connecting with `mysql_set_character_set`; empty: the
    /// library's default (or the option file's).
    pub(crate) charset: String,
    pub(crate) option_file: Option<String>,
    /// Empty: none.
    pub(crate) option_group: String,
    pub(crate) tls: Tls,
    /// `MYSQL_OPT_SSL_VERIFY_SERVER_CERT`; None: the library's default.
    pub(crate) tls_verify_cert: Option<bool>,
    pub(crate) connect_timeout: Duration,
    /// Read and write timeout of each query.
    pub(crate) io_timeout: Duration,
}

/// One stage of a query that failed. Only the first failure of a query is
/// reported; the rest of the answer is still read so that the connection
/// stays in step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// `mysql_real_query` failed.
    Query,
    /// A second result set with data.
    MultipleResultSets,
    /// `mysql_store_result` failed where a result set was due.
    StoreResult,
    /// `mysql_next_result` failed.
    NextResult,
}

/// Whether a failed query's connection can serve another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Health {
    Sound,
    /// The server closed the connection or it broke.
    Lost,
    /// No answer within the I/O timeout; the connection is given up.
    TimedOut,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct QueryError {
    pub(crate) stage: Stage,
    pub(crate) code: u32,
    /// The library's text (empty for [`Stage::MultipleResultSets`]).
    pub(crate) text: String,
    pub(crate) health: Health,
}

/// The rows of a result set; each column NULL (None) or its bytes.
pub(crate) type Rows = Vec<Vec<Option<Vec<u8>>>>;

/// `mysql_library_init`, once, before any connection exists.
/// The client library's version, as `mysql_get_client_info()` reports it
/// (for `proxymap --version`).
pub(crate) fn library_version() -> String {
    // SAFETY: takes no arguments; returns null or a static NUL-terminated string.
    let text = unsafe { ffi::mysql_get_client_info() };
    if text.is_null() {
        return "unknown".into();
    }
    // SAFETY: non-null, static for the life of the process.
    unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

fn library_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        // SAFETY: no arguments (no embedded server); called once, under the
        // Once, before the first mysql_init of this process.
        let rc = unsafe { ffi::mysql_server_init(0, std::ptr::null_mut(), std::ptr::null_mut()) };
        if rc != 0 {
            log::error!("mysql_library_init failed ({rc})");
        }
    });
}

/// A C string's text, lossily; empty for null.
///
/// # Safety
/// `p` must be null or a NUL-terminated string valid for the call.
unsafe fn text_of(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated per this function's contract.
    let text = unsafe { CStr::from_ptr(p) };
    String::from_utf8_lossy(text.to_bytes()).into_owned()
}

fn cstring(value: &str, what: &'static str) -> Result<CString, ConnectError> {
    CString::new(value).map_err(|_| ConnectError::Nul(what))
}

fn opt_cstring(value: Option<&String>, what: &'static str) -> Result<Option<CString>, ConnectError> {
    value.map(|v| cstring(v, what)).transpose()
}

fn ptr_of(value: &Option<CString>) -> *const c_char {
    value.as_ref().map_or(std::ptr::null(), |v| v.as_ptr())
}

/// Whole seconds, at least one (the library's unit; 0 would mean none).
fn secs(d: Duration) -> c_uint {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    c_uint::try_from(s.max(1)).unwrap_or(c_uint::MAX)
}

/// `mysql_options(conn, option, arg)` for a `Conn` before it connects.
/// Failures (an option this library does not know) are ignored, as Postfix
/// does. (A macro: the crate's option enum has no nameable type.)
macro_rules! set_option {
    ($conn:expr, $option:ident, $arg:expr) => {
        // SAFETY: live handle, before connecting; every caller passes the
        // argument type the option expects (unsigned int, my_bool or a
        // NUL-terminated string), alive for the call: the library copies it.
        unsafe { ffi::mysql_options($conn.raw.as_ptr(), ffi::mysql_option::$option, $arg) }
    };
}

/// One connection; closed (`mysql_close`) on drop.
pub(crate) struct Conn {
    raw: NonNull<ffi::MYSQL>,
    io_timeout: Duration,
    /// Set when the connection broke or its state is unknown.
    unusable: bool,
}

// SAFETY: libmariadb is thread-safe: a MYSQL handle may be used from any
// thread as long as no two use it at once. `Conn` is not `Sync`, and every
// method that talks to the server takes `&mut self`; `escape` (`&self`)
// only reads the handle's character set and status flags.
unsafe impl Send for Conn {}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: the handle came from mysql_init, is closed only here, and
        // is not used afterwards.
        unsafe { ffi::mysql_close(self.raw.as_ptr()) };
    }
}

/// Connect as `p` says.
pub(crate) fn connect(p: &Params) -> Result<Conn, ConnectError> {
    library_init();
    // SAFETY: a null argument makes the library allocate the handle.
    let raw = unsafe { ffi::mysql_init(std::ptr::null_mut()) };
    let raw = NonNull::new(raw).ok_or(ConnectError::NoMemory)?;
    // From here on every return path closes the handle through Drop.
    let conn = Conn { raw, io_timeout: p.io_timeout, unusable: false };
    let connect_timeout = secs(p.connect_timeout);
    let io_timeout = secs(p.io_timeout);
    set_option!(conn, MYSQL_OPT_CONNECT_TIMEOUT, (&raw const connect_timeout).cast());
    set_option!(conn, MYSQL_OPT_READ_TIMEOUT, (&raw const io_timeout).cast());
    set_option!(conn, MYSQL_OPT_WRITE_TIMEOUT, (&raw const io_timeout).cast());
    if let Some(file) = opt_cstring(p.option_file.as_ref(), "option_file")? {
        set_option!(conn, MYSQL_READ_DEFAULT_FILE, file.as_ptr().cast());
    }
    if !p.option_group.is_empty() {
        let group = cstring(&p.option_group, "option_group")?;
        set_option!(conn, MYSQL_READ_DEFAULT_GROUP, group.as_ptr().cast());
    }
    if p.tls.is_set() {
        let key = opt_cstring(p.tls.key_file.as_ref(), "tls_key_file")?;
        let cert = opt_cstring(p.tls.cert_file.as_ref(), "tls_cert_file")?;
        let ca = opt_cstring(p.tls.ca_file.as_ref(), "tls_CAfile")?;
        let capath = opt_cstring(p.tls.ca_path.as_ref(), "tls_CApath")?;
        let ciphers = opt_cstring(p.tls.ciphers.as_ref(), "tls_ciphers")?;
        // SAFETY: live handle; each pointer is null or a NUL-terminated
        // string alive for the call (the library copies them).
        unsafe {
            ffi::mysql_ssl_set(
                raw.as_ptr(),
                ptr_of(&key),
                ptr_of(&cert),
                ptr_of(&ca),
                ptr_of(&capath),
                ptr_of(&ciphers),
            )
        };
    }
    if let Some(verify) = p.tls_verify_cert {
        let flag: ffi::my_bool = verify.into();
        set_option!(conn, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, (&raw const flag).cast());
    }
    let host = opt_cstring(p.endpoint.host.as_ref(), "host")?;
    let socket = opt_cstring(p.endpoint.socket.as_ref(), "socket")?;
    let user = cstring(&p.user, "user")?;
    let password = cstring(&p.password, "password")?;
    let dbname = cstring(&p.dbname, "dbname")?;
    // SAFETY: live handle; every string is null or NUL-terminated and alive
    // for the call.
    let ok = unsafe {
        ffi::mysql_real_connect(
            raw.as_ptr(),
            ptr_of(&host),
            user.as_ptr(),
            password.as_ptr(),
            dbname.as_ptr(),
            c_uint::from(p.endpoint.port),
            ptr_of(&socket),
            CLIENT_MULTI_RESULTS,
        )
    };
    if ok.is_null() {
        return Err(ConnectError::Connect { code: conn.errno(), text: conn.error() });
    }
    if !p.charset.is_empty() {
        let charset = cstring(&p.charset, "charset")?;
        // SAFETY: live, connected handle; NUL-terminated name alive for the call.
        if unsafe { ffi::mysql_set_character_set(raw.as_ptr(), charset.as_ptr()) } != 0 {
            return Err(ConnectError::Charset { charset: p.charset.clone(), text: conn.error() });
        }
    }
    Ok(conn)
}

impl Conn {
    /// The last error's text.
    pub(crate) fn error(&self) -> String {
        // SAFETY: live handle; the text lives until the next call on it and
        // is copied before that.
        let p = unsafe { ffi::mysql_error(self.raw.as_ptr()) };
        // SAFETY: mysql_error returns a NUL-terminated string.
        unsafe { text_of(p) }
    }

    /// The last error's code (0: none).
    pub(crate) fn errno(&self) -> u32 {
        // SAFETY: live handle.
        unsafe { ffi::mysql_errno(self.raw.as_ptr()) }
    }

    /// Append `raw` to `out`, escaped for a string literal by
    /// `mysql_real_escape_string` in this connection's character set:
    /// NUL, `\n`, `\r`, `\`, `'`, `"` and Ctrl-Z backslash-escaped (quotes
    /// doubled instead when the server runs with NO_BACKSLASH_ESCAPES).
    pub(crate) fn escape(&self, raw: &[u8], out: &mut Vec<u8>) {
        let room = 2 * raw.len() + 1;
        out.reserve(room);
        let start = out.len();
        let Ok(len) = c_ulong::try_from(raw.len()) else { return };
        let to = out.spare_capacity_mut().as_mut_ptr().cast::<c_char>();
        // SAFETY: live handle; `to` has room for 2 * len + 1 bytes (reserved
        // above), the most the function writes; `from` is `len` readable bytes.
        let n = unsafe { ffi::mysql_real_escape_string(self.raw.as_ptr(), to, raw.as_ptr().cast::<c_char>(), len) };
        // (unsigned long)-1 is an error: nothing appended.
        let Ok(n) = usize::try_from(n) else { return };
        if n < room {
            // SAFETY: the library wrote `n` initialized bytes past `start`,
            // within the reserved capacity.
            unsafe { out.set_len(start + n) };
        }
    }

    /// True when the connection cannot serve another query: it broke
    /// before, or (an idle connection) the server sent something or closed
    /// it. Does not wait.
    pub(crate) fn is_broken(&mut self) -> bool {
        if self.unusable {
            return true;
        }
        // SAFETY: live handle.
        let fd = unsafe { ffi::mysql_get_socket(self.raw.as_ptr()) };
        if fd < 0 {
            return true;
        }
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, alive for the whole call; no wait.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        // An idle connection has nothing to read: anything there is EOF or
        // the error packet a server sends before it closes the connection.
        n != 0
    }

    fn fail(&mut self, stage: Stage, started: Instant) -> QueryError {
        let code = self.errno();
        let health = if LOST.contains(&code) {
            // The library reports a read timeout as a lost connection.
            if started.elapsed() + Duration::from_millis(200) >= self.io_timeout {
                Health::TimedOut
            } else {
                Health::Lost
            }
        } else if code == OUT_OF_SYNC {
            Health::Lost
        } else {
            Health::Sound
        };
        if health != Health::Sound {
            self.unusable = true;
        }
        QueryError { stage, code, text: self.error(), health }
    }

    /// Send `sql` and read the whole answer: the first result set is kept
    /// (None when the statement returned none); a second one with data, a
    /// result set that could not be read, or an error moving to the next
    /// one fail the query. Only the first failure is returned; the answer
    /// is read to its end all the same.
    pub(crate) fn query(&mut self, sql: &[u8]) -> Result<Option<Rows>, QueryError> {
        let started = Instant::now();
        let Ok(len) = c_ulong::try_from(sql.len()) else {
            return Err(QueryError {
                stage: Stage::Query,
                code: 0,
                text: "query too long".into(),
                health: Health::Sound,
            });
        };
        // SAFETY: live handle; `sql` is `len` readable bytes.
        let rc = unsafe { ffi::mysql_real_query(self.raw.as_ptr(), sql.as_ptr().cast(), len) };
        if rc != 0 {
            return Err(self.fail(Stage::Query, started));
        }
        let mut first: Option<Rows> = None;
        let mut error: Option<QueryError> = None;
        loop {
            // SAFETY: live handle, after a successful query or next_result.
            let res = unsafe { ffi::mysql_store_result(self.raw.as_ptr()) };
            if let Some(res) = NonNull::new(res) {
                let set = ResultSet(res);
                if first.is_none() {
                    first = Some(set.rows());
                } else if error.is_none() {
                    error = Some(QueryError {
                        stage: Stage::MultipleResultSets,
                        code: 0,
                        text: String::new(),
                        health: Health::Sound,
                    });
                }
            // SAFETY: live handle.
            } else if unsafe { ffi::mysql_field_count(self.raw.as_ptr()) } != 0 {
                let e = self.fail(Stage::StoreResult, started);
                let lost = e.health != Health::Sound;
                error.get_or_insert(e);
                if lost {
                    break;
                }
            }
            // SAFETY: live handle. -1: no more results, 0: one more, >0: error.
            let next = unsafe { ffi::mysql_next_result(self.raw.as_ptr()) };
            if next > 0 {
                let e = self.fail(Stage::NextResult, started);
                error.get_or_insert(e);
            }
            if next != 0 {
                break;
            }
        }
        match error {
            Some(e) => Err(e),
            None => Ok(first),
        }
    }
}

/// A stored result set; freed on drop.
struct ResultSet(NonNull<ffi::MYSQL_RES>);

impl Drop for ResultSet {
    fn drop(&mut self) {
        // SAFETY: from mysql_store_result, freed only here.
        unsafe { ffi::mysql_free_result(self.0.as_ptr()) };
    }
}

impl ResultSet {
    /// Every row, every column, copied out.
    fn rows(&self) -> Rows {
        let res = self.0.as_ptr();
        // SAFETY: live result set.
        let fields = unsafe { ffi::mysql_num_fields(res) } as usize;
        let mut rows = Vec::new();
        loop {
            // SAFETY: live, stored result set: rows are in memory.
            let row = unsafe { ffi::mysql_fetch_row(res) };
            if row.is_null() {
                return rows;
            }
            // SAFETY: live result set, right after a successful fetch_row.
            let lengths = unsafe { ffi::mysql_fetch_lengths(res) };
            if lengths.is_null() {
                return rows;
            }
            // SAFETY: the row holds `fields` column pointers, alive until
            // the next fetch.
            let cols = unsafe { std::slice::from_raw_parts(row, fields) };
            // SAFETY: the lengths array has `fields` entries, alive as long.
            let lengths = unsafe { std::slice::from_raw_parts(lengths, fields) };
            let mut values = Vec::with_capacity(fields);
            for (&col, &len) in cols.iter().zip(lengths) {
                if col.is_null() {
                    values.push(None);
                    continue;
                }
                // SAFETY: a non-NULL column points to `len` bytes, alive
                // until the result set is freed (after this copy).
                let bytes = unsafe { std::slice::from_raw_parts(col.cast::<u8>(), len as usize) };
                values.push(Some(bytes.to_vec()));
            }
            rows.push(values);
        }
    }
}

#[cfg(test)]
impl Conn {
    /// A handle that was never connected: enough for escaping in the
    /// library's default character set.
    pub(crate) fn unconnected() -> Conn {
        library_init();
        // SAFETY: a null argument makes the library allocate the handle.
        let raw = unsafe { ffi::mysql_init(std::ptr::null_mut()) };
        Conn { raw: NonNull::new(raw).expect("mysql_init"), io_timeout: Duration::from_secs(1), unusable: false }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(raw: &[u8]) -> Vec<u8> {
        let mut out = b"<".to_vec();
        Conn::unconnected().escape(raw, &mut out);
        out
    }

    #[test]
    fn escaping_backslash_escapes_the_specials_and_nothing_else() {
        assert_eq!(escaped(b"o'brien"), b"<o\\'brien");
        assert_eq!(escaped(b"say \"hi\""), b"<say \\\"hi\\\"");
        assert_eq!(escaped(b"back\\slash"), b"<back\\\\slash");
        assert_eq!(escaped(b"nul\0x"), b"<nul\\0x");
        assert_eq!(escaped(b"a\nb\rc"), b"<a\\nb\\rc");
        assert_eq!(escaped(b"ctrl\x1az"), b"<ctrl\\Zz");
        assert_eq!(escaped(b"100%_ok"), b"<100%_ok");
        assert_eq!(escaped("über".as_bytes()), "<über".as_bytes());
        assert_eq!(escaped(b""), b"<");
    }

    #[test]
    fn whole_seconds_at_least_one() {
        assert_eq!(secs(Duration::ZERO), 1);
        assert_eq!(secs(Duration::from_millis(1500)), 2);
        assert_eq!(secs(Duration::from_secs(5)), 5);
    }
}
