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

/// The per-worker pipeline, driven by a source one batch at a time.
#[derive(Debug)]
pub struct Pipeline {
    shard: Shard,
    flows: FlowConfig,
    capacity: usize,
    options: ShardOptions,
    stats: Arc<PublishedCounters>,
    /// The counters being published, kept to reuse their memory.
    published: Counters,
    sinks: Arc<Vec<SinkHandle>>,
    /// Next packet's number; worker `w` of `n` numbers its packets
    /// `w, w + n, w + 2n, ...`, so flow ids of different workers never meet.
    next_index: u64,
    index_step: u64,
    flow_id_salt: u64,
    last_ts: u64,
    /// The shared device inventory, fed once per batch.
    inventory: Option<Arc<Inventory>>,
    /// The tunnels opened besides ERSPAN.
    decapsulation: Arc<Decapsulation>,
    /// With incidents on: the incident thread's queue.
    incidents: Option<IncidentQueue>,
    /// With a state directory: the evidence writer's queue, and the capture
    /// time of the last hand-over.
    evidence: Option<(EvidenceQueue, u64)>,
}

impl Pipeline {
    /// A pipeline for worker `worker` of `workers`, holding at most
    /// `capacity` flows.
    pub fn new(
        worker: usize,
        workers: usize,
        flows: &FlowConfig,
        capacity: usize,
        stats: Arc<PublishedCounters>,
        sinks: Arc<Vec<SinkHandle>>,
        flow_id_salt: u64,
    ) -> Pipeline {
        let options = ShardOptions::default();
        let mut shard = Shard::new(flows, capacity, options);
        shard.set_flow_id_salt(flow_id_salt);
        Pipeline {
            shard,
            flows: *flows,
            capacity,
            options,
            stats,
            published: Counters::default(),
            sinks,
            next_index: worker as u64,
            index_step: workers.max(1) as u64,
            flow_id_salt,
            last_ts: 0,
            inventory: None,
            decapsulation: Arc::new(Decapsulation::NONE),
            incidents: None,
            evidence: None,
        }
    }

    /// The shard for new options (before any frame).
    fn reshaped(mut self, options: ShardOptions) -> Pipeline {
        self.options = options;
        self.shard = Shard::new(&self.flows, self.capacity, options);
        self.shard.set_flow_id_salt(self.flow_id_salt);
        self.shard.set_decapsulation(self.decapsulation.clone());
        self
    }

    /// Opens these tunnels besides ERSPAN.
    pub fn with_decapsulation(mut self, decapsulation: Arc<Decapsulation>) -> Pipeline {
        self.shard.set_decapsulation(decapsulation.clone());
        self.decapsulation = decapsulation;
        self
    }

    /// Detects each new flow's application; its event waits for it.
    pub fn with_detection(self, detect: bool) -> Pipeline {
        let options = ShardOptions {
            detect_apps: detect,
            ..self.options
        };
        self.reshaped(options)
    }

    /// Feeds `inventory` with every flow start (at the end of each batch:
    /// the shared map is touched per batch of new flows, never per packet).
    pub fn with_inventory(mut self, inventory: Option<Arc<Inventory>>) -> Pipeline {
        let options = ShardOptions {
            record_starts: inventory.is_some(),
            ..self.options
        };
        self.inventory = inventory;
        self.reshaped(options)
    }

    /// Counts evidence (flows and bytes by hour and kind of flow) and hands
    /// it to the evidence writer when the hour of capture time changes and
    /// at stop. Before [`Pipeline::with_incidents`] (it makes a new shard).
    pub fn with_evidence(mut self, queue: Option<EvidenceQueue>) -> Pipeline {
        self.options.evidence = queue.is_some();
        self.shard.set_evidence(queue.is_some());
        self.evidence = queue.map(|q| (q, 0));
        self
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

    /// Hands violations and new flows to tracked responders to the
    /// incident thread (incidents on), which makes their events.
    pub fn with_incidents(
        mut self,
        queue: Option<IncidentQueue>,
        tracked: Option<Arc<TrackedRanges>>,
    ) -> Pipeline {
        self.shard.set_tracked_ranges(tracked);
        self.incidents = queue;
        self
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
        if let Some(inventory) = &self.inventory {
            self.shard.feed_inventory(inventory, live);
            inventory.settle();
        }
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
