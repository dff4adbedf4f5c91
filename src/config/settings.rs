//! Standalone settings (TOML) for running without Postfix's master(8).
//! Every field is optional; unknown keys are errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

/// The two services this daemon provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Service {
    Proxymap,
    Proxywrite,
}

impl Service {
    /// The Postfix service name (also the default socket file name).
    pub fn name(self) -> &'static str {
        match self {
            Service::Proxymap => "proxymap",
            Service::Proxywrite => "proxywrite",
        }
    }
}

/// Where log records go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    #[default]
    Stderr,
    Syslog,
}

/// Per-service settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSettings {
    /// Number of worker processes.
    pub workers: usize,
    /// Socket path; None means `<socket_directory>/<service name>`.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl ServiceSettings {
    fn with_workers(workers: usize) -> Self {
        ServiceSettings { workers, socket: None, enabled: true }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Directory holding main.cf; None runs with the embedded demo config.
    pub config_directory: Option<PathBuf>,
    pub socket_directory: PathBuf,
    #[serde(deserialize_with = "proxymap_service")]
    pub proxymap: ServiceSettings,
    #[serde(deserialize_with = "proxywrite_service")]
    pub proxywrite: ServiceSettings,
    /// Requests per worker before it exits; 0 = unlimited.
    pub max_use: u32,
    /// Idle seconds before a worker exits; 0 = never.
    pub max_idle: u64,
    /// Per-request I/O timeout in seconds.
    pub ipc_timeout: u64,
    pub log: LogTarget,
    pub pid_file: Option<PathBuf>,
    /// main.cf parameter overrides, applied like `-o name=value`.
    pub overrides: BTreeMap<String, String>,
}

/// Service tables may omit `workers`; the default differs per service,
/// so each gets its own partial form.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialService {
    workers: Option<usize>,
    socket: Option<PathBuf>,
    enabled: Option<bool>,
}

impl PartialService {
    fn complete(self, default_workers: usize) -> ServiceSettings {
        ServiceSettings {
            workers: self.workers.unwrap_or(default_workers),
            socket: self.socket,
            enabled: self.enabled.unwrap_or(true),
        }
    }
}

fn proxymap_service<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ServiceSettings, D::Error> {
    Ok(PartialService::deserialize(d)?.complete(DEFAULT_PROXYMAP_WORKERS))
}

fn proxywrite_service<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ServiceSettings, D::Error> {
    Ok(PartialService::deserialize(d)?.complete(DEFAULT_PROXYWRITE_WORKERS))
}

const DEFAULT_PROXYMAP_WORKERS: usize = 2;
const DEFAULT_PROXYWRITE_WORKERS: usize = 1;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            config_directory: None,
            socket_directory: PathBuf::from("proxymap-demo/private"),
            proxymap: ServiceSettings::with_workers(DEFAULT_PROXYMAP_WORKERS),
            proxywrite: ServiceSettings::with_workers(DEFAULT_PROXYWRITE_WORKERS),
            max_use: 100,
            max_idle: 100,
            ipc_timeout: 3600,
            log: LogTarget::Stderr,
            pid_file: None,
            overrides: BTreeMap::new(),
        }
    }
}

impl Settings {
    /// Parses settings text; `file_label` names the source in errors.
    pub fn from_toml_str(text: &str, file_label: &str) -> Result<Settings, ConfigError> {
        let settings: Settings =
            toml::from_str(text).map_err(|err| ConfigError::Invalid(format!("{file_label}: {err}")))?;
        settings.validate().map_err(|msg| ConfigError::Invalid(format!("{file_label}: {msg}")))?;
        Ok(settings)
    }

    /// Reads and parses a settings file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
        Settings::from_toml_str(&text, &path.display().to_string())
    }

    fn validate(&self) -> Result<(), String> {
        if self.proxymap.workers < 1 {
            return Err("proxymap.workers must be at least 1".into());
        }
        // proxywrite is the single updater of its tables (master.cf runs it
        // with process limit 1); more would race on database updates.
        if self.proxywrite.workers != 1 {
            return Err(format!(
                "proxywrite.workers must be 1 (the single table updater), not {}",
                self.proxywrite.workers
            ));
        }
        Ok(())
    }

    /// The listening socket of a service.
    pub fn socket_path(&self, service: Service) -> PathBuf {
        let svc = match service {
            Service::Proxymap => &self.proxymap,
            Service::Proxywrite => &self.proxywrite,
        };
        svc.socket.clone().unwrap_or_else(|| self.socket_directory.join(service.name()))
    }

    /// The overrides as `-o`-style pairs for Params::load/from_text.
    pub fn override_pairs(&self) -> Vec<(String, String)> {
        self.overrides.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings files shipped (the example, and the package's for a
    /// Postfix host) are valid.
    #[test]
    fn shipped_settings_files_parse() {
        let example = Settings::from_toml_str(include_str!("../../examples/proxymap.toml"), "proxymap.toml").unwrap();
        assert_eq!(example.socket_path(Service::Proxymap), PathBuf::from("/var/spool/postfix/private/proxymap"));
        let packaged =
            Settings::from_toml_str(include_str!("../../packaging/proxymap-rs.toml"), "proxymap.toml").unwrap();
        assert_eq!(packaged.config_directory.as_deref(), Some(Path::new("/etc/postfix")));
        assert_eq!(packaged.socket_path(Service::Proxywrite), PathBuf::from("/var/spool/postfix/private/proxywrite"));
        assert_eq!(packaged.log, LogTarget::Syslog);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let s = Settings::from_toml_str("", "demo.toml").unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.config_directory, None);
        assert_eq!(s.proxymap.workers, 2);
        assert_eq!(s.proxywrite.workers, 1);
        assert!(s.proxymap.enabled && s.proxywrite.enabled);
        assert_eq!(s.max_use, 100);
        assert_eq!(s.max_idle, 100);
        assert_eq!(s.ipc_timeout, 3600);
        assert_eq!(s.log, LogTarget::Stderr);
        assert_eq!(s.socket_path(Service::Proxymap), PathBuf::from("proxymap-demo/private/proxymap"));
        assert_eq!(s.socket_path(Service::Proxywrite), PathBuf::from("proxymap-demo/private/proxywrite"));
        assert_eq!(Service::Proxywrite.name(), "proxywrite");
    }

    #[test]
    fn every_field() {
        let text = r#"
config_directory = "/etc/postfix"
socket_directory = "/run/pm"
max_use = 0
max_idle = 0
ipc_timeout = 60
log = "syslog"
pid_file = "/run/pm.pid"

[proxymap]
workers = 4
socket = "/tmp/pm.sock"
enabled = true

[proxywrite]
enabled = false

[overrides]
proxy_read_maps = "proxy:hash:/etc/x"
compatibility_level = "3.6"
"#;
        let s = Settings::from_toml_str(text, "full.toml").unwrap();
        assert_eq!(s.config_directory, Some(PathBuf::from("/etc/postfix")));
        assert_eq!(s.socket_directory, PathBuf::from("/run/pm"));
        assert_eq!((s.max_use, s.max_idle, s.ipc_timeout), (0, 0, 60));
        assert_eq!(s.log, LogTarget::Syslog);
        assert_eq!(s.pid_file, Some(PathBuf::from("/run/pm.pid")));
        assert_eq!(s.proxymap.workers, 4);
        assert_eq!(s.socket_path(Service::Proxymap), PathBuf::from("/tmp/pm.sock"));
        assert_eq!(s.proxywrite.workers, 1);
        assert!(!s.proxywrite.enabled);
        assert_eq!(s.socket_path(Service::Proxywrite), PathBuf::from("/run/pm/proxywrite"));
        assert_eq!(s.overrides.get("compatibility_level").map(String::as_str), Some("3.6"));
        assert_eq!(s.override_pairs().len(), 2);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Settings::from_toml_str("max_uses = 3\n", "a.toml").unwrap_err().to_string();
        assert!(err.starts_with("a.toml: "), "{err}");
        assert!(err.contains("max_uses"), "{err}");
        let err = Settings::from_toml_str("[proxymap]\nworker = 3\n", "b.toml").unwrap_err().to_string();
        assert!(err.contains("worker"), "{err}");
        let err = Settings::from_toml_str("log = \"file\"\n", "c.toml").unwrap_err().to_string();
        assert!(err.contains("file"), "{err}");
    }

    #[test]
    fn worker_counts_validated() {
        let err = Settings::from_toml_str("[proxywrite]\nworkers = 2\n", "w.toml").unwrap_err().to_string();
        assert_eq!(err, "w.toml: proxywrite.workers must be 1 (the single table updater), not 2");
        let err = Settings::from_toml_str("[proxymap]\nworkers = 0\n", "w.toml").unwrap_err().to_string();
        assert_eq!(err, "w.toml: proxymap.workers must be at least 1");
    }

    #[test]
    fn load_reports_path() {
        let err = Settings::load(Path::new("/nonexistent/pm.toml")).unwrap_err().to_string();
        assert_eq!(err, "open /nonexistent/pm.toml: No such file or directory");
    }
}
