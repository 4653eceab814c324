//! The inspections of one tracker: a slab of places, the bytes they keep,
//! and what gives way when a flood leaves no room.
//!
//! # Bounds
//!
//! A tracker inspects at most [`MAX_INSPECTIONS`] flows at once, and their
//! kept bytes take at most [`BUDGET`] bytes of buffers (checked at every
//! byte kept, not only when a flow is admitted). Places are reused: starting
//! and ending inspections does not allocate once the slab has grown; only
//! the bytes that a begun first message needs kept are allocated, per
//! direction, and freed when the inspection ends.
//!
//! # Under pressure
//!
//! The policy asked for every new TCP and UDP flow to be inspected, so a
//! flood must not be able to switch inspection off for the flows that come
//! after it. What gives way, always the oldest first, and is counted by
//! [`SkipReason`]:
//!
//! - A new flow that finds every place taken ends the oldest inspection of
//!   a flow that has kept no payload ([`SkipReason::EvictedNoPayload`]):
//!   half-open connections and silent flows cannot hold a place that a flow
//!   with payload needs. Only when every place holds payload does the oldest
//!   of those end ([`SkipReason::TableFull`]). A new flow is always
//!   inspected.
//! - Keeping bytes that would pass the budget ends the oldest inspections
//!   that keep bytes, other than the one growing, until they fit
//!   ([`SkipReason::MemoryBudget`]).
//! - A flow pushed out of a full flow table ends its inspection
//!   ([`SkipReason::FlowEvicted`]).
//!
//! An inspection ended early gives what it found so far, as when its wait is
//! over: a DICOM association or an HL7 message already recognised keeps its
//! application (without the reply's fields); a flow that had sent nothing,
//! or only the start of a first message, is judged without one.

use std::collections::VecDeque;

use super::inspect::{self, Kept, Segment, Step, Track};
use super::{FlowKey, FlowObserver, Packet, SkipReason, Slot, Tracker};
use crate::app::{Detection, FlowPorts, detect, ruled_out, stream_opening_ruled_out};
use crate::wire::{Transport, tcp_flags};

/// Flows inspected at once per tracker.
///
/// At the contract's longest wait (2 s), a tracker inspecting this many
/// flows sees 4,096 new flows a second, far more than a hospital network
/// starts per worker; a flood of new flows beyond that pushes out the
/// oldest quiet ones first (see the module docs).
pub const MAX_INSPECTIONS: usize = 8_192;

/// The most bytes a tracker's inspections keep, in all: 256 directions at
/// their 64 KiB limit, about 1,000 of the largest DICOM association
/// requests seen in practice (16.5 KiB), while a replay's 16 trackers stay
/// under 256 MiB.
pub const BUDGET: usize = 16 << 20;

/// Index of an inspection's place in a tracker's slab.
pub type Place = u16;

/// The place of a flow that is not inspected.
pub const NOT_INSPECTED: Place = Place::MAX;

const _: () = assert!(MAX_INSPECTIONS < NOT_INSPECTED as usize);

/// What every packet of an inspected flow, and the inspection's start and
/// end, touch in its place: 20 bytes, so that the places of a tracker's
/// inspections stay in the CPU's caches however many other flows' packets
/// come in between. The rest (the [`Kept`] part) is touched only by
/// inspections that keep bytes or wait for a reply.
#[derive(Clone, Copy, Debug)]
struct Hot {
    track: Track,
    /// The flow's slot in the flow table; [`FREE`] when the place is free.
    flow: Slot,
    /// Counts the inspections the place has held: a queue's entry for an
    /// earlier one is told apart by it.
    serial: u32,
}

/// The `flow` of a free place.
const FREE: Slot = Slot::MAX;

const _: () = assert!(std::mem::size_of::<Hot>() == 20);

/// An entry of a queue: a place, and the serial of the inspection it was
/// queued for.
type Queued = (Place, u32);

/// The inspections of one tracker.
#[derive(Debug)]
pub struct Inspections {
    /// Per place, what every packet touches (see [`Hot`]).
    hot: Vec<Hot>,
    /// Per place, the bytes kept and an answer waiting for a reply.
    kept: Vec<Kept>,
    /// Places free for reuse, the most recently freed (the most likely
    /// still in the CPU's caches) last.
    free: Vec<Place>,
    live: usize,
    /// Bytes the kept bytes' buffers take.
    held: usize,
    /// Inspections in the order they started, with their first packet's
    /// time: so that one whose wait is over ends at the next packet, not at
    /// the next sweep, and, from `quiet_from` on, to find the oldest
    /// inspection keeping no bytes, the first to give way to a new flow.
    /// Its front is always a live inspection's (see [`Inspections::end`]):
    /// the front's time decides when waits are looked at, and captures
    /// joined out of time order must not hide live waits behind an ended
    /// one.
    started: VecDeque<(u64, Queued)>,
    /// When the wait at the front of `started` is over (see
    /// [`Inspections::next_wait_over`]).
    next_wait_over: u64,
    /// The place of the inspection at the front of `started`
    /// ([`NOT_INSPECTED`] when it is empty): an inspection that ends tells
    /// by one compare whether the front must move, without reading the
    /// queue.
    front: Place,
    /// Where in `started` to look for the oldest inspection keeping no
    /// bytes: every entry before it is of an inspection that ended or
    /// keeps bytes, which it does until it ends.
    quiet_from: usize,
    /// Inspections that keep bytes, in the order they first kept some.
    holding: VecDeque<Queued>,
}

// The queues are lazy: an inspection that ends, or starts keeping bytes,
// leaves its entries where they are (removing them would read other
// inspections' places), and entries that no longer hold are dropped as they
// are met: at the front, when the queue is read (under pressure, or when a
// wait is over), or by a compaction when a queue holds twice as many
// entries as there can be inspections, which keeps every queue bounded and
// costs one pass per `MAX_INSPECTIONS` new entries at most.

impl Default for Inspections {
    fn default() -> Self {
        Inspections {
            hot: Vec::new(),
            kept: Vec::new(),
            free: Vec::new(),
            live: 0,
            held: 0,
            started: VecDeque::new(),
            next_wait_over: u64::MAX,
            front: NOT_INSPECTED,
            quiet_from: 0,
            holding: VecDeque::new(),
        }
    }
}

/// Compacts `queue` when it is full of entries that no longer hold; true
/// when it did.
fn compact<T>(queue: &mut VecDeque<T>, holds: impl FnMut(&T) -> bool) -> bool {
    let full = queue.len() > 2 * MAX_INSPECTIONS;
    if full {
        queue.retain(holds);
    }
    full
}

/// True when `queued` is the inspection in its place now.
fn is_live(hot: &[Hot], (place, serial): Queued) -> bool {
    let hot = &hot[usize::from(place)];
    hot.flow != FREE && hot.serial == serial
}

impl Inspections {
    /// Inspections going on.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Bytes the kept bytes take.
    pub fn held(&self) -> usize {
        self.held
    }

    /// The capture time from which the oldest inspection's wait is over
    /// (`u64::MAX` when none waits): every packet compares its time with
    /// it, one compare, and only a packet at or past it looks further.
    #[inline(always)]
    pub fn next_wait_over(&self) -> u64 {
        self.next_wait_over
    }

    /// Drops the entries of ended inspections from the front of `started`
    /// and sets [`Inspections::next_wait_over`] by the new front.
    #[inline(never)]
    fn drop_ended_front(&mut self) {
        while let Some(&(_, front)) = self.started.front() {
            if is_live(&self.hot, front) {
                break;
            }
            self.started.pop_front();
            self.quiet_from = self.quiet_from.saturating_sub(1);
        }
        (self.next_wait_over, self.front) = self
            .started
            .front()
            .map_or((u64::MAX, NOT_INSPECTED), |&(first_ts, (place, _))| {
                (first_ts.saturating_add(super::inspect::MAX_WAIT_NS), place)
            });
    }

    /// The flow-table slot of the flow inspected in `place`.
    fn flow_of(&self, place: Place) -> Slot {
        self.hot[usize::from(place)].flow
    }

    /// True when `queued` is the inspection in its place now, keeping no
    /// bytes.
    fn is_quiet(&self, queued: Queued) -> bool {
        is_live(&self.hot, queued) && !self.hot[usize::from(queued.0)].track.keeps_any()
    }

    /// The oldest inspection keeping no bytes, passing for good the
    /// entries met that are not.
    fn oldest_quiet(&mut self) -> Option<Place> {
        while let Some(&(_, queued)) = self.started.get(self.quiet_from) {
            if self.is_quiet(queued) {
                return Some(queued.0);
            }
            self.quiet_from += 1;
        }
        None
    }

    /// The oldest inspection keeping bytes, other than `except`, dropping
    /// the entries met that no longer hold.
    fn oldest_holder_except(&mut self, except: Place) -> Option<Place> {
        let mut set_aside = None;
        let mut oldest = None;
        while let Some(&queued) = self.holding.front() {
            if !is_live(&self.hot, queued) {
                self.holding.pop_front();
            } else if queued.0 == except && set_aside.is_none() {
                set_aside = self.holding.pop_front();
            } else {
                oldest = Some(queued.0);
                break;
            }
        }
        if let Some(entry) = set_aside {
            self.holding.push_front(entry);
        }
        oldest
    }

    /// The inspection that should give way to a new flow when every place
    /// is taken, and why; none while there is room.
    fn next_to_give_way(&mut self) -> Option<(Place, SkipReason)> {
        if self.live < MAX_INSPECTIONS {
            return None;
        }
        if let Some(place) = self.oldest_quiet() {
            return Some((place, SkipReason::EvictedNoPayload));
        }
        self.oldest_holder_except(NOT_INSPECTED)
            .map(|place| (place, SkipReason::TableFull))
    }

    /// Starts inspecting the flow in flow-table `slot`, whose first packet
    /// came at `first_ts` (there must be room). Always inlined (into
    /// [`Tracker::start_inspection`]): a place reused and an entry queued,
    /// a few dozen instructions.
    #[inline(always)]
    fn start(&mut self, slot: Slot, first_ts: u64) -> Place {
        let place = match self.free.pop() {
            Some(place) => place,
            None => self.new_place(),
        };
        // A freed place was cleared when its inspection ended.
        let hot = &mut self.hot[usize::from(place)];
        hot.flow = slot;
        hot.serial = hot.serial.wrapping_add(1);
        let queued = (place, hot.serial);
        self.live += 1;
        if self.started.len() > 2 * MAX_INSPECTIONS {
            self.compact_started();
        }
        self.started.push_back((first_ts, queued));
        if self.started.len() == 1 {
            self.drop_ended_front();
        }
        place
    }

    /// A place never used before (every one used so far is taken).
    #[cold]
    #[inline(never)]
    fn new_place(&mut self) -> Place {
        if self.hot.capacity() == 0 {
            // The tracker's first inspection: room for all of them, and for
            // the queues up to their compaction, at once (as address space:
            // pages are touched as they are used), so that they never move.
            self.hot.reserve_exact(MAX_INSPECTIONS);
            self.kept.reserve_exact(MAX_INSPECTIONS);
            self.free.reserve_exact(MAX_INSPECTIONS);
            self.holding.reserve_exact(2 * MAX_INSPECTIONS + 1);
            self.started.reserve_exact(2 * MAX_INSPECTIONS + 1);
        }
        self.hot.push(Hot {
            track: Track::default(),
            flow: FREE,
            serial: 0,
        });
        self.kept.push(Kept::default());
        (self.hot.len() - 1) as Place
    }

    /// Drops the entries of ended inspections from `started` (see
    /// [`compact`]).
    #[cold]
    #[inline(never)]
    fn compact_started(&mut self) {
        let hot = &self.hot;
        if compact(&mut self.started, |&(_, queued)| is_live(hot, queued)) {
            self.quiet_from = 0;
            self.drop_ended_front();
        }
    }

    /// Ends the inspection in `place`, freeing it and its bytes; returns
    /// the flow's slot and the best answer it had. Always inlined: most
    /// inspections kept nothing, and then this is a few stores.
    #[inline(always)]
    fn end(&mut self, place: Place) -> (Slot, Option<Box<Detection>>) {
        let at = usize::from(place);
        let found = if self.hot[at].track.holds_kept() {
            self.clear_kept(at)
        } else {
            None
        };
        (self.free(place), found)
    }

    /// [`Inspections::end`] for an inspection whose [`Kept`] part holds
    /// nothing (see [`Track::holds_kept`]): no answer to hand back.
    #[inline(always)]
    fn end_holding_nothing(&mut self, place: Place) -> Slot {
        debug_assert!(!self.hot[usize::from(place)].track.holds_kept());
        self.free(place)
    }

    /// Frees `place` (its [`Kept`] part already empty); returns the slot of
    /// the flow it inspected.
    #[inline(always)]
    fn free(&mut self, place: Place) -> Slot {
        let hot = &mut self.hot[usize::from(place)];
        let flow = hot.flow;
        hot.flow = FREE;
        hot.track = Track::default();
        self.live -= 1;
        self.free.push(place);
        // The front of `started` is live: it is this inspection's entry
        // when it is in this place.
        if self.front == place {
            self.drop_ended_front();
        }
        flow
    }

    /// Frees the bytes kept in place `at`; returns the answer it had.
    #[inline(never)]
    fn clear_kept(&mut self, at: usize) -> Option<Box<Detection>> {
        let (held, found) = self.kept[at].clear();
        self.held -= held;
        found
    }

    /// Keeps `bytes` after a direction's kept bytes (the caller made room
    /// for [`Kept::growth`]).
    fn keep(&mut self, place: Place, from_client: bool, bytes: &[u8]) {
        let at = usize::from(place);
        let hot = &mut self.hot[at];
        let was_holding = hot.track.keeps_any();
        hot.track.set_keeps(from_client);
        let queued = (place, hot.serial);
        let kept = &mut self.kept[at];
        let before = kept.held();
        kept.keep(from_client, bytes);
        self.held = self.held + kept.held() - before;
        if !was_holding {
            let hot = &self.hot;
            compact(&mut self.holding, |&queued| is_live(hot, queued));
            self.holding.push_back(queued);
        }
    }

    /// The oldest inspection, when its wait is over at `now` (the caller
    /// ends it).
    fn wait_over(&self, now: u64) -> Option<Place> {
        let &(first_ts, (place, _)) = self.started.front()?;
        (now.saturating_sub(first_ts) >= super::inspect::MAX_WAIT_NS).then_some(place)
    }

    /// What the kept bytes' buffers take, counted afresh (tests hold the
    /// running account to it).
    #[cfg(test)]
    fn buffers_size(&self) -> usize {
        self.kept.iter().map(Kept::held).sum()
    }

    /// The live inspections' places, in the order their flows started
    /// (first packet time, then flow id).
    fn in_start_order(&self, flow_id: impl Fn(Slot) -> u64) -> Vec<Place> {
        let mut live: Vec<(u64, u64, Place)> = self
            .started
            .iter()
            .filter(|&&(_, queued)| is_live(&self.hot, queued))
            .map(|&(first_ts, (place, _))| (first_ts, flow_id(self.flow_of(place)), place))
            .collect();
        live.sort_unstable();
        live.into_iter().map(|(_, _, place)| place).collect()
    }
}

/// The ports of the flow of `key`, by role.
#[inline(always)]
fn flow_ports(key: &FlowKey, initiator_is_lo: bool) -> FlowPorts {
    if initiator_is_lo {
        FlowPorts {
            client: key.lo_port,
            server: key.hi_port,
        }
    } else {
        FlowPorts {
            client: key.hi_port,
            server: key.lo_port,
        }
    }
}

impl<V: Copy> Tracker<V> {
    /// Makes room for a new flow's inspection when every place is taken
    /// (see the module docs).
    pub(super) fn make_room_to_inspect<O: FlowObserver<V>>(
        &mut self,
        index: u64,
        observer: &mut O,
    ) {
        if let Some((place, reason)) = self.inspections.next_to_give_way() {
            self.cut_short(place, reason, index, observer);
        }
    }

    /// Starts inspecting the new flow in `slot` (after
    /// [`Tracker::make_room_to_inspect`]) and feeds it its first packet.
    /// Always inlined (into [`Tracker::start_flow`], once per new flow).
    #[inline(always)]
    pub(super) fn start_inspection<O: FlowObserver<V>>(
        &mut self,
        slot: Slot,
        packet: &Packet,
        frame: &[u8],
        index: u64,
        observer: &mut O,
    ) {
        if packet.payload_len != 0 && self.first_packet_rules_out(slot, packet, frame) {
            // Decided at its first packet (most UDP flows, TCP flows seen
            // from their middle): no place taken.
            self.inspection_over(slot, None, index, observer);
            return;
        }
        let place = self.inspections.start(slot, packet.ts_ns);
        let flow = &mut self.table.entry_mut(slot).value;
        flow.inspection = place;
        if packet.payload_len != 0 {
            self.inspect(slot, packet, frame, index, observer);
            return;
        }
        // What `inspect_empty` does with a fresh track, in place: the first
        // packet never reaches the inspection's limits.
        const _: () = assert!(inspect::MAX_PACKETS > 1);
        let from_client = packet.sender_is_lo == flow.initiator_is_lo;
        let track = &mut self.inspections.hot[usize::from(place)].track;
        if packet.transport != Transport::Tcp {
            track.count_empty(packet.transport, from_client);
            return;
        }
        let Some(header) = packet.tcp_header(frame) else {
            self.end_inspection(slot, index, observer);
            return;
        };
        let seq = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
        track.accept_empty(from_client, seq, packet.tcp_flags & tcp_flags::SYN != 0);
    }

    /// True when the first packet of the new flow in `slot`, which carries
    /// payload, rules out every application ([`ruled_out`] on the bytes it
    /// adds): its inspection would end at it, as [`Tracker::inspect`]
    /// would end it.
    fn first_packet_rules_out(&self, slot: Slot, packet: &Packet, frame: &[u8]) -> bool {
        let Some((_, payload)) = packet.payload(frame) else {
            return false;
        };
        if payload.is_empty() {
            return false;
        }
        let entry = self.table.entry(slot);
        let initiator_is_lo = entry.value.initiator_is_lo;
        let ports = flow_ports(&entry.key, initiator_is_lo);
        let (client, server) = if packet.sender_is_lo == initiator_is_lo {
            (payload, &[][..])
        } else {
            (&[][..], payload)
        };
        ruled_out(packet.transport, ports, client, server)
    }

    /// Ends a flow's inspection, if any, with what was found so far (the
    /// flow ended, waited long enough, or the capture ended).
    #[inline(never)]
    pub(super) fn end_inspection<O: FlowObserver<V>>(
        &mut self,
        slot: Slot,
        index: u64,
        observer: &mut O,
    ) {
        let place = self.table.entry(slot).value.inspection;
        if place != NOT_INSPECTED {
            let (_, found) = self.inspections.end(place);
            self.inspection_over(slot, found, index, observer);
        }
    }

    /// Ends the inspection in `place` early, for `reason`, counting it.
    fn cut_short<O: FlowObserver<V>>(
        &mut self,
        place: Place,
        reason: SkipReason,
        index: u64,
        observer: &mut O,
    ) {
        self.counters.inspections_skipped[reason.index()] += 1;
        let (slot, found) = self.inspections.end(place);
        self.inspection_over(slot, found, index, observer);
    }

    /// Counts the inspection of the flow in `slot`, if any, as ended early
    /// for `reason` (the caller ends it).
    pub(super) fn count_cut_short(&mut self, slot: Slot, reason: SkipReason) {
        if self.table.entry(slot).value.inspecting() {
            self.counters.inspections_skipped[reason.index()] += 1;
        }
    }

    /// Tells the observer that the inspection of the flow in `slot` is over.
    /// Always inlined: for most flows the observer has nothing to do then.
    #[inline(always)]
    fn inspection_over<O: FlowObserver<V>>(
        &mut self,
        slot: Slot,
        found: Option<Box<Detection>>,
        index: u64,
        observer: &mut O,
    ) {
        let entry = self.table.entry_mut(slot);
        entry.value.inspection = NOT_INSPECTED;
        let view = super::FlowView {
            key: &entry.key,
            flow: &mut entry.value,
        };
        observer.inspected(view, found, index);
    }

    /// Feeds an inspected flow's packet without payload to its inspection,
    /// counting it in place when that is all there is to do (most such
    /// packets: the acknowledgements after the handshake), else through
    /// [`Tracker::inspect_empty`].
    #[inline(always)]
    pub(super) fn inspect_no_payload<O: FlowObserver<V>>(
        &mut self,
        slot: Slot,
        packet: &Packet,
        frame: &[u8],
        index: u64,
        observer: &mut O,
    ) {
        if packet.tcp_flags & tcp_flags::SYN == 0 {
            let flow = &self.table.entry(slot).value;
            let from_client = packet.sender_is_lo == flow.initiator_is_lo;
            let track = &mut self.inspections.hot[usize::from(flow.inspection)].track;
            if track.count_empty(packet.transport, from_client) {
                if track.waited_enough(flow.first_ts, packet.ts_ns) {
                    self.end_inspection(slot, index, observer);
                }
                return;
            }
        }
        if self.inspect_empty(slot, packet, frame) {
            self.end_inspection(slot, index, observer);
        }
    }

    /// Feeds an inspected flow's packet without payload to its inspection:
    /// what [`Tracker::inspect`] does with it, in a few instructions. Such a
    /// packet adds no bytes: it counts, and a TCP segment's sequence number
    /// says where its direction's data starts (a SYN's, or the first of a
    /// direction whose SYN went unseen), or that some went missing. True
    /// when the inspection is to end now (the caller ends it). Always
    /// inlined, into [`Tracker::inspect_no_payload`] alone: a SYN-ACK's
    /// call cost about 25 instructions (callgrind), more than its
    /// registers cost the packet loop.
    #[inline(always)]
    pub(super) fn inspect_empty(&mut self, slot: Slot, packet: &Packet, frame: &[u8]) -> bool {
        let flow = &self.table.entry(slot).value;
        let from_client = packet.sender_is_lo == flow.initiator_is_lo;
        let first_ts = flow.first_ts;
        let track = &mut self.inspections.hot[usize::from(flow.inspection)].track;
        let syn = packet.tcp_flags & tcp_flags::SYN != 0;
        if syn || !track.count_empty(packet.transport, from_client) {
            // TCP: decoding leaves the flags of anything else at 0, and
            // `count_empty` counts every UDP datagram.
            let Some(header) = packet.tcp_header(frame) else {
                return true;
            };
            let seq = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            track.accept_empty(from_client, seq, syn);
        }
        track.waited_enough(first_ts, packet.ts_ns)
    }

    /// Feeds an inspected flow's packet to its inspection.
    ///
    /// Most such packets end it here: a stream's first segment whose first
    /// bytes open no protocol, while neither direction keeps bytes nor an
    /// answer waits (then [`ruled_out`] is [`stream_opening_ruled_out`] on
    /// that segment's bytes). Everything else goes on in
    /// [`Tracker::probe`], out of line, so that this common path keeps its
    /// few values in registers.
    #[inline(never)]
    pub(super) fn inspect<O: FlowObserver<V>>(
        &mut self,
        slot: Slot,
        packet: &Packet,
        frame: &[u8],
        index: u64,
        observer: &mut O,
    ) {
        let flow = &self.table.entry(slot).value;
        let (place, first_ts) = (flow.inspection, flow.first_ts);
        let from_client = packet.sender_is_lo == flow.initiator_is_lo;
        let Some((seq, payload)) = packet.payload(frame) else {
            self.end_inspection(slot, index, observer);
            return;
        };
        let segment = Segment {
            from_client,
            seq,
            syn: packet.tcp_flags & tcp_flags::SYN != 0,
            payload,
            ts_ns: packet.ts_ns,
        };
        let at = usize::from(place);
        let track = &mut self.inspections.hot[at].track;
        if packet.transport != Transport::Tcp || track.holds_kept() {
            self.probe(slot, packet, &segment, index, observer);
            return;
        }
        // Neither direction keeps bytes: what the segment adds is all there
        // is to read.
        let added = track.accept_segment(&segment, 0);
        if added.is_empty() {
            // Nothing to read (a retransmission, a segment past a hole):
            // only the inspection's limits to check.
            if track.waited_enough(first_ts, packet.ts_ns) {
                self.end_inspection(slot, index, observer);
            }
            return;
        }
        if stream_opening_ruled_out(from_client, added) {
            // Most flows: their first segment's first bytes open no protocol
            // (what `detect` would answer, and then `decide`, in a few
            // instructions).
            self.inspections.end_holding_nothing(place);
            self.inspection_over(slot, None, index, observer);
            return;
        }
        self.ask_parsers(slot, packet, &segment, 0, added, index, observer);
    }

    /// [`Tracker::inspect`] for a packet that may add to bytes kept, or to
    /// an answer waiting, or a datagram: counts it, and reads what it adds.
    #[inline(never)]
    fn probe<O: FlowObserver<V>>(
        &mut self,
        slot: Slot,
        packet: &Packet,
        segment: &Segment<'_>,
        index: u64,
        observer: &mut O,
    ) {
        let flow = &self.table.entry(slot).value;
        let (place, first_ts) = (flow.inspection, flow.first_ts);
        let from_client = segment.from_client;
        let at = usize::from(place);
        let track = &mut self.inspections.hot[at].track;
        let kept = if track.keeps(from_client) {
            self.inspections.kept[at].len(from_client)
        } else {
            0
        };
        let added = track.accept(packet.transport, segment, kept);
        if added.is_empty() {
            // Nothing to read, only its limits to check.
            if track.waited_enough(first_ts, packet.ts_ns) {
                self.end_inspection(slot, index, observer);
            }
            return;
        }
        self.ask_parsers(slot, packet, segment, kept, added, index, observer);
    }

    /// What a packet adds to its direction (`kept` bytes there already),
    /// read: kept first when the direction keeps some, then the parsers
    /// asked what the bytes so far say.
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn ask_parsers<O: FlowObserver<V>>(
        &mut self,
        slot: Slot,
        packet: &Packet,
        segment: &Segment<'_>,
        kept: usize,
        added: &[u8],
        index: u64,
        observer: &mut O,
    ) {
        let flow = &self.table.entry(slot).value;
        let (place, first_ts, initiator_is_lo) =
            (flow.inspection, flow.first_ts, flow.initiator_is_lo);
        let from_client = segment.from_client;
        let at = usize::from(place);
        // The added bytes are probed where they lie when their direction
        // keeps none yet; otherwise they are kept first, to be read with
        // the bytes before them.
        let fresh: &[u8] = if kept > 0 {
            if !self.keep(place, from_client, added, index, observer) {
                return;
            }
            &[]
        } else {
            added
        };
        let ports = flow_ports(&self.table.entry(slot).key, initiator_is_lo);
        let inspections = &mut self.inspections;
        let (track, kept) = (&mut inspections.hot[at].track, &mut inspections.kept[at]);
        let (client, server) = inspect::sides(track, kept, from_client, fresh);
        if ruled_out(packet.transport, ports, client, server) {
            self.inspections.end(place);
            self.inspection_over(slot, None, index, observer);
            return;
        }
        let answer = detect(packet.transport, ports, client, server);
        match inspect::decide(
            answer,
            packet.transport,
            segment,
            fresh,
            (track, first_ts),
            kept,
        ) {
            Step::Continue => {}
            Step::Keep(bytes) => {
                self.keep(place, from_client, bytes, index, observer);
            }
            Step::Finished(found) => {
                self.inspections.end(place);
                self.inspection_over(slot, found, index, observer);
            }
        }
    }

    /// Keeps bytes of an inspection's direction within the budget, ending
    /// the oldest other inspections that keep bytes when they would not fit,
    /// or, when no other is left to end, this one. False when this one
    /// ended.
    fn keep<O: FlowObserver<V>>(
        &mut self,
        place: Place,
        from_client: bool,
        bytes: &[u8],
        index: u64,
        observer: &mut O,
    ) -> bool {
        let growth = self.inspections.kept[usize::from(place)].growth(from_client, bytes.len());
        while self.inspections.held() + growth > BUDGET {
            let oldest = self.inspections.oldest_holder_except(place);
            self.cut_short(
                oldest.unwrap_or(place),
                SkipReason::MemoryBudget,
                index,
                observer,
            );
            if oldest.is_none() {
                return false;
            }
        }
        self.inspections.keep(place, from_client, bytes);
        true
    }

    /// Ends the inspections whose wait is over at `now`, as at the packet at
    /// `index`.
    pub(super) fn release_waits<O: FlowObserver<V>>(
        &mut self,
        now: u64,
        index: u64,
        observer: &mut O,
    ) {
        while let Some(place) = self.inspections.wait_over(now) {
            let slot = self.inspections.flow_of(place);
            self.end_inspection(slot, index, observer);
        }
    }

    /// Ends every inspection, in the order the flows started, as at the
    /// packet at `index` (the capture ended).
    pub(super) fn end_inspections<O: FlowObserver<V>>(&mut self, index: u64, observer: &mut O) {
        let table = &self.table;
        let places = self
            .inspections
            .in_start_order(|slot| table.entry(slot).value.id);
        // None of them waits any more: ending them need not look at the
        // queue.
        self.inspections.started.clear();
        self.inspections.front = NOT_INSPECTED;
        self.inspections.quiet_from = 0;
        for place in places {
            let slot = self.inspections.flow_of(place);
            self.end_inspection(slot, index, observer);
        }
        self.inspections.drop_ended_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::App;
    use crate::flow::{FlowConfig, FlowView, Started};
    use crate::synth::{Pkt, tcp_flags::*};
    use crate::wire::{Headers, LinkType, Outcome, decode};

    /// Records what the tracker tells its owner: each inspection's end, by
    /// flow id (the capture position of its first packet).
    #[derive(Default)]
    struct Recorder {
        inspected: Vec<(u64, Option<App>)>,
    }

    impl FlowObserver<()> for Recorder {
        fn admits(&mut self, _packet: &Packet) -> bool {
            true
        }

        fn started(
            &mut self,
            _packet: &Packet,
            _frame: &[u8],
            index: u64,
            _inspecting: bool,
        ) -> Started<()> {
            Started {
                id: index,
                sender_initiates: true,
                verdict: (),
            }
        }

        fn continued(&mut self, _flow: FlowView<'_, ()>, _packet: &Packet, _index: u64) {}

        fn inspected(&mut self, flow: FlowView<'_, ()>, app: Option<Box<Detection>>, _index: u64) {
            self.inspected
                .push((flow.flow.id, app.map(|found| found.app())));
        }
    }

    /// A tracker with detection, fed frames one by one.
    struct Harness {
        tracker: Tracker<()>,
        recorder: Recorder,
        index: u64,
    }

    impl Harness {
        fn new() -> Harness {
            Harness {
                tracker: Tracker::new(&FlowConfig::default(), 1 << 20, true),
                recorder: Recorder::default(),
                index: 0,
            }
        }

        /// Feeds `pkt` at capture time `ts_ns`; returns its position.
        fn feed(&mut self, ts_ns: u64, pkt: &Pkt) -> u64 {
            let frame = pkt.build();
            let mut headers = Headers::default();
            assert_eq!(
                decode(LinkType::ETHERNET, &frame, &mut headers),
                Outcome::Judge
            );
            let packet = Packet::new(&headers, ts_ns);
            let index = self.index;
            self.index += 1;
            self.tracker
                .observe(&packet, &frame, index, &mut self.recorder);
            index
        }

        fn skipped(&self, reason: SkipReason) -> u64 {
            self.tracker.counters().inspections_skipped[reason.index()]
        }

        /// How the inspection of the flow that started at `id` ended, if
        /// it did.
        fn ended(&self, id: u64) -> Option<Option<App>> {
            self.recorder
                .inspected
                .iter()
                .find(|(flow, _)| *flow == id)
                .map(|(_, app)| *app)
        }
    }

    fn client(n: usize) -> String {
        format!(
            "10.1.{}.{}:{}",
            n / 250 % 250,
            n % 250 + 1,
            20_000 + n / 62_500
        )
    }

    const SERVER: &str = "10.9.0.1:104";

    /// The first bytes of a DICOM A-ASSOCIATE-RQ announcing a PDU of
    /// `pdu_len` bytes: valid as far as they go, so a parser waits for the
    /// rest (up to its 64 KiB window).
    fn associate_rq_start(len: usize, pdu_len: u32) -> Vec<u8> {
        let mut rq = vec![b' '; len];
        rq[..6].copy_from_slice(&[0x01, 0x00, 0, 0, 0, 0]);
        rq[2..6].copy_from_slice(&pdu_len.to_be_bytes());
        rq[6..10].copy_from_slice(&[0x00, 0x01, 0x00, 0x00]);
        rq[74] = 0x10;
        rq
    }

    #[test]
    fn flows_without_payload_give_way_first_and_a_new_flow_is_always_inspected() {
        let mut h = Harness::new();
        // A flow that has sent the first byte of a DICOM request: kept.
        let holder = h.feed(0, &Pkt::tcp(&client(0), SERVER, SYN));
        h.feed(
            1,
            &Pkt::tcp(&client(0), SERVER, ACK).seq(1001).payload(b"\x01"),
        );
        assert!(h.tracker.inspection_bytes() > 0);
        // Half-open flows fill every other place.
        let mut quiet = Vec::new();
        for n in 1..MAX_INSPECTIONS {
            quiet.push(h.feed(10 + n as u64, &Pkt::tcp(&client(n), SERVER, SYN)));
        }
        assert_eq!(h.tracker.inspecting(), MAX_INSPECTIONS);
        assert!(h.recorder.inspected.is_empty());
        // Each new flow pushes out the oldest half-open one, never the flow
        // with payload, and is inspected itself.
        let late = h.feed(100_000, &Pkt::tcp(&client(MAX_INSPECTIONS), SERVER, SYN));
        h.feed(
            100_001,
            &Pkt::tcp(&client(MAX_INSPECTIONS + 1), SERVER, SYN),
        );
        assert_eq!(h.skipped(SkipReason::EvictedNoPayload), 2);
        assert_eq!(h.ended(quiet[0]), Some(None));
        assert_eq!(h.ended(quiet[1]), Some(None));
        assert_eq!(h.ended(holder), None);
        assert_eq!(h.tracker.inspecting(), MAX_INSPECTIONS);
        // The late flow's request is read: a DICOM association.
        let late_client = client(MAX_INSPECTIONS);
        let rq = associate_rq_start(80, 74);
        h.feed(
            100_002,
            &Pkt::tcp(&late_client, SERVER, ACK).seq(1001).payload(&rq),
        );
        assert!(
            h.tracker.inspection_bytes() > 0,
            "the request waits for its reply"
        );
        h.feed(
            100_003,
            &Pkt::tcp(&late_client, SERVER, FIN | ACK).seq(1081),
        );
        h.feed(100_004, &Pkt::tcp(SERVER, &late_client, FIN | ACK));
        assert_eq!(h.ended(late), Some(Some(App::Dicom)));
        assert_eq!(h.skipped(SkipReason::TableFull), 0);
    }

    #[test]
    fn an_ended_inspection_never_hides_a_wait_that_is_over() {
        // Captures joined out of time order: a flow starts at 10 s, then
        // one at 5 s; the first is ruled out by its first bytes.
        let mut h = Harness::new();
        let late = h.feed(10_000_000_000, &Pkt::tcp(&client(0), SERVER, SYN));
        let early = h.feed(5_000_000_000, &Pkt::tcp(&client(1), SERVER, SYN));
        let ssh = Pkt::tcp(&client(0), SERVER, ACK)
            .seq(1001)
            .payload(b"SSH-2.0-OpenSSH_9.6\r\n");
        h.feed(10_000_000_001, &ssh);
        assert_eq!(h.ended(late), Some(None));
        assert_eq!(h.ended(early), None);
        // The next packet past the early flow's 2 s ends its wait, though
        // the ended inspection started later.
        h.feed(7_100_000_000, &Pkt::tcp(SERVER, &client(0), ACK));
        assert_eq!(h.ended(early), Some(None));
        assert_eq!(h.tracker.inspecting(), 0);
    }

    #[test]
    fn when_every_place_holds_payload_the_oldest_gives_way() {
        let mut h = Harness::new();
        let mut holders = Vec::new();
        for n in 0..MAX_INSPECTIONS {
            let ts = 10 * n as u64;
            holders.push(h.feed(ts, &Pkt::tcp(&client(n), SERVER, SYN)));
            h.feed(
                ts + 1,
                &Pkt::tcp(&client(n), SERVER, ACK).seq(1001).payload(b"\x01"),
            );
        }
        assert_eq!(h.tracker.inspection_bytes(), MAX_INSPECTIONS);
        h.feed(1 << 20, &Pkt::tcp(&client(MAX_INSPECTIONS), SERVER, SYN));
        assert_eq!(h.skipped(SkipReason::TableFull), 1);
        assert_eq!(h.skipped(SkipReason::EvictedNoPayload), 0);
        assert_eq!(h.ended(holders[0]), Some(None));
        assert_eq!(h.ended(holders[1]), None);
        assert_eq!(h.tracker.inspection_bytes(), MAX_INSPECTIONS - 1);
    }

    #[test]
    fn the_byte_budget_holds_at_every_byte_kept() {
        // Many flows send one byte, then 60 KB each: a request that never
        // ends, as an attacker would send to fill the buffers.
        const BIG: usize = 60_000;
        let flows = 2 * BUDGET / BIG;
        let rq = associate_rq_start(1 + BIG, 65_000);
        let mut h = Harness::new();
        let mut ids = Vec::new();
        for n in 0..flows {
            ids.push(h.feed(
                n as u64,
                &Pkt::tcp(&client(n), SERVER, ACK).payload(&rq[..1]),
            ));
        }
        assert_eq!(h.tracker.inspection_bytes(), flows);
        let mut most = 0;
        for n in 0..flows {
            let pkt = Pkt::tcp(&client(n), SERVER, ACK)
                .seq(1001)
                .payload(&rq[1..]);
            h.feed(1_000_000 + n as u64, &pkt);
            let held = h.tracker.inspection_bytes();
            assert!(held <= BUDGET, "{held} bytes held after flow {n}");
            // The account is what the buffers take.
            assert_eq!(held, h.tracker.inspections.buffers_size());
            most = most.max(held);
        }
        assert!(most > BUDGET - BIG - 1, "the budget was used: {most}");
        // The oldest holders gave way; the latest flows' requests are kept.
        let cut = h.skipped(SkipReason::MemoryBudget) as usize;
        assert_eq!(cut, flows - BUDGET / (1 + BIG), "as many kept as fit");
        assert_eq!(h.ended(ids[0]), Some(None));
        assert_eq!(h.ended(ids[flows - 1]), None);
        assert_eq!(h.tracker.inspecting(), flows - cut);
        // Every flow was inspected to the end of its wait or cut short:
        // the capture's end releases the rest.
        h.tracker.finish(&mut h.recorder);
        assert_eq!(h.recorder.inspected.len(), flows);
        assert_eq!(h.tracker.inspection_bytes(), 0);
    }
}
