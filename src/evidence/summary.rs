//! The hourly evidence summary by name: what a state file holds and what a
//! report is built from. Names rather than the compiled policy's ids, so
//! hours judged under different policies (a reload, a change over a year)
//! merge and read alike.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::classify::{CompiledPolicy, Verdict};
use crate::exception::Exceptions;
use crate::policy::Action;

use super::table::{EvidenceTable, HOUR_NS, NO_EXCEPTION};

/// How a flow was judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Allowed by an explicit rule.
    AllowedByRule,
    /// Allowed only by the policy's default action.
    AllowedByDefault,
    /// A violation (an alerting rule or default), not excepted.
    Violation,
    /// A violation an exception covers (an accepted risk).
    Excepted,
}

impl Outcome {
    /// The name in files and the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::AllowedByRule => "allowed-by-rule",
            Outcome::AllowedByDefault => "allowed-by-default",
            Outcome::Violation => "violation",
            Outcome::Excepted => "excepted",
        }
    }

    /// True for violations, excepted or not.
    pub fn is_violation(self) -> bool {
        matches!(self, Outcome::Violation | Outcome::Excepted)
    }
}

/// One kind of flow in an hour.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficKey {
    /// Initiator's zone.
    pub src_zone: String,
    /// Responder's zone.
    pub dest_zone: String,
    /// The event's `service`, when one matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// How it was judged.
    pub outcome: Outcome,
    /// The deciding rule (`default` for the default action).
    pub rule: String,
    /// The rule's severity (violations only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The exception that excepts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
}

/// Flows and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Flows started.
    pub flows: u64,
    /// Transport payload bytes.
    pub bytes: u64,
}

impl Volume {
    /// Adds `other`.
    pub fn add(&mut self, other: Volume) {
        self.flows += other.flows;
        self.bytes += other.bytes;
    }
}

/// Incidents closed, by kind, severity and rule (`sweep` or `scan` for
/// those kinds).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentKey {
    /// `violation`, `sweep` or `scan`.
    pub kind: String,
    /// Its highest severity.
    pub severity: String,
    /// Its rule.
    pub rule: String,
}

/// A device seen, as the inventory knew it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSeen {
    /// Its address.
    pub ip: IpAddr,
    /// Its zone.
    pub zone: String,
    /// Vendor of its MAC address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vendor: Option<String>,
    /// Inferred class (`unknown` when there was not enough evidence).
    pub class: String,
    /// DHCP hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// First flow start seen, ns since the epoch.
    pub first_seen: u64,
    /// Latest flow start seen, ns since the epoch.
    pub last_seen: u64,
    /// Violations it initiated.
    pub violations: u64,
    /// Incidents it opened as initiator.
    pub incidents: u64,
}

impl DeviceSeen {
    /// Merges a later sighting of the same device.
    pub fn merge(&mut self, other: &DeviceSeen) {
        let later = other.last_seen >= self.last_seen;
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.violations += other.violations;
        self.incidents += other.incidents;
        if later {
            self.zone.clone_from(&other.zone);
            if other.class != "unknown" || self.class.is_empty() {
                self.class.clone_from(&other.class);
            }
            if other.vendor.is_some() {
                self.vendor.clone_from(&other.vendor);
            }
            if other.hostname.is_some() {
                self.hostname.clone_from(&other.hostname);
            }
        }
    }
}

/// The most incidents an hour lists one by one (its counts by kind,
/// severity and rule stay whole): an hour's evidence stays bounded however
/// many incidents close in it (a scan storm), at about 30 KB of listing.
pub const MAX_INCIDENTS_PER_HOUR: usize = 100;

/// One incident closed, as its close record gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentSeen {
    /// Its id (the records' `incident_id`).
    pub id: String,
    /// `violation`, `sweep` or `scan`.
    pub kind: String,
    /// Its rule (`sweep` or `scan` for those kinds).
    pub rule: String,
    /// Its highest severity.
    pub severity: String,
    /// The initiator.
    pub src_ip: IpAddr,
    /// Violation incidents: the initiator's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_zone: Option<String>,
    /// Violation incidents: the responders' zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_zone: Option<String>,
    /// Violation incidents: the service; sweeps: protocol and port
    /// (`tcp/445`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Scans: the host scanned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_ip: Option<IpAddr>,
    /// First packet of its first flow, ns since the epoch.
    pub first_seen: u64,
    /// First packet of its latest flow, ns since the epoch.
    pub last_seen: u64,
    /// Flows joined.
    pub flows: u64,
    /// Distinct destination addresses.
    pub destinations: u64,
    /// The exception that excepts it (sweeps and scans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
}

impl IncidentSeen {
    /// An incident as its close record gives it.
    pub fn of_record(record: &crate::event::IncidentRecord) -> IncidentSeen {
        let service = match (&record.service, &record.proto, record.dest_port) {
            (Some(service), _, _) => Some(service.clone()),
            (None, Some(proto), Some(port)) => Some(format!("{proto}/{port}")),
            (None, Some(proto), None) => Some(proto.clone()),
            (None, None, _) => None,
        };
        IncidentSeen {
            id: record.incident_id.to_string(),
            kind: record.kind.as_str().into(),
            rule: record.rule.clone(),
            severity: record.severity.clone(),
            src_ip: record.src_ip,
            src_zone: record.src_zone.clone(),
            dest_zone: record.dest_zone.clone(),
            service,
            dest_ip: record.dest_ip,
            first_seen: record.first_seen.0,
            last_seen: record.last_seen.0,
            flows: record.flows,
            destinations: record.dest_count,
            exception: record.exception.clone(),
        }
    }

    /// Which incidents an hour keeps when it holds more than
    /// [`MAX_INCIDENTS_PER_HOUR`]: the most severe, then the earliest
    /// (ids last: a daemon's differ from a replay's of the same traffic).
    fn order(&self) -> IncidentOrder {
        let rank = crate::policy::Severity::ALL
            .iter()
            .rev()
            .position(|s| s.as_str() == self.severity)
            .unwrap_or(usize::MAX);
        (rank, self.sort_key())
    }

    /// The order incidents are listed in: by when they began, then by what
    /// they are, ids last.
    pub fn sort_key(&self) -> IncidentSortKey {
        (
            self.first_seen,
            self.last_seen,
            self.src_ip,
            self.kind.clone(),
            self.rule.clone(),
            self.dest_zone.clone(),
            self.service.clone(),
            self.dest_ip,
            self.id.clone(),
        )
    }
}

/// [`IncidentSeen::sort_key`].
pub type IncidentSortKey = (
    u64,
    u64,
    IpAddr,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<IpAddr>,
    String,
);

/// Severity rank (critical first), then [`IncidentSortKey`].
type IncidentOrder = (usize, IncidentSortKey);

/// One hour's evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hour {
    /// The sensors whose evidence it holds (from captures: none).
    pub sensors: BTreeSet<String>,
    /// Flows and bytes by kind of flow.
    pub traffic: BTreeMap<TrafficKey, Volume>,
    /// Incidents closed in the hour, counted.
    pub incidents: BTreeMap<IncidentKey, u64>,
    /// Incidents closed in the hour, one by one: at most
    /// [`MAX_INCIDENTS_PER_HOUR`], the most severe first.
    closed: BTreeMap<IncidentOrder, IncidentSeen>,
    /// Devices seen, by address.
    pub devices: BTreeMap<IpAddr, DeviceSeen>,
}

impl Hour {
    /// Merges `other` (the same hour counted elsewhere: another shard, or
    /// a run before a restart).
    pub fn merge(&mut self, other: &Hour) {
        self.sensors.extend(other.sensors.iter().cloned());
        for incident in other.closed.values() {
            self.list_incident(incident.clone());
        }
        for (key, volume) in &other.traffic {
            self.traffic.entry(key.clone()).or_default().add(*volume);
        }
        for (key, closed) in &other.incidents {
            *self.incidents.entry(key.clone()).or_default() += closed;
        }
        for (ip, device) in &other.devices {
            self.add_device(*ip, device);
        }
    }

    /// Adds a device sighting.
    pub fn add_device(&mut self, ip: IpAddr, device: &DeviceSeen) {
        match self.devices.get_mut(&ip) {
            Some(known) => known.merge(device),
            None => {
                self.devices.insert(ip, device.clone());
            }
        }
    }

    /// Counts a closed incident and lists it (unless the hour lists
    /// [`MAX_INCIDENTS_PER_HOUR`] more severe or earlier ones already).
    pub fn add_incident(&mut self, incident: IncidentSeen) {
        let key = IncidentKey {
            kind: incident.kind.clone(),
            severity: incident.severity.clone(),
            rule: incident.rule.clone(),
        };
        *self.incidents.entry(key).or_default() += 1;
        self.list_incident(incident);
    }

    /// Lists an incident already counted.
    pub fn list_incident(&mut self, incident: IncidentSeen) {
        self.closed.insert(incident.order(), incident);
        if self.closed.len() > MAX_INCIDENTS_PER_HOUR {
            self.closed.pop_last();
        }
    }

    /// The incidents listed, the most severe first, then the earliest.
    pub fn closed(&self) -> impl Iterator<Item = &IncidentSeen> {
        self.closed.values()
    }

    /// Incidents counted but not listed (beyond the hour's bound).
    pub fn incidents_left_out(&self) -> u64 {
        let counted: u64 = self.incidents.values().sum();
        counted.saturating_sub(self.closed.len() as u64)
    }

    /// True when it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.traffic.is_empty()
            && self.incidents.is_empty()
            && self.devices.is_empty()
            && self.closed.is_empty()
    }
}

/// Evidence by hour (hours since the epoch, UTC).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evidence {
    /// The hours.
    pub hours: BTreeMap<u64, Hour>,
}

impl Evidence {
    /// The hour holding capture time `ts_ns`, made when missing.
    pub fn hour_of(&mut self, ts_ns: u64) -> &mut Hour {
        self.hours.entry(ts_ns / HOUR_NS).or_default()
    }

    /// Merges `other`.
    pub fn merge(&mut self, other: &Evidence) {
        for (hour, data) in &other.hours {
            self.hours.entry(*hour).or_default().merge(data);
        }
    }

    /// Adds a shard's table, naming its ids by `policy` and `exceptions`
    /// (those that judged it).
    pub fn add_table(
        &mut self,
        table: &EvidenceTable,
        policy: &CompiledPolicy,
        exceptions: &Exceptions,
    ) {
        for bucket in table.buckets() {
            if bucket.flows == 0 && bucket.bytes == 0 {
                continue;
            }
            let key = traffic_key(bucket.verdict, bucket.key.exception, policy, exceptions, {
                let (transport, port) = bucket.service;
                (
                    bucket.key.src_zone,
                    bucket.key.dest_zone,
                    policy.service_label(bucket.verdict, transport, port, bucket.app),
                )
            });
            let hour = self.hours.entry(u64::from(bucket.key.hour)).or_default();
            hour.traffic.entry(key).or_default().add(Volume {
                flows: bucket.flows,
                bytes: bucket.bytes,
            });
        }
    }
}

fn traffic_key(
    verdict: Verdict,
    exception: u32,
    policy: &CompiledPolicy,
    exceptions: &Exceptions,
    (src, dest, service): (u32, u32, Option<&str>),
) -> TrafficKey {
    let rule = policy.rule(verdict.rule);
    let default = verdict.rule == Verdict::DEFAULT_RULE;
    let excepted = (exception != NO_EXCEPTION)
        .then(|| exceptions.get(exception).map(|e| e.id.clone()))
        .flatten();
    let outcome = match (rule.action, default) {
        (Action::Allow, false) => Outcome::AllowedByRule,
        (Action::Allow, true) => Outcome::AllowedByDefault,
        (Action::Alert, _) if excepted.is_some() => Outcome::Excepted,
        (Action::Alert, _) => Outcome::Violation,
    };
    TrafficKey {
        src_zone: policy.zone(src).name.clone(),
        dest_zone: policy.zone(dest).name.clone(),
        service: service.map(str::to_owned),
        outcome,
        rule: rule.name.clone(),
        severity: outcome
            .is_violation()
            .then(|| rule.severity.as_str().to_owned()),
        exception: excepted,
    }
}
