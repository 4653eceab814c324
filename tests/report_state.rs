//! The daemon's state directory (issue 18): a report from the hourly files
//! a daemon wrote equals the report from the same traffic replayed; a
//! daemon killed with SIGKILL mid-hour leaves no corrupt file and loses at
//! most that hour; retention prunes; bad state gives one line naming it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use segwatch::evidence::state;

use crate::daemon::{Daemon, metric, wait_for};
use crate::report::{START_S, generate, generate_in, inputs, make_report, report};

const HOUR: u64 = 3_600_000_000_000;

/// The daemon's configuration: state in `dir`, incidents on.
fn config(dir: &Path, state_dir: &Path, retention_days: u32) -> PathBuf {
    config_named(dir, state_dir, retention_days, "ward-sensor")
}

/// [`config`], naming the sensor `sensor`.
fn config_named(dir: &Path, state_dir: &Path, retention_days: u32, sensor: &str) -> PathBuf {
    let path = dir.join(format!("{sensor}.toml"));
    std::fs::write(
        &path,
        format!(
            "[state]\ndir = {:?}\nretention_days = {retention_days}\nsensor = {sensor:?}\n\
             [incidents]\nenabled = true\n[process]\ndrain_timeout = \"30s\"\n",
            state_dir.display().to_string()
        ),
    )
    .unwrap();
    path
}

/// Starts the daemon on `capture` and waits until it has read all of its
/// `frames`.
fn daemon_on(
    config: &Path,
    policy: &Path,
    exceptions: &Path,
    capture: &Path,
    frames: u64,
) -> Daemon {
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--exceptions",
        exceptions.to_str().unwrap(),
        "--pcap",
        capture.to_str().unwrap(),
    ]);
    wait_for("every frame read", Duration::from_secs(30), || {
        let read = metric(&daemon.metrics(), "segwatch_packets_total", "")?;
        (read as u64 == frames).then_some(())
    });
    daemon
}

/// `segwatch report --state` over [since, until) into `out`.
fn state_report(
    policy: &Path,
    exceptions: &Path,
    dir: &Path,
    period: (&str, &str),
    out: &Path,
) -> Value {
    let output = report(&[
        "--policy".as_ref(),
        policy.as_os_str(),
        "--exceptions".as_ref(),
        exceptions.as_os_str(),
        "--generated-at".as_ref(),
        "2026-12-07T12:00:00Z".as_ref(),
        "--state".as_ref(),
        dir.as_os_str(),
        "--since".as_ref(),
        period.0.as_ref(),
        "--until".as_ref(),
        period.1.as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

fn flows_by_hour(report: &Value) -> Vec<(String, u64)> {
    report["timeline"]["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["start"].as_str().unwrap().to_owned(),
                p["flows"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_report_from_state_equals_the_report_from_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, exceptions) = inputs(dir.path());
    let capture = dir.path().join("traffic.pcap");
    let expected = generate(&capture, 1500, 5);
    let state_dir = dir.path().join("state");
    let config = config(dir.path(), &state_dir, 400);
    let daemon = daemon_on(&config, &policy, &exceptions, &capture, expected.flows * 3);
    let (status, stderr) = daemon.stop();
    assert_eq!(status, Some(0), "{stderr}");

    let files = state::list(&state_dir).unwrap();
    assert_eq!(files.len(), 3, "{files:?}\n{stderr}");
    let from_state = state_report(
        &policy,
        &exceptions,
        &state_dir,
        ("2026-12-01T10:00:00Z", "2026-12-01T13:00:00Z"),
        &dir.path().join("from-state"),
    );
    let replayed = make_report(
        &policy,
        &exceptions,
        &dir.path().join("replayed"),
        &[],
        &[&capture],
    );
    assert_eq!(from_state["source"], "state");
    assert_eq!(
        from_state["summary"]["flows"].as_u64(),
        Some(expected.flows)
    );
    assert!(from_state["summary"]["incidents"].as_u64().unwrap() > 0);
    // Every figure the same; only the inputs (state files or the capture),
    // the source, the sensors and the incidents' ids (a daemon's derive
    // from its start) differ.
    assert_eq!(
        from_state["sensors"],
        serde_json::json!([{"name": "ward-sensor", "hours": 3,
            "first": "2026-12-01T10:00:00Z", "last": "2026-12-01T13:00:00Z"}])
    );
    assert_eq!(replayed["sensors"], serde_json::json!([]));
    let figures = |mut report: Value| {
        let object = report.as_object_mut().unwrap();
        object.remove("inputs");
        object.remove("source");
        object.remove("sensors");
        for incident in object["closed_incidents"].as_array_mut().unwrap() {
            incident.as_object_mut().unwrap().remove("id");
        }
        report
    };
    let (a, b) = (figures(from_state), figures(replayed));
    for key in a.as_object().unwrap().keys() {
        if let (Some(x), Some(y)) = (a[key].as_array(), b[key].as_array()) {
            assert_eq!(x.len(), y.len(), "{key}: lengths differ");
            for (x, y) in x.iter().zip(y) {
                assert_eq!(x, y, "{key} differs between state and replay");
            }
        }
        assert_eq!(a[key], b[key], "{key} differs between state and replay");
    }
}

#[test]
fn a_daemon_killed_mid_hour_loses_at_most_that_hour() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, exceptions) = inputs(dir.path());
    // Before the kill: hours 10 and 11 and the first half of 12; after the
    // restart: the second half of 12 and hour 13.
    let first = dir.path().join("first.pcap");
    let second = dir.path().join("second.pcap");
    let before = generate_in(&first, 1000, 21, (START_S, 2.5 * 3600.0), false);
    let after = generate_in(
        &second,
        600,
        22,
        (START_S + 2.5 * 3600.0, 1.5 * 3600.0),
        false,
    );
    let state_dir = dir.path().join("state");
    let config = config(dir.path(), &state_dir, 400);

    let daemon = daemon_on(&config, &policy, &exceptions, &first, before.flows * 3);
    let hour = |h: u64| (START_S as u64 * 1_000_000_000 / HOUR) + h;
    // The hours that ended are written, whole, once the writer has the
    // tables that end them (flows ending after their hour come with the
    // last): the kill comes when hours 10 and 11 hold every flow.
    let ended: Vec<u64> = [0, 1]
        .iter()
        .map(|h| {
            let start = segwatch::report::model::time_text(hour(*h) * HOUR);
            before.flows_by_hour[&start]
        })
        .collect();
    wait_for(
        "hours 10 and 11 written whole",
        Duration::from_secs(30),
        || {
            let files = state::list(&state_dir).ok()?;
            let flows: Vec<u64> = files
                .iter()
                .map(|(h, path)| {
                    let data = state::read_hour(path, *h).ok()?;
                    Some(data.traffic.values().map(|v| v.flows).sum())
                })
                .collect::<Option<_>>()?;
            (flows == ended).then_some(())
        },
    );
    daemon.signal("KILL");
    drop(daemon);
    let names: Vec<u64> = state::list(&state_dir)
        .unwrap()
        .iter()
        .map(|(h, _)| *h)
        .collect();
    assert_eq!(
        names,
        vec![hour(0), hour(1)],
        "hour 12 was not over: not written"
    );
    for (h, path) in state::list(&state_dir).unwrap() {
        state::read_hour(&path, h).unwrap();
    }

    let daemon = daemon_on(&config, &policy, &exceptions, &second, after.flows * 3);
    let (status, stderr) = daemon.stop();
    assert_eq!(status, Some(0), "{stderr}");
    let files = state::list(&state_dir).unwrap();
    assert_eq!(files.len(), 4);
    for (h, path) in &files {
        state::read_hour(path, *h).unwrap();
    }

    let from_state = state_report(
        &policy,
        &exceptions,
        &state_dir,
        ("2026-12-01", "2026-12-02"),
        &dir.path().join("from-state"),
    );
    let got: Vec<(String, u64)> = flows_by_hour(&from_state)
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    // Hours 10, 11 and 13 whole; hour 12 only what came after the restart.
    let mut want: Vec<(String, u64)> = Vec::new();
    for (start, n) in &before.flows_by_hour {
        let after_part = after.flows_by_hour.get(start).copied().unwrap_or(0);
        if start.contains("T12:") {
            want.push((start.clone(), after_part));
        } else {
            want.push((start.clone(), n + after_part));
        }
    }
    for (start, n) in &after.flows_by_hour {
        if !before.flows_by_hour.contains_key(start) {
            want.push((start.clone(), *n));
        }
    }
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn retention_prunes_old_hours_and_bad_state_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, exceptions) = inputs(dir.path());
    let capture = dir.path().join("traffic.pcap");
    let expected = generate_in(&capture, 100, 9, (START_S, 600.0), false);
    let state_dir = dir.path().join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let now = START_S as u64 * 1_000_000_000 / HOUR;
    // 31 and 29 days before the traffic: retention 30 days keeps only the
    // second.
    let old = now - 31 * 24;
    let recent = now - 29 * 24;
    for h in [old, recent] {
        let mut hour = segwatch::evidence::Hour::default();
        hour.incidents.insert(
            segwatch::evidence::IncidentKey {
                kind: "scan".into(),
                severity: "high".into(),
                rule: "scan".into(),
            },
            1,
        );
        state::write_hour(&state_dir, h, &hour).unwrap();
    }
    let config = config(dir.path(), &state_dir, 30);
    let daemon = daemon_on(&config, &policy, &exceptions, &capture, expected.flows * 3);
    let (status, stderr) = daemon.stop();
    assert_eq!(status, Some(0), "{stderr}");
    let hours: Vec<u64> = state::list(&state_dir)
        .unwrap()
        .iter()
        .map(|(h, _)| *h)
        .collect();
    assert_eq!(hours, vec![recent, now]);

    // A corrupt file, a foreign one, an empty period: one line naming it.
    let out = dir.path().join("out");
    let run = |since: &str, until: &str| {
        report(&[
            "--policy".as_ref(),
            policy.as_os_str(),
            "--state".as_ref(),
            state_dir.as_os_str(),
            "--since".as_ref(),
            since.as_ref(),
            "--until".as_ref(),
            until.as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ])
    };
    let one_line = |output: std::process::Output, name: &str| {
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(name), "{stderr}");
    };
    one_line(run("2020-01-01", "2020-02-01"), state_dir.to_str().unwrap());
    let victim = state::list(&state_dir).unwrap()[1].1.clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&victim, bytes).unwrap();
    one_line(run("2026-11-01", "2026-12-02"), victim.to_str().unwrap());
    std::fs::write(&victim, b"{\"format\":\"not-segwatch\",\"rows\":[]}").unwrap();
    one_line(run("2026-11-01", "2026-12-02"), victim.to_str().unwrap());
    one_line(run("yesterday", "2026-12-02"), "--since");
    // The files hold no payload: the generator's payload bytes are runs of
    // `x` and `y`, which no state file carries.
    for (_, path) in state::list(&state_dir).unwrap() {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            !text.contains("xxxx") && !text.contains("yyyy"),
            "{}",
            path.display()
        );
    }
}

#[test]
fn a_report_over_the_state_of_two_sensors_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, exceptions) = inputs(dir.path());
    let mut flows = 0;
    let mut dirs = Vec::new();
    for (sensor, seed) in [("icu-sensor", 21), ("ward-sensor", 22)] {
        let capture = dir.path().join(format!("{sensor}.pcap"));
        let expected = generate(&capture, 400, seed);
        flows += expected.flows;
        let state_dir = dir.path().join(sensor);
        let config = config_named(dir.path(), &state_dir, 400, sensor);
        let daemon = daemon_on(&config, &policy, &exceptions, &capture, expected.flows * 3);
        let (status, stderr) = daemon.stop();
        assert_eq!(status, Some(0), "{stderr}");
        // Each file names its sensor.
        for (_, file) in state::list(&state_dir).unwrap() {
            let json: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            assert_eq!(
                json["sensors"],
                serde_json::json!([sensor]),
                "{}",
                file.display()
            );
        }
        dirs.push(state_dir);
    }
    let out = dir.path().join("both");
    let output = report(&[
        "--policy".as_ref(),
        policy.as_os_str(),
        "--generated-at".as_ref(),
        "2026-12-07T12:00:00Z".as_ref(),
        "--state".as_ref(),
        dirs[0].as_os_str(),
        "--state".as_ref(),
        dirs[1].as_os_str(),
        "--since".as_ref(),
        "2026-12-01".as_ref(),
        "--until".as_ref(),
        "2026-12-02".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    let names: Vec<&str> = json["sensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["icu-sensor", "ward-sensor"]);
    for sensor in json["sensors"].as_array().unwrap() {
        assert_eq!(sensor["hours"], 3, "{sensor}");
    }
    // Their evidence adds up.
    assert_eq!(json["summary"]["flows"].as_u64(), Some(flows));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    let sensors = &html[html.find("id=\"sensors\"").expect("a sensors table")..];
    assert!(sensors.contains("<td>icu-sensor</td>") && sensors.contains("<td>ward-sensor</td>"));
    // Six state files in the scope, three per sensor.
    let states = json["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "state")
        .count();
    assert_eq!(states, 6);
}

#[test]
fn evidence_lost_or_left_unlisted_is_counted_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, exceptions) = inputs(dir.path());
    let capture = dir.path().join("traffic.pcap");
    // Enough incidents that hours reach their listing bound.
    let expected = generate(&capture, 3000, 7);
    let state_dir = dir.path().join("state");
    // The first hour's file cannot be written: its name is taken by a
    // directory, and so is the name it would be moved aside to.
    let first = state_dir.join(state::file_name(1_796_119_200 / 3600));
    for taken in [first.clone(), first.with_extension("json.damaged")] {
        std::fs::create_dir_all(taken.join("occupied")).unwrap();
    }
    let config = config(dir.path(), &state_dir, 0);
    let daemon = daemon_on(&config, &policy, &exceptions, &capture, expected.flows * 3);
    let unlisted_in_files = || -> u64 {
        state::list(&state_dir)
            .unwrap()
            .iter()
            .filter(|(_, path)| path.is_file())
            .map(|(hour, path)| state::read_hour(path, *hour).unwrap().incidents_left_out())
            .sum()
    };
    let exposition = wait_for("the evidence metrics", Duration::from_secs(30), || {
        let exposition = daemon.metrics();
        let failed = metric(
            &exposition,
            "segwatch_evidence_dropped_total",
            "write_failed",
        )?;
        let unlisted = metric(
            &exposition,
            "segwatch_evidence_incidents_unlisted_total",
            "",
        )?;
        (failed >= 1.0 && unlisted > 0.0 && unlisted as u64 == unlisted_in_files())
            .then_some(exposition)
    });
    assert_eq!(
        metric(&exposition, "segwatch_evidence_dropped_total", "queue_full"),
        Some(0.0)
    );
    let (status, stderr) = daemon.stop();
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stderr.contains("Evidence hour not written"), "{stderr}");
    // The later hours were written.
    assert!(
        state::list(&state_dir)
            .unwrap()
            .iter()
            .any(|(_, p)| p.is_file())
    );
}

/// A 20-zone policy with 30 rules, for a year of state.
fn year_policy() -> String {
    let mut text = String::from(
        "[policy]\nname = \"year\"\ndefault_action = \"alert\"\ndefault_severity = \"low\"\n\n\
         [services.https]\ntcp = [443]\n[services.dicom]\ntcp = [104]\n[services.hl7]\ntcp = [2575]\n\n",
    );
    for zone in 0..20 {
        text.push_str(&format!(
            "[zones.zone{zone:02}]\nnetworks = [\"10.{zone}.0.0/16\"]\n"
        ));
    }
    for rule in 0..30 {
        let (from, to) = (rule % 20, (rule * 7 + 3) % 20);
        let (action, service) = match rule % 3 {
            0 => ("allow", "https"),
            1 => ("allow", "dicom"),
            _ => ("alert", "hl7"),
        };
        text.push_str(&format!(
            "\n[[rules]]\nname = \"rule{rule:02}\"\nfrom = [\"zone{from:02}\"]\nto = [\"zone{to:02}\"]\n\
             services = [\"{service}\"]\naction = \"{action}\"\n"
        ));
        if action == "alert" {
            text.push_str("severity = \"high\"\n");
        }
    }
    text
}

/// One hour of a busy sensor under [`year_policy`], as the daemon keeps it:
/// 120 traffic rows, incidents by kind and 5 of them listed, 40 devices.
fn year_hour(hour: u64) -> segwatch::evidence::Hour {
    use segwatch::evidence::{
        DeviceSeen, Hour, IncidentKey, IncidentSeen, Outcome, TrafficKey, Volume,
    };
    let mut data = Hour::default();
    data.sensors.insert("ward-sensor".into());
    for row in 0..120u64 {
        let rule = row % 30;
        let outcome = match rule % 3 {
            0 | 1 => Outcome::AllowedByRule,
            _ => Outcome::Violation,
        };
        data.traffic.insert(
            TrafficKey {
                src_zone: format!("zone{:02}", rule % 20),
                dest_zone: format!("zone{:02}", (rule * 7 + 3) % 20),
                service: Some(["https", "dicom", "hl7", "ssh"][(row / 30) as usize].into()),
                outcome,
                rule: format!("rule{rule:02}"),
                severity: outcome.is_violation().then(|| "high".to_owned()),
                exception: None,
            },
            Volume {
                flows: 1 + (hour + row) % 50,
                bytes: 1_000 * (1 + (hour + row) % 50),
            },
        );
    }
    let start = hour * HOUR;
    for n in 0..5u64 {
        data.add_incident(IncidentSeen {
            id: format!("{:016x}", hour * 8 + n),
            kind: "violation".into(),
            rule: format!("rule{:02}", 2 + 3 * n),
            severity: "high".into(),
            src_ip: std::net::IpAddr::from([10, n as u8, 0, 1]),
            src_zone: Some(format!("zone{n:02}")),
            dest_zone: Some(format!("zone{:02}", (n * 7 + 3) % 20)),
            service: Some("hl7".into()),
            dest_ip: None,
            first_seen: start + n,
            last_seen: start + n + 1_000,
            flows: 3,
            destinations: 1,
            exception: None,
        });
    }
    *data
        .incidents
        .entry(IncidentKey {
            kind: "sweep".into(),
            severity: "medium".into(),
            rule: "rule05".into(),
        })
        .or_default() += 2;
    for device in 0..40u8 {
        let ip = std::net::IpAddr::from([10, device % 20, 1, device]);
        data.add_device(
            ip,
            &DeviceSeen {
                ip,
                zone: format!("zone{:02}", device % 20),
                vendor: Some("B. Braun Melsungen AG".into()),
                class: "infusion-pump".into(),
                hostname: Some(format!("pump-{device}")),
                first_seen: start,
                last_seen: start + HOUR - 1,
                violations: u64::from(device % 3),
                incidents: u64::from(device % 5 == 0),
            },
        );
    }
    data
}

/// A year of hourly state (8,760 files written by the daemon's writer) and
/// the report over it. Ignored: it writes 8,760 files with two fsyncs each.
/// `SEGWATCH_YEAR_STATE=DIR` keeps the files (and the policy) in DIR, to
/// time `segwatch report --state DIR --since 2025-12-01 --until 2026-12-01`
/// on a release build.
#[test]
#[ignore]
fn a_report_over_a_year_of_hourly_state() {
    let temp = tempfile::tempdir().unwrap();
    let dir = std::env::var_os("SEGWATCH_YEAR_STATE")
        .map(PathBuf::from)
        .unwrap_or_else(|| temp.path().to_owned());
    let state_dir = dir.join("state");
    std::fs::create_dir_all(&state_dir).unwrap();
    let policy = dir.join("year-policy.toml");
    std::fs::write(&policy, year_policy()).unwrap();
    // 2025-12-01T00:00:00Z, in hours.
    let first = 1_764_547_200 / 3_600;
    let hours = 8_760;
    let mut flows = 0;
    for hour in first..first + hours {
        let data = year_hour(hour);
        flows += data.traffic.values().map(|v| v.flows).sum::<u64>();
        if !state_dir.join(state::file_name(hour)).exists() {
            state::write_hour(&state_dir, hour, &data).unwrap();
        }
    }
    let out = dir.join("report");
    let started = std::time::Instant::now();
    let output = report(&[
        "--policy".as_ref(),
        policy.as_os_str(),
        "--generated-at".as_ref(),
        "2026-12-08T00:00:00Z".as_ref(),
        "--state".as_ref(),
        state_dir.as_os_str(),
        "--since".as_ref(),
        "2025-12-01".as_ref(),
        "--until".as_ref(),
        "2026-12-01".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ]);
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("a year of state: report in {took:?}");
    let json: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["summary"]["flows"].as_u64(), Some(flows));
    assert_eq!(json["period"]["hours_with_data"].as_u64(), Some(hours));
    assert_eq!(json["summary"]["devices"].as_u64(), Some(40));
    assert_eq!(json["timeline"]["unit"], "day");
    assert_eq!(json["timeline"]["points"].as_array().unwrap().len(), 365);
}
