//! A quick reader for policy files of the usual shape, beside the `toml` crate.
//!
//! Generated policies of a hospital group run to thousands of zones and tens of thousands of
//! rules (4 MB of TOML). The `toml` crate reads such a file into a document of spanned values
//! and serde then walks that document into [`RawPolicyFile`]: two thirds of the time `segwatch
//! check` took on 20,000 rules (about 580 of 860 million instructions, and most of the 116 MB it
//! held at its peak). This reader makes the same [`RawPolicyFile`] from the text in one pass,
//! with the same spans, in about a tenth of the instructions.
//!
//! It reads a subset of TOML and gives up (`None`) on anything outside it; the caller then reads
//! the file with the `toml` crate, which decides what the file means and reports every error.
//! So it never changes what a file means or how its errors read. The subset: comments, table
//! headers `[policy]`, `[zones.NAME]`, `[services.NAME]`, `[clinical]` and `[[rules]]` (bare
//! keys, no spaces inside the brackets), `key = value` lines with bare keys and the types
//! [`RawPolicyFile`] asks for, basic strings without escapes, decimal integers of up to 18
//! digits, `true` and `false`, and arrays of strings and integers (over several lines, with
//! comments, a trailing comma). Anything else (a key twice, a missing required key, an unknown
//! key, a wrong type, an escape, a literal string, a dotted key, an inline table, a byte-order
//! mark, a lone carriage return, a control character) gives up. Tests and the `policy_load`
//! fuzz target hold it to its contract: when it reads a file, the result (spans included)
//! equals the `toml` crate's.

use std::ops::Range;

use toml::Spanned;

use super::raw::{
    PortItem, RawClinical, RawHeader, RawPolicyFile, RawRule, RawService, RawZone, Str, Text,
};

type FastSet<'a> = std::collections::HashSet<&'a str, foldhash::fast::RandomState>;

/// Reads `text` as the `toml` crate and serde would, or `None` when it is not of the usual shape.
pub(super) fn read(text: &str) -> Option<RawPolicyFile<'_>> {
    let mut reader = Reader::new(text);
    let mut raw = RawPolicyFile::default();
    let mut table = Table::Root;
    let mut seen_policy = false;
    let mut zone_names = FastSet::default();
    let mut service_names = FastSet::default();
    let mut rule: Option<(Range<usize>, RuleFields<'_>)> = None;
    loop {
        reader.skip_blanks();
        let Some(&byte) = reader.bytes.get(reader.at) else {
            break;
        };
        match byte {
            b'\n' => reader.at += 1,
            b'\r' => reader.newline()?,
            b'#' => reader.comment()?,
            b'[' => {
                if let Some((header, fields)) = rule.take() {
                    raw.rules.push(Spanned::new(header, fields.finish()?));
                }
                let start = reader.at;
                let path = reader.header()?;
                table = match path {
                    Header::Rules => {
                        rule = Some((start..reader.at, RuleFields::default()));
                        Table::Rule
                    }
                    Header::Policy if !seen_policy => {
                        seen_policy = true;
                        Table::Policy
                    }
                    Header::Clinical(span) if raw.clinical.is_none() => {
                        raw.clinical = Some(Spanned::new(span, RawClinical::default()));
                        Table::Clinical
                    }
                    Header::Zone(key) if zone_names.insert(&text[key.clone()]) => {
                        raw.zones.0.push((reader.str_at(key), empty_zone()));
                        Table::Zone
                    }
                    Header::Service(key) if service_names.insert(&text[key.clone()]) => {
                        raw.services.0.push((reader.str_at(key), empty_service()));
                        Table::Service
                    }
                    _ => return None,
                };
                reader.end_of_line()?;
            }
            _ => {
                let key = reader.key()?;
                reader.skip_blanks();
                reader.expect(b'=')?;
                reader.skip_blanks();
                match table {
                    Table::Root => return None,
                    Table::Policy => reader.header_value(key, &mut raw.policy)?,
                    Table::Zone => reader.zone_value(key, &mut raw.zones.0.last_mut()?.1)?,
                    Table::Service => {
                        reader.service_value(key, &mut raw.services.0.last_mut()?.1)?
                    }
                    Table::Rule => reader.rule_value(key, &mut rule.as_mut()?.1)?,
                    Table::Clinical => {
                        reader.clinical_value(key, raw.clinical.as_mut()?.get_mut())?
                    }
                }
                reader.end_of_line()?;
            }
        }
    }
    if let Some((header, fields)) = rule {
        raw.rules.push(Spanned::new(header, fields.finish()?));
    }
    Some(raw)
}

/// The table that `key = value` lines go into.
#[derive(Clone, Copy)]
enum Table {
    Root,
    Policy,
    Zone,
    Service,
    Rule,
    Clinical,
}

/// A table header: which table, and the span of the name (or of the header, for
/// `[clinical]`, whose span serde keeps).
enum Header {
    Policy,
    Zone(Range<usize>),
    Service(Range<usize>),
    Rules,
    Clinical(Range<usize>),
}

fn empty_zone<'a>() -> RawZone<'a> {
    RawZone {
        description: None,
        networks: None,
        criticality: None,
    }
}

fn empty_service<'a>() -> RawService<'a> {
    RawService {
        description: None,
        tcp: None,
        udp: None,
        icmp: None,
        app: None,
    }
}

/// A rule's keys as read so far.
#[derive(Default)]
struct RuleFields<'a> {
    name: Option<Str<'a>>,
    from: Option<Spanned<Vec<Str<'a>>>>,
    to: Option<Spanned<Vec<Str<'a>>>>,
    services: Option<Vec<Str<'a>>>,
    action: Option<Str<'a>>,
    severity: Option<Str<'a>>,
    dicom_called_ae: Option<Vec<Str<'a>>>,
    dicom_calling_ae: Option<Vec<Str<'a>>>,
    hl7_sending_app: Option<Vec<Str<'a>>>,
    hl7_sending_facility: Option<Vec<Str<'a>>>,
    hl7_message_types: Option<Vec<Str<'a>>>,
    tls_server_names: Option<Vec<Str<'a>>>,
}

impl<'a> RuleFields<'a> {
    /// The rule; `None` when a required key is missing.
    fn finish(self) -> Option<RawRule<'a>> {
        Some(RawRule {
            name: self.name?,
            from: self.from?,
            to: self.to?,
            services: self.services,
            action: self.action?,
            severity: self.severity,
            dicom_called_ae: self.dicom_called_ae,
            dicom_calling_ae: self.dicom_calling_ae,
            hl7_sending_app: self.hl7_sending_app,
            hl7_sending_facility: self.hl7_sending_facility,
            hl7_message_types: self.hl7_message_types,
            tls_server_names: self.tls_server_names,
        })
    }
}

/// Sets `slot` to what `read` gives, unless it is already set (a key written twice).
fn once<T>(slot: &mut Option<T>, read: impl FnOnce() -> Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(read()?);
    Some(())
}

/// The subset's lexical pieces, shared with the exceptions file's quick reader
/// (`exception/quick.rs`): each reads exactly what the `toml` crate would, or gives up.
pub(crate) struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

/// True for the characters of a bare key.
fn is_bare(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-'
}

/// True for a byte that TOML allows in a string or comment: not a control character other than
/// tab. (Bytes of multi-byte UTF-8 characters are all at least 0x80.)
fn is_text(byte: u8) -> bool {
    byte == b'\t' || (byte >= 0x20 && byte != 0x7f)
}

impl<'a> Reader<'a> {
    /// A reader at the start of `text`.
    pub(crate) fn new(text: &'a str) -> Self {
        Reader {
            text,
            bytes: text.as_bytes(),
            at: 0,
        }
    }

    /// The byte offset read up to.
    pub(crate) fn at(&self) -> usize {
        self.at
    }

    /// Steps over one byte (a line's end the caller peeked).
    pub(crate) fn advance(&mut self) {
        self.at += 1;
    }

    pub(crate) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    pub(crate) fn expect(&mut self, byte: u8) -> Option<()> {
        (self.peek()? == byte).then(|| self.at += 1)
    }

    fn str_at(&self, span: Range<usize>) -> Str<'a> {
        Spanned::new(span.clone(), Text::borrowed(&self.text[span]))
    }

    /// Spaces and tabs.
    pub(crate) fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    /// `\r\n`; a lone carriage return is outside the subset.
    pub(crate) fn newline(&mut self) -> Option<()> {
        self.expect(b'\r')?;
        self.expect(b'\n')
    }

    /// A comment, up to (not including) its line's end.
    pub(crate) fn comment(&mut self) -> Option<()> {
        self.expect(b'#')?;
        while let Some(byte) = self.peek() {
            match byte {
                b'\n' | b'\r' => break,
                _ if is_text(byte) => self.at += 1,
                _ => return None,
            }
        }
        Some(())
    }

    /// Blanks, an optional comment, then a line's end or the end of the text.
    pub(crate) fn end_of_line(&mut self) -> Option<()> {
        self.skip_blanks();
        if self.peek() == Some(b'#') {
            self.comment()?;
        }
        match self.peek() {
            None => Some(()),
            Some(b'\n') => {
                self.at += 1;
                Some(())
            }
            Some(b'\r') => self.newline(),
            Some(_) => None,
        }
    }

    /// Blanks, line ends and comments, as between the values of an array.
    pub(crate) fn skip_trivia(&mut self) -> Option<()> {
        loop {
            match self.peek() {
                Some(b' ' | b'\t' | b'\n') => self.at += 1,
                Some(b'\r') => self.newline()?,
                Some(b'#') => self.comment()?,
                _ => return Some(()),
            }
        }
    }

    /// The span of a bare key.
    pub(crate) fn bare_key(&mut self) -> Option<Range<usize>> {
        let start = self.at;
        while self.peek().is_some_and(is_bare) {
            self.at += 1;
        }
        (self.at > start).then_some(start..self.at)
    }

    /// The key of a `key = value` line.
    pub(crate) fn key(&mut self) -> Option<&'a str> {
        let span = self.bare_key()?;
        Some(&self.text[span])
    }

    /// A table header, from its `[` to its `]`.
    fn header(&mut self) -> Option<Header> {
        let start = self.at;
        self.expect(b'[')?;
        if self.peek() == Some(b'[') {
            self.at += 1;
            let name = self.bare_key()?;
            self.expect(b']')?;
            self.expect(b']')?;
            return (&self.text[name] == "rules").then_some(Header::Rules);
        }
        let table = self.bare_key()?;
        let sub = if self.peek() == Some(b'.') {
            self.at += 1;
            Some(self.bare_key()?)
        } else {
            None
        };
        self.expect(b']')?;
        match (&self.text[table], sub) {
            ("policy", None) => Some(Header::Policy),
            ("clinical", None) => Some(Header::Clinical(start..self.at)),
            ("zones", Some(name)) => Some(Header::Zone(name)),
            ("services", Some(name)) => Some(Header::Service(name)),
            _ => None,
        }
    }

    /// After a value: it must end here (a blank, a comma, a bracket, a comment, a line's end
    /// or the end of the text), or it was not the value it seemed (`1.5`, `1979-05-27`).
    fn value_ends(&self) -> Option<()> {
        match self.peek() {
            None | Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'#') => Some(()),
            Some(_) => None,
        }
    }

    /// A basic string without escapes, with its span (quotes included).
    fn string(&mut self) -> Option<Str<'a>> {
        let (span, content) = self.plain_string()?;
        Some(Spanned::new(span, Text::borrowed(content)))
    }

    /// A basic string without escapes: its span (quotes included) and its content.
    pub(crate) fn plain_string(&mut self) -> Option<(Range<usize>, &'a str)> {
        let start = self.at;
        self.expect(b'"')?;
        let content = self.at;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => return None,
                byte if is_text(byte) => self.at += 1,
                _ => return None,
            }
        }
        let end = self.at;
        self.at += 1;
        // `"""` opens a multi-line string.
        if end == content && self.peek() == Some(b'"') {
            return None;
        }
        self.value_ends()?;
        Some((start..self.at, &self.text[content..end]))
    }

    /// A local date `YYYY-MM-DD` that the `toml` crate accepts (a real day of the Gregorian
    /// calendar), with its span: (span, year, month, day). A date-time gives up.
    pub(crate) fn date(&mut self) -> Option<(Range<usize>, u16, u8, u8)> {
        let start = self.at;
        let text = self.bytes.get(start..start + 10)?;
        let digits = |range: Range<usize>| -> Option<u16> {
            text[range].iter().try_fold(0u16, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + u16::from(b - b'0'))
            })
        };
        if text[4] != b'-' || text[7] != b'-' {
            return None;
        }
        let (year, month, day) = (digits(0..4)?, digits(5..7)? as u8, digits(8..10)? as u8);
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
        let days = match month {
            2 if leap => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            1..=12 => 31,
            _ => return None,
        };
        if day < 1 || day > days {
            return None;
        }
        self.at += 10;
        self.value_ends()?;
        // `2027-02-01 08:00:00Z`: a date-time written with a space.
        let rest = &self.bytes[self.at..];
        if rest.first() == Some(&b' ') && rest.get(1).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        Some((start..self.at, year, month, day))
    }

    /// `true` or `false`.
    fn boolean(&mut self) -> Option<bool> {
        let rest = &self.bytes[self.at..];
        let value = if rest.starts_with(b"true") {
            true
        } else if rest.starts_with(b"false") {
            false
        } else {
            return None;
        };
        self.at += if value { 4 } else { 5 };
        self.value_ends()?;
        Some(value)
    }

    /// A port: a decimal integer (with its span) or a string.
    fn port_item(&mut self) -> Option<Spanned<PortItem>> {
        if self.peek()? == b'"' {
            let text = self.string()?;
            return Some(Spanned::new(
                text.span(),
                PortItem::Text(text.into_inner().into_string()),
            ));
        }
        let start = self.at;
        let negative = self.peek()? == b'-';
        if negative {
            self.at += 1;
        }
        let digits = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        let count = self.at - digits;
        // No digits, a leading zero (`01`, or `0x1F`), or past what an i64 surely holds.
        if count == 0 || count > 18 || (count > 1 && self.bytes[digits] == b'0') {
            return None;
        }
        self.value_ends()?;
        let magnitude: i128 = self.text[digits..self.at].parse().ok()?;
        let value = if negative { -magnitude } else { magnitude };
        Some(Spanned::new(start..self.at, PortItem::Number(value)))
    }

    /// An array of what `item` reads, with its span (brackets included).
    pub(crate) fn array<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Spanned<Vec<T>>> {
        let start = self.at;
        self.expect(b'[')?;
        let mut items = Vec::new();
        loop {
            self.skip_trivia()?;
            if self.peek()? == b']' {
                break;
            }
            items.push(item(self)?);
            self.skip_trivia()?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => break,
                _ => return None,
            }
        }
        self.at += 1;
        self.value_ends()?;
        Some(Spanned::new(start..self.at, items))
    }

    fn strings(&mut self) -> Option<Spanned<Vec<Str<'a>>>> {
        self.array(Self::string)
    }

    fn string_list(&mut self) -> Option<Vec<Str<'a>>> {
        Some(self.strings()?.into_inner())
    }

    fn header_value(&mut self, key: &str, header: &mut RawHeader<'a>) -> Option<()> {
        let slot = match key {
            "name" => &mut header.name,
            "default_action" => &mut header.default_action,
            "default_severity" => &mut header.default_severity,
            _ => return None,
        };
        once(slot, || self.string())
    }

    fn zone_value(&mut self, key: &str, zone: &mut RawZone<'a>) -> Option<()> {
        match key {
            "description" => once(&mut zone.description, || {
                Some(self.string()?.into_inner().into_string())
            }),
            "criticality" => once(&mut zone.criticality, || {
                Some(self.string()?.into_inner().into_string())
            }),
            "networks" => once(&mut zone.networks, || self.strings()),
            _ => None,
        }
    }

    fn service_value(&mut self, key: &str, service: &mut RawService<'a>) -> Option<()> {
        match key {
            "description" => once(&mut service.description, || {
                Some(self.string()?.into_inner().into_string())
            }),
            "tcp" => once(&mut service.tcp, || {
                Some(self.array(Self::port_item)?.into_inner())
            }),
            "udp" => once(&mut service.udp, || {
                Some(self.array(Self::port_item)?.into_inner())
            }),
            "icmp" => once(&mut service.icmp, || self.boolean()),
            "app" => once(&mut service.app, || self.string()),
            _ => None,
        }
    }

    fn rule_value(&mut self, key: &str, rule: &mut RuleFields<'a>) -> Option<()> {
        match key {
            "name" => once(&mut rule.name, || self.string()),
            "from" => once(&mut rule.from, || self.strings()),
            "to" => once(&mut rule.to, || self.strings()),
            "action" => once(&mut rule.action, || self.string()),
            "severity" => once(&mut rule.severity, || self.string()),
            _ => {
                let slot = match key {
                    "services" => &mut rule.services,
                    "dicom_called_ae" => &mut rule.dicom_called_ae,
                    "dicom_calling_ae" => &mut rule.dicom_calling_ae,
                    "hl7_sending_app" => &mut rule.hl7_sending_app,
                    "hl7_sending_facility" => &mut rule.hl7_sending_facility,
                    "hl7_message_types" => &mut rule.hl7_message_types,
                    "tls_server_names" => &mut rule.tls_server_names,
                    _ => return None,
                };
                once(slot, || self.string_list())
            }
        }
    }

    fn clinical_value(&mut self, key: &str, clinical: &mut RawClinical<'a>) -> Option<()> {
        match key {
            "unexpected_port" => once(&mut clinical.unexpected_port, || self.string()),
            "unknown_ae_title" => once(&mut clinical.unknown_ae_title, || self.string()),
            "unknown_hl7_sender" => once(&mut clinical.unknown_hl7_sender, || self.string()),
            "known_ae_titles" => once(&mut clinical.known_ae_titles, || self.string_list()),
            "known_hl7_senders" => once(&mut clinical.known_hl7_senders, || self.string_list()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::quick_reader_agrees;

    /// Reads `text` with both readers: `true` when the quick one read it (and then it must
    /// agree), `false` when it left it to the `toml` crate.
    fn quick_reads(text: &str) -> bool {
        match quick_reader_agrees(text) {
            Some(agrees) => {
                assert!(agrees, "the readers disagree on:\n{text}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn the_bundled_and_generated_policies_read_alike() {
        let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies"));
        for item in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(item.unwrap().path()).unwrap();
            assert!(quick_reads(&text));
        }
        let group = crate::synth::policy::scaled_hospital_policy_with_zones(600, 300);
        assert!(quick_reads(&group));
    }

    #[test]
    fn what_the_subset_holds_reads_alike() {
        let snippets = [
            "",
            "\n\n# only a comment\r\n",
            "[policy]\nname = \"p\" # trailing\ndefault_action=\"allow\"\n",
            "  [zones.a]\n\tnetworks = [\n  \"10.0.0.0/8\", # first\n\n  \"::/0\",\n]\n",
            "[zones.a]\nnetworks = []\ndescription = \"\"\ncriticality = \"é ünïcode\"",
            "[services.s]\ntcp = [80, \"1-2\", -1, 0, 999999999999999999]\nudp=[]\nicmp = false\n",
            "[services.s]\napp = \"dicom\"\nicmp = true\r\n",
            "[[rules]]\nname = \"r\"\nfrom = [\"a\"]\nto = [\"any\"]\naction = \"allow\"\n\
             severity = \"high\"\nservices = [\"tcp/80\"]\ntls_server_names = [\"*.x\"]\n",
            "[[rules]]\nname=\"r\"\nfrom=[]\nto=[]\naction=\"\"\n[[rules]]\nname=\"r\"\nfrom=[]\n\
             to=[]\naction=\"x\"\n[zones.z]\n",
            "[clinical]\nunexpected_port = \"high\"\nknown_ae_titles = [\"A\", \"B\"]\n",
            "[zones.b]\n[zones.a]\n[services.a]\n[policy]\n",
        ];
        for text in snippets {
            assert!(quick_reads(text), "left to the toml crate:\n{text}");
        }
    }

    #[test]
    fn what_lies_outside_the_subset_is_left_to_the_toml_crate() {
        let outside = [
            "\u{feff}[policy]\n",
            "name = \"top-level\"\n",
            "[policy]\nname = 'literal'\n",
            "[policy]\nname = \"esc\\\"aped\"\n",
            "[policy]\nname = \"\"\"multi\"\"\"\n",
            "[policy]\nname = \"a\"\nname = \"b\"\n",
            "[policy]\nnme = \"typo\"\n",
            "[policy]\n[policy]\n",
            "[policy]\nname = 5\n",
            "[policy]\nname = \"a\" \"b\"\n",
            "[policy]\nname = \"tab\tok\" x\n",
            "[policy]\nname = \"cr\r\"\n",
            "[policy]\rname = \"lone cr\"\n",
            "# bell \u{7}\n",
            "[ policy ]\n",
            "[zones]\n",
            "[zones.a.b]\n",
            "[zones.\"quoted\"]\n",
            "[zones.a]\n[zones.a]\n",
            "[zones.a]\nnetworks = \"10.0.0.0/8\"\n",
            "[zones.a]\nnetworks = [[\"nested\"]]\n",
            "[zones.a]\nnetworks = [\"a\" \"b\"]\n",
            "[zones.a]\nnetworks = [,]\n",
            "[zones.a]\nnetworks.x = 1\n",
            "[zones.a]\nnetworks = { x = 1 }\n",
            "[services.s]\ntcp = [+80]\n",
            "[services.s]\ntcp = [1_000]\n",
            "[services.s]\ntcp = [0x50]\n",
            "[services.s]\ntcp = [080]\n",
            "[services.s]\ntcp = [8.0]\n",
            "[services.s]\ntcp = [1979-05-27]\n",
            "[services.s]\ntcp = [1234567890123456789]\n",
            "[services.s]\nicmp = truth\n",
            "[[rules]]\nname = \"r\"\nfrom = [\"a\"]\nto = [\"b\"]\n",
            "[[ rules ]]\n",
            "[[zones]]\n",
            "[rules]\n",
            "[clinical]\n[clinical]\n",
        ];
        for text in outside {
            assert!(!quick_reads(text), "read quickly:\n{text}");
        }
    }

    #[test]
    fn every_small_edit_of_a_policy_reads_alike_or_is_left_to_the_toml_crate() {
        let text = include_str!("../../policies/imaging-with-applications.toml");
        let mut rng = fastrand::Rng::with_seed(17);
        let inserts = [
            "\"", "'", "[", "]", "=", ",", "#", "\n", "\r", "\t", " ", ".", "\\", "x", "1", "-",
            "{", "\u{7}", "é",
        ];
        let mut quick = 0;
        for _ in 0..3_000 {
            let mut edited = text.to_owned();
            for _ in 0..rng.usize(1..4) {
                let mut at = rng.usize(..=edited.len());
                while !edited.is_char_boundary(at) {
                    at -= 1;
                }
                if rng.bool() {
                    edited.insert_str(at, inserts[rng.usize(..inserts.len())]);
                } else if let Some(c) = edited[at..].chars().next() {
                    edited.replace_range(at..at + c.len_utf8(), "");
                }
            }
            quick += usize::from(quick_reads(&edited));
        }
        // Most edits fall in comments, descriptions and blanks, which the quick reader reads.
        assert!(quick > 300, "{quick}");
    }
}
