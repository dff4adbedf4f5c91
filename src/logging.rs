//! Logging through the `log` facade, to syslog or stderr, formatted as Postfix
//! formats its messages: `warning: `, `error: `, `fatal: ` prefixes, tag
//! `<syslog_name>/<process name>[pid]`, facility mail.
//!
//! `log::error!(target: "fatal", ...)` marks a fatal message (see [`fatal`]).

use crate::sync::lock;
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::borrow::Cow;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use syslog::{Facility, Formatter3164, LoggerBackend};

/// Where log lines go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Destination {
    Stderr,
    Syslog,
    /// Syslog, and a copy on stderr (Postfix's `-V`).
    SyslogAndStderr,
}

/// Postfix's `maillog_file` route: datagrams to the postlogd(8) socket.
#[derive(Clone, Debug)]
pub(crate) struct Postlog {
    pub socket: std::path::PathBuf,
    /// `myhostname`; its first label goes into each record.
    pub hostname: String,
}

struct Sink {
    tag: String,
    destination: Destination,
    syslog: Option<syslog::Logger<LoggerBackend, Formatter3164>>,
    postlog: Option<(std::os::unix::net::UnixDatagram, Postlog)>,
}

struct PostfixLogger {
    sink: Mutex<Option<Sink>>,
}

static LOGGER: PostfixLogger = PostfixLogger { sink: Mutex::new(None) };

/// Whether log text keeps non-ASCII characters: Postfix's `smtputf8_enable`,
/// off until the configuration is read (as in Postfix).
static UTF8: AtomicBool = AtomicBool::new(false);

/// Follow the configuration's `smtputf8_enable` in [`printable`].
pub(crate) fn set_utf8(enabled: bool) {
    UTF8.store(enabled, Ordering::Relaxed);
}

/// Postfix's printable(text, '?'), applied to every log message: an ASCII
/// control character (newline and TAB included) or DEL becomes `?`, so one
/// message stays one log line. Other characters are kept when `utf8` (with
/// smtputf8 on, Postfix keeps well-formed UTF-8, and a `str` is nothing
/// else); without it each of their bytes becomes `?`, as Postfix does.
pub(crate) fn printable(text: &str, utf8: bool) -> Cow<'_, str> {
    let keep = |c: char| if c.is_ascii() { (' '..='~').contains(&c) } else { utf8 };
    if text.chars().all(keep) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if keep(c) {
            out.push(c);
        } else {
            out.extend(std::iter::repeat_n('?', c.len_utf8()));
        }
    }
    Cow::Owned(out)
}

/// Install (or re-install) the logger. Call again after fork so the pid in
/// syslog lines is the child's, and after the configuration changed the tag.
pub(crate) fn init(tag: &str, destination: Destination, verbose: bool) {
    init_with_postlog(tag, destination, None, verbose);
}

/// Like [`init`], with `maillog_file` logging through postlogd instead of syslog.
pub(crate) fn init_with_postlog(tag: &str, destination: Destination, postlog: Option<Postlog>, verbose: bool) {
    let postlog = postlog.and_then(|p| {
        let sock = std::os::unix::net::UnixDatagram::unbound().ok()?;
        sock.connect(&p.socket).ok()?;
        Some((sock, p))
    });
    let syslog = match destination {
        _ if postlog.is_some() => None,
        Destination::Syslog | Destination::SyslogAndStderr => syslog::unix(Formatter3164 {
            facility: Facility::LOG_MAIL,
            hostname: None,
            process: tag.to_owned(),
            pid: std::process::id(),
        })
        .ok(),
        Destination::Stderr => None,
    };
    let sink = Sink { tag: tag.to_owned(), destination, syslog, postlog };
    *lock(&LOGGER.sink) = Some(sink);
    // Fails only when already installed, which is fine: the sink was replaced.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if verbose { LevelFilter::Debug } else { LevelFilter::Info });
}

/// Log a fatal error as Postfix does (`fatal: ...`) and exit with status 1.
pub(crate) fn fatal(message: std::fmt::Arguments<'_>) -> ! {
    log::error!(target: "fatal", "{message}");
    std::process::exit(1)
}

fn prefix(record: &Record<'_>) -> &'static str {
    match record.level() {
        Level::Error if record.target() == "fatal" => "fatal: ",
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        _ => "",
    }
}

impl Log for PostfixLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut text = format!("{}{}", prefix(record), record.args());
        if let Cow::Owned(clean) = printable(&text, UTF8.load(Ordering::Relaxed)) {
            text = clean;
        }
        // Postfix truncates a message at 2000 bytes.
        if text.len() > 2000 {
            let mut cut = 2000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        // A panic elsewhere while this lock was held must not silence every
        // later message: the sink itself is still whole.
        let mut guard = lock(&self.sink);
        let Some(sink) = guard.as_mut() else {
            let _ = writeln!(std::io::stderr(), "{text}");
            return;
        };
        if let Some((sock, p)) = &sink.postlog {
            let host = p.hostname.split('.').next().unwrap_or_default();
            let record =
                format!("{} {host} {}[{}]: {text}", crate::sys::syslog_timestamp(), sink.tag, std::process::id());
            let _ = sock.send(record.as_bytes());
            if sink.destination != Destination::SyslogAndStderr {
                return;
            }
        } else if sink.destination != Destination::Stderr {
            if let Some(s) = sink.syslog.as_mut() {
                let sent = match record.level() {
                    Level::Error if record.target() == "fatal" => s.crit(&text),
                    Level::Error => s.err(&text),
                    Level::Warn => s.warning(&text),
                    Level::Info => s.info(&text),
                    _ => s.debug(&text),
                };
                if sent.is_ok() && sink.destination == Destination::Syslog {
                    return;
                }
            }
        }
        if sink.destination == Destination::SyslogAndStderr {
            // Postfix's -V copy: `<tag>: <text>`, no pid
            let _ = writeln!(std::io::stderr(), "{}: {text}", sink.tag);
        } else {
            let _ = writeln!(std::io::stderr(), "{}[{}]: {text}", sink.tag, std::process::id());
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixDatagram;

    /// A logger of its own (not the global one) whose lines arrive, as
    /// postlog datagrams, on the returned socket.
    fn logger() -> (PostfixLogger, UnixDatagram) {
        let (ours, theirs) = UnixDatagram::pair().unwrap();
        let postlog = Postlog { socket: std::path::PathBuf::new(), hostname: "host.example".into() };
        let sink = Sink {
            tag: "postfix/test".into(),
            destination: Destination::Syslog,
            syslog: None,
            postlog: Some((ours, postlog)),
        };
        theirs.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        (PostfixLogger { sink: Mutex::new(Some(sink)) }, theirs)
    }

    /// Log `args` at error level (enabled at any level but Off) and return the record.
    fn error(logger: &PostfixLogger, peer: &UnixDatagram, args: std::fmt::Arguments<'_>) -> String {
        if log::max_level() < LevelFilter::Error {
            log::set_max_level(LevelFilter::Error);
        }
        logger.log(&Record::builder().level(Level::Error).target("test").args(args).build());
        let mut buf = [0u8; 4096];
        let n = peer.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn logging_goes_on_after_a_panic_while_the_lock_was_held() {
        let (logger, peer) = logger();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _held = logger.sink.lock().unwrap();
            panic!("panic while logging");
        }));
        assert!(panicked.is_err());
        assert!(logger.sink.is_poisoned());
        let line = error(&logger, &peer, format_args!("after the panic"));
        assert!(
            line.ends_with(&format!(" host postfix/test[{}]: error: after the panic", std::process::id())),
            "{line}"
        );
    }

    #[test]
    fn a_message_with_a_newline_stays_one_line() {
        let (logger, peer) = logger();
        let line = error(&logger, &peer, format_args!("first\nsecond\tthird"));
        assert!(line.ends_with("error: first?second?third"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn printable_is_postfixs() {
        assert!(matches!(printable("plain text ~!", false), Cow::Borrowed(_)));
        assert_eq!(printable("a\r\n\x7f\x01b", true), "a????b");
        // smtputf8 on: UTF-8 is kept (C1 controls too, as Postfix's check
        // looks at the encoding only); off: every byte of it becomes '?'.
        assert_eq!(printable("caf\u{e9} \u{85}", true), "caf\u{e9} \u{85}");
        assert_eq!(printable("caf\u{e9} \u{85}", false), "caf?? ??");
    }
}
