//! A memcached of the test's own, for the memcache tests: the unit tests
//! (`dict::net`) and, included by path, tests/postfix_memcache.rs. Uses
//! nothing of the crate.
//!
//! `memcached -U 0` (no UDP) as a child process, listening on 127.0.0.1 at
//! a free port or on a UNIX socket in a temporary directory of its own;
//! run as the `memcache` user when the tests run as root (memcached
//! refuses root). Stopped by its PID when dropped. A system memcached is
//! never touched.
#![allow(dead_code, unreachable_pub)] // each test uses a part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Memcached {
    child: Option<Child>,
    /// The listening socket: a port on 127.0.0.1, or a UNIX socket.
    listen: Listen,
    dir: PathBuf,
}

#[derive(Clone)]
enum Listen {
    Port(u16),
    Socket(PathBuf),
}

const BINARY: &str = "/usr/bin/memcached";

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl Memcached {
    /// A running memcached on 127.0.0.1, or None (after saying why on
    /// stderr) when memcached is not installed.
    pub fn start(tag: &str) -> Option<Memcached> {
        Self::start_on(tag, false)
    }

    /// As [`Memcached::start`], listening on a UNIX socket.
    pub fn start_unix(tag: &str) -> Option<Memcached> {
        Self::start_on(tag, true)
    }

    fn start_on(tag: &str, unix: bool) -> Option<Memcached> {
        if !Path::new(BINARY).exists() {
            eprintln!("skipped: memcached is not installed (scripts/install-test-deps.sh installs it)");
            return None;
        }
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("pm-memcached-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the memcached directory");
        // memcached may run as another user: it creates its socket here
        let _ = std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777));
        let listen = if unix { Listen::Socket(dir.join("memcached.sock")) } else { Listen::Port(free_port()) };
        let mut server = Memcached { child: None, listen, dir };
        server.run();
        Some(server)
    }

    fn run(&mut self) {
        let mut cmd = Command::new(BINARY);
        cmd.args(["-U", "0", "-m", "16", "-c", "256", "-t", "2"]);
        match &self.listen {
            Listen::Port(port) => cmd.args(["-l", "127.0.0.1", "-p", &port.to_string()]),
            Listen::Socket(path) => cmd.arg("-s").arg(path).args(["-a", "0666"]),
        };
        if nix::unistd::geteuid().is_root() {
            cmd.args(["-u", "memcache"]);
        }
        let child = cmd.stdin(Stdio::null()).stdout(Stdio::null()).spawn().expect("start memcached");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.answers() {
            assert!(Instant::now() < deadline, "memcached did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn answers(&self) -> bool {
        match &self.listen {
            Listen::Port(port) => std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok(),
            Listen::Socket(path) => std::os::unix::net::UnixStream::connect(path).is_ok(),
        }
    }

    /// `inet:127.0.0.1:PORT` or `unix:/path`, as a `memcache` parameter.
    pub fn service(&self) -> String {
        match &self.listen {
            Listen::Port(port) => format!("inet:127.0.0.1:{port}"),
            Listen::Socket(path) => format!("unix:{}", path.display()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stop the server (SIGKILL by its PID, as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Listen::Socket(path) = &self.listen {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Start it again where it was (empty, as after any restart).
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// One raw command and its reply (for the tests' checks).
    pub fn raw(&self, request: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        let ends = |b: &[u8]| {
            [&b"END\r\n"[..], b"STORED\r\n", b"DELETED\r\n", b"NOT_FOUND\r\n", b"OK\r\n"].iter().any(|e| b.ends_with(e))
                || b.starts_with(b"ERROR")
                || b.starts_with(b"CLIENT_ERROR")
        };
        let mut talk = |s: &mut dyn ReadWrite| {
            s.write_all(request).expect("write to memcached");
            while !ends(&out) {
                let n = s.read(&mut buf).expect("read from memcached");
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&buf[..n]);
            }
        };
        match &self.listen {
            Listen::Port(port) => talk(&mut std::net::TcpStream::connect(("127.0.0.1", *port)).expect("connect")),
            Listen::Socket(path) => talk(&mut std::os::unix::net::UnixStream::connect(path).expect("connect")),
        }
        out
    }

    /// Store `key` → `value` directly.
    pub fn put(&self, key: &str, value: &str) {
        let reply = self.raw(format!("set {key} 0 0 {}\r\n{value}\r\n", value.len()).as_bytes());
        assert_eq!(reply, b"STORED\r\n", "set {key}");
    }

    /// The value of `key` straight from memcached.
    pub fn value(&self, key: &str) -> Option<String> {
        let reply = String::from_utf8_lossy(&self.raw(format!("get {key}\r\n").as_bytes())).into_owned();
        let (header, rest) = reply.split_once("\r\n")?;
        header.starts_with("VALUE ").then(|| rest.trim_end_matches("\r\nEND\r\n").to_string())
    }
}

trait ReadWrite: std::io::Read + std::io::Write {}
impl<T: std::io::Read + std::io::Write> ReadWrite for T {}

impl Drop for Memcached {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
