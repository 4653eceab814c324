//! `segwatch learn` and `segwatch diff` as an engineer runs them: a learned
//! policy leaves the traffic it was learned from without a violation (on
//! generated and real captures), and `diff` reports exactly the verdicts
//! that plain replays under both policies differ on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use segwatch::synth::{Capture, Pkt, Resolution, at, tcp_flags::*};

use crate::common::{SEGWATCH, root, shared_pcaps};

fn segwatch(args: &[&str]) -> Output {
    Command::new(SEGWATCH).args(args).output().unwrap()
}

fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn example_policy() -> PathBuf {
    root().join("policies/example-hospital.toml")
}

fn sample() -> PathBuf {
    root().join("tests/fixtures/hospital-sample.pcap")
}

/// Learns from `captures` with `zones`, writes the policy to `out`, and
/// returns stderr.
fn learn(zones: &Path, captures: &[&Path], out: &Path, networks: bool) -> String {
    let mut args = vec![
        "learn".to_string(),
        "--zones".into(),
        zones.display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    if networks {
        args.push("--networks".into());
    }
    args.extend(captures.iter().map(|p| p.display().to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = segwatch(&refs);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    stderr
}

/// Violations of replaying `captures` under `policy`.
fn violations(policy: &Path, captures: &[&Path]) -> Vec<Value> {
    let mut args = vec![
        "replay".to_string(),
        "--quiet".into(),
        "--policy".into(),
        policy.display().to_string(),
    ];
    args.extend(captures.iter().map(|p| p.display().to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = segwatch(&refs);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    events(&output)
}

#[test]
fn a_policy_learned_from_the_sample_has_commented_rules_and_no_violation() {
    let dir = tempfile::tempdir().unwrap();
    let learned = dir.path().join("learned.toml");
    let stderr = learn(&example_policy(), &[&sample()], &learned, false);
    // Issue 15.8: what the example policy's own rules alert on today (pumps
    // reaching the internet, vendor sessions, ...) is held for review, not
    // allowed: those flows and only those still alert.
    assert!(
        stderr.contains("13 flows held for review in 5 commented-out rules"),
        "{stderr}"
    );
    assert!(stderr.contains(": 13 violations"), "{stderr}");
    let still_alerting = violations(&learned, &[&sample()]);
    assert_eq!(still_alerting.len(), 13);
    let today = violations(&example_policy(), &[&sample()]);
    for event in &still_alerting {
        assert_eq!(event["rule"], "default");
        let alerted_today = today
            .iter()
            .find(|e| e["flow_id"] == event["flow_id"])
            .unwrap_or_else(|| panic!("{event} does not alert today"));
        assert_ne!(alerted_today["rule"], "default");
    }

    let check = segwatch(&["check", learned.to_str().unwrap()]);
    assert_eq!(check.status.code(), Some(0), "the learned policy is valid");

    let text = std::fs::read_to_string(&learned).unwrap();
    let mut flows_in_comments = 0;
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = 0;
    for (i, line) in lines.iter().enumerate() {
        if *line == "[[rules]]" || *line == "# [[rules]]" {
            rules += 1;
            // Each rule is introduced by its flow count and first/last seen.
            let comment = lines[..i]
                .iter()
                .rev()
                .find(|l| l.starts_with("# ") && l.as_bytes()[2].is_ascii_digit())
                .unwrap();
            let count: u64 = comment[2..].split(' ').next().unwrap().parse().unwrap();
            assert!(comment.contains("first seen 2026-") && comment.contains("last seen 2026-"));
            flows_in_comments += count;
        }
    }
    assert!(rules >= 10, "{text}");
    let replayed = segwatch(&[
        "replay",
        "--policy",
        example_policy().to_str().unwrap(),
        sample().to_str().unwrap(),
    ]);
    let summary = String::from_utf8_lossy(&replayed.stderr);
    let flows: u64 = summary
        .lines()
        .find(|l| l.trim_start().starts_with("flows"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(flows_in_comments, flows, "every flow is counted once");
    // Least privilege: only the sample's pairs, each with its services.
    assert!(text.contains("name = \"modalities-to-pacs\""), "{text}");
    assert!(text.contains("services = [\"dicom\"]"), "{text}");
    // The pumps' internet traffic is a commented-out rule under the rule
    // that alerts on it today.
    let review = text
        .find("# name = \"pumps-to-internet-review\"")
        .expect("a rule held for review");
    let before = &text[..review];
    let header = &before[before.rfind("# REVIEW:").unwrap()..];
    assert!(
        header.contains("rule \"medical-device-internet\", severity critical"),
        "{header}"
    );
    assert!(!text.contains("name = \"pumps-to-internet\""), "{text}");
    // Anything else alerts: a pump reaching the internet on another port.
    let mut other = Capture::new();
    other.add(at(0.0), &Pkt::tcp("10.20.1.7:50123", "52.1.2.3:8443", SYN));
    let other_path = dir.path().join("other.pcap");
    other.write_pcap(&other_path, Resolution::Micro).unwrap();
    let found = violations(&learned, &[&other_path]);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["rule"], "default");
}

/// Issue 15.8: a `[clinical]` check alerts like a rule (DICOM on a port no
/// service requiring it names); a file of zones alone, whose default
/// alerts on everything, holds nothing for review.
#[test]
fn regression_15_8_what_a_clinical_check_alerts_on_is_held_for_review() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones.toml");
    let zones_only = "[zones.lo]\nnetworks = [\"127.0.0.0/8\"]\n";
    std::fs::write(
        &zones,
        format!(
            "{zones_only}[services.dicom]\ntcp = [104]\napp = \"dicom\"\n\
             [clinical]\nunexpected_port = \"high\"\n\
             [[rules]]\nname = \"lo-dicom\"\nfrom = [\"lo\"]\nto = [\"lo\"]\n\
             services = [\"dicom\"]\naction = \"allow\"\n"
        ),
    )
    .unwrap();
    let echo = root().join("tests/fixtures/dicom/echo.pcap");
    let learned = dir.path().join("learned.toml");
    let stderr = learn(&zones, &[&echo], &learned, false);
    assert!(
        stderr.contains("1 flow held for review in 1 commented-out rule"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(&learned).unwrap();
    assert!(
        text.contains("(rule \"clinical-unexpected-port\", severity high)"),
        "{text}"
    );
    assert!(!text.lines().any(|l| l == "[[rules]]"), "{text}");

    std::fs::write(&zones, zones_only).unwrap();
    let stderr = learn(&zones, &[&echo], &learned, false);
    assert!(!stderr.contains("review"), "{stderr}");
    assert!(stderr.contains(": 0 violations"), "{stderr}");
}

/// Issue 15.8: `--networks` says why it proposes nothing when a zone
/// claims every address, and how to get proposals.
#[test]
fn regression_15_8_networks_says_why_a_catch_all_zone_leaves_nothing_to_propose() {
    let dir = tempfile::tempdir().unwrap();
    let zones = dir.path().join("zones.toml");
    std::fs::write(
        &zones,
        "[zones.ws]\nnetworks = [\"10.60.0.0/16\"]\n[zones.everything]\nnetworks = [\"0.0.0.0/0\"]\n",
    )
    .unwrap();
    let mut c = Capture::new();
    c.add(at(0.0), &Pkt::tcp("10.60.0.5:50000", "10.99.3.7:443", SYN));
    let capture = dir.path().join("c.pcap");
    c.write_pcap(&capture, Resolution::Micro).unwrap();
    let learned = dir.path().join("learned.toml");
    let stderr = learn(&zones, &[&capture], &learned, true);
    assert!(stderr.contains("0 proposed zones"), "{stderr}");
    assert!(
        stderr.contains("--networks proposed no zone: zone everything claims every address")
            && stderr.contains("without that network"),
        "{stderr}"
    );
}

/// Zones for generated traffic, with one named service.
const ZONES: &str = "\
[zones.ws]\nnetworks = [\"10.60.0.0/16\"]\n\
[zones.monitors]\nnetworks = [\"10.21.0.0/22\"]\n\
[zones.pumps]\nnetworks = [\"10.20.0.0/22\"]\n\
[zones.labs]\nnetworks = [\"10.70.0.0/24\"]\n\
[services.sync]\nudp = [5000]\n";

#[test]
fn learning_judges_initiators_with_the_services_it_learns() {
    // Flow X teaches udp/6000. Flow Y's first packet goes from the pump's
    // named port 5000 to a lab analyzer's port 6000: with only 5000 named,
    // the pump is Y's responder; once 6000 is named too, both ports are,
    // and the first sender (the pump) initiates. A learner that did not
    // judge again would allow labs -> pumps and leave pumps -> labs, Y's
    // orientation under the policy it writes, to alert.
    let mut capture = Capture::new();
    capture.add(at(0.0), &Pkt::udp("10.60.1.5:40001", "10.21.0.20:6000"));
    capture.add(at(0.1), &Pkt::udp("10.21.0.20:6000", "10.60.1.5:40001"));
    capture.add(at(0.2), &Pkt::udp("10.20.1.7:5000", "10.70.0.9:6000"));
    capture.add(at(0.3), &Pkt::udp("10.70.0.9:6000", "10.20.1.7:5000"));
    // And ordinary traffic: TCP, ICMP echo, an IP protocol without ports.
    capture.add(at(0.4), &Pkt::tcp("10.60.1.5:50000", "10.70.0.9:443", SYN));
    capture.add(
        at(0.5),
        &Pkt::tcp("10.70.0.9:443", "10.60.1.5:50000", SYN | ACK),
    );
    capture.add(at(0.6), &Pkt::echo_request("10.60.1.5", "10.21.0.20", 7));
    capture.add(at(0.7), &Pkt::ip_proto("10.20.1.7", "10.70.0.9", 47));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flip.pcap");
    capture.write_pcap(&path, Resolution::Micro).unwrap();
    let zones = dir.path().join("zones.toml");
    std::fs::write(&zones, ZONES).unwrap();
    let learned = dir.path().join("learned.toml");
    let stderr = learn(&zones, &[&path], &learned, false);
    assert!(stderr.contains("2 passes"), "{stderr}");
    let text = std::fs::read_to_string(&learned).unwrap();
    assert!(text.contains("name = \"pumps-to-labs\""), "{text}");
    assert!(!text.contains("name = \"labs-to-pumps\""), "{text}");
    assert!(text.contains("services = [\"tcp/443\"]"), "{text}");
    assert!(
        text.contains("services = [\"udp/6000\", \"icmp\"]"),
        "{text}"
    );
    assert!(text.contains("name = \"pumps-to-labs-other-ip\""), "{text}");
    assert!(violations(&learned, &[&path]).is_empty(), "{text}");
}

#[test]
fn networks_proposes_zones_for_private_subnets_only() {
    let mut capture = Capture::new();
    capture.add(at(0.0), &Pkt::tcp("10.60.1.5:50000", "10.99.3.7:22", SYN));
    capture.add(at(0.1), &Pkt::tcp("10.60.1.5:50001", "8.8.8.8:53", SYN));
    capture.add(at(0.2), &Pkt::tcp("10.60.1.5:50002", "10.99.3.8:22", SYN));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nets.pcap");
    capture.write_pcap(&path, Resolution::Micro).unwrap();
    let zones = dir.path().join("zones.toml");
    std::fs::write(&zones, ZONES).unwrap();
    let learned = dir.path().join("learned.toml");
    let stderr = learn(&zones, &[&path], &learned, true);
    assert!(stderr.contains("1 proposed zone,"), "{stderr}");
    let text = std::fs::read_to_string(&learned).unwrap();
    assert!(text.contains("[zones.net-10-99-3-0]"), "{text}");
    assert!(text.contains("networks = [\"10.99.3.0/24\"]"), "{text}");
    assert!(text.contains("2 addresses seen in 10.99.3.0/24"), "{text}");
    assert!(text.contains("name = \"ws-to-net-10-99-3-0\""), "{text}");
    assert!(text.contains("name = \"ws-to-unknown\""), "{text}");
    assert!(violations(&learned, &[&path]).is_empty());
}

#[test]
fn policies_learned_from_the_real_captures_leave_them_without_violations() {
    let Some(dir) = shared_pcaps() else {
        eprintln!("skipped: ../shared/pcaps is absent");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let zones = work.path().join("zones.toml");
    std::fs::write(&zones, ZONES).unwrap();
    let mut captures = Vec::new();
    for sub in std::fs::read_dir(&dir).unwrap() {
        let sub = sub.unwrap().path();
        if sub.is_dir() {
            for file in std::fs::read_dir(&sub).unwrap() {
                captures.push(file.unwrap().path());
            }
        }
    }
    captures.sort();
    let mut learned_any = 0;
    for capture in &captures {
        if !matches!(
            capture.extension().and_then(|e| e.to_str()),
            Some("pcap" | "pcapng")
        ) {
            continue;
        }
        let learned = work.path().join("learned.toml");
        let stderr = learn(&zones, &[capture], &learned, true);
        assert!(
            stderr.contains(" 0 violations"),
            "{}: {stderr}",
            capture.display()
        );
        let found = violations(&learned, &[capture]);
        assert!(found.is_empty(), "{}: {found:?}", capture.display());
        learned_any += 1;
    }
    assert!(
        learned_any >= 40,
        "the shared captures were all learned from"
    );
    // And from several at once, as one capture.
    let hl7: Vec<&Path> = captures
        .iter()
        .filter(|p| p.to_string_lossy().contains("HL7-"))
        .map(PathBuf::as_path)
        .collect();
    let learned = work.path().join("hl7.toml");
    learn(&zones, &hl7, &learned, true);
    assert!(violations(&learned, &hl7).is_empty());
}

/// The example policy with its DICOM store rule turned into an alert and a
/// new rule allowing guest web browsing to the internet, placed first.
fn candidate_policy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(example_policy()).unwrap();
    let mut candidate = String::new();
    let mut in_store_rule = false;
    for line in text.lines() {
        if line.starts_with("name = ") {
            in_store_rule = line.contains("modalities-store");
        }
        if in_store_rule && line.starts_with("action = ") {
            candidate.push_str("action = \"alert\"\nseverity = \"high\"\n");
            continue;
        }
        if in_store_rule && line.starts_with("severity = ") {
            continue;
        }
        candidate.push_str(line);
        candidate.push('\n');
    }
    let path = dir.join("candidate.toml");
    std::fs::write(&path, candidate).unwrap();
    let check = segwatch(&["check", path.to_str().unwrap()]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    path
}

/// (rule, severity) by flow id, as plain replay reports violations.
fn verdicts(policy: &Path) -> BTreeMap<String, (String, String)> {
    violations(policy, &[&sample()])
        .into_iter()
        .map(|e| {
            (
                e["flow_id"].as_str().unwrap().to_string(),
                (
                    e["rule"].as_str().unwrap().to_string(),
                    e["severity"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn diff_lists_exactly_the_verdicts_that_replay_sees_change() {
    let dir = tempfile::tempdir().unwrap();
    let candidate = candidate_policy(dir.path());
    let output = segwatch(&[
        "diff",
        "--json",
        "--policy",
        example_policy().to_str().unwrap(),
        "--candidate",
        candidate.to_str().unwrap(),
        sample().to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1), "changes make it fail");
    let changes = events(&output);
    assert!(!changes.is_empty());

    // The oracle: two plain replays.
    let before = verdicts(&example_policy());
    let after = verdicts(&candidate);
    let mut expected: BTreeMap<String, &str> = BTreeMap::new();
    for (id, verdict) in &after {
        match before.get(id) {
            None => {
                expected.insert(id.clone(), "new_alert");
            }
            Some(old) if old != verdict => {
                expected.insert(id.clone(), "alert_changed");
            }
            Some(_) => {}
        }
    }
    for id in before.keys().filter(|id| !after.contains_key(*id)) {
        expected.insert(id.clone(), "no_longer_alert");
    }
    let reported: BTreeMap<String, &str> = changes
        .iter()
        .map(|c| {
            (
                c["flow_id"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(reported, expected);
    for change in &changes {
        assert_eq!(change["current"]["rule"], "modalities-store");
        assert_eq!(change["current"]["action"], "allow");
        assert_eq!(change["candidate"]["action"], "alert");
        assert_eq!(change["candidate"]["severity"], "high");
        assert_eq!(change["src_zone"], "modalities");
    }

    // The human report groups them by rule.
    let report = segwatch(&[
        "diff",
        "--policy",
        example_policy().to_str().unwrap(),
        "--candidate",
        candidate.to_str().unwrap(),
        sample().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.starts_with("new alerts"), "{text}");
    assert!(
        text.contains(&format!(
            "  {} flows: now allow by modalities-store, candidate alert by modalities-store (high)",
            changes.len()
        )),
        "{text}"
    );
    // Only new alerts fail --fail-on new-alerts; never, never.
    for (fail_on, code) in [("new-alerts", 1), ("never", 0)] {
        let out = segwatch(&[
            "diff",
            "--fail-on",
            fail_on,
            "--policy",
            example_policy().to_str().unwrap(),
            "--candidate",
            candidate.to_str().unwrap(),
            sample().to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(code), "{fail_on}");
    }
    // The other way round, the same flows stop alerting: not new alerts.
    let out = segwatch(&[
        "diff",
        "--fail-on",
        "new-alerts",
        "--policy",
        candidate.to_str().unwrap(),
        "--candidate",
        example_policy().to_str().unwrap(),
        sample().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("no longer alerts"));
}

#[test]
fn diff_of_a_policy_with_itself_changes_nothing_and_bad_input_is_exit_2() {
    let policy = example_policy();
    let out = segwatch(&[
        "diff",
        "--policy",
        policy.to_str().unwrap(),
        "--candidate",
        policy.to_str().unwrap(),
        sample().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "No flow changes its verdict.\n"
    );
    let out = segwatch(&[
        "diff",
        "--policy",
        policy.to_str().unwrap(),
        "--candidate",
        "/nonexistent.toml",
        sample().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent.toml"), "{stderr}");
    let out = segwatch(&[
        "learn",
        "--zones",
        policy.to_str().unwrap(),
        "/nonexistent.pcap",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("/nonexistent.pcap"), "{stderr}");
}
