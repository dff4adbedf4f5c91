//! Helpers shared by the integration tests: temporary directories, raw
//! protocol exchanges, and the standalone daemon as a child process.
#![allow(dead_code)]

pub(crate) mod mapdiff;
pub(crate) mod pgsql;
pub(crate) mod postfix;
pub(crate) mod slapd;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../src/test_support.rs"]
mod test_support;
#[allow(unused_imports)] // not every test crate draws random inputs
pub(crate) use test_support::{Rng, TempDir};

/// Encode name/value pairs as one attribute list.
pub(crate) fn list(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out.push(0);
    out
}

/// A raw connection: exact bytes in, exact bytes out.
pub(crate) struct Raw {
    pub stream: UnixStream,
}

impl Raw {
    /// Connect and check the 28-byte announcement.
    pub(crate) fn connect(path: &Path) -> Raw {
        let stream = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut raw = Raw { stream };
        let hello = raw.read_lists(1);
        assert_eq!(hello, b"protocol\0proxymap_protocol\0\0");
        raw
    }

    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Read exactly `n` complete attribute lists and return their bytes.
    pub(crate) fn read_lists(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut done = 0;
        let mut at_name_start = true;
        while done < n {
            let mut b = [0u8; 1];
            match self.stream.read(&mut b) {
                Ok(1) => {}
                Ok(_) => panic!("EOF after {:?}", String::from_utf8_lossy(&out)),
                Err(e) => panic!("read: {e} after {:?}", String::from_utf8_lossy(&out)),
            }
            out.push(b[0]);
            // a NUL at the start of a name ends the list; names and values alternate
            if b[0] == 0 {
                if at_name_start {
                    done += 1;
                    continue;
                }
                // end of a name: skip its value
                loop {
                    self.stream.read_exact(&mut b).expect("read value");
                    out.push(b[0]);
                    if b[0] == 0 {
                        break;
                    }
                }
                at_name_start = true;
            } else {
                at_name_start = false;
            }
        }
        out
    }

    /// Send a request and return the reply bytes.
    pub(crate) fn call(&mut self, pairs: &[(&str, &str)]) -> Vec<u8> {
        self.send(&list(pairs));
        self.read_lists(1)
    }

    /// True when nothing arrives within `wait` (the server stays silent).
    pub(crate) fn silent_for(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        let mut b = [0u8; 1];
        use std::os::fd::AsRawFd;
        let r = nix::sys::socket::recv(self.stream.as_raw_fd(), &mut b, nix::sys::socket::MsgFlags::MSG_PEEK);
        self.stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        matches!(r, Err(nix::errno::Errno::EAGAIN))
    }

    /// True when the server closes the connection within `wait`.
    pub(crate) fn closed_within(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).expect("timeout");
        let mut b = [0u8; 64];
        // A server that closes with our bytes still unread resets the
        // connection (ECONNRESET) rather than ending it: closed all the same.
        match self.stream.read(&mut b) {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }
}

pub(crate) fn lookup<'a>(table: &'a str, key: &'a str) -> [(&'a str, &'a str); 4] {
    [("request", "lookup"), ("table", table), ("flags", "540737"), ("key", key)]
}

/// The reply bytes of a lookup answered with `value`.
pub(crate) fn found(value: &str) -> Vec<u8> {
    list(&[("status", "0"), ("value", value)])
}

/// The worker design under test, as `proxymap_connection_threads` gives
/// it: Some(N), each connection moves to a thread of its own once the
/// worker's event loop has answered N of its requests; None, every request
/// in the event loop. `PROXYMAP_TEST_THREADS` chooses: unset, the default
/// (threads, N = 2); `no`; or N (scripts/test.sh runs the worker's suites
/// in each design).
pub(crate) fn test_threads() -> Option<u32> {
    match std::env::var("PROXYMAP_TEST_THREADS").ok().as_deref() {
        None => Some(proxymap::config::Params::DEFAULT_THREAD_AFTER),
        Some("no") => None,
        Some(v) => Some(v.parse().unwrap_or_else(|_| panic!("PROXYMAP_TEST_THREADS={v}: no, or a number of requests"))),
    }
}

/// The main.cf lines that select the worker design [`test_threads`] asks for
/// (none for the default).
pub(crate) fn worker_main_cf() -> String {
    if std::env::var_os("PROXYMAP_TEST_THREADS").is_none() {
        return String::new();
    }
    match test_threads() {
        Some(n) => format!("proxymap_connection_threads = yes\nproxymap_connection_thread_after = {n}\n"),
        None => "proxymap_connection_threads = no\n".to_string(),
    }
}

/// The standalone daemon, stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Daemon {
    pub child: Child,
    pub dir: TempDir,
    pub config: PathBuf,
}

impl Daemon {
    /// Start `proxymap standalone --config` with this TOML (its `@DIR@` replaced
    /// by the test directory) and this main.cf, and wait for both sockets.
    pub(crate) fn start(tag: &str, toml: &str, main_cf: &str) -> Daemon {
        let daemon = Daemon::spawn(tag, toml, main_cf, &[]);
        daemon.wait_for_socket("proxymap");
        daemon
    }

    /// Start it with these environment variables, without waiting.
    pub(crate) fn spawn(tag: &str, toml: &str, main_cf: &str, env: &[(&str, &std::ffi::OsStr)]) -> Daemon {
        let dir = TempDir::new(tag);
        let d = dir.path().display().to_string();
        // The daemon's own files (statistics, verify verdicts) in the test's
        // directory, not the system's data_directory.
        let own_data =
            if main_cf.contains("data_directory") { String::new() } else { format!("data_directory = {d}\n") };
        dir.write("main.cf", &(main_cf.replace("@DIR@", &d) + "\n" + &own_data + &worker_main_cf()));
        let config = dir.write("proxymap.toml", toml.replace("@DIR@", &d));
        let child = Command::new(env!("CARGO_BIN_EXE_proxymap"))
            .args(["standalone", "--config"])
            .arg(&config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(dir.path().join("daemon.log")).expect("log file")))
            .spawn()
            .expect("start proxymap");
        Daemon { child, dir, config }
    }

    pub(crate) fn socket(&self, service: &str) -> PathBuf {
        self.dir.path().join("private").join(service)
    }

    pub(crate) fn wait_for_socket(&self, service: &str) {
        let path = self.socket(service);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if UnixStream::connect(&path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} never appeared; log:\n{}", path.display(), self.log());
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// PIDs of the master's worker processes.
    pub(crate) fn workers(&self) -> Vec<i32> {
        children_of(self.pid())
    }

    pub(crate) fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid()), sig).expect("signal the daemon");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = kill(Pid::from_raw(self.pid()), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One reply list read byte by byte, or None when the server closed or
/// said nothing within the stream's read timeout (for tests that count
/// lost requests instead of failing on the first).
pub(crate) fn read_list_or_none(s: &mut UnixStream) -> Option<Vec<u8>> {
    let (mut out, mut in_value, mut at_start) = (Vec::new(), false, true);
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(1) => {}
            _ => return None,
        }
        out.push(b[0]);
        if b[0] == 0 {
            if !in_value && at_start {
                return Some(out);
            }
            in_value = !in_value;
            at_start = !in_value;
        } else {
            at_start = false;
        }
    }
}

/// A KiB figure of `/proc/PID/status` (`field` with its colon, e.g.
/// "VmRSS:"), or None when the process is gone.
pub(crate) fn proc_status_kib(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix(field)).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Processes whose parent is `pid`.
pub(crate) fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        let Some(after) = stat.rsplit(") ").next() else { continue };
        let fields: Vec<&str> = after.split_whitespace().collect();
        // fields[0] = state, fields[1] = ppid
        if fields.get(1).and_then(|f| f.parse::<i32>().ok()) == Some(pid) && fields.first() != Some(&"Z") {
            out.push(p);
        }
    }
    out.sort_unstable();
    out
}

/// Poll `cond` until it holds or `secs` pass.
pub(crate) fn wait_until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}
