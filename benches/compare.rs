//! `cargo bench --bench compare`: lookups per second and latency of
//! (a) Postfix 3.7's own proxymap, (b) ours under the same Postfix master(8),
//! and (c) a bare echo server written here (the ceiling of this client on this
//! machine), all over UNIX stream sockets. See docs/performance.md.
//!
//! Environment: PM_BENCH_SECS (3), PM_BENCH_REPS (3), PM_BENCH_WARMUP (0.5),
//! PM_BENCH_CONNS (1,4,16,64: persistent rows), PM_BENCH_MODES
//! (persistent,short,miss), PM_BENCH_TABLES (all labels of `TABLES`),
//! PM_BENCH_SERVERS (postfix,ours,echo,echo-loop; `ours-nostats` adds ours with
//! `proxymap_statistics = no`, and a table of ours with statistics on and off),
//! PM_BENCH_ECHO (auto, threads, epoll)
//! and PM_BENCH_ECHO_THREADS (1: event loops of the epoll design).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/env.rs"]
mod env;
#[path = "support/wire.rs"]
mod wire;
use env::{env_list, env_or};
use wire::list_end;

use common::postfix::{Instance, Server, POSTFIX_SBIN};
use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The 28-byte greeting every proxymap connection starts with.
const ANNOUNCE: &[u8] = b"protocol\0proxymap_protocol\0\0";
/// What `postmap -q` sends (FOLD_FIX, LOCK, ...), as in the reference figures.
const FLAGS: &str = "540737";
/// Entries of the generated table and how many keys miss it.
const ENTRIES: usize = 100_000;
const MISSES: usize = 10_000;
/// Concurrent connections of the connect-per-lookup and miss rows.
const SHORT_CONNS: usize = 4;
const MISS_CONNS: usize = 4;
/// Client socket timeout: a server that stops answering is an I/O error, not a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// One table under test. `spec` is what clients send (`@TABLES@` is the
/// instance's table directory); `proxy:` + spec goes into proxy_read_maps.
/// `prep` builds the table from the generated `users` file (and its keys).
struct TableDef {
    label: &'static str,
    spec: &'static str,
    prep: fn(&Instance, &str),
    /// false for tables that answer every key (static): no miss row
    misses: bool,
    /// Hit keys of their own (cidr wants addresses); None: the user keys.
    keys: Option<fn() -> Vec<String>>,
}

/// Add a row here to benchmark another type (our server must support it, or
/// its column shows I/O errors / non-OK replies).
const TABLES: &[TableDef] = &[
    TableDef { label: "hash", spec: "hash:@TABLES@/users", prep: postmap, misses: true, keys: None },
    TableDef { label: "lmdb", spec: "lmdb:@TABLES@/users", prep: postmap, misses: true, keys: None },
    TableDef { label: "cdb", spec: "cdb:@TABLES@/users", prep: postmap, misses: true, keys: None },
    TableDef { label: "texthash", spec: "texthash:@TABLES@/users", prep: no_prep, misses: true, keys: None },
    TableDef { label: "regexp200", spec: "regexp:@TABLES@/rules200", prep: rules200, misses: true, keys: None },
    TableDef { label: "regexp5000", spec: "regexp:@TABLES@/rules5000", prep: rules5000, misses: true, keys: None },
    TableDef { label: "pcre200", spec: "pcre:@TABLES@/rules200", prep: rules200, misses: true, keys: None },
    TableDef { label: "pcre5000", spec: "pcre:@TABLES@/rules5000", prep: rules5000, misses: true, keys: None },
    TableDef { label: "cidr", spec: "cidr:@TABLES@/networks", prep: networks, misses: true, keys: Some(network_keys) },
    TableDef { label: "static", spec: "static:OK", prep: no_prep, misses: false, keys: None },
];

/// 200 rules; rule k matches the user keys whose domain number is k modulo
/// 200, so every key hits and a lookup tries 100 rules on average.
fn rules200(inst: &Instance, _: &str) {
    let rules: String = (0..200)
        .map(|k| {
            let alts: Vec<String> = (0..5).map(|j| format!("{:03}", k + 200 * j)).collect();
            format!("/^user([0-9]+)@d({})\\.example$/ OK rule {k} user $1\n", alts.join("|"))
        })
        .collect();
    std::fs::write(inst.tables.join("rules200"), rules).expect("write rules200");
}

/// 5,000 rules; rule k matches the user numbers ending in k or k+5000.
fn rules5000(inst: &Instance, _: &str) {
    let rules: String = (0..5000)
        .map(|k| format!("/^user[0-9]{{2}}({:04}|{:04})@d[0-9]{{3}}\\.example$/ OK rule {k} $1\n", k, k + 5000))
        .collect();
    std::fs::write(inst.tables.join("rules5000"), rules).expect("write rules5000");
}

/// 100,000 networks: 10.0.0.0/30, 10.0.0.4/30, ... in file order.
fn networks(inst: &Instance, _: &str) {
    let text: String = (0..ENTRIES as u32)
        .map(|i| {
            let a = 0x0A00_0000u32 + i * 4;
            format!("{}.{}.{}.{}/30 OK net {i}\n", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255)
        })
        .collect();
    std::fs::write(inst.tables.join("networks"), text).expect("write networks");
}

/// One address inside each network, shuffled.
fn network_keys() -> Vec<String> {
    let mut keys: Vec<String> = (0..ENTRIES as u32)
        .map(|i| {
            let a = 0x0A00_0000u32 + i * 4 + 1;
            format!("{}.{}.{}.{}", a >> 24, (a >> 16) & 255, (a >> 8) & 255, a & 255)
        })
        .collect();
    shuffle(&mut keys, 0x2545_F491_4F6C_DD1D);
    keys
}

fn no_prep(_: &Instance, _: &str) {}

/// `postmap TYPE:FILE` for indexed types (hash, btree, lmdb, cdb).
fn postmap(inst: &Instance, spec: &str) {
    let out = inst.postmap(&[spec]);
    assert!(out.status.success(), "postmap {spec}: {}", String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------------------
// settings

struct Settings {
    secs: f64,
    reps: usize,
    warmup: f64,
    conns: Vec<usize>,
    modes: Vec<String>,
    tables: Vec<String>,
    servers: Vec<String>,
    echo: String,
    echo_threads: usize,
    /// `shared`: master(8) and the echo servers run in the bench's session;
    /// `separate`: each in a session of its own (PM_BENCH_SESSIONS).
    sessions: String,
    /// `process`: each echo server is a child process of the bench (a
    /// server of its own, as ours and Postfix's are); `thread`: threads of
    /// the bench itself (PM_BENCH_ECHO_IN).
    echo_in: String,
    /// Measure one process's memory with every table open (PM_BENCH_MEMORY, 1).
    memory: bool,
    /// Keys looked up per table before measuring (PM_BENCH_MEMORY_KEYS).
    memory_keys: usize,
}

impl Settings {
    fn from_env() -> Settings {
        let all: Vec<&str> = TABLES.iter().map(|t| t.label).collect();
        let s = Settings {
            secs: env_or("PM_BENCH_SECS", 3.0),
            reps: env_or("PM_BENCH_REPS", 3),
            warmup: env_or("PM_BENCH_WARMUP", 0.5),
            conns: env_list("PM_BENCH_CONNS", "1,4,16,64")
                .iter()
                .map(|c| c.parse().unwrap_or_else(|_| panic!("PM_BENCH_CONNS: {c:?} is not a number")))
                .collect(),
            modes: env_list("PM_BENCH_MODES", "persistent,short,miss"),
            tables: env_list("PM_BENCH_TABLES", &all.join(",")),
            servers: env_list("PM_BENCH_SERVERS", "postfix,ours,echo,echo-loop"),
            echo: env_or("PM_BENCH_ECHO", "auto".to_string()),
            echo_threads: env_or("PM_BENCH_ECHO_THREADS", 1),
            sessions: env_or("PM_BENCH_SESSIONS", "shared".to_string()),
            echo_in: env_or("PM_BENCH_ECHO_IN", "process".to_string()),
            memory: env_or("PM_BENCH_MEMORY", 1) != 0,
            memory_keys: env_or("PM_BENCH_MEMORY_KEYS", 20_000),
        };
        assert!(["auto", "epoll", "threads"].contains(&s.echo.as_str()), "PM_BENCH_ECHO: auto, epoll or threads");
        assert!(["shared", "separate"].contains(&s.sessions.as_str()), "PM_BENCH_SESSIONS: shared or separate");
        assert!(["process", "thread"].contains(&s.echo_in.as_str()), "PM_BENCH_ECHO_IN: process or thread");
        assert!(
            s.sessions == "shared" || s.echo_in == "process",
            "PM_BENCH_SESSIONS=separate needs PM_BENCH_ECHO_IN=process"
        );
        for t in &s.tables {
            assert!(all.contains(&t.as_str()), "PM_BENCH_TABLES: unknown table {t:?} (have {all:?})");
        }
        for t in &s.servers {
            assert!(
                ["postfix", "ours", "echo", "echo-loop", "ours-nostats"].contains(&t.as_str()),
                "PM_BENCH_SERVERS: unknown server {t:?}"
            );
        }
        for m in &s.modes {
            assert!(["persistent", "short", "miss"].contains(&m.as_str()), "PM_BENCH_MODES: unknown mode {m:?}");
        }
        assert!(s.secs > 0.0 && s.reps > 0 && s.conns.iter().all(|&c| c > 0), "need SECS > 0, REPS > 0, CONNS > 0");
        s
    }
}

// ---------------------------------------------------------------------------
// generated data

/// Deterministic shuffle (xorshift64*), so every run sends the same order.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let r = seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
        v.swap(i, (r % (i as u64 + 1)) as usize);
    }
}

fn user_key(i: usize) -> String {
    format!("user{i:06}@d{:03}.example", i % 1000)
}

/// Writes `users` (the texthash source) and returns (hits shuffled, misses).
/// Miss keys use numbers past the table, so every table type misses them.
fn write_data(dir: &Path) -> (Vec<String>, Vec<String>) {
    let mut table = String::with_capacity(ENTRIES * 40);
    for i in 0..ENTRIES {
        table.push_str(&format!("{}\tOK value {i}\n", user_key(i)));
    }
    std::fs::write(dir.join("users"), table).expect("write users table");
    let mut hits: Vec<String> = (0..ENTRIES).map(user_key).collect();
    shuffle(&mut hits, 0x9E37_79B9_7F4A_7C15);
    let mut misses: Vec<String> = (ENTRIES..ENTRIES + MISSES).map(user_key).collect();
    shuffle(&mut misses, 0xD1B5_4A32_D192_ED03);
    // key files next to the table, for looking at or replaying by hand
    std::fs::write(dir.join("hits.keys"), hits.join("\n") + "\n").expect("write hits.keys");
    std::fs::write(dir.join("misses.keys"), misses.join("\n") + "\n").expect("write misses.keys");
    (hits, misses)
}

/// All lookup requests of a run, encoded once, back to back, so the client
/// does no formatting or allocation while it measures.
struct Requests {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Requests {
    fn new(table: &str, keys: &[String]) -> Requests {
        let mut bytes = Vec::with_capacity(keys.len() * (table.len() + 64));
        let mut ends = Vec::with_capacity(keys.len());
        for key in keys {
            bytes.extend_from_slice(&common::list(&[
                ("request", "lookup"),
                ("table", table),
                ("flags", FLAGS),
                ("key", key),
            ]));
            ends.push(bytes.len());
        }
        Requests { bytes, ends }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }
}

// ---------------------------------------------------------------------------
// load generator: a thread per connection, blocking I/O, preallocated buffers

/// Read one attribute list into `buf`; returns its length. Without
/// pipelining nothing follows a reply, so the buffer starts empty each time.
fn read_list(s: &mut UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    loop {
        let n = s.read(&mut buf[len..])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "server closed the connection"));
        }
        len += n;
        if let Some(end) = list_end(&buf[..len]) {
            return Ok(end);
        }
        if len == buf.len() {
            return Err(io::Error::other("reply longer than the receive buffer"));
        }
    }
}

fn connect(socket: &Path, buf: &mut [u8]) -> io::Result<UnixStream> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    let n = read_list(&mut s, buf)?;
    if &buf[..n] != ANNOUNCE {
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected announcement {got:?}")));
    }
    Ok(s)
}

/// Connect and send the `open` a Postfix client sends before its lookups.
fn open_session(socket: &Path, open: &[u8], buf: &mut [u8]) -> io::Result<UnixStream> {
    let mut s = connect(socket, buf)?;
    s.write_all(open)?;
    let n = read_list(&mut s, buf)?;
    if !buf[..n].starts_with(b"status\x000\0") {
        let got = String::from_utf8_lossy(&buf[..n]).into_owned();
        return Err(io::Error::other(format!("open refused: {got:?}")));
    }
    Ok(s)
}

/// One lookup on an open connection; true for status 0 (OK).
fn lookup(s: &mut UnixStream, req: &[u8], buf: &mut [u8]) -> io::Result<bool> {
    s.write_all(req)?;
    let n = read_list(s, buf)?;
    Ok(buf[..n].starts_with(b"status\x000\0"))
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Persistent,
    Short,
    Miss,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::Persistent => "persistent",
            Mode::Short => "connect-per-lookup",
            Mode::Miss => "persistent, misses",
        }
    }
}

struct Shared {
    start: Barrier,
    recording: AtomicBool,
    stop: AtomicBool,
}

#[derive(Default)]
struct ClientOut {
    lat_ns: Vec<u32>,
    non_ok: u64,
    io_errors: u64,
    first_error: Option<String>,
}

impl ClientOut {
    fn error(&mut self, e: io::Error) {
        self.io_errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }
}

struct Job<'a> {
    socket: &'a Path,
    open: &'a [u8],
    reqs: &'a Requests,
    conns: usize,
    short: bool,
}

fn client(id: usize, job: &Job, shared: &Shared, capacity: usize) -> ClientOut {
    let mut out = ClientOut { lat_ns: Vec::with_capacity(capacity), ..Default::default() };
    let mut buf = vec![0u8; 4096];
    // Persistent: this is the connection. Short: only proves the table opens
    // (untimed), then every lookup gets a fresh connection without `open`.
    let mut conn = match open_session(job.socket, job.open, &mut buf) {
        Ok(s) if !job.short => Some(s),
        Ok(_) => None,
        Err(e) => {
            out.error(e);
            None
        }
    };
    let n = job.reqs.len();
    let mut i = id * n / job.conns; // connections start spread over the keys
    shared.start.wait();
    while !shared.stop.load(Relaxed) {
        let recording = shared.recording.load(Relaxed);
        let req = job.reqs.get(i % n);
        i += 1;
        let t0 = Instant::now();
        let result = if job.short {
            connect(job.socket, &mut buf).and_then(|mut s| lookup(&mut s, req, &mut buf))
        } else if let Some(s) = conn.as_mut() {
            lookup(s, req, &mut buf)
        } else {
            // reconnect after an error; not a lookup
            match open_session(job.socket, job.open, &mut buf) {
                Ok(s) => {
                    conn = Some(s);
                    continue;
                }
                Err(e) => Err(e),
            }
        };
        match result {
            Ok(ok) => {
                if recording {
                    out.lat_ns.push(t0.elapsed().as_nanos().min(u32::MAX as u128) as u32);
                }
                out.non_ok += u64::from(!ok);
            }
            Err(e) => {
                out.error(e);
                conn = None;
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    out
}

struct RunResult {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    non_ok: u64,
    io_errors: u64,
    first_error: Option<String>,
}

/// Connect every client (untimed), run `warmup` unrecorded, call `check`,
/// then record for `secs`. Non-OK replies and I/O errors count over the
/// whole run, warm-up included.
fn run_load(job: &Job, warmup: f64, secs: f64, check: impl FnOnce()) -> RunResult {
    let shared =
        Shared { start: Barrier::new(job.conns + 1), recording: AtomicBool::new(false), stop: AtomicBool::new(false) };
    // room for 300k lookups/s in total without growing while recording
    let capacity = (secs * 300_000.0 / job.conns as f64) as usize + 1024;
    let (outs, elapsed) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..job.conns)
            .map(|id| {
                let shared = &shared;
                scope.spawn(move || client(id, job, shared, capacity))
            })
            .collect();
        shared.start.wait();
        std::thread::sleep(Duration::from_secs_f64(warmup));
        check();
        let t0 = Instant::now();
        shared.recording.store(true, Relaxed);
        std::thread::sleep(Duration::from_secs_f64(secs));
        shared.stop.store(true, Relaxed);
        let elapsed = t0.elapsed().as_secs_f64();
        let outs: Vec<ClientOut> = handles.into_iter().map(|h| h.join().expect("client thread panicked")).collect();
        (outs, elapsed)
    });
    let mut lat: Vec<u32> = Vec::with_capacity(outs.iter().map(|o| o.lat_ns.len()).sum());
    for o in &outs {
        lat.extend_from_slice(&o.lat_ns);
    }
    lat.sort_unstable();
    let pct = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let idx = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        f64::from(lat[idx]) / 1000.0
    };
    RunResult {
        rate: lat.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        non_ok: outs.iter().map(|o| o.non_ok).sum(),
        io_errors: outs.iter().map(|o| o.io_errors).sum(),
        first_error: outs.into_iter().find_map(|o| o.first_error),
    }
}

// ---------------------------------------------------------------------------
// echo server: the ceiling. It answers without looking anything up, so its
// column is what this client and kernel allow on this machine. Two designs
// (PM_BENCH_ECHO): `threads` (a blocking thread per connection) and `epoll`
// (PM_BENCH_ECHO_THREADS event loops, default 1, share the listener). The
// default `auto` takes the one that was faster in trial runs here: threads
// for persistent rows (a request costs one read and one write, no
// epoll_wait), epoll for connect-per-lookup (no hand-off of each new
// connection to a sleeping thread).

/// What the echo server answers: `open` requests get `open`, everything else
/// `lookup` (both Postfix's real reply bytes, so sizes match).
#[derive(Clone)]
struct EchoReplies {
    open: Vec<u8>,
    lookup: Vec<u8>,
}

const OPEN_PREFIX: &[u8] = b"request\0open\0";

struct Echo {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    blocking_accept: bool,
    pool: Arc<Pool>,
}

impl Echo {
    fn start(path: PathBuf, replies: EchoReplies, design: &str, loops: usize) -> io::Result<Echo> {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let blocking_accept = design == "threads";
        let pool = Arc::new(Pool::default());
        if blocking_accept {
            spawn_acceptor(&Arc::new(listener), &Arc::new(replies), &stop, &pool);
        } else {
            listener.set_nonblocking(true)?;
            for _ in 0..loops.max(1) {
                let (flag, replies, listener) = (Arc::clone(&stop), replies.clone(), listener.try_clone()?);
                threads.push(std::thread::Builder::new().name("echo-loop".into()).spawn(move || {
                    if let Err(e) = echo_loop(&listener, &replies, &flag) {
                        eprintln!("echo server: {e}");
                    }
                })?);
            }
        }
        Ok(Echo { path, stop, threads, blocking_accept, pool })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if self.blocking_accept {
            // each connection wakes one thread blocked in accept(), which sees
            // the flag and ends; the client has closed its connections by now
            let deadline = Instant::now() + Duration::from_secs(5);
            while self.pool.live.load(SeqCst) > 0 && Instant::now() < deadline {
                let _ = UnixStream::connect(&self.path);
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An echo server in a child process of its own, in a session of its own
/// (`setsid`), for PM_BENCH_SESSIONS=separate: there master(8) runs
/// daemonized, in its own session, and so every server is in a session
/// other than the client's. Linux groups processes by session for CPU time
/// (autogroup), and a server in the client's session was measured up to
/// 1.6x faster than the same server in another, so all servers must be
/// placed alike. (The default, `shared`, keeps everything in the bench's
/// session, as Postfix's clients and proxymap share master's.)
struct EchoProcess {
    path: PathBuf,
    child: std::process::Child,
}

/// The child's side: `PM_BENCH_ECHO_CHILD` is
/// `design,loops,open-reply-hex,lookup-reply-hex,socket-path`.
const ECHO_CHILD: &str = "PM_BENCH_ECHO_CHILD";

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

impl EchoProcess {
    /// `own_session`: started through `setsid`.
    fn start(
        path: PathBuf,
        replies: &EchoReplies,
        design: &str,
        loops: usize,
        own_session: bool,
    ) -> io::Result<EchoProcess> {
        use std::io::BufRead;
        let spec = format!("{design},{loops},{},{},{}", hex(&replies.open), hex(&replies.lookup), path.display());
        let exe = std::env::current_exe()?;
        let mut cmd = match own_session {
            true => {
                let mut c = std::process::Command::new("setsid");
                c.arg(exe);
                c
            }
            false => std::process::Command::new(exe),
        };
        let mut child = cmd
            .arg("--bench")
            .env(ECHO_CHILD, spec)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut ready = String::new();
        let stdout = child.stdout.take().ok_or_else(|| io::Error::other("echo child: no stdout"))?;
        io::BufReader::new(stdout).read_line(&mut ready)?;
        if ready.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!("echo child did not start: {ready:?}")));
        }
        Ok(EchoProcess { path, child })
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        // EOF on its stdin ends the child; it is ours, so kill it if it lingers.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Run as the echo child: serve until stdin closes.
fn echo_child_main(spec: &str) {
    let mut parts = spec.splitn(5, ',');
    let mut next = || parts.next().expect("PM_BENCH_ECHO_CHILD: design,loops,open,lookup,path");
    let (design, loops) = (next().to_string(), next().parse().expect("loops"));
    let replies = EchoReplies { open: unhex(next()), lookup: unhex(next()) };
    let path = PathBuf::from(next());
    let echo = Echo::start(path, replies, &design, loops).expect("start the echo server");
    println!("ready");
    let _ = io::stdout().flush();
    let _ = io::copy(&mut io::stdin(), &mut io::sink());
    drop(echo);
}

/// Either kind of echo server, as PM_BENCH_SESSIONS and PM_BENCH_ECHO_IN say.
enum EchoServer {
    Own(EchoProcess),
    Client(Echo),
}

impl EchoServer {
    fn start(cfg: &Settings, path: PathBuf, replies: EchoReplies, design: &str, loops: usize) -> io::Result<Self> {
        if cfg.echo_in == "thread" {
            Echo::start(path, replies, design, loops).map(EchoServer::Client)
        } else {
            EchoProcess::start(path, &replies, design, loops, cfg.sessions == "separate").map(EchoServer::Own)
        }
    }

    fn path(&self) -> &Path {
        match self {
            EchoServer::Own(p) => &p.path,
            EchoServer::Client(e) => &e.path,
        }
    }
}

// where the request parser is: at a name's first byte, inside a name, inside a value
const AT_NAME: u8 = 0;
const IN_NAME: u8 = 1;
const IN_VALUE: u8 = 2;

/// `PM_BENCH_ECHO_WORK_NS`: CPU time (busy-waiting) the echo servers spend
/// per reply, to see how each echo design copes with work of a table's size.
fn echo_work() {
    static NS: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let ns = *NS.get_or_init(|| env_or("PM_BENCH_ECHO_WORK_NS", 0u128));
    if ns > 0 {
        let t = Instant::now();
        while t.elapsed().as_nanos() < ns {
            std::hint::spin_loop();
        }
    }
}

/// Per-connection request parser: finds where each request list ends and
/// whether it is an `open` (decided from the bytes of the read in which the
/// list starts; our client always sends a request in one write).
struct Parser {
    state: u8,
    is_open: bool,
}

impl Parser {
    fn new() -> Parser {
        Parser { state: AT_NAME, is_open: false }
    }

    /// Append the reply for every request that ends in `data` to `out`.
    fn feed(&mut self, data: &[u8], replies: &EchoReplies, out: &mut Vec<u8>) {
        let mut list_start = true; // a fresh list may start at data[0]
        for (i, &c) in data.iter().enumerate() {
            if list_start && self.state == AT_NAME {
                self.is_open = data[i..].starts_with(OPEN_PREFIX);
            }
            list_start = false;
            self.state = match (self.state, c) {
                (AT_NAME, 0) => {
                    echo_work();
                    out.extend_from_slice(if self.is_open { &replies.open } else { &replies.lookup });
                    list_start = true;
                    AT_NAME
                }
                (AT_NAME, _) => IN_NAME,
                (IN_NAME, 0) => IN_VALUE,
                (IN_VALUE, 0) => AT_NAME,
                (s, _) => s,
            };
        }
    }
}

/// `threads` design: every thread blocks in accept() (the kernel wakes one),
/// serves its connection to EOF, and accepts again; a thread that takes the
/// last idle spot starts another. So there is a thread per concurrent
/// connection, and connect-per-lookup does not pay a thread start per lookup.
fn echo_acceptor(listener: Arc<UnixListener>, replies: Arc<EchoReplies>, stop: Arc<AtomicBool>, pool: Arc<Pool>) {
    loop {
        pool.idle.fetch_add(1, SeqCst);
        let accepted = listener.accept();
        let idle = pool.idle.fetch_sub(1, SeqCst) - 1;
        if stop.load(SeqCst) {
            break;
        }
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                eprintln!("echo server: accept: {e}");
                break;
            }
        };
        if idle == 0 {
            spawn_acceptor(&listener, &replies, &stop, &pool);
        }
        let _ = echo_blocking(stream, &replies);
    }
    pool.live.fetch_sub(1, SeqCst);
}

#[derive(Default)]
struct Pool {
    idle: AtomicUsize,
    live: AtomicUsize,
}

fn spawn_acceptor(listener: &Arc<UnixListener>, replies: &Arc<EchoReplies>, stop: &Arc<AtomicBool>, pool: &Arc<Pool>) {
    let (l, r, s, p) = (Arc::clone(listener), Arc::clone(replies), Arc::clone(stop), Arc::clone(pool));
    pool.live.fetch_add(1, SeqCst);
    if let Err(e) = std::thread::Builder::new().name("echo-conn".into()).spawn(move || echo_acceptor(l, r, s, p)) {
        pool.live.fetch_sub(1, SeqCst);
        eprintln!("echo server: spawn: {e}");
    }
}

fn echo_blocking(mut s: UnixStream, replies: &EchoReplies) -> io::Result<()> {
    let mut parser = Parser::new();
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::with_capacity(4096);
    s.write_all(ANNOUNCE)?;
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        out.clear();
        parser.feed(&buf[..n], replies, &mut out);
        if !out.is_empty() {
            s.write_all(&out)?;
        }
    }
}

const LISTENER: u64 = u64::MAX;

struct EchoConn {
    stream: UnixStream,
    parser: Parser,
    out: Vec<u8>,
    want_out: bool,
}

/// Write what is pending; Ok(false) when the peer is gone.
fn echo_flush(ep: &Epoll, c: &mut EchoConn, token: u64) -> io::Result<bool> {
    if !c.out.is_empty() {
        match c.stream.write(&c.out) {
            Ok(n) => {
                c.out.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return Ok(false),
        }
    }
    // ask for EPOLLOUT only while a reply is stuck (it never is with small replies)
    let want = !c.out.is_empty();
    if want != c.want_out {
        let flags = if want { EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT } else { EpollFlags::EPOLLIN };
        ep.modify(&c.stream, &mut EpollEvent::new(flags, token))?;
        c.want_out = want;
    }
    Ok(true)
}

/// `epoll` design: one event loop; several of them share the listener
/// (EPOLLEXCLUSIVE: one loop wakes per new connection).
fn echo_loop(listener: &UnixListener, replies: &EchoReplies, stop: &AtomicBool) -> io::Result<()> {
    let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    ep.add(listener, EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLEXCLUSIVE, LISTENER))?;
    let mut conns: Vec<Option<EchoConn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = vec![EpollEvent::empty(); 256];
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Relaxed) {
        // the timeout only bounds how long Drop waits for the stop flag
        let n = match ep.wait(&mut events, 100u16) {
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for ev in &events[..n] {
            let token = ev.data();
            if token == LISTENER {
                loop {
                    let stream = match listener.accept() {
                        Ok((s, _)) => s,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    };
                    stream.set_nonblocking(true)?;
                    let idx = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    ep.add(&stream, EpollEvent::new(EpollFlags::EPOLLIN, idx as u64))?;
                    let mut out = Vec::with_capacity(4096);
                    out.extend_from_slice(ANNOUNCE);
                    let mut c = EchoConn { stream, parser: Parser::new(), out, want_out: false };
                    if echo_flush(&ep, &mut c, idx as u64)? {
                        conns[idx] = Some(c);
                    } else {
                        let _ = ep.delete(&c.stream);
                        free.push(idx);
                    }
                }
                continue;
            }
            let idx = token as usize;
            let Some(c) = conns[idx].as_mut() else { continue };
            let mut alive = true;
            if ev.events().intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
                match c.stream.read(&mut buf) {
                    Ok(0) => alive = false,
                    Ok(n) => c.parser.feed(&buf[..n], replies, &mut c.out),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => alive = false,
                }
            }
            if alive {
                alive = echo_flush(&ep, c, token)?;
            }
            if !alive {
                let _ = ep.delete(&c.stream);
                conns[idx] = None;
                free.push(idx);
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// the matrix

#[derive(Clone, Copy, PartialEq, Debug)]
enum Target {
    Postfix,
    Ours,
    Echo,
    /// The echo server as one epoll loop: the architecture of a worker.
    EchoLoop,
    /// Ours with `proxymap_statistics = no`.
    OursNoStats,
}

/// The columns of the main table.
const TARGETS: [Target; 4] = [Target::Postfix, Target::Ours, Target::Echo, Target::EchoLoop];
/// In the order runs rotate through.
const ALL_TARGETS: [Target; 5] = [Target::Postfix, Target::Ours, Target::Echo, Target::EchoLoop, Target::OursNoStats];

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Postfix => "postfix",
            Target::Ours => "ours",
            Target::Echo => "echo",
            Target::EchoLoop => "echo-loop",
            Target::OursNoStats => "ours-nostats",
        }
    }
}

struct Cell {
    table: &'static TableDef,
    conns: usize,
    mode: Mode,
    runs: [Vec<RunResult>; 5],
}

/// Paths of the proxymap processes under the instance's master(8).
fn proxymap_exes(inst: &Instance) -> Vec<PathBuf> {
    let Some(master) = inst.master_pid() else { return Vec::new() };
    common::children_of(master)
        .into_iter()
        .filter_map(|p| std::fs::read_link(format!("/proc/{p}/exe")).ok())
        .filter(|exe| exe.file_name().is_some_and(|n| n == "proxymap"))
        .collect()
}

fn loadavg() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() {
    if let Ok(spec) = std::env::var(ECHO_CHILD) {
        return echo_child_main(&spec);
    }
    // `cargo test --benches` runs this without --bench: stay quick there.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("compare: skipped (run `cargo bench --bench compare`)");
        return;
    }
    let cfg = Settings::from_env();
    // other work on these two cores skews every column: record it with the table
    let load_before = loadavg();
    let tables: Vec<&'static TableDef> = TABLES.iter().filter(|t| cfg.tables.iter().any(|l| l == t.label)).collect();
    let read_maps: Vec<String> = tables.iter().map(|t| format!("proxy:{}", t.spec)).collect();
    let mut main_cf = format!("proxy_read_maps = {}\n", read_maps.join(" "));
    // e.g. PM_BENCH_MAIN_CF='proxymap_connection_threads = no'
    if let Ok(extra) = std::env::var("PM_BENCH_MAIN_CF") {
        main_cf.push_str(&extra);
        main_cf.push('\n');
    }
    let mut inst = Instance::new("bench", &main_cf, Server::Postfix);
    // Ours counts statistics unless a run of `ours-nostats` turned them off.
    let mut stats_on = true;
    let (hits, misses) = write_data(&inst.tables);
    let table_dir = inst.tables.display().to_string();
    let table_name = |t: &TableDef| t.spec.replace("@TABLES@", &table_dir);
    for t in &tables {
        (t.prep)(&inst, &table_name(t));
    }
    if cfg.sessions == "shared" {
        inst.start_attached();
    } else {
        inst.start();
    }
    let ours_exe = std::fs::canonicalize(common::postfix::ours_binary()).expect("our proxymap binary");
    let postfix_exe = std::fs::canonicalize(Path::new(POSTFIX_SBIN).join("proxymap")).expect("Postfix's proxymap");

    let mut cells: Vec<Cell> = Vec::new();
    for &table in &tables {
        let mut add = |conns, mode| cells.push(Cell { table, conns, mode, runs: Default::default() });
        if cfg.modes.iter().any(|m| m == "persistent") {
            for &c in &cfg.conns {
                add(c, Mode::Persistent);
            }
        }
        if cfg.modes.iter().any(|m| m == "short") {
            add(SHORT_CONNS, Mode::Short);
        }
        if table.misses && cfg.modes.iter().any(|m| m == "miss") {
            add(MISS_CONNS, Mode::Miss);
        }
    }

    // Postfix's real replies to the first key of each key set, taken before
    // switching: the echo server answers with bytes of exactly that size.
    let sample = |table: &str, key: &str| -> Vec<u8> {
        let mut raw = common::Raw::connect(&inst.socket("proxymap"));
        raw.call(&common::lookup(table, key))
    };
    let mut samples = Vec::new();
    let own_keys: Vec<(&str, Vec<String>)> = tables.iter().filter_map(|t| t.keys.map(|k| (t.label, k()))).collect();
    let hits_of = |t: &TableDef| own_keys.iter().find(|(l, _)| *l == t.label).map_or(&hits, |(_, k)| k);
    for t in &tables {
        let name = table_name(t);
        let first = &hits_of(t)[0];
        let hit = sample(&name, first);
        assert!(
            hit.starts_with(b"status\x000\0"),
            "{}: Postfix does not find {}: {:?}",
            t.label,
            first,
            String::from_utf8_lossy(&hit)
        );
        let mut raw = common::Raw::connect(&inst.socket("proxymap"));
        let open = raw.call(&[("request", "open"), ("table", &name), ("flags", FLAGS)]);
        assert!(
            open.starts_with(b"status\x000\0"),
            "{}: Postfix refuses to open it: {:?}",
            t.label,
            String::from_utf8_lossy(&open)
        );
        samples.push((t.label, open, hit, sample(&name, &misses[0])));
    }

    let mut warnings: Vec<String> = Vec::new();
    let echo_path = inst.dir.path().join("echo.sock");
    let echo_loop_path = inst.dir.path().join("echo-loop.sock");
    let total = cells.len() * cfg.reps * cfg.servers.len();
    let mut done = 0;
    eprintln!(
        "compare: {} cells x {} reps x {} servers, {} s + {} s warm-up each (about {:.0} s)",
        cells.len(),
        cfg.reps,
        cfg.servers.len(),
        cfg.secs,
        cfg.warmup,
        total as f64 * (cfg.secs + cfg.warmup + 0.3)
    );
    for (ci, cell) in cells.iter_mut().enumerate() {
        let name = table_name(cell.table);
        let (_, open_reply, hit, miss) = samples.iter().find(|s| s.0 == cell.table.label).expect("sample");
        let (keys, reply) = if cell.mode == Mode::Miss { (&misses, miss) } else { (hits_of(cell.table), hit) };
        let reqs = Requests::new(&name, keys);
        let open = common::list(&[("request", "open"), ("table", &name), ("flags", FLAGS)]);
        let replies = EchoReplies { open: open_reply.clone(), lookup: reply.clone() };
        let design = match cfg.echo.as_str() {
            "auto" if cell.mode == Mode::Short => "epoll",
            "auto" => "threads",
            d => d,
        };
        let echo = EchoServer::start(&cfg, echo_path.clone(), replies.clone(), design, cfg.echo_threads)
            .expect("start the echo server");
        let echo_loop =
            EchoServer::start(&cfg, echo_loop_path.clone(), replies, "epoll", 1).expect("start the echo-loop server");
        for rep in 0..cfg.reps {
            // rotate the order so drift (thermal, neighbours) spreads over all three
            for k in 0..ALL_TARGETS.len() {
                let target = ALL_TARGETS[(rep + ci + k) % ALL_TARGETS.len()];
                if !cfg.servers.iter().any(|s| s == target.label()) {
                    continue;
                }
                let socket = match target {
                    Target::Postfix | Target::Ours | Target::OursNoStats => {
                        let want = if target == Target::Postfix { Server::Postfix } else { Server::Ours };
                        let counting = target != Target::OursNoStats;
                        let mut reload = inst.server != want;
                        if counting != stats_on {
                            let value = if counting { "yes" } else { "no" };
                            inst.postconf(&["-e", &format!("proxymap_statistics = {value}")]);
                            stats_on = counting;
                            reload = true;
                        }
                        if reload {
                            inst.switch(want);
                        }
                        inst.socket("proxymap")
                    }
                    Target::Echo => echo.path().to_path_buf(),
                    Target::EchoLoop => echo_loop.path().to_path_buf(),
                };
                let job = Job {
                    socket: &socket,
                    open: &open,
                    reqs: &reqs,
                    conns: cell.conns,
                    short: cell.mode == Mode::Short,
                };
                let expected = if target == Target::Postfix { &postfix_exe } else { &ours_exe };
                let inst_ref = &inst;
                let label =
                    format!("{} {} {} rep {} {:?}", cell.table.label, cell.conns, cell.mode.label(), rep + 1, target);
                let mut seen_wrong = None;
                // after warm-up: every proxymap process under master(8) must be the expected binary
                let check = || {
                    if matches!(target, Target::Postfix | Target::Ours | Target::OursNoStats) {
                        let exes = proxymap_exes(inst_ref);
                        if exes.is_empty() || exes.iter().any(|e| e != expected) {
                            seen_wrong =
                                Some(format!("{label}: proxymap processes {exes:?}, expected {}", expected.display()));
                        }
                    }
                };
                let r = run_load(&job, cfg.warmup, cfg.secs, check);
                done += 1;
                eprintln!(
                    "[{done}/{total}] {label}: {:.0}/s p50 {:.1} us p99 {:.1} us non-OK {} I/O errors {}{}",
                    r.rate,
                    r.p50_us,
                    r.p99_us,
                    r.non_ok,
                    r.io_errors,
                    r.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
                );
                warnings.extend(seen_wrong);
                if let Some(e) = &r.first_error {
                    warnings.push(format!("{label}: {} I/O errors, first: {e}", r.io_errors));
                }
                cell.runs[target as usize].push(r);
            }
        }
        drop(echo);
        drop(echo_loop);
    }

    print_table(&cfg, &cells);
    if cfg.servers.iter().any(|s| s == "ours-nostats") {
        print_stats_table(&cells);
    }
    if cfg.memory && cfg.servers.iter().any(|s| s == "postfix") && cfg.servers.iter().any(|s| s == "ours") {
        let sets: Vec<(String, &Vec<String>)> = tables.iter().map(|t| (table_name(t), hits_of(t))).collect();
        // one row per table, then one with all of them (a fresh process each)
        let mut groups: Vec<(String, Vec<usize>)> =
            tables.iter().enumerate().map(|(i, t)| (t.label.to_string(), vec![i])).collect();
        if tables.len() > 1 {
            groups.push(("all of the above".to_string(), (0..tables.len()).collect()));
        }
        let mut rows = Vec::new();
        for (label, members) in groups {
            let group: Vec<(String, &Vec<String>)> = members.iter().map(|&i| sets[i].clone()).collect();
            let mut pair = Vec::new();
            for server in [Server::Postfix, Server::Ours] {
                inst.switch(server);
                match memory_of_one_process(&inst, &group, cfg.memory_keys) {
                    Ok(m) => pair.push(m),
                    Err(e) => warnings.push(format!("memory of {server:?} with {label}: {e}")),
                }
            }
            if let [p, o] = &pair[..] {
                rows.push((label, p.clone(), o.clone()));
            }
        }
        print_memory(&rows, cfg.memory_keys);
    }
    println!("\nload average (1/5/15 min) before: {load_before}, after: {}", loadavg());
    for w in &warnings {
        println!("\nwarning: {w}");
    }
    // `inst` drops here: postfix stop
}

// ---------------------------------------------------------------------------
// memory: one process with every table of the run open

/// Memory figures of one process, KiB, from /proc/PID/status and smaps_rollup.
#[derive(Debug, Clone)]
struct Memory {
    procs: usize,
    rss: u64,
    pss: u64,
    private: u64,
}

fn proc_kib(text: &str, field: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok()).unwrap_or(0)
}

/// One connection opens every table and looks up `keys` keys in each (so
/// caches fill as they do in service), then the process that served it is
/// measured while the connection is still open.
fn memory_of_one_process(inst: &Instance, sets: &[(String, &Vec<String>)], keys: usize) -> Result<Memory, String> {
    let master = inst.master_pid().ok_or("no master(8)")?;
    // reload leaves the old generation exiting: wait until none is left
    let quiet = common::wait_until(10, || proxymap_pids(master).is_empty());
    if !quiet {
        return Err("old proxymap processes did not exit".into());
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut s = connect(&inst.socket("proxymap"), &mut buf).map_err(|e| e.to_string())?;
    for (table, hits) in sets {
        let open = common::list(&[("request", "open"), ("table", table), ("flags", FLAGS)]);
        s.write_all(&open).map_err(|e| e.to_string())?;
        read_list(&mut s, &mut buf).map_err(|e| e.to_string())?;
        let reqs = Requests::new(table, &hits[..keys.min(hits.len())]);
        for i in 0..reqs.len() {
            lookup(&mut s, reqs.get(i), &mut buf).map_err(|e| format!("{table}: {e}"))?;
        }
    }
    let pids = proxymap_pids(master);
    let mut m = Memory { procs: pids.len(), rss: 0, pss: 0, private: 0 };
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
        let rss = proc_kib(&status, "VmRSS:");
        if std::env::var_os("PM_BENCH_MEMORY_MAPS").is_some() {
            eprintln!("memory of {pid} ({:?}):\n{}", inst.server, top_mappings(pid, 10));
        }
        if rss > m.rss {
            m.rss = rss;
            m.pss = proc_kib(&rollup, "Pss:");
            m.private = proc_kib(&rollup, "Private_Clean:") + proc_kib(&rollup, "Private_Dirty:");
        }
    }
    drop(s);
    Ok(m)
}

/// PM_BENCH_MEMORY_MAPS: the process's largest mappings by RSS (KiB),
/// anonymous ones summed, from /proc/PID/smaps.
fn top_mappings(pid: i32, n: usize) -> String {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut by_name: Vec<(String, u64)> = Vec::new();
    let mut name = String::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        match (f.next(), line.strip_prefix("Rss:")) {
            (_, Some(v)) => {
                let kib: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
                match by_name.iter_mut().find(|(k, _)| *k == name) {
                    Some(e) => e.1 += kib,
                    None => by_name.push((name.clone(), kib)),
                }
            }
            (Some(range), None) if range.contains('-') && range.chars().all(|c| c.is_ascii_hexdigit() || c == '-') => {
                name = f.nth(4).unwrap_or("[anon]").to_string();
            }
            _ => {}
        }
    }
    by_name.sort_by_key(|e| std::cmp::Reverse(e.1));
    by_name.iter().take(n).map(|(k, v)| format!("  {v:>8} {k}")).collect::<Vec<_>>().join("\n")
}

fn proxymap_pids(master: i32) -> Vec<i32> {
    common::children_of(master)
        .into_iter()
        .filter(|p| std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e.ends_with("proxymap")))
        .collect()
}

fn print_memory(rows: &[(String, Memory, Memory)], keys: usize) {
    println!(
        "\nMemory of the proxymap process that served one connection which opened the table(s) and looked up \
         {keys} keys in each, measured with the connection still open (KiB; RSS from /proc/PID/status, PSS and \
         private = Private_Clean + Private_Dirty from smaps_rollup; a fresh process for every row):\n"
    );
    println!("| tables | postfix RSS | PSS | private | ours RSS | PSS | private | ours/postfix RSS | processes |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for (label, p, o) in rows {
        println!(
            "| {label} | {} | {} | {} | {} | {} | {} | {:.2} | {}/{} |",
            p.rss,
            p.pss,
            p.private,
            o.rss,
            o.pss,
            o.private,
            o.rss as f64 / p.rss as f64,
            p.procs,
            o.procs
        );
    }
}

/// Microseconds: one decimal below 100, whole numbers above.
fn us(v: f64) -> String {
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Ours with statistics on (the default) and off, side by side.
fn print_stats_table(cells: &[Cell]) {
    println!("\nStatistics on (`proxymap_statistics = yes`, the default) and off, same runs interleaved:\n");
    println!("| table | conns | mode | statistics on lookups/s | p50 | p99 | off lookups/s | p50 | p99 | on/off |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for c in cells {
        let med = |t: Target, f: fn(&RunResult) -> f64| median(c.runs[t as usize].iter().map(f).collect());
        let mut line = format!("| {} | {} | {} |", c.table.label, c.conns, c.mode.label());
        for t in [Target::Ours, Target::OursNoStats] {
            line +=
                &format!(" {:.0} | {} | {} |", med(t, |r| r.rate), us(med(t, |r| r.p50_us)), us(med(t, |r| r.p99_us)));
        }
        line += &format!(" {:.2} |", med(Target::Ours, |r| r.rate) / med(Target::OursNoStats, |r| r.rate));
        println!("{line}");
    }
}

fn print_table(cfg: &Settings, cells: &[Cell]) {
    println!(
        "\n{} s per run after {} s warm-up, median of {} reps; latency in µs (medians of the per-run p50/p99); \
         non-OK / I/O errors summed over all reps as postfix/ours/echo/echo-loop.\n",
        cfg.secs, cfg.warmup, cfg.reps
    );
    println!(
        "| table | conns | mode | postfix lookups/s | p50 | p99 | ours lookups/s | p50 | p99 | echo lookups/s | p50 | p99 | echo-loop lookups/s | p50 | p99 | ours/postfix | ours/echo | ours/echo-loop | non-OK | I/O errors |"
    );
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for c in cells {
        let med = |t: Target, f: fn(&RunResult) -> f64| median(c.runs[t as usize].iter().map(f).collect());
        let sum = |t: Target, f: fn(&RunResult) -> u64| c.runs[t as usize].iter().map(f).sum::<u64>();
        let rate = |t| med(t, |r| r.rate);
        let mut line = format!("| {} | {} | {} |", c.table.label, c.conns, c.mode.label());
        for t in TARGETS {
            line += &format!(" {:.0} | {} | {} |", rate(t), us(med(t, |r| r.p50_us)), us(med(t, |r| r.p99_us)));
        }
        line += &format!(
            " {:.2} | {:.2} | {:.2} |",
            rate(Target::Ours) / rate(Target::Postfix),
            rate(Target::Ours) / rate(Target::Echo),
            rate(Target::Ours) / rate(Target::EchoLoop)
        );
        let counts = |f: fn(&RunResult) -> u64| TARGETS.map(|t| sum(t, f).to_string()).join("/");
        line += &format!(" {} | {} |", counts(|r| r.non_ok), counts(|r| r.io_errors));
        println!("{line}");
    }
}
