//! A file mapped shared into memory and seen as `[AtomicU64]`: the
//! statistics file that every process of a service adds its counts to
//! (`stats/`). Plus the byte-range locks (open file description locks) by
//! which a process owns its slot in that file until it dies.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU64;

/// A shared, read-write mapping of a whole file, as 64-bit atomic words.
/// Unmapped on drop. The file's descriptor is kept with it (the slot locks
/// belong to it).
pub(crate) struct SharedMap {
    ptr: std::ptr::NonNull<AtomicU64>,
    words: usize,
    file: File,
}

// SAFETY: the mapping is plain shared memory accessed only through
// `AtomicU64`, which is Sync; the pointer is not tied to a thread.
unsafe impl Send for SharedMap {}
// SAFETY: as above: every access goes through atomics.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    /// Map the first `words` 64-bit words of `file` (opened read-write, at
    /// least that long) shared: stores are seen by every process mapping it.
    pub(crate) fn new(file: File, words: usize) -> std::io::Result<SharedMap> {
        let len = words.checked_mul(8).filter(|&l| l > 0).ok_or_else(|| std::io::Error::other("bad map size"))?;
        if file.metadata()?.len() < len as u64 {
            return Err(std::io::Error::other("file shorter than its layout"));
        }
        // SAFETY: a fresh mapping chosen by the kernel (no address given),
        // of a descriptor we own; the result is checked before use.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(p.cast::<AtomicU64>()).ok_or_else(|| std::io::Error::other("mmap: null"))?;
        Ok(SharedMap { ptr, words, file })
    }

    /// The mapping as atomic words. The file is only ever accessed through
    /// atomics by this program; another program writing it could only
    /// change the numbers read, never memory safety.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` is a live, page-aligned (so 8-aligned) mapping of
        // `words * 8` bytes, readable and writable, that lives as long as
        // `self`; AtomicU64 has the size and alignment of u64 and allows
        // shared mutation, and the file's length was checked, so no access
        // reaches past its end (no SIGBUS unless someone truncates it).
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.words) }
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new(), unmapped once; `words()`
        // borrows of it cannot outlive `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.words * 8);
        }
    }
}

fn flock(kind: libc::c_short, byte: u64) -> libc::flock {
    // SAFETY: `flock` is a plain C struct of integers: all zeros is valid
    // (and l_pid must be 0 for OFD locks).
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = kind;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    l.l_start = byte as libc::off_t;
    l.l_len = 1;
    l
}

/// Take a write lock on one byte of `file` without waiting: Ok(false) if
/// another open file description holds it. An OFD lock: it belongs to this
/// open of the file (not to the process, so two opens in one process
/// exclude each other too), and the kernel drops it when the last
/// descriptor of that open closes, including when the process is killed.
pub(crate) fn try_lock_byte(file: &File, byte: u64) -> std::io::Result<bool> {
    let l = flock(libc::F_WRLCK as libc::c_short, byte);
    match nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_SETLK(&l)) {
        Ok(_) => Ok(true),
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EACCES) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Does another open of `file` hold a lock on this byte now?
pub(crate) fn byte_locked(file: &File, byte: u64) -> std::io::Result<bool> {
    let mut l = flock(libc::F_WRLCK as libc::c_short, byte);
    nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_OFD_GETLK(&mut l))?;
    Ok(l.l_type != libc::F_UNLCK as libc::c_short)
}
