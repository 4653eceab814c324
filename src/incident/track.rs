//! Counting toward sweeps and scans: per initiator, the recent flows of
//! each protocol/port (sweeps: their hosts) and of each host (scans: their
//! protocol/port pairs), within the window. Bounded: initiators, keys per
//! initiator and flows per key are capped, the least recently active going
//! first; what is dropped while it still counted is counted.

use std::collections::VecDeque;

use super::FastMap;

/// A sweep key within an initiator: protocol and port (0 for ICMP echo and
/// protocols without ports: one "port" per protocol).
pub(super) type PortKey = (u8, u16);

/// The flows of one key within the window, in arrival order: (first-packet
/// time, capture position, the other coordinate: the host for a sweep,
/// `protocol << 16 | port` for a scan, with `has_port` in bit 24), and how
/// many of them hold each distinct coordinate (fewer than the threshold:
/// the window is handed over when it reaches it).
#[derive(Debug, Default)]
pub(super) struct Window {
    pub flows: VecDeque<(u64, u64, u128)>,
    distinct: Vec<(u128, u32)>,
}

/// Flows kept per key: four times a threshold of 32 leaves room for flows
/// repeated to the same hosts; older ones go first.
const MAX_FLOWS_PER_KEY: usize = 128;

impl Window {
    fn pop_front(&mut self) {
        if let Some((_, _, other)) = self.flows.pop_front()
            && let Some(i) = self.distinct.iter().position(|(o, _)| *o == other)
        {
            self.distinct[i].1 -= 1;
            if self.distinct[i].1 == 0 {
                self.distinct.swap_remove(i);
            }
        }
    }

    /// Adds a flow at `ts` and drops those before `ts - window`. True when a
    /// flow counted was dropped for room.
    fn push(&mut self, ts: u64, position: u64, other: u128, window_ns: u64) -> bool {
        let oldest = ts.saturating_sub(window_ns);
        while self.flows.front().is_some_and(|&(t, _, _)| t < oldest) {
            self.pop_front();
        }
        let mut dropped = false;
        if self.flows.len() >= MAX_FLOWS_PER_KEY {
            self.pop_front();
            dropped = true;
        }
        self.flows.push_back((ts, position, other));
        match self.distinct.iter_mut().find(|(o, _)| *o == other) {
            Some(entry) => entry.1 += 1,
            None => self.distinct.push((other, 1)),
        }
        dropped
    }

    /// True when the flows held reach `threshold` distinct coordinates.
    fn reaches(&self, threshold: u32) -> bool {
        self.distinct.len() >= threshold as usize
    }

    fn latest(&self) -> u64 {
        self.flows.back().map_or(0, |&(t, _, _)| t)
    }
}

/// Adds a flow to `key`'s window in `windows` (a new window when `room`
/// allows one): (flows dropped for room, whether it reached `threshold`).
fn add_flow<K: std::hash::Hash + Eq>(
    windows: &mut FastMap<K, Window>,
    key: K,
    (ts, position, other): (u64, u64, u128),
    window_ns: u64,
    threshold: u32,
    room: &mut usize,
) -> (u64, bool) {
    match windows.get_mut(&key) {
        Some(window) => {
            let dropped = u64::from(window.push(ts, position, other, window_ns));
            (dropped, window.reaches(threshold))
        }
        None if *room > 0 => {
            *room -= 1;
            // Room for a few flows and coordinates: most keys never grow.
            let mut window = Window {
                flows: VecDeque::with_capacity(4),
                distinct: Vec::with_capacity(4),
            };
            window.push(ts, position, other, window_ns);
            let reached = window.reaches(threshold);
            windows.insert(key, window);
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
    /// Sequence number of its latest activity (for the least recently
    /// active queue).
    seq: u64,
    sweeps: FastMap<PortKey, Window>,
    scans: FastMap<u128, Window>,
}

impl Initiator {
    fn keys(&self) -> usize {
        self.sweeps.len() + self.scans.len()
    }

    /// Drops keys with no flow in the window before `oldest`.
    fn prune(&mut self, oldest: u64) {
        self.sweeps.retain(|_, w| w.latest() >= oldest);
        self.scans.retain(|_, w| w.latest() >= oldest);
    }
}

/// What reaching a threshold hands to the fold: the flows counted, in
/// arrival order (its first flows).
pub(super) type Counted = VecDeque<(u64, u64, u128)>;

/// The counting state of one partition.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    initiators: FastMap<(bool, u128), Initiator>,
    /// Initiators by activity, oldest first; an entry is stale when the
    /// initiator's `seq` moved on.
    activity: VecDeque<((bool, u128), u64)>,
    seq: u64,
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
    #[allow(clippy::too_many_arguments)] // One call site, in the fold.
    pub(super) fn count(
        &mut self,
        limits: &Limits,
        initiator: (bool, u128),
        ts: u64,
        position: u64,
        sweep: (PortKey, bool),
        scan: (u128, u128, bool),
    ) -> (Option<Counted>, Option<Counted>) {
        let (port_key, sweep_open) = sweep;
        let (host, port_coordinate, scan_open) = scan;
        if sweep_open && scan_open {
            return (None, None);
        }
        let oldest = ts.saturating_sub(limits.window_ns);
        self.expire(oldest);
        self.seq += 1;
        let seq = self.seq;
        if !self.initiators.contains_key(&initiator)
            && self.initiators.len() >= limits.max_initiators
        {
            self.drop_least_recent(oldest);
        }
        let state = self.initiators.entry(initiator).or_default();
        state.last_ts = state.last_ts.max(ts);
        state.seq = seq;
        self.activity.push_back((initiator, seq));
        let mut untracked = 0;
        let new_keys = usize::from(!sweep_open && !state.sweeps.contains_key(&port_key))
            + usize::from(!scan_open && !state.scans.contains_key(&host));
        if new_keys > 0 && state.keys() + new_keys > limits.max_keys {
            state.prune(oldest);
        }
        let mut room = limits.max_keys.saturating_sub(state.keys());
        let mut swept = None;
        if !sweep_open {
            let (dropped, reached) = add_flow(
                &mut state.sweeps,
                port_key,
                (ts, position, host),
                limits.window_ns,
                limits.sweep_hosts,
                &mut room,
            );
            untracked += dropped;
            if reached {
                swept = state.sweeps.remove(&port_key).map(|w| w.flows);
            }
        }
        let mut scanned = None;
        if !scan_open {
            let (dropped, reached) = add_flow(
                &mut state.scans,
                host,
                (ts, position, port_coordinate),
                limits.window_ns,
                limits.scan_ports,
                &mut room,
            );
            untracked += dropped;
            if reached {
                scanned = state.scans.remove(&host).map(|w| w.flows);
            }
        }
        self.untracked += untracked;
        self.compact();
        (swept, scanned)
    }

    /// Forgets initiators whose latest flow is before `oldest`: their flows
    /// no longer count.
    fn expire(&mut self, oldest: u64) {
        while let Some(&(initiator, seq)) = self.activity.front() {
            match self.initiators.get(&initiator) {
                Some(state) if state.seq == seq => {
                    if state.last_ts >= oldest {
                        return;
                    }
                    self.initiators.remove(&initiator);
                }
                _ => {}
            }
            self.activity.pop_front();
        }
    }

    /// Drops the least recently active initiator to make room, counting it
    /// when some of its flows still counted.
    fn drop_least_recent(&mut self, oldest: u64) {
        while let Some((initiator, seq)) = self.activity.pop_front() {
            if let Some(state) = self.initiators.get(&initiator)
                && state.seq == seq
            {
                if state.last_ts >= oldest {
                    self.untracked += 1;
                }
                self.initiators.remove(&initiator);
                return;
            }
        }
    }

    /// Keeps the activity queue within a few times the initiators held.
    fn compact(&mut self) {
        if self.activity.len() > 4 * self.initiators.len() + 1024 {
            let initiators = &self.initiators;
            self.activity
                .retain(|(i, seq)| initiators.get(i).is_some_and(|s| s.seq == *seq));
        }
    }

    /// Initiators tracked now.
    pub(super) fn initiators(&self) -> usize {
        self.initiators.len()
    }
}
