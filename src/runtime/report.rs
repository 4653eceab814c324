//! What the daemon says at the default log level (info): one line when it
//! starts (what it captures, with how many workers, judged by which policy,
//! sent where, served where) and one when it stops (its totals). Reloads are
//! logged where they happen ([`super::PolicyHandle::reload`]).

use crate::config::{RunSettings, Source};
use crate::metrics::Telemetry;
use crate::pipeline::Counters;

use super::PolicyHandle;

/// The sources in words: `interfaces eth1, eth2 (af-packet, 2 workers
/// each)`, `capture file F (at capture pace)`, `synthetic hospital traffic`.
fn sources(source: &Source) -> String {
    match source {
        Source::Interfaces {
            names,
            backend,
            workers,
            ..
        } => format!(
            "interface{} {} ({}, {workers} worker{} each)",
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            backend.as_str(),
            if *workers == 1 { "" } else { "s" },
        ),
        Source::File { path, realtime } => format!(
            "capture file {} ({})",
            path.display(),
            if *realtime {
                "at capture pace"
            } else {
                "at full speed"
            }
        ),
        Source::Synthetic => "synthetic hospital traffic".into(),
    }
}

/// Where events go: the events file, stdout, each syslog feed.
fn sinks(settings: &RunSettings) -> String {
    let mut sinks: Vec<String> = Vec::new();
    if let Some(path) = &settings.events_file {
        sinks.push(format!("events file {}", path.display()));
    }
    if settings.events_stdout {
        sinks.push("stdout".into());
    }
    for feed in &settings.syslog {
        sinks.push(format!("syslog {}", feed.url));
    }
    if sinks.is_empty() {
        "none (events are only counted)".into()
    } else {
        sinks.join(", ")
    }
}

/// Logs the start line.
pub(super) fn started(settings: &RunSettings, policy: &PolicyHandle, workers: usize) {
    let live = policy.current();
    let policy_name = settings.policy.as_ref().map_or_else(
        || "built-in example-hospital.toml".to_string(),
        |p| p.display().to_string(),
    );
    tracing::info!(
        sources = %sources(&settings.source),
        workers,
        policy = %policy_name,
        generation = live.generation,
        zones = live.policy.zone_count(),
        rules = live.policy.rules().len(),
        sinks = %sinks(settings),
        metrics = %settings.metrics_listen,
        "Started. Serving /metrics and /healthz"
    );
}

/// Logs the stop line: the run's totals, and what was not delivered.
pub(super) fn stopped(telemetry: &Telemetry, undelivered: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let mut total = Counters::default();
    for worker in &telemetry.workers {
        total.add(&worker.snapshot());
    }
    let capture_dropped: u64 = telemetry
        .interfaces
        .iter()
        .map(|i| i.dropped.load(Relaxed))
        .sum();
    let events_dropped: u64 = telemetry
        .sinks
        .iter()
        .map(|(_, s)| s.dropped.load(Relaxed))
        .sum();
    tracing::info!(
        packets = total.packets.packets,
        flows = total.flows.created,
        violations = total.violations.total(),
        capture_dropped,
        events_dropped,
        undelivered,
        "Stopped"
    );
}
