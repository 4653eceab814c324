//! TLS: the ClientHello at the start of a client's stream.
//!
//! Read: the server name (SNI, RFC 6066 `host_name`), the versions offered
//! (the `supported_versions` extension 0x002b, RFC 8446 4.2.1, without GREASE
//! values; else the legacy `client_version`), and whether the hello carries
//! Encrypted Client Hello (extension 0xfe0d): then the SNI read is the outer,
//! public name, and the real server name is encrypted.
//!
//! Never read: session IDs and tickets, key shares, and every other
//! extension's value. TLS carries no patient data in the clear, but the
//! parser keeps to what a segmentation policy can use.
//!
//! Layout: record header 0x16, version(2), length(2); handshake header type
//! 0x01, length(3); ClientHello version(2), random(32), session ID(1+n),
//! cipher suites(2+n), compression methods(1+n), extensions(2+n), each
//! extension type(2), length(2), value.
//!
//! Streaming: `NeedMore` until the first record is complete (at most
//! 16 KiB + 2 KiB, well inside the inspection window). A ClientHello that
//! continues in a second record (larger than one record, which no common
//! client sends) is read as far as the first record goes and marked
//! truncated.

use super::Progress;
use super::bytes::{Reader, agrees_with, be_u16, printable};

/// Record content type of a handshake.
const HANDSHAKE: u8 = 0x16;
/// Handshake message type of a ClientHello.
const CLIENT_HELLO: u8 = 0x01;
/// The largest record a peer may send: 2^14 bytes of plaintext, plus the
/// 2048 bytes RFC 5246 6.2.3 allows for expansion.
const MAX_RECORD_LEN: u16 = 16384 + 2048;
/// The record header: type, version, length.
const RECORD_HEADER_LEN: usize = 5;

/// Extension types read.
mod extension {
    pub const SERVER_NAME: u16 = 0x0000;
    pub const SUPPORTED_VERSIONS: u16 = 0x002b;
    pub const ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
}

/// DNS names are at most 253 characters; a longer SNI is cut there.
const MAX_SERVER_NAME_LEN: usize = 253;
/// At most this many offered versions are kept (there are five TLS
/// versions; the rest would be junk).
const MAX_VERSIONS: usize = 8;

/// What a ClientHello says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// The SNI `host_name`: the outer name when [`TlsInfo::ech`] is set.
    /// `None` when absent, or when it is not a printable ASCII name.
    pub sni: Option<String>,
    /// The versions offered, in the client's order of preference.
    pub versions: Vec<TlsVersion>,
    /// Encrypted Client Hello (extension 0xfe0d) present.
    pub ech: bool,
    /// The ClientHello continued past the first record: extensions after
    /// the cut were not read.
    pub truncated: bool,
}

impl TlsInfo {
    /// The highest version offered.
    pub fn max_version(&self) -> Option<TlsVersion> {
        self.versions.iter().copied().max_by_key(|v| v.wire())
    }
}

/// A protocol version as TLS encodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    /// 0x0300.
    Ssl3,
    /// 0x0301.
    Tls10,
    /// 0x0302.
    Tls11,
    /// 0x0303.
    Tls12,
    /// 0x0304.
    Tls13,
    /// Anything else (drafts, DTLS values, ...).
    Unknown(u16),
}

impl TlsVersion {
    /// The version of a wire value.
    pub fn from_wire(value: u16) -> TlsVersion {
        match value {
            0x0300 => TlsVersion::Ssl3,
            0x0301 => TlsVersion::Tls10,
            0x0302 => TlsVersion::Tls11,
            0x0303 => TlsVersion::Tls12,
            0x0304 => TlsVersion::Tls13,
            other => TlsVersion::Unknown(other),
        }
    }

    /// The wire value.
    pub fn wire(self) -> u16 {
        match self {
            TlsVersion::Ssl3 => 0x0300,
            TlsVersion::Tls10 => 0x0301,
            TlsVersion::Tls11 => 0x0302,
            TlsVersion::Tls12 => 0x0303,
            TlsVersion::Tls13 => 0x0304,
            TlsVersion::Unknown(other) => other,
        }
    }

    /// Stable name: `ssl3`, `tls1.0` ... `tls1.3`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Ssl3 => "ssl3",
            TlsVersion::Tls10 => "tls1.0",
            TlsVersion::Tls11 => "tls1.1",
            TlsVersion::Tls12 => "tls1.2",
            TlsVersion::Tls13 => "tls1.3",
            TlsVersion::Unknown(_) => "unknown",
        }
    }
}

/// GREASE values (RFC 8701): 0x0a0a, 0x1a1a, ... 0xfafa.
fn is_grease(value: u16) -> bool {
    value & 0x0f0f == 0x0a0a && value >> 8 == value & 0xff
}

/// True when a ClientHello record may start with `byte` (the handshake
/// content type): every other first byte is [`Progress::NotThis`] for
/// [`parse_client_hello`].
pub(crate) const fn may_open(byte: u8) -> bool {
    byte == HANDSHAKE
}

/// True when a ClientHello record's second byte may be `byte` (the major
/// version, 3): every other second byte is [`Progress::NotThis`] for
/// [`parse_client_hello`].
pub(crate) const fn may_continue(byte: u8) -> bool {
    byte == 0x03
}

/// Parses the ClientHello that starts a client's stream.
pub fn parse_client_hello(bytes: &[u8]) -> Progress<TlsInfo> {
    let bytes = super::window(bytes);
    // Record header: handshake, major version 3, minor 0 to 4 (clients put
    // 0x0301 here for compatibility; 0x0300 for SSL 3).
    if !agrees_with(bytes, &[HANDSHAKE, 0x03]) || bytes.get(2).is_some_and(|&minor| minor > 4) {
        return Progress::NotThis;
    }
    let record_len = be_u16(bytes, 3);
    if record_len.is_some_and(|len| !(4..=MAX_RECORD_LEN).contains(&len)) {
        return Progress::NotThis;
    }
    // Handshake header: ClientHello, and a length that leaves room for
    // the fixed fields (version 2, random 32, three length bytes).
    if bytes
        .get(RECORD_HEADER_LEN)
        .is_some_and(|&t| t != CLIENT_HELLO)
    {
        return Progress::NotThis;
    }
    let Some(record_len) = record_len else {
        return Progress::NeedMore;
    };
    let record_end = RECORD_HEADER_LEN + usize::from(record_len);
    let Some(record) = bytes.get(RECORD_HEADER_LEN..record_end) else {
        return Progress::NeedMore;
    };
    let mut reader = Reader::new(record);
    let (Some(_), Some(hello_len)) = (reader.u8(), reader.u24()) else {
        return Progress::NotThis;
    };
    let hello_len = hello_len as usize;
    if hello_len < 38 {
        return Progress::NotThis;
    }
    let truncated = hello_len > reader.rest().len();
    let hello = reader.rest().get(..hello_len).unwrap_or(reader.rest());
    match read_client_hello(hello, truncated) {
        Some(info) => Progress::Done(info),
        None => Progress::NotThis,
    }
}

/// The ClientHello body; `None` when its fixed fields do not fit or its
/// version is not 3.x.
fn read_client_hello(hello: &[u8], truncated: bool) -> Option<TlsInfo> {
    let mut r = Reader::new(hello);
    let legacy_version = r.u16()?;
    if legacy_version >> 8 != 3 {
        return None;
    }
    r.take(32)?; // random
    let session_id_len = r.u8()?;
    if session_id_len > 32 {
        return None;
    }
    r.take(usize::from(session_id_len))?;
    let suites_len = r.u16()?;
    if suites_len < 2 || suites_len % 2 != 0 {
        return None;
    }
    let mut info = TlsInfo {
        sni: None,
        versions: Vec::new(),
        ech: false,
        truncated,
    };
    // A hello cut by the end of the first record may stop anywhere from here.
    let rest_of_hello = (|| {
        r.take(usize::from(suites_len))?;
        let compression_len = r.u8()?;
        r.take(usize::from(compression_len))?;
        let extensions_len = r.u16()?;
        let extensions = r.take(usize::from(extensions_len)).unwrap_or(r.rest());
        info.truncated |= extensions.len() < usize::from(extensions_len);
        Some(extensions)
    })();
    if let Some(extensions) = rest_of_hello {
        read_extensions(extensions, &mut info);
    } else if !truncated {
        // Without extensions a hello may end after the compression methods
        // (TLS 1.0-era clients); anything else short is malformed.
        if !r.is_empty() {
            return None;
        }
    }
    if info.versions.is_empty() {
        info.versions.push(TlsVersion::from_wire(legacy_version));
    }
    Some(info)
}

/// Walks the extensions; one running past the end stops the walk.
fn read_extensions(extensions: &[u8], info: &mut TlsInfo) {
    let mut r = Reader::new(extensions);
    while !r.is_empty() {
        let (Some(ext_type), Some(len)) = (r.u16(), r.u16()) else {
            info.truncated = true;
            return;
        };
        let Some(value) = r.take(usize::from(len)) else {
            info.truncated = true;
            return;
        };
        match ext_type {
            extension::SERVER_NAME if info.sni.is_none() => info.sni = server_name(value),
            extension::SUPPORTED_VERSIONS if info.versions.is_empty() => {
                info.versions = supported_versions(value);
            }
            extension::ENCRYPTED_CLIENT_HELLO => info.ech = true,
            _ => {}
        }
    }
}

/// RFC 6066 3: list length(2), then entries of name type(1), length(2),
/// name; the first `host_name` (type 0) is taken.
fn server_name(value: &[u8]) -> Option<String> {
    let mut r = Reader::new(value);
    let list_len = r.u16()?;
    let mut list = Reader::new(r.take(usize::from(list_len))?);
    while let (Some(name_type), Some(len)) = (list.u8(), list.u16()) {
        let name = list.take(usize::from(len))?;
        if name_type == 0 {
            let printable_name = !name.is_empty() && name.iter().all(|b| b.is_ascii_graphic());
            return printable_name.then(|| printable(name, MAX_SERVER_NAME_LEN));
        }
    }
    None
}

/// RFC 8446 4.2.1 (ClientHello form): length(1), then 2-byte versions.
fn supported_versions(value: &[u8]) -> Vec<TlsVersion> {
    let mut r = Reader::new(value);
    let Some(len) = r.u8() else {
        return Vec::new();
    };
    let listed = r.take(usize::from(len)).unwrap_or(r.rest());
    listed
        .chunks_exact(2)
        .filter_map(|pair| match pair {
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        })
        .filter(|&v| !is_grease(v))
        .take(MAX_VERSIONS)
        .map(TlsVersion::from_wire)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn ext(ext_type: u16, value: &[u8]) -> Vec<u8> {
        let mut out = ext_type.to_be_bytes().to_vec();
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        out
    }

    fn sni(name: &[u8]) -> Vec<u8> {
        let mut entry = vec![0];
        entry.extend_from_slice(&(name.len() as u16).to_be_bytes());
        entry.extend_from_slice(name);
        let mut value = (entry.len() as u16).to_be_bytes().to_vec();
        value.extend(entry);
        ext(0x0000, &value)
    }

    /// A record holding a ClientHello with these extensions.
    pub(crate) fn client_hello(extensions: &[Vec<u8>]) -> Vec<u8> {
        let mut hello = vec![0x03, 0x03];
        hello.extend_from_slice(&[0x42; 32]); // random
        hello.push(32);
        hello.extend_from_slice(&[0x17; 32]); // session ID
        hello.extend_from_slice(&[0, 4, 0x13, 0x01, 0xc0, 0x2f]); // two suites
        hello.extend_from_slice(&[1, 0]); // null compression
        let all: Vec<u8> = extensions.concat();
        hello.extend_from_slice(&(all.len() as u16).to_be_bytes());
        hello.extend(all);
        let mut handshake = vec![CLIENT_HELLO];
        handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
        handshake.extend(hello);
        let mut record = vec![HANDSHAKE, 0x03, 0x01];
        record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
        record.extend(handshake);
        record
    }

    pub(crate) fn modern_hello() -> Vec<u8> {
        client_hello(&[
            ext(0x1a1a, &[]), // GREASE
            sni(b"pacs.hospital.example"),
            ext(0x002b, &[6, 0x2a, 0x2a, 0x03, 0x04, 0x03, 0x03]),
            ext(0x0010, b"\x00\x03\x02h2"),
        ])
    }

    fn done(bytes: &[u8]) -> TlsInfo {
        match parse_client_hello(bytes) {
            Progress::Done(info) => info,
            other => panic!("expected a ClientHello, got {other:?}"),
        }
    }

    #[test]
    fn sni_and_supported_versions() {
        let info = done(&modern_hello());
        assert_eq!(info.sni.as_deref(), Some("pacs.hospital.example"));
        assert_eq!(info.versions, [TlsVersion::Tls13, TlsVersion::Tls12]);
        assert_eq!(info.max_version(), Some(TlsVersion::Tls13));
        assert!(!info.ech && !info.truncated);
    }

    #[test]
    fn legacy_version_without_the_extension_and_no_sni() {
        let info = done(&client_hello(&[ext(0x000a, &[0, 2, 0, 0x17])]));
        assert_eq!(info.sni, None);
        assert_eq!(info.versions, [TlsVersion::Tls12]);
    }

    #[test]
    fn ech_keeps_the_outer_name() {
        let info = done(&client_hello(&[
            sni(b"public.example"),
            ext(0xfe0d, &[0; 40]),
            ext(0x002b, &[2, 0x03, 0x04]),
        ]));
        assert_eq!(info.sni.as_deref(), Some("public.example"));
        assert!(info.ech);
    }

    #[test]
    fn an_unprintable_server_name_is_dropped() {
        let info = done(&client_hello(&[sni(b"evil\x1b[2Jname")]));
        assert_eq!(info.sni, None);
    }

    #[test]
    fn every_prefix_needs_more() {
        let hello = modern_hello();
        for cut in 0..hello.len() {
            assert_eq!(
                parse_client_hello(&hello[..cut]),
                Progress::NeedMore,
                "cut {cut}"
            );
        }
        let mut two_records = hello.clone();
        two_records.extend_from_slice(&[0x17, 0x03, 0x03, 0, 1, 0]);
        assert_eq!(parse_client_hello(&two_records), parse_client_hello(&hello));
    }

    #[test]
    fn not_a_client_hello() {
        let hello = modern_hello();
        let mut server_hello = hello.clone();
        server_hello[5] = 0x02;
        let mut ssl2_minor = hello.clone();
        ssl2_minor[2] = 0x05;
        let mut huge_record = hello.clone();
        huge_record[3..5].copy_from_slice(&0xffffu16.to_be_bytes());
        let mut version_2 = hello.clone();
        version_2[9] = 0x02;
        for bytes in [
            server_hello,
            ssl2_minor,
            huge_record,
            version_2,
            b"\x17\x03\x03".to_vec(),
        ] {
            assert_eq!(
                parse_client_hello(&bytes),
                Progress::NotThis,
                "{bytes:02x?}"
            );
        }
    }

    #[test]
    fn a_hello_continuing_in_a_second_record_is_read_as_far_as_it_goes() {
        let mut hello = modern_hello();
        // Claim 100 more handshake bytes than the record holds.
        let hs_len = u32::from_be_bytes([0, hello[6], hello[7], hello[8]]) + 100;
        hello[6..9].copy_from_slice(&hs_len.to_be_bytes()[1..]);
        let info = done(&hello);
        assert!(info.truncated);
        assert_eq!(info.sni.as_deref(), Some("pacs.hospital.example"));
    }

    #[test]
    fn hostile_lengths_and_flips_never_panic() {
        let hello = modern_hello();
        for i in 0..hello.len() {
            for bit in 0..8 {
                let mut flipped = hello.clone();
                flipped[i] ^= 1 << bit;
                let _ = parse_client_hello(&flipped);
            }
            for value in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut hostile = hello.clone();
                hostile[i] = value;
                let _ = parse_client_hello(&hostile);
            }
        }
        assert!(is_grease(0xdada) && is_grease(0x0a0a) && !is_grease(0x0a1a));
    }
}
