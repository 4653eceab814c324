//! End-to-end replay benchmark: `segwatch replay` on a large generated
//! hospital capture, timed beside `tcpdump -r FILE -w /dev/null` on the same
//! file in the same run (alternating, so both see the same machine state).
//!
//! `cargo bench --bench replay_e2e`
//!
//! Environment: `SEGWATCH_BENCH_PACKETS` (default 1,000,000),
//! `SEGWATCH_BENCH_RUNS` (default 15), `SEGWATCH_BENCH_DIR` (default
//! `target/bench-data`). Captures are generated once and kept there; their
//! TCP is valid (sequence and acknowledgement numbers advance as on a
//! wire), so reassembly, and tcpdump, do real work.
//! `SEGWATCH_BENCH_ONLY=reload` measures the policy reload alone;
//! `SEGWATCH_BENCH_BASELINE=PATH` measures the reload and the plain replay
//! for another segwatch binary too (an older build).
//!
//! It prints medians (and min/max) of wall time for:
//! 1. tcpdump vs segwatch (default threads) vs segwatch --threads 1, and
//!    their ratio both as medians divided and round by round (each round's
//!    replay over the tcpdump run just before it);
//! 2. segwatch with the 20-rule example policy vs a 5,000-rule one and a
//!    hospital group's 20,000 rules between 8,000 zones, read from the file
//!    and (`--policy-cache`) from the policy cache, and their peak memory;
//! 3. peak resident memory holding 1,000,000 concurrent flows;
//! 4. the daemon's policy reload: from SIGHUP to the first event judged by the new
//!    10,000-rule policy, `segwatch run --pcap` at the capture's own pace.
//! 5. the full product beside the plain replay and tcpdump in the same
//!    rounds: `--incidents` with 1,000 exceptions (`--exceptions`),
//!    `--apps`, `--apps --incidents` with the exceptions, the 8,000-zone
//!    policy, and the baseline binary's plain replay, with each round's
//!    ratios and each run's peak memory; `SEGWATCH_BENCH_ONLY=incidents`
//!    (or `product`) runs this part alone.
//!
//! It also checks that the events of a multi-threaded run, and of a run with
//! 1,000-frame batches, are byte-identical to those of a single-threaded one,
//! and that the large policies' events are the same from the cache and equal
//! those of the 20-rule policy (their extra rules and zones take no hospital
//! traffic).

// A benchmark that cannot set itself up should stop loudly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use segwatch::synth::hospital::{HospitalOptions, HospitalTraffic, distinct_flows};
use segwatch::synth::policy::{scaled_hospital_policy, scaled_hospital_policy_with_zones};
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
    let runs: usize = env_or("SEGWATCH_BENCH_RUNS", 15);
    let dir = PathBuf::from(env_or(
        "SEGWATCH_BENCH_DIR",
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench-data").to_string(),
    ));
    std::fs::create_dir_all(&dir).expect("bench data dir");
    let segwatch = env!("CARGO_BIN_EXE_segwatch");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = root.join("policies/example-hospital.toml");

    // "wire": TCP whose sequence numbers advance (captures generated before
    // had none, and are not reused).
    let capture = dir.join(format!("hospital-wire-{packets}.pcap"));
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
    if std::env::var("SEGWATCH_BENCH_ONLY").is_ok_and(|only| only == "reload") {
        reload_latencies(segwatch, &dir);
        return;
    }
    if matches!(
        std::env::var("SEGWATCH_BENCH_ONLY").as_deref(),
        Ok("incidents" | "product")
    ) {
        warm(&capture);
        let group_policy = dir.join("hospital-group-20000-rules-8000-zones.toml");
        std::fs::write(
            &group_policy,
            scaled_hospital_policy_with_zones(20_000, 8_000),
        )
        .expect("write policy");
        product(
            segwatch,
            &example,
            Some(&group_policy),
            &capture,
            &dir,
            packets,
            runs,
        );
        return;
    }
    let large_policy = dir.join("hospital-5000-rules.toml");
    std::fs::write(&large_policy, scaled_hospital_policy(5_000)).expect("write policy");
    let group_policy = dir.join("hospital-group-20000-rules-8000-zones.toml");
    std::fs::write(
        &group_policy,
        scaled_hospital_policy_with_zones(20_000, 8_000),
    )
    .expect("write policy");
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
    for (policy, name) in [
        (&large_policy, "5,000-rule"),
        (&group_policy, "20,000-rule, 8,000-zone"),
    ] {
        run_ok(replay(policy, None, &events_large));
        assert!(
            std::fs::read(&events_large).expect("events") == multi,
            "events with the {name} policy differ from those of the 20-rule policy"
        );
        for _ in 0..2 {
            run_ok(cached(policy, &events_large_cached));
            assert!(
                std::fs::read(&events_large_cached).expect("events") == multi,
                "events with the cached {name} policy differ"
            );
        }
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
    let mut t_group = Vec::new();
    let mut t_cached_group = Vec::new();
    let mut judge_group = Vec::new();
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
        t_group.push(time(&mut replay(
            &group_policy,
            None,
            Path::new("/dev/null"),
        )));
        t_cached_group.push(time(&mut cached(&group_policy, Path::new("/dev/null"))));
        judge_group.push(judged_for(replay(
            &group_policy,
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
    row("segwatch replay (20,000 rules, 8,000 zones)", &t_group);
    row(
        "segwatch replay (20,000 rules, 8,000 zones, cache)",
        &t_cached_group,
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
    let group_judging = row("  judging only, 20,000 rules, 8,000 zones", &judge_group);
    println!(
        "ratio 20,000 rules, 8,000 zones / 20 rules, judging only: {:.3} (round by round: median {:.3})",
        group_judging / small_judging,
        paired(&judge_group, &judge_small).0
    );
    println!(
        "ratio 20,000 rules, 8,000 zones / 20 rules, whole command, policy cache: {:.3} (round by round: median {:.3})",
        stats(&t_cached_group).0 / cached_small,
        paired(&t_cached_group, &t_cached_small).0
    );
    if base.is_some() {
        println!(
            "ratio segwatch (20,000 rules, 8,000 zones, policy cache) / tcpdump, round by round: median {:.2}",
            paired(&t_cached_group, &t_tcpdump).0
        );
    }
    // Peak memory with each policy, from the summary.
    for (policy, name) in [
        (&example, "20 rules"),
        (&large_policy, "5,000 rules"),
        (&group_policy, "20,000 rules, 8,000 zones"),
    ] {
        println!(
            "peak memory, {name}: {}",
            summary_line(replay(policy, None, Path::new("/dev/null")), "peak memory")
        );
    }
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

    reload_latencies(segwatch, &dir);
    product(
        segwatch,
        &example,
        Some(&group_policy),
        &capture,
        &dir,
        packets,
        runs,
    );
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

/// The full product beside the plain replay and tcpdump, in the same rounds
/// (alternating, each round running every command once): the plain replay,
/// `--incidents` with 1,000 exceptions, `--apps`, `--apps --incidents` with
/// the exceptions, and the hospital group's 20,000 rules between 8,000 zones
/// (from the policy cache), and with `SEGWATCH_BENCH_BASELINE=PATH` the
/// plain replay of that binary too. It prints medians of the whole command
/// and each round's ratio to that round's plain replay and tcpdump, then the
/// peak memory of each.
fn product(
    segwatch: &str,
    policy: &Path,
    group_policy: Option<&Path>,
    capture: &Path,
    dir: &Path,
    packets: u64,
    runs: usize,
) {
    let exceptions = dir.join("exceptions-1000.toml");
    std::fs::write(&exceptions, thousand_exceptions(policy)).expect("write exceptions");
    let policy_cache = dir.join("policy-cache-product");
    let replay_with =
        |program: &str, policy: &Path, flags: &[&str], threads: Option<usize>, out: &Path| {
            let mut cmd = Command::new(program);
            cmd.env_remove("SEGWATCH_POLICY_CACHE")
                .arg("replay")
                .arg("--policy")
                .arg(policy)
                .arg("--quiet")
                .arg("--output")
                .arg(out);
            for &flag in flags {
                match flag {
                    "--exceptions" => {
                        cmd.arg("--exceptions").arg(&exceptions);
                    }
                    "--policy-cache" => {
                        cmd.arg("--policy-cache").arg(&policy_cache);
                    }
                    flag => {
                        cmd.arg(flag);
                    }
                }
            }
            if let Some(n) = threads {
                cmd.arg("--threads").arg(n.to_string());
            }
            cmd.arg(capture);
            cmd
        };
    let replay = |flags: &[&str], threads: Option<usize>, out: &Path| {
        replay_with(segwatch, policy, flags, threads, out)
    };
    const INCIDENTS: &[&str] = &["--incidents", "--exceptions"];
    const APPS_INCIDENTS: &[&str] = &["--apps", "--incidents", "--exceptions"];
    // The same records for one thread and all.
    let (multi, single) = (
        dir.join("incidents-multi.jsonl"),
        dir.join("incidents-single.jsonl"),
    );
    run_ok(replay(APPS_INCIDENTS, None, &multi));
    run_ok(replay(APPS_INCIDENTS, Some(1), &single));
    let records = std::fs::read(&multi).expect("records");
    assert!(
        records == std::fs::read(&single).expect("records"),
        "incident records differ between one thread and all"
    );
    let incident_lines = String::from_utf8_lossy(&records)
        .matches("\"event_type\":\"incident\"")
        .count();
    let baseline = std::env::var("SEGWATCH_BENCH_BASELINE").ok();
    let have_tcpdump = Command::new("tcpdump").arg("--version").output().is_ok();
    let null = Path::new("/dev/null");
    // Fill the group policy's cache entry before the timed rounds.
    if let Some(group) = group_policy {
        run_ok(replay_with(
            segwatch,
            group,
            &["--policy-cache"],
            None,
            null,
        ));
    }
    let mut rows: Vec<(String, Vec<Duration>)> = Vec::new();
    let mut push = |name: &str, t: Duration| match rows.iter_mut().find(|(n, _)| n == name) {
        Some((_, times)) => times.push(t),
        None => rows.push((name.to_owned(), vec![t])),
    };
    for _ in 0..runs {
        if have_tcpdump {
            let mut tcpdump = Command::new("tcpdump");
            tcpdump.args(["-r"]).arg(capture).args(["-w", "/dev/null"]);
            push("tcpdump -r FILE -w /dev/null", time(&mut tcpdump));
        }
        push("replay", time(&mut replay(&[], None, null)));
        push(
            "replay --incidents (1,000 exceptions)",
            time(&mut replay(INCIDENTS, None, null)),
        );
        push("replay --apps", time(&mut replay(&["--apps"], None, null)));
        push(
            "replay --apps --incidents (1,000 exceptions)",
            time(&mut replay(APPS_INCIDENTS, None, null)),
        );
        if let Some(group) = group_policy {
            push(
                "replay, 20,000 rules, 8,000 zones (cache)",
                time(&mut replay_with(
                    segwatch,
                    group,
                    &["--policy-cache"],
                    None,
                    null,
                )),
            );
        }
        if let Some(baseline) = &baseline {
            push(
                "baseline replay",
                time(&mut replay_with(baseline, policy, &[], None, null)),
            );
        }
    }
    println!(
        "\nfull product: {packets} packets, {incident_lines} incident records with --apps --incidents, \
         1,000 exceptions, {runs} alternating rounds"
    );
    let find = |name: &str| rows.iter().find(|(n, _)| n == name).map(|(_, t)| t.clone());
    let plain = find("replay").expect("plain runs");
    let tcpdump = find("tcpdump -r FILE -w /dev/null");
    println!(
        "{:<46} {:>9} {:>9} {:>9} {:>13} {:>13}",
        "command", "median s", "min s", "max s", "/ replay", "/ tcpdump"
    );
    for (name, t) in &rows {
        let (med, min, max) = stats(t);
        let over_plain = paired(t, &plain).0;
        let over_tcpdump = tcpdump.as_ref().map_or(f64::NAN, |d| paired(t, d).0);
        println!(
            "{name:<46} {med:>9.3} {min:>9.3} {max:>9.3} {over_plain:>13.3} {over_tcpdump:>13.3}"
        );
    }
    println!("(ratios: medians of each round's time over that round's replay and tcpdump)");
    for (name, flags) in [
        ("plain", &[][..]),
        ("--incidents", INCIDENTS),
        ("--apps", &["--apps"][..]),
        ("--apps --incidents", APPS_INCIDENTS),
    ] {
        println!(
            "peak memory, {name}: {}",
            summary_line(replay(flags, None, null), "peak memory")
        );
    }
}

/// [`reload_latency`] of `SEGWATCH_BENCH_BASELINE` (when set), then of `segwatch`.
fn reload_latencies(segwatch: &str, dir: &Path) {
    if let Ok(baseline) = std::env::var("SEGWATCH_BENCH_BASELINE") {
        print!("baseline {baseline}: ");
        reload_latency(&baseline, dir);
    }
    reload_latency(segwatch, dir);
}

/// The daemon's reload of a 10,000-rule policy, from SIGHUP to the first flow judged by the
/// new policy. `segwatch run --pcap CAPTURE --pcap-pace realtime` (a hospital capture of
/// 600,000 packets over a minute: 10,000 packets a second, about 2,000 new flows a second,
/// 3,000 held) starts under a policy that allows every flow; each round puts a
/// policy of the same 10,000 rules that alerts on every flow in its place, sends SIGHUP and
/// waits for the events file to grow: the first event is the first packet judged by the new
/// policy (a flow that had no event and now alerts emits it at its next packet). Then the
/// allowing policy goes back, and the next round starts once each reload is in force (the
/// policy generation on /metrics) and its events are written. Rounds:
/// `SEGWATCH_BENCH_RELOADS` (default 15; the capture lasts for about 40).
fn reload_latency(segwatch: &str, dir: &Path) {
    let rounds: usize = env_or("SEGWATCH_BENCH_RELOADS", 15);
    let capture = dir.join("hospital-paced-600000.pcap");
    if !capture.exists() {
        let options = HospitalOptions {
            packets: 600_000,
            concurrent_flows: 3_000,
            gap_ns: 100_000,
            ..HospitalOptions::default()
        };
        let file = BufWriter::new(File::create(&capture).expect("create capture"));
        write_pcap(file, Resolution::Micro, HospitalTraffic::new(options)).expect("write capture");
    }
    let scaled = scaled_hospital_policy(10_000);
    let allowing = scaled.replace("action = \"alert\"", "action = \"allow\"");
    let alerting = scaled.replace("action = \"allow\"", "action = \"alert\"");
    let (allow_path, alert_path) = (dir.join("reload-allow.toml"), dir.join("reload-alert.toml"));
    std::fs::write(&allow_path, &allowing).expect("write policy");
    std::fs::write(&alert_path, &alerting).expect("write policy");
    let policy = dir.join("reload-policy.toml");
    // A whole file renamed into place, as an editor or a deployment tool does.
    let put = |from: &Path| {
        let staged = dir.join("reload-policy.toml.new");
        std::fs::copy(from, &staged).expect("copy policy");
        std::fs::rename(&staged, &policy).expect("rename policy");
    };
    put(&allow_path);
    let events = dir.join("reload-events.jsonl");
    let _ = std::fs::remove_file(&events);
    // SIGHUP only: the file watch is off.
    let config = dir.join("reload.toml");
    std::fs::write(&config, "[policy]\nwatch = false\n").expect("write config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let daemon = Daemon(
        Command::new(segwatch)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .arg("--pcap")
            .arg(&capture)
            .args(["--pcap-pace", "realtime", "--policy"])
            .arg(&policy)
            .arg("--events")
            .arg(&events)
            .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
            .env("SEGWATCH_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start segwatch run"),
    );
    let ready = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            ready.elapsed() < Duration::from_secs(30),
            "the daemon never listened"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    let size = || std::fs::metadata(&events).map_or(0, |m| m.len());
    let hangup = || assert!(daemon.signal(libc::SIGHUP), "SIGHUP not sent");
    // The policy generation in force, from /metrics.
    let generation = || -> Option<u32> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        write!(stream, "GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response
            .lines()
            .find_map(|line| line.strip_prefix("segwatch_policy_generation "))
            .and_then(|value| value.trim().parse().ok())
    };
    // Waits for the reload to `expected` to be in force.
    let in_force = |expected: u32| {
        let start = Instant::now();
        while generation() != Some(expected) {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the reload never took effect"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut latencies = Vec::new();
    let mut expected = 1;
    for _ in 0..rounds {
        let before = size();
        put(&alert_path);
        let start = Instant::now();
        hangup();
        while size() == before {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "no event within 5 s of the reload (did the capture end?)"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        latencies.push(start.elapsed());
        expected += 1;
        in_force(expected);
        put(&allow_path);
        hangup();
        expected += 1;
        in_force(expected);
        // The last events judged by the alerting policy are written.
        let mut last = size();
        loop {
            std::thread::sleep(Duration::from_millis(150));
            let now = size();
            if now == last {
                break;
            }
            last = now;
        }
    }
    drop(daemon);
    let (med, min, max) = stats(&latencies);
    println!(
        "policy reload, 10,000 rules ({} kB), SIGHUP to the first flow judged by it: \
         median {:.1} ms, min {:.1} ms, max {:.1} ms ({rounds} reloads)",
        alerting.len() / 1000,
        med * 1e3,
        min * 1e3,
        max * 1e3
    );
}

/// A daemon stopped (SIGTERM, then waited for) when dropped, even by a failed assertion.
struct Daemon(std::process::Child);

impl Daemon {
    /// Sends `signal`; false when it could not be sent.
    fn signal(&self, signal: libc::c_int) -> bool {
        // SAFETY: kill has no memory effects; the pid is our own child, not yet reaped.
        #[allow(unsafe_code)]
        let sent = unsafe { libc::kill(self.0.id() as libc::pid_t, signal) };
        sent == 0
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let _ = self.0.wait();
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

/// Runs a replay (its `--quiet` is dropped) and returns the line of its summary that starts
/// with `label`, without the label.
fn summary_line(cmd: Command, label: &str) -> String {
    let args: Vec<_> = cmd
        .get_args()
        .filter(|a| *a != "--quiet")
        .map(|a| a.to_owned())
        .collect();
    let output = Command::new(cmd.get_program())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_else(|| format!("no {label} in the summary"))
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
