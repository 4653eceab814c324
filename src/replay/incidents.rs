//! The replay's incident fold: after each batch is tracked, the shards'
//! violations and flow starts go to [`PARTITIONS`] folds by initiator, which
//! run in parallel on their inputs in capture order; their lines (events
//! with their incident ids, and incident records) are merged by sort key.
//! The partitions are fixed in number, so the output is the same for any
//! number of threads and any batch size.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;

use rayon::prelude::*;

use crate::capture::Frame;
use crate::classify::PolicyInForce;
use crate::event::{HexId, IncidentRecord, Violation, ViolationEvent};
use crate::incident::{
    Devices, Emit, Fold, FoldCounters, IncidentSettings, PARTITIONS, SortKey, Timeline,
    partition_of,
};
use crate::pipeline::{ShardOutput, StartNotice};

/// One partition: its fold, its inputs of the batch, and its lines.
#[derive(Debug)]
struct Partition {
    fold: Fold,
    violations: Vec<Violation>,
    notices: Vec<StartNotice>,
    lines: Lines,
}

/// Lines written by a partition, with their sort keys.
#[derive(Debug, Default)]
struct Lines {
    json: Vec<u8>,
    /// (key, start, end) into `json`.
    keys: Vec<(SortKey, usize, usize)>,
}

/// [`Emit`] into a partition's lines.
struct Writer<'a> {
    lines: &'a mut Lines,
    policy: &'a PolicyInForce,
}

impl Emit for Writer<'_> {
    fn violation(&mut self, key: SortKey, violation: &Violation, incident_id: Option<u64>) {
        let start = self.lines.json.len();
        let mut event = ViolationEvent::of(violation, self.policy);
        event.incident_id = incident_id.map(HexId);
        event.write_json_line(&mut self.lines.json);
        self.lines.keys.push((key, start, self.lines.json.len()));
    }

    fn record(&mut self, key: SortKey, record: IncidentRecord) {
        let start = self.lines.json.len();
        record.write_json_line(&mut self.lines.json);
        self.lines.keys.push((key, start, self.lines.json.len()));
    }
}

/// The fold of a replay.
#[derive(Debug)]
pub(super) struct Folding {
    partitions: Vec<Partition>,
    timeline: Timeline,
    last_ts: u64,
    /// Per frame of the batch: the shard whose flow started there, if any
    /// (reused from batch to batch).
    starts_at: Vec<u8>,
}

/// No flow started at this frame (in [`Folding::starts_at`]).
const NO_START: u8 = u8::MAX;

impl Folding {
    pub(super) fn new(settings: &IncidentSettings, salt: u64) -> Folding {
        Folding {
            partitions: (0..PARTITIONS)
                .map(|_| Partition {
                    fold: Fold::new(settings, salt),
                    violations: Vec::new(),
                    notices: Vec::new(),
                    lines: Lines::default(),
                })
                .collect(),
            timeline: Timeline::default(),
            last_ts: 0,
            starts_at: Vec::new(),
        }
    }

    /// Folds a tracked batch: takes the shards' violations and flow starts.
    pub(super) fn batch<'s>(
        &mut self,
        base_index: u64,
        frames: &[Frame<'_>],
        shards: impl Iterator<Item = &'s mut ShardOutput>,
        policy: &PolicyInForce,
        devices: &(dyn Devices + Sync),
    ) {
        self.timeline
            .set(base_index, frames.iter().map(|f| f.ts_ns));
        if let Some(last) = self.timeline.last_ts() {
            self.last_ts = last;
        }
        self.route(base_index, frames.len(), shards);
        let timeline = &self.timeline;
        self.partitions.par_iter_mut().for_each(|partition| {
            partition.fold.batch(
                timeline,
                &partition.violations,
                &partition.notices,
                policy,
                devices,
                &mut Writer {
                    lines: &mut partition.lines,
                    policy,
                },
            );
            partition.violations.clear();
            partition.notices.clear();
            partition.lines.keys.sort_by_key(|&(key, _, _)| key);
        });
    }

    /// Hands the shards' inputs to the partitions of their initiators, in
    /// capture order.
    fn route<'s>(
        &mut self,
        base_index: u64,
        frames: usize,
        shards: impl Iterator<Item = &'s mut ShardOutput>,
    ) {
        let mut outputs: Vec<&mut ShardOutput> = shards.collect();
        for output in &mut outputs {
            for violation in output.violations.drain(..) {
                let p = partition_of(violation.ipv6, violation.src_addr);
                self.partitions[p].violations.push(violation);
            }
        }
        if !self.route_starts_by_position(base_index, frames, &mut outputs) {
            for output in &mut outputs {
                for notice in output.notices.drain(..) {
                    let p = partition_of(notice.ipv6, notice.initiator);
                    self.partitions[p].notices.push(notice);
                }
            }
            for partition in &mut self.partitions {
                partition.notices.sort_unstable_by_key(|n| n.position);
            }
        }
        for partition in &mut self.partitions {
            partition
                .violations
                .sort_unstable_by_key(|v| SortKey::of_violation(v, 0));
        }
    }

    /// Hands out the flow starts in capture order without sorting them:
    /// each shard's are in capture order, and at most one flow starts at a
    /// frame, so marking each frame with its shard and walking the frames
    /// merges them (sorting them per partition cost 190 instructions a flow,
    /// 2026-12-07). False, with nothing taken, when the starts are not so
    /// (then they are sorted).
    fn route_starts_by_position(
        &mut self,
        base_index: u64,
        frames: usize,
        outputs: &mut [&mut ShardOutput],
    ) -> bool {
        if outputs.len() >= usize::from(NO_START) {
            return false;
        }
        self.starts_at.clear();
        self.starts_at.resize(frames, NO_START);
        for (s, output) in outputs.iter().enumerate() {
            let mut previous = None;
            for notice in &output.notices {
                let at = notice
                    .position
                    .checked_sub(base_index)
                    .and_then(|i| usize::try_from(i).ok())
                    .filter(|&i| i < frames);
                let in_order = previous.is_none_or(|p| p < notice.position);
                previous = Some(notice.position);
                match at {
                    Some(i) if in_order && self.starts_at[i] == NO_START => {
                        self.starts_at[i] = s as u8;
                    }
                    _ => return false,
                }
            }
        }
        let mut cursors = vec![0usize; outputs.len()];
        for &s in &self.starts_at {
            if s == NO_START {
                continue;
            }
            let s = usize::from(s);
            let notice = outputs[s].notices[cursors[s]];
            cursors[s] += 1;
            let p = partition_of(notice.ipv6, notice.initiator);
            self.partitions[p].notices.push(notice);
        }
        for output in outputs.iter_mut() {
            output.notices.clear();
        }
        true
    }

    /// The end of the capture: `released` (events of flows still waiting
    /// for their application, in the order the replay writes them), then the
    /// closes of every incident still open.
    pub(super) fn finish(
        &mut self,
        released: Vec<Violation>,
        policy: &PolicyInForce,
        devices: &(dyn Devices + Sync),
    ) {
        let mut by_partition: Vec<Vec<Violation>> = vec![Vec::new(); PARTITIONS];
        for violation in released {
            by_partition[partition_of(violation.ipv6, violation.src_addr)].push(violation);
        }
        let last_ts = self.last_ts;
        self.partitions
            .par_iter_mut()
            .zip(by_partition)
            .for_each(|(partition, released)| {
                partition.fold.finish(
                    &released,
                    last_ts,
                    policy,
                    devices,
                    &mut Writer {
                        lines: &mut partition.lines,
                        policy,
                    },
                );
                partition.lines.keys.sort_by_key(|&(key, _, _)| key);
            });
    }

    /// Writes the partitions' lines merged by sort key, and empties them.
    pub(super) fn write<W: Write>(&mut self, out: &mut W) -> std::io::Result<()> {
        // Each partition's next line in a heap by sort key: a line costs a
        // few comparisons rather than one per partition.
        let mut cursors = vec![0usize; self.partitions.len()];
        let mut next: BinaryHeap<Reverse<(SortKey, usize)>> = self
            .partitions
            .iter()
            .enumerate()
            .filter_map(|(p, part)| {
                part.lines
                    .keys
                    .first()
                    .map(|&(key, _, _)| Reverse((key, p)))
            })
            .collect();
        while let Some(Reverse((_, p))) = next.pop() {
            let lines = &self.partitions[p].lines;
            let (_, start, end) = lines.keys[cursors[p]];
            out.write_all(&lines.json[start..end])?;
            cursors[p] += 1;
            if let Some(&(key, _, _)) = lines.keys.get(cursors[p]) {
                next.push(Reverse((key, p)));
            }
        }
        for partition in &mut self.partitions {
            partition.lines.json.clear();
            partition.lines.keys.clear();
        }
        Ok(())
    }

    /// What the folds counted.
    pub(super) fn counters(&self) -> FoldCounters {
        let mut counters = FoldCounters::default();
        for partition in &self.partitions {
            counters.add(&partition.fold.counters());
        }
        counters
    }
}
