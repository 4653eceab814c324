//! Flow tracking: grouping packets into flows, deciding who initiated each
//! flow, judging it once, and expiring it on capture time (contract section 2).
//!
//! A [`Tracker`] owns one bounded [`FlowTable`]; workers own their trackers
//! outright, so nothing here is shared or locked. The policy is passed in per
//! packet as a plain reference, and flows remember the generation of the
//! policy that judged them, so that a reloaded policy judges each existing
//! flow again at its next packet.

mod index;
mod key;
mod table;

pub use key::{FlowHasher, FlowKey};
pub use table::{CLASSES, Entry, FlowTable, Slot};

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
    /// Most flows held at once, over all trackers of a run; when full, the
    /// least recently seen flow is evicted (and counted). Default 1,000,000:
    /// about 120 MB.
    pub max_flows: usize,
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
    /// True once the flow's one violation event has been emitted.
    pub alerted: bool,
    teardown: u8,
    /// Packets seen, both directions.
    pub packets: u64,
    /// Wire bytes seen, both directions.
    pub bytes: u64,
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

/// One decoded packet, as the tracker sees it.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    /// Its decoded headers.
    pub headers: &'a Headers,
    /// Capture time, nanoseconds since the epoch.
    pub ts_ns: u64,
    /// Position in the capture (0-based): orders events and seeds flow ids.
    pub index: u64,
    /// Length on the wire.
    pub wire_len: u32,
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
}

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
        Tracker {
            table: FlowTable::with_capacity(capacity),
            timeouts_ns,
            counters: FlowCounters::default(),
        }
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
    pub fn prefetch_index(&self, hash: u64) {
        self.table.prefetch_index(hash);
    }

    /// See [`Tracker::prefetch_index`].
    #[inline]
    pub fn prefetch_entry(&self, hash: u64) {
        self.table.prefetch_entry(hash);
    }

    /// Takes one packet: finds or starts its flow, judges a new flow (or one
    /// last judged under an older policy), and pushes the flow's one
    /// violation event to `violations` when it is due.
    #[inline]
    pub fn observe(
        &mut self,
        packet: Observed<'_>,
        hash: u64,
        key: &FlowKey,
        sender_is_lo: bool,
        judge: Judge<'_>,
        violations: &mut Vec<Violation>,
    ) {
        if is_link_local(packet.headers) && !link_local_claimed(packet.headers, judge.policy) {
            self.counters.link_local += 1;
            return;
        }
        if let Some(slot) = self.table.find(hash, key) {
            let entry = self.table.entry(slot);
            let class = entry_class(key, &entry.value);
            if packet.ts_ns.saturating_sub(entry.last_ts) <= self.timeouts_ns[class] {
                self.continue_flow(slot, packet, sender_is_lo, judge, violations);
                return;
            }
            self.table.remove(slot);
            self.counters.expired += 1;
        }
        self.start_flow(packet, hash, key, sender_is_lo, judge, violations);
    }

    /// Ends every flow idle past its timeout at capture time `now_ns`.
    pub fn expire(&mut self, now_ns: u64) {
        for class in 0..CLASSES {
            while let Some(slot) = self
                .table
                .next_expired(class, now_ns, self.timeouts_ns[class])
            {
                self.table.remove(slot);
                self.counters.expired += 1;
            }
        }
    }

    fn continue_flow(
        &mut self,
        slot: Slot,
        packet: Observed<'_>,
        sender_is_lo: bool,
        judge: Judge<'_>,
        violations: &mut Vec<Violation>,
    ) {
        let headers = packet.headers;
        let entry = self.table.entry_mut(slot);
        let key = entry.key;
        let state = &mut entry.value;
        state.packets += 1;
        state.bytes += u64::from(packet.wire_len);
        if headers.transport == Transport::Tcp {
            let flags = headers.tcp_flags;
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
        }
        if state.generation != judge.generation {
            // Contract section 2, reload: judged again at its next packet;
            // its one event comes now if it had none and is now an alert.
            let verdict = judge_flow(&key, state.initiator_is_lo, judge.policy);
            state.verdict = verdict.verdict;
            state.generation = judge.generation;
            if !state.alerted && judge.policy.action(verdict.verdict) == Action::Alert {
                state.alerted = true;
                violations.push(verdict.violation(&key, state, packet));
            }
        }
        let class = entry_class(&key, state);
        self.table.touch(slot, packet.ts_ns, class);
    }

    fn start_flow(
        &mut self,
        packet: Observed<'_>,
        hash: u64,
        key: &FlowKey,
        sender_is_lo: bool,
        judge: Judge<'_>,
        violations: &mut Vec<Violation>,
    ) {
        if self.table.is_full() {
            self.expire(packet.ts_ns);
            if self.table.is_full()
                && let Some(oldest) = self.table.oldest()
            {
                self.table.remove(oldest);
                self.counters.evicted += 1;
            }
        }
        let headers = packet.headers;
        let sender_initiates = sender_initiates(headers, judge.policy);
        let initiator_is_lo = sender_initiates == sender_is_lo;
        let judged = judge_flow(key, initiator_is_lo, judge.policy);
        let mut state = FlowState {
            flow_id: flow_id(packet.index, judge.flow_id_salt),
            first_ts: packet.ts_ns,
            initiator_is_lo,
            verdict: judged.verdict,
            generation: judge.generation,
            alerted: false,
            teardown: 0,
            packets: 1,
            bytes: u64::from(packet.wire_len),
        };
        if headers.transport == Transport::Tcp && headers.tcp_flags & tcp_flags::RST != 0 {
            state.teardown = teardown::CLOSED;
        }
        if judge.policy.action(judged.verdict) == Action::Alert {
            state.alerted = true;
            violations.push(judged.violation(key, &state, packet));
        }
        let class = entry_class(key, &state);
        self.table.insert(hash, *key, packet.ts_ns, class, state);
        self.counters.created += 1;
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
    fn violation(&self, key: &FlowKey, state: &FlowState, packet: Observed<'_>) -> Violation {
        Violation {
            packet_index: packet.index,
            ts_ns: packet.ts_ns,
            flow_id: state.flow_id,
            ipv6: key.ipv6,
            protocol: key.protocol,
            transport: Transport::of_protocol(key.protocol),
            src_addr: self.initiator.0,
            src_port: self.initiator.1,
            dest_addr: self.responder.0,
            dest_port: self.responder.1,
            vlan: packet.headers.vlan,
            src_zone: self.zones.0,
            dest_zone: self.zones.1,
            verdict: self.verdict,
        }
    }
}

fn judge_flow(key: &FlowKey, initiator_is_lo: bool, policy: &CompiledPolicy) -> Judged {
    let lo = (key.lo_addr, key.lo_port);
    let hi = (key.hi_addr, key.hi_port);
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
fn sender_initiates(headers: &Headers, policy: &CompiledPolicy) -> bool {
    match headers.transport {
        Transport::Tcp if headers.tcp_flags & tcp_flags::SYN != 0 => {
            headers.tcp_flags & tcp_flags::ACK == 0
        }
        Transport::EchoRequest => true,
        Transport::EchoReply => false,
        Transport::Tcp | Transport::Udp => {
            let (sport, dport) = (headers.src_port, headers.dst_port);
            let src_named = policy.names_port(headers.transport, sport);
            let dst_named = policy.names_port(headers.transport, dport);
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

/// True for a packet to multicast or limited broadcast, or from an
/// unspecified address: such packets never cross a segment boundary.
#[inline]
fn is_link_local(headers: &Headers) -> bool {
    if headers.ipv6 {
        headers.dst >> 120 == 0xff || headers.src == 0
    } else {
        let dst = headers.dst as u32;
        dst >> 28 == 0xe || dst == u32::MAX || headers.src == 0
    }
}

/// True when every link-local address of the packet is claimed by a zone
/// with a prefix longer than /0 (contract section 2).
fn link_local_claimed(headers: &Headers, policy: &CompiledPolicy) -> bool {
    let claimed = |addr: u128| policy.zone_of(headers.ipv6, addr).prefix_len > 0;
    let dst_link_local = if headers.ipv6 {
        headers.dst >> 120 == 0xff
    } else {
        let dst = headers.dst as u32;
        dst >> 28 == 0xe || dst == u32::MAX
    };
    (!dst_link_local || claimed(headers.dst)) && (headers.src != 0 || claimed(headers.src))
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
