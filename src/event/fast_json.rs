//! A [`ViolationEvent`] without nested objects (application fields, a
//! tunnel), and an [`IncidentRecord`], written as JSON by hand,
//! byte for byte as serde_json writes it. serde_json escapes every key and
//! value byte by byte (about 4,500 instructions of the 6,300 an event
//! costs); here the keys are constants and a name is copied whole when
//! nothing in it needs escaping, which policy names almost never do.
//!
//! End-to-end gain (callgrind, 2026-12-07, `benches/twins.rs`): 3,000
//! instructions an event against serde_json's 6,300 (2,400 against 4,900
//! for the shortest events), which is 31% of a replay where every flow is a
//! violation (a scan; 535 against 780 million instructions for 100,000
//! flows) and 2.0% of the benchmark's hospital capture, where one flow in
//! fifty is.

use std::net::IpAddr;

use super::{IncidentRecord, ViolationEvent};

/// Writes `event`, which has no application fields, and a newline.
pub(super) fn write_plain(event: &ViolationEvent<'_>, out: &mut Vec<u8>) {
    let mut numbers = itoa::Buffer::new();
    out.extend_from_slice(b"{\"timestamp\":\"");
    out.extend_from_slice(event.timestamp.text().as_str().as_bytes());
    out.extend_from_slice(b"\",\"event_type\":");
    push_str(out, &event.event_type);
    out.extend_from_slice(b",\"flow_id\":\"");
    out.extend_from_slice(event.flow_id.text().as_str().as_bytes());
    out.extend_from_slice(b"\",\"proto\":");
    push_str(out, &event.proto);
    push_endpoint(out, "src", event.src_ip, event.src_port);
    push_endpoint(out, "dest", event.dest_ip, event.dest_port);
    if let Some(vlan) = event.vlan {
        out.extend_from_slice(b",\"vlan\":");
        out.extend_from_slice(numbers.format(vlan).as_bytes());
    }
    out.extend_from_slice(b",\"src_zone\":");
    push_str(out, &event.src_zone);
    out.extend_from_slice(b",\"dest_zone\":");
    push_str(out, &event.dest_zone);
    if let Some(service) = &event.service {
        out.extend_from_slice(b",\"service\":");
        push_str(out, service);
    }
    out.extend_from_slice(b",\"rule\":");
    push_str(out, &event.rule);
    out.extend_from_slice(b",\"severity\":");
    push_str(out, &event.severity);
    if let Some(label) = &event.src_criticality {
        out.extend_from_slice(b",\"src_criticality\":");
        push_str(out, label);
    }
    if let Some(label) = &event.dest_criticality {
        out.extend_from_slice(b",\"dest_criticality\":");
        push_str(out, label);
    }
    if let Some(id) = &event.exception {
        out.extend_from_slice(b",\"exception\":");
        push_str(out, id);
    }
    if let Some(id) = event.incident_id {
        out.extend_from_slice(b",\"incident_id\":\"");
        out.extend_from_slice(id.text().as_str().as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
}

/// Writes an incident record and a newline, byte for byte as serde_json
/// does (8,500 instructions a record through serde_json, 2026-12-07).
pub(super) fn write_incident(record: &IncidentRecord, out: &mut Vec<u8>) {
    let mut numbers = itoa::Buffer::new();
    out.extend_from_slice(b"{\"timestamp\":\"");
    out.extend_from_slice(record.timestamp.text().as_str().as_bytes());
    out.extend_from_slice(b"\",\"event_type\":");
    push_str(out, &record.event_type);
    out.extend_from_slice(b",\"incident_id\":\"");
    out.extend_from_slice(record.incident_id.text().as_str().as_bytes());
    out.extend_from_slice(b"\",\"state\":\"");
    out.extend_from_slice(record.state.as_str().as_bytes());
    out.extend_from_slice(b"\",\"kind\":\"");
    out.extend_from_slice(record.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"rule\":");
    push_str(out, &record.rule);
    out.extend_from_slice(b",\"severity\":");
    push_str(out, &record.severity);
    out.extend_from_slice(b",\"src_ip\":");
    push_ip(out, record.src_ip);
    for (key, value) in [
        (&b",\"src_zone\":"[..], &record.src_zone),
        (b",\"dest_zone\":", &record.dest_zone),
        (b",\"service\":", &record.service),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(key);
            push_str(out, value);
        }
    }
    if let Some(ip) = record.dest_ip {
        out.extend_from_slice(b",\"dest_ip\":");
        push_ip(out, ip);
    }
    if let Some(proto) = &record.proto {
        out.extend_from_slice(b",\"proto\":");
        push_str(out, proto);
    }
    if let Some(port) = record.dest_port {
        out.extend_from_slice(b",\"dest_port\":");
        out.extend_from_slice(numbers.format(port).as_bytes());
    }
    for (key, value) in [
        (&b",\"src_criticality\":"[..], &record.src_criticality),
        (b",\"dest_criticality\":", &record.dest_criticality),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(key);
            push_str(out, value);
        }
    }
    out.extend_from_slice(b",\"first_seen\":\"");
    out.extend_from_slice(record.first_seen.text().as_str().as_bytes());
    out.extend_from_slice(b"\",\"last_seen\":\"");
    out.extend_from_slice(record.last_seen.text().as_str().as_bytes());
    out.extend_from_slice(b"\",\"flows\":");
    out.extend_from_slice(numbers.format(record.flows).as_bytes());
    out.extend_from_slice(b",\"dest_count\":");
    out.extend_from_slice(numbers.format(record.dest_count).as_bytes());
    if record.dest_count_capped {
        out.extend_from_slice(b",\"dest_count_capped\":true");
    }
    out.extend_from_slice(b",\"dest_sample\":[");
    for (i, &ip) in record.dest_sample.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_ip(out, ip);
    }
    out.push(b']');
    if !record.dest_ports.is_empty() {
        out.extend_from_slice(b",\"dest_ports\":[");
        for (i, &port) in record.dest_ports.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(numbers.format(port).as_bytes());
        }
        out.push(b']');
    }
    if let Some(device) = &record.src_device {
        out.extend_from_slice(b",\"src_device\":{");
        let mut first = true;
        for (key, value) in [
            (&b"\"vendor\":"[..], &device.vendor),
            (b"\"class\":", &device.class),
            (b"\"hostname\":", &device.hostname),
        ] {
            if let Some(value) = value {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(key);
                push_str(out, value);
            }
        }
        out.push(b'}');
    }
    if let Some(id) = &record.exception {
        out.extend_from_slice(b",\"exception\":");
        push_str(out, id);
    }
    out.extend_from_slice(b"}\n");
}

/// `,"{side}_ip":"…"` and, when there is one, `,"{side}_port":…`.
fn push_endpoint(out: &mut Vec<u8>, side: &str, ip: IpAddr, port: Option<u16>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(side.as_bytes());
    out.extend_from_slice(b"_ip\":");
    push_ip(out, ip);
    if let Some(port) = port {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(side.as_bytes());
        out.extend_from_slice(b"_port\":");
        out.extend_from_slice(itoa::Buffer::new().format(port).as_bytes());
    }
}

/// An address as a JSON string.
fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    out.push(b'"');
    match ip {
        IpAddr::V4(v4) => {
            let mut numbers = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(numbers.format(octet).as_bytes());
            }
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            // Writing into a Vec cannot fail; IPv6 (rare in events, and with
            // its zero compression) goes through `Display`.
            let _ = write!(out, "{v6}");
        }
    }
    out.push(b'"');
}

/// A JSON string: as is between quotes when nothing in it needs escaping,
/// else escaped by serde_json.
fn push_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Serializing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::event::{HexId, IncidentKind, IncidentState, SourceDevice, Timestamp};

    fn any_ip(rng: &mut fastrand::Rng) -> IpAddr {
        if rng.bool() {
            IpAddr::V4(Ipv4Addr::from(rng.u32(..) >> rng.u32(0..32)))
        } else {
            IpAddr::V6(Ipv6Addr::from(rng.u128(..) >> rng.u32(0..128)))
        }
    }

    #[test]
    fn incident_records_are_written_as_serde_json_writes_them() {
        let mut rng = fastrand::Rng::with_seed(29);
        for _ in 0..20_000 {
            let maybe = |rng: &mut fastrand::Rng| {
                let value = name(rng).into_owned();
                rng.bool().then_some(value)
            };
            let record = IncidentRecord {
                timestamp: Timestamp(rng.u64(..u64::MAX / 2)),
                event_type: Cow::Borrowed("incident"),
                incident_id: HexId(rng.u64(..) >> rng.u32(0..64)),
                state: [
                    IncidentState::Open,
                    IncidentState::Update,
                    IncidentState::Close,
                ][rng.usize(..3)],
                kind: IncidentKind::ALL[rng.usize(..3)],
                rule: name(&mut rng).into_owned(),
                severity: ["low", "medium", "high", "critical"][rng.usize(..4)].to_owned(),
                src_ip: any_ip(&mut rng),
                src_zone: maybe(&mut rng),
                dest_zone: maybe(&mut rng),
                service: maybe(&mut rng),
                dest_ip: rng.bool().then(|| any_ip(&mut rng)),
                proto: rng
                    .bool()
                    .then(|| ["tcp", "udp", "icmp", "ip-250"][rng.usize(..4)].to_owned()),
                dest_port: rng.bool().then(|| rng.u16(..)),
                src_criticality: maybe(&mut rng),
                dest_criticality: maybe(&mut rng),
                first_seen: Timestamp(rng.u64(..u64::MAX / 2)),
                last_seen: Timestamp(rng.u64(..u64::MAX / 2)),
                flows: rng.u64(..) >> rng.u32(0..64),
                dest_count: rng.u64(..) >> rng.u32(0..64),
                dest_count_capped: rng.bool(),
                dest_sample: (0..rng.usize(0..17)).map(|_| any_ip(&mut rng)).collect(),
                dest_ports: (0..rng.usize(0..17)).map(|_| rng.u16(..)).collect(),
                src_device: rng.bool().then(|| SourceDevice {
                    vendor: maybe(&mut rng),
                    class: maybe(&mut rng),
                    hostname: maybe(&mut rng),
                }),
                exception: maybe(&mut rng),
            };
            let (mut fast, mut serde) = (Vec::new(), Vec::new());
            record.write_json_line(&mut fast);
            record.write_serde_json_line(&mut serde);
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&serde),
                "{record:?}"
            );
            assert_eq!(record.to_json().as_bytes(), &serde[..serde.len() - 1]);
        }
    }

    fn name(rng: &mut fastrand::Rng) -> Cow<'static, str> {
        const NAMES: [&str; 6] = [
            "pumps",
            "b-2",
            "life-critical \"quoted\" back\\slash tab\t nl\n \u{1} ümlaut \u{7f}",
            "",
            "unknown",
            "medical-device-internet",
        ];
        Cow::Borrowed(NAMES[rng.usize(..NAMES.len())])
    }

    #[test]
    fn fast_json_equals_serde_json() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..20_000 {
            let ip = any_ip;
            let maybe = |rng: &mut fastrand::Rng| {
                let value = name(rng);
                rng.bool().then_some(value)
            };
            let event = ViolationEvent {
                // Years 1970 to about 2262.
                timestamp: Timestamp(rng.u64(..u64::MAX / 2)),
                event_type: Cow::Borrowed("violation"),
                flow_id: HexId(rng.u64(..) >> rng.u32(0..64)),
                proto: Cow::Borrowed(["tcp", "udp", "icmp", "gre", "ip-250"][rng.usize(..5)]),
                src_ip: ip(&mut rng),
                src_port: rng.bool().then(|| rng.u16(..)),
                dest_ip: ip(&mut rng),
                dest_port: rng.bool().then(|| rng.u16(..)),
                vlan: rng.bool().then(|| rng.u16(1..4096)),
                src_zone: name(&mut rng),
                dest_zone: name(&mut rng),
                service: maybe(&mut rng),
                rule: name(&mut rng),
                severity: Cow::Borrowed(["low", "medium", "high", "critical"][rng.usize(..4)]),
                src_criticality: maybe(&mut rng),
                dest_criticality: maybe(&mut rng),
                app: None,
                dicom: None,
                hl7: None,
                tls: None,
                http: None,
                tunnel: None,
                exception: maybe(&mut rng),
                incident_id: rng.bool().then(|| HexId(rng.u64(..) >> rng.u32(0..64))),
            };
            let (mut fast, mut serde) = (Vec::new(), Vec::new());
            write_plain(&event, &mut fast);
            event.write_serde_json_line(&mut serde);
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&serde),
                "{event:?}"
            );
        }
    }
}
