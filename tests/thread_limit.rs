//! No thread can be started for a connection (out of memory here; in
//! service, a cgroup's pids limit): the connection that needed one is lost,
//! but the worker must then serve new connections on its event loop instead
//! of closing each of them in turn.
//!
//! A test binary of its own: it lowers this process's address-space limit.

mod common;

use common::*;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use proxymap::config::allowlist::proxy_allowlist;
use proxymap::config::Params;
use proxymap::service::{Role, Service};
use proxymap::worker::{Intake, Limits, Worker};
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::Duration;

fn vm_size() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmSize");
    kib * 1024
}

#[test]
fn when_no_thread_can_start_new_connections_are_served_on_the_loop() {
    let dir = TempDir::new("thread-limit");
    let params =
        Arc::new(Params::from_text("proxy_read_maps = proxy:static:hello\n", "main.cf", &[]).expect("main.cf"));
    let allowlist = proxy_allowlist(&params, false);
    let socket = dir.path().join("proxymap");
    let listener = UnixListener::bind(&socket).expect("bind");
    let limits = Limits { max_use: 0, max_idle: Duration::ZERO, ..Limits::default() };
    let service = Service::new(Role::Reader, params, allowlist);
    // Every connection goes to a thread at once.
    let mut worker =
        Worker::new(service, Intake::Listen(vec![listener]), limits).expect("worker").with_threads(0).expect("threads");
    std::thread::spawn(move || worker.run());

    // One client on a thread of its own, which stays busy with it.
    let mut first = Raw::connect(&socket);
    assert_eq!(first.call(&lookup("static:hello", "k")), found("hello"));

    // No room for another thread's stack (2 MiB) from here on.
    let (soft, hard) = getrlimit(Resource::RLIMIT_AS).expect("getrlimit");
    setrlimit(Resource::RLIMIT_AS, vm_size() + (1 << 20), hard).expect("setrlimit");

    // The next connection needs a thread and gets none: it is closed...
    let mut lost = Raw { stream: std::os::unix::net::UnixStream::connect(&socket).expect("connect") };
    assert!(lost.closed_within(Duration::from_secs(5)), "the connection without a thread is closed");
    // ...but the ones after it are served by the loop.
    let mut served: Vec<Raw> = (0..3).map(|_| Raw::connect(&socket)).collect();
    for c in &mut served {
        assert_eq!(c.call(&lookup("static:hello", "k")), found("hello"));
    }
    assert_eq!(first.call(&lookup("static:hello", "k")), found("hello"), "the threaded client is still served");

    setrlimit(Resource::RLIMIT_AS, soft, hard).expect("restore");
}
