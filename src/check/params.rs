//! Our own `proxymap_*` parameters: value, where it was set, and whether
//! the daemon would accept it; and `proxymap_*` names nobody knows (typos).

use super::report::{Report, Verdict};
use crate::config::{defaults, Params};
use crate::stats;

/// Where a parameter's value comes from.
pub(crate) fn origin(params: &Params, overrides: &[(String, String)], name: &str) -> &'static str {
    if overrides.iter().any(|(n, _)| n == name) {
        "master.cf -o"
    } else if params.raw(name).is_some() {
        "main.cf"
    } else {
        "default"
    }
}

/// Reports every parameter of ours at `depth`.
pub(crate) fn check(params: &Params, overrides: &[(String, String)], report: &mut Report, depth: usize) {
    let threads = Params::CONNECTION_THREADS;
    let after = Params::CONNECTION_THREAD_AFTER;
    let shown = |name: &str, default: &str| {
        let value = params.raw(name).map_or_else(|| default.to_string(), str::to_string);
        format!("{name} = {value} ({})", origin(params, overrides, name))
    };
    let threads_on = match params.raw(threads) {
        None => Ok(true),
        Some(_) => params.get_bool(threads),
    };
    match &threads_on {
        Ok(_) => report.line(depth, shown(threads, "yes"), Verdict::Ok),
        Err(e) => report.line(depth, format!("{}: {e}", shown(threads, "yes")), Verdict::Error),
    }
    let after_line = shown(after, &Params::DEFAULT_THREAD_AFTER.to_string());
    match (params.connection_threads(), threads_on) {
        (Ok(_), Ok(true)) => report.line(depth, after_line, Verdict::Ok),
        // Only read when threads are on: a bad value waits for that day.
        (Ok(_), _) => match params.raw(after).map(|_| params.get_int(after)) {
            Some(Err(e)) => {
                report.line(depth, format!("{after_line}: {e} (unused while {threads} is off)"), Verdict::Warning)
            }
            Some(Ok(n)) if n < 0 => {
                report.line(depth, format!("{after_line}: below 0 (unused while {threads} is off)"), Verdict::Warning)
            }
            _ => report.line(depth, format!("{after_line} (unused while {threads} is off)"), Verdict::Ok),
        },
        (Err(e), Ok(_)) => report.line(depth, format!("{after_line}: {e}"), Verdict::Error),
        // The threads line has the error already.
        (Err(_), Err(_)) => report.info(depth, after_line),
    }
    let statistics = shown(stats::STATISTICS, "yes");
    match stats::enabled(params) {
        Ok(_) => report.line(depth, statistics, Verdict::Ok),
        Err(e) => {
            report.line(depth, format!("{statistics}: {e} (the daemon serves without statistics)"), Verdict::Warning)
        }
    }
    let dir = stats::file_of(params, "proxymap").parent().map(|d| d.display().to_string()).unwrap_or_default();
    let dir_line =
        format!("{} = {dir} ({})", stats::STATISTICS_DIRECTORY, origin(params, overrides, stats::STATISTICS_DIRECTORY));
    report.line(depth, dir_line, Verdict::Ok);
    let ours = [threads, after, stats::STATISTICS, stats::STATISTICS_DIRECTORY];
    let mut unknown: Vec<&str> = params
        .configured_names()
        .filter(|n| n.starts_with("proxymap_") && !ours.contains(n) && defaults::find(n).is_none())
        .collect();
    unknown.sort_unstable();
    for name in unknown {
        report.line(
            depth,
            format!("{name} ({}): not a parameter of proxymap or Postfix, ignored", origin(params, overrides, name)),
            Verdict::Warning,
        );
    }
}
