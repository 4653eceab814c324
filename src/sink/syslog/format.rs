//! The syslog message formats of contract section 5: RFC 5424 with
//! structured data, CEF, LEEF 2.0 and JSON.
//!
//! Every format starts with the RFC 5424 header
//! `<PRI>1 TIMESTAMP HOSTNAME segwatch PROCID violation`; CEF, LEEF and JSON
//! put their text in MSG after a NILVALUE structured data (`-`), which is
//! how SIEM syslog inputs take them. Only the event's header fields go out:
//! addresses, ports, zones, rule, service, VLAN, flow id.

use std::fmt::Write as _;

use crate::event::{Record, Timestamp, ViolationEvent};

/// The product version in CEF and LEEF headers.
pub(super) const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A message format (read from a name by its `FromStr`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub enum Format {
    /// RFC 5424 with the event as structured data (the default).
    #[default]
    Rfc5424,
    /// ArcSight Common Event Format.
    Cef,
    /// IBM QRadar Log Event Extended Format 2.0.
    Leef,
    /// The event's JSON object as MSG.
    Json,
}

/// How one feed writes its messages.
#[derive(Clone, Debug)]
pub struct Formatter {
    /// The format.
    pub format: Format,
    /// Facility number, 0-23.
    pub facility: u8,
    /// The HOSTNAME field, already made valid.
    pub hostname: String,
    /// The SD-ID of the structured data element.
    pub sd_id: String,
    /// The PROCID field.
    pub procid: u32,
}

/// RFC 5424 syslog severity for an event severity.
pub(super) fn syslog_severity(severity: &str) -> u8 {
    match severity {
        "critical" => 2,
        "high" => 3,
        "medium" => 4,
        _ => 5,
    }
}

/// CEF and LEEF severity (0-10) for an event severity.
pub(super) fn scale_severity(severity: &str) -> u8 {
    match severity {
        "critical" => 10,
        "high" => 8,
        "medium" => 5,
        _ => 3,
    }
}

/// A valid RFC 5424 HOSTNAME: printable US-ASCII without spaces, at most 255
/// characters, `-` when nothing is left.
pub fn header_token(text: &str, max: usize) -> String {
    let token: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if token.is_empty() { "-".into() } else { token }
}

impl Formatter {
    /// Writes one message for `record`, without framing, into `out`.
    pub fn write_record(&self, record: &Record, out: &mut String) {
        match record {
            Record::Violation(event) => self.write(event, out),
            Record::Incident(incident) => self.write_incident(incident, out),
        }
    }

    /// Writes one message for `event`, without framing, into `out`.
    pub fn write(&self, event: &ViolationEvent<'_>, out: &mut String) {
        self.head("violation", &event.severity, event.timestamp, out);
        match self.format {
            Format::Rfc5424 => {
                self.structured_data(event, out);
                out.push(' ');
                summary(event, out);
            }
            Format::Cef => {
                out.push_str("- ");
                cef(event, out);
            }
            Format::Leef => {
                out.push_str("- ");
                leef(event, out);
            }
            Format::Json => {
                out.push_str("- ");
                out.push_str(&event.to_json());
            }
        }
    }

    /// `[SD-ID name="value" ...]` with the event's fields under their JSON
    /// names, in the event's order; absent fields are left out.
    fn structured_data(&self, event: &ViolationEvent<'_>, out: &mut String) {
        let application = app_fields(event)
            .into_iter()
            .map(|(snake, _, value)| (snake, value));
        self.sd_element(fields(event).into_iter().chain(application), out);
    }

    /// The RFC 5424 header up to MSG's structured data: PRI from the
    /// facility and `severity`, the time, host, app and MSGID `kind`.
    pub(super) fn head(&self, kind: &str, severity: &str, timestamp: Timestamp, out: &mut String) {
        let pri = u16::from(self.facility) * 8 + u16::from(syslog_severity(severity));
        let _ = write!(
            out,
            "<{pri}>1 {timestamp} {} segwatch {} {kind} ",
            self.hostname, self.procid
        );
    }

    /// `[SD-ID name="value" ...]` of `params`, values escaped.
    pub(super) fn sd_element<'p>(
        &self,
        params: impl IntoIterator<Item = (&'p str, String)>,
        out: &mut String,
    ) {
        out.push('[');
        out.push_str(&self.sd_id);
        for (name, value) in params {
            let _ = write!(out, " {name}=\"");
            // RFC 5424 section 6.3.3: escape '"', '\' and ']'.
            for c in value.chars() {
                if matches!(c, '"' | '\\' | ']') {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        out.push(']');
    }
}

/// The event's fields as (JSON name, text), in the event's order.
fn fields(event: &ViolationEvent<'_>) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("timestamp", event.timestamp.to_string()),
        ("event_type", event.event_type.to_string()),
        ("flow_id", event.flow_id.to_string()),
        ("proto", event.proto.to_string()),
        ("src_ip", event.src_ip.to_string()),
    ];
    if let Some(port) = event.src_port {
        fields.push(("src_port", port.to_string()));
    }
    fields.push(("dest_ip", event.dest_ip.to_string()));
    if let Some(port) = event.dest_port {
        fields.push(("dest_port", port.to_string()));
    }
    if let Some(vlan) = event.vlan {
        fields.push(("vlan", vlan.to_string()));
    }
    fields.push(("src_zone", event.src_zone.to_string()));
    fields.push(("dest_zone", event.dest_zone.to_string()));
    if let Some(service) = &event.service {
        fields.push(("service", service.to_string()));
    }
    fields.push(("rule", event.rule.to_string()));
    fields.push(("severity", event.severity.to_string()));
    if let Some(c) = &event.src_criticality {
        fields.push(("src_criticality", c.to_string()));
    }
    if let Some(c) = &event.dest_criticality {
        fields.push(("dest_criticality", c.to_string()));
    }
    fields
}

/// The application fields as (snake_case name, camelCase name, text): the
/// structured data uses the first (`dicom_called_ae`), CEF and LEEF the
/// second (`dicomCalledAE`).
fn app_fields(event: &ViolationEvent<'_>) -> Vec<(&'static str, &'static str, String)> {
    let mut out = Vec::new();
    let mut put = |snake: &'static str, camel: &'static str, value: Option<&str>| {
        if let Some(value) = value {
            out.push((snake, camel, value.to_string()));
        }
    };
    put("app", "app", event.app.as_deref());
    if let Some(d) = &event.dicom {
        put("dicom_called_ae", "dicomCalledAE", d.called_ae.as_deref());
        put(
            "dicom_calling_ae",
            "dicomCallingAE",
            d.calling_ae.as_deref(),
        );
        let operations = d.operations.join(",");
        put(
            "dicom_operations",
            "dicomOperations",
            (!operations.is_empty()).then_some(operations.as_str()),
        );
        put("dicom_result", "dicomResult", d.result.as_deref());
        put(
            "dicom_implementation_class_uid",
            "dicomImplementationClassUID",
            d.implementation_class_uid.as_deref(),
        );
        put(
            "dicom_implementation_version",
            "dicomImplementationVersion",
            d.implementation_version.as_deref(),
        );
    }
    if let Some(h) = &event.hl7 {
        put("hl7_sending_app", "hl7SendingApp", h.sending_app.as_deref());
        put(
            "hl7_sending_facility",
            "hl7SendingFacility",
            h.sending_facility.as_deref(),
        );
        put(
            "hl7_receiving_app",
            "hl7ReceivingApp",
            h.receiving_app.as_deref(),
        );
        put(
            "hl7_receiving_facility",
            "hl7ReceivingFacility",
            h.receiving_facility.as_deref(),
        );
        put(
            "hl7_message_type",
            "hl7MessageType",
            h.message_type.as_deref(),
        );
        put("hl7_version", "hl7Version", h.version.as_deref());
    }
    if let Some(t) = &event.tls {
        put("tls_sni", "tlsSni", t.sni.as_deref());
    }
    if let Some(h) = &event.http {
        put("http_host", "httpHost", h.host.as_deref());
        put("http_method", "httpMethod", Some(h.method.as_str()));
        put(
            "http_fhir",
            "httpFhir",
            Some(if h.fhir { "true" } else { "false" }),
        );
    }
    // Contract sections 7 and 8: after the application fields.
    put("exception", "exception", event.exception.as_deref());
    let incident = event.incident_id.map(|id| id.to_string());
    put("incident_id", "incidentId", incident.as_deref());
    out
}

/// The human line: `pumps -> internet tcp/443 violates medical-device-internet`.
fn summary(event: &ViolationEvent<'_>, out: &mut String) {
    let _ = write!(
        out,
        "{} -> {} {}",
        event.src_zone, event.dest_zone, event.proto
    );
    if let Some(port) = event.dest_port {
        let _ = write!(out, "/{port}");
    }
    let _ = write!(out, " violates {}", event.rule);
}

/// CEF header fields escape `\` and `|`.
pub(super) fn cef_header(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' | '|' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' => out.push(' '),
            _ => out.push(c),
        }
    }
}

/// CEF extension values escape `\` and `=`, and write line breaks as `\n`.
pub(super) fn cef_value(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
}

/// Milliseconds since the epoch of an RFC 3339 timestamp the event carries.
/// CEF's header up to the extensions, for a record of `kind` (`violation`,
/// `incident`) by `rule` at `severity`.
pub(super) fn cef_head(kind: &str, rule: &str, severity: &str, out: &mut String) {
    out.push_str("CEF:0|segwatch|segwatch|");
    cef_header(VERSION, out);
    out.push('|');
    cef_header(rule, out);
    out.push('|');
    cef_header(rule, out);
    let _ = write!(out, " {kind}|{}|", scale_severity(severity));
}

/// CEF extensions: `key=value`, space-separated, values escaped.
pub(super) fn cef_extensions(pairs: &[(&str, String)], out: &mut String) {
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(key);
        out.push('=');
        cef_value(value, out);
    }
}

fn cef(event: &ViolationEvent<'_>, out: &mut String) {
    cef_head("violation", &event.rule, &event.severity, out);
    let mut pairs: Vec<(&str, String)> = vec![
        ("rt", event.timestamp.epoch_millis().to_string()),
        ("src", event.src_ip.to_string()),
    ];
    if let Some(port) = event.src_port {
        pairs.push(("spt", port.to_string()));
    }
    pairs.push(("dst", event.dest_ip.to_string()));
    if let Some(port) = event.dest_port {
        pairs.push(("dpt", port.to_string()));
    }
    pairs.push(("proto", event.proto.to_string()));
    pairs.push(("externalId", event.flow_id.to_string()));
    pairs.push(("cs1Label", "srcZone".into()));
    pairs.push(("cs1", event.src_zone.to_string()));
    pairs.push(("cs2Label", "destZone".into()));
    pairs.push(("cs2", event.dest_zone.to_string()));
    if let Some(service) = &event.service {
        pairs.push(("cs3Label", "service".into()));
        pairs.push(("cs3", service.to_string()));
    }
    if let Some(vlan) = event.vlan {
        pairs.push(("cn1Label", "vlan".into()));
        pairs.push(("cn1", vlan.to_string()));
    }
    pairs.extend(
        app_fields(event)
            .into_iter()
            .map(|(_, camel, v)| (camel, v)),
    );
    cef_extensions(&pairs, out);
}

/// LEEF attributes are tab-separated: a value loses tabs and line breaks
/// (policy names cannot hold them anyway, this only keeps the frame whole).
pub(super) fn leef_value(text: &str, out: &mut String) {
    out.extend(text.chars().map(|c| {
        if matches!(c, '\t' | '\r' | '\n') {
            ' '
        } else {
            c
        }
    }));
}

/// LEEF's `devTimeFormat` (Java `SimpleDateFormat`) for `devTime`.
pub(super) const LEEF_TIME_FORMAT: &str = "yyyy-MM-dd'T'HH:mm:ss.SSSX";

/// LEEF's header for a record of `kind`, and its leading `devTime` and
/// `devTimeFormat` attributes for `timestamp`.
pub(super) fn leef_head(
    kind: &str,
    timestamp: Timestamp,
    out: &mut String,
) -> Vec<(&'static str, String)> {
    out.push_str("LEEF:2.0|segwatch|segwatch|");
    out.push_str(VERSION);
    out.push('|');
    out.push_str(kind);
    out.push('|');
    // Milliseconds: SimpleDateFormat has no finer field.
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(timestamp.epoch_millis());
    vec![
        (
            "devTime",
            humantime::format_rfc3339_millis(time).to_string(),
        ),
        ("devTimeFormat", LEEF_TIME_FORMAT.into()),
    ]
}

/// LEEF attributes: `key=value`, tab-separated, values without tabs.
pub(super) fn leef_attributes(pairs: &[(&str, String)], out: &mut String) {
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('\t');
        }
        out.push_str(key);
        out.push('=');
        leef_value(value, out);
    }
}

fn leef(event: &ViolationEvent<'_>, out: &mut String) {
    let mut pairs = leef_head("violation", event.timestamp, out);
    pairs.push(("src", event.src_ip.to_string()));
    if let Some(port) = event.src_port {
        pairs.push(("srcPort", port.to_string()));
    }
    pairs.push(("dst", event.dest_ip.to_string()));
    if let Some(port) = event.dest_port {
        pairs.push(("dstPort", port.to_string()));
    }
    pairs.push(("proto", event.proto.to_string()));
    pairs.push(("sev", scale_severity(&event.severity).to_string()));
    pairs.push(("srcZone", event.src_zone.to_string()));
    pairs.push(("dstZone", event.dest_zone.to_string()));
    pairs.push(("rule", event.rule.to_string()));
    if let Some(service) = &event.service {
        pairs.push(("service", service.to_string()));
    }
    if let Some(vlan) = event.vlan {
        pairs.push(("vlan", vlan.to_string()));
    }
    pairs.push(("flowId", event.flow_id.to_string()));
    pairs.extend(
        app_fields(event)
            .into_iter()
            .map(|(_, camel, v)| (camel, v)),
    );
    leef_attributes(&pairs, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn event() -> ViolationEvent<'static> {
        ViolationEvent {
            timestamp: crate::event::Timestamp::parse("2026-11-28T10:00:00.123456Z").unwrap(),
            event_type: Cow::Borrowed("violation"),
            flow_id: crate::event::HexId(0xdead_beef),
            proto: Cow::Borrowed("tcp"),
            src_ip: "10.20.1.5".parse().unwrap(),
            src_port: Some(50000),
            dest_ip: "203.0.113.9".parse().unwrap(),
            dest_port: Some(443),
            vlan: Some(20),
            src_zone: Cow::Borrowed("pumps"),
            dest_zone: Cow::Borrowed("internet"),
            service: Some(Cow::Borrowed("https")),
            rule: Cow::Borrowed("medical-device-internet"),
            severity: Cow::Borrowed("critical"),
            src_criticality: Some(Cow::Borrowed("life-critical")),
            dest_criticality: None,
            app: None,
            dicom: None,
            hl7: None,
            tls: None,
            http: None,
            tunnel: None,
            exception: None,
            incident_id: None,
        }
    }

    fn formatter(format: Format) -> Formatter {
        Formatter {
            format,
            facility: 16,
            hostname: "sensor-1".into(),
            sd_id: "segwatch@32473".into(),
            procid: 42,
        }
    }

    fn line(format: Format, event: &ViolationEvent<'_>) -> String {
        let mut out = String::new();
        formatter(format).write(event, &mut out);
        out
    }

    #[test]
    fn rfc5424_carries_every_field_as_structured_data_and_a_human_line() {
        assert_eq!(
            line(Format::Rfc5424, &event()),
            "<130>1 2026-11-28T10:00:00.123456Z sensor-1 segwatch 42 violation \
             [segwatch@32473 timestamp=\"2026-11-28T10:00:00.123456Z\" event_type=\"violation\" \
             flow_id=\"00000000deadbeef\" proto=\"tcp\" src_ip=\"10.20.1.5\" src_port=\"50000\" \
             dest_ip=\"203.0.113.9\" dest_port=\"443\" vlan=\"20\" src_zone=\"pumps\" \
             dest_zone=\"internet\" service=\"https\" rule=\"medical-device-internet\" \
             severity=\"critical\" src_criticality=\"life-critical\"] \
             pumps -> internet tcp/443 violates medical-device-internet"
        );
    }

    #[test]
    fn pri_follows_facility_and_severity() {
        let mut e = event();
        for (severity, pri) in [
            ("critical", 130),
            ("high", 131),
            ("medium", 132),
            ("low", 133),
        ] {
            e.severity = Cow::Borrowed(severity);
            assert!(line(Format::Json, &e).starts_with(&format!("<{pri}>1 ")));
        }
    }

    #[test]
    fn structured_data_values_are_escaped() {
        let mut e = event();
        e.rule = Cow::Borrowed("a\"b]c\\d");
        let text = line(Format::Rfc5424, &e);
        assert!(text.contains(r#"rule="a\"b\]c\\d""#), "{text}");
    }

    #[test]
    fn cef_has_the_contract_header_and_extensions() {
        assert_eq!(
            line(Format::Cef, &event()),
            format!(
                "<130>1 2026-11-28T10:00:00.123456Z sensor-1 segwatch 42 violation - \
                 CEF:0|segwatch|segwatch|{VERSION}|medical-device-internet|\
                 medical-device-internet violation|10|rt=1795860000123 src=10.20.1.5 spt=50000 \
                 dst=203.0.113.9 dpt=443 proto=tcp externalId=00000000deadbeef \
                 cs1Label=srcZone cs1=pumps cs2Label=destZone cs2=internet \
                 cs3Label=service cs3=https cn1Label=vlan cn1=20"
            )
        );
    }

    #[test]
    fn cef_escapes_header_pipes_and_extension_equals() {
        let mut e = event();
        e.rule = Cow::Borrowed("a|b");
        e.src_zone = Cow::Borrowed("x=y");
        let text = line(Format::Cef, &e);
        assert!(text.contains(r"|a\|b|a\|b violation|"), "{text}");
        assert!(text.contains(r"cs1=x\=y "), "{text}");
    }

    #[test]
    fn leef_is_tab_separated_with_the_contract_keys() {
        let text = line(Format::Leef, &event());
        let (header, attributes) = text.split_once("LEEF:2.0|").unwrap();
        assert!(header.ends_with("violation - "));
        assert!(attributes.starts_with(&format!("segwatch|segwatch|{VERSION}|violation|devTime=")));
        let pairs: Vec<&str> = attributes
            .split_once("|violation|")
            .unwrap()
            .1
            .split('\t')
            .collect();
        assert_eq!(
            pairs,
            [
                "devTime=2026-11-28T10:00:00.123Z",
                "devTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSSX",
                "src=10.20.1.5",
                "srcPort=50000",
                "dst=203.0.113.9",
                "dstPort=443",
                "proto=tcp",
                "sev=10",
                "srcZone=pumps",
                "dstZone=internet",
                "rule=medical-device-internet",
                "service=https",
                "vlan=20",
                "flowId=00000000deadbeef",
            ]
        );
    }

    #[test]
    fn json_message_is_the_event_object() {
        let text = line(Format::Json, &event());
        let (_, json) = text.split_once(" violation - ").unwrap();
        let back: ViolationEvent<'_> = serde_json::from_str(json).unwrap();
        assert_eq!(back, event());
    }

    #[test]
    fn portless_events_leave_ports_out_everywhere() {
        let mut e = event();
        e.proto = Cow::Borrowed("icmp");
        e.src_port = None;
        e.dest_port = None;
        e.service = None;
        e.vlan = None;
        let text = line(Format::Rfc5424, &e);
        assert!(!text.contains("port="), "{text}");
        assert!(text.ends_with("pumps -> internet icmp violates medical-device-internet"));
        let text = line(Format::Cef, &e);
        assert!(!text.contains("spt=") && !text.contains("cs3") && !text.contains("cn1"));
        let text = line(Format::Leef, &e);
        assert!(!text.contains("Port=") && !text.contains("vlan="));
    }

    #[test]
    fn application_fields_reach_every_format() {
        let mut e = event();
        e.app = Some(Cow::Borrowed("dicom"));
        e.dicom = Some(crate::event::app_fields::Dicom {
            called_ae: Some("PACS1".into()),
            calling_ae: Some("CT_ROOM2".into()),
            operations: vec!["storage".into(), "verification".into()],
            result: Some("accepted".into()),
            implementation_class_uid: Some("1.2.3".into()),
            implementation_version: None,
        });
        let sd = line(Format::Rfc5424, &e);
        assert!(
            sd.contains(r#"app="dicom" dicom_called_ae="PACS1" dicom_calling_ae="CT_ROOM2" dicom_operations="storage,verification" dicom_result="accepted" dicom_implementation_class_uid="1.2.3"]"#),
            "{sd}"
        );
        let cef = line(Format::Cef, &e);
        assert!(cef.ends_with(" app=dicom dicomCalledAE=PACS1 dicomCallingAE=CT_ROOM2 dicomOperations=storage,verification dicomResult=accepted dicomImplementationClassUID=1.2.3"), "{cef}");
        let leef = line(Format::Leef, &e);
        assert!(leef.ends_with("\tapp=dicom\tdicomCalledAE=PACS1\tdicomCallingAE=CT_ROOM2\tdicomOperations=storage,verification\tdicomResult=accepted\tdicomImplementationClassUID=1.2.3"), "{leef}");
        let json = line(Format::Json, &e);
        assert!(
            json.contains(r#""app":"dicom","dicom":{"called_ae":"PACS1""#),
            "{json}"
        );
    }

    #[test]
    fn header_tokens_are_printable_ascii_without_spaces() {
        assert_eq!(header_token("ward 3 sensor", 255), "ward3sensor");
        assert_eq!(header_token("", 255), "-");
        assert_eq!(header_token("äö", 255), "-");
        assert_eq!(header_token(&"a".repeat(300), 255).len(), 255);
    }
}
