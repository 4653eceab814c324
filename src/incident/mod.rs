//! Incidents (contract section 7): the unit of work of an analyst, folded
//! from violations and flow starts.
//!
//! The fold is pure and deterministic: it is given capture-ordered inputs
//! (violations with their exception, and [`crate::pipeline::StartNotice`]s of new flows to
//! tracked responders) and the times of the frames between them
//! ([`Timeline`]), and produces incident records, each with a [`SortKey`]
//! that places it in the output exactly as the contract orders records at
//! one packet: closes of incidents found over (in opening order), then the
//! packet's violation event, then the open or update it causes, then sweep
//! and scan records. It has no clock and does no I/O.
//!
//! All its state is keyed by the initiator (violation incidents by rule,
//! `src_ip`, ...; sweeps and scans by initiator), so a driver may split it
//! into [`PARTITIONS`] folds by initiator address, run them in parallel on
//! their own inputs, and merge their records by sort key: the records do
//! not depend on how many threads ran them.

#![forbid(unsafe_code)]

mod fold;
mod timeline;
mod track;

pub use fold::{Fold, FoldCounters, ViolationInput};
pub use timeline::Timeline;

use std::time::Duration;

use crate::event::{IncidentKind, IncidentRecord, SourceDevice, Violation};
use crate::policy::Severity;

/// The fold's maps: keyed by addresses an attacker may choose, so seeded
/// at random per run (foldhash's `RandomState`), and several times cheaper
/// than SipHash at a lookup or two per new flow.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// An address (IPv4 in the low 32 bits) held in two 8-byte words: a `u128`
/// field aligns its struct, and every map bucket holding it, to 16 bytes,
/// which pads the fold's per-incident and per-initiator state by a quarter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct Addr([u64; 2]);

impl Addr {
    #[inline]
    fn new(addr: u128) -> Addr {
        Addr([addr as u64, (addr >> 64) as u64])
    }

    #[inline]
    fn get(self) -> u128 {
        u128::from(self.0[0]) | u128::from(self.0[1]) << 64
    }
}

/// Number of fold partitions, whatever the number of threads (the state
/// bounds are per partition, so this fixes what is tracked).
pub const PARTITIONS: usize = 16;

/// The partition of an initiator.
#[inline]
pub fn partition_of(ipv6: bool, initiator: u128) -> usize {
    let folded = (initiator as u64) ^ ((initiator >> 64) as u64) ^ u64::from(ipv6);
    let mixed = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> 60) as usize % PARTITIONS
}

/// How incidents are made (the daemon's `[incidents]` table, replay's
/// `--incident-*` flags). Independent of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IncidentSettings {
    /// An incident is over when nothing joined it for longer than this.
    pub idle: Duration,
    /// A violation this long after its incident's `first_seen` opens a new
    /// one.
    pub max_age: Duration,
    /// At most one `update` per this much capture time.
    pub update_interval: Duration,
    /// Distinct hosts on one protocol and port that make a sweep.
    pub sweep_hosts: u32,
    /// Distinct protocol/port pairs of one host that make a scan.
    pub scan_ports: u32,
    /// The sweep and scan window.
    pub window: Duration,
    /// Severity of sweep incidents.
    pub sweep_severity: Severity,
    /// Severity of scan incidents.
    pub scan_severity: Severity,
    /// Initiators tracked for sweeps and scans at once (the least recently
    /// active is dropped first, and counted).
    pub max_initiators: usize,
    /// Protocol/port and host keys tracked per initiator.
    pub max_keys_per_initiator: usize,
    /// Incidents open at once; a violation or sweep past it opens none
    /// (counted).
    pub max_open: usize,
    /// Responder ranges counted for sweeps and scans besides the private
    /// ones: (IPv6, network, mask).
    pub track_to: Vec<(bool, u128, u128)>,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        IncidentSettings {
            idle: Duration::from_secs(15 * 60),
            max_age: Duration::from_secs(24 * 3600),
            update_interval: Duration::from_secs(5 * 60),
            sweep_hosts: 32,
            scan_ports: 32,
            window: Duration::from_secs(60),
            sweep_severity: Severity::High,
            scan_severity: Severity::High,
            max_initiators: 100_000,
            max_keys_per_initiator: 4_096,
            max_open: 1_000_000,
            track_to: Vec::new(),
        }
    }
}

/// Where a record goes in the output. Records and events are merged by it;
/// ties never occur between two records of one run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey {
    /// Capture position of the packet that produced it ([`END`] after the
    /// last).
    pub position: u64,
    /// At one packet: 0 closes, 1 violation events with the opens and
    /// updates they cause, 2 sweep and scan records.
    pub phase: u8,
    /// Closes: the incident's opening order.
    pub opened: OpenOrder,
    /// Violation events: the event's time; sweeps and scans: the kind.
    pub x: u64,
    /// Violation events: the flow id.
    pub y: u64,
    /// 0 for a violation event, 1 for the incident record it causes.
    pub sub: u8,
}

/// The position of an incident's `open` record, as a sort key without its
/// own `opened` (closes come in this order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpenOrder {
    /// See [`SortKey::position`].
    pub position: u64,
    /// See [`SortKey::phase`].
    pub phase: u8,
    /// See [`SortKey::x`].
    pub x: u64,
    /// See [`SortKey::y`].
    pub y: u64,
}

/// The position of records after the capture's last packet.
pub const END: u64 = u64::MAX;

impl SortKey {
    /// The key of a violation event made at capture position `position`,
    /// and of the incident record it causes (`sub` 1): the replay's event
    /// order.
    pub fn of_violation(violation: &Violation, sub: u8) -> SortKey {
        SortKey {
            position: violation.packet_index,
            phase: 1,
            opened: OpenOrder::default(),
            x: violation.ts_ns,
            y: violation.flow_id,
            sub,
        }
    }

    fn open_order(&self) -> OpenOrder {
        OpenOrder {
            position: self.position,
            phase: self.phase,
            x: self.x,
            y: self.y,
        }
    }
}

/// What the fold hands out, in any order within a batch (the driver merges
/// by sort key).
pub trait Emit {
    /// A violation event, with the incident it opened or joined.
    fn violation(&mut self, key: SortKey, violation: &Violation, incident_id: Option<u64>);
    /// An incident record.
    fn record(&mut self, key: SortKey, record: IncidentRecord);
}

/// What the device inventory knows of an initiator as of a capture
/// position (contract section 7: "from the frames before the record").
pub trait Devices {
    /// The device at `addr` from the frames before `position`.
    fn device_as_of(&self, ipv6: bool, addr: u128, position: u64) -> Option<SourceDevice>;
}

impl Devices for crate::inventory::Inventory {
    fn device_as_of(&self, ipv6: bool, addr: u128, position: u64) -> Option<SourceDevice> {
        crate::inventory::Inventory::device_as_of(self, ipv6, addr, position)
    }
}

/// No inventory: records carry no `src_device`.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDevices;

impl Devices for NoDevices {
    fn device_as_of(&self, _: bool, _: u128, _: u64) -> Option<SourceDevice> {
        None
    }
}

/// An incident's id (contract section 7): the position of the first packet
/// of the flow that opened it and its kind, mixed with the run's salt
/// through the flow ids' bijection, so that two incidents of a run never
/// share one.
pub fn incident_id(flow_position: u64, kind: IncidentKind, salt: u64) -> u64 {
    let kind = match kind {
        IncidentKind::Violation => 0,
        IncidentKind::Sweep => 1,
        IncidentKind::Scan => 2,
    };
    crate::flow::flow_id(
        flow_position.wrapping_mul(4).wrapping_add(kind),
        salt ^ 0x1ac1_de47_0000_0000,
    )
}

/// The capture position of a flow's first packet, from its id: the inverse
/// of [`crate::flow::flow_id`] (the SplitMix64 finalizer's steps undone in
/// reverse order).
pub fn flow_position(flow_id: u64, salt: u64) -> u64 {
    let mut z = flow_id;
    z ^= (z >> 31) ^ (z >> 62);
    z = z.wrapping_mul(0x319642b2d24d8ec3);
    z ^= (z >> 27) ^ (z >> 54);
    z = z.wrapping_mul(0x96de1b173f119089);
    z ^= (z >> 30) ^ (z >> 60);
    z ^ salt
}

#[cfg(test)]
mod tests;
