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
    /// Blocks by prefix length (24, 28, 36), keyed by the prefix's bits
    /// (hashed with foldhash: the keys come from the registry's files).
    blocks: [HashMap<u64, Box<str>, foldhash::fast::FixedState>; 3],
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
        if !name.is_empty() {
            self.blocks[slot].insert(prefix, name.into());
        }
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
            let Ok(mut reader) = csv::Reader::from_path(&path) else {
                continue;
            };
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
                let digits = (length / 4) as usize;
                if assignment.len() == digits
                    && let Ok(prefix) = u64::from_str_radix(assignment, 16)
                {
                    self.insert(length, prefix, name);
                    read_any = true;
                }
            }
        }
        read_any
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
            if let Some(name) = self.blocks[slot].get(&(bits >> (48 - length))) {
                return VendorMatch::Vendor(name);
            }
        }
        VendorMatch::Unknown
    }
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
}
