//! What-if: the flows of a capture whose verdict a candidate policy would
//! change, grouped by the rules that decide them now and then.
//!
//! Both policies judge every flow (see [`crate::replay::observe_every_flow`]);
//! flows are matched by flow id, which depends only on the capture, never
//! on the policy.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::capture::CaptureFile;
use crate::event::ViolationEvent;
use crate::policy::{Action, Policy};
use crate::replay::{ObserveError, ObservedFlow, ReplayOptions, observe_every_flow};

/// How a flow's verdict changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Allowed now, an alert under the candidate.
    NewAlert,
    /// An alert now, allowed under the candidate.
    NoLongerAlert,
    /// An alert under both, from another rule or at another severity.
    AlertChanged,
}

impl ChangeKind {
    /// The words a summary uses.
    pub fn describe(self) -> &'static str {
        match self {
            ChangeKind::NewAlert => "new alerts (allowed now, alert under the candidate)",
            ChangeKind::NoLongerAlert => {
                "no longer alerts (alert now, allowed under the candidate)"
            }
            ChangeKind::AlertChanged => "alerts from another rule or at another severity",
        }
    }
}

/// One policy's verdict on a flow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The deciding rule, or `default`.
    pub rule: String,
    /// `allow` or `alert`.
    pub action: &'static str,
    /// The alert's severity; absent when allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
}

impl Decision {
    fn of(flow: &ObservedFlow) -> Decision {
        let alert = flow.action == Action::Alert;
        Decision {
            rule: flow.event.rule.to_string(),
            action: if alert { "alert" } else { "allow" },
            severity: alert.then(|| flow.event.severity.to_string()),
        }
    }
}

/// A flow whose verdict would change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowChange {
    /// How.
    pub change: ChangeKind,
    /// The flow, oriented as the candidate policy orients it, with the
    /// candidate's zones and service.
    #[serde(flatten)]
    pub flow: FlowFields,
    /// The verdict now.
    pub current: Decision,
    /// The verdict under the candidate.
    pub candidate: Decision,
}

/// The header fields of a flow, as its event shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FlowFields {
    /// The flow's first packet, RFC 3339.
    pub timestamp: String,
    /// The flow id.
    pub flow_id: String,
    /// Protocol.
    pub proto: String,
    /// Initiator.
    pub src_ip: std::net::IpAddr,
    /// Initiator's port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    /// Responder.
    pub dest_ip: std::net::IpAddr,
    /// Responder's port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<u16>,
    /// Initiator's zone.
    pub src_zone: String,
    /// Responder's zone.
    pub dest_zone: String,
}

impl FlowFields {
    fn of(event: &ViolationEvent<'_>) -> FlowFields {
        FlowFields {
            timestamp: event.timestamp.to_string(),
            flow_id: event.flow_id.to_string(),
            proto: event.proto.to_string(),
            src_ip: event.src_ip,
            src_port: event.src_port,
            dest_ip: event.dest_ip,
            dest_port: event.dest_port,
            src_zone: event.src_zone.to_string(),
            dest_zone: event.dest_zone.to_string(),
        }
    }
}

/// What a candidate policy would change.
#[derive(Clone, Debug)]
pub struct PolicyDiff {
    /// Flows judged.
    pub flows: u64,
    /// The flows whose verdict changes, in capture order.
    pub changes: Vec<FlowChange>,
    /// Captures cut inside their last record (judged up to the cut).
    pub truncations: Vec<(std::path::PathBuf, crate::capture::Truncation)>,
}

impl PolicyDiff {
    /// Changes of one kind.
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.change == kind).count()
    }

    /// The changes grouped by kind, then by (current rule, candidate rule).
    pub fn by_rule(&self) -> BTreeMap<(ChangeKind, String, String), Vec<&FlowChange>> {
        let mut groups: BTreeMap<_, Vec<&FlowChange>> = BTreeMap::new();
        for change in &self.changes {
            groups
                .entry((
                    change.change,
                    change.current.rule.clone(),
                    change.candidate.rule.clone(),
                ))
                .or_default()
                .push(change);
        }
        groups
    }
}

/// Judges `captures` under both policies and lists the flows whose
/// verdict differs.
pub fn diff_policies(
    current: &Policy,
    candidate: &Policy,
    captures: &[CaptureFile],
    options: &ReplayOptions,
) -> Result<PolicyDiff, ObserveError> {
    let now = observe_every_flow(current, captures, options)?;
    let then = observe_every_flow(candidate, captures, options)?;
    let by_id: HashMap<u64, &ObservedFlow> =
        now.flows.iter().map(|f| (f.event.flow_id.0, f)).collect();
    let mut changes = Vec::new();
    for after in &then.flows {
        let Some(before) = by_id.get(&after.event.flow_id.0) else {
            continue;
        };
        let change = match (before.action, after.action) {
            (Action::Allow, Action::Alert) => ChangeKind::NewAlert,
            (Action::Alert, Action::Allow) => ChangeKind::NoLongerAlert,
            (Action::Alert, Action::Alert)
                if before.event.rule != after.event.rule
                    || before.event.severity != after.event.severity =>
            {
                ChangeKind::AlertChanged
            }
            _ => continue,
        };
        changes.push(FlowChange {
            change,
            flow: FlowFields::of(&after.event),
            current: Decision::of(before),
            candidate: Decision::of(after),
        });
    }
    Ok(PolicyDiff {
        flows: then.flows.len() as u64,
        changes,
        truncations: then.truncations().to_vec(),
    })
}
