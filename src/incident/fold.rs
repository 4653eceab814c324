//! One partition of the incident fold: its open incidents, its sweep and
//! scan counting, and the schedule of closes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use super::track::{Counted, Limits, Tracker};
use super::{
    Addr, Devices, END, Emit, FastMap, IncidentSettings, OpenOrder, SortKey, Timeline,
    flow_position, incident_id,
};
use crate::classify::{PolicyInForce, ZoneId};
use crate::event::{HexId, IncidentKind, IncidentRecord, IncidentState, Timestamp, Violation, ip};
use crate::exception::{RuleScope, Subject};
use crate::pipeline::StartNotice;
use crate::policy::Severity;
use crate::wire::{Transport, protocol_name};

/// Destination addresses kept in a record's `dest_sample`, and ports in
/// `dest_ports`.
const SAMPLE: usize = 16;
/// `dest_count` is exact up to this many.
const MAX_DEST_COUNT: u64 = 65_536;

/// A violation handed to the fold (its exception already matched).
pub type ViolationInput = Violation;

/// What the fold counted (the metrics of contract section 7 and issue 14).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoldCounters {
    /// Incidents opened that no exception covers, by kind (violation,
    /// sweep, scan) and severity (lowest first).
    pub opened: [[u64; 4]; 3],
    /// Sweeps and scans opened that an exception covers (a known scanner).
    pub opened_excepted: u64,
    /// Incidents open now, by kind.
    pub open: [u64; 3],
    /// Flows joined to incidents (those that opened one included).
    pub flows_joined: u64,
    /// Initiators, keys and flows dropped from sweep and scan counting
    /// while they still counted.
    pub untracked: u64,
    /// Violations and thresholds that opened no incident: too many open.
    pub not_opened: u64,
    /// Initiators tracked for sweeps and scans now.
    pub initiators: u64,
}

impl FoldCounters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &FoldCounters) {
        for (mine, theirs) in self.opened.iter_mut().zip(&other.opened) {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        }
        for (a, b) in self.open.iter_mut().zip(&other.open) {
            *a += b;
        }
        self.opened_excepted += other.opened_excepted;
        self.flows_joined += other.flows_joined;
        self.untracked += other.untracked;
        self.not_opened += other.not_opened;
        self.initiators += other.initiators;
    }
}

fn kind_index(kind: IncidentKind) -> usize {
    match kind {
        IncidentKind::Violation => 0,
        IncidentKind::Sweep => 1,
        IncidentKind::Scan => 2,
    }
}

/// The names a record shows, shared by the incidents of one (rule, zones,
/// service) under one policy generation.
#[derive(Debug)]
struct Labels {
    rule: String,
    src_zone: Option<String>,
    dest_zone: Option<String>,
    service: Option<String>,
    src_criticality: Option<String>,
    dest_criticality: Option<String>,
}

/// Where an incident is found by its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// (rule, dest_zone, service key, IPv6, src_ip) under `generation`.
    Violation(u32, u32, u32, bool, Addr),
    /// (IPv6, initiator, protocol, port or 0).
    Sweep(bool, Addr, u8, u16),
    /// (IPv6, initiator, host).
    Scan(bool, Addr, Addr),
}

impl Key {
    /// The initiator (`src_ip`).
    fn src(&self) -> u128 {
        match *self {
            Key::Violation(.., src) | Key::Sweep(_, src, ..) | Key::Scan(_, src, _) => src.get(),
        }
    }

    /// A scan's host (`dest_ip`).
    fn dest_ip(&self) -> Option<u128> {
        match *self {
            Key::Scan(_, _, host) => Some(host.get()),
            _ => None,
        }
    }
}

/// Destination addresses of an incident: the first [`SAMPLE`] in the order
/// first seen, and the rest in a set once there are more.
#[derive(Debug, Default)]
struct Dests {
    /// The sample, as 32-bit words: one per IPv4 address, four per IPv6
    /// address (an incident's destinations are of its source's family), so
    /// that a hundred thousand IPv4 incidents of 16 hosts hold 6 MB rather
    /// than 25.
    sample: Vec<u32>,
    // Boxed: an empty set is 48 bytes in each of up to a million open
    // incidents, most of which never see a 17th host.
    #[allow(clippy::box_collection)]
    rest: Option<Box<HashSet<u128, foldhash::fast::RandomState>>>,
    /// At most [`MAX_DEST_COUNT`].
    count: u32,
    capped: bool,
}

/// The words of an address in [`Dests::sample`].
fn words(ipv6: bool) -> usize {
    if ipv6 { 4 } else { 1 }
}

fn to_words(addr: u128) -> [u32; 4] {
    [
        addr as u32,
        (addr >> 32) as u32,
        (addr >> 64) as u32,
        (addr >> 96) as u32,
    ]
}

fn from_words(words: &[u32]) -> u128 {
    words
        .iter()
        .rev()
        .fold(0u128, |addr, &w| addr << 32 | u128::from(w))
}

impl Dests {
    fn sample_len(&self, ipv6: bool) -> usize {
        self.sample.len() / words(ipv6)
    }

    /// The sample, in the order first seen.
    fn sample(&self, ipv6: bool) -> impl Iterator<Item = u128> + '_ {
        self.sample.chunks_exact(words(ipv6)).map(from_words)
    }

    fn add(&mut self, ipv6: bool, addr: u128) {
        let words = &to_words(addr)[..words(ipv6)];
        let sampled = if ipv6 {
            self.sample.chunks_exact(4).any(|w| w == words)
        } else {
            self.sample.contains(&words[0])
        };
        if sampled || self.rest.as_ref().is_some_and(|r| r.contains(&addr)) {
            return;
        }
        if self.sample_len(ipv6) < SAMPLE {
            self.sample.extend_from_slice(words);
            self.count += 1;
            return;
        }
        if u64::from(self.count) >= MAX_DEST_COUNT {
            self.capped = true;
            return;
        }
        self.rest.get_or_insert_default().insert(addr);
        self.count += 1;
    }
}

#[derive(Debug)]
struct Incident {
    id: u64,
    kind: IncidentKind,
    key: Key,
    opened: OpenOrder,
    labels: Arc<Labels>,
    severity: Severity,
    ipv6: bool,
    /// Sweeps: protocol and port.
    sweep_port: Option<(u8, Option<u16>)>,
    first_seen: u64,
    last_seen: u64,
    last_record_ts: u64,
    /// Capture position of the latest join: a close comes after it.
    last_position: u64,
    flows: u64,
    dests: Dests,
    ports: Vec<u16>,
    exception: Option<Box<str>>,
    /// New at each join (unique in the fold): a scheduled close of an
    /// earlier version, or of an earlier incident in the same slot, is void.
    version: u64,
    /// The deadline its entry in the deadline heap holds.
    queued_deadline: u64,
}

impl Incident {
    fn add_port(&mut self, port: Option<u16>) {
        if let Some(port) = port
            && self.ports.len() < SAMPLE
            && !self.ports.contains(&port)
        {
            self.ports.push(port);
        }
    }
}

/// One partition of the fold.
#[derive(Debug)]
pub struct Fold {
    settings: IncidentSettings,
    idle_ns: u64,
    max_age_ns: u64,
    update_ns: u64,
    limits: Limits,
    salt: u64,
    /// Boxed: a slot is 8 bytes, and the vector's spare capacity costs
    /// little.
    slots: Vec<Option<Box<Incident>>>,
    free: Vec<u32>,
    /// Open incidents by key: slot numbers, hashed by the key their
    /// incident holds (5 bytes a bucket rather than a key's 48 again).
    by_key: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    /// Open sweeps and scans by initiator: a new flow of an initiator with
    /// none (nearly every flow) looks up neither key.
    tracked_open: FastMap<(bool, Addr), u32>,
    /// (last_seen + idle, slot): when each open incident may be over.
    deadlines: BinaryHeap<Reverse<(u64, u32)>>,
    /// Closes found within the current batch: (position, opening order,
    /// slot, version).
    scheduled: BinaryHeap<Reverse<(u64, OpenOrder, u32, u64)>>,
    next_version: u64,
    tracker: Tracker,
    labels: FastMap<(u32, u32, u32, u32), Arc<Labels>>,
    sweep_labels: FastMap<(IncidentKind, ZoneId, ZoneId), Arc<Labels>>,
    labels_generation: u32,
    counters: FoldCounters,
}

fn ns(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Fold {
    /// An empty partition; `salt` is what incident ids mix in (the
    /// capture's first timestamp, the daemon's start time), as flow ids.
    pub fn new(settings: &IncidentSettings, salt: u64) -> Fold {
        let partitions = super::PARTITIONS;
        Fold {
            idle_ns: ns(settings.idle),
            max_age_ns: ns(settings.max_age),
            update_ns: ns(settings.update_interval),
            limits: Limits {
                window_ns: ns(settings.window),
                sweep_hosts: settings.sweep_hosts.max(1),
                scan_ports: settings.scan_ports.max(1),
                max_initiators: settings.max_initiators.div_ceil(partitions).max(1),
                max_keys: settings.max_keys_per_initiator.max(2),
                use_log: true,
            },
            settings: settings.clone(),
            salt,
            slots: Vec::new(),
            free: Vec::new(),
            by_key: hashbrown::HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
            tracked_open: FastMap::default(),
            deadlines: BinaryHeap::new(),
            scheduled: BinaryHeap::new(),
            next_version: 0,
            tracker: Tracker::default(),
            labels: FastMap::default(),
            sweep_labels: FastMap::default(),
            labels_generation: 0,
            counters: FoldCounters::default(),
        }
    }

    /// The fold holding every initiator (the daemon's one thread): the
    /// initiators' bound is not split among partitions.
    pub fn whole(mut self) -> Fold {
        self.limits.max_initiators = self.settings.max_initiators.max(1);
        self
    }

    /// What it counted so far.
    pub fn counters(&self) -> FoldCounters {
        let mut counters = self.counters.clone();
        counters.untracked = self.tracker.untracked;
        counters.initiators = self.tracker.initiators() as u64;
        counters
    }

    /// The latest `limit` incidents opened that are still open, in
    /// opening order, as `update` records stamped `now_ns` (the daemon's
    /// `/api/v1/incidents`).
    pub fn open_records(
        &self,
        now_ns: u64,
        devices: &dyn Devices,
        limit: usize,
    ) -> Vec<IncidentRecord> {
        let mut open: Vec<&Incident> = self.slots.iter().flatten().map(|i| &**i).collect();
        if open.len() > limit {
            let cut = open.len() - limit;
            open.select_nth_unstable_by_key(cut, |i| i.opened);
            open.drain(..cut);
        }
        open.sort_by_key(|i| i.opened);
        open.into_iter()
            .map(|i| self.record(i, IncidentState::Update, now_ns, u64::MAX, devices))
            .collect()
    }

    /// Folds one batch: its violations (ordered as the replay orders
    /// events: by [`SortKey::of_violation`]) and its flow starts (by
    /// position), with `timeline` holding the batch's frame times.
    pub fn batch(
        &mut self,
        timeline: &Timeline,
        violations: &[Violation],
        notices: &[StartNotice],
        policy: &PolicyInForce,
        devices: &dyn Devices,
        out: &mut dyn Emit,
    ) {
        self.schedule_batch(timeline);
        let (mut v, mut n) = (0, 0);
        loop {
            let next_violation = violations.get(v).map(|x| x.packet_index);
            let next_notice = notices.get(n).map(|x| x.position);
            let position = match (next_violation, next_notice) {
                (None, None) => break,
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
            };
            self.close_scheduled(position, timeline, devices, out);
            if next_violation == Some(position) {
                let ts = timeline.ts_at(position).unwrap_or(violations[v].ts_ns);
                self.violation(&violations[v], ts, Some(timeline), policy, devices, out);
                v += 1;
            } else {
                let ts = timeline.ts_at(position).unwrap_or(notices[n].ts_ns);
                self.notice(&notices[n], ts, Some(timeline), policy, devices, out);
                n += 1;
            }
        }
        if !timeline.is_empty() {
            self.close_scheduled(timeline.end() - 1, timeline, devices, out);
        }
    }

    /// Folds inputs as the daemon has them, without the frames between
    /// them: before each input, the incidents whose `last_seen + idle` its
    /// capture time passed are closed, stamped with it (the live sensor
    /// also closes by the clock: [`Fold::close_by_clock`]).
    pub fn batch_live(
        &mut self,
        violations: &[Violation],
        notices: &[StartNotice],
        policy: &PolicyInForce,
        devices: &dyn Devices,
        out: &mut dyn Emit,
    ) {
        let (mut v, mut n) = (0, 0);
        loop {
            let next_violation = violations.get(v).map(|x| x.packet_index);
            let next_notice = notices.get(n).map(|x| x.position);
            let take_violation = match (next_violation, next_notice) {
                (None, None) => break,
                (Some(a), Some(b)) => a <= b,
                (Some(_), None) => true,
                (None, Some(_)) => false,
            };
            if take_violation {
                let violation = &violations[v];
                self.close_by_clock(violation.ts_ns, violation.packet_index, devices, out);
                self.violation(violation, violation.ts_ns, None, policy, devices, out);
                v += 1;
            } else {
                let notice = &notices[n];
                self.close_by_clock(notice.ts_ns, notice.position, devices, out);
                self.notice(notice, notice.ts_ns, None, policy, devices, out);
                n += 1;
            }
        }
    }

    /// Ends the capture: the violations released at its end (flows still
    /// waiting for their application), then every incident still open is
    /// closed with the last frame's time `last_ts`, in opening order.
    pub fn finish(
        &mut self,
        released: &[Violation],
        last_ts: u64,
        policy: &PolicyInForce,
        devices: &dyn Devices,
        out: &mut dyn Emit,
    ) {
        for violation in released {
            let mut at_end = violation.clone();
            at_end.packet_index = END - 1;
            self.violation(&at_end, last_ts, None, policy, devices, out);
        }
        let mut open: Vec<u32> = (0..self.slots.len() as u32)
            .filter(|&s| self.slots[s as usize].is_some())
            .collect();
        open.sort_by_key(|&s| self.slots[s as usize].as_ref().map(|i| i.opened));
        for slot in open {
            self.close(slot, END, last_ts, devices, out);
        }
    }

    /// The daemon's sweep by the clock: closes every incident whose
    /// `last_seen + idle` is before `now_ns`, stamped `now_ns`, keyed at
    /// `position`.
    pub fn close_by_clock(
        &mut self,
        now_ns: u64,
        position: u64,
        devices: &dyn Devices,
        out: &mut dyn Emit,
    ) {
        let mut due = Vec::new();
        while let Some(&Reverse((deadline, slot))) = self.deadlines.peek() {
            if deadline >= now_ns {
                break;
            }
            self.deadlines.pop();
            let Some(incident) = self.slots[slot as usize].as_mut() else {
                continue;
            };
            let current = incident.last_seen.saturating_add(self.idle_ns);
            if current != deadline {
                incident.queued_deadline = current;
                self.deadlines.push(Reverse((current, slot)));
                continue;
            }
            due.push(slot);
        }
        due.sort_by_key(|&s| self.slots[s as usize].as_ref().map(|i| i.opened));
        for slot in due {
            self.close(slot, position, now_ns, devices, out);
        }
    }

    /// Finds the open incidents that are over within this batch.
    fn schedule_batch(&mut self, timeline: &Timeline) {
        if timeline.is_empty() {
            return;
        }
        let mut later = Vec::new();
        while let Some(&Reverse((deadline, slot))) = self.deadlines.peek() {
            // Nothing in this batch is later than `deadline`: neither it nor
            // any later deadline closes here.
            if timeline.first_after(timeline.base(), deadline).is_none() {
                break;
            }
            self.deadlines.pop();
            let Some(incident) = self.slots[slot as usize].as_mut() else {
                continue;
            };
            let current = incident.last_seen.saturating_add(self.idle_ns);
            if current != deadline {
                incident.queued_deadline = current;
                self.deadlines.push(Reverse((current, slot)));
                continue;
            }
            let from = (incident.last_position.saturating_add(1)).max(timeline.base());
            match timeline.first_after(from, deadline) {
                Some((position, _)) => {
                    // Out of the deadline heap: a join before `position`
                    // queues its new deadline.
                    incident.queued_deadline = 0;
                    self.scheduled.push(Reverse((
                        position,
                        incident.opened,
                        slot,
                        incident.version,
                    )));
                }
                // Only frames before its latest join are that late (a
                // capture stepping back in time): not over yet.
                None => later.push(Reverse((deadline, slot))),
            }
        }
        self.deadlines.extend(later);
    }

    /// Closes the incidents scheduled at or before `position`.
    fn close_scheduled(
        &mut self,
        position: u64,
        timeline: &Timeline,
        devices: &dyn Devices,
        out: &mut dyn Emit,
    ) {
        while let Some(&Reverse((at, _, slot, version))) = self.scheduled.peek() {
            if at > position {
                return;
            }
            self.scheduled.pop();
            let live = self.slots[slot as usize]
                .as_ref()
                .is_some_and(|i| i.version == version);
            if live {
                let ts = timeline.ts_at(at).unwrap_or(0);
                self.close(slot, at, ts, devices, out);
            }
        }
    }

    /// After a join at `position`: when the incident may be over, and
    /// whether within this batch.
    fn rescheduled(&mut self, slot: u32, position: u64, timeline: Option<&Timeline>) {
        self.next_version += 1;
        let version = self.next_version;
        let Some(incident) = self.slots[slot as usize].as_mut() else {
            return;
        };
        incident.version = version;
        incident.last_position = position;
        let deadline = incident.last_seen.saturating_add(self.idle_ns);
        if incident.queued_deadline > deadline || incident.queued_deadline == 0 {
            incident.queued_deadline = deadline;
            self.deadlines.push(Reverse((deadline, slot)));
        }
        if let Some(timeline) = timeline
            && let Some((at, _)) = timeline.first_after(position.saturating_add(1), deadline)
        {
            self.scheduled
                .push(Reverse((at, incident.opened, slot, incident.version)));
        }
    }

    #[allow(clippy::too_many_arguments)] // The fold's state and one input.
    fn violation(
        &mut self,
        violation: &Violation,
        record_ts: u64,
        timeline: Option<&Timeline>,
        policy: &PolicyInForce,
        devices: &dyn Devices,
        out: &mut dyn Emit,
    ) {
        let event_key = SortKey::of_violation(violation, 0);
        if violation.exception.is_some() {
            // Excepted violations join no incident.
            out.violation(event_key, violation, None);
            return;
        }
        let compiled = &policy.policy;
        let key = Key::Violation(
            violation.verdict.rule,
            violation.dest_zone,
            compiled.service_key(
                violation.verdict,
                violation.transport,
                violation.dest_port,
                violation.app.as_deref().map(|d| d.app()),
            ),
            violation.ipv6,
            Addr::new(violation.src_addr),
        );
        if policy.generation != self.labels_generation {
            self.relabel(policy);
        }
        let has_ports = matches!(violation.transport, Transport::Tcp | Transport::Udp);
        let port = has_ports.then_some(violation.dest_port);
        let severity = compiled.rule(violation.verdict.rule).severity;
        let record_key = SortKey::of_violation(violation, 1);
        if let Some(slot) = self.find(&key) {
            let first_seen = self.slots[slot as usize]
                .as_ref()
                .map_or(0, |i| i.first_seen);
            if violation.ts_ns.saturating_sub(first_seen) > self.max_age_ns {
                // Over by age: this violation opens a new one.
                self.close(slot, violation.packet_index, record_ts, devices, out);
            } else {
                let update_ns = self.update_ns;
                let Some(incident) = self.slots[slot as usize].as_mut() else {
                    return;
                };
                incident.flows += 1;
                incident.last_seen = incident.last_seen.max(violation.ts_ns);
                incident.dests.add(incident.ipv6, violation.dest_addr);
                incident.add_port(port);
                incident.severity = incident.severity.max(severity);
                let id = incident.id;
                let update = record_ts.saturating_sub(incident.last_record_ts) >= update_ns;
                if update {
                    incident.last_record_ts = record_ts;
                }
                self.counters.flows_joined += 1;
                out.violation(event_key, violation, Some(id));
                if update {
                    self.emit(
                        slot,
                        IncidentState::Update,
                        record_key,
                        record_ts,
                        devices,
                        out,
                    );
                }
                self.rescheduled(slot, violation.packet_index, timeline);
                return;
            }
        }
        if self.open_count() >= self.settings.max_open {
            self.counters.not_opened += 1;
            out.violation(event_key, violation, None);
            return;
        }
        let labels = self.violation_labels(policy, violation);
        let flow_position = flow_position(violation.flow_id, self.salt);
        let mut dests = Dests::default();
        dests.add(violation.ipv6, violation.dest_addr);
        let mut incident = Incident {
            id: incident_id(flow_position, IncidentKind::Violation, self.salt),
            kind: IncidentKind::Violation,
            key,
            opened: record_key.open_order(),
            labels,
            severity,
            ipv6: violation.ipv6,
            sweep_port: None,
            first_seen: violation.ts_ns,
            last_seen: violation.ts_ns,
            last_record_ts: record_ts,
            last_position: violation.packet_index,
            flows: 1,
            dests,
            ports: Vec::new(),
            exception: None,
            version: 0,
            queued_deadline: 0,
        };
        incident.add_port(port);
        let id = incident.id;
        out.violation(event_key, violation, Some(id));
        let slot = self.insert(incident);
        self.counters.flows_joined += 1;
        self.emit(
            slot,
            IncidentState::Open,
            record_key,
            record_ts,
            devices,
            out,
        );
        self.rescheduled(slot, violation.packet_index, timeline);
    }

    #[allow(clippy::too_many_arguments)] // The fold's state and one input.
    fn notice(
        &mut self,
        notice: &StartNotice,
        record_ts: u64,
        timeline: Option<&Timeline>,
        policy: &PolicyInForce,
        devices: &dyn Devices,
        out: &mut dyn Emit,
    ) {
        let port_key = (notice.protocol, notice.port.unwrap_or(0));
        let initiator = Addr::new(notice.initiator);
        let (sweep_open, scan_open) = if !self.tracked_open.is_empty()
            && self.tracked_open.contains_key(&(notice.ipv6, initiator))
        {
            let sweep_key = Key::Sweep(notice.ipv6, initiator, port_key.0, port_key.1);
            let scan_key = Key::Scan(notice.ipv6, initiator, Addr::new(notice.responder));
            (self.find(&sweep_key), self.find(&scan_key))
        } else {
            (None, None)
        };
        let port_coordinate = u128::from(notice.protocol) << 16
            | u128::from(notice.port.unwrap_or(0))
            | u128::from(notice.port.is_some()) << 24;
        let (swept, scanned) = self.tracker.count(
            &self.limits,
            (notice.ipv6, notice.initiator),
            notice.ts_ns,
            (port_key, sweep_open.is_some()),
            (notice.responder, port_coordinate, scan_open.is_some()),
        );
        // Nearly every flow joins nothing and reaches no threshold: it
        // costs the counting alone.
        if sweep_open.is_none() && scan_open.is_none() && swept.is_none() && scanned.is_none() {
            return;
        }
        for (kind, open, counted) in [
            (IncidentKind::Sweep, sweep_open, swept),
            (IncidentKind::Scan, scan_open, scanned),
        ] {
            let key = SortKey {
                position: notice.position,
                phase: 2,
                opened: OpenOrder::default(),
                x: kind_index(kind) as u64,
                y: 0,
                sub: 0,
            };
            if let Some(slot) = open {
                self.join_tracked(slot, notice, key, record_ts, timeline, devices, out);
            } else if let Some(counted) = counted {
                self.open_tracked(
                    kind, notice, &counted, key, record_ts, timeline, policy, devices, out,
                );
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // The fold's state and one input.
    fn join_tracked(
        &mut self,
        slot: u32,
        notice: &StartNotice,
        key: SortKey,
        record_ts: u64,
        timeline: Option<&Timeline>,
        devices: &dyn Devices,
        out: &mut dyn Emit,
    ) {
        let update_ns = self.update_ns;
        let Some(incident) = self.slots[slot as usize].as_mut() else {
            return;
        };
        incident.flows += 1;
        incident.last_seen = incident.last_seen.max(notice.ts_ns);
        incident.dests.add(incident.ipv6, notice.responder);
        incident.add_port(notice.port);
        let update = record_ts.saturating_sub(incident.last_record_ts) >= update_ns;
        if update {
            incident.last_record_ts = record_ts;
        }
        self.counters.flows_joined += 1;
        if update {
            self.emit(slot, IncidentState::Update, key, record_ts, devices, out);
        }
        self.rescheduled(slot, notice.position, timeline);
    }

    #[allow(clippy::too_many_arguments)] // The fold's state and one input.
    fn open_tracked(
        &mut self,
        kind: IncidentKind,
        notice: &StartNotice,
        counted: &Counted,
        key: SortKey,
        record_ts: u64,
        timeline: Option<&Timeline>,
        policy: &PolicyInForce,
        devices: &dyn Devices,
        out: &mut dyn Emit,
    ) {
        if self.open_count() >= self.settings.max_open {
            self.counters.not_opened += 1;
            return;
        }
        if policy.generation != self.labels_generation {
            self.relabel(policy);
        }
        let (severity, rule_scope, dest) = match kind {
            IncidentKind::Sweep => (self.settings.sweep_severity, RuleScope::Sweep, None),
            _ => (
                self.settings.scan_severity,
                RuleScope::Scan,
                Some((notice.responder, notice.zones.1)),
            ),
        };
        let subject = Subject {
            rule: rule_scope,
            ipv6: notice.ipv6,
            src: (notice.initiator, notice.zones.0),
            dest,
            service: None,
            ts_ns: notice.ts_ns,
        };
        let exception = policy
            .exceptions
            .match_subject(&subject)
            .excepted
            .and_then(|i| policy.exceptions.get(i))
            .map(|e| e.id.as_str().into());
        let labels = self.tracked_labels(policy, kind, notice.zones);
        let mut dests = Dests::default();
        let mut ports = Vec::new();
        let mut first_seen = u64::MAX;
        let mut last_seen = 0;
        for &(ts, other) in counted {
            first_seen = first_seen.min(ts);
            last_seen = last_seen.max(ts);
            match kind {
                IncidentKind::Sweep => dests.add(notice.ipv6, other),
                _ => {
                    if other >> 24 & 1 == 1
                        && ports.len() < SAMPLE
                        && !ports.contains(&(other as u16))
                    {
                        ports.push(other as u16);
                    }
                }
            }
        }
        let sweep_port = match kind {
            IncidentKind::Sweep => {
                if let Some(port) = notice.port {
                    ports.push(port);
                }
                Some((notice.protocol, notice.port))
            }
            _ => {
                dests.add(notice.ipv6, notice.responder);
                None
            }
        };
        let initiator = Addr::new(notice.initiator);
        let map_key = match kind {
            IncidentKind::Sweep => Key::Sweep(
                notice.ipv6,
                initiator,
                notice.protocol,
                notice.port.unwrap_or(0),
            ),
            _ => Key::Scan(notice.ipv6, initiator, Addr::new(notice.responder)),
        };
        let incident = Incident {
            id: incident_id(notice.position, kind, self.salt),
            kind,
            key: map_key,
            opened: key.open_order(),
            labels,
            severity,
            ipv6: notice.ipv6,
            sweep_port,
            first_seen,
            last_seen,
            last_record_ts: record_ts,
            last_position: notice.position,
            flows: counted.len() as u64,
            dests,
            ports,
            exception,
            version: 0,
            queued_deadline: 0,
        };
        self.counters.flows_joined += incident.flows;
        let slot = self.insert(incident);
        self.emit(slot, IncidentState::Open, key, record_ts, devices, out);
        self.rescheduled(slot, notice.position, timeline);
    }

    /// The slot of the open incident with `key`.
    fn find(&self, key: &Key) -> Option<u32> {
        let slots = &self.slots;
        self.by_key
            .find(self.hasher.hash_one(key), |&s| {
                slots[s as usize].as_ref().is_some_and(|i| i.key == *key)
            })
            .copied()
    }

    /// Indexes `slot`, whose incident holds `key`.
    fn index(&mut self, key: Key, slot: u32) {
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_key.insert_unique(hasher.hash_one(key), slot, |&s| {
            slots[s as usize]
                .as_ref()
                .map_or(0, |i| hasher.hash_one(i.key))
        });
    }

    /// Takes `slot`, indexed by `key`, out of the index (if it is in it: an
    /// incident whose rule or zone a reload removed is not).
    fn unindex(&mut self, key: &Key, slot: u32) {
        if let Ok(entry) = self
            .by_key
            .find_entry(self.hasher.hash_one(key), |&s| s == slot)
        {
            entry.remove();
        }
    }

    fn open_count(&self) -> usize {
        self.by_key.len()
    }

    fn insert(&mut self, incident: Incident) -> u32 {
        let kind = kind_index(incident.kind);
        if incident.exception.is_some() {
            self.counters.opened_excepted += 1;
        } else {
            self.counters.opened[kind][incident.severity as usize] += 1;
        }
        self.counters.open[kind] += 1;
        let key = incident.key;
        if let Key::Sweep(ipv6, src, ..) | Key::Scan(ipv6, src, _) = key {
            *self.tracked_open.entry((ipv6, src)).or_default() += 1;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(Box::new(incident));
                slot
            }
            None => {
                self.slots.push(Some(Box::new(incident)));
                (self.slots.len() - 1) as u32
            }
        };
        self.index(key, slot);
        slot
    }

    fn close(
        &mut self,
        slot: u32,
        position: u64,
        ts: u64,
        devices: &dyn Devices,
        out: &mut dyn Emit,
    ) {
        let Some(incident) = self.slots[slot as usize].as_ref() else {
            return;
        };
        let key = SortKey {
            position,
            phase: 0,
            opened: incident.opened,
            x: 0,
            y: 0,
            sub: 0,
        };
        self.emit(slot, IncidentState::Close, key, ts, devices, out);
        if let Some(incident) = self.slots[slot as usize].take() {
            self.unindex(&incident.key, slot);
            if let Key::Sweep(ipv6, src, ..) | Key::Scan(ipv6, src, _) = incident.key
                && let Some(open) = self.tracked_open.get_mut(&(ipv6, src))
            {
                *open -= 1;
                if *open == 0 {
                    self.tracked_open.remove(&(ipv6, src));
                }
            }
            self.counters.open[kind_index(incident.kind)] -= 1;
            self.free.push(slot);
        }
    }

    fn emit(
        &self,
        slot: u32,
        state: IncidentState,
        key: SortKey,
        ts: u64,
        devices: &dyn Devices,
        out: &mut dyn Emit,
    ) {
        if let Some(incident) = self.slots[slot as usize].as_ref() {
            out.record(key, self.record(incident, state, ts, key.position, devices));
        }
    }

    fn record(
        &self,
        incident: &Incident,
        state: IncidentState,
        ts: u64,
        position: u64,
        devices: &dyn Devices,
    ) -> IncidentRecord {
        let labels = &incident.labels;
        let addr = |a: u128| -> IpAddr { ip(incident.ipv6, a) };
        IncidentRecord {
            timestamp: Timestamp(ts),
            event_type: "incident".into(),
            incident_id: HexId(incident.id),
            state,
            kind: incident.kind,
            rule: labels.rule.clone(),
            severity: incident.severity.as_str().to_owned(),
            src_ip: addr(incident.key.src()),
            src_zone: labels.src_zone.clone(),
            dest_zone: labels.dest_zone.clone(),
            service: labels.service.clone(),
            dest_ip: incident.key.dest_ip().map(addr),
            proto: incident
                .sweep_port
                .map(|(protocol, _)| protocol_name(protocol).to_owned()),
            dest_port: incident.sweep_port.and_then(|(_, port)| port),
            src_criticality: labels.src_criticality.clone(),
            dest_criticality: labels.dest_criticality.clone(),
            first_seen: Timestamp(incident.first_seen),
            last_seen: Timestamp(incident.last_seen),
            flows: incident.flows,
            dest_count: u64::from(incident.dests.count),
            dest_count_capped: incident.dests.capped,
            dest_sample: incident.dests.sample(incident.ipv6).map(addr).collect(),
            dest_ports: incident.ports.clone(),
            src_device: devices.device_as_of(incident.ipv6, incident.key.src(), position),
            exception: incident.exception.as_deref().map(str::to_owned),
        }
    }

    /// After a reload: labels are interned anew, and open violation
    /// incidents are found again by the new policy's ids for their names.
    fn relabel(&mut self, policy: &PolicyInForce) {
        self.labels.clear();
        self.sweep_labels.clear();
        self.labels_generation = policy.generation;
        let compiled = &policy.policy;
        let rule_id = |name: &str| {
            if name == "default" {
                Some(crate::classify::Verdict::DEFAULT_RULE)
            } else {
                compiled
                    .rules()
                    .iter()
                    .position(|r| r.name == name)
                    .map(|i| i as u32)
            }
        };
        let zone_id = |name: &str| {
            if name == "unknown" {
                Some(crate::classify::ZoneTable::UNKNOWN)
            } else {
                (0..compiled.zone_count() as u32).find(|&z| compiled.zone(z).name == name)
            }
        };
        let mut rekeyed = Vec::new();
        for (slot, incident) in self.slots.iter().enumerate() {
            let Some(incident) = incident else { continue };
            if let Key::Violation(_, _, service, ipv6, src) = incident.key {
                let labels = &incident.labels;
                let new = rule_id(&labels.rule).zip(labels.dest_zone.as_deref().and_then(zone_id));
                rekeyed.push((
                    incident.key,
                    new.map(|(r, z)| Key::Violation(r, z, service, ipv6, src)),
                    slot as u32,
                ));
            }
        }
        for (old, new, slot) in rekeyed {
            self.unindex(&old, slot);
            // An incident whose rule or zone is gone is joined by nothing
            // more and closes when idle.
            if let Some(new) = new {
                if let Some(incident) = self.slots[slot as usize].as_mut() {
                    incident.key = new;
                }
                self.index(new, slot);
            }
        }
    }

    fn violation_labels(&mut self, policy: &PolicyInForce, violation: &Violation) -> Arc<Labels> {
        let compiled = &policy.policy;
        let service_key = compiled.service_key(
            violation.verdict,
            violation.transport,
            violation.dest_port,
            violation.app.as_deref().map(|d| d.app()),
        );
        let key = (
            violation.verdict.rule,
            violation.src_zone,
            violation.dest_zone,
            service_key,
        );
        self.labels
            .entry(key)
            .or_insert_with(|| {
                let src = compiled.zone(violation.src_zone);
                let dest = compiled.zone(violation.dest_zone);
                Arc::new(Labels {
                    rule: compiled.rule(violation.verdict.rule).name.clone(),
                    src_zone: Some(src.name.clone()),
                    dest_zone: Some(dest.name.clone()),
                    service: compiled
                        .service_label(
                            violation.verdict,
                            violation.transport,
                            violation.dest_port,
                            violation.app.as_deref().map(|d| d.app()),
                        )
                        .map(str::to_owned),
                    src_criticality: src.criticality.clone(),
                    dest_criticality: dest.criticality.clone(),
                })
            })
            .clone()
    }

    fn tracked_labels(
        &mut self,
        policy: &PolicyInForce,
        kind: IncidentKind,
        zones: (ZoneId, ZoneId),
    ) -> Arc<Labels> {
        let compiled = &policy.policy;
        let zones = match kind {
            IncidentKind::Sweep => (zones.0, crate::classify::ZoneTable::UNKNOWN),
            _ => zones,
        };
        self.sweep_labels
            .entry((kind, zones.0, zones.1))
            .or_insert_with(|| {
                Arc::new(Labels {
                    rule: kind.as_str().to_owned(),
                    src_zone: None,
                    dest_zone: None,
                    service: None,
                    src_criticality: compiled.zone(zones.0).criticality.clone(),
                    dest_criticality: match kind {
                        IncidentKind::Scan => compiled.zone(zones.1).criticality.clone(),
                        _ => None,
                    },
                })
            })
            .clone()
    }
}
