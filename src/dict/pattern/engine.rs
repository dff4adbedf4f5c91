//! What the regexp and pcre front-ends supply to the shared rule machinery:
//! the [`Engine`] (flags, compiling, matching) and the pattern [`Dialect`];
//! and [`Diag`], where the warnings about a rule line go.

/// What differs between the regexp and pcre tables. An engine holds no
/// state of its own: compiled patterns are shared by every lookup, and
/// what a match writes goes to the lookup's [`Engine::Scratch`].
pub(crate) trait Engine: Default + Send + Sync + 'static {
    type Regex: Send + Sync;
    /// The match buffers of one lookup in progress.
    type Scratch: Send;
    /// Type name as used in messages ("regexp map ..." / "pcre map ...").
    const TYPE: &'static str;
    /// Compile options before any flag letter.
    const DEFAULT_OPTIONS: u32;
    /// regexp: flag letters end at `!`, and `/p1/!/p2/` is accepted.
    const SECOND_PATTERN: bool;
    /// regexp: a backslash at the very end of the line closes the pattern.
    const TRAILING_BACKSLASH_CLOSES: bool;
    /// Verb of the "no closing regexp delimiter" warning.
    const UNCLOSED_VERB: &'static str;
    /// Spelling in the "replacement index below 1" warning.
    const OUT_OF_RANGE_BELOW_ONE: &'static str;

    /// Apply one flag letter (after logging any warning of its own); false
    /// when the letter is unknown.
    fn flag(options: &mut u32, letter: u8, diag: &mut Diag) -> bool;

    /// Compile `pattern` (no NUL inside); `captures` false when no match
    /// offsets will ever be wanted (regexp's REG_NOSUB). On failure log
    /// Postfix's warning and return None. Else the compiled pattern and its
    /// number of groups.
    fn compile(&self, pattern: &[u8], options: u32, captures: bool, diag: &mut Diag) -> Option<(Self::Regex, usize)>;

    /// Match buffers with room for `groups` groups (group 0 included): the
    /// most that any compiled pattern of the table has.
    fn scratch(&self, groups: usize) -> Self::Scratch;

    /// Match `subject` (the key, NUL-terminated: `subject[..len-1]` is the
    /// text). `groups` is how many groups the caller will read (0: none).
    /// Ok(matched) or Err(text for the warning).
    fn exec(&self, s: &mut Self::Scratch, re: &Self::Regex, subject: &[u8], groups: usize) -> Result<bool, String>;

    /// Offsets of group `n` of the last successful [`Engine::exec`] into
    /// `s` with captures; None when it did not take part.
    fn group(&self, s: &Self::Scratch, n: usize) -> Option<(usize, usize)>;

    /// The prefilter literal of a positive pattern compiled with `options`
    /// (see [`super::prefilter::required_literal`]), or None.
    fn prefilter(pattern: &[u8], options: u32) -> Option<Vec<u8>>;

    /// A regex-syntax pattern for the rule set whose language includes that
    /// of the positive pattern compiled with `options` (see [`super::translate::translate`]),
    /// or None to keep the pattern out of the set.
    fn set_pattern(pattern: &[u8], options: u32) -> Option<String>;

    /// Most rule-set patterns kept compiled at once; a table with more has
    /// them compiled when the set names them and drops the oldest (see
    /// `Resident` in [`super::rules`]). usize::MAX: all compiled at load and kept.
    const RESIDENT_SET_RULES: usize;
}

/// Pattern dialect, for the literal prefilter and the set translator.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// glibc POSIX extended syntax.
    PosixExtended,
    /// PCRE2 syntax without the extended (`x`) option.
    Pcre,
}

/// Where the warnings about one rule line go, in Postfix's words: `<type>
/// map <name>, line <n>: <text>`. Loading collects them (the open logs
/// them, tests read them); a lookup logs them at once.
pub(crate) struct Diag<'a> {
    ty: &'static str,
    map: &'a str,
    line: usize,
    /// None: log each warning as it comes.
    collected: Option<&'a mut Vec<String>>,
}

impl<'a> Diag<'a> {
    /// Warnings about `line` of table `map` of type `ty`, pushed onto
    /// `warnings`.
    pub(crate) fn collect(ty: &'static str, map: &'a str, line: usize, warnings: &'a mut Vec<String>) -> Diag<'a> {
        Diag { ty, map, line, collected: Some(warnings) }
    }

    /// Warnings about `line` of table `map` of type `ty`, logged.
    pub(crate) fn log(ty: &'static str, map: &'a str, line: usize) -> Diag<'a> {
        Diag { ty, map, line, collected: None }
    }

    /// A warning about the line: `text` after the type, table and line.
    pub(crate) fn warn(&mut self, text: impl std::fmt::Display) {
        let text = format!("{} map {}, line {}: {text}", self.ty, self.map, self.line);
        self.emit(text);
    }

    /// A warning that Postfix words without saying where (its template
    /// parser's own).
    pub(crate) fn warn_bare(&mut self, text: impl std::fmt::Display) {
        self.emit(text.to_string());
    }

    fn emit(&mut self, text: String) {
        match &mut self.collected {
            Some(warnings) => warnings.push(text),
            None => log::warn!("{text}"),
        }
    }
}
