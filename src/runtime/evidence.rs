//! The daemon's evidence writer (issue 18): a sink that takes every
//! violation event and incident record, and the workers' evidence tables
//! through a bounded queue that never blocks capture (what does not fit is
//! dropped and counted), and writes one file per hour of capture time into
//! the state directory when the hour ends and at stop (see
//! [`crate::evidence::state`]). A restart loses at most the current hour.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::StateSettings;
use crate::event::{IncidentState, Record};
use crate::evidence::{DeviceSeen, Evidence, EvidenceTable, HOUR_NS, IncidentSeen, state};
use crate::inventory::Inventory;
use crate::metrics::EvidenceStats;
use crate::sink::{Next, RecordFilter, SinkError, SinkHandle};

use super::policy::LivePolicy;

/// Tables queued from the workers to the writer: a worker hands one over
/// when the hour of capture time changes, and at stop.
const TABLE_QUEUE: usize = 1024;

/// How often the writer writes what came late for hours already written
/// (events of flows inspected across an hour's end, incidents closed by
/// the clock): each write is a read, a merge and two fsyncs.
const LATE_EVERY: Duration = Duration::from_secs(60);

/// What goes to the writer besides records.
enum Message {
    /// A worker's table, judged under that policy.
    Table(EvidenceTable, Arc<LivePolicy>),
    /// The daemon stops: write every hour held, then say so.
    Finish(Sender<()>),
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Message::Table(..) => "Table",
            Message::Finish(_) => "Finish",
        })
    }
}

/// Where workers hand their evidence tables.
#[derive(Clone, Debug)]
pub struct EvidenceQueue {
    tables: Sender<Message>,
    /// Tables dropped because the queue was full, and the writer's other
    /// losses.
    pub stats: Arc<EvidenceStats>,
}

impl EvidenceQueue {
    /// Queues a table judged under `live`; never blocks.
    pub fn offer(&self, table: EvidenceTable, live: &Arc<LivePolicy>) {
        match self.tables.try_send(Message::Table(table, live.clone())) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.tables_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The daemon stops (its workers have handed their last tables and the
    /// incidents are closed): waits, up to `timeout`, until every hour held
    /// is written.
    pub fn finish(&self, timeout: Duration) {
        let dropped = self.stats.tables_dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(
                dropped,
                "Evidence tables dropped: the writer's queue was full"
            );
        }
        let (done, written) = crossbeam_channel::bounded(1);
        if self
            .tables
            .send_timeout(Message::Finish(done), timeout)
            .is_err()
            || written.recv_timeout(timeout).is_err()
        {
            tracing::warn!("Evidence writer did not finish in time: the last hour may be lost");
        }
    }
}

/// Starts the writer: the sink to add to the daemon's sinks, and the queue
/// for the workers.
pub fn spawn(
    settings: &StateSettings,
    inventory: Arc<Inventory>,
    queue: usize,
) -> Result<(SinkHandle, EvidenceQueue), SinkError> {
    std::fs::create_dir_all(&settings.dir).map_err(|e| {
        SinkError(format!(
            "{}: cannot make the state directory: {e}",
            settings.dir.display()
        ))
    })?;
    let (tables, received) = crossbeam_channel::bounded(TABLE_QUEUE);
    let queue_handle = EvidenceQueue {
        tables,
        stats: Arc::new(EvidenceStats::default()),
    };
    let mut writer = Writer {
        dir: settings.dir.clone(),
        sensor: settings.sensor.clone(),
        stats: queue_handle.stats.clone(),
        retention_hours: u64::from(settings.retention_days) * 24,
        inventory,
        held: Evidence::default(),
        offenders: BTreeMap::new(),
        latest_hour: None,
        devices_since: 0,
        tables_taken: false,
    };
    let handle = SinkHandle::spawn("evidence".into(), queue, move |mut inbox| {
        // Files are written when an hour ends, and what came late for
        // hours already written once per LATE_EVERY, never per event: an
        // fsync per event would let the queue overflow.
        let mut written = Instant::now();
        let mut written_through = None;
        loop {
            match inbox.next(Some(Duration::from_millis(50))) {
                Next::Event(event) => {
                    writer.record(&event.record, event.ts_ns);
                    inbox.finished(1);
                }
                Next::Stop => break,
                Next::Reopen | Next::Idle => {}
            }
            let finish = writer.take_tables(&received);
            // A table comes once an hour per worker (and at stop), so
            // writing what it brought right away costs little; a daemon
            // killed later loses nothing of the hours it completed.
            let tables = std::mem::take(&mut writer.tables_taken);
            if tables || finish.is_some() {
                // Records already queued belong to the hours being written.
                while let Some(event) = inbox.ready_event() {
                    writer.record(&event.record, event.ts_ns);
                    inbox.finished(1);
                }
            }
            if let Some(done) = finish {
                writer.take_tables(&received);
                writer.write_all();
                let _ = done.send(());
            } else if tables
                || writer.latest_hour > written_through
                || written.elapsed() >= LATE_EVERY
            {
                writer.write_ended_hours();
                written = Instant::now();
                written_through = writer.latest_hour;
            }
        }
        let done = writer.take_tables(&received);
        writer.take_tables(&received);
        writer.write_all();
        if let Some(done) = done {
            let _ = done.send(());
        }
        0
    })?
    .with_filter(RecordFilter {
        violations: true,
        incidents: true,
        excepted: true,
    });
    Ok((handle, queue_handle))
}

/// Per initiator and hour: violations (not excepted) and incidents opened.
type Offenders = BTreeMap<(u64, IpAddr), Offender>;

/// An initiator's violations and incidents opened in an hour.
#[derive(Debug, Default)]
struct Offender {
    violations: u64,
    incidents: u64,
    zone: String,
    /// Capture times of its first and last record in the hour: its times
    /// when the inventory has not recorded it yet (its worker feeds the
    /// inventory after the batch whose events came here first).
    first_ns: u64,
    last_ns: u64,
}

impl Offender {
    fn new(zone: String, ts_ns: u64) -> Offender {
        Offender {
            zone,
            first_ns: ts_ns,
            last_ns: ts_ns,
            ..Offender::default()
        }
    }

    fn saw(&mut self, ts_ns: u64) {
        self.first_ns = self.first_ns.min(ts_ns);
        self.last_ns = self.last_ns.max(ts_ns);
    }
}

struct Writer {
    dir: PathBuf,
    /// This sensor's name, in every file it writes.
    sensor: String,
    stats: Arc<EvidenceStats>,
    retention_hours: u64,
    inventory: Arc<Inventory>,
    /// Hours not yet written.
    held: Evidence,
    offenders: Offenders,
    /// The latest hour of capture time seen.
    latest_hour: Option<u64>,
    /// Devices last seen from this time on go into the next file written.
    devices_since: u64,
    /// A table was taken since the last write.
    tables_taken: bool,
}

impl Writer {
    fn saw(&mut self, ts_ns: u64) {
        let hour = ts_ns / HOUR_NS;
        self.latest_hour = Some(self.latest_hour.map_or(hour, |h| h.max(hour)));
    }

    fn record(&mut self, record: &Record, ts_ns: u64) {
        self.saw(ts_ns);
        let hour = ts_ns / HOUR_NS;
        match record {
            Record::Violation(event) => {
                if event.exception.is_none() {
                    let entry = self
                        .offenders
                        .entry((hour, event.src_ip))
                        .or_insert_with(|| Offender::new(event.src_zone.to_string(), ts_ns));
                    entry.saw(ts_ns);
                    entry.violations += 1;
                }
            }
            Record::Incident(record) => match record.state {
                IncidentState::Open => {
                    let entry = self
                        .offenders
                        .entry((hour, record.src_ip))
                        .or_insert_with(|| {
                            Offender::new(record.src_zone.clone().unwrap_or_default(), ts_ns)
                        });
                    entry.saw(ts_ns);
                    entry.incidents += 1;
                }
                IncidentState::Close => {
                    self.held
                        .hour_of(ts_ns)
                        .add_incident(IncidentSeen::of_record(record));
                }
                IncidentState::Update => {}
            },
        }
    }

    /// Takes the tables queued; a request to finish stops the taking and
    /// is returned.
    fn take_tables(&mut self, received: &Receiver<Message>) -> Option<Sender<()>> {
        while let Ok(message) = received.try_recv() {
            match message {
                Message::Table(table, live) => {
                    self.tables_taken = true;
                    if let Some(latest) = table.buckets().iter().map(|b| b.key.hour).max() {
                        self.saw(u64::from(latest) * HOUR_NS);
                    }
                    self.held.add_table(&table, &live.policy, &live.exceptions);
                }
                Message::Finish(done) => return Some(done),
            }
        }
        None
    }

    /// Writes the hours before the latest one seen.
    fn write_ended_hours(&mut self) {
        let Some(latest) = self.latest_hour else {
            return;
        };
        let ended: Vec<u64> = self.held_hours().filter(|h| *h < latest).collect();
        if ended.is_empty() {
            return;
        }
        for hour in ended {
            self.write(hour);
        }
        self.prune(latest);
    }

    /// The hours held in counts or offenders, each once, oldest first (an
    /// hour written twice would be read, merged and flushed twice).
    fn held_hours(&self) -> impl Iterator<Item = u64> + use<> {
        let hours: std::collections::BTreeSet<u64> = self
            .held
            .hours
            .keys()
            .copied()
            .chain(self.offenders.keys().map(|(h, _)| *h))
            .collect();
        hours.into_iter()
    }

    /// Writes every hour held (the daemon stops).
    fn write_all(&mut self) {
        let hours: Vec<u64> = self.held_hours().collect();
        for hour in hours {
            self.write(hour);
        }
        if let Some(latest) = self.latest_hour {
            self.write_devices(latest);
            self.prune(latest);
        }
    }

    fn write(&mut self, hour: u64) {
        let mut data = self.held.hours.remove(&hour).unwrap_or_default();
        let keys: Vec<(u64, IpAddr)> = self
            .offenders
            .keys()
            .filter(|(h, _)| *h == hour)
            .copied()
            .collect();
        let known = self.add_devices(&mut data, hour);
        for key in keys {
            let Some(offender) = self.offenders.remove(&key) else {
                continue;
            };
            let (violations, incidents, zone) =
                (offender.violations, offender.incidents, offender.zone);
            let ip = key.1;
            if let std::collections::btree_map::Entry::Vacant(entry) = data.devices.entry(ip) {
                // Seen before the last file, or never kept by the inventory
                // (it was full): its counts need an entry.
                let seen = known.get(&ip).cloned().unwrap_or_else(|| DeviceSeen {
                    ip,
                    zone: if zone.is_empty() {
                        "unknown".into()
                    } else {
                        zone
                    },
                    vendor: None,
                    class: "unknown".into(),
                    hostname: None,
                    first_seen: offender.first_ns,
                    last_seen: offender.last_ns,
                    violations: 0,
                    incidents: 0,
                });
                entry.insert(seen);
            }
            if let Some(device) = data.devices.get_mut(&ip) {
                device.violations += violations;
                device.incidents += incidents;
            }
        }
        if data.is_empty() {
            return;
        }
        data.sensors.insert(self.sensor.clone());
        self.write_file(hour, &data);
    }

    /// Writes `data` into hour `hour`'s file, counting what is lost.
    fn write_file(&self, hour: u64, data: &crate::evidence::Hour) {
        match state::write_hour(&self.dir, hour, data) {
            Ok(unlisted) => {
                self.stats
                    .incidents_unlisted
                    .fetch_add(unlisted, Ordering::Relaxed);
                tracing::debug!(hour = %state::hour_name(hour), "Evidence hour written");
            }
            Err(error) => {
                self.stats.hours_unwritten.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, "Evidence hour not written");
            }
        }
    }

    /// Adds the devices seen since the last file to `data`; returns every
    /// device the inventory knows.
    fn add_devices(
        &mut self,
        data: &mut crate::evidence::Hour,
        hour: u64,
    ) -> BTreeMap<IpAddr, DeviceSeen> {
        let since = self.devices_since;
        let known: BTreeMap<IpAddr, DeviceSeen> = self
            .inventory
            .summaries()
            .into_iter()
            .map(|d| (d.ip, seen_of(d)))
            .collect();
        for (ip, seen) in &known {
            if seen.last_seen >= since {
                data.add_device(*ip, seen);
            }
        }
        // A device fed to the inventory a little late still makes the next
        // file: the cut stays an hour behind.
        self.devices_since = self
            .devices_since
            .max((hour * HOUR_NS).saturating_sub(HOUR_NS));
        known
    }

    /// At stop: the devices seen since the last file, into the latest hour.
    fn write_devices(&mut self, latest: u64) {
        let mut data = crate::evidence::Hour::default();
        self.add_devices(&mut data, latest);
        data.sensors.insert(self.sensor.clone());
        if !data.is_empty() {
            self.write_file(latest, &data);
        }
    }

    fn prune(&self, latest: u64) {
        if self.retention_hours == 0 {
            return;
        }
        let oldest = latest.saturating_sub(self.retention_hours);
        match state::prune(&self.dir, oldest) {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "Evidence hours past retention removed"),
            Err(error) => tracing::warn!(%error, "Evidence hours not pruned"),
        }
    }
}

fn seen_of(device: crate::inventory::DeviceSummary) -> DeviceSeen {
    DeviceSeen {
        ip: device.ip,
        zone: device.zone,
        vendor: device.vendor,
        class: device.class.as_str().to_owned(),
        hostname: device.dhcp_hostname,
        first_seen: device.first_ns,
        last_seen: device.last_ns,
        violations: 0,
        incidents: 0,
    }
}
