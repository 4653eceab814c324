//! `segwatch report` (issue 18): the figures of a report over generated
//! captures against counts the test keeps itself while generating them,
//! byte-identical output, one-line errors naming the file, no patient data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use segwatch::synth::{Capture, Pkt, Resolution, tcp_flags::*};

use crate::common::SEGWATCH;

pub(crate) const POLICY: &str = r#"
[policy]
name = "report-test"
default_action = "alert"
default_severity = "low"

[zones.ward]
networks = ["10.1.0.0/16"]
[zones.servers]
networks = ["10.2.0.0/16"]
[zones.guest]
networks = ["10.3.0.0/16"]
[zones.lab]
networks = ["10.4.0.0/16"]

[services.https]
tcp = [443]
[services.smb]
tcp = [445]

[[rules]]
name = "ward-to-servers"
from = ["ward"]
to = ["servers"]
services = ["https"]
action = "allow"

[[rules]]
name = "guest-to-servers"
from = ["guest"]
to = ["servers"]
action = "alert"
severity = "high"

[[rules]]
name = "lab-to-servers"
from = ["lab"]
to = ["servers"]
action = "allow"
"#;

pub(crate) const EXCEPTIONS: &str = r#"
[[exceptions]]
id = "EX-GUEST-SMB"
reason = "Guest kiosk prints through the file server until the print server moves"
owner = "Clinical IT"
ticket = "CHG-1001"
created = 2026-06-01
expires = 2027-05-01
rule = "guest-to-servers"
services = ["smb"]

[[exceptions]]
id = "EX-OLD"
reason = "Retired pilot"
owner = "Network team"
expires = 2026-02-01
from = ["ward"]

[[exceptions]]
id = "EX-LAB"
reason = "Analyser migration"
owner = "Laboratory"
created = 2026-06-01
expires = 2026-12-20
from = ["lab"]
"#;

/// Start of the generated traffic: 2026-12-01T10:00:00Z.
pub(crate) const START_S: f64 = 1_796_119_200.0;

/// One kind of generated flow: (source network, destination, port, zones,
/// outcome, rule, severity).
struct Kind {
    src_net: &'static str,
    dst: &'static str,
    port: u16,
    zones: (&'static str, &'static str),
    outcome: &'static str,
    rule: &'static str,
}

const KINDS: [Kind; 6] = [
    Kind {
        src_net: "10.1.0",
        dst: "10.2.0.10",
        port: 443,
        zones: ("ward", "servers"),
        outcome: "allowed-by-rule",
        rule: "ward-to-servers",
    },
    Kind {
        src_net: "10.1.0",
        dst: "10.2.0.11",
        port: 445,
        zones: ("ward", "servers"),
        outcome: "violation",
        rule: "default",
    },
    Kind {
        src_net: "10.3.0",
        dst: "10.2.0.11",
        port: 445,
        zones: ("guest", "servers"),
        outcome: "excepted",
        rule: "guest-to-servers",
    },
    Kind {
        src_net: "10.3.0",
        dst: "10.2.0.12",
        port: 22,
        zones: ("guest", "servers"),
        outcome: "violation",
        rule: "guest-to-servers",
    },
    Kind {
        src_net: "10.2.0",
        dst: "10.1.0.200",
        port: 443,
        zones: ("servers", "ward"),
        outcome: "violation",
        rule: "default",
    },
    Kind {
        src_net: "10.1.0",
        dst: "192.0.2.7",
        port: 8080,
        zones: ("ward", "unknown"),
        outcome: "violation",
        rule: "default",
    },
];

/// What the generator put in the capture, counted as it went.
#[derive(Default, Debug)]
pub(crate) struct Expected {
    pub(crate) flows: u64,
    bytes: u64,
    by_outcome: BTreeMap<&'static str, u64>,
    /// (src, dest) → (flows, bytes, violations, excepted).
    cells: BTreeMap<(&'static str, &'static str), (u64, u64, u64, u64)>,
    by_rule: BTreeMap<&'static str, (u64, u64, u64)>,
    /// Severity → violations (not excepted).
    by_severity: BTreeMap<&'static str, u64>,
    /// Hour start (RFC 3339) → flows started.
    pub(crate) flows_by_hour: BTreeMap<String, u64>,
    addresses: BTreeSet<String>,
    /// Source address → violations (not excepted).
    offenders: BTreeMap<String, u64>,
    /// (initiator, rule, destination zone, service) → violations (not
    /// excepted): the key violation incidents are folded by.
    pub(crate) incident_keys: BTreeMap<(String, &'static str, &'static str, &'static str), u64>,
}

fn hour_text(seconds: f64) -> String {
    let ns = (seconds * 1e9) as u64;
    segwatch::report::model::time_text(ns / 3_600_000_000_000 * 3_600_000_000_000)
}

/// A tiny deterministic generator (the test must not depend on the
/// crate's).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// Writes `flows` flows of the kinds above over about three hours (some
/// crossing an hour's end) to `path`, and returns what it wrote.
pub(crate) fn generate(path: &Path, flows: u32, seed: u64) -> Expected {
    generate_in(path, flows, seed, (START_S, 3.0 * 3600.0), true)
}

/// As [`generate`], over `span` seconds from `start`; with `cross`, every
/// 25th flow starts just before the end of the first or second hour (of a
/// window that starts on an hour).
pub(crate) fn generate_in(
    path: &Path,
    flows: u32,
    seed: u64,
    (start_s, span): (f64, f64),
    cross: bool,
) -> Expected {
    let mut rng = Lcg(seed);
    let mut expected = Expected::default();
    let mut capture = Capture::new();
    let mut frames: Vec<(u64, Vec<u8>)> = Vec::new();
    for i in 0..flows {
        let kind = &KINDS[rng.next(KINDS.len() as u64) as usize];
        // Spread over three hours; every 25th flow starts a moment before
        // an hour ends and sends its data after it.
        let start = if cross && i % 25 == 0 {
            start_s + 3600.0 * (1 + rng.next(2)) as f64 - 0.0005
        } else {
            start_s + (i as f64 / flows as f64) * span
        };
        let client = format!("{}.{}", kind.src_net, 1 + rng.next(40));
        let sport = 20_000 + i as u16;
        let src = format!("{client}:{sport}");
        let dst = format!("{}:{}", kind.dst, kind.port);
        let up = 1 + rng.next(300) as usize;
        let down = rng.next(1200) as usize;
        let at = |s: f64| (s * 1e9) as u64;
        frames.push((at(start), Pkt::tcp(&src, &dst, SYN).build()));
        frames.push((
            at(start + 0.001),
            Pkt::tcp(&src, &dst, ACK).payload(&vec![b'x'; up]).build(),
        ));
        frames.push((
            at(start + 0.002),
            Pkt::tcp(&dst, &src, ACK).payload(&vec![b'y'; down]).build(),
        ));
        expected.flows += 1;
        expected.bytes += (up + down) as u64;
        *expected.by_outcome.entry(kind.outcome).or_default() += 1;
        *expected.flows_by_hour.entry(hour_text(start)).or_default() += 1;
        let cell = expected.cells.entry(kind.zones).or_default();
        cell.0 += 1;
        cell.1 += (up + down) as u64;
        let rule = expected.by_rule.entry(kind.rule).or_default();
        rule.0 += 1;
        match kind.outcome {
            "violation" => {
                cell.2 += 1;
                rule.1 += 1;
                let severity = if kind.rule == "default" {
                    "low"
                } else {
                    "high"
                };
                *expected.by_severity.entry(severity).or_default() += 1;
                *expected.offenders.entry(client.clone()).or_default() += 1;
                let service = match kind.port {
                    443 => "https",
                    445 => "smb",
                    _ => "",
                };
                *expected
                    .incident_keys
                    .entry((client.clone(), kind.rule, kind.zones.1, service))
                    .or_default() += 1;
            }
            "excepted" => {
                cell.3 += 1;
                rule.2 += 1;
            }
            _ => {}
        }
        expected.addresses.insert(client);
        expected.addresses.insert(kind.dst.to_string());
    }
    frames.sort_by_key(|(ts, _)| *ts);
    for (ts, frame) in frames {
        capture.push(ts, frame);
    }
    capture.write_pcap(path, Resolution::Micro).unwrap();
    expected
}

pub(crate) fn report(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(SEGWATCH)
        .arg("report")
        .args(args)
        .output()
        .unwrap()
}

/// Writes the policy and exceptions into `dir`.
pub(crate) fn inputs(dir: &Path) -> (PathBuf, PathBuf) {
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let exceptions = dir.join("exceptions.toml");
    std::fs::write(&exceptions, EXCEPTIONS).unwrap();
    (policy, exceptions)
}

/// `segwatch report` over `captures` into `out`; must succeed.
pub(crate) fn make_report(
    policy: &Path,
    exceptions: &Path,
    out: &Path,
    extra: &[&str],
    captures: &[&Path],
) -> Value {
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--policy".as_ref(),
        policy.as_os_str(),
        "--exceptions".as_ref(),
        exceptions.as_os_str(),
        "--generated-at".as_ref(),
        "2026-12-07T12:00:00Z".as_ref(),
        "--out".as_ref(),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    args.extend(captures.iter().map(|c| c.as_os_str()));
    let output = report(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap()
}

fn n(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

#[test]
fn figures_equal_the_counts_of_the_generated_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("traffic.pcap");
    let expected = generate(&capture, 3000, 7);
    let (policy, exceptions) = inputs(dir.path());
    let out = dir.path().join("out");
    let json = make_report(&policy, &exceptions, &out, &[], &[&capture]);

    let summary = &json["summary"];
    assert_eq!(n(&summary["flows"]), expected.flows);
    assert_eq!(n(&summary["bytes"]), expected.bytes);
    assert_eq!(
        n(&summary["allowed_by_rule"]),
        expected.by_outcome["allowed-by-rule"]
    );
    assert_eq!(n(&summary["allowed_by_default"]), 0);
    assert_eq!(n(&summary["violations"]), expected.by_outcome["violation"]);
    assert_eq!(n(&summary["excepted"]), expected.by_outcome["excepted"]);
    let conformance = summary["conformance_percent"].as_f64().unwrap();
    let share = expected.by_outcome["allowed-by-rule"] as f64 * 100.0 / expected.flows as f64;
    assert!(
        (conformance - share).abs() < 0.006,
        "{conformance} vs {share}"
    );
    // critical, high, medium, low.
    let severities: Vec<u64> = summary["violations_by_severity"]
        .as_array()
        .unwrap()
        .iter()
        .map(n)
        .collect();
    assert_eq!(
        severities,
        vec![
            0,
            expected.by_severity["high"],
            0,
            expected.by_severity["low"]
        ]
    );
    assert_eq!(n(&summary["devices"]), expected.addresses.len() as u64);

    // The matrix: every pair of zones (four and unknown), each cell's counts.
    let matrix = json["matrix"].as_array().unwrap();
    assert_eq!(matrix.len(), 25);
    for cell in matrix {
        let key = (
            cell["src_zone"].as_str().unwrap(),
            cell["dest_zone"].as_str().unwrap(),
        );
        let want = expected
            .cells
            .iter()
            .find(|(k, _)| k.0 == key.0 && k.1 == key.1)
            .map_or((0, 0, 0, 0), |(_, v)| *v);
        let got = (
            n(&cell["flows"]),
            n(&cell["bytes"]),
            n(&cell["violations"]),
            n(&cell["excepted"]),
        );
        assert_eq!(got, want, "cell {key:?}");
    }
    let cell = |from: &str, to: &str| {
        matrix
            .iter()
            .find(|c| c["src_zone"] == from && c["dest_zone"] == to)
            .unwrap()
            .clone()
    };
    assert_eq!(cell("ward", "servers")["policy"], "allowed");
    assert_eq!(cell("ward", "servers")["allowed_services"][0], "https");
    assert_eq!(cell("lab", "servers")["allowed_services"][0], "any");
    assert_eq!(cell("guest", "servers")["policy"], "denied");

    // Rules: flows decided, violations, excepted.
    for row in json["rules"].as_array().unwrap() {
        let name = row["rule"].as_str().unwrap();
        let want = expected
            .by_rule
            .iter()
            .find(|(k, _)| **k == name)
            .map_or((0, 0, 0), |(_, v)| *v);
        let got = (n(&row["flows"]), n(&row["violations"]), n(&row["excepted"]));
        assert_eq!(got, want, "rule {name}");
    }
    assert_eq!(
        json["rules_never_matched"],
        serde_json::json!(["lab-to-servers"])
    );
    assert_eq!(json["zones_without_traffic"], serde_json::json!(["lab"]));

    // Flows by the hour they started, including those that crossed an
    // hour's end.
    let points = json["timeline"]["points"].as_array().unwrap();
    assert_eq!(json["timeline"]["unit"], "hour");
    let by_hour: BTreeMap<String, u64> = points
        .iter()
        .filter(|p| n(&p["flows"]) > 0)
        .map(|p| (p["start"].as_str().unwrap().to_owned(), n(&p["flows"])))
        .collect();
    assert_eq!(by_hour, expected.flows_by_hour);

    // The exception register: hits and status at the period's end.
    let register = json["exceptions"].as_array().unwrap();
    assert_eq!(register.len(), 3);
    assert_eq!(register[0]["id"], "EX-GUEST-SMB");
    assert_eq!(register[0]["status"], "active");
    assert_eq!(register[0]["owner"], "Clinical IT");
    assert_eq!(register[0]["ticket"], "CHG-1001");
    assert_eq!(
        n(&register[0]["violations"]),
        expected.by_outcome["excepted"]
    );
    assert_eq!(register[1]["status"], "expired");
    assert_eq!(n(&register[1]["violations"]), 0);
    assert_eq!(register[2]["status"], "expiring");

    // Top offending devices: violations (not excepted) per initiator.
    let top = json["top_devices"].as_array().unwrap();
    assert!(!top.is_empty());
    for device in top {
        let ip = device["ip"].as_str().unwrap();
        assert_eq!(
            n(&device["violations"]),
            expected.offenders.get(ip).copied().unwrap_or(0),
            "{ip}"
        );
    }

    // Incidents: the report's closes are the replay's close records.
    let replayed = Command::new(SEGWATCH)
        .args(["replay", "-q", "--apps", "--incidents", "--policy"])
        .arg(&policy)
        .arg("--exceptions")
        .arg(&exceptions)
        .arg(&capture)
        .output()
        .unwrap();
    let closes = String::from_utf8_lossy(&replayed.stdout)
        .lines()
        .filter(|l| l.contains("\"state\":\"close\""))
        .count() as u64;
    assert!(closes > 0);
    assert_eq!(n(&summary["incidents"]), closes);

    // The incidents one by one: at most 100 an hour of their closing, the
    // most severe then the earliest; the rest counted as left out.
    let listed = json["closed_incidents"].as_array().unwrap();
    let left_out = n(&json["incidents_left_out"]);
    assert!(
        left_out > 0,
        "this traffic closes more than 100 incidents an hour"
    );
    assert_eq!(listed.len() as u64 + left_out, closes);
    let rank = |severity: &str| {
        ["critical", "high", "medium", "low"]
            .iter()
            .position(|s| *s == severity)
    };
    // The replay's close records by id: (hour closed, (severity rank, first seen)).
    let mut replay_closes: BTreeMap<String, (String, (Option<usize>, String))> = BTreeMap::new();
    for line in String::from_utf8_lossy(&replayed.stdout).lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        if record["state"] == "close" {
            let text = |field: &str| record[field].as_str().unwrap().to_owned();
            replay_closes.insert(
                text("incident_id"),
                (
                    text("timestamp")[..13].to_owned(),
                    (rank(&text("severity")), text("first_seen")),
                ),
            );
        }
    }
    let mut listed_by_hour: BTreeMap<String, Vec<(Option<usize>, String)>> = BTreeMap::new();
    for incident in listed {
        let (hour, order) = replay_closes
            .remove(incident["id"].as_str().unwrap())
            .expect("a listed incident is one the replay closed");
        assert_eq!(order.0, rank(incident["severity"].as_str().unwrap()));
        listed_by_hour.entry(hour).or_default().push(order);
    }
    for (hour, orders) in &listed_by_hour {
        let left: Vec<_> = replay_closes.values().filter(|(h, _)| h == hour).collect();
        assert!(orders.len() <= 100, "{hour}: {}", orders.len());
        if !left.is_empty() {
            assert_eq!(orders.len(), 100, "{hour}");
            // Nothing left out comes before what is listed.
            let last_listed = orders.iter().max().unwrap();
            for (_, order) in left {
                assert!(
                    order >= last_listed,
                    "{hour}: {order:?} left out before {last_listed:?}"
                );
            }
        }
    }
    let incidents_csv = std::fs::read_to_string(out.join("incidents.csv")).unwrap();
    assert_eq!(incidents_csv.lines().count(), listed.len() + 1);
    assert!(incidents_csv.starts_with("id,kind,rule,severity,src_ip,"));

    // The inputs' hashes.
    let inputs = json["inputs"].as_array().unwrap();
    assert_eq!(inputs[0]["kind"], "capture");
    assert_eq!(
        inputs[0]["sha256"],
        segwatch::report::hash_bytes(&std::fs::read(&capture).unwrap())
    );
    assert_eq!(inputs[1]["kind"], "policy");
    assert_eq!(inputs[2]["kind"], "exceptions");

    // The annexes hold the same figures.
    let matrix_csv = std::fs::read_to_string(out.join("matrix.csv")).unwrap();
    let ward_servers = expected.cells[&("ward", "servers")];
    assert!(
        matrix_csv.contains(&format!(
            "ward,servers,allowed,https,{},{},",
            ward_servers.0, ward_servers.1
        )),
        "{matrix_csv}"
    );
    let devices_csv = std::fs::read_to_string(out.join("devices.csv")).unwrap();
    assert_eq!(devices_csv.lines().count() - 1, expected.addresses.len());
    for annex in [
        "violations-by-rule.csv",
        "incidents.csv",
        "exceptions.csv",
        "timeline.csv",
    ] {
        assert!(out.join(annex).is_file(), "{annex}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains(&format!(
        "A further {left_out} closed incidents are counted"
    )));
    for section in [
        "scope",
        "summary",
        "zone-matrix",
        "timeline",
        "rules",
        "top-devices",
        "exception-register",
        "quiet-zones",
        "unused-rules",
        "inventory-table",
        "crosswalk-table",
    ] {
        assert!(
            html.contains(&format!("id=\"{section}\"")),
            "section {section}"
        );
    }
    assert!(!html.contains("<script"), "no script");
    assert!(
        !html.contains("http://") || !html.contains("src=\"http"),
        "nothing from elsewhere"
    );
    assert!(html.contains("not a certification"));
}

#[test]
fn incidents_are_listed_one_by_one_with_their_flows() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("traffic.pcap");
    let expected = generate(&capture, 200, 9);
    let (policy, exceptions) = inputs(dir.path());
    let out = dir.path().join("out");
    let json = make_report(&policy, &exceptions, &out, &[], &[&capture]);
    let listed = json["closed_incidents"].as_array().unwrap();
    assert_eq!(n(&json["incidents_left_out"]), 0);
    assert_eq!(listed.len() as u64, n(&json["summary"]["incidents"]));
    // Each violation (not excepted) joined one incident of its key: per key
    // the listed incidents' flows add up to the violations generated.
    let mut by_key: BTreeMap<(String, String, String, String), u64> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for incident in listed {
        assert!(ids.insert(incident["id"].as_str().unwrap().to_owned()));
        assert!(incident["first_seen"].as_str() <= incident["last_seen"].as_str());
        if incident["kind"] != "violation" {
            continue;
        }
        let text = |field: &str| incident[field].as_str().unwrap().to_owned();
        *by_key
            .entry((
                text("src_ip"),
                text("rule"),
                text("dest_zone"),
                text("service"),
            ))
            .or_default() += n(&incident["flows"]);
    }
    let want: BTreeMap<(String, String, String, String), u64> = expected
        .incident_keys
        .iter()
        .map(|((ip, rule, zone, service), flows)| {
            (
                (
                    ip.clone(),
                    rule.to_string(),
                    zone.to_string(),
                    service.to_string(),
                ),
                *flows,
            )
        })
        .collect();
    assert_eq!(by_key, want);
    let csv = std::fs::read_to_string(out.join("incidents.csv")).unwrap();
    assert_eq!(csv.lines().count(), listed.len() + 1);
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("id=\"incident-list\""));
    assert!(!html.contains("A further"), "nothing left out");
}

#[test]
fn the_same_inputs_give_byte_identical_files() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("traffic.pcap");
    generate(&capture, 800, 11);
    let (policy, exceptions) = inputs(dir.path());
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    make_report(&policy, &exceptions, &a, &["--threads", "1"], &[&capture]);
    make_report(&policy, &exceptions, &b, &["--threads", "4"], &[&capture]);
    let mut names: Vec<_> = std::fs::read_dir(&a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert!(names.len() >= 8, "{names:?}");
    for name in names {
        assert_eq!(
            std::fs::read(a.join(&name)).unwrap(),
            std::fs::read(b.join(&name)).unwrap(),
            "{name:?} differs"
        );
    }
}

#[test]
fn a_previous_report_is_shown_beside_with_the_change() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, exceptions) = inputs(dir.path());
    let old_capture = dir.path().join("old.pcap");
    let new_capture = dir.path().join("new.pcap");
    let old = generate(&old_capture, 300, 1);
    generate(&new_capture, 500, 2);
    let first = dir.path().join("first");
    make_report(&policy, &exceptions, &first, &[], &[&old_capture]);
    let previous = first.join("report.json");
    let second = dir.path().join("second");
    let json = make_report(
        &policy,
        &exceptions,
        &second,
        &["--previous", previous.to_str().unwrap()],
        &[&new_capture],
    );
    assert_eq!(n(&json["previous"]["summary"]["flows"]), old.flows);
    assert_eq!(
        json["previous"]["sha256"],
        segwatch::report::hash_bytes(&std::fs::read(&previous).unwrap())
    );
    let html = std::fs::read_to_string(second.join("report.html")).unwrap();
    assert!(html.contains("Previous ("), "previous column");
    assert!(html.contains(&format!("+{}", 500 - 300)), "change of flows");
}

#[test]
fn report_json_lists_each_device_once_and_older_reports_still_read_as_previous() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, exceptions) = inputs(dir.path());
    let capture = dir.path().join("traffic.pcap");
    let expected = generate(&capture, 300, 4);
    let first = dir.path().join("first");
    let json = make_report(&policy, &exceptions, &first, &[], &[&capture]);
    let bytes = std::fs::read(first.join("report.json")).unwrap();
    assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 1, "one line");
    assert!(json.get("unknown_devices").is_none());
    let devices = json["devices"].as_array().unwrap();
    let mut addresses: Vec<&str> = devices.iter().map(|d| d["ip"].as_str().unwrap()).collect();
    addresses.dedup();
    assert_eq!(addresses.len(), devices.len());
    // The HTML still lists the devices of no zone or unknown class: those
    // of `devices` with zone or class `unknown`.
    let unknown: Vec<&Value> = devices
        .iter()
        .filter(|d| d["zone"] == "unknown" || d["class"] == "unknown")
        .collect();
    assert!(!unknown.is_empty());
    let html = std::fs::read_to_string(first.join("report.html")).unwrap();
    let section = &html[html.find("id=\"unknown-devices\"").unwrap()..];
    let section = &section[..section.find("</table>").unwrap()];
    assert_eq!(
        section.matches("<tr><td").count(),
        unknown.len().min(200),
        "{section}"
    );
    // A report.json as written before 2026-12-08: indented, the unknown
    // devices listed again.
    let mut older = json.clone();
    older["unknown_devices"] = Value::Array(unknown.into_iter().cloned().collect());
    let previous = dir.path().join("older-report.json");
    std::fs::write(&previous, serde_json::to_vec_pretty(&older).unwrap()).unwrap();
    let second = dir.path().join("second");
    let json = make_report(
        &policy,
        &exceptions,
        &second,
        &["--previous", previous.to_str().unwrap()],
        &[&capture],
    );
    assert_eq!(n(&json["previous"]["summary"]["flows"]), expected.flows);
}

/// Runs `segwatch report` expecting status 2 and one line naming `name`.
fn fails_naming(args: &[&std::ffi::OsStr], name: &str) {
    let output = report(args);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(name), "{stderr}");
}

#[test]
fn bad_inputs_give_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (policy, exceptions) = inputs(dir.path());
    let out = dir.path().join("out");
    let good = dir.path().join("good.pcap");
    generate(&good, 50, 3);
    let corrupt = dir.path().join("corrupt.pcap");
    std::fs::write(&corrupt, b"this is no capture at all, just text").unwrap();
    let missing = dir.path().join("missing.pcap");
    let not_report = dir.path().join("not-a-report.json");
    std::fs::write(&not_report, b"{\"hello\": 1}").unwrap();
    let base = |capture: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "--policy".into(),
            policy.clone().into(),
            "--out".into(),
            out.clone().into(),
            capture.into(),
        ]
    };
    let os = |v: &[std::ffi::OsString]| -> Vec<std::ffi::OsString> { v.to_vec() };
    for (args, name) in [
        (base(&corrupt), "corrupt.pcap"),
        (base(&missing), "missing.pcap"),
        (
            [
                os(&base(&good)),
                vec!["--previous".into(), not_report.clone().into()],
            ]
            .concat(),
            "not-a-report.json",
        ),
        (
            [
                os(&base(&good)),
                vec!["--exceptions".into(), corrupt.clone().into()],
            ]
            .concat(),
            "corrupt.pcap",
        ),
        (
            [
                os(&base(&good)),
                vec!["--generated-at".into(), "yesterday".into()],
            ]
            .concat(),
            "--generated-at",
        ),
    ] {
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        fails_naming(&refs, name);
    }
    let _ = exceptions;
}

#[test]
fn no_patient_data_reaches_the_report_or_its_annexes() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("canary.pcap");
    crate::app_events::canary_capture(&capture);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, crate::app_events::ALERT_ALL).unwrap();
    let out = dir.path().join("out");
    let output = Command::new(SEGWATCH)
        .args([
            "--log-level",
            "trace",
            "report",
            "--generated-at",
            "2026-12-07T12:00:00Z",
        ])
        .arg("--policy")
        .arg(&policy)
        .arg("--out")
        .arg(&out)
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    crate::app_events::assert_no_canary("report's log", &String::from_utf8_lossy(&output.stderr));
    let mut files = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        crate::app_events::assert_no_canary(
            &path.display().to_string(),
            &String::from_utf8_lossy(&bytes),
        );
        files += 1;
    }
    assert!(files >= 8);
    // The report did see those flows.
    let json: Value =
        serde_json::from_slice(&std::fs::read(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(n(&json["summary"]["flows"]), 3);
}
