//! The differential harness for table types asked through `postmap -q`:
//! the same key and table asked of Postfix in process (`postmap -q KEY
//! TYPE:NAME`, Postfix's own table code) and through our proxymap in a
//! private instance (`postmap -q KEY proxy:TYPE:NAME`). Used by every
//! database and network table's differential test.

use super::postfix::Instance;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

/// Write a file with its time stamp an hour back (Postfix and we re-read
/// a `.cf` file written in the last second).
pub(crate) fn write_settled(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    let f = std::fs::File::options().write(true).open(path).expect("open");
    f.set_modified(SystemTime::now() - Duration::from_secs(3600)).expect("mtime");
}

/// `postmap -q KEY TABLE` in the instance: the outcome (exit code, stdout,
/// stderr without warnings and with `proxy:` taken out) and the warnings
/// apart.
pub(crate) fn query(inst: &Instance, key: &str, table: &str) -> (String, Vec<String>) {
    let out: Output = Command::new("timeout")
        .args(["20", "postmap", "-c"])
        .arg(&inst.config)
        .args(["-q", key, table])
        .stdin(Stdio::null())
        .output()
        .expect("postmap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings = stderr.lines().filter_map(|l| l.strip_prefix("postmap: warning: ")).map(str::to_string).collect();
    // postmap's "query error: %m" shows whatever errno the client had last
    let rest: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("postmap: warning: "))
        .map(|l| l.split_once("query error: ").map_or(l, |(head, _)| head))
        .collect();
    let outcome = format!(
        "exit={:?} stdout={:?} stderr={:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        rest.join("\n").replace("proxy:", "")
    );
    (outcome, warnings)
}

/// What [`compare`] found.
pub(crate) struct Compared {
    /// One entry per (table, key) answered differently, both answers shown.
    pub diffs: Vec<String>,
    /// Keys Postfix found (exit 0).
    pub hits: usize,
    /// Every warning Postfix's table code printed.
    pub theirs_warnings: BTreeSet<String>,
}

/// Ask every key of every table (`TYPE:NAME`) of Postfix and of ours.
pub(crate) fn compare(inst: &Instance, tables: &[String], keys: &[&str]) -> Compared {
    let mut found = Compared { diffs: Vec::new(), hits: 0, theirs_warnings: BTreeSet::new() };
    for table in tables {
        for key in keys {
            let (theirs, warnings) = query(inst, key, table);
            found.theirs_warnings.extend(warnings);
            let (ours, our_stderr_warnings) = query(inst, key, &format!("proxy:{table}"));
            assert!(our_stderr_warnings.is_empty(), "{table} {key:?}: client warnings {our_stderr_warnings:?}");
            if theirs != ours {
                found.diffs.push(format!("{table} {key:?}\n  postfix: {theirs}\n  ours:    {ours}"));
            }
            found.hits += usize::from(theirs.starts_with("exit=Some(0)"));
        }
    }
    assert!(found.diffs.is_empty(), "{} difference(s):\n{}", found.diffs.len(), found.diffs.join("\n"));
    found
}

/// Our proxymap's warnings must be the set Postfix's table code printed
/// (Postfix opens the table afresh for each postmap run, ours once); at
/// least `min` of them, so that the check cannot pass empty.
pub(crate) fn assert_same_warnings(inst: &Instance, found: &Compared, min: usize) {
    let log = settled_log(inst);
    let ours: BTreeSet<String> = proxymap_lines(&log, "warning").into_iter().collect();
    if std::env::var_os("PM_DIFF_SHOW").is_some() {
        eprintln!("{} hits; warnings: {ours:#?}", found.hits);
    }
    assert!(found.theirs_warnings.len() >= min, "{:?}", found.theirs_warnings);
    assert_eq!(found.theirs_warnings, ours, "warnings differ; log:\n{log}");
}

/// The text of our proxymap's log lines of one severity (`warning`, `error`).
pub(crate) fn proxymap_lines(log: &str, severity: &str) -> Vec<String> {
    let tag = format!("]: {severity}: ");
    log.lines()
        .filter(|l| l.contains(" postfix/proxymap["))
        .filter_map(|l| l.split_once(&tag).map(|(_, text)| text.to_string()))
        .collect()
}

/// Our log, once it has stopped growing (postlogd writes it).
pub(crate) fn settled_log(inst: &Instance) -> String {
    let mut last = inst.log();
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let now = inst.log();
        if now == last {
            return now;
        }
        last = now;
    }
}
