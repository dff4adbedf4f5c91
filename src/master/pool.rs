//! The master's worker pool: spawning, dispatching connections, reaping,
//! respawning, reload and shutdown.

use super::notify::Notifier;
use super::{limits, Loaded, MasterError, Source, TOKEN_SIGNAL, TOKEN_WORKER_BASE};
use crate::config::allowlist::proxy_allowlist;
use crate::logging;
use crate::service::{Role, Service};
use crate::sys::{self, Received};
use crate::worker::accept_pause::AcceptPause;
use crate::worker::{control, Intake, Worker};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollEvent, EpollFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// A worker that dies this soon after start, abnormally, is throttled.
const STARTUP_GRACE: Duration = Duration::from_secs(1);
const THROTTLE: Duration = Duration::from_secs(5);
const STOP_GRACE: Duration = Duration::from_secs(5);

struct WorkerRec {
    pid: Pid,
    role: Role,
    /// Our end of the control channel; None once the worker closed it.
    ctl: Option<OwnedFd>,
    /// False once we stopped sending it connections.
    accepting: bool,
    conns: usize,
    /// Connections it finished.
    served: u64,
    started: Instant,
}

impl WorkerRec {
    fn available(&self, role: Role) -> bool {
        self.role == role && self.accepting && self.ctl.is_some()
    }
}

struct Listener {
    role: Role,
    token: u64,
    socket: UnixListener,
    paused: bool,
    /// accept() failed for want of descriptors or memory.
    failing: AcceptPause,
}

pub(super) struct Pool {
    epoll: Option<Epoll>,
    sigfd: Option<SignalFd>,
    signals: SigSet,
    listeners: Vec<Listener>,
    workers: HashMap<u64, WorkerRec>,
    next_id: u64,
    pending: VecDeque<(Role, UnixStream)>,
    current: Loaded,
    throttled_until: HashMap<&'static str, Instant>,
    log_dest: logging::Destination,
    verbose: bool,
    tag: String,
    notify: Notifier,
}

impl Pool {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        epoll: Epoll,
        sigfd: SignalFd,
        signals: SigSet,
        listeners: Vec<(Role, u64, UnixListener)>,
        current: Loaded,
        log_dest: logging::Destination,
        verbose: bool,
        tag: String,
    ) -> Pool {
        Pool {
            epoll: Some(epoll),
            sigfd: Some(sigfd),
            signals,
            listeners: listeners
                .into_iter()
                .map(|(role, token, socket)| Listener {
                    role,
                    token,
                    socket,
                    paused: false,
                    failing: AcceptPause::default(),
                })
                .collect(),
            workers: HashMap::new(),
            next_id: TOKEN_WORKER_BASE,
            pending: VecDeque::new(),
            current,
            throttled_until: HashMap::new(),
            log_dest,
            verbose,
            tag,
            notify: Notifier::from_env(),
        }
    }

    fn epoll(&self) -> &Epoll {
        match &self.epoll {
            Some(e) => e,
            None => unreachable!("the epoll instance is only taken in a forked worker"),
        }
    }

    /// The master's main loop; returns after SIGTERM/SIGINT once every worker is gone.
    pub(super) fn serve(&mut self, source: &Source) -> Result<(), MasterError> {
        self.maintain();
        self.notify.ready("serving");
        let mut events = vec![EpollEvent::empty(); 64];
        loop {
            let n = match self.epoll().wait(&mut events, 250u16) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e.into()),
            };
            for ev in &events[..n] {
                match ev.data() {
                    TOKEN_SIGNAL => {
                        if let Some(stop) = self.signal_event(source) {
                            log::info!("terminating on signal {stop}");
                            self.notify.stopping();
                            self.shutdown();
                            return Ok(());
                        }
                    }
                    t if t >= TOKEN_WORKER_BASE => self.control_event(t),
                    t => self.accept_ready(t),
                }
            }
            self.maintain();
        }
    }

    /// Handle queued signals; returns the name of a stop signal if one came.
    fn signal_event(&mut self, source: &Source) -> Option<&'static str> {
        let mut stop = None;
        while let Some(Ok(Some(info))) = self.sigfd.as_ref().map(SignalFd::read_signal) {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => self.reap(),
                Ok(Signal::SIGHUP) => {
                    self.notify.reloading();
                    self.reload(source);
                    self.notify.ready("serving");
                }
                Ok(Signal::SIGTERM) => stop = Some("TERM"),
                Ok(Signal::SIGINT) => stop = Some("INT"),
                _ => {}
            }
        }
        stop
    }

    fn accept_ready(&mut self, token: u64) {
        let Some(idx) = self.listeners.iter().position(|l| l.token == token) else { return };
        loop {
            let role = self.listeners[idx].role;
            if !self.workers.values().any(|w| w.available(role)) {
                // Leave connections in the kernel's backlog until a worker exists.
                self.pause(idx, true);
                return;
            }
            match self.listeners[idx].socket.accept() {
                Ok((stream, _)) => {
                    self.listeners[idx].failing.accepted();
                    if !self.dispatch(role, stream) {
                        // Every worker's channel is full: leave further
                        // clients in the kernel's backlog rather than hold
                        // their descriptors here without bound (maintain()
                        // resumes once the queued one is handed over).
                        self.pause(idx, true);
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO)) => {}
                Err(e) => {
                    // The socket stays readable: trying again at once would spin.
                    self.listeners[idx].failing.failed(&e, Instant::now());
                    self.pause(idx, true);
                    return;
                }
            }
        }
    }

    fn pause(&mut self, idx: usize, paused: bool) {
        let l = &mut self.listeners[idx];
        if l.paused == paused {
            return;
        }
        l.paused = paused;
        let flags = if paused { EpollFlags::empty() } else { EpollFlags::EPOLLIN };
        let mut ev = EpollEvent::new(flags, l.token);
        if let Some(epoll) = &self.epoll {
            let _ = epoll.modify(&l.socket, &mut ev);
        }
    }

    /// Hand a connection to the least busy worker of its service; false
    /// when no worker's channel took it and it waits in `pending`.
    fn dispatch(&mut self, role: Role, stream: UnixStream) -> bool {
        let mut candidates: Vec<(usize, u64)> =
            self.workers.iter().filter(|(_, w)| w.available(role)).map(|(id, w)| (w.conns, *id)).collect();
        candidates.sort_unstable();
        for (_, id) in candidates {
            let Some(w) = self.workers.get_mut(&id) else { continue };
            let Some(ctl) = w.ctl.as_ref().filter(|_| w.accepting) else { continue };
            if sys::send_msg(ctl, control::CONNECTION, Some(stream.as_raw_fd()), sys::Send::NoWait).is_ok() {
                w.conns += 1;
                return true; // our copy of the descriptor closes here
            }
        }
        self.pending.push_back((role, stream));
        false
    }

    fn control_event(&mut self, id: u64) {
        loop {
            let Some(w) = self.workers.get_mut(&id) else { return };
            let Some(ctl) = &w.ctl else { return };
            match sys::recv_msg(ctl) {
                Ok(Received::Message(control::DONE, _)) => {
                    w.conns = w.conns.saturating_sub(1);
                    w.served += 1;
                }
                Ok(Received::Message(control::RETIRING, _)) => {
                    // Acknowledge with EOF: the worker exits when its clients
                    // are gone, and we start its replacement.
                    self.release(id);
                }
                Ok(Received::Message(cmd, _)) => log::warn!("unexpected control message {cmd:?} from worker"),
                Ok(Received::Empty) => return,
                Ok(Received::Eof) | Err(_) => {
                    self.release(id);
                    self.disconnect(id);
                    return;
                }
            }
        }
    }

    /// Stop sending connections to a worker and tell it so with EOF. Only the
    /// sending direction is shut: closing a channel that still holds unread
    /// messages would reset it and destroy descriptors queued to the worker.
    fn release(&mut self, id: u64) {
        if let Some(w) = self.workers.get_mut(&id) {
            if w.accepting {
                w.accepting = false;
                if let Some(ctl) = &w.ctl {
                    let _ = nix::sys::socket::shutdown(ctl.as_raw_fd(), nix::sys::socket::Shutdown::Write);
                }
            }
        }
    }

    /// The worker closed its end: forget ours.
    fn disconnect(&mut self, id: u64) {
        if let Some(ctl) = self.workers.get_mut(&id).and_then(|w| w.ctl.take()) {
            if let Some(epoll) = &self.epoll {
                let _ = epoll.delete(&ctl);
            }
        }
    }

    fn reap(&mut self) {
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_else(|_| "proxymap".into());
        loop {
            // `failed`: the worker itself failed (an operator's kill is not a failure)
            let (pid, failed) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, 0)) => (pid, false),
                Ok(WaitStatus::Exited(pid, code)) => {
                    log::warn!("process {exe} pid {pid} exit status {code}");
                    (pid, true)
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    log::warn!("process {exe} pid {pid} killed by signal {}", sig as i32);
                    (pid, !matches!(sig, Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            let Some(id) = self.workers.iter().find(|(_, w)| w.pid == pid).map(|(id, _)| *id) else { continue };
            self.disconnect(id);
            if let Some(w) = self.workers.remove(&id) {
                // A worker that fails before serving anything would fail again:
                // do not fork it in a tight loop.
                if failed && w.served == 0 && w.started.elapsed() < STARTUP_GRACE {
                    log::warn!("{exe}: bad command startup -- throttling");
                    self.throttled_until.insert(w.role.service_name(), Instant::now() + THROTTLE);
                }
            }
        }
    }

    fn reload(&mut self, source: &Source) {
        match source.load() {
            Err(e) => log::error!("reload: {e}; keeping the current configuration"),
            Ok(loaded) => {
                for (role, svc) in
                    [(Role::Reader, &loaded.settings.proxymap), (Role::Writer, &loaded.settings.proxywrite)]
                {
                    let old = self.current.settings.socket_path(service_of(role));
                    if loaded.settings.socket_path(service_of(role)) != old || svc.enabled != self.enabled(role) {
                        log::warn!("reload: socket changes for {} take effect after a restart", role.service_name());
                    }
                }
                logging::set_utf8(loaded.params.get_bool("smtputf8_enable").unwrap_or(false));
                self.current = loaded;
                let old: Vec<u64> = self.workers.keys().copied().collect();
                // New workers first, then the old ones leave (they see EOF on
                // their channel and exit): connections never wait for a worker.
                self.throttled_until.clear();
                self.spawn_missing(&old);
                for id in old {
                    self.release(id);
                }
                log::info!("reload -- configuration re-read");
            }
        }
    }

    fn enabled(&self, role: Role) -> bool {
        let s = &self.current.settings;
        match role {
            Role::Reader => s.proxymap.enabled,
            Role::Writer => s.proxywrite.enabled,
        }
    }

    fn wanted(&self, role: Role) -> usize {
        let s = &self.current.settings;
        let enabled = self.listeners.iter().any(|l| l.role == role);
        match role {
            Role::Reader if enabled => s.proxymap.workers,
            Role::Writer if enabled => s.proxywrite.workers,
            _ => 0,
        }
    }

    /// Keep each pool at its size, retry queued connections, resume accepting.
    fn maintain(&mut self) {
        self.spawn_missing(&[]);
        let pending = std::mem::take(&mut self.pending);
        for (role, stream) in pending {
            let _queued_again = self.dispatch(role, stream);
        }
        for idx in 0..self.listeners.len() {
            let role = self.listeners[idx].role;
            let ready = self.workers.values().any(|w| w.available(role))
                && !self.pending.iter().any(|(r, _)| *r == role)
                && !self.listeners[idx].failing.paused(Instant::now());
            if ready {
                self.pause(idx, false);
            }
        }
    }

    /// Start workers until each service has its configured number, not
    /// counting the workers in `outgoing`.
    fn spawn_missing(&mut self, outgoing: &[u64]) {
        for role in [Role::Reader, Role::Writer] {
            if self.throttled_until.get(role.service_name()).is_some_and(|t| Instant::now() < *t) {
                continue;
            }
            let have = self.workers.iter().filter(|(id, w)| w.available(role) && !outgoing.contains(id)).count();
            for _ in have..self.wanted(role) {
                if let Err(e) = self.spawn(role) {
                    log::error!("cannot start {} worker: {e}", role.service_name());
                    break;
                }
            }
        }
    }

    fn spawn(&mut self, role: Role) -> Result<(), MasterError> {
        let (ours, theirs) = sys::seqpacket_pair()?;
        match sys::fork_single_threaded()? {
            ForkResult::Parent { child } => {
                drop(theirs);
                let id = self.next_id;
                self.next_id += 1;
                self.epoll().add(&ours, EpollEvent::new(EpollFlags::EPOLLIN, id))?;
                self.workers.insert(
                    id,
                    WorkerRec {
                        pid: child,
                        role,
                        ctl: Some(ours),
                        accepting: true,
                        conns: 0,
                        served: 0,
                        started: Instant::now(),
                    },
                );
                Ok(())
            }
            ForkResult::Child => {
                drop(ours);
                self.become_worker(role, theirs)
            }
        }
    }

    /// In a freshly forked child: shed the master's descriptors and serve.
    fn become_worker(&mut self, role: Role, channel: OwnedFd) -> ! {
        let _ = self.signals.thread_unblock();
        // Told apart from the master in ps, top and /proc (the command
        // line stays the master's): the service it serves.
        let name = match role {
            Role::Reader => c"pm-proxymap",
            Role::Writer => c"pm-proxywrite",
        };
        let _ = nix::sys::prctl::set_name(name);
        self.epoll = None;
        self.sigfd = None;
        self.listeners.clear();
        self.workers.clear();
        self.pending.clear();
        logging::init(&self.tag, self.log_dest, self.verbose);
        let params = self.current.params.clone();
        let allowlist = proxy_allowlist(&params, role == Role::Writer);
        let mut service = Service::new(role, params, allowlist);
        // Opened here, after fork: the slot's lock belongs to this open.
        service.set_stats(crate::stats::start(&self.current.params, role.service_name(), None));
        let limits = limits(&self.current);
        let threaded = self.current.threads;
        let worker = Worker::new(service, Intake::Master(channel), limits).and_then(|w| {
            if let Some(after) = threaded {
                w.with_threads(after)
            } else {
                Ok(w)
            }
        });
        let code = match worker {
            Ok(mut worker) => match worker.run() {
                crate::worker::Exit::Failed => 1,
                crate::worker::Exit::Retired | crate::worker::Exit::MasterGone => 0,
            },
            Err(e) => {
                log::error!("cannot start worker: {e}");
                1
            }
        };
        std::process::exit(code)
    }

    /// Stop accepting, terminate every worker, wait for them.
    fn shutdown(&mut self) {
        self.listeners.clear();
        for w in self.workers.values() {
            let _ = kill(w.pid, Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_GRACE;
        while !self.workers.is_empty() {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, _)) | Ok(WaitStatus::Signaled(pid, _, _)) => {
                    self.workers.retain(|_, w| w.pid != pid);
                }
                Ok(_) => {
                    if Instant::now() > deadline {
                        for w in self.workers.values() {
                            let _ = kill(w.pid, Signal::SIGKILL);
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(_) => break,
            }
        }
    }
}

fn service_of(role: Role) -> crate::config::settings::Service {
    match role {
        Role::Reader => crate::config::settings::Service::Proxymap,
        Role::Writer => crate::config::settings::Service::Proxywrite,
    }
}
