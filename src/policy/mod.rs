//! The segmentation policy file (contract section 1): reading, validating and
//! reporting problems with file, line and column.
//!
//! [`load_policy_file`] turns TOML into a validated [`Policy`]: names resolved
//! to indices, CIDRs parsed, port ranges checked. [`crate::classify`] compiles a
//! `Policy` into the lookup tables the hot path uses.

mod diagnostic;
mod load;
mod raw;
mod shadow;
mod values;

pub use diagnostic::{Diagnostic, Level, PolicyError};
pub use load::{load_policy_file, load_policy_str};

use ipnetwork::IpNetwork;

/// What a rule, or the default, does with a flow it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The flow is allowed: no event.
    Allow,
    /// The flow is a violation: one event.
    Alert,
}

/// Severity of a violation, ordered from `Low` to `Critical`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// low
    Low,
    /// medium
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceSpec {
    /// TCP port ranges, as written.
    pub tcp: Vec<PortRange>,
    /// UDP port ranges, as written.
    pub udp: Vec<PortRange>,
    /// Matches ICMP and ICMPv6 echo flows.
    pub icmp: bool,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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
}
