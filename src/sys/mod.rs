//! Everything that needs `unsafe`, each wrapped once with a `// SAFETY:` note:
//! system calls beyond std (descriptor passing, fork, inherited descriptors,
//! local time) here, and the C libraries in the submodules (Berkeley DB,
//! LMDB, POSIX regex and PCRE2, the passwd/group database). The rest of the
//! crate calls only the safe functions of this module tree.

#![allow(unsafe_code)]

pub(crate) mod db;
pub(crate) mod errno;
pub(crate) mod ldap;
pub(crate) mod lmdb;
pub(crate) mod map_guard;
pub(crate) mod mysql;
pub(crate) mod passwd;
pub(crate) mod pq;
pub(crate) mod regex;
pub(crate) mod shared_map;

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::unistd::ForkResult;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A connected pair of SOCK_SEQPACKET sockets, close-on-exec: message
/// boundaries are kept, so one message carries one command and at most one fd.
/// Blocking; callers choose per call (see [`send_msg`], [`recv_msg`]).
pub(crate) fn seqpacket_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
}

/// Whether a send may wait for room in the peer's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Send {
    /// Fail with EAGAIN when the queue is full (the master never blocks).
    NoWait,
    /// Wait for room (a worker's reports must not be lost).
    Wait,
}

/// Send a one-byte command, with a descriptor if given.
pub fn send_msg(sock: &impl AsRawFd, cmd: u8, fd: Option<RawFd>, mode: Send) -> nix::Result<()> {
    let buf = [cmd];
    let iov = [IoSlice::new(&buf)];
    let fds;
    let cmsgs: &[ControlMessage<'_>] = match fd {
        Some(fd) => {
            fds = [fd];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    let flags = match mode {
        Send::NoWait => MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        Send::Wait => MsgFlags::MSG_NOSIGNAL,
    };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, flags, None)?;
    Ok(())
}

/// What [`recv_msg`] got.
pub enum Received {
    Message(u8, Option<OwnedFd>),
    /// The peer closed its end.
    Eof,
    /// Nothing queued right now.
    Empty,
}

/// Receive one command (and the descriptor it carries) without waiting.
/// Descriptors arrive close-on-exec.
pub fn recv_msg(sock: &impl AsRawFd) -> nix::Result<Received> {
    let mut buf = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = match recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    ) {
        Ok(m) => m,
        Err(nix::errno::Errno::EAGAIN) => return Ok(Received::Empty),
        Err(e) => return Err(e),
    };
    let mut fd = None;
    // MSG_CTRUNC: the kernel could not install the descriptor here (out of
    // descriptors) and dropped it; the message itself still counts.
    let cmsgs = msg.cmsgs().ok().into_iter().flatten();
    for cmsg in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            for raw in fds {
                // SAFETY: the kernel just installed `raw` in our table for us; nobody else owns it.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if fd.is_none() {
                    fd = Some(owned);
                }
            }
        }
    }
    if msg.bytes == 0 {
        return Ok(Received::Eof);
    }
    Ok(Received::Message(buf[0], fd))
}

/// fork(2).
///
/// # Safety
///
/// The process must be single-threaded, or the child must call only
/// async-signal-safe functions until it execs or exits: the child gets a copy
/// of every lock (allocator, stdio, our own mutexes) as the other threads
/// held it, and no thread that could release it.
unsafe fn fork() -> nix::Result<ForkResult> {
    // SAFETY: the caller upholds this function's contract, which is nix's.
    unsafe { nix::unistd::fork() }
}

/// fork(2) for the standalone master, whose children go on to run a whole
/// worker (allocating, locking, logging) without exec.
///
/// That is sound because the master is single-threaded: it waits on one epoll
/// set, takes signals through a signalfd and starts no thread. This wrapper
/// relies on that and checks it before every fork, cheaply (one read of
/// /proc/self/status; forks happen when workers start, not per request).
///
/// # Panics
///
/// When another thread runs in this process: the master's design was broken
/// by a change, and a child could deadlock on a lock that thread held. Without
/// a readable /proc the check is skipped and the design is trusted.
pub(crate) fn fork_single_threaded() -> nix::Result<ForkResult> {
    let threads = thread_count();
    assert!(
        threads.is_none_or(|n| n == 1),
        "fork with {} threads running: the master must stay single-threaded",
        threads.unwrap_or(0)
    );
    // SAFETY: this process has one thread (checked just above; the check
    // cannot go stale, as only this thread could start another one).
    unsafe { fork() }
}

/// Threads of this process (the `Threads:` line of /proc/self/status), or
/// None when that cannot be read.
fn thread_count() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| line.strip_prefix("Threads:"))?.trim().parse().ok()
}

/// Raise the soft open-files limit to the hard limit: a worker may hold
/// thousands of idle client connections.
pub(crate) fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// Take ownership of a descriptor inherited from our parent (Postfix's
/// master(8) passes the status channel as 5 and listeners from 6 on).
/// Fails unless `fd` is open.
pub(crate) fn inherited_fd(fd: RawFd) -> nix::Result<OwnedFd> {
    nix::fcntl::fcntl(borrowed(fd)?, nix::fcntl::FcntlArg::F_GETFD)?;
    // SAFETY: `fd` is open (checked above) and, being inherited across exec,
    // is owned by no other object in this process.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    set_cloexec(&owned)?;
    Ok(owned)
}

/// An inherited listening socket; fails unless `fd` is a socket.
pub(crate) fn inherited_listener(fd: RawFd) -> nix::Result<std::os::unix::net::UnixListener> {
    let stat = nix::sys::stat::fstat(borrowed(fd)?)?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(nix::errno::Errno::ENOTSOCK);
    }
    Ok(std::os::unix::net::UnixListener::from(inherited_fd(fd)?))
}

fn borrowed(fd: RawFd) -> nix::Result<std::os::fd::BorrowedFd<'static>> {
    if fd < 0 {
        return Err(nix::errno::Errno::EBADF);
    }
    // SAFETY: only used for the fcntl/fstat probes above, which the kernel
    // answers with EBADF if `fd` is not open; the borrow does not outlive them.
    Ok(unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
}

fn set_cloexec(fd: &OwnedFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(drop)
}

/// Postfix's chroot_uid(): switch group, supplementary groups, optionally
/// chroot, then user. Errors carry Postfix's texts.
pub(crate) fn drop_privileges(user: Option<&str>, jail: Option<&std::path::Path>) -> Result<(), String> {
    use nix::unistd::{chdir, chroot, initgroups, setgid, setuid, User};
    let account = match user {
        Some(name) => match User::from_name(name) {
            Ok(Some(u)) => Some(u),
            _ => return Err(format!("unknown user: {name}")),
        },
        None => None,
    };
    if let Some(u) = &account {
        setgid(u.gid).map_err(|e| format!("setgid({}): {}", u.gid, errno::strerror(e as i32)))?;
        let cname = std::ffi::CString::new(u.name.as_str()).map_err(|_| format!("unknown user: {}", u.name))?;
        initgroups(&cname, u.gid).map_err(|e| format!("initgroups: {}", errno::strerror(e as i32)))?;
    }
    if let Some(dir) = jail {
        chroot(dir).map_err(|e| format!("chroot({}): {}", dir.display(), errno::strerror(e as i32)))?;
        chdir("/").map_err(|e| format!("chdir(/): {}", errno::strerror(e as i32)))?;
    }
    if let Some(u) = &account {
        setuid(u.uid).map_err(|e| format!("setuid({}): {}", u.uid, errno::strerror(e as i32)))?;
    }
    Ok(())
}

/// Local time as `Mon DD HH:MM:SS` (strftime `%b %d %H:%M:%S`, C locale), the
/// time stamp of Postfix's own log records.
pub(crate) fn syslog_timestamp() -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let now: libc::time_t =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as libc::time_t);
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return "Jan 01 00:00:00".into();
    }
    let month = MONTHS.get(tm.tm_mon as usize).copied().unwrap_or("Jan");
    format!("{month} {:02} {:02}:{:02}:{:02}", tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// Give memory freed to malloc back to the kernel. Worth it after a one-off
/// burst of allocations (a Berkeley DB verify pass allocates per page of the
/// file and frees it all), so that the resident set reflects what stays.
pub(crate) fn release_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own heap under its own lock.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_count_sees_the_test_harness_threads() {
        // The harness runs each test on a thread of its own, besides main.
        assert!(thread_count().is_some_and(|n| n >= 2), "{:?}", thread_count());
    }

    #[test]
    #[should_panic(expected = "the master must stay single-threaded")]
    fn fork_refuses_a_multithreaded_process() {
        // Panics before forking: this process has the harness's threads.
        let _ = fork_single_threaded();
    }
}
