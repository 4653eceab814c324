//! Offline replay: capture files through decode, flow tracking and judging,
//! on every core, with output identical to a single-threaded run.
//!
//! Frames are handled in batches. For each batch:
//!
//! 1. Decoding is data-parallel: the batch is cut into chunks, and each chunk
//!    is decoded, keyed and hashed on its own, its packets sorted into one
//!    list per flow shard.
//! 2. Flow tracking is flow-parallel: the traffic is split into [`SHARDS`]
//!    shards by flow-key hash, each with its own tracker and flow table, one
//!    task per shard. A shard visits its packets in capture order (its lists
//!    chunk by chunk), so every flow sees its packets in order.
//! 3. Each shard's events are already in capture order; merging the shards'
//!    lists by packet position gives the capture order of a single thread.
//!
//! The number of shards is fixed, not tied to the number of threads: a flow
//! lands in the same shard, with the same flow-table bound, however many
//! threads run, so eviction under a full table (and with it every event) is
//! the same for any `--threads`. The next batch is read and decoded while
//! this one is tracked, in one parallel region per batch: sixteen shard
//! tasks and the decoding chunks are small enough for work stealing to keep
//! every core busy to the batch's end.

#![forbid(unsafe_code)]

mod incidents;
mod observe;
pub mod policy_cache;

pub use observe::{Observation, ObserveError, ObservedFlow, observe_every_flow};
pub use policy_cache::{
    KEPT_ENTRIES, LoadedPolicy, PolicyCache, PolicySource, decode_entry_body, encode_entry_body,
};

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::capture::{CaptureError, CaptureFile, Frame, FrameReader, Truncation};
use crate::classify::PolicyInForce;
use crate::event::write_json_line;
use crate::evidence::Evidence;
use crate::flow::{FlowConfig, FlowHasher, Packet};
use crate::incident::{Devices, FoldCounters, IncidentSettings, NoDevices};
use crate::pipeline::{Counters, PacketCounters, Shard, ShardOptions, TrackedRanges};
use crate::sys::prefetch;
use crate::wire::{Decapsulation, Headers, Outcome, Split};

/// How many bytes of a capture a replay moves past before it hands their
/// pages back to the kernel (see [`CaptureFile::release`]). Every release
/// interrupts the other core (it must forget the pages too), so not every
/// batch; but what is still mapped at the end is unmapped at exit, on one
/// core, after the parallel work: 8 MiB keeps that tail short.
const RELEASE_STEP: usize = 8 << 20;

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
    /// The process exits right after the replay: its flow tables are left
    /// for the exit to free (see [`replay`]). Only for a command-line run;
    /// a library caller keeps the default, `false`.
    pub exiting_after: bool,
    /// The tunnels to open besides ERSPAN (VXLAN, Geneve, GRE); none by
    /// default.
    pub decapsulation: Decapsulation,
    /// Incidents (contract section 7): records interleaved with the events,
    /// and `incident_id` on the events that open or join one.
    pub incidents: Option<IncidentSettings>,
    /// Count flows and bytes by hour, zones, service and outcome for an
    /// evidence report ([`ReplayOutcome::evidence`]).
    pub evidence: bool,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            flows: FlowConfig::default(),
            batch_size: 16_384,
            inventory: None,
            detect_apps: false,
            exiting_after: false,
            decapsulation: Decapsulation::NONE,
            incidents: None,
            evidence: false,
        }
    }
}

/// What a replay did.
#[derive(Debug)]
pub struct ReplayOutcome {
    /// Counters.
    pub stats: Counters,
    /// Files cut inside their last record: judged up to the cut.
    pub truncations: Vec<(PathBuf, Truncation)>,
    /// A capture that could not be read to its end. Everything before the
    /// bad record was judged and its events written.
    pub capture_error: Option<CaptureError>,
    /// Wall-clock time of the replay.
    pub elapsed: Duration,
    /// Wall-clock time spent in each stage (reading and decoding overlap
    /// tracking).
    pub stages: StageTimes,
    /// With incidents on: what the fold counted.
    pub incidents: Option<FoldCounters>,
    /// With evidence on: flows and bytes by hour and kind of flow.
    pub evidence: Option<Evidence>,
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

/// Per decode chunk: counters, and its decoded packets shard by shard.
#[derive(Debug, Default)]
struct Chunk {
    counters: PacketCounters,
    /// For each shard, its packets of this chunk, in capture order. Each
    /// shard's tracker then reads its packets as a few sequential streams
    /// (one per chunk), which the CPU fetches ahead from the decoding core's
    /// cache by itself, rather than scattered slots of a shared batch.
    by_shard: Vec<Vec<Decoded>>,
}

/// A decoded packet and its position in the batch (see [`Packet`]), written
/// by the decoding core, read by the tracking one.
#[derive(Clone, Copy, Debug)]
struct Decoded {
    packet: Packet,
    position: u32,
}

const _: () = assert!(std::mem::size_of::<Decoded>() == 72);

/// A flow worker: one shard and the events of the current batch.
#[derive(Debug)]
struct Worker {
    shard: Shard,
    /// The batch's events as JSON lines, and for each its packet position
    /// and where its line ends in `json`.
    json: Vec<u8>,
    lines: Vec<((u64, u64, u64), usize)>,
}

/// Replays `captures`, in order, as one capture, writing violation events to
/// `out` as JSON lines in capture order.
pub fn replay<W: Write + Send>(
    captures: &[CaptureFile],
    policy: &PolicyInForce,
    options: &ReplayOptions,
    out: &mut W,
) -> Result<ReplayOutcome, OutputError> {
    let started = Instant::now();
    let threads = options.threads.clamp(1, SHARDS);
    // The pool's threads are spawned here and joined before the replay
    // returns: a pool merely dropped lets them exit later, which a program
    // replaying again and again (the `capture_file` fuzz target) saw as
    // leaked threads.
    let mut pool_threads = Vec::with_capacity(threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .spawn_handler(|thread| {
            let name = format!("segwatch-replay-{}", thread.index());
            pool_threads.push(
                std::thread::Builder::new()
                    .name(name)
                    .spawn(|| thread.run())?,
            );
            Ok(())
        })
        .build()
        .map_err(|e| OutputError(std::io::Error::other(e)))?;
    let batch_size = options.batch_size.max(1);
    let per_shard = options.flows.per_shard_capacity(SHARDS);

    let mut reader = Reader::new(captures);
    let mut current = Vec::with_capacity(batch_size);
    reader.fill(&mut current, batch_size);
    // Flow ids mix in the first frame's time, so two captures' ids differ
    // while one capture's are the same on every run.
    let flow_id_salt = current.first().map_or(0, |f: &Frame<'_>| f.ts_ns);
    let shard_options = ShardOptions {
        detect_apps: options.detect_apps,
        record_starts: options.inventory.is_some(),
        evidence: options.evidence,
    };
    let tracked = options
        .incidents
        .as_ref()
        .map(|settings| TrackedRanges::new(settings.track_to.clone()));
    let mut folding = options
        .incidents
        .as_ref()
        .map(|settings| incidents::Folding::new(settings, flow_id_salt));
    let mut workers: Vec<Worker> = (0..SHARDS)
        .map(|_| {
            let mut shard = Shard::new(&options.flows, per_shard, shard_options);
            shard.set_flow_id_salt(flow_id_salt);
            shard.set_tracked_ranges(tracked.clone());
            Worker {
                shard,
                json: Vec::new(),
                lines: Vec::new(),
            }
        })
        .collect();
    // Two sets of decode buffers: the next batch is decoded into one while
    // the current one, decoded into the other, is tracked.
    let chunk_count = threads * 4;
    let new_chunks = || -> Vec<Chunk> {
        (0..chunk_count)
            .map(|_| Chunk {
                counters: PacketCounters::default(),
                // A shard's share of a chunk, with room for an uneven batch:
                // grown at most a few times in a run, never per batch.
                by_shard: (0..SHARDS)
                    .map(|_| Vec::with_capacity(2 * batch_size / chunk_count / SHARDS + 16))
                    .collect(),
            })
            .collect()
    };
    let mut chunks = new_chunks();
    let mut next_chunks = new_chunks();
    let mut next = Vec::with_capacity(batch_size);
    let mut base_index = 0u64;
    let mut write_result = Ok(());
    let mut stages = StageTimes::default();
    let mut process_stages = StageTimes::default();

    pool.install(|| {
        let decode_start = Instant::now();
        decode_batch(&current, &options.decapsulation, &mut chunks);
        process_stages.decode += decode_start.elapsed();
        while !current.is_empty() {
            // One parallel region per batch, no barrier inside: the next
            // batch is read (one thread) and decoded (in chunks) while this
            // one is tracked (one task per shard), and work stealing keeps
            // both cores busy until the batch's last task ends.
            let track_start = Instant::now();
            rayon::join(
                || {
                    let start = Instant::now();
                    // The batch before this one has been tracked: its
                    // capture pages can go.
                    reader.release_before(current.first());
                    next.clear();
                    reader.fill(&mut next, batch_size);
                    let decode_start = Instant::now();
                    stages.read += decode_start - start;
                    decode_batch(&next, &options.decapsulation, &mut next_chunks);
                    process_stages.decode += decode_start.elapsed();
                },
                || {
                    track_batch(
                        base_index,
                        &current,
                        options.inventory.as_deref(),
                        &chunks,
                        &mut workers,
                        policy,
                        folding.is_none(),
                    );
                    // Every shard fed the batch: evicting here, and only
                    // here, makes the inventory the same for any thread count.
                    if let Some(inventory) = &options.inventory {
                        inventory.settle();
                    }
                    if let Some(folding) = &mut folding {
                        let shards = workers.iter_mut().map(|w| w.shard.output());
                        folding.batch(base_index, &current, shards, policy, devices_of(options));
                    }
                    process_stages.track += track_start.elapsed();
                    if write_result.is_ok() {
                        write_result = match &mut folding {
                            Some(folding) => folding.write(out),
                            None => write_events(&mut workers, out),
                        };
                    }
                },
            );
            base_index += current.len() as u64;
            std::mem::swap(&mut current, &mut next);
            std::mem::swap(&mut chunks, &mut next_chunks);
        }
    });
    drop(pool);
    for thread in pool_threads {
        // A pool thread does not panic (a task's panic reaches `install`).
        let _ = thread.join();
    }
    write_result?;
    // Flows still waiting for their application when the capture ends
    // release their events now, in the order the flows started.
    let mut released = Vec::new();
    for worker in &mut workers {
        worker.shard.finish(policy);
        if let Some(inventory) = &options.inventory {
            worker.shard.feed_inventory(inventory, policy);
        }
        released.append(&mut worker.shard.output().violations);
    }
    if let Some(inventory) = &options.inventory {
        inventory.settle();
    }
    released.sort_by_key(|v| (v.ts_ns, v.flow_id));
    let incident_counters = match &mut folding {
        Some(folding) => {
            folding.finish(released, policy, devices_of(options));
            folding.write(out)?;
            Some(folding.counters())
        }
        None => {
            let mut lines = Vec::new();
            for violation in &released {
                write_json_line(violation, policy, &mut lines);
            }
            out.write_all(&lines)?;
            None
        }
    };
    out.flush()?;
    stages.decode = process_stages.decode;
    stages.track = process_stages.track;

    let mut stats = Counters::default();
    for chunk in chunks.iter().chain(&next_chunks) {
        stats.packets.add(&chunk.counters);
    }
    for worker in &workers {
        stats.add(&worker.shard.counters());
    }
    let evidence = options.evidence.then(|| {
        let mut evidence = Evidence::default();
        for worker in &mut workers {
            let table = worker.shard.take_evidence();
            evidence.add_table(&table, &policy.policy, &policy.exceptions);
        }
        evidence
    });
    if options.exiting_after {
        // Freeing sixteen flow tables here, one mapping at a time, took
        // longer than the kernel's teardown of the whole address space at
        // exit (about 1-2 ms of a 70 ms replay).
        std::mem::forget(workers);
        std::mem::forget(folding);
        std::mem::forget(chunks);
        std::mem::forget(next_chunks);
    }
    Ok(ReplayOutcome {
        stats,
        truncations: reader.truncations,
        capture_error: reader.error,
        elapsed: started.elapsed(),
        stages,
        incidents: incident_counters,
        evidence,
    })
}

/// What incident records learn `src_device` from: the inventory, when the
/// replay fills one.
fn devices_of(options: &ReplayOptions) -> &(dyn Devices + Sync) {
    match &options.inventory {
        Some(inventory) => &**inventory,
        None => &NoDevices,
    }
}

/// Decodes a batch on every thread, sorting its packets by shard.
fn decode_batch(frames: &[Frame<'_>], decap: &Decapsulation, chunks: &mut [Chunk]) {
    let chunk_len = frames.len().div_ceil(chunks.len()).max(1);
    // A short batch fills fewer chunks: the others must not replay stale
    // packets.
    for chunk in chunks.iter_mut() {
        chunk.by_shard.iter_mut().for_each(Vec::clear);
    }
    frames
        .par_chunks(chunk_len)
        .zip(chunks.par_iter_mut())
        .enumerate()
        .for_each(|(chunk_index, (frames, chunk))| {
            let first = chunk_index * chunk_len;
            let mut headers = Headers::default();
            // Counted here, then added once: the chunk's counters are not
            // read and written back at every packet, and a judged packet
            // adds only its bytes (the frames not counted one by one are the
            // judged ones).
            let mut counters = PacketCounters::default();
            let mut bytes = 0u64;
            // Asked once: opening no tunnel but ERSPAN, a datagram's port
            // need not be looked at (see `wire::decode_split`).
            let opens_none = decap.is_none();
            for (i, frame) in frames.iter().enumerate() {
                bytes += u64::from(frame.orig_len);
                let split = if opens_none {
                    frame.decode_split(Decapsulation::none(), &mut headers)
                } else {
                    frame.decode_split(decap, &mut headers)
                };
                // Tunnels are counted, and keyed, only for the frames the
                // general path decoded: the common path opens none.
                let packet = match split {
                    Split::Untunnelled(Outcome::Judge) => {
                        Packet::untunnelled(&headers, frame.ts_ns)
                    }
                    Split::General(Outcome::Judge) => {
                        counters.count_tunnel(&headers.tunnel);
                        Packet::new(&headers, frame.ts_ns)
                    }
                    Split::Untunnelled(outcome) => {
                        counters.count(frame.orig_len, outcome);
                        continue;
                    }
                    Split::General(outcome) => {
                        counters.count_tunnel(&headers.tunnel);
                        counters.count(frame.orig_len, outcome);
                        continue;
                    }
                };
                let shard = FlowHasher::shard(packet.hash, SHARDS);
                chunk.by_shard[shard].push(Decoded {
                    packet,
                    position: (first + i) as u32,
                });
            }
            counters.count_judged(
                frames.len() as u64 - counters.packets,
                bytes - counters.bytes,
            );
            chunk.counters.add(&counters);
        });
}

/// Tracks and judges a decoded batch, one task per shard; each visits its
/// packets in capture order, and formats its events.
fn track_batch(
    base_index: u64,
    frames: &[Frame<'_>],
    inventory: Option<&crate::inventory::Inventory>,
    chunks: &[Chunk],
    workers: &mut [Worker],
    policy: &PolicyInForce,
    format_events: bool,
) {
    workers
        .par_iter_mut()
        .enumerate()
        .for_each(|(shard_number, worker)| {
            let shard = &mut worker.shard;
            // Three copies of the packet loop: without frames to read (the
            // plain replay) nothing about frames is looked at per packet,
            // and whether every frame is read is not asked per packet.
            if shard.reads_every_frame() {
                track_shard::<true, true>(shard, shard_number, base_index, frames, chunks, policy);
            } else if shard.reads_frames() {
                track_shard::<true, false>(shard, shard_number, base_index, frames, chunks, policy);
            } else {
                track_shard::<false, false>(
                    shard,
                    shard_number,
                    base_index,
                    frames,
                    chunks,
                    policy,
                );
            }
            if let Some(inventory) = inventory {
                shard.feed_inventory(inventory, policy);
            }
            // No sweep of idle flows at a batch's end: a flow ends only at a
            // packet (one of its own finds it idle past its timeout, closed or
            // evicted, or a new flow finds the table full and the idle flows
            // go first). A batch's end is not a packet: expiring flows there
            // made the events depend on where batches end, when merged
            // captures step back in time (a flow ended at one batch's latest
            // time, then a packet of it from an earlier time started it again)
            // and, with detection, for waits that ended in a quiet shard. The
            // table then holds up to its bound rather than the flows still
            // active; the bound is the user's (`--max-flows`).
            //
            // Events that waited for their application are released by a later
            // packet than their flow's first: order the worker's list by the
            // packet that released each. Ties (events released by the same
            // packet) are broken by the flow's first packet time and id, never
            // by which worker holds the flow, so the output is the same for any
            // number of threads.
            let violations = &mut shard.output().violations;
            violations.sort_by_key(|v| (v.packet_index, v.ts_ns, v.flow_id));
            if !format_events {
                // The incident fold writes them, with their incident ids.
                return;
            }
            worker.json.clear();
            worker.lines.clear();
            for violation in violations.drain(..) {
                write_json_line(&violation, policy, &mut worker.json);
                worker.lines.push((
                    (violation.packet_index, violation.ts_ns, violation.flow_id),
                    worker.json.len(),
                ));
            }
        });
}

/// One shard's packets of a batch, chunk after chunk, in capture order;
/// `READS_FRAMES` as [`Shard::reads_frames`] says, `READS_EVERY_FRAME` as
/// [`Shard::reads_every_frame`] does.
fn track_shard<const READS_FRAMES: bool, const READS_EVERY_FRAME: bool>(
    shard: &mut Shard,
    shard_number: usize,
    base_index: u64,
    frames: &[Frame<'_>],
    chunks: &[Chunk],
    policy: &PolicyInForce,
) {
    // Each packet's flow lookup misses the cache twice: its index
    // bucket, then its flow entry. Ask for the bucket PREFETCH_AHEAD
    // packets before it is needed, and for the entry half-way, once
    // its bucket has arrived; the look-ahead reaches into the next
    // chunk's list, so that no list's first packets go without.
    for (k, chunk) in chunks.iter().enumerate() {
        let packets = &chunk.by_shard[shard_number][..];
        let following = chunks
            .get(k + 1)
            .map_or(&[][..], |c| &c.by_shard[shard_number][..]);
        let ahead = |i: usize| match packets.get(i) {
            Some(decoded) => Some(decoded),
            None => following.get(i - packets.len()),
        };
        for (n, decoded) in packets.iter().enumerate() {
            // With detection, the frame's record and then its
            // transport header too: the shard's packets are spread
            // over the batch, decoded a batch ago on any core.
            if let Some(far) = ahead(n + PREFETCH_AHEAD) {
                shard.prefetch_index(far.packet.hash);
                if READS_EVERY_FRAME {
                    // No bounds check: a prefetch never faults.
                    prefetch(frames.as_ptr().wrapping_add(far.position as usize));
                }
            }
            if let Some(near) = ahead(n + PREFETCH_AHEAD / 2) {
                shard.prefetch_entry(near.packet.hash);
                if READS_EVERY_FRAME && let Some(frame) = frames.get(near.position as usize) {
                    near.packet.prefetch_transport(frame.data);
                }
            }
            let position = decoded.position as usize;
            let frame = if READS_FRAMES {
                frames.get(position)
            } else {
                None
            };
            shard.packet(&decoded.packet, frame, base_index + position as u64, policy);
        }
    }
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
    all: &'a [CaptureFile],
    /// Per file, how far its pages have been released.
    released: Vec<usize>,
    files: std::slice::Iter<'a, CaptureFile>,
    current: Option<(&'a CaptureFile, FrameReader<'a>)>,
    truncations: Vec<(PathBuf, Truncation)>,
    error: Option<CaptureError>,
}

impl<'a> Reader<'a> {
    fn new(files: &'a [CaptureFile]) -> Self {
        Reader {
            all: files,
            released: vec![0; files.len()],
            files: files.iter(),
            current: None,
            truncations: Vec::new(),
            error: None,
        }
    }

    /// Releases the capture pages before `frame` (see
    /// [`CaptureFile::release`]): whole files before its file, and its file
    /// up to it.
    fn release_before(&mut self, frame: Option<&Frame<'_>>) {
        let Some(frame) = frame else { return };
        for (file, released) in self.all.iter().zip(&mut self.released) {
            let (upto, found) = match file.offset_of(frame.data) {
                Some(offset) => (offset, true),
                None => (file.byte_len() as usize, false),
            };
            // In steps of RELEASE_STEP (see there why).
            if upto >= released.saturating_add(RELEASE_STEP) || (!found && upto > *released) {
                file.release(*released..upto);
                *released = upto;
            }
            if found {
                return;
            }
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
            match reader.read_into(batch, max) {
                Ok(true) => {}
                Ok(false) => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::CompiledPolicy;
    use crate::policy::load_policy_str;

    /// The names of this process's threads (at most 15 bytes each).
    fn thread_names() -> Vec<String> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .map(|name| name.trim_end().to_owned())
            .collect()
    }

    #[test]
    fn a_replay_leaves_no_thread_behind() {
        // A classic pcap header (Ethernet) and no record.
        let mut header = Vec::new();
        for word in [0xa1b2_c3d4_u32, 0x0004_0002, 0, 0, 65535, 1] {
            header.extend_from_slice(&word.to_le_bytes());
        }
        let capture = CaptureFile::from_bytes("empty.pcap", header).unwrap();
        let text = crate::synth::policy::EXAMPLE_HOSPITAL;
        let (policy, _) = load_policy_str(text, std::path::Path::new("example.toml")).unwrap();
        let policy = PolicyInForce::new(CompiledPolicy::compile(&policy), 0);
        let options = ReplayOptions {
            threads: 2,
            ..ReplayOptions::default()
        };
        for _ in 0..3 {
            replay(
                std::slice::from_ref(&capture),
                &policy,
                &options,
                &mut Vec::new(),
            )
            .unwrap();
            let left: Vec<String> = thread_names()
                .into_iter()
                .filter(|name| name.starts_with("segwatch-replay"))
                .collect();
            assert!(left.is_empty(), "still running: {left:?}");
        }
    }
}
