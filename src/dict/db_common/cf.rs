//! A database table's configuration, as Postfix's `cfg_parser` reads it.
//!
//! A table name starting with `/` or `.` is a file of `name = value`
//! logical lines (main.cf syntax: `#` comment lines, blank lines, lines
//! starting with whitespace continue the previous one); values are taken
//! as written, with no `$` expansion. Any other name is a prefix: the
//! parameter `p` is the main.cf parameter `<name>_p`, expanded like every
//! main.cf value.
//!
//! The typed getters keep Postfix's limits and error texts (file form:
//! `<file>: bad string length 0 < 1: dbpath = `; main.cf form without the
//! file name and with the full parameter name). Postfix exits on them; we
//! fail the table's open with the same text instead. Parameters nobody
//! asks for are ignored, as in Postfix; [`Cf::unused`] lists them.

use crate::config::{convert, maincf, ConfigError, Params};
use crate::dict::OpenError;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

/// Where the parameters come from.
enum Source<'a> {
    /// A `.cf` file: name → value, the last of repeated names.
    File(HashMap<String, String>),
    /// main.cf parameters `<prefix>_<name>`.
    MainCf(&'a Params),
}

pub(crate) struct Cf<'a> {
    /// The table name: the file's path or the main.cf prefix.
    name: String,
    source: Source<'a>,
    /// Names the table asked for, to tell the unused ones apart.
    asked: RefCell<BTreeSet<String>>,
}

/// How long a file written within the last second is left to settle before
/// it is read again (Postfix re-reads such a "hot" file, so that a file
/// still being written is not taken half-written).
const COOL_DOWN: Duration = Duration::from_millis(300);

impl<'a> Cf<'a> {
    /// The configuration of table `name`: a file read now, or main.cf
    /// parameters from `params`. A file that cannot be read gives
    /// Postfix's surrogate text `open <path>: <error>`.
    pub(crate) fn open(name: &str, params: &'a Params) -> Result<Cf<'a>, OpenError> {
        if !is_file_name(name) {
            return Ok(Cf { name: name.to_string(), source: Source::MainCf(params), asked: RefCell::default() });
        }
        let text = read_settled(name).map_err(|e| OpenError::io(format_args!("open {name}"), &e))?;
        Cf::from_file_text(name, &text)
    }

    /// The configuration in file form from the file's bytes; `name` is the
    /// file's path, as the messages show it.
    pub(crate) fn from_file_text(name: &str, text: &[u8]) -> Result<Cf<'a>, OpenError> {
        // rusqlite and the other clients take text; a file that is not
        // UTF-8 is refused at open with a clear reason rather than changed.
        let text = std::str::from_utf8(text).map_err(|e| {
            let line = text[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            OpenError::new(format!("{name}, line {line}: text is not valid UTF-8"))
        })?;
        let entries = maincf::parse(text, name).map_err(|e| OpenError::new(e.to_string()))?;
        let mut values: HashMap<String, String> = HashMap::new();
        for e in entries {
            if let Some(old) = values.get(&e.name) {
                if *old != e.value {
                    log::warn!("{name}, line {}: overriding earlier entry: {}={old}", e.line, e.name);
                }
            }
            values.insert(e.name, e.value);
        }
        Ok(Cf { name: name.to_string(), source: Source::File(values), asked: RefCell::default() })
    }

    /// The table name (file path or prefix), as messages show it.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The raw value of `param` (main.cf form: expanded), None when not set;
    /// and the name messages use for it.
    fn value(&self, param: &str) -> Result<(Option<String>, String), OpenError> {
        self.asked.borrow_mut().insert(param.to_string());
        match &self.source {
            Source::File(values) => Ok((values.get(param).cloned(), param.to_string())),
            Source::MainCf(params) => {
                let full = format!("{}_{param}", self.name);
                let value = match params.raw(&full) {
                    Some(_) => Some(params.try_get(&full).map_err(config_error)?),
                    None => None,
                };
                Ok((value, full))
            }
        }
    }

    /// `<file>: ` before file-form messages; main.cf-form messages have none.
    fn prefix(&self) -> String {
        match self.source {
            Source::File(_) => format!("{}: ", self.name),
            Source::MainCf(_) => String::new(),
        }
    }

    /// A string parameter. `default` None means "no default": an unset or
    /// empty value then comes back as None. `min`/`max` (0: no limit) bound
    /// the length in bytes, checked on the default too.
    pub(crate) fn get_str(
        &self,
        param: &str,
        default: Option<&str>,
        min: usize,
        max: usize,
    ) -> Result<Option<String>, OpenError> {
        let (value, shown) = self.value(param)?;
        let value = match (value, &self.source) {
            (Some(v), _) => v,
            // main.cf defaults are expanded too, as for any main.cf parameter
            (None, Source::MainCf(params)) => params.expand(default.unwrap_or("")).map_err(config_error)?,
            (None, Source::File(_)) => default.unwrap_or("").to_string(),
        };
        let len = value.len();
        if min > 0 && len < min {
            return Err(OpenError::new(format!("{}bad string length {len} < {min}: {shown} = {value}", self.prefix())));
        }
        if max > 0 && len > max {
            return Err(OpenError::new(format!("{}bad string length {len} > {max}: {shown} = {value}", self.prefix())));
        }
        Ok(if default.is_none() && value.is_empty() { None } else { Some(value) })
    }

    /// An integer parameter: the whole value as C's strtol reads it, in the
    /// range of a C int; then `min`/`max` (0: no limit), default included.
    pub(crate) fn get_int(&self, param: &str, default: i32, min: i32, max: i32) -> Result<i32, OpenError> {
        let (value, shown) = self.value(param)?;
        let n = match value {
            Some(v) => convert::parse_int(&shown, &v).map_err(|e| OpenError::new(format!("{}{e}", self.prefix())))?,
            None => default,
        };
        if min != 0 && n < min {
            return Err(OpenError::new(format!("{}invalid {shown} parameter value {n} < {min}", self.prefix())));
        }
        if max != 0 && n > max {
            return Err(OpenError::new(format!("{}invalid {shown} parameter value {n} > {max}", self.prefix())));
        }
        Ok(n)
    }

    /// A boolean parameter: `yes` or `no`, in any case.
    pub(crate) fn get_bool(&self, param: &str, default: bool) -> Result<bool, OpenError> {
        match self.value(param)? {
            (Some(v), shown) => {
                convert::parse_bool(&shown, &v).map_err(|e| OpenError::new(format!("{}{e}", self.prefix())))
            }
            (None, _) => Ok(default),
        }
    }

    /// File-form parameters the table never asked for (sorted), for a
    /// configuration check; Postfix ignores them silently, and so does
    /// opening the table. Empty in main.cf form, where any parameter may
    /// belong to anything.
    pub(crate) fn unused(&self) -> Vec<String> {
        let asked = self.asked.borrow();
        match &self.source {
            Source::File(values) => {
                let mut names: Vec<String> = values.keys().filter(|n| !asked.contains(*n)).cloned().collect();
                names.sort();
                names
            }
            Source::MainCf(_) => Vec::new(),
        }
    }
}

/// Per configuration (file name), the parameters nobody asked for.
pub(crate) type Unused = Vec<(String, Vec<String>)>;

thread_local! {
    /// Inside collect_unused(): each configuration's unused parameters,
    /// noted as it is dropped (when its table is done asking).
    static UNUSED: RefCell<Option<Unused>> = const { RefCell::new(None) };
}

impl Drop for Cf<'_> {
    fn drop(&mut self) {
        UNUSED.with(|u| {
            if let Some(found) = u.borrow_mut().as_mut() {
                let names = self.unused();
                if !names.is_empty() {
                    found.push((self.name.clone(), names));
                }
            }
        });
    }
}

/// Runs `f` (a table's open, and the table's drop) and returns what it
/// returned with the file-form parameters its configurations never asked
/// for, by file: `proxymap check` warns of them, the tables do not.
pub(crate) fn collect_unused<T>(f: impl FnOnce() -> T) -> (T, Unused) {
    UNUSED.with(|u| *u.borrow_mut() = Some(Vec::new()));
    let result = f();
    let found = UNUSED.with(|u| u.borrow_mut().take()).unwrap_or_default();
    (result, found)
}

/// Whether a table name is a file (Postfix: starts with `/` or `.`).
pub(crate) fn is_file_name(name: &str) -> bool {
    name.starts_with('/') || name.starts_with('.')
}

fn config_error(e: ConfigError) -> OpenError {
    OpenError::new(e.to_string())
}

/// The file's bytes once it has not been modified for a second (a file
/// written just now is read again after a pause, as Postfix does).
fn read_settled(path: &str) -> std::io::Result<Vec<u8>> {
    loop {
        let before = SystemTime::now();
        let text = std::fs::read(path)?;
        let modified = std::fs::metadata(path)?.modified()?;
        let after = SystemTime::now();
        let hot = modified + Duration::from_secs(1) >= before && modified <= after;
        if !hot {
            return Ok(text);
        }
        std::thread::sleep(COOL_DOWN);
    }
}

#[cfg(test)]
#[path = "cf_tests.rs"]
mod tests;
