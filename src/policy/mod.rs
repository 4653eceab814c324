//! The segmentation policy file (contract section 1): reading, validating and
//! reporting problems with file, line and column.
//!
//! [`load_policy_file`] turns TOML into a validated [`Policy`]: names resolved
//! to indices, CIDRs parsed, port ranges checked. [`crate::classify`] compiles a
//! `Policy` into the lookup tables the hot path uses.

#![forbid(unsafe_code)]

mod diagnostic;
mod load;
mod quick;
mod raw;
mod shadow;
mod values;

pub use diagnostic::{Diagnostic, Level, PolicyError};
pub use load::{
    load_policy_bytes, load_policy_file, load_policy_str, quick_reader_agrees, unreadable_policy,
};
pub(crate) use quick::Reader as QuickReader;
pub(crate) use raw::Text;

use ipnetwork::IpNetwork;

/// What a rule, or the default, does with a flow it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// The flow is allowed: no event.
    Allow,
    /// The flow is a violation: one event.
    Alert,
}

/// Severity of a violation, ordered from `Low` to `Critical`.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum Severity {
    /// low
    Low,
    /// medium (the default severity)
    #[default]
    Medium,
    /// high
    High,
    /// critical
    Critical,
}

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The name used in policy files, events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Parses a name as written in a policy file.
    pub fn parse(name: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// An inclusive range of ports, `lo <= hi`, both in 1..=65535.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PortRange {
    /// First port of the range.
    pub lo: u16,
    /// Last port of the range.
    pub hi: u16,
}

impl PortRange {
    /// True when `port` lies in the range.
    pub fn contains(self, port: u16) -> bool {
        self.lo <= port && port <= self.hi
    }
}

/// What a service matches: TCP ports, UDP ports and/or ICMP(v6) echo.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceSpec {
    /// TCP port ranges, as written.
    pub tcp: Vec<PortRange>,
    /// UDP port ranges, as written.
    pub udp: Vec<PortRange>,
    /// Matches ICMP and ICMPv6 echo flows.
    pub icmp: bool,
    /// The application the flow must speak (`dicom`, `hl7`, ...), found by
    /// content: a flow matches by its bytes whatever its port, and the
    /// ports above only name the service's usual ports (for who initiates).
    pub app: Option<String>,
}

/// A named service (`[services.NAME]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// The table name.
    pub name: String,
    /// What it matches.
    pub spec: ServiceSpec,
}

/// A zone (`[zones.NAME]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// The table name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Networks; a bare address was turned into a /32 or /128.
    pub networks: Vec<IpNetwork>,
    /// Free label shown in events (`src_criticality`, `dest_criticality`).
    pub criticality: Option<String>,
}

/// A zone as a rule's `from` or `to` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ZoneRef {
    /// `any`: every zone, `unknown` included.
    Any,
    /// `unknown`: addresses that no zone holds.
    Unknown,
    /// A zone of the policy, by index into [`Policy::zones`].
    Zone(usize),
}

/// A service as a rule's `services` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceRef {
    /// As written in the rule (`"dicom"`, `"tcp/8080-8089"`): the event's
    /// `service` field prints it so.
    pub label: String,
    /// Index into [`Policy::services`] for a named service; `None` for inline.
    pub named: Option<usize>,
    /// What it matches.
    pub spec: ServiceSpec,
}

/// A rule (`[[rules]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Initiator zones.
    pub from: Vec<ZoneRef>,
    /// Responder zones.
    pub to: Vec<ZoneRef>,
    /// Services; empty means every service (and every protocol).
    pub services: Vec<ServiceRef>,
    /// What a match does.
    pub action: Action,
    /// Severity of an alert; the policy's default severity when not written.
    pub severity: Severity,
    /// Conditions on the flow's application fields (none: any).
    pub conditions: AppConditions,
}

impl Rule {
    /// True when the rule looks at the flow's application: a service that
    /// requires one, or conditions on its fields.
    pub fn depends_on_app(&self) -> bool {
        !self.conditions.is_empty() || self.services.iter().any(|s| s.spec.app.is_some())
    }
}

/// A rule's conditions on application fields; each non-empty list must hold
/// the flow's value (a flow whose application is not known matches none).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppConditions {
    /// DICOM called AE titles.
    pub dicom_called_ae: Vec<String>,
    /// DICOM calling AE titles.
    pub dicom_calling_ae: Vec<String>,
    /// HL7 sending applications (MSH-3).
    pub hl7_sending_app: Vec<String>,
    /// HL7 sending facilities (MSH-4).
    pub hl7_sending_facility: Vec<String>,
    /// HL7 message types (MSH-9): `ADT^A01`, or `ADT` for every ADT event.
    pub hl7_message_types: Vec<String>,
    /// TLS server names; `*.example.org` matches its subdomains.
    pub tls_server_names: Vec<String>,
}

impl AppConditions {
    /// True when the rule has none.
    pub fn is_empty(&self) -> bool {
        self.dicom_called_ae.is_empty()
            && self.dicom_calling_ae.is_empty()
            && self.hl7_sending_app.is_empty()
            && self.hl7_sending_facility.is_empty()
            && self.hl7_message_types.is_empty()
            && self.tls_server_names.is_empty()
    }
}

/// `[clinical]`: checks on clinical protocols, each producing the flow's one
/// event under a pseudo-rule when no rule alerted first.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClinicalChecks {
    /// Severity of DICOM or HL7 on a port no service requiring it names.
    pub unexpected_port: Option<Severity>,
    /// Known AE titles; empty: not checked.
    pub known_ae_titles: Vec<String>,
    /// Severity of an unknown AE title.
    pub unknown_ae_title: Severity,
    /// Known HL7 senders (`APP` or `APP^FACILITY`); empty: not checked.
    pub known_hl7_senders: Vec<String>,
    /// Severity of an unknown HL7 sender.
    pub unknown_hl7_sender: Severity,
}

impl ClinicalChecks {
    /// True when nothing is checked.
    pub fn is_empty(&self) -> bool {
        self.unexpected_port.is_none()
            && self.known_ae_titles.is_empty()
            && self.known_hl7_senders.is_empty()
    }
}

/// A validated policy, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `policy.name`.
    pub name: String,
    /// Verdict for flows no rule matches.
    pub default_action: Action,
    /// Severity of the default alert.
    pub default_severity: Severity,
    /// Zones in file order.
    pub zones: Vec<Zone>,
    /// Named services in file order.
    pub services: Vec<Service>,
    /// Rules in file order: the first match wins.
    pub rules: Vec<Rule>,
    /// `[clinical]` checks.
    pub clinical: ClinicalChecks,
}
