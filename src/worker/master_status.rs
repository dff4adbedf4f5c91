//! Status records to Postfix's master(8): 12 bytes `{pid, generation,
//! avail}` in native byte order on descriptor 5.

use std::io::{self, Write};
use std::os::fd::OwnedFd;

pub const TAKEN: i32 = 0;
pub const AVAIL: i32 = 1;

/// One record, as master(8) reads it.
pub fn record(pid: i32, generation: u32, avail: i32) -> [u8; 12] {
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
    /// after the first request tells it this process started fine.
    reported_use: bool,
}

impl MasterStatus {
    pub fn new(fd: OwnedFd, generation: u32) -> Self {
        MasterStatus { fd: std::fs::File::from(fd), generation, reported_use: false }
    }

    pub fn fd(&self) -> &std::fs::File {
        &self.fd
    }

    fn send(&mut self, avail: i32) -> io::Result<()> {
        let r = record(std::process::id() as i32, self.generation, avail);
        self.fd.write_all(&r)
    }

    /// After a request was served. Err: master is gone.
    pub fn served(&mut self) -> io::Result<()> {
        if !self.reported_use {
            self.reported_use = true;
            let _ = self.send(TAKEN);
            self.send(AVAIL)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_layout_matches_master_proto() {
        // spec 5.2: pid 7776, GENERATION=17 (octal) = 15
        assert_eq!(record(7776, 15, TAKEN), [0x60, 0x1e, 0, 0, 0x0f, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(record(7776, 15, AVAIL), [0x60, 0x1e, 0, 0, 0x0f, 0, 0, 0, 1, 0, 0, 0]);
    }
}
