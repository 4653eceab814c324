//! Exceptions (contract section 8): accepted risks with a reason, an owner
//! and an end.
//!
//! [`load_exceptions_file`] reads an exceptions file (TOML, `[[exceptions]]`
//! only) and checks it against the policy it will run with: every rule, zone
//! and service name must exist, `any` is refused, at least one scope key is
//! given, `expires` is at most 366 days after `created`. Problems come back
//! as [`Diagnostic`]s with file, line, column and hint, like a policy's.
//!
//! [`Exceptions`] is the compiled matcher. A violation is matched once, when
//! it is made: the first exception in file order whose scope holds it and
//! whose validity `[created, expires)` holds its flow's first packet's
//! capture time names it. The exceptions are indexed by rule, so a violation
//! is tried only against those naming its rule and those naming none,
//! merged in file order: a thousand exceptions cost a violation a few
//! comparisons.
//!
//! This module sits below `classify`, whose `PolicyInForce` holds the
//! compiled exceptions beside the policy: it names rules and zones by the
//! same indices (`classify` checks that the constants agree).

#![forbid(unsafe_code)]

mod load;
mod quick;
mod raw;
mod time;

pub use load::{PolicyNames, load_exceptions_file, load_exceptions_str, quick_reader_agrees};
pub use time::{days_from_civil, format_date};

use std::collections::HashMap;

use crate::policy::PortRange;
use crate::wire::Transport;

pub use crate::policy::{Diagnostic, Level, PolicyError as ExceptionsError};

/// Index of a rule in file order, as `classify::RuleId`.
pub type RuleId = u32;
/// Index of a zone in file order, as `classify::ZoneId`.
pub type ZoneId = u32;
/// The default verdict's rule id (`classify::Verdict::DEFAULT_RULE`).
pub const DEFAULT_RULE: RuleId = u32::MAX;
/// The zone id of `unknown` (`classify::ZoneTable::UNKNOWN`).
pub const UNKNOWN_ZONE: ZoneId = u32::MAX;

/// Nanoseconds in a day.
pub const DAY_NS: u64 = 86_400 * 1_000_000_000;

/// What an exception's `rule` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RuleScope {
    /// A rule of the policy (or the default verdict).
    Rule(RuleId),
    /// Sweep incidents (contract section 7).
    Sweep,
    /// Scan incidents.
    Scan,
}

/// One entry of `from` or `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointScope {
    /// A zone by membership (`unknown` included).
    Zone(ZoneId),
    /// A network by containment; a bare address is a /32 or /128.
    Network {
        /// True for IPv6.
        ipv6: bool,
        /// The network's address, host bits cleared.
        addr: u128,
        /// Its mask.
        mask: u128,
    },
}

impl EndpointScope {
    /// True when the endpoint (`addr` in `zone`) is in scope.
    #[inline]
    pub fn holds(&self, ipv6: bool, addr: u128, zone: ZoneId) -> bool {
        match *self {
            EndpointScope::Zone(z) => z == zone,
            EndpointScope::Network {
                ipv6: v6,
                addr: net,
                mask,
            } => v6 == ipv6 && addr & mask == net,
        }
    }
}

/// One entry of `services`: what it matches of a flow's protocol and
/// responder port, like a rule's service.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceScope {
    /// TCP port ranges.
    pub tcp: Vec<PortRange>,
    /// UDP port ranges.
    pub udp: Vec<PortRange>,
    /// ICMP and ICMPv6 echo.
    pub icmp: bool,
}

impl ServiceScope {
    /// True when a flow on `transport` to responder port `port` matches.
    #[inline]
    pub fn holds(&self, transport: Transport, port: u16) -> bool {
        match transport {
            Transport::Tcp => self.tcp.iter().any(|r| r.contains(port)),
            Transport::Udp => self.udp.iter().any(|r| r.contains(port)),
            Transport::EchoRequest | Transport::EchoReply => self.icmp,
            Transport::Other => false,
        }
    }
}

/// One exception, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exception {
    /// Its id (unique in the file).
    pub id: String,
    /// Why the risk is accepted.
    pub reason: String,
    /// Who owns it.
    pub owner: String,
    /// The change ticket, if given.
    pub ticket: Option<String>,
    /// Start of validity, ns since the epoch; none: from the start of any
    /// capture.
    pub created: Option<u64>,
    /// End of validity (exclusive), ns since the epoch.
    pub expires: u64,
    /// `rule`, if given.
    pub rule: Option<RuleScope>,
    /// `from`, if given.
    pub from: Option<Vec<EndpointScope>>,
    /// `to`, if given.
    pub to: Option<Vec<EndpointScope>>,
    /// `services`, if given.
    pub services: Option<Vec<ServiceScope>>,
    /// Line of its `[[exceptions]]` header (for warnings).
    pub line: usize,
}

/// What a flow looks like to an exception's scope.
#[derive(Clone, Copy, Debug)]
pub struct Subject {
    /// The deciding rule, or sweep/scan for those incidents.
    pub rule: RuleScope,
    /// True for IPv6.
    pub ipv6: bool,
    /// Initiator's address and zone.
    pub src: (u128, ZoneId),
    /// Responder's address and zone; none for a sweep (many responders).
    pub dest: Option<(u128, ZoneId)>,
    /// The flow's transport and responder port; none for a sweep or scan.
    pub service: Option<(Transport, u16)>,
    /// Capture time of the flow's first packet (ns).
    pub ts_ns: u64,
}

impl Exception {
    /// True when the scope holds `subject` (validity aside).
    pub fn covers(&self, subject: &Subject) -> bool {
        if let Some(rule) = self.rule
            && rule != subject.rule
        {
            return false;
        }
        if let Some(from) = &self.from {
            let (addr, zone) = subject.src;
            if !from.iter().any(|s| s.holds(subject.ipv6, addr, zone)) {
                return false;
            }
        }
        if let Some(to) = &self.to {
            match subject.dest {
                Some((addr, zone)) => {
                    if !to.iter().any(|s| s.holds(subject.ipv6, addr, zone)) {
                        return false;
                    }
                }
                None => return false,
            }
        }
        if let Some(services) = &self.services {
            match subject.service {
                Some((transport, port)) => {
                    if !services.iter().any(|s| s.holds(transport, port)) {
                        return false;
                    }
                }
                None => return false,
            }
        }
        true
    }

    /// True when it is valid at capture time `ts_ns`.
    pub fn valid_at(&self, ts_ns: u64) -> bool {
        self.created.is_none_or(|c| c <= ts_ns) && ts_ns < self.expires
    }
}

/// How a violation fared against the exceptions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Matched {
    /// The exception (index in file order) that excepts it.
    pub excepted: Option<u32>,
    /// When not excepted: the first exception in file order that would have
    /// covered it had it not expired (its "expired hit").
    pub expired: Option<u32>,
}

/// The compiled exceptions of a file, indexed for matching.
#[derive(Clone, Debug, Default)]
pub struct Exceptions {
    list: Vec<Exception>,
    /// Exceptions naming each rule, in file order (looked up once per
    /// violation: foldhash rather than SipHash).
    by_rule: HashMap<RuleScope, Vec<u32>, foldhash::fast::RandomState>,
    /// Exceptions naming no rule, in file order.
    ruleless: Vec<u32>,
}

impl Exceptions {
    /// Indexes `list` (in file order).
    pub fn new(list: Vec<Exception>) -> Exceptions {
        let mut by_rule: HashMap<RuleScope, Vec<u32>, foldhash::fast::RandomState> =
            HashMap::default();
        let mut ruleless = Vec::new();
        for (i, exception) in list.iter().enumerate() {
            match exception.rule {
                Some(rule) => by_rule.entry(rule).or_default().push(i as u32),
                None => ruleless.push(i as u32),
            }
        }
        Exceptions {
            list,
            by_rule,
            ruleless,
        }
    }

    /// The exceptions, in file order.
    pub fn list(&self) -> &[Exception] {
        &self.list
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The exception at `index`.
    pub fn get(&self, index: u32) -> Option<&Exception> {
        self.list.get(index as usize)
    }

    /// Matches `subject`: the first exception in file order that covers it
    /// and is valid at its time; else the first that covers it and has
    /// expired by then.
    pub fn match_subject(&self, subject: &Subject) -> Matched {
        let mut matched = Matched::default();
        if self.list.is_empty() {
            return matched;
        }
        let named = self
            .by_rule
            .get(&subject.rule)
            .map_or(&[][..], Vec::as_slice);
        let (mut a, mut b) = (named.iter().peekable(), self.ruleless.iter().peekable());
        // The two lists merged in file order.
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&&x), Some(&&y)) => {
                    if x < y {
                        a.next();
                        x
                    } else {
                        b.next();
                        y
                    }
                }
                (Some(&&x), None) => {
                    a.next();
                    x
                }
                (None, Some(&&y)) => {
                    b.next();
                    y
                }
                (None, None) => return matched,
            };
            let exception = &self.list[next as usize];
            if !exception.covers(subject) {
                continue;
            }
            if exception.valid_at(subject.ts_ns) {
                matched.excepted = Some(next);
                matched.expired = None;
                return matched;
            }
            if subject.ts_ns >= exception.expires && matched.expired.is_none() {
                matched.expired = Some(next);
            }
        }
    }
}

#[cfg(test)]
mod tests;
