//! The daemon's incident thread (contract section 7): workers hand it their
//! violations and flow starts once per batch through a bounded queue that
//! never blocks capture (what does not fit is counted, and its violations
//! go to the sinks directly, without incident ids); it folds them in arrival
//! order, closes incidents by the clock, and offers events and records to
//! the sinks, each of which takes what its `records` setting asks for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::event::{HexId, IncidentRecord, Record, Violation, ViolationEvent};
use crate::incident::{Devices, Emit, Fold, IncidentSettings, NoDevices, SortKey};
use crate::inventory::Inventory;
use crate::metrics::IncidentStats;
use crate::pipeline::StartNotice;
use crate::sink::{SinkEvent, SinkHandle};

use super::policy::LivePolicy;

/// Batches waiting for the incident thread: a few seconds of a busy
/// sensor's batches; beyond, capture does not wait.
const QUEUE: usize = 4_096;
/// Violations and flow starts waiting, over all queued batches: the
/// queue's memory bound (a batch's size follows its frames, not a count of
/// batches): at most 262,144 of 112 bytes (violations) or 64 (flow starts),
/// 28 MiB, twice that with the vectors' spare capacity.
pub const QUEUED_INPUTS: usize = 262_144;
/// Closed incidents `/api/v1/incidents` shows.
const RECENT_CLOSED: usize = 100;
/// Open incidents `/api/v1/incidents` shows (the latest opened).
const SHOWN_OPEN: usize = 1_000;
/// How often the thread closes incidents by the clock: well within the
/// contract's 10 s.
const TICK: Duration = Duration::from_secs(1);

/// One worker batch's inputs, with the policy that judged them.
#[derive(Debug)]
pub struct IncidentInput {
    violations: Vec<Violation>,
    notices: Vec<StartNotice>,
    policy: Arc<LivePolicy>,
}

/// What the control plane reads of the incident thread: the API's view and
/// the metrics' counters, published once per tick (control plane only:
/// the mutex is never taken on the per-packet path).
#[derive(Debug, Default)]
pub struct IncidentView {
    view: Mutex<(Vec<IncidentRecord>, VecDeque<IncidentRecord>)>,
    /// The metrics' counters.
    pub stats: Arc<IncidentStats>,
}

impl IncidentView {
    /// Open incidents (as `update` records) and the latest closed ones,
    /// as the JSON `/api/v1/incidents` serves.
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Document<'a> {
            open: &'a [IncidentRecord],
            closed: Vec<&'a IncidentRecord>,
        }
        let Ok(view) = self.view.lock() else {
            return "{\"open\":[],\"closed\":[]}".into();
        };
        let document = Document {
            open: &view.0,
            closed: view.1.iter().rev().collect(),
        };
        serde_json::to_string(&document).unwrap_or_default()
    }
}

/// The workers' side of the incident thread.
#[derive(Clone, Debug)]
pub struct IncidentQueue {
    sender: Sender<IncidentInput>,
    view: Arc<IncidentView>,
    /// Violations and flow starts queued, against [`QUEUED_INPUTS`].
    queued_inputs: Arc<AtomicUsize>,
}

impl IncidentQueue {
    /// Hands a batch's inputs over; false (and counted) when the queue is
    /// full: the caller then sends its violations to the sinks itself.
    pub fn offer(
        &self,
        violations: &mut Vec<Violation>,
        notices: &mut Vec<StartNotice>,
        policy: &Arc<LivePolicy>,
    ) -> bool {
        if violations.is_empty() && notices.is_empty() {
            return true;
        }
        let inputs = violations.len() + notices.len();
        if self.queued_inputs.fetch_add(inputs, Ordering::Relaxed) + inputs > QUEUED_INPUTS {
            self.queued_inputs.fetch_sub(inputs, Ordering::Relaxed);
            self.view.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        violations.sort_by_key(|v| SortKey::of_violation(v, 0));
        let input = IncidentInput {
            violations: std::mem::take(violations),
            notices: std::mem::take(notices),
            policy: policy.clone(),
        };
        match self.sender.try_send(input) {
            Ok(()) => true,
            Err(TrySendError::Full(input) | TrySendError::Disconnected(input)) => {
                self.queued_inputs.fetch_sub(inputs, Ordering::Relaxed);
                self.view.stats.dropped.fetch_add(1, Ordering::Relaxed);
                *violations = input.violations;
                false
            }
        }
    }
}

/// The running incident thread.
#[derive(Debug)]
pub struct IncidentThread {
    /// The workers' side.
    pub queue: IncidentQueue,
    /// The control plane's side.
    pub view: Arc<IncidentView>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Offers violation events and incident records to every sink.
struct ToSinks<'a> {
    sinks: &'a [SinkHandle],
    policy: &'a LivePolicy,
    closed: &'a mut VecDeque<IncidentRecord>,
}

impl Emit for ToSinks<'_> {
    fn violation(&mut self, _: SortKey, violation: &Violation, incident_id: Option<u64>) {
        let mut event = ViolationEvent::of(violation, self.policy);
        event.incident_id = incident_id.map(HexId);
        let event = Arc::new(SinkEvent::violation(event.into_owned(), violation.ts_ns));
        for sink in self.sinks {
            sink.offer(&event);
        }
    }

    fn record(&mut self, _: SortKey, record: IncidentRecord) {
        if record.state == crate::event::IncidentState::Close {
            if self.closed.len() >= RECENT_CLOSED {
                self.closed.pop_front();
            }
            self.closed.push_back(record.clone());
        }
        let ts_ns = record.timestamp.0;
        let event = Arc::new(SinkEvent {
            record: Record::Incident(Box::new(record)),
            ts_ns,
        });
        for sink in self.sinks {
            sink.offer(&event);
        }
    }
}

/// The capture clock: the latest capture time seen, moved on by the wall
/// clock since (on a wire capture time is the clock; a capture file read
/// at full speed runs ahead of it, then waits).
#[derive(Debug, Default)]
struct CaptureClock {
    latest: u64,
    seen_at: Option<Instant>,
}

impl CaptureClock {
    fn saw(&mut self, ts_ns: u64) {
        if ts_ns > self.latest {
            self.latest = ts_ns;
            self.seen_at = Some(Instant::now());
        }
    }

    fn now(&self) -> Option<u64> {
        let seen_at = self.seen_at?;
        Some(
            self.latest
                .saturating_add(seen_at.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64),
        )
    }
}

impl IncidentThread {
    /// Starts the thread; `salt` (the start time) makes incident ids
    /// differ between runs, as flow ids.
    pub fn start(
        settings: &IncidentSettings,
        salt: u64,
        sinks: Arc<Vec<SinkHandle>>,
        inventory: Option<Arc<Inventory>>,
    ) -> std::io::Result<IncidentThread> {
        let (sender, receiver) = crossbeam_channel::bounded(QUEUE);
        let view = Arc::new(IncidentView::default());
        let stop = Arc::new(AtomicBool::new(false));
        let queued_inputs = Arc::new(AtomicUsize::new(0));
        let fold = Fold::new(settings, salt).whole();
        let thread = {
            let (view, stop, queued) = (view.clone(), stop.clone(), queued_inputs.clone());
            let inputs = Inputs { receiver, queued };
            std::thread::Builder::new()
                .name("segwatch-incidents".into())
                .spawn(move || run(fold, &inputs, &sinks, inventory.as_deref(), &view, &stop))?
        };
        Ok(IncidentThread {
            queue: IncidentQueue {
                sender,
                view: view.clone(),
                queued_inputs,
            },
            view,
            stop,
            thread,
        })
    }

    /// Folds what is queued, closes every incident still open, and stops
    /// (the daemon stops: contract section 7, every incident is closed).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        drop(self.queue);
        let _ = self.thread.join();
    }
}

/// The incident thread's side of the queue.
struct Inputs {
    receiver: Receiver<IncidentInput>,
    queued: Arc<AtomicUsize>,
}

fn run(
    mut fold: Fold,
    inputs: &Inputs,
    sinks: &[SinkHandle],
    inventory: Option<&Inventory>,
    view: &IncidentView,
    stop: &AtomicBool,
) {
    let devices: &dyn Devices = match inventory {
        Some(inventory) => inventory,
        None => &NoDevices,
    };
    let mut clock = CaptureClock::default();
    let mut closed = VecDeque::new();
    let mut policy: Option<Arc<LivePolicy>> = None;
    let mut next_tick = Instant::now() + TICK;
    loop {
        let wait = next_tick.saturating_duration_since(Instant::now());
        let receiver = &inputs.receiver;
        match receiver.recv_timeout(wait) {
            Ok(input) => {
                inputs.queued.fetch_sub(
                    input.violations.len() + input.notices.len(),
                    Ordering::Relaxed,
                );
                view.stats
                    .queued
                    .store(receiver.len() as u64, Ordering::Relaxed);
                for violation in &input.violations {
                    clock.saw(violation.ts_ns);
                }
                for notice in &input.notices {
                    clock.saw(notice.ts_ns);
                }
                let mut out = ToSinks {
                    sinks,
                    policy: &input.policy,
                    closed: &mut closed,
                };
                fold.batch_live(
                    &input.violations,
                    &input.notices,
                    &input.policy,
                    devices,
                    &mut out,
                );
                policy = Some(input.policy);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + TICK;
            if let (Some(now), Some(policy)) = (clock.now(), &policy) {
                let mut out = ToSinks {
                    sinks,
                    policy,
                    closed: &mut closed,
                };
                fold.close_by_clock(now, u64::MAX, devices, &mut out);
            }
            publish(&fold, &closed, clock.now().unwrap_or(0), devices, view);
        }
        if stop.load(Ordering::Relaxed) && inputs.receiver.is_empty() {
            break;
        }
    }
    if let Some(policy) = &policy {
        let mut out = ToSinks {
            sinks,
            policy,
            closed: &mut closed,
        };
        let now = clock.now().unwrap_or(0);
        fold.finish(&[], now, policy, devices, &mut out);
    }
    publish(&fold, &closed, clock.now().unwrap_or(0), devices, view);
}

fn publish(
    fold: &Fold,
    closed: &VecDeque<IncidentRecord>,
    now: u64,
    devices: &dyn Devices,
    view: &IncidentView,
) {
    let open = fold.open_records(now, devices, SHOWN_OPEN);
    if let Ok(mut shown) = view.view.lock() {
        *shown = (open, closed.clone());
    }
    view.stats.publish(fold.counters());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notices(count: usize) -> Vec<StartNotice> {
        let notice = StartNotice {
            position: 0,
            ts_ns: 0,
            ipv6: false,
            protocol: 6,
            port: Some(443),
            initiator: 1,
            responder: 2,
            zones: (0, 1),
        };
        vec![notice; count]
    }

    /// The queue is bounded by what its batches hold, not only by their
    /// number: a batch past [`QUEUED_INPUTS`] is refused and counted, and
    /// room comes back as the thread takes batches.
    #[test]
    fn the_queue_refuses_batches_past_its_inputs_bound() {
        let (policy, _) = super::super::PolicyHandle::embedded(
            crate::synth::policy::EXAMPLE_HOSPITAL,
            "example-hospital.toml",
        )
        .unwrap();
        let policy = policy.current();
        let (sender, receiver) = crossbeam_channel::bounded(QUEUE);
        let queue = IncidentQueue {
            sender,
            view: Arc::new(IncidentView::default()),
            queued_inputs: Arc::new(AtomicUsize::new(0)),
        };
        let inputs = Inputs {
            receiver,
            queued: queue.queued_inputs.clone(),
        };
        let half = QUEUED_INPUTS / 2;
        for _ in 0..2 {
            assert!(queue.offer(&mut Vec::new(), &mut notices(half), &policy));
        }
        let mut refused = notices(1);
        assert!(!queue.offer(&mut Vec::new(), &mut refused, &policy));
        assert_eq!(queue.view.stats.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(inputs.receiver.len(), 2, "far below the batch bound");
        // The thread's side gives the room back as it takes a batch.
        let taken = inputs.receiver.recv().unwrap();
        inputs
            .queued
            .fetch_sub(taken.notices.len(), Ordering::Relaxed);
        assert!(queue.offer(&mut Vec::new(), &mut notices(1), &policy));
        assert_eq!(inputs.queued.load(Ordering::Relaxed), half + 1);
    }
}
