//! master.cf as master(8) reads it: logical lines (a line starting with
//! whitespace continues the one before; blank and `#` lines are skipped),
//! whitespace-separated fields, `{ text with spaces }` as one argument;
//! and the command line master(8) gives a service's child.

/// One service entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Line number where the entry starts.
    pub line: usize,
    /// The fields as written, joined by one space (for the report).
    pub text: String,
    pub service: String,
    pub transport: String,
    /// `unpriv` field: `-` means yes.
    pub unprivileged: bool,
    /// `chroot` field: `-` means no (Postfix 3.0 and later).
    pub chroot: bool,
    pub maxproc: String,
    pub command: String,
    pub args: Vec<String>,
}

/// A master.cf entry master(8) would refuse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("master.cf line {line}: {reason}")]
pub(crate) struct MasterCfError {
    pub line: usize,
    pub reason: String,
}

/// Command names that run this program.
const OURS: &[&str] = &["proxymap", "proxymap-rs"];

impl Entry {
    /// Whether the command is proxymap or proxymap-rs (by base name).
    pub(crate) fn is_ours(&self) -> bool {
        let base = self.command.rsplit('/').next().unwrap_or(&self.command);
        OURS.contains(&base)
    }

    /// The arguments master(8) starts the command with (after argv[0]):
    /// its own options first, then the entry's.
    pub(crate) fn child_argv(&self) -> Vec<String> {
        let mut argv = Vec::new();
        match self.maxproc.as_str() {
            "1" => argv.push("-l".to_string()),
            "0" => argv.push("-z".to_string()),
            _ => {}
        }
        let base = self.command.rsplit('/').next().unwrap_or(&self.command);
        if base != self.service {
            argv.extend(["-n".to_string(), self.service.clone()]);
        }
        argv.extend(["-t".to_string(), self.transport.clone()]);
        if self.unprivileged {
            argv.push("-u".to_string());
        }
        if self.chroot {
            argv.push("-c".to_string());
        }
        argv.extend(self.args.iter().cloned());
        argv
    }
}

/// Every entry of master.cf text.
pub(crate) fn parse(text: &str) -> Result<Vec<Entry>, MasterCfError> {
    let mut entries = Vec::new();
    for (line, logical) in logical_lines(text) {
        let err = |reason: String| MasterCfError { line, reason };
        let fields = split_fields(&logical).map_err(err)?;
        if fields.len() < 8 {
            return Err(err(format!("missing command name field in \"{}\"", fields.join(" "))));
        }
        let flag = |i: usize, default: bool| -> Result<bool, MasterCfError> {
            match fields[i].as_str() {
                "-" => Ok(default),
                "y" => Ok(true),
                "n" => Ok(false),
                other => Err(err(format!("bad boolean field value: \"{other}\""))),
            }
        };
        entries.push(Entry {
            line,
            text: fields.join(" "),
            service: fields[0].clone(),
            transport: fields[1].clone(),
            unprivileged: flag(3, true)?,
            chroot: flag(4, false)?,
            maxproc: fields[6].clone(),
            command: fields[7].clone(),
            args: fields[8..].to_vec(),
        });
    }
    Ok(entries)
}

/// Logical lines with the number of their first physical line.
fn logical_lines(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let continues = raw.starts_with([' ', '\t']);
        match out.last_mut() {
            Some((_, logical)) if continues => {
                logical.push(' ');
                logical.push_str(trimmed);
            }
            _ => out.push((i + 1, trimmed.to_string())),
        }
    }
    out
}

/// Whitespace-separated fields; a field starting with `{` runs to its
/// matching `}` and is the text inside, trimmed.
fn split_fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if rest.starts_with('{') {
            let mut depth = 0usize;
            let close = rest.char_indices().find_map(|(i, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                (c == '}' && depth == 0).then_some(i)
            });
            let Some(close) = close else { return Err(format!("missing '}}' in \"{rest}\"")) };
            let after = &rest[close + 1..];
            if !after.is_empty() && !after.starts_with(char::is_whitespace) {
                return Err(format!("syntax error after '}}' in \"{rest}\""));
            }
            fields.push(rest[1..close].trim().to_string());
            rest = after.trim_start();
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            fields.push(rest[..end].to_string());
            rest = rest[end..].trim_start();
        }
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
# service type  private unpriv  chroot  wakeup  maxproc command + args
smtp      inet  n       -       y       -       -       smtpd
proxymap  unix  -       -       n       -       -       proxymap-rs
  # a comment inside the entry
  -o proxymap_connection_threads=no
proxywrite unix -       -       n       -       1       proxymap
    -n proxywrite -o { smtpd_banner = a b c }

tlsmgr    unix  -       -       y       1000?   1       tlsmgr
";

    #[test]
    fn entries_continuations_and_braces() {
        let e = parse(SAMPLE).unwrap();
        assert_eq!(e.len(), 4);
        assert_eq!((e[1].line, e[1].service.as_str(), e[1].command.as_str()), (3, "proxymap", "proxymap-rs"));
        assert_eq!(e[1].args, ["-o", "proxymap_connection_threads=no"]);
        assert_eq!(e[1].text, "proxymap unix - - n - - proxymap-rs -o proxymap_connection_threads=no");
        assert_eq!(e[2].args, ["-n", "proxywrite", "-o", "smtpd_banner = a b c"]);
        assert!(e[0].chroot && e[0].unprivileged && !e[1].chroot);
        let ours: Vec<&str> = e.iter().filter(|e| e.is_ours()).map(|e| e.service.as_str()).collect();
        assert_eq!(ours, ["proxymap", "proxywrite"]);
    }

    #[test]
    fn child_command_line_as_master_builds_it() {
        let e = parse(SAMPLE).unwrap();
        assert_eq!(e[1].child_argv(), ["-n", "proxymap", "-t", "unix", "-u", "-o", "proxymap_connection_threads=no"]);
        assert_eq!(
            e[2].child_argv(),
            ["-l", "-n", "proxywrite", "-t", "unix", "-u", "-n", "proxywrite", "-o", "smtpd_banner = a b c"]
        );
        let plain = parse("proxymap unix - n y - 0 /usr/lib/postfix/sbin/proxymap\n").unwrap();
        assert_eq!(plain[0].child_argv(), ["-z", "-t", "unix", "-c"]);
    }

    #[test]
    fn refused_entries() {
        assert_eq!(
            parse("x unix - - n - -\n").unwrap_err(),
            MasterCfError { line: 1, reason: "missing command name field in \"x unix - - n - -\"".into() }
        );
        assert_eq!(parse("\n\nx unix - - maybe - - cmd\n").unwrap_err().line, 3);
        assert!(parse("x unix - - n - - cmd -o {a = b\n").unwrap_err().reason.starts_with("missing '}'"));
        assert!(parse("x unix - - n - - cmd -o {a}b\n").unwrap_err().reason.starts_with("syntax error after"));
    }
}
