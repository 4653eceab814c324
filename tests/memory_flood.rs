//! The memory figure tells the whole truth (issue 16, item 11): a flood
//! that fills every bound of the daemon at once (flow table, inventory,
//! inspections, open incidents, initiators, sink queues, a spool), read by
//! `segwatch run --pcap`; every structure is full by its own metrics, and
//! the peak resident memory stays within what README "Memory: sizing a
//! sensor" says these bounds cost. The bounds are a twentieth of the
//! defaults so that a debug build reads the flood in about a minute; the
//! figures at the defaults come from `benches/memory_flood.rs`.

use std::path::Path;
use std::time::Duration;

use crate::common::flood::{Bounds, Setup, run, synth_flood, value};
use crate::common::{SEGWATCH, root};

/// A twentieth of the defaults (the spool: 1 MiB on disk, so that it fills).
const BOUNDS: Bounds = Bounds {
    max_flows: 50_000,
    max_devices: 5_000,
    max_initiators: 5_000,
    max_open: 50_000,
    queue: 2_000,
    spool_mib: 1,
};

/// The flood: 5,600 senders (50,400 flows and incidents, 5,600 devices and
/// initiators), 10 sweeps and 10 scans of 1,000, and 9,000 unfinished DICOM
/// association requests of 2,100 bytes (more than the 8,192 places and the
/// 16 MiB of a worker's inspections).
const FLOOD: [&str; 14] = [
    "--sources",
    "5600",
    "--sweepers",
    "10",
    "--sweep-hosts",
    "1000",
    "--scanners",
    "10",
    "--scan-ports",
    "1000",
    "--inspections",
    "9000",
    "--inspection-bytes",
    "2100",
];
const FLOOD_FRAMES: u64 = 5_600 * 9 + 10_000 + 10_000 + 9_000;

const LIMIT: Duration = Duration::from_secs(600);

/// A row of README's sizing table: its cost per entry, in bytes.
pub fn readme_cost(row: &str) -> u64 {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = readme
        .split("### Memory: sizing a sensor")
        .nth(1)
        .expect("README has the section \"Memory: sizing a sensor\"");
    let line = section
        .lines()
        .find(|l| l.starts_with(&format!("| {row} |")))
        .unwrap_or_else(|| panic!("README's sizing table has no row {row:?}"));
    let cell = line.split('|').nth(3).unwrap().trim();
    let digits: String = cell
        .trim_end_matches(" B")
        .chars()
        .filter(|c| *c != ',')
        .collect();
    digits
        .parse()
        .unwrap_or_else(|_| panic!("row {row:?}: per-entry cell {cell:?} is not \"N B\""))
}

/// What README's formula gives for the structures at `bounds` in one
/// worker, over the base: every bound times its cost per entry, the
/// inspections' fixed share, and every queue (the events file, stdout,
/// two feeds) full of events.
pub fn readme_variable_part(bounds: &Bounds) -> u64 {
    bounds.max_flows * readme_cost("flow table")
        + bounds.max_devices * readme_cost("device inventory")
        + readme_cost("inspections")
        + bounds.max_open * readme_cost("open incidents")
        + bounds.max_initiators * readme_cost("initiators")
        + 4 * bounds.queue * readme_cost("queued events")
}

#[test]
fn regression_16_a_flood_fills_every_bound_and_stays_within_the_sizing() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let segwatch = Path::new(SEGWATCH);
    let policy = root().join("policies/example-hospital.toml");
    let pcap = dir.join("flood.pcap");
    let tiny = dir.join("tiny.pcap");
    synth_flood(segwatch, &pcap, &FLOOD.map(String::from));
    let tiny_flags = [
        "--sources",
        "1",
        "--sweepers",
        "0",
        "--scanners",
        "0",
        "--inspections",
        "0",
    ];
    synth_flood(segwatch, &tiny, &tiny_flags.map(String::from));
    let setup = Setup::everything(BOUNDS);

    let base_dir = dir.join("base");
    std::fs::create_dir_all(&base_dir).unwrap();
    let base = run(
        segwatch,
        &setup,
        &base_dir,
        (&tiny, 9),
        &policy,
        LIMIT,
        false,
    );

    let flood_dir = dir.join("flood");
    std::fs::create_dir_all(&flood_dir).unwrap();
    let flood = run(
        segwatch,
        &setup,
        &flood_dir,
        (&pcap, FLOOD_FRAMES),
        &policy,
        LIMIT,
        true,
    );
    let m = &flood.metrics;
    let b = &BOUNDS;
    // Every structure is full, by its own metrics.
    assert_eq!(value(m, "segwatch_flows_active", ""), b.max_flows, "{m}");
    assert!(value(m, "segwatch_flows_evicted_total", "") > 0);
    let devices = value(m, "segwatch_devices", "");
    assert!(
        devices >= b.max_devices * 15 / 16 && devices <= b.max_devices,
        "{devices} devices"
    );
    assert!(value(m, "segwatch_inventory_evicted_total", "") > 0);
    let skipped = |reason| value(m, "segwatch_inspections_skipped_total", reason);
    assert!(skipped("memory_budget") > 0, "the 16 MiB were reached: {m}");
    assert!(
        skipped("evicted_no_payload") + skipped("table_full") > 0,
        "the 8,192 places were taken: {m}"
    );
    assert_eq!(value(m, "segwatch_incidents_open", ""), b.max_open, "{m}");
    let initiators = value(m, "segwatch_incident_initiators", "");
    assert!(
        initiators >= b.max_initiators * 9 / 10 && initiators <= b.max_initiators,
        "{initiators} initiators"
    );
    assert!(value(m, "segwatch_incident_untracked_total", "") > 0);
    for sink in ["stdout", "syslog1"] {
        assert!(
            value(m, "segwatch_sink_queue_depth_events", sink) >= b.queue,
            "{sink}'s queue is full: {m}"
        );
        assert!(
            value(m, "segwatch_events_dropped_total", sink) > 0,
            "{sink}"
        );
    }
    assert!(value(m, "segwatch_sink_spool_dropped_total", "syslog0") > 0);
    assert!(value(m, "segwatch_sink_spool_bytes", "syslog0") > (b.spool_mib << 20) - 4096);
    // The feed without a spool lost its queue at the stop, and said so.
    assert_eq!(flood.status, Some(1), "{}", flood.log);
    assert!(
        flood.log.contains("neither delivered nor spooled"),
        "{}",
        flood.log
    );

    // Within the sizing.
    let held = flood.peak.saturating_sub(base.peak);
    eprintln!(
        "flood peak {} MiB, base {} MiB: {} MiB over the base",
        flood.peak >> 20,
        base.peak >> 20,
        held >> 20,
    );
    let sizing = readme_variable_part(b);
    eprintln!("README's sizing of these bounds: {} MiB", sizing >> 20);
    assert!(
        held <= sizing,
        "{held} bytes over the base, more than README's {sizing}"
    );
}
