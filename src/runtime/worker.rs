//! A capture worker: frames from its source through decode, flow tracking
//! and judging, events out to the sinks.
//!
//! Each worker owns its tracker (shared nothing). Per packet it takes no lock
//! and makes no system call; its counters are plain fields, published to
//! atomics once per batch for the metrics endpoint to sum at scrape time.
//! The policy is loaded once per batch. Violations (rare: one per violating
//! flow) are turned into owned events and offered to every sink, whose
//! bounded queues never block.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::capture::Frame;
use crate::event::{Violation, ViolationEvent};
use crate::flow::{FlowConfig, FlowCounters, FlowStart, Judge, Packet, Tracker};
use crate::inventory::{Inventory, Sighting};
use crate::sink::{SinkEvent, SinkHandle};
use crate::stats::PacketCounters;
use crate::wire::{Headers, Outcome, Problem};

use super::policy::LivePolicy;

/// Labels of `segwatch_violations_total`: rule, severity, source zone,
/// destination zone.
pub type ViolationLabels = (String, String, String, String);

/// A worker's counters as the metrics endpoint reads them.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Frames read.
    pub packets: AtomicU64,
    /// Their wire bytes.
    pub bytes: AtomicU64,
    /// Non-IP frames.
    pub not_ip: AtomicU64,
    /// Later fragments.
    pub later_fragments: AtomicU64,
    /// ICMP other than echo.
    pub icmp_not_echo: AtomicU64,
    /// Unclaimed link-local packets.
    pub link_local: AtomicU64,
    /// Decode problems by [`Problem::index`].
    pub problems: [AtomicU64; Problem::ALL.len()],
    /// Flows started.
    pub flows_started: AtomicU64,
    /// Flows expired.
    pub flows_expired: AtomicU64,
    /// Flows evicted from a full table.
    pub flows_evicted: AtomicU64,
    /// Flows held now.
    pub flows_active: AtomicU64,
    /// Violations by label set. Locked by the worker only at the end of a
    /// batch that had violations, and by the scrape: never per packet.
    pub violations: Mutex<HashMap<ViolationLabels, u64>>,
}

impl WorkerStats {
    fn publish(&self, packets: &PacketCounters, flows: &FlowCounters, active: usize) {
        // Each counter has one writer (this worker): plain stores suffice.
        let set = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        set(&self.packets, packets.packets);
        set(&self.bytes, packets.bytes);
        set(&self.not_ip, packets.not_ip);
        set(&self.later_fragments, packets.later_fragments);
        set(&self.icmp_not_echo, packets.icmp_not_echo);
        for (atomic, value) in self.problems.iter().zip(packets.problems) {
            set(atomic, value);
        }
        set(&self.link_local, flows.link_local);
        set(&self.flows_started, flows.created);
        set(&self.flows_expired, flows.expired);
        set(&self.flows_evicted, flows.evicted);
        set(&self.flows_active, active as u64);
    }
}

/// The per-worker pipeline, driven by a source one batch at a time.
#[derive(Debug)]
pub struct Pipeline {
    tracker: Tracker,
    counters: PacketCounters,
    headers: Headers,
    violations: Vec<Violation>,
    stats: Arc<WorkerStats>,
    sinks: Arc<Vec<SinkHandle>>,
    /// Next packet's number; worker `w` of `n` numbers its packets
    /// `w, w + n, w + 2n, ...`, so flow ids of different workers never meet.
    next_index: u64,
    index_step: u64,
    flow_id_salt: u64,
    last_ts: u64,
    /// The shared device inventory, fed once per batch.
    inventory: Option<Arc<Inventory>>,
    /// This batch's flow starts with their frames' MAC addresses.
    starts: Vec<(FlowStart, Option<crate::capture::MacPair>)>,
}

impl Pipeline {
    /// A pipeline for worker `worker` of `workers`, holding at most
    /// `capacity` flows.
    pub fn new(
        worker: usize,
        workers: usize,
        flows: &FlowConfig,
        capacity: usize,
        stats: Arc<WorkerStats>,
        sinks: Arc<Vec<SinkHandle>>,
        flow_id_salt: u64,
    ) -> Pipeline {
        Pipeline {
            tracker: Tracker::new(flows, capacity),
            counters: PacketCounters::default(),
            headers: Headers::default(),
            violations: Vec::new(),
            stats,
            sinks,
            next_index: worker as u64,
            index_step: workers.max(1) as u64,
            flow_id_salt,
            last_ts: 0,
            inventory: None,
            starts: Vec::new(),
        }
    }

    /// Detects each new flow's application; its event waits for it.
    pub fn with_detection(mut self, detect: bool) -> Pipeline {
        if detect {
            self.tracker.enable_detection();
        }
        self
    }

    /// Releases the events still waiting for their application (the
    /// capture stops).
    pub fn finish(&mut self, live: &LivePolicy) {
        self.tracker
            .finish_judged(Some((&live.policy, live.generation)), &mut self.violations);
        self.end_batch(live);
    }

    /// Feeds `inventory` with every flow start (at the end of each batch:
    /// the shared map is touched per batch of new flows, never per packet).
    pub fn with_inventory(mut self, inventory: Option<Arc<Inventory>>) -> Pipeline {
        if inventory.is_some() {
            self.tracker.record_starts();
        }
        self.inventory = inventory;
        self
    }

    /// Takes one frame, judged under `live`.
    #[inline]
    pub fn frame(&mut self, frame: &Frame<'_>, live: &LivePolicy) {
        let outcome = frame.decode(&mut self.headers);
        self.counters.count(frame.orig_len, outcome);
        self.last_ts = self.last_ts.max(frame.ts_ns);
        if outcome != Outcome::Judge {
            return;
        }
        let packet = Packet::new(&self.headers, frame.ts_ns);
        let judge = Judge {
            policy: &live.policy,
            generation: live.generation,
            flow_id_salt: self.flow_id_salt,
        };
        let index = self.next_index;
        self.next_index += self.index_step;
        self.tracker
            .observe_frame(&packet, frame.data, index, judge, &mut self.violations);
        if self.inventory.is_some() {
            for start in self.tracker.drain_starts() {
                self.starts.push((start, frame.macs()));
            }
        }
    }

    /// Moves capture time on to `now_ns` when no packet does (an idle live
    /// interface), so that flows still expire.
    pub fn advance_clock(&mut self, now_ns: u64) {
        self.last_ts = self.last_ts.max(now_ns);
    }

    /// Turns the violations pushed so far into events for the sinks and
    /// counts them.
    fn publish_violations(&mut self, live: &LivePolicy) {
        if !self.violations.is_empty() {
            let mut labels = Vec::with_capacity(self.violations.len());
            for violation in self.violations.drain(..) {
                let event = ViolationEvent::new(&violation, &live.policy).into_owned();
                labels.push((
                    event.rule.to_string(),
                    event.severity.to_string(),
                    event.src_zone.to_string(),
                    event.dest_zone.to_string(),
                ));
                let event = Arc::new(SinkEvent {
                    event,
                    ts_ns: violation.ts_ns,
                });
                for sink in self.sinks.iter() {
                    sink.offer(&event);
                }
            }
            if let Ok(mut counts) = self.stats.violations.lock() {
                for key in labels {
                    *counts.entry(key).or_insert(0) += 1;
                }
            }
        }
    }

    /// Ends a batch: events out, idle flows swept, counters published.
    pub fn end_batch(&mut self, live: &LivePolicy) {
        self.publish_violations(live);
        if let Some(inventory) = &self.inventory {
            for (start, macs) in self.starts.drain(..) {
                let sighting =
                    Sighting::of(&start, macs, |zone| live.policy.zone(zone).name.clone());
                inventory.record(&sighting);
            }
            for identified in self.tracker.drain_identified() {
                inventory.record_app(&identified);
            }
        }
        let index = self.next_index;
        self.tracker.expire_at(
            self.last_ts,
            index.saturating_sub(self.index_step),
            Some((&live.policy, live.generation)),
            &mut self.violations,
        );
        if !self.violations.is_empty() {
            // Released by the sweep (their flows ended, or waited long
            // enough for their application): out now.
            self.publish_violations(live);
        }
        self.stats.publish(
            &self.counters,
            self.tracker.counters(),
            self.tracker.active_flows(),
        );
    }
}
