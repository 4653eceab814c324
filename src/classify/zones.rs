//! Longest-prefix zone lookup, compiled into sorted interval tables.
//!
//! CIDR prefixes are laminar: two prefixes are either disjoint or one holds
//! the other. Sorting them by start address (shorter first on ties) and
//! sweeping with a stack of enclosing prefixes flattens them into disjoint
//! intervals, each labelled with its longest matching prefix. A lookup is then
//! one binary search, whose cost grows with the logarithm of the number of
//! intervals, not with the number of zones or rules. IPv4 adds a 65,536-entry
//! index by the top 16 bits, so most IPv4 lookups touch one or two intervals.

use ipnetwork::IpNetwork;

/// Index of a zone in the compiled policy; [`ZoneTable::UNKNOWN`] is `unknown`.
pub type ZoneId = u32;

/// Where an address landed: its zone and the length of the prefix that put
/// it there (0 for `unknown`, or for a /0 network).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ZoneMatch {
    /// The zone.
    pub zone: ZoneId,
    /// Length of the longest matching prefix.
    pub prefix_len: u8,
}

/// An interval of addresses from `start` up to the next interval's start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Interval {
    start: u128,
    found: ZoneMatch,
}

/// Zone lookup for one address family.
#[derive(Clone, Debug)]
struct FamilyTable {
    intervals: Vec<Interval>,
}

impl FamilyTable {
    /// Flattens `(start, last, zone, prefix_len)` prefixes of one family.
    fn build(mut prefixes: Vec<(u128, u128, ZoneId, u8)>, unknown: ZoneMatch) -> FamilyTable {
        prefixes.sort_by_key(|&(start, _, _, len)| (start, len));
        let mut intervals: Vec<Interval> = vec![Interval {
            start: 0,
            found: unknown,
        }];
        // Enclosing prefixes, innermost last: (last address, match).
        let mut enclosing: Vec<(u128, ZoneMatch)> = Vec::new();
        let push = |intervals: &mut Vec<Interval>, start: u128, found: ZoneMatch| match intervals
            .last_mut()
        {
            Some(last) if last.start == start => last.found = found,
            _ => intervals.push(Interval { start, found }),
        };
        for (start, last, zone, prefix_len) in prefixes {
            // Close the prefixes that end before this one starts.
            while let Some(&(end, _)) = enclosing.last() {
                if end >= start {
                    break;
                }
                enclosing.pop();
                let outer = enclosing.last().map_or(unknown, |&(_, found)| found);
                // `end < start <= u128::MAX`, so `end + 1` cannot overflow.
                push(&mut intervals, end + 1, outer);
            }
            let found = ZoneMatch { zone, prefix_len };
            push(&mut intervals, start, found);
            enclosing.push((last, found));
        }
        while let Some((end, _)) = enclosing.pop() {
            let outer = enclosing.last().map_or(unknown, |&(_, found)| found);
            if let Some(next) = end.checked_add(1) {
                push(&mut intervals, next, outer);
            }
        }
        intervals.dedup_by(|later, earlier| later.found == earlier.found);
        FamilyTable { intervals }
    }

    /// Index of the interval holding `addr`, searching `intervals[lo..hi]`.
    #[inline]
    fn find_in(&self, addr: u128, lo: usize, hi: usize) -> ZoneMatch {
        let window = &self.intervals[lo..hi];
        let after = window.partition_point(|interval| interval.start <= addr);
        // The first interval starts at 0, and a window always begins at an
        // interval that starts at or below `addr`, so `after >= 1`.
        window[after.saturating_sub(1)].found
    }
}

/// A [`ZoneTable`] as stored (the compiled-policy cache): the intervals of each family; the
/// IPv4 search index is derived again, and the intervals are checked, so that a stored table
/// cannot make a lookup index out of bounds.
#[derive(serde::Serialize, serde::Deserialize)]
struct ZoneTableParts {
    v4: Vec<Interval>,
    v6: Vec<Interval>,
}

impl From<ZoneTable> for ZoneTableParts {
    fn from(table: ZoneTable) -> ZoneTableParts {
        ZoneTableParts {
            v4: table.v4.intervals,
            v6: table.v6.intervals,
        }
    }
}

impl TryFrom<ZoneTableParts> for ZoneTable {
    type Error = &'static str;

    fn try_from(parts: ZoneTableParts) -> Result<ZoneTable, &'static str> {
        // What the lookups rely on: a first interval at address 0, and starts that increase.
        let well_formed = |intervals: &[Interval]| {
            intervals.first().is_some_and(|first| first.start == 0)
                && intervals
                    .windows(2)
                    .all(|pair| pair[0].start < pair[1].start)
        };
        if !well_formed(&parts.v4) || !well_formed(&parts.v6) {
            return Err("zone intervals out of order");
        }
        if parts.v4.iter().any(|i| i.start > 1 << 32) {
            return Err("an IPv4 zone interval starts past the IPv4 addresses");
        }
        Ok(ZoneTable::from_families(
            FamilyTable {
                intervals: parts.v4,
            },
            FamilyTable {
                intervals: parts.v6,
            },
        ))
    }
}

/// Longest-prefix zone lookup for IPv4 and IPv6.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(into = "ZoneTableParts", try_from = "ZoneTableParts")]
pub struct ZoneTable {
    v4: FamilyTable,
    /// For each value of an IPv4 address's top 16 bits, the index of the
    /// interval holding the first address with those bits; entry 65,536 is
    /// the number of intervals.
    v4_index: Vec<u32>,
    /// The IPv4 intervals' starts as `u32`, beside `v4`: a search compares
    /// half as many bytes as on the `u128` starts, and fits more in cache.
    v4_starts: Vec<u32>,
    v6: FamilyTable,
}

impl ZoneTable {
    /// The zone of addresses that no network holds.
    pub const UNKNOWN: ZoneId = ZoneId::MAX;

    /// Compiles `(network, zone)` pairs. Two identical networks must not
    /// belong to two zones (the policy loader rejects that).
    pub fn build<'a>(networks: impl IntoIterator<Item = (&'a IpNetwork, ZoneId)>) -> ZoneTable {
        let unknown = ZoneMatch {
            zone: Self::UNKNOWN,
            prefix_len: 0,
        };
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (network, zone) in networks {
            match network {
                IpNetwork::V4(net) => {
                    let start = u32::from(net.network()) as u128;
                    let last = u32::from(net.broadcast()) as u128;
                    v4.push((start, last, zone, net.prefix()));
                }
                IpNetwork::V6(net) => {
                    let start = u128::from(net.network());
                    let host_bits = 128 - u32::from(net.prefix());
                    let last = start | u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
                    v6.push((start, last, zone, net.prefix()));
                }
            }
        }
        ZoneTable::from_families(
            FamilyTable::build(v4, unknown),
            FamilyTable::build(v6, unknown),
        )
    }

    /// The table over flattened IPv4 and IPv6 intervals, with the IPv4 search index.
    fn from_families(v4: FamilyTable, v6: FamilyTable) -> ZoneTable {
        // Each interval holds the /16s whose first address it holds: fill
        // their entries as ranges (a search per /16 cost about a millisecond
        // of every start).
        let mut v4_index = vec![0u32; 65_536];
        let top_of = |start: u128| {
            usize::try_from(start.div_ceil(1 << 16)).map_or(65_536, |t| t.min(65_536))
        };
        for (i, interval) in v4.intervals.iter().enumerate() {
            let first = top_of(interval.start);
            let end = v4
                .intervals
                .get(i + 1)
                .map_or(65_536, |next| top_of(next.start));
            if first < end {
                v4_index[first..end].fill(i as u32);
            }
        }
        v4_index.push(v4.intervals.len() as u32);
        // A prefix that ends at 255.255.255.255 closes with an interval that
        // starts at 2^32, past every IPv4 address: it is left out (it is the
        // last), and the others' starts fit 32 bits.
        let v4_starts = v4
            .intervals
            .iter()
            .map_while(|interval| u32::try_from(interval.start).ok())
            .collect();
        ZoneTable {
            v4,
            v4_index,
            v4_starts,
            v6,
        }
    }

    /// The zone ids the table can return, [`ZoneTable::UNKNOWN`] included.
    pub fn zone_ids(&self) -> impl Iterator<Item = ZoneId> + '_ {
        let (v4, v6) = (&self.v4.intervals, &self.v6.intervals);
        v4.iter().chain(v6).map(|interval| interval.found.zone)
    }

    /// The zone of an IPv4 address.
    #[inline(always)]
    pub fn lookup_v4(&self, addr: u32) -> ZoneMatch {
        let top = (addr >> 16) as usize;
        let lo = self.v4_index[top] as usize;
        // Intervals that start inside this /16 follow `lo`; the search
        // window ends at the one holding the next /16's first address.
        let hi = (self.v4_index[top + 1] as usize + 1).min(self.v4_starts.len());
        // Most /16s lie in one interval: no search.
        if hi - lo <= 1 {
            return self.v4.intervals[lo].found;
        }
        let window = &self.v4_starts[lo..hi];
        let after = window.partition_point(|&start| start <= addr);
        // The window begins at an interval that starts at or below `addr`.
        self.v4.intervals[lo + after.saturating_sub(1)].found
    }

    /// The zone of an IPv6 address.
    #[inline]
    pub fn lookup_v6(&self, addr: u128) -> ZoneMatch {
        self.v6.find_in(addr, 0, self.v6.intervals.len())
    }

    /// The zone of an address of either family (`ipv6` says which).
    #[inline]
    pub fn lookup(&self, ipv6: bool, addr: u128) -> ZoneMatch {
        if ipv6 {
            self.lookup_v6(addr)
        } else {
            self.lookup_v4(addr as u32)
        }
    }

    /// Number of intervals the networks flattened into (for diagnostics).
    pub fn interval_count(&self) -> usize {
        self.v4.intervals.len() + self.v6.intervals.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(nets: &[(&str, ZoneId)]) -> ZoneTable {
        let parsed: Vec<(IpNetwork, ZoneId)> =
            nets.iter().map(|(n, z)| (n.parse().unwrap(), *z)).collect();
        ZoneTable::build(parsed.iter().map(|(n, z)| (n, *z)))
    }

    fn v4(table: &ZoneTable, addr: &str) -> (ZoneId, u8) {
        let found = table.lookup_v4(u32::from(addr.parse::<std::net::Ipv4Addr>().unwrap()));
        (found.zone, found.prefix_len)
    }

    fn v6(table: &ZoneTable, addr: &str) -> (ZoneId, u8) {
        let found = table.lookup_v6(u128::from(addr.parse::<std::net::Ipv6Addr>().unwrap()));
        (found.zone, found.prefix_len)
    }

    const U: ZoneId = ZoneTable::UNKNOWN;

    #[test]
    fn longest_prefix_wins_and_gaps_are_unknown() {
        let t = table(&[("10.0.0.0/8", 1), ("10.20.0.0/16", 2), ("10.20.8.10/32", 3)]);
        assert_eq!(v4(&t, "9.255.255.255"), (U, 0));
        assert_eq!(v4(&t, "10.0.0.0"), (1, 8));
        assert_eq!(v4(&t, "10.19.255.255"), (1, 8));
        assert_eq!(v4(&t, "10.20.0.0"), (2, 16));
        assert_eq!(v4(&t, "10.20.8.9"), (2, 16));
        assert_eq!(v4(&t, "10.20.8.10"), (3, 32));
        assert_eq!(v4(&t, "10.20.8.11"), (2, 16));
        assert_eq!(v4(&t, "10.21.0.0"), (1, 8));
        assert_eq!(v4(&t, "10.255.255.255"), (1, 8));
        assert_eq!(v4(&t, "11.0.0.0"), (U, 0));
    }

    #[test]
    fn ipv4_lookups_equal_a_longest_prefix_scan() {
        let mut rng = fastrand::Rng::with_seed(21);
        for _ in 0..300 {
            let mut nets: Vec<(u32, u8, ZoneId)> = Vec::new();
            for zone in 0..rng.u32(1..12) {
                let len = rng.u8(0..=32);
                // Near the top, the bottom or anywhere in the space.
                let base = match rng.u8(0..3) {
                    0 => u32::MAX - rng.u32(0..1 << 20),
                    1 => rng.u32(0..1 << 20),
                    _ => rng.u32(..),
                };
                let network = base & u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                if !nets.iter().any(|&(n, l, _)| (n, l) == (network, len)) {
                    nets.push((network, len, zone));
                }
            }
            let parsed: Vec<(IpNetwork, ZoneId)> = nets
                .iter()
                .map(|&(n, l, z)| {
                    let net = ipnetwork::Ipv4Network::new(n.into(), l).unwrap();
                    (IpNetwork::V4(net), z)
                })
                .collect();
            let t = ZoneTable::build(parsed.iter().map(|(n, z)| (n, *z)));
            let mut probes: Vec<u32> = vec![0, 1, u32::MAX, u32::MAX - 1];
            for &(n, l, _) in &nets {
                let last = n | u32::MAX.checked_shr(u32::from(l)).unwrap_or(0);
                probes.extend([n, n.wrapping_sub(1), last, last.wrapping_add(1)]);
            }
            probes.extend((0..64).map(|_| rng.u32(..)));
            for addr in probes {
                let expected = nets
                    .iter()
                    .filter(|&&(n, l, _)| {
                        let mask = u32::MAX.checked_shl(32 - u32::from(l)).unwrap_or(0);
                        addr & mask == n
                    })
                    .max_by_key(|&&(_, l, _)| l)
                    .map_or((U, 0), |&(_, l, z)| (z, l));
                let found = t.lookup_v4(addr);
                assert_eq!(
                    (found.zone, found.prefix_len),
                    expected,
                    "{addr:#x} {nets:?}"
                );
            }
        }
    }

    #[test]
    fn default_route_and_edges_of_the_address_space() {
        let t = table(&[
            ("0.0.0.0/0", 7),
            ("255.255.255.255/32", 8),
            ("0.0.0.0/32", 9),
        ]);
        assert_eq!(v4(&t, "0.0.0.0"), (9, 32));
        assert_eq!(v4(&t, "0.0.0.1"), (7, 0));
        assert_eq!(v4(&t, "128.0.0.0"), (7, 0));
        assert_eq!(v4(&t, "255.255.255.254"), (7, 0));
        assert_eq!(v4(&t, "255.255.255.255"), (8, 32));
    }

    #[test]
    fn ipv6_prefixes_and_families_do_not_mix() {
        let t = table(&[
            ("::/0", 1),
            ("fd00:20::/48", 2),
            ("fd00:20::1/128", 3),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", 4),
            ("10.0.0.0/8", 5),
        ]);
        assert_eq!(v6(&t, "fd00:20::1"), (3, 128));
        assert_eq!(v6(&t, "fd00:20::2"), (2, 48));
        assert_eq!(v6(&t, "fd00:20:0:ffff:ffff:ffff:ffff:ffff"), (2, 48));
        assert_eq!(v6(&t, "fd00:21::"), (1, 0));
        assert_eq!(v6(&t, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), (4, 128));
        assert_eq!(
            v6(&t, "::a00:1"),
            (1, 0),
            "an IPv6 address never lands in an IPv4 zone"
        );
        assert_eq!(v4(&t, "10.1.1.1"), (5, 8));
        assert_eq!(v4(&t, "11.1.1.1"), (U, 0), "::/0 holds no IPv4 address");
    }

    #[test]
    fn many_small_prefixes_inside_one_slash16() {
        let nets: Vec<(String, ZoneId)> = (0..=255u32)
            .map(|i| (format!("10.1.{i}.0/24"), i % 3))
            .collect();
        let refs: Vec<(&str, ZoneId)> = nets.iter().map(|(n, z)| (n.as_str(), *z)).collect();
        let t = table(&refs);
        for i in 0..=255u32 {
            assert_eq!(v4(&t, &format!("10.1.{i}.77")), (i % 3, 24));
        }
        assert_eq!(v4(&t, "10.0.255.255"), (U, 0));
        assert_eq!(v4(&t, "10.2.0.0"), (U, 0));
    }

    #[test]
    fn empty_table_is_all_unknown() {
        let t = table(&[]);
        assert_eq!(v4(&t, "1.2.3.4"), (U, 0));
        assert_eq!(v6(&t, "::1"), (U, 0));
    }
}
