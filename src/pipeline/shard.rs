//! One shard of the traffic: its flow tracker, the judge it answers, and
//! what it produced since its driver last took it.

use std::sync::Arc;

use crate::app::Detection;
use crate::capture::Frame;
use crate::classify::{PolicyInForce, Verdict};
use crate::event::Violation;
use crate::evidence::{EvidenceTable, FlowClass, NO_BUCKET};
use crate::flow::{FlowConfig, FlowObserver, FlowView, Packet, Started, Tracker, flow_id};
use crate::inventory::{AppIdentified, FlowStart, Inventory};
use crate::wire::{Decapsulation, Headers, Outcome, Split, Transport};

use super::counters::Counters;
use super::starts::{StartNotice, TrackedRanges};

/// How a shard works.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardOptions {
    /// Inspect new flows' first bytes for their application; a flow's event
    /// waits for it (contract section 2).
    pub detect_apps: bool,
    /// Record each flow's start and each identified application for the
    /// device inventory ([`Shard::feed_inventory`]).
    pub record_starts: bool,
    /// Count flows and bytes for evidence reports ([`Shard::take_evidence`]).
    pub evidence: bool,
}

/// The judge's record of a flow, kept by the tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowVerdict {
    /// The latest verdict.
    verdict: Verdict,
    /// Generation of the policy that gave `verdict`.
    generation: u32,
    /// VLAN of its first packet (an event that waited for the application
    /// carries it).
    vlan: u16,
    /// [`ALERTED`], [`APP_JUDGED`], [`SILENT`] and [`COUNTS_BYTES`] bits, in
    /// one byte so that the record (and the flow table's entry) stays 20
    /// bytes.
    flags: u8,
    /// Its evidence bucket (see [`crate::evidence::EvidenceTable`]), or
    /// [`NO_BUCKET`] with evidence off.
    bucket: u32,
}

/// [`FlowVerdict::flags`]: the flow's one violation event has been made.
const ALERTED: u8 = 1;
/// [`FlowVerdict::flags`]: its verdict took its application into account:
/// a reload keeps that verdict (the application is not kept to judge again).
const APP_JUDGED: u8 = 2;
/// [`FlowVerdict::flags`]: which endpoint has sent nothing yet, when
/// recording flow starts for the inventory ([`silent_if_sent_by`]); neither
/// bit once both have (or when not recording). Its first packet is the
/// other record of the flow.
const SILENT: u8 = 4 | 8;
/// [`FlowVerdict::flags`]: evidence was on at the flow's start, so its
/// packets' bytes may count (its bucket says where). With [`SILENT`], the
/// one test a packet of a known flow makes before looking further.
const COUNTS_BYTES: u8 = 16;

/// The [`SILENT`] bits of an endpoint that sends a packet: `lo` is 4, `hi`
/// is 8 (never 0, so that the per-packet test is one mask and one compare).
#[inline(always)]
fn silent_if_sent_by(sender_is_lo: bool) -> u8 {
    if sender_is_lo { 4 } else { 8 }
}

impl FlowVerdict {
    fn alerted(&self) -> bool {
        self.flags & ALERTED != 0
    }

    fn set_alerted(&mut self) {
        self.flags |= ALERTED;
    }

    fn app_judged(&self) -> bool {
        self.flags & APP_JUDGED != 0
    }

    fn set_app_judged(&mut self, judged: bool) {
        self.flags = (self.flags & !APP_JUDGED) | if judged { APP_JUDGED } else { 0 };
    }

    /// True when `sender_is_lo`'s side has sent nothing before this packet.
    #[inline(always)]
    fn first_from(&self, sender_is_lo: bool) -> bool {
        self.flags & SILENT == silent_if_sent_by(sender_is_lo)
    }
}

/// What a shard produced since its driver last took it.
#[derive(Debug, Default)]
pub struct ShardOutput {
    /// Violations, in the order they were made (by the packet that made
    /// each).
    pub violations: Vec<Violation>,
    /// Flow starts, when recording them.
    pub starts: Vec<FlowStart>,
    /// Applications identified, when recording flow starts.
    pub identified: Vec<AppIdentified>,
    /// New flows to tracked responders, for sweeps and scans (with
    /// incidents on: see [`Shard::set_tracked_ranges`]).
    pub notices: Vec<StartNotice>,
}

/// One shard of the traffic: decode (for the daemon), track, judge, make the
/// violations and the inventory's sightings, count. The replay and the
/// daemon drive it the same way, packet by packet; they differ in where
/// packets come from, who sweeps idle flows and when, and where the output
/// goes.
#[derive(Debug)]
pub struct Shard {
    tracker: Tracker<FlowVerdict>,
    headers: Headers,
    /// The tunnels [`Shard::frame`] opens besides ERSPAN.
    decapsulation: Arc<Decapsulation>,
    state: JudgeState,
}

/// What the shard's judge keeps between packets.
#[derive(Debug)]
struct JudgeState {
    options: ShardOptions,
    flow_id_salt: u64,
    /// With incidents on, the responders whose new flows are noted.
    tracked: Option<Arc<TrackedRanges>>,
    output: ShardOutput,
    counters: Counters,
    /// With evidence on: flows and bytes by bucket.
    evidence: EvidenceTable,
}

impl Shard {
    /// A shard holding at most `capacity` flows.
    pub fn new(flows: &FlowConfig, capacity: usize, options: ShardOptions) -> Shard {
        Shard {
            tracker: Tracker::new(flows, capacity, options.detect_apps),
            headers: Headers::default(),
            decapsulation: Arc::new(Decapsulation::NONE),
            state: JudgeState {
                options,
                flow_id_salt: 0,
                tracked: None,
                output: ShardOutput::default(),
                counters: Counters::default(),
                evidence: EvidenceTable::new(),
            },
        }
    }

    /// Sets what flow ids are mixed with (see [`flow_id`]): a capture's
    /// first timestamp in a replay, the start time in the daemon.
    pub fn set_flow_id_salt(&mut self, salt: u64) {
        self.state.flow_id_salt = salt;
    }

    /// Sets the tunnels [`Shard::frame`] opens besides ERSPAN.
    pub fn set_decapsulation(&mut self, decapsulation: Arc<Decapsulation>) {
        self.decapsulation = decapsulation;
    }

    /// Notes every new flow to a responder in `ranges` (incidents on), or
    /// none.
    pub fn set_tracked_ranges(&mut self, ranges: Option<Arc<TrackedRanges>>) {
        self.state.tracked = ranges;
    }

    /// True when [`Shard::packet`] reads the packets' frames.
    pub fn reads_frames(&self) -> bool {
        self.state.options.detect_apps || self.state.options.record_starts
    }

    /// True when [`Shard::packet`] reads every packet's frame, its payload
    /// included (detection); recording flow starts reads only new flows'.
    pub fn reads_every_frame(&self) -> bool {
        self.state.options.detect_apps
    }

    /// See [`Tracker::prefetch_index`].
    #[inline]
    pub fn prefetch_index(&self, hash: u32) {
        self.tracker.prefetch_index(hash);
    }

    /// See [`Tracker::prefetch_entry`].
    #[inline]
    pub fn prefetch_entry(&self, hash: u32) {
        self.tracker.prefetch_entry(hash);
    }

    /// Takes one frame: decodes it, counts it, and judges it when it is IP.
    #[inline]
    pub fn frame(&mut self, frame: &Frame<'_>, index: u64, policy: &PolicyInForce) {
        let split = frame.decode_split(&self.decapsulation, &mut self.headers);
        let packets = &mut self.state.counters.packets;
        packets.count(frame.orig_len, split.outcome());
        // Only the general path opens tunnels (see `wire::decode_split`).
        let packet = match split {
            Split::Untunnelled(Outcome::Judge) => Packet::untunnelled(&self.headers, frame.ts_ns),
            Split::General(outcome) => {
                packets.count_tunnel(&self.headers.tunnel);
                if outcome != Outcome::Judge {
                    return;
                }
                Packet::new(&self.headers, frame.ts_ns)
            }
            Split::Untunnelled(_) => return,
        };
        self.packet(&packet, Some(frame), index, policy);
    }

    /// Takes one decoded packet at capture position `index` (frames are
    /// counted by the caller). Its `frame` is read only when detecting
    /// applications or recording flow starts (see [`Shard::reads_frames`]);
    /// otherwise it may be `None`.
    #[inline(always)]
    pub fn packet(
        &mut self,
        packet: &Packet,
        frame: Option<&Frame<'_>>,
        index: u64,
        policy: &PolicyInForce,
    ) {
        // The tracker reads the frame only for its inspections, which it
        // starts only when detecting applications: no need to ask here.
        let data = frame.map_or(&[][..], |frame| frame.data);
        let mut judge = Judge {
            state: &mut self.state,
            policy,
            frame,
        };
        self.tracker.observe(packet, data, index, &mut judge);
    }

    /// Ends the flows idle past their timeout at capture time `now_ns`, and
    /// the inspections whose wait is over, as at capture position `index`
    /// (the daemon's sweep: on a wire the packet that would end them may
    /// never come).
    pub fn expire(&mut self, now_ns: u64, index: u64, policy: &PolicyInForce) {
        let mut judge = Judge {
            state: &mut self.state,
            policy,
            frame: None,
        };
        self.tracker.expire(now_ns, index, &mut judge);
    }

    /// Ends every inspection: the capture ended.
    pub fn finish(&mut self, policy: &PolicyInForce) {
        let mut judge = Judge {
            state: &mut self.state,
            policy,
            frame: None,
        };
        self.tracker.finish(&mut judge);
    }

    /// What the shard produced since the driver last emptied it.
    pub fn output(&mut self) -> &mut ShardOutput {
        &mut self.state.output
    }

    /// Hands the recorded flow starts (and first answers) and identified
    /// applications to the device inventory (once per batch: the shared map
    /// is touched per new flow, never per packet), naming zones by `policy`.
    /// The caller settles the inventory once every shard has fed it
    /// ([`Inventory::settle`]).
    pub fn feed_inventory(&mut self, inventory: &Inventory, policy: &PolicyInForce) {
        let output = &mut self.state.output;
        for start in output.starts.drain(..) {
            inventory.record_packet_of(&start, |zone| policy.policy.zone(zone).name.clone());
        }
        for identified in output.identified.drain(..) {
            inventory.record_app(&identified);
        }
    }

    /// What the shard counted so far, with its flows held now.
    pub fn counters(&self) -> Counters {
        let mut counters = self.state.counters.clone();
        self.add_tracker_counts(&mut counters);
        counters
    }

    /// Copies what the shard counted so far into `into`, reusing its memory
    /// (the daemon publishes a worker's counters once per batch).
    pub fn copy_counters(&self, into: &mut Counters) {
        into.clone_from(&self.state.counters);
        self.add_tracker_counts(into);
    }

    fn add_tracker_counts(&self, counters: &mut Counters) {
        counters.flows = *self.tracker.counters();
        counters.active_flows = self.tracker.active_flows() as u64;
        counters.inspections_active = self.tracker.inspecting() as u64;
        counters.inspection_bytes = self.tracker.inspection_bytes() as u64;
    }

    /// Takes the evidence counted since the last take (with evidence on),
    /// in the ids of the policy in force.
    pub fn take_evidence(&mut self) -> EvidenceTable {
        self.state.evidence.take()
    }

    /// Flows under inspection now.
    pub fn inspecting(&self) -> usize {
        self.tracker.inspecting()
    }
}

/// The shard's judge, answering its tracker for one packet (or one sweep).
struct Judge<'a> {
    state: &'a mut JudgeState,
    policy: &'a PolicyInForce,
    /// The packet's frame (none in a sweep: no flow starts there).
    frame: Option<&'a Frame<'a>>,
}

impl Judge<'_> {
    /// Makes a violation: matched once against the exceptions (contract
    /// section 8), counted, handed out.
    fn emit(&mut self, mut violation: Violation) -> Option<u32> {
        let state = &mut *self.state;
        let mut expired = None;
        if !self.policy.exceptions.is_empty() {
            let matched = self.policy.exceptions.match_subject(&violation.subject());
            violation.exception = matched.excepted;
            expired = matched.expired;
        }
        state
            .counters
            .violations
            .count(self.policy, &violation, expired);
        let exception = violation.exception;
        state.output.violations.push(violation);
        exception
    }

    /// Places a flow in its evidence bucket at `ts_ns` (counting it when
    /// `count_flow`), with evidence on; [`NO_BUCKET`] otherwise.
    fn place(&mut self, class: &FlowClass, ts_ns: u64, count_flow: bool) -> u32 {
        if !self.state.options.evidence {
            return NO_BUCKET;
        }
        self.state
            .evidence
            .place(&self.policy.policy, class, ts_ns, count_flow)
    }

    /// Adds a packet's bytes to its flow's bucket.
    #[inline(always)]
    fn add_bytes(&mut self, view: &mut FlowView<'_, FlowVerdict>, packet: &Packet) {
        let record = &mut view.flow.verdict;
        if record.bucket == NO_BUCKET {
            return;
        }
        match self
            .state
            .evidence
            .add_bytes(record.bucket, packet.ts_ns, packet.payload_len)
        {
            Some(bucket) => record.bucket = bucket,
            None => self.place_again(view, packet),
        }
    }

    /// A flow whose bucket was handed over: placed again (its flow counted
    /// already), then its packet's bytes added.
    #[cold]
    #[inline(never)]
    fn place_again(&mut self, view: &mut FlowView<'_, FlowVerdict>, packet: &Packet) {
        let policy = &self.policy.policy;
        let judged = policy.judge_flow(view.key, view.flow.initiator_is_lo);
        let record = view.flow.verdict;
        let mut exception = None;
        if policy.alerts(record.verdict) && !self.policy.exceptions.is_empty() {
            let violation = Violation::of(
                view.key,
                &judged,
                record.verdict,
                (0, view.flow.first_ts, record.vlan),
                view.flow.id,
                None,
            );
            exception = self
                .policy
                .exceptions
                .match_subject(&violation.subject())
                .excepted;
        }
        let class = FlowClass {
            zones: judged.zones,
            verdict: record.verdict,
            service: (
                Transport::of_protocol(view.key.protocol),
                judged.responder.1,
            ),
            app: None,
            exception,
        };
        let bucket = self.place(&class, packet.ts_ns, false);
        view.flow.verdict.bucket = bucket;
        if let Some(bucket) =
            self.state
                .evidence
                .add_bytes(bucket, packet.ts_ns, packet.payload_len)
        {
            view.flow.verdict.bucket = bucket;
        }
    }

    /// The first packet of a flow's endpoint that had sent nothing: it is
    /// recorded for the inventory (once per flow, off the per-packet path),
    /// at this packet's position (what frames before it say of the device),
    /// with the flow's start time and VLAN (a device's times and VLANs are
    /// its flows').
    #[cold]
    #[inline(never)]
    fn answered(&mut self, view: &mut FlowView<'_, FlowVerdict>, packet: &Packet, index: u64) {
        view.flow.verdict.flags &= !SILENT;
        let (initiator, responder) = view.endpoints();
        let policy = &self.policy.policy;
        let ipv6 = view.key.ipv6;
        self.state.output.starts.push(FlowStart {
            position: index,
            ts_ns: view.flow.first_ts,
            first: false,
            ipv6,
            protocol: view.key.protocol,
            transport: packet.transport,
            initiator,
            responder,
            zones: (
                policy.zone_of(ipv6, initiator.0).zone,
                policy.zone_of(ipv6, responder.0).zone,
            ),
            vlan: view.flow.verdict.vlan,
            sender_initiates: packet.sender_is_lo == view.flow.initiator_is_lo,
            macs: self.frame.and_then(Frame::macs),
        });
    }

    /// A flow's first packet since a reload (contract section 2): judged
    /// again under the policy now in force.
    #[cold]
    #[inline(never)]
    fn judge_again(&mut self, view: FlowView<'_, FlowVerdict>, packet: &Packet, index: u64) {
        let (policy, generation) = (&self.policy.policy, self.policy.generation);
        let inspecting = view.flow.inspecting();
        let record = &mut view.flow.verdict;
        if record.app_judged() {
            // Judged with its application, which is not kept: the verdict
            // stands (see the README).
            record.generation = generation;
            return;
        }
        if inspecting {
            // Judged when its inspection ends, under the policy then.
            return;
        }
        let judged = policy.judge_flow(view.key, view.flow.initiator_is_lo);
        let transport = Transport::of_protocol(view.key.protocol);
        record.generation = generation;
        record.verdict = policy.judge_with_app(&judged, transport, None);
        let verdict = record.verdict;
        let mut exception = None;
        if !record.alerted() && policy.alerts(record.verdict) {
            record.set_alerted();
            let violation = Violation::of(
                view.key,
                &judged,
                record.verdict,
                (index, packet.ts_ns, packet.vlan),
                view.flow.id,
                None,
            );
            exception = self.emit(violation);
        }
        if view.flow.verdict.bucket != NO_BUCKET {
            // Its later bytes count under the new verdict; the flow itself
            // stays counted where it started.
            let class = FlowClass {
                zones: judged.zones,
                verdict,
                service: (transport, judged.responder.1),
                app: None,
                exception,
            };
            view.flow.verdict.bucket = self.place(&class, packet.ts_ns, false);
        }
    }
}

impl FlowObserver<FlowVerdict> for Judge<'_> {
    #[inline(always)]
    fn admits(&mut self, packet: &Packet) -> bool {
        if self.policy.policy.tracks(packet) {
            return true;
        }
        self.state.counters.link_local += 1;
        false
    }

    /// Always inlined into the tracker's flow start, its one caller: as a
    /// call, its register saves and the record it returns through memory
    /// cost about 40 instructions a flow (callgrind).
    #[inline(always)]
    fn started(
        &mut self,
        packet: &Packet,
        _frame: &[u8],
        index: u64,
        inspecting: bool,
    ) -> Started<FlowVerdict> {
        let policy = &self.policy.policy;
        let (sender_initiates, judged) = policy.judge_start(packet);
        let id = flow_id(index, self.state.flow_id_salt);
        let mut record = FlowVerdict {
            verdict: judged.verdict,
            generation: self.policy.generation,
            vlan: packet.vlan,
            flags: if self.state.options.record_starts {
                silent_if_sent_by(!packet.sender_is_lo)
            } else {
                0
            } | if self.state.options.evidence {
                COUNTS_BYTES
            } else {
                0
            },
            bucket: NO_BUCKET,
        };
        // An inspected flow is judged, and its event made, when the
        // inspection ends.
        let mut exception = None;
        if !inspecting {
            record.verdict = policy.judge_with_app(&judged, packet.transport, None);
            if policy.alerts(record.verdict) {
                record.set_alerted();
                let violation = Violation::of(
                    &packet.key,
                    &judged,
                    record.verdict,
                    (index, packet.ts_ns, packet.vlan),
                    id,
                    None,
                );
                exception = self.emit(violation);
            }
        }
        if self.state.options.evidence {
            // An inspected flow's first bytes count under its verdict by
            // ports; the flow counts when its inspection ends.
            let class = FlowClass {
                zones: judged.zones,
                verdict: record.verdict,
                service: (
                    Transport::of_protocol(packet.key.protocol),
                    judged.responder.1,
                ),
                app: None,
                exception,
            };
            let bucket = self.place(&class, packet.ts_ns, !inspecting);
            record.bucket = self
                .state
                .evidence
                .add_bytes(bucket, packet.ts_ns, packet.payload_len)
                .unwrap_or(bucket);
        }
        if let Some(ranges) = &self.state.tracked
            && ranges.tracks(packet.key.ipv6, judged.responder.0)
        {
            let port = match packet.transport {
                Transport::Tcp | Transport::Udp => Some(judged.responder.1),
                _ => None,
            };
            self.state.output.notices.push(StartNotice {
                position: index,
                ts_ns: packet.ts_ns,
                ipv6: packet.key.ipv6,
                protocol: packet.key.protocol,
                port,
                initiator: judged.initiator.0,
                responder: judged.responder.0,
                zones: judged.zones,
            });
        }
        if self.state.options.record_starts {
            self.state.output.starts.push(FlowStart {
                position: index,
                ts_ns: packet.ts_ns,
                first: true,
                ipv6: packet.key.ipv6,
                protocol: packet.key.protocol,
                transport: packet.transport,
                initiator: judged.initiator,
                responder: judged.responder,
                zones: judged.zones,
                vlan: packet.vlan,
                sender_initiates,
                macs: self.frame.and_then(Frame::macs),
            });
        }
        Started {
            id,
            sender_initiates,
            verdict: record,
        }
    }

    #[inline(always)]
    fn continued(&mut self, mut view: FlowView<'_, FlowVerdict>, packet: &Packet, index: u64) {
        // Most packets: no endpoint's first packet to record, no bytes to
        // count, no reload to judge again after; one test of the flags and
        // one of the generation say so.
        let record = &view.flow.verdict;
        if record.flags & (SILENT | COUNTS_BYTES) == 0
            && record.generation == self.policy.generation
        {
            return;
        }
        if view.flow.verdict.first_from(packet.sender_is_lo) {
            self.answered(&mut view, packet, index);
        }
        if view.flow.verdict.generation != self.policy.generation {
            self.judge_again(
                FlowView {
                    key: view.key,
                    flow: &mut *view.flow,
                },
                packet,
                index,
            );
        }
        self.add_bytes(&mut view, packet);
    }

    /// Always inlined: most inspections end without an application, for a
    /// flow already judged for good by its ports, and then this is a few
    /// compares (see [`Judge::settled_by_ports`]).
    #[inline(always)]
    fn inspected(
        &mut self,
        view: FlowView<'_, FlowVerdict>,
        app: Option<Box<Detection>>,
        index: u64,
    ) {
        if app.is_none() && self.settled_by_ports(&view.flow.verdict) {
            return;
        }
        self.judge_inspected(view, app, index);
    }
}

impl Judge<'_> {
    /// True when a flow judged by its ports at its first packet under the
    /// policy in force, which no application changes, has no event to make
    /// and no evidence to count: judging it again at the end of its
    /// inspection would cost as much as that first packet did, and change
    /// nothing.
    #[inline(always)]
    fn settled_by_ports(&self, record: &FlowVerdict) -> bool {
        let policy = &self.policy.policy;
        !policy.needs_app()
            && record.generation == self.policy.generation
            && (record.alerted() || !policy.alerts(record.verdict))
            && record.bucket == NO_BUCKET
    }

    /// The end of a flow's inspection: its application recorded for the
    /// inventory, the flow judged with it (unless settled by its ports),
    /// its event made and its evidence counted.
    #[inline(never)]
    fn judge_inspected(
        &mut self,
        view: FlowView<'_, FlowVerdict>,
        app: Option<Box<Detection>>,
        index: u64,
    ) {
        let policy = &self.policy.policy;
        if self.state.options.record_starts
            && let Some(found) = &app
        {
            let ((client, _), (server, _)) = view.endpoints();
            self.state.output.identified.push(AppIdentified {
                position: index,
                ipv6: view.key.ipv6,
                client,
                server,
                detection: (**found).clone(),
            });
        }
        if self.settled_by_ports(&view.flow.verdict) {
            return;
        }
        // Judged under the policy in force now (again by ports, when a
        // reload came in between), then with its application.
        let judged = policy.judge_flow(view.key, view.flow.initiator_is_lo);
        let transport = Transport::of_protocol(view.key.protocol);
        let record = &mut view.flow.verdict;
        record.generation = self.policy.generation;
        record.verdict = policy.judge_with_app(&judged, transport, app.as_deref());
        record.set_app_judged(policy.needs_app() && app.is_some());
        let verdict = record.verdict;
        let app_kind = app.as_deref().map(Detection::app);
        let mut exception = None;
        if policy.alerts(record.verdict) && !record.alerted() {
            record.set_alerted();
            let violation = Violation::of(
                view.key,
                &judged,
                record.verdict,
                (index, view.flow.first_ts, record.vlan),
                view.flow.id,
                app,
            );
            exception = self.emit(violation);
        }
        if view.flow.verdict.bucket != NO_BUCKET {
            // Counted now, in the hour it started, with its final verdict.
            let class = FlowClass {
                zones: judged.zones,
                verdict,
                service: (transport, judged.responder.1),
                app: app_kind,
                exception,
            };
            let first_ts = view.flow.first_ts;
            let bucket = self.place(&class, first_ts, true);
            view.flow.verdict.bucket = bucket;
        }
    }
}

// The bucket index fits beside the verdict without growing a flow's entry.
const _: () = assert!(std::mem::size_of::<FlowVerdict>() == 20);
