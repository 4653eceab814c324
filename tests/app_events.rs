//! Events with their application (contract sections 2 and 3): fields from
//! real captures, the wait for the application and its limits, and patient
//! data that never leaves: canary names and identifiers in HL7 and DICOM
//! payloads, run through every output, never appear in any.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use segwatch::flow::{FlowHasher, Packet};
use segwatch::replay::SHARDS;
use segwatch::synth::{Capture, Pkt, Resolution, at, tcp_flags::*};
use segwatch::wire::{Headers, LinkType, Outcome, decode};

use crate::common::{SEGWATCH, replay_apps_stdout, replay_stdout, shared_pcaps};
use crate::daemon::{Daemon, http_get, wait_for};

pub(crate) const ALERT_ALL: &str = "[policy]\ndefault_action = \"alert\"\n[zones.ws]\nnetworks = [\"10.60.0.0/16\"]\n[zones.engine]\nnetworks = [\"10.50.0.0/24\"]\n[zones.pacs]\nnetworks = [\"10.30.1.0/24\"]\n[zones.modalities]\nnetworks = [\"10.40.0.0/24\"]\n";

fn replay_apps(policy: &Path, capture: &Path) -> Vec<Value> {
    replay_apps_batched(policy, capture, "16384")
}

fn replay_apps_batched(policy: &Path, capture: &Path, batch: &str) -> Vec<Value> {
    replay_apps_with(policy, capture, &["--batch-size", batch])
}

fn replay_apps_with(policy: &Path, capture: &Path, args: &[&str]) -> Vec<Value> {
    let args: Vec<&str> = ["-q", "--apps"].iter().chain(args).copied().collect();
    let stdout = replay_stdout(policy, &[capture.to_path_buf()], &args);
    String::from_utf8_lossy(&stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn real_captures_give_their_application_fields() {
    let Some(dir) = shared_pcaps() else {
        eprintln!("skipped: ../shared/pcaps is absent");
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let policy = work.path().join("alert.toml");
    std::fs::write(&policy, "[policy]\ndefault_action = \"alert\"\n").unwrap();

    let hl7 = replay_apps(&policy, &dir.join("tapirx/HL7-ORU.pcap"));
    assert_eq!(hl7.len(), 1, "one event per flow: {hl7:#?}");
    assert_eq!(hl7[0]["app"], "hl7");
    assert_eq!(hl7[0]["dest_port"], 6661);
    assert!(
        hl7[0]["hl7"]["message_type"]
            .as_str()
            .unwrap()
            .starts_with("ORU")
    );
    assert!(hl7[0]["hl7"]["version"].is_string());

    let dicom = replay_apps(&policy, &dir.join("tapirx/dicom_arq_2_get_testclient.pcap"));
    assert_eq!(dicom.len(), 1);
    let fields = &dicom[0]["dicom"];
    assert_eq!(dicom[0]["app"], "dicom");
    assert_eq!(fields["called_ae"], "testserver");
    assert_eq!(fields["calling_ae"], "testclient");
    assert_eq!(fields["implementation_version"], "GODICOM_1_1");
    assert!(
        fields["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o == "retrieve"),
        "a C-GET client: {fields}"
    );

    let tls = replay_apps(&policy, &dir.join("nDPI/443-curl.pcap"));
    assert_eq!(tls[0]["tls"]["sni"], "www.ntop.org");
    let http = replay_apps(&policy, &dir.join("nDPI/http.pcapng"));
    assert_eq!(http[0]["app"], "http");
    assert_eq!(http[0]["http"]["method"], "GET");
    assert_eq!(http[0]["http"]["fhir"], false);
    let dhcp = replay_apps(&policy, &dir.join("zeek/dhcp_dhcp.pcap"));
    assert!(dhcp.iter().all(|e| e["app"] == "dhcp"), "{dhcp:#?}");

    // Without --apps, the same events carry no application.
    let plain = Command::new(SEGWATCH)
        .args(["replay", "-q", "--policy"])
        .arg(&policy)
        .arg(dir.join("tapirx/HL7-ORU.pcap"))
        .output()
        .unwrap();
    let plain: Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert!(plain.get("app").is_none());
    assert_eq!(plain["flow_id"], hl7[0]["flow_id"]);
    assert_eq!(plain["timestamp"], hl7[0]["timestamp"]);
}

/// An MLLP-framed HL7 message whose patient segment carries `canary`.
fn hl7_message(canary: &str) -> Vec<u8> {
    let mut message = vec![0x0b];
    message.extend_from_slice(
        format!(
            "MSH|^~\\&|LAB_ANALYZER|WARD_3|EHR|CITY_HOSPITAL|20261128080000||ORU^R01|MSG0001|P|2.5\r\
             PID|1||{canary}-ID-4711^^^HOSP^MR||{canary}^PATIENT^ZZQX||19700101|F\r\
             OBX|1|NM|8867-4^Heart rate^LN||72|/min|||||F\r"
        )
        .as_bytes(),
    );
    message.extend_from_slice(&[0x1c, 0x0d]);
    message
}

/// A DICOM A-ASSOCIATE-RQ then a P-DATA-TF whose data set carries `canary`.
fn dicom_exchange(canary: &str) -> (Vec<u8>, Vec<u8>) {
    let pad = |s: &str| format!("{s:<16}").into_bytes();
    let mut items = Vec::new();
    // Application context.
    let context = b"1.2.840.10008.3.1.1.1";
    items.extend_from_slice(&[0x10, 0]);
    items.extend_from_slice(&(context.len() as u16).to_be_bytes());
    items.extend_from_slice(context);
    // One presentation context: CT Image Storage, implicit VR.
    let abstract_syntax = b"1.2.840.10008.5.1.4.1.1.2";
    let transfer = b"1.2.840.10008.1.2";
    let mut pc = vec![1, 0, 0, 0];
    pc.extend_from_slice(&[0x30, 0]);
    pc.extend_from_slice(&(abstract_syntax.len() as u16).to_be_bytes());
    pc.extend_from_slice(abstract_syntax);
    pc.extend_from_slice(&[0x40, 0]);
    pc.extend_from_slice(&(transfer.len() as u16).to_be_bytes());
    pc.extend_from_slice(transfer);
    items.extend_from_slice(&[0x20, 0]);
    items.extend_from_slice(&(pc.len() as u16).to_be_bytes());
    items.extend_from_slice(&pc);
    let mut body = vec![0, 1, 0, 0];
    body.extend(pad("ARCHIVE"));
    body.extend(pad("CT_ROOM_2"));
    body.extend_from_slice(&[0; 32]);
    body.extend_from_slice(&items);
    let mut rq = vec![0x01, 0];
    rq.extend_from_slice(&(body.len() as u32).to_be_bytes());
    rq.extend_from_slice(&body);
    // P-DATA-TF with a data set holding a patient name (0010,0010).
    let mut data = vec![0x10, 0x00, 0x10, 0x00];
    let name = format!("{canary}^PATIENT");
    data.extend_from_slice(&(name.len() as u32).to_le_bytes());
    data.extend_from_slice(name.as_bytes());
    let mut pdv = ((data.len() + 2) as u32).to_be_bytes().to_vec();
    pdv.extend_from_slice(&[1, 0x02]);
    pdv.extend_from_slice(&data);
    let mut pdata = vec![0x04, 0];
    pdata.extend_from_slice(&(pdv.len() as u32).to_be_bytes());
    pdata.extend_from_slice(&pdv);
    (rq, pdata)
}

const CANARY: &str = "ZZQXCANARYDOE";

/// A TCP connection with a handshake, then `client` and `server` payloads,
/// with sequence numbers as a real stack numbers them.
fn tcp_exchange(
    c: &mut Capture,
    start: f64,
    client: &str,
    server: &str,
    payloads: &[(bool, Vec<u8>)],
) {
    let mut t = start;
    let mut step = |c: &mut Capture, pkt: Pkt| {
        c.add(at(t), &pkt);
        t += 0.01;
    };
    let (mut client_seq, mut server_seq) = (7_000u32, 90_000u32);
    step(c, Pkt::tcp(client, server, SYN).seq(client_seq));
    step(c, Pkt::tcp(server, client, SYN | ACK).seq(server_seq));
    client_seq += 1;
    server_seq += 1;
    step(c, Pkt::tcp(client, server, ACK).seq(client_seq));
    for (from_client, payload) in payloads {
        let (src, dst, seq) = if *from_client {
            (client, server, &mut client_seq)
        } else {
            (server, client, &mut server_seq)
        };
        step(c, Pkt::tcp(src, dst, ACK).seq(*seq).payload(payload));
        *seq += payload.len() as u32;
    }
}

pub(crate) fn canary_capture(path: &Path) {
    let mut c = Capture::new();
    tcp_exchange(
        &mut c,
        0.0,
        "10.60.1.5:40001",
        "10.50.0.10:2575",
        &[(true, hl7_message(CANARY))],
    );
    // HL7 on an unusual port, found by content.
    tcp_exchange(
        &mut c,
        0.2,
        "10.60.1.5:40002",
        "10.50.0.10:17777",
        &[(true, hl7_message(CANARY))],
    );
    let (rq, pdata) = dicom_exchange(CANARY);
    tcp_exchange(
        &mut c,
        0.4,
        "10.40.0.5:50001",
        "10.30.1.20:11112",
        &[(true, rq), (true, pdata)],
    );
    c.write_pcap(path, Resolution::Micro).unwrap();
}

pub(crate) fn assert_no_canary(what: &str, text: &str) {
    assert!(
        !text.contains(CANARY) && !text.contains("PATIENT"),
        "{what} leaks patient data: {text}"
    );
}

#[test]
fn events_wait_for_the_application_and_keep_the_first_packets_time() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("canary.pcap");
    canary_capture(&capture);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, ALERT_ALL).unwrap();
    let mut events = replay_apps(&policy, &capture);
    assert_eq!(events.len(), 3, "{events:#?}");
    // HL7 events wait for an ACK that never comes (until the capture
    // ends); the DICOM association likewise: order them by port here.
    events.sort_by_key(|e| e["dest_port"].as_u64());
    let by_port = |port: u64| {
        events
            .iter()
            .find(|e| e["dest_port"] == port)
            .unwrap()
            .clone()
    };
    let events = [by_port(2575), by_port(17777), by_port(11112)];
    assert_eq!(events[0]["app"], "hl7");
    assert_eq!(events[0]["timestamp"], "2026-11-28T08:00:00.000000Z");
    assert_eq!(events[0]["hl7"]["sending_app"], "LAB_ANALYZER");
    assert_eq!(events[0]["hl7"]["sending_facility"], "WARD_3");
    assert_eq!(events[0]["hl7"]["receiving_app"], "EHR");
    assert_eq!(events[0]["hl7"]["receiving_facility"], "CITY_HOSPITAL");
    assert_eq!(events[0]["hl7"]["message_type"], "ORU^R01");
    assert_eq!(events[0]["hl7"]["version"], "2.5");
    assert_eq!(events[1]["app"], "hl7", "by content on port 17777");
    assert_eq!(events[1]["dest_port"], 17777);
    assert_eq!(events[2]["app"], "dicom");
    assert_eq!(events[2]["dicom"]["called_ae"], "ARCHIVE");
    assert_eq!(events[2]["dicom"]["calling_ae"], "CT_ROOM_2");
    assert_eq!(events[2]["dicom"]["operations"][0], "storage");
    assert_eq!(events[2]["timestamp"], "2026-11-28T08:00:00.400000Z");
    for event in &events {
        assert_no_canary("an event", &event.to_string());
    }

    // A flow that never sends payload waits at most 2 s of capture time,
    // and its event then carries no application. Echo flows fill the
    // capture, one every 0.1 s: they are not inspected, so each event comes
    // at its own packet, and the SYN-only flow's event shows, among them,
    // when it was released.
    let mut c = Capture::new();
    c.add(at(0.0), &Pkt::tcp("10.60.1.5:40100", "10.50.0.10:443", SYN));
    for i in 1..40u16 {
        c.add(
            at(f64::from(i) * 0.1),
            &Pkt::echo_request("10.60.9.9", "10.60.9.8", i),
        );
    }
    let quiet = dir.path().join("quiet.pcap");
    c.write_pcap(&quiet, Resolution::Micro).unwrap();
    // Released by the first packet of the flow's shard (the replay tracks
    // flows in shards by key hash) at or after 2.0 s: that packet's own
    // event comes right after it (same packet, later first packet).
    let shard_of = |frame: &[u8]| {
        let mut headers = Headers::default();
        assert_eq!(
            decode(LinkType::ETHERNET, frame, &mut headers),
            Outcome::Judge
        );
        FlowHasher::shard(Packet::new(&headers, 0).hash, SHARDS)
    };
    let frames = c.frames();
    let syn_shard = shard_of(&frames[0].1);
    let releaser = frames
        .iter()
        .position(|(ts, frame)| *ts >= at(2.0) && shard_of(frame) == syn_shard)
        .expect("a packet of the SYN's shard after 2 s (else the capture's end releases it)");
    assert!(
        releaser > 20,
        "not simply the capture's first packet after 2 s"
    );
    // The same events for any batch size: a batch's end is not a packet
    // (before, a sweep at each batch's end released a wait that was over).
    let events = replay_apps_batched(&policy, &quiet, "16384");
    let flow_ids = |events: &[Value]| -> Vec<String> {
        events.iter().map(|e| e["flow_id"].to_string()).collect()
    };
    for batch in ["1", "2", "3", "16"] {
        let batched = replay_apps_batched(&policy, &quiet, batch);
        assert!(
            batched == events,
            "batches of {batch}: {:?}, one batch: {:?}",
            flow_ids(&batched),
            flow_ids(&events)
        );
    }
    assert_eq!(events.len(), 40);
    let syn = events
        .iter()
        .find(|e| e["proto"] == "tcp")
        .expect("the SYN-only flow's event");
    assert!(syn.get("app").is_none());
    assert_eq!(syn["timestamp"], "2026-11-28T08:00:00.000000Z");
    let position = events.iter().position(|e| e["proto"] == "tcp").unwrap();
    assert_eq!(
        position,
        releaser - 1,
        "released at packet {releaser}, after the echo events of packets 1 to {}",
        releaser - 1
    );

    // Its shard silent from then on, and a TCP idle timeout of 3 s: the
    // flow expires while it waits, yet no batch's end releases it (nor
    // drops it): the capture's end does, whatever the batches.
    let mut c = Capture::new();
    c.add(at(0.0), &Pkt::tcp("10.60.1.5:40100", "10.50.0.10:443", SYN));
    for i in 1..60u16 {
        let echo = Pkt::echo_request("10.60.9.9", "10.60.9.8", i);
        if shard_of(&echo.build()) != syn_shard {
            c.add(at(f64::from(i) * 0.1), &echo);
        }
    }
    let silent = dir.path().join("silent.pcap");
    c.write_pcap(&silent, Resolution::Micro).unwrap();
    let events = replay_apps_with(&policy, &silent, &["--tcp-timeout", "3s"]);
    assert_eq!(events.len(), c.frames().len());
    assert_eq!(
        events.last().unwrap()["proto"],
        "tcp",
        "released at the capture's end"
    );
    for batch in ["1", "5"] {
        let batched = replay_apps_with(
            &policy,
            &silent,
            &["--tcp-timeout", "3s", "--batch-size", batch],
        );
        assert!(
            batched == events,
            "batches of {batch}: {:?}, one batch: {:?}",
            flow_ids(&batched),
            flow_ids(&events)
        );
    }
}

#[test]
fn no_patient_data_reaches_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("canary.pcap");
    canary_capture(&capture);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, ALERT_ALL).unwrap();

    // replay: stdout, stderr at trace level, the inventory in JSON and CSV.
    for inventory in ["inventory.json", "inventory.csv"] {
        let inventory = dir.path().join(inventory);
        // With incidents: their records (and src_device) are in stdout too.
        let out = Command::new(SEGWATCH)
            .args([
                "--log-level",
                "trace",
                "replay",
                "--apps",
                "--incidents",
                "--policy",
            ])
            .arg(&policy)
            .arg("--inventory")
            .arg(&inventory)
            .arg(&capture)
            .output()
            .unwrap();
        assert!(out.status.success());
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("\"event_type\":\"incident\""), "{stdout}");
        assert_no_canary("replay's events and incident records", &stdout);
        assert_no_canary("replay's log", &String::from_utf8_lossy(&out.stderr));
        assert_no_canary(
            "the inventory",
            &std::fs::read_to_string(&inventory).unwrap(),
        );
    }

    // The daemon: events file, metrics, device API, log at trace level, and
    // a syslog feed in every format to a local UDP socket.
    let receivers: Vec<std::net::UdpSocket> = (0..4)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    // With incidents: their records, and /api/v1/incidents, must not leak
    // either (issue 14).
    let mut config = String::from(
        "[policy]\nwatch = false\n[incidents]\nenabled = true\n\
         [events]\nrecords = [\"violations\", \"incidents\"]\n",
    );
    for (receiver, format) in receivers.iter().zip(["rfc5424", "cef", "leef", "json"]) {
        config.push_str(&format!(
            "[[syslog]]\nurl = \"udp://{}\"\nformat = \"{format}\"\n\
             records = [\"violations\", \"incidents\"]\n",
            receiver.local_addr().unwrap()
        ));
    }
    let config_path = dir.path().join("segwatch.toml");
    std::fs::write(&config_path, config).unwrap();
    let events = dir.path().join("events.jsonl");
    let daemon = Daemon::start_logged(
        "trace",
        &[
            "--config",
            config_path.to_str().unwrap(),
            "--pcap",
            capture.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--events",
            events.to_str().unwrap(),
        ],
    );
    let written = wait_for("three events", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        let violations = text
            .lines()
            .filter(|l| l.contains("\"event_type\":\"violation\""))
            .count();
        (violations == 3 && text.contains("\"event_type\":\"incident\"")).then_some(text)
    });
    assert!(written.contains("\"app\":\"dicom\""), "{written}");
    assert_no_canary("the events file", &written);
    for receiver in &receivers {
        receiver
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buffer = [0u8; 8192];
        let (mut with_app, mut incidents) = (0, 0);
        while with_app < 3 || incidents == 0 {
            let n = receiver.recv(&mut buffer).unwrap();
            let message = String::from_utf8_lossy(&buffer[..n]);
            if message.contains(" incident ") {
                incidents += 1;
            } else {
                assert!(
                    message.contains("dicom") || message.contains("hl7"),
                    "{message}"
                );
                with_app += 1;
            }
            assert_no_canary("a syslog message", &message);
        }
    }
    let api = wait_for("incidents served", Duration::from_secs(5), || {
        http_get(daemon.metrics_port, "/api/v1/incidents").filter(|t| t.contains("incident_id"))
    });
    assert_no_canary("the incidents API", &api);
    assert_no_canary("the metrics", &daemon.metrics());
    assert_no_canary(
        "the device API",
        &http_get(daemon.metrics_port, "/api/v1/devices").unwrap(),
    );
    let (code, stderr) = daemon.stop();
    assert_eq!(code, Some(0));
    assert_no_canary("the daemon's log", &stderr);
}

#[test]
fn with_detection_the_events_are_the_same_for_any_thread_count_and_batch_size() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("canary.pcap");
    canary_capture(&capture);
    let sample = crate::common::root().join("tests/fixtures/hospital-sample.pcap");
    let policy = crate::common::root().join("policies/example-hospital.toml");
    let files = [sample, capture];
    let run = |threads: &str, batch: &str| replay_apps_stdout(&policy, &files, threads, batch);
    let one = run("1", "16384");
    assert!(!one.is_empty());
    for (threads, batch) in [
        ("2", "16384"),
        ("3", "16384"),
        ("1", "1"),
        ("2", "7"),
        ("3", "64"),
    ] {
        assert!(
            one == run(threads, batch),
            "{threads} threads, batches of {batch}"
        );
    }
}

#[test]
fn the_inventory_learns_applications_ae_titles_and_hl7_senders() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("canary.pcap");
    canary_capture(&capture);
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, ALERT_ALL).unwrap();
    let inventory = dir.path().join("inventory.json");
    let status = Command::new(SEGWATCH)
        .args(["replay", "-q", "--apps", "--policy"])
        .arg(&policy)
        .arg("--inventory")
        .arg(&inventory)
        .arg(&capture)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let document: Value =
        serde_json::from_str(&std::fs::read_to_string(&inventory).unwrap()).unwrap();
    let device = |ip: &str| {
        document["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["ip"] == ip)
            .unwrap()
            .clone()
    };
    let ct = device("10.40.0.5");
    assert_eq!(ct["client_apps"][0], "dicom");
    assert_eq!(ct["ae_titles"][0], "CT_ROOM_2");
    assert_eq!(ct["class"], "imaging-modality");
    let pacs = device("10.30.1.20");
    assert_eq!(pacs["server_apps"][0], "dicom");
    assert_eq!(pacs["ae_titles"][0], "ARCHIVE");
    assert_eq!(pacs["class"], "pacs");
    let sender = device("10.60.1.5");
    assert_eq!(sender["hl7_applications"][0], "LAB_ANALYZER^WARD_3");
    let engine = device("10.50.0.10");
    assert_eq!(engine["server_apps"][0], "hl7");
    assert_eq!(engine["class"], "clinical-app");
}

/// Associations recorded from pynetdicom talking to itself on loopback (see
/// `tests/fixtures/dicom/record.py`): echo, store, find, reject, abort.
#[test]
fn real_dicom_associations_recorded_on_loopback() {
    let dir = crate::common::root().join("tests/fixtures/dicom");
    let work = tempfile::tempdir().unwrap();
    let policy = work.path().join("alert.toml");
    std::fs::write(&policy, "[policy]\ndefault_action = \"alert\"\n").unwrap();
    let store = std::fs::read(dir.join("store.pcap")).unwrap();
    assert!(
        store.windows(10).any(|w| w == b"ZZQXCANARY"),
        "the stored image carries the canary patient name"
    );
    for (scenario, called, result) in [
        ("echo", "ARCHIVE", "accepted"),
        ("store", "ARCHIVE", "accepted"),
        ("find", "ARCHIVE", "accepted"),
        ("reject", "WRONG_AE", "rejected"),
        ("abort", "ARCHIVE", "accepted"),
    ] {
        let capture = dir.join(format!("{scenario}.pcap"));
        let inventory = work.path().join(format!("{scenario}.json"));
        // With incidents: their records (and src_device) are in stdout too.
        let out = Command::new(SEGWATCH)
            .args([
                "--log-level",
                "trace",
                "replay",
                "--apps",
                "--incidents",
                "--policy",
            ])
            .arg(&policy)
            .arg("--inventory")
            .arg(&inventory)
            .arg(&capture)
            .output()
            .unwrap();
        assert!(out.status.success(), "{scenario}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (events, records): (Vec<Value>, Vec<Value>) = stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .partition(|line| line["event_type"] == "violation");
        assert_eq!(events.len(), 1, "{scenario}: one association, one event");
        // Its incident opens right after it and closes at the end of the capture.
        let states: Vec<_> = records.iter().map(|r| r["state"].clone()).collect();
        assert_eq!(states, ["open", "close"], "{scenario}");
        for record in &records {
            assert_eq!(record["event_type"], "incident", "{scenario}");
            assert_eq!(
                record["incident_id"], events[0]["incident_id"],
                "{scenario}"
            );
        }
        let dicom = &events[0]["dicom"];
        assert_eq!(events[0]["app"], "dicom", "{scenario}");
        assert_eq!(dicom["called_ae"], called, "{scenario}");
        assert_eq!(dicom["calling_ae"], "CT_ROOM_2", "{scenario}");
        assert_eq!(dicom["result"], result, "{scenario}");
        assert_eq!(dicom["implementation_version"], "PYNETDICOM_304");
        assert_eq!(
            dicom["operations"],
            serde_json::json!(["verification", "storage", "query"]),
            "{scenario}"
        );
        for (what, text) in [
            ("events", stdout.to_string()),
            ("log", String::from_utf8_lossy(&out.stderr).to_string()),
            ("inventory", std::fs::read_to_string(&inventory).unwrap()),
        ] {
            assert!(
                !text.contains("ZZQX") && !text.contains("DICOMPATIENT"),
                "{scenario}: the {what} leak patient data"
            );
        }
    }
}
