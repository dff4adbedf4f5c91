//! A worker process's event loop: many client connections, one request at a
//! time per connection, tables shared by all of them.
//!
//! Connections come either from our standalone master over a control socket
//! ([`Intake::Master`]) or from listening sockets accepted here ([`Intake::Listen`],
//! used under Postfix's master(8) and by in-process tests).

pub(crate) mod accept_pause;
pub(crate) mod backoff;
pub(crate) mod conn;
mod connections;
pub(crate) mod master_status;
pub(crate) mod request_budget;
mod spin;
pub(crate) mod threads;

use crate::service::Service;
use crate::sys::{self, Received};
use accept_pause::AcceptPause;
use conn::Conn;
use master_status::MasterStatus;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use request_budget::Budget;
use spin::Spin;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threads::Threads;

/// Control messages between the standalone master and its workers.
pub mod control {
    /// master → worker: a new client connection (the descriptor rides along).
    pub const CONNECTION: u8 = b'C';
    /// worker → master: one client connection ended.
    pub const DONE: u8 = b'D';
    /// worker → master: send no more connections; I exit once my clients leave.
    pub const RETIRING: u8 = b'R';

    /// The channel's send and receive, for a test that plays the master.
    pub use crate::sys::{recv_msg, send_msg, Received, Send};
}

/// Where new client connections come from.
pub enum Intake {
    /// Our standalone master passes accepted descriptors over this socket.
    Master(OwnedFd),
    /// Accept on these listening sockets ourselves.
    Listen(Vec<UnixListener>),
}

/// Process lifetime and per-connection limits.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Clients served before the process retires (0 = unlimited).
    pub max_use: u32,
    /// Seconds without clients before the process retires (zero = never).
    pub max_idle: Duration,
    /// A connection idle for this long is closed.
    pub ipc_timeout: Duration,
    /// Time a request (or a reply) may take to arrive (Postfix: 1 s).
    pub request_timeout: Duration,
    /// Largest request accepted; a client sending more is disconnected.
    pub max_request: usize,
    /// Bytes of unfinished requests the process holds over all its
    /// connections (see [`request_budget`]).
    pub request_budget: usize,
    /// Postfix's daemon_timeout: longest time one event-loop pass may take.
    pub watchdog: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_use: 100,
            max_idle: Duration::from_secs(100),
            ipc_timeout: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(1),
            max_request: 1 << 20,
            request_budget: 64 << 20,
            watchdog: None,
        }
    }
}

/// Why the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// max_use or max_idle reached and every client gone.
    Retired,
    /// The master closed the control channel (reload, shutdown, or it died).
    MasterGone,
    /// The event loop cannot wait for events (epoll_wait failed for a reason
    /// that a retry would not cure): the process exits with an error, and
    /// its master starts another, as Postfix's event loop does.
    Failed,
}

const INTAKE_TOKEN_BASE: u64 = 0;
const STATUS_TOKEN: u64 = (1 << 32) - 1;
const ENDED_TOKEN: u64 = (1 << 32) - 2;
const FIRST_CONN_TOKEN: u64 = 1 << 32;
const TICK: Duration = Duration::from_millis(250);

pub struct Worker {
    service: Arc<Service>,
    intake: Intake,
    limits: Limits,
    /// Shared with the connection threads.
    budget: Arc<Budget>,
    epoll: Epoll,
    conns: Vec<Option<Conn>>,
    free: Vec<usize>,
    active: usize,
    use_count: u32,
    retiring: bool,
    /// The master acknowledged our retirement by closing the control channel.
    intake_closed: bool,
    /// accept() failed for want of descriptors or memory: listeners paused.
    accept_pause: AcceptPause,
    idle_since: Option<Instant>,
    scratch: Vec<u8>,
    /// Under Postfix's master(8): the status channel (fd 5).
    status: Option<MasterStatus>,
    master_gone: bool,
    /// Short busy-polling after a reply (see [`Spin`]).
    spin: Spin,
    /// Connections served by threads of their own instead of this loop.
    threads: Option<Threads>,
    /// With threads: requests a connection has on this loop before it moves
    /// to a thread (`proxymap_connection_thread_after`).
    move_after: u32,
}

impl Worker {
    pub fn new(service: Service, intake: Intake, limits: Limits) -> std::io::Result<Worker> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        match &intake {
            Intake::Master(fd) => epoll.add(fd, EpollEvent::new(EpollFlags::EPOLLIN, INTAKE_TOKEN_BASE))?,
            Intake::Listen(listeners) => {
                for (i, l) in listeners.iter().enumerate() {
                    l.set_nonblocking(true)?;
                    epoll.add(l, EpollEvent::new(EpollFlags::EPOLLIN, INTAKE_TOKEN_BASE + i as u64))?;
                }
            }
        }
        Ok(Worker {
            service: Arc::new(service),
            intake,
            budget: Budget::new(limits.request_budget),
            limits,
            epoll,
            conns: Vec::new(),
            free: Vec::new(),
            active: 0,
            use_count: 0,
            retiring: false,
            intake_closed: false,
            accept_pause: AcceptPause::default(),
            idle_since: Some(Instant::now()),
            scratch: vec![0; 64 * 1024],
            status: None,
            master_gone: false,
            spin: Spin::default(),
            threads: None,
            move_after: 0,
        })
    }

    /// Serve each connection on a thread of its own (`worker::threads`) once it
    /// has had `after` requests here; this loop then only accepts, serves
    /// new connections' first requests and keeps the process's books.
    pub fn with_threads(mut self, after: u32) -> std::io::Result<Worker> {
        self.move_after = after;
        let threads = Threads::new(Arc::clone(&self.service), self.limits, Arc::clone(&self.budget))?;
        self.epoll.add(threads.ended_fd(), EpollEvent::new(EpollFlags::EPOLLIN, ENDED_TOKEN))?;
        self.threads = Some(threads);
        Ok(self)
    }

    /// Report to Postfix's master(8) on this status channel, and exit when it
    /// becomes readable (EOF: master reloads or is gone).
    pub fn with_master_status(mut self, status: MasterStatus) -> std::io::Result<Worker> {
        self.epoll.add(status.fd(), EpollEvent::new(EpollFlags::EPOLLIN, STATUS_TOKEN))?;
        self.status = Some(status);
        Ok(self)
    }

    /// Serve until the process should exit.
    pub fn run(&mut self) -> Exit {
        let exit = self.serve();
        if let Some(guard) = self.threads.as_ref().and_then(Threads::quiesce) {
            // Held until the process exits: no update starts any more.
            std::mem::forget(guard);
        }
        exit
    }

    fn serve(&mut self) -> Exit {
        let mut events = vec![EpollEvent::empty(); 256];
        let mut last_sweep = Instant::now();
        let mut last_watchdog: Option<Instant> = None;
        loop {
            let n = match self.wait(&mut events) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                // EBADF, EFAULT, EINVAL: retrying would spin, logging each turn.
                Err(e) => {
                    log::error!("event loop: epoll_wait: {}; exiting", crate::sys::errno::strerror(e as i32));
                    return Exit::Failed;
                }
            };
            let woke = Instant::now();
            if self.master_gone {
                return Exit::MasterGone;
            }
            // Table locks taken for this batch of requests are kept until it
            // is answered; the pass ends before any wait.
            let pass = crate::dict::serving::loop_pass();
            for ev in &events[..n] {
                let token = ev.data();
                if token == STATUS_TOKEN {
                    log::debug!("master disconnect -- exiting");
                    return Exit::MasterGone;
                }
                if token == ENDED_TOKEN {
                    let ended = self.threads.as_ref().map_or(0, Threads::take_ended);
                    for _ in 0..ended {
                        self.active = self.active.saturating_sub(1);
                        self.connection_ended();
                    }
                    continue;
                }
                if token >= FIRST_CONN_TOKEN {
                    self.conn_event((token - FIRST_CONN_TOKEN) as usize, ev.events());
                } else if let Some(exit) = self.intake_event(token as usize) {
                    return exit;
                }
            }
            drop(pass);
            crate::dict::serving::after_loop_pass(TICK);
            let now = Instant::now();
            if self.accept_pause.ends(now) {
                self.listen(true);
                if let Some(status) = &mut self.status {
                    self.master_gone |= status.set_paused(false).is_err();
                }
            }
            if now.duration_since(last_sweep) >= TICK {
                last_sweep = now;
                self.sweep(now);
            }
            if let (Some(status), None) = (&mut self.status, &self.threads) {
                if status.account(now.saturating_duration_since(woke), now).is_err() {
                    return Exit::MasterGone;
                }
            }
            // Postfix's watchdog: a loop pass (or a connection thread's
            // request) stuck for daemon_timeout ends the process (SIGALRM).
            // Re-armed at most once a second.
            if let Some(limit) = self.limits.watchdog {
                if last_watchdog.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1)) {
                    last_watchdog = Some(now);
                    let running = self.threads.as_ref().and_then(Threads::oldest_request).unwrap_or_default();
                    let left = limit.saturating_sub(running);
                    nix::unistd::alarm::set(u32::try_from(left.as_secs()).unwrap_or(u32::MAX).max(1));
                }
            }
            if let Some(exit) = self.lifetime_check(now) {
                return exit;
            }
        }
    }

    /// epoll_wait, polling first for up to [`backoff::POLL`] when that has
    /// been paying off.
    fn wait(&mut self, events: &mut [EpollEvent]) -> nix::Result<usize> {
        if self.spin.start() {
            let deadline = Instant::now() + backoff::POLL;
            loop {
                let n = self.epoll.wait(events, 0u16)?;
                if n > 0 {
                    self.spin.backoff.hit();
                    return Ok(n);
                }
                if Instant::now() >= deadline {
                    break;
                }
                std::hint::spin_loop();
            }
            self.spin.backoff.miss();
        }
        let tick = crate::dict::serving::next_check(TICK);
        self.epoll.wait(events, tick.as_millis() as u16)
    }

    fn intake_event(&mut self, index: usize) -> Option<Exit> {
        match self.intake {
            Intake::Master(_) => self.control_event(),
            Intake::Listen(_) => {
                self.accept(index);
                None
            }
        }
    }

    /// Drain the control channel from our master.
    fn control_event(&mut self) -> Option<Exit> {
        loop {
            let Intake::Master(fd) = &self.intake else { return None };
            match sys::recv_msg(fd) {
                Ok(Received::Message(control::CONNECTION, Some(fd))) => self.add_conn(UnixStream::from(fd)),
                Ok(Received::Message(control::CONNECTION, None)) => {
                    // The kernel could not install the descriptor here (out of
                    // descriptors): the client sees its connection close. Tell
                    // the master it is over, so that its count stays right.
                    log::error!("connection from master arrived without its descriptor (too many open files?)");
                    self.connection_ended();
                }
                Ok(Received::Message(cmd, _)) => log::warn!("unexpected control message {cmd:?} from master"),
                Ok(Received::Empty) => return None,
                Ok(Received::Eof) | Err(_) => {
                    if !self.retiring {
                        return Some(Exit::MasterGone);
                    }
                    let _ = self.epoll.delete(fd);
                    self.intake_closed = true;
                    return None;
                }
            }
        }
    }

    fn accept(&mut self, index: usize) {
        self.service.before_accept();
        let Intake::Listen(listeners) = &self.intake else { return };
        let Some(listener) = listeners.get(index) else { return };
        match listener.accept() {
            Ok((stream, _)) => {
                self.accept_pause.accepted();
                self.add_conn(stream);
            }
            Err(e) if is_transient_accept_error(&e) => {}
            Err(e) => {
                // The socket stays readable: trying again at once would spin.
                self.accept_pause.failed(&e, Instant::now());
                self.listen(false);
                // master(8) starts another process for new clients meanwhile.
                if let Some(status) = &mut self.status {
                    self.master_gone |= status.set_paused(true).is_err();
                }
            }
        }
    }

    /// Watch the listening sockets (`on`) or leave them alone for a while.
    fn listen(&mut self, on: bool) {
        let Intake::Listen(listeners) = &self.intake else { return };
        let flags = if on { EpollFlags::EPOLLIN } else { EpollFlags::empty() };
        for (i, l) in listeners.iter().enumerate() {
            let mut ev = EpollEvent::new(flags, INTAKE_TOKEN_BASE + i as u64);
            if let Err(e) = self.epoll.modify(l, &mut ev) {
                log::warn!("epoll_ctl on a listening socket: {e}");
            }
        }
    }

    /// Tell master(8) once that this process started fine (a TAKEN/AVAIL
    /// pair, which it counts as a use); later calls write nothing.
    fn report_use(&mut self) {
        if let Some(status) = &mut self.status {
            self.master_gone |= status.started().is_err();
        }
    }

    /// Bookkeeping for a client that went away (or never got served).
    fn connection_ended(&mut self) {
        if let Some(s) = self.service.stats() {
            s.connection_closed();
        }
        self.use_count = self.use_count.saturating_add(1);
        if let Intake::Master(fd) = &self.intake {
            if !self.intake_closed {
                let _ = sys::send_msg(fd, control::DONE, None, sys::Send::Wait);
            }
        }
        if self.active == 0 {
            self.idle_since = Some(Instant::now());
        }
        if self.limits.max_use > 0 && self.use_count >= self.limits.max_use {
            self.retire();
        }
    }

    fn retire(&mut self) {
        if self.retiring {
            return;
        }
        self.retiring = true;
        if let Intake::Master(fd) = &self.intake {
            let _ = sys::send_msg(fd, control::RETIRING, None, sys::Send::Wait);
        }
    }

    /// Timeouts: requests that stall, replies nobody reads, idle connections.
    fn sweep(&mut self, now: Instant) {
        let svc = self.service.stream().to_owned();
        let mut expired = Vec::new();
        for (slot, conn) in self.conns.iter().enumerate() {
            let Some(conn) = conn else { continue };
            if let (Some(t), Some(inc)) = (conn.request_started, conn.incomplete) {
                if now.duration_since(t) > self.limits.request_timeout {
                    log::warn!("timeout on {svc} while reading {}", inc.context.as_str());
                    expired.push(slot);
                    continue;
                }
            }
            if let Some(t) = conn.write_started {
                if now.duration_since(t) > self.limits.request_timeout {
                    log::warn!("timeout on {svc} while writing reply");
                    expired.push(slot);
                    continue;
                }
            }
            if now.duration_since(conn.last_active) > self.limits.ipc_timeout {
                log::debug!("closing connection idle for {:?}", self.limits.ipc_timeout);
                expired.push(slot);
            }
        }
        for slot in expired {
            self.close(slot);
        }
    }

    fn lifetime_check(&mut self, now: Instant) -> Option<Exit> {
        if self.active == 0 {
            if let Some(since) = self.idle_since {
                if !self.limits.max_idle.is_zero() && now.duration_since(since) >= self.limits.max_idle {
                    log::debug!("idle timeout -- exiting");
                    self.retire();
                }
            }
        }
        if self.retiring && self.active == 0 {
            match self.intake {
                // Wait for the master's acknowledgement, so that no connection
                // is handed to us after we decided to leave.
                Intake::Master(_) if !self.intake_closed => None,
                _ => Some(Exit::Retired),
            }
        } else {
            None
        }
    }
}

/// Errors that mean "another process took it, or the client gave up": try later.
fn is_transient_accept_error(e: &std::io::Error) -> bool {
    use nix::errno::Errno::*;
    let Some(code) = e.raw_os_error() else { return false };
    matches!(
        nix::errno::Errno::from_raw(code),
        EAGAIN
            | ECONNREFUSED
            | ECONNRESET
            | EHOSTDOWN
            | EHOSTUNREACH
            | EINTR
            | ENETDOWN
            | ENETUNREACH
            | ENOTCONN
            | ECONNABORTED
            | EPROTO
    )
}
