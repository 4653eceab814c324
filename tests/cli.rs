//! The `segwatch` binary as CI runs it: exit statuses, stdout/stderr
//! separation, `--output`, `--fail-on`, bad input, several files as one
//! capture, and `check`.

use std::process::{Command, Output};

use segwatch::synth::{Capture, Pkt, Resolution, at, tcp_flags::*};

use crate::common::{SEGWATCH, root};

fn segwatch(args: &[&str]) -> Output {
    Command::new(SEGWATCH)
        .args(args)
        .output()
        .expect("run segwatch")
}

fn example_policy() -> String {
    root()
        .join("policies/example-hospital.toml")
        .display()
        .to_string()
}

/// A small capture against example-hospital.toml: one critical violation
/// (pump to the internet), one low (vendor RDP), one allowed flow.
fn hospital_capture() -> Capture {
    let mut c = Capture::new();
    c.add(
        at(0.0),
        &Pkt::tcp("10.20.1.7:50123", "52.1.2.3:443", SYN).vlans(&[120]),
    );
    c.add(at(0.1), &Pkt::tcp("10.20.1.8:50000", "10.20.8.10:443", SYN));
    c.add(at(0.2), &Pkt::tcp("10.90.0.2:40000", "10.40.0.5:3389", SYN));
    c
}

fn lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

#[test]
fn replay_writes_json_events_to_stdout_and_the_summary_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("h.pcap");
    hospital_capture()
        .write_pcap(&pcap, Resolution::Micro)
        .unwrap();
    let out = segwatch(&[
        "replay",
        "--policy",
        &example_policy(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = lines(&out.stdout);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["rule"], "medical-device-internet");
    assert_eq!(events[0]["severity"], "critical");
    assert_eq!(events[0]["vlan"], 120);
    assert_eq!(events[0]["src_criticality"], "life-critical");
    assert_eq!(events[0]["dest_criticality"], "untrusted");
    assert_eq!(events[0]["service"], "https");
    assert_eq!(events[1]["rule"], "vendor-remote-session");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "packets        3",
        "violations     2 (1 critical, 0 high, 0 medium, 1 low)",
        "medical-device-internet",
        "packets/s",
    ] {
        assert!(
            stderr.contains(needle),
            "summary lacks {needle:?}:\n{stderr}"
        );
    }
}

#[test]
fn fail_on_sets_exit_status_one_at_or_above_the_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("h.pcap");
    hospital_capture()
        .write_pcap(&pcap, Resolution::Micro)
        .unwrap();
    let p = pcap.to_str().unwrap();
    let policy = example_policy();
    for (threshold, code, count) in [
        ("critical", 1, "1 violation"),
        ("high", 1, "1 violation"),
        ("low", 1, "2 violations"),
    ] {
        let out = segwatch(&[
            "replay",
            "-q",
            "--policy",
            &policy,
            "--fail-on",
            threshold,
            p,
        ]);
        assert_eq!(out.status.code(), Some(code), "--fail-on {threshold}");
        // Issue 15.9: one line says why, even with -q.
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!(
                "segwatch: exit status 1: {count} at or above {threshold} (--fail-on {threshold})\n"
            )
        );
    }
    // Only the vendor session: low.
    let mut low = Capture::new();
    low.add(at(0.0), &Pkt::tcp("10.90.0.2:40000", "10.40.0.5:3389", SYN));
    low.write_pcap(&pcap, Resolution::Micro).unwrap();
    let out = segwatch(&[
        "replay",
        "-q",
        "--policy",
        &policy,
        "--fail-on",
        "medium",
        p,
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = segwatch(&["replay", "-q", "--policy", &policy, "--fail-on", "bogus", p]);
    assert_eq!(out.status.code(), Some(2), "a bad flag is bad input");
}

#[test]
fn output_file_and_several_files_as_one_capture() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.pcap"), dir.path().join("b.pcapng"));
    // The flow starts in the first file (SYN) and continues in the second,
    // written as pcapng: one flow, one event.
    let mut first = Capture::new();
    first.add(at(0.0), &Pkt::tcp("10.20.1.7:50123", "52.1.2.3:443", SYN));
    first.write_pcap(&a, Resolution::Nano).unwrap();
    let mut second = Capture::new();
    second.add(
        at(0.1),
        &Pkt::tcp("52.1.2.3:443", "10.20.1.7:50123", SYN | ACK),
    );
    std::fs::write(&b, second.to_pcapng()).unwrap();
    let events = dir.path().join("events.jsonl");
    let out = segwatch(&[
        "replay",
        "-q",
        "--policy",
        &example_policy(),
        "-o",
        events.to_str().unwrap(),
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "events go to the file, not stdout");
    let written = lines(&std::fs::read(&events).unwrap());
    assert_eq!(written.len(), 1);
    assert_eq!(written[0]["src_ip"], "10.20.1.7");
    // Given the other way round, the SYN-ACK comes first: its receiver (still
    // the pump) initiates, and the event carries the SYN-ACK's time.
    let out = segwatch(&[
        "replay",
        "-q",
        "--policy",
        &example_policy(),
        b.to_str().unwrap(),
        a.to_str().unwrap(),
    ]);
    let swapped = lines(&out.stdout);
    assert_eq!(swapped.len(), 1);
    assert_eq!(swapped[0]["src_ip"], "10.20.1.7");
    assert_eq!(
        swapped[0]["timestamp"],
        segwatch::event::rfc3339_micros(at(0.1))
    );
}

#[test]
fn bad_input_is_one_line_naming_the_file_with_exit_status_two() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.pcap");
    std::fs::write(&text, "this is not a capture\n").unwrap();
    let missing = dir.path().join("missing.pcap");
    let empty = dir.path().join("empty.pcap");
    std::fs::write(&empty, b"").unwrap();
    let policy = example_policy();
    for path in [&text, &missing, &empty] {
        let out = segwatch(&["replay", "--policy", &policy, path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", path.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.contains(path.to_str().unwrap()),
            "names the file: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
    let bad_policy = dir.path().join("bad.toml");
    std::fs::write(&bad_policy, "[policy]\nname = \"x\"\nbogus = 1\n").unwrap();
    let pcap = dir.path().join("h.pcap");
    hospital_capture()
        .write_pcap(&pcap, Resolution::Micro)
        .unwrap();
    let out = segwatch(&[
        "replay",
        "--policy",
        bad_policy.to_str().unwrap(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:3:1"), "{stderr}");
}

#[test]
fn a_capture_cut_inside_its_last_record_is_judged_up_to_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("cut.pcap");
    let bytes = hospital_capture().to_pcap(Resolution::Micro);
    std::fs::write(&pcap, &bytes[..bytes.len() - 7]).unwrap();
    let out = segwatch(&[
        "replay",
        "--policy",
        &example_policy(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        lines(&out.stdout).len(),
        1,
        "the pump's event, before the cut"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("cut.pcap"),
        "{stderr}"
    );
}

#[test]
fn a_corrupt_record_after_good_ones_keeps_the_events_already_written() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("corrupt.pcap");
    let mut c = hospital_capture();
    c.add(at(0.3), &Pkt::tcp("10.20.1.9:50123", "52.1.2.4:443", SYN));
    let mut bytes = c.to_pcap(Resolution::Micro);
    // Make the last record claim a 16 MB frame: impossible (libpcap's
    // largest is 256 KiB), so corrupt, not cut.
    let last = bytes.len()
        - Pkt::tcp("10.20.1.9:50123", "52.1.2.4:443", SYN)
            .build()
            .len()
        - 16;
    bytes[last + 8..last + 12].copy_from_slice(&(16u32 << 20).to_le_bytes());
    std::fs::write(&pcap, &bytes).unwrap();
    let out = segwatch(&[
        "replay",
        "-q",
        "--policy",
        &example_policy(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        lines(&out.stdout).len(),
        2,
        "events before the bad record stay written"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("corrupt.pcap") && stderr.contains("corrupt"),
        "{stderr}"
    );
}

#[test]
fn logs_never_mix_into_the_events_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("h.pcap");
    hospital_capture()
        .write_pcap(&pcap, Resolution::Micro)
        .unwrap();
    let out = segwatch(&[
        "--log-level",
        "trace",
        "replay",
        "--policy",
        &example_policy(),
        pcap.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(lines(&out.stdout).len(), 2, "every stdout line is an event");
}

#[test]
fn check_accepts_every_bundled_policy_and_rejects_a_broken_one() {
    let mut args = vec!["check".to_string()];
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        args.push(entry.unwrap().path().display().to_string());
    }
    assert!(args.len() >= 4, "example plus at least two more policies");
    let out = Command::new(SEGWATCH).args(&args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "no warnings: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.toml");
    std::fs::write(
        &bad,
        "[policy]\nname = \"b\"\n\n[zones.a]\nnetworks = [\"10.0.0.1/8\"]\n\n[[rules]]\nname = \"r\"\nfrom = [\"a\"]\nto = [\"nowhere\"]\naction = \"alert\"\n",
    )
    .unwrap();
    let out = segwatch(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.toml:5:"),
        "host bits error with its line: {stderr}"
    );
    assert!(
        stderr.contains("broken.toml:10:"),
        "unknown zone with its line: {stderr}"
    );
}

#[test]
fn the_bundled_sample_is_what_the_generator_makes() {
    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("sample.pcap");
    let out = segwatch(&["synth", "sample", "-o", made.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0));
    let bundled =
        std::fs::read(root().join("tests/fixtures/hospital-sample.pcap")).expect("bundled sample");
    assert!(
        std::fs::read(&made).unwrap() == bundled,
        "regenerate with: segwatch synth sample -o tests/fixtures/hospital-sample.pcap"
    );
    // And the README's first command shows violations from it.
    let out = segwatch(&[
        "replay",
        "--policy",
        &example_policy(),
        root()
            .join("tests/fixtures/hospital-sample.pcap")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    let events = lines(&out.stdout);
    let rules: std::collections::BTreeSet<&str> =
        events.iter().map(|e| e["rule"].as_str().unwrap()).collect();
    assert!(rules.len() >= 4, "several kinds of violation: {rules:?}");
}

/// Standard error is unbuffered: a message written in pieces can be split by
/// another process's output to the same terminal or CI log. strace records
/// every write(2) to standard error; each message must be one of them,
/// whole: the summary (first line to last), a truncation warning, a policy
/// error.
#[test]
fn each_message_to_stderr_is_written_in_one_call() {
    let dir = tempfile::tempdir().unwrap();
    // Cut inside the last record: a warning besides the summary.
    let whole = hospital_capture().to_pcap(Resolution::Micro);
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &whole[..whole.len() - 5]).unwrap();
    let bad_policy = dir.path().join("bad.toml");
    std::fs::write(&bad_policy, "[policy]\nname = \"x\"\nbogus = 1\n").unwrap();

    let stderr_writes = |args: &[&str]| -> Vec<String> {
        let trace = dir.path().join("trace");
        let status = Command::new("strace")
            .args(["-f", "-qq", "-e", "trace=write,writev", "-e", "signal=none"])
            .args(["-s", "4096", "-xx", "-o"])
            .arg(&trace)
            .arg(SEGWATCH)
            .args(args)
            .output()
            .expect("strace is installed (.ci/run installs it)")
            .status;
        assert!(status.code().is_some(), "segwatch ran under strace");
        // Lines like: 1234 write(2, "\x73\x65...", 537) = 537
        std::fs::read_to_string(&trace)
            .unwrap()
            .lines()
            .filter_map(|line| {
                let call = line
                    .split_once(' ')
                    .map_or(line, |(_, rest)| rest)
                    .trim_start();
                let quoted = call.strip_prefix("write(2, \"")?;
                let hex = &quoted[..quoted.find('"')?];
                let bytes: Vec<u8> = hex
                    .split("\\x")
                    .filter(|h| !h.is_empty())
                    .map(|h| u8::from_str_radix(h, 16).unwrap())
                    .collect();
                Some(String::from_utf8(bytes).unwrap())
            })
            .collect()
    };

    let writes = stderr_writes(&[
        "replay",
        "--policy",
        &example_policy(),
        "--output",
        "/dev/null",
        cut.to_str().unwrap(),
    ]);
    assert_eq!(writes.len(), 2, "a warning and the summary: {writes:#?}");
    assert!(writes[0].starts_with("segwatch: warning: ") && writes[0].ends_with("the cut\n"));
    assert!(
        writes[1].starts_with("segwatch replay summary")
            && writes[1].contains("\n  policy ")
            && writes[1].ends_with("overlap tracking)\n"),
        "{:?}",
        writes[1]
    );

    let writes = stderr_writes(&["check", bad_policy.to_str().unwrap()]);
    assert!(!writes.is_empty());
    for write in &writes {
        assert!(write.ends_with('\n') && write.matches('\n').count() >= 1);
        assert!(
            !write.starts_with(char::is_whitespace),
            "a message's rest: {write:?}"
        );
    }
    assert!(writes.iter().any(|w| w.contains("bogus")), "{writes:#?}");
}

/// `--policy-cache`: the second run reads the compiled policy back, and the
/// events, warnings and exit status are those of a run without the cache;
/// a damaged entry is compiled again; an invalid policy is never cached.
#[test]
fn a_policy_cache_changes_the_start_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("h.pcap");
    hospital_capture()
        .write_pcap(&pcap, Resolution::Micro)
        .unwrap();
    // The example policy and a rule that the first rule of the same pair shadows: a warning.
    let mut text = std::fs::read_to_string(example_policy()).unwrap();
    text.push_str(
        "\n[[rules]]\nname = \"late-copy\"\nfrom = [\"pumps\"]\nto = [\"internet\"]\n\
         action = \"allow\"\n",
    );
    let policy = dir.path().join("ward.toml");
    std::fs::write(&policy, text).unwrap();
    let cache = dir.path().join("cache");
    let (policy, pcap, cache) = (
        policy.to_str().unwrap(),
        pcap.to_str().unwrap(),
        cache.to_str().unwrap(),
    );
    /// What a run shows: exit status, events, `segwatch:` lines (the warning),
    /// the summary's policy line, and all of stderr.
    struct Run {
        status: Option<i32>,
        events: Vec<u8>,
        warnings: Vec<String>,
        policy_line: String,
        stderr: String,
    }
    let run = |cache: Option<&str>, via_env: bool| {
        let mut command = Command::new(SEGWATCH);
        command.args(["replay", "--fail-on", "high", "--policy", policy, pcap]);
        command.env_remove("SEGWATCH_POLICY_CACHE");
        match (cache, via_env) {
            (Some(dir), false) => command.args(["--policy-cache", dir]),
            (Some(dir), true) => command.env("SEGWATCH_POLICY_CACHE", dir),
            (None, _) => &mut command,
        };
        let out = command.output().expect("run segwatch");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        Run {
            status: out.status.code(),
            events: out.stdout,
            warnings: stderr
                .lines()
                .filter(|line| {
                    line.starts_with("segwatch: ") && !line.starts_with("segwatch: exit status")
                })
                .map(str::to_owned)
                .collect(),
            policy_line: stderr
                .lines()
                .find(|line| line.trim_start().starts_with("policy "))
                .unwrap_or_default()
                .to_owned(),
            stderr,
        }
    };
    let plain = run(None, false);
    assert_eq!(plain.status, Some(1), "a critical violation");
    assert_eq!(lines(&plain.events).len(), 2);
    let warnings = &plain.warnings;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("ward.toml") && warnings[0].contains("late-copy"));
    assert!(
        plain.policy_line.contains("read and compiled in"),
        "{}",
        plain.policy_line
    );
    let same_as_plain = |name: &str, other: &Run| {
        assert_eq!(other.status, plain.status, "{name}");
        assert_eq!(other.events, plain.events, "{name}");
        assert_eq!(other.warnings, plain.warnings, "{name}");
    };

    let first = run(Some(cache), false);
    assert!(
        first.policy_line.contains("read, compiled and cached in"),
        "{}",
        first.policy_line
    );
    let second = run(Some(cache), true);
    assert!(
        second.policy_line.contains("read from the policy cache in"),
        "{}",
        second.policy_line
    );
    same_as_plain("first", &first);
    same_as_plain("second", &second);

    // A damaged entry: logged, compiled again, same results, and replaced.
    let entries: Vec<_> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    std::fs::write(&entries[0], b"segwatch policy\nthis is not an entry").unwrap();
    let damaged = run(Some(cache), false);
    assert!(
        damaged.policy_line.contains("read, compiled and cached in"),
        "{}",
        damaged.policy_line
    );
    same_as_plain("damaged", &damaged);
    assert!(
        damaged
            .stderr
            .contains("Ignoring a damaged policy cache entry"),
        "{}",
        damaged.stderr
    );
    assert!(
        run(Some(cache), false)
            .policy_line
            .contains("from the policy cache")
    );

    // An invalid policy: the same error, exit 2, nothing stored.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[policy]\nname = \"x\"\nbogus = 1\n").unwrap();
    let bad_cache = dir.path().join("bad-cache");
    let out = segwatch(&[
        "replay",
        "--policy-cache",
        bad_cache.to_str().unwrap(),
        "--policy",
        bad.to_str().unwrap(),
        pcap,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:3:1"));
    assert!(!bad_cache.exists());
}

/// Issue 15.12: counts agree with their nouns (`1 error`, not `1 errors`),
/// and `check` names every missing key of a rule at once.
#[test]
fn regression_15_12_check_counts_in_the_singular_and_names_every_missing_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[zones.a]\nnetworks = [\"10.0.0.0/8\"]\n[services.web]\ntcp = [80]\n\
         [[rules]]\nname = \"r\"\nfrom = [\"a\"]\nto = [\"a\"]\naction = \"allow\"\n",
    )
    .unwrap();
    let out = segwatch(&["check", good.to_str().unwrap()]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "{}: ok: policy \"good\", 1 zone, 1 service, 1 rule, 0 warnings\n",
            good.display()
        )
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[zones.a]\nnetworks = [\"10.0.0.0/8\"]\n[[rules]]\nname = \"r\"\n",
    )
    .unwrap();
    let out = segwatch(&["check", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{}: invalid: 1 error\n", bad.display())
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing keys `from`, `to` and `action` in a [[rules]] table"),
        "{stderr}"
    );
}
