//! A MariaDB server of the test's own, for the mysql tests: the unit tests
//! (`dict::sql::mysql`) and, included by path, the integration tests. It
//! uses nothing of the crate; the including module provides `TempDir`
//! (`crate::test_support`'s).
//!
//! `mariadb-install-db` into a temporary directory, `mariadbd` run from it
//! (as root with `--user=root`), listening on a UNIX socket in that
//! directory and on 127.0.0.1 at a free port; stopped by its PID and
//! removed when dropped. No option file is read (`--no-defaults`), so the
//! system's own server, if any, is never touched. Grants are checked: the
//! test login has a password; `root` (no password, socket or TCP from
//! this host) runs the harness's SQL.
#![allow(dead_code, unreachable_pub)] // each test uses a part

use super::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The database and login the tests use.
pub const DB: &str = "proxymap";
pub const USER: &str = "proxymap";
/// A password that needs quoting anywhere it is written.
pub const PASSWORD: &str = "p w'\\d=x";

pub struct Mariadb {
    server: PathBuf,
    client: PathBuf,
    port: u16,
    child: Option<Child>,
    dir: TempDir,
}

/// The first of `names` found in the usual directories.
fn find(names: &[&str]) -> Option<PathBuf> {
    let dirs = ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin", "/usr/libexec"];
    names.iter().flat_map(|n| dirs.iter().map(move |d| Path::new(d).join(n))).find(|p| p.exists())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

impl Mariadb {
    /// A running server with the test database and login, or None (after
    /// saying why on stderr) when MariaDB is not installed.
    pub fn start(tag: &str) -> Option<Mariadb> {
        let (Some(server), Some(install), Some(client)) = (
            find(&["mariadbd", "mysqld"]),
            find(&["mariadb-install-db", "mysql_install_db"]),
            find(&["mariadb", "mysql"]),
        ) else {
            eprintln!("skipped: MariaDB is not installed (scripts/install-test-deps.sh installs it)");
            return None;
        };
        let dir = TempDir::new(tag);
        let mut db = Mariadb { server, client, port: 0, child: None, dir };
        let out = Command::new(install)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", db.data().display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db", "--skip-name-resolve"])
            .args(db.user_arg())
            // its bootstrap server's temporary files: not in a /tmp that
            // another test's bootstrap uses at the same time
            .env("TMPDIR", db.dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb-install-db");
        assert!(out.status.success(), "mariadb-install-db failed: {}", String::from_utf8_lossy(&out.stderr));
        db.launch();
        let password = PASSWORD.replace('\\', "\\\\").replace('\'', "\\'");
        for host in ["localhost", "127.0.0.1"] {
            db.sql_in("mysql", &format!("CREATE USER '{USER}'@'{host}' IDENTIFIED BY '{password}'"));
            db.sql_in("mysql", &format!("GRANT ALL ON {DB}.* TO '{USER}'@'{host}'"));
        }
        db.sql_in("mysql", &format!("CREATE DATABASE {DB} CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"));
        Some(db)
    }

    /// `--user=root` when we are root (mariadbd refuses root otherwise).
    fn user_arg(&self) -> Vec<String> {
        if nix::unistd::geteuid().is_root() {
            vec!["--user=root".to_string()]
        } else {
            Vec::new()
        }
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

    /// The server's UNIX socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("mysqld.sock")
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's PID (0 while stopped).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Start the server and wait until it answers (a free port is found
    /// anew if the first one was taken meanwhile).
    fn launch(&mut self) {
        for attempt in 0.. {
            if self.port == 0 || attempt > 0 {
                self.port = free_port();
            }
            let child = Command::new(&self.server)
                .arg("--no-defaults")
                .arg(format!("--datadir={}", self.data().display()))
                .arg(format!("--socket={}", self.socket().display()))
                .arg(format!("--pid-file={}", self.dir.path().join("mysqld.pid").display()))
                .arg(format!("--log-error={}", self.log().display()))
                .arg(format!("--port={}", self.port))
                .arg(format!("--tmpdir={}", self.dir.path().display()))
                .args(["--bind-address=127.0.0.1", "--skip-name-resolve", "--skip-log-bin"])
                .args(["--innodb-buffer-pool-size=16M", "--max-connections=100", "--performance-schema=off"])
                .args(self.user_arg())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start mariadbd");
            self.child = Some(child);
            if self.wait_ready() {
                return;
            }
            self.stop();
            assert!(attempt < 3, "mariadbd did not start:\n{}", self.log_text());
        }
    }

    /// True once the server answers; false when it exited first.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return false;
                }
            }
            if self.socket().exists() && self.client("mysql", "SELECT 1").status.success() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    fn client(&self, db: &str, query: &str) -> std::process::Output {
        Command::new(&self.client)
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket().display()))
            // one statement a call, which may hold `;` (a procedure's body)
            .args(["-uroot", "-N", "-B", "--delimiter=$$", "-e", query, db])
            .stdin(Stdio::null())
            .output()
            .expect("run the mariadb client")
    }

    /// Run SQL as root in the test database; the client's batch output
    /// (tab-separated, no column names). Panics when it fails.
    pub fn sql(&self, query: &str) -> String {
        self.sql_in(DB, query)
    }

    /// As [`Mariadb::sql`], in database `db`.
    pub fn sql_in(&self, db: &str, query: &str) -> String {
        let out = self.client(db, query);
        assert!(out.status.success(), "mariadb {query:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end_matches('\n').to_string()
    }

    /// Connections of the test login now.
    pub fn processlist(&self) -> usize {
        let n =
            self.sql_in("mysql", &format!("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{USER}'"));
        n.parse().unwrap_or_else(|_| panic!("count of connections: {n:?}"))
    }

    /// The ids of the test login's connections (what `KILL` takes).
    pub fn connection_ids(&self) -> Vec<u64> {
        let out = self.sql_in("mysql", &format!("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{USER}'"));
        out.lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// Stop and start again, on the same port: every connection is closed.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Kill the server (SIGKILL: no shutdown at all) and start it again.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.launch();
    }

    /// Stop the server (SIGTERM: a normal shutdown), by its PID; waits
    /// until it is gone (SIGKILL after 30 s).
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("a PID"));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.stop();
    }
}
