//! Incident records in the syslog formats (contract section 7): RFC 5424
//! with MSGID `incident` and the counts and first/last seen as structured
//! data; CEF and LEEF with `cnt` (flows), `start` and `end` (first and last
//! seen, epoch milliseconds); JSON with the record as MSG.

use std::fmt::Write as _;

use super::format::{
    Format, Formatter, cef_extensions, cef_head, leef_attributes, leef_head, scale_severity,
};
use crate::event::IncidentRecord;

/// The record's fields as (JSON name, camelCase name, text), in its order.
fn fields(record: &IncidentRecord) -> Vec<(&'static str, &'static str, String)> {
    let mut out = vec![
        ("timestamp", "timestamp", record.timestamp.to_string()),
        ("event_type", "eventType", record.event_type.to_string()),
        ("incident_id", "incidentId", record.incident_id.to_string()),
        ("state", "state", record.state.as_str().to_owned()),
        ("kind", "kind", record.kind.as_str().to_owned()),
        ("rule", "rule", record.rule.clone()),
        ("severity", "severity", record.severity.clone()),
        ("src_ip", "src", record.src_ip.to_string()),
    ];
    let mut put = |snake: &'static str, camel: &'static str, value: Option<String>| {
        if let Some(value) = value {
            out.push((snake, camel, value));
        }
    };
    put("src_zone", "srcZone", record.src_zone.clone());
    put("dest_zone", "dstZone", record.dest_zone.clone());
    put("service", "service", record.service.clone());
    put("dest_ip", "dst", record.dest_ip.map(|a| a.to_string()));
    put("proto", "proto", record.proto.clone());
    put(
        "dest_port",
        "dstPort",
        record.dest_port.map(|p| p.to_string()),
    );
    put(
        "src_criticality",
        "srcCriticality",
        record.src_criticality.clone(),
    );
    put(
        "dest_criticality",
        "dstCriticality",
        record.dest_criticality.clone(),
    );
    put(
        "first_seen",
        "firstSeen",
        Some(record.first_seen.to_string()),
    );
    put("last_seen", "lastSeen", Some(record.last_seen.to_string()));
    put("flows", "flows", Some(record.flows.to_string()));
    put(
        "dest_count",
        "destCount",
        Some(record.dest_count.to_string()),
    );
    put(
        "dest_count_capped",
        "destCountCapped",
        record.dest_count_capped.then(|| "true".to_owned()),
    );
    let sample: Vec<String> = record.dest_sample.iter().map(ToString::to_string).collect();
    put(
        "dest_sample",
        "destSample",
        Some(sample.join(",")).filter(|s| !s.is_empty()),
    );
    let ports: Vec<String> = record.dest_ports.iter().map(ToString::to_string).collect();
    put(
        "dest_ports",
        "destPorts",
        Some(ports.join(",")).filter(|s| !s.is_empty()),
    );
    if let Some(device) = &record.src_device {
        put(
            "src_device_vendor",
            "srcDeviceVendor",
            device.vendor.clone(),
        );
        put("src_device_class", "srcDeviceClass", device.class.clone());
        put(
            "src_device_hostname",
            "srcDeviceHostname",
            device.hostname.clone(),
        );
    }
    put("exception", "exception", record.exception.clone());
    out
}

/// The human line: `sweep open: 10.10.0.32 -> 32 hosts tcp/445, 32 flows`.
fn summary(record: &IncidentRecord, out: &mut String) {
    let _ = write!(
        out,
        "{} {} {}: {} -> ",
        record.kind.as_str(),
        record.rule,
        record.state.as_str(),
        record.src_ip
    );
    match (&record.dest_ip, &record.dest_zone) {
        (Some(host), _) => {
            let _ = write!(out, "{host}, {} ports", record.dest_ports.len());
        }
        (None, Some(zone)) => {
            let _ = write!(out, "{zone}, {} hosts", record.dest_count);
        }
        (None, None) => {
            let _ = write!(out, "{} hosts", record.dest_count);
        }
    }
    if let Some(proto) = &record.proto {
        let _ = write!(out, " {proto}");
        if let Some(port) = record.dest_port {
            let _ = write!(out, "/{port}");
        }
    }
    let _ = write!(out, ", {} flows", record.flows);
}

impl Formatter {
    /// Writes one message for an incident record, without framing.
    pub fn write_incident(&self, record: &IncidentRecord, out: &mut String) {
        self.head("incident", &record.severity, record.timestamp, out);
        match self.format {
            Format::Rfc5424 => {
                let params = fields(record)
                    .into_iter()
                    .map(|(name, _, value)| (name, value));
                self.sd_element(params, out);
                out.push(' ');
                summary(record, out);
            }
            Format::Cef => {
                out.push_str("- ");
                cef(record, out);
            }
            Format::Leef => {
                out.push_str("- ");
                leef(record, out);
            }
            Format::Json => {
                out.push_str("- ");
                out.push_str(&record.to_json());
            }
        }
    }
}

/// The pairs CEF and LEEF share after their own leading ones: counts and
/// times (`cnt`, `start`, `end`) and the record's other fields by their
/// camelCase names.
fn pairs(record: &IncidentRecord) -> Vec<(&'static str, String)> {
    let mut pairs = vec![
        ("cnt", record.flows.to_string()),
        ("start", record.first_seen.epoch_millis().to_string()),
        ("end", record.last_seen.epoch_millis().to_string()),
    ];
    let skip = [
        "timestamp",
        "eventType",
        "rule",
        "severity",
        "firstSeen",
        "lastSeen",
        "flows",
    ];
    pairs.extend(
        fields(record)
            .into_iter()
            .filter(|(_, camel, _)| !skip.contains(camel))
            .map(|(_, camel, value)| (camel, value)),
    );
    pairs
}

fn cef(record: &IncidentRecord, out: &mut String) {
    cef_head("incident", &record.rule, &record.severity, out);
    let mut all = vec![("rt", record.timestamp.epoch_millis().to_string())];
    all.extend(pairs(record));
    cef_extensions(&all, out);
}

fn leef(record: &IncidentRecord, out: &mut String) {
    let mut all = leef_head("incident", record.timestamp, out);
    all.push(("sev", scale_severity(&record.severity).to_string()));
    all.push(("rule", record.rule.clone()));
    all.extend(pairs(record));
    leef_attributes(&all, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{HexId, IncidentKind, IncidentState, Timestamp};

    fn record() -> IncidentRecord {
        IncidentRecord {
            timestamp: Timestamp::parse("2026-11-28T10:00:00.123456Z").unwrap(),
            event_type: "incident".into(),
            incident_id: HexId(0xabcd),
            state: IncidentState::Open,
            kind: IncidentKind::Sweep,
            rule: "sweep".into(),
            severity: "high".into(),
            src_ip: "10.10.0.32".parse().unwrap(),
            src_zone: None,
            dest_zone: None,
            service: None,
            dest_ip: None,
            proto: Some("tcp".into()),
            dest_port: Some(445),
            src_criticality: None,
            dest_criticality: None,
            first_seen: Timestamp::parse("2026-11-28T09:59:00Z").unwrap(),
            last_seen: Timestamp::parse("2026-11-28T10:00:00Z").unwrap(),
            flows: 32,
            dest_count: 32,
            dest_count_capped: false,
            dest_sample: vec!["10.10.1.1".parse().unwrap(), "10.10.1.2".parse().unwrap()],
            dest_ports: vec![445],
            src_device: None,
            exception: None,
        }
    }

    fn formatter(format: Format) -> Formatter {
        Formatter {
            format,
            facility: 16,
            hostname: "sensor".into(),
            sd_id: "segwatch@32473".into(),
            procid: 7,
        }
    }

    #[test]
    fn incidents_in_every_format() {
        let mut out = String::new();
        formatter(Format::Rfc5424).write_incident(&record(), &mut out);
        assert!(
            out.starts_with(
                "<131>1 2026-11-28T10:00:00.123456Z sensor segwatch 7 incident [segwatch@32473 \
                 timestamp=\"2026-11-28T10:00:00.123456Z\" event_type=\"incident\" \
                 incident_id=\"000000000000abcd\" state=\"open\" kind=\"sweep\""
            ),
            "{out}"
        );
        assert!(
            out.contains(" flows=\"32\" dest_count=\"32\" dest_sample=\"10.10.1.1,10.10.1.2\""),
            "{out}"
        );
        assert!(
            out.ends_with("] sweep sweep open: 10.10.0.32 -> 32 hosts tcp/445, 32 flows"),
            "{out}"
        );
        let mut cef = String::new();
        formatter(Format::Cef).write_incident(&record(), &mut cef);
        assert!(cef.contains("- CEF:0|segwatch|segwatch|"), "{cef}");
        assert!(cef.contains("|sweep|sweep incident|8|rt=1795860000123 cnt=32 start=1795859940000 end=1795860000000 "), "{cef}");
        let mut leef = String::new();
        formatter(Format::Leef).write_incident(&record(), &mut leef);
        assert!(leef.contains("|incident|devTime="), "{leef}");
        assert!(
            leef.contains("\tcnt=32\tstart=1795859940000\tend=1795860000000\t"),
            "{leef}"
        );
        let mut json = String::new();
        formatter(Format::Json).write_incident(&record(), &mut json);
        let (_, body) = json.split_once(" incident - ").unwrap();
        assert_eq!(body, record().to_json());
    }
}
