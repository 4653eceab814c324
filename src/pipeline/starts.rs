//! Flow starts for the incident fold's sweeps and scans (contract section
//! 7): every new flow, allowed or not, whose responder is in a tracked
//! range, noted once at its first packet.

use std::sync::Arc;

use crate::classify::ZoneId;

/// The responder ranges whose flows count toward sweeps and scans: the
/// private ranges (RFC 1918, 100.64.0.0/10, fc00::/7) and `track_to`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackedRanges {
    /// `track_to`: (IPv6, network, mask).
    extra: Vec<(bool, u128, u128)>,
}

impl TrackedRanges {
    /// The private ranges and `extra` ((IPv6, network, mask) each).
    pub fn new(extra: Vec<(bool, u128, u128)>) -> Arc<TrackedRanges> {
        Arc::new(TrackedRanges { extra })
    }

    /// True when flows to `addr` count.
    #[inline]
    pub fn tracks(&self, ipv6: bool, addr: u128) -> bool {
        let private = if ipv6 {
            addr >> 121 == 0xfc >> 1
        } else {
            let a = addr as u32;
            a >> 24 == 10 || a >> 20 == 0xac1 || a >> 16 == 0xc0a8 || a >> 22 == (100 << 2 | 1)
        };
        private
            || self
                .extra
                .iter()
                .any(|&(v6, net, mask)| v6 == ipv6 && addr & mask == net)
    }
}

/// A new flow to a tracked responder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartNotice {
    /// Capture position of its first packet.
    pub position: u64,
    /// Capture time of its first packet.
    pub ts_ns: u64,
    /// True for IPv6.
    pub ipv6: bool,
    /// IP protocol number.
    pub protocol: u8,
    /// The responder's port; none for ICMP echo and protocols without ports
    /// (one "port" per protocol).
    pub port: Option<u16>,
    /// The initiator's address.
    pub initiator: u128,
    /// The responder's address.
    pub responder: u128,
    /// The initiator's and the responder's zones.
    pub zones: (ZoneId, ZoneId),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_and_track_to_are_tracked() {
        let ranges = TrackedRanges::new(vec![(false, 0xc633_6400, 0xffff_ff00)]);
        let v4 = |s: &str| u128::from(u32::from(s.parse::<std::net::Ipv4Addr>().unwrap()));
        let v6 = |s: &str| u128::from(s.parse::<std::net::Ipv6Addr>().unwrap());
        for tracked in [
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "198.51.100.7",
        ] {
            assert!(ranges.tracks(false, v4(tracked)), "{tracked}");
        }
        for not in [
            "11.0.0.1",
            "172.32.0.1",
            "192.169.0.1",
            "100.128.0.1",
            "8.8.8.8",
        ] {
            assert!(!ranges.tracks(false, v4(not)), "{not}");
        }
        assert!(ranges.tracks(true, v6("fd00::1")));
        assert!(ranges.tracks(true, v6("fc00::1")));
        assert!(!ranges.tracks(true, v6("fe80::1")));
        assert!(!ranges.tracks(true, v6("2001:db8::1")));
    }
}
