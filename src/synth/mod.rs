//! Synthetic captures, built with etherparse's packet builder: the fixtures
//! of the tests, the bundled sample capture, the benchmark's large capture and
//! the demo's traffic.
//!
//! [`Pkt`] builds one frame (Ethernet, optional 802.1Q/QinQ tags, IPv4 or
//! IPv6, TCP/UDP/ICMP echo or any other protocol, optional fragmenting);
//! [`Capture`] collects timestamped frames and writes them as pcap or pcapng.
//! [`hospital`] generates realistic hospital traffic of any size; [`flood`] fills every
//! bound of the daemon at once (the memory sizing's input).

#![forbid(unsafe_code)]
// Fixtures are written by hand: a bad one is a bug in the test that wrote
// it, and failing loudly (`expect`) is the useful answer.
#![allow(clippy::expect_used)]

pub mod flood;
pub mod hospital;
pub mod policy;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use etherparse::{
    IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv4Options, Ipv6Extensions, Ipv6FragmentHeader,
    Ipv6Header, Ipv6RawExtHeader, PacketBuilder, TcpHeader, UdpHeader, VlanId,
};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;

pub use crate::wire::tcp_flags;

/// Which piece of a fragmented IP packet a [`Pkt`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fragment {
    /// The whole packet (not fragmented).
    Whole,
    /// The first fragment: the first `len` bytes of the IP payload (a
    /// multiple of 8), with more fragments to follow.
    First {
        /// Bytes of the IP payload carried (multiple of 8).
        len: usize,
    },
    /// A later fragment: the IP payload from byte `offset` (a multiple of 8)
    /// to the end.
    Rest {
        /// Offset of this fragment in the IP payload.
        offset: usize,
    },
}

#[derive(Clone, Debug)]
enum Proto {
    Tcp { flags: u8 },
    Udp,
    EchoRequest { id: u16 },
    EchoReply { id: u16 },
    Raw { protocol: u8 },
}

/// One frame under construction.
#[derive(Clone, Debug)]
pub struct Pkt {
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    proto: Proto,
    vlans: Vec<u16>,
    payload: Vec<u8>,
    fragment: Fragment,
    ipv4_options: Vec<u8>,
    ipv6_hop_by_hop: bool,
    /// Source and destination MAC addresses; locally administered
    /// 02:00:00:00:00:01 and :02 unless set.
    macs: Option<([u8; 6], [u8; 6])>,
    /// TCP sequence number; 1000 unless set.
    seq: u32,
    /// TCP acknowledgement number when the ACK flag is set; 1 unless set.
    ack: u32,
}

fn socket(addr: &str) -> SocketAddr {
    addr.parse()
        .unwrap_or_else(|_| panic!("synth: bad socket address {addr:?}"))
}

fn ip(addr: &str) -> IpAddr {
    addr.parse()
        .unwrap_or_else(|_| panic!("synth: bad IP address {addr:?}"))
}

impl Pkt {
    fn new(src: IpAddr, dst: IpAddr, src_port: u16, dst_port: u16, proto: Proto) -> Pkt {
        Pkt {
            src,
            dst,
            src_port,
            dst_port,
            proto,
            vlans: Vec::new(),
            payload: Vec::new(),
            fragment: Fragment::Whole,
            ipv4_options: Vec::new(),
            ipv6_hop_by_hop: false,
            macs: None,
            seq: 1000,
            ack: 1,
        }
    }

    /// A TCP segment from `src` to `dst` (`"10.0.0.1:5000"`, `"[fd00::1]:80"`)
    /// with `flags` (see [`tcp_flags`]).
    ///
    /// # Panics
    /// On an unparsable address: fixtures are written by hand.
    pub fn tcp(src: &str, dst: &str, flags: u8) -> Pkt {
        let (s, d) = (socket(src), socket(dst));
        Pkt::new(s.ip(), d.ip(), s.port(), d.port(), Proto::Tcp { flags })
    }

    /// A UDP datagram.
    ///
    /// # Panics
    /// On an unparsable address.
    pub fn udp(src: &str, dst: &str) -> Pkt {
        let (s, d) = (socket(src), socket(dst));
        Pkt::new(s.ip(), d.ip(), s.port(), d.port(), Proto::Udp)
    }

    /// An ICMP (IPv4) or ICMPv6 (IPv6) echo request with identifier `id`.
    ///
    /// # Panics
    /// On an unparsable address.
    pub fn echo_request(src: &str, dst: &str, id: u16) -> Pkt {
        Pkt::new(ip(src), ip(dst), 0, 0, Proto::EchoRequest { id })
    }

    /// An ICMP or ICMPv6 echo reply with identifier `id`.
    ///
    /// # Panics
    /// On an unparsable address.
    pub fn echo_reply(src: &str, dst: &str, id: u16) -> Pkt {
        Pkt::new(ip(src), ip(dst), 0, 0, Proto::EchoReply { id })
    }

    /// A packet of IP protocol `protocol` whose payload is opaque (GRE, ESP,
    /// SCTP, or ICMP messages other than echo when given raw bytes).
    ///
    /// # Panics
    /// On an unparsable address.
    pub fn ip_proto(src: &str, dst: &str, protocol: u8) -> Pkt {
        Pkt::new(ip(src), ip(dst), 0, 0, Proto::Raw { protocol })
    }

    /// With this TCP sequence number (1000 unless set), for streams whose
    /// bytes must follow each other.
    pub fn seq(mut self, seq: u32) -> Pkt {
        self.seq = seq;
        self
    }

    /// With this TCP acknowledgement number (1 unless set), sent when the
    /// ACK flag is.
    pub fn ack(mut self, ack: u32) -> Pkt {
        self.ack = ack;
        self
    }

    /// With these source and destination MAC addresses.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Pkt {
        self.macs = Some((src, dst));
        self
    }

    /// Tags the frame: one VLAN ID for 802.1Q, two for QinQ (outer first).
    pub fn vlans(mut self, vlans: &[u16]) -> Pkt {
        self.vlans = vlans.to_vec();
        self
    }

    /// Sets the transport payload.
    pub fn payload(mut self, payload: &[u8]) -> Pkt {
        self.payload = payload.to_vec();
        self
    }

    /// Makes this frame one fragment of the packet.
    pub fn fragment(mut self, fragment: Fragment) -> Pkt {
        self.fragment = fragment;
        self
    }

    /// Adds IPv4 options (a multiple of 4 bytes, at most 40).
    pub fn ipv4_options(mut self, options: &[u8]) -> Pkt {
        self.ipv4_options = options.to_vec();
        self
    }

    /// Adds an IPv6 hop-by-hop options extension header.
    pub fn ipv6_hop_by_hop(mut self) -> Pkt {
        self.ipv6_hop_by_hop = true;
        self
    }

    /// The transport header and payload: the IP payload before fragmenting.
    fn ip_payload(&self) -> (IpNumber, Vec<u8>) {
        let mut out = Vec::new();
        let number = match self.proto {
            Proto::Tcp { flags } => {
                let mut tcp = TcpHeader::new(self.src_port, self.dst_port, self.seq, 64_240);
                tcp.fin = flags & tcp_flags::FIN != 0;
                tcp.syn = flags & tcp_flags::SYN != 0;
                tcp.rst = flags & tcp_flags::RST != 0;
                tcp.psh = flags & 0x08 != 0;
                tcp.ack = flags & tcp_flags::ACK != 0;
                if tcp.ack {
                    tcp.acknowledgment_number = self.ack;
                }
                tcp.write(&mut out).ok();
                IpNumber::TCP
            }
            Proto::Udp => {
                let udp = UdpHeader {
                    source_port: self.src_port,
                    destination_port: self.dst_port,
                    length: (8 + self.payload.len()) as u16,
                    checksum: 0,
                };
                udp.write(&mut out).ok();
                IpNumber::UDP
            }
            Proto::EchoRequest { id } | Proto::EchoReply { id } => {
                let request = matches!(self.proto, Proto::EchoRequest { .. });
                let kind = match (self.src.is_ipv6(), request) {
                    (false, true) => 8,
                    (false, false) => 0,
                    (true, true) => 128,
                    (true, false) => 129,
                };
                out.extend_from_slice(&[kind, 0, 0, 0]);
                out.extend_from_slice(&id.to_be_bytes());
                out.extend_from_slice(&1u16.to_be_bytes());
                if self.src.is_ipv6() {
                    IpNumber::IPV6_ICMP
                } else {
                    IpNumber::ICMP
                }
            }
            Proto::Raw { protocol } => IpNumber(protocol),
        };
        out.extend_from_slice(&self.payload);
        (number, out)
    }

    /// The Ethernet frame.
    ///
    /// # Panics
    /// When the addresses mix families or a fragment's bounds are off.
    pub fn build(&self) -> Vec<u8> {
        let (number, whole) = self.ip_payload();
        let (bytes, offset, more) = match self.fragment {
            Fragment::Whole => (&whole[..], 0, false),
            Fragment::First { len } => (&whole[..len.min(whole.len())], 0, true),
            Fragment::Rest { offset } => (&whole[offset.min(whole.len())..], offset, false),
        };
        let offset = IpFragOffset::try_new((offset / 8) as u16).expect("fragment offset");
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let mut header = Ipv4Header::new(0, 64, number, src.octets(), dst.octets())
                    .expect("ipv4 header");
                header.more_fragments = more;
                header.fragment_offset = offset;
                header.identification = 0x4242;
                header.options = Ipv4Options::try_from(&self.ipv4_options[..]).expect("options");
                IpHeaders::Ipv4(header, Default::default())
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let header = Ipv6Header {
                    hop_limit: 64,
                    source: src.octets(),
                    destination: dst.octets(),
                    ..Ipv6Header::default()
                };
                let mut exts = Ipv6Extensions::default();
                if self.ipv6_hop_by_hop {
                    exts.hop_by_hop_options = Some(
                        Ipv6RawExtHeader::new_raw(number, &[1, 4, 0, 0, 0, 0]).expect("hop-by-hop"),
                    );
                }
                if self.fragment != Fragment::Whole {
                    exts.fragment = Some(Ipv6FragmentHeader::new(number, offset, more, 0x4242));
                }
                IpHeaders::Ipv6(header, exts)
            }
            _ => panic!("synth: source and destination of different families"),
        };
        let (src_mac, dst_mac) = self
            .macs
            .unwrap_or(([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]));
        let builder = PacketBuilder::ethernet2(src_mac, dst_mac);
        let mut frame = Vec::new();
        let written = match self.vlans[..] {
            [] => builder.ip(ip).write(&mut frame, number, bytes),
            [id] => builder
                .single_vlan(vlan(id))
                .ip(ip)
                .write(&mut frame, number, bytes),
            [outer, inner, ..] => builder
                .double_vlan(vlan(outer), vlan(inner))
                .ip(ip)
                .write(&mut frame, number, bytes),
        };
        written.expect("synth: packet builder");
        // Ethernet pads short frames to 60 bytes (64 with the FCS, which
        // captures leave out); decoders must take lengths from the IP header.
        if frame.len() < 60 {
            frame.resize(60, 0);
        }
        frame
    }
}

fn vlan(id: u16) -> VlanId {
    VlanId::try_new(id).expect("synth: VLAN ID above 4095")
}

/// Timestamp resolution of a written pcap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Microseconds (the common pcap).
    Micro,
    /// Nanoseconds.
    Nano,
}

/// Timestamped frames, written as a capture file.
#[derive(Clone, Debug, Default)]
pub struct Capture {
    frames: Vec<(u64, Vec<u8>)>,
}

/// Seconds, as nanoseconds: `at(1.5)` is 1.5 s after the fixture epoch.
pub fn at(seconds: f64) -> u64 {
    FIXTURE_EPOCH_NS + (seconds * 1e9).round() as u64
}

/// The capture time fixtures start at: 2026-11-28T08:00:00Z.
pub const FIXTURE_EPOCH_NS: u64 = 1_795_852_800_000_000_000;

impl Capture {
    /// An empty capture.
    pub fn new() -> Capture {
        Capture::default()
    }

    /// Appends a built frame at `ts_ns`.
    pub fn push(&mut self, ts_ns: u64, frame: Vec<u8>) -> &mut Capture {
        self.frames.push((ts_ns, frame));
        self
    }

    /// Appends `pkt` at `ts_ns`.
    pub fn add(&mut self, ts_ns: u64, pkt: &Pkt) -> &mut Capture {
        self.push(ts_ns, pkt.build())
    }

    /// The frames.
    pub fn frames(&self) -> &[(u64, Vec<u8>)] {
        &self.frames
    }

    /// The capture as classic pcap bytes (Ethernet, little-endian).
    pub fn to_pcap(&self, resolution: Resolution) -> Vec<u8> {
        let mut out = Vec::new();
        write_pcap(
            &mut out,
            resolution,
            self.frames.iter().map(|(t, f)| (*t, &f[..])),
        )
        .expect("writing to a Vec");
        out
    }

    /// The capture as pcapng bytes, one Ethernet interface with microsecond
    /// timestamps (the pcapng default).
    pub fn to_pcapng(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = PcapNgWriter::new(&mut out).expect("writing to a Vec");
        let interface = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65_535);
        writer
            .write_pcapng_block(interface)
            .expect("writing to a Vec");
        for (ts, frame) in &self.frames {
            // pcap-file 2.0.0 writes the timestamp's nanoseconds as the raw
            // value: give it microseconds to match the default if_tsresol.
            let block = EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(ts / 1_000),
                original_len: frame.len() as u32,
                data: frame[..].into(),
                options: vec![],
            };
            writer.write_pcapng_block(block).expect("writing to a Vec");
        }
        out
    }

    /// Writes the capture as classic pcap.
    pub fn write_pcap(&self, path: &Path, resolution: Resolution) -> std::io::Result<()> {
        std::fs::write(path, self.to_pcap(resolution))
    }
}

/// Writes Ethernet frames as classic little-endian pcap to `out`.
pub fn write_pcap<W: Write, F: AsRef<[u8]>>(
    out: W,
    resolution: Resolution,
    frames: impl IntoIterator<Item = (u64, F)>,
) -> std::io::Result<()> {
    let header = PcapHeader {
        ts_resolution: match resolution {
            Resolution::Micro => pcap_file::TsResolution::MicroSecond,
            Resolution::Nano => pcap_file::TsResolution::NanoSecond,
        },
        datalink: DataLink::ETHERNET,
        snaplen: 262_144,
        endianness: pcap_file::Endianness::Little,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(out, header).map_err(std::io::Error::other)?;
    for (ts, frame) in frames {
        let frame = frame.as_ref();
        let packet = PcapPacket::new(Duration::from_nanos(ts), frame.len() as u32, frame);
        writer
            .write_packet(&packet)
            .map_err(std::io::Error::other)?;
    }
    Ok(())
}
