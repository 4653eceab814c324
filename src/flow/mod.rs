//! Flow tracking (contract section 2): grouping packets into flows, both
//! directions and every VLAN together, expiring flows on capture time,
//! bounding the table, and reassembling the first payload bytes of the flows
//! whose application is being detected.
//!
//! Tracking knows no policy. A [`Tracker`] tells its owner what happens, as it
//! happens, through a [`FlowObserver`]: a flow starts, a packet continues a
//! flow, a flow's inspection ends (its application identified, ruled out, or
//! no longer waited for). The owner (the pipeline's shard) judges; the
//! tracker keeps, per flow, the owner's verdict record `V` without looking
//! into it.
//!
//! A tracker owns one bounded [`FlowTable`]; workers own their trackers
//! outright, so nothing here is shared or locked.

#![forbid(unsafe_code)]

mod index;
mod inspect;
mod inspections;
mod key;
mod table;

pub use inspections::{BUDGET as INSPECT_BUDGET, MAX_INSPECTIONS};
pub use key::{Addr, FlowHasher, FlowKey, Overlay};
pub use table::{CLASSES, Entry, FlowTable, Slot};

use std::time::Duration;

use crate::app::Detection;
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

/// TCP teardown bits of a flow ([`Flow`]'s `marks`).
mod teardown {
    pub const FIN_FROM_LO: u8 = 1;
    pub const FIN_FROM_HI: u8 = 2;
    pub const CLOSED: u8 = 4;
}

/// [`Flow`]'s `marks`: the flow's key may hold a link-local address (see
/// [`FlowKey::may_be_link_local`]), so each of its packets is offered to the
/// owner's [`FlowObserver::admits`]. Kept with the flow, set at its start,
/// so that the test is made once per flow and read per packet from the entry
/// the lookup has just fetched.
const MAY_BE_LINK_LOCAL: u8 = 8;

/// What a tracker keeps per flow: its identity and orientation, and the
/// owner's verdict record `V`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow<V> {
    /// The flow's id (see [`flow_id`]).
    pub id: u64,
    /// Capture time of its first packet.
    pub first_ts: u64,
    /// True when the key's `lo` endpoint initiated the flow.
    pub initiator_is_lo: bool,
    /// The owner's verdict record.
    pub verdict: V,
    /// [`teardown`] bits and [`MAY_BE_LINK_LOCAL`], in one byte so that a
    /// flow stays 40 bytes.
    marks: u8,
    /// Its inspection's place while its first bytes are inspected for the
    /// application, else [`inspections::NOT_INSPECTED`].
    inspection: inspections::Place,
}

impl<V> Flow<V> {
    /// True while its application is being detected.
    pub fn inspecting(&self) -> bool {
        self.inspection != inspections::NOT_INSPECTED
    }
}

/// A flow as an observer sees it: its key and its record.
#[derive(Debug)]
pub struct FlowView<'a, V> {
    /// The flow's key.
    pub key: &'a FlowKey,
    /// Its record; the observer updates its verdict.
    pub flow: &'a mut Flow<V>,
}

impl<V> FlowView<'_, V> {
    /// The initiator's and the responder's (address, port).
    #[inline]
    pub fn endpoints(&self) -> ((u128, u16), (u128, u16)) {
        let lo = (self.key.lo_addr.get(), self.key.lo_port);
        let hi = (self.key.hi_addr.get(), self.key.hi_port);
        if self.flow.initiator_is_lo {
            (lo, hi)
        } else {
            (hi, lo)
        }
    }
}

/// What the owner of a new flow says of it.
#[derive(Clone, Copy, Debug)]
pub struct Started<V> {
    /// The flow's id (see [`flow_id`]).
    pub id: u64,
    /// True when the first packet's sender initiated the flow.
    pub sender_initiates: bool,
    /// The owner's verdict record.
    pub verdict: V,
}

/// The owner of a [`Tracker`], told what happens as it happens. Each call
/// comes at the packet that caused it (`index` is its capture position).
pub trait FlowObserver<V> {
    /// Whether `packet` takes part in tracking at all (link-local traffic
    /// that no zone claims is counted, not judged): asked before its flow is
    /// looked up, for the packets whose flow [`FlowKey::may_be_link_local`].
    fn admits(&mut self, packet: &Packet) -> bool;

    /// A flow starts at `packet`: its id, who initiated it and its verdict.
    /// `inspecting` tells whether its first bytes will be inspected for its
    /// application (then [`FlowObserver::inspected`] follows, at this packet
    /// or a later one).
    fn started(
        &mut self,
        packet: &Packet,
        frame: &[u8],
        index: u64,
        inspecting: bool,
    ) -> Started<V>;

    /// A later packet of a known flow (before its inspection, if any, takes
    /// it).
    fn continued(&mut self, flow: FlowView<'_, V>, packet: &Packet, index: u64);

    /// A flow's inspection ended: its application identified (`Some`), ruled
    /// out, or no longer waited for (the flow ended, waited its longest, or
    /// the capture ended), with the best answer found so far.
    fn inspected(&mut self, flow: FlowView<'_, V>, app: Option<Box<Detection>>, index: u64);
}

/// Why a flow was judged without all the inspection its policy asked for:
/// its inspection ended early, under pressure, and the flow was judged with
/// what it had found by then (see the `inspections` module's docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// Every inspection place was taken: the oldest inspection of a flow
    /// that had kept no payload gave way to a new flow.
    EvictedNoPayload,
    /// Every inspection place was taken by a flow with payload: the oldest
    /// gave way to a new flow.
    TableFull,
    /// The bytes kept for inspection reached their budget: the oldest
    /// inspection keeping bytes gave way.
    MemoryBudget,
    /// The flow was pushed out of a full flow table while inspected.
    FlowEvicted,
}

impl SkipReason {
    /// Every reason, in the order of [`SkipReason::index`].
    pub const ALL: [SkipReason; 4] = [
        SkipReason::EvictedNoPayload,
        SkipReason::TableFull,
        SkipReason::MemoryBudget,
        SkipReason::FlowEvicted,
    ];

    /// Stable snake_case name, for metric labels and the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::EvictedNoPayload => "evicted_no_payload",
            SkipReason::TableFull => "table_full",
            SkipReason::MemoryBudget => "memory_budget",
            SkipReason::FlowEvicted => "flow_evicted",
        }
    }

    /// Its index in [`SkipReason::ALL`] and in
    /// [`FlowCounters::inspections_skipped`].
    pub fn index(self) -> usize {
        self as usize
    }
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
    /// Inspections ended early under pressure, by [`SkipReason::index`].
    pub inspections_skipped: [u64; SkipReason::ALL.len()],
}

impl FlowCounters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &FlowCounters) {
        self.created += other.created;
        self.expired += other.expired;
        self.evicted += other.evicted;
        for (sum, n) in self
            .inspections_skipped
            .iter_mut()
            .zip(other.inspections_skipped)
        {
            *sum += n;
        }
    }

    /// Inspections ended early, for every reason.
    pub fn inspections_skipped_total(&self) -> u64 {
        self.inspections_skipped.iter().sum()
    }
}

/// One decoded packet, as flow tracking needs it: `Copy` and small, 68
/// bytes, written by the core that decodes and read by the one that tracks.
/// Laid out by hand and packed to 4-byte alignment (`ts_ns` would otherwise
/// round the size up to 72 and the replay's record of it to 80): read `ts_ns`
/// by value, never by reference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, packed(4))]
pub struct Packet {
    /// Its flow's key (44 bytes, 2-byte aligned).
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

const _: () = assert!(std::mem::size_of::<Packet>() == 68);

impl Packet {
    /// The packet of decoded `headers`, captured at `ts_ns`. Always inlined:
    /// the replay's decode loop then builds it in place in its record (as a
    /// call, about 5% of a replay's time went to it).
    #[inline(always)]
    pub fn new(headers: &Headers, ts_ns: u64) -> Packet {
        Self::keyed(headers, ts_ns, FlowKey::of(headers))
    }

    /// [`Packet::new`] for a packet known to have come out of no tunnel (see
    /// [`crate::wire::Split`]): its key is made without reading
    /// [`Headers::tunnel`] (see [`FlowKey::of_untunnelled`]).
    #[inline(always)]
    pub fn untunnelled(headers: &Headers, ts_ns: u64) -> Packet {
        Self::keyed(headers, ts_ns, FlowKey::of_untunnelled(headers))
    }

    #[inline(always)]
    fn keyed(headers: &Headers, ts_ns: u64, keyed: (FlowKey, bool, u32)) -> Packet {
        let (key, sender_is_lo, hash) = keyed;
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
    pub fn payload<'f>(&self, frame: &'f [u8]) -> Option<(Option<u32>, &'f [u8])> {
        let at = usize::from(self.transport_offset);
        let len = usize::from(self.payload_len);
        match self.transport {
            Transport::Tcp => {
                let header = self.tcp_header(frame)?;
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

    /// The TCP header's fixed 20 bytes in `frame`, when they are there.
    #[inline(always)]
    pub fn tcp_header<'f>(&self, frame: &'f [u8]) -> Option<&'f [u8; 20]> {
        let at = usize::from(self.transport_offset);
        frame.get(at..at + 20)?.try_into().ok()
    }

    /// Asks the CPU to fetch the packet's transport header in `frame`
    /// (what [`Packet::payload`] reads first): call it some packets before
    /// the tracker takes this one, when detecting applications.
    #[inline(always)]
    pub fn prefetch_transport(&self, frame: &[u8]) {
        // No bounds check: a prefetch never faults, whatever the address,
        // and an offset past the frame only fetches a line for nothing.
        crate::sys::prefetch(
            frame
                .as_ptr()
                .wrapping_add(usize::from(self.transport_offset)),
        );
    }

    /// Sender's and receiver's (address, port).
    #[inline]
    pub fn endpoints(&self) -> ((u128, u16), (u128, u16)) {
        let lo = (self.key.lo_addr.get(), self.key.lo_port);
        let hi = (self.key.hi_addr.get(), self.key.hi_port);
        if self.sender_is_lo {
            (lo, hi)
        } else {
            (hi, lo)
        }
    }
}

/// Tracks the flows of one shard of the traffic; `V` is its owner's
/// per-flow verdict record.
#[derive(Debug)]
pub struct Tracker<V> {
    table: FlowTable<Flow<V>>,
    timeouts_ns: [u64; CLASSES],
    counters: FlowCounters,
    /// Application detection: on for this tracker.
    detect: bool,
    /// Flows being inspected, bounded in number and bytes.
    inspections: inspections::Inspections,
    /// Capture position of the latest packet seen.
    last_index: u64,
}

impl<V: Copy> Tracker<V> {
    /// A tracker holding at most `capacity` flows; with `detect`, it
    /// inspects new TCP and UDP flows' first bytes for their application
    /// (packets must then come with their frames).
    pub fn new(config: &FlowConfig, capacity: usize, detect: bool) -> Tracker<V> {
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
            detect,
            inspections: inspections::Inspections::default(),
            last_index: 0,
        }
    }

    /// True when new flows are inspected for their application.
    pub fn detects(&self) -> bool {
        self.detect
    }

    /// Flows under inspection now.
    pub fn inspecting(&self) -> usize {
        self.inspections.len()
    }

    /// Bytes the inspections keep now (their buffers' size): at most
    /// [`INSPECT_BUDGET`].
    pub fn inspection_bytes(&self) -> usize {
        self.inspections.held()
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
    pub fn table(&self) -> &FlowTable<Flow<V>> {
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

    /// Takes one packet at capture position `index`, with its `frame` when
    /// detecting (else empty): finds or starts its flow, ends flows it finds
    /// idle, and inspections it finds over, telling `observer` each.
    #[inline(always)]
    pub fn observe<O: FlowObserver<V>>(
        &mut self,
        packet: &Packet,
        frame: &[u8],
        index: u64,
        observer: &mut O,
    ) {
        self.last_index = index;
        if packet.ts_ns >= self.inspections.next_wait_over() {
            self.release_waits(packet.ts_ns, index, observer);
        }
        // Link-local packets that the owner leaves out neither start, touch
        // nor end a flow: asked before anything changes, from the flow's
        // mark when it is known (the key's test, made at its start).
        let found = self.table.find(packet.hash, &packet.key);
        let may_be_link_local = match found {
            Some(slot) => self.table.entry(slot).value.marks & MAY_BE_LINK_LOCAL != 0,
            None => packet.key.may_be_link_local(),
        };
        if may_be_link_local && !observer.admits(packet) {
            return;
        }
        if let Some(slot) = found {
            // The entry's queue is its timeout class (kept up to date at
            // every change of the flow's state).
            let entry = self.table.entry(slot);
            let class = entry.class();
            if packet.ts_ns.saturating_sub(entry.last_ts) <= self.timeouts_ns[class] {
                self.continue_flow(slot, class, packet, frame, index, observer);
                return;
            }
            self.end_inspection(slot, index, observer);
            self.table.remove(slot);
            self.counters.expired += 1;
        }
        self.start_flow(packet, frame, index, may_be_link_local, observer);
    }

    /// Ends every flow idle past its timeout at capture time `now_ns`, and
    /// every inspection older than its wait, as if at capture position
    /// `index` (where the caller's sweep happens).
    pub fn expire<O: FlowObserver<V>>(&mut self, now_ns: u64, index: u64, observer: &mut O) {
        self.last_index = self.last_index.max(index);
        self.release_waits(now_ns, self.last_index, observer);
        for class in 0..CLASSES {
            while let Some(slot) = self
                .table
                .next_expired(class, now_ns, self.timeouts_ns[class])
            {
                self.end_inspection(slot, self.last_index, observer);
                self.table.remove(slot);
                self.counters.expired += 1;
            }
        }
    }

    /// Ends every inspection (the capture ended), in the order the flows
    /// started, at the latest packet's position.
    pub fn finish<O: FlowObserver<V>>(&mut self, observer: &mut O) {
        self.end_inspections(self.last_index, observer);
    }

    /// Always inlined into [`Tracker::observe`]: most packets come here, and
    /// as a call its register saves and restores cost about 16 instructions
    /// a packet (callgrind).
    #[inline(always)]
    fn continue_flow<O: FlowObserver<V>>(
        &mut self,
        slot: Slot,
        class: usize,
        packet: &Packet,
        frame: &[u8],
        index: u64,
        observer: &mut O,
    ) {
        let sender_is_lo = packet.sender_is_lo;
        let entry = self.table.entry_mut(slot);
        let flow = &mut entry.value;
        let mut class = class;
        let flags = packet.tcp_flags;
        if packet.transport == Transport::Tcp && flags & (tcp_flags::RST | tcp_flags::FIN) != 0 {
            if flags & tcp_flags::RST != 0 {
                flow.marks |= teardown::CLOSED;
            }
            if flags & tcp_flags::FIN != 0 {
                flow.marks |= if sender_is_lo {
                    teardown::FIN_FROM_LO
                } else {
                    teardown::FIN_FROM_HI
                };
                if flow.marks & (teardown::FIN_FROM_LO | teardown::FIN_FROM_HI)
                    == teardown::FIN_FROM_LO | teardown::FIN_FROM_HI
                {
                    flow.marks |= teardown::CLOSED;
                }
            }
            class = entry_class(packet.key.protocol, flow.marks);
        }
        // The packet's key is the entry's (the lookup compared them).
        observer.continued(
            FlowView {
                key: &packet.key,
                flow,
            },
            packet,
            index,
        );
        let inspecting = flow.inspecting();
        self.table.touch(slot, packet.ts_ns, class);
        if inspecting {
            if packet.payload_len == 0 {
                // Most packets of an inspected flow: handshakes and
                // acknowledgements.
                self.inspect_no_payload(slot, packet, frame, index, observer);
            } else {
                self.inspect(slot, packet, frame, index, observer);
            }
            // A closed flow has ended: its event waits no longer.
            if self.table.entry(slot).value.marks & teardown::CLOSED != 0 {
                self.end_inspection(slot, index, observer);
            }
        }
    }

    fn start_flow<O: FlowObserver<V>>(
        &mut self,
        packet: &Packet,
        frame: &[u8],
        index: u64,
        may_be_link_local: bool,
        observer: &mut O,
    ) {
        if self.table.is_full() {
            self.expire(packet.ts_ns, index, observer);
            if self.table.is_full()
                && let Some(oldest) = self.table.oldest()
            {
                self.count_cut_short(oldest, SkipReason::FlowEvicted);
                self.end_inspection(oldest, index, observer);
                self.table.remove(oldest);
                self.counters.evicted += 1;
            }
        }
        let inspect = self.detect
            && !frame.is_empty()
            && matches!(packet.transport, Transport::Tcp | Transport::Udp);
        if inspect && self.inspections.len() >= MAX_INSPECTIONS {
            self.make_room_to_inspect(index, observer);
        }
        let started = observer.started(packet, frame, index, inspect);
        let teardown =
            if packet.transport == Transport::Tcp && packet.tcp_flags & tcp_flags::RST != 0 {
                teardown::CLOSED
            } else {
                0
            };
        let marks = if may_be_link_local {
            teardown | MAY_BE_LINK_LOCAL
        } else {
            teardown
        };
        let flow = Flow {
            id: started.id,
            first_ts: packet.ts_ns,
            initiator_is_lo: started.sender_initiates == packet.sender_is_lo,
            verdict: started.verdict,
            marks,
            inspection: inspections::NOT_INSPECTED,
        };
        let class = entry_class(packet.key.protocol, teardown);
        let slot = self
            .table
            .insert(packet.hash, packet.key, packet.ts_ns, class, flow);
        self.counters.created += 1;
        if inspect {
            self.start_inspection(slot, packet, frame, index, observer);
        }
    }
}

/// Multicast, or the IPv4 limited broadcast.
#[inline(always)]
pub fn is_group_address(ipv6: bool, addr: u128) -> bool {
    if ipv6 {
        addr >> 120 == 0xff
    } else {
        let addr = addr as u32;
        addr >> 28 == 0xe || addr == u32::MAX
    }
}

/// The timeout class of a flow of `protocol` with `marks` (its
/// [`teardown`] bits).
fn entry_class(protocol: u8, marks: u8) -> usize {
    match Transport::of_protocol(protocol) {
        Transport::Tcp if marks & teardown::CLOSED != 0 => class::TCP_CLOSED,
        Transport::Tcp => class::TCP_OPEN,
        Transport::Udp => class::UDP,
        Transport::EchoRequest | Transport::EchoReply => class::ECHO,
        Transport::Other => class::OTHER,
    }
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
