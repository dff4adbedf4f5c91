//! One allowlisted table: is its type served, does its file (or `.cf`)
//! exist and can mail_owner read it, does it open as the daemon would open
//! it (a `.cf` parses, a pattern file compiles, a database file is sound),
//! and, for `pipemap:{...}`/`unionmap:{...}`, the same for every part.
//!
//! Opening a table connects to no server: the network and database tables
//! read their configuration at open and connect at the first lookup.

use super::access::{self, Access, User};
use super::report::{Report, Verdict};
use crate::config::Params;
use crate::dict::db_common::cf::{self, Cf};
use crate::dict::{composite::components, registry, Mode, OpenRequest};
use std::path::{Path, PathBuf};

/// What every table of a service is checked against.
pub(crate) struct Context<'a> {
    pub params: &'a Params,
    /// mail_owner, when the service drops to it (`unpriv` y) and it exists.
    pub user: Option<&'a User>,
    /// Where relative names point: the daemon works in queue_directory.
    pub cwd: PathBuf,
    /// proxywrite: tables are opened for update.
    pub writer: bool,
}

/// Types whose tables proxywrite can open for update (the others refuse
/// O_RDWR; `writable_list_matches_the_constructors` keeps this honest).
pub(crate) const WRITABLE: &[&str] = &["btree", "environ", "fail", "hash", "internal", "lmdb", "memcache", "static"];

/// Types configured by a `.cf` file or main.cf parameters with a prefix.
const CONFIGURED: &[&str] = &["ldap", "memcache", "mysql", "pgsql", "sqlite"];

/// Parameters worth showing from a `.cf` (never passwords).
const SUMMARY: &[&str] = &["hosts", "server_host", "dbname", "dbpath", "search_base", "memcache"];

/// The file a table reads, if it reads one.
fn table_file(type_name: &str, name: &str) -> Option<String> {
    let suffix = match type_name {
        "hash" | "btree" => ".db",
        "lmdb" => ".lmdb",
        "cdb" => ".cdb",
        "texthash" | "regexp" | "pcre" | "cidr" if !name.starts_with('{') => "",
        t if CONFIGURED.contains(&t) && cf::is_file_name(name) => "",
        _ => return None,
    };
    Some(format!("{name}{suffix}"))
}

/// Checks `table` (`type:name`), reporting at `depth`.
pub(crate) fn check(table: &str, ctx: &Context, report: &mut Report, depth: usize) {
    let Some((type_name, name)) = table.split_once(':').filter(|(t, n)| !t.is_empty() && !n.is_empty()) else {
        report.line(depth, format!("{table}: expecting \"type:name\""), Verdict::Error);
        return;
    };
    if registry::lookup(type_name).is_none() {
        report.line(depth, format!("{type_name}: not supported by this build"), Verdict::Error);
        return;
    }
    if type_name == "proxy" {
        // Inside the server, proxy:type:name is type:name opened in place.
        return check(name.trim_start_matches("proxy:"), ctx, report, depth);
    }
    let req = OpenRequest { type_name, name, mode: Mode::ReadOnly, flags: 0, params: ctx.params };
    if ctx.writer && !WRITABLE.contains(&type_name) {
        // These refuse an update open before reading anything: the daemon's own words.
        let why = match registry::open(&OpenRequest { mode: Mode::ReadWrite, ..req }) {
            Err(e) => e.reason,
            Ok(_) => format!("{table} is read-only"),
        };
        report.line(depth, format!("{type_name}: proxywrite: {why}"), Verdict::Error);
        return;
    }
    if matches!(type_name, "pipemap" | "unionmap") {
        match components::specs(&req) {
            Ok(parts) => {
                report.line(depth, format!("{type_name}: {} parts", parts.len()), Verdict::Ok);
                for part in parts {
                    report.info(depth, format!("part {part}"));
                    check(part, ctx, report, depth + 1);
                }
            }
            Err(e) => report.line(depth, format!("{type_name}: {}", e.reason), Verdict::Error),
        }
        return;
    }
    let mut facts = Vec::new();
    if let Some(file) = table_file(type_name, name) {
        if Path::new(&file).is_relative() {
            let why = format!("{type_name}: {file}: a relative name, taken from queue_directory; not checked");
            report.line(depth, why, Verdict::Warning);
            return;
        }
        match file_facts(Path::new(&file), ctx, WRITABLE.contains(&type_name)) {
            Ok(f) => facts.push(f),
            Err(why) => return report.line(depth, format!("{type_name}: {why}"), Verdict::Error),
        }
    } else if CONFIGURED.contains(&type_name) {
        facts.push(format!("main.cf parameters {name}_*"));
    }
    let (opened, unused) = cf::collect_unused(|| registry::open(&req).map(drop));
    if let Err(e) = opened {
        return report.line(depth, format!("{type_name}: {}", e.reason), Verdict::Error);
    }
    if CONFIGURED.contains(&type_name) {
        facts.push(format!("parses{}", summary(name, ctx.params)));
        if type_name == "sqlite" {
            match sqlite_db(name, ctx) {
                Ok(f) => facts.push(f),
                Err(why) => {
                    return report.line(depth, format!("{type_name}: {}; {why}", facts.join(", ")), Verdict::Error)
                }
            }
        }
    } else if table_file(type_name, name).is_some() {
        facts.push("opens".to_string());
    }
    let text =
        if facts.is_empty() { format!("{type_name}: opens") } else { format!("{type_name}: {}", facts.join(", ")) };
    report.line(depth, text, Verdict::Ok);
    for (file, names) in unused {
        let why = format!("{file}: not used by {type_name}, ignored: {}", names.join(", "));
        report.line(depth + 1, why, Verdict::Warning);
    }
}

/// "<path> exists, readable by <user>", or why not.
fn file_facts(path: &Path, ctx: &Context, writable_type: bool) -> Result<String, String> {
    if let Err(e) = std::fs::metadata(path) {
        return Err(format!("{}: {}", path.display(), crate::sys::errno::io_error_text(&e)));
    }
    let mut text = format!("{} exists", path.display());
    let Some(user) = ctx.user else { return Ok(text) };
    access::check(path, &ctx.cwd, user, Access::Read)
        .map_err(|why| format!("{text}, not readable by {}: {why}", user.name))?;
    text.push_str(&format!(", readable by {}", user.name));
    if ctx.writer && writable_type {
        access::check(path, &ctx.cwd, user, Access::Write)
            .map_err(|why| format!("{text}, not writable by {}: {why}", user.name))?;
        text.push_str(", writable");
    }
    Ok(text)
}

/// ` (hosts=..., dbname=...)` from the table's configuration.
fn summary(name: &str, params: &Params) -> String {
    let Ok(cf) = Cf::open(name, params) else { return String::new() };
    let shown: Vec<String> =
        SUMMARY.iter().filter_map(|p| cf.get_str(p, None, 0, 0).ok().flatten().map(|v| format!("{p}={v}"))).collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!(" ({})", shown.join(", "))
    }
}

/// The sqlite database file, readable by mail_owner.
fn sqlite_db(name: &str, ctx: &Context) -> Result<String, String> {
    let cf = Cf::open(name, ctx.params).map_err(|e| e.reason)?;
    let Some(db) = cf.get_str("dbpath", None, 0, 0).map_err(|e| e.reason)? else { return Ok(String::new()) };
    file_facts(Path::new(&db), ctx, false).map(|f| format!("database {f}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_list_matches_the_constructors() {
        let params = Params::default();
        // proxy: opens what it names, as that type would
        for ty in registry::type_names().filter(|t| !WRITABLE.contains(t) && *t != "proxy") {
            // names that exist nowhere: the refusal comes before any file is read
            let name = if matches!(ty, "pipemap" | "unionmap") { "{static:x}" } else { "/nonexistent/x" };
            let req = OpenRequest { type_name: ty, name, mode: Mode::ReadWrite, flags: 0, params: &params };
            let err = registry::open(&req).map(drop).expect_err(ty);
            assert!(err.reason.contains("O_RDONLY"), "{ty}: {}", err.reason);
        }
    }

    #[test]
    fn files_by_type() {
        assert_eq!(table_file("hash", "/e/v").as_deref(), Some("/e/v.db"));
        assert_eq!(table_file("lmdb", "/e/v").as_deref(), Some("/e/v.lmdb"));
        assert_eq!(table_file("pcre", "/e/v.pcre").as_deref(), Some("/e/v.pcre"));
        assert_eq!(table_file("pcre", "{ {/a/ b} }"), None);
        assert_eq!(table_file("pgsql", "/e/pg.cf").as_deref(), Some("/e/pg.cf"));
        assert_eq!(table_file("pgsql", "pgprefix"), None);
        assert_eq!(table_file("static", "x"), None);
    }
}
