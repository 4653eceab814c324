//! The report's figures: built once from the evidence of a period, written
//! as `report.json` (which a later `--previous` reads back), and rendered
//! as HTML and CSV from the same values.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::event::Timestamp;
use crate::evidence::{DeviceSeen, Evidence, HOUR_NS, IncidentSeen, Outcome};
use crate::exception::Exception;
use crate::policy::{Action, Policy, Severity, ZoneRef};

/// The format name in `report.json`.
pub const FORMAT: &str = "segwatch-evidence-report/1";

/// Devices listed as top offenders.
pub const TOP_DEVICES: usize = 25;

/// Days before its expiry from which an exception is "expiring".
pub const EXPIRING_DAYS: u64 = 30;

/// A period longer than this is charted by day, otherwise by hour.
const HOURLY_CHART_HOURS: u64 = 72;

/// Everything the report says, in the order it says it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// [`FORMAT`].
    pub format: String,
    /// When the report was made (`--generated-at`, or the clock).
    pub generated_at: String,
    /// The segwatch version that made it.
    pub segwatch_version: String,
    /// `captures` or `state`.
    pub source: String,
    /// The policy's name.
    pub policy_name: String,
    /// The period covered.
    pub period: Period,
    /// Every input with its SHA-256.
    pub inputs: Vec<Input>,
    /// The sensors whose state the report reads (none from captures).
    #[serde(default)]
    pub sensors: Vec<SensorRow>,
    /// The headline figures.
    pub summary: Summary,
    /// The previous report's headline figures, with `--previous`.
    #[serde(default)]
    pub previous: Option<Previous>,
    /// Zones in policy order, `unknown` last.
    pub zones: Vec<String>,
    /// Source zone by destination zone.
    pub matrix: Vec<MatrixCell>,
    /// Violations and incidents over time.
    pub timeline: Timeline,
    /// Every rule (and the default) with what it decided.
    pub rules: Vec<RuleRow>,
    /// Incidents closed, by kind, severity and rule.
    pub incidents: Vec<IncidentRow>,
    /// Incidents closed, one by one, in the order they began.
    #[serde(default)]
    pub closed_incidents: Vec<IncidentEntry>,
    /// Incidents counted but not listed: an hour lists at most
    /// [`crate::evidence::MAX_INCIDENTS_PER_HOUR`], the most severe first.
    #[serde(default)]
    pub incidents_left_out: u64,
    /// Devices that initiated violations, most incidents first.
    pub top_devices: Vec<DeviceRow>,
    /// The exception register.
    pub exceptions: Vec<ExceptionRow>,
    /// Reports before 2026-12-08 listed the devices in no zone or of no
    /// known class a second time here; they are read (as `--previous`) and
    /// the list is no longer written: [`Report::unknown_devices`] picks them
    /// from `devices`.
    #[serde(default, rename = "unknown_devices", skip_serializing)]
    legacy_unknown_devices: serde::de::IgnoredAny,
    /// Zones of the policy with no flow in the period.
    pub zones_without_traffic: Vec<String>,
    /// Rules that decided no flow in the period.
    pub rules_never_matched: Vec<String>,
    /// Devices by zone and class.
    pub inventory: Vec<InventoryRow>,
    /// Every device seen.
    pub devices: Vec<DeviceRow>,
}

/// The period covered, `end` exclusive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// Start, RFC 3339 UTC.
    pub start: String,
    /// End (exclusive), RFC 3339 UTC.
    pub end: String,
    /// Hours of the period that hold evidence.
    pub hours_with_data: u64,
}

/// An input file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// `capture`, `state`, `policy`, `exceptions` or `previous`.
    pub kind: String,
    /// Its path as given.
    pub path: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

/// A sensor whose evidence the report reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorRow {
    /// Its name (`[state] sensor`, or its host name).
    pub name: String,
    /// Hours of the period with its evidence.
    pub hours: u64,
    /// Start of its first hour, RFC 3339 UTC.
    pub first: String,
    /// End of its last hour, RFC 3339 UTC.
    pub last: String,
}

/// An incident closed in the period.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentEntry {
    /// Its id (the records' `incident_id`).
    pub id: String,
    /// `violation`, `sweep` or `scan`.
    pub kind: String,
    /// Its rule (`sweep` or `scan` for those kinds).
    pub rule: String,
    /// Its highest severity.
    pub severity: String,
    /// The initiator.
    pub src_ip: String,
    /// The initiator's zone (violation incidents).
    pub src_zone: String,
    /// The responders' zone (violation incidents).
    pub dest_zone: String,
    /// The service (violations), or protocol and port (sweeps).
    pub service: String,
    /// The host scanned (scans).
    pub dest_ip: String,
    /// First packet of its first flow, RFC 3339 UTC.
    pub first_seen: String,
    /// First packet of its latest flow, RFC 3339 UTC.
    pub last_seen: String,
    /// Flows joined.
    pub flows: u64,
    /// Distinct destination addresses.
    pub destinations: u64,
    /// The exception that excepts it (sweeps and scans).
    pub exception: String,
}

/// Counts by severity, highest first: critical, high, medium, low.
pub type BySeverity = [u64; 4];

/// The severities in [`BySeverity`] order.
pub const SEVERITIES: [Severity; 4] = [
    Severity::Critical,
    Severity::High,
    Severity::Medium,
    Severity::Low,
];

fn severity_slot(name: &str) -> Option<usize> {
    SEVERITIES.iter().position(|s| s.as_str() == name)
}

/// The headline figures.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Summary {
    /// Flows started in the period.
    pub flows: u64,
    /// Their transport payload bytes.
    pub bytes: u64,
    /// Flows allowed by an explicit rule.
    pub allowed_by_rule: u64,
    /// Flows allowed only by the default action.
    pub allowed_by_default: u64,
    /// Violations not excepted.
    pub violations: u64,
    /// Violations an exception covers.
    pub excepted: u64,
    /// Share of flows allowed by an explicit rule, percent (two decimals).
    pub conformance_percent: f64,
    /// Violations (not excepted) by severity.
    pub violations_by_severity: BySeverity,
    /// Incidents closed, by severity.
    pub incidents_by_severity: BySeverity,
    /// Incidents closed.
    pub incidents: u64,
    /// Devices seen.
    pub devices: u64,
}

/// The previous report's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Previous {
    /// Its period.
    pub period: Period,
    /// When it was made.
    pub generated_at: String,
    /// SHA-256 of its `report.json`.
    pub sha256: String,
    /// Its headline figures.
    pub summary: Summary,
}

/// A cell of the zone matrix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatrixCell {
    /// Initiator's zone.
    pub src_zone: String,
    /// Responder's zone.
    pub dest_zone: String,
    /// What the policy says: `allowed` (some rule allows the pair),
    /// `default-allow` (only the default action allows it) or `denied`.
    pub policy: String,
    /// The services the allowing rules name (`any` for a rule without
    /// services).
    pub allowed_services: Vec<String>,
    /// Flows observed.
    pub flows: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Flows allowed (by a rule or the default).
    pub allowed: u64,
    /// Violations not excepted.
    pub violations: u64,
    /// Excepted violations.
    pub excepted: u64,
}

/// Violations and incidents over time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeline {
    /// `hour` or `day`.
    pub unit: String,
    /// One point per unit of the period.
    pub points: Vec<TimePoint>,
}

/// One hour or day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimePoint {
    /// Its start, RFC 3339 UTC.
    pub start: String,
    /// Flows started.
    pub flows: u64,
    /// Violations (not excepted) by severity.
    pub violations: BySeverity,
    /// Excepted violations.
    pub excepted: u64,
    /// Incidents closed.
    pub incidents: u64,
}

/// A rule and what it decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleRow {
    /// Its name (`default` for the default action).
    pub rule: String,
    /// `allow` or `alert`.
    pub action: String,
    /// Its severity.
    pub severity: String,
    /// Flows it decided.
    pub flows: u64,
    /// Violations it made, not excepted.
    pub violations: u64,
    /// Violations it made that an exception covers.
    pub excepted: u64,
    /// Violation incidents of the rule closed.
    pub incidents: u64,
}

/// Incidents closed of one kind, severity and rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentRow {
    /// `violation`, `sweep` or `scan`.
    pub kind: String,
    /// Highest severity.
    pub severity: String,
    /// Rule (`sweep` or `scan` for those).
    pub rule: String,
    /// Incidents closed.
    pub closed: u64,
}

/// A device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceRow {
    /// Address.
    pub ip: String,
    /// Zone.
    pub zone: String,
    /// MAC vendor.
    pub vendor: String,
    /// Inferred class.
    pub class: String,
    /// DHCP hostname.
    pub hostname: String,
    /// Violations it initiated.
    pub violations: u64,
    /// Incidents it opened.
    pub incidents: u64,
    /// First seen, RFC 3339 UTC.
    pub first_seen: String,
    /// Last seen, RFC 3339 UTC.
    pub last_seen: String,
}

/// An exception of the register.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionRow {
    /// Its id.
    pub id: String,
    /// Why the risk is accepted.
    pub reason: String,
    /// Who owns it.
    pub owner: String,
    /// The change ticket.
    pub ticket: String,
    /// Start of validity (empty: always).
    pub created: String,
    /// End of validity.
    pub expires: String,
    /// At the end of the period: `active`, `expiring` (within
    /// [`EXPIRING_DAYS`]), `expired` or `not-yet-valid`.
    pub status: String,
    /// Violations it covered in the period.
    pub violations: u64,
}

/// Devices of one zone and class.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InventoryRow {
    /// Zone.
    pub zone: String,
    /// Class.
    pub class: String,
    /// Devices.
    pub devices: u64,
}

/// What a report is built from besides the evidence.
#[derive(Debug)]
pub struct Context<'a> {
    /// The policy (its zones and rules as written).
    pub policy: &'a Policy,
    /// The exceptions file's entries, in file order.
    pub exceptions: &'a [Exception],
    /// Start and end (exclusive) of the period, ns since the epoch.
    pub period: (u64, u64),
    /// `--generated-at`, or the clock, as RFC 3339.
    pub generated_at: String,
    /// `captures` or `state`.
    pub source: &'static str,
    /// Every input with its hash.
    pub inputs: Vec<Input>,
    /// The previous report, with `--previous`.
    pub previous: Option<Previous>,
}

/// RFC 3339 UTC of a capture time, to the second.
pub fn time_text(ts_ns: u64) -> String {
    let text = Timestamp(ts_ns).text();
    // `2026-11-28T08:00:01.000123Z` → `2026-11-28T08:00:01Z` (pushed rather
    // than formatted: two per device).
    let mut seconds = String::with_capacity(20);
    seconds.push_str(&text.as_str()[..19]);
    seconds.push('Z');
    seconds
}

/// An address as `Display` writes it; an IPv4 address's four numbers
/// without the formatting machinery (one per device).
fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            let mut number = itoa::Buffer::new();
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(number.format(octet));
            }
            text
        }
        std::net::IpAddr::V6(_) => ip.to_string(),
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 10_000.0 / whole as f64).round() / 100.0
}

impl Report {
    /// The report of `evidence` (already cut to the period) in `context`.
    pub fn build(evidence: &Evidence, context: Context<'_>) -> Report {
        let policy = context.policy;
        let mut zones: Vec<String> = policy.zones.iter().map(|z| z.name.clone()).collect();
        zones.push("unknown".into());
        let mut summary = Summary::default();
        let mut cells: BTreeMap<(String, String), MatrixCell> = BTreeMap::new();
        let mut rules: BTreeMap<String, RuleRow> = BTreeMap::new();
        let mut exception_hits: BTreeMap<String, u64> = BTreeMap::new();
        let mut incidents: BTreeMap<(String, String, String), u64> = BTreeMap::new();
        // Borrowed until a second hour's sighting must be merged in.
        let mut devices: BTreeMap<std::net::IpAddr, std::borrow::Cow<'_, DeviceSeen>> =
            BTreeMap::new();
        let mut seen_zones: BTreeSet<String> = BTreeSet::new();
        // Sensor → (hours, first hour, last hour).
        let mut sensors: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        let mut closed: Vec<&IncidentSeen> = Vec::new();
        let mut incidents_left_out = 0;
        let daily =
            (context.period.1.saturating_sub(context.period.0)) / HOUR_NS > HOURLY_CHART_HOURS;
        let unit_ns = if daily { 24 * HOUR_NS } else { HOUR_NS };
        let mut points: BTreeMap<u64, TimePoint> = BTreeMap::new();
        let first_unit = context.period.0 / unit_ns;
        let last_unit = context.period.1.div_ceil(unit_ns);
        for unit in first_unit..last_unit.max(first_unit) {
            points.insert(unit, empty_point(unit * unit_ns));
        }
        for (&hour, data) in &evidence.hours {
            let unit = hour * HOUR_NS / unit_ns;
            let point = points
                .entry(unit)
                .or_insert_with(|| empty_point(unit * unit_ns));
            for sensor in &data.sensors {
                let entry = sensors.entry(sensor.clone()).or_insert((0, hour, hour));
                entry.0 += 1;
                entry.1 = entry.1.min(hour);
                entry.2 = entry.2.max(hour);
            }
            closed.extend(data.closed());
            incidents_left_out += data.incidents_left_out();
            for (key, volume) in &data.traffic {
                summary.flows += volume.flows;
                summary.bytes += volume.bytes;
                point.flows += volume.flows;
                if volume.flows > 0 {
                    seen_zones.insert(key.src_zone.clone());
                    seen_zones.insert(key.dest_zone.clone());
                }
                let cell = cells
                    .entry((key.src_zone.clone(), key.dest_zone.clone()))
                    .or_insert_with(|| empty_cell(&key.src_zone, &key.dest_zone));
                cell.flows += volume.flows;
                cell.bytes += volume.bytes;
                let rule = rules
                    .entry(key.rule.clone())
                    .or_insert_with(|| empty_rule(&key.rule));
                rule.flows += volume.flows;
                match key.outcome {
                    Outcome::AllowedByRule => {
                        summary.allowed_by_rule += volume.flows;
                        cell.allowed += volume.flows;
                    }
                    Outcome::AllowedByDefault => {
                        summary.allowed_by_default += volume.flows;
                        cell.allowed += volume.flows;
                    }
                    Outcome::Violation => {
                        summary.violations += volume.flows;
                        cell.violations += volume.flows;
                        rule.violations += volume.flows;
                        let slot = key.severity.as_deref().and_then(severity_slot);
                        if let Some(slot) = slot {
                            summary.violations_by_severity[slot] += volume.flows;
                            point.violations[slot] += volume.flows;
                        }
                    }
                    Outcome::Excepted => {
                        summary.excepted += volume.flows;
                        cell.excepted += volume.flows;
                        rule.excepted += volume.flows;
                        point.excepted += volume.flows;
                        if let Some(id) = &key.exception {
                            *exception_hits.entry(id.clone()).or_default() += volume.flows;
                        }
                    }
                }
            }
            for (key, closed) in &data.incidents {
                point.incidents += closed;
                summary.incidents += closed;
                if let Some(slot) = severity_slot(&key.severity) {
                    summary.incidents_by_severity[slot] += closed;
                }
                if key.kind == "violation" {
                    rules
                        .entry(key.rule.clone())
                        .or_insert_with(|| empty_rule(&key.rule))
                        .incidents += closed;
                }
                *incidents
                    .entry((key.kind.clone(), key.severity.clone(), key.rule.clone()))
                    .or_default() += closed;
            }
            for (ip, device) in &data.devices {
                match devices.get_mut(ip) {
                    Some(known) => known.to_mut().merge(device),
                    None => {
                        devices.insert(*ip, std::borrow::Cow::Borrowed(device));
                    }
                }
            }
        }
        summary.conformance_percent = percent(summary.allowed_by_rule, summary.flows);
        summary.devices = devices.len() as u64;

        let matrix = zones
            .iter()
            .flat_map(|from| zones.iter().map(move |to| (from, to)))
            .map(|(from, to)| {
                let mut cell = cells
                    .remove(&(from.clone(), to.clone()))
                    .unwrap_or_else(|| empty_cell(from, to));
                let (allowance, services) = allowance(policy, from, to);
                cell.policy = allowance.into();
                cell.allowed_services = services;
                cell
            })
            .collect();

        let mut rule_rows: Vec<RuleRow> = Vec::new();
        let mut never = Vec::new();
        let mut rule_names: Vec<(String, Action, Severity)> = policy
            .rules
            .iter()
            .map(|r| (r.name.clone(), r.action, r.severity))
            .collect();
        rule_names.push((
            "default".into(),
            policy.default_action,
            policy.default_severity,
        ));
        for (name, action, severity) in rule_names {
            let mut row = rules.remove(&name).unwrap_or_else(|| empty_rule(&name));
            row.action = action_text(action).into();
            row.severity = severity.as_str().into();
            if row.flows == 0 && name != "default" {
                never.push(name.clone());
            }
            rule_rows.push(row);
        }
        // Rules of no longer in the policy (state judged under an older
        // one), and the clinical checks, after the policy's own.
        for (_, mut row) in rules {
            row.action = "alert".into();
            rule_rows.push(row);
        }

        let device_rows: Vec<DeviceRow> = devices.values().map(|d| device_row(d)).collect();
        let mut top: Vec<DeviceRow> = device_rows
            .iter()
            .filter(|d| d.violations > 0 || d.incidents > 0)
            .cloned()
            .collect();
        top.sort_by(|a, b| {
            (b.incidents, b.violations)
                .cmp(&(a.incidents, a.violations))
                .then_with(|| a.ip.cmp(&b.ip))
        });
        top.truncate(TOP_DEVICES);
        let mut inventory: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for device in &device_rows {
            *inventory.entry((&device.zone, &device.class)).or_default() += 1;
        }

        let end = context.period.1;
        let exceptions = context
            .exceptions
            .iter()
            .map(|e| ExceptionRow {
                id: e.id.clone(),
                reason: e.reason.clone(),
                owner: e.owner.clone(),
                ticket: e.ticket.clone().unwrap_or_default(),
                created: e.created.map(time_text).unwrap_or_default(),
                expires: time_text(e.expires),
                status: exception_status(e, end).into(),
                violations: exception_hits.get(&e.id).copied().unwrap_or(0),
            })
            .collect();

        Report {
            format: FORMAT.into(),
            generated_at: context.generated_at,
            segwatch_version: env!("CARGO_PKG_VERSION").into(),
            source: context.source.into(),
            policy_name: policy.name.clone(),
            period: Period {
                start: time_text(context.period.0),
                end: time_text(context.period.1),
                hours_with_data: evidence.hours.len() as u64,
            },
            inputs: context.inputs,
            sensors: sensors
                .into_iter()
                .map(|(name, (hours, first, last))| SensorRow {
                    name,
                    hours,
                    first: time_text(first * HOUR_NS),
                    last: time_text((last + 1) * HOUR_NS),
                })
                .collect(),
            summary,
            previous: context.previous,
            matrix,
            timeline: Timeline {
                unit: if daily { "day" } else { "hour" }.into(),
                points: points.into_values().collect(),
            },
            rules: rule_rows,
            incidents: incidents
                .into_iter()
                .map(|((kind, severity, rule), closed)| IncidentRow {
                    kind,
                    severity,
                    rule,
                    closed,
                })
                .collect(),
            closed_incidents: {
                closed.sort_by_cached_key(|i| i.sort_key());
                closed.into_iter().map(incident_entry).collect()
            },
            incidents_left_out,
            top_devices: top,
            exceptions,
            legacy_unknown_devices: serde::de::IgnoredAny,
            zones_without_traffic: policy
                .zones
                .iter()
                .filter(|z| !seen_zones.contains(&z.name))
                .map(|z| z.name.clone())
                .collect(),
            rules_never_matched: never,
            inventory: inventory
                .into_iter()
                .map(|((zone, class), devices)| InventoryRow {
                    zone: zone.to_owned(),
                    class: class.to_owned(),
                    devices,
                })
                .collect(),
            devices: device_rows,
            zones,
        }
    }

    /// Devices in no zone, or of no known class, in address order.
    pub fn unknown_devices(&self) -> impl Iterator<Item = &DeviceRow> {
        self.devices
            .iter()
            .filter(|d| d.zone == "unknown" || d.class == "unknown")
    }

    /// The headline figures as the next report's `--previous` sees them.
    pub fn as_previous(&self, sha256: String) -> Previous {
        Previous {
            period: self.period.clone(),
            generated_at: self.generated_at.clone(),
            sha256,
            summary: self.summary.clone(),
        }
    }
}

fn empty_point(start_ns: u64) -> TimePoint {
    TimePoint {
        start: time_text(start_ns),
        flows: 0,
        violations: [0; 4],
        excepted: 0,
        incidents: 0,
    }
}

fn empty_cell(from: &str, to: &str) -> MatrixCell {
    MatrixCell {
        src_zone: from.into(),
        dest_zone: to.into(),
        policy: String::new(),
        allowed_services: Vec::new(),
        flows: 0,
        bytes: 0,
        allowed: 0,
        violations: 0,
        excepted: 0,
    }
}

fn empty_rule(name: &str) -> RuleRow {
    RuleRow {
        rule: name.into(),
        action: String::new(),
        severity: String::new(),
        flows: 0,
        violations: 0,
        excepted: 0,
        incidents: 0,
    }
}

fn action_text(action: Action) -> &'static str {
    match action {
        Action::Allow => "allow",
        Action::Alert => "alert",
    }
}

fn device_row(device: &DeviceSeen) -> DeviceRow {
    DeviceRow {
        ip: ip_text(device.ip),
        zone: device.zone.clone(),
        vendor: device.vendor.clone().unwrap_or_default(),
        class: device.class.clone(),
        hostname: device.hostname.clone().unwrap_or_default(),
        violations: device.violations,
        incidents: device.incidents,
        first_seen: time_text(device.first_seen),
        last_seen: time_text(device.last_seen),
    }
}

fn incident_entry(incident: &IncidentSeen) -> IncidentEntry {
    let text = |value: &Option<String>| value.clone().unwrap_or_default();
    IncidentEntry {
        id: incident.id.clone(),
        kind: incident.kind.clone(),
        rule: incident.rule.clone(),
        severity: incident.severity.clone(),
        src_ip: incident.src_ip.to_string(),
        src_zone: text(&incident.src_zone),
        dest_zone: text(&incident.dest_zone),
        service: text(&incident.service),
        dest_ip: incident
            .dest_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default(),
        first_seen: time_text(incident.first_seen),
        last_seen: time_text(incident.last_seen),
        flows: incident.flows,
        destinations: incident.destinations,
        exception: text(&incident.exception),
    }
}

fn exception_status(exception: &Exception, end_ns: u64) -> &'static str {
    if exception.created.is_some_and(|created| created >= end_ns) {
        "not-yet-valid"
    } else if exception.expires <= end_ns {
        "expired"
    } else if exception.expires - end_ns <= EXPIRING_DAYS * 24 * HOUR_NS {
        "expiring"
    } else {
        "active"
    }
}

/// What the policy says of flows from zone `from` to zone `to`: whether an
/// allow rule covers the pair (and its services), else whether the default
/// allows it. Rules are read as written; an alert rule earlier in the file
/// may still take some of those flows (the matrix's counts show what did).
fn allowance(policy: &Policy, from: &str, to: &str) -> (&'static str, Vec<String>) {
    let covers = |refs: &[ZoneRef], name: &str| {
        refs.iter().any(|r| match r {
            ZoneRef::Any => true,
            ZoneRef::Unknown => name == "unknown",
            ZoneRef::Zone(i) => policy.zones.get(*i).is_some_and(|z| z.name == name),
        })
    };
    let mut services: Vec<String> = Vec::new();
    let mut allowed = false;
    for rule in &policy.rules {
        if rule.action != Action::Allow || !covers(&rule.from, from) || !covers(&rule.to, to) {
            continue;
        }
        allowed = true;
        if rule.services.is_empty() {
            services.push("any".into());
        }
        for service in &rule.services {
            services.push(service.label.clone());
        }
    }
    let mut unique = BTreeSet::new();
    services.retain(|s| unique.insert(s.clone()));
    if allowed {
        ("allowed", services)
    } else if policy.default_action == Action::Allow {
        ("default-allow", services)
    } else {
        ("denied", services)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_built_by_hand_equal_the_formatted_ones() {
        for ts in [0, 1_764_547_200_123_456_789, 1_796_119_199_999_999_999] {
            let text = Timestamp(ts).text();
            assert_eq!(time_text(ts), format!("{}Z", &text.as_str()[..19]));
        }
        for ip in [
            "0.0.0.0",
            "10.20.3.117",
            "255.255.255.255",
            "1.0.10.100",
            "fe80::1",
        ] {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
