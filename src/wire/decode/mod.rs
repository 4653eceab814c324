//! Decoding one frame into [`Headers`]: link layer, VLAN tags, MPLS label
//! stacks, IPv4/IPv6 with options and extension headers, tunnels, and the
//! transport header.
//!
//! No-panic contract: [`decode`] accepts any byte slice. Every length is
//! checked by etherparse's slices or by `get`; a frame that cannot be judged
//! comes back as an [`Outcome`] that says why, so the caller can count it.
//! Decoding works on the frame's bytes where they lie: a decapsulated packet
//! is read inside its tunnel, never copied out.
//!
//! Snap-length-cut frames are judged from the headers they carry: the IP
//! header must be complete, and the transport header must reach the ports
//! (TCP flags are read when the cut leaves byte 13).
//!
//! Tunnels ([`tunnel`]): ERSPAN is always opened, VXLAN, Geneve and GRE only
//! as the [`Decapsulation`] setting says. At most [`MAX_TUNNELS`] are opened
//! in one frame; a tunnel nested deeper is judged as the `udp` or `gre`
//! packet it is.

mod common;
mod link;
mod tunnel;

use etherparse::{
    Icmpv4Slice, Icmpv4Type, Icmpv6Slice, Icmpv6Type, IpNumber, Ipv4HeaderSlice,
    Ipv6ExtensionSlice, LaxIpSlice, TcpSlice, UdpSlice,
};

pub use tunnel::{Decapsulation, GENEVE_PORT, Tunnel, TunnelKind, UnknownTunnelKind, VXLAN_PORT};

use super::LinkType;
use common::decode_common;
use link::{ether_payload, link_payload};
use tunnel::Opened;

/// How many tunnels are opened in one frame (ERSPAN carrying a VXLAN overlay
/// is two). The bound keeps a hostile frame of tunnels inside tunnels from
/// being walked long; the packet at that depth is judged as it is.
pub const MAX_TUNNELS: usize = 4;

/// The transport of a decoded packet, as far as flow keys care.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Transport {
    /// TCP: ports and flags are set.
    #[default]
    Tcp,
    /// UDP: ports are set.
    Udp,
    /// ICMP or ICMPv6 echo request: both ports hold the echo identifier.
    EchoRequest,
    /// ICMP or ICMPv6 echo reply: both ports hold the echo identifier.
    EchoReply,
    /// Any other IP protocol: no ports.
    Other,
}

impl Transport {
    /// The transport of a flow of IP protocol `protocol`: ICMP and ICMPv6
    /// flows are always echo flows (other ICMP messages are not tracked), so
    /// both come back as [`Transport::EchoRequest`].
    #[inline]
    pub fn of_protocol(protocol: u8) -> Transport {
        match protocol {
            6 => Transport::Tcp,
            17 => Transport::Udp,
            1 | 58 => Transport::EchoRequest,
            _ => Transport::Other,
        }
    }
}

/// TCP flag bits as they sit in byte 13 of the TCP header.
pub mod tcp_flags {
    /// FIN
    pub const FIN: u8 = 0x01;
    /// SYN
    pub const SYN: u8 = 0x02;
    /// RST
    pub const RST: u8 = 0x04;
    /// ACK
    pub const ACK: u8 = 0x10;
}

/// The header fields of a packet that segwatch judges.
///
/// Addresses are kept as `u128`: an IPv4 address is its 32-bit value, and
/// `ipv6` tells the families apart, so `10.0.0.1` and `::a00:1` never meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Headers {
    /// Outermost 802.1Q/802.1ad VLAN ID of the packet's own Ethernet frame
    /// (the innermost, for a packet taken out of a tunnel); 0 when untagged.
    pub vlan: u16,
    /// True for IPv6, false for IPv4.
    pub ipv6: bool,
    /// Source address.
    pub src: u128,
    /// Destination address.
    pub dst: u128,
    /// IP protocol number of the transport (after IPv6 extension headers).
    pub protocol: u8,
    /// Which transport `protocol` is, as flows see it.
    pub transport: Transport,
    /// Source port (TCP, UDP) or echo identifier (ICMP echo); 0 otherwise.
    pub src_port: u16,
    /// Destination port (TCP, UDP) or echo identifier (ICMP echo); 0 otherwise.
    pub dst_port: u16,
    /// TCP flags (see [`tcp_flags`]); 0 when not TCP or cut before them.
    pub tcp_flags: u8,
    /// Offset of the TCP or UDP header in the frame (0 for others).
    pub transport_offset: u32,
    /// Offset of the transport payload in the frame.
    pub payload_offset: u32,
    /// Length of the transport payload as the IP header gives it, cut to what
    /// the frame holds: Ethernet padding is never counted.
    pub payload_len: u32,
    /// The tunnel the packet was taken out of ([`Tunnel::NONE`] when it was
    /// not): all the fields above are then the inner packet's, and offsets
    /// still count from the start of the frame.
    pub tunnel: Tunnel,
}

/// What the decoder made of a frame.
///
/// A tag byte of its own (`repr(u8)`, [`Outcome::Judge`] first): the
/// per-frame test for a frame to judge is then one compare of that byte,
/// where the niche shared with [`Problem`] took a computed discriminant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Outcome {
    /// An IP packet whose headers were decoded: judge it.
    Judge,
    /// Not IP (ARP, LLDP, STP, ...): counted, not judged.
    NotIp,
    /// An IPv4/IPv6 fragment other than the first: counted, not judged.
    LaterFragment,
    /// ICMP or ICMPv6 other than echo: counted, not judged.
    IcmpNotEcho,
    /// A frame that could not be decoded, by reason.
    Problem(Problem),
}

/// Why a frame could not be decoded. A small closed set: each is a metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Problem {
    /// The capture's link type is not one segwatch decodes.
    UnsupportedLinkType,
    /// The frame ends inside its link-layer header or a VLAN tag.
    TruncatedLink,
    /// The frame ends inside its IP header or IPv6 extension headers.
    TruncatedIp,
    /// The IP header is invalid (bad version, header length, ...).
    MalformedIp,
    /// The frame ends before the transport ports (or the ICMP echo header).
    TruncatedTransport,
    /// The transport header is invalid (TCP data offset below 5, ...).
    MalformedTransport,
}

impl Problem {
    /// Every problem, in a fixed order (for counters and summaries).
    pub const ALL: [Problem; 6] = [
        Problem::UnsupportedLinkType,
        Problem::TruncatedLink,
        Problem::TruncatedIp,
        Problem::MalformedIp,
        Problem::TruncatedTransport,
        Problem::MalformedTransport,
    ];

    /// Stable snake_case name, used in summaries and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::UnsupportedLinkType => "unsupported_link_type",
            Problem::TruncatedLink => "truncated_link",
            Problem::TruncatedIp => "truncated_ip",
            Problem::MalformedIp => "malformed_ip",
            Problem::TruncatedTransport => "truncated_transport",
            Problem::MalformedTransport => "malformed_transport",
        }
    }

    /// Position in [`Problem::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Decodes `frame` of link type `link` into `out`, opening no tunnel but
/// ERSPAN: [`decode_with`] with [`Decapsulation::NONE`], without looking at
/// a setting.
///
/// `out` is only meaningful when the result is [`Outcome::Judge`]; it is an
/// out-parameter so the caller can reuse one slot per packet.
#[inline(always)]
pub fn decode(link: LinkType, frame: &[u8], out: &mut Headers) -> Outcome {
    if link == LinkType::ETHERNET
        && let Some(outcome) = decode_common(frame, out)
    {
        out.tunnel = Tunnel::NONE;
        return outcome;
    }
    decode_general(link, frame, Decapsulation::none(), out)
}

/// Decodes `frame` of link type `link` into `out`, opening the tunnels that
/// `decap` names (and ERSPAN, always). [`Headers::tunnel`] then says which
/// tunnel the judged packet came out of.
///
/// Always inlined, as [`common::decode_common`] is: the common case's
/// `Headers` then stay in registers of the caller's decode loop.
#[inline(always)]
pub fn decode_with(
    link: LinkType,
    frame: &[u8],
    decap: &Decapsulation,
    out: &mut Headers,
) -> Outcome {
    if link == LinkType::ETHERNET
        && let Some(outcome) = decode_common(frame, out)
    {
        // A datagram to a tunnel port to open takes the general path.
        if !(outcome == Outcome::Judge
            && out.transport == Transport::Udp
            && decap.may_open_udp(out.dst_port))
        {
            out.tunnel = Tunnel::NONE;
            return outcome;
        }
    }
    decode_general(link, frame, decap, out)
}

/// Which path decoded a frame (see [`decode_split`]), with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// The hand-read common case: the packet came out of no tunnel.
    /// [`Headers::tunnel`] is left as it was (it may describe an earlier
    /// frame): the caller knows there is none and does not read it.
    Untunnelled(Outcome),
    /// The general path: [`Headers::tunnel`] says which tunnel, if any, the
    /// packet came out of.
    General(Outcome),
}

impl Split {
    /// The frame's outcome, whichever path decoded it.
    #[inline(always)]
    pub fn outcome(self) -> Outcome {
        match self {
            Split::Untunnelled(outcome) | Split::General(outcome) => outcome,
        }
    }
}

/// [`decode_with`], telling which path decoded the frame: a caller that
/// branches on it knows, on the common path, that the packet came out of no
/// tunnel, and skips everything about tunnels (its flow key's overlay, the
/// tunnel counters) without reading [`Headers::tunnel`].
///
/// A judged UDP datagram takes the general path only when its destination
/// port is one of the tunnels `decap` opens; with [`Decapsulation::none`]
/// (a `static`, known to the compiler) that test folds away.
#[inline(always)]
pub fn decode_split(
    link: LinkType,
    frame: &[u8],
    decap: &Decapsulation,
    out: &mut Headers,
) -> Split {
    if link == LinkType::ETHERNET
        && let Some(outcome) = decode_common(frame, out)
        && !(outcome == Outcome::Judge
            && out.transport == Transport::Udp
            && decap.may_open_udp(out.dst_port))
    {
        return Split::Untunnelled(outcome);
    }
    Split::General(decode_general(link, frame, decap, out))
}

/// Decodes `frame` with etherparse's views only, whatever it holds, opening
/// no tunnel but ERSPAN: the reference the hand-read common case is checked
/// against.
#[doc(hidden)]
pub fn decode_with_etherparse(link: LinkType, frame: &[u8], out: &mut Headers) -> Outcome {
    decode_general(link, frame, Decapsulation::none(), out)
}

/// The general path: link layer, then IP and transport, then again for the
/// packet inside each tunnel opened.
///
/// Never inlined: it is the rare path, and inlined it would keep the common
/// case out of the caller's decode loop.
#[doc(hidden)]
#[inline(never)]
pub fn decode_general(
    link: LinkType,
    frame: &[u8],
    decap: &Decapsulation,
    out: &mut Headers,
) -> Outcome {
    out.vlan = 0;
    out.tunnel = Tunnel::NONE;
    let (mut ether_type, mut rest) = match link_payload(link, frame) {
        Ok(found) => found,
        Err(outcome) => return outcome,
    };
    let mut opened = 0;
    loop {
        let ip = match ether_payload(ether_type, rest, out) {
            Ok(ip) => ip,
            Err(outcome) => return outcome,
        };
        let tunnels = Tunnels {
            decap,
            may_open: opened < MAX_TUNNELS,
        };
        match decode_ip(frame, ip, tunnels, out) {
            Next::Done(outcome) => return outcome,
            Next::Inner(inner) => {
                opened += 1;
                out.tunnel = inner.tunnel;
                // A packet inside a tunnel has the VLAN of its own frame, if
                // it has one.
                out.vlan = 0;
                ether_type = inner.ether_type;
                rest = inner.inner;
            }
        }
    }
}

/// Which tunnels may be opened at this depth.
#[derive(Clone, Copy)]
struct Tunnels<'d> {
    decap: &'d Decapsulation,
    /// False once [`MAX_TUNNELS`] are open.
    may_open: bool,
}

/// What decoding an IP packet led to.
enum Next<'a> {
    /// The packet's outcome.
    Done(Outcome),
    /// A tunnel whose packet is decoded next.
    Inner(Opened<'a>),
}

impl From<Outcome> for Next<'_> {
    fn from(outcome: Outcome) -> Self {
        Next::Done(outcome)
    }
}

fn decode_ip<'a>(
    frame: &'a [u8],
    ip_bytes: &'a [u8],
    tunnels: Tunnels<'_>,
    out: &mut Headers,
) -> Next<'a> {
    use etherparse::err::ip::LaxHeaderSliceError;
    // Most packets are IPv4 without an authentication header: etherparse's
    // plain IPv4 header view reads them with a third of the work of the
    // general `LaxIpSlice` (which handles IPv6 extension headers and AH).
    if ip_bytes.first().is_some_and(|b| b >> 4 == 4)
        && ip_bytes
            .get(9)
            .is_some_and(|&p| p != IpNumber::AUTHENTICATION_HEADER.0)
    {
        return decode_ipv4(frame, ip_bytes, tunnels, out);
    }
    let (ip, ext_error) = match LaxIpSlice::from_slice(ip_bytes) {
        Ok(found) => found,
        Err(LaxHeaderSliceError::Len(_)) => return Outcome::Problem(Problem::TruncatedIp).into(),
        Err(LaxHeaderSliceError::Content(_)) => {
            return Outcome::Problem(Problem::MalformedIp).into();
        }
    };
    if let Some((error, _)) = ext_error {
        return Outcome::Problem(match error {
            etherparse::err::ipv6_exts::HeaderSliceError::Len(_) => Problem::TruncatedIp,
            etherparse::err::ipv6_exts::HeaderSliceError::Content(_) => Problem::MalformedIp,
        })
        .into();
    }
    match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let header = v4.header();
            if header.fragments_offset().value() != 0 {
                return Outcome::LaterFragment.into();
            }
            out.ipv6 = false;
            out.src = u32::from_be_bytes(header.source()).into();
            out.dst = u32::from_be_bytes(header.destination()).into();
        }
        LaxIpSlice::Ipv6(v6) => {
            if v6.is_payload_fragmented() && !is_first_ipv6_fragment(v6) {
                return Outcome::LaterFragment.into();
            }
            let header = v6.header();
            out.ipv6 = true;
            out.src = u128::from_be_bytes(header.source());
            out.dst = u128::from_be_bytes(header.destination());
        }
    }
    let payload = ip.payload();
    out.protocol = payload.ip_number.0;
    transport_or_tunnel(frame, payload.ip_number, payload.payload, tunnels, out)
}

/// An IPv4 packet without an authentication header.
fn decode_ipv4<'a>(
    frame: &'a [u8],
    ip_bytes: &'a [u8],
    tunnels: Tunnels<'_>,
    out: &mut Headers,
) -> Next<'a> {
    use etherparse::err::ipv4::HeaderSliceError;
    let header = match Ipv4HeaderSlice::from_slice(ip_bytes) {
        Ok(header) => header,
        Err(HeaderSliceError::Len(_)) => return Outcome::Problem(Problem::TruncatedIp).into(),
        Err(HeaderSliceError::Content(_)) => return Outcome::Problem(Problem::MalformedIp).into(),
    };
    if header.fragments_offset().value() != 0 {
        return Outcome::LaterFragment.into();
    }
    out.ipv6 = false;
    out.src = u32::from_be_bytes(header.source()).into();
    out.dst = u32::from_be_bytes(header.destination()).into();
    out.protocol = header.protocol().0;
    // The payload ends where the header's total length says (never where
    // the padded frame does), or where the capture was cut; a total length
    // shorter than the header itself is ignored, as LaxIpSlice does.
    let header_len = header.slice().len();
    let total_len = usize::from(header.total_len());
    let end = if total_len < header_len {
        ip_bytes.len()
    } else {
        total_len.min(ip_bytes.len())
    };
    let payload = ip_bytes.get(header_len..end).unwrap_or_default();
    transport_or_tunnel(frame, header.protocol(), payload, tunnels, out)
}

/// Decodes the transport header, then opens the tunnel it may be.
fn transport_or_tunnel<'a>(
    frame: &'a [u8],
    protocol: IpNumber,
    segment: &'a [u8],
    tunnels: Tunnels<'_>,
    out: &mut Headers,
) -> Next<'a> {
    if let Err(outcome) = decode_transport(frame, protocol, segment, out) {
        return Next::Done(outcome);
    }
    if tunnels.may_open {
        let opened = match protocol {
            IpNumber::UDP if tunnels.decap.may_open_udp(out.dst_port) => {
                let start = out.payload_offset as usize;
                let payload = frame
                    .get(start..start + out.payload_len as usize)
                    .unwrap_or_default();
                tunnel::open_udp(tunnels.decap, out, payload)
            }
            IpNumber::GRE => tunnel::open_gre(tunnels.decap, out, segment),
            _ => None,
        };
        if let Some(opened) = opened {
            return Next::Inner(opened);
        }
    }
    Next::Done(Outcome::Judge)
}

/// True unless the IPv6 fragment header says this is a later fragment.
fn is_first_ipv6_fragment(v6: &etherparse::LaxIpv6Slice<'_>) -> bool {
    v6.extensions().clone().into_iter().all(|ext| match ext {
        Ipv6ExtensionSlice::Fragment(fragment) => fragment.fragment_offset().value() == 0,
        _ => true,
    })
}

fn decode_transport(
    frame: &[u8],
    protocol: IpNumber,
    segment: &[u8],
    out: &mut Headers,
) -> Result<(), Outcome> {
    const TRUNCATED: Outcome = Outcome::Problem(Problem::TruncatedTransport);
    out.tcp_flags = 0;
    match protocol {
        IpNumber::TCP => {
            out.transport = Transport::Tcp;
            out.transport_offset = offset_in(frame, segment);
            match TcpSlice::from_slice(segment) {
                Ok(tcp) => {
                    out.src_port = tcp.source_port();
                    out.dst_port = tcp.destination_port();
                    out.tcp_flags = segment[13];
                    set_payload(out, frame, tcp.payload());
                }
                Err(etherparse::err::tcp::HeaderSliceError::Content(_)) => {
                    return Err(Outcome::Problem(Problem::MalformedTransport));
                }
                Err(etherparse::err::tcp::HeaderSliceError::Len(_)) => {
                    // Cut by the snap length inside the TCP header: judge by
                    // the ports, and the flags when they made it.
                    (out.src_port, out.dst_port) = ports_of_cut_header(segment)?;
                    out.tcp_flags = segment.get(13).copied().unwrap_or(0);
                    set_payload(out, frame, &[]);
                }
            }
        }
        IpNumber::UDP => {
            out.transport = Transport::Udp;
            out.transport_offset = offset_in(frame, segment);
            match UdpSlice::from_slice_lax(segment) {
                Ok(udp) => {
                    out.src_port = udp.source_port();
                    out.dst_port = udp.destination_port();
                    set_payload(out, frame, udp.payload());
                }
                Err(_) => {
                    (out.src_port, out.dst_port) = ports_of_cut_header(segment)?;
                    set_payload(out, frame, &[]);
                }
            }
        }
        IpNumber::ICMP => {
            let icmp = Icmpv4Slice::from_slice(segment).map_err(|_| TRUNCATED)?;
            let (transport, id) = match icmp.icmp_type() {
                Icmpv4Type::EchoRequest(echo) => (Transport::EchoRequest, echo.id),
                Icmpv4Type::EchoReply(echo) => (Transport::EchoReply, echo.id),
                _ => return Err(Outcome::IcmpNotEcho),
            };
            set_echo(out, transport, id, frame, icmp.payload());
        }
        IpNumber::IPV6_ICMP => {
            let icmp = Icmpv6Slice::from_slice(segment).map_err(|_| TRUNCATED)?;
            let (transport, id) = match icmp.icmp_type() {
                Icmpv6Type::EchoRequest(echo) => (Transport::EchoRequest, echo.id),
                Icmpv6Type::EchoReply(echo) => (Transport::EchoReply, echo.id),
                _ => return Err(Outcome::IcmpNotEcho),
            };
            set_echo(out, transport, id, frame, icmp.payload());
        }
        _ => {
            out.transport = Transport::Other;
            out.src_port = 0;
            out.dst_port = 0;
            set_payload(out, frame, segment);
        }
    }
    Ok(())
}

/// The ports of a TCP or UDP header cut short: both lead the header.
fn ports_of_cut_header(segment: &[u8]) -> Result<(u16, u16), Outcome> {
    match segment {
        [s0, s1, d0, d1, ..] => Ok((
            u16::from_be_bytes([*s0, *s1]),
            u16::from_be_bytes([*d0, *d1]),
        )),
        _ => Err(Outcome::Problem(Problem::TruncatedTransport)),
    }
}

fn set_echo(out: &mut Headers, transport: Transport, id: u16, frame: &[u8], payload: &[u8]) {
    out.transport = transport;
    out.src_port = id;
    out.dst_port = id;
    set_payload(out, frame, payload);
}

/// Where `part`, a sub-slice of `frame`, starts in it.
fn offset_in(frame: &[u8], part: &[u8]) -> u32 {
    let offset = (part.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
    if offset > frame.len() {
        0
    } else {
        offset as u32
    }
}

/// Records where `payload`, a sub-slice of `frame`, lies in it.
fn set_payload(out: &mut Headers, frame: &[u8], payload: &[u8]) {
    let offset = (payload.as_ptr() as usize).wrapping_sub(frame.as_ptr() as usize);
    if payload.is_empty() || offset > frame.len() {
        out.payload_offset = frame.len() as u32;
        out.payload_len = 0;
    } else {
        out.payload_offset = offset as u32;
        out.payload_len = payload.len() as u32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{Fragment, Pkt};

    fn decoded(frame: &[u8]) -> (Outcome, Headers) {
        let mut headers = Headers::default();
        let outcome = decode(LinkType::ETHERNET, frame, &mut headers);
        (outcome, headers)
    }

    fn v4(addr: &str) -> u128 {
        u32::from(addr.parse::<std::net::Ipv4Addr>().unwrap()).into()
    }

    #[test]
    fn tcp_over_ethernet() {
        let frame = Pkt::tcp("10.0.0.1:5000", "10.0.0.2:443", tcp_flags::SYN).build();
        let (outcome, h) = decoded(&frame);
        assert_eq!(outcome, Outcome::Judge);
        assert_eq!((h.src, h.dst), (v4("10.0.0.1"), v4("10.0.0.2")));
        assert_eq!((h.src_port, h.dst_port, h.protocol), (5000, 443, 6));
        assert_eq!(h.transport, Transport::Tcp);
        assert_eq!(h.tcp_flags, tcp_flags::SYN);
        assert_eq!(h.vlan, 0);
        assert!(!h.ipv6);
    }

    #[test]
    fn vlan_and_qinq_give_the_outermost_id() {
        let one = Pkt::udp("10.0.0.1:5000", "10.0.0.2:53")
            .vlans(&[120])
            .build();
        assert_eq!(decoded(&one).1.vlan, 120);
        let two = Pkt::udp("10.0.0.1:5000", "10.0.0.2:53")
            .vlans(&[300, 120])
            .build();
        let (outcome, h) = decoded(&two);
        assert_eq!(outcome, Outcome::Judge);
        assert_eq!((h.vlan, h.dst_port), (300, 53));
    }

    #[test]
    fn payload_length_comes_from_the_ip_header_not_the_padded_frame() {
        let mut frame = Pkt::udp("10.0.0.1:5000", "10.0.0.2:53")
            .payload(b"abc")
            .build();
        let unpadded = frame.len();
        frame.resize(unpadded + 20, 0xee); // Ethernet padding / trailer
        let (outcome, h) = decoded(&frame);
        assert_eq!(outcome, Outcome::Judge);
        assert_eq!(h.payload_len, 3);
        assert_eq!(&frame[h.payload_offset as usize..][..3], b"abc");
    }

    #[test]
    fn ipv4_options_and_ipv6_extension_headers() {
        let frame = Pkt::tcp("10.0.0.1:5000", "10.0.0.2:80", tcp_flags::ACK)
            .ipv4_options(&[1, 1, 1, 0])
            .build();
        let (outcome, h) = decoded(&frame);
        assert_eq!((outcome, h.dst_port), (Outcome::Judge, 80));

        let frame = Pkt::udp("[fd00::1]:5000", "[fd00::2]:53")
            .ipv6_hop_by_hop()
            .build();
        let (outcome, h) = decoded(&frame);
        assert_eq!(outcome, Outcome::Judge);
        assert!(h.ipv6);
        assert_eq!((h.protocol, h.dst_port), (17, 53));
        assert_eq!(
            h.dst,
            u128::from("fd00::2".parse::<std::net::Ipv6Addr>().unwrap())
        );
    }

    #[test]
    fn fragments_first_is_judged_by_its_ports_later_ones_are_not() {
        let pkt = Pkt::udp("10.0.0.1:5000", "10.0.0.2:2575").payload(&[7; 64]);
        let (outcome, h) = decoded(&pkt.clone().fragment(Fragment::First { len: 32 }).build());
        assert_eq!(
            (outcome, h.src_port, h.dst_port),
            (Outcome::Judge, 5000, 2575)
        );
        let (outcome, _) = decoded(&pkt.clone().fragment(Fragment::Rest { offset: 32 }).build());
        assert_eq!(outcome, Outcome::LaterFragment);

        let pkt6 = Pkt::tcp("[fd00::1]:5000", "[fd00::2]:104", tcp_flags::ACK).payload(&[7; 64]);
        let (outcome, h) = decoded(&pkt6.clone().fragment(Fragment::First { len: 40 }).build());
        assert_eq!((outcome, h.dst_port), (Outcome::Judge, 104));
        let (outcome, _) = decoded(&pkt6.fragment(Fragment::Rest { offset: 40 }).build());
        assert_eq!(outcome, Outcome::LaterFragment);
    }

    #[test]
    fn icmp_echo_keys_on_the_identifier_and_other_icmp_is_not_judged() {
        let (outcome, h) = decoded(&Pkt::echo_request("10.0.0.1", "10.0.0.2", 77).build());
        assert_eq!(
            (outcome, h.transport, h.src_port, h.dst_port),
            (Outcome::Judge, Transport::EchoRequest, 77, 77)
        );
        let (outcome, h) = decoded(&Pkt::echo_reply("fd00::2", "fd00::1", 77).build());
        assert_eq!(
            (outcome, h.transport, h.protocol),
            (Outcome::Judge, Transport::EchoReply, 58)
        );
        // Destination unreachable (type 3): counted, not judged.
        let unreachable = Pkt::ip_proto("10.0.0.1", "10.0.0.2", 1)
            .payload(&[3, 1, 0, 0, 0, 0, 0, 0])
            .build();
        assert_eq!(decoded(&unreachable).0, Outcome::IcmpNotEcho);
    }

    #[test]
    fn other_protocols_have_no_ports() {
        let (outcome, h) = decoded(
            &Pkt::ip_proto("10.0.0.1", "10.0.0.2", 47)
                .payload(&[0; 8])
                .build(),
        );
        assert_eq!(outcome, Outcome::Judge);
        assert_eq!(
            (h.transport, h.protocol, h.src_port, h.dst_port),
            (Transport::Other, 47, 0, 0)
        );
    }

    #[test]
    fn non_ip_frames() {
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.resize(60, 0);
        assert_eq!(decoded(&arp).0, Outcome::NotIp);
        // 802.3 length field (CDP, STP): not an EtherType.
        let mut llc = vec![
            0x01, 0, 0x0c, 0xcc, 0xcc, 0xcc, 2, 0, 0, 0, 0, 1, 0x00, 0x40,
        ];
        llc.resize(60, 0);
        assert_eq!(decoded(&llc).0, Outcome::NotIp);
    }

    #[test]
    fn snap_length_cuts_are_judged_from_the_headers_they_carry() {
        let frame = Pkt::tcp("10.0.0.1:5000", "10.0.0.2:443", tcp_flags::SYN)
            .payload(&[1; 100])
            .build();
        // Ethernet 14 + IPv4 20 + 14 bytes of TCP: ports and flags made it.
        let (outcome, h) = decoded(&frame[..48]);
        assert_eq!(
            (outcome, h.dst_port, h.tcp_flags),
            (Outcome::Judge, 443, tcp_flags::SYN)
        );
        // Only the ports made it.
        let (outcome, h) = decoded(&frame[..38]);
        assert_eq!((outcome, h.dst_port, h.tcp_flags), (Outcome::Judge, 443, 0));
        // Cut before the ports.
        assert_eq!(
            decoded(&frame[..36]).0,
            Outcome::Problem(Problem::TruncatedTransport)
        );
    }

    #[test]
    fn malformed_and_truncated_frames_are_counted_by_kind() {
        let frame = Pkt::tcp("10.0.0.1:5000", "10.0.0.2:443", tcp_flags::SYN).build();
        assert_eq!(
            decoded(&frame[..10]).0,
            Outcome::Problem(Problem::TruncatedLink)
        );
        assert_eq!(
            decoded(&frame[..20]).0,
            Outcome::Problem(Problem::TruncatedIp)
        );
        let mut bad_ihl = frame.clone();
        bad_ihl[14] = 0x43; // version 4, header length 3 words
        assert_eq!(decoded(&bad_ihl).0, Outcome::Problem(Problem::MalformedIp));
        let mut bad_version = frame.clone();
        bad_version[14] = 0x95;
        assert_eq!(
            decoded(&bad_version).0,
            Outcome::Problem(Problem::MalformedIp)
        );
        let mut bad_offset = frame.clone();
        bad_offset[14 + 20 + 12] = 0x20; // TCP data offset 2 words
        assert_eq!(
            decoded(&bad_offset).0,
            Outcome::Problem(Problem::MalformedTransport)
        );
        let tagged = Pkt::udp("10.0.0.1:1", "10.0.0.2:2").vlans(&[5]).build();
        assert_eq!(
            decoded(&tagged[..16]).0,
            Outcome::Problem(Problem::TruncatedLink)
        );
        let mut headers = Headers::default();
        assert_eq!(
            decode(LinkType(147), &frame, &mut headers),
            Outcome::Problem(Problem::UnsupportedLinkType)
        );
    }

    #[test]
    fn every_link_type_reaches_the_ip_header() {
        let eth = Pkt::udp("10.0.0.1:5000", "10.0.0.2:53").build();
        let ip = &eth[14..];
        let mut null_le = vec![2, 0, 0, 0];
        null_le.extend_from_slice(ip);
        let mut null_be = vec![0, 0, 0, 2];
        null_be.extend_from_slice(ip);
        let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(ip);
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
        ];
        sll2.extend_from_slice(ip);
        let cases: [(LinkType, &[u8]); 8] = [
            (LinkType::NULL, &null_le),
            (LinkType::NULL, &null_be),
            (LinkType::LOOP, &null_be),
            (LinkType::LINUX_SLL, &sll),
            (LinkType::LINUX_SLL2, &sll2),
            (LinkType::RAW, ip),
            (LinkType::RAW_BSD, ip),
            (LinkType::IPV4, ip),
        ];
        for (link, frame) in cases {
            let mut h = Headers::default();
            assert_eq!(decode(link, frame, &mut h), Outcome::Judge, "{link}");
            assert_eq!(h.dst_port, 53, "{link}");
        }
        let eth6 = Pkt::udp("[fd00::1]:5000", "[fd00::2]:53").build();
        let mut h = Headers::default();
        assert_eq!(decode(LinkType::IPV6, &eth6[14..], &mut h), Outcome::Judge);
        let mut null6 = vec![30, 0, 0, 0];
        null6.extend_from_slice(&eth6[14..]);
        assert_eq!(decode(LinkType::NULL, &null6, &mut h), Outcome::Judge);
        assert!(h.ipv6);
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_flip() {
        let frames = [
            Pkt::tcp("10.0.0.1:5000", "10.0.0.2:443", tcp_flags::SYN)
                .vlans(&[1, 2])
                .payload(&[1; 40])
                .build(),
            Pkt::udp("[fd00::1]:5000", "[fd00::2]:53")
                .ipv6_hop_by_hop()
                .payload(&[2; 40])
                .build(),
            Pkt::echo_request("fd00::1", "fd00::2", 9).build(),
        ];
        let links = [
            LinkType::ETHERNET,
            LinkType::NULL,
            LinkType::LINUX_SLL,
            LinkType::LINUX_SLL2,
            LinkType::RAW,
        ];
        let mut h = Headers::default();
        for frame in &frames {
            for cut in 0..=frame.len() {
                for link in links {
                    decode(link, &frame[..cut], &mut h);
                }
            }
            for i in 0..frame.len() {
                for bit in 0..8 {
                    let mut flipped = frame.clone();
                    flipped[i] ^= 1 << bit;
                    decode(LinkType::ETHERNET, &flipped, &mut h);
                }
            }
        }
    }
}
