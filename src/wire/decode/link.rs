//! Below IP: the capture's link-layer header, then VLAN tags, MPLS label
//! stacks and Ethernet headers, down to the IPv4 or IPv6 header.

use etherparse::{EtherType, Ethernet2Slice, SingleVlanSlice};

use super::{Headers, Outcome, Problem};
use crate::wire::LinkType;

/// How many stacked VLAN tags are followed before the frame is given up on.
/// 802.1ad QinQ uses two; three covers the odd provider that stacks a third.
/// The bound keeps a hostile frame made of tags from looping long.
pub(super) const MAX_VLAN_TAGS: usize = 3;

/// How many MPLS label stack entries are followed to the bottom of the
/// stack. Real stacks hold two to five labels (transport, service, entropy
/// label and its indicator, a fast-reroute bypass); past eight the frame is
/// counted as not IP rather than walked further.
const MAX_MPLS_LABELS: usize = 8;

/// How many NFLOG attributes (TLVs) are walked to find the packet. The
/// kernel writes about a dozen kinds (`NFULA_*`, numbered below 20), each at
/// most once; the bound only stops a hostile frame made of tiny TLVs.
const MAX_NFLOG_TLVS: usize = 32;

/// EtherType of transparent Ethernet bridging: an Ethernet frame follows
/// (GRE protocol 0x6558, Geneve, and what VXLAN and ERSPAN carry).
pub(super) const TRANSPARENT_ETHERNET: EtherType = EtherType(0x6558);
/// MPLS unicast and multicast (RFC 5332).
const MPLS_UNICAST: EtherType = EtherType(0x8847);
const MPLS_MULTICAST: EtherType = EtherType(0x8848);

const TRUNCATED: Outcome = Outcome::Problem(Problem::TruncatedLink);

/// Strips the link-layer header: the EtherType (or an equivalent) and the
/// rest of the frame.
pub(super) fn link_payload(link: LinkType, frame: &[u8]) -> Result<(EtherType, &[u8]), Outcome> {
    match link {
        LinkType::ETHERNET => Ok((TRANSPARENT_ETHERNET, frame)),
        LinkType::NULL | LinkType::LOOP => {
            // A 4-byte address family in the capturing host's byte order (NULL)
            // or network order (LOOP). The host is unknown, so accept either.
            let family = frame.get(..4).ok_or(TRUNCATED)?;
            let le = u32::from_le_bytes([family[0], family[1], family[2], family[3]]);
            let value = if le > 0xffff { le.swap_bytes() } else { le };
            let ether_type = match value {
                2 => EtherType::IPV4,
                // AF_INET6 is 10 on Linux, 24 on NetBSD/OpenBSD, 28 on FreeBSD,
                // 30 on macOS.
                10 | 24 | 28 | 30 => EtherType::IPV6,
                _ => return Err(Outcome::NotIp),
            };
            Ok((ether_type, &frame[4..]))
        }
        LinkType::LINUX_SLL => {
            // packet type (2), ARPHRD type (2), address length (2), address
            // (8), protocol (2).
            const SLL_HEADER_LEN: usize = 16;
            let header: &[u8; SLL_HEADER_LEN] = frame.first_chunk().ok_or(TRUNCATED)?;
            let hardware = u16::from_be_bytes([header[2], header[3]]);
            let protocol = u16::from_be_bytes([header[14], header[15]]);
            Ok((
                cooked_protocol(hardware, protocol)?,
                &frame[SLL_HEADER_LEN..],
            ))
        }
        LinkType::LINUX_SLL2 => {
            // protocol (2), reserved (2), interface index (4), ARPHRD type
            // (2), packet type (1), address length (1), address (8).
            const SLL2_HEADER_LEN: usize = 20;
            let header: &[u8; SLL2_HEADER_LEN] = frame.first_chunk().ok_or(TRUNCATED)?;
            let protocol = u16::from_be_bytes([header[0], header[1]]);
            let hardware = u16::from_be_bytes([header[8], header[9]]);
            Ok((
                cooked_protocol(hardware, protocol)?,
                &frame[SLL2_HEADER_LEN..],
            ))
        }
        LinkType::NFLOG => nflog_payload(frame),
        LinkType::RAW | LinkType::RAW_BSD | LinkType::RAW_OPENBSD => {
            let version = frame
                .first()
                .ok_or(Outcome::Problem(Problem::TruncatedIp))?
                >> 4;
            match version {
                4 => Ok((EtherType::IPV4, frame)),
                6 => Ok((EtherType::IPV6, frame)),
                _ => Err(Outcome::Problem(Problem::MalformedIp)),
            }
        }
        LinkType::IPV4 => Ok((EtherType::IPV4, frame)),
        LinkType::IPV6 => Ok((EtherType::IPV6, frame)),
        _ => Err(Outcome::Problem(Problem::UnsupportedLinkType)),
    }
}

/// What follows a Linux cooked header (SLL or SLL2), as tcpdump and
/// Wireshark read it: the protocol field is an EtherType whatever the
/// interface (Ethernet, loopback, PPP, IP-in-IP and GRE tunnels, WireGuard,
/// `any`), except on the few device types whose field means something
/// else, and for values below 0x0600, which are Linux's own codes (802.2
/// LLC, Novell 802.3, CAN, ...), never IP.
fn cooked_protocol(hardware: u16, protocol: u16) -> Result<EtherType, Outcome> {
    /// ARPHRD types whose protocol field is not an EtherType: netlink
    /// monitors (the netlink family), 802.11 radiotap and Frame Relay.
    const ARPHRD_FRAD: u16 = 770;
    const ARPHRD_IEEE80211_RADIOTAP: u16 = 803;
    const ARPHRD_NETLINK: u16 = 824;
    /// Below this, a length (802.3) or a Linux pseudo-protocol.
    const FIRST_ETHER_TYPE: u16 = 0x0600;
    if matches!(
        hardware,
        ARPHRD_FRAD | ARPHRD_IEEE80211_RADIOTAP | ARPHRD_NETLINK
    ) || protocol < FIRST_ETHER_TYPE
    {
        return Err(Outcome::NotIp);
    }
    Ok(EtherType(protocol))
}

/// The packet inside a Linux NFLOG record (link type 239): a 4-byte header
/// (address family, version, resource ID) and TLV attributes, of which
/// `NFULA_PAYLOAD` holds the packet from its network header on.
///
/// The TLVs' length and type fields are in the byte order of the host that
/// logged them, which the file does not say (tcpdump and tshark read them in
/// their own host's order). The first TLV's length decides: the order in
/// which it reads as a length that fits the frame, the smaller of the two
/// when both do (the first attribute is a short one, `NFULA_PACKET_HDR`).
fn nflog_payload(frame: &[u8]) -> Result<(EtherType, &[u8]), Outcome> {
    const AF_INET: u8 = 2;
    const AF_INET6: u8 = 10;
    const NFULA_PAYLOAD: u16 = 9;
    /// The top bits of a netlink attribute type are flags (nested, network
    /// byte order).
    const NLA_TYPE_MASK: u16 = 0x3fff;
    let (header, mut tlvs) = frame.split_first_chunk::<4>().ok_or(TRUNCATED)?;
    let ether_type = match header[0] {
        AF_INET => EtherType::IPV4,
        AF_INET6 => EtherType::IPV6,
        _ => return Err(Outcome::NotIp),
    };
    let first_len = tlvs.first_chunk::<2>().ok_or(TRUNCATED)?;
    let fits = |len: u16| (4..=tlvs.len()).contains(&usize::from(len));
    let (le_len, be_len) = (
        u16::from_le_bytes(*first_len),
        u16::from_be_bytes(*first_len),
    );
    let little_endian = fits(le_len) && (!fits(be_len) || le_len <= be_len);
    let read = |b: [u8; 2]| {
        if little_endian {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    for _ in 0..MAX_NFLOG_TLVS {
        let Some((&[l0, l1, t0, t1], _)) = tlvs.split_first_chunk::<4>() else {
            break;
        };
        let len = usize::from(read([l0, l1]));
        if len < 4 {
            break;
        }
        let value = tlvs.get(4..len).ok_or(TRUNCATED)?;
        if read([t0, t1]) & NLA_TYPE_MASK == NFULA_PAYLOAD {
            return Ok((ether_type, value));
        }
        // Each attribute is padded to 4 bytes; the last one may not be.
        tlvs = tlvs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    // A record without the packet (logged with a copy range of 0): nothing
    // past the link-layer header to judge.
    Err(TRUNCATED)
}

/// Follows an Ethernet header (where `ether_type` is
/// [`TRANSPARENT_ETHERNET`]), VLAN tags and MPLS label stacks to the IP
/// header, noting the outermost VLAN ID.
pub(super) fn ether_payload<'a>(
    mut ether_type: EtherType,
    mut rest: &'a [u8],
    out: &mut Headers,
) -> Result<&'a [u8], Outcome> {
    if ether_type == TRANSPARENT_ETHERNET {
        // Only where the link layer or a tunnel says an Ethernet frame
        // starts: an Ethernet frame whose EtherType says 0x6558 is not
        // opened again.
        let eth = Ethernet2Slice::from_slice_without_fcs(rest).map_err(|_| TRUNCATED)?;
        ether_type = eth.ether_type();
        rest = eth.payload_slice();
    }
    let mut tags = 0;
    loop {
        match ether_type {
            EtherType::IPV4 | EtherType::IPV6 => return Ok(rest),
            EtherType::VLAN_TAGGED_FRAME
            | EtherType::PROVIDER_BRIDGING
            | EtherType::VLAN_DOUBLE_TAGGED_FRAME => {
                if tags == MAX_VLAN_TAGS {
                    return Err(Outcome::NotIp);
                }
                let tag = SingleVlanSlice::from_slice(rest).map_err(|_| TRUNCATED)?;
                if tags == 0 {
                    out.vlan = tag.vlan_identifier().value();
                }
                tags += 1;
                ether_type = tag.ether_type();
                rest = tag.payload_slice();
            }
            MPLS_UNICAST | MPLS_MULTICAST => return mpls_payload(rest),
            _ => return Err(Outcome::NotIp),
        }
    }
}

/// Walks an MPLS label stack (RFC 3032: 20-bit label, 3-bit traffic class,
/// bottom-of-stack bit, TTL) to what lies under its bottom entry. MPLS does
/// not say what that is; as Wireshark and tcpdump do, the first nibble
/// tells: 4 is IPv4, 6 is IPv6. Anything else (a pseudowire control word,
/// an Ethernet pseudowire without one, the associated channel) is counted as
/// not IP.
fn mpls_payload(mut rest: &[u8]) -> Result<&[u8], Outcome> {
    const BOTTOM_OF_STACK: u8 = 0x01;
    for _ in 0..MAX_MPLS_LABELS {
        let (entry, after) = rest.split_first_chunk::<4>().ok_or(TRUNCATED)?;
        rest = after;
        if entry[2] & BOTTOM_OF_STACK != 0 {
            let first = rest.first().ok_or(Outcome::Problem(Problem::TruncatedIp))?;
            return match first >> 4 {
                4 | 6 => Ok(rest),
                _ => Err(Outcome::NotIp),
            };
        }
    }
    Err(Outcome::NotIp)
}

#[cfg(test)]
mod tests {
    use super::super::{Headers, Outcome, Problem, decode};
    use crate::synth::Pkt;
    use crate::wire::LinkType;

    fn decoded(link: LinkType, frame: &[u8]) -> (Outcome, Headers) {
        let mut headers = Headers::default();
        let outcome = decode(link, frame, &mut headers);
        (outcome, headers)
    }

    /// The IP packet of a UDP datagram from 10.0.0.1:5000 to `dst`:53.
    fn ip_packet(dst: &str) -> Vec<u8> {
        Pkt::udp("10.0.0.1:5000", &format!("{dst}:53"))
            .payload(b"query")
            .build()[14..]
            .to_vec()
    }

    /// A Linux cooked (SLL) header: packet type, ARPHRD type, address
    /// length, address, protocol.
    fn sll(hardware: u16, protocol: u16, ip: &[u8]) -> Vec<u8> {
        let mut frame = vec![0, 0];
        frame.extend_from_slice(&hardware.to_be_bytes());
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        frame.extend_from_slice(&protocol.to_be_bytes());
        frame.extend_from_slice(ip);
        frame
    }

    /// A Linux cooked v2 (SLL2) header.
    fn sll2(hardware: u16, protocol: u16, ip: &[u8]) -> Vec<u8> {
        let mut frame = protocol.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0, 0, 0, 0, 0, 1]); // reserved, ifindex
        frame.extend_from_slice(&hardware.to_be_bytes());
        frame.extend_from_slice(&[4, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // outgoing, no address
        frame.extend_from_slice(ip);
        frame
    }

    const ARPHRD_ETHER: u16 = 1;
    const ARPHRD_PPP: u16 = 512;
    const ARPHRD_TUNNEL: u16 = 768;
    const ARPHRD_IPGRE: u16 = 778;
    const ARPHRD_LOOPBACK: u16 = 772;
    const ARPHRD_NONE: u16 = 0xfffe;
    const ARPHRD_NETLINK: u16 = 824;

    #[test]
    fn cooked_captures_are_decoded_by_their_protocol_field_on_any_interface() {
        let v4 = ip_packet("10.0.0.2");
        let v6 = Pkt::udp("[fd00::1]:5000", "[fd00::2]:53").build()[14..].to_vec();
        for hardware in [
            ARPHRD_ETHER,
            ARPHRD_LOOPBACK,
            ARPHRD_PPP,
            ARPHRD_TUNNEL,
            ARPHRD_IPGRE,
            ARPHRD_NONE,
        ] {
            for (link, frame) in [
                (LinkType::LINUX_SLL, sll(hardware, 0x0800, &v4)),
                (LinkType::LINUX_SLL2, sll2(hardware, 0x0800, &v4)),
                (LinkType::LINUX_SLL, sll(hardware, 0x86dd, &v6)),
                (LinkType::LINUX_SLL2, sll2(hardware, 0x86dd, &v6)),
            ] {
                let (outcome, h) = decoded(link, &frame);
                assert_eq!(outcome, Outcome::Judge, "{link} hardware {hardware}");
                assert_eq!(h.dst_port, 53, "{link} hardware {hardware}");
            }
        }
        // A VLAN-tagged frame seen on the `any` device keeps its tag.
        let mut tagged = vec![0, 120, 0x08, 0x00];
        tagged.extend_from_slice(&v4);
        let (outcome, h) = decoded(LinkType::LINUX_SLL, &sll(ARPHRD_ETHER, 0x8100, &tagged));
        assert_eq!((outcome, h.vlan), (Outcome::Judge, 120));
    }

    #[test]
    fn cooked_protocols_that_are_not_ether_types_are_not_ip() {
        let v4 = ip_packet("10.0.0.2");
        // Netlink monitors put the netlink family in the protocol field;
        // 0x0004 is 802.2 LLC, 0x0001 Novell 802.3.
        for (hardware, protocol) in [
            (ARPHRD_NETLINK, 0x0800),
            (ARPHRD_ETHER, 0x0004),
            (ARPHRD_LOOPBACK, 0x0001),
            (ARPHRD_ETHER, 0x0806),
        ] {
            for (link, frame) in [
                (LinkType::LINUX_SLL, sll(hardware, protocol, &v4)),
                (LinkType::LINUX_SLL2, sll2(hardware, protocol, &v4)),
            ] {
                assert_eq!(
                    decoded(link, &frame).0,
                    Outcome::NotIp,
                    "{hardware} {protocol}"
                );
            }
        }
        let frame = sll(ARPHRD_LOOPBACK, 0x0800, &v4);
        assert_eq!(
            decoded(LinkType::LINUX_SLL, &frame[..15]).0,
            Outcome::Problem(Problem::TruncatedLink)
        );
    }

    /// An NFLOG record: header, then (length, type) TLVs in `little_endian`
    /// or big-endian order, each padded to 4 bytes.
    fn nflog(family: u8, little_endian: bool, tlvs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut frame = vec![family, 0, 0, 1];
        for (kind, value) in tlvs {
            let len = 4 + value.len() as u16;
            let (len, kind) = if little_endian {
                (len.to_le_bytes(), kind.to_le_bytes())
            } else {
                (len.to_be_bytes(), kind.to_be_bytes())
            };
            frame.extend_from_slice(&len);
            frame.extend_from_slice(&kind);
            frame.extend_from_slice(value);
            while frame.len() % 4 != 0 {
                frame.push(0);
            }
        }
        frame
    }

    const NFULA_PACKET_HDR: u16 = 1;
    const NFULA_PREFIX: u16 = 10;
    const NFULA_PAYLOAD: u16 = 9;

    #[test]
    fn nflog_records_give_their_payload_attribute_in_either_byte_order() {
        let v4 = ip_packet("10.0.0.2");
        let v6 = Pkt::tcp("[fd00::1]:5000", "[fd00::2]:443", 2).build()[14..].to_vec();
        for little_endian in [true, false] {
            for (family, ip, port) in [(2, &v4, 53), (10, &v6, 443)] {
                let frame = nflog(
                    family,
                    little_endian,
                    &[
                        (NFULA_PACKET_HDR, &[0x08, 0x00, 1, 0]),
                        (NFULA_PREFIX, b"dropped by rule 7\0"),
                        (NFULA_PAYLOAD, ip),
                    ],
                );
                let (outcome, h) = decoded(LinkType::NFLOG, &frame);
                assert_eq!(
                    (outcome, h.dst_port),
                    (Outcome::Judge, port),
                    "{little_endian}"
                );
                // The payload offset counts from the start of the record.
                let payload = &frame[h.payload_offset as usize..][..h.payload_len as usize];
                if port == 53 {
                    assert_eq!(payload, b"query");
                }
            }
        }
        // A record logged without the packet, or of another family.
        let bare = nflog(2, true, &[(NFULA_PREFIX, b"x\0")]);
        assert_eq!(
            decoded(LinkType::NFLOG, &bare).0,
            Outcome::Problem(Problem::TruncatedLink)
        );
        let bridge = nflog(7, true, &[(NFULA_PAYLOAD, &v4)]);
        assert_eq!(decoded(LinkType::NFLOG, &bridge).0, Outcome::NotIp);
        // The payload attribute cut by the snap length: judged from what
        // made it, as any cut IP packet.
        let whole = nflog(2, true, &[(NFULA_PAYLOAD, &v4)]);
        let cut = &whole[..4 + 4 + 20 + 4];
        assert_eq!(
            decoded(LinkType::NFLOG, cut).0,
            Outcome::Problem(Problem::TruncatedLink)
        );
    }

    #[test]
    fn hostile_nflog_tlv_chains_end() {
        // Zero-length TLVs, lengths past the end, and a chain of many tiny
        // TLVs: none loops or panics.
        let mut zero = vec![2, 0, 0, 0];
        zero.extend_from_slice(&[0; 64]);
        assert_eq!(
            decoded(LinkType::NFLOG, &zero).0,
            Outcome::Problem(Problem::TruncatedLink)
        );
        let mut many = vec![2, 0, 0, 0];
        for _ in 0..10_000 {
            many.extend_from_slice(&[4, 0, 1, 0]);
        }
        many.extend_from_slice(&nflog(2, true, &[(NFULA_PAYLOAD, &ip_packet("10.0.0.2"))])[4..]);
        assert_eq!(
            decoded(LinkType::NFLOG, &many).0,
            Outcome::Problem(Problem::TruncatedLink)
        );
        let frame = nflog(2, true, &[(NFULA_PAYLOAD, &ip_packet("10.0.0.2"))]);
        for cut in 0..frame.len() {
            decoded(LinkType::NFLOG, &frame[..cut]);
        }
    }

    /// An Ethernet frame of EtherType `ether_type` carrying MPLS `labels`
    /// (the last marked bottom of stack) and then `payload`.
    fn mpls(ether_type: u16, labels: &[u32], payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        frame.extend_from_slice(&ether_type.to_be_bytes());
        for (i, label) in labels.iter().enumerate() {
            let bottom = u32::from(i == labels.len() - 1);
            frame.extend_from_slice(&((label << 12) | (bottom << 8) | 64).to_be_bytes());
        }
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn mpls_label_stacks_lead_to_the_ip_packet_under_them() {
        let v4 = ip_packet("10.0.0.2");
        let v6 = Pkt::udp("[fd00::1]:5000", "[fd00::2]:53").build()[14..].to_vec();
        for (ether_type, labels) in [
            (0x8847, &[16][..]),
            (0x8847, &[16, 17, 18]),
            (0x8848, &[20]),
            (0x8847, &[0]), // IPv4 explicit null
            (0x8847, &[7, 9000, 24_000, 3, 2, 1, 5, 6]),
        ] {
            for ip in [&v4, &v6] {
                let (outcome, h) = decoded(LinkType::ETHERNET, &mpls(ether_type, labels, ip));
                assert_eq!((outcome, h.dst_port), (Outcome::Judge, 53), "{labels:?}");
            }
        }
        // Under a VLAN tag.
        let mut tagged = mpls(0x8100, &[], &[]);
        tagged.extend_from_slice(&[0, 42, 0x88, 0x47]);
        tagged.extend_from_slice(&mpls(0, &[16], &v4)[14..]);
        let (outcome, h) = decoded(LinkType::ETHERNET, &tagged);
        assert_eq!((outcome, h.vlan, h.dst_port), (Outcome::Judge, 42, 53));
    }

    #[test]
    fn mpls_beyond_its_bounds_or_over_a_pseudowire_is_not_ip() {
        let v4 = ip_packet("10.0.0.2");
        // Nine labels: past the bound.
        let deep = mpls(0x8847, &[1, 2, 3, 4, 5, 6, 7, 8, 9], &v4);
        assert_eq!(decoded(LinkType::ETHERNET, &deep).0, Outcome::NotIp);
        // An Ethernet pseudowire with its control word (first nibble 0).
        let mut pw = vec![0, 0, 0, 0];
        pw.extend_from_slice(&Pkt::udp("10.0.0.1:5000", "10.0.0.2:53").build());
        assert_eq!(
            decoded(LinkType::ETHERNET, &mpls(0x8847, &[16, 17], &pw)).0,
            Outcome::NotIp
        );
        // A stack cut before its bottom, or with nothing under it.
        let frame = mpls(0x8847, &[16, 17], &v4);
        assert_eq!(
            decoded(LinkType::ETHERNET, &frame[..20]).0,
            Outcome::Problem(Problem::TruncatedLink)
        );
        assert_eq!(
            decoded(LinkType::ETHERNET, &frame[..22]).0,
            Outcome::Problem(Problem::TruncatedIp)
        );
    }
}
