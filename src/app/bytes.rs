//! Small safe helpers shared by the parsers: a bounds-checked big-endian
//! reader, and the conversion of protocol text into bounded, printable
//! strings.
//!
//! No-panic contract: every accessor returns `None` instead of reading past
//! the end; nothing here indexes a slice without a check.

use std::fmt::Write as _;

/// A cursor over bytes that never reads past the end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    #[inline]
    pub(crate) fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// The bytes not read yet.
    #[inline]
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    /// True when every byte has been read.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.rest().is_empty()
    }

    /// The next `n` bytes, or `None` (and nothing consumed) when fewer remain.
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let taken = self.bytes.get(self.pos..end)?;
        self.pos = end;
        Some(taken)
    }

    /// One byte.
    #[inline]
    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    /// A big-endian `u16`.
    #[inline]
    pub(crate) fn u16(&mut self) -> Option<u16> {
        match self.take(2)? {
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    /// A big-endian 24-bit length.
    #[inline]
    pub(crate) fn u24(&mut self) -> Option<u32> {
        match self.take(3)? {
            [a, b, c] => Some(u32::from_be_bytes([0, *a, *b, *c])),
            _ => None,
        }
    }
}

/// Big-endian `u16` at `at`, when the bytes are there.
#[inline]
pub(crate) fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    match bytes.get(at..at.checked_add(2)?)? {
        [a, b] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// Big-endian `u32` at `at`, when the bytes are there.
#[inline]
pub(crate) fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    match bytes.get(at..at.checked_add(4)?)? {
        [a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// True when the bytes present are a prefix of `expected` (or `expected` is
/// a prefix of them): the check a streaming parser makes on a partial header.
#[inline]
pub(crate) fn agrees_with(bytes: &[u8], expected: &[u8]) -> bool {
    bytes.iter().zip(expected).all(|(a, b)| a == b)
}

/// `bytes` without leading and trailing spaces and NULs: DICOM pads AE titles
/// with spaces and UIDs with one NUL (some stacks pad UIDs with a space).
pub(crate) fn trim_padding(bytes: &[u8]) -> &[u8] {
    let is_pad = |b: &u8| *b == b' ' || *b == 0;
    let start = bytes.iter().position(|b| !is_pad(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_pad(b))
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

/// At most `max` bytes of protocol text as a `String` fit for a log line:
/// printable ASCII is kept, anything else (control bytes, UTF-8, escape
/// sequences an attacker would like a SIEM to interpret) becomes `?`.
pub(crate) fn printable(bytes: &[u8], max: usize) -> String {
    bytes
        .iter()
        .take(max)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

/// [`printable`], or `None` for an empty field.
pub(crate) fn printable_field(bytes: &[u8], max: usize) -> Option<String> {
    (!bytes.is_empty()).then(|| printable(bytes, max))
}

/// Lowercase hex of at most `max` bytes.
pub(crate) fn hex(bytes: &[u8], max: usize) -> String {
    let mut out = String::with_capacity(bytes.len().min(max) * 2);
    for b in bytes.iter().take(max) {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Where `needle` first occurs in `haystack`.
pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// True when `needle` occurs in `haystack`, ASCII case ignored.
pub(crate) fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5]);
        assert_eq!(r.u8(), Some(1));
        assert_eq!(r.u16(), Some(0x0203));
        assert_eq!(r.take(3), None, "a failed read consumes nothing");
        assert_eq!(r.u16(), Some(0x0405));
        assert!(r.is_empty());
        assert_eq!(r.u8(), None);
        assert_eq!(r.take(usize::MAX), None);
        let mut r = Reader::new(&[0, 1, 2]);
        assert_eq!(r.u24(), Some(0x000102));
        assert_eq!(be_u16(&[1, 2], 1), None);
        assert_eq!(be_u32(&[1, 2, 3, 4], 0), Some(0x01020304));
        assert_eq!(be_u32(&[1, 2, 3, 4], usize::MAX), None);
    }

    #[test]
    fn text_is_bounded_and_printable() {
        assert_eq!(printable(b"ab\x1b[31mc\xff", 100), "ab?[31mc?");
        assert_eq!(printable(b"abcdef", 3), "abc");
        assert_eq!(printable_field(b"", 3), None);
        assert_eq!(trim_padding(b" \0AE TITLE  \0"), b"AE TITLE");
        assert_eq!(trim_padding(b"   "), b"");
        assert_eq!(hex(&[1, 0xab], 8), "01ab");
        assert_eq!(hex(&[1, 2, 3], 2), "0102");
        assert_eq!(find(b"hello", b"ll"), Some(2));
        assert_eq!(find(b"he", b"hello"), None);
        assert!(contains_ignore_case(b"Application/FHIR+json", b"fhir+JSON"));
        assert!(agrees_with(b"MS", b"MSH"));
        assert!(!agrees_with(b"MX", b"MSH"));
    }
}
