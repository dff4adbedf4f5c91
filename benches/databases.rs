//! `cargo bench --bench databases`: `pgsql:`, `mysql:`, `ldap:` and
//! `socketmap:` tables through Postfix 3.7's own proxymap and through ours,
//! under the same Postfix master(8), against a PostgreSQL, a MariaDB and
//! an OpenLDAP server of the bench's own (temp dirs, UNIX socket and
//! loopback ports) and a socketmap server in this process. Clients ask 14 tables
//! of one server in turn, as a site's many maps do. Prints, per database
//! and number of clients: lookups per second, latency p50/p99, and the
//! database connections the proxymap processes held while the clients ran
//! (the figure proxymap exists for), and CPU time per lookup spent in the
//! proxymap processes and in the database server (where the time goes).
//! Then isolation: clients of a fast
//! pgsql table and of an lmdb table while other clients ask a pgsql table
//! whose query takes 200 ms, the fast tables' p99 with each server. See
//! docs/performance.md.
//!
//! Environment: PM_BENCH_SECS (5), PM_BENCH_CONNS (1,16,64), PM_BENCH_ONLY
//! (pgsql,mysql,ldap,socketmap; the isolation run needs pgsql).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../src/dict/sql/test_mariadb.rs"]
mod mariadb;

use common::slapd::Slapd;

use common::mapdiff::write_settled;
use common::pgsql::Postgres;
use common::postfix::{Instance, Server};
use common::TempDir;
use mariadb::Mariadb;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const ROWS: usize = 10_000;
/// Tables per database (identical queries, separate `.cf` files).
const TABLES: usize = 14;
/// Clients on the slow table during the isolation run, and on each fast one.
const SLOW_CLIENTS: usize = 8;
const FAST_CLIENTS: usize = 4;

/// A proxymap client with buffered reads: one reply per request.
struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
}

impl Client {
    fn connect(path: &Path) -> std::io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut c = Client { stream, buf: Vec::with_capacity(512) };
        c.reply()?; // the announcement
        Ok(c)
    }

    /// One attribute list: a NUL where a name would start ends it.
    fn reply(&mut self) -> std::io::Result<Vec<u8>> {
        let mut chunk = [0u8; 512];
        loop {
            let mut at_name = true;
            let mut in_value = false;
            for (i, &b) in self.buf.iter().enumerate() {
                if b == 0 {
                    if at_name && !in_value {
                        let rest = self.buf.split_off(i + 1);
                        return Ok(std::mem::replace(&mut self.buf, rest));
                    }
                    // a name's NUL starts its value; a value's NUL ends it
                    in_value = !in_value;
                    at_name = !in_value;
                } else {
                    at_name = false;
                }
            }
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn lookup(&mut self, table: &str, key: &str) -> std::io::Result<bool> {
        self.stream.write_all(&common::list(&common::lookup(table, key)))?;
        Ok(self.reply()?.starts_with(b"status\x000\0"))
    }
}

/// What a group of clients did in one run.
#[derive(Default)]
struct Run {
    lookups: usize,
    failed: usize,
    latencies: Vec<Duration>,
}

impl Run {
    fn percentile(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        self.latencies.get(i).copied().unwrap_or_default()
    }
}

/// How the clients connect.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Clients {
    /// Each keeps its connection (as a long-lived Postfix daemon).
    Persistent,
    /// Each connects anew every [`SHORT_LOOKUPS`] lookups (as Postfix's
    /// processes come and go): master(8) then starts more proxymap
    /// processes.
    Short,
}

const SHORT_LOOKUPS: usize = 5;

/// `conns` clients asking `tables` in turn until `stop` (at most 3 × `secs`).
fn run(
    socket: &Path,
    tables: &[String],
    (conns, how): (usize, Clients),
    secs: f64,
    stop: &AtomicBool,
    start: &Barrier,
) -> Vec<Run> {
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..conns)
            .map(|id| {
                s.spawn(move || {
                    let mut run = Run::default();
                    let mut client = Client::connect(socket).expect("connect");
                    start.wait();
                    let t0 = Instant::now();
                    let mut i = id * 7919;
                    while !stop.load(Ordering::Relaxed) && t0.elapsed().as_secs_f64() < secs * 3.0 {
                        let key = format!("user{}@example.com", i % ROWS);
                        i += 1;
                        let t = Instant::now();
                        if how == Clients::Short && i % SHORT_LOOKUPS == 0 {
                            if let Ok(c) = Client::connect(socket) {
                                client = c;
                            }
                        }
                        match client.lookup(&tables[i % tables.len()], &key) {
                            Ok(true) => run.lookups += 1,
                            Ok(false) => run.failed += 1,
                            Err(_) => {
                                run.failed += 1;
                                match Client::connect(socket) {
                                    Ok(c) => client = c,
                                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                                }
                            }
                        }
                        run.latencies.push(t.elapsed());
                    }
                    run
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    })
}

fn merge(runs: Vec<Run>) -> Run {
    runs.into_iter().fold(Run::default(), |mut all, r| {
        all.lookups += r.lookups;
        all.failed += r.failed;
        all.latencies.extend(r.latencies);
        all
    })
}

/// A database the bench asks: its table spec and how to count the
/// connections the proxymap processes hold.
struct Database<'a> {
    label: &'static str,
    fast: Vec<String>,
    held: Box<dyn Fn() -> usize + 'a>,
    /// The server's process (its backends are its children); 0: in this
    /// process (not measured).
    server_pid: i32,
}

/// Established TCP connections to `port` on 127.0.0.1 (the server's view).
fn tcp_connections_to(port: u16) -> usize {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"01")
        })
        .count()
}

/// A socketmap server: a thread per connection answering `OK value` to
/// each netstring request (`<map> user<N>@example.com`).
fn socketmap_server() -> (u16, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let open = Arc::new(AtomicUsize::new(0));
    let count = open.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let count = count.clone();
            count.fetch_add(1, Ordering::Relaxed);
            std::thread::spawn(move || {
                let _ = serve_socketmap(stream);
                count.fetch_sub(1, Ordering::Relaxed);
            });
        }
    });
    (port, open)
}

fn serve_socketmap(stream: std::net::TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = std::io::BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut len = Vec::new();
        if std::io::BufRead::read_until(&mut reader, b':', &mut len)? == 0 {
            return Ok(());
        }
        let n: usize = std::str::from_utf8(&len[..len.len() - 1]).ok().and_then(|t| t.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; n + 1]; // and the comma
        reader.read_exact(&mut body)?;
        let key = body[..n].split(|&b| b == b' ').nth(1).unwrap_or_default();
        let reply = [b"OK value of ".as_slice(), key].concat();
        writer.write_all(format!("{}:", reply.len()).as_bytes())?;
        writer.write_all(&reply)?;
        writer.write_all(b",")?;
    }
}

/// CPU time (user + system, all threads) of `pid` and its children.
fn cpu_time(pid: i32) -> Duration {
    let own = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok().and_then(|stat| {
        let fields: Vec<u64> =
            stat.rsplit(") ").next()?.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
        // clock ticks: 100 per second on Linux
        Some(Duration::from_millis(10 * fields.iter().sum::<u64>()))
    });
    own.unwrap_or_default() + common::children_of(pid).into_iter().map(cpu_time).sum::<Duration>()
}

/// CPU time of the instance's proxymap processes.
fn proxymap_cpu(inst: &Instance) -> Duration {
    let Some(master) = inst.master_pid() else { return Duration::ZERO };
    common::children_of(master)
        .into_iter()
        .filter(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "proxymap"))
        .map(cpu_time)
        .sum()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("databases: skipped (run `cargo bench --bench databases`)");
        return;
    }
    let secs: f64 = std::env::var("PM_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let conns: Vec<usize> = std::env::var("PM_BENCH_CONNS")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .filter_map(|c| c.trim().parse().ok())
        .collect();

    let pg = Postgres::start("bench-pg").expect("PostgreSQL (scripts/install-test-deps.sh)");
    pg.sql("CREATE TABLE users (k text PRIMARY KEY, v text); GRANT SELECT ON users TO proxymap");
    pg.sql(&format!(
        "INSERT INTO users SELECT 'user' || i || '@example.com', 'value ' || i FROM generate_series(0, {}) i",
        ROWS - 1
    ));
    let my = Mariadb::start("bench-my").expect("MariaDB (scripts/install-test-deps.sh)");
    my.sql("CREATE TABLE users (k VARCHAR(64) PRIMARY KEY, v TEXT)");
    my.sql(&format!(
        "SET max_recursive_iterations = 1000000; INSERT INTO users WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i < {}) \
         SELECT CONCAT('user', i, '@example.com'), CONCAT('value ', i) FROM s",
        ROWS - 1
    ));

    let pg_login = format!(
        "hosts = unix:{}\ndbname = {}\nuser = {}\n",
        pg.socket_dir().display(),
        common::pgsql::DB,
        common::pgsql::USER
    );
    let my_login = format!(
        "hosts = inet:127.0.0.1:{}\nuser = {}\npassword = {}\ndbname = {}\n",
        my.port(),
        mariadb::USER,
        mariadb::PASSWORD,
        mariadb::DB
    );
    let people: String = (0..ROWS)
        .map(|i| {
            format!(
                "dn: uid=user{i},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: user{i}\ncn: User {i}\n\
                 sn: {i}\nmail: user{i}@example.com\n\n"
            )
        })
        .collect();
    let ldap = Slapd::start(
        "bench-ldap",
        &format!("dn: ou=people,dc=example,dc=com\nobjectClass: organizationalUnit\nou: people\n\n{people}"),
    )
    .expect("slapd (scripts/install-test-deps.sh)");
    let (sockmap_port, sockmap_open) = socketmap_server();
    let query = "query = SELECT v FROM users WHERE k='%s'\n";
    let mut cfs = vec![(
        "pg-slow.cf".to_string(),
        format!("{pg_login}query = SELECT v FROM users, pg_sleep(0.2) WHERE k='%s'\n"),
    )];
    for i in 1..=TABLES {
        cfs.push((format!("pg-{i:02}.cf"), format!("{pg_login}{query}")));
        cfs.push((format!("my-{i:02}.cf"), format!("{my_login}{query}")));
        cfs.push((
            format!("ldap-{i:02}.cf"),
            format!(
                "server_host = {}\nversion = 3\nsearch_base = ou=people,dc=example,dc=com\n\
                 query_filter = (mail=%s)\nresult_attribute = cn\n",
                ldap.url()
            ),
        ));
    }
    let specs = |t: &str, prefix: &str| -> Vec<String> {
        (1..=TABLES).map(|i| format!("{t}:@TABLES@/{prefix}-{i:02}.cf")).collect()
    };
    let databases = [
        Database {
            label: "pgsql",
            fast: specs("pgsql", "pg"),
            held: Box::new(|| pg.backends(common::pgsql::DB)),
            server_pid: pg.pid(),
        },
        Database {
            label: "mysql",
            fast: specs("mysql", "my"),
            held: Box::new(|| my.processlist()),
            server_pid: my.pid() as i32,
        },
        Database {
            label: "ldap",
            fast: specs("ldap", "ldap"),
            held: Box::new(|| tcp_connections_to(ldap.port())),
            server_pid: ldap.pid(),
        },
        Database {
            label: "socketmap",
            fast: (1..=TABLES).map(|i| format!("socketmap:inet:127.0.0.1:{sockmap_port}:map{i:02}")).collect(),
            held: Box::new(|| sockmap_open.load(Ordering::Relaxed)),
            server_pid: 0,
        },
    ];
    let slow = "pgsql:@TABLES@/pg-slow.cf".to_string();
    let lmdb = "lmdb:@TABLES@/users".to_string();
    // PM_BENCH_ONLY=ldap,socketmap: some of the tables only
    let only = std::env::var("PM_BENCH_ONLY").ok();
    let databases: Vec<Database<'_>> =
        databases.into_iter().filter(|d| only.as_deref().is_none_or(|o| o.split(',').any(|l| l == d.label))).collect();
    let maps: Vec<String> =
        databases.iter().flat_map(|d| d.fast.iter()).chain([&slow, &lmdb]).map(|t| format!("proxy:{t}")).collect();
    let mut inst = Instance::new("dbbench", &format!("proxy_read_maps = {}\n", maps.join(" ")), Server::Postfix);
    for (name, text) in &cfs {
        write_settled(&inst.tables.join(name), text);
    }
    let users: String = (0..ROWS).map(|i| format!("user{i}@example.com value {i}\n")).collect();
    std::fs::write(inst.tables.join("users"), users).expect("users");
    let tables = inst.tables.display().to_string();
    let lmdb = lmdb.replace("@TABLES@", &tables);
    let out = inst.postmap(&[&lmdb]);
    assert!(out.status.success(), "postmap {lmdb}: {}", String::from_utf8_lossy(&out.stderr));
    let slow = slow.replace("@TABLES@", &tables);
    let databases: Vec<Database<'_>> = databases
        .into_iter()
        .map(|d| Database { fast: d.fast.iter().map(|t| t.replace("@TABLES@", &tables)).collect(), ..d })
        .collect();
    inst.start();
    let socket = inst.socket("proxymap");

    println!("| table | clients | server | lookups/s | p50 | p99 | failed | connections held | proxymap CPU/lookup | server CPU/lookup |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for db in &databases {
        let cells = conns.iter().map(|&n| (n, Clients::Persistent)).chain([(16, Clients::Short)]);
        for (n, how) in cells {
            for server in [Server::Postfix, Server::Ours] {
                // fresh processes: every run starts with no connection open
                inst.restart_with(server);
                let stop = AtomicBool::new(false);
                let start = Barrier::new(n + 1);
                let (mut all, held, ours_cpu, db_cpu) = std::thread::scope(|s| {
                    let fast = &db.fast;
                    let clients = s.spawn(|| run(&socket, fast, (n, how), secs, &stop, &start));
                    start.wait();
                    let server_cpu = || if db.server_pid == 0 { Duration::ZERO } else { cpu_time(db.server_pid) };
                    let cpu0 = (proxymap_cpu(&inst), server_cpu());
                    std::thread::sleep(Duration::from_secs_f64(secs * 0.8));
                    let held = (db.held)();
                    std::thread::sleep(Duration::from_secs_f64(secs * 0.2));
                    let cpu1 = (proxymap_cpu(&inst), server_cpu());
                    stop.store(true, Ordering::Relaxed);
                    let all = merge(clients.join().expect("clients"));
                    (all, held, cpu1.0.saturating_sub(cpu0.0), cpu1.1.saturating_sub(cpu0.1))
                });
                let lookups = all.lookups.max(1) as f64;
                let per_lookup = |d: Duration| d.as_secs_f64() * 1e6 / lookups;
                let db_cpu =
                    if db.server_pid == 0 { "-".to_string() } else { format!("{:.0} µs", per_lookup(db_cpu)) };
                println!(
                    "| {} | {n}{} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {held} | {:.0} µs | {db_cpu} |",
                    db.label,
                    if how == Clients::Short { " short" } else { "" },
                    name(server),
                    all.lookups as f64 / secs,
                    all.percentile(0.5).as_secs_f64() * 1e3,
                    all.percentile(0.99).as_secs_f64() * 1e3,
                    all.failed,
                    per_lookup(ours_cpu),
                );
            }
        }
    }

    let Some(pg_tables) = databases.iter().find(|d| d.label == "pgsql") else { return inst.stop() };
    let fast_pg = vec![pg_tables.fast[0].clone()];
    println!();
    println!(
        "Isolation: {FAST_CLIENTS} clients of a fast pgsql table and {FAST_CLIENTS} of an lmdb table, \
         alone and while {SLOW_CLIENTS} ask a pgsql table whose query takes 200 ms"
    );
    println!();
    println!("| server | slow table | pgsql p50 | pgsql p99 | lmdb p50 | lmdb p99 | slow lookups/s | failed |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    let lmdb = vec![lmdb];
    let slow = vec![slow];
    for server in [Server::Postfix, Server::Ours] {
        for with_slow in [false, true] {
            inst.restart_with(server);
            let stop = AtomicBool::new(false);
            let slow_clients = if with_slow { SLOW_CLIENTS } else { 0 };
            let start = Barrier::new(2 * FAST_CLIENTS + slow_clients + 1);
            let (mut pg_run, mut lmdb_run, slow_run) = std::thread::scope(|s| {
                let slow_run =
                    s.spawn(|| run(&socket, &slow, (slow_clients, Clients::Persistent), secs, &stop, &start));
                let pg_run =
                    s.spawn(|| run(&socket, &fast_pg, (FAST_CLIENTS, Clients::Persistent), secs, &stop, &start));
                let lmdb_run =
                    s.spawn(|| run(&socket, &lmdb, (FAST_CLIENTS, Clients::Persistent), secs, &stop, &start));
                start.wait();
                std::thread::sleep(Duration::from_secs_f64(secs));
                stop.store(true, Ordering::Relaxed);
                let join = |h: std::thread::ScopedJoinHandle<'_, Vec<Run>>| merge(h.join().expect("clients"));
                (join(pg_run), join(lmdb_run), join(slow_run))
            });
            let ms = |r: &mut Run, p| r.percentile(p).as_secs_f64() * 1e3;
            println!(
                "| {} | {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.1} | {} |",
                name(server),
                if with_slow { "busy" } else { "idle" },
                ms(&mut pg_run, 0.5),
                ms(&mut pg_run, 0.99),
                ms(&mut lmdb_run, 0.5),
                ms(&mut lmdb_run, 0.99),
                slow_run.lookups as f64 / secs,
                pg_run.failed + lmdb_run.failed + slow_run.failed
            );
        }
    }
    inst.stop();
}

fn name(server: Server) -> &'static str {
    match server {
        Server::Postfix => "Postfix",
        Server::Ours => "ours",
    }
}
