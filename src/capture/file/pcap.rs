//! Classic libpcap files: a 24-byte file header, then records of a 16-byte
//! header and the captured bytes.
//!
//! The file header is read with pcap-file. The 16-byte record header is read
//! by hand: this loop is the first stage of a replay pipeline that aims at
//! millions of packets per second, and iterating 2 M records of 60-100 bytes
//! in memory (release build, this 2-core machine) took about 4.6 ns per record
//! this way against 4.8-5.8 ns with pcap-file's `PcapParser::next_raw_packet`,
//! whose result carries a `Cow` and goes through a generic byte-order reader.
//! The gain is small (both are close to the speed of streaming the bytes from
//! memory), but reading the header by hand also lets `incl_len` be checked
//! before a short record is taken for a truncation, which pcap-file's
//! `IncompleteBuffer` would hide. The header is four `u32`s;
//! `hand_read_headers_agree_with_pcap_file` checks that both readers agree.
//!
//! End-to-end gain (callgrind, 2026-12-07, `benches/twins.rs`, the
//! generated 200,000-packet hospital capture): 67 instructions a record
//! fewer than pcap-file's `PcapReader` (13.4 million), 9.8% of the plain
//! replay's 136.8 million.

use pcap_file::PcapError;
use pcap_file::pcap::PcapHeader;

use super::Step;
use crate::capture::Frame;
use crate::wire::LinkType;

/// Length of the pcap file header.
pub(super) const FILE_HEADER_LEN: usize = 24;
/// Length of a record header: ts_sec, ts_frac, incl_len, orig_len.
pub(super) const RECORD_HEADER_LEN: usize = 16;
/// The largest captured length libpcap accepts in a record (its
/// MAXIMUM_SNAPLEN); anything above is a corrupt record header.
pub(super) const MAXIMUM_SNAPLEN: u32 = 262_144;
/// The link type proper is the low 16 bits of the header's link-type field;
/// the high bits may carry FCS information (libpcap's LT_LINKTYPE).
const LINKTYPE_MASK: u32 = 0xffff;

/// Reads the file header and returns the link type of every record. The magic
/// number has been recognised already.
pub(super) fn read_header(bytes: &[u8]) -> Result<LinkType, String> {
    match PcapHeader::from_slice(bytes) {
        Ok((_, header)) => Ok(LinkType(u32::from(header.datalink) & LINKTYPE_MASK)),
        Err(PcapError::IncompleteBuffer) => Err(format!(
            "file ends inside the {FILE_HEADER_LEN}-byte pcap file header, after {} bytes",
            bytes.len()
        )),
        Err(e) => Err(format!("bad pcap file header: {e}")),
    }
}

/// Walks the records of a classic pcap file.
pub(super) struct Records<'a> {
    /// The records not yet read.
    rest: &'a [u8],
    /// Length of the whole file, to turn `rest` into an offset.
    file_len: usize,
    /// Nanoseconds per unit of `ts_frac`: 1000 (microsecond files) or 1.
    ns_per_frac: u64,
    big_endian: bool,
    link: LinkType,
}

/// The 32-bit word at `at` of a record header, in the file's byte order.
#[inline(always)]
fn u32_at<const BIG_ENDIAN: bool>(header: &[u8; RECORD_HEADER_LEN], at: usize) -> u32 {
    let word = [header[at], header[at + 1], header[at + 2], header[at + 3]];
    if BIG_ENDIAN {
        u32::from_be_bytes(word)
    } else {
        u32::from_le_bytes(word)
    }
}

impl<'a> Records<'a> {
    /// Starts after the file header of `bytes`, which `read_header` accepted.
    pub(super) fn new(bytes: &'a [u8], nanosecond: bool, big_endian: bool, link: LinkType) -> Self {
        Records {
            rest: bytes.get(FILE_HEADER_LEN..).unwrap_or_default(),
            file_len: bytes.len(),
            ns_per_frac: if nanosecond { 1 } else { 1000 },
            big_endian,
            link,
        }
    }

    /// Byte offset of the next record.
    pub(super) fn position(&self) -> u64 {
        (self.file_len - self.rest.len()) as u64
    }

    /// The next record.
    #[inline]
    pub(super) fn next(&mut self) -> Step<'a> {
        if self.big_endian {
            self.step::<true>()
        } else {
            self.step::<false>()
        }
    }

    /// Appends records' frames to `batch` until it holds `max` of them
    /// (`None`) or something other than a frame comes (`Some` of it): the
    /// same frames as [`Records::next`], with the byte order decided once a
    /// batch rather than at every record.
    pub(super) fn fill(&mut self, batch: &mut Vec<Frame<'a>>, max: usize) -> Option<Step<'a>> {
        if self.big_endian {
            self.fill_in::<true>(batch, max)
        } else {
            self.fill_in::<false>(batch, max)
        }
    }

    #[inline(always)]
    fn fill_in<const BIG_ENDIAN: bool>(
        &mut self,
        batch: &mut Vec<Frame<'a>>,
        max: usize,
    ) -> Option<Step<'a>> {
        while batch.len() < max {
            match self.frame::<BIG_ENDIAN>() {
                Some(frame) => batch.push(frame),
                None => return Some(self.not_a_frame::<BIG_ENDIAN>()),
            }
        }
        None
    }

    #[inline(always)]
    fn step<const BIG_ENDIAN: bool>(&mut self) -> Step<'a> {
        match self.frame::<BIG_ENDIAN>() {
            Some(frame) => Step::Frame(frame),
            None => self.not_a_frame::<BIG_ENDIAN>(),
        }
    }

    /// The next record's frame, when it is a whole, valid record; `None`
    /// otherwise, without moving (see [`Records::not_a_frame`]).
    #[inline(always)]
    fn frame<const BIG_ENDIAN: bool>(&mut self) -> Option<Frame<'a>> {
        let (header, after) = self.rest.split_first_chunk::<RECORD_HEADER_LEN>()?;
        let incl_len = u32_at::<BIG_ENDIAN>(header, 8);
        if incl_len > MAXIMUM_SNAPLEN {
            return None;
        }
        let (data, rest) = after.split_at_checked(incl_len as usize)?;
        self.rest = rest;
        // A fraction of a second of 1e6 us (1e9 ns) or more is carried into
        // the seconds, as libpcap and tcpdump accept such files; summing the
        // two in nanoseconds does exactly that. It cannot overflow:
        // (2^32 - 1) * 1e9 + (2^32 - 1) * 1000 < 2^63.
        let ts_ns = u64::from(u32_at::<BIG_ENDIAN>(header, 0)) * 1_000_000_000
            + u64::from(u32_at::<BIG_ENDIAN>(header, 4)) * self.ns_per_frac;
        Some(Frame {
            vlan: None,
            ts_ns,
            // incl_len > orig_len is tolerated: the wire length is at least
            // what was captured.
            orig_len: u32_at::<BIG_ENDIAN>(header, 12).max(incl_len),
            link: self.link,
            data,
        })
    }

    /// Why [`Records::frame`] found no frame: the end, a record cut by the
    /// end of the file, or a corrupt length.
    #[cold]
    fn not_a_frame<const BIG_ENDIAN: bool>(&self) -> Step<'a> {
        match self.rest.first_chunk::<RECORD_HEADER_LEN>() {
            None if self.rest.is_empty() => Step::End,
            None => Step::Truncated(self.position()),
            Some(header) => {
                let incl_len = u32_at::<BIG_ENDIAN>(header, 8);
                if incl_len > MAXIMUM_SNAPLEN {
                    self.bad_incl_len(incl_len)
                } else {
                    Step::Truncated(self.position())
                }
            }
        }
    }

    #[cold]
    fn bad_incl_len(&self, incl_len: u32) -> Step<'a> {
        Step::Corrupt(super::Corrupt::new(
            self.position(),
            format!(
                "record captured length {incl_len} is larger than the maximum snap length {MAXIMUM_SNAPLEN}"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::time::Duration;

    use pcap_file::pcap::{PcapPacket, PcapWriter};
    use pcap_file::{DataLink, Endianness, TsResolution};

    use super::super::testutil::*;
    use super::super::{CaptureError, CaptureFile, CaptureFormat, Truncation};
    use super::*;

    const ETHERNET: u32 = 1;
    /// Bytes before the second record of a file whose first record carries
    /// `n` bytes.
    fn second_record(n: usize) -> u64 {
        (FILE_HEADER_LEN + RECORD_HEADER_LEN + n) as u64
    }

    fn corrupt(all: &super::super::testutil::ReadAll) -> (u64, String) {
        match &all.error {
            Some(CaptureError::Corrupt { offset, detail, .. }) => (*offset, detail.clone()),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn microsecond_and_nanosecond_in_both_byte_orders() {
        for (magic, ns_per_frac) in [(MAGIC_MICROS, 1000), (MAGIC_NANOS, 1)] {
            for big_endian in [false, true] {
                let bytes = Pcap::new(magic, big_endian, ETHERNET)
                    .record(1_700_000_000, 123_456, &[0xaa; 60])
                    .raw_record(1_700_000_001, 7, 42, 1514, &[0xbb; 42])
                    .bytes;
                let (_f, capture) = open_bytes(&bytes);
                let capture = capture.unwrap();
                assert_eq!(
                    capture.format(),
                    CaptureFormat::Pcap {
                        nanosecond: magic == MAGIC_NANOS,
                        big_endian,
                        link: LinkType::ETHERNET
                    }
                );
                let all = read_all(&capture);
                assert!(all.error.is_none() && all.truncation.is_none());
                assert_eq!(all.frames.len(), 2);
                let (a, b) = (&all.frames[0], &all.frames[1]);
                assert_eq!(a.ts_ns, 1_700_000_000_000_000_000 + 123_456 * ns_per_frac);
                assert_eq!(
                    (a.orig_len, a.link, a.data.as_slice()),
                    (60, ETHERNET, &[0xaa; 60][..])
                );
                assert_eq!(b.ts_ns, 1_700_000_001_000_000_000 + 7 * ns_per_frac);
                // Cut by the snap length: the wire length is kept.
                assert_eq!((b.orig_len, b.data.len()), (1514, 42));
            }
        }
    }

    /// The same frames through pcap-file's writer, an independent encoder.
    #[test]
    fn reads_what_pcap_file_writes() {
        for (resolution, endianness) in [
            (TsResolution::MicroSecond, Endianness::Little),
            (TsResolution::NanoSecond, Endianness::Big),
        ] {
            let header = PcapHeader {
                datalink: DataLink::LINUX_SLL,
                ts_resolution: resolution,
                endianness,
                ..PcapHeader::default()
            };
            let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
            for i in 0..5u8 {
                let data = vec![i; 20 + usize::from(i)];
                let ts = Duration::new(
                    1_600_000_000 + u64::from(i),
                    250_000_000 + u32::from(i) * 1000,
                );
                writer
                    .write_packet(&PcapPacket::new(ts, 100, &data))
                    .unwrap();
            }
            let all = read_bytes(&writer.into_writer());
            assert_eq!(all.frames.len(), 5);
            for (i, frame) in all.frames.iter().enumerate() {
                assert_eq!(
                    frame.ts_ns,
                    (1_600_000_000 + i as u64) * 1_000_000_000 + 250_000_000 + i as u64 * 1000
                );
                assert_eq!(frame.link, LinkType::LINUX_SLL.0);
                assert_eq!(frame.orig_len, 100);
                assert_eq!(frame.data, vec![i as u8; 20 + i]);
            }
        }
    }

    #[test]
    fn fraction_out_of_range_is_carried_into_the_seconds() {
        let all = read_bytes(
            &Pcap::new(MAGIC_MICROS, false, ETHERNET)
                .record(10, 2_500_000, b"x")
                .record(u32::MAX, u32::MAX, b"y")
                .bytes,
        );
        assert_eq!(all.frames[0].ts_ns, 12_500_000_000);
        assert_eq!(
            all.frames[1].ts_ns,
            u64::from(u32::MAX) * 1_000_000_000 + u64::from(u32::MAX) * 1000
        );
        let all = read_bytes(
            &Pcap::new(MAGIC_NANOS, true, ETHERNET)
                .record(10, 1_000_000_001, b"x")
                .bytes,
        );
        assert_eq!(all.frames[0].ts_ns, 11_000_000_001);
    }

    #[test]
    fn captured_length_above_wire_length_is_tolerated() {
        let all = read_bytes(
            &Pcap::new(MAGIC_MICROS, false, ETHERNET)
                .raw_record(1, 0, 8, 3, b"12345678")
                .bytes,
        );
        assert_eq!((all.frames[0].orig_len, all.frames[0].data.len()), (8, 8));
    }

    #[test]
    fn captured_length_above_maximum_snaplen_is_corrupt() {
        let bytes = Pcap::new(MAGIC_MICROS, false, ETHERNET)
            .record(1, 0, b"ok")
            .raw_record(2, 0, MAXIMUM_SNAPLEN + 1, MAXIMUM_SNAPLEN + 1, &[0; 100])
            .bytes;
        let all = read_bytes(&bytes);
        assert_eq!(all.frames.len(), 1);
        assert_eq!(all.truncation, None);
        let (offset, detail) = corrupt(&all);
        assert_eq!(offset, second_record(2));
        assert!(detail.contains("262145"), "{detail}");

        // Exactly the maximum is fine.
        let data = vec![7; MAXIMUM_SNAPLEN as usize];
        let all = read_bytes(
            &Pcap::new(MAGIC_MICROS, true, ETHERNET)
                .record(1, 0, &data)
                .bytes,
        );
        assert_eq!(all.frames[0].data.len(), data.len());
    }

    #[test]
    fn file_cut_inside_the_last_record_data_is_a_truncation() {
        let mut bytes = Pcap::new(MAGIC_MICROS, false, ETHERNET)
            .record(1, 0, b"first")
            .record(2, 0, b"second")
            .record(3, 0, b"third")
            .bytes;
        bytes.truncate(bytes.len() - 2);
        let all = read_bytes(&bytes);
        assert!(all.error.is_none());
        assert_eq!(all.frames.len(), 2);
        assert_eq!(all.frames[1].data, b"second");
        let third = second_record(5) + (RECORD_HEADER_LEN + 6) as u64;
        assert_eq!(
            all.truncation,
            Some(Truncation {
                offset: third,
                frames_before: 2
            })
        );
    }

    #[test]
    fn file_cut_inside_the_last_record_header_is_a_truncation() {
        let mut bytes = Pcap::new(MAGIC_NANOS, true, ETHERNET)
            .record(1, 0, b"first")
            .bytes;
        let whole = bytes.len();
        bytes.extend_from_slice(&[0; 10]);
        let all = read_bytes(&bytes);
        assert_eq!(all.frames.len(), 1);
        assert_eq!(
            all.truncation,
            Some(Truncation {
                offset: whole as u64,
                frames_before: 1
            })
        );
    }

    #[test]
    fn header_only_file_has_no_frames() {
        let all = read_bytes(&Pcap::new(MAGIC_MICROS, false, ETHERNET).bytes);
        assert!(all.frames.is_empty() && all.error.is_none() && all.truncation.is_none());
    }

    #[test]
    fn file_shorter_than_its_header_is_corrupt() {
        let mut bytes = Pcap::new(MAGIC_MICROS, false, ETHERNET).bytes;
        bytes.truncate(10);
        let (_f, result) = open_bytes(&bytes);
        match result {
            Err(CaptureError::Corrupt {
                offset: 0, detail, ..
            }) => {
                assert!(detail.contains("24-byte pcap file header"), "{detail}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[test]
    fn fcs_bits_of_the_link_type_field_are_dropped() {
        // Bit 26 (FCS present) and an FCS length of 4 in bits 28-31.
        let capture = CaptureFile::from_bytes(
            "fcs",
            Pcap::new(MAGIC_MICROS, false, 0x4400_0000 | ETHERNET).bytes,
        )
        .unwrap();
        assert!(matches!(
            capture.format(),
            CaptureFormat::Pcap {
                link: LinkType::ETHERNET,
                ..
            }
        ));
    }

    /// pcap-file's raw records borrow; check that the hand-read header agrees
    /// with its parser on every record of a mixed file.
    #[test]
    fn hand_read_headers_agree_with_pcap_file() {
        let bytes = Pcap::new(MAGIC_NANOS, true, ETHERNET)
            .record(5, 6, b"abc")
            .raw_record(7, 8, 2, 9, b"de")
            .bytes;
        let (mut rest, parser) = pcap_file::pcap::PcapParser::new(&bytes).unwrap();
        let capture = CaptureFile::from_bytes("mem", bytes.clone()).unwrap();
        for frame in capture.reader() {
            let frame = frame.unwrap();
            let (rem, raw) = parser.next_raw_packet(rest).unwrap();
            rest = rem;
            assert_eq!(
                frame.ts_ns,
                u64::from(raw.ts_sec) * 1_000_000_000 + u64::from(raw.ts_frac)
            );
            assert_eq!(frame.orig_len, raw.orig_len.max(raw.incl_len));
            assert_eq!(Cow::Borrowed(frame.data), raw.data);
        }
        assert!(rest.is_empty());
    }
}
