//! Status records to Postfix's master(8): 12 bytes `{pid, generation,
//! avail}` in native byte order on descriptor 5.

use std::io::{self, Write};
use std::os::fd::OwnedFd;

pub(crate) const TAKEN: i32 = 0;
pub(crate) const AVAIL: i32 = 1;

/// One record, as master(8) reads it.
pub(crate) fn record(pid: i32, generation: u32, avail: i32) -> [u8; 12] {
    let mut r = [0u8; 12];
    r[0..4].copy_from_slice(&pid.to_ne_bytes());
    r[4..8].copy_from_slice(&generation.to_ne_bytes());
    r[8..12].copy_from_slice(&avail.to_ne_bytes());
    r
}

/// The child end of the service's status channel.
pub struct MasterStatus {
    fd: std::fs::File,
    generation: u32,
    /// master(8) counts a use only on a TAKEN→AVAIL change; one such change
    /// at the first accepted client tells it this process started fine.
    reported_use: bool,
    /// What master was last told: TAKEN makes it start another process for
    /// the next new connection.
    taken: bool,
    /// Accepting is paused (out of descriptors): master is told TAKEN
    /// meanwhile, so that another process serves new connections.
    paused: bool,
    load: Load,
}

/// Share of wall time the event loop spends working rather than waiting,
/// measured over short windows.
struct Load {
    window_start: std::time::Instant,
    busy: std::time::Duration,
}

/// Window length, and the thresholds (with hysteresis) for telling master
/// we are saturated or available again.
const WINDOW: std::time::Duration = std::time::Duration::from_millis(200);
const BUSY_ABOVE: f64 = 0.85;
const IDLE_BELOW: f64 = 0.5;

impl MasterStatus {
    pub fn new(fd: OwnedFd, generation: u32) -> Self {
        MasterStatus {
            fd: std::fs::File::from(fd),
            generation,
            reported_use: false,
            taken: false,
            paused: false,
            load: Load { window_start: std::time::Instant::now(), busy: std::time::Duration::ZERO },
        }
    }

    pub fn fd(&self) -> &std::fs::File {
        &self.fd
    }

    fn send(&mut self, avail: i32) -> io::Result<()> {
        let r = record(std::process::id() as i32, self.generation, avail);
        self.fd.write_all(&r)
    }

    /// Once, at the first accepted client: one TAKEN/AVAIL pair; later
    /// calls write nothing. Err: master is gone.
    pub fn started(&mut self) -> io::Result<()> {
        if !self.reported_use {
            self.reported_use = true;
            let _ = self.send(TAKEN);
            self.send(AVAIL)?;
        }
        Ok(())
    }

    /// Account one event-loop pass that worked for `busy` (time outside
    /// epoll_wait). Status records go out only when availability changes, not
    /// per request: master(8) would spend a quarter of a core reading them.
    pub fn account(&mut self, busy: std::time::Duration, now: std::time::Instant) -> io::Result<()> {
        self.load.busy += busy;
        let elapsed = now.duration_since(self.load.window_start);
        if elapsed < WINDOW {
            return Ok(());
        }
        let share = self.load.busy.as_secs_f64() / elapsed.as_secs_f64();
        self.load = Load { window_start: now, busy: std::time::Duration::ZERO };
        let before = self.taken || self.paused;
        if !self.taken && share > BUSY_ABOVE {
            self.taken = true;
        } else if self.taken && share < IDLE_BELOW {
            self.taken = false;
        }
        self.tell(before)
    }

    /// Accepting paused (`true`, out of descriptors) or resumed.
    pub fn set_paused(&mut self, paused: bool) -> io::Result<()> {
        let before = self.taken || self.paused;
        self.paused = paused;
        self.tell(before)
    }

    /// Send a record if availability changed from `before`.
    fn tell(&mut self, before: bool) -> io::Result<()> {
        match (before, self.taken || self.paused) {
            (false, true) => {
                let _ = self.send(TAKEN);
                Ok(())
            }
            (true, false) => self.send(AVAIL),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    fn records(peer: &mut std::os::unix::net::UnixStream) -> Vec<i32> {
        peer.set_nonblocking(true).unwrap();
        let mut buf = Vec::new();
        let _ = peer.read_to_end(&mut buf);
        buf.chunks(12).map(|r| i32::from_ne_bytes([r[8], r[9], r[10], r[11]])).collect()
    }

    #[test]
    fn records_only_on_availability_changes() {
        let (ours, mut master) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut s = MasterStatus::new(OwnedFd::from(ours), 3);
        s.started().unwrap();
        s.started().unwrap();
        assert_eq!(records(&mut master), vec![TAKEN, AVAIL], "one use report, then nothing per request");
        let t0 = s.load.window_start;
        // a saturated window: TAKEN once
        s.account(Duration::from_millis(190), t0 + Duration::from_millis(200)).unwrap();
        s.account(Duration::from_millis(200), t0 + Duration::from_millis(400)).unwrap();
        assert_eq!(records(&mut master), vec![TAKEN]);
        // a quiet window: AVAIL again
        s.account(Duration::from_millis(10), t0 + Duration::from_millis(600)).unwrap();
        assert_eq!(records(&mut master), vec![AVAIL]);
        // short passes inside a window decide nothing yet
        s.account(Duration::from_millis(1), Instant::now().max(t0 + Duration::from_millis(601))).unwrap();
        assert!(records(&mut master).is_empty());
    }

    #[test]
    fn a_paused_accept_is_taken_until_it_resumes() {
        let (ours, mut master) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut s = MasterStatus::new(OwnedFd::from(ours), 3);
        s.set_paused(true).unwrap();
        s.set_paused(true).unwrap();
        assert_eq!(records(&mut master), vec![TAKEN], "once");
        // Quiet load does not make a paused process available.
        let t0 = s.load.window_start;
        s.account(Duration::from_millis(1), t0 + Duration::from_millis(200)).unwrap();
        assert!(records(&mut master).is_empty());
        s.set_paused(false).unwrap();
        assert_eq!(records(&mut master), vec![AVAIL]);
        // Saturated and paused: available again only when both are over.
        s.account(Duration::from_millis(200), t0 + Duration::from_millis(400)).unwrap();
        s.set_paused(true).unwrap();
        s.set_paused(false).unwrap();
        assert_eq!(records(&mut master), vec![TAKEN], "still saturated");
        s.account(Duration::from_millis(1), t0 + Duration::from_millis(600)).unwrap();
        assert_eq!(records(&mut master), vec![AVAIL]);
    }

    #[test]
    fn record_layout_matches_master_proto() {
        // spec 5.2: pid 7776, GENERATION=17 (octal) = 15
        assert_eq!(record(7776, 15, TAKEN), [0x60, 0x1e, 0, 0, 0x0f, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(record(7776, 15, AVAIL), [0x60, 0x1e, 0, 0, 0x0f, 0, 0, 0, 1, 0, 0, 0]);
    }
}
