//! pcapng files: blocks, read with pcap-file's `PcapNgParser`, which follows
//! the sections (and their byte order) and parses every block.
//!
//! This module adds what pcap-file leaves out: it keeps each interface's link
//! type and timestamp resolution (`if_tsresol`, `if_tsoffset`) and applies
//! them, since pcap-file 2.0.0 reads an enhanced packet block's 64-bit
//! timestamp as nanoseconds whatever the interface says; and it tells a file
//! cut inside its last block from a corrupt one.
//!
//! Cost: about 57 ns per enhanced packet block (2 M blocks of 60-100 bytes,
//! release build, this 2-core machine), of which about 43 ns is pcap-file's
//! `next_block` itself, mostly moving its large `Block` result. Classic pcap
//! costs under 5 ns per record. Should pcapng replay speed matter, the place
//! to win it is reading the enhanced packet block's fixed 20-byte header by
//! hand, as `pcap` does for its records, and leaving the other blocks to
//! pcap-file.

use std::borrow::Cow;

use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::{
    ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, PACKET_BLOCK, SECTION_HEADER_BLOCK,
    SIMPLE_PACKET_BLOCK,
};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{Endianness, PcapError};

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
    fn new(idb: &InterfaceDescriptionBlock<'_>) -> Interface {
        let mut tsresol = None;
        let mut tsoffset = None;
        for option in &idb.options {
            match *option {
                InterfaceDescriptionOption::IfTsResol(r) => {
                    tsresol.get_or_insert(r);
                }
                InterfaceDescriptionOption::IfTsOffset(o) => {
                    // The option is a signed 64-bit count of seconds; pcap-file
                    // hands over its bits as a u64.
                    tsoffset.get_or_insert(i64::from_ne_bytes(o.to_ne_bytes()));
                }
                _ => {}
            }
        }
        Interface {
            link: LinkType(u32::from(idb.linktype)),
            snaplen: idb.snaplen,
            scale: Scale::from_tsresol(tsresol.unwrap_or(DEFAULT_TSRESOL)),
            offset_ns: i128::from(tsoffset.unwrap_or(0)) * i128::from(NANOS_PER_SEC),
        }
    }

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
    parser: PcapNgParser,
    /// The blocks not yet read.
    rest: &'a [u8],
    /// Length of the whole file, to turn `rest` into an offset.
    file_len: usize,
    /// The interfaces of the current section, in order of description.
    interfaces: Vec<Interface>,
    /// Timestamp of the previous frame, for simple packet blocks (which have
    /// none).
    last_ts_ns: u64,
}

impl<'a> Records<'a> {
    /// Parses the first section header block of `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Result<Records<'a>, Corrupt> {
        match PcapNgParser::new(bytes) {
            Ok((rest, parser)) => Ok(Records {
                parser,
                rest,
                file_len: bytes.len(),
                interfaces: Vec::new(),
                last_ts_ns: 0,
            }),
            Err(PcapError::IncompleteBuffer) => Err(Corrupt::new(
                0,
                format!(
                    "file ends inside the first pcapng section header block, after {} bytes",
                    bytes.len()
                ),
            )),
            Err(e) => Err(Corrupt::new(
                0,
                format!("bad pcapng section header block: {}", lower(&e)),
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
            // Matched in place: binding the whole result first costs a copy
            // of pcap-file's large `Block` per packet.
            match self.parser.next_block(self.rest) {
                Ok((rest, Block::EnhancedPacket(epb))) => {
                    self.rest = rest;
                    // pcap-file made a Duration of nanoseconds out of the raw
                    // u64, so as_nanos gives the raw count back, losslessly.
                    let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                    return self.packet(
                        offset,
                        "enhanced",
                        epb.interface_id,
                        raw,
                        epb.original_len,
                        epb.data,
                    );
                }
                Ok((rest, block)) => {
                    self.rest = rest;
                    match block {
                        Block::SectionHeader(_) => self.interfaces.clear(),
                        Block::InterfaceDescription(idb) => {
                            self.interfaces.push(Interface::new(&idb))
                        }
                        Block::Packet(pb) => {
                            return self.packet(
                                offset,
                                "packet",
                                u32::from(pb.interface_id),
                                pb.timestamp,
                                pb.original_len,
                                pb.data,
                            );
                        }
                        Block::SimplePacket(spb) => {
                            return self.simple_packet(offset, spb.original_len, spb.data);
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    if let Some(step) = self.block_error(offset, e) {
                        return step;
                    }
                }
            }
        }
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
        data: Cow<'a, [u8]>,
    ) -> Step<'a> {
        let Some(interface) = self.interfaces.get(interface_id as usize) else {
            return self.unknown_interface(offset, kind, interface_id);
        };
        let Cow::Borrowed(data) = data else {
            return owned_data(offset);
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
    fn simple_packet(&mut self, offset: u64, original_len: u32, data: Cow<'a, [u8]>) -> Step<'a> {
        let Some(interface) = self.interfaces.first() else {
            return self.unknown_interface(offset, "simple packet", 0);
        };
        let Cow::Borrowed(mut data) = data else {
            return owned_data(offset);
        };
        let mut captured = original_len as usize;
        if interface.snaplen != 0 {
            captured = captured.min(interface.snaplen as usize);
        }
        if let Some(cut) = data.get(..captured) {
            data = cut;
        }
        Step::Frame(Frame {
            vlan: None,
            ts_ns: self.last_ts_ns,
            orig_len: original_len.max(len_u32(data)),
            link: interface.link,
            data,
        })
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

    /// Decides what an error of `next_block` at `offset` means: `Some` step
    /// to report, or `None` when the block was skipped and reading goes on.
    #[cold]
    fn block_error(&mut self, offset: u64, error: PcapError) -> Option<Step<'a>> {
        let framing = self.framing();
        match framing {
            // The block's length field, or the block it announces, runs past
            // the end of the file: the file was cut inside its last block.
            Framing::Incomplete => Some(Step::Truncated(offset)),
            Framing::Complete {
                block_type,
                block_len,
            } => match block_type {
                // These carry frames or the state frames depend on: a body
                // that does not parse is corruption.
                SECTION_HEADER_BLOCK
                | INTERFACE_DESCRIPTION_BLOCK
                | ENHANCED_PACKET_BLOCK
                | SIMPLE_PACKET_BLOCK
                | PACKET_BLOCK => Some(Step::Corrupt(Corrupt::new(
                    offset,
                    format!(
                        "{} block body does not parse: {}",
                        block_name(block_type),
                        body_error(&error)
                    ),
                ))),
                // Any other block (name resolution, interface statistics,
                // journal export) is skipped anyway; one whose body pcap-file
                // cannot parse (say, a name that is not UTF-8) is skipped too,
                // as Wireshark and tcpdump would read the file.
                _ => match self.rest.get(block_len..) {
                    Some(rest) => {
                        self.rest = rest;
                        None
                    }
                    None => Some(Step::Truncated(offset)),
                },
            },
            // A length field that no block can have.
            Framing::Impossible(detail) => Some(Step::Corrupt(Corrupt::new(offset, detail))),
        }
    }

    /// Checks the framing of the block at the start of `rest`: its type and
    /// lengths, not its body.
    fn framing(&self) -> Framing {
        let Some(&[t0, t1, t2, t3, l0, l1, l2, l3]) = self.rest.first_chunk::<8>() else {
            return Framing::Incomplete;
        };
        let mut big_endian = self.parser.section().endianness == Endianness::Big;
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

/// The framing of a block, checked by hand when pcap-file reports an error, to
/// tell a cut file from a corrupt one.
enum Framing {
    /// The block runs past the end of the file.
    Incomplete,
    /// Lengths that no block can have.
    Impossible(String),
    /// The block is whole; its body is what failed.
    Complete { block_type: u32, block_len: usize },
}

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

/// The error of a block body that does not parse, as one lowercase phrase.
fn body_error(error: &PcapError) -> String {
    match error {
        // pcap-file says this when a field inside the body is cut short.
        PcapError::IncompleteBuffer => "a field runs past the end of the block".into(),
        other => lower(other),
    }
}

/// pcap-file's error messages start with a capital letter; ours don't.
fn lower(error: &PcapError) -> String {
    let message = error.to_string();
    let mut chars = message.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => message,
    }
}

/// Length of a frame's data, which a pcapng block bounds far below u32::MAX.
fn len_u32(data: &[u8]) -> u32 {
    u32::try_from(data.len()).unwrap_or(u32::MAX)
}

/// pcap-file always borrows when parsing a slice; should that change, report
/// it rather than copy or panic.
#[cold]
fn owned_data<'a>(offset: u64) -> Step<'a> {
    Step::Corrupt(Corrupt::new(
        offset,
        "pcap-file returned a copy of the packet data",
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use pcap_file::DataLink;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;

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
            // Its name is not UTF-8: pcap-file rejects it, Wireshark does not.
            .block(NRB, &[1, 0, 6, 0, 10, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0])
            .epb(0, 1, b"after")
            .bytes;
        let all = read_bytes(&bytes);
        assert!(all.error.is_none(), "{all:?}");
        assert_eq!(all.frames.len(), 1);
        assert_eq!(all.frames[0].data, b"after");
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
