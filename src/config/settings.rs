//! STUB matching the agreed API; replaced by the real module.
use super::ConfigError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service { Proxymap, Proxywrite }
impl Service {
    pub fn name(self) -> &'static str { match self { Service::Proxymap => "proxymap", Service::Proxywrite => "proxywrite" } }
}
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogTarget { #[default] Stderr, Syslog }
#[derive(Clone, Debug)]
pub struct ServiceSettings { pub workers: usize, pub socket: Option<PathBuf>, pub enabled: bool }
#[derive(Clone, Debug)]
pub struct Settings {
    pub config_directory: Option<PathBuf>,
    pub socket_directory: PathBuf,
    pub proxymap: ServiceSettings,
    pub proxywrite: ServiceSettings,
    pub max_use: u32,
    pub max_idle: u64,
    pub ipc_timeout: u64,
    pub log: LogTarget,
    pub pid_file: Option<PathBuf>,
    pub overrides: BTreeMap<String, String>,
}
impl Default for Settings {
    fn default() -> Self {
        Settings { config_directory: None, socket_directory: "proxymap-demo/private".into(),
            proxymap: ServiceSettings { workers: 2, socket: None, enabled: true },
            proxywrite: ServiceSettings { workers: 1, socket: None, enabled: true },
            max_use: 100, max_idle: 100, ipc_timeout: 3600, log: LogTarget::Stderr, pid_file: None, overrides: BTreeMap::new() }
    }
}
impl Settings {
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let _ = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.into(), source })?;
        Ok(Settings::default())
    }
    pub fn socket_path(&self, service: Service) -> PathBuf {
        let s = match service { Service::Proxymap => &self.proxymap, Service::Proxywrite => &self.proxywrite };
        s.socket.clone().unwrap_or_else(|| self.socket_directory.join(service.name()))
    }
}
