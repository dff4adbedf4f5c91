//! Out of descriptors: the worker's accept() fails with EMFILE while a client
//! waits in the backlog. The listening socket stays readable, so a loop that
//! only retried would spin a CPU and log an error per turn; the worker must
//! pause instead, then serve the waiting client once descriptors are free.
//!
//! Standalone mode: a connection the master passes (SCM_RIGHTS) arrives
//! without its descriptor when the worker has none free; the worker must
//! tell the master it is over, or the master's count of its connections
//! would stay wrong.
//!
//! A test binary of its own: it lowers this process's descriptor limit (the
//! tests take turns).

mod common;

use common::*;
use nix::sys::resource::{getrlimit, getrusage, setrlimit, Resource, UsageWho};
use proxymap::config::allowlist::proxy_allowlist;
use proxymap::config::Params;
use proxymap::service::{Role, Service};
use proxymap::worker::{Intake, Limits, Worker};
use std::fs::File;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One test at a time changes the limit.
static LIMIT: Mutex<()> = Mutex::new(());

/// Use up every descriptor but `spare` under a lowered limit. The limit
/// comes back when the guard drops.
struct Exhausted {
    filler: Vec<File>,
    soft: u64,
    hard: u64,
}

impl Exhausted {
    fn leaving(spare: usize) -> Exhausted {
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        setrlimit(Resource::RLIMIT_NOFILE, open_fds() + 16, hard).expect("setrlimit");
        let mut filler = Vec::new();
        while let Ok(f) = File::open("/dev/null") {
            filler.push(f);
        }
        filler.truncate(filler.len().saturating_sub(spare));
        Exhausted { filler, soft, hard }
    }

    /// Free `n` descriptors.
    fn free(&mut self, n: usize) {
        self.filler.truncate(self.filler.len().saturating_sub(n));
    }
}

impl Drop for Exhausted {
    fn drop(&mut self) {
        self.filler.clear();
        let _ = setrlimit(Resource::RLIMIT_NOFILE, self.soft, self.hard);
    }
}

fn service() -> Service {
    let params =
        Arc::new(Params::from_text("proxy_read_maps = proxy:static:hello\n", "main.cf", &[]).expect("main.cf"));
    let allowlist = proxy_allowlist(&params, false);
    Service::new(Role::Reader, params, allowlist)
}

fn limits() -> Limits {
    Limits { max_use: 0, max_idle: Duration::ZERO, ..Limits::default() }
}

fn cpu_time() -> Duration {
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let us = |t: nix::sys::time::TimeVal| Duration::from_micros(t.tv_sec() as u64 * 1_000_000 + t.tv_usec() as u64);
    us(u.user_time()) + us(u.system_time())
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count() as u64
}

#[test]
fn out_of_descriptors_the_worker_pauses_accepting_and_then_serves_the_waiting_client() {
    let _turn = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("fd-limit");
    let socket = dir.path().join("proxymap");
    let listener = UnixListener::bind(&socket).expect("bind");
    let mut worker = Worker::new(service(), Intake::Listen(vec![listener]), limits()).expect("worker");
    if let Some(after) = test_threads() {
        worker = worker.with_threads(after).expect("threads");
    }
    std::thread::spawn(move || worker.run());

    // Two clients served before the limit bites.
    let mut served: Vec<Raw> = (0..2).map(|_| Raw::connect(&socket)).collect();
    for c in &mut served {
        assert_eq!(c.call(&lookup("static:hello", "k")), found("hello"));
    }

    // Every descriptor but one used up; that one goes to a client socket:
    // the worker has none left to accept it with.
    let mut exhausted = Exhausted::leaving(1);
    let waiting = UnixStream::connect(&socket).expect("connect into the backlog");
    waiting.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");

    // A second with the worker failing to accept: it must not spin.
    let (cpu0, t0) = (cpu_time(), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
    assert!(cpu < wall / 4, "the worker spun: {cpu:?} of CPU in {wall:?} while accept() failed");

    // The clients it has keep being served meanwhile.
    for c in &mut served {
        assert_eq!(c.call(&lookup("static:hello", "k")), found("hello"));
    }

    // Descriptors free again: the waiting client is accepted and served.
    exhausted.free(8);
    let mut waiting = Raw { stream: waiting };
    assert_eq!(waiting.read_lists(1), b"protocol\0proxymap_protocol\0\0", "the waiting client is served");
    assert_eq!(waiting.call(&lookup("static:hello", "k")), found("hello"));
}

#[test]
fn a_connection_that_arrives_without_its_descriptor_is_reported_done() {
    use proxymap::worker::control;
    use proxymap::worker::control::{self as sys, Received};
    use std::os::fd::{AsRawFd, OwnedFd};
    let _turn = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let (master, ours) = UnixStream::pair().expect("socketpair");
    let worker = Worker::new(service(), Intake::Master(OwnedFd::from(ours)), limits()).expect("worker");
    let mut worker = match test_threads() {
        Some(after) => worker.with_threads(after).expect("threads"),
        None => worker,
    };
    std::thread::spawn(move || worker.run());
    let wait_for = |what: u8| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match sys::recv_msg(&master) {
                Ok(Received::Message(cmd, _)) if cmd == what => return,
                Ok(Received::Message(..)) | Ok(Received::Empty) => {}
                Ok(Received::Eof) => panic!("control channel: EOF"),
                Err(e) => panic!("control channel: {e}"),
            }
            assert!(Instant::now() < deadline, "no {} from the worker", what as char);
            std::thread::sleep(Duration::from_millis(10));
        }
    };

    // A connection passed while the worker has no descriptor to put it in.
    let (client, server_end) = UnixStream::pair().expect("socketpair");
    {
        let _exhausted = Exhausted::leaving(0);
        sys::send_msg(&master, control::CONNECTION, Some(server_end.as_raw_fd()), sys::Send::Wait).expect("pass");
        wait_for(control::DONE);
    }
    drop(server_end); // as the master closes its copy once passed
                      // The client sees its connection closed, not a hang.
    client.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut b = [0u8; 64];
    assert_eq!(std::io::Read::read(&mut &client, &mut b).expect("read"), 0, "closed");

    // With descriptors again, the next connection is served.
    let (client, server_end) = UnixStream::pair().expect("socketpair");
    sys::send_msg(&master, control::CONNECTION, Some(server_end.as_raw_fd()), sys::Send::Wait).expect("pass");
    drop(server_end);
    client.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut c = Raw { stream: client };
    assert_eq!(c.read_lists(1), b"protocol\0proxymap_protocol\0\0");
    assert_eq!(c.call(&lookup("static:hello", "k")), found("hello"));
}

#[test]
fn a_table_that_failed_to_open_for_want_of_descriptors_opens_once_they_are_back() {
    let _turn = LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new("fd-limit-open");
    let socket = dir.path().join("proxymap");
    let table = dir.path().join("users");
    std::fs::write(&table, "alice ok\n").expect("write table");
    let spec = format!("texthash:{}", table.display());
    let params =
        Arc::new(Params::from_text(&format!("proxy_read_maps = proxy:{spec}\n"), "main.cf", &[]).expect("main.cf"));
    let allowlist = proxy_allowlist(&params, false);
    let service = Service::new(Role::Reader, params, allowlist);
    let listener = UnixListener::bind(&socket).expect("bind");
    let mut worker = Worker::new(service, Intake::Listen(vec![listener]), limits()).expect("worker");
    if let Some(after) = test_threads() {
        worker = worker.with_threads(after).expect("threads");
    }
    std::thread::spawn(move || worker.run());
    let mut old = Raw::connect(&socket);

    // No descriptor to open the table with: RETRY.
    let exhausted = Exhausted::leaving(0);
    let reply = old.call(&lookup(&spec, "alice"));
    assert!(reply.starts_with(b"status\x002\0"), "RETRY: {:?}", String::from_utf8_lossy(&reply));
    drop(exhausted);

    // Descriptors back: after a second the table opens, for a new client
    // and for the one that got RETRY.
    std::thread::sleep(Duration::from_millis(1200));
    let mut new = Raw::connect(&socket);
    assert_eq!(new.call(&lookup(&spec, "alice")), found("ok"));
    assert_eq!(old.call(&lookup(&spec, "alice")), found("ok"));
}
