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

    /// Adds a flow without dropping any (moving a log's flows to windows).
    fn append(&mut self, ts: u64, other: Addr) {
        match self {
            Window::Empty => *self = Window::One(ts, other),
            Window::One(t, o) => {
                let mut several = Several {
                    flows: Vec::with_capacity(4),
                    head: 0,
                    coords: Vec::with_capacity(2),
                };
                several.push_back(*t, *o);
                several.push_back(ts, other);
                *self = Window::Many(several);
            }
            Window::Many(several) => several.push_back(ts, other),
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
    counting: Counting,
}

/// How an initiator's flows are counted.
#[derive(Debug)]
enum Counting {
    /// Few flows: one log of them, searched whole at each new flow.
    Log(Vec<Logged>),
    /// One flow, held without an allocation (most initiators of a
    /// partition's hundred thousand).
    First(Logged),
    /// Many: a window per key.
    Keys(Keys),
}

impl Default for Counting {
    fn default() -> Self {
        Counting::Log(Vec::new())
    }
}

/// A flow in an initiator's log: its time, responder and protocol/port
/// coordinate, and whether its sweep key and its scan key no longer count
/// it (popped from the window, handed over at a threshold, or not counted
/// while that key's incident is open).
#[derive(Clone, Copy, Debug)]
struct Logged {
    ts: u64,
    host: Addr,
    coordinate: u32,
    gone: u8,
}

/// [`Logged::gone`]: no longer counted by its sweep key.
const SWEEP_GONE: u8 = 1;
/// [`Logged::gone`]: no longer counted by its scan key.
const SCAN_GONE: u8 = 2;

/// Flows a log holds before the initiator's flows go to windows by key.
/// Most initiators start a few flows a minute: one short vector, searched
/// whole, costs a fraction of a window per key (their vectors, their
/// lookups). Its keys (at most two a flow) stay far below any bound on
/// keys the log is used with, so nothing it holds is ever dropped for room.
const LOG_CAP: usize = 16;

/// The sweep key of a scan coordinate (`protocol << 16 | port`, with
/// `has_port` in bit 24).
fn port_key_of(coordinate: u32) -> PortKey {
    ((coordinate >> 16) as u8, coordinate as u16)
}

impl Logged {
    /// True when counted by the key of `kind` that `self` shares with
    /// `key` (a sweep's port key, a scan's host).
    fn counts_for(&self, kind: u8, port_key: PortKey, host: Addr) -> bool {
        self.gone & kind == 0
            && if kind == SWEEP_GONE {
                port_key_of(self.coordinate) == port_key
            } else {
                self.host == host
            }
    }

    /// The other coordinate for `kind`: the host for a sweep, the
    /// protocol/port for a scan.
    fn other(&self, kind: u8) -> u128 {
        if kind == SWEEP_GONE {
            self.host.get()
        } else {
            u128::from(self.coordinate)
        }
    }
}

/// Counts a flow in `log`, as the windows by key would: for each key not
/// open, the flows it holds that are before the window go first (from the
/// front, in arrival order, as a window drops them), the flow joins, and
/// a key whose distinct others reach its threshold hands its flows over.
/// `None`, with nothing changed, when the log is full.
fn log_count(
    log: &mut Vec<Logged>,
    limits: &Limits,
    flow: Logged,
    port_key: PortKey,
    (sweep_open, scan_open): (bool, bool),
) -> Option<(Option<Counted>, Option<Counted>)> {
    if log.len() >= LOG_CAP {
        log.retain(|e| e.gone != SWEEP_GONE | SCAN_GONE);
        if log.len() >= LOG_CAP {
            return None;
        }
    }
    let oldest = flow.ts.saturating_sub(limits.window_ns);
    let host = flow.host;
    // One pass for both keys: each drops its flows before the window from
    // its front, and counts the rest.
    let (mut sweep_front, mut scan_front) = (true, true);
    let (mut sweep_held, mut scan_held) = (1u32, 1u32);
    for entry in log.iter_mut() {
        if !sweep_open && entry.counts_for(SWEEP_GONE, port_key, host) {
            if sweep_front && entry.ts < oldest {
                entry.gone |= SWEEP_GONE;
            } else {
                sweep_front = false;
                sweep_held += 1;
            }
        }
        if !scan_open && entry.counts_for(SCAN_GONE, port_key, host) {
            if scan_front && entry.ts < oldest {
                entry.gone |= SCAN_GONE;
            } else {
                scan_front = false;
                scan_held += 1;
            }
        }
    }
    log.push(flow);
    let swept = (!sweep_open && sweep_held >= limits.sweep_hosts)
        .then(|| hand_over(log, SWEEP_GONE, port_key, host, limits.sweep_hosts))
        .flatten();
    let scanned = (!scan_open && scan_held >= limits.scan_ports)
        .then(|| hand_over(log, SCAN_GONE, port_key, host, limits.scan_ports))
        .flatten();
    Some((swept, scanned))
}

/// The flows `log` holds for the key of `kind` (`port_key` or `host`),
/// handed over when their distinct others reach `threshold`.
fn hand_over(
    log: &mut [Logged],
    kind: u8,
    port_key: PortKey,
    host: Addr,
    threshold: u32,
) -> Option<Counted> {
    let held = || log.iter().filter(|e| e.counts_for(kind, port_key, host));
    let mut distinct = 0;
    for (i, entry) in held().enumerate() {
        if !held().take(i).any(|e| e.other(kind) == entry.other(kind)) {
            distinct += 1;
        }
    }
    if distinct < threshold {
        return None;
    }
    let counted = held().map(|e| (e.ts, e.other(kind))).collect();
    for entry in log.iter_mut() {
        if entry.counts_for(kind, port_key, host) {
            entry.gone |= kind;
        }
    }
    Some(counted)
}

/// The windows by key holding what `log` holds.
fn keys_of_log(log: &[Logged]) -> Keys {
    let mut keys = Keys::default();
    for entry in log {
        let coordinates = [
            (SWEEP_GONE, Coord::Sweep(port_key_of(entry.coordinate))),
            (SCAN_GONE, Coord::Scan(entry.host)),
        ];
        for (kind, key) in coordinates {
            if entry.gone & kind != 0 {
                continue;
            }
            let other = Addr::new(entry.other(kind));
            match keys.get_mut(key) {
                Some(window) => window.append(entry.ts, other),
                None => {
                    let mut window = Window::default();
                    window.append(entry.ts, other);
                    keys.insert(key, window);
                }
            }
        }
    }
    keys
}

impl Initiator {
    /// Its windows by key (the log's flows moved to them first).
    fn keys(&mut self) -> &mut Keys {
        match &self.counting {
            Counting::Log(log) => self.counting = Counting::Keys(keys_of_log(log)),
            Counting::First(first) => self.counting = Counting::Keys(keys_of_log(&[*first])),
            Counting::Keys(_) => {}
        }
        match &mut self.counting {
            Counting::Keys(keys) => keys,
            _ => unreachable!("moved to windows above"),
        }
    }
}

/// Drops keys with no flow in the window before `oldest`.
fn prune(keys: &mut Keys, oldest: u64) {
    keys.retain(|w| w.latest() >= oldest);
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
    /// Whether initiators with few flows keep a log (always, but for the
    /// test that holds the log to the windows).
    pub use_log: bool,
}

impl Tracker {
    /// Counts a new flow of `initiator` at `ts` toward the sweep key
    /// `sweep` (unless `sweep_open`: it joins that incident instead) and
    /// the scan key `host` (unless `scan_open`). Returns the flows counted
    /// by each key that reached its threshold, which then starts empty.
    // Inlined into its one caller, the fold's handling of a flow start: its
    // arguments and its two results then cost nothing to pass (a call cost
    // about a hundred instructions a flow, 2026-12-08).
    #[inline(always)]
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
        if limits.use_log && limits.max_keys >= 2 * LOG_CAP + 2 {
            let flow = Logged {
                ts,
                host: Addr::new(host),
                coordinate: port_coordinate as u32,
                gone: (u8::from(sweep_open) * SWEEP_GONE) | (u8::from(scan_open) * SCAN_GONE),
            };
            match &mut state.counting {
                // A new initiator's first flow reaches no threshold above
                // one: held as it is.
                Counting::Log(log)
                    if log.capacity() == 0 && limits.sweep_hosts > 1 && limits.scan_ports > 1 =>
                {
                    state.counting = Counting::First(flow);
                    return (None, None);
                }
                Counting::First(first) => {
                    let mut log = Vec::with_capacity(LOG_CAP / 2);
                    log.push(*first);
                    state.counting = Counting::Log(log);
                }
                _ => {}
            }
            if let Counting::Log(log) = &mut state.counting
                && let Some(counted) =
                    log_count(log, limits, flow, port_key, (sweep_open, scan_open))
            {
                return counted;
            }
        }
        let keys = state.keys();
        if keys.len() + 2 > limits.max_keys {
            prune(keys, oldest);
        }
        let mut room = limits.max_keys.saturating_sub(keys.len());
        let mut untracked = 0;
        let mut swept = None;
        if !sweep_open {
            let (dropped, reached) = add_flow(
                keys,
                Coord::Sweep(port_key),
                (ts, Addr::new(host)),
                limits.window_ns,
                limits.sweep_hosts,
                &mut room,
            );
            untracked += dropped;
            if reached {
                swept = keys.remove(Coord::Sweep(port_key)).map(Window::into_flows);
            }
        }
        let mut scanned = None;
        if !scan_open {
            let (dropped, reached) = add_flow(
                keys,
                Coord::Scan(Addr::new(host)),
                (ts, Addr::new(port_coordinate)),
                limits.window_ns,
                limits.scan_ports,
                &mut room,
            );
            untracked += dropped;
            if reached {
                scanned = keys
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The log counts exactly as the windows by key do, whatever the
    /// order of times, the thresholds and the incidents open.
    #[test]
    fn the_log_counts_as_the_windows_do() {
        let mut rng = fastrand::Rng::with_seed(31);
        for round in 0..400 {
            let limits = Limits {
                window_ns: rng.u64(1..40),
                sweep_hosts: rng.u32(1..6),
                scan_ports: rng.u32(1..6),
                max_initiators: rng.usize(1..6),
                max_keys: 4_096,
                use_log: true,
            };
            let (mut with_log, mut without) = (Tracker::default(), Tracker::default());
            let windows_only = Limits {
                use_log: false,
                ..limits
            };
            let mut ts = 1_000u64;
            for step in 0..rng.usize(1..300) {
                // Mostly forward, sometimes back (merged captures).
                ts = if rng.u8(..10) == 0 {
                    ts.saturating_sub(rng.u64(0..30))
                } else {
                    ts + rng.u64(0..8)
                };
                let initiator = (rng.u8(..8) == 0, u128::from(rng.u32(0..4)));
                let host = u128::from(rng.u32(0..6));
                let protocol = [6u8, 17, 1][rng.usize(..3)];
                let port = if protocol == 1 {
                    None
                } else {
                    Some(rng.u16(0..4))
                };
                let port_key = (protocol, port.unwrap_or(0));
                let coordinate = u128::from(protocol) << 16
                    | u128::from(port.unwrap_or(0))
                    | u128::from(port.is_some()) << 24;
                let sweep = (port_key, rng.u8(..6) == 0);
                let scan = (host, coordinate, rng.u8(..6) == 0);
                let a = with_log.count(&limits, initiator, ts, sweep, scan);
                let b = without.count(&windows_only, initiator, ts, sweep, scan);
                assert_eq!(a, b, "round {round}, step {step}");
                assert_eq!(with_log.untracked, without.untracked, "round {round}");
                assert_eq!(with_log.initiators(), without.initiators(), "round {round}");
            }
        }
    }
}
