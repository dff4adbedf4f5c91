//! The command line Postfix's master(8) gives a multi_server child (3.7
//! option string `cdDi:lm:n:o:s:St:uvVz`, parsing stops at the first
//! non-option), with Postfix's error texts.

use crate::config::maincf::parse_override;

/// What the options ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChildArgs {
    pub chroot: bool,
    /// `-d`: not detached from a terminal (skips the "by hand" check).
    pub foreground: bool,
    pub debugger: bool,
    pub max_idle: Option<String>,
    pub max_use: Option<String>,
    pub alone: bool,
    pub unlimited: bool,
    pub service_name: Option<String>,
    pub overrides: Vec<(String, String)>,
    pub socket_count: usize,
    /// `-S`: serve one request on stdin/stdout.
    pub stand_alone: bool,
    pub transport: Option<String>,
    /// `-u`: run as mail_owner.
    pub unprivileged: bool,
    pub verbose: u32,
    /// `-V`: also log to stderr.
    pub stderr: bool,
    /// Non-option arguments (proxymap accepts none).
    pub rest: Vec<String>,
}

/// A fatal command-line error, worded as Postfix words it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub(crate) struct ArgError(pub String);

/// Options that take a value.
const WITH_VALUE: &[char] = &['i', 'm', 'n', 'o', 's', 't'];
const FLAGS: &[char] = &['c', 'd', 'D', 'l', 'S', 'u', 'v', 'V', 'z'];

/// Parse `args` (without argv[0]).
pub(crate) fn parse(args: &[String]) -> Result<ChildArgs, ArgError> {
    let mut a = ChildArgs { socket_count: 1, ..ChildArgs::default() };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            i += 1;
            break;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else { break };
        let chars: Vec<char> = cluster.chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            if WITH_VALUE.contains(&c) {
                // the value is the rest of this word, or the next word
                let value: String = if j + 1 < chars.len() {
                    chars[j + 1..].iter().collect()
                } else {
                    i += 1;
                    match args.get(i) {
                        Some(v) => v.clone(),
                        None => return Err(ArgError(format!("invalid option: {c}"))),
                    }
                };
                apply_value(&mut a, c, value)?;
                break;
            } else if FLAGS.contains(&c) {
                match c {
                    'c' => a.chroot = true,
                    'd' => a.foreground = true,
                    'D' => a.debugger = true,
                    'l' => a.alone = true,
                    'S' => a.stand_alone = true,
                    'u' => a.unprivileged = true,
                    'v' => a.verbose += 1,
                    'V' => a.stderr = true,
                    _ => a.unlimited = true,
                }
            } else {
                return Err(ArgError(format!("invalid option: {c}")));
            }
            j += 1;
        }
        i += 1;
    }
    a.rest = args[i..].to_vec();
    Ok(a)
}

fn apply_value(a: &mut ChildArgs, c: char, value: String) -> Result<(), ArgError> {
    match c {
        'i' => a.max_idle = Some(value),
        'm' => a.max_use = Some(value),
        'n' => a.service_name = Some(value),
        'o' => a.overrides.push(parse_override(&value).map_err(|e| ArgError(e.to_string()))?),
        's' => match value.trim().parse::<i64>() {
            Ok(n) if n > 0 => a.socket_count = n as usize,
            _ => return Err(ArgError(format!("invalid socket_count: {value}"))),
        },
        _ => a.transport = Some(value),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<ChildArgs, ArgError> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn master_command_lines() {
        let a = p(&["-t", "unix", "-u"]).unwrap();
        assert_eq!((a.transport.as_deref(), a.unprivileged, a.socket_count), (Some("unix"), true, 1));
        let a = p(&["-l", "-n", "proxywrite", "-t", "unix", "-u"]).unwrap();
        assert_eq!((a.alone, a.service_name.as_deref()), (true, Some("proxywrite")));
        let a = p(&["-tunix", "-vv", "-o", "max_use = 5", "-o", "x=a=b", "-s", "2"]).unwrap();
        assert_eq!(a.verbose, 2);
        assert_eq!(a.overrides, vec![("max_use".into(), "5".into()), ("x".into(), "a=b".into())]);
        assert_eq!(a.socket_count, 2);
    }

    #[test]
    fn parsing_stops_at_the_first_non_option() {
        let a = p(&["-t", "unix", "extra", "-v"]).unwrap();
        assert_eq!(a.rest, vec!["extra".to_string(), "-v".to_string()]);
        assert_eq!(a.verbose, 0);
    }

    #[test]
    fn errors_use_postfix_texts() {
        assert_eq!(p(&["-x"]), Err(ArgError("invalid option: x".into())));
        assert_eq!(p(&["-s", "0"]), Err(ArgError("invalid socket_count: 0".into())));
        assert_eq!(
            p(&["-o", "novalue"]),
            Err(ArgError("invalid \"-o novalue\" option value: missing '=' after attribute name".into()))
        );
        assert_eq!(p(&["-t"]), Err(ArgError("invalid option: t".into())));
    }
}
