//! Segmentation evidence (issue 18): the hourly summary that reports are
//! built from, whether from captures or from the daemon's state directory.
//!
//! An hour (UTC, capture time) holds flows and bytes per (source zone,
//! destination zone, service, outcome), where the outcome is allowed by a
//! rule (with the rule), allowed by the default action, a violation (with
//! rule and severity), or excepted (with the exception); incidents closed
//! by kind, severity and rule, and one by one up to a bound; the devices
//! seen; and the sensors whose evidence it is. Violations per rule and
//! exceptions hit are the traffic rows whose outcome is a violation or
//! excepted. A flow counts in the hour it started, with its final verdict;
//! bytes (transport payload) count in the hour their packet was seen.
//!
//! Its size is bounded by the policy (zones, rules, services, exceptions)
//! and the inventory's device bound, never by the traffic.
//!
//! The shard counts into an [`EvidenceTable`] of compact ids; the driver
//! names it into [`Evidence`] with the policy that judged it.

#![forbid(unsafe_code)]

pub mod state;
mod summary;
mod table;

pub use summary::{
    DeviceSeen, Evidence, Hour, IncidentKey, IncidentSeen, MAX_INCIDENTS_PER_HOUR, Outcome,
    TrafficKey, Volume,
};
pub use table::{Bucket, BucketKey, EvidenceTable, FlowClass, HOUR_NS, NO_BUCKET, NO_EXCEPTION};
