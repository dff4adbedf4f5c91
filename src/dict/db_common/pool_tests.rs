//! The pool against a fake server: the real one (PostgreSQL) is exercised
//! in `pgsql_tests.rs`.

use super::*;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};

/// The fake server's state, shared with its connections.
#[derive(Default)]
struct Ctl {
    down: AtomicBool,
    /// Connections made before the current epoch are broken (a restart).
    epoch: AtomicU64,
    /// Broken connections say so before use (as an idle libpq connection
    /// that got the server's goodbye); else only a query finds out.
    detectable: AtomicBool,
    live: AtomicUsize,
    most_live: AtomicUsize,
    connects: AtomicUsize,
}

#[derive(Clone)]
struct Fake {
    name: &'static str,
    rank: Rank,
    password: &'static str,
    ctl: Arc<Ctl>,
}

impl PartialEq for Fake {
    fn eq(&self, other: &Self) -> bool {
        (self.name, self.password) == (other.name, other.password)
    }
}
impl Eq for Fake {}
impl Hash for Fake {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        (self.name, self.password).hash(h);
    }
}

struct FakeConn {
    ctl: Arc<Ctl>,
    epoch: u64,
}

impl FakeConn {
    fn query(&mut self) -> Result<u64, Failure> {
        if self.epoch != self.ctl.epoch.load(SeqCst) {
            return Err(Failure::Broken("server closed the connection unexpectedly".into()));
        }
        Ok(self.epoch)
    }
}

impl Connection for FakeConn {
    fn is_broken(&mut self) -> bool {
        self.ctl.detectable.load(SeqCst) && self.epoch != self.ctl.epoch.load(SeqCst)
    }
}

impl Drop for FakeConn {
    fn drop(&mut self) {
        self.ctl.live.fetch_sub(1, SeqCst);
    }
}

impl Server for Fake {
    type Conn = FakeConn;
    fn name(&self) -> String {
        format!("fake server {}", self.name)
    }
    fn rank(&self) -> Rank {
        self.rank
    }
    fn connect(&self, _timeout: Duration) -> Result<FakeConn, String> {
        self.ctl.connects.fetch_add(1, SeqCst);
        if self.ctl.down.load(SeqCst) {
            return Err("Connection refused".into());
        }
        let live = self.ctl.live.fetch_add(1, SeqCst) + 1;
        self.ctl.most_live.fetch_max(live, SeqCst);
        Ok(FakeConn { ctl: self.ctl.clone(), epoch: self.ctl.epoch.load(SeqCst) })
    }
}

fn fake(name: &'static str, rank: Rank) -> Fake {
    Fake { name, rank, password: "secret", ctl: Arc::new(Ctl::default()) }
}

/// A registry whose report lines are kept for the test to read.
type Lines = Arc<Mutex<Vec<(log::Level, String)>>>;

fn registry() -> (Registry<Fake>, Lines) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    let reg = Registry::with_report(Arc::new(move |level, text: &str| lock(&sink).push((level, text.to_string()))));
    (reg, lines)
}

fn quick() -> Settings {
    Settings {
        max_connections: 4,
        idle_interval: Duration::from_secs(60),
        retry_interval: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(1),
        wait_timeout: Duration::from_secs(5),
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[test]
fn equal_identities_share_a_pool_and_passwords_separate_them() {
    let (reg, _) = registry();
    let a = fake("a", Rank::Inet);
    let p1 = reg.pool(a.clone(), quick());
    let p2 = reg.pool(a.clone(), quick());
    assert!(Arc::ptr_eq(&p1, &p2));
    let other = Fake { password: "other", ..a.clone() };
    assert!(!Arc::ptr_eq(&p1, &reg.pool(other, quick())));
    let more = Settings { max_connections: 8, ..quick() };
    assert!(!Arc::ptr_eq(&p1, &reg.pool(a, more)));
    assert!(!p1.name().contains("secret"));
}

#[test]
fn the_cap_holds_under_32_threads() {
    let (reg, _) = registry();
    let server = fake("a", Rank::Inet);
    let pool = reg.pool(server.clone(), quick());
    let busy = Arc::new(AtomicUsize::new(0));
    let most_busy = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for _ in 0..32 {
            s.spawn(|| {
                for _ in 0..20 {
                    let got = pool.run(soon(), |c| {
                        let now = busy.fetch_add(1, SeqCst) + 1;
                        most_busy.fetch_max(now, SeqCst);
                        std::thread::sleep(Duration::from_millis(1));
                        busy.fetch_sub(1, SeqCst);
                        c.query()
                    });
                    assert_eq!(got, Ok(0));
                }
            });
        }
    });
    assert!(server.ctl.most_live.load(SeqCst) <= 4, "{} connections", server.ctl.most_live.load(SeqCst));
    assert_eq!(most_busy.load(SeqCst), 4, "all four connections used at once");
    assert_eq!(server.ctl.connects.load(SeqCst), 4);
    assert_eq!(pool.counts(), (4, 4));
}

#[test]
fn waiting_for_a_free_connection_ends_at_the_deadline() {
    let (reg, _) = registry();
    let pool = reg.pool(fake("a", Rank::Inet), Settings { max_connections: 1, ..quick() });
    let (held, release) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let (started, wait_started) = std::sync::mpsc::channel();
        let pool = &pool;
        s.spawn(move || {
            pool.run(soon(), |c| {
                started.send(()).unwrap();
                release.recv().unwrap();
                c.query()
            })
            .unwrap();
        });
        wait_started.recv().unwrap();
        let start = Instant::now();
        let got = pool.run(start + Duration::from_millis(150), FakeConn::query);
        let took = start.elapsed();
        assert!(matches!(got, Err(Error::Busy(_))), "{got:?}");
        assert!(took >= Duration::from_millis(140) && took < Duration::from_secs(1), "{took:?}");
        held.send(()).unwrap();
    });
    assert_eq!(pool.run(soon(), FakeConn::query), Ok(0));
}

#[test]
fn idle_connections_are_closed_after_the_idle_interval_without_further_lookups() {
    let (reg, _) = registry();
    let server = fake("a", Rank::Inet);
    let pool = reg.pool(server.clone(), Settings { idle_interval: Duration::from_millis(150), ..quick() });
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                pool.run(soon(), |c| {
                    std::thread::sleep(Duration::from_millis(20));
                    c.query()
                })
            });
        }
    });
    assert!(server.ctl.live.load(SeqCst) >= 2);
    std::thread::sleep(Duration::from_millis(50));
    assert!(server.ctl.live.load(SeqCst) >= 2, "closed too early");
    let deadline = Instant::now() + Duration::from_secs(2);
    while server.ctl.live.load(SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(server.ctl.live.load(SeqCst), 0);
    assert_eq!(pool.counts(), (0, 0));
    // and the pool works on
    assert_eq!(pool.run(soon(), FakeConn::query), Ok(0));
}

#[test]
fn a_connection_that_broke_during_the_query_is_replaced_and_the_query_retried_once() {
    let (reg, lines) = registry();
    let server = fake("a", Rank::Inet);
    let pool = reg.pool(server.clone(), quick());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                pool.run(soon(), |c| {
                    std::thread::sleep(Duration::from_millis(20));
                    c.query()
                })
            });
        }
    });
    let before = server.ctl.connects.load(SeqCst);
    server.ctl.epoch.store(1, SeqCst); // restart: every connection is stale
    let mut tries = 0;
    assert_eq!(
        pool.run(soon(), |c| {
            tries += 1;
            c.query()
        }),
        Ok(1)
    );
    assert_eq!(tries, 2);
    assert_eq!(server.ctl.connects.load(SeqCst), before + 1, "one new connection, the stale ones dropped");
    assert_eq!(pool.counts(), (1, 1));
    assert!(lock(&lines).is_empty(), "a lost connection is no outage: {:?}", lock(&lines));
}

#[test]
fn a_connection_broken_while_idle_is_replaced_before_use() {
    let (reg, lines) = registry();
    let server = fake("a", Rank::Inet);
    server.ctl.detectable.store(true, SeqCst);
    let pool = reg.pool(server.clone(), quick());
    assert_eq!(pool.run(soon(), FakeConn::query), Ok(0));
    server.ctl.epoch.store(1, SeqCst);
    let mut tries = 0;
    let got = pool.run(soon(), |c| {
        tries += 1;
        c.query()
    });
    assert_eq!((got, tries), (Ok(1), 1));
    assert!(lock(&lines).is_empty());
}

#[test]
fn query_errors_keep_the_connection_and_timeouts_close_it() {
    let (reg, lines) = registry();
    let server = fake("a", Rank::Inet);
    let pool = reg.pool(server.clone(), quick());
    let got: Result<(), _> = pool.run(soon(), |_| Err(Failure::Query("syntax error".into())));
    assert_eq!(got, Err(Error::Failed(Failure::Query("syntax error".into()))));
    assert_eq!(pool.counts(), (1, 1));
    let got: Result<(), _> = pool.run(soon(), |_| Err(Failure::Timeout("query timed out".into())));
    assert_eq!(got, Err(Error::Failed(Failure::Timeout("query timed out".into()))));
    assert_eq!(pool.counts(), (0, 0));
    assert_eq!(server.ctl.live.load(SeqCst), 0);
    assert_eq!(pool.run(soon(), FakeConn::query), Ok(0));
    assert!(lock(&lines).is_empty(), "{:?}", lock(&lines));
}

#[test]
fn a_server_that_cannot_be_reached_is_down_for_the_retry_interval_and_logged_once() {
    let (reg, lines) = registry();
    let server = fake("a", Rank::Inet);
    let pool = reg.pool(server.clone(), quick());
    server.ctl.down.store(true, SeqCst);
    for _ in 0..10 {
        let got = pool.run(soon(), FakeConn::query);
        assert!(matches!(&got, Err(Error::Down { reason, .. }) if reason == "Connection refused"), "{got:?}");
    }
    assert_eq!(server.ctl.connects.load(SeqCst), 1, "not contacted again while marked down");
    // Past the retry interval it is tried again; still down: no new line.
    std::thread::sleep(Duration::from_millis(250));
    assert!(pool.run(soon(), FakeConn::query).is_err());
    assert_eq!(server.ctl.connects.load(SeqCst), 2);
    server.ctl.down.store(false, SeqCst);
    assert!(pool.run(soon(), FakeConn::query).is_err(), "still marked down");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(pool.run(soon(), FakeConn::query), Ok(0));
    assert_eq!(pool.run(soon(), FakeConn::query), Ok(0));
    let lines = lock(&lines).clone();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], (log::Level::Warn, "fake server a is down: Connection refused".to_string()));
    assert_eq!(lines[1].0, log::Level::Info);
    assert!(lines[1].1.starts_with("fake server a is back after "), "{lines:?}");
    assert!(lines.iter().all(|(_, l)| !l.contains("secret")));
}

#[test]
fn a_second_outage_is_logged_again() {
    let (reg, lines) = registry();
    let server = fake("a", Rank::Inet);
    let pool = reg.pool(server.clone(), Settings { retry_interval: Duration::from_millis(1), ..quick() });
    server.ctl.detectable.store(true, SeqCst);
    for _ in 0..2 {
        // The server goes away: its connections break, new ones fail.
        server.ctl.down.store(true, SeqCst);
        server.ctl.epoch.fetch_add(1, SeqCst);
        assert!(pool.run(soon(), FakeConn::query).is_err());
        std::thread::sleep(Duration::from_millis(5));
        assert!(pool.run(soon(), FakeConn::query).is_err());
        server.ctl.down.store(false, SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        assert!(pool.run(soon(), FakeConn::query).is_ok());
    }
    let levels: Vec<_> = lock(&lines).iter().map(|(l, _)| *l).collect();
    assert_eq!(levels, [log::Level::Warn, log::Level::Info, log::Level::Warn, log::Level::Info]);
}

#[test]
fn hosts_fail_over_sockets_first_then_inet_random_among_equals() {
    let (reg, _) = registry();
    let sock = fake("sock", Rank::Socket);
    let (a, b) = (fake("a", Rank::Inet), fake("b", Rank::Inet));
    let uri = fake("uri", Rank::Uri);
    let servers = vec![uri.clone(), a.clone(), sock.clone(), b.clone()];
    let name = |f: &Fake| f.name;
    let tag = |c: &mut FakeConn| -> Result<usize, Failure> { Ok(Arc::as_ptr(&c.ctl) as usize) };
    let hosts = Hosts::new(&reg, servers, quick());
    assert_eq!(hosts.run(tag), Ok(Arc::as_ptr(&sock.ctl) as usize), "socket first");
    sock.ctl.down.store(true, SeqCst);
    // The socket's idle connection still serves; then it is gone.
    assert_eq!(hosts.run(tag), Ok(Arc::as_ptr(&sock.ctl) as usize));
    sock.ctl.epoch.store(1, SeqCst);
    // Each new Hosts sees no idle TCP connection: random between a and b.
    let mut seen = std::collections::HashSet::new();
    for _ in 0..40 {
        let (reg, _) = registry();
        let hosts = Hosts::new(&reg, vec![uri.clone(), a.clone(), sock.clone(), b.clone()], quick());
        let got = hosts.run(tag).expect("an inet host answers");
        let which = [&a, &b].into_iter().find(|f| Arc::as_ptr(&f.ctl) as usize == got).map(name);
        seen.insert(which.expect("a or b, never the URI"));
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // All TCP hosts down: the URI.
    a.ctl.down.store(true, SeqCst);
    b.ctl.down.store(true, SeqCst);
    let (reg, _) = registry();
    let hosts = Hosts::new(&reg, vec![uri.clone(), a.clone(), sock.clone(), b.clone()], quick());
    assert_eq!(hosts.run(tag), Ok(Arc::as_ptr(&uri.ctl) as usize));
    uri.ctl.down.store(true, SeqCst);
    let (reg, _) = registry();
    let hosts = Hosts::new(&reg, vec![uri, a, sock, b], quick());
    assert!(matches!(hosts.run(tag), Err(Error::Down { .. })));
}

#[test]
fn the_idle_thread_ends_with_its_registry() {
    let (reg, _) = registry();
    let server = fake("a", Rank::Inet);
    let pool = reg.pool(server.clone(), Settings { idle_interval: Duration::from_millis(50), ..quick() });
    assert_eq!(pool.run(soon(), FakeConn::query), Ok(0));
    let weak = Arc::downgrade(&reg.shared);
    drop(reg);
    drop(pool);
    assert!(weak.upgrade().is_none());
}

#[test]
fn a_slow_table_leaves_a_connection_for_the_other_tables() {
    let (reg, _) = registry();
    let server = fake("a", Rank::Inet);
    let slow = Hosts::new(&reg, vec![server.clone()], quick());
    let fast = Hosts::new(&reg, vec![server.clone()], quick());
    let release = AtomicBool::new(false);
    let in_slow = AtomicUsize::new(0);
    std::thread::scope(|s| {
        // eight lookups of the slow table, each holding its connection
        for _ in 0..8 {
            s.spawn(|| {
                slow.run(|c| {
                    in_slow.fetch_add(1, SeqCst);
                    while !release.load(SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    in_slow.fetch_sub(1, SeqCst);
                    c.query()
                })
            });
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(in_slow.load(SeqCst), 3, "the slow table holds all but one");
        // the fast table answers at once, many times, on the one left
        let start = Instant::now();
        for _ in 0..20 {
            assert_eq!(fast.run(FakeConn::query), Ok(0));
        }
        assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
        release.store(true, SeqCst);
    });
    assert!(server.ctl.most_live.load(SeqCst) <= 4);
    // alone on its pool, a table may use every connection
    drop(fast);
    let release = AtomicBool::new(false);
    let busy = AtomicUsize::new(0);
    let most = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                slow.run(|c| {
                    most.fetch_max(busy.fetch_add(1, SeqCst) + 1, SeqCst);
                    while !release.load(SeqCst) {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    busy.fetch_sub(1, SeqCst);
                    c.query()
                })
            });
        }
        std::thread::sleep(Duration::from_millis(200));
        release.store(true, SeqCst);
    });
    assert_eq!(most.load(SeqCst), 4);
}
