//! The policy extension on applications: services that require an
//! application (matched by content whatever the port), rules narrowed by
//! DICOM AE titles, HL7 senders and message types and TLS server names, and
//! the `[clinical]` checks; verdicts wait for the application.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use segwatch::synth::{Capture, Pkt, Resolution, at, tcp_flags::*};

use crate::common::{SEGWATCH, root, shared_pcaps};

fn replay(policy_text: &str, captures: &[&Path]) -> Vec<Value> {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, policy_text).unwrap();
    let out = Command::new(SEGWATCH)
        .args(["replay", "-q", "--policy"])
        .arg(&policy)
        .args(captures)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn dicom_fixture(name: &str) -> std::path::PathBuf {
    root().join(format!("tests/fixtures/dicom/{name}.pcap"))
}

const LOOPBACK: &str =
    "[policy]\ndefault_action = \"alert\"\n[zones.lo]\nnetworks = [\"127.0.0.0/8\"]\n";

#[test]
fn a_service_requiring_dicom_matches_by_content_whatever_the_port() {
    // The pynetdicom associations run on 11112; the service names 104 only.
    let policy = format!(
        "{LOOPBACK}[services.dicom]\ntcp = [104]\napp = \"dicom\"\n\
         [[rules]]\nname = \"dicom-on-loopback\"\nfrom = [\"lo\"]\nto = [\"lo\"]\n\
         services = [\"dicom\"]\naction = \"allow\"\n"
    );
    for scenario in ["echo", "store", "find", "reject", "abort"] {
        assert!(
            replay(&policy, &[&dicom_fixture(scenario)]).is_empty(),
            "{scenario}: DICOM on 11112 is allowed by the dicom service"
        );
    }
    // The same rule without app: port 104 only, so 11112 alerts.
    let by_port = policy.replace("app = \"dicom\"\n", "");
    let events = replay(&by_port, &[&dicom_fixture("echo")]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["rule"], "default");

    // Bytes that are not DICOM on port 104 do not match the service.
    let mut c = Capture::new();
    c.add(
        at(0.0),
        &Pkt::tcp("127.0.0.1:40000", "127.0.0.2:104", SYN).seq(1),
    );
    c.add(
        at(0.01),
        &Pkt::tcp("127.0.0.2:104", "127.0.0.1:40000", SYN | ACK).seq(9),
    );
    c.add(
        at(0.02),
        &Pkt::tcp("127.0.0.1:40000", "127.0.0.2:104", ACK)
            .seq(2)
            .payload(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    let dir = tempfile::tempdir().unwrap();
    let http_on_104 = dir.path().join("http104.pcap");
    c.write_pcap(&http_on_104, Resolution::Micro).unwrap();
    let events = replay(&policy, &[&http_on_104]);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["rule"], "default");
    assert_eq!(events[0]["app"], "http");
    assert_eq!(events[0]["timestamp"], "2026-11-28T08:00:00.000000Z");
}

/// Issue 15.7: `service` names only a service that matches the flow. HTTP
/// on port 104 is not the `dicom` service that requires DICOM (it was
/// labelled `"service":"dicom","app":"http"`), but a later service of its
/// port that requires nothing is; DICOM on 11112, a port the service does
/// not name, is the `dicom` service.
#[test]
fn regression_15_7_the_service_label_names_only_a_matching_service() {
    // The rule between other zones turns detection on; loopback flows fall
    // to the default, whose label is the first named service that matches.
    let policy = format!(
        "{LOOPBACK}[zones.ward]\nnetworks = [\"10.0.0.0/8\"]\n\
         [services.dicom]\ntcp = [104]\napp = \"dicom\"\n\
         [[rules]]\nname = \"ward-dicom\"\nfrom = [\"ward\"]\nto = [\"ward\"]\n\
         services = [\"dicom\"]\naction = \"allow\"\n"
    );
    let mut c = Capture::new();
    c.add(
        at(0.0),
        &Pkt::tcp("127.0.0.1:40000", "127.0.0.2:104", SYN).seq(1),
    );
    c.add(
        at(0.01),
        &Pkt::tcp("127.0.0.2:104", "127.0.0.1:40000", SYN | ACK).seq(9),
    );
    c.add(
        at(0.02),
        &Pkt::tcp("127.0.0.1:40000", "127.0.0.2:104", ACK)
            .seq(2)
            .payload(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    );
    let dir = tempfile::tempdir().unwrap();
    let http_on_104 = dir.path().join("http104.pcap");
    c.write_pcap(&http_on_104, Resolution::Micro).unwrap();
    let events = replay(&policy, &[&http_on_104]);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["app"], "http");
    assert_eq!(events[0].get("service"), None, "{}", events[0]);

    let with_a_port_service =
        policy.replace("[[rules]]", "[services.acr-nema]\ntcp = [104]\n[[rules]]");
    let events = replay(&with_a_port_service, &[&http_on_104]);
    assert_eq!(events[0]["service"], "acr-nema", "{}", events[0]);

    let events = replay(&with_a_port_service, &[&dicom_fixture("echo")]);
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["app"], "dicom");
    assert_eq!(events[0]["dest_port"], 11112);
    assert_eq!(events[0]["service"], "dicom", "{}", events[0]);
}

#[test]
fn rules_narrowed_by_ae_titles() {
    let policy = format!(
        "{LOOPBACK}[services.dicom]\ntcp = [104, 11112]\napp = \"dicom\"\n\
         [[rules]]\nname = \"ct-to-archive\"\nfrom = [\"lo\"]\nto = [\"lo\"]\n\
         services = [\"dicom\"]\ndicom_called_ae = [\"ARCHIVE\"]\n\
         dicom_calling_ae = [\"CT_ROOM_2\"]\naction = \"allow\"\n"
    );
    assert!(replay(&policy, &[&dicom_fixture("store")]).is_empty());
    let events = replay(&policy, &[&dicom_fixture("reject")]);
    assert_eq!(events.len(), 1, "the SCU called WRONG_AE");
    assert_eq!(events[0]["rule"], "default");
    assert_eq!(events[0]["dicom"]["called_ae"], "WRONG_AE");
    // An alerting rule narrowed the same way names itself and its service.
    let alerting = policy.replace(
        "action = \"allow\"",
        "action = \"alert\"\nseverity = \"high\"",
    );
    let events = replay(&alerting, &[&dicom_fixture("store")]);
    assert_eq!(events[0]["rule"], "ct-to-archive");
    assert_eq!(events[0]["severity"], "high");
    assert_eq!(events[0]["service"], "dicom");
}

#[test]
fn rules_narrowed_by_hl7_senders_and_message_types_and_tls_names() {
    let Some(dir) = shared_pcaps() else {
        eprintln!("skipped: ../shared/pcaps is absent");
        return;
    };
    let oru = dir.join("tapirx/HL7-ORU.pcap");
    let adt = dir.join("tapirx/HL7-ADT.pcap");
    let allow_oru = "[policy]\ndefault_action = \"alert\"\n[services.hl7]\napp = \"hl7\"\n\
                     [[rules]]\nname = \"results\"\nfrom = [\"any\"]\nto = [\"any\"]\n\
                     services = [\"hl7\"]\nhl7_message_types = [\"ORU\"]\naction = \"allow\"\n";
    assert!(replay(allow_oru, &[&oru]).is_empty());
    let events = replay(allow_oru, &[&adt]);
    assert_eq!(events.len(), 1, "ADT is not ORU");
    assert_eq!(events[0]["hl7"]["message_type"], "ADT^A01");
    let by_sender = allow_oru.replace(
        "hl7_message_types = [\"ORU\"]",
        "hl7_sending_app = [\"SENDING_APPLICATION\"]\nhl7_sending_facility = [\"SENDING_FACILITY\"]",
    );
    assert!(replay(&by_sender, &[&adt]).is_empty());
    let other_sender = by_sender.replace("[\"SENDING_APPLICATION\"]", "[\"LIS\"]");
    assert_eq!(replay(&other_sender, &[&adt]).len(), 1);

    let curl = dir.join("nDPI/443-curl.pcap");
    let tls = "[policy]\ndefault_action = \"alert\"\n[[rules]]\nname = \"vendor-cloud\"\n\
               from = [\"any\"]\nto = [\"any\"]\nservices = [\"tcp/443\"]\n\
               tls_server_names = [\"*.ntop.org\"]\naction = \"allow\"\n";
    assert!(replay(tls, &[&curl]).is_empty(), "www.ntop.org");
    let elsewhere = tls.replace("*.ntop.org", "*.example.org");
    let events = replay(&elsewhere, &[&curl]);
    assert_eq!(events[0]["tls"]["sni"], "www.ntop.org");
    assert_eq!(events[0]["rule"], "default");
}

#[test]
fn clinical_checks_flag_unexpected_ports_and_unknown_peers() {
    let allow_all = format!(
        "{LOOPBACK}[services.dicom]\ntcp = [104]\napp = \"dicom\"\n\
         [[rules]]\nname = \"all\"\nfrom = [\"lo\"]\nto = [\"lo\"]\naction = \"allow\"\n"
    );
    assert!(replay(&allow_all, &[&dicom_fixture("echo")]).is_empty());
    let unexpected = format!("{allow_all}[clinical]\nunexpected_port = \"low\"\n");
    let events = replay(&unexpected, &[&dicom_fixture("echo")]);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["rule"], "clinical-unexpected-port");
    assert_eq!(events[0]["severity"], "low");
    assert_eq!(events[0]["app"], "dicom");

    let known = format!(
        "{}[clinical]\nknown_ae_titles = [\"ARCHIVE\", \"CT_ROOM_2\"]\nunknown_ae_title = \"high\"\n",
        allow_all.replace("tcp = [104]", "tcp = [104, 11112]")
    );
    assert!(replay(&known, &[&dicom_fixture("store")]).is_empty());
    let events = replay(&known, &[&dicom_fixture("reject")]);
    assert_eq!(events[0]["rule"], "clinical-unknown-ae-title");
    assert_eq!(events[0]["severity"], "high");

    // Issue 15.12: when two checks flag a flow, the higher severity wins,
    // whichever check comes first (the reject is on 11112, which the
    // service no longer names, with an unknown called AE title).
    let both = |port: &str, ae: &str| {
        format!(
            "{allow_all}[clinical]\nunexpected_port = \"{port}\"\n\
             known_ae_titles = [\"ARCHIVE\", \"CT_ROOM_2\"]\nunknown_ae_title = \"{ae}\"\n"
        )
    };
    let events = replay(&both("low", "high"), &[&dicom_fixture("reject")]);
    assert_eq!(events[0]["rule"], "clinical-unknown-ae-title");
    assert_eq!(events[0]["severity"], "high");
    let events = replay(&both("critical", "high"), &[&dicom_fixture("reject")]);
    assert_eq!(events[0]["rule"], "clinical-unexpected-port");
    assert_eq!(events[0]["severity"], "critical");

    if let Some(dir) = shared_pcaps() {
        let adt = dir.join("tapirx/HL7-ADT.pcap");
        let senders = "[policy]\ndefault_action = \"allow\"\n[clinical]\n\
                       known_hl7_senders = [\"LIS^LAB\"]\n";
        let events = replay(senders, &[&adt]);
        assert_eq!(events[0]["rule"], "clinical-unknown-hl7-sender");
        let known_sender = senders.replace("LIS^LAB", "SENDING_APPLICATION^SENDING_FACILITY");
        assert!(replay(&known_sender, &[&adt]).is_empty());
    }
}

#[test]
fn policies_without_applications_judge_as_before() {
    let sample = root().join("tests/fixtures/hospital-sample.pcap");
    let example = std::fs::read_to_string(root().join("policies/example-hospital.toml")).unwrap();
    let plain = replay(&example, &[&sample]);
    // With detection forced on, the same verdicts (only the app fields and
    // the waiting differ).
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, &example).unwrap();
    let out = Command::new(SEGWATCH)
        .args(["replay", "-q", "--apps", "--policy"])
        .arg(&policy)
        .arg(&sample)
        .output()
        .unwrap();
    let mut with_apps: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let e: Value = serde_json::from_str(l).unwrap();
            (e["flow_id"].to_string(), e["rule"].to_string())
        })
        .collect();
    let mut without: Vec<(String, String)> = plain
        .iter()
        .map(|e| (e["flow_id"].to_string(), e["rule"].to_string()))
        .collect();
    with_apps.sort();
    without.sort();
    assert_eq!(with_apps, without);
}

#[test]
fn extension_errors_name_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    for (text, line, needle) in [
        (
            "[services.x]\ntcp = [104]\napp = \"dicomm\"\n",
            3,
            "unknown application `dicomm`",
        ),
        (
            "[[rules]]\nname = \"r\"\nfrom = [\"any\"]\nto = [\"any\"]\naction = \"allow\"\ntls_server_names = [\"a.*.org\"]\n",
            6,
            "tls_server_names",
        ),
        ("[clinical]\nunexpected_port = \"urgent\"\n", 2, "urgent"),
        ("[clinical]\nknown_ae_title = []\n", 2, "known_ae_title"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(SEGWATCH)
            .arg("check")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("bad.toml:{line}:")) && stderr.contains(needle),
            "{text}: {stderr}"
        );
    }
}
