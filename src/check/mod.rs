//! `proxymap check [--config DIR|FILE]`: reads main.cf and master.cf as the
//! daemon would and reports, for each proxymap/proxywrite service, our
//! parameters, the user it runs as and its allowlist, entry by entry, with
//! where each came from and whether its table would open. The exit status
//! is 1 when anything would fail at run time, 2 when the check could not
//! run at all.
//!
//! Modules: `master_cf` (the services), `service` (one service as the
//! daemon sets it up), `params` (our `proxymap_*` parameters), `tables`
//! (one table), `access` (what mail_owner may read), `report` (output).

mod access;
mod master_cf;
mod params;
mod report;
mod service;
mod tables;

use report::{Report, Verdict};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What master.cf holds for us when it names neither service.
const DEFAULT_ENTRIES: &str = "\
proxymap  unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap -n proxywrite
";

/// Why the check could not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckError {
    #[error("{0}")]
    Usage(String),
    #[error("{}: {}", .0.display(), crate::sys::errno::io_error_text(.1))]
    Config(PathBuf, std::io::Error),
}

/// Runs the check with the arguments after `check`; prints the report.
pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok((text, errors)) => {
            print!("{text}");
            if errors > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("proxymap check: {e}");
            ExitCode::from(2)
        }
    }
}

/// The report's text and its number of errors.
fn run(args: &[String]) -> Result<(String, usize), CheckError> {
    let config_dir = match args {
        [] => default_config_dir(),
        [flag, path] if flag == "--config" || flag == "-c" => config_dir_of(Path::new(path))?,
        _ => return Err(CheckError::Usage("usage: proxymap check [--config DIR|FILE]".into())),
    };
    let mut report = Report::default();
    report.info(0, format!("config_directory {}", config_dir.display()));
    let master = config_dir.join("master.cf");
    let entries = match std::fs::read(&master) {
        Ok(bytes) => match master_cf::parse(&String::from_utf8_lossy(&bytes)) {
            Ok(entries) => entries,
            Err(e) => {
                report.line(0, format!("{}: {e}", master.display()), Verdict::Error);
                Vec::new()
            }
        },
        Err(e) => {
            let why = format!("{}: {}", master.display(), crate::sys::errno::io_error_text(&e));
            report.line(0, why, Verdict::Warning);
            Vec::new()
        }
    };
    let ours: Vec<_> = entries.into_iter().filter(master_cf::Entry::is_ours).collect();
    if ours.is_empty() {
        report.info(0, "master.cf runs neither proxymap nor proxymap-rs: checking the default entries");
        for entry in master_cf::parse(DEFAULT_ENTRIES).unwrap_or_default() {
            service::check(&config_dir, &entry, "default", &mut report);
        }
    } else {
        for entry in &ours {
            service::check(&config_dir, entry, &format!("master.cf line {}", entry.line), &mut report);
        }
    }
    Ok(report.finish())
}

/// `--config`: a directory, or main.cf in one.
pub(crate) fn config_dir_of(path: &Path) -> Result<PathBuf, CheckError> {
    let meta = std::fs::metadata(path).map_err(|e| CheckError::Config(path.to_path_buf(), e))?;
    if meta.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.file_name().is_some_and(|n| n == "main.cf") {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        return Ok(parent.to_path_buf());
    }
    Err(CheckError::Usage(format!("{}: neither a directory nor a main.cf", path.display())))
}

/// `$MAIL_CONFIG`, else what postconf says, else /etc/postfix.
pub(crate) fn default_config_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MAIL_CONFIG") {
        return PathBuf::from(dir);
    }
    let postconf = std::process::Command::new("postconf")
        .args(["-h", "config_directory"])
        .stderr(std::process::Stdio::null())
        .output();
    match postconf {
        Ok(out) if out.status.success() => {
            let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if dir.is_empty() {
                PathBuf::from("/etc/postfix")
            } else {
                PathBuf::from(dir)
            }
        }
        _ => PathBuf::from("/etc/postfix"),
    }
}
