//! The real public captures under `../shared/pcaps` (when that folder
//! exists): every one replays without error or panic, and the HL7 captures
//! are judged against a small policy with an asserted result.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{SEGWATCH, replay_apps_stdout, replay_stdout, root, shared_pcaps};

fn all_captures() -> Option<Vec<PathBuf>> {
    let Some(dir) = shared_pcaps() else {
        eprintln!("note: ../shared/pcaps is absent; skipping the real-capture tests");
        return None;
    };
    let mut files = Vec::new();
    for sub in std::fs::read_dir(dir).unwrap() {
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
fn every_shared_capture_replays_without_error() {
    let Some(files) = all_captures() else { return };
    assert!(
        files.len() >= 40,
        "expected the shared captures, found {}",
        files.len()
    );
    let policy = root().join("policies/example-hospital.toml");
    for file in &files {
        let out = Command::new(SEGWATCH)
            .arg("replay")
            .arg("--policy")
            .arg(&policy)
            .arg(file)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{}: {stderr}", file.display());
        assert!(!stderr.contains("panicked"), "{}: {stderr}", file.display());
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(event["event_type"], "violation");
            // Real captures carry real years, not 1970 (pcapng if_tsresol).
            assert!(
                !event["timestamp"].as_str().unwrap().starts_with("1970"),
                "{}",
                file.display()
            );
        }
    }
    // All of them at once, as one capture.
    replay_stdout(&policy, &files, &[]);
}

/// All of them as one capture: traffic from 2004 to 2026 whose time steps back at
/// most file boundaries. The events are the same for any number of threads
/// and any batch size, with application detection on: no flow ends at a
/// batch's end (one ended there at that batch's latest time came back as a
/// new flow, with a second event, at its next packet from an earlier time).
#[test]
fn merged_real_captures_give_the_same_events_for_any_threads_and_batches() {
    let Some(files) = all_captures() else { return };
    let policy = root().join("policies/example-hospital.toml");
    let run = |threads: &str, batch: &str| replay_apps_stdout(&policy, &files, threads, batch);
    let reference = run("1", "16384");
    assert!(reference.len() > 1000, "the captures give events");
    for (threads, batch) in [
        ("2", "16384"),
        ("1", "1"),
        ("2", "7"),
        ("3", "64"),
        ("2", "500"),
    ] {
        assert!(
            run(threads, batch) == reference,
            "{threads} threads, batches of {batch}"
        );
    }
}

const HL7_POLICY: &str = r#"
[policy]
name = "hl7-lab"
default_action = "alert"
default_severity = "high"

[zones.lab-analyzers]
networks = ["10.0.0.155"]
criticality = "clinical"

[zones.interface-engine]
networks = ["10.0.0.126"]
criticality = "business-critical"

[services.hl7-tapirx]
tcp = [6661]
"#;

#[test]
fn hl7_captures_are_judged_with_the_asserted_result() {
    let Some(files) = all_captures() else { return };
    let hl7: Vec<&PathBuf> = files
        .iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .to_lowercase()
                .starts_with("hl7")
        })
        .collect();
    assert_eq!(hl7.len(), 6, "five tapirx HL7 captures and nDPI's copy");
    let dir = tempfile::tempdir().unwrap();
    let unruled = dir.path().join("hl7.toml");
    std::fs::write(&unruled, HL7_POLICY).unwrap();
    let allowed = dir.path().join("hl7-allowed.toml");
    std::fs::write(
        &allowed,
        format!("{HL7_POLICY}\n[[rules]]\nname = \"results\"\nfrom = [\"lab-analyzers\"]\nto = [\"interface-engine\"]\nservices = [\"hl7-tapirx\"]\naction = \"allow\"\n"),
    )
    .unwrap();
    for file in hl7 {
        // No rule: each capture is one HL7 session, one default violation,
        // oriented by its SYN from the analyzer to port 6661.
        let out = Command::new(SEGWATCH)
            .arg("replay")
            .arg("--policy")
            .arg(&unruled)
            .arg(file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(events.len(), 1, "{}", file.display());
        let e = &events[0];
        assert_eq!(e["proto"], "tcp");
        assert_eq!(e["src_ip"], "10.0.0.155");
        assert_eq!(e["dest_ip"], "10.0.0.126");
        assert_eq!(e["dest_port"], 6661);
        assert_eq!(e["src_zone"], "lab-analyzers");
        assert_eq!(e["dest_zone"], "interface-engine");
        assert_eq!(e["service"], "hl7-tapirx");
        assert_eq!(e["rule"], "default");
        assert_eq!(e["severity"], "high");
        assert_eq!(e["src_criticality"], "clinical");
        assert!(e["timestamp"].as_str().unwrap().starts_with("20"));
        // With the rule that allows it: nothing.
        let out = Command::new(SEGWATCH)
            .arg("replay")
            .arg("--policy")
            .arg(&allowed)
            .arg(file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert!(out.stdout.is_empty(), "{}", file.display());
    }
}
