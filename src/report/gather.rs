//! Evidence from capture files: the replay judges them (as `replay --apps
//! --incidents --inventory` would) and counts flows and bytes by hour; its
//! events and incident records give incidents closed and each initiator's
//! violations and incidents; the inventory gives the devices.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde::Deserialize;

use crate::capture::CaptureFile;
use crate::classify::PolicyInForce;
use crate::event::IncidentRecord;
use crate::event::Timestamp;
use crate::evidence::{DeviceSeen, Evidence, IncidentSeen};
use crate::incident::IncidentSettings;
use crate::inventory::{DEFAULT_CAPACITY, Inventory, OuiRegistry};
use crate::replay::{ReplayOptions, ReplayOutcome, replay};

use super::ReportError;

/// The evidence of some captures, and the replay's outcome.
#[derive(Debug)]
pub struct CaptureEvidence {
    /// Evidence by hour.
    pub evidence: Evidence,
    /// The replay's counters, truncations and capture error.
    pub outcome: ReplayOutcome,
}

/// The fields of an event or incident record the report reads.
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    event_type: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
    src_ip: IpAddr,
    #[serde(default, borrow)]
    src_zone: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    state: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    exception: Option<Cow<'a, str>>,
}

/// Per initiator: violations, incidents opened, first and last event time,
/// zone.
#[derive(Default)]
struct Offender {
    violations: u64,
    incidents: u64,
    first: u64,
    last: u64,
    zone: String,
}

/// Judges `captures` under `policy` with `options` (evidence, incidents,
/// the inventory and application detection are turned on here) and
/// gathers their evidence.
pub fn evidence_from_captures(
    captures: &[CaptureFile],
    policy: &PolicyInForce,
    mut options: ReplayOptions,
) -> Result<CaptureEvidence, ReportError> {
    let inventory = Arc::new(Inventory::new(
        DEFAULT_CAPACITY,
        Arc::new(OuiRegistry::load_default()),
    ));
    options.inventory = Some(inventory.clone());
    options.detect_apps = true;
    options.evidence = true;
    if options.incidents.is_none() {
        options.incidents = Some(IncidentSettings::default());
    }
    let mut lines = Vec::new();
    let mut outcome = replay(captures, policy, &options, &mut lines)?;
    if let Some(error) = outcome.capture_error.take() {
        return Err(error.into());
    }
    let mut evidence = outcome.evidence.take().unwrap_or_default();

    let mut offenders: BTreeMap<IpAddr, Offender> = BTreeMap::new();
    for raw in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        // The replay's own output: a line it cannot read back is skipped
        // rather than trusted.
        let Ok(line) = serde_json::from_slice::<Line<'_>>(raw) else {
            continue;
        };
        let Some(ts) = Timestamp::parse(&line.timestamp) else {
            continue;
        };
        let offender = offenders.entry(line.src_ip).or_insert_with(|| Offender {
            first: ts.0,
            ..Offender::default()
        });
        offender.first = offender.first.min(ts.0);
        offender.last = offender.last.max(ts.0);
        if let Some(zone) = &line.src_zone {
            offender.zone = zone.to_string();
        }
        match (&*line.event_type, line.state.as_deref()) {
            // An excepted violation is an accepted risk, not an offence.
            ("violation", _) if line.exception.is_none() => offender.violations += 1,
            ("incident", Some("open")) => offender.incidents += 1,
            ("incident", Some("close")) => {
                // Few lines (one per incident): read whole.
                if let Ok(record) = serde_json::from_slice::<IncidentRecord>(raw) {
                    evidence
                        .hour_of(ts.0)
                        .add_incident(IncidentSeen::of_record(&record));
                }
            }
            _ => {}
        }
    }
    for device in inventory.summaries() {
        let offender = offenders.remove(&device.ip).unwrap_or_default();
        let seen = DeviceSeen {
            ip: device.ip,
            zone: device.zone,
            vendor: device.vendor,
            class: device.class.as_str().to_owned(),
            hostname: device.dhcp_hostname,
            first_seen: device.first_ns,
            last_seen: device.last_ns,
            violations: offender.violations,
            incidents: offender.incidents,
        };
        evidence
            .hour_of(device.last_ns)
            .add_device(device.ip, &seen);
    }
    // Initiators the inventory did not keep (it was full).
    for (ip, offender) in offenders {
        let seen = DeviceSeen {
            ip,
            zone: if offender.zone.is_empty() {
                "unknown".into()
            } else {
                offender.zone
            },
            vendor: None,
            class: "unknown".into(),
            hostname: None,
            first_seen: offender.first,
            last_seen: offender.last,
            violations: offender.violations,
            incidents: offender.incidents,
        };
        evidence.hour_of(offender.last).add_device(ip, &seen);
    }
    Ok(CaptureEvidence { evidence, outcome })
}
