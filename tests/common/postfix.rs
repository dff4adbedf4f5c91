//! A private Postfix 3.7 instance for differential tests: its own config
//! directory, queue, data directory and daemon directory (symlinks to Debian's
//! daemons, with `proxymap` pointing at Postfix's binary or ours). Started with
//! `postfix -c DIR start`, stopped when dropped; never touches /etc/postfix.
#![allow(dead_code)]

use super::TempDir;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub(crate) const POSTFIX_SBIN: &str = "/usr/lib/postfix/sbin";

/// Which proxymap serves the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Server {
    Postfix,
    Ours,
}

pub(crate) struct Instance {
    pub dir: TempDir,
    pub config: PathBuf,
    pub queue: PathBuf,
    pub libexec: PathBuf,
    pub tables: PathBuf,
    pub wtables: PathBuf,
    pub server: Server,
    /// master(8) run by [`Instance::start_attached`].
    attached: Option<std::process::Child>,
}

pub(crate) fn ours_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_proxymap"))
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    out
}

fn check(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

impl Instance {
    /// A new stopped instance; `extra_main_cf` is appended to main.cf with
    /// `@TABLES@` / `@WTABLES@` replaced by the table directories.
    pub(crate) fn new(tag: &str, extra_main_cf: &str, server: Server) -> Instance {
        assert!(
            Path::new("/usr/sbin/postfix").exists(),
            "Postfix is not installed: run scripts/install-test-deps.sh (scripts/test.sh does)"
        );
        let dir = TempDir::new(tag);
        let d = dir.path();
        let config = d.join("etc");
        let queue = d.join("queue");
        let data = d.join("data");
        let libexec = d.join("libexec");
        let tables = d.join("tables");
        let wtables = d.join("wtables");
        for p in [&config, &queue, &data, &libexec, &tables, &wtables] {
            std::fs::create_dir_all(p).expect("mkdir");
        }
        // the postfix user must reach the tables and own what it writes
        check(Command::new("chmod").args(["755"]).arg(d));
        check(Command::new("chown").args(["postfix:postfix"]).arg(&data).arg(&wtables));
        for name in ["master.cf.proto", "dynamicmaps.cf", "postfix-files"] {
            let target = if name == "master.cf.proto" { "master.cf" } else { name };
            std::fs::copy(Path::new("/etc/postfix").join(name), config.join(target)).expect("copy config");
        }
        for sub in ["dynamicmaps.cf.d", "postfix-files.d"] {
            check(Command::new("cp").arg("-r").arg(Path::new("/etc/postfix").join(sub)).arg(&config));
        }
        for entry in std::fs::read_dir(POSTFIX_SBIN).expect("postfix daemons").flatten() {
            // Postfix's own programs only: on a host where ours is installed
            // as docs/postfix.md says, the instance gets its own link to the
            // binary under test, never the system's copy.
            if entry.file_name() == "proxymap-rs" {
                continue;
            }
            std::os::unix::fs::symlink(entry.path(), libexec.join(entry.file_name())).expect("symlink");
        }
        let main_cf = format!(
            "compatibility_level = 3.6\n\
             queue_directory = {q}\n\
             data_directory = {data}\n\
             daemon_directory = {lib}\n\
             myhostname = lab.localdomain\n\
             inet_interfaces = loopback-only\n\
             inet_protocols = ipv4\n\
             alias_maps =\n\
             alias_database =\n\
             smtputf8_enable = no\n\
             maillog_file = {d}/postfix.log\n\
             maillog_file_prefixes = {d}\n\
             {extra}\n\
             {worker}",
            worker = super::worker_main_cf(),
            q = queue.display(),
            data = data.display(),
            lib = libexec.display(),
            d = d.display(),
            extra = extra_main_cf
                .replace("@TABLES@", &tables.display().to_string())
                .replace("@WTABLES@", &wtables.display().to_string()),
        );
        std::fs::write(config.join("main.cf"), main_cf).expect("main.cf");
        let inst = Instance { dir, config, queue, libexec, tables, wtables, server, attached: None };
        inst.postconf(&["-MX", "smtp/inet"]);
        inst.postconf(&["-F", "*/*/chroot = n"]);
        inst.select(server);
        inst
    }

    pub(crate) fn postconf(&self, args: &[&str]) -> String {
        let out = check(Command::new("postconf").arg("-c").arg(&self.config).args(args));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Point the instance's `proxymap` command at Postfix's binary or ours.
    pub(crate) fn select(&self, server: Server) {
        let link = self.libexec.join("proxymap");
        let _ = std::fs::remove_file(&link);
        let target = match server {
            Server::Postfix => Path::new(POSTFIX_SBIN).join("proxymap"),
            Server::Ours => ours_binary(),
        };
        std::os::unix::fs::symlink(target, link).expect("symlink proxymap");
    }

    pub(crate) fn start(&mut self) {
        check(Command::new("postfix").arg("-c").arg(&self.config).arg("start"));
        self.wait_for_socket("proxymap");
    }

    /// Start master(8) in the foreground (`master -d`, a child of this
    /// process) rather than daemonized, so that it and its services stay in
    /// this process's session, as Postfix's clients and proxymap share
    /// master's session in service. Linux's autogroup scheduling shares CPU
    /// time between sessions: across two sessions a client and its server
    /// run very differently (docs/performance.md). `postfix start` runs
    /// first once, for what it sets up; `postfix stop` ends both kinds.
    pub(crate) fn start_attached(&mut self) {
        self.start();
        let daemonized = self.master_pid();
        self.stop();
        if let Some(pid) = daemonized {
            wait_gone(pid);
        }
        let _ = std::fs::remove_file(self.socket("proxymap"));
        let master = self.libexec.join("master");
        let child = Command::new(master)
            .arg("-d")
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start master -d");
        self.attached = Some(child);
        self.wait_for_socket("proxymap");
    }

    /// Swap the proxymap binary and `postfix reload`.
    pub(crate) fn switch(&mut self, server: Server) {
        self.server = server;
        self.select(server);
        check(Command::new("postfix").arg("-c").arg(&self.config).arg("reload"));
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Swap the proxymap binary with a full stop and start, so that every
    /// client starts afresh (a reload keeps clients connected across the swap).
    pub(crate) fn restart_with(&mut self, server: Server) {
        check(Command::new("postfix").arg("-c").arg(&self.config).arg("stop"));
        self.server = server;
        self.select(server);
        let _ = std::fs::remove_file(self.socket("proxymap"));
        check(Command::new("postfix").arg("-c").arg(&self.config).arg("start"));
        self.wait_for_socket("proxymap");
    }

    /// `postfix stop` (also done on drop).
    pub(crate) fn stop(&self) {
        let _ = run(Command::new("timeout").args(["20", "postfix", "-c"]).arg(&self.config).arg("stop"));
    }

    pub(crate) fn reload(&self) {
        check(Command::new("postfix").arg("-c").arg(&self.config).arg("reload"));
    }

    pub(crate) fn socket(&self, service: &str) -> PathBuf {
        self.queue.join("private").join(service)
    }

    fn wait_for_socket(&self, service: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.socket(service).exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("Postfix did not start; log:\n{}", self.log());
    }

    /// `postmap -c CONFIG ARGS...`, with a time limit (a client stuck in its
    /// retry loop must fail the test, not hang it).
    pub(crate) fn postmap(&self, args: &[&str]) -> Output {
        let out = run(Command::new("timeout").args(["20", "postmap", "-c"]).arg(&self.config).args(args));
        out
    }

    pub(crate) fn postmap_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("timeout")
            .args(["60", "postmap", "-c"])
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("postmap");
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).expect("stdin");
        }
        child.wait_with_output().expect("postmap output")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postfix.log")).unwrap_or_default()
    }

    pub(crate) fn master_pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.queue.join("pid/master.pid")).ok()?;
        text.trim().parse().ok()
    }
}

/// Wait up to 10 s for process `pid` to be gone.
fn wait_gone(pid: i32) {
    super::wait_until(10, || !Path::new(&format!("/proc/{pid}")).exists());
}

impl Drop for Instance {
    fn drop(&mut self) {
        let master = self.master_pid();
        self.stop();
        // proxywrite leaves master's process group; it exits on master's EOF.
        if let Some(mut child) = self.attached.take() {
            // Our child: reaped here, killed if it did not stop.
            if !super::wait_until(10, || !matches!(child.try_wait(), Ok(None))) {
                let _ = child.kill();
            }
            let _ = child.wait();
        } else if let Some(pid) = master {
            wait_gone(pid);
        }
    }
}
