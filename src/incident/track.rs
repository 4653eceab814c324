//! Counting toward sweeps and scans: per initiator, the recent flows of
//! each protocol/port (sweeps: their hosts) and of each host (scans: their
//! protocol/port pairs), within the window. Bounded: initiators, keys per
//! initiator and flows per key are capped, the least recently active going
//! first; what is dropped while it still counted is counted.

use super::{Addr, FastMap};

/// A sweep key within an initiator: protocol and port (0 for ICMP echo and
/// protocols without ports: one "port" per protocol).
pub(super) type PortKey = (u8, u16);

/// The flows of one key within the window, in arrival order: (first-packet
/// time, the other coordinate: the host for a sweep, `protocol << 16 |
/// port` for a scan, with `has_port` in bit 24), and how many of them hold
/// each distinct coordinate (fewer than the threshold: the window is handed
/// over when it reaches it). Most keys never see a second flow within the
/// window: the first is held inline, without an allocation.
#[derive(Debug, Default)]
pub(super) enum Window {
    /// No flow.
    #[default]
    Empty,
    /// One flow.
    One(u64, Addr),
    /// Several.
    Many(Several),
}

/// A window of several flows: those from `head` on in `flows`, and each
/// distinct coordinate they hold with its number of flows. A new flow
/// mostly repeats a coordinate already held (the same server again): it
/// finds it among the few distinct ones rather than among every flow held.
#[derive(Debug, Default)]
pub(super) struct Several {
    flows: Vec<(u64, Addr)>,
    head: u32,
    /// Fewer than the threshold (the window is handed over when it reaches
    /// it), in the order first held.
    coords: Vec<(Addr, u32)>,
}

/// Flows kept per key: four times a threshold of 32 leaves room for flows
/// repeated to the same hosts; older ones go first.
const MAX_FLOWS_PER_KEY: usize = 128;

impl Several {
    fn held(&self) -> &[(u64, Addr)] {
        &self.flows[self.head as usize..]
    }

    fn pop_front(&mut self) {
        let Some(&(_, other)) = self.held().first() else {
            return;
        };
        self.head += 1;
        if let Some(i) = self.coords.iter().position(|&(c, _)| c == other) {
            self.coords[i].1 -= 1;
            if self.coords[i].1 == 0 {
                self.coords.remove(i);
            }
        }
        // Room is made at the front once half the vector is spent.
        if self.head as usize >= 16 && self.head as usize * 2 >= self.flows.len() {
            self.flows.drain(..self.head as usize);
            self.head = 0;
        }
    }

    fn push_back(&mut self, ts: u64, other: Addr) {
        match self.coords.iter_mut().find(|(c, _)| *c == other) {
            Some((_, n)) => *n += 1,
            None => self.coords.push((other, 1)),
        }
        self.flows.push((ts, other));
    }
}

impl Window {
    /// Adds a flow at `ts` and drops those before `ts - window`. True when a
    /// flow counted was dropped for room.
    fn push(&mut self, ts: u64, other: Addr, window_ns: u64) -> bool {
        let oldest = ts.saturating_sub(window_ns);
        match self {
            Window::Empty => {
                *self = Window::One(ts, other);
                false
            }
            Window::One(t, _) if *t < oldest => {
                *self = Window::One(ts, other);
                false
            }
            Window::One(t, o) => {
                let mut several = Several {
                    flows: Vec::with_capacity(4),
                    head: 0,
                    coords: Vec::with_capacity(2),
                };
                several.push_back(*t, *o);
                several.push_back(ts, other);
                *self = Window::Many(several);
                false
            }
            Window::Many(several) => {
                while several.held().first().is_some_and(|&(t, _)| t < oldest) {
                    several.pop_front();
                }
                let mut dropped = false;
                if several.held().len() >= MAX_FLOWS_PER_KEY {
                    several.pop_front();
                    dropped = true;
                }
                several.push_back(ts, other);
                dropped
            }
        }
    }

    /// True when the flows held reach `threshold` distinct coordinates.
    fn reaches(&self, threshold: u32) -> bool {
        let distinct = match self {
            Window::Empty => 0,
            Window::One(..) => 1,
            Window::Many(several) => several.coords.len(),
        };
        distinct >= threshold as usize
    }

    fn latest(&self) -> u64 {
        match self {
            Window::Empty => 0,
            Window::One(t, _) => *t,
            Window::Many(several) => several.held().last().map_or(0, |&(t, _)| t),
        }
    }

    /// The flows held, in arrival order.
    pub(super) fn into_flows(self) -> Counted {
        match self {
            Window::Empty => Vec::new(),
            Window::One(t, o) => vec![(t, o.get())],
            Window::Many(several) => several.held().iter().map(|&(t, o)| (t, o.get())).collect(),
        }
    }
}

/// A key an initiator's flows are counted by: a protocol/port (sweeps) or
/// a host (scans).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Coord {
    Sweep(PortKey),
    Scan(Addr),
}

/// Keys an initiator holds in a vector searched in order, before a map.
const FEW_KEYS: usize = 8;

/// An initiator's windows by key. Most initiators hold a key or two (one
/// flow to one host): a short vector, sized to what it holds, costs a
/// fraction of two hash maps; a scanner's keys move to a map.
#[derive(Debug)]
enum Keys {
    Few(Vec<(Coord, Window)>),
    Many(Box<FastMap<Coord, Window>>),
}

impl Default for Keys {
    fn default() -> Self {
        Keys::Few(Vec::new())
    }
}

impl Keys {
    fn len(&self) -> usize {
        match self {
            Keys::Few(few) => few.len(),
            Keys::Many(many) => many.len(),
        }
    }

    fn get_mut(&mut self, key: Coord) -> Option<&mut Window> {
        match self {
            Keys::Few(few) => few.iter_mut().find(|(k, _)| *k == key).map(|(_, w)| w),
            Keys::Many(many) => many.get_mut(&key),
        }
    }

    fn insert(&mut self, key: Coord, window: Window) {
        match self {
            Keys::Few(few) if few.len() < FEW_KEYS => {
                if few.capacity() == 0 {
                    // A sweep key and a scan key come together.
                    few.reserve_exact(2);
                }
                few.push((key, window));
            }
            Keys::Few(few) => {
                let mut many: FastMap<Coord, Window> = few.drain(..).collect();
                many.insert(key, window);
                *self = Keys::Many(Box::new(many));
            }
            Keys::Many(many) => {
                many.insert(key, window);
            }
        }
    }

    fn remove(&mut self, key: Coord) -> Option<Window> {
        match self {
            Keys::Few(few) => {
                let i = few.iter().position(|(k, _)| *k == key)?;
                Some(few.swap_remove(i).1)
            }
            Keys::Many(many) => many.remove(&key),
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&Window) -> bool) {
        match self {
            Keys::Few(few) => few.retain(|(_, w)| keep(w)),
            Keys::Many(many) => many.retain(|_, w| keep(w)),
        }
    }
}

/// Adds a flow to `key`'s window in `keys` (a new window when `room`
/// allows one): (flows dropped for room, whether it reached `threshold`).
fn add_flow(
    keys: &mut Keys,
    key: Coord,
    (ts, other): (u64, Addr),
    window_ns: u64,
    threshold: u32,
    room: &mut usize,
) -> (u64, bool) {
    match keys.get_mut(key) {
        Some(window) => {
            let dropped = u64::from(window.push(ts, other, window_ns));
            (dropped, window.reaches(threshold))
        }
        None if *room > 0 => {
            *room -= 1;
            let mut window = Window::default();
            window.push(ts, other, window_ns);
            let reached = window.reaches(threshold);
            keys.insert(key, window);
            (0, reached)
        }
        None => (1, false),
    }
}

/// One initiator's counting state.
#[derive(Debug, Default)]
struct Initiator {
    /// Time of its latest flow.
    last_ts: u64,
    /// Sequence number of its latest flow: with `last_ts`, the order in
    /// which initiators go when room is needed (a total order, so the same
    /// capture drops the same initiators).
    seq: u64,
    keys: Keys,
}

impl Initiator {
    fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Drops keys with no flow in the window before `oldest`.
    fn prune(&mut self, oldest: u64) {
        self.keys.retain(|w| w.latest() >= oldest);
    }
}

/// What reaching a threshold hands to the fold: the flows counted, in
/// arrival order (its first flows).
pub(super) type Counted = Vec<(u64, u128)>;

/// The counting state of one partition.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    initiators: FastMap<(bool, Addr), Initiator>,
    seq: u64,
    /// When initiators idle for a whole window are next forgotten.
    next_sweep_ts: u64,
    /// Initiators, keys and flows dropped while they still counted.
    pub untracked: u64,
}

/// The thresholds and bounds the tracker applies.
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub window_ns: u64,
    pub sweep_hosts: u32,
    pub scan_ports: u32,
    pub max_initiators: usize,
    pub max_keys: usize,
}

impl Tracker {
    /// Counts a new flow of `initiator` at `ts` toward the sweep key
    /// `sweep` (unless `sweep_open`: it joins that incident instead) and
    /// the scan key `host` (unless `scan_open`). Returns the flows counted
    /// by each key that reached its threshold, which then starts empty.
    pub(super) fn count(
        &mut self,
        limits: &Limits,
        initiator: (bool, u128),
        ts: u64,
        sweep: (PortKey, bool),
        scan: (u128, u128, bool),
    ) -> (Option<Counted>, Option<Counted>) {
        let (port_key, sweep_open) = sweep;
        let (host, port_coordinate, scan_open) = scan;
        if sweep_open && scan_open {
            return (None, None);
        }
        let oldest = ts.saturating_sub(limits.window_ns);
        if ts >= self.next_sweep_ts {
            // Once per window of capture time: initiators without a flow in
            // the window count toward nothing.
            self.initiators.retain(|_, state| state.last_ts >= oldest);
            self.next_sweep_ts = ts.saturating_add(limits.window_ns);
        }
        self.seq += 1;
        let seq = self.seq;
        let initiator = (initiator.0, Addr::new(initiator.1));
        if self.initiators.len() >= limits.max_initiators
            && !self.initiators.contains_key(&initiator)
        {
            self.make_room(oldest, limits.max_initiators);
        }
        let state = self.initiators.entry(initiator).or_default();
        state.last_ts = state.last_ts.max(ts);
        state.seq = seq;
        if state.keys() + 2 > limits.max_keys {
            state.prune(oldest);
        }
        let mut room = limits.max_keys.saturating_sub(state.keys());
        let mut untracked = 0;
        let mut swept = None;
        if !sweep_open {
            let (dropped, reached) = add_flow(
                &mut state.keys,
                Coord::Sweep(port_key),
                (ts, Addr::new(host)),
                limits.window_ns,
                limits.sweep_hosts,
                &mut room,
            );
            untracked += dropped;
            if reached {
                swept = state
                    .keys
                    .remove(Coord::Sweep(port_key))
                    .map(Window::into_flows);
            }
        }
        let mut scanned = None;
        if !scan_open {
            let (dropped, reached) = add_flow(
                &mut state.keys,
                Coord::Scan(Addr::new(host)),
                (ts, Addr::new(port_coordinate)),
                limits.window_ns,
                limits.scan_ports,
                &mut room,
            );
            untracked += dropped;
            if reached {
                scanned = state
                    .keys
                    .remove(Coord::Scan(Addr::new(host)))
                    .map(Window::into_flows);
            }
        }
        self.untracked += untracked;
        (swept, scanned)
    }

    /// Makes room for a new initiator: forgets those idle for a window,
    /// then, if still full, the least recently active (counted: their
    /// flows still counted). Rare: only at the bound.
    fn make_room(&mut self, oldest: u64, max: usize) {
        self.initiators.retain(|_, state| state.last_ts >= oldest);
        if self.initiators.len() < max {
            return;
        }
        // A tenth at once, so that a full table is not sorted per flow.
        let drop = (max / 10).max(1);
        let mut order: Vec<(u64, u64)> = self
            .initiators
            .values()
            .map(|state| (state.last_ts, state.seq))
            .collect();
        let cut = drop.min(order.len()) - 1;
        order.select_nth_unstable(cut);
        let limit = order[cut];
        let before = self.initiators.len();
        self.initiators
            .retain(|_, state| (state.last_ts, state.seq) > limit);
        self.untracked += (before - self.initiators.len()) as u64;
    }

    /// Initiators tracked now.
    pub(super) fn initiators(&self) -> usize {
        self.initiators.len()
    }
}
