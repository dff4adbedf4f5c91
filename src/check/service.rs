//! One proxymap or proxywrite service of master.cf, set up as the daemon
//! would set itself up: its command line, main.cf with the `-o`
//! overrides, its role, the user it runs as, our parameters, and its
//! allowlist with where each entry came from.

use super::access::{User, UserError};
use super::master_cf::Entry;
use super::report::{Report, Verdict};
use super::{params, tables};
use crate::config::allowlist::entries_at;
use crate::config::Params;
use crate::postfix_child::args;
use std::path::{Path, PathBuf};

/// Checks the service of `entry`; `label` says where the entry is from.
pub(crate) fn check(config_dir: &Path, entry: &Entry, label: &str, report: &mut Report) {
    report.info(0, format!("service {} ({label}: {})", entry.service, entry.text));
    let a = match args::parse(&entry.child_argv()) {
        Ok(a) => a,
        Err(e) => return report.line(1, format!("command line: {e}"), Verdict::Error),
    };
    if !a.transport.as_deref().is_some_and(|t| t.eq_ignore_ascii_case("unix")) {
        report.line(1, format!("unsupported transport type: {}", entry.transport), Verdict::Error);
    }
    if let Some(extra) = a.rest.first() {
        report.line(1, format!("unexpected command-line argument: {extra}"), Verdict::Error);
    }
    let mut overrides = a.overrides.clone();
    overrides.extend(a.max_idle.iter().map(|v| ("max_idle".to_string(), v.clone())));
    overrides.extend(a.max_use.iter().map(|v| ("max_use".to_string(), v.clone())));
    let params = match Params::load(config_dir, &overrides) {
        Ok(p) => p,
        Err(e) => return report.line(1, format!("main.cf: {e}"), Verdict::Error),
    };
    let process = Path::new(&entry.command).file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let writer = match a.service_name.as_deref().unwrap_or(&process) {
        "proxymap" => false,
        "proxywrite" => true,
        other => {
            let why = format!("service name {other}: must be proxymap or proxywrite");
            return report.line(1, why, Verdict::Error);
        }
    };
    if a.chroot {
        let why = "chroot: table names are then taken inside queue_directory; proxymap is meant to run unchrooted";
        report.line(1, why, Verdict::Warning);
    }
    let user = run_as(&params, &overrides, a.unprivileged, report);
    params::check(&params, &overrides, report, 1);
    let ctx = tables::Context {
        params: &params,
        user: user.as_ref(),
        cwd: PathBuf::from(params.get("queue_directory")),
        writer,
    };
    allowlist(&ctx, &overrides, report);
}

/// mail_owner, when the daemon drops to it; an unknown user is fatal there.
fn run_as(params: &Params, overrides: &[(String, String)], unprivileged: bool, report: &mut Report) -> Option<User> {
    let name = params.get("mail_owner");
    let shown = format!("mail_owner = {name} ({})", params::origin(params, overrides, "mail_owner"));
    if !unprivileged {
        report.line(1, format!("{shown}: unpriv is n, the service runs as root"), Verdict::Warning);
        return None;
    }
    match User::find(&name) {
        Ok(user) => {
            report.line(1, format!("{shown}: uid {}", user.uid), Verdict::Ok);
            Some(user)
        }
        Err(e @ UserError::Unknown(_)) => {
            report.line(1, format!("{shown}: {e}, the daemon cannot drop privileges"), Verdict::Error);
            None
        }
        Err(e) => {
            report.line(1, format!("{shown}: {e}; readability not checked"), Verdict::Warning);
            None
        }
    }
}

/// The allowlist, each entry with the `$name` chain it came through.
fn allowlist(ctx: &tables::Context, overrides: &[(String, String)], report: &mut Report) {
    let param = if ctx.writer { "proxy_write_maps" } else { "proxy_read_maps" };
    let (value, spans) = match ctx.params.get_traced(param) {
        Ok(v) => v,
        Err(e) => return report.line(1, format!("{param}: {e}"), Verdict::Error),
    };
    // Each table once, with every place it came from.
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for (table, at) in entries_at(&value, param) {
        let via = spans.iter().find(|s| s.range.contains(&at)).map(|s| s.via.clone());
        let from = match via.as_ref().and_then(|v| v.last()) {
            None if via.is_some() => format!("{param} itself ({})", params::origin(ctx.params, overrides, param)),
            None => format!("${param}"),
            Some(last) => {
                let via = via.as_deref().unwrap_or_default();
                let chain: Vec<String> = via.iter().map(|n| format!("${n}")).collect();
                format!("{} ({})", chain.join(" -> "), params::origin(ctx.params, overrides, last))
            }
        };
        match tables.iter_mut().find(|(t, _)| *t == table) {
            Some((_, places)) if !places.contains(&from) => places.push(from),
            Some(_) => {}
            None => tables.push((table, vec![from])),
        }
    }
    let count = format!("{} table{}", tables.len(), if tables.len() == 1 { "" } else { "s" });
    report.info(1, format!("allowlist ({param}, {count}):"));
    for (table, from) in &tables {
        report.info(2, format!("proxy:{table}  from {}", from.join(", ")));
        tables::check(table, ctx, report, 3);
    }
}
