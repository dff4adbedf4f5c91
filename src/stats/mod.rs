//! Statistics per service and per table, gathered across all processes of
//! a service: one file per service (`<proxymap_statistics_directory>/<service>.stats`,
//! by default under `$data_directory/proxymap-rs/`), mapped shared by every
//! process; each process holds one slot of it (see [`layout`]) and adds to
//! its counters with relaxed atomic adds. `proxymap stats` sums the slots.
//!
//! A file rather than sockets: counting costs an add in memory, nothing is
//! lost when a process exits or is killed (the counts stay in the file), and
//! it works the same under master(8) (independent processes) and standalone.

pub mod cmd;
pub mod format;
pub(crate) mod layout;
pub mod reader;
pub(crate) mod recorder;
#[cfg(test)]
mod tests;

pub use recorder::{Stats, TableStats};

use crate::config::Params;
use crate::sys::shared_map::SharedMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("{}: {}", .0.display(), .1)]
    Io(PathBuf, String),
    #[error("{}: layout version {}; this proxymap reads and writes version {} (remove the file to start over)", .0.display(), .1, layout::VERSION)]
    Version(PathBuf, u64),
    #[error("{}: not a proxymap statistics file", .0.display())]
    Foreign(PathBuf),
    #[error("{}: all {} process slots are taken", .0.display(), .1)]
    Full(PathBuf, usize),
}

impl StatsError {
    pub(crate) fn io(path: &Path, e: std::io::Error) -> StatsError {
        StatsError::Io(path.to_path_buf(), crate::sys::errno::io_error_text(&e))
    }
}

/// Our parameter: `yes` (default) keeps statistics, `no` does not.
pub const STATISTICS: &str = "proxymap_statistics";
/// Our parameter: the directory of the statistics files.
pub const STATISTICS_DIRECTORY: &str = "proxymap_statistics_directory";
/// [`STATISTICS_DIRECTORY`] when not set, under `$data_directory`.
pub const DEFAULT_SUBDIRECTORY: &str = "proxymap-rs";

/// Is counting on (`proxymap_statistics`, yes when not set)?
pub fn enabled(params: &Params) -> Result<bool, crate::config::ConfigError> {
    match params.raw(STATISTICS) {
        None => Ok(true),
        Some(_) => params.get_bool(STATISTICS),
    }
}

/// The statistics file of `service`.
pub fn file_of(params: &Params, service: &str) -> PathBuf {
    let dir = match params.raw(STATISTICS_DIRECTORY) {
        Some(_) => PathBuf::from(params.get(STATISTICS_DIRECTORY)),
        None => Path::new(&params.get("data_directory")).join(DEFAULT_SUBDIRECTORY),
    };
    dir.join(format!("{service}.stats"))
}

/// For a daemon process: its slot in the service's statistics file, or
/// None (turned off, or the file is unusable: one warning, and the process
/// serves without statistics). `owner`: uid and gid to give a directory and
/// file created here (a root process that drops privileges later).
pub fn start(params: &Params, service: &str, owner: Option<(u32, u32)>) -> Option<Stats> {
    match enabled(params) {
        Ok(true) => {}
        Ok(false) => return None,
        Err(e) => {
            log::warn!("{e}: statistics are off");
            return None;
        }
    }
    let file = file_of(params, service);
    if let (Some((uid, gid)), Some(dir)) = (owner, file.parent()) {
        if !dir.exists() && std::fs::create_dir_all(dir).is_ok() {
            let _ = std::os::unix::fs::chown(dir, Some(uid), Some(gid));
        }
    }
    let created = !file.exists();
    match Stats::open(&file) {
        Ok(stats) => {
            if let (true, Some((uid, gid))) = (created, owner) {
                let _ = std::os::unix::fs::chown(&file, Some(uid), Some(gid));
            }
            Some(stats)
        }
        Err(e) => {
            log::warn!("statistics: {e}: serving without statistics");
            None
        }
    }
}

/// Open and map a statistics file (`create`: as a daemon, making it if
/// missing), its header checked.
pub(crate) fn open_file(path: &Path, create: bool) -> Result<SharedMap, StatsError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let io = |e| StatsError::io(path, e);
    if create {
        if let Some(dir) = path.parent() {
            std::fs::DirBuilder::new().recursive(true).mode(0o755).create(dir).map_err(io)?;
        }
    }
    let file = std::fs::OpenOptions::new().read(true).write(true).create(create).mode(0o644).open(path).map_err(io)?;
    let len = (layout::FILE_WORDS * 8) as u64;
    let have = file.metadata().map_err(io)?.len();
    if have < len {
        if !create {
            return Err(StatsError::Foreign(path.to_path_buf()));
        }
        // Never shrinks: processes starting at once all extend to the same size.
        file.set_len(len).map_err(io)?;
    }
    let map = SharedMap::new(file, layout::FILE_WORDS).map_err(io)?;
    let w = map.words();
    if create {
        // One word holds magic and version: set once, by whoever is first.
        let _ = w[0].compare_exchange(0, layout::MAGIC, Relaxed, Relaxed);
    }
    match w[0].load(Relaxed) {
        layout::MAGIC => {}
        m if m & layout::MAGIC_MASK == layout::MAGIC & layout::MAGIC_MASK => {
            return Err(StatsError::Version(path.to_path_buf(), m & !layout::MAGIC_MASK))
        }
        _ => return Err(StatsError::Foreign(path.to_path_buf())),
    }
    if create {
        w[1].store(layout::SLOTS as u64, Relaxed);
        w[2].store(layout::TABLES as u64, Relaxed);
        w[3].store(layout::ENTRY_WORDS as u64, Relaxed);
    }
    Ok(map)
}
