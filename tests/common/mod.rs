//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod flood;

use std::path::{Path, PathBuf};

use segwatch::capture::CaptureFile;
use segwatch::classify::CompiledPolicy;
use segwatch::classify::PolicyInForce;
use segwatch::flow::FlowConfig;
use segwatch::pipeline::Counters;
use segwatch::policy::load_policy_str;
use segwatch::replay::{ReplayOptions, replay};
use segwatch::synth::{Capture, Resolution};
use serde_json::Value;

/// The segwatch binary built for these tests.
pub const SEGWATCH: &str = env!("CARGO_BIN_EXE_segwatch");

/// The project root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The stdout of `segwatch replay` with `args`, judging `files` (as one
/// capture) by `policy`; the run must succeed.
pub fn replay_stdout(policy: &Path, files: &[PathBuf], args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(SEGWATCH)
        .arg("replay")
        .args(args)
        .arg("--policy")
        .arg(policy)
        .args(files)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// [`replay_stdout`] with application detection, `threads` threads and
/// batches of `batch` frames.
pub fn replay_apps_stdout(policy: &Path, files: &[PathBuf], threads: &str, batch: &str) -> Vec<u8> {
    let args = ["-q", "--apps", "--threads", threads, "--batch-size", batch];
    replay_stdout(policy, files, &args)
}

/// `../shared/pcaps`, when present.
pub fn shared_pcaps() -> Option<PathBuf> {
    let dir = root().join("../shared/pcaps");
    dir.is_dir().then_some(dir)
}

/// Compiles policy text, panicking with its diagnostics when invalid.
pub fn policy(text: &str) -> CompiledPolicy {
    match load_policy_str(text, Path::new("test-policy.toml")) {
        Ok((policy, _warnings)) => CompiledPolicy::compile(&policy),
        Err(e) => panic!("test policy invalid: {:#?}", e.diagnostics),
    }
}

/// What a replay produced.
pub struct Replayed {
    /// Events, parsed.
    pub events: Vec<Value>,
    /// Events as written.
    pub raw: String,
    /// Counters.
    pub stats: Counters,
}

/// Replays a capture (written as pcap to a temporary file) with `threads`.
pub fn replay_capture(
    policy: &CompiledPolicy,
    capture: &Capture,
    flows: FlowConfig,
    threads: usize,
) -> Replayed {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.pcap");
    capture.write_pcap(&path, Resolution::Nano).unwrap();
    replay_files(policy, &[path], flows, threads)
}

/// Replays capture files.
pub fn replay_files(
    policy: &CompiledPolicy,
    paths: &[PathBuf],
    flows: FlowConfig,
    threads: usize,
) -> Replayed {
    let files: Vec<CaptureFile> = paths
        .iter()
        .map(|p| CaptureFile::open(p).unwrap())
        .collect();
    let options = ReplayOptions {
        threads,
        flows,
        batch_size: 7,
        inventory: None,
        detect_apps: false,
        exiting_after: false,
        ..ReplayOptions::default()
    };
    let mut out = Vec::new();
    let policy = PolicyInForce::new(policy.clone(), 0);
    let outcome = replay(&files, &policy, &options, &mut out).unwrap();
    assert!(
        outcome.capture_error.is_none(),
        "{:?}",
        outcome.capture_error
    );
    let raw = String::from_utf8(out).unwrap();
    let events = raw
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Replayed {
        events,
        raw,
        stats: outcome.stats,
    }
}

/// Replays with one thread and with three (and tiny batches), asserts the
/// outputs are byte-identical, and returns the events.
pub fn events_of(policy: &CompiledPolicy, capture: &Capture, flows: FlowConfig) -> Replayed {
    let single = replay_capture(policy, capture, flows, 1);
    let multi = replay_capture(policy, capture, flows, 3);
    assert_eq!(
        single.raw, multi.raw,
        "events depend on the number of threads"
    );
    single
}

/// The flow id of the flow whose first packet is frame `index` of `capture`.
pub fn fid(capture: &Capture, index: u64) -> String {
    let salt = capture.frames().first().map_or(0, |f| f.0);
    format!("{:016x}", segwatch::flow::flow_id(index, salt))
}

/// RFC 3339 of a fixture time in seconds.
pub fn ts(seconds: f64) -> String {
    segwatch::event::rfc3339_micros(segwatch::synth::at(seconds))
}
