//! Offline replay: capture files through decode, flow tracking and judging,
//! on every core, with output identical to a single-threaded run.
//!
//! Frames are handled in batches. For each batch:
//!
//! 1. Decoding is data-parallel: the batch is cut into chunks, and each chunk
//!    is decoded, keyed and hashed on its own, noting for each packet the
//!    flow shard it belongs to.
//! 2. Flow tracking is flow-parallel: the traffic is split into [`SHARDS`]
//!    shards by flow-key hash, each with its own tracker and flow table, and
//!    each worker (a group of shards) owns a fixed set of them. A worker visits its packets in
//!    capture order, so every flow sees its packets in order.
//! 3. Each worker's events are already in capture order; merging the workers'
//!    lists by packet position gives the capture order of a single thread.
//!
//! The number of shards is fixed, not tied to the number of threads: a flow
//! lands in the same shard, with the same flow-table bound, however many
//! threads run, so eviction under a full table (and with it every event) is
//! the same for any `--threads`. The next batch is read while this one is
//! tracked (decoding wants every thread; tracking is split into two shard
//! groups per thread, so the reading thread joins it when done).

mod observe;

pub use observe::{Observation, ObserveError, ObservedFlow, observe_every_flow};

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::capture::{CaptureError, CaptureFile, Frame, FrameReader, Truncation};
use crate::classify::CompiledPolicy;
use crate::event::{Violation, write_json_line};
use crate::flow::{FlowConfig, FlowHasher, Judge, Packet, Tracker};
use crate::stats::{PacketCounters, RunStats, ViolationCounters};
use crate::wire::{Headers, Outcome};

/// Number of flow shards, whatever the number of threads. A power of two.
pub const SHARDS: usize = 16;

/// How many packets ahead a worker prefetches flow-table buckets: far enough
/// for a memory access to land, near enough to stay in cache.
const PREFETCH_AHEAD: usize = 8;

/// How a replay runs.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// Worker threads (1 to [`SHARDS`]); the output does not depend on it.
    pub threads: usize,
    /// Flow timeouts and bound.
    pub flows: FlowConfig,
    /// Frames per batch. Larger batches spread the per-batch hand-off over
    /// more packets; smaller ones keep a batch in cache. Default 16,384.
    pub batch_size: usize,
    /// The device inventory to fill, one sighting per flow start.
    pub inventory: Option<std::sync::Arc<crate::inventory::Inventory>>,
    /// Application detection: events wait for and carry the application
    /// (contract sections 2 and 3).
    pub detect_apps: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            flows: FlowConfig::default(),
            batch_size: 16_384,
            inventory: None,
            detect_apps: false,
        }
    }
}

/// What a replay did.
#[derive(Debug)]
pub struct ReplayOutcome {
    /// Counters.
    pub stats: RunStats,
    /// Files cut inside their last record: judged up to the cut.
    pub truncations: Vec<(PathBuf, Truncation)>,
    /// A capture that could not be read to its end. Everything before the
    /// bad record was judged and its events written.
    pub capture_error: Option<CaptureError>,
    /// Wall-clock time of the replay.
    pub elapsed: Duration,
    /// Wall-clock time spent in each stage (reading overlaps the others).
    pub stages: StageTimes,
}

/// Where a replay's time went, summed over batches (measured once per batch).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageTimes {
    /// Finding the records in the capture files (and faulting their pages in).
    pub read: Duration,
    /// Decoding, keying and hashing, on every thread.
    pub decode: Duration,
    /// Flow tracking, judging and formatting events, on every thread.
    pub track: Duration,
}

/// A replay that could not write its events.
#[derive(Debug, thiserror::Error)]
#[error("cannot write events: {0}")]
pub struct OutputError(#[from] std::io::Error);

/// Per decode chunk: counters, and which of its packets each worker takes.
#[derive(Debug, Default)]
struct Chunk {
    counters: PacketCounters,
    /// For each worker, the batch positions of its packets, in order.
    by_worker: Vec<Vec<u32>>,
}

/// A flow worker: the shards it owns and the events of the current batch.
#[derive(Debug)]
struct Worker {
    /// Tracker of shard `worker_index + i * workers` at position `i`.
    trackers: Vec<Tracker>,
    violations: Vec<Violation>,
    /// The batch positions of this worker's packets, in capture order.
    positions: Vec<u32>,
    /// The batch's events as JSON lines, and for each its packet position
    /// and where its line ends in `json`.
    json: Vec<u8>,
    lines: Vec<((u64, u64, u64), usize)>,
    counters: ViolationCounters,
}

/// Replays `captures`, in order, as one capture, writing violation events to
/// `out` as JSON lines in capture order.
pub fn replay<W: Write + Send>(
    captures: &[CaptureFile],
    policy: &CompiledPolicy,
    options: &ReplayOptions,
    out: &mut W,
) -> Result<ReplayOutcome, OutputError> {
    let started = Instant::now();
    let threads = options.threads.clamp(1, SHARDS);
    // Two flow workers (shard groups) per thread, so that a thread still
    // reading the next batch does not hold up half of the tracking.
    let workers = (threads * 2).min(SHARDS);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("segwatch-replay-{i}"))
        .build()
        .map_err(|e| OutputError(std::io::Error::other(e)))?;
    let batch_size = options.batch_size.max(1);
    let per_shard = options.flows.per_shard_capacity(SHARDS);

    let mut reader = Reader::new(captures);
    let mut current = Vec::with_capacity(batch_size);
    reader.fill(&mut current, batch_size);
    // Flow ids mix in the first frame's time, so two captures' ids differ
    // while one capture's are the same on every run.
    let judge = Judge {
        policy,
        generation: 0,
        flow_id_salt: current.first().map_or(0, |f: &Frame<'_>| f.ts_ns),
    };

    let mut workers: Vec<Worker> = (0..workers)
        .map(|w| Worker {
            trackers: (w..SHARDS)
                .step_by(workers)
                .map(|_| {
                    let mut tracker = Tracker::new(&options.flows, per_shard);
                    if options.inventory.is_some() {
                        tracker.record_starts();
                    }
                    if options.detect_apps {
                        tracker.enable_detection();
                    }
                    tracker
                })
                .collect(),
            violations: Vec::new(),
            positions: Vec::new(),
            json: Vec::new(),
            lines: Vec::new(),
            counters: ViolationCounters::new(policy.rules().len()),
        })
        .collect();
    let chunk_count = workers.len() * 2;
    let mut chunks: Vec<Chunk> = (0..chunk_count)
        .map(|_| Chunk {
            counters: PacketCounters::default(),
            by_worker: vec![Vec::new(); workers.len()],
        })
        .collect();
    // Every slot a frame fills is written whole before it is read, so the
    // buffer is initialised once, not per batch.
    let mut slots: Vec<Packet> = vec![Packet::default(); batch_size];
    let mut next = Vec::with_capacity(batch_size);
    let mut base_index = 0u64;
    let mut write_result = Ok(());
    let mut stages = StageTimes::default();
    let mut process_stages = StageTimes::default();

    let owner = shard_owners(workers.len());
    pool.install(|| {
        while !current.is_empty() {
            // Decoding takes every thread; reading the next batch then runs
            // beside tracking, which is split finely enough (two shard
            // groups per thread) for the reading thread to join it after.
            let decode_start = Instant::now();
            let batch_end_ts = decode_batch(&current, &mut slots, &mut chunks, &owner);
            let track_start = Instant::now();
            process_stages.decode += track_start - decode_start;
            let ((), ()) = rayon::join(
                || {
                    let start = Instant::now();
                    next.clear();
                    reader.fill(&mut next, batch_size);
                    stages.read += start.elapsed();
                },
                || {
                    let slots = &slots[..current.len()];
                    track_batch(
                        base_index,
                        options.detect_apps,
                        &current,
                        options.inventory.as_deref(),
                        slots,
                        &chunks,
                        &mut workers,
                        &owner,
                        judge,
                        batch_end_ts,
                    );
                    process_stages.track += track_start.elapsed();
                    if write_result.is_ok() {
                        write_result = write_events(&mut workers, out);
                    }
                },
            );
            base_index += current.len() as u64;
            std::mem::swap(&mut current, &mut next);
        }
    });
    write_result?;
    if options.detect_apps {
        // Flows still waiting for their application when the capture ends
        // release their events now, in the order the flows started.
        let mut released = Vec::new();
        for worker in &mut workers {
            for tracker in &mut worker.trackers {
                tracker.finish_judged(Some((policy, 0)), &mut released);
                if let Some(inventory) = &options.inventory {
                    for identified in tracker.drain_identified() {
                        inventory.record_app(&identified);
                    }
                }
            }
        }
        released.sort_by_key(|v| (v.ts_ns, v.flow_id));
        let mut lines = Vec::new();
        for violation in &released {
            if let Some(worker) = workers.first_mut() {
                worker.counters.count(violation.verdict, policy);
            }
            write_json_line(violation, policy, &mut lines);
        }
        out.write_all(&lines)?;
    }
    out.flush()?;
    stages.decode = process_stages.decode;
    stages.track = process_stages.track;

    let mut stats = RunStats {
        violations: ViolationCounters::new(policy.rules().len()),
        ..RunStats::default()
    };
    for chunk in &chunks {
        stats.packets.add(&chunk.counters);
    }
    for worker in &workers {
        stats.violations.add(&worker.counters);
        for tracker in &worker.trackers {
            stats.flows.add(tracker.counters());
            stats.active_flows += tracker.active_flows() as u64;
        }
    }
    Ok(ReplayOutcome {
        stats,
        truncations: reader.truncations,
        capture_error: reader.error,
        elapsed: started.elapsed(),
        stages,
    })
}

/// Shard -> (worker, position of its tracker in that worker): a table, so
/// that the per-packet path has no division by the worker count.
fn shard_owners(worker_count: usize) -> [(u8, u8); SHARDS] {
    std::array::from_fn(|shard| ((shard % worker_count) as u8, (shard / worker_count) as u8))
}

/// Decodes a batch on every thread into `slots`, noting for each worker its
/// packets; returns the latest capture time in the batch.
fn decode_batch(
    frames: &[Frame<'_>],
    slots: &mut [Packet],
    chunks: &mut [Chunk],
    owner: &[(u8, u8); SHARDS],
) -> u64 {
    let slots = &mut slots[..frames.len()];
    let chunk_len = frames.len().div_ceil(chunks.len()).max(1);
    // A short batch fills fewer chunks: the others must not replay stale
    // positions.
    for chunk in chunks.iter_mut() {
        chunk.by_worker.iter_mut().for_each(Vec::clear);
    }
    frames
        .par_chunks(chunk_len)
        .zip(slots.par_chunks_mut(chunk_len))
        .zip(chunks.par_iter_mut())
        .enumerate()
        .for_each(|(chunk_index, ((frames, slots), chunk))| {
            let first = chunk_index * chunk_len;
            let mut headers = Headers::default();
            for (i, (frame, slot)) in frames.iter().zip(slots.iter_mut()).enumerate() {
                let outcome = frame.decode(&mut headers);
                chunk.counters.count(frame.orig_len, outcome);
                if outcome != Outcome::Judge {
                    continue;
                }
                *slot = Packet::new(&headers, frame.ts_ns, frame.orig_len);
                let shard = FlowHasher::shard(slot.hash, SHARDS);
                chunk.by_worker[usize::from(owner[shard].0)].push((first + i) as u32);
            }
        });
    frames.iter().map(|f| f.ts_ns).max().unwrap_or(0)
}

/// Tracks and judges a decoded batch, flow-parallel; each worker visits its
/// packets in capture order, and formats its events.
#[allow(clippy::too_many_arguments)]
fn track_batch(
    base_index: u64,
    detect_apps: bool,
    frames: &[Frame<'_>],
    inventory: Option<&crate::inventory::Inventory>,
    slots: &[Packet],
    chunks: &[Chunk],
    workers: &mut [Worker],
    owner: &[(u8, u8); SHARDS],
    judge: Judge<'_>,
    batch_end_ts: u64,
) {
    workers.par_iter_mut().enumerate().for_each(|(w, worker)| {
        worker.violations.clear();
        worker.positions.clear();
        for chunk in chunks {
            worker.positions.extend_from_slice(&chunk.by_worker[w]);
        }
        let tracker_of = |slot: &Packet| usize::from(owner[FlowHasher::shard(slot.hash, SHARDS)].1);
        let positions = &worker.positions;
        for (n, &position) in positions.iter().enumerate() {
            // Each packet's lookups miss the cache: its decoded slot (written
            // by another core), its index bucket, its flow entry. Ask for
            // them in that order, each a few packets before it is needed:
            // the slot 2*PREFETCH_AHEAD ahead, the bucket PREFETCH_AHEAD
            // ahead (its slot has arrived), the entry half-way.
            if let Some(&far) = positions.get(n + 2 * PREFETCH_AHEAD) {
                crate::flow::prefetch(&slots[far as usize] as *const Packet);
            }
            if let Some(&ahead) = positions.get(n + PREFETCH_AHEAD) {
                let slot = &slots[ahead as usize];
                worker.trackers[tracker_of(slot)].prefetch_index(slot.hash);
            }
            if let Some(&near) = positions.get(n + PREFETCH_AHEAD / 2) {
                let slot = &slots[near as usize];
                worker.trackers[tracker_of(slot)].prefetch_entry(slot.hash);
            }
            let packet = &slots[position as usize];
            let index = base_index + u64::from(position);
            let frame = if detect_apps {
                frames[position as usize].data
            } else {
                &[]
            };
            worker.trackers[tracker_of(packet)].observe_frame(
                packet,
                frame,
                index,
                judge,
                &mut worker.violations,
            );
        }
        if let Some(inventory) = inventory {
            for tracker in worker.trackers.iter_mut() {
                for start in tracker.drain_starts() {
                    let frame = &frames[(start.packet_index - base_index) as usize];
                    let sighting = crate::inventory::Sighting::of(&start, frame.macs(), |zone| {
                        judge.policy.zone(zone).name.clone()
                    });
                    inventory.record(&sighting);
                }
            }
            for tracker in worker.trackers.iter_mut() {
                for identified in tracker.drain_identified() {
                    inventory.record_app(&identified);
                }
            }
        }
        // Sweeping idle flows never changes a verdict (a full table expires
        // before it evicts); it only keeps the tables small.
        // Events the sweep releases count as produced at the batch's end.
        let batch_last = base_index + (slots.len() as u64).saturating_sub(1);
        for tracker in worker.trackers.iter_mut() {
            tracker.expire_at(
                batch_end_ts,
                batch_last,
                Some((judge.policy, judge.generation)),
                &mut worker.violations,
            );
        }
        // Events released by the sweep, or after waiting for their
        // application, come after this batch's others of the same tracker:
        // order the worker's list by the packet that released each.
        // Ties (events released by the same sweep) are broken by the flow's
        // first packet time and id, never by which worker holds the flow, so
        // the output is the same for any number of threads.
        worker
            .violations
            .sort_by_key(|v| (v.packet_index, v.ts_ns, v.flow_id));
        worker.json.clear();
        worker.lines.clear();
        for violation in &worker.violations {
            worker.counters.count(violation.verdict, judge.policy);
            write_json_line(violation, judge.policy, &mut worker.json);
            worker.lines.push((
                (violation.packet_index, violation.ts_ns, violation.flow_id),
                worker.json.len(),
            ));
        }
    });
}

/// Writes the batch's events of every worker, merged into capture order.
fn write_events<W: Write>(workers: &mut [Worker], out: &mut W) -> std::io::Result<()> {
    let mut cursors = vec![(0usize, 0usize); workers.len()];
    loop {
        let next = workers
            .iter()
            .enumerate()
            .filter_map(|(w, worker)| worker.lines.get(cursors[w].0).map(|&(order, _)| (order, w)))
            .min();
        let Some((_, w)) = next else { return Ok(()) };
        let (line, start) = cursors[w];
        let end = workers[w].lines[line].1;
        out.write_all(&workers[w].json[start..end])?;
        cursors[w] = (line + 1, end);
    }
}

/// Reads frames from several files in order, as one capture.
struct Reader<'a> {
    files: std::slice::Iter<'a, CaptureFile>,
    current: Option<(&'a CaptureFile, FrameReader<'a>)>,
    truncations: Vec<(PathBuf, Truncation)>,
    error: Option<CaptureError>,
}

impl<'a> Reader<'a> {
    fn new(files: &'a [CaptureFile]) -> Self {
        Reader {
            files: files.iter(),
            current: None,
            truncations: Vec::new(),
            error: None,
        }
    }

    /// Appends up to `max` frames to `batch`; fewer only at the end of the
    /// last file or at an error.
    fn fill(&mut self, batch: &mut Vec<Frame<'a>>, max: usize) {
        while batch.len() < max && self.error.is_none() {
            if self.current.is_none() {
                match self.files.next() {
                    Some(file) => self.current = Some((file, file.reader())),
                    None => return,
                }
            }
            let Some((file, reader)) = self.current.as_mut() else {
                return;
            };
            match reader.next_frame() {
                Ok(Some(frame)) => batch.push(frame),
                Ok(None) => {
                    if let Some(cut) = reader.truncation() {
                        self.truncations.push((file.path().to_owned(), cut));
                    }
                    self.current = None;
                }
                Err(error) => self.error = Some(error),
            }
        }
    }
}
