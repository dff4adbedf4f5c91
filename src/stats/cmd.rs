//! `proxymap stats [--config DIR|FILE] [--service NAME] [--format table|prometheus]`:
//! finds the statistics files as the daemon would and prints their sums.

use super::{file_of, format, reader};
use crate::config::Params;
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str =
    "usage: proxymap stats [--config DIR|FILE] [--service proxymap|proxywrite] [--format table|prometheus]";

pub fn main(args: &[String]) -> ExitCode {
    match run(args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("proxymap stats: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> Result<String, String> {
    let (mut config, mut services, mut prometheus) = (None, vec!["proxymap", "proxywrite"], false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let value = it.next().ok_or_else(|| format!("{a} needs a value\n{USAGE}"))?;
        match (a.as_str(), value.as_str()) {
            ("--config" | "-c", v) => config = Some(v.to_string()),
            ("--service", v @ ("proxymap" | "proxywrite")) => services = vec![v],
            ("--format", "table") => prometheus = false,
            ("--format", "prometheus") => prometheus = true,
            _ => return Err(format!("{a} {value}: unknown option or value\n{USAGE}")),
        }
    }
    let params = params(config.as_deref())?;
    let mut totals = Vec::new();
    let mut missing = Vec::new();
    for service in services {
        let file = file_of(&params, service);
        if !file.exists() {
            missing.push(file.display().to_string());
            continue;
        }
        totals.push(reader::read(&file, service).map_err(|e| e.to_string())?);
    }
    if totals.is_empty() {
        return Err(format!("no statistics file: {}", missing.join(", ")));
    }
    Ok(if prometheus { format::prometheus(&totals) } else { format::table(&totals) })
}

/// main.cf's parameters as the daemon reads them: a directory or main.cf
/// (under master(8)), else our standalone settings file (its
/// config_directory and overrides).
fn params(config: Option<&str>) -> Result<Params, String> {
    let path = match config {
        None => crate::check::default_config_dir(),
        Some(p) if Path::new(p).is_dir() || p.ends_with("main.cf") => {
            crate::check::config_dir_of(Path::new(p)).map_err(|e| e.to_string())?
        }
        Some(p) => {
            let loaded = crate::master::Source::File(p.into()).load().map_err(|e| e.to_string())?;
            return Ok(std::sync::Arc::unwrap_or_clone(loaded.params));
        }
    };
    Params::load(&path, &[]).map_err(|e| e.to_string())
}
