//! Out of descriptors: the worker's accept() fails with EMFILE while a client
//! waits in the backlog. The listening socket stays readable, so a loop that
//! only retried would spin a CPU and log an error per turn; the worker must
//! pause instead, then serve the waiting client once descriptors are free.
//!
//! A test binary of its own: it lowers this process's descriptor limit.

mod common;

use common::*;
use nix::sys::resource::{getrlimit, getrusage, setrlimit, Resource, UsageWho};
use proxymap::config::allowlist::proxy_allowlist;
use proxymap::config::Params;
use proxymap::service::{Role, Service};
use proxymap::worker::{Intake, Limits, Worker};
use std::fs::File;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let dir = TempDir::new("fd-limit");
    let params =
        Arc::new(Params::from_text("proxy_read_maps = proxy:static:hello\n", "main.cf", &[]).expect("main.cf"));
    let allowlist = proxy_allowlist(&params, false);
    let socket = dir.path().join("proxymap");
    let listener = UnixListener::bind(&socket).expect("bind");
    let limits = Limits { max_use: 0, max_idle: Duration::ZERO, ..Limits::default() };
    let service = Service::new(Role::Reader, params, allowlist);
    let mut worker = Worker::new(service, Intake::Listen(vec![listener]), limits).expect("worker");
    if let Some(after) = test_threads() {
        worker = worker.with_threads(after).expect("threads");
    }
    std::thread::spawn(move || worker.run());

    // Two clients served before the limit bites.
    let mut served: Vec<Raw> = (0..2).map(|_| Raw::connect(&socket)).collect();
    for c in &mut served {
        assert_eq!(c.call(&lookup("static:hello", "k")), found("hello"));
    }

    // Use up every descriptor but one, then spend that one on a client
    // socket: the worker has none left to accept it with.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, open_fds() + 16, hard).expect("setrlimit");
    let mut filler: Vec<File> = Vec::new();
    while let Ok(f) = File::open("/dev/null") {
        filler.push(f);
    }
    drop(filler.pop());
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
    filler.truncate(filler.len().saturating_sub(8));
    let mut waiting = Raw { stream: waiting };
    assert_eq!(waiting.read_lists(1), b"protocol\0proxymap_protocol\0\0", "the waiting client is served");
    assert_eq!(waiting.call(&lookup("static:hello", "k")), found("hello"));
}
