//! Every flow of a capture with the rule that decides it, for the commands
//! that reason about a policy rather than enforce it (`learn`, `diff`).
//!
//! A replay emits events for alerting flows only. Judging under a copy of
//! the policy whose every rule (and default) alerts makes every flow emit
//! one event naming its deciding rule, with the same initiator and flow id
//! as under the real policy: the services, and with them who initiates,
//! are unchanged. The real verdict is then the deciding rule's own action.

use crate::capture::{CaptureError, CaptureFile, Truncation};
use crate::classify::{CompiledPolicy, PolicyInForce};
use crate::event::ViolationEvent;
use crate::policy::{Action, Policy};

use super::{ReplayOptions, ReplayOutcome, replay};

/// A flow and the rule that decides it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedFlow {
    /// The flow as an event would show it: endpoints oriented, zones,
    /// service, deciding rule (`default` when none) and its severity.
    pub event: ViolationEvent<'static>,
    /// What the real policy does with it.
    pub action: Action,
}

/// What a capture holds, flow by flow.
#[derive(Debug)]
pub struct Observation {
    /// Every judged flow, in the order of its first packet.
    pub flows: Vec<ObservedFlow>,
    /// The replay's counters.
    pub outcome: ReplayOutcome,
}

impl Observation {
    /// Files cut inside their last record.
    pub fn truncations(&self) -> &[(std::path::PathBuf, Truncation)] {
        &self.outcome.truncations
    }
}

/// Why a capture could not be observed: one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    /// A capture could not be read to its end.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The events could not be gathered (out of memory, in practice).
    #[error(transparent)]
    Output(#[from] super::OutputError),
    /// An event the replay wrote could not be read back (a bug).
    #[error("unreadable event: {0}")]
    Unreadable(#[from] serde_json::Error),
}

/// Judges every flow of `captures` under `policy`, returning each flow with
/// its deciding rule.
pub fn observe_every_flow(
    policy: &Policy,
    captures: &[CaptureFile],
    options: &ReplayOptions,
) -> Result<Observation, ObserveError> {
    let mut alerting = policy.clone();
    alerting.default_action = Action::Alert;
    for rule in &mut alerting.rules {
        rule.action = Action::Alert;
    }
    let compiled = PolicyInForce::new(CompiledPolicy::compile(&alerting), 0);
    let mut lines = Vec::new();
    let mut outcome = replay(captures, &compiled, options, &mut lines)?;
    if let Some(error) = outcome.capture_error.take() {
        return Err(error.into());
    }
    let action_of = |rule: &str| {
        policy
            .rules
            .iter()
            .find(|r| r.name == rule)
            .map_or(policy.default_action, |r| r.action)
    };
    let mut flows = Vec::new();
    for line in lines.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let event: ViolationEvent<'_> = serde_json::from_slice(line)?;
        let event = event.into_owned();
        let action = action_of(&event.rule);
        flows.push(ObservedFlow { event, action });
    }
    Ok(Observation { flows, outcome })
}
