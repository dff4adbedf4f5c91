//! Configuration: main.cf as Postfix reads it (STUB: being written).
pub mod allowlist;
pub mod settings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Invalid(String),
    #[error("open {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

#[derive(Clone, Debug, Default)]
pub struct Params {
    raw: HashMap<String, String>,
}

impl Params {
    pub fn load(config_dir: &Path, overrides: &[(String, String)]) -> Result<Params, ConfigError> {
        let path = config_dir.join("main.cf");
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io { path: path.clone(), source })?;
        Params::from_text(&text, &path.display().to_string(), overrides)
    }
    pub fn from_text(_text: &str, _file: &str, overrides: &[(String, String)]) -> Result<Params, ConfigError> {
        let mut p = Params::default();
        for (k, v) in overrides {
            p.raw.insert(k.clone(), v.clone());
        }
        Ok(p)
    }
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.raw.get(name).map(String::as_str)
    }
    pub fn set(&mut self, name: &str, value: &str) {
        self.raw.insert(name.into(), value.into());
    }
    pub fn get_int(&self, name: &str) -> Result<i64, ConfigError> {
        self.get(name).parse().map_err(|_| ConfigError::Invalid(name.into()))
    }
    pub fn get_time(&self, name: &str) -> Result<u64, ConfigError> {
        self.get(name).trim_end_matches('s').parse().map_err(|_| ConfigError::Invalid(name.into()))
    }
    pub fn get_bool(&self, name: &str) -> Result<bool, ConfigError> {
        Ok(self.get(name) == "yes")
    }
    pub fn get(&self, name: &str) -> String {
        self.raw(name).unwrap_or("").to_string()
    }
}
