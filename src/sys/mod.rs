//! The system calls the daemon makes beyond std: descriptor passing, fork,
//! resource limits. Each is wrapped once here; `fork` is the only `unsafe`.

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag,
    SockType,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// A connected pair of SOCK_SEQPACKET sockets, close-on-exec: message
/// boundaries are kept, so one message carries one command and at most one fd.
pub fn seqpacket_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK)
}

/// Send a one-byte command, with a descriptor if given. Non-blocking: EAGAIN
/// means the peer's queue is full.
pub fn send_msg(sock: &impl AsRawFd, cmd: u8, fd: Option<RawFd>) -> nix::Result<()> {
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
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL, None)?;
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

/// Receive one command (and the descriptor it carries). Descriptors arrive
/// close-on-exec.
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
    for cmsg in msg.cmsgs()? {
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
/// Call only while the process is single-threaded (the standalone master is):
/// the child then has a consistent copy of every lock and allocator state.
pub fn fork() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: callers guarantee a single-threaded process (see above).
    unsafe { nix::unistd::fork() }
}

/// Raise the soft open-files limit to the hard limit: a worker may hold
/// thousands of idle client connections.
pub fn raise_nofile_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
