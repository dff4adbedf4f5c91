//! Small servers for the network tables' unit tests: a thread accepting on
//! 127.0.0.1 (port 0 or a given one) or a UNIX socket, a thread per
//! connection reading requests (netstrings or lines) and answering each as
//! the test's responder says: a reply, a close, or silence. Dropping the
//! server closes the listener and every connection.

use super::endpoint::{Endpoint, Stream};
use super::netstring;
use crate::sync::lock;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the server does with one request.
pub(crate) enum Action {
    Reply(Vec<u8>),
    /// Close the connection without a reply.
    Close,
    /// Never answer (until the server is dropped).
    Hang,
}

/// How requests are framed.
#[derive(Clone, Copy)]
pub(crate) enum Framing {
    Netstring,
    Line,
}

pub(crate) type Responder = Arc<dyn Fn(&[u8]) -> Action + Send + Sync>;

/// `inner`, except that the second request seen closes its connection
/// unanswered (a server dropping a connection the client holds).
pub(crate) fn dropping_second_request(inner: Responder) -> Responder {
    let seen = AtomicUsize::new(0);
    Arc::new(move |req: &[u8]| if seen.fetch_add(1, SeqCst) == 1 { Action::Close } else { inner(req) })
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

pub(crate) struct TestServer {
    pub(crate) endpoint: Endpoint,
    /// Every request received (payloads, or lines without the newline).
    pub(crate) requests: Arc<Mutex<Vec<Vec<u8>>>>,
    pub(crate) accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: Option<JoinHandle<()>>,
}

impl TestServer {
    /// On 127.0.0.1, on `port` (0: any free one).
    pub(crate) fn tcp(port: u16, framing: Framing, respond: Responder) -> TestServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        Self::serve(Listener::Tcp(listener), Endpoint::Inet { host: "127.0.0.1".into(), port }, framing, respond)
    }

    /// On a UNIX socket at `path` (replacing any socket there).
    pub(crate) fn unix(path: PathBuf, framing: Framing, respond: Responder) -> TestServer {
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).expect("bind");
        Self::serve(Listener::Unix(listener), Endpoint::Unix(path), framing, respond)
    }

    fn serve(listener: Listener, endpoint: Endpoint, framing: Framing, respond: Responder) -> TestServer {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let (st, rq, ac, th) = (stop.clone(), requests.clone(), accepted.clone(), threads.clone());
        match &listener {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l) => l.set_nonblocking(true),
        }
        .expect("nonblocking");
        let acceptor = std::thread::spawn(move || {
            while !st.load(SeqCst) {
                let stream = match &listener {
                    Listener::Tcp(l) => l.accept().map(|(s, _)| Stream::Tcp(s)),
                    Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
                };
                let Ok(stream) = stream else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                ac.fetch_add(1, SeqCst);
                let (st, rq, respond) = (st.clone(), rq.clone(), respond.clone());
                lock(&th).push(std::thread::spawn(move || converse(stream, framing, &respond, &rq, &st)));
            }
        });
        TestServer { endpoint, requests, accepted, stop, threads, acceptor: Some(acceptor) }
    }

    pub(crate) fn port(&self) -> u16 {
        match &self.endpoint {
            Endpoint::Inet { port, .. } => *port,
            Endpoint::Unix(_) => 0,
        }
    }

    pub(crate) fn request_count(&self) -> usize {
        lock(&self.requests).len()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for t in std::mem::take(&mut *lock(&self.threads)) {
            let _ = t.join();
        }
    }
}

fn converse(
    mut stream: Stream,
    framing: Framing,
    respond: &Responder,
    requests: &Mutex<Vec<Vec<u8>>>,
    stop: &AtomicBool,
) {
    // nonblocking listeners may hand out nonblocking streams
    let nonblocking = match &stream {
        Stream::Tcp(s) => s.set_nonblocking(false),
        Stream::Unix(s) => s.set_nonblocking(false),
    };
    if nonblocking.is_err() || stream.set_timeouts(Duration::from_millis(20)).is_err() {
        return;
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    while !stop.load(SeqCst) {
        let request = match framing {
            Framing::Netstring => match netstring::decode(&buf, usize::MAX) {
                Ok(Some(d)) => Some((buf[d.payload].to_vec(), d.consumed)),
                Ok(None) => None,
                Err(_) => return,
            },
            Framing::Line => buf.iter().position(|b| *b == b'\n').map(|i| (buf[..i].to_vec(), i + 1)),
        };
        if let Some((request, used)) = request {
            buf.drain(..used);
            lock(requests).push(request.clone());
            match respond(&request) {
                Action::Reply(bytes) => {
                    if stream.write_all(&bytes).is_err() {
                        return;
                    }
                }
                Action::Close => return,
                Action::Hang => {
                    while !stop.load(SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    return;
                }
            }
            continue;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
