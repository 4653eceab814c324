//! Syslog feeds to the SOC's SIEM: UDP, TCP with RFC 6587 octet counting,
//! and TLS (rustls), in the formats of contract section 5.
//!
//! A feed's thread takes events from its bounded queue in order and holds
//! the one it is sending until it is written. When the receiver goes away
//! the thread reconnects with exponential backoff (100 ms up to 5 s) and
//! leaves the rest queued meanwhile, so events produced during an outage
//! (within the queue's bound) go out after the reconnect, in order, each
//! once. Before each write it looks whether the receiver has closed the
//! connection, so that a receiver that stopped cleanly loses nothing.
//!
//! What plain TCP cannot promise: bytes written just before a receiver
//! died sit in the kernel and are lost with the connection. The feed asks
//! the kernel (SIOCOUTQ) how many written bytes the receiver has not yet
//! acknowledged, and when a connection fails it counts the messages still
//! unacknowledged as lost (`segwatch_sink_events_lost_total`).
//!
//! Each feed connects once as it starts (and for TLS completes the
//! handshake) and logs the outcome, so that an unreachable receiver or a
//! certificate that does not verify shows when the daemon starts; TLS
//! settings that cannot work at all (an unreadable CA file) stop the start.

mod format;
mod incident;
mod settings;
mod spool;
mod transport;

pub use format::{Format, Formatter};
pub use settings::{
    DEFAULT_SD_ID, Endpoint, Facility, FeedSettings, Scheme, SdId, SettingsError, SpoolSettings,
    UrlProblem,
};
pub use spool::{Spool, SpoolError};
pub use transport::TlsError;

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Inbox, Next, SinkError, SinkHandle};
use transport::{Connection, TlsSettings};

/// First wait before reconnecting; doubled per failure up to the maximum.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest wait between two connection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Messages formatted ahead of the one being sent, to write a burst with
/// few system calls.
const BATCH: usize = 256;

/// A syslog feed, checked and ready to start.
#[derive(Debug)]
pub struct Feed {
    endpoint: Endpoint,
    formatter: Formatter,
    tls: Option<TlsSettings>,
    /// Waits for its disk spool before taking events.
    spooled: bool,
}

/// A feed that cannot start: its TLS settings cannot work, or its thread
/// cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// TLS settings that cannot work (a CA file that cannot be read, ...).
    #[error("syslog feed {endpoint}: {source}")]
    Tls {
        /// The feed's receiver.
        endpoint: Endpoint,
        /// What is wrong.
        source: TlsError,
    },
    /// The feed's thread could not start.
    #[error(transparent)]
    Spawn(#[from] SinkError),
}

impl Feed {
    /// Prepares a feed from its settings (checked as they were read): the
    /// header fields, and for TLS the trust roots, the client certificate
    /// and the server name.
    pub fn build(settings: &FeedSettings) -> Result<Feed, FeedError> {
        let endpoint = settings.url.clone();
        let spooled = settings.spool_at.is_some() && endpoint.scheme != Scheme::Udp;
        let hostname = match &settings.hostname {
            Some(name) => format::header_token(name, 255),
            None => format::header_token(&local_hostname(), 255),
        };
        let tls = match endpoint.scheme {
            Scheme::Tls => Some(
                TlsSettings::build(settings).map_err(|source| FeedError::Tls {
                    endpoint: endpoint.clone(),
                    source,
                })?,
            ),
            Scheme::Udp | Scheme::Tcp => None,
        };
        Ok(Feed {
            endpoint,
            formatter: Formatter {
                format: settings.format,
                facility: settings.facility.number(),
                hostname,
                sd_id: settings.sd_id.as_str().to_owned(),
                procid: std::process::id(),
            },
            tls,
            spooled,
        })
    }

    /// Starts the feed's thread; `index` names it (`syslog0`, ...) in
    /// metric labels, which never hold the receiver's address.
    pub fn spawn(self, index: usize, queue: usize) -> Result<SinkHandle, SinkError> {
        SinkHandle::spawn(format!("syslog{index}"), queue, move |inbox| {
            deliver(self, inbox)
        })
    }

    /// Formats one event as it goes on the wire: framed by its length
    /// over TCP and TLS (RFC 6587 octet counting), bare over UDP.
    fn frame(&self, event: &super::SinkEvent, out: &mut Vec<u8>) {
        let mut message = String::with_capacity(512);
        self.formatter.write_record(&event.record, &mut message);
        out.clear();
        if self.endpoint.scheme != Scheme::Udp {
            out.extend_from_slice(format!("{} ", message.len()).as_bytes());
        }
        out.extend_from_slice(message.as_bytes());
    }
}

/// The machine's host name, for HOSTNAME when none is configured.
fn local_hostname() -> String {
    crate::sys::hostname().unwrap_or_else(|| "-".into())
}

/// The feed's connection and what it knows about the receiver.
struct Link {
    connection: Option<Connection>,
    /// Lengths of messages written on this connection that the receiver
    /// has not acknowledged as far as the feed last looked.
    unacknowledged: VecDeque<usize>,
    backoff: Duration,
    /// True while the receiver is unreachable (to log once per outage).
    down: bool,
    /// True while UDP sends fail (to log once per streak).
    udp_failing: bool,
}

impl Link {
    /// Connects once as the feed starts (for TLS, with the handshake, each
    /// bounded by a timeout), so that an unreachable receiver or a
    /// certificate that does not verify shows in the log when the daemon
    /// starts rather than at the first event. A failure does not stop the
    /// feed: events queue, and it connects again when it has some to send.
    fn check_at_start(&mut self, feed: &Feed) {
        match Connection::open(&feed.endpoint, feed.tls.as_ref()) {
            Ok(connection) => {
                let outcome = match feed.endpoint.scheme {
                    Scheme::Tls => "Syslog receiver reachable; its TLS certificate verified",
                    Scheme::Tcp => "Syslog receiver reachable",
                    // Nothing answers a datagram: only the address is known good.
                    Scheme::Udp => "Syslog feed ready (UDP: the receiver cannot be checked)",
                };
                tracing::info!(feed = %feed.endpoint, "{outcome}");
                self.connection = Some(connection);
            }
            Err(error) => {
                tracing::warn!(
                    feed = %feed.endpoint,
                    "Syslog receiver unreachable: {error}; queueing events and retrying"
                );
                self.down = true;
            }
        }
    }

    /// One attempt to connect (when not connected); true when connected.
    fn try_connect(&mut self, feed: &Feed) -> bool {
        if self.connection.is_some() {
            return true;
        }
        match Connection::open(&feed.endpoint, feed.tls.as_ref()) {
            Ok(connection) => {
                if std::mem::take(&mut self.down) {
                    tracing::info!(feed = %feed.endpoint, "Syslog feed reconnected; sending what was queued");
                }
                self.connection = Some(connection);
                self.backoff = BACKOFF_START;
                true
            }
            Err(error) => {
                if !std::mem::replace(&mut self.down, true) {
                    tracing::warn!(
                        feed = %feed.endpoint,
                        "Syslog receiver unreachable: {error}; queueing events and retrying"
                    );
                } else {
                    tracing::debug!(feed = %feed.endpoint, "Reconnect failed: {error}");
                }
                false
            }
        }
    }

    /// The wait before the next attempt, doubled for the one after.
    fn next_backoff(&mut self) -> Duration {
        let wait = self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
        wait
    }

    /// Connects if not connected, waiting between attempts; false when the
    /// shutdown deadline passed first.
    fn ensure(&mut self, feed: &Feed, inbox: &mut Inbox) -> bool {
        while !self.try_connect(feed) {
            let wait = self.next_backoff();
            if inbox.pause(wait) {
                return false;
            }
        }
        true
    }

    /// Forgets acknowledged messages: of those written, only the newest
    /// ones covering the kernel's unacknowledged bytes may still be lost.
    fn trim_acknowledged(&mut self) {
        let Some(unacked_bytes) = self
            .connection
            .as_ref()
            .and_then(Connection::unacknowledged)
        else {
            return;
        };
        let mut total: usize = self.unacknowledged.iter().sum();
        while let Some(&oldest) = self.unacknowledged.front() {
            if total - oldest < unacked_bytes {
                break;
            }
            total -= oldest;
            self.unacknowledged.pop_front();
        }
    }

    /// Drops a failed connection, counting as lost what it had not
    /// confirmed.
    fn fail(&mut self, feed: &Feed, inbox: &Inbox, why: &str) {
        self.trim_acknowledged();
        let lost = self.unacknowledged.len() as u64;
        self.unacknowledged.clear();
        self.connection = None;
        if lost > 0 {
            inbox.stats().lost.fetch_add(lost, Ordering::Relaxed);
        }
        tracing::warn!(
            feed = %feed.endpoint,
            lost,
            "Syslog connection lost: {why}; reconnecting"
        );
        self.down = true;
    }
}

/// The feed's thread: returns the number of events left neither delivered
/// nor spooled.
fn deliver(feed: Feed, mut inbox: Inbox) -> u64 {
    let mut link = Link {
        connection: None,
        unacknowledged: VecDeque::new(),
        backoff: BACKOFF_START,
        down: false,
        udp_failing: false,
    };
    link.check_at_start(&feed);
    let mut spool = if feed.spooled {
        inbox.wait_spool()
    } else {
        None
    };
    if let Some(spool) = spool.as_deref() {
        report(spool, &inbox);
        if !spool.is_empty() {
            tracing::info!(
                feed = %feed.endpoint,
                events = spool.events(),
                "Syslog feed's spool holds events from before: sending them first"
            );
        }
    }
    // Framed messages taken from the queue, oldest first, not yet written.
    let mut pending: VecDeque<Vec<u8>> = VecDeque::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    loop {
        if let Some(disk) = spool.as_deref_mut()
            && !disk.is_empty()
        {
            if from_spool(&feed, &mut inbox, &mut link, disk) {
                return finish(&feed, &mut inbox, &mut pending, spool.as_deref_mut());
            }
            continue;
        }
        if pending.is_empty() {
            match inbox.next(None) {
                Next::Event(event) => {
                    let mut message = spare.pop().unwrap_or_default();
                    feed.frame(&event, &mut message);
                    pending.push_back(message);
                    while pending.len() < BATCH
                        && let Some(event) = inbox.ready_event()
                    {
                        let mut message = spare.pop().unwrap_or_default();
                        feed.frame(&event, &mut message);
                        pending.push_back(message);
                    }
                }
                Next::Reopen | Next::Idle => continue,
                Next::Stop => {
                    return finish(&feed, &mut inbox, &mut pending, spool.as_deref_mut());
                }
            }
        }
        while !pending.is_empty() {
            if inbox.out_of_time() {
                return finish(&feed, &mut inbox, &mut pending, spool.as_deref_mut());
            }
            match spool.as_deref_mut() {
                // The receiver is away: what is taken goes to disk, and the
                // feed goes on from there.
                Some(disk) if !link.try_connect(&feed) => {
                    to_spool(&feed, &inbox, disk, pending.drain(..));
                    break;
                }
                Some(_) => {}
                None if !link.ensure(&feed, &mut inbox) => {
                    return finish(&feed, &mut inbox, &mut pending, None);
                }
                None => {}
            }
            let (Some(connection), Some(message)) = (link.connection.as_mut(), pending.front())
            else {
                continue;
            };
            if let Some(why) = connection.closed_by_peer() {
                link.fail(&feed, &inbox, &why);
                continue;
            }
            match connection.send(message) {
                Ok(()) => {
                    if feed.endpoint.scheme != Scheme::Udp {
                        link.unacknowledged.push_back(message.len());
                        link.trim_acknowledged();
                    } else if std::mem::take(&mut link.udp_failing) {
                        tracing::info!(feed = %feed.endpoint, "Syslog UDP sends work again");
                    }
                    inbox.stats().sent.fetch_add(1, Ordering::Relaxed);
                    inbox.finished(1);
                    if let Some(done) = pending.pop_front() {
                        spare.push(done);
                    }
                }
                Err(error) if feed.endpoint.scheme == Scheme::Udp => {
                    // A datagram is not resent: the receiver may have got it
                    // (an ICMP error can belong to an earlier one).
                    inbox.stats().lost.fetch_add(1, Ordering::Relaxed);
                    inbox.finished(1);
                    if !std::mem::replace(&mut link.udp_failing, true) {
                        tracing::warn!(feed = %feed.endpoint, "Syslog UDP send failed: {error}");
                    }
                    if let Some(done) = pending.pop_front() {
                        spare.push(done);
                    }
                }
                // The message is kept and sent whole on the next connection:
                // a frame cut short on the old one is discarded by the
                // receiver, so nothing arrives twice.
                Err(error) => link.fail(&feed, &inbox, &error.to_string()),
            }
        }
    }
}

/// Publishes the spool's size.
fn report(spool: &Spool, inbox: &Inbox) {
    let stats = inbox.stats();
    stats.spool_events.store(spool.events(), Ordering::Relaxed);
    stats
        .spool_bytes
        .store(spool.disk_bytes(), Ordering::Relaxed);
}

/// Writes `messages` (taken from the queue) to the spool and waits until
/// they are on disk; those it refuses (at its bound, or a failing disk)
/// are counted as dropped.
fn to_spool(
    feed: &Feed,
    inbox: &Inbox,
    spool: &mut Spool,
    messages: impl IntoIterator<Item = Vec<u8>>,
) -> u64 {
    let (mut taken, mut refused) = (0, 0);
    for message in messages {
        taken += 1;
        if !spool.push(&message) {
            refused += 1;
        }
    }
    if let Err((error, lost)) = spool.commit() {
        refused += lost;
        tracing::error!(feed = %feed.endpoint, "Cannot write the feed's spool: {error}; dropping");
    }
    if refused > 0 {
        inbox
            .stats()
            .spool_dropped
            .fetch_add(refused, Ordering::Relaxed);
        tracing::warn!(
            feed = %feed.endpoint,
            refused,
            "Syslog feed's spool is full: new events are dropped until it drains"
        );
    }
    inbox.finished(taken);
    report(spool, inbox);
    refused
}

/// Moves what is already queued to the spool, formatted as it will be sent.
fn spool_queued(feed: &Feed, inbox: &mut Inbox, spool: &mut Spool) -> u64 {
    let mut messages = Vec::new();
    while messages.len() < BATCH * 4
        && let Some(event) = inbox.ready_event()
    {
        let mut message = Vec::new();
        feed.frame(&event, &mut message);
        messages.push(message);
    }
    if messages.is_empty() {
        return 0;
    }
    to_spool(feed, inbox, spool, messages)
}

/// Delivers from the spool while it holds events, spooling what arrives
/// meanwhile behind them (so that order holds); returns true when the
/// sink must stop.
fn from_spool(feed: &Feed, inbox: &mut Inbox, link: &mut Link, spool: &mut Spool) -> bool {
    loop {
        spool_queued(feed, inbox, spool);
        if inbox.out_of_time() {
            return true;
        }
        if spool.is_empty() {
            return false;
        }
        if !link.try_connect(feed) {
            // Wait before the next attempt, spooling what arrives.
            let until = std::time::Instant::now() + link.next_backoff();
            loop {
                let left = until.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                match inbox.next(Some(left)) {
                    Next::Event(event) => {
                        let mut message = Vec::new();
                        feed.frame(&event, &mut message);
                        to_spool(feed, inbox, spool, [message]);
                        spool_queued(feed, inbox, spool);
                    }
                    Next::Reopen => {}
                    Next::Idle => break,
                    // Nothing more will come: wait out the backoff unless
                    // the deadline comes first.
                    Next::Stop if !inbox.out_of_time() => {
                        if inbox.pause(left) {
                            return true;
                        }
                        break;
                    }
                    Next::Stop => return true,
                }
            }
            continue;
        }
        let batch = match spool.peek(BATCH) {
            Ok(batch) => batch,
            Err((error, lost)) => {
                inbox
                    .stats()
                    .spool_dropped
                    .fetch_add(lost, Ordering::Relaxed);
                tracing::error!(feed = %feed.endpoint, "Cannot read the feed's spool: {error}");
                if inbox.pause(BACKOFF_MAX) {
                    return true;
                }
                continue;
            }
        };
        let mut sent = Vec::with_capacity(batch.len());
        for message in &batch {
            if inbox.out_of_time() {
                break;
            }
            let Some(connection) = link.connection.as_mut() else {
                break;
            };
            if let Some(why) = connection.closed_by_peer() {
                link.fail(feed, inbox, &why);
                break;
            }
            match connection.send(message) {
                Ok(()) => {
                    link.unacknowledged.push_back(message.len());
                    link.trim_acknowledged();
                    inbox.stats().sent.fetch_add(1, Ordering::Relaxed);
                    sent.push(message.len());
                }
                Err(error) => {
                    link.fail(feed, inbox, &error.to_string());
                    break;
                }
            }
        }
        if let Err(error) = spool.consume(sent) {
            tracing::error!(
                feed = %feed.endpoint,
                "Cannot record the feed's spool position: {error}; events sent may be sent again"
            );
        }
        report(spool, inbox);
    }
}

/// At a stop: with a spool, what is still held or queued goes to it;
/// returns the number of events neither delivered nor spooled.
fn finish(
    feed: &Feed,
    inbox: &mut Inbox,
    pending: &mut VecDeque<Vec<u8>>,
    spool: Option<&mut Spool>,
) -> u64 {
    let Some(spool) = spool else {
        return pending.len() as u64 + inbox.left();
    };
    let mut refused = to_spool(feed, inbox, spool, pending.drain(..));
    loop {
        let before = spool.events();
        let more = spool_queued(feed, inbox, spool);
        refused += more;
        if spool.events() == before && more == 0 {
            break;
        }
    }
    if !spool.is_empty() {
        tracing::info!(
            feed = %feed.endpoint,
            events = spool.events(),
            "Syslog feed stopped with events in its spool: they go out after the next start"
        );
    }
    refused
}

/// Starts the feed described by `settings` as sink number `index`, with
/// `default_queue` as its queue bound unless it sets its own.
pub fn spawn_feed(
    index: usize,
    settings: &FeedSettings,
    default_queue: usize,
) -> Result<SinkHandle, FeedError> {
    let queue = settings.queue.unwrap_or(default_queue);
    let filter = crate::sink::RecordFilter::of(&settings.records, settings.excepted);
    Ok(Feed::build(settings)?
        .spawn(index, queue)?
        .with_filter(filter))
}
