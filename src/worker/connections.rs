//! The event loop's side of its client connections: taking one on,
//! reading and answering its requests, writing replies, handing it to a
//! connection thread, closing it. (The loop itself, its books and the
//! process's lifetime are in `worker/mod.rs`.)

use super::conn::{self, Conn, ReadStatus};
use super::request_budget::{self, InBuf};
use super::threads::{Handoff, Threads};
use super::{Intake, Worker, FIRST_CONN_TOKEN};
use crate::protocol::{self, Parse, ANNOUNCEMENT};
use crate::service::{Place, Served, Session};
use nix::sys::epoll::{EpollEvent, EpollFlags};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Instant;

impl Worker {
    pub(super) fn add_conn(&mut self, stream: UnixStream) {
        // A client accepted: this process started fine (configuration,
        // privileges, sockets are behind it). master(8) takes a process that
        // dies before its first reported use for a broken command and stops
        // the whole service for a minute; one killed from here on (kill -9,
        // the OOM killer) is not that, whatever path its requests take.
        // Not before the first accept: a TAKEN while the connection that
        // made master start this process still waits makes it start another.
        self.report_use();
        if let Some(s) = self.service.stats() {
            s.connection_opened();
        }
        if let Intake::Master(_) = self.intake {
            self.service.before_accept();
        }
        if self.move_after == 0 && self.threads.as_ref().is_some_and(Threads::has_room) {
            self.active += 1;
            self.idle_since = None;
            let pending = InBuf::new(&self.budget);
            self.hand_to_thread(Handoff { stream, greet: true, session: Session::default(), pending });
            return;
        }
        if stream.set_nonblocking(true).is_err() {
            return self.connection_ended();
        }
        let now = Instant::now();
        let mut conn = Conn::new(stream, InBuf::new(&self.budget), now);
        conn.outbuf.extend_from_slice(ANNOUNCEMENT);
        let slot = match self.free.pop() {
            Some(i) => i,
            None => {
                self.conns.push(None);
                self.conns.len() - 1
            }
        };
        let token = FIRST_CONN_TOKEN + slot as u64;
        if self.epoll.add(conn.stream.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, token)).is_err() {
            self.free.push(slot);
            return self.connection_ended();
        }
        self.conns[slot] = Some(conn);
        self.active += 1;
        self.idle_since = None;
        self.write_reply(slot, now);
    }

    pub(super) fn conn_event(&mut self, slot: usize, events: EpollFlags) {
        let now = Instant::now();
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else { return };
        if conn.has_output() {
            // Replies go out before more input is read: one request at a time.
            if events.intersects(EpollFlags::EPOLLOUT | EpollFlags::EPOLLERR | EpollFlags::EPOLLHUP) {
                self.write_reply(slot, now);
            }
            return;
        }
        let grown_from = conn.inbuf.len();
        let status = match conn.read_some(&mut self.scratch) {
            Ok(s) => s,
            Err(_) => return self.close(slot),
        };
        match status {
            ReadStatus::WouldBlock => {}
            ReadStatus::OverBudget => {
                request_budget::warn_over(self.service.stream(), &self.budget);
                self.close(slot)
            }
            ReadStatus::Eof => {
                if let Some(inc) = conn.incomplete.filter(|_| !conn.inbuf.is_empty()) {
                    conn::warn_end_of_input(self.service.stream(), inc);
                }
                self.close(slot)
            }
            ReadStatus::Data => {
                conn.last_active = now;
                if conn.served >= self.move_after && self.threads.as_ref().is_some_and(Threads::has_room) {
                    return self.move_to_thread(slot);
                }
                match protocol::parse_more(&conn.inbuf, grown_from, conn.incomplete) {
                    Parse::NeedMore(inc) => {
                        conn.incomplete = Some(inc);
                        conn.request_started.get_or_insert(now);
                        if conn.inbuf.len() > self.limits.max_request {
                            log::warn!(
                                "request from {} exceeds {} bytes -- closing connection",
                                self.service.stream(),
                                self.limits.max_request
                            );
                            self.close(slot);
                        }
                    }
                    Parse::Done { outcome, .. } => {
                        // With a thread to move to, this loop never waits
                        // for a table: such a request moves, unanswered.
                        let place = match self.threads.as_ref().is_some_and(Threads::has_room) {
                            true => Place::EventLoop,
                            false => Place::MayWait,
                        };
                        let served = self.service.handle(&outcome, &mut conn.session, &mut conn.outbuf, place);
                        if served == Served::WouldBlock {
                            return self.move_to_thread(slot);
                        }
                        // Like Postfix, input received beyond this request is
                        // discarded when the reply is sent: clients never pipeline.
                        conn.inbuf.clear();
                        conn.incomplete = None;
                        conn.request_started = None;
                        conn.served = conn.served.saturating_add(1);
                        self.write_reply(slot, now);
                        self.spin.served(slot);
                    }
                }
            }
        }
    }

    /// Send pending output; wait for writability if the socket is full.
    pub(super) fn write_reply(&mut self, slot: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::as_mut) else { return };
        if !conn.has_output() {
            return;
        }
        let was_waiting = conn.write_started.is_some();
        match conn.flush() {
            Ok(true) => {
                conn.write_started = None;
                if was_waiting {
                    let token = FIRST_CONN_TOKEN + slot as u64;
                    let mut ev = EpollEvent::new(EpollFlags::EPOLLIN, token);
                    let _ = self.epoll.modify(conn.stream.as_fd(), &mut ev);
                }
            }
            Ok(false) => {
                if !was_waiting {
                    conn.write_started = Some(now);
                    let token = FIRST_CONN_TOKEN + slot as u64;
                    let mut ev = EpollEvent::new(EpollFlags::EPOLLOUT, token);
                    let _ = self.epoll.modify(conn.stream.as_fd(), &mut ev);
                }
            }
            Err(_) => self.close(slot),
        }
    }

    /// Hand a connection on this loop to a connection thread, with what was
    /// read of its next request.
    pub(super) fn move_to_thread(&mut self, slot: usize) {
        let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) else { return };
        let _ = self.epoll.delete(conn.stream.as_fd());
        self.free.push(slot);
        self.hand_to_thread(Handoff { stream: conn.stream, greet: false, session: conn.session, pending: conn.inbuf });
    }

    /// A connection counted in `active` goes to a thread; it stays counted
    /// until the thread tells that it ended.
    pub(super) fn hand_to_thread(&mut self, handoff: Handoff) {
        let dispatched = match &self.threads {
            Some(threads) => threads.dispatch(handoff),
            None => Err(std::io::Error::other("no connection threads")),
        };
        if let Err(e) = dispatched {
            log::error!("start connection thread: {e}");
            self.active -= 1;
            self.connection_ended();
        }
    }

    pub(super) fn close(&mut self, slot: usize) {
        if let Some(conn) = self.conns.get_mut(slot).and_then(Option::take) {
            let _ = self.epoll.delete(conn.stream.as_fd());
            self.free.push(slot);
            self.active -= 1;
            self.connection_ended();
        }
    }
}
