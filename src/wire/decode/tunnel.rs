//! Tunnels: which ones a frame is opened through, and their headers.
//!
//! ERSPAN (types I, II and III, over GRE) is always opened: it exists only to
//! carry mirrored frames, so the frame inside is the traffic to judge.
//! VXLAN, Geneve and plain GRE also carry real traffic between real hosts
//! (a site-to-site tunnel, an overlay): they are opened only when the
//! [`Decapsulation`] setting names them, and otherwise judged as the `udp`
//! or `gre` packets they are.
//!
//! A tunnel header that does not parse (cut, unknown version, GRE with
//! source routing) leaves the packet judged as the outer `udp` or `gre`
//! packet, as a dissector that fails to decode it shows the outer packet;
//! once a header parses, what is inside is the packet, and a problem inside
//! it is counted as that problem.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use etherparse::EtherType;
use ipnetwork::IpNetwork;

use super::Headers;
use super::link::TRANSPARENT_ETHERNET;

/// UDP destination port of VXLAN (RFC 7348).
pub const VXLAN_PORT: u16 = 4789;
/// UDP destination port of Geneve (RFC 8926).
pub const GENEVE_PORT: u16 = 6081;

/// GRE protocol types of ERSPAN: type I and II share 0x88BE (type I has no
/// GRE sequence number and no ERSPAN header), type III has its own.
const ERSPAN_I_II: u16 = 0x88be;
const ERSPAN_III: u16 = 0x22eb;

/// Which kind of tunnel a packet was taken out of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum TunnelKind {
    /// Not decapsulated.
    #[default]
    None,
    /// VXLAN (UDP 4789); the ID is the 24-bit VNI.
    Vxlan,
    /// Geneve (UDP 6081); the ID is the 24-bit VNI.
    Geneve,
    /// GRE carrying IPv4, IPv6, MPLS or Ethernet (transparent Ethernet
    /// bridging, 0x6558, as NVGRE uses); the ID is the GRE key when present.
    Gre,
    /// ERSPAN type I, II or III; the ID is the 10-bit session ID (type I
    /// has none).
    Erspan,
}

impl TunnelKind {
    /// Stable lowercase name, for events, summaries and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::None => "none",
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
            TunnelKind::Erspan => "erspan",
        }
    }
}

impl fmt::Display for TunnelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tunnel a decoded packet came out of: the innermost one, when tunnels
/// nest. [`Tunnel::default`] (kind [`TunnelKind::None`]) when the packet
/// was not decapsulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Tunnel {
    /// What kind of tunnel.
    pub kind: TunnelKind,
    /// VNI (VXLAN with its I flag set, Geneve), GRE key, or ERSPAN session
    /// ID; `None` when the header carries none.
    pub id: Option<u32>,
    /// True when the outer endpoints are IPv6.
    pub outer_ipv6: bool,
    /// The outer source address (see [`Headers::src`] for the encoding).
    pub outer_src: u128,
    /// The outer destination address.
    pub outer_dst: u128,
}

impl Tunnel {
    /// No tunnel.
    pub const NONE: Tunnel = Tunnel {
        kind: TunnelKind::None,
        id: None,
        outer_ipv6: false,
        outer_src: 0,
        outer_dst: 0,
    };

    /// True when the packet was taken out of a tunnel.
    #[inline]
    pub fn is_some(&self) -> bool {
        self.kind != TunnelKind::None
    }
}

/// Which tunnels besides ERSPAN the decoder opens. The default opens none:
/// VXLAN, Geneve and GRE packets are then judged as `udp` and `gre`.
///
/// Built once by the control plane and read, never changed, per packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decapsulation {
    /// Open VXLAN: UDP to port 4789.
    pub vxlan: bool,
    /// Open Geneve: UDP to port 6081.
    pub geneve: bool,
    /// Open GRE carrying IPv4, IPv6, MPLS or Ethernet.
    pub gre: bool,
    /// When not empty, open those tunnels only where the outer source or
    /// destination address falls in one of these networks (the tunnel
    /// endpoints of a mirror session or an overlay); ERSPAN is opened
    /// whatever its endpoints.
    pub endpoints: Vec<IpNetwork>,
}

impl Decapsulation {
    /// Opens nothing but ERSPAN.
    pub const NONE: Decapsulation = Decapsulation {
        vxlan: false,
        geneve: false,
        gre: false,
        endpoints: Vec::new(),
    };

    /// [`Decapsulation::NONE`], borrowed for as long as needed.
    pub fn none() -> &'static Decapsulation {
        static NONE: Decapsulation = Decapsulation::NONE;
        &NONE
    }

    /// Opens VXLAN, Geneve and GRE, whatever their endpoints.
    pub fn all() -> Decapsulation {
        Decapsulation {
            vxlan: true,
            geneve: true,
            gre: true,
            endpoints: Vec::new(),
        }
    }

    /// Limits decapsulation to tunnels with an endpoint in `endpoints`.
    pub fn with_endpoints(mut self, endpoints: Vec<IpNetwork>) -> Decapsulation {
        self.endpoints = endpoints;
        self
    }

    /// True when no tunnel besides ERSPAN is opened.
    pub fn is_none(&self) -> bool {
        !(self.vxlan || self.geneve || self.gre)
    }

    /// True when a UDP datagram to `port` may be a tunnel to open (the
    /// endpoints are checked later, on the general path).
    #[inline]
    pub(super) fn may_open_udp(&self, port: u16) -> bool {
        (self.vxlan && port == VXLAN_PORT) || (self.geneve && port == GENEVE_PORT)
    }

    /// True when a tunnel between the outer addresses of `outer` may be
    /// opened.
    fn admits(&self, outer: &Headers) -> bool {
        self.endpoints.is_empty()
            || [outer.src, outer.dst].into_iter().any(|addr| {
                let addr = to_ip(outer.ipv6, addr);
                self.endpoints.iter().any(|net| net.contains(addr))
            })
    }
}

fn to_ip(ipv6: bool, addr: u128) -> IpAddr {
    if ipv6 {
        IpAddr::V6(addr.into())
    } else {
        // An IPv4 address is kept in the low 32 bits.
        IpAddr::V4((addr as u32).into())
    }
}

/// The tunnel names `decapsulate` settings take: `none`, `all`, or a comma-
/// separated list of `vxlan`, `geneve` and `gre`.
impl FromStr for Decapsulation {
    type Err = UnknownTunnelKind;

    fn from_str(list: &str) -> Result<Decapsulation, UnknownTunnelKind> {
        let mut decap = Decapsulation::NONE;
        for name in list.split(',').map(str::trim) {
            match name {
                "none" => {}
                "all" => decap = Decapsulation::all(),
                "vxlan" => decap.vxlan = true,
                "geneve" => decap.geneve = true,
                "gre" => decap.gre = true,
                other => {
                    return Err(UnknownTunnelKind {
                        name: other.to_owned(),
                    });
                }
            }
        }
        Ok(decap)
    }
}

/// A tunnel name that [`Decapsulation::from_str`] does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown tunnel kind `{name}`: expected vxlan, geneve or gre (comma-separated), all or none"
)]
pub struct UnknownTunnelKind {
    /// The name as given.
    pub name: String,
}

/// A tunnel header that parsed: what it carries, from where.
pub(super) struct Opened<'a> {
    pub tunnel: Tunnel,
    /// [`TRANSPARENT_ETHERNET`] for an Ethernet frame, or the EtherType of
    /// what follows (IPv4, IPv6, MPLS).
    pub ether_type: EtherType,
    pub inner: &'a [u8],
}

/// Reads the header of a tunnel carried in UDP to `dst_port`; `None` when
/// it is not one to open (not asked for, endpoints outside the setting's,
/// or a header that does not parse).
pub(super) fn open_udp<'a>(
    decap: &Decapsulation,
    outer: &Headers,
    payload: &'a [u8],
) -> Option<Opened<'a>> {
    if !decap.may_open_udp(outer.dst_port) || !decap.admits(outer) {
        return None;
    }
    let (kind, id, ether_type, inner) = if outer.dst_port == VXLAN_PORT {
        // flags (8, I = 0x08: the VNI is valid), reserved (24), VNI (24),
        // reserved (8); an Ethernet frame follows.
        let (header, inner) = payload.split_first_chunk::<8>()?;
        let vni = u32::from_be_bytes([0, header[4], header[5], header[6]]);
        let id = (header[0] & 0x08 != 0).then_some(vni);
        (TunnelKind::Vxlan, id, TRANSPARENT_ETHERNET, inner)
    } else {
        // version (2) and options length in words (6), flags (8), protocol
        // type (16), VNI (24), reserved (8), then the options.
        let (header, _) = payload.split_first_chunk::<8>()?;
        if header[0] >> 6 != 0 {
            // RFC 8926: a packet of an unknown version is not parsed.
            return None;
        }
        let options_len = usize::from(header[0] & 0x3f) * 4;
        let inner = payload.get(8 + options_len..)?;
        let protocol = EtherType(u16::from_be_bytes([header[2], header[3]]));
        let vni = u32::from_be_bytes([0, header[4], header[5], header[6]]);
        (TunnelKind::Geneve, Some(vni), protocol, inner)
    };
    Some(Opened {
        tunnel: tunnel_of(kind, id, outer),
        ether_type,
        inner,
    })
}

/// Reads a GRE header (RFC 2784, with the key and sequence number of RFC
/// 2890): ERSPAN inside is always opened, IPv4, IPv6, MPLS and Ethernet
/// only when the setting asks for GRE. `None` for anything else, which is
/// judged as a `gre` packet.
pub(super) fn open_gre<'a>(
    decap: &Decapsulation,
    outer: &Headers,
    segment: &'a [u8],
) -> Option<Opened<'a>> {
    const CHECKSUM: u16 = 0x8000;
    const ROUTING: u16 = 0x4000;
    const KEY: u16 = 0x2000;
    const SEQUENCE: u16 = 0x1000;
    const VERSION: u16 = 0x0007;
    let (header, mut rest) = segment.split_first_chunk::<4>()?;
    let flags = u16::from_be_bytes([header[0], header[1]]);
    let protocol = u16::from_be_bytes([header[2], header[3]]);
    // Version 1 is PPTP's enhanced GRE (PPP inside); source routing (RFC
    // 1701) is deprecated and nothing sends it.
    if flags & (ROUTING | VERSION) != 0 {
        return None;
    }
    if flags & CHECKSUM != 0 {
        rest = rest.get(4..)?;
    }
    let mut key = None;
    if flags & KEY != 0 {
        let (k, after) = rest.split_first_chunk::<4>()?;
        key = Some(u32::from_be_bytes(*k));
        rest = after;
    }
    let sequenced = flags & SEQUENCE != 0;
    if sequenced {
        rest = rest.get(4..)?;
    }
    match protocol {
        ERSPAN_I_II | ERSPAN_III => {
            let (session, inner) = if protocol == ERSPAN_I_II && !sequenced {
                // Type I: the mirrored frame follows the GRE header.
                (None, rest)
            } else {
                erspan_header(rest)?
            };
            Some(Opened {
                tunnel: tunnel_of(TunnelKind::Erspan, session, outer),
                ether_type: TRANSPARENT_ETHERNET,
                inner,
            })
        }
        0x0800 | 0x86dd | 0x8847 | 0x8848 | 0x6558 if decap.gre && decap.admits(outer) => {
            Some(Opened {
                tunnel: tunnel_of(TunnelKind::Gre, key, outer),
                ether_type: EtherType(protocol),
                inner: rest,
            })
        }
        _ => None,
    }
}

/// The ERSPAN type II or III header: its session ID and the mirrored
/// Ethernet frame after it. The version field says which type it is.
fn erspan_header(rest: &[u8]) -> Option<(Option<u32>, &[u8])> {
    // version (4), VLAN (12), class of service (3), encapsulation or
    // bad/short/oversized (2), truncated (1), session ID (10), then 20 bits
    // of index (type II) or a timestamp and more flags (type III).
    let (header, _) = rest.split_first_chunk::<4>()?;
    let session = u32::from(u16::from_be_bytes([header[2], header[3]]) & 0x03ff);
    match header[0] >> 4 {
        1 => Some((Some(session), rest.get(8..)?)),
        2 => {
            // Type III: timestamp (32), security group tag (16), P (1),
            // frame type (5), hardware ID (6), direction (1), granularity
            // (2), O (1): an 8-byte platform-specific subheader follows.
            let (header, _) = rest.split_first_chunk::<12>()?;
            let frame_type = (header[10] >> 2) & 0x1f;
            if frame_type != 0 {
                // Not an Ethernet frame (type 2 is a bare IP packet, which
                // no switch is known to send): left as GRE.
                return None;
            }
            let len = if header[11] & 0x01 != 0 { 20 } else { 12 };
            Some((Some(session), rest.get(len..)?))
        }
        _ => None,
    }
}

fn tunnel_of(kind: TunnelKind, id: Option<u32>, outer: &Headers) -> Tunnel {
    Tunnel {
        kind,
        id,
        outer_ipv6: outer.ipv6,
        outer_src: outer.src,
        outer_dst: outer.dst,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        Decapsulation, Headers, MAX_TUNNELS, Outcome, Problem, Split, Transport, TunnelKind,
        decode, decode_general, decode_split, decode_with,
    };
    use super::*;
    use crate::synth::Pkt;
    use crate::wire::LinkType;

    fn v4(addr: &str) -> u128 {
        u32::from(addr.parse::<std::net::Ipv4Addr>().unwrap()).into()
    }

    fn decoded_with(decap: &Decapsulation, frame: &[u8]) -> (Outcome, Headers) {
        let mut headers = Headers::default();
        let outcome = decode_with(LinkType::ETHERNET, frame, decap, &mut headers);
        // The hand-read common case and the general path agree.
        let mut reference = Headers::default();
        let reference_outcome = decode_general(LinkType::ETHERNET, frame, decap, &mut reference);
        assert_eq!(outcome, reference_outcome);
        if outcome == Outcome::Judge {
            assert_eq!(headers, reference);
        }
        // So does the split decoder, which says the common path opened no
        // tunnel only when none was.
        let mut split_headers = Headers::default();
        split_headers.tunnel.kind = TunnelKind::Gre; // stale from an earlier frame
        let split = decode_split(LinkType::ETHERNET, frame, decap, &mut split_headers);
        assert_eq!(split.outcome(), outcome);
        if let Split::Untunnelled(_) = split {
            // No tunnel, and the earlier frame's left alone.
            assert_eq!(headers.tunnel, Tunnel::NONE);
            assert_eq!(split_headers.tunnel.kind, TunnelKind::Gre);
            split_headers.tunnel = Tunnel::NONE;
        }
        if outcome == Outcome::Judge {
            assert_eq!(split_headers, headers);
        }
        (outcome, headers)
    }

    /// The mirrored or overlay traffic: an HL7 segment between two hosts,
    /// on VLAN 30.
    fn inner_frame() -> Vec<u8> {
        Pkt::tcp("10.1.0.5:40000", "10.1.0.9:2575", 0x18)
            .vlans(&[30])
            .payload(b"MSH|^~\\&|LAB")
            .build()
    }

    fn vxlan(flags: u8, vni: u32, inner: &[u8]) -> Vec<u8> {
        let vni = vni.to_be_bytes();
        let mut out = vec![flags, 0, 0, 0, vni[1], vni[2], vni[3], 0];
        out.extend_from_slice(inner);
        out
    }

    fn geneve(options: &[u8], protocol: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
        let vni = vni.to_be_bytes();
        let mut out = vec![(options.len() / 4) as u8, 0];
        out.extend_from_slice(&protocol.to_be_bytes());
        out.extend_from_slice(&[vni[1], vni[2], vni[3], 0]);
        out.extend_from_slice(options);
        out.extend_from_slice(inner);
        out
    }

    fn gre(flags: u16, protocol: u16, extra: &[u8], inner: &[u8]) -> Vec<u8> {
        let mut out = flags.to_be_bytes().to_vec();
        out.extend_from_slice(&protocol.to_be_bytes());
        out.extend_from_slice(extra);
        out.extend_from_slice(inner);
        out
    }

    fn over_udp(port: u16, payload: &[u8]) -> Vec<u8> {
        Pkt::udp("192.0.2.1:49152", &format!("192.0.2.2:{port}"))
            .payload(payload)
            .build()
    }

    fn over_gre(payload: &[u8]) -> Vec<u8> {
        Pkt::ip_proto("192.0.2.1", "192.0.2.2", 47)
            .payload(payload)
            .build()
    }

    fn erspan_ii(session: u16, inner: &[u8]) -> Vec<u8> {
        let mut header = vec![0x10, 30, 0x18 | (session >> 8) as u8, session as u8];
        header.extend_from_slice(&[0, 0, 0, 7]); // index
        header.extend_from_slice(inner);
        gre(0x1000, ERSPAN_I_II, &[0, 0, 0, 1], &header)
    }

    fn erspan_iii(session: u16, subheader: bool, frame_type: u8, inner: &[u8]) -> Vec<u8> {
        let mut header = vec![0x20, 30, (session >> 8) as u8, session as u8];
        header.extend_from_slice(&[1, 2, 3, 4]); // timestamp
        header.extend_from_slice(&[0, 0]); // security group tag
        header.push(frame_type << 2);
        header.push(u8::from(subheader));
        if subheader {
            header.extend_from_slice(&[9; 8]);
        }
        header.extend_from_slice(inner);
        gre(0x1000, ERSPAN_III, &[0, 0, 0, 1], &header)
    }

    fn assert_inner(outcome: Outcome, h: &Headers, kind: TunnelKind, id: Option<u32>) {
        assert_eq!(outcome, Outcome::Judge, "{kind}");
        assert_eq!(
            (h.src, h.dst, h.src_port, h.dst_port, h.transport),
            (v4("10.1.0.5"), v4("10.1.0.9"), 40000, 2575, Transport::Tcp),
            "{kind}"
        );
        assert_eq!(h.vlan, 30, "{kind}: the inner frame's VLAN");
        assert_eq!(
            h.tunnel,
            Tunnel {
                kind,
                id,
                outer_ipv6: false,
                outer_src: v4("192.0.2.1"),
                outer_dst: v4("192.0.2.2"),
            }
        );
    }

    #[test]
    fn erspan_is_always_opened() {
        let inner = inner_frame();
        for (frame, id) in [
            (over_gre(&erspan_ii(300, &inner)), Some(300)),
            (over_gre(&erspan_iii(1023, false, 0, &inner)), Some(1023)),
            (over_gre(&erspan_iii(5, true, 0, &inner)), Some(5)),
            // Type I: no sequence number, no ERSPAN header.
            (over_gre(&gre(0, ERSPAN_I_II, &[], &inner)), None),
        ] {
            for decap in [Decapsulation::NONE, Decapsulation::all()] {
                let (outcome, h) = decoded_with(&decap, &frame);
                assert_inner(outcome, &h, TunnelKind::Erspan, id);
                // The payload is found where it lies in the outer frame.
                let at = h.payload_offset as usize;
                assert_eq!(&frame[at..at + h.payload_len as usize], b"MSH|^~\\&|LAB");
            }
            let mut h = Headers::default();
            assert_eq!(decode(LinkType::ETHERNET, &frame, &mut h), Outcome::Judge);
            assert_eq!(h.tunnel.kind, TunnelKind::Erspan);
        }
    }

    #[test]
    fn vxlan_geneve_and_gre_are_opened_only_when_asked() {
        let inner = inner_frame();
        let ip = &inner[18..]; // after Ethernet and the tag
        let cases = [
            (
                over_udp(VXLAN_PORT, &vxlan(0x08, 5001, &inner)),
                TunnelKind::Vxlan,
                Some(5001),
            ),
            (
                over_udp(GENEVE_PORT, &geneve(&[], 0x6558, 77, &inner)),
                TunnelKind::Geneve,
                Some(77),
            ),
            (
                over_udp(
                    GENEVE_PORT,
                    &geneve(&[0, 1, 2, 1, 9, 9, 9, 9], 0x6558, 78, &inner),
                ),
                TunnelKind::Geneve,
                Some(78),
            ),
            (
                over_gre(&gre(0x2000, 0x6558, &[0, 0, 0, 42], &inner)),
                TunnelKind::Gre,
                Some(42),
            ),
        ];
        for (frame, kind, id) in &cases {
            let (outcome, h) = decoded_with(&Decapsulation::all(), frame);
            assert_inner(outcome, &h, *kind, *id);
            // Off by default: judged as the outer packet, as before.
            let (outcome, h) = decoded_with(&Decapsulation::NONE, frame);
            assert_eq!(outcome, Outcome::Judge);
            assert_eq!((h.src, h.dst), (v4("192.0.2.1"), v4("192.0.2.2")));
            assert!(!h.tunnel.is_some());
            // Asked for another kind only: judged as the outer packet.
            let others = Decapsulation {
                vxlan: *kind != TunnelKind::Vxlan,
                geneve: *kind != TunnelKind::Geneve,
                gre: *kind != TunnelKind::Gre,
                endpoints: Vec::new(),
            };
            let (_, h) = decoded_with(&others, frame);
            assert_eq!(h.src, v4("192.0.2.1"), "{kind}");
        }
        // GRE and Geneve carrying IP directly: no inner VLAN.
        for frame in [
            over_gre(&gre(0, 0x0800, &[], ip)),
            over_gre(&gre(0x8000 | 0x1000, 0x0800, &[0; 8], ip)), // checksum, sequence
            over_udp(GENEVE_PORT, &geneve(&[], 0x0800, 9, ip)),
        ] {
            let (outcome, h) = decoded_with(&Decapsulation::all(), &frame);
            assert_eq!((outcome, h.dst_port, h.vlan), (Outcome::Judge, 2575, 0));
            assert!(h.tunnel.is_some());
        }
        // VXLAN without the I flag: the VNI is not valid.
        let frame = over_udp(VXLAN_PORT, &vxlan(0, 5001, &inner));
        let (outcome, h) = decoded_with(&Decapsulation::all(), &frame);
        assert_inner(outcome, &h, TunnelKind::Vxlan, None);
    }

    #[test]
    fn endpoint_networks_limit_what_is_opened() {
        let frame = over_udp(VXLAN_PORT, &vxlan(0x08, 5001, &inner_frame()));
        let limited = |nets: &[&str]| {
            Decapsulation::all().with_endpoints(nets.iter().map(|n| n.parse().unwrap()).collect())
        };
        // Either endpoint counts.
        for nets in [
            &["192.0.2.2/32"][..],
            &["192.0.2.0/24"],
            &["198.51.100.0/24", "192.0.2.1/32"],
        ] {
            let (_, h) = decoded_with(&limited(nets), &frame);
            assert_eq!(h.tunnel.kind, TunnelKind::Vxlan, "{nets:?}");
        }
        for nets in [&["198.51.100.0/24"][..], &["fd00::/8"]] {
            let (outcome, h) = decoded_with(&limited(nets), &frame);
            assert_eq!((outcome, h.tunnel.kind), (Outcome::Judge, TunnelKind::None));
            assert_eq!(h.dst_port, VXLAN_PORT);
        }
        // ERSPAN is opened whatever its endpoints.
        let frame = over_gre(&erspan_ii(1, &inner_frame()));
        let (_, h) = decoded_with(&limited(&["198.51.100.0/24"]), &frame);
        assert_eq!(h.tunnel.kind, TunnelKind::Erspan);
    }

    #[test]
    fn headers_that_do_not_parse_leave_the_outer_packet() {
        let inner = inner_frame();
        for frame in [
            over_udp(VXLAN_PORT, &[0x08, 0, 0]), // cut VXLAN header
            over_udp(GENEVE_PORT, &geneve(&[], 0x6558, 1, &inner)[..6]), // cut Geneve
            over_udp(GENEVE_PORT, &{
                let mut g = geneve(&[], 0x6558, 1, &inner);
                g[0] |= 0x40; // version 1
                g
            }),
            over_udp(GENEVE_PORT, &{
                let mut g = geneve(&[], 0x6558, 1, &inner);
                g[0] = 63; // 252 bytes of options: more than the datagram holds
                g.truncate(100);
                g
            }),
            over_gre(&gre(0x4000, 0x0800, &[0; 4], &inner)), // source routing
            over_gre(&gre(0x0001, 0x880b, &[0; 4], &inner)), // PPTP, version 1
            over_gre(&gre(0x2000, 0x0800, &[0, 0], &[])),    // cut key
            over_gre(&gre(0, 0x880b, &[], &inner)),          // PPP: not opened
            over_gre(&erspan_ii(1, &inner)[..10]),           // cut ERSPAN header
            over_gre(&erspan_iii(1, false, 2, &inner)),      // ERSPAN III, not Ethernet
            over_gre(&{
                let mut e = erspan_ii(1, &inner);
                e[8] = 0x30; // ERSPAN version 3: unknown
                e
            }),
        ] {
            let (outcome, h) = decoded_with(&Decapsulation::all(), &frame);
            assert_eq!(outcome, Outcome::Judge, "{frame:02x?}");
            assert_eq!((h.src, h.dst), (v4("192.0.2.1"), v4("192.0.2.2")));
            assert!(!h.tunnel.is_some());
        }
    }

    #[test]
    fn problems_inside_an_opened_tunnel_are_that_packets_problems() {
        let inner = inner_frame();
        let frame = over_udp(VXLAN_PORT, &vxlan(0x08, 1, &inner));
        let inner_at = frame.len() - inner.len();
        let (outcome, _) = decoded_with(&Decapsulation::all(), &frame[..inner_at + 10]);
        assert_eq!(outcome, Outcome::Problem(Problem::TruncatedLink));
        let (outcome, _) = decoded_with(&Decapsulation::all(), &frame[..inner_at + 18 + 10]);
        assert_eq!(outcome, Outcome::Problem(Problem::TruncatedIp));
        // Cut inside the inner TCP header after the ports: judged by them.
        let (outcome, h) = decoded_with(&Decapsulation::all(), &frame[..inner_at + 18 + 20 + 4]);
        assert_eq!((outcome, h.dst_port), (Outcome::Judge, 2575));
        // ARP inside the overlay.
        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.resize(60, 0);
        let frame = over_udp(VXLAN_PORT, &vxlan(0x08, 1, &arp));
        assert_eq!(
            decoded_with(&Decapsulation::all(), &frame).0,
            Outcome::NotIp
        );
    }

    #[test]
    fn nesting_is_bounded_and_the_packet_at_the_bound_is_judged_as_it_is() {
        // A VXLAN packet inside ERSPAN: the mirror of overlay traffic.
        let overlay = over_udp(VXLAN_PORT, &vxlan(0x08, 5001, &inner_frame()));
        let mirrored = over_gre(&erspan_ii(7, &overlay));
        let (_, h) = decoded_with(&Decapsulation::NONE, &mirrored);
        assert_eq!(
            (h.tunnel.kind, h.dst_port),
            (TunnelKind::Erspan, VXLAN_PORT)
        );
        let (outcome, h) = decoded_with(&Decapsulation::all(), &mirrored);
        // The innermost tunnel is reported.
        assert_inner(outcome, &h, TunnelKind::Vxlan, Some(5001));

        // ERSPAN inside ERSPAN inside ...: MAX_TUNNELS are opened, the rest
        // is judged as the `gre` packet it is.
        let mut frame = inner_frame();
        for _ in 0..MAX_TUNNELS + 2 {
            frame = over_gre(&erspan_ii(1, &frame));
        }
        let (outcome, h) = decoded_with(&Decapsulation::all(), &frame);
        assert_eq!(
            (outcome, h.protocol, h.tunnel.kind),
            (Outcome::Judge, 47, TunnelKind::Erspan)
        );
    }

    #[test]
    fn ipv6_outer_endpoints() {
        let frame = Pkt::udp("[2001:db8::1]:40000", "[2001:db8::2]:4789")
            .payload(&vxlan(0x08, 9, &inner_frame()))
            .build();
        let (outcome, h) = decoded_with(&Decapsulation::all(), &frame);
        assert_eq!(outcome, Outcome::Judge);
        assert!(h.tunnel.outer_ipv6 && !h.ipv6);
        assert_eq!(
            h.tunnel.outer_dst,
            u128::from("2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap())
        );
        let limited = Decapsulation::all().with_endpoints(vec!["2001:db8::/64".parse().unwrap()]);
        assert_eq!(
            decoded_with(&limited, &frame).1.tunnel.kind,
            TunnelKind::Vxlan
        );
    }

    #[test]
    fn settings_parse_from_names() {
        assert_eq!(
            "none".parse::<Decapsulation>().unwrap(),
            Decapsulation::NONE
        );
        assert_eq!(
            "all".parse::<Decapsulation>().unwrap(),
            Decapsulation::all()
        );
        let some: Decapsulation = "vxlan, gre".parse().unwrap();
        assert!(some.vxlan && some.gre && !some.geneve);
        let error = "vxlan,ipip".parse::<Decapsulation>().unwrap_err();
        assert_eq!(error.name, "ipip");
        assert!(error.to_string().starts_with("unknown tunnel kind `ipip`"));
    }

    #[test]
    fn tunnel_frames_cut_anywhere_or_flipped_never_panic() {
        let inner = inner_frame();
        let frames = [
            over_udp(VXLAN_PORT, &vxlan(0x08, 5001, &inner)),
            over_udp(
                GENEVE_PORT,
                &geneve(&[0, 1, 2, 1, 9, 9, 9, 9], 0x6558, 78, &inner),
            ),
            over_gre(&gre(0xb000, 0x6558, &[0; 12], &inner)),
            over_gre(&erspan_iii(5, true, 0, &inner)),
        ];
        let all = Decapsulation::all();
        for frame in &frames {
            for cut in 0..=frame.len() {
                decoded_with(&all, &frame[..cut]);
            }
            for i in 0..frame.len() {
                for bit in 0..8 {
                    let mut flipped = frame.clone();
                    flipped[i] ^= 1 << bit;
                    decoded_with(&all, &flipped);
                }
            }
        }
    }
}
