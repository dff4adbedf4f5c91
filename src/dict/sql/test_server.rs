//! A PostgreSQL server of the test's own, for the pgsql tests: the unit
//! tests (`dict::sql`) and, included by path as `tests/common/pgsql.rs`,
//! the integration tests. It uses nothing of the crate; the including
//! module provides `TempDir` (`crate::test_support`'s).
//!
//! `initdb` (Debian's /usr/lib/postgresql/<version>/bin, the newest) into a
//! temporary directory, run as the `postgres` user when the tests run as
//! root (PostgreSQL refuses root), listening on a UNIX socket in that
//! directory and on 127.0.0.1 at a free port; stopped by its PID and
//! removed when dropped. The system's own clusters are never touched.
//! Local (socket) logins are trusted; TCP logins need a password. The
//! socket also answers under the default port's name, so that `unix:DIR`
//! (which cannot name a port) reaches it.
#![allow(dead_code, unreachable_pub)] // each test uses a part

use super::TempDir;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The database and login the tests use (the superuser is `postgres`).
pub const DB: &str = "proxymap";
pub const USER: &str = "proxymap";
/// A password that needs quoting anywhere it is written.
pub const PASSWORD: &str = "p w'\\d=x";

pub struct Postgres {
    bin: PathBuf,
    /// The postgres user's uid and gid when we run as root.
    owner: Option<(u32, u32)>,
    port: u16,
    pid: i32,
    dir: TempDir,
}

/// Debian's newest PostgreSQL binaries, if installed.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl Postgres {
    /// A running server with the test database and login, or None (after
    /// saying why on stderr) when PostgreSQL is not installed.
    pub fn start(tag: &str) -> Option<Postgres> {
        let Some(bin) = bin_dir() else {
            eprintln!("skipped: PostgreSQL is not installed (scripts/install-test-deps.sh installs it)");
            return None;
        };
        let owner = if nix::unistd::geteuid().is_root() {
            match nix::unistd::User::from_name("postgres") {
                Ok(Some(u)) => Some((u.uid.as_raw(), u.gid.as_raw())),
                _ => {
                    eprintln!("skipped: running as root and there is no postgres user to run PostgreSQL as");
                    return None;
                }
            }
        } else {
            None
        };
        let dir = TempDir::new(tag);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the server directory");
        }
        let mut server = Postgres { bin, owner, port: 0, pid: 0, dir };
        let out = server.run_as_owner("initdb", |c| {
            c.arg("-D").arg(server.data()).args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
        });
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        // A port found free may be taken before the server binds it.
        for attempt in 0.. {
            server.port = free_port();
            let opts = format!(
                "-k {} -h 127.0.0.1 -p {} -c fsync=off -c full_page_writes=off -c max_connections=60 \
                 -c shared_buffers=16MB",
                server.dir.path().display(),
                server.port
            );
            let out = server.run_as_owner("pg_ctl", |c| {
                c.args(["start", "-w", "-t", "60", "-D"])
                    .arg(server.data())
                    .arg("-l")
                    .arg(server.log())
                    .arg("-o")
                    .arg(&opts)
            });
            if out.status.success() {
                break;
            }
            assert!(
                attempt < 3,
                "pg_ctl start failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                server.log_text()
            );
        }
        server.pid = server.read_pid();
        // Postfix's `unix:` hosts cannot name a port (libpq's default,
        // 5432, applies): the default socket name leads to ours.
        let socket = format!(".s.PGSQL.{}", server.port);
        std::os::unix::fs::symlink(&socket, server.dir.path().join(".s.PGSQL.5432")).expect("socket symlink");
        let sql = format!(
            "CREATE ROLE {USER} LOGIN PASSWORD '{}'; CREATE DATABASE {DB} OWNER {USER};",
            PASSWORD.replace('\'', "''")
        );
        for statement in sql.split_inclusive(';') {
            server.sql_in("postgres", statement);
        }
        Some(server)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// The directory of the server's UNIX socket (libpq's `host`).
    pub fn socket_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The postmaster's PID.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn read_pid(&self) -> i32 {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).expect("postmaster.pid");
        text.lines().next().and_then(|l| l.trim().parse().ok()).expect("a PID in postmaster.pid")
    }

    fn run_as_owner(&self, program: &str, args: impl FnOnce(&mut Command) -> &mut Command) -> Output {
        let mut cmd = Command::new(self.bin.join(program));
        args(&mut cmd);
        cmd.current_dir(self.dir.path()).stdin(Stdio::null()).env("LC_ALL", "C");
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid).env("HOME", self.dir.path());
        }
        cmd.output().unwrap_or_else(|e| panic!("run {program}: {e}"))
    }

    /// Run SQL as the superuser in the test database; psql's unaligned,
    /// tuples-only output. Panics when it fails.
    pub fn sql(&self, query: &str) -> String {
        self.sql_in(DB, query)
    }

    /// As [`Postgres::sql`], in database `db`.
    pub fn sql_in(&self, db: &str, query: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .arg("-h")
            .arg(self.socket_dir())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db, "-X", "-A", "-t", "-q"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", query])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql {query:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string()
    }

    /// Client connections to database `db` now (psql's own is elsewhere).
    pub fn backends(&self, db: &str) -> usize {
        let n = self.sql_in(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND backend_type = 'client backend'"
            ),
        );
        n.parse().unwrap_or_else(|_| panic!("count of backends: {n:?}"))
    }

    /// The PIDs of the client connections to `db`.
    pub fn backend_pids(&self, db: &str) -> Vec<i32> {
        let out = self.sql_in(
            "postgres",
            &format!("SELECT pid FROM pg_stat_activity WHERE datname = '{db}' AND backend_type = 'client backend'"),
        );
        out.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Stop and start again (`pg_ctl restart`, fast shutdown): every
    /// connection is closed by the server.
    pub fn restart(&mut self) {
        let out = self.run_as_owner("pg_ctl", |c| {
            c.args(["restart", "-w", "-t", "60", "-m", "fast", "-D"]).arg(self.data()).arg("-l").arg(self.log())
        });
        assert!(out.status.success(), "pg_ctl restart: {}\n{}", String::from_utf8_lossy(&out.stderr), self.log_text());
        self.pid = self.read_pid();
    }

    /// Stop the server (fast shutdown), by its PID; waits until it is gone.
    pub fn stop(&mut self) {
        if self.pid <= 0 {
            return;
        }
        let pid = nix::unistd::Pid::from_raw(self.pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(self.pid) {
            if Instant::now() > deadline {
                // immediate shutdown
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGQUIT);
                std::thread::sleep(Duration::from_millis(500));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.pid = 0;
    }
}

/// True while `pid` runs (a zombie nobody reaps counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(") ").next().is_some_and(|rest| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
