//! Where a problem of the configuration is: the key's path
//! (`capture.workers`, `syslog[1].url`) and its line and column, found from
//! the byte spans the TOML parser records, never by searching the text.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// A configuration that cannot be used: one line naming the file, the line,
/// the column and the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ConfigError {
    /// The configuration file (or `command line`).
    pub file: PathBuf,
    /// 1-based line (1 for problems not tied to one).
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is wrong, naming the key.
    pub message: String,
}

/// A value the daemon accepts but does not use as written (it is out of
/// range and brought within it): one line naming the file, the line, the
/// column and the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct ConfigWarning {
    /// The configuration file (or `command line`).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What is done instead, naming the key.
    pub message: String,
}

/// What the command line's values are located at: they have no file.
pub(super) const COMMAND_LINE: &str = "command line";

/// A place in the configuration: the file and a line and column in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Place {
    file: PathBuf,
    line: usize,
    column: usize,
}

impl Place {
    /// The command line: no file, line 1, column 1.
    pub(super) fn command_line() -> Place {
        Place {
            file: PathBuf::from(COMMAND_LINE),
            line: 1,
            column: 1,
        }
    }

    /// An error here.
    pub(super) fn error(&self, message: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            message,
        }
    }

    /// A warning here.
    pub(super) fn warning(&self, message: String) -> ConfigWarning {
        ConfigWarning {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            message,
        }
    }
}

/// Finds keys by the spans of a configuration text.
pub(super) struct Locator<'t> {
    file: &'t Path,
    text: &'t str,
    /// The text parsed keeping every key's and value's span; `None` when it
    /// does not parse (then only the parser's own span is known).
    table: Option<DeTable<'t>>,
}

impl<'t> Locator<'t> {
    /// Parses `text` (read from `file`) for its spans.
    pub(super) fn new(file: &'t Path, text: &'t str) -> Locator<'t> {
        let table = DeTable::parse(text).ok().map(toml::Spanned::into_inner);
        Locator { file, text, table }
    }

    /// The place of a byte offset.
    pub(super) fn place(&self, offset: usize) -> Place {
        let (line, column) = line_column(self.text, offset);
        Place {
            file: self.file.to_owned(),
            line,
            column,
        }
    }

    /// The file's first line: for what no key holds (a value from a default
    /// missing another, for example).
    pub(super) fn start(&self) -> Place {
        self.place(0)
    }

    /// The key written at or holding the value at `offset`: its path and
    /// its place.
    pub(super) fn key_at(&self, offset: usize) -> Option<(String, Place)> {
        let table = self.table.as_ref()?;
        let (path, span) = find(table, "", offset)?;
        Some((path, self.place(span.start)))
    }

    /// The place of the top-level table or key `name` (`[capture]`), or the
    /// file's start when it is not written.
    pub(super) fn table(&self, name: &str) -> Place {
        self.table
            .as_ref()
            .and_then(|table| table.iter().find(|(key, _)| key.get_ref() == name))
            .map_or_else(|| self.start(), |(key, _)| self.place(key.span().start))
    }

    /// The place of entry `index` of the array of tables `name`
    /// (`[[syslog]]`), or of the array when the entry is not written.
    pub(super) fn array_entry(&self, name: &str, index: usize) -> Place {
        match self.entry(name, index) {
            Some(entry) => self.place(entry.span().start),
            None => self.table(name),
        }
    }

    /// The place of `key` in entry `index` of the array of tables `name`,
    /// or of the entry when the key is not written there.
    pub(super) fn entry_key(&self, name: &str, index: usize, key: &str) -> Place {
        let written = self
            .entry(name, index)
            .and_then(|entry| match entry.get_ref() {
                DeValue::Table(table) => table.iter().find(|(k, _)| k.get_ref() == key),
                _ => None,
            });
        match written {
            Some((key, _)) => self.place(key.span().start),
            None => self.array_entry(name, index),
        }
    }

    fn entry(&self, name: &str, index: usize) -> Option<&toml::Spanned<DeValue<'t>>> {
        let (_, value) = self
            .table
            .as_ref()?
            .iter()
            .find(|(key, _)| key.get_ref() == name)?;
        match value.get_ref() {
            DeValue::Array(array) => array.get(index),
            _ => None,
        }
    }
}

/// The path and key span of the key at `offset` in `table` (under `prefix`).
fn find(table: &DeTable<'_>, prefix: &str, offset: usize) -> Option<(String, Range<usize>)> {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        let key_span = key.span();
        if key_span.contains(&offset) {
            return Some((path, key_span));
        }
        match value.get_ref() {
            // A table's own span is its header, not its keys: look inside.
            DeValue::Table(inner) => {
                if let Some(found) = find(inner, &path, offset) {
                    return Some(found);
                }
            }
            DeValue::Array(array) => {
                for (index, item) in array.iter().enumerate() {
                    let entry = format!("{path}[{index}]");
                    if let DeValue::Table(inner) = item.get_ref()
                        && let Some(found) = find(inner, &entry, offset)
                    {
                        return Some(found);
                    }
                    if item.span().contains(&offset) {
                        return Some((entry, item.span()));
                    }
                }
            }
            _ => {}
        }
        if value.span().contains(&offset) {
            return Some((path, key_span));
        }
    }
    None
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# sensor\n[capture]\nworkers = 2\n\n[[syslog]]\nurl = \"udp://a\"\n\
                        [[syslog]]\n  url = \"tcp://b\"\nqueue = 5\n[flows]\nx.y = 1\n";

    fn key(offset_of: &str) -> (String, usize, usize) {
        let locator = Locator::new(Path::new("s.toml"), TEXT);
        let offset = TEXT.find(offset_of).unwrap();
        let (path, place) = locator.key_at(offset).unwrap();
        (path, place.line, place.column)
    }

    #[test]
    fn a_value_is_found_under_its_key_path() {
        assert_eq!(key("2\n"), ("capture.workers".into(), 3, 1));
        assert_eq!(key("workers"), ("capture.workers".into(), 3, 1));
        assert_eq!(key("\"udp"), ("syslog[0].url".into(), 6, 1));
        assert_eq!(key("\"tcp"), ("syslog[1].url".into(), 8, 3));
        assert_eq!(key("5\n"), ("syslog[1].queue".into(), 9, 1));
        assert_eq!(key("1\n"), ("flows.x.y".into(), 11, 3));
        assert_eq!(key("capture"), ("capture".into(), 2, 2));
    }

    #[test]
    fn tables_and_entries_are_found_by_name() {
        let locator = Locator::new(Path::new("s.toml"), TEXT);
        let at = |place: Place| (place.line, place.column);
        assert_eq!(at(locator.table("capture")), (2, 2));
        assert_eq!(at(locator.table("metrics")), (1, 1));
        assert_eq!(at(locator.array_entry("syslog", 1)), (7, 1));
        assert_eq!(at(locator.array_entry("syslog", 2)), (5, 3));
        assert_eq!(at(locator.entry_key("syslog", 1, "queue")), (9, 1));
        assert_eq!(at(locator.entry_key("syslog", 0, "queue")), (5, 1));
        assert_eq!(locator.key_at(0), None, "a comment is no key");
    }

    #[test]
    fn text_that_does_not_parse_has_no_keys_but_places() {
        let locator = Locator::new(Path::new("s.toml"), "[capture\nx = 1\n");
        assert_eq!(locator.key_at(10), None);
        assert_eq!(locator.place(10), locator.start().clone_at(2, 2));
    }

    impl Place {
        fn clone_at(&self, line: usize, column: usize) -> Place {
            Place {
                file: self.file.clone(),
                line,
                column,
            }
        }
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(line_column("é = 1\nab", 8), (2, 2));
        assert_eq!(line_column("abc", 99), (1, 4));
    }
}
