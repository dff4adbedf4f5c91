//! Logging through the `log` facade, to syslog or stderr, formatted as Postfix
//! formats its messages: `warning: `, `error: `, `fatal: ` prefixes, tag
//! `<syslog_name>/<process name>[pid]`, facility mail.
//!
//! `log::error!(target: "fatal", ...)` marks a fatal message (see [`fatal`]).

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
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
    if let Ok(mut guard) = LOGGER.sink.lock() {
        *guard = Some(sink);
    }
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
        // Postfix truncates a message at 2000 bytes.
        if text.len() > 2000 {
            let mut cut = 2000;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let Ok(mut guard) = self.sink.lock() else { return };
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
