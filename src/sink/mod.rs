//! Event sinks: where violation events go once the hot path has produced
//! them. (Being written: this file states the interface.)
//!
//! Every sink owns a bounded queue and a thread. [`SinkHandle::offer`] never
//! blocks: over the bound an event is dropped and counted, so a slow or dead
//! receiver never slows capture.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use crate::event::ViolationEvent;

/// One violation event on its way to the sinks, shared by all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkEvent {
    /// The contract's event.
    pub event: ViolationEvent<'static>,
    /// Capture time of the packet that produced it, nanoseconds since the epoch.
    pub ts_ns: u64,
}

/// Counters of one sink, read at scrape time.
#[derive(Debug, Default)]
pub struct SinkStats {
    /// Events waiting in the queue now.
    pub queued: AtomicU64,
    /// Events dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Events delivered (written to the socket or file).
    pub sent: AtomicU64,
    /// Events a failed write may have lost (see the README on plain TCP).
    pub lost: AtomicU64,
}

/// A running sink.
#[derive(Debug)]
pub struct SinkHandle {
    name: String,
    stats: Arc<SinkStats>,
}

impl SinkHandle {
    /// The sink's name, as metric labels show it (`events-file`,
    /// `syslog-tcp://127.0.0.1:6514`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its counters.
    pub fn stats(&self) -> &Arc<SinkStats> {
        &self.stats
    }

    /// Queues an event; never blocks.
    pub fn offer(&self, _event: &Arc<SinkEvent>) {}

    /// Asks the sink to reopen its file (SIGHUP, for logrotate); sinks
    /// without a file ignore it.
    pub fn reopen(&self) {}

    /// Stops taking events, delivers what is queued within `grace`, and
    /// stops. Returns the number of events left undelivered.
    pub fn shutdown(self, _grace: Duration) -> u64 {
        0
    }
}

/// A sink that could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SinkError(pub String);

/// Starts the events-file sink. (Being written.)
pub fn spawn_events_file(path: &std::path::Path, _queue: usize) -> Result<SinkHandle, SinkError> {
    Err(SinkError(format!(
        "{}: events file sink not built yet",
        path.display()
    )))
}
