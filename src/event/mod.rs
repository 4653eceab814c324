//! Violation events (contract section 3).
//!
//! The hot path produces a compact [`Violation`]: numbers and table indices.
//! [`ViolationEvent`] resolves it against the policy that judged it into the
//! contract's JSON object, and [`write_json_line`] writes it. Events carry
//! header fields only: no payload byte ever reaches one.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};

use crate::classify::{CompiledPolicy, Judgement, Verdict, ZoneId};
use crate::flow::FlowKey;
use crate::wire::{Transport, protocol_name};

/// A violating flow, as the tracker reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Position in the capture of the packet that produced the event.
    pub packet_index: u64,
    /// Capture time of that packet, nanoseconds since the epoch.
    pub ts_ns: u64,
    /// The flow's id.
    pub flow_id: u64,
    /// True for IPv6.
    pub ipv6: bool,
    /// IP protocol number.
    pub protocol: u8,
    /// The flow's transport.
    pub transport: Transport,
    /// Initiator's address.
    pub src_addr: u128,
    /// Initiator's port (TCP/UDP).
    pub src_port: u16,
    /// Responder's address.
    pub dest_addr: u128,
    /// Responder's port (TCP/UDP).
    pub dest_port: u16,
    /// Outermost VLAN ID of the packet; 0 when untagged.
    pub vlan: u16,
    /// Initiator's zone.
    pub src_zone: ZoneId,
    /// Responder's zone.
    pub dest_zone: ZoneId,
    /// The verdict.
    pub verdict: Verdict,
    /// The application, when detection identified it (contract section 2:
    /// the event waits for it).
    pub app: Option<Box<crate::app::Detection>>,
}

impl Violation {
    /// The violation of the flow with `key`, judged as `judged` with the
    /// final `verdict`, made by the packet at capture position `at.0`, its
    /// event stamped `at.1` and tagged VLAN `at.2`.
    pub fn of(
        key: &FlowKey,
        judged: &Judgement,
        verdict: Verdict,
        at: (u64, u64, u16),
        flow_id: u64,
        app: Option<Box<crate::app::Detection>>,
    ) -> Violation {
        let (packet_index, ts_ns, vlan) = at;
        Violation {
            packet_index,
            ts_ns,
            flow_id,
            ipv6: key.ipv6,
            protocol: key.protocol,
            transport: Transport::of_protocol(key.protocol),
            src_addr: judged.initiator.0,
            src_port: judged.initiator.1,
            dest_addr: judged.responder.0,
            dest_port: judged.responder.1,
            vlan,
            src_zone: judged.zones.0,
            dest_zone: judged.zones.1,
            verdict,
            app,
        }
    }
}

/// The contract's violation event, field for field and in its order.
///
/// Borrowed when written (names come from the policy), owned when read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViolationEvent<'a> {
    /// RFC 3339 UTC, microseconds.
    pub timestamp: Cow<'a, str>,
    /// Always `violation`.
    pub event_type: Cow<'a, str>,
    /// 16 lowercase hex digits.
    pub flow_id: Cow<'a, str>,
    /// `tcp`, `udp`, `icmp`, `icmpv6` or another protocol's keyword.
    pub proto: Cow<'a, str>,
    /// Initiator's address.
    pub src_ip: IpAddr,
    /// Initiator's port; absent when the protocol has none.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub src_port: Option<u16>,
    /// Responder's address.
    pub dest_ip: IpAddr,
    /// Responder's port; absent when the protocol has none.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dest_port: Option<u16>,
    /// Outermost VLAN ID; absent when untagged or 0.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vlan: Option<u16>,
    /// Initiator's zone.
    pub src_zone: Cow<'a, str>,
    /// Responder's zone.
    pub dest_zone: Cow<'a, str>,
    /// The matched service; absent when none matches.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<Cow<'a, str>>,
    /// The deciding rule, or `default`.
    pub rule: Cow<'a, str>,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: Cow<'a, str>,
    /// Initiator zone's criticality label; absent when unset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub src_criticality: Option<Cow<'a, str>>,
    /// Responder zone's criticality label; absent when unset.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dest_criticality: Option<Cow<'a, str>>,
    /// The application protocol, when identified.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub app: Option<Cow<'a, str>>,
    /// DICOM association fields.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dicom: Option<app_fields::Dicom>,
    /// HL7 message header fields.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hl7: Option<app_fields::Hl7>,
    /// TLS ClientHello fields.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tls: Option<app_fields::Tls>,
    /// HTTP request fields.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub http: Option<app_fields::Http>,
}

impl<'a> ViolationEvent<'a> {
    /// Resolves a violation against the policy that judged it.
    pub fn new(violation: &Violation, policy: &'a CompiledPolicy) -> ViolationEvent<'a> {
        let rule = policy.rule(violation.verdict.rule);
        let src_zone = policy.zone(violation.src_zone);
        let dest_zone = policy.zone(violation.dest_zone);
        let has_ports = matches!(violation.transport, Transport::Tcp | Transport::Udp);
        let port = |p: u16| has_ports.then_some(p);
        ViolationEvent {
            timestamp: Cow::Owned(rfc3339_micros(violation.ts_ns)),
            event_type: Cow::Borrowed("violation"),
            flow_id: Cow::Owned(format!("{:016x}", violation.flow_id)),
            proto: Cow::Borrowed(protocol_name(violation.protocol)),
            src_ip: ip(violation.ipv6, violation.src_addr),
            src_port: port(violation.src_port),
            dest_ip: ip(violation.ipv6, violation.dest_addr),
            dest_port: port(violation.dest_port),
            vlan: (violation.vlan != 0).then_some(violation.vlan),
            src_zone: Cow::Borrowed(&src_zone.name),
            dest_zone: Cow::Borrowed(&dest_zone.name),
            service: policy
                .service_label(violation.verdict, violation.transport, violation.dest_port)
                .map(Cow::Borrowed),
            rule: Cow::Borrowed(&rule.name),
            severity: Cow::Borrowed(rule.severity.as_str()),
            src_criticality: src_zone.criticality.as_deref().map(Cow::Borrowed),
            dest_criticality: dest_zone.criticality.as_deref().map(Cow::Borrowed),
            app: violation
                .app
                .as_ref()
                .map(|d| Cow::Borrowed(d.app().as_str())),
            dicom: violation.app.as_deref().and_then(app_fields::Dicom::of),
            hl7: violation.app.as_deref().and_then(app_fields::Hl7::of),
            tls: violation.app.as_deref().and_then(app_fields::Tls::of),
            http: violation.app.as_deref().and_then(app_fields::Http::of),
        }
    }
}

impl ViolationEvent<'_> {
    /// The same event owning its strings, to outlive the policy that named it.
    pub fn into_owned(self) -> ViolationEvent<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        ViolationEvent {
            timestamp: own(self.timestamp),
            event_type: own(self.event_type),
            flow_id: own(self.flow_id),
            proto: own(self.proto),
            src_ip: self.src_ip,
            src_port: self.src_port,
            dest_ip: self.dest_ip,
            dest_port: self.dest_port,
            vlan: self.vlan,
            src_zone: own(self.src_zone),
            dest_zone: own(self.dest_zone),
            service: self.service.map(own),
            rule: own(self.rule),
            severity: own(self.severity),
            src_criticality: self.src_criticality.map(own),
            dest_criticality: self.dest_criticality.map(own),
            app: self.app.map(own),
            dicom: self.dicom,
            hl7: self.hl7,
            tls: self.tls,
            http: self.http,
        }
    }

    /// The event as one line of JSON, without the newline.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Appends `violation` as one line of JSON (with its newline) to `out`.
///
/// An event without application fields (most of them) is written by hand,
/// byte for byte as serde_json writes [`ViolationEvent`]: going through
/// serde (a `String` for the time and for the flow id, the addresses through
/// `Display`, every name escaped byte by byte) cost about 7,800
/// instructions an event, several percent of a replay with many
/// violations. The test `hand_written_events_equal_serde_json` holds the
/// two to the same bytes.
pub fn write_json_line(violation: &Violation, policy: &CompiledPolicy, out: &mut Vec<u8>) {
    if violation.app.is_none() {
        write_plain_json_line(violation, policy, out);
        return;
    }
    write_serde_json_line(violation, policy, out);
}

/// [`write_json_line`] through serde.
fn write_serde_json_line(violation: &Violation, policy: &CompiledPolicy, out: &mut Vec<u8>) {
    let event = ViolationEvent::new(violation, policy);
    // Serializing plain strings and numbers into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, &event).is_ok() {
        out.push(b'\n');
    }
}

/// [`write_json_line`] by hand, for an event without application fields.
fn write_plain_json_line(violation: &Violation, policy: &CompiledPolicy, out: &mut Vec<u8>) {
    let rule = policy.rule(violation.verdict.rule);
    let src_zone = policy.zone(violation.src_zone);
    let dest_zone = policy.zone(violation.dest_zone);
    let has_ports = matches!(violation.transport, Transport::Tcp | Transport::Udp);
    let mut numbers = itoa::Buffer::new();

    out.extend_from_slice(b"{\"timestamp\":\"");
    push_rfc3339_micros(out, violation.ts_ns);
    out.extend_from_slice(b"\",\"event_type\":\"violation\",\"flow_id\":\"");
    push_hex16(out, violation.flow_id);
    out.extend_from_slice(b"\",\"proto\":");
    push_json_str(out, protocol_name(violation.protocol));
    let port = has_ports.then_some(violation.src_port);
    push_endpoint(out, "src", violation.ipv6, violation.src_addr, port);
    let port = has_ports.then_some(violation.dest_port);
    push_endpoint(out, "dest", violation.ipv6, violation.dest_addr, port);
    if violation.vlan != 0 {
        out.extend_from_slice(b",\"vlan\":");
        out.extend_from_slice(numbers.format(violation.vlan).as_bytes());
    }
    out.extend_from_slice(b",\"src_zone\":");
    push_json_str(out, &src_zone.name);
    out.extend_from_slice(b",\"dest_zone\":");
    push_json_str(out, &dest_zone.name);
    if let Some(service) =
        policy.service_label(violation.verdict, violation.transport, violation.dest_port)
    {
        out.extend_from_slice(b",\"service\":");
        push_json_str(out, service);
    }
    out.extend_from_slice(b",\"rule\":");
    push_json_str(out, &rule.name);
    out.extend_from_slice(b",\"severity\":");
    push_json_str(out, rule.severity.as_str());
    if let Some(label) = &src_zone.criticality {
        out.extend_from_slice(b",\"src_criticality\":");
        push_json_str(out, label);
    }
    if let Some(label) = &dest_zone.criticality {
        out.extend_from_slice(b",\"dest_criticality\":");
        push_json_str(out, label);
    }
    out.extend_from_slice(b"}\n");
}

/// [`rfc3339_micros`] into `out`: the civil date from the day count (Howard
/// Hinnant's `civil_from_days`), then fixed-width digits. By hand rather
/// than through humantime's `Display` (which the test
/// `hand_written_timestamps_equal_humantime` holds it to): events are
/// written on the flow workers, and formatting went through `fmt` and a
/// `String` for each.
fn push_rfc3339_micros(out: &mut Vec<u8>, ts_ns: u64) {
    let micros = ts_ns / 1_000;
    let secs = micros / 1_000_000;
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    // Days since 0000-03-01; u64 nanoseconds end in 2554, so no era is
    // negative.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    let mut digits = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            text[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(0, 4, year);
    digits(5, 2, month);
    digits(8, 2, day);
    digits(11, 2, of_day / 3_600);
    digits(14, 2, of_day / 60 % 60);
    digits(17, 2, of_day % 60);
    digits(20, 6, micros % 1_000_000);
    out.extend_from_slice(&text);
}

/// `,"{side}_ip":"…"` and, when the protocol has ports, `,"{side}_port":…`.
fn push_endpoint(out: &mut Vec<u8>, side: &str, ipv6: bool, addr: u128, port: Option<u16>) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(side.as_bytes());
    out.extend_from_slice(b"_ip\":\"");
    push_ip(out, ipv6, addr);
    out.push(b'"');
    if let Some(port) = port {
        out.extend_from_slice(b",\"");
        out.extend_from_slice(side.as_bytes());
        out.extend_from_slice(b"_port\":");
        out.extend_from_slice(itoa::Buffer::new().format(port).as_bytes());
    }
}

/// A JSON string: as is between quotes when nothing in it needs escaping
/// (policy names almost never do), else escaped by serde_json.
fn push_json_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Serializing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Sixteen lowercase hex digits, as `{:016x}` writes them.
fn push_hex16(out: &mut Vec<u8>, value: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = [0u8; 16];
    for (i, digit) in text.iter_mut().enumerate() {
        *digit = DIGITS[((value >> (60 - 4 * i)) & 0xf) as usize];
    }
    out.extend_from_slice(&text);
}

/// An address as `Display` writes it: IPv4 dotted by hand, IPv6 (rare in
/// events, and with its zero compression) through `Display`.
fn push_ip(out: &mut Vec<u8>, ipv6: bool, addr: u128) {
    if ipv6 {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{}", Ipv6Addr::from(addr));
        return;
    }
    let mut numbers = itoa::Buffer::new();
    for (i, octet) in (addr as u32).to_be_bytes().into_iter().enumerate() {
        if i > 0 {
            out.push(b'.');
        }
        out.extend_from_slice(numbers.format(octet).as_bytes());
    }
}

/// The application fields of contract section 3, from a detection. Only
/// protocol header fields: AE titles, SOP class families, implementation
/// identifiers, HL7 MSH-3 to MSH-6, MSH-9, MSH-12, the TLS server name,
/// HTTP host and method. Never a payload byte beyond them.
pub mod app_fields {
    use serde::{Deserialize, Serialize};

    use crate::app::dicom::{DicomPdu, OperationClass};
    use crate::app::hl7::Hl7Message;
    use crate::app::{AppInfo, Detection};

    /// `dicom`.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Dicom {
        /// Called AE title, trimmed.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub called_ae: Option<String>,
        /// Calling AE title, trimmed.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub calling_ae: Option<String>,
        /// Operations proposed: `verification`, `storage`, `query`,
        /// `retrieve`, `worklist`, `mpps`, `storage-commitment`, `other`.
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        pub operations: Vec<String>,
        /// `accepted` or `rejected`, once the server answered.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub result: Option<String>,
        /// The requester's implementation class UID.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub implementation_class_uid: Option<String>,
        /// The requester's implementation version name.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub implementation_version: Option<String>,
    }

    fn operation_names(class: OperationClass) -> &'static [&'static str] {
        match class {
            OperationClass::Verification => &["verification"],
            OperationClass::Storage => &["storage"],
            OperationClass::Query => &["query"],
            OperationClass::Retrieve => &["retrieve"],
            OperationClass::Worklist => &["worklist"],
            OperationClass::Mpps => &["mpps"],
            OperationClass::StorageCommitment => &["storage-commitment"],
            OperationClass::Other => &["other"],
        }
    }

    impl Dicom {
        /// The fields of a DICOM detection.
        pub fn of(detection: &Detection) -> Option<Dicom> {
            let AppInfo::Dicom(info) = &detection.info else {
                return None;
            };
            let request = info.request();
            let mut operations: Vec<String> = Vec::new();
            if let Some(rq) = request {
                for context in &rq.contexts {
                    for name in operation_names(context.operation) {
                        if !operations.iter().any(|o| o == name) {
                            operations.push((*name).to_string());
                        }
                    }
                }
            }
            let result = match &info.server {
                Some(DicomPdu::AssociateAc(_)) => Some("accepted".to_string()),
                Some(DicomPdu::AssociateRj(_)) => Some("rejected".to_string()),
                _ => None,
            };
            Some(Dicom {
                called_ae: request.map(|rq| rq.called_ae.clone()),
                calling_ae: request.map(|rq| rq.calling_ae.clone()),
                operations,
                result,
                implementation_class_uid: request
                    .and_then(|rq| rq.implementation_class_uid.clone()),
                implementation_version: request
                    .and_then(|rq| rq.implementation_version_name.clone()),
            })
        }
    }

    /// `hl7`.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Hl7 {
        /// MSH-3.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub sending_app: Option<String>,
        /// MSH-4.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub sending_facility: Option<String>,
        /// MSH-5.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub receiving_app: Option<String>,
        /// MSH-6.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub receiving_facility: Option<String>,
        /// MSH-9, e.g. `ORM^O01`.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub message_type: Option<String>,
        /// MSH-12.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub version: Option<String>,
    }

    impl Hl7 {
        /// The fields of an HL7 detection: the initiator's first message.
        pub fn of(detection: &Detection) -> Option<Hl7> {
            let AppInfo::Hl7(info) = &detection.info else {
                return None;
            };
            let header = match info.client.as_ref().or(info.server.as_ref())? {
                Hl7Message::Message(header) => header,
                Hl7Message::CommitAck | Hl7Message::CommitNak => return None,
            };
            Some(Hl7 {
                sending_app: header.sending_application.clone(),
                sending_facility: header.sending_facility.clone(),
                receiving_app: header.receiving_application.clone(),
                receiving_facility: header.receiving_facility.clone(),
                message_type: header.message_type.clone(),
                version: header.version.clone(),
            })
        }
    }

    /// `tls`.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Tls {
        /// Server name (the outer one under ECH).
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub sni: Option<String>,
    }

    impl Tls {
        /// The fields of a TLS detection.
        pub fn of(detection: &Detection) -> Option<Tls> {
            let AppInfo::Tls(info) = &detection.info else {
                return None;
            };
            Some(Tls {
                sni: info.sni.clone(),
            })
        }
    }

    /// `http`.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Http {
        /// Host header.
        #[serde(skip_serializing_if = "Option::is_none", default)]
        pub host: Option<String>,
        /// Request method.
        pub method: String,
        /// A FHIR request (media type or path).
        pub fhir: bool,
    }

    impl Http {
        /// The fields of an HTTP detection.
        pub fn of(detection: &Detection) -> Option<Http> {
            let AppInfo::Http(info) = &detection.info else {
                return None;
            };
            Some(Http {
                host: info.host.clone(),
                method: info.method.as_str().to_string(),
                fhir: info.fhir.is_some(),
            })
        }
    }
}

/// An address of either family from its `u128` form.
pub fn ip(ipv6: bool, addr: u128) -> IpAddr {
    if ipv6 {
        IpAddr::V6(Ipv6Addr::from(addr))
    } else {
        IpAddr::V4(Ipv4Addr::from(addr as u32))
    }
}

/// RFC 3339 UTC with microseconds: finer stamps are truncated.
pub fn rfc3339_micros(ts_ns: u64) -> String {
    let mut text = Vec::with_capacity(27);
    push_rfc3339_micros(&mut text, ts_ns);
    // Digits, dashes, colons, a dot and letters: ASCII.
    String::from_utf8(text).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn hand_written_timestamps_equal_humantime() {
        let mut rng = fastrand::Rng::with_seed(5);
        let edges = [
            0,
            999,
            1_000,
            86_399_999_999_999,
            86_400_000_000_000,
            u64::MAX,
        ];
        let leap_days = (1972..2550u64)
            .step_by(4)
            .map(|year| (year - 1970) * 365 * 86_400_000_000_000);
        let samples = edges
            .into_iter()
            .chain(leap_days)
            .chain((0..200_000).map(|_| rng.u64(..)));
        for ts in samples {
            let mut text = Vec::new();
            push_rfc3339_micros(&mut text, ts);
            let time = UNIX_EPOCH + Duration::from_micros(ts / 1_000);
            let reference = humantime::format_rfc3339_micros(time).to_string();
            assert_eq!(String::from_utf8(text).unwrap(), reference, "{ts}");
        }
    }

    #[test]
    fn hand_written_events_equal_serde_json() {
        let text = r#"
            [policy]
            default_action = "alert"
            [services.web]
            tcp = [80, 443]
            [services.dns]
            udp = [53]
            [services.ping]
            icmp = true
            [zones.a]
            networks = ["10.0.0.0/8", "fd00::/16"]
            criticality = "life-critical \"quoted\" back\\slash tab\t nl\n \u0001 ümlaut \u007f"
            [zones.b-2]
            networks = ["192.168.0.0/16"]
            criticality = "clinical"
            [zones.c_3]
            networks = ["172.16.0.0/12"]
            [[rules]]
            name = "web-ok"
            from = ["a"]
            to = ["b-2"]
            services = ["web", "tcp/8000-8080"]
            action = "alert"
            severity = "low"
            [[rules]]
            name = "x"
            from = ["any"]
            to = ["c_3"]
            action = "alert"
            severity = "critical"
        "#;
        let (policy, _) =
            crate::policy::load_policy_str(text, std::path::Path::new("t.toml")).unwrap();
        let policy = CompiledPolicy::compile(&policy);
        let mut rng = fastrand::Rng::with_seed(11);
        let zones = [0, 1, 2, crate::classify::ZoneTable::UNKNOWN];
        let rules = [0, 1, Verdict::DEFAULT_RULE];
        let protocols: [(u8, Transport); 6] = [
            (6, Transport::Tcp),
            (17, Transport::Udp),
            (1, Transport::EchoRequest),
            (58, Transport::EchoReply),
            (47, Transport::Other),
            (250, Transport::Other),
        ];
        for _ in 0..20_000 {
            let ipv6 = rng.bool();
            let addr = |rng: &mut fastrand::Rng| {
                let bits = match rng.u8(0..3) {
                    0 => 0,
                    1 => rng.u128(..),
                    _ => 0xfd00_0000_0000_0000_0000_0000_0000_0001u128 << rng.u32(0..64),
                };
                if ipv6 { bits } else { bits & 0xffff_ffff }
            };
            let (protocol, transport) = protocols[rng.usize(..protocols.len())];
            let violation = Violation {
                packet_index: rng.u64(..),
                // Years 1970 to about 2262.
                ts_ns: rng.u64(..u64::MAX / 2),
                flow_id: rng.u64(..) >> rng.u32(0..64),
                ipv6,
                protocol,
                transport,
                src_addr: addr(&mut rng),
                src_port: rng.u16(..),
                dest_addr: addr(&mut rng),
                dest_port: [53, 80, 443, 8000, 8080, 8081, 0][rng.usize(..7)],
                vlan: if rng.bool() { 0 } else { rng.u16(..4096) },
                src_zone: zones[rng.usize(..zones.len())],
                dest_zone: zones[rng.usize(..zones.len())],
                verdict: Verdict {
                    rule: rules[rng.usize(..rules.len())],
                    rule_service: if rng.bool() {
                        Verdict::FIRST_NAMED
                    } else {
                        rng.u32(0..2)
                    },
                },
                app: None,
            };
            let (mut fast, mut serde) = (Vec::new(), Vec::new());
            write_json_line(&violation, &policy, &mut fast);
            write_serde_json_line(&violation, &policy, &mut serde);
            assert_eq!(
                String::from_utf8_lossy(&fast),
                String::from_utf8_lossy(&serde),
                "{violation:?}"
            );
        }
    }

    #[test]
    fn timestamps_are_truncated_to_microseconds() {
        assert_eq!(rfc3339_micros(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339_micros(1_795_852_801_000_123_999),
            "2026-11-28T08:00:01.000123Z"
        );
    }
}
