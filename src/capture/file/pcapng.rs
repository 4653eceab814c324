//! pcapng files: blocks read by hand, section after section (each with its
//! own byte order), keeping each interface's link type and timestamp
//! resolution (`if_tsresol`, `if_tsoffset`).
//!
//! Only what frames depend on is parsed: section headers (byte order),
//! interface descriptions (link type, snap length, the two timestamp
//! options) and packet blocks (enhanced, simple, obsolete). Every other block
//! is skipped by its length, and so are the options of every block but an
//! interface description, as libpcap reads them. Option lists are read as
//! libpcap and Wireshark read them: they end at `opt_endofopt` or at the end
//! of the block, whichever comes first (many writers leave the marker out),
//! an option whose value is not text where text is expected is no concern of
//! ours, and only an interface option that runs past the end of its block is
//! corruption (both refuse it).
//!
//! A file cut inside its last block is told from a corrupt one: the cut is a
//! [`Step::Truncated`], an impossible length a [`Step::Corrupt`].
//!
//! Cost: reading the fixed header of an enhanced packet block by hand, as
//! `pcap` reads its records, replaced pcap-file's parser, whose general
//! `Block` result cost about 43 of the 57 ns per block it took.
//!
//! End-to-end gain (callgrind, 2026-12-07, `benches/twins.rs`, the
//! generated 200,000-packet hospital capture as pcapng): 158 instructions a
//! block fewer than pcap-file's `PcapNgReader` (31.6 million), 17% of the
//! plain replay of that file (187.0 million).

use super::{Corrupt, Step};
use crate::capture::Frame;
use crate::wire::LinkType;

/// Smallest possible block: type, length, trailing length.
const MIN_BLOCK_LEN: usize = 12;
/// Byte-order magic of a section header block, as read big-endian from a
/// big-endian section.
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Default `if_tsresol`: microseconds.
const DEFAULT_TSRESOL: u8 = 6;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Converts an interface's timestamps (units since the epoch, in its
/// resolution, plus its offset) into nanoseconds since the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scale {
    /// Resolution 10^-n with n <= 9: multiply by 10^(9-n).
    Mul(u64),
    /// Resolution 10^-n with n > 9: divide by 10^(n-9).
    Div(u64),
    /// Resolution 2^-n: multiply by 1e9, shift right by n.
    Shift(u32),
    /// Resolution so fine that every u64 count is under one nanosecond.
    Zero,
}

impl Scale {
    /// The scale for an `if_tsresol` byte: high bit clear, 10^-n seconds;
    /// high bit set, 2^-n seconds (n is the low 7 bits).
    fn from_tsresol(tsresol: u8) -> Scale {
        let n = u32::from(tsresol & 0x7f);
        if tsresol & 0x80 != 0 {
            Scale::Shift(n)
        } else if n <= 9 {
            Scale::Mul(10u64.pow(9 - n))
        } else {
            match 10u64.checked_pow(n - 9) {
                Some(divisor) => Scale::Div(divisor),
                None => Scale::Zero,
            }
        }
    }

    #[inline]
    fn to_ns(self, raw: u64) -> u64 {
        match self {
            Scale::Mul(m) => raw.saturating_mul(m),
            Scale::Div(d) => raw / d,
            Scale::Shift(n) => {
                // raw * 1e9 < 2^64 * 2^30 fits in u128; n <= 127.
                let ns = (u128::from(raw) * u128::from(NANOS_PER_SEC)) >> n;
                u64::try_from(ns).unwrap_or(u64::MAX)
            }
            Scale::Zero => 0,
        }
    }
}

/// What an interface description block says about its packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Interface {
    link: LinkType,
    /// 0 when the interface has no snap length.
    snaplen: u32,
    scale: Scale,
    /// `if_tsoffset` in nanoseconds (seconds * 1e9 always fits in an i128).
    offset_ns: i128,
}

impl Interface {
    /// Nanoseconds since the epoch of a timestamp of this interface,
    /// saturating at 0 and at u64::MAX.
    #[inline]
    fn ts_ns(&self, raw: u64) -> u64 {
        let ns = self.scale.to_ns(raw);
        if self.offset_ns == 0 {
            return ns;
        }
        let shifted = i128::from(ns) + self.offset_ns;
        u64::try_from(shifted.max(0)).unwrap_or(u64::MAX)
    }
}

/// Walks the blocks of a pcapng file and turns packet blocks into frames.
pub(super) struct Records<'a> {
    /// The blocks not yet read.
    rest: &'a [u8],
    /// Length of the whole file, to turn `rest` into an offset.
    file_len: usize,
    /// Byte order of the current section.
    big_endian: bool,
    /// The interfaces of the current section, in order of description.
    interfaces: Vec<Interface>,
    /// Timestamp of the previous frame, for simple packet blocks (which have
    /// none).
    last_ts_ns: u64,
}

/// Smallest section header block: the framing and a 16-byte body (byte-order
/// magic, version, section length).
const MIN_SECTION_HEADER_LEN: usize = 28;

impl<'a> Records<'a> {
    /// Reads the first section header block of `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Result<Records<'a>, Corrupt> {
        let mut records = Records {
            rest: bytes,
            file_len: bytes.len(),
            big_endian: false,
            interfaces: Vec::new(),
            last_ts_ns: 0,
        };
        match records.framing() {
            Framing::Complete {
                block_type: SECTION_HEADER_BLOCK,
                block_len,
            } if block_len >= MIN_SECTION_HEADER_LEN => {
                records.section(block_len);
                Ok(records)
            }
            Framing::Incomplete => Err(Corrupt::new(
                0,
                format!(
                    "file ends inside the first pcapng section header block, after {} bytes",
                    bytes.len()
                ),
            )),
            Framing::Impossible(detail) => Err(Corrupt::new(
                0,
                format!("bad pcapng section header block: {detail}"),
            )),
            Framing::Complete { block_len, .. } => Err(Corrupt::new(
                0,
                format!(
                    "bad pcapng section header block: block length {block_len} is less than the minimum of {MIN_SECTION_HEADER_LEN}"
                ),
            )),
        }
    }

    /// Byte offset of the next block.
    pub(super) fn position(&self) -> u64 {
        (self.file_len - self.rest.len()) as u64
    }

    /// The next packet, skipping blocks that carry none.
    pub(super) fn next(&mut self) -> Step<'a> {
        loop {
            if self.rest.is_empty() {
                return Step::End;
            }
            let offset = self.position();
            let (block_type, block_len) = match self.framing() {
                Framing::Complete {
                    block_type,
                    block_len,
                } => (block_type, block_len),
                Framing::Incomplete => return Step::Truncated(offset),
                Framing::Impossible(detail) => return Step::Corrupt(Corrupt::new(offset, detail)),
            };
            let body = &self.rest[8..block_len - 4];
            let step = match block_type {
                ENHANCED_PACKET_BLOCK => self.enhanced_packet(offset, body),
                SECTION_HEADER_BLOCK => {
                    if block_len < MIN_SECTION_HEADER_LEN {
                        Some(body_error(
                            offset,
                            block_type,
                            "a field runs past the end of the block",
                        ))
                    } else {
                        self.section(block_len);
                        continue;
                    }
                }
                INTERFACE_DESCRIPTION_BLOCK => match self.interface(body) {
                    Ok(interface) => {
                        self.interfaces.push(interface);
                        None
                    }
                    Err(detail) => Some(body_error(offset, block_type, &detail)),
                },
                SIMPLE_PACKET_BLOCK => self.simple_packet(offset, body),
                PACKET_BLOCK => self.obsolete_packet(offset, body),
                // Name resolution, interface statistics, journal export,
                // decryption secrets, custom blocks: nothing a frame needs.
                _ => None,
            };
            match step {
                Some(Step::Corrupt(corrupt)) => return Step::Corrupt(corrupt),
                step => {
                    self.rest = &self.rest[block_len..];
                    if let Some(step) = step {
                        return step;
                    }
                }
            }
        }
    }

    /// Starts the section whose header block (already framed) is next.
    fn section(&mut self, block_len: usize) {
        // `framing` read the byte-order magic to frame the block.
        self.big_endian = self.rest.get(8..12) == Some(&BYTE_ORDER_MAGIC.to_be_bytes()[..]);
        self.interfaces.clear();
        self.rest = &self.rest[block_len..];
    }

    fn u16_at(&self, bytes: &[u8], at: usize) -> Option<u16> {
        let b = *bytes.get(at..at + 2)?.first_chunk::<2>()?;
        Some(if self.big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    }

    fn u32_at(&self, bytes: &[u8], at: usize) -> Option<u32> {
        let b = *bytes.get(at..at + 4)?.first_chunk::<4>()?;
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }

    /// An interface description: link type (2), reserved (2), snap length
    /// (4), options.
    fn interface(&self, body: &[u8]) -> Result<Interface, String> {
        const IF_TSRESOL: u16 = 9;
        const IF_TSOFFSET: u16 = 14;
        let (Some(link), Some(snaplen)) = (self.u16_at(body, 0), self.u32_at(body, 4)) else {
            return Err("a field runs past the end of the block".into());
        };
        let mut tsresol = None;
        let mut tsoffset = None;
        let mut options = &body[8..];
        // Each option takes at least 4 bytes, so this ends.
        while let (Some(code), Some(len)) = (self.u16_at(options, 0), self.u16_at(options, 2)) {
            if code == OPT_ENDOFOPT {
                break;
            }
            let len = usize::from(len);
            let Some(value) = options.get(4..4 + len) else {
                return Err(format!(
                    "option {code} of length {len} runs past the end of the block"
                ));
            };
            // A value of the wrong length is ignored (Wireshark reads such a
            // file; libpcap refuses a bad `if_tsresol`).
            match (code, value) {
                (IF_TSRESOL, &[resolution]) => {
                    tsresol.get_or_insert(resolution);
                }
                (IF_TSOFFSET, &[..]) if len == 8 => {
                    let raw = self.u32_at(value, 0).zip(self.u32_at(value, 4));
                    if let Some((first, second)) = raw {
                        let (high, low) = if self.big_endian {
                            (first, second)
                        } else {
                            (second, first)
                        };
                        // A signed 64-bit count of seconds.
                        let seconds = ((u64::from(high) << 32) | u64::from(low)) as i64;
                        tsoffset.get_or_insert(seconds);
                    }
                }
                _ => {}
            }
            // The last option's padding may be missing.
            options = options
                .get(4 + len.next_multiple_of(4)..)
                .unwrap_or_default();
        }
        Ok(Interface {
            link: LinkType(u32::from(link)),
            snaplen,
            scale: Scale::from_tsresol(tsresol.unwrap_or(DEFAULT_TSRESOL)),
            offset_ns: i128::from(tsoffset.unwrap_or(0)) * i128::from(NANOS_PER_SEC),
        })
    }

    /// An enhanced packet block: interface (4), timestamp high and low (4
    /// each), captured length (4), original length (4), data, options.
    #[inline]
    fn enhanced_packet(&mut self, offset: u64, body: &'a [u8]) -> Option<Step<'a>> {
        let header = body.first_chunk::<20>();
        let fields = header.and_then(|h| {
            Some((
                self.u32_at(h, 0)?,
                self.u32_at(h, 4)?,
                self.u32_at(h, 8)?,
                self.u32_at(h, 12)?,
                self.u32_at(h, 16)?,
            ))
        });
        let Some((interface_id, high, low, captured, original)) = fields else {
            return Some(body_error(offset, ENHANCED_PACKET_BLOCK, CUT_FIELD));
        };
        let Some(data) = body.get(20..20 + captured as usize) else {
            return Some(body_error(
                offset,
                ENHANCED_PACKET_BLOCK,
                &format!("captured length {captured} runs past the end of the block"),
            ));
        };
        let raw_ts = (u64::from(high) << 32) | u64::from(low);
        Some(self.packet(offset, "enhanced", interface_id, raw_ts, original, data))
    }

    /// An obsolete packet block: interface (2), drops (2), timestamp high
    /// and low (4 each), captured length (4), original length (4), data.
    fn obsolete_packet(&mut self, offset: u64, body: &'a [u8]) -> Option<Step<'a>> {
        let fields = (|| {
            Some((
                self.u16_at(body, 0)?,
                self.u32_at(body, 4)?,
                self.u32_at(body, 8)?,
                self.u32_at(body, 12)?,
                self.u32_at(body, 16)?,
            ))
        })();
        let Some((interface_id, high, low, captured, original)) = fields else {
            return Some(body_error(offset, PACKET_BLOCK, CUT_FIELD));
        };
        let Some(data) = body.get(20..20 + captured as usize) else {
            return Some(body_error(
                offset,
                PACKET_BLOCK,
                &format!("captured length {captured} runs past the end of the block"),
            ));
        };
        let raw_ts = (u64::from(high) << 32) | u64::from(low);
        Some(self.packet(
            offset,
            "packet",
            u32::from(interface_id),
            raw_ts,
            original,
            data,
        ))
    }

    /// A frame from an enhanced packet block or an (obsolete) packet block.
    #[inline]
    fn packet(
        &mut self,
        offset: u64,
        kind: &str,
        interface_id: u32,
        raw_ts: u64,
        original_len: u32,
        data: &'a [u8],
    ) -> Step<'a> {
        let Some(interface) = self.interfaces.get(interface_id as usize) else {
            return self.unknown_interface(offset, kind, interface_id);
        };
        let ts_ns = interface.ts_ns(raw_ts);
        self.last_ts_ns = ts_ns;
        Step::Frame(Frame {
            vlan: None,
            ts_ns,
            orig_len: original_len.max(len_u32(data)),
            link: interface.link,
            data,
        })
    }

    /// A frame from a simple packet block: interface 0, no timestamp (the
    /// previous frame's is used), and a captured length that must be worked
    /// out: the body includes the padding, so the data is at most the
    /// original length and the interface's snap length.
    fn simple_packet(&mut self, offset: u64, body: &'a [u8]) -> Option<Step<'a>> {
        let Some(original_len) = self.u32_at(body, 0) else {
            return Some(body_error(offset, SIMPLE_PACKET_BLOCK, CUT_FIELD));
        };
        let Some(interface) = self.interfaces.first() else {
            return Some(self.unknown_interface(offset, "simple packet", 0));
        };
        let mut data = &body[4..];
        let mut captured = original_len as usize;
        if interface.snaplen != 0 {
            captured = captured.min(interface.snaplen as usize);
        }
        if let Some(cut) = data.get(..captured) {
            data = cut;
        }
        Some(Step::Frame(Frame {
            vlan: None,
            ts_ns: self.last_ts_ns,
            orig_len: original_len.max(len_u32(data)),
            link: interface.link,
            data,
        }))
    }

    #[cold]
    fn unknown_interface(&self, offset: u64, kind: &str, interface_id: u32) -> Step<'a> {
        Step::Corrupt(Corrupt::new(
            offset,
            format!(
                "{kind} block names interface {interface_id}, but its section describes {} interface(s)",
                self.interfaces.len()
            ),
        ))
    }

    /// Checks the framing of the block at the start of `rest`: its type and
    /// lengths, not its body.
    fn framing(&self) -> Framing {
        let Some(&[t0, t1, t2, t3, l0, l1, l2, l3]) = self.rest.first_chunk::<8>() else {
            return Framing::Incomplete;
        };
        let mut big_endian = self.big_endian;
        let block_type_be = u32::from_be_bytes([t0, t1, t2, t3]);
        if block_type_be == SECTION_HEADER_BLOCK {
            // A new section says its own byte order, after the length.
            match self.rest.get(8..12) {
                Some(&[m0, m1, m2, m3]) => {
                    let magic = u32::from_be_bytes([m0, m1, m2, m3]);
                    if magic == BYTE_ORDER_MAGIC {
                        big_endian = true;
                    } else if magic.swap_bytes() == BYTE_ORDER_MAGIC {
                        big_endian = false;
                    } else {
                        return Framing::Impossible(format!(
                            "section header block has byte-order magic {magic:#010x}"
                        ));
                    }
                }
                _ => return Framing::Incomplete,
            }
        }
        let read = |b: [u8; 4]| {
            if big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let block_type = read([t0, t1, t2, t3]);
        let block_len = read([l0, l1, l2, l3]) as usize;
        if block_len < MIN_BLOCK_LEN {
            return Framing::Impossible(format!(
                "block length {block_len} is less than the minimum of {MIN_BLOCK_LEN}"
            ));
        }
        if !block_len.is_multiple_of(4) {
            return Framing::Impossible(format!("block length {block_len} is not a multiple of 4"));
        }
        let Some(&[e0, e1, e2, e3]) = block_len
            .checked_sub(4)
            .and_then(|start| self.rest.get(start..block_len))
        else {
            return Framing::Incomplete;
        };
        let trailing = read([e0, e1, e2, e3]) as usize;
        if trailing != block_len {
            return Framing::Impossible(format!(
                "block length {block_len} does not match its trailing copy {trailing}"
            ));
        }
        Framing::Complete {
            block_type,
            block_len,
        }
    }
}

/// The framing of a block, checked before its body is read, to tell a cut
/// file from a corrupt one.
enum Framing {
    /// The block runs past the end of the file.
    Incomplete,
    /// Lengths that no block can have.
    Impossible(String),
    /// The block is whole.
    Complete { block_type: u32, block_len: usize },
}

/// Block types (the same numbers in both byte orders for the section header).
const SECTION_HEADER_BLOCK: u32 = 0x0a0d_0d0a;
const INTERFACE_DESCRIPTION_BLOCK: u32 = 1;
const PACKET_BLOCK: u32 = 2;
const SIMPLE_PACKET_BLOCK: u32 = 3;
const ENHANCED_PACKET_BLOCK: u32 = 6;
/// The option code that ends an option list, when the writer puts it there.
const OPT_ENDOFOPT: u16 = 0;

const CUT_FIELD: &str = "a field runs past the end of the block";

fn block_name(block_type: u32) -> &'static str {
    match block_type {
        SECTION_HEADER_BLOCK => "section header",
        INTERFACE_DESCRIPTION_BLOCK => "interface description",
        ENHANCED_PACKET_BLOCK => "enhanced packet",
        SIMPLE_PACKET_BLOCK => "simple packet",
        PACKET_BLOCK => "packet",
        _ => "unknown",
    }
}

/// A block whose body does not hold what its type requires.
#[cold]
fn body_error<'a>(offset: u64, block_type: u32, detail: &str) -> Step<'a> {
    Step::Corrupt(Corrupt::new(
        offset,
        format!(
            "{} block body does not parse: {detail}",
            block_name(block_type)
        ),
    ))
}

/// Length of a frame's data, which a pcapng block bounds far below u32::MAX.
fn len_u32(data: &[u8]) -> u32 {
    u32::try_from(data.len()).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use pcap_file::DataLink;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };

    use super::super::testutil::*;
    use super::super::{CaptureError, CaptureFile, CaptureFormat, Truncation};
    use super::*;

    const ETHERNET: u16 = 1;
    const RAW: u16 = 101;
    const NULL: u16 = 0;
    const SEC: u64 = 1_000_000_000;
    /// Length of a section header block without options, as the builder writes it.
    const SHB_LEN: u64 = 28;
    /// Length of an interface description block without options.
    const IDB_LEN: u64 = 20;

    fn corrupt(all: &ReadAll) -> (u64, String) {
        match &all.error {
            Some(CaptureError::Corrupt { offset, detail, .. }) => (*offset, detail.clone()),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn interfaces_keep_their_link_types_and_timestamp_resolutions() {
        let file = PcapNg::new(false);
        let one_hour = file.u64_value(3600);
        let minus_ten = file.u64_value((-10i64) as u64);
        let bytes = file
            .idb(ETHERNET, 0, &[]) // 0: microseconds by default
            .idb(RAW, 0, &[(IF_TSRESOL, &[9]), (IF_TSOFFSET, &one_hour)]) // 1: ns, +1 h
            .idb(NULL, 0, &[(IF_TSRESOL, &[0x80 | 20])]) // 2: 2^-20 s
            .idb(
                ETHERNET,
                0,
                &[(IF_TSRESOL, &[3]), (IF_TSOFFSET, &minus_ten)],
            ) // 3: ms, -10 s
            .epb(0, 1_700_000_000_123_456, b"zero")
            .epb(1, 5 * SEC + 7, b"one")
            .epb(2, (3 << 20) | (1 << 19), b"two")
            .epb(2, 1, b"two again")
            .epb(3, 20_500, b"three")
            .epb(3, 5_000, b"before the epoch")
            .bytes;
        let (_f, capture) = open_bytes(&bytes);
        let capture = capture.unwrap();
        assert_eq!(capture.format(), CaptureFormat::PcapNg);
        let all = read_all(&capture);
        assert!(all.error.is_none() && all.truncation.is_none(), "{all:?}");
        let got: Vec<(u64, u32, &[u8])> = all
            .frames
            .iter()
            .map(|f| (f.ts_ns, f.link, f.data.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (1_700_000_000_123_456_000, 1, &b"zero"[..]),
                (3605 * SEC + 7, 101, b"one"),
                (3_500_000_000, 0, b"two"),
                (953, 0, b"two again"), // 1e9 / 2^20, rounded down
                (10_500_000_000, 1, b"three"),
                (0, 1, b"before the epoch"), // saturates at 0
            ]
        );
        assert_eq!(all.frames[0].orig_len, 4);
    }

    #[test]
    fn a_new_section_resets_the_interfaces_and_may_change_byte_order() {
        let first = PcapNg::new(false)
            .idb(ETHERNET, 0, &[])
            .idb(NULL, 0, &[])
            .epb(1, 1, b"le");
        let second_section_at = first.bytes.len() as u64;
        let second = first
            .section(true)
            .idb(RAW, 0, &[(IF_TSRESOL, &[9])])
            .epb(0, 2, b"be");
        let stale_epb_at = second.bytes.len() as u64;
        // Interface 1 existed in the first section only.
        let bytes = second.epb(1, 3, b"stale").bytes;
        let all = read_bytes(&bytes);
        assert_eq!(all.frames.len(), 2);
        assert_eq!((all.frames[0].link, all.frames[0].ts_ns), (0, 1000));
        assert_eq!((all.frames[1].link, all.frames[1].ts_ns), (101, 2));
        let (offset, detail) = corrupt(&all);
        assert_eq!(offset, stale_epb_at);
        assert!(
            detail.contains("interface 1") && detail.contains("describes 1"),
            "{detail}"
        );
        assert!(second_section_at < stale_epb_at);
    }

    #[test]
    fn simple_packet_blocks_use_interface_zero_and_the_previous_timestamp() {
        let bytes = PcapNg::new(false)
            .idb(RAW, 0, &[])
            .idb(ETHERNET, 0, &[])
            .spb(5, b"first") // padded to 8 bytes in the block
            .epb(1, 77, b"epb")
            .spb(3, b"abc")
            .bytes;
        let all = read_bytes(&bytes);
        assert!(all.error.is_none(), "{all:?}");
        let got: Vec<(u64, u32, u32, &[u8])> = all
            .frames
            .iter()
            .map(|f| (f.ts_ns, f.link, f.orig_len, f.data.as_slice()))
            .collect();
        assert_eq!(
            got,
            [
                (0, 101, 5, &b"first"[..]),
                (77_000, 1, 3, b"epb"),
                (77_000, 101, 3, b"abc"),
            ]
        );

        // The interface's snap length cuts the data; the wire length stays.
        let all = read_bytes(
            &PcapNg::new(true)
                .idb(ETHERNET, 4, &[])
                .spb(6, b"abcdef")
                .bytes,
        );
        assert_eq!(
            (all.frames[0].orig_len, all.frames[0].data.as_slice()),
            (6, &b"abcd"[..])
        );

        // No interface 0 to belong to.
        let all = read_bytes(&PcapNg::new(false).spb(3, b"abc").bytes);
        assert_eq!(corrupt(&all).0, SHB_LEN);
    }

    #[test]
    fn obsolete_packet_blocks_are_read() {
        let bytes = PcapNg::new(true)
            .idb(ETHERNET, 0, &[])
            .idb(RAW, 0, &[(IF_TSRESOL, &[9])])
            .pb(1, 12_345, b"old")
            .bytes;
        let all = read_bytes(&bytes);
        assert_eq!(all.frames.len(), 1);
        assert_eq!((all.frames[0].ts_ns, all.frames[0].link), (12_345, 101));
        assert_eq!(all.frames[0].data, b"old");
    }

    #[test]
    fn other_blocks_are_skipped() {
        let bytes = PcapNg::new(false)
            .idb(ETHERNET, 0, &[(OPT_COMMENT, b"eth0")])
            .block(0x0bad_c0de, b"whatever this is")
            // A name resolution block: one IPv4 record, then the end record.
            .block(NRB, &[1, 0, 6, 0, 10, 0, 0, 1, b'a', 0, 0, 0, 0, 0, 0, 0])
            // Its name is not UTF-8: such a block is skipped all the same.
            .block(NRB, &[1, 0, 6, 0, 10, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0])
            .epb(0, 1, b"after")
            .bytes;
        let all = read_bytes(&bytes);
        assert!(all.error.is_none(), "{all:?}");
        assert_eq!(all.frames.len(), 1);
        assert_eq!(all.frames[0].data, b"after");
    }

    /// Options as many writers lay them out: without `opt_endofopt`, the
    /// last one unpadded, bytes too few for another option after them.
    /// libpcap (tcpdump), tshark and capinfos read the first four, and
    /// libpcap the fifth (checked 2026-12-07 with libpcap 1.10.3 and
    /// Wireshark 4.0.17).
    #[test]
    fn option_lists_without_their_end_marker_are_read() {
        let file = PcapNg::new(false);
        let nine = [9u8];
        let epb_flags = 1u32.to_le_bytes();
        let option = |code: u16, value: &[u8]| {
            let mut out = code.to_le_bytes().to_vec();
            out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            out.extend_from_slice(value);
            out
        };
        let shb_body = |options: &[u8]| {
            let mut body = 0x1a2b_3c4du32.to_le_bytes().to_vec();
            body.extend_from_slice(&[1, 0, 0, 0]);
            body.extend_from_slice(&u64::MAX.to_le_bytes());
            body.extend_from_slice(options);
            body
        };
        let idb_body = |options: &[u8]| {
            let mut body = vec![1, 0, 0, 0];
            body.extend_from_slice(&0u32.to_le_bytes());
            body.extend_from_slice(options);
            body
        };
        let epb_with = |options: &[u8]| {
            let mut body = file.epb_body(0, 2_000, 4, b"ping");
            body.extend_from_slice(options);
            body
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "section options without the end marker",
                PcapNg::empty(false)
                    .block(
                        SHB,
                        &shb_body(&[option(4, b"dumpcap").as_slice(), &[0]].concat()),
                    )
                    .idb(ETHERNET, 0, &[(IF_TSRESOL, &nine)])
                    .block(EPB, &epb_with(&[]))
                    .bytes,
            ),
            (
                "interface options without the end marker",
                PcapNg::new(false)
                    .block(
                        IDB,
                        &idb_body(&[option(IF_TSRESOL, &nine), vec![0; 3]].concat()),
                    )
                    .block(EPB, &epb_with(&[]))
                    .bytes,
            ),
            (
                "the last option unpadded, a short tail after it",
                PcapNg::new(false)
                    .block(
                        IDB,
                        &idb_body(
                            &[option(OPT_COMMENT, b"eth0"), option(IF_TSRESOL, &nine)].concat(),
                        ),
                    )
                    .block(EPB, &epb_with(&[1, 0]))
                    .bytes,
            ),
            (
                "packet options without the end marker, and text that is not UTF-8",
                PcapNg::new(false)
                    .idb(
                        ETHERNET,
                        0,
                        &[(OPT_COMMENT, &[0xff, 0xfe]), (IF_TSRESOL, &nine)],
                    )
                    .block(
                        EPB,
                        &epb_with(&[option(2, &epb_flags), option(OPT_COMMENT, &[0xff])].concat()),
                    )
                    .bytes,
            ),
            (
                "a packet option longer than its block, which libpcap never reads",
                PcapNg::new(false)
                    .idb(ETHERNET, 0, &[(IF_TSRESOL, &nine)])
                    .block(EPB, &epb_with(&[1, 0, 40, 0, b'a', b'b', b'c', b'd']))
                    .bytes,
            ),
        ];
        for (what, bytes) in cases {
            let all = read_bytes(&bytes);
            assert!(
                all.error.is_none() && all.truncation.is_none(),
                "{what}: {all:?}"
            );
            assert_eq!(all.frames.len(), 1, "{what}");
            assert_eq!(all.frames[0].data, b"ping", "{what}");
            // 2,000 units of 10^-9 s: the resolution was applied.
            assert_eq!(all.frames[0].ts_ns, 2_000, "{what}");
        }
    }

    #[test]
    fn an_interface_option_longer_than_its_block_is_corrupt() {
        let file = PcapNg::new(false);
        let at = file.bytes.len() as u64;
        let mut body = vec![1, 0, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&[9, 0, 40, 0, 6, 0, 0, 0]);
        let all = read_bytes(&file.block(IDB, &body).epb(0, 1, b"x").bytes);
        let (offset, detail) = corrupt(&all);
        assert_eq!(offset, at);
        assert_eq!(
            detail,
            "interface description block body does not parse: option 9 of length 40 runs past the end of the block"
        );
        // Cut before the snap length.
        let all = read_bytes(&PcapNg::new(false).block(IDB, &[1, 0, 0, 0]).bytes);
        assert_eq!(corrupt(&all).0, at);
    }

    fn three_packets() -> (Vec<u8>, u64) {
        let two = PcapNg::new(false)
            .idb(ETHERNET, 0, &[])
            .epb(0, 1, b"one")
            .epb(0, 2, b"two");
        let last_at = two.bytes.len() as u64;
        (two.epb(0, 3, b"three").bytes, last_at)
    }

    #[test]
    fn file_cut_inside_the_last_block_is_a_truncation() {
        let (whole, last_at) = three_packets();
        let last_len = whole.len() - last_at as usize;
        // Inside the data, inside the trailing length, inside the block
        // header (6 of 8 bytes), right after the block header.
        for cut in [last_len - 6, last_len - 2, 6, 8, 11] {
            let all = read_bytes(&whole[..last_at as usize + cut]);
            assert!(all.error.is_none(), "cut {cut}: {all:?}");
            assert_eq!(all.frames.len(), 2, "cut {cut}");
            assert_eq!(
                all.truncation,
                Some(Truncation {
                    offset: last_at,
                    frames_before: 2
                }),
                "cut {cut}"
            );
        }
        let all = read_bytes(&whole);
        assert_eq!((all.frames.len(), all.truncation), (3, None));
    }

    #[test]
    fn impossible_block_lengths_are_corrupt() {
        let base = || PcapNg::new(false).idb(ETHERNET, 0, &[]).epb(0, 1, b"ok");
        let at = base().bytes.len() as u64;
        let cases = [
            (
                base().raw_block(EPB, 8, &[], 8).epb(0, 2, b"x"),
                "less than the minimum",
            ),
            (
                base().raw_block(EPB, 30, &[0; 20], 30).epb(0, 2, b"x"),
                "not a multiple of 4",
            ),
            (
                base().raw_block(EPB, 32, &[0; 20], 36).epb(0, 2, b"x"),
                "does not match its trailing",
            ),
        ];
        for (file, expected) in cases {
            let all = read_bytes(&file.bytes);
            assert_eq!(all.frames.len(), 1);
            assert_eq!(all.truncation, None);
            let (offset, detail) = corrupt(&all);
            assert_eq!(offset, at, "{detail}");
            assert!(detail.contains(expected), "{detail}");
        }
    }

    #[test]
    fn packet_block_body_that_does_not_parse_is_corrupt() {
        let file = PcapNg::new(false).idb(ETHERNET, 0, &[]);
        let at = file.bytes.len() as u64;
        // Captured length 200 in a block with 4 bytes of data.
        let mut body = file.epb_body(0, 1, 4, b"abcd");
        body[12..16].copy_from_slice(&200u32.to_le_bytes());
        let all = read_bytes(&file.block(EPB, &body).epb(0, 2, b"next").bytes);
        assert!(all.frames.is_empty());
        let (offset, detail) = corrupt(&all);
        assert_eq!(offset, at);
        assert!(
            detail.starts_with("enhanced packet block body does not parse"),
            "{detail}"
        );

        // A section header block with a byte-order magic that is neither.
        let mut bytes = PcapNg::new(false).idb(ETHERNET, 0, &[]).bytes;
        let second_at = bytes.len() as u64;
        bytes.extend(PcapNg::new(false).bytes);
        bytes[second_at as usize + 8..second_at as usize + 12].copy_from_slice(b"junk");
        let (offset, detail) = corrupt(&read_bytes(&bytes));
        assert_eq!(offset, second_at);
        assert!(detail.contains("byte-order magic"), "{detail}");
    }

    #[test]
    fn packet_naming_an_undescribed_interface_is_corrupt() {
        let all = read_bytes(&PcapNg::new(false).epb(0, 1, b"who").bytes);
        let (offset, detail) = corrupt(&all);
        assert_eq!(offset, SHB_LEN);
        assert!(detail.contains("describes 0 interface(s)"), "{detail}");
        let all = read_bytes(
            &PcapNg::new(true)
                .idb(ETHERNET, 0, &[])
                .epb(7, 1, b"who")
                .bytes,
        );
        assert_eq!(corrupt(&all).0, SHB_LEN + IDB_LEN);
    }

    #[test]
    fn bad_first_section_header_fails_at_open() {
        let whole = PcapNg::new(false).bytes;
        for (bytes, expected) in [
            (
                whole[..20].to_vec(),
                "file ends inside the first pcapng section header block",
            ),
            (
                [&whole[..8], b"junk", &whole[12..]].concat(),
                "bad pcapng section header block",
            ),
        ] {
            let (_f, result) = open_bytes(&bytes);
            match result {
                Err(CaptureError::Corrupt {
                    offset: 0, detail, ..
                }) => {
                    assert!(detail.starts_with(expected), "{detail}")
                }
                other => panic!("expected Corrupt, got {other:?}"),
            }
        }
        // A section with no blocks after it is an empty capture.
        let all = read_bytes(&whole);
        assert!(all.frames.is_empty() && all.error.is_none() && all.truncation.is_none());
    }

    /// pcap-file's writer, an independent encoder: its raw timestamps come
    /// back through `if_tsresol`.
    #[test]
    fn reads_what_pcap_file_writes() {
        let mut writer = PcapNgWriter::new(Vec::new()).unwrap();
        let mut idb = InterfaceDescriptionBlock::new(DataLink::IPV4, 0);
        idb.options.push(InterfaceDescriptionOption::IfTsResol(9));
        writer.write_pcapng_block(idb).unwrap();
        let data = [0x45u8; 28];
        writer
            .write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::new(1_700_000_000, 5),
                original_len: 1500,
                data: Cow::Borrowed(&data),
                options: vec![],
            })
            .unwrap();
        let capture = CaptureFile::from_bytes("mem", writer.into_inner()).unwrap();
        let frames: Vec<_> = capture.reader().map(Result::unwrap).collect();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].ts_ns, 1_700_000_000 * SEC + 5);
        assert_eq!(
            (frames[0].link, frames[0].orig_len, frames[0].data),
            (LinkType::IPV4, 1500, &data[..])
        );
    }

    #[test]
    fn timestamp_scales() {
        assert_eq!(Scale::from_tsresol(6), Scale::Mul(1000));
        assert_eq!(Scale::from_tsresol(9), Scale::Mul(1));
        assert_eq!(Scale::from_tsresol(0), Scale::Mul(SEC));
        assert_eq!(Scale::from_tsresol(12), Scale::Div(1000));
        assert_eq!(Scale::from_tsresol(28), Scale::Div(10u64.pow(19)));
        assert_eq!(Scale::from_tsresol(29), Scale::Zero);
        assert_eq!(Scale::from_tsresol(127), Scale::Zero);
        assert_eq!(Scale::from_tsresol(0x80), Scale::Shift(0));
        assert_eq!(Scale::from_tsresol(0xff), Scale::Shift(127));

        assert_eq!(Scale::Mul(SEC).to_ns(u64::MAX), u64::MAX);
        assert_eq!(Scale::Div(1000).to_ns(1_999), 1);
        assert_eq!(Scale::Shift(0).to_ns(u64::MAX), u64::MAX);
        assert_eq!(Scale::Shift(10).to_ns(1024), SEC);
        assert_eq!(Scale::Shift(127).to_ns(u64::MAX), 0);
        assert_eq!(Scale::Zero.to_ns(u64::MAX), 0);

        let interface = |scale, offset_ns| Interface {
            link: LinkType::ETHERNET,
            snaplen: 0,
            scale,
            offset_ns,
        };
        assert_eq!(
            interface(Scale::Mul(1), i128::from(i64::MAX) * 1_000_000_000).ts_ns(1),
            u64::MAX
        );
        assert_eq!(
            interface(Scale::Mul(1), i128::from(i64::MIN) * 1_000_000_000).ts_ns(u64::MAX),
            0
        );
        assert_eq!(interface(Scale::Mul(1000), -1_000).ts_ns(2), 1_000);
    }
}
