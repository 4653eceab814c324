//! A bounded flow table: a hash index over a slab of entries, with one
//! least-recently-seen list per timeout class.
//!
//! Every flow of a class shares one idle timeout, so keeping each class's
//! flows in the order they were last seen keeps them in the order they
//! expire: expiring is popping from the front, and the oldest idle flow of
//! the whole table is the oldest of the class fronts. Nothing is scanned.
//!
//! The hash index (hashbrown's `HashTable`) holds only 4-byte slab indices;
//! entries live in one `Vec` whose freed slots are reused, so once the table
//! has reached its size, inserting and removing flows does not allocate.

use hashbrown::HashTable;

use super::FlowKey;

/// Index of an entry in the table's slab.
pub type Slot = u32;

const NIL: Slot = Slot::MAX;

/// Number of timeout classes a table keeps lists for.
pub const CLASSES: usize = 5;

/// One flow in the table.
#[derive(Clone, Debug)]
pub struct Entry<V> {
    /// The flow's key.
    pub key: FlowKey,
    /// Capture time of its latest packet, in nanoseconds.
    pub last_ts: u64,
    /// Its timeout class (index of its list).
    class: u8,
    hash: u64,
    prev: Slot,
    next: Slot,
    /// The tracker's per-flow state.
    pub value: V,
}

#[derive(Clone, Copy, Debug)]
struct List {
    head: Slot,
    tail: Slot,
}

/// A flow table holding at most `capacity` flows.
#[derive(Debug)]
pub struct FlowTable<V> {
    index: HashTable<Slot>,
    slab: Vec<Entry<V>>,
    /// Freed slab slots, reused before the slab grows.
    free: Vec<Slot>,
    lists: [List; CLASSES],
    len: usize,
    capacity: usize,
}

impl<V> FlowTable<V> {
    /// An empty table for at most `capacity` flows. The index is sized up
    /// front; the slab's memory is reserved but only touched as flows arrive.
    pub fn with_capacity(capacity: usize) -> Self {
        let capacity = capacity.clamp(1, NIL as usize - 1);
        FlowTable {
            index: HashTable::with_capacity(capacity),
            slab: Vec::with_capacity(capacity),
            free: Vec::new(),
            lists: [List {
                head: NIL,
                tail: NIL,
            }; CLASSES],
            len: 0,
            capacity,
        }
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
    pub fn find(&self, hash: u64, key: &FlowKey) -> Option<Slot> {
        let slab = &self.slab;
        self.index
            .find(hash, |&slot| slab[slot as usize].key == *key)
            .copied()
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

    /// Records a packet at `ts` (and the flow's class, which may change) and
    /// moves the flow to the back of its class's list.
    #[inline]
    pub fn touch(&mut self, slot: Slot, ts: u64, class: usize) {
        self.unlink(slot);
        let entry = &mut self.slab[slot as usize];
        // Captures merged from several interfaces can step back in time;
        // a flow's last-seen time never does.
        entry.last_ts = entry.last_ts.max(ts);
        entry.class = class as u8;
        self.link_back(slot);
    }

    /// Inserts a flow that is not held. The caller makes room first: see
    /// [`FlowTable::is_full`] and [`FlowTable::oldest`].
    pub fn insert(&mut self, hash: u64, key: FlowKey, ts: u64, class: usize, value: V) -> Slot {
        let entry = Entry {
            key,
            last_ts: ts,
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
                self.slab.push(entry);
                (self.slab.len() - 1) as Slot
            }
        };
        let slab = &self.slab;
        self.index
            .insert_unique(hash, slot, |&s| slab[s as usize].hash);
        self.link_back(slot);
        self.len += 1;
        slot
    }

    /// Removes the flow in `slot`, returning its key and value.
    pub fn remove(&mut self, slot: Slot) -> (FlowKey, V)
    where
        V: Clone,
    {
        self.unlink(slot);
        let entry = &self.slab[slot as usize];
        let (hash, key) = (entry.hash, entry.key);
        if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
            found.remove();
        }
        self.free.push(slot);
        self.len -= 1;
        (key, entry.value.clone())
    }

    /// The least recently seen flow of `class`.
    #[inline]
    pub fn front(&self, class: usize) -> Option<Slot> {
        let head = self.lists[class].head;
        (head != NIL).then_some(head)
    }

    /// The least recently seen flow of the whole table.
    pub fn oldest(&self) -> Option<Slot> {
        (0..CLASSES)
            .filter_map(|class| self.front(class))
            .min_by_key(|&slot| self.slab[slot as usize].last_ts)
    }

    /// Every held flow's slot (in no particular order).
    pub fn slots(&self) -> impl Iterator<Item = Slot> + '_ {
        self.index.iter().copied()
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
            lo_addr: 1,
            hi_addr: 2,
            lo_port: n,
            hi_port: 80,
            protocol: 6,
            ipv6: false,
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

    #[test]
    fn lists_stay_in_last_seen_order() {
        let mut t = FlowTable::with_capacity(8);
        let a = insert(&mut t, 1, 10, 0);
        let b = insert(&mut t, 2, 20, 0);
        let c = insert(&mut t, 3, 15, 1);
        assert_eq!(t.front(0), Some(a));
        assert_eq!(t.oldest(), Some(a));
        t.touch(a, 30, 0);
        assert_eq!(t.front(0), Some(b));
        assert_eq!(t.oldest(), Some(c));
        t.touch(b, 40, 1);
        assert_eq!(t.front(0), Some(a));
        assert_eq!(t.front(1), Some(c));
        t.remove(c);
        assert_eq!(t.front(1), Some(b));
        t.remove(b);
        assert_eq!(t.front(1), None);
        assert_eq!(t.oldest(), Some(a));
        t.touch(a, 5, 0);
        assert_eq!(t.entry(a).last_ts, 30, "last seen never steps back");
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
