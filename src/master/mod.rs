//! The standalone prefork master: binds the proxymap and proxywrite sockets,
//! keeps a pool of worker processes per service, accepts connections and hands
//! each one to the least busy worker over a SOCK_SEQPACKET channel (SCM_RIGHTS).
//!
//! The master stays single-threaded, so forking workers is safe. Signals arrive
//! through a signalfd: SIGCHLD (reap and respawn), SIGHUP (reload), SIGTERM and
//! SIGINT (stop).

pub(crate) mod demo;
mod notify;
mod pool;

use crate::config::settings::{LogTarget, Service as ServiceName, Settings};
use crate::config::{ConfigError, Params};
use crate::logging;
use crate::service::Role;
use crate::worker::Limits;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use pool::Pool;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum MasterError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: {source}")]
    Socket { path: PathBuf, source: std::io::Error },
    #[error("{path}: another server is already listening there")]
    InUse { path: PathBuf },
    #[error("{0}")]
    Sys(#[from] nix::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where the configuration came from, so SIGHUP can read it again.
#[derive(Clone, Debug)]
pub enum Source {
    File(PathBuf),
    /// The embedded demo, written under this directory.
    Demo(PathBuf),
}

/// Everything a worker generation is built from.
pub struct Loaded {
    pub settings: Settings,
    pub params: Arc<Params>,
    /// `proxymap_connection_threads` and `proxymap_connection_thread_after`,
    /// checked when the configuration loads (see [`Params::connection_threads`]).
    pub threads: Option<u32>,
}

impl Source {
    pub fn load(&self) -> Result<Loaded, MasterError> {
        let settings = match self {
            Source::File(path) => Settings::load(path)?,
            Source::Demo(dir) => demo::settings(dir)?,
        };
        let config_dir = match (&settings.config_directory, self) {
            (Some(dir), _) => dir.clone(),
            (None, Source::Demo(dir)) => dir.clone(),
            (None, Source::File(_)) => PathBuf::from("/etc/postfix"),
        };
        let params = Params::load(&config_dir, &settings.override_pairs())?;
        let threads = params.connection_threads()?;
        Ok(Loaded { settings, params: Arc::new(params), threads })
    }
}

pub(crate) const TOKEN_SIGNAL: u64 = 0;
const TOKEN_LISTEN_READ: u64 = 1;
const TOKEN_LISTEN_WRITE: u64 = 2;
/// Worker control channels use tokens from here on (the worker's id).
pub(crate) const TOKEN_WORKER_BASE: u64 = 16;

fn limits(loaded: &Loaded) -> Limits {
    let settings = &loaded.settings;
    let watchdog = loaded.params.get_time("daemon_timeout").ok().map(|s| Duration::from_secs(u64::from(s)));
    Limits {
        max_use: settings.max_use,
        max_idle: Duration::from_secs(settings.max_idle),
        ipc_timeout: Duration::from_secs(settings.ipc_timeout),
        watchdog,
        ..Limits::default()
    }
}

/// Run the standalone master until SIGTERM/SIGINT.
pub fn run(source: Source, verbose: bool) -> Result<(), MasterError> {
    let loaded = source.load()?;
    let log_dest = match loaded.settings.log {
        LogTarget::Stderr => logging::Destination::Stderr,
        LogTarget::Syslog => logging::Destination::Syslog,
    };
    let tag = format!("{}/proxymap", loaded.params.get("syslog_name"));
    logging::init(&tag, log_dest, verbose);
    logging::set_utf8(loaded.params.get_bool("smtputf8_enable").unwrap_or(false));
    crate::sys::raise_nofile_limit();

    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGHUP, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    signals.thread_block()?;
    let sigfd = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    epoll.add(&sigfd, EpollEvent::new(EpollFlags::EPOLLIN, TOKEN_SIGNAL))?;

    let mut sockets = Vec::new();
    let mut listeners = Vec::new();
    for (name, token) in [(ServiceName::Proxymap, TOKEN_LISTEN_READ), (ServiceName::Proxywrite, TOKEN_LISTEN_WRITE)] {
        let svc = match name {
            ServiceName::Proxymap => &loaded.settings.proxymap,
            ServiceName::Proxywrite => &loaded.settings.proxywrite,
        };
        if !svc.enabled {
            continue;
        }
        let path = loaded.settings.socket_path(name);
        let listener = bind(&path)?;
        epoll.add(&listener, EpollEvent::new(EpollFlags::EPOLLIN, token))?;
        sockets.push(path.clone());
        let role = if name == ServiceName::Proxymap { Role::Reader } else { Role::Writer };
        listeners.push((role, token, listener));
        log::info!("{} service listening on {} with {} worker(s)", role.service_name(), path.display(), svc.workers);
    }
    if let Some(pid_file) = &loaded.settings.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))?;
    }

    let pid_file = loaded.settings.pid_file.clone();
    let mut pool = Pool::new(epoll, sigfd, signals, listeners, loaded, log_dest, verbose, tag);
    let result = pool.serve(&source);
    for path in &sockets {
        let _ = std::fs::remove_file(path);
    }
    if let Some(pid_file) = pid_file {
        let _ = std::fs::remove_file(pid_file);
    }
    result
}

/// Bind a UNIX stream socket, replacing a stale socket file but never a live one.
fn bind(path: &Path) -> Result<UnixListener, MasterError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| MasterError::Socket { path: dir.into(), source })?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(MasterError::InUse { path: path.into() });
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(|source| MasterError::Socket { path: path.into(), source })?;
    // Postfix creates its service sockets world-connectable; access control is the allowlist.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(|source| MasterError::Socket { path: path.into(), source })?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}
