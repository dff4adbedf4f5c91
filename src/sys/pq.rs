//! libpq, PostgreSQL's client library (through `pq-sys`, linked against the
//! system's libpq found by pkg-config): the few calls a `pgsql:` table needs,
//! wrapped safely. Every libpq call of the crate is in this file.
//!
//! Nothing here blocks past a deadline the caller gives: connecting uses
//! libpq's non-blocking connect (`PQconnectStartParams` + `PQconnectPoll`)
//! and a query its asynchronous API (`PQsendQuery`, then `poll(2)` on the
//! connection's socket until the deadline, `PQconsumeInput`, `PQisBusy`,
//! `PQgetResult`). Only host name resolution, done inside
//! `PQconnectStartParams`, is synchronous (Postfix's `hosts` are normally
//! socket directories or addresses).
//!
//! A query that times out leaves its connection in an unknown state: the
//! connection is marked unusable (the pool drops it, which closes it) and a
//! cancel request is sent from a short-lived thread, because libpq 15's
//! `PQcancel` connects and waits for the server without any time limit (a
//! hung server would hang the lookup). Without the cancel a server would go
//! on running the abandoned query until it ends. At most
//! [`MAX_CANCELS_IN_FLIGHT`] such threads exist at once; past that the
//! connection is merely closed.

use pq_sys as ffi;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Cancel requests sent at once, at most (see the module documentation).
const MAX_CANCELS_IN_FLIGHT: usize = 4;

/// Why a libpq operation failed. Texts are libpq's, trimmed of their final
/// newline.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum Error {
    /// The server refused or could not be reached.
    #[error("{0}")]
    Connect(String),
    /// No connection within the connect timeout.
    #[error("timeout expired while connecting")]
    ConnectTimeout,
    /// No complete answer within the query timeout; the connection is
    /// unusable now.
    #[error("query timed out")]
    QueryTimeout,
    /// Sending the query or reading its answer failed (typically the server
    /// closed the connection).
    #[error("{0}")]
    Connection(String),
    /// `PQescapeStringConn` rejected the input (not valid in the client
    /// encoding).
    #[error("cannot escape input string: {0}")]
    Escape(String),
    /// A parameter or query contains a NUL byte, which libpq cannot take.
    #[error("{0} contains a NUL byte")]
    Nul(&'static str),
}

/// Where and as whom to connect: one entry of a `pgsql:` table's `hosts`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Target {
    /// A `postgresql:` URI (or a connection string), passed verbatim;
    /// `dbname`, `user` and `password` of the table do not apply.
    Uri(String),
    /// A host and port, or a socket directory (`host` empty or starting
    /// with `/`; empty means libpq's default).
    Host { host: String, port: String, dbname: String, user: String, password: String },
}

impl Target {
    /// A `hosts` entry as Postfix reads it: `postgresql:...` verbatim;
    /// else without an `inet:` or `unix:` prefix, empty or `/...` a socket
    /// directory, otherwise `host[:port]` split at the last colon.
    pub(crate) fn parse(entry: &str, dbname: &str, user: &str, password: &str) -> Target {
        if entry.starts_with("postgresql:") {
            return Target::Uri(entry.to_string());
        }
        let rest = entry.strip_prefix("unix:").or_else(|| entry.strip_prefix("inet:")).unwrap_or(entry);
        let (host, port) = if rest.is_empty() || rest.starts_with('/') {
            (rest, "")
        } else {
            rest.rsplit_once(':').unwrap_or((rest, ""))
        };
        Target::Host {
            host: host.to_string(),
            port: port.to_string(),
            dbname: dbname.to_string(),
            user: user.to_string(),
            password: password.to_string(),
        }
    }

    /// True for a UNIX-domain socket (tried before TCP hosts).
    pub(crate) fn is_socket(&self) -> bool {
        matches!(self, Target::Host { host, .. } if host.is_empty() || host.starts_with('/'))
    }

    /// libpq's connection keywords and values. Passed as arrays, so no value
    /// needs quoting. The database name comes first and is expanded when it
    /// is a connection string or URI (as `PQsetdbLogin` does for Postfix);
    /// the entries after it override what it sets.
    fn params(&self, encoding: &str, timeout: Duration) -> Result<Vec<(&'static CStr, CString)>, Error> {
        // libpq counts whole seconds, at least 2; the deadline of
        // `connect` is what bounds the attempt, this only documents it to
        // the server side of the library.
        let secs = timeout.as_secs() + u64::from(timeout.subsec_nanos() > 0);
        let mut out: Vec<(&'static CStr, String)> = Vec::new();
        match self {
            Target::Uri(uri) => out.push((c"dbname", uri.clone())),
            Target::Host { host, port, dbname, user, password } => {
                out.push((c"dbname", dbname.clone()));
                out.push((c"host", host.clone()));
                out.push((c"port", port.clone()));
                out.push((c"user", user.clone()));
                out.push((c"password", password.clone()));
            }
        }
        out.push((c"connect_timeout", secs.max(2).to_string()));
        out.push((c"client_encoding", encoding.to_string()));
        out.push((c"fallback_application_name", "proxymap".to_string()));
        out.into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| CString::new(v).map(|v| (k, v)).map_err(|_| Error::Nul("a connection parameter")))
            .collect()
    }
}

/// Never shows the password.
impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Uri(uri) => write!(f, "Uri({:?})", redact(uri)),
            Target::Host { host, port, dbname, user, .. } => {
                write!(f, "Host {{ host: {host:?}, port: {port:?}, dbname: {dbname:?}, user: {user:?} }}")
            }
        }
    }
}

/// `entry` (a `hosts` entry, URI or connection string) with any password
/// replaced by `*`, for log lines: Postfix logs URIs verbatim, passwords
/// included.
/// The libpq version, as `PQlibVersion()` reports it (for `proxymap --version`).
pub(crate) fn library_version() -> String {
    // SAFETY: PQlibVersion takes no arguments and only returns a number.
    let v = unsafe { ffi::PQlibVersion() };
    // Since PostgreSQL 10: major * 10000 + minor.
    format!("{}.{}", v / 10000, v % 10000)
}

pub(crate) fn redact(entry: &str) -> String {
    let mut out = entry.to_string();
    // scheme://user:password@host...
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let end = out[start..].find(['/', '?']).map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..end].rfind('@').map(|i| start + i) {
            if let Some(colon) = out[start..at].find(':').map(|i| start + i) {
                out.replace_range(colon + 1..at, "*");
            }
        }
    }
    // password=... in a URI's query or a key=value connection string.
    let mut from = 0;
    while let Some(i) = out[from..].find("password").map(|i| from + i) {
        let after = &out[i + "password".len()..];
        let eq = after.len() - after.trim_start().len();
        if !after[eq..].starts_with('=') {
            from = i + 1;
            continue;
        }
        let vstart = i + "password".len() + eq + 1;
        let rest = &out[vstart..];
        let lead = rest.len() - rest.trim_start().len();
        let vstart = vstart + lead;
        let value = &out[vstart..];
        let vlen = if let Some(quoted) = value.strip_prefix('\'') {
            // a quoted conninfo value: up to the next unescaped quote
            let mut n = 1;
            let mut chars = quoted.char_indices();
            while let Some((j, c)) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '\'' => {
                        n = j + 2;
                        break;
                    }
                    _ => n = j + 1 + c.len_utf8(),
                }
            }
            n
        } else {
            value.find([' ', '&', '\t', '\n']).unwrap_or(value.len())
        };
        out.replace_range(vstart..vstart + vlen, "*");
        from = vstart + 1;
    }
    out
}

/// One connection to a PostgreSQL server; closed (`PQfinish`) on drop.
pub(crate) struct Conn {
    raw: NonNull<ffi::PGconn>,
    /// Set after a timeout or an unexpected protocol state: never reused.
    unusable: bool,
}

// SAFETY: a thread-safe libpq (Debian's is built so) lets any thread use a
// PGconn as long as no two threads use it at once. `Conn` is not `Sync`,
// and every method that drives the connection takes `&mut self`, so one
// thread at a time is guaranteed by the borrow rules.
unsafe impl Send for Conn {}

/// How a socket must be ready.
#[derive(Clone, Copy)]
enum Ready {
    Read,
    Write,
    Either,
}

/// Wait until `fd` is ready or the deadline passes (false then).
fn wait_socket(fd: c_int, ready: Ready, deadline: Instant) -> Result<bool, String> {
    let events = match ready {
        Ready::Read => libc::POLLIN,
        Ready::Write => libc::POLLOUT,
        Ready::Either => libc::POLLIN | libc::POLLOUT,
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = c_int::try_from(left.as_micros().div_ceil(1000)).unwrap_or(c_int::MAX);
        let mut pfd = libc::pollfd { fd, events, revents: 0 };
        // SAFETY: one valid pollfd, alive for the whole call.
        let n = unsafe { libc::poll(&mut pfd, 1, ms) };
        match n {
            n if n > 0 => return Ok(true),
            0 if Instant::now() >= deadline => return Ok(false),
            0 => {}
            _ => {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(format!("poll: {e}"));
                }
            }
        }
    }
}

/// libpq's text without its final newline.
///
/// # Safety
/// `p` must be null or a NUL-terminated string valid for the call.
unsafe fn message(p: *const c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: non-null and NUL-terminated per this function's contract.
    let text = unsafe { CStr::from_ptr(p) };
    String::from_utf8_lossy(text.to_bytes()).trim_end_matches('\n').to_string()
}

/// Notices (warnings from the server, and the message a server sends before
/// it closes an idle connection) go to the debug log, not to stderr as
/// libpq's default does.
unsafe extern "C" fn on_notice(_arg: *mut c_void, text: *const c_char) {
    // SAFETY: libpq passes a NUL-terminated message valid for this call.
    let text = unsafe { message(text) };
    log::debug!("pgsql server notice: {text}");
}

/// Connect to `target` with this client encoding (empty: libpq's default),
/// giving up after `timeout`.
pub(crate) fn connect(target: &Target, encoding: &str, timeout: Duration) -> Result<Conn, Error> {
    let deadline = Instant::now() + timeout;
    // `Conn: Send` relies on it (Debian's libpq is; 17+ always are).
    // SAFETY: a plain query of a library constant.
    if unsafe { ffi::PQisthreadsafe() } == 0 {
        return Err(Error::Connect("libpq was built without thread safety".into()));
    }
    let params = target.params(encoding, timeout)?;
    let keys: Vec<*const c_char> =
        params.iter().map(|(k, _)| k.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    let values: Vec<*const c_char> =
        params.iter().map(|(_, v)| v.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
    // SAFETY: both arrays are NULL-terminated, of equal length, and point to
    // NUL-terminated strings that outlive the call (libpq copies them).
    let raw = unsafe { ffi::PQconnectStartParams(keys.as_ptr(), values.as_ptr(), 1) };
    let raw = NonNull::new(raw).ok_or_else(|| Error::Connect("out of memory".into()))?;
    // From here on, every return path closes the connection through Drop.
    let conn = Conn { raw, unusable: false };
    if conn.bad() {
        return Err(Error::Connect(conn.error_message()));
    }
    // libpq's protocol: wait as if the last poll said "writing", then as
    // each PQconnectPoll says.
    let mut ready = Ready::Write;
    loop {
        match wait_socket(conn.socket()?, ready, deadline) {
            Ok(true) => {}
            Ok(false) => return Err(Error::ConnectTimeout),
            Err(e) => return Err(Error::Connect(e)),
        }
        // SAFETY: `raw` is a live connection owned by `conn`.
        let state = unsafe { ffi::PQconnectPoll(conn.raw.as_ptr()) };
        ready = match state {
            ffi::PostgresPollingStatusType::PGRES_POLLING_OK => break,
            ffi::PostgresPollingStatusType::PGRES_POLLING_FAILED => return Err(Error::Connect(conn.error_message())),
            ffi::PostgresPollingStatusType::PGRES_POLLING_READING => Ready::Read,
            ffi::PostgresPollingStatusType::PGRES_POLLING_WRITING => Ready::Write,
            ffi::PostgresPollingStatusType::PGRES_POLLING_ACTIVE => Ready::Either,
        };
    }
    // SAFETY: live connection; on_notice has the signature libpq calls and
    // uses no argument, so a null `arg` is fine.
    unsafe { ffi::PQsetNoticeProcessor(conn.raw.as_ptr(), Some(on_notice), std::ptr::null_mut()) };
    // Non-blocking, so that sending a query cannot wait past the deadline.
    // SAFETY: live connection.
    if unsafe { ffi::PQsetnonblocking(conn.raw.as_ptr(), 1) } != 0 {
        return Err(Error::Connect(conn.error_message()));
    }
    Ok(conn)
}

impl Conn {
    /// libpq's last error message for this connection.
    pub(crate) fn error_message(&self) -> String {
        // SAFETY: live connection; the returned text lives until the next
        // libpq call on it, and is copied before that.
        let text = unsafe { ffi::PQerrorMessage(self.raw.as_ptr()) };
        // SAFETY: PQerrorMessage returns a NUL-terminated string.
        unsafe { message(text) }
    }

    fn bad(&self) -> bool {
        // SAFETY: live connection.
        let status = unsafe { ffi::PQstatus(self.raw.as_ptr()) };
        status == ffi::ConnStatusType::CONNECTION_BAD
    }

    fn socket(&self) -> Result<c_int, Error> {
        // SAFETY: live connection.
        let fd = unsafe { ffi::PQsocket(self.raw.as_ptr()) };
        if fd < 0 {
            return Err(Error::Connection(self.error_message()));
        }
        Ok(fd)
    }

    /// True when the connection cannot serve another query: the server
    /// closed it (seen without waiting: input waiting on an idle
    /// connection is read), a query timed out on it, or it is not idle.
    pub(crate) fn is_broken(&mut self) -> bool {
        if self.unusable || self.bad() {
            return true;
        }
        let Ok(fd) = self.socket() else { return true };
        // Anything readable now is a notice, or the server's last words
        // before closing, or the end of the stream.
        while let Ok(true) = wait_socket(fd, Ready::Read, Instant::now()) {
            // SAFETY: live connection.
            if unsafe { ffi::PQconsumeInput(self.raw.as_ptr()) } == 0 || self.bad() {
                return true;
            }
            // SAFETY: live connection.
            if unsafe { ffi::PQisBusy(self.raw.as_ptr()) } != 0 {
                break;
            }
            // SAFETY: live connection.
            let stray = unsafe { ffi::PQgetResult(self.raw.as_ptr()) };
            if let Some(stray) = NonNull::new(stray) {
                drop(PgResult(stray));
                return true;
            }
        }
        // SAFETY: live connection.
        let tx = unsafe { ffi::PQtransactionStatus(self.raw.as_ptr()) };
        !matches!(tx, ffi::PGTransactionStatusType::PQTRANS_IDLE | ffi::PGTransactionStatusType::PQTRANS_INTRANS)
            || self.bad()
    }

    /// `input` escaped for use inside single quotes, by the rules of this
    /// connection (`PQescapeStringConn`, as Postfix does): `'` doubled,
    /// `\` doubled only where the server does not use standard-conforming
    /// strings, multibyte sequences checked against the client encoding.
    /// Stops at a NUL byte, as libpq does.
    pub(crate) fn escape(&mut self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = vec![0u8; input.len() * 2 + 1];
        let mut failed: c_int = 0;
        // SAFETY: live connection; `out` has room for 2 * len + 1 bytes as
        // libpq requires; `input` is valid for `len` bytes.
        let n = unsafe {
            ffi::PQescapeStringConn(
                self.raw.as_ptr(),
                out.as_mut_ptr().cast(),
                input.as_ptr().cast(),
                input.len(),
                &mut failed,
            )
        };
        if failed != 0 {
            return Err(Error::Escape(self.error_message()));
        }
        out.truncate(n.min(input.len() * 2));
        Ok(out)
    }

    /// Run `sql` (one simple-protocol query, as Postfix's `PQexec`) and
    /// return its last result, waiting at most `timeout`. A failing
    /// statement is a result with [`Status::FatalError`], not an `Err`.
    pub(crate) fn query(&mut self, sql: &[u8], timeout: Duration) -> Result<PgResult, Error> {
        let deadline = Instant::now() + timeout;
        let sql = CString::new(sql).map_err(|_| Error::Nul("the query"))?;
        if self.unusable {
            return Err(Error::Connection("connection unusable after an earlier failure".into()));
        }
        // SAFETY: live connection; `sql` is NUL-terminated.
        if unsafe { ffi::PQsendQuery(self.raw.as_ptr(), sql.as_ptr()) } == 0 {
            return Err(Error::Connection(self.error_message()));
        }
        let fd = self.socket()?;
        loop {
            // SAFETY: live connection.
            match unsafe { ffi::PQflush(self.raw.as_ptr()) } {
                0 => break,
                1 => {}
                _ => return Err(Error::Connection(self.error_message())),
            }
            self.wait(fd, Ready::Either, deadline)?;
            // The server may answer before it has read everything.
            // SAFETY: live connection.
            if unsafe { ffi::PQconsumeInput(self.raw.as_ptr()) } == 0 {
                return Err(Error::Connection(self.error_message()));
            }
        }
        let mut last: Option<PgResult> = None;
        loop {
            // SAFETY: live connection.
            while unsafe { ffi::PQisBusy(self.raw.as_ptr()) } != 0 {
                self.wait(fd, Ready::Read, deadline)?;
                // SAFETY: live connection.
                if unsafe { ffi::PQconsumeInput(self.raw.as_ptr()) } == 0 {
                    return Err(Error::Connection(self.error_message()));
                }
            }
            // SAFETY: live connection, not busy: this does not block.
            let Some(result) = NonNull::new(unsafe { ffi::PQgetResult(self.raw.as_ptr()) }) else { break };
            let result = PgResult(result);
            if matches!(result.status(), Status::Other(_)) {
                // COPY and the like: the connection is in a state this
                // module does not drive back to idle.
                self.unusable = true;
                return Ok(result);
            }
            last = Some(result);
        }
        last.ok_or_else(|| Error::Connection(self.error_message()))
    }

    /// Wait for the socket during a query; on timeout the connection is
    /// given up (see the module documentation).
    fn wait(&mut self, fd: c_int, ready: Ready, deadline: Instant) -> Result<(), Error> {
        match wait_socket(fd, ready, deadline) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.unusable = true;
                self.cancel_in_background();
                Err(Error::QueryTimeout)
            }
            Err(e) => {
                self.unusable = true;
                Err(Error::Connection(e))
            }
        }
    }

    fn cancel_in_background(&self) {
        static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);
        if IN_FLIGHT.fetch_add(1, Ordering::AcqRel) >= MAX_CANCELS_IN_FLIGHT {
            IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        // SAFETY: live connection; the cancel object is independent of it.
        let Some(cancel) = NonNull::new(unsafe { ffi::PQgetCancel(self.raw.as_ptr()) }).map(Cancel) else {
            IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
            return;
        };
        let spawned = std::thread::Builder::new().name("pgsql-cancel".into()).spawn(move || {
            cancel.send();
            IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        });
        if spawned.is_err() {
            IN_FLIGHT.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        // SAFETY: `raw` came from PQconnectStartParams, is finished exactly
        // once, here, and never used after.
        unsafe { ffi::PQfinish(self.raw.as_ptr()) };
    }
}

/// A cancel request for a running query (`PQgetCancel`).
struct Cancel(NonNull<ffi::PGcancel>);

// SAFETY: a PGcancel holds copies of the server address and the backend's
// key, shares nothing with its connection, and PQcancel is documented as
// safe to call from any thread.
unsafe impl Send for Cancel {}

impl Cancel {
    fn send(&self) {
        let mut err = [0 as c_char; 256];
        // SAFETY: live cancel object; `err` is writable for its length.
        unsafe { ffi::PQcancel(self.0.as_ptr(), err.as_mut_ptr(), err.len() as c_int) };
    }
}

impl Drop for Cancel {
    fn drop(&mut self) {
        // SAFETY: from PQgetCancel, freed exactly once, here.
        unsafe { ffi::PQfreeCancel(self.0.as_ptr()) };
    }
}

/// What a query returned, by libpq's result status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Rows (possibly none).
    TuplesOk,
    /// A statement that returns no rows.
    CommandOk,
    /// The statement failed (the server's error is in
    /// [`PgResult::error_message`]).
    FatalError,
    /// The server's answer was not understood.
    BadResponse,
    /// Anything else (an empty query, COPY, ...): libpq's status code.
    Other(u32),
}

/// One query result; freed (`PQclear`) on drop.
pub(crate) struct PgResult(NonNull<ffi::PGresult>);

// SAFETY: a PGresult is not changed after libpq hands it out and is
// independent of its connection; libpq documents results as free to pass
// between threads. Every accessor only reads.
unsafe impl Send for PgResult {}
// SAFETY: as above: concurrent reads of an immutable PGresult are fine.
unsafe impl Sync for PgResult {}

impl PgResult {
    pub(crate) fn status(&self) -> Status {
        // SAFETY: live result. libpq 15 returns only values the binding's
        // enum lists.
        let status = unsafe { ffi::PQresultStatus(self.0.as_ptr()) };
        match status {
            ffi::ExecStatusType::PGRES_TUPLES_OK => Status::TuplesOk,
            ffi::ExecStatusType::PGRES_COMMAND_OK => Status::CommandOk,
            ffi::ExecStatusType::PGRES_FATAL_ERROR => Status::FatalError,
            ffi::ExecStatusType::PGRES_BAD_RESPONSE => Status::BadResponse,
            other => Status::Other(other as u32),
        }
    }

    /// The server's error text for a failed statement (empty otherwise).
    pub(crate) fn error_message(&self) -> String {
        // SAFETY: live result; the text lives as long as the result.
        let text = unsafe { ffi::PQresultErrorMessage(self.0.as_ptr()) };
        // SAFETY: PQresultErrorMessage returns a NUL-terminated string.
        unsafe { message(text) }
    }

    pub(crate) fn rows(&self) -> usize {
        // SAFETY: live result.
        let n = unsafe { ffi::PQntuples(self.0.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    pub(crate) fn columns(&self) -> usize {
        // SAFETY: live result.
        let n = unsafe { ffi::PQnfields(self.0.as_ptr()) };
        usize::try_from(n).unwrap_or(0)
    }

    /// The value at (`row`, `column`) as the server sent it (text format);
    /// None for SQL NULL, and for a position outside the result.
    pub(crate) fn value(&self, row: usize, column: usize) -> Option<&[u8]> {
        if row >= self.rows() || column >= self.columns() {
            return None;
        }
        // In range, so both fit in a c_int (the counts did).
        let (r, c) = (row as c_int, column as c_int);
        // SAFETY: live result, indices in range.
        if unsafe { ffi::PQgetisnull(self.0.as_ptr(), r, c) } != 0 {
            return None;
        }
        // SAFETY: live result, indices in range.
        let len = unsafe { ffi::PQgetlength(self.0.as_ptr(), r, c) };
        // SAFETY: live result, indices in range; never null for them.
        let p = unsafe { ffi::PQgetvalue(self.0.as_ptr(), r, c) };
        if p.is_null() {
            return None;
        }
        // SAFETY: libpq stores `len` bytes at `p`, owned by the result,
        // which the returned borrow cannot outlive.
        Some(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), usize::try_from(len).unwrap_or(0)) })
    }
}

impl Drop for PgResult {
    fn drop(&mut self) {
        // SAFETY: from PQgetResult, cleared exactly once, here.
        unsafe { ffi::PQclear(self.0.as_ptr()) };
    }
}

#[cfg(test)]
#[path = "pq_tests.rs"]
mod tests;
