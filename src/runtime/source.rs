//! Sources that drive a worker's [`Pipeline`]: a live interface, a capture
//! file (full speed or at capture pace) and the demo's endless synthetic
//! hospital traffic.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::capture::{CaptureError, CaptureFile, Frame};
use crate::synth::hospital::{HospitalOptions, HospitalTraffic};
use crate::wire::LinkType;

use super::policy::PolicyHandle;
use super::worker::Pipeline;

/// Frames handled between two looks at the stop flag and the policy.
const BATCH: usize = 1024;
/// The longest a paced source sleeps before looking at the stop flag again.
const MAX_NAP: Duration = Duration::from_millis(50);
/// How many bytes of a capture file the source moves past before it hands
/// their pages back to the kernel, as `replay` does (see
/// [`CaptureFile::release`]): resident memory stays near this much of the
/// file, not the whole of it.
const RELEASE_STEP: usize = 8 << 20;

/// What became of a capture file.
#[derive(Debug)]
pub enum FileEnd {
    /// Read to its end.
    Done,
    /// Cut inside its last record: judged up to the cut.
    Truncated(u64),
    /// Stopped by a signal before the end.
    Stopped,
}

/// Runs a capture file through `pipeline`: as fast as possible, or with
/// `realtime` at the pace its timestamps say.
pub fn run_file(
    path: &Path,
    realtime: bool,
    pipeline: &mut Pipeline,
    policy: &PolicyHandle,
    stop: &AtomicBool,
) -> Result<FileEnd, CaptureError> {
    let file = CaptureFile::open(path)?;
    let mut reader = file.reader();
    let mut pacer = Pacer::new(realtime);
    let mut pending: Option<Frame<'_>> = None;
    let mut released = 0;
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(FileEnd::Stopped);
        }
        // The frames before the reader's position are judged (the one held
        // back by the pacer too: a released page reads back unchanged).
        let read = usize::try_from(reader.position()).unwrap_or(usize::MAX);
        if read >= released + RELEASE_STEP {
            file.release(released..read);
            released = read;
        }
        let live = policy.current();
        let mut handled = 0;
        while handled < BATCH {
            let frame = match pending.take() {
                Some(frame) => frame,
                None => match reader.next_frame()? {
                    Some(frame) => frame,
                    None => {
                        // The capture ended: so did its flows' waits.
                        pipeline.finish(&live);
                        file.release(released..file.byte_len() as usize);
                        return Ok(match reader.truncation() {
                            Some(cut) => FileEnd::Truncated(cut.offset),
                            None => FileEnd::Done,
                        });
                    }
                },
            };
            if let Some(wait) = pacer.wait_for(frame.ts_ns) {
                pending = Some(frame);
                pipeline.end_batch(&live);
                std::thread::sleep(wait.min(MAX_NAP));
                break;
            }
            pipeline.frame(&frame, &live);
            handled += 1;
        }
        if handled == BATCH {
            pipeline.end_batch(&live);
        }
    }
}

/// Runs the demo's synthetic hospital traffic through `pipeline`, at capture
/// pace, until stopped. Deterministic (fixed seed); its capture times start
/// now, so events carry the current time.
pub fn run_synthetic(pipeline: &mut Pipeline, policy: &PolicyHandle, stop: &AtomicBool) {
    let start_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let options = HospitalOptions {
        packets: u64::MAX,
        concurrent_flows: 64,
        violation_share: 0.05,
        seed: 7,
        start_ns,
        // About 2,000 packets a second: lively, light on a laptop.
        gap_ns: 500_000,
    };
    let mut traffic = HospitalTraffic::new(options);
    let mut pacer = Pacer::new(true);
    let mut pending: Option<(u64, Vec<u8>)> = None;
    while !stop.load(Ordering::Relaxed) {
        let live = policy.current();
        for _ in 0..BATCH {
            let Some((ts, data)) = pending.take().or_else(|| traffic.next()) else {
                break;
            };
            if let Some(wait) = pacer.wait_for(ts) {
                pending = Some((ts, data));
                pipeline.end_batch(&live);
                std::thread::sleep(wait.min(MAX_NAP));
                break;
            }
            let frame = Frame {
                ts_ns: ts,
                orig_len: data.len() as u32,
                link: LinkType::ETHERNET,
                data: &data,
                vlan: None,
            };
            pipeline.frame(&frame, &live);
        }
        pipeline.end_batch(&live);
    }
    pipeline.finish(&policy.current());
}

/// How long a live worker waits for packets before looking at its stop
/// flag and moving flow time on.
const LIVE_WAIT: Duration = Duration::from_millis(100);
/// How often a live worker reads the kernel's counters.
const STATS_EVERY: Duration = Duration::from_secs(1);

/// Runs a live capture through `pipeline` until stopped. Per batch (a ring
/// block, or what libpcap has): the policy is loaded once, every frame
/// judged, the batch ended. When the interface is idle, flow time follows
/// the clock so that flows still expire.
pub fn run_live(
    capture: &mut crate::capture::live::LiveCapture,
    pipeline: &mut Pipeline,
    policy: &PolicyHandle,
    stop: &AtomicBool,
    interface: &crate::metrics::InterfaceStats,
) {
    let mut last_stats = Instant::now();
    let publish = |capture: &mut crate::capture::live::LiveCapture| {
        let stats = capture.take_stats();
        interface
            .received
            .fetch_add(stats.received, Ordering::Relaxed);
        interface
            .dropped
            .fetch_add(stats.dropped, Ordering::Relaxed);
    };
    while !stop.load(Ordering::Relaxed) {
        let live = policy.current();
        match capture.dispatch(LIVE_WAIT, |frame| pipeline.frame(frame, &live)) {
            Ok(0) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                pipeline.advance_clock(now);
                pipeline.end_batch(&live);
            }
            Ok(_) => pipeline.end_batch(&live),
            Err(error) => {
                tracing::error!("{error}; this worker stops");
                break;
            }
        }
        if last_stats.elapsed() >= STATS_EVERY {
            publish(capture);
            last_stats = Instant::now();
        }
    }
    pipeline.finish(&policy.current());
    publish(capture);
}

/// Paces frames at their capture times, relative to the first.
#[derive(Debug)]
struct Pacer {
    realtime: bool,
    origin: Option<(u64, Instant)>,
}

impl Pacer {
    fn new(realtime: bool) -> Pacer {
        Pacer {
            realtime,
            origin: None,
        }
    }

    /// How long until a frame captured at `ts_ns` is due; `None` when due.
    fn wait_for(&mut self, ts_ns: u64) -> Option<Duration> {
        if !self.realtime {
            return None;
        }
        let (first_ts, started) = *self.origin.get_or_insert((ts_ns, Instant::now()));
        let due = started + Duration::from_nanos(ts_ns.saturating_sub(first_ts));
        due.checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }
}
