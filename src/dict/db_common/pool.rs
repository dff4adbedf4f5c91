//! Connection pools for the database and network tables (`pgsql:`,
//! `mysql:`, and the network tables), one per
//! server identity (where, as whom, which database, and the pool settings)
//! and per worker process, shared by every table that names that server.
//!
//! What Postfix 3.7 does and this does instead (spec §1.6, §2.3):
//! * one connection per table per process → at most
//!   [`Settings::max_connections`] per server, however many tables use it;
//!   a lookup waits for a free connection at most [`Settings::wait_timeout`];
//! * no connect timeout → [`Settings::connect_timeout`] (query timeouts are
//!   the connection's business: the query closure applies them);
//! * any failure takes the host down for 60 s → only a failed *connect*
//!   does (for [`Settings::retry_interval`]); a failed statement is the
//!   lookup's error alone, and a connection the server dropped (restart,
//!   killed backend, idle timeout) is replaced and the query run once more
//!   at once;
//! * idle connections closed after 60 s by the event loop → by a reaper
//!   thread of the registry after [`Settings::idle_interval`], whether or
//!   not lookups come;
//! * one table's slow queries could take every connection of the pool →
//!   a table that already holds a connection of a pool shared with other
//!   tables takes another only while one more stays free for them
//!   ([`Share`]), so one slow table never makes the others wait;
//! * a warning per failed lookup → one line when a server goes down and one
//!   when it is back, however many lookups fail in between. Log lines name
//!   a server by [`Server::name`], which never shows a password.
//!
//! Failover among a table's hosts ([`Hosts`]) keeps Postfix's order:
//! UNIX-domain sockets, then TCP hosts, then URIs, random among equals, a
//! host that already has idle connections first (Postfix keeps using its
//! active host).
//!
//! Independent of any client library: a backend implements [`Server`] and
//! [`Connection`]; the unit tests use a fake one.

use crate::sync::lock;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// One open connection of a backend.
pub(crate) trait Connection: Send + 'static {
    /// True when the connection cannot serve another query (the server
    /// closed it, an earlier query timed out on it). Called, without
    /// waiting, before an idle connection is used again.
    fn is_broken(&mut self) -> bool;
}

/// Failover class of a host, tried in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Rank {
    Socket,
    Inet,
    Uri,
}

/// A server identity: everything needed to connect. Equal identities share
/// one pool; the password is part of the identity, never of [`Server::name`].
pub(crate) trait Server: Clone + Eq + Hash + Send + Sync + 'static {
    type Conn: Connection;
    /// The server in log lines, without any password.
    fn name(&self) -> String;
    fn rank(&self) -> Rank;
    /// Open a connection, giving up after `timeout`; the error is the
    /// reason, for the log.
    fn connect(&self, timeout: Duration) -> Result<Self::Conn, String>;
}

/// Pool settings (part of a pool's identity: tables that differ here get
/// pools of their own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Settings {
    /// Connections per pool, in use or idle, at most.
    pub max_connections: usize,
    /// An idle connection is closed after this long unused (Postfix 3.9's
    /// `idle_interval`).
    pub idle_interval: Duration,
    /// A server that could not be connected to is not tried again for
    /// this long (Postfix 3.9's `retry_interval`).
    pub retry_interval: Duration,
    pub connect_timeout: Duration,
    /// How long a lookup waits for a free connection when all are busy.
    pub wait_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_connections: 4,
            idle_interval: Duration::from_secs(60),
            retry_interval: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(10),
        }
    }
}

/// How a query failed, as the query closure tells it.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The statement failed on a sound connection (a bad key, an SQL
    /// error): this lookup's error only. The connection is kept.
    #[error("{0}")]
    Query(String),
    /// The connection broke (the server closed it): the query is run once
    /// more on a new connection.
    #[error("{0}")]
    Broken(String),
    /// No answer in time: the connection is closed, the query not retried.
    #[error("{0}")]
    Timeout(String),
}

/// Why [`Pool::run`] or [`Hosts::run`] gave no answer. Each means RETRY to
/// the client.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum Error {
    /// Every connection stayed busy until the wait deadline.
    #[error("no free connection to {0}")]
    Busy(String),
    /// The server cannot be connected to (now, or recently: it is marked
    /// down); the reason of the last attempt.
    #[error("{server} is down: {reason}")]
    Down { server: String, reason: String },
    /// The query failed.
    #[error("{0}")]
    Failed(Failure),
}

impl Error {
    /// The lookup's RETRY. An outage is not logged again (the pool logged
    /// it once); a busy pool, worded by `busy` from the server's name, and
    /// a failed query are logged here, one line each.
    pub(crate) fn into_retry(self, busy: impl FnOnce(&str) -> String) -> crate::dict::DictError {
        let text = match self {
            Error::Down { server, reason } => {
                return crate::dict::DictError::Retry(format!("{server} is down: {reason}"))
            }
            Error::Busy(server) => busy(&server),
            Error::Failed(Failure::Query(text) | Failure::Broken(text) | Failure::Timeout(text)) => text,
        };
        log::warn!("{text}");
        crate::dict::DictError::Retry(text)
    }
}

/// Where the outage lines go (the log, or a test's counter).
pub(crate) type Report = Arc<dyn Fn(log::Level, &str) + Send + Sync>;

/// The pools of one backend in this process, by identity. Also owns the
/// thread that closes idle connections (started with the first pool,
/// stopped when the registry is dropped).
pub(crate) struct Registry<S: Server> {
    shared: Arc<Shared<S>>,
}

/// Pools by identity.
type Pools<S> = HashMap<(S, Settings), Arc<Pool<S>>>;

struct Shared<S: Server> {
    pools: Mutex<Pools<S>>,
    wake: Arc<Wake>,
    report: Report,
    reaper: Mutex<bool>,
}

/// Wakes the reaper: when a pool gets its first idle connection, or the
/// registry goes away.
struct Wake {
    state: Mutex<(u64, bool)>,
    cv: Condvar,
}

impl Wake {
    fn notify(&self, close: bool) {
        let mut st = lock(&self.state);
        st.0 += 1;
        st.1 |= close;
        self.cv.notify_all();
    }
}

impl<S: Server> Default for Registry<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Server> Registry<S> {
    /// A registry whose outage lines go to the log (`warning:` when a
    /// server goes down, `info:` when it is back).
    pub(crate) fn new() -> Self {
        Self::with_report(Arc::new(|level, text| log::log!(level, "{text}")))
    }

    pub(crate) fn with_report(report: Report) -> Self {
        let wake = Arc::new(Wake { state: Mutex::new((0, false)), cv: Condvar::new() });
        Registry {
            shared: Arc::new(Shared { pools: Mutex::new(HashMap::new()), wake, report, reaper: Mutex::new(false) }),
        }
    }

    /// The pool of this server and these settings, made on first use.
    pub(crate) fn pool(&self, server: S, settings: Settings) -> Arc<Pool<S>> {
        let pool = {
            let mut pools = lock(&self.shared.pools);
            let key = (server, settings);
            if let Some(p) = pools.get(&key) {
                return p.clone();
            }
            let pool = Arc::new(Pool::new(&key.0, settings, self.shared.wake.clone(), self.shared.report.clone()));
            pools.insert(key, pool.clone());
            pool
        };
        self.start_reaper();
        pool
    }

    fn start_reaper(&self) {
        let mut started = lock(&self.shared.reaper);
        if *started {
            return;
        }
        let weak = Arc::downgrade(&self.shared);
        let wake = self.shared.wake.clone();
        // Without the thread idle connections are closed only when the pool
        // is used next (see Pool::acquire): worse, not wrong.
        *started = std::thread::Builder::new().name("sql-idle".into()).spawn(move || reap_loop(&weak, &wake)).is_ok();
    }
}

impl<S: Server> Drop for Registry<S> {
    fn drop(&mut self) {
        self.shared.wake.notify(true);
    }
}

/// Close expired idle connections; sleep until the next one expires or a
/// pool gets an idle connection; stop with the registry.
fn reap_loop<S: Server>(shared: &Weak<Shared<S>>, wake: &Wake) {
    loop {
        let epoch = lock(&wake.state).0;
        let next = {
            let Some(shared) = shared.upgrade() else { return };
            let pools: Vec<Arc<Pool<S>>> = lock(&shared.pools).values().cloned().collect();
            let now = Instant::now();
            pools.iter().filter_map(|p| p.close_idle(now)).min()
        };
        let mut st = lock(&wake.state);
        while st.0 == epoch && !st.1 {
            st = match next {
                None => wake.cv.wait(st).unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(at) => {
                    let now = Instant::now();
                    if now >= at {
                        break;
                    }
                    wake.cv.wait_timeout(st, at - now).unwrap_or_else(std::sync::PoisonError::into_inner).0
                }
            };
        }
        if st.1 {
            return;
        }
    }
}

/// The connections to one server.
pub(crate) struct Pool<S: Server> {
    server: S,
    name: String,
    rank: Rank,
    settings: Settings,
    state: Mutex<State<S::Conn>>,
    /// Lookups waiting for a connection, by what they need (see
    /// [`Pool::acquire`]): [0] one free connection, [1] two (their table
    /// holds one already). Two queues so that a freed connection wakes one
    /// lookup that can take it, not every waiting thread.
    freed: [Condvar; 2],
    wake: Arc<Wake>,
    report: Report,
}

struct State<C> {
    /// Most recently used last.
    idle: Vec<Idle<C>>,
    /// Connections that exist or are being opened.
    open: usize,
    /// Raised when a connection is found broken: the connections opened
    /// before are likely broken too (a server restart) and are not reused.
    generation: u64,
    /// No connect attempts before this (the server is marked down).
    down_until: Option<Instant>,
    /// Since when the current outage lasts, once it was reported.
    outage: Option<Instant>,
    last_error: String,
    /// Tables using this pool ([`Hosts`] alive).
    tables: usize,
    /// Lookups waiting on each of [`Pool::freed`].
    waiting: [usize; 2],
}

impl<C> State<C> {
    /// Connections that could be taken now (idle, or not yet opened).
    fn available(&self, max: usize) -> usize {
        max.saturating_sub(self.open) + self.idle.len()
    }
}

/// One table's use of one pool: the connections it holds now. Changed
/// only under the pool's lock.
#[derive(Debug, Default)]
pub(crate) struct Share {
    held: AtomicUsize,
}

impl Share {
    fn held(&self) -> usize {
        self.held.load(Relaxed)
    }

    fn add(&self, n: isize) {
        self.held.store(self.held().wrapping_add_signed(n), Relaxed);
    }
}

struct Idle<C> {
    conn: C,
    since: Instant,
    generation: u64,
}

/// A connection taken from a pool; goes back (or is closed) when dropped.
struct Lease<'a, S: Server> {
    pool: &'a Pool<S>,
    share: &'a Share,
    conn: Option<S::Conn>,
    generation: u64,
    discard: bool,
}

impl<S: Server> Drop for Lease<'_, S> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.release(conn, self.share, self.generation, self.discard);
        }
    }
}

impl<S: Server> Pool<S> {
    fn new(server: &S, settings: Settings, wake: Arc<Wake>, report: Report) -> Self {
        Pool {
            server: server.clone(),
            name: server.name(),
            rank: server.rank(),
            settings,
            state: Mutex::new(State {
                idle: Vec::new(),
                open: 0,
                generation: 0,
                down_until: None,
                outage: None,
                last_error: String::new(),
                tables: 0,
                waiting: [0, 0],
            }),
            freed: [Condvar::new(), Condvar::new()],
            wake,
            report,
        }
    }

    /// The server, as log lines name it.
    #[cfg(test)]
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// [`Pool::run_as`] for a caller that holds no other connection.
    #[cfg(test)]
    pub(crate) fn run<T>(
        &self,
        deadline: Instant,
        query: impl FnMut(&mut S::Conn) -> Result<T, Failure>,
    ) -> Result<T, Error> {
        self.run_as(&Share::default(), deadline, query)
    }

    /// Run `query` on a connection of this pool for the table whose use of
    /// it `share` counts, waiting for a free one until `deadline`. A
    /// connection that broke is replaced and `query` run once more, at once.
    pub(crate) fn run_as<T>(
        &self,
        share: &Share,
        deadline: Instant,
        mut query: impl FnMut(&mut S::Conn) -> Result<T, Failure>,
    ) -> Result<T, Error> {
        let mut lease = self.acquire(share, deadline, false)?;
        let first = match lease.conn.as_mut() {
            Some(conn) => query(conn),
            None => return Err(Error::Busy(self.name.clone())),
        };
        match first {
            Err(Failure::Broken(why)) => {
                lease.discard = true;
                drop(lease);
                self.forget_older_than_now();
                log::debug!("{}: connection lost ({why}); retrying on a new connection", self.name);
                let mut lease = self.acquire(share, deadline, true)?;
                let second = match lease.conn.as_mut() {
                    Some(conn) => query(conn),
                    None => return Err(Error::Busy(self.name.clone())),
                };
                match second {
                    // A new connection broke at once: the server is in trouble.
                    Err(Failure::Broken(why)) => {
                        lease.discard = true;
                        drop(lease);
                        Err(self.mark_down(why))
                    }
                    other => self.settle(lease, other),
                }
            }
            other => self.settle(lease, other),
        }
    }

    fn settle<T>(&self, mut lease: Lease<'_, S>, outcome: Result<T, Failure>) -> Result<T, Error> {
        match outcome {
            Ok(v) => Ok(v),
            Err(f) => {
                lease.discard = !matches!(f, Failure::Query(_));
                Err(Error::Failed(f))
            }
        }
    }

    /// True when the server is marked down and has no idle connection.
    pub(crate) fn is_down(&self, now: Instant) -> bool {
        let st = lock(&self.state);
        st.idle.is_empty() && st.down_until.is_some_and(|t| now < t)
    }

    fn has_idle(&self) -> bool {
        !lock(&self.state).idle.is_empty()
    }

    /// Take an idle connection (not when `fresh`) or open one, waiting
    /// until `deadline` while the pool is full, or while the table already
    /// holds one and taking another would leave none for the other tables.
    fn acquire<'a>(&'a self, share: &'a Share, deadline: Instant, fresh: bool) -> Result<Lease<'a, S>, Error> {
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            // Expired idle connections go first, also without the reaper.
            let expired = self.take_expired(&mut st, now);
            if !expired.is_empty() {
                drop(st);
                drop(expired);
                st = lock(&self.state);
                continue;
            }
            let needs_two = share.held() > 0 && st.tables > 1;
            if needs_two && st.available(self.settings.max_connections) < 2 {
                if now >= deadline {
                    return Err(Error::Busy(self.name.clone()));
                }
                st = self.wait(st, 1, deadline - now);
                continue;
            }
            if !fresh {
                if let Some(mut idle) = st.idle.pop() {
                    share.add(1);
                    drop(st);
                    if !idle.conn.is_broken() {
                        return Ok(Lease {
                            pool: self,
                            share,
                            conn: Some(idle.conn),
                            generation: idle.generation,
                            discard: false,
                        });
                    }
                    // Closed by the server while idle: not an outage.
                    self.release(idle.conn, share, idle.generation, true);
                    st = lock(&self.state);
                    continue;
                }
            }
            if st.open < self.settings.max_connections {
                if st.down_until.is_some_and(|t| now < t) {
                    return Err(Error::Down { server: self.name.clone(), reason: st.last_error.clone() });
                }
                st.open += 1;
                share.add(1);
                let generation = st.generation;
                drop(st);
                return self.open(share, generation);
            }
            if fresh && !st.idle.is_empty() {
                // Full, and a new connection is needed: close the oldest idle one.
                let oldest = st.idle.remove(0);
                st.open -= 1;
                drop(st);
                drop(oldest);
                st = lock(&self.state);
                continue;
            }
            if now >= deadline {
                return Err(Error::Busy(self.name.clone()));
            }
            st = self.wait(st, usize::from(needs_two), deadline - now);
        }
    }

    fn wait<'a>(
        &self,
        mut st: MutexGuard<'a, State<S::Conn>>,
        queue: usize,
        timeout: Duration,
    ) -> MutexGuard<'a, State<S::Conn>> {
        st.waiting[queue] += 1;
        let mut st = self.freed[queue].wait_timeout(st, timeout).unwrap_or_else(std::sync::PoisonError::into_inner).0;
        st.waiting[queue] -= 1;
        st
    }

    /// A connection came free (or a lookup's needs changed): wake one
    /// lookup of each queue that can go on.
    fn wake_waiters(&self, st: &State<S::Conn>) {
        let available = st.available(self.settings.max_connections);
        if st.waiting[0] > 0 && available >= 1 {
            self.freed[0].notify_one();
        }
        if st.waiting[1] > 0 && (available >= 2 || st.tables <= 1) {
            self.freed[1].notify_one();
        }
    }

    /// Open a connection counted in `open` and `share` already.
    fn open<'a>(&'a self, share: &'a Share, generation: u64) -> Result<Lease<'a, S>, Error> {
        match self.server.connect(self.settings.connect_timeout) {
            Ok(conn) => {
                let mut st = lock(&self.state);
                st.down_until = None;
                if let Some(since) = st.outage.take() {
                    let secs = since.elapsed().as_secs();
                    (self.report)(log::Level::Info, &format!("{} is back after {secs} s", self.name));
                }
                Ok(Lease { pool: self, share, conn: Some(conn), generation, discard: false })
            }
            Err(reason) => {
                {
                    let mut st = lock(&self.state);
                    st.open -= 1;
                    share.add(-1);
                    self.wake_waiters(&st);
                }
                Err(self.mark_down(reason))
            }
        }
    }

    /// No connect attempts for `retry_interval`; report the outage if it
    /// is a new one.
    fn mark_down(&self, reason: String) -> Error {
        let mut st = lock(&self.state);
        let now = Instant::now();
        st.down_until = Some(now + self.settings.retry_interval);
        if st.outage.is_none() {
            st.outage = Some(now);
            (self.report)(log::Level::Warn, &format!("{} is down: {reason}", self.name));
        }
        st.last_error.clone_from(&reason);
        Error::Down { server: self.name.clone(), reason }
    }

    fn release(&self, conn: S::Conn, share: &Share, generation: u64, discard: bool) {
        let mut st = lock(&self.state);
        share.add(-1);
        if share.held() == 0 && st.waiting[1] > 0 {
            // the table's waiting lookups may now take the last free one
            self.freed[1].notify_all();
        }
        if discard || generation < st.generation {
            st.open -= 1;
            self.wake_waiters(&st);
            drop(st);
            drop(conn);
            return;
        }
        let first = st.idle.is_empty();
        st.idle.push(Idle { conn, since: Instant::now(), generation });
        self.wake_waiters(&st);
        drop(st);
        if first {
            self.wake.notify(false);
        }
    }

    /// Connections opened before now are not reused (one broke).
    fn forget_older_than_now(&self) {
        let mut st = lock(&self.state);
        st.generation += 1;
        let stale = std::mem::take(&mut st.idle);
        st.open -= stale.len();
        drop(st);
        drop(stale);
    }

    fn take_expired(&self, st: &mut State<S::Conn>, now: Instant) -> Vec<Idle<S::Conn>> {
        let ttl = self.settings.idle_interval;
        // Oldest first: the expired ones are a prefix.
        let n = st.idle.iter().take_while(|i| now.duration_since(i.since) >= ttl).count();
        let expired: Vec<_> = st.idle.drain(..n).collect();
        st.open -= expired.len();
        expired
    }

    /// Close the idle connections that expired; when the next one expires.
    fn close_idle(&self, now: Instant) -> Option<Instant> {
        let mut st = lock(&self.state);
        let expired = self.take_expired(&mut st, now);
        let next = st.idle.first().map(|i| i.since + self.settings.idle_interval);
        drop(st);
        drop(expired);
        next
    }

    /// Connections in use or idle, and idle (for tests).
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let st = lock(&self.state);
        (st.open, st.idle.len())
    }
}

/// The hosts of one table, in failover order, with the table's share of
/// each host's pool.
pub(crate) struct Hosts<S: Server> {
    pools: Vec<(Arc<Pool<S>>, Share)>,
    wait_timeout: Duration,
}

impl<S: Server> Drop for Hosts<S> {
    fn drop(&mut self) {
        for (pool, _) in &self.pools {
            let mut st = lock(&pool.state);
            st.tables -= 1;
            if st.tables <= 1 {
                pool.freed[1].notify_all();
            }
        }
    }
}

impl<S: Server> Hosts<S> {
    /// The pools of `servers` (a table's `hosts`, in its order) from
    /// `registry`.
    pub(crate) fn new(registry: &Registry<S>, servers: Vec<S>, settings: Settings) -> Self {
        let pools = servers
            .into_iter()
            .map(|s| {
                let pool = registry.pool(s, settings);
                lock(&pool.state).tables += 1;
                (pool, Share::default())
            })
            .collect();
        Hosts { pools, wait_timeout: settings.wait_timeout }
    }

    /// Run `query` on the first host that answers, in failover order; a
    /// host that is down is skipped. The error is the last host's.
    pub(crate) fn run<T>(&self, mut query: impl FnMut(&mut S::Conn) -> Result<T, Failure>) -> Result<T, Error> {
        self.run_on(|_, conn| query(conn))
    }

    /// As [`Hosts::run`], telling `query` which server the connection is
    /// to (a table's messages name the host).
    pub(crate) fn run_on<T>(&self, mut query: impl FnMut(&S, &mut S::Conn) -> Result<T, Failure>) -> Result<T, Error> {
        let deadline = Instant::now() + self.wait_timeout;
        let mut last = None;
        for (pool, share) in self.order() {
            match pool.run_as(share, deadline, |conn| query(&pool.server, conn)) {
                Err(e @ (Error::Down { .. } | Error::Busy(_))) => last = Some(e),
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| Error::Down { server: "no host".into(), reason: "no hosts configured".into() }))
    }

    /// Hosts marked down last; before them sockets, then TCP hosts, then
    /// URIs; within each, hosts with idle connections first, then in random
    /// order.
    fn order(&self) -> Vec<&(Arc<Pool<S>>, Share)> {
        let now = Instant::now();
        let random = std::hash::RandomState::new();
        let mut keyed: Vec<_> = self
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| ((p.0.is_down(now), p.0.rank, !p.0.has_idle(), random.hash_one(i)), p))
            .collect();
        keyed.sort_by_key(|(k, _)| *k);
        keyed.into_iter().map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
