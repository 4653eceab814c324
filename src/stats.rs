//! Counters of a run: plain per-worker structs, summed when reported.

use std::fmt::Write as _;
use std::time::Duration;

use crate::classify::{CompiledPolicy, Verdict};
use crate::flow::FlowCounters;
use crate::policy::Severity;
use crate::wire::{Outcome, Problem};

/// What happened to the frames a worker read.
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
}

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

    /// Counts `frames` frames handed to flow tracking, `bytes` long in all:
    /// the same as [`PacketCounters::count`] for each with
    /// [`Outcome::Judge`], in one step (the decode loop counts the others
    /// one by one and these at the end).
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
    }
}

/// Violations counted by severity and by rule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViolationCounters {
    /// By severity, lowest first (see [`Severity::ALL`]).
    pub by_severity: [u64; 4],
    /// By rule id, in file order; the last entry is the default.
    pub by_rule: Vec<u64>,
}

impl ViolationCounters {
    /// Zeroed counters for a policy of `rules` rules.
    pub fn new(rules: usize) -> Self {
        ViolationCounters {
            by_severity: [0; 4],
            by_rule: vec![0; rules + 1],
        }
    }

    /// Counts one violation.
    pub fn count(&mut self, verdict: Verdict, policy: &CompiledPolicy) {
        let rule = policy.rule(verdict.rule);
        self.by_severity[rule.severity as usize] += 1;
        let slot = (verdict.rule as usize).min(self.by_rule.len().saturating_sub(1));
        if let Some(n) = self.by_rule.get_mut(slot) {
            *n += 1;
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &ViolationCounters) {
        for (sum, n) in self.by_severity.iter_mut().zip(other.by_severity) {
            *sum += n;
        }
        if self.by_rule.len() < other.by_rule.len() {
            self.by_rule.resize(other.by_rule.len(), 0);
        }
        for (sum, n) in self.by_rule.iter_mut().zip(&other.by_rule) {
            *sum += n;
        }
    }

    /// All violations.
    pub fn total(&self) -> u64 {
        self.by_severity.iter().sum()
    }

    /// True when some violation is at `severity` or above.
    pub fn any_at_or_above(&self, severity: Severity) -> bool {
        self.by_severity[severity as usize..].iter().any(|&n| n > 0)
    }
}

/// Everything a replay counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunStats {
    /// Frames and what they decoded to.
    pub packets: PacketCounters,
    /// Flows started, expired, evicted; unclaimed link-local packets.
    pub flows: FlowCounters,
    /// Violations.
    pub violations: ViolationCounters,
    /// Flows still held at the end.
    pub active_flows: u64,
}

impl RunStats {
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
            "  not judged     {} not IP, {} later fragments, {} ICMP not echo, {} link-local",
            p.not_ip, p.later_fragments, p.icmp_not_echo, self.flows.link_local
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
        let _ = writeln!(
            s,
            "  flows          {} ({} expired, {} evicted, {} in the table at the end)",
            self.flows.created, self.flows.expired, self.flows.evicted, self.active_flows
        );
        let v = &self.violations;
        let by_severity: Vec<String> = Severity::ALL
            .iter()
            .rev()
            .map(|sev| format!("{} {}", v.by_severity[*sev as usize], sev.as_str()))
            .collect();
        let _ = writeln!(
            s,
            "  violations     {} ({})",
            v.total(),
            by_severity.join(", ")
        );
        let rules = policy
            .rules()
            .iter()
            .chain(std::iter::once(policy.default_rule()));
        for (rule, &n) in rules.zip(&v.by_rule).filter(|(_, n)| **n > 0) {
            let _ = writeln!(s, "    {:<28} {n} ({})", rule.name, rule.severity.as_str());
        }
        if let Some(peak) = peak_resident_bytes() {
            let _ = writeln!(s, "  peak memory    {} MB resident", peak >> 20);
        }
        let _ = write!(s, "  duration       {secs:.3} s ({rate:.0} packets/s)");
        s
    }
}

/// The process's peak resident set size (`VmHWM`), where /proc tells it.
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
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
