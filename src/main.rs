//! `proxymap`: the daemon (standalone, or under Postfix's master(8)) and a
//! small client for trying it out.

use proxymap::client::{attr, Client};
use proxymap::master::{self, Source};
use proxymap::postfix_child;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage:
  proxymap standalone [--config FILE] [-v]
      Run the proxymap and proxywrite services under our own prefork master.
      Without --config: the embedded demo (files and sockets in ./proxymap-demo/).
  proxymap client [-s SOCKET] [-f FLAGS] [-w SECONDS] open|lookup|update|delete|sequence TABLE [KEY [VALUE]]
      Send one request (sequence: walk the whole table) and print the result.
      Default socket: proxymap-demo/private/proxymap (proxywrite for update/delete) if
      there, else Postfix's own (queue_directory of $MAIL_CONFIG/main.cf or /etc/postfix).
      -w: wait up to SECONDS for a server that is still starting (without -s: the demo's).
  proxymap check [--config DIR|FILE]
      Check main.cf and master.cf as the daemon would read them (run it before
      `postfix reload`): our parameters, each service's allowlist and where each
      entry came from, each table. Default: $MAIL_CONFIG, postconf's
      config_directory, /etc/postfix. Exit status 1 on anything that would fail.
  proxymap stats [--config DIR|FILE] [--service proxymap|proxywrite] [--format table|prometheus]
      Requests per table (hits, misses, RETRY/DENY/BAD, lookup latency), processes,
      connections: the sums over every process of each service, read from the
      statistics files (proxymap_statistics_directory, default
      $data_directory/proxymap-rs). --config: as for check, or the standalone settings file.
  proxymap --version
  proxymap -t unix [-u] [-n proxywrite] [-o name=value] ...
      As started by Postfix's master(8) from master.cf (see docs/postfix.md).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("standalone") => standalone(&args[1..]),
        Some("client") => client(&args[1..]),
        Some("check") => proxymap::check::main(&args[1..]),
        Some("stats") => proxymap::stats::cmd::main(&args[1..]),
        Some("--version" | "-V") => {
            print!("{}", proxymap::version::report());
            ExitCode::SUCCESS
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        // Anything else that starts with an option: started by Postfix's master(8).
        Some(a) if a.starts_with('-') => {
            let argv0 = std::env::args().next().unwrap_or_else(|| "proxymap".into());
            postfix_child::run(&argv0, &args)
        }
        Some(other) => usage_error(&format!("unknown command: {other}")),
        None => usage_error("a command is needed"),
    }
}

fn standalone(args: &[String]) -> ExitCode {
    let mut config = None;
    let mut verbose = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-C" => match it.next() {
                Some(f) => config = Some(PathBuf::from(f)),
                None => return usage_error("--config needs a file name"),
            },
            "-v" => verbose = true,
            other => return usage_error(&format!("unknown argument: {other}")),
        }
    }
    let source = match config {
        Some(path) => Source::File(path),
        None => Source::Demo(PathBuf::from("proxymap-demo")),
    };
    match master::run(source, verbose) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("proxymap: fatal: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("proxymap: {msg}\n{USAGE}");
    ExitCode::from(2)
}

fn client(args: &[String]) -> ExitCode {
    let mut socket = None;
    let mut flags = String::from("540737"); // what `postmap -q` sends
    let mut wait = std::time::Duration::ZERO;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |what: &str| it.next().ok_or_else(|| format!("{a} needs {what}"));
        match a.as_str() {
            "-s" => match value("a socket path") {
                Ok(v) => socket = Some(PathBuf::from(v)),
                Err(e) => return usage_error(&e),
            },
            "-f" => match value("a number") {
                Ok(v) if v.parse::<u32>().is_ok() => flags.clone_from(v),
                Ok(v) => return usage_error(&format!("-f {v}: not a number")),
                Err(e) => return usage_error(&e),
            },
            "-w" => match value("a number of seconds") {
                Ok(v) => match v.parse::<f64>() {
                    Ok(s) if (0.0..=3600.0).contains(&s) => wait = std::time::Duration::from_secs_f64(s),
                    _ => return usage_error(&format!("-w {v}: not a number of seconds from 0 to 3600")),
                },
                Err(e) => return usage_error(&e),
            },
            // Keys may start with '-': "--" ends the options.
            "--" => rest.extend(it.by_ref().map(String::as_str)),
            o if o.starts_with('-') && o.len() > 1 && rest.is_empty() => {
                return usage_error(&format!("unknown option: {o}"))
            }
            _ => rest.push(a.as_str()),
        }
    }
    let (op, table, operands) = match rest.as_slice() {
        [op, table, operands @ ..] => (*op, *table, operands),
        _ => return usage_error("client needs a request and a table"),
    };
    let needed = match op {
        "open" | "sequence" => 0,
        "lookup" | "delete" => 1,
        "update" => 2,
        _ => return usage_error(&format!("unknown request: {op}")),
    };
    if operands.len() != needed {
        return usage_error(&format!("{op} takes {needed} argument(s) after the table"));
    }
    let service = if matches!(op, "update" | "delete") { "proxywrite" } else { "proxymap" };
    let socket = socket.unwrap_or_else(|| default_socket(service, !wait.is_zero()));
    match run_client(&socket, wait, op, table, &flags, operands) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("proxymap: {}: {e}", socket.display());
            ExitCode::from(2)
        }
    }
}

/// The demo's socket when it is there, or when the client waits for a
/// server that is starting (`-w`: the demo's, which may not have written
/// its directory yet; on a Postfix host, Postfix's socket is there already
/// and would be taken otherwise); else, on a Postfix host, the service's
/// socket in Postfix's queue directory (`queue_directory` of the main.cf in
/// `$MAIL_CONFIG` or /etc/postfix).
fn default_socket(service: &str, waiting: bool) -> PathBuf {
    let demo = PathBuf::from("proxymap-demo/private").join(service);
    if waiting || demo.exists() {
        return demo;
    }
    let config_dir = std::env::var_os("MAIL_CONFIG").map_or_else(|| PathBuf::from("/etc/postfix"), PathBuf::from);
    if !config_dir.join("main.cf").exists() {
        return demo;
    }
    match proxymap::config::Params::load(&config_dir, &[]) {
        Ok(params) => PathBuf::from(params.get("queue_directory")).join("private").join(service),
        Err(_) => demo,
    }
}

fn run_client(
    socket: &std::path::Path,
    wait: std::time::Duration,
    op: &str,
    table: &str,
    flags: &str,
    operands: &[&str],
) -> std::io::Result<ExitCode> {
    let mut c = Client::connect_waiting(socket, wait)?;
    let mut pairs: Vec<(&str, &[u8])> =
        vec![("request", op.as_bytes()), ("table", table.as_bytes()), ("flags", flags.as_bytes())];
    let names: &[&str] = match op {
        "update" => &["key", "value"],
        "sequence" => &["function"],
        _ => &["key"],
    };
    let mut func = "0";
    if op == "sequence" {
        pairs.push(("function", func.as_bytes()));
    } else {
        for (n, v) in names.iter().zip(operands) {
            pairs.push((n, v.as_bytes()));
        }
    }
    loop {
        let reply = c.call(&pairs)?;
        let status = attr(&reply, "status").and_then(|s| std::str::from_utf8(s).ok()?.parse::<u32>().ok());
        let text = |n| String::from_utf8_lossy(attr(&reply, n).unwrap_or_default()).into_owned();
        match (op, status) {
            ("open", Some(0)) => println!("flags={}", text("flags")),
            ("lookup", Some(0)) => println!("{}", text("value")),
            ("sequence", Some(0)) => {
                println!("{}\t{}", text("key"), text("value"));
                func = "1";
                pairs.pop();
                pairs.push(("function", func.as_bytes()));
                continue;
            }
            ("sequence", Some(1)) => {}
            (_, Some(0)) => {}
            (_, Some(1)) => return Ok(ExitCode::from(1)),
            (_, s) => {
                let name = match s {
                    Some(2) => "RETRY",
                    Some(3) => "BAD",
                    Some(4) => "DENY",
                    Some(5) => "CONFIG",
                    _ => "unexpected",
                };
                eprintln!("proxymap: {op} {table}: status {} ({name})", s.map_or("?".into(), |s| s.to_string()));
                return Ok(ExitCode::from(2));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
}
