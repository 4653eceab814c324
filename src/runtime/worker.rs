//! A capture worker: frames from its source through its pipeline shard,
//! events out to the sinks, flow starts into the device inventory.
//!
//! Each worker owns its shard (shared nothing). Per packet it takes no lock
//! and makes no system call. Once per batch it hands its violations to the
//! sinks (whose bounded queues never block), feeds the inventory, sweeps idle
//! flows (on a wire the packet that would end them may never come), and
//! publishes its counters for the metrics endpoint to sum at scrape time.

use std::sync::Arc;

use crate::capture::Frame;
use crate::event::ViolationEvent;
use crate::flow::FlowConfig;
use crate::inventory::Inventory;
use crate::pipeline::{Counters, PublishedCounters, Shard, ShardOptions, TrackedRanges};
use crate::sink::{SinkEvent, SinkHandle};
use crate::wire::Decapsulation;

use crate::evidence::HOUR_NS;

use super::evidence::EvidenceQueue;
use super::incidents::IncidentQueue;
use super::policy::LivePolicy;

/// What every worker's pipeline is built from, shared by all of them.
#[derive(Clone, Debug)]
pub struct PipelineSetup {
    /// Flow timeouts and bounds.
    pub flows: FlowConfig,
    /// Where events go (without incidents).
    pub sinks: Arc<Vec<SinkHandle>>,
    /// Salt of flow and incident ids.
    pub flow_id_salt: u64,
    /// The shared device inventory, fed once per batch.
    pub inventory: Arc<Inventory>,
    /// Detect each new flow's application; its event waits for it.
    pub detect_apps: bool,
    /// The tunnels opened besides ERSPAN.
    pub decapsulation: Arc<Decapsulation>,
    /// With a state directory: the evidence writer's queue.
    pub evidence: Option<EvidenceQueue>,
    /// With incidents on: the incident thread's queue.
    pub incidents: Option<IncidentQueue>,
    /// With incidents on: the responders whose new flows it counts.
    pub tracked: Option<Arc<TrackedRanges>>,
}

/// The per-worker pipeline, driven by a source one batch at a time.
#[derive(Debug)]
pub struct Pipeline {
    shard: Shard,
    stats: Arc<PublishedCounters>,
    /// The counters being published, kept to reuse their memory.
    published: Counters,
    sinks: Arc<Vec<SinkHandle>>,
    /// Next packet's number; worker `w` of `n` numbers its packets
    /// `w, w + n, w + 2n, ...`, so flow ids of different workers never meet.
    next_index: u64,
    index_step: u64,
    last_ts: u64,
    /// The shared device inventory, fed once per batch.
    inventory: Arc<Inventory>,
    /// With incidents on: the incident thread's queue.
    incidents: Option<IncidentQueue>,
    /// With a state directory: the evidence writer's queue, and the capture
    /// time of the last hand-over.
    evidence: Option<(EvidenceQueue, u64)>,
}

impl Pipeline {
    /// The pipeline of worker `worker` of `workers`, holding at most
    /// `capacity` flows. It feeds the inventory with every flow start (at
    /// the end of each batch: the shared map is touched per batch of new
    /// flows, never per packet); with evidence on, it counts flows and bytes
    /// by hour and hands them to the writer when the hour of capture time
    /// changes and at stop; with incidents on, violations and new flows to
    /// tracked responders go to the incident thread, which makes their
    /// events.
    pub fn new(
        worker: usize,
        workers: usize,
        capacity: usize,
        stats: Arc<PublishedCounters>,
        setup: &PipelineSetup,
    ) -> Pipeline {
        let options = ShardOptions {
            detect_apps: setup.detect_apps,
            record_starts: true,
            evidence: setup.evidence.is_some(),
        };
        let mut shard = Shard::new(&setup.flows, capacity, options);
        shard.set_flow_id_salt(setup.flow_id_salt);
        shard.set_decapsulation(setup.decapsulation.clone());
        shard.set_tracked_ranges(setup.tracked.clone());
        Pipeline {
            shard,
            stats,
            published: Counters::default(),
            sinks: setup.sinks.clone(),
            next_index: worker as u64,
            index_step: workers.max(1) as u64,
            last_ts: 0,
            inventory: setup.inventory.clone(),
            incidents: setup.incidents.clone(),
            evidence: setup.evidence.clone().map(|q| (q, 0)),
        }
    }

    /// Hands the evidence counted so far to the writer: `always` at stop,
    /// otherwise once enough capture time has passed.
    fn hand_evidence(&mut self, live: &Arc<LivePolicy>, always: bool) {
        let Some((queue, handed)) = &mut self.evidence else {
            return;
        };
        // Once per hour of capture time: the writer writes an hour once it
        // sees the next.
        if always || self.last_ts / HOUR_NS != *handed / HOUR_NS {
            *handed = self.last_ts;
            let table = self.shard.take_evidence();
            if !table.is_empty() {
                queue.offer(table, live);
            }
        }
    }

    /// Takes one frame, judged under `live`.
    #[inline]
    pub fn frame(&mut self, frame: &Frame<'_>, live: &LivePolicy) {
        self.last_ts = self.last_ts.max(frame.ts_ns);
        let index = self.next_index;
        self.next_index += self.index_step;
        self.shard.frame(frame, index, live);
    }

    /// Moves capture time on to `now_ns` when no packet does (an idle live
    /// interface), so that flows still expire.
    pub fn advance_clock(&mut self, now_ns: u64) {
        self.last_ts = self.last_ts.max(now_ns);
    }

    /// Releases the events still waiting for their application (the
    /// capture stops).
    pub fn finish(&mut self, live: &Arc<LivePolicy>) {
        self.shard.finish(live);
        self.end_batch(live);
        self.hand_evidence(live, true);
    }

    /// Ends a batch: events out, inventory fed, idle flows swept, counters
    /// published.
    pub fn end_batch(&mut self, live: &Arc<LivePolicy>) {
        self.publish_violations(live);
        self.shard.feed_inventory(&self.inventory, live);
        self.inventory.settle();
        let index = self.next_index.saturating_sub(self.index_step);
        self.shard.expire(self.last_ts, index, live);
        // Released by the sweep (their flows ended, or waited long enough
        // for their application): out now.
        self.publish_violations(live);
        self.shard.copy_counters(&mut self.published);
        self.stats.publish(&self.published);
        self.hand_evidence(live, false);
    }

    /// Turns the violations made so far into events for the sinks (through
    /// the incident thread, with incidents on).
    fn publish_violations(&mut self, live: &Arc<LivePolicy>) {
        let output = self.shard.output();
        if let Some(queue) = &self.incidents
            && queue.offer(&mut output.violations, &mut output.notices, live)
        {
            return;
        }
        output.notices.clear();
        for violation in output.violations.drain(..) {
            let event = ViolationEvent::of(&violation, live).into_owned();
            let event = Arc::new(SinkEvent::violation(event, violation.ts_ns));
            for sink in self.sinks.iter() {
                sink.offer(&event);
            }
        }
    }
}
