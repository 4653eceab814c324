//! Vendors by MAC address: the IEEE registry, read at run time.
//!
//! Sources, first found wins: Debian's `ieee-data` CSV files (MA-L /24,
//! MA-M /28, MA-S and IAB /36) or Wireshark's `manuf` file (the same
//! blocks with explicit prefix lengths). Lookups take the longest matching
//! prefix. Without either, a small built-in table of medical-device vendors
//! (from `iomt.md`) still names the usual suspects. Locally administered
//! addresses (randomised MACs) belong to no vendor and are reported so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where Debian's `ieee-data` keeps the registry.
const IEEE_DATA: &str = "/usr/share/ieee-data";
/// Wireshark's vendor file (package `libwireshark-data`).
const WIRESHARK_MANUF: &str = "/usr/share/wireshark/manuf";

/// Medical-device vendors' MA-L blocks, for machines without a registry.
const BUILT_IN: &[(u32, &str)] = &[
    (0x00B094, "Alaris Medical Systems"),
    (0x00D075, "Alaris Medical Systems"),
    (0x0003B1, "ICU Medical (Hospira)"),
    (0x001A01, "Smiths Medical"),
    (0x001221, "B. Braun Melsungen"),
    (0x00095C, "Philips Medical Systems - CMS"),
    (0x7C94B2, "Philips Healthcare PCCI"),
    (0x444B5D, "GE Healthcare"),
    (0x004097, "Datex-Ohmeda (GE Healthcare)"),
    (0xA0F217, "GE Medical System"),
    (0x00105D, "Draeger Medical"),
    (0x0030E6, "Draeger Medical Systems"),
    (0xF0E5C3, "Draegerwerk"),
    (0x00A09A, "Nihon Kohden America"),
    (0x00A0AA, "Spacelabs Medical"),
    (0x001AFA, "Welch Allyn"),
    (0x001E9A, "Hamilton Bonaduz"),
];

/// Where the registry came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrySource {
    /// Debian `ieee-data` CSV files in this folder.
    IeeeData(PathBuf),
    /// Wireshark's `manuf` file.
    Wireshark(PathBuf),
    /// The built-in medical-vendor table.
    BuiltIn,
}

/// What the registry says of a MAC address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VendorMatch<'a> {
    /// Assigned to this organisation.
    Vendor(&'a str),
    /// Locally administered: randomised or set by an administrator.
    LocallyAdministered,
    /// Not in the registry.
    Unknown,
}

/// Vendor names by MAC prefix: /24, /28 and /36 blocks.
#[derive(Debug)]
pub struct OuiRegistry {
    source: RegistrySource,
    /// Every vendor name, one after another: one allocation for the ~50,000
    /// names of the registry rather than one each.
    names: String,
    /// Blocks by prefix length (36, 28, 24), keyed by the prefix's bits
    /// (hashed with foldhash: the keys come from the registry's files),
    /// with the range of their name in `names`.
    blocks: [HashMap<u64, (u32, u32), foldhash::fast::FixedState>; 3],
}

const LENGTHS: [u32; 3] = [36, 28, 24];

fn mac_bits(mac: [u8; 6]) -> u64 {
    mac.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

impl OuiRegistry {
    /// The first registry found on this machine, or the built-in table.
    pub fn load_default() -> OuiRegistry {
        OuiRegistry::load_from(Path::new(IEEE_DATA), Path::new(WIRESHARK_MANUF))
    }

    /// The registry from `ieee_data` (a folder of CSV files), else from a
    /// Wireshark `manuf` file, else built in. A file that cannot be parsed
    /// is skipped with a warning: vendor names are a convenience.
    pub fn load_from(ieee_data: &Path, manuf: &Path) -> OuiRegistry {
        let mut registry = OuiRegistry {
            source: RegistrySource::BuiltIn,
            names: String::new(),
            blocks: Default::default(),
        };
        if registry.read_ieee_data(ieee_data) {
            registry.source = RegistrySource::IeeeData(ieee_data.to_path_buf());
        } else if registry.read_manuf(manuf) {
            registry.source = RegistrySource::Wireshark(manuf.to_path_buf());
        } else {
            for &(prefix, name) in BUILT_IN {
                registry.insert(24, u64::from(prefix), name);
            }
        }
        registry
    }

    /// Where the names come from.
    pub fn source(&self) -> &RegistrySource {
        &self.source
    }

    /// Blocks known.
    pub fn len(&self) -> usize {
        self.blocks.iter().map(HashMap::len).sum()
    }

    /// True when no block is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert(&mut self, length: u32, prefix: u64, name: &str) {
        let slot = match length {
            36 => 0,
            28 => 1,
            _ => 2,
        };
        let name = name.trim();
        if name.is_empty() {
            return;
        }
        // Names past 4 GiB in all cannot be ranged: no registry comes near.
        let (Ok(start), Ok(len)) = (u32::try_from(self.names.len()), u32::try_from(name.len()))
        else {
            return;
        };
        self.names.push_str(name);
        self.blocks[slot].insert(prefix, (start, len));
    }

    /// Reads `oui.csv` (MA-L), `mam.csv` (MA-M), `oui36.csv` (MA-S) and
    /// `iab.csv` (IAB); true when at least one block was read.
    fn read_ieee_data(&mut self, folder: &Path) -> bool {
        let mut read_any = false;
        for (file, length) in [
            ("oui.csv", 24),
            ("mam.csv", 28),
            ("oui36.csv", 36),
            ("iab.csv", 36),
        ] {
            let path = folder.join(file);
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "Unreadable OUI file; skipping it");
                    continue;
                }
            };
            let digits = (length / 4) as usize;
            let mut take = |registry: &mut OuiRegistry, assignment: &str, name: &str| {
                if assignment.len() == digits
                    && let Ok(prefix) = u64::from_str_radix(assignment, 16)
                {
                    registry.insert(length, prefix, name);
                    read_any = true;
                }
            };
            // The registry's files as Debian ships them take the quick
            // reader; anything it does not expect takes the csv crate's.
            match ieee_records(&bytes) {
                Some(records) => {
                    self.names.reserve(records.len() * 32);
                    let slot = LENGTHS.iter().position(|&l| l == length).unwrap_or(2);
                    self.blocks[slot].reserve(records.len());
                    for (assignment, name) in records {
                        take(self, assignment, &name);
                    }
                }
                None => self.read_ieee_csv(&path, &bytes, &mut take),
            }
        }
        read_any
    }

    /// Reads an IEEE CSV file with the csv crate: what the quick reader
    /// leaves to it (and the reference it is tested against).
    fn read_ieee_csv(
        &mut self,
        path: &Path,
        bytes: &[u8],
        take: &mut impl FnMut(&mut OuiRegistry, &str, &str),
    ) {
        let mut reader = csv::Reader::from_reader(bytes);
        // Byte records: only the two fields used are checked as UTF-8,
        // not the organisation's address beside them.
        let mut record = csv::ByteRecord::new();
        loop {
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => break,
                Err(_) => {
                    tracing::warn!(file = %path.display(), "Unreadable OUI record; skipping the rest");
                    break;
                }
            }
            let field = |i| record.get(i).and_then(|f| std::str::from_utf8(f).ok());
            let (Some(assignment), Some(name)) = (field(1), field(2)) else {
                continue;
            };
            take(self, assignment, name);
        }
    }

    /// Reads Wireshark's `manuf`: `PREFIX[/LEN]<TAB>short<TAB>long`.
    fn read_manuf(&mut self, path: &Path) -> bool {
        let Ok(text) = std::fs::read_to_string(path) else {
            return false;
        };
        let mut read_any = false;
        for line in text.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let mut fields = line.split('\t');
            let (Some(prefix), Some(short)) = (fields.next(), fields.next()) else {
                continue;
            };
            let name = fields.next().unwrap_or(short);
            let (hex, length) = match prefix.split_once('/') {
                Some((hex, length)) => (hex, length.parse().unwrap_or(24)),
                None => (prefix, 24),
            };
            let digits: String = hex.chars().filter(char::is_ascii_hexdigit).collect();
            if !matches!(length, 24 | 28 | 36) || digits.len() < (length / 4) as usize {
                continue;
            }
            if let Ok(prefix) = u64::from_str_radix(&digits[..(length / 4) as usize], 16) {
                self.insert(length, prefix, name);
                read_any = true;
            }
        }
        read_any
    }

    /// The vendor of `mac`, by longest prefix.
    pub fn lookup(&self, mac: [u8; 6]) -> VendorMatch<'_> {
        if mac[0] & 0x02 != 0 {
            return VendorMatch::LocallyAdministered;
        }
        let bits = mac_bits(mac);
        for (slot, length) in LENGTHS.iter().enumerate() {
            if let Some(&(start, len)) = self.blocks[slot].get(&(bits >> (48 - length))) {
                let (start, len) = (start as usize, len as usize);
                return VendorMatch::Vendor(&self.names[start..start + len]);
            }
        }
        VendorMatch::Unknown
    }
}

/// The (assignment, organisation name) of every data record of an IEEE
/// CSV file whose two fields are UTF-8, as the csv crate reads them (a
/// header record, then records of as many fields, quoted fields with `""`
/// for a quote, any of CR, LF or CRLF ending a record, blank lines
/// skipped); `None` for what it does not expect there (a byte-order mark,
/// text after a closing quote, an unclosed quote, a record of another
/// length), which the csv crate then reads.
///
/// It jumps from delimiter to delimiter with `memchr` rather than stepping
/// through every byte of the organisations' addresses: the registry is
/// about 4 MB, read by every replay that keeps an inventory.
fn ieee_records(bytes: &[u8]) -> Option<Vec<(&str, std::borrow::Cow<'_, str>)>> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        return None;
    }
    let mut records = Vec::with_capacity(bytes.len() / 80);
    let mut at = 0;
    let mut header_fields = None;
    let mut fields: [Field; 4] = [Field::default(); 4];
    loop {
        // Blank lines (and the LF of a CRLF) are no records.
        while at < bytes.len() && matches!(bytes[at], b'\r' | b'\n') {
            at += 1;
        }
        if at >= bytes.len() {
            break;
        }
        let mut count = 0;
        loop {
            let field = if bytes[at..].first() == Some(&b'"') {
                // A quoted field: up to the quote not doubled.
                let start = at + 1;
                let mut end = start;
                let mut doubled = false;
                loop {
                    end += memchr::memchr(b'"', &bytes[end..])?;
                    if bytes.get(end + 1) == Some(&b'"') {
                        doubled = true;
                        end += 2;
                    } else {
                        break;
                    }
                }
                at = end + 1;
                Field {
                    start,
                    end,
                    doubled,
                }
            } else {
                let start = at;
                at += memchr::memchr3(b',', b'\r', b'\n', &bytes[at..]).unwrap_or(bytes.len() - at);
                Field {
                    start,
                    end: at,
                    doubled: false,
                }
            };
            if let Some(slot) = fields.get_mut(count) {
                *slot = field;
            }
            count += 1;
            match bytes.get(at) {
                Some(b',') => at += 1,
                Some(b'\r' | b'\n') | None => break,
                // Text after a closing quote.
                Some(_) => return None,
            }
        }
        match header_fields {
            None => {
                header_fields = Some(count);
                continue;
            }
            Some(n) if n != count => return None,
            Some(_) => {}
        }
        if count < 3 {
            continue;
        }
        let (Ok(assignment), Ok(name)) = (
            std::str::from_utf8(&bytes[fields[1].start..fields[1].end]),
            std::str::from_utf8(&bytes[fields[2].start..fields[2].end]),
        ) else {
            continue;
        };
        let name = if fields[2].doubled {
            std::borrow::Cow::Owned(name.replace("\"\"", "\""))
        } else {
            std::borrow::Cow::Borrowed(name)
        };
        // A quoted assignment with a doubled quote is no hex number.
        if fields[1].doubled {
            continue;
        }
        records.push((assignment, name));
    }
    Some(records)
}

/// Where a field's text lies in the file; `doubled` when it holds `""`.
#[derive(Clone, Copy, Default)]
struct Field {
    start: usize,
    end: usize,
    doubled: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(text: &str) -> [u8; 6] {
        let mut out = [0u8; 6];
        for (byte, part) in out.iter_mut().zip(text.split(':')) {
            *byte = u8::from_str_radix(part, 16).unwrap();
        }
        out
    }

    #[test]
    fn longest_prefix_wins_across_block_sizes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("oui.csv"),
            "Registry,Assignment,Organization Name,Organization Address\n\
             MA-L,001BC5,IEEE Registration Authority,\"445 Hoes Lane, Piscataway\"\n\
             MA-L,00095C,\"Philips Medical Systems - Cardiac and Monitoring Systems\",x\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("oui36.csv"),
            "Registry,Assignment,Organization Name,Organization Address\n\
             MA-S,001BC5001,\"OpenRB.com, Direct SIA\",Riga\n",
        )
        .unwrap();
        let registry = OuiRegistry::load_from(dir.path(), Path::new("/nonexistent"));
        assert_eq!(
            registry.source(),
            &RegistrySource::IeeeData(dir.path().to_path_buf())
        );
        assert_eq!(
            registry.lookup(mac("00:1b:c5:00:10:42")),
            VendorMatch::Vendor("OpenRB.com, Direct SIA")
        );
        assert_eq!(
            registry.lookup(mac("00:1b:c5:99:10:42")),
            VendorMatch::Vendor("IEEE Registration Authority")
        );
        assert_eq!(
            registry.lookup(mac("00:09:5c:01:02:03")),
            VendorMatch::Vendor("Philips Medical Systems - Cardiac and Monitoring Systems")
        );
        assert_eq!(
            registry.lookup(mac("02:09:5c:01:02:03")),
            VendorMatch::LocallyAdministered
        );
        assert_eq!(
            registry.lookup(mac("00:00:01:00:00:00")),
            VendorMatch::Unknown
        );
    }

    #[test]
    fn wireshark_manuf_and_the_built_in_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let manuf = dir.path().join("manuf");
        std::fs::write(
            &manuf,
            "# comment\n00:00:0C\tCisco\tCisco Systems, Inc\n\
             00:1B:C5:00:00:00/36\tConvergi\tConverging Systems Inc.\n\
             70:B3:D5:F2:F0:00/36\tTELESTRI\n",
        )
        .unwrap();
        let registry = OuiRegistry::load_from(Path::new("/nonexistent"), &manuf);
        assert_eq!(registry.source(), &RegistrySource::Wireshark(manuf.clone()));
        assert_eq!(
            registry.lookup(mac("00:00:0c:12:34:56")),
            VendorMatch::Vendor("Cisco Systems, Inc")
        );
        assert_eq!(
            registry.lookup(mac("00:1b:c5:00:00:09")),
            VendorMatch::Vendor("Converging Systems Inc.")
        );
        assert_eq!(
            registry.lookup(mac("70:b3:d5:f2:f0:01")),
            VendorMatch::Vendor("TELESTRI")
        );

        let built_in = OuiRegistry::load_from(Path::new("/nonexistent"), Path::new("/none"));
        assert_eq!(built_in.source(), &RegistrySource::BuiltIn);
        assert_eq!(
            built_in.lookup(mac("00:12:21:aa:bb:cc")),
            VendorMatch::Vendor("B. Braun Melsungen")
        );
    }

    #[test]
    fn the_machines_registry_when_installed() {
        let registry = OuiRegistry::load_default();
        if registry.source() == &RegistrySource::BuiltIn {
            eprintln!("skipped: neither ieee-data nor Wireshark's manuf is installed");
            return;
        }
        assert!(registry.len() > 30_000, "{}", registry.len());
        // Facts from iomt.md: B. Braun 001221, Spacelabs 00A0AA.
        for (address, word) in [
            ("00:12:21:00:00:01", "braun"),
            ("00:a0:aa:00:00:01", "spacelabs"),
        ] {
            match registry.lookup(mac(address)) {
                VendorMatch::Vendor(name) => {
                    assert!(name.to_lowercase().contains(word), "{name}")
                }
                other => panic!("{address}: {other:?}"),
            }
        }
    }

    /// The records as the csv crate reads them, up to its first error.
    fn csv_crate_records(bytes: &[u8]) -> Vec<(String, String)> {
        let mut reader = csv::Reader::from_reader(bytes);
        let mut out = Vec::new();
        for record in reader.byte_records() {
            let Ok(record) = record else { break };
            let field = |i| record.get(i).and_then(|f| std::str::from_utf8(f).ok());
            if let (Some(a), Some(n)) = (field(1), field(2)) {
                out.push((a.to_owned(), n.to_owned()));
            }
        }
        out
    }

    fn quick_records(bytes: &[u8]) -> Option<Vec<(String, String)>> {
        ieee_records(bytes).map(|records| {
            records
                .into_iter()
                .map(|(a, n)| (a.to_owned(), n.into_owned()))
                .collect()
        })
    }

    #[test]
    fn the_quick_reader_reads_what_the_csv_crate_reads_or_leaves_it() {
        let header = "Registry,Assignment,Organization Name,Organization Address\r\n";
        let cases: &[(&str, bool)] = &[
            (
                "MA-L,002272,American Micro-Fuel Device Corp.,2181 Buchanan Loop \r\n",
                true,
            ),
            // Quoted names and addresses: commas, doubled quotes, line breaks.
            (
                "MA-L,00095C,\"Philips Medical Systems, \"\"CMS\"\"\",\"a,\r\nb\"\r\nMA-L,001221,B. Braun,x\r\n",
                true,
            ),
            // Blank lines, bare LF and CR endings, no final line break.
            (
                "\r\n\nMA-L,0003B1,ICU Medical,x\nMA-L,001A01,Smiths,y\rMA-L,00A0AA,Spacelabs,z",
                true,
            ),
            // An empty last field, and a quote inside an unquoted field.
            ("MA-L,00B094,Ala\"ris,\r\n", true),
            // Not UTF-8: the record is skipped by both.
            (
                "MA-L,00D075,Al\u{0}aris,x\r\nMA-L,0030E6,Draeger,y\r\n",
                true,
            ),
            // Left to the csv crate: text after a closing quote, an
            // unclosed quote, a record of another length.
            ("MA-L,00105D,\"Draeger\" Medical,x\r\n", false),
            ("MA-L,00105D,\"Draeger Medical,x\r\n", false),
            (
                "MA-L,00105D,Draeger,x,extra\r\nMA-L,001221,B. Braun,x\r\n",
                false,
            ),
        ];
        for (body, quick) in cases {
            let text = format!("{header}{body}");
            let got = quick_records(text.as_bytes());
            assert_eq!(got.is_some(), *quick, "{body:?}");
            if let Some(got) = got {
                assert_eq!(got, csv_crate_records(text.as_bytes()), "{body:?}");
            }
        }
        let mut latin1 = header.as_bytes().to_vec();
        latin1.extend_from_slice(b"MA-L,00105D,Dr\xe4ger,x\r\nMA-L,001221,B. Braun,x\r\n");
        assert_eq!(quick_records(&latin1).unwrap(), csv_crate_records(&latin1));
        let bom = format!("\u{feff}{header}MA-L,001221,B. Braun,x\r\n");
        assert!(quick_records(bom.as_bytes()).is_none());
    }

    #[test]
    fn the_quick_reader_reads_the_machines_registry_as_the_csv_crate() {
        let mut compared = 0;
        for file in ["oui.csv", "mam.csv", "oui36.csv", "iab.csv"] {
            let Ok(bytes) = std::fs::read(Path::new(IEEE_DATA).join(file)) else {
                continue;
            };
            let quick = quick_records(&bytes).expect("the registry as Debian ships it");
            assert_eq!(quick, csv_crate_records(&bytes), "{file}");
            compared += quick.len();
        }
        if compared == 0 {
            eprintln!("skipped: ieee-data is not installed");
        }
    }
}
