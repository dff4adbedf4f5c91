//! Running as a child of Postfix's master(8): the multi_server contract of
//! Postfix 3.7 (command line, environment, descriptors 5 and 6.., status
//! records, privileges), then the same worker loop as standalone mode.

pub(crate) mod args;

use crate::config::allowlist::proxy_allowlist;
use crate::config::Params;
use crate::logging::{self, fatal};
use crate::protocol::{self, Parse};
use crate::service::{Place, Role, Service, Session};
use crate::sys;
use crate::worker::master_status::MasterStatus;
use crate::worker::{Intake, Limits, Worker};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// master_proto.h: the status channel and the first listening socket.
const MASTER_STATUS_FD: i32 = 5;
const MASTER_LISTEN_FD: i32 = 6;

/// The name Postfix would give the process: the command's file name, but
/// `proxymap` for our install name `proxymap-rs`, so that log lines keep the
/// `postfix/proxymap` tag that log filters (pflogsumm, logwatch, fail2ban)
/// match, and `$process_name` expands as for Postfix's proxymap.
fn process_name(argv0: &str) -> String {
    let name = Path::new(argv0).file_name().map_or("proxymap".into(), |n| n.to_string_lossy().into_owned());
    match name.strip_suffix("-rs") {
        Some("proxymap") => "proxymap".into(),
        _ => name,
    }
}

/// Run as `argv0 args...` started by master(8) (or `-S` by hand). Never returns.
pub fn run(argv0: &str, args: &[String]) -> ! {
    let process_name = process_name(argv0);
    let verbose_env = std::env::var_os("MAIL_VERBOSE").is_some();
    let early_tag = std::env::var("MAIL_LOGTAG").unwrap_or_else(|_| "postfix".into());
    logging::init(&format!("{early_tag}/{process_name}"), logging::Destination::Syslog, verbose_env);

    let a = args::parse(args).unwrap_or_else(|e| fatal(format_args!("{e}")));
    let config_dir = std::env::var_os("MAIL_CONFIG").map_or_else(|| PathBuf::from("/etc/postfix"), PathBuf::from);
    let mut overrides = a.overrides.clone();
    if let Some(v) = &a.max_idle {
        overrides.push(("max_idle".into(), v.clone()));
    }
    if let Some(v) = &a.max_use {
        overrides.push(("max_use".into(), v.clone()));
    }
    let mut params = Params::load(&config_dir, &overrides).unwrap_or_else(|e| fatal(format_args!("{e}")));
    let service_name = a.service_name.clone().unwrap_or_else(|| process_name.clone());
    params.set("service_name", &service_name);
    params.set("process_name", &process_name);

    let tag = format!("{}/{process_name}", params.get("syslog_name"));
    let verbose = verbose_env || a.verbose > 0;
    let destination = if a.stderr { logging::Destination::SyslogAndStderr } else { logging::Destination::Syslog };
    logging::init_with_postlog(&tag, destination, postlog(&params), verbose);
    logging::set_utf8(params.get_bool("smtputf8_enable").unwrap_or(false));

    if !a.stand_alone && !a.foreground && nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        fatal(format_args!("do not run this command by hand"));
    }
    if !a.stand_alone {
        match a.transport.as_deref().map(str::to_ascii_lowercase).as_deref() {
            None => fatal(format_args!("no transport type specified")),
            Some("unix") => {}
            Some(_) => fatal(format_args!("unsupported transport type: {}", a.transport.as_deref().unwrap_or(""))),
        }
    }
    let generation = generation().unwrap_or_else(|bad| fatal(format_args!("bad generation: {bad}")));

    let queue_dir = params.get("queue_directory");
    if let Err(e) = nix::unistd::chdir(queue_dir.as_str()) {
        fatal(format_args!("chdir(\"{queue_dir}\"): {}", sys::errno::strerror(e as i32)));
    }
    let owner = params.get("mail_owner");
    // Before chroot and setuid: data_directory is outside the jail. What a
    // root process creates there goes to mail_owner, as Postfix's own files.
    let stats = match service_name.as_str() {
        "proxymap" | "proxywrite" if !a.stand_alone => {
            let ids = nix::unistd::User::from_name(&owner).ok().flatten().map(|u| (u.uid.as_raw(), u.gid.as_raw()));
            let ids = ids.filter(|_| a.unprivileged && nix::unistd::geteuid().is_root());
            crate::stats::start(&params, &service_name, ids)
        }
        _ => None,
    };
    let jail = a.chroot.then(|| PathBuf::from(&queue_dir));
    if let Err(e) = sys::drop_privileges(a.unprivileged.then_some(owner.as_str()), jail.as_deref()) {
        fatal(format_args!("{e}"));
    }

    let role = match service_name.as_str() {
        "proxymap" => Role::Reader,
        "proxywrite" => Role::Writer,
        // (sic) the 3.7 message names proxymap twice
        _ => fatal(format_args!("service name must be one of proxymap or proxymap")),
    };
    if let Some(extra) = a.rest.first() {
        fatal(format_args!("unexpected command-line argument: {extra}"));
    }
    let limits = limits(&params);
    let threaded = params.connection_threads().unwrap_or_else(|e| fatal(format_args!("{e}")));
    let params = Arc::new(params);
    let allowlist = proxy_allowlist(&params, role == Role::Writer);
    if role == Role::Writer {
        // Leave master's process group: `postfix stop` must not kill the
        // writer in the middle of an update; it exits on EOF from master.
        let _ = nix::unistd::setsid();
    }
    let mut service = Service::new(role, params, allowlist);
    service.set_stats(stats);

    if a.stand_alone {
        service.set_stream("unknown_stream");
        serve_stdio(&mut service);
        std::process::exit(0);
    }

    sys::raise_nofile_limit();
    let mut listeners = Vec::new();
    for fd in MASTER_LISTEN_FD..MASTER_LISTEN_FD + a.socket_count as i32 {
        match sys::inherited_listener(fd) {
            Ok(l) => listeners.push(l),
            Err(e) => fatal(format_args!("listen socket {fd}: {}", sys::errno::strerror(e as i32))),
        }
    }
    let status = match sys::inherited_fd(MASTER_STATUS_FD) {
        Ok(fd) => MasterStatus::new(fd, generation),
        Err(e) => fatal(format_args!("status channel {MASTER_STATUS_FD}: {}", sys::errno::strerror(e as i32))),
    };
    let worker = Worker::new(service, Intake::Listen(listeners), limits)
        .and_then(|w| w.with_master_status(status))
        .and_then(|w| match threaded {
            Some(after) => w.with_threads(after),
            None => Ok(w),
        })
        .unwrap_or_else(|e| fatal(format_args!("event loop: {e}")));
    let mut worker = worker;
    match worker.run() {
        crate::worker::Exit::Failed => std::process::exit(1),
        crate::worker::Exit::Retired | crate::worker::Exit::MasterGone => std::process::exit(0),
    }
}

/// With `maillog_file` set, Postfix daemons log through postlogd(8).
fn postlog(params: &Params) -> Option<logging::Postlog> {
    if params.get("maillog_file").is_empty() {
        return None;
    }
    let socket = Path::new(&params.get("queue_directory")).join("public").join(params.get("postlog_service_name"));
    Some(logging::Postlog { socket, hostname: params.get("myhostname") })
}

/// `GENERATION` from master's environment: octal digits, absent = 0.
fn generation() -> Result<u32, String> {
    match std::env::var("GENERATION") {
        Err(_) => Ok(0),
        Ok(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            // Postfix converts digit by digit in base 8 (an 8 or 9 simply adds its value).
            Ok(text.bytes().fold(0u32, |n, b| n.wrapping_mul(8).wrapping_add(u32::from(b - b'0'))))
        }
        Ok(text) => Err(text),
    }
}

fn limits(params: &Params) -> Limits {
    let time = |name: &str| params.get_time(name).unwrap_or_else(|e| fatal(format_args!("{e}")));
    let max_use = params.get_int("max_use").unwrap_or_else(|e| fatal(format_args!("{e}")));
    Limits {
        max_use: u32::try_from(max_use).unwrap_or(u32::MAX),
        max_idle: Duration::from_secs(u64::from(time("max_idle"))),
        ipc_timeout: Duration::from_secs(u64::from(time("ipc_timeout"))),
        watchdog: Some(Duration::from_secs(u64::from(time("daemon_timeout")))),
        ..Limits::default()
    }
}

/// `-S`: one request from stdin, its reply to stdout, no announcement.
fn serve_stdio(service: &mut Service) {
    let mut input = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut stdin = std::io::stdin().lock();
    loop {
        if let Parse::Done { outcome, .. } = protocol::parse(&input) {
            let mut out = Vec::new();
            // Always Done: one client, who may wait.
            let _ = service.handle(&outcome, &mut Session::default(), &mut out, Place::MayWait);
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&out).and_then(|()| stdout.flush());
            return;
        }
        match stdin.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => input.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn our_install_name_logs_as_proxymap() {
        assert_eq!(super::process_name("/usr/lib/postfix/sbin/proxymap-rs"), "proxymap");
        assert_eq!(super::process_name("proxymap"), "proxymap");
        assert_eq!(super::process_name("/x/proxymap-test"), "proxymap-test");
        assert_eq!(super::process_name("other-rs"), "other-rs");
    }
}
