//! A mapped table file that shrinks under us must cost a RETRY, not the
//! process. LMDB reads its file through a memory map; when someone truncates
//! the file in place (without Postfix's lock), touching a page past the new
//! end raises SIGBUS, and by default the process dies with every request it
//! was serving. A size check before each transaction narrows that window but
//! cannot close it.
//!
//! So each LMDB map is registered here ([`Watch`]). LMDB does not tell
//! where it mapped the file, so the map is found in /proc/self/maps by the
//! file's device, inode and the map's length, while [`making_map`] keeps
//! other threads from mapping meanwhile. Our SIGBUS handler, for
//! an address inside a registered map, puts a page of zeros over the faulting
//! page (an anonymous private mapping, MAP_FIXED) and marks the map faulted;
//! the instruction then re-runs and reads zeros. The owner checks
//! [`Watch::faulted`] after each operation and throws away whatever the
//! operation produced: it reopens the file instead. A fault anywhere else
//! keeps the default action (the process dies, with a core), as before.

use std::ffi::{c_int, c_void};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

/// Maps watched at once: a process has one per open LMDB table. A map
/// beyond this count is served unwatched (as before this module).
const SLOTS: usize = 256;

struct Slot {
    /// Claimed by a `Watch` (set before `start` is published).
    taken: AtomicBool,
    /// First byte of the map; 0 while the slot is not published.
    start: AtomicUsize,
    end: AtomicUsize,
    /// A fault inside the map was patched with zeros: its contents are void.
    faulted: AtomicBool,
}

#[allow(clippy::declare_interior_mutable_const)]
const FREE: Slot = Slot {
    taken: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
    faulted: AtomicBool::new(false),
};
static WATCHED: [Slot; SLOTS] = [FREE; SLOTS];
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: Once = Once::new();
static INSTALLED: AtomicBool = AtomicBool::new(false);
static MAKING: Mutex<()> = Mutex::new(());

/// Held while a watched map is made (or moved) and then found: with two maps
/// of one file made at once, each could otherwise find the other's.
pub(crate) fn making_map() -> MutexGuard<'static, ()> {
    MAKING.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Watch the map of `len` bytes of `file` made last (under [`making_map`]):
/// the one of that file and length that no other watch has. Unwatched when
/// /proc is unreadable or no such map is found.
pub(crate) fn watch_file_map(file: BorrowedFd<'_>, len: usize) -> Watch {
    let Ok(st) = nix::sys::stat::fstat(file) else { return Watch::none() };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else { return Watch::none() };
    let dev = (libc::major(st.st_dev), libc::minor(st.st_dev));
    let found = maps.lines().filter_map(parse_map_line).find(|m| {
        m.dev == dev
            && m.inode == st.st_ino
            && m.end - m.start == len
            && !WATCHED.iter().any(|s| s.start.load(Ordering::Acquire) == m.start)
    });
    match found {
        Some(m) => Watch::new(m.start, len),
        None => Watch::none(),
    }
}

struct MapLine {
    start: usize,
    end: usize,
    dev: (u32, u32),
    inode: u64,
}

/// `start-end perms offset major:minor inode [path]`, as proc(5) says.
fn parse_map_line(line: &str) -> Option<MapLine> {
    let mut f = line.split_ascii_whitespace();
    let (start, end) = f.next()?.split_once('-')?;
    let (_perms, _offset) = (f.next()?, f.next()?);
    let (major, minor) = f.next()?.split_once(':')?;
    Some(MapLine {
        start: usize::from_str_radix(start, 16).ok()?,
        end: usize::from_str_radix(end, 16).ok()?,
        dev: (u32::from_str_radix(major, 16).ok()?, u32::from_str_radix(minor, 16).ok()?),
        inode: f.next()?.parse().ok()?,
    })
}

/// One watched map; unwatched on drop (before the map goes).
pub(crate) struct Watch {
    slot: Option<usize>,
}

impl Watch {
    /// Watch the `len` bytes mapped at `start`. Installs the handler on first
    /// use; if that fails, or every slot is taken, the map is unwatched.
    fn new(start: usize, len: usize) -> Watch {
        INSTALL.call_once(install);
        if !INSTALLED.load(Ordering::Relaxed) || start == 0 || len == 0 {
            return Watch { slot: None };
        }
        let end = start.saturating_add(len);
        let slot = WATCHED
            .iter()
            .position(|s| s.taken.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_ok());
        if let Some(i) = slot {
            let s = &WATCHED[i];
            s.faulted.store(false, Ordering::Relaxed);
            s.end.store(end, Ordering::Relaxed);
            s.start.store(start, Ordering::Release);
        }
        Watch { slot }
    }

    /// No map watched (a placeholder, or the map is going).
    pub(crate) fn none() -> Watch {
        Watch { slot: None }
    }

    /// A fault inside the map was patched since it was watched: what was
    /// read from it since then may be zeros instead of the file's bytes.
    pub(crate) fn faulted(&self) -> bool {
        self.slot.is_some_and(|i| WATCHED[i].faulted.load(Ordering::Acquire))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let s = &WATCHED[i];
            s.start.store(0, Ordering::Release);
            s.end.store(0, Ordering::Relaxed);
            s.taken.store(false, Ordering::Release);
        }
    }
}

fn install() {
    // SAFETY: sysconf only reads a constant of the system.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if let Ok(page) = usize::try_from(page) {
        if page.is_power_of_two() {
            PAGE.store(page, Ordering::Relaxed);
        }
    }
    // SAFETY: an all-zero sigaction is a valid value of this plain C struct
    // (no flags, empty mask); the fields that matter are set below.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = on_sigbus as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as usize;
    action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
    // SAFETY: `action.sa_mask` is a valid sigset_t to initialise.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: the handler is an `extern "C"` function of the SA_SIGINFO
    // signature that only does async-signal-safe work (atomics and mmap).
    let rc = unsafe { libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut()) };
    INSTALLED.store(rc == 0, Ordering::Relaxed);
}

extern "C" fn on_sigbus(_sig: c_int, info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid siginfo.
    let info = unsafe { &*info };
    // SAFETY: a SIGBUS siginfo carries the faulting address (si_addr).
    let addr = unsafe { info.si_addr() } as usize;
    let page = PAGE.load(Ordering::Relaxed);
    for s in &WATCHED {
        let start = s.start.load(Ordering::Acquire);
        if start == 0 || addr < start || addr >= s.end.load(Ordering::Relaxed) {
            continue;
        }
        // SAFETY: the page lies inside a mapping its owner registered and
        // keeps until it unwatches it; replacing it with zeros is what the
        // owner agreed to (it discards what it reads after a fault). mmap is
        // a plain system call, safe in a signal handler.
        let p = unsafe {
            libc::mmap(
                (addr & !(page - 1)) as *mut c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        if p != libc::MAP_FAILED {
            s.faulted.store(true, Ordering::Release);
            return;
        }
        break;
    }
    // Not a watched map: the default action when the access runs again.
    // SAFETY: signal() with SIG_DFL is async-signal-safe and takes no pointer.
    unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;

    /// A read-only shared map of `file`'s first `len` bytes.
    fn map(file: &std::fs::File, len: usize) -> *const u8 {
        // SAFETY: a fresh mapping chosen by the kernel, of an open file.
        let p =
            unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0) };
        assert_ne!(p, libc::MAP_FAILED);
        p as *const u8
    }

    #[test]
    fn proc_maps_lines_parse() {
        let m = parse_map_line("7ffff5800000-7ffff6800000 r--s 00000000 fd:01 1234567   /tmp/x/s.lmdb").unwrap();
        assert_eq!((m.start, m.end, m.dev, m.inode), (0x7fff_f580_0000, 0x7fff_f680_0000, (0xfd, 1), 1_234_567));
        assert!(parse_map_line("garbage").is_none());
    }

    #[test]
    fn a_watched_map_whose_file_shrank_reads_zeros_and_says_so() {
        let dir = crate::test_support::TempDir::new("map-guard");
        let path = dir.path().join("f");
        let mut f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        f.write_all(&[7u8; 3 * 4096]).unwrap();
        let making = making_map();
        let p = map(&f, 3 * 4096);
        let watch = watch_file_map(std::os::fd::AsFd::as_fd(&f), 3 * 4096);
        drop(making);
        let other = map(&f, 3 * 4096);
        assert_ne!(other, p);
        // SAFETY: inside the live mapping, and the file is whole.
        assert_eq!(unsafe { p.wrapping_add(2 * 4096).read_volatile() }, 7);
        assert!(!watch.faulted());
        f.set_len(4096).unwrap();
        // SAFETY: inside the mapping; past the file's end now, which the
        // handler patches with a zero page instead of killing the process.
        assert_eq!(unsafe { p.wrapping_add(2 * 4096 + 5).read_volatile() }, 0);
        assert!(watch.faulted());
        drop(watch);
        // SAFETY: the mappings made above, not used afterwards.
        unsafe { libc::munmap(p as *mut c_void, 3 * 4096) };
        // SAFETY: as above.
        unsafe { libc::munmap(other as *mut c_void, 3 * 4096) };
    }
}
