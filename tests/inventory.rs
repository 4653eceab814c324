//! The device inventory as an engineer reads it: `segwatch replay
//! --inventory` (JSON and CSV, the same for any thread count) and the
//! daemon's `GET /api/v1/devices` and `segwatch_devices` gauge.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use segwatch::synth::{Capture, Pkt, Resolution, at, tcp_flags::*};

use crate::common::{SEGWATCH, root};
use crate::daemon::{Daemon, http_get, metric, wait_for};

const BRAUN_PUMP: [u8; 6] = [0x00, 0x12, 0x21, 0x10, 0x20, 0x30];
const RANDOM: [u8; 6] = [0x3a, 0x11, 0x22, 0x33, 0x44, 0x55];
const ROUTER: [u8; 6] = [0x00, 0x00, 0x0c, 0x9f, 0xf0, 0x01];
const PACS_NIC: [u8; 6] = [0x00, 0x1b, 0x21, 0x01, 0x02, 0x03];
const CT_NIC: [u8; 6] = [0x00, 0x1b, 0x21, 0x0a, 0x0b, 0x0c];

/// A pump (B. Braun MAC) talking to its server, a CT storing to PACS, a
/// workstation with a randomised MAC, and hosts behind a router.
fn devices_capture() -> Capture {
    let mut c = Capture::new();
    let mut t = 0.0;
    let mut add = |c: &mut Capture, pkt: Pkt| {
        c.add(at(t), &pkt);
        t += 0.01;
    };
    for port in 50000..50003 {
        add(
            &mut c,
            Pkt::tcp(&format!("10.20.1.7:{port}"), "10.20.8.10:443", SYN)
                .macs(BRAUN_PUMP, ROUTER)
                .vlans(&[120]),
        );
    }
    for port in 40000..40004 {
        add(
            &mut c,
            Pkt::tcp(&format!("10.40.0.5:{port}"), "10.30.1.20:104", SYN).macs(CT_NIC, PACS_NIC),
        );
        add(
            &mut c,
            Pkt::tcp("10.30.1.20:104", &format!("10.40.0.5:{port}"), SYN | ACK)
                .macs(PACS_NIC, CT_NIC),
        );
    }
    add(
        &mut c,
        Pkt::tcp("10.60.1.5:51000", "10.50.0.10:443", SYN).macs(RANDOM, ROUTER),
    );
    for host in 1..=5 {
        add(
            &mut c,
            Pkt::udp(&format!("10.90.0.{host}:5353"), "10.1.0.4:53").macs(ROUTER, PACS_NIC),
        );
    }
    c
}

fn example_policy() -> PathBuf {
    root().join("policies/example-hospital.toml")
}

fn replay_inventory(capture: &Path, out: &Path, threads: &str) {
    let status = Command::new(SEGWATCH)
        .args(["replay", "-q", "--threads", threads, "--policy"])
        .arg(example_policy())
        .arg("--inventory")
        .arg(out)
        .arg(capture)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

fn device<'a>(devices: &'a [Value], ip: &str) -> &'a Value {
    devices
        .iter()
        .find(|d| d["ip"] == ip)
        .unwrap_or_else(|| panic!("{ip} in {devices:#?}"))
}

#[test]
fn replay_writes_an_inventory_with_vendors_classes_and_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("devices.pcap");
    devices_capture()
        .write_pcap(&capture, Resolution::Micro)
        .unwrap();
    let json_path = dir.path().join("inventory.json");
    replay_inventory(&capture, &json_path, "1");
    let text = std::fs::read_to_string(&json_path).unwrap();
    let inventory: Value = serde_json::from_str(&text).unwrap();
    let devices = inventory["devices"].as_array().unwrap();

    let pump = device(devices, "10.20.1.7");
    assert_eq!(pump["macs"][0], "00:12:21:10:20:30");
    assert!(
        pump["vendor"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("braun"),
        "{pump}"
    );
    assert_eq!(pump["class"], "infusion-pump", "{pump}");
    assert_eq!(pump["zone"], "pumps");
    assert_eq!(pump["vlans"][0], 120);
    assert_eq!(pump["flows_as_client"], 3);
    assert_eq!(pump["client_services"][0], "tcp/443 (3 flows)");
    assert!(
        pump["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("vendor ")),
        "{pump}"
    );

    let pacs = device(devices, "10.30.1.20");
    assert_eq!(pacs["class"], "pacs");
    assert_eq!(pacs["server_services"][0], "tcp/104 (4 flows)");
    assert_eq!(
        pacs["evidence"][0], "DICOM server on tcp/104 (4 flows)",
        "{pacs}"
    );
    let ct = device(devices, "10.40.0.5");
    assert_eq!(ct["class"], "imaging-modality");
    assert_eq!(ct["first_seen"], "2026-11-28T08:00:00.030000Z");

    let workstation = device(devices, "10.60.1.5");
    assert_eq!(workstation["mac_randomized"], true);
    assert!(workstation.get("vendor").is_none());

    for host in 1..=5 {
        let remote = device(devices, &format!("10.90.0.{host}"));
        assert_eq!(remote["mac_shared"], true, "{remote}");
        assert!(remote.get("vendor").is_none());
    }
    assert_eq!(device(devices, "10.1.0.4")["class"], "infrastructure");

    // The same inventory whatever the threads; CSV holds the same devices.
    let again = dir.path().join("again.json");
    replay_inventory(&capture, &again, "2");
    assert_eq!(std::fs::read_to_string(&again).unwrap(), text);
    let csv_path = dir.path().join("inventory.csv");
    replay_inventory(&capture, &csv_path, "2");
    let csv = std::fs::read_to_string(&csv_path).unwrap();
    let mut lines = csv.lines();
    assert!(lines.next().unwrap().starts_with("ip,macs,vendor,"));
    assert_eq!(lines.count(), devices.len());
    assert!(csv.contains("10.30.1.20,00:1b:21:01:02:03"));
}

#[test]
fn the_daemon_serves_the_inventory_and_counts_devices_by_zone_and_class() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("devices.pcap");
    devices_capture()
        .write_pcap(&capture, Resolution::Micro)
        .unwrap();
    let config = dir.path().join("segwatch.toml");
    std::fs::write(&config, "[policy]\nwatch = false\n").unwrap();
    let daemon = Daemon::start(&[
        "--config",
        config.to_str().unwrap(),
        "--pcap",
        capture.to_str().unwrap(),
        "--policy",
        example_policy().to_str().unwrap(),
    ]);
    let text = wait_for("the devices gauge", Duration::from_secs(10), || {
        let text = daemon.metrics();
        (metric(&text, "segwatch_devices", "class=\"pacs\"") == Some(1.0)).then_some(text)
    });
    assert_eq!(
        metric(
            &text,
            "segwatch_devices",
            "class=\"infusion-pump\",zone=\"pumps\""
        ),
        Some(1.0),
        "{text}"
    );
    let body = http_get(daemon.metrics_port, "/api/v1/devices").unwrap();
    let inventory: Value = serde_json::from_str(&body).unwrap();
    let devices = inventory["devices"].as_array().unwrap();
    assert_eq!(device(devices, "10.20.1.7")["class"], "infusion-pump");
    assert_eq!(
        metric(&text, "segwatch_devices", ""),
        Some(devices.len() as f64)
    );
    let (code, _) = daemon.stop();
    assert_eq!(code, Some(0));
}
