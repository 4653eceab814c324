//! Prometheus metrics (contract section 6, and more), rendered at scrape.
//!
//! The hot path never touches the registry: workers publish plain counters
//! once per batch ([`PublishedCounters`]), sinks keep
//! their own atomics, and a scrape sums them and brings the registry's
//! counters up to the totals. Labels hold rule, severity, zone, sink,
//! interface, worker, problem and reason names, never an address or a port:
//! their number is bounded by the policy and the configuration.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::flow::SkipReason;
use crate::pipeline::{Counters, PublishedCounters, TUNNEL_KINDS};

use crate::sink::SinkStats;
use crate::wire::Problem;

/// Capture counters of one interface, read from the kernel by its workers.
#[derive(Debug, Default)]
pub struct InterfaceStats {
    /// The interface (or `pcap-file`, `synthetic`).
    pub name: String,
    /// Frames the kernel (or libpcap) received for us.
    pub received: AtomicU64,
    /// Frames it dropped because we were too slow.
    pub dropped: AtomicU64,
}

/// The policy's reloads and the generation in force, kept by the control
/// plane as it reloads.
#[derive(Debug, Default)]
pub struct PolicyStats {
    /// Reloads that took effect.
    pub reloads_ok: AtomicU64,
    /// Reloads refused (the old policy stayed).
    pub reloads_failed: AtomicU64,
    /// Generation of the policy in force (1, then +1 per reload).
    pub generation: AtomicU64,
    /// When the policy was last loaded (at start, then by each reload that
    /// took effect), in ms since the Unix epoch.
    pub last_success_ms: AtomicU64,
    /// When a reload was last refused, in ms since the Unix epoch; 0 never.
    pub last_failure_ms: AtomicU64,
    /// The exceptions in force: (id, expiry in ns since the epoch), set
    /// at each load (control plane only).
    pub exceptions: std::sync::Mutex<Vec<(String, u64)>>,
}

impl PolicyStats {
    /// Records a load (the first, or a reload) that took effect now.
    pub fn loaded(&self, generation: u32) {
        self.generation
            .store(u64::from(generation), Ordering::Relaxed);
        self.last_success_ms.store(unix_ms(), Ordering::Relaxed);
    }

    /// Records a reload refused now.
    pub fn refused(&self) {
        self.reloads_failed.fetch_add(1, Ordering::Relaxed);
        self.last_failure_ms.store(unix_ms(), Ordering::Relaxed);
    }
}

/// Now, in ms since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The incident thread's counters, published once per tick.
#[derive(Debug, Default)]
pub struct IncidentStats {
    counters: std::sync::Mutex<crate::incident::FoldCounters>,
    /// Worker batches that did not fit in the incident queue (their events
    /// went out without incident ids).
    pub dropped: AtomicU64,
    /// Worker batches waiting in the incident queue, as the incident thread
    /// last saw it.
    pub queued: AtomicU64,
}

impl IncidentStats {
    /// Publishes the fold's counters.
    pub fn publish(&self, counters: crate::incident::FoldCounters) {
        if let Ok(mut held) = self.counters.lock() {
            *held = counters;
        }
    }

    fn snapshot(&self) -> crate::incident::FoldCounters {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

/// The daemon's evidence writer's losses (with a state directory).
#[derive(Debug, Default)]
pub struct EvidenceStats {
    /// Worker tables (an hour's counts of one worker) the writer's queue
    /// could not take.
    pub tables_dropped: AtomicU64,
    /// Hours whose file could not be written (their counts are lost).
    pub hours_unwritten: AtomicU64,
    /// Incidents counted but not listed one by one: an hour lists at most
    /// [`crate::evidence::MAX_INCIDENTS_PER_HOUR`].
    pub incidents_unlisted: AtomicU64,
}

/// What the metrics are computed from.
#[derive(Debug)]
pub struct Telemetry {
    /// One per worker.
    pub workers: Vec<Arc<PublishedCounters>>,
    /// One per interface.
    pub interfaces: Vec<Arc<InterfaceStats>>,
    /// Each sink's name and counters.
    pub sinks: Vec<(String, Arc<SinkStats>)>,
    /// Reloads and the policy's generation.
    pub policy: Arc<PolicyStats>,
    /// The device inventory.
    pub inventory: Option<Arc<crate::inventory::Inventory>>,
    /// The incident thread's counters, with incidents on.
    pub incidents: Option<Arc<IncidentStats>>,
    /// The evidence writer's losses, with a state directory.
    pub evidence: Option<Arc<EvidenceStats>>,
}

/// The registry and its metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    packets: IntCounter,
    bytes: IntCounter,
    flows_active: IntGauge,
    inspections_active: IntGauge,
    inspection_bytes: IntGauge,
    violations: IntCounterVec,
    capture_dropped: IntCounter,
    interface_received: IntCounterVec,
    interface_dropped: IntCounterVec,
    worker_packets: IntCounterVec,
    flows_started: IntCounter,
    flows_expired: IntCounter,
    flows_evicted: IntCounter,
    inspections_skipped: IntCounterVec,
    flow_capacity: IntGauge,
    decode_problems: IntCounterVec,
    not_judged: IntCounterVec,
    decapsulated: IntCounterVec,
    events_dropped: IntCounterVec,
    events_sent: IntCounterVec,
    events_lost: IntCounterVec,
    queue_depth: IntGaugeVec,
    spool_events: IntGaugeVec,
    spool_bytes: IntGaugeVec,
    spool_dropped: IntCounterVec,
    reloads: IntCounterVec,
    policy_generation: IntGauge,
    last_reload_success: prometheus::Gauge,
    last_reload_failure: prometheus::Gauge,
    devices: IntGaugeVec,
    inventory_evicted: IntCounter,
    inventory_unanswered: IntCounter,
    violations_excepted: IntCounterVec,
    exception_hits: IntCounterVec,
    exception_expired_hits: IntCounterVec,
    exception_expiry: prometheus::GaugeVec,
    incidents: IntCounterVec,
    incidents_open: IntGaugeVec,
    incidents_excepted: IntCounterVec,
    incident_flows: IntCounterVec,
    incident_untracked: IntCounterVec,
    incident_queue_dropped: IntCounterVec,
    incident_initiators: IntGaugeVec,
    incident_queue_batches: IntGaugeVec,
    evidence_dropped: IntCounterVec,
    /// Labelless, but a vector: shown only with a state directory.
    evidence_incidents_unlisted: IntCounterVec,
}

/// Raises a counter to `total` (counters only grow; the sources are
/// monotonic totals).
fn raise(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Metrics {
    /// Registers every metric. `flow_capacity` is the flow-table bound.
    pub fn new(flow_capacity: usize) -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let counter_vec =
            |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), labels)?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let seconds = |name: &str, help: &str| -> Result<prometheus::Gauge, prometheus::Error> {
            let g = prometheus::Gauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let build_info = IntGaugeVec::new(
            Opts::new("segwatch_build_info", "segwatch's version; always 1"),
            &["version"],
        )?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        let queue_depth = IntGaugeVec::new(
            Opts::new(
                "segwatch_sink_queue_depth_events",
                "Events waiting in each sink's queue",
            ),
            &["sink"],
        )?;
        registry.register(Box::new(queue_depth.clone()))?;
        let sink_gauge = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &["sink"])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let spool_events = sink_gauge(
            "segwatch_sink_spool_events",
            "Events in a syslog feed's disk spool, not yet delivered",
        )?;
        let spool_bytes = sink_gauge(
            "segwatch_sink_spool_bytes",
            "Bytes a syslog feed's disk spool takes on disk",
        )?;
        let devices = IntGaugeVec::new(
            Opts::new(
                "segwatch_devices",
                "Devices in the inventory, by zone and inferred class",
            ),
            &["zone", "class"],
        )?;
        registry.register(Box::new(devices.clone()))?;

        let exception_expiry = prometheus::GaugeVec::new(
            Opts::new(
                "segwatch_exception_expiry_timestamp_seconds",
                "When each exception in force expires (Unix time)",
            ),
            &["exception"],
        )?;
        registry.register(Box::new(exception_expiry.clone()))?;
        let unlabelled_gauge = |name: &str, help: &str| -> Result<IntGaugeVec, prometheus::Error> {
            let g = IntGaugeVec::new(Opts::new(name, help), &[])?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let incident_initiators = unlabelled_gauge(
            "segwatch_incident_initiators",
            "Initiators tracked for sweeps and scans now (bound: incidents.max_initiators)",
        )?;
        let incident_queue_batches = unlabelled_gauge(
            "segwatch_incident_queue_batches",
            "Worker batches waiting for the incident thread (bound: 4,096)",
        )?;
        let incidents_open = IntGaugeVec::new(
            Opts::new("segwatch_incidents_open", "Incidents open now, by kind"),
            &["kind"],
        )?;
        registry.register(Box::new(incidents_open.clone()))?;
        // Series of these appear once incidents or exceptions are in use:
        // a configuration without them scrapes as before.
        let metrics = Metrics {
            violations_excepted: counter_vec(
                "segwatch_violations_excepted_total",
                "Violations an exception covers (also counted in segwatch_violations_total)",
                &["rule", "severity", "src_zone", "dest_zone"],
            )?,
            exception_hits: counter_vec(
                "segwatch_exception_hits_total",
                "Violations each exception excepted",
                &["exception"],
            )?,
            exception_expired_hits: counter_vec(
                "segwatch_exception_expired_hits_total",
                "Violations an exception's scope covered after it expired",
                &["exception"],
            )?,
            exception_expiry,
            incidents: counter_vec(
                "segwatch_incidents_total",
                "Incidents opened, by kind and severity",
                &["kind", "severity"],
            )?,
            incidents_open,
            incidents_excepted: counter_vec(
                "segwatch_incidents_excepted_total",
                "Sweeps and scans opened that an exception covers (known scanners)",
                &[],
            )?,
            incident_flows: counter_vec(
                "segwatch_incident_flows_total",
                "Flows joined to incidents (those opening one included)",
                &[],
            )?,
            incident_untracked: counter_vec(
                "segwatch_incident_untracked_total",
                "Initiators, keys and flows dropped from sweep and scan counting while they \
                 still counted (state bound reached)",
                &[],
            )?,
            incident_queue_dropped: counter_vec(
                "segwatch_incident_queue_dropped_total",
                "Worker batches the incident thread's queue could not take (their events went \
                 out without incident ids)",
                &[],
            )?,
            incident_initiators,
            incident_queue_batches,
            evidence_dropped: counter_vec(
                "segwatch_evidence_dropped_total",
                "Evidence lost: worker tables the evidence writer's queue could not take \
                 (reason=queue_full), hours whose state file could not be written \
                 (reason=write_failed)",
                &["reason"],
            )?,
            evidence_incidents_unlisted: counter_vec(
                "segwatch_evidence_incidents_unlisted_total",
                "Closed incidents counted in the evidence but not listed one by one (an \
                 hour's bound reached)",
                &[],
            )?,
            devices,
            inventory_evicted: counter(
                "segwatch_inventory_evicted_total",
                "Devices evicted, the least evidenced first, to keep the inventory's bound",
            )?,
            inventory_unanswered: counter(
                "segwatch_inventory_unanswered_total",
                "Flows whose responder sent nothing back and was no device (kept out of the \
                 inventory)",
            )?,
            packets: counter("segwatch_packets_total", "Frames read from the captures")?,
            bytes: counter("segwatch_bytes_total", "Wire bytes of the frames read")?,
            flows_active: gauge("segwatch_flows_active", "Flows held in the flow tables")?,
            inspections_active: gauge(
                "segwatch_inspections_active",
                "Flows under application inspection now, all workers (bound: 8,192 per worker)",
            )?,
            inspection_bytes: gauge(
                "segwatch_inspection_bytes",
                "Bytes the inspections keep now, all workers (bound: 16 MiB per worker)",
            )?,
            violations: counter_vec(
                "segwatch_violations_total",
                "Violating flows (one event each)",
                &["rule", "severity", "src_zone", "dest_zone"],
            )?,
            capture_dropped: counter(
                "segwatch_capture_dropped_packets_total",
                "Frames the kernel dropped before segwatch read them, all interfaces",
            )?,
            interface_received: counter_vec(
                "segwatch_capture_interface_received_packets_total",
                "Frames the kernel received for segwatch, per interface",
                &["interface"],
            )?,
            interface_dropped: counter_vec(
                "segwatch_capture_interface_dropped_packets_total",
                "Frames the kernel dropped, per interface",
                &["interface"],
            )?,
            worker_packets: counter_vec(
                "segwatch_worker_packets_total",
                "Frames handled, per worker",
                &["worker"],
            )?,
            flows_started: counter("segwatch_flows_started_total", "Flows started")?,
            flows_expired: counter(
                "segwatch_flows_expired_total",
                "Flows ended by idle timeout",
            )?,
            flows_evicted: counter(
                "segwatch_flows_evicted_total",
                "Flows pushed out of a full flow table",
            )?,
            inspections_skipped: counter_vec(
                "segwatch_inspections_skipped_total",
                "Flows judged without all the inspection the policy asked for (ended early under pressure), by reason",
                &["reason"],
            )?,
            flow_capacity: gauge("segwatch_flows_capacity", "The flow-table bound")?,
            decode_problems: counter_vec(
                "segwatch_decode_problems_total",
                "Frames that could not be decoded, by kind",
                &["kind"],
            )?,
            decapsulated: counter_vec(
                "segwatch_packets_decapsulated_total",
                "Frames taken out of a tunnel (ERSPAN, and VXLAN, Geneve and GRE when asked), by tunnel",
                &["tunnel"],
            )?,
            not_judged: counter_vec(
                "segwatch_packets_not_judged_total",
                "Packets counted but not judged, by reason",
                &["reason"],
            )?,
            events_dropped: counter_vec(
                "segwatch_events_dropped_total",
                "Events dropped because a sink's queue was full",
                &["sink"],
            )?,
            events_sent: counter_vec(
                "segwatch_sink_events_sent_total",
                "Events delivered, per sink",
                &["sink"],
            )?,
            events_lost: counter_vec(
                "segwatch_sink_events_lost_total",
                "Events a failed write may have lost, per sink",
                &["sink"],
            )?,
            queue_depth,
            spool_events,
            spool_bytes,
            spool_dropped: counter_vec(
                "segwatch_sink_spool_dropped_total",
                "Events a syslog feed's disk spool refused: it was full, or its disk failed",
                &["sink"],
            )?,
            reloads: counter_vec(
                "segwatch_policy_reloads_total",
                "Policy reloads, by result",
                &["result"],
            )?,
            policy_generation: gauge(
                "segwatch_policy_generation",
                "Generation of the policy in force (1, then +1 per reload)",
            )?,
            last_reload_success: seconds(
                "segwatch_policy_last_reload_success_timestamp_seconds",
                "When the policy in force was loaded: at start, then by each reload that took \
                 effect (Unix time)",
            )?,
            last_reload_failure: seconds(
                "segwatch_policy_last_reload_failure_timestamp_seconds",
                "When a policy reload was last refused (Unix time; 0 never)",
            )?,
            registry,
        };
        metrics.flow_capacity.set(flow_capacity as i64);
        // Series that must exist before their first event, so that rates
        // and alerts see a zero rather than nothing.
        for result in ["success", "failure"] {
            metrics.reloads.with_label_values(&[result]);
        }
        for problem in Problem::ALL {
            metrics
                .decode_problems
                .with_label_values(&[problem.as_str()]);
        }
        for reason in SkipReason::ALL {
            metrics
                .inspections_skipped
                .with_label_values(&[reason.as_str()]);
        }
        Ok(metrics)
    }

    /// Brings every metric up to date and renders the text exposition.
    pub fn render(&self, t: &Telemetry) -> String {
        self.refresh(t);
        let mut out = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }

    fn refresh(&self, t: &Telemetry) {
        if let Some(inventory) = &t.inventory {
            // Rebuilt at each scrape: a device that moved zone or class
            // leaves its old series. The counts are kept as the inventory
            // changes: this reads one number per (zone, class).
            self.devices.reset();
            for ((zone, class), count) in inventory.counts() {
                self.devices
                    .with_label_values(&[zone.as_str(), class.as_str()])
                    .set(count as i64);
            }
            raise(&self.inventory_evicted, inventory.evicted());
            raise(&self.inventory_unanswered, inventory.unanswered());
        }
        let workers: Vec<Counters> = t.workers.iter().map(|w| w.snapshot()).collect();
        let mut total = Counters::default();
        for counters in &workers {
            total.add(counters);
        }
        let p = &total.packets;
        raise(&self.packets, p.packets);
        raise(&self.bytes, p.bytes);
        self.flows_active.set(total.active_flows as i64);
        self.inspections_active.set(total.inspections_active as i64);
        self.inspection_bytes.set(total.inspection_bytes as i64);
        raise(&self.flows_started, total.flows.created);
        raise(&self.flows_expired, total.flows.expired);
        raise(&self.flows_evicted, total.flows.evicted);
        for reason in SkipReason::ALL {
            raise(
                &self
                    .inspections_skipped
                    .with_label_values(&[reason.as_str()]),
                total.flows.inspections_skipped[reason.index()],
            );
        }
        for (reason, count) in [
            ("not_ip", p.not_ip),
            ("later_fragment", p.later_fragments),
            ("icmp_not_echo", p.icmp_not_echo),
            ("link_local", total.link_local),
        ] {
            raise(&self.not_judged.with_label_values(&[reason]), count);
        }
        for (kind, count) in TUNNEL_KINDS.iter().zip(p.decapsulated) {
            raise(
                &self.decapsulated.with_label_values(&[kind.as_str()]),
                count,
            );
        }
        for problem in Problem::ALL {
            raise(
                &self.decode_problems.with_label_values(&[problem.as_str()]),
                p.problems[problem.index()],
            );
        }
        for (i, counters) in workers.iter().enumerate() {
            raise(
                &self.worker_packets.with_label_values(&[&i.to_string()]),
                counters.packets.packets,
            );
        }
        for (labels, count) in total.violations.by_labels() {
            raise(
                &self.violations.with_label_values(&[
                    labels.rule.as_str(),
                    labels.severity.as_str(),
                    labels.src_zone.as_str(),
                    labels.dest_zone.as_str(),
                ]),
                count,
            );
        }
        let mut dropped = 0;
        for interface in &t.interfaces {
            let name = [interface.name.as_str()];
            raise(
                &self.interface_received.with_label_values(&name),
                load(&interface.received),
            );
            raise(
                &self.interface_dropped.with_label_values(&name),
                load(&interface.dropped),
            );
            dropped += load(&interface.dropped);
        }
        raise(&self.capture_dropped, dropped);
        for (name, stats) in &t.sinks {
            let sink = [name.as_str()];
            raise(
                &self.events_dropped.with_label_values(&sink),
                load(&stats.dropped),
            );
            raise(
                &self.events_sent.with_label_values(&sink),
                load(&stats.sent),
            );
            raise(
                &self.events_lost.with_label_values(&sink),
                load(&stats.lost),
            );
            self.queue_depth
                .with_label_values(&sink)
                .set(load(&stats.queued) as i64);
            if name.starts_with("syslog") {
                self.spool_events
                    .with_label_values(&sink)
                    .set(load(&stats.spool_events) as i64);
                self.spool_bytes
                    .with_label_values(&sink)
                    .set(load(&stats.spool_bytes) as i64);
                raise(
                    &self.spool_dropped.with_label_values(&sink),
                    load(&stats.spool_dropped),
                );
            }
        }
        raise(
            &self.reloads.with_label_values(&["success"]),
            load(&t.policy.reloads_ok),
        );
        raise(
            &self.reloads.with_label_values(&["failure"]),
            load(&t.policy.reloads_failed),
        );
        self.policy_generation
            .set(load(&t.policy.generation) as i64);
        self.last_reload_success
            .set(load(&t.policy.last_success_ms) as f64 / 1000.0);
        self.last_reload_failure
            .set(load(&t.policy.last_failure_ms) as f64 / 1000.0);
        self.refresh_exceptions(t, &total);
        if let Some(stats) = &t.incidents {
            self.refresh_incidents(stats);
        }
        if let Some(stats) = &t.evidence {
            self.refresh_evidence(stats);
        }
    }

    fn refresh_exceptions(&self, t: &Telemetry, total: &Counters) {
        for (labels, count) in total.violations.excepted_by_labels() {
            raise(
                &self.violations_excepted.with_label_values(&[
                    labels.rule.as_str(),
                    labels.severity.as_str(),
                    labels.src_zone.as_str(),
                    labels.dest_zone.as_str(),
                ]),
                count,
            );
        }
        if let Ok(exceptions) = t.policy.exceptions.lock() {
            // Rebuilt: an exception removed by a reload leaves its series.
            self.exception_expiry.reset();
            for (id, expires) in exceptions.iter() {
                self.exception_expiry
                    .with_label_values(&[id.as_str()])
                    .set(*expires as f64 / 1e9);
                // Present from the start, so that rates see a zero.
                self.exception_hits.with_label_values(&[id.as_str()]);
                self.exception_expired_hits
                    .with_label_values(&[id.as_str()]);
            }
        }
        for hits in total.violations.by_exception() {
            let id = [hits.id.as_str()];
            raise(&self.exception_hits.with_label_values(&id), hits.hits);
            raise(
                &self.exception_expired_hits.with_label_values(&id),
                hits.expired_hits,
            );
        }
    }

    fn refresh_evidence(&self, stats: &EvidenceStats) {
        raise(
            &self.evidence_dropped.with_label_values(&["queue_full"]),
            load(&stats.tables_dropped),
        );
        raise(
            &self.evidence_dropped.with_label_values(&["write_failed"]),
            load(&stats.hours_unwritten),
        );
        raise(
            &self
                .evidence_incidents_unlisted
                .with_label_values::<&str>(&[]),
            load(&stats.incidents_unlisted),
        );
    }

    fn refresh_incidents(&self, stats: &IncidentStats) {
        use crate::event::IncidentKind;
        use crate::policy::Severity;
        let counters = stats.snapshot();
        for (kind, by_severity) in IncidentKind::ALL.iter().zip(&counters.opened) {
            for severity in Severity::ALL {
                raise(
                    &self
                        .incidents
                        .with_label_values(&[kind.as_str(), severity.as_str()]),
                    by_severity[severity as usize],
                );
            }
        }
        for (kind, open) in IncidentKind::ALL.iter().zip(&counters.open) {
            self.incidents_open
                .with_label_values(&[kind.as_str()])
                .set(*open as i64);
        }
        raise(
            &self.incidents_excepted.with_label_values::<&str>(&[]),
            counters.opened_excepted,
        );
        raise(
            &self.incident_flows.with_label_values::<&str>(&[]),
            counters.flows_joined,
        );
        raise(
            &self.incident_untracked.with_label_values::<&str>(&[]),
            counters.untracked,
        );
        raise(
            &self.incident_queue_dropped.with_label_values::<&str>(&[]),
            load(&stats.dropped),
        );
        self.incident_initiators
            .with_label_values::<&str>(&[])
            .set(counters.initiators as i64);
        self.incident_queue_batches
            .with_label_values::<&str>(&[])
            .set(load(&stats.queued) as i64);
    }
}
