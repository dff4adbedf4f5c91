//! Configuration: main.cf as proxymap 3.7 reads and evaluates it, the
//! proxy_read_maps/proxy_write_maps allowlists, and the standalone
//! (TOML) settings of this drop-in.

pub mod allowlist;
pub(crate) mod compat;
pub(crate) mod convert;
pub(crate) mod defaults;
pub(crate) mod expand;
pub(crate) mod maincf;
pub(crate) mod settings;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use defaults::Kind;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A Postfix fatal-level configuration error; the text is Postfix's.
    #[error("{0}")]
    Invalid(String),
    /// `$` expansion failed. Postfix logs `warning` (done already through
    /// the log facade) and then dies with this error's text.
    #[error("dictionary mail_dict: macro processing error")]
    Macro { warning: String },
    #[error("open {}: {}", path.display(), crate::sys::errno::io_error_text(source))]
    Io { path: PathBuf, source: std::io::Error },
}

/// The configuration dictionary as a proxymap process sees it.
#[derive(Clone, Debug, Default)]
pub struct Params {
    /// Values from main.cf, `-o` overrides and set().
    explicit: HashMap<String, String>,
    /// Defaults written back while registering parameters, as Postfix does.
    registered: HashMap<String, String>,
    /// Whether registration ran; without it defaults are looked up lazily.
    registered_all: bool,
}

impl Params {
    /// Reads `<config_dir>/main.cf`, applies `-o` overrides and evaluates
    /// the parameters proxymap registers (fatal errors come back as Err).
    pub fn load(config_dir: &Path, overrides: &[(String, String)]) -> Result<Params, ConfigError> {
        let path = config_dir.join("main.cf");
        let file = path.display().to_string();
        let text = read_settled(&path)?;
        let seed = [("config_directory".to_string(), config_dir.display().to_string())];
        Params::build(&seed, &text, &file, overrides)
    }

    /// Like load() but from text; `file` names it in diagnostics.
    pub fn from_text(text: &str, file: &str, overrides: &[(String, String)]) -> Result<Params, ConfigError> {
        Params::build(&[], text, file, overrides)
    }

    fn build(
        seed: &[(String, String)],
        text: &str,
        file: &str,
        overrides: &[(String, String)],
    ) -> Result<Params, ConfigError> {
        let mut p = Params::default();
        p.explicit.extend(seed.iter().cloned());
        for entry in maincf::parse(text, file)? {
            if let Some(old) = p.explicit.get(&entry.name) {
                if *old != entry.value {
                    log::warn!("{file}, line {}: overriding earlier entry: {}={old}", entry.line, entry.name);
                }
            }
            p.explicit.insert(entry.name, entry.value);
        }
        for (name, value) in overrides {
            p.explicit.insert(name.clone(), value.clone());
        }
        p.register()?;
        Ok(p)
    }

    /// Sets a parameter (e.g. service_name, process_name) like
    /// mail_conf_update().
    pub fn set(&mut self, name: &str, value: &str) {
        self.explicit.insert(name.to_string(), value.to_string());
    }

    /// Our own parameter (Postfix has no such name): `yes` (the default)
    /// serves each client connection on a thread of its own
    /// (`worker::threads`) after its first requests, `no` every request in
    /// the worker's event loop.
    pub const CONNECTION_THREADS: &'static str = "proxymap_connection_threads";

    /// Our own parameter: with connection threads, how many requests a
    /// connection has on the event loop before it moves to a thread of its
    /// own (0: at once). Short-lived clients are then never handed over.
    pub const CONNECTION_THREAD_AFTER: &'static str = "proxymap_connection_thread_after";

    /// [`Params::CONNECTION_THREAD_AFTER`] when not set.
    pub const DEFAULT_THREAD_AFTER: u32 = 2;

    /// With connection threads ([`Params::CONNECTION_THREADS`], `yes` when
    /// not set): Some(requests before a connection moves to its thread,
    /// [`Params::CONNECTION_THREAD_AFTER`], 2 when not set).
    pub fn connection_threads(&self) -> Result<Option<u32>, ConfigError> {
        if self.raw(Self::CONNECTION_THREADS).is_some() && !self.get_bool(Self::CONNECTION_THREADS)? {
            return Ok(None);
        }
        let name = Self::CONNECTION_THREAD_AFTER;
        if self.raw(name).is_none() {
            return Ok(Some(Self::DEFAULT_THREAD_AFTER));
        }
        let after = self.get_int(name)?;
        u32::try_from(after)
            .map(Some)
            .map_err(|_| ConfigError::Invalid(format!("invalid {name} parameter value {after} < 0")))
    }

    /// Names set in main.cf, by `-o` or set(), in no particular order.
    pub(crate) fn configured_names(&self) -> impl Iterator<Item = &str> {
        self.explicit.keys().map(String::as_str)
    }

    /// The value set in main.cf, by `-o` or set(), unexpanded.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.explicit.get(name).map(String::as_str)
    }

    /// The expanded value: the configured value, else the 3.7 default if
    /// proxymap or the global table knows the name, else empty. An
    /// expansion error (fatal in Postfix) is logged and yields "".
    pub fn get(&self, name: &str) -> String {
        self.try_get(name).unwrap_or_else(|err| {
            log::error!("{err}");
            String::new()
        })
    }

    /// get() with the expansion error returned.
    pub fn try_get(&self, name: &str) -> Result<String, ConfigError> {
        match self.lookup(name, !self.registered_all) {
            Some(raw) => self.expand(&raw),
            None => Ok(String::new()),
        }
    }

    /// Boolean parameter (yes/no).
    pub fn get_bool(&self, name: &str) -> Result<bool, ConfigError> {
        convert::parse_bool(name, &self.try_get(name)?)
    }

    /// Integer parameter (C int range).
    pub fn get_int(&self, name: &str) -> Result<i32, ConfigError> {
        convert::parse_int(name, &self.try_get(name)?)
    }

    /// Long integer parameter.
    pub fn get_long(&self, name: &str) -> Result<i64, ConfigError> {
        convert::parse_long(name, &self.try_get(name)?)
    }

    /// Time parameter in seconds; the unit defaults to that of the
    /// compiled-in default (seconds for unknown names).
    pub fn get_time(&self, name: &str) -> Result<u32, ConfigError> {
        let unit = defaults::find(name)
            .filter(|d| d.kind == Kind::Time)
            .and_then(|d| d.default.chars().find(char::is_ascii_alphabetic))
            .unwrap_or('s');
        convert::parse_time(name, &self.try_get(name)?, unit)
    }

    /// try_get() that also tells which `$name` each piece of the value came
    /// through (see [`expand::expand_traced`]). Registration stores string
    /// defaults expanded, so the trace expands them from the compiled-in
    /// text instead; should that ever give another value, the value comes
    /// back without spans.
    pub(crate) fn get_traced(&self, name: &str) -> Result<(String, Vec<expand::Span>), ConfigError> {
        let value = self.try_get(name)?;
        let lazy = !self.registered_all;
        let raw = |n: &str| match (self.explicit.get(n), defaults::find(n)) {
            (Some(v), _) => Some(v.clone()),
            (None, Some(d)) if d.kind == Kind::Str => Some(d.default.to_string()),
            _ => self.lookup(n, lazy),
        };
        let Some(text) = raw(name) else { return Ok((value, Vec::new())) };
        match expand::expand_traced(&text, &raw) {
            Ok((traced, spans)) if traced == value => Ok((value, spans)),
            _ => Ok((value, Vec::new())),
        }
    }

    /// Expands `$name` references in arbitrary text against this dictionary.
    pub fn expand(&self, text: &str) -> Result<String, ConfigError> {
        let lazy = !self.registered_all;
        expand::expand(text, &|n: &str| self.lookup(n, lazy))
    }

    /// Raw dictionary value. With `lazy`, unregistered known names get their
    /// compiled-in default (used when no registration pass has run).
    fn lookup(&self, name: &str, lazy: bool) -> Option<String> {
        if let Some(v) = self.explicit.get(name).or_else(|| self.registered.get(name)) {
            return Some(v.clone());
        }
        if !lazy {
            return None;
        }
        let def = defaults::find(name)?;
        Some(match (def.kind, name) {
            (Kind::Computed, "myhostname") => {
                defaults::default_myhostname(self.explicit.get("mydomain").map(String::as_str))
            }
            (Kind::Computed, "mydomain") => {
                let host = match self.explicit.get("myhostname") {
                    Some(h) => h.clone(),
                    None => defaults::default_myhostname(None),
                };
                defaults::default_mydomain(&host)
            }
            (Kind::Computed, _) => defaults::MYNETWORKS.to_string(),
            _ => def.default.to_string(),
        })
    }

    /// Evaluates every registered parameter in Postfix's order, writing
    /// defaults back and applying Postfix's type and range checks.
    fn register(&mut self) -> Result<(), ConfigError> {
        for def in defaults::TABLE {
            let configured = self.explicit.contains_key(def.name);
            if !configured {
                let value = match def.kind {
                    Kind::Str => self.expand_strict(def.default)?,
                    Kind::Computed => self.computed_default(def.name)?,
                    _ => def.default.to_string(),
                };
                self.registered.insert(def.name.to_string(), value);
            }
            let value = match self.lookup(def.name, false) {
                Some(raw) => self.expand_strict(&raw)?,
                None => String::new(),
            };
            check(def, &value)?;
        }
        self.registered_all = true;
        Ok(())
    }

    fn expand_strict(&self, text: &str) -> Result<String, ConfigError> {
        expand::expand(text, &|n: &str| self.lookup(n, false))
    }

    fn computed_default(&self, name: &str) -> Result<String, ConfigError> {
        Ok(match name {
            "myhostname" => {
                let domain = match self.explicit.get("mydomain") {
                    Some(raw) => Some(self.expand_strict(raw)?),
                    None => None,
                };
                defaults::default_myhostname(domain.as_deref())
            }
            "mydomain" => {
                let host = match self.lookup("myhostname", false) {
                    Some(raw) => self.expand_strict(&raw)?,
                    None => String::new(),
                };
                defaults::default_mydomain(&host)
            }
            _ => defaults::MYNETWORKS.to_string(),
        })
    }
}

/// Postfix's per-type conversion and min/max checks at registration.
fn check(def: &defaults::Def, value: &str) -> Result<(), ConfigError> {
    let name = def.name;
    let range = |v: i64, fmt: &dyn Fn(i64, &str, i64) -> String| -> Result<(), ConfigError> {
        if def.min != 0 && v < def.min {
            return Err(ConfigError::Invalid(fmt(v, "<", def.min)));
        }
        if def.max != 0 && v > def.max {
            return Err(ConfigError::Invalid(fmt(v, ">", def.max)));
        }
        Ok(())
    };
    match def.kind {
        Kind::Str | Kind::Computed => {
            let len = value.len() as i64;
            range(len, &|v, op, lim| format!("bad string length {v} {op} {lim}: {name} = {value}"))?;
            if name == "compatibility_level" {
                compat::compat_level_from_string(value).map_err(ConfigError::Invalid)?;
            }
        }
        Kind::Int => {
            let v = i64::from(convert::parse_int(name, value)?);
            range(v, &|v, op, lim| format!("invalid {name} parameter value {v} {op} {lim}"))?;
        }
        Kind::Long => {
            let v = convert::parse_long(name, value)?;
            range(v, &|v, op, lim| format!("invalid {name} parameter value {v} {op} {lim}"))?;
        }
        Kind::Bool | Kind::NBool => {
            convert::parse_bool(name, value)?;
        }
        Kind::Time => {
            let unit = def.default.chars().find(char::is_ascii_alphabetic).unwrap_or('s');
            let v = i64::from(convert::parse_time(name, value, unit)?);
            let word = |op: &str| if op == "<" { "min" } else { "max" };
            range(v, &|v, op, lim| format!("invalid {name}: {v} ({} {lim})", word(op)))?;
        }
    }
    Ok(())
}

/// Reads main.cf; a file modified within the last second may still be
/// being written, so it is read again after a short pause until stable.
fn read_settled(path: &Path) -> Result<String, ConfigError> {
    let io = |source| ConfigError::Io { path: path.to_path_buf(), source };
    // Postfix retries without bound; a cap keeps a clock skew from hanging us.
    for _ in 0..20 {
        let before = SystemTime::now();
        let text = std::fs::read(path).map_err(io)?;
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).map_err(io)?;
        let after = SystemTime::now();
        let hot = mtime + Duration::from_secs(1) >= before && mtime <= after;
        if !hot {
            return Ok(String::from_utf8_lossy(&text).into_owned());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let text = std::fs::read(path).map_err(io)?;
    Ok(String::from_utf8_lossy(&text).into_owned())
}

#[cfg(test)]
mod tests;
