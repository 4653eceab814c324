//! Link-layer types of capture files (the LINKTYPE_* registry of tcpdump.org).

use std::fmt;

/// A capture's link-layer header type, as stored in a pcap header or a pcapng
/// interface description block.
///
/// Unknown values are kept, so a frame of an unsupported link type can be
/// counted by its number instead of being rejected with the whole file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u32);

impl LinkType {
    /// BSD loopback: a 4-byte address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet II, possibly with 802.1Q/802.1ad tags.
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP as some platforms number it (DLT_RAW = 12 on most BSDs).
    pub const RAW_BSD: LinkType = LinkType(12);
    /// Raw IP as OpenBSD numbers it (DLT_RAW = 14).
    pub const RAW_OPENBSD: LinkType = LinkType(14);
    /// Raw IP (LINKTYPE_RAW): the frame starts with an IPv4 or IPv6 header.
    pub const RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: like NULL, with the family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux "cooked" capture, version 1 (16-byte header).
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4 (LINKTYPE_IPV4).
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6 (LINKTYPE_IPV6).
    pub const IPV6: LinkType = LinkType(229);
    /// Linux NFLOG: packets logged by netfilter's NFLOG target, in TLVs.
    pub const NFLOG: LinkType = LinkType(239);
    /// Linux "cooked" capture, version 2 (20-byte header).
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// True for the link types that [`crate::wire::decode`] understands.
    pub fn is_supported(self) -> bool {
        matches!(
            self,
            LinkType::NULL
                | LinkType::ETHERNET
                | LinkType::RAW_BSD
                | LinkType::RAW_OPENBSD
                | LinkType::RAW
                | LinkType::LOOP
                | LinkType::LINUX_SLL
                | LinkType::IPV4
                | LinkType::IPV6
                | LinkType::NFLOG
                | LinkType::LINUX_SLL2
        )
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            LinkType::NULL => "null",
            LinkType::ETHERNET => "ethernet",
            LinkType::RAW_BSD | LinkType::RAW_OPENBSD | LinkType::RAW => "raw",
            LinkType::LOOP => "loop",
            LinkType::LINUX_SLL => "linux-sll",
            LinkType::IPV4 => "ipv4",
            LinkType::IPV6 => "ipv6",
            LinkType::NFLOG => "nflog",
            LinkType::LINUX_SLL2 => "linux-sll2",
            _ => return write!(f, "linktype-{}", self.0),
        };
        write!(f, "{name} ({})", self.0)
    }
}
