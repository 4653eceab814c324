//! Byte-for-byte outputs of the commands, held against expected outputs in
//! `tests/golden/`: `replay` (plain, with detection and the inventory, and
//! under the application policy) on the bundled fixtures, every shared
//! capture, all shared captures as one and a generated hospital capture; and
//! the daemon's events and `/metrics` on a `run --pcap`.
//!
//! Timing figures (durations, peak memory, stage times) are masked; so is the
//! daemon's `flow_id`, which mixes in the start time. Anything else that
//! changes is a change of output: a change made on purpose rewrites the
//! expected files in the same commit (`SEGWATCH_BLESS=1 cargo test golden`)
//! and says so in its message.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{SEGWATCH, root, shared_pcaps};
use crate::daemon::{Daemon, metric, wait_for};

/// The ways a capture is replayed.
const VARIANTS: &[(&str, &[&str])] = &[
    ("plain", &["--policy", "policies/example-hospital.toml"]),
    (
        "apps",
        &[
            "--policy",
            "policies/example-hospital.toml",
            "--apps",
            "--inventory",
            "{dir}/inventory.json",
        ],
    ),
    (
        "app-policy",
        &[
            "--policy",
            "policies/imaging-with-applications.toml",
            "--inventory",
            "{dir}/inventory.csv",
        ],
    ),
];

fn golden_dir() -> PathBuf {
    root().join("tests/golden")
}

fn blessing() -> bool {
    std::env::var_os("SEGWATCH_BLESS").is_some()
}

/// The inventory names vendors from Debian's `ieee-data`, which CI installs;
/// without it the vendor names (and the expected files) would differ.
fn registry_present() -> bool {
    Path::new("/usr/share/ieee-data/oui.csv").is_file()
}

/// Masks the figures of a summary that depend on the machine.
fn mask_timing(stderr: &str) -> String {
    let mut out = String::new();
    for line in stderr.lines() {
        let trimmed = line.trim_start();
        let masked = if trimmed.starts_with("peak memory")
            || trimmed.starts_with("duration")
            || trimmed.starts_with("stages")
        {
            format!("{}<timing>", &line[..line.len() - trimmed.len()])
        } else if trimmed.starts_with("policy ") {
            match line.rsplit_once(" in ") {
                Some((head, _)) => format!("{head} in <timing>"),
                None => line.to_string(),
            }
        } else {
            line.to_string()
        };
        out.push_str(&masked);
        out.push('\n');
    }
    out
}

/// Sections longer than this are held as their length and SHA-256: the
/// generated capture's inventories run to megabytes.
const LONGEST_SECTION: usize = 256 << 10;

/// `body` as a section of an expected file: whole, or digested when long.
fn section(text: &mut String, title: &str, body: &str) {
    use sha2::Digest as _;
    writeln!(text, "# {title}").unwrap();
    if body.len() <= LONGEST_SECTION {
        text.push_str(body);
        return;
    }
    let digest = sha2::Sha256::digest(body.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    writeln!(
        text,
        "<{} bytes, {} lines, sha256 {hex}>",
        body.len(),
        body.lines().count()
    )
    .unwrap();
}

/// Compares `actual` with the expected file `name`, or writes it when blessing.
fn check(name: &str, actual: &str, mismatches: &mut Vec<String>) {
    let path = golden_dir().join(name);
    if blessing() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (SEGWATCH_BLESS=1 records it)", path.display()));
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        mismatches.push(format!(
            "{name}: differs from line {}: expected {:?}, got {:?}",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        ));
    }
}

/// Replays `files` in every variant and checks the outputs under `name`.
fn check_replays(name: &str, files: &[PathBuf], mismatches: &mut Vec<String>) {
    for (variant, args) in VARIANTS {
        let scratch = tempfile::tempdir().unwrap();
        let dir = scratch.path().to_str().unwrap();
        let args: Vec<String> = args.iter().map(|a| a.replace("{dir}", dir)).collect();
        let out = Command::new(SEGWATCH)
            .current_dir(root())
            .arg("replay")
            .args(&args)
            .args(files)
            .output()
            .unwrap();
        let mut text = String::new();
        writeln!(text, "# exit {:?}", out.status.code()).unwrap();
        section(&mut text, "stdout", &String::from_utf8_lossy(&out.stdout));
        let stderr = String::from_utf8_lossy(&out.stderr).replace(root().to_str().unwrap(), ".");
        section(&mut text, "stderr", &mask_timing(&stderr));
        for inventory in ["inventory.json", "inventory.csv"] {
            if let Ok(body) = std::fs::read_to_string(scratch.path().join(inventory)) {
                if !registry_present() {
                    continue;
                }
                section(&mut text, inventory, &body);
            }
        }
        check(&format!("{name}.{variant}.txt"), &text, mismatches);
    }
}

fn report(mismatches: Vec<String>) {
    assert!(
        mismatches.is_empty(),
        "outputs changed (SEGWATCH_BLESS=1 rewrites tests/golden/ for a change made on purpose):\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn replay_outputs_on_the_bundled_fixtures_are_unchanged() {
    let mut mismatches = Vec::new();
    let fixtures = root().join("tests/fixtures");
    let mut files = vec![fixtures.join("hospital-sample.pcap")];
    let mut dicom: Vec<PathBuf> = std::fs::read_dir(fixtures.join("dicom"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    dicom.sort();
    files.extend(dicom);
    for file in &files {
        let name = file.strip_prefix(&fixtures).unwrap().display().to_string();
        check_replays(
            &format!("fixtures/{name}"),
            std::slice::from_ref(file),
            &mut mismatches,
        );
    }
    report(mismatches);
}

fn shared_captures() -> Option<Vec<PathBuf>> {
    let Some(dir) = shared_pcaps() else {
        eprintln!("note: ../shared/pcaps is absent; skipping their expected outputs");
        return None;
    };
    let mut files = Vec::new();
    for sub in std::fs::read_dir(&dir).unwrap() {
        let sub = sub.unwrap().path();
        if sub.is_dir() {
            for f in std::fs::read_dir(sub).unwrap() {
                files.push(f.unwrap().path());
            }
        }
    }
    files.sort();
    Some(files)
}

#[test]
fn replay_outputs_on_the_shared_captures_are_unchanged() {
    let Some(files) = shared_captures() else {
        return;
    };
    let dir = shared_pcaps().unwrap();
    let mut mismatches = Vec::new();
    for file in &files {
        let name = file.strip_prefix(&dir).unwrap().display().to_string();
        check_replays(
            &format!("shared/{name}"),
            std::slice::from_ref(file),
            &mut mismatches,
        );
    }
    check_replays("shared/all-as-one", &files, &mut mismatches);
    report(mismatches);
}

#[test]
fn replay_outputs_on_a_generated_hospital_capture_are_unchanged() {
    let scratch = tempfile::tempdir().unwrap();
    let capture = scratch.path().join("hospital.pcap");
    let status = Command::new(SEGWATCH)
        .args(["synth", "hospital", "--packets", "200000", "-o"])
        .arg(&capture)
        .status()
        .unwrap();
    assert!(status.success());
    let mut mismatches = Vec::new();
    check_replays("generated/hospital-200k", &[capture], &mut mismatches);
    report(mismatches);
}

/// `flow_id` of the daemon's events mixes in its start time.
fn mask_flow_ids(events: &str) -> String {
    let mut out = String::new();
    for line in events.lines() {
        let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
        event["flow_id"] = "<flow_id>".into();
        out.push_str(&event.to_string());
        out.push('\n');
    }
    out
}

/// Runs `segwatch run --pcap capture` to the capture's end and checks its
/// `/metrics` and its events (flow ids masked) under `name`.
fn check_daemon(name: &str, capture: &Path, mismatches: &mut Vec<String>) {
    let scratch = tempfile::tempdir().unwrap();
    let events = scratch.path().join("events.jsonl");
    let policy = root().join("policies/example-hospital.toml");
    let daemon = Daemon::start(&[
        "--pcap",
        capture.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ]);
    // Read to its end and every event delivered: the figures stand still.
    let file = segwatch::capture::CaptureFile::open(capture).unwrap();
    let mut reader = file.reader();
    let mut frames = 0u64;
    while reader.next_frame().unwrap().is_some() {
        frames += 1;
    }
    wait_for(
        "the capture read and delivered",
        Duration::from_secs(60),
        || {
            let body = daemon.metrics();
            let packets = metric(&body, "segwatch_packets_total", "")?;
            let violations = metric(&body, "segwatch_violations_total", "")?;
            let sent = metric(&body, "segwatch_sink_events_sent_total", "events_file")?;
            let queued = metric(&body, "segwatch_sink_queue_depth_events", "")?;
            (packets == frames as f64 && sent == violations && queued == 0.0).then_some(())
        },
    );
    // A scrape reads the inventory before the workers' counters, so the one
    // that saw the last packet may hold an inventory a batch older: the next
    // one is whole.
    let exposition = mask_load_time(&daemon.metrics());
    let (status, _stderr) = daemon.stop();
    assert_eq!(status, Some(0));
    check(
        &format!("daemon/{name}.metrics.txt"),
        &exposition,
        mismatches,
    );
    let written = std::fs::read_to_string(&events).unwrap();
    check(
        &format!("daemon/{name}.events.jsonl"),
        &mask_flow_ids(&written),
        mismatches,
    );
}

/// The exposition with the policy's load time (a clock reading) masked.
fn mask_load_time(exposition: &str) -> String {
    let name = "segwatch_policy_last_reload_success_timestamp_seconds ";
    exposition
        .lines()
        .map(|line| match line.strip_prefix(name) {
            Some(_) => format!("{name}TIME\n"),
            None => format!("{line}\n"),
        })
        .collect()
}

#[test]
fn daemon_events_and_metrics_on_capture_files_are_unchanged() {
    let mut mismatches = Vec::new();
    let sample = root().join("tests/fixtures/hospital-sample.pcap");
    check_daemon("hospital-sample", &sample, &mut mismatches);
    // Many batches, so the daemon's sweeps at batch ends take part.
    let scratch = tempfile::tempdir().unwrap();
    let capture = scratch.path().join("hospital.pcap");
    let status = Command::new(SEGWATCH)
        .args(["synth", "hospital", "--packets", "30000", "-o"])
        .arg(&capture)
        .status()
        .unwrap();
    assert!(status.success());
    check_daemon("hospital-30k", &capture, &mut mismatches);
    report(mismatches);
}
