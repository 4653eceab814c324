//! Decapsulating overlays end to end (issue 15, item 5): with
//! `--decapsulate`, flows inside VXLAN are judged by their inner headers,
//! keyed by their VNI too (two overlays reusing addresses are two flows),
//! their events carry `tunnel`, and what was opened is counted; without it
//! the outer UDP is judged, as before.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use segwatch::synth::{Capture, Pkt, Resolution, at, tcp_flags::*};
use serde_json::Value;

use crate::common::SEGWATCH;
use crate::daemon::{Daemon, metric, wait_for};

const POLICY: &str = r#"
[policy]
default_action = "alert"
[zones.tenants]
networks = ["10.0.0.0/8"]
[zones.underlay]
networks = ["192.168.1.0/24"]
[[rules]]
name = "underlay-vxlan"
from = ["underlay"]
to = ["underlay"]
services = ["udp/4789"]
action = "allow"
"#;

/// A VXLAN packet from VTEP .1 to VTEP .2 carrying `inner` in VNI `vni`.
fn vxlan(vni: u32, inner: &Pkt) -> Pkt {
    let mut payload = vec![0x08, 0, 0, 0];
    payload.extend_from_slice(&(vni << 8).to_be_bytes());
    payload.extend_from_slice(&inner.build());
    Pkt::udp("192.168.1.1:50000", "192.168.1.2:4789").payload(&payload)
}

/// Two overlays, the same inner SYN in each.
fn capture(dir: &Path) -> std::path::PathBuf {
    let syn = Pkt::tcp("10.0.0.1:40000", "10.0.0.2:80", SYN).seq(1);
    let mut capture = Capture::new();
    capture.add(at(0.0), &vxlan(100, &syn));
    capture.add(at(0.1), &vxlan(200, &syn));
    let path = dir.join("vxlan.pcap");
    capture.write_pcap(&path, Resolution::Micro).unwrap();
    path
}

fn replay(dir: &Path, args: &[&str]) -> (Vec<Value>, String) {
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let out = Command::new(SEGWATCH)
        .arg("replay")
        .arg("--policy")
        .arg(&policy)
        .args(args)
        .arg(capture(dir))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (events, stderr)
}

#[test]
fn decapsulated_flows_are_keyed_by_their_vni_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let (events, stderr) = replay(dir.path(), &["--decapsulate", "vxlan"]);
    assert_eq!(events.len(), 2, "one flow per overlay: {events:?}");
    for (event, vni) in events.iter().zip([100, 200]) {
        assert_eq!(event["proto"], "tcp");
        assert_eq!(event["src_ip"], "10.0.0.1");
        assert_eq!(event["dest_port"], 80);
        assert_eq!(event["src_zone"], "tenants");
        assert_eq!(
            event["tunnel"],
            serde_json::json!({"type": "vxlan", "id": vni})
        );
    }
    assert_ne!(events[0]["flow_id"], events[1]["flow_id"]);
    assert!(
        stderr.contains("tunnels        2 frames decapsulated (2 vxlan)"),
        "{stderr}"
    );
}

#[test]
fn without_the_flag_the_outer_udp_is_judged_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let (events, stderr) = replay(dir.path(), &[]);
    assert!(
        events.is_empty(),
        "the underlay's VXLAN is allowed: {events:?}"
    );
    assert!(!stderr.contains("tunnels"), "{stderr}");
    // Limited to other tunnel endpoints, nothing is opened either.
    let (events, _) = replay(
        dir.path(),
        &[
            "--decapsulate",
            "vxlan",
            "--tunnel-endpoint",
            "172.16.0.0/12",
        ],
    );
    assert!(events.is_empty(), "{events:?}");
    let (events, _) = replay(
        dir.path(),
        &[
            "--decapsulate",
            "all",
            "--tunnel-endpoint",
            "192.168.1.2/32",
        ],
    );
    assert_eq!(events.len(), 2, "{events:?}");
}

#[test]
fn the_daemon_decapsulates_and_counts_what_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = capture(dir.path());
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let events = dir.path().join("events.jsonl");
    let daemon = Daemon::start(&[
        "--pcap",
        path.to_str().unwrap(),
        "--policy",
        policy.to_str().unwrap(),
        "--events",
        events.to_str().unwrap(),
        "--decapsulate",
        "vxlan",
    ]);
    let metrics = wait_for("both frames counted", Duration::from_secs(20), || {
        let body = daemon.metrics();
        let sent = metric(&body, "segwatch_sink_events_sent_total", "events_file")?;
        (sent == 2.0).then_some(body)
    });
    assert_eq!(
        metric(&metrics, "segwatch_packets_decapsulated_total", "vxlan"),
        Some(2.0)
    );
    let (status, _) = daemon.stop();
    assert_eq!(status, Some(0));
    let written = std::fs::read_to_string(&events).unwrap();
    assert_eq!(written.lines().count(), 2, "{written}");
    assert!(
        written.contains(r#""tunnel":{"type":"vxlan","id":100}"#),
        "{written}"
    );
}
