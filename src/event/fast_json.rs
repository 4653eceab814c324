//! A [`ViolationEvent`] without nested objects (application fields, a
//! tunnel) written as JSON by hand,
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

use super::ViolationEvent;

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

/// `,"{side}_ip":"…"` and, when there is one, `,"{side}_port":…`.
fn push_endpoint(out: &mut Vec<u8>, side: &str, ip: IpAddr, port: Option<u16>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(side.as_bytes());
    out.extend_from_slice(b"_ip\":\"");
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
    if let Some(port) = port {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(side.as_bytes());
        out.extend_from_slice(b"_port\":");
        out.extend_from_slice(itoa::Buffer::new().format(port).as_bytes());
    }
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
    use crate::event::{HexId, Timestamp};

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
            let ip = |rng: &mut fastrand::Rng| {
                if rng.bool() {
                    IpAddr::V4(Ipv4Addr::from(rng.u32(..) >> rng.u32(0..32)))
                } else {
                    IpAddr::V6(Ipv6Addr::from(rng.u128(..) >> rng.u32(0..128)))
                }
            };
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
