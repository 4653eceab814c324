//! Port tables: which rule, of those that apply to one zone pair, a port
//! matches first; and which ports the policy names at all.

use crate::policy::PortRange;

/// A map from every port (0-65535) to a value, as sorted interval starts.
///
/// Built by "painting" ranges in priority order: a port keeps the first value
/// painted on it. A lookup is one binary search over the distinct intervals.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMap<T> {
    starts: Vec<u16>,
    values: Vec<T>,
}

impl<T: Copy + PartialEq> PortMap<T> {
    /// The value of `port`.
    #[inline]
    pub fn get(&self, port: u16) -> T {
        let after = self.starts.partition_point(|&start| start <= port);
        // `starts[0]` is 0, so `after >= 1`.
        self.values[after.saturating_sub(1)]
    }

    /// Number of distinct intervals.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Never true: a map covers every port.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// True when a lookup cannot fail: a first interval at port 0, increasing starts, one
    /// value each. Always so when built by a [`PortPainter`]; checked for stored maps.
    pub fn is_well_formed(&self) -> bool {
        self.starts.first() == Some(&0)
            && self.starts.len() == self.values.len()
            && self.starts.windows(2).all(|pair| pair[0] < pair[1])
    }
}

/// Builds a [`PortMap`] by painting ranges; ports never painted get `fill`.
///
/// A painter can be [cleared](PortPainter::clear) and used again: compiling a large policy
/// paints tens of thousands of maps, and reuses one painter's buffers for all of them.
#[derive(Clone, Debug)]
pub struct PortPainter<T> {
    /// Unpainted ranges, sorted, disjoint, inclusive.
    free: Vec<(u16, u16)>,
    /// `free` being rebuilt by a paint.
    spare: Vec<(u16, u16)>,
    painted: Vec<(u16, u16, T)>,
}

impl<T: Copy + PartialEq> PortPainter<T> {
    /// A painter with every port unpainted.
    pub fn new() -> Self {
        PortPainter {
            free: vec![(0, u16::MAX)],
            spare: Vec::new(),
            painted: Vec::new(),
        }
    }

    /// Makes every port unpainted again, keeping the buffers.
    pub fn clear(&mut self) {
        self.free.clear();
        self.free.push((0, u16::MAX));
        self.painted.clear();
    }

    /// True once every port has a value.
    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Gives `value` to the ports of `range` that have none yet.
    pub fn paint(&mut self, range: PortRange, value: T) {
        self.spare.clear();
        for &(lo, hi) in &self.free {
            if hi < range.lo || lo > range.hi {
                self.spare.push((lo, hi));
                continue;
            }
            let (cut_lo, cut_hi) = (lo.max(range.lo), hi.min(range.hi));
            self.painted.push((cut_lo, cut_hi, value));
            if lo < cut_lo {
                self.spare.push((lo, cut_lo - 1));
            }
            if cut_hi < hi {
                self.spare.push((cut_hi + 1, hi));
            }
        }
        std::mem::swap(&mut self.free, &mut self.spare);
    }

    /// Gives `value` to every port that has none yet.
    pub fn paint_rest(&mut self, value: T) {
        self.paint(
            PortRange {
                lo: 0,
                hi: u16::MAX,
            },
            value,
        );
    }

    /// The finished map; unpainted ports get `fill`.
    pub fn finish(mut self, fill: T) -> PortMap<T> {
        let mut map = PortMap {
            starts: Vec::new(),
            values: Vec::new(),
        };
        self.finish_into(fill, &mut map.starts, &mut map.values);
        map
    }

    /// Appends the finished map's interval starts and values to `starts` and `values`
    /// (unpainted ports get `fill`) and clears the painter.
    fn finish_into(&mut self, fill: T, starts: &mut Vec<u16>, values: &mut Vec<T>) {
        self.paint_rest(fill);
        self.painted.sort_unstable_by_key(|&(lo, _, _)| lo);
        let first = values.len();
        for &(lo, _, value) in &self.painted {
            if values.len() == first || values.last() != Some(&value) {
                starts.push(lo);
                values.push(value);
            }
        }
        self.clear();
    }
}

impl<T: Copy + PartialEq> Default for PortPainter<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Many port maps in two arrays, one after another: a map is a [`PortSpan`] of them. A policy
/// of thousands of zones compiles tens of thousands of maps; as one allocation each of starts
/// and values they cost no allocation apiece to build, store, read back or free.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct PortArena<T> {
    starts: Vec<u16>,
    values: Vec<T>,
}

/// Where one map of a [`PortArena`] lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct PortSpan {
    first: u32,
    end: u32,
}

impl<T: Copy + PartialEq> PortArena<T> {
    pub(super) fn new() -> Self {
        PortArena {
            starts: Vec::new(),
            values: Vec::new(),
        }
    }

    /// Stores the map `painter` holds (unpainted ports get `fill`) and clears the painter.
    pub(super) fn push(&mut self, painter: &mut PortPainter<T>, fill: T) -> PortSpan {
        let first = self.starts.len();
        painter.finish_into(fill, &mut self.starts, &mut self.values);
        PortSpan {
            first: first as u32,
            end: self.starts.len() as u32,
        }
    }

    /// The value of `port` in the map at `span`.
    #[inline]
    pub(super) fn get(&self, span: PortSpan, port: u16) -> T {
        let (first, end) = (span.first as usize, span.end as usize);
        let starts = self.starts.get(first..end).unwrap_or_default();
        let after = starts.partition_point(|&start| start <= port);
        // A map's first start is 0, so `after >= 1`.
        self.values[first + after.saturating_sub(1)]
    }

    /// True when a lookup in the map at `span` cannot fail: it lies in the arena, starts at
    /// port 0 and its starts increase. Always so for maps [`PortArena::push`] stored; checked
    /// for maps read back.
    pub(super) fn is_well_formed(&self, span: PortSpan) -> bool {
        self.starts.len() == self.values.len()
            && self
                .starts
                .get(span.first as usize..span.end as usize)
                .is_some_and(|starts| {
                    starts.first() == Some(&0) && starts.windows(2).all(|pair| pair[0] < pair[1])
                })
    }

    /// Number of intervals of every map.
    pub(super) fn len(&self) -> usize {
        self.starts.len()
    }
}

/// A set of ports, one bit each (8 KiB): a constant-time membership test for
/// the initiator inference, which asks it of both ports of every new flow.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "Vec<u64>", try_from = "Vec<u64>")]
pub struct PortSet {
    bits: Box<[u64; 1024]>,
}

// Serde derives arrays up to 32 elements only: a set travels as its 1,024 words.
impl From<PortSet> for Vec<u64> {
    fn from(set: PortSet) -> Vec<u64> {
        set.bits.to_vec()
    }
}

impl TryFrom<Vec<u64>> for PortSet {
    type Error = String;

    fn try_from(words: Vec<u64>) -> Result<PortSet, String> {
        let len = words.len();
        let bits: Box<[u64; 1024]> = words
            .into_boxed_slice()
            .try_into()
            .map_err(|_| format!("a port set has 1024 words, not {len}"))?;
        Ok(PortSet { bits })
    }
}

impl PortSet {
    /// The empty set.
    pub fn new() -> Self {
        PortSet {
            bits: Box::new([0; 1024]),
        }
    }

    /// Adds every port of `range`.
    pub fn insert_range(&mut self, range: PortRange) {
        for port in range.lo..=range.hi {
            self.bits[usize::from(port >> 6)] |= 1 << (port & 63);
        }
    }

    /// True when `port` is in the set.
    #[inline]
    pub fn contains(&self, port: u16) -> bool {
        self.bits[usize::from(port >> 6)] & (1 << (port & 63)) != 0
    }
}

impl Default for PortSet {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(lo: u16, hi: u16) -> PortRange {
        PortRange { lo, hi }
    }

    #[test]
    fn first_paint_wins_and_edges_are_exact() {
        let mut p = PortPainter::new();
        p.paint(r(8080, 8089), 1);
        p.paint(r(8000, 8085), 2);
        p.paint(r(443, 443), 3);
        let map = p.finish(0);
        assert_eq!(map.get(0), 0);
        assert_eq!(map.get(442), 0);
        assert_eq!(map.get(443), 3);
        assert_eq!(map.get(444), 0);
        assert_eq!(map.get(7999), 0);
        assert_eq!(map.get(8000), 2);
        assert_eq!(map.get(8079), 2);
        assert_eq!(map.get(8080), 1);
        assert_eq!(map.get(8089), 1);
        assert_eq!(map.get(8090), 0);
        assert_eq!(map.get(65535), 0);
    }

    #[test]
    fn whole_range_and_merging() {
        let mut p = PortPainter::new();
        p.paint(r(1, 10), 5);
        p.paint(r(11, 20), 5);
        assert!(!p.is_full());
        p.paint_rest(5);
        assert!(p.is_full());
        let map = p.finish(9);
        assert_eq!(map.len(), 1);
        assert_eq!(map.get(65535), 5);
        assert_eq!(map.get(0), 5);
    }

    #[test]
    fn port_set_membership() {
        let mut s = PortSet::new();
        s.insert_range(r(1, 1));
        s.insert_range(r(65535, 65535));
        s.insert_range(r(100, 200));
        assert!(!s.contains(0));
        assert!(s.contains(1));
        assert!(!s.contains(99));
        assert!(s.contains(100) && s.contains(200));
        assert!(!s.contains(201));
        assert!(s.contains(65535));
    }
}
