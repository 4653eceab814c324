//! Flow tracking: grouping packets into flows, deciding who initiated each
//! flow, judging it once, and expiring it on capture time (contract section 2).
//!
//! A [`Tracker`] owns one bounded [`FlowTable`]; workers own their trackers
//! outright, so nothing here is shared or locked. The policy is passed in per
//! packet as a plain reference, and flows remember the generation of the
//! policy that judged them, so that a reloaded policy judges each existing
//! flow again at its next packet.

mod index;
mod inspect;
mod key;
mod table;

pub use index::prefetch;
pub use key::{Addr, FlowHasher, FlowKey};
pub use table::{CLASSES, Entry, FlowTable, Slot};

use std::collections::HashMap;
use std::time::Duration;

use crate::classify::{CompiledPolicy, Verdict};
use crate::event::Violation;
use crate::policy::Action;
use crate::wire::{Headers, Transport, tcp_flags};

/// Idle timeouts and the size bound of flow tracking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// An established (or half-open) TCP flow ends after this long without a
    /// packet. Default 300 s.
    pub tcp_timeout: Duration,
    /// A TCP flow closed by RST, or by FINs both ways, is kept until it has
    /// been idle this long, so that stragglers stay in it. Default 10 s.
    pub tcp_closed_timeout: Duration,
    /// UDP idle timeout. Default 120 s.
    pub udp_timeout: Duration,
    /// ICMP/ICMPv6 echo idle timeout. Default 30 s.
    pub icmp_timeout: Duration,
    /// Idle timeout of other IP protocols. Default 120 s.
    pub other_timeout: Duration,
    /// Most flows held at once, over all trackers of a run (each tracker
    /// holds its share, see [`FlowConfig::per_shard_capacity`]); when a
    /// tracker is full, its least recently seen flow is evicted (and
    /// counted). Default 1,000,000: about 130 MB.
    pub max_flows: usize,
}

impl FlowConfig {
    /// The flow-table bound of each of `shards` trackers that share
    /// `max_flows`: an even split plus 1/32, because a hash never splits
    /// flows exactly evenly and a shard should not evict while the others
    /// have room. (With 16 shards of a million flows, the fullest shard holds
    /// about 0.5% more than its even share.) The sum may exceed `max_flows`
    /// by that 1/32.
    pub fn per_shard_capacity(&self, shards: usize) -> usize {
        let even = self.max_flows.div_ceil(shards.max(1));
        (even + even / 32).max(1)
    }
}

impl Default for FlowConfig {
    fn default() -> Self {
        FlowConfig {
            tcp_timeout: Duration::from_secs(300),
            tcp_closed_timeout: Duration::from_secs(10),
            udp_timeout: Duration::from_secs(120),
            icmp_timeout: Duration::from_secs(30),
            other_timeout: Duration::from_secs(120),
            max_flows: 1_000_000,
        }
    }
}

/// Timeout classes: the lists of a [`FlowTable`].
mod class {
    pub const TCP_OPEN: usize = 0;
    pub const TCP_CLOSED: usize = 1;
    pub const UDP: usize = 2;
    pub const ECHO: usize = 3;
    pub const OTHER: usize = 4;
}

/// TCP teardown bits of a flow.
mod teardown {
    pub const FIN_FROM_LO: u8 = 1;
    pub const FIN_FROM_HI: u8 = 2;
    pub const CLOSED: u8 = 4;
}

/// What a tracker keeps per flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowState {
    /// The flow's id (see [`flow_id`]).
    pub flow_id: u64,
    /// Capture time of its first packet.
    pub first_ts: u64,
    /// True when the key's `lo` endpoint initiated the flow.
    pub initiator_is_lo: bool,
    /// The latest verdict.
    pub verdict: Verdict,
    /// Generation of the policy that gave `verdict`.
    pub generation: u32,
    /// True once the flow's one violation event has been emitted (or is
    /// waiting for the application).
    pub alerted: bool,
    teardown: u8,
    /// True while its first bytes are inspected for the application.
    inspecting: bool,
    /// True once its verdict took its application into account: a reload
    /// keeps that verdict (the application is not kept to judge again).
    app_judged: bool,
    /// True when its key holds a group or unspecified address: its packets
    /// are checked for link-local traffic one by one.
    group_or_unspecified: bool,
}

/// Counts of what a tracker did, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowCounters {
    /// Flows started.
    pub created: u64,
    /// Flows that ended by idle timeout (closed TCP flows included).
    pub expired: u64,
    /// Flows pushed out of a full table.
    pub evicted: u64,
    /// Packets to multicast or broadcast, or from an unspecified address,
    /// that no zone claims: counted, not judged.
    pub link_local: u64,
}

impl FlowCounters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &FlowCounters) {
        self.created += other.created;
        self.expired += other.expired;
        self.evicted += other.evicted;
        self.link_local += other.link_local;
    }
}

/// One decoded packet, as flow tracking needs it: `Copy` and small, 60
/// bytes, so that the replay's record of it (with its position) is one
/// 64-byte cache line, written by the core that decodes and read by the one
/// that tracks. Laid out by hand and packed to 4-byte alignment for that
/// (`ts_ns` would otherwise round the size up to 64 and the record to 72):
/// read `ts_ns` by value, never by reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct Packet {
    /// Its flow's key (38 bytes, 2-byte aligned).
    pub key: FlowKey,
    /// Outermost VLAN ID; 0 when untagged.
    pub vlan: u16,
    /// Capture time, nanoseconds since the epoch.
    pub ts_ns: u64,
    /// The key's hash (see [`FlowHasher`]).
    pub hash: u32,
    /// Where the TCP or UDP header starts in the frame (application
    /// detection reads the payload from there).
    pub transport_offset: u16,
    /// Transport payload length, capped at 65,535.
    pub payload_len: u16,
    /// Transport, with the echo direction.
    pub transport: Transport,
    /// TCP flags.
    pub tcp_flags: u8,
    /// True when the sender is the key's `lo` endpoint.
    pub sender_is_lo: bool,
}

const _: () = assert!(std::mem::size_of::<Packet>() == 60);

impl Packet {
    /// The packet of decoded `headers`, captured at `ts_ns`. Always inlined:
    /// the replay's decode loop then builds it in place in its record (as a
    /// call, about 5% of a replay's time went to it).
    #[inline(always)]
    pub fn new(headers: &Headers, ts_ns: u64) -> Packet {
        let (key, sender_is_lo, hash) = FlowKey::of(headers);
        Packet {
            key,
            hash,
            ts_ns,
            vlan: headers.vlan,
            transport: headers.transport,
            tcp_flags: headers.tcp_flags,
            sender_is_lo,
            transport_offset: u16::try_from(headers.transport_offset).unwrap_or(0),
            payload_len: u16::try_from(headers.payload_len).unwrap_or(u16::MAX),
        }
    }

    /// The packet's TCP sequence number and payload in `frame`, when they
    /// are there (detection reads them only for flows it inspects).
    fn payload<'f>(&self, frame: &'f [u8]) -> Option<(Option<u32>, &'f [u8])> {
        let at = usize::from(self.transport_offset);
        let len = usize::from(self.payload_len);
        match self.transport {
            Transport::Tcp => {
                let header = frame.get(at..at + 20)?;
                let seq = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
                let start = at + usize::from(header[12] >> 4) * 4;
                let end = (start + len).min(frame.len());
                Some((Some(seq), frame.get(start..end).unwrap_or(&[])))
            }
            Transport::Udp => {
                let start = at + 8;
                let end = (start + len).min(frame.len());
                Some((None, frame.get(start..end).unwrap_or(&[])))
            }
            _ => None,
        }
    }

    /// Sender's and receiver's (address, port).
    #[inline]
    fn endpoints(&self) -> ((u128, u16), (u128, u16)) {
        let lo = (self.key.lo_addr.get(), self.key.lo_port);
        let hi = (self.key.hi_addr.get(), self.key.hi_port);
        if self.sender_is_lo {
            (lo, hi)
        } else {
            (hi, lo)
        }
    }
}

/// A flow's start, as the device inventory takes it: recorded only when
/// asked for ([`Tracker::record_starts`]), once per flow, never per packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowStart {
    /// Capture position of the flow's first packet.
    pub packet_index: u64,
    /// Its capture time.
    pub ts_ns: u64,
    /// IPv6 or IPv4.
    pub ipv6: bool,
    /// IP protocol number.
    pub protocol: u8,
    /// The flow's transport.
    pub transport: Transport,
    /// Initiator's (address, port).
    pub initiator: (u128, u16),
    /// Responder's (address, port).
    pub responder: (u128, u16),
    /// Initiator's and responder's zones.
    pub zones: (crate::classify::ZoneId, crate::classify::ZoneId),
    /// Outermost VLAN ID of the first packet; 0 when untagged.
    pub vlan: u16,
    /// True when the first packet's sender is the initiator (so its source
    /// MAC address is the initiator's).
    pub sender_initiates: bool,
}

/// A flow whose application was identified, for the device inventory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppIdentified {
    /// IPv6 or IPv4.
    pub ipv6: bool,
    /// The initiator's address.
    pub client: u128,
    /// The responder's address.
    pub server: u128,
    /// What was found.
    pub detection: crate::app::Detection,
}

/// The policy a packet is judged under.
#[derive(Clone, Copy, Debug)]
pub struct Judge<'a> {
    /// The compiled policy.
    pub policy: &'a CompiledPolicy,
    /// Its generation: a flow judged under another generation is judged again.
    pub generation: u32,
    /// Mixed into flow ids so that two captures' ids differ.
    pub flow_id_salt: u64,
}

/// Tracks the flows of one shard of the traffic.
#[derive(Debug)]
pub struct Tracker {
    table: FlowTable<FlowState>,
    timeouts_ns: [u64; CLASSES],
    counters: FlowCounters,
    /// Flow starts since the last drain, when recording them.
    starts: Option<Vec<FlowStart>>,
    /// Applications identified since the last drain, when recording starts.
    identified: Vec<AppIdentified>,
    /// Application detection: on for this tracker.
    detect: bool,
    /// Flows being inspected, by table slot.
    inspections: HashMap<Slot, inspect::Inspection>,
    /// Capture position of the latest packet seen.
    last_index: u64,
    /// Bytes the inspections hold.
    inspect_bytes: usize,
    /// Inspections in the order they started (first packet time, slot,
    /// flow id), so that one whose wait is over is released at the next
    /// packet, not at the next sweep.
    waits: std::collections::VecDeque<(u64, Slot, u64)>,
}

/// The policy in force and its generation, where an inspection may end.
pub type Current<'a> = Option<(&'a CompiledPolicy, u32)>;

/// Flows inspected at once per tracker, and the bytes they may hold: beyond
/// either, new flows are judged without their application (and their events
/// go out at once), so a flood of new flows cannot exhaust memory.
const MAX_INSPECTIONS: usize = 8_192;
const INSPECT_BUDGET: usize = 16 << 20;

impl Tracker {
    /// A tracker holding at most `capacity` flows.
    pub fn new(config: &FlowConfig, capacity: usize) -> Tracker {
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let mut timeouts_ns = [0; CLASSES];
        timeouts_ns[class::TCP_OPEN] = ns(config.tcp_timeout);
        timeouts_ns[class::TCP_CLOSED] = ns(config.tcp_closed_timeout);
        timeouts_ns[class::UDP] = ns(config.udp_timeout);
        timeouts_ns[class::ECHO] = ns(config.icmp_timeout);
        timeouts_ns[class::OTHER] = ns(config.other_timeout);
        let mut table = FlowTable::with_capacity(capacity);
        for (class, &timeout) in timeouts_ns.iter().enumerate() {
            // Expiry sweeps and eviction are precise to 1/32 of a class's
            // timeout (at least a second): a long-lived flow moves in its
            // queue about 32 times per timeout period, not every second.
            table.set_requeue_after(class, (timeout / 32).max(table::REQUEUE_AFTER_NS));
        }
        Tracker {
            table,
            timeouts_ns,
            counters: FlowCounters::default(),
            starts: None,
            identified: Vec::new(),
            detect: false,
            inspections: HashMap::new(),
            last_index: 0,
            inspect_bytes: 0,
            waits: std::collections::VecDeque::new(),
        }
    }

    /// From now on, inspects new TCP and UDP flows' first bytes for their
    /// application, and holds their events until it is known (contract
    /// section 2). Packets must then come with their frames
    /// ([`Tracker::observe_frame`]).
    pub fn enable_detection(&mut self) {
        self.detect = true;
    }

    /// Flows under inspection now.
    pub fn inspecting(&self) -> usize {
        self.inspections.len()
    }

    /// From now on, keeps each flow's start for [`Tracker::drain_starts`].
    pub fn record_starts(&mut self) {
        self.starts.get_or_insert_with(Vec::new);
    }

    /// The flow starts recorded since the last call, in capture order.
    pub fn drain_starts(&mut self) -> std::vec::Drain<'_, FlowStart> {
        self.starts.get_or_insert_with(Vec::new).drain(..)
    }

    /// The applications identified since the last call (recorded with the
    /// flow starts).
    pub fn drain_identified(&mut self) -> std::vec::Drain<'_, AppIdentified> {
        self.identified.drain(..)
    }

    /// Notes an identified application for the inventory.
    fn identified(&mut self, slot: Slot, found: Option<&crate::app::Detection>) {
        let (Some(found), Some(_)) = (found, &self.starts) else {
            return;
        };
        let entry = self.table.entry(slot);
        let lo = entry.key.lo_addr.get();
        let hi = entry.key.hi_addr.get();
        let (client, server) = if entry.value.initiator_is_lo {
            (lo, hi)
        } else {
            (hi, lo)
        };
        self.identified.push(AppIdentified {
            ipv6: entry.key.ipv6,
            client,
            server,
            detection: found.clone(),
        });
    }

    /// What the tracker has done so far.
    pub fn counters(&self) -> &FlowCounters {
        &self.counters
    }

    /// Flows held now.
    pub fn active_flows(&self) -> usize {
        self.table.len()
    }

    /// The flow table, for inspection.
    pub fn table(&self) -> &FlowTable<FlowState> {
        &self.table
    }

    /// Asks the CPU to fetch what a packet of flow hash `hash` will look up
    /// first. Call it some packets ahead, then [`Tracker::prefetch_entry`]
    /// closer, then [`Tracker::observe`]: the lookups' cache misses then
    /// overlap with other packets' work instead of stalling each packet.
    #[inline]
    pub fn prefetch_index(&self, hash: u32) {
        self.table.prefetch_index(hash);
    }

    /// See [`Tracker::prefetch_index`].
    #[inline]
    pub fn prefetch_entry(&self, hash: u32) {
        self.table.prefetch_entry(hash);
    }

    /// Takes one packet: finds or starts its flow, judges a new flow (or one
    /// last judged under an older policy), and pushes the flow's one
    /// violation event to `violations` when it is due.
    #[inline]
    pub fn observe(
        &mut self,
        packet: &Packet,
        index: u64,
        judge: Judge<'_>,
        violations: &mut Vec<Violation>,
    ) {
        self.observe_frame(packet, &[], index, judge, violations);
    }

    /// [`Tracker::observe`] with the packet's frame, which application
    /// detection reads the first payload bytes of new flows from.
    #[inline(always)]
    pub fn observe_frame(
        &mut self,
        packet: &Packet,
        frame: &[u8],
        index: u64,
        judge: Judge<'_>,
        violations: &mut Vec<Violation>,
    ) {
        self.last_index = index;
        if let Some(&(first_ts, _, _)) = self.waits.front()
            && packet.ts_ns.saturating_sub(first_ts) >= inspect::MAX_WAIT_NS
        {
            self.release_waits(
                packet.ts_ns,
                index,
                Some((judge.policy, judge.generation)),
                violations,
            );
        }
        // Packets to a group address or from an unspecified one are counted,
        // not judged, unless a zone claims those addresses. Only a flow whose
        // key holds such an address can have such packets, so the check is
        // made at a flow's start and, for those flows only, at every packet
        // (a reload can change the claims, and the check depends on the
        // packet's direction).
        if let Some(slot) = self.table.find(packet.hash, &packet.key) {
            let entry = self.table.entry(slot);
            if entry.value.group_or_unspecified && skips_link_local(packet, judge.policy) {
                self.counters.link_local += 1;
                return;
            }
            // The entry's queue is its timeout class (kept up to date at
            // every change of the flow's state).
            let class = entry.class();
            if packet.ts_ns.saturating_sub(entry.last_ts) <= self.timeouts_ns[class] {
                self.continue_flow(slot, class, packet, frame, index, judge, violations);
                return;
            }
            self.end_inspection(
                slot,
                index,
                Some((judge.policy, judge.generation)),
                violations,
            );
            self.table.remove(slot);
            self.counters.expired += 1;
        }
        if key_has_group_or_unspecified(&packet.key) && skips_link_local(packet, judge.policy) {
            self.counters.link_local += 1;
            return;
        }
        self.start_flow(packet, frame, index, judge, violations);
    }

    /// Ends a flow's inspection, releasing its waiting event with what was
    /// found so far (the flow ended or waited long enough).
    fn end_inspection(
        &mut self,
        slot: Slot,
        index: u64,
        policy: Current<'_>,
        violations: &mut Vec<Violation>,
    ) {
        // Without detection there is never an inspection: every flow that
        // ends comes here, and the map would hash its slot for nothing.
        if self.inspections.is_empty() {
            return;
        }
        if let Some(mut inspection) = self.inspections.remove(&slot) {
            self.inspect_bytes = self.inspect_bytes.saturating_sub(inspection.held());
            let found = inspection.give_up().map(Box::new);
            self.identified(slot, found.as_deref());
            self.table.entry_mut(slot).value.inspecting = false;
            self.release(slot, &mut inspection, found, index, policy, violations);
        }
    }

    /// Releases what an ended inspection held: the flow is judged under the
    /// policy in force (again by ports when a reload came in between, then
    /// with its application), and its one event made if it alerts.
    fn release(
        &mut self,
        slot: Slot,
        inspection: &mut inspect::Inspection,
        found: Option<Box<crate::app::Detection>>,
        index: u64,
        policy: Current<'_>,
        violations: &mut Vec<Violation>,
    ) {
        let Some(mut violation) = inspection.candidate.take() else {
            return;
        };
        let entry = self.table.entry_mut(slot);
        let key = entry.key;
        let state = &mut entry.value;
        let verdict = match policy {
            Some((policy, generation)) => {
                if generation != inspection.generation {
                    let judged = judge_flow(&key, state.initiator_is_lo, policy);
                    violation.verdict = judged.verdict;
                    violation.src_zone = judged.zones.0;
                    violation.dest_zone = judged.zones.1;
                    state.generation = generation;
                }
                let verdict = if policy.needs_app() {
                    policy.judge_app(
                        violation.src_zone,
                        violation.dest_zone,
                        violation.transport,
                        violation.dest_port,
                        violation.verdict,
                        found.as_deref(),
                    )
                } else {
                    violation.verdict
                };
                state.verdict = verdict;
                state.app_judged = policy.needs_app() && found.is_some();
                (policy.action(verdict) == Action::Alert).then_some(verdict)
            }
            // Ended without the policy at hand: the first verdict stands.
            None => inspection.alerts.then_some(violation.verdict),
        };
        if let Some(verdict) = verdict
            && !state.alerted
        {
            state.alerted = true;
            violation.verdict = verdict;
            violation.packet_index = index;
            violation.app = found;
            violations.push(violation);
        }
    }

    /// Feeds an inspected flow's packet to its inspection.
    fn inspect(
        &mut self,
        slot: Slot,
        packet: &Packet,
        frame: &[u8],
        index: u64,
        policy: Current<'_>,
        violations: &mut Vec<Violation>,
    ) {
        let entry = self.table.entry(slot);
        let initiator_is_lo = entry.value.initiator_is_lo;
        let key = entry.key;
        let Some((seq, payload)) = packet.payload(frame) else {
            self.end_inspection(slot, index, policy, violations);
            return;
        };
        let (lo_port, hi_port) = (key.lo_port, key.hi_port);
        let ports = if initiator_is_lo {
            crate::app::FlowPorts {
                client: lo_port,
                server: hi_port,
            }
        } else {
            crate::app::FlowPorts {
                client: hi_port,
                server: lo_port,
            }
        };
        let segment = inspect::Segment {
            from_client: packet.sender_is_lo == initiator_is_lo,
            seq,
            syn: packet.tcp_flags & tcp_flags::SYN != 0,
            payload,
            ts_ns: packet.ts_ns,
        };
        let Some(inspection) = self.inspections.get_mut(&slot) else {
            return;
        };
        let before = inspection.held();
        let step = inspection.take(packet.transport, ports, segment);
        let after = inspection.held();
        self.inspect_bytes = (self.inspect_bytes + after).saturating_sub(before);
        if let inspect::Step::Finished(found) = step {
            self.inspect_bytes = self.inspect_bytes.saturating_sub(after);
            if let Some(mut inspection) = self.inspections.remove(&slot) {
                self.identified(slot, found.as_deref());
                self.table.entry_mut(slot).value.inspecting = false;
                self.release(slot, &mut inspection, found, index, policy, violations);
            }
        }
    }

    /// Queues an inspection's wait, dropping from the front waits whose
    /// inspections already ended, and compacting when ended ones pile up
    /// behind a live one (so the queue stays bounded by the inspections).
    fn push_wait(&mut self, first_ts: u64, slot: Slot, flow_id: u64) {
        let live = |inspections: &HashMap<Slot, inspect::Inspection>,
                    table: &FlowTable<FlowState>,
                    &(_, slot, flow_id): &(u64, Slot, u64)| {
            inspections.contains_key(&slot) && table.entry(slot).value.flow_id == flow_id
        };
        while let Some(front) = self.waits.front() {
            if live(&self.inspections, &self.table, front) {
                break;
            }
            self.waits.pop_front();
        }
        if self.waits.len() > 2 * MAX_INSPECTIONS {
            let (inspections, table) = (&self.inspections, &self.table);
            self.waits.retain(|wait| live(inspections, table, wait));
        }
        self.waits.push_back((first_ts, slot, flow_id));
    }

    /// Releases the events of inspections whose wait is over at `now`, as
    /// produced by the packet at `index`.
    fn release_waits(
        &mut self,
        now: u64,
        index: u64,
        policy: Current<'_>,
        violations: &mut Vec<Violation>,
    ) {
        while let Some(&(first_ts, slot, flow_id)) = self.waits.front() {
            if now.saturating_sub(first_ts) < inspect::MAX_WAIT_NS {
                break;
            }
            self.waits.pop_front();
            // The slot may hold another flow by now, or none inspected.
            let same_flow = self.inspections.contains_key(&slot)
                && self.table.entry(slot).value.flow_id == flow_id;
            if same_flow {
                self.end_inspection(slot, index, policy, violations);
            }
        }
    }

    /// Ends every inspection (the capture ended), releasing waiting events.
    pub fn finish(&mut self, violations: &mut Vec<Violation>) {
        self.finish_judged(None, violations);
    }

    /// [`Tracker::finish`], judging flows whose verdict waits for their
    /// application under `policy`.
    pub fn finish_judged(&mut self, policy: Current<'_>, violations: &mut Vec<Violation>) {
        let mut slots: Vec<Slot> = self.inspections.keys().copied().collect();
        // In flow-start order, so the output does not follow the map's.
        slots.sort_by_key(|slot| {
            let state = &self.table.entry(*slot).value;
            (state.first_ts, state.flow_id)
        });
        for slot in slots {
            self.end_inspection(slot, self.last_index, policy, violations);
        }
        self.waits.clear();
    }

    /// Ends every flow idle past its timeout at capture time `now_ns`.
    /// With detection on, use [`Tracker::expire_into`], which also releases
    /// the events that waited long enough.
    pub fn expire(&mut self, now_ns: u64) {
        let mut released = Vec::new();
        self.expire_into(now_ns, &mut released);
    }

    /// Ends every flow idle past its timeout at capture time `now_ns`, and
    /// every inspection older than its wait, pushing the events they held.
    pub fn expire_into(&mut self, now_ns: u64, violations: &mut Vec<Violation>) {
        self.expire_at(now_ns, self.last_index, None, violations);
    }

    /// [`Tracker::expire_into`], the events it releases counted as produced
    /// at capture position `index` (where the caller's sweep happens).
    pub fn expire_at(
        &mut self,
        now_ns: u64,
        index: u64,
        policy: Current<'_>,
        violations: &mut Vec<Violation>,
    ) {
        self.last_index = self.last_index.max(index);
        self.release_waits(now_ns, self.last_index, policy, violations);
        for class in 0..CLASSES {
            while let Some(slot) = self
                .table
                .next_expired(class, now_ns, self.timeouts_ns[class])
            {
                self.end_inspection(slot, self.last_index, policy, violations);
                self.table.remove(slot);
                self.counters.expired += 1;
            }
        }
    }

    /// Always inlined into [`Tracker::observe_frame`]: most packets come
    /// here, and as a call its register saves and restores cost about 16
    /// instructions a packet (callgrind).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn continue_flow(
        &mut self,
        slot: Slot,
        class: usize,
        packet: &Packet,
        frame: &[u8],
        index: u64,
        judge: Judge<'_>,
        violations: &mut Vec<Violation>,
    ) {
        let sender_is_lo = packet.sender_is_lo;
        // The packet's key is the entry's (the lookup compared them), and
        // already at hand.
        let key = &packet.key;
        let state = &mut self.table.entry_mut(slot).value;
        let mut class = class;
        let flags = packet.tcp_flags;
        if packet.transport == Transport::Tcp && flags & (tcp_flags::RST | tcp_flags::FIN) != 0 {
            if flags & tcp_flags::RST != 0 {
                state.teardown |= teardown::CLOSED;
            }
            if flags & tcp_flags::FIN != 0 {
                state.teardown |= if sender_is_lo {
                    teardown::FIN_FROM_LO
                } else {
                    teardown::FIN_FROM_HI
                };
                if state.teardown & (teardown::FIN_FROM_LO | teardown::FIN_FROM_HI)
                    == teardown::FIN_FROM_LO | teardown::FIN_FROM_HI
                {
                    state.teardown |= teardown::CLOSED;
                }
            }
            class = entry_class(key, state);
        }
        if state.generation != judge.generation {
            self.judge_again(slot, packet, index, judge, violations);
        }
        let inspecting = self.table.entry(slot).value.inspecting;
        self.table.touch(slot, packet.ts_ns, class);
        if inspecting {
            let current = Some((judge.policy, judge.generation));
            self.inspect(slot, packet, frame, index, current, violations);
            // A closed flow has ended: its event waits no longer.
            if self.table.entry(slot).value.teardown & teardown::CLOSED != 0 {
                self.end_inspection(slot, index, current, violations);
            }
        }
    }

    /// A flow's first packet since a reload (contract section 2): judged
    /// again under the policy now in force.
    #[cold]
    #[inline(never)]
    fn judge_again(
        &mut self,
        slot: Slot,
        packet: &Packet,
        index: u64,
        judge: Judge<'_>,
        violations: &mut Vec<Violation>,
    ) {
        let key = &packet.key;
        let state = &mut self.table.entry_mut(slot).value;
        if state.app_judged {
            // Judged with its application, which is not kept: the verdict
            // stands (see the README).
            state.generation = judge.generation;
        }
        if state.generation != judge.generation && !state.inspecting {
            // Contract section 2, reload: judged again at its next packet;
            // its one event comes now if it had none and is now an alert.
            // (A flow under inspection is judged when the inspection ends,
            // under the policy in force then.)
            let mut verdict = judge_flow(key, state.initiator_is_lo, judge.policy);
            state.generation = judge.generation;
            if judge.policy.needs_app() {
                verdict.verdict = judge.policy.judge_app(
                    verdict.zones.0,
                    verdict.zones.1,
                    Transport::of_protocol(key.protocol),
                    verdict.responder.1,
                    verdict.verdict,
                    None,
                );
            }
            state.verdict = verdict.verdict;
            if !state.alerted && judge.policy.action(verdict.verdict) == Action::Alert {
                state.alerted = true;
                violations.push(verdict.violation(key, state, packet, index));
            }
        }
    }

    fn start_flow(
        &mut self,
        packet: &Packet,
        frame: &[u8],
        index: u64,
        judge: Judge<'_>,
        violations: &mut Vec<Violation>,
    ) {
        let key = &packet.key;
        if self.table.is_full() {
            self.expire_at(
                packet.ts_ns,
                index,
                Some((judge.policy, judge.generation)),
                violations,
            );
            if self.table.is_full()
                && let Some(oldest) = self.table.oldest()
            {
                self.end_inspection(
                    oldest,
                    index,
                    Some((judge.policy, judge.generation)),
                    violations,
                );
                self.table.remove(oldest);
                self.counters.evicted += 1;
            }
        }
        let sender_initiates = sender_initiates(packet, judge.policy);
        let initiator_is_lo = sender_initiates == packet.sender_is_lo;
        let mut judged = judge_flow(key, initiator_is_lo, judge.policy);
        let mut state = FlowState {
            flow_id: flow_id(index, judge.flow_id_salt),
            first_ts: packet.ts_ns,
            initiator_is_lo,
            verdict: judged.verdict,
            generation: judge.generation,
            alerted: false,
            teardown: 0,
            inspecting: false,
            app_judged: false,
            group_or_unspecified: key_has_group_or_unspecified(key),
        };
        if packet.transport == Transport::Tcp && packet.tcp_flags & tcp_flags::RST != 0 {
            state.teardown = teardown::CLOSED;
        }
        let inspect = self.detect
            && !frame.is_empty()
            && matches!(packet.transport, Transport::Tcp | Transport::Udp)
            && self.inspections.len() < MAX_INSPECTIONS
            && self.inspect_bytes < INSPECT_BUDGET;
        let mut candidate = None;
        if inspect {
            // Judged again, and its event made, when the inspection ends.
            candidate = Some(judged.violation(key, &state, packet, index));
        } else {
            if judge.policy.needs_app() {
                judged.verdict = judge.policy.judge_app(
                    judged.zones.0,
                    judged.zones.1,
                    packet.transport,
                    judged.responder.1,
                    judged.verdict,
                    None,
                );
                state.verdict = judged.verdict;
            }
            if judge.policy.action(judged.verdict) == Action::Alert {
                state.alerted = true;
                violations.push(judged.violation(key, &state, packet, index));
            }
        }
        state.inspecting = inspect;
        if let Some(starts) = &mut self.starts {
            starts.push(FlowStart {
                packet_index: index,
                ts_ns: packet.ts_ns,
                ipv6: key.ipv6,
                protocol: key.protocol,
                transport: packet.transport,
                initiator: judged.initiator,
                responder: judged.responder,
                zones: judged.zones,
                vlan: packet.vlan,
                sender_initiates,
            });
        }
        let class = entry_class(key, &state);
        let slot = self
            .table
            .insert(packet.hash, *key, packet.ts_ns, class, state);
        self.counters.created += 1;
        if inspect {
            let mut inspection = inspect::Inspection::new(packet.ts_ns);
            inspection.alerts = judge.policy.action(judged.verdict) == Action::Alert;
            inspection.candidate = candidate;
            inspection.generation = judge.generation;
            self.inspections.insert(slot, inspection);
            self.push_wait(packet.ts_ns, slot, state.flow_id);
            let current = Some((judge.policy, judge.generation));
            self.inspect(slot, packet, frame, index, current, violations);
        }
    }
}

/// A verdict with the flow's orientation, ready to become an event.
struct Judged {
    verdict: Verdict,
    initiator: (u128, u16),
    responder: (u128, u16),
    zones: (crate::classify::ZoneId, crate::classify::ZoneId),
}

impl Judged {
    fn violation(
        &self,
        key: &FlowKey,
        state: &FlowState,
        packet: &Packet,
        index: u64,
    ) -> Violation {
        Violation {
            packet_index: index,
            ts_ns: packet.ts_ns,
            flow_id: state.flow_id,
            ipv6: key.ipv6,
            protocol: key.protocol,
            transport: Transport::of_protocol(key.protocol),
            src_addr: self.initiator.0,
            src_port: self.initiator.1,
            dest_addr: self.responder.0,
            dest_port: self.responder.1,
            vlan: packet.vlan,
            src_zone: self.zones.0,
            dest_zone: self.zones.1,
            verdict: self.verdict,
            app: None,
        }
    }
}

#[inline(always)]
fn judge_flow(key: &FlowKey, initiator_is_lo: bool, policy: &CompiledPolicy) -> Judged {
    let lo = (key.lo_addr.get(), key.lo_port);
    let hi = (key.hi_addr.get(), key.hi_port);
    let (initiator, responder) = if initiator_is_lo { (lo, hi) } else { (hi, lo) };
    let from = policy.zone_of(key.ipv6, initiator.0).zone;
    let to = policy.zone_of(key.ipv6, responder.0).zone;
    let transport = Transport::of_protocol(key.protocol);
    Judged {
        verdict: policy.judge(from, to, transport, responder.1),
        initiator,
        responder,
        zones: (from, to),
    }
}

/// Contract section 2, "initiator and responder", decided at a flow's first
/// packet: true when that packet's sender initiated the flow.
fn sender_initiates(packet: &Packet, policy: &CompiledPolicy) -> bool {
    match packet.transport {
        Transport::Tcp if packet.tcp_flags & tcp_flags::SYN != 0 => {
            packet.tcp_flags & tcp_flags::ACK == 0
        }
        Transport::EchoRequest => true,
        Transport::EchoReply => false,
        Transport::Tcp | Transport::Udp => {
            let ((_, sport), (_, dport)) = packet.endpoints();
            let src_named = policy.names_port(packet.transport, sport);
            let dst_named = policy.names_port(packet.transport, dport);
            if src_named != dst_named {
                dst_named
            } else if (sport < 1024) != (dport < 1024) {
                dport < 1024
            } else {
                true
            }
        }
        Transport::Other => true,
    }
}

fn entry_class(key: &FlowKey, state: &FlowState) -> usize {
    match Transport::of_protocol(key.protocol) {
        Transport::Tcp if state.teardown & teardown::CLOSED != 0 => class::TCP_CLOSED,
        Transport::Tcp => class::TCP_OPEN,
        Transport::Udp => class::UDP,
        Transport::EchoRequest | Transport::EchoReply => class::ECHO,
        Transport::Other => class::OTHER,
    }
}

/// True when `packet` is link-local traffic (see [`is_link_local`]) that no
/// zone claims: counted, not judged (contract section 2).
#[inline]
fn skips_link_local(packet: &Packet, policy: &CompiledPolicy) -> bool {
    let (sender, receiver) = packet.endpoints();
    let ipv6 = packet.key.ipv6;
    is_link_local(ipv6, sender.0, receiver.0)
        && !link_local_claimed(ipv6, sender.0, receiver.0, policy)
}

/// True when a packet of a flow with `key` can be link-local traffic in one
/// direction or the other.
#[inline]
fn key_has_group_or_unspecified(key: &FlowKey) -> bool {
    let (lo, hi) = (key.lo_addr.get(), key.hi_addr.get());
    lo == 0 || hi == 0 || is_group_address(key.ipv6, lo) || is_group_address(key.ipv6, hi)
}

/// True for a packet to multicast or limited broadcast, or from an
/// unspecified address: such packets never cross a segment boundary.
#[inline]
fn is_link_local(ipv6: bool, src: u128, dst: u128) -> bool {
    src == 0 || is_group_address(ipv6, dst)
}

/// Multicast, or the IPv4 limited broadcast.
#[inline]
fn is_group_address(ipv6: bool, addr: u128) -> bool {
    if ipv6 {
        addr >> 120 == 0xff
    } else {
        let addr = addr as u32;
        addr >> 28 == 0xe || addr == u32::MAX
    }
}

/// True when every link-local address of the packet is claimed by a zone
/// with a prefix longer than /0 (contract section 2).
fn link_local_claimed(ipv6: bool, src: u128, dst: u128, policy: &CompiledPolicy) -> bool {
    let claimed = |addr: u128| policy.zone_of(ipv6, addr).prefix_len > 0;
    (!is_group_address(ipv6, dst) || claimed(dst)) && (src != 0 || claimed(src))
}

/// A flow's id: the capture position of its first packet, mixed with a
/// per-capture salt through a bijection (the SplitMix64 finalizer), so two
/// flows of one run never share an id and the same capture always gives the
/// same ids.
pub fn flow_id(first_packet_index: u64, salt: u64) -> u64 {
    let mut z = first_packet_index ^ salt;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
