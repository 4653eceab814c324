//! One shard of the traffic: its flow tracker, the judge it answers, and
//! what it produced since its driver last took it.

use std::sync::Arc;

use crate::app::Detection;
use crate::capture::Frame;
use crate::classify::{PolicyInForce, Verdict};
use crate::event::Violation;
use crate::flow::{FlowConfig, FlowObserver, FlowView, Packet, Started, Tracker, flow_id};
use crate::inventory::{AppIdentified, FlowStart, Inventory};
use crate::wire::{Decapsulation, Headers, Outcome, Transport};

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
}

/// The judge's record of a flow, kept by the tracker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowVerdict {
    /// The latest verdict.
    verdict: Verdict,
    /// Generation of the policy that gave `verdict`.
    generation: u32,
    /// True once the flow's one violation event has been made.
    alerted: bool,
    /// True once its verdict took its application into account: a reload
    /// keeps that verdict (the application is not kept to judge again).
    app_judged: bool,
    /// VLAN of its first packet (an event that waited for the application
    /// carries it).
    vlan: u16,
    /// Which endpoint has sent nothing yet, when recording flow starts for
    /// the inventory ([`silent_if_sent_by`]); 0 once both have (or when not
    /// recording). Its first packet is the other record of the flow.
    silent: u8,
}

/// [`FlowVerdict::silent`] of an endpoint that sends a packet: `lo` is 1,
/// `hi` is 2 (never 0, so that the per-packet test is one comparison).
#[inline(always)]
fn silent_if_sent_by(sender_is_lo: bool) -> u8 {
    if sender_is_lo { 1 } else { 2 }
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
        let outcome = if self.decapsulation.is_none() {
            frame.decode(&mut self.headers)
        } else {
            frame.decode_with(&self.decapsulation, &mut self.headers)
        };
        let packets = &mut self.state.counters.packets;
        packets.count(frame.orig_len, outcome);
        packets.count_tunnel(&self.headers.tunnel);
        if outcome != Outcome::Judge {
            return;
        }
        let packet = Packet::new(&self.headers, frame.ts_ns);
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
        let data = match frame {
            Some(frame) if self.state.options.detect_apps => frame.data,
            _ => &[],
        };
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
    fn emit(&mut self, mut violation: Violation) {
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
        state.output.violations.push(violation);
    }

    /// The first packet of a flow's endpoint that had sent nothing: it is
    /// recorded for the inventory (once per flow, off the per-packet path),
    /// at this packet's position (what frames before it say of the device),
    /// with the flow's start time and VLAN (a device's times and VLANs are
    /// its flows').
    #[cold]
    #[inline(never)]
    fn answered(&mut self, view: &mut FlowView<'_, FlowVerdict>, packet: &Packet, index: u64) {
        view.flow.verdict.silent = 0;
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
        if record.app_judged {
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
        if !record.alerted && policy.alerts(record.verdict) {
            record.alerted = true;
            let violation = Violation::of(
                view.key,
                &judged,
                record.verdict,
                (index, packet.ts_ns, packet.vlan),
                view.flow.id,
                None,
            );
            self.emit(violation);
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
            alerted: false,
            app_judged: false,
            vlan: packet.vlan,
            silent: if self.state.options.record_starts {
                silent_if_sent_by(!packet.sender_is_lo)
            } else {
                0
            },
        };
        // An inspected flow is judged, and its event made, when the
        // inspection ends.
        if !inspecting {
            record.verdict = policy.judge_with_app(&judged, packet.transport, None);
            if policy.alerts(record.verdict) {
                record.alerted = true;
                let violation = Violation::of(
                    &packet.key,
                    &judged,
                    record.verdict,
                    (index, packet.ts_ns, packet.vlan),
                    id,
                    None,
                );
                self.emit(violation);
            }
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
        if view.flow.verdict.silent == silent_if_sent_by(packet.sender_is_lo) {
            self.answered(&mut view, packet, index);
        }
        if view.flow.verdict.generation != self.policy.generation {
            self.judge_again(view, packet, index);
        }
    }

    fn inspected(
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
        let record = view.flow.verdict;
        if !policy.needs_app()
            && record.generation == self.policy.generation
            && (record.alerted || !policy.alerts(record.verdict))
        {
            // Judged by its ports at its first packet under this same
            // policy, which no application changes, and no event to make:
            // judging it again would cost as much as that first packet did.
            return;
        }
        // Judged under the policy in force now (again by ports, when a
        // reload came in between), then with its application.
        let judged = policy.judge_flow(view.key, view.flow.initiator_is_lo);
        let transport = Transport::of_protocol(view.key.protocol);
        let record = &mut view.flow.verdict;
        record.generation = self.policy.generation;
        record.verdict = policy.judge_with_app(&judged, transport, app.as_deref());
        record.app_judged = policy.needs_app() && app.is_some();
        if policy.alerts(record.verdict) && !record.alerted {
            record.alerted = true;
            let violation = Violation::of(
                view.key,
                &judged,
                record.verdict,
                (index, view.flow.first_ts, record.vlan),
                view.flow.id,
                app,
            );
            self.emit(violation);
        }
    }
}
