//! Incident records (contract section 7): the one definition of their
//! fields and their order, which replay's JSON lines, the events file and
//! every syslog format are written from.

use std::borrow::Cow;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{HexId, Timestamp, ViolationEvent};

/// `open`, `update` or `close`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentState {
    /// Its first record, right after the event that opened it.
    Open,
    /// At most one per update interval.
    Update,
    /// Its last record, with the final counts.
    Close,
}

impl IncidentState {
    /// The name in records and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Update => "update",
            IncidentState::Close => "close",
        }
    }
}

/// `violation`, `sweep` or `scan`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentKind {
    /// Violations of one key (rule, src_ip, dest_zone, service).
    Violation,
    /// One initiator reaching many hosts on one protocol and port.
    Sweep,
    /// One initiator reaching many protocol/port pairs of one host.
    Scan,
}

impl IncidentKind {
    /// All kinds.
    pub const ALL: [IncidentKind; 3] = [
        IncidentKind::Violation,
        IncidentKind::Sweep,
        IncidentKind::Scan,
    ];

    /// The name in records and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentKind::Violation => "violation",
            IncidentKind::Sweep => "sweep",
            IncidentKind::Scan => "scan",
        }
    }
}

/// What the inventory knows of the initiator from the frames before the
/// record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceDevice {
    /// Vendor from the MAC's OUI.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub vendor: Option<String>,
    /// Inferred device class.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub class: Option<String>,
    /// DHCP hostname.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub hostname: Option<String>,
}

impl SourceDevice {
    /// True when it says nothing.
    pub fn is_empty(&self) -> bool {
        self.vendor.is_none() && self.class.is_none() && self.hostname.is_none()
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// The contract's incident record, field for field and in its order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentRecord {
    /// Capture time of the packet that produced the record.
    pub timestamp: Timestamp,
    /// Always `incident`.
    pub event_type: Cow<'static, str>,
    /// The incident's id.
    pub incident_id: HexId,
    /// `open`, `update` or `close`.
    pub state: IncidentState,
    /// `violation`, `sweep` or `scan`.
    pub kind: IncidentKind,
    /// The violations' rule, or `sweep` or `scan`.
    pub rule: String,
    /// The highest severity among what joined so far.
    pub severity: String,
    /// The initiator.
    pub src_ip: IpAddr,
    /// Violation incidents: the initiator's zone.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub src_zone: Option<String>,
    /// Violation incidents: the responders' zone.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dest_zone: Option<String>,
    /// Violation incidents: the service, when the key has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub service: Option<String>,
    /// Scans: the host scanned.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dest_ip: Option<IpAddr>,
    /// Sweeps: the protocol.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub proto: Option<String>,
    /// Sweeps: the port; absent for ICMP echo and protocols without ports.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dest_port: Option<u16>,
    /// The initiator zone's criticality label, when set.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub src_criticality: Option<String>,
    /// The responder zone's criticality label, when set (violations and
    /// scans: one responder zone).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dest_criticality: Option<String>,
    /// First packet of the first flow joined.
    pub first_seen: Timestamp,
    /// First packet of the latest flow joined.
    pub last_seen: Timestamp,
    /// Flows joined so far.
    pub flows: u64,
    /// Distinct destination addresses so far (exact up to 65,536).
    pub dest_count: u64,
    /// True once `dest_count` stopped at 65,536.
    #[serde(skip_serializing_if = "is_false", default)]
    pub dest_count_capped: bool,
    /// Up to 16 destination addresses, in the order first seen.
    pub dest_sample: Vec<IpAddr>,
    /// Up to 16 distinct destination ports, in the order first seen;
    /// absent when no flow had ports.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub dest_ports: Vec<u16>,
    /// The initiator's device, when the inventory knows it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub src_device: Option<SourceDevice>,
    /// The exception that excepts it (sweeps and scans; contract section 8).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exception: Option<String>,
}

impl IncidentRecord {
    /// The record as one line of JSON, without the newline.
    pub fn to_json(&self) -> String {
        let mut line = Vec::with_capacity(512);
        self.write_json_line(&mut line);
        line.pop();
        // The writer writes UTF-8 only: the record's strings and ASCII.
        String::from_utf8(line).unwrap_or_default()
    }

    /// Appends the record as one line of JSON, with its newline, to `out`:
    /// byte for byte what serde_json writes (the test
    /// `incident_records_are_written_as_serde_json_writes_them` holds the
    /// two together).
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        super::fast_json::write_incident(self, out);
    }

    /// [`IncidentRecord::write_json_line`] through serde_json.
    #[cfg(test)]
    pub(super) fn write_serde_json_line(&self, out: &mut Vec<u8>) {
        // Serializing strings and numbers into a Vec cannot fail.
        if serde_json::to_writer(&mut *out, self).is_ok() {
            out.push(b'\n');
        }
    }
}

/// What flows to the outputs: violation events and incident records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A violation event.
    Violation(Box<ViolationEvent<'static>>),
    /// An incident record.
    Incident(Box<IncidentRecord>),
}

impl Record {
    /// The record as one line of JSON, without the newline.
    pub fn to_json(&self) -> String {
        match self {
            Record::Violation(event) => event.to_json(),
            Record::Incident(record) => record.to_json(),
        }
    }

    /// True for an excepted violation or incident.
    pub fn is_excepted(&self) -> bool {
        match self {
            Record::Violation(event) => event.exception.is_some(),
            Record::Incident(record) => record.exception.is_some(),
        }
    }
}
