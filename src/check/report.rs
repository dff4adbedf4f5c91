//! The check's output: one line per fact, indented under what it is about,
//! ending in `ok`, `WARNING` or `ERROR` when it is a verdict; and the count
//! of problems at the end.

use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A fact with no verdict (a heading, a provenance line).
    Info,
    Ok,
    /// Works at run time, but probably not as meant.
    Warning,
    /// Would fail at run time (a fatal daemon, a table that answers RETRY).
    Error,
}

#[derive(Debug, Default)]
pub(crate) struct Report {
    text: String,
    pub errors: usize,
    pub warnings: usize,
}

impl Report {
    /// Adds `fact` at `depth` (two spaces per level) with its verdict.
    pub(crate) fn line(&mut self, depth: usize, fact: impl std::fmt::Display, verdict: Verdict) {
        let tag = match verdict {
            Verdict::Info => "",
            Verdict::Ok => "  ok",
            Verdict::Warning => "  WARNING",
            Verdict::Error => "  ERROR",
        };
        match verdict {
            Verdict::Warning => self.warnings += 1,
            Verdict::Error => self.errors += 1,
            _ => {}
        }
        let _ = writeln!(self.text, "{:width$}{fact}{tag}", "", width = depth * 2);
    }

    pub(crate) fn info(&mut self, depth: usize, fact: impl std::fmt::Display) {
        self.line(depth, fact, Verdict::Info);
    }

    /// Everything reported, and the summary line.
    pub(crate) fn finish(mut self) -> (String, usize) {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let _ = writeln!(self.text, "{}, {}", plural(self.errors, "error"), plural(self.warnings, "warning"));
        (self.text, self.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summary() {
        let mut r = Report::default();
        r.info(0, "service proxymap");
        r.line(1, "x = 1", Verdict::Ok);
        r.line(2, "nis: not supported", Verdict::Error);
        r.line(2, "odd", Verdict::Warning);
        let (text, errors) = r.finish();
        assert_eq!(errors, 1);
        assert_eq!(
            text,
            "service proxymap\n  x = 1  ok\n    nis: not supported  ERROR\n    odd  WARNING\n1 error, 1 warning\n"
        );
    }
}
