//! End-to-end replay benchmark: `segwatch replay` on a large generated
//! hospital capture, timed beside `tcpdump -r FILE -w /dev/null` on the same
//! file in the same run (alternating, so both see the same machine state).
//!
//! `cargo bench --bench replay_e2e`
//!
//! Environment: `SEGWATCH_BENCH_PACKETS` (default 1,000,000),
//! `SEGWATCH_BENCH_RUNS` (default 11), `SEGWATCH_BENCH_DIR` (default
//! `target/bench-data`). Captures are generated once and kept there.
//!
//! It prints medians (and min/max) of wall time for:
//! 1. tcpdump vs segwatch (default threads) vs segwatch --threads 1, and
//!    their ratio both as medians divided and round by round (each round's
//!    replay over the tcpdump run just before it);
//! 2. segwatch with the 20-rule example policy vs a 5,000-rule one, read
//!    from the file and (`--policy-cache`) from the policy cache;
//! 3. peak resident memory holding 1,000,000 concurrent flows;
//! 4. the plain replay beside `--incidents` with 1,000 exceptions
//!    (`--exceptions`), alternating round by round, with each run's peak
//!    memory; `SEGWATCH_BENCH_ONLY=incidents` runs this part alone.
//!
//! It also checks that the events of a multi-threaded run, and of a run with
//! 1,000-frame batches, are byte-identical to those of a single-threaded one,
//! and that the 5,000-rule policy's events are the same from the cache.

// A benchmark that cannot set itself up should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use segwatch::synth::hospital::{HospitalOptions, HospitalTraffic, distinct_flows};
use segwatch::synth::policy::scaled_hospital_policy;
use segwatch::synth::{FIXTURE_EPOCH_NS, Resolution, write_pcap};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs us without
    // it: then do nothing, this is not a test.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let packets: u64 = env_or("SEGWATCH_BENCH_PACKETS", 1_000_000);
    let runs: usize = env_or("SEGWATCH_BENCH_RUNS", 11);
    let dir = PathBuf::from(env_or(
        "SEGWATCH_BENCH_DIR",
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-data").to_string(),
    ));
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let segwatch = env!("CARGO_BIN_EXE_segwatch");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("policies/example-hospital.toml");

    let capture = dir.join(format!("hospital-{packets}.pcap"));
    if !capture.exists() {
        eprintln!("generating {} ...", capture.display());
        let options = HospitalOptions {
            packets,
            concurrent_flows: 20_000,
            ..HospitalOptions::default()
        };
        let file = BufWriter::new(File::create(&capture).expect("create capture"));
        write_pcap(file, Resolution::Micro, HospitalTraffic::new(options)).expect("write capture");
    }
    if std::env::var("SEGWATCH_BENCH_ONLY").as_deref() == Ok("incidents") {
        warm(&capture);
        incidents(segwatch, &example, &capture, &dir, packets, runs);
        return;
    }
    let large_policy = dir.join("hospital-5000-rules.toml");
    std::fs::write(&large_policy, scaled_hospital_policy(5_000)).expect("write policy");
    warm(&capture);

    let policy_cache = dir.join("policy-cache");
    let _ = std::fs::remove_dir_all(&policy_cache);
    let replay = |policy: &Path, threads: Option<usize>, out: &Path| {
        let mut cmd = Command::new(segwatch);
        cmd.env_remove("SEGWATCH_POLICY_CACHE")
            .arg("replay")
            .arg("--policy")
            .arg(policy)
            .arg("--quiet")
            .arg("--output")
            .arg(out);
        if let Some(n) = threads {
            cmd.arg("--threads").arg(n.to_string());
        }
        cmd.arg(&capture);
        cmd
    };
    let events_multi = dir.join("events-multi.jsonl");
    let events_single = dir.join("events-single.jsonl");

    // Correctness first: the multi-threaded events equal the single-threaded ones.
    run_ok(replay(&example, None, &events_multi));
    run_ok(replay(&example, Some(1), &events_single));
    let multi = std::fs::read(&events_multi).expect("events");
    let single = std::fs::read(&events_single).expect("events");
    assert_eq!(
        multi, single,
        "multi-threaded events differ from single-threaded ones"
    );
    // And from those of another batch size (a batch's end ends no flow).
    let events_batched = dir.join("events-batched.jsonl");
    let mut batched = replay(&example, None, &events_batched);
    batched.args(["--batch-size", "1000"]);
    run_ok(batched);
    assert!(
        std::fs::read(&events_batched).expect("events") == multi,
        "events of 1,000-frame batches differ from those of the default batches"
    );
    let events = multi.iter().filter(|&&b| b == b'\n').count();
    // The cache: the first run stores each policy, the later ones read it back, with the
    // events of a run without the cache.
    let cached = |policy: &Path, out: &Path| {
        let mut cmd = replay(policy, None, out);
        cmd.arg("--policy-cache").arg(&policy_cache);
        cmd
    };
    let events_large = dir.join("events-large.jsonl");
    let events_large_cached = dir.join("events-large-cached.jsonl");
    run_ok(replay(&large_policy, None, &events_large));
    for _ in 0..2 {
        run_ok(cached(&large_policy, &events_large_cached));
        assert!(
            std::fs::read(&events_large).expect("events")
                == std::fs::read(&events_large_cached).expect("events"),
            "events with the cached 5,000-rule policy differ"
        );
    }
    run_ok(cached(&example, Path::new("/dev/null")));

    let mut tcpdump = Command::new("tcpdump");
    tcpdump.args(["-r"]).arg(&capture).args(["-w", "/dev/null"]);
    let have_tcpdump = Command::new("tcpdump").arg("--version").output().is_ok();

    let mut t_tcpdump = Vec::new();
    let mut t_multi = Vec::new();
    let mut t_single = Vec::new();
    let mut t_large = Vec::new();
    let mut t_cached_small = Vec::new();
    let mut t_cached_large = Vec::new();
    let mut judge_small = Vec::new();
    let mut judge_large = Vec::new();
    for _ in 0..runs {
        if have_tcpdump {
            t_tcpdump.push(time(&mut tcpdump));
        }
        t_multi.push(time(&mut replay(&example, None, Path::new("/dev/null"))));
        t_single.push(time(&mut replay(&example, Some(1), Path::new("/dev/null"))));
        t_large.push(time(&mut replay(
            &large_policy,
            None,
            Path::new("/dev/null"),
        )));
        t_cached_small.push(time(&mut cached(&example, Path::new("/dev/null"))));
        t_cached_large.push(time(&mut cached(&large_policy, Path::new("/dev/null"))));
        // The time spent judging packets, from the summary: the whole
        // command also reads and compiles the policy, which for the
        // 5,000-rule file (800 kB of TOML) is a fixed cost of its own.
        judge_small.push(judged_for(replay(&example, None, Path::new("/dev/null"))));
        judge_large.push(judged_for(replay(
            &large_policy,
            None,
            Path::new("/dev/null"),
        )));
    }

    let size = std::fs::metadata(&capture).map(|m| m.len()).unwrap_or(0);
    println!(
        "\nend-to-end replay: {packets} packets, {} MB, {events} violation events, {runs} runs",
        size >> 20
    );
    println!(
        "{:<44} {:>10} {:>10} {:>10} {:>12}",
        "command", "median s", "min s", "max s", "packets/s"
    );
    let row = |name: &str, t: &[Duration]| {
        let (med, min, max) = stats(t);
        println!(
            "{name:<44} {med:>10.3} {min:>10.3} {max:>10.3} {:>12.0}",
            packets as f64 / med
        );
        med
    };
    let base = if have_tcpdump {
        Some(row("tcpdump -r FILE -w /dev/null", &t_tcpdump))
    } else {
        None
    };
    let multi = row("segwatch replay (20 rules, all cores)", &t_multi);
    let single = row("segwatch replay (20 rules, --threads 1)", &t_single);
    let large = row("segwatch replay (5,000 rules, all cores)", &t_large);
    let cached_small = row("segwatch replay (20 rules, policy cache)", &t_cached_small);
    let cached_large = row(
        "segwatch replay (5,000 rules, policy cache)",
        &t_cached_large,
    );
    if let Some(base) = base {
        println!("ratio segwatch/tcpdump (all cores): {:.2}", multi / base);
        println!("ratio segwatch/tcpdump (1 thread):  {:.2}", single / base);
        // The machine's speed drifts from round to round: each round's
        // replays divided by that round's tcpdump (run just before them)
        // cancels the drift that the ratio of medians keeps.
        for (name, t) in [("all cores", &t_multi), ("1 thread", &t_single)] {
            let (med, min, max) = paired(t, &t_tcpdump);
            println!(
                "ratio segwatch/tcpdump ({name}), round by round: median {med:.2}, min {min:.2}, max {max:.2}"
            );
        }
    }
    let small_judging = row("  judging only, 20 rules (summary duration)", &judge_small);
    let large_judging = row(
        "  judging only, 5,000 rules (summary duration)",
        &judge_large,
    );
    println!(
        "ratio 5,000 rules / 20 rules, whole command: {:.3}",
        large / multi
    );
    println!(
        "ratio 5,000 rules / 20 rules, judging only:  {:.3}",
        large_judging / small_judging
    );
    println!(
        "ratio 5,000 rules / 20 rules, whole command, policy cache: {:.3}",
        cached_large / cached_small
    );
    for (name, large, small) in [
        ("whole command", &t_large, &t_multi),
        ("judging only", &judge_large, &judge_small),
        (
            "whole command, policy cache",
            &t_cached_large,
            &t_cached_small,
        ),
    ] {
        let (med, min, max) = paired(large, small);
        println!(
            "ratio 5,000 rules / 20 rules ({name}), round by round: median {med:.3}, min {min:.3}, max {max:.3}"
        );
    }

    // Memory: one million concurrent flows.
    let flows_capture = dir.join("distinct-syn-1000000.pcap");
    if !flows_capture.exists() {
        let file = BufWriter::new(File::create(&flows_capture).expect("create capture"));
        write_pcap(
            file,
            Resolution::Micro,
            distinct_flows(1_000_000, FIXTURE_EPOCH_NS),
        )
        .expect("write");
    }
    let output = Command::new(segwatch)
        .args(["replay", "--policy"])
        .arg(&example)
        .args(["--output", "/dev/null"])
        .arg(&flows_capture)
        .stderr(Stdio::piped())
        .output()
        .expect("run segwatch");
    let summary = String::from_utf8_lossy(&output.stderr);
    let line = summary
        .lines()
        .find(|l| l.contains("peak memory"))
        .unwrap_or("peak memory: unknown");
    let active = summary.lines().find(|l| l.contains("flows ")).unwrap_or("");
    println!(
        "1,000,000 concurrent flows: {} | {}",
        line.trim(),
        active.trim()
    );
    incidents(segwatch, &example, &capture, &dir, packets, runs);
}

/// 1,000 exceptions for `policy`: each names one of its rules, a zone and
/// an address and port that the generated traffic never uses, so every
/// violation is tried against the exceptions of its rule and none matches
/// (the cost of matching, not of excepting).
fn thousand_exceptions(policy: &Path) -> String {
    use std::fmt::Write as _;
    let (policy, _) = segwatch::policy::load_policy_file(policy).expect("policy");
    let mut text = String::new();
    for i in 0..1000 {
        let rule = &policy.rules[i % policy.rules.len()].name;
        let zone = &policy.zones[i % policy.zones.len()].name;
        let _ = write!(
            text,
            "[[exceptions]]\nid = \"EX-{i:04}\"\nreason = \"benchmark\"\nowner = \"bench\"\n\
             expires = 2099-01-01\nrule = \"{rule}\"\nfrom = [\"{zone}\"]\n\
             to = [\"192.0.2.{}\"]\nservices = [\"tcp/{}\"]\n\n",
            i % 250,
            1000 + i
        );
    }
    text
}

/// The plain replay and `--incidents` with 1,000 exceptions, alternating:
/// medians of the whole command and of the judging, round by round ratios,
/// and the peak memory of each.
fn incidents(segwatch: &str, policy: &Path, capture: &Path, dir: &Path, packets: u64, runs: usize) {
    let exceptions = dir.join("exceptions-1000.toml");
    std::fs::write(&exceptions, thousand_exceptions(policy)).expect("write exceptions");
    let replay = |incidents: bool, threads: Option<usize>, out: &Path| {
        let mut cmd = Command::new(segwatch);
        cmd.env_remove("SEGWATCH_POLICY_CACHE")
            .arg("replay")
            .arg("--policy")
            .arg(policy)
            .arg("--quiet")
            .arg("--output")
            .arg(out);
        if incidents {
            cmd.arg("--incidents").arg("--exceptions").arg(&exceptions);
        }
        if let Some(n) = threads {
            cmd.arg("--threads").arg(n.to_string());
        }
        cmd.arg(capture);
        cmd
    };
    // The same records for one thread and all.
    let (multi, single) = (dir.join("incidents-multi.jsonl"), dir.join("incidents-single.jsonl"));
    run_ok(replay(true, None, &multi));
    run_ok(replay(true, Some(1), &single));
    let records = std::fs::read(&multi).expect("records");
    assert!(
        records == std::fs::read(&single).expect("records"),
        "incident records differ between one thread and all"
    );
    let incident_lines = String::from_utf8_lossy(&records)
        .matches("\"event_type\":\"incident\"")
        .count();
    let (mut plain, mut folded, mut plain_judging, mut folded_judging) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        plain.push(time(&mut replay(false, None, Path::new("/dev/null"))));
        folded.push(time(&mut replay(true, None, Path::new("/dev/null"))));
        plain_judging.push(judged_for(replay(false, None, Path::new("/dev/null"))));
        folded_judging.push(judged_for(replay(true, None, Path::new("/dev/null"))));
    }
    println!(
        "\nincidents: {packets} packets, {incident_lines} incident records, 1,000 exceptions, {runs} rounds"
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10}",
        "command", "median s", "min s", "max s"
    );
    for (name, t) in [
        ("segwatch replay (all cores)", &plain),
        ("segwatch replay --incidents --exceptions (1,000)", &folded),
        ("  judging only, plain (summary duration)", &plain_judging),
        ("  judging only, incidents (summary duration)", &folded_judging),
    ] {
        let (med, min, max) = stats(t);
        println!("{name:<52} {med:>10.3} {min:>10.3} {max:>10.3}");
    }
    for (name, a, b) in [
        ("whole command", &folded, &plain),
        ("judging only", &folded_judging, &plain_judging),
    ] {
        let (med, min, max) = paired(a, b);
        println!(
            "ratio incidents / plain ({name}), round by round: median {med:.3}, min {min:.3}, max {max:.3}"
        );
    }
    for (name, incidents) in [("plain", false), ("incidents", true)] {
        let cmd = replay(incidents, None, Path::new("/dev/null"));
        let args: Vec<_> = cmd
            .get_args()
            .filter(|a| *a != "--quiet")
            .map(|a| a.to_owned())
            .collect();
        let output = Command::new(segwatch)
            .args(args)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .output()
            .expect("run segwatch");
        let summary = String::from_utf8_lossy(&output.stderr);
        let peak = summary
            .lines()
            .find(|l| l.contains("peak memory"))
            .unwrap_or("peak memory unknown");
        println!("{name}: {}", peak.trim());
    }
}

fn warm(path: &Path) {
    let _ = std::fs::read(path);
}

fn run_ok(mut cmd: Command) {
    let status = cmd.stdout(Stdio::null()).status().expect("run segwatch");
    assert!(status.success(), "{cmd:?} failed: {status}");
}

fn time(cmd: &mut Command) -> Duration {
    let start = Instant::now();
    let status = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run");
    let elapsed = start.elapsed();
    assert!(status.success(), "{cmd:?} failed: {status}");
    elapsed
}

/// Runs a replay (its `--quiet` is dropped) and returns the judging time its
/// summary reports.
fn judged_for(cmd: Command) -> Duration {
    let args: Vec<_> = cmd
        .get_args()
        .filter(|a| *a != "--quiet")
        .map(|a| a.to_owned())
        .collect();
    let mut plain = Command::new(cmd.get_program());
    plain.args(args);
    let output = plain
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(output.status.success());
    let summary = String::from_utf8_lossy(&output.stderr);
    let secs: f64 = summary
        .lines()
        .find_map(|l| l.trim().strip_prefix("duration"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("duration in summary");
    Duration::from_secs_f64(secs)
}

/// Median, minimum and maximum of `a[i] / b[i]`: each round's run over the
/// other run of the same round, which cancels the machine's drift between
/// rounds that the ratio of medians keeps.
fn paired(a: &[Duration], b: &[Duration]) -> (f64, f64, f64) {
    spread(
        a.iter()
            .zip(b)
            .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
            .collect(),
    )
}

fn stats(times: &[Duration]) -> (f64, f64, f64) {
    spread(times.iter().map(Duration::as_secs_f64).collect())
}

/// Median, minimum and maximum.
fn spread(mut values: Vec<f64>) -> (f64, f64, f64) {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    (median, values[0], values[values.len() - 1])
}
