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
//! capture time names it. The exceptions are indexed by rule, `from` zone and
//! responder port, so a violation is tried only against those that can hold
//! it, merged in file order: a thousand exceptions cost a violation a few
//! lookups and comparisons, and no allocation.
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

/// Ports an exception's `services` may name and still be indexed by port:
/// a wider scope (a range, many services) is tried at every port.
const INDEXED_PORTS: usize = 16;

/// Where an exception is filed in [`Exceptions`]' index: by its rule (none:
/// any rule), one of its `from` zones (none: `from` absent or naming a
/// network) and one of its responder ports (none: `services` absent, naming
/// ICMP or more than [`INDEXED_PORTS`] ports). A subject's candidates are
/// the (at most eight) lists of its rule or none, its initiator's zone or
/// none, and its port or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct IndexKey {
    rule: Option<RuleScope>,
    zone: Option<ZoneId>,
    port: Option<u16>,
}

/// Which of the eight shapes of [`IndexKey`] (rule given, zone given, port
/// given) any exception is filed under: a subject looks up only those.
fn shape(rule: bool, zone: bool, port: bool) -> u8 {
    1 << (usize::from(rule) << 2 | usize::from(zone) << 1 | usize::from(port))
}

/// Exceptions by [`IndexKey`], each list in file order.
type Index = HashMap<IndexKey, Vec<u32>, foldhash::fast::RandomState>;

/// The compiled exceptions of a file, indexed for matching.
#[derive(Clone, Debug, Default)]
pub struct Exceptions {
    list: Vec<Exception>,
    /// Exceptions by rule, `from` zone and port, each list in file order
    /// (looked up a few times per violation: foldhash rather than SipHash).
    index: Index,
    /// The shapes filed (bits of [`shape`]).
    shapes: u8,
}

/// The `from` zones an exception is filed under, each once or more; none
/// when it is filed under no zone (any initiator zone may hold it).
fn indexed_zones(exception: &Exception) -> Option<impl Iterator<Item = ZoneId> + '_> {
    let from = exception.from.as_ref()?;
    from.iter()
        .all(|scope| matches!(scope, EndpointScope::Zone(_)))
        .then(|| {
            from.iter().filter_map(|scope| match *scope {
                EndpointScope::Zone(zone) => Some(zone),
                EndpointScope::Network { .. } => None,
            })
        })
}

/// The responder ports an exception is filed under, each once or more;
/// none when it is filed under no port.
fn indexed_ports(exception: &Exception) -> Option<impl Iterator<Item = u16> + '_> {
    let services = exception.services.as_ref()?;
    let mut ports = 0usize;
    for service in services {
        if service.icmp {
            return None;
        }
        for range in service.tcp.iter().chain(&service.udp) {
            ports += usize::from(range.hi - range.lo) + 1;
            if ports > INDEXED_PORTS {
                return None;
            }
        }
    }
    Some(
        services
            .iter()
            .flat_map(|service| service.tcp.iter().chain(&service.udp))
            .flat_map(|range| range.lo..=range.hi),
    )
}

impl Exceptions {
    /// Indexes `list` (in file order).
    pub fn new(list: Vec<Exception>) -> Exceptions {
        let mut index = Index::default();
        let mut shapes = 0;
        for (i, exception) in list.iter().enumerate() {
            let i = i as u32;
            let rule = exception.rule;
            let mut file = |zone: Option<ZoneId>| {
                let mut file_at = |port: Option<u16>| {
                    shapes |= shape(rule.is_some(), zone.is_some(), port.is_some());
                    let filed = index.entry(IndexKey { rule, zone, port }).or_default();
                    // A zone or port named twice files it once.
                    if filed.last() != Some(&i) {
                        filed.push(i);
                    }
                };
                match indexed_ports(exception) {
                    Some(ports) => ports.for_each(|port| file_at(Some(port))),
                    None => file_at(None),
                }
            };
            match indexed_zones(exception) {
                Some(zones) => zones.for_each(|zone| file(Some(zone))),
                None => file(None),
            }
        }
        Exceptions {
            list,
            index,
            shapes,
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
    /// expired by then. Tries only the exceptions filed under its rule (or
    /// none), its initiator's zone (or none) and its port (or none): as
    /// many lookups for a thousand exceptions as for one, no allocation.
    pub fn match_subject(&self, subject: &Subject) -> Matched {
        let mut matched = Matched::default();
        if self.list.is_empty() {
            return matched;
        }
        let port = subject.service.map(|(_, port)| port);
        // A subject without a port (a sweep's, a scan's) is held only by
        // exceptions filed under none.
        let ports: &[Option<u16>] = match port {
            Some(port) => &[Some(port), None],
            None => &[None],
        };
        let mut lists: [&[u32]; 8] = [&[]; 8];
        let mut count = 0;
        for rule in [Some(subject.rule), None] {
            for zone in [Some(subject.src.1), None] {
                for &port in ports {
                    if self.shapes & shape(rule.is_some(), zone.is_some(), port.is_some()) == 0 {
                        continue;
                    }
                    if let Some(found) = self.index.get(&IndexKey { rule, zone, port }) {
                        lists[count] = found;
                        count += 1;
                    }
                }
            }
        }
        let mut heads = [0usize; 8];
        // The lists merged in file order (an exception is in at most one
        // of a subject's lists: its rule, zone and port decide which).
        loop {
            let mut next: Option<(u32, usize)> = None;
            for (l, list) in lists[..count].iter().enumerate() {
                if let Some(&i) = list.get(heads[l])
                    && next.is_none_or(|(n, _)| i < n)
                {
                    next = Some((i, l));
                }
            }
            let Some((next, l)) = next else {
                return matched;
            };
            heads[l] += 1;
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
