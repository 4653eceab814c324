//! A shard's evidence table: flows and bytes per bucket (hour, zones,
//! service, deciding rule, exception), in compact ids of the policy that
//! judged them. A flow's verdict record keeps the index of its bucket, so a
//! packet adds its bytes with one range check and one addition; a bucket is
//! looked up by key only when a flow starts, is judged again, or its packets
//! cross into another hour.

use std::collections::HashMap;

use crate::app::App;
use crate::classify::{CompiledPolicy, RuleId, Verdict, ZoneId};
use crate::wire::Transport;

/// Nanoseconds in an hour.
pub const HOUR_NS: u64 = 3_600_000_000_000;

/// A flow record's bucket index when evidence is off (or not yet placed).
pub const NO_BUCKET: u32 = u32::MAX;

/// No exception (in [`BucketKey::exception`]).
pub const NO_EXCEPTION: u32 = u32::MAX;

/// What a bucket counts: one hour of one kind of flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketKey {
    /// Hours since the epoch (UTC).
    pub hour: u32,
    /// Initiator's zone.
    pub src_zone: ZoneId,
    /// Responder's zone.
    pub dest_zone: ZoneId,
    /// The event's `service` as [`CompiledPolicy::service_key`] numbers it.
    pub service: u32,
    /// The deciding rule ([`Verdict::DEFAULT_RULE`] for the default).
    pub rule: RuleId,
    /// The exception that excepts the flow's violation, or
    /// [`NO_EXCEPTION`].
    pub exception: u32,
}

/// A flow's kind, without the hour: what its bucket is found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowClass {
    /// Initiator's and responder's zones.
    pub zones: (ZoneId, ZoneId),
    /// The final verdict.
    pub verdict: Verdict,
    /// Transport and responder port (for the service's label).
    pub service: (Transport, u16),
    /// Its application, when detection identified one (a service that
    /// requires an application names only flows of it).
    pub app: Option<App>,
    /// The exception that excepts its violation, if any.
    pub exception: Option<u32>,
}

/// One bucket's counts.
#[derive(Clone, Copy, Debug)]
pub struct Bucket {
    /// Its key.
    pub key: BucketKey,
    /// Start of its hour, ns since the epoch.
    hour_start_ns: u64,
    /// The verdict (for the service's label).
    pub verdict: Verdict,
    /// Transport and responder port of its first flow (for the service's
    /// label: every flow of the bucket has the same).
    pub service: (Transport, u16),
    /// Its first flow's application (for the service's label: every flow
    /// of the bucket has the same service).
    pub app: Option<App>,
    /// Flows started in the hour.
    pub flows: u64,
    /// Transport payload bytes seen in the hour.
    pub bytes: u64,
}

/// A shard's buckets. Bounded by the policy's zones, rules and services
/// times the hours held, never by the traffic.
#[derive(Debug, Default)]
pub struct EvidenceTable {
    buckets: Vec<Bucket>,
    index: HashMap<BucketKey, u32, foldhash::fast::FixedState>,
    /// What the first bucket's index is: after [`EvidenceTable::take`] the
    /// indices go on from where they were, so a flow still holding an
    /// index of before never finds someone else's bucket.
    base: u32,
}

impl EvidenceTable {
    /// An empty table.
    pub fn new() -> EvidenceTable {
        EvidenceTable::default()
    }

    /// True when it counted nothing.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The buckets.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    /// The bucket of `class` in the hour of `ts_ns`, counting one flow when
    /// `count_flow`: its index for the flow's record.
    pub fn place(
        &mut self,
        policy: &CompiledPolicy,
        class: &FlowClass,
        ts_ns: u64,
        count_flow: bool,
    ) -> u32 {
        let (transport, port) = class.service;
        let key = BucketKey {
            hour: (ts_ns / HOUR_NS) as u32,
            src_zone: class.zones.0,
            dest_zone: class.zones.1,
            service: policy.service_key(class.verdict, transport, port, class.app),
            rule: class.verdict.rule,
            exception: class.exception.unwrap_or(NO_EXCEPTION),
        };
        let slot = self.slot_of(key, class.verdict, class.service, class.app);
        if count_flow {
            self.buckets[slot as usize].flows += 1;
        }
        self.base.wrapping_add(slot)
    }

    fn slot_of(
        &mut self,
        key: BucketKey,
        verdict: Verdict,
        service: (Transport, u16),
        app: Option<App>,
    ) -> u32 {
        if let Some(&slot) = self.index.get(&key) {
            return slot;
        }
        let slot = self.buckets.len() as u32;
        self.buckets.push(Bucket {
            key,
            hour_start_ns: u64::from(key.hour) * HOUR_NS,
            verdict,
            service,
            app,
            flows: 0,
            bytes: 0,
        });
        self.index.insert(key, slot);
        slot
    }

    /// Adds a packet's `bytes` at `ts_ns` to the bucket at `index`; returns
    /// the index to keep (another when the packet is of another hour).
    /// `None` when `index` is no longer held (see [`EvidenceTable::take`]):
    /// the caller places the flow again.
    #[inline(always)]
    pub fn add_bytes(&mut self, index: u32, ts_ns: u64, bytes: u16) -> Option<u32> {
        let slot = index.wrapping_sub(self.base) as usize;
        let bucket = self.buckets.get_mut(slot)?;
        if ts_ns.wrapping_sub(bucket.hour_start_ns) < HOUR_NS {
            bucket.bytes += u64::from(bytes);
            return Some(index);
        }
        Some(self.next_hour(slot, ts_ns, bytes))
    }

    #[cold]
    #[inline(never)]
    fn next_hour(&mut self, slot: usize, ts_ns: u64, bytes: u16) -> u32 {
        let old = self.buckets[slot];
        let key = BucketKey {
            hour: (ts_ns / HOUR_NS) as u32,
            ..old.key
        };
        let slot = self.slot_of(key, old.verdict, old.service, old.app);
        self.buckets[slot as usize].bytes += u64::from(bytes);
        self.base.wrapping_add(slot)
    }

    /// Takes what was counted and starts empty; the flows' indices of
    /// before are recognised as gone (the daemon hands its tables over
    /// this way).
    pub fn take(&mut self) -> EvidenceTable {
        let base = self.base.wrapping_add(self.buckets.len() as u32);
        let taken = std::mem::take(self);
        self.base = base;
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CompiledPolicy {
        let path = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/policies/imaging-with-applications.toml"
        ));
        let (policy, _) = crate::policy::load_policy_file(path).expect("bundled policy loads");
        CompiledPolicy::compile(&policy)
    }

    fn class(rule: RuleId) -> FlowClass {
        FlowClass {
            zones: (0, 1),
            verdict: Verdict {
                rule,
                rule_service: Verdict::FIRST_NAMED,
            },
            service: (Transport::Tcp, 104),
            app: None,
            exception: None,
        }
    }

    #[test]
    fn flows_count_in_their_hour_and_bytes_in_their_packets_hour() {
        let policy = policy();
        let mut table = EvidenceTable::new();
        let start = 10 * HOUR_NS + 5;
        let a = table.place(&policy, &class(0), start, true);
        let b = table.place(&policy, &class(0), start + 10, true);
        assert_eq!(a, b, "one bucket per kind and hour");
        assert_eq!(table.add_bytes(a, start + 20, 100), Some(a));
        let next = table.add_bytes(a, 11 * HOUR_NS, 7).unwrap();
        assert_ne!(next, a);
        assert_eq!(table.add_bytes(next, 11 * HOUR_NS + 1, 3), Some(next));
        let buckets = table.buckets();
        assert_eq!((buckets[0].flows, buckets[0].bytes), (2, 100));
        assert_eq!((buckets[1].flows, buckets[1].bytes), (0, 10));
        assert_eq!(buckets[1].key.hour, 11);
        let other = table.place(&policy, &class(1), start, true);
        assert_ne!(other, a);
    }

    #[test]
    fn indices_of_before_a_take_are_never_someone_elses() {
        let policy = policy();
        let mut table = EvidenceTable::new();
        let a = table.place(&policy, &class(0), HOUR_NS, true);
        let taken = table.take();
        assert_eq!(taken.buckets().len(), 1);
        assert!(table.is_empty());
        assert_eq!(table.add_bytes(a, HOUR_NS, 1), None);
        let b = table.place(&policy, &class(1), HOUR_NS, true);
        assert_ne!(a, b);
        assert_eq!(table.add_bytes(b, HOUR_NS, 1), Some(b));
    }
}
