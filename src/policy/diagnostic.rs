//! Problems found in a policy file, and where they are.
//!
//! A [`Diagnostic`] prints as one line, `FILE:LINE:COL: LEVEL: MESSAGE (hint: HINT)`, the shape
//! compilers use, so editors and CI logs can jump to it. Lines and columns are 1-based and
//! columns count characters, not bytes.
//!
//! [`Sink`] is the loader's collector: it takes byte spans from the TOML parser, turns them into
//! lines and columns, and hands the diagnostics back in file order.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Whether a diagnostic stops the policy from loading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Level {
    /// The policy is invalid.
    Error,
    /// The policy loads, but something in it is probably not what was meant.
    Warning,
}

/// One problem in a policy file, with where it is and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub level: Level,
    /// The policy file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
    /// How to fix it. The loader always sets one.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// True for [`Level::Error`].
    pub fn is_error(&self) -> bool {
        self.level == Level::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {level}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.message
        )?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// A policy that did not load: every error found, and the warnings.
///
/// It displays as one line: the first error, and how many more there are.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", summary(.diagnostics))]
pub struct PolicyError {
    /// Errors and warnings, in file order. At least one is an error.
    pub diagnostics: Vec<Diagnostic>,
}

impl PolicyError {
    /// The errors alone, in file order.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

fn summary(diagnostics: &[Diagnostic]) -> String {
    let mut errors = diagnostics.iter().filter(|d| d.is_error());
    let Some(first) = errors.next().or_else(|| diagnostics.first()) else {
        return "invalid policy".to_owned();
    };
    match errors.count() {
        0 => first.to_string(),
        1 => format!("{first} (+1 more error)"),
        n => format!("{first} (+{n} more errors)"),
    }
}

/// Collects diagnostics for one policy text, keyed by byte offset so that they come out in
/// file order whatever order the checks ran in.
pub(super) struct Sink<'t> {
    text: &'t str,
    file: PathBuf,
    /// Byte offset of the start of each line, worked out when a first position is asked for:
    /// most policies load without a diagnostic, and a 4 MB file's lines cost 25 million
    /// instructions.
    line_starts: std::cell::OnceCell<Vec<usize>>,
    items: Vec<(usize, Diagnostic)>,
}

impl<'t> Sink<'t> {
    pub(super) fn new(text: &'t str, file: &Path) -> Sink<'t> {
        Sink {
            text,
            file: file.to_path_buf(),
            line_starts: std::cell::OnceCell::new(),
            items: Vec::new(),
        }
    }

    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            // Byte by byte rather than `match_indices('\n')`, whose searcher
            // took 3% of loading a 5,000-rule file.
            std::iter::once(0)
                .chain(
                    self.text
                        .bytes()
                        .enumerate()
                        .filter(|&(_, byte)| byte == b'\n')
                        .map(|(i, _)| i + 1),
                )
                .collect()
        })
    }

    /// 1-based line and character column of a byte offset. Offsets past the end or inside a
    /// character are clamped, never a panic.
    pub(super) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line_starts = self.line_starts();
        let line = line_starts.partition_point(|&start| start <= offset);
        let start = line_starts.get(line.wrapping_sub(1)).copied().unwrap_or(0);
        let column = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line.max(1), column + 1)
    }

    /// 1-based line of the start of a span.
    pub(super) fn line_of(&self, span: &Range<usize>) -> usize {
        self.position(span.start).0
    }

    pub(super) fn error(&mut self, span: &Range<usize>, message: String, hint: String) {
        self.push(Level::Error, span.start, message, hint);
    }

    pub(super) fn warning(&mut self, span: &Range<usize>, message: String, hint: String) {
        self.push(Level::Warning, span.start, message, hint);
    }

    fn push(&mut self, level: Level, offset: usize, message: String, hint: String) {
        let (line, column) = self.position(offset);
        self.items.push((
            offset,
            Diagnostic {
                level,
                file: self.file.clone(),
                line,
                column,
                message,
                hint: Some(hint),
            },
        ));
    }

    pub(super) fn has_errors(&self) -> bool {
        self.items.iter().any(|(_, d)| d.is_error())
    }

    /// The diagnostics in file order; those at the same place keep the order they were found.
    pub(super) fn finish(mut self) -> Vec<Diagnostic> {
        self.items.sort_by_key(|(offset, _)| *offset);
        self.items.into_iter().map(|(_, d)| d).collect()
    }
}

/// The candidate closest to `name` by edit distance, if it is close enough to be a likely typo:
/// at most one edit for short names, about one in three characters for longer ones.
pub(super) fn closest<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Names are short; a cap keeps a pathological file from costing quadratic time.
    const MAX_LEN: usize = 64;
    if name.is_empty() || name.len() > MAX_LEN {
        return None;
    }
    let lower = name.to_lowercase();
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| c.len() <= MAX_LEN && *c != name)
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Edit distance over characters: insertions, deletions, substitutions and transpositions of
/// neighbours (optimal string alignment), so `hgih` is one edit from `high`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Rows i-2, i-1 and i of the distance table.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut row: Vec<usize> = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(row[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            row[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut row);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diag(level: Level, hint: Option<&str>) -> Diagnostic {
        Diagnostic {
            level,
            file: PathBuf::from("p.toml"),
            line: 3,
            column: 7,
            message: "unknown zone `pump`".into(),
            hint: hint.map(str::to_owned),
        }
    }

    #[test]
    fn display_is_one_line() {
        let d = diag(Level::Error, Some("did you mean `pumps`?"));
        assert_eq!(
            d.to_string(),
            "p.toml:3:7: error: unknown zone `pump` (hint: did you mean `pumps`?)"
        );
        assert_eq!(
            diag(Level::Warning, None).to_string(),
            "p.toml:3:7: warning: unknown zone `pump`"
        );
    }

    #[test]
    fn policy_error_shows_first_error_and_count() {
        let e = PolicyError {
            diagnostics: vec![
                diag(Level::Warning, None),
                diag(Level::Error, None),
                diag(Level::Error, None),
                diag(Level::Error, None),
            ],
        };
        assert_eq!(
            e.to_string(),
            "p.toml:3:7: error: unknown zone `pump` (+2 more errors)"
        );
        assert_eq!(e.errors().count(), 3);
    }

    #[test]
    fn positions_count_characters() {
        let text = "a = 1\nbé = \"x\"\n\nlast";
        let sink = Sink::new(text, Path::new("p.toml"));
        assert_eq!(sink.position(0), (1, 1));
        assert_eq!(sink.position(4), (1, 5));
        assert_eq!(sink.position(6), (2, 1));
        // `=` after a two-byte character: byte 10, character column 4.
        assert_eq!(sink.position(10), (2, 4));
        assert_eq!(sink.position(16), (3, 1));
        assert_eq!(sink.position(17), (4, 1));
        // Inside a character and past the end: clamped, no panic.
        assert_eq!(sink.position(8), (2, 2));
        assert_eq!(sink.position(1000), (4, 5));
        assert_eq!(Sink::new("", Path::new("e")).position(5), (1, 1));
    }

    #[test]
    fn finish_sorts_by_offset_stably() {
        let text = "x\ny\nz\n";
        let mut sink = Sink::new(text, Path::new("p.toml"));
        sink.error(&(4..5), "third".into(), "h".into());
        sink.warning(&(0..1), "first".into(), "h".into());
        sink.error(&(4..5), "fourth".into(), "h".into());
        sink.error(&(2..3), "second".into(), "h".into());
        assert!(sink.has_errors());
        let got: Vec<_> = sink.finish().into_iter().map(|d| d.message).collect();
        assert_eq!(got, ["first", "second", "third", "fourth"]);
    }

    #[test]
    fn closest_finds_typos_only() {
        let zones = ["pumps", "pump-server", "monitors", "pacs"];
        assert_eq!(closest("pump", zones), Some("pumps"));
        assert_eq!(closest("Pumps", zones), Some("pumps"));
        assert_eq!(closest("monitor", zones), Some("monitors"));
        assert_eq!(closest("pump_server", zones), Some("pump-server"));
        assert_eq!(closest("internet", zones), None);
        assert_eq!(closest("", zones), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("hgih", "high"), 1);
        assert_eq!(closest("hgih", ["low", "high"]), Some("high"));
    }
}
