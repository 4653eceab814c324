//! The device inventory as an engineer reads it: `segwatch replay
//! --inventory` (JSON and CSV, the same for any thread count) and the
//! daemon's `GET /api/v1/devices` and `segwatch_devices` gauge; and what a
//! hostile network can do to it (issue 16, item 3): a sweep of addresses
//! that do not exist adds no device, a flood of spoofed sources past the
//! bound evicts the least-evidenced devices and keeps a new real one.

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
const SERVER_NIC: [u8; 6] = [0x00, 0x50, 0x56, 0x01, 0x02, 0x03];

/// A pump (B. Braun MAC) talking to its server, a CT storing to PACS, a
/// workstation with a randomised MAC, hosts behind a router asking a DNS
/// server, and a SYN to an address that does not exist (no device).
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
        add(
            &mut c,
            Pkt::tcp("10.20.8.10:443", &format!("10.20.1.7:{port}"), SYN | ACK)
                .macs(ROUTER, BRAUN_PUMP)
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
    add(
        &mut c,
        Pkt::tcp("10.50.0.10:443", "10.60.1.5:51000", SYN | ACK).macs(SERVER_NIC, RANDOM),
    );
    for host in 1..=5 {
        add(
            &mut c,
            Pkt::udp(&format!("10.90.0.{host}:5353"), "10.1.0.4:53").macs(ROUTER, PACS_NIC),
        );
        add(
            &mut c,
            Pkt::udp("10.1.0.4:53", &format!("10.90.0.{host}:5353")).macs(PACS_NIC, ROUTER),
        );
    }
    // Nobody there: no device.
    add(
        &mut c,
        Pkt::tcp("10.60.1.5:51001", "10.50.0.77:443", SYN).macs(RANDOM, ROUTER),
    );
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
    assert_eq!(ct["first_seen"], "2026-11-28T08:00:00.060000Z");

    let workstation = device(devices, "10.60.1.5");
    assert_eq!(workstation["mac_randomized"], true);
    assert!(workstation.get("vendor").is_none());

    for host in 1..=5 {
        let remote = device(devices, &format!("10.90.0.{host}"));
        assert_eq!(remote["mac_shared"], true, "{remote}");
        assert!(remote.get("vendor").is_none());
    }
    assert_eq!(device(devices, "10.1.0.4")["class"], "infrastructure");
    assert!(
        devices.iter().all(|d| d["ip"] != "10.50.0.77"),
        "a SYN to an address that never answered made a device: {devices:#?}"
    );
    assert_eq!(inventory["unanswered"], 1);

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

/// Replays `capture` in this process into an inventory of `capacity`
/// devices, with `threads` threads: the inventory's JSON.
fn replay_into_inventory(capture: &Capture, capacity: usize, threads: usize) -> (String, Value) {
    use segwatch::inventory::{Inventory, OuiRegistry};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("capture.pcap");
    capture.write_pcap(&path, Resolution::Nano).unwrap();
    let text = std::fs::read_to_string(example_policy()).unwrap();
    let policy = segwatch::classify::PolicyInForce::new(crate::common::policy(&text), 0);
    let inventory = std::sync::Arc::new(Inventory::new(
        capacity,
        std::sync::Arc::new(OuiRegistry::load_default()),
    ));
    let options = segwatch::replay::ReplayOptions {
        threads,
        inventory: Some(inventory.clone()),
        ..segwatch::replay::ReplayOptions::default()
    };
    let files = vec![segwatch::capture::CaptureFile::open(&path).unwrap()];
    segwatch::replay::replay(&files, &policy, &options, &mut std::io::sink()).unwrap();
    assert!(inventory.len() <= capacity, "{} devices", inventory.len());
    let json = segwatch::inventory::to_json(&inventory);
    let value = serde_json::from_str(&json).unwrap();
    (json, value)
}

/// Issue 16, item 3: a sweep of 10,000 addresses, none of which exists,
/// adds no device; each of its flows is counted unanswered.
#[test]
fn regression_16_3_a_syn_sweep_adds_no_phantom_devices() {
    let mut c = Capture::new();
    let mut t = 0.0;
    for host in 0..10_000u32 {
        let target = format!("10.70.{}.{}:445", host / 250, host % 250 + 1);
        c.add(
            at(t),
            &Pkt::tcp("10.40.0.5:40000", &target, SYN).macs(CT_NIC, ROUTER),
        );
        t += 0.0001;
    }
    // One target that does answer is a device.
    c.add(
        at(t),
        &Pkt::tcp("10.40.0.5:40001", "10.30.1.20:104", SYN).macs(CT_NIC, PACS_NIC),
    );
    c.add(
        at(t + 0.001),
        &Pkt::tcp("10.30.1.20:104", "10.40.0.5:40001", SYN | ACK).macs(PACS_NIC, CT_NIC),
    );
    let (_, inventory) = replay_into_inventory(&c, 100_000, 2);
    let ips: Vec<&str> = inventory["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["ip"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["10.30.1.20", "10.40.0.5"]);
    assert_eq!(inventory["unanswered"], 10_000);
    assert_eq!(inventory["overflow"], 0);
}

/// Issue 16, item 3: a flood of spoofed sources, ten times the bound, fills
/// the inventory; the devices with evidence (a vendor's MAC, an identified
/// application, many flows) stay, a real device seen after the flood is
/// recorded, and the inventory is the same for one and two threads.
#[test]
fn regression_16_3_a_spoofed_flood_evicts_the_least_evidenced_and_keeps_new_devices() {
    const CAPACITY: usize = 2_000;
    let mut c = Capture::new();
    let mut t = 0.0;
    let mut add = |c: &mut Capture, pkt: Pkt| {
        c.add(at(t), &pkt);
        t += 0.0001;
    };
    // Before the flood: a pump (vendor MAC), a CT and its PACS (many flows).
    for port in 50000..50003 {
        add(
            &mut c,
            Pkt::tcp(&format!("10.20.1.7:{port}"), "10.20.8.10:443", SYN).macs(BRAUN_PUMP, ROUTER),
        );
    }
    for port in 40000..40020 {
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
    // The flood: spoofed sources behind the router, one SYN each.
    let mut rng = fastrand::Rng::with_seed(16);
    for _ in 0..CAPACITY * 10 {
        let source = format!(
            "172.{}.{}.{}:{}",
            rng.u8(16..32),
            rng.u8(..),
            rng.u8(1..255),
            rng.u16(1024..)
        );
        add(
            &mut c,
            Pkt::tcp(&source, "10.50.0.10:443", SYN).macs(ROUTER, SERVER_NIC),
        );
    }
    // After it: a new workstation, one flow, no vendor.
    add(
        &mut c,
        Pkt::tcp("10.60.1.9:51000", "10.50.0.10:443", SYN).macs(RANDOM, SERVER_NIC),
    );
    add(
        &mut c,
        Pkt::tcp("10.50.0.10:443", "10.60.1.9:51000", SYN | ACK).macs(SERVER_NIC, RANDOM),
    );
    let (one, inventory) = replay_into_inventory(&c, CAPACITY, 1);
    let devices = inventory["devices"].as_array().unwrap();
    assert!(
        inventory["overflow"].as_u64().unwrap() >= (CAPACITY * 8) as u64,
        "{}",
        inventory["overflow"]
    );
    assert!(device(devices, "10.20.1.7")["vendor"].is_string());
    assert_eq!(device(devices, "10.40.0.5")["flows_as_client"], 20);
    assert_eq!(device(devices, "10.30.1.20")["flows_as_server"], 20);
    assert_eq!(device(devices, "10.60.1.9")["flows_as_client"], 1);
    let (two, _) = replay_into_inventory(&c, CAPACITY, 2);
    assert_eq!(one, two, "the inventory depends on the thread count");
}
