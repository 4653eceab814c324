//! A quick reader for exceptions files of the usual shape, beside the `toml` crate (as the
//! policy file's, `policy/quick.rs`, whose lexical pieces it uses).
//!
//! A thousand exceptions took the `toml` crate and serde about 40 million instructions (10 ms),
//! at every start and reload; this reader makes the same [`RawFile`] from the text in one pass,
//! spans included. It reads a subset and gives up (`None`) on anything outside it; the caller
//! then reads the file with the `toml` crate, which decides what the file means and reports
//! every error. The subset: comments, `[[exceptions]]` headers, `key = value` lines with bare
//! keys and the types [`RawException`] asks for (basic strings without escapes, local dates
//! `YYYY-MM-DD`, arrays of strings). Anything else (a key twice, a missing required key, an
//! unknown key, a date-time, an escape, a dotted key, a key before the first header) gives up.
//! Tests and the `exceptions_load` fuzz target hold it to its contract: when it reads a file,
//! the result (spans included) equals the `toml` crate's.

use std::ops::Range;

use toml::Spanned;
use toml::value::{Date, Datetime};

use super::raw::{RawException, RawFile, Str, Text};
use crate::policy::QuickReader;

/// Reads `text` as the `toml` crate and serde would, or `None` when it is not of the usual
/// shape.
pub(super) fn read(text: &str) -> Option<RawFile<'_>> {
    let mut reader = QuickReader::new(text);
    let mut exceptions = Vec::new();
    let mut current: Option<(Range<usize>, Fields)> = None;
    loop {
        reader.skip_blanks();
        let Some(byte) = reader.peek() else {
            break;
        };
        match byte {
            b'\n' => reader.advance(),
            b'\r' => reader.newline()?,
            b'#' => reader.comment()?,
            b'[' => {
                if let Some((header, fields)) = current.take() {
                    exceptions.push(Spanned::new(header, fields.finish()?));
                }
                let start = reader.at();
                reader.expect(b'[')?;
                reader.expect(b'[')?;
                let name = reader.key()?;
                reader.expect(b']')?;
                reader.expect(b']')?;
                if name != "exceptions" {
                    return None;
                }
                current = Some((start..reader.at(), Fields::default()));
                reader.end_of_line()?;
            }
            _ => {
                let key = reader.key()?;
                reader.skip_blanks();
                reader.expect(b'=')?;
                reader.skip_blanks();
                current.as_mut()?.1.value(&mut reader, key)?;
                reader.end_of_line()?;
            }
        }
    }
    if let Some((header, fields)) = current {
        exceptions.push(Spanned::new(header, fields.finish()?));
    }
    Some(RawFile { exceptions })
}

/// An exception's keys as read so far.
#[derive(Default)]
struct Fields<'a> {
    id: Option<Str<'a>>,
    reason: Option<Str<'a>>,
    owner: Option<Str<'a>>,
    ticket: Option<Str<'a>>,
    created: Option<Spanned<Datetime>>,
    expires: Option<Spanned<Datetime>>,
    rule: Option<Str<'a>>,
    from: Option<Spanned<Vec<Str<'a>>>>,
    to: Option<Spanned<Vec<Str<'a>>>>,
    services: Option<Spanned<Vec<Str<'a>>>>,
}

/// Sets `slot` to what `read` gives, unless it is already set (a key written twice).
fn once<T>(slot: &mut Option<T>, read: impl FnOnce() -> Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(read()?);
    Some(())
}

fn string<'a>(reader: &mut QuickReader<'a>) -> Option<Str<'a>> {
    let (span, content) = reader.plain_string()?;
    Some(Spanned::new(span, Text::borrowed(content)))
}

fn strings<'a>(reader: &mut QuickReader<'a>) -> Option<Spanned<Vec<Str<'a>>>> {
    reader.array(string)
}

fn date(reader: &mut QuickReader<'_>) -> Option<Spanned<Datetime>> {
    let (span, year, month, day) = reader.date()?;
    Some(Spanned::new(
        span,
        Datetime {
            date: Some(Date { year, month, day }),
            time: None,
            offset: None,
        },
    ))
}

impl<'a> Fields<'a> {
    fn value(&mut self, reader: &mut QuickReader<'a>, key: &str) -> Option<()> {
        match key {
            "created" => once(&mut self.created, || date(reader)),
            "expires" => once(&mut self.expires, || date(reader)),
            "from" => once(&mut self.from, || strings(reader)),
            "to" => once(&mut self.to, || strings(reader)),
            "services" => once(&mut self.services, || strings(reader)),
            _ => {
                let slot = match key {
                    "id" => &mut self.id,
                    "reason" => &mut self.reason,
                    "owner" => &mut self.owner,
                    "ticket" => &mut self.ticket,
                    "rule" => &mut self.rule,
                    _ => return None,
                };
                once(slot, || string(reader))
            }
        }
    }

    /// The exception; `None` when a required key is missing.
    fn finish(self) -> Option<RawException<'a>> {
        Some(RawException {
            id: self.id?,
            reason: self.reason?,
            owner: self.owner?,
            ticket: self.ticket,
            created: self.created,
            expires: self.expires?,
            rule: self.rule,
            from: self.from,
            to: self.to,
            services: self.services,
        })
    }
}
