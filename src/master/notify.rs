//! systemd's readiness protocol (sd_notify(3)) for `Type=notify` units:
//! one datagram per state change to the socket named by `$NOTIFY_SOCKET`.
//! Without that variable every call is a no-op, so the master runs the same
//! under systemd, another supervisor or a shell.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Where state changes go, if a service manager asked for them.
pub(crate) struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
}

impl Notifier {
    pub(crate) fn from_env() -> Notifier {
        let target = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            match address(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())) {
                Ok(addr) => match UnixDatagram::unbound() {
                    Ok(sock) => Some((sock, addr)),
                    Err(e) => {
                        log::warn!("NOTIFY_SOCKET: socket: {e}");
                        None
                    }
                },
                Err(e) => {
                    log::warn!("NOTIFY_SOCKET={}: {e}", path.to_string_lossy());
                    None
                }
            }
        });
        Notifier { target }
    }

    /// The sockets are bound: clients may connect (they wait in the backlog
    /// until a worker takes them).
    pub(crate) fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}\nMAINPID={}", std::process::id()));
    }

    /// SIGHUP received; `ready` follows once the configuration is re-read
    /// (or kept, if the new one is bad). systemd wants the monotonic clock.
    pub(crate) fn reloading(&self) {
        let usec = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|t| t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1000)
            .unwrap_or(0);
        self.send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
    }

    pub(crate) fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, message: &str) {
        if let Some((sock, addr)) = &self.target {
            // The manager not listening is its problem, not the service's:
            // one warning, and serving goes on.
            if let Err(e) = sock.send_to_addr(message.as_bytes(), addr) {
                log::warn!("NOTIFY_SOCKET: send: {e}");
            }
        }
    }
}

/// `/path` or `@abstract` (systemd's spelling of a Linux abstract name).
fn address(spec: &[u8]) -> std::io::Result<SocketAddr> {
    match spec {
        [b'@', name @ ..] => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)
        }
        [b'/', ..] => SocketAddr::from_pathname(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(spec)),
        _ => Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "neither an absolute path nor @name")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> (crate::test_support::TempDir, UnixDatagram, std::path::PathBuf) {
        let dir = crate::test_support::TempDir::new("notify");
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).expect("bind");
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        (dir, sock, path)
    }

    fn recv(sock: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = sock.recv(&mut buf).expect("a datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn messages_reach_a_path_socket() {
        let (_dir, sock, path) = listener();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().expect("socket"),
                address(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())).expect("address"),
            )),
        };
        n.ready("serving");
        assert_eq!(recv(&sock), format!("READY=1\nSTATUS=serving\nMAINPID={}", std::process::id()));
        n.reloading();
        let r = recv(&sock);
        assert!(r.starts_with("RELOADING=1\nMONOTONIC_USEC=") && r.len() > 30, "{r}");
        n.stopping();
        assert_eq!(recv(&sock), "STOPPING=1");
    }

    #[test]
    fn abstract_names_and_bad_values() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("proxymap-notify-test-{}", std::process::id());
        let sock =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).expect("name")).expect("bind");
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5))).expect("timeout");
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().expect("socket"),
                address(format!("@{name}").as_bytes()).expect("address"),
            )),
        };
        n.stopping();
        assert_eq!(recv(&sock), "STOPPING=1");
        assert!(address(b"relative/path").is_err());
        assert!(address(b"").is_err());
    }

    #[test]
    fn without_a_manager_nothing_is_sent() {
        let n = Notifier { target: None };
        n.ready("x");
        n.stopping();
    }
}
