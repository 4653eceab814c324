//! The flow table's hash index: open addressing with linear probing, one
//! 8-byte bucket per flow (slab slot and 32 bits of the flow's hash), at most
//! half full.
//!
//! Hand-written rather than hashbrown's `HashTable`: a replay keeps hundreds
//! of thousands of flows, and looking one up is a cache miss on the index and
//! another on the entry, which dominated the cost of a packet. The replay
//! knows the hashes of the packets ahead of the one it is handling, so it can
//! ask for their buckets early ([`FlowIndex::prefetch`]); hashbrown does not
//! expose where a hash's bucket lies. Buckets also hold the slot and the hash
//! together, so a probe touches one cache line where hashbrown's control
//! bytes and slots are two.
//!
//! Deletion shifts the following buckets back (no tombstones), so probe
//! sequences stay short however long the table lives.

/// A bucket: the slab slot plus one in the high 32 bits, the flow's hash in
/// the low 32 bits; `EMPTY` (zero) when free. Zero, so that new buckets are
/// the allocator's zeroed memory, backed by the kernel in one call (see
/// [`FlowIndex::grow`]) rather than filled bucket by bucket.
type Bucket = u64;

const EMPTY: Bucket = 0;

/// The index from flow hash to slab slot.
#[derive(Debug, Clone)]
pub struct FlowIndex {
    buckets: Vec<Bucket>,
    mask: usize,
    len: usize,
    /// The number of flows at which the next insert grows the index: half
    /// its buckets, and 0 until the first insert has taken the first room
    /// (see [`FlowIndex::with_room_for`]).
    grow_at: usize,
    /// Buckets the first growth makes room for at once.
    first_size: usize,
}

/// A bucket for `slot` (at most `u32::MAX - 1`: slots are below the flow
/// table's bound, itself below `u32::MAX`).
#[inline]
fn bucket(slot: u32, hash: u32) -> Bucket {
    (u64::from(slot + 1) << 32) | u64::from(hash)
}

#[inline]
fn slot_of(bucket: Bucket) -> u32 {
    ((bucket >> 32) as u32).wrapping_sub(1)
}

#[inline]
fn hash_of(bucket: Bucket) -> u32 {
    bucket as u32
}

impl FlowIndex {
    const MIN_BUCKETS: usize = 64;

    /// An empty index; it grows as flows arrive.
    pub fn new() -> Self {
        Self::with_room_for(0)
    }

    /// An empty index that makes room for `flows` flows when its first flow
    /// comes, and does not grow again before it holds that many. The room
    /// is taken at the first insert, not here: a replay creates its sixteen
    /// shards' indexes on one thread, and each is then filled on whichever
    /// thread tracks that shard.
    pub fn with_room_for(flows: usize) -> Self {
        let first_size = flows
            .saturating_mul(2)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX / 2 + 1)
            .max(Self::MIN_BUCKETS);
        FlowIndex {
            buckets: vec![EMPTY; Self::MIN_BUCKETS],
            mask: Self::MIN_BUCKETS - 1,
            len: 0,
            grow_at: 0,
            first_size,
        }
    }

    /// Number of flows indexed.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// Asks the CPU to fetch the bucket where `hash` starts probing.
    #[inline]
    pub fn prefetch(&self, hash: u32) {
        crate::sys::prefetch(&self.buckets[hash as usize & self.mask] as *const Bucket);
    }

    /// The slot of the first candidate for `hash` whose slot satisfies `is`.
    /// (Written as a loop: as an iterator over the probe run, shared with
    /// [`FlowIndex::first_candidate`], a replay took 1.5% more instructions.)
    ///
    /// The home bucket is looked at before the loop: it decides most
    /// lookups (the flow is there, or nothing is), and `is` then reads the
    /// key it compares where it lies. Inside a loop the compiler held the
    /// whole key in registers, and spilled them, before the first probe:
    /// a replay took 5% more instructions (callgrind, 2026-12-07).
    #[inline]
    pub fn find(&self, hash: u32, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let home = hash as usize & self.mask;
        let b = self.buckets[home];
        if b == EMPTY {
            return None;
        }
        if hash_of(b) == hash && is(slot_of(b)) {
            return Some(slot_of(b));
        }
        self.find_past(home, hash, is)
    }

    /// [`FlowIndex::find`] past the home bucket: a flow behind another.
    #[inline(never)]
    fn find_past(&self, home: usize, hash: u32, mut is: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut i = (home + 1) & self.mask;
        loop {
            let b = self.buckets[i];
            if b == EMPTY {
                return None;
            }
            if hash_of(b) == hash && is(slot_of(b)) {
                return Some(slot_of(b));
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The slot of the first bucket of `hash`'s probe run that carries its
    /// hash bits, among the first few: the likely match, for prefetching its
    /// entry. (A flow often sits one or two buckets past its home, behind
    /// another: looking at the home bucket only missed those.)
    #[inline]
    pub fn first_candidate(&self, hash: u32) -> Option<u32> {
        const LOOK_AT: usize = 4;
        let mut i = hash as usize & self.mask;
        for _ in 0..LOOK_AT {
            let b = self.buckets[i];
            if b == EMPTY {
                return None;
            }
            if hash_of(b) == hash {
                return Some(slot_of(b));
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Indexes `slot` under `hash` (the slot must not be indexed yet).
    pub fn insert(&mut self, hash: u32, slot: u32) {
        if self.len >= self.grow_at {
            self.grow();
        }
        self.place(bucket(slot, hash));
        self.len += 1;
    }

    fn place(&mut self, b: Bucket) {
        let mut i = hash_of(b) as usize & self.mask;
        while self.buckets[i] != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.buckets[i] = b;
    }

    /// Doubles the buckets, or takes the first room (see
    /// [`FlowIndex::with_room_for`]), and moves every bucket in. The new
    /// buckets are backed with memory before use: zeroed memory that a
    /// lookup reads before an insert writes it is first mapped to the
    /// kernel's shared zero page, and the write then costs a second fault
    /// and a flush of the other cores' address translations (an interrupt
    /// each: about 6% of a replay's time when the buckets were left to fault
    /// in).
    fn grow(&mut self) {
        let size = (self.buckets.len() * 2).max(self.first_size);
        let mut buckets = vec![EMPTY; size];
        crate::sys::populate_for_writing(&mut buckets);
        let old = std::mem::replace(&mut self.buckets, buckets);
        self.mask = size - 1;
        self.grow_at = size / 2;
        // A bucket's 32 hash bits are enough to find its new home: slots are
        // u32, so the index never outgrows 2^32 buckets.
        for b in old.into_iter().filter(|&b| b != EMPTY) {
            self.place(b);
        }
    }

    /// Removes `slot`, indexed under `hash`.
    pub fn remove(&mut self, hash: u32, slot: u32) {
        let mut i = hash as usize & self.mask;
        loop {
            let b = self.buckets[i];
            if b == EMPTY {
                return;
            }
            if slot_of(b) == slot {
                break;
            }
            i = (i + 1) & self.mask;
        }
        // Shift later buckets of the probe run back into the hole when their
        // home lies at or before it.
        let mut hole = i;
        let mut j = i;
        loop {
            j = (j + 1) & self.mask;
            let b = self.buckets[j];
            if b == EMPTY {
                break;
            }
            let home = hash_of(b) as usize & self.mask;
            if j.wrapping_sub(home) & self.mask >= j.wrapping_sub(hole) & self.mask {
                self.buckets[hole] = b;
                hole = j;
            }
        }
        self.buckets[hole] = EMPTY;
        self.len -= 1;
    }

    /// Every indexed slot.
    pub fn slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets
            .iter()
            .filter(|&&b| b != EMPTY)
            .map(|&b| slot_of(b))
    }
}

impl Default for FlowIndex {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u32) -> u32 {
        // Many collisions on purpose: only a few distinct hashes, so the
        // slot check tells flows apart.
        n % 7
    }

    #[test]
    fn matches_a_reference_map_through_inserts_and_removes() {
        for index in [FlowIndex::new(), FlowIndex::with_room_for(1_000)] {
            matches_a_reference_map(index);
        }
    }

    #[test]
    fn room_for_flows_means_no_growth_after_the_first_until_then() {
        for flows in [0, 1, 31, 32, 33, 1_000, 4_096] {
            let mut index = FlowIndex::with_room_for(flows);
            index.insert(h(0), 0);
            let size = index.buckets.len();
            assert!(
                size.is_power_of_two() && size >= 2 * flows,
                "{flows}: {size}"
            );
            for n in 1..flows as u32 {
                index.insert(h(n), n);
            }
            assert_eq!(index.buckets.len(), size, "{flows}");
            assert!((0..flows as u32).all(|n| index.find(h(n), |s| s == n) == Some(n)));
        }
    }

    fn matches_a_reference_map(mut index: FlowIndex) {
        let mut rng = fastrand::Rng::with_seed(9);
        let mut reference = std::collections::HashMap::new();
        for step in 0..20_000u32 {
            let n = rng.u32(0..3_000);
            if let std::collections::hash_map::Entry::Vacant(e) = reference.entry(n) {
                e.insert(());
                index.insert(h(n), n);
            } else if rng.bool() {
                reference.remove(&n);
                index.remove(h(n), n);
            }
            if step % 97 == 0 {
                for probe in 0..3_000u32 {
                    let found = index.find(h(probe), |slot| slot == probe);
                    assert_eq!(
                        found.is_some(),
                        reference.contains_key(&probe),
                        "step {step}"
                    );
                }
                assert_eq!(index.len(), reference.len());
                assert_eq!(index.slots().count(), reference.len());
            }
        }
    }

    #[test]
    fn first_candidate_and_prefetch() {
        let mut index = FlowIndex::new();
        index.insert(12345, 7);
        assert_eq!(index.first_candidate(12345), Some(7));
        assert_eq!(index.first_candidate(54321), None);
        index.prefetch(12345);
        index.prefetch(u32::MAX);
    }

    #[test]
    fn first_candidate_looks_past_the_home_bucket() {
        // Five flows with one home bucket (of 64) and different hash bits:
        // each sits behind the ones before it.
        let mut index = FlowIndex::new();
        let hash = |n: u32| 5 | ((n + 1) << 8);
        for n in 0..5 {
            index.insert(hash(n), n + 100);
        }
        for n in 0..4 {
            assert_eq!(index.first_candidate(hash(n)), Some(n + 100), "{n}");
        }
        // Further than it looks: no candidate (the lookup still finds it).
        assert_eq!(index.first_candidate(hash(4)), None);
        assert_eq!(index.find(hash(4), |slot| slot == 104), Some(104));
        assert_eq!(index.first_candidate(hash(9)), None);
    }
}
