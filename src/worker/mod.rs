//! A worker process's event loop: many client connections, one request at a
//! time per connection, tables shared by all of them.
//!
//! Connections come either from our standalone master over a control socket
//! ([`Intake::Master`]) or from listening sockets accepted here ([`Intake::Listen`],
//! used under Postfix's master(8) and by in-process tests).

pub(crate) mod accept_pause;
pub(crate) mod backoff;
pub(crate) mod conn;
pub(crate) mod master_status;
pub(crate) mod request_budget;
pub(crate) mod threads;

use crate::protocol::{self, Parse, ANNOUNCEMENT};
use crate::service::{Place, Served, Service, Session};
use crate::sys::{self, Received};
use accept_pause::AcceptPause;
use backoff::Backoff;
use conn::{Conn, ReadStatus};
use master_status::MasterStatus;
use request_budget::{Budget, InBuf};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use threads::{Handoff, Threads};

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

/// Waiting for the next request by polling (`epoll_wait` with a zero
/// timeout) for a few microseconds before sleeping ([`backoff`]): for one
/// busy client at a time.
#[derive(Default)]
struct Spin {
    /// Requests answered in this loop pass.
    served: u32,
    /// The connection that sent the last request, and how many requests in
    /// a row came from it.
    last_slot: usize,
    streak: u32,
    backoff: Backoff,
}

/// Requests in a row from one connection before polling starts.
const STREAK: u32 = 3;

impl Spin {
    /// A request from the connection in `slot` was answered.
    fn served(&mut self, slot: usize) {
        self.served += 1;
        if slot == self.last_slot {
            self.streak = self.streak.saturating_add(1);
        } else {
            self.last_slot = slot;
            self.streak = 1;
        }
    }

    /// At the end of a loop pass: poll before sleeping? Only while one client
    /// is asking alone (one request this pass, and the last few from the same
    /// connection): with several clients at once a request is usually on its
    /// way anyway, and a polling worker would take the CPU its clients need.
    fn start(&mut self) -> bool {
        if std::mem::take(&mut self.served) != 1 || self.streak < STREAK {
            return false;
        }
        self.backoff.due()
    }
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

    fn add_conn(&mut self, stream: UnixStream) {
        // A client accepted: this process started fine (configuration,
        // privileges, sockets are behind it). master(8) takes a process that
        // dies before its first reported use for a broken command and stops
        // the whole service for a minute; one killed from here on (kill -9,
        // the OOM killer) is not that, whatever path its requests take.
        // Not before the first accept: a TAKEN while the connection that
        // made master start this process still waits makes it start another.
        self.report_use();
        if let Some(s) = self.service.stats() {
            s.connection_opened();
        }
        if let Intake::Master(_) = self.intake {
            self.service.before_accept();
        }
        if self.move_after == 0 && self.threads.as_ref().is_some_and(Threads::has_room) {
            self.active += 1;
            self.idle_since = None;
            let pending = InBuf::new(&self.budget);
            self.hand_to_thread(Handoff { stream, greet: true, session: Session::default(), pending });
            return;
        }
        if stream.set_nonblocking(true).is_err() {
            return self.connection_ended();
        }
        let now = Instant::now();
        let mut conn = Conn::new(stream, InBuf::new(&self.budget), now);
        conn.outbuf.extend_from_slice(ANNOUNCEMENT);
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let token = FIRST_CONN_TOKEN + slot as u64;
        if self.epoll.add(conn.stream.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token)).is_err() {
            self.free.push(slot);
            return self.connection_ended();
        }
        self.conns[slot] = Some(conn);
        self.active += 1;
        self.idle_since = None;
        self.write_reply(slot, now);
    }

    fn conn_event(&mut self, slot: usize, events: EpollFlags) {
        let now = Instant::now();
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else { return };
        if conn.has_output() {
            // Replies go out before more input is read: one request at a time.
            if events.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
                self.write_reply(slot, now);
            }
            return;
        }
        let grown_from = conn.inbuf.len();
        let status = match conn.read_some(&mut self.scratch) {
            Ok(s) => s,
            Err(_) => return self.close(slot),
        };
        match status {
            ReadStatus::WouldBlock => {}
            ReadStatus::OverBudget => {
                request_budget::warn_over(self.service.stream(), &self.budget);
                self.close(slot)
            }
            ReadStatus::Eof => {
                if let Some(inc) = conn.incomplete.filter(|_| !conn.inbuf.is_empty()) {
                    conn::warn_end_of_input(self.service.stream(), inc);
                }
                self.close(slot)
            }
            ReadStatus::Data => {
                conn.last_active = now;
                if conn.served >= self.move_after && self.threads.as_ref().is_some_and(Threads::has_room) {
                    return self.move_to_thread(slot);
                }
                match protocol::parse_more(&conn.inbuf, grown_from, conn.incomplete) {
                    Parse::NeedMore(inc) => {
                        conn.incomplete = Some(inc);
                        conn.request_started.get_or_insert(now);
                        if conn.inbuf.len() > self.limits.max_request {
                            log::warn!(
                                "request from {} exceeds {} bytes -- closing connection",
                                self.service.stream(),
                                self.limits.max_request
                            );
                            self.close(slot);
                        }
                    }
                    Parse::Done { outcome, .. } => {
                        // With a thread to move to, this loop never waits
                        // for a table: such a request moves, unanswered.
                        let place = match self.threads.as_ref().is_some_and(Threads::has_room) {
                            true => Place::EventLoop,
                            false => Place::MayWait,
                        };
                        let served = self.service.handle(&outcome, &mut conn.session, &mut conn.outbuf, place);
                        if served == Served::WouldBlock {
                            return self.move_to_thread(slot);
                        }
                        // Like Postfix, input received beyond this request is
                        // discarded when the reply is sent: clients never pipeline.
                        conn.inbuf.clear();
                        conn.incomplete = None;
                        conn.request_started = None;
                        conn.served = conn.served.saturating_add(1);
                        self.write_reply(slot, now);
                        self.spin.served(slot);
                    }
                }
            }
        }
    }

    /// Send pending output; wait for writability if the socket is full.
    fn write_reply(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else { return };
        if !conn.has_output() {
            return;
        }
        let was_waiting = conn.write_started.is_some();
        match conn.flush() {
            Ok(true) => {
                conn.write_started = None;
                if was_waiting {
                    let token = FIRST_CONN_TOKEN + slot as u64;
                    let mut ev = EpollEvent::new(EpollFlags::EPOLLIN, token);
                    let _ = self.epoll.modify(conn.stream.as_fd(), &mut ev);
                }
            }
            Ok(false) => {
                if !was_waiting {
                    conn.write_started = Some(now);
                    let token = FIRST_CONN_TOKEN + slot as u64;
                    let mut ev = EpollEvent::new(EpollFlags::EPOLLOUT, token);
                    let _ = self.epoll.modify(conn.stream.as_fd(), &mut ev);
                }
            }
            Err(_) => self.close(slot),
        }
    }

    /// Hand a connection on this loop to a connection thread, with what was
    /// read of its next request.
    fn move_to_thread(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) else { return };
        let _ = self.epoll.delete(conn.stream.as_fd());
        self.free.push(slot);
        self.hand_to_thread(Handoff { stream: conn.stream, greet: false, session: conn.session, pending: conn.inbuf });
    }

    /// A connection counted in `active` goes to a thread; it stays counted
    /// until the thread tells that it ended.
    fn hand_to_thread(&mut self, handoff: Handoff) {
        let dispatched = match &self.threads {
            Some(threads) => threads.dispatch(handoff),
            None => Err(std::io::Error::other("no connection threads")),
        };
        if let Err(e) = dispatched {
            log::error!("start connection thread: {e}");
            self.active -= 1;
            self.connection_ended();
        }
    }

    /// Tell master(8) once that this process started fine (a TAKEN/AVAIL
    /// pair, which it counts as a use); later calls write nothing.
    fn report_use(&mut self) {
        if let Some(status) = &mut self.status {
            self.master_gone |= status.started().is_err();
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) {
            let _ = self.epoll.delete(conn.stream.as_fd());
            self.free.push(slot);
            self.active -= 1;
            self.connection_ended();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Passes that each answered one request of the same client, as
    /// `Worker::wait` sees them: how many poll when every poll misses.
    fn polls_when_idle(spin: &mut Spin, passes: usize) -> usize {
        let mut polls = 0;
        for _ in 0..passes {
            spin.served(7);
            if spin.start() {
                polls += 1;
                spin.backoff.miss();
            }
        }
        polls
    }

    #[test]
    fn spinning_backs_off_when_it_does_not_pay() {
        let mut spin = Spin { streak: STREAK, last_slot: 7, ..Spin::default() };
        // misses skip 1, 3, 7, ... chances: 4 polls in the first 1+2+4+8 passes
        assert_eq!(polls_when_idle(&mut spin, 15), 4);
        // at the cap one pass in 1024 polls: 50 us per 1024 requests at most
        let backoff = Backoff { misses: backoff::MAX_MISSES, skip: 0 };
        let mut capped = Spin { streak: STREAK, last_slot: 7, backoff, ..Spin::default() };
        assert_eq!(polls_when_idle(&mut capped, 1024 * 10), 10);
        // a hit restores polling after every single-request pass
        capped.backoff.hit();
        capped.backoff.skip = 0;
        capped.served(7);
        assert!(capped.start());
    }

    #[test]
    fn spinning_only_for_a_client_asking_alone() {
        let mut spin = Spin::default();
        assert!(!spin.start(), "nothing answered: sleep");
        for _ in 0..STREAK {
            spin.served(1);
        }
        assert!(!spin.start(), "several requests in one pass: sleep");
        spin.served(1);
        assert!(spin.start(), "one client asking alone: poll");
        spin.backoff.miss();
        spin.backoff.skip = 0;
        // clients taking turns: no streak, no polling
        for slot in [2, 3, 2, 3, 2] {
            spin.served(slot);
            assert!(!spin.start());
        }
    }
}
