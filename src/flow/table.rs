//! A bounded flow table: a hash index over a slab of entries, with one
//! expiry queue per timeout class.
//!
//! Every flow of a class shares one idle timeout. Each class keeps its flows
//! in a queue ordered by the time each was queued, which is its last-seen
//! time then. Moving a flow to the back at every packet (an exact LRU list)
//! touches two neighbouring entries at random places in memory: that cost
//! more than everything else a packet does. So a packet moves its flow only
//! when the flow was queued more than its class's requeue interval before it
//! (by default [`REQUEUE_AFTER_NS`], 1 s; trackers use 1/32 of the class's
//! timeout when that is longer), or its class changed. Then every flow's
//! queued time lies within one interval of its last-seen time, and the queues
//! stay sorted, so:
//! - expiring pops the fronts while they are idle past the timeout; a flow
//!   behind a front that is not, is idle past the timeout by less than one
//!   interval, and goes at a later sweep (or at its next packet, which checks
//!   exactly);
//! - the least recently seen flow (to evict) is the front with the oldest
//!   queued time, to within one interval.
//!
//! Nothing is scanned, and most flows, shorter than an interval, are never
//! moved; a long one moves about 32 times per timeout period.
//!
//! The hash index ([`FlowIndex`]) holds only slab slots; entries live in one
//! `Vec` whose freed slots are reused, so once the table has reached its
//! size, inserting and removing flows does not allocate.

use super::FlowKey;
use super::index::FlowIndex;
use crate::sys::prefetch;

/// Index of an entry in the table's slab.
pub type Slot = u32;

const NIL: Slot = Slot::MAX;

/// How many slab entries (about 112 KiB) are backed with memory at once,
/// when the slab grows into them. The first write to each new 4 KiB page
/// faulted: the hospital replay's 160,000 flows spent about 6% of its CPU
/// time there. One call for 28 pages saves each fault's entry and walk (the
/// page faults fell from 6,300 to 2,700, CPU time by about 2-3%); the
/// kernel still zeroes every page.
const POPULATE_ENTRIES: usize = 1024;

/// Number of timeout classes a table keeps lists for.
pub const CLASSES: usize = 5;

/// By default, a flow queued longer ago than this before its latest packet
/// is moved to the back of its queue: the precision of expiry sweeps and of
/// eviction (see [`FlowTable::set_requeue_after`]).
pub const REQUEUE_AFTER_NS: u64 = 1_000_000_000;

/// One flow in the table.
#[derive(Clone, Debug)]
pub struct Entry<V> {
    /// The flow's key.
    pub key: FlowKey,
    /// Capture time of its latest packet, in nanoseconds.
    pub last_ts: u64,
    /// Its last-seen time when it was put in its queue.
    queued_ts: u64,
    /// Its timeout class (index of its list).
    class: u8,
    hash: u32,
    prev: Slot,
    next: Slot,
    /// The tracker's per-flow state.
    pub value: V,
}

impl<V> Entry<V> {
    /// Its timeout class: the queue it is in.
    #[inline]
    pub fn class(&self) -> usize {
        usize::from(self.class)
    }
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: Slot,
    tail: Slot,
}

/// A flow table holding at most `capacity` flows.
#[derive(Debug)]
pub struct FlowTable<V> {
    index: FlowIndex,
    slab: Vec<Entry<V>>,
    /// Freed slab slots, reused before the slab grows.
    free: Vec<Slot>,
    lists: [List; CLASSES],
    /// Per class, how long after it was queued a flow's packet moves it.
    requeue_after: [u64; CLASSES],
    len: usize,
    capacity: usize,
}

impl<V> FlowTable<V> {
    /// An empty table for at most `capacity` flows. The index starts with
    /// room for some and grows; the slab's memory is reserved but only
    /// touched as flows arrive.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        FlowTable {
            // Room for an eighth of the bound at first (128 KiB for a replay
            // shard's share of a million flows; at most 1 MiB however large
            // the bound): an index that grows from a few buckets moves every
            // flow about twice on its way.
            index: FlowIndex::with_room_for((capacity / 8).min(1 << 16)),
            // Address space only: pages are touched as flows arrive, and the
            // slab never moves (no copy of every entry when it grows).
            slab: Vec::with_capacity(capacity),
            free: Vec::new(),
            lists: [List {
                head: NIL,
                tail: NIL,
            }; CLASSES],
            requeue_after: [REQUEUE_AFTER_NS; CLASSES],
            len: 0,
            capacity,
        }
    }

    /// Sets how long after it was queued a packet of a `class` flow moves it
    /// to the back of its queue: the precision, for that class, of expiry
    /// sweeps and of eviction. Longer intervals move flows less often (each
    /// move touches two entries at random places in memory).
    pub fn set_requeue_after(&mut self, class: usize, interval_ns: u64) {
        self.requeue_after[class] = interval_ns;
    }

    /// Number of flows held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no flow is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when another insert needs an eviction first.
    pub fn is_full(&self) -> bool {
        self.len >= self.capacity
    }

    /// The most flows the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The slot of the flow with `key`, if held.
    #[inline]
    pub fn find(&self, hash: u32, key: &FlowKey) -> Option<Slot> {
        let slab = &self.slab;
        self.index
            .find(hash, |slot| slab[slot as usize].key == *key)
    }

    /// Asks the CPU to fetch the index bucket of `hash`: call it a few
    /// packets ahead of [`FlowTable::find`].
    #[inline]
    pub fn prefetch_index(&self, hash: u32) {
        self.index.prefetch(hash);
    }

    /// Asks the CPU to fetch the entry `hash` most likely finds: call it
    /// after [`FlowTable::prefetch_index`] had time to land.
    #[inline]
    pub fn prefetch_entry(&self, hash: u32) {
        if let Some(entry) = self
            .index
            .first_candidate(hash)
            .and_then(|slot| self.slab.get(slot as usize))
        {
            // An entry spans two or three cache lines, and the key (read
            // first) is not at its start: fetch every line it touches (its
            // first byte, every 64 bytes on, its last byte; the size is a
            // constant, so the compiler unrolls the loop).
            let start = entry as *const Entry<V> as usize;
            let size = std::mem::size_of::<Entry<V>>();
            prefetch(start as *const u8);
            let mut offset = 64;
            while offset < size {
                prefetch((start + offset) as *const u8);
                offset += 64;
            }
            prefetch((start + size - 1) as *const u8);
        }
    }

    /// The entry in `slot`.
    #[inline]
    pub fn entry(&self, slot: Slot) -> &Entry<V> {
        &self.slab[slot as usize]
    }

    /// The entry in `slot`, to change its value.
    #[inline]
    pub fn entry_mut(&mut self, slot: Slot) -> &mut Entry<V> {
        &mut self.slab[slot as usize]
    }

    /// Records a packet at `ts`, and the flow's class, which may change
    /// (then the flow moves to the back of its new class's queue).
    #[inline]
    pub fn touch(&mut self, slot: Slot, ts: u64, class: usize) {
        let entry = &mut self.slab[slot as usize];
        // Captures merged from several interfaces can step back in time;
        // a flow's last-seen time never does.
        entry.last_ts = entry.last_ts.max(ts);
        if usize::from(entry.class) != class
            || entry.last_ts - entry.queued_ts > self.requeue_after[class]
        {
            self.requeue(slot, class);
        }
    }

    /// Moves a flow to the back of `class`'s queue, queued at its last-seen time.
    fn requeue(&mut self, slot: Slot, class: usize) {
        self.unlink(slot);
        let entry = &mut self.slab[slot as usize];
        entry.class = class as u8;
        entry.queued_ts = entry.last_ts;
        self.link_back(slot);
    }

    /// Inserts a flow that is not held. The caller makes room first: see
    /// [`FlowTable::is_full`] and [`FlowTable::oldest`]. Always inlined into
    /// the tracker's flow start, its caller: the key and the value are then
    /// written into their entry where they are made, not passed through
    /// the stack.
    #[inline(always)]
    pub fn insert(&mut self, hash: u32, key: FlowKey, ts: u64, class: usize, value: V) -> Slot {
        let entry = Entry {
            key,
            last_ts: ts,
            queued_ts: ts,
            class: class as u8,
            hash,
            prev: NIL,
            next: NIL,
            value,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = entry;
                slot
            }
            None => {
                if self.slab.len().is_multiple_of(POPULATE_ENTRIES) {
                    self.populate_ahead();
                }
                self.slab.push(entry);
                (self.slab.len() - 1) as Slot
            }
        };
        self.index.insert(hash, slot);
        self.link_back(slot);
        self.len += 1;
        slot
    }

    /// Backs the slab's next [`POPULATE_ENTRIES`] entries with memory in
    /// one call (see [`POPULATE_ENTRIES`]).
    #[cold]
    fn populate_ahead(&mut self) {
        let spare = self.slab.spare_capacity_mut();
        let ahead = spare.len().min(POPULATE_ENTRIES);
        crate::sys::populate_for_writing(&mut spare[..ahead]);
    }

    /// Removes the flow in `slot`, returning its key and value.
    pub fn remove(&mut self, slot: Slot) -> (FlowKey, V)
    where
        V: Clone,
    {
        // The entry's index bucket and its queue neighbours are elsewhere
        // in memory: ask for the bucket first, so that both misses overlap.
        let hash = self.slab[slot as usize].hash;
        self.index.prefetch(hash);
        self.unlink(slot);
        let key = self.slab[slot as usize].key;
        self.index.remove(hash, slot);
        self.free.push(slot);
        self.len -= 1;
        (key, self.slab[slot as usize].value.clone())
    }

    fn front(&self, class: usize) -> Option<Slot> {
        let head = self.lists[class].head;
        (head != NIL).then_some(head)
    }

    /// The front flow of `class` if it is idle for more than `timeout` at
    /// time `now` (the caller removes it, then asks again).
    pub fn next_expired(&self, class: usize, now: u64, timeout: u64) -> Option<Slot> {
        let slot = self.front(class)?;
        (now.saturating_sub(self.slab[slot as usize].last_ts) > timeout).then_some(slot)
    }

    /// The least recently seen flow of the whole table, to within the
    /// longest requeue interval.
    pub fn oldest(&self) -> Option<Slot> {
        (0..CLASSES)
            .filter_map(|class| self.front(class))
            .min_by_key(|&slot| self.slab[slot as usize].queued_ts)
    }

    /// Every held flow's slot (in no particular order).
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.index.slots()
    }

    fn unlink(&mut self, slot: Slot) {
        let (prev, next, class) = {
            let e = &self.slab[slot as usize];
            (e.prev, e.next, e.class as usize)
        };
        match prev {
            NIL => self.lists[class].head = next,
            p => self.slab[p as usize].next = next,
        }
        match next {
            NIL => self.lists[class].tail = prev,
            n => self.slab[n as usize].prev = prev,
        }
        let e = &mut self.slab[slot as usize];
        e.prev = NIL;
        e.next = NIL;
    }

    fn link_back(&mut self, slot: Slot) {
        let class = self.slab[slot as usize].class as usize;
        let tail = self.lists[class].tail;
        self.slab[slot as usize].prev = tail;
        match tail {
            NIL => self.lists[class].head = slot,
            t => self.slab[t as usize].next = slot,
        }
        self.lists[class].tail = slot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowHasher;

    fn key(n: u16) -> FlowKey {
        FlowKey {
            lo_addr: 1.into(),
            hi_addr: 2.into(),
            lo_port: n,
            hi_port: 80,
            protocol: 6,
            ipv6: false,
            overlay: crate::flow::Overlay::NONE,
        }
    }

    fn insert(t: &mut FlowTable<u32>, n: u16, ts: u64, class: usize) -> Slot {
        let k = key(n);
        t.insert(FlowHasher.hash(&k), k, ts, class, n as u32)
    }

    #[test]
    fn find_insert_remove_and_slot_reuse() {
        let mut t = FlowTable::with_capacity(4);
        let a = insert(&mut t, 1, 10, 0);
        let b = insert(&mut t, 2, 20, 0);
        assert_eq!(t.find(FlowHasher.hash(&key(1)), &key(1)), Some(a));
        assert_eq!(t.find(FlowHasher.hash(&key(3)), &key(3)), None);
        assert_eq!(t.remove(a), (key(1), 1));
        assert_eq!(t.find(FlowHasher.hash(&key(1)), &key(1)), None);
        assert_eq!(t.len(), 1);
        let c = insert(&mut t, 3, 30, 0);
        assert_eq!(c, a, "freed slot is reused");
        assert_eq!(t.find(FlowHasher.hash(&key(2)), &key(2)), Some(b));
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn oldest_is_the_least_recently_seen_to_within_a_second() {
        let mut t = FlowTable::with_capacity(8);
        let a = insert(&mut t, 1, 10 * S, 0);
        let b = insert(&mut t, 2, 20 * S, 0);
        let c = insert(&mut t, 3, 15 * S, 1);
        assert_eq!(t.oldest(), Some(a));
        t.touch(a, 30 * S, 0);
        assert_eq!(t.oldest(), Some(c));
        t.touch(c, 35 * S, 1);
        assert_eq!(t.oldest(), Some(b));
        t.touch(b, 40 * S, 1); // class change: moves queues
        assert_eq!(t.oldest(), Some(a));
        t.remove(a);
        assert_eq!(t.oldest(), Some(c));
        t.touch(c, 35 * S + S / 2, 1); // within a second: not moved
        assert_eq!(t.oldest(), Some(c));
        t.remove(c);
        assert_eq!(t.oldest(), Some(b));
        t.touch(b, 5, 1);
        assert_eq!(t.entry(b).last_ts, 40 * S, "last seen never steps back");
    }

    #[test]
    fn expiry_follows_last_seen_times() {
        let mut t = FlowTable::with_capacity(8);
        let a = insert(&mut t, 1, 10 * S, 0);
        let b = insert(&mut t, 2, 20 * S, 0);
        let c = insert(&mut t, 3, 30 * S, 0);
        t.touch(a, 100 * S, 0); // a is fresh, though queued first
        let mut expired = Vec::new();
        while let Some(slot) = t.next_expired(0, 125 * S, 100 * S) {
            expired.push(slot);
            t.remove(slot);
        }
        assert_eq!(expired, [b]);
        assert_eq!(
            t.next_expired(0, 130 * S, 100 * S),
            None,
            "c is idle exactly 100 s: kept"
        );
        assert_eq!(t.next_expired(0, 131 * S, 100 * S), Some(c));
        t.remove(c);
        assert_eq!(t.next_expired(0, 200 * S, 100 * S), None);
        assert_eq!(t.next_expired(0, 201 * S, 100 * S), Some(a));
    }

    #[test]
    fn a_longer_requeue_interval_moves_flows_less_and_keeps_its_precision() {
        let mut t = FlowTable::with_capacity(8);
        t.set_requeue_after(0, 10 * S);
        let a = insert(&mut t, 1, 10 * S, 0);
        let b = insert(&mut t, 2, 15 * S, 0);
        t.touch(a, 19 * S, 0); // within 10 s of being queued: not moved
        assert_eq!(
            t.oldest(),
            Some(a),
            "a is seen later than b, by less than 10 s"
        );
        t.touch(a, 21 * S, 0); // more than 10 s: moved behind b
        assert_eq!(t.oldest(), Some(b));
        // Sweeping with a 30 s timeout at 50 s: b (idle 35 s) goes; a, seen
        // at 21 s (idle 29 s), stays.
        assert_eq!(t.next_expired(0, 50 * S, 30 * S), Some(b));
        t.remove(b);
        assert_eq!(t.next_expired(0, 50 * S, 30 * S), None);
        assert_eq!(t.next_expired(0, 52 * S, 30 * S), Some(a));
    }

    #[test]
    fn full_at_capacity() {
        let mut t = FlowTable::with_capacity(2);
        insert(&mut t, 1, 1, 0);
        assert!(!t.is_full());
        insert(&mut t, 2, 2, 0);
        assert!(t.is_full());
        let oldest = t.oldest().unwrap();
        t.remove(oldest);
        assert!(!t.is_full());
        assert_eq!(t.slots().count(), 1);
    }
}

#[cfg(test)]
mod lazy_queue_tests {
    use super::*;
    use crate::flow::FlowHasher;

    const S: u64 = 1_000_000_000;

    #[test]
    fn sweeping_finds_the_idle_flows_to_within_a_second() {
        let mut rng = fastrand::Rng::with_seed(3);
        for round in 0..200 {
            let mut t: FlowTable<u32> = FlowTable::with_capacity(1000);
            let mut live: Vec<Slot> = Vec::new();
            let mut now = 0u64;
            for step in 0..300 {
                now += rng.u64(0..5 * S / 10);
                if live.is_empty() || rng.u8(0..3) == 0 {
                    let k = FlowKey {
                        lo_port: step,
                        hi_port: round,
                        ..FlowKey::default()
                    };
                    live.push(t.insert(FlowHasher.hash(&k), k, now, rng.usize(0..2), 0));
                } else {
                    let slot = live[rng.usize(0..live.len())];
                    t.touch(slot, now, rng.usize(0..2));
                }
                if rng.u8(0..10) == 0 {
                    let timeout = 2 * S;
                    let naive: Vec<Slot> = live
                        .iter()
                        .copied()
                        .filter(|&s| {
                            let e = t.entry(s);
                            e.class == 0 && now.saturating_sub(e.last_ts) > timeout
                        })
                        .collect();
                    let mut lazy = Vec::new();
                    while let Some(s) = t.next_expired(0, now, timeout) {
                        lazy.push(s);
                        t.remove(s);
                    }
                    lazy.sort();
                    // Everything swept is idle; everything idle by more than
                    // a second past the timeout is swept.
                    assert!(
                        lazy.iter().all(|s| naive.contains(s)),
                        "round {round} step {step}"
                    );
                    for s in naive {
                        let idle = now - t.entry(s).last_ts;
                        assert!(
                            lazy.contains(&s) || idle <= timeout + S,
                            "round {round} step {step}"
                        );
                    }
                    live.retain(|s| !lazy.contains(s));
                }
            }
        }
    }
}
