//! The memory sizing of README "Memory: sizing a sensor": `segwatch run
//! --pcap` on `segwatch synth flood` (past every default bound at once),
//! first with one structure at its bound and the others at one, then with
//! everything on, as `deploy/segwatch.toml` has it. Prints each structure's
//! share of the peak resident memory (VmHWM over a base run), its cost per
//! entry, and the total under the combined flood.
//!
//! `cargo bench --features pcap --bench memory_flood` (about four minutes
//! on this project's busy 2-core machine; `SEGWATCH_FLOOD_SOURCES` scales
//! the flood).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/flood.rs"]
mod flood;

use std::path::Path;
use std::time::Duration;

use flood::{Bounds, Outcome, Setup, run, synth_flood, value};

const SEGWATCH: &str = env!("CARGO_BIN_EXE_segwatch");
const LIMIT: Duration = Duration::from_secs(900);
const MIB: f64 = 1024.0 * 1024.0;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs us
    // without it: then do nothing (tests/memory_flood.rs is the test).
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let segwatch = Path::new(SEGWATCH);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy = root.join("policies/example-hospital.toml");
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let sources: u32 = std::env::var("SEGWATCH_FLOOD_SOURCES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(112_000);
    let whole = dir.join("flood.pcap");
    let no_payload = dir.join("flood-no-payload.pcap");
    let tiny = dir.join("tiny.pcap");
    let flags = |extra: &[&str]| -> Vec<String> {
        let mut f = vec!["--sources".to_string(), sources.to_string()];
        f.extend(extra.iter().map(|s| s.to_string()));
        f
    };
    synth_flood(segwatch, &whole, &flags(&[]));
    synth_flood(segwatch, &no_payload, &flags(&["--inspections", "0"]));
    synth_flood(
        segwatch,
        &tiny,
        &[
            "--sources",
            "1",
            "--sweepers",
            "0",
            "--scanners",
            "0",
            "--inspections",
            "0",
        ]
        .map(String::from),
    );
    let frames = |path: &Path| -> u64 {
        // Classic pcap: 24-byte header, then 16 bytes per record and the
        // frame; counted by reading the records' lengths.
        let bytes = std::fs::read(path).unwrap();
        let (mut at, mut n) = (24usize, 0u64);
        while at + 16 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
            at += 16 + len;
            n += 1;
        }
        n
    };
    let d = Bounds::DEFAULT;
    let mut runs: Vec<(&str, Outcome)> = Vec::new();
    let mut go = |name: &'static str, setup: Setup, pcap: &Path, stop: bool| {
        let run_dir = dir.join(name.replace(' ', "-"));
        std::fs::create_dir_all(&run_dir).unwrap();
        let outcome = run(
            segwatch,
            &setup,
            &run_dir,
            (pcap, frames(pcap)),
            &policy,
            LIMIT,
            stop,
        );
        eprintln!(
            "{name}: peak {:.1} MiB, read in {:.1} s{}",
            outcome.peak as f64 / MIB,
            outcome.read_s,
            outcome
                .stop_s
                .map(|s| format!(", stopped in {s:.1} s (status {:?})", outcome.status))
                .unwrap_or_default()
        );
        runs.push((name, outcome));
    };
    go("base", Setup::everything(d), &tiny, false);
    let nothing = Setup::nothing();
    let mut flows = nothing;
    flows.bounds.max_flows = d.max_flows;
    go("flows", flows, &no_payload, false);
    let mut devices = nothing;
    devices.detection = true;
    devices.bounds.max_flows = 1_000;
    devices.bounds.max_devices = d.max_devices;
    go("devices", devices, &no_payload, false);
    let mut inspections = nothing;
    inspections.detection = true;
    inspections.bounds.max_flows = 20_000;
    go("inspections", inspections, &whole, false);
    let mut incidents = nothing;
    incidents.incidents = true;
    incidents.bounds.max_flows = 1_000;
    incidents.bounds.max_open = d.max_open;
    go("open incidents", incidents, &no_payload, false);
    let mut initiators = incidents;
    initiators.bounds.max_open = 1;
    initiators.bounds.max_initiators = d.max_initiators;
    go("initiators", initiators, &no_payload, false);
    let mut queue = nothing;
    queue.bounds.max_flows = 1_000;
    queue.bounds.queue = d.queue;
    queue.stdout_blocked = true;
    go("queue", queue, &no_payload, false);
    go("everything", Setup::everything(d), &whole, true);

    let base = runs[0].1.peak as f64;
    let m = |i: usize| &runs[i].1.metrics;
    let entries = [
        ("flow table", value(m(1), "segwatch_flows_active", "")),
        ("device inventory", value(m(2), "segwatch_devices", "")),
        ("inspections (one worker)", 1),
        ("open incidents", value(m(4), "segwatch_incidents_open", "")),
        (
            "initiators (sweeps, scans)",
            value(m(5), "segwatch_incident_initiators", ""),
        ),
        (
            "queued events",
            value(m(6), "segwatch_sink_queue_depth_events", "stdout"),
        ),
    ];
    println!("| structure | entries | share | per entry |");
    println!("|---|---|---|---|");
    let mut sum = base;
    for (i, (name, count)) in entries.iter().enumerate() {
        let share = runs[i + 1].1.peak as f64 - base;
        sum += share.max(0.0);
        println!(
            "| {name} | {count} | {:.1} MiB | {:.0} B |",
            share / MIB,
            share / (*count).max(1) as f64
        );
    }
    let all = &runs[7].1;
    println!(
        "base {base} B ({:.1} MiB); base + shares {:.1} MiB; everything at once {} B ({:.1} MiB) \
         (read in {:.1} s, stopped in {:.1} s, status {:?})",
        base / MIB,
        sum / MIB,
        all.peak,
        all.peak as f64 / MIB,
        all.read_s,
        all.stop_s.unwrap_or(0.0),
        all.status
    );
    let b = &all.metrics;
    println!(
        "everything: flows {} (capacity {}), devices {} (evicted {}), inspections skipped: \
         no payload {}, table full {}, memory budget {}; incidents open {}, \
         initiators {} (untracked {}), incident queue dropped {}; queues: events_file {} \
         stdout {} syslog0 {} syslog1 {}, dropped {}; spool {} events {} bytes, refused {}",
        value(b, "segwatch_flows_active", ""),
        value(b, "segwatch_flows_capacity", ""),
        value(b, "segwatch_devices", ""),
        value(b, "segwatch_inventory_evicted_total", ""),
        value(
            b,
            "segwatch_inspections_skipped_total",
            "evicted_no_payload"
        ),
        value(b, "segwatch_inspections_skipped_total", "table_full"),
        value(b, "segwatch_inspections_skipped_total", "memory_budget"),
        value(b, "segwatch_incidents_open", ""),
        value(b, "segwatch_incident_initiators", ""),
        value(b, "segwatch_incident_untracked_total", ""),
        value(b, "segwatch_incident_queue_dropped_total", ""),
        value(b, "segwatch_sink_queue_depth_events", "events_file"),
        value(b, "segwatch_sink_queue_depth_events", "stdout"),
        value(b, "segwatch_sink_queue_depth_events", "syslog0"),
        value(b, "segwatch_sink_queue_depth_events", "syslog1"),
        value(b, "segwatch_events_dropped_total", ""),
        value(b, "segwatch_sink_spool_events", ""),
        value(b, "segwatch_sink_spool_bytes", ""),
        value(b, "segwatch_sink_spool_dropped_total", ""),
    );
}
