//! What a shard counts: plain fields, added up when reported. The replay's
//! summary and the daemon's `/metrics` read the same [`Counters`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

use crate::classify::{CompiledPolicy, PolicyInForce, RuleId, ZoneId};
use crate::event::Violation;
use crate::flow::{FlowCounters, SkipReason};
use crate::policy::Severity;
use crate::wire::{Outcome, Problem, Tunnel, TunnelKind};

/// What happened to the frames read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketCounters {
    /// Frames read.
    pub packets: u64,
    /// Their bytes on the wire.
    pub bytes: u64,
    /// IP packets decoded and handed to flow tracking.
    pub decoded: u64,
    /// Non-IP frames: counted, not judged.
    pub not_ip: u64,
    /// IP fragments other than the first: counted, not judged.
    pub later_fragments: u64,
    /// ICMP other than echo: counted, not judged.
    pub icmp_not_echo: u64,
    /// Frames that could not be decoded, by [`Problem::index`].
    pub problems: [u64; Problem::ALL.len()],
    /// Frames taken out of a tunnel, by [`TUNNEL_KINDS`].
    pub decapsulated: [u64; TUNNEL_KINDS.len()],
}

/// The tunnels frames are taken out of, as counted.
pub const TUNNEL_KINDS: [TunnelKind; 4] = [
    TunnelKind::Erspan,
    TunnelKind::Vxlan,
    TunnelKind::Geneve,
    TunnelKind::Gre,
];

impl PacketCounters {
    /// Counts one frame of `wire_len` bytes that decoded to `outcome`.
    #[inline]
    pub fn count(&mut self, wire_len: u32, outcome: Outcome) {
        self.packets += 1;
        self.bytes += u64::from(wire_len);
        match outcome {
            Outcome::Judge => self.decoded += 1,
            Outcome::NotIp => self.not_ip += 1,
            Outcome::LaterFragment => self.later_fragments += 1,
            Outcome::IcmpNotEcho => self.icmp_not_echo += 1,
            Outcome::Problem(problem) => self.problems[problem.index()] += 1,
        }
    }

    /// Counts a frame taken out of `tunnel` (nothing when it was not).
    #[inline]
    pub fn count_tunnel(&mut self, tunnel: &Tunnel) {
        if tunnel.is_some()
            && let Some(slot) = TUNNEL_KINDS.iter().position(|&k| k == tunnel.kind)
        {
            self.decapsulated[slot] += 1;
        }
    }

    /// Counts `frames` frames handed to flow tracking, `bytes` long in all:
    /// the same as [`PacketCounters::count`] for each with
    /// [`Outcome::Judge`], in one step (the replay's decode loop counts the
    /// others one by one and these at the end).
    pub fn count_judged(&mut self, frames: u64, bytes: u64) {
        self.packets += frames;
        self.bytes += bytes;
        self.decoded += frames;
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &PacketCounters) {
        self.packets += other.packets;
        self.bytes += other.bytes;
        self.decoded += other.decoded;
        self.not_ip += other.not_ip;
        self.later_fragments += other.later_fragments;
        self.icmp_not_echo += other.icmp_not_echo;
        for (sum, n) in self.problems.iter_mut().zip(other.problems) {
            *sum += n;
        }
        for (sum, n) in self.decapsulated.iter_mut().zip(other.decapsulated) {
            *sum += n;
        }
    }
}

/// The labels of `segwatch_violations_total`, and what the replay's summary
/// counts by: names, never addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ViolationLabels {
    /// The deciding rule (`default` for the default verdict).
    pub rule: String,
    /// Its severity.
    pub severity: Severity,
    /// The initiator's zone.
    pub src_zone: String,
    /// The responder's zone.
    pub dest_zone: String,
}

/// Violations counted by their labels. A violation is looked up by the ids
/// of the policy that judged it; the names are resolved once per rule and
/// zone pair and policy generation (so the counts outlive a reload).
#[derive(Clone, Debug, Default)]
pub struct ViolationCounts {
    /// The generation the ids of `slots` belong to.
    generation: u32,
    /// (rule, source zone, destination zone) to an index of `labelled`.
    slots: HashMap<(RuleId, ZoneId, ZoneId), usize>,
    labelled: Vec<(ViolationLabels, u64)>,
    /// Of `labelled`'s counts, the excepted ones (same index).
    excepted: Vec<u64>,
    /// Exception index of the generation to an index of `by_exception`.
    exception_slots: HashMap<u32, usize>,
    /// Per exception id: violations it excepted, and violations its scope
    /// covered after it expired.
    by_exception: Vec<ExceptionHits>,
}

/// What one exception did (contract section 8's metrics).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExceptionHits {
    /// The exception's id.
    pub id: String,
    /// Violations it excepted.
    pub hits: u64,
    /// Violations its scope would have covered, after it expired.
    pub expired_hits: u64,
}

impl ViolationCounts {
    /// Counts `violation`, judged under `policy`; `expired` is the
    /// exception that would have covered it had it not expired.
    pub fn count(&mut self, policy: &PolicyInForce, violation: &Violation, expired: Option<u32>) {
        if policy.generation != self.generation {
            self.slots.clear();
            self.exception_slots.clear();
            self.generation = policy.generation;
        }
        if let Some(index) = violation.exception {
            self.exception_slot(policy, index).hits += 1;
        }
        if let Some(index) = expired {
            self.exception_slot(policy, index).expired_hits += 1;
        }
        let key = (
            violation.verdict.rule,
            violation.src_zone,
            violation.dest_zone,
        );
        let slot = match self.slots.get(&key) {
            Some(&slot) => slot,
            None => {
                let slot = self.slot_of(ViolationLabels::of(&policy.policy, violation));
                self.slots.insert(key, slot);
                slot
            }
        };
        self.labelled[slot].1 += 1;
        if violation.exception.is_some() {
            self.excepted[slot] += 1;
        }
    }

    fn exception_slot(&mut self, policy: &PolicyInForce, index: u32) -> &mut ExceptionHits {
        let slot = match self.exception_slots.get(&index) {
            Some(&slot) => slot,
            None => {
                let id = policy
                    .exceptions
                    .get(index)
                    .map_or_else(String::new, |e| e.id.clone());
                let slot = self.exception_slot_of(&id);
                self.exception_slots.insert(index, slot);
                slot
            }
        };
        &mut self.by_exception[slot]
    }

    fn exception_slot_of(&mut self, id: &str) -> usize {
        match self.by_exception.iter().position(|e| e.id == id) {
            Some(slot) => slot,
            None => {
                self.by_exception.push(ExceptionHits {
                    id: id.to_owned(),
                    ..ExceptionHits::default()
                });
                self.by_exception.len() - 1
            }
        }
    }

    fn slot_of(&mut self, labels: ViolationLabels) -> usize {
        match self.labelled.iter().position(|(l, _)| *l == labels) {
            Some(slot) => slot,
            None => {
                self.labelled.push((labels, 0));
                self.excepted.push(0);
                self.labelled.len() - 1
            }
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &ViolationCounts) {
        for ((labels, n), excepted) in other.labelled.iter().zip(&other.excepted) {
            let slot = self.slot_of(labels.clone());
            self.labelled[slot].1 += n;
            self.excepted[slot] += excepted;
        }
        for hits in &other.by_exception {
            let slot = self.exception_slot_of(&hits.id);
            self.by_exception[slot].hits += hits.hits;
            self.by_exception[slot].expired_hits += hits.expired_hits;
        }
    }

    /// The excepted counts by label set, in the order first seen (label
    /// sets without an excepted violation left out).
    pub fn excepted_by_labels(&self) -> impl Iterator<Item = (&ViolationLabels, u64)> {
        self.labelled
            .iter()
            .zip(&self.excepted)
            .filter(|(_, n)| **n > 0)
            .map(|((labels, _), n)| (labels, *n))
    }

    /// Excepted violations.
    pub fn excepted_total(&self) -> u64 {
        self.excepted.iter().sum()
    }

    /// Hits and expired hits per exception id, in the order first seen.
    pub fn by_exception(&self) -> &[ExceptionHits] {
        &self.by_exception
    }

    /// The counts by label set, in the order first seen.
    pub fn by_labels(&self) -> impl Iterator<Item = (&ViolationLabels, u64)> {
        self.labelled.iter().map(|(labels, n)| (labels, *n))
    }

    /// All violations.
    pub fn total(&self) -> u64 {
        self.labelled.iter().map(|(_, n)| n).sum()
    }

    /// Violations by severity, lowest first (see [`Severity::ALL`]).
    pub fn by_severity(&self) -> [u64; 4] {
        let mut counts = [0; 4];
        for (labels, n) in &self.labelled {
            counts[labels.severity as usize] += n;
        }
        counts
    }

    /// Violations decided by the rule named `rule`.
    pub fn of_rule(&self, rule: &str) -> u64 {
        self.labelled
            .iter()
            .filter(|(labels, _)| labels.rule == rule)
            .map(|(_, n)| n)
            .sum()
    }

    /// True when some violation that no exception excepts is at `severity`
    /// or above (`--fail-on`).
    pub fn any_at_or_above(&self, severity: Severity) -> bool {
        self.at_or_above(severity) > 0
    }

    /// Violations that no exception excepts at `severity` or above.
    pub fn at_or_above(&self, severity: Severity) -> u64 {
        self.labelled
            .iter()
            .zip(&self.excepted)
            .filter(|((labels, _), _)| labels.severity >= severity)
            .map(|((_, n), excepted)| n.saturating_sub(*excepted))
            .sum()
    }
}

impl ViolationLabels {
    /// The labels of a violation judged under `policy`.
    pub fn of(policy: &CompiledPolicy, violation: &Violation) -> ViolationLabels {
        let rule = policy.rule(violation.verdict.rule);
        ViolationLabels {
            rule: rule.name.clone(),
            severity: rule.severity,
            src_zone: policy.zone(violation.src_zone).name.clone(),
            dest_zone: policy.zone(violation.dest_zone).name.clone(),
        }
    }
}

/// Everything a shard (or a run, added up) counted.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    /// Frames and what they decoded to.
    pub packets: PacketCounters,
    /// Flows started, expired, evicted.
    pub flows: FlowCounters,
    /// Packets to multicast or broadcast, or from an unspecified address,
    /// that no zone claims: counted, not judged.
    pub link_local: u64,
    /// Flows held now (at the end, for a run).
    pub active_flows: u64,
    /// Flows under application inspection now.
    pub inspections_active: u64,
    /// Bytes the inspections keep now (their buffers).
    pub inspection_bytes: u64,
    /// Violations.
    pub violations: ViolationCounts,
}

impl Counters {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counters) {
        self.packets.add(&other.packets);
        self.flows.add(&other.flows);
        self.link_local += other.link_local;
        self.active_flows += other.active_flows;
        self.inspections_active += other.inspections_active;
        self.inspection_bytes += other.inspection_bytes;
        self.violations.add(&other.violations);
    }

    /// The human summary `replay` prints to stderr.
    pub fn summary(&self, policy: &CompiledPolicy, elapsed: Duration) -> String {
        let mut s = String::new();
        let p = &self.packets;
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            p.packets as f64 / secs
        } else {
            0.0
        };
        let _ = writeln!(s, "segwatch replay summary (policy {})", policy.name());
        let _ = writeln!(s, "  packets        {} ({} bytes)", p.packets, p.bytes);
        let _ = writeln!(
            s,
            "  not judged     {} not IP, {} later fragment{}, {} ICMP not echo, {} link-local",
            p.not_ip,
            p.later_fragments,
            if p.later_fragments == 1 { "" } else { "s" },
            p.icmp_not_echo,
            self.link_local
        );
        let problems: Vec<String> = Problem::ALL
            .iter()
            .filter(|k| p.problems[k.index()] > 0)
            .map(|k| format!("{} {}", p.problems[k.index()], k.as_str()))
            .collect();
        let problems = if problems.is_empty() {
            "none".to_string()
        } else {
            problems.join(", ")
        };
        let _ = writeln!(s, "  decode problems {problems}");
        let tunnels: u64 = p.decapsulated.iter().sum();
        if tunnels > 0 {
            let by_kind: Vec<String> = TUNNEL_KINDS
                .iter()
                .zip(p.decapsulated)
                .filter(|(_, n)| *n > 0)
                .map(|(kind, n)| format!("{n} {kind}"))
                .collect();
            let _ = writeln!(
                s,
                "  tunnels        {tunnels} frame{} decapsulated ({})",
                if tunnels == 1 { "" } else { "s" },
                by_kind.join(", ")
            );
        }
        let _ = writeln!(
            s,
            "  flows          {} ({} expired, {} evicted, {} in the table at the end)",
            self.flows.created, self.flows.expired, self.flows.evicted, self.active_flows
        );
        let skipped = self.flows.inspections_skipped_total();
        if skipped > 0 {
            // Only under pressure (a flood of new flows or of kept bytes):
            // the runs of an ordinary capture print what they always did.
            let reasons: Vec<String> = SkipReason::ALL
                .iter()
                .filter(|r| self.flows.inspections_skipped[r.index()] > 0)
                .map(|r| {
                    format!(
                        "{} {}",
                        self.flows.inspections_skipped[r.index()],
                        r.as_str()
                    )
                })
                .collect();
            let _ = writeln!(
                s,
                "  inspections    {skipped} ended early, flows judged with what was found ({})",
                reasons.join(", ")
            );
        }
        let v = &self.violations;
        let by_severity = v.by_severity();
        let severities: Vec<String> = Severity::ALL
            .iter()
            .rev()
            .map(|sev| format!("{} {}", by_severity[*sev as usize], sev.as_str()))
            .collect();
        let _ = writeln!(
            s,
            "  violations     {} ({})",
            v.total(),
            severities.join(", ")
        );
        let rules = policy
            .rules()
            .iter()
            .chain(std::iter::once(policy.default_rule()));
        for rule in rules {
            let n = v.of_rule(&rule.name);
            if n > 0 {
                let _ = writeln!(s, "    {:<28} {n} ({})", rule.name, rule.severity.as_str());
            }
        }
        if let Some(peak) = crate::sys::peak_resident_bytes() {
            let _ = writeln!(s, "  peak memory    {} MB resident", peak >> 20);
        }
        let _ = write!(s, "  duration       {secs:.3} s ({rate:.0} packets/s)");
        s
    }
}

/// A worker's counters as the control plane reads them: a copy of its
/// shard's, published once per batch. The lock is taken by the worker once
/// per batch and by a reader (a scrape): never per packet.
#[derive(Debug, Default)]
pub struct PublishedCounters(Mutex<Counters>);

impl PublishedCounters {
    /// Replaces the published copy with `counters` (reusing its memory).
    pub fn publish(&self, counters: &Counters) {
        if let Ok(mut published) = self.0.lock() {
            published.clone_from(counters);
        }
    }

    /// The latest published copy.
    pub fn snapshot(&self) -> Counters {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judged_frames_count_at_once_as_one_by_one() {
        let outcomes = [
            Outcome::Judge,
            Outcome::NotIp,
            Outcome::Judge,
            Outcome::LaterFragment,
            Outcome::IcmpNotEcho,
            Outcome::Problem(Problem::ALL[0]),
            Outcome::Problem(Problem::ALL[Problem::ALL.len() - 1]),
            Outcome::Judge,
        ];
        // Both start from the same earlier counts.
        let earlier = PacketCounters {
            packets: 1,
            decoded: 1,
            bytes: 10,
            ..PacketCounters::default()
        };
        let mut one_by_one = earlier;
        let mut run = earlier;
        let (mut judged, mut judged_bytes) = (0, 0);
        for (n, &outcome) in outcomes.iter().enumerate() {
            let len = 60 + n as u32;
            one_by_one.count(len, outcome);
            if outcome == Outcome::Judge {
                judged += 1;
                judged_bytes += u64::from(len);
            } else {
                run.count(len, outcome);
            }
        }
        run.count_judged(judged, judged_bytes);
        assert_eq!(run, one_by_one);
        assert_eq!(run.decoded, 4);
    }
}
