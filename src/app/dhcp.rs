//! DHCP (RFC 2131/2132) over UDP 67/68: one message's fingerprint fields.
//!
//! Read: the BOOTP op, the client hardware address (chaddr, when it is an
//! Ethernet MAC), and the options 53 message type, 12 host name, 60 vendor
//! class identifier, 55 parameter request list (the ordered list is a
//! well-known device fingerprint: `1,3,6,15,31,33`) and 61 client identifier
//! (as hex). Option 52 (overload) is honoured: the `file` and `sname` fields
//! are then read as more options.
//!
//! Never kept: addresses other than yiaddr (the lease: the flow has the
//! others), relay agent information
//! (option 82: circuit and remote IDs), vendor-specific information (43),
//! and every other option.
//!
//! Layout (RFC 2131 2): op(1) htype(1) hlen(1) hops(1) xid(4) secs(2)
//! flags(2) ciaddr yiaddr siaddr giaddr(4 each) chaddr(16) at 28, sname(64)
//! at 44, file(128) at 108, magic cookie 99.130.83.99 at 236, options from
//! 240 as code(1), length(1), value; 0 pads, 255 ends.

use super::FlowPorts;
use super::bytes::{hex, printable_field};

/// The BOOTP server and client ports.
pub const SERVER_PORT: u16 = 67;
/// The BOOTP client port.
pub const CLIENT_PORT: u16 = 68;

/// The DHCP magic cookie (RFC 2131 3).
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// A fixed-layout view of a BOOTP/DHCP message.
///
/// After [`Packet::new_checked`] succeeds, no accessor panics.
#[derive(Clone, Copy, Debug)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

mod field {
    use std::ops::Range;
    pub const OP: usize = 0;
    pub const HTYPE: usize = 1;
    pub const HLEN: usize = 2;
    pub const YIADDR: Range<usize> = 16..20;
    pub const CHADDR: Range<usize> = 28..44;
    pub const SNAME: Range<usize> = 44..108;
    pub const FILE: Range<usize> = 108..236;
    pub const MAGIC: Range<usize> = 236..240;
    pub const OPTIONS: usize = 240;
}

/// Why bytes are not a DHCP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotDhcp {
    /// Shorter than the fixed part and the magic cookie.
    Truncated,
    /// The op, the hardware address length or the magic cookie is wrong.
    Malformed,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps bytes without a check; accessors may then panic.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps bytes after [`Packet::check`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, NotDhcp> {
        let packet = Packet::new_unchecked(buffer);
        packet.check()?;
        Ok(packet)
    }

    /// Checks the length, the op (1 request, 2 reply), the hardware address
    /// length (at most 16, the size of chaddr) and the magic cookie.
    pub fn check(&self) -> Result<(), NotDhcp> {
        let bytes = self.buffer.as_ref();
        if bytes.len() < field::OPTIONS {
            return Err(NotDhcp::Truncated);
        }
        let op_ok = matches!(bytes[field::OP], 1 | 2);
        if !op_ok || bytes[field::HLEN] > 16 || bytes[field::MAGIC] != MAGIC_COOKIE {
            return Err(NotDhcp::Malformed);
        }
        Ok(())
    }

    /// 1 BOOTREQUEST, 2 BOOTREPLY.
    #[inline]
    pub fn op(&self) -> u8 {
        self.buffer.as_ref()[field::OP]
    }

    /// The client hardware address when it is an Ethernet MAC (htype 1,
    /// hlen 6).
    #[inline]
    pub fn client_mac(&self) -> Option<[u8; 6]> {
        let bytes = self.buffer.as_ref();
        if bytes[field::HTYPE] != 1 || bytes[field::HLEN] != 6 {
            return None;
        }
        bytes[field::CHADDR].first_chunk::<6>().copied()
    }

    /// yiaddr: the address a server's offer or acknowledgement leases.
    #[inline]
    pub fn your_address(&self) -> u32 {
        let bytes = self.buffer.as_ref();
        bytes[field::YIADDR]
            .first_chunk::<4>()
            .map_or(0, |b| u32::from_be_bytes(*b))
    }

    /// The options field (after the magic cookie).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[field::OPTIONS..]
    }

    /// The `file` field (options when overloaded).
    #[inline]
    pub fn file(&self) -> &[u8] {
        &self.buffer.as_ref()[field::FILE]
    }

    /// The `sname` field (options when overloaded).
    #[inline]
    pub fn sname(&self) -> &[u8] {
        &self.buffer.as_ref()[field::SNAME]
    }
}

/// The DHCP message type (option 53; RFC 2132 9.6, RFC 4388, RFC 6926).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DhcpMessageType {
    /// 1
    Discover,
    /// 2
    Offer,
    /// 3
    Request,
    /// 4
    Decline,
    /// 5
    Ack,
    /// 6
    Nak,
    /// 7
    Release,
    /// 8
    Inform,
    /// Any other value (force-renew, lease query, ...).
    Other(u8),
}

impl DhcpMessageType {
    fn from_byte(byte: u8) -> DhcpMessageType {
        match byte {
            1 => DhcpMessageType::Discover,
            2 => DhcpMessageType::Offer,
            3 => DhcpMessageType::Request,
            4 => DhcpMessageType::Decline,
            5 => DhcpMessageType::Ack,
            6 => DhcpMessageType::Nak,
            7 => DhcpMessageType::Release,
            8 => DhcpMessageType::Inform,
            other => DhcpMessageType::Other(other),
        }
    }

    /// Stable lowercase name (`other` for an unnamed value).
    pub fn as_str(self) -> &'static str {
        match self {
            DhcpMessageType::Discover => "discover",
            DhcpMessageType::Offer => "offer",
            DhcpMessageType::Request => "request",
            DhcpMessageType::Decline => "decline",
            DhcpMessageType::Ack => "ack",
            DhcpMessageType::Nak => "nak",
            DhcpMessageType::Release => "release",
            DhcpMessageType::Inform => "inform",
            DhcpMessageType::Other(_) => "other",
        }
    }
}

/// What one DHCP message says about its client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhcpInfo {
    /// True for a BOOTREQUEST (client to server), false for a BOOTREPLY.
    pub request: bool,
    /// Option 53.
    pub message_type: Option<DhcpMessageType>,
    /// chaddr, when an Ethernet MAC.
    pub client_mac: Option<[u8; 6]>,
    /// yiaddr, when set: the address leased to `client_mac` (an ACK names
    /// it; behind a relay, the flow's addresses are the relay's).
    pub leased_address: Option<u32>,
    /// Option 12 host name.
    pub hostname: Option<String>,
    /// Option 60 vendor class identifier (`MSFT 5.0`, `ArubaAP`, ...).
    pub vendor_class: Option<String>,
    /// Option 55 parameter request list, codes in order: `1,3,6,42`.
    pub parameter_request_list: Option<String>,
    /// Option 61 client identifier as lowercase hex, its type byte first.
    pub client_id: Option<String>,
    /// An option ran past the end of its field: options after it were not
    /// read (a malformed or cut message).
    pub options_truncated: bool,
}

impl DhcpInfo {
    /// [`DhcpInfo::client_mac`] as `aa:bb:cc:dd:ee:ff`.
    pub fn client_mac_string(&self) -> Option<String> {
        self.client_mac.map(|m| {
            format!(
                "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            )
        })
    }
}

/// Option codes read.
mod option {
    pub const PAD: u8 = 0;
    pub const HOSTNAME: u8 = 12;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const VENDOR_CLASS: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    pub const END: u8 = 255;
}

/// Option values are at most 255 bytes, so no string grows beyond that.
const MAX_OPTION_TEXT: usize = 255;
/// A client identifier is kept up to this many bytes (a DUID is at most 130).
const MAX_CLIENT_ID_LEN: usize = 64;

/// True when DHCP may be carried between these ports (one of them is 67 or
/// 68): every other pair is `None` for [`parse`], whatever the bytes.
#[inline]
pub(crate) fn may_use_ports(ports: FlowPorts) -> bool {
    ports.either(SERVER_PORT) || ports.either(CLIENT_PORT)
}

/// Parses one DHCP message, if `datagram` is one: a port of the flow must be
/// 67 or 68 and the magic cookie must be in place.
pub fn parse(ports: FlowPorts, datagram: &[u8]) -> Option<DhcpInfo> {
    if !may_use_ports(ports) {
        return None;
    }
    let packet = Packet::new_checked(datagram).ok()?;
    let mut found = Options::default();
    found.read(packet.options());
    // RFC 2132 9.3: with overload, the file field (1), the sname field (2)
    // or both (3) hold more options, read after the options field.
    match found.overload {
        Some(1) => found.read(packet.file()),
        Some(2) => found.read(packet.sname()),
        Some(3) => {
            found.read(packet.file());
            found.read(packet.sname());
        }
        _ => {}
    }
    Some(DhcpInfo {
        request: packet.op() == 1,
        message_type: found.message_type.map(DhcpMessageType::from_byte),
        client_mac: packet.client_mac(),
        leased_address: Some(packet.your_address()).filter(|&a| a != 0),
        hostname: found
            .hostname
            .and_then(|v| printable_field(v, MAX_OPTION_TEXT)),
        vendor_class: found
            .vendor_class
            .and_then(|v| printable_field(v, MAX_OPTION_TEXT)),
        parameter_request_list: found.parameter_request_list.map(|codes| {
            codes
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(",")
        }),
        client_id: found
            .client_id
            .filter(|v| !v.is_empty())
            .map(|v| hex(v, MAX_CLIENT_ID_LEN)),
        options_truncated: found.truncated,
    })
}

/// The options read so far, borrowed; the first occurrence of each wins.
#[derive(Default)]
struct Options<'a> {
    message_type: Option<u8>,
    hostname: Option<&'a [u8]>,
    vendor_class: Option<&'a [u8]>,
    parameter_request_list: Option<&'a [u8]>,
    client_id: Option<&'a [u8]>,
    overload: Option<u8>,
    truncated: bool,
}

impl<'a> Options<'a> {
    /// Reads one field of options. Each option takes at least one byte, so
    /// the walk is bounded by the field's length.
    fn read(&mut self, mut field: &'a [u8]) {
        while let Some((&code, rest)) = field.split_first() {
            match code {
                option::PAD => {
                    field = rest;
                    continue;
                }
                option::END => return,
                _ => {}
            }
            let Some((&len, rest)) = rest.split_first() else {
                self.truncated = true;
                return;
            };
            let Some((value, rest)) = rest.split_at_checked(usize::from(len)) else {
                self.truncated = true;
                return;
            };
            field = rest;
            let slot = match code {
                option::HOSTNAME => &mut self.hostname,
                option::VENDOR_CLASS => &mut self.vendor_class,
                option::PARAMETER_REQUEST_LIST => &mut self.parameter_request_list,
                option::CLIENT_ID => &mut self.client_id,
                option::MESSAGE_TYPE => {
                    self.message_type = self.message_type.or(value.first().copied());
                    continue;
                }
                option::OVERLOAD => {
                    self.overload = self.overload.or(value.first().copied());
                    continue;
                }
                _ => continue,
            };
            slot.get_or_insert(value);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const CLIENT: FlowPorts = FlowPorts {
        client: 68,
        server: 67,
    };

    /// A BOOTREQUEST from 00:0b:82:01:fc:42 with these options.
    pub(crate) fn message(options: &[u8]) -> Vec<u8> {
        let mut bytes = vec![1, 1, 6, 0];
        bytes.extend_from_slice(&0x3d11u32.to_be_bytes()); // xid
        bytes.resize(28, 0);
        bytes.extend_from_slice(&[0x00, 0x0b, 0x82, 0x01, 0xfc, 0x42]);
        bytes.resize(236, 0);
        bytes.extend_from_slice(&MAGIC_COOKIE);
        bytes.extend_from_slice(options);
        bytes
    }

    pub(crate) fn discover() -> Vec<u8> {
        message(&[
            53, 1, 1, // DHCPDISCOVER
            61, 7, 1, 0x00, 0x0b, 0x82, 0x01, 0xfc, 0x42, // client id
            55, 6, 1, 3, 6, 15, 31, 33, // parameter request list
            12, 8, b'i', b'n', b'f', b'-', b'p', b'u', b'm', b'p', // host name
            60, 8, b'M', b'S', b'F', b'T', b' ', b'5', b'.', b'0', // vendor class
            82, 4, 1, 2, 0xaa, 0xbb, // relay agent info: not read
            255,
        ])
    }

    #[test]
    fn fingerprint_fields() {
        let info = parse(CLIENT, &discover()).unwrap();
        assert!(info.request);
        assert_eq!(info.message_type, Some(DhcpMessageType::Discover));
        assert_eq!(
            info.client_mac_string().as_deref(),
            Some("00:0b:82:01:fc:42")
        );
        assert_eq!(info.hostname.as_deref(), Some("inf-pump"));
        assert_eq!(info.vendor_class.as_deref(), Some("MSFT 5.0"));
        assert_eq!(
            info.parameter_request_list.as_deref(),
            Some("1,3,6,15,31,33")
        );
        assert_eq!(info.client_id.as_deref(), Some("01000b8201fc42"));
        assert!(!info.options_truncated);
    }

    #[test]
    fn overloaded_file_and_sname_hold_options() {
        let mut bytes = message(&[53, 1, 3, 52, 1, 3, 255]);
        bytes[108..112].copy_from_slice(&[12, 2, b'h', b'1']);
        bytes[112] = 255;
        bytes[44..50].copy_from_slice(&[60, 4, b'v', b'e', b'n', b'd']);
        let info = parse(CLIENT, &bytes).unwrap();
        assert_eq!(info.message_type, Some(DhcpMessageType::Request));
        assert_eq!(info.hostname.as_deref(), Some("h1"));
        assert_eq!(info.vendor_class.as_deref(), Some("vend"));
    }

    #[test]
    fn an_option_running_past_the_end_stops_the_walk() {
        let info = parse(
            CLIENT,
            &message(&[53, 1, 0x6a, 12, 3, b'a', b'b', b'c', 60, 49, b'M']),
        )
        .unwrap();
        assert_eq!(info.message_type, Some(DhcpMessageType::Other(0x6a)));
        assert_eq!(info.hostname.as_deref(), Some("abc"));
        assert_eq!(info.vendor_class, None);
        assert!(info.options_truncated);
    }

    #[test]
    fn not_dhcp() {
        let other_ports = FlowPorts {
            client: 5000,
            server: 53,
        };
        assert!(parse(other_ports, &discover()).is_none());
        let mut no_cookie = discover();
        no_cookie[236] = 0;
        assert!(parse(CLIENT, &no_cookie).is_none());
        let mut bad_op = discover();
        bad_op[0] = 3;
        assert!(parse(CLIENT, &bad_op).is_none());
        let mut long_hlen = discover();
        long_hlen[2] = 17;
        assert!(parse(CLIENT, &long_hlen).is_none());
        let mut non_ethernet = discover();
        non_ethernet[1] = 6;
        assert_eq!(parse(CLIENT, &non_ethernet).unwrap().client_mac, None);
        assert_eq!(
            Packet::new_checked(&[0u8; 239][..]).unwrap_err(),
            NotDhcp::Truncated
        );
    }

    #[test]
    fn every_cut_and_flip_never_panics() {
        let sample = discover();
        for cut in 0..=sample.len() {
            let parsed = parse(CLIENT, &sample[..cut]);
            assert_eq!(parsed.is_some(), cut >= 240, "cut {cut}");
        }
        for i in 0..sample.len() {
            for bit in 0..8 {
                let mut flipped = sample.clone();
                flipped[i] ^= 1 << bit;
                let _ = parse(CLIENT, &flipped);
            }
            let mut hostile = sample.clone();
            hostile[i] = 0xff;
            let _ = parse(CLIENT, &hostile);
        }
    }
}
