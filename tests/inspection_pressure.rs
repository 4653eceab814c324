//! Inspection under pressure (issue 16, items 1 and 2): a flood of
//! half-open flows cannot switch the `[clinical]` checks off for the flows
//! that come after it, and what gives way is counted, in `replay`'s summary
//! and in the daemon's `segwatch_inspections_skipped_total{reason}`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use segwatch::synth::{Capture, Pkt, Resolution, at, tcp_flags::*};

use crate::common::{SEGWATCH, root};
use crate::daemon::{Daemon, metric, wait_for};

/// Everything on campus is allowed; DICOM is expected on 104 only, and found
/// elsewhere raises `clinical-unexpected-port`.
const POLICY: &str = "[policy]\ndefault_action = \"alert\"\n\
    [zones.campus]\nnetworks = [\"10.0.0.0/8\"]\n\
    [services.dicom]\ntcp = [104]\napp = \"dicom\"\n\
    [[rules]]\nname = \"campus\"\nfrom = [\"campus\"]\nto = [\"campus\"]\naction = \"allow\"\n\
    [clinical]\nunexpected_port = \"high\"\n";

const DICOM_CLIENT: &str = "10.40.0.5:40001";
const DICOM_SERVER: &str = "10.50.0.9:443";

/// The C-ECHO association of the DICOM fixture (pynetdicom on loopback,
/// 11112), moved to [`DICOM_CLIENT`] and [`DICOM_SERVER`] and starting at
/// `start` seconds: each segment's flags, sequence number and payload as
/// recorded.
fn dicom_on_443(capture: &mut Capture, start: f64) {
    let file = std::fs::File::open(root().join("tests/fixtures/dicom/echo.pcap")).unwrap();
    let mut reader = pcap_file::pcap::PcapReader::new(file).unwrap();
    let mut client_port = None;
    let mut n = 0;
    while let Some(packet) = reader.next_packet() {
        let frame = packet.unwrap().data;
        // Ethernet, IPv4 with its header length, TCP with its data offset.
        let ip = &frame[14..];
        let tcp = &ip[usize::from(ip[0] & 0x0f) * 4..];
        let payload = &tcp[usize::from(tcp[12] >> 4) * 4..];
        let src_port = u16::from_be_bytes([tcp[0], tcp[1]]);
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let from_client = *client_port.get_or_insert(src_port) == src_port;
        let (src, dst) = if from_client {
            (DICOM_CLIENT, DICOM_SERVER)
        } else {
            (DICOM_SERVER, DICOM_CLIENT)
        };
        let pkt = Pkt::tcp(src, dst, tcp[13]).seq(seq).payload(payload);
        capture.add(at(start + 0.001 * f64::from(n)), &pkt);
        n += 1;
    }
    assert!(n > 10, "the fixture's association");
}

/// `flows` half-open connections (one SYN each, allowed traffic) within
/// 1.5 s of capture time, then the DICOM association on 443 at 1.6 s: the
/// half-open flows' inspections still wait when it starts.
fn flood_then_dicom(flows: usize) -> Capture {
    let mut capture = Capture::new();
    for n in 0..flows {
        let client = format!(
            "10.1.{}.{}:{}",
            n / 250 % 250,
            n % 250 + 1,
            20_000 + n / 62_500
        );
        let seconds = 1.5 * n as f64 / flows as f64;
        capture.add(at(seconds), &Pkt::tcp(&client, "10.9.0.1:80", SYN));
    }
    dicom_on_443(&mut capture, 1.6);
    capture
}

/// `replay` of `capture` under [`POLICY`]: its events and its summary.
fn replay(capture: &Path) -> (Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let out = Command::new(SEGWATCH)
        .args(["replay", "--policy"])
        .arg(&policy)
        .arg(capture)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (events, stderr)
}

fn assert_one_unexpected_port(events: &[Value]) {
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["rule"], "clinical-unexpected-port");
    assert_eq!(events[0]["app"], "dicom");
    assert_eq!(events[0]["dest_port"], 443);
}

/// The summary's count of inspections ended early for `reason`.
fn skipped_in_summary(summary: &str, reason: &str) -> u64 {
    let Some(line) = summary
        .lines()
        .find(|l| l.trim_start().starts_with("inspections"))
    else {
        return 0;
    };
    line.split(['(', ',', ')'])
        .filter_map(|part| part.trim().strip_suffix(reason))
        .map(|count| count.trim().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn regression_16_a_flood_of_half_open_flows_does_not_switch_the_clinical_checks_off() {
    let dir = tempfile::tempdir().unwrap();
    // Alone, the association on 443 raises the check.
    let mut alone = Capture::new();
    dicom_on_443(&mut alone, 0.0);
    let alone_path = dir.path().join("alone.pcap");
    alone.write_pcap(&alone_path, Resolution::Micro).unwrap();
    let (events, summary) = replay(&alone_path);
    assert_one_unexpected_port(&events);
    assert!(!summary.contains("inspections"), "{summary}");

    // The replay tracks flows in 16 shards by key hash, each inspecting at
    // most 8,192 flows at once: 170,000 SYNs fill every shard's places
    // (about 10,600 each, give or take a few hundred).
    let flows = 170_000;
    let flood_path = dir.path().join("flood.pcap");
    flood_then_dicom(flows)
        .write_pcap(&flood_path, Resolution::Micro)
        .unwrap();
    let (events, summary) = replay(&flood_path);
    assert_one_unexpected_port(&events);
    // The half-open flows gave way, each counted; none held payload, so no
    // inspection with payload was cut short.
    let quiet = skipped_in_summary(&summary, "evicted_no_payload");
    assert!(quiet >= (flows - 16 * 8_192) as u64, "{summary}");
    assert_eq!(skipped_in_summary(&summary, "table_full"), 0, "{summary}");
}

#[test]
fn regression_16_the_daemon_counts_what_gave_way_and_still_checks() {
    // The daemon reading a capture tracks its flows in one worker: 9,000
    // half-open flows fill its 8,192 places.
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("flood.pcap");
    let flood = flood_then_dicom(9_000);
    flood.write_pcap(&capture, Resolution::Micro).unwrap();
    let frames = flood.frames().len() as f64;
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let events = dir.path().join("events.jsonl");
    let daemon = Daemon::start(&[
        "--pcap",
        capture.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
    ]);
    // Read to its end and the event delivered: the figures stand still.
    let body = wait_for("the capture read", Duration::from_secs(60), || {
        let body = daemon.metrics();
        let packets = metric(&body, "segwatch_packets_total", "")?;
        let sent = metric(&body, "segwatch_sink_events_sent_total", "events_file")?;
        (packets == frames && sent >= 1.0).then_some(body)
    });
    let skipped = metric(
        &body,
        "segwatch_inspections_skipped_total",
        "evicted_no_payload",
    )
    .unwrap();
    let (status, stderr) = daemon.stop();
    assert_eq!(status, Some(0), "{stderr}");
    assert!(skipped >= 9_000.0 - 8_192.0, "{skipped}");
    for reason in ["table_full", "memory_budget", "flow_evicted"] {
        assert_eq!(
            metric(&body, "segwatch_inspections_skipped_total", reason),
            Some(0.0),
            "{reason}"
        );
    }
    let written: Vec<Value> = std::fs::read_to_string(&events)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_one_unexpected_port(&written);
}
