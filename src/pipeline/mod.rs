//! The per-packet pipeline that the replay and the daemon share: a
//! [`Shard`] decodes (for the daemon; the replay decodes in parallel and
//! hands it packets), tracks, judges, makes the violations and the
//! inventory's sightings, and counts. The drivers differ only where the
//! contract says they must: where packets come from, who sweeps idle flows
//! and when, and where the output goes.

#![forbid(unsafe_code)]

mod counters;
mod shard;
mod starts;

pub use counters::{
    Counters, ExceptionHits, PacketCounters, PublishedCounters, TUNNEL_KINDS, ViolationCounts,
    ViolationLabels,
};
pub use shard::{FlowVerdict, Shard, ShardOptions, ShardOutput};
pub use starts::{StartNotice, TrackedRanges};
