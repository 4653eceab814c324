//! The common case of decoding, read by hand for speed.
//!
//! End-to-end gain (callgrind, 2026-12-07, `benches/twins.rs`, the
//! generated 200,000-packet hospital capture): 121 instructions a frame
//! against etherparse's general path's 232 (22.2 million fewer), 16% of the
//! plain replay's 136.8 million.

use etherparse::EtherType;

use super::link::MAX_VLAN_TAGS;
use super::{Headers, Outcome, Transport, set_payload};

/// The common case, read by hand: an Ethernet frame (up to
/// [`MAX_VLAN_TAGS`] tags) carrying IPv4, or IPv6 without extension
/// headers, and a whole TCP or UDP header. `None` for anything else, which
/// [`super::decode_general`] then decodes. [`Headers::tunnel`] is left to
/// the caller: the packet came out of none.
///
/// Why by hand: this is most packets of a replay, and going through
/// etherparse's views layer by layer (each constructor returning a `Result`
/// with its own error type, converted to ours at every step) cost about 185
/// instructions a packet against about 115 here (callgrind, hospital mix).
/// It reads the same fields with the same checks; a frame that would need
/// any judgement (IPv4 header or UDP length shorter than
/// stated, TCP data offset past the frame, IPv6 jumbograms, anything cut)
/// is left to etherparse. The property test
/// `common_case_agrees_with_etherparse` and the `decode_judge` fuzz target
/// check that both paths agree on every frame.
///
/// Always inlined: its `Headers` then stay in registers of the replay's
/// decode loop (about 12 instructions a packet fewer, callgrind).
#[inline(always)]
pub(super) fn decode_common(frame: &[u8], out: &mut Headers) -> Option<Outcome> {
    const ETHERNET_HEADER_LEN: usize = 14;
    let be16 = |b: &[u8], at: usize| -> Option<u16> {
        Some(u16::from_be_bytes(*b.get(at..at + 2)?.first_chunk::<2>()?))
    };
    let mut ether_type = be16(frame, 12)?;
    let mut at = ETHERNET_HEADER_LEN;
    let mut vlan = 0;
    let mut tags = 0;
    // Untagged IPv4, most frames, skips the three tag comparisons.
    while EtherType(ether_type) != EtherType::IPV4
        && matches!(
            EtherType(ether_type),
            EtherType::VLAN_TAGGED_FRAME
                | EtherType::PROVIDER_BRIDGING
                | EtherType::VLAN_DOUBLE_TAGGED_FRAME
        )
    {
        if tags == MAX_VLAN_TAGS {
            return None;
        }
        if tags == 0 {
            vlan = be16(frame, at)? & 0x0fff;
        }
        ether_type = be16(frame, at + 2)?;
        at += 4;
        tags += 1;
    }
    let ip = frame.get(at..)?;
    let (segment_start, segment) = match EtherType(ether_type) {
        EtherType::IPV4 => {
            let header: &[u8; 20] = ip.first_chunk()?;
            let header_len = usize::from(header[0] & 0x0f) * 4;
            let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
            let protocol = header[9];
            if header[0] >> 4 != 4
                || header_len < 20
                || ip.len() < header_len
                || total_len < header_len
                || !matches!(protocol, 6 | 17)
            {
                return None;
            }
            if u16::from_be_bytes([header[6], header[7]]) & 0x1fff != 0 {
                out.vlan = vlan;
                return Some(Outcome::LaterFragment);
            }
            out.ipv6 = false;
            out.src = u32::from_be_bytes([header[12], header[13], header[14], header[15]]).into();
            out.dst = u32::from_be_bytes([header[16], header[17], header[18], header[19]]).into();
            out.protocol = protocol;
            (
                at + header_len,
                ip.get(header_len..total_len.min(ip.len()))?,
            )
        }
        EtherType::IPV6 => {
            let header: &[u8; 40] = ip.first_chunk()?;
            let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
            let protocol = header[6];
            if header[0] >> 4 != 6 || payload_len == 0 || !matches!(protocol, 6 | 17) {
                return None;
            }
            out.ipv6 = true;
            out.src = u128::from_be_bytes(*header[8..24].first_chunk::<16>()?);
            out.dst = u128::from_be_bytes(*header[24..40].first_chunk::<16>()?);
            out.protocol = protocol;
            (at + 40, ip.get(40..40 + payload_len)?)
        }
        _ => return None,
    };
    // Each transport's fixed header read as one array: its fields at
    // constant offsets, checked once.
    let ports = |header: &[u8; 8]| {
        (
            u16::from_be_bytes([header[0], header[1]]),
            u16::from_be_bytes([header[2], header[3]]),
        )
    };
    let (src_port, dst_port, payload) = if out.protocol == 6 {
        let header: &[u8; 20] = segment.first_chunk()?;
        let data_offset = usize::from(header[12] >> 4) * 4;
        if data_offset < 20 || segment.len() < data_offset {
            return None;
        }
        out.transport = Transport::Tcp;
        out.tcp_flags = header[13];
        let (src, dst) = ports(header.first_chunk()?);
        (src, dst, &segment[data_offset..])
    } else {
        let header: &[u8; 8] = segment.first_chunk()?;
        // As etherparse's lax UDP view: the length field when it fits the
        // segment and covers the header, the segment otherwise.
        let stated = usize::from(u16::from_be_bytes([header[4], header[5]]));
        let datagram = if segment.len() < stated || stated < 8 {
            segment
        } else {
            &segment[..stated]
        };
        out.transport = Transport::Udp;
        out.tcp_flags = 0;
        let (src, dst) = ports(header);
        (src, dst, &datagram[8..])
    };
    out.vlan = vlan;
    out.src_port = src_port;
    out.dst_port = dst_port;
    out.transport_offset = segment_start as u32;
    set_payload(out, frame, payload);
    Some(Outcome::Judge)
}

#[cfg(test)]
mod common_case {
    use proptest::prelude::*;

    use super::super::*;
    use crate::synth::{Fragment, Pkt};

    /// Frames of every shape the hand-read path takes or declines.
    fn shapes() -> Vec<Vec<u8>> {
        let payload = b"MSH|^~\\&|LAB|HOSP";
        let mut frames = vec![
            Pkt::tcp("10.0.0.1:5000", "10.0.0.2:443", tcp_flags::SYN).build(),
            Pkt::tcp("10.0.0.1:5000", "10.0.0.2:2575", tcp_flags::ACK)
                .payload(payload)
                .build(),
            Pkt::udp("10.0.0.1:5000", "10.0.0.2:53")
                .payload(payload)
                .build(),
            Pkt::udp("10.0.0.1:68", "255.255.255.255:67").build(),
            Pkt::tcp("[fd00::1]:5000", "[fd00::2]:104", tcp_flags::SYN)
                .payload(payload)
                .build(),
            Pkt::udp("[fd00::1]:5000", "[ff02::fb]:5353")
                .payload(payload)
                .build(),
            Pkt::udp("[fd00::1]:5000", "[fd00::2]:53")
                .ipv6_hop_by_hop()
                .build(),
            Pkt::tcp("10.0.0.1:5000", "10.0.0.2:443", tcp_flags::ACK)
                .vlans(&[120])
                .build(),
            Pkt::udp("10.0.0.1:5000", "10.0.0.2:53")
                .vlans(&[300, 120])
                .payload(payload)
                .build(),
            Pkt::udp("10.0.0.1:5000", "10.0.0.2:53")
                .vlans(&[1, 2, 3])
                .build(),
            Pkt::tcp("10.0.0.1:5000", "10.0.0.2:443", tcp_flags::ACK)
                .ipv4_options(&[1, 1, 1, 1, 7, 7, 4, 0])
                .payload(payload)
                .build(),
            Pkt::echo_request("10.0.0.1", "10.0.0.2", 7).build(),
            Pkt::echo_reply("fd00::1", "fd00::2", 7).build(),
            Pkt::ip_proto("10.0.0.1", "10.0.0.2", 47)
                .payload(payload)
                .build(),
        ];
        for fragment in [Fragment::First { len: 32 }, Fragment::Rest { offset: 32 }] {
            frames.push(
                Pkt::udp("10.0.0.1:5000", "10.0.0.2:53")
                    .payload(&[7; 64])
                    .fragment(fragment)
                    .build(),
            );
            frames.push(
                Pkt::tcp("[fd00::1]:5000", "[fd00::2]:80", tcp_flags::ACK)
                    .payload(&[7; 64])
                    .fragment(fragment)
                    .build(),
            );
        }
        // Ethernet padding after a short IPv4 packet.
        let mut padded = Pkt::tcp("10.0.0.1:5000", "10.0.0.2:443", tcp_flags::RST).build();
        padded.resize(padded.len() + 6, 0);
        frames.push(padded);
        frames
    }

    fn both_paths(frame: &[u8]) -> ((Outcome, Option<Headers>), (Outcome, Option<Headers>)) {
        let run = |decoder: fn(LinkType, &[u8], &mut Headers) -> Outcome| {
            let mut headers = Headers::default();
            let outcome = decoder(LinkType::ETHERNET, frame, &mut headers);
            (outcome, (outcome == Outcome::Judge).then_some(headers))
        };
        let split = |link: LinkType, frame: &[u8], out: &mut Headers| {
            decode_split(link, frame, Decapsulation::none(), out).outcome()
        };
        let fast = run(decode);
        assert_eq!(run(split), fast, "the split decoder agrees");
        (fast, run(decode_with_etherparse))
    }

    #[test]
    fn every_shape_decodes_the_same_both_ways_and_cut_anywhere() {
        for frame in shapes() {
            for cut in 0..=frame.len() {
                let (fast, reference) = both_paths(&frame[..cut]);
                assert_eq!(fast, reference, "frame {frame:02x?} cut at {cut}");
            }
        }
    }

    /// Every 16-bit field of every header set to values around the lengths
    /// and limits the two paths check (lengths shorter than a header,
    /// versions, header lengths, data offsets, EtherTypes, fragment offsets).
    #[test]
    fn every_header_word_at_its_edges_decodes_the_same_both_ways() {
        for frame in shapes() {
            let len = frame.len() as u16;
            let mut values: Vec<u16> = (0..=9).chain([19, 20, 21, 40, 0x0800, 0x86dd]).collect();
            values.extend([
                0x8100, 0x88a8, 0x9100, 0x4500, 0x4f00, 0x6000, 0x0006, 0x0011,
            ]);
            values.extend([0x2000, 0x1fff, 0x5000, 0xf000, 0xffff]);
            values.extend([len - 14, len - 34, len - 54, len - 34 - 8, len - 34 - 7]);
            for at in 0..frame.len().min(100) - 1 {
                for &word in &values {
                    let mut changed = frame.clone();
                    changed[at..at + 2].copy_from_slice(&word.to_be_bytes());
                    let (fast, reference) = both_paths(&changed);
                    assert_eq!(fast, reference, "frame {frame:02x?} with {word:#x} at {at}");
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Frames of every shape with bytes changed (lengths, versions,
        /// header lengths, data offsets, EtherTypes, tags) and cut anywhere:
        /// the hand-read path agrees with etherparse on the outcome and, for
        /// frames to judge, on every header field.
        #[test]
        fn common_case_agrees_with_etherparse(
            shape in any::<prop::sample::Index>(),
            changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
            // Small values in 16-bit fields: lengths below their header's.
            words in prop::collection::vec((any::<prop::sample::Index>(), 0..=64u16), 0..2),
            cut in any::<prop::sample::Index>(),
        ) {
            let shapes = shapes();
            let mut frame = shapes[shape.index(shapes.len())].clone();
            for (at, byte) in changes {
                let at = at.index(frame.len());
                frame[at] = byte;
            }
            for (at, word) in words {
                let at = at.index(frame.len() - 1);
                frame[at..at + 2].copy_from_slice(&word.to_be_bytes());
            }
            let cut = cut.index(frame.len() + 1);
            let (fast, reference) = both_paths(&frame[..cut]);
            prop_assert_eq!(fast, reference);
        }
    }
}
