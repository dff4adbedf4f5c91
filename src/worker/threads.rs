//! Connection threads: each client connection is served by a thread of its
//! own that blocks in read(), answers, and reads again.
//!
//! Why: on a small machine most of a lookup's cost is the kernel's, and a
//! client blocked on its reply hands the CPU straight to the thread that
//! reads its request and back (one core, no cross-core wake-up), where a
//! single event loop wakes each client from another core. A slow table (a
//! database query, a lock held by postmap) stalls only its own client.
//!
//! The worker's event loop keeps everything else: accepting, the status
//! channel to master(8), process lifetime and the watchdog. It serves a new
//! connection's first requests itself (most short-lived clients never need a
//! thread), then hands it to an idle thread (or starts one) and hears
//! through an eventfd when a connection ended.

use super::backoff::{self, Backoff};
use super::request_budget::{self, Budget, InBuf};
use super::Limits;
use crate::protocol::{self, Parse, ANNOUNCEMENT};
use crate::service::{Place, Role, Service, Session};
use crate::sync::lock;
use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::MsgFlags;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

/// At most this many connection threads; the event loop serves connections
/// beyond them (thousands of idle clients must not mean thousands of threads).
pub(crate) const MAX_THREADS: usize = 1024;
/// After a thread could not be started (out of memory, or of tasks under a
/// cgroup's pids limit), new connections stay on the event loop this long
/// before another start is tried.
const SPAWN_RETRY: Duration = Duration::from_secs(1);
/// An idle thread waits this long for a new connection before it exits.
const IDLE_THREAD: Duration = Duration::from_secs(60);
/// Stack of a connection thread: table code (glibc regexec, PCRE2, Berkeley
/// DB) runs on it. Only touched pages count toward the resident set.
const STACK: usize = 2 << 20;

/// The connection threads of one worker process.
pub(crate) struct Threads {
    shared: Arc<Shared>,
}

struct Shared {
    service: Arc<Service>,
    limits: Limits,
    budget: Arc<Budget>,
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Counts connections that ended; the event loop reads it.
    ended: EventFd,
    /// One slot per live thread: when its request in progress started
    /// ([`crate::clock::coarse_ns`]: milliseconds of resolution are plenty
    /// for a watchdog of seconds; 0 = none), the watchdog's view.
    busy: Mutex<Vec<Arc<AtomicU64>>>,
    /// proxywrite: requests run under the read side; the process takes the
    /// write side before it exits, so that no update is cut short.
    gate: Option<RwLock<()>>,
    /// Threads answering a request (from a complete request to their next
    /// blocking read): a thread polls for its client's next request only
    /// while it is the only one.
    active: AtomicUsize,
    /// When a thread last failed to start ([`crate::clock::coarse_ns`]; 0:
    /// never).
    spawn_failed: AtomicU64,
}

/// A connection for a thread: new (the thread sends the greeting), or
/// moved from the event loop with its session and what the loop already
/// read of its next request.
pub(crate) struct Handoff {
    pub stream: UnixStream,
    pub greet: bool,
    pub session: Session,
    pub pending: InBuf,
}

#[derive(Default)]
struct Queue {
    conns: VecDeque<Handoff>,
    /// Threads waiting for a connection.
    idle: usize,
}

impl Threads {
    pub(crate) fn new(service: Arc<Service>, limits: Limits, budget: Arc<Budget>) -> io::Result<Threads> {
        let ended = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let gate = (service.role() == Role::Writer).then(|| RwLock::new(()));
        Ok(Threads {
            shared: Arc::new(Shared {
                service,
                limits,
                budget,
                queue: Mutex::new(Queue::default()),
                ready: Condvar::new(),
                ended,
                busy: Mutex::new(Vec::new()),
                gate,
                active: AtomicUsize::new(0),
                spawn_failed: AtomicU64::new(0),
            }),
        })
    }

    /// Readable when connections ended (see [`Threads::take_ended`]).
    pub(crate) fn ended_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.shared.ended.as_fd()
    }

    /// How many connections ended since the last call.
    pub(crate) fn take_ended(&self) -> u64 {
        self.shared.ended.read().unwrap_or(0)
    }

    /// Can [`Threads::dispatch`] take another connection?
    pub(crate) fn has_room(&self) -> bool {
        let q = lock(&self.shared.queue);
        if q.idle > q.conns.len() {
            return true;
        }
        drop(q);
        let failed = self.shared.spawn_failed.load(Ordering::Relaxed);
        if failed != 0 && crate::clock::since(crate::clock::coarse_ns(), failed) < SPAWN_RETRY.as_nanos() as u64 {
            return false;
        }
        lock(&self.shared.busy).len() < MAX_THREADS
    }

    /// Serve a connection on an idle thread, or on a new one. Err: no
    /// thread could be started (the connection is closed, and for a while
    /// [`Threads::has_room`] says no: the loop serves new connections).
    pub(crate) fn dispatch(&self, conn: Handoff) -> io::Result<()> {
        conn.stream.set_nonblocking(false)?;
        let mut q = lock(&self.shared.queue);
        if q.idle > q.conns.len() {
            q.conns.push_back(conn);
            drop(q);
            self.shared.ready.notify_one();
            return Ok(());
        }
        drop(q);
        // Registered before the thread runs, so that has_room() counts it.
        let busy = Arc::new(AtomicU64::new(0));
        lock(&self.shared.busy).push(Arc::clone(&busy));
        let shared = Arc::clone(&self.shared);
        let mine = Arc::clone(&busy);
        let spawned = std::thread::Builder::new()
            .name("conn".into())
            .stack_size(STACK)
            .spawn(move || thread_main(&shared, conn, mine));
        if spawned.is_err() {
            lock(&self.shared.busy).retain(|b| !Arc::ptr_eq(b, &busy));
            self.shared.spawn_failed.store(crate::clock::coarse_ns().max(1), Ordering::Relaxed);
        }
        spawned.map(drop)
    }

    /// How long the oldest request in progress has been running.
    pub(crate) fn oldest_request(&self) -> Option<Duration> {
        let now = crate::clock::coarse_ns();
        let oldest = lock(&self.shared.busy).iter().map(|b| b.load(Ordering::Relaxed)).filter(|&t| t != 0).min()?;
        Some(Duration::from_nanos(now.saturating_sub(oldest)))
    }

    /// Before the process exits: wait for updates in progress to finish and
    /// start no more. The returned guard is held until exit.
    pub(crate) fn quiesce(&self) -> Option<std::sync::RwLockWriteGuard<'_, ()>> {
        self.shared.gate.as_ref().map(|g| g.write().unwrap_or_else(|e| e.into_inner()))
    }
}

fn thread_main(shared: &Shared, first: Handoff, busy: Arc<AtomicU64>) {
    crate::dict::serving::on_connection_thread();
    let mut scratch = vec![0u8; 64 * 1024];
    let mut next = Some(first);
    while let Some(Handoff { stream, greet, session, pending }) = next.take() {
        // A panic is a bug in request handling. It costs its own client the
        // connection (dropped while unwinding), never the thread's books:
        // the request no longer counts as running (the watchdog would end
        // the process) and the loop still hears that the connection ended
        // (or the worker would never retire).
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut conn = ThreadConn { stream, shared, busy: &busy, read_timeout: None, poll: Backoff::default() };
            conn.serve(greet, session, pending, &mut scratch);
        }));
        if let Err(panic) = served {
            busy.store(0, Ordering::Relaxed);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            log::error!("connection thread: request handling failed ({what}); connection closed");
        }
        if let Err(e) = shared.ended.write(1) {
            log::error!("connection thread: eventfd write: {e}");
        }
        next = wait_for_connection(shared);
    }
    lock(&shared.busy).retain(|b| !Arc::ptr_eq(b, &busy));
}

fn wait_for_connection(shared: &Shared) -> Option<Handoff> {
    let mut q = lock(&shared.queue);
    q.idle += 1;
    let deadline = Instant::now() + IDLE_THREAD;
    loop {
        if let Some(s) = q.conns.pop_front() {
            q.idle -= 1;
            return Some(s);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            q.idle -= 1;
            return None;
        }
        q = shared.ready.wait_timeout(q, left).map(|(g, _)| g).unwrap_or_else(|e| e.into_inner().0);
    }
}

/// One connection on its thread.
struct ThreadConn<'a> {
    stream: UnixStream,
    shared: &'a Shared,
    busy: &'a AtomicU64,
    /// The receive timeout last set on the socket.
    read_timeout: Option<Duration>,
    /// Polling for the next request after a reply (`poll_next`).
    poll: Backoff,
}

impl ThreadConn<'_> {
    /// Serve the connection from its next request on; `inbuf` holds what
    /// the event loop read of it.
    fn serve(&mut self, greet: bool, mut session: Session, mut inbuf: InBuf, scratch: &mut [u8]) {
        let limits = self.shared.limits;
        let svc = self.shared.service.stream();
        if self.stream.set_write_timeout(Some(limits.request_timeout.max(Duration::from_millis(1)))).is_err()
            || (greet && self.stream.write_all(ANNOUNCEMENT).is_err())
        {
            return;
        }
        let mut out = Vec::new();
        // When the first byte of a request still incomplete arrived.
        let mut started: Option<Instant> = None;
        let mut incomplete = None;
        // Bytes of the next request that polling found.
        let mut polled = None;
        let mut handed = !inbuf.is_empty();
        loop {
            let grown_from = inbuf.len();
            if std::mem::take(&mut handed) {
                // Parse what the loop read before reading more.
            } else if let Some(n) = polled.take() {
                if inbuf.extend(&scratch[..n]).is_err() {
                    return request_budget::warn_over(svc, &self.shared.budget);
                }
            } else {
                // An idle connection may wait ipc_timeout for its next request;
                // a request once begun must arrive within request_timeout.
                let wait = match started {
                    None => limits.ipc_timeout,
                    Some(t) => limits.request_timeout.saturating_sub(t.elapsed()),
                };
                if !self.set_read_timeout(wait.max(Duration::from_millis(1))) {
                    return;
                }
                match self.stream.read(scratch) {
                    Ok(0) => {
                        if let Some(inc) = incomplete.filter(|_: &protocol::attr::Incomplete| !inbuf.is_empty()) {
                            super::conn::warn_end_of_input(svc, inc);
                        }
                        return;
                    }
                    Ok(n) => {
                        if inbuf.extend(&scratch[..n]).is_err() {
                            return request_budget::warn_over(svc, &self.shared.budget);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if is_timeout(&e) => {
                        match incomplete {
                            Some(inc) if started.is_some() => {
                                log::warn!("timeout on {svc} while reading {}", inc.context.as_str())
                            }
                            _ => log::debug!("closing connection idle for {:?}", limits.ipc_timeout),
                        }
                        return;
                    }
                    Err(_) => return,
                }
            }
            match protocol::parse_more(&inbuf, grown_from, incomplete) {
                Parse::NeedMore(inc) => {
                    incomplete = Some(inc);
                    started.get_or_insert_with(Instant::now);
                    if inbuf.len() > limits.max_request {
                        log::warn!("request from {svc} exceeds {} bytes -- closing connection", limits.max_request);
                        return;
                    }
                }
                Parse::Done { outcome, .. } => {
                    let shared = self.shared;
                    let _active = Active::enter(&shared.active);
                    if !self.answer(&outcome, &mut session, &mut out) {
                        return;
                    }
                    // As in the event loop: bytes past this request are dropped.
                    inbuf.clear();
                    incomplete = None;
                    started = None;
                    if let Err(e) = self.stream.write_all(&out) {
                        if is_timeout(&e) {
                            log::warn!("timeout on {svc} while writing reply");
                        }
                        return;
                    }
                    out.clear();
                    polled = self.poll_next(scratch);
                }
            }
        }
    }

    /// Run one request. False: the process is exiting, no more requests.
    fn answer(&self, outcome: &protocol::Outcome<'_>, session: &mut Session, out: &mut Vec<u8>) -> bool {
        let _gate = match &self.shared.gate {
            Some(g) => match g.try_read() {
                Ok(guard) => Some(guard),
                Err(std::sync::TryLockError::WouldBlock) => return false,
                Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            },
            None => None,
        };
        self.busy.store(crate::clock::coarse_ns().max(1), Ordering::Relaxed);
        // Always Done: this thread may wait.
        let _ = self.shared.service.handle(outcome, session, out, Place::MayWait);
        self.busy.store(0, Ordering::Relaxed);
        true
    }

    /// After a reply: poll for the next request ([`super::backoff`]), only
    /// while no other connection thread is busy (with several at once the
    /// CPU is better left to them); Some(bytes read into `scratch`).
    /// Anything but data is left to the blocking read.
    fn poll_next(&mut self, scratch: &mut [u8]) -> Option<usize> {
        let alone = || self.shared.active.load(Ordering::Relaxed) == 1;
        if !alone() || !self.poll.due() {
            return None;
        }
        let deadline = Instant::now() + backoff::POLL;
        loop {
            match nix::sys::socket::recv(self.stream.as_raw_fd(), scratch, MsgFlags::MSG_DONTWAIT) {
                Ok(n) if n > 0 => {
                    self.poll.hit();
                    return Some(n);
                }
                Err(Errno::EAGAIN) => {}
                Err(Errno::EINTR) => continue,
                _ => return None,
            }
            if Instant::now() >= deadline || !alone() {
                break;
            }
            std::hint::spin_loop();
        }
        self.poll.miss();
        None
    }

    /// Set SO_RCVTIMEO when it differs from what is set. False on error.
    fn set_read_timeout(&mut self, t: Duration) -> bool {
        // Rounded to 10 ms, so that a partial request's shrinking budget does
        // not cost a system call per read.
        let t = Duration::from_millis(t.as_millis().div_ceil(10).saturating_mul(10).min(u64::MAX as u128) as u64);
        if self.read_timeout == Some(t) {
            return true;
        }
        self.read_timeout = Some(t);
        self.stream.set_read_timeout(Some(t)).is_ok()
    }
}

/// Counts a thread in [`Shared::active`] while it lives.
struct Active<'a>(&'a AtomicUsize);

impl<'a> Active<'a> {
    fn enter(count: &'a AtomicUsize) -> Active<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Active(count)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Params;
    use crate::dict::{Dict, DictResult, Waits};
    use crate::protocol::attr::Writer;

    /// A table whose lookups hit a bug.
    struct Panics;

    impl Dict for Panics {
        fn flags(&self) -> u32 {
            0
        }
        fn waits(&self) -> Waits {
            Waits::Never
        }
        fn lookup(&self, _: &[u8], _: u32, _: &mut Vec<u8>) -> DictResult<bool> {
            panic!("a bug in a table");
        }
    }

    fn lookup_request(table: &str) -> Vec<u8> {
        let mut req = Vec::new();
        Writer::new(&mut req)
            .str("request", b"lookup")
            .str("table", table.as_bytes())
            .int("flags", 0)
            .str("key", b"k")
            .end();
        req
    }

    /// Connect a client through `threads` and send it one lookup; the reply
    /// bytes (empty: the connection was closed).
    fn ask(threads: &Threads, table: &str) -> Vec<u8> {
        let (mut client, server) = UnixStream::pair().unwrap();
        threads
            .dispatch(Handoff {
                stream: server,
                greet: true,
                session: Session::default(),
                pending: InBuf::new(&Budget::new(usize::MAX)),
            })
            .unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut hello = vec![0u8; ANNOUNCEMENT.len()];
        client.read_exact(&mut hello).unwrap();
        client.write_all(&lookup_request(table)).unwrap();
        let mut reply = vec![0u8; 64];
        let n = client.read(&mut reply).unwrap();
        reply.truncate(n);
        reply
    }

    #[test]
    fn a_panic_in_a_request_closes_its_connection_and_keeps_the_books() {
        let main_cf = "proxy_read_maps = proxy:t:panics proxy:static:ok\n";
        let params = Arc::new(Params::from_text(main_cf, "main.cf", &[]).unwrap());
        let allowlist = crate::config::allowlist::proxy_allowlist(&params, false);
        let service = Service::new(Role::Reader, params, allowlist);
        service.insert_table("t:panics", 0, Box::new(Panics));
        let threads = Threads::new(Arc::new(service), Limits::default(), Budget::new(usize::MAX)).unwrap();

        assert_eq!(ask(&threads, "t:panics"), b"", "the client's connection is closed");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ended = 0;
        while ended == 0 && Instant::now() < deadline {
            ended += threads.take_ended();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(ended, 1, "the loop hears that the connection ended");
        assert_eq!(threads.oldest_request(), None, "no request counts as running");
        // The thread serves the next client.
        assert!(ask(&threads, "static:ok").starts_with(b"status\x000\x00value\x00ok\x00"));
    }
}
