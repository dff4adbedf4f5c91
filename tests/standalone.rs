//! The real binary in standalone mode: lookups on both sockets, worker
//! respawn after kill -9, max_use, SIGHUP reload, SIGTERM shutdown, many idle
//! connections.

mod common;

use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use proxymap::client::{attr, Client};
use std::time::Duration;

const TOML: &str = r#"
config_directory = "@DIR@"
socket_directory = "@DIR@/private"
max_use = 1000
max_idle = 100
[proxymap]
workers = 2
[proxywrite]
workers = 1
"#;

const MAIN_CF: &str = "
demo = @DIR@
virtual_alias_maps = proxy:texthash:$demo/virtual
proxy_read_maps = $virtual_alias_maps proxy:static:hello proxy:environ:env
proxy_write_maps = proxy:environ:env
";

const VIRTUAL: &str = "alice@example.com alice-value\nbob@example.com bob-value\n";

fn start(tag: &str, toml: &str) -> Daemon {
    let d = Daemon::start(tag, toml, MAIN_CF);
    d.dir.write("virtual", VIRTUAL);
    d.wait_for_socket("proxywrite");
    d
}

fn texthash(d: &Daemon) -> String {
    format!("texthash:{}/virtual", d.dir.path().display())
}

fn lookup_value(d: &Daemon, table: &str, key: &str) -> Option<String> {
    let mut c = Client::connect(&d.socket("proxymap")).ok()?;
    let reply = c
        .call(&[("request", b"lookup"), ("table", table.as_bytes()), ("flags", b"540737"), ("key", key.as_bytes())])
        .ok()?;
    if attr(&reply, "status") != Some(b"0") {
        return None;
    }
    attr(&reply, "value").map(|v| String::from_utf8_lossy(v).into_owned())
}

#[test]
fn serves_lookups_on_both_sockets() {
    let d = start("both", TOML);
    let t = texthash(&d);
    let mut r = Raw::connect(&d.socket("proxymap"));
    assert_eq!(r.call(&lookup(&t, "alice@example.com")), found("alice-value"));
    assert_eq!(r.call(&lookup(&t, "nobody@example.com")), list(&[("status", "1"), ("value", "")]));
    assert_eq!(r.call(&lookup("static:hello", "x")), found("hello"));

    let mut w = Raw::connect(&d.socket("proxywrite"));
    let update =
        [("request", "update"), ("table", "environ:env"), ("flags", "0"), ("key", "pm_test_var"), ("value", "v1")];
    assert_eq!(w.call(&update), list(&[("status", "0")]));
    assert_eq!(w.call(&lookup("environ:env", "pm_test_var")), found("v1"));
    // the read-only service refuses updates
    assert_eq!(r.call(&update), list(&[("status", "4")]));
    assert!(d.log().contains("warning: refusing environ:env update request on non-proxywrite service"), "{}", d.log());
}

#[test]
fn killed_worker_is_replaced_and_service_continues() {
    let d = start("respawn", TOML);
    let t = texthash(&d);
    assert!(wait_until(5, || d.workers().len() == 3), "workers: {:?}", d.workers());
    let before = d.workers();
    let victim = before[0];
    kill(Pid::from_raw(victim), Signal::SIGKILL).expect("kill worker");
    assert!(
        wait_until(5, || {
            let now = d.workers();
            now.len() == 3 && !now.contains(&victim)
        }),
        "worker not replaced: {:?}",
        d.workers()
    );
    // After the respawn every request succeeds.
    for i in 0..200 {
        assert_eq!(lookup_value(&d, &t, "bob@example.com").as_deref(), Some("bob-value"), "request {i}");
    }
    assert!(d.log().contains(&format!("pid {victim} killed by signal 9")), "{}", d.log());
}

#[test]
fn max_use_retires_workers() {
    let toml = TOML.replace("max_use = 1000", "max_use = 2").replace("workers = 2", "workers = 1");
    let d = start("maxuse", &toml);
    let t = texthash(&d);
    assert!(wait_until(5, || d.workers().len() == 2));
    let first = d.workers();
    for _ in 0..6 {
        assert_eq!(lookup_value(&d, &t, "alice@example.com").as_deref(), Some("alice-value"));
    }
    // 6 clients at max_use 2 per worker: the original reader is gone.
    assert!(
        wait_until(5, || {
            let now = d.workers();
            now.len() == 2 && now.iter().filter(|p| first.contains(p)).count() == 1
        }),
        "before {first:?} after {:?}",
        d.workers()
    );
}

#[test]
fn sighup_rereads_configuration_and_replaces_workers() {
    let d = start("hup", TOML);
    assert_eq!(lookup_value(&d, "static:newtable", "x"), None);
    let before = d.workers();
    d.dir.write(
        "main.cf",
        MAIN_CF
            .replace("@DIR@", &d.dir.path().display().to_string())
            .replace("proxy:static:hello", "proxy:static:hello proxy:static:newtable")
            // As Daemon::start wrote it: the daemon's files stay in the test's directory.
            + &format!("\ndata_directory = {}\n", d.dir.path().display()),
    );
    d.signal(Signal::SIGHUP);
    assert!(
        wait_until(5, || {
            let now = d.workers();
            now.len() == 3 && now.iter().all(|p| !before.contains(p))
        }),
        "workers not replaced: {before:?} -> {:?}",
        d.workers()
    );
    assert_eq!(lookup_value(&d, "static:newtable", "x").as_deref(), Some("newtable"));
    // connections keep being accepted during and after the reload
    for _ in 0..50 {
        assert_eq!(lookup_value(&d, "static:hello", "x").as_deref(), Some("hello"));
    }
}

#[test]
fn sigterm_stops_everything_and_removes_sockets() {
    let mut d = start("term", TOML);
    assert!(wait_until(5, || d.workers().len() == 3));
    let workers = d.workers();
    d.signal(Signal::SIGTERM);
    assert!(wait_until(10, || matches!(d.child.try_wait(), Ok(Some(_)))), "master did not exit");
    for w in workers {
        assert!(!std::path::Path::new(&format!("/proc/{w}")).exists() || is_zombie_or_gone(w), "worker {w} survived");
    }
    assert!(!d.socket("proxymap").exists());
    assert!(!d.socket("proxywrite").exists());
}

fn is_zombie_or_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')),
        Err(_) => true,
    }
}

#[test]
fn many_idle_connections_do_not_block_service() {
    let toml = TOML.replace("workers = 2", "workers = 1");
    let d = start("idle", &toml);
    let t = texthash(&d);
    let mut idle = Vec::new();
    for _ in 0..10_000 {
        match std::os::unix::net::UnixStream::connect(d.socket("proxymap")) {
            Ok(s) => idle.push(s),
            Err(e) => panic!("connection {} refused: {e}", idle.len()),
        }
    }
    // One worker now holds every idle connection and still answers at once.
    let start = std::time::Instant::now();
    assert_eq!(lookup_value(&d, &t, "alice@example.com").as_deref(), Some("alice-value"));
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(idle);
    assert_eq!(lookup_value(&d, &t, "bob@example.com").as_deref(), Some("bob-value"));
}

#[test]
fn no_connection_is_lost_while_workers_retire() {
    // A tiny max_use retires workers constantly; connections handed to a
    // retiring worker must still be served.
    let toml = TOML.replace("max_use = 1000", "max_use = 5");
    let d = start("retire-race", &toml);
    let t = texthash(&d);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for i in 0..400 {
                    assert_eq!(lookup_value(&d, &t, "alice@example.com").as_deref(), Some("alice-value"), "lookup {i}");
                }
            });
        }
    });
}

/// ps tells the master from its workers, and the workers by service.
#[test]
fn workers_are_named_by_service() {
    let d = start("names", TOML);
    let comm = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string();
    // A worker renames itself just after the fork.
    let names = || {
        let mut names: Vec<String> = d.workers().into_iter().map(comm).collect();
        names.sort();
        names
    };
    assert!(wait_until(10, || names() == ["pm-proxymap", "pm-proxymap", "pm-proxywrite"]), "workers: {:?}", names());
    assert_eq!(comm(d.pid()), "proxymap");
}

fn open_fds(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// A worker that stops reading its channel (stopped here; in life, stuck)
/// must not make the master accept without bound: it stops accepting for
/// that service until the channel drains, leaving clients in the kernel's
/// backlog, and every client is served once the worker runs again.
#[test]
fn a_backed_up_worker_channel_stops_the_master_accepting() {
    let toml = TOML.replace("workers = 2", "workers = 1");
    let d = start("backlog", &toml);
    let t = texthash(&d);
    // Workers are forked and renamed just after the sockets are bound.
    let is_reader =
        |p: &i32| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "pm-proxymap");
    assert!(wait_until(10, || d.workers().iter().any(is_reader)), "workers: {:?}", d.workers());
    let reader = d.workers().into_iter().find(is_reader).expect("a proxymap worker");
    let baseline = open_fds(d.pid());
    kill(Pid::from_raw(reader), Signal::SIGSTOP).expect("SIGSTOP");
    let socket = d.socket("proxymap");
    let clients = std::thread::spawn(move || {
        (0..3000)
            .map(|i| std::os::unix::net::UnixStream::connect(&socket).unwrap_or_else(|e| panic!("connect {i}: {e}")))
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_secs(3));
    let held = open_fds(d.pid());
    kill(Pid::from_raw(reader), Signal::SIGCONT).expect("SIGCONT");
    assert!(held < baseline + 64, "the master holds {held} descriptors (was {baseline}) for a stopped worker");
    let clients = clients.join().expect("clients");
    for stream in clients {
        stream.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
        let mut raw = Raw { stream };
        assert_eq!(raw.read_lists(1), b"protocol\0proxymap_protocol\0\0");
        assert_eq!(raw.call(&lookup(&t, "alice@example.com")), found("alice-value"));
    }
}

/// systemd's `Type=notify` protocol, against a listener of our own: READY=1
/// once both sockets answer, RELOADING=1 then READY=1 around SIGHUP,
/// STOPPING=1 on SIGTERM.
#[test]
fn readiness_is_reported_to_the_service_manager() {
    let listen_dir = TempDir::new("notify");
    let path = listen_dir.path().join("notify");
    let manager = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
    manager.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let recv = || {
        let mut buf = [0u8; 512];
        let n = manager.recv(&mut buf).expect("a message from the daemon");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let d = Daemon::spawn("notify", TOML, MAIN_CF, &[("NOTIFY_SOCKET", path.as_os_str())]);
    d.dir.write("virtual", VIRTUAL);
    let ready = recv();
    // The moment READY=1 arrives, both sockets take clients.
    for service in ["proxymap", "proxywrite"] {
        assert!(std::os::unix::net::UnixStream::connect(d.socket(service)).is_ok(), "{service} not bound at READY");
    }
    assert_eq!(ready, format!("READY=1\nSTATUS=serving\nMAINPID={}", d.pid()));
    assert_eq!(lookup_value(&d, &texthash(&d), "alice@example.com").as_deref(), Some("alice-value"));
    d.signal(Signal::SIGHUP);
    let reloading = recv();
    assert!(reloading.starts_with("RELOADING=1\nMONOTONIC_USEC="), "{reloading}");
    assert!(recv().starts_with("READY=1"));
    d.signal(Signal::SIGTERM);
    assert_eq!(recv(), "STOPPING=1");
}

/// The README's first command on a host where Postfix runs: the client,
/// started with the demo server beside it (`-w`), must wait for the demo's
/// socket, not take Postfix's, which is there already (found through
/// `$MAIL_CONFIG`): it asked Postfix's proxymap and got DENY.
#[test]
fn a_waiting_client_waits_for_the_demo_even_beside_a_running_postfix() {
    let host = TempDir::new("client-host");
    let queue = host.path().join("queue");
    std::fs::create_dir_all(queue.join("private")).expect("mkdir");
    host.write("main.cf", format!("queue_directory = {}\n", queue.display()));
    // "Postfix's" proxymap socket: it accepts and never answers.
    let _postfix = std::os::unix::net::UnixListener::bind(queue.join("private/proxymap")).expect("bind");
    let cwd = TempDir::new("client-cwd");
    let bin = env!("CARGO_BIN_EXE_proxymap");
    let table = format!("texthash:{}/proxymap-demo/virtual", cwd.path().display());
    let client = std::process::Command::new(bin)
        .args(["client", "-w", "30", "lookup", &table, "info@example.com"])
        .current_dir(cwd.path())
        .env("MAIL_CONFIG", host.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("client");
    std::thread::sleep(Duration::from_millis(300));
    let mut server = std::process::Command::new(bin)
        .arg("standalone")
        .current_dir(cwd.path())
        .env("MAIL_CONFIG", host.path())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("standalone");
    let out = client.wait_with_output().expect("client output");
    let _ = kill(Pid::from_raw(server.id() as i32), Signal::SIGTERM);
    let _ = server.wait();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "alice@example.com, bob@example.com\n");
}
