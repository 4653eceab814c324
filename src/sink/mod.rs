//! Event sinks: where violation events go once the hot path has produced
//! them: a JSON-lines file (or stdout) and syslog feeds to the SIEM.
//!
//! Every sink owns a bounded queue and a thread. [`SinkHandle::offer`] never
//! blocks: over the bound an event is dropped and counted, so a slow or dead
//! receiver never slows capture. The thread takes events in order and
//! delivers them; a feed that loses its receiver keeps the queued events and
//! delivers them, in order, once it is back.

#![forbid(unsafe_code)]

mod file;
mod open;
pub mod syslog;

pub use file::{spawn_events_file, spawn_stdout};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::event::{Record, ViolationEvent};

/// One record (a violation event or an incident record) on its way to the
/// sinks, shared by all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkEvent {
    /// The contract's event or incident record.
    pub record: Record,
    /// Capture time of the packet that produced it, nanoseconds since the epoch.
    pub ts_ns: u64,
}

impl SinkEvent {
    /// A violation event.
    pub fn violation(event: ViolationEvent<'static>, ts_ns: u64) -> SinkEvent {
        SinkEvent {
            record: Record::Violation(Box::new(event)),
            ts_ns,
        }
    }
}

/// One kind of record a sink takes (`records` in the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordKind {
    /// Violation events.
    Violations,
    /// Incident records.
    Incidents,
}

/// Which records a sink takes (contract section 7, "where they go").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordFilter {
    /// Violation events.
    pub violations: bool,
    /// Incident records.
    pub incidents: bool,
    /// Excepted records too (the events file and stdout always; a syslog
    /// feed only with `excepted = true`).
    pub excepted: bool,
}

impl Default for RecordFilter {
    /// Violations, excepted ones included: what existing configurations
    /// get.
    fn default() -> Self {
        RecordFilter {
            violations: true,
            incidents: false,
            excepted: true,
        }
    }
}

impl RecordFilter {
    /// The filter of a `records` list (empty: the default, violations).
    pub fn of(records: &[RecordKind], excepted: bool) -> RecordFilter {
        if records.is_empty() {
            return RecordFilter {
                excepted,
                ..RecordFilter::default()
            };
        }
        RecordFilter {
            violations: records.contains(&RecordKind::Violations),
            incidents: records.contains(&RecordKind::Incidents),
            excepted,
        }
    }

    /// True when the sink takes `record`.
    pub fn accepts(&self, record: &Record) -> bool {
        let kind = match record {
            Record::Violation(_) => self.violations,
            Record::Incident(_) => self.incidents,
        };
        kind && (self.excepted || !record.is_excepted())
    }
}

/// Counters of one sink, read at scrape time.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Events taken but not yet delivered or given up: those waiting in
    /// the queue and those the sink's thread holds.
    pub queued: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Events delivered (written to the socket or file).
    pub sent: AtomicU64,
    /// Events a failed write may have lost (see the README on plain TCP).
    pub lost: AtomicU64,
    /// Events in the feed's disk spool, not yet delivered.
    pub spool_events: AtomicU64,
    /// Bytes the feed's disk spool takes.
    pub spool_bytes: AtomicU64,
    /// Events the disk spool refused: it was at its bound, or its disk
    /// failed.
    pub spool_dropped: AtomicU64,
}

/// What the control plane asks of a sink's thread, beside events.
#[derive(Debug)]
enum Control {
    /// Reopen the output file (SIGHUP, for logrotate).
    Reopen,
    /// Deliver what is queued until this instant, then stop.
    Shutdown(Instant),
    /// The feed's disk spool, opened once privileges are dropped.
    Spool(Box<syslog::Spool>),
}

/// A running sink.
#[derive(Debug)]
pub struct SinkHandle {
    name: String,
    filter: RecordFilter,
    stats: Arc<SinkStats>,
    events: Sender<Arc<SinkEvent>>,
    control: Sender<Control>,
    done: Receiver<u64>,
    thread: JoinHandle<()>,
}

impl SinkHandle {
    /// Starts a sink thread named `name` that runs `deliver` on its inbox.
    /// `deliver` returns the number of events it left undelivered.
    pub(crate) fn spawn(
        name: String,
        queue: usize,
        deliver: impl FnOnce(Inbox) -> u64 + Send + 'static,
    ) -> Result<SinkHandle, SinkError> {
        let (events, events_rx) = crossbeam_channel::bounded(queue.max(1));
        let (control, control_rx) = crossbeam_channel::unbounded();
        let (done_tx, done) = crossbeam_channel::bounded(1);
        let stats = Arc::new(SinkStats::default());
        let inbox = Inbox {
            events: events_rx,
            control: control_rx,
            stats: stats.clone(),
            deadline: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("segwatch-{name}"))
            .spawn(move || {
                let undelivered = deliver(inbox);
                let _ = done_tx.send(undelivered);
            })
            .map_err(|e| SinkError(format!("{name}: cannot start its thread: {e}")))?;
        Ok(SinkHandle {
            name,
            filter: RecordFilter::default(),
            stats,
            events,
            control,
            done,
            thread,
        })
    }

    /// The sink's name, as metric labels show it (`events_file`, `stdout`,
    /// `syslog0`, ...): never an address.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }

    /// Takes only the records `filter` accepts.
    pub fn with_filter(mut self, filter: RecordFilter) -> SinkHandle {
        self.filter = filter;
        self
    }

    /// Which records it takes.
    pub fn filter(&self) -> RecordFilter {
        self.filter
    }

    /// Queues an event; never blocks. Over the bound the event is dropped
    /// and counted.
    pub fn offer(&self, event: &Arc<SinkEvent>) {
        if !self.filter.accepts(&event.record) {
            return;
        }
        // Counted before the send so that the thread's decrement can never
        // run first and wrap the gauge below zero.
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        match self.events.try_send(event.clone()) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.queued.fetch_sub(1, Ordering::Relaxed);
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands a feed its disk spool (opened by the control plane once
    /// privileges are dropped); a feed configured with a spool waits for it
    /// before it takes any event, so that what an earlier run spooled goes
    /// out first.
    pub fn attach_spool(&self, spool: syslog::Spool) {
        let _ = self.control.send(Control::Spool(Box::new(spool)));
    }

    /// Asks the sink to reopen its file (SIGHUP, for logrotate); sinks
    /// without a file ignore it.
    pub fn reopen(&self) {
        let _ = self.control.send(Control::Reopen);
    }

    /// Stops taking events, delivers what is queued within `grace`, and
    /// stops. Returns the number of events left undelivered.
    pub fn shutdown(self, grace: Duration) -> u64 {
        let deadline = Instant::now() + grace;
        let _ = self.control.send(Control::Shutdown(deadline));
        // Closing the queue tells the thread that no event will follow.
        drop(self.events);
        // A little beyond the deadline: the thread notices it between two
        // writes, and a write has its own timeout.
        match self.done.recv_timeout(grace + Duration::from_secs(1)) {
            Ok(undelivered) => {
                let _ = self.thread.join();
                undelivered
            }
            // Stuck in a write: leave the thread behind, the process is
            // about to exit; what it held is lost.
            Err(_) => self.stats.queued.load(Ordering::Relaxed).max(1),
        }
    }
}

/// A sink that could not start: one line naming the sink and the problem.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// A sink thread's view of its queue and of the control plane's requests.
#[derive(Debug)]
pub(crate) struct Inbox {
    events: Receiver<Arc<SinkEvent>>,
    control: Receiver<Control>,
    stats: Arc<SinkStats>,
    /// Set once shutdown is asked: deliver until then.
    deadline: Option<Instant>,
}

/// What the inbox has next.
#[derive(Debug)]
pub(crate) enum Next {
    /// An event to deliver.
    Event(Arc<SinkEvent>),
    /// Reopen the output.
    Reopen,
    /// Nothing more to deliver: the queue is closed and empty, or the
    /// shutdown deadline has passed.
    Stop,
    /// Nothing within the wait asked for.
    Idle,
}

impl Inbox {
    /// The sink's counters.
    pub(crate) fn stats(&self) -> &SinkStats {
        &self.stats
    }

    /// True once shutdown was asked and its deadline has passed.
    pub(crate) fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    fn take_control(&mut self, control: Control) -> Option<Next> {
        match control {
            Control::Reopen => Some(Next::Reopen),
            Control::Shutdown(deadline) => {
                self.deadline = Some(deadline);
                None
            }
            // Only asked for by `wait_spool`.
            Control::Spool(_) => None,
        }
    }

    /// Waits for the feed's disk spool; `None` when the sink is stopped
    /// (or its handle dropped) before it comes.
    pub(crate) fn wait_spool(&mut self) -> Option<Box<syslog::Spool>> {
        loop {
            match self.control.recv() {
                Ok(Control::Spool(spool)) => return Some(spool),
                Ok(Control::Reopen) => {}
                Ok(Control::Shutdown(deadline)) => {
                    self.deadline = Some(deadline);
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    fn took(&self, event: Arc<SinkEvent>) -> Next {
        Next::Event(event)
    }

    /// Marks `count` events as done with (delivered or given up), so the
    /// queue depth gauge counts only what is still waiting.
    pub(crate) fn finished(&self, count: u64) {
        self.stats.queued.fetch_sub(count, Ordering::Relaxed);
    }

    /// Waits up to `wait` (forever with `None`) for the next event or
    /// request.
    pub(crate) fn next(&mut self, wait: Option<Duration>) -> Next {
        let until = wait.map(|w| Instant::now() + w);
        loop {
            if self.out_of_time() {
                return Next::Stop;
            }
            if let Ok(control) = self.control.try_recv()
                && let Some(next) = self.take_control(control)
            {
                return next;
            }
            // Wake up for the shutdown deadline even when nothing arrives.
            let limit = [until, self.deadline].into_iter().flatten().min();
            let mut select = crossbeam_channel::Select::new();
            let events = select.recv(&self.events);
            let control = select.recv(&self.control);
            let ready = match limit {
                Some(limit) => match select.select_deadline(limit) {
                    Ok(op) => op,
                    Err(_) if self.out_of_time() => return Next::Stop,
                    Err(_) => return Next::Idle,
                },
                None => select.select(),
            };
            match ready.index() {
                i if i == events => match ready.recv(&self.events) {
                    Ok(event) => return self.took(event),
                    // Closed and drained.
                    Err(_) => return Next::Stop,
                },
                i if i == control => match ready.recv(&self.control) {
                    Ok(control) => {
                        if let Some(next) = self.take_control(control) {
                            return next;
                        }
                    }
                    // The handle is gone without a shutdown: drain what
                    // is queued.
                    Err(_) => return self.drain_one(),
                },
                _ => unreachable!("two operations were selected"),
            }
        }
    }

    fn drain_one(&mut self) -> Next {
        match self.events.recv_timeout(Duration::from_millis(100)) {
            Ok(event) => self.took(event),
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => Next::Stop,
        }
    }

    /// The next event if one is already queued (to batch writes).
    pub(crate) fn ready_event(&mut self) -> Option<Arc<SinkEvent>> {
        self.events.try_recv().ok()
    }

    /// Waits `wait` unless the control plane asks something sooner;
    /// returns early (true) when shutdown's deadline has passed.
    pub(crate) fn pause(&mut self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        loop {
            if self.out_of_time() {
                return true;
            }
            let limit = self.deadline.map_or(until, |d| d.min(until));
            match self.control.recv_deadline(limit) {
                // A file reopen means nothing to a feed that is waiting.
                Ok(Control::Reopen | Control::Spool(_)) => {}
                Ok(Control::Shutdown(deadline)) => self.deadline = Some(deadline),
                Err(RecvTimeoutError::Timeout) => return self.out_of_time(),
                // The handle is gone: nobody can ask anything sooner.
                Err(RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    return self.out_of_time();
                }
            }
            if Instant::now() >= until {
                return self.out_of_time();
            }
        }
    }

    /// Events still queued, counted as undelivered when the sink stops.
    pub(crate) fn left(&self) -> u64 {
        self.events.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    pub(crate) fn event(n: u16) -> Arc<SinkEvent> {
        Arc::new(SinkEvent::violation(
            ViolationEvent {
                timestamp: crate::event::Timestamp::parse("2026-11-28T10:00:00.000001Z").unwrap(),
                event_type: Cow::Borrowed("violation"),
                flow_id: crate::event::HexId(u64::from(n)),
                proto: Cow::Borrowed("udp"),
                src_ip: "10.0.0.1".parse().unwrap(),
                src_port: Some(40000),
                dest_ip: "10.0.0.2".parse().unwrap(),
                dest_port: Some(n),
                vlan: None,
                src_zone: Cow::Borrowed("a"),
                dest_zone: Cow::Borrowed("b"),
                service: None,
                rule: Cow::Borrowed("default"),
                severity: Cow::Borrowed("low"),
                src_criticality: None,
                dest_criticality: None,
                app: None,
                dicom: None,
                hl7: None,
                tls: None,
                http: None,
                tunnel: None,
                exception: None,
                incident_id: None,
            },
            0,
        ))
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let (release, released) = crossbeam_channel::bounded::<()>(0);
        let sink = SinkHandle::spawn("test".into(), 4, move |mut inbox| {
            // A receiver that is stuck until the test lets it go.
            let _ = released.recv();
            let mut taken = 0;
            while let Next::Event(_) = inbox.next(None) {
                taken += 1;
                inbox.finished(1);
            }
            taken
        })
        .unwrap();
        for n in 0..10 {
            sink.offer(&event(n));
        }
        let stats = sink.stats().clone();
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 6);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 4);
        release.send(()).unwrap();
        // The closure returns what it took; shutdown reports it back.
        assert_eq!(sink.shutdown(Duration::from_secs(5)), 4);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn shutdown_gives_up_at_its_deadline() {
        let sink = SinkHandle::spawn("stuck".into(), 8, move |mut inbox| {
            // Never delivers: waits for the deadline like a feed whose
            // receiver is down.
            while !inbox.pause(Duration::from_millis(10)) {}
            inbox.left()
        })
        .unwrap();
        for n in 0..3 {
            sink.offer(&event(n));
        }
        let started = Instant::now();
        assert_eq!(sink.shutdown(Duration::from_millis(200)), 3);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
